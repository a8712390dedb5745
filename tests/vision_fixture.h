/* The vision tests' fixture (vision_fixture.c). */
#ifndef BT_VISION_FIXTURE_H
#define BT_VISION_FIXTURE_H

#include <stddef.h>

/* NAME under the test data directory, or under the run's scratch directory
 * (each returns one of four rotating static buffers). */
const char *data_path(const char *name);
const char *tmp_path(const char *name);
/* Writes n bytes to path (asserting). */
void write_bytes(const char *path, const void *b, size_t n);
/* cmocka group setup and teardown: find the data, make and remove the scratch directory. */
int vision_setup(void **state);
int vision_teardown(void **state);

#endif

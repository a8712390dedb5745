/* Helpers shared by the vision layer's sources; not part of the public API. */
#ifndef BT_VISION_INTERNAL_H
#define BT_VISION_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "blindtuner/status.h"

/* Reads a whole file into a bt_alloc'd buffer (*len bytes, plus a NUL past
 * the end).  Errors name the path. */
bt_status bt_read_file(const char *path, uint8_t **buf, size_t *len) BT_MUST_CHECK;

/* An output file written under a temporary name and renamed into place on
 * commit, so a failed run never leaves a partial file behind. */
typedef struct bt_file_out {
  FILE *f;
  char *path, *tmp;
} bt_file_out;

bt_status bt_file_out_open(bt_file_out *fo, const char *path) BT_MUST_CHECK;
/* Flushes, checks for write errors, closes and renames; frees `fo` either way. */
bt_status bt_file_out_commit(bt_file_out *fo) BT_MUST_CHECK;
/* Closes and removes the temporary file. */
void bt_file_out_abort(bt_file_out *fo);

float bt_half_to_float(uint16_t h);
uint16_t bt_float_to_half(float f);

#endif

/* Shared helpers for the unit tests: a printed, replayable seed and
 * seeded generators derived from it. */
#ifndef BT_TESTUTIL_H
#define BT_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "blindtuner/util.h"

/* The run's 32-byte seed: BT_TEST_SEED (64 hex digits) or fresh; printed once. */
const uint8_t *bt_test_seed(void);
/* A generator for one test, derived from the run seed and a label. */
void bt_test_prng(bt_prng *g, const char *label);
/* Prints "  <label>: <value> (bar <bar>)" so results are visible in logs. */
void bt_test_report(const char *label, double value, const char *unit, double bar);

/* A whole file (asserts it can be read); free() it. */
uint8_t *bt_test_read_file(const char *path, size_t *len);
/* Recomputes a container's checksum so that a deliberately invalid field
 * reaches the field checks instead of the checksum check. */
void bt_test_fix_checksum(uint8_t *b, size_t len);
/* Writes v little-endian in `bytes` bytes. */
void bt_test_put_le(uint8_t *b, uint64_t v, int bytes);
uint64_t bt_test_get_le(const uint8_t *b, int bytes);
/* Asserts the status and that the message mentions `needle` (if given). */
void bt_test_expect_fail(bt_status got, bt_status want, const char *needle, const char *what);

/* Whether the memory mapping holding `addr` has the kernel flag `flag`
 * ("dd": excluded from core dumps, "lo": locked) in /proc/self/smaps'
 * VmFlags: 1 or 0, -1 where the kernel does not say (not Linux). */
int bt_test_vm_flag(const void *addr, const char *flag);

#define BT_CHECK(expr)                                                              \
  do {                                                                              \
    bt_status st_ = (expr);                                                         \
    if (st_ != BT_OK) fail_msg("%s -> %s: %s", #expr, bt_status_name(st_), bt_last_error()); \
  } while (0)

#endif

#include <string.h>

#include "blindtuner/util.h"
#include "testutil.h"

static void prng_is_deterministic(void **state) {
  (void)state;
  uint8_t seed[BT_SEED_BYTES] = {1, 2, 3};
  bt_prng a, b;
  bt_prng_init(&a, seed);
  bt_prng_init(&b, seed);
  uint8_t x[3000], y[3000];
  /* different read sizes must give the same stream */
  bt_prng_bytes(&a, x, 1000);
  bt_prng_bytes(&a, x + 1000, 2000);
  for (size_t i = 0; i < sizeof y; i += 7) bt_prng_bytes(&b, y + i, sizeof y - i < 7 ? sizeof y - i : 7);
  assert_memory_equal(x, y, sizeof x);
  seed[0] ^= 1;
  bt_prng_init(&b, seed);
  bt_prng_bytes(&b, y, sizeof y);
  assert_memory_not_equal(x, y, sizeof x);
  bt_prng_wipe(&a);
  uint8_t zero[sizeof a.key] = {0};
  assert_memory_equal(a.key, zero, sizeof zero);
}

static void errors_carry_messages(void **state) {
  (void)state;
  bt_clear_error();
  assert_string_equal(bt_last_error(), "");
  assert_int_equal(bt_fail(BT_E_LEVEL, "cannot rescale: level %d", 0), BT_E_LEVEL);
  assert_string_equal(bt_last_error(), "cannot rescale: level 0");
  assert_string_equal(bt_status_name(BT_E_FORMAT), "BT_E_FORMAT");
}

static void alloc_is_aligned_and_wipe_works(void **state) {
  (void)state;
  uint8_t *p = bt_alloc(100);
  assert_non_null(p);
  assert_int_equal((uintptr_t)p % 64, 0);
  memset(p, 0xAB, 100);
  bt_wipe(p, 100);
  for (int i = 0; i < 100; i++) assert_int_equal(p[i], 0);
  bt_free(p);
  assert_null(bt_calloc(SIZE_MAX / 2, 4));
}

int main(void) {
  bt_test_seed();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(prng_is_deterministic),
      cmocka_unit_test(errors_carry_messages),
      cmocka_unit_test(alloc_is_aligned_and_wipe_works),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

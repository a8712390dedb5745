#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "testutil.h"

static uint8_t seed[BT_SEED_BYTES];
static int have_seed;

const uint8_t *bt_test_seed(void) {
  if (have_seed) return seed;
  if (bt_init() != BT_OK) abort();
  const char *env = getenv("BT_TEST_SEED");
  size_t len = 0;
  if (!env || sodium_hex2bin(seed, sizeof seed, env, strlen(env), NULL, &len, NULL) != 0 ||
      len != sizeof seed)
    randombytes_buf(seed, sizeof seed);
  char hex[2 * BT_SEED_BYTES + 1];
  sodium_bin2hex(hex, sizeof hex, seed, sizeof seed);
  printf("test seed: BT_TEST_SEED=%s\n", hex);
  have_seed = 1;
  return seed;
}

void bt_test_prng(bt_prng *g, const char *label) {
  uint8_t s[BT_SEED_BYTES];
  crypto_generichash(s, sizeof s, (const uint8_t *)label, strlen(label), bt_test_seed(),
                     BT_SEED_BYTES);
  bt_prng_init(g, s);
}

void bt_test_report(const char *label, double value, const char *unit, double bar) {
  printf("  %-48s %10.2f %s (bar %.2f)\n", label, value, unit, bar);
  fflush(stdout);
}

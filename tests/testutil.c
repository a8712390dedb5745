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

uint8_t *bt_test_read_file(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  assert_non_null(fp);
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)n + 1);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, (size_t)n, fp), (size_t)n);
  fclose(fp);
  *len = (size_t)n;
  return b;
}

/* BLAKE2b-256 of header[0..56) || payload, with libsodium directly,
 * independently of the library (docs/FORMAT.md's header layout). */
void bt_test_fix_checksum(uint8_t *b, size_t len) {
  crypto_generichash_state s;
  crypto_generichash_init(&s, NULL, 0, 32);
  crypto_generichash_update(&s, b, 56);
  crypto_generichash_update(&s, b + 88, len - 88);
  crypto_generichash_final(&s, b + 56, 32);
}

void bt_test_put_le(uint8_t *b, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) b[i] = (uint8_t)(v >> (8 * i));
}

uint64_t bt_test_get_le(const uint8_t *b, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) v |= (uint64_t)b[i] << (8 * i);
  return v;
}

void bt_test_expect_fail(bt_status got, bt_status want, const char *needle, const char *what) {
  if (got != want)
    fail_msg("%s: got %s (%s), expected %s", what, bt_status_name(got), bt_last_error(), bt_status_name(want));
  if (needle && !strstr(bt_last_error(), needle))
    fail_msg("%s: message '%s' does not mention '%s'", what, bt_last_error(), needle);
}

int bt_test_vm_flag(const void *addr, const char *flag) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) return -1;
  char line[512];
  int inside = 0, found = -1;
  const uintptr_t a = (uintptr_t)addr;
  while (found < 0 && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    /* a mapping's header: "lo-hi perms offset dev inode path" */
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      inside = a >= lo && a < hi;
      continue;
    }
    if (!inside || strncmp(line, "VmFlags:", 8)) continue;
    found = 0;
    for (char *t = strtok(line + 8, " \n"); t; t = strtok(NULL, " \n"))
      if (!strcmp(t, flag)) found = 1;
  }
  fclose(f);
  return found;
}

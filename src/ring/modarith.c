#include "blindtuner/ring.h"

bt_status bt_modulus_init(bt_modulus *m, uint64_t q) {
  if (q < 3 || (q >> BT_MAX_PRIME_BITS) != 0 || (q & 1) == 0)
    return bt_fail(BT_E_PARAMS, "modulus %llu is not an odd integer in [3, 2^61)",
                   (unsigned long long)q);
  m->q = q;
  /* q is odd, so floor((2^128 - 1) / q) == floor(2^128 / q) */
  bt_u128 r = ~(bt_u128)0 / q;
  m->ratio_hi = (uint64_t)(r >> 64);
  m->ratio_lo = (uint64_t)r;
  m->bits = 64 - __builtin_clzll(q);
  return BT_OK;
}

uint64_t bt_mod_pow(uint64_t a, uint64_t e, const bt_modulus *m) {
  uint64_t r = 1 % m->q, b = a % m->q;
  while (e) {
    if (e & 1) r = bt_mod_mul(r, b, m);
    b = bt_mod_mul(b, b, m);
    e >>= 1;
  }
  return r;
}

uint64_t bt_mod_inv(uint64_t a, const bt_modulus *m) {
  return bt_mod_pow(a, m->q - 2, m);
}

static uint64_t mulmod_plain(uint64_t a, uint64_t b, uint64_t n) {
  return (uint64_t)(((bt_u128)a * b) % n);
}

static uint64_t powmod_plain(uint64_t a, uint64_t e, uint64_t n) {
  uint64_t r = 1, b = a % n;
  while (e) {
    if (e & 1) r = mulmod_plain(r, b, n);
    b = mulmod_plain(b, b, n);
    e >>= 1;
  }
  return r;
}

int bt_is_prime(uint64_t n) {
  static const uint64_t small[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37};
  if (n < 2) return 0;
  for (size_t i = 0; i < sizeof small / sizeof *small; i++) {
    if (n == small[i]) return 1;
    if (n % small[i] == 0) return 0;
  }
  uint64_t d = n - 1;
  int s = 0;
  while ((d & 1) == 0) {
    d >>= 1;
    s++;
  }
  /* these twelve bases are a deterministic witness set for n < 3.3e24 */
  for (size_t i = 0; i < sizeof small / sizeof *small; i++) {
    uint64_t x = powmod_plain(small[i], d, n);
    if (x == 1 || x == n - 1) continue;
    int composite = 1;
    for (int r = 1; r < s; r++) {
      x = mulmod_plain(x, x, n);
      if (x == n - 1) {
        composite = 0;
        break;
      }
    }
    if (composite) return 0;
  }
  return 1;
}

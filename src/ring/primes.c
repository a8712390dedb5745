#include "blindtuner/ring.h"

static int in_list(uint64_t v, const uint64_t *list, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (list[i] == v) return 1;
  return 0;
}

bt_status bt_primes_generate(int bits, int logn, size_t count, const uint64_t *avoid,
                             size_t navoid, uint64_t *out) {
  if (bits < logn + 2 || bits > BT_MAX_PRIME_BITS || logn < 1 || logn > 20)
    return bt_fail(BT_E_PARAMS, "cannot generate %d-bit primes for N = 2^%d", bits, logn);
  uint64_t step = (uint64_t)2 << logn; /* q = 1 mod 2N */
  uint64_t lo = (uint64_t)1 << (bits - 1);
  /* largest candidate below 2^bits that is 1 mod 2N */
  uint64_t cand = (((uint64_t)1 << bits) - 1) / step * step + 1;
  if (cand >= ((uint64_t)1 << bits)) cand -= step;
  size_t found = 0;
  while (found < count) {
    if (cand < lo || cand <= step)
      return bt_fail(BT_E_PARAMS, "not enough %d-bit NTT primes for N = 2^%d (wanted %zu)",
                     bits, logn, count);
    if (bt_is_prime(cand) && !in_list(cand, avoid, navoid) && !in_list(cand, out, found))
      out[found++] = cand;
    cand -= step;
  }
  return BT_OK;
}

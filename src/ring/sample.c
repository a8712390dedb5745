/* Samplers.  Secret-dependent paths use no branches or table look-ups that
 * depend on sampled values: the Gaussian scans its whole CDT, the fixed-weight
 * sampler shuffles with a data-independent sorting network. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "blindtuner/ring.h"

#define UBATCH 256

/* Little-endian word from the stream, whatever the host's byte order, so a
 * seed expands to the same polynomial everywhere (files carry seeds). */
static uint64_t load_le64(const uint8_t *b) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
  return v;
}

void bt_sample_uniform(bt_prng *g, const bt_modulus *mods, size_t limbs, size_t n,
                       uint64_t *out) {
  uint8_t buf[UBATCH * 8];
  size_t avail = 0;
  for (size_t i = 0; i < limbs; i++) {
    const uint64_t q = mods[i].q;
    const uint64_t mask = (mods[i].bits >= 64) ? ~(uint64_t)0 : (((uint64_t)1 << mods[i].bits) - 1);
    uint64_t *o = out + i * n;
    /* rejection sampling: it depends on public randomness only */
    for (size_t j = 0; j < n;) {
      if (avail == 0) {
        bt_prng_bytes(g, buf, sizeof buf);
        avail = UBATCH;
      }
      --avail;
      uint64_t v = load_le64(buf + 8 * (UBATCH - 1 - avail)) & mask;
      if (v < q) o[j++] = v;
    }
  }
}

void bt_sample_ternary(bt_prng *g, size_t n, int8_t *out) {
  uint8_t buf[UBATCH];
  size_t avail = 0;
  for (size_t j = 0; j < n;) {
    if (avail == 0) {
      bt_prng_bytes(g, buf, sizeof buf);
      avail = UBATCH;
    }
    unsigned b = buf[--avail];
    /* rejecting 255 leaves 255 = 3 * 85 equally likely bytes; the rejection
     * reveals nothing about accepted values */
    if (b < 255) out[j++] = (int8_t)((int)(b % 3) - 1);
  }
  bt_wipe(buf, sizeof buf);
}

static void cswap(uint64_t *a, uint64_t *b, uint64_t ascending_mask) {
  /* values < 2^63, so (y - x) >> 63 is 1 exactly when x > y */
  uint64_t x = *a, y = *b;
  uint64_t gt = (uint64_t)0 - ((y - x) >> 63);
  uint64_t lt = (uint64_t)0 - ((x - y) >> 63);
  uint64_t swap = (gt & ascending_mask) | (lt & ~ascending_mask);
  uint64_t d = (x ^ y) & swap;
  *a = x ^ d;
  *b = y ^ d;
}

bt_status bt_sample_ternary_hw(bt_prng *g, size_t n, size_t h, int8_t *out) {
  if (h > n || n == 0 || (n & (n - 1)) != 0)
    return bt_fail(BT_E_PARAMS, "Hamming weight %zu with ring degree %zu", h, n);
  uint64_t *a = bt_alloc(n * sizeof *a);
  if (!a) return BT_E_NOMEM;
  bt_prng_bytes(g, a, n * sizeof *a);
  for (size_t i = 0; i < n; i++) {
    /* payload in the low byte: 0 -> -1, 1 -> 0, 2 -> +1; random sort key above */
    uint64_t sign = a[i] & 1;
    uint64_t payload = i < h ? (sign << 1) : 1;
    a[i] = ((a[i] >> 9) << 8) | payload;
  }
  /* bitonic sorting network: the compare-swap schedule depends only on n */
  for (size_t k = 2; k <= n; k <<= 1)
    for (size_t j = k >> 1; j > 0; j >>= 1)
      for (size_t i = 0; i < n; i++) {
        size_t l = i ^ j;
        if (l > i) cswap(&a[i], &a[l], (i & k) == 0 ? ~(uint64_t)0 : 0);
      }
  for (size_t i = 0; i < n; i++) out[i] = (int8_t)((int)(a[i] & 3) - 1);
  bt_free_secret(a, n * sizeof *a);
  return BT_OK;
}

#define GAUSS_TAIL 19

static uint64_t cdt[GAUSS_TAIL];
static pthread_once_t cdt_once = PTHREAD_ONCE_INIT;

/* P(|x| <= k) for the rounded Gaussian, sigma = 3.2, as 63-bit fixed point;
 * made once, before any thread reads it (key generation samples on several). */
static void cdt_init(void) {
  const long double s = 3.2L;
  long double w[GAUSS_TAIL + 1], total = 0;
  for (int k = 0; k <= GAUSS_TAIL; k++) {
    w[k] = expl(-(long double)(k * k) / (2 * s * s)) * (k ? 2 : 1);
    total += w[k];
  }
  long double acc = 0;
  for (int k = 0; k < GAUSS_TAIL; k++) {
    acc += w[k];
    cdt[k] = (uint64_t)(acc / total * 9223372036854775808.0L);
  }
}

void bt_sample_gaussian(bt_prng *g, size_t n, int8_t *out) {
  pthread_once(&cdt_once, cdt_init);
  uint64_t buf[UBATCH];
  for (size_t j = 0; j < n; j += UBATCH) {
    size_t len = n - j < UBATCH ? n - j : UBATCH;
    bt_prng_bytes(g, buf, len * sizeof *buf);
    for (size_t t = 0; t < len; t++) {
      uint64_t r = buf[t] & 0x7fffffffffffffffULL, sign = buf[t] >> 63;
      int64_t mag = 0;
      for (int k = 0; k < GAUSS_TAIL; k++) mag += (int64_t)(1 ^ ((r - cdt[k]) >> 63));
      int64_t smask = -(int64_t)sign;
      out[j + t] = (int8_t)((mag ^ smask) - smask);
    }
  }
  bt_wipe(buf, sizeof buf);
}

void bt_small_to_rns(const int8_t *v, const bt_modulus *mods, size_t limbs, size_t n,
                     uint64_t *out) {
  for (size_t i = 0; i < limbs; i++) {
    const uint64_t q = mods[i].q;
    uint64_t *o = out + i * n;
    for (size_t j = 0; j < n; j++) {
      int64_t x = v[j];
      o[j] = (uint64_t)x + (q & (uint64_t)(x >> 63));
    }
  }
}

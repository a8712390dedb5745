/* RNS basis extension and exact CRT reconstruction. */
#include <string.h>

#include <omp.h>

#include "blindtuner/ring.h"
#include "ring/simd.h"

#define CONV_BLOCK 32
#define CONV_MAX_SOURCE 64

bt_status bt_rns_conv_init(bt_rns_conv *c, const uint64_t *from, size_t k, const uint64_t *to,
                           size_t m) {
  memset(c, 0, sizeof *c);
  if (k == 0 || k > CONV_MAX_SOURCE || m == 0)
    return bt_fail(BT_E_PARAMS, "basis extension from %zu to %zu primes unsupported", k, m);
  c->k = k;
  c->m = m;
  c->from = bt_alloc(k * sizeof *c->from);
  c->to = bt_alloc(m * sizeof *c->to);
  c->hinv = bt_alloc(2 * k * sizeof(uint64_t));
  c->h = bt_alloc(k * m * sizeof(uint64_t));
  c->bmod = bt_alloc(m * sizeof(uint64_t));
  c->binv = bt_alloc(k * sizeof(double));
  if (!c->from || !c->to || !c->hinv || !c->h || !c->bmod || !c->binv) {
    bt_rns_conv_free(c);
    return BT_E_NOMEM;
  }
  c->hinvp = c->hinv + k;
  bt_status st = BT_OK;
  for (size_t i = 0; i < k && !st; i++) st = bt_modulus_init(&c->from[i], from[i]);
  for (size_t j = 0; j < m && !st; j++) st = bt_modulus_init(&c->to[j], to[j]);
  if (st) {
    bt_rns_conv_free(c);
    return st;
  }
  for (size_t j = 0; j < m; j++) {
    uint64_t b = 1;
    for (size_t l = 0; l < k; l++) b = bt_mod_mul(b, bt_mod_reduce64(from[l], &c->to[j]), &c->to[j]);
    c->bmod[j] = b;
  }
  for (size_t i = 0; i < k; i++) c->binv[i] = 1.0 / (double)from[i];
  for (size_t i = 0; i < k; i++) {
    /* (B/b_i) mod b_i, then its inverse */
    uint64_t hat = 1;
    for (size_t l = 0; l < k; l++)
      if (l != i) hat = bt_mod_mul(hat, from[l] % from[i], &c->from[i]);
    c->hinv[i] = bt_mod_inv(hat, &c->from[i]);
    c->hinvp[i] = bt_shoup(c->hinv[i], from[i]);
    for (size_t j = 0; j < m; j++) {
      uint64_t h = 1;
      for (size_t l = 0; l < k; l++)
        if (l != i) h = bt_mod_mul(h, bt_mod_reduce64(from[l], &c->to[j]), &c->to[j]);
      c->h[j * k + i] = h;
    }
  }
  return BT_OK;
}

void bt_rns_conv_free(bt_rns_conv *c) {
  if (!c) return;
  bt_free(c->from);
  bt_free(c->to);
  bt_free(c->hinv);
  bt_free(c->h);
  bt_free(c->bmod);
  bt_free(c->binv);
  memset(c, 0, sizeof *c);
}

/* Coefficients [start, n) of the conversion, 128-bit scalar sums. */
static void conv_apply_scalar(const bt_rns_conv *c, const uint64_t *in, uint64_t *out, size_t n,
                              size_t start, const uint8_t *mask, int threads, int exact) {
  const size_t k = c->k, m = c->m;
  const size_t nblocks = (n - start + CONV_BLOCK - 1) / CONV_BLOCK;
#pragma omp parallel for num_threads(threads) schedule(static) if (nblocks > 1)
  for (size_t b = 0; b < nblocks; b++) {
    uint64_t y[CONV_MAX_SOURCE][CONV_BLOCK];
    uint64_t v[CONV_BLOCK];
    const size_t c0 = start + b * CONV_BLOCK;
    const size_t len = n - c0 < CONV_BLOCK ? n - c0 : CONV_BLOCK;
    for (size_t i = 0; i < k; i++) {
      const uint64_t *x = in + i * n + c0;
      const uint64_t w = c->hinv[i], wp = c->hinvp[i], q = c->from[i].q;
      for (size_t t = 0; t < len; t++) y[i][t] = bt_mul_shoup(x[t], w, wp, q);
    }
    if (exact) {
      /* x = sum_i y_i (B/b_i) - u B with u = floor(sum_i y_i / b_i); rounding
       * instead of flooring picks the centred representative.  The double
       * sum is off by at most k 2^-52, which can only matter when x is
       * within that of +-B/2, where either choice errs by 1/2 + tiny. */
      for (size_t t = 0; t < len; t++) {
        double s = 0;
        for (size_t i = 0; i < k; i++) s += (double)y[i][t] * c->binv[i];
        v[t] = (uint64_t)(s + 0.5);
      }
    }
    for (size_t j = 0; j < m; j++) {
      if (mask && !mask[j]) continue;
      const uint64_t *h = c->h + j * k;
      uint64_t *o = out + j * n + c0;
      /* k products below 2^122 each: the 128-bit sum cannot overflow for k <= 64 */
      bt_u128 acc[CONV_BLOCK] = {0};
      for (size_t i = 0; i < k; i++) {
        const uint64_t hi = h[i];
        for (size_t t = 0; t < len; t++) acc[t] += (bt_u128)y[i][t] * hi;
      }
      if (exact) {
        /* v <= k: v (q_j - B mod q_j) < 2^70, added without overflow */
        const uint64_t nb = c->to[j].q - c->bmod[j];
        for (size_t t = 0; t < len; t++) acc[t] += (bt_u128)v[t] * nb;
      }
      for (size_t t = 0; t < len; t++) o[t] = bt_mod_reduce128(acc[t], &c->to[j]);
    }
  }
}

#if BT_RING_VEC
/* Coefficients [0, nvec) of the conversion (nvec a multiple of VBLK), 8
 * lanes at a time: a block's y_i and their high halves stay in L1 while each
 * target limb sums k products per coefficient (bt_acc8) and reduces once;
 * the exact variant's correction v (c_j - B mod c_j) is one more term.  The
 * residues are the scalar loop's; it is about five times as fast on the
 * machines measured (docs/ENGINE.md). */
enum { VBLK = 64 };

static void conv_apply_vec(const bt_rns_conv *c, const uint64_t *in, uint64_t *out, size_t n, size_t nvec,
                           const uint8_t *mask, int threads, int exact, const uint64_t *red_consts) {
  const size_t k = c->k, m = c->m, kk = k + (exact ? 1 : 0);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t b = 0; b < nvec / VBLK; b++) {
    uint64_t y[BT_ACC8_TERMS * VBLK] __attribute__((aligned(64)));
    uint64_t y1[BT_ACC8_TERMS * VBLK] __attribute__((aligned(64)));
    const size_t c0 = b * VBLK;
    for (size_t i = 0; i < k; i++) {
      const uint64_t *x = in + i * n + c0;
      const __m512i w = _mm512_set1_epi64((long long)c->hinv[i]), wp = _mm512_set1_epi64((long long)c->hinvp[i]),
                    q = _mm512_set1_epi64((long long)c->from[i].q);
      for (size_t t = 0; t < VBLK; t += 8) {
        const __m512i v = bt_csub8(bt_mul_shoup_lazy8(_mm512_loadu_si512(x + t), w, wp, q), q);
        _mm512_store_si512(y + i * VBLK + t, v);
        _mm512_store_si512(y1 + i * VBLK + t, _mm512_srli_epi64(v, 32));
      }
    }
    if (exact) /* v = round(sum_i y_i / b_i), products and sums in the scalar loop's order */
      for (size_t t = 0; t < VBLK; t += 8) {
        __m512d sum = _mm512_setzero_pd();
        for (size_t i = 0; i < k; i++)
          sum = _mm512_add_pd(sum, _mm512_mul_pd(_mm512_cvtepu64_pd(_mm512_load_si512(y + i * VBLK + t)),
                                                 _mm512_set1_pd(c->binv[i])));
        _mm512_store_si512(y + k * VBLK + t, _mm512_cvttpd_epu64(_mm512_add_pd(sum, _mm512_set1_pd(0.5))));
        _mm512_store_si512(y1 + k * VBLK + t, _mm512_setzero_si512());
      }
    for (size_t j = 0; j < m; j++) {
      if (mask && !mask[j]) continue;
      const bt_red8 red = bt_red8_load(red_consts + 3 * j, c->to[j].q);
      uint64_t h[BT_ACC8_TERMS], h1[BT_ACC8_TERMS];
      for (size_t i = 0; i < k; i++) h[i] = c->h[j * k + i], h1[i] = h[i] >> 32;
      h[k] = c->to[j].q - c->bmod[j]; /* used by the exact variant only */
      h1[k] = h[k] >> 32;
      uint64_t *o = out + j * n + c0;
      for (size_t g = 0; g < VBLK; g += 16) { /* two accumulators for two lane groups */
        bt_acc8 s0, s1;
        bt_acc8_zero(&s0);
        bt_acc8_zero(&s1);
        for (size_t i = 0; i < kk; i++) {
          const __m512i b0 = _mm512_set1_epi64((long long)h[i]), b1 = _mm512_set1_epi64((long long)h1[i]);
          const uint64_t *yi = y + i * VBLK + g, *zi = y1 + i * VBLK + g;
          bt_acc8_mac(&s0, _mm512_load_si512(yi), _mm512_load_si512(zi), b0, b1);
          bt_acc8_mac(&s1, _mm512_load_si512(yi + 8), _mm512_load_si512(zi + 8), b0, b1);
        }
        _mm512_storeu_si512(o + g, bt_acc8_reduce(&s0, &red));
        _mm512_storeu_si512(o + g + 8, bt_acc8_reduce(&s1, &red));
      }
    }
  }
}
#endif

static void conv_apply(const bt_rns_conv *c, const uint64_t *in, uint64_t *out, size_t n, const uint8_t *mask,
                       int threads, int exact) {
  size_t start = 0;
#if BT_RING_VEC
  uint64_t *red = NULL;
  /* the sources and the exact correction must fit one accumulator */
  if (c->k + 1 <= BT_ACC8_TERMS && n >= VBLK && (red = bt_alloc(3 * c->m * sizeof *red))) {
    for (size_t j = 0; j < c->m; j++) bt_red8_consts(c->to[j].q, red + 3 * j);
    start = n / VBLK * VBLK;
    conv_apply_vec(c, in, out, n, start, mask, threads, exact, red);
    bt_free(red);
  }
#endif
  if (start < n) conv_apply_scalar(c, in, out, n, start, mask, threads, exact);
}

void bt_rns_conv_apply(const bt_rns_conv *c, const uint64_t *in, uint64_t *out, size_t n,
                       const uint8_t *mask, int threads) {
  conv_apply(c, in, out, n, mask, threads, 0);
}

void bt_rns_conv_apply_exact(const bt_rns_conv *c, const uint64_t *in, uint64_t *out, size_t n,
                             const uint8_t *mask, int threads) {
  conv_apply(c, in, out, n, mask, threads, 1);
}

/* ---- multi-word helpers for CRT (little-endian 64-bit words) ---- */

static void mw_mul_word(const uint64_t *a, size_t k, uint64_t w, uint64_t *out /* k+1 */) {
  uint64_t carry = 0;
  for (size_t i = 0; i < k; i++) {
    bt_u128 t = (bt_u128)a[i] * w + carry;
    out[i] = (uint64_t)t;
    carry = (uint64_t)(t >> 64);
  }
  out[k] = carry;
}

static void mw_add(uint64_t *acc, const uint64_t *b, size_t k) {
  uint64_t carry = 0;
  for (size_t i = 0; i < k; i++) {
    bt_u128 t = (bt_u128)acc[i] + b[i] + carry;
    acc[i] = (uint64_t)t;
    carry = (uint64_t)(t >> 64);
  }
}

static int mw_cmp(const uint64_t *a, const uint64_t *b, size_t k) {
  for (size_t i = k; i-- > 0;)
    if (a[i] != b[i]) return a[i] > b[i] ? 1 : -1;
  return 0;
}

static void mw_sub(uint64_t *a, const uint64_t *b, size_t k) {
  uint64_t borrow = 0;
  for (size_t i = 0; i < k; i++) {
    uint64_t bi = b[i] + borrow;
    uint64_t nb = (bi < borrow) || (a[i] < bi);
    a[i] -= bi;
    borrow = nb;
  }
}

static long double mw_to_ld(const uint64_t *a, size_t k) {
  long double r = 0;
  for (size_t i = k; i-- > 0;) r = r * 18446744073709551616.0L + (long double)a[i];
  return r;
}

bt_status bt_crt_init(bt_crt *c, const uint64_t *q, size_t k) {
  memset(c, 0, sizeof *c);
  if (k == 0) return bt_fail(BT_E_PARAMS, "empty CRT basis");
  c->k = k;
  c->mod = bt_alloc(k * sizeof *c->mod);
  c->hinv = bt_alloc(k * sizeof(uint64_t));
  c->hat = bt_calloc(k * k, sizeof(uint64_t));
  c->Q = bt_calloc(k + 1, sizeof(uint64_t));
  c->halfQ = bt_calloc(k, sizeof(uint64_t));
  uint64_t *tmp = bt_calloc(k + 1, sizeof(uint64_t));
  if (!c->mod || !c->hinv || !c->hat || !c->Q || !c->halfQ || !tmp) {
    bt_free(tmp);
    bt_crt_free(c);
    return BT_E_NOMEM;
  }
  bt_status st = BT_OK;
  for (size_t i = 0; i < k && !st; i++) st = bt_modulus_init(&c->mod[i], q[i]);
  if (st) {
    bt_free(tmp);
    bt_crt_free(c);
    return st;
  }
  for (size_t i = 0; i < k; i++) {
    uint64_t *h = c->hat + i * k;
    h[0] = 1;
    uint64_t hm = 1;
    for (size_t l = 0; l < k; l++) {
      if (l == i) continue;
      mw_mul_word(h, k, q[l], tmp);
      memcpy(h, tmp, k * sizeof(uint64_t));
      hm = bt_mod_mul(hm, q[l] % q[i], &c->mod[i]);
    }
    c->hinv[i] = bt_mod_inv(hm, &c->mod[i]);
  }
  mw_mul_word(c->hat, k, q[0], tmp); /* Q = (Q/q_0) q_0 */
  memcpy(c->Q, tmp, k * sizeof(uint64_t));
  for (size_t i = 0; i < k; i++)
    c->halfQ[i] = (c->Q[i] >> 1) | (i + 1 < k ? c->Q[i + 1] << 63 : 0);
  bt_free(tmp);
  return BT_OK;
}

void bt_crt_free(bt_crt *c) {
  if (!c) return;
  bt_free(c->mod);
  bt_free(c->hinv);
  bt_free(c->hat);
  bt_free(c->Q);
  bt_free(c->halfQ);
  memset(c, 0, sizeof *c);
}

long double bt_crt_centered(const bt_crt *c, const uint64_t *res, uint64_t *scratch) {
  const size_t k = c->k;
  uint64_t *acc = scratch, *tmp = scratch + k + 1;
  memset(acc, 0, (k + 1) * sizeof(uint64_t));
  for (size_t i = 0; i < k; i++) {
    uint64_t y = bt_mod_mul(res[i], c->hinv[i], &c->mod[i]);
    mw_mul_word(c->hat + i * k, k, y, tmp);
    mw_add(acc, tmp, k + 1);
  }
  /* acc < k Q: at most k subtractions */
  while (acc[k] != 0 || mw_cmp(acc, c->Q, k) >= 0) {
    uint64_t borrow = mw_cmp(acc, c->Q, k) < 0; /* acc[k] absorbs the borrow */
    mw_sub(acc, c->Q, k);
    acc[k] -= borrow;
  }
  if (mw_cmp(acc, c->halfQ, k) > 0) {
    memcpy(tmp, c->Q, k * sizeof(uint64_t));
    mw_sub(tmp, acc, k);
    return -mw_to_ld(tmp, k);
  }
  return mw_to_ld(acc, k);
}

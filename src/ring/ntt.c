/* Negacyclic NTT over Z_q[X]/(X^N + 1), Cooley-Tukey forward and
 * Gentleman-Sande inverse with the psi twist merged into the butterflies
 * (Longa-Naehrig 2016), lazy reduction after Harvey 2014: forward values live
 * in [0, 4q), inverse values in [0, 2q), with one final correction. */
#include <string.h>

#include "blindtuner/ring.h"

static uint32_t bitrev(uint32_t x, int bits) {
  uint32_t r = 0;
  for (int i = 0; i < bits; i++) {
    r = (r << 1) | (x & 1);
    x >>= 1;
  }
  return r;
}

/* The smallest primitive 2N-th root of unity mod q: canonical, so NTT-form
 * data written by one build is read identically by another. */
static bt_status find_psi(const bt_modulus *m, int logn, uint64_t *psi_out) {
  uint64_t q = m->q, order = (uint64_t)2 << logn;
  if ((q - 1) % order != 0)
    return bt_fail(BT_E_PARAMS, "modulus %llu is not 1 mod 2N (N = 2^%d)",
                   (unsigned long long)q, logn);
  for (uint64_t g = 2; g < q && g < 1000000; g++) {
    uint64_t x = bt_mod_pow(g, (q - 1) / order, m);
    /* x has order dividing 2N; it is primitive iff x^N = -1 */
    if (bt_mod_pow(x, order / 2, m) != q - 1) continue;
    uint64_t best = x, x2 = bt_mod_mul(x, x, m), cur = x;
    for (uint64_t k = 1; k < order / 2; k++) {
      cur = bt_mod_mul(cur, x2, m); /* x^(2k+1): every primitive root */
      if (cur < best) best = cur;
    }
    *psi_out = best;
    return BT_OK;
  }
  return bt_fail(BT_E_PARAMS, "no primitive 2N-th root modulo %llu", (unsigned long long)q);
}

bt_status bt_ntt_table_init(bt_ntt_table *t, uint64_t q, int logn) {
  memset(t, 0, sizeof *t);
  bt_status st = bt_modulus_init(&t->mod, q);
  if (st) return st;
  if (!bt_is_prime(q)) return bt_fail(BT_E_PARAMS, "modulus %llu is not prime", (unsigned long long)q);
  if (logn < 1 || logn > 17) return bt_fail(BT_E_PARAMS, "log2 N = %d out of range", logn);
  if ((st = find_psi(&t->mod, logn, &t->psi))) return st;
  t->logn = logn;
  t->n = (size_t)1 << logn;
  size_t n = t->n;
  t->w = bt_alloc(4 * n * sizeof(uint64_t));
  if (!t->w) return BT_E_NOMEM;
  t->wp = t->w + n;
  t->iw = t->wp + n;
  t->iwp = t->iw + n;
  uint64_t psi_inv = bt_mod_inv(t->psi, &t->mod);
  uint64_t p = 1, pi = 1;
  for (size_t k = 0; k < n; k++) {
    uint32_t r = bitrev((uint32_t)k, logn);
    t->w[r] = p;
    t->iw[r] = pi;
    p = bt_mod_mul(p, t->psi, &t->mod);
    pi = bt_mod_mul(pi, psi_inv, &t->mod);
  }
  for (size_t k = 0; k < n; k++) {
    t->wp[k] = bt_shoup(t->w[k], q);
    t->iwp[k] = bt_shoup(t->iw[k], q);
  }
  t->ninv = bt_mod_inv((uint64_t)n % q, &t->mod);
  t->ninvp = bt_shoup(t->ninv, q);
  return BT_OK;
}

void bt_ntt_table_free(bt_ntt_table *t) {
  if (!t) return;
  bt_free(t->w);
  memset(t, 0, sizeof *t);
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
/* AVX-512 butterflies, 8 coefficients at a time, for the stages whose
 * butterfly span is at least 8 (13 of 16 at N = 2^16); the last three stages
 * and builds without AVX-512 take the scalar loops.  The arithmetic is the
 * scalar one lane by lane (Harvey's lazy butterflies with Shoup products), so
 * both paths give identical limbs.  There is no 64 x 64 -> 128 multiply in
 * AVX-512: the high word comes from four 32 x 32 products. */
#include <immintrin.h>
#define BT_NTT_VEC 1

static inline __m512i mulhi64(__m512i a, __m512i b) {
  const __m512i lo = _mm512_set1_epi64(0xffffffff);
  const __m512i ah = _mm512_srli_epi64(a, 32), bh = _mm512_srli_epi64(b, 32);
  const __m512i ll = _mm512_mul_epu32(a, b), lh = _mm512_mul_epu32(a, bh);
  const __m512i hl = _mm512_mul_epu32(ah, b), hh = _mm512_mul_epu32(ah, bh);
  __m512i mid = _mm512_add_epi64(_mm512_srli_epi64(ll, 32), _mm512_and_si512(lh, lo));
  mid = _mm512_add_epi64(mid, _mm512_and_si512(hl, lo));
  __m512i hi = _mm512_add_epi64(hh, _mm512_srli_epi64(lh, 32));
  hi = _mm512_add_epi64(hi, _mm512_srli_epi64(hl, 32));
  return _mm512_add_epi64(hi, _mm512_srli_epi64(mid, 32));
}

/* x w mod q in [0, 2q) (bt_mul_shoup_lazy, 8 lanes) */
static inline __m512i mul_shoup_lazy8(__m512i x, __m512i w, __m512i wp, __m512i q) {
  const __m512i h = mulhi64(x, wp);
  return _mm512_sub_epi64(_mm512_mullo_epi64(x, w), _mm512_mullo_epi64(h, q));
}

/* x >= m ? x - m : x for x < 2^63 + m (unsigned min of x and x - m) */
static inline __m512i csub8(__m512i x, __m512i m) { return _mm512_min_epu64(x, _mm512_sub_epi64(x, m)); }
#else
#define BT_NTT_VEC 0
#endif

void bt_ntt_forward(const bt_ntt_table *t, uint64_t *restrict a) {
  const uint64_t q = t->mod.q, q2 = 2 * q;
  const size_t n = t->n;
  size_t len = n;
  for (size_t m = 1; m < n; m <<= 1) {
    len >>= 1;
#if BT_NTT_VEC
    if (len >= 8) {
      const __m512i vq = _mm512_set1_epi64((long long)q), vq2 = _mm512_set1_epi64((long long)q2);
      for (size_t i = 0; i < m; i++) {
        const __m512i w = _mm512_set1_epi64((long long)t->w[m + i]), wp = _mm512_set1_epi64((long long)t->wp[m + i]);
        uint64_t *restrict x = a + 2 * i * len, *restrict y = x + len;
        for (size_t j = 0; j < len; j += 8) {
          const __m512i u = csub8(_mm512_loadu_si512(x + j), vq2);
          const __m512i v = mul_shoup_lazy8(_mm512_loadu_si512(y + j), w, wp, vq);
          _mm512_storeu_si512(x + j, _mm512_add_epi64(u, v));
          _mm512_storeu_si512(y + j, _mm512_add_epi64(_mm512_sub_epi64(u, v), vq2));
        }
      }
      continue;
    }
#endif
    for (size_t i = 0; i < m; i++) {
      const uint64_t w = t->w[m + i], wp = t->wp[m + i];
      uint64_t *restrict x = a + 2 * i * len, *restrict y = x + len;
      for (size_t j = 0; j < len; j++) {
        uint64_t u = x[j];
        u = u >= q2 ? u - q2 : u;
        uint64_t v = bt_mul_shoup_lazy(y[j], w, wp, q);
        x[j] = u + v;
        y[j] = u - v + q2;
      }
    }
  }
  size_t j0 = 0;
#if BT_NTT_VEC
  {
    const __m512i vq = _mm512_set1_epi64((long long)q), vq2 = _mm512_set1_epi64((long long)q2);
    for (; j0 + 8 <= n; j0 += 8)
      _mm512_storeu_si512(a + j0, csub8(csub8(_mm512_loadu_si512(a + j0), vq2), vq));
  }
#endif
  for (size_t j = j0; j < n; j++) {
    uint64_t u = a[j];
    u = u >= q2 ? u - q2 : u;
    a[j] = u >= q ? u - q : u;
  }
}

void bt_ntt_inverse(const bt_ntt_table *t, uint64_t *restrict a) {
  const uint64_t q = t->mod.q, q2 = 2 * q;
  const size_t n = t->n;
  size_t len = 1;
  for (size_t m = n >> 1; m >= 1; m >>= 1) {
#if BT_NTT_VEC
    if (len >= 8) {
      const __m512i vq = _mm512_set1_epi64((long long)q), vq2 = _mm512_set1_epi64((long long)q2);
      for (size_t i = 0; i < m; i++) {
        const __m512i w = _mm512_set1_epi64((long long)t->iw[m + i]), wp = _mm512_set1_epi64((long long)t->iwp[m + i]);
        uint64_t *restrict x = a + 2 * i * len, *restrict y = x + len;
        for (size_t j = 0; j < len; j += 8) {
          const __m512i u = _mm512_loadu_si512(x + j), v = _mm512_loadu_si512(y + j);
          _mm512_storeu_si512(x + j, csub8(_mm512_add_epi64(u, v), vq2));
          _mm512_storeu_si512(y + j, mul_shoup_lazy8(_mm512_add_epi64(_mm512_sub_epi64(u, v), vq2), w, wp, vq));
        }
      }
      len <<= 1;
      continue;
    }
#endif
    for (size_t i = 0; i < m; i++) {
      const uint64_t w = t->iw[m + i], wp = t->iwp[m + i];
      uint64_t *restrict x = a + 2 * i * len, *restrict y = x + len;
      for (size_t j = 0; j < len; j++) {
        uint64_t u = x[j], v = y[j];
        uint64_t s = u + v;
        x[j] = s >= q2 ? s - q2 : s;
        y[j] = bt_mul_shoup_lazy(u - v + q2, w, wp, q);
      }
    }
    len <<= 1;
  }
  size_t j0 = 0;
#if BT_NTT_VEC
  {
    const __m512i vq = _mm512_set1_epi64((long long)q), w = _mm512_set1_epi64((long long)t->ninv),
                  wp = _mm512_set1_epi64((long long)t->ninvp);
    for (; j0 + 8 <= n; j0 += 8)
      _mm512_storeu_si512(a + j0, csub8(mul_shoup_lazy8(_mm512_loadu_si512(a + j0), w, wp, vq), vq));
  }
#endif
  for (size_t j = j0; j < n; j++) a[j] = bt_mul_shoup(a[j], t->ninv, t->ninvp, q);
}

void bt_ntt_naive(const bt_ntt_table *t, const uint64_t *in, uint64_t *out) {
  const size_t n = t->n;
  for (size_t i = 0; i < n; i++) {
    uint64_t e = 2 * (uint64_t)bitrev((uint32_t)i, t->logn) + 1;
    uint64_t x = bt_mod_pow(t->psi, e, &t->mod), xp = 1, acc = 0;
    for (size_t j = 0; j < n; j++) {
      acc = bt_mod_add(acc, bt_mod_mul(in[j], xp, &t->mod), t->mod.q);
      xp = bt_mod_mul(xp, x, &t->mod);
    }
    out[i] = acc;
  }
}

void bt_ntt_automorphism_index(int logn, uint64_t k, uint32_t *idx) {
  const size_t n = (size_t)1 << logn;
  const uint64_t mask = 2 * (uint64_t)n - 1;
  for (size_t i = 0; i < n; i++) {
    uint64_t e = 2 * (uint64_t)bitrev((uint32_t)i, logn) + 1;
    uint64_t ek = (e * k) & mask; /* odd */
    idx[i] = bitrev((uint32_t)((ek - 1) >> 1), logn);
  }
}

void bt_poly_automorphism_coeff(const uint64_t *in, uint64_t *out, size_t n, uint64_t k,
                                uint64_t q) {
  const uint64_t mask = 2 * (uint64_t)n - 1;
  for (size_t j = 0; j < n; j++) {
    uint64_t e = ((uint64_t)j * k) & mask;
    if (e < n)
      out[e] = in[j];
    else
      out[e - n] = bt_mod_neg(in[j], q);
  }
}

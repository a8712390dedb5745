/* Negacyclic NTT over Z_q[X]/(X^N + 1), Cooley-Tukey forward and
 * Gentleman-Sande inverse with the psi twist merged into the butterflies
 * (Longa-Naehrig 2016), lazy reduction after Harvey 2014: forward values live
 * in [0, 4q), inverse values in [0, 2q), with one final correction. */
#include <string.h>

#include "blindtuner/ring.h"
#include "ring/simd.h"

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

/* AVX-512 butterflies, 8 coefficients at a time: the stages whose butterfly
 * span is at least 8 load their pairs directly, the three others regroup two
 * blocks of 8 with permutes (forward_tail, inverse_head); builds without
 * AVX-512 and N < 16 take the scalar loops.  The arithmetic is the scalar one
 * lane by lane (Harvey's lazy butterflies with Shoup products), so both paths
 * give identical limbs. */
#define BT_NTT_VEC BT_RING_VEC

#if BT_NTT_VEC
/* The last three forward stages (spans 4, 2, 1) stay inside blocks of 8
 * coefficients; two blocks at a time make full 8-lane butterflies once the
 * pairs are gathered with permutes (vpermt2q) and put back after the last
 * stage, together with the final reduction to [0, q). */
static inline __m512i idx8(long long a, long long b, long long c, long long d, long long e, long long f,
                           long long g, long long h) {
  return _mm512_set_epi64(h, g, f, e, d, c, b, a);
}

/* CT butterfly: (u, v) -> (u + v w, u - v w), lazy as the scalar loop */
static inline void ct8(__m512i *x, __m512i *y, __m512i w, __m512i wp, __m512i q, __m512i q2) {
  const __m512i u = bt_csub8(*x, q2), v = bt_mul_shoup_lazy8(*y, w, wp, q);
  *x = _mm512_add_epi64(u, v);
  *y = _mm512_add_epi64(_mm512_sub_epi64(u, v), q2);
}

/* GS butterfly: (u, v) -> (u + v, (u - v) w), lazy as the scalar loop */
static inline void gs8(__m512i *x, __m512i *y, __m512i w, __m512i wp, __m512i q, __m512i q2) {
  const __m512i u = *x, v = *y;
  *x = bt_csub8(_mm512_add_epi64(u, v), q2);
  *y = bt_mul_shoup_lazy8(_mm512_add_epi64(_mm512_sub_epi64(u, v), q2), w, wp, q);
}

/* twiddles k, k, k+1, k+1, ... (span 2) and k x4, k+1 x4 (span 4) */
static inline __m512i tw2(const uint64_t *w) {
  return _mm512_permutexvar_epi64(idx8(0, 0, 1, 1, 2, 2, 3, 3), _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)w)));
}
static inline __m512i tw4(const uint64_t *w) {
  return _mm512_permutexvar_epi64(idx8(0, 0, 0, 0, 1, 1, 1, 1), _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)w)));
}

static void forward_tail(const bt_ntt_table *t, uint64_t *restrict a) {
  const size_t n = t->n, m4 = n / 8, m2 = n / 4, m1 = n / 2;
  const __m512i q = _mm512_set1_epi64((long long)t->mod.q), q2 = _mm512_add_epi64(q, q);
  for (size_t b = 0; b < n / 8; b += 2) {
    const __m512i A = _mm512_loadu_si512(a + 8 * b), B = _mm512_loadu_si512(a + 8 * b + 8);
    /* span 4: (A0-3 | B0-3) against (A4-7 | B4-7) */
    __m512i x = _mm512_permutex2var_epi64(A, idx8(0, 1, 2, 3, 8, 9, 10, 11), B);
    __m512i y = _mm512_permutex2var_epi64(A, idx8(4, 5, 6, 7, 12, 13, 14, 15), B);
    ct8(&x, &y, tw4(t->w + m4 + b), tw4(t->wp + m4 + b), q, q2);
    /* span 2: the blocks are (x0-3 y0-3 | x4-7 y4-7) */
    __m512i u = _mm512_permutex2var_epi64(x, idx8(0, 1, 8, 9, 4, 5, 12, 13), y);
    __m512i v = _mm512_permutex2var_epi64(x, idx8(2, 3, 10, 11, 6, 7, 14, 15), y);
    ct8(&u, &v, tw2(t->w + m2 + 2 * b), tw2(t->wp + m2 + 2 * b), q, q2);
    /* span 1: the blocks are (u0 u1 v0 v1 u2 u3 v2 v3 | u4 u5 v4 v5 u6 u7 v6 v7) */
    x = _mm512_permutex2var_epi64(u, idx8(0, 8, 2, 10, 4, 12, 6, 14), v);
    y = _mm512_permutex2var_epi64(u, idx8(1, 9, 3, 11, 5, 13, 7, 15), v);
    ct8(&x, &y, _mm512_loadu_si512(t->w + m1 + 4 * b), _mm512_loadu_si512(t->wp + m1 + 4 * b), q, q2);
    /* interleave back, reduced to [0, q) */
    const __m512i outA = _mm512_permutex2var_epi64(x, idx8(0, 8, 1, 9, 2, 10, 3, 11), y);
    const __m512i outB = _mm512_permutex2var_epi64(x, idx8(4, 12, 5, 13, 6, 14, 7, 15), y);
    _mm512_storeu_si512(a + 8 * b, bt_csub8(bt_csub8(outA, q2), q));
    _mm512_storeu_si512(a + 8 * b + 8, bt_csub8(bt_csub8(outB, q2), q));
  }
}

/* The first three inverse stages (spans 1, 2, 4), the mirror image. */
static void inverse_head(const bt_ntt_table *t, uint64_t *restrict a) {
  const size_t n = t->n, m4 = n / 8, m2 = n / 4, m1 = n / 2;
  const __m512i q = _mm512_set1_epi64((long long)t->mod.q), q2 = _mm512_add_epi64(q, q);
  for (size_t b = 0; b < n / 8; b += 2) {
    const __m512i A = _mm512_loadu_si512(a + 8 * b), B = _mm512_loadu_si512(a + 8 * b + 8);
    __m512i x = _mm512_permutex2var_epi64(A, idx8(0, 2, 4, 6, 8, 10, 12, 14), B);
    __m512i y = _mm512_permutex2var_epi64(A, idx8(1, 3, 5, 7, 9, 11, 13, 15), B);
    gs8(&x, &y, _mm512_loadu_si512(t->iw + m1 + 4 * b), _mm512_loadu_si512(t->iwp + m1 + 4 * b), q, q2);
    /* the blocks are (x0 y0 x1 y1 x2 y2 x3 y3 | x4 y4 ...) */
    __m512i u = _mm512_permutex2var_epi64(x, idx8(0, 8, 2, 10, 4, 12, 6, 14), y);
    __m512i v = _mm512_permutex2var_epi64(x, idx8(1, 9, 3, 11, 5, 13, 7, 15), y);
    gs8(&u, &v, tw2(t->iw + m2 + 2 * b), tw2(t->iwp + m2 + 2 * b), q, q2);
    /* the blocks are (u0 u1 v0 v1 u2 u3 v2 v3 | u4 u5 v4 v5 u6 u7 v6 v7) */
    x = _mm512_permutex2var_epi64(u, idx8(0, 1, 8, 9, 4, 5, 12, 13), v);
    y = _mm512_permutex2var_epi64(u, idx8(2, 3, 10, 11, 6, 7, 14, 15), v);
    gs8(&x, &y, tw4(t->iw + m4 + b), tw4(t->iwp + m4 + b), q, q2);
    _mm512_storeu_si512(a + 8 * b, _mm512_permutex2var_epi64(x, idx8(0, 1, 2, 3, 8, 9, 10, 11), y));
    _mm512_storeu_si512(a + 8 * b + 8, _mm512_permutex2var_epi64(x, idx8(4, 5, 6, 7, 12, 13, 14, 15), y));
  }
}
#endif

void bt_ntt_forward(const bt_ntt_table *t, uint64_t *restrict a) {
  const uint64_t q = t->mod.q, q2 = 2 * q;
  const size_t n = t->n;
  size_t len = n;
  for (size_t m = 1; m < n; m <<= 1) {
    len >>= 1;
#if BT_NTT_VEC
    if (len == 4 && n >= 16) {
      forward_tail(t, a);
      return;
    }
    if (len >= 8) {
      const __m512i vq = _mm512_set1_epi64((long long)q), vq2 = _mm512_set1_epi64((long long)q2);
      for (size_t i = 0; i < m; i++) {
        const __m512i w = _mm512_set1_epi64((long long)t->w[m + i]), wp = _mm512_set1_epi64((long long)t->wp[m + i]);
        uint64_t *restrict x = a + 2 * i * len, *restrict y = x + len;
        for (size_t j = 0; j < len; j += 8) {
          const __m512i u = bt_csub8(_mm512_loadu_si512(x + j), vq2);
          const __m512i v = bt_mul_shoup_lazy8(_mm512_loadu_si512(y + j), w, wp, vq);
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
      _mm512_storeu_si512(a + j0, bt_csub8(bt_csub8(_mm512_loadu_si512(a + j0), vq2), vq));
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
  size_t mstart = n >> 1;
#if BT_NTT_VEC
  if (n >= 16) {
    inverse_head(t, a);
    len = 8;
    mstart = n >> 4;
  }
#endif
  for (size_t m = mstart; m >= 1; m >>= 1) {
#if BT_NTT_VEC
    if (len >= 8) {
      const __m512i vq = _mm512_set1_epi64((long long)q), vq2 = _mm512_set1_epi64((long long)q2);
      for (size_t i = 0; i < m; i++) {
        const __m512i w = _mm512_set1_epi64((long long)t->iw[m + i]), wp = _mm512_set1_epi64((long long)t->iwp[m + i]);
        uint64_t *restrict x = a + 2 * i * len, *restrict y = x + len;
        for (size_t j = 0; j < len; j += 8) {
          const __m512i u = _mm512_loadu_si512(x + j), v = _mm512_loadu_si512(y + j);
          _mm512_storeu_si512(x + j, bt_csub8(_mm512_add_epi64(u, v), vq2));
          _mm512_storeu_si512(y + j, bt_mul_shoup_lazy8(_mm512_add_epi64(_mm512_sub_epi64(u, v), vq2), w, wp, vq));
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
      _mm512_storeu_si512(a + j0, bt_csub8(bt_mul_shoup_lazy8(_mm512_loadu_si512(a + j0), w, wp, vq), vq));
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

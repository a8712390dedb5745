/* AVX-512 helpers of the ring layer (internal).  There is no 64 x 64 -> 128
 * multiply in AVX-512: products come from 32 x 32 -> 64 multiplies
 * (vpmuludq).  Every kernel built on these gives, lane by lane, exactly the
 * residues of its scalar twin, so a build with and one without AVX-512 write
 * the same limbs. */
#ifndef BT_RING_SIMD_H
#define BT_RING_SIMD_H

#include <stdint.h>

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define BT_RING_VEC 1

/* high word of a x b, lane by lane */
static inline __m512i bt_mulhi64x8(__m512i a, __m512i b) {
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

/* x w mod q in [0, 2q) for any 64-bit x (bt_mul_shoup_lazy, 8 lanes) */
static inline __m512i bt_mul_shoup_lazy8(__m512i x, __m512i w, __m512i wp, __m512i q) {
  const __m512i h = bt_mulhi64x8(x, wp);
  return _mm512_sub_epi64(_mm512_mullo_epi64(x, w), _mm512_mullo_epi64(h, q));
}

/* x >= m ? x - m : x for x < 2^63 + m (unsigned min of x and x - m) */
static inline __m512i bt_csub8(__m512i x, __m512i m) { return _mm512_min_epu64(x, _mm512_sub_epi64(x, m)); }

/* A sum of up to BT_ACC8_TERMS products x y of values below 2^61, exact, 8
 * lanes.  With x = x1 2^32 + x0 and y = y1 2^32 + y0 the product is
 * x0 y0 + 2^32 (x0 y1 + x1 y0) + 2^64 x1 y1; the four partial products are
 * summed in separate 64-bit words (x0 y0 split in its two halves), and the
 * middle sums, below 7 x 2^61 after seven terms, are folded into the others
 * before they could overflow.  x1 and y1 (the high halves) are passed in,
 * since a caller usually reuses them. */
enum { BT_ACC8_TERMS = 32 };
typedef struct bt_acc8 {
  __m512i l, a, ma, mb, h; /* weights 1, 2^32, 2^32, 2^32, 2^64 */
  int pending;             /* terms in ma and mb since the last fold */
} bt_acc8;

static inline void bt_acc8_zero(bt_acc8 *s) {
  s->l = s->a = s->ma = s->mb = s->h = _mm512_setzero_si512();
  s->pending = 0;
}

static inline void bt_acc8_fold(bt_acc8 *s) {
  const __m512i m32 = _mm512_set1_epi64(0xffffffff);
  s->a = _mm512_add_epi64(s->a, _mm512_add_epi64(_mm512_and_si512(s->ma, m32), _mm512_and_si512(s->mb, m32)));
  s->h = _mm512_add_epi64(s->h, _mm512_add_epi64(_mm512_srli_epi64(s->ma, 32), _mm512_srli_epi64(s->mb, 32)));
  s->ma = s->mb = _mm512_setzero_si512();
  s->pending = 0;
}

static inline void bt_acc8_mac(bt_acc8 *s, __m512i x, __m512i x1, __m512i y, __m512i y1) {
  const __m512i m32 = _mm512_set1_epi64(0xffffffff);
  const __m512i p = _mm512_mul_epu32(x, y);
  s->l = _mm512_add_epi64(s->l, _mm512_and_si512(p, m32));
  s->a = _mm512_add_epi64(s->a, _mm512_srli_epi64(p, 32));
  s->ma = _mm512_add_epi64(s->ma, _mm512_mul_epu32(x, y1));
  s->mb = _mm512_add_epi64(s->mb, _mm512_mul_epu32(x1, y));
  s->h = _mm512_add_epi64(s->h, _mm512_mul_epu32(x1, y1));
  if (++s->pending == 7) bt_acc8_fold(s);
}

/* Constants to reduce a sum modulo q: q, 2q, 2^64 mod q and Shoup forms. */
typedef struct bt_red8 {
  __m512i q, q2, r, rp, onep;
} bt_red8;

/* The scalars behind them (three 128-bit divisions: computed once per call
 * of a kernel, not per block). */
static inline void bt_red8_consts(uint64_t q, uint64_t out[3]) {
  const uint64_t r = (uint64_t)((((unsigned __int128)1) << 64) % q);
  out[0] = r;
  out[1] = (uint64_t)(((unsigned __int128)r << 64) / q);
  out[2] = (uint64_t)((((unsigned __int128)1) << 64) / q);
}

static inline bt_red8 bt_red8_load(const uint64_t k[3], uint64_t q) {
  bt_red8 c;
  c.q = _mm512_set1_epi64((long long)q);
  c.q2 = _mm512_set1_epi64((long long)(2 * q));
  c.r = _mm512_set1_epi64((long long)k[0]);
  c.rp = _mm512_set1_epi64((long long)k[1]);
  c.onep = _mm512_set1_epi64((long long)k[2]);
  return c;
}

/* The sum modulo q in [0, q): the 128-bit value hi 2^64 + lo is assembled
 * from the partial sums, then hi (2^64 mod q) + lo is reduced with two Shoup
 * products (the second by 1: a plain Barrett step). */
static inline __m512i bt_acc8_reduce(const bt_acc8 *s, const bt_red8 *c) {
  const __m512i m32 = _mm512_set1_epi64(0xffffffff);
  const __m512i t = _mm512_add_epi64(_mm512_add_epi64(s->a, _mm512_srli_epi64(s->l, 32)),
                                     _mm512_add_epi64(_mm512_and_si512(s->ma, m32), _mm512_and_si512(s->mb, m32)));
  const __m512i hi = _mm512_add_epi64(_mm512_add_epi64(s->h, _mm512_srli_epi64(t, 32)),
                                      _mm512_add_epi64(_mm512_srli_epi64(s->ma, 32), _mm512_srli_epi64(s->mb, 32)));
  const __m512i lo = _mm512_or_si512(_mm512_slli_epi64(t, 32), _mm512_and_si512(s->l, m32));
  const __m512i v = _mm512_add_epi64(bt_mul_shoup_lazy8(hi, c->r, c->rp, c->q),
                                     bt_mul_shoup_lazy8(lo, _mm512_set1_epi64(1), c->onep, c->q));
  return bt_csub8(bt_csub8(v, c->q2), c->q);
}
#else
#define BT_RING_VEC 0
#endif

#endif

/* Element-wise kernels over one limb: sums of limb products modulo one prime
 * (the inner product of a key switch, the digits against the key, and the
 * baby-step sums of a double-hoisted linear transform, the diagonals against
 * the rotated ciphertexts), and the residues of signed coefficients. */
#include "blindtuner/ring.h"
#include "ring/simd.h"

/* terms <= BT_DOT_CHUNK keeps the scalar 128-bit sums (products below 2^122)
 * and the vector accumulator (bt_acc8) from overflowing */
enum { BT_DOT_CHUNK = 32 };

static void dot2_scalar(const bt_modulus *m, size_t from, size_t len, size_t terms, const uint64_t *const *x,
                        const uint32_t *perm, const uint64_t *const *k0, const uint64_t *const *k1,
                        uint64_t *out0, uint64_t *out1, int add) {
  for (size_t i = from; i < len; i++) {
    const size_t xi = perm ? perm[i] : i;
    bt_u128 s0 = 0, s1 = 0;
    for (size_t j = 0; j < terms; j++) {
      s0 += (bt_u128)x[j][xi] * k0[j][i];
      s1 += (bt_u128)x[j][xi] * k1[j][i];
    }
    const uint64_t r0 = bt_mod_reduce128(s0, m), r1 = bt_mod_reduce128(s1, m);
    out0[i] = add ? bt_mod_add(out0[i], r0, m->q) : r0;
    out1[i] = add ? bt_mod_add(out1[i], r1, m->q) : r1;
  }
}

#if BT_RING_VEC
/* With a permutation, each block of PBLK coefficients of every x_j is first
 * gathered into a buffer with scalar loads: AVX-512 gathers of the
 * automorphisms' scattered indices were the bottleneck of a rotation. */
enum { PBLK = 64 };

static size_t dot2_vec(const bt_modulus *m, size_t len, size_t terms, const uint64_t *const *x,
                       const uint32_t *perm, const uint64_t *const *k0, const uint64_t *const *k1,
                       uint64_t *out0, uint64_t *out1, int add) {
  uint64_t kc[3];
  bt_red8_consts(m->q, kc);
  const bt_red8 red = bt_red8_load(kc, m->q);
  uint64_t xp[BT_DOT_CHUNK][PBLK] __attribute__((aligned(64)));
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    const size_t pb = i % PBLK;
    if (perm && pb == 0) {
      const size_t cnt = len - i < PBLK ? (len - i) / 8 * 8 : PBLK;
      for (size_t j = 0; j < terms; j++)
        for (size_t c = 0; c < cnt; c++) xp[j][c] = x[j][perm[i + c]];
    }
    bt_acc8 s0, s1;
    bt_acc8_zero(&s0);
    bt_acc8_zero(&s1);
    for (size_t j = 0; j < terms; j++) {
      const __m512i v = perm ? _mm512_load_si512(xp[j] + pb) : _mm512_loadu_si512(x[j] + i);
      const __m512i v1 = _mm512_srli_epi64(v, 32);
      const __m512i a = _mm512_loadu_si512(k0[j] + i), b = _mm512_loadu_si512(k1[j] + i);
      bt_acc8_mac(&s0, v, v1, a, _mm512_srli_epi64(a, 32));
      bt_acc8_mac(&s1, v, v1, b, _mm512_srli_epi64(b, 32));
    }
    __m512i r0 = bt_acc8_reduce(&s0, &red), r1 = bt_acc8_reduce(&s1, &red);
    if (add) {
      r0 = bt_csub8(_mm512_add_epi64(r0, _mm512_loadu_si512(out0 + i)), red.q);
      r1 = bt_csub8(_mm512_add_epi64(r1, _mm512_loadu_si512(out1 + i)), red.q);
    }
    _mm512_storeu_si512(out0 + i, r0);
    _mm512_storeu_si512(out1 + i, r1);
  }
  return i;
}
#endif

void bt_limb_dot2(const bt_modulus *m, size_t len, size_t terms, const uint64_t *const *x, const uint32_t *perm,
                  const uint64_t *const *k0, const uint64_t *const *k1, uint64_t *out0, uint64_t *out1,
                  int accumulate) {
  if (terms == 0) {
    if (!accumulate)
      for (size_t i = 0; i < len; i++) out0[i] = out1[i] = 0;
    return;
  }
  /* chunks of at most BT_DOT_CHUNK terms, the later ones added modulo q */
  for (size_t t0 = 0; t0 < terms; t0 += BT_DOT_CHUNK) {
    const size_t nt = terms - t0 < BT_DOT_CHUNK ? terms - t0 : BT_DOT_CHUNK;
    const int add = accumulate || t0 > 0;
    size_t done = 0;
#if BT_RING_VEC
    done = dot2_vec(m, len, nt, x + t0, perm, k0 + t0, k1 + t0, out0, out1, add);
#endif
    if (done < len) dot2_scalar(m, done, len, nt, x + t0, perm, k0 + t0, k1 + t0, out0, out1, add);
  }
}

void bt_limb_from_signed(const bt_modulus *m, const int64_t *in, size_t len, uint64_t *out) {
  const uint64_t q = m->q;
  size_t i = 0;
#if BT_RING_VEC
  /* |v| mod q by a Shoup product with 1 (a Barrett step), negated where v < 0 */
  const __m512i vq = _mm512_set1_epi64((long long)q), one = _mm512_set1_epi64(1),
                onep = _mm512_set1_epi64((long long)(uint64_t)((((bt_u128)1) << 64) / q));
  for (; i + 8 <= len; i += 8) {
    const __m512i v = _mm512_loadu_si512(in + i);
    const __mmask8 neg = _mm512_cmplt_epi64_mask(v, _mm512_setzero_si512());
    const __m512i r = bt_csub8(bt_mul_shoup_lazy8(_mm512_abs_epi64(v), one, onep, vq), vq);
    const __m512i nr = bt_csub8(_mm512_sub_epi64(vq, r), vq); /* q - r, and 0 for r = 0 */
    _mm512_storeu_si512(out + i, _mm512_mask_blend_epi64(neg, r, nr));
  }
#endif
  for (; i < len; i++) {
    const int64_t v = in[i];
    const uint64_t a = v < 0 ? q - bt_mod_reduce64(0 - (uint64_t)v, m) : bt_mod_reduce64((uint64_t)v, m);
    out[i] = a == q ? 0 : a;
  }
}

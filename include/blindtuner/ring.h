/* ring: arithmetic in Z_q[X]/(X^N + 1) with q an RNS product of word-size
 * NTT-friendly primes.
 *
 * - Primes q = 1 mod 2N below 2^61, so lazy values in [0, 4q) fit a word
 *   (Harvey, "Faster arithmetic for number-theoretic transforms", 2014).
 * - Multiplication by a fixed operand w uses Shoup's precomputed
 *   w' = floor(w 2^64 / q); general products use Barrett reduction of the
 *   128-bit product with floor(2^128 / q).
 * - The negacyclic NTT evaluates a polynomial at the odd powers of a
 *   primitive 2N-th root psi; slot i of the output holds A(psi^(2 brv(i) + 1))
 *   (brv: bit reversal on log2 N bits).  Automorphisms X -> X^k therefore act
 *   on NTT vectors as index permutations (bt_ntt_automorphism_index).
 * - Fast basis extension (Halevi-Polyakov-Shoup / Bajard et al.): from a
 *   basis B to a basis C, x -> sum_i [x_i (B/b_i)^-1]_{b_i} (B/b_i) mod c_j,
 *   exact up to a small multiple u*B with 0 <= u < |B|, which hybrid key
 *   switching absorbs in its noise. */
#ifndef BLINDTUNER_RING_H
#define BLINDTUNER_RING_H

#include <stddef.h>
#include <stdint.h>

#include "blindtuner/status.h"
#include "blindtuner/util.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BT_MAX_PRIME_BITS 61

typedef unsigned __int128 bt_u128;

typedef struct bt_modulus {
  uint64_t q;
  uint64_t ratio_hi, ratio_lo; /* floor(2^128 / q) */
  int bits;
} bt_modulus;

BT_API bt_status bt_modulus_init(bt_modulus *m, uint64_t q) BT_MUST_CHECK;

static inline uint64_t bt_mod_add(uint64_t a, uint64_t b, uint64_t q) {
  uint64_t s = a + b;
  return s >= q ? s - q : s;
}
static inline uint64_t bt_mod_sub(uint64_t a, uint64_t b, uint64_t q) {
  return a >= b ? a - b : a + q - b;
}
static inline uint64_t bt_mod_neg(uint64_t a, uint64_t q) { return a ? q - a : 0; }

/* Barrett reduction of a 128-bit value; result in [0, q). */
static inline uint64_t bt_mod_reduce128(bt_u128 x, const bt_modulus *m) {
  uint64_t x0 = (uint64_t)x, x1 = (uint64_t)(x >> 64);
  /* quotient estimate floor(x * ratio / 2^128), off by at most one */
  bt_u128 t = (bt_u128)x0 * m->ratio_lo;
  uint64_t carry = (uint64_t)(t >> 64);
  t = (bt_u128)x0 * m->ratio_hi + carry;
  uint64_t mid = (uint64_t)t, hi = (uint64_t)(t >> 64);
  t = (bt_u128)x1 * m->ratio_lo + mid;
  hi += (uint64_t)(t >> 64);
  uint64_t qhat = x1 * m->ratio_hi + hi;
  uint64_t r = x0 - qhat * m->q; /* in [0, 3q): the estimate is low by at most 2 */
  r = r >= m->q ? r - m->q : r;
  return r >= m->q ? r - m->q : r;
}
/* Reduction of a single word. */
static inline uint64_t bt_mod_reduce64(uint64_t x, const bt_modulus *m) {
  uint64_t qhat = (uint64_t)(((bt_u128)x * m->ratio_hi) >> 64);
  uint64_t r = x - qhat * m->q;
  r = r >= m->q ? r - m->q : r;
  return r >= m->q ? r - m->q : r;
}
static inline uint64_t bt_mod_mul(uint64_t a, uint64_t b, const bt_modulus *m) {
  return bt_mod_reduce128((bt_u128)a * b, m);
}
/* Shoup: w' = floor(w 2^64 / q) for w < q. */
static inline uint64_t bt_shoup(uint64_t w, uint64_t q) {
  return (uint64_t)(((bt_u128)w << 64) / q);
}
/* x*w mod q in [0, 2q) for any 64-bit x. */
static inline uint64_t bt_mul_shoup_lazy(uint64_t x, uint64_t w, uint64_t wp, uint64_t q) {
  uint64_t h = (uint64_t)(((bt_u128)x * wp) >> 64);
  return x * w - h * q;
}
static inline uint64_t bt_mul_shoup(uint64_t x, uint64_t w, uint64_t wp, uint64_t q) {
  uint64_t r = bt_mul_shoup_lazy(x, w, wp, q);
  return r >= q ? r - q : r;
}

BT_API uint64_t bt_mod_pow(uint64_t a, uint64_t e, const bt_modulus *m);
/* Inverse modulo a prime (Fermat); 0 has no inverse and returns 0. */
BT_API uint64_t bt_mod_inv(uint64_t a, const bt_modulus *m);
/* Deterministic Miller-Rabin for 64-bit integers. */
BT_API int bt_is_prime(uint64_t n);

/* Finds `count` distinct primes of exactly `bits` bits with q = 1 mod 2N,
 * searching downward from 2^bits, skipping any already in `avoid`. */
BT_API bt_status bt_primes_generate(int bits, int logn, size_t count, const uint64_t *avoid,
                                    size_t navoid, uint64_t *out) BT_MUST_CHECK;

/* ---- NTT ---- */
typedef struct bt_ntt_table {
  bt_modulus mod;
  int logn;
  size_t n;
  uint64_t psi;          /* primitive 2N-th root of unity used */
  uint64_t *w, *wp;      /* psi^brv(k), Shoup form; k in [0, N) */
  uint64_t *iw, *iwp;    /* psi^-brv(k) (for the Gentleman-Sande inverse) */
  uint64_t ninv, ninvp;  /* N^-1 mod q */
} bt_ntt_table;

BT_API bt_status bt_ntt_table_init(bt_ntt_table *t, uint64_t q, int logn) BT_MUST_CHECK;
BT_API void bt_ntt_table_free(bt_ntt_table *t);
/* In place; input and output in [0, q). */
BT_API void bt_ntt_forward(const bt_ntt_table *t, uint64_t *a);
BT_API void bt_ntt_inverse(const bt_ntt_table *t, uint64_t *a);
/* Reference O(N^2) evaluation in the same output order (tests only). */
BT_API void bt_ntt_naive(const bt_ntt_table *t, const uint64_t *in, uint64_t *out);

/* Permutation for the automorphism X -> X^k (k odd) on NTT vectors:
 * out[i] = in[idx[i]].  idx has N entries. */
BT_API void bt_ntt_automorphism_index(int logn, uint64_t k, uint32_t *idx);
/* Coefficient-domain automorphism (reference), for one limb. */
BT_API void bt_poly_automorphism_coeff(const uint64_t *in, uint64_t *out, size_t n, uint64_t k,
                                       uint64_t q);

/* ---- RNS basis extension ---- */
typedef struct bt_rns_conv {
  size_t k, m;            /* source and target sizes */
  bt_modulus *from, *to;
  uint64_t *hinv, *hinvp; /* (B/b_i)^-1 mod b_i, Shoup form */
  uint64_t *h;            /* (B/b_i) mod c_j at [j*k + i] */
  uint64_t *bmod;         /* B mod c_j */
  double *binv;           /* 1 / b_i */
} bt_rns_conv;

BT_API bt_status bt_rns_conv_init(bt_rns_conv *c, const uint64_t *from, size_t k, const uint64_t *to,
                                  size_t m) BT_MUST_CHECK;
BT_API void bt_rns_conv_free(bt_rns_conv *c);
/* in: k limbs of n coefficients (coefficient form, [0, b_i)); out: m limbs.
 * Only target limbs with mask[j] != 0 are written when mask is non-NULL.
 * Parallel over coefficient blocks with `threads` OpenMP threads. */
BT_API void bt_rns_conv_apply(const bt_rns_conv *c, const uint64_t *in, uint64_t *out, size_t n,
                              const uint8_t *mask, int threads);
/* The same, but exact and centred: the fast conversion above returns
 * x + u B for some 0 <= u < k (harmless in ModUp, where it is multiplied by
 * the key's small error and divided by P); this one returns the residues of
 * the centred representative of x in (-B/2, B/2] (u found in floating point
 * as round(sum_i y_i / b_i), as Halevi-Polyakov-Shoup), which makes ModDown a
 * rounding division with error at most 1/2 instead of about k/2. */
BT_API void bt_rns_conv_apply_exact(const bt_rns_conv *c, const uint64_t *in, uint64_t *out, size_t n,
                                    const uint8_t *mask, int threads);

/* out0[i] = sum_j x_j[i'] k0_j[i] mod q and out1[i] = sum_j x_j[i'] k1_j[i]
 * mod q for i < len, where i' = perm[i] when perm is non-NULL, else i;
 * every input below q.  The inner product of a key switch and the sums of a
 * double-hoisted linear transform: AVX-512 where the build has it, with the
 * scalar loop's residues.  accumulate = 1 adds the sums to out0 and out1
 * modulo q instead of overwriting them. */
BT_API void bt_limb_dot2(const bt_modulus *m, size_t len, size_t terms, const uint64_t *const *x,
                         const uint32_t *perm, const uint64_t *const *k0, const uint64_t *const *k1,
                         uint64_t *out0, uint64_t *out1, int accumulate);
/* out[i] = in[i] mod q in [0, q) for signed 64-bit coefficients (INT64_MIN
 * excluded), i < len. */
BT_API void bt_limb_from_signed(const bt_modulus *m, const int64_t *in, size_t len, uint64_t *out);

/* Exact CRT: centred value of one coefficient given its k residues, as a
 * long double.  `crt` precomputes the basis. */
typedef struct bt_crt {
  size_t k;
  bt_modulus *mod;
  uint64_t *hinv;   /* (Q/q_i)^-1 mod q_i */
  uint64_t *hat;    /* Q/q_i as k-word integers, [i*k .. i*k+k) little endian */
  uint64_t *Q;      /* k words */
  uint64_t *halfQ;  /* k words, floor(Q/2) */
} bt_crt;
BT_API bt_status bt_crt_init(bt_crt *c, const uint64_t *q, size_t k) BT_MUST_CHECK;
BT_API void bt_crt_free(bt_crt *c);
/* residues[i] for i < k; scratch of at least 2k+2 words. */
BT_API long double bt_crt_centered(const bt_crt *c, const uint64_t *residues, uint64_t *scratch);

/* ---- sampling ----
 * Secret-dependent sampling is constant-time: no branch or memory index
 * depends on a sampled value. */
/* Uniform mod each q_i, `limbs` limbs of n values (also valid as NTT values). */
BT_API void bt_sample_uniform(bt_prng *g, const bt_modulus *mods, size_t limbs, size_t n, uint64_t *out);
/* Uniform ternary {-1, 0, 1}. */
BT_API void bt_sample_ternary(bt_prng *g, size_t n, int8_t *out);
/* Ternary with exactly h non-zero coefficients (h <= n, n a power of two). */
BT_API bt_status bt_sample_ternary_hw(bt_prng *g, size_t n, size_t h, int8_t *out) BT_MUST_CHECK;
/* Rounded Gaussian of standard deviation 3.2, tail cut at 19 (about 6 sigma). */
BT_API void bt_sample_gaussian(bt_prng *g, size_t n, int8_t *out);
/* Small signed values to RNS residues, constant-time: out[i*n + j] = v[j] mod q_i. */
BT_API void bt_small_to_rns(const int8_t *v, const bt_modulus *mods, size_t limbs, size_t n,
                            uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif

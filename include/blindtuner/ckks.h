/* ckks: the RNS-CKKS scheme (Cheon-Kim-Kim-Song 2017, full-RNS variant of
 * Cheon-Han-Kim-Kim-Song 2018) with hybrid key switching (Han-Ki 2020).
 *
 * Parameters come in two forms: a plain literal struct (bt_ckks_literal) and
 * a validated, immutable handle (bt_ckks_params) holding the primes, NTT
 * tables and precomputed constants.  Ciphertexts and plaintexts are kept in
 * NTT form, one limb of N words per prime.
 *
 * Encoding: a vector z of n = 2^logslots complex numbers (n <= N/2) is placed
 * in a polynomial m(Y), Y = X^(N/2n), of degree < 2n with real coefficients,
 * such that z_j = m(w^(5^j)) for w = exp(2 pi i / 4n).  Rotating slots by r
 * is the automorphism X -> X^(5^r mod 2N); conjugation is X -> X^-1.
 *
 * Key switching: Q = q_0..q_L, P = p_0..p_{alpha-1}, the ciphertext primes
 * split into dnum digits of alpha primes.  A switching key holds, for each
 * digit j, (-a_j s + e_j + P e_j(Q) s', a_j) mod QP where e_j(Q) is the CRT
 * idempotent of digit j, so the same key serves every level. */
#ifndef BLINDTUNER_CKKS_H
#define BLINDTUNER_CKKS_H

#include <complex.h>
#include <stddef.h>
#include <stdint.h>

#include "blindtuner/ring.h"
#include "blindtuner/status.h"
#include "blindtuner/util.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BT_MAX_PRIMES 64
#define BT_PARAMS_HASH_BYTES 32

typedef enum bt_secret_dist {
  BT_SECRET_TERNARY = 0, /* uniform ternary */
  BT_SECRET_SPARSE = 1   /* ternary with fixed Hamming weight */
} bt_secret_dist;

/* Unchecked parameter description.  Primes are generated deterministically
 * from the bit sizes (largest primes = 1 mod 2N below 2^bits), so a literal
 * names one parameter set exactly. */
typedef struct bt_ckks_literal {
  const char *name;         /* preset name, informational */
  int logn;                 /* log2 of the ring degree N */
  int nq;                   /* ciphertext primes q_0..q_{nq-1}; max level = nq - 1 */
  int q_bits[BT_MAX_PRIMES];/* bit size of each q_i; q_0 is the base prime */
  int dnum;                 /* key-switching digits; alpha = ceil(nq/dnum) special primes */
  int p_bits;               /* bit size of each special prime */
  int log_scale;            /* default scale 2^log_scale */
  bt_secret_dist secret;
  int hamming_weight;       /* for BT_SECRET_SPARSE */
  int insecure;             /* 1 for test-only parameters below 128-bit security */
} bt_ckks_literal;

typedef struct bt_ckks_params bt_ckks_params;

/* Flags for bt_ckks_params_new. */
#define BT_ALLOW_INSECURE 1u

/* Named presets.  "bench-n16" is the benchmark setting (N = 2^16,
 * 25 ciphertext limbs, dnum = 3) and meets the HE Standard 128-bit bound;
 * names starting with "INSECURE" are tiny parameters for tests. */
BT_API bt_status bt_ckks_preset(const char *name, bt_ckks_literal *out) BT_MUST_CHECK;
/* Names of all presets, NULL-terminated. */
BT_API const char *const *bt_ckks_preset_names(void);

/* Validates `lit` and builds the handle.  INSECURE parameters are refused
 * with BT_E_INSECURE unless `flags` has BT_ALLOW_INSECURE. */
BT_API bt_status bt_ckks_params_new(const bt_ckks_literal *lit, unsigned flags,
                                    bt_ckks_params **out) BT_MUST_CHECK;
BT_API void bt_ckks_params_free(bt_ckks_params *p);

BT_API int bt_ckks_logn(const bt_ckks_params *p);
BT_API size_t bt_ckks_n(const bt_ckks_params *p);
BT_API int bt_ckks_max_level(const bt_ckks_params *p);
BT_API int bt_ckks_num_special(const bt_ckks_params *p);
BT_API int bt_ckks_dnum(const bt_ckks_params *p);
/* Key-switching digits of a ciphertext at `level` (1..dnum). */
BT_API int bt_ckks_digits_at(const bt_ckks_params *p, int level);
BT_API double bt_ckks_default_scale(const bt_ckks_params *p);
BT_API double bt_ckks_log_qp(const bt_ckks_params *p);
BT_API uint64_t bt_ckks_q(const bt_ckks_params *p, int i);
BT_API uint64_t bt_ckks_p(const bt_ckks_params *p, int i);
BT_API const bt_ckks_literal *bt_ckks_literal_of(const bt_ckks_params *p);
/* The modulus and NTT table of prime i, over all primes of QP in the order
 * q_0..q_L, p_0..p_{alpha-1} (i = max level + 1 + j is special prime j);
 * NULL when i is out of range.  Owned by the handle. */
BT_API const bt_modulus *bt_ckks_modulus(const bt_ckks_params *p, int i);
BT_API const bt_ntt_table *bt_ckks_ntt_table(const bt_ckks_params *p, int i);
/* Limbs first..first+count-1 (prime indices over q_0.., p_0..) of the
 * uniform polynomial a public seed expands to, in NTT form: the "a" of
 * seeded keys and fresh secret-key ciphertexts (docs/FORMAT.md gives the
 * stream).  Serialisation re-expands them with it. */
BT_API void bt_ckks_expand_uniform(const bt_ckks_params *p, const uint8_t seed[BT_SEED_BYTES], uint64_t *out,
                                   int first, int count);
/* A small signed polynomial (a secret key's coefficients) as NTT limbs
 * first..first+count-1. */
BT_API void bt_ckks_small_to_ntt(const bt_ckks_params *p, const int8_t *v, uint64_t *out, int first, int count);
/* 32-byte hash naming the parameter set (primes, ring, secret distribution,
 * key-switching digit split). */
BT_API const uint8_t *bt_ckks_params_hash(const bt_ckks_params *p);
/* Largest log2 QP the HE Standard allows at 128-bit security for this N
 * (uniform ternary secret), or 0 if N is outside the table. */
BT_API int bt_ckks_he_standard_max_logqp(int logn);
/* The one mutable setting: OpenMP threads used by operations on objects of
 * these parameters (0 = bt_default_threads()). */
BT_API void bt_ckks_set_threads(bt_ckks_params *p, int threads);
BT_API int bt_ckks_threads(const bt_ckks_params *p);

/* ---- plaintexts and ciphertexts ---- */
typedef struct bt_plaintext {
  const bt_ckks_params *params;
  int level;       /* limbs in use: level + 1 */
  int logslots;
  double scale;
  uint64_t *c;     /* (max level + 1) * N words, NTT form */
  uint64_t *cp;    /* NULL, or the special primes' limbs (bt_ckks_encode_qp) */
  int secret;      /* 1: c in guarded memory, and decoding keeps its temporaries there too */
} bt_plaintext;

typedef struct bt_ciphertext {
  const bt_ckks_params *params;
  int level;
  int degree;      /* 1: (c0, c1); 2: (c0, c1, c2) before relinearisation */
  int logslots;
  double scale;
  uint64_t *c[3];  /* each (max level + 1) * N words, NTT form */
  int seeded;      /* 1: c[1] was expanded from `seed` (fresh secret-key encryption) */
  uint8_t seed[BT_SEED_BYTES];
} bt_ciphertext;

BT_API bt_status bt_plaintext_new(const bt_ckks_params *p, bt_plaintext **out) BT_MUST_CHECK;
/* A plaintext for decrypted values (the client's side): its limbs, and the
 * decoder's temporaries when it is decoded, in guarded memory
 * (bt_alloc_locked: locked, out of core dumps, wiped on free).  Slower to
 * allocate; not for the server's plaintexts. */
BT_API bt_status bt_plaintext_new_secret(const bt_ckks_params *p, bt_plaintext **out) BT_MUST_CHECK;
BT_API void bt_plaintext_free(bt_plaintext *pt);
BT_API bt_status bt_ciphertext_new(const bt_ckks_params *p, bt_ciphertext **out) BT_MUST_CHECK;
BT_API void bt_ciphertext_free(bt_ciphertext *ct);
/* dst becomes a copy of src (output last, as everywhere). */
BT_API bt_status bt_ciphertext_copy(const bt_ciphertext *src, bt_ciphertext *dst) BT_MUST_CHECK;

/* ---- encoder ---- */
/* Encodes `count` <= 2^logslots values (the rest are zero) at `level` and
 * `scale`.  logslots in [0, logN - 1]. */
BT_API bt_status bt_ckks_encode(const bt_ckks_params *p, const double complex *values, size_t count,
                                int logslots, int level, double scale, bt_plaintext *out) BT_MUST_CHECK;
/* The same, and also modulo the special primes P: the plaintext can then
 * multiply a ciphertext held over Q_l P, which bt_eval_bsgs needs. */
/* The N coefficients of the encoding bt_ckks_encode makes (before any
 * reduction), as signed integers: for bt_eval_bsgs_coeffs, whose diagonals
 * then take N words instead of N words per prime.  Refused (BT_E_SCALE) if a
 * coefficient reaches 2^63. */
BT_API bt_status bt_ckks_encode_coeffs(const bt_ckks_params *p, const double complex *values, size_t count,
                                       int logslots, double scale, int64_t *out) BT_MUST_CHECK;
BT_API bt_status bt_ckks_encode_qp(const bt_ckks_params *p, const double complex *values, size_t count,
                                   int logslots, int level, double scale, bt_plaintext *out) BT_MUST_CHECK;
BT_API bt_status bt_ckks_encode_real(const bt_ckks_params *p, const double *values, size_t count,
                                     int logslots, int level, double scale,
                                     bt_plaintext *out) BT_MUST_CHECK;
/* Writes 2^logslots values. */
BT_API bt_status bt_ckks_decode(const bt_plaintext *pt, double complex *out) BT_MUST_CHECK;
BT_API bt_status bt_ckks_decode_real(const bt_plaintext *pt, double *out) BT_MUST_CHECK;

/* ---- keys ---- */
typedef struct bt_secret_key {
  const bt_ckks_params *params;
  uint64_t *s;     /* (nq + alpha) limbs, NTT form; wiped on free */
} bt_secret_key;

typedef struct bt_public_key {
  const bt_ckks_params *params;
  uint64_t *b, *a; /* nq limbs each, NTT form; a expanded from seed */
  uint8_t seed[BT_SEED_BYTES];
} bt_public_key;

/* A switching key serves ciphertexts up to its `level`.  A full key (level
 * = max level) holds every prime; a level-limited one holds only what a
 * switch at that level reads: the digits of Q_level, each over q_0..q_level
 * and the special primes -- the full key's rows for those primes.  Training
 * rotates on the low primes only, so its keys are a fraction of full size. */
typedef struct bt_switch_key {
  const bt_ckks_params *params;
  uint64_t galois;  /* automorphism X -> X^galois; 0 for relinearisation */
  int level;        /* highest ciphertext level it switches */
  int digits;       /* digits at that level (dnum for a full key) */
  uint64_t **b, **a;/* per digit: level + 1 + alpha limbs (q_0..q_level, then
                     * the special primes), NTT form */
  uint8_t (*seeds)[BT_SEED_BYTES];
} bt_switch_key;

/* The evaluation keys a server holds: relinearisation and Galois keys. */
typedef struct bt_eval_keys {
  const bt_ckks_params *params;
  bt_switch_key *relin;     /* may be NULL */
  bt_switch_key **galois;   /* rotation and conjugation keys */
  size_t ngalois, cap;
} bt_eval_keys;

/* Key generation draws from `g` (seeded for reproducible tests, or
 * bt_prng_init_random). */
BT_API bt_status bt_keygen_secret(const bt_ckks_params *p, bt_prng *g, bt_secret_key **out) BT_MUST_CHECK;
BT_API bt_status bt_keygen_public(const bt_secret_key *sk, bt_prng *g, bt_public_key **out) BT_MUST_CHECK;
BT_API bt_status bt_keygen_relin(const bt_secret_key *sk, bt_prng *g, bt_switch_key **out) BT_MUST_CHECK;
BT_API bt_status bt_keygen_galois(const bt_secret_key *sk, uint64_t galois, bt_prng *g,
                                  bt_switch_key **out) BT_MUST_CHECK;
BT_API void bt_secret_key_free(bt_secret_key *sk);
BT_API void bt_public_key_free(bt_public_key *pk);
BT_API void bt_switch_key_free(bt_switch_key *k);
/* Allocates an empty full switching key with all buffers (for
 * deserialisation); _level, one serving levels 0..level. */
BT_API bt_status bt_switch_key_alloc(const bt_ckks_params *p, uint64_t galois,
                                     bt_switch_key **out) BT_MUST_CHECK;
BT_API bt_status bt_switch_key_alloc_level(const bt_ckks_params *p, uint64_t galois, int level,
                                           bt_switch_key **out) BT_MUST_CHECK;
/* Expands every a_j of k from its seed: one ChaCha20 stream per digit over
 * the key's primes in order (q_0..q_level, then the special primes). */
BT_API void bt_switch_key_expand(bt_switch_key *k);
/* Bytes of the b and a polynomials of a switching key at `level` in memory
 * (what bt_switch_key_alloc_level allocates). */
BT_API uint64_t bt_switch_key_memory(const bt_ckks_params *p, int level);
BT_API bt_status bt_public_key_alloc(const bt_ckks_params *p, bt_public_key **out) BT_MUST_CHECK;
BT_API bt_status bt_secret_key_alloc(const bt_ckks_params *p, bt_secret_key **out) BT_MUST_CHECK;

/* Sparse-secret encapsulation (Bossuat et al., 2022).  Bootstrapping a
 * ciphertext under a dense secret s would need a huge EvalMod range, so its
 * level-0 form is switched to an ephemeral sparse secret s' (Hamming weight
 * h) before ModRaise and back to s right after.  The key to s' lives only
 * modulo q_0 p_0: a sparse-secret RLWE sample is published at a ~120-bit
 * modulus only, where it is far from any known attack; the key back to s
 * encrypts s' under the dense s like any switching key.  s' exists only
 * inside bt_keygen_encapsulation and is wiped there. */
typedef struct bt_encaps_key {
  const bt_ckks_params *params;
  int hamming_weight;      /* of s' */
  uint64_t *b, *a;         /* limbs mod q_0 and mod p_0, NTT form */
  uint8_t seed[BT_SEED_BYTES];
} bt_encaps_key;

BT_API bt_status bt_keygen_encapsulation(const bt_secret_key *sk, int hamming_weight, bt_prng *g,
                                         bt_encaps_key **to_sparse, bt_switch_key **to_dense) BT_MUST_CHECK;
BT_API void bt_encaps_key_free(bt_encaps_key *k);

/* Galois element for a left rotation by `step` slots (negative: right). */
BT_API uint64_t bt_ckks_galois_rotate(const bt_ckks_params *p, int step);
/* Galois element of complex conjugation (2N - 1). */
BT_API uint64_t bt_ckks_galois_conjugate(const bt_ckks_params *p);

BT_API bt_status bt_eval_keys_new(const bt_ckks_params *p, bt_eval_keys **out) BT_MUST_CHECK;
BT_API void bt_eval_keys_free(bt_eval_keys *ek);
/* Takes ownership of `k` (also on failure). */
BT_API bt_status bt_eval_keys_add(bt_eval_keys *ek, bt_switch_key *k) BT_MUST_CHECK;
BT_API const bt_switch_key *bt_eval_keys_find(const bt_eval_keys *ek, uint64_t galois);
/* The keys bt_keygen_eval_levels makes, in its order: 0 (relinearisation)
 * if `relin`, the Galois elements of `steps` without the identity and
 * without repeats, then conjugation if `conj`.  Writes at most nsteps + 2
 * elements into galois and returns how many.  levels[i] is the highest
 * level step i is used at (levels NULL: the max level for all); a step that
 * repeats gets the highest of its levels; relinearisation and conjugation
 * are full keys.  klevels (may be NULL) receives each key's level. */
BT_API size_t bt_keygen_eval_plan(const bt_ckks_params *p, int relin, const int *steps, const int *levels,
                                  size_t nsteps, int conj, uint64_t *galois, int *klevels);
/* One switching key (galois 0: relinearisation) serving levels 0..level,
 * drawn from a PRNG on its own 32-byte seed: the same seed gives the same
 * key.  When *k is a key of these parameters and level its buffers are
 * reused (and its Galois element set); when it is NULL, or of another
 * level, a new key is allocated into it (the old one freed). */
BT_API bt_status bt_keygen_switch_seeded(const bt_secret_key *sk, uint64_t galois, int level,
                                         const uint8_t seed[BT_SEED_BYTES], bt_switch_key **k) BT_MUST_CHECK;
/* Generates the keys of bt_keygen_eval_plan into `ek`, skipping those it
 * has at a level as high: a 32-byte seed per key is drawn from g in the
 * plan's order, then the keys are made from their seeds
 * (bt_keygen_switch_seeded) on the parameters' threads, so the keys do not
 * depend on the thread count.  bt_keygen_eval makes full keys. */
BT_API bt_status bt_keygen_eval_levels(const bt_secret_key *sk, bt_prng *g, int relin, const int *steps,
                                       const int *levels, size_t nsteps, int conj, bt_eval_keys *ek) BT_MUST_CHECK;
BT_API bt_status bt_keygen_eval(const bt_secret_key *sk, bt_prng *g, int relin, const int *steps,
                                size_t nsteps, int conj, bt_eval_keys *ek) BT_MUST_CHECK;

/* ---- encryption ---- */
/* Public-key encryption: (v b + e0 + m, v a + e1). */
BT_API bt_status bt_encrypt_pk(const bt_public_key *pk, const bt_plaintext *pt, bt_prng *g,
                               bt_ciphertext *out) BT_MUST_CHECK;
/* Secret-key encryption: (-a s + e + m, a) with a expanded from a fresh seed,
 * so the ciphertext serialises at half size. */
BT_API bt_status bt_encrypt_sk(const bt_secret_key *sk, const bt_plaintext *pt, bt_prng *g,
                               bt_ciphertext *out) BT_MUST_CHECK;
BT_API bt_status bt_decrypt(const bt_secret_key *sk, const bt_ciphertext *ct,
                            bt_plaintext *out) BT_MUST_CHECK;

/* ---- evaluator ----
 * Outputs may alias inputs.  Binary operations on operands at different
 * levels first drop the higher one; add/sub with different scales bring the
 * smaller scale up (by an integer factor when the ratio is integral, else by
 * a constant multiplication that costs one level).  An evaluator owns its
 * scratch and is not to be shared between threads. */
typedef struct bt_evaluator bt_evaluator;

BT_API bt_status bt_evaluator_new(const bt_ckks_params *p, const bt_eval_keys *keys,
                                  bt_evaluator **out) BT_MUST_CHECK;
BT_API void bt_evaluator_free(bt_evaluator *ev);

/* Operations an evaluator has performed since creation or the last reset. */
typedef struct bt_op_counts {
  long rot;     /* rotations and conjugations (key switches; hoisted ones included) */
  long relin;   /* relinearisations (key switches) */
  long tensor;  /* ciphertext x ciphertext products */
  long pmult;   /* ciphertext x plaintext products */
} bt_op_counts;
BT_API bt_op_counts bt_evaluator_counts(const bt_evaluator *ev);
BT_API void bt_evaluator_reset_counts(bt_evaluator *ev);

BT_API bt_status bt_eval_add(bt_evaluator *ev, const bt_ciphertext *a, const bt_ciphertext *b,
                             bt_ciphertext *out) BT_MUST_CHECK;
BT_API bt_status bt_eval_sub(bt_evaluator *ev, const bt_ciphertext *a, const bt_ciphertext *b,
                             bt_ciphertext *out) BT_MUST_CHECK;
BT_API bt_status bt_eval_neg(bt_evaluator *ev, const bt_ciphertext *a, bt_ciphertext *out) BT_MUST_CHECK;
BT_API bt_status bt_eval_add_plain(bt_evaluator *ev, const bt_ciphertext *a, const bt_plaintext *b,
                                   bt_ciphertext *out) BT_MUST_CHECK;
BT_API bt_status bt_eval_sub_plain(bt_evaluator *ev, const bt_ciphertext *a, const bt_plaintext *b,
                                   bt_ciphertext *out) BT_MUST_CHECK;
/* Scale multiplies: out.scale = a.scale * b.scale. */
BT_API bt_status bt_eval_mul_plain(bt_evaluator *ev, const bt_ciphertext *a, const bt_plaintext *b,
                                   bt_ciphertext *out) BT_MUST_CHECK;
/* Adds the constant re + i im to every slot. */
BT_API bt_status bt_eval_add_const(bt_evaluator *ev, const bt_ciphertext *a, double re, double im,
                                   bt_ciphertext *out) BT_MUST_CHECK;
/* Multiplies every slot by re + i im, encoded at scale q_level so that the
 * following rescale returns to a.scale exactly. */
BT_API bt_status bt_eval_mul_const(bt_evaluator *ev, const bt_ciphertext *a, double re, double im,
                                   bt_ciphertext *out) BT_MUST_CHECK;
/* Multiplies every slot by re + i im encoded as integers round(c * const_scale):
 * out.scale = a.scale * const_scale, no level used until the caller rescales.
 * Lets circuits land sums of terms on one exact scale before a rescale. */
BT_API bt_status bt_eval_mul_const_scaled(bt_evaluator *ev, const bt_ciphertext *a, double re, double im,
                                          double const_scale, bt_ciphertext *out) BT_MUST_CHECK;
/* Multiplies by an integer; no scale change, no level used. */
BT_API bt_status bt_eval_mul_int(bt_evaluator *ev, const bt_ciphertext *a, int64_t k,
                                 bt_ciphertext *out) BT_MUST_CHECK;
/* Tensor product: degree-2 result. */
BT_API bt_status bt_eval_mul(bt_evaluator *ev, const bt_ciphertext *a, const bt_ciphertext *b,
                             bt_ciphertext *out) BT_MUST_CHECK;
BT_API bt_status bt_eval_relin(bt_evaluator *ev, const bt_ciphertext *a, bt_ciphertext *out) BT_MUST_CHECK;
BT_API bt_status bt_eval_mul_relin(bt_evaluator *ev, const bt_ciphertext *a, const bt_ciphertext *b,
                                   bt_ciphertext *out) BT_MUST_CHECK;
/* Divides by the last prime: level - 1, scale / q_level. */
BT_API bt_status bt_eval_rescale(bt_evaluator *ev, const bt_ciphertext *a, bt_ciphertext *out) BT_MUST_CHECK;
BT_API bt_status bt_eval_drop_level(bt_evaluator *ev, const bt_ciphertext *a, int levels,
                                    bt_ciphertext *out) BT_MUST_CHECK;
/* ModRaise (bootstrapping's first step): reads a level-0 ciphertext's
 * residues mod q_0 as centred integers and lifts them to every prime, so the
 * result (at the top level, same scale) decrypts to m + q_0 I for a small
 * integer polynomial I. */
BT_API bt_status bt_eval_mod_raise(bt_evaluator *ev, const bt_ciphertext *a, bt_ciphertext *out) BT_MUST_CHECK;
/* Switches a level-0 ciphertext from s to the ephemeral sparse s' of an
 * encapsulation key (server side: evaluation keys only). */
BT_API bt_status bt_eval_encapsulate(bt_evaluator *ev, const bt_ciphertext *a, const bt_encaps_key *k,
                                     bt_ciphertext *out) BT_MUST_CHECK;
/* Rotates slots left by `step` (negative: right). */
BT_API bt_status bt_eval_rotate(bt_evaluator *ev, const bt_ciphertext *a, int step,
                                bt_ciphertext *out) BT_MUST_CHECK;
BT_API bt_status bt_eval_conjugate(bt_evaluator *ev, const bt_ciphertext *a, bt_ciphertext *out) BT_MUST_CHECK;
/* Several rotations of one ciphertext sharing one decomposition:
 * outs[i] = rotate(a, steps[i]).  outs[i] must not alias a. */
BT_API bt_status bt_eval_rotate_hoisted(bt_evaluator *ev, const bt_ciphertext *a, const int *steps,
                                        size_t nsteps, bt_ciphertext **outs) BT_MUST_CHECK;
/* A baby-step/giant-step linear transform with double hoisting:
 *   out = sum_j rot( sum_u diag[j nbaby + u] * rot(x, baby[u]), giant[j] step )
 * (diag entries NULL where zero; giant[j] distinct signed integers with
 * |giant[j] step| <= N/2).  The diagonals must come from bt_ckks_encode_qp
 * at x's level or above and share one scale; out is at x's level and scale
 * x.scale * diag scale, to be rescaled.  The baby rotations share one
 * decomposition and skip their ModDown.  The giants run by Horner's rule
 * along each run of consecutive integers: a run lo..hi > 0 rotates by +step
 * between its giants and jumps by lo step at the end, a run lo..hi < 0 by
 * -step and hi step.  One key switch per giant, as without Horner, and the
 * keys of +step (a positive run of two or more), -step (a negative one) and
 * each run's jump instead of one key per giant; out may alias x. */
BT_API bt_status bt_eval_bsgs(bt_evaluator *ev, const bt_ciphertext *x, const int *baby, size_t nbaby, int step,
                              const int *giant, size_t ngiant, const bt_plaintext *const *diag,
                              bt_ciphertext *out) BT_MUST_CHECK;
/* The same with the diagonals as their coefficients at `scale`
 * (bt_ckks_encode_coeffs; NULL where zero): each diagonal's limbs are made
 * where they are used, at x's level, with the limbs bt_ckks_encode_qp would
 * have given (the output is the same ciphertext), trading NTTs for memory. */
BT_API bt_status bt_eval_bsgs_coeffs(bt_evaluator *ev, const bt_ciphertext *x, const int *baby, size_t nbaby,
                                     int step, const int *giant, size_t ngiant, const int64_t *const *diag,
                                     double scale, bt_ciphertext *out) BT_MUST_CHECK;
/* Applies a switching key (any automorphism 0 = identity). */
BT_API bt_status bt_eval_keyswitch(bt_evaluator *ev, const bt_ciphertext *a, const bt_switch_key *k,
                                   bt_ciphertext *out) BT_MUST_CHECK;
/* out_i = sum_{j < n} a_{i + j*batch} (indices mod slots): needs rotation
 * keys for batch * 2^t. */
BT_API bt_status bt_eval_inner_sum(bt_evaluator *ev, const bt_ciphertext *a, int batch, int n,
                                   bt_ciphertext *out) BT_MUST_CHECK;
/* out_i = sum_{j < n} a_{i - j*batch}: replicates a block of `batch` slots n times. */
BT_API bt_status bt_eval_replicate(bt_evaluator *ev, const bt_ciphertext *a, int batch, int n,
                                   bt_ciphertext *out) BT_MUST_CHECK;
/* Rotation steps bt_eval_inner_sum / bt_eval_replicate need; writes at most
 * 2*ceil(log2 n) steps and returns the count. */
BT_API size_t bt_inner_sum_steps(int batch, int n, int replicate, int *steps);

/* Measured precision: -log2 of the mean and of the maximum absolute error. */
typedef struct bt_precision {
  double mean_bits, min_bits, max_err, mean_err;
} bt_precision;
BT_API bt_precision bt_precision_measure(const double complex *want, const double complex *got, size_t n);

#ifdef __cplusplus
}
#endif
#endif

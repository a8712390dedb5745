/* circuits: homomorphic algorithms built on the CKKS evaluator.
 *
 * Polynomial evaluation in the Chebyshev basis with baby-step/giant-step
 * splitting (Paterson-Stockmeyer adapted to Chebyshev polynomials, as in
 * Bossuat et al. EUROCRYPT 2021 and Lee et al. 2020): p = r + T_m q with
 * 2 T_m T_k = T_{m+k} + T_{m-k}, recursively: O(sqrt d) non-scalar
 * multiplications and the optimal ceil(log2(d + 1)) levels for degree d.
 * The constants of the baby-step sums cost no level: every node of the
 * recursion is returned before its rescale, so the constants share the
 * rescale of the product that consumes them (src/circuits/poly.c has the
 * plan; docs/CIRCUITS.md the counts).  The map onto [-1, 1] costs no level when the
 * interval's half-width is close to 1 (an added constant and a reinterpreted
 * scale) and one level otherwise; callers that can fold the scaling into an
 * earlier step (a linear transform, a constant) should pass an interval of
 * half-width 1.
 *
 * Scale management is exact: every sum of ciphertexts is formed before the
 * rescale that follows it, each term multiplied by a constant encoded at the
 * scale that lands it on the common scale, so no level is ever spent on
 * matching scales. */
#ifndef BLINDTUNER_CIRCUITS_H
#define BLINDTUNER_CIRCUITS_H

#include "blindtuner/ckks.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A real polynomial on [a, b] in the Chebyshev basis:
 * p(x) = sum_k c[k] T_k(y), y = (2x - a - b) / (b - a). */
typedef struct bt_cheby {
  int degree;
  double a, b;
  double *c; /* degree + 1 coefficients, owned */
} bt_cheby;

/* Interpolates f at the degree + 1 Chebyshev nodes of [a, b]. */
BT_API bt_status bt_cheby_interpolate(double (*f)(double x, void *ctx), void *ctx, double a, double b,
                                      int degree, bt_cheby *out) BT_MUST_CHECK;
BT_API void bt_cheby_free(bt_cheby *p);
/* Evaluates the polynomial in double precision (Clenshaw). */
BT_API double bt_cheby_eval(const bt_cheby *p, double x);
/* Levels bt_eval_cheby consumes: ceil(log2(degree + 1)), plus one when the
 * interval's half-width is not close to 1 (-1: out of memory). */
BT_API int bt_cheby_depth(const bt_cheby *p);
/* Ciphertext x ciphertext products it takes, and in *relins (may be NULL)
 * the relinearisations (key switches): the product of each split stays of
 * degree 2, the rest of the split is added to it and the sum relinearised
 * once, before its rescale. */
BT_API int bt_cheby_products(const bt_cheby *p, int *relins);

/* out = p(x) slot-wise.  The result has exactly `target_scale` (0: the
 * input's scale) and sits bt_cheby_depth(p) levels below x. */
BT_API bt_status bt_eval_cheby(bt_evaluator *ev, const bt_ciphertext *x, const bt_cheby *p,
                               double target_scale, bt_ciphertext *out) BT_MUST_CHECK;

/* ---- linear transforms ----
 * A slot-linear map M given by its non-zero diagonals d_k[i] = M[i][i + k]
 * (indices mod the slot count), so M v = sum_k d_k * rot(v, k).  Evaluated
 * by baby-step/giant-step: k = g j + b and
 *   M v = sum_j rot( sum_b rot(d_{gj+b}, -gj) * rot(v, b), gj ),
 * with double hoisting (bt_eval_bsgs): the baby rotations share one
 * decomposition and stay over Q_l P, the diagonals (encoded modulo P too)
 * multiply them there, and each giant step is one key switch.  The giants
 * run as Horner chains (bt_eval_bsgs): each run of consecutive giants j
 * goes up by rotations of +g (the run from 1, and runs in between) or down
 * by -g (the run that ends at slots / g - 1), so a transform needs its baby
 * keys, +g, -g and one jump per run.  The giant step g is the power of two
 * minimising babies + giants, ties to the smaller: fewer keys for about 3 %
 * more time than weighting a giant as two babies (docs/CIRCUITS.md). */
typedef struct bt_lintrans {
  const bt_ckks_params *params;
  int logslots, level;
  double scale;          /* scale of the encoded diagonals */
  int giant;             /* g */
  size_t ndiag;
  int *index;            /* diagonal indices in [0, slots) */
  bt_plaintext **diag;   /* rot(d_k, -g j), encoded at `level`, `scale`, over Q P; or NULL, */
  int64_t **coef;        /* and these are the same diagonals as coefficients (N words each) */
} bt_lintrans;

/* diags[t] holds the 2^logslots entries of diagonal index[t].  Diagonals are
 * encoded at `level` and `scale` (a scale of q_level keeps the ciphertext's
 * scale through the following rescale).  They are kept as their signed
 * coefficients (bt_ckks_encode_coeffs), N words each, and expanded limb by
 * limb where they are used (bt_eval_bsgs_coeffs): at N = 2^16 and 30 primes
 * a thirtieth of the memory of plaintexts over Q P, for about a tenth more
 * time per transform (docs/CIRCUITS.md); a diagonal whose coefficients do
 * not fit 63 bits makes the transform keep plaintexts. */
BT_API bt_status bt_lintrans_new(const bt_ckks_params *p, int logslots, const int *index,
                                 const double complex *const *diags, size_t ndiag, int level,
                                 double scale, bt_lintrans **out) BT_MUST_CHECK;
/* The same, keeping the diagonals as plaintexts over Q P (expanded = 1,
 * faster and 30 times the memory) or as bt_lintrans_new does (0). */
BT_API bt_status bt_lintrans_new_form(const bt_ckks_params *p, int logslots, const int *index,
                                      const double complex *const *diags, size_t ndiag, int level,
                                      double scale, int expanded, bt_lintrans **out) BT_MUST_CHECK;
BT_API void bt_lintrans_free(bt_lintrans *lt);
/* Rotation steps the transform needs (its babies, +g and -g where a run
 * steps that way, each run's jump); writes at most 2 ndiag steps, 0 when
 * out of memory. */
BT_API size_t bt_lintrans_steps(const bt_lintrans *lt, int *steps);
/* The number of non-zero diagonals the transform was built with. */
BT_API size_t bt_lintrans_num_diagonals(const bt_lintrans *lt);
/* The same without building the transform: the giant step bt_lintrans_new
 * picks for these diagonal indices on 2^logslots slots, and the rotation
 * steps of a transform with those diagonals and that giant step on
 * 2^logslots slots (at most 2 ndiag, sorted; 0 when the giant step is not
 * a power of two up to the slots, an index lies outside them, or out of
 * memory). */
BT_API int bt_lintrans_giant_step(const int *index, size_t ndiag, int logslots);
BT_API size_t bt_lintrans_index_steps(const int *index, size_t ndiag, int giant, int logslots, int *steps);
/* out = M x (not rescaled: out.scale = x.scale * lt.scale). */
BT_API bt_status bt_eval_lintrans(bt_evaluator *ev, const bt_ciphertext *x, const bt_lintrans *lt,
                                  bt_ciphertext *out) BT_MUST_CHECK;

/* ---- bootstrapping (full or sparse slots) ----
 * Cheon-Han-Kim-Kim-Song 2018 with the homomorphic special FFT split into
 * level-budgeted groups (Chen-Chillotti-Song 2019, Han-Ki 2020):
 *   ModRaise -> CoeffsToSlots (inverse special FFT, no bit reversal; one
 *   ciphertext, then split into real and imaginary coefficient halves with a
 *   conjugation) -> EvalMod on each half (Chebyshev interpolation of a scaled
 *   cosine, then `double_angle` steps cos 2a = 2 cos^2 a - 1, giving
 *   sin(2 pi t / q_0) / 2 pi) -> recombine -> SlotsToCoeffs (special FFT).
 * The constants of the affine maps are folded into the FFT matrices, spread
 * evenly over their groups. */
typedef struct bt_bootstrap_config {
  int cts_levels;     /* levels (matrix groups) of CoeffsToSlots */
  int stc_levels;     /* levels of SlotsToCoeffs */
  int cheby_degree;   /* degree of the cosine interpolant */
  int double_angle;   /* double-angle steps r */
  double k_range;     /* |t / q_0| < K: bound on the ModRaise overflow I plus margin */
  int encaps_hamming_weight; /* dense secrets: weight of the ephemeral sparse
                              * secret of sparse-secret encapsulation (0: none) */
  int logslots;          /* log2 of the slots bootstrapped (0: full, N/2).
                          * Sparse slots (n < N/2) add a partial trace of
                          * log2(N/2n) rotations and run EvalMod once */
  int log_evalmod_scale; /* scale during EvalMod (0: 60); its absolute error is
                          * multiplied by q_0 / (2 pi scale) in the output, so
                          * CoeffsToSlots raises the scale and SlotsToCoeffs
                          * brings it back */
  int message_lift;      /* integer gamma >= 1 (0: 1) the level-0 ciphertext is
                          * multiplied by before ModRaise: the message then
                          * fills q_0 / (gamma scale) of q_0 instead of
                          * q_0 / scale, so the noise of CoeffsToSlots and
                          * EvalMod weighs 1/gamma as much; the price is the
                          * sine's error x^3 (2 pi)^2 / 6 on large coefficients
                          * (every slot equal: 21.2 -> 19.3 bits at gamma = 2,
                          * q_0 / scale = 2^12).  Lattigo's LogMessageRatio */
} bt_bootstrap_config;

typedef struct bt_bootstrapper bt_bootstrapper;

/* The configuration that goes with the bootstrapping presets (train-n16,
 * INSECURE-boot-*): K covers the ModRaise overflow of a Hamming-weight-h
 * secret (h = 32 with encapsulation for dense secrets) to about 7 standard
 * deviations (sqrt(h / 12) each); the message lift brings q_0 / (gamma scale)
 * to about 2^11. */
BT_API bt_status bt_bootstrap_config_default(const bt_ckks_params *p, bt_bootstrap_config *cfg) BT_MUST_CHECK;

/* Dense-secret parameters: the encapsulation keys from
 * bt_keygen_encapsulation (public material; the bootstrapper keeps the
 * pointers, which must outlive it). */
BT_API bt_status bt_bootstrapper_set_encapsulation(bt_bootstrapper *b, const bt_encaps_key *to_sparse,
                                                   const bt_switch_key *to_dense) BT_MUST_CHECK;
/* Prepares the transforms for 2^cfg.logslots slots (full slots, 2^(logN - 1),
 * when 0) of ciphertexts whose scale is `scale`. */
BT_API bt_status bt_bootstrapper_new(const bt_ckks_params *p, const bt_bootstrap_config *cfg, double scale,
                                     bt_bootstrapper **out) BT_MUST_CHECK;
BT_API void bt_bootstrapper_free(bt_bootstrapper *b);
/* Rotation steps whose keys bootstrapping needs (it also needs the
 * relinearisation and conjugation keys): writes at most `cap` and returns
 * how many there are (0 only when out of memory). */
BT_API size_t bt_bootstrap_steps(const bt_bootstrapper *b, int *steps, size_t cap);
/* The same steps as a pure function of the parameters and configuration
 * (no transform is encoded): writes at most `cap` of them and sets *count
 * to how many there are (cap 0 sizes the array).  levels (may be NULL)
 * receives the highest ciphertext level each step is used at: the top for
 * the partial trace and CoeffsToSlots, lower for SlotsToCoeffs -- the level
 * its key must serve (bt_keygen_eval_levels). */
BT_API bt_status bt_bootstrap_config_steps(const bt_ckks_params *p, const bt_bootstrap_config *cfg, int *steps,
                                           int *levels, size_t cap, size_t *count) BT_MUST_CHECK;
/* The level bootstrapping's output sits at: the highest any computation
 * between bootstraps starts from. */
BT_API bt_status bt_bootstrap_config_output_level(const bt_ckks_params *p, const bt_bootstrap_config *cfg,
                                                  int *level) BT_MUST_CHECK;
/* Levels bootstrapping consumes from the top; the output sits at
 * max level - depth. */
BT_API int bt_bootstrap_depth(const bt_bootstrapper *b);
/* log2 of the slots the bootstrapper handles. */
BT_API int bt_bootstrap_logslots(const bt_bootstrapper *b);
/* Wall-clock seconds of the last bt_bootstrap by phase: ModRaise (with the
 * encapsulation switches and the partial trace), CoeffsToSlots (with the
 * real/imaginary split), EvalMod, SlotsToCoeffs. */
BT_API void bt_bootstrap_last_split(const bt_bootstrapper *b, double seconds[4]);
/* Refreshes `in` (any level, at the configured scale).  `in` has the
 * bootstrapper's slot count n, or more: a ciphertext of m > n slots comes back
 * with m slots holding the mean of its n-periodic folds, out[i] =
 * (n/m) sum_j in[(i + j n) mod m] (the partial trace) -- the input itself when
 * it is n-periodic, and a way to gather data spread over m slots into every
 * period of n when each slot of a period is non-zero in at most one fold. */
BT_API bt_status bt_bootstrap(bt_bootstrapper *b, bt_evaluator *ev, const bt_ciphertext *in,
                              bt_ciphertext *out) BT_MUST_CHECK;

/* The special FFT as sparse diagonal matrices (exposed for tests): applies
 * the decoding map stage by stage to a bit-reversed vector (inverse = 0) or
 * its inverse without the final bit reversal (inverse = 1), in place. */
BT_API void bt_special_fft_reference(double complex *v, int logslots, int inverse);

#ifdef __cplusplus
}
#endif
#endif

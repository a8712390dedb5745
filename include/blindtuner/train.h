/* train: softmax-regression training of a classification head on encrypted
 * features and labels (HETAL-class), its plaintext twin and the exact
 * reference.  docs/TRAINING.md describes the algorithm and the level plan.
 *
 * The model: logits z = W x (W is C x F, the bias a column of W against a
 * feature fixed to 1), p = softmax(z), loss = cross-entropy, gradient
 * G = (P - Y)^T X / B over a batch.  Nesterov's method in the form
 *   W_{t+1} = V_t - lr * G(V_t),  V_{t+1} = W_{t+1} + mu (W_{t+1} - W_t),
 * with both matrices kept in ONE complex ciphertext A = V + i W (compact
 * layout, include/blindtuner/hemat.h), so one bootstrap refreshes both.
 *
 * The softmax approximation (bt_softmax_approx) works on logits in
 * [-bound, bound]:
 *   1. padded classes are set to -(bound + gap) so they never win the max;
 *   2. the row maximum m by a tournament of log2 C' rounds,
 *      max(a, b) = b + relu(a - b), relu a Chebyshev interpolant;
 *   3. e = exp(z - m) by one Chebyshev interpolant over the whole range
 *      [-(2 bound + gap) - delta, delta] (delta bounds the error of m);
 *   4. S = sum of e over the row; 1/S by a Chebyshev interpolant on the
 *      interval S can reach, refined by Newton steps y <- y (2 - S y);
 *   5. p = e / S.
 * The twin (bt_softmax_approx_row) runs the same steps in the same order
 * (the tournament pairs classes as the encrypted diagonal layout does) in
 * double precision. */
#ifndef BLINDTUNER_TRAIN_H
#define BLINDTUNER_TRAIN_H

#include <stddef.h>

#include "blindtuner/circuits.h"
#include "blindtuner/hemat.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The logits' range the default approximation covers: 32 since library 0.6
 * (128 before; the narrower range is what lets a (B, F, 5..8) step bootstrap
 * 4 times instead of 6, docs/TRAINING.md).  On whitened features the
 * large-batch rule's logits stay within it (30.9 at 8,192 rows); a larger
 * learning rate or standardised features at large batches can leave it,
 * which `demo` checks on its plaintext twin.  A logit outside makes the
 * step's output garbage. */
#define BT_SOFTMAX_BOUND 32
/* Degrees of the approximation; zero fields take the defaults. */
typedef struct bt_softmax_config {
  double bound;     /* logits assumed in [-bound, bound] (default BT_SOFTMAX_BOUND) */
  double gap;       /* padded classes sit this far below -bound (default 16) */
  int relu_degree;  /* tournament comparison (0: the smallest of 63, 127, 255
                     * keeping the maximum within 3 of the true one) */
  int exp_degree;   /* 0: smallest of 31, 63, 127 reaching 1e-4 absolute */
  int inv_degree;   /* 0: the shallowest (degree, Newton steps) reaching 1e-4 */
  int newton;       /*   relative error; else this degree and `newton` steps */
} bt_softmax_config;

typedef struct bt_softmax_approx {
  int classes, cpad, rounds;
  double bound, gap;
  double unit_t;        /* X: tournament values are z / X (relu on [-1, 1]) */
  double unit_e;        /* exp inputs are d / unit_e (interval of half-width 1) */
  double relu_err;      /* max |relu_poly - relu| on [-1, 1], in units of X */
  double delta;         /* bound on |m - max z| (natural units) */
  double s_lo, s_hi;    /* the interval the row sum S can reach */
  double s_half;        /* exp returns e / s_half, so the row sum is u = S / s_half */
  double u_fill;        /* value put in empty slots before the inverse (in its interval) */
  int newton;
  bt_cheby relu;        /* relu(y) - bias on [-1, 1] */
  bt_cheby exp;         /* exp(unit_e * y) / s_half */
  bt_cheby inv;         /* 1 / u on [s_lo, s_hi] / s_half */
  bt_cheby log;         /* log(u * s_half) / unit_e on the same interval (validation loss) */
  double log_err;       /* max error of log S through it (natural units) */
} bt_softmax_approx;

/* Builds the polynomials and measures their errors (printed by the tests). */
BT_API bt_status bt_softmax_approx_init(int classes, const bt_softmax_config *cfg,
                                        bt_softmax_approx *out) BT_MUST_CHECK;
BT_API void bt_softmax_approx_free(bt_softmax_approx *sa);
/* Levels the encrypted softmax consumes in total (bootstrapping not counted). */
BT_API int bt_softmax_approx_depth(const bt_softmax_approx *sa);

/* The twin: p = approximate softmax of one row of C logits, computed as the
 * encrypted circuit computes row `row` of a batch (the diagonal layout
 * rotates row r by r, which decides the tournament's pairing). */
BT_API void bt_softmax_approx_row(const bt_softmax_approx *sa, int row, const double *z, double *p);
/* The twin of the encrypted validation loss of one row: log S + m - z_label
 * with the same m, exponentials and row sum S as above and log S from the
 * `log` polynomial. */
BT_API double bt_softmax_approx_loss_row(const bt_softmax_approx *sa, int row, const double *z, int label);
/* The exact softmax (max-subtracted), the reference. */
BT_API void bt_softmax_exact_row(int classes, const double *z, double *p);

/* ---- plaintext training: the twin (approximate softmax) and the exact
 * reference (sa == NULL) ----
 * x: B x F rows (bias column included), y: B labels in [0, C), v, w: C x F
 * (updated in place).  One Nesterov step of the batch. */
BT_API bt_status bt_plain_step(const bt_softmax_approx *sa, int batch, int features, int classes,
                               const double *x, const int *y, double lr, double momentum, double *v,
                               double *w) BT_MUST_CHECK;
/* Mean cross-entropy and accuracy of w on n rows: with sa, the loss is the
 * twin of the encrypted validation loss (row i computed as row i mod
 * `batch` of its batch, as the encrypted batches lay rows out); with
 * sa == NULL the exact cross-entropy. */
BT_API bt_status bt_plain_evaluate(const bt_softmax_approx *sa, int batch, int n, int features, int classes, const double *x, const int *y,
                                   const double *w, double *loss, double *accuracy) BT_MUST_CHECK;

/* ---- encrypted training (server side: evaluation keys only) ---- */
typedef struct bt_trainer bt_trainer;

typedef struct bt_train_stats {
  double matmul_s, softmax_s, bootstrap_s, other_s;
  long bootstraps;
  long cmult, mult, rot; /* plaintext products, tensor products, rotations (incl. conjugations) */
} bt_train_stats;

/* The bootstrapping configuration a layout needs: the presets' default, on
 * 2^fold_logslots sparse slots when the layout is folded. */
BT_API bt_status bt_trainer_bootstrap_config(const bt_ckks_params *p, const bt_hemat_layout *L,
                                             bt_bootstrap_config *cfg) BT_MUST_CHECK;
/* `bs` (with its encapsulation keys set for dense secrets; made with
 * bt_trainer_bootstrap_config's configuration) refreshes ciphertexts; it
 * must outlive the trainer.  lr and momentum are the
 * Nesterov parameters. */
BT_API bt_status bt_trainer_new(const bt_ckks_params *p, const bt_hemat_layout *L, const bt_softmax_approx *sa,
                                bt_bootstrapper *bs, double lr, double momentum,
                                bt_trainer **out) BT_MUST_CHECK;
BT_API void bt_trainer_free(bt_trainer *t);
/* Rotation steps the trainer needs besides bootstrapping's own (which the
 * caller adds with bt_bootstrap_steps): writes at most `cap` and returns
 * how many there are (0 when out of memory).  Also needs relinearisation
 * and conjugation keys. */
BT_API size_t bt_trainer_steps(const bt_trainer *t, int *steps, size_t cap);
/* The same from the layout alone (a key set is made without a trainer).
 * levels (may be NULL) receives the highest level each step runs at:
 * BT_TRAIN_PRODUCT_LEVEL for the steps only the encrypted products take (X
 * at level 2, the weights and P - Y dropped to 3 before them), -1 for a step
 * the softmax takes too, at whatever level bootstrapping leaves. */
#define BT_TRAIN_PRODUCT_LEVEL 3
BT_API size_t bt_train_layout_steps(const bt_hemat_layout *L, int *steps, int *levels, size_t cap);
/* Every rotation step a key set for training on this layout covers:
 * bootstrapping's (bt_trainer_bootstrap_config) and the trainer's, without
 * repeats, each with the highest level it runs at (bootstrapping's from
 * bt_bootstrap_config_steps; the trainer's as above, the softmax's at the
 * level bootstrapping outputs), so that its key can be level-limited
 * (bt_keygen_eval_levels).  Writes at most `cap` (cap 0 sizes) and sets
 * *count to how many there are. */
BT_API bt_status bt_train_layout_rotations(const bt_ckks_params *p, const bt_hemat_layout *L, int *steps,
                                           int *levels, size_t cap, size_t *count) BT_MUST_CHECK;
/* Level the X blocks must be encrypted at, and the labels' level. */
BT_API int bt_trainer_x_level(const bt_trainer *t);
BT_API int bt_trainer_y_level(const bt_trainer *t);
/* The same from the layout alone. */
BT_API int bt_train_x_level(const bt_hemat_layout *L);
BT_API int bt_train_y_level(const bt_hemat_layout *L);
/* One step on a batch: x holds the nb X blocks (level bt_trainer_x_level),
 * y the one-hot labels in the diagonal layout, `rows` (<= the layout's
 * batch) the rows the batch really holds (the rest zero: the gradient is
 * their mean), a = V + iW (compact layout, any level) is replaced by the
 * next A.  `stats` (may be NULL) accumulates. */
BT_API bt_status bt_trainer_step(bt_trainer *t, bt_evaluator *ev, bt_ciphertext *const *x, const bt_ciphertext *y,
                                 int rows, bt_ciphertext *a, bt_train_stats *stats) BT_MUST_CHECK;
/* Sums a ciphertext over the ranks of a data-parallel job, in place: every
 * rank passes its own (contributes = 0: none, the sum sets its level,
 * scale and slots from the others' and counts it as zero) and gets the sum
 * of all.  The limbs add exactly in the ring, so every rank holds the same
 * bytes afterwards. */
typedef bt_status (*bt_ct_sum_fn)(void *user, bt_ciphertext *ct, int contributes);
/* One step of a global batch split over ranks: this rank's batch (x, y,
 * `rows`; x = y = NULL and rows = 0 when it has none this step), the global
 * batch's `total_rows` (the gradient is their mean) and the sum over the
 * ranks of the gradient ciphertexts.  Every rank runs it on the same a and
 * gets the same next a (bootstrapping is deterministic).  bt_trainer_step
 * is this with one rank. */
BT_API bt_status bt_trainer_step_shared(bt_trainer *t, bt_evaluator *ev, bt_ciphertext *const *x,
                                        const bt_ciphertext *y, int rows, int total_rows, bt_ct_sum_fn sum,
                                        void *user, bt_ciphertext *a, bt_train_stats *stats) BT_MUST_CHECK;
/* The same with this process's share of the global batch in n batches
 * (x[k], y[k], rows[k]; n = 0 when it has none this step): their gradients
 * are summed exactly in the ring before the ranks' sum, so one process
 * trains a global batch larger than a layout's block (gradient
 * accumulation, docs/TRAINING.md) and gets, byte for byte, the model that
 * ranks holding the same batches get.  bt_trainer_step_shared is this with
 * n = 1 (or 0). */
BT_API bt_status bt_trainer_step_many(bt_trainer *t, bt_evaluator *ev, int n, bt_ciphertext *const *const *x,
                                      const bt_ciphertext *const *y, const int *rows, int total_rows,
                                      bt_ct_sum_fn sum, void *user, bt_ciphertext *a,
                                      bt_train_stats *stats) BT_MUST_CHECK;
/* What a step, the logits and the loss do to a first (bootstrap it when its
 * levels run short), alone: the rank that computes no loss keeps its model
 * the same as those that did. */
BT_API bt_status bt_trainer_refresh(bt_trainer *t, bt_evaluator *ev, bt_ciphertext *a,
                                    bt_train_stats *stats) BT_MUST_CHECK;
/* Encrypted inference: z = X W^T (diagonal layout, natural units) for the
 * weights W = Im(a).  a keeps its value but may be bootstrapped in place
 * (so the next step or pass on the same weights need not do it again). */
BT_API bt_status bt_trainer_logits(bt_trainer *t, bt_evaluator *ev, bt_ciphertext *const *x,
                                   bt_ciphertext *a, bt_ciphertext *z,
                                   bt_train_stats *stats) BT_MUST_CHECK;
/* Encrypted validation loss: slot 0 of `loss` gets weight * the sum over the
 * first `rows` rows of the batch of the cross-entropy of W = Im(a)
 * (log-sum-exp - z_label, through the softmax approximation's maximum,
 * exponential and `log` polynomial; the twin is bt_softmax_approx_loss_row).
 * y: one-hot labels, diagonal layout, level >= 1.  With weight = 1 / n the
 * sums of all validation batches add up to the mean loss; only the client
 * can read it.  a may be bootstrapped in place, as for bt_trainer_logits. */
BT_API bt_status bt_trainer_loss(bt_trainer *t, bt_evaluator *ev, bt_ciphertext *const *x, const bt_ciphertext *y,
                                 int rows, double weight, bt_ciphertext *a, bt_ciphertext *loss,
                                 bt_train_stats *stats) BT_MUST_CHECK;

/* The client's side of validation-based early stopping: feed it each
 * epoch's decrypted validation loss; it answers 1 (continue) or 0 (stop)
 * once `patience` epochs in a row have not improved on the best or the
 * `max_epochs` the client agreed to are reached, and remembers the best
 * epoch (whose model the client keeps).  Once it has said stop it stays
 * stopped: the client decides each epoch once and no epoch after a stop. */
typedef struct bt_early_stop {
  int patience;
  int epochs;     /* losses seen */
  int best_epoch; /* 0-based; -1 before the first */
  double best;
  int since;      /* epochs since the best */
  int max_epochs; /* the client's agreement: no decision beyond it */
  int stopped;    /* the last answer was stop */
} bt_early_stop;
BT_API void bt_early_stop_init(bt_early_stop *es, int patience, int max_epochs);
BT_API int bt_early_stop_update(bt_early_stop *es, double loss);

#ifdef __cplusplus
}
#endif
#endif

/* hemat: packed encrypted matrices and the two products of softmax
 * regression training, Z = X W^T (DiagABT) and G = (P - Y)^T X (DiagATB).
 *
 * Layout (docs/TRAINING.md has the pictures).  A ciphertext's 2^logslots
 * slots hold one s0 x s1 block in row-major order, slot r*s1 + t.  With B
 * batch rows, F features (the bias column included) and C classes padded to
 * C' = 2^ceil(log2 C):  s0 = min(max(B', C'), slots / C') with B' the next
 * power of two of B, s1 = slots / s0.
 *
 *   X      nb = ceil(F / s1) blocks; block j holds X[r, j*s1 + t] at (r, t).
 *   W      compact, ONE ciphertext: chunk j (C' rows of the block grid) holds
 *          W[c, j*s1 + t] at block row j*C' + c, column t.  Needs nb*C' <= s0.
 *   Z, D   "diagonal" B x C' layout: Zd[r, a] = Z[r, (r + a) mod C'] at
 *          (r, a), a < C'; columns >= C' are zero.  Row operations of the
 *          softmax (sums, maxima) are invariant under this per-row rotation.
 *
 * Both products run on rolled copies of the X blocks, rot(X_j, k*s1) for
 * k < C' (hoisted: one decomposition per block), computed once per batch and
 * shared by DiagABT and DiagATB.  Products are accumulated before
 * relinearisation (one relinearisation per output ciphertext, not per
 * product).  Every key switch, tensor product, plaintext product and
 * relinearisation is counted in bt_hemat_counts.
 *
 * Levels: DiagABT consumes 3 levels of W (mask, product, column mask);
 * DiagATB consumes 3 levels of D.  X must sit at or above the level the
 * product happens at (W's or D's level minus one).  Running the products at
 * low levels keeps every key switch cheap. */
#ifndef BLINDTUNER_HEMAT_H
#define BLINDTUNER_HEMAT_H

#include <complex.h>
#include <stddef.h>

#include "blindtuner/ckks.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bt_hemat_layout {
  int logslots;
  size_t slots;
  int batch, features, classes; /* B, F (bias included), C */
  int cpad;                     /* C' */
  int s0, s1;                   /* block rows and columns */
  int nb;                       /* feature blocks of X */
  int period_rows;              /* T: W is replicated with this row period before expansion */
  /* The folded layout (bt_hemat_layout_fold): Z, D use C'/s1 of the slots,
   * so the softmax runs on n = s0 C' slots with G = s1 / C' row groups of
   * R = s0 / G rows side by side: row r = qR + r' sits at row r', columns
   * qC' .. qC'+C'-1, repeated in every period of R rows (slot period n), and
   * W is repeated in every period of R rows.  Bootstrapping then refreshes
   * 2^fold_logslots sparse slots instead of N/2. */
  int fold;                     /* 1: folded */
  int groups, fold_rows;        /* G, R */
  int fold_logslots;            /* log2(s0 C') */
} bt_hemat_layout;

/* Turns the folded layout on (when `on` and the shape allows it: G > 1 and
 * the compact weights within R rows) or off; returns whether it is on.  The
 * packing functions, DiagATB and the weight replication follow it. */
BT_API int bt_hemat_layout_fold(bt_hemat_layout *L, int on);

/* Refuses shapes that do not fit: a batch larger than slots / C', or a
 * compact weight matrix (nb * C' block rows) larger than one ciphertext. */
BT_API bt_status bt_hemat_layout_init(int logslots, int batch, int features, int classes,
                                      bt_hemat_layout *out) BT_MUST_CHECK;

/* ---- plaintext packing (client side, and the twin) ----
 * Matrices are row-major doubles; `slots` arrays have L->slots entries. */
BT_API void bt_hemat_pack_x(const bt_hemat_layout *L, const double *x, int j, double *slots);
BT_API void bt_hemat_pack_w(const bt_hemat_layout *L, const double *w, double *slots);
BT_API void bt_hemat_unpack_w(const bt_hemat_layout *L, const double *slots, double *w);
/* B x C matrix <-> diagonal layout; padded classes are 0 when packing. */
BT_API void bt_hemat_pack_diag(const bt_hemat_layout *L, const double *z, double *slots);
BT_API void bt_hemat_unpack_diag(const bt_hemat_layout *L, const double *slots, double *z);
/* Logits from bt_hemat_abt (and bt_trainer_logits): always the plain
 * diagonal layout, folded or not. */
BT_API void bt_hemat_unpack_logits(const bt_hemat_layout *L, const double *slots, double *z);

/* ---- operation counts ---- */
typedef struct bt_hemat_counts {
  long rot;       /* rotations (key switches), hoisted ones included */
  long rot_hoisted;/* of which shared one decomposition */
  long tensor;    /* ciphertext x ciphertext products (degree 2) */
  long relin;     /* relinearisations (key switches) */
  long cmult;     /* plaintext (mask) products */
  long rescale;
} bt_hemat_counts;

/* HETAL's corrected counts (docs/TRAINING.md, "Counts") for the same shape, as the
 * bar: DiagABT cmult/mult/rot and DiagATB cmult/mult/rot. */
typedef struct bt_hetal_counts {
  long abt_cmult, abt_mult, abt_rot, atb_cmult, atb_mult, atb_rot;
} bt_hetal_counts;
BT_API void bt_hetal_reference_counts(int logslots, int batch, int features, int classes,
                                      bt_hetal_counts *out);

/* The counts bt_hemat_roll_x, bt_hemat_abt and bt_hemat_atb (with `ncoef`
 * outputs) make on this layout, computed without running them; the tests
 * check them against the measured counts. */
BT_API void bt_hemat_predict_counts(const bt_hemat_layout *L, int ncoef, bt_hemat_counts *roll,
                                    bt_hemat_counts *abt, bt_hemat_counts *atb);

/* ---- encrypted products (server side: evaluation keys only) ---- */
typedef struct bt_hemat bt_hemat;

BT_API bt_status bt_hemat_new(const bt_ckks_params *p, const bt_hemat_layout *L, bt_hemat **out) BT_MUST_CHECK;
BT_API void bt_hemat_free(bt_hemat *h);
BT_API const bt_hemat_layout *bt_hemat_layout_of(const bt_hemat *h);
/* Rotation steps whose Galois keys the products need (distinct modulo the
 * slots): writes at most `cap` and returns how many there are (0 also when
 * out of memory). */
BT_API size_t bt_hemat_steps(const bt_hemat *h, int *steps, size_t cap);
/* The same from the layout alone. */
BT_API size_t bt_hemat_layout_steps(const bt_hemat_layout *L, int *steps, size_t cap);
BT_API bt_hemat_counts bt_hemat_get_counts(const bt_hemat *h);
BT_API void bt_hemat_reset_counts(bt_hemat *h);

/* Rolled copies of X's blocks: rolled[j * C' + k] = rot(x[j], k * s1).
 * `rolled` has nb * C' ciphertexts allocated by the caller. */
BT_API bt_status bt_hemat_roll_x(bt_hemat *h, bt_evaluator *ev, bt_ciphertext *const *x,
                                 bt_ciphertext **rolled) BT_MUST_CHECK;

/* Z = X W^T in the diagonal layout.  `w` is the compact weight ciphertext
 * (real).  `wscale` multiplies W on the way (folded into a mask, no level). */
BT_API bt_status bt_hemat_abt(bt_hemat *h, bt_evaluator *ev, bt_ciphertext *const *rolled,
                              const bt_ciphertext *w, double wscale, bt_ciphertext *z) BT_MUST_CHECK;

/* Folded layouts: Z "gathered" -- row r = qR + r' at its own row r, columns
 * qC' + a, times G, zero elsewhere -- which bootstrapping with 2^fold_logslots
 * slots (the mean of the folds) turns into the folded layout. */
BT_API bt_status bt_hemat_abt_gathered(bt_hemat *h, bt_evaluator *ev, bt_ciphertext *const *rolled,
                                       const bt_ciphertext *w, double wscale, bt_ciphertext *z) BT_MUST_CHECK;

/* (D in the layout's diagonal form: folded when the layout is.)
 * G = D^T X in the compact weight layout, once per coefficient:
 * outs[i] = coef[i] * G (complex coefficients allowed, folded into the
 * final mask: e.g. the learning rate, or i to pack two results). */
BT_API bt_status bt_hemat_atb(bt_hemat *h, bt_evaluator *ev, bt_ciphertext *const *rolled,
                              const bt_ciphertext *d, const double complex *coef, size_t ncoef,
                              bt_ciphertext **outs) BT_MUST_CHECK;

#ifdef __cplusplus
}
#endif
#endif

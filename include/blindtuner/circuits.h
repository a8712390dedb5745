/* circuits: homomorphic algorithms built on the CKKS evaluator.
 *
 * Polynomial evaluation in the Chebyshev basis with baby-step/giant-step
 * splitting (Paterson-Stockmeyer adapted to Chebyshev polynomials, as in
 * Bossuat et al. EUROCRYPT 2021 and Lee et al. 2020): p = r + T_m q with
 * T_{m+k} = 2 T_m T_k - T_{m-k}, recursively: O(sqrt d) non-scalar
 * multiplications and ceil(log2(d + 1)) + 1 levels for degree d >= 2 -- one
 * above the optimum, spent by the constant multiplications of the baby-step
 * sums (see bt_cheby_depth).  The map onto [-1, 1] costs no level when the
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
bt_status bt_cheby_interpolate(double (*f)(double x, void *ctx), void *ctx, double a, double b,
                               int degree, bt_cheby *out) BT_MUST_CHECK;
void bt_cheby_free(bt_cheby *p);
/* Evaluates the polynomial in double precision (Clenshaw). */
double bt_cheby_eval(const bt_cheby *p, double x);
/* Levels bt_eval_cheby consumes. */
int bt_cheby_depth(const bt_cheby *p);

/* out = p(x) slot-wise.  The result has exactly `target_scale` (0: the
 * input's scale) and sits bt_cheby_depth(p) levels below x. */
bt_status bt_eval_cheby(bt_evaluator *ev, const bt_ciphertext *x, const bt_cheby *p,
                        double target_scale, bt_ciphertext *out) BT_MUST_CHECK;

#ifdef __cplusplus
}
#endif
#endif

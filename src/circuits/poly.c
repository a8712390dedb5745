/* Chebyshev interpolation and homomorphic evaluation (see circuits.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blindtuner/circuits.h"

bt_status bt_cheby_interpolate(double (*f)(double, void *), void *ctx, double a, double b, int degree,
                               bt_cheby *out) {
  memset(out, 0, sizeof *out);
  if (degree < 0 || degree > 4096 || !(b > a))
    return bt_fail(BT_E_ARG, "cannot interpolate degree %d on [%g, %g]", degree, a, b);
  const int n = degree + 1;
  double *fx = malloc((size_t)n * sizeof *fx);
  out->c = calloc((size_t)n, sizeof *out->c);
  if (!fx || !out->c) {
    free(fx);
    free(out->c);
    out->c = NULL;
    return bt_fail(BT_E_NOMEM, "out of memory interpolating");
  }
  for (int j = 0; j < n; j++) {
    double y = cos(M_PI * (j + 0.5) / n);
    fx[j] = f(0.5 * (b - a) * y + 0.5 * (a + b), ctx);
  }
  for (int k = 0; k < n; k++) {
    double s = 0;
    for (int j = 0; j < n; j++) s += fx[j] * cos(M_PI * k * (j + 0.5) / n);
    out->c[k] = (k ? 2.0 : 1.0) * s / n;
  }
  free(fx);
  out->degree = degree;
  out->a = a;
  out->b = b;
  return BT_OK;
}

void bt_cheby_free(bt_cheby *p) {
  if (!p) return;
  free(p->c);
  p->c = NULL;
}

double bt_cheby_eval(const bt_cheby *p, double x) {
  double y = (2 * x - p->a - p->b) / (p->b - p->a), b1 = 0, b2 = 0;
  for (int k = p->degree; k >= 1; k--) {
    double t = 2 * y * b1 - b2 + p->c[k];
    b2 = b1;
    b1 = t;
  }
  return y * b1 - b2 + p->c[0];
}

/* ---- the plan: powers, splits and levels ----
 *
 * Depth-optimal evaluation (Bossuat et al. EUROCRYPT 2021, section 5; the
 * same idea as Lattigo's): a node of the recursion returns its polynomial
 * *before* the rescale that ends it, at level L with a scale S of about
 * scale * q_L.  A leaf sum_k c_k T_k then costs no level of its own -- each
 * constant is encoded at S / scale(T_k), about q_L, and the leaf shares the
 * rescale of whatever consumes it -- and p = r + T_m q is formed as
 *   q at level L + 1 (not rescaled), rescaled to L, times T_m (at >= L),
 *   plus r at level L (not rescaled): one rescale serves the product and
 *   every constant of r.
 * Only the top call rescales.  A node at level L needs its powers at level
 * >= L, so the chain of quotients from the top (q, then q's quotient, ...)
 * sits one level higher at each step; where a baby-step leaf would need a
 * power that deep in that chain, the plan splits it further with the
 * powers of two below the baby step (a few more products, no level).  The
 * planner tries every baby step 2^b and keeps the one reaching
 * ceil(log2(d + 1)) levels with the fewest ciphertext products. */

#define ABSENT (-1000000)

typedef struct plan {
  int degree, baby;  /* powers T_1 .. T_baby and T_{baby 2^i} <= degree */
  int size;          /* entries of level[] and T[] */
  int *level;        /* level of T_k (relative or absolute), ABSENT if not computed */
  bt_ciphertext **T; /* NULL in simulation */
} plan;

typedef struct cost {
  int products, relins;
} cost;

static int ceil_log2(int x) {
  int l = 0;
  while ((1 << l) < x) l++;
  return l;
}

static int imin(int a, int b) { return a < b ? a : b; }

/* Largest power of two <= deg (deg >= 1). */
static int top_power(int deg) {
  int m = 1;
  while (2 * m <= deg) m *= 2;
  return m;
}

/* T_k = 2 T_a T_b - T_(a-b) with a the largest power of two below k. */
static int power_factor(int k) {
  int a = 1;
  while (2 * a < k) a *= 2;
  return a;
}

/* Levels of the powers when T_1 sits at level `top`. */
static void simulate_powers(plan *pl, int top) {
  for (int i = 0; i < pl->size; i++) pl->level[i] = ABSENT;
  pl->level[1] = top;
  for (int k = 2; k <= pl->degree; k++) {
    const int giant = k > pl->baby && k % pl->baby == 0 && ((k / pl->baby) & (k / pl->baby - 1)) == 0;
    if (k > pl->baby && !giant) continue;
    const int a = power_factor(k);
    pl->level[k] = imin(pl->level[a], pl->level[k - a]) - 1;
  }
}

/* A leaf sum_{k <= deg} c_k T_k at level L: every power at level >= L (T_1
 * carries a constant polynomial). */
static int leaf_ok(const plan *pl, int deg, int L) {
  if (deg > pl->baby || pl->level[1] < L) return 0;
  for (int k = 2; k <= deg; k++)
    if (pl->level[k] < L) return 0;
  return 1;
}

/* Whether a degree-`deg` node fits at level L.  Coefficients are taken as
 * dense, so the plan depends on the degree alone. */
static int feasible(const plan *pl, int deg, int L) {
  if (leaf_ok(pl, deg, L)) return 1;
  if (deg < 2) return 0;
  const int m = top_power(deg);
  if (pl->level[m] < L) return 0;
  if (deg == m) return feasible(pl, m - 1, L); /* q is the constant c_m */
  return feasible(pl, deg - m, L + 1) && feasible(pl, m - 1, L);
}

/* Counts the products and relinearisations of a feasible plan as
 * bt_eval_cheby performs them; returns the degree (1 or 2) of the node's
 * result.  The powers are relinearised before their rescale (a degree-2
 * rescale would leave its rounding multiplied by s^2); the product of a
 * split is not: r is added to it and the sum is relinearised once, by the
 * node that multiplies it next or before the final rescale. */
static int walk(const plan *pl, int deg, int L, cost *c) {
  if (leaf_ok(pl, deg, L)) return 1;
  const int m = top_power(deg);
  if (deg == m) return walk(pl, m - 1, L, c);
  if (walk(pl, deg - m, L + 1, c) == 2) c->relins++; /* q before its product */
  c->products++;
  walk(pl, m - 1, L, c);
  return 2;
}

/* Chooses the baby step and fills the power levels for T_1 at `t1_level`:
 * the highest output level (un-rescaled), then the fewest relinearisations
 * (each a key switch), then the fewest products.  Returns the output level,
 * or ABSENT when out of memory. */
static int plan_make(plan *pl, int degree, int t1_level, cost *out_cost) {
  pl->degree = degree;
  pl->size = 2 * degree + 4;
  pl->level = malloc((size_t)pl->size * sizeof *pl->level);
  if (!pl->level) return ABSENT;
  int best_baby = 2, best_top = ABSENT;
  cost best = {1 << 30, 1 << 30};
  for (int baby = 2; baby <= 2 * top_power(degree); baby *= 2) {
    pl->baby = baby;
    simulate_powers(pl, t1_level);
    int top = t1_level - ceil_log2(degree + 1) + 1;
    while (!feasible(pl, degree, top)) top--;
    cost c = {0, 0};
    if (walk(pl, degree, top, &c) == 2) c.relins++; /* before the final rescale */
    for (int k = 2; k < pl->size; k++)
      if (pl->level[k] != ABSENT) {
        c.products++;
        c.relins++;
      }
    if (top > best_top || (top == best_top && (c.relins < best.relins ||
                                              (c.relins == best.relins && c.products < best.products)))) {
      best_baby = baby;
      best_top = top;
      best = c;
    }
  }
  pl->baby = best_baby;
  simulate_powers(pl, t1_level);
  if (out_cost) *out_cost = best;
  return best_top;
}

/* The map onto [-1, 1] is free when the half-width is within 2^(1/8) of 1. */
static int free_affine(const bt_cheby *p) {
  return fabs(log2(0.5 * (p->b - p->a))) <= 0.125;
}

int bt_cheby_depth(const bt_cheby *p) {
  if (p->degree < 1) return 0;
  plan pl = {0};
  const int top = plan_make(&pl, p->degree, 0, NULL);
  free(pl.level);
  if (top == ABSENT) return -1;
  return 1 - top + !free_affine(p);
}

int bt_cheby_products(const bt_cheby *p, int *relins) {
  cost c = {0, 0};
  if (p->degree >= 1) {
    plan pl = {0};
    const int top = plan_make(&pl, p->degree, 0, &c);
    free(pl.level);
    if (top == ABSENT) return -1;
  }
  if (relins) *relins = c.relins;
  return c.products;
}

/* ---- evaluation ---- */

#define TRY(x)                  \
  do {                          \
    if ((st = (x)) != BT_OK) goto done; \
  } while (0)

/* out = 2 Ta Tb - Tc (Tc NULL: - 1), formed and relinearised before one
 * rescale. */
static bt_status chebyshev_product(bt_evaluator *ev, const bt_ciphertext *ta, const bt_ciphertext *tb,
                                   const bt_ciphertext *tc, bt_ciphertext *out) {
  bt_status st;
  bt_ciphertext *v = NULL;
  TRY(bt_eval_mul(ev, ta, tb, out));
  /* double the integers, not halve the scale: halving would shrink the
   * scale of T_2^k geometrically */
  TRY(bt_eval_add(ev, out, out, out));
  if (tc) {
    TRY(bt_ciphertext_new(ta->params, &v));
    TRY(bt_eval_mul_const_scaled(ev, tc, -1, 0, out->scale / tc->scale, v));
    v->scale = out->scale;
    TRY(bt_eval_add(ev, out, v, out));
  } else {
    TRY(bt_eval_add_const(ev, out, -1, 0, out));
  }
  TRY(bt_eval_relin(ev, out, out));
  TRY(bt_eval_rescale(ev, out, out));
done:
  bt_ciphertext_free(v);
  return st;
}

/* dst = c T_k at level L with scale exactly S (no rescale: the constant is
 * encoded at S / scale(T_k), about q_L). */
static bt_status scaled_term(bt_evaluator *ev, const bt_ciphertext *tk, double c, int L, double S,
                             bt_ciphertext *dst) {
  bt_status st = bt_eval_drop_level(ev, tk, tk->level - L, dst);
  if (!st) st = bt_eval_mul_const_scaled(ev, dst, c, 0, S / tk->scale, dst);
  dst->scale = S;
  return st;
}

/* Leaf: sum_k c_k T_k + c_0 at level L, scale S, not rescaled. */
static bt_status eval_leaf(bt_evaluator *ev, const plan *pl, const double *c, int deg, int L, double S,
                           bt_ciphertext *out) {
  bt_status st = BT_OK;
  bt_ciphertext *term = NULL;
  TRY(bt_ciphertext_new(pl->T[1]->params, &term));
  int have = 0;
  for (int k = deg; k >= 1; k--) {
    if (c[k] == 0) continue;
    TRY(scaled_term(ev, pl->T[k], c[k], L, S, have ? term : out));
    if (have) TRY(bt_eval_add(ev, out, term, out));
    have = 1;
  }
  if (!have) TRY(scaled_term(ev, pl->T[1], 0, L, S, out)); /* a constant: 0 T_1 carries it */
  TRY(bt_eval_add_const(ev, out, c[0], 0, out));
done:
  bt_ciphertext_free(term);
  return st;
}

/* out = p(T) at level L with scale exactly S, not rescaled (see the plan). */
static bt_status eval_node(bt_evaluator *ev, const plan *pl, const double *c, int deg, int L, double S,
                           bt_ciphertext *out) {
  if (leaf_ok(pl, deg, L)) return eval_leaf(ev, pl, c, deg, L, S, out);
  const bt_ckks_params *p = pl->T[1]->params;
  const int m = top_power(deg);
  const bt_ciphertext *tm = pl->T[m];
  bt_status st = BT_OK;
  bt_ciphertext *qc = NULL, *rc = NULL;
  /* p = r + T_m q with q_0 = c_m, q_k = 2 c_{m+k}; r_j = c_j - c_{2m-j} */
  double *q = calloc((size_t)(deg - m + 1), sizeof *q), *r = calloc((size_t)m, sizeof *r);
  if (!q || !r) {
    st = bt_fail(BT_E_NOMEM, "out of memory evaluating a polynomial");
    goto done;
  }
  q[0] = c[m];
  for (int k = 1; k <= deg - m; k++) q[k] = 2 * c[m + k];
  for (int j = 0; j < m; j++) r[j] = c[j] - (2 * m - j <= deg ? c[2 * m - j] : 0);
  TRY(bt_ciphertext_new(p, &rc));
  if (deg == m) {
    TRY(scaled_term(ev, tm, c[m], L, S, out));
  } else {
    TRY(bt_ciphertext_new(p, &qc));
    /* q at L + 1 so that, rescaled once and multiplied by T_m, it lands on S */
    TRY(eval_node(ev, pl, q, deg - m, L + 1, S * (double)bt_ckks_q(p, L + 1) / tm->scale, qc));
    if (qc->degree == 2) TRY(bt_eval_relin(ev, qc, qc));
    TRY(bt_eval_rescale(ev, qc, qc));
    /* the product stays of degree 2: r is added to it and whoever consumes
     * the node relinearises the sum once */
    TRY(bt_eval_mul(ev, tm, qc, out));
    if (out->level > L) TRY(bt_eval_drop_level(ev, out, out->level - L, out));
    out->scale = S; /* equal up to the rounding of the double */
  }
  TRY(eval_node(ev, pl, r, m - 1, L, S, rc));
  TRY(bt_eval_add(ev, out, rc, out));
done:
  free(q);
  free(r);
  bt_ciphertext_free(qc);
  bt_ciphertext_free(rc);
  return st;
}

bt_status bt_eval_cheby(bt_evaluator *ev, const bt_ciphertext *x, const bt_cheby *poly,
                        double target_scale, bt_ciphertext *out) {
  if (!poly->c || poly->degree < 1) return bt_fail(BT_E_ARG, "cannot evaluate a polynomial of degree < 1");
  const bt_ckks_params *p = x->params;
  const int depth = bt_cheby_depth(poly);
  if (depth < 0) return bt_fail(BT_E_NOMEM, "out of memory planning a polynomial");
  if (depth > x->level)
    return bt_fail(BT_E_LEVEL, "polynomial of degree %d needs %d levels, ciphertext has %d",
                   poly->degree, depth, x->level);
  if (target_scale == 0) target_scale = x->scale;
  bt_status st = BT_OK;
  plan pl = {0};
  bt_ciphertext *t1 = NULL;
  TRY(bt_ciphertext_new(p, &t1));
  const double mid = 0.5 * (poly->a + poly->b), half = 0.5 * (poly->b - poly->a);
  if (mid != 0)
    TRY(bt_eval_add_const(ev, x, -mid, 0, t1));
  else
    TRY(bt_ciphertext_copy(x, t1));
  if (free_affine(poly)) {
    /* T_1 = (x - mid) / half read off the same integers at scale * half */
    t1->scale *= half;
  } else {
    /* a reinterpreted scale would grow like half^k through the powers and
     * starve the constants of precision: spend one level instead */
    const double ql = (double)bt_ckks_q(p, t1->level);
    TRY(bt_eval_mul_const_scaled(ev, t1, 1 / half, 0, ql, t1));
    TRY(bt_eval_rescale(ev, t1, t1));
    t1->scale = x->scale;
  }
  const int top = plan_make(&pl, poly->degree, t1->level, NULL);
  pl.T = calloc((size_t)pl.size, sizeof *pl.T);
  if (top == ABSENT || !pl.T) TRY(bt_fail(BT_E_NOMEM, "out of memory evaluating a polynomial"));
  pl.T[1] = t1;
  t1 = NULL;
  for (int k = 2; k < pl.size; k++) {
    if (pl.level[k] == ABSENT) continue;
    const int a = power_factor(k), b = k - a;
    TRY(bt_ciphertext_new(p, &pl.T[k]));
    TRY(chebyshev_product(ev, pl.T[a], pl.T[b], a == b ? NULL : pl.T[a - b], pl.T[k]));
  }
  TRY(eval_node(ev, &pl, poly->c, poly->degree, top, target_scale * (double)bt_ckks_q(p, top), out));
  if (out->degree == 2) TRY(bt_eval_relin(ev, out, out));
  TRY(bt_eval_rescale(ev, out, out));
  out->scale = target_scale; /* S / q_top == target up to the rounding of the double */
done:
  bt_ciphertext_free(t1);
  if (pl.T)
    for (int k = 0; k < pl.size; k++) bt_ciphertext_free(pl.T[k]);
  free(pl.T);
  free(pl.level);
  return st;
}

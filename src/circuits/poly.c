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

/* ---- structure shared by the level simulation and the evaluation ---- */

typedef struct plan {
  int degree, baby;   /* baby powers T_1 .. T_baby */
  int *level;         /* level of T_k (relative or absolute), -1000 if absent */
  bt_ciphertext **T;  /* NULL in simulation */
} plan;

static int ceil_log2(int x) {
  int l = 0;
  while ((1 << l) < x) l++;
  return l;
}

static int choose_baby(int degree) {
  int logd = ceil_log2(degree + 1);
  return 1 << ((logd + 1) / 2);
}

/* Largest giant power m = baby * 2^i with m <= deg. */
static int giant_for(const plan *pl, int deg) {
  int m = pl->baby;
  while (2 * m <= deg) m *= 2;
  return m;
}

static int imin(int a, int b) { return a < b ? a : b; }

/* Level at which the evaluation of a degree-`deg` polynomial ends. */
static int out_level(const plan *pl, int deg) {
  if (deg < pl->baby) {
    int l = pl->level[1];
    for (int k = 2; k <= deg; k++) l = imin(l, pl->level[k]);
    return l - 1;
  }
  int m = giant_for(pl, deg);
  int l = imin(pl->level[m], imin(out_level(pl, deg - m), out_level(pl, m - 1)));
  return l - 1;
}

/* Levels of the powers when T_1 sits at level `top`. */
static void simulate_powers(plan *pl, int top) {
  pl->level[1] = top;
  for (int k = 2; k <= pl->degree || k <= pl->baby; k++) {
    if (k > pl->baby && (k % pl->baby || ((k / pl->baby) & (k / pl->baby - 1)))) continue;
    int a = 1;
    while (2 * a < k) a *= 2;
    int b = k - a;
    pl->level[k] = imin(pl->level[a], pl->level[b]) - 1;
  }
}

/* The map onto [-1, 1] is free when the half-width is within 2^(1/8) of 1. */
static int free_affine(const bt_cheby *p) {
  return fabs(log2(0.5 * (p->b - p->a))) <= 0.125;
}

int bt_cheby_depth(const bt_cheby *p) {
  if (p->degree < 1) return 0;
  plan pl = {p->degree, choose_baby(p->degree), NULL, NULL};
  int size = 2 * (p->degree > pl.baby ? p->degree : pl.baby) + 2;
  pl.level = malloc((size_t)size * sizeof *pl.level);
  if (!pl.level) return -1;
  for (int i = 0; i < size; i++) pl.level[i] = -1000;
  simulate_powers(&pl, 0);
  int d = -out_level(&pl, p->degree);
  free(pl.level);
  return d + !free_affine(p);
}

/* ---- evaluation ---- */

#define TRY(x)                  \
  do {                          \
    if ((st = (x)) != BT_OK) goto done; \
  } while (0)

/* out = 2 Ta Tb - Tc (Tc NULL: - 1), formed before one rescale. */
static bt_status chebyshev_product(bt_evaluator *ev, const bt_ciphertext *ta, const bt_ciphertext *tb,
                                   const bt_ciphertext *tc, bt_ciphertext *out) {
  bt_status st;
  bt_ciphertext *v = NULL;
  TRY(bt_eval_mul_relin(ev, ta, tb, out));
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
  TRY(bt_eval_rescale(ev, out, out));
done:
  bt_ciphertext_free(v);
  return st;
}

static bt_status eval_rec(bt_evaluator *ev, plan *pl, const double *c, int deg, double target,
                          bt_ciphertext *out);

/* deg < baby: sum_k c_k T_k + c_0 on one pre-rescale scale. */
static bt_status eval_base(bt_evaluator *ev, plan *pl, const double *c, int deg, double target,
                           bt_ciphertext *out) {
  const bt_ckks_params *p = pl->T[1]->params;
  int l = out_level(pl, deg) + 1;
  const double pre = target * (double)bt_ckks_q(p, l);
  bt_status st = BT_OK;
  bt_ciphertext *term = NULL;
  TRY(bt_ciphertext_new(p, &term));
  int have = 0;
  for (int k = 1; k <= deg; k++) {
    if (c[k] == 0 && !(k == deg && !have)) continue;
    bt_ciphertext *dst = have ? term : out;
    TRY(bt_eval_mul_const_scaled(ev, pl->T[k], c[k], 0, pre / pl->T[k]->scale, dst));
    dst->scale = pre;
    if (dst->level > l) TRY(bt_eval_drop_level(ev, dst, dst->level - l, dst));
    if (have) TRY(bt_eval_add(ev, out, term, out));
    have = 1;
  }
  if (!have) { /* constant polynomial: 0 * T_1 carries it */
    TRY(bt_eval_mul_const_scaled(ev, pl->T[1], 0, 0, pre / pl->T[1]->scale, out));
    out->scale = pre;
    if (out->level > l) TRY(bt_eval_drop_level(ev, out, out->level - l, out));
  }
  TRY(bt_eval_add_const(ev, out, c[0], 0, out));
  TRY(bt_eval_rescale(ev, out, out));
  out->scale = target; /* pre / q_l == target up to rounding of the double */
done:
  bt_ciphertext_free(term);
  return st;
}

static bt_status eval_rec(bt_evaluator *ev, plan *pl, const double *c, int deg, double target,
                          bt_ciphertext *out) {
  if (deg < pl->baby) return eval_base(ev, pl, c, deg, target, out);
  const bt_ckks_params *p = pl->T[1]->params;
  const int m = giant_for(pl, deg);
  /* p = r + T_m q with q_0 = c_m, q_k = 2 c_{m+k}; r_j = c_j - c_{2m-j} */
  double *q = calloc((size_t)(deg - m + 1), sizeof *q), *r = calloc((size_t)m, sizeof *r);
  bt_ciphertext *qc = NULL, *rc = NULL;
  bt_status st = BT_OK;
  if (!q || !r) {
    st = bt_fail(BT_E_NOMEM, "out of memory evaluating a polynomial");
    goto done;
  }
  q[0] = c[m];
  for (int k = 1; k <= deg - m; k++) q[k] = 2 * c[m + k];
  for (int j = 0; j < m; j++) r[j] = c[j] - (2 * m - j <= deg ? c[2 * m - j] : 0);
  const int lp = imin(pl->level[m], imin(out_level(pl, deg - m), out_level(pl, m - 1)));
  const bt_ciphertext *tm = pl->T[m];
  const double sq = target * (double)bt_ckks_q(p, lp) / tm->scale;
  TRY(bt_ciphertext_new(p, &qc));
  TRY(bt_ciphertext_new(p, &rc));
  TRY(eval_rec(ev, pl, q, deg - m, sq, qc));
  TRY(eval_rec(ev, pl, r, m - 1, target, rc)); /* same precision as the result */
  TRY(bt_eval_mul_relin(ev, tm, qc, out));
  const double pre = out->scale;
  TRY(bt_eval_mul_const_scaled(ev, rc, 1, 0, pre / rc->scale, rc));
  rc->scale = pre;
  TRY(bt_eval_add(ev, out, rc, out));
  if (out->level > lp) TRY(bt_eval_drop_level(ev, out, out->level - lp, out));
  TRY(bt_eval_rescale(ev, out, out));
  out->scale = target;
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
  if (depth > x->level)
    return bt_fail(BT_E_LEVEL, "polynomial of degree %d needs %d levels, ciphertext has %d",
                   poly->degree, depth, x->level);
  if (target_scale == 0) target_scale = x->scale;
  plan pl = {poly->degree, choose_baby(poly->degree), NULL, NULL};
  const int size = 2 * (poly->degree > pl.baby ? poly->degree : pl.baby) + 2;
  bt_status st = BT_OK;
  pl.level = malloc((size_t)size * sizeof *pl.level);
  pl.T = calloc((size_t)size, sizeof *pl.T);
  if (!pl.level || !pl.T) {
    st = bt_fail(BT_E_NOMEM, "out of memory evaluating a polynomial");
    goto done;
  }
  for (int i = 0; i < size; i++) pl.level[i] = -1000;
  TRY(bt_ciphertext_new(p, &pl.T[1]));
  const double mid = 0.5 * (poly->a + poly->b), half = 0.5 * (poly->b - poly->a);
  if (mid != 0)
    TRY(bt_eval_add_const(ev, x, -mid, 0, pl.T[1]));
  else
    TRY(bt_ciphertext_copy(pl.T[1], x));
  if (free_affine(poly)) {
    /* T_1 = (x - mid) / half read off the same integers at scale * half */
    pl.T[1]->scale *= half;
  } else {
    /* a reinterpreted scale would grow like half^k through the powers and
     * starve the constants of precision: spend one level instead */
    const double ql = (double)bt_ckks_q(p, pl.T[1]->level);
    TRY(bt_eval_mul_const_scaled(ev, pl.T[1], 1 / half, 0, ql, pl.T[1]));
    TRY(bt_eval_rescale(ev, pl.T[1], pl.T[1]));
    pl.T[1]->scale = x->scale;
  }
  simulate_powers(&pl, pl.T[1]->level);
  for (int k = 2; k < size; k++) {
    if (pl.level[k] == -1000) continue;
    int a = 1;
    while (2 * a < k) a *= 2;
    int b = k - a;
    TRY(bt_ciphertext_new(p, &pl.T[k]));
    TRY(chebyshev_product(ev, pl.T[a], pl.T[b], a == b ? NULL : pl.T[a - b], pl.T[k]));
  }
  TRY(eval_rec(ev, &pl, poly->c, poly->degree, target_scale, out));
done:
  if (pl.T)
    for (int k = 0; k < size; k++) bt_ciphertext_free(pl.T[k]);
  free(pl.T);
  free(pl.level);
  return st;
}

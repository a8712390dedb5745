/* The wide-range softmax approximation: polynomials, their measured errors,
 * the twin (double precision, same steps) and the exact softmax.  The
 * encrypted evaluation is in train.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blindtuner/train.h"

static int next_pow2(int n) {
  int v = 1;
  while (v < n) v <<= 1;
  return v;
}

static double f_relu(double x, void *ctx) {
  (void)ctx;
  return x > 0 ? x : 0;
}

typedef struct scaled {
  double unit, div;
} scaled;
static double f_exp(double y, void *ctx) {
  const scaled *s = ctx;
  return exp(s->unit * y) / s->div;
}
static double f_inv(double u, void *ctx) {
  (void)ctx;
  return 1 / u;
}
static double f_log(double u, void *ctx) {
  const scaled *s = ctx; /* log S / unit_e with S = u * s_half */
  return log(u * s->div) / s->unit;
}

#define GRID 20000

/* 1/u after `newton` Newton steps from the polynomial's value. */
static double inv_eval(const bt_cheby *inv, int newton, double u) {
  double y = bt_cheby_eval(inv, u);
  for (int k = 0; k < newton; k++) y = y * (2 - u * y);
  return y;
}

static double inv_rel_err(const bt_cheby *inv, int newton, double lo, double hi) {
  double worst = 0;
  for (int i = 0; i <= GRID; i++) {
    const double u = lo * pow(hi / lo, (double)i / GRID);
    worst = fmax(worst, fabs(inv_eval(inv, newton, u) * u - 1));
  }
  return worst;
}

void bt_softmax_approx_free(bt_softmax_approx *sa) {
  if (!sa) return;
  bt_cheby_free(&sa->relu);
  bt_cheby_free(&sa->exp);
  bt_cheby_free(&sa->inv);
  bt_cheby_free(&sa->log);
  memset(sa, 0, sizeof *sa);
}

bt_status bt_softmax_approx_init(int classes, const bt_softmax_config *cfg, bt_softmax_approx *out) {
  if (!out) return bt_fail(BT_E_ARG, "no softmax approximation to fill");
  memset(out, 0, sizeof *out);
  bt_softmax_config c = {0};
  if (cfg) c = *cfg;
  if (c.bound == 0) c.bound = BT_SOFTMAX_BOUND;
  if (c.gap == 0) c.gap = 16;
  const int relu_auto = c.relu_degree == 0;
  if (relu_auto) c.relu_degree = 63;
  if (classes < 2 || classes > 1024) return bt_fail(BT_E_ARG, "softmax over %d classes", classes);
  if (!(c.bound > 0 && c.bound <= 4096) || !(c.gap >= 16 && c.gap <= 256))
    return bt_fail(BT_E_ARG, "softmax bound %g / gap %g out of range", c.bound, c.gap);
  if (c.relu_degree < 3 || c.relu_degree > 511 || c.exp_degree < 0 || c.exp_degree > 511 ||
      c.inv_degree < 0 || c.inv_degree > 511 || c.newton > 6)
    return bt_fail(BT_E_ARG, "softmax polynomial degrees out of range");
  bt_softmax_approx *sa = out;
  sa->classes = classes;
  sa->cpad = next_pow2(classes);
  for (int w = sa->cpad; w > 1; w >>= 1) sa->rounds++;
  sa->bound = c.bound;
  sa->gap = c.gap;
  sa->unit_t = 2 * c.bound + c.gap + 8;
  bt_status st;

  /* relu on [-1, 1], centred so that its error is symmetric; by default the
   * smallest of degree 63, 127, 255 keeping the maximum within 3 */
  for (;;) {
    bt_cheby_free(&sa->relu);
    if ((st = bt_cheby_interpolate(f_relu, NULL, -1, 1, c.relu_degree, &sa->relu))) goto fail;
    double emin = 0, emax = 0;
    for (int i = 0; i <= 4 * GRID; i++) {
      const double x = -1 + 2.0 * i / (4 * GRID);
      const double e = bt_cheby_eval(&sa->relu, x) - f_relu(x, NULL);
      emin = fmin(emin, e);
      emax = fmax(emax, e);
    }
    sa->relu.c[0] -= 0.5 * (emin + emax);
    sa->relu_err = 0.5 * (emax - emin);
    /* each round moves the running maximum by at most relu_err * X */
    sa->delta = sa->rounds * sa->relu_err * sa->unit_t * 1.02 + 1e-3;
    if (!relu_auto || sa->delta <= 3 || c.relu_degree >= 255) break;
    c.relu_degree = 2 * c.relu_degree + 1;
  }
  if (sa->delta > 6) {
    st = bt_fail(BT_E_ARG, "relu degree %d is too low for %d classes: the maximum would be off by %.1f",
                 c.relu_degree, classes, sa->delta);
    goto fail;
  }

  /* the row sum S = sum exp(z - m) lies in [e^-delta, C e^delta] */
  sa->s_lo = 0.9 * exp(-sa->delta);
  sa->s_hi = 1.1 * (classes * exp(sa->delta) + (sa->cpad - classes) * exp(sa->delta - c.gap));
  sa->s_half = 0.5 * (sa->s_hi - sa->s_lo);
  sa->u_fill = 0.5 * (sa->s_lo + sa->s_hi) / sa->s_half;

  /* exp on [-(2 bound + gap) - delta - 1, delta + 1], as a function of d / unit_e */
  const double e_lo = -(2 * c.bound + c.gap) - sa->delta - 1, e_hi = sa->delta + 1;
  sa->unit_e = 0.5 * (e_hi - e_lo);
  scaled se = {sa->unit_e, sa->s_half};
  const int exp_try[3] = {31, 63, 127};
  for (int k = 0; k < 3; k++) {
    const int deg = c.exp_degree ? c.exp_degree : exp_try[k];
    bt_cheby_free(&sa->exp);
    if ((st = bt_cheby_interpolate(f_exp, &se, e_lo / sa->unit_e, e_hi / sa->unit_e, deg, &sa->exp)))
      goto fail;
    double worst = 0;
    for (int i = 0; i <= 4 * GRID; i++) {
      const double y = e_lo / sa->unit_e + (e_hi - e_lo) / sa->unit_e * i / (4 * GRID);
      worst = fmax(worst, fabs(bt_cheby_eval(&sa->exp, y) - f_exp(y, &se)) * sa->s_half);
    }
    if (c.exp_degree || worst < 1e-4) break;
    if (k == 2) {
      st = bt_fail(BT_E_ARG, "softmax range %g is too wide: exp is off by %.1e at degree 127", c.bound, worst);
      goto fail;
    }
  }

  /* 1/u on [s_lo, s_hi] / s_half: the shallowest (degree, Newton steps) */
  const double u_lo = sa->s_lo / sa->s_half, u_hi = sa->s_hi / sa->s_half;
  if (c.inv_degree && c.newton >= 0) {
    if ((st = bt_cheby_interpolate(f_inv, NULL, u_lo, u_hi, c.inv_degree, &sa->inv))) goto fail;
    sa->newton = c.newton;
  } else {
    const int degs[5] = {7, 15, 31, 63, 127};
    int best_depth = 1 << 30, best_deg = 127, best_nt = 3;
    for (int k = 0; k < 5; k++) {
      bt_cheby tmp = {0};
      if ((st = bt_cheby_interpolate(f_inv, NULL, u_lo, u_hi, degs[k], &tmp))) goto fail;
      for (int nt = 0; nt <= 3; nt++) {
        const int depth = bt_cheby_depth(&tmp) + 2 * nt;
        if (depth < best_depth && inv_rel_err(&tmp, nt, u_lo, u_hi) < 1e-4) {
          best_depth = depth;
          best_deg = degs[k];
          best_nt = nt;
        }
      }
      bt_cheby_free(&tmp);
    }
    if ((st = bt_cheby_interpolate(f_inv, NULL, u_lo, u_hi, best_deg, &sa->inv))) goto fail;
    sa->newton = best_nt;
  }

  /* log S / unit_e on the same interval, for the validation loss: the
   * smallest of 15 ... 255 reaching 1e-5 absolute on log S (S spans a
   * ratio of C e^(2 delta): 2,500 at 16 classes and range 128 needs 255,
   * 313 at 10 classes and range 32 127) */
  const int log_try[5] = {15, 31, 63, 127, 255};
  for (int k = 0; k < 5; k++) {
    bt_cheby_free(&sa->log);
    if ((st = bt_cheby_interpolate(f_log, &se, u_lo, u_hi, log_try[k], &sa->log))) goto fail;
    double worst = 0;
    for (int i = 0; i <= GRID; i++) {
      const double u = u_lo + (u_hi - u_lo) * i / GRID;
      worst = fmax(worst, fabs(bt_cheby_eval(&sa->log, u) - f_log(u, &se)) * sa->unit_e);
    }
    sa->log_err = worst;
    if (worst < 1e-5) break;
  }
  return BT_OK;
fail:
  bt_softmax_approx_free(sa);
  return st;
}

int bt_softmax_approx_depth(const bt_softmax_approx *sa) {
  return sa->rounds * bt_cheby_depth(&sa->relu) + 1 + bt_cheby_depth(&sa->exp) + 1 +
         bt_cheby_depth(&sa->inv) + 2 * sa->newton + 1;
}

/* The shared front of the twin: the diagonal-layout row zd, the tournament
 * maximum m (in units of unit_e), the exponentials e and their sum u. */
static double twin_front(const bt_softmax_approx *sa, int row, const double *z, double *zd, double *e,
                         double *m_out) {
  double cur[1024];
  cur[0] = 0; /* cp >= 2 always sets it; keeps gcc quiet */
  const int cp = sa->cpad;
  const double pad = -(sa->bound + sa->gap);
  for (int a = 0; a < cp; a++) {
    const int c = (row + a) % cp;
    zd[a] = c < sa->classes ? z[c] : pad;
    cur[a] = zd[a] / sa->unit_t;
  }
  for (int w = cp / 2; w >= 1; w /= 2)
    for (int a = 0; a < w; a++) {
      const double b = cur[a + w];
      cur[a] = b + bt_cheby_eval(&sa->relu, cur[a] - b);
    }
  const double m = cur[0] * sa->unit_t / sa->unit_e;
  double u = 0;
  for (int a = 0; a < cp; a++) {
    e[a] = bt_cheby_eval(&sa->exp, zd[a] / sa->unit_e - m);
    u += e[a];
  }
  *m_out = m;
  return u;
}

void bt_softmax_approx_row(const bt_softmax_approx *sa, int row, const double *z, double *p) {
  double zd[1024], e[1024], m;
  const int cp = sa->cpad;
  const double u = twin_front(sa, row, z, zd, e, &m);
  const double y = inv_eval(&sa->inv, sa->newton, u);
  for (int a = 0; a < cp; a++) {
    const int c = (row + a) % cp;
    if (c < sa->classes) p[c] = e[a] * y;
  }
}

double bt_softmax_approx_loss_row(const bt_softmax_approx *sa, int row, const double *z, int label) {
  double zd[1024], e[1024], m;
  const double u = twin_front(sa, row, z, zd, e, &m);
  /* the encrypted circuit: log S / unit_e minus (z_label - m) / unit_e,
   * the latter picked out of the diagonal row by the one-hot label */
  const int a = ((label - row) % sa->cpad + sa->cpad) % sa->cpad;
  return sa->unit_e * (bt_cheby_eval(&sa->log, u) - (zd[a] / sa->unit_e - m));
}

void bt_softmax_exact_row(int classes, const double *z, double *p) {
  double m = z[0], s = 0;
  for (int c = 1; c < classes; c++) m = fmax(m, z[c]);
  for (int c = 0; c < classes; c++) s += (p[c] = exp(z[c] - m));
  for (int c = 0; c < classes; c++) p[c] /= s;
}

static bt_status check_shape(int batch, int features, int classes, const double *x, const int *y,
                             const double *w) {
  if (!x || !y || !w) return bt_fail(BT_E_ARG, "plain training: missing argument");
  if (batch < 1 || features < 1 || classes < 2 || classes > 1024)
    return bt_fail(BT_E_ARG, "plain training: %d rows, %d features, %d classes out of range", batch, features, classes);
  for (int r = 0; r < batch; r++)
    if (y[r] < 0 || y[r] >= classes) return bt_fail(BT_E_ARG, "plain training: label %d of row %d not in [0, %d)", y[r], r, classes);
  return BT_OK;
}

bt_status bt_plain_step(const bt_softmax_approx *sa, int batch, int features, int classes, const double *x,
                        const int *y, double lr, double momentum, double *v, double *w) {
  bt_status st = check_shape(batch, features, classes, x, y, w);
  if (st) return st;
  if (!v) return bt_fail(BT_E_ARG, "plain training: missing argument");
  if (sa && sa->classes != classes) return bt_fail(BT_E_ARG, "plain training: softmax for %d classes, not %d", sa->classes, classes);
  double *g = calloc((size_t)classes * features, sizeof *g);
  double z[1024], pr[1024];
  if (!g) return bt_fail(BT_E_NOMEM, "out of memory");
  for (int r = 0; r < batch; r++) {
    const double *xr = x + (size_t)r * features;
    for (int c = 0; c < classes; c++) {
      double s = 0;
      for (int f = 0; f < features; f++) s += xr[f] * v[(size_t)c * features + f];
      z[c] = s;
    }
    if (sa)
      bt_softmax_approx_row(sa, r, z, pr);
    else
      bt_softmax_exact_row(classes, z, pr);
    for (int c = 0; c < classes; c++) {
      const double d = pr[c] - (y[r] == c);
      for (int f = 0; f < features; f++) g[(size_t)c * features + f] += d * xr[f];
    }
  }
  for (size_t i = 0; i < (size_t)classes * features; i++) {
    const double wn = v[i] - lr * g[i] / batch;
    v[i] = wn + momentum * (wn - w[i]);
    w[i] = wn;
  }
  free(g);
  return BT_OK;
}

bt_status bt_plain_evaluate(const bt_softmax_approx *sa, int batch, int n, int features, int classes,
                            const double *x, const int *y, const double *w, double *loss, double *accuracy) {
  bt_status st = check_shape(n, features, classes, x, y, w);
  if (st) return st;
  if (sa && (sa->classes != classes || batch < 1))
    return bt_fail(BT_E_ARG, "plain evaluation: softmax for %d classes, not %d (batch %d)", sa->classes, classes, batch);
  double z[1024], l = 0;
  long right = 0;
  for (int r = 0; r < n; r++) {
    int best = 0;
    for (int c = 0; c < classes; c++) {
      double s = 0;
      for (int f = 0; f < features; f++) s += x[(size_t)r * features + f] * w[(size_t)c * features + f];
      z[c] = s;
      if (z[c] > z[best]) best = c;
    }
    if (sa) {
      l += bt_softmax_approx_loss_row(sa, r % batch, z, y[r]);
    } else { /* log-sum-exp - z_y, exact at any margin */
      double m = z[0], e = 0;
      for (int c = 1; c < classes; c++) m = fmax(m, z[c]);
      for (int c = 0; c < classes; c++) e += exp(z[c] - m);
      l += log(e) + m - z[y[r]];
    }
    right += best == y[r];
  }
  if (loss) *loss = l / n;
  if (accuracy) *accuracy = (double)right / n;
  return BT_OK;
}

void bt_early_stop_init(bt_early_stop *es, int patience, int max_epochs) {
  es->patience = patience < 1 ? 1 : patience;
  es->epochs = 0;
  es->best_epoch = -1;
  es->best = HUGE_VAL;
  es->since = 0;
  es->max_epochs = max_epochs < 1 ? 1 : max_epochs;
  es->stopped = 0;
}

int bt_early_stop_update(bt_early_stop *es, double loss) {
  if (es->stopped || es->epochs >= es->max_epochs) return 0; /* decided already */
  /* a NaN (a broken run) never counts as an improvement */
  if (loss < es->best) {
    es->best = loss;
    es->best_epoch = es->epochs;
    es->since = 0;
  } else {
    es->since++;
  }
  es->epochs++;
  es->stopped = es->since >= es->patience || es->epochs >= es->max_epochs;
  return !es->stopped;
}

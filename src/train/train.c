/* Encrypted training steps: the products of hemat, the softmax of
 * include/blindtuner/train.h on the diagonal layout, Nesterov's update on the
 * complex weights A = V + iW, and bootstrapping wherever a ciphertext has
 * fewer levels left than its next operation needs (and nowhere else). */
#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blindtuner/train.h"

#define NSCRATCH 13 /* softmax 0-5, step 6-10, loss 11-12, bootstrap output NSCRATCH-1 */

struct bt_trainer {
  const bt_ckks_params *p;
  bt_hemat_layout L;
  const bt_softmax_approx *sa;
  bt_bootstrapper *bs;
  double lr, mu, scale;
  bt_hemat *h;
  bt_ciphertext **rolled;
  size_t nrolled;
  bt_ciphertext *s[NSCRATCH];
  double complex *vals;
  bt_plaintext *pt;
  bt_train_stats *stats; /* of the running call */
};

#define TRY(expr)                 \
  do {                            \
    if ((st = (expr)) != BT_OK) { \
      goto done;                  \
    }                             \
  } while (0)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void bt_trainer_free(bt_trainer *t) {
  if (!t) return;
  bt_hemat_free(t->h);
  if (t->rolled)
    for (size_t i = 0; i < t->nrolled; i++) bt_ciphertext_free(t->rolled[i]);
  free(t->rolled);
  for (int i = 0; i < NSCRATCH; i++) bt_ciphertext_free(t->s[i]);
  free(t->vals);
  bt_plaintext_free(t->pt);
  free(t);
}

bt_status bt_trainer_new(const bt_ckks_params *p, const bt_hemat_layout *L, const bt_softmax_approx *sa,
                         bt_bootstrapper *bs, double lr, double momentum, bt_trainer **out) {
  if (!p || !L || !sa || !out) return bt_fail(BT_E_ARG, "trainer: missing argument");
  *out = NULL;
  if (sa->classes != L->classes)
    return bt_fail(BT_E_ARG, "trainer: softmax for %d classes, layout for %d", sa->classes, L->classes);
  if (L->logslots != bt_ckks_logn(p) - 1)
    return bt_fail(BT_E_ARG, "trainer: the layout must use full slots (2^%d)", bt_ckks_logn(p) - 1);
  if (bs && bt_bootstrap_logslots(bs) != (L->fold ? L->fold_logslots : L->logslots))
    return bt_fail(BT_E_ARG, "trainer: the bootstrapper refreshes 2^%d slots, the %s layout needs 2^%d",
                   bt_bootstrap_logslots(bs), L->fold ? "folded" : "plain",
                   L->fold ? L->fold_logslots : L->logslots);
  if (!(lr > 0 && lr < 1e6) || !(momentum >= 0 && momentum < 1))
    return bt_fail(BT_E_ARG, "trainer: learning rate %g / momentum %g out of range", lr, momentum);
  bt_trainer *t = calloc(1, sizeof *t);
  if (!t) return bt_fail(BT_E_NOMEM, "out of memory");
  t->p = p;
  t->L = *L;
  t->sa = sa;
  t->bs = bs;
  t->lr = lr;
  t->mu = momentum;
  t->scale = bt_ckks_default_scale(p);
  bt_status st;
  TRY(bt_hemat_new(p, L, &t->h));
  t->nrolled = (size_t)L->nb * (size_t)L->cpad;
  t->rolled = calloc(t->nrolled, sizeof *t->rolled);
  t->vals = malloc(L->slots * sizeof *t->vals);
  if (!t->rolled || !t->vals) TRY(bt_fail(BT_E_NOMEM, "out of memory"));
  for (size_t i = 0; i < t->nrolled; i++) TRY(bt_ciphertext_new(p, &t->rolled[i]));
  for (int i = 0; i < NSCRATCH; i++) TRY(bt_ciphertext_new(p, &t->s[i]));
  TRY(bt_plaintext_new(p, &t->pt));
  *out = t;
  return BT_OK;
done:
  bt_trainer_free(t);
  return st;
}

bt_status bt_trainer_bootstrap_config(const bt_ckks_params *p, const bt_hemat_layout *L,
                                      bt_bootstrap_config *cfg) {
  bt_status st = bt_bootstrap_config_default(p, cfg);
  if (!st && L->fold) cfg->logslots = L->fold_logslots;
  return st;
}

static bt_status check_x(const bt_trainer *t, bt_ciphertext *const *x);

size_t bt_trainer_steps(const bt_trainer *t, int *steps, size_t cap) {
  return bt_train_layout_steps(&t->L, steps, NULL, cap);
}

size_t bt_train_layout_steps(const bt_hemat_layout *L, int *steps, int *levels, size_t cap) {
  const size_t nh = bt_hemat_layout_steps(L, NULL, 0);
  int *all = malloc((nh + 128) * sizeof *all); /* the softmax's: five doubling sums of at most 20 */
  if (!all || bt_hemat_layout_steps(L, all, nh) != nh) {
    free(all);
    return 0;
  }
  size_t n = nh;
  for (int w = L->cpad / 2; w >= 1; w /= 2) all[n++] = w;
  n += bt_inner_sum_steps(1, L->cpad, 0, all + n);
  n += bt_inner_sum_steps(1, L->cpad, 1, all + n);
  if (L->fold)
    n += bt_inner_sum_steps(L->cpad, (int)(L->slots / (size_t)L->cpad), 0, all + n);
  else
    n += bt_inner_sum_steps(L->s1, L->s0, 0, all + n);
  /* drop repeats; a step the softmax takes too runs at any level */
  int *lv = malloc((n ? n : 1) * sizeof *lv);
  size_t m = 0;
  for (size_t i = 0; lv && i < n; i++) {
    const int level = i < nh ? BT_TRAIN_PRODUCT_LEVEL : -1;
    size_t j = 0;
    while (j < m && all[j] != all[i]) j++;
    if (j == m) all[m] = all[i], lv[m++] = level;
    else if (level < 0) lv[j] = -1;
  }
  const int ok = lv != NULL;
  if (ok) {
    const size_t k = m < cap ? m : cap;
    if (k) memcpy(steps, all, k * sizeof *steps);
    if (k && levels) memcpy(levels, lv, k * sizeof *levels);
  }
  free(all);
  free(lv);
  return ok ? m : 0;
}

bt_status bt_train_layout_rotations(const bt_ckks_params *p, const bt_hemat_layout *L, int *steps, int *levels,
                                   size_t cap, size_t *count) {
  bt_bootstrap_config cfg;
  *count = 0;
  int out_level = 0;
  bt_status st = bt_trainer_bootstrap_config(p, L, &cfg);
  /* parameters too short to bootstrap (no job can train on them): full keys */
  if (!st && bt_bootstrap_config_output_level(p, &cfg, &out_level) != BT_OK) out_level = bt_ckks_max_level(p);
  size_t nb = 0;
  if (!st) st = bt_bootstrap_config_steps(p, &cfg, NULL, NULL, 0, &nb);
  const size_t nt = st ? 0 : bt_train_layout_steps(L, NULL, NULL, 0);
  int *all = st ? NULL : malloc(2 * (nb + nt) * sizeof *all), *train = st ? NULL : malloc(2 * (nt ? nt : 1) * sizeof *train);
  int *lv = all ? all + nb + nt : NULL;
  if (!st && (!all || !train || !nt)) st = bt_fail(BT_E_NOMEM, "out of memory");
  if (!st) st = bt_bootstrap_config_steps(p, &cfg, all, lv, nb, &nb);
  if (!st && bt_train_layout_steps(L, train, train + nt, nt) != nt) st = bt_fail(BT_E_NOMEM, "out of memory");
  if (!st) {
    /* training's own steps at the level each runs at (the products' low,
     * the softmax's wherever bootstrapping leaves them), without the ones
     * bootstrapping has already at a level as high */
    size_t n = nb;
    for (size_t i = 0; i < nt; i++) {
      const int need = train[nt + i] < 0 || train[nt + i] > out_level ? out_level : train[nt + i];
      size_t j = 0;
      while (j < n && all[j] != train[i]) j++;
      if (j == n) all[n] = train[i], lv[n++] = need;
      else if (lv[j] < need) lv[j] = need;
    }
    const size_t m = n < cap ? n : cap;
    if (m) memcpy(steps, all, m * sizeof *steps);
    if (m && levels) memcpy(levels, lv, m * sizeof *levels);
    *count = n;
  }
  free(all), free(train);
  return st;
}

/* The step's first products (DiagABT on X, the gradient's DiagATB on
 * P - Y) take X at level 2 and Y at level 3 whatever the layout. */
int bt_train_x_level(const bt_hemat_layout *L) {
  (void)L;
  return 2;
}
int bt_train_y_level(const bt_hemat_layout *L) {
  (void)L;
  return 3;
}
int bt_trainer_x_level(const bt_trainer *t) { return bt_train_x_level(&t->L); }
int bt_trainer_y_level(const bt_trainer *t) { return bt_train_y_level(&t->L); }

/* ---- plaintext patterns on the diagonal layout ----
 * Plain: row r, diagonal a at slot (r, a), a < C'.  Folded (hemat.h): row
 * qR + r' at (r', qC' + a) in every period of R rows; the patterns are
 * periodic too, except PAT_ROWS, which keeps the first period only. */
enum { PAT_COL0, PAT_PAD, PAT_OUTSIDE, PAT_ROWS };
/* PAT_ROWS: column 0 of the first `rows` rows */
static void pattern_rows(bt_trainer *t, int kind, double v, int rows) {
  const bt_hemat_layout *L = &t->L;
  for (size_t i = 0; i < L->slots; i++) {
    int r = (int)(i / (size_t)L->s1), a = (int)(i % (size_t)L->s1), first = 1;
    if (L->fold) {
      first = r < L->fold_rows;
      r = (a / L->cpad) * L->fold_rows + r % L->fold_rows;
      a %= L->cpad;
    }
    int on = 0;
    if (kind == PAT_COL0) on = a == 0;
    if (kind == PAT_PAD) on = a < L->cpad && (r + a) % L->cpad >= L->classes;
    if (kind == PAT_OUTSIDE) on = a >= L->cpad;
    if (kind == PAT_ROWS) on = a == 0 && r < rows && first;
    t->vals[i] = on ? v : 0;
  }
}
static void pattern(bt_trainer *t, int kind, double v) { pattern_rows(t, kind, v, 0); }

/* out = rescale(a * pattern), the pattern encoded at scale q_level */
static bt_status mask_mul(bt_trainer *t, bt_evaluator *ev, const bt_ciphertext *a, bt_ciphertext *out) {
  if (a->level < 1) return bt_fail(BT_E_LEVEL, "trainer: no level left for a mask");
  bt_status st = bt_ckks_encode(t->p, t->vals, t->L.slots, t->L.logslots, a->level,
                                (double)bt_ckks_q(t->p, a->level), t->pt);
  if (!st) st = bt_eval_mul_plain(ev, a, t->pt, out);
  if (!st) st = bt_eval_rescale(ev, out, out);
  return st;
}
static bt_status add_pattern(bt_trainer *t, bt_evaluator *ev, const bt_ciphertext *a, bt_ciphertext *out) {
  bt_status st = bt_ckks_encode(t->p, t->vals, t->L.slots, t->L.logslots, a->level, a->scale, t->pt);
  return st ? st : bt_eval_add_plain(ev, a, t->pt, out);
}

/* Makes sure `ct` has `need` levels and, with `exact_scale`, exactly the
 * default scale: corrects a drifted scale with one level when there is one
 * to spare, otherwise bootstraps (the only place this file bootstraps).
 * Without `exact_scale` a drifted scale is kept: bootstrapping then reads
 * the value times r at the default scale, and the scale is set to r times
 * the default instead of spending a level on 1 / r (for a polynomial's
 * input, which takes any scale). */
static bt_status refresh_scaled(bt_trainer *t, bt_evaluator *ev, bt_ciphertext *ct, int need, int exact_scale) {
  const double r = ct->scale / t->scale;
  const int exact = fabs(r - 1) < 1e-12;
  bt_status st = BT_OK;
  if (ct->level >= need && (exact || !exact_scale)) return BT_OK;
  if (ct->level >= need + 1) {
    st = bt_eval_mul_const_scaled(ev, ct, 1, 0, t->scale * (double)bt_ckks_q(t->p, ct->level) / ct->scale, ct);
    if (!st) st = bt_eval_rescale(ev, ct, ct);
    if (!st) ct->scale = t->scale;
    return st;
  }
  if (!t->bs) return bt_fail(BT_E_LEVEL, "trainer: a ciphertext needs %d levels, has %d, and no bootstrapper", need, ct->level);
  const double t0 = now();
  const bt_op_counts c0 = bt_evaluator_counts(ev);
  ct->scale = t->scale; /* reads the value times r; undone below */
  bt_ciphertext *tmp = t->s[NSCRATCH - 1];
  st = bt_bootstrap(t->bs, ev, ct, tmp);
  if (!st) st = bt_ciphertext_copy(tmp, ct);
  if (!st && !exact && !exact_scale) ct->scale = t->scale * r;
  else if (!st && !exact) {
    st = bt_eval_mul_const(ev, ct, 1 / r, 0, ct);
    if (!st) st = bt_eval_rescale(ev, ct, ct);
  }
  if (t->stats) {
    const bt_op_counts c1 = bt_evaluator_counts(ev);
    t->stats->bootstraps++;
    t->stats->bootstrap_s += now() - t0;
    /* bootstrapping's own operations are not the step's */
    t->stats->rot -= c1.rot - c0.rot;
    t->stats->mult -= c1.tensor - c0.tensor;
    t->stats->cmult -= c1.pmult - c0.pmult;
  }
  if (!st && ct->level < need) st = bt_fail(BT_E_LEVEL, "trainer: %d levels needed after bootstrapping, %d left", need, ct->level);
  return st;
}

static bt_status refresh(bt_trainer *t, bt_evaluator *ev, bt_ciphertext *ct, int need) {
  return refresh_scaled(t, ev, ct, need, 1);
}

/* The levels a bootstrapped ciphertext has (-1 without a bootstrapper). */
static int boot_level(const bt_trainer *t) {
  return t->bs ? bt_ckks_max_level(t->p) - bt_bootstrap_depth(t->bs) : -1;
}

static bt_status mul_rs(bt_evaluator *ev, const bt_ciphertext *a, const bt_ciphertext *b, bt_ciphertext *out) {
  bt_status st = bt_eval_mul_relin(ev, a, b, out);
  return st ? st : bt_eval_rescale(ev, out, out);
}

/* out = a * b landing exactly on the default scale: when one operand has a
 * level to spare, a constant 1 encoded at the right scale corrects it there,
 * so the product costs no extra level on the critical path. */
static bt_status mul_exact(bt_trainer *t, bt_evaluator *ev, bt_ciphertext *a, bt_ciphertext *b, bt_ciphertext *out) {
  if (a->level < b->level) {
    bt_ciphertext *s = a;
    a = b;
    b = s;
  }
  bt_status st = BT_OK;
  if (a->level > b->level) {
    /* after dropping a to b's level + 1 and one rescale, a * b / q_lb must be the default scale */
    if (a->level > b->level + 1) st = bt_eval_drop_level(ev, a, a->level - b->level - 1, a);
    const double qa = (double)bt_ckks_q(t->p, a->level), qb = (double)bt_ckks_q(t->p, b->level);
    if (!st) st = bt_eval_mul_const_scaled(ev, a, 1, 0, t->scale * qa * qb / (a->scale * b->scale), a);
    if (!st) st = bt_eval_rescale(ev, a, a);
  }
  if (!st) st = mul_rs(ev, a, b, out);
  return st;
}

/* The validation loss: what the softmax computes besides p. */
typedef struct loss_req {
  const bt_ciphertext *y; /* one-hot labels, diagonal layout */
  int rows;               /* valid rows of the batch */
  double weight;          /* multiplies the sum of the row losses */
  bt_ciphertext *out;     /* slot 0: weight * sum of the row losses */
} loss_req;

/* p = softmax(z) with z in units of X (diagonal layout), z consumed; with
 * `lr`, the cross-entropy instead of p (pout unused). */
static bt_status softmax(bt_trainer *t, bt_evaluator *ev, bt_ciphertext *z, bt_ciphertext *pout,
                         const loss_req *lr) {
  const bt_softmax_approx *sa = t->sa;
  bt_ciphertext *cur = t->s[0], *b = t->s[1], *zs = t->s[2], *e = t->s[3], *u = t->s[4], *y = t->s[5];
  const int cp = t->L.cpad, relu_depth = bt_cheby_depth(&sa->relu);
  bt_status st;
  pattern(t, PAT_PAD, -(sa->bound + sa->gap) / sa->unit_t);
  TRY(add_pattern(t, ev, z, z));
  /* folded: z arrives gathered; the bootstrap (mean of the folds) folds it */
  if (t->L.fold && z->level > 0) TRY(bt_eval_drop_level(ev, z, z->level, z));
  /* z's scale drifts in the product; the relu takes it as it is, and z's
   * other uses (zs, the first round's b) land on the default scale on
   * levels they have to spare: a bootstrap's segment keeps all its levels */
  TRY(refresh_scaled(t, ev, z, relu_depth > 1 ? relu_depth : 1, 0));
  TRY(bt_eval_mul_const_scaled(ev, z, sa->unit_t / sa->unit_e, 0,
                               t->scale * (double)bt_ckks_q(t->p, z->level) / z->scale, zs));
  TRY(bt_eval_rescale(ev, zs, zs));
  zs->scale = t->scale;
  TRY(bt_ciphertext_copy(z, cur));
  for (int w = cp / 2; w >= 1; w /= 2) {
    TRY(refresh_scaled(t, ev, cur, relu_depth, 0));
    TRY(bt_eval_rotate(ev, cur, w, b));
    TRY(bt_eval_sub(ev, cur, b, cur));
    TRY(bt_eval_cheby(ev, cur, &sa->relu, t->scale, cur));
    TRY(refresh(t, ev, b, 0));
    TRY(bt_eval_add(ev, cur, b, cur));
  }
  /* the maximum sits in column 0: mask (with the change of unit) and spread */
  TRY(refresh(t, ev, cur, 1));
  pattern(t, PAT_COL0, sa->unit_t / sa->unit_e);
  TRY(mask_mul(t, ev, cur, cur));
  TRY(bt_eval_replicate(ev, cur, 1, cp, cur));
  TRY(bt_eval_sub(ev, zs, cur, e));
  bt_ciphertext *dy = t->s[11];
  if (lr) {
    /* (z_label - m) / unit_e in column 0: the label picks it out of the row */
    bt_ciphertext *yy = t->s[12];
    TRY(bt_ciphertext_copy(e, dy));
    TRY(bt_ciphertext_copy(lr->y, yy));
    TRY(refresh(t, ev, dy, 1));
    TRY(refresh(t, ev, yy, 1));
    TRY(mul_exact(t, ev, dy, yy, dy));
    TRY(refresh(t, ev, dy, 0));
    TRY(bt_eval_inner_sum(ev, dy, 1, cp, dy));
  }
  TRY(refresh(t, ev, e, bt_cheby_depth(&sa->exp)));
  TRY(bt_eval_cheby(ev, e, &sa->exp, t->scale, e));
  if (!lr && t->bs) {
    /* p = e / S must keep the levels D = P - Y needs (BT_TRAIN_PRODUCT_LEVEL),
     * so e needs one more.  When it has fewer, bootstrapping e now, before the
     * row sum is taken from it, is one bootstrap where bootstrapping u and
     * then e again is two -- provided a bootstrapped e carries the whole rest:
     * the mask of u, the inverse and its Newton steps, the product (kappa's
     * level on e is one e has to spare above the inverse's output). */
    const int rest = 1 + bt_cheby_depth(&sa->inv) + 2 * sa->newton + 1 + BT_TRAIN_PRODUCT_LEVEL;
    const int want = BT_TRAIN_PRODUCT_LEVEL + 1 + (sa->newton ? 1 : 0); /* e's 1 / kappa takes one */
    if (e->level < want && rest <= boot_level(t))
      TRY(refresh(t, ev, e, rest));
  }
  /* row sums to column 0, masked, spread over the window; other slots get
   * a value inside the inverse's interval */
  TRY(bt_eval_inner_sum(ev, e, 1, cp, u));
  TRY(refresh(t, ev, u, 1));
  pattern(t, PAT_COL0, 1);
  TRY(mask_mul(t, ev, u, u));
  TRY(bt_eval_replicate(ev, u, 1, cp, u));
  pattern(t, PAT_OUTSIDE, sa->u_fill);
  TRY(add_pattern(t, ev, u, u));
  if (lr) {
    /* row loss / unit_e = log S / unit_e - (z_label - m) / unit_e; the mask
     * keeps column 0 of the valid rows and restores the unit, the row sum
     * gathers the batch in slot 0 */
    TRY(refresh(t, ev, u, bt_cheby_depth(&sa->log)));
    TRY(bt_eval_cheby(ev, u, &sa->log, t->scale, y));
    TRY(bt_eval_sub(ev, y, dy, y));
    TRY(refresh(t, ev, y, 1));
    pattern_rows(t, PAT_ROWS, lr->weight * sa->unit_e, lr->rows);
    TRY(mask_mul(t, ev, y, y));
    if (t->L.fold) /* column 0 of every group, first period */
      TRY(bt_eval_inner_sum(ev, y, cp, (int)(t->L.slots / (size_t)cp), lr->out));
    else
      TRY(bt_eval_inner_sum(ev, y, t->L.s1, t->L.s0, lr->out));
    goto done;
  }
  /* y = 1/u reaches s_half / s_lo: rather than bootstrap it (which
   * multiplies bootstrapping's error by that), bootstrap u so that y keeps a
   * level for the product -- the same count, since y would need one */
  const int inv_levels = bt_cheby_depth(&sa->inv) + 2 * sa->newton;
  const int spare = inv_levels + 1 <= boot_level(t);
  TRY(refresh(t, ev, u, inv_levels + spare));
  TRY(bt_eval_cheby(ev, u, &sa->inv, t->scale, y));
  /* y = 1/u reaches s_half / s_lo (about 1,200 at 16 classes and range 128) and, after
   * Newton's steps, usually has no level left: bootstrapping it would
   * multiply bootstrapping's error (which grows with the message) by that.
   * So the last Newton step returns kappa * y (kappa = s_lo / s_half, the
   * result <= 1, folded into u and the constant 2 on levels u has to spare)
   * and e carries 1 / kappa on a level of its own. */
  const double kappa = sa->newton ? sa->s_lo / sa->s_half : 1;
  for (int k = 0; k < sa->newton; k++) {
    const int last = k == sa->newton - 1;
    const bt_ciphertext *uu = u;
    if (last && kappa != 1) {
      bt_ciphertext *uk = t->s[12];
      TRY(bt_eval_mul_const(ev, u, kappa, 0, uk));
      TRY(bt_eval_rescale(ev, uk, uk));
      uu = uk;
    }
    TRY(mul_rs(ev, uu, y, b));
    TRY(bt_eval_neg(ev, b, b));
    TRY(bt_eval_add_const(ev, b, last ? 2 * kappa : 2, 0, b));
    TRY(mul_rs(ev, y, b, y));
  }
  if (kappa != 1) {
    TRY(refresh(t, ev, e, 2));
    TRY(bt_eval_mul_const(ev, e, 1 / kappa, 0, e));
    TRY(bt_eval_rescale(ev, e, e));
  }
  TRY(refresh(t, ev, e, 1));
  TRY(refresh(t, ev, y, 1));
  TRY(mul_exact(t, ev, e, y, pout));
  TRY(refresh(t, ev, pout, 0));
done:
  return st;
}

static void account(bt_trainer *t, bt_evaluator *ev, bt_op_counts c0, double *bucket, double t0) {
  if (!t->stats) return;
  const bt_op_counts c1 = bt_evaluator_counts(ev);
  t->stats->rot += c1.rot - c0.rot;
  t->stats->mult += c1.tensor - c0.tensor;
  t->stats->cmult += c1.pmult - c0.pmult;
  *bucket += now() - t0;
}

/* Bootstrap time inside a phase is counted as bootstrapping, not as the phase. */
#define PHASE_BEGIN(bucket_field)                        \
  do {                                                   \
    c0 = bt_evaluator_counts(ev);                        \
    t0 = now();                                          \
    b0 = t->stats ? t->stats->bootstrap_s : 0;           \
  } while (0)
#define PHASE_END(bucket_field)                                              \
  do {                                                                       \
    if (t->stats) {                                                          \
      account(t, ev, c0, &t->stats->bucket_field, t0);                       \
      t->stats->bucket_field -= t->stats->bootstrap_s - b0;                  \
    }                                                                        \
  } while (0)

bt_status bt_trainer_step(bt_trainer *t, bt_evaluator *ev, bt_ciphertext *const *x, const bt_ciphertext *y,
                          int rows, bt_ciphertext *a, bt_train_stats *stats) {
  if (!x || !y) return bt_fail(BT_E_ARG, "trainer step: missing argument");
  return bt_trainer_step_shared(t, ev, x, y, rows, rows, NULL, NULL, a, stats);
}

bt_status bt_trainer_refresh(bt_trainer *t, bt_evaluator *ev, bt_ciphertext *a, bt_train_stats *stats) {
  if (!t || !ev || !a) return bt_fail(BT_E_ARG, "trainer refresh: missing argument");
  bt_train_stats local = {0};
  t->stats = stats ? stats : &local;
  const bt_status st = refresh(t, ev, a, 4); /* what a step or a pass over the model does first */
  t->stats = NULL;
  return st;
}

bt_status bt_trainer_step_shared(bt_trainer *t, bt_evaluator *ev, bt_ciphertext *const *x, const bt_ciphertext *y,
                                 int rows, int total_rows, bt_ct_sum_fn sum, void *user, bt_ciphertext *a,
                                 bt_train_stats *stats) {
  if (!x != !y) return bt_fail(BT_E_ARG, "trainer step: missing argument");
  return bt_trainer_step_many(t, ev, x ? 1 : 0, x ? &x : NULL, x ? &y : NULL, &rows, total_rows, sum, user, a, stats);
}

bt_status bt_trainer_step_many(bt_trainer *t, bt_evaluator *ev, int n, bt_ciphertext *const *const *x,
                               const bt_ciphertext *const *y, const int *rows, int total_rows, bt_ct_sum_fn sum,
                               void *user, bt_ciphertext *a, bt_train_stats *stats) {
  if (!t || !ev || !a || n < 0 || (n && (!x || !y || !rows))) return bt_fail(BT_E_ARG, "trainer step: missing argument");
  int mine = 0;
  for (int k = 0; k < n; k++) {
    if (!x[k] || !y[k]) return bt_fail(BT_E_ARG, "trainer step: batch %d of %d missing", k + 1, n);
    if (rows[k] < 1 || rows[k] > t->L.batch)
      return bt_fail(BT_E_ARG, "trainer step: %d rows in a batch of %d", rows[k], t->L.batch);
    if (y[k]->level < 3) return bt_fail(BT_E_LEVEL, "trainer step: labels at level %d, need 3", y[k]->level);
    bt_status sx = check_x(t, x[k]);
    if (sx) return sx;
    mine += rows[k];
  }
  if (sum ? total_rows < (mine > 1 ? mine : 1) : !n || total_rows != mine)
    return bt_fail(BT_E_ARG, "trainer step: %d rows here, %d in all%s", mine, total_rows, sum ? "" : " and no sum");
  t->stats = stats;
  bt_train_stats local = {0};
  if (!t->stats) t->stats = &local;
  bt_ciphertext *ac = t->s[6], *w2 = t->s[7], *z = t->s[8], *p = t->s[9], *gsum = t->s[10];
  const double sa_unit = t->sa->unit_t;
  bt_op_counts c0;
  double t0, b0;
  bt_status st;
  const double B = total_rows, g = t->mu;

  PHASE_BEGIN(other_s);
  TRY(refresh(t, ev, a, 4));
  TRY(bt_eval_conjugate(ev, a, ac));
  TRY(bt_eval_add(ev, a, ac, w2)); /* 2V */
  TRY(bt_eval_drop_level(ev, w2, w2->level - BT_TRAIN_PRODUCT_LEVEL, w2));
  PHASE_END(other_s);

  /* the gradients of this process's batches, summed exactly in the ring */
  for (int k = 0; k < n; k++) {
    bt_ciphertext *gout = k ? z : gsum;
    PHASE_BEGIN(matmul_s);
    TRY(bt_hemat_roll_x(t->h, ev, x[k], t->rolled));
    if (t->L.fold)
      TRY(bt_hemat_abt_gathered(t->h, ev, t->rolled, w2, 0.5 / sa_unit, z));
    else
      TRY(bt_hemat_abt(t->h, ev, t->rolled, w2, 0.5 / sa_unit, z));
    PHASE_END(matmul_s);

    PHASE_BEGIN(softmax_s);
    TRY(softmax(t, ev, z, p, NULL));
    PHASE_END(softmax_s);

    PHASE_BEGIN(other_s);
    TRY(bt_eval_sub(ev, p, y[k], p));
    TRY(refresh(t, ev, p, BT_TRAIN_PRODUCT_LEVEL));
    /* the products' rotations run at most at their level: keys to match */
    TRY(bt_eval_drop_level(ev, p, p->level - BT_TRAIN_PRODUCT_LEVEL, p));
    PHASE_END(other_s);

    PHASE_BEGIN(matmul_s);
    const double complex coef = -t->lr / B * ((1 + g) + I);
    TRY(bt_hemat_atb(t->h, ev, t->rolled, p, &coef, 1, &gout));
    if (k) TRY(bt_eval_add(ev, gsum, gout, gsum));
    PHASE_END(matmul_s);
  }
  if (sum) { /* the other ranks' gradients: exact modular sums of the limbs */
    PHASE_BEGIN(other_s);
    TRY(sum(user, gsum, n > 0));
    PHASE_END(other_s);
  }

  /* A' = (1+g)V - gW + iV + coef G with V = (A + conj A)/2, W = (A - conj A)/2i */
  PHASE_BEGIN(other_s);
  TRY(bt_eval_mul_const(ev, a, 0.5 * (1 + g), 0.5 * (1 + g), a));
  TRY(bt_eval_rescale(ev, a, a));
  TRY(bt_eval_mul_const(ev, ac, 0.5 * (1 + g), 0.5 * (1 - g), ac));
  TRY(bt_eval_rescale(ev, ac, ac));
  TRY(bt_eval_add(ev, a, ac, a));
  TRY(bt_eval_add(ev, a, gsum, a));
  PHASE_END(other_s);
done:
  t->stats = NULL;
  return st;
}

/* The products' rotations run at X's level: keys are made for at most
 * BT_TRAIN_PRODUCT_LEVEL (bt_train_layout_steps). */
static bt_status check_x(const bt_trainer *t, bt_ciphertext *const *x) {
  for (int j = 0; j < t->L.nb; j++)
    if (!x[j] || x[j]->level > BT_TRAIN_PRODUCT_LEVEL)
      return x[j] ? bt_fail(BT_E_LEVEL, "trainer: X block %d at level %d; X is encrypted at level %d", j, x[j]->level,
                            bt_train_x_level(&t->L))
                  : bt_fail(BT_E_ARG, "trainer: X block %d missing", j);
  return BT_OK;
}

/* z = X W^T * wscale for W = Im(a) */
static bt_status logits(bt_trainer *t, bt_evaluator *ev, bt_ciphertext *const *x, bt_ciphertext *a,
                        double wscale, int gathered, bt_ciphertext *z) {
  bt_ciphertext *w = t->s[6], *ac = t->s[7];
  bt_op_counts c0;
  double t0, b0;
  bt_status st;
  TRY(check_x(t, x));
  PHASE_BEGIN(other_s);
  TRY(refresh(t, ev, a, 4)); /* in place: whoever uses a next finds it fresh */
  TRY(bt_ciphertext_copy(a, w));
  TRY(bt_eval_conjugate(ev, w, ac));
  TRY(bt_eval_sub(ev, w, ac, w));               /* 2iW */
  TRY(bt_eval_mul_const(ev, w, 0, -0.5, w));    /* W */
  TRY(bt_eval_rescale(ev, w, w));
  TRY(bt_eval_drop_level(ev, w, w->level - BT_TRAIN_PRODUCT_LEVEL, w));
  PHASE_END(other_s);
  PHASE_BEGIN(matmul_s);
  TRY(bt_hemat_roll_x(t->h, ev, x, t->rolled));
  if (gathered)
    TRY(bt_hemat_abt_gathered(t->h, ev, t->rolled, w, wscale, z));
  else
    TRY(bt_hemat_abt(t->h, ev, t->rolled, w, wscale, z));
  PHASE_END(matmul_s);
done:
  return st;
}

bt_status bt_trainer_logits(bt_trainer *t, bt_evaluator *ev, bt_ciphertext *const *x, bt_ciphertext *a,
                            bt_ciphertext *z, bt_train_stats *stats) {
  if (!t || !ev || !x || !a || !z) return bt_fail(BT_E_ARG, "trainer logits: missing argument");
  bt_train_stats local = {0};
  t->stats = stats ? stats : &local;
  bt_status st = logits(t, ev, x, a, 1, 0, z);
  t->stats = NULL;
  return st;
}

bt_status bt_trainer_loss(bt_trainer *t, bt_evaluator *ev, bt_ciphertext *const *x, const bt_ciphertext *y,
                          int rows, double weight, bt_ciphertext *a, bt_ciphertext *loss,
                          bt_train_stats *stats) {
  if (!t || !ev || !x || !y || !a || !loss) return bt_fail(BT_E_ARG, "trainer loss: missing argument");
  if (rows < 1 || rows > t->L.batch)
    return bt_fail(BT_E_ARG, "trainer loss: %d valid rows in a batch of %d", rows, t->L.batch);
  if (!(fabs(weight) > 0 && fabs(weight) < 1e6)) return bt_fail(BT_E_ARG, "trainer loss: weight %g", weight);
  if (y->level < 1) return bt_fail(BT_E_LEVEL, "trainer loss: labels at level %d, need 1", y->level);
  bt_train_stats local = {0};
  t->stats = stats ? stats : &local;
  bt_ciphertext *z = t->s[8];
  const loss_req req = {y, rows, weight, loss};
  bt_op_counts c0;
  double t0, b0;
  bt_status st;
  TRY(logits(t, ev, x, a, 1 / t->sa->unit_t, t->L.fold, z));
  PHASE_BEGIN(softmax_s);
  TRY(softmax(t, ev, z, NULL, &req));
  PHASE_END(softmax_s);
done:
  t->stats = NULL;
  return st;
}

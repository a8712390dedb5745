/* Full-slot CKKS bootstrapping (see circuits.h for the outline).
 *
 * The special FFT (the decoding map in the 5^j slot order) factors into
 * log2(n) butterfly stages S_2 .. S_n applied to a bit-reversed vector; each
 * stage has three non-zero diagonals (0, +len/2, -len/2).  CoeffsToSlots
 * applies S_n^-1 .. S_2^-1 and leaves the coefficients in bit-reversed slot
 * order, which EvalMod does not care about and SlotsToCoeffs (S_2 .. S_n)
 * expects, so no permutation is ever evaluated.  Consecutive stages are
 * multiplied together into one matrix per level. */
#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blindtuner/circuits.h"

#define MAX_GROUPS 16

struct bt_bootstrapper {
  const bt_ckks_params *p;
  bt_bootstrap_config cfg;
  int logslots;
  double scale, evalmod_scale;
  int lift; /* message lift gamma */
  bt_lintrans *cts[MAX_GROUPS], *stc[MAX_GROUPS];
  bt_cheby cheb;
  const bt_encaps_key *to_sparse;
  const bt_switch_key *to_dense;
  double split[4]; /* seconds of the last bootstrap, by phase */
};

/* ---- sparse diagonal matrices over n slots ---- */
typedef struct smat {
  int n;
  double complex **d; /* n pointers, NULL for a zero diagonal */
} smat;

static smat *smat_new(int n) {
  smat *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->n = n;
  m->d = calloc((size_t)n, sizeof *m->d);
  if (!m->d) {
    free(m);
    return NULL;
  }
  return m;
}

static void smat_free(smat *m) {
  if (!m) return;
  for (int k = 0; k < m->n; k++) free(m->d[k]);
  free(m->d);
  free(m);
}

static double complex *smat_diag(smat *m, int k) {
  if (!m->d[k]) m->d[k] = calloc((size_t)m->n, sizeof **m->d);
  return m->d[k];
}

/* A o B: (A B v)[i] = sum_{a,b} A_a[i] B_b[i + a] v[i + a + b]. */
static smat *smat_mul(const smat *A, const smat *B) {
  const int n = A->n;
  smat *C = smat_new(n);
  if (!C) return NULL;
  for (int a = 0; a < n; a++) {
    if (!A->d[a]) continue;
    for (int b = 0; b < n; b++) {
      if (!B->d[b]) continue;
      double complex *c = smat_diag(C, (a + b) % n);
      if (!c) {
        smat_free(C);
        return NULL;
      }
      for (int i = 0; i < n; i++) c[i] += A->d[a][i] * B->d[b][(i + a) % n];
    }
  }
  return C;
}

static void smat_scale(smat *m, double complex s) {
  for (int k = 0; k < m->n; k++)
    if (m->d[k])
      for (int i = 0; i < m->n; i++) m->d[k][i] *= s;
}

static void smat_apply(const smat *m, double complex *v) {
  const int n = m->n;
  double complex *o = calloc((size_t)n, sizeof *o);
  if (!o) abort();
  for (int k = 0; k < n; k++)
    if (m->d[k])
      for (int i = 0; i < n; i++) o[i] += m->d[k][i] * v[(i + k) % n];
  memcpy(v, o, (size_t)n * sizeof *o);
  free(o);
}

/* Butterfly stage of block length len (or its inverse). */
static smat *stage(int logslots, int len, int inverse) {
  const int n = 1 << logslots, lenh = len / 2;
  const uint64_t lenq = 4 * (uint64_t)len;
  smat *m = smat_new(n);
  if (!m) return NULL;
  double complex *d0 = smat_diag(m, 0), *up = smat_diag(m, lenh % n),
                 *down = smat_diag(m, (n - lenh) % n);
  if (!d0 || !up || !down) {
    smat_free(m);
    return NULL;
  }
  uint64_t g5[1 << 16];
  uint64_t g = 1;
  for (int j = 0; j < lenh; j++) {
    g5[j] = g % lenq;
    g = (g * 5) % lenq;
  }
  for (int x = 0; x < n; x++) {
    const int r = x % len, j = r < lenh ? r : r - lenh;
    const double complex c = cexp(2 * M_PI * I * (double)g5[j] / (double)lenq);
    if (!inverse) {
      if (r < lenh) { /* u + c v */
        d0[x] += 1;
        up[x] += c;
      } else { /* u - c v */
        down[x] += 1;
        d0[x] -= c;
      }
    } else {
      if (r < lenh) { /* (a + b) / 2 */
        d0[x] += 0.5;
        up[x] += 0.5;
      } else { /* (a - b) / 2c */
        down[x] += 0.5 / c;
        d0[x] -= 0.5 / c;
      }
    }
  }
  return m;
}

/* Product of stages lens[from..to) in application order. */
static smat *group(int logslots, const int *lens, int from, int to, int inverse) {
  smat *M = stage(logslots, lens[from], inverse);
  for (int s = from + 1; M && s < to; s++) {
    smat *S = stage(logslots, lens[s], inverse), *P = S ? smat_mul(S, M) : NULL;
    smat_free(S);
    smat_free(M);
    M = P;
  }
  return M;
}

void bt_special_fft_reference(double complex *v, int logslots, int inverse) {
  const int n = 1 << logslots;
  for (int s = 0; s < logslots; s++) {
    int len = inverse ? n >> s : 2 << s;
    smat *S = stage(logslots, len, inverse);
    if (!S) abort();
    smat_apply(S, v);
    smat_free(S);
  }
}

/* Sparse slots (n < N/2) run EvalMod once on a ciphertext of 2n real slots:
 * the last CoeffsToSlots group writes its n outputs into the first half of
 * each 2n period and zeros into the second (an n-periodic input read as
 * 2n-periodic), the real and imaginary parts are then laid side by side
 * ([re | im], one rotation by n), and the first SlotsToCoeffs group reads
 * w_j = re_j + i im_j from that layout.  Both stay one matrix each: the
 * widened matrices have at most twice the diagonals, and no level is spent. */
static smat *widen(const smat *M, int stc) {
  const int n = M->n, n2 = 2 * n;
  smat *W = smat_new(n2);
  if (!W) return NULL;
  for (int k = 0; k < n; k++) {
    if (!M->d[k]) continue;
    for (int i = 0; i < n2; i++) {
      const double complex c = M->d[k][i % n];
      if (c == 0) continue;
      if (!stc) {
        if (i >= n) continue; /* second half of each period: zero */
        double complex *d = smat_diag(W, k); /* the input is n-periodic */
        if (!d) goto oom;
        d[i] += c;
      } else {
        const int j = (i % n + k) % n; /* input index of row i on diagonal k */
        double complex *da = smat_diag(W, ((j - i) % n2 + n2) % n2);
        double complex *db = smat_diag(W, ((j + n - i) % n2 + n2) % n2);
        if (!da || !db) goto oom;
        da[i] += c;
        db[i] += I * c;
      }
    }
  }
  return W;
oom:
  smat_free(W);
  return NULL;
}

/* The matrix of transform group gi of `groups` over 2^ls slots (CtS when
 * inverse): stages split as evenly as possible, earlier groups taking the
 * extra; on sparse slots the first CtS and the last StC group are widened
 * to 2n slots (*wide = 1).  NULL when out of memory. */
static smat *group_matrix(int ls, int sparse, int inverse, int groups, int gi, int *wide) {
  const int n = 1 << ls;
  int lens[32];
  for (int s = 0; s < ls; s++) lens[s] = inverse ? n >> s : 2 << s;
  smat *M = group(ls, lens, gi * ls / groups, (gi + 1) * ls / groups, inverse);
  *wide = sparse && (inverse ? gi == groups - 1 : gi == 0);
  if (M && *wide) {
    smat *W = widen(M, !inverse);
    smat_free(M);
    M = W;
  }
  return M;
}

/* Builds the lintrans for groups of stages; `level` of the first group. */
/* Each group's diagonals are encoded at q_level * scale_step, so the
 * ciphertext's scale is multiplied by scale_step per group. */
static bt_status build_transforms(bt_bootstrapper *b, int inverse, int groups, int level,
                                  double total_const, double scale_step, bt_lintrans **out) {
  const int ls = b->logslots, n = 1 << ls;
  const int sparse = ls < bt_ckks_logn(b->p) - 1;
  const double per_group = pow(total_const, 1.0 / groups);
  bt_status st = BT_OK;
  int *idx = malloc((size_t)2 * n * sizeof *idx);
  const double complex **diags = malloc((size_t)2 * n * sizeof *diags);
  if (!idx || !diags) st = bt_fail(BT_E_NOMEM, "out of memory building bootstrapping transforms");
  for (int gi = 0; gi < groups && !st; gi++) {
    int wide;
    smat *M = group_matrix(ls, sparse, inverse, groups, gi, &wide);
    if (!M) {
      st = bt_fail(BT_E_NOMEM, "out of memory building bootstrapping transforms");
      break;
    }
    smat_scale(M, per_group);
    size_t nd = 0;
    for (int k = 0; k < M->n; k++)
      if (M->d[k]) {
        idx[nd] = k;
        diags[nd++] = M->d[k];
      }
    const int lv = level - gi;
    st = bt_lintrans_new(b->p, ls + wide, idx, diags, nd, lv, (double)bt_ckks_q(b->p, lv) * scale_step,
                         &out[gi]);
    smat_free(M);
  }
  free(idx);
  free(diags);
  return st;
}

bt_status bt_bootstrap_config_default(const bt_ckks_params *p, bt_bootstrap_config *cfg) {
  const bt_ckks_literal *lit = bt_ckks_literal_of(p);
  memset(cfg, 0, sizeof *cfg);
  const int dense = lit->secret != BT_SECRET_SPARSE;
  const int h = dense ? 32 : lit->hamming_weight;
  cfg->encaps_hamming_weight = dense ? h : 0;
  /* ModRaise overflow: sum of h terms uniform in [-1/2, 1/2], sigma sqrt(h/12) */
  cfg->k_range = ceil(7 * sqrt(h / 12.0));
  /* three double angles (each doubles EvalMod's error twice over; one or two
   * with a higher degree measured no better at N = 2^12 and cost more).  The
   * interpolant covers cos over +-(2 pi K + pi/2) / 8 to about 2^-46
   * (measured: K = 12 -> degree 31; degree 27 there left 2^-35) */
  cfg->double_angle = 3;
  const double range = (2 * M_PI * cfg->k_range + M_PI / 2) / 8;
  cfg->cheby_degree = (int)ceil(2.5 * range + 6);
  cfg->cts_levels = lit->logn >= 15 && !dense ? 4 : 3;
  cfg->stc_levels = 3;
  /* EvalMod at the scale of the top primes (60 bits at most) */
  const int top_bits = lit->q_bits[lit->nq - 1];
  cfg->log_evalmod_scale = top_bits < 60 ? top_bits : 60;
  /* q_0 / (gamma scale) of about 2^11: +1 bit on random full-slot data at
   * N = 2^16 (19.97 -> 20.95 mean bits), -2 bits on the worst case (every
   * slot equal), where the sine's cubic term takes over */
  const double ratio = (double)bt_ckks_q(p, 0) / bt_ckks_default_scale(p);
  cfg->message_lift = ratio > 0x1p11 ? (int)floor(ratio / 0x1p11 + 0.5) : 1;
  return BT_OK;
}

bt_status bt_bootstrapper_set_encapsulation(bt_bootstrapper *b, const bt_encaps_key *to_sparse,
                                            const bt_switch_key *to_dense) {
  if (!to_sparse || !to_dense || to_sparse->params != b->p || to_dense->params != b->p)
    return bt_fail(BT_E_KEY, "encapsulation keys missing or made for other parameters");
  b->to_sparse = to_sparse;
  b->to_dense = to_dense;
  return BT_OK;
}

static double eval_mod_fn(double y, void *ctx) {
  const bt_bootstrap_config *c = ctx;
  return cos((2 * M_PI * c->k_range * y - M_PI / 2) / ldexp(1.0, c->double_angle));
}

bt_status bt_bootstrapper_new(const bt_ckks_params *p, const bt_bootstrap_config *cfg, double scale,
                              bt_bootstrapper **out) {
  *out = NULL;
  if (cfg->cts_levels < 1 || cfg->cts_levels > MAX_GROUPS || cfg->stc_levels < 1 ||
      cfg->stc_levels > MAX_GROUPS || cfg->cheby_degree < 2 || cfg->double_angle < 0 ||
      !(cfg->k_range >= 1) || !(scale > 0) || cfg->message_lift < 0)
    return bt_fail(BT_E_ARG, "invalid bootstrapping configuration");
  const int lift = cfg->message_lift ? cfg->message_lift : 1;
  if ((double)lift * scale * 16 > (double)bt_ckks_q(p, 0))
    return bt_fail(BT_E_ARG, "message lift %d leaves q_0 / (lift scale) = 2^%.1f, below 2^4", lift,
                   log2((double)bt_ckks_q(p, 0) / (lift * scale)));
  if (cfg->logslots < 0 || cfg->logslots > bt_ckks_logn(p) - 1 ||
      (cfg->logslots && cfg->logslots < cfg->cts_levels) || (cfg->logslots && cfg->logslots < cfg->stc_levels))
    return bt_fail(BT_E_ARG, "cannot bootstrap 2^%d slots at N = 2^%d with %d + %d transform levels",
                   cfg->logslots, bt_ckks_logn(p), cfg->cts_levels, cfg->stc_levels);
  bt_bootstrapper *b = calloc(1, sizeof *b);
  if (!b) return bt_fail(BT_E_NOMEM, "out of memory");
  b->p = p;
  b->cfg = *cfg;
  b->logslots = cfg->logslots ? cfg->logslots : bt_ckks_logn(p) - 1;
  b->scale = scale;
  b->lift = lift;
  b->evalmod_scale = ldexp(1.0, cfg->log_evalmod_scale ? cfg->log_evalmod_scale : 60);
  bt_status st = bt_cheby_interpolate(eval_mod_fn, &b->cfg, -1, 1, cfg->cheby_degree, &b->cheb);
  if (!st && bt_bootstrap_depth(b) > bt_ckks_max_level(p))
    st = bt_fail(BT_E_LEVEL, "bootstrapping needs %d levels, parameters have %d", bt_bootstrap_depth(b),
                 bt_ckks_max_level(p));
  if (st) {
    bt_bootstrapper_free(b);
    return st;
  }
  const int top = bt_ckks_max_level(p);
  const double q0 = (double)bt_ckks_q(p, 0);
  /* CtS: slots t / (q0 K), halved for the real/imaginary split, and for
   * sparse slots divided by the N / 2n copies the partial trace adds up */
  const double up = pow(b->evalmod_scale / scale, 1.0 / cfg->cts_levels);
  const double down = pow(scale / b->evalmod_scale, 1.0 / cfg->stc_levels);
  const double copies = ldexp(1.0, bt_ckks_logn(p) - 1 - b->logslots);
  st = build_transforms(b, 1, cfg->cts_levels, top, scale / (q0 * cfg->k_range) / 2 / copies, up, b->cts);
  /* StC: EvalMod yields sin(2 pi t / q0) ~ 2 pi m / q0; scale back to m / scale */
  const int stc_top = top - cfg->cts_levels - bt_cheby_depth(&b->cheb) - cfg->double_angle;
  if (!st)
    st = build_transforms(b, 0, cfg->stc_levels, stc_top, q0 / (2 * M_PI * scale * b->lift), down, b->stc);
  if (st) {
    bt_bootstrapper_free(b);
    return st;
  }
  *out = b;
  return BT_OK;
}

void bt_bootstrapper_free(bt_bootstrapper *b) {
  if (!b) return;
  for (int i = 0; i < MAX_GROUPS; i++) {
    bt_lintrans_free(b->cts[i]);
    bt_lintrans_free(b->stc[i]);
  }
  bt_cheby_free(&b->cheb);
  free(b);
}

int bt_bootstrap_depth(const bt_bootstrapper *b) {
  return b->cfg.cts_levels + bt_cheby_depth(&b->cheb) + b->cfg.double_angle + b->cfg.stc_levels;
}

int bt_bootstrap_logslots(const bt_bootstrapper *b) { return b->logslots; }

void bt_bootstrap_last_split(const bt_bootstrapper *b, double seconds[4]) {
  memcpy(seconds, b->split, sizeof b->split);
}

size_t bt_bootstrap_steps(const bt_bootstrapper *b, int *steps, size_t cap) {
  /* from the transforms as built (bt_bootstrap_config_steps computes the
   * same without building them; a test holds the two together) */
  const int logn = bt_ckks_logn(b->p);
  size_t bound = (size_t)logn, cnt = 0;
  for (int gi = 0; gi < b->cfg.cts_levels; gi++) bound += 2 * bt_lintrans_num_diagonals(b->cts[gi]);
  for (int gi = 0; gi < b->cfg.stc_levels; gi++) bound += 2 * bt_lintrans_num_diagonals(b->stc[gi]);
  int *all = malloc(2 * bound * sizeof *all), *tmp = all + bound;
  if (!all) return 0;
  /* sparse slots: the partial trace rotates by n, 2n, ..., N/4 (and the
   * real and imaginary halves are put side by side with the first) */
  for (int j = b->logslots; j < logn - 1; j++) all[cnt++] = 1 << j;
  for (int pass = 0; pass < 2; pass++) {
    bt_lintrans *const *lts = pass ? b->stc : b->cts;
    const int groups = pass ? b->cfg.stc_levels : b->cfg.cts_levels;
    for (int gi = 0; gi < groups; gi++) {
      const size_t k = bt_lintrans_steps(lts[gi], tmp);
      if (!k && bt_lintrans_num_diagonals(lts[gi]) > 1) { /* out of memory */
        free(all);
        return 0;
      }
      for (size_t t = 0; t < k; t++) {
        int dup = 0;
        for (size_t u = 0; u < cnt; u++) dup |= all[u] == tmp[t];
        if (!dup) all[cnt++] = tmp[t];
      }
    }
  }
  if (cap) memcpy(steps, all, (cnt < cap ? cnt : cap) * sizeof *steps);
  free(all);
  return cnt;
}

/* Level of the first StC group: below CoeffsToSlots, EvalMod's interpolant
 * and its double angles. */
static bt_status stc_top_level(const bt_ckks_params *p, const bt_bootstrap_config *cfg, int *level) {
  bt_bootstrap_config c = *cfg;
  bt_cheby cheb;
  bt_status st = bt_cheby_interpolate(eval_mod_fn, &c, -1, 1, cfg->cheby_degree, &cheb);
  if (st) return st;
  const int depth = bt_cheby_depth(&cheb);
  bt_cheby_free(&cheb);
  if (depth < 0) return bt_fail(BT_E_NOMEM, "out of memory planning a polynomial");
  *level = bt_ckks_max_level(p) - cfg->cts_levels - depth - cfg->double_angle;
  return BT_OK;
}

bt_status bt_bootstrap_config_output_level(const bt_ckks_params *p, const bt_bootstrap_config *cfg, int *level) {
  bt_status st = stc_top_level(p, cfg, level);
  if (!st) *level -= cfg->stc_levels;
  if (!st && *level < 0) st = bt_fail(BT_E_LEVEL, "bootstrapping needs more levels than the parameters have");
  return st;
}

bt_status bt_bootstrap_config_steps(const bt_ckks_params *p, const bt_bootstrap_config *cfg, int *steps,
                                    int *levels, size_t cap, size_t *count) {
  const int logn = bt_ckks_logn(p), ls = cfg->logslots ? cfg->logslots : logn - 1, sparse = ls < logn - 1;
  const int top = bt_ckks_max_level(p);
  *count = 0;
  if (ls < 1 || ls > logn - 1 || cfg->cts_levels < 1 || cfg->cts_levels > MAX_GROUPS || cfg->stc_levels < 1 ||
      cfg->stc_levels > MAX_GROUPS || cfg->cheby_degree < 2 || cfg->double_angle < 0)
    return bt_fail(BT_E_ARG, "invalid bootstrapping configuration");
  int stc_top = top;
  bt_status st = levels ? stc_top_level(p, cfg, &stc_top) : BT_OK;
  if (st) return st;
  if (stc_top - cfg->stc_levels < 0) stc_top = top; /* cannot bootstrap on these parameters: full keys */
  enum { MAXSTEPS = 4096 };
  int *all = malloc(2 * MAXSTEPS * sizeof *all), *lv = all + MAXSTEPS, *tmp = malloc(((size_t)4 << ls) * sizeof *tmp),
      *idx = malloc(((size_t)2 << ls) * sizeof *idx);
  st = all && tmp && idx ? BT_OK : bt_fail(BT_E_NOMEM, "out of memory");
  size_t cnt = 0;
  /* as bt_bootstrap_steps: the partial trace (right after ModRaise, at the
   * top), then each group's babies and giants at the group's level; a step
   * used twice keeps the higher level */
  for (int j = ls; !st && j < logn - 1; j++) all[cnt] = 1 << j, lv[cnt++] = top;
  for (int pass = 0; pass < 2 && !st; pass++) {
    const int groups = pass ? cfg->stc_levels : cfg->cts_levels;
    for (int gi = 0; gi < groups && !st; gi++) {
      int wide;
      smat *M = group_matrix(ls, sparse, !pass, groups, gi, &wide);
      if (!M) {
        st = bt_fail(BT_E_NOMEM, "out of memory");
        break;
      }
      size_t nd = 0;
      for (int k = 0; k < M->n; k++)
        if (M->d[k]) idx[nd++] = k;
      smat_free(M);
      const int glevel = (pass ? stc_top : top) - gi;
      const size_t k = bt_lintrans_index_steps(idx, nd, bt_lintrans_giant_step(idx, nd, ls + wide), ls + wide, tmp);
      if (!k && nd > 1) {
        st = bt_fail(BT_E_NOMEM, "out of memory");
        break;
      }
      for (size_t t = 0; t < k; t++) {
        size_t u = 0;
        while (u < cnt && all[u] != tmp[t]) u++;
        if (u < cnt) {
          if (lv[u] < glevel) lv[u] = glevel;
        } else if (cnt < MAXSTEPS) {
          all[cnt] = tmp[t], lv[cnt++] = glevel;
        }
      }
    }
  }
  if (!st) {
    const size_t m = cnt < cap ? cnt : cap;
    if (m) memcpy(steps, all, m * sizeof *steps);
    if (m && levels) memcpy(levels, lv, m * sizeof *levels);
    *count = cnt;
  }
  free(all), free(tmp), free(idx);
  return st;
}

#define TRY(x)                          \
  do {                                  \
    if ((st = (x)) != BT_OK) goto done; \
  } while (0)

/* c <- 2 c^2 - 1 (one level). */
static bt_status double_angle(bt_evaluator *ev, bt_ciphertext *c) {
  bt_status st;
  if ((st = bt_eval_mul_relin(ev, c, c, c)) || (st = bt_eval_add(ev, c, c, c)) ||
      (st = bt_eval_add_const(ev, c, -1, 0, c)))
    return st;
  return bt_eval_rescale(ev, c, c);
}

bt_status bt_bootstrap(bt_bootstrapper *b, bt_evaluator *ev, const bt_ciphertext *in, bt_ciphertext *out) {
  const bt_ckks_params *p = b->p;
  if (in->params != p || out->params != p) return bt_fail(BT_E_PARAMS, "cannot bootstrap: other parameters");
  if (in->logslots < b->logslots)
    return bt_fail(BT_E_ARG, "cannot bootstrap 2^%d slots: this bootstrapper handles 2^%d", in->logslots,
                   b->logslots);
  const int logn = bt_ckks_logn(p), ls = b->logslots, sparse = ls < logn - 1;
  if (fabs(in->scale / b->scale - 1) > 1e-9)
    return bt_fail(BT_E_SCALE, "cannot bootstrap a ciphertext at scale 2^%.2f (configured 2^%.2f)",
                   log2(in->scale), log2(b->scale));
  bt_status st = BT_OK;
  bt_ciphertext *u = NULL, *conj = NULL, *re = NULL, *im = NULL;
  TRY(bt_ciphertext_new(p, &u));
  TRY(bt_ciphertext_new(p, &conj));
  TRY(bt_ciphertext_new(p, &re));
  TRY(bt_ciphertext_new(p, &im));
  const int dense = bt_ckks_literal_of(p)->secret != BT_SECRET_SPARSE;
  if (dense && (!b->to_sparse || !b->to_dense))
    TRY(bt_fail(BT_E_KEY, "cannot bootstrap under a dense secret without encapsulation keys"));
  double t = bt_seconds();
  TRY(bt_eval_drop_level(ev, in, in->level, u));
  /* the message lift: an exact integer product, the scale kept nominal (the
   * 1/gamma is in SlotsToCoeffs) */
  if (b->lift > 1) TRY(bt_eval_mul_const_scaled(ev, u, b->lift, 0, 1.0, u));
  if (dense) TRY(bt_eval_encapsulate(ev, u, b->to_sparse, u)); /* to s' */
  TRY(bt_eval_mod_raise(ev, u, u));
  if (dense) TRY(bt_eval_keyswitch(ev, u, b->to_dense, u)); /* back to s, top level */
  /* sparse slots: the partial trace sum_j rot(u, j n) keeps the part of t in
   * Z[X^(N/2n)], N/2n times (the 1/(N/2n) is in CtS): of an n-periodic input
   * that is the input; of any other, the mean of its n-periodic folds */
  for (int j = ls; j < logn - 1; j++) {
    TRY(bt_eval_rotate(ev, u, 1 << j, conj));
    TRY(bt_eval_add(ev, u, conj, u));
  }
  u->logslots = ls;
  b->split[0] = bt_seconds() - t;
  t = bt_seconds();
  for (int gi = 0; gi < b->cfg.cts_levels; gi++) {
    if (sparse && gi == b->cfg.cts_levels - 1) u->logslots = ls + 1; /* the widened last group */
    TRY(bt_eval_lintrans(ev, u, b->cts[gi], u));
    TRY(bt_eval_rescale(ev, u, u));
  }
  /* real part u + conj(u), imaginary part -i (u - conj(u)) (the 1/2 is in CtS) */
  TRY(bt_eval_conjugate(ev, u, conj));
  TRY(bt_eval_add(ev, u, conj, re));
  TRY(bt_eval_sub(ev, u, conj, im));
  TRY(bt_eval_mul_const_scaled(ev, im, 0, -1, 1.0, im));
  if (sparse) { /* [re | im] in one ciphertext of 2n real slots */
    TRY(bt_eval_rotate(ev, im, 1 << ls, conj));
    TRY(bt_eval_add(ev, re, conj, re));
  }
  b->split[1] = bt_seconds() - t;
  t = bt_seconds();
  /* EvalMod: choose the Chebyshev output scale so that after the double
   * angles (S -> S^2 / q) the scale is exactly the configured one */
  const int r = b->cfg.double_angle;
  const int l_cheb = re->level - bt_cheby_depth(&b->cheb);
  double s = b->evalmod_scale;
  for (int i = r; i >= 1; i--) s = sqrt(s * (double)bt_ckks_q(p, l_cheb - i + 1));
  bt_ciphertext *halves[2] = {re, im};
  for (int h = 0; h < 2 - sparse; h++) {
    TRY(bt_eval_cheby(ev, halves[h], &b->cheb, s, halves[h]));
    for (int i = 0; i < r; i++) TRY(double_angle(ev, halves[h]));
  }
  if (sparse) {
    TRY(bt_ciphertext_copy(re, u)); /* the first StC group reads [re | im] */
  } else {
    TRY(bt_eval_mul_const_scaled(ev, im, 0, 1, 1.0, im));
    TRY(bt_eval_add(ev, re, im, u));
  }
  b->split[2] = bt_seconds() - t;
  t = bt_seconds();
  u->scale = b->evalmod_scale; /* equal up to the rounding of the square roots above */
  for (int gi = 0; gi < b->cfg.stc_levels; gi++) {
    TRY(bt_eval_lintrans(ev, u, b->stc[gi], u));
    TRY(bt_eval_rescale(ev, u, u));
    u->logslots = ls;
  }
  TRY(bt_ciphertext_copy(u, out));
  out->scale = b->scale;
  out->logslots = in->logslots;
  b->split[3] = bt_seconds() - t;
done:
  bt_ciphertext_free(u);
  bt_ciphertext_free(conj);
  bt_ciphertext_free(re);
  bt_ciphertext_free(im);
  return st;
}

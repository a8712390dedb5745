/* hemat: DiagABT and DiagATB on packed blocks (layout in hemat.h and
 * docs/TRAINING.md). */
#include "blindtuner/hemat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct bt_hemat {
  const bt_ckks_params *p;
  bt_hemat_layout L;
  bt_hemat_counts cnt;
  double complex *vals; /* slots entries */
  bt_plaintext *pt;
};

static int ilog2(size_t n) {
  int k = 0;
  while (((size_t)1 << k) < n) k++;
  return k;
}
static int next_pow2(int n) {
  int v = 1;
  while (v < n) v <<= 1;
  return v;
}

bt_status bt_hemat_layout_init(int logslots, int batch, int features, int classes,
                               bt_hemat_layout *out) {
  if (!out) return bt_fail(BT_E_ARG, "no layout");
  memset(out, 0, sizeof *out);
  if (logslots < 2 || logslots > 20) return bt_fail(BT_E_ARG, "log2 slots %d out of range", logslots);
  if (batch < 1 || features < 1 || classes < 2)
    return bt_fail(BT_E_ARG, "need batch >= 1, features >= 1 and classes >= 2 (got %d, %d, %d)",
                   batch, features, classes);
  const size_t slots = (size_t)1 << logslots;
  const int cpad = next_pow2(classes);
  if ((size_t)cpad > slots / 2) return bt_fail(BT_E_ARG, "%d classes do not fit %zu slots", classes, slots);
  const int bpad = next_pow2(batch);
  int s0 = bpad > cpad ? bpad : cpad;
  if ((size_t)s0 > slots / (size_t)cpad) s0 = (int)(slots / (size_t)cpad);
  if (batch > s0)
    return bt_fail(BT_E_ARG, "a batch of %d rows does not fit one block of %d rows (%zu slots, %d classes); "
                   "use a batch of at most %d", batch, s0, slots, cpad, s0);
  const int s1 = (int)(slots / (size_t)s0);
  const int nb = (features + s1 - 1) / s1;
  if ((long)nb * cpad > s0)
    return bt_fail(BT_E_ARG, "weights of %d x %d (padded to %d x %d) do not fit one ciphertext of "
                   "%zu slots", classes, features, cpad, nb * s1, slots);
  const int t = next_pow2(nb) * cpad;
  out->logslots = logslots;
  out->slots = slots;
  out->batch = batch;
  out->features = features;
  out->classes = classes;
  out->cpad = cpad;
  out->s0 = s0;
  out->s1 = s1;
  out->nb = nb;
  out->period_rows = t < s0 ? t : s0;
  out->groups = s1 / cpad;
  out->fold_rows = s0 / out->groups;
  out->fold_logslots = ilog2((size_t)s0 * (size_t)cpad);
  return BT_OK;
}

int bt_hemat_layout_fold(bt_hemat_layout *L, int on) {
  L->fold = on && L->groups > 1 && (long)L->nb * L->cpad <= L->fold_rows;
  return L->fold;
}

/* Rows of a weight or pattern: every period of R rows when folded. */
static int w_periods(const bt_hemat_layout *L) { return L->fold ? L->groups : 1; }
static int w_period_rows(const bt_hemat_layout *L) { return L->fold ? L->fold_rows : L->s0; }

void bt_hemat_pack_x(const bt_hemat_layout *L, const double *x, int j, double *slots) {
  memset(slots, 0, L->slots * sizeof *slots);
  for (int r = 0; r < L->batch; r++)
    for (int t = 0; t < L->s1; t++) {
      const int f = j * L->s1 + t;
      if (f < L->features) slots[(size_t)r * L->s1 + t] = x[(size_t)r * L->features + f];
    }
}

void bt_hemat_pack_w(const bt_hemat_layout *L, const double *w, double *slots) {
  memset(slots, 0, L->slots * sizeof *slots);
  for (int q = 0; q < w_periods(L); q++)
    for (int c = 0; c < L->classes; c++)
      for (int f = 0; f < L->features; f++) {
        const int j = f / L->s1, t = f % L->s1;
        const size_t row = (size_t)q * w_period_rows(L) + (size_t)j * L->cpad + c;
        slots[row * L->s1 + t] = w[(size_t)c * L->features + f];
      }
}

void bt_hemat_unpack_w(const bt_hemat_layout *L, const double *slots, double *w) {
  for (int c = 0; c < L->classes; c++)
    for (int f = 0; f < L->features; f++) {
      const int j = f / L->s1, t = f % L->s1;
      w[(size_t)c * L->features + f] = slots[((size_t)j * L->cpad + c) * L->s1 + t];
    }
}

/* Slot of (row r, diagonal a) in the first period: the plain layout puts
 * it at (r, a); the folded one at (r mod R, (r / R) C' + a). */
static size_t diag_slot(const bt_hemat_layout *L, int r, int a) {
  if (!L->fold) return (size_t)r * L->s1 + a;
  return (size_t)(r % L->fold_rows) * L->s1 + (size_t)(r / L->fold_rows) * L->cpad + a;
}

void bt_hemat_pack_diag(const bt_hemat_layout *L, const double *z, double *slots) {
  memset(slots, 0, L->slots * sizeof *slots);
  const size_t period = L->fold ? (size_t)L->fold_rows * L->s1 : L->slots;
  for (int r = 0; r < L->batch; r++)
    for (int a = 0; a < L->cpad; a++) {
      const int c = (r + a) % L->cpad;
      if (c < L->classes)
        for (size_t q = 0; q < L->slots; q += period) slots[q + diag_slot(L, r, a)] = z[(size_t)r * L->classes + c];
    }
}

void bt_hemat_unpack_diag(const bt_hemat_layout *L, const double *slots, double *z) {
  for (int r = 0; r < L->batch; r++)
    for (int a = 0; a < L->cpad; a++) {
      const int c = (r + a) % L->cpad;
      if (c < L->classes) z[(size_t)r * L->classes + c] = slots[diag_slot(L, r, a)];
    }
}

void bt_hemat_unpack_logits(const bt_hemat_layout *L, const double *slots, double *z) {
  bt_hemat_layout plain = *L;
  plain.fold = 0;
  bt_hemat_unpack_diag(&plain, slots, z);
}

void bt_hetal_reference_counts(int logslots, int batch, int features, int classes,
                               bt_hetal_counts *out) {
  memset(out, 0, sizeof *out);
  /* HETAL tiles W like X, so only the block shape matters here */
  const size_t slots = (size_t)1 << logslots;
  const int c = next_pow2(classes), bpad = next_pow2(batch);
  int s0 = bpad > c ? bpad : c;
  if ((size_t)s0 > slots / (size_t)c) s0 = (int)(slots / (size_t)c);
  const int s1 = (int)(slots / (size_t)s0), nb = (features + s1 - 1) / s1;
  out->abt_cmult = c;
  out->abt_mult = (long)nb * c / 2;
  out->abt_rot = (long)nb * c / 2 + (long)c * ilog2((size_t)s1);
  out->atb_cmult = (long)nb * c / 2 + c / 2;
  out->atb_mult = (long)nb * c / 2;
  out->atb_rot = (long)nb * c / 2 * ilog2((size_t)s0) + c;
}

void bt_hemat_predict_counts(const bt_hemat_layout *L, int ncoef, bt_hemat_counts *roll,
                             bt_hemat_counts *abt, bt_hemat_counts *atb) {
  const long c = L->cpad, nb = L->nb;
  const int ls1 = ilog2((size_t)L->s1);
  memset(roll, 0, sizeof *roll);
  memset(abt, 0, sizeof *abt);
  memset(atb, 0, sizeof *atb);
  roll->rot = roll->rot_hoisted = nb * (c - 1);
  /* folded: W is R-periodic (fewer replication steps), Z is assembled per
   * row group (G C' masks and rotations), D is unfolded by G - 1 hoisted
   * rotations and G masks per pattern (summed before one rescale) */
  const long g = L->fold ? L->groups : 1;
  abt->rot = ilog2((size_t)(w_period_rows(L) / L->period_rows)) + nb * ilog2((size_t)(L->period_rows / L->cpad)) +
             c * ls1 + g * (c - 1) + (g - 1);
  abt->tensor = nb * c;
  abt->relin = c;
  abt->cmult = nb + g * c;
  abt->rescale = nb + c + g * c;
  /* each pattern's rotation is two, by keys the rolls and bootstrapping have */
  atb->rot = c * ls1 + 2 * (c - 1) + nb * ilog2((size_t)(L->s0 / L->cpad)) + (g - 1);
  atb->rot_hoisted = g - 1;
  atb->tensor = nb * c;
  atb->relin = nb;
  atb->cmult = g * c + nb * ncoef;
  atb->rescale = c + nb + nb * ncoef;
}

bt_status bt_hemat_new(const bt_ckks_params *p, const bt_hemat_layout *L, bt_hemat **out) {
  if (!p || !L || !out) return bt_fail(BT_E_ARG, "bt_hemat_new: missing argument");
  *out = NULL;
  if (L->logslots > bt_ckks_logn(p) - 1)
    return bt_fail(BT_E_ARG, "layout of 2^%d slots exceeds N/2 = 2^%d", L->logslots, bt_ckks_logn(p) - 1);
  bt_hemat *h = calloc(1, sizeof *h);
  if (!h) return BT_E_NOMEM;
  h->p = p;
  h->L = *L;
  h->vals = malloc(L->slots * sizeof *h->vals);
  bt_status st = h->vals ? bt_plaintext_new(p, &h->pt) : BT_E_NOMEM;
  if (st) {
    bt_hemat_free(h);
    return st;
  }
  *out = h;
  return BT_OK;
}

void bt_hemat_free(bt_hemat *h) {
  if (!h) return;
  free(h->vals);
  bt_plaintext_free(h->pt);
  free(h);
}

const bt_hemat_layout *bt_hemat_layout_of(const bt_hemat *h) { return &h->L; }
bt_hemat_counts bt_hemat_get_counts(const bt_hemat *h) { return h->cnt; }
void bt_hemat_reset_counts(bt_hemat *h) { memset(&h->cnt, 0, sizeof h->cnt); }

/* Steps of a doubling sum of n (a power of two) blocks of `batch` slots. */
static size_t sum_steps(int batch, int n, int sign, int *steps) {
  size_t k = 0;
  for (int s = 1; s < n; s <<= 1) steps[k++] = sign * s * batch;
  return k;
}

size_t bt_hemat_steps(const bt_hemat *h, int *steps, size_t cap) { return bt_hemat_layout_steps(&h->L, steps, cap); }

size_t bt_hemat_layout_steps(const bt_hemat_layout *L, int *steps, size_t cap) {
  const int c = L->cpad, s0 = L->s0, s1 = L->s1, t = L->period_rows;
  const int slots = (int)L->slots;
  const int g = L->fold ? L->groups : 1;
  /* 3c + 2g single steps and six doubling sums of at most 32 each */
  int *tmp = malloc(((size_t)3 * c + 2 * (size_t)g + 6 * 32) * sizeof *tmp);
  if (!tmp) return 0;
  size_t n = 0;
  for (int k = 1; k < c; k++) tmp[n++] = k * s1;                            /* rolls */
  n += sum_steps(t * s1, w_period_rows(L) / t, 1, tmp + n);                  /* W period */
  n += sum_steps(c * s1, t / c, 1, tmp + n);                                 /* W expansion */
  n += sum_steps(1, s1, 1, tmp + n);                                         /* column sums */
  if (c > 1) tmp[n++] = -(s1 - 1 + c);                                      /* Z assembly: jump */
  if (c > 2) tmp[n++] = -(s1 - 1);                                           /* ... and Horner step */
  if (g > 1) tmp[n++] = -c;                                                  /* Z gathering */
  for (int q = 1; q < g; q++) tmp[n++] = q * c;                              /* unfolding D */
  for (int k = 1; k < c; k++) tmp[n++] = k;                                  /* D patterns (and rolls) */
  n += sum_steps(1, s1, -1, tmp + n);                                        /* D broadcast */
  n += sum_steps(c * s1, s0 / c, 1, tmp + n);                                /* row sums */
  /* distinct rotations (steps equal modulo the slots are one), in order */
  size_t out = 0;
  for (size_t i = 0; i < n; i++) {
    const int r = ((tmp[i] % slots) + slots) % slots;
    if (r == 0) continue;
    int dup = 0;
    for (size_t k = 0; k < i && !dup; k++) dup = ((tmp[k] % slots) + slots) % slots == r;
    if (dup) continue;
    if (out < cap) steps[out] = tmp[i];
    out++;
  }
  free(tmp);
  return out;
}

/* ---- counted primitives ---- */
static bt_status rot(bt_hemat *h, bt_evaluator *ev, const bt_ciphertext *a, int step, bt_ciphertext *out) {
  const int slots = (int)h->L.slots;
  if (((step % slots) + slots) % slots == 0) return a == out ? BT_OK : bt_ciphertext_copy(a, out);
  h->cnt.rot++;
  return bt_eval_rotate(ev, a, step, out);
}

/* a = sum_{m < n} rot(a, sign * m * batch) by doubling; tmp is scratch. */
static bt_status dsum(bt_hemat *h, bt_evaluator *ev, bt_ciphertext *a, int batch, int n, int sign,
                      bt_ciphertext *tmp) {
  bt_status st = BT_OK;
  for (int s = 1; s < n && !st; s <<= 1)
    if (!(st = rot(h, ev, a, sign * s * batch, tmp))) st = bt_eval_add(ev, a, tmp, a);
  return st;
}

/* out = rescale(a * mask) with the mask encoded at scale q_level, so the
 * scale is unchanged and one level is used. */
static bt_status mask_mul(bt_hemat *h, bt_evaluator *ev, const bt_ciphertext *a, bt_ciphertext *out) {
  if (a->level < 1) return bt_fail(BT_E_LEVEL, "hemat: no level left for a mask (level 0)");
  bt_status st = bt_ckks_encode(h->p, h->vals, h->L.slots, h->L.logslots, a->level,
                                (double)bt_ckks_q(h->p, a->level), h->pt);
  if (!st) st = bt_eval_mul_plain(ev, a, h->pt, out);
  if (!st) st = bt_eval_rescale(ev, out, out);
  h->cnt.cmult++;
  h->cnt.rescale++;
  return st;
}

static void set_rows_mask(bt_hemat *h, int row0, int nrows, int period, double complex v) {
  const bt_hemat_layout *L = &h->L;
  for (size_t i = 0; i < L->slots; i++) {
    const int r = (int)(i / (size_t)L->s1);
    h->vals[i] = ((r % period) >= row0 && (r % period) < row0 + nrows) ? v : 0;
  }
}

static void set_col_mask(bt_hemat *h, int col, double complex v) {
  for (size_t i = 0; i < h->L.slots; i++) h->vals[i] = (int)(i % (size_t)h->L.s1) == col ? v : 0;
}

static void free_all(bt_ciphertext **c, size_t n) {
  if (!c) return;
  for (size_t i = 0; i < n; i++) bt_ciphertext_free(c[i]);
  free(c);
}

static bt_status new_all(const bt_ckks_params *p, bt_ciphertext ***c, size_t n) {
  *c = calloc(n, sizeof **c);
  if (!*c) return BT_E_NOMEM;
  for (size_t i = 0; i < n; i++) {
    bt_status st = bt_ciphertext_new(p, &(*c)[i]);
    if (st) {
      free_all(*c, n);
      *c = NULL;
      return st;
    }
  }
  return BT_OK;
}

bt_status bt_hemat_roll_x(bt_hemat *h, bt_evaluator *ev, bt_ciphertext *const *x, bt_ciphertext **rolled) {
  const bt_hemat_layout *L = &h->L;
  const int c = L->cpad;
  int steps[64];
  for (int k = 1; k < c; k++) steps[k - 1] = k * L->s1;
  for (int j = 0; j < L->nb; j++) {
    if (x[j]->logslots != L->logslots)
      return bt_fail(BT_E_ARG, "X block %d has 2^%d slots, the layout 2^%d", j, x[j]->logslots, L->logslots);
    bt_status st = bt_ciphertext_copy(x[j], rolled[(size_t)j * c]);
    if (!st && c > 1) st = bt_eval_rotate_hoisted(ev, x[j], steps, (size_t)(c - 1), rolled + (size_t)j * c + 1);
    if (st) return st;
    h->cnt.rot += c - 1;
    h->cnt.rot_hoisted += c - 1;
  }
  return BT_OK;
}

static bt_status abt(bt_hemat *h, bt_evaluator *ev, bt_ciphertext *const *rolled, const bt_ciphertext *w,
                     double wscale, int fold, bt_ciphertext *z);

bt_status bt_hemat_abt(bt_hemat *h, bt_evaluator *ev, bt_ciphertext *const *rolled, const bt_ciphertext *w,
                       double wscale, bt_ciphertext *z) {
  return abt(h, ev, rolled, w, wscale, 0, z);
}

bt_status bt_hemat_abt_gathered(bt_hemat *h, bt_evaluator *ev, bt_ciphertext *const *rolled,
                                const bt_ciphertext *w, double wscale, bt_ciphertext *z) {
  if (!h->L.fold) return bt_fail(BT_E_ARG, "DiagABT: the gathered output needs a folded layout");
  return abt(h, ev, rolled, w, wscale, 1, z);
}

static bt_status abt(bt_hemat *h, bt_evaluator *ev, bt_ciphertext *const *rolled, const bt_ciphertext *w,
                     double wscale, int fold, bt_ciphertext *z) {
  const bt_hemat_layout *L = &h->L;
  const int c = L->cpad, s1 = L->s1, t = L->period_rows;
  if (w->logslots != L->logslots) return bt_fail(BT_E_ARG, "weights have 2^%d slots, the layout 2^%d", w->logslots, L->logslots);
  if (w->level < 3) return bt_fail(BT_E_LEVEL, "DiagABT needs the weights at level >= 3 (got %d)", w->level);
  if (!isfinite(wscale)) return bt_fail(BT_E_ARG, "non-finite weight scale");
  bt_ciphertext **acc = NULL, *w4 = NULL, *wrep = NULL, *tmp = NULL, *part = NULL;
  bt_status st = new_all(h->p, &acc, (size_t)c);
  if (!st) st = bt_ciphertext_new(h->p, &part);
  if (!st) st = bt_ciphertext_new(h->p, &w4);
  if (!st) st = bt_ciphertext_new(h->p, &wrep);
  if (!st) st = bt_ciphertext_new(h->p, &tmp);
  if (!st) st = bt_ciphertext_copy(w, w4);
  if (!st) st = dsum(h, ev, w4, t * s1, w_period_rows(L) / t, 1, tmp);
  for (int j = 0; j < L->nb && !st; j++) {
    set_rows_mask(h, j * c, c, t, wscale);
    if ((st = mask_mul(h, ev, w4, wrep)) || (st = dsum(h, ev, wrep, c * s1, t / c, 1, tmp))) break;
    for (int k = 0; k < c && !st; k++) {
      bt_ciphertext *dst = j == 0 ? acc[k] : tmp;
      if (!(st = bt_eval_mul(ev, rolled[(size_t)j * c + k], wrep, dst)) && j > 0)
        st = bt_eval_add(ev, acc[k], tmp, acc[k]);
      h->cnt.tensor++;
    }
  }
  for (int k = 0; k < c && !st; k++) {
    if ((st = bt_eval_relin(ev, acc[k], acc[k])) || (st = bt_eval_rescale(ev, acc[k], acc[k]))) break;
    h->cnt.relin++;
    h->cnt.rescale++;
    st = dsum(h, ev, acc[k], 1, s1, 1, tmp);
  }
  /* column 0 of acc_k, rotated by k rows (and to its diagonal), is Z's.
   * Gathered: the rows that land in group q = ((r + k) mod s0) / R, times G
   * so that the folds' mean is the value, are assembled per group and
   * shifted right by q C' once per group (G C' - 1 rotations, by the three
   * keys of the Horner sums below) */
  const int groups = fold ? L->groups : 1;
  bt_ciphertext *grp = NULL, *chain = NULL;
  if (!st && fold) st = bt_ciphertext_new(h->p, &grp);
  if (!st) st = bt_ciphertext_new(h->p, &chain);
  /* Horner's rule on both sums, so that they need two and one Galois keys
   * instead of C' - 1 and G - 1: with r_k = -(k s1 + C' - k) = r_1 - (k - 1)
   * (s1 - 1) for k >= 1 and r_0 = 0,
   *   sum_k rot(P_k, r_k) = P_0 + rot(P_1 + rot(P_2 + ..., -(s1 - 1)), r_1),
   * and sum_q rot(G_q, -q C') = G_0 + rot(G_1 + rot(G_2 + ..., -C'), -C') */
  for (int q = groups - 1; q >= 0 && !st; q--) {
    bt_ciphertext *dst = fold ? grp : z;
    for (int k = c - 1; k >= 0 && !st; k--) {
      if (!fold) {
        set_col_mask(h, 0, 1);
      } else {
        for (size_t i = 0; i < L->slots; i++) {
          const int r = (int)(i / (size_t)s1), col = (int)(i % (size_t)s1);
          h->vals[i] = col == 0 && ((r + k) % L->s0) / L->fold_rows == q ? L->groups : 0;
        }
      }
      if ((st = mask_mul(h, ev, acc[k], k == c - 1 && k > 0 ? chain : k == 0 && c == 1 ? dst : part))) break;
      if (k == c - 1 && k > 0) continue;
      if (k > 0) { /* chain <- rot(chain, -(s1 - 1)) + P_k */
        if (!(st = rot(h, ev, chain, -(s1 - 1), tmp))) st = bt_eval_add(ev, tmp, part, chain);
      } else if (c > 1) { /* dst = P_0 + rot(chain, r_1) */
        if (!(st = rot(h, ev, chain, -(s1 - 1 + c), tmp))) st = bt_eval_add(ev, tmp, part, dst);
      }
    }
    if (st || !fold) break;
    if (q == groups - 1) {
      st = bt_ciphertext_copy(grp, z);
    } else if (!(st = rot(h, ev, z, -c, tmp))) { /* z <- rot(z, -C') + G_q */
      st = bt_eval_add(ev, tmp, grp, z);
    }
  }
  bt_ciphertext_free(chain);
  bt_ciphertext_free(grp);
  bt_ciphertext_free(part);
  free_all(acc, (size_t)c);
  bt_ciphertext_free(w4);
  bt_ciphertext_free(wrep);
  bt_ciphertext_free(tmp);
  return st;
}

bt_status bt_hemat_atb(bt_hemat *h, bt_evaluator *ev, bt_ciphertext *const *rolled, const bt_ciphertext *d,
                       const double complex *coef, size_t ncoef, bt_ciphertext **outs) {
  const bt_hemat_layout *L = &h->L;
  const int c = L->cpad, s1 = L->s1;
  if (d->logslots != L->logslots) return bt_fail(BT_E_ARG, "D has 2^%d slots, the layout 2^%d", d->logslots, L->logslots);
  if (d->level < 3) return bt_fail(BT_E_LEVEL, "DiagATB needs D at level >= 3 (got %d)", d->level);
  if (ncoef < 1) return bt_fail(BT_E_ARG, "DiagATB: no output requested");
  for (size_t i = 0; i < ncoef; i++)
    if (!isfinite(creal(coef[i])) || !isfinite(cimag(coef[i]))) return bt_fail(BT_E_ARG, "non-finite coefficient");
  bt_ciphertext **pat = NULL, *acc = NULL, *tmp = NULL, *part = NULL;
  bt_status st = new_all(h->p, &pat, (size_t)c);
  if (!st) st = bt_ciphertext_new(h->p, &acc);
  if (!st) st = bt_ciphertext_new(h->p, &tmp);
  if (!st) st = bt_ciphertext_new(h->p, &part);
  /* folded D (periodic: row r holds row group q's diagonals at columns
   * q C' + a): dq[q] = rot(D, q C') brings group q's to columns a, and the
   * pattern masks below pick each group's rows from its own dq */
  const int g = L->fold ? L->groups : 1;
  bt_ciphertext **dq = NULL;
  int qsteps[64];
  if (!st && g > 1) st = new_all(h->p, &dq, (size_t)g);
  if (!st && g > 1) {
    for (int q = 1; q < g; q++) qsteps[q - 1] = q * c;
    st = bt_ciphertext_copy(d, dq[0]);
    if (!st) st = bt_eval_rotate_hoisted(ev, d, qsteps, (size_t)(g - 1), dq + 1);
    h->cnt.rot += g - 1;
    h->cnt.rot_hoisted += g - 1;
  }
  /* patterns rot(Pi_k, k s1): column (C' - k) mod C' of D broadcast along rows */
  for (int k = 0; k < c && !st; k++) {
    const int a = (c - k) % c;
    if (g == 1) {
      set_col_mask(h, a, 1);
      if ((st = mask_mul(h, ev, d, pat[k]))) break;
    } else {
      for (int q = 0; q < g && !st; q++) {
        for (size_t i = 0; i < L->slots; i++) {
          const int r = (int)(i / (size_t)s1), col = (int)(i % (size_t)s1);
          h->vals[i] = col == a && r / L->fold_rows == q ? 1 : 0;
        }
        if ((st = bt_ckks_encode(h->p, h->vals, L->slots, L->logslots, d->level, (double)bt_ckks_q(h->p, d->level),
                                 h->pt)))
          break;
        if ((st = bt_eval_mul_plain(ev, dq[q], h->pt, q == 0 ? pat[k] : tmp))) break;
        h->cnt.cmult++;
        if (q > 0) st = bt_eval_add(ev, pat[k], tmp, pat[k]);
      }
      if (!st) st = bt_eval_rescale(ev, pat[k], pat[k]);
      h->cnt.rescale++;
      if (st) break;
    }
    /* rot(., a + k s1) as rot(rot(., k s1), a): two switches, by the rolls'
     * keys and the small steps 1..C'-1 (CoeffsToSlots' babies where C' <= 8) */
    if ((st = rot(h, ev, pat[k], k * s1, pat[k])) || (st = rot(h, ev, pat[k], a, pat[k]))) break;
    st = dsum(h, ev, pat[k], 1, s1, -1, tmp);
  }
  if (dq) free_all(dq, (size_t)g);
  for (int j = 0; j < L->nb && !st; j++) {
    for (int k = 0; k < c && !st; k++) {
      bt_ciphertext *dst = k == 0 ? acc : tmp;
      if (!(st = bt_eval_mul(ev, rolled[(size_t)j * c + k], pat[k], dst)) && k > 0)
        st = bt_eval_add(ev, acc, tmp, acc);
      h->cnt.tensor++;
    }
    if (st || (st = bt_eval_relin(ev, acc, acc)) || (st = bt_eval_rescale(ev, acc, acc))) break;
    h->cnt.relin++;
    h->cnt.rescale++;
    if ((st = dsum(h, ev, acc, c * s1, L->s0 / c, 1, tmp))) break;
    for (size_t i = 0; i < ncoef && !st; i++) {
      set_rows_mask(h, j * c, c, w_period_rows(L), coef[i]);
      if ((st = mask_mul(h, ev, acc, j == 0 ? outs[i] : part))) break;
      if (j > 0) st = bt_eval_add(ev, outs[i], part, outs[i]);
    }
  }
  free_all(pat, (size_t)c);
  bt_ciphertext_free(acc);
  bt_ciphertext_free(tmp);
  bt_ciphertext_free(part);
  return st;
}

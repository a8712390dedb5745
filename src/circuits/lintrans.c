/* Baby-step/giant-step linear transforms (Halevi-Shoup 2014) with the
 * double hoisting of Bossuat et al. 2021 (bt_eval_bsgs); see circuits.h. */
#include <stdlib.h>
#include <string.h>

#include "blindtuner/circuits.h"

/* The giants of giant step g, signed for bt_eval_bsgs's Horner runs: the
 * diagonals' giants j = k / g in [1, slots / g) form runs of consecutive
 * integers; the run from 1 goes up (+g), the run that ends at slots / g - 1
 * goes down as j - slots / g (-g), and a run in between goes up, or down
 * when only -g is used.  Each run costs its step key (when longer than one)
 * and one jump.  sj[j] receives the signed giant (m = slots / g entries);
 * returns sj, or NULL when out of memory. */
static int *giant_signs(const int *index, size_t nd, int g, int slots) {
  const int m = slots / g;
  int *sj = calloc((size_t)m, sizeof *sj);
  char *seen = calloc((size_t)m, 1);
  if (!sj || !seen) {
    free(sj), free(seen);
    return NULL;
  }
  for (size_t t = 0; t < nd; t++) seen[index[t] / g] = 1;
  int up = 0, down = 0; /* whether +g and -g serve a run already */
  for (int pass = 0; pass < 2; pass++)
    for (int lo = 1; lo < m;) {
      if (!seen[lo]) {
        lo++;
        continue;
      }
      int hi = lo;
      while (hi + 1 < m && seen[hi + 1]) hi++;
      const int first = lo == 1, last = hi == m - 1;
      /* pass 0: the runs at either end; pass 1: those in between */
      if (pass == ((first || last) ? 0 : 1)) {
        const int neg = pass ? (down && !up) : (last && !first);
        for (int j = lo; j <= hi; j++) sj[j] = neg ? j - m : j;
        if (hi > lo && neg) down = 1;
        if (hi > lo && !neg) up = 1;
        if (first && !neg) up = 1;
        if (last && neg) down = 1;
      }
      lo = hi + 1;
    }
  free(seen);
  return sj;
}

/* Cost of giant step g: distinct babies (k mod g) and giants (k / g). */
static size_t cost_for(const int *index, size_t nd, int g, int slots) {
  char *seen = calloc((size_t)slots, 1);
  if (!seen) return (size_t)-1;
  size_t babies = 0, giants = 0;
  for (size_t t = 0; t < nd; t++) {
    int b = index[t] % g, j = index[t] / g;
    if (!(seen[b] & 1)) { seen[b] |= 1; babies++; }
    if (!(seen[j] & 2)) { seen[j] |= 2; giants++; }
  }
  free(seen);
  /* with double hoisting a giant step (ModDown, decomposition, product)
   * costs several baby steps (one product each), but every baby step takes
   * a Galois key (65-70 MB at train-n16's top levels) and, since the giants
   * run as Horner chains, giants take none.  Weight 2 was measured faster
   * (2^13 slots, N = 2^16: 4.46 / 4.33 s a bootstrap against 4.58 / 4.45 s
   * at weight 1), but weight 1 takes 7 fewer keys there: 1.2 GiB less memory
   * and 0.28 GB less evaluation bundle for the demo's key set (ties go to the
   * smaller giant step, i.e. fewer keys; docs/CIRCUITS.md) */
  return babies + giants;
}

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

bt_status bt_lintrans_new(const bt_ckks_params *p, int logslots, const int *index,
                          const double complex *const *diags, size_t ndiag, int level, double scale,
                          bt_lintrans **out) {
  return bt_lintrans_new_form(p, logslots, index, diags, ndiag, level, scale, 0, out);
}

/* Diagonal t rotated by -shift, encoded as coefficients (compact) or over Q P. */
static bt_status encode_diagonal(bt_lintrans *lt, size_t t, const double complex *rot, int compact) {
  const bt_ckks_params *p = lt->params;
  const size_t slots = (size_t)1 << lt->logslots;
  if (compact) {
    if (!(lt->coef[t] = bt_alloc(bt_ckks_n(p) * sizeof **lt->coef))) return bt_fail(BT_E_NOMEM, "out of memory");
    return bt_ckks_encode_coeffs(p, rot, slots, lt->logslots, lt->scale, lt->coef[t]);
  }
  bt_status st = bt_plaintext_new(p, &lt->diag[t]);
  return st ? st : bt_ckks_encode_qp(p, rot, slots, lt->logslots, lt->level, lt->scale, lt->diag[t]);
}

static void free_diagonals(bt_lintrans *lt) {
  for (size_t t = 0; t < lt->ndiag; t++) {
    if (lt->diag) bt_plaintext_free(lt->diag[t]);
    if (lt->coef) bt_free(lt->coef[t]);
  }
  free(lt->diag);
  free(lt->coef);
  lt->diag = NULL;
  lt->coef = NULL;
}

bt_status bt_lintrans_new_form(const bt_ckks_params *p, int logslots, const int *index,
                               const double complex *const *diags, size_t ndiag, int level, double scale,
                               int expanded, bt_lintrans **out) {
  *out = NULL;
  const int slots = 1 << logslots;
  if (logslots < 0 || logslots >= bt_ckks_logn(p) || ndiag == 0 || ndiag > (size_t)slots)
    return bt_fail(BT_E_ARG, "linear transform with %zu diagonals on 2^%d slots", ndiag, logslots);
  for (size_t t = 0; t < ndiag; t++) {
    if (index[t] < 0 || index[t] >= slots)
      return bt_fail(BT_E_ARG, "diagonal index %d outside [0, %d)", index[t], slots);
    for (size_t u = 0; u < t; u++)
      if (index[u] == index[t]) return bt_fail(BT_E_ARG, "diagonal %d given twice", index[t]);
  }
  bt_lintrans *lt = calloc(1, sizeof *lt);
  double complex *rot = malloc((size_t)slots * sizeof *rot);
  if (!lt || !rot) {
    free(lt);
    free(rot);
    return bt_fail(BT_E_NOMEM, "out of memory building a linear transform");
  }
  lt->params = p;
  lt->logslots = logslots;
  lt->level = level;
  lt->scale = scale;
  lt->ndiag = ndiag;
  lt->giant = bt_lintrans_giant_step(index, ndiag, logslots);
  lt->index = malloc(ndiag * sizeof *lt->index);
  bt_status st = lt->index ? BT_OK : bt_fail(BT_E_NOMEM, "out of memory");
  /* compact unless asked otherwise, or unless a coefficient needs 64 bits */
  for (int compact = !expanded; !st; compact = 0) {
    if (compact ? !(lt->coef = calloc(ndiag, sizeof *lt->coef)) : !(lt->diag = calloc(ndiag, sizeof *lt->diag))) {
      st = bt_fail(BT_E_NOMEM, "out of memory");
      break;
    }
    for (size_t t = 0; t < ndiag && !st; t++) {
      const int k = index[t], shift = (k / lt->giant) * lt->giant;
      lt->index[t] = k;
      /* rot(d_k, -shift)[i] = d_k[i - shift] */
      for (int i = 0; i < slots; i++) rot[i] = diags[t][((i - shift) % slots + slots) % slots];
      st = encode_diagonal(lt, t, rot, compact);
    }
    if (!st || !compact || st != BT_E_SCALE) break;
    free_diagonals(lt);
    st = BT_OK;
  }
  free(rot);
  if (st) {
    bt_lintrans_free(lt);
    return st;
  }
  *out = lt;
  return BT_OK;
}

void bt_lintrans_free(bt_lintrans *lt) {
  if (!lt) return;
  free_diagonals(lt);
  free(lt->index);
  free(lt);
}

int bt_lintrans_giant_step(const int *index, size_t ndiag, int logslots) {
  const int slots = 1 << logslots;
  size_t best = (size_t)-1;
  int giant = 1;
  for (int g = 1; g <= slots; g *= 2) {
    size_t c = cost_for(index, ndiag, g, slots);
    if (c < best) {
      best = c;
      giant = g;
    }
  }
  return giant;
}

size_t bt_lintrans_num_diagonals(const bt_lintrans *lt) { return lt->ndiag; }

size_t bt_lintrans_steps(const bt_lintrans *lt, int *steps) {
  return bt_lintrans_index_steps(lt->index, lt->ndiag, lt->giant, lt->logslots, steps);
}

size_t bt_lintrans_index_steps(const int *index, size_t ndiag, int giant, int logslots, int *steps) {
  if (logslots < 0 || logslots > 30 || giant < 1 || giant > (1 << logslots) || (giant & (giant - 1))) return 0;
  for (size_t t = 0; t < ndiag; t++)
    if (index[t] < 0 || index[t] >= 1 << logslots) return 0;
  const int m = (1 << logslots) / giant;
  int *sj = giant_signs(index, ndiag, giant, 1 << logslots);
  if (!sj) return 0;
  size_t cnt = 0;
  for (size_t t = 0; t < ndiag; t++) {
    const int b = index[t] % giant, j = sj[index[t] / giant];
    /* the baby, and for a giant the step toward 0 or the run's jump */
    const int inner = j > 1 ? sj[j - 1] == j - 1 : j < -1 ? sj[m + j + 1] == j + 1 : 0;
    int cand[2] = {b, inner ? (j > 0 ? giant : -giant) : j * giant};
    for (int c = 0; c < 2; c++) {
      int dup = cand[c] == 0;
      for (size_t u = 0; u < cnt; u++) dup |= steps[u] == cand[c];
      if (!dup) steps[cnt++] = cand[c];
    }
  }
  free(sj);
  qsort(steps, cnt, sizeof *steps, cmp_int);
  return cnt;
}

bt_status bt_eval_lintrans(bt_evaluator *ev, const bt_ciphertext *x, const bt_lintrans *lt,
                           bt_ciphertext *out) {
  const bt_ckks_params *p = lt->params;
  if (x->params != p || out->params != p)
    return bt_fail(BT_E_PARAMS, "cannot apply a linear transform: other parameters");
  if (x->logslots != lt->logslots)
    return bt_fail(BT_E_ARG, "linear transform for 2^%d slots applied to 2^%d", lt->logslots, x->logslots);
  if (x->level > lt->level)
    return bt_fail(BT_E_LEVEL, "linear transform encoded at level %d, ciphertext at %d", lt->level, x->level);
  const int g = lt->giant;
  /* distinct baby steps (k mod g) and giants: k / g, signed by its run */
  int *babies = calloc(lt->ndiag, sizeof *babies), *giants = calloc(lt->ndiag, sizeof *giants);
  size_t nb = 0, ng = 0;
  const bt_plaintext **grid = NULL;
  const int64_t **cgrid = NULL;
  bt_status st = BT_OK;
  int *sj = babies && giants ? giant_signs(lt->index, lt->ndiag, g, 1 << lt->logslots) : NULL;
  if (!sj) {
    st = bt_fail(BT_E_NOMEM, "out of memory");
    goto done;
  }
  for (size_t t = 0; t < lt->ndiag; t++) {
    int b = lt->index[t] % g, j = sj[lt->index[t] / g], dup = 0;
    for (size_t u = 0; u < nb; u++) dup |= babies[u] == b;
    if (!dup) babies[nb++] = b;
    dup = 0;
    for (size_t u = 0; u < ng; u++) dup |= giants[u] == j;
    if (!dup) giants[ng++] = j;
  }
  grid = calloc(nb * ng, sizeof *grid);
  cgrid = calloc(nb * ng, sizeof *cgrid);
  if (!grid || !cgrid) {
    st = bt_fail(BT_E_NOMEM, "out of memory");
    goto done;
  }
  for (size_t t = 0; t < lt->ndiag; t++) {
    int b = lt->index[t] % g, j = sj[lt->index[t] / g];
    size_t u = 0, v = 0;
    while (babies[u] != b) u++;
    while (giants[v] != j) v++;
    if (lt->coef)
      cgrid[v * nb + u] = lt->coef[t];
    else
      grid[v * nb + u] = lt->diag[t];
  }
  st = lt->coef ? bt_eval_bsgs_coeffs(ev, x, babies, nb, g, giants, ng, cgrid, lt->scale, out)
               : bt_eval_bsgs(ev, x, babies, nb, g, giants, ng, grid, out);
done:
  free(sj);
  free(cgrid);
  free(grid);
  free(babies);
  free(giants);
  return st;
}

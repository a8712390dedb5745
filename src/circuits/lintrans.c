/* Baby-step/giant-step linear transforms (Halevi-Shoup 2014) with the
 * double hoisting of Bossuat et al. 2021 (bt_eval_bsgs); see circuits.h. */
#include <stdlib.h>
#include <string.h>

#include "blindtuner/circuits.h"

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
   * costs several baby steps (one product each).  Measured at N = 2^16,
   * 2^13 slots: 8.17 s at weight 1, 7.45 at 2, 6.96 at 3, 7.5 at 4 and 6;
   * weight 3 takes 5-8 more Galois keys than 2 (170 MiB each at train-n16),
   * which pushed the (2048, 769, 16) training step out of 24 GB: 2 */
  return babies + 2 * giants;
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
  return bt_lintrans_index_steps(lt->index, lt->ndiag, lt->giant, steps);
}

size_t bt_lintrans_index_steps(const int *index, size_t ndiag, int giant, int *steps) {
  size_t cnt = 0;
  for (size_t t = 0; t < ndiag; t++) {
    int k = index[t], b = k % giant, j = k - b;
    int cand[2] = {b, j};
    for (int c = 0; c < 2; c++) {
      if (cand[c] == 0) continue;
      int dup = 0;
      for (size_t u = 0; u < cnt; u++) dup |= steps[u] == cand[c];
      if (!dup) steps[cnt++] = cand[c];
    }
  }
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
  /* distinct baby steps (k mod g) and giant steps (k - k mod g) */
  int *babies = calloc(lt->ndiag, sizeof *babies), *giants = calloc(lt->ndiag, sizeof *giants);
  size_t nb = 0, ng = 0;
  const bt_plaintext **grid = NULL;
  const int64_t **cgrid = NULL;
  bt_status st = BT_OK;
  if (!babies || !giants) {
    st = bt_fail(BT_E_NOMEM, "out of memory");
    goto done;
  }
  for (size_t t = 0; t < lt->ndiag; t++) {
    int b = lt->index[t] % g, j = lt->index[t] - b, dup = 0;
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
    int b = lt->index[t] % g, j = lt->index[t] - b;
    size_t u = 0, v = 0;
    while (babies[u] != b) u++;
    while (giants[v] != j) v++;
    if (lt->coef)
      cgrid[v * nb + u] = lt->coef[t];
    else
      grid[v * nb + u] = lt->diag[t];
  }
  st = lt->coef ? bt_eval_bsgs_coeffs(ev, x, babies, nb, giants, ng, cgrid, lt->scale, out)
               : bt_eval_bsgs(ev, x, babies, nb, giants, ng, grid, out);
done:
  free(cgrid);
  free(grid);
  free(babies);
  free(giants);
  return st;
}

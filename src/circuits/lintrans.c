/* Baby-step/giant-step linear transforms (Halevi-Shoup 2014, with the
 * hoisting of Halevi-Shoup 2018); see circuits.h. */
#include <stdlib.h>
#include <string.h>

#include "blindtuner/circuits.h"

/* Baby and giant counts for giant step g: distinct (k mod g) and (k / g). */
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
  return babies + giants;
}

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

bt_status bt_lintrans_new(const bt_ckks_params *p, int logslots, const int *index,
                          const double complex *const *diags, size_t ndiag, int level, double scale,
                          bt_lintrans **out) {
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
  size_t best = (size_t)-1;
  for (int g = 1; g <= slots; g *= 2) {
    size_t c = cost_for(index, ndiag, g, slots);
    if (c < best) {
      best = c;
      lt->giant = g;
    }
  }
  lt->index = malloc(ndiag * sizeof *lt->index);
  lt->diag = calloc(ndiag, sizeof *lt->diag);
  bt_status st = (lt->index && lt->diag) ? BT_OK : bt_fail(BT_E_NOMEM, "out of memory");
  for (size_t t = 0; t < ndiag && !st; t++) {
    const int k = index[t], shift = (k / lt->giant) * lt->giant;
    lt->index[t] = k;
    /* rot(d_k, -shift)[i] = d_k[i - shift] */
    for (int i = 0; i < slots; i++) rot[i] = diags[t][((i - shift) % slots + slots) % slots];
    if (!(st = bt_plaintext_new(p, &lt->diag[t])))
      st = bt_ckks_encode(p, rot, (size_t)slots, logslots, level, scale, lt->diag[t]);
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
  if (lt->diag)
    for (size_t t = 0; t < lt->ndiag; t++) bt_plaintext_free(lt->diag[t]);
  free(lt->diag);
  free(lt->index);
  free(lt);
}

size_t bt_lintrans_steps(const bt_lintrans *lt, int *steps) {
  size_t cnt = 0;
  for (size_t t = 0; t < lt->ndiag; t++) {
    int k = lt->index[t], b = k % lt->giant, j = k - b;
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

#define TRY(x)                          \
  do {                                  \
    if ((st = (x)) != BT_OK) goto done; \
  } while (0)

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
  /* distinct baby steps */
  int *babies = calloc(lt->ndiag, sizeof *babies);
  bt_ciphertext **brot = calloc(lt->ndiag, sizeof *brot);
  bt_ciphertext *acc = NULL, *term = NULL, *sum = NULL;
  bt_status st = BT_OK;
  size_t nb = 0;
  int have_sum = 0;
  const int slots = 1 << lt->logslots;
  if (!babies || !brot) {
    st = bt_fail(BT_E_NOMEM, "out of memory");
    goto done;
  }
  for (size_t t = 0; t < lt->ndiag; t++) {
    int b = lt->index[t] % g, dup = 0;
    for (size_t u = 0; u < nb; u++) dup |= babies[u] == b;
    if (!dup) babies[nb++] = b;
  }
  for (size_t u = 0; u < nb; u++) TRY(bt_ciphertext_new(p, &brot[u]));
  TRY(bt_eval_rotate_hoisted(ev, x, babies, nb, brot));
  TRY(bt_ciphertext_new(p, &acc));
  TRY(bt_ciphertext_new(p, &term));
  TRY(bt_ciphertext_new(p, &sum));
  for (int j = 0; j < slots; j += g) {
    int have = 0;
    for (size_t t = 0; t < lt->ndiag; t++) {
      if (lt->index[t] - lt->index[t] % g != j) continue;
      int b = lt->index[t] % g;
      size_t u = 0;
      while (babies[u] != b) u++;
      TRY(bt_eval_mul_plain(ev, brot[u], lt->diag[t], have ? term : acc));
      if (have) TRY(bt_eval_add(ev, acc, term, acc));
      have = 1;
    }
    if (!have) continue;
    if (j) TRY(bt_eval_rotate(ev, acc, j, acc));
    if (have_sum)
      TRY(bt_eval_add(ev, sum, acc, sum));
    else
      TRY(bt_ciphertext_copy(sum, acc));
    have_sum = 1;
  }
  TRY(bt_ciphertext_copy(out, sum));
done:
  if (brot)
    for (size_t u = 0; u < nb; u++) bt_ciphertext_free(brot[u]);
  free(brot);
  free(babies);
  bt_ciphertext_free(acc);
  bt_ciphertext_free(term);
  bt_ciphertext_free(sum);
  return st;
}

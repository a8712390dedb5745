/* Baby-step/giant-step linear transforms with double hoisting
 * (bt_eval_bsgs, bt_eval_bsgs_coeffs): the diagonals either as plaintexts
 * over Q P, or as their signed coefficients, expanded limb by limb where
 * they are used (a 2^16 diagonal is then 0.5 MB instead of one 0.5 MB limb
 * per prime; docs/ENGINE.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "ckks/internal.h"

/* Double hoisting (Bossuat et al., Eurocrypt 2021).  Every baby rotation
 * shares one decomposition of x.c1 and stays over Q_l P without its ModDown:
 * B_u = (P phi_u(c0) + u0, u1) holds P rot(x, baby_u).  The diagonals (encoded
 * modulo P as well) multiply B_u there; each giant step ModDowns only the c1
 * of its sum, switches it, and adds phi_g(c0) -- still over Q_l P -- to the
 * total, which one ModDown brings back to Q_l.  All rounding happens at the
 * scale of x times the diagonals', so the rescale that follows removes it. */
enum { BSGS_CHUNK = 2048, BSGS_MAX_BABY = 256 };

/* Compact Q_l P layout: limb e < L is q_e, limb L + j is p_j. */
static inline int compact_prime(const bt_ckks_params *p, int limbs, int e) {
  return e < limbs ? e : p->nq + (e - limbs);
}

/* Coefficients of one diagonal expanded at a time per thread, in groups of
 * EXPAND before their products are summed. */
enum { EXPAND = 8 };

/* acc = sum_u diag_u B_u over Q_l P for one giant step whose diagonals are
 * coefficient vectors (NULL where zero): each thread expands a limb of
 * EXPAND diagonals into its scratch and sums their products. */
static void giant_sums_coeffs(bt_evaluator *ev, int limbs, size_t nbaby, const int64_t *const *row,
                              const uint64_t *B, uint64_t *acc, uint64_t *scratch) {
  const bt_ckks_params *p = ev->p;
  const size_t n = p->n;
  const int ext = limbs + p->np;
  const size_t poly = (size_t)ext * n;
#pragma omp parallel for num_threads(p->threads) schedule(dynamic)
  for (int e = 0; e < ext; e++) {
    uint64_t *buf = scratch + (size_t)omp_get_thread_num() * EXPAND * n;
    const int t = compact_prime(p, limbs, e);
    const bt_modulus *m = &p->mod[t];
    const uint64_t *d[EXPAND], *b0[EXPAND], *b1[EXPAND];
    size_t cnt = 0;
    int summed = 0;
    for (size_t u = 0; u < nbaby; u++) {
      if (!row[u]) continue;
      uint64_t *slot = buf + cnt * n;
      bt_limb_from_signed(m, row[u], n, slot);
      bt_ntt_forward(&p->ntt[t], slot);
      d[cnt] = slot;
      b0[cnt] = B + 2 * u * poly + (size_t)e * n;
      b1[cnt] = b0[cnt] + poly;
      if (++cnt == EXPAND) {
        bt_limb_dot2(m, n, cnt, d, NULL, b0, b1, acc + (size_t)e * n, acc + poly + (size_t)e * n, summed);
        summed = 1;
        cnt = 0;
      }
    }
    if (cnt || !summed) bt_limb_dot2(m, n, cnt, d, NULL, b0, b1, acc + (size_t)e * n, acc + poly + (size_t)e * n, summed);
  }
}

/* The same for plaintext diagonals over Q P, in chunks of BSGS_CHUNK. */
static void giant_sums_plain(bt_evaluator *ev, int limbs, size_t nbaby, const bt_plaintext *const *row,
                             const uint64_t *B, uint64_t *acc) {
  const bt_ckks_params *p = ev->p;
  const size_t n = p->n;
  const int ext = limbs + p->np;
  const size_t poly = (size_t)ext * n, chunk = n < BSGS_CHUNK ? n : BSGS_CHUNK, nblk = n / chunk;
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (size_t xb = 0; xb < (size_t)ext * nblk; xb++) {
    const int e = (int)(xb / nblk);
    const size_t c0 = (xb % nblk) * chunk, off = (size_t)e * n + c0;
    const uint64_t *d[BSGS_MAX_BABY], *b0[BSGS_MAX_BABY], *b1[BSGS_MAX_BABY];
    size_t terms = 0;
    for (size_t u = 0; u < nbaby; u++) {
      if (!row[u]) continue;
      d[terms] = (e < limbs ? row[u]->c + (size_t)e * n : row[u]->cp + (size_t)(e - limbs) * n) + c0;
      b0[terms] = B + 2 * u * poly + off;
      b1[terms] = b0[terms] + poly;
      terms++;
    }
    bt_limb_dot2(&p->mod[compact_prime(p, limbs, e)], chunk, terms, d, NULL, b0, b1, acc + off, acc + poly + off, 0);
  }
}

/* dst = [dst +] rot(src, gal) for src, dst held over Q_l P as the giant
 * steps hold them (dst != src): ModDown src.c1 only, switch it, and add
 * phi(src.c0) without its ModDown. */
static void rotate_qp(bt_evaluator *ev, int level, const uint64_t *src, uint64_t gal, uint64_t *dst, int add,
                      uint64_t *c1d) {
  const bt_ckks_params *p = ev->p;
  const size_t n = p->n, stride = (size_t)(p->nq + p->np) * n;
  const int limbs = level + 1, ext = limbs + p->np;
  const size_t poly = (size_t)ext * n;
  if (gal == 1) { /* a rotation by a multiple of the slots: dst (+)= src */
#pragma omp parallel for num_threads(p->threads) schedule(static)
    for (int e = 0; e < 2 * ext; e++) {
      const uint64_t q = p->primes[compact_prime(p, limbs, e % ext)];
      uint64_t *o = dst + (size_t)e * n;
      const uint64_t *a = src + (size_t)e * n;
      if (add)
        for (size_t i = 0; i < n; i++) o[i] = bt_mod_add(o[i], a[i], q);
      else
        memcpy(o, a, n * sizeof *o);
    }
    return;
  }
  bt_ks_mod_down_poly(ev, level, src + poly, src + poly + (size_t)limbs * n, c1d, 0);
  bt_ks_decompose(ev, c1d, level);
  bt_ntt_automorphism_index(p->logn, gal, ev->perm);
  bt_ks_inner_product(ev, bt_eval_keys_find(ev->keys, gal), level, ev->perm);
  ev->counts.rot++;
  const uint32_t *perm = ev->perm;
  const uint64_t *ev0 = ev->acc, *ev1 = ev->acc + stride;
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (int e = 0; e < ext; e++) {
    const int t = compact_prime(p, limbs, e);
    const uint64_t q = p->primes[t];
    uint64_t *o0 = dst + (size_t)e * n, *o1 = dst + poly + (size_t)e * n;
    const uint64_t *a0 = src + (size_t)e * n, *k0 = ev0 + (size_t)t * n, *k1 = ev1 + (size_t)t * n;
    if (add)
      for (size_t i = 0; i < n; i++) {
        o0[i] = bt_mod_add(o0[i], bt_mod_add(a0[perm[i]], k0[i], q), q);
        o1[i] = bt_mod_add(o1[i], k1[i], q);
      }
    else
      for (size_t i = 0; i < n; i++) {
        o0[i] = bt_mod_add(a0[perm[i]], k0[i], q);
        o1[i] = k1[i];
      }
  }
}

/* Exactly one of diag (plaintexts) and coef (coefficients at dscale) is set. */
static bt_status bsgs(bt_evaluator *ev, const bt_ciphertext *x, const int *baby, size_t nbaby, int step,
                      const int *giant, size_t ngiant, const bt_plaintext *const *diag, const int64_t *const *coef,
                      double dscale, bt_ciphertext *out) {
  const bt_ckks_params *p = ev->p;
  if (x->params != p || out->params != p) return bt_fail(BT_E_PARAMS, "cannot apply a BSGS transform: other parameters");
  if (x->degree != 1) return bt_fail(BT_E_ARG, "cannot apply a BSGS transform to a degree-2 ciphertext");
  if (nbaby == 0 || ngiant == 0) return bt_fail(BT_E_ARG, "BSGS transform without baby or giant steps");
  if (nbaby > BSGS_MAX_BABY) return bt_fail(BT_E_ARG, "BSGS transform with %zu baby steps; at most %d", nbaby, BSGS_MAX_BABY);
  const int half = (int)(p->n / 2);
  if (step < 1 || step > half) return bt_fail(BT_E_ARG, "BSGS giant step %d outside [1, %d]", step, half);
  for (size_t j = 0; j < ngiant; j++) {
    if (giant[j] < -(half / step) || giant[j] > half / step)
      return bt_fail(BT_E_ARG, "BSGS giant %d x %d outside the slots", giant[j], step);
    for (size_t i = 0; i < j; i++)
      if (giant[i] == giant[j]) return bt_fail(BT_E_ARG, "BSGS giant %d given twice", giant[j]);
  }
  const bt_plaintext *first = NULL;
  int any_coef = 0;
  for (size_t i = 0; coef && i < nbaby * ngiant; i++) any_coef |= coef[i] != NULL;
  if (coef && !any_coef) return bt_fail(BT_E_ARG, "BSGS transform without a diagonal");
  if (coef && !(dscale > 0 && isfinite(dscale))) return bt_fail(BT_E_SCALE, "BSGS diagonals at scale %g", dscale);
  for (size_t i = 0; diag && i < nbaby * ngiant; i++) {
    const bt_plaintext *d = diag[i];
    if (!d) continue;
    if (d->params != p) return bt_fail(BT_E_PARAMS, "BSGS diagonal %zu has other parameters", i);
    if (!d->cp)
      return bt_fail(BT_E_ARG, "BSGS diagonal %zu lacks the special primes' limbs (encode it with bt_ckks_encode_qp)", i);
    if (d->level < x->level)
      return bt_fail(BT_E_LEVEL, "BSGS diagonal %zu at level %d, below the ciphertext's %d", i, d->level, x->level);
    if (!first) first = d;
    if (fabs(d->scale / first->scale - 1) > 1e-9) return bt_fail(BT_E_SCALE, "BSGS diagonals at different scales");
  }
  if (diag && !first) return bt_fail(BT_E_ARG, "BSGS transform without a diagonal");
  if (diag) dscale = first->scale;
  for (size_t i = 0; i < nbaby; i++) {
    const bt_switch_key *k;
    bt_status st = bt_ks_rotation_key(ev, baby[i], x->level, &k);
    if (st) return st;
  }
  /* the giants that have a diagonal, in increasing order, and their chains */
  int *gs = malloc((ngiant + 1) * sizeof *gs);
  size_t *gj = malloc((ngiant + 1) * sizeof *gj);
  size_t ng = 0;
  if (!gs || !gj) {
    free(gs), free(gj);
    return bt_fail(BT_E_NOMEM, "out of memory in a BSGS transform");
  }
  for (size_t j = 0; j < ngiant; j++) {
    int any = 0;
    for (size_t u = 0; u < nbaby; u++) any |= coef ? coef[j * nbaby + u] != NULL : diag[j * nbaby + u] != NULL;
    if (!any) continue;
    size_t at = ng++;
    for (; at > 0 && gs[at - 1] > giant[j]; at--) gs[at] = gs[at - 1], gj[at] = gj[at - 1];
    gs[at] = giant[j], gj[at] = j;
  }
  for (size_t i = 0; i < ng; i++) {
    if (!gs[i]) continue;
    const int neg = gs[i] < 0;
    const size_t next = neg ? i + 1 : i - 1; /* toward 0 along a run */
    const int inner = (next < ng && gs[next] == gs[i] + (neg ? 1 : -1) && gs[next] != 0);
    const bt_switch_key *k;
    /* a run's step, and its jump from the giant nearest 0 */
    bt_status st = BT_OK;
    if (inner) st = bt_ks_rotation_key(ev, neg ? -step : step, x->level, &k);
    if (!st && !inner) st = bt_ks_rotation_key(ev, gs[i] * step, x->level, &k);
    if (st) {
      free(gs), free(gj);
      return st;
    }
  }
  const size_t n = p->n, stride = (size_t)(p->nq + p->np) * n;
  const int level = x->level, limbs = level + 1, ext = limbs + p->np;
  const size_t poly = (size_t)ext * n;
  const size_t scratch_words = coef ? (size_t)p->threads * EXPAND * n : 0;
  uint64_t *bufs = bt_alloc(((2 * nbaby + 6) * poly + (size_t)limbs * n + scratch_words) * sizeof(uint64_t));
  if (!bufs) {
    free(gs), free(gj);
    return bt_fail(BT_E_NOMEM, "out of memory in a BSGS transform");
  }
  uint64_t *B = bufs, *acc = B + 2 * nbaby * poly, *sum = acc + 2 * poly, *chain = sum + 2 * poly;
  uint64_t *c1d = chain + 2 * poly, *scratch = c1d + (size_t)limbs * n;
  const uint64_t *ev0 = ev->acc, *ev1 = ev->acc + stride;

  /* baby steps over Q_l P */
  int decomposed = 0;
  for (size_t u = 0; u < nbaby; u++) {
    uint64_t *b0 = B + 2 * u * poly, *b1 = b0 + poly;
    const uint64_t gal = bt_ckks_galois_rotate(p, baby[u]);
    const uint32_t *perm = NULL;
    if (gal != 1) {
      if (!decomposed) bt_ks_decompose(ev, x->c[1], level);
      decomposed = 1;
      bt_ntt_automorphism_index(p->logn, gal, ev->perm);
      perm = ev->perm;
      bt_ks_inner_product(ev, bt_eval_keys_find(ev->keys, gal), level, perm);
      ev->counts.rot++;
    }
#pragma omp parallel for num_threads(p->threads) schedule(static)
    for (int e = 0; e < ext; e++) {
      uint64_t *o0 = b0 + (size_t)e * n, *o1 = b1 + (size_t)e * n;
      const int t = compact_prime(p, limbs, e);
      if (!perm) { /* P x: zero modulo P */
        if (e >= limbs) {
          memset(o0, 0, n * sizeof(uint64_t));
          memset(o1, 0, n * sizeof(uint64_t));
          continue;
        }
        const bt_modulus *m = &p->mod[t];
        const uint64_t *c0 = x->c[0] + (size_t)e * n, *c1 = x->c[1] + (size_t)e * n;
        for (size_t i = 0; i < n; i++) {
          o0[i] = bt_mod_mul(c0[i], p->pmodq[t], m);
          o1[i] = bt_mod_mul(c1[i], p->pmodq[t], m);
        }
        continue;
      }
      const uint64_t *a0 = ev0 + (size_t)t * n, *a1 = ev1 + (size_t)t * n;
      memcpy(o1, a1, n * sizeof(uint64_t));
      if (e >= limbs) {
        memcpy(o0, a0, n * sizeof(uint64_t));
        continue;
      }
      const bt_modulus *m = &p->mod[t];
      const uint64_t *c0 = x->c[0] + (size_t)e * n;
      for (size_t i = 0; i < n; i++) o0[i] = bt_mod_add(a0[i], bt_mod_mul(c0[perm[i]], p->pmodq[t], m), m->q);
    }
  }

  /* giant steps, by Horner's rule along each run of consecutive giants
   * (Bossuat et al.'s remark): for a run lo..hi > 0,
   *   sum_j rot(A_j, j g) = rot(A_lo + rot(A_lo+1 + ... rot(A_hi, g) ..., g), lo g),
   * and for a run lo..hi < 0 the same from lo up with -g and a final
   * rot(., hi g): one key switch per giant, as before, and the keys of
   * +g, -g and each run's jump instead of one per giant.  A_0 is added
   * unrotated. */
  int have_sum = 0;
  for (size_t i = 0; i < ng;) {
    /* the run that starts at i, walking away from 0 ... */
    const int neg = gs[i] < 0;
    size_t far = i, near = i; /* A_0 alone is a run of one */
    if (neg) {
      while (near + 1 < ng && gs[near + 1] == gs[near] + 1 && gs[near + 1] != 0) near++;
    } else if (gs[i] > 0) {
      while (near + 1 < ng && gs[near + 1] == gs[near] + 1) near++;
      far = near, near = i; /* a positive run is walked from its top */
    }
    const size_t end = neg ? near + 1 : far + 1;
    int have_chain = 0;
    /* ... from its far end to the giant nearest 0 */
    for (size_t t = far;; t = neg ? t + 1 : t - 1) {
      const size_t j = gj[t];
      if (coef)
        giant_sums_coeffs(ev, limbs, nbaby, coef + j * nbaby, B, acc, scratch);
      else
        giant_sums_plain(ev, limbs, nbaby, diag + j * nbaby, B, acc);
      if (!have_chain) {
        uint64_t *tmp = chain;
        chain = acc, acc = tmp;
        have_chain = 1;
      } else { /* chain <- rot(chain, +-g) + A_j */
        rotate_qp(ev, level, chain, bt_ckks_galois_rotate(p, neg ? -step : step), acc, 1, c1d);
        uint64_t *tmp = chain;
        chain = acc, acc = tmp;
      }
      if (t == near) break;
    }
    /* the run's jump into the total (A_0: no rotation, an add) */
    rotate_qp(ev, level, chain, bt_ckks_galois_rotate(p, gs[near] * step), sum, have_sum, c1d);
    have_sum = 1;
    i = end;
  }
  if (!have_sum) memset(sum, 0, 2 * poly * sizeof(uint64_t));
  bt_ks_mod_down_poly(ev, level, sum, sum + (size_t)limbs * n, out->c[0], 0);
  bt_ks_mod_down_poly(ev, level, sum + poly, sum + poly + (size_t)limbs * n, out->c[1], 0);
  out->level = level;
  out->degree = 1;
  out->scale = x->scale * dscale;
  out->logslots = x->logslots;
  out->seeded = 0;
  bt_free(bufs);
  free(gs), free(gj);
  return BT_OK;
}

bt_status bt_eval_bsgs(bt_evaluator *ev, const bt_ciphertext *x, const int *baby, size_t nbaby, int step,
                       const int *giant, size_t ngiant, const bt_plaintext *const *diag, bt_ciphertext *out) {
  return bsgs(ev, x, baby, nbaby, step, giant, ngiant, diag, NULL, 0, out);
}

bt_status bt_eval_bsgs_coeffs(bt_evaluator *ev, const bt_ciphertext *x, const int *baby, size_t nbaby, int step,
                              const int *giant, size_t ngiant, const int64_t *const *diag, double scale,
                              bt_ciphertext *out) {
  return bsgs(ev, x, baby, nbaby, step, giant, ngiant, NULL, diag, scale, out);
}

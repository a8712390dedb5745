/* Hybrid key switching (Han-Ki 2020) with hoisting (Halevi-Shoup 2018).
 *
 * To switch c (under s') to s at level l:
 *   1. Decompose: INTT c once; for each digit j extend its primes to all of
 *      Q_l P by fast basis extension (ModUp) and NTT the new limbs.  The
 *      limbs of the digit itself are copied from the NTT-form input.
 *   2. Inner product with the key: (u0, u1) = sum_j d_j (b_j, a_j) mod Q_l P,
 *      accumulated in 128 bits and reduced once.
 *   3. ModDown: (u - ext(u mod P)) / P, back to Q_l.
 * For an automorphism phi the digits of c1 are permuted instead of
 * recomputed (phi commutes with ModUp up to the usual u*Q_j slack), so many
 * rotations of one ciphertext share steps 1 ("hoisting"). */
#include <math.h>
#include <string.h>

#include "ckks/internal.h"

static size_t qp_limbs(const bt_ckks_params *p) { return (size_t)(p->nq + p->np); }

/* Prime index of the t-th limb of the extended basis Q_l P. */
static int ext_prime(const bt_ckks_params *p, int level, int t) {
  return t <= level ? t : p->nq + (t - level - 1);
}

void bt_ks_decompose(bt_evaluator *ev, const uint64_t *c, int level) {
  const bt_ckks_params *p = ev->p;
  const size_t n = p->n, stride = qp_limbs(p) * n;
  const int limbs = level + 1, beta = bt_digits_at(p, level), ext = limbs + p->np;
  memcpy(ev->coef, c, (size_t)limbs * n * sizeof(uint64_t));
  bt_poly_intt(p, ev->coef, 0, limbs);
  uint8_t mask[BT_MAX_PRIMES];
  for (int j = 0; j < beta; j++) {
    const int lo = p->dstart[j], len = p->dstart[j + 1] - lo, cnt = limbs - lo < len ? limbs - lo : len;
    uint64_t *d = ev->digits + (size_t)j * stride;
    for (int t = 0; t < p->nq + p->np; t++)
      mask[t] = (t <= level && (t < lo || t >= lo + cnt)) || t >= p->nq;
    bt_rns_conv_apply(&p->modup[j * p->dmax + cnt - 1], ev->coef + (size_t)lo * n, d, n, mask,
                      p->threads);
    memcpy(d + (size_t)lo * n, c + (size_t)lo * n, (size_t)cnt * n * sizeof(uint64_t));
  }
  /* NTT every extended limb of every digit, in one parallel loop */
#pragma omp parallel for num_threads(p->threads) schedule(dynamic)
  for (int x = 0; x < beta * ext; x++) {
    const int j = x / ext, t = ext_prime(p, level, x % ext);
    if (t >= p->dstart[j] && t < p->dstart[j + 1] && t <= level) continue; /* copied, already NTT */
    bt_ntt_forward(&p->ntt[t], ev->digits + (size_t)j * stride + (size_t)t * n);
  }
}

/* (acc0, acc1) = sum_j perm(d_j) (b_j, a_j) over Q_l P, in chunks of
 * IP_CHUNK coefficients of one limb (bt_limb_dot2). */
enum { IP_CHUNK = 2048 };

void bt_ks_inner_product(bt_evaluator *ev, const bt_switch_key *k, int level, const uint32_t *perm) {
  const bt_ckks_params *p = ev->p;
  const size_t n = p->n, stride = qp_limbs(p) * n;
  const int beta = bt_digits_at(p, level), ext = level + 1 + p->np;
  uint64_t *acc0 = ev->acc, *acc1 = ev->acc + stride;
  const size_t chunk = n < IP_CHUNK ? n : IP_CHUNK, nchunk = n / chunk;
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (size_t x = 0; x < (size_t)ext * nchunk; x++) {
    const int e = (int)(x / nchunk), t = ext_prime(p, level, e);
    /* the key's rows: q_0..q_klevel, then the special primes */
    const int row = t < p->nq ? t : k->level + 1 + (t - p->nq);
    const size_t c0 = (x % nchunk) * chunk, off = (size_t)t * n + c0, koff = (size_t)row * n + c0;
    const uint64_t *d[BT_MAX_PRIMES], *b[BT_MAX_PRIMES], *a[BT_MAX_PRIMES];
    for (int j = 0; j < beta; j++) {
      d[j] = ev->digits + (size_t)j * stride + (size_t)t * n + (perm ? 0 : c0);
      b[j] = k->b[j] + koff;
      a[j] = k->a[j] + koff;
    }
    bt_limb_dot2(&p->mod[t], chunk, (size_t)beta, d, perm ? perm + c0 : NULL, b, a, acc0 + off, acc1 + off, 0);
  }
}

/* out (+)= ModDown(u) over limbs 0..level for one polynomial u over Q_l P
 * whose Q limbs are consecutive at qin and whose P limbs are consecutive at
 * pin.  add = 1 adds to out, 0 overwrites. */
void bt_ks_mod_down_poly(bt_evaluator *ev, int level, const uint64_t *qin, const uint64_t *pin, uint64_t *out,
                         int add) {
  const bt_ckks_params *p = ev->p;
  const size_t n = p->n;
  const int limbs = level + 1, np = p->np, nq = p->nq;
  uint8_t mask[BT_MAX_PRIMES];
  for (int t = 0; t < nq; t++) mask[t] = t <= level;
  uint64_t *pl = ev->tmp + (size_t)nq * n; /* P limbs in coefficient form */
  memcpy(pl, pin, (size_t)np * n * sizeof(uint64_t));
  bt_poly_intt(p, pl, nq, np);
  bt_rns_conv_apply_exact(&p->moddown, pl, ev->tmp, n, mask, p->threads);
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (int t = 0; t < limbs; t++) {
    uint64_t *e = ev->tmp + (size_t)t * n, *o = out + (size_t)t * n;
    const uint64_t *u = qin + (size_t)t * n;
    bt_ntt_forward(&p->ntt[t], e);
    const uint64_t q = p->primes[t], w = p->pinv[t], wp = p->pinvp[t];
    if (add)
      for (size_t i = 0; i < n; i++) o[i] = bt_mod_add(o[i], bt_mul_shoup(u[i] + q - e[i], w, wp, q), q);
    else
      for (size_t i = 0; i < n; i++) o[i] = bt_mul_shoup(u[i] + q - e[i], w, wp, q);
  }
}

/* out_h (+)= ModDown(acc_h) for h = 0, 1 over limbs 0..level.
 * add[h] = 1 adds to out_h, 0 overwrites. */
static void mod_down(bt_evaluator *ev, int level, uint64_t *out0, uint64_t *out1,
                     const int add[2]) {
  const size_t stride = qp_limbs(ev->p) * ev->p->n;
  uint64_t *outs[2] = {out0, out1};
  for (int h = 0; h < 2; h++) {
    const uint64_t *acc = ev->acc + (size_t)h * stride;
    bt_ks_mod_down_poly(ev, level, acc, acc + (size_t)ev->p->nq * ev->p->n, outs[h], add[h]);
  }
}

static bt_status check_key(const bt_evaluator *ev, const bt_switch_key *k, int level, const char *what) {
  if (!k) return bt_fail(BT_E_KEY, "cannot %s: the evaluation keys lack the needed key", what);
  if (k->params != ev->p) return bt_fail(BT_E_PARAMS, "cannot %s: key has other parameters", what);
  if (k->level < level)
    return bt_fail(BT_E_LEVEL, "cannot %s at level %d: its key serves levels up to %d", what, level, k->level);
  return BT_OK;
}

/* The rotation key for `step`, checked for a ciphertext at `level`; *k
 * stays NULL for the identity. */
bt_status bt_ks_rotation_key(const bt_evaluator *ev, int step, int level, const bt_switch_key **k) {
  const uint64_t gal = bt_ckks_galois_rotate(ev->p, step);
  *k = NULL;
  if (gal == 1) return BT_OK;
  *k = bt_eval_keys_find(ev->keys, gal);
  if (!*k) return bt_fail(BT_E_KEY, "cannot rotate by %d: no rotation key for it", step);
  if ((*k)->level < level)
    return bt_fail(BT_E_LEVEL, "cannot rotate by %d at level %d: its key serves levels up to %d", step, level,
                   (*k)->level);
  return BT_OK;
}

static void permute_limbs(const bt_ckks_params *p, const uint64_t *in, uint64_t *out, int limbs,
                          const uint32_t *perm) {
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (int t = 0; t < limbs; t++) {
    const uint64_t *a = in + (size_t)t * p->n;
    uint64_t *b = out + (size_t)t * p->n;
    for (size_t i = 0; i < p->n; i++) b[i] = a[perm[i]];
  }
}

static bt_status check_ct(const bt_evaluator *ev, const bt_ciphertext *a, bt_ciphertext *out,
                          const char *what) {
  if (a->params != ev->p || out->params != ev->p)
    return bt_fail(BT_E_PARAMS, "cannot %s: ciphertext has other parameters", what);
  return BT_OK;
}

bt_status bt_eval_relin(bt_evaluator *ev, const bt_ciphertext *a, bt_ciphertext *out) {
  bt_status st = check_ct(ev, a, out, "relinearise");
  if (st) return st;
  if (a->degree == 1) return bt_ciphertext_copy(a, out);
  const bt_switch_key *k = bt_eval_keys_find(ev->keys, 0);
  if ((st = check_key(ev, k, a->level, "relinearise"))) return st;
  if ((st = bt_ciphertext_copy(a, out))) return st;
  bt_ks_decompose(ev, a->c[2], a->level);
  bt_ks_inner_product(ev, k, a->level, NULL);
  ev->counts.relin++;
  const int add[2] = {1, 1};
  mod_down(ev, a->level, out->c[0], out->c[1], add);
  out->degree = 1;
  out->seeded = 0;
  return BT_OK;
}

/* out = (phi(c0) + u0, u1) where u = KS(phi(c1)); perm = NULL for identity. */
static bt_status switch_one(bt_evaluator *ev, const bt_ciphertext *a, const bt_switch_key *k,
                            bt_ciphertext *out) {
  const bt_ckks_params *p = ev->p;
  const int limbs = a->level + 1;
  const uint32_t *perm = NULL;
  if (a->degree != 1) return bt_fail(BT_E_ARG, "cannot switch keys of a degree-2 ciphertext; relinearise first");
  if (k->galois > 1) {
    bt_ntt_automorphism_index(p->logn, k->galois, ev->perm);
    perm = ev->perm;
    ev->counts.rot++;
  }
  bt_ks_decompose(ev, a->c[1], a->level);
  bt_ks_inner_product(ev, k, a->level, perm);
  if (perm)
    permute_limbs(p, a->c[0], ev->keep, limbs, perm);
  else
    memcpy(ev->keep, a->c[0], (size_t)limbs * p->n * sizeof(uint64_t));
  const int add[2] = {0, 0};
  mod_down(ev, a->level, out->c[0], out->c[1], add);
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (int t = 0; t < limbs; t++) {
    const uint64_t q = p->primes[t];
    uint64_t *o = out->c[0] + (size_t)t * p->n;
    const uint64_t *kp = ev->keep + (size_t)t * p->n;
    for (size_t i = 0; i < p->n; i++) o[i] = bt_mod_add(o[i], kp[i], q);
  }
  out->level = a->level;
  out->scale = a->scale;
  out->logslots = a->logslots;
  out->degree = 1;
  out->seeded = 0;
  return BT_OK;
}

bt_status bt_eval_keyswitch(bt_evaluator *ev, const bt_ciphertext *a, const bt_switch_key *k,
                            bt_ciphertext *out) {
  bt_status st = check_ct(ev, a, out, "switch keys");
  if (!st) st = check_key(ev, k, a->level, "switch keys");
  return st ? st : switch_one(ev, a, k, out);
}

bt_status bt_eval_rotate(bt_evaluator *ev, const bt_ciphertext *a, int step, bt_ciphertext *out) {
  bt_status st = check_ct(ev, a, out, "rotate");
  if (st) return st;
  const bt_switch_key *k;
  if ((st = bt_ks_rotation_key(ev, step, a->level, &k))) return st;
  return k ? switch_one(ev, a, k, out) : bt_ciphertext_copy(a, out);
}

bt_status bt_eval_conjugate(bt_evaluator *ev, const bt_ciphertext *a, bt_ciphertext *out) {
  bt_status st = check_ct(ev, a, out, "conjugate");
  if (st) return st;
  const bt_switch_key *k = bt_eval_keys_find(ev->keys, bt_ckks_galois_conjugate(ev->p));
  if (!k) return bt_fail(BT_E_KEY, "cannot conjugate: no conjugation key");
  if ((st = check_key(ev, k, a->level, "conjugate"))) return st;
  return switch_one(ev, a, k, out);
}

bt_status bt_eval_rotate_hoisted(bt_evaluator *ev, const bt_ciphertext *a, const int *steps,
                                 size_t nsteps, bt_ciphertext **outs) {
  const bt_ckks_params *p = ev->p;
  if (a->params != p) return bt_fail(BT_E_PARAMS, "cannot rotate: ciphertext has other parameters");
  if (a->degree != 1) return bt_fail(BT_E_ARG, "cannot rotate a degree-2 ciphertext; relinearise first");
  /* check everything before touching any output */
  for (size_t i = 0; i < nsteps; i++) {
    if (outs[i] == a || outs[i]->params != p)
      return bt_fail(BT_E_ARG, "hoisted rotation output %zu aliases the input or has other parameters", i);
    const bt_switch_key *k;
    bt_status st = bt_ks_rotation_key(ev, steps[i], a->level, &k);
    if (st) return st;
  }
  const int limbs = a->level + 1;
  int decomposed = 0;
  for (size_t i = 0; i < nsteps; i++) {
    uint64_t gal = bt_ckks_galois_rotate(p, steps[i]);
    bt_status st;
    if (gal == 1) {
      if ((st = bt_ciphertext_copy(a, outs[i]))) return st;
      continue;
    }
    if (!decomposed) {
      bt_ks_decompose(ev, a->c[1], a->level);
      decomposed = 1;
    }
    const bt_switch_key *k = bt_eval_keys_find(ev->keys, gal);
    bt_ntt_automorphism_index(p->logn, gal, ev->perm);
    bt_ks_inner_product(ev, k, a->level, ev->perm);
    ev->counts.rot++;
    const int add[2] = {0, 0};
    bt_ciphertext *o = outs[i];
    mod_down(ev, a->level, o->c[0], o->c[1], add);
#pragma omp parallel for num_threads(p->threads) schedule(static)
    for (int t = 0; t < limbs; t++) {
      const uint64_t q = p->primes[t];
      uint64_t *oc = o->c[0] + (size_t)t * p->n;
      const uint64_t *c0 = a->c[0] + (size_t)t * p->n;
      for (size_t j = 0; j < p->n; j++) oc[j] = bt_mod_add(oc[j], c0[ev->perm[j]], q);
    }
    o->level = a->level;
    o->scale = a->scale;
    o->logslots = a->logslots;
    o->degree = 1;
    o->seeded = 0;
  }
  return BT_OK;
}

/* Centred residue of x in [0, from) as a value mod m. */
static uint64_t centred_mod(uint64_t x, uint64_t from, const bt_modulus *m) {
  uint64_t r = bt_mod_reduce64(x, m);
  return x > from / 2 ? bt_mod_sub(r, bt_mod_reduce64(from, m), m->q) : r;
}

/* Key switching at level 0 with the single special prime p_0: one digit
 * (q_0), ModUp to p_0, product with the key over {q_0, p_0}, ModDown by p_0. */
bt_status bt_eval_encapsulate(bt_evaluator *ev, const bt_ciphertext *a, const bt_encaps_key *k,
                              bt_ciphertext *out) {
  const bt_ckks_params *p = ev->p;
  bt_status st = check_ct(ev, a, out, "encapsulate");
  if (st) return st;
  if (!k || k->params != p) return bt_fail(BT_E_KEY, "cannot encapsulate: no key for these parameters");
  if (a->level != 0 || a->degree != 1)
    return bt_fail(BT_E_LEVEL, "cannot encapsulate: level %d degree %d, expected level 0 degree 1", a->level,
                   a->degree);
  const size_t n = p->n;
  const int ip = p->nq; /* index of p_0 */
  const bt_modulus *mq = &p->mod[0], *mp = &p->mod[ip];
  const uint64_t q0 = mq->q, p0 = mp->q;
  uint64_t *buf = bt_alloc(5 * n * sizeof(uint64_t));
  if (!buf) return bt_fail(BT_E_NOMEM, "out of memory encapsulating");
  uint64_t *x = buf, *dp = buf + n, *u[2] = {buf + 2 * n, buf + 3 * n}, *w = buf + 4 * n;
  memcpy(x, a->c[1], n * sizeof(uint64_t));
  bt_ntt_inverse(&p->ntt[0], x);
  for (size_t j = 0; j < n; j++) dp[j] = centred_mod(x[j], q0, mp);
  bt_ntt_forward(&p->ntt[ip], dp);
  const uint64_t pinv = bt_mod_inv(bt_mod_reduce64(p0, mq), mq);
  for (int h = 0; h < 2; h++) {
    const uint64_t *kq = (h ? k->a : k->b), *kp = kq + n;
    for (size_t j = 0; j < n; j++) {
      u[h][j] = bt_mod_mul(a->c[1][j], kq[j], mq);
      w[j] = bt_mod_mul(dp[j], kp[j], mp);
    }
    bt_ntt_inverse(&p->ntt[ip], w);
    for (size_t j = 0; j < n; j++) w[j] = centred_mod(w[j], p0, mq);
    bt_ntt_forward(&p->ntt[0], w);
    for (size_t j = 0; j < n; j++) u[h][j] = bt_mod_mul(bt_mod_sub(u[h][j], w[j], q0), pinv, mq);
  }
  for (size_t j = 0; j < n; j++) out->c[0][j] = bt_mod_add(a->c[0][j], u[0][j], q0);
  memcpy(out->c[1], u[1], n * sizeof(uint64_t));
  out->level = 0;
  out->degree = 1;
  out->scale = a->scale;
  out->logslots = a->logslots;
  out->seeded = 0;
  bt_free(buf);
  return BT_OK;
}

/* Evaluator: arithmetic on ciphertexts in the NTT domain.
 *
 * Levels: binary operations first drop the operand with more primes.
 * Scales: add/sub bring the smaller scale up to the larger one, by an integer
 * multiplication when the ratio is an integer (no level used), otherwise by
 * multiplying with round(ratio * q_l) and rescaling (one level), which keeps
 * the relative scale error below 2^-(log2 q_l). */
#include <math.h>
#include <string.h>

#include "ckks/internal.h"

bt_status bt_evaluator_new(const bt_ckks_params *p, const bt_eval_keys *keys, bt_evaluator **out) {
  *out = NULL;
  if (keys && keys->params != p) return bt_fail(BT_E_PARAMS, "evaluation keys have other parameters");
  bt_evaluator *ev = bt_calloc(1, sizeof *ev);
  if (!ev) return BT_E_NOMEM;
  ev->p = p;
  ev->keys = keys;
  const size_t n = p->n, qp = (size_t)(p->nq + p->np) * n;
  ev->digits = bt_alloc((size_t)p->dnum * qp * sizeof(uint64_t));
  ev->coef = bt_alloc((size_t)p->nq * n * sizeof(uint64_t));
  ev->acc = bt_alloc(2 * qp * sizeof(uint64_t));
  ev->tmp = bt_alloc(qp * sizeof(uint64_t));
  ev->keep = bt_alloc((size_t)p->nq * n * sizeof(uint64_t));
  ev->perm = bt_alloc(n * sizeof(uint32_t));
  bt_status st = BT_OK;
  if (!ev->digits || !ev->coef || !ev->acc || !ev->tmp || !ev->keep || !ev->perm)
    st = BT_E_NOMEM;
  if (!st) st = bt_ciphertext_new(p, &ev->aux);
  if (st) {
    bt_evaluator_free(ev);
    return st;
  }
  *out = ev;
  return BT_OK;
}

bt_op_counts bt_evaluator_counts(const bt_evaluator *ev) { return ev->counts; }
void bt_evaluator_reset_counts(bt_evaluator *ev) { memset(&ev->counts, 0, sizeof ev->counts); }

void bt_evaluator_free(bt_evaluator *ev) {
  if (!ev) return;
  bt_free(ev->digits);
  bt_free(ev->coef);
  bt_free(ev->acc);
  bt_free(ev->tmp);
  bt_free(ev->keep);
  bt_free(ev->perm);
  bt_ciphertext_free(ev->aux);
  bt_free(ev);
}

static bt_status same_params(const bt_evaluator *ev, const bt_ciphertext *a, const bt_ciphertext *out,
                             const char *what) {
  if (a->params != ev->p || out->params != ev->p)
    return bt_fail(BT_E_PARAMS, "cannot %s: ciphertext has other parameters", what);
  if (a->degree < 1 || a->degree > 2)
    return bt_fail(BT_E_ARG, "cannot %s: ciphertext degree %d", what, a->degree);
  return BT_OK;
}

static void set_meta(bt_ciphertext *out, int level, int degree, double scale, int logslots) {
  out->level = level;
  out->degree = degree;
  out->scale = scale;
  out->logslots = logslots;
  out->seeded = 0;
}

static int scales_equal(double a, double b) { return fabs(a - b) <= 1e-12 * fmax(a, b); }

/* x mod q_i for a real number x of any size (rounded to an integer). */
static uint64_t real_mod(long double x, const bt_ckks_params *p, int i) {
  long double r = nearbyintl(x);
  long double q = (long double)p->primes[i];
  long double m = fmodl(r, q);
  if (m < 0) m += q;
  uint64_t v = (uint64_t)m;
  return v >= p->primes[i] ? v - p->primes[i] : v;
}

/* Multiplies polys 0..degree by the NTT-domain constant (lo on the first
 * half of each limb, hi on the second) and optionally adds into c0 only. */
static void apply_const(bt_evaluator *ev, const bt_ciphertext *a, bt_ciphertext *out, long double re,
                        long double im, int add_only) {
  const bt_ckks_params *p = ev->p;
  const size_t n = p->n, half = n / 2;
  const int limbs = a->level + 1;
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (int t = 0; t < limbs; t++) {
    const bt_modulus *m = &p->mod[t];
    const uint64_t q = m->q;
    uint64_t r = real_mod(re, p, t), c = real_mod(im, p, t);
    uint64_t ci = bt_mod_mul(c, p->imag[t], m);
    uint64_t v[2] = {bt_mod_add(r, ci, q), bt_mod_sub(r, ci, q)};
    for (int h = 0; h <= (add_only ? 0 : a->degree); h++) {
      const uint64_t *x = a->c[h] + (size_t)t * n;
      uint64_t *y = out->c[h] + (size_t)t * n;
      for (int s = 0; s < 2; s++) {
        const uint64_t w = v[s], wp = bt_shoup(w, q);
        const size_t o = (size_t)s * half;
        if (add_only)
          for (size_t j = 0; j < half; j++) y[o + j] = bt_mod_add(x[o + j], w, q);
        else
          for (size_t j = 0; j < half; j++) y[o + j] = bt_mul_shoup(x[o + j], w, wp, q);
      }
    }
    if (add_only && out != a)
      for (int h = 1; h <= a->degree; h++)
        memcpy(out->c[h] + (size_t)t * n, a->c[h] + (size_t)t * n, n * sizeof(uint64_t));
  }
}

bt_status bt_eval_add_const(bt_evaluator *ev, const bt_ciphertext *a, double re, double im,
                            bt_ciphertext *out) {
  bt_status st = same_params(ev, a, out, "add a constant");
  if (st) return st;
  if (!isfinite(re) || !isfinite(im)) return bt_fail(BT_E_ARG, "cannot add a non-finite constant");
  apply_const(ev, a, out, (long double)re * a->scale, (long double)im * a->scale, 1);
  set_meta(out, a->level, a->degree, a->scale, a->logslots);
  return BT_OK;
}

bt_status bt_eval_mul_const_scaled(bt_evaluator *ev, const bt_ciphertext *a, double re, double im,
                                   double const_scale, bt_ciphertext *out) {
  bt_status st = same_params(ev, a, out, "multiply by a constant");
  if (st) return st;
  if (!isfinite(re) || !isfinite(im) || !(const_scale > 0) || !isfinite(const_scale))
    return bt_fail(BT_E_ARG, "cannot multiply by a non-finite constant or at scale %g", const_scale);
  const long double cs = const_scale;
  apply_const(ev, a, out, re * cs, im * cs, 0);
  set_meta(out, a->level, a->degree, a->scale * const_scale, a->logslots);
  return BT_OK;
}

bt_status bt_eval_mul_const(bt_evaluator *ev, const bt_ciphertext *a, double re, double im,
                            bt_ciphertext *out) {
  if (a->level < 0 || a->level >= ev->p->nq) return bt_fail(BT_E_LEVEL, "level %d out of range", a->level);
  return bt_eval_mul_const_scaled(ev, a, re, im, (double)ev->p->primes[a->level], out);
}

bt_status bt_eval_mul_int(bt_evaluator *ev, const bt_ciphertext *a, int64_t k, bt_ciphertext *out) {
  bt_status st = same_params(ev, a, out, "multiply by an integer");
  if (st) return st;
  apply_const(ev, a, out, (long double)k, 0, 0);
  set_meta(out, a->level, a->degree, a->scale, a->logslots);
  return BT_OK;
}

bt_status bt_eval_drop_level(bt_evaluator *ev, const bt_ciphertext *a, int levels, bt_ciphertext *out) {
  bt_status st = same_params(ev, a, out, "drop levels");
  if (st) return st;
  if (levels < 0 || levels > a->level)
    return bt_fail(BT_E_LEVEL, "cannot drop %d levels from level %d", levels, a->level);
  const int level = a->level - levels;
  if ((st = bt_ciphertext_copy(a, out))) return st;
  out->level = level;
  out->seeded = 0;
  return BT_OK;
}

/* Brings `lo` (smaller scale) to scale `target`, result in ev->aux. */
static bt_status raise_scale(bt_evaluator *ev, const bt_ciphertext *lo, double target) {
  double ratio = target / lo->scale, r = nearbyint(ratio);
  bt_status st;
  if (r >= 1 && fabs(ratio - r) <= 1e-9 * ratio && r < 9e15) {
    if ((st = bt_eval_mul_int(ev, lo, (int64_t)r, ev->aux))) return st;
    ev->aux->scale = target;
    return BT_OK;
  }
  if (lo->level < 1)
    return bt_fail(BT_E_SCALE, "cannot match scales %g and %g at level 0", lo->scale, target);
  if ((st = bt_eval_mul_const(ev, lo, ratio, 0, ev->aux)) || (st = bt_eval_rescale(ev, ev->aux, ev->aux)))
    return st;
  ev->aux->scale = target;
  return BT_OK;
}

/* out = a + sign * b with level and scale matching. */
static bt_status add_sub(bt_evaluator *ev, const bt_ciphertext *a, const bt_ciphertext *b,
                         bt_ciphertext *out, int negate) {
  const char *what = negate ? "subtract" : "add";
  bt_status st = same_params(ev, a, out, what);
  if (!st) st = same_params(ev, b, out, what);
  if (st) return st;
  if (a->logslots != b->logslots)
    return bt_fail(BT_E_ARG, "cannot %s ciphertexts with 2^%d and 2^%d slots", what, a->logslots,
                   b->logslots);
  if (!scales_equal(a->scale, b->scale)) {
    int a_low = a->scale < b->scale;
    if ((st = raise_scale(ev, a_low ? a : b, a_low ? b->scale : a->scale))) return st;
    if (a_low) a = ev->aux;
    else b = ev->aux;
  }
  const bt_ckks_params *p = ev->p;
  const int level = a->level < b->level ? a->level : b->level;
  const int deg = a->degree > b->degree ? a->degree : b->degree;
  const size_t n = p->n;
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (int t = 0; t <= level; t++) {
    const uint64_t q = p->primes[t];
    const size_t o = (size_t)t * n;
    for (int h = 0; h <= deg; h++) {
      const uint64_t *x = h <= a->degree ? a->c[h] + o : NULL;
      const uint64_t *y = h <= b->degree ? b->c[h] + o : NULL;
      uint64_t *z = out->c[h] + o;
      if (x && y) {
        if (negate)
          for (size_t j = 0; j < n; j++) z[j] = bt_mod_sub(x[j], y[j], q);
        else
          for (size_t j = 0; j < n; j++) z[j] = bt_mod_add(x[j], y[j], q);
      } else if (x) {
        if (z != x) memcpy(z, x, n * sizeof(uint64_t));
      } else {
        if (negate)
          for (size_t j = 0; j < n; j++) z[j] = bt_mod_neg(y[j], q);
        else if (z != y)
          memcpy(z, y, n * sizeof(uint64_t));
      }
    }
  }
  set_meta(out, level, deg, a->scale, a->logslots);
  return BT_OK;
}

bt_status bt_eval_add(bt_evaluator *ev, const bt_ciphertext *a, const bt_ciphertext *b,
                      bt_ciphertext *out) {
  return add_sub(ev, a, b, out, 0);
}

bt_status bt_eval_sub(bt_evaluator *ev, const bt_ciphertext *a, const bt_ciphertext *b,
                      bt_ciphertext *out) {
  return add_sub(ev, a, b, out, 1);
}

bt_status bt_eval_neg(bt_evaluator *ev, const bt_ciphertext *a, bt_ciphertext *out) {
  bt_status st = same_params(ev, a, out, "negate");
  if (st) return st;
  const bt_ckks_params *p = ev->p;
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (int t = 0; t <= a->level; t++) {
    const size_t o = (size_t)t * p->n;
    for (int h = 0; h <= a->degree; h++)
      for (size_t j = 0; j < p->n; j++) out->c[h][o + j] = bt_mod_neg(a->c[h][o + j], p->primes[t]);
  }
  set_meta(out, a->level, a->degree, a->scale, a->logslots);
  return BT_OK;
}

static bt_status check_plain(const bt_evaluator *ev, const bt_ciphertext *a, const bt_plaintext *b,
                             const char *what) {
  if (b->params != ev->p) return bt_fail(BT_E_PARAMS, "cannot %s: plaintext has other parameters", what);
  if (a->logslots != b->logslots)
    return bt_fail(BT_E_ARG, "cannot %s: 2^%d slots against 2^%d", what, a->logslots, b->logslots);
  return BT_OK;
}

static bt_status plain_op(bt_evaluator *ev, const bt_ciphertext *a, const bt_plaintext *b,
                          bt_ciphertext *out, int op /* 0 add, 1 sub, 2 mul */) {
  static const char *names[] = {"add a plaintext", "subtract a plaintext", "multiply by a plaintext"};
  bt_status st = same_params(ev, a, out, names[op]);
  if (!st) st = check_plain(ev, a, b, names[op]);
  if (st) return st;
  if (op < 2 && !scales_equal(a->scale, b->scale))
    return bt_fail(BT_E_SCALE, "cannot %s: scales %g and %g differ", names[op], a->scale, b->scale);
  const bt_ckks_params *p = ev->p;
  const int level = a->level < b->level ? a->level : b->level;
  const size_t n = p->n;
  if (op == 2) ev->counts.pmult++;
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (int t = 0; t <= level; t++) {
    const bt_modulus *m = &p->mod[t];
    const size_t o = (size_t)t * n;
    const uint64_t *y = b->c + o;
    if (op == 2) {
      for (int h = 0; h <= a->degree; h++) {
        const uint64_t *x = a->c[h] + o;
        uint64_t *z = out->c[h] + o;
        for (size_t j = 0; j < n; j++) z[j] = bt_mod_mul(x[j], y[j], m);
      }
    } else {
      const uint64_t *x = a->c[0] + o;
      uint64_t *z = out->c[0] + o;
      if (op == 1)
        for (size_t j = 0; j < n; j++) z[j] = bt_mod_sub(x[j], y[j], m->q);
      else
        for (size_t j = 0; j < n; j++) z[j] = bt_mod_add(x[j], y[j], m->q);
      for (int h = 1; h <= a->degree; h++)
        if (out->c[h] != a->c[h]) memcpy(out->c[h] + o, a->c[h] + o, n * sizeof(uint64_t));
    }
  }
  set_meta(out, level, a->degree, op == 2 ? a->scale * b->scale : a->scale, a->logslots);
  return BT_OK;
}

bt_status bt_eval_add_plain(bt_evaluator *ev, const bt_ciphertext *a, const bt_plaintext *b,
                            bt_ciphertext *out) {
  return plain_op(ev, a, b, out, 0);
}
bt_status bt_eval_sub_plain(bt_evaluator *ev, const bt_ciphertext *a, const bt_plaintext *b,
                            bt_ciphertext *out) {
  return plain_op(ev, a, b, out, 1);
}
bt_status bt_eval_mul_plain(bt_evaluator *ev, const bt_ciphertext *a, const bt_plaintext *b,
                            bt_ciphertext *out) {
  return plain_op(ev, a, b, out, 2);
}

bt_status bt_eval_mul(bt_evaluator *ev, const bt_ciphertext *a, const bt_ciphertext *b,
                      bt_ciphertext *out) {
  bt_status st = same_params(ev, a, out, "multiply");
  if (!st) st = same_params(ev, b, out, "multiply");
  if (st) return st;
  if (a->degree != 1 || b->degree != 1)
    return bt_fail(BT_E_ARG, "cannot multiply degree-%d by degree-%d ciphertexts; relinearise first",
                   a->degree, b->degree);
  if (a->logslots != b->logslots)
    return bt_fail(BT_E_ARG, "cannot multiply ciphertexts with 2^%d and 2^%d slots", a->logslots,
                   b->logslots);
  const bt_ckks_params *p = ev->p;
  const int level = a->level < b->level ? a->level : b->level;
  const size_t n = p->n;
  ev->counts.tensor++;
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (int t = 0; t <= level; t++) {
    const bt_modulus *m = &p->mod[t];
    const size_t o = (size_t)t * n;
    const uint64_t *a0 = a->c[0] + o, *a1 = a->c[1] + o, *b0 = b->c[0] + o, *b1 = b->c[1] + o;
    uint64_t *z0 = out->c[0] + o, *z1 = out->c[1] + o, *z2 = out->c[2] + o;
    for (size_t j = 0; j < n; j++) {
      /* read all four inputs before writing: out may alias a or b */
      const uint64_t x0 = a0[j], x1 = a1[j], y0 = b0[j], y1 = b1[j];
      z0[j] = bt_mod_mul(x0, y0, m);
      z1[j] = bt_mod_reduce128((bt_u128)x0 * y1 + (bt_u128)x1 * y0, m);
      z2[j] = bt_mod_mul(x1, y1, m);
    }
  }
  set_meta(out, level, 2, a->scale * b->scale, a->logslots);
  return BT_OK;
}

bt_status bt_eval_mul_relin(bt_evaluator *ev, const bt_ciphertext *a, const bt_ciphertext *b,
                            bt_ciphertext *out) {
  if (!bt_eval_keys_find(ev->keys, 0))
    return bt_fail(BT_E_KEY, "cannot multiply: no relinearisation key");
  bt_status st = bt_eval_mul(ev, a, b, out);
  return st ? st : bt_eval_relin(ev, out, out);
}

bt_status bt_eval_rescale(bt_evaluator *ev, const bt_ciphertext *a, bt_ciphertext *out) {
  bt_status st = same_params(ev, a, out, "rescale");
  if (st) return st;
  if (a->level < 1) return bt_fail(BT_E_LEVEL, "cannot rescale: level 0");
  const bt_ckks_params *p = ev->p;
  const int l = a->level;
  const size_t n = p->n;
  const uint64_t ql = p->primes[l], half = ql >> 1;
  for (int h = 0; h <= a->degree; h++) {
    uint64_t *last = ev->keep;
    memcpy(last, a->c[h] + (size_t)l * n, n * sizeof(uint64_t));
    bt_ntt_inverse(&p->ntt[l], last);
#pragma omp parallel for num_threads(p->threads) schedule(static)
    for (int t = 0; t < l; t++) {
      const bt_modulus *m = &p->mod[t];
      const uint64_t q = m->q, qlm = bt_mod_reduce64(ql, m);
      uint64_t *e = ev->tmp + (size_t)t * n;
      /* centred lift of the last limb, so the division rounds */
      for (size_t j = 0; j < n; j++) {
        uint64_t x = bt_mod_reduce64(last[j], m);
        e[j] = last[j] > half ? bt_mod_sub(x, qlm, q) : x;
      }
      bt_ntt_forward(&p->ntt[t], e);
      const uint64_t w = p->qlinv[l * p->nq + t], wp = p->qlinvp[l * p->nq + t];
      const uint64_t *x = a->c[h] + (size_t)t * n;
      uint64_t *z = out->c[h] + (size_t)t * n;
      for (size_t j = 0; j < n; j++) z[j] = bt_mul_shoup(x[j] + q - e[j], w, wp, q);
    }
  }
  set_meta(out, l - 1, a->degree, a->scale / (double)ql, a->logslots);
  return BT_OK;
}

bt_status bt_eval_mod_raise(bt_evaluator *ev, const bt_ciphertext *a, bt_ciphertext *out) {
  bt_status st = same_params(ev, a, out, "raise the modulus");
  if (st) return st;
  if (a->level != 0) return bt_fail(BT_E_LEVEL, "cannot raise the modulus: level %d, expected 0", a->level);
  if (a->degree != 1) return bt_fail(BT_E_ARG, "cannot raise the modulus of a degree-2 ciphertext");
  const bt_ckks_params *p = ev->p;
  const size_t n = p->n;
  const uint64_t q0 = p->primes[0], half = q0 >> 1;
  for (int h = 0; h < 2; h++) {
    uint64_t *c0 = ev->keep;
    memcpy(c0, a->c[h], n * sizeof(uint64_t));
    bt_ntt_inverse(&p->ntt[0], c0);
#pragma omp parallel for num_threads(p->threads) schedule(static)
    for (int t = 0; t < p->nq; t++) {
      const bt_modulus *m = &p->mod[t];
      uint64_t *o = out->c[h] + (size_t)t * n;
      const uint64_t q0m = bt_mod_reduce64(q0, m);
      for (size_t j = 0; j < n; j++) {
        uint64_t x = bt_mod_reduce64(c0[j], m);
        o[j] = c0[j] > half ? bt_mod_sub(x, q0m, m->q) : x;
      }
      bt_ntt_forward(&p->ntt[t], o);
    }
  }
  set_meta(out, p->nq - 1, 1, a->scale, a->logslots);
  return BT_OK;
}

size_t bt_inner_sum_steps(int batch, int n, int replicate, int *steps) {
  size_t cnt = 0;
  int sign = replicate ? -1 : 1, shift = 0;
  for (int i = 0; (1 << i) <= n && i < 31; i++) {
    if ((n >> i) & 1) {
      if (shift) steps[cnt++] = sign * shift * batch;
      shift += 1 << i;
    }
    if ((n >> (i + 1)) != 0) steps[cnt++] = sign * (1 << i) * batch;
  }
  return cnt;
}

/* out = sum_{j < n} rot(a, sign * j * batch), by doubling (Lattigo's InnerSum). */
static bt_status rotation_sum(bt_evaluator *ev, const bt_ciphertext *a, int batch, int n, int sign,
                              bt_ciphertext *out) {
  bt_status st = same_params(ev, a, out, "sum rotations");
  if (st) return st;
  if (n < 1 || batch < 1) return bt_fail(BT_E_ARG, "cannot sum %d blocks of %d slots", n, batch);
  bt_ciphertext *pow = NULL, *res = NULL, *rot = NULL;
  if ((st = bt_ciphertext_new(ev->p, &pow)) || (st = bt_ciphertext_new(ev->p, &res)) ||
      (st = bt_ciphertext_new(ev->p, &rot)) || (st = bt_ciphertext_copy(a, pow)))
    goto done;
  int have = 0, shift = 0;
  for (int i = 0; (1 << i) <= n && i < 31; i++) {
    if ((n >> i) & 1) {
      if (!have) {
        if ((st = bt_eval_rotate(ev, pow, sign * shift * batch, res))) goto done;
        have = 1;
      } else {
        if ((st = bt_eval_rotate(ev, pow, sign * shift * batch, rot)) ||
            (st = bt_eval_add(ev, res, rot, res)))
          goto done;
      }
      shift += 1 << i;
    }
    if ((n >> (i + 1)) != 0) {
      if ((st = bt_eval_rotate(ev, pow, sign * (1 << i) * batch, rot)) ||
          (st = bt_eval_add(ev, pow, rot, pow)))
        goto done;
    }
  }
  st = bt_ciphertext_copy(res, out);
done:
  bt_ciphertext_free(pow);
  bt_ciphertext_free(res);
  bt_ciphertext_free(rot);
  return st;
}

bt_status bt_eval_inner_sum(bt_evaluator *ev, const bt_ciphertext *a, int batch, int n,
                            bt_ciphertext *out) {
  return rotation_sum(ev, a, batch, n, 1, out);
}

bt_status bt_eval_replicate(bt_evaluator *ev, const bt_ciphertext *a, int batch, int n,
                            bt_ciphertext *out) {
  return rotation_sum(ev, a, batch, n, -1, out);
}

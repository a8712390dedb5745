/* CKKS encoding through the canonical embedding.
 *
 * With n slots, w = exp(2 pi i / 4n) and the rotation group {5^j mod 4n} =
 * {4t + 1 : t < n}, a real polynomial m(Y) of degree < 2n satisfies
 *   z_j = m(w^(5^j)) = sum_{k<n} u_k w^k e^(2 pi i t k / n),  t = (5^j - 1)/4,
 * where u_k = m_k + i m_{k+n} (w^n = i and 5^j = 1 mod 4).  Decoding is
 * therefore a twist by w^k followed by an n-point inverse DFT, and encoding
 * a forward DFT followed by the inverse twist and a division by n; both are
 * FFTW transforms.  Y = X^(N/2n) places sparse packings in R[X]/(X^N + 1). */
#include <math.h>
#include <string.h>

#include <complex.h>
#include <fftw3.h>

#include "ckks/internal.h"

static bt_status check_slots(const bt_ckks_params *p, int logslots, size_t count) {
  if (logslots < 0 || logslots >= p->logn)
    return bt_fail(BT_E_ARG, "log2 slots %d outside [0, %d]", logslots, p->logn - 1);
  if (count > ((size_t)1 << logslots))
    return bt_fail(BT_E_ARG, "%zu values do not fit in 2^%d slots", count, logslots);
  return BT_OK;
}

/* Writes round(x) mod q for the primes first .. first + limbs - 1 at
 * position pos of consecutive limbs c. */
static void put_coeff(const bt_ckks_params *p, uint64_t *c, int first, int limbs, size_t pos, double x) {
  double r = nearbyint(x);
  if (fabs(r) < 9.2e18) {
    int64_t v = (int64_t)r;
    for (int i = 0; i < limbs; i++) {
      const bt_modulus *m = &p->mod[first + i];
      uint64_t q = m->q;
      uint64_t a = v < 0 ? q - bt_mod_reduce64((uint64_t)(-v), m) : bt_mod_reduce64((uint64_t)v, m);
      c[(size_t)i * p->n + pos] = a == q ? 0 : a;
    }
  } else {
    long double lr = (long double)r;
    for (int i = 0; i < limbs; i++) {
      const uint64_t q = p->mod[first + i].q;
      long double a = fmodl(lr, (long double)q);
      if (a < 0) a += (long double)q;
      uint64_t v = (uint64_t)a;
      c[(size_t)i * p->n + pos] = v >= q ? v - q : v;
    }
  }
}

/* The slot values through the inverse canonical embedding, before the
 * scale: coefficient k * gap of the encoding is round(scale creal(buf[k] w_k)
 * / n), coefficient (k + n) * gap the same with cimag (w_k the conjugated
 * twist).  *out is fftw_malloc'ed; n = 2^logslots. */
static bt_status embed_inverse(const bt_ckks_params *p, const double complex *values, size_t count, int logslots,
                               double complex **out) {
  const size_t n = (size_t)1 << logslots;
  const bt_slot_tables *t = &p->slots[logslots];
  double complex *buf = fftw_malloc(n * sizeof *buf);
  *out = NULL;
  if (!buf) return bt_fail(BT_E_NOMEM, "out of memory encoding");
  memset(buf, 0, n * sizeof *buf);
  for (size_t j = 0; j < count; j++) {
    if (!isfinite(creal(values[j])) || !isfinite(cimag(values[j]))) {
      fftw_free(buf);
      return bt_fail(BT_E_ARG, "cannot encode a non-finite value (slot %zu)", j);
    }
    buf[t->order[j]] = values[j];
  }
  fftw_execute_dft(t->fwd, buf, buf);
  for (size_t k = 0; k < n; k++) buf[k] *= conj(t->twist[k]);
  *out = buf;
  return BT_OK;
}

/* The encoding at `level` into cq (level + 1 limbs) and, when cp is not
 * NULL, modulo the special primes into cp (np limbs); NTT form. */
static bt_status encode_limbs(const bt_ckks_params *p, const double complex *values, size_t count,
                              int logslots, int level, double scale, uint64_t *cq, uint64_t *cp) {
  const size_t n = (size_t)1 << logslots, gap = p->n / (2 * n);
  double complex *buf;
  bt_status st = embed_inverse(p, values, count, logslots, &buf);
  if (st) return st;
  const int limbs = level + 1;
  memset(cq, 0, (size_t)limbs * p->n * sizeof(uint64_t));
  if (cp) memset(cp, 0, (size_t)p->np * p->n * sizeof(uint64_t));
  const double norm = scale / (double)n;
  for (size_t k = 0; k < n; k++) {
    double complex u = buf[k] * norm;
    put_coeff(p, cq, 0, limbs, k * gap, creal(u));
    put_coeff(p, cq, 0, limbs, (k + n) * gap, cimag(u));
    if (cp) {
      put_coeff(p, cp, p->nq, p->np, k * gap, creal(u));
      put_coeff(p, cp, p->nq, p->np, (k + n) * gap, cimag(u));
    }
  }
  fftw_free(buf);
  bt_poly_ntt(p, cq, 0, limbs);
  if (cp) bt_poly_ntt(p, cp, p->nq, p->np);
  return BT_OK;
}

bt_status bt_ckks_encode_coeffs(const bt_ckks_params *p, const double complex *values, size_t count, int logslots,
                                double scale, int64_t *out) {
  bt_status st = check_slots(p, logslots, count);
  if (st) return st;
  if (!(scale > 0) || !isfinite(scale)) return bt_fail(BT_E_SCALE, "cannot encode at scale %g", scale);
  const size_t n = (size_t)1 << logslots, gap = p->n / (2 * n);
  double complex *buf;
  if ((st = embed_inverse(p, values, count, logslots, &buf))) return st;
  memset(out, 0, p->n * sizeof *out);
  const double norm = scale / (double)n;
  for (size_t k = 0; k < n && !st; k++) {
    const double complex u = buf[k] * norm;
    const double r[2] = {nearbyint(creal(u)), nearbyint(cimag(u))};
    for (int h = 0; h < 2 && !st; h++) {
      if (!(fabs(r[h]) < 9.2e18)) /* as put_coeff's exact path: below 2^63 */
        st = bt_fail(BT_E_SCALE, "a coefficient of the encoding at scale 2^%.1f exceeds 2^63", log2(scale));
      else
        out[(k + (size_t)h * n) * gap] = (int64_t)r[h];
    }
  }
  fftw_free(buf);
  return st;
}

static bt_status check_encode(const bt_ckks_params *p, size_t count, int logslots, int level, double scale,
                              const bt_plaintext *out) {
  bt_status st = check_slots(p, logslots, count);
  if (st) return st;
  if (level < 0 || level >= p->nq)
    return bt_fail(BT_E_LEVEL, "cannot encode at level %d (max %d)", level, p->nq - 1);
  if (!(scale > 0) || !isfinite(scale))
    return bt_fail(BT_E_SCALE, "cannot encode at scale %g", scale);
  if (out->params != p) return bt_fail(BT_E_PARAMS, "plaintext belongs to other parameters");
  return BT_OK;
}

bt_status bt_ckks_encode(const bt_ckks_params *p, const double complex *values, size_t count,
                         int logslots, int level, double scale, bt_plaintext *out) {
  bt_status st = check_encode(p, count, logslots, level, scale, out);
  if (!st) st = encode_limbs(p, values, count, logslots, level, scale, out->c, NULL);
  if (st) return st;
  /* a plaintext re-encoded without the special primes drops them */
  bt_free(out->cp);
  out->cp = NULL;
  out->level = level;
  out->scale = scale;
  out->logslots = logslots;
  return BT_OK;
}

bt_status bt_ckks_encode_qp(const bt_ckks_params *p, const double complex *values, size_t count,
                            int logslots, int level, double scale, bt_plaintext *out) {
  bt_status st = check_encode(p, count, logslots, level, scale, out);
  if (st) return st;
  if (!out->cp && !(out->cp = bt_alloc((size_t)p->np * p->n * sizeof(uint64_t))))
    return bt_fail(BT_E_NOMEM, "out of memory encoding");
  if ((st = encode_limbs(p, values, count, logslots, level, scale, out->c, out->cp))) return st;
  out->level = level;
  out->scale = scale;
  out->logslots = logslots;
  return BT_OK;
}

bt_status bt_ckks_encode_real(const bt_ckks_params *p, const double *values, size_t count,
                              int logslots, int level, double scale, bt_plaintext *out) {
  bt_status st = check_slots(p, logslots, count);
  if (st) return st;
  double complex *tmp = bt_alloc((count ? count : 1) * sizeof *tmp);
  if (!tmp) return BT_E_NOMEM;
  for (size_t i = 0; i < count; i++) tmp[i] = values[i];
  st = bt_ckks_encode(p, tmp, count, logslots, level, scale, out);
  bt_free_secret(tmp, (count ? count : 1) * sizeof *tmp);
  return st;
}

/* Wiped and freed, from guarded memory or not as the plaintext says. */
static void free_decode(const bt_plaintext *pt, uint64_t *coef, size_t coef_bytes, double complex *buf,
                        size_t buf_bytes) {
  if (pt->secret) {
    bt_free_locked(coef);
    bt_free_locked(buf);
    return;
  }
  bt_free_secret(coef, coef_bytes);
  bt_wipe(buf, buf ? buf_bytes : 0);
  fftw_free(buf);
}

bt_status bt_ckks_decode(const bt_plaintext *pt, double complex *out) {
  const bt_ckks_params *p = pt->params;
  bt_status st = check_slots(p, pt->logslots, 0);
  if (st) return st;
  if (pt->level < 0 || pt->level > p->nq - 1)
    return bt_fail(BT_E_SCALE, "cannot decode at level %d (0 to %d)", pt->level, p->nq - 1);
  /* a scale below 1 or above the modulus leaves nothing to decode (and a
   * crafted one would ask for more CRT primes than the level has) */
  double qbits = 0;
  for (int i = 0; i <= pt->level; i++) qbits += log2((double)p->primes[i]);
  if (!isfinite(pt->scale) || !(pt->scale >= 1) || log2(pt->scale) + 1 > qbits)
    return bt_fail(BT_E_SCALE, "cannot decode at scale %g: outside [1, 2^%.0f) at level %d", pt->scale, qbits - 1,
                   pt->level);
  const size_t n = (size_t)1 << pt->logslots, gap = p->n / (2 * n);
  /* CRT over the fewest primes whose product exceeds scale * 2^64: exact for
   * every message whose slots stay below 2^62 in magnitude */
  int k = 0;
  double bits = 0, need = log2(pt->scale) + 64;
  while (k < pt->level + 1 && bits < need) bits += log2((double)p->primes[k++]);
  /* the coefficients and the FFT buffer are the message in the clear: for
   * a secret plaintext they live in guarded memory too (the FFT plans are
   * FFTW_UNALIGNED, and guarded blocks are 64-byte aligned anyway) */
  const size_t coef_bytes = (size_t)k * p->n * sizeof(uint64_t), buf_bytes = n * sizeof(double complex);
  uint64_t *coef = pt->secret ? bt_alloc_locked(coef_bytes) : bt_alloc(coef_bytes);
  double complex *buf = pt->secret ? bt_alloc_locked(buf_bytes) : fftw_malloc(buf_bytes);
  if (!coef || !buf) {
    free_decode(pt, coef, coef_bytes, buf, buf_bytes);
    return bt_fail(BT_E_NOMEM, "out of memory decoding");
  }
  memcpy(coef, pt->c, (size_t)k * p->n * sizeof(uint64_t));
  bt_poly_intt(p, coef, 0, k);
  const bt_crt *crt = &p->crt[k - 1];
  const bt_slot_tables *t = &p->slots[pt->logslots];
  const long double inv_scale = 1.0L / (long double)pt->scale;
#pragma omp parallel num_threads(p->threads)
  {
    uint64_t res[BT_MAX_PRIMES], scratch[2 * BT_MAX_PRIMES + 2];
#pragma omp for schedule(static)
    for (size_t j = 0; j < n; j++) {
      double v[2];
      for (int h = 0; h < 2; h++) {
        size_t pos = (j + (size_t)h * n) * gap;
        for (int i = 0; i < k; i++) res[i] = coef[(size_t)i * p->n + pos];
        v[h] = (double)(bt_crt_centered(crt, res, scratch) * inv_scale);
      }
      buf[j] = (v[0] + I * v[1]) * t->twist[j];
    }
  }
  fftw_execute_dft(t->bwd, buf, buf);
  for (size_t j = 0; j < n; j++) out[j] = buf[t->order[j]];
  free_decode(pt, coef, coef_bytes, buf, buf_bytes);
  return BT_OK;
}

bt_status bt_ckks_decode_real(const bt_plaintext *pt, double *out) {
  bt_status st = check_slots(pt->params, pt->logslots, 0);
  if (st) return st;
  const size_t n = (size_t)1 << pt->logslots;
  double complex *tmp = pt->secret ? bt_alloc_locked(n * sizeof *tmp) : bt_alloc(n * sizeof *tmp);
  if (!tmp) return BT_E_NOMEM;
  st = bt_ckks_decode(pt, tmp);
  if (!st)
    for (size_t j = 0; j < n; j++) out[j] = creal(tmp[j]);
  if (pt->secret)
    bt_free_locked(tmp);
  else
    bt_free_secret(tmp, n * sizeof *tmp);
  return st;
}

/* Parameter literals, presets and the validated parameter handle. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <complex.h>
#include <fftw3.h>
#include <sodium.h>

#include "ckks/internal.h"

/* 128-bit classical security, uniform ternary secret: maximal log2(QP) per
 * ring degree.  N = 2^10 .. 2^15: the HE Standard's table (Albrecht et al.,
 * "Homomorphic Encryption Standard", 2018).  N = 2^16, where that table
 * stops: 1747, OpenFHE's HEStd_ternary 128-bit classical figure, derived
 * with the lattice estimator (docs/SECURITY.md). */
int bt_ckks_he_standard_max_logqp(int logn) {
  switch (logn) {
  case 10: return 27;
  case 11: return 54;
  case 12: return 109;
  case 13: return 218;
  case 14: return 438;
  case 15: return 881;
  case 16: return 1747;
  default: return 0;
  }
}

static const char *const preset_names[] = {"bench-n16",           "INSECURE-n10",
                                           "INSECURE-n12",        "INSECURE-n12-sparse",
                                           "INSECURE-boot-n12",   "INSECURE-boot-n12-dense",
                                           "INSECURE-boot-n16",   "INSECURE-train-n15",
                                           "train-n16", NULL};

const char *const *bt_ckks_preset_names(void) { return preset_names; }

static void fill(bt_ckks_literal *l, int from, int to, int bits) {
  for (int i = from; i < to; i++) l->q_bits[i] = bits;
}

bt_status bt_ckks_preset(const char *name, bt_ckks_literal *out) {
  memset(out, 0, sizeof *out);
  if (!name) return bt_fail(BT_E_ARG, "no preset name");
  if (strcmp(name, "bench-n16") == 0) {
    /* N = 2^16, 25 ciphertext primes (60 + 24 x 48 bits), dnum = 3 so
     * alpha = 9 special primes of 52 bits: log QP = 1680 <= 1747. */
    out->name = "bench-n16";
    out->logn = 16;
    out->nq = 25;
    out->q_bits[0] = 60;
    fill(out, 1, 25, 48);
    out->dnum = 3;
    out->p_bits = 52;
    out->log_scale = 48;
    out->secret = BT_SECRET_TERNARY;
    return BT_OK;
  }
  if (strcmp(name, "INSECURE-n10") == 0) {
    out->name = "INSECURE-n10";
    out->logn = 10;
    out->nq = 6;
    out->q_bits[0] = 55;
    fill(out, 1, 6, 40);
    out->dnum = 3;
    out->p_bits = 55;
    out->log_scale = 40;
    out->secret = BT_SECRET_TERNARY;
    out->insecure = 1;
    return BT_OK;
  }
  if (strcmp(name, "INSECURE-n12") == 0 || strcmp(name, "INSECURE-n12-sparse") == 0) {
    int sparse = name[12] != '\0';
    out->name = sparse ? "INSECURE-n12-sparse" : "INSECURE-n12";
    out->logn = 12;
    out->nq = 8;
    out->q_bits[0] = 58;
    fill(out, 1, 8, 45);
    out->dnum = 2;
    out->p_bits = 58;
    out->log_scale = 45;
    out->secret = sparse ? BT_SECRET_SPARSE : BT_SECRET_TERNARY;
    out->hamming_weight = sparse ? 64 : 0;
    out->insecure = 1;
    return BT_OK;
  }
  if (strcmp(name, "train-n16") == 0 || strcmp(name, "INSECURE-boot-n12-dense") == 0 ||
      strcmp(name, "INSECURE-train-n15") == 0) {
    /* The training preset: N = 2^16, uniform ternary secret (bootstrapped
     * through sparse-secret encapsulation), scale 2^43.  From the top: 11
     * levels on 60-bit primes for CoeffsToSlots (3) and EvalMod (8, at scale
     * 2^60: a depth-5 Chebyshev interpolant and 3 double angles), 3 levels of
     * SlotsToCoeffs on 40-bit primes (its diagonals keep 34 bits there), 12
     * usable levels on 43-bit primes, q0 of 55 bits (q0 / scale = 2^12);
     * dnum = 5, so 6 special primes of 60 bits.
     * log2 QP = 55 + 12 x 43 + 3 x 40 + 11 x 60 + 6 x 60 = 1711 <= 1747.
     * INSECURE-boot-n12-dense is the same layout at N = 2^12 for tests,
     * INSECURE-train-n15 at N = 2^15 (half the memory: two benchmark ranks
     * on one 24 GB machine, docs/SCALING.md). */
    const int test = name[0] == 'I', n15 = strcmp(name, "INSECURE-train-n15") == 0;
    out->name = n15 ? "INSECURE-train-n15" : test ? "INSECURE-boot-n12-dense" : "train-n16";
    out->logn = n15 ? 15 : test ? 12 : 16;
    out->nq = 27;
    out->q_bits[0] = 55;
    fill(out, 1, 13, 43);
    fill(out, 13, 16, 40);
    fill(out, 16, 27, 60);
    out->dnum = 5;
    out->p_bits = 60;
    out->log_scale = 43;
    out->secret = BT_SECRET_TERNARY;
    out->insecure = test;
    return BT_OK;
  }
  if (strcmp(name, "INSECURE-boot-n12") == 0 || strcmp(name, "INSECURE-boot-n16") == 0) {
    /* Bootstrappable sets with a sparse secret (not yet argued secure, hence
     * INSECURE): from the top, CoeffsToSlots and EvalMod levels on 60-bit
     * primes (EvalMod runs at scale 2^60), then SlotsToCoeffs and the
     * levels left to computations on 45-bit primes. */
    const int big = strcmp(name, "INSECURE-boot-n16") == 0;
    out->name = big ? "INSECURE-boot-n16" : "INSECURE-boot-n12";
    out->logn = big ? 16 : 12;
    out->nq = big ? 30 : 20;
    const int high = big ? 13 : 12; /* CtS + EvalMod levels (4 + 9, 3 + 9) */
    for (int i = 0; i < out->nq; i++) out->q_bits[i] = i >= out->nq - high ? 60 : 45;
    /* q0 / scale = 2^12: EvalMod's error reaches the output multiplied by
     * q0 / (2 pi scale), while sin(2 pi x) / 2 pi ~ x needs m / q0 small */
    out->q_bits[0] = 57;
    out->dnum = big ? 2 : 4;
    out->p_bits = 60;
    out->log_scale = 45;
    out->secret = BT_SECRET_SPARSE;
    out->hamming_weight = big ? 192 : 64;
    out->insecure = 1;
    return BT_OK;
  }
  return bt_fail(BT_E_ARG, "unknown parameter preset '%s'", name);
}

static pthread_mutex_t fftw_lock = PTHREAD_MUTEX_INITIALIZER;

static bt_status validate(const bt_ckks_literal *l, unsigned flags, int *alpha_out) {
  if (l->logn < 6 || l->logn > 17)
    return bt_fail(BT_E_PARAMS, "log2 N = %d is outside [6, 17]", l->logn);
  if (l->nq < 1 || l->dnum < 1 || l->dnum > l->nq)
    return bt_fail(BT_E_PARAMS, "need 1 <= dnum (%d) <= number of primes (%d)", l->dnum, l->nq);
  int alpha = (l->nq + l->dnum - 1) / l->dnum;
  if (l->nq + alpha > BT_MAX_PRIMES)
    return bt_fail(BT_E_PARAMS, "%d + %d primes exceed the maximum of %d", l->nq, alpha,
                   BT_MAX_PRIMES);
  for (int i = 0; i < l->nq; i++)
    if (l->q_bits[i] < l->logn + 2 || l->q_bits[i] > BT_MAX_PRIME_BITS)
      return bt_fail(BT_E_PARAMS, "q_%d has %d bits; allowed %d..%d", i, l->q_bits[i],
                     l->logn + 2, BT_MAX_PRIME_BITS);
  if (l->p_bits < l->logn + 2 || l->p_bits > BT_MAX_PRIME_BITS)
    return bt_fail(BT_E_PARAMS, "special primes of %d bits; allowed %d..%d", l->p_bits,
                   l->logn + 2, BT_MAX_PRIME_BITS);
  if (l->log_scale < 1 || l->log_scale > 120)
    return bt_fail(BT_E_PARAMS, "log2 scale %d out of range", l->log_scale);
  if (l->secret != BT_SECRET_TERNARY && l->secret != BT_SECRET_SPARSE)
    return bt_fail(BT_E_PARAMS, "unknown secret distribution %d", (int)l->secret);
  if (l->secret == BT_SECRET_SPARSE &&
      (l->hamming_weight < 1 || l->hamming_weight > (1 << l->logn)))
    return bt_fail(BT_E_PARAMS, "Hamming weight %d out of range", l->hamming_weight);
  if (l->insecure && !(flags & BT_ALLOW_INSECURE))
    return bt_fail(BT_E_INSECURE,
                   "parameter set '%s' is INSECURE (for tests only); refusing it without --allow-insecure",
                   l->name ? l->name : "?");
  int logqp = 0;
  for (int i = 0; i < l->nq; i++) logqp += l->q_bits[i];
  logqp += alpha * l->p_bits;
  if (!l->insecure) {
    int bound = bt_ckks_he_standard_max_logqp(l->logn);
    if (bound == 0 || logqp > bound)
      return bt_fail(BT_E_PARAMS,
                     "log2 QP = %d exceeds the 128-bit bound %d (HE Standard; OpenFHE at 2^16) for N = 2^%d; "
                     "mark the set insecure or use fewer bits",
                     logqp, bound, l->logn);
    if (l->secret == BT_SECRET_SPARSE)
      return bt_fail(BT_E_PARAMS, "sparse secrets are only allowed in INSECURE sets until "
                                  "their security is argued");
  }
  *alpha_out = alpha;
  return BT_OK;
}

/* Key-switching digits: dnum runs of consecutive primes balanced by bits.
 * The key-switching error is about (Q_j / P) sigma sqrt(N) per digit: with
 * P the alpha special primes, a digit of alpha top-level 60-bit primes would
 * make Q_j / P about 1 and the error ~2^10 at N = 2^16, while a digit of
 * about (log Q) / dnum bits keeps it far below the rounding error of ModDown.
 * (Equal-size primes give the same digits as splitting by count.) */
static void split_digits(bt_ckks_params *p) {
  const int *bits = p->lit.q_bits, nq = p->nq, dnum = p->dnum;
  double total = 0, cum = 0;
  for (int i = 0; i < nq; i++) total += bits[i];
  int i = 0;
  p->dmax = 0;
  for (int j = 0; j < dnum; j++) {
    p->dstart[j] = i;
    const double target = total * (j + 1) / dnum;
    cum += bits[i++]; /* at least one prime per digit */
    while (i < nq - (dnum - 1 - j) && (j == dnum - 1 || cum + 0.5 * bits[i] <= target)) cum += bits[i++];
    if (i - p->dstart[j] > p->dmax) p->dmax = i - p->dstart[j];
  }
  p->dstart[dnum] = nq;
}

static bt_status gen_primes(bt_ckks_params *p) {
  const bt_ckks_literal *l = &p->lit;
  int total = 0;
  for (int i = 0; i < l->nq; i++, total++) {
    bt_status st = bt_primes_generate(l->q_bits[i], l->logn, 1, p->primes, (size_t)total,
                                      &p->primes[total]);
    if (st) return st;
  }
  for (int j = 0; j < p->np; j++, total++) {
    bt_status st = bt_primes_generate(l->p_bits, l->logn, 1, p->primes, (size_t)total,
                                      &p->primes[total]);
    if (st) return st;
  }
  return BT_OK;
}

static void compute_hash(bt_ckks_params *p) {
  crypto_generichash_state h;
  crypto_generichash_init(&h, NULL, 0, BT_PARAMS_HASH_BYTES);
  /* v2: the key-switching digit boundaries are hashed too, so keys made
   * with another digit split (v1 cut digits by prime count) are refused;
   * v3: the default scale and the INSECURE flag, which change what a
   * ciphertext means and whether it may be trusted */
  const char tag[] = "blindtuner-ckks-params-v3";
  crypto_generichash_update(&h, (const uint8_t *)tag, sizeof tag);
  int32_t fields[8] = {p->logn, p->nq, p->np, p->dnum, (int32_t)p->lit.secret,
                       p->lit.hamming_weight, p->lit.log_scale, p->lit.insecure ? 1 : 0};
  uint8_t buf[8];
  for (int i = 0; i < 8; i++) {
    for (int b = 0; b < 4; b++) buf[b] = (uint8_t)((uint32_t)fields[i] >> (8 * b));
    crypto_generichash_update(&h, buf, 4);
  }
  for (int i = 0; i < p->nq + p->np; i++) {
    for (int b = 0; b < 8; b++) buf[b] = (uint8_t)(p->primes[i] >> (8 * b));
    crypto_generichash_update(&h, buf, 8);
  }
  for (int j = 0; j <= p->dnum; j++) {
    for (int b = 0; b < 4; b++) buf[b] = (uint8_t)((uint32_t)p->dstart[j] >> (8 * b));
    crypto_generichash_update(&h, buf, 4);
  }
  crypto_generichash_final(&h, p->hash, BT_PARAMS_HASH_BYTES);
}

static bt_status build_slot_tables(bt_ckks_params *p) {
  for (int ls = 0; ls < p->logn; ls++) {
    bt_slot_tables *t = &p->slots[ls];
    size_t n = (size_t)1 << ls;
    t->twist = bt_alloc(n * sizeof *t->twist);
    t->order = bt_alloc(n * sizeof *t->order);
    if (!t->twist || !t->order) return BT_E_NOMEM;
    const long double pi = 3.141592653589793238462643383279502884L;
    for (size_t k = 0; k < n; k++) {
      long double ang = 2 * pi * (long double)k / (long double)(4 * n);
      t->twist[k] = (double)cosl(ang) + I * (double)sinl(ang);
    }
    uint64_t g = 1, m4 = 4 * (uint64_t)n;
    for (size_t j = 0; j < n; j++) {
      t->order[j] = (uint32_t)((g - 1) / 4);
      g = (g * 5) % m4;
    }
    fftw_complex *buf = fftw_malloc(n * sizeof *buf);
    if (!buf) return BT_E_NOMEM;
    pthread_mutex_lock(&fftw_lock); /* the FFTW planner is not thread-safe */
    t->fwd = fftw_plan_dft_1d((int)n, buf, buf, FFTW_FORWARD, FFTW_ESTIMATE | FFTW_UNALIGNED);
    t->bwd = fftw_plan_dft_1d((int)n, buf, buf, FFTW_BACKWARD, FFTW_ESTIMATE | FFTW_UNALIGNED);
    pthread_mutex_unlock(&fftw_lock);
    fftw_free(buf);
    if (!t->fwd || !t->bwd) return bt_fail(BT_E_NOMEM, "cannot plan FFT of size %zu", n);
  }
  return BT_OK;
}

static bt_status build_tables(bt_ckks_params *p) {
  bt_status st;
  const int nq = p->nq, np = p->np, total = nq + np;
  for (int i = 0; i < total; i++) {
    if ((st = bt_modulus_init(&p->mod[i], p->primes[i]))) return st;
    if ((st = bt_ntt_table_init(&p->ntt[i], p->primes[i], p->logn))) return st;
    p->imag[i] = bt_mod_pow(p->ntt[i].psi, p->n / 2, &p->mod[i]);
  }
  p->qlinv = bt_calloc(2 * (size_t)nq * (size_t)nq, sizeof(uint64_t));
  if (!p->qlinv) return BT_E_NOMEM;
  p->qlinvp = p->qlinv + (size_t)nq * (size_t)nq;
  for (int l = 1; l < nq; l++)
    for (int i = 0; i < l; i++) {
      uint64_t v = bt_mod_inv(bt_mod_reduce64(p->primes[l], &p->mod[i]), &p->mod[i]);
      p->qlinv[l * nq + i] = v;
      p->qlinvp[l * nq + i] = bt_shoup(v, p->primes[i]);
    }
  for (int i = 0; i < nq; i++) {
    uint64_t pm = 1;
    for (int j = 0; j < np; j++)
      pm = bt_mod_mul(pm, bt_mod_reduce64(p->primes[nq + j], &p->mod[i]), &p->mod[i]);
    p->pmodq[i] = pm;
    p->pinv[i] = bt_mod_inv(pm, &p->mod[i]);
    p->pinvp[i] = bt_shoup(p->pinv[i], p->primes[i]);
  }
  p->modup = bt_calloc((size_t)p->dnum * (size_t)p->dmax, sizeof *p->modup);
  if (!p->modup) return BT_E_NOMEM;
  for (int j = 0; j < p->dnum; j++)
    for (int c = 1; c <= p->dstart[j + 1] - p->dstart[j]; c++) {
      int start = p->dstart[j];
      st = bt_rns_conv_init(&p->modup[j * p->dmax + c - 1], &p->primes[start], (size_t)c,
                            p->primes, (size_t)total);
      if (st) return st;
    }
  if ((st = bt_rns_conv_init(&p->moddown, &p->primes[nq], (size_t)np, p->primes, (size_t)nq)))
    return st;
  for (int k = 1; k <= nq; k++)
    if ((st = bt_crt_init(&p->crt[k - 1], p->primes, (size_t)k))) return st;
  return build_slot_tables(p);
}

bt_status bt_ckks_params_new(const bt_ckks_literal *lit, unsigned flags, bt_ckks_params **out) {
  *out = NULL;
  int alpha = 0;
  bt_status st = validate(lit, flags, &alpha);
  if (st) return st;
  bt_ckks_params *p = bt_calloc(1, sizeof *p);
  if (!p) return BT_E_NOMEM;
  p->lit = *lit;
  /* the handle owns its name: the caller's string may not outlive it */
  snprintf(p->name_buf, sizeof p->name_buf, "%s", lit->name ? lit->name : "");
  p->lit.name = p->name_buf;
  p->logn = lit->logn;
  p->n = (size_t)1 << lit->logn;
  p->nq = lit->nq;
  p->dnum = lit->dnum;
  p->alpha = p->np = alpha;
  split_digits(p);
  p->scale = ldexp(1.0, lit->log_scale);
  p->threads = bt_default_threads();
  if ((st = gen_primes(p)) || (st = build_tables(p))) {
    bt_ckks_params_free(p);
    return st;
  }
  p->log_qp = 0;
  for (int i = 0; i < p->nq + p->np; i++) p->log_qp += log2((double)p->primes[i]);
  compute_hash(p);
  *out = p;
  return BT_OK;
}

void bt_ckks_params_free(bt_ckks_params *p) {
  if (!p) return;
  for (int i = 0; i < BT_MAX_PRIMES; i++) {
    bt_ntt_table_free(&p->ntt[i]);
    bt_crt_free(&p->crt[i]);
  }
  bt_free(p->qlinv);
  if (p->modup)
    for (int i = 0; i < p->dnum * p->dmax; i++) bt_rns_conv_free(&p->modup[i]);
  bt_free(p->modup);
  bt_rns_conv_free(&p->moddown);
  pthread_mutex_lock(&fftw_lock);
  for (int ls = 0; ls < 20; ls++) {
    bt_slot_tables *t = &p->slots[ls];
    if (t->fwd) fftw_destroy_plan(t->fwd);
    if (t->bwd) fftw_destroy_plan(t->bwd);
    bt_free(t->twist);
    bt_free(t->order);
  }
  pthread_mutex_unlock(&fftw_lock);
  bt_free(p);
}

int bt_ckks_logn(const bt_ckks_params *p) { return p->logn; }
size_t bt_ckks_n(const bt_ckks_params *p) { return p->n; }
int bt_ckks_max_level(const bt_ckks_params *p) { return p->nq - 1; }
int bt_ckks_num_special(const bt_ckks_params *p) { return p->np; }
int bt_ckks_dnum(const bt_ckks_params *p) { return p->dnum; }
int bt_ckks_digits_at(const bt_ckks_params *p, int level) { return bt_digits_at(p, level < 0 ? 0 : level); }
double bt_ckks_default_scale(const bt_ckks_params *p) { return p->scale; }
double bt_ckks_log_qp(const bt_ckks_params *p) { return p->log_qp; }
uint64_t bt_ckks_q(const bt_ckks_params *p, int i) {
  return i >= 0 && i < p->nq ? p->primes[i] : 0;
}
uint64_t bt_ckks_p(const bt_ckks_params *p, int i) {
  return i >= 0 && i < p->np ? p->primes[p->nq + i] : 0;
}
const bt_ckks_literal *bt_ckks_literal_of(const bt_ckks_params *p) { return &p->lit; }
const bt_modulus *bt_ckks_modulus(const bt_ckks_params *p, int i) {
  return i >= 0 && i < p->nq + p->np ? &p->mod[i] : NULL;
}
const bt_ntt_table *bt_ckks_ntt_table(const bt_ckks_params *p, int i) {
  return i >= 0 && i < p->nq + p->np ? &p->ntt[i] : NULL;
}
const uint8_t *bt_ckks_params_hash(const bt_ckks_params *p) { return p->hash; }
void bt_ckks_set_threads(bt_ckks_params *p, int threads) {
  p->threads = threads > 0 ? threads : bt_default_threads();
}
int bt_ckks_threads(const bt_ckks_params *p) { return p->threads; }

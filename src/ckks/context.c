/* Objects that live on parameters: plaintexts, ciphertexts, shared
 * polynomial helpers and precision measurement. */
#include <math.h>
#include <string.h>

#include <sodium.h>

#include "ckks/internal.h"

void bt_poly_ntt(const bt_ckks_params *p, uint64_t *a, int first, int count) {
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (int t = 0; t < count; t++) bt_ntt_forward(&p->ntt[first + t], a + (size_t)t * p->n);
}

void bt_poly_intt(const bt_ckks_params *p, uint64_t *a, int first, int count) {
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (int t = 0; t < count; t++) bt_ntt_inverse(&p->ntt[first + t], a + (size_t)t * p->n);
}

void bt_small_to_ntt(const bt_ckks_params *p, const int8_t *v, uint64_t *out, int first,
                     int count) {
  bt_small_to_rns(v, &p->mod[first], (size_t)count, p->n, out);
  bt_poly_ntt(p, out, first, count);
}

void bt_expand_uniform(const bt_ckks_params *p, const uint8_t seed[BT_SEED_BYTES], uint64_t *out,
                       int first, int count) {
  /* limbs are drawn in prime order from one stream, so a prefix of limbs
   * (a lower level) expands identically */
  bt_prng g;
  bt_prng_init(&g, seed);
  bt_sample_uniform(&g, &p->mod[first], (size_t)count, p->n, out);
  bt_prng_wipe(&g);
}

static bt_status plaintext_new(const bt_ckks_params *p, int secret, bt_plaintext **out) {
  *out = NULL;
  bt_plaintext *pt = bt_calloc(1, sizeof *pt);
  if (!pt) return BT_E_NOMEM;
  pt->params = p;
  pt->level = p->nq - 1;
  pt->scale = p->scale;
  pt->logslots = p->logn - 1;
  pt->secret = secret;
  const size_t words = (size_t)p->nq * p->n;
  pt->c = secret ? bt_alloc_locked(words * sizeof(uint64_t)) : bt_calloc(words, sizeof(uint64_t));
  if (!pt->c) {
    bt_free(pt);
    return BT_E_NOMEM;
  }
  *out = pt;
  return BT_OK;
}

bt_status bt_plaintext_new(const bt_ckks_params *p, bt_plaintext **out) { return plaintext_new(p, 0, out); }

bt_status bt_plaintext_new_secret(const bt_ckks_params *p, bt_plaintext **out) { return plaintext_new(p, 1, out); }

void bt_plaintext_free(bt_plaintext *pt) {
  if (!pt) return;
  /* plaintexts hold decrypted client data */
  if (pt->secret)
    bt_free_locked(pt->c);
  else
    bt_free_secret(pt->c, (size_t)pt->params->nq * pt->params->n * sizeof(uint64_t));
  if (pt->cp) bt_free_secret(pt->cp, (size_t)pt->params->np * pt->params->n * sizeof(uint64_t));
  bt_free(pt);
}

bt_status bt_ciphertext_new(const bt_ckks_params *p, bt_ciphertext **out) {
  *out = NULL;
  bt_ciphertext *ct = bt_calloc(1, sizeof *ct);
  if (!ct) return BT_E_NOMEM;
  ct->params = p;
  ct->level = p->nq - 1;
  ct->degree = 1;
  ct->scale = p->scale;
  ct->logslots = p->logn - 1;
  /* not zeroed: every operation writes limbs 0..level of c[0..degree]
   * before anything reads them */
  for (int i = 0; i < 3; i++) {
    ct->c[i] = bt_alloc((size_t)p->nq * p->n * sizeof(uint64_t));
    if (!ct->c[i]) {
      bt_ciphertext_free(ct);
      return BT_E_NOMEM;
    }
  }
  *out = ct;
  return BT_OK;
}

void bt_ciphertext_free(bt_ciphertext *ct) {
  if (!ct) return;
  for (int i = 0; i < 3; i++) bt_free(ct->c[i]);
  bt_free(ct);
}

bt_status bt_ciphertext_copy(const bt_ciphertext *src, bt_ciphertext *dst) {
  if (dst->params != src->params) return bt_fail(BT_E_PARAMS, "cannot copy: different parameters");
  if (dst == src) return BT_OK;
  size_t words = (size_t)(src->level + 1) * src->params->n;
  for (int i = 0; i <= src->degree; i++) memcpy(dst->c[i], src->c[i], words * sizeof(uint64_t));
  dst->level = src->level;
  dst->degree = src->degree;
  dst->scale = src->scale;
  dst->logslots = src->logslots;
  dst->seeded = src->seeded;
  memcpy(dst->seed, src->seed, BT_SEED_BYTES);
  return BT_OK;
}

bt_precision bt_precision_measure(const double complex *want, const double complex *got,
                                  size_t n) {
  bt_precision r = {0, 0, 0, 0};
  double sum = 0, mx = 0;
  for (size_t i = 0; i < n; i++) {
    double e = cabs(want[i] - got[i]);
    sum += e;
    if (e > mx) mx = e;
  }
  r.mean_err = n ? sum / (double)n : 0;
  r.max_err = mx;
  /* an exact result is reported as 64 bits rather than infinity */
  r.mean_bits = r.mean_err > 0 ? -log2(r.mean_err) : 64;
  r.min_bits = mx > 0 ? -log2(mx) : 64;
  return r;
}

void bt_ckks_expand_uniform(const bt_ckks_params *p, const uint8_t seed[BT_SEED_BYTES], uint64_t *out, int first,
                            int count) {
  bt_expand_uniform(p, seed, out, first, count);
}

void bt_ckks_small_to_ntt(const bt_ckks_params *p, const int8_t *v, uint64_t *out, int first, int count) {
  bt_small_to_ntt(p, v, out, first, count);
}

/* Encryption and decryption.  All arithmetic is in the NTT domain. */
#include <string.h>

#include "ckks/internal.h"

static bt_status check_pt(const bt_ckks_params *p, const bt_plaintext *pt) {
  if (pt->params != p) return bt_fail(BT_E_PARAMS, "plaintext belongs to other parameters");
  if (pt->level < 0 || pt->level >= p->nq)
    return bt_fail(BT_E_LEVEL, "plaintext level %d out of range", pt->level);
  return BT_OK;
}

bt_status bt_encrypt_sk(const bt_secret_key *sk, const bt_plaintext *pt, bt_prng *g,
                        bt_ciphertext *out) {
  const bt_ckks_params *p = sk->params;
  bt_status st = check_pt(p, pt);
  if (st) return st;
  if (out->params != p) return bt_fail(BT_E_PARAMS, "ciphertext belongs to other parameters");
  const int limbs = pt->level + 1;
  const size_t n = p->n;
  int8_t *e = bt_alloc(n);
  if (!e) return BT_E_NOMEM;
  bt_prng_bytes(g, out->seed, BT_SEED_BYTES);
  bt_expand_uniform(p, out->seed, out->c[1], 0, limbs);
  bt_sample_gaussian(g, n, e);
  bt_small_to_ntt(p, e, out->c[0], 0, limbs);
  bt_free_secret(e, n);
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (int i = 0; i < limbs; i++) {
    const bt_modulus *m = &p->mod[i];
    const size_t o = (size_t)i * n;
    const uint64_t *a = out->c[1] + o, *s = sk->s + o, *mm = pt->c + o;
    uint64_t *c0 = out->c[0] + o;
    for (size_t j = 0; j < n; j++) {
      uint64_t v = bt_mod_add(c0[j], mm[j], m->q);
      c0[j] = bt_mod_sub(v, bt_mod_mul(a[j], s[j], m), m->q);
    }
  }
  out->level = pt->level;
  out->degree = 1;
  out->scale = pt->scale;
  out->logslots = pt->logslots;
  out->seeded = 1;
  return BT_OK;
}

bt_status bt_encrypt_pk(const bt_public_key *pk, const bt_plaintext *pt, bt_prng *g,
                        bt_ciphertext *out) {
  const bt_ckks_params *p = pk->params;
  bt_status st = check_pt(p, pt);
  if (st) return st;
  if (out->params != p) return bt_fail(BT_E_PARAMS, "ciphertext belongs to other parameters");
  const int limbs = pt->level + 1;
  const size_t n = p->n, words = (size_t)limbs * n;
  int8_t *small = bt_alloc(n);
  uint64_t *v = bt_alloc(words * sizeof(uint64_t));
  if (!small || !v) {
    bt_free(small);
    bt_free(v);
    return BT_E_NOMEM;
  }
  bt_sample_ternary(g, n, small);
  bt_small_to_ntt(p, small, v, 0, limbs);
  bt_sample_gaussian(g, n, small);
  bt_small_to_ntt(p, small, out->c[0], 0, limbs);
  bt_sample_gaussian(g, n, small);
  bt_small_to_ntt(p, small, out->c[1], 0, limbs);
  bt_free_secret(small, n);
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (int i = 0; i < limbs; i++) {
    const bt_modulus *m = &p->mod[i];
    const size_t o = (size_t)i * n;
    const uint64_t *b = pk->b + o, *a = pk->a + o, *vv = v + o, *mm = pt->c + o;
    uint64_t *c0 = out->c[0] + o, *c1 = out->c[1] + o;
    for (size_t j = 0; j < n; j++) {
      c0[j] = bt_mod_add(bt_mod_add(c0[j], mm[j], m->q), bt_mod_mul(vv[j], b[j], m), m->q);
      c1[j] = bt_mod_add(c1[j], bt_mod_mul(vv[j], a[j], m), m->q);
    }
  }
  bt_free_secret(v, words * sizeof(uint64_t));
  out->level = pt->level;
  out->degree = 1;
  out->scale = pt->scale;
  out->logslots = pt->logslots;
  out->seeded = 0;
  return BT_OK;
}

bt_status bt_decrypt(const bt_secret_key *sk, const bt_ciphertext *ct, bt_plaintext *out) {
  const bt_ckks_params *p = sk->params;
  if (ct->params != p || out->params != p)
    return bt_fail(BT_E_PARAMS, "cannot decrypt: key and ciphertext have different parameters");
  if (ct->degree < 1 || ct->degree > 2)
    return bt_fail(BT_E_ARG, "cannot decrypt: ciphertext degree %d", ct->degree);
  const int limbs = ct->level + 1;
  const size_t n = p->n;
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (int i = 0; i < limbs; i++) {
    const bt_modulus *m = &p->mod[i];
    const size_t o = (size_t)i * n;
    const uint64_t *s = sk->s + o, *c0 = ct->c[0] + o, *c1 = ct->c[1] + o;
    const uint64_t *c2 = ct->degree == 2 ? ct->c[2] + o : NULL;
    uint64_t *d = out->c + o;
    for (size_t j = 0; j < n; j++) {
      /* Horner: c0 + s (c1 + s c2) */
      uint64_t acc = c1[j];
      if (c2) acc = bt_mod_add(acc, bt_mod_mul(c2[j], s[j], m), m->q);
      d[j] = bt_mod_add(c0[j], bt_mod_mul(acc, s[j], m), m->q);
    }
  }
  out->level = ct->level;
  out->scale = ct->scale;
  out->logslots = ct->logslots;
  return BT_OK;
}

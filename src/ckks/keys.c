/* Key generation.
 *
 * Secret s: ternary (uniform or fixed Hamming weight), stored in NTT form
 * over every prime of QP.  Public key: (-a s + e, a) mod Q.  Switching key
 * from s' to s, digit j of dnum: (-a_j s + e_j + P [j] s', a_j) mod QP where
 * [j] is 1 on the primes of digit j and 0 elsewhere (the CRT idempotent), so
 * that for the digits d_j of c, sum_j d_j (b_j, a_j) decrypts to P c s' plus
 * the small noise sum_j d_j e_j; dividing by P (ModDown) finishes the switch.
 * Each a_j is expanded from its own 32-byte seed, stored with the key. */
#include <string.h>

#include "ckks/internal.h"

static size_t qp_words(const bt_ckks_params *p) { return (size_t)(p->nq + p->np) * p->n; }

bt_status bt_secret_key_alloc(const bt_ckks_params *p, bt_secret_key **out) {
  *out = NULL;
  bt_secret_key *sk = bt_calloc(1, sizeof *sk);
  if (!sk) return BT_E_NOMEM;
  sk->params = p;
  /* guarded: never in a core dump, locked where RLIMIT_MEMLOCK allows,
   * zeroed, 64-byte aligned like every bt_alloc block; wiped when freed */
  sk->s = qp_words(p) <= SIZE_MAX / sizeof(uint64_t) ? bt_alloc_locked(qp_words(p) * sizeof(uint64_t)) : NULL;
  if (!sk->s) {
    bt_free(sk);
    return BT_E_NOMEM;
  }
  *out = sk;
  return BT_OK;
}

void bt_secret_key_free(bt_secret_key *sk) {
  if (!sk) return;
  bt_free_locked(sk->s);
  bt_free_secret(sk, sizeof *sk);
}

bt_status bt_keygen_secret(const bt_ckks_params *p, bt_prng *g, bt_secret_key **out) {
  bt_status st = bt_secret_key_alloc(p, out);
  if (st) return st;
  int8_t *s = bt_alloc(p->n);
  if (!s) {
    bt_secret_key_free(*out);
    *out = NULL;
    return BT_E_NOMEM;
  }
  if (p->lit.secret == BT_SECRET_SPARSE)
    st = bt_sample_ternary_hw(g, p->n, (size_t)p->lit.hamming_weight, s);
  else
    bt_sample_ternary(g, p->n, s);
  if (!st) bt_small_to_ntt(p, s, (*out)->s, 0, p->nq + p->np);
  bt_free_secret(s, p->n);
  if (st) {
    bt_secret_key_free(*out);
    *out = NULL;
  }
  return st;
}

/* Gaussian error in NTT form over `count` primes starting at `first`. */
static bt_status sample_error(const bt_ckks_params *p, bt_prng *g, uint64_t *out, int first,
                              int count) {
  int8_t *e = bt_alloc(p->n);
  if (!e) return BT_E_NOMEM;
  bt_sample_gaussian(g, p->n, e);
  bt_small_to_ntt(p, e, out, first, count);
  bt_free_secret(e, p->n);
  return BT_OK;
}

bt_status bt_public_key_alloc(const bt_ckks_params *p, bt_public_key **out) {
  *out = NULL;
  bt_public_key *pk = bt_calloc(1, sizeof *pk);
  if (!pk) return BT_E_NOMEM;
  pk->params = p;
  pk->b = bt_calloc(2 * (size_t)p->nq * p->n, sizeof(uint64_t));
  if (!pk->b) {
    bt_free(pk);
    return BT_E_NOMEM;
  }
  pk->a = pk->b + (size_t)p->nq * p->n;
  *out = pk;
  return BT_OK;
}

void bt_public_key_free(bt_public_key *pk) {
  if (!pk) return;
  bt_free(pk->b);
  bt_free(pk);
}

/* b = -a s + b over `count` limbs from prime `first` (b holds e on entry). */
static void sub_as(const bt_ckks_params *p, const uint64_t *a, const uint64_t *s, uint64_t *b,
                   int first, int count) {
  const size_t n = p->n;
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (int t = 0; t < count; t++) {
    const bt_modulus *m = &p->mod[first + t];
    const uint64_t *at = a + (size_t)t * n, *st = s + (size_t)(first + t) * n;
    uint64_t *bt = b + (size_t)t * n;
    for (size_t j = 0; j < n; j++) bt[j] = bt_mod_sub(bt[j], bt_mod_mul(at[j], st[j], m), m->q);
  }
}

bt_status bt_keygen_public(const bt_secret_key *sk, bt_prng *g, bt_public_key **out) {
  const bt_ckks_params *p = sk->params;
  bt_status st = bt_public_key_alloc(p, out);
  if (st) return st;
  bt_public_key *pk = *out;
  bt_prng_bytes(g, pk->seed, BT_SEED_BYTES);
  bt_expand_uniform(p, pk->seed, pk->a, 0, p->nq);
  if ((st = sample_error(p, g, pk->b, 0, p->nq))) {
    bt_public_key_free(pk);
    *out = NULL;
    return st;
  }
  sub_as(p, pk->a, sk->s, pk->b, 0, p->nq);
  return BT_OK;
}

/* Limbs of each digit of a key serving levels 0..level. */
static size_t key_limbs(const bt_ckks_params *p, int level) { return (size_t)(level + 1 + p->np); }

/* Prime index of row e of such a key: q_0..q_level, then the special primes. */
static int key_prime(const bt_ckks_params *p, int level, int e) { return e <= level ? e : p->nq + (e - level - 1); }

uint64_t bt_switch_key_memory(const bt_ckks_params *p, int level) {
  if (level < 0 || level >= p->nq) return 0;
  return 2 * (uint64_t)bt_digits_at(p, level) * key_limbs(p, level) * p->n * sizeof(uint64_t);
}

bt_status bt_switch_key_alloc_level(const bt_ckks_params *p, uint64_t galois, int level, bt_switch_key **out) {
  *out = NULL;
  if (level < 0 || level >= p->nq)
    return bt_fail(BT_E_ARG, "switching key level %d out of range (0 to %d)", level, p->nq - 1);
  bt_switch_key *k = bt_calloc(1, sizeof *k);
  if (!k) return BT_E_NOMEM;
  const size_t words = key_limbs(p, level) * p->n;
  k->params = p;
  k->galois = galois;
  k->level = level;
  k->digits = bt_digits_at(p, level);
  k->b = bt_calloc((size_t)k->digits, sizeof *k->b);
  k->a = bt_calloc((size_t)k->digits, sizeof *k->a);
  k->seeds = bt_calloc((size_t)k->digits, sizeof *k->seeds);
  if (!k->b || !k->a || !k->seeds) {
    bt_switch_key_free(k);
    return BT_E_NOMEM;
  }
  for (int j = 0; j < k->digits; j++) {
    k->b[j] = bt_alloc(2 * words * sizeof(uint64_t));
    if (!k->b[j]) {
      bt_switch_key_free(k);
      return BT_E_NOMEM;
    }
    k->a[j] = k->b[j] + words;
  }
  *out = k;
  return BT_OK;
}

bt_status bt_switch_key_alloc(const bt_ckks_params *p, uint64_t galois, bt_switch_key **out) {
  return bt_switch_key_alloc_level(p, galois, p->nq - 1, out);
}

void bt_switch_key_expand(bt_switch_key *k) {
  const bt_ckks_params *p = k->params;
  bt_modulus mods[BT_MAX_PRIMES];
  const int rows = (int)key_limbs(p, k->level);
  for (int e = 0; e < rows; e++) mods[e] = p->mod[key_prime(p, k->level, e)];
  for (int j = 0; j < k->digits; j++) {
    /* one stream over the key's primes in order: for a full key, the
     * expansion over every prime of QP */
    bt_prng g;
    bt_prng_init(&g, k->seeds[j]);
    bt_sample_uniform(&g, mods, (size_t)rows, p->n, k->a[j]);
    bt_prng_wipe(&g);
  }
}

void bt_switch_key_free(bt_switch_key *k) {
  if (!k) return;
  if (k->b)
    for (int j = 0; j < k->digits; j++) bt_free(k->b[j]);
  bt_free(k->b);
  bt_free(k->a);
  bt_free(k->seeds);
  bt_free(k);
}

/* Fills the allocated key k (its galois field and level set) with the
 * switching key from s2 to sk, drawing from g.  A level-limited key is the
 * full key's construction on its primes only: the same error polynomial on
 * each, P s2 on the primes of each digit. */
static bt_status gen_switch_into(const bt_secret_key *sk, const uint64_t *s2, bt_prng *g, bt_switch_key *k) {
  const bt_ckks_params *p = sk->params;
  const int lv = k->level, rows = (int)key_limbs(p, lv);
  const size_t n = p->n;
  int8_t *e = bt_alloc(n);
  if (!e) return BT_E_NOMEM;
  for (int j = 0; j < k->digits; j++) {
    bt_prng_bytes(g, k->seeds[j], BT_SEED_BYTES);
    bt_sample_gaussian(g, n, e);
    bt_small_to_rns(e, &p->mod[0], (size_t)lv + 1, n, k->b[j]);
    bt_small_to_rns(e, &p->mod[p->nq], (size_t)p->np, n, k->b[j] + (size_t)(lv + 1) * n);
  }
  bt_free_secret(e, n);
  bt_switch_key_expand(k);
#pragma omp parallel for num_threads(p->threads) schedule(static)
  for (int x = 0; x < k->digits * rows; x++) {
    const int j = x / rows, r = x % rows, i = key_prime(p, lv, r);
    const bt_modulus *m = &p->mod[i];
    uint64_t *b = k->b[j] + (size_t)r * n;
    const uint64_t *a = k->a[j] + (size_t)r * n, *s = sk->s + (size_t)i * n;
    bt_ntt_forward(&p->ntt[i], b);
    /* b = e - a s, plus P s2 on the primes of digit j */
    for (size_t t = 0; t < n; t++) b[t] = bt_mod_sub(b[t], bt_mod_mul(a[t], s[t], m), m->q);
    if (i >= p->dstart[j] && i < p->dstart[j + 1] && i <= lv) {
      const uint64_t pm = p->pmodq[i], pmp = bt_shoup(pm, m->q);
      const uint64_t *s2i = s2 + (size_t)i * n;
      for (size_t t = 0; t < n; t++) b[t] = bt_mod_add(b[t], bt_mul_shoup(s2i[t], pm, pmp, m->q), m->q);
    }
  }
  return BT_OK;
}

/* Key switching from s2 (NTT form over QP) to sk. */
static bt_status gen_switch(const bt_secret_key *sk, const uint64_t *s2, uint64_t galois,
                            bt_prng *g, bt_switch_key **out) {
  bt_status st = bt_switch_key_alloc(sk->params, galois, out); /* full */
  if (!st && (st = gen_switch_into(sk, s2, g, *out))) {
    bt_switch_key_free(*out);
    *out = NULL;
  }
  return st;
}

void bt_encaps_key_free(bt_encaps_key *k) {
  if (!k) return;
  bt_free(k->b);
  bt_free(k);
}

bt_status bt_keygen_encapsulation(const bt_secret_key *sk, int hamming_weight, bt_prng *g,
                                  bt_encaps_key **to_sparse, bt_switch_key **to_dense) {
  const bt_ckks_params *p = sk->params;
  const size_t n = p->n, words = qp_words(p);
  *to_sparse = NULL;
  *to_dense = NULL;
  if (hamming_weight < 1 || (size_t)hamming_weight > n)
    return bt_fail(BT_E_ARG, "encapsulation Hamming weight %d out of range", hamming_weight);
  int8_t *small = bt_alloc(n);
  uint64_t *s2 = bt_alloc(words * sizeof(uint64_t));
  bt_encaps_key *k = bt_calloc(1, sizeof *k);
  bt_status st = (small && s2 && k) ? BT_OK : BT_E_NOMEM;
  if (!st) {
    k->params = p;
    k->hamming_weight = hamming_weight;
    k->b = bt_alloc(4 * n * sizeof(uint64_t));
    if (!k->b) st = BT_E_NOMEM;
  }
  if (!st) st = bt_sample_ternary_hw(g, n, (size_t)hamming_weight, small);
  if (!st) {
    /* s' over all of QP: its q_0 and p_0 limbs make the key to s', all of
     * it is the message of the key back to s */
    bt_small_to_ntt(p, small, s2, 0, p->nq + p->np);
    k->a = k->b + 2 * n;
    const int prime[2] = {0, p->nq}; /* q_0, p_0 */
    bt_prng_bytes(g, k->seed, BT_SEED_BYTES);
    bt_prng ga;
    bt_prng_init(&ga, k->seed);
    for (int t = 0; t < 2; t++) bt_sample_uniform(&ga, &p->mod[prime[t]], 1, n, k->a + (size_t)t * n);
    bt_prng_wipe(&ga);
    bt_sample_gaussian(g, n, small);
    for (int t = 0; t < 2; t++) {
      const int i = prime[t];
      const bt_modulus *m = &p->mod[i];
      uint64_t *b = k->b + (size_t)t * n;
      bt_small_to_rns(small, m, 1, n, b);
      bt_ntt_forward(&p->ntt[i], b);
      const uint64_t *a = k->a + (size_t)t * n, *sp = s2 + (size_t)i * n, *sd = sk->s + (size_t)i * n;
      /* b = -a s' + e (+ p_0 s on the q_0 limb) */
      const uint64_t pm = t == 0 ? bt_mod_reduce64(p->primes[p->nq], m) : 0;
      for (size_t j = 0; j < n; j++) {
        uint64_t v = bt_mod_sub(b[j], bt_mod_mul(a[j], sp[j], m), m->q);
        b[j] = t == 0 ? bt_mod_add(v, bt_mod_mul(pm, sd[j], m), m->q) : v;
      }
    }
    st = gen_switch(sk, s2, 0, g, to_dense);
  }
  bt_free_secret(small, n);
  bt_free_secret(s2, words * sizeof(uint64_t));
  if (st) {
    bt_encaps_key_free(k);
    return st == BT_E_NOMEM ? bt_fail(BT_E_NOMEM, "out of memory generating encapsulation keys") : st;
  }
  *to_sparse = k;
  return BT_OK;
}

/* s2 = the secret the key switches from: s^2 (galois 0) or s under the
 * automorphism X -> X^galois, over every prime of QP. */
static bt_status source_secret(const bt_secret_key *sk, uint64_t galois, uint64_t *s2) {
  const bt_ckks_params *p = sk->params;
  if (galois == 0) {
    for (int i = 0; i < p->nq + p->np; i++)
      for (size_t t = 0; t < p->n; t++) {
        size_t x = (size_t)i * p->n + t;
        s2[x] = bt_mod_mul(sk->s[x], sk->s[x], &p->mod[i]);
      }
    return BT_OK;
  }
  if ((galois & 1) == 0 || galois >= 2 * p->n)
    return bt_fail(BT_E_ARG, "Galois element %llu is not odd in (0, 2N)", (unsigned long long)galois);
  uint32_t *idx = bt_alloc(p->n * sizeof *idx);
  if (!idx) return BT_E_NOMEM;
  bt_ntt_automorphism_index(p->logn, galois, idx);
  for (int i = 0; i < p->nq + p->np; i++) {
    const uint64_t *s = sk->s + (size_t)i * p->n;
    uint64_t *d = s2 + (size_t)i * p->n;
    for (size_t t = 0; t < p->n; t++) d[t] = s[idx[t]];
  }
  bt_free(idx);
  return BT_OK;
}

static bt_status keygen_switch(const bt_secret_key *sk, uint64_t galois, bt_prng *g, bt_switch_key **out) {
  const size_t words = qp_words(sk->params);
  uint64_t *s2 = bt_alloc(words * sizeof(uint64_t));
  if (!s2) return BT_E_NOMEM;
  bt_status st = source_secret(sk, galois, s2);
  if (!st) st = gen_switch(sk, s2, galois, g, out);
  bt_free_secret(s2, words * sizeof(uint64_t));
  return st;
}

bt_status bt_keygen_relin(const bt_secret_key *sk, bt_prng *g, bt_switch_key **out) {
  return keygen_switch(sk, 0, g, out);
}

bt_status bt_keygen_galois(const bt_secret_key *sk, uint64_t galois, bt_prng *g, bt_switch_key **out) {
  if (galois == 0) return bt_fail(BT_E_ARG, "Galois element 0 is not odd in (0, 2N)");
  return keygen_switch(sk, galois, g, out);
}

bt_status bt_keygen_switch_seeded(const bt_secret_key *sk, uint64_t galois, int level,
                                  const uint8_t seed[BT_SEED_BYTES], bt_switch_key **k) {
  const bt_ckks_params *p = sk->params;
  const size_t words = qp_words(p);
  bt_status st = BT_OK;
  if (level < 0 || level >= p->nq)
    return bt_fail(BT_E_ARG, "switching key level %d out of range (0 to %d)", level, p->nq - 1);
  if (*k && (*k)->params != p) return bt_fail(BT_E_PARAMS, "key belongs to other parameters");
  uint64_t *s2 = bt_alloc(words * sizeof(uint64_t));
  if (!s2) return BT_E_NOMEM;
  int fresh = 0;
  if (!(st = source_secret(sk, galois, s2)) && (!*k || (*k)->level != level)) {
    bt_switch_key_free(*k);
    *k = NULL;
    st = bt_switch_key_alloc_level(p, galois, level, k);
    fresh = !st;
  }
  if (!st) {
    bt_prng g;
    bt_prng_init(&g, seed);
    (*k)->galois = galois;
    st = gen_switch_into(sk, s2, &g, *k);
    bt_prng_wipe(&g);
    if (st && fresh) {
      bt_switch_key_free(*k);
      *k = NULL;
    }
  }
  bt_free_secret(s2, words * sizeof(uint64_t));
  return st;
}

uint64_t bt_ckks_galois_rotate(const bt_ckks_params *p, int step) {
  const uint64_t half = p->n / 2, mod = 2 * p->n;
  int64_t s = step % (int64_t)half;
  if (s < 0) s += (int64_t)half;
  uint64_t g = 1;
  for (int64_t i = 0; i < s; i++) g = (g * 5) % mod;
  return g;
}

uint64_t bt_ckks_galois_conjugate(const bt_ckks_params *p) { return 2 * p->n - 1; }

bt_status bt_eval_keys_new(const bt_ckks_params *p, bt_eval_keys **out) {
  *out = bt_calloc(1, sizeof **out);
  if (!*out) return BT_E_NOMEM;
  (*out)->params = p;
  return BT_OK;
}

void bt_eval_keys_free(bt_eval_keys *ek) {
  if (!ek) return;
  bt_switch_key_free(ek->relin);
  for (size_t i = 0; i < ek->ngalois; i++) bt_switch_key_free(ek->galois[i]);
  bt_free(ek->galois);
  bt_free(ek);
}

const bt_switch_key *bt_eval_keys_find(const bt_eval_keys *ek, uint64_t galois) {
  if (!ek) return NULL;
  if (galois == 0) return ek->relin;
  for (size_t i = 0; i < ek->ngalois; i++)
    if (ek->galois[i]->galois == galois) return ek->galois[i];
  return NULL;
}

bt_status bt_eval_keys_add(bt_eval_keys *ek, bt_switch_key *k) {
  if (k->params != ek->params) {
    bt_switch_key_free(k);
    return bt_fail(BT_E_PARAMS, "key belongs to other parameters");
  }
  if (k->galois == 0) {
    bt_switch_key_free(ek->relin);
    ek->relin = k;
    return BT_OK;
  }
  for (size_t i = 0; i < ek->ngalois; i++)
    if (ek->galois[i]->galois == k->galois) {
      bt_switch_key_free(ek->galois[i]);
      ek->galois[i] = k;
      return BT_OK;
    }
  if (ek->ngalois == ek->cap) {
    size_t cap = ek->cap ? 2 * ek->cap : 8;
    bt_switch_key **g = bt_alloc(cap * sizeof *g);
    if (!g) {
      bt_switch_key_free(k);
      return BT_E_NOMEM;
    }
    if (ek->ngalois) memcpy(g, ek->galois, ek->ngalois * sizeof *g);
    bt_free(ek->galois);
    ek->galois = g;
    ek->cap = cap;
  }
  ek->galois[ek->ngalois++] = k;
  return BT_OK;
}

size_t bt_keygen_eval_plan(const bt_ckks_params *p, int relin, const int *steps, const int *levels,
                           size_t nsteps, int conj, uint64_t *galois, int *klevels) {
  size_t m = 0;
  const int top = p->nq - 1;
  if (relin) {
    if (klevels) klevels[m] = top;
    galois[m++] = 0;
  }
  for (size_t i = 0; i <= nsteps; i++) {
    uint64_t gal;
    int lv = top;
    if (i < nsteps) {
      gal = bt_ckks_galois_rotate(p, steps[i]);
      if (levels) lv = levels[i] < 0 ? 0 : levels[i] > top ? top : levels[i];
    } else if (conj) {
      gal = bt_ckks_galois_conjugate(p);
    } else {
      break;
    }
    if (gal == 1) continue;
    size_t j = 0;
    while (j < m && galois[j] != gal) j++;
    if (j == m) {
      galois[m++] = gal;
      if (klevels) klevels[j] = lv;
    } else if (klevels && klevels[j] < lv) {
      klevels[j] = lv;
    }
  }
  return m;
}

bt_status bt_keygen_eval_levels(const bt_secret_key *sk, bt_prng *g, int relin, const int *steps,
                                const int *levels, size_t nsteps, int conj, bt_eval_keys *ek) {
  const bt_ckks_params *p = sk->params;
  uint64_t *plan = bt_alloc((nsteps + 2) * sizeof *plan);
  int *lv = bt_alloc((nsteps + 2) * sizeof *lv);
  if (!plan || !lv) {
    bt_free(plan), bt_free(lv);
    return BT_E_NOMEM;
  }
  size_t m = bt_keygen_eval_plan(p, relin, steps, levels, nsteps, conj, plan, lv), todo = 0;
  for (size_t i = 0; i < m; i++) { /* keys ek already has, at a level as high, are not made again */
    const bt_switch_key *have = bt_eval_keys_find(ek, plan[i]);
    if (!have || have->level < lv[i]) plan[todo] = plan[i], lv[todo++] = lv[i];
  }
  uint8_t(*seeds)[BT_SEED_BYTES] = bt_alloc((todo ? todo : 1) * sizeof *seeds);
  bt_switch_key **keys = bt_calloc(todo ? todo : 1, sizeof *keys);
  bt_status st = seeds && keys ? BT_OK : BT_E_NOMEM;
  if (!st) { /* each key from a seed of its own, drawn in order: the same keys on any number of threads */
    for (size_t i = 0; i < todo; i++) bt_prng_bytes(g, seeds[i], BT_SEED_BYTES);
    bt_status *sts = bt_calloc(todo ? todo : 1, sizeof *sts); /* each key's status: no lock needed */
    if (!sts) st = BT_E_NOMEM;
#pragma omp parallel for num_threads(p->threads) schedule(dynamic)
    for (size_t i = 0; i < (sts ? todo : 0); i++)
      sts[i] = bt_keygen_switch_seeded(sk, plan[i], lv[i], seeds[i], &keys[i]);
    for (size_t i = 0; sts && i < todo && !st; i++) st = sts[i];
    bt_free(sts);
  }
  for (size_t i = 0; i < todo && keys; i++) {
    if (!st) st = bt_eval_keys_add(ek, keys[i]); /* takes the key, also on failure */
    else bt_switch_key_free(keys[i]);
  }
  bt_free(keys);
  bt_free_secret(seeds, seeds ? (todo ? todo : 1) * sizeof *seeds : 0);
  bt_free(plan);
  bt_free(lv);
  return st;
}

bt_status bt_keygen_eval(const bt_secret_key *sk, bt_prng *g, int relin, const int *steps, size_t nsteps, int conj,
                         bt_eval_keys *ek) {
  return bt_keygen_eval_levels(sk, g, relin, steps, NULL, nsteps, conj, ek);
}

/* Object payloads (docs/FORMAT.md, section 3).
 *
 * Each kind is a codec: measure (validate and size), emit, parse, discard;
 * container.c runs them over memory or a file.  All integers are little
 * endian; "poly(a..b)" below is limbs a..b of a polynomial in NTT form, each
 * coefficient packed at its prime's bit width.
 *
 *   PARAMS      literal fields, name, then the generated primes (loading
 *               rebuilds the handle and requires the same primes, which
 *               detects any change in prime generation)
 *   PLAINTEXT   level, logslots, scale, poly(0..level)
 *   CIPHERTEXT  level, degree, logslots, scale, seeded, c0, c1 or its seed, [c2]
 *   SECRET_KEY  the N ternary coefficients, 2 bits each
 *   PUBLIC_KEY  poly b (0..nq-1), seed of a
 *   SWITCH_KEY  galois, digits, per digit poly b_j (all nq+np primes), seed_j
 *   EVAL_KEYS   has_relin, count, then that many SWITCH_KEY payloads
 *
 * Public "a" polynomials are stored as their seed and re-expanded on load
 * exactly as key generation and encryption expanded them
 * (bt_expand_uniform: one ChaCha20 stream per seed, limbs in prime order). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/internal.h"

#define NAME_MAX_BYTES 63

_Static_assert(sizeof(double) == 8, "scales are stored as IEEE-754 binary64");

static double get_scale(bt_io_reader *r) {
  const double d = bt_io_get_f64(r);
  if (!r->st && !(isfinite(d) && d > 0))
    bt_io_reader_fail(r, BT_E_FORMAT, "scale %g is not a finite positive number", d);
  return d;
}

static int scale_ok(double s) { return isfinite(s) && s > 0; }

/* ---- parameters ---- */

static size_t name_len(const bt_ckks_params *p) { return bt_ckks_literal_of(p)->name ? strlen(bt_ckks_literal_of(p)->name) : 0; }

static int printable(char c) { return c >= 0x20 && c <= 0x7e; }

static bt_status params_measure(const void *obj, uint64_t *payload) {
  const bt_ckks_params *p = obj;
  size_t nl = name_len(p);
  if (nl > NAME_MAX_BYTES)
    return bt_fail(BT_E_ARG, "cannot save parameters: the name '%.24s...' exceeds %d bytes",
                   bt_ckks_literal_of(p)->name, NAME_MAX_BYTES);
  for (size_t i = 0; i < nl; i++)
    if (!printable(bt_ckks_literal_of(p)->name[i]))
      return bt_fail(BT_E_ARG, "cannot save parameters: the name has a non-printable byte");
  /* logn, nq, q_bits[nq], dnum, p_bits, log_scale, secret, hamming_weight,
   * insecure, name, nprimes, primes */
  *payload = 4 + 4 + 4 * (uint64_t)NQ(p) + 6 * 4 + 1 + nl + 4 + 8 * (uint64_t)(NQ(p) + NP(p));
  return BT_OK;
}

static bt_status params_emit(bt_io_writer *w, const void *obj) {
  const bt_ckks_params *p = obj;
  const bt_ckks_literal *l = bt_ckks_literal_of(p);
  bt_io_put_u32(w, (uint32_t)l->logn);
  bt_io_put_u32(w, (uint32_t)l->nq);
  for (int i = 0; i < l->nq; i++) bt_io_put_u32(w, (uint32_t)l->q_bits[i]);
  bt_io_put_u32(w, (uint32_t)l->dnum);
  bt_io_put_u32(w, (uint32_t)l->p_bits);
  bt_io_put_u32(w, (uint32_t)l->log_scale);
  bt_io_put_u32(w, (uint32_t)l->secret);
  bt_io_put_u32(w, (uint32_t)l->hamming_weight);
  bt_io_put_u32(w, l->insecure ? 1u : 0u);
  size_t nl = name_len(p);
  uint8_t len8 = (uint8_t)nl;
  bt_io_put_bytes(w, &len8, 1);
  bt_io_put_bytes(w, l->name, nl);
  bt_io_put_u32(w, (uint32_t)(NQ(p) + NP(p)));
  for (int i = 0; i < NQ(p) + NP(p); i++) bt_io_put_u64(w, bt_ckks_modulus(p, i)->q);
  return w->st;
}

static bt_status params_parse(bt_io_reader *r, const bt_ckks_params *unused, unsigned flags,
                              void *out) {
  (void)unused;
  bt_ckks_literal lit;
  memset(&lit, 0, sizeof lit);
  /* loose bounds here only keep the values meaningful as ints and bound the
   * arrays; bt_ckks_params_new applies the real rules */
  lit.logn = bt_io_get_int(r, 0, 62, "log2 N");
  lit.nq = bt_io_get_int(r, 1, BT_MAX_PRIMES, "number of ciphertext primes");
  for (int i = 0; i < lit.nq; i++) lit.q_bits[i] = bt_io_get_int(r, 0, 64, "prime bit size");
  lit.dnum = bt_io_get_int(r, 1, BT_MAX_PRIMES, "dnum");
  lit.p_bits = bt_io_get_int(r, 0, 64, "special prime bit size");
  lit.log_scale = bt_io_get_int(r, 0, 1 << 20, "log2 scale");
  lit.secret = (bt_secret_dist)bt_io_get_int(r, BT_SECRET_TERNARY, BT_SECRET_SPARSE,
                                             "secret distribution");
  lit.hamming_weight = bt_io_get_int(r, 0, 1 << 30, "Hamming weight");
  lit.insecure = bt_io_get_int(r, 0, 1, "insecure flag");
  uint8_t nl = 0;
  bt_io_get_bytes(r, &nl, 1);
  if (!r->st && nl > NAME_MAX_BYTES)
    return bt_io_reader_fail(r, BT_E_FORMAT, "name of %u bytes exceeds %d", nl, NAME_MAX_BYTES);
  char name[NAME_MAX_BYTES + 1] = {0};
  bt_io_get_bytes(r, name, nl);
  for (int i = 0; i < nl && !r->st; i++)
    if (!printable(name[i]))
      return bt_io_reader_fail(r, BT_E_FORMAT, "name byte %d (0x%02x) is not printable ASCII", i,
                               (unsigned)(uint8_t)name[i]);
  int nprimes = bt_io_get_int(r, 1, BT_MAX_PRIMES, "number of primes");
  uint64_t primes[BT_MAX_PRIMES];
  for (int i = 0; i < nprimes; i++) primes[i] = bt_io_get_u64(r);
  if (r->st) return r->st;
  lit.name = nl ? name : NULL; /* bt_ckks_params_new copies it */

  bt_ckks_params **pp = out;
  bt_status st = bt_ckks_params_new(&lit, flags, pp);
  if (st) return r->st = bt_io_rewrap(r->src, st, "stored parameters refused");
  const bt_ckks_params *p = *pp;
  if (nprimes != NQ(p) + NP(p))
    return r->st = bt_io_fail(r->src, BT_E_PARAMS,
                              "stores %d primes, the rebuilt parameters have %d", nprimes,
                              NQ(p) + NP(p));
  for (int i = 0; i < nprimes; i++)
    if (primes[i] != bt_ckks_modulus(p, i)->q)
      return r->st = bt_io_fail(r->src, BT_E_PARAMS,
                                "stored prime %d is %llu but this build generates %llu "
                                "(prime generation changed)",
                                i, (unsigned long long)primes[i],
                                (unsigned long long)bt_ckks_modulus(p, i)->q);
  return BT_OK;
}

static void params_discard(void *out) {
  bt_ckks_params **p = out;
  bt_ckks_params_free(*p);
  *p = NULL;
}

const bt_io_codec bt_io_params_codec = {BT_IO_PARAMS, 0, params_measure, params_emit,
                                         params_parse, params_discard};

/* ---- plaintext ---- */
static bt_status plaintext_measure(const void *obj, uint64_t *payload) {
  const bt_plaintext *pt = obj;
  const bt_ckks_params *p = pt->params;
  if (pt->level < 0 || pt->level >= NQ(p) || pt->logslots < 0 || pt->logslots >= bt_ckks_logn(p) ||
      !scale_ok(pt->scale))
    return bt_fail(BT_E_ARG, "cannot save plaintext: level %d, log2 slots %d, scale %g out of range",
                   pt->level, pt->logslots, pt->scale);
  *payload = 4 + 4 + 8 + bt_io_poly_bytes(p, 0, pt->level + 1);
  return BT_OK;
}

static bt_status plaintext_emit(bt_io_writer *w, const void *obj) {
  const bt_plaintext *pt = obj;
  bt_io_put_u32(w, (uint32_t)pt->level);
  bt_io_put_u32(w, (uint32_t)pt->logslots);
  bt_io_put_f64(w, pt->scale);
  bt_io_put_poly(w, pt->params, pt->c, 0, pt->level + 1, "plaintext");
  return w->st;
}

static bt_status plaintext_parse(bt_io_reader *r, const bt_ckks_params *p, unsigned flags,
                                 void *out) {
  (void)flags;
  int level = bt_io_get_int(r, 0, NQ(p) - 1, "level");
  int logslots = bt_io_get_int(r, 0, bt_ckks_logn(p) - 1, "log2 slots");
  double scale = get_scale(r);
  if (bt_io_expect_remaining(r, bt_io_poly_bytes(p, 0, level + 1), "the plaintext")) return r->st;
  bt_plaintext **pt = out;
  bt_status st = bt_plaintext_new(p, pt);
  if (st) return st;
  (*pt)->level = level;
  (*pt)->logslots = logslots;
  (*pt)->scale = scale;
  bt_io_get_poly(r, p, (*pt)->c, 0, level + 1, "plaintext");
  return r->st;
}

static void plaintext_discard(void *out) {
  bt_plaintext **pt = out;
  bt_plaintext_free(*pt);
  *pt = NULL;
}

static const bt_io_codec plaintext_codec = {BT_IO_PLAINTEXT, 0, plaintext_measure,
                                            plaintext_emit, plaintext_parse, plaintext_discard};

/* ---- ciphertext ---- */

/* A ciphertext with the decision, taken once, whether c1 travels as its seed. */
typedef bt_io_ct_view ct_view;

/* The seeded flag is trusted only when c1 really is the seed's expansion:
 * an operation that forgot to clear the flag must cost size, not
 * correctness.  Returns 1, 0, or a negative status. */
static int c1_is_seed_expansion(const bt_ciphertext *ct) {
  if (!ct->seeded || ct->degree != 1) return 0;
  const bt_ckks_params *p = ct->params;
  const size_t words = (size_t)(ct->level + 1) * N_OF(p);
  uint64_t *a = bt_alloc(words * sizeof *a);
  if (!a) return BT_E_NOMEM;
  bt_ckks_expand_uniform(p, ct->seed, a, 0, ct->level + 1);
  int same = memcmp(a, ct->c[1], words * sizeof *a) == 0;
  bt_free(a);
  return same;
}

static bt_status check_ciphertext(const bt_ciphertext *ct) {
  const bt_ckks_params *p = ct->params;
  if (ct->level < 0 || ct->level >= NQ(p) || ct->degree < 1 || ct->degree > 2 ||
      ct->logslots < 0 || ct->logslots >= bt_ckks_logn(p) || !scale_ok(ct->scale))
    return bt_fail(BT_E_ARG,
                   "cannot save ciphertext: level %d, degree %d, log2 slots %d, scale %g out of range",
                   ct->level, ct->degree, ct->logslots, ct->scale);
  return BT_OK;
}

static bt_status ciphertext_measure(const void *obj, uint64_t *payload) {
  const ct_view *v = obj;
  const bt_ciphertext *ct = v->ct;
  const bt_ckks_params *p = ct->params;
  bt_status st = check_ciphertext(ct);
  if (st) return st;
  const uint64_t poly = bt_io_poly_bytes(p, 0, ct->level + 1);
  /* level, degree, logslots, seeded: u32; scale: u64 */
  *payload = 4 * 4 + 8 + (uint64_t)(ct->degree + 1) * poly;
  if (v->seeded) *payload = *payload - poly + BT_SEED_BYTES;
  return BT_OK;
}

static bt_status ciphertext_emit(bt_io_writer *w, const void *obj) {
  const ct_view *v = obj;
  const bt_ciphertext *ct = v->ct;
  const bt_ckks_params *p = ct->params;
  const int limbs = ct->level + 1;
  bt_io_put_u32(w, (uint32_t)ct->level);
  bt_io_put_u32(w, (uint32_t)ct->degree);
  bt_io_put_u32(w, (uint32_t)ct->logslots);
  bt_io_put_f64(w, ct->scale);
  bt_io_put_u32(w, v->seeded ? 1u : 0u);
  bt_io_put_poly(w, p, ct->c[0], 0, limbs, "ciphertext c0");
  if (v->seeded) bt_io_put_bytes(w, ct->seed, BT_SEED_BYTES);
  else bt_io_put_poly(w, p, ct->c[1], 0, limbs, "ciphertext c1");
  if (ct->degree == 2) bt_io_put_poly(w, p, ct->c[2], 0, limbs, "ciphertext c2");
  return w->st;
}

static bt_status ciphertext_parse(bt_io_reader *r, const bt_ckks_params *p, unsigned flags,
                                  void *out) {
  (void)flags;
  int level = bt_io_get_int(r, 0, NQ(p) - 1, "level");
  int degree = bt_io_get_int(r, 1, 2, "degree");
  int logslots = bt_io_get_int(r, 0, bt_ckks_logn(p) - 1, "log2 slots");
  double scale = get_scale(r);
  int seeded = bt_io_get_int(r, 0, 1, "seeded flag");
  if (!r->st && seeded && degree != 1)
    return bt_io_reader_fail(r, BT_E_FORMAT, "a seeded ciphertext must have degree 1, not %d",
                             degree);
  const int limbs = level + 1;
  const uint64_t poly = bt_io_poly_bytes(p, 0, limbs);
  const uint64_t want = seeded ? poly + BT_SEED_BYTES : (uint64_t)(degree + 1) * poly;
  if (bt_io_expect_remaining(r, want, "the ciphertext")) return r->st;
  bt_ciphertext **ct = out;
  bt_status st = bt_ciphertext_new(p, ct);
  if (st) return st;
  bt_ciphertext *c = *ct;
  c->level = level;
  c->degree = degree;
  c->logslots = logslots;
  c->scale = scale;
  bt_io_get_poly(r, p, c->c[0], 0, limbs, "ciphertext c0");
  if (seeded) {
    bt_io_get_bytes(r, c->seed, BT_SEED_BYTES);
    if (!r->st) bt_ckks_expand_uniform(p, c->seed, c->c[1], 0, limbs);
    c->seeded = 1;
  } else {
    bt_io_get_poly(r, p, c->c[1], 0, limbs, "ciphertext c1");
  }
  if (degree == 2) bt_io_get_poly(r, p, c->c[2], 0, limbs, "ciphertext c2");
  return r->st;
}

static void ciphertext_discard(void *out) {
  bt_ciphertext **ct = out;
  bt_ciphertext_free(*ct);
  *ct = NULL;
}

const bt_io_codec bt_io_ciphertext_codec = {BT_IO_CIPHERTEXT, 0, ciphertext_measure,
                                             ciphertext_emit, ciphertext_parse,
                                             ciphertext_discard};

bt_status bt_io_ct_view_of(const bt_ciphertext *ct, ct_view *v) {
  bt_status st = check_ciphertext(ct); /* before the level sizes anything */
  if (st) return st;
  int s = c1_is_seed_expansion(ct);
  if (s < 0) return (bt_status)s;
  v->ct = ct;
  v->seeded = s;
  return BT_OK;
}

bt_status bt_io_ciphertext_bytes(const bt_ciphertext *ct, uint64_t *n) {
  ct_view v;
  bt_status st = bt_io_ct_view_of(ct, &v);
  return st ? st : bt_io_object_bytes(&bt_io_ciphertext_codec, &v, n);
}

void bt_io_put_ciphertext(bt_io_writer *w, const bt_ciphertext *ct) {
  ct_view v;
  if (w->st) return;
  bt_status st = bt_io_ct_view_of(ct, &v);
  if (st) w->st = st;
  else bt_io_put_object(w, &bt_io_ciphertext_codec, &v);
}

bt_ciphertext *bt_io_get_ciphertext(bt_io_reader *r, const bt_ckks_params *p, const char *what) {
  bt_ciphertext *ct = NULL;
  if (bt_io_get_object(r, &bt_io_ciphertext_codec, p, 0, &ct, what)) {
    bt_ciphertext_free(ct);
    return NULL;
  }
  return ct;
}

/* ---- secret key ----
 * Only the ternary coefficients travel: code 0 -> 0, 1 -> 1, 2 -> -1
 * (3 is invalid), four per byte, coefficient j in bits 2(j%4)..2(j%4)+1 of
 * byte j/4.  The mapping runs without branches on the secret. */
static size_t sk_bytes(const bt_ckks_params *p) { return (N_OF(p) + 3) / 4; }

/* 1 if a == b, else 0, for values below 2^63, without a branch. */
static uint64_t ct_eq(uint64_t a, uint64_t b) { return ((a ^ b) - 1) >> 63; }

static bt_status secret_key_measure(const void *obj, uint64_t *payload) {
  const bt_secret_key *sk = obj;
  *payload = sk_bytes(sk->params);
  return BT_OK;
}

static bt_status secret_key_emit(bt_io_writer *w, const void *obj) {
  const bt_secret_key *sk = obj;
  const bt_ckks_params *p = sk->params;
  const size_t n = N_OF(p);
  const uint64_t q = bt_ckks_modulus(p, 0)->q;
  uint8_t *out = bt_io_reserve(w, sk_bytes(p));
  uint64_t *s = bt_alloc(n * sizeof *s);
  if (!out || !s) {
    bt_free(s);
    return w->st ? w->st : BT_E_NOMEM;
  }
  memcpy(s, sk->s, n * sizeof *s);
  bt_ntt_inverse(bt_ckks_ntt_table(p, 0), s);
  uint64_t bad = 0;
  memset(out, 0, sk_bytes(p));
  for (size_t j = 0; j < n; j++) {
    uint64_t one = ct_eq(s[j], 1), neg = ct_eq(s[j], q - 1), zero = ct_eq(s[j], 0);
    bad |= 1 ^ (one | neg | zero);
    out[j / 4] |= (uint8_t)((one | neg << 1) << (2 * (j % 4)));
  }
  bt_free_secret(s, n * sizeof *s);
  if (bad)
    return w->st = bt_io_fail(w->src, BT_E_KEY,
                              "cannot save the secret key: its coefficients are not ternary "
                              "(corrupted key)");
  return w->st;
}

static bt_status secret_key_parse(bt_io_reader *r, const bt_ckks_params *p, unsigned flags,
                                  void *out) {
  (void)flags;
  const size_t n = N_OF(p);
  if (bt_io_expect_remaining(r, sk_bytes(p), "the secret key")) return r->st;
  const uint8_t *in = bt_io_take(r, sk_bytes(p));
  if (!in) return r->st;
  int8_t *s = bt_alloc(n);
  if (!s) return BT_E_NOMEM;
  unsigned bad = 0;
  size_t weight = 0;
  for (size_t j = 0; j < n; j++) {
    unsigned code = (unsigned)(in[j / 4] >> (2 * (j % 4))) & 3;
    s[j] = (int8_t)((int)(code & 1) - (int)(code >> 1));
    bad |= (code + 1) >> 2;                  /* code == 3 */
    weight += (code & 1) ^ (code >> 1);      /* code 1 or 2 */
  }
  bt_status st = BT_OK;
  if (bad) {
    /* corrupted input: locating the bad code may branch freely */
    size_t j = 0;
    while (((in[j / 4] >> (2 * (j % 4))) & 3) != 3) j++;
    st = bt_io_reader_fail(r, BT_E_FORMAT,
                           "secret-key coefficient %zu has the invalid 2-bit code 3", j);
  } else if (bt_ckks_literal_of(p)->secret == BT_SECRET_SPARSE && weight != (size_t)bt_ckks_literal_of(p)->hamming_weight) {
    st = bt_io_reader_fail(r, BT_E_FORMAT,
                           "secret key has Hamming weight %zu, the parameters require %d", weight,
                           bt_ckks_literal_of(p)->hamming_weight);
  }
  bt_secret_key **sk = out;
  if (!st) st = bt_secret_key_alloc(p, sk);
  if (!st) bt_ckks_small_to_ntt(p, s, (*sk)->s, 0, NQ(p) + NP(p));
  bt_free_secret(s, n);
  return st;
}

static void secret_key_discard(void *out) {
  bt_secret_key **sk = out;
  bt_secret_key_free(*sk);
  *sk = NULL;
}

const bt_io_codec bt_io_secret_key_codec = {BT_IO_SECRET_KEY, 1, secret_key_measure,
                                             secret_key_emit, secret_key_parse,
                                             secret_key_discard};

/* ---- public key ---- */
static bt_status public_key_measure(const void *obj, uint64_t *payload) {
  const bt_public_key *pk = obj;
  *payload = bt_io_poly_bytes(pk->params, 0, NQ(pk->params)) + BT_SEED_BYTES;
  return BT_OK;
}

static bt_status public_key_emit(bt_io_writer *w, const void *obj) {
  const bt_public_key *pk = obj;
  bt_io_put_poly(w, pk->params, pk->b, 0, NQ(pk->params), "public key b");
  bt_io_put_bytes(w, pk->seed, BT_SEED_BYTES);
  return w->st;
}

static bt_status public_key_parse(bt_io_reader *r, const bt_ckks_params *p, unsigned flags,
                                  void *out) {
  (void)flags;
  if (bt_io_expect_remaining(r, bt_io_poly_bytes(p, 0, NQ(p)) + BT_SEED_BYTES, "the public key"))
    return r->st;
  bt_public_key **pk = out;
  bt_status st = bt_public_key_alloc(p, pk);
  if (st) return st;
  bt_io_get_poly(r, p, (*pk)->b, 0, NQ(p), "public key b");
  bt_io_get_bytes(r, (*pk)->seed, BT_SEED_BYTES);
  if (!r->st) bt_ckks_expand_uniform(p, (*pk)->seed, (*pk)->a, 0, NQ(p));
  return r->st;
}

static void public_key_discard(void *out) {
  bt_public_key **pk = out;
  bt_public_key_free(*pk);
  *pk = NULL;
}

static const bt_io_codec public_key_codec = {BT_IO_PUBLIC_KEY, 0, public_key_measure,
                                             public_key_emit, public_key_parse,
                                             public_key_discard};

/* ---- switching keys ---- */
/* Payload bytes of a switching key serving levels 0..level. */
static uint64_t switch_key_bytes(const bt_ckks_params *p, int level) {
  const uint64_t poly = bt_io_poly_bytes(p, 0, level + 1) + bt_io_poly_bytes(p, NQ(p), NP(p));
  return 8 + 4 + (uint64_t)bt_ckks_digits_at(p, level) * (poly + BT_SEED_BYTES);
}

uint64_t bt_io_switch_key_bytes(const bt_ckks_params *p, int level) {
  return level < 0 || level >= NQ(p) ? 0 : switch_key_bytes(p, level);
}

/* 0 (relinearisation) or an odd element of (0, 2N). */
static int galois_ok(const bt_ckks_params *p, uint64_t g) {
  return g == 0 || ((g & 1) && g < 2 * (uint64_t)N_OF(p));
}

static bt_status check_switch_key(const bt_switch_key *k, const bt_ckks_params *p) {
  if (k->params != p)
    return bt_fail(BT_E_PARAMS, "cannot save: a switching key has other parameters");
  if (k->level < 0 || k->level >= NQ(p) || k->digits != bt_ckks_digits_at(p, k->level) || !galois_ok(p, k->galois))
    return bt_fail(BT_E_ARG, "cannot save switching key: level %d, %d digits, Galois element %llu", k->level,
                   k->digits, (unsigned long long)k->galois);
  return BT_OK;
}

static bt_status switch_key_measure(const void *obj, uint64_t *payload) {
  const bt_switch_key *k = obj;
  bt_status st = check_switch_key(k, k->params);
  if (st) return st;
  *payload = switch_key_bytes(k->params, k->level);
  return BT_OK;
}

/* The shape word: digits in the low 16 bits, the number of ciphertext
 * primes the key holds in the high 16 (0 for all of them: a full key reads
 * as before level-limited keys existed). */
static bt_status switch_key_emit(bt_io_writer *w, const void *obj) {
  const bt_switch_key *k = obj;
  const bt_ckks_params *p = k->params;
  const int rows = k->level + 1;
  bt_io_put_u64(w, k->galois);
  bt_io_put_u32(w, (uint32_t)k->digits | (rows == NQ(p) ? 0u : (uint32_t)rows << 16));
  for (int j = 0; j < k->digits && !w->st; j++) {
    bt_io_put_poly(w, p, k->b[j], 0, rows, "switching key b");
    bt_io_put_poly(w, p, k->b[j] + (size_t)rows * N_OF(p), NQ(p), NP(p), "switching key b");
    bt_io_put_bytes(w, k->seeds[j], BT_SEED_BYTES);
  }
  return w->st;
}

/* One switching key from the reader into *out (NULL on failure), after
 * checking that the payload left holds it. */
static bt_status read_switch_key(bt_io_reader *r, const bt_ckks_params *p, bt_switch_key **out) {
  *out = NULL;
  uint64_t galois = bt_io_get_u64(r);
  if (!r->st && !galois_ok(p, galois))
    return bt_io_reader_fail(r, BT_E_FORMAT,
                             "Galois element %llu is neither 0 nor odd below 2N = %llu",
                             (unsigned long long)galois, (unsigned long long)(2 * N_OF(p)));
  const uint32_t shape = bt_io_get_u32(r), digits = shape & 0xffffu, rows = shape >> 16;
  if (r->st) return r->st;
  if (rows >= (uint32_t)NQ(p))
    return bt_io_reader_fail(r, BT_E_FORMAT, "switching key over %lu ciphertext primes: 1 to %d, or 0 for all",
                             (unsigned long)rows, NQ(p) - 1);
  const int level = rows ? (int)rows - 1 : NQ(p) - 1;
  if (digits != (uint32_t)bt_ckks_digits_at(p, level))
    return bt_io_reader_fail(r, BT_E_FORMAT, "switching key has %lu digits, %d at its level %d", (unsigned long)digits,
                             bt_ckks_digits_at(p, level), level);
  /* the 12 bytes just read are part of the key's size */
  if (bt_io_remaining(r) < switch_key_bytes(p, level) - 12)
    return bt_io_reader_fail(r, BT_E_FORMAT, "truncated switching key: %llu of %llu bytes",
                             (unsigned long long)bt_io_remaining(r) + 12,
                             (unsigned long long)switch_key_bytes(p, level));
  bt_status st = bt_switch_key_alloc_level(p, galois, level, out);
  if (st) return st;
  bt_switch_key *k = *out;
  for (int j = 0; j < k->digits && !r->st; j++) {
    bt_io_get_poly(r, p, k->b[j], 0, level + 1, "switching key b");
    bt_io_get_poly(r, p, k->b[j] + (size_t)(level + 1) * N_OF(p), NQ(p), NP(p), "switching key b");
    bt_io_get_bytes(r, k->seeds[j], BT_SEED_BYTES);
  }
  if (!r->st) bt_switch_key_expand(k); /* a_j as keygen expanded it */
  if (r->st) {
    bt_switch_key_free(k);
    *out = NULL;
  }
  return r->st;
}

static void switch_key_discard(void *out) {
  bt_switch_key **k = out;
  bt_switch_key_free(*k);
  *k = NULL;
}

static bt_status switch_key_parse(bt_io_reader *r, const bt_ckks_params *p, unsigned flags,
                                  void *out) {
  (void)flags;
  bt_status st = read_switch_key(r, p, out);
  if (!st && bt_io_remaining(r) != 0) {
    st = bt_io_reader_fail(r, BT_E_FORMAT, "%llu unexpected bytes after the switching key",
                           (unsigned long long)bt_io_remaining(r));
    switch_key_discard(out);
  }
  return st;
}

const bt_io_codec bt_io_switch_key_codec = {BT_IO_SWITCH_KEY, 0, switch_key_measure,
                                             switch_key_emit, switch_key_parse,
                                             switch_key_discard};

/* ---- evaluation keys ---- */
static bt_status eval_keys_measure(const void *obj, uint64_t *payload) {
  const bt_eval_keys *ek = obj;
  const bt_ckks_params *p = ek->params;
  bt_status st;
  if (ek->relin && (st = check_switch_key(ek->relin, p))) return st;
  if (ek->ngalois > UINT32_MAX) return bt_fail(BT_E_ARG, "too many Galois keys to save");
  for (size_t i = 0; i < ek->ngalois; i++)
    if ((st = check_switch_key(ek->galois[i], p))) return st;
  *payload = 4 + 4 + (ek->relin ? switch_key_bytes(p, ek->relin->level) : 0);
  for (size_t i = 0; i < ek->ngalois; i++) *payload += switch_key_bytes(p, ek->galois[i]->level);
  return BT_OK;
}

static bt_status eval_keys_emit(bt_io_writer *w, const void *obj) {
  const bt_eval_keys *ek = obj;
  bt_io_put_u32(w, ek->relin ? 1u : 0u);
  bt_io_put_u32(w, (uint32_t)ek->ngalois);
  /* each key goes out through the writer's stage as it is packed: on a file
   * nothing larger than one limb is ever buffered */
  if (ek->relin) switch_key_emit(w, ek->relin);
  for (size_t i = 0; i < ek->ngalois && !w->st; i++) switch_key_emit(w, ek->galois[i]);
  return w->st;
}

static bt_status eval_keys_parse(bt_io_reader *r, const bt_ckks_params *p, unsigned flags,
                                 void *out) {
  (void)flags;
  int has_relin = bt_io_get_int(r, 0, 1, "relinearisation-key flag");
  uint64_t count = bt_io_get_u32(r);
  if (r->st) return r->st;
  /* the count is checked against the payload size before anything is
   * allocated (divided, not multiplied, so no count can overflow): no key
   * is smaller than one at level 0; each key's own size is checked as it
   * is read, and the payload must end with the last */
  const uint64_t least = switch_key_bytes(p, 0), left = bt_io_remaining(r);
  if (left / least < (uint64_t)has_relin + count)
    return bt_io_reader_fail(r, BT_E_FORMAT,
                             "%llu payload bytes cannot hold %d + %llu switching keys of at least %llu bytes",
                             (unsigned long long)left, has_relin, (unsigned long long)count,
                             (unsigned long long)least);
  bt_eval_keys **ek = out;
  bt_status st = bt_eval_keys_new(p, ek);
  if (st) return st;
  for (uint64_t i = 0; i < (uint64_t)has_relin + count; i++) {
    bt_switch_key *k;
    if ((st = read_switch_key(r, p, &k))) return st;
    const int want_relin = has_relin && i == 0;
    if (want_relin && k->galois != 0)
      st = bt_io_reader_fail(r, BT_E_FORMAT, "the relinearisation key has Galois element %llu",
                             (unsigned long long)k->galois);
    else if (!want_relin && k->galois == 0)
      st = bt_io_reader_fail(r, BT_E_FORMAT, "Galois key %llu has Galois element 0",
                             (unsigned long long)(i - (uint64_t)has_relin));
    else if (!want_relin && bt_eval_keys_find(*ek, k->galois))
      st = bt_io_reader_fail(r, BT_E_FORMAT, "two keys for Galois element %llu",
                             (unsigned long long)k->galois);
    if (st) {
      bt_switch_key_free(k);
      return st;
    }
    if ((st = bt_eval_keys_add(*ek, k))) return st; /* takes k, also on failure */
  }
  if (bt_io_remaining(r) != 0)
    return bt_io_reader_fail(r, BT_E_FORMAT, "%llu unexpected bytes after the last switching key",
                             (unsigned long long)bt_io_remaining(r));
  return BT_OK;
}

static void eval_keys_discard(void *out) {
  bt_eval_keys **ek = out;
  bt_eval_keys_free(*ek);
  *ek = NULL;
}

const bt_io_codec bt_io_eval_keys_codec = {BT_IO_EVAL_KEYS, 0, eval_keys_measure,
                                            eval_keys_emit, eval_keys_parse, eval_keys_discard};

/* ---- public entry points ---- */
bt_status bt_io_write_params(const bt_ckks_params *p, uint8_t **buf, size_t *len) {
  return bt_io_encode(&bt_io_params_codec, p, NULL, buf, len);
}
bt_status bt_io_read_params(const uint8_t *buf, size_t len, unsigned flags, bt_ckks_params **out) {
  *out = NULL;
  return bt_io_decode(&bt_io_params_codec, buf, len, NULL, flags, out);
}
bt_status bt_io_save_params(const char *path, const bt_ckks_params *p) {
  return bt_io_save(&bt_io_params_codec, path, p, NULL);
}
bt_status bt_io_load_params(const char *path, unsigned flags, bt_ckks_params **out) {
  *out = NULL;
  return bt_io_load(&bt_io_params_codec, path, NULL, flags, out);
}

bt_status bt_io_write_plaintext(const bt_plaintext *pt, uint8_t **buf, size_t *len) {
  return bt_io_encode(&plaintext_codec, pt, bt_ckks_params_hash(pt->params), buf, len);
}
bt_status bt_io_read_plaintext(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                               bt_plaintext **out) {
  *out = NULL;
  return bt_io_decode(&plaintext_codec, buf, len, p, 0, out);
}
bt_status bt_io_save_plaintext(const char *path, const bt_plaintext *pt) {
  return bt_io_save(&plaintext_codec, path, pt, bt_ckks_params_hash(pt->params));
}
bt_status bt_io_load_plaintext(const char *path, const bt_ckks_params *p, bt_plaintext **out) {
  *out = NULL;
  return bt_io_load(&plaintext_codec, path, p, 0, out);
}

bt_status bt_io_write_ciphertext(const bt_ciphertext *ct, uint8_t **buf, size_t *len) {
  ct_view v;
  *buf = NULL;
  *len = 0;
  bt_status st = bt_io_ct_view_of(ct, &v);
  if (st) return st;
  return bt_io_encode(&bt_io_ciphertext_codec, &v, bt_ckks_params_hash(ct->params), buf, len);
}
bt_status bt_io_read_ciphertext(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                                bt_ciphertext **out) {
  *out = NULL;
  return bt_io_decode(&bt_io_ciphertext_codec, buf, len, p, 0, out);
}
bt_status bt_io_save_ciphertext(const char *path, const bt_ciphertext *ct) {
  ct_view v;
  bt_status st = bt_io_ct_view_of(ct, &v);
  if (st) return bt_io_rewrap(path, st, NULL);
  return bt_io_save(&bt_io_ciphertext_codec, path, &v, bt_ckks_params_hash(ct->params));
}
bt_status bt_io_load_ciphertext(const char *path, const bt_ckks_params *p, bt_ciphertext **out) {
  *out = NULL;
  return bt_io_load(&bt_io_ciphertext_codec, path, p, 0, out);
}

bt_status bt_io_write_secret_key(const bt_secret_key *sk, uint8_t **buf, size_t *len) {
  return bt_io_encode(&bt_io_secret_key_codec, sk, bt_ckks_params_hash(sk->params), buf, len);
}
bt_status bt_io_read_secret_key(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                                bt_secret_key **out) {
  *out = NULL;
  return bt_io_decode(&bt_io_secret_key_codec, buf, len, p, 0, out);
}
bt_status bt_io_save_secret_key(const char *path, const bt_secret_key *sk) {
  return bt_io_save(&bt_io_secret_key_codec, path, sk, bt_ckks_params_hash(sk->params));
}
bt_status bt_io_load_secret_key(const char *path, const bt_ckks_params *p, bt_secret_key **out) {
  *out = NULL;
  return bt_io_load(&bt_io_secret_key_codec, path, p, 0, out);
}

bt_status bt_io_write_public_key(const bt_public_key *pk, uint8_t **buf, size_t *len) {
  return bt_io_encode(&public_key_codec, pk, bt_ckks_params_hash(pk->params), buf, len);
}
bt_status bt_io_read_public_key(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                                bt_public_key **out) {
  *out = NULL;
  return bt_io_decode(&public_key_codec, buf, len, p, 0, out);
}
bt_status bt_io_save_public_key(const char *path, const bt_public_key *pk) {
  return bt_io_save(&public_key_codec, path, pk, bt_ckks_params_hash(pk->params));
}
bt_status bt_io_load_public_key(const char *path, const bt_ckks_params *p, bt_public_key **out) {
  *out = NULL;
  return bt_io_load(&public_key_codec, path, p, 0, out);
}

bt_status bt_io_write_switch_key(const bt_switch_key *k, uint8_t **buf, size_t *len) {
  return bt_io_encode(&bt_io_switch_key_codec, k, bt_ckks_params_hash(k->params), buf, len);
}
bt_status bt_io_read_switch_key(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                                bt_switch_key **out) {
  *out = NULL;
  return bt_io_decode(&bt_io_switch_key_codec, buf, len, p, 0, out);
}
bt_status bt_io_save_switch_key(const char *path, const bt_switch_key *k) {
  return bt_io_save(&bt_io_switch_key_codec, path, k, bt_ckks_params_hash(k->params));
}
bt_status bt_io_load_switch_key(const char *path, const bt_ckks_params *p, bt_switch_key **out) {
  *out = NULL;
  return bt_io_load(&bt_io_switch_key_codec, path, p, 0, out);
}

bt_status bt_io_write_eval_keys(const bt_eval_keys *ek, uint8_t **buf, size_t *len) {
  return bt_io_encode(&bt_io_eval_keys_codec, ek, bt_ckks_params_hash(ek->params), buf, len);
}
bt_status bt_io_read_eval_keys(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                               bt_eval_keys **out) {
  *out = NULL;
  return bt_io_decode(&bt_io_eval_keys_codec, buf, len, p, 0, out);
}
bt_status bt_io_save_eval_keys(const char *path, const bt_eval_keys *ek) {
  return bt_io_save(&bt_io_eval_keys_codec, path, ek, bt_ckks_params_hash(ek->params));
}
bt_status bt_io_load_eval_keys(const char *path, const bt_ckks_params *p, bt_eval_keys **out) {
  *out = NULL;
  return bt_io_load(&bt_io_eval_keys_codec, path, p, 0, out);
}

/* ---- encapsulation key (sparse-secret bootstrapping; embedded in the
 * evaluation bundle, no container kind of its own) ----
 * hamming weight u32 | seed | poly b on q_0 | poly b on p_0 */
static bt_status encaps_measure(const void *obj, uint64_t *payload) {
  const bt_encaps_key *k = obj;
  const bt_ckks_params *p = k->params;
  *payload = 4 + BT_SEED_BYTES + bt_io_poly_bytes(p, 0, 1) + bt_io_poly_bytes(p, NQ(p), 1);
  return BT_OK;
}

static bt_status encaps_emit(bt_io_writer *w, const void *obj) {
  const bt_encaps_key *k = obj;
  const bt_ckks_params *p = k->params;
  bt_io_put_u32(w, (uint32_t)k->hamming_weight);
  bt_io_put_bytes(w, k->seed, BT_SEED_BYTES);
  bt_io_put_poly(w, p, k->b, 0, 1, "encapsulation key b");
  bt_io_put_poly(w, p, k->b + N_OF(p), NQ(p), 1, "encapsulation key b");
  return w->st;
}

static bt_status encaps_parse(bt_io_reader *r, const bt_ckks_params *p, unsigned flags, void *out) {
  (void)flags;
  bt_encaps_key **kk = out;
  const int hw = bt_io_get_int(r, 1, (int)N_OF(p), "encapsulation Hamming weight");
  if (r->st) return r->st;
  bt_encaps_key *k = bt_calloc(1, sizeof *k);
  if (!k || !(k->b = bt_alloc(4 * N_OF(p) * sizeof *k->b))) {
    bt_free(k);
    return BT_E_NOMEM;
  }
  *kk = k;
  k->params = p;
  k->hamming_weight = hw;
  k->a = k->b + 2 * N_OF(p);
  bt_io_get_bytes(r, k->seed, BT_SEED_BYTES);
  bt_io_get_poly(r, p, k->b, 0, 1, "encapsulation key b");
  bt_io_get_poly(r, p, k->b + N_OF(p), NQ(p), 1, "encapsulation key b");
  if (r->st) return r->st;
  /* a, as bt_keygen_encapsulation expands it: q_0 then p_0 from one stream */
  bt_prng ga;
  bt_prng_init(&ga, k->seed);
  bt_sample_uniform(&ga, bt_ckks_modulus(p, 0), 1, N_OF(p), k->a);
  bt_sample_uniform(&ga, bt_ckks_modulus(p, NQ(p)), 1, N_OF(p), k->a + N_OF(p));
  bt_prng_wipe(&ga);
  return BT_OK;
}

static void encaps_discard(void *out) {
  bt_encaps_key **k = out;
  bt_encaps_key_free(*k);
  *k = NULL;
}

const bt_io_codec bt_io_encaps_key_codec = {0, 0, encaps_measure, encaps_emit, encaps_parse, encaps_discard};


/* The client: the secret key, the plaintext data, and everything that
 * crosses from plaintext to ciphertext and back (include/blindtuner/
 * pipeline.h).  Decrypted buffers are wiped before they are freed. */
#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pipeline/internal.h"

struct bt_client {
  bt_ckks_params *p;
  bt_secret_bundle sb;
  bt_hemat_layout L;
  int seeded; /* BT_INSECURE_TEST_SEED in force (INSECURE parameters only) */
  uint8_t seed[BT_SEED_BYTES];
  int have_flood; /* flood_key derived from the secret key */
  uint8_t flood_key[crypto_generichash_KEYBYTES];
};

/* The environment's test seed, for INSECURE parameters only. */
static void test_seed(bt_client *c) {
  const char *e = getenv("BT_INSECURE_TEST_SEED");
  if (!e || !*e) return;
  if (!bt_ckks_literal_of(c->p)->insecure) {
    fprintf(stderr, "blindtuner: BT_INSECURE_TEST_SEED ignored: the parameters are not INSECURE\n");
    return;
  }
  crypto_generichash(c->seed, sizeof c->seed, (const unsigned char *)e, strlen(e), NULL, 0);
  c->seeded = 1;
}

/* A stream for one purpose: fresh from the OS, or derived from the test seed. */
static void client_prng(const bt_client *c, const char *purpose, uint64_t n, bt_prng *g) {
  if (!c->seeded) {
    bt_prng_init_random(g);
    return;
  }
  uint8_t s[BT_SEED_BYTES];
  crypto_generichash_state h;
  crypto_generichash_init(&h, c->seed, sizeof c->seed, sizeof s);
  crypto_generichash_update(&h, (const unsigned char *)purpose, strlen(purpose) + 1);
  crypto_generichash_update(&h, (const unsigned char *)&n, sizeof n);
  crypto_generichash_final(&h, s, sizeof s);
  bt_prng_init(g, s);
  sodium_memzero(s, sizeof s);
}

void bt_client_free(bt_client *c) {
  if (!c) return;
  bt_secret_bundle_clear(&c->sb);
  bt_ckks_params_free(c->p);
  bt_free_locked(c);
}

static bt_status client_finish(bt_client *c, int threads) {
  bt_ckks_set_threads(c->p, threads ? threads : bt_default_threads());
  test_seed(c);
  return bt_job_layout(c->p, &c->sb.tag, &c->L, NULL);
}

/* The client of a new key set: parameters, tag with a fresh key-set ID,
 * secret key drawn from *g (which the caller goes on drawing the
 * evaluation keys from, then wipes), and the rotation steps its keys must
 * cover with the level each is used at (*steps: ns steps then ns levels;
 * free(*steps)). */
static bt_status keygen_begin(const char *preset, unsigned flags, int dim, int classes, int batch, int threads,
                              bt_client **out, bt_prng *g, int **steps, size_t *ns) {
  *out = NULL;
  *steps = NULL;
  *ns = 0;
  if (dim < 1 || dim > (1 << 20) - 2 || classes < 2 || classes > 4096 || batch < 0 || batch > 65536)
    return bt_fail(BT_E_ARG, "keygen: %d features, %d classes, batch %d out of range", dim, classes, batch);
  bt_client *c = bt_alloc_locked(sizeof *c); /* guarded: it holds the flooding key */
  if (!c) return bt_fail(BT_E_NOMEM, "out of memory");
  bt_ckks_literal lit;
  bt_status st = bt_ckks_preset(preset, &lit);
  if (!st) st = bt_ckks_params_new(&lit, flags, &c->p);
  if (!st) {
    c->sb.tag = (bt_job_tag){.batch = batch ? batch : 1024, .features = dim + 1, .classes = classes};
    st = client_finish(c, threads);
  }
  if (!st) {
    client_prng(c, "keygen", 0, g);
    if (c->seeded) bt_prng_bytes(g, c->sb.tag.keyset, BT_KEYSET_ID_BYTES);
    else bt_random_bytes(c->sb.tag.keyset, BT_KEYSET_ID_BYTES);
    /* the keys this job's rotations need, known from the parameters alone */
    st = bt_job_rotations(c->p, &c->sb.tag, NULL, NULL, 0, ns);
    if (!st && !(*steps = malloc(2 * (*ns ? *ns : 1) * sizeof **steps))) st = bt_fail(BT_E_NOMEM, "out of memory");
    if (!st) st = bt_job_rotations(c->p, &c->sb.tag, *steps, *steps + *ns, *ns, ns);
    if (!st) st = bt_keygen_secret(c->p, g, &c->sb.sk);
    if (st) bt_prng_wipe(g);
  }
  if (st) {
    free(*steps);
    *steps = NULL;
    bt_client_free(c);
    return st;
  }
  *out = c;
  return BT_OK;
}

bt_status bt_client_keygen(const char *preset, unsigned flags, int dim, int classes, int batch, int threads,
                           bt_client **out, bt_eval_bundle *eb) {
  memset(eb, 0, sizeof *eb);
  bt_client *c;
  bt_prng g;
  int *steps;
  size_t ns;
  bt_status st = keygen_begin(preset, flags, dim, classes, batch, threads, &c, &g, &steps, &ns);
  if (st) return st;
  eb->tag = c->sb.tag;
  st = bt_eval_keys_new(c->p, &eb->ek);
  if (!st) st = bt_keygen_eval_levels(c->sb.sk, &g, 1, steps, steps + ns, ns, 1, eb->ek);
  const int hw = bt_job_encaps_weight(c->p);
  if (!st && hw) st = bt_keygen_encapsulation(c->sb.sk, hw, &g, &eb->to_sparse, &eb->to_dense);
  bt_prng_wipe(&g);
  free(steps);
  if (st) {
    bt_eval_bundle_clear(eb);
    bt_client_free(c);
    return st;
  }
  *out = c;
  return BT_OK;
}

static bt_status save_stream(const char *path, void *ks) { return bt_pl_save_eval_stream(path, ks); }

bt_status bt_client_keygen_save(const char *preset, unsigned flags, int dim, int classes, int batch, int threads,
                                const char *secret, const char *eval, bt_progress_fn progress, void *user,
                                bt_client **out, bt_keyset_info *info) {
  *out = NULL;
  if (info) memset(info, 0, sizeof *info);
  bt_client *c;
  bt_prng g;
  int *steps;
  size_t ns;
  bt_status st = keygen_begin(preset, flags, dim, classes, batch, threads, &c, &g, &steps, &ns);
  if (st) return st;
  /* the seeds and the encapsulation keys drawn as bt_client_keygen draws them */
  uint64_t *plan = malloc((ns + 2) * sizeof *plan);
  int *levels = malloc((ns + 2) * sizeof *levels);
  uint8_t(*seeds)[BT_SEED_BYTES] = NULL;
  bt_encaps_key *to_sparse = NULL;
  bt_switch_key *to_dense = NULL;
  size_t m = 0;
  if (!plan || !levels) st = bt_fail(BT_E_NOMEM, "out of memory");
  if (!st) {
    m = bt_keygen_eval_plan(c->p, 1, steps, steps + ns, ns, 1, plan, levels);
    if (!(seeds = bt_alloc_locked(m * sizeof *seeds))) st = bt_fail(BT_E_NOMEM, "out of memory");
  }
  for (size_t i = 0; !st && i < m; i++) bt_prng_bytes(&g, seeds[i], BT_SEED_BYTES);
  const int hw = bt_job_encaps_weight(c->p);
  if (!st && hw) st = bt_keygen_encapsulation(c->sb.sk, hw, &g, &to_sparse, &to_dense);
  bt_prng_wipe(&g);
  if (!st) {
    const bt_pl_key_stream ks = {.tag = c->sb.tag, .sk = c->sb.sk, .plan = plan, .levels = levels, .seeds = seeds,
                                 .nkeys = m, .to_sparse = to_sparse, .to_dense = to_dense,
                                 .threads = threads ? threads : bt_default_threads(), .progress = progress,
                                 .user = user};
    st = bt_pl_save_keyset(c, save_stream, (void *)&ks, secret, eval);
  }
  if (!st && info) {
    info->galois_keys = m ? m - 1 : 0;
    info->encapsulation = to_sparse != NULL;
  }
  bt_free_locked(seeds);
  bt_encaps_key_free(to_sparse);
  bt_switch_key_free(to_dense);
  free(plan);
  free(levels);
  free(steps);
  if (st) {
    bt_client_free(c);
    return st;
  }
  *out = c;
  return BT_OK;
}

bt_status bt_client_open(const char *path, unsigned flags, bt_client **out) {
  *out = NULL;
  bt_client *c = bt_alloc_locked(sizeof *c); /* guarded: it holds the flooding key */
  if (!c) return bt_fail(BT_E_NOMEM, "out of memory");
  bt_status st = bt_pipeline_load_secret_bundle(path, flags, &c->p, &c->sb);
  if (!st) st = client_finish(c, 0);
  if (st) bt_client_free(c);
  else *out = c;
  return st;
}

bt_status bt_client_open_buffer(const uint8_t *buf, size_t len, unsigned flags, bt_client **out) {
  *out = NULL;
  bt_client *c = bt_alloc_locked(sizeof *c); /* guarded: it holds the flooding key */
  if (!c) return bt_fail(BT_E_NOMEM, "out of memory");
  bt_status st = bt_pipeline_decode(BT_IO_SECRET_BUNDLE, buf, len, flags, &c->p, NULL, &c->sb);
  if (!st) st = client_finish(c, 0);
  if (st) bt_client_free(c);
  else *out = c;
  return st;
}

bt_status bt_client_save(const bt_client *c, const char *path) { return bt_pipeline_save_secret_bundle(path, &c->sb); }

bt_status bt_client_write(const bt_client *c, uint8_t **buf, size_t *len) {
  return bt_pipeline_encode(BT_IO_SECRET_BUNDLE, &c->sb, c->p, buf, len);
}

const bt_ckks_params *bt_client_params(const bt_client *c) { return c->p; }
const bt_job_tag *bt_client_tag(const bt_client *c) { return &c->sb.tag; }
void bt_client_set_threads(bt_client *c, int threads) {
  bt_ckks_set_threads(c->p, threads ? threads : bt_default_threads());
}

/* L->slots real values encrypted at `level`. */
static bt_status encrypt_slots(const bt_client *c, bt_prng *g, const double *slots, int level, bt_ciphertext **out) {
  const bt_hemat_layout *L = &c->L;
  double complex *cv = malloc(L->slots * sizeof *cv);
  bt_plaintext *pt = NULL;
  bt_status st = cv ? bt_plaintext_new(c->p, &pt) : bt_fail(BT_E_NOMEM, "out of memory");
  if (!st) {
    for (size_t i = 0; i < L->slots; i++) cv[i] = slots[i];
    st = bt_ciphertext_new(c->p, out);
  }
  if (!st) st = bt_ckks_encode(c->p, cv, L->slots, L->logslots, level, bt_ckks_default_scale(c->p), pt);
  if (!st) st = bt_encrypt_sk(c->sb.sk, pt, g, *out);
  bt_plaintext_free(pt);
  if (cv) sodium_memzero(cv, L->slots * sizeof *cv);
  free(cv);
  return st;
}

/* What the server returns is hostile: before anything is decoded, the
 * ciphertext must be one the protocol can produce for this job: the job's
 * parameters and slot count, relinearised (degree 1), a level of the
 * parameters, a scale within a factor BT_RETURN_SCALE_SLACK of the default
 * (the decoder then also checks that it fits the level's modulus), and not
 * a trivial encryption (c1 = 0 decrypts to c0 without the key: a value the
 * server chose).  Models and logits legitimately come at level 0. */
static bt_status check_returned(const bt_client *c, const bt_ciphertext *ct, const char *what) {
  const bt_hemat_layout *L = &c->L;
  const double d = bt_ckks_default_scale(c->p);
  if (ct->params != c->p) return bt_fail(BT_E_PARAMS, "%s: a ciphertext of other parameters", what);
  if (ct->logslots < 0 || ct->logslots > 30 || (size_t)1 << ct->logslots != L->slots)
    return bt_fail(BT_E_FORMAT, "%s: a ciphertext of 2^%d slots, the job's layout has %zu", what, ct->logslots,
                   L->slots);
  if (ct->degree != 1) return bt_fail(BT_E_FORMAT, "%s: a ciphertext of degree %d (1 expected)", what, ct->degree);
  if (ct->level < 0 || ct->level > bt_ckks_max_level(c->p))
    return bt_fail(BT_E_FORMAT, "%s: a ciphertext at level %d (0 to %d expected)", what, ct->level,
                   bt_ckks_max_level(c->p));
  if (!isfinite(ct->scale) || !(ct->scale > d / BT_RETURN_SCALE_SLACK) || !(ct->scale < d * BT_RETURN_SCALE_SLACK))
    return bt_fail(BT_E_FORMAT, "%s: a ciphertext at scale 2^%.1f, the job's is 2^%.0f", what,
                   ct->scale > 0 ? log2(ct->scale) : -INFINITY, log2(d));
  const size_t words = (size_t)(ct->level + 1) * ((size_t)1 << bt_ckks_literal_of(c->p)->logn);
  uint64_t any = 0;
  for (size_t i = 0; i < words; i++) any |= ct->c[1][i];
  if (!any) return bt_fail(BT_E_FORMAT, "%s: a trivial ciphertext (c1 = 0), which no computation returns", what);
  return BT_OK;
}

/* The flooding key: a hash of the secret key's limbs (so a ciphertext
 * decrypts to the same released values in every process), read where the
 * key lives, in guarded memory, without a serialised copy. */
static void flood_key(bt_client *c) {
  if (c->have_flood) return;
  static const char domain[] = "blindtuner release flooding v2";
  const size_t words = (size_t)(bt_ckks_max_level(c->p) + 1 + bt_ckks_num_special(c->p)) * bt_ckks_n(c->p);
  crypto_generichash_state h;
  crypto_generichash_init(&h, NULL, 0, sizeof c->flood_key);
  crypto_generichash_update(&h, (const unsigned char *)domain, sizeof domain);
  crypto_generichash_update(&h, (const unsigned char *)c->sb.sk->s, words * sizeof(uint64_t));
  crypto_generichash_final(&h, c->flood_key, sizeof c->flood_key);
  sodium_memzero(&h, sizeof h);
  c->have_flood = 1;
}

/* Gaussian noise of standard deviation BT_RELEASE_SIGMA added to the real
 * and imaginary part of every slot, then both rounded to the release grid:
 * the noise is a function of the flooding key and the ciphertext's bytes,
 * so decrypting the same ciphertext again gives the same values and
 * repeating a query does not average the noise away. */
static bt_status flood(bt_client *c, const bt_ciphertext *ct, double complex *v, size_t n) {
  flood_key(c);
  uint8_t *buf = NULL, seed[BT_SEED_BYTES];
  size_t len = 0;
  bt_status st = bt_io_write_ciphertext(ct, &buf, &len);
  if (st) return st;
  crypto_generichash(seed, sizeof seed, buf, len, c->flood_key, sizeof c->flood_key);
  bt_free(buf);
  bt_prng g;
  bt_prng_init(&g, seed);
  sodium_memzero(seed, sizeof seed);
  for (size_t i = 0; i < n; i++) {
    /* Box-Muller from two 53-bit uniforms in (0, 1] and [0, 1) */
    const double u1 = ((double)(bt_prng_u64(&g) >> 11) + 1) * 0x1p-53, u2 = (double)(bt_prng_u64(&g) >> 11) * 0x1p-53;
    const double r = sqrt(-2 * log(u1)) * BT_RELEASE_SIGMA;
    v[i] = bt_release_round(creal(v[i]) + r * cos(6.283185307179586 * u2)) +
           I * bt_release_round(cimag(v[i]) + r * sin(6.283185307179586 * u2));
  }
  bt_prng_wipe(&g);
  return BT_OK;
}

double bt_release_round(double v) {
  if (!isfinite(v)) return v;
  return nearbyint(v * BT_RELEASE_GRID_INV) / BT_RELEASE_GRID_INV;
}

/* The slots of a ciphertext the server returned (real and imaginary parts,
 * either may be NULL): validated, decrypted, decoded, then flooded and
 * rounded (docs/SECURITY.md), the only form in which they leave here.
 * Until then the plaintext, the decoder's temporaries and the slot vector
 * are in guarded memory (locked, out of core dumps, wiped on free). */
static bt_status decrypt_slots(bt_client *c, const bt_ciphertext *ct, const char *what, double *re, double *im) {
  const bt_hemat_layout *L = &c->L;
  bt_status st = check_returned(c, ct, what);
  if (st) return st;
  double complex *cv = bt_alloc_locked(L->slots * sizeof *cv);
  bt_plaintext *pt = NULL;
  st = cv ? bt_plaintext_new_secret(c->p, &pt) : bt_fail(BT_E_NOMEM, "out of memory");
  if (!st) st = bt_decrypt(c->sb.sk, ct, pt);
  if (!st) st = bt_ckks_decode(pt, cv);
  bt_plaintext_free(pt);
  if (!st) st = flood(c, ct, cv, L->slots);
  for (size_t i = 0; !st && i < L->slots; i++) {
    if (re) re[i] = creal(cv[i]);
    if (im) im[i] = cimag(cv[i]);
  }
  bt_free_locked(cv);
  return st;
}

static const char *const role_purpose[] = {"", "encrypt train", "encrypt val", "encrypt test"};

bt_status bt_client_encrypt(bt_client *c, bt_set_role role, const float *x, const int *y, size_t n,
                            const bt_plain_head *sc, const int *order, bt_progress_fn progress, void *user,
                            bt_enc_dataset *d) {
  memset(d, 0, sizeof *d);
  const bt_job_tag *tag = &c->sb.tag;
  const bt_hemat_layout *L = &c->L;
  const int B = tag->batch, F = tag->features, C = tag->classes;
  const size_t dim = (size_t)F - 1;
  if (role < BT_SET_TRAIN || role > BT_SET_TEST) return bt_fail(BT_E_ARG, "encrypt: unknown role %d", (int)role);
  if (n < 1 || n > (size_t)1 << 30) return bt_fail(BT_E_ARG, "encrypt: %zu rows (1 to 2^30)", n);
  if (role != BT_SET_TEST && !y) return bt_fail(BT_E_ARG, "encrypt: a %s set needs labels", bt_set_role_name(role));
  if (sc->dim != (int)dim || memcmp(sc->tag.keyset, tag->keyset, BT_KEYSET_ID_BYTES) != 0)
    return bt_fail(BT_E_PARAMS, "encrypt: the scaler was made for another key set or dimension");
  for (size_t i = 0; y && i < n; i++)
    if (y[i] < 0 || y[i] >= C) return bt_fail(BT_E_ARG, "encrypt: label %zu is %d, the keys are for 0..%d", i, y[i], C - 1);
  bt_status st = BT_OK;
  bt_prng g;
  client_prng(c, role_purpose[role], 0, &g);
  double *rows = malloc((size_t)B * (size_t)(F > C ? F : C) * sizeof *rows);
  double *slots = malloc(L->slots * sizeof *slots);
  d->tag = *tag;
  d->role = role;
  d->rows = (int)n;
  d->nx = L->nb;
  d->labelled = y != NULL;
  d->nbatches = (int)((n + (size_t)B - 1) / (size_t)B);
  d->b = calloc((size_t)d->nbatches, sizeof *d->b);
  if (!rows || !slots || !d->b) st = bt_fail(BT_E_NOMEM, "out of memory");
  const int xl = bt_train_x_level(L), yl = bt_train_y_level(L);
  for (int k = 0; !st && k < d->nbatches; k++) {
    bt_enc_batch *b = &d->b[k];
    const size_t first = (size_t)k * B;
    b->rows = (int)(n - first < (size_t)B ? n - first : (size_t)B);
    if (!(b->x = calloc((size_t)L->nb, sizeof *b->x))) {
      st = bt_fail(BT_E_NOMEM, "out of memory");
      break;
    }
    memset(rows, 0, (size_t)B * F * sizeof *rows);
    if (order) bt_scaler_apply(sc, x, (size_t)b->rows, order + first, rows);
    else bt_scaler_apply(sc, x + first * dim, (size_t)b->rows, NULL, rows);
    for (int j = 0; !st && j < L->nb; j++) {
      bt_hemat_pack_x(L, rows, j, slots);
      st = encrypt_slots(c, &g, slots, xl, &b->x[j]);
    }
    if (!st && y) {
      memset(rows, 0, (size_t)B * C * sizeof *rows);
      for (int i = 0; i < b->rows; i++) {
        const size_t r = order ? (size_t)order[first + (size_t)i] : first + (size_t)i;
        rows[(size_t)i * C + y[r]] = 1;
      }
      bt_hemat_pack_diag(L, rows, slots);
      st = encrypt_slots(c, &g, slots, yl, &b->y);
    }
    if (!st && progress && progress(user, "batch", k + 1, d->nbatches)) st = bt_fail(BT_E_ARG, "cancelled");
  }
  bt_prng_wipe(&g);
  if (rows) sodium_memzero(rows, (size_t)B * (size_t)(F > C ? F : C) * sizeof *rows);
  if (slots) sodium_memzero(slots, L->slots * sizeof *slots);
  free(rows), free(slots);
  if (st) bt_enc_dataset_clear(d);
  return st;
}

/* The tag of what the server returned must be the client's. */
static bt_status check_tag(const bt_client *c, const bt_job_tag *t, const char *what) {
  if (memcmp(t, &c->sb.tag, sizeof *t) != 0)
    return bt_fail(BT_E_PARAMS, "%s was made for another key set or layout", what);
  return BT_OK;
}

bt_status bt_client_decrypt_model(bt_client *c, const bt_enc_epoch *m, const bt_plain_head *sc, bt_plain_head *h) {
  memset(h, 0, sizeof *h);
  const bt_job_tag *tag = &c->sb.tag;
  bt_status st = check_tag(c, &m->tag, "the model");
  if (!st && (sc->dim != tag->features - 1 || sc->classes != tag->classes ||
              memcmp(sc->tag.keyset, tag->keyset, BT_KEYSET_ID_BYTES) != 0))
    st = bt_fail(BT_E_PARAMS, "the scaler was made for another key set or dimension");
  if (st) return st;
  double *slots = malloc(c->L.slots * sizeof *slots);
  h->tag = *tag;
  h->epoch = m->epoch;
  h->dim = sc->dim;
  h->classes = tag->classes;
  h->mean = malloc((size_t)sc->dim * sizeof *h->mean);
  h->sd = malloc((size_t)sc->dim * sizeof *h->sd);
  h->w = calloc((size_t)tag->classes * (size_t)tag->features, sizeof *h->w);
  if (!slots || !h->mean || !h->sd || !h->w) st = bt_fail(BT_E_NOMEM, "out of memory");
  if (!st) st = decrypt_slots(c, m->ct, "the model", NULL, slots); /* W = Im(A) */
  if (!st) {
    bt_hemat_unpack_w(&c->L, slots, h->w);
    memcpy(h->mean, sc->mean, (size_t)sc->dim * sizeof *h->mean);
    memcpy(h->sd, sc->sd, (size_t)sc->dim * sizeof *h->sd);
    st = bt_scaler_fold(sc, h->w); /* the model on standardised features */
  }
  if (slots) sodium_memzero(slots, c->L.slots * sizeof *slots);
  free(slots);
  if (st) bt_plain_head_clear(h);
  return st;
}

bt_status bt_client_decrypt_loss(bt_client *c, const bt_enc_epoch *loss, double *value) {
  double *re = malloc(c->L.slots * sizeof *re);
  bt_status st = re ? check_tag(c, &loss->tag, "the validation loss") : bt_fail(BT_E_NOMEM, "out of memory");
  if (!st) st = decrypt_slots(c, loss->ct, "the validation loss", re, NULL);
  if (!st) *value = re[0];
  if (re) sodium_memzero(re, c->L.slots * sizeof *re);
  free(re);
  return st;
}

bt_status bt_client_decrypt_logits(bt_client *c, const bt_enc_logits *lg, float *z) {
  const int B = c->sb.tag.batch, C = c->sb.tag.classes;
  double *slots = malloc(c->L.slots * sizeof *slots), *zb = malloc((size_t)B * C * sizeof *zb);
  bt_status st = slots && zb ? check_tag(c, &lg->tag, "the logits") : bt_fail(BT_E_NOMEM, "out of memory");
  size_t row = 0;
  for (int k = 0; !st && k < lg->nbatches; k++) {
    if (lg->batch_rows[k] < 1 || lg->batch_rows[k] > B || row + (size_t)lg->batch_rows[k] > (size_t)lg->rows) {
      st = bt_fail(BT_E_FORMAT, "the logits' batch %d claims %d rows", k, lg->batch_rows[k]);
      break;
    }
    if ((st = decrypt_slots(c, lg->z[k], "the logits", slots, NULL))) break;
    bt_hemat_unpack_logits(&c->L, slots, zb);
    for (int i = 0; i < lg->batch_rows[k]; i++, row++)
      for (int j = 0; j < C; j++) z[row * C + (size_t)j] = (float)zb[i * C + j];
  }
  if (slots) sodium_memzero(slots, c->L.slots * sizeof *slots);
  if (zb) sodium_memzero(zb, (size_t)B * C * sizeof *zb);
  free(slots), free(zb);
  return st;
}

bt_status bt_client_decide(bt_client *c, bt_early_stop *es, const bt_enc_epoch *loss, double *value,
                           bt_answer *answer) {
  if (es->epochs >= es->max_epochs)
    return bt_fail(BT_E_ARG, "epoch %d is beyond the %d epochs the client agreed to", es->epochs + 1, es->max_epochs);
  if (es->stopped)
    return bt_fail(BT_E_ARG, "the client has said stop after epoch %d: it decrypts no further loss", es->epochs);
  if (loss->epoch != es->epochs + 1)
    return bt_fail(BT_E_FORMAT, "the loss is of epoch %d, the client decides epoch %d (each epoch once)", loss->epoch,
                   es->epochs + 1);
  double v;
  bt_status st = bt_client_decrypt_loss(c, loss, &v);
  *answer = (bt_answer){.tag = c->sb.tag, .epoch = es->epochs + 1, .go_on = 0};
  if (st) { /* a loss the client refuses ends the run: its answer is stop */
    es->epochs++;
    es->stopped = 1;
    return st;
  }
  answer->go_on = bt_early_stop_update(es, v);
  if (value) *value = v;
  return BT_OK;
}

void bt_logits_argmax(const float *z, size_t rows, int classes, int64_t *labels) {
  for (size_t i = 0; i < rows; i++) {
    int best = 0;
    for (int k = 1; k < classes; k++)
      if (z[i * (size_t)classes + (size_t)k] > z[i * (size_t)classes + (size_t)best]) best = k;
    labels[i] = best;
  }
}

/* ---- the plaintext head ---- */
void bt_plain_head_logits(const bt_plain_head *h, const float *f, size_t n, double *z) {
  const int D = h->dim, C = h->classes, F = D + 1;
  for (size_t i = 0; i < n; i++)
    for (int c = 0; c < C; c++) {
      const double *w = h->w + (size_t)c * F;
      double s = w[D];
      for (int j = 0; j < D; j++) s += w[j] * (((double)f[i * D + j] - h->mean[j]) / h->sd[j]);
      z[i * C + c] = s;
    }
}

bt_status bt_plain_head_evaluate(const bt_plain_head *h, const float *x, const int *y, size_t n, double *accuracy,
                                 double *loss, long *right, long *count) {
  const int C = h->classes;
  if (n < 1 || !h->w) return bt_fail(BT_E_ARG, "evaluate: no rows or no weights");
  for (size_t i = 0; i < n; i++)
    if (y[i] < 0 || y[i] >= C) return bt_fail(BT_E_ARG, "evaluate: label %zu is %d, the model has %d classes", i, y[i], C);
  double *z = malloc(n * (size_t)C * sizeof *z);
  if (!z) return bt_fail(BT_E_NOMEM, "out of memory");
  if (right) memset(right, 0, (size_t)C * sizeof *right);
  if (count) memset(count, 0, (size_t)C * sizeof *count);
  bt_plain_head_logits(h, x, n, z);
  double l = 0;
  long ok = 0;
  for (size_t i = 0; i < n; i++) {
    const double *zi = z + i * (size_t)C;
    int best = 0;
    double m = zi[0], s = 0;
    for (int c = 1; c < C; c++) {
      if (zi[c] > zi[best]) best = c;
      if (zi[c] > m) m = zi[c];
    }
    for (int c = 0; c < C; c++) s += exp(zi[c] - m);
    l += log(s) + m - zi[y[i]];
    if (count) count[y[i]]++;
    if (best == y[i]) {
      ok++;
      if (right) right[y[i]]++;
    }
  }
  bt_free_secret(z, n * (size_t)C * sizeof *z); /* the model's logits on the client's rows */
  if (loss) *loss = l / (double)n;
  if (accuracy) *accuracy = (double)ok / (double)n;
  return BT_OK;
}

bt_status bt_plain_head_predict(const bt_plain_head *h, const float *x, size_t n, int64_t *labels, float *prob) {
  const int C = h->classes;
  double *z = malloc(n * (size_t)C * sizeof *z), *p = malloc((size_t)C * sizeof *p);
  if (!z || !p) {
    free(z), free(p);
    return bt_fail(BT_E_NOMEM, "out of memory");
  }
  bt_plain_head_logits(h, x, n, z);
  for (size_t i = 0; i < n; i++) {
    bt_softmax_exact_row(C, z + i * (size_t)C, p);
    int best = 0;
    for (int c = 0; c < C; c++) {
      if (prob) prob[i * (size_t)C + (size_t)c] = (float)p[c];
      if (p[c] > p[best]) best = c;
    }
    labels[i] = best;
  }
  bt_free_secret(z, n * (size_t)C * sizeof *z);
  bt_free_secret(p, (size_t)C * sizeof *p);
  return BT_OK;
}

/* The pipeline layer: its file kinds on disk and in memory, the pure
 * functions that say what a job needs, and the client's and the server's
 * objects on a small INSECURE preset. */
#include <complex.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blindtuner/pipeline.h"
#include "testutil.h"

enum { H_END = 88 };

typedef struct fixture {
  bt_ckks_params *p, *other; /* INSECURE-n12 and INSECURE-n12-sparse */
  bt_secret_key *sk;
  bt_eval_keys *ek;
  bt_prng g;
  size_t slots;
  int logslots;
  char dir[256];
} fixture;

static bt_ckks_params *make_params(const char *name) {
  bt_ckks_literal lit;
  bt_ckks_params *p = NULL;
  if (bt_ckks_preset(name, &lit) || bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &p)) return NULL;
  return p;
}

static int group_setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  static const int steps[] = {1, -1};
  if (!f || !(f->p = make_params("INSECURE-n12")) || !(f->other = make_params("INSECURE-n12-sparse"))) return -1;
  bt_test_prng(&f->g, "pipeline");
  f->logslots = bt_ckks_logn(f->p) - 1;
  f->slots = (size_t)1 << f->logslots;
  if (bt_keygen_secret(f->p, &f->g, &f->sk) || bt_eval_keys_new(f->p, &f->ek) ||
      bt_keygen_eval(f->sk, &f->g, 1, steps, 2, 1, f->ek))
    return -1;
  const char *tmp = getenv("TMPDIR");
  snprintf(f->dir, sizeof f->dir, "%s/bt-pipeline-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->dir)) return -1;
  *state = f;
  return 0;
}

static int group_teardown(void **state) {
  fixture *f = *state;
  if (rmdir(f->dir) != 0) printf("  note: %s not removed (%s)\n", f->dir, strerror(errno));
  bt_eval_keys_free(f->ek);
  bt_secret_key_free(f->sk);
  bt_ckks_params_free(f->p);
  bt_ckks_params_free(f->other);
  bt_prng_wipe(&f->g);
  free(f);
  return 0;
}

static void path_in(const fixture *f, const char *name, char *out, size_t cap) {
  snprintf(out, cap, "%s/%s", f->dir, name);
}

static size_t dir_entries(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  size_t n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

static uint8_t *dup_buf(const uint8_t *b, size_t len) {
  uint8_t *c = malloc(len + 1);
  memcpy(c, b, len);
  return c;
}

static void random_values(bt_prng *g, double complex *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double re = (double)(bt_prng_u64(g) >> 11) / 9007199254740992.0 * 2 - 1;
    v[i] = re;
  }
}

static bt_ciphertext *encrypt_values(fixture *f, const double complex *v, int level, int unused) {
  (void)unused;
  bt_plaintext *pt;
  bt_ciphertext *ct;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_ciphertext_new(f->p, &ct));
  BT_CHECK(bt_ckks_encode(f->p, v, f->slots, f->logslots, level, bt_ckks_default_scale(f->p), pt));
  BT_CHECK(bt_encrypt_sk(f->sk, pt, &f->g, ct));
  bt_plaintext_free(pt);
  return ct;
}

static void assert_same_ct(const bt_ciphertext *a, const bt_ciphertext *b) {
  assert_int_equal(a->level, b->level);
  assert_int_equal(a->degree, b->degree);
  assert_int_equal(a->logslots, b->logslots);
  assert_true(a->scale == b->scale);
  size_t words = (size_t)(a->level + 1) * bt_ckks_n(a->params);
  for (int i = 0; i <= a->degree; i++) assert_memory_equal(a->c[i], b->c[i], words * sizeof(uint64_t));
}

static void files_round_trip(void **state) {
  fixture *f = *state;
  char sbp[512], ebp[512], dsp[512], anp[512];
  path_in(f, "client.key", sbp, sizeof sbp);
  path_in(f, "server.keys", ebp, sizeof ebp);
  path_in(f, "train.bt", dsp, sizeof dsp);
  path_in(f, "answer.bt", anp, sizeof anp);
  bt_job_tag tag = {.batch = 4, .features = 3, .classes = 2};
  bt_random_bytes(tag.keyset, sizeof tag.keyset);

  /* secret bundle: mode 0600, the same key back */
  bt_secret_bundle sb = {.tag = tag, .sk = f->sk}, sb2;
  bt_ckks_params *p2 = NULL;
  BT_CHECK(bt_pipeline_save_secret_bundle(sbp, &sb));
  struct stat stt;
  assert_int_equal(stat(sbp, &stt), 0);
  assert_int_equal(stt.st_mode & 0777, 0600);
  BT_CHECK(bt_pipeline_load_secret_bundle(sbp, BT_ALLOW_INSECURE, &p2, &sb2));
  assert_memory_equal(bt_ckks_params_hash(p2), bt_ckks_params_hash(f->p), BT_PARAMS_HASH_BYTES);
  assert_memory_equal(sb2.tag.keyset, tag.keyset, BT_KEYSET_ID_BYTES);
  uint8_t *k1, *k2;
  size_t l1, l2;
  BT_CHECK(bt_io_write_secret_key(f->sk, &k1, &l1));
  BT_CHECK(bt_io_write_secret_key(sb2.sk, &k2, &l2));
  assert_int_equal(l1, l2);
  assert_memory_equal(k1 + H_END, k2 + H_END, l1 - H_END);
  bt_free_secret(k1, l1), bt_free_secret(k2, l2);
  bt_secret_bundle_clear(&sb2);
  bt_ckks_params_free(p2);

  /* evaluation bundle: the keys come back */
  bt_eval_bundle eb = {.tag = tag, .ek = f->ek}, eb2;
  BT_CHECK(bt_pipeline_save_eval_bundle(ebp, &eb));
  BT_CHECK(bt_pipeline_load_eval_bundle(ebp, BT_ALLOW_INSECURE, &p2, &eb2));
  assert_int_equal(eb2.ek->ngalois, f->ek->ngalois);
  assert_non_null(eb2.ek->relin);
  assert_null(eb2.to_sparse);
  bt_eval_bundle_clear(&eb2);
  bt_ckks_params_free(p2);
  /* one for the other */
  bt_test_expect_fail(bt_pipeline_load_eval_bundle(sbp, BT_ALLOW_INSECURE, &p2, &eb2), BT_E_FORMAT,
              "holds a secret bundle, expected an evaluation-key bundle", "secret bundle as evaluation keys");
  assert_null(p2);

  /* a dataset of two batches */
  double complex *v = malloc(f->slots * sizeof *v);
  random_values(&f->g, v, f->slots);
  bt_enc_batch b[2];
  bt_ciphertext *x0[1], *x1[1];
  x0[0] = encrypt_values(f, v, 2, 0);
  x1[0] = encrypt_values(f, v, 2, 0);
  b[0] = (bt_enc_batch){.rows = 4, .x = x0, .y = encrypt_values(f, v, 3, 0)};
  b[1] = (bt_enc_batch){.rows = 1, .x = x1, .y = encrypt_values(f, v, 3, 0)};
  bt_enc_dataset d = {.tag = tag, .role = BT_SET_TRAIN, .rows = 5, .nx = 1, .nbatches = 2, .labelled = 1, .b = b},
                 d2;
  BT_CHECK(bt_pipeline_save_dataset(dsp, &d));
  BT_CHECK(bt_pipeline_load_dataset(dsp, f->p, &tag, &d2));
  assert_int_equal(d2.rows, 5);
  assert_int_equal(d2.nbatches, 2);
  assert_int_equal(d2.b[1].rows, 1);
  for (int k = 0; k < 2; k++) {
    assert_same_ct(b[k].x[0], d2.b[k].x[0]);
    assert_same_ct(b[k].y, d2.b[k].y);
  }
  bt_enc_dataset_clear(&d2);
  bt_job_tag other = tag;
  other.keyset[0] ^= 1;
  bt_test_expect_fail(bt_pipeline_load_dataset(dsp, f->p, &other, &d2), BT_E_PARAMS, "another keygen", "other key set");
  other = tag;
  other.classes = 3;
  bt_test_expect_fail(bt_pipeline_load_dataset(dsp, f->p, &other, &d2), BT_E_PARAMS, "layout", "other layout");
  bt_test_expect_fail(bt_pipeline_load_dataset(dsp, f->other, &tag, &d2), BT_E_PARAMS, "other parameters", "other parameters");
  assert_null(d2.b);

  /* bad fields behind a valid checksum */
  size_t len;
  uint8_t *buf = bt_test_read_file(dsp, &len);
  BT_CHECK(bt_pipeline_validate_buffer(BT_IO_DATASET, buf, len, f->p));
  uint8_t *bad = dup_buf(buf, len);
  bt_test_put_le(bad + H_END + 28, 9, 4); /* role */
  bt_test_fix_checksum(bad, len);
  bt_test_expect_fail(bt_pipeline_validate_buffer(BT_IO_DATASET, bad, len, f->p), BT_E_FORMAT, "dataset role", "bad role");
  memcpy(bad, buf, len);
  bt_test_put_le(bad + H_END + 28 + 20 + 4, (uint64_t)1 << 40, 8); /* the first frame's length */
  bt_test_fix_checksum(bad, len);
  bt_test_expect_fail(bt_pipeline_validate_buffer(BT_IO_DATASET, bad, len, f->p), BT_E_FORMAT, "runs past the payload", "long frame");
  memcpy(bad, buf, len);
  bt_test_put_le(bad + H_END + 28 + 4, 6, 4); /* rows: the batches hold 5 */
  bt_test_fix_checksum(bad, len);
  bt_test_expect_fail(bt_pipeline_validate_buffer(BT_IO_DATASET, bad, len, f->p), BT_E_FORMAT, "the batches hold 5 rows",
              "row count");
  free(bad);
  free(buf);

  /* the same dataset through memory: the bytes of the file, and the same checks */
  uint8_t *mem;
  size_t mlen;
  BT_CHECK(bt_pipeline_encode(BT_IO_DATASET, &d, f->p, &mem, &mlen));
  buf = bt_test_read_file(dsp, &len);
  assert_int_equal(mlen, len);
  assert_memory_equal(mem, buf, len);
  free(buf);
  bt_ckks_params *pp = f->p;
  BT_CHECK(bt_pipeline_decode(BT_IO_DATASET, mem, mlen, 0, &pp, &tag, &d2));
  assert_same_ct(b[1].y, d2.b[1].y);
  bt_enc_dataset_clear(&d2);
  other = tag;
  other.keyset[3] ^= 4;
  bt_test_expect_fail(bt_pipeline_decode(BT_IO_DATASET, mem, mlen, 0, &pp, &other, &d2), BT_E_PARAMS, "another keygen",
                      "memory: other key set");
  bt_test_expect_fail(bt_pipeline_decode(BT_IO_ANSWER, mem, mlen, 0, &pp, &tag, &d2), BT_E_FORMAT, NULL,
                      "memory: a dataset as an answer");
  bt_free(mem);

  /* the one bit */
  bt_answer a = {.tag = tag, .epoch = 3, .go_on = 0}, a2;
  BT_CHECK(bt_pipeline_save_answer(anp, f->p, &a));
  BT_CHECK(bt_pipeline_load_answer(anp, f->p, &tag, &a2));
  assert_int_equal(a2.epoch, 3);
  assert_int_equal(a2.go_on, 0);

  for (int k = 0; k < 2; k++) bt_ciphertext_free(b[k].x[0]), bt_ciphertext_free(b[k].y);
  free(v);
  unlink(sbp), unlink(ebp), unlink(dsp), unlink(anp);
  assert_int_equal(dir_entries(f->dir), 0);
}


static int cmp_int(const void *a, const void *b) {
  const int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

/* The rotations a key set gets from the parameters alone are exactly those
 * the server's objects use once built. */
static void rotations_are_pure(void **state) {
  (void)state;
  bt_ckks_params *p = make_params("INSECURE-boot-n12-dense");
  assert_non_null(p);
  const bt_job_tag tags[] = {{.batch = 32, .features = 30, .classes = 3}, {.batch = 8, .features = 5, .classes = 2},
                             {.batch = 64, .features = 17, .classes = 8}};
  for (size_t t = 0; t < sizeof tags / sizeof *tags; t++) {
    size_t n = 0, n2 = 0;
    BT_CHECK(bt_job_rotations(p, &tags[t], NULL, NULL, 0, &n));
    assert_true(n > 0);
    int *pure = malloc(n * sizeof *pure), *built = malloc((4096 + 512) * sizeof *built), few[3];
    BT_CHECK(bt_job_rotations(p, &tags[t], pure, NULL, n, &n2));
    assert_int_equal(n, n2);
    BT_CHECK(bt_job_rotations(p, &tags[t], few, NULL, 3, &n2)); /* a short array: filled, the size reported */
    assert_int_equal(n2, n);
    assert_memory_equal(few, pure, sizeof few);
    bt_hemat_layout L;
    bt_softmax_approx sa;
    bt_bootstrap_config cfg;
    bt_bootstrapper *bs;
    bt_trainer *tr;
    BT_CHECK(bt_job_layout(p, &tags[t], &L, &sa));
    BT_CHECK(bt_trainer_bootstrap_config(p, &L, &cfg));
    BT_CHECK(bt_bootstrapper_new(p, &cfg, bt_ckks_default_scale(p), &bs));
    BT_CHECK(bt_trainer_new(p, &L, &sa, bs, 0.1, 0, &tr));
    size_t nb = bt_bootstrap_steps(bs, built, 4096);
    assert_true(nb > 0 && nb <= 4096);
    nb += bt_trainer_steps(tr, built + nb, 512);
    assert_true(nb <= 4096 + 512);
    qsort(built, nb, sizeof *built, cmp_int);
    size_t m = 0;
    for (size_t i = 0; i < nb; i++)
      if (!m || built[m - 1] != built[i]) built[m++] = built[i];
    qsort(pure, n, sizeof *pure, cmp_int);
    printf("  layout %d x %d x %d: %zu rotations from the parameters, %zu from the built objects\n", tags[t].batch,
           tags[t].features, tags[t].classes, n, m);
    assert_int_equal(n, m);
    assert_memory_equal(pure, built, n * sizeof *pure);
    bt_trainer_free(tr);
    bt_bootstrapper_free(bs);
    bt_softmax_approx_free(&sa);
    free(pure), free(built);
  }
  bt_ckks_params_free(p);
}

/* The client and the job's objects, short of training: a key set through
 * memory, a dataset's layout, the zero model, the protocol's state checks. */
static void client_and_job(void **state) {
  (void)state;
  bt_client *c = NULL, *c2 = NULL;
  bt_eval_bundle eb;
  bt_test_expect_fail(bt_client_keygen("INSECURE-boot-n12-dense", 0, 4, 3, 8, 2, &c, &eb), BT_E_INSECURE, NULL,
                      "INSECURE without the flag");
  BT_CHECK(bt_client_keygen("INSECURE-boot-n12-dense", BT_ALLOW_INSECURE, 4, 3, 8, 2, &c, &eb));
  const bt_ckks_params *p = bt_client_params(c);
  assert_int_equal(bt_client_tag(c)->features, 5);
  size_t nrot = 0;
  BT_CHECK(bt_job_rotations(p, bt_client_tag(c), NULL, NULL, 0, &nrot));
  /* one key per distinct Galois element (steps equal modulo the slots share one), and conjugation */
  assert_true(eb.ek->ngalois >= 2 && eb.ek->ngalois <= nrot + 1);
  assert_non_null(eb.to_sparse);              /* a dense secret: encapsulation keys */
  uint8_t *buf;
  size_t len;
  BT_CHECK(bt_client_write(c, &buf, &len));
  BT_CHECK(bt_client_open_buffer(buf, len, BT_ALLOW_INSECURE, &c2));
  bt_free_secret(buf, len);
  assert_memory_equal(bt_client_tag(c2), bt_client_tag(c), sizeof(bt_job_tag));
  bt_client_free(c2);

  /* 11 rows of 4 features, 3 classes: two batches of 8 */
  float x[11 * 4];
  int y[11];
  for (int i = 0; i < 11; i++) {
    y[i] = i % 3;
    for (int j = 0; j < 4; j++) x[i * 4 + j] = (float)(i * 0.25 + j);
  }
  bt_plain_head sc;
  bt_enc_dataset d;
  int order[11];
  BT_CHECK(bt_pipeline_row_order(7, 11, order));
  int seen[11] = {0};
  for (int i = 0; i < 11; i++) seen[order[i]]++;
  for (int i = 0; i < 11; i++) assert_int_equal(seen[i], 1);
  BT_CHECK(bt_scaler_fit(bt_client_tag(c), x, 11, 4, &sc));
  assert_true(fabs(sc.mean[1] - (1 + 0.25 * 5)) < 1e-9);
  bt_test_expect_fail(bt_client_encrypt(c, BT_SET_TRAIN, x, NULL, 11, &sc, order, NULL, NULL, &d), BT_E_ARG, "labels",
                      "a training set without labels");
  y[4] = 3;
  bt_test_expect_fail(bt_client_encrypt(c, BT_SET_TRAIN, x, y, 11, &sc, order, NULL, NULL, &d), BT_E_ARG, "label 4",
                      "a label out of range");
  y[4] = 1;
  BT_CHECK(bt_client_encrypt(c, BT_SET_TRAIN, x, y, 11, &sc, order, NULL, NULL, &d));
  assert_int_equal(d.nbatches, 2);
  assert_int_equal(d.b[0].rows, 8);
  assert_int_equal(d.b[1].rows, 3);

  /* the server's job: the zero model, no answer awaited, no loss yet */
  bt_job *j;
  bt_job_options o;
  bt_job_options_init(&o);
  BT_CHECK(bt_job_new(p, &eb, &d, NULL, &o, &j));
  assert_int_equal(bt_job_state_of(j), BT_JOB_TRAIN);
  /* the large-batch rule: 0.3 up to 1,024 rows a step, linear above */
  assert_true(bt_lr_for_batch(8) == 0.3 && bt_lr_for_batch(1024) == 0.3);
  assert_true(fabs(bt_lr_for_batch(2048) - 0.6) < 1e-15 && fabs(bt_lr_for_batch(8192) - 2.4) < 1e-15);
  assert_true(bt_job_lr(j) == 0.3); /* options left it to the rule: a step of 8 rows */
  {
    bt_job_options o2 = o;
    bt_job *j3;
    o2.accumulate = 2, o2.lr = 0.7;
    BT_CHECK(bt_job_new(p, &eb, &d, NULL, &o2, &j3));
    assert_true(bt_job_lr(j3) == 0.7); /* given: kept */
    /* a checkpoint's rate: taken by a job that left it to the rule, refused by one that named another */
    bt_checkpoint cp;
    bt_job_checkpoint(j3, &cp);
    BT_CHECK(bt_job_restore(j, &cp));
    assert_true(bt_job_lr(j) == 0.7);
    o2.lr = 0.5;
    bt_job *j4;
    BT_CHECK(bt_job_new(p, &eb, &d, NULL, &o2, &j4));
    bt_test_expect_fail(bt_job_restore(j4, &cp), BT_E_ARG, "learning rate 0.7", "a checkpoint of another rate");
    bt_job_free(j4);
    bt_job_free(j3);
    o2.accumulate = BT_MAX_ACCUMULATE + 1;
    bt_test_expect_fail(bt_job_new(p, &eb, &d, NULL, &o2, &j4), BT_E_ARG, "batches per step", "accumulate past the cap");
    o2.accumulate = 1;
    o2.softmax_bound = BT_MAX_SOFTMAX_BOUND + 1;
    bt_test_expect_fail(bt_job_new(p, &eb, &d, NULL, &o2, &j4), BT_E_ARG, "softmax range", "a softmax range past the cap");
    o2.softmax_bound = -1;
    bt_test_expect_fail(bt_job_new(p, &eb, &d, NULL, &o2, &j4), BT_E_ARG, "softmax range", "a negative softmax range");
    o2.softmax_bound = 128; /* a wider range: a job like any other */
    BT_CHECK(bt_job_new(p, &eb, &d, NULL, &o2, &j4));
    bt_job_free(j4);
  }
  bt_enc_epoch m, l;
  BT_CHECK(bt_job_model(j, &m));
  assert_int_equal(m.epoch, 0);
  bt_test_expect_fail(bt_job_loss(j, &l), BT_E_ARG, "no validation loss", "loss before an epoch");
  bt_answer a = {.tag = *bt_client_tag(c), .epoch = 0, .go_on = 1};
  bt_test_expect_fail(bt_job_answer(j, &a), BT_E_ARG, "no answer", "an answer nobody asked for");
  /* the zero model is a trivial encryption (c1 = 0), which no epoch returns:
   * the client refuses it, as it would a forged one */
  bt_plain_head h;
  bt_test_expect_fail(bt_client_decrypt_model(c, &m, &sc, &h), BT_E_FORMAT, "trivial", "the untrained zero model");
  double zero_w[3 * 5] = {0}, acc, loss;
  const bt_plain_head zero = {.dim = sc.dim, .classes = 3, .mean = sc.mean, .sd = sc.sd, .w = zero_w};
  BT_CHECK(bt_plain_head_evaluate(&zero, x, y, 11, &acc, &loss, NULL, NULL));
  assert_true(fabs(loss - log(3.0)) < 1e-12); /* all logits zero */
  /* a training set is not a validation set */
  bt_job *j2 = NULL;
  bt_test_expect_fail(bt_job_new(p, &eb, &d, &d, &o, &j2), BT_E_FORMAT, "not a labelled validation set",
                      "the training set as validation");
  assert_null(j2);
  bt_plain_head_clear(&h);
  bt_job_free(j);
  bt_enc_dataset_clear(&d);
  bt_plain_head_clear(&sc);
  bt_eval_bundle_clear(&eb);
  bt_client_free(c);
}

/* Everything the server returns is hostile: a crafted model or loss is
 * refused before it is decoded, decryptions are flooded and rounded the
 * same way every time, and `decide` decrypts one loss per agreed epoch. */
static void hostile_returns(void **state) {
  (void)state;
  bt_client *c = NULL;
  bt_eval_bundle eb;
  BT_CHECK(bt_client_keygen("INSECURE-boot-n12-dense", BT_ALLOW_INSECURE, 4, 3, 8, 2, &c, &eb));
  const bt_ckks_params *p = bt_client_params(c);
  float x[8 * 4];
  int y[8];
  for (int i = 0; i < 8; i++) {
    y[i] = i % 3;
    for (int j = 0; j < 4; j++) x[i * 4 + j] = (float)(0.1 * i - 0.2 * j);
  }
  bt_plain_head sc, h, h2;
  bt_enc_dataset d;
  BT_CHECK(bt_scaler_fit(bt_client_tag(c), x, 8, 4, &sc));
  BT_CHECK(bt_client_encrypt(c, BT_SET_VAL, x, y, 8, &sc, NULL, NULL, NULL, &d));
  /* a fresh encryption of the job's layout stands for what an epoch returns */
  bt_ciphertext *ct;
  BT_CHECK(bt_ciphertext_new(p, &ct));
  BT_CHECK(bt_ciphertext_copy(d.b[0].y, ct));
  bt_enc_epoch m = {.tag = *bt_client_tag(c), .epoch = 1, .ct = ct};
  BT_CHECK(bt_client_decrypt_model(c, &m, &sc, &h));
  BT_CHECK(bt_client_decrypt_model(c, &m, &sc, &h2));
  const size_t nw = (size_t)3 * 5;
  for (size_t i = 0; i < nw; i++) {
    assert_true(h.w[i] == h2.w[i]);                              /* the same noise every time */
    assert_true(h.w[i] == bt_release_round(h.w[i]));             /* on the release grid */
    assert_true(fabs(h.w[i]) < 8 * BT_RELEASE_SIGMA + 1e-6);     /* Im of a real encryption: noise only */
  }
  bt_plain_head_clear(&h2);
  const bt_ciphertext saved = *ct;
  const struct {
    double scale;
    int level, logslots, degree;
    const char *want;
  } bad[] = {
      {0x1p-70, -1, -1, -1, "scale"},  {1e308, -1, -1, -1, "scale"}, {NAN, -1, -1, -1, "scale"},
      {-1, 27, -1, -1, "level 27"},      {-1, -1, 0, -1, "slots"},     {-1, -1, 5, -1, "slots"},
      {-1, -1, -1, 2, "degree 2"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
    *ct = saved;
    if (bad[k].scale >= 0 || isnan(bad[k].scale)) ct->scale = bad[k].scale;
    if (bad[k].level >= 0) ct->level = bad[k].level;
    if (bad[k].logslots >= 0) ct->logslots = bad[k].logslots;
    if (bad[k].degree >= 0) ct->degree = bad[k].degree;
    bt_test_expect_fail(bt_client_decrypt_model(c, &m, &sc, &h2), BT_E_FORMAT, bad[k].want, "a crafted model");
  }
  *ct = saved;
  /* a trivial encryption (c1 = 0): c0 would decrypt to what the server chose */
  uint64_t *c1 = malloc(sizeof(uint64_t) * ((size_t)ct->level + 1) << bt_ckks_literal_of(p)->logn);
  assert_non_null(c1);
  const size_t c1_bytes = sizeof(uint64_t) * ((size_t)ct->level + 1) << bt_ckks_literal_of(p)->logn;
  memcpy(c1, ct->c[1], c1_bytes);
  memset(ct->c[1], 0, c1_bytes);
  bt_test_expect_fail(bt_client_decrypt_model(c, &m, &sc, &h2), BT_E_FORMAT, "trivial", "a forged model");
  bt_enc_epoch loss = {.tag = *bt_client_tag(c), .epoch = 1, .ct = ct};
  double v;
  bt_answer a;
  /* decide: the client's record bounds the decryptions */
  bt_early_stop es;
  bt_early_stop_init(&es, 5, 3);
  bt_test_expect_fail(bt_client_decide(c, &es, &loss, &v, &a), BT_E_FORMAT, "trivial", "a forged loss");
  assert_int_equal(es.stopped, 1); /* a refused loss ends the run */
  assert_int_equal(a.go_on, 0);
  assert_int_equal(a.epoch, 1);
  memcpy(ct->c[1], c1, c1_bytes);
  loss.epoch = 2;
  bt_test_expect_fail(bt_client_decide(c, &es, &loss, &v, &a), BT_E_ARG, "said stop", "a loss after the stop");
  bt_early_stop_init(&es, 5, 2);
  loss.epoch = 1;
  BT_CHECK(bt_client_decide(c, &es, &loss, &v, &a));
  assert_int_equal(a.go_on, 1);
  assert_true(v == bt_release_round(v));
  bt_test_expect_fail(bt_client_decide(c, &es, &loss, &v, &a), BT_E_FORMAT, "each epoch once", "a second decision");
  loss.epoch = 3;
  bt_test_expect_fail(bt_client_decide(c, &es, &loss, &v, &a), BT_E_FORMAT, "decides epoch 2", "an epoch skipped");
  loss.epoch = 2;
  BT_CHECK(bt_client_decide(c, &es, &loss, &v, &a));
  assert_int_equal(a.go_on, 0); /* the last agreed epoch */
  loss.epoch = 3;
  bt_test_expect_fail(bt_client_decide(c, &es, &loss, &v, &a), BT_E_ARG, "beyond the 2 epochs", "an epoch beyond the agreed");
  free(c1);
  bt_ciphertext_free(ct);
  bt_plain_head_clear(&h);
  bt_enc_dataset_clear(&d);
  bt_plain_head_clear(&sc);
  bt_eval_bundle_clear(&eb);
  bt_client_free(c);
}

/* The client's whitening: whitened training rows have identity covariance
 * (up to the ridge, and zero along a direction the rows do not span), the
 * projection survives a scaler file, and folding it into weights gives the
 * same logits on standardised rows as the weights give on whitened ones. */
static uint64_t lcg_state = 88172645463325252ull;
static double uniform(void) { /* xorshift64: the same rows on every machine */
  lcg_state ^= lcg_state << 13, lcg_state ^= lcg_state >> 7, lcg_state ^= lcg_state << 17;
  return (double)(lcg_state >> 11) * 0x1p-53 - 0.5;
}

static void whitening(void **state) {
  (void)state;
  enum { N = 500, D = 6, C = 3, F = D + 1 };
  static float x[N * D];
  for (int i = 0; i < N; i++) { /* correlated columns, the last one a combination of two others */
    const double a = uniform(), b = uniform(), c = uniform(), d = uniform(), e = uniform();
    const double row[D] = {10 + 3 * a, 2 * a + 0.5 * b, -4 + b - c, 0.01 * d + c, 7 * e - a, 2 * a - c};
    for (int j = 0; j < D; j++) x[i * D + j] = (float)row[j];
  }
  bt_job_tag tag = {.batch = 8, .features = F, .classes = C};
  memset(tag.keyset, 7, sizeof tag.keyset);
  bt_plain_head sc, sc2 = {0}, std_only;
  BT_CHECK(bt_scaler_fit(&tag, x, N, D, &sc));
  assert_null(sc.proj);
  bt_test_expect_fail(bt_scaler_whiten(&sc, x, N, 1e7), BT_E_ARG, "ridge", "a ridge out of range");
  BT_CHECK(bt_scaler_whiten(&sc, x, N, 1e-10));
  assert_non_null(sc.proj);
  for (int k = 0; k < D; k++) { /* each row's largest entry is positive; the unspanned direction's row is zero */
    int big = 0;
    for (int j = 1; j < D; j++)
      if (fabs(sc.proj[k * D + j]) > fabs(sc.proj[k * D + big])) big = j;
    if (k < D - 1) assert_true(sc.proj[k * D + big] > 0);
    else assert_true(sc.proj[k * D + big] == 0);
  }
  static double u[N * F];
  bt_scaler_apply(&sc, x, N, NULL, u);
  double worst_off = 0, worst_diag = 0, mean0 = 0;
  for (int a = 0; a < D; a++) {
    double m = 0;
    for (int i = 0; i < N; i++) m += u[i * F + a];
    mean0 = fmax(mean0, fabs(m / N));
    for (int b = 0; b < D; b++) {
      double s = 0;
      for (int i = 0; i < N; i++) s += u[i * F + a] * u[i * F + b];
      s /= N;
      if (a != b) worst_off = fmax(worst_off, fabs(s));
      else if (a < D - 1) worst_diag = fmax(worst_diag, fabs(s - 1)); /* the spanned directions */
      else assert_true(s == 0);                                     /* the one they do not span: dropped */
    }
  }
  printf("whitening: |mean| <= %.1e, |cov - I| <= %.1e on the diagonal, %.1e off it\n", mean0, worst_diag, worst_off);
  assert_true(mean0 < 1e-6 && worst_diag < 5e-5 && worst_off < 1e-5);
  for (int i = 0; i < N; i++) assert_true(u[i * F + D] == 1); /* the bias column */

  /* the default ridge: 2e-3 dim / n, clamped */
  assert_true(fabs(bt_scaler_default_ridge(128, 2048) - 1.25e-4) < 1e-15);
  assert_true(bt_scaler_default_ridge(1, 1u << 30) == 1e-6 && bt_scaler_default_ridge(4096, 1) == 1);

  /* folding: W [P s; 1] = fold(W) [s; 1] */
  double w[C * F], wf[C * F];
  for (int i = 0; i < C * F; i++) w[i] = wf[i] = uniform();
  BT_CHECK(bt_scaler_fold(&sc, wf));
  for (int c = 0; c < C; c++) assert_true(wf[c * F + D] == w[c * F + D]); /* the bias stays */
  std_only = sc;
  std_only.proj = NULL;
  static double s[N * F];
  bt_scaler_apply(&std_only, x, N, NULL, s);
  double worst = 0, zmag = 0;
  for (int i = 0; i < N; i++)
    for (int c = 0; c < C; c++) {
      double z1 = 0, z2 = 0;
      for (int j = 0; j < F; j++) z1 += w[c * F + j] * u[i * F + j], z2 += wf[c * F + j] * s[i * F + j];
      worst = fmax(worst, fabs(z1 - z2));
      zmag = fmax(zmag, fabs(z1));
    }
  assert_true(worst < 1e-6 * (1 + zmag));
  const bt_plain_head model = {.tag = tag, .epoch = 1, .dim = D, .classes = C, .mean = sc.mean, .sd = sc.sd, .w = wf};
  double *z = malloc(N * C * sizeof *z);
  assert_non_null(z);
  bt_plain_head_logits(&model, x, N, z); /* the folded model on raw features */
  for (int i = 0; i < N; i++)
    for (int c = 0; c < C; c++) {
      double z1 = 0;
      for (int j = 0; j < F; j++) z1 += w[c * F + j] * u[i * F + j];
      assert_true(fabs(z[i * C + c] - z1) < 1e-6 * (1 + zmag));
    }
  free(z);

  /* the projection in a scaler container; never in a model's */
  uint8_t *buf;
  size_t len;
  bt_ckks_params *none = NULL;
  BT_CHECK(bt_pipeline_encode(BT_IO_SCALER, &sc, NULL, &buf, &len));
  BT_CHECK(bt_pipeline_decode(BT_IO_SCALER, buf, len, 0, &none, &tag, &sc2));
  bt_free_secret(buf, len);
  assert_non_null(sc2.proj);
  assert_memory_equal(sc2.proj, sc.proj, sizeof(double) * D * D);
  bt_plain_head_clear(&sc2);
  bt_plain_head bad = model;
  bad.proj = sc.proj;
  bt_test_expect_fail(bt_pipeline_encode(BT_IO_PLAIN_MODEL, &bad, NULL, &buf, &len), BT_E_ARG, "folded",
                      "a model with a projection");
  BT_CHECK(bt_pipeline_encode(BT_IO_SCALER, &std_only, NULL, &buf, &len)); /* standardisation only */
  BT_CHECK(bt_pipeline_decode(BT_IO_SCALER, buf, len, 0, &none, &tag, &sc2));
  bt_free_secret(buf, len);
  assert_null(sc2.proj);
  bt_plain_head_clear(&sc2);

  /* refusals: not a fitted scaler, features that are not finite */
  bt_test_expect_fail(bt_scaler_whiten(&sc2, x, N, 0), BT_E_ARG, "fitted", "whitening without a scaler");
  x[3] = NAN;
  BT_CHECK(bt_scaler_fit(&tag, x, N, D, &sc2));
  bt_test_expect_fail(bt_scaler_whiten(&sc2, x, N, 0), BT_E_ARG, "finite", "a NaN feature");
  bt_plain_head_clear(&sc2);
  bt_plain_head_clear(&sc);
}

int main(void) {
  bt_test_seed();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(files_round_trip),
      cmocka_unit_test(rotations_are_pure),
      cmocka_unit_test(client_and_job),
      cmocka_unit_test(hostile_returns),
      cmocka_unit_test(whitening),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

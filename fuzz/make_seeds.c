/* Writes the seed corpora of the fuzz targets that need key material or
 * pipeline files, each a few small valid inputs prefixed with the selector
 * byte its target reads first:
 *   make_seeds DIR
 * fills DIR/fuzz_stream, DIR/fuzz_pipeline, DIR/fuzz_decrypt, DIR/fuzz_report,
 * DIR/fuzz_npy and DIR/fuzz_idx (which must exist).  The committed corpora
 * under fuzz/corpus/ were made with it (see docs/FUZZING.md); the image,
 * npz and safetensors seeds are copies of test fixtures.  Deterministic:
 * every key comes from a fixed seed, the decrypt target's key set from
 * BT_INSECURE_TEST_SEED = FUZZ_TEST_SEED. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blindtuner/io.h"
#include "blindtuner/pipeline.h"
#include "blindtuner/vision_data.h"
#include "fuzz_common.h"

static const char *out_dir;
static int failed;

static void check(bt_status st, const char *what) {
  if (st) {
    fprintf(stderr, "make_seeds: %s: %s\n", what, bt_last_error());
    exit(1);
  }
}

/* DIR/target/name = selector byte (unless sel < 0) + bytes */
static void put(const char *target, const char *name, int sel, const uint8_t *b, size_t n) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s/%s", out_dir, target, name);
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(1);
  }
  uint8_t s = (uint8_t)sel;
  int bad = (sel >= 0 && fwrite(&s, 1, 1, f) != 1) || (n && fwrite(b, 1, n, f) != n);
  bad |= fclose(f) != 0;
  if (bad) failed = 1;
}

/* a file made by one of the project's writers, re-read and put */
static void put_file(const char *target, const char *name, int sel, const char *src) {
  uint8_t *b;
  size_t n;
  check(bt_read_file(src, &b, &n), src);
  put(target, name, sel, b, n);
  bt_free(b);
  unlink(src);
}

static void put_pipeline(const char *target, const char *name, int sel, bt_io_kind kind, const void *obj,
                         const bt_ckks_params *p) {
  uint8_t *b;
  size_t n;
  check(bt_pipeline_encode(kind, obj, p, &b, &n), name);
  /* every seed must load as it is */
  check(bt_pipeline_validate_buffer(kind, b, n, p), name);
  put(target, name, sel, b, n);
  bt_free_secret(b, n);
}

static bt_ciphertext *encrypt_at(const bt_ckks_params *p, const bt_secret_key *sk, bt_prng *g, int logslots,
                                 int level, double v) {
  bt_plaintext *pt;
  bt_ciphertext *ct;
  double vals[4] = {v, -v, 0.5 * v, 1};
  check(bt_plaintext_new(p, &pt), "plaintext");
  check(bt_ciphertext_new(p, &ct), "ciphertext");
  check(bt_ckks_encode_real(p, vals, 4, logslots, level, bt_ckks_default_scale(p), pt), "encode");
  check(bt_encrypt_sk(sk, pt, g, ct), "encrypt");
  bt_plaintext_free(pt);
  return ct;
}

/* fuzz_stream and fuzz_pipeline: objects of the small parameters */
static void small_seeds(void) {
  bt_ckks_params *p = fuzz_small_params();
  const uint8_t *hash = bt_ckks_params_hash(p);
  bt_prng g;
  uint8_t seed[BT_SEED_BYTES] = {0x5e, 0xed};
  bt_prng_init(&g, seed);
  bt_secret_key *sk;
  bt_switch_key *rk;
  bt_eval_keys *ek;
  bt_encaps_key *to_sparse;
  bt_switch_key *to_dense;
  const int steps[2] = {1, -2};
  check(bt_keygen_secret(p, &g, &sk), "secret key");
  check(bt_keygen_relin(sk, &g, &rk), "relin key");
  check(bt_eval_keys_new(p, &ek), "eval keys");
  check(bt_keygen_eval(sk, &g, 1, steps, 2, 1, ek), "eval keys");
  /* the weight an eval bundle of these parameters must carry */
  const int hw = bt_job_encaps_weight(p);
  check(bt_keygen_encapsulation(sk, hw ? hw : 8, &g, &to_sparse, &to_dense), "encapsulation keys");

  /* fuzz_stream: selector = codec (see fuzz_stream.c) */
  uint8_t *b;
  size_t n;
  check(bt_io_write_params(p, &b, &n), "params");
  put("fuzz_stream", "params", 0, b, n);
  bt_free(b);
  check(bt_io_write_secret_key(sk, &b, &n), "secret key");
  put("fuzz_stream", "secret-key", 1, b, n);
  bt_free_secret(b, n);
  check(bt_io_write_switch_key(rk, &b, &n), "switch key");
  put("fuzz_stream", "switch-key", 2, b, n);
  bt_free(b);
  check(bt_io_write_eval_keys(ek, &b, &n), "eval keys");
  put("fuzz_stream", "eval-keys", 3, b, n);
  bt_free(b);
  check(bt_io_encode(&fuzz_encaps_codec, to_sparse, hash, &b, &n), "encapsulation key");
  put("fuzz_stream", "encaps-key", 4, b, n);
  bt_free(b);
  bt_ciphertext *ct = encrypt_at(p, sk, &g, 2, 2, 1.5);
  check(bt_io_write_ciphertext(ct, &b, &n), "ciphertext");
  put("fuzz_stream", "ciphertext", 5, b, n);
  bt_free(b);

  /* fuzz_pipeline: selector = file kind (see fuzz_pipeline.c) */
  const bt_job_tag tag = FUZZ_TAG;
  bt_secret_bundle sb = {tag, sk};
  put_pipeline("fuzz_pipeline", "secret-bundle", 0, BT_IO_SECRET_BUNDLE, &sb, p);
  bt_eval_bundle eb = {tag, ek, to_sparse, to_dense};
  put_pipeline("fuzz_pipeline", "eval-bundle", 1, BT_IO_EVAL_BUNDLE, &eb, p);
  bt_eval_bundle eb0 = {tag, ek, NULL, NULL};
  put_pipeline("fuzz_pipeline", "eval-bundle-plain", 1, BT_IO_EVAL_BUNDLE, &eb0, p);
  bt_ciphertext *x[2] = {ct, encrypt_at(p, sk, &g, 2, 1, -2)};
  bt_ciphertext *y = encrypt_at(p, sk, &g, 2, 2, 1);
  bt_enc_batch batch[2] = {{3, x, y}, {1, x, y}};
  bt_enc_dataset ds = {tag, BT_SET_TRAIN, 4, 2, 2, 1, batch};
  put_pipeline("fuzz_pipeline", "dataset", 2, BT_IO_DATASET, &ds, p);
  bt_enc_dataset ts = {tag, BT_SET_TEST, 3, 1, 1, 0, batch};
  put_pipeline("fuzz_pipeline", "dataset-test", 2, BT_IO_DATASET, &ts, p);
  bt_enc_epoch ep = {tag, 3, x[1]};
  put_pipeline("fuzz_pipeline", "model", 3, BT_IO_MODEL, &ep, p);
  put_pipeline("fuzz_pipeline", "loss", 4, BT_IO_LOSS, &ep, p);
  bt_checkpoint cp = {.tag = tag, .epochs_done = 2, .stopped = 0, .lr = 0.5, .momentum = 0.9, .seed = 7,
                      .train_s = 1.5, .val_s = 0.25, .steps = 10, .bootstraps = 3, .a = ct};
  put_pipeline("fuzz_pipeline", "checkpoint", 5, BT_IO_CHECKPOINT, &cp, p);
  bt_answer an = {tag, 2, 1};
  put_pipeline("fuzz_pipeline", "answer", 6, BT_IO_ANSWER, &an, p);
  int rows[2] = {4, 1};
  bt_enc_logits lg = {tag, 5, 2, rows, x};
  put_pipeline("fuzz_pipeline", "logits", 7, BT_IO_LOGITS, &lg, p);
  double mean[3] = {0.5, -1, 2}, sd[3] = {1, 2, 0.5}, w[8] = {1, 2, 3, 4, -1, -2, -3, -4};
  bt_plain_head hm = {tag, 3, 3, 2, mean, sd, w, NULL};
  put_pipeline("fuzz_pipeline", "plain-model", 8, BT_IO_PLAIN_MODEL, &hm, p);
  bt_plain_head hs = {tag, 0, 3, 2, mean, sd, NULL, NULL};
  put_pipeline("fuzz_pipeline", "scaler", 9, BT_IO_SCALER, &hs, p);
  double proj[9] = {0.5, 0.25, 0, -0.25, 1, 0.125, 0, 0, 2};
  bt_plain_head hwh = {tag, 0, 3, 2, mean, sd, NULL, proj};
  put_pipeline("fuzz_pipeline", "scaler-whitened", 9, BT_IO_SCALER, &hwh, p);
  /* 10: eval params (an eval bundle), 11: summary (any file) */
  check(bt_pipeline_encode(BT_IO_EVAL_BUNDLE, &eb0, p, &b, &n), "eval bundle");
  put("fuzz_pipeline", "eval-params", 10, b, n);
  bt_free(b);
  check(bt_pipeline_encode(BT_IO_CHECKPOINT, &cp, p, &b, &n), "checkpoint");
  put("fuzz_pipeline", "summary-checkpoint", 11, b, n);
  bt_free(b);
  /* 12: the client's decisions record */
  char path[4096];
  bt_decisions d;
  check(bt_decisions_init(&d, 3, 10), "decisions");
  const double losses[4] = {0.9, 0.7, 0.8, 0.75};
  for (int e = 0; e < 4; e++) {
    d.loss[e] = losses[e];
    (void)bt_early_stop_update(&d.es, losses[e]);
  }
  snprintf(path, sizeof path, "%s/decisions.json", out_dir);
  check(bt_decisions_save(path, &tag, &d), "decisions");
  bt_decisions_clear(&d);
  uint8_t *db;
  size_t dn;
  check(bt_read_file(path, &db, &dn), path);
  put("fuzz_pipeline", "decisions", 12, db, dn);
  put("fuzz_report", "decisions", 1, db, dn);
  bt_free(db);
  unlink(path);

  bt_ciphertext_free(x[1]);
  bt_ciphertext_free(y);
  bt_ciphertext_free(ct);
  bt_encaps_key_free(to_sparse);
  bt_switch_key_free(to_dense);
  bt_eval_keys_free(ek);
  bt_switch_key_free(rk);
  bt_secret_key_free(sk);
}

/* fuzz_report: report.json as the server writes it (selector 0) */
static void report_seeds(void) {
  char dir[4096], path[4200];
  snprintf(dir, sizeof dir, "%s/report-dir", out_dir);
  if (mkdir(dir, 0700) != 0) {
    perror(dir);
    exit(1);
  }
  for (int e = 1; e <= 3; e++) {
    bt_job_epoch_report r;
    memset(&r, 0, sizeof r);
    r.epoch = e;
    r.steps = 10 * e;
    r.train_s = 2.5 * e;
    r.validation_s = 0.5;
    r.stats.matmul_s = 1.25;
    r.stats.softmax_s = 0.5;
    r.stats.bootstrap_s = 0.5;
    r.stats.other_s = 0.25;
    r.stats.bootstraps = 3;
    check(bt_report_record_epoch(dir, &r), "report");
  }
  snprintf(path, sizeof path, "%s/report.json", dir);
  put_file("fuzz_report", "report", 0, path);
  snprintf(path, sizeof path, "%s/report.svg", dir);
  unlink(path);
  rmdir(dir);
}

/* fuzz_decrypt: model, loss and logits under the target's key set */
static void decrypt_seeds(void) {
  bt_client *c;
  bt_eval_bundle eb;
  check(bt_client_keygen(FUZZ_PRESET, BT_ALLOW_INSECURE, FUZZ_DIM, FUZZ_CLASSES, FUZZ_BATCH, 1, &c, &eb), "keygen");
  bt_eval_bundle_clear(&eb);
  const bt_ckks_params *p = bt_client_params(c);
  const bt_job_tag tag = *bt_client_tag(c);
  bt_hemat_layout L;
  check(bt_job_layout(p, &tag, &L, NULL), "layout");
  /* the secret key, from the client's own secret bundle */
  uint8_t *b;
  size_t n;
  bt_ckks_params *q = NULL;
  bt_secret_bundle sb;
  check(bt_client_write(c, &b, &n), "secret bundle");
  check(bt_pipeline_decode(BT_IO_SECRET_BUNDLE, b, n, BT_ALLOW_INSECURE, &q, NULL, &sb), "secret bundle");
  bt_free_secret(b, n);
  bt_prng g;
  uint8_t seed[BT_SEED_BYTES] = {0xde, 0xc0};
  bt_prng_init(&g, seed);
  /* level 0 and level 1: small files; the model at both */
  /* the key refers to the bundle's copy of the parameters (the same hash) */
  bt_ciphertext *c0 = encrypt_at(q, sb.sk, &g, L.logslots, 0, 0.25);
  bt_ciphertext *c1 = encrypt_at(q, sb.sk, &g, L.logslots, 1, -0.5);
  bt_enc_epoch m0 = {tag, 1, c0}, m1 = {tag, 2, c1};
  put_pipeline("fuzz_decrypt", "model-l0", 0, BT_IO_MODEL, &m0, p);
  put_pipeline("fuzz_decrypt", "model-l1", 0, BT_IO_MODEL, &m1, p);
  put_pipeline("fuzz_decrypt", "loss", 1, BT_IO_LOSS, &m0, p);
  put_pipeline("fuzz_decrypt", "decide", 3, BT_IO_LOSS, &m0, p);
  bt_ciphertext *z[2] = {c0, c1};
  int rows[2] = {FUZZ_BATCH, 1};
  bt_enc_logits lg = {tag, FUZZ_BATCH + 1, 2, rows, z};
  put_pipeline("fuzz_decrypt", "logits", 2, BT_IO_LOGITS, &lg, p);
  bt_ciphertext_free(c0);
  bt_ciphertext_free(c1);
  bt_secret_bundle_clear(&sb);
  bt_ckks_params_free(q);
  bt_client_free(c);
}

/* fuzz_npy: .npy files from the project's writer (selector 0 features, 1 labels) */
static void npy_seeds(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s/seed.npy", out_dir);
  const float f[6] = {1, -2, 3.5f, 0, 0.25f, 7};
  const int64_t fs[2] = {2, 3}, l[3] = {0, 1, 1}, ls[1] = {3};
  check(bt_npy_write_f32(path, f, 2, fs), "npy");
  put_file("fuzz_npy", "features", 0, path);
  check(bt_npy_write_i64(path, l, 1, ls), "npy");
  put_file("fuzz_npy", "labels", 1, path);
}

/* fuzz_idx: plain (not gzip'd) IDX pairs; the input is a u16 length of the
 * images file, the images file, then the labels file (see fuzz_idx.c) */
static void idx_seeds(void) {
  uint8_t b[2 + 16 + 3 * 2 * 2 + 8 + 3] = {0};
  const size_t il = 16 + 12;
  b[0] = (uint8_t)il;
  b[1] = (uint8_t)(il >> 8);
  uint8_t *im = b + 2, *lb = b + 2 + il;
  im[2] = 8, im[3] = 3, im[7] = 3, im[11] = 2, im[15] = 2;
  for (int i = 0; i < 12; i++) im[16 + i] = (uint8_t)(i * 21);
  lb[2] = 8, lb[3] = 1, lb[7] = 3;
  lb[8] = 0, lb[9] = 2, lb[10] = 1;
  put("fuzz_idx", "plain", -1, b, sizeof b);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_seeds DIR\n");
    return 2;
  }
  out_dir = argv[1];
  if (setenv("BT_INSECURE_TEST_SEED", FUZZ_TEST_SEED, 1) != 0) return 1;
  if (bt_init()) return 1;
  small_seeds();
  report_seeds();
  decrypt_seeds();
  npy_seeds();
  idx_seeds();
  return failed;
}

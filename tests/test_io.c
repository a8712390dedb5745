/* Container format tests: every kind round-trips (reloaded objects still
 * decrypt, encrypt, relinearise and rotate, judged by measured precision),
 * and every kind of bad input is refused with the right status and a message
 * that says what is wrong, never a crash.  Saves are atomic: a failed save
 * leaves nothing behind and never damages the file it was replacing. */
#include <complex.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "blindtuner/ckks.h"
#include "blindtuner/io.h"
#include "testutil.h"

/* Header field offsets from docs/FORMAT.md, restated here so the tests
 * check the documented layout rather than the implementation's constants. */
enum { H_VERSION = 8, H_KIND = 10, H_FLAGS = 12, H_HASH = 16, H_LENGTH = 48, H_SUM = 56, H_END = 88 };

typedef struct fixture {
  bt_ckks_params *p, *other; /* INSECURE-n12 and INSECURE-n12-sparse */
  bt_secret_key *sk;
  bt_public_key *pk;
  bt_eval_keys *ek;
  bt_evaluator *ev;
  bt_prng g;
  size_t slots;
  int logslots;
  char dir[256];
} fixture;

static const int rot_steps[] = {1, -1, 5};

static bt_ckks_params *make_params(const char *name) {
  bt_ckks_literal lit;
  bt_ckks_params *p = NULL;
  if (bt_ckks_preset(name, &lit) || bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &p)) return NULL;
  return p;
}

static int group_setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f || !(f->p = make_params("INSECURE-n12")) || !(f->other = make_params("INSECURE-n12-sparse")))
    return -1;
  bt_test_prng(&f->g, "io");
  f->logslots = bt_ckks_logn(f->p) - 1;
  f->slots = (size_t)1 << f->logslots;
  if (bt_keygen_secret(f->p, &f->g, &f->sk) || bt_keygen_public(f->sk, &f->g, &f->pk) ||
      bt_eval_keys_new(f->p, &f->ek) ||
      bt_keygen_eval(f->sk, &f->g, 1, rot_steps, sizeof rot_steps / sizeof *rot_steps, 1, f->ek) ||
      bt_evaluator_new(f->p, f->ek, &f->ev))
    return -1;
  const char *tmp = getenv("TMPDIR");
  snprintf(f->dir, sizeof f->dir, "%s/bt-io-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(f->dir)) return -1;
  *state = f;
  return 0;
}

static int group_teardown(void **state) {
  fixture *f = *state;
  /* the tests remove what they create; a leftover means a test failed and
   * is kept for inspection */
  if (rmdir(f->dir) != 0) printf("  note: %s not removed (%s)\n", f->dir, strerror(errno));
  bt_evaluator_free(f->ev);
  bt_eval_keys_free(f->ek);
  bt_public_key_free(f->pk);
  bt_secret_key_free(f->sk);
  bt_ckks_params_free(f->p);
  bt_ckks_params_free(f->other);
  bt_prng_wipe(&f->g);
  free(f);
  return 0;
}

/* ---- helpers ---- */
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

static void write_file(const char *path, const uint8_t *buf, size_t len) {
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  assert_int_equal(fwrite(buf, 1, len, fp), len);
  assert_int_equal(fclose(fp), 0);
}

static uint8_t *dup_buf(const uint8_t *b, size_t len) {
  uint8_t *c = malloc(len + 1);
  memcpy(c, b, len);
  return c;
}

static void random_values(bt_prng *g, double complex *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double re = (double)(bt_prng_u64(g) >> 11) / 9007199254740992.0 * 2 - 1;
    double im = (double)(bt_prng_u64(g) >> 11) / 9007199254740992.0 * 2 - 1;
    v[i] = (re + I * im) / sqrt(2);
  }
}

static bt_ciphertext *encrypt_values(fixture *f, const double complex *v, int level, int use_pk) {
  bt_plaintext *pt;
  bt_ciphertext *ct;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_ciphertext_new(f->p, &ct));
  BT_CHECK(bt_ckks_encode(f->p, v, f->slots, f->logslots, level, bt_ckks_default_scale(f->p), pt));
  if (use_pk) BT_CHECK(bt_encrypt_pk(f->pk, pt, &f->g, ct));
  else BT_CHECK(bt_encrypt_sk(f->sk, pt, &f->g, ct));
  bt_plaintext_free(pt);
  return ct;
}

/* Decrypts with `sk`, prints and checks precision against `want`. */
static void expect_values(const fixture *f, const bt_secret_key *sk, const bt_ciphertext *ct,
                          const double complex *want, const char *what, double bar) {
  bt_plaintext *pt;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_decrypt(sk, ct, pt));
  size_t n = (size_t)1 << ct->logslots;
  double complex *got = malloc(n * sizeof *got);
  BT_CHECK(bt_ckks_decode(pt, got));
  bt_precision pr = bt_precision_measure(want, got, n);
  char label[128];
  snprintf(label, sizeof label, "%s: min bits (mean %.1f)", what, pr.mean_bits);
  bt_test_report(label, pr.min_bits, "bits", bar);
  if (pr.min_bits < bar) fail_msg("%s: precision %.2f bits below %.2f", what, pr.min_bits, bar);
  free(got);
  bt_plaintext_free(pt);
}

static void assert_same_ct(const bt_ciphertext *a, const bt_ciphertext *b) {
  assert_int_equal(a->level, b->level);
  assert_int_equal(a->degree, b->degree);
  assert_int_equal(a->logslots, b->logslots);
  assert_true(a->scale == b->scale);
  size_t words = (size_t)(a->level + 1) * bt_ckks_n(a->params);
  for (int i = 0; i <= a->degree; i++)
    assert_memory_equal(a->c[i], b->c[i], words * sizeof(uint64_t));
}

static void assert_same_switch_key(const bt_ckks_params *p, const bt_switch_key *a,
                                   const bt_switch_key *b) {
  size_t words = (size_t)(bt_ckks_max_level(p) + 1 + bt_ckks_num_special(p)) * bt_ckks_n(p);
  assert_true(a->galois == b->galois);
  assert_int_equal(a->digits, b->digits);
  for (int j = 0; j < a->digits; j++) {
    assert_memory_equal(a->b[j], b->b[j], words * sizeof(uint64_t));
    assert_memory_equal(a->a[j], b->a[j], words * sizeof(uint64_t));
  }
}

/* ---- round trips ---- */
static void params_round_trip(void **state) {
  (void)state;
  const char *names[] = {"INSECURE-n10", "INSECURE-n12", "INSECURE-n12-sparse"};
  for (size_t t = 0; t < sizeof names / sizeof *names; t++) {
    bt_ckks_params *p = make_params(names[t]), *q;
    assert_non_null(p);
    uint8_t *buf;
    size_t len;
    BT_CHECK(bt_io_write_params(p, &buf, &len));
    printf("  %s: parameter container %zu bytes\n", names[t], len);
    BT_CHECK(bt_io_read_params(buf, len, BT_ALLOW_INSECURE, &q));
    assert_memory_equal(bt_ckks_params_hash(p), bt_ckks_params_hash(q), BT_PARAMS_HASH_BYTES);
    assert_string_equal(bt_ckks_literal_of(q)->name, names[t]);
    assert_int_equal(bt_ckks_literal_of(q)->log_scale, bt_ckks_literal_of(p)->log_scale);
    assert_int_equal(bt_ckks_literal_of(q)->hamming_weight, bt_ckks_literal_of(p)->hamming_weight);
    bt_ckks_params_free(q);
    /* INSECURE parameters stay refused without permission */
    bt_test_expect_fail(bt_io_read_params(buf, len, 0, &q), BT_E_INSECURE, "INSECURE", "insecure refused");
    assert_null(q);
    bt_io_info info;
    BT_CHECK(bt_io_inspect_buffer(buf, len, &info));
    assert_int_equal(info.kind, BT_IO_PARAMS);
    assert_int_equal(info.version, BT_IO_VERSION);
    assert_int_equal(info.payload_bytes, len - BT_IO_HEADER_BYTES);
    bt_free(buf);
    bt_ckks_params_free(p);
  }

  /* a name that is no preset survives the handle's lifetime */
  bt_ckks_literal lit;
  BT_CHECK(bt_ckks_preset("INSECURE-n10", &lit));
  char custom[16];
  snprintf(custom, sizeof custom, "my-set-%d", 7);
  lit.name = custom;
  bt_ckks_params *p, *q;
  BT_CHECK(bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &p));
  uint8_t *buf;
  size_t len;
  BT_CHECK(bt_io_write_params(p, &buf, &len));
  bt_ckks_params_free(p);
  BT_CHECK(bt_io_read_params(buf, len, BT_ALLOW_INSECURE, &q));
  memset(custom, 'x', sizeof custom - 1);
  assert_string_equal(bt_ckks_literal_of(q)->name, "my-set-7");
  bt_ckks_params_free(q);
  bt_free(buf);
}

static void params_files_and_corruption(void **state) {
  fixture *f = *state;
  char path[512];
  path_in(f, "params.bt", path, sizeof path);
  bt_ckks_params *q;
  BT_CHECK(bt_io_save_params(path, f->p));
  BT_CHECK(bt_io_load_params(path, BT_ALLOW_INSECURE, &q));
  assert_memory_equal(bt_ckks_params_hash(f->p), bt_ckks_params_hash(q), BT_PARAMS_HASH_BYTES);
  bt_ckks_params_free(q);
  size_t len;
  uint8_t *buf = bt_test_read_file(path, &len);
  assert_int_equal(unlink(path), 0);

  /* every truncation of a small blob, in memory and as a file */
  for (size_t cut = 0; cut < len; cut++) {
    bt_test_expect_fail(bt_io_read_params(buf, cut, BT_ALLOW_INSECURE, &q), BT_E_FORMAT, NULL, "truncated");
    assert_null(q);
  }
  for (size_t cut = 0; cut < len; cut += 7) {
    write_file(path, buf, cut);
    bt_test_expect_fail(bt_io_load_params(path, BT_ALLOW_INSECURE, &q), BT_E_FORMAT, path, "truncated file");
  }
  assert_int_equal(unlink(path), 0);
  printf("  all %zu truncations refused, e.g. %s\n", len, bt_last_error());

  /* a changed prime (valid checksum): prime generation differs */
  uint8_t *c = dup_buf(buf, len);
  c[len - 8] ^= 2;
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_params(c, len, BT_ALLOW_INSECURE, &q), BT_E_PARAMS, "prime generation",
              "changed prime");
  printf("  refused: %s\n", bt_last_error());
  /* a parameter container must carry a zero parameter hash */
  memcpy(c, buf, len);
  c[H_HASH + 3] = 1;
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_params(c, len, BT_ALLOW_INSECURE, &q), BT_E_FORMAT, "zero", "hash");
  /* invalid literal fields are refused by the parameter validation */
  memcpy(c, buf, len);
  bt_test_put_le(c + H_END, 20, 4); /* logn */
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_params(c, len, BT_ALLOW_INSECURE, &q), BT_E_PARAMS, "log2 N", "logn");
  memcpy(c, buf, len);
  bt_test_put_le(c + H_END + 4, 0, 4); /* nq */
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_params(c, len, BT_ALLOW_INSECURE, &q), BT_E_FORMAT, "primes", "nq");
  free(c);
  free(buf);
}

static void ciphertext_round_trip(void **state) {
  fixture *f = *state;
  double complex *v = malloc(f->slots * sizeof *v), *w = malloc(f->slots * sizeof *w);
  random_values(&f->g, v, f->slots);
  const int top = bt_ckks_max_level(f->p);
  bt_ciphertext *seeded = encrypt_values(f, v, top, 0), *plain = encrypt_values(f, v, top, 1);
  assert_true(seeded->seeded);
  uint8_t *b1, *b2;
  size_t n1, n2;
  BT_CHECK(bt_io_write_ciphertext(seeded, &b1, &n1));
  BT_CHECK(bt_io_write_ciphertext(plain, &b2, &n2));
  printf("  level-%d ciphertext: %zu bytes seeded, %zu bytes unseeded (ratio %.3f)\n", top, n1, n2,
         (double)n1 / (double)n2);
  assert_true((double)n1 < 0.52 * (double)n2);

  bt_ciphertext *r1, *r2;
  BT_CHECK(bt_io_read_ciphertext(b1, n1, f->p, &r1));
  BT_CHECK(bt_io_read_ciphertext(b2, n2, f->p, &r2));
  assert_true(r1->seeded);
  assert_memory_equal(r1->seed, seeded->seed, BT_SEED_BYTES);
  assert_same_ct(seeded, r1);
  assert_same_ct(plain, r2);
  expect_values(f, f->sk, r1, v, "reloaded seeded ciphertext", 25);
  expect_values(f, f->sk, r2, v, "reloaded unseeded ciphertext", 25);
  bt_free(b1);
  bt_free(b2);

  /* degree 2 (before relinearisation) and a lower level */
  bt_ciphertext *sq, *r3;
  BT_CHECK(bt_ciphertext_new(f->p, &sq));
  BT_CHECK(bt_eval_mul(f->ev, r1, r2, sq));
  assert_int_equal(sq->degree, 2);
  BT_CHECK(bt_io_write_ciphertext(sq, &b1, &n1));
  printf("  degree-2 ciphertext: %zu bytes\n", n1);
  BT_CHECK(bt_io_read_ciphertext(b1, n1, f->p, &r3));
  assert_same_ct(sq, r3);
  BT_CHECK(bt_eval_relin(f->ev, r3, r3));
  BT_CHECK(bt_eval_rescale(f->ev, r3, r3));
  bt_free(b1);
  BT_CHECK(bt_io_write_ciphertext(r3, &b1, &n1));
  bt_ciphertext_free(sq);
  BT_CHECK(bt_io_read_ciphertext(b1, n1, f->p, &sq));
  assert_int_equal(sq->level, top - 1);
  printf("  level-%d ciphertext: %zu bytes\n", sq->level, n1);
  for (size_t i = 0; i < f->slots; i++) w[i] = v[i] * v[i];
  expect_values(f, f->sk, sq, w, "reloaded square (relin, rescale)", 20);
  bt_free(b1);

  /* a stale seeded flag (c1 is not the seed's expansion) costs size, not
   * correctness: c1 is stored in full */
  bt_ciphertext *stale;
  BT_CHECK(bt_ciphertext_new(f->p, &stale));
  BT_CHECK(bt_ciphertext_copy(plain, stale));
  stale->seeded = 1;
  BT_CHECK(bt_io_write_ciphertext(stale, &b1, &n1));
  assert_int_equal(n1, n2);
  bt_ciphertext_free(r3);
  BT_CHECK(bt_io_read_ciphertext(b1, n1, f->p, &r3));
  assert_false(r3->seeded);
  assert_same_ct(plain, r3);
  bt_free(b1);

  /* files */
  char path[512];
  path_in(f, "ct.bt", path, sizeof path);
  BT_CHECK(bt_io_save_ciphertext(path, seeded));
  bt_io_info info;
  BT_CHECK(bt_io_inspect(path, &info));
  assert_int_equal(info.kind, BT_IO_CIPHERTEXT);
  assert_string_equal(bt_io_kind_name(info.kind), "ciphertext");
  assert_memory_equal(info.params_hash, bt_ckks_params_hash(f->p), BT_PARAMS_HASH_BYTES);
  bt_ciphertext *r4;
  BT_CHECK(bt_io_load_ciphertext(path, f->p, &r4));
  assert_same_ct(seeded, r4);
  expect_values(f, f->sk, r4, v, "ciphertext saved and loaded", 25);
  assert_int_equal(unlink(path), 0);

  bt_ciphertext_free(seeded);
  bt_ciphertext_free(plain);
  bt_ciphertext_free(r1);
  bt_ciphertext_free(r2);
  bt_ciphertext_free(r3);
  bt_ciphertext_free(r4);
  bt_ciphertext_free(sq);
  bt_ciphertext_free(stale);
  free(v);
  free(w);
}

static void plaintext_round_trip(void **state) {
  fixture *f = *state;
  double complex *v = malloc(16 * sizeof *v), *w = malloc(16 * sizeof *w);
  random_values(&f->g, v, 16);
  bt_plaintext *pt, *r;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_ckks_encode(f->p, v, 16, 4, 3, 0x1p40, pt));
  uint8_t *buf;
  size_t len;
  BT_CHECK(bt_io_write_plaintext(pt, &buf, &len));
  printf("  level-3 plaintext: %zu bytes\n", len);
  BT_CHECK(bt_io_read_plaintext(buf, len, f->p, &r));
  assert_int_equal(r->level, 3);
  assert_int_equal(r->logslots, 4);
  assert_true(r->scale == 0x1p40);
  assert_memory_equal(r->c, pt->c, 4 * bt_ckks_n(f->p) * sizeof(uint64_t));
  BT_CHECK(bt_ckks_decode(r, w));
  bt_precision pr = bt_precision_measure(v, w, 16);
  bt_test_report("reloaded plaintext decodes: min bits", pr.min_bits, "bits", 30);
  assert_true(pr.min_bits >= 30);
  bt_plaintext_free(r);
  char path[512];
  path_in(f, "pt.bt", path, sizeof path);
  BT_CHECK(bt_io_save_plaintext(path, pt));
  BT_CHECK(bt_io_load_plaintext(path, f->p, &r));
  assert_memory_equal(r->c, pt->c, 4 * bt_ckks_n(f->p) * sizeof(uint64_t));
  assert_int_equal(unlink(path), 0);
  bt_plaintext_free(r);
  bt_free(buf);
  bt_plaintext_free(pt);
  free(v);
  free(w);
}

static void keys_round_trip(void **state) {
  fixture *f = *state;
  const size_t n = bt_ckks_n(f->p);
  const int total = bt_ckks_max_level(f->p) + 1 + bt_ckks_num_special(f->p);
  char path[512];
  uint8_t *buf;
  size_t len;

  /* secret key: 2 bits per coefficient, mode 0600 on disk */
  bt_secret_key *sk;
  BT_CHECK(bt_io_write_secret_key(f->sk, &buf, &len));
  printf("  secret key: %zu bytes\n", len);
  assert_int_equal(len, BT_IO_HEADER_BYTES + n / 4);
  BT_CHECK(bt_io_read_secret_key(buf, len, f->p, &sk));
  assert_memory_equal(sk->s, f->sk->s, (size_t)total * n * sizeof(uint64_t));
  bt_free_secret(buf, len);
  bt_secret_key_free(sk);
  path_in(f, "sk.bt", path, sizeof path);
  BT_CHECK(bt_io_save_secret_key(path, f->sk));
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  BT_CHECK(bt_io_load_secret_key(path, f->p, &sk));
  assert_memory_equal(sk->s, f->sk->s, (size_t)total * n * sizeof(uint64_t));
  assert_int_equal(unlink(path), 0);

  /* public key: b and the seed of a; encrypting with the reloaded key works */
  bt_public_key *pk;
  BT_CHECK(bt_io_write_public_key(f->pk, &buf, &len));
  printf("  public key: %zu bytes\n", len);
  BT_CHECK(bt_io_read_public_key(buf, len, f->p, &pk));
  bt_free(buf);
  size_t qwords = (size_t)(bt_ckks_max_level(f->p) + 1) * n;
  assert_memory_equal(pk->b, f->pk->b, qwords * sizeof(uint64_t));
  assert_memory_equal(pk->a, f->pk->a, qwords * sizeof(uint64_t));
  path_in(f, "pk.bt", path, sizeof path);
  BT_CHECK(bt_io_save_public_key(path, f->pk));
  bt_public_key_free(pk);
  BT_CHECK(bt_io_load_public_key(path, f->p, &pk));
  assert_int_equal(unlink(path), 0);
  double complex *v = malloc(f->slots * sizeof *v), *w = malloc(f->slots * sizeof *w);
  random_values(&f->g, v, f->slots);
  bt_plaintext *pt;
  bt_ciphertext *ct, *z;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_ciphertext_new(f->p, &ct));
  BT_CHECK(bt_ciphertext_new(f->p, &z));
  BT_CHECK(bt_ckks_encode(f->p, v, f->slots, f->logslots, bt_ckks_max_level(f->p),
                          bt_ckks_default_scale(f->p), pt));
  BT_CHECK(bt_encrypt_pk(pk, pt, &f->g, ct));
  expect_values(f, sk, ct, v, "reloaded pk encrypts, reloaded sk decrypts", 25);

  /* one switching key */
  bt_switch_key *k;
  BT_CHECK(bt_io_write_switch_key(f->ek->relin, &buf, &len));
  printf("  relinearisation key: %zu bytes\n", len);
  BT_CHECK(bt_io_read_switch_key(buf, len, f->p, &k));
  assert_same_switch_key(f->p, f->ek->relin, k);
  bt_free(buf);
  bt_switch_key_free(k);
  path_in(f, "rk.bt", path, sizeof path);
  BT_CHECK(bt_io_save_switch_key(path, f->ek->galois[0]));
  BT_CHECK(bt_io_load_switch_key(path, f->p, &k));
  assert_same_switch_key(f->p, f->ek->galois[0], k);
  bt_switch_key_free(k);
  assert_int_equal(unlink(path), 0);

  /* evaluation keys, streamed to a file and back; they still relinearise,
   * rotate and conjugate */
  bt_eval_keys *ek;
  path_in(f, "ek.bt", path, sizeof path);
  BT_CHECK(bt_io_save_eval_keys(path, f->ek));
  assert_int_equal(stat(path, &sb), 0);
  printf("  evaluation keys (relin + %zu Galois): %lld bytes\n", f->ek->ngalois,
         (long long)sb.st_size);
  BT_CHECK(bt_io_load_eval_keys(path, f->p, &ek));
  assert_int_equal(unlink(path), 0);
  assert_non_null(ek->relin);
  assert_int_equal(ek->ngalois, f->ek->ngalois);
  assert_same_switch_key(f->p, f->ek->relin, ek->relin);
  for (size_t i = 0; i < ek->ngalois; i++)
    assert_same_switch_key(f->p, f->ek->galois[i], ek->galois[i]);
  bt_evaluator *ev;
  BT_CHECK(bt_evaluator_new(f->p, ek, &ev));
  BT_CHECK(bt_eval_mul_relin(ev, ct, ct, z));
  BT_CHECK(bt_eval_rescale(ev, z, z));
  BT_CHECK(bt_eval_rotate(ev, z, 5, z));
  for (size_t i = 0; i < f->slots; i++) w[i] = v[(i + 5) % f->slots] * v[(i + 5) % f->slots];
  expect_values(f, f->sk, z, w, "reloaded eval keys: square, rotate 5", 20);
  BT_CHECK(bt_eval_rotate(ev, z, -1, z));
  BT_CHECK(bt_eval_conjugate(ev, z, z));
  for (size_t i = 0; i < f->slots; i++) {
    size_t j = (i + 4) % f->slots;
    w[i] = conj(v[j] * v[j]);
  }
  expect_values(f, f->sk, z, w, "reloaded eval keys: rotate -1, conjugate", 20);
  bt_evaluator_free(ev);
  bt_eval_keys_free(ek);

  /* in memory too, and an empty set */
  BT_CHECK(bt_io_write_eval_keys(f->ek, &buf, &len));
  BT_CHECK(bt_io_read_eval_keys(buf, len, f->p, &ek));
  assert_int_equal(ek->ngalois, f->ek->ngalois);
  bt_eval_keys_free(ek);
  bt_free(buf);
  bt_eval_keys *empty;
  BT_CHECK(bt_eval_keys_new(f->p, &empty));
  BT_CHECK(bt_io_write_eval_keys(empty, &buf, &len));
  assert_int_equal(len, BT_IO_HEADER_BYTES + 8);
  BT_CHECK(bt_io_read_eval_keys(buf, len, f->p, &ek));
  assert_null(ek->relin);
  assert_int_equal(ek->ngalois, 0);
  bt_eval_keys_free(ek);
  bt_eval_keys_free(empty);
  bt_free(buf);

  bt_plaintext_free(pt);
  bt_ciphertext_free(ct);
  bt_ciphertext_free(z);
  bt_public_key_free(pk);
  bt_secret_key_free(sk);
  free(v);
  free(w);
}

static void sparse_secret_key(void **state) {
  fixture *f = *state;
  bt_prng g;
  bt_test_prng(&g, "io-sparse");
  bt_secret_key *sk, *r;
  BT_CHECK(bt_keygen_secret(f->other, &g, &sk));
  uint8_t *buf;
  size_t len;
  BT_CHECK(bt_io_write_secret_key(sk, &buf, &len));
  BT_CHECK(bt_io_read_secret_key(buf, len, f->other, &r));
  size_t words = (size_t)(bt_ckks_max_level(f->other) + 1 + bt_ckks_num_special(f->other)) *
                 bt_ckks_n(f->other);
  assert_memory_equal(r->s, sk->s, words * sizeof(uint64_t));
  bt_secret_key_free(r);
  /* one more non-zero coefficient breaks the fixed Hamming weight */
  size_t j = 0;
  while ((buf[H_END + j / 4] >> (2 * (j % 4)) & 3) != 0) j++;
  buf[H_END + j / 4] |= (uint8_t)(1 << (2 * (j % 4)));
  bt_test_fix_checksum(buf, len);
  bt_test_expect_fail(bt_io_read_secret_key(buf, len, f->other, &r), BT_E_FORMAT, "Hamming weight",
              "sparse weight");
  assert_null(r);
  printf("  refused: %s\n", bt_last_error());
  bt_free_secret(buf, len);
  bt_secret_key_free(sk);
  bt_prng_wipe(&g);
}

/* ---- corrupt input ---- */
static void corrupt_ciphertexts(void **state) {
  fixture *f = *state;
  double complex *v = malloc(f->slots * sizeof *v);
  random_values(&f->g, v, f->slots);
  bt_ciphertext *ct = encrypt_values(f, v, 2, 1), *r;
  uint8_t *buf, *c;
  size_t len;
  BT_CHECK(bt_io_write_ciphertext(ct, &buf, &len));
  c = dup_buf(buf, len); /* one spare byte */

  /* truncated or extended */
  const size_t cuts[] = {0, 1, 8, 55, 87, 88, 89, 100, len / 2, len - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
    bt_test_expect_fail(bt_io_read_ciphertext(buf, cuts[i], f->p, &r), BT_E_FORMAT, NULL, "truncated");
    assert_null(r);
  }
  bt_test_expect_fail(bt_io_read_ciphertext(buf, len - 1, f->p, &r), BT_E_FORMAT, "truncated", "cut");
  printf("  refused: %s\n", bt_last_error());
  c[len] = 0;
  bt_test_expect_fail(bt_io_read_ciphertext(c, len + 1, f->p, &r), BT_E_FORMAT, "unexpected", "extended");

  /* one flipped bit anywhere in the header */
  for (size_t off = 0; off < H_END; off++) {
    memcpy(c, buf, len);
    c[off] ^= 0x10;
    /* the hash and the checksum itself are only caught by the checksum */
    const int summed = (off >= H_HASH && off < H_LENGTH) || off >= H_SUM;
    bt_test_expect_fail(bt_io_read_ciphertext(c, len, f->p, &r), BT_E_FORMAT,
                summed ? "checksum mismatch" : NULL, "header flip");
    assert_null(r);
  }
  /* ... and in the payload */
  const size_t offs[] = {H_END, H_END + 4, H_END + 30, len / 2, len - 1};
  for (size_t i = 0; i < sizeof offs / sizeof *offs; i++) {
    memcpy(c, buf, len);
    c[offs[i]] ^= 0x01;
    bt_test_expect_fail(bt_io_read_ciphertext(c, len, f->p, &r), BT_E_FORMAT, "checksum mismatch",
                "payload flip");
  }
  printf("  refused: %s\n", bt_last_error());

  /* magic, version, kind, parameters */
  memcpy(c, buf, len);
  c[0] = 'X';
  bt_test_expect_fail(bt_io_read_ciphertext(c, len, f->p, &r), BT_E_FORMAT, "magic", "magic");
  memcpy(c, buf, len);
  bt_test_put_le(c + H_VERSION, 2, 2);
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_ciphertext(c, len, f->p, &r), BT_E_FORMAT, "version 2", "version");
  printf("  refused: %s\n", bt_last_error());
  memcpy(c, buf, len);
  bt_test_put_le(c + H_KIND, 18, 2); /* one past the last kind */
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_ciphertext(c, len, f->p, &r), BT_E_FORMAT, "kind 18", "unknown kind");
  memcpy(c, buf, len);
  bt_test_put_le(c + H_FLAGS, 1, 4);
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_ciphertext(c, len, f->p, &r), BT_E_FORMAT, "flags", "flags");
  bt_public_key *pk;
  bt_test_expect_fail(bt_io_read_public_key(buf, len, f->p, &pk), BT_E_FORMAT,
              "holds a ciphertext, expected a public key", "wrong kind");
  assert_null(pk);
  printf("  refused: %s\n", bt_last_error());
  bt_test_expect_fail(bt_io_read_ciphertext(buf, len, f->other, &r), BT_E_PARAMS, "other parameters",
              "other parameters");
  printf("  refused: %s\n", bt_last_error());

  /* field ranges, each with a valid checksum so the field check itself runs */
  const struct {
    size_t off;
    int bytes;
    uint64_t value;
    const char *needle;
  } fields[] = {
      {0, 4, 99, "level"},         {4, 4, 3, "degree"},          {4, 4, 0, "degree"},
      {8, 4, 12, "log2 slots"},    {12, 8, 0, "scale"},          {12, 8, 0xbff0000000000000u, "scale"},
      {12, 8, 0x7ff8000000000000u, "scale"}, {12, 8, 0x7ff0000000000000u, "scale"},
      {20, 4, 2, "seeded"},        {20, 4, 1, "ciphertext needs"}, {0, 4, 1, "ciphertext needs"},
  };
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
    memcpy(c, buf, len);
    bt_test_put_le(c + H_END + fields[i].off, fields[i].value, fields[i].bytes);
    bt_test_fix_checksum(c, len);
    bt_test_expect_fail(bt_io_read_ciphertext(c, len, f->p, &r), BT_E_FORMAT, fields[i].needle,
                fields[i].needle);
    assert_null(r);
  }
  /* a coefficient equal to its prime and one far above it */
  const uint64_t q0 = bt_ckks_q(f->p, 0);
  for (int t = 0; t < 2; t++) {
    memcpy(c, buf, len);
    uint64_t big = t == 0 ? q0 : (((uint64_t)1 << 58) - 1); /* q_0 has 58 bits */
    /* coefficient 0 of limb 0 of c0: the low 58 bits after the 24 field bytes */
    uint64_t word = 0;
    for (int b = 0; b < 8; b++) word |= (uint64_t)c[H_END + 24 + b] << (8 * b);
    word = (word & ~(((uint64_t)1 << 58) - 1)) | big;
    bt_test_put_le(c + H_END + 24, word, 8);
    bt_test_fix_checksum(c, len);
    bt_test_expect_fail(bt_io_read_ciphertext(c, len, f->p, &r), BT_E_FORMAT, "not below the prime",
                "coefficient >= prime");
    assert_null(r);
  }
  printf("  refused: %s\n", bt_last_error());

  free(c);
  bt_free(buf);
  bt_ciphertext_free(ct);
  free(v);
}

static void corrupt_keys(void **state) {
  fixture *f = *state;
  uint8_t *buf;
  size_t len;
  bt_secret_key *sk;
  BT_CHECK(bt_io_write_secret_key(f->sk, &buf, &len));
  /* code 3 is no ternary value */
  buf[H_END + 5] |= 3 << 4;
  bt_test_fix_checksum(buf, len);
  bt_test_expect_fail(bt_io_read_secret_key(buf, len, f->p, &sk), BT_E_FORMAT, "coefficient 22", "code 3");
  assert_null(sk);
  printf("  refused: %s\n", bt_last_error());
  bt_free_secret(buf, len);

  /* a switching key with an even Galois element, or the wrong digit count */
  bt_switch_key *k;
  BT_CHECK(bt_io_write_switch_key(f->ek->galois[0], &buf, &len));
  uint8_t *c = dup_buf(buf, len);
  bt_test_put_le(c + H_END, 4, 8);
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_switch_key(c, len, f->p, &k), BT_E_FORMAT, "Galois element 4", "galois");
  memcpy(c, buf, len);
  bt_test_put_le(c + H_END, 2 * bt_ckks_n(f->p) + 1, 8);
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_switch_key(c, len, f->p, &k), BT_E_FORMAT, "Galois", "galois >= 2N");
  memcpy(c, buf, len);
  bt_test_put_le(c + H_END + 8, 3, 4);
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_switch_key(c, len, f->p, &k), BT_E_FORMAT, "digits", "digits");
  printf("  refused: %s\n", bt_last_error());
  assert_null(k);
  free(c);
  bt_free(buf);

  /* evaluation keys: a count that does not match the payload, a relin key
   * where a Galois key belongs */
  bt_eval_keys *ek;
  BT_CHECK(bt_io_write_eval_keys(f->ek, &buf, &len));
  c = dup_buf(buf, len);
  bt_test_put_le(c + H_END + 4, 1000000, 4);
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_eval_keys(c, len, f->p, &ek), BT_E_FORMAT, "switching keys", "count");
  assert_null(ek);
  memcpy(c, buf, len);
  bt_test_put_le(c + H_END, 0, 4); /* has_relin = 0: the relin key is read as a Galois key */
  bt_test_put_le(c + H_END + 4, (uint64_t)f->ek->ngalois + 1, 4);
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_eval_keys(c, len, f->p, &ek), BT_E_FORMAT, "Galois element 0", "relin");
  assert_null(ek);
  free(c);
  bt_free(buf);
}

static void corrupt_files(void **state) {
  fixture *f = *state;
  char path[512], other[600];
  bt_ciphertext *ct;
  bt_eval_keys *ek;

  /* nonexistent path, directory, empty file */
  path_in(f, "missing.bt", path, sizeof path);
  bt_test_expect_fail(bt_io_load_ciphertext(path, f->p, &ct), BT_E_IO, path, "missing");
  assert_null(ct);
  printf("  refused: %s\n", bt_last_error());
  bt_io_info info;
  bt_test_expect_fail(bt_io_inspect(path, &info), BT_E_IO, path, "inspect missing");
  bt_test_expect_fail(bt_io_load_ciphertext(f->dir, f->p, &ct), BT_E_IO, "regular", "directory");
  path_in(f, "empty.bt", path, sizeof path);
  write_file(path, (const uint8_t *)"", 0);
  bt_test_expect_fail(bt_io_load_ciphertext(path, f->p, &ct), BT_E_FORMAT, "empty file", "empty");
  printf("  refused: %s\n", bt_last_error());
  bt_test_expect_fail(bt_io_inspect(path, &info), BT_E_FORMAT, "empty", "inspect empty");
  assert_int_equal(unlink(path), 0);

  /* wrong kind names both kinds and the path */
  path_in(f, "pk.bt", path, sizeof path);
  BT_CHECK(bt_io_save_public_key(path, f->pk));
  bt_test_expect_fail(bt_io_load_ciphertext(path, f->p, &ct), BT_E_FORMAT,
              "file holds a public key, expected a ciphertext", "file kind");
  assert_non_null(strstr(bt_last_error(), path));
  printf("  refused: %s\n", bt_last_error());
  /* other parameters */
  bt_public_key *pk;
  bt_test_expect_fail(bt_io_load_public_key(path, f->other, &pk), BT_E_PARAMS, "made for other parameters",
              "file params");
  assert_null(pk);
  size_t len;
  uint8_t *buf = bt_test_read_file(path, &len);
  assert_int_equal(unlink(path), 0);

  /* truncated files at several lengths */
  const size_t cuts[] = {1, 87, 88, 200, len / 2, len - 33, len - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
    write_file(path, buf, cuts[i]);
    bt_test_expect_fail(bt_io_load_public_key(path, f->p, &pk), BT_E_FORMAT, "truncated", "truncated file");
    bt_test_expect_fail(bt_io_inspect(path, &info), BT_E_FORMAT, "truncated", "inspect truncated");
  }
  printf("  refused: %s\n", bt_last_error());
  /* a flipped parameter-hash byte reads as corruption, not as other parameters */
  buf[H_HASH] ^= 1;
  write_file(path, buf, len);
  bt_test_expect_fail(bt_io_load_public_key(path, f->p, &pk), BT_E_FORMAT, "checksum mismatch", "hash flip");
  bt_test_expect_fail(bt_io_inspect(path, &info), BT_E_FORMAT, "checksum mismatch", "inspect flip");
  buf[H_HASH] ^= 1;
  /* a coefficient above its prime with a valid checksum, through the file reader */
  bt_test_put_le(buf + H_END, ~(uint64_t)0, 8);
  bt_test_fix_checksum(buf, len);
  write_file(path, buf, len);
  bt_test_expect_fail(bt_io_load_public_key(path, f->p, &pk), BT_E_FORMAT, "not below the prime", "file coef");
  assert_null(pk);
  assert_int_equal(unlink(path), 0);
  free(buf);

  /* streamed evaluation keys: corruption deep in the payload is found by the
   * incremental checksum; corruption of a field is still named as corruption */
  path_in(f, "ek.bt", path, sizeof path);
  BT_CHECK(bt_io_save_eval_keys(path, f->ek));
  BT_CHECK(bt_io_inspect(path, &info));
  assert_int_equal(info.kind, BT_IO_EVAL_KEYS);
  buf = bt_test_read_file(path, &len);
  const size_t offs[] = {H_END, H_END + 8 + 3, len / 2, len - 1};
  for (size_t i = 0; i < sizeof offs / sizeof *offs; i++) {
    buf[offs[i]] ^= 0x40;
    write_file(path, buf, len);
    bt_test_expect_fail(bt_io_load_eval_keys(path, f->p, &ek), BT_E_FORMAT, "checksum mismatch", "ek flip");
    assert_null(ek);
    buf[offs[i]] ^= 0x40;
  }
  printf("  refused: %s\n", bt_last_error());
  snprintf(other, sizeof other, "%s.cut", path);
  write_file(other, buf, len - 100);
  bt_test_expect_fail(bt_io_load_eval_keys(other, f->p, &ek), BT_E_FORMAT, "truncated", "ek cut");
  assert_int_equal(unlink(other), 0);
  assert_int_equal(unlink(path), 0);
  free(buf);
}

/* ---- atomic saves ---- */
static void atomic_saves(void **state) {
  fixture *f = *state;
  char path[512], bad[600];
  double complex *v = malloc(f->slots * sizeof *v);
  random_values(&f->g, v, f->slots);
  bt_ciphertext *a = encrypt_values(f, v, bt_ckks_max_level(f->p), 1);
  bt_ciphertext *b = encrypt_values(f, v, 1, 1), *r;
  const size_t before = dir_entries(f->dir);

  /* into a directory that does not exist */
  path_in(f, "no-such-dir/ct.bt", bad, sizeof bad);
  bt_test_expect_fail(bt_io_save_ciphertext(bad, a), BT_E_IO, bad, "missing directory");
  printf("  refused: %s\n", bt_last_error());
  assert_int_equal(access(bad, F_OK), -1);

  /* a write that fails midway (file size limit) leaves nothing behind */
  path_in(f, "ct.bt", path, sizeof path);
  struct rlimit old, small;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
  small = old;
  small.rlim_cur = 4096;
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
  bt_status st = bt_io_save_ciphertext(path, a);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
  bt_test_expect_fail(st, BT_E_IO, path, "size limit");
  printf("  refused: %s\n", bt_last_error());
  assert_int_equal(access(path, F_OK), -1);
  assert_int_equal(dir_entries(f->dir), before);

  /* saving over an existing file replaces it by rename ... */
  BT_CHECK(bt_io_save_ciphertext(path, a));
  struct stat s1, s2;
  assert_int_equal(stat(path, &s1), 0);
  BT_CHECK(bt_io_save_ciphertext(path, b));
  assert_int_equal(stat(path, &s2), 0);
  assert_true(s1.st_ino != s2.st_ino);
  BT_CHECK(bt_io_load_ciphertext(path, f->p, &r));
  assert_same_ct(b, r);
  bt_ciphertext_free(r);
  assert_int_equal(dir_entries(f->dir), before + 1);
  /* ... and a failed save over it leaves the old file whole */
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
  st = bt_io_save_ciphertext(path, a);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, prev);
  bt_test_expect_fail(st, BT_E_IO, NULL, "size limit over existing");
  BT_CHECK(bt_io_load_ciphertext(path, f->p, &r));
  assert_same_ct(b, r);
  bt_ciphertext_free(r);
  assert_int_equal(dir_entries(f->dir), before + 1);
  assert_int_equal(unlink(path), 0);

  /* an object that cannot be written is refused before any file exists */
  int level = a->level;
  a->level = 99;
  bt_test_expect_fail(bt_io_save_ciphertext(path, a), BT_E_ARG, "level", "bad object");
  a->level = level;
  assert_int_equal(access(path, F_OK), -1);
  assert_int_equal(dir_entries(f->dir), before);

  bt_ciphertext_free(a);
  bt_ciphertext_free(b);
  free(v);
}

/* Random bytes written anywhere in the payload of valid containers, with
 * the checksum recomputed so the parsers see them: whatever the outcome, no
 * crash, no leak (the sanitizer build checks), and a failure leaves *out NULL. */
static void random_mutations(void **state) {
  fixture *f = *state;
  bt_prng g;
  bt_test_prng(&g, "io-mutations");
  double complex *v = malloc(f->slots * sizeof *v);
  random_values(&f->g, v, f->slots);
  bt_ciphertext *ct = encrypt_values(f, v, 1, 0);
  bt_eval_keys *small;
  BT_CHECK(bt_eval_keys_new(f->p, &small));
  bt_switch_key *k;
  BT_CHECK(bt_keygen_galois(f->sk, bt_ckks_galois_conjugate(f->p), &f->g, &k));
  BT_CHECK(bt_eval_keys_add(small, k));
  uint8_t *blob[6];
  size_t len[6];
  BT_CHECK(bt_io_write_params(f->p, &blob[0], &len[0]));
  BT_CHECK(bt_io_write_ciphertext(ct, &blob[1], &len[1]));
  BT_CHECK(bt_io_write_secret_key(f->sk, &blob[2], &len[2]));
  BT_CHECK(bt_io_write_public_key(f->pk, &blob[3], &len[3]));
  BT_CHECK(bt_io_write_switch_key(k, &blob[4], &len[4]));
  BT_CHECK(bt_io_write_eval_keys(small, &blob[5], &len[5]));
  size_t refused = 0, accepted = 0;
  for (int round = 0; round < 240; round++) {
    const int kind = round % 6;
    uint8_t *c = dup_buf(blob[kind], len[kind]);
    const size_t payload = len[kind] - H_END;
    /* mostly the leading fields, where the structure is */
    for (int m = 0; m < 1 + (int)(bt_prng_u64(&g) % 3); m++) {
      uint64_t x = bt_prng_u64(&g);
      size_t window = (x & 1) ? payload : (payload < 64 ? payload : 64);
      c[H_END + (x >> 8) % window] = (uint8_t)(x >> 1);
    }
    bt_test_fix_checksum(c, len[kind]);
    bt_status st;
    void *obj = NULL;
    switch (kind) {
    case 0: {
      bt_ckks_params *q = NULL;
      st = bt_io_read_params(c, len[kind], BT_ALLOW_INSECURE, &q);
      bt_ckks_params_free(q);
      obj = q;
      break;
    }
    case 1: {
      bt_ciphertext *r = NULL;
      st = bt_io_read_ciphertext(c, len[kind], f->p, &r);
      bt_ciphertext_free(r);
      obj = r;
      break;
    }
    case 2: {
      bt_secret_key *r = NULL;
      st = bt_io_read_secret_key(c, len[kind], f->p, &r);
      bt_secret_key_free(r);
      obj = r;
      break;
    }
    case 3: {
      bt_public_key *r = NULL;
      st = bt_io_read_public_key(c, len[kind], f->p, &r);
      bt_public_key_free(r);
      obj = r;
      break;
    }
    case 4: {
      bt_switch_key *r = NULL;
      st = bt_io_read_switch_key(c, len[kind], f->p, &r);
      bt_switch_key_free(r);
      obj = r;
      break;
    }
    default: {
      bt_eval_keys *r = NULL;
      st = bt_io_read_eval_keys(c, len[kind], f->p, &r);
      bt_eval_keys_free(r);
      obj = r;
      break;
    }
    }
    if (st) {
      assert_null(obj);
      assert_true(st == BT_E_FORMAT || st == BT_E_PARAMS);
      assert_true(bt_last_error()[0] != '\0');
      refused++;
    } else {
      accepted++;
    }
    free(c);
  }
  printf("  mutated containers: %zu refused, %zu accepted (mutations of values only)\n", refused,
         accepted);
  for (int i = 0; i < 6; i++) bt_free_secret(blob[i], len[i]);
  bt_eval_keys_free(small);
  bt_ciphertext_free(ct);
  bt_prng_wipe(&g);
  free(v);
}


/* The pipeline's files: bundles carry their parameters and keys, datasets
 * their ciphertexts; loaders check the tag (key set and layout), the
 * frames and every embedded object. */
static void kind_names(void **state) {
  (void)state;
  assert_string_equal(bt_io_kind_name(BT_IO_PARAMS), "parameters");
  assert_string_equal(bt_io_kind_name(BT_IO_SECRET_KEY), "secret key");
  assert_string_equal(bt_io_kind_name(BT_IO_EVAL_KEYS), "evaluation keys");
  assert_string_equal(bt_io_kind_name((bt_io_kind)0), "unknown");
  assert_string_equal(bt_io_kind_name((bt_io_kind)99), "unknown");
  bt_io_info info;
  bt_test_expect_fail(bt_io_inspect_buffer(NULL, 0, &info), BT_E_FORMAT, "empty", "empty buffer");
}

int main(void) {
  bt_test_seed();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(kind_names),
      cmocka_unit_test(params_round_trip),
      cmocka_unit_test(params_files_and_corruption),
      cmocka_unit_test(ciphertext_round_trip),
      cmocka_unit_test(plaintext_round_trip),
      cmocka_unit_test(keys_round_trip),
      cmocka_unit_test(sparse_secret_key),
      cmocka_unit_test(corrupt_ciphertexts),
      cmocka_unit_test(corrupt_keys),
      cmocka_unit_test(corrupt_files),
      cmocka_unit_test(atomic_saves),
      cmocka_unit_test(random_mutations),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

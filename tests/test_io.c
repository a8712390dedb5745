/* Container format tests: every kind round-trips (reloaded objects still
 * decrypt, encrypt, relinearise and rotate, judged by measured precision).
 * Saves are atomic: a failed save leaves nothing behind and never damages the
 * file it was replacing.  Bad input: test_io_corrupt.c. */
#include <complex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blindtuner/ckks.h"
#include "blindtuner/io.h"
#include "io_fixture.h"
#include "testutil.h"

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

  /* level-limited keys: a relin key and rotations at levels 0..top, each
   * the size bt_io_switch_key_bytes says, read back identical and still
   * rotating; a full key's shape word is its digit count, as before
   * level-limited keys existed */
  const int top = bt_ckks_max_level(f->p);
  BT_CHECK(bt_io_write_switch_key(f->ek->galois[0], &buf, &len));
  assert_true(len == BT_IO_HEADER_BYTES + bt_io_switch_key_bytes(f->p, top));
  assert_int_equal(bt_test_get_le(buf + BT_IO_HEADER_BYTES + 8, 4), (uint64_t)bt_ckks_dnum(f->p));
  bt_free(buf);
  bt_eval_keys *lk;
  BT_CHECK(bt_eval_keys_new(f->p, &lk));
  int lsteps[16], llevels[16];
  for (int l = 0; l <= top; l++) lsteps[l] = l + 1, llevels[l] = l;
  BT_CHECK(bt_keygen_eval_levels(f->sk, &f->g, 1, lsteps, llevels, (size_t)top + 1, 0, lk));
  uint64_t want = BT_IO_HEADER_BYTES + 8 + bt_io_switch_key_bytes(f->p, top);
  for (int l = 0; l <= top; l++) {
    assert_int_equal(lk->galois[l]->level, l);
    want += bt_io_switch_key_bytes(f->p, l);
  }
  printf("  switching key bytes: level 0 %llu, full %llu\n", (unsigned long long)bt_io_switch_key_bytes(f->p, 0),
         (unsigned long long)bt_io_switch_key_bytes(f->p, top));
  path_in(f, "lk.bt", path, sizeof path);
  BT_CHECK(bt_io_save_eval_keys(path, lk));
  assert_int_equal(stat(path, &sb), 0);
  assert_true((uint64_t)sb.st_size == want);
  BT_CHECK(bt_io_load_eval_keys(path, f->p, &ek));
  assert_int_equal(unlink(path), 0);
  assert_int_equal(ek->ngalois, lk->ngalois);
  for (size_t i = 0; i < ek->ngalois; i++) assert_same_switch_key(f->p, lk->galois[i], ek->galois[i]);
  BT_CHECK(bt_io_write_switch_key(lk->galois[2], &buf, &len));
  assert_int_equal(bt_test_get_le(buf + BT_IO_HEADER_BYTES + 8, 4),
                   (uint64_t)bt_ckks_digits_at(f->p, 2) | (uint64_t)3 << 16);
  BT_CHECK(bt_io_read_switch_key(buf, len, f->p, &k));
  assert_same_switch_key(f->p, lk->galois[2], k);
  bt_switch_key_free(k);
  bt_free(buf);
  BT_CHECK(bt_evaluator_new(f->p, ek, &ev));
  BT_CHECK(bt_eval_drop_level(ev, ct, top - 2, z));
  BT_CHECK(bt_eval_rotate(ev, z, 3, z)); /* the level-2 key */
  for (size_t i = 0; i < f->slots; i++) w[i] = v[(i + 3) % f->slots];
  expect_values(f, f->sk, z, w, "reloaded level-2 key: rotate 3 at level 2", 18);
  bt_evaluator_free(ev);
  bt_eval_keys_free(ek);
  bt_eval_keys_free(lk);

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
      cmocka_unit_test(ciphertext_round_trip),
      cmocka_unit_test(plaintext_round_trip),
      cmocka_unit_test(keys_round_trip),
      cmocka_unit_test(sparse_secret_key),
      cmocka_unit_test(atomic_saves),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

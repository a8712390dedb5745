/* The io tests' shared fixture and helpers: io_fixture.h. */
#include <complex.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blindtuner/ckks.h"
#include "io_fixture.h"
#include "testutil.h"

static const int rot_steps[] = {1, -1, 5};

bt_ckks_params *make_params(const char *name) {
  bt_ckks_literal lit;
  bt_ckks_params *p = NULL;
  if (bt_ckks_preset(name, &lit) || bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &p)) return NULL;
  return p;
}

int group_setup(void **state) {
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

int group_teardown(void **state) {
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
void path_in(const fixture *f, const char *name, char *out, size_t cap) {
  snprintf(out, cap, "%s/%s", f->dir, name);
}

size_t dir_entries(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  size_t n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

void write_file(const char *path, const uint8_t *buf, size_t len) {
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  assert_int_equal(fwrite(buf, 1, len, fp), len);
  assert_int_equal(fclose(fp), 0);
}

uint8_t *dup_buf(const uint8_t *b, size_t len) {
  uint8_t *c = malloc(len + 1);
  memcpy(c, b, len);
  return c;
}

void random_values(bt_prng *g, double complex *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double re = (double)(bt_prng_u64(g) >> 11) / 9007199254740992.0 * 2 - 1;
    double im = (double)(bt_prng_u64(g) >> 11) / 9007199254740992.0 * 2 - 1;
    v[i] = (re + I * im) / sqrt(2);
  }
}

bt_ciphertext *encrypt_values(fixture *f, const double complex *v, int level, int use_pk) {
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
void expect_values(const fixture *f, const bt_secret_key *sk, const bt_ciphertext *ct,
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

void assert_same_ct(const bt_ciphertext *a, const bt_ciphertext *b) {
  assert_int_equal(a->level, b->level);
  assert_int_equal(a->degree, b->degree);
  assert_int_equal(a->logslots, b->logslots);
  assert_true(a->scale == b->scale);
  size_t words = (size_t)(a->level + 1) * bt_ckks_n(a->params);
  for (int i = 0; i <= a->degree; i++)
    assert_memory_equal(a->c[i], b->c[i], words * sizeof(uint64_t));
}

void assert_same_switch_key(const bt_ckks_params *p, const bt_switch_key *a,
                            const bt_switch_key *b) {
  const size_t words = (size_t)(a->level + 1 + bt_ckks_num_special(p)) * bt_ckks_n(p);
  assert_true(a->galois == b->galois);
  assert_int_equal(a->level, b->level);
  assert_int_equal(a->digits, b->digits);
  for (int j = 0; j < a->digits; j++) {
    assert_memory_equal(a->b[j], b->b[j], words * sizeof(uint64_t));
    assert_memory_equal(a->a[j], b->a[j], words * sizeof(uint64_t));
  }
}

/* CKKS engine tests: every operation is judged by the precision (bits) it
 * reaches against the same computation on plaintext complex numbers. */
#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blindtuner/ckks.h"
#include "testutil.h"

typedef struct fixture {
  bt_ckks_params *p;
  bt_secret_key *sk;
  bt_public_key *pk;
  bt_eval_keys *ek;
  bt_evaluator *ev;
  bt_prng g;
  size_t slots;
  int logslots;
} fixture;

static const int rot_steps[] = {1, -1, 2, 3, 5, 7, 100, -100, 1000, 2047, 4, 8, 16, 32, 64,
                                -4, -8, -16, -12};

static int setup_preset(void **state, const char *name) {
  fixture *f = calloc(1, sizeof *f);
  bt_ckks_literal lit;
  if (bt_ckks_preset(name, &lit) || bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &f->p)) return -1;
  bt_test_prng(&f->g, name);
  f->logslots = bt_ckks_logn(f->p) - 1;
  f->slots = (size_t)1 << f->logslots;
  if (bt_keygen_secret(f->p, &f->g, &f->sk) || bt_keygen_public(f->sk, &f->g, &f->pk) ||
      bt_eval_keys_new(f->p, &f->ek) ||
      bt_keygen_eval(f->sk, &f->g, 1, rot_steps, sizeof rot_steps / sizeof *rot_steps, 1, f->ek) ||
      bt_evaluator_new(f->p, f->ek, &f->ev))
    return -1;
  *state = f;
  return 0;
}

static int setup(void **state) { return setup_preset(state, "INSECURE-n12"); }
static int setup_sparse(void **state) { return setup_preset(state, "INSECURE-n12-sparse"); }

static int teardown(void **state) {
  fixture *f = *state;
  bt_evaluator_free(f->ev);
  bt_eval_keys_free(f->ek);
  bt_public_key_free(f->pk);
  bt_secret_key_free(f->sk);
  bt_ckks_params_free(f->p);
  bt_prng_wipe(&f->g);
  free(f);
  return 0;
}

static void random_values(bt_prng *g, double complex *v, size_t n, double bound) {
  for (size_t i = 0; i < n; i++) {
    double re = (double)(bt_prng_u64(g) >> 11) / 9007199254740992.0 * 2 - 1;
    double im = (double)(bt_prng_u64(g) >> 11) / 9007199254740992.0 * 2 - 1;
    v[i] = bound * (re + I * im) / sqrt(2);
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

/* Decrypts, prints and checks precision against `want`. */
static void expect(fixture *f, const bt_ciphertext *ct, const double complex *want, const char *what,
                   double bar) {
  bt_plaintext *pt;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_decrypt(f->sk, ct, pt));
  size_t n = (size_t)1 << ct->logslots;
  double complex *got = malloc(n * sizeof *got);
  BT_CHECK(bt_ckks_decode(pt, got));
  bt_precision pr = bt_precision_measure(want, got, n);
  char label[128];
  snprintf(label, sizeof label, "%s: min bits (mean %.1f)", what, pr.mean_bits);
  bt_test_report(label, pr.min_bits, "bits", bar);
  if (pr.min_bits < bar) fail_msg("%s: precision %.2f bits below the bar %.2f", what, pr.min_bits, bar);
  free(got);
  bt_plaintext_free(pt);
}

static void presets_validate(void **state) {
  (void)state;
  bt_ckks_literal lit;
  bt_ckks_params *p = NULL;
  assert_int_equal(bt_ckks_preset("INSECURE-n10", &lit), BT_OK);
  assert_int_equal(bt_ckks_params_new(&lit, 0, &p), BT_E_INSECURE);
  assert_null(p);
  printf("  refused as expected: %s\n", bt_last_error());
  assert_int_equal(bt_ckks_preset("no-such-preset", &lit), BT_E_ARG);
  /* a "secure" set beyond the HE Standard bound is refused */
  assert_int_equal(bt_ckks_preset("INSECURE-n12", &lit), BT_OK);
  lit.insecure = 0;
  assert_int_equal(bt_ckks_params_new(&lit, 0, &p), BT_E_PARAMS);
  printf("  refused as expected: %s\n", bt_last_error());
  assert_int_equal(bt_ckks_preset("INSECURE-n12", &lit), BT_OK);
  lit.q_bits[2] = 70;
  assert_int_equal(bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &p), BT_E_PARAMS);
  lit.q_bits[2] = 45;
  lit.dnum = 0;
  assert_int_equal(bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &p), BT_E_PARAMS);
  /* the benchmark preset is 128-bit secure by the HE Standard */
  assert_int_equal(bt_ckks_preset("bench-n16", &lit), BT_OK);
  int logqp = 0;
  for (int i = 0; i < lit.nq; i++) logqp += lit.q_bits[i];
  logqp += (lit.nq + lit.dnum - 1) / lit.dnum * lit.p_bits;
  printf("  bench-n16: log2 QP = %d (bound %d)\n", logqp, bt_ckks_he_standard_max_logqp(16));
  assert_true(logqp <= bt_ckks_he_standard_max_logqp(16));
  assert_false(lit.insecure);
  /* the training preset loads without permission for INSECURE sets */
  bt_ckks_params *t;
  assert_int_equal(bt_ckks_preset("train-n16", &lit), BT_OK);
  assert_int_equal(bt_ckks_params_new(&lit, 0, &t), BT_OK);
  printf("  train-n16: log2 QP = %.1f (bound %d), %d levels, scale 2^%d\n", bt_ckks_log_qp(t),
         bt_ckks_he_standard_max_logqp(16), bt_ckks_max_level(t), lit.log_scale);
  assert_true(bt_ckks_log_qp(t) <= bt_ckks_he_standard_max_logqp(16));
  assert_true(lit.log_scale >= 40);
  bt_ckks_params_free(t);
  bt_ckks_params *a, *b;
  assert_int_equal(bt_ckks_preset("INSECURE-n12", &lit), BT_OK);
  assert_int_equal(bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &a), BT_OK);
  assert_int_equal(bt_ckks_preset("INSECURE-n12-sparse", &lit), BT_OK);
  assert_int_equal(bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &b), BT_OK);
  assert_memory_not_equal(bt_ckks_params_hash(a), bt_ckks_params_hash(b), BT_PARAMS_HASH_BYTES);
  /* the hash covers every field that changes a ciphertext's meaning or trust:
   * the default scale and the INSECURE flag too */
  for (int k = 0; k < 2; k++) {
    bt_ckks_params *v;
    assert_int_equal(bt_ckks_preset("INSECURE-n12", &lit), BT_OK);
    if (k == 0) lit.log_scale -= 1;
    else lit.insecure = 0, lit.name = "not-insecure";
    const bt_status sv = bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &v);
    if (sv == BT_OK) {
      assert_memory_not_equal(bt_ckks_params_hash(a), bt_ckks_params_hash(v), BT_PARAMS_HASH_BYTES);
      bt_ckks_params_free(v);
    } else {
      assert_int_equal(k, 1); /* a tiny set without the flag may be refused as below 128 bits */
    }
  }
  assert_int_equal(bt_ckks_max_level(a), 7);
  assert_int_equal(bt_ckks_num_special(a), 4);
  bt_ckks_params_free(a);
  bt_ckks_params_free(b);
}

static void encoder_round_trip(void **state) {
  fixture *f = *state;
  bt_plaintext *pt;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  double complex *v = malloc(f->slots * sizeof *v), *w = malloc(f->slots * sizeof *w);
  for (int ls = 0; ls <= f->logslots; ls += (ls < 3 ? 1 : 4)) {
    size_t n = (size_t)1 << ls;
    random_values(&f->g, v, n, 1);
    BT_CHECK(bt_ckks_encode(f->p, v, n, ls, 3, bt_ckks_default_scale(f->p), pt));
    BT_CHECK(bt_ckks_decode(pt, w));
    bt_precision pr = bt_precision_measure(v, w, n);
    char label[64];
    snprintf(label, sizeof label, "encode/decode 2^%d slots: min bits", ls);
    bt_test_report(label, pr.min_bits, "bits", 35);
    assert_true(pr.min_bits >= 35);
  }
  /* real encoding; fewer values than slots leaves zeros */
  double re[5] = {1.5, -2.25, 0, 1e-3, 7};
  double back[16];
  BT_CHECK(bt_ckks_encode_real(f->p, re, 5, 4, 0, bt_ckks_default_scale(f->p), pt));
  BT_CHECK(bt_ckks_decode_real(pt, back));
  for (int i = 0; i < 16; i++) assert_true(fabs(back[i] - (i < 5 ? re[i] : 0)) < 1e-9);
  /* bad input is refused */
  assert_int_equal(bt_ckks_encode(f->p, v, f->slots + 1, f->logslots, 0, 1e10, pt), BT_E_ARG);
  assert_int_equal(bt_ckks_encode(f->p, v, 1, f->logslots + 1, 0, 1e10, pt), BT_E_ARG);
  assert_int_equal(bt_ckks_encode(f->p, v, 1, 2, 99, 1e10, pt), BT_E_LEVEL);
  v[0] = NAN;
  assert_int_equal(bt_ckks_encode(f->p, v, 1, 2, 0, 1e10, pt), BT_E_ARG);
  free(v);
  free(w);
  bt_plaintext_free(pt);
}

static void encrypt_decrypt(void **state) {
  fixture *f = *state;
  double complex *v = malloc(f->slots * sizeof *v);
  random_values(&f->g, v, f->slots, 1);
  for (int pk = 0; pk < 2; pk++)
    for (int level = 0; level <= bt_ckks_max_level(f->p); level += 7) {
      bt_ciphertext *ct = encrypt_values(f, v, level, pk);
      assert_int_equal(ct->seeded, !pk);
      char what[64];
      snprintf(what, sizeof what, "%s-key encryption at level %d", pk ? "public" : "secret", level);
      expect(f, ct, v, what, 25);
      bt_ciphertext_free(ct);
    }
  free(v);
}

/* A secret plaintext (the client's decryptions) decodes to exactly what an
 * ordinary one does, and its limbs sit in memory the kernel keeps out of
 * core dumps. */
static void secret_plaintext_decrypts_the_same(void **state) {
  fixture *f = *state;
  double complex *v = malloc(f->slots * sizeof *v), *a = malloc(f->slots * sizeof *a), *b = malloc(f->slots * sizeof *b);
  double *ra = malloc(f->slots * sizeof *ra), *rb = malloc(f->slots * sizeof *rb);
  random_values(&f->g, v, f->slots, 1);
  bt_ciphertext *ct = encrypt_values(f, v, 3, 0);
  bt_plaintext *plain, *secret;
  BT_CHECK(bt_plaintext_new(f->p, &plain));
  BT_CHECK(bt_plaintext_new_secret(f->p, &secret));
  assert_int_equal(plain->secret, 0);
  assert_int_equal(secret->secret, 1);
  assert_int_equal((uintptr_t)secret->c % 64, 0);
  const int dd = bt_test_vm_flag(secret->c, "dd");
  printf("  secret plaintext limbs: VmFlags dd=%d lo=%d\n", dd, bt_test_vm_flag(secret->c, "lo"));
  if (dd >= 0) assert_int_equal(dd, 1);
  BT_CHECK(bt_decrypt(f->sk, ct, plain));
  BT_CHECK(bt_decrypt(f->sk, ct, secret));
  BT_CHECK(bt_ckks_decode(plain, a));
  BT_CHECK(bt_ckks_decode(secret, b));
  assert_memory_equal(a, b, f->slots * sizeof *a);
  BT_CHECK(bt_ckks_decode_real(plain, ra));
  BT_CHECK(bt_ckks_decode_real(secret, rb));
  assert_memory_equal(ra, rb, f->slots * sizeof *ra);
  bt_precision pr = bt_precision_measure(v, b, f->slots);
  bt_test_report("secret plaintext: min bits", pr.min_bits, "bits", 25);
  assert_true(pr.min_bits >= 25);
  /* a crafted slot count is refused before anything is shifted or allocated */
  secret->logslots = 40;
  assert_int_not_equal(bt_ckks_decode_real(secret, rb), BT_OK);
  bt_plaintext_free(plain);
  bt_plaintext_free(secret);
  bt_ciphertext_free(ct);
  free(v), free(a), free(b), free(ra), free(rb);
}

static void additive_ops(void **state) {
  fixture *f = *state;
  size_t n = f->slots;
  double complex *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *w = malloc(n * sizeof *w);
  random_values(&f->g, a, n, 1);
  random_values(&f->g, b, n, 1);
  bt_ciphertext *x = encrypt_values(f, a, 7, 1), *y = encrypt_values(f, b, 5, 1), *z;
  BT_CHECK(bt_ciphertext_new(f->p, &z));
  BT_CHECK(bt_eval_add(f->ev, x, y, z)); /* different levels: matched */
  assert_int_equal(z->level, 5);
  for (size_t i = 0; i < n; i++) w[i] = a[i] + b[i];
  expect(f, z, w, "add (levels 7 and 5)", 24);
  BT_CHECK(bt_eval_sub(f->ev, x, y, z));
  for (size_t i = 0; i < n; i++) w[i] = a[i] - b[i];
  expect(f, z, w, "sub", 24);
  BT_CHECK(bt_eval_neg(f->ev, x, z));
  for (size_t i = 0; i < n; i++) w[i] = -a[i];
  expect(f, z, w, "negate", 25);
  BT_CHECK(bt_eval_add_const(f->ev, x, 0.5, -0.25, z));
  for (size_t i = 0; i < n; i++) w[i] = a[i] + 0.5 - 0.25 * I;
  expect(f, z, w, "add complex constant", 25);
  BT_CHECK(bt_eval_mul_int(f->ev, x, -3, z));
  for (size_t i = 0; i < n; i++) w[i] = -3 * a[i];
  expect(f, z, w, "multiply by integer -3", 23);
  bt_plaintext *pt;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_ckks_encode(f->p, b, n, f->logslots, 7, x->scale, pt));
  BT_CHECK(bt_eval_add_plain(f->ev, x, pt, z));
  for (size_t i = 0; i < n; i++) w[i] = a[i] + b[i];
  expect(f, z, w, "add plaintext", 24);
  BT_CHECK(bt_eval_sub_plain(f->ev, x, pt, z));
  for (size_t i = 0; i < n; i++) w[i] = a[i] - b[i];
  expect(f, z, w, "sub plaintext", 24);
  /* in place, aliasing the output */
  BT_CHECK(bt_eval_add(f->ev, x, x, x));
  for (size_t i = 0; i < n; i++) w[i] = 2 * a[i];
  expect(f, x, w, "add in place", 24);
  bt_plaintext_free(pt);
  bt_ciphertext_free(x);
  bt_ciphertext_free(y);
  bt_ciphertext_free(z);
  free(a);
  free(b);
  free(w);
}

static void multiplicative_ops(void **state) {
  fixture *f = *state;
  size_t n = f->slots;
  double complex *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *w = malloc(n * sizeof *w);
  random_values(&f->g, a, n, 1);
  random_values(&f->g, b, n, 1);
  double complex *a0 = malloc(n * sizeof *a0);
  memcpy(a0, a, n * sizeof *a0);
  bt_ciphertext *x = encrypt_values(f, a, 7, 1), *y = encrypt_values(f, b, 7, 0), *z;
  BT_CHECK(bt_ciphertext_new(f->p, &z));
  BT_CHECK(bt_eval_mul_relin(f->ev, x, y, z));
  BT_CHECK(bt_eval_rescale(f->ev, z, z));
  assert_int_equal(z->level, 6);
  for (size_t i = 0; i < n; i++) w[i] = a[i] * b[i];
  expect(f, z, w, "multiply + relinearise + rescale", 20);
  /* degree 2 decrypts too */
  BT_CHECK(bt_eval_mul(f->ev, x, y, z));
  assert_int_equal(z->degree, 2);
  BT_CHECK(bt_eval_rescale(f->ev, z, z));
  expect(f, z, w, "multiply (degree 2, no relinearisation)", 20);
  BT_CHECK(bt_eval_mul_const(f->ev, x, 0.75, 1.25, z));
  BT_CHECK(bt_eval_rescale(f->ev, z, z));
  assert_true(fabs(z->scale / x->scale - 1) < 1e-12);
  for (size_t i = 0; i < n; i++) w[i] = a[i] * (0.75 + 1.25 * I);
  expect(f, z, w, "multiply by complex constant + rescale", 22);
  bt_plaintext *pt;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_ckks_encode(f->p, b, n, f->logslots, 7, bt_ckks_default_scale(f->p), pt));
  BT_CHECK(bt_eval_mul_plain(f->ev, x, pt, z));
  BT_CHECK(bt_eval_rescale(f->ev, z, z));
  for (size_t i = 0; i < n; i++) w[i] = a[i] * b[i];
  expect(f, z, w, "multiply by plaintext + rescale", 20);
  /* x^(2^7) by repeated squaring down to level 0, values on the unit circle */
  for (size_t i = 0; i < n; i++) a[i] = cexp(I * 2 * M_PI * (double)i / (double)n);
  bt_ciphertext *s = encrypt_values(f, a, 7, 1);
  for (int k = 0; k < 7; k++) {
    BT_CHECK(bt_eval_mul_relin(f->ev, s, s, s));
    BT_CHECK(bt_eval_rescale(f->ev, s, s));
  }
  assert_int_equal(s->level, 0);
  for (size_t i = 0; i < n; i++) w[i] = cexp(I * 2 * M_PI * 128.0 * (double)i / (double)n);
  expect(f, s, w, "7 squarings to level 0", 12);
  assert_int_equal(bt_eval_rescale(f->ev, s, s), BT_E_LEVEL);
  printf("  refused as expected: %s\n", bt_last_error());
  /* adding at different scales: x*y rescaled has scale ~ s^2/q_7, x2 has s */
  bt_ciphertext *x2 = encrypt_values(f, b, 7, 1);
  BT_CHECK(bt_eval_mul_relin(f->ev, x, y, z));
  BT_CHECK(bt_eval_rescale(f->ev, z, z));
  assert_false(fabs(z->scale / x2->scale - 1) < 1e-9);
  /* non-integer ratio: x2 (level 7, smaller scale) is raised at the cost of a
   * level, which lands it on z's level 6 */
  BT_CHECK(bt_eval_add(f->ev, z, x2, z));
  assert_int_equal(z->level, 6);
  for (size_t i = 0; i < n; i++) w[i] = a0[i] * b[i] + b[i];
  expect(f, z, w, "add with mismatched scales", 18);
  /* integral ratio: no level used */
  BT_CHECK(bt_eval_mul_int(f->ev, x2, 1, z));
  z->scale *= 4;
  BT_CHECK(bt_eval_add(f->ev, z, x2, z));
  assert_int_equal(z->level, 7);
  for (size_t i = 0; i < n; i++) w[i] = b[i] / 4 + b[i];
  expect(f, z, w, "add with scales in ratio 4", 20);
  bt_ciphertext_free(x2);
  bt_ciphertext_free(s);
  bt_plaintext_free(pt);
  bt_ciphertext_free(x);
  bt_ciphertext_free(y);
  bt_ciphertext_free(z);
  free(a);
  free(b);
  free(w);
  free(a0);
}

static void rotations(void **state) {
  fixture *f = *state;
  size_t n = f->slots;
  double complex *a = malloc(n * sizeof *a), *w = malloc(n * sizeof *w);
  random_values(&f->g, a, n, 1);
  bt_ciphertext *x = encrypt_values(f, a, 7, 1), *z;
  BT_CHECK(bt_ciphertext_new(f->p, &z));
  for (size_t r = 0; r < sizeof rot_steps / sizeof *rot_steps; r++) {
    int s = rot_steps[r];
    BT_CHECK(bt_eval_rotate(f->ev, x, s, z));
    for (size_t i = 0; i < n; i++) w[i] = a[((long)i + s % (long)n + (long)n) % (long)n];
    char what[48];
    snprintf(what, sizeof what, "rotate by %d", s);
    expect(f, z, w, what, 22);
  }
  BT_CHECK(bt_eval_conjugate(f->ev, x, z));
  for (size_t i = 0; i < n; i++) w[i] = conj(a[i]);
  expect(f, z, w, "conjugate", 22);
  /* rotation at a lower level uses the same key */
  BT_CHECK(bt_eval_drop_level(f->ev, x, 5, z));
  BT_CHECK(bt_eval_rotate(f->ev, z, 3, z));
  for (size_t i = 0; i < n; i++) w[i] = a[(i + 3) % n];
  expect(f, z, w, "rotate by 3 at level 2", 20);
  assert_int_equal(bt_eval_rotate(f->ev, x, 6, z), BT_E_KEY);
  printf("  refused as expected: %s\n", bt_last_error());
  /* hoisted: one decomposition, many steps */
  const int hs[] = {1, 2, 3, 5, 7, -1, 0, 100};
  bt_ciphertext *outs[8];
  for (int i = 0; i < 8; i++) BT_CHECK(bt_ciphertext_new(f->p, &outs[i]));
  BT_CHECK(bt_eval_rotate_hoisted(f->ev, x, hs, 8, outs));
  for (int k = 0; k < 8; k++) {
    for (size_t i = 0; i < n; i++) w[i] = a[((long)i + hs[k] + (long)n) % (long)n];
    char what[48];
    snprintf(what, sizeof what, "hoisted rotate by %d", hs[k]);
    expect(f, outs[k], w, what, 22);
    bt_ciphertext_free(outs[k]);
  }
  bt_ciphertext_free(x);
  bt_ciphertext_free(z);
  free(a);
  free(w);
}

static void sums_and_replication(void **state) {
  fixture *f = *state;
  size_t n = f->slots;
  double complex *a = malloc(n * sizeof *a), *w = malloc(n * sizeof *w);
  random_values(&f->g, a, n, 1);
  bt_ciphertext *x = encrypt_values(f, a, 7, 1), *z;
  BT_CHECK(bt_ciphertext_new(f->p, &z));
  /* steps for (batch 4, n 4) and (batch 4, n 3): 4, 8, -4, -8, 8 -> covered by rot_steps */
  const int cases[][2] = {{4, 4}, {4, 3}, {1, 8}};
  int steps[64];
  for (int c = 0; c < 3; c++) {
    int batch = cases[c][0], cnt = cases[c][1];
    size_t ns = bt_inner_sum_steps(batch, cnt, 0, steps);
    printf("  inner sum batch %d n %d uses %zu rotations\n", batch, cnt, ns);
    BT_CHECK(bt_eval_inner_sum(f->ev, x, batch, cnt, z));
    for (size_t i = 0; i < n; i++) {
      w[i] = 0;
      for (int j = 0; j < cnt; j++) w[i] += a[(i + (size_t)(j * batch)) % n];
    }
    char what[64];
    snprintf(what, sizeof what, "inner sum (batch %d, n %d)", batch, cnt);
    expect(f, z, w, what, 20);
  }
  BT_CHECK(bt_eval_replicate(f->ev, x, 4, 4, z));
  for (size_t i = 0; i < n; i++) {
    w[i] = 0;
    for (int j = 0; j < 4; j++) w[i] += a[(i + n - (size_t)(4 * j)) % n];
  }
  expect(f, z, w, "replicate (batch 4, n 4)", 20);
  bt_ciphertext_free(x);
  bt_ciphertext_free(z);
  free(a);
  free(w);
}

static void sparse_secret_and_slots(void **state) {
  fixture *f = *state;
  /* sparse packing: 2^5 slots; rotations act modulo the slot count */
  const int ls = 5;
  size_t n = (size_t)1 << ls;
  double complex v[32], w[32];
  random_values(&f->g, v, n, 1);
  bt_plaintext *pt;
  bt_ciphertext *ct, *z;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_ciphertext_new(f->p, &ct));
  BT_CHECK(bt_ciphertext_new(f->p, &z));
  BT_CHECK(bt_ckks_encode(f->p, v, n, ls, 7, bt_ckks_default_scale(f->p), pt));
  BT_CHECK(bt_encrypt_sk(f->sk, pt, &f->g, ct));
  expect(f, ct, v, "sparse secret, 2^5 slots: encrypt", 25);
  BT_CHECK(bt_eval_mul_relin(f->ev, ct, ct, z));
  BT_CHECK(bt_eval_rescale(f->ev, z, z));
  BT_CHECK(bt_eval_rotate(f->ev, z, 3, z));
  for (size_t i = 0; i < n; i++) w[i] = v[(i + 3) % n] * v[(i + 3) % n];
  expect(f, z, w, "sparse secret, 2^5 slots: square, rotate 3", 20);
  bt_plaintext_free(pt);
  bt_ciphertext_free(ct);
  bt_ciphertext_free(z);
}

/* The public accessors to the primes' moduli and NTT tables. */
static void prime_accessors(void **state) {
  fixture *f = *state;
  const int nq = bt_ckks_max_level(f->p) + 1, np = bt_ckks_num_special(f->p);
  for (int i = 0; i < nq + np; i++) {
    const uint64_t q = i < nq ? bt_ckks_q(f->p, i) : bt_ckks_p(f->p, i - nq);
    const bt_modulus *m = bt_ckks_modulus(f->p, i);
    const bt_ntt_table *t = bt_ckks_ntt_table(f->p, i);
    assert_non_null(m);
    assert_non_null(t);
    assert_int_equal(m->q, q);
    assert_int_equal(t->mod.q, q);
    assert_int_equal(t->logn, bt_ckks_logn(f->p));
  }
  assert_null(bt_ckks_modulus(f->p, -1));
  assert_null(bt_ckks_modulus(f->p, nq + np));
  assert_null(bt_ckks_ntt_table(f->p, -1));
  assert_null(bt_ckks_ntt_table(f->p, nq + np));
}

/* Evaluation keys come from one seed per key, drawn in the plan's order:
 * the same PRNG gives byte-identical keys on 1 and on 3 threads, and a key
 * remade from its seed into the buffers of another is that key again. */
static void keys_do_not_depend_on_threads(void **state) {
  fixture *f = *state;
  bt_eval_keys *ek[2] = {NULL, NULL};
  const int steps[] = {1, 2, -3, 1, 0, 5};
  uint64_t plan[8];
  const size_t m = bt_keygen_eval_plan(f->p, 1, steps, NULL, 6, 1, plan, NULL);
  assert_int_equal(m, 6); /* relin, 1, 2, -3, 5, conjugation: the repeat and the identity dropped */
  assert_true(plan[0] == 0 && plan[5] == bt_ckks_galois_conjugate(f->p));
  for (int t = 0; t < 2; t++) {
    bt_prng g;
    bt_test_prng(&g, "threads");
    bt_ckks_set_threads(f->p, t ? 3 : 1);
    BT_CHECK(bt_eval_keys_new(f->p, &ek[t]));
    BT_CHECK(bt_keygen_eval(f->sk, &g, 1, steps, 6, 1, ek[t]));
    bt_prng_wipe(&g);
  }
  bt_ckks_set_threads(f->p, 2);
  assert_int_equal(ek[0]->ngalois, 5);
  assert_int_equal(ek[1]->ngalois, 5);
  /* every limb of every digit, and the seeds */
  const size_t words = (size_t)(bt_ckks_max_level(f->p) + 1 + bt_ckks_num_special(f->p)) * bt_ckks_n(f->p);
  const int digits = bt_ckks_dnum(f->p);
  for (size_t i = 0; i <= ek[0]->ngalois; i++) {
    const bt_switch_key *a = i ? ek[0]->galois[i - 1] : ek[0]->relin, *b = i ? ek[1]->galois[i - 1] : ek[1]->relin;
    assert_true(a->galois == b->galois);
    for (int j = 0; j < digits; j++) {
      assert_memory_equal(a->seeds[j], b->seeds[j], BT_SEED_BYTES);
      assert_memory_equal(a->b[j], b->b[j], words * sizeof(uint64_t));
      assert_memory_equal(a->a[j], b->a[j], words * sizeof(uint64_t));
    }
  }
  /* remade from seed s into the buffers of another key */
  uint8_t seed[BT_SEED_BYTES] = {42};
  bt_switch_key *k = NULL, *k2 = NULL;
  const int top = bt_ckks_max_level(f->p);
  BT_CHECK(bt_keygen_switch_seeded(f->sk, plan[2], top, seed, &k));
  BT_CHECK(bt_keygen_switch_seeded(f->sk, plan[3], top, seed, &k2));
  assert_memory_not_equal(k->b[0], k2->b[0], words * sizeof(uint64_t)); /* another source secret */
  BT_CHECK(bt_keygen_switch_seeded(f->sk, plan[2], top, seed, &k2)); /* k2's buffers, k's key */
  assert_true(k2->galois == plan[2]);
  for (int j = 0; j < digits; j++) {
    assert_memory_equal(k->seeds[j], k2->seeds[j], BT_SEED_BYTES);
    assert_memory_equal(k->b[j], k2->b[j], words * sizeof(uint64_t));
  }
  bt_switch_key_free(k), bt_switch_key_free(k2);
  bt_eval_keys_free(ek[0]), bt_eval_keys_free(ek[1]);
}

/* Level-limited keys: a key serving levels 0..l holds only the digits of
 * Q_l over q_0..q_l and P, switches as a full key does up to l, and refuses
 * a ciphertext above l by name. */
static void level_limited_keys(void **state) {
  fixture *f = *state;
  const int top = bt_ckks_max_level(f->p), np = bt_ckks_num_special(f->p);
  const size_t n = f->slots, N = bt_ckks_n(f->p);
  /* the plan: a repeated step keeps its highest level, relinearisation and
   * conjugation are full */
  const int steps[] = {3, 5, -1, 3, 0}, levels[] = {2, 5, 1, 4, 0};
  uint64_t plan[8];
  int klv[8];
  const size_t m = bt_keygen_eval_plan(f->p, 1, steps, levels, 5, 1, plan, klv);
  assert_int_equal(m, 5); /* relin, 3, 5, -1, conjugation */
  assert_int_equal(klv[0], top);
  assert_int_equal(klv[1], 4);
  assert_int_equal(klv[2], 5);
  assert_int_equal(klv[3], 1);
  assert_int_equal(klv[4], top);
  bt_eval_keys *ek;
  bt_evaluator *ev;
  BT_CHECK(bt_eval_keys_new(f->p, &ek));
  BT_CHECK(bt_keygen_eval_levels(f->sk, &f->g, 1, steps, levels, 5, 1, ek));
  BT_CHECK(bt_evaluator_new(f->p, ek, &ev));
  const bt_switch_key *k3 = bt_eval_keys_find(ek, bt_ckks_galois_rotate(f->p, 3));
  assert_non_null(k3);
  assert_int_equal(k3->level, 4);
  assert_int_equal(k3->digits, bt_ckks_digits_at(f->p, 4));
  assert_true(bt_switch_key_memory(f->p, 4) ==
              2 * (uint64_t)k3->digits * (uint64_t)(5 + np) * N * sizeof(uint64_t));
  assert_true(bt_switch_key_memory(f->p, 4) < bt_switch_key_memory(f->p, top));
  printf("  key memory: level 1 %.2f MiB, level 4 %.2f MiB, full %.2f MiB\n",
         bt_switch_key_memory(f->p, 1) / 1048576.0, bt_switch_key_memory(f->p, 4) / 1048576.0,
         bt_switch_key_memory(f->p, top) / 1048576.0);
  /* asking again for a key it has at a level as high makes nothing; a
   * higher level replaces it */
  const int again[] = {3}, higher[] = {6};
  BT_CHECK(bt_keygen_eval_levels(f->sk, &f->g, 0, again, levels, 1, 0, ek)); /* level 2 <= 4 */
  assert_ptr_equal(bt_eval_keys_find(ek, bt_ckks_galois_rotate(f->p, 3)), k3);
  double complex *a = malloc(n * sizeof *a), *w = malloc(n * sizeof *w);
  random_values(&f->g, a, n, 1);
  bt_ciphertext *x = encrypt_values(f, a, top, 1), *z, *y;
  BT_CHECK(bt_ciphertext_new(f->p, &z));
  BT_CHECK(bt_ciphertext_new(f->p, &y));
  for (int lv = 0; lv <= 5; lv++) {
    BT_CHECK(bt_eval_drop_level(ev, x, top - lv, y));
    const int s = lv <= 4 ? 3 : 5;
    BT_CHECK(bt_eval_rotate(ev, y, s, z));
    for (size_t i = 0; i < n; i++) w[i] = a[(i + (size_t)s) % n];
    char what[64];
    snprintf(what, sizeof what, "level-%d key, rotate by %d at level %d", s == 3 ? 4 : 5, s, lv);
    expect(f, z, w, what, 20);
  }
  BT_CHECK(bt_eval_drop_level(ev, x, top - 5, y));
  assert_int_equal(bt_eval_rotate(ev, y, 3, z), BT_E_LEVEL);
  printf("  refused as expected: %s\n", bt_last_error());
  bt_ciphertext *outs[2];
  for (int i = 0; i < 2; i++) BT_CHECK(bt_ciphertext_new(f->p, &outs[i]));
  const int hs[] = {5, 3};
  assert_int_equal(bt_eval_rotate_hoisted(ev, y, hs, 2, outs), BT_E_LEVEL);
  BT_CHECK(bt_eval_drop_level(ev, y, 1, y)); /* level 4: both keys serve it */
  BT_CHECK(bt_eval_rotate_hoisted(ev, y, hs, 2, outs));
  for (int k = 0; k < 2; k++) {
    for (size_t i = 0; i < n; i++) w[i] = a[(i + (size_t)hs[k]) % n];
    expect(f, outs[k], w, k ? "hoisted, level-4 key at level 4" : "hoisted, level-5 key at level 4", 20);
    bt_ciphertext_free(outs[k]);
  }
  /* the level-1 key, one digit, at levels 0 and 1 */
  BT_CHECK(bt_eval_drop_level(ev, y, 3, y));
  BT_CHECK(bt_eval_rotate(ev, y, -1, z));
  for (size_t i = 0; i < n; i++) w[i] = a[(i + n - 1) % n];
  expect(f, z, w, "level-1 key, rotate by -1 at level 1", 18);
  BT_CHECK(bt_keygen_eval_levels(f->sk, &f->g, 0, again, higher, 1, 0, ek));
  k3 = bt_eval_keys_find(ek, bt_ckks_galois_rotate(f->p, 3));
  assert_int_equal(k3->level, 6);
  bt_ciphertext_free(x), bt_ciphertext_free(y), bt_ciphertext_free(z);
  free(a), free(w);
  bt_evaluator_free(ev);
  bt_eval_keys_free(ek);
}

int main(void) {
  bt_test_seed();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(presets_validate),
      cmocka_unit_test_setup_teardown(level_limited_keys, setup, teardown),
      cmocka_unit_test_setup_teardown(prime_accessors, setup, teardown),
      cmocka_unit_test_setup_teardown(encoder_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(encrypt_decrypt, setup, teardown),
      cmocka_unit_test_setup_teardown(secret_plaintext_decrypts_the_same, setup, teardown),
      cmocka_unit_test_setup_teardown(additive_ops, setup, teardown),
      cmocka_unit_test_setup_teardown(multiplicative_ops, setup, teardown),
      cmocka_unit_test_setup_teardown(rotations, setup, teardown),
      cmocka_unit_test_setup_teardown(sums_and_replication, setup, teardown),
      cmocka_unit_test_setup_teardown(sparse_secret_and_slots, setup_sparse, teardown),
      cmocka_unit_test_setup_teardown(keys_do_not_depend_on_threads, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

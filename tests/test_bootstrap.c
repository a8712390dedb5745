/* Bootstrapping: the special FFT against the direct decoding formula, and
 * the refreshed ciphertext against its input, in bits of precision. */
#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blindtuner/circuits.h"
#include "testutil.h"

static void special_fft_matches_decoding(void **state) {
  (void)state;
  bt_prng g;
  bt_test_prng(&g, "sfft");
  for (int ls = 1; ls <= 6; ls++) {
    const int n = 1 << ls;
    double complex u[64], v[64], z[64];
    for (int k = 0; k < n; k++)
      u[k] = (double)(bt_prng_u64(&g) % 1000) / 500.0 - 1 + I * ((double)(bt_prng_u64(&g) % 1000) / 500.0 - 1);
    /* direct: z_j = sum_k u_k w^(5^j k), w = exp(2 pi i / 4n) */
    uint64_t g5 = 1;
    for (int j = 0; j < n; j++) {
      z[j] = 0;
      for (int k = 0; k < n; k++) z[j] += u[k] * cexp(2 * M_PI * I * (double)((g5 * (uint64_t)k) % (4 * (uint64_t)n)) / (4.0 * n));
      g5 = g5 * 5 % (4 * (uint64_t)n);
    }
    /* stages on the bit-reversed vector */
    for (int k = 0; k < n; k++) {
      int r = 0;
      for (int b = 0; b < ls; b++) r |= ((k >> b) & 1) << (ls - 1 - b);
      v[r] = u[k];
    }
    double complex br[64];
    memcpy(br, v, sizeof br);
    bt_special_fft_reference(v, ls, 0);
    bt_precision pr = bt_precision_measure(z, v, (size_t)n);
    assert_true(pr.min_bits > 40);
    bt_special_fft_reference(v, ls, 1); /* back to the bit-reversed coefficients */
    pr = bt_precision_measure(br, v, (size_t)n);
    assert_true(pr.min_bits > 40);
  }
}

static double f_one(double x, void *ctx) {
  (void)x;
  (void)ctx;
  return 1;
}

typedef struct fixture {
  bt_ckks_params *p;
  bt_secret_key *sk;
  bt_eval_keys *ek;
  bt_evaluator *ev;
  bt_bootstrapper *bs;
  bt_encaps_key *to_sparse;
  bt_switch_key *to_dense;
  bt_prng g;
} fixture;

static int setup_preset_slots(void **state, const char *preset, int logslots) {
  fixture *f = calloc(1, sizeof *f);
  bt_ckks_literal lit;
  if (bt_ckks_preset(preset, &lit) || bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &f->p))
    return -1;
  printf("  preset %s\n", preset);
  bt_test_prng(&f->g, "bootstrap");
  bt_bootstrap_config cfg;
  if (bt_bootstrap_config_default(f->p, &cfg)) return -1;
  cfg.logslots = logslots;
  if (logslots) printf("  sparse slots: 2^%d of 2^%d\n", logslots, bt_ckks_logn(f->p) - 1);
  printf("  config: K = %g, Chebyshev degree %d, %d double angles, CtS %d, StC %d levels\n", cfg.k_range,
         cfg.cheby_degree, cfg.double_angle, cfg.cts_levels, cfg.stc_levels);
  if (bt_bootstrapper_new(f->p, &cfg, bt_ckks_default_scale(f->p), &f->bs)) {
    printf("bootstrapper: %s\n", bt_last_error());
    return -1;
  }
  static int steps[4096];
  size_t ns = bt_bootstrap_steps(f->bs, steps, 4096);
  if (ns == 0 || ns > 4096) return -1;
  printf("  bootstrapping: depth %d of %d levels, %zu rotation keys\n", bt_bootstrap_depth(f->bs),
         bt_ckks_max_level(f->p), ns);
  if (bt_keygen_secret(f->p, &f->g, &f->sk) || bt_eval_keys_new(f->p, &f->ek) ||
      bt_keygen_eval(f->sk, &f->g, 1, steps, ns, 1, f->ek) || bt_evaluator_new(f->p, f->ek, &f->ev))
    return -1;
  if (cfg.encaps_hamming_weight &&
      (bt_keygen_encapsulation(f->sk, cfg.encaps_hamming_weight, &f->g, &f->to_sparse, &f->to_dense) ||
       bt_bootstrapper_set_encapsulation(f->bs, f->to_sparse, f->to_dense)))
    return -1;
  *state = f;
  return 0;
}

static int setup_preset(void **state, const char *preset) { return setup_preset_slots(state, preset, 0); }
static int setup(void **state) { return setup_preset(state, "INSECURE-boot-n12"); }
static int setup_sparse7(void **state) { return setup_preset_slots(state, "INSECURE-boot-n12-dense", 7); }
static int setup_sparse10(void **state) { return setup_preset_slots(state, "INSECURE-boot-n12-dense", 10); }
static int setup_sparse3(void **state) { return setup_preset_slots(state, "INSECURE-boot-n12", 3); }
static int setup_dense(void **state) { return setup_preset(state, "INSECURE-boot-n12-dense"); }

static int teardown(void **state) {
  fixture *f = *state;
  bt_bootstrapper_free(f->bs);
  bt_encaps_key_free(f->to_sparse);
  bt_switch_key_free(f->to_dense);
  bt_evaluator_free(f->ev);
  bt_eval_keys_free(f->ek);
  bt_secret_key_free(f->sk);
  bt_ckks_params_free(f->p);
  free(f);
  return 0;
}

static bt_precision decrypt_compare(fixture *f, const bt_ciphertext *ct, const double complex *want) {
  const size_t n = (size_t)1 << ct->logslots;
  double complex *got = malloc(n * sizeof *got);
  bt_plaintext *pt;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_decrypt(f->sk, ct, pt));
  BT_CHECK(bt_ckks_decode(pt, got));
  bt_precision pr = bt_precision_measure(want, got, n);
  free(got);
  bt_plaintext_free(pt);
  return pr;
}

/* Encrypts v (2^ls slots) at level 0, bootstraps, compares with want. */
static bt_precision encrypt_bootstrap(fixture *f, const double complex *v, int ls, const double complex *want,
                                      bt_ciphertext *out, double *secs) {
  bt_plaintext *pt;
  bt_ciphertext *ct;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_ciphertext_new(f->p, &ct));
  BT_CHECK(bt_ckks_encode(f->p, v, (size_t)1 << ls, ls, 0, bt_ckks_default_scale(f->p), pt));
  BT_CHECK(bt_encrypt_sk(f->sk, pt, &f->g, ct));
  const double t0 = bt_seconds();
  BT_CHECK(bt_bootstrap(f->bs, f->ev, ct, out));
  if (secs) *secs = bt_seconds() - t0;
  assert_int_equal(out->logslots, ls);
  assert_int_equal(out->level, bt_ckks_max_level(f->p) - bt_bootstrap_depth(f->bs));
  bt_plaintext_free(pt);
  bt_ciphertext_free(ct);
  return decrypt_compare(f, out, want);
}

/* One bootstrap of the fixture's slot count n: random values, then the
 * worst case of sin(2 pi x) / 2 pi ~ x (every slot equal, so the whole
 * message sits in the constant coefficient).  Sparse slots also take a
 * full-slot ciphertext, which comes back holding the mean of its n-periodic
 * folds (the partial trace) -- how a caller gathers data spread over the
 * slots into one period. */
static void bootstrap_once(void **state) {
  fixture *f = *state;
  const int ls = bt_bootstrap_logslots(f->bs), lm = bt_ckks_logn(f->p) - 1;
  const size_t n = (size_t)1 << ls, m = (size_t)1 << lm;
  double complex *v = malloc(m * sizeof *v), *want = malloc(m * sizeof *want);
  for (size_t i = 0; i < m; i++)
    v[i] = ((double)(bt_prng_u64(&f->g) % 2001) - 1000) / 1000.0 +
           I * (((double)(bt_prng_u64(&f->g) % 2001) - 1000) / 1000.0);
  bt_ciphertext *out;
  BT_CHECK(bt_ciphertext_new(f->p, &out));
  double t;
  bt_precision pr = encrypt_bootstrap(f, v, ls, v, out, &t);
  printf("  bootstrap, 2^%d slots: level 0 -> %d in %.2f s; precision mean %.2f, min %.2f bits\n", ls, out->level,
         t, pr.mean_bits, pr.min_bits);
  bt_test_report(ls == lm ? "bootstrap (N = 2^12, full slots): min bits" : "sparse-slot bootstrap: min bits",
                 pr.min_bits, "bits", 16);
  assert_true(pr.min_bits >= 16);
  for (size_t i = 0; i < n; i++) want[i] = 1;
  pr = encrypt_bootstrap(f, want, ls, want, out, NULL);
  bt_test_report("bootstrap, all slots 1 (worst case): min bits", pr.min_bits, "bits", 16);
  assert_true(pr.min_bits >= 16);
  if (ls < lm) {
    for (size_t i = 0; i < m; i++) {
      want[i] = 0;
      for (size_t j = 0; j < m; j += n) want[i] += v[(i + j) % m];
      want[i] /= (double)(m / n);
    }
    pr = encrypt_bootstrap(f, v, lm, want, out, NULL);
    printf("  2^%d slots folded to 2^%d: precision mean %.2f, min %.2f bits\n", lm, ls, pr.mean_bits, pr.min_bits);
    bt_test_report("sparse-slot bootstrap of a full-slot input (folds): min bits", pr.min_bits, "bits", 16);
    assert_true(pr.min_bits >= 16);
  }
  free(v);
  free(want);
  bt_ciphertext_free(out);
}

/* Depth is no longer bounded: 20 rounds of (bootstrap, square, rescale,
 * multiply back by the plaintext inverse).  Squaring doubles whatever error
 * the value already carries, so each round's bootstrap is judged against its
 * own input (decrypted), and the chain must still decrypt to the start value
 * within the accumulated error. */
static void twenty_rounds(void **state) {
  fixture *f = *state;
  const int ls = bt_ckks_logn(f->p) - 1;
  const size_t n = (size_t)1 << ls;
  double complex *v = malloc(n * sizeof *v), *inv = malloc(n * sizeof *inv),
                 *before = malloc(n * sizeof *before);
  for (size_t i = 0; i < n; i++) {
    v[i] = cexp(2 * M_PI * I * (double)i / (double)n) * 0.9;
    inv[i] = 1 / v[i];
  }
  bt_plaintext *pt, *pinv;
  bt_ciphertext *ct, *sq;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_plaintext_new(f->p, &pinv));
  BT_CHECK(bt_ciphertext_new(f->p, &ct));
  BT_CHECK(bt_ciphertext_new(f->p, &sq));
  BT_CHECK(bt_ckks_encode(f->p, v, n, ls, 0, bt_ckks_default_scale(f->p), pt));
  BT_CHECK(bt_encrypt_sk(f->sk, pt, &f->g, ct));
  double worst = 64;
  for (int round = 0; round < 20; round++) {
    BT_CHECK(bt_decrypt(f->sk, ct, pt));
    BT_CHECK(bt_ckks_decode(pt, before));
    BT_CHECK(bt_bootstrap(f->bs, f->ev, ct, ct));
    bt_precision pr = decrypt_compare(f, ct, before);
    if (pr.min_bits < worst) worst = pr.min_bits;
    /* x^2 then times 1/x: two levels, back to x at the bootstrap's scale */
    BT_CHECK(bt_eval_mul_relin(f->ev, ct, ct, sq));
    BT_CHECK(bt_eval_rescale(f->ev, sq, sq));
    BT_CHECK(bt_ckks_encode(f->p, inv, n, ls, sq->level,
                            bt_ckks_default_scale(f->p) * (double)bt_ckks_q(f->p, sq->level) / sq->scale, pinv));
    BT_CHECK(bt_eval_mul_plain(f->ev, sq, pinv, ct));
    BT_CHECK(bt_eval_rescale(f->ev, ct, ct));
    assert_true(fabs(ct->scale / bt_ckks_default_scale(f->p) - 1) < 1e-9);
    ct->scale = bt_ckks_default_scale(f->p);
    BT_CHECK(bt_eval_drop_level(f->ev, ct, ct->level, ct));
    if (round % 5 == 4) {
      bt_precision chain = decrypt_compare(f, ct, v);
      printf("  round %2d: this bootstrap %.2f min bits; chain vs start %.2f min bits\n", round + 1,
             pr.min_bits, chain.min_bits);
    }
  }
  bt_test_report("20 rounds: worst single-bootstrap min bits", worst, "bits", 16);
  assert_true(worst >= 16);
  free(v);
  free(inv);
  free(before);
  bt_plaintext_free(pt);
  bt_plaintext_free(pinv);
  bt_ciphertext_free(ct);
  bt_ciphertext_free(sq);
}

static void refuses_bad_input(void **state) {
  fixture *f = *state;
  bt_ciphertext *ct;
  BT_CHECK(bt_ciphertext_new(f->p, &ct));
  ct->level = 0;
  ct->scale = 3.0; /* not the configured scale */
  assert_int_equal(bt_bootstrap(f->bs, f->ev, ct, ct), BT_E_SCALE);
  printf("  refused as expected: %s\n", bt_last_error());
  ct->scale = bt_ckks_default_scale(f->p);
  ct->logslots = 3;
  assert_int_equal(bt_bootstrap(f->bs, f->ev, ct, ct), BT_E_ARG);
  bt_ciphertext_free(ct);
  bt_bootstrap_config cfg = {.cts_levels = 8, .stc_levels = 8, .cheby_degree = 30, .double_angle = 3, .k_range = 12};
  bt_bootstrapper *b;
  assert_int_equal(bt_bootstrapper_new(f->p, &cfg, bt_ckks_default_scale(f->p), &b), BT_E_LEVEL);
  printf("  refused as expected: %s\n", bt_last_error());
  /* a message lift that leaves the message no room below q_0 */
  BT_CHECK(bt_bootstrap_config_default(f->p, &cfg));
  cfg.message_lift = 1 << 10;
  assert_int_equal(bt_bootstrapper_new(f->p, &cfg, bt_ckks_default_scale(f->p), &b), BT_E_ARG);
  printf("  refused as expected: %s\n", bt_last_error());
}

/* Every bootstrapping preset hands computations levels whose primes match
 * the scale (a product rescaled there keeps the scale; a SlotsToCoeffs prime
 * below the output would make every product drift by its ratio), the
 * training preset at least 12 of them, and each has its EvalMod levels on
 * the 60-bit primes. */
static void presets_fit_bootstrapping(void **state) {
  (void)state;
  const char *names[] = {"INSECURE-boot-n12", "INSECURE-boot-n12-dense", "INSECURE-boot-n16", "train-n16"};
  for (int i = 0; i < 4; i++) {
    bt_ckks_literal lit;
    bt_ckks_params *p;
    bt_bootstrap_config cfg;
    bt_cheby cheb;
    BT_CHECK(bt_ckks_preset(names[i], &lit));
    BT_CHECK(bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &p));
    BT_CHECK(bt_bootstrap_config_default(p, &cfg));
    /* the depth of the interpolant does not depend on its coefficients */
    BT_CHECK(bt_cheby_interpolate(f_one, NULL, -1, 1, cfg.cheby_degree, &cheb));
    const int evalmod = bt_cheby_depth(&cheb) + cfg.double_angle, top = bt_ckks_max_level(p);
    const int after = top - cfg.cts_levels - evalmod - cfg.stc_levels;
    const double log_scale = log2(bt_ckks_default_scale(p));
    printf("  %s: CtS %d + EvalMod %d (degree %d: %d, + %d double angles) + StC %d of %d levels; %d left, "
           "log2 QP %.0f\n",
           names[i], cfg.cts_levels, evalmod, cfg.cheby_degree, bt_cheby_depth(&cheb), cfg.double_angle,
           cfg.stc_levels, top, after, bt_ckks_log_qp(p));
    for (int l = 1; l <= after; l++)
      if (fabs(log2((double)bt_ckks_q(p, l)) - log_scale) > 0.5)
        fail_msg("%s: level %d left to computations has a %.1f-bit prime, scale 2^%.0f", names[i], l,
                 log2((double)bt_ckks_q(p, l)), log_scale);
    for (int l = top - cfg.cts_levels - evalmod + 1; l <= top - cfg.cts_levels; l++)
      assert_true(log2((double)bt_ckks_q(p, l)) > 59);
    if (strcmp(names[i], "train-n16") == 0) {
      assert_true(after >= 12);
      assert_true(bt_ckks_log_qp(p) <= bt_ckks_he_standard_max_logqp(16));
    }
    bt_cheby_free(&cheb);
    bt_ckks_params_free(p);
  }
}

int main(void) {
  bt_test_seed();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(special_fft_matches_decoding),
      cmocka_unit_test(presets_fit_bootstrapping),
      cmocka_unit_test_setup_teardown(bootstrap_once, setup, teardown),
      cmocka_unit_test_setup_teardown(bootstrap_once, setup_dense, teardown),
      cmocka_unit_test_setup_teardown(twenty_rounds, setup_dense, teardown),
      cmocka_unit_test_setup_teardown(bootstrap_once, setup_sparse7, teardown),
      cmocka_unit_test_setup_teardown(bootstrap_once, setup_sparse10, teardown),
      cmocka_unit_test_setup_teardown(bootstrap_once, setup_sparse3, teardown),
      cmocka_unit_test_setup_teardown(refuses_bad_input, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

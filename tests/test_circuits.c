/* Circuits: polynomial evaluation judged by precision against the function
 * and against the same polynomial in double precision. */
#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blindtuner/circuits.h"
#include "testutil.h"

typedef struct fixture {
  bt_ckks_params *p;
  bt_secret_key *sk;
  bt_eval_keys *ek;
  bt_evaluator *ev;
  bt_prng g;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  bt_ckks_literal lit;
  /* a deeper INSECURE set: 14 levels for polynomials up to degree ~255 */
  if (bt_ckks_preset("INSECURE-n12", &lit)) return -1;
  lit.nq = 16;
  for (int i = 1; i < 16; i++) lit.q_bits[i] = 45;
  lit.dnum = 4;
  if (bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &f->p)) return -1;
  bt_test_prng(&f->g, "circuits");
  if (bt_keygen_secret(f->p, &f->g, &f->sk) || bt_eval_keys_new(f->p, &f->ek) ||
      bt_keygen_eval(f->sk, &f->g, 1, NULL, 0, 0, f->ek) || bt_evaluator_new(f->p, f->ek, &f->ev))
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  bt_evaluator_free(f->ev);
  bt_eval_keys_free(f->ek);
  bt_secret_key_free(f->sk);
  bt_ckks_params_free(f->p);
  free(f);
  return 0;
}

static double f_sin(double x, void *ctx) { (void)ctx; return sin(x); }
static double f_exp(double x, void *ctx) { (void)ctx; return exp(x); }
static double f_sigmoid(double x, void *ctx) { (void)ctx; return 1 / (1 + exp(-x)); }
static double f_cos2pi(double x, void *ctx) { (void)ctx; return cos(2 * M_PI * x); }

/* `tight`: the input sits at exactly the polynomial's depth, so the result
 * lands on level 0 (the deepest use of the chain). */
static void check_poly_at(fixture *f, double (*fn)(double, void *), double a, double b, int degree,
                          const char *name, double bar_fn, int tight) {
  bt_cheby poly;
  BT_CHECK(bt_cheby_interpolate(fn, NULL, a, b, degree, &poly));
  const int logslots = bt_ckks_logn(f->p) - 1;
  const size_t n = (size_t)1 << logslots;
  double complex *x = malloc(n * sizeof *x), *want = malloc(n * sizeof *want),
                 *wantp = malloc(n * sizeof *wantp), *got = malloc(n * sizeof *got);
  double interp_err = 0;
  for (size_t i = 0; i < n; i++) {
    double t = a + (b - a) * (double)(bt_prng_u64(&f->g) >> 11) / 9007199254740992.0;
    x[i] = t;
    want[i] = fn(t, NULL);
    wantp[i] = bt_cheby_eval(&poly, t);
    interp_err = fmax(interp_err, fabs(creal(want[i] - wantp[i])));
  }
  bt_plaintext *pt;
  bt_ciphertext *ct, *out;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_ciphertext_new(f->p, &ct));
  BT_CHECK(bt_ciphertext_new(f->p, &out));
  const int top = tight ? bt_cheby_depth(&poly) : bt_ckks_max_level(f->p);
  BT_CHECK(bt_ckks_encode(f->p, x, n, logslots, top, bt_ckks_default_scale(f->p), pt));
  BT_CHECK(bt_encrypt_sk(f->sk, pt, &f->g, ct));
  bt_evaluator_reset_counts(f->ev);
  BT_CHECK(bt_eval_cheby(f->ev, ct, &poly, 0, out));
  const long products = bt_evaluator_counts(f->ev).tensor, relins = bt_evaluator_counts(f->ev).relin;
  BT_CHECK(bt_decrypt(f->sk, out, pt));
  BT_CHECK(bt_ckks_decode(pt, got));
  const int depth = bt_cheby_depth(&poly);
  int want_relins = 0;
  const int want_products = bt_cheby_products(&poly, &want_relins);
  printf("  %s, degree %d on [%g, %g]: depth %d (levels %d -> %d), %ld products, %ld relinearisations, "
         "interpolation error 2^%.1f\n",
         name, degree, a, b, depth, top, out->level, products, relins, log2(interp_err));
  assert_int_equal(out->level, top - depth);
  assert_int_equal(out->degree, 1);
  assert_int_equal(products, want_products);
  assert_true(relins <= want_relins && relins >= (degree > 1 ? 1 : 0));
  assert_true(fabs(out->scale / ct->scale - 1) < 1e-9);
  bt_precision vs_poly = bt_precision_measure(wantp, got, n);
  bt_precision vs_fn = bt_precision_measure(want, got, n);
  char label[96];
  snprintf(label, sizeof label, "%s vs its polynomial: min bits", name);
  bt_test_report(label, vs_poly.min_bits, "bits", 20);
  snprintf(label, sizeof label, "%s vs the function: min bits", name);
  bt_test_report(label, vs_fn.min_bits, "bits", bar_fn);
  assert_true(vs_poly.min_bits >= 20);
  assert_true(vs_fn.min_bits >= bar_fn);
  free(x);
  free(want);
  free(wantp);
  free(got);
  bt_plaintext_free(pt);
  bt_ciphertext_free(ct);
  bt_ciphertext_free(out);
  bt_cheby_free(&poly);
}

static void check_poly(fixture *f, double (*fn)(double, void *), double a, double b, int degree,
                       const char *name, double bar_fn) {
  check_poly_at(f, fn, a, b, degree, name, bar_fn, 0);
}

static void polynomials(void **state) {
  fixture *f = *state;
  check_poly(f, f_sin, -1, 1, 15, "sin", 20);
  check_poly(f, f_exp, -4, 2, 31, "exp", 18);
  check_poly(f, f_sigmoid, -8, 8, 63, "sigmoid", 18);
  check_poly(f, f_cos2pi, -6, 6, 127, "cos(2 pi x)", 12);
  check_poly(f, f_sin, -1.04, 0.96, 15, "sin, shifted interval (free map)", 20);
  check_poly(f, f_sin, -1, 1, 1, "sin (degree 1)", 3);
  check_poly(f, f_exp, -1, 1, 2, "exp (degree 2)", 3);
  check_poly_at(f, f_sigmoid, -8, 8, 63, "sigmoid, input at its depth", 18, 1);
  check_poly_at(f, f_sin, -1, 1, 31, "sin, input at its depth", 20, 1);
}

static int ceil_log2(int x) {
  int l = 0;
  while ((1 << l) < x) l++;
  return l;
}

/* The plan reaches the optimal depth for every degree, with O(sqrt d)
 * ciphertext products; a half-width far from 1 costs exactly one level. */
static void depth_is_optimal(void **state) {
  (void)state;
  for (int d = 1; d <= 1024; d++) {
    double *c = calloc((size_t)d + 1, sizeof *c);
    assert_non_null(c);
    bt_cheby unit = {d, -1, 1, c}, wide = {d, -3, 5, c};
    int relins = 0;
    const int opt = ceil_log2(d + 1), products = bt_cheby_products(&unit, &relins);
    if (bt_cheby_depth(&unit) != opt || bt_cheby_depth(&wide) != opt + 1)
      fail_msg("degree %d: depth %d (wide interval %d), optimum %d", d, bt_cheby_depth(&unit),
               bt_cheby_depth(&wide), opt);
    /* Paterson-Stockmeyer needs about 2 sqrt(2 d) + log2 d products */
    const double bound = 2 * ceil(sqrt(2.0 * (d + 1))) + opt;
    if (products < ceil_log2(d) || products > bound || relins > products)
      fail_msg("degree %d: %d products (%d relinearised), outside [%d, %.0f]", d, products, relins,
               ceil_log2(d), bound);
    if (d == 15 || d == 31 || d == 63 || d == 127 || d == 255)
      printf("  degree %d: depth %d, %d products, %d relinearisations (bound %.0f)\n", d, opt, products,
             relins, bound);
    free(c);
  }
}

static void interpolation_converges(void **state) {
  (void)state;
  bt_cheby p;
  BT_CHECK(bt_cheby_interpolate(f_exp, NULL, -1, 1, 20, &p));
  double err = 0;
  for (int i = 0; i <= 1000; i++) {
    double x = -1 + 2.0 * i / 1000;
    err = fmax(err, fabs(bt_cheby_eval(&p, x) - exp(x)));
  }
  printf("  exp on [-1, 1], degree 20: max error %.3g\n", err);
  assert_true(err < 1e-14);
  bt_cheby_free(&p);
  assert_int_equal(bt_cheby_interpolate(f_exp, NULL, 1, -1, 3, &p), BT_E_ARG);
}

static void refuses_too_deep(void **state) {
  fixture *f = *state;
  bt_cheby p;
  BT_CHECK(bt_cheby_interpolate(f_exp, NULL, -1, 1, 63, &p));
  bt_plaintext *pt;
  bt_ciphertext *ct;
  double v = 0.5;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_ciphertext_new(f->p, &ct));
  BT_CHECK(bt_ckks_encode_real(f->p, &v, 1, 3, 3, bt_ckks_default_scale(f->p), pt));
  BT_CHECK(bt_encrypt_sk(f->sk, pt, &f->g, ct));
  assert_int_equal(bt_eval_cheby(f->ev, ct, &p, 0, ct), BT_E_LEVEL);
  printf("  refused as expected: %s\n", bt_last_error());
  bt_plaintext_free(pt);
  bt_ciphertext_free(ct);
  bt_cheby_free(&p);
}

static void linear_transforms(void **state) {
  fixture *f = *state;
  /* scattered diagonals (giant 1), a band with gaps, which takes several
   * baby and giant steps and leaves holes in the BSGS grid, and bands at 0,
   * in the middle and at the end with a lone diagonal between them: the
   * giants' Horner runs going up, down and from a jump */
  const int cases_ls[4] = {11, 6, 6, 9};
  const int idx_full[] = {0, 1, 2, 5, 17, 100, 1000, 2047, 2045, 64};
  const int idx_sparse[] = {0, 1, 3, 7, 8, 33, 63};
  int idx_band[48];
  size_t nband = 0;
  for (int k = 0; k < 40; k++)
    if (k != 5 && k != 17 && k != 18) idx_band[nband++] = k;
  idx_band[nband++] = 50;
  idx_band[nband++] = 63;
  int idx_runs[96];
  size_t nruns = 0;
  for (int k = 0; k < 24; k++) idx_runs[nruns++] = k;         /* giants 0..2 (8 apart) */
  for (int k = 200; k < 224; k += 3) idx_runs[nruns++] = k;   /* a run in the middle */
  idx_runs[nruns++] = 300;                                    /* alone */
  for (int k = 480; k < 512; k += 2) idx_runs[nruns++] = k;   /* the run at the end */
  for (int c = 0; c < 4; c++) {
    const int ls = cases_ls[c], slots = 1 << ls;
    const int *idx = c == 3 ? idx_runs : c == 2 ? idx_band : c ? idx_sparse : idx_full;
    const size_t nd = c == 3   ? nruns
                      : c == 2 ? nband
                      : c      ? sizeof idx_sparse / sizeof *idx_sparse
                               : sizeof idx_full / sizeof *idx_full;
    double complex **diags = malloc(nd * sizeof *diags);
    for (size_t t = 0; t < nd; t++) {
      diags[t] = malloc((size_t)slots * sizeof **diags);
      for (int i = 0; i < slots; i++)
        diags[t][i] = ((double)(bt_prng_u64(&f->g) % 2001) - 1000) / 1000.0 +
                      I * (((double)(bt_prng_u64(&f->g) % 2001) - 1000) / 1000.0);
    }
    const int top = bt_ckks_max_level(f->p);
    bt_lintrans *lt;
    BT_CHECK(bt_lintrans_new(f->p, ls, idx, (const double complex *const *)diags, nd, top,
                             (double)bt_ckks_q(f->p, top), &lt));
    int steps[128];
    size_t ns = bt_lintrans_steps(lt, steps);
    if (c == 2) assert_true(lt->giant > 1 && lt->giant < 64);
    if (c >= 2) { /* babies, and at most +g, -g and a jump per run */
      size_t babies = 0;
      for (size_t u = 0; u < ns; u++) babies += steps[u] > 0 && steps[u] < lt->giant;
      assert_true(ns - babies <= (c == 2 ? 2u : 5u));
      assert_true(ns - babies >= 2u);
    }
    bt_eval_keys *ek;
    bt_evaluator *ev;
    BT_CHECK(bt_eval_keys_new(f->p, &ek));
    BT_CHECK(bt_keygen_eval(f->sk, &f->g, 1, steps, ns, 0, ek));
    BT_CHECK(bt_evaluator_new(f->p, ek, &ev));
    double complex *v = malloc((size_t)slots * sizeof *v), *want = calloc((size_t)slots, sizeof *want),
                   *got = malloc((size_t)slots * sizeof *got);
    for (int i = 0; i < slots; i++) v[i] = cexp(I * (double)(bt_prng_u64(&f->g) % 1000));
    for (size_t t = 0; t < nd; t++)
      for (int i = 0; i < slots; i++) want[i] += diags[t][i] * v[(i + idx[t]) % slots];
    bt_plaintext *pt;
    bt_ciphertext *ct, *res;
    BT_CHECK(bt_plaintext_new(f->p, &pt));
    BT_CHECK(bt_ciphertext_new(f->p, &ct));
    BT_CHECK(bt_ciphertext_new(f->p, &res));
    BT_CHECK(bt_ckks_encode(f->p, v, (size_t)slots, ls, top, bt_ckks_default_scale(f->p), pt));
    BT_CHECK(bt_encrypt_sk(f->sk, pt, &f->g, ct));
    BT_CHECK(bt_eval_lintrans(ev, ct, lt, res));
    { /* the diagonals kept as coefficients and as plaintexts over Q P give
       * the same ciphertext, limb for limb */
      bt_lintrans *lq;
      bt_ciphertext *r2;
      BT_CHECK(bt_lintrans_new_form(f->p, ls, idx, (const double complex *const *)diags, nd, top,
                                    (double)bt_ckks_q(f->p, top), 1, &lq));
      assert_non_null(lt->coef);
      assert_null(lt->diag);
      assert_non_null(lq->diag);
      BT_CHECK(bt_ciphertext_new(f->p, &r2));
      BT_CHECK(bt_eval_lintrans(ev, ct, lq, r2));
      assert_int_equal(r2->level, res->level);
      assert_true(r2->scale == res->scale);
      for (int h = 0; h < 2; h++)
        assert_memory_equal(r2->c[h], res->c[h], (size_t)(res->level + 1) * bt_ckks_n(f->p) * sizeof(uint64_t));
      bt_ciphertext_free(r2);
      bt_lintrans_free(lq);
    }
    BT_CHECK(bt_eval_rescale(ev, res, res));
    assert_true(fabs(res->scale / ct->scale - 1) < 1e-12);
    BT_CHECK(bt_decrypt(f->sk, res, pt));
    BT_CHECK(bt_ckks_decode(pt, got));
    bt_precision pr = bt_precision_measure(want, got, (size_t)slots);
    char label[96];
    snprintf(label, sizeof label, "%zu-diagonal transform, 2^%d slots, giant %d, %zu keys: min bits", nd,
             ls, lt->giant, ns);
    bt_test_report(label, pr.min_bits, "bits", 20);
    assert_true(pr.min_bits >= 20);
    if (c == 2) { /* a diagonal without its special-prime limbs is refused */
      const int zero = 0;
      const bt_plaintext *one[1] = {pt};
      assert_int_equal(bt_eval_bsgs(ev, ct, &zero, 1, 1, &zero, 1, one, res), BT_E_ARG);
      printf("  refused as expected: %s\n", bt_last_error());
      /* a giant of N/2 rotates by nothing (no key): 0.5 x + rot(0.25 x, N/2) = 0.75 x */
      const int half = (int)bt_ckks_n(f->p) / 2, giants[2] = {0, 2};
      bt_plaintext *d[2];
      double complex *cv = malloc((size_t)slots * sizeof *cv);
      for (int h = 0; h < 2; h++) {
        for (int i = 0; i < slots; i++) cv[i] = h ? 0.25 : 0.5;
        BT_CHECK(bt_plaintext_new(f->p, &d[h]));
        BT_CHECK(bt_ckks_encode_qp(f->p, cv, (size_t)slots, ls, top, (double)bt_ckks_q(f->p, top), d[h]));
      }
      const bt_plaintext *grid2[2] = {d[0], d[1]};
      bt_ciphertext *r3;
      BT_CHECK(bt_ciphertext_new(f->p, &r3));
      BT_CHECK(bt_eval_bsgs(ev, ct, &zero, 1, half / 2, giants, 2, grid2, r3));
      BT_CHECK(bt_eval_rescale(ev, r3, r3));
      BT_CHECK(bt_decrypt(f->sk, r3, pt));
      BT_CHECK(bt_ckks_decode(pt, got));
      for (int i = 0; i < slots; i++) cv[i] = 0.75 * v[i];
      pr = bt_precision_measure(cv, got, (size_t)slots);
      bt_test_report("BSGS with a giant of N/2 (no key switch): min bits", pr.min_bits, "bits", 20);
      assert_true(pr.min_bits >= 20);
      for (int h = 0; h < 2; h++) bt_plaintext_free(d[h]);
      bt_ciphertext_free(r3);
      free(cv);
    }
    for (size_t t = 0; t < nd; t++) free(diags[t]);
    free(diags);
    free(v);
    free(want);
    free(got);
    bt_plaintext_free(pt);
    bt_ciphertext_free(ct);
    bt_ciphertext_free(res);
    bt_lintrans_free(lt);
    bt_evaluator_free(ev);
    bt_eval_keys_free(ek);
  }
}

int main(void) {
  bt_test_seed();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(interpolation_converges),
      cmocka_unit_test(depth_is_optimal),
      cmocka_unit_test_setup_teardown(polynomials, setup, teardown),
      cmocka_unit_test_setup_teardown(refuses_too_deep, setup, teardown),
      cmocka_unit_test_setup_teardown(linear_transforms, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

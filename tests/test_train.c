/* train: the softmax approximation against the exact softmax over
 * its range (BT_SOFTMAX_BOUND) (errors printed and bounded), and encrypted training steps and
 * inference against the plaintext twin at an INSECURE bootstrappable preset. */
#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blindtuner/train.h"
#include "testutil.h"

static double uni(bt_prng *g) { return 2.0 * ((double)(bt_prng_u64(g) >> 11) / 9007199254740992.0) - 1; }

/* Rows of logits in [-bound, bound]: uniform, clustered at every spread,
 * ties, one dominant class, two near-equal leaders. */
static void make_row(bt_prng *g, int kind, int classes, double bound, double *z) {
  const double spreads[6] = {0.01, 1, 4, 16, 64, 256};
  const double s = fmin(spreads[kind % 6], 2 * bound);
  const double centre = uni(g) * (bound - s / 2);
  for (int c = 0; c < classes; c++) z[c] = centre + uni(g) * s / 2;
  if (kind % 9 == 6) {
    for (int c = 0; c < classes; c++) z[c] = -bound;
    z[(int)(bt_prng_u64(g) % (uint64_t)classes)] = bound;
  } else if (kind % 9 == 7) {
    const double top = uni(g) * bound;
    for (int c = 0; c < classes; c++) z[c] = top;
  } else if (kind % 9 == 8) {
    for (int c = 0; c < classes; c++) z[c] = -bound + (bound + uni(g) * bound) * 0.5;
    z[0] = bound;
    z[1] = bound - fabs(uni(g)) * 2;
  }
  for (int c = 0; c < classes; c++) z[c] = fmax(-bound, fmin(bound, z[c]));
}

static void softmax_error(int classes) {
  bt_softmax_approx sa;
  BT_CHECK(bt_softmax_approx_init(classes, NULL, &sa));
  printf("  %d classes (C' = %d): relu degree %d (error %.2e of X = %g, max off by <= %.2f), exp degree %d, "
         "inverse degree %d + %d Newton on [%.3f, %.1f]; depth %d; log degree %d (error %.1e)\n",
         classes, sa.cpad, sa.relu.degree, sa.relu_err, sa.unit_t, sa.delta, sa.exp.degree, sa.inv.degree,
         sa.newton, sa.s_lo, sa.s_hi, bt_softmax_approx_depth(&sa), sa.log.degree, sa.log_err);
  assert_true(sa.log_err < 1e-4);
  bt_prng g;
  bt_test_prng(&g, "softmax");
  double z[64], pa[64], pe[64], worst = 0, worst_core = 0, sum_err = 0;
  const int rows = 30000;
  for (int r = 0; r < rows; r++) {
    make_row(&g, r, classes, sa.bound, z);
    bt_softmax_approx_row(&sa, r, z, pa);
    bt_softmax_exact_row(classes, z, pe);
    double e = 0, s = 0;
    for (int c = 0; c < classes; c++) {
      e = fmax(e, fabs(pa[c] - pe[c]));
      s += pa[c];
    }
    worst = fmax(worst, e);
    sum_err = fmax(sum_err, fabs(s - 1));
    /* the range training lives in */
    for (int c = 0; c < classes; c++) z[c] = 8 * uni(&g);
    bt_softmax_approx_row(&sa, r, z, pa);
    bt_softmax_exact_row(classes, z, pe);
    for (int c = 0; c < classes; c++) worst_core = fmax(worst_core, fabs(pa[c] - pe[c]));
  }
  printf("  max |p - softmax(z)| over %d rows in [-%g, %g]^%d: %.2e (%.1f bits); in [-8, 8]: %.2e; "
         "max |sum p - 1| %.2e\n",
         rows, sa.bound, sa.bound, classes, worst, -log2(worst), worst_core, sum_err);
  bt_test_report("softmax precision over its range", -log2(worst), "bits", 10);
  assert_true(worst < 1e-3);
  assert_true(worst_core < 1e-3);
  bt_softmax_approx_free(&sa);
}

static void test_softmax_approx(void **state) {
  (void)state;
  softmax_error(3);
  softmax_error(5);
  softmax_error(10);
}

static void test_softmax_config(void **state) {
  (void)state;
  bt_softmax_approx sa;
  bt_softmax_config c = {.relu_degree = 7};
  assert_int_equal(bt_softmax_approx_init(10, &c, &sa), BT_E_ARG); /* max would be far off */
  assert_int_equal(bt_softmax_approx_init(1, NULL, &sa), BT_E_ARG);
  c = (bt_softmax_config){.bound = 2048}; /* exp cannot cover it at degree 127 */
  assert_int_equal(bt_softmax_approx_init(3, &c, &sa), BT_E_ARG);
  /* the default range and its automatic relu degree; a wide range takes a deeper one */
  BT_CHECK(bt_softmax_approx_init(5, NULL, &sa));
  assert_true(sa.bound == BT_SOFTMAX_BOUND && sa.relu.degree == 63 && sa.delta <= 3);
  bt_softmax_approx_free(&sa);
  c = (bt_softmax_config){.bound = 128};
  BT_CHECK(bt_softmax_approx_init(10, &c, &sa));
  assert_true(sa.relu.degree == 127 && sa.delta <= 3 && sa.newton > 0);
  bt_softmax_approx_free(&sa);
  /* the plaintext step refuses labels outside [0, C) */
  double x[4] = {1, 1, 1, 1}, v[4] = {0}, w[4] = {0};
  int y[2] = {0, 2};
  assert_int_equal(bt_plain_step(NULL, 2, 2, 2, x, y, 1, 0, v, w), BT_E_ARG);
  y[1] = 1;
  assert_int_equal(bt_plain_step(NULL, 2, 2, 2, x, y, 1, 0, v, w), BT_OK);
  double loss, acc;
  assert_int_equal(bt_plain_evaluate(NULL, 2, 2, 2, 2, x, y, w, &loss, &acc), BT_OK);
  assert_true(fabs(loss - log(2)) < 1e-12); /* identical rows, one of each label */

  /* the client's early-stopping rule: stop after `patience` epochs without a new best */
  bt_early_stop es;
  bt_early_stop_init(&es, 3, 100);
  const double losses[7] = {1.0, 0.8, 0.9, 0.7, 0.75, 0.71, 0.70};
  const int want[7] = {1, 1, 1, 1, 1, 1, 0};
  for (int e = 0; e < 7; e++) assert_int_equal(bt_early_stop_update(&es, losses[e]), want[e]);
  assert_int_equal(es.best_epoch, 3);
  bt_early_stop_init(&es, 1, 100);
  assert_int_equal(bt_early_stop_update(&es, NAN), 0); /* a NaN never improves */
  assert_int_equal(es.best_epoch, -1);
  /* stopped stays stopped; the agreed epochs bound the decisions */
  assert_int_equal(bt_early_stop_update(&es, 0.1), 0);
  assert_int_equal(es.epochs, 1);
  bt_early_stop_init(&es, 5, 2);
  assert_int_equal(bt_early_stop_update(&es, 1.0), 1);
  assert_int_equal(bt_early_stop_update(&es, 0.5), 0); /* the second of two agreed epochs */
  assert_int_equal(bt_early_stop_update(&es, 0.1), 0);
  assert_int_equal(es.epochs, 2);
  assert_int_equal(es.best_epoch, 1);
}

/* ---- encrypted steps ---- */
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

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  bt_ckks_literal lit;
  if (bt_ckks_preset("INSECURE-boot-n12-dense", &lit) || bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &f->p))
    return -1;
  bt_test_prng(&f->g, "train");
  bt_bootstrap_config cfg; /* the bootstrapper itself depends on the layout: encrypted_steps */
  if (bt_bootstrap_config_default(f->p, &cfg) || bt_keygen_secret(f->p, &f->g, &f->sk) ||
      bt_eval_keys_new(f->p, &f->ek) ||
      bt_keygen_encapsulation(f->sk, cfg.encaps_hamming_weight, &f->g, &f->to_sparse, &f->to_dense))
    return -1;
  *state = f;
  return 0;
}

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

static void encrypt_vals(fixture *f, const double complex *v, size_t n, int logslots, int level,
                         bt_ciphertext *ct) {
  bt_plaintext *pt;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_ckks_encode(f->p, v, n, logslots, level, bt_ckks_default_scale(f->p), pt));
  BT_CHECK(bt_encrypt_sk(f->sk, pt, &f->g, ct));
  bt_plaintext_free(pt);
}

static void decrypt_vals(fixture *f, const bt_ciphertext *ct, double complex *v) {
  bt_plaintext *pt;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_decrypt(f->sk, ct, pt));
  BT_CHECK(bt_ckks_decode(pt, v));
  bt_plaintext_free(pt);
}

/* fold: the folded layout, its softmax on sparse slots (hemat.h) */
/* bound: the softmax range (0: the default); a wide one takes Newton steps
 * and the kappa scaling of the inverse */
/* boots: the bootstraps the 2 steps take at this preset (a regression guard
 * on the level plan of docs/TRAINING.md) */
static void encrypted_steps(fixture *f, const int B, const int F, const int C, int fold, double bound, long boots) {
  const int nsteps = 2;
  const double lr = 2.0, mu = 0.5;
  bt_hemat_layout L;
  BT_CHECK(bt_hemat_layout_init(bt_ckks_logn(f->p) - 1, B, F, C, &L));
  assert_int_equal(bt_hemat_layout_fold(&L, fold), fold);
  printf("  shape (%d, %d, %d)%s\n", B, F, C, fold ? ", folded" : "");
  bt_bootstrap_config cfg;
  BT_CHECK(bt_trainer_bootstrap_config(f->p, &L, &cfg));
  BT_CHECK(bt_bootstrapper_new(f->p, &cfg, bt_ckks_default_scale(f->p), &f->bs));
  BT_CHECK(bt_bootstrapper_set_encapsulation(f->bs, f->to_sparse, f->to_dense));
  printf("  bootstrapping 2^%d slots\n", bt_bootstrap_logslots(f->bs));
  bt_softmax_approx sa;
  const bt_softmax_config scfg = {.bound = bound};
  BT_CHECK(bt_softmax_approx_init(C, &scfg, &sa));
  printf("  softmax range +-%g: relu %d, exp %d, inverse %d + %d Newton\n", sa.bound, sa.relu.degree, sa.exp.degree,
         sa.inv.degree, sa.newton);
  bt_trainer *t;
  BT_CHECK(bt_trainer_new(f->p, &L, &sa, f->bs, lr, mu, &t));
  /* the keys a client makes, level-limited (the trainer's products' at
   * BT_TRAIN_PRODUCT_LEVEL): a rotation above its key's level would fail
   * the steps below; they cover what the built objects list */
  static int steps[4096 + 512], levels[4096 + 512], built[4096 + 512];
  size_t ns = 0;
  BT_CHECK(bt_train_layout_rotations(f->p, &L, steps, levels, 4096 + 512, &ns));
  assert_true(ns > 0 && ns <= 4096 + 512);
  size_t nb = bt_bootstrap_steps(f->bs, built, 4096);
  nb += bt_trainer_steps(t, built + nb, 512);
  for (size_t i = 0; i < nb; i++) {
    size_t j = 0;
    while (j < ns && steps[j] != built[i]) j++;
    assert_true(j < ns);
  }
  size_t low = 0;
  for (size_t i = 0; i < ns; i++) low += levels[i] <= BT_TRAIN_PRODUCT_LEVEL;
  printf("  %zu rotation keys, %zu of them at level %d or below\n", ns, low, BT_TRAIN_PRODUCT_LEVEL);
  BT_CHECK(bt_keygen_eval_levels(f->sk, &f->g, 1, steps, levels, ns, 1, f->ek));
  BT_CHECK(bt_evaluator_new(f->p, f->ek, &f->ev));

  /* data from a random linear teacher; bias column of ones */
  double *x = calloc((size_t)nsteps * B * F, sizeof *x), *teacher = calloc((size_t)C * F, sizeof *teacher);
  int *y = calloc((size_t)nsteps * B, sizeof *y);
  for (int i = 0; i < C * F; i++) teacher[i] = 3 * uni(&f->g);
  for (int r = 0; r < nsteps * B; r++) {
    double best = -1e300;
    for (int j = 0; j < F; j++) x[(size_t)r * F + j] = j == F - 1 ? 1 : uni(&f->g);
    for (int c = 0; c < C; c++) {
      double s = 0;
      for (int j = 0; j < F; j++) s += teacher[c * F + j] * x[(size_t)r * F + j];
      if (s > best) best = s, y[r] = c;
    }
  }
  double *v = calloc((size_t)C * F, sizeof *v), *w = calloc((size_t)C * F, sizeof *w);
  double *ve = calloc((size_t)C * F, sizeof *ve), *we = calloc((size_t)C * F, sizeof *we);
  double *slots = malloc(L.slots * sizeof *slots), *yv = malloc((size_t)B * C * sizeof *yv);
  double complex *cv = calloc(L.slots, sizeof *cv);

  bt_ciphertext *a, *yc, *xc[8], *z;
  BT_CHECK(bt_ciphertext_new(f->p, &a));
  BT_CHECK(bt_ciphertext_new(f->p, &yc));
  BT_CHECK(bt_ciphertext_new(f->p, &z));
  for (int j = 0; j < L.nb; j++) BT_CHECK(bt_ciphertext_new(f->p, &xc[j]));
  encrypt_vals(f, cv, L.slots, L.logslots, 4, a); /* A_0 = 0 */

  bt_train_stats stats = {0};
  for (int s = 0; s < nsteps; s++) {
    const double *xs = x + (size_t)s * B * F;
    for (int j = 0; j < L.nb; j++) {
      bt_hemat_pack_x(&L, xs, j, slots);
      for (size_t i = 0; i < L.slots; i++) cv[i] = slots[i];
      encrypt_vals(f, cv, L.slots, L.logslots, bt_trainer_x_level(t), xc[j]);
    }
    for (int r = 0; r < B; r++)
      for (int c = 0; c < C; c++) yv[r * C + c] = y[s * B + r] == c;
    bt_hemat_pack_diag(&L, yv, slots);
    for (size_t i = 0; i < L.slots; i++) cv[i] = slots[i];
    encrypt_vals(f, cv, L.slots, L.logslots, bt_trainer_y_level(t), yc);
    BT_CHECK(bt_trainer_step(t, f->ev, xc, yc, B, a, &stats));
    BT_CHECK(bt_plain_step(&sa, B, F, C, xs, y + (size_t)s * B, lr, mu, v, w));
    BT_CHECK(bt_plain_step(NULL, B, F, C, xs, y + (size_t)s * B, lr, mu, ve, we));
  }
  printf("  %d steps (B, F, C) = (%d, %d, %d): %ld bootstraps, matmul %.2f s, softmax %.2f s, bootstrap %.2f s, "
         "other %.2f s; rot %ld, mult %ld, cmult %ld\n",
         nsteps, B, F, C, stats.bootstraps, stats.matmul_s, stats.softmax_s, stats.bootstrap_s, stats.other_s,
         stats.rot, stats.mult, stats.cmult);
  assert_int_equal(stats.bootstraps, boots);
  decrypt_vals(f, a, cv);
  double *vr = malloc(L.slots * sizeof *vr), *wr = malloc(L.slots * sizeof *wr);
  double *vd = calloc((size_t)C * F, sizeof *vd), *wd = calloc((size_t)C * F, sizeof *wd);
  for (size_t i = 0; i < L.slots; i++) vr[i] = creal(cv[i]), wr[i] = cimag(cv[i]);
  bt_hemat_unpack_w(&L, vr, vd);
  bt_hemat_unpack_w(&L, wr, wd);
  double err = 0, err_exact = 0, mag = 0;
  for (int i = 0; i < C * F; i++) {
    err = fmax(err, fmax(fabs(vd[i] - v[i]), fabs(wd[i] - w[i])));
    err_exact = fmax(err_exact, fabs(wd[i] - we[i]));
    mag = fmax(mag, fabs(w[i]));
  }
  printf("  weights after %d encrypted steps vs the twin: max abs error %.2e (%.1f bits; |W| <= %.2f); "
         "vs the exact reference %.2e\n",
         nsteps, err, -log2(err), mag, err_exact);
  assert_true(mag > 0.05);
  assert_true(err < 3e-5 * fmax(1, mag)); /* 4e-6 measured; 9e-5 when 1/S was bootstrapped */

  /* encrypted inference on the first batch */
  bt_hemat_pack_x(&L, x, 0, slots);
  for (int j = 0; j < L.nb; j++) {
    bt_hemat_pack_x(&L, x, j, slots);
    for (size_t i = 0; i < L.slots; i++) cv[i] = slots[i];
    encrypt_vals(f, cv, L.slots, L.logslots, bt_trainer_x_level(t), xc[j]);
  }
  BT_CHECK(bt_trainer_logits(t, f->ev, xc, a, z, NULL));
  decrypt_vals(f, z, cv);
  for (size_t i = 0; i < L.slots; i++) slots[i] = creal(cv[i]);
  bt_hemat_unpack_logits(&L, slots, yv);
  double zerr = 0;
  for (int r = 0; r < B; r++)
    for (int c = 0; c < C; c++) {
      double s = 0;
      for (int j = 0; j < F; j++) s += x[(size_t)r * F + j] * wd[c * F + j];
      zerr = fmax(zerr, fabs(s - yv[r * C + c]));
    }
  printf("  encrypted logits vs plaintext logits of the decrypted weights: %.2e (%.1f bits)\n", zerr, -log2(zerr));
  assert_true(zerr < 1e-4);

  /* encrypted validation loss of a partial batch (the last rows padding) */
  const int rows = B - 7;
  for (int r = 0; r < B; r++)
    for (int c = 0; c < C; c++) yv[r * C + c] = r < rows && y[r] == c;
  bt_hemat_pack_diag(&L, yv, slots);
  for (size_t i = 0; i < L.slots; i++) cv[i] = slots[i];
  encrypt_vals(f, cv, L.slots, L.logslots, bt_trainer_y_level(t), yc);
  bt_train_stats ls = {0};
  BT_CHECK(bt_trainer_loss(t, f->ev, xc, yc, rows, 1.0 / rows, a, z, &ls));
  decrypt_vals(f, z, cv);
  double twin_loss, exact_loss, acc;
  BT_CHECK(bt_plain_evaluate(&sa, B, rows, F, C, x, y, wd, &twin_loss, &acc));
  BT_CHECK(bt_plain_evaluate(NULL, B, rows, F, C, x, y, wd, &exact_loss, &acc));
  const double lerr = fabs(creal(cv[0]) - twin_loss);
  printf("  encrypted validation loss %.6f, twin %.6f (error %.2e, %.1f bits), exact %.6f; %ld bootstraps, "
         "%.2f s\n",
         creal(cv[0]), twin_loss, lerr, -log2(lerr), exact_loss, ls.bootstraps,
         ls.matmul_s + ls.softmax_s + ls.bootstrap_s + ls.other_s);
  assert_true(lerr < 1e-4 * fmax(1, twin_loss));
  assert_true(fabs(twin_loss - exact_loss) < 1e-3 * fmax(1, exact_loss));
  assert_int_equal(bt_trainer_loss(t, f->ev, xc, yc, B + 1, 1, a, z, NULL), BT_E_ARG);

  free(vr), free(wr), free(vd), free(wd);
  bt_ciphertext_free(a), bt_ciphertext_free(yc), bt_ciphertext_free(z);
  for (int j = 0; j < L.nb; j++) bt_ciphertext_free(xc[j]);
  free(x), free(teacher), free(y), free(v), free(w), free(ve), free(we), free(slots), free(yv), free(cv);
  bt_trainer_free(t);
  bt_softmax_approx_free(&sa);
}

static void test_encrypted_steps(void **state) { encrypted_steps(*state, 50, 45, 3, 0, 0, 7); }
/* 16 padded classes: 1/S is large (the case that once lost 10 bits when 1/S
 * itself was bootstrapped); at range 128, below, the inverse takes Newton steps */
static void test_encrypted_steps_16(void **state) { encrypted_steps(*state, 40, 30, 10, 0, 0, 9); }
/* the same, folded: 8 groups of 8 rows (2^8 slots) and 2 groups of 32 rows (2^10) */
static void test_encrypted_steps_folded(void **state) { encrypted_steps(*state, 50, 45, 3, 1, 0, 7); }
static void test_encrypted_steps_16_folded(void **state) { encrypted_steps(*state, 40, 30, 10, 1, 0, 9); }
/* the range before library 0.6: Newton steps, kappa, degree-127 rounds */
static void test_encrypted_steps_16_wide(void **state) { encrypted_steps(*state, 40, 30, 10, 1, 128, 15); }

int main(void) {
  bt_test_seed();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_softmax_approx),
      cmocka_unit_test(test_softmax_config),
      cmocka_unit_test_setup_teardown(test_encrypted_steps, setup, teardown),
      cmocka_unit_test_setup_teardown(test_encrypted_steps_16, setup, teardown),
      cmocka_unit_test_setup_teardown(test_encrypted_steps_folded, setup, teardown),
      cmocka_unit_test_setup_teardown(test_encrypted_steps_16_folded, setup, teardown),
      cmocka_unit_test_setup_teardown(test_encrypted_steps_16_wide, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* hemat: DiagABT and DiagATB against plaintext products on odd shapes,
 * measured operation counts against the predicted ones, and the counts on
 * HETAL's shapes against HETAL's. */
#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blindtuner/hemat.h"
#include "testutil.h"

typedef struct fixture {
  bt_ckks_params *p;
  bt_secret_key *sk;
  bt_prng g;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  bt_ckks_literal lit;
  if (bt_ckks_preset("INSECURE-n12", &lit)) return -1;
  lit.nq = 6;
  for (int i = 1; i < lit.nq; i++) lit.q_bits[i] = 45;
  lit.dnum = 2;
  if (bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &f->p)) return -1;
  bt_test_prng(&f->g, "hemat");
  if (bt_keygen_secret(f->p, &f->g, &f->sk)) return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  bt_secret_key_free(f->sk);
  bt_ckks_params_free(f->p);
  free(f);
  return 0;
}

static void encrypt(fixture *f, const bt_hemat_layout *L, const double *v, int level, bt_ciphertext **out) {
  bt_plaintext *pt;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_ciphertext_new(f->p, out));
  BT_CHECK(bt_ckks_encode_real(f->p, v, L->slots, L->logslots, level, bt_ckks_default_scale(f->p), pt));
  BT_CHECK(bt_encrypt_sk(f->sk, pt, &f->g, *out));
  bt_plaintext_free(pt);
}

static void decrypt(fixture *f, const bt_hemat_layout *L, const bt_ciphertext *ct, double *v) {
  bt_plaintext *pt;
  BT_CHECK(bt_plaintext_new(f->p, &pt));
  BT_CHECK(bt_decrypt(f->sk, ct, pt));
  double complex *c = malloc(L->slots * sizeof *c);
  BT_CHECK(bt_ckks_decode(pt, c));
  for (size_t i = 0; i < L->slots; i++) v[i] = creal(c[i]);
  free(c);
  bt_plaintext_free(pt);
}

static double uni(bt_prng *g) { return 2.0 * ((double)(bt_prng_u64(g) >> 11) / 9007199254740992.0) - 1; }

static void expect_counts(const char *what, bt_hemat_counts got, bt_hemat_counts want) {
  printf("    %-5s rot %ld (hoisted %ld), tensor %ld, relin %ld, cmult %ld, rescale %ld\n", what, got.rot,
         got.rot_hoisted, got.tensor, got.relin, got.cmult, got.rescale);
  assert_int_equal(got.rot, want.rot);
  assert_int_equal(got.rot_hoisted, want.rot_hoisted);
  assert_int_equal(got.tensor, want.tensor);
  assert_int_equal(got.relin, want.relin);
  assert_int_equal(got.cmult, want.cmult);
  assert_int_equal(got.rescale, want.rescale);
}

/* fold: the folded layout (Z gathered, D and W periodic; hemat.h) */
static void one_shape_fold(fixture *f, int logslots, int B, int F, int C, int fold) {
  bt_hemat_layout L;
  BT_CHECK(bt_hemat_layout_init(logslots, B, F, C, &L));
  assert_int_equal(bt_hemat_layout_fold(&L, fold), fold);
  printf("  shape B=%d F=%d C=%d: C'=%d, blocks %d x %d, %d X blocks%s\n", B, F, C, L.cpad, L.s0, L.s1, L.nb,
         fold ? ", folded" : "");
  if (fold) printf("    folded: %d groups of %d rows, 2^%d slots\n", L.groups, L.fold_rows, L.fold_logslots);
  bt_hemat *h;
  BT_CHECK(bt_hemat_new(f->p, &L, &h));
  int steps[256];
  const int G = fold ? L.groups : 1, R = fold ? L.fold_rows : L.s0;
  size_t nsteps = bt_hemat_steps(h, steps, 256);
  assert_true(nsteps > 0 && nsteps <= 256);
  bt_eval_keys *ek;
  bt_evaluator *ev;
  BT_CHECK(bt_eval_keys_new(f->p, &ek));
  BT_CHECK(bt_keygen_eval(f->sk, &f->g, 1, steps, nsteps, 0, ek));
  BT_CHECK(bt_evaluator_new(f->p, ek, &ev));

  double *x = malloc((size_t)B * F * sizeof *x), *w = malloc((size_t)C * F * sizeof *w);
  double *d = malloc((size_t)B * C * sizeof *d), *slots = malloc(L.slots * sizeof *slots);
  for (int i = 0; i < B * F; i++) x[i] = uni(&f->g);
  for (int i = 0; i < C * F; i++) w[i] = uni(&f->g) / 4;
  for (int i = 0; i < B * C; i++) d[i] = uni(&f->g);

  const int top = bt_ckks_max_level(f->p);
  bt_ciphertext **xc = calloc((size_t)L.nb, sizeof *xc), **rolled = calloc((size_t)L.nb * L.cpad, sizeof *rolled);
  for (int j = 0; j < L.nb; j++) {
    bt_hemat_pack_x(&L, x, j, slots);
    encrypt(f, &L, slots, 2, &xc[j]);
  }
  for (int i = 0; i < L.nb * L.cpad; i++) BT_CHECK(bt_ciphertext_new(f->p, &rolled[i]));
  bt_ciphertext *wc, *dc, *z, *g[2];
  bt_hemat_pack_w(&L, w, slots);
  encrypt(f, &L, slots, 3 < top ? 3 : top, &wc);
  bt_hemat_pack_diag(&L, d, slots);
  encrypt(f, &L, slots, 3, &dc);
  BT_CHECK(bt_ciphertext_new(f->p, &z));
  BT_CHECK(bt_ciphertext_new(f->p, &g[0]));
  BT_CHECK(bt_ciphertext_new(f->p, &g[1]));

  bt_hemat_counts proll, pabt, patb, got;
  bt_hemat_predict_counts(&L, 2, &proll, &pabt, &patb);
  BT_CHECK(bt_hemat_roll_x(h, ev, xc, rolled));
  expect_counts("roll", bt_hemat_get_counts(h), proll);
  bt_hemat_reset_counts(h);
  const double wscale = 0.75;
  if (fold)
    BT_CHECK(bt_hemat_abt_gathered(h, ev, rolled, wc, wscale, z));
  else
    BT_CHECK(bt_hemat_abt(h, ev, rolled, wc, wscale, z));
  expect_counts("ABT", bt_hemat_get_counts(h), pabt);
  bt_hemat_reset_counts(h);
  const double complex coef[2] = {-0.5, 0.25 * I};
  BT_CHECK(bt_hemat_atb(h, ev, rolled, dc, coef, 2, g));
  got = bt_hemat_get_counts(h);
  expect_counts("ATB", got, patb);
  assert_int_equal(z->level, 0);
  assert_int_equal(g[0]->level, 0);

  /* Z = X W^T */
  double *zw = calloc((size_t)B * C, sizeof *zw), *zg = calloc((size_t)B * C, sizeof *zg);
  for (int r = 0; r < B; r++)
    for (int c = 0; c < C; c++) {
      double s = 0;
      for (int k = 0; k < F; k++) s += x[(size_t)r * F + k] * w[(size_t)c * F + k];
      zw[(size_t)r * C + c] = wscale * s;
    }
  decrypt(f, &L, z, slots);
  /* gathered: row r at (r, (r / R) C' + a), times G */
  char *used = calloc(L.slots, 1);
  for (int r = 0; r < B; r++)
    for (int a = 0; a < L.cpad; a++) {
      const int c = (r + a) % L.cpad;
      const size_t i = (size_t)r * L.s1 + (size_t)(r / R) * L.cpad * (G > 1) + a;
      if (c < C) {
        zg[(size_t)r * C + c] = slots[i] / G;
        used[i] = 1;
      }
    }
  double err = 0, mag = 0;
  for (int i = 0; i < B * C; i++) {
    err = fmax(err, fabs(zg[i] - zw[i]));
    mag = fmax(mag, fabs(zw[i]));
  }
  /* padding slots of the diagonal layout must be zero */
  double pad = 0;
  for (size_t i = 0; i < L.slots; i++)
    if (!used[i]) pad = fmax(pad, fabs(slots[i]));
  free(used);
  printf("    ABT: max |Z| %.2f, max error %.3g (%.1f bits), padding %.3g\n", mag, err, -log2(err), pad);
  assert_true(err < 1e-6 * fmax(mag, 1));
  assert_true(pad < 1e-6);

  /* G = D^T X, times each coefficient (the second one imaginary) */
  double *gw = calloc((size_t)C * F, sizeof *gw);
  for (int c = 0; c < C; c++)
    for (int k = 0; k < F; k++) {
      double s = 0;
      for (int r = 0; r < B; r++) s += d[(size_t)r * C + c] * x[(size_t)r * F + k];
      gw[(size_t)c * F + k] = s;
    }
  for (int o = 0; o < 2; o++) {
    bt_plaintext *pt;
    BT_CHECK(bt_plaintext_new(f->p, &pt));
    BT_CHECK(bt_decrypt(f->sk, g[o], pt));
    double complex *cv = malloc(L.slots * sizeof *cv);
    BT_CHECK(bt_ckks_decode(pt, cv));
    for (size_t i = 0; i < L.slots; i++) slots[i] = o == 0 ? creal(cv[i]) : cimag(cv[i]);
    double *gg = calloc((size_t)C * F, sizeof *gg);
    bt_hemat_unpack_w(&L, slots, gg);
    const double cf = o == 0 ? creal(coef[0]) : cimag(coef[1]);
    err = mag = 0;
    for (int i = 0; i < C * F; i++) {
      err = fmax(err, fabs(gg[i] - cf * gw[i]));
      mag = fmax(mag, fabs(cf * gw[i]));
    }
    /* everything outside the compact weight slots is zero */
    double outside = 0;
    for (size_t i = 0; i < L.slots; i++) {
      const size_t row = i / (size_t)L.s1 % (size_t)R;
      const int j = (int)(row / (size_t)L.cpad), c = (int)(row % (size_t)L.cpad), t = (int)(i % (size_t)L.s1);
      if (j >= L.nb || c >= C || j * L.s1 + t >= F) outside = fmax(outside, cabs(cv[i]));
    }
    printf("    ATB[%d]: max |G| %.2f, max error %.3g (%.1f bits), outside %.3g\n", o, mag, err, -log2(err),
           outside);
    assert_true(err < 1e-6 * fmax(mag, 1));
    assert_true(outside < 1e-6);
    free(gg);
    free(cv);
    bt_plaintext_free(pt);
  }

  for (int j = 0; j < L.nb; j++) bt_ciphertext_free(xc[j]);
  for (int i = 0; i < L.nb * L.cpad; i++) bt_ciphertext_free(rolled[i]);
  free(xc);
  free(rolled);
  bt_ciphertext_free(wc);
  bt_ciphertext_free(dc);
  bt_ciphertext_free(z);
  bt_ciphertext_free(g[0]);
  bt_ciphertext_free(g[1]);
  free(x);
  free(w);
  free(d);
  free(slots);
  free(zw);
  free(zg);
  free(gw);
  bt_evaluator_free(ev);
  bt_eval_keys_free(ek);
  bt_hemat_free(h);
}

static void one_shape(fixture *f, int logslots, int B, int F, int C) { one_shape_fold(f, logslots, B, F, C, 0); }

static void products_match_plaintext(void **state) {
  fixture *f = *state;
  one_shape(f, 11, 37, 45, 5);   /* odd everything, 3 padded classes */
  one_shape(f, 11, 100, 20, 3);  /* C' = 4 */
  one_shape(f, 11, 256, 9, 8);   /* full block of rows, 1 padded feature block */
  one_shape(f, 10, 5, 130, 2);   /* tiny batch, wide features, fewer slots */
  one_shape_fold(f, 11, 37, 45, 5, 1);  /* folded: 4 groups of 16 rows */
  one_shape_fold(f, 11, 100, 20, 3, 1); /* folded: 4 groups of 32 rows */
  bt_hemat_layout L;
  BT_CHECK(bt_hemat_layout_init(10, 5, 130, 2, &L));
  assert_int_equal(bt_hemat_layout_fold(&L, 1), 0); /* 64 groups of 8 rows: no whole row per group */
  BT_CHECK(bt_hemat_layout_init(11, 256, 9, 8, &L));
  assert_int_equal(bt_hemat_layout_fold(&L, 1), 0); /* Z already fills every slot */
}

static void layout_refuses_what_does_not_fit(void **state) {
  (void)state;
  bt_hemat_layout L;
  assert_int_not_equal(bt_hemat_layout_init(11, 300, 10, 8, &L), BT_OK); /* batch > slots / C' */
  assert_int_not_equal(bt_hemat_layout_init(11, 8, 2000, 8, &L), BT_OK); /* weights too large */
  assert_int_not_equal(bt_hemat_layout_init(11, 8, 10, 1, &L), BT_OK);   /* one class */
  assert_int_equal(bt_hemat_layout_init(15, 1024, 769, 8, &L), BT_OK);
  assert_int_equal(L.s0, 1024);
  assert_int_equal(L.s1, 32);
  assert_int_equal(L.nb, 25);
}

/* Counts on HETAL's benchmark shapes (N = 2^16): the key switches (rotations
 * and relinearisations) of one forward and one backward product, against
 * HETAL's rotations and multiplications (each of which relinearises). */
static void counts_beat_hetal(void **state) {
  (void)state;
  const int shapes[3][3] = {{512, 769, 4}, {1024, 769, 8}, {2048, 769, 16}};
  for (int i = 0; i < 3; i++) {
    bt_hemat_layout L;
    BT_CHECK(bt_hemat_layout_init(15, shapes[i][0], shapes[i][1], shapes[i][2], &L));
    bt_hemat_counts r, a, b;
    bt_hemat_predict_counts(&L, 2, &r, &a, &b);
    bt_hetal_counts h;
    bt_hetal_reference_counts(15, shapes[i][0], shapes[i][1], shapes[i][2], &h);
    const long ours_ks = r.rot + a.rot + b.rot + a.relin + b.relin;
    const long hetal_ks = h.abt_rot + h.atb_rot + h.abt_mult + h.atb_mult;
    printf("  (%d, %d, %d): ours ABT rot %ld relin %ld tensor %ld cmult %ld | ATB rot %ld relin %ld tensor %ld"
           " cmult %ld | X rolls %ld\n", shapes[i][0], shapes[i][1], shapes[i][2], a.rot, a.relin, a.tensor,
           a.cmult, b.rot, b.relin, b.tensor, b.cmult, r.rot);
    printf("     HETAL ABT rot %ld mult %ld cmult %ld | ATB rot %ld mult %ld cmult %ld;"
           " key switches ours %ld vs HETAL %ld\n", h.abt_rot, h.abt_mult, h.abt_cmult, h.atb_rot, h.atb_mult,
           h.atb_cmult, ours_ks, hetal_ks);
    assert_true(ours_ks < hetal_ks);
    assert_true(r.rot + b.rot < h.atb_rot);       /* the backward product, rolls charged to it */
    assert_true(a.relin + b.relin < h.abt_mult + h.atb_mult);
  }
  /* HETAL's counts at (1024, 769, 8), as docs/TRAINING.md ("Counts") quotes them */
  bt_hetal_counts h;
  bt_hetal_reference_counts(15, 1024, 769, 8, &h);
  assert_int_equal(h.abt_cmult, 8);
  assert_int_equal(h.abt_mult, 100);
  assert_int_equal(h.abt_rot, 140);
  assert_int_equal(h.atb_cmult, 104);
  assert_int_equal(h.atb_mult, 100);
  assert_int_equal(h.atb_rot, 1008);
  bt_hetal_reference_counts(15, 2048, 769, 16, &h);
  assert_int_equal(h.abt_cmult, 16);
  assert_int_equal(h.abt_mult, 392);
  assert_int_equal(h.abt_rot, 456);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(layout_refuses_what_does_not_fit),
      cmocka_unit_test(counts_beat_hetal),
      cmocka_unit_test_setup_teardown(products_match_plaintext, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

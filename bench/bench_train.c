/* `blindtuner bench train`: encrypted training steps on random data at the
 * training preset, on the real code path (bt_trainer_step: products,
 * softmax, bootstrapping, Nesterov update), with the time split, the
 * bootstraps and operation counts per step, and the decrypted weights
 * checked against the plaintext twin. */
#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <json-c/json.h>

#include "blindtuner/train.h"
#include "bench.h"
#include "blindtuner/pipeline.h"

static void help(void) {
  printf("usage: blindtuner bench train [--shape B,F,C] [--preset NAME] [--threads N] [--runs R]\n"
         "                              [--plain] [--json]\n"
         "\n"
         "Generates keys (bootstrapping, products, softmax), encrypts a random batch (B rows of\n"
         "F features, the last one the bias 1, labels of a random linear teacher) and runs R + 1\n"
         "encrypted training steps; the first starts from fresh weights, the R timed ones are\n"
         "steady-state steps (median reported).  Prints the split into matrix products,\n"
         "softmax, bootstrapping and the rest, bootstraps and operations per step, and the\n"
         "decrypted weights' error against the plaintext twin.\n"
         "\n"
         "  --shape B,F,C   batch, features (bias included), classes (default 1024,769,8)\n"
         "  --preset NAME   bootstrappable parameters (default train-n16)\n"
         "  --runs R        timed steps (default 1)\n"
         "  --plain         keep the plain layout (by default the softmax runs folded on\n"
         "                  sparse slots where the shape allows it; docs/TRAINING.md)\n"
         "  --threads N     threads (default BT_THREADS or all cores)\n");
}

#define TRY(expr)                                                                  \
  do {                                                                             \
    bt_status st_ = (expr);                                                        \
    if (st_ != BT_OK) {                                                            \
      fprintf(stderr, "blindtuner bench train: %s (%s)\n", bt_last_error(), bt_status_name(st_)); \
      goto out;                                                                    \
    }                                                                              \
  } while (0)

static double uni(bt_prng *g) { return 2.0 * ((double)(bt_prng_u64(g) >> 11) / 9007199254740992.0) - 1; }

static bt_status enc(const bt_ckks_params *p, const bt_secret_key *sk, bt_prng *g, const bt_hemat_layout *L,
                     const double complex *v, int level, bt_plaintext *pt, bt_ciphertext *out) {
  bt_status st = bt_ckks_encode(p, v, L->slots, L->logslots, level, bt_ckks_default_scale(p), pt);
  return st ? st : bt_encrypt_sk(sk, pt, g, out);
}

static int cmp(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int bt_bench_train(int argc, char **argv) {
  bt_bench_opts opt = {.who = "bench train", .runs_max = 100, .runs = 1, .preset = "train-n16",
                     .shape = {1024, 769, 8}};
  int plain = 0, kept = 0;
  for (int i = 0; i < argc; i++) /* --plain is this bench's own */
    if (strcmp(argv[i], "--plain") == 0)
      plain = 1;
    else
      argv[kept++] = argv[i];
  argc = kept;
  const int parsed = bt_bench_parse(&opt, argc, argv, help);
  if (parsed) return parsed == 1 ? 0 : 2;
  const int B = opt.shape[0], F = opt.shape[1], C = opt.shape[2];
  const int threads = opt.threads, runs = opt.runs, json = opt.json;
  const char *preset = opt.preset;
  if (F < 2 || C < 2) {
    fprintf(stderr, "blindtuner bench train: --shape needs F >= 2 (the bias column) and C >= 2\n");
    return 2;
  }
  int rc = 1;
  bt_ckks_params *p = NULL;
  bt_secret_key *sk = NULL;
  bt_eval_bundle eb = {0};
  bt_server_engine en = {0};
  int *steps = NULL;
  bt_plaintext *pt = NULL;
  bt_ciphertext **xc = NULL, *yc = NULL, *a = NULL;
  bt_softmax_approx sa = {0};
  double *x = NULL, *teacher = NULL, *v = NULL, *w = NULL, *slots = NULL, *yv = NULL, *dv = NULL;
  int *y = NULL;
  double complex *cv = NULL;
  bt_train_stats *st = calloc((size_t)runs, sizeof *st);
  double *secs = calloc((size_t)runs, sizeof *secs);
  bt_prng g;
  bt_prng_init_random(&g);
  bt_ckks_literal lit;
  bt_hemat_layout L = {0};
  if (!st || !secs) TRY(bt_fail(BT_E_NOMEM, "out of memory"));
  TRY(bt_ckks_preset(preset, &lit));
  TRY(bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &p));
  bt_ckks_set_threads(p, threads);
  TRY(bt_hemat_layout_init(bt_ckks_logn(p) - 1, B, F, C, &L));
  bt_hemat_layout_fold(&L, !plain);
  TRY(bt_softmax_approx_init(C, NULL, &sa));
  const double lr = 1.0, mu = 0.9;
  /* the client's keys for this layout (pure functions of it), the server's
   * objects on the evaluation keys only */
  double t0 = bt_seconds();
  bt_bootstrap_config cfg;
  size_t ns = 0;
  TRY(bt_trainer_bootstrap_config(p, &L, &cfg));
  TRY(bt_bootstrap_config_steps(p, &cfg, NULL, NULL, 0, &ns));
  const size_t nt = bt_train_layout_steps(&L, NULL, 0);
  if (!nt || !(steps = malloc(2 * (ns + nt) * sizeof *steps))) TRY(bt_fail(BT_E_NOMEM, "out of memory"));
  /* the keys a client makes: level-limited where their steps run low */
  int *levels = steps + ns + nt, out_level;
  TRY(bt_bootstrap_config_steps(p, &cfg, steps, levels, ns, &ns));
  TRY(bt_bootstrap_config_output_level(p, &cfg, &out_level));
  const size_t nb = ns;
  ns += bt_train_layout_steps(&L, steps + ns, nt);
  for (size_t i = nb; i < ns; i++) levels[i] = out_level;
  TRY(bt_keygen_secret(p, &g, &sk));
  TRY(bt_eval_keys_new(p, &eb.ek));
  TRY(bt_keygen_eval_levels(sk, &g, 1, steps, levels, ns, 1, eb.ek));
  if (cfg.encaps_hamming_weight)
    TRY(bt_keygen_encapsulation(sk, cfg.encaps_hamming_weight, &g, &eb.to_sparse, &eb.to_dense));
  TRY(bt_server_engine_init(p, &L, &sa, &eb, lr, mu, &en));
  bt_trainer *const t = en.trainer;
  bt_evaluator *const ev = en.ev;
  const bt_eval_keys *const ek = eb.ek;
  const double setup_s = bt_seconds() - t0;
  if (!json)
    printf("bench train: preset %s%s, N = 2^%d, %d threads; shape (%d, %d, %d): C' = %d, blocks %d x %d, "
           "%d X blocks%s; softmax depth %d (relu %d, exp %d, inverse %d + %d Newton); %zu Galois keys; "
           "setup %.1f s\n",
           preset, lit.insecure ? " (INSECURE)" : "", bt_ckks_logn(p), bt_ckks_threads(p), B, F, C, L.cpad,
           L.s0, L.s1, L.nb, L.fold ? ", folded (sparse-slot bootstrapping)" : "", bt_softmax_approx_depth(&sa), sa.relu.degree, sa.exp.degree, sa.inv.degree,
           sa.newton, ek->ngalois, setup_s);

  x = malloc((size_t)B * F * sizeof *x);
  teacher = malloc((size_t)C * F * sizeof *teacher);
  y = malloc((size_t)B * sizeof *y);
  v = calloc((size_t)C * F, sizeof *v);
  w = calloc((size_t)C * F, sizeof *w);
  dv = calloc((size_t)C * F, sizeof *dv);
  slots = malloc(L.slots * sizeof *slots);
  yv = calloc((size_t)B * C, sizeof *yv);
  cv = calloc(L.slots, sizeof *cv);
  xc = calloc((size_t)L.nb, sizeof *xc);
  if (!x || !teacher || !y || !v || !w || !dv || !slots || !yv || !cv || !xc) TRY(bt_fail(BT_E_NOMEM, "out of memory"));
  for (int i = 0; i < C * F; i++) teacher[i] = uni(&g);
  for (int r = 0; r < B; r++) {
    double best = -1e300;
    for (int j = 0; j < F; j++) x[(size_t)r * F + j] = j == F - 1 ? 1 : uni(&g);
    for (int c = 0; c < C; c++) {
      double s = 0;
      for (int j = 0; j < F; j++) s += teacher[c * F + j] * x[(size_t)r * F + j];
      if (s > best) best = s, y[r] = c;
    }
    yv[(size_t)r * C + y[r]] = 1;
  }
  TRY(bt_plaintext_new(p, &pt));
  for (int j = 0; j < L.nb; j++) {
    TRY(bt_ciphertext_new(p, &xc[j]));
    bt_hemat_pack_x(&L, x, j, slots);
    for (size_t i = 0; i < L.slots; i++) cv[i] = slots[i];
    TRY(enc(p, sk, &g, &L, cv, bt_trainer_x_level(t), pt, xc[j]));
  }
  TRY(bt_ciphertext_new(p, &yc));
  bt_hemat_pack_diag(&L, yv, slots);
  for (size_t i = 0; i < L.slots; i++) cv[i] = slots[i];
  TRY(enc(p, sk, &g, &L, cv, bt_trainer_y_level(t), pt, yc));
  TRY(bt_ciphertext_new(p, &a));
  memset(cv, 0, L.slots * sizeof *cv);
  TRY(enc(p, sk, &g, &L, cv, 4, pt, a));

  /* step 0 from fresh weights (not timed), then the timed steady-state steps */
  for (int s = 0; s <= runs; s++) {
    bt_train_stats one = {0};
    t0 = bt_seconds();
    TRY(bt_trainer_step(t, ev, xc, yc, B, a, &one));
    const double dt = bt_seconds() - t0;
    TRY(bt_plain_step(&sa, B, F, C, x, y, lr, mu, v, w));
    if (s > 0) {
      st[s - 1] = one;
      secs[s - 1] = dt;
    }
    if (!json)
      printf("  step %d%s: %.2f s (matmul %.2f, softmax %.2f, bootstrapping %.2f in %ld, other %.2f); "
             "rot %ld, mult %ld, cmult %ld\n",
             s, s ? "" : " (fresh weights, not timed)", dt, one.matmul_s, one.softmax_s, one.bootstrap_s,
             one.bootstraps, one.other_s, one.rot, one.mult, one.cmult);
  }
  /* decrypted weights against the twin */
  TRY(bt_decrypt(sk, a, pt));
  TRY(bt_ckks_decode(pt, cv));
  for (size_t i = 0; i < L.slots; i++) slots[i] = cimag(cv[i]);
  bt_hemat_unpack_w(&L, slots, dv);
  double err = 0, mag = 0;
  for (int i = 0; i < C * F; i++) {
    err = fmax(err, fabs(dv[i] - w[i]));
    mag = fmax(mag, fabs(w[i]));
  }
  const double w_bits = err > 0 ? -log2(err) : 64;

  double *sorted = malloc((size_t)runs * sizeof *sorted);
  if (!sorted) TRY(bt_fail(BT_E_NOMEM, "out of memory"));
  memcpy(sorted, secs, (size_t)runs * sizeof *sorted);
  qsort(sorted, (size_t)runs, sizeof *sorted, cmp);
  const double med = sorted[runs / 2];
  free(sorted);
  int mi = 0;
  for (int i = 0; i < runs; i++)
    if (secs[i] == med) mi = i;
  const bt_train_stats *m = &st[mi];
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const double peak_gib = (double)ru.ru_maxrss / (1024.0 * 1024.0);
  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "preset", json_object_new_string(preset));
    json_object_object_add(o, "threads", json_object_new_int(bt_ckks_threads(p)));
    json_object_object_add(o, "batch", json_object_new_int(B));
    json_object_object_add(o, "features", json_object_new_int(F));
    json_object_object_add(o, "classes", json_object_new_int(C));
    json_object_object_add(o, "runs", json_object_new_int(runs));
    json_object_object_add(o, "seconds", json_object_new_double(med));
    json_object_object_add(o, "matmul_s", json_object_new_double(m->matmul_s));
    json_object_object_add(o, "softmax_s", json_object_new_double(m->softmax_s));
    json_object_object_add(o, "bootstrap_s", json_object_new_double(m->bootstrap_s));
    json_object_object_add(o, "other_s", json_object_new_double(m->other_s));
    json_object_object_add(o, "bootstraps", json_object_new_int64(m->bootstraps));
    json_object_object_add(o, "cmult", json_object_new_int64(m->cmult));
    json_object_object_add(o, "mult", json_object_new_int64(m->mult));
    json_object_object_add(o, "rot", json_object_new_int64(m->rot));
    json_object_object_add(o, "softmax_depth", json_object_new_int(bt_softmax_approx_depth(&sa)));
    json_object_object_add(o, "weights_vs_twin_bits", json_object_new_double(w_bits));
    json_object_object_add(o, "galois_keys", json_object_new_int64((int64_t)ek->ngalois));
    json_object_object_add(o, "setup_s", json_object_new_double(setup_s));
    json_object_object_add(o, "peak_memory_gib", json_object_new_double(peak_gib));
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else {
    printf("median of %d step(s): %.2f s (matmul %.2f, softmax %.2f, bootstrapping %.2f in %ld bootstraps, "
           "other %.2f); rot %ld, mult %ld, cmult %ld\n",
           runs, med, m->matmul_s, m->softmax_s, m->bootstrap_s, m->bootstraps, m->other_s, m->rot, m->mult,
           m->cmult);
    printf("decrypted weights vs the plaintext twin after %d steps: max abs error %.2e (%.1f bits, |W| <= %.3f); "
           "peak memory %.1f GiB\n",
           runs + 1, err, w_bits, mag, peak_gib);
  }
  rc = 0;
out:
  if (xc)
    for (int j = 0; j < L.nb; j++) bt_ciphertext_free(xc[j]);
  free(xc);
  bt_ciphertext_free(yc);
  bt_ciphertext_free(a);
  bt_plaintext_free(pt);
  bt_server_engine_clear(&en);
  bt_eval_bundle_clear(&eb);
  bt_secret_key_free(sk);
  free(steps);
  bt_ckks_params_free(p);
  bt_softmax_approx_free(&sa);
  free(x), free(teacher), free(y), free(v), free(w), free(dv), free(slots), free(yv), free(cv);
  free(st), free(secs);
  return rc;
}

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
#include <sodium.h>

#include "blindtuner/dist.h"
#include "blindtuner/pipeline.h"
#include "blindtuner/train.h"
#include "bench.h"

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
         "Under `mpirun -np K` (a build with MPI): weak scaling.  Every rank makes the same\n"
         "keys (a seed from rank 0) and its own batch of B rows; a step trains the global\n"
         "batch of K x B rows, the gradients summed over the ranks.  Prints ranks, rows_per_s\n"
         "(global rows per second) and the largest rank's peak memory.\n"
         "\n"
         "A batch larger than the layout's block (slots / C' rows) is trained as A blocks\n"
         "whose gradients are summed into one update (gradient accumulation, train\n"
         "--accumulate A; docs/TRAINING.md); the twin trains the whole batch.\n"
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
  bt_collective co;
  int mpi = 0;
  if (bt_dist_init(NULL, NULL, &co, &mpi)) {
    fprintf(stderr, "blindtuner bench train: %s\n", bt_last_error());
    return 1;
  }
  const int K = co.ranks, rank0 = co.rank == 0;
  int rc = 1;
  bt_ckks_params *p = NULL;
  bt_secret_key *sk = NULL;
  bt_eval_bundle eb = {0};
  bt_server_engine en = {0};
  int *steps = NULL;
  bt_plaintext *pt = NULL;
  bt_ciphertext **xc = NULL, **yc = NULL, *a = NULL;
  int A = 1, Bl = B; /* blocks per rank and their rows */
  bt_softmax_approx sa = {0};
  double *xall = NULL;
  int *yall = NULL;
  double *x = NULL, *teacher = NULL, *v = NULL, *w = NULL, *slots = NULL, *yv = NULL, *dv = NULL;
  int *y = NULL;
  double complex *cv = NULL;
  bt_train_stats *st = calloc((size_t)runs, sizeof *st);
  double *secs = calloc((size_t)runs, sizeof *secs);
  /* one seed for every rank's keys and teacher, rank 0's; each rank's rows
   * from it and the rank's number */
  bt_prng g, gr[64];
  bt_ciphertext *const *xs[BT_MAX_ACCUMULATE];
  const bt_ciphertext *ys[BT_MAX_ACCUMULATE];
  int nrows[BT_MAX_ACCUMULATE];
  uint8_t seed[BT_SEED_BYTES];
  int64_t seed_words[BT_SEED_BYTES / 8];
  bt_prng_init_random(&g);
  bt_prng_bytes(&g, seed_words, sizeof seed_words);
  bt_ckks_literal lit;
  if (K > 64) TRY(bt_fail(BT_E_ARG, "at most 64 ranks"));
  TRY(bt_dist_bcast_i64(&co, seed_words, BT_SEED_BYTES / 8, 0));
  memcpy(seed, seed_words, sizeof seed);
  bt_prng_init(&g, seed);
  for (int r = 0; r < K; r++) {
    uint8_t s2[BT_SEED_BYTES];
    memcpy(s2, seed, sizeof s2);
    s2[0] ^= (uint8_t)(1 + r), s2[1] ^= 0x5a;
    bt_prng_init(&gr[r], s2);
  }
  bt_hemat_layout L = {0};
  if (!st || !secs) TRY(bt_fail(BT_E_NOMEM, "out of memory"));
  TRY(bt_ckks_preset(preset, &lit));
  TRY(bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &p));
  bt_ckks_set_threads(p, threads ? threads : bt_dist_default_threads());
  {
    /* a batch above the layout's block (slots / C' rows) in A blocks */
    int cp = 1;
    while (cp < C) cp *= 2;
    const long cap = (1L << (bt_ckks_logn(p) - 1)) / cp;
    if (B > cap) A = (int)((B + cap - 1) / cap), Bl = (B + A - 1) / A;
    if (A > BT_MAX_ACCUMULATE) TRY(bt_fail(BT_E_ARG, "a batch of %d rows is more than %d blocks of %ld", B, BT_MAX_ACCUMULATE, cap));
  }
  TRY(bt_hemat_layout_init(bt_ckks_logn(p) - 1, Bl, F, C, &L));
  bt_hemat_layout_fold(&L, !plain);
  TRY(bt_softmax_approx_init(C, NULL, &sa));
  const double lr = 1.0, mu = 0.9;
  /* the client's keys for this layout (pure functions of it), the server's
   * objects on the evaluation keys only */
  double t0 = bt_seconds();
  bt_bootstrap_config cfg;
  size_t ns = 0;
  TRY(bt_trainer_bootstrap_config(p, &L, &cfg));
  /* the keys a client makes: level-limited where their steps run low */
  TRY(bt_train_layout_rotations(p, &L, NULL, NULL, 0, &ns));
  if (!(steps = malloc(2 * (ns ? ns : 1) * sizeof *steps))) TRY(bt_fail(BT_E_NOMEM, "out of memory"));
  int *levels = steps + ns;
  TRY(bt_train_layout_rotations(p, &L, steps, levels, ns, &ns));
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
  if (!json && rank0)
    printf("bench train: preset %s%s, N = 2^%d, %d threads; shape (%d, %d, %d): %d batch%s of %d rows a step, "
           "C' = %d, blocks %d x %d, %d X blocks%s; softmax depth %d (relu %d, exp %d, inverse %d + %d Newton); "
           "%zu Galois keys; setup %.1f s\n",
           preset, lit.insecure ? " (INSECURE)" : "", bt_ckks_logn(p), bt_ckks_threads(p), B, F, C, A,
           A > 1 ? "es" : "", Bl, L.cpad, L.s0, L.s1, L.nb, L.fold ? ", folded (sparse-slot bootstrapping)" : "", bt_softmax_approx_depth(&sa), sa.relu.degree, sa.exp.degree, sa.inv.degree,
           sa.newton, ek->ngalois, setup_s);

  xall = malloc((size_t)K * B * F * sizeof *xall);
  yall = malloc((size_t)K * B * sizeof *yall);
  if (!xall || !yall) TRY(bt_fail(BT_E_NOMEM, "out of memory"));
  x = malloc((size_t)A * Bl * F * sizeof *x);
  teacher = malloc((size_t)C * F * sizeof *teacher);
  y = malloc((size_t)A * Bl * sizeof *y);
  v = calloc((size_t)C * F, sizeof *v);
  w = calloc((size_t)C * F, sizeof *w);
  dv = calloc((size_t)C * F, sizeof *dv);
  slots = malloc(L.slots * sizeof *slots);
  yv = calloc((size_t)Bl * C, sizeof *yv);
  cv = calloc(L.slots, sizeof *cv);
  xc = calloc((size_t)A * L.nb, sizeof *xc);
  yc = calloc((size_t)A, sizeof *yc);
  if (!x || !teacher || !y || !v || !w || !dv || !slots || !yv || !cv || !xc || !yc) TRY(bt_fail(BT_E_NOMEM, "out of memory"));
  for (int i = 0; i < C * F; i++) teacher[i] = uni(&g);
  /* every rank's rows (the twin trains the global batch), this rank's kept */
  for (int k = 0; k < K; k++)
    for (int r = 0; r < B; r++) {
      double best = -1e300, *xr = xall + ((size_t)k * B + r) * F;
      int *yr = yall + (size_t)k * B + r;
      for (int j = 0; j < F; j++) xr[j] = j == F - 1 ? 1 : uni(&gr[k]);
      for (int c = 0; c < C; c++) {
        double s = 0;
        for (int j = 0; j < F; j++) s += teacher[c * F + j] * xr[j];
        if (s > best) best = s, *yr = c;
      }
    }
  /* this rank's rows in A blocks of Bl, the last one zero-padded */
  memset(x, 0, (size_t)A * Bl * F * sizeof *x);
  memcpy(x, xall + (size_t)co.rank * B * F, (size_t)B * F * sizeof *x);
  memcpy(y, yall + (size_t)co.rank * B, (size_t)B * sizeof *y);
  TRY(bt_plaintext_new(p, &pt));
  for (int k = 0; k < A; k++) {
    const int rk = B - k * Bl < Bl ? B - k * Bl : Bl;
    for (int j = 0; j < L.nb; j++) {
      TRY(bt_ciphertext_new(p, &xc[k * L.nb + j]));
      bt_hemat_pack_x(&L, x + (size_t)k * Bl * F, j, slots);
      for (size_t i = 0; i < L.slots; i++) cv[i] = slots[i];
      TRY(enc(p, sk, &gr[co.rank], &L, cv, bt_trainer_x_level(t), pt, xc[k * L.nb + j]));
    }
    memset(yv, 0, (size_t)Bl * C * sizeof *yv);
    for (int r = 0; r < rk; r++) yv[(size_t)r * C + y[k * Bl + r]] = 1;
    TRY(bt_ciphertext_new(p, &yc[k]));
    bt_hemat_pack_diag(&L, yv, slots);
    for (size_t i = 0; i < L.slots; i++) cv[i] = slots[i];
    TRY(enc(p, sk, &gr[co.rank], &L, cv, bt_trainer_y_level(t), pt, yc[k]));
    xs[k] = xc + (size_t)k * L.nb;
    ys[k] = yc[k];
    nrows[k] = rk;
  }
  TRY(bt_ciphertext_new(p, &a));
  memset(cv, 0, L.slots * sizeof *cv);
  TRY(enc(p, sk, &g, &L, cv, 4, pt, a));

  /* step 0 from fresh weights (not timed), then the timed steady-state steps */
  for (int s = 0; s <= runs; s++) {
    bt_train_stats one = {0};
    t0 = bt_seconds();
    TRY(bt_trainer_step_many(t, ev, A, xs, ys, nrows, K * B, mpi ? co.sum : NULL, mpi ? co.user : NULL, a, &one));
    const double dt = bt_seconds() - t0;
    TRY(bt_plain_step(&sa, K * B, F, C, xall, yall, lr, mu, v, w));
    if (s > 0) {
      st[s - 1] = one;
      secs[s - 1] = dt;
    }
    if (!json && rank0)
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
  double peak_gib = (double)ru.ru_maxrss / (1024.0 * 1024.0);
  int64_t differ = 0;
  if (mpi) { /* every rank must hold the same weights */
    int same = 0;
    uint8_t d[32];
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, sizeof d);
    for (int c = 0; c < 2; c++)
      crypto_generichash_update(&h, (const unsigned char *)a->c[c], (size_t)(a->level + 1) * bt_ckks_n(p) * 8);
    crypto_generichash_final(&h, d, sizeof d);
    TRY(co.same(co.user, d, &same));
    differ = !same;
    TRY(bt_dist_max_f64(&co, &peak_gib, 1));
  }
  const double rows_per_s = (double)K * B / med;
  double sum_s;
  uint64_t sum_bytes, sums;
  bt_dist_counters(&sum_s, &sum_bytes, &sums);
  if (!rank0) {
    rc = 0;
    goto out;
  }
  if (differ) TRY(bt_fail(BT_E_PARAMS, "the ranks' weights differ after the steps"));
  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "preset", json_object_new_string(preset));
    json_object_object_add(o, "threads", json_object_new_int(bt_ckks_threads(p)));
    json_object_object_add(o, "batch", json_object_new_int(B));
    json_object_object_add(o, "accumulate", json_object_new_int(A));
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
    json_object_object_add(o, "ranks", json_object_new_int(K));
    json_object_object_add(o, "rows_per_s", json_object_new_double(rows_per_s));
    json_object_object_add(o, "allreduce_s_per_step", json_object_new_double(sum_s / (runs + 1)));
    json_object_object_add(o, "allreduce_bytes_per_step", json_object_new_int64((int64_t)(sum_bytes / (uint64_t)(runs + 1))));
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else {
    printf("median of %d step(s): %.2f s (matmul %.2f, softmax %.2f, bootstrapping %.2f in %ld bootstraps, "
           "other %.2f); rot %ld, mult %ld, cmult %ld\n",
           runs, med, m->matmul_s, m->softmax_s, m->bootstrap_s, m->bootstraps, m->other_s, m->rot, m->mult,
           m->cmult);
    printf("decrypted weights vs the plaintext twin after %d steps: max abs error %.2e (%.1f bits, |W| <= %.3f); "
           "peak memory %.1f GiB%s; %d rank%s: %.1f rows/s; gradient sums %.3f s and %.1f MB a step\n",
           runs + 1, err, w_bits, mag, peak_gib, K > 1 ? " (the largest rank's)" : "", K, K > 1 ? "s" : "",
           rows_per_s, sum_s / (runs + 1), (double)sum_bytes / (runs + 1) / 1e6);
  }
  rc = 0;
out:
  if (xc)
    for (int j = 0; j < A * L.nb; j++) bt_ciphertext_free(xc[j]);
  free(xc);
  if (yc)
    for (int k = 0; k < A; k++) bt_ciphertext_free(yc[k]);
  free(yc);
  bt_ciphertext_free(a);
  bt_plaintext_free(pt);
  bt_server_engine_clear(&en);
  bt_eval_bundle_clear(&eb);
  bt_secret_key_free(sk);
  free(steps);
  bt_ckks_params_free(p);
  bt_softmax_approx_free(&sa);
  free(x), free(teacher), free(y), free(v), free(w), free(dv), free(slots), free(yv), free(cv);
  free(st), free(secs), free(xall), free(yall);
  if (rc && mpi && K > 1) bt_dist_abort(1);
  if (mpi) bt_dist_finalize();
  return rc;
}

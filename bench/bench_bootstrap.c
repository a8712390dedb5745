/* `blindtuner bench bootstrap`: time and precision of full-slot bootstrapping
 * on the real code path. */
#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <json-c/json.h>

#include "blindtuner/circuits.h"
#include "bench.h"

static void help(void) {
  printf("usage: blindtuner bench bootstrap [--threads N] [--slots S] [--runs R] [--json]\n"
         "                                   [--preset NAME]\n"
         "\n"
         "Generates the keys bootstrapping needs, encrypts random complex values at level 0,\n"
         "bootstraps R times (median time) and prints the precision of the result over all\n"
         "slots (mean and minimum bits), the levels left, log2 QP, key generation time,\n"
         "evaluation-key bytes and peak memory, then (untimed) the precision of a vector\n"
         "with every slot 1, the worst case of EvalMod's sine.  --json prints one object\n"
         "with seconds, mean_bits, min_bits, levels_after, log_qp (and the rest).\n"
         "\n"
         "  --preset NAME   parameters (default train-n16: N = 2^16, 128-bit secure, dense\n"
         "                  secret bootstrapped through sparse-secret encapsulation;\n"
         "                  INSECURE-boot-n16: sparse secret, for comparison)\n"
         "  --slots S       slots bootstrapped, a power of two up to N/2 (default N/2, full;\n"
         "                  fewer run a partial trace first and EvalMod once)\n"
         "  --runs R        bootstraps to time (default 3)\n"
         "  --threads N     threads (default BT_THREADS or all cores)\n");
}

#define TRY(expr)                                                                  \
  do {                                                                             \
    bt_status st_ = (expr);                                                        \
    if (st_ != BT_OK) {                                                            \
      fprintf(stderr, "blindtuner bench bootstrap: %s (%s)\n", bt_last_error(), bt_status_name(st_)); \
      goto out;                                                                    \
    }                                                                              \
  } while (0)

int bt_bench_bootstrap(int argc, char **argv) {
  bt_bench_opts opt = {.who = "bench bootstrap", .runs_max = 100, .runs = 3, .preset = "train-n16"};
  int slots = 0;
  for (int i = 1; i < argc; i++) {
    const int r = bt_bench_option(&opt, argc, argv, &i);
    if (r < 0) return 2;
    if (r) continue;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      help();
      return 0;
    } else if (!strcmp(argv[i], "--slots")) {
      if ((slots = bt_bench_parse_int("--slots", i + 1 < argc ? argv[++i] : NULL, 1, 1 << 16)) < 0) return 2;
    } else {
      fprintf(stderr, "blindtuner bench bootstrap: unknown option '%s'\n", argv[i]);
      return 2;
    }
  }
  const int threads = opt.threads, runs = opt.runs, json = opt.json;
  const char *preset = opt.preset;
  int rc = 1;
  bt_ckks_params *p = NULL;
  bt_secret_key *sk = NULL;
  bt_eval_keys *ek = NULL;
  bt_encaps_key *to_sparse = NULL;
  bt_switch_key *to_dense = NULL;
  bt_evaluator *ev = NULL;
  bt_bootstrapper *bs = NULL;
  bt_plaintext *pt = NULL;
  bt_ciphertext *ct = NULL, *out_ct = NULL;
  double complex *v = NULL, *got = NULL;
  double *times = calloc((size_t)runs, sizeof *times);
  double split[4] = {0}, (*splits)[4] = NULL;
  int *steps = malloc(4096 * sizeof *steps);
  bt_prng g;
  bt_prng_init_random(&g);
  bt_ckks_literal lit;
  /* the bench names INSECURE presets on purpose: say so instead of refusing */
  TRY(bt_ckks_preset(preset, &lit));
  TRY(bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &p));
  bt_ckks_set_threads(p, threads);
  int ls = bt_ckks_logn(p) - 1;
  if (slots) {
    if (slots & (slots - 1) || slots > 1 << ls)
      TRY(bt_fail(BT_E_ARG, "--slots %d: a power of two up to %d", slots, 1 << ls));
    ls = 0;
    while ((1 << ls) < slots) ls++;
  }
  const size_t n = (size_t)1 << ls;
  bt_bootstrap_config cfg;
  TRY(bt_bootstrap_config_default(p, &cfg));
  cfg.logslots = ls;
  double t0 = bt_seconds();
  TRY(bt_bootstrapper_new(p, &cfg, bt_ckks_default_scale(p), &bs));
  const double prep_s = bt_seconds() - t0;
  size_t ns = bt_bootstrap_steps(bs, steps, 4096);
  if (ns == 0 || ns > 4096) TRY(bt_fail(BT_E_NOMEM, "bootstrapping needs %zu rotation steps", ns));
  t0 = bt_seconds();
  TRY(bt_keygen_secret(p, &g, &sk));
  TRY(bt_eval_keys_new(p, &ek));
  TRY(bt_keygen_eval(sk, &g, 1, steps, ns, 1, ek));
  if (cfg.encaps_hamming_weight) {
    TRY(bt_keygen_encapsulation(sk, cfg.encaps_hamming_weight, &g, &to_sparse, &to_dense));
    TRY(bt_bootstrapper_set_encapsulation(bs, to_sparse, to_dense));
  }
  const double keygen_s = bt_seconds() - t0;
  const size_t key_bytes = (ek->ngalois + 1 + (to_dense != NULL)) * 2 * (size_t)bt_ckks_dnum(p) *
                           (size_t)(bt_ckks_max_level(p) + 1 + bt_ckks_num_special(p)) * bt_ckks_n(p) * 8;
  if (!json)
    printf("bench bootstrap: preset %s%s, N = 2^%d, %zu slots, log2 QP = %.0f, %d threads\n"
           "  config: K = %g, Chebyshev degree %d, %d double angles, CtS %d / StC %d levels, depth %d%s\n"
           "  message lift %d: q0 / (lift scale) = 2^%.2f\n"
           "  transforms prepared in %.1f s; keys (relin, conjugation, %zu rotations) in %.1f s, %.2f GB\n",
           preset, lit.insecure ? " (INSECURE)" : "", bt_ckks_logn(p), n, bt_ckks_log_qp(p),
           bt_ckks_threads(p), cfg.k_range, cfg.cheby_degree, cfg.double_angle, cfg.cts_levels,
           cfg.stc_levels, bt_bootstrap_depth(bs),
           cfg.encaps_hamming_weight ? ", sparse-secret encapsulation (h = 32)" : "",
           cfg.message_lift ? cfg.message_lift : 1,
           log2((double)bt_ckks_q(p, 0) / ((cfg.message_lift ? cfg.message_lift : 1) * bt_ckks_default_scale(p))),
           prep_s, ns, keygen_s,
           key_bytes / 1e9);
  TRY(bt_evaluator_new(p, ek, &ev));
  TRY(bt_plaintext_new(p, &pt));
  TRY(bt_ciphertext_new(p, &ct));
  TRY(bt_ciphertext_new(p, &out_ct));
  v = malloc(n * sizeof *v);
  got = malloc(n * sizeof *got);
  if (!v || !got || !times || !steps) TRY(bt_fail(BT_E_NOMEM, "out of memory"));
  for (size_t i = 0; i < n; i++)
    v[i] = ((double)(bt_prng_u64(&g) % 2000001) - 1e6) / 1e6 + I * (((double)(bt_prng_u64(&g) % 2000001) - 1e6) / 1e6);
  TRY(bt_ckks_encode(p, v, n, ls, 0, bt_ckks_default_scale(p), pt));
  TRY(bt_encrypt_sk(sk, pt, &g, ct));
  bt_precision worst = {64, 64, 0, 0};
  splits = calloc((size_t)runs, sizeof *splits);
  if (!splits) TRY(bt_fail(BT_E_NOMEM, "out of memory"));
  for (int r = 0; r < runs; r++) {
    t0 = bt_seconds();
    TRY(bt_bootstrap(bs, ev, ct, out_ct));
    times[r] = bt_seconds() - t0;
    bt_bootstrap_last_split(bs, splits[r]);
    TRY(bt_decrypt(sk, out_ct, pt));
    TRY(bt_ckks_decode(pt, got));
    bt_precision pr = bt_precision_measure(v, got, n);
    if (pr.min_bits < worst.min_bits) worst = pr;
    if (!json)
      printf("  run %d: %.2f s (ModRaise+trace %.2f, CtS %.2f, EvalMod %.2f, StC %.2f), precision mean %.2f bits, "
             "min %.2f bits\n",
             r + 1, times[r], splits[r][0], splits[r][1], splits[r][2], splits[r][3], pr.mean_bits, pr.min_bits);
  }
  /* the worst case of the sine's cubic term: every slot equal, the whole
   * message in one coefficient (untimed) */
  for (size_t i = 0; i < n; i++) got[i] = 1;
  TRY(bt_ckks_encode(p, got, n, ls, 0, bt_ckks_default_scale(p), pt));
  TRY(bt_encrypt_sk(sk, pt, &g, ct));
  TRY(bt_bootstrap(bs, ev, ct, out_ct));
  TRY(bt_decrypt(sk, out_ct, pt));
  TRY(bt_ckks_decode(pt, v));
  for (size_t i = 0; i < n; i++) got[i] = 1;
  const bt_precision ones = bt_precision_measure(got, v, n);
  if (!json) printf("  every slot 1 (worst case of the sine): precision mean %.2f bits, min %.2f bits\n",
                    ones.mean_bits, ones.min_bits);
  const double med = bt_bench_median(times, runs);
  for (int k = 0; k < 4; k++) {
    for (int r = 0; r < runs; r++) times[r] = splits[r][k];
    split[k] = bt_bench_median(times, runs);
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const double peak_gb = ru.ru_maxrss / 1048576.0;
  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "preset", json_object_new_string(preset));
    json_object_object_add(o, "insecure", json_object_new_boolean(lit.insecure));
    json_object_object_add(o, "logn", json_object_new_int(bt_ckks_logn(p)));
    json_object_object_add(o, "slots", json_object_new_int64((int64_t)n));
    json_object_object_add(o, "threads", json_object_new_int(bt_ckks_threads(p)));
    json_object_object_add(o, "seconds", json_object_new_double(med));
    json_object_object_add(o, "modraise_s", json_object_new_double(split[0]));
    json_object_object_add(o, "cts_s", json_object_new_double(split[1]));
    json_object_object_add(o, "evalmod_s", json_object_new_double(split[2]));
    json_object_object_add(o, "stc_s", json_object_new_double(split[3]));
    json_object_object_add(o, "mean_bits", json_object_new_double(worst.mean_bits));
    json_object_object_add(o, "min_bits", json_object_new_double(worst.min_bits));
    json_object_object_add(o, "ones_mean_bits", json_object_new_double(ones.mean_bits));
    json_object_object_add(o, "ones_min_bits", json_object_new_double(ones.min_bits));
    json_object_object_add(o, "message_lift", json_object_new_int(cfg.message_lift ? cfg.message_lift : 1));
    json_object_object_add(o, "levels_after", json_object_new_int(out_ct->level));
    json_object_object_add(o, "log_qp", json_object_new_double(bt_ckks_log_qp(p)));
    json_object_object_add(o, "keygen_s", json_object_new_double(keygen_s));
    json_object_object_add(o, "rotation_keys", json_object_new_int64((int64_t)ns));
    json_object_object_add(o, "eval_key_bytes", json_object_new_int64((int64_t)key_bytes));
    json_object_object_add(o, "peak_memory_gib", json_object_new_double(peak_gb));
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else {
    printf("phases (medians): ModRaise+trace %.2f s, CtS %.2f s, EvalMod %.2f s, StC %.2f s\n", split[0],
           split[1], split[2], split[3]);
    printf("median %.2f s over %d runs; worst run: mean %.2f bits, min %.2f bits; levels after %d of %d; "
           "peak memory %.2f GiB\n",
           med, runs, worst.mean_bits, worst.min_bits, out_ct->level, bt_ckks_max_level(p), peak_gb);
  }
  rc = 0;
out:
  bt_prng_wipe(&g);
  free(times);
  free(splits);
  free(steps);
  free(v);
  free(got);
  bt_ciphertext_free(ct);
  bt_ciphertext_free(out_ct);
  bt_plaintext_free(pt);
  bt_bootstrapper_free(bs);
  bt_encaps_key_free(to_sparse);
  bt_switch_key_free(to_dense);
  bt_evaluator_free(ev);
  bt_eval_keys_free(ek);
  bt_secret_key_free(sk);
  bt_ckks_params_free(p);
  return rc;
}

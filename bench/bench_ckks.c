/* `blindtuner bench ckks`: median times of the CKKS engine's operations on
 * the real code path, at the benchmark preset (N = 2^16, 25 limbs, dnum = 3). */
#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "blindtuner/ckks.h"
#include "bench.h"

static void help(void) {
  printf("usage: blindtuner bench ckks [--threads N] [--runs R] [--json] [--preset NAME]\n"
         "                              [--allow-insecure]\n"
         "\n"
         "Times NTT (one limb), encode, encrypt (public key), add, multiply+relinearise,\n"
         "rescale, rotate, hoisted rotation (8 steps), decrypt and decode; prints medians\n"
         "over R runs and the sizes of the keys.  Without --threads it measures 1 and 2\n"
         "threads.  --json prints one JSON object:\n"
         "  {\"preset\", \"logn\", \"limbs\", \"dnum\", \"runs\",\n"
         "   \"threads\": {\"<T>\": {\"ntt\", \"encode\", \"encrypt\", \"add\", \"mul_relin\",\n"
         "                         \"rescale\", \"rotate\", \"rotate_hoisted_8\", \"decrypt\",\n"
         "                         \"decode\"} (seconds)},\n"
         "   \"key_bytes\": {\"secret\", \"public\", \"relin\", \"rotation\"} (in memory)}\n"
         "\n"
         "  --preset NAME   parameters (default bench-n16)\n"
         "  --runs R        repetitions per operation (default 7)\n");
}

enum { OP_NTT, OP_ENCODE, OP_ENCRYPT, OP_ADD, OP_MUL, OP_RESCALE, OP_ROT, OP_HOIST, OP_DEC, OP_DECODE, NOPS };
static const char *op_names[NOPS] = {"ntt", "encode", "encrypt", "add", "mul_relin", "rescale",
                                     "rotate", "rotate_hoisted_8", "decrypt", "decode"};

#define TRY(expr)                                                                  \
  do {                                                                             \
    bt_status st_ = (expr);                                                        \
    if (st_ != BT_OK) {                                                            \
      fprintf(stderr, "blindtuner bench: %s (%s)\n", bt_last_error(), bt_status_name(st_)); \
      goto out;                                                                    \
    }                                                                              \
  } while (0)

/* Times `stmt` `runs` times; the median goes to res[op]. */
#define TIME(op, stmt)                                                             \
  do {                                                                             \
    for (int r_ = 0; r_ < runs; r_++) {                                            \
      double t0_ = bt_seconds();                                                   \
      stmt;                                                                        \
      samples[r_] = bt_seconds() - t0_;                                            \
    }                                                                              \
    res[op] = bt_bench_median(samples, runs);                                             \
  } while (0)

int bt_bench_ckks(int argc, char **argv) {
  bt_bench_opts opt = {.who = "bench ckks", .runs_max = 1000, .runs = 7, .preset = "bench-n16"};
  const int parsed = bt_bench_parse(&opt, argc, argv, help);
  if (parsed) return parsed == 1 ? 0 : 2;
  const int threads = opt.threads, runs = opt.runs, json = opt.json;
  const char *preset = opt.preset;
  const unsigned flags = opt.allow_insecure ? BT_ALLOW_INSECURE : 0;
  int thread_list[2] = {1, 2}, nthreads = 2;
  if (threads) {
    thread_list[0] = threads;
    nthreads = 1;
  }
  int rc = 1;
  bt_ckks_params *p = NULL;
  bt_secret_key *sk = NULL;
  bt_public_key *pk = NULL;
  bt_eval_keys *ek = NULL;
  bt_evaluator *ev = NULL;
  bt_plaintext *pt = NULL;
  bt_ciphertext *a = NULL, *b = NULL, *c = NULL, *d = NULL, *outs[8] = {0};
  double complex *v = NULL;
  uint64_t *limb = NULL;
  double *samples = calloc((size_t)runs, sizeof *samples);
  double res_all[2][NOPS];
  json_object *root = NULL;
  bt_prng g;
  bt_prng_init_random(&g);
  bt_ckks_literal lit;
  TRY(bt_ckks_preset(preset, &lit));
  TRY(bt_ckks_params_new(&lit, flags, &p));
  const size_t n = bt_ckks_n(p), slots = n / 2;
  const int L = bt_ckks_max_level(p);
  if (!json)
    printf("bench ckks: preset %s, N = 2^%d, %d ciphertext limbs, %d special primes, dnum = %d, "
           "log2 QP = %.0f, median of %d runs\n",
           preset, bt_ckks_logn(p), L + 1, bt_ckks_num_special(p), bt_ckks_dnum(p),
           bt_ckks_log_qp(p), runs);
  double t0 = bt_seconds();
  const int steps[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  TRY(bt_keygen_secret(p, &g, &sk));
  TRY(bt_keygen_public(sk, &g, &pk));
  TRY(bt_eval_keys_new(p, &ek));
  TRY(bt_keygen_eval(sk, &g, 1, steps, 8, 0, ek));
  double keygen_s = bt_seconds() - t0;
  if (!json) printf("key generation (secret, public, relin, 8 rotations): %.2f s\n", keygen_s);
  TRY(bt_evaluator_new(p, ek, &ev));
  TRY(bt_plaintext_new(p, &pt));
  TRY(bt_ciphertext_new(p, &a));
  TRY(bt_ciphertext_new(p, &b));
  TRY(bt_ciphertext_new(p, &c));
  TRY(bt_ciphertext_new(p, &d));
  for (int i = 0; i < 8; i++) TRY(bt_ciphertext_new(p, &outs[i]));
  v = malloc(slots * sizeof *v);
  limb = bt_alloc(n * sizeof *limb);
  if (!v || !limb || !samples) TRY(bt_fail(BT_E_NOMEM, "out of memory"));
  for (size_t i = 0; i < slots; i++) v[i] = sin((double)i) + I * cos(0.5 * (double)i);
  bt_sample_uniform(&g, bt_ckks_modulus(p, 0), 1, n, limb);
  TRY(bt_ckks_encode(p, v, slots, bt_ckks_logn(p) - 1, L, bt_ckks_default_scale(p), pt));
  TRY(bt_encrypt_pk(pk, pt, &g, a));
  TRY(bt_encrypt_pk(pk, pt, &g, b));

  for (int ti = 0; ti < nthreads; ti++) {
    double *res = res_all[ti];
    bt_ckks_set_threads(p, thread_list[ti]);
    TIME(OP_NTT, bt_ntt_forward(bt_ckks_ntt_table(p, 0), limb));
    TIME(OP_ENCODE, TRY(bt_ckks_encode(p, v, slots, bt_ckks_logn(p) - 1, L, bt_ckks_default_scale(p), pt)));
    TIME(OP_ENCRYPT, TRY(bt_encrypt_pk(pk, pt, &g, a)));
    TIME(OP_ADD, TRY(bt_eval_add(ev, a, b, c)));
    TIME(OP_MUL, TRY(bt_eval_mul_relin(ev, a, b, c)));
    /* every operation writes a scratch output so its inputs stay as made */
    TIME(OP_RESCALE, TRY(bt_eval_rescale(ev, c, d)));
    TIME(OP_ROT, TRY(bt_eval_rotate(ev, a, 1, c)));
    TIME(OP_HOIST, TRY(bt_eval_rotate_hoisted(ev, a, steps, 8, outs)));
    TIME(OP_DEC, TRY(bt_decrypt(sk, a, pt)));
    TIME(OP_DECODE, TRY(bt_ckks_decode(pt, v)));
  }

  const size_t qp = (size_t)(L + 1 + bt_ckks_num_special(p)) * n * 8;
  const size_t key_bytes[4] = {qp, 2 * (size_t)(L + 1) * n * 8, 2 * (size_t)bt_ckks_dnum(p) * qp,
                               2 * (size_t)bt_ckks_dnum(p) * qp};
  const char *key_names[4] = {"secret", "public", "relin", "rotation"};
  if (json) {
    root = json_object_new_object();
    json_object_object_add(root, "preset", json_object_new_string(preset));
    json_object_object_add(root, "logn", json_object_new_int(bt_ckks_logn(p)));
    json_object_object_add(root, "limbs", json_object_new_int(L + 1));
    json_object_object_add(root, "dnum", json_object_new_int(bt_ckks_dnum(p)));
    json_object_object_add(root, "runs", json_object_new_int(runs));
    json_object_object_add(root, "keygen_s", json_object_new_double(keygen_s));
    json_object *th = json_object_new_object();
    for (int ti = 0; ti < nthreads; ti++) {
      json_object *o = json_object_new_object();
      for (int k = 0; k < NOPS; k++) json_object_object_add(o, op_names[k], json_object_new_double(res_all[ti][k]));
      char key[16];
      snprintf(key, sizeof key, "%d", thread_list[ti]);
      json_object_object_add(th, key, o);
    }
    json_object_object_add(root, "threads", th);
    json_object *kb = json_object_new_object();
    for (int k = 0; k < 4; k++) json_object_object_add(kb, key_names[k], json_object_new_int64((int64_t)key_bytes[k]));
    json_object_object_add(root, "key_bytes", kb);
    printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
  } else {
    printf("\n%-18s", "operation");
    for (int ti = 0; ti < nthreads; ti++) printf("  %9d thr", thread_list[ti]);
    printf("\n");
    for (int k = 0; k < NOPS; k++) {
      printf("%-18s", op_names[k]);
      for (int ti = 0; ti < nthreads; ti++) printf("  %10.2f ms", 1e3 * res_all[ti][k]);
      printf("\n");
    }
    printf("\nkey sizes in memory:\n");
    for (int k = 0; k < 4; k++) printf("  %-10s %12zu bytes (%.1f MiB)\n", key_names[k], key_bytes[k], key_bytes[k] / 1048576.0);
  }
  rc = 0;
out:
  json_object_put(root);
  bt_prng_wipe(&g);
  free(samples);
  free(v);
  bt_free(limb);
  for (int i = 0; i < 8; i++) bt_ciphertext_free(outs[i]);
  bt_ciphertext_free(a);
  bt_ciphertext_free(b);
  bt_ciphertext_free(c);
  bt_ciphertext_free(d);
  bt_plaintext_free(pt);
  bt_evaluator_free(ev);
  bt_eval_keys_free(ek);
  bt_public_key_free(pk);
  bt_secret_key_free(sk);
  bt_ckks_params_free(p);
  return rc;
}

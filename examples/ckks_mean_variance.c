/* A worked CKKS computation on encrypted data, on the public API only
 * (build/example-ckks, `make example`).
 *
 * The client encrypts a vector of measurements; the server, holding only
 * evaluation keys, computes their mean and variance (sum by rotations,
 * squaring, constant multiplication, subtraction at mismatched levels); the
 * client decrypts and compares with the same computation in double precision. */
#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blindtuner/ckks.h"

static void help(void) {
  printf("usage: example-ckks [--preset NAME] [--threads N] [--allow-insecure]\n"
         "\n"
         "Encrypts a vector with the CKKS engine, computes its mean and variance on the\n"
         "ciphertext with evaluation keys only, decrypts, and prints the precision of\n"
         "every step in bits against the same computation in double precision.\n"
         "\n"
         "  --preset NAME      parameter preset (default bench-n16: N = 2^16, 128-bit secure)\n"
         "  --threads N        threads (default BT_THREADS or all cores)\n"
         "  --allow-insecure   permit INSECURE test presets\n");
}

#define TRY(expr)                                                                 \
  do {                                                                            \
    bt_status st_ = (expr);                                                       \
    if (st_ != BT_OK) {                                                           \
      fprintf(stderr, "example-ckks: %s (%s)\n", bt_last_error(), bt_status_name(st_)); \
      goto out;                                                                   \
    }                                                                             \
  } while (0)

static double report(const char *what, const bt_plaintext *pt, const double complex *want) {
  size_t n = (size_t)1 << pt->logslots;
  double complex *got = malloc(n * sizeof *got);
  if (!got || bt_ckks_decode(pt, got)) {
    free(got);
    return -1;
  }
  bt_precision pr = bt_precision_measure(want, got, n);
  printf("  %-34s %12.8f (exact %12.8f)  precision %5.1f bits mean, %5.1f min\n", what,
         creal(got[0]), creal(want[0]), pr.mean_bits, pr.min_bits);
  free(got);
  return pr.min_bits;
}

/* "--threads N": N in [1, 1024], or -1 after a message. */
static int parse_threads(const char *v) {
  char *end;
  const long n = v ? strtol(v, &end, 10) : 0;
  if (!v || *end || n < 1 || n > 1024) {
    fprintf(stderr, "example-ckks: --threads expects an integer in [1, 1024]\n");
    return -1;
  }
  return (int)n;
}

int main(int argc, char **argv) {
  if (bt_init() != BT_OK) return 1;
  const char *preset = "bench-n16";
  int threads = 0;
  unsigned flags = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      help();
      return 0;
    } else if (!strcmp(argv[i], "--preset") && i + 1 < argc) {
      preset = argv[++i];
    } else if (!strcmp(argv[i], "--threads")) {
      if ((threads = parse_threads(i + 1 < argc ? argv[++i] : NULL)) < 0)
        return 2;
    } else if (!strcmp(argv[i], "--allow-insecure")) {
      flags |= BT_ALLOW_INSECURE;
    } else {
      fprintf(stderr, "example-ckks: unknown option '%s'\n", argv[i]);
      return 2;
    }
  }
  int rc = 1;
  bt_ckks_params *p = NULL;
  bt_secret_key *sk = NULL;
  bt_public_key *pk = NULL;
  bt_eval_keys *ek = NULL;
  bt_evaluator *ev = NULL;
  bt_plaintext *pt = NULL;
  bt_ciphertext *x = NULL, *sum = NULL, *sq = NULL, *mean = NULL, *var = NULL;
  double complex *v = NULL, *want = NULL;
  int *steps = NULL;
  bt_prng g;
  bt_prng_init_random(&g);
  bt_ckks_literal lit;
  TRY(bt_ckks_preset(preset, &lit));
  TRY(bt_ckks_params_new(&lit, flags, &p));
  bt_ckks_set_threads(p, threads);
  const int logslots = bt_ckks_logn(p) - 1;
  const size_t n = (size_t)1 << logslots;
  printf("CKKS example, preset %s: N = 2^%d, %zu slots, %d levels, log2 QP = %.0f, dnum = %d, %s\n",
         preset, bt_ckks_logn(p), n, bt_ckks_max_level(p), bt_ckks_log_qp(p), bt_ckks_dnum(p),
         lit.insecure ? "INSECURE (tests only)" : "128-bit secure (HE Standard)");
  printf("threads: %d\n", bt_ckks_threads(p));

  /* client: keys */
  double t0 = bt_seconds();
  steps = malloc(64 * sizeof *steps);
  size_t nsteps = bt_inner_sum_steps(1, (int)n, 0, steps);
  TRY(bt_keygen_secret(p, &g, &sk));
  TRY(bt_keygen_public(sk, &g, &pk));
  TRY(bt_eval_keys_new(p, &ek));
  TRY(bt_keygen_eval(sk, &g, 1, steps, nsteps, 0, ek));
  printf("client: key generation (secret, public, relinearisation, %zu rotation keys) %.2f s\n",
         ek->ngalois, bt_seconds() - t0);

  /* client: data, encrypted with the public key */
  v = malloc(n * sizeof *v);
  want = malloc(n * sizeof *want);
  double s1 = 0, s2 = 0;
  for (size_t i = 0; i < n; i++) {
    double xi = 0.5 * sin(0.001 * (double)i) + 0.1 * cos(0.37 * (double)i);
    v[i] = xi;
    s1 += xi;
    s2 += xi * xi;
  }
  const double m = s1 / (double)n, var_exact = s2 / (double)n - m * m;
  t0 = bt_seconds();
  TRY(bt_plaintext_new(p, &pt));
  TRY(bt_ciphertext_new(p, &x));
  TRY(bt_ckks_encode(p, v, n, logslots, bt_ckks_max_level(p), bt_ckks_default_scale(p), pt));
  TRY(bt_encrypt_pk(pk, pt, &g, x));
  printf("client: encode + encrypt %zu values %.3f s\n", n, bt_seconds() - t0);

  /* server: evaluation keys only */
  t0 = bt_seconds();
  TRY(bt_evaluator_new(p, ek, &ev));
  TRY(bt_ciphertext_new(p, &sum));
  TRY(bt_ciphertext_new(p, &sq));
  TRY(bt_ciphertext_new(p, &mean));
  TRY(bt_ciphertext_new(p, &var));
  TRY(bt_eval_inner_sum(ev, x, 1, (int)n, sum));                     /* sum x */
  TRY(bt_eval_mul_const(ev, sum, 1.0 / (double)n, 0, mean));         /* mean */
  TRY(bt_eval_rescale(ev, mean, mean));
  TRY(bt_eval_mul_relin(ev, x, x, sq));                              /* x^2 */
  TRY(bt_eval_rescale(ev, sq, sq));
  TRY(bt_eval_inner_sum(ev, sq, 1, (int)n, sq));                     /* sum x^2 */
  TRY(bt_eval_mul_const(ev, sq, 1.0 / (double)n, 0, var));          /* E[x^2] */
  TRY(bt_eval_rescale(ev, var, var));
  TRY(bt_eval_mul_relin(ev, mean, mean, sum));                       /* mean^2 */
  TRY(bt_eval_rescale(ev, sum, sum));
  TRY(bt_eval_sub(ev, var, sum, var));                               /* variance */
  printf("server: mean and variance on the ciphertext %.2f s (%zu rotations each sum)\n",
         bt_seconds() - t0, nsteps);

  /* client: decrypt and compare */
  printf("client: decrypted results (every slot holds the statistic)\n");
  for (size_t i = 0; i < n; i++) want[i] = m;
  TRY(bt_decrypt(sk, mean, pt));
  double b1 = report("mean", pt, want);
  for (size_t i = 0; i < n; i++) want[i] = var_exact;
  TRY(bt_decrypt(sk, var, pt));
  double b2 = report("variance", pt, want);
  printf("levels left: %d of %d\n", var->level, bt_ckks_max_level(p));
  if (b1 < 15 || b2 < 15) {
    fprintf(stderr, "example-ckks: precision below 15 bits\n");
    goto out;
  }
  rc = 0;
out:
  bt_prng_wipe(&g);
  free(v);
  free(want);
  free(steps);
  bt_ciphertext_free(x);
  bt_ciphertext_free(sum);
  bt_ciphertext_free(sq);
  bt_ciphertext_free(mean);
  bt_ciphertext_free(var);
  bt_plaintext_free(pt);
  bt_evaluator_free(ev);
  bt_eval_keys_free(ek);
  bt_public_key_free(pk);
  bt_secret_key_free(sk);
  bt_ckks_params_free(p);
  return rc;
}

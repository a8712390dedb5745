/* `blindtuner bench hemat`: the two encrypted products of one training step
 * (DiagABT and DiagATB, with the shared X rolls) on the real code path, their
 * operation counts beside HETAL's, and their precision. */
#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <json-c/json.h>

#include "blindtuner/hemat.h"
#include "bench.h"

static void help(void) {
  printf("usage: blindtuner bench hemat [--shape B,F,C] [--preset NAME] [--threads N] [--runs R]\n"
         "                              [--json]\n"
         "\n"
         "Encrypts a random B x F matrix X (level 2), a C x F weight matrix W (compact, level 3)\n"
         "and a B x C matrix D (level 3), then times the X rolls, Z = X W^T (DiagABT) and\n"
         "G = D^T X (DiagATB) R times (medians), prints their operation counts beside HETAL's\n"
         "and the precision of Z and G against double-precision products.\n"
         "\n"
         "  --shape B,F,C   batch, features (bias included), classes (default 1024,769,8)\n"
         "  --preset NAME   parameters (default train-n16)\n"
         "  --runs R        timed runs (default 3)\n"
         "  --threads N     threads (default BT_THREADS or all cores)\n");
}

#define TRY(expr)                                                                  \
  do {                                                                             \
    bt_status st_ = (expr);                                                        \
    if (st_ != BT_OK) {                                                            \
      fprintf(stderr, "blindtuner bench hemat: %s (%s)\n", bt_last_error(), bt_status_name(st_)); \
      goto out;                                                                    \
    }                                                                              \
  } while (0)

static double uni(bt_prng *g) { return 2.0 * ((double)(bt_prng_u64(g) >> 11) / 9007199254740992.0) - 1; }

static bt_status enc(const bt_ckks_params *p, const bt_secret_key *sk, bt_prng *g, const bt_hemat_layout *L,
                     const double *v, int level, bt_plaintext *pt, bt_ciphertext **out) {
  bt_status st = bt_ciphertext_new(p, out);
  if (!st) st = bt_ckks_encode_real(p, v, L->slots, L->logslots, level, bt_ckks_default_scale(p), pt);
  if (!st) st = bt_encrypt_sk(sk, pt, g, *out);
  return st;
}

static double bits(const double *want, const double *got, size_t n) {
  double e = 0;
  for (size_t i = 0; i < n; i++) e = fmax(e, fabs(want[i] - got[i]));
  return e > 0 ? -log2(e) : 64;
}

int bt_bench_hemat(int argc, char **argv) {
  bt_bench_opts opt = {.who = "bench hemat", .runs_max = 100, .runs = 3, .preset = "train-n16",
                     .shape = {1024, 769, 8}};
  const int parsed = bt_bench_parse(&opt, argc, argv, help);
  if (parsed) return parsed == 1 ? 0 : 2;
  const int B = opt.shape[0], F = opt.shape[1], C = opt.shape[2];
  const int threads = opt.threads, runs = opt.runs, json = opt.json;
  const char *preset = opt.preset;
  if (C < 2) {
    fprintf(stderr, "blindtuner bench hemat: --shape needs C >= 2\n");
    return 2;
  }
  int rc = 1;
  bt_ckks_params *p = NULL;
  bt_secret_key *sk = NULL;
  bt_eval_keys *ek = NULL;
  bt_evaluator *ev = NULL;
  bt_hemat *h = NULL;
  bt_plaintext *pt = NULL;
  bt_ciphertext **xc = NULL, **rolled = NULL, *wc = NULL, *dc = NULL, *z = NULL, *gc = NULL;
  double *x = NULL, *w = NULL, *d = NULL, *slots = NULL, *want = NULL, *got = NULL;
  double *t_roll = calloc((size_t)runs, sizeof(double)), *t_abt = calloc((size_t)runs, sizeof(double)),
         *t_atb = calloc((size_t)runs, sizeof(double));
  bt_prng g;
  bt_prng_init_random(&g);
  bt_ckks_literal lit;
  bt_hemat_layout L = {0};
  TRY(bt_ckks_preset(preset, &lit));
  TRY(bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &p));
  bt_ckks_set_threads(p, threads);
  TRY(bt_hemat_layout_init(bt_ckks_logn(p) - 1, B, F, C, &L));
  TRY(bt_hemat_new(p, &L, &h));
  int steps[256];
  const size_t ns = bt_hemat_steps(h, steps, 256);
  if (ns == 0 || ns > 256) TRY(bt_fail(BT_E_NOMEM, "the products need %zu rotation steps", ns));
  double t0 = bt_seconds();
  TRY(bt_keygen_secret(p, &g, &sk));
  TRY(bt_eval_keys_new(p, &ek));
  TRY(bt_keygen_eval(sk, &g, 1, steps, ns, 0, ek));
  const double keygen_s = bt_seconds() - t0;
  TRY(bt_evaluator_new(p, ek, &ev));
  TRY(bt_plaintext_new(p, &pt));
  if (!json)
    printf("bench hemat: preset %s%s, N = 2^%d, %d threads; shape (%d, %d, %d): C' = %d, blocks %d x %d, "
           "%d X blocks; %zu rotation keys in %.1f s\n",
           preset, lit.insecure ? " (INSECURE)" : "", bt_ckks_logn(p), bt_ckks_threads(p), B, F, C, L.cpad,
           L.s0, L.s1, L.nb, ns, keygen_s);
  x = malloc((size_t)B * F * sizeof *x);
  w = malloc((size_t)C * F * sizeof *w);
  d = malloc((size_t)B * C * sizeof *d);
  slots = malloc(L.slots * sizeof *slots);
  want = calloc((size_t)B * F + (size_t)B * C, sizeof *want);
  got = calloc((size_t)B * F + (size_t)B * C, sizeof *got);
  xc = calloc((size_t)L.nb, sizeof *xc);
  rolled = calloc((size_t)L.nb * L.cpad, sizeof *rolled);
  if (!x || !w || !d || !slots || !want || !got || !xc || !rolled || !t_roll || !t_abt || !t_atb)
    TRY(bt_fail(BT_E_NOMEM, "out of memory"));
  for (size_t i = 0; i < (size_t)B * F; i++) x[i] = uni(&g);
  for (size_t i = 0; i < (size_t)C * F; i++) w[i] = uni(&g) / 8;
  for (size_t i = 0; i < (size_t)B * C; i++) d[i] = uni(&g);
  for (int j = 0; j < L.nb; j++) {
    bt_hemat_pack_x(&L, x, j, slots);
    TRY(enc(p, sk, &g, &L, slots, 2, pt, &xc[j]));
  }
  for (int i = 0; i < L.nb * L.cpad; i++) TRY(bt_ciphertext_new(p, &rolled[i]));
  bt_hemat_pack_w(&L, w, slots);
  TRY(enc(p, sk, &g, &L, slots, 3, pt, &wc));
  bt_hemat_pack_diag(&L, d, slots);
  TRY(enc(p, sk, &g, &L, slots, 3, pt, &dc));
  TRY(bt_ciphertext_new(p, &z));
  TRY(bt_ciphertext_new(p, &gc));
  bt_hemat_counts c_roll = {0}, c_abt = {0}, c_atb = {0};
  const double complex one = 1;
  for (int r = 0; r < runs; r++) {
    bt_hemat_reset_counts(h);
    t0 = bt_seconds();
    TRY(bt_hemat_roll_x(h, ev, xc, rolled));
    t_roll[r] = bt_seconds() - t0;
    c_roll = bt_hemat_get_counts(h);
    bt_hemat_reset_counts(h);
    t0 = bt_seconds();
    TRY(bt_hemat_abt(h, ev, rolled, wc, 1.0, z));
    t_abt[r] = bt_seconds() - t0;
    c_abt = bt_hemat_get_counts(h);
    bt_hemat_reset_counts(h);
    t0 = bt_seconds();
    TRY(bt_hemat_atb(h, ev, rolled, dc, &one, 1, &gc));
    t_atb[r] = bt_seconds() - t0;
    c_atb = bt_hemat_get_counts(h);
    if (!json) printf("  run %d: rolls %.2f s, ABT %.2f s, ATB %.2f s\n", r + 1, t_roll[r], t_abt[r], t_atb[r]);
  }
  /* precision against double-precision products */
  double complex *cv = malloc(L.slots * sizeof *cv);
  if (!cv) TRY(bt_fail(BT_E_NOMEM, "out of memory"));
  bt_status dst = bt_decrypt(sk, z, pt);
  if (!dst) dst = bt_ckks_decode(pt, cv);
  for (size_t i = 0; i < L.slots; i++) slots[i] = creal(cv[i]);
  for (int r = 0; r < B; r++)
    for (int c = 0; c < C; c++) {
      double s = 0;
      for (int k = 0; k < F; k++) s += x[(size_t)r * F + k] * w[(size_t)c * F + k];
      want[(size_t)r * C + c] = s;
    }
  bt_hemat_unpack_diag(&L, slots, got);
  const double z_bits = bits(want, got, (size_t)B * C);
  if (!dst) dst = bt_decrypt(sk, gc, pt);
  if (!dst) dst = bt_ckks_decode(pt, cv);
  for (size_t i = 0; i < L.slots; i++) slots[i] = creal(cv[i]);
  free(cv);
  TRY(dst);
  for (int c = 0; c < C; c++)
    for (int k = 0; k < F; k++) {
      double s = 0;
      for (int r = 0; r < B; r++) s += d[(size_t)r * C + c] * x[(size_t)r * F + k];
      want[(size_t)c * F + k] = s;
    }
  bt_hemat_unpack_w(&L, slots, got);
  const double g_bits = bits(want, got, (size_t)C * F);
  bt_hetal_counts hc;
  bt_hetal_reference_counts(L.logslots, B, F, C, &hc);
  const double m_roll = bt_bench_median(t_roll, runs), m_abt = bt_bench_median(t_abt, runs),
               m_atb = bt_bench_median(t_atb, runs);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const double peak_gb = ru.ru_maxrss / 1048576.0;
  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "preset", json_object_new_string(preset));
    json_object_object_add(o, "insecure", json_object_new_boolean(lit.insecure));
    json_object_object_add(o, "threads", json_object_new_int(bt_ckks_threads(p)));
    json_object *sh = json_object_new_array();
    json_object_array_add(sh, json_object_new_int(B));
    json_object_array_add(sh, json_object_new_int(F));
    json_object_array_add(sh, json_object_new_int(C));
    json_object_object_add(o, "shape", sh);
    json_object_object_add(o, "seconds", json_object_new_double(m_roll + m_abt + m_atb));
    json_object_object_add(o, "roll_s", json_object_new_double(m_roll));
    json_object_object_add(o, "abt_s", json_object_new_double(m_abt));
    json_object_object_add(o, "atb_s", json_object_new_double(m_atb));
    json_object_object_add(o, "z_bits", json_object_new_double(z_bits));
    json_object_object_add(o, "g_bits", json_object_new_double(g_bits));
    json_object_object_add(o, "rot", json_object_new_int64(c_roll.rot + c_abt.rot + c_atb.rot));
    json_object_object_add(o, "relin", json_object_new_int64(c_abt.relin + c_atb.relin));
    json_object_object_add(o, "tensor", json_object_new_int64(c_abt.tensor + c_atb.tensor));
    json_object_object_add(o, "cmult", json_object_new_int64(c_abt.cmult + c_atb.cmult));
    json_object_object_add(o, "hetal_rot", json_object_new_int64(hc.abt_rot + hc.atb_rot));
    json_object_object_add(o, "hetal_mult", json_object_new_int64(hc.abt_mult + hc.atb_mult));
    json_object_object_add(o, "hetal_cmult", json_object_new_int64(hc.abt_cmult + hc.atb_cmult));
    json_object_object_add(o, "peak_memory_gib", json_object_new_double(peak_gb));
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else {
    printf("medians over %d runs: rolls %.2f s, ABT %.2f s, ATB %.2f s, total %.2f s; peak %.2f GiB\n"
           "precision: Z %.1f bits, G %.1f bits (max abs error)\n"
           "counts  rolls: rot %ld (hoisted)\n"
           "        ABT:   rot %ld, tensor %ld, relin %ld, cmult %ld   (HETAL: rot %ld, mult %ld, cmult %ld)\n"
           "        ATB:   rot %ld, tensor %ld, relin %ld, cmult %ld   (HETAL: rot %ld, mult %ld, cmult %ld)\n",
           runs, m_roll, m_abt, m_atb, m_roll + m_abt + m_atb, peak_gb, z_bits, g_bits, c_roll.rot, c_abt.rot,
           c_abt.tensor, c_abt.relin, c_abt.cmult, hc.abt_rot, hc.abt_mult, hc.abt_cmult, c_atb.rot,
           c_atb.tensor, c_atb.relin, c_atb.cmult, hc.atb_rot, hc.atb_mult, hc.atb_cmult);
  }
  rc = 0;
out:
  bt_prng_wipe(&g);
  free(t_roll);
  free(t_abt);
  free(t_atb);
  free(x);
  free(w);
  free(d);
  free(slots);
  free(want);
  free(got);
  if (xc)
    for (int j = 0; j < L.nb; j++) bt_ciphertext_free(xc[j]); /* calloc'd: unset entries are NULL */
  free(xc);
  if (rolled)
    for (int i = 0; i < L.nb * L.cpad; i++) bt_ciphertext_free(rolled[i]);
  free(rolled);
  bt_ciphertext_free(wc);
  bt_ciphertext_free(dc);
  bt_ciphertext_free(z);
  bt_ciphertext_free(gc);
  bt_plaintext_free(pt);
  bt_hemat_free(h);
  bt_evaluator_free(ev);
  bt_eval_keys_free(ek);
  bt_secret_key_free(sk);
  bt_ckks_params_free(p);
  return rc;
}

/* blindtuner: the command-line front end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blindtuner/status.h"
#include "blindtuner/util.h"
#include "cli/cli.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: blindtuner <command> [options]\n"
          "\n"
          "Privacy-preserving fine-tuning with CKKS homomorphic encryption.\n"
          "\n"
          "commands:\n"
          "  demo               the whole pipeline on Fashion-MNIST 5-9: features, encryption,\n"
          "                     encrypted training with bootstrapping, decryption, accuracy\n"
          "  example            worked CKKS example: encrypt, compute, decrypt, print precision\n"
          "\n"
          "client (holds the secret key and the plaintext data):\n"
          "  extract            transformer features of a dataset, as .npy\n"
          "  keygen             a key set: secret bundle (stays here) and evaluation bundle (server)\n"
          "  encrypt            features and labels -> an encrypted training, validation or test set\n"
          "  decide             decrypt the server's validation losses, answer continue or stop\n"
          "  decrypt            an encrypted model -> a plaintext head; encrypted logits -> .npy\n"
          "  evaluate           accuracy and loss of a decrypted model on labelled features\n"
          "  predict            labels and probabilities of features with a decrypted model\n"
          "  report             a training run's losses, accuracy and time per epoch (JSON + HTML)\n"
          "server (evaluation keys and ciphertexts only):\n"
          "  train              encrypted training with bootstrapping, checkpoints, early stopping\n"
          "  infer              encrypted logits of an encrypted dataset under an encrypted model\n"
          "either:\n"
          "  inspect            what a file holds (kind, key set, layout), without secrets\n"
          "  bench ckks         time the CKKS engine at N = 2^16 (see 'blindtuner bench --help')\n"
          "  help               this text\n"
          "\n"
          "Run 'blindtuner <command> --help' for a command's options.\n"
          "Environment: BT_THREADS sets the default number of threads.\n");
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bt_cli_median(double *t, int n) {
  qsort(t, (size_t)n, sizeof *t, cmp_double);
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

int bt_cli_parse_int(const char *opt, const char *val, int lo, int hi) {
  if (!val) {
    fprintf(stderr, "blindtuner: %s needs a value\n", opt);
    return -1;
  }
  char *end;
  long v = strtol(val, &end, 10);
  if (*val == '\0' || *end != '\0' || v < lo || v > hi) {
    fprintf(stderr, "blindtuner: %s expects an integer in [%d, %d], got '%s'\n", opt, lo, hi, val);
    return -1;
  }
  return (int)v;
}

int bt_cli_bench_option(bt_cli_bench_opts *o, int argc, char **argv, int *i) {
  const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
  if (!strcmp(a, "--json")) {
    o->json = 1;
    return 1;
  }
  if (!strcmp(a, "--allow-insecure")) {
    o->allow_insecure = 1;
    return 1;
  }
  if (strcmp(a, "--threads") && strcmp(a, "--runs") && strcmp(a, "--preset") &&
      (strcmp(a, "--shape") || !o->shape[0]))
    return 0;
  ++*i;
  if (!strcmp(a, "--threads")) return (o->threads = bt_cli_parse_int(a, v, 1, 1024)) < 0 ? -1 : 1;
  if (!strcmp(a, "--runs")) return (o->runs = bt_cli_parse_int(a, v, 1, o->runs_max)) < 0 ? -1 : 1;
  if (!v) {
    fprintf(stderr, "blindtuner %s: %s needs a value\n", o->who, a);
    return -1;
  }
  if (!strcmp(a, "--preset")) {
    o->preset = v;
    return 1;
  }
  char tail;
  int b, f, c;
  if (sscanf(v, "%d,%d,%d%c", &b, &f, &c, &tail) != 3 || b < 1 || f < 1 || c < 1) {
    fprintf(stderr, "blindtuner %s: --shape wants B,F,C (three positive integers), got '%s'\n", o->who, v);
    return -1;
  }
  o->shape[0] = b, o->shape[1] = f, o->shape[2] = c;
  return 1;
}

int bt_cli_bench_parse(bt_cli_bench_opts *o, int argc, char **argv, void (*help)(void)) {
  for (int i = 1; i < argc; i++) {
    const int r = bt_cli_bench_option(o, argc, argv, &i);
    if (r < 0) return 2;
    if (r) continue;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      help();
      return 1;
    }
    fprintf(stderr, "blindtuner %s: unknown option '%s' (see --help)\n", o->who, argv[i]);
    return 2;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (bt_init() != BT_OK) {
    fprintf(stderr, "blindtuner: %s\n", bt_last_error());
    return 1;
  }
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version")) {
    printf("blindtuner 0.1.0\n");
    return 0;
  }
  if (!strcmp(cmd, "example")) return bt_cli_example(argc - 1, argv + 1);
  if (!strcmp(cmd, "bench")) return bt_cli_bench(argc - 1, argv + 1);
  if (!strcmp(cmd, "extract")) return bt_cli_extract(argc - 1, argv + 1);
  if (!strcmp(cmd, "demo")) return bt_cli_demo(argc - 1, argv + 1);
  static const struct {
    const char *name;
    int (*run)(int, char **);
  } cmds[] = {{"keygen", bt_cli_keygen},   {"encrypt", bt_cli_encrypt},   {"train", bt_cli_train},
              {"decide", bt_cli_decide},   {"decrypt", bt_cli_decrypt},   {"evaluate", bt_cli_evaluate},
              {"predict", bt_cli_predict}, {"infer", bt_cli_infer},       {"inspect", bt_cli_inspect},
              {"report", bt_cli_report}};
  for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
    if (!strcmp(cmd, cmds[i].name)) return cmds[i].run(argc - 1, argv + 1);
  fprintf(stderr, "blindtuner: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}

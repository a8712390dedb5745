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
          "  extract            client: transformer features of a dataset, as .npy (see --help)\n"
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
  fprintf(stderr, "blindtuner: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}

/* The helpers the benchmarks share: medians, integers and common options. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bt_bench_median(double *t, int n) {
  qsort(t, (size_t)n, sizeof *t, cmp_double);
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

int bt_bench_parse_int(const char *opt, const char *val, int lo, int hi) {
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

int bt_bench_option(bt_bench_opts *o, int argc, char **argv, int *i) {
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
  if (!strcmp(a, "--threads")) return (o->threads = bt_bench_parse_int(a, v, 1, 1024)) < 0 ? -1 : 1;
  if (!strcmp(a, "--runs")) return (o->runs = bt_bench_parse_int(a, v, 1, o->runs_max)) < 0 ? -1 : 1;
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

int bt_bench_parse(bt_bench_opts *o, int argc, char **argv, void (*help)(void)) {
  for (int i = 1; i < argc; i++) {
    const int r = bt_bench_option(o, argc, argv, &i);
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

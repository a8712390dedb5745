/* The benchmarks behind `blindtuner bench`, and the helpers they share.
 * Bench depends on the libraries only; the command line calls bt_bench_main. */
#ifndef BT_BENCH_H
#define BT_BENCH_H

/* `blindtuner bench <what> [options]`: argv[0] is "bench", argv[1] the
 * benchmark.  Returns the process exit status. */
int bt_bench_main(int argc, char **argv);

/* The benchmarks; argv[0] is the benchmark's name. */
int bt_bench_ckks(int argc, char **argv);
int bt_bench_vit(int argc, char **argv);
int bt_bench_bootstrap(int argc, char **argv);
int bt_bench_hemat(int argc, char **argv);
int bt_bench_train(int argc, char **argv);
int bt_bench_serve(int argc, char **argv);

/* Median of n samples (sorts them in place). */
double bt_bench_median(double *samples, int n);

/* Parses an integer option value in [lo, hi]; prints an error and returns -1
 * on failure (so callers want lo >= 0). */
int bt_bench_parse_int(const char *opt, const char *val, int lo, int hi);

/* The options the benchmarks share.  bt_bench_option looks at argv[*i]:
 * 1 when it was --threads N, --runs R, --json, --preset NAME,
 * --allow-insecure or --shape B,F,C (the value consumed, *i advanced),
 * 0 when it is none of them, -1 after printing why a value is bad.  Fields
 * keep their defaults when the option is absent. */
typedef struct bt_bench_opts {
  const char *who; /* "bench hemat", for messages */
  int runs_max;    /* --runs accepts [1, runs_max] */
  int threads, runs, json, allow_insecure;
  const char *preset;
  int shape[3];    /* B, F, C (each >= 1; callers check more); --shape is an
                    * option only where a default shape is set */
} bt_bench_opts;
int bt_bench_option(bt_bench_opts *o, int argc, char **argv, int *i);
/* A whole command line of shared options (and --help, which calls `help`):
 * 0 to go on, 1 after help (exit 0), 2 after an error message (exit 2). */
int bt_bench_parse(bt_bench_opts *o, int argc, char **argv, void (*help)(void));

#endif

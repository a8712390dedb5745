/* Shared declarations of the blindtuner command's subcommands. */
#ifndef BT_CLI_H
#define BT_CLI_H

int bt_cli_example(int argc, char **argv);
int bt_cli_bench(int argc, char **argv);
int bt_cli_extract(int argc, char **argv);
int bt_bench_vit(int argc, char **argv);
int bt_bench_bootstrap(int argc, char **argv);
int bt_bench_hemat(int argc, char **argv);
int bt_bench_train(int argc, char **argv);

/* Median of n samples (sorts them in place). */
double bt_cli_median(double *samples, int n);

/* Parses a positive integer option value; prints an error and returns -1 on failure. */
int bt_cli_parse_int(const char *opt, const char *val, int lo, int hi);

#endif

/* Shared declarations of the blindtuner command's subcommands. */
#ifndef BT_CLI_H
#define BT_CLI_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "blindtuner/io.h"
#include "blindtuner/train.h"
#include "blindtuner/vision.h"

int bt_cli_example(int argc, char **argv);
int bt_cli_bench(int argc, char **argv);
int bt_cli_extract(int argc, char **argv);
int bt_cli_demo(int argc, char **argv);
int bt_cli_keygen(int argc, char **argv);
int bt_cli_encrypt(int argc, char **argv);
int bt_cli_train(int argc, char **argv);
int bt_cli_decide(int argc, char **argv);
int bt_cli_decrypt(int argc, char **argv);
int bt_cli_evaluate(int argc, char **argv);
int bt_cli_predict(int argc, char **argv);
int bt_cli_infer(int argc, char **argv);
int bt_cli_inspect(int argc, char **argv);
int bt_cli_report(int argc, char **argv);
int bt_bench_vit(int argc, char **argv);
int bt_bench_bootstrap(int argc, char **argv);
int bt_bench_hemat(int argc, char **argv);
int bt_bench_train(int argc, char **argv);

/* Median of n samples (sorts them in place). */
double bt_cli_median(double *samples, int n);

/* Parses a positive integer option value; prints an error and returns -1 on failure. */
int bt_cli_parse_int(const char *opt, const char *val, int lo, int hi);

/* The options the benchmarks share.  bt_cli_bench_option looks at argv[*i]:
 * 1 when it was --threads N, --runs R, --json, --preset NAME,
 * --allow-insecure or --shape B,F,C (the value consumed, *i advanced),
 * 0 when it is none of them, -1 after printing why a value is bad.  Fields
 * keep their defaults when the option is absent. */
typedef struct bt_cli_bench_opts {
  const char *who; /* "bench hemat", for messages */
  int runs_max;    /* --runs accepts [1, runs_max] */
  int threads, runs, json, allow_insecure;
  const char *preset;
  int shape[3];    /* B, F, C (each >= 1; callers check more); --shape is an
                    * option only where a default shape is set */
} bt_cli_bench_opts;
int bt_cli_bench_option(bt_cli_bench_opts *o, int argc, char **argv, int *i);
/* A whole command line of shared options (and --help, which calls `help`):
 * 0 to go on, 1 after help (exit 0), 2 after an error message (exit 2). */
int bt_cli_bench_parse(bt_cli_bench_opts *o, int argc, char **argv, void (*help)(void));

/* Transformer features of a dataset (extract and demo). */
typedef struct bt_cli_features_req {
  const char *data, *model, *classes; /* model NULL: $BT_MODEL, else the bundled one */
  bt_vit_pool pool;
  int limit;     /* > 0: the first `limit` images (after classes) */
  size_t sample; /* > 0: instead a random `sample` of them, shuffled with `seed` */
  uint64_t seed;
  int size, batch, threads, quiet; /* 0: defaults */
  float crop, mean[3], std[3];     /* crop <= 0: the model's */
  int have_mean, have_std;
} bt_cli_features_req;
/* Prints a one-line error prefixed "blindtuner WHO:" and returns 1 on
 * failure; on success the caller frees *feats (n x dim) and *labels. */
int bt_cli_features(const bt_cli_features_req *r, const char *who, float **feats, int64_t **labels, size_t *n,
                    size_t *dim, int *classes);

/* Encrypted training's two roles in one process (demo, bench train). */
typedef struct bt_cli_session {
  /* client */
  bt_secret_key *sk;
  bt_prng g;
  /* made by the client for the server: public material */
  bt_eval_keys *ek;
  bt_encaps_key *to_sparse;
  bt_switch_key *to_dense;
  /* server: built on the evaluation keys only */
  bt_bootstrapper *bs;
  bt_trainer *trainer;
  bt_evaluator *ev;
  double setup_s; /* bootstrapping transforms, keys */
} bt_cli_session;
bt_status bt_cli_session_new(const bt_ckks_params *p, const bt_hemat_layout *L, const bt_softmax_approx *sa,
                             double lr, double momentum, bt_cli_session *s) BT_MUST_CHECK;
void bt_cli_session_free(bt_cli_session *s);
/* The client's key set for training with `bs` and `t` (whose rotations the
 * evaluation keys cover): secret key, evaluation keys and, when encaps_hw is
 * not 0, the encapsulation keys of dense-secret bootstrapping. */
bt_status bt_cli_training_keys(const bt_ckks_params *p, const bt_bootstrapper *bs, const bt_trainer *t,
                                int encaps_hw, bt_prng *g, bt_secret_key **sk, bt_eval_keys **ek,
                                bt_encaps_key **to_sparse, bt_switch_key **to_dense) BT_MUST_CHECK;

/* JSON numbers: integral values as integers. */
typedef struct bt_cli_json_field {
  const char *key;
  double value;
} bt_cli_json_field;
json_object *bt_cli_json_number(double v);
void bt_cli_json_add_numbers(json_object *o, const bt_cli_json_field *f, size_t n);

/* ---- the file-based subcommands (roles.c) ---- */
typedef enum bt_cli_opt_type { BT_OPT_STR, BT_OPT_INT, BT_OPT_DBL, BT_OPT_FLAG } bt_cli_opt_type;
typedef struct bt_cli_opt {
  const char *name;
  bt_cli_opt_type type;
  void *ptr;      /* const char **, int *, double *, int * */
  double lo, hi;  /* INT and DBL */
} bt_cli_opt;
/* opts ends with a zero entry.  0 to go on, 1 after --help (exit 0), 2 after
 * an error message (exit 2). */
int bt_cli_parse(const char *who, int argc, char **argv, const bt_cli_opt *opts, void (*help)(void));
/* 1 (after a message) when a required option is missing. */
int bt_cli_need(const char *who, const char *opt, const char *val);

/* float32 n x dim features; int64/int32 labels in [0, classes).  Print a
 * one-line error and return 1 on failure. */
int bt_cli_load_features(const char *who, const char *path, float **x, size_t *n, size_t *dim);
int bt_cli_load_labels(const char *who, const char *path, size_t n, int classes, int **y);

/* The layout (and, if sa, the softmax approximation) of a key set. */
bt_status bt_cli_layout(const bt_ckks_params *p, const bt_io_tag *tag, bt_hemat_layout *L,
                        bt_softmax_approx *sa) BT_MUST_CHECK;

/* The server's objects, built on an evaluation bundle (which must outlive them). */
typedef struct bt_cli_server {
  bt_bootstrapper *bs;
  bt_trainer *trainer;
  bt_evaluator *ev;
  double setup_s;
} bt_cli_server;
bt_status bt_cli_server_new(const bt_ckks_params *p, const bt_hemat_layout *L, const bt_softmax_approx *sa,
                            const bt_eval_bundle *eb, double lr, double momentum, bt_cli_server *s) BT_MUST_CHECK;
void bt_cli_server_free(bt_cli_server *s);

/* "who: what, E s elapsed, ETA R s": one rewritten line on a terminal, plain lines otherwise. */
void bt_cli_progress(const char *who, int tty, double done, double total, double t0, const char *what);

/* Client: encrypts L->slots real values at `level`; decrypts into real and
 * imaginary parts (either may be NULL). */
bt_status bt_cli_encrypt_slots(const bt_ckks_params *p, const bt_hemat_layout *L, const bt_secret_key *sk,
                               bt_prng *g, const double *slots, int level, bt_ciphertext **out) BT_MUST_CHECK;
bt_status bt_cli_decrypt_slots(const bt_secret_key *sk, const bt_ciphertext *ct, const bt_hemat_layout *L,
                               double *re, double *im) BT_MUST_CHECK;

/* ---- reports (report.c) ---- */
typedef struct bt_cli_series {
  const char *name, *colour;
  const double *y; /* one value per epoch; NaN: none */
} bt_cli_series;
/* SVG documents (free them): curves over epochs 1..n with tick labels in
 * `fmt`; stacked bars per epoch. */
char *bt_cli_svg_lines(const char *title, int n, const bt_cli_series *s, int ns, const char *fmt);
char *bt_cli_svg_bars(const char *title, int n, const bt_cli_series *s, int ns);
/* The server's time split: phase[e * BT_CLI_PHASES + k] for the keys below. */
#define BT_CLI_PHASES 5
extern const char *const bt_cli_phase_keys[BT_CLI_PHASES];
char *bt_cli_svg_phases(int n, const double *phase);
/* Writes through a temporary file and a rename; 0 or -1. */
int bt_cli_write_text(const char *path, const char *text);

/* DIR/NAME-EEE.bt (epoch > 0) or DIR/NAME.bt. */
void bt_cli_path(char *out, size_t cap, const char *dir, const char *name, int epoch);
int bt_cli_exists(const char *path);

#endif

/* Shared declarations of the blindtuner command's subcommands. */
#ifndef BT_CLI_H
#define BT_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "blindtuner/pipeline.h"
#include "blindtuner/vision.h"
#include "blindtuner/vision_data.h"

/* A subcommand's failure: one line "blindtuner WHO: ..." on stderr, then
 * `goto out` (its cleanup).  TRY fails with bt_last_error() and the status
 * name when expr is not BT_OK. */
#define FAIL(who, ...)                       \
  do {                                       \
    fprintf(stderr, "blindtuner %s: ", who); \
    fprintf(stderr, __VA_ARGS__);            \
    fputc('\n', stderr);                     \
    goto out;                                \
  } while (0)
#define TRY(who, expr)                                                            \
  do {                                                                            \
    bt_status st_ = (expr);                                                       \
    if (st_ != BT_OK) FAIL(who, "%s (%s)", bt_last_error(), bt_status_name(st_)); \
  } while (0)

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
int bt_cli_serve(int argc, char **argv); /* with BT_SERVICE */
int bt_cli_remote(int argc, char **argv); /* with BT_REMOTE */

/* Transformer features of a dataset (extract and demo): the vision
 * layer's request plus progress lines on stderr (unless quiet). */
typedef struct bt_cli_features_req {
  bt_features_request req;
  const char *who;
  int quiet, tty;
  double t0, last;
} bt_cli_features_req;
/* Prints a one-line error prefixed "blindtuner WHO:" and returns 1 on
 * failure; on success the caller frees *feats (n x dim) and *labels. */
int bt_cli_features(bt_cli_features_req *r, float **feats, int64_t **labels, size_t *n, size_t *dim, int *classes);

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

/* A bt_progress_fn printing progress lines; user: a bt_cli_meter. */
typedef struct bt_cli_meter {
  const char *who, *prefix; /* prefix: "epoch 2/3, " or "" */
  int tty;
  double t0, done0, total; /* total 0: the callback's own total */
  long kill_after, steps;   /* test hook (BT_TEST_KILL_AFTER_STEPS): SIGKILL after that many steps */
  const char *progress;     /* NULL, or a JSON file rewritten at every step (train --progress) */
  int epoch;                /* the epoch running (for the progress file) */
  int quiet;                /* a rank other than 0 of an MPI job: the kill hook only */
} bt_cli_meter;
int bt_cli_meter_cb(void *user, const char *what, int done, int total);
/* Rewrites m->progress (when set) atomically: {"phase", "epoch", "step",
 * "steps", "elapsed_s"}; what a service shows as a job's progress. */
void bt_cli_progress(const bt_cli_meter *m, const char *phase, int step, int steps);

/* The loader flags for --allow-insecure; a stderr note when the loaded
 * parameters are INSECURE (every command that loads keys says so). */
#define bt_cli_insecure_flags(allow) ((allow) ? BT_ALLOW_INSECURE : 0u)
void bt_cli_note_insecure(const char *who, const bt_ckks_params *p);
/* decide's and report's record: --state, or "<keys>.decisions" */
void bt_cli_decisions_path(char *out, size_t cap, const char *keys, const char *state);

/* Prints "blindtuner WHO: <last error> (<status>)" and returns 1 when st is an error, else 0. */
int bt_cli_failed(const char *who, bt_status st);

/* DIR/NAME-EEE.bt (epoch > 0) or DIR/NAME.bt (bt_pipeline_path; cap 4096). */
void bt_cli_path(char *out, size_t cap, const char *dir, const char *name, int epoch);
int bt_cli_exists(const char *path);

#endif

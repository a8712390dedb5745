/* The server's subcommands: train and infer.  They read the evaluation
 * bundle and ciphertexts only: no code path here can reach a secret key
 * (the evaluation bundle loader refuses a secret bundle by its kind), and
 * the one thing that comes back from the client is the early-stopping bit. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli/cli.h"

#define FAIL(...)                                      \
  do {                                                 \
    fprintf(stderr, "blindtuner %s: ", who);           \
    fprintf(stderr, __VA_ARGS__);                      \
    fputc('\n', stderr);                               \
    goto out;                                          \
  } while (0)
#define TRY(expr)                                                                 \
  do {                                                                            \
    bt_status st_ = (expr);                                                       \
    if (st_ != BT_OK) FAIL("%s (%s)", bt_last_error(), bt_status_name(st_));      \
  } while (0)

/* Exit status of `train` when it stops to wait for the client's answer. */
#define EXIT_WAITING 3

static void train_help(void) {
  printf("usage: blindtuner train --keys EVAL --train FILE --workdir DIR [options]\n"
         "\n"
         "Server.  Trains the softmax head on the encrypted training set with encrypted\n"
         "Nesterov steps, bootstrapping as it goes, using the evaluation bundle only.\n"
         "Each epoch visits the batches in a new order (public randomness from --seed).\n"
         "\n"
         "Everything it writes goes to DIR, the exchange directory with the client:\n"
         "  model-EEE.bt       the encrypted model after epoch EEE (for the client)\n"
         "  loss-EEE.bt        with --val: the encrypted validation loss of epoch EEE\n"
         "  checkpoint.bt      the training state after the last finished epoch\n"
         "  report.json/.svg   time per epoch and phase (the server sees no loss or accuracy)\n"
         "With --val, the client answers each loss with `blindtuner decide`, which writes\n"
         "answer-EEE.bt (continue or stop, one bit).  Without the answer, train waits --wait\n"
         "seconds for it, then exits with status 3; run it again (same options) once the answer\n"
         "is there.  Run again after a crash, it resumes from the checkpoint: at most the\n"
         "unfinished epoch is redone.\n"
         "\n"
         "  --keys FILE      the evaluation bundle (blindtuner keygen --eval)\n"
         "  --train FILE     the encrypted training set (blindtuner encrypt --role train)\n"
         "  --val FILE       the encrypted validation set (early stopping)\n"
         "  --workdir DIR    the exchange directory (created if missing)\n"
         "  --epochs E       at most E epochs (default 2)\n"
         "  --lr X           learning rate (default 0.3)\n"
         "  --momentum X     Nesterov momentum (default 0.9)\n"
         "  --seed S         batch-order seed (default 1)\n"
         "  --wait S         seconds to wait for each answer before exiting with status 3\n"
         "                   (default 0)\n"
         "  --threads N      threads (default BT_THREADS or all cores)\n"
         "  --json           print the summary as JSON\n"
         "\n"
         "Exit status: 0 finished (epochs done or the client said stop), 3 waiting for the\n"
         "client's answer, 1 error, 2 bad usage.\n");
}

/* The client's answer to epoch e: 1 continue, 0 stop, EXIT_WAITING, or -1 after a message. */
static int await_answer(const char *who, const char *dir, int e, int wait_s, const bt_ckks_params *p,
                        const bt_io_tag *tag) {
  char path[4096];
  bt_cli_path(path, sizeof path, dir, "answer", e);
  const double t0 = bt_seconds();
  while (!bt_cli_exists(path)) {
    if (bt_seconds() - t0 >= wait_s) {
      fprintf(stderr,
              "blindtuner %s: waiting for the client's answer to epoch %d (%s); run "
              "`blindtuner decide --workdir %s ...` on the client, then this command again\n",
              who, e, path, dir);
      return EXIT_WAITING;
    }
    sleep(1);
  }
  bt_answer a;
  bt_status st = bt_io_load_answer(path, p, tag, &a);
  if (!st && a.epoch != e) st = bt_fail(BT_E_FORMAT, "%s answers epoch %d, not %d", path, a.epoch, e);
  if (st) {
    fprintf(stderr, "blindtuner %s: %s\n", who, bt_last_error());
    return -1;
  }
  fprintf(stderr, "%s: the client says %s after epoch %d\n", who, a.go_on ? "continue" : "stop", e);
  return a.go_on;
}

/* report.json: kept across restarts, one entry per finished epoch. */
static json_object *report_load(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/report.json", dir);
  json_object *o = bt_cli_exists(path) ? json_object_from_file(path) : NULL, *ep;
  if (!o || !json_object_object_get_ex(o, "epochs", &ep) || !json_object_is_type(ep, json_type_array)) {
    json_object_put(o);
    o = json_object_new_object();
    json_object_object_add(o, "epochs", json_object_new_array());
  }
  return o;
}

/* report.json and report.svg: time per epoch and phase. */
static int report_save(const char *dir, json_object *rep) {
  char path[4096];
  snprintf(path, sizeof path, "%s/report.json", dir);
  if (bt_cli_write_text(path, json_object_to_json_string_ext(rep, JSON_C_TO_STRING_PRETTY))) return -1;
  json_object *ep;
  json_object_object_get_ex(rep, "epochs", &ep);
  const int n = (int)json_object_array_length(ep);
  double *phase = calloc((size_t)(n ? n : 1) * BT_CLI_PHASES, sizeof *phase);
  if (!phase) return -1;
  for (int i = 0; i < n; i++)
    for (int k = 0; k < BT_CLI_PHASES; k++) {
      json_object *v;
      if (json_object_object_get_ex(json_object_array_get_idx(ep, (size_t)i), bt_cli_phase_keys[k], &v))
        phase[i * BT_CLI_PHASES + k] = json_object_get_double(v);
    }
  char *svg = bt_cli_svg_phases(n, phase);
  free(phase);
  snprintf(path, sizeof path, "%s/report.svg", dir);
  const int rc = svg ? bt_cli_write_text(path, svg) : -1;
  free(svg);
  return rc;
}

int bt_cli_train(int argc, char **argv) {
  const char *who = "train", *keys = NULL, *trainp = NULL, *valp = NULL, *dir = NULL;
  int epochs = 2, seed = 1, wait_s = 0, threads = 0, json = 0;
  double lr = 0.3, mu = 0.9;
  const bt_cli_opt opts[] = {{"--keys", BT_OPT_STR, &keys, 0, 0},
                             {"--train", BT_OPT_STR, &trainp, 0, 0},
                             {"--val", BT_OPT_STR, &valp, 0, 0},
                             {"--workdir", BT_OPT_STR, &dir, 0, 0},
                             {"--epochs", BT_OPT_INT, &epochs, 1, 100000},
                             {"--lr", BT_OPT_DBL, &lr, 1e-6, 1e3},
                             {"--momentum", BT_OPT_DBL, &mu, 0, 0.999},
                             {"--seed", BT_OPT_INT, &seed, 0, 2147483647.0},
                             {"--wait", BT_OPT_INT, &wait_s, 0, 1e7},
                             {"--threads", BT_OPT_INT, &threads, 1, 1024},
                             {"--json", BT_OPT_FLAG, &json, 0, 0},
                             {0}};
  int r = bt_cli_parse(who, argc, argv, opts, train_help);
  if (r) return r == 1 ? 0 : 2;
  if (bt_cli_need(who, "--keys", keys) || bt_cli_need(who, "--train", trainp) || bt_cli_need(who, "--workdir", dir))
    return 2;
  int rc = 1;
  bt_ckks_params *p = NULL;
  bt_eval_bundle eb = {0};
  bt_enc_dataset tr = {0}, va = {0};
  bt_hemat_layout L;
  bt_softmax_approx sa = {0};
  bt_cli_server sv = {0};
  bt_checkpoint cp = {0};
  bt_ciphertext *loss = NULL, *lpart = NULL;
  int *order = NULL;
  json_object *rep = NULL;
  char path[4096];
  const double t_all = bt_seconds();
  const int tty = isatty(2);
  const char *kill_env = getenv("BT_TEST_KILL_AFTER_STEPS"); /* test hook: SIGKILL mid-epoch */
  const long kill_after = kill_env ? atol(kill_env) : 0;

  TRY(bt_io_load_eval_bundle(keys, BT_ALLOW_INSECURE, &p, &eb));
  bt_ckks_set_threads(p, threads ? threads : bt_default_threads());
  const bt_io_tag *tag = &eb.tag;
  TRY(bt_io_load_dataset(trainp, p, tag, &tr));
  if (tr.role != BT_SET_TRAIN || !tr.labelled)
    FAIL("%s is a%s %s set, not a labelled training set", trainp, tr.labelled ? "" : "n unlabelled",
         bt_set_role_name(tr.role));
  if (valp) {
    TRY(bt_io_load_dataset(valp, p, tag, &va));
    if (va.role != BT_SET_VAL || !va.labelled)
      FAIL("%s is a%s %s set, not a labelled validation set", valp, va.labelled ? "" : "n unlabelled",
           bt_set_role_name(va.role));
  }
  TRY(bt_cli_layout(p, tag, &L, &sa));
  if (tr.nx != L.nb || (valp && va.nx != L.nb)) FAIL("a dataset has %d feature blocks per batch, the layout %d", tr.nx, L.nb);
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) FAIL("cannot create %s: %s", dir, strerror(errno));

  /* the state: a checkpoint, or the zero model */
  bt_cli_path(path, sizeof path, dir, "checkpoint", 0);
  if (bt_cli_exists(path)) {
    TRY(bt_io_load_checkpoint(path, p, tag, &cp));
    if (cp.lr != lr || cp.momentum != mu || cp.seed != (uint64_t)seed)
      FAIL("%s was made with --lr %g --momentum %g --seed %llu; resume with the same options or use a new "
           "--workdir", path, cp.lr, cp.momentum, (unsigned long long)cp.seed);
    fprintf(stderr, "%s: resuming from %s after epoch %d\n", who, path, cp.epochs_done);
  } else {
    cp.tag = *tag;
    cp.lr = lr, cp.momentum = mu, cp.seed = (uint64_t)seed;
    /* W_0 = V_0 = 0, known to everyone: a trivial encryption of zero */
    TRY(bt_ciphertext_new(p, &cp.a));
    cp.a->level = 4 < bt_ckks_max_level(p) ? 4 : bt_ckks_max_level(p);
    cp.a->degree = 1;
    cp.a->logslots = L.logslots;
    cp.a->scale = bt_ckks_default_scale(p);
    for (int c = 0; c < 2; c++)
      memset(cp.a->c[c], 0, (size_t)(cp.a->level + 1) * ((size_t)1 << bt_ckks_logn(p)) * sizeof(uint64_t));
  }
  rep = report_load(dir);
  TRY(bt_ciphertext_new(p, &loss));
  TRY(bt_ciphertext_new(p, &lpart));
  order = malloc((size_t)tr.nbatches * sizeof *order);
  if (!order) FAIL("out of memory");

  long steps_here = 0;
  double t_train0 = bt_seconds();
  const int first_epoch = cp.epochs_done;
  for (;;) {
    const int e = cp.epochs_done;
    if (cp.stopped || e >= epochs) break;
    if (valp && e > 0) {
      const int a = await_answer(who, dir, e, wait_s, p, tag);
      if (a < 0) goto out;
      if (a == EXIT_WAITING) {
        rc = EXIT_WAITING;
        goto out;
      }
      if (!a) {
        cp.stopped = 1;
        bt_cli_path(path, sizeof path, dir, "checkpoint", 0);
        TRY(bt_io_save_checkpoint(path, &cp));
        break;
      }
    }
    /* this epoch's batch order: from (seed, epoch), so a resumed run repeats it */
    bt_prng sg;
    uint8_t s[BT_SEED_BYTES] = {'o', 'r', 'd', 'e', 'r'};
    const uint64_t s64 = (uint64_t)seed, e64 = (uint64_t)e;
    memcpy(s + 8, &s64, 8);
    memcpy(s + 16, &e64, 8);
    bt_prng_init(&sg, s);
    for (int k = 0; k < tr.nbatches; k++) order[k] = k;
    for (int k = tr.nbatches - 1; k > 0; k--) {
      const int j = (int)(bt_prng_u64(&sg) % (uint64_t)(k + 1)), tmp = order[k];
      order[k] = order[j], order[j] = tmp;
    }
    if (!sv.trainer) { /* built only when there is an epoch to train */
      TRY(bt_cli_server_new(p, &L, &sa, &eb, lr, mu, &sv));
      fprintf(stderr, "%s: %d training batches, %d validation, layout %d x %d x %d, server setup %.1f s\n", who,
              tr.nbatches, valp ? va.nbatches : 0, L.batch, L.features, L.classes, sv.setup_s);
      t_train0 = bt_seconds();
    }
    bt_train_stats st = {0}, vst = {0};
    double ts = bt_seconds();
    for (int k = 0; k < tr.nbatches; k++) {
      const bt_enc_batch *b = &tr.b[order[k]];
      TRY(bt_trainer_step(sv.trainer, sv.ev, b->x, b->y, b->rows, cp.a, &st));
      if (kill_after && ++steps_here >= kill_after) raise(SIGKILL);
      char what[96];
      snprintf(what, sizeof what, "epoch %d/%d, step %d/%d", e + 1, epochs, k + 1, tr.nbatches);
      const double done = (double)(e - first_epoch) * tr.nbatches + k + 1,
                   total = (double)(epochs - first_epoch) * tr.nbatches;
      bt_cli_progress(who, tty, done, total, t_train0, what);
    }
    if (tty && e + 1 < epochs) fputc('\n', stderr); /* end the progress line */
    const double train_s = bt_seconds() - ts;
    ts = bt_seconds();
    bt_enc_epoch out_e = {.tag = *tag, .epoch = e + 1};
    if (valp) {
      for (int k = 0; k < va.nbatches; k++) {
        TRY(bt_trainer_loss(sv.trainer, sv.ev, va.b[k].x, va.b[k].y, va.b[k].rows, 1.0 / va.rows, cp.a,
                            k ? lpart : loss, &vst));
        if (k) TRY(bt_eval_add(sv.ev, loss, lpart, loss));
      }
      out_e.ct = loss;
      bt_cli_path(path, sizeof path, dir, "loss", e + 1);
      TRY(bt_io_save_epoch(path, BT_IO_LOSS, &out_e));
    }
    const double val_s = bt_seconds() - ts;
    out_e.ct = cp.a;
    bt_cli_path(path, sizeof path, dir, "model", e + 1);
    TRY(bt_io_save_epoch(path, BT_IO_MODEL, &out_e));
    cp.epochs_done = e + 1;
    cp.train_s += train_s;
    cp.val_s += val_s;
    cp.steps += tr.nbatches;
    cp.bootstraps += st.bootstraps + vst.bootstraps;
    bt_cli_path(path, sizeof path, dir, "checkpoint", 0);
    TRY(bt_io_save_checkpoint(path, &cp));
    /* the report: this epoch's entry replaces any from an interrupted run */
    json_object *ep, *je = json_object_new_object();
    json_object_object_get_ex(rep, "epochs", &ep);
    while (json_object_array_length(ep) > (size_t)e)
      json_object_array_del_idx(ep, json_object_array_length(ep) - 1, 1);
    const bt_cli_json_field f[] = {{"epoch", e + 1},
                                   {"steps", tr.nbatches},
                                   {"train_s", train_s},
                                   {"matmul_s", st.matmul_s},
                                   {"softmax_s", st.softmax_s},
                                   {"bootstrap_s", st.bootstrap_s},
                                   {"other_s", st.other_s},
                                   {"validation_s", val_s},
                                   {"bootstraps", (double)(st.bootstraps + vst.bootstraps)}};
    bt_cli_json_add_numbers(je, f, sizeof f / sizeof *f);
    json_object_array_add(ep, je);
    if (report_save(dir, rep)) fprintf(stderr, "%s: warning: cannot write the report in %s\n", who, dir);
    fprintf(stderr, "%s: epoch %d: %d steps in %.1f s (%.1f s each), %ld bootstraps%s%.1f s -> %s/model-%03d.bt%s\n",
            who, e + 1, tr.nbatches, train_s, train_s / tr.nbatches, st.bootstraps + vst.bootstraps,
            valp ? ", validation loss " : "", val_s, dir, e + 1, valp ? " and loss" : "");
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const double peak = (double)ru.ru_maxrss / (1024.0 * 1024.0);
  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "workdir", json_object_new_string(dir));
    const bt_cli_json_field f[] = {{"epochs_done", cp.epochs_done}, {"stopped_by_client", cp.stopped},
                                   {"steps", (double)cp.steps},     {"bootstraps", (double)cp.bootstraps},
                                   {"train_s", cp.train_s},         {"validation_s", cp.val_s},
                                   {"setup_s", sv.setup_s},         {"this_run_s", bt_seconds() - t_all},
                                   {"peak_memory_gib", peak}};
    bt_cli_json_add_numbers(o, f, sizeof f / sizeof *f);
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else {
    printf("train: finished after epoch %d%s: %ld steps, %.1f s training, %.1f s validation, %ld bootstraps; "
           "models in %s/model-EEE.bt, report %s/report.svg; peak memory %.1f GiB\n",
           cp.epochs_done, cp.stopped ? " (the client said stop)" : "", cp.steps, cp.train_s, cp.val_s,
           cp.bootstraps, dir, dir, peak);
  }
  rc = 0;
out:
  json_object_put(rep);
  free(order);
  bt_ciphertext_free(loss), bt_ciphertext_free(lpart);
  bt_ciphertext_free(cp.a);
  bt_cli_server_free(&sv);
  bt_softmax_approx_free(&sa);
  bt_enc_dataset_clear(&tr), bt_enc_dataset_clear(&va);
  bt_eval_bundle_clear(&eb);
  bt_ckks_params_free(p);
  return rc;
}

/* ================================================================ infer */
static void infer_help(void) {
  printf("usage: blindtuner infer --keys EVAL --model FILE --data FILE --out FILE [--threads N]\n"
         "\n"
         "Server.  Encrypted inference: the logits of every row of an encrypted dataset (any\n"
         "role; labels are not used) under an encrypted model, as encrypted logits for the\n"
         "client (`blindtuner decrypt --logits`).\n"
         "\n"
         "  --keys FILE    the evaluation bundle\n"
         "  --model FILE   an encrypted model (train's DIR/model-EEE.bt)\n"
         "  --data FILE    an encrypted dataset (blindtuner encrypt)\n"
         "  --out FILE     the encrypted logits\n"
         "  --threads N    threads (default BT_THREADS or all cores)\n"
         "  --json         print the result as JSON\n");
}

int bt_cli_infer(int argc, char **argv) {
  const char *who = "infer", *keys = NULL, *model = NULL, *datap = NULL, *outp = NULL;
  int threads = 0, json = 0;
  const bt_cli_opt opts[] = {{"--json", BT_OPT_FLAG, &json, 0, 0},
                             {"--keys", BT_OPT_STR, &keys, 0, 0},  {"--model", BT_OPT_STR, &model, 0, 0},
                             {"--data", BT_OPT_STR, &datap, 0, 0}, {"--out", BT_OPT_STR, &outp, 0, 0},
                             {"--threads", BT_OPT_INT, &threads, 1, 1024}, {0}};
  int r = bt_cli_parse(who, argc, argv, opts, infer_help);
  if (r) return r == 1 ? 0 : 2;
  if (bt_cli_need(who, "--keys", keys) || bt_cli_need(who, "--model", model) || bt_cli_need(who, "--data", datap) ||
      bt_cli_need(who, "--out", outp))
    return 2;
  int rc = 1;
  bt_ckks_params *p = NULL;
  bt_eval_bundle eb = {0};
  bt_enc_dataset d = {0};
  bt_enc_epoch m = {0};
  bt_enc_logits lg = {0};
  bt_hemat_layout L;
  bt_softmax_approx sa = {0};
  bt_cli_server sv = {0};
  const double t0 = bt_seconds();
  TRY(bt_io_load_eval_bundle(keys, BT_ALLOW_INSECURE, &p, &eb));
  bt_ckks_set_threads(p, threads ? threads : bt_default_threads());
  TRY(bt_io_load_epoch(model, BT_IO_MODEL, p, &eb.tag, &m));
  TRY(bt_io_load_dataset(datap, p, &eb.tag, &d));
  TRY(bt_cli_layout(p, &eb.tag, &L, &sa));
  if (d.nx != L.nb) FAIL("%s has %d feature blocks per batch, the layout %d", datap, d.nx, L.nb);
  TRY(bt_cli_server_new(p, &L, &sa, &eb, 0.1, 0, &sv));
  const double t1 = bt_seconds(); /* progress: inference only */
  lg.tag = eb.tag;
  lg.rows = d.rows;
  lg.nbatches = d.nbatches;
  lg.z = calloc((size_t)d.nbatches, sizeof *lg.z);
  lg.batch_rows = calloc((size_t)d.nbatches, sizeof *lg.batch_rows);
  if (!lg.z || !lg.batch_rows) FAIL("out of memory");
  const int tty = isatty(2);
  for (int k = 0; k < d.nbatches; k++) {
    lg.batch_rows[k] = d.b[k].rows;
    TRY(bt_ciphertext_new(p, &lg.z[k]));
    TRY(bt_trainer_logits(sv.trainer, sv.ev, d.b[k].x, m.ct, lg.z[k], NULL));
    char what[64];
    snprintf(what, sizeof what, "batch %d/%d", k + 1, d.nbatches);
    bt_cli_progress(who, tty, k + 1, d.nbatches, t1, what);
  }
  TRY(bt_io_save_logits(outp, &lg));
  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "out", json_object_new_string(outp));
    const bt_cli_json_field f[] = {{"rows", d.rows},           {"batches", d.nbatches}, {"epoch", m.epoch},
                                   {"seconds", bt_seconds() - t0}, {"setup_s", t1 - t0}, {"infer_s", bt_seconds() - t1}};
    bt_cli_json_add_numbers(o, f, sizeof f / sizeof *f);
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else
    printf("infer: logits of %d rows (model of epoch %d) -> %s (%.1f s; loading and setup %.1f s, inference %.1f s)\n",
           d.rows, m.epoch, outp, bt_seconds() - t0, t1 - t0, bt_seconds() - t1);
  rc = 0;
out:
  bt_enc_logits_clear(&lg);
  bt_cli_server_free(&sv);
  bt_softmax_approx_free(&sa);
  bt_enc_dataset_clear(&d);
  bt_ciphertext_free(m.ct);
  bt_eval_bundle_clear(&eb);
  bt_ckks_params_free(p);
  return rc;
}

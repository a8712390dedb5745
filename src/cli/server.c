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

#include "blindtuner/dist.h"
#include "cli.h"

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
         "  --allow-insecure accept an evaluation bundle of INSECURE test parameters\n"
         "  --train FILE     the encrypted training set (blindtuner encrypt --role train)\n"
         "  --val FILE       the encrypted validation set (early stopping)\n"
         "  --workdir DIR    the exchange directory (created if missing); locked while train\n"
         "                   runs (not while it waits for an answer): a second train or a\n"
         "                   decide on it is refused\n"
         "  --epochs E       at most E epochs (default 2)\n"
         "  --lr X           learning rate (default: 0.3 up to a global batch of 1,024 rows,\n"
         "                   scaled linearly above, 2.4 at 8,192; a resumed job keeps its\n"
         "                   checkpoint's; docs/TRAINING.md)\n"
         "  --momentum X     Nesterov momentum (default 0.9)\n"
         "  --seed S         batch-order seed (default 1)\n"
         "  --accumulate A   batches per step (default 1): their gradients are summed into\n"
         "                   one update, a step of A x the layout's batch (docs/TRAINING.md)\n"
         "  --softmax-range R\n"
         "                   the logits' range the softmax approximation covers (default 32;\n"
         "                   wider costs bootstraps a step). A logit outside it makes the\n"
         "                   step's output garbage (the validation loss jumps): large batches\n"
         "                   on standardised features take 64 (docs/TRAINING.md). Not kept in\n"
         "                   the checkpoint: give it again to resume\n"
         "  --wait S         seconds to wait for each answer before exiting with status 3\n"
         "                   (default 0)\n"
         "  --threads N      threads (default BT_THREADS or all cores, divided among the\n"
         "                   MPI ranks on one machine)\n"
         "  --json           print the summary as JSON\n"
         "  --progress FILE  rewrite FILE (JSON: phase, epoch, step, steps, elapsed_s) at every\n"
         "                   step and phase; `blindtuner serve` shows it as the job's progress\n"
         "\n"
         "Under `mpirun -np K` (a build with MPI) the job runs on K ranks, data-parallel:\n"
         "each rank reads its share of the batches, a step's global batch is A batches of\n"
         "every rank, the gradients are summed exactly over the ranks, and rank 0 writes\n"
         "DIR (which every rank must see: a shared file system).  A rank that fails ends\n"
         "them all; run the same command again to resume, with any K (docs/SCALING.md).\n"
         "\n"
         "Exit status: 0 finished (epochs done or the client said stop), 3 waiting for the\n"
         "client's answer, 1 error, 2 bad usage.\n");
}

/* The exchange directory's lock (bt_dir_lock), held by `train` while it
 * runs, so that a second train (or a decide) on the same directory is
 * refused instead of interleaving its files; let go while it waits for the
 * client's answer (a train started then is caught when either takes the
 * lock back: bt_job_await_answer_dir); -1 while not held. */
static int workdir_lock = -1;

/* Takes it, refusing (1 after a message) when another process holds it; a
 * file system that cannot lock is said once and not protected. */
static int lock_workdir(const char *who, const char *dir) {
  const bt_status st = bt_dir_lock(dir, 0, &workdir_lock);
  if (st == BT_E_UNSUPPORTED) {
    fprintf(stderr, "%s: warning: %s; not protected against a concurrent train or decide\n", who, bt_last_error());
    return 0;
  }
  return bt_cli_failed(who, st);
}

/* Waits up to wait_s seconds for the client's answer to the last epoch and
 * gives it to the job (bt_job_await_answer_dir, which lets go of the lock
 * while it waits): 1 continue, 0 stop, EXIT_WAITING, or -1 after a message. */
static int await_answer(const char *who, const char *dir, int wait_s, bt_job *job) {
  int found = 0, go_on = 0;
  const int e = bt_job_epochs_done(job);
  if (bt_cli_failed(who, bt_job_await_answer_dir(job, dir, wait_s, &workdir_lock, &found, &go_on))) return -1;
  if (found) {
    fprintf(stderr, "%s: the client says %s after epoch %d\n", who, go_on ? "continue" : "stop", e);
    return go_on;
  }
  char path[4096];
  bt_cli_path(path, sizeof path, dir, "answer", e);
  fprintf(stderr,
          "blindtuner %s: waiting for the client's answer to epoch %d (%s); run "
          "`blindtuner decide --workdir %s ...` on the client, then this command again\n",
          who, e, path, dir);
  return EXIT_WAITING;
}

int bt_cli_train(int argc, char **argv) {
  const char *who = "train", *keys = NULL, *trainp = NULL, *valp = NULL, *dir = NULL, *progress = NULL;
  int epochs = 2, seed = 1, wait_s = 0, threads = 0, json = 0, insecure = 0, accumulate = 1;
  double lr = 0, mu = 0.9, srange = 0; /* lr 0: the large-batch rule (bt_lr_for_batch) */
  const bt_cli_opt opts[] = {{"--keys", BT_OPT_STR, &keys, 0, 0},
                             {"--train", BT_OPT_STR, &trainp, 0, 0},
                             {"--val", BT_OPT_STR, &valp, 0, 0},
                             {"--workdir", BT_OPT_STR, &dir, 0, 0},
                             {"--epochs", BT_OPT_INT, &epochs, 1, 100000},
                             {"--lr", BT_OPT_DBL, &lr, 1e-6, 1e3},
                             {"--momentum", BT_OPT_DBL, &mu, 0, 0.999},
                             {"--seed", BT_OPT_INT, &seed, 0, 2147483647.0},
                             {"--accumulate", BT_OPT_INT, &accumulate, 1, BT_MAX_ACCUMULATE},
                             {"--softmax-range", BT_OPT_DBL, &srange, 1, BT_MAX_SOFTMAX_BOUND},
                             {"--wait", BT_OPT_INT, &wait_s, 0, 1e7},
                             {"--threads", BT_OPT_INT, &threads, 1, 1024},
                             {"--json", BT_OPT_FLAG, &json, 0, 0},
                             {"--allow-insecure", BT_OPT_FLAG, &insecure, 0, 0},
                             {"--progress", BT_OPT_STR, &progress, 0, 0},
                             {0}};
  int r = bt_cli_parse(who, argc, argv, opts, train_help);
  if (r) return r == 1 ? 0 : 2;
  if (bt_cli_need(who, "--keys", keys) || bt_cli_need(who, "--train", trainp) || bt_cli_need(who, "--workdir", dir))
    return 2;
  /* the ranks of an MPI job (one process without mpirun) */
  bt_collective co;
  int mpi = 0;
  if (bt_cli_failed(who, bt_dist_init(NULL, NULL, &co, &mpi))) return 1;
  const int rank0 = co.rank == 0;
  int rc = 1;
  bt_ckks_params *p = NULL;
  bt_eval_bundle eb = {0};
  bt_enc_dataset tr = {0}, va = {0};
  bt_checkpoint cp = {0};
  bt_job *job = NULL;
  char path[4096];
  const double t_all = bt_seconds();
  const int tty = isatty(2);
#ifdef BT_TEST_HOOKS
  const char *kill_env = getenv("BT_TEST_KILL_AFTER_STEPS"); /* test hook: SIGKILL mid-epoch */
#else
  const char *kill_env = NULL;
#endif
  long kill_after = kill_env ? atol(kill_env) : 0;
#ifdef BT_TEST_HOOKS
  const char *kill_rank = getenv("BT_TEST_KILL_RANK"); /* ... of this rank only */
  if (kill_rank && atoi(kill_rank) != co.rank) kill_after = 0;
#endif

  /* the exchange directory first: a second train on it is refused before
   * gigabytes of keys are loaded */
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) FAIL(who, "cannot create %s: %s", dir, strerror(errno));
  if (rank0 && lock_workdir(who, dir)) goto out; /* rank 0 writes DIR for all */
  bt_cli_meter meter = {.who = who, .tty = tty && rank0, .t0 = t_all, .kill_after = kill_after,
                        .progress = rank0 ? progress : NULL, .quiet = !rank0};
  bt_cli_progress(&meter, "loading", 0, 0);
  TRY(who, bt_pipeline_load_eval_bundle(keys, bt_cli_insecure_flags(insecure), &p, &eb));
  bt_cli_note_insecure(who, p);
  bt_ckks_set_threads(p, threads ? threads : bt_dist_default_threads()); /* shared by the ranks on a machine */
  const bt_job_tag *tag = &eb.tag;
  /* each rank keeps its share of the batches only */
  TRY(who, bt_pipeline_load_dataset_share(trainp, p, tag, mpi ? co.rank : 0, mpi ? co.ranks : 1, &tr));
  if (valp) TRY(who, bt_pipeline_load_dataset_share(valp, p, tag, mpi ? co.rank : 0, mpi ? co.ranks : 1, &va));
  const bt_job_options jo = {.epochs = epochs, .lr = lr, .momentum = mu, .seed = (uint64_t)seed,
                             .coll = mpi ? &co : NULL, .accumulate = accumulate, .softmax_bound = srange};
  TRY(who, bt_job_new(p, &eb, &tr, valp ? &va : NULL, &jo, &job));

  /* the state: a checkpoint, or the zero model; rank 0 first (it may
   * finish an interrupted write), then the others read what it left */
  int resumed = 0;
  bt_cli_path(path, sizeof path, dir, "checkpoint", 0);
  bt_status rst = BT_OK;
  if (rank0) rst = bt_job_resume_dir(job, dir, &resumed);
  if (!rst) rst = bt_dist_barrier(&co);
  if (!rst && !rank0) rst = bt_job_resume_dir(job, dir, &resumed);
  if (rst == BT_E_ARG) FAIL(who, "%s: resume with the same options or use a new --workdir", bt_last_error());
  TRY(who, rst);
  /* every rank has read the state before rank 0 may write it again (an
   * answer waiting in DIR), and all read the same */
  TRY(who, bt_dist_barrier(&co));
  TRY(who, bt_job_check_ranks(job));
  if (resumed && rank0) fprintf(stderr, "%s: resuming from %s after epoch %d\n", who, path, bt_job_epochs_done(job));
  const int first_epoch = bt_job_epochs_done(job);
  const int vranks = (mpi ? co.ranks : 1) * accumulate; /* batches a step */
  const int epoch_steps = (tr.nbatches + vranks - 1) / vranks; /* global steps */
  meter.t0 = bt_seconds();
  meter.total = (double)(epochs - first_epoch) * epoch_steps;
  for (;;) {
    const bt_job_state js = bt_job_state_of(job);
    if (js == BT_JOB_DONE) break;
    const int e = bt_job_epochs_done(job);
    meter.epoch = e;
    if (js == BT_JOB_WAIT) {
      bt_cli_progress(&meter, "waiting", 0, 0);
      /* rank 0 reads the answer, and tells the others */
      int64_t a = rank0 ? await_answer(who, dir, wait_s, job) : 0;
      TRY(who, bt_dist_bcast_i64(&co, &a, 1, 0));
      if (!rank0 && (a == 0 || a == 1)) {
        const bt_answer ans = {.tag = *tag, .epoch = e, .go_on = (int)a};
        TRY(who, bt_job_answer(job, &ans));
      }
      if (a < 0 || a == EXIT_WAITING) {
        rc = a < 0 ? 1 : EXIT_WAITING;
        goto out;
      }
      continue;
    }
    if (e == first_epoch && rank0)
      fprintf(stderr, "%s: %d training batches, %d validation, layout %d x %d x %d%s; %d batches a step, "
              "learning rate %g%s\n", who, tr.nbatches, valp ? va.nbatches : 0, tag->batch, tag->features,
              tag->classes, mpi ? ", on MPI ranks" : "", vranks, bt_job_lr(job),
              lr != 0 ? "" : resumed ? " (the checkpoint's)" : " (the large-batch rule)");
    if (e == first_epoch && mpi)
      fprintf(stderr, "%s: rank %d of %d: %d of the training batches, %d of the validation\n", who, co.rank, co.ranks,
              (tr.nbatches - co.rank + co.ranks - 1) / co.ranks, valp ? (va.nbatches - co.rank + co.ranks - 1) / co.ranks : 0);
    char prefix[48];
    snprintf(prefix, sizeof prefix, "epoch %d/%d, ", e + 1, epochs);
    meter.prefix = prefix;
    meter.epoch = e + 1;
    meter.done0 = (double)(e - first_epoch) * epoch_steps;
    bt_job_epoch_report er;
    TRY(who, bt_job_run_epoch(job, bt_cli_meter_cb, &meter, &er));
    if (meter.tty && e + 1 < epochs) fputc('\n', stderr); /* end the progress line */
    if (!rank0) continue;
    int report_ok;
    TRY(who, bt_job_save_epoch(job, dir, &er, &report_ok));
    if (!report_ok)
      fprintf(stderr, "%s: warning: cannot write the report in %s: %s\n", who, dir, bt_last_error());
    const bt_train_stats *st = &er.stats;
    char vtext[48] = "";
    if (valp) snprintf(vtext, sizeof vtext, ", validation loss %.1f s", er.validation_s);
    fprintf(stderr, "%s: epoch %d: %d steps in %.1f s (%.1f s each), %ld bootstraps%s -> %s/model-%03d.bt%s\n", who,
            e + 1, er.steps, er.train_s, er.train_s / er.steps, st->bootstraps, vtext, dir, e + 1,
            valp ? " and loss" : "");
  }
  bt_job_checkpoint(job, &cp);
  meter.epoch = cp.epochs_done;
  bt_cli_progress(&meter, "finished", 0, 0);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double peak = (double)ru.ru_maxrss / (1024.0 * 1024.0);
  TRY(who, bt_dist_max_f64(&co, &peak, 1)); /* the largest rank's */
  if (!rank0) {
    rc = 0;
    goto out;
  }
  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "workdir", json_object_new_string(dir));
    const bt_cli_json_field f[] = {{"epochs_done", cp.epochs_done}, {"stopped_by_client", cp.stopped},
                                   {"steps", (double)cp.steps},     {"bootstraps", (double)cp.bootstraps},
                                   {"train_s", cp.train_s},         {"validation_s", cp.val_s},
                                   {"setup_s", bt_job_setup_seconds(job)},         {"this_run_s", bt_seconds() - t_all},
                                   {"peak_memory_gib", peak}, {"ranks", co.ranks},
                                   {"accumulate", accumulate}, {"lr", bt_job_lr(job)}};
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
  bt_job_free(job);
  bt_enc_dataset_clear(&tr), bt_enc_dataset_clear(&va);
  bt_eval_bundle_clear(&eb);
  bt_ckks_params_free(p);
  bt_dir_unlock(workdir_lock);
  workdir_lock = -1;
  /* a rank that fails alone would leave the others waiting in a sum: end
   * them all (they fail together, and a rerun resumes from the checkpoint) */
  if (rc == 1 && mpi && co.ranks > 1) bt_dist_abort(1);
  if (mpi) bt_dist_finalize();
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
         "  --allow-insecure accept an evaluation bundle of INSECURE test parameters\n"
         "  --model FILE   an encrypted model (train's DIR/model-EEE.bt)\n"
         "  --data FILE    an encrypted dataset (blindtuner encrypt)\n"
         "  --out FILE     the encrypted logits\n"
         "  --threads N    threads (default BT_THREADS or all cores)\n"
         "  --json         print the result as JSON\n"
         "Under `mpirun -np K` (a build with MPI) the K ranks split the batches and rank 0\n"
         "writes FILE.\n");
}

int bt_cli_infer(int argc, char **argv) {
  const char *who = "infer", *keys = NULL, *model = NULL, *datap = NULL, *outp = NULL;
  int threads = 0, json = 0, insecure = 0;
  const bt_cli_opt opts[] = {{"--json", BT_OPT_FLAG, &json, 0, 0}, {"--allow-insecure", BT_OPT_FLAG, &insecure, 0, 0},
                             {"--keys", BT_OPT_STR, &keys, 0, 0},  {"--model", BT_OPT_STR, &model, 0, 0},
                             {"--data", BT_OPT_STR, &datap, 0, 0}, {"--out", BT_OPT_STR, &outp, 0, 0},
                             {"--threads", BT_OPT_INT, &threads, 1, 1024}, {0}};
  int r = bt_cli_parse(who, argc, argv, opts, infer_help);
  if (r) return r == 1 ? 0 : 2;
  if (bt_cli_need(who, "--keys", keys) || bt_cli_need(who, "--model", model) || bt_cli_need(who, "--data", datap) ||
      bt_cli_need(who, "--out", outp))
    return 2;
  bt_collective co;
  int mpi = 0;
  if (bt_cli_failed(who, bt_dist_init(NULL, NULL, &co, &mpi))) return 1;
  int rc = 1;
  bt_ckks_params *p = NULL;
  bt_eval_bundle eb = {0};
  bt_enc_dataset d = {0};
  bt_enc_epoch m = {0};
  bt_enc_logits lg = {0};
  bt_job *job = NULL;
  const double t0 = bt_seconds();
  TRY(who, bt_pipeline_load_eval_bundle(keys, bt_cli_insecure_flags(insecure), &p, &eb));
  bt_cli_note_insecure(who, p);
  bt_ckks_set_threads(p, threads ? threads : bt_dist_default_threads()); /* shared by the ranks on a machine */
  TRY(who, bt_pipeline_load_epoch(model, BT_IO_MODEL, p, &eb.tag, &m));
  /* on MPI ranks: each its share of the batches, rank 0 writes the logits */
  TRY(who, bt_pipeline_load_dataset_share(datap, p, &eb.tag, mpi ? co.rank : 0, mpi ? co.ranks : 1, &d));
  bt_job_options jo;
  bt_job_options_init(&jo);
  jo.coll = mpi ? &co : NULL;
  TRY(who, bt_job_new(p, &eb, NULL, NULL, &jo, &job));
  bt_cli_meter meter = {.who = who, .tty = isatty(2) && co.rank == 0, .t0 = bt_seconds(), .quiet = co.rank != 0};
  TRY(who, bt_job_infer(job, &m, &d, bt_cli_meter_cb, &meter, &lg));
  const double t1 = t0 + bt_job_setup_seconds(job); /* inference apart from loading and setup */
  if (co.rank != 0) {
    rc = 0;
    goto out;
  }
  TRY(who, bt_pipeline_save_logits(outp, &lg));
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
  bt_job_free(job);
  bt_enc_dataset_clear(&d);
  bt_ciphertext_free(m.ct);
  bt_eval_bundle_clear(&eb);
  bt_ckks_params_free(p);
  if (rc == 1 && mpi && co.ranks > 1) bt_dist_abort(1);
  if (mpi) bt_dist_finalize();
  return rc;
}

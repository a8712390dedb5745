/* `blindtuner remote`: the client of the training service (docs/REMOTE.md):
 * the dispatch, what the subcommands share, submit, status and delete
 * (decide, fetch, watch and infer: remote_follow.c).  Argument parsing and
 * printing only; the protocol is the remote layer's
 * (include/blindtuner/remote.h).  Runs on the client's machine: watch and
 * decide hold the secret key, so the command never dumps core. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#ifdef BT_REMOTE
#include "remote_cli.h"

/* ---- shared ---- */
void bt_cli_rm_nap(double s) {
  struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

int bt_cli_rm_open_job(const char *who, const char *job, const char *ca, bt_remote **r) {
  *r = NULL;
  if (!bt_cli_exists(job)) {
    fprintf(stderr, "blindtuner %s: no job file %s (`blindtuner remote submit` writes it)\n", who, job);
    return 1;
  }
  if (bt_cli_failed(who, bt_remote_load(job, r))) return 1;
  if (ca && bt_cli_failed(who, bt_remote_set_ca(*r, ca))) {
    bt_remote_free(*r);
    *r = NULL;
    return 1;
  }
  return 0;
}

/* The client's exchange directory, made when missing (the parent must exist). */
int bt_cli_rm_ensure_dir(const char *who, const char *dir) {
  if (!dir || mkdir(dir, 0700) == 0 || errno == EEXIST) return 0;
  fprintf(stderr, "blindtuner %s: cannot create %s: %s\n", who, dir, strerror(errno));
  return 1;
}

/* The token crosses the network in the clear over http:// to another machine. */
static void note_plain_http(const char *who, const char *server) {
  if (strncmp(server, "http://", 7)) return;
  char host[256];
  const char *h = server + 7;
  size_t n = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/");
  if (n >= sizeof host) n = sizeof host - 1;
  memcpy(host, h, n);
  host[n] = '\0';
  if (!strcmp(host, "localhost") || !strcmp(host, "[::1]") ||
      (!strncmp(host, "127.", 4) && strspn(host, "0123456789.") == n))
    return;
  fprintf(stderr, "blindtuner %s: note: plain http to %s: the job's token travels unencrypted (use https)\n", who,
          server);
}

static void human(char *out, size_t cap, uint64_t b) {
  if (b >= ((uint64_t)1 << 30)) snprintf(out, cap, "%.2f GiB", (double)b / (1 << 30));
  else if (b >= ((uint64_t)1 << 20)) snprintf(out, cap, "%.1f MiB", (double)b / (1 << 20));
  else snprintf(out, cap, "%.1f KiB", (double)b / 1024);
}

/* One line for a job's state; with times 0, without the clock (elapsed,
 * ETA): what changes only when something happens, for plain-line logs. */
void bt_cli_rm_describe(const bt_remote_info *s, char *out, size_t cap, int times) {
  char eta[64] = "";
  if (times && s->eta_s >= 0)
    snprintf(eta, sizeof eta, ", %.0f s into the epoch, ETA %.0f s", s->elapsed_s, s->eta_s);
  else if (times) snprintf(eta, sizeof eta, ", %.0f s into the epoch", s->elapsed_s);
  switch (s->state) {
  case BT_REMOTE_CREATED: snprintf(out, cap, "created, not started (uploading)"); break;
  case BT_REMOTE_QUEUED: snprintf(out, cap, "queued, position %d", s->queue_position); break;
  case BT_REMOTE_TRAINING:
    if (s->has_progress && s->steps > 0)
      snprintf(out, cap, "training epoch %d/%d, %s %d/%d%s", s->progress_epoch, s->epochs,
               strcmp(s->phase, "training") && s->phase[0] ? s->phase : "step", s->step, s->steps, eta);
    else if (s->has_progress && s->phase[0])
      snprintf(out, cap, "training (%d of %d epochs done; %s)", s->epochs_done, s->epochs, s->phase);
    else snprintf(out, cap, "training (%d of %d epochs done)", s->epochs_done, s->epochs);
    break;
  case BT_REMOTE_WAITING: snprintf(out, cap, "waiting for the client's answer to epoch %d", s->waiting_epoch); break;
  case BT_REMOTE_DONE:
    snprintf(out, cap, "done after %d epoch%s%s", s->epochs_done, s->epochs_done == 1 ? "" : "s",
             s->stopped_by_client ? " (stopped by the client)" : "");
    break;
  case BT_REMOTE_FAILED: snprintf(out, cap, "failed: %s", s->error[0] ? s->error : "(no reason given)"); break;
  default: snprintf(out, cap, "%s", s->state_name[0] ? s->state_name : "(no state)"); break;
  }
}

static void print_epochs(const char *label, const bt_remote_epochs *l) {
  printf("  %-10s", label);
  if (!l->n) printf(" none");
  for (int i = 0; i < l->n; i++) printf("%s%d", i ? ", " : " ", l->e[i]);
  printf("\n");
}

/* ================================================================ submit */
typedef struct up_meter {
  const char *who, *name;
  int tty, last_tenth, started;
  double t0;
  uint64_t start; /* the rate counts this call's bytes only: from the first report */
} up_meter;

static int up_progress(void *user, uint64_t done, uint64_t total) {
  up_meter *m = user;
  if (!m->started) m->started = 1, m->start = done, m->t0 = bt_seconds();
  const double el = bt_seconds() - m->t0, sent = (double)(done - m->start), left = (double)(total - done);
  const double eta = sent > 0 ? el / sent * left : 0;
  const int tenth = total ? (int)(10 * done / total) : 10;
  if (!m->tty && tenth == m->last_tenth && done < total) return 0; /* plain lines every 10 % */
  m->last_tenth = tenth;
  char d[32], t[32];
  human(d, sizeof d, done), human(t, sizeof t, total);
  fprintf(stderr, "%s%s: upload %s %s of %s (%d %%), %.0f s elapsed, ETA %.0f s%s", m->tty ? "\r" : "", m->who,
          m->name, d, t, total ? (int)(100 * done / total) : 100, el, eta, m->tty ? "   " : "\n");
  return 0;
}

static void submit_help(void) {
  printf("usage: blindtuner remote submit --server URL --keys EVAL --train FILE [--val FILE]\n"
         "                                [--test FILE] [options]\n"
         "\n"
         "Client.  Creates a job on a training service (`blindtuner serve`), writes the job\n"
         "file at once, uploads the evaluation bundle and the encrypted datasets, and starts\n"
         "the training.  Interrupted (a broken connection, Ctrl-C), the same command again\n"
         "resumes: with an existing job file it reopens that job, skips what the server has\n"
         "and sends each file on from the server's last byte.  Only an evaluation bundle and\n"
         "encrypted datasets are sent; a secret bundle is refused before a byte leaves.\n"
         "\n"
         "  --server URL     the service (http://HOST:PORT or https://...); not needed when\n"
         "                   the job file exists\n"
         "  --keys FILE      the evaluation bundle (keygen --eval)\n"
         "  --train FILE     the encrypted training set (encrypt --role train)\n"
         "  --val FILE       an encrypted validation set: early stopping on its loss, which\n"
         "                   only the client decrypts (`remote watch --keys` or `remote decide`)\n"
         "  --test FILE      an encrypted test set for `remote infer`\n"
         "  --epochs E       at most E epochs (default 2)\n"
         "  --lr X           learning rate (default: the large-batch rule, 0.3 up to 1,024\n"
         "                   rows a step and linear above; docs/TRAINING.md)\n"
         "  --accumulate A   A batches summed into each update (default 1; 1 to 64)\n"
         "  --momentum X     Nesterov momentum (default 0.9)\n"
         "  --seed S         the server's batch order (default 1)\n"
         "  --no-start       upload only; a later submit without --no-start starts the job\n"
         "  --chunk-kib K    bytes per PUT, in KiB (default 65536)\n"
         COMMON_HELP);
}

/* "lr X", or the rule when the job has none (docs/TRAINING.md) */
static void rate_text(double lr, char *out, size_t n) {
  if (lr > 0) snprintf(out, n, "lr %g", lr);
  else snprintf(out, n, "lr by the large-batch rule");
}

static int bt_cli_remote_submit(int argc, char **argv) {
  const char *who = "remote submit", *server = NULL, *keys = NULL, *job = "job.json", *ca = NULL;
  const char *files[4] = {NULL, NULL, NULL, NULL};
  int no_start = 0, chunk_kib = 0, epochs = 0, seed = -1, accumulate = 0;
  double lr = 0, momentum = -1;
  const bt_cli_opt opts[] = {{"--server", BT_OPT_STR, &server, 0, 0},     {"--keys", BT_OPT_STR, &keys, 0, 0},
                             {"--train", BT_OPT_STR, &files[1], 0, 0},    {"--val", BT_OPT_STR, &files[2], 0, 0},
                             {"--test", BT_OPT_STR, &files[3], 0, 0},     {"--job", BT_OPT_STR, &job, 0, 0},
                             {"--ca", BT_OPT_STR, &ca, 0, 0},             {"--no-start", BT_OPT_FLAG, &no_start, 0, 0},
                             {"--epochs", BT_OPT_INT, &epochs, 1, BT_MAX_DECISIONS},
                             {"--lr", BT_OPT_DBL, &lr, 1e-6, 1e3},
                             {"--momentum", BT_OPT_DBL, &momentum, 0, 0.999},
                             {"--seed", BT_OPT_INT, &seed, 0, 2147483647.0},
                             {"--accumulate", BT_OPT_INT, &accumulate, 1, BT_MAX_ACCUMULATE},
                             {"--chunk-kib", BT_OPT_INT, &chunk_kib, 4, 4194304},
                             {0}};
  int r = bt_cli_parse(who, argc, argv, opts, submit_help);
  if (r) return r == 1 ? 0 : 2;
  if (bt_cli_need(who, "--keys", keys) || bt_cli_need(who, "--train", files[1])) return 2;
  files[0] = keys;
  int rc = 1;
  bt_remote *rm = NULL;
  bt_remote_info info = {0};
  for (int i = 0; i < 4; i++) /* before a job is made for them */
    if (files[i]) TRY(who, bt_remote_check_file(bt_remote_file_name(i), files[i]));
  if (bt_cli_exists(job)) {
    if (bt_cli_rm_open_job(who, job, ca, &rm)) goto out;
    if (server) {
      size_t n = strlen(server);
      while (n > 0 && server[n - 1] == '/') n--;
      if (strlen(bt_remote_server(rm)) != n || strncmp(server, bt_remote_server(rm), n))
        FAIL(who, "%s is a job on %s, not %s (another --job for a new job)", job, bt_remote_server(rm), server);
    }
    if (ca) TRY(who, bt_remote_save(rm, job)); /* later commands use the same CA */
    fprintf(stderr, "remote submit: resuming job %s on %s (%s)\n", bt_remote_id(rm), bt_remote_server(rm), job);
  } else {
    if (bt_cli_need(who, "--server", server)) {
      rc = 2;
      goto out;
    }
    TRY(who, bt_remote_create(server, ca, &rm));
    /* the job file first: an interrupted submit resumes from it */
    bt_status st = bt_remote_save(rm, job);
    if (st) {
      char why[512];
      snprintf(why, sizeof why, "%s", bt_last_error());
      if (bt_remote_delete(rm)) bt_clear_error(); /* no file, no token: do not leave an orphan */
      FAIL(who, "%s (%s); the job was deleted again", why, bt_status_name(st));
    }
    fprintf(stderr, "remote submit: job %s created on %s; job file %s (mode 0600: it holds the job's token)\n",
            bt_remote_id(rm), bt_remote_server(rm), job);
  }
  note_plain_http(who, bt_remote_server(rm));
  if (chunk_kib) TRY(who, bt_remote_set_chunk(rm, (size_t)chunk_kib << 10));
  for (int i = 0; i < 4; i++) {
    if (!files[i]) continue;
    up_meter m = {.who = "remote submit", .name = bt_remote_file_name(i), .tty = isatty(2), .last_tenth = -1,
                  .t0 = bt_seconds()};
    bt_remote_upload_result res;
    const double t0 = bt_seconds();
    bt_status st = bt_remote_upload(rm, bt_remote_file_name(i), files[i], up_progress, &m, &res);
    if (st && m.tty) fputc('\n', stderr);
    if (st && bt_remote_http_status(rm) == 404)
      FAIL(who, "%s (%s); if the job is gone, remove %s to submit a new one", bt_last_error(), bt_status_name(st), job);
    TRY(who, st);
    char sz[32];
    human(sz, sizeof sz, res.size);
    if (res.skipped) fprintf(stderr, "remote submit: %s: on the server already (%s)\n", bt_remote_file_name(i), sz);
    else
      fprintf(stderr, "remote submit: %s: %s uploaded%s in %.1f s (%s%s)\n", bt_remote_file_name(i), files[i],
              res.resumed_at ? " (resumed)" : "", bt_seconds() - t0, sz,
              res.retries ? ", with chunks sent again after failures" : "");
  }
  if (no_start) {
    printf("remote submit: job %s uploaded, not started (--no-start)\n", bt_remote_id(rm));
    rc = 0;
    goto out;
  }
  TRY(who, bt_remote_status(rm, &info, NULL));
  char line[640];
  if (info.state == BT_REMOTE_CREATED || info.state == BT_REMOTE_FAILED) {
    bt_job_options o;
    bt_job_options_init(&o);
    if (epochs) o.epochs = epochs;
    if (lr > 0) o.lr = lr;
    if (momentum >= 0) o.momentum = momentum;
    if (seed >= 0) o.seed = (uint64_t)seed;
    if (accumulate) o.accumulate = accumulate;
    bt_remote_info_clear(&info);
    TRY(who, bt_remote_start(rm, &o, &info));
    bt_cli_rm_describe(&info, line, sizeof line, 1);
    char rate[40];
    rate_text(o.lr, rate, sizeof rate);
    printf("remote submit: job %s started (%d epochs, %s, momentum %g, seed %llu, %d batch%s a step%s): %s\n",
           bt_remote_id(rm), o.epochs, rate, o.momentum, (unsigned long long)o.seed, o.accumulate,
           o.accumulate > 1 ? "es" : "", o.accumulate > 1 ? " per rank" : "", line);
  } else {
    bt_cli_rm_describe(&info, line, sizeof line, 1);
    printf("remote submit: job %s was started before: %s\n", bt_remote_id(rm), line);
  }
  printf("remote submit: follow it with: blindtuner remote watch --job %s%s\n", job,
         files[2] ? " --keys SECRET --workdir DIR" : " --workdir DIR");
  rc = 0;
out:
  bt_remote_info_clear(&info);
  bt_remote_free(rm);
  return rc;
}

/* ================================================================ status */
static void status_help(void) {
  printf("usage: blindtuner remote status [--job FILE] [--json]\n"
         "\n"
         "Client.  The job's state, queue position, epoch and step, ETA, uploads, the models\n"
         "and losses the server has, and the inference.  --json prints the server's status\n"
         "document (timings and counts only: the server has no decrypted value).\n"
         "\n" COMMON_HELP "  --json           print the server's JSON\n");
}

static int bt_cli_remote_status(int argc, char **argv) {
  const char *who = "remote status", *job = "job.json", *ca = NULL;
  int json = 0;
  const bt_cli_opt opts[] = {{"--job", BT_OPT_STR, &job, 0, 0},
                             {"--ca", BT_OPT_STR, &ca, 0, 0},
                             {"--json", BT_OPT_FLAG, &json, 0, 0},
                             {0}};
  int r = bt_cli_parse(who, argc, argv, opts, status_help);
  if (r) return r == 1 ? 0 : 2;
  int rc = 1;
  bt_remote *rm = NULL;
  bt_remote_info s = {0};
  char *text = NULL;
  if (bt_cli_rm_open_job(who, job, ca, &rm)) goto out;
  TRY(who, bt_remote_status(rm, &s, json ? &text : NULL));
  if (json) {
    printf("%s\n", text);
  } else {
    char line[640];
    bt_cli_rm_describe(&s, line, sizeof line, 1);
    printf("job %s on %s: %s\n", bt_remote_id(rm), bt_remote_server(rm), line);
    char rate[40];
    rate_text(s.lr, rate, sizeof rate);
    printf("  options    %d epochs, %s, momentum %g, seed %llu, %d batch%s a step%s\n", s.epochs, rate, s.momentum,
           (unsigned long long)s.seed, s.accumulate, s.accumulate > 1 ? "es" : "", s.accumulate > 1 ? " per rank" : "");
    printf("  uploads   ");
    for (int i = 0; i < 4; i++) {
      char a[32], b[32];
      const bt_remote_upload_info *u = &s.uploads[i];
      human(a, sizeof a, u->received), human(b, sizeof b, u->size);
      if (u->complete) printf(" %s %s%s", bt_remote_file_name(i), b, i < 3 ? "," : "");
      else if (u->received) printf(" %s %s of %s%s", bt_remote_file_name(i), a, u->size ? b : "?", i < 3 ? "," : "");
      else printf(" %s -%s", bt_remote_file_name(i), i < 3 ? "," : "");
    }
    printf("\n  epochs     %d done%s\n", s.epochs_done, s.stopped_by_client ? ", stopped by the client" : "");
    print_epochs("models", &s.models);
    print_epochs("losses", &s.losses);
    printf("  inference  %s", s.infer_state[0] ? s.infer_state : "none");
    if (s.infer_epoch) printf(" (model of epoch %d)", s.infer_epoch);
    printf("\n");
    print_epochs("logits", &s.logits);
    if (s.memory_estimate_gib > 0) printf("  memory     %.1f GiB estimated\n", s.memory_estimate_gib);
    if (s.error[0]) printf("  error      %s\n", s.error);
  }
  rc = 0;
out:
  free(text);
  bt_remote_info_clear(&s);
  bt_remote_free(rm);
  return rc;
}

/* ================================================================ delete */
static void delete_help(void) {
  printf("usage: blindtuner remote delete [--job FILE] [--keep-job-file]\n"
         "\n"
         "Client.  Deletes the job on the server (a running training is stopped; its keys,\n"
         "datasets, models and logits are removed), then the job file, whose token no\n"
         "longer opens anything.\n"
         "\n" COMMON_HELP "  --keep-job-file  leave the job file\n");
}

static int bt_cli_remote_delete(int argc, char **argv) {
  const char *who = "remote delete", *job = "job.json", *ca = NULL;
  int keep = 0;
  const bt_cli_opt opts[] = {{"--job", BT_OPT_STR, &job, 0, 0},
                             {"--ca", BT_OPT_STR, &ca, 0, 0},
                             {"--keep-job-file", BT_OPT_FLAG, &keep, 0, 0},
                             {0}};
  int r = bt_cli_parse(who, argc, argv, opts, delete_help);
  if (r) return r == 1 ? 0 : 2;
  int rc = 1;
  bt_remote *rm = NULL;
  if (bt_cli_rm_open_job(who, job, ca, &rm)) goto out;
  TRY(who, bt_remote_delete(rm));
  if (!keep && unlink(job) != 0) FAIL(who, "job %s deleted, but %s could not be removed", bt_remote_id(rm), job);
  printf("remote delete: job %s deleted on %s%s%s\n", bt_remote_id(rm), bt_remote_server(rm),
         keep ? "" : "; removed ", keep ? "" : job);
  rc = 0;
out:
  bt_remote_free(rm);
  return rc;
}

/* ================================================================ dispatch */
static void remote_help(FILE *f) {
  fprintf(f, "usage: blindtuner remote <subcommand> [options]\n"
             "\n"
             "Client of a training service (`blindtuner serve`, docs/API.md): the file-based\n"
             "protocol over HTTP.  Only the evaluation bundle, encrypted datasets and one-bit\n"
             "answers go out; losses are decrypted here, models and logits by `decrypt`.\n"
             "\n"
             "subcommands:\n"
             "  submit     create a job, upload the evaluation bundle and datasets, start it\n"
             "             (resumes an interrupted submit from the job file)\n"
             "  status     the job's state, progress and files\n"
             "  watch      follow the job; with --keys, answer each epoch's loss; fetch the\n"
             "             best model at the end\n"
             "  decide     one early-stopping step: decrypt the waited-for loss, post the bit\n"
             "  fetch      download an encrypted model (an epoch, or the best)\n"
             "  infer      encrypted logits of the test set under an epoch's model\n"
             "  delete     delete the job and its data on the server\n"
             "\n"
             "The job file (--job, default job.json, mode 0600) holds the job's token: treat it\n"
             "as a password.  Run 'blindtuner remote <subcommand> --help' for its options.\n");
}

int bt_cli_remote(int argc, char **argv) {
  static const struct {
    const char *name;
    int (*run)(int, char **);
  } subs[] = {{"submit", bt_cli_remote_submit}, {"status", bt_cli_remote_status}, {"watch", bt_cli_remote_watch},
              {"decide", bt_cli_remote_decide}, {"fetch", bt_cli_remote_fetch},   {"infer", bt_cli_remote_infer},
              {"delete", bt_cli_remote_delete}};
  if (argc < 2) {
    remote_help(stderr);
    return 2;
  }
  const char *sub = argv[1];
  if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
    remote_help(stdout);
    return 0;
  }
  /* a server that closes a connection mid-upload must not kill the client */
  signal(SIGPIPE, SIG_IGN);
  for (size_t i = 0; i < sizeof subs / sizeof *subs; i++)
    if (!strcmp(sub, subs[i].name)) return subs[i].run(argc - 1, argv + 1);
  fprintf(stderr, "blindtuner remote: unknown subcommand '%s'\n\n", sub);
  remote_help(stderr);
  return 2;
}
#endif

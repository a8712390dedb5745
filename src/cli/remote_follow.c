/* `blindtuner remote` decide, fetch, watch and infer: the subcommands that
 * follow a job after its submit (docs/REMOTE.md).  Argument parsing and
 * printing only; the protocol is the remote layer's. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#ifdef BT_REMOTE
#include "remote_cli.h"

/* Every model the server lists into DIR/model-EEE.bt: the server then
 * cannot tell which one the client keeps. */
static int fetch_all(const char *who, bt_remote *rm, const bt_remote_info *s, const char *dir) {
  char path[4096];
  if (!s->models.n) {
    fprintf(stderr, "blindtuner %s: the server lists no model yet\n", who);
    return 1;
  }
  for (int i = 0; i < s->models.n; i++) {
    if (bt_cli_failed(who, bt_pipeline_path(path, sizeof path, dir, "model", s->models.e[i])) ||
        bt_cli_failed(who, bt_remote_download(rm, "model", s->models.e[i], path)))
      return 1;
    fprintf(stderr, "%s: encrypted model of epoch %d -> %s\n", who, s->models.e[i], path);
  }
  return 0;
}

/* The model's path: --out, or DIR/model-EEE.bt. */
static int model_out(const char *who, const char *out, const char *dir, int epoch, char *path, size_t cap) {
  if (out) snprintf(path, cap, "%s", out);
  else if (bt_cli_failed(who, bt_pipeline_path(path, cap, dir, "model", epoch))) return 1;
  return 0;
}

/* ================================================================ decide */
/* One step with the record opened at the job's agreed epochs; prints it. */
static int decide_step(const char *who, bt_remote *rm, bt_client *c, const char *dir, const char *record, int patience,
                       int epochs, int json, int say_idle, bt_remote_info *after) {
  int rc = 1;
  bt_decisions d = {0};
  bt_decide_result res;
  bt_remote_info s = {0};
  memset(after, 0, sizeof *after);
  if (!epochs) {
    TRY(who, bt_remote_status(rm, &s, NULL));
    epochs = s.epochs; /* the agreement is what the job was started with */
    bt_remote_info_clear(&s);
  }
  TRY(who, bt_decisions_open(record, bt_client_tag(c), patience, epochs, &d));
  const bt_status st = bt_remote_decide(rm, c, dir, record, &d, &res, after);
  const bt_early_stop *es = &d.es;
  if (json && !st) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "epoch", json_object_new_int(res.epoch));
    json_object_object_add(o, "decided", json_object_new_boolean(res.decided));
    json_object_object_add(o, "reposted", json_object_new_boolean(res.rewritten));
    json_object_object_add(o, "val_loss", isfinite(res.loss) ? json_object_new_double(res.loss) : NULL);
    json_object_object_add(o, "continue", res.answer.epoch ? json_object_new_boolean(res.answer.go_on) : NULL);
    json_object_object_add(o, "best_epoch", json_object_new_int(es->best_epoch + 1));
    json_object_object_add(o, "answer", res.answer.epoch ? json_object_new_string(res.answer_path) : NULL);
    json_object_object_add(o, "state", json_object_new_string(record));
    json_object_object_add(o, "job_state", json_object_new_string(after->state_name));
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else if (res.epoch == 0 && !st) {
    char line[640];
    bt_cli_rm_describe(after, line, sizeof line, 1);
    if (say_idle) printf("%s: no answer is waited for: %s\n", who, line);
  } else if (res.answer.epoch && after->state == BT_REMOTE_DONE) {
    /* the last epoch, which the server did not wait for */
    if (isfinite(res.loss))
      printf("%s: epoch %3d  validation loss %.6f%s (the last epoch: nothing to answer)\n", who, res.epoch, res.loss,
             es->best_epoch == res.epoch - 1 ? "  (best)" : "");
    else printf("%s: epoch %3d  loss refused (the last epoch: nothing to answer)\n", who, res.epoch);
    if (!st) printf("%s: best epoch %d\n", who, es->best_epoch + 1);
  } else if (res.answer.epoch) {
    const char *bit = res.answer.go_on ? "continue" : "stop";
    if (res.decided && isfinite(res.loss))
      printf("%s: epoch %3d  validation loss %.6f%s -> %s\n", who, res.epoch, res.loss,
             es->best_epoch == res.epoch - 1 ? "  (best)" : "", bit);
    else if (res.decided) printf("%s: epoch %3d  loss refused -> stop\n", who, res.epoch);
    else if (res.rewritten)
      printf("%s: epoch %3d  the recorded answer (%s) posted again, nothing decrypted\n", who, res.epoch, bit);
    else printf("%s: epoch %3d  beyond the client's agreement or after its stop -> stop, nothing decrypted\n", who,
                res.epoch);
    if (!st) printf("%s: answer %s posted; best epoch so far %d\n", who, res.answer_path, es->best_epoch + 1);
  }
  TRY(who, st);
  rc = 0;
out:
  bt_decisions_clear(&d);
  return rc;
}

static void decide_help(void) {
  printf("usage: blindtuner remote decide --keys SECRET --workdir DIR [--job FILE] [options]\n"
         "\n"
         "Client: one step of early stopping over the service.  When the job waits for the\n"
         "answer to epoch E, downloads its encrypted validation loss to DIR/loss-EEE.bt,\n"
         "decrypts it here with the client's own record (as `blindtuner decide` does: each\n"
         "epoch once, none beyond the agreed epochs, none after a stop; a loss that fails\n"
         "validation is answered stop), writes DIR/answer-EEE.bt and posts that one bit.  An\n"
         "answer whose post failed is posted again from the record, without decrypting.\n"
         "Nothing decrypted ever leaves this machine.\n"
         "\n"
         "  --keys FILE      the secret bundle\n"
         "  --workdir DIR    the client's exchange directory (losses and answers)\n"
         "  --record FILE    the client's decisions (default SECRET.decisions)\n"
         "  --patience P     epochs without improvement before stopping (default 3; first\n"
         "                   decision only, must not change afterwards)\n"
         "  --epochs E       the epochs agreed (default: the job's --epochs)\n"
         "  --allow-insecure accept a secret bundle of INSECURE test parameters\n"
         "  --json           print the step as JSON\n" COMMON_HELP);
}

int bt_cli_remote_decide(int argc, char **argv) {
  const char *who = "remote decide", *job = "job.json", *ca = NULL, *keys = NULL, *dir = NULL, *record = NULL;
  int patience = 0, epochs = 0, insecure = 0, json = 0;
  const bt_cli_opt opts[] = {{"--job", BT_OPT_STR, &job, 0, 0},          {"--ca", BT_OPT_STR, &ca, 0, 0},
                             {"--keys", BT_OPT_STR, &keys, 0, 0},        {"--workdir", BT_OPT_STR, &dir, 0, 0},
                             {"--record", BT_OPT_STR, &record, 0, 0},
                             {"--patience", BT_OPT_INT, &patience, 1, 100000},
                             {"--epochs", BT_OPT_INT, &epochs, 1, BT_MAX_DECISIONS},
                             {"--allow-insecure", BT_OPT_FLAG, &insecure, 0, 0},
                             {"--json", BT_OPT_FLAG, &json, 0, 0},
                             {0}};
  int r = bt_cli_parse(who, argc, argv, opts, decide_help);
  if (r) return r == 1 ? 0 : 2;
  if (bt_cli_need(who, "--keys", keys) || bt_cli_need(who, "--workdir", dir)) return 2;
  int rc = 1;
  bt_remote *rm = NULL;
  bt_client *c = NULL;
  bt_remote_info after = {0};
  char rpath[4096];
  if (bt_cli_rm_open_job(who, job, ca, &rm) || bt_cli_rm_ensure_dir(who, dir)) goto out;
  TRY(who, bt_client_open(keys, bt_cli_insecure_flags(insecure), &c));
  bt_cli_note_insecure(who, bt_client_params(c));
  bt_cli_decisions_path(rpath, sizeof rpath, keys, record);
  rc = decide_step(who, rm, c, dir, rpath, patience, epochs, json, 1, &after);
out:
  bt_remote_info_clear(&after);
  bt_client_free(c);
  bt_remote_free(rm);
  return rc;
}

/* ================================================================ fetch */
/* The epoch of "best" (the record's, else the last model) or of a number. */
static int pick_epoch(const char *who, const char *spec, const char *record, const bt_job_tag *tag,
                      const bt_remote_info *s, int *epoch, const char **why) {
  if (strcmp(spec, "best")) {
    char *end;
    const long e = strtol(spec, &end, 10);
    if (*spec == '\0' || *end || e < 1 || e > BT_MAX_DECISIONS) {
      fprintf(stderr, "blindtuner %s: --epoch is a number from 1 or 'best', not '%s'\n", who, spec);
      return 2;
    }
    *epoch = (int)e;
    *why = "as asked";
    return 0;
  }
  int from_record = 0;
  if (bt_cli_failed(who, bt_remote_best_epoch(record, tag, s, epoch, &from_record))) return 1;
  *why = from_record ? "the best in the client's record" : "the last model";
  return 0;
}

static void fetch_help(void) {
  printf("usage: blindtuner remote fetch [--job FILE] [--epoch E|best|all] (--out FILE | --workdir DIR)\n"
         "                               [--keys SECRET] [--record FILE]\n"
         "\n"
         "Client.  Downloads an encrypted model (nothing is decrypted; `blindtuner decrypt\n"
         "--model` does that with the secret bundle and the scaler).\n"
         "\n"
         "  --epoch E|best|all  the model's epoch; best (the default): the epoch with the\n"
         "                   lowest validation loss in the client's record, else the last\n"
         "                   model; all: every model the server has, to --workdir (the server\n"
         "                   then cannot tell which one the client keeps)\n"
         "  --out FILE       where to write it\n"
         "  --workdir DIR    write DIR/model-EEE.bt instead\n"
         "  --keys FILE      the secret bundle: the record must be of its key set (only its\n"
         "                   header is read); the default record is SECRET.decisions\n"
         "  --record FILE    the client's decisions (remote watch / remote decide)\n" COMMON_HELP);
}

int bt_cli_remote_fetch(int argc, char **argv) {
  const char *who = "remote fetch", *job = "job.json", *ca = NULL, *spec = "best", *outp = NULL, *dir = NULL,
             *keys = NULL, *record = NULL;
  const bt_cli_opt opts[] = {{"--job", BT_OPT_STR, &job, 0, 0},       {"--ca", BT_OPT_STR, &ca, 0, 0},
                             {"--epoch", BT_OPT_STR, &spec, 0, 0},    {"--out", BT_OPT_STR, &outp, 0, 0},
                             {"--workdir", BT_OPT_STR, &dir, 0, 0},   {"--keys", BT_OPT_STR, &keys, 0, 0},
                             {"--record", BT_OPT_STR, &record, 0, 0}, {0}};
  int r = bt_cli_parse(who, argc, argv, opts, fetch_help);
  if (r) return r == 1 ? 0 : 2;
  if (!outp && !dir) {
    fprintf(stderr, "blindtuner %s: give --out FILE or --workdir DIR\n", who);
    return 2;
  }
  int rc = 1, epoch = 0;
  bt_remote *rm = NULL;
  bt_remote_info s = {0};
  bt_pipeline_summary sum;
  const bt_job_tag *tag = NULL;
  const char *why = "";
  char rpath[4096], path[4096];
  if (keys) {
    TRY(who, bt_pipeline_summarize(keys, &sum));
    if (sum.info.kind != BT_IO_SECRET_BUNDLE || !sum.has_tag) FAIL(who, "%s is not a secret bundle", keys);
    tag = &sum.tag;
    bt_cli_decisions_path(rpath, sizeof rpath, keys, record);
  } else if (record) {
    snprintf(rpath, sizeof rpath, "%s", record);
  }
  if (!strcmp(spec, "all") && !dir) {
    fprintf(stderr, "blindtuner %s: --epoch all needs --workdir\n", who);
    return 2;
  }
  if (bt_cli_rm_open_job(who, job, ca, &rm) || bt_cli_rm_ensure_dir(who, dir)) goto out;
  TRY(who, bt_remote_status(rm, &s, NULL));
  if (!strcmp(spec, "all")) {
    rc = fetch_all(who, rm, &s, dir);
    goto out;
  }
  if ((r = pick_epoch(who, spec, keys || record ? rpath : NULL, tag, &s, &epoch, &why))) {
    rc = r;
    goto out;
  }
  if (model_out(who, outp, dir, epoch, path, sizeof path)) goto out;
  TRY(who, bt_remote_download(rm, "model", epoch, path));
  printf("remote fetch: encrypted model of epoch %d (%s) -> %s\n", epoch, why, path);
  rc = 0;
out:
  bt_remote_info_clear(&s);
  bt_remote_free(rm);
  return rc;
}

/* ================================================================ watch */
/* Polls until the status answers; rides out a restarting server for up to
 * retry_for seconds. */
static int poll_status(const char *who, bt_remote *rm, double retry_for, double interval, bt_remote_info *s) {
  double since = -1;
  for (;;) {
    const bt_status st = bt_remote_status(rm, s, NULL);
    if (!st) return 0;
    const long http = bt_remote_http_status(rm);
    if (!(http == 0 || http >= 500)) return bt_cli_failed(who, st);
    const double now = bt_seconds();
    if (since < 0) {
      since = now;
      fprintf(stderr, "%s: %s; trying again for up to %.0f s\n", who, bt_last_error(), retry_for);
    } else if (now - since > retry_for) {
      return bt_cli_failed(who, st);
    }
    bt_cli_rm_nap(interval < 5 ? 5 : interval);
  }
}

static void watch_help(void) {
  printf("usage: blindtuner remote watch [--job FILE] [--keys SECRET --workdir DIR] [options]\n"
         "\n"
         "Client.  Follows the job until it is done or failed, with a progress line when\n"
         "something changes (state, queue position, epoch, step; on a terminal, one line\n"
         "rewritten).  With the secret bundle, answers every epoch's validation loss as it\n"
         "comes (`remote decide`: decrypted here, only the bit goes back).  When the job is\n"
         "done and --workdir is given, downloads the encrypted model of the best epoch\n"
         "(lowest validation loss in the client's record; the last model without one) to\n"
         "DIR/model-EEE.bt and prints its path.  Exit status 0 when done, 1 when failed.\n"
         "\n"
         "  --keys FILE      the secret bundle: answer the losses (needs --workdir)\n"
         "  --workdir DIR    the client's exchange directory (losses, answers, the model)\n"
         "  --record FILE    the client's decisions (default SECRET.decisions)\n"
         "  --patience P     epochs without improvement before stopping (default 3)\n"
         "  --allow-insecure accept a secret bundle of INSECURE test parameters\n"
         "  --all-models     at the end, download every epoch's model to --workdir, not only\n"
         "                   the best (the server then cannot tell which one the client keeps)\n"
         "  --interval S     seconds between polls (default 2)\n"
         "  --retry-for S    ride out an unreachable or restarting server this long (default 600)\n"
         COMMON_HELP);
}

int bt_cli_remote_watch(int argc, char **argv) {
  const char *who = "remote watch", *job = "job.json", *ca = NULL, *keys = NULL, *dir = NULL, *record = NULL;
  int patience = 0, insecure = 0, all = 0;
  double interval = 2, retry_for = 600;
  const bt_cli_opt opts[] = {{"--job", BT_OPT_STR, &job, 0, 0},          {"--ca", BT_OPT_STR, &ca, 0, 0},
                             {"--keys", BT_OPT_STR, &keys, 0, 0},        {"--workdir", BT_OPT_STR, &dir, 0, 0},
                             {"--record", BT_OPT_STR, &record, 0, 0},
                             {"--patience", BT_OPT_INT, &patience, 1, 100000},
                             {"--allow-insecure", BT_OPT_FLAG, &insecure, 0, 0},
                             {"--interval", BT_OPT_DBL, &interval, 0.1, 3600},
                             {"--retry-for", BT_OPT_DBL, &retry_for, 0, 1e7},
                             {"--all-models", BT_OPT_FLAG, &all, 0, 0},
                             {0}};
  int r = bt_cli_parse(who, argc, argv, opts, watch_help);
  if (r) return r == 1 ? 0 : 2;
  if (keys && !dir) {
    fprintf(stderr, "blindtuner %s: --keys needs --workdir (where the losses and answers are kept)\n", who);
    return 2;
  }
  if (all && !dir) {
    fprintf(stderr, "blindtuner %s: --all-models needs --workdir\n", who);
    return 2;
  }
  int rc = 1, told_waiting = 0, decide_failures = 0;
  const int tty = isatty(2);
  bt_remote *rm = NULL;
  bt_client *c = NULL;
  bt_remote_info s = {0}, after = {0};
  char rpath[4096] = "", last[640] = "", line[640], key[640], path[4096];
  if (bt_cli_rm_open_job(who, job, ca, &rm) || bt_cli_rm_ensure_dir(who, dir)) goto out;
  if (keys) {
    TRY(who, bt_client_open(keys, bt_cli_insecure_flags(insecure), &c));
    bt_cli_note_insecure(who, bt_client_params(c));
  }
  if (keys || record) bt_cli_decisions_path(rpath, sizeof rpath, keys ? keys : "", record);
  for (;;) {
    bt_remote_info_clear(&s);
    if (poll_status(who, rm, retry_for, interval, &s)) goto out;
    bt_cli_rm_describe(&s, line, sizeof line, 1);
    bt_cli_rm_describe(&s, key, sizeof key, 0);
    if (tty) fprintf(stderr, "\r%s: %s\033[K", who, line);
    else if (strcmp(key, last)) fprintf(stderr, "%s: %s\n", who, line);
    const int changed = strcmp(key, last) != 0;
    snprintf(last, sizeof last, "%s", key);
    if (s.state == BT_REMOTE_WAITING && c) {
      if (tty) fputc('\n', stderr);
      if (decide_step(who, rm, c, dir, rpath, patience, s.epochs, 0, 0, &after)) {
        /* a refused loss is answered stop and the job ends; a network failure is retried */
        if (++decide_failures > 3) goto out;
        bt_cli_rm_nap(interval < 5 ? 5 : interval);
      } else {
        decide_failures = 0;
        /* answered: poll at once, unless the server still shows the same wait */
        if (after.state == BT_REMOTE_WAITING && after.waiting_epoch == s.waiting_epoch)
          bt_cli_rm_nap(interval);
      }
      bt_remote_info_clear(&after);
      fflush(stdout);
      continue;
    }
    if (s.state == BT_REMOTE_WAITING && changed && !told_waiting++)
      fprintf(stderr, "%s%s: the job waits for the client's answer: run `blindtuner remote decide --keys SECRET "
                      "--workdir DIR`, or watch with --keys\n", tty ? "\n" : "", who);
    if (s.state == BT_REMOTE_DONE || s.state == BT_REMOTE_FAILED) {
      if (tty) fputc('\n', stderr);
      if (s.state == BT_REMOTE_FAILED) FAIL(who, "the job failed: %s", s.error[0] ? s.error : "(no reason given)");
      /* the last epoch's loss, which nobody waited for: decided for the best epoch */
      if (c && decide_step(who, rm, c, dir, rpath, patience, s.epochs, 0, 0, &after)) goto out;
      if (dir) {
        int epoch;
        const char *why;
        if ((r = pick_epoch(who, "best", rpath[0] ? rpath : NULL, c ? bt_client_tag(c) : NULL, &s, &epoch, &why)))
          goto out;
        if (model_out(who, NULL, dir, epoch, path, sizeof path)) goto out;
        if (all && fetch_all(who, rm, &s, dir)) goto out;
        if (!all || !bt_remote_epochs_has(&s.models, epoch)) TRY(who, bt_remote_download(rm, "model", epoch, path));
        printf("remote watch: encrypted model of epoch %d (%s) -> %s\n", epoch, why, path);
      }
      rc = 0;
      goto out;
    }
    fflush(stdout);
    bt_cli_rm_nap(interval);
  }
out:
  bt_remote_info_clear(&s);
  bt_remote_info_clear(&after);
  bt_client_free(c);
  bt_remote_free(rm);
  return rc;
}

/* ================================================================ infer */
static void infer_help(void) {
  printf("usage: blindtuner remote infer [--job FILE] --epoch E [--wait --out FILE]\n"
         "\n"
         "Client.  Asks the server for the encrypted logits of the uploaded test set under\n"
         "the model of epoch E.  With --wait, polls until they are there and downloads them\n"
         "to --out (decrypt them with `blindtuner decrypt --logits`).\n"
         "\n"
         "  --epoch E        the model's epoch\n"
         "  --wait           wait for the inference, then download the logits\n"
         "  --out FILE       where the encrypted logits go (with --wait)\n"
         "  --interval S     seconds between polls (default 2)\n" COMMON_HELP);
}

int bt_cli_remote_infer(int argc, char **argv) {
  const char *who = "remote infer", *job = "job.json", *ca = NULL, *outp = NULL;
  int epoch = 0, wait = 0;
  double interval = 2;
  const bt_cli_opt opts[] = {{"--job", BT_OPT_STR, &job, 0, 0},
                             {"--ca", BT_OPT_STR, &ca, 0, 0},
                             {"--epoch", BT_OPT_INT, &epoch, 1, BT_MAX_DECISIONS},
                             {"--out", BT_OPT_STR, &outp, 0, 0},
                             {"--wait", BT_OPT_FLAG, &wait, 0, 0},
                             {"--interval", BT_OPT_DBL, &interval, 0.1, 3600},
                             {0}};
  int r = bt_cli_parse(who, argc, argv, opts, infer_help);
  if (r) return r == 1 ? 0 : 2;
  if (bt_cli_need(who, "--epoch", epoch ? "" : NULL)) return 2;
  if (wait != (outp != NULL)) {
    fprintf(stderr, "blindtuner %s: --wait and --out go together\n", who);
    return 2;
  }
  int rc = 1;
  bt_remote *rm = NULL;
  bt_remote_info s = {0};
  char line[640], key[700], last[700] = "";
  if (bt_cli_rm_open_job(who, job, ca, &rm)) goto out;
  TRY(who, bt_remote_status(rm, &s, NULL));
  const int ours = s.infer_epoch == epoch;
  if (ours && (!strcmp(s.infer_state, "queued") || !strcmp(s.infer_state, "running") ||
               (!strcmp(s.infer_state, "done") && bt_remote_epochs_has(&s.logits, epoch)))) {
    fprintf(stderr, "%s: the inference under the model of epoch %d is %s already\n", who, epoch, s.infer_state);
  } else {
    bt_remote_info_clear(&s);
    TRY(who, bt_remote_infer(rm, epoch, &s));
    fprintf(stderr, "%s: inference under the model of epoch %d: %s\n", who, epoch,
            s.infer_state[0] ? s.infer_state : "asked");
  }
  if (!wait) {
    rc = 0;
    goto out;
  }
  for (;;) {
    if (s.infer_epoch == epoch && !strcmp(s.infer_state, "done")) break;
    if (s.infer_epoch == epoch && !strcmp(s.infer_state, "failed"))
      FAIL(who, "the inference failed: %s", s.error[0] ? s.error : "(no reason given)");
    if (s.infer_epoch && s.infer_epoch != epoch) FAIL(who, "the server runs the inference of epoch %d now", s.infer_epoch);
    bt_cli_rm_describe(&s, line, sizeof line, 0);
    snprintf(key, sizeof key, "inference %s; job %s", s.infer_state[0] ? s.infer_state : "?", line);
    if (strcmp(key, last)) fprintf(stderr, "%s: %s\n", who, key);
    snprintf(last, sizeof last, "%s", key);
    bt_cli_rm_nap(interval);
    bt_remote_info_clear(&s);
    if (poll_status(who, rm, 600, interval, &s)) goto out;
  }
  TRY(who, bt_remote_download(rm, "logits", epoch, outp));
  printf("remote infer: encrypted logits of the test set under the model of epoch %d -> %s\n", epoch, outp);
  rc = 0;
out:
  bt_remote_info_clear(&s);
  bt_remote_free(rm);
  return rc;
}

#endif

/* The job actions behind the routes: status, start, the client's answer,
 * inference, downloads and deletion. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "service/internal.h"

#define ANSWER_MAX (1 << 20)

static void reply_status(bt_service *s, svc_request *r, int code) {
  pthread_mutex_lock(&s->mu);
  json_object *o = svc_status_json(s, r->job);
  const int running = r->job->child != 0 && !r->job->child_infer;
  pthread_mutex_unlock(&s->mu);
  svc_status_add_files(s, r->job->id, running, o);
  r->reply.status = code;
  r->reply.body = o;
}

static double opt_num(json_object *o, const char *key, double dflt, double lo, double hi, int *bad) {
  json_object *v;
  if (!json_object_object_get_ex(o, key, &v)) return dflt;
  if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)) {
    *bad = 1;
    return dflt;
  }
  const double x = json_object_get_double(v);
  if (!(x >= lo && x <= hi)) *bad = 1;
  return x;
}

static void start(bt_service *s, svc_request *r) {
  json_object *o = svc_body_json(r);
  if (!o) return;
  bt_job_options opt;
  bt_job_options_init(&opt);
  int bad = 0;
  const double epochs = opt_num(o, "epochs", opt.epochs, 1, 100000, &bad);
  /* no lr: the large-batch rule (opt.lr 0, docs/TRAINING.md) */
  opt.lr = opt_num(o, "lr", opt.lr, 1e-6, 1e3, &bad);
  opt.momentum = opt_num(o, "momentum", opt.momentum, 0, 0.999, &bad);
  const double seed = opt_num(o, "seed", (double)opt.seed, 0, 2147483647.0, &bad);
  const double acc = opt_num(o, "accumulate", 1, 1, BT_MAX_ACCUMULATE, &bad);
  json_object_put(o);
  if (bad || epochs != floor(epochs) || seed != floor(seed) || acc != floor(acc))
    return svc_error(&r->reply, 400, "start: epochs in [1, 100000], lr in [1e-6, 1000] (none: the large-batch rule), "
                                     "momentum in [0, 0.999], seed an integer in [0, 2^31), accumulate an integer "
                                     "in [1, %d]", BT_MAX_ACCUMULATE);
  opt.epochs = (int)epochs;
  opt.seed = (uint64_t)seed;
  opt.accumulate = (int)acc;
  pthread_mutex_lock(&s->mu);
  svc_job *j = r->job;
  const char *why = j->state != SVC_CREATED && j->state != SVC_FAILED ? "the job has started already"
                    : !j->up[SVC_EVAL].complete                        ? "the evaluation bundle (eval) is not complete"
                    : !j->up[SVC_TRAIN].complete                       ? "the training set (train) is not complete"
                    : j->up[SVC_VAL].received && !j->up[SVC_VAL].complete ? "the validation set (val) is not complete"
                                                                          : NULL;
  if (why) {
    pthread_mutex_unlock(&s->mu);
    return svc_error(&r->reply, 409, "start: %s", why);
  }
  /* a failed job starts again with its own options: it resumes from its checkpoint */
  if (j->state == SVC_FAILED && j->epochs_done > 0 &&
      (opt.epochs != j->opt.epochs || opt.lr != j->opt.lr || opt.momentum != j->opt.momentum || opt.seed != j->opt.seed ||
       opt.accumulate != j->opt.accumulate)) {
    pthread_mutex_unlock(&s->mu);
    return svc_error(&r->reply, 409, "start: the job resumes from epoch %d with the options it had", j->epochs_done);
  }
  const double need = svc_task_estimate(j, 0);
  if (need > s->budget) {
    pthread_mutex_unlock(&s->mu);
    return svc_error(&r->reply, 422, "start: the job needs about %.1f GiB (evaluation bundle and datasets), the "
                                     "service's memory budget is %.1f GiB", need / 1073741824.0, s->budget / 1073741824.0);
  }
  j->opt = opt;
  j->mem_estimate = need;
  j->error[0] = 0;
  svc_queue(s, j);
  const bt_status st = svc_db_save(s, j);
  pthread_mutex_unlock(&s->mu);
  if (st) return svc_error(&r->reply, 500, "%s", bt_last_error());
  reply_status(s, r, 202);
}

/* The answer container, checked against the job before it is written where
 * the training child looks for it: the evaluation bundle's parameters and
 * key set, and the epoch the job waits for. */
static void answer(bt_service *s, svc_request *r) {
  const int e = r->epoch;
  char phase[32];
  int pe = 0;
  const int in_grace = svc_progress(s, r->job->id, phase, sizeof phase, &pe) && !strcmp(phase, "waiting") && pe == e;
  pthread_mutex_lock(&s->mu);
  const svc_job snap = *r->job;
  pthread_mutex_unlock(&s->mu);
  const int waits = (snap.state == SVC_WAITING && snap.waiting_epoch == e) || (snap.state == SVC_TRAINING && in_grace);
  if (!waits) return svc_error(&r->reply, 409, "answer: the job does not wait for an answer to epoch %d", e);
  char eval[SVC_PATH], work[SVC_PATH], path[SVC_PATH];
  if (svc_upload_path(s, snap.id, SVC_EVAL, 0, eval) || svc_job_path(s, snap.id, "work", work) ||
      bt_pipeline_path(path, sizeof path, work, "answer", e))
    return svc_error(&r->reply, 500, "%s", bt_last_error());
  if (access(path, F_OK) == 0) return svc_error(&r->reply, 409, "answer: epoch %d is answered already", e);
  bt_ckks_params *p = NULL;
  bt_job_tag tag;
  bt_answer a;
  if (bt_pipeline_load_eval_params(eval, s->o.allow_insecure ? BT_ALLOW_INSECURE : 0u, &p, &tag))
    return svc_error(&r->reply, 500, "answer: %s", bt_last_error());
  bt_status st = bt_pipeline_decode(BT_IO_ANSWER, (const uint8_t *)r->body, r->body_len, 0, &p, &tag, &a);
  bt_ckks_params_free(p);
  if (st) return svc_error(&r->reply, 422, "answer: %s", bt_last_error());
  if (a.epoch != e) return svc_error(&r->reply, 422, "answer: it answers epoch %d, not %d", a.epoch, e);
  if (bt_file_write_atomic(path, r->body, r->body_len, 0))
    return svc_error(&r->reply, 500, "answer: %s", bt_last_error());
  pthread_mutex_lock(&s->mu);
  /* a child in its grace period reads the file itself; else the job goes
   * back to the queue and its next child resumes with the answer */
  if (r->job->state == SVC_WAITING) svc_queue(s, r->job);
  st = r->job->deleted ? BT_OK : svc_db_save(s, r->job);
  pthread_mutex_unlock(&s->mu);
  if (st) return svc_error(&r->reply, 500, "%s", bt_last_error());
  reply_status(s, r, 202);
}

static void infer(bt_service *s, svc_request *r) {
  json_object *o = svc_body_json(r), *v;
  if (!o) return;
  const int e = json_object_object_get_ex(o, "epoch", &v) && json_object_is_type(v, json_type_int) ? json_object_get_int(v) : 0;
  json_object_put(o);
  if (e < 1) return svc_error(&r->reply, 400, "infer needs {\"epoch\": N}, N >= 1");
  char work[SVC_PATH], model[SVC_PATH];
  if (svc_job_path(s, r->job->id, "work", work) || bt_pipeline_path(model, sizeof model, work, "model", e))
    return svc_error(&r->reply, 500, "%s", bt_last_error());
  if (access(model, F_OK) != 0) return svc_error(&r->reply, 404, "infer: no model of epoch %d", e);
  pthread_mutex_lock(&s->mu);
  svc_job *j = r->job;
  const char *why = !j->up[SVC_TEST].complete                                   ? "the test set is not complete"
                    : j->infer == SVC_INFER_QUEUED || j->infer == SVC_INFER_RUNNING ? "an inference is queued or running"
                                                                                   : NULL;
  const double need = svc_task_estimate(j, 1);
  if (why || need > s->budget) {
    pthread_mutex_unlock(&s->mu);
    if (why) return svc_error(&r->reply, 409, "infer: %s", why);
    return svc_error(&r->reply, 422, "infer: needs about %.1f GiB, the budget is %.1f GiB", need / 1073741824.0,
                     s->budget / 1073741824.0);
  }
  j->infer = SVC_INFER_QUEUED;
  j->infer_epoch = e;
  if (j->state != SVC_QUEUED) j->queue_seq = s->next_seq++;
  pthread_cond_broadcast(&s->cv);
  const bt_status st = svc_db_save(s, j);
  pthread_mutex_unlock(&s->mu);
  if (st) return svc_error(&r->reply, 500, "%s", bt_last_error());
  reply_status(s, r, 202);
}

static void download(bt_service *s, svc_request *r, const char *name) {
  char work[SVC_PATH];
  if (svc_job_path(s, r->job->id, "work", work) || bt_pipeline_path(r->reply.file, sizeof r->reply.file, work, name, r->epoch))
    return svc_error(&r->reply, 500, "%s", bt_last_error());
  if (access(r->reply.file, F_OK) != 0) {
    r->reply.file[0] = 0;
    return svc_error(&r->reply, 404, "no %s of epoch %d (yet)", name, r->epoch);
  }
  r->reply.status = 200;
}

void svc_action(bt_service *s, svc_request *r) {
  switch (r->route) {
  case SVC_R_STATUS: return reply_status(s, r, 200);
  case SVC_R_START: return start(s, r);
  case SVC_R_ANSWER: return answer(s, r);
  case SVC_R_INFER: return infer(s, r);
  case SVC_R_LOSS: return download(s, r, "loss");
  case SVC_R_MODEL: return download(s, r, "model");
  case SVC_R_LOGITS: return download(s, r, "logits");
  case SVC_R_DELETE: {
    pthread_mutex_lock(&s->mu);
    const bt_status st = svc_job_delete(s, r->job);
    /* nobody else uses it: its keys and data go before the answer */
    const int now = !st && r->job->refs == 1 && !r->job->child;
    pthread_mutex_unlock(&s->mu);
    char dir[SVC_PATH];
    if (now && !svc_job_path(s, r->job->id, "", dir)) svc_remove_tree(dir);
    if (st) return svc_error(&r->reply, 500, "%s", bt_last_error());
    r->reply.status = 200;
    r->reply.body = json_object_new_object();
    json_object_object_add(r->reply.body, "deleted", json_object_new_string(r->job->id));
    return;
  }
  default: return svc_error(&r->reply, 404, "no such resource");
  }
}

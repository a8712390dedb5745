/* A job's status as GET /v1/jobs/{id} shows it: the record, then what the
 * training child leaves in the job's exchange directory (progress.json,
 * report.json, the model and loss files).  Timings and counts only: the
 * service holds no decrypted value to show. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "service/internal.h"

static json_object *number(double v) {
  if (v == floor(v) && fabs(v) < 9e15) return json_object_new_int64((int64_t)v);
  /* shortest form that reads back as the same option ("0.7", not 0.69999999999999996) */
  char text[32];
  for (int digits = 15; digits <= 17; digits++) {
    snprintf(text, sizeof text, "%.*g", digits, v);
    if (strtod(text, NULL) == v) break;
  }
  return json_object_new_double_s(v, text);
}

json_object *svc_status_json(const bt_service *s, const svc_job *j) {
  json_object *o = json_object_new_object();
  json_object_object_add(o, "id", json_object_new_string(j->id));
  json_object_object_add(o, "state", json_object_new_string(svc_state_name(j->state)));
  json_object_object_add(o, "queue_position", json_object_new_int(svc_queue_position(s, j)));
  json_object *up = json_object_new_object();
  for (int f = 0; f < SVC_NFILES; f++) {
    json_object *u = json_object_new_object();
    json_object_object_add(u, "received", json_object_new_int64((int64_t)j->up[f].received));
    json_object_object_add(u, "size", json_object_new_int64((int64_t)j->up[f].size));
    json_object_object_add(u, "complete", json_object_new_boolean(j->up[f].complete));
    json_object_object_add(up, svc_file_name((svc_file)f), u);
  }
  json_object_object_add(o, "uploads", up);
  json_object *opt = json_object_new_object();
  json_object_object_add(opt, "epochs", json_object_new_int(j->opt.epochs));
  json_object_object_add(opt, "lr", number(j->opt.lr));
  json_object_object_add(opt, "momentum", number(j->opt.momentum));
  json_object_object_add(opt, "seed", json_object_new_int64((int64_t)j->opt.seed));
  json_object_object_add(opt, "accumulate", json_object_new_int(j->opt.accumulate > 0 ? j->opt.accumulate : 1));
  json_object_object_add(o, "options", opt);
  json_object_object_add(o, "epochs_done", json_object_new_int(j->epochs_done));
  json_object_object_add(o, "waiting_epoch", json_object_new_int(j->state == SVC_WAITING ? j->waiting_epoch : 0));
  json_object_object_add(o, "stopped_by_client", json_object_new_boolean(j->stopped));
  json_object *inf = json_object_new_object();
  json_object_object_add(inf, "state", json_object_new_string(svc_infer_name(j->infer)));
  json_object_object_add(inf, "epoch", json_object_new_int(j->infer_epoch));
  json_object_object_add(o, "infer", inf);
  const double est = j->mem_estimate > 0 ? j->mem_estimate : svc_task_estimate(j, 0);
  json_object_object_add(o, "memory_estimate_gib", number(round(est / 1073741824.0 * 100) / 100));
  json_object_object_add(o, "error", json_object_new_string(j->error));
  return o;
}

/* A small JSON file of the child's, or NULL. */
static json_object *read_json(const bt_service *s, const char *id, const char *leaf, size_t cap) {
  char path[SVC_PATH];
  uint8_t *buf = NULL;
  size_t len = 0;
  if (svc_job_path(s, id, leaf, path) || access(path, F_OK) != 0 || bt_file_read(path, cap, &buf, &len)) {
    bt_clear_error();
    return NULL;
  }
  json_tokener *t = json_tokener_new();
  json_object *o = t ? json_tokener_parse_ex(t, (const char *)buf, (int)len) : NULL;
  if (t) json_tokener_free(t);
  bt_free(buf);
  return o;
}

static double get_num(json_object *o, const char *key) {
  json_object *v;
  return o && json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}

int svc_progress(const bt_service *s, const char *id, char *phase, size_t cap, int *epoch) {
  json_object *p = read_json(s, id, "work/progress.json", 4096), *v;
  *epoch = 0;
  snprintf(phase, cap, "%s", "");
  if (!p) return 0;
  if (json_object_object_get_ex(p, "phase", &v)) snprintf(phase, cap, "%s", json_object_get_string(v));
  *epoch = (int)get_num(p, "epoch");
  json_object_put(p);
  return 1;
}

void svc_status_add_files(const bt_service *s, const char *id, int running, json_object *o) {
  json_object *rep = read_json(s, id, "work/report.json", 16 << 20), *eps = NULL;
  json_object *epochs = json_object_new_array();
  double mean_epoch = 0;
  int n = 0;
  if (rep && json_object_object_get_ex(rep, "epochs", &eps) && json_object_is_type(eps, json_type_array)) {
    for (size_t i = 0; i < json_object_array_length(eps); i++) {
      json_object *e = json_object_array_get_idx(eps, i);
      json_object_array_add(epochs, json_object_get(e));
      mean_epoch += get_num(e, "train_s") + get_num(e, "validation_s");
      n++;
    }
  }
  if (n) mean_epoch /= n;
  json_object_object_add(o, "epochs", epochs);
  if (rep) json_object_put(rep);

  /* the files the client may fetch */
  char work[SVC_PATH], path[SVC_PATH];
  json_object *models = json_object_new_array(), *losses = json_object_new_array(), *logits = json_object_new_array();
  json_object *opt, *ep;
  int max = 0;
  if (json_object_object_get_ex(o, "options", &opt) && json_object_object_get_ex(opt, "epochs", &ep))
    max = json_object_get_int(ep);
  if (!svc_job_path(s, id, "work", work))
    for (int e = 1; e <= max; e++) {
      if (!bt_pipeline_path(path, sizeof path, work, "model", e) && access(path, F_OK) == 0)
        json_object_array_add(models, json_object_new_int(e));
      if (!bt_pipeline_path(path, sizeof path, work, "loss", e) && access(path, F_OK) == 0)
        json_object_array_add(losses, json_object_new_int(e));
      if (!bt_pipeline_path(path, sizeof path, work, "logits", e) && access(path, F_OK) == 0)
        json_object_array_add(logits, json_object_new_int(e));
    }
  json_object_object_add(o, "models", models);
  json_object_object_add(o, "losses", losses);
  json_object_object_add(o, "logits", logits);

  /* the running child's progress and an ETA: the rest of this epoch at its
   * pace so far, plus the epochs left at the mean of the finished ones */
  json_object *pr = running ? read_json(s, id, "work/progress.json", 4096) : NULL;
  if (pr) {
    json_object *p = json_object_new_object(), *v;
    const double step = get_num(pr, "step"), steps = get_num(pr, "steps"), el = get_num(pr, "elapsed_s");
    const int epoch = (int)get_num(pr, "epoch");
    json_object_object_add(p, "phase",
                           json_object_new_string(json_object_object_get_ex(pr, "phase", &v) ? json_object_get_string(v) : ""));
    json_object_object_add(p, "epoch", json_object_new_int(epoch));
    json_object_object_add(p, "step", json_object_new_int((int)step));
    json_object_object_add(p, "steps", json_object_new_int((int)steps));
    json_object_object_add(p, "elapsed_s", number(round(el * 10) / 10));
    double eta = -1;
    if (step > 0 && steps >= step && n) {
      const double per_step = mean_epoch / steps;
      eta = per_step * (steps - step) + mean_epoch * (max > epoch ? max - epoch : 0);
    } else if (n) {
      eta = mean_epoch * (max - epoch + 1 > 0 ? max - epoch + 1 : 0);
    } else if (step > 0 && steps >= step) {
      /* the first epoch: its pace so far */
      const double per_step = el / step;
      eta = per_step * (steps - step) + per_step * steps * (max > epoch ? max - epoch : 0);
    }
    json_object_object_add(p, "eta_s", number(eta >= 0 ? round(eta) : -1));
    json_object_object_add(o, "progress", p);
    json_object_put(pr);
  }
}

/* The client's step of early stopping over HTTP, and which model to keep.
 * The pipeline's client step (bt_client_decide_dir) does the deciding in a
 * local exchange directory, with the client's own record bounding what is
 * decrypted; this file moves the loss from the server into that directory
 * and the one-bit answer back. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "remote/internal.h"

/* The answer the record says was given to epoch e (decided already),
 * written to res->answer_path unless the file there says the same. */
static bt_status recorded_answer(bt_client *c, const bt_decisions *d, int e, bt_decide_result *res) {
  const bt_early_stop *es = &d->es;
  /* every decided epoch before the last went on; the last went on unless it
   * closed the run (a stop, or the agreed epochs reached) */
  const int go_on = e < es->epochs || !(es->stopped || es->epochs >= es->max_epochs);
  res->answer = (bt_answer){.tag = *bt_client_tag(c), .epoch = e, .go_on = go_on};
  res->rewritten = 1;
  res->loss = d->loss[e - 1];
  if (access(res->answer_path, F_OK) == 0) {
    bt_answer a;
    if (bt_pipeline_load_answer(res->answer_path, bt_client_params(c), bt_client_tag(c), &a) == BT_OK &&
        a.epoch == e && a.go_on == go_on)
      return BT_OK;
    bt_clear_error(); /* damaged or another answer: the record's is written over it */
  }
  return bt_pipeline_save_answer(res->answer_path, bt_client_params(c), &res->answer);
}

bt_status bt_remote_decide(bt_remote *r, bt_client *c, const char *workdir, const char *record, bt_decisions *d,
                           bt_decide_result *res, bt_remote_info *s) {
  memset(res, 0, sizeof *res);
  res->loss = NAN;
  if (s) memset(s, 0, sizeof *s);
  bt_remote_info info;
  bt_status st = bt_remote_status(r, &info, NULL);
  if (st) return st;
  const bt_early_stop *es = &d->es;
  if (info.state == BT_REMOTE_DONE && !es->stopped && es->epochs + 1 == info.epochs_done &&
      es->epochs < es->max_epochs && bt_remote_epochs_has(&info.losses, info.epochs_done)) {
    /* the last agreed epoch: the server ends without waiting for an answer,
     * but its loss is the client's to decide, so that the record names the
     * best epoch over all of them; nothing is posted */
    const int e = info.epochs_done;
    if (s) *s = info;
    else bt_remote_info_clear(&info);
    char loss[4096];
    if ((st = bt_pipeline_path(loss, sizeof loss, workdir, "loss", e))) return st;
    if ((st = bt_remote_download(r, "loss", e, loss))) return st;
    st = bt_client_decide_dir(c, workdir, record, d, res);
    if (!st && !(res->decided && res->epoch == e))
      return bt_fail(BT_E_IO, "the loss of epoch %d was downloaded to %s but not decided", e, loss);
    return st;
  }
  if (info.state != BT_REMOTE_WAITING || info.waiting_epoch < 1) {
    if (s) *s = info;
    else bt_remote_info_clear(&info);
    return BT_OK; /* nothing to answer */
  }
  const int e = info.waiting_epoch;
  bt_remote_info_clear(&info);
  res->epoch = e;
  if ((st = bt_pipeline_path(res->answer_path, sizeof res->answer_path, workdir, "answer", e))) return st;
  bt_status decided_st = BT_OK;
  char decided_msg[512] = "";
  if (es->epochs >= e) {
    /* decided before: the POST failed, or the server lost the answer (a
     * restart); the record's answer goes again, nothing is decrypted */
    if ((st = recorded_answer(c, d, e, res))) return st;
  } else if (es->epochs == e - 1 && (es->stopped || es->epochs >= es->max_epochs)) {
    /* beyond what the client agreed to: stop, without decrypting */
    res->answer = (bt_answer){.tag = *bt_client_tag(c), .epoch = e, .go_on = 0};
    if ((st = bt_pipeline_save_answer(res->answer_path, bt_client_params(c), &res->answer))) return st;
  } else if (es->epochs == e - 1) {
    char loss[4096];
    if ((st = bt_pipeline_path(loss, sizeof loss, workdir, "loss", e))) return st;
    if ((st = bt_remote_download(r, "loss", e, loss))) return st;
    decided_st = bt_client_decide_dir(c, workdir, record, d, res);
    /* a loss the client refused is recorded and answered stop: that answer
     * goes to the server, then the call fails with the reason */
    if (decided_st && !(res->decided && res->answer.epoch == e)) return decided_st;
    if (decided_st) snprintf(decided_msg, sizeof decided_msg, "%s", bt_last_error());
    if (!decided_st && !(res->decided && res->answer.epoch == e))
      return bt_fail(BT_E_IO, "the loss of epoch %d was downloaded to %s but not decided", e, loss);
  } else {
    return bt_fail(BT_E_ARG,
                   "the server waits for the answer to epoch %d, but the record %s has decided %d epoch%s: nothing "
                   "decrypted (the record of another run?)",
                   e, record, es->epochs, es->epochs == 1 ? "" : "s");
  }
  if ((st = bt_remote_answer(r, e, res->answer_path, s))) {
    char why[512];
    snprintf(why, sizeof why, "%s", bt_last_error());
    return bt_fail(st, "%s (the answer stays in %s; the next decide posts it again)", why, res->answer_path);
  }
  if (decided_st) return bt_fail(decided_st, "%s", decided_msg);
  return BT_OK;
}

/* The key set a record names, for a caller without the keys. */
static bt_status record_tag(const char *record, bt_job_tag *tag) {
  memset(tag, 0, sizeof *tag);
  uint8_t *buf = NULL;
  size_t len = 0;
  bt_status st = bt_file_read(record, 16 << 20, &buf, &len);
  if (st) return st;
  json_object *o = rm_parse_object((const char *)buf, len), *k;
  bt_free_secret(buf, len); /* it lists the released losses */
  size_t got = 0;
  if (!o || !json_object_object_get_ex(o, "keyset", &k) || !json_object_is_type(k, json_type_string) ||
      sodium_hex2bin(tag->keyset, sizeof tag->keyset, json_object_get_string(k),
                     (size_t)json_object_get_string_len(k), NULL, &got, NULL) != 0 ||
      got != sizeof tag->keyset)
    st = bt_fail(BT_E_FORMAT, "%s: not a decisions record", record);
  if (o) json_object_put(o);
  return st;
}

bt_status bt_remote_best_epoch(const char *record, const bt_job_tag *tag, const bt_remote_info *s, int *epoch,
                               int *from_record) {
  *epoch = 0;
  if (from_record) *from_record = 0;
  if (record && access(record, F_OK) == 0) {
    bt_job_tag t;
    bt_status st = BT_OK;
    if (tag) t = *tag;
    else st = record_tag(record, &t);
    bt_decisions d;
    if (!st) st = bt_decisions_load(record, &t, &d);
    if (st) return st;
    const int best = d.es.best_epoch;
    bt_decisions_clear(&d);
    if (best >= 0) {
      *epoch = best + 1;
      if (from_record) *from_record = 1;
      return BT_OK;
    }
  }
  for (int i = 0; s && i < s->models.n; i++)
    if (s->models.e[i] > *epoch) *epoch = s->models.e[i];
  if (*epoch) return BT_OK;
  return bt_fail(BT_E_ARG, "no model to fetch: %s%s and the server lists no model yet", record ? record : "no record",
                 record && access(record, F_OK) == 0 ? " has no decided epoch" : record ? " does not exist" : "");
}

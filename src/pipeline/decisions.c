/* The client's record of its early-stopping decisions and the file
 * protocol's client step (include/blindtuner/pipeline.h, docs/SECURITY.md):
 * the record, not the server's directory, bounds what the client decrypts.
 * The record is a small JSON file kept by the client, mode 0600. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sodium.h>

#include "pipeline/internal.h"

#define KIND "blindtuner client decisions"

bt_status bt_decisions_init(bt_decisions *d, int patience, int max_epochs) {
  memset(d, 0, sizeof *d);
  if (max_epochs < 1 || max_epochs > BT_MAX_DECISIONS)
    return bt_fail(BT_E_ARG, "decisions: %d agreed epochs (1 to %d)", max_epochs, BT_MAX_DECISIONS);
  bt_early_stop_init(&d->es, patience, max_epochs);
  if (!(d->loss = calloc((size_t)max_epochs, sizeof *d->loss))) return bt_fail(BT_E_NOMEM, "out of memory");
  return BT_OK;
}

void bt_decisions_clear(bt_decisions *d) {
  if (d->loss) sodium_memzero(d->loss, (size_t)d->es.max_epochs * sizeof *d->loss);
  free(d->loss);
  memset(d, 0, sizeof *d);
}

static int get_int(json_object *o, const char *key, int lo, int hi, int *v) {
  json_object *j;
  if (!json_object_object_get_ex(o, key, &j) || !json_object_is_type(j, json_type_int)) return -1;
  const int64_t x = json_object_get_int64(j);
  if (x < lo || x > hi) return -1;
  *v = (int)x;
  return 0;
}

/* a finite number, or null (no value) */
static int get_num(json_object *j, double none, double *v) {
  if (!j || json_object_is_type(j, json_type_null)) {
    *v = none;
    return 0;
  }
  if (!json_object_is_type(j, json_type_double) && !json_object_is_type(j, json_type_int)) return -1;
  *v = json_object_get_double(j);
  return isfinite(*v) ? 0 : -1;
}

static void keyset_hex(const bt_job_tag *tag, char hex[2 * BT_KEYSET_ID_BYTES + 1]) {
  sodium_bin2hex(hex, 2 * BT_KEYSET_ID_BYTES + 1, tag->keyset, BT_KEYSET_ID_BYTES);
}

bt_status bt_decisions_load(const char *path, const bt_job_tag *tag, bt_decisions *d) {
  memset(d, 0, sizeof *d);
  json_object *o = bt_pl_json_read(path), *j = NULL, *arr = NULL;
  if (!o) {
    char why[448]; /* copied first: bt_fail formats into the buffer bt_last_error points at */
    snprintf(why, sizeof why, "%s", bt_last_error());
    return bt_fail(BT_E_FORMAT, "not a readable decisions file: %s", why);
  }
  char hex[2 * BT_KEYSET_ID_BYTES + 1];
  keyset_hex(tag, hex);
  bt_early_stop es = {0};
  int max = 0;
  bt_status st = BT_OK;
  if (!json_object_object_get_ex(o, "kind", &j) || strcmp(json_object_get_string(j), KIND) != 0)
    st = bt_fail(BT_E_FORMAT, "%s is not a decisions file", path);
  else if (!json_object_object_get_ex(o, "keyset", &j) || strcmp(json_object_get_string(j), hex) != 0)
    st = bt_fail(BT_E_PARAMS, "%s records the decisions of another key set", path);
  else if (get_int(o, "max_epochs", 1, BT_MAX_DECISIONS, &max) || get_int(o, "patience", 1, 1 << 20, &es.patience) ||
           get_int(o, "epochs", 0, max, &es.epochs) || get_int(o, "best_epoch", -1, es.epochs - 1, &es.best_epoch) ||
           get_int(o, "since", 0, es.epochs, &es.since) || get_int(o, "stopped", 0, 1, &es.stopped) ||
           !json_object_object_get_ex(o, "best", &j) || get_num(j, HUGE_VAL, &es.best) ||
           !json_object_object_get_ex(o, "losses", &arr) || !json_object_is_type(arr, json_type_array) ||
           json_object_array_length(arr) != (size_t)es.epochs)
    st = bt_fail(BT_E_FORMAT, "%s: a damaged decisions file", path);
  if (!st) st = bt_decisions_init(d, es.patience, max);
  for (int e = 0; !st && e < es.epochs; e++)
    if (get_num(json_object_array_get_idx(arr, (size_t)e), NAN, &d->loss[e])) /* null: a refused loss */
      st = bt_fail(BT_E_FORMAT, "%s: a damaged decisions file", path);
  if (!st) {
    es.max_epochs = max;
    d->es = es;
  }
  json_object_put(o);
  if (st) bt_decisions_clear(d);
  return st;
}

bt_status bt_decisions_open(const char *path, const bt_job_tag *tag, int patience, int max_epochs, bt_decisions *d) {
  memset(d, 0, sizeof *d);
  if (access(path, F_OK) != 0) {
    if (!max_epochs)
      return bt_fail(BT_E_ARG, "no decisions record %s: the agreed number of epochs is needed for the first decision",
                     path);
    return bt_decisions_init(d, patience ? patience : 3, max_epochs);
  }
  bt_status st = bt_decisions_load(path, tag, d);
  if (!st && max_epochs && max_epochs != d->es.max_epochs)
    st = bt_fail(BT_E_ARG, "%s records %d agreed epochs, not %d; a new run needs a new record", path,
                 d->es.max_epochs, max_epochs);
  if (!st && patience && patience != d->es.patience)
    st = bt_fail(BT_E_ARG, "%s records patience %d, not %d; a new run needs a new record", path, d->es.patience,
                 patience);
  if (st) bt_decisions_clear(d);
  return st;
}

bt_status bt_decisions_save(const char *path, const bt_job_tag *tag, const bt_decisions *d) {
  const bt_early_stop *es = &d->es;
  char hex[2 * BT_KEYSET_ID_BYTES + 1];
  keyset_hex(tag, hex);
  json_object *o = json_object_new_object(), *arr = json_object_new_array();
  json_object_object_add(o, "kind", json_object_new_string(KIND));
  json_object_object_add(o, "keyset", json_object_new_string(hex));
  const struct {
    const char *key;
    int v;
  } ints[] = {{"max_epochs", es->max_epochs}, {"patience", es->patience}, {"epochs", es->epochs},
              {"best_epoch", es->best_epoch},  {"since", es->since},       {"stopped", es->stopped}};
  for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
    json_object_object_add(o, ints[i].key, json_object_new_int(ints[i].v));
  json_object_object_add(o, "best", isfinite(es->best) ? json_object_new_double(es->best) : NULL);
  for (int e = 0; e < es->epochs; e++)
    json_object_array_add(arr, isfinite(d->loss[e]) ? json_object_new_double(d->loss[e]) : NULL);
  json_object_object_add(o, "losses", arr);
  const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
  const bt_status st = bt_io_write_atomic(path, text, strlen(text), 1);
  json_object_put(o);
  return st;
}

/* Under the directory's lock, the record on disk must still be the one *d
 * was read from: a decide that ran in between (and decrypted the epoch this
 * one is about to) is caught here rather than repeated. */
static bt_status record_unchanged(const char *record, const bt_job_tag *tag, const bt_decisions *d) {
  if (access(record, F_OK) != 0) {
    if (d->es.epochs == 0) return BT_OK;
    return bt_fail(BT_E_IO, "%s disappeared while deciding; nothing decided", record);
  }
  bt_decisions now;
  bt_status st = bt_decisions_load(record, tag, &now);
  if (st) return st;
  if (now.es.epochs != d->es.epochs || now.es.stopped != d->es.stopped || now.es.max_epochs != d->es.max_epochs)
    st = bt_fail(BT_E_IO, "%s changed since it was read (another decide ran); nothing decided: run decide again",
                 record);
  bt_decisions_clear(&now);
  return st;
}

static bt_status decide_locked(bt_client *c, const char *dir, const char *record, bt_decisions *d,
                               bt_decide_result *out);

bt_status bt_client_decide_dir(bt_client *c, const char *dir, const char *record, bt_decisions *d,
                               bt_decide_result *out) {
  /* one decide (or train) at a time in the directory (bt_dir_lock): a train
   * holds it for a moment after writing an epoch's files, so this waits up to
   * a minute; on a file system that cannot lock, unprotected as before */
  memset(out, 0, sizeof *out);
  out->loss = NAN;
  int lock;
  bt_status st = bt_dir_lock(dir, 60, &lock);
  if (st == BT_E_UNSUPPORTED) st = BT_OK;
  if (!st) st = record_unchanged(record, bt_client_tag(c), d);
  if (!st) st = decide_locked(c, dir, record, d, out);
  bt_dir_unlock(lock);
  return st;
}

static bt_status decide_locked(bt_client *c, const char *dir, const char *record, bt_decisions *d,
                               bt_decide_result *out) {
  const bt_job_tag *tag = bt_client_tag(c);
  const bt_ckks_params *p = bt_client_params(c);
  bt_early_stop *es = &d->es;
  const int e = es->epochs + 1; /* the epoch to decide */
  const int closed = es->stopped || es->epochs >= es->max_epochs;
  char path[4096];
  *out = (bt_decide_result){.epoch = e, .loss = NAN};
  bt_status st = bt_pipeline_path(path, sizeof path, dir, "loss", e);
  if (st) return st;
  if (access(path, F_OK) != 0) {
    /* nothing new to decrypt: the record speaks, and a lost answer is re-written from it */
    if (!es->epochs) return bt_fail(BT_E_IO, "no validation loss in %s (expected %s)", dir, path);
    out->answer = (bt_answer){.tag = *tag, .epoch = es->epochs, .go_on = !closed};
    if ((st = bt_pipeline_path(out->answer_path, sizeof out->answer_path, dir, "answer", es->epochs))) return st;
    if (access(out->answer_path, F_OK) == 0) return BT_OK;
    out->rewritten = 1;
    return bt_pipeline_save_answer(out->answer_path, p, &out->answer);
  }
  if (closed)
    return bt_fail(BT_E_ARG, "%s is %s: not decrypted", path,
                   es->epochs >= es->max_epochs ? "beyond the epochs the client agreed to" : "after the client's stop");
  bt_enc_epoch le = {0};
  st = bt_pipeline_load_epoch(path, BT_IO_LOSS, p, tag, &le);
  if (st == BT_E_IO) return st; /* cannot read it (yet): nothing decided */
  if (st) { /* a malformed loss is refused like a forged one: the answer is stop */
    es->epochs++, es->stopped = 1;
    out->answer = (bt_answer){.tag = *tag, .epoch = e, .go_on = 0};
  } else {
    st = bt_client_decide(c, es, &le, &out->loss, &out->answer);
  }
  bt_ciphertext_free(le.ct);
  if (es->epochs != e) return st; /* refused before anything was decided (a replay, a skipped epoch) */
  /* decided (a refusal counts as stop): recorded before it is answered */
  char msg[512];
  if (st) snprintf(msg, sizeof msg, "%s", bt_last_error());
  d->loss[e - 1] = st ? NAN : out->loss;
  out->decided = 1;
  bt_status sr = bt_decisions_save(record, tag, d);
  if (!sr) sr = bt_pipeline_path(out->answer_path, sizeof out->answer_path, dir, "answer", e);
  if (!sr) sr = bt_pipeline_save_answer(out->answer_path, p, &out->answer);
  if (sr) return sr;
  if (st) return bt_fail(st, "%s; answered stop -> %s", msg, out->answer_path);
  return BT_OK;
}

/* A job on the service: the handle (server, id, token), its job file, and
 * the calls that are one request each (create, status, start, answer,
 * infer, delete) plus downloads.  docs/API.md is the contract. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "remote/internal.h"

/* ---- the handle ---- */
static int valid_word(const char *s) {
  const size_t n = s ? strlen(s) : 0;
  return n >= 1 && n <= BT_REMOTE_ID_MAX &&
         strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~-") == n;
}

static bt_status check_url(const char *url) {
  if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)))
    return bt_fail(BT_E_ARG, "the server's URL must start with http:// or https://");
  const char *host = url + (url[4] == 's' ? 8 : 7);
  if (!*host || *host == '/') return bt_fail(BT_E_ARG, "the server's URL names no host");
  for (const char *p = url; *p; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '?' || *p == '#')
      return bt_fail(BT_E_ARG, "the server's URL has a space, a control character, a query or a fragment");
  if (strlen(url) > 2048) return bt_fail(BT_E_ARG, "the server's URL is too long");
  return BT_OK;
}

static bt_status new_handle(const char *url, bt_remote **out) {
  *out = NULL;
  bt_status st = check_url(url);
  if (!st) st = rm_global_init();
  if (st) return st;
  bt_remote *r = calloc(1, sizeof *r);
  if (!r || !(r->server = strdup(url))) {
    free(r);
    return bt_fail(BT_E_NOMEM, "out of memory");
  }
  size_t n = strlen(r->server);
  while (n > 0 && r->server[n - 1] == '/') r->server[--n] = '\0'; /* paths start with '/' */
  r->chunk = BT_REMOTE_CHUNK_DEFAULT;
  *out = r;
  return BT_OK;
}

void bt_remote_free(bt_remote *r) {
  if (!r) return;
  if (r->h) curl_easy_cleanup(r->h);
  sodium_memzero(r->token, sizeof r->token);
  free(r->server);
  free(r->ca);
  free(r);
}

bt_status bt_remote_set_ca(bt_remote *r, const char *ca_file) {
  char *c = NULL;
  if (ca_file) {
    if (access(ca_file, R_OK) != 0) return bt_fail(BT_E_IO, "%s: cannot read the CA file: %s", ca_file, strerror(errno));
    /* absolute: the job file names it for commands run from elsewhere */
    if (!(c = realpath(ca_file, NULL)))
      return bt_fail(BT_E_IO, "%s: cannot resolve the CA file's path: %s", ca_file, strerror(errno));
  }
  free(r->ca);
  r->ca = c;
  return BT_OK;
}

bt_status bt_remote_set_chunk(bt_remote *r, size_t bytes) {
  if (bytes && bytes < 4096) return bt_fail(BT_E_ARG, "an upload chunk of %zu bytes: at least 4096", bytes);
  r->chunk = bytes ? bytes : BT_REMOTE_CHUNK_DEFAULT;
  return BT_OK;
}

const char *bt_remote_id(const bt_remote *r) { return r->id; }
const char *bt_remote_server(const bt_remote *r) { return r->server; }
const char *bt_remote_ca(const bt_remote *r) { return r->ca; }
long bt_remote_http_status(const bt_remote *r) { return r->http; }

bt_status bt_remote_open(const char *url, const char *id, const char *token, bt_remote **out) {
  *out = NULL;
  if (!valid_word(id)) return bt_fail(BT_E_ARG, "a job id is 1 to %d characters of [A-Za-z0-9._~-]", BT_REMOTE_ID_MAX);
  if (!valid_word(token))
    return bt_fail(BT_E_ARG, "a job token is 1 to %d characters of [A-Za-z0-9._~-]", BT_REMOTE_ID_MAX);
  bt_remote *r;
  bt_status st = new_handle(url, &r);
  if (st) return st;
  snprintf(r->id, sizeof r->id, "%s", id);
  snprintf(r->token, sizeof r->token, "%s", token);
  *out = r;
  return BT_OK;
}

/* Overwrites a json-c string's bytes (the token) before the object is freed. */
static void wipe_json_string(json_object *s) {
  if (s && json_object_is_type(s, json_type_string))
    sodium_memzero((char *)json_object_get_string(s), (size_t)json_object_get_string_len(s));
}

bt_status bt_remote_create(const char *url, const char *ca_file, bt_remote **out) {
  *out = NULL;
  bt_remote *r;
  bt_status st = new_handle(url, &r);
  if (!st && ca_file) st = bt_remote_set_ca(r, ca_file);
  json_object *o = NULL, *id = NULL, *tok = NULL;
  if (!st) {
    /* POST /v1/jobs carries no token */
    const rm_body b = {.kind = RM_MEMORY, .content_type = "application/json", .data = "{}", .len = 2};
    const rm_opts opts = {.timeout_s = 120};
    rm_reply rep;
    rm_reply_init(&rep);
    st = rm_send(r, "POST", "/v1/jobs", &b, &opts, &rep);
    if (st) {
      char why[512];
      snprintf(why, sizeof why, "%s", bt_last_error());
      st = bt_fail(st, "create a job: %s", why);
    } else if (rep.status == 404 || rep.status == 405) {
      char what[300];
      snprintf(what, sizeof what, "create a job: is %s a BlindTuner service? it says", r->server);
      st = rm_http_fail(&rep, what);
    } else if (rep.status != 201 && rep.status != 200) {
      st = rm_http_fail(&rep, "create a job");
    } else if (!(o = rm_parse_object(rep.body, rep.len))) {
      st = bt_fail(BT_E_FORMAT, "create a job: the server's answer is not a JSON object");
    }
    if (rep.body) sodium_memzero(rep.body, rep.len); /* it held the token */
    rm_reply_free(&rep);
  }
  if (!st && (!json_object_object_get_ex(o, "id", &id) || !json_object_object_get_ex(o, "token", &tok) ||
              !json_object_is_type(id, json_type_string) || !json_object_is_type(tok, json_type_string) ||
              !valid_word(json_object_get_string(id)) || !valid_word(json_object_get_string(tok))))
    st = bt_fail(BT_E_FORMAT, "create a job: the server's answer has no valid id and token");
  if (!st) {
    snprintf(r->id, sizeof r->id, "%s", json_object_get_string(id));
    snprintf(r->token, sizeof r->token, "%s", json_object_get_string(tok));
  }
  wipe_json_string(tok);
  if (o) json_object_put(o);
  if (st) {
    bt_remote_free(r);
    return st;
  }
  *out = r;
  return BT_OK;
}

/* ---- the job file ---- */
#define JOB_FILE_MAX (64 << 10)

bt_status bt_remote_save(const bt_remote *r, const char *path) {
  /* the strings are quoted by json-c (the URL and the CA path may hold any
   * character); the id and token are [A-Za-z0-9._~-] and go in as they are,
   * so that the text with the token is in our buffer only, wiped after */
  json_object *srv = json_object_new_string(r->server), *ca = r->ca ? json_object_new_string(r->ca) : NULL;
  if (!srv || (r->ca && !ca)) {
    if (srv) json_object_put(srv);
    if (ca) json_object_put(ca);
    return bt_fail(BT_E_NOMEM, "out of memory");
  }
  const int flags = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
  const char *qs = json_object_to_json_string_ext(srv, flags);
  const char *qc = ca ? json_object_to_json_string_ext(ca, flags) : NULL;
  const size_t cap = strlen(qs) + (qc ? strlen(qc) : 0) + 2 * BT_REMOTE_ID_MAX + 128;
  char *text = bt_alloc_locked(cap);
  bt_status st = BT_OK;
  if (!text) {
    st = bt_fail(BT_E_NOMEM, "out of memory");
  } else {
    const int n = snprintf(text, cap, "{\n  \"server\": %s,\n  \"id\": \"%s\",\n  \"token\": \"%s\"%s%s\n}\n", qs, r->id,
                           r->token, qc ? ",\n  \"ca\": " : "", qc ? qc : "");
    if (n < 0 || (size_t)n >= cap) st = bt_fail(BT_E_ARG, "%s: the job is too long to write", path);
    else st = bt_file_write_atomic(path, text, (size_t)n, 1); /* 0600: the token is a password */
    bt_free_locked(text);
  }
  json_object_put(srv);
  if (ca) json_object_put(ca);
  return st;
}

static const char *get_str(json_object *o, const char *key) {
  json_object *v;
  return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                                                            : NULL;
}

bt_status bt_remote_load(const char *path, bt_remote **out) {
  *out = NULL;
  uint8_t *buf = NULL;
  size_t len = 0;
  bt_status st = bt_file_read(path, JOB_FILE_MAX, &buf, &len);
  if (st) return st;
  json_object *o = rm_parse_object((const char *)buf, len), *tok = NULL;
  bt_free_secret(buf, len);
  if (!o) return bt_fail(BT_E_FORMAT, "%s: not a job file (a JSON object with server, id and token)", path);
  const char *server = get_str(o, "server"), *id = get_str(o, "id"), *token = get_str(o, "token"), *ca = NULL;
  json_object *cav;
  json_object_object_get_ex(o, "token", &tok);
  if (json_object_object_get_ex(o, "ca", &cav) && !json_object_is_type(cav, json_type_null) &&
      !(ca = get_str(o, "ca")))
    server = NULL; /* a "ca" that is not a string: damaged */
  if (!server || !id || !token) {
    st = bt_fail(BT_E_FORMAT, "%s: a job file needs the strings server, id and token", path);
  } else {
    st = bt_remote_open(server, id, token, out);
    if (!st && ca) st = bt_remote_set_ca(*out, ca);
    if (st) {
      char why[512];
      snprintf(why, sizeof why, "%s", bt_last_error());
      st = bt_fail(st, "%s: %s", path, why);
      bt_remote_free(*out);
      *out = NULL;
    }
  }
  wipe_json_string(tok);
  json_object_put(o);
  return st;
}

/* ---- status ---- */
static const char *const state_names[] = {"unknown", "created", "queued", "training", "waiting", "done", "failed"};
static const char *const file_names[] = {"eval", "train", "val", "test"};

const char *bt_remote_state_name(bt_remote_state s) {
  return (unsigned)s < sizeof state_names / sizeof *state_names ? state_names[s] : "unknown";
}

const char *bt_remote_file_name(int i) { return i >= 0 && i < 4 ? file_names[i] : NULL; }

int bt_remote_epochs_has(const bt_remote_epochs *l, int e) {
  for (int i = 0; i < l->n; i++)
    if (l->e[i] == e) return 1;
  return 0;
}

void bt_remote_info_clear(bt_remote_info *s) {
  free(s->models.e);
  free(s->losses.e);
  free(s->logits.e);
  memset(s, 0, sizeof *s);
}

static double num(json_object *o, const char *key, double none) {
  json_object *v;
  if (!o || !json_object_object_get_ex(o, key, &v)) return none;
  if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double) &&
      !json_object_is_type(v, json_type_boolean))
    return none;
  return json_object_get_double(v);
}

static int inum(json_object *o, const char *key) {
  const double x = num(o, key, 0);
  return x >= -2147483647.0 && x <= 2147483647.0 ? (int)x : 0;
}

static void str(json_object *o, const char *key, char *out, size_t cap) {
  const char *s = o ? get_str(o, key) : NULL;
  rm_clean(out, cap, s ? s : "");
}

static bt_status epochs(json_object *o, const char *key, bt_remote_epochs *l) {
  json_object *a;
  l->n = 0;
  l->e = NULL;
  if (!json_object_object_get_ex(o, key, &a) || !json_object_is_type(a, json_type_array)) return BT_OK;
  const size_t n = json_object_array_length(a);
  if (n > BT_MAX_DECISIONS) return bt_fail(BT_E_FORMAT, "status: %zu %s listed", n, key);
  if (!n) return BT_OK;
  if (!(l->e = malloc(n * sizeof *l->e))) return bt_fail(BT_E_NOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    json_object *v = json_object_array_get_idx(a, i);
    const int64_t e = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : 0;
    if (e >= 1 && e <= BT_MAX_DECISIONS) l->e[l->n++] = (int)e;
  }
  return BT_OK;
}

bt_status bt_remote_parse_status(const char *json, size_t len, bt_remote_info *s) {
  memset(s, 0, sizeof *s);
  json_object *o = rm_parse_object(json, len), *v;
  if (!o) return bt_fail(BT_E_FORMAT, "status: the server's answer is not a JSON object");
  str(o, "id", s->id, sizeof s->id);
  str(o, "state", s->state_name, sizeof s->state_name);
  s->state = BT_REMOTE_UNKNOWN;
  for (int i = 1; i < (int)(sizeof state_names / sizeof *state_names); i++)
    if (!strcmp(s->state_name, state_names[i])) s->state = (bt_remote_state)i;
  s->queue_position = inum(o, "queue_position");
  if (json_object_object_get_ex(o, "uploads", &v) && json_object_is_type(v, json_type_object))
    for (int i = 0; i < 4; i++) {
      json_object *u;
      if (!json_object_object_get_ex(v, file_names[i], &u)) continue;
      const double rec = num(u, "received", 0), size = num(u, "size", 0);
      s->uploads[i].received = rec > 0 && rec < 1.8e19 ? (uint64_t)rec : 0;
      s->uploads[i].size = size > 0 && size < 1.8e19 ? (uint64_t)size : 0;
      s->uploads[i].complete = num(u, "complete", 0) != 0;
    }
  if (json_object_object_get_ex(o, "options", &v)) {
    s->epochs = inum(v, "epochs");
    s->lr = num(v, "lr", 0);
    s->momentum = num(v, "momentum", 0);
    s->accumulate = inum(v, "accumulate");
    if (s->accumulate < 1 || s->accumulate > BT_MAX_ACCUMULATE) s->accumulate = 1; /* a server's number */
    json_object *sd;
    if (json_object_object_get_ex(v, "seed", &sd) && json_object_is_type(sd, json_type_int))
      s->seed = (uint64_t)json_object_get_int64(sd);
  }
  s->epochs_done = inum(o, "epochs_done");
  s->waiting_epoch = inum(o, "waiting_epoch");
  s->stopped_by_client = num(o, "stopped_by_client", 0) != 0;
  s->eta_s = -1;
  if (json_object_object_get_ex(o, "progress", &v) && json_object_is_type(v, json_type_object)) {
    s->has_progress = 1;
    str(v, "phase", s->phase, sizeof s->phase);
    s->progress_epoch = inum(v, "epoch");
    s->step = inum(v, "step");
    s->steps = inum(v, "steps");
    s->elapsed_s = num(v, "elapsed_s", 0);
    s->eta_s = num(v, "eta_s", -1);
  }
  if (json_object_object_get_ex(o, "infer", &v)) {
    str(v, "state", s->infer_state, sizeof s->infer_state);
    s->infer_epoch = inum(v, "epoch");
  }
  s->memory_estimate_gib = num(o, "memory_estimate_gib", 0);
  str(o, "error", s->error, sizeof s->error);
  bt_status st = epochs(o, "models", &s->models);
  if (!st) st = epochs(o, "losses", &s->losses);
  if (!st) st = epochs(o, "logits", &s->logits);
  json_object_put(o);
  if (st) bt_remote_info_clear(s);
  return st;
}

/* A status the server answered (GET, start, answer, infer) into *s and/or *json. */
static bt_status take_status(json_object *o, bt_remote_info *s, char **json) {
  const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
  if (!text) return bt_fail(BT_E_NOMEM, "out of memory");
  if (s) {
    bt_status st = bt_remote_parse_status(text, strlen(text), s);
    if (st) return st;
  }
  if (json && !(*json = strdup(text))) {
    if (s) bt_remote_info_clear(s);
    return bt_fail(BT_E_NOMEM, "out of memory");
  }
  return BT_OK;
}

bt_status bt_remote_status(bt_remote *r, bt_remote_info *s, char **json) {
  if (s) memset(s, 0, sizeof *s);
  if (json) *json = NULL;
  char path[512];
  rm_job_path(r, path, sizeof path, "");
  json_object *o;
  bt_status st = rm_json_call(r, "GET", path, NULL, 120, "status", &o);
  if (st) return st;
  st = take_status(o, s, json);
  json_object_put(o);
  return st;
}

/* A POST whose answer is the status. */
static bt_status post_status(bt_remote *r, const char *suffix, const char *body, const char *what, bt_remote_info *s) {
  if (s) memset(s, 0, sizeof *s);
  char path[512];
  rm_job_path(r, path, sizeof path, suffix);
  json_object *o = NULL;
  bt_status st = rm_json_call(r, "POST", path, body, 300, what, s ? &o : NULL);
  if (!st && o) st = take_status(o, s, NULL);
  if (o) json_object_put(o);
  return st;
}

bt_status bt_remote_start(bt_remote *r, const bt_job_options *opt, bt_remote_info *s) {
  char body[256] = "{}";
  if (opt) {
    /* the service's ranges (docs/API.md); epochs within what a client's record can hold */
    const int acc = opt->accumulate ? opt->accumulate : 1;
    if (opt->epochs < 1 || opt->epochs > BT_MAX_DECISIONS || !(opt->lr == 0 || (opt->lr >= 1e-6 && opt->lr <= 1000)) ||
        !(opt->momentum >= 0 && opt->momentum <= 0.999) || opt->seed > 2147483647u || acc < 1 ||
        acc > BT_MAX_ACCUMULATE)
      return bt_fail(BT_E_ARG,
                     "start: epochs 1 to %d, lr 0 (the large-batch rule) or in [1e-6, 1000], momentum in [0, 0.999], "
                     "seed 0 to 2^31 - 1, accumulate 1 to %d",
                     BT_MAX_DECISIONS, BT_MAX_ACCUMULATE);
    if (opt->softmax_bound != 0)
      return bt_fail(BT_E_UNSUPPORTED, "start: the service trains at the default softmax range (%d); a job that "
                     "needs another runs through `blindtuner train --softmax-range`", BT_SOFTMAX_BOUND);
    char lr[48] = "";
    if (opt->lr > 0) snprintf(lr, sizeof lr, "\"lr\": %.17g, ", opt->lr); /* none: the rule */
    snprintf(body, sizeof body, "{\"epochs\": %d, %s\"momentum\": %.17g, \"seed\": %llu, \"accumulate\": %d}",
             opt->epochs, lr, opt->momentum, (unsigned long long)opt->seed, acc);
  }
  return post_status(r, "/start", body, "start", s);
}

bt_status bt_remote_infer(bt_remote *r, int epoch, bt_remote_info *s) {
  if (epoch < 1 || epoch > BT_MAX_DECISIONS) return bt_fail(BT_E_ARG, "infer: epoch %d (1 to %d)", epoch, BT_MAX_DECISIONS);
  char body[64];
  snprintf(body, sizeof body, "{\"epoch\": %d}", epoch);
  return post_status(r, "/infer", body, "infer", s);
}

bt_status bt_remote_delete(bt_remote *r) {
  char path[512];
  rm_job_path(r, path, sizeof path, "");
  return rm_json_call(r, "DELETE", path, NULL, 300, "delete", NULL);
}

/* ---- the answer ---- */
bt_status bt_remote_answer(bt_remote *r, int epoch, const char *answer_path, bt_remote_info *s) {
  if (s) memset(s, 0, sizeof *s);
  if (epoch < 1 || epoch > BT_MAX_DECISIONS) return bt_fail(BT_E_ARG, "answer: epoch %d (1 to %d)", epoch, BT_MAX_DECISIONS);
  bt_pipeline_summary sum;
  bt_status st = bt_pipeline_summarize(answer_path, &sum);
  if (st) return st;
  if (sum.info.kind != BT_IO_ANSWER) return bt_fail(BT_E_FORMAT, "%s: not an answer", answer_path);
  if (sum.epoch != epoch)
    return bt_fail(BT_E_ARG, "%s answers epoch %d, not %d", answer_path, sum.epoch, epoch);
  uint8_t *buf = NULL;
  size_t len = 0;
  if ((st = bt_file_read(answer_path, 1 << 20, &buf, &len))) return st;
  char path[512], suffix[64], what[64];
  snprintf(suffix, sizeof suffix, "/answer/%d", epoch);
  snprintf(what, sizeof what, "answer to epoch %d", epoch);
  rm_job_path(r, path, sizeof path, suffix);
  const rm_body b = {.kind = RM_MEMORY, .content_type = "application/octet-stream", .data = buf, .len = len};
  const rm_opts o = {.timeout_s = 300, .auth = 1};
  rm_reply rep;
  rm_reply_init(&rep);
  st = rm_send(r, "POST", path, &b, &o, &rep);
  bt_free(buf);
  json_object *obj = NULL;
  if (st) {
    char why[512];
    snprintf(why, sizeof why, "%s", bt_last_error());
    st = bt_fail(st, "%s: %s", what, why);
  } else if (rep.status == 409) {
    /* not waiting for this epoch: fine if it moved past it (an answer that
     * arrived before, whose reply was lost), else the server's refusal */
    bt_status f = rm_http_fail(&rep, what);
    char why[512];
    snprintf(why, sizeof why, "%s", bt_last_error());
    bt_remote_info now; /* bt_remote_status zeroes it first, even when it fails */
    if (bt_remote_status(r, &now, NULL) == BT_OK && now.epochs_done >= epoch && now.state != BT_REMOTE_FAILED &&
        !(now.state == BT_REMOTE_WAITING && now.waiting_epoch == epoch)) {
      st = BT_OK;
      if (s) *s = now;
      else bt_remote_info_clear(&now);
    } else {
      bt_remote_info_clear(&now);
      st = bt_fail(f, "%s", why);
    }
  } else if (rep.status < 200 || rep.status > 299) {
    st = rm_http_fail(&rep, what);
  } else if (s) {
    if (!(obj = rm_parse_object(rep.body, rep.len)))
      st = bt_fail(BT_E_FORMAT, "%s: the server's answer is not a JSON object", what);
    else st = take_status(obj, s, NULL);
  }
  if (obj) json_object_put(obj);
  rm_reply_free(&rep);
  return st;
}

/* ---- downloads ---- */
static bt_status download_once(bt_remote *r, const char *path, const char *what, bt_io_kind kind, const char *out_path,
                               int *retry) {
  *retry = 0;
  char *tmp = NULL;
  int fd = -1;
  bt_status st = bt_file_create_temp(out_path, 0, &tmp, &fd);
  if (st) return st;
  const rm_opts o = {.low_speed = 1, .auth = 1};
  rm_reply rep;
  rm_reply_init(&rep);
  rep.fd = fd;
  st = rm_send(r, "GET", path, NULL, &o, &rep);
  if (st) {
    /* the network's fault (not the disk's, not a cancel): worth another try */
    *retry = !rep.local;
    char why[512];
    snprintf(why, sizeof why, "%s", bt_last_error());
    st = bt_fail(st, "download of the %s: %s", what, why);
  } else if (rep.status != 200) {
    *retry = rm_transient(rep.status);
    st = rm_http_fail(&rep, what);
  } else {
    /* the temporary is open for writing only: read its header through another descriptor */
    bt_io_info info;
    int rfd = -1;
    uint64_t have = 0;
    st = bt_file_open_read(tmp, &rfd, &have);
    if (!st && have != rep.written)
      st = bt_fail(BT_E_IO, "%s: %llu bytes came, %llu are in the file", what, (unsigned long long)rep.written,
                   (unsigned long long)have);
    if (!st) st = rm_file_header(rfd, have, what, &info);
    if (rfd >= 0) close(rfd);
    if (!st && info.kind != kind)
      st = bt_fail(BT_E_FORMAT, "%s: the server sent %s, not %s", what, bt_pipeline_kind_name(info.kind),
                   bt_pipeline_kind_name(kind));
    else if (!st && info.payload_bytes + BT_IO_HEADER_BYTES != rep.written)
      st = bt_fail(BT_E_FORMAT, "%s: %llu bytes came, the container's header says %llu", what,
                   (unsigned long long)rep.written, (unsigned long long)(info.payload_bytes + BT_IO_HEADER_BYTES));
    if (!st && fsync(fd) != 0) st = bt_fail(BT_E_IO, "%s: cannot write: %s", out_path, strerror(errno));
  }
  rm_reply_free(&rep);
  if (close(fd) != 0 && !st) st = bt_fail(BT_E_IO, "%s: cannot write: %s", out_path, strerror(errno));
  if (!st) st = bt_file_commit(tmp, out_path);
  if (st) unlink(tmp);
  bt_free(tmp);
  return st;
}

bt_status bt_remote_download(bt_remote *r, const char *what, int epoch, const char *out_path) {
  const bt_io_kind kind = !strcmp(what, "model") ? BT_IO_MODEL : !strcmp(what, "loss") ? BT_IO_LOSS
                          : !strcmp(what, "logits")                                  ? BT_IO_LOGITS
                                                                                     : 0;
  if (!kind) return bt_fail(BT_E_ARG, "download: model, loss or logits, not '%s'", what);
  if (epoch < 1 || epoch > BT_MAX_DECISIONS) return bt_fail(BT_E_ARG, "download: epoch %d (1 to %d)", epoch, BT_MAX_DECISIONS);
  bt_status st = bt_io_refuse_secret(out_path, "a download");
  if (st) return st;
  char path[512], suffix[64], label[64];
  snprintf(suffix, sizeof suffix, "/%s/%d", what, epoch);
  snprintf(label, sizeof label, "%s of epoch %d", what, epoch);
  rm_job_path(r, path, sizeof path, suffix);
  for (int attempt = 0;; attempt++) {
    int retry;
    st = download_once(r, path, label, kind, out_path, &retry);
    /* a broken connection or a server restarting: again, from the start
     * (the answer is a whole container; nothing partial is kept) */
    if (!st || !retry || attempt >= 3) return st;
    rm_sleep((double)(1 << attempt));
  }
}

/* The HTTP plumbing of the service's client: one libcurl easy handle per
 * job handle (reused, so its connection stays open between requests), the
 * token in the Authorization header only, request bodies from memory or
 * streamed from a file region, answers into memory (JSON, capped) or
 * streamed to a file descriptor (downloads), the upload headers, and the
 * server's {"error": ...} turned into one line. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "remote/internal.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static CURLcode init_rc = CURLE_OK;

static void global_init(void) { init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

bt_status rm_global_init(void) {
  /* curl_global_init is not thread-safe in older libcurls: once per process */
  if (pthread_once(&init_once, global_init) != 0) return bt_fail(BT_E_IO, "cannot initialise libcurl");
  if (init_rc != CURLE_OK) return bt_fail(BT_E_IO, "cannot initialise libcurl: %s", curl_easy_strerror(init_rc));
  return BT_OK;
}

void rm_clean(char *out, size_t cap, const char *s) {
  if (!cap) return;
  size_t i = 0;
  /* the server's text goes to a terminal: no escape sequences, no second line */
  for (; s && s[i] && i + 1 < cap; i++) {
    const unsigned char ch = (unsigned char)s[i];
    out[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
  }
  out[i] = '\0';
}

int rm_transient(long http) { return http == 0 || (http >= 500 && http != 501); }

void rm_sleep(double s) {
  struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

void rm_job_path(const bt_remote *r, char *out, size_t cap, const char *suffix) {
  snprintf(out, cap, "/v1/jobs/%s%s", r->id, suffix ? suffix : "");
}

void rm_reply_init(rm_reply *rep) {
  memset(rep, 0, sizeof *rep);
  rep->fd = -1;
  rep->upload_offset = rep->upload_length = -1;
  rep->upload_complete = -1;
}

void rm_reply_free(rm_reply *rep) {
  free(rep->body);
  rep->body = NULL;
  rep->len = rep->cap = 0;
}

json_object *rm_parse_object(const char *text, size_t len) {
  if (!text || !len || len > RM_JSON_MAX) return NULL;
  json_tokener *t = json_tokener_new();
  if (!t) return NULL;
  json_object *o = json_tokener_parse_ex(t, text, (int)len);
  const int ok = o && json_tokener_get_error(t) == json_tokener_success && json_object_is_type(o, json_type_object);
  json_tokener_free(t);
  if (ok) return o;
  if (o) json_object_put(o);
  return NULL;
}

bt_status rm_http_fail(const rm_reply *rep, const char *what) {
  char msg[400] = "";
  json_object *o = rm_parse_object(rep->body, rep->len), *e;
  if (o && json_object_object_get_ex(o, "error", &e) && json_object_is_type(e, json_type_string))
    rm_clean(msg, sizeof msg, json_object_get_string(e));
  else if (rep->len && rep->body)
    rm_clean(msg, 120, rep->body); /* not the API's error format: the start of what came */
  if (o) json_object_put(o);
  const long s = rep->status;
  const bt_status code = s == 401                                     ? BT_E_KEY
                         : s == 413 || s == 422                       ? BT_E_FORMAT
                         : s == 400 || s == 404 || s == 405 || s == 409 ? BT_E_ARG
                                                                      : BT_E_IO;
  return bt_fail(code, "%s: %s (HTTP %ld)", what, msg[0] ? msg : "no message from the server", s);
}

/* ---- callbacks ---- */
typedef struct rm_call {
  const rm_body *body;
  const rm_opts *o;
  rm_reply *rep;
  uint64_t sent;
  int read_errno, read_short, cancelled;
  double last_progress;
} rm_call;

static size_t on_header(char *p, size_t size, size_t n, void *user) {
  rm_call *c = user;
  const size_t len = size * n;
  char line[256];
  const size_t k = len < sizeof line - 1 ? len : sizeof line - 1;
  memcpy(line, p, k);
  line[k] = '\0';
  if (!strncmp(line, "HTTP/", 5)) {
    /* a new answer (after a "100 Continue" the real one follows): its own headers */
    const char *sp = strchr(line, ' ');
    c->rep->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    c->rep->upload_offset = c->rep->upload_length = -1;
    c->rep->upload_complete = -1;
    return len;
  }
  static const char *const names[] = {"upload-offset:", "upload-length:", "upload-complete:"};
  for (int i = 0; i < 3; i++) {
    const size_t nl = strlen(names[i]);
    if (strncasecmp(line, names[i], nl)) continue;
    const char *v = line + nl;
    while (*v == ' ' || *v == '\t') v++;
    char *end;
    errno = 0;
    const unsigned long long x = strtoull(v, &end, 10);
    while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') end++;
    if (!isdigit((unsigned char)*v) || *end || errno || x > (unsigned long long)INT64_MAX) break; /* ignored */
    if (i == 0) c->rep->upload_offset = (int64_t)x;
    else if (i == 1) c->rep->upload_length = (int64_t)x;
    else c->rep->upload_complete = x != 0;
  }
  return len;
}

static size_t on_write(char *p, size_t size, size_t n, void *user) {
  rm_call *c = user;
  rm_reply *rep = c->rep;
  const size_t len = size * n;
  if (rep->fd >= 0 && rep->status == 200) {
    /* a download: the bytes go to the file, never into memory */
    size_t done = 0;
    while (done < len) {
      const ssize_t w = write(rep->fd, p + done, len - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        rep->write_failed = w < 0 ? errno : ENOSPC;
        return 0;
      }
      done += (size_t)w;
    }
    rep->written += len;
    return len;
  }
  if (rep->len + len > RM_JSON_MAX) {
    rep->too_large = 1;
    return 0;
  }
  if (rep->len + len + 1 > rep->cap) {
    size_t cap = rep->cap ? rep->cap : 4096;
    while (cap < rep->len + len + 1) cap *= 2;
    char *b = realloc(rep->body, cap);
    if (!b) {
      rep->too_large = 1;
      return 0;
    }
    rep->body = b, rep->cap = cap;
  }
  memcpy(rep->body + rep->len, p, len);
  rep->len += len;
  rep->body[rep->len] = '\0';
  return len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *user) {
  rm_call *c = user;
  const rm_body *b = c->body;
  const uint64_t left = b->len - c->sent;
  size_t want = size * n;
  if (want > left) want = (size_t)left;
  if (!want) return 0;
  ssize_t got;
  do got = pread(b->fd, buf, want, (off_t)(b->offset + c->sent));
  while (got < 0 && errno == EINTR);
  if (got < 0) {
    c->read_errno = errno;
    return CURL_READFUNC_ABORT;
  }
  if (got == 0) { /* the file is shorter than when the upload began */
    c->read_short = 1;
    return CURL_READFUNC_ABORT;
  }
  if (b->on_bytes) b->on_bytes(b->user, b->offset + c->sent, (const uint8_t *)buf, (size_t)got);
  c->sent += (uint64_t)got;
  return (size_t)got;
}

/* curl rewinds the body when it must send it again (a retried request on
 * a reused connection) */
static int on_seek(void *user, curl_off_t offset, int origin) {
  rm_call *c = user;
  if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > c->body->len) return CURL_SEEKFUNC_CANTSEEK;
  c->sent = (uint64_t)offset;
  return CURL_SEEKFUNC_OK;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
  (void)dltotal, (void)dlnow, (void)ultotal;
  rm_call *c = user;
  const rm_opts *o = c->o;
  if (!o->progress) return 0;
  const double t = bt_seconds();
  if (t - c->last_progress < 0.5) return 0; /* a line twice a second is plenty */
  c->last_progress = t;
  if (o->progress(o->user, o->progress_base + (uint64_t)(ulnow > 0 ? ulnow : 0), o->progress_total)) {
    c->cancelled = 1;
    return 1;
  }
  return 0;
}

/* ---- one request ---- */
#define SETOPT(opt, val)                                              \
  do {                                                                \
    if ((cc = curl_easy_setopt(h, opt, val)) != CURLE_OK) goto fail; \
  } while (0)

bt_status rm_send(bt_remote *r, const char *method, const char *path, const rm_body *body, const rm_opts *o,
                  rm_reply *rep) {
  static const rm_body none = {.kind = RM_NONE};
  static const rm_opts defaults = {.timeout_s = 300, .auth = 1};
  if (!body) body = &none;
  if (!o) o = &defaults;
  r->http = 0;
  rep->status = 0;
  if (!r->h && !(r->h = curl_easy_init())) return bt_fail(BT_E_NOMEM, "cannot create a libcurl handle");
  CURL *h = r->h;
  curl_easy_reset(h);
  rm_call c = {.body = body, .o = o, .rep = rep, .last_progress = bt_seconds()};
  char url[4096], errbuf[CURL_ERROR_SIZE] = "";
  if ((size_t)snprintf(url, sizeof url, "%s%s", r->server, path) >= sizeof url)
    return bt_fail(BT_E_ARG, "the URL is too long");
  struct curl_slist *hdrs = NULL, *l;
  /* the header that carries the token: built here, wiped below */
  char auth[sizeof r->token + 32];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", r->token);
  CURLcode cc = CURLE_OK;
  int slist_failed = 0;
  if (o->auth) {
    if (!(l = curl_slist_append(hdrs, auth))) slist_failed = 1;
    else hdrs = l;
  }
  if (body->kind == RM_MEMORY && body->content_type) {
    char ct[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", body->content_type);
    if (!(l = curl_slist_append(hdrs, ct))) slist_failed = 1;
    else hdrs = l;
  }
  sodium_memzero(auth, sizeof auth);
  if (slist_failed) {
    cc = CURLE_OUT_OF_MEMORY;
    goto fail;
  }
  SETOPT(CURLOPT_URL, url);
  SETOPT(CURLOPT_ERRORBUFFER, errbuf);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85 */
  SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#else
  SETOPT(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  /* never follow a redirect: the token is for this server only */
  SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
  SETOPT(CURLOPT_NOSIGNAL, 1L);
  SETOPT(CURLOPT_USERAGENT, "blindtuner/0.1.0");
  SETOPT(CURLOPT_CONNECTTIMEOUT, (long)BT_REMOTE_CONNECT_TIMEOUT_S);
  SETOPT(CURLOPT_TIMEOUT, o->timeout_s);
  SETOPT(CURLOPT_TCP_KEEPALIVE, 1L); /* a silent peer that went away is noticed */
  SETOPT(CURLOPT_TCP_KEEPIDLE, 30L);
  SETOPT(CURLOPT_TCP_KEEPINTVL, 15L);
  if (o->low_speed) {
    SETOPT(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SETOPT(CURLOPT_LOW_SPEED_TIME, 120L);
  }
  if (r->ca) SETOPT(CURLOPT_CAINFO, r->ca);
  SETOPT(CURLOPT_HEADERFUNCTION, on_header);
  SETOPT(CURLOPT_HEADERDATA, &c);
  SETOPT(CURLOPT_WRITEFUNCTION, on_write);
  SETOPT(CURLOPT_WRITEDATA, &c);
  if (hdrs) SETOPT(CURLOPT_HTTPHEADER, hdrs);
  if (o->progress) {
    SETOPT(CURLOPT_XFERINFOFUNCTION, on_progress);
    SETOPT(CURLOPT_XFERINFODATA, &c);
    SETOPT(CURLOPT_NOPROGRESS, 0L);
  }
  if (!strcmp(method, "GET")) {
    SETOPT(CURLOPT_HTTPGET, 1L);
  } else if (!strcmp(method, "HEAD")) {
    SETOPT(CURLOPT_NOBODY, 1L);
  } else if (!strcmp(method, "PUT")) {
    SETOPT(CURLOPT_UPLOAD, 1L);
    SETOPT(CURLOPT_READFUNCTION, on_read);
    SETOPT(CURLOPT_READDATA, &c);
    SETOPT(CURLOPT_SEEKFUNCTION, on_seek);
    SETOPT(CURLOPT_SEEKDATA, &c);
    SETOPT(CURLOPT_INFILESIZE_LARGE, (curl_off_t)(body->kind == RM_FILE ? body->len : 0));
  } else if (!strcmp(method, "POST")) {
    SETOPT(CURLOPT_POST, 1L);
    SETOPT(CURLOPT_POSTFIELDS, body->kind == RM_MEMORY ? (const char *)body->data : "");
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body->kind == RM_MEMORY ? body->len : 0));
  } else {
    SETOPT(CURLOPT_CUSTOMREQUEST, method);
  }
  cc = curl_easy_perform(h);
fail:
  if (hdrs) {
    for (l = hdrs; l; l = l->next) sodium_memzero(l->data, strlen(l->data));
    curl_slist_free_all(hdrs);
  }
  /* the handle keeps pointers to this frame's buffers: drop them */
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, (char *)NULL);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
  long code = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  if (cc == CURLE_OK) {
    rep->status = code;
    r->http = code;
    return BT_OK;
  }
  rep->local = c.cancelled || c.read_errno || c.read_short || rep->write_failed || rep->too_large;
  if (c.cancelled) return bt_fail(BT_E_ARG, "cancelled");
  if (c.read_errno) return bt_fail(BT_E_IO, "cannot read the file to upload: %s", strerror(c.read_errno));
  if (c.read_short) return bt_fail(BT_E_IO, "the file to upload became shorter while it was sent");
  if (rep->write_failed) return bt_fail(BT_E_IO, "cannot write the download: %s", strerror(rep->write_failed));
  if (rep->too_large) return bt_fail(BT_E_FORMAT, "%s: the server's answer is over %zu bytes", r->server, RM_JSON_MAX);
  /* a server may refuse an upload and close the connection before it is
   * all sent: its complete error answer counts as the answer */
  if (code >= 400 && rep->fd < 0) {
    json_object *e = rm_parse_object(rep->body, rep->len);
    if (e) {
      json_object_put(e);
      rep->status = code;
      r->http = code;
      return BT_OK;
    }
  }
  char why[CURL_ERROR_SIZE + 64];
  rm_clean(why, sizeof why, errbuf[0] ? errbuf : curl_easy_strerror(cc));
  return bt_fail(BT_E_IO, "%s: %s", r->server, why);
}

bt_status rm_json_call(bt_remote *r, const char *method, const char *path, const char *json_body, long timeout_s,
                       const char *what, json_object **obj) {
  if (obj) *obj = NULL;
  const rm_body b = {.kind = RM_MEMORY, .content_type = "application/json", .data = json_body,
                     .len = json_body ? strlen(json_body) : 0};
  const rm_opts o = {.timeout_s = timeout_s, .auth = 1};
  rm_reply rep;
  rm_reply_init(&rep);
  bt_status st = rm_send(r, method, path, json_body ? &b : NULL, &o, &rep);
  if (st) {
    char why[512];
    snprintf(why, sizeof why, "%s", bt_last_error()); /* bt_fail formats into the buffer it points at */
    st = bt_fail(st, "%s: %s", what, why);
  } else if (rep.status < 200 || rep.status > 299) {
    st = rm_http_fail(&rep, what);
  } else if (obj && !(*obj = rm_parse_object(rep.body, rep.len))) {
    st = bt_fail(BT_E_FORMAT, "%s: the server's answer is not a JSON object (HTTP %ld)", what, rep.status);
  }
  rm_reply_free(&rep);
  return st;
}

double rm_backoff(int k) { return k >= 5 ? 30.0 : (double)(1 << k); }

bt_status rm_file_header(int fd, uint64_t size, const char *label, bt_io_info *info) {
  uint8_t head[BT_IO_HEADER_BYTES];
  if (size < sizeof head) return bt_fail(BT_E_FORMAT, "%s: %llu bytes, too short for a BlindTuner container", label,
                                         (unsigned long long)size);
  size_t got = 0;
  while (got < sizeof head) {
    const ssize_t n = pread(fd, head + got, sizeof head - got, (off_t)got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return bt_fail(BT_E_IO, "%s: cannot read: %s", label, n < 0 ? strerror(errno) : "end of file");
    got += (size_t)n;
  }
  if (bt_io_header_info(head, sizeof head, info) != BT_OK)
    return bt_fail(BT_E_FORMAT, "%s: not a BlindTuner container", label);
  return BT_OK;
}

/* HTTP on libmicrohttpd: a thread per connection, routes, the bearer token,
 * bounded bodies, replies (JSON or a file) and the request log.  Paths are
 * parsed into a route and numbers; no part of a URL ever becomes a file
 * name (job ids are looked up, file names are one of four words). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif
#include <arpa/inet.h>
#include <netinet/in.h>

#include <microhttpd.h>

#include "service/internal.h"

#define JSON_MAX (64 << 10)
#define ANSWER_MAX (1 << 20)

void svc_error(svc_reply *r, int status, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (r->body) json_object_put(r->body);
  r->status = status;
  r->file[0] = 0;
  r->body = json_object_new_object();
  json_object_object_add(r->body, "error", json_object_new_string(msg));
}

/* A decimal epoch >= 1, nothing else. */
static int parse_epoch(const char *t, int *e) {
  if (!t || !*t || strlen(t) > 6 || strspn(t, "0123456789") != strlen(t) || t[0] == '0') return 0;
  *e = atoi(t);
  return 1;
}

/* Splits "/v1/jobs/ID/x/y" into at most 6 non-empty segments: their
 * number, 0 for "/", -1 for anything else (an empty segment, a trailing
 * slash, a segment of 72 characters or more, more than 6). */
static int split(const char *url, char seg[6][72]) {
  if (*url != '/') return -1;
  const char *p = url + 1;
  if (!*p) return 0;
  for (int n = 0;;) {
    const size_t len = strcspn(p, "/");
    if (len == 0 || len >= 72 || n == 6) return -1;
    memcpy(seg[n], p, len);
    seg[n++][len] = 0;
    p += len;
    if (!*p) return n;
    p++;
  }
}

/* Uploads get what the trainings leave of the CPU: the thread of a
 * connection that uploads drops to the lowest priority (on Linux a nice
 * value is a thread's own).  It cannot come back (raising it needs
 * privilege), which is fine: the thread ends with its connection, and the
 * worker threads that start the children never run here. */
static void upload_thread(void) {
#if defined(__linux__)
  (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
#endif
}

/* The route of a request, its job (authenticated) and its arguments; an
 * error reply when there is none. */
static void route(bt_service *s, struct MHD_Connection *c, const char *url, const char *method, svc_request *r) {
  char seg[6][72];
  const int n = split(url, seg);
  const int get = !strcmp(method, "GET"), post = !strcmp(method, "POST"), put = !strcmp(method, "PUT"),
            head = !strcmp(method, "HEAD"), del = !strcmp(method, "DELETE");
  if (n < 0) return svc_error(&r->reply, 404, "no such resource");
  if (n == 0 || (n == 2 && !strcmp(seg[0], "v1") && !strcmp(seg[1], "operator"))) {
    /* the operator's: from this machine's loopback address only */
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (!sa || sa->sa_family != AF_INET || ((const struct sockaddr_in *)sa)->sin_addr.s_addr != s->operator_addr)
      return svc_error(&r->reply, 403, "the operator page answers 127.0.0.1 only");
    if (get || head) r->route = n ? SVC_R_OPERATOR : SVC_R_PAGE;
    else svc_error(&r->reply, 405, "%s %s is not allowed", method, url);
    return;
  }
  if (n < 2 || strcmp(seg[0], "v1")) return svc_error(&r->reply, 404, "no such resource");
  if (n == 2 && !strcmp(seg[1], "health")) {
    if (get) r->route = SVC_R_HEALTH;
    else svc_error(&r->reply, 405, "%s %s is not allowed", method, url);
    return;
  }
  if (strcmp(seg[1], "jobs")) return svc_error(&r->reply, 404, "no such resource");
  if (n == 2) {
    if (post) r->route = SVC_R_CREATE;
    else svc_error(&r->reply, 405, "%s %s is not allowed", method, url);
    return;
  }
  /* every other route is a job's: the token first */
  const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (!auth || strncmp(auth, "Bearer ", 7) || !auth[7])
    return svc_error(&r->reply, 401, "a job's requests need its token: Authorization: Bearer <token>");
  r->job = svc_job_auth(s, seg[2], auth + 7);
  if (!r->job) return svc_error(&r->reply, 404, "no such job");
  const char *a = n > 3 ? seg[3] : "";
  svc_route want = SVC_R_NONE;
  int ok_method = 0;
  if (n == 3) {
    want = del ? SVC_R_DELETE : SVC_R_STATUS;
    ok_method = get || del;
  } else if (!strcmp(a, "files") && n >= 5) {
    if (!svc_file_parse(seg[4], &r->file)) return svc_error(&r->reply, 404, "no such file: eval, train, val or test");
    if (n == 6 && !strcmp(seg[5], "complete")) want = SVC_R_COMPLETE, ok_method = post;
    else if (n == 5) want = put ? SVC_R_PUT_FILE : SVC_R_HEAD_FILE, ok_method = put || head || get;
  } else if (n == 4 && !strcmp(a, "start")) {
    want = SVC_R_START, ok_method = post;
  } else if (n == 4 && !strcmp(a, "infer")) {
    want = SVC_R_INFER, ok_method = post;
  } else if (n == 5 && (!strcmp(a, "loss") || !strcmp(a, "model") || !strcmp(a, "logits") || !strcmp(a, "answer"))) {
    if (!parse_epoch(seg[4], &r->epoch)) return svc_error(&r->reply, 404, "no such epoch '%s'", seg[4]);
    want = !strcmp(a, "answer") ? SVC_R_ANSWER : !strcmp(a, "loss") ? SVC_R_LOSS : !strcmp(a, "model") ? SVC_R_MODEL : SVC_R_LOGITS;
    ok_method = want == SVC_R_ANSWER ? post : get || head;
  }
  if (want == SVC_R_NONE) return svc_error(&r->reply, 404, "no such resource");
  if (!ok_method) return svc_error(&r->reply, 405, "%s is not allowed here", method);
  r->route = want;
  if (want == SVC_R_PUT_FILE || want == SVC_R_COMPLETE) upload_thread();
  if (want == SVC_R_PUT_FILE)
    svc_upload_begin(s, r, MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "offset"));
}

static void body_append(svc_request *r, const char *data, size_t size) {
  const size_t cap = r->route == SVC_R_ANSWER ? ANSWER_MAX : JSON_MAX;
  if (r->body_len + size > cap) return svc_error(&r->reply, 413, "the body is over %zu bytes", cap);
  if (r->body_len + size + 1 > r->body_cap) {
    size_t nc = r->body_cap ? r->body_cap : 1024;
    while (nc < r->body_len + size + 1) nc *= 2;
    char *nb = realloc(r->body, nc);
    if (!nb) return svc_error(&r->reply, 500, "out of memory");
    r->body = nb, r->body_cap = nc;
  }
  memcpy(r->body + r->body_len, data, size);
  r->body_len += size;
  r->body[r->body_len] = 0;
}

static void health(bt_service *s, svc_request *r) {
  int jobs = 0, queued = 0;
  pthread_mutex_lock(&s->mu);
  for (svc_job *j = s->jobs; j; j = j->next) {
    jobs++;
    queued += !j->child && (j->state == SVC_QUEUED || j->infer == SVC_INFER_QUEUED);
  }
  const int running = s->running;
  pthread_mutex_unlock(&s->mu);
  r->reply.status = 200;
  r->reply.body = json_object_new_object();
  json_object_object_add(r->reply.body, "ok", json_object_new_boolean(1));
  json_object_object_add(r->reply.body, "jobs", json_object_new_int(jobs));
  json_object_object_add(r->reply.body, "queued", json_object_new_int(queued));
  json_object_object_add(r->reply.body, "running", json_object_new_int(running));
}

static void create(bt_service *s, svc_request *r) {
  char id[SVC_ID_HEX], token[2 * SVC_TOKEN_BYTES + 1];
  if (svc_job_create(s, id, token)) return svc_error(&r->reply, 500, "%s", bt_last_error());
  r->reply.status = 201;
  r->reply.body = json_object_new_object();
  json_object_object_add(r->reply.body, "id", json_object_new_string(id));
  json_object_object_add(r->reply.body, "token", json_object_new_string(token));
  memset(token, 0, sizeof token);
}

/* The request's answer, once its body is all in. */
static void dispatch(bt_service *s, svc_request *r) {
  switch (r->route) {
  case SVC_R_CREATE: return create(s, r);
  case SVC_R_HEALTH: return health(s, r);
  case SVC_R_PAGE:
    r->reply.status = 200;
    r->reply.body = NULL;
    return;
  case SVC_R_OPERATOR:
    r->reply.status = 200;
    r->reply.body = svc_operator_json(s);
    return;
  case SVC_R_HEAD_FILE: return svc_upload_head(s, r);
  case SVC_R_PUT_FILE: return svc_upload_end(s, r, 0);
  case SVC_R_COMPLETE: return svc_upload_complete(s, r);
  default: return svc_action(s, r);
  }
}

static enum MHD_Result send_reply(struct MHD_Connection *c, svc_request *r) {
  struct MHD_Response *resp = NULL;
  if (r->reply.file[0]) {
    const int fd = open(r->reply.file, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd >= 0 && fstat(fd, &sb) == 0) {
      resp = MHD_create_response_from_fd64((uint64_t)sb.st_size, fd);
      if (resp) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
    }
    if (!resp) {
      if (fd >= 0) close(fd);
      svc_error(&r->reply, 500, "cannot read the file");
    }
  }
  if (!resp && r->route == SVC_R_PAGE && r->reply.status == 200) {
    resp = MHD_create_response_from_buffer(svc_page_html_len, (void *)svc_page_html, MHD_RESPMEM_PERSISTENT);
    if (resp) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
  }
  if (!resp) {
    if (!r->reply.status) svc_error(&r->reply, 500, "no answer");
    const char *text = r->reply.body ? json_object_to_json_string_ext(r->reply.body, JSON_C_TO_STRING_PLAIN) : "{}";
    char *copy = malloc(strlen(text) + 2);
    if (!copy) return MHD_NO;
    sprintf(copy, "%s\n", text);
    resp = MHD_create_response_from_buffer(strlen(copy), copy, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
      free(copy);
      return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  }
  if (r->reply.offset_header[0]) MHD_add_response_header(resp, "Upload-Offset", r->reply.offset_header);
  if (r->reply.length_header[0]) MHD_add_response_header(resp, "Upload-Length", r->reply.length_header);
  if (r->reply.complete_header[0]) MHD_add_response_header(resp, "Upload-Complete", r->reply.complete_header);
  MHD_add_response_header(resp, "Cache-Control", "no-store");
  const enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->reply.status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *data, size_t *size, void **ctx) {
  (void)version;
  bt_service *s = cls;
  svc_request *r = *ctx;
  if (!r) {
    r = calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    r->fd = -1;
    r->t0 = bt_seconds();
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->path, sizeof r->path, "%s", url);
    *ctx = r;
    pthread_mutex_lock(&s->mu);
    const int stopping = s->stopping;
    pthread_mutex_unlock(&s->mu);
    if (stopping) svc_error(&r->reply, 503, "the service is shutting down");
    else route(s, c, url, method, r);
    return MHD_YES;
  }
  if (*size) {
    /* after an error the rest of the body is read and dropped */
    if (!r->reply.status) {
      if (r->route == SVC_R_PUT_FILE) svc_upload_data(s, r, data, *size);
      else body_append(r, data, *size);
    }
    *size = 0;
    return MHD_YES;
  }
  if (r->route == SVC_R_PUT_FILE && (r->fd >= 0 || r->busy)) svc_upload_end(s, r, 0);
  else if (!r->reply.status) dispatch(s, r);
  return send_reply(c, r);
}

static void completed(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_RequestTerminationCode toe) {
  (void)c;
  bt_service *s = cls;
  svc_request *r = *ctx;
  if (!r) return;
  if (r->fd >= 0 || r->busy) svc_upload_end(s, r, 1); /* the connection broke mid-upload */
  if (s->o.log_requests)
    fprintf(stderr, "serve: %s %s %d %llu %.0f ms%s\n", r->method, r->path, r->reply.status,
            (unsigned long long)(r->written + r->body_len), (bt_seconds() - r->t0) * 1e3,
            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection lost)");
  if (r->job) {
    pthread_mutex_lock(&s->mu);
    svc_job_put(s, r->job);
    pthread_mutex_unlock(&s->mu);
  }
  if (r->reply.body) json_object_put(r->reply.body);
  free(r->body);
  free(r);
  *ctx = NULL;
}

bt_status svc_http_start(bt_service *s, const char *host, int port) {
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  if (!strcmp(host, "localhost")) host = "127.0.0.1";
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
    return bt_fail(BT_E_ARG, "--listen: '%s' is not an IPv4 address or localhost", host);
  s->operator_addr = htonl(INADDR_LOOPBACK);
  unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
  if (s->tls_cert) {
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
      return bt_fail(BT_E_UNSUPPORTED, "this libmicrohttpd has no TLS support");
    flags |= MHD_USE_TLS;
  }
  /* the PEM options only with MHD_USE_TLS (else MHD complains of them) */
  struct MHD_OptionItem tls[] = {{MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert},
                                 {MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key},
                                 {MHD_OPTION_END, 0, NULL}};
  s->mhd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR,
                            (const struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, completed, s,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600,
                            /* uploads arrive in pieces of up to this buffer */
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(1 << 20), MHD_OPTION_ARRAY,
                            s->tls_cert ? tls : tls + 2, MHD_OPTION_END);
  if (!s->mhd)
    return bt_fail(BT_E_IO, "cannot listen on %s:%d (in use, not an address of this machine%s)", host, port,
                   s->tls_cert ? ", or a certificate and key that do not load" : "");
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
  s->port = info ? (int)info->port : port;
  return BT_OK;
}

void svc_http_stop(bt_service *s) {
  if (s->mhd) MHD_stop_daemon(s->mhd);
  s->mhd = NULL;
}

/* remote's internals: the handle and the HTTP plumbing (http.c) the job
 * calls (job.c), uploads (upload.c) and the decide step (decide.c) share. */
#ifndef BT_REMOTE_INTERNAL_H
#define BT_REMOTE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "blindtuner/remote.h"
#include "blindtuner/util.h"

struct bt_remote {
  char *server; /* base URL, no trailing '/' */
  char *ca;     /* NULL: the system's CA bundle */
  char id[BT_REMOTE_ID_MAX + 1];
  char token[BT_REMOTE_ID_MAX + 1]; /* the capability: wiped on free */
  CURL *h;      /* one easy handle, reused: its connection stays open */
  long http;    /* the last status; 0 when no answer came */
  size_t chunk;
};

/* The largest JSON answer accepted (a status lists every epoch). */
#define RM_JSON_MAX ((size_t)16 << 20)

/* What a request sends. */
typedef enum rm_body_kind { RM_NONE, RM_MEMORY, RM_FILE } rm_body_kind;
typedef struct rm_body {
  rm_body_kind kind;
  const char *content_type; /* RM_MEMORY */
  const void *data;
  size_t len;
  int fd;          /* RM_FILE: bytes [offset, offset + len) of fd, by pread */
  uint64_t offset;
  /* RM_FILE: called with every block read for sending (at its offset in
   * the file), so an upload hashes what it sends in the same pass */
  void (*on_bytes)(void *user, uint64_t offset, const uint8_t *buf, size_t n);
  void *user;
} rm_body;

/* What came back: a JSON (or error) body in memory, or, for a download,
 * the bytes of a 200 answer written to `fd`. */
typedef struct rm_reply {
  long status;
  char *body; /* NUL-terminated; malloc'd */
  size_t len, cap;
  int fd;             /* >= 0: a download's destination */
  uint64_t written;
  int write_failed;   /* errno of a failed write to fd */
  int too_large;      /* a JSON body over RM_JSON_MAX */
  int local;          /* the failure was here (reading, writing, cancelled), not the network's */
  /* upload headers (docs/API.md): -1 when absent */
  int64_t upload_offset, upload_length;
  int upload_complete;
} rm_reply;

/* Per-request settings. */
typedef struct rm_opts {
  long timeout_s;      /* total; 0: none */
  int low_speed;       /* abort below 1 byte/s for 120 s (streams) */
  int auth;            /* send the job's token */
  bt_remote_progress_fn progress; /* uploads: bytes of this request so far */
  void *user;
  uint64_t progress_base, progress_total;
} rm_opts;

/* curl_global_init, once per process. */
bt_status rm_global_init(void);
/* Sends one request: method, path below the server's URL ("/v1/jobs/..."),
 * an optional body.  BT_OK when an HTTP answer came (whatever its status:
 * r->http and rep->status say it); BT_E_IO when none did; BT_E_ARG when the
 * progress callback cancelled. */
bt_status rm_send(bt_remote *r, const char *method, const char *path, const rm_body *body, const rm_opts *o,
                  rm_reply *rep);
void rm_reply_init(rm_reply *rep);
void rm_reply_free(rm_reply *rep);
/* The failure of an answer that is not a success: "<what>: <the server's
 * error> (HTTP <status>)", with a status code by class (400, 404, 405, 409:
 * BT_E_ARG; 401: BT_E_KEY; 413, 422: BT_E_FORMAT; others BT_E_IO). */
bt_status rm_http_fail(const rm_reply *rep, const char *what);
/* A request that must answer `ok` (and another 2xx is accepted too) with a
 * JSON object: *obj (may be NULL) gets it (json_object_put it). */
bt_status rm_json_call(bt_remote *r, const char *method, const char *path, const char *json_body, long timeout_s,
                       const char *what, json_object **obj);
/* Parses a JSON object; NULL when it is none. */
json_object *rm_parse_object(const char *text, size_t len);
/* "/v1/jobs/<id><suffix>" into out (cap >= 512). */
void rm_job_path(const bt_remote *r, char *out, size_t cap, const char *suffix);
/* Copies at most cap - 1 bytes of s, control characters replaced by '?'. */
void rm_clean(char *out, size_t cap, const char *s);
/* 1 for a transient failure worth retrying: no answer, or a 5xx other than 501. */
int rm_transient(long http);
/* Sleeps s seconds (interrupted sleeps resumed). */
void rm_sleep(double s);
/* The container header of the first BT_IO_HEADER_BYTES of fd (pread at 0),
 * or BT_E_FORMAT naming `label` when it is not a container. */
bt_status rm_file_header(int fd, uint64_t size, const char *label, bt_io_info *info);
/* Retries of a failed chunk, a failed complete or a failed HEAD in a row. */
#define RM_RETRIES 6
/* The wait before retry k (0-based): 1, 2, 4, 8, 16, 30 s. */
double rm_backoff(int k);

#endif

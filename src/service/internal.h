/* What the service layer's sources share; not part of its public API.
 *
 * Locking: one mutex (bt_service.mu) guards the job list, every field of
 * every svc_job, the counters and the database connection.  It is never
 * held across file I/O of any size, a container check or a child process:
 * those run on a snapshot, with the job's `busy` flags (an upload in
 * flight) and `refs` (a request or a worker using the record) keeping the
 * record and its files in place.  A deleted job leaves the list at once;
 * its directory goes when the last user lets go. */
#ifndef BT_SERVICE_INTERNAL_H
#define BT_SERVICE_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>
#include <sqlite3.h>

#include "blindtuner/service.h"

#define SVC_ID_BYTES 16    /* job ids: 32 hex digits */
#define SVC_TOKEN_BYTES 32 /* tokens: 64 hex digits, 256 random bits */
#define SVC_HASH_BYTES 32  /* BLAKE2b-256 */
#define SVC_PATH 4096
#define SVC_ID_HEX (2 * SVC_ID_BYTES + 1)

typedef enum svc_state { SVC_CREATED, SVC_QUEUED, SVC_TRAINING, SVC_WAITING, SVC_DONE, SVC_FAILED, SVC_NSTATES } svc_state;
typedef enum svc_infer { SVC_INFER_NONE, SVC_INFER_QUEUED, SVC_INFER_RUNNING, SVC_INFER_DONE, SVC_INFER_FAILED } svc_infer;
/* The four uploads, by name: the only names that reach the file system. */
typedef enum svc_file { SVC_EVAL, SVC_TRAIN, SVC_VAL, SVC_TEST, SVC_NFILES } svc_file;

typedef struct svc_upload {
  uint64_t received; /* bytes on disk (DIR/<name>.part, or the whole file once complete) */
  uint64_t size;     /* the container's size as its header declares it; 0 before it arrived */
  int complete;
  int busy;          /* memory only: a PUT or a complete in flight */
} svc_upload;

typedef struct svc_job {
  char id[SVC_ID_HEX];
  uint8_t token_hash[SVC_HASH_BYTES];
  svc_state state;
  bt_job_options opt;
  int64_t queue_seq;      /* FIFO order of the queued task */
  int epochs_done, waiting_epoch, stopped;
  svc_infer infer;
  int infer_epoch;
  uint8_t params_hash[BT_PARAMS_HASH_BYTES]; /* the evaluation bundle's, once complete */
  bt_job_tag tag;
  double mem_estimate;    /* bytes, of the queued or running task */
  double created;
  char error[512];
  svc_upload up[SVC_NFILES];
  /* memory only */
  int refs, deleted;
  pid_t child;            /* > 0 while a child runs for the job */
  int child_infer;        /* the running child is an inference */
  struct svc_job *next;
} svc_job;

struct bt_service {
  bt_service_options o;
  char *data_dir, *jobs_dir;
  char **trainer;         /* the trainer's argv prefix, copied */
  uint8_t *tls_cert, *tls_key; /* PEM, NUL-terminated (the key wiped when freed) */
  size_t tls_key_len;
  uint32_t operator_addr; /* the one IPv4 address (network order) the operator page answers */
  int ntrainer;
  double budget, reserved;
  int threads, lock_fd;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  sqlite3 *db;
  svc_job *jobs;
  int64_t next_seq;
  int stopping;
  pthread_t *workers;
  int nworkers, running;
  struct MHD_Daemon *mhd;
  int port;
};

/* ---- jobs.c: records, names, paths, tokens ---- */
const char *svc_state_name(svc_state s);
const char *svc_infer_name(svc_infer s);
const char *svc_file_name(svc_file f);
int svc_file_parse(const char *name, svc_file *f);
/* DIR/jobs/<id>/<leaf> (leaf "" for the directory); BT_E_ARG when too long. */
bt_status svc_job_path(const bt_service *s, const char *id, const char *leaf, char out[SVC_PATH]);
/* DIR/jobs/<id>/<name>.bt (complete) or .part (receiving). */
bt_status svc_upload_path(const bt_service *s, const char *id, svc_file f, int part, char out[SVC_PATH]);
/* A new job: random id and token (hex, NUL-terminated), its directory, its
 * record in the list and the database; the caller holds no lock. */
bt_status svc_job_create(bt_service *s, char id[SVC_ID_HEX], char token[2 * SVC_TOKEN_BYTES + 1]);
/* The job `id` if `token` is its token (hash compared in constant time; the
 * same work when there is no such job), with a reference taken; else NULL.
 * The caller holds no lock. */
svc_job *svc_job_auth(bt_service *s, const char *id, const char *token);
/* Lets go of a reference (lock held); removes a deleted job's directory
 * when it was the last. */
void svc_job_put(bt_service *s, svc_job *j);
/* Deletes a job (lock held): out of the list and the database, its child
 * killed; the directory goes with the last reference. */
bt_status svc_job_delete(bt_service *s, svc_job *j);
void svc_job_free(svc_job *j);
/* rm -r of a job directory (its name was made here: 32 hex digits). */
void svc_remove_tree(const char *path);
/* 1-based position among queued tasks, 0 when not queued (lock held). */
int svc_queue_position(const bt_service *s, const svc_job *j);
void svc_hex(const uint8_t *b, size_t n, char *out);
void svc_token_hash(const char *token, uint8_t out[SVC_HASH_BYTES]);

/* ---- store.c: the database (callers hold the lock) ---- */
bt_status svc_db_open(bt_service *s);
void svc_db_close(bt_service *s);
/* Every job into s->jobs (the list is empty before). */
bt_status svc_db_load(bt_service *s);
bt_status svc_db_save(bt_service *s, const svc_job *j);
bt_status svc_db_delete(bt_service *s, const char *id);

/* ---- worker.c: the scheduler and the children ---- */
bt_status svc_workers_start(bt_service *s);
void svc_workers_stop(bt_service *s);
/* The task's estimate as it stands (lock held): eval + train + val, or eval + test. */
double svc_task_estimate(const svc_job *j, int infer);
/* Queues the job's training (lock held): state QUEUED, a new sequence number. */
void svc_queue(bt_service *s, svc_job *j);

/* ---- status.c: what GET /v1/jobs/{id} shows ---- */
/* The status of a job (lock held for the record; the progress and report
 * files are read after the caller has let go: svc_status_add_files). */
json_object *svc_status_json(const bt_service *s, const svc_job *j);
void svc_status_add_files(const bt_service *s, const char *id, int running, json_object *o);
/* Reads work/progress.json: phase and epoch; 0 when there is none. */
int svc_progress(const bt_service *s, const char *id, char *phase, size_t cap, int *epoch);

/* ---- http.c: the request handlers ---- */
bt_status svc_http_start(bt_service *s, const char *host, int port);
void svc_http_stop(bt_service *s);

/* What a request gets back: a JSON body, or a file. */
typedef struct svc_reply {
  int status;
  json_object *body;      /* JSON answer (NULL with a file) */
  char file[SVC_PATH];    /* a file to send instead ("" for none) */
  char offset_header[32]; /* Upload-Offset value to add, or "" */
  char length_header[32]; /* Upload-Length, or "" */
  char complete_header[4];/* Upload-Complete, or "" */
} svc_reply;
/* A JSON error body {"error": "..."} with that status. */
void svc_error(svc_reply *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

typedef enum svc_route {
  SVC_R_NONE, SVC_R_CREATE, SVC_R_STATUS, SVC_R_DELETE, SVC_R_HEAD_FILE, SVC_R_PUT_FILE, SVC_R_COMPLETE,
  SVC_R_START, SVC_R_LOSS, SVC_R_ANSWER, SVC_R_MODEL, SVC_R_INFER, SVC_R_LOGITS, SVC_R_HEALTH, SVC_R_PAGE,
  SVC_R_OPERATOR
} svc_route;

/* One request, from its first call to its completion. */
typedef struct svc_request {
  svc_route route;
  svc_job *job;           /* a reference held, or NULL */
  svc_file file;
  int epoch;
  int replied;            /* reply decided (an early error): the rest of the body is discarded */
  svc_reply reply;
  char *body;             /* a JSON or container body, bounded */
  size_t body_len, body_cap;
  /* uploads */
  int fd;
  int busy;               /* this request set the upload's busy flag */
  uint64_t offset, written, limit;
  uint8_t head[BT_IO_HEADER_BYTES];
  size_t head_len;
  double t0;
  char method[8], path[160];
} svc_request;

/* ---- upload.c: HEAD, PUT and complete of the four files ---- */
void svc_upload_head(bt_service *s, svc_request *r);
/* The size a part file's header declares (its header was checked when it
 * arrived), 0 when it has no whole header. */
uint64_t svc_part_size(const char *part);
/* The start of a PUT (query offset=N): checks, opens the part file. */
void svc_upload_begin(bt_service *s, svc_request *r, const char *offset);
void svc_upload_data(bt_service *s, svc_request *r, const char *data, size_t size);
/* The end of a PUT, or its connection's loss (aborted): what arrived is kept. */
void svc_upload_end(bt_service *s, svc_request *r, int aborted);
void svc_upload_complete(bt_service *s, svc_request *r);
/* A JSON object body, or NULL after an error reply. */
json_object *svc_body_json(svc_request *r);

/* ---- page.c: the operator page ---- */
extern const char svc_page_html[];
extern const size_t svc_page_html_len;
/* What the page shows (every job, short ids, no tokens or errors). */
json_object *svc_operator_json(bt_service *s);

/* ---- actions.c: start, answer, infer, delete, downloads ---- */
void svc_action(bt_service *s, svc_request *r);

#endif

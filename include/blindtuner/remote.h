/* remote: the client of the training service (`blindtuner serve`, the HTTP
 * API of docs/API.md) over libcurl, above pipeline.
 *
 * A job on the service is reached through a handle that holds the server's
 * URL, the job's id and its capability token: whoever has the token can
 * read, answer and delete the job, so it is kept like a password (a job
 * file of mode 0600, wiped from memory when the handle is freed, never
 * printed, logged or put in a URL; it travels only in the Authorization
 * header).  Use https:// for any server beyond this machine.
 *
 * What goes to the server: the evaluation bundle and encrypted datasets
 * (a secret bundle is refused here, before a byte is sent), the one-bit
 * answers, and the training options.  What comes back: encrypted losses,
 * models and logits, which this layer writes to files without decrypting
 * them; the pipeline loaders validate them when they are used.  The only
 * decryption done here is that of the validation loss, in bt_remote_decide,
 * by the pipeline's client step with the client's own record
 * (bt_client_decide_dir), which bounds what is decrypted.
 *
 * Every function returns a bt_status; on failure bt_last_error() holds one
 * line: what was asked, what the server said (its {"error": ...} text, with
 * control characters replaced) and the HTTP status, or why the server could
 * not be reached.  bt_remote_http_status() gives that HTTP status (0 when
 * no answer came), for callers that retry.  A handle is used by one thread
 * at a time. */
#ifndef BLINDTUNER_REMOTE_H
#define BLINDTUNER_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "blindtuner/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bt_remote bt_remote;

/* Ids and tokens are at most this many characters of [A-Za-z0-9._~-]
 * (the service's are hex); anything else is refused before it reaches a
 * URL or a header. */
#define BT_REMOTE_ID_MAX 128
/* PUT chunks of uploads (bt_remote_set_chunk changes it). */
#define BT_REMOTE_CHUNK_DEFAULT ((size_t)64 << 20)
/* Seconds to wait for a TCP (and TLS) connection. */
#define BT_REMOTE_CONNECT_TIMEOUT_S 10

/* A new job on the server at `url` (http:// or https://, optionally with a
 * path prefix; POST /v1/jobs): the handle holds its id and token.  ca_file
 * (NULL: the system's) is the CA bundle that authenticates an https server
 * (PEM; a self-signed server's own certificate works). */
BT_API bt_status bt_remote_create(const char *url, const char *ca_file, bt_remote **out) BT_MUST_CHECK;
/* A handle on an existing job (nothing is sent). */
BT_API bt_status bt_remote_open(const char *url, const char *id, const char *token, bt_remote **out) BT_MUST_CHECK;
/* Wipes the token and frees everything (NULL is fine). */
BT_API void bt_remote_free(bt_remote *r);
/* The CA bundle for https (NULL: the system's); kept as an absolute path
 * and saved in the job file. */
BT_API bt_status bt_remote_set_ca(bt_remote *r, const char *ca_file) BT_MUST_CHECK;
/* Bytes per PUT of an upload, from 4096 (tests) up; 0: the default. */
BT_API bt_status bt_remote_set_chunk(bt_remote *r, size_t bytes) BT_MUST_CHECK;
BT_API const char *bt_remote_id(const bt_remote *r);
BT_API const char *bt_remote_server(const bt_remote *r);
BT_API const char *bt_remote_ca(const bt_remote *r); /* NULL when none */
/* The HTTP status of the last request (0: no answer, a transport error). */
BT_API long bt_remote_http_status(const bt_remote *r);

/* The job file: JSON {"server", "id", "token"[, "ca"]}, written atomically
 * with mode 0600 (it holds the token).  The loader reads any mode but
 * refuses a file over 64 KiB or with a field missing or malformed. */
BT_API bt_status bt_remote_save(const bt_remote *r, const char *path) BT_MUST_CHECK;
BT_API bt_status bt_remote_load(const char *path, bt_remote **out) BT_MUST_CHECK;

/* ---- status ---- */
/* A job's status, parsed from GET /v1/jobs/{id} (docs/API.md).  Strings are
 * the server's, truncated to their arrays and with control characters
 * replaced; numbers absent from the answer are 0 (eta_s -1). */
typedef enum bt_remote_state {
  BT_REMOTE_UNKNOWN = 0, /* a state this client does not know */
  BT_REMOTE_CREATED,     /* uploading */
  BT_REMOTE_QUEUED,
  BT_REMOTE_TRAINING,
  BT_REMOTE_WAITING,     /* for the client's answer to waiting_epoch */
  BT_REMOTE_DONE,
  BT_REMOTE_FAILED
} bt_remote_state;
BT_API const char *bt_remote_state_name(bt_remote_state s);

typedef struct bt_remote_upload_info {
  uint64_t received, size; /* size 0 until the container's header arrived */
  int complete;
} bt_remote_upload_info;

/* The files the job has for the client: epochs in increasing order. */
typedef struct bt_remote_epochs {
  int n;
  int *e; /* malloc'd; bt_remote_info_clear frees it */
} bt_remote_epochs;

typedef struct bt_remote_info {
  char id[BT_REMOTE_ID_MAX + 1];
  bt_remote_state state;
  char state_name[32];          /* as the server said it */
  int queue_position;           /* 0 when not queued */
  bt_remote_upload_info uploads[4]; /* eval, train, val, test (bt_remote_file_name) */
  int epochs;                   /* the options: at most this many epochs */
  double lr, momentum;          /* lr 0: the large-batch rule (bt_lr_for_batch) */
  int accumulate;               /* batches summed into each update (1: none) */
  uint64_t seed;
  int epochs_done, waiting_epoch, stopped_by_client;
  int has_progress;             /* a training or inference child is running */
  char phase[32];               /* the child's phase ("training", "validation batch", ...) */
  int progress_epoch, step, steps;
  double elapsed_s, eta_s;      /* eta_s -1: unknown yet */
  bt_remote_epochs models, losses, logits;
  char infer_state[16];         /* none, queued, running, done, failed */
  int infer_epoch;
  double memory_estimate_gib;
  char error[512];              /* one line; "" when none */
} bt_remote_info;
BT_API void bt_remote_info_clear(bt_remote_info *s);
/* The files' names, index 0..3: "eval", "train", "val", "test". */
BT_API const char *bt_remote_file_name(int i);
/* 1 when `e` is in the list. */
BT_API int bt_remote_epochs_has(const bt_remote_epochs *l, int e);

/* GET the status: *s (may be NULL; clear it with bt_remote_info_clear) gets
 * it parsed, *json (may be NULL; free() it) the server's JSON document
 * re-serialised (pretty, escaped). */
BT_API bt_status bt_remote_status(bt_remote *r, bt_remote_info *s, char **json) BT_MUST_CHECK;
/* A status document (the answers of GET, start, answer and infer) parsed. */
BT_API bt_status bt_remote_parse_status(const char *json, size_t len, bt_remote_info *s) BT_MUST_CHECK;

/* ---- uploads ---- */
/* Progress of an upload: `done` of `total` bytes are on the server.
 * Return nonzero to cancel (the call then fails with BT_E_ARG "cancelled"). */
typedef int (*bt_remote_progress_fn)(void *user, uint64_t done, uint64_t total);
typedef struct bt_remote_upload_result {
  uint64_t size;       /* the file's bytes */
  uint64_t resumed_at; /* bytes the server had before this call */
  int skipped;         /* the server had the whole file already */
  int retries;         /* chunks sent again after a failure */
} bt_remote_upload_result;
/* Uploads `path` as the job's file `name` (eval, train, val or test) and
 * completes it.  Only a container of the right kind is sent (an evaluation
 * bundle for eval, an encrypted dataset for the others; a secret bundle
 * never): its header is checked here first.  HEAD says where the server is;
 * an upload complete there with the same size is skipped; otherwise the
 * rest goes in PUT chunks streamed from the file (never whole in memory),
 * a failed chunk is retried after HEAD says where to resume (waiting 1, 2,
 * 4, 8, 16, 30 s; the call fails when the sixth retry in a row brings the
 * server no further than it ever was), then the file's size and BLAKE2b-256,
 * computed streaming, are POSTed to complete it.  progress and res may be
 * NULL. */
BT_API bt_status bt_remote_upload(bt_remote *r, const char *name, const char *path, bt_remote_progress_fn progress,
                                  void *user, bt_remote_upload_result *res) BT_MUST_CHECK;
/* The local checks of bt_remote_upload alone (the header's kind and size),
 * without a server: a submit checks every file before it creates a job. */
BT_API bt_status bt_remote_check_file(const char *name, const char *path) BT_MUST_CHECK;

/* ---- training ---- */
/* POST start with the options (NULL: the server's defaults); *s (may be
 * NULL) gets the status the server answered. */
BT_API bt_status bt_remote_start(bt_remote *r, const bt_job_options *opt, bt_remote_info *s) BT_MUST_CHECK;
/* GET what ("model", "loss" or "logits") of `epoch` into out_path: streamed
 * to a temporary beside it, its container header checked to be of that
 * kind, then committed atomically (an existing file at out_path is replaced
 * only then, and never a secret bundle).  Retried up to 3 times after a
 * broken connection or a 5xx.  Nothing is decrypted or validated beyond
 * the header: the pipeline loaders check the rest when the file is used. */
BT_API bt_status bt_remote_download(bt_remote *r, const char *what, int epoch, const char *out_path) BT_MUST_CHECK;
/* POST the answer container at answer_path (`decide` writes it) to the
 * epoch it answers; epoch must be the one it holds.  A 409 because the
 * server has this answer already (a previous POST whose reply was lost) is
 * success.  *s (may be NULL) gets the status. */
BT_API bt_status bt_remote_answer(bt_remote *r, int epoch, const char *answer_path, bt_remote_info *s) BT_MUST_CHECK;
/* POST infer: encrypted logits of the uploaded test set under the model of
 * `epoch`.  *s (may be NULL) gets the status. */
BT_API bt_status bt_remote_infer(bt_remote *r, int epoch, bt_remote_info *s) BT_MUST_CHECK;
/* DELETE the job: the server removes its keys and data. */
BT_API bt_status bt_remote_delete(bt_remote *r) BT_MUST_CHECK;

/* ---- the client's step of early stopping, over HTTP ----
 * One step: GETs the status; when the job waits for the answer to epoch e:
 *   - the client's record `d` (bt_decisions_open on `record`, with the job's
 *     agreed epochs) has not decided e yet (it has decided e - 1 epochs):
 *     the loss of e is downloaded to workdir/loss-EEE.bt and decided there by
 *     bt_client_decide_dir (decrypted locally, recorded, workdir/answer-EEE.bt
 *     written), then the answer is POSTed; a loss refused by the client is
 *     answered stop and the call fails with the reason;
 *   - the record has decided e already (a previous step whose POST failed,
 *     or a server that lost the answer): the answer it recorded is POSTed
 *     again, from workdir/answer-EEE.bt, re-written from the record when it
 *     is gone; nothing is decrypted (res->rewritten 1);
 *   - the record has closed the run (a stop, or the agreed epochs reached)
 *     before e: stop is answered without decrypting anything (res->decided 0,
 *     res->answer.go_on 0);
 *   - the record is behind (fewer than e - 1 epochs): refused, nothing
 *     decrypted (a record of another run?).
 * A job done after all its agreed epochs did not wait for the answer to the
 * last one; when the record has decided all epochs but that one, its loss
 * is downloaded and decided all the same (recorded, the answer written to
 * workdir but not posted: s->state is BT_REMOTE_DONE), so that the record
 * names the best epoch over all of them.
 * Otherwise, when the job does not wait, nothing happens: BT_OK with
 * res->epoch 0 and res->answer.epoch 0.  *s (may be NULL) gets the last
 * status. */
BT_API bt_status bt_remote_decide(bt_remote *r, bt_client *c, const char *workdir, const char *record,
                                  bt_decisions *d, bt_decide_result *res, bt_remote_info *s) BT_MUST_CHECK;

/* The epoch whose model the client keeps: the best epoch of the record at
 * `record` (the lowest released validation loss) when there is a record
 * with a decided epoch, else the last model the status lists (*from_record
 * says which; may be NULL).  tag: the key set the record must belong to;
 * NULL accepts the record's own (the number is only used to pick a file
 * to download).  Fails when there is neither. */
BT_API bt_status bt_remote_best_epoch(const char *record, const bt_job_tag *tag, const bt_remote_info *s, int *epoch,
                                      int *from_record) BT_MUST_CHECK;

#ifdef __cplusplus
}
#endif
#endif

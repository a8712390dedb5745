/* service: the server role as a long-running HTTP/1.1 service
 * (`blindtuner serve`, docs/API.md), above pipeline.
 *
 * Clients create jobs, upload an evaluation bundle and encrypted datasets
 * in resumable chunks, start training, poll the status, answer each epoch's
 * encrypted validation loss with one bit, and fetch encrypted models and
 * logits.  Everything the service holds is what the file-based `train`
 * command holds: evaluation keys and ciphertexts, never a secret key or a
 * decrypted value.
 *
 * Inside: libmicrohttpd (a thread per connection), the job records in
 * SQLite (WAL) beside the files under the data directory, and worker
 * threads that run each training or inference as a child process, the
 * trainer command (normally this program's own `train` and `infer`; a
 * launcher such as mpirun may go in front).  A child runs in its job's
 * exchange directory with the file protocol of the `train` command, so the
 * service adds no second implementation of training, and a training that
 * crashes or runs out of memory takes only itself down.  A scheduler takes
 * queued tasks in FIFO order, at most `workers` at once and only while their
 * memory estimates fit the budget (bt_service_memory_estimate).  A job
 * waiting for the client's answer holds no worker once its grace period
 * (`answer_grace_s`) is over.  After a crash or a restart on the same
 * directory every job carries on: a training goes back to the queue and
 * resumes from its checkpoint, an upload from the bytes on disk. */
#ifndef BLINDTUNER_SERVICE_H
#define BLINDTUNER_SERVICE_H

#include <stdint.h>

#include "blindtuner/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bt_service_options {
  const char *listen;    /* "ADDR:PORT": an IPv4 address or "localhost"; port 0 picks a free one */
  const char *data_dir;  /* jobs.db and jobs/<id>/ (created if missing) */
  const char *tls_cert, *tls_key; /* PEM files: HTTPS only; both or neither */
  /* The trainer: argv prefix of the child processes, to which "train ..." or
   * "infer ..." and their options are appended (e.g. {"/usr/bin/blindtuner"},
   * or {"mpirun", "-np", "8", "/usr/bin/blindtuner"}); NULL-terminated. */
  const char *const *trainer;
  int workers;           /* trainings or inferences at once (default 1) */
  double memory_gib;     /* the budget; 0: physical memory less 2 GiB */
  int threads;           /* per child; 0: bt_default_threads() / workers, at least 1 */
  int answer_grace_s;    /* a training waits this long for the client's answer before it
                          * lets its worker go (default 30) */
  int allow_insecure;    /* accept key sets of INSECURE test parameters */
  int log_requests;      /* one line per request on stderr (default 1) */
  uint64_t max_eval_bytes, max_data_bytes; /* upload limits (defaults 16 GiB and 64 GiB) */
} bt_service_options;
/* The defaults above (listen, data_dir and trainer NULL: the caller's to set). */
BT_API void bt_service_options_init(bt_service_options *o);

typedef struct bt_service bt_service;
/* Opens (or creates) the data directory and its database (one service per
 * directory: a second is refused), puts the tasks a previous run left
 * running back in the queue, starts the workers and listens.  Fails with a
 * message naming what is wrong (address, port in use, unreadable
 * certificate, a database of another schema, ...). */
BT_API bt_status bt_service_start(const bt_service_options *o, bt_service **out) BT_MUST_CHECK;
/* The port it listens on (the one picked when the options said 0). */
BT_API int bt_service_port(const bt_service *s);
/* The memory budget in bytes. */
BT_API double bt_service_budget_bytes(const bt_service *s);
/* Stops listening, stops running children (their jobs go back to the queue
 * and resume from their checkpoints on the next start), waits for the
 * workers and frees everything. */
BT_API void bt_service_stop(bt_service *s);

/* The estimated peak memory (bytes) of a training or inference on an
 * evaluation bundle of eval_bytes and datasets of data_bytes (file sizes):
 * BT_SERVICE_MEM_PER_EVAL_BYTE x eval_bytes + BT_SERVICE_MEM_PER_DATA_BYTE x
 * data_bytes + BT_SERVICE_MEM_BASE.  The keys are held decoded (the files
 * keep public polynomials as seeds and coefficients bit-packed) and
 * bootstrapping adds its transforms and scratch ciphertexts: peak resident
 * memory of `demo` at train-n16 was 16.7 GiB beside a 4.2 GB bundle
 * (docs/BENCHMARKS.md). */
#define BT_SERVICE_MEM_PER_EVAL_BYTE 4.0
#define BT_SERVICE_MEM_PER_DATA_BYTE 2.5
#define BT_SERVICE_MEM_BASE (256.0 * 1024 * 1024)
BT_API double bt_service_memory_estimate(uint64_t eval_bytes, uint64_t data_bytes);

#ifdef __cplusplus
}
#endif
#endif

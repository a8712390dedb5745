/* The service's life: options, the data directory (one service per
 * directory), recovery of what a previous run left, workers and listener. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "service/internal.h"

void bt_service_options_init(bt_service_options *o) {
  memset(o, 0, sizeof *o);
  o->workers = 1;
  o->answer_grace_s = 30;
  o->log_requests = 1;
  o->max_eval_bytes = (uint64_t)16 << 30;
  o->max_data_bytes = (uint64_t)64 << 30;
}

double bt_service_memory_estimate(uint64_t eval_bytes, uint64_t data_bytes) {
  return BT_SERVICE_MEM_PER_EVAL_BYTE * (double)eval_bytes + BT_SERVICE_MEM_PER_DATA_BYTE * (double)data_bytes +
         BT_SERVICE_MEM_BASE;
}

int bt_service_port(const bt_service *s) { return s->port; }
double bt_service_budget_bytes(const bt_service *s) { return s->budget; }

static double physical_memory(void) {
  const long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  return pages > 0 && size > 0 ? (double)pages * (double)size : 0;
}

/* What a previous run left: a training or an inference that was running
 * goes back to the queue (its child resumes from the checkpoint), and an
 * unfinished upload counts the bytes on disk. */
static void recover(bt_service *s) {
  for (svc_job *j = s->jobs; j; j = j->next) {
    int changed = 0;
    if (j->state == SVC_TRAINING) j->state = SVC_QUEUED, changed = 1;
    if (j->infer == SVC_INFER_RUNNING) j->infer = SVC_INFER_QUEUED, changed = 1;
    for (int f = 0; f < SVC_NFILES; f++) {
      svc_upload *u = &j->up[f];
      char path[SVC_PATH];
      struct stat sb;
      if (u->complete || svc_upload_path(s, j->id, (svc_file)f, 1, path)) continue;
      const uint64_t have = stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
      if (have != u->received) u->received = have, changed = 1;
      /* the size from the header on disk: a record saved before the
       * header arrived does not know it */
      const uint64_t size = have >= BT_IO_HEADER_BYTES ? svc_part_size(path) : 0;
      if (size != u->size) u->size = size, changed = 1;
    }
    if (changed && svc_db_save(s, j)) fprintf(stderr, "blindtuner serve: %s\n", bt_last_error());
  }
}

static bt_status open_data_dir(bt_service *s) {
  if (mkdir(s->data_dir, 0700) != 0 && errno != EEXIST)
    return bt_fail(BT_E_IO, "cannot create %s: %s", s->data_dir, strerror(errno));
  const size_t len = strlen(s->data_dir) + 16;
  s->jobs_dir = malloc(len);
  char *lock = malloc(len);
  if (!s->jobs_dir || !lock) {
    free(lock);
    return bt_fail(BT_E_NOMEM, "out of memory");
  }
  snprintf(s->jobs_dir, len, "%s/jobs", s->data_dir);
  snprintf(lock, len, "%s/serve.lock", s->data_dir);
  if (mkdir(s->jobs_dir, 0700) != 0 && errno != EEXIST) {
    free(lock);
    return bt_fail(BT_E_IO, "cannot create %s: %s", s->jobs_dir, strerror(errno));
  }
  s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  const int locked = s->lock_fd >= 0 && flock(s->lock_fd, LOCK_EX | LOCK_NB) == 0;
  free(lock);
  if (!locked) return bt_fail(BT_E_IO, "%s is in use by another `blindtuner serve`", s->data_dir);
  return BT_OK;
}

static bt_status parse_listen(const char *listen, char *host, size_t cap, int *port) {
  const char *colon = listen ? strrchr(listen, ':') : NULL;
  char *end;
  if (!colon || colon == listen || (size_t)(colon - listen) >= cap)
    return bt_fail(BT_E_ARG, "--listen: ADDR:PORT expected, got '%s'", listen ? listen : "");
  const long p = strtol(colon + 1, &end, 10);
  if (!colon[1] || *end || p < 0 || p > 65535) return bt_fail(BT_E_ARG, "--listen: '%s' is not a port", colon + 1);
  memcpy(host, listen, (size_t)(colon - listen));
  host[colon - listen] = 0;
  *port = (int)p;
  return BT_OK;
}

bt_status bt_service_start(const bt_service_options *o, bt_service **out) {
  *out = NULL;
  char host[256];
  int port = 0;
  if (!o->data_dir || !*o->data_dir) return bt_fail(BT_E_ARG, "the service needs a data directory");
  if (!o->trainer || !o->trainer[0]) return bt_fail(BT_E_ARG, "the service needs a trainer command");
  if (!o->tls_cert != !o->tls_key) return bt_fail(BT_E_ARG, "--tls-cert and --tls-key go together");
  if (o->workers < 1 || o->workers > 64) return bt_fail(BT_E_ARG, "--workers: 1 to 64");
  bt_status st = parse_listen(o->listen, host, sizeof host, &port);
  if (st) return st;
  bt_service *s = calloc(1, sizeof *s);
  if (!s) return bt_fail(BT_E_NOMEM, "out of memory");
  s->o = *o;
  s->lock_fd = -1;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  s->data_dir = strdup(o->data_dir);
  while (o->trainer[s->ntrainer]) s->ntrainer++;
  s->trainer = calloc((size_t)s->ntrainer + 1, sizeof *s->trainer);
  for (int i = 0; s->trainer && i < s->ntrainer; i++) s->trainer[i] = strdup(o->trainer[i]);
  s->budget = o->memory_gib > 0 ? o->memory_gib * 1073741824.0 : physical_memory() - 2 * 1073741824.0;
  const int per = bt_default_threads() / o->workers;
  s->threads = o->threads > 0 ? o->threads : per > 0 ? per : 1;
  if (!s->data_dir || !s->trainer) st = bt_fail(BT_E_NOMEM, "out of memory");
  size_t cert_len = 0;
  if (!st && o->tls_cert) st = bt_file_read(o->tls_cert, 1 << 20, &s->tls_cert, &cert_len);
  if (!st && o->tls_key) st = bt_file_read(o->tls_key, 1 << 20, &s->tls_key, &s->tls_key_len);
  if (!st) st = open_data_dir(s);
  if (!st) st = svc_db_open(s);
  if (!st) {
    pthread_mutex_lock(&s->mu);
    st = svc_db_load(s);
    if (!st) recover(s);
    pthread_mutex_unlock(&s->mu);
  }
  if (!st) st = svc_workers_start(s);
  if (!st) st = svc_http_start(s, host, port);
  if (st) {
    bt_status keep = st;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", bt_last_error());
    bt_service_stop(s);
    return bt_fail(keep, "%s", msg);
  }
  *out = s;
  return BT_OK;
}

void bt_service_stop(bt_service *s) {
  if (!s) return;
  svc_http_stop(s);
  if (s->workers) svc_workers_stop(s);
  svc_db_close(s);
  for (svc_job *j = s->jobs, *n; j; j = n) {
    n = j->next;
    svc_job_free(j);
  }
  if (s->lock_fd >= 0) close(s->lock_fd);
  bt_free(s->tls_cert);
  if (s->tls_key) bt_free_secret(s->tls_key, s->tls_key_len);
  for (int i = 0; s->trainer && i < s->ntrainer; i++) free(s->trainer[i]);
  free(s->trainer);
  free(s->data_dir);
  free(s->jobs_dir);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

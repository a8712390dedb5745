/* Job records: names, paths, ids and tokens, creation, authentication and
 * deletion. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "service/internal.h"

static const char *const state_names[SVC_NSTATES] = {"created", "queued", "training", "waiting", "done", "failed"};
static const char *const infer_names[] = {"none", "queued", "running", "done", "failed"};
static const char *const file_names[SVC_NFILES] = {"eval", "train", "val", "test"};

const char *svc_state_name(svc_state s) { return s >= 0 && s < SVC_NSTATES ? state_names[s] : "unknown"; }
const char *svc_infer_name(svc_infer s) { return s >= 0 && s <= SVC_INFER_FAILED ? infer_names[s] : "unknown"; }
const char *svc_file_name(svc_file f) { return f >= 0 && f < SVC_NFILES ? file_names[f] : "unknown"; }

int svc_file_parse(const char *name, svc_file *f) {
  for (int i = 0; i < SVC_NFILES; i++)
    if (!strcmp(name, file_names[i])) {
      *f = (svc_file)i;
      return 1;
    }
  return 0;
}

bt_status svc_job_path(const bt_service *s, const char *id, const char *leaf, char out[SVC_PATH]) {
  const int n = snprintf(out, SVC_PATH, "%s/%s%s%s", s->jobs_dir, id, *leaf ? "/" : "", leaf);
  if (n < 0 || n >= SVC_PATH) return bt_fail(BT_E_ARG, "the data directory's path is too long");
  return BT_OK;
}

bt_status svc_upload_path(const bt_service *s, const char *id, svc_file f, int part, char out[SVC_PATH]) {
  char leaf[32];
  snprintf(leaf, sizeof leaf, "%s.%s", svc_file_name(f), part ? "part" : "bt");
  return svc_job_path(s, id, leaf, out);
}

void svc_hex(const uint8_t *b, size_t n, char *out) { sodium_bin2hex(out, 2 * n + 1, b, n); }

void svc_token_hash(const char *token, uint8_t out[SVC_HASH_BYTES]) {
  static const char domain[] = "blindtuner service token v1";
  crypto_generichash_state h;
  crypto_generichash_init(&h, NULL, 0, SVC_HASH_BYTES);
  crypto_generichash_update(&h, (const unsigned char *)domain, sizeof domain);
  crypto_generichash_update(&h, (const unsigned char *)token, strlen(token));
  crypto_generichash_final(&h, out, SVC_HASH_BYTES);
}

bt_status svc_job_create(bt_service *s, char id[SVC_ID_HEX], char token[2 * SVC_TOKEN_BYTES + 1]) {
  uint8_t rid[SVC_ID_BYTES], tok[SVC_TOKEN_BYTES];
  randombytes_buf(rid, sizeof rid);
  randombytes_buf(tok, sizeof tok);
  svc_hex(rid, sizeof rid, id);
  svc_hex(tok, sizeof tok, token);
  sodium_memzero(tok, sizeof tok);
  svc_job *j = calloc(1, sizeof *j);
  if (!j) return bt_fail(BT_E_NOMEM, "out of memory");
  memcpy(j->id, id, SVC_ID_HEX);
  svc_token_hash(token, j->token_hash);
  bt_job_options_init(&j->opt);
  j->state = SVC_CREATED;
  j->created = (double)time(NULL);
  char dir[SVC_PATH];
  bt_status st = svc_job_path(s, id, "", dir);
  if (!st && mkdir(dir, 0700) != 0) st = bt_fail(BT_E_IO, "cannot create a job directory: %s", strerror(errno));
  char work[SVC_PATH];
  if (!st) st = svc_job_path(s, id, "work", work);
  if (!st && mkdir(work, 0700) != 0) st = bt_fail(BT_E_IO, "cannot create a job directory: %s", strerror(errno));
  if (st) {
    svc_remove_tree(dir);
    free(j);
    return st;
  }
  pthread_mutex_lock(&s->mu);
  st = svc_db_save(s, j);
  if (!st) {
    j->next = s->jobs;
    s->jobs = j;
  }
  pthread_mutex_unlock(&s->mu);
  if (st) {
    svc_remove_tree(dir);
    free(j);
  }
  return st;
}

svc_job *svc_job_auth(bt_service *s, const char *id, const char *token) {
  uint8_t h[SVC_HASH_BYTES];
  svc_token_hash(token ? token : "", h);
  pthread_mutex_lock(&s->mu);
  svc_job *found = NULL;
  for (svc_job *j = s->jobs; j; j = j->next)
    if (!j->deleted && !strcmp(j->id, id)) found = j;
  /* the comparison is made whether or not the id exists, against a record
   * or a dummy, in constant time: the answer and its timing say nothing
   * about which ids exist */
  static const uint8_t dummy[SVC_HASH_BYTES] = {0};
  const int match = sodium_memcmp(h, found ? found->token_hash : dummy, SVC_HASH_BYTES) == 0 && token && *token;
  svc_job *j = found && match ? found : NULL;
  if (j) j->refs++;
  pthread_mutex_unlock(&s->mu);
  sodium_memzero(h, sizeof h);
  return j;
}

void svc_job_free(svc_job *j) { free(j); }

void svc_job_put(bt_service *s, svc_job *j) {
  if (!j) return;
  if (--j->refs > 0 || !j->deleted || j->child) return;
  char dir[SVC_PATH];
  if (!svc_job_path(s, j->id, "", dir)) svc_remove_tree(dir);
  svc_job_free(j);
}

bt_status svc_job_delete(bt_service *s, svc_job *j) {
  bt_status st = svc_db_delete(s, j->id);
  if (st) return st;
  j->deleted = 1;
  for (svc_job **p = &s->jobs; *p; p = &(*p)->next)
    if (*p == j) {
      *p = j->next;
      break;
    }
  /* the worker reaps it and lets go of its reference */
  if (j->child > 0) kill(-j->child, SIGKILL);
  return BT_OK;
}

/* Only what this layer made: <jobs>/<32 hex>/ with files and one level of
 * subdirectories (work/). */
static void remove_dir(const char *path, int depth) {
  DIR *d = opendir(path);
  if (d) {
    struct dirent *e;
    char sub[SVC_PATH];
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub) continue;
      struct stat sb;
      if (lstat(sub, &sb) != 0) continue;
      if (S_ISDIR(sb.st_mode) && depth < 2) remove_dir(sub, depth + 1);
      else unlink(sub);
    }
    closedir(d);
  }
  rmdir(path);
}

void svc_remove_tree(const char *path) { remove_dir(path, 0); }

int svc_queue_position(const bt_service *s, const svc_job *j) {
  const int queued = j->state == SVC_QUEUED || j->infer == SVC_INFER_QUEUED;
  if (!queued || j->child) return 0;
  int pos = 1;
  for (const svc_job *o = s->jobs; o; o = o->next)
    if (o != j && !o->child && (o->state == SVC_QUEUED || o->infer == SVC_INFER_QUEUED) && o->queue_seq < j->queue_seq)
      pos++;
  return pos;
}

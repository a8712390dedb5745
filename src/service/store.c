/* The job records in SQLite (DIR/jobs.db, write-ahead log, synchronous
 * commits): a record is saved whenever a job changes state, so that a
 * service killed at any moment finds every job as it last was. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "service/internal.h"

/* 2 (library 0.5): the jobs' accumulate column; a schema-1 database is
 * upgraded in place (its jobs accumulate nothing) */
#define SCHEMA_VERSION 2

static bt_status db_fail(bt_service *s, const char *what) {
  return bt_fail(BT_E_IO, "job database: %s: %s", what, sqlite3_errmsg(s->db));
}

static bt_status exec(bt_service *s, const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK) {
    bt_status st = bt_fail(BT_E_IO, "job database: %s", err ? err : "error");
    sqlite3_free(err);
    return st;
  }
  return BT_OK;
}

bt_status svc_db_open(bt_service *s) {
  char path[SVC_PATH];
  if (snprintf(path, sizeof path, "%s/jobs.db", s->data_dir) >= (int)sizeof path)
    return bt_fail(BT_E_ARG, "the data directory's path is too long");
  if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
      SQLITE_OK) {
    bt_status st = bt_fail(BT_E_IO, "cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
    svc_db_close(s);
    return st;
  }
  chmod(path, 0600);
  sqlite3_busy_timeout(s->db, 5000);
  bt_status st = exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                         "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER);"
                         "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, token_hash BLOB NOT NULL,"
                         " state INTEGER, epochs INTEGER, lr REAL, momentum REAL, seed INTEGER, queue_seq INTEGER,"
                         " epochs_done INTEGER, waiting_epoch INTEGER, stopped INTEGER, infer INTEGER,"
                         " infer_epoch INTEGER, params_hash BLOB, tag BLOB, mem REAL, created REAL, error TEXT,"
                         " uploads TEXT, accumulate INTEGER NOT NULL DEFAULT 1);"
                         "INSERT OR IGNORE INTO meta VALUES ('schema', 2);");
  if (st) {
    svc_db_close(s);
    return st;
  }
  sqlite3_stmt *q = NULL;
  int version = -1;
  if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = 'schema'", -1, &q, NULL) == SQLITE_OK &&
      sqlite3_step(q) == SQLITE_ROW)
    version = sqlite3_column_int(q, 0);
  sqlite3_finalize(q);
  if (version == 1) { /* one transaction: the column and the version together */
    st = exec(s, "BEGIN IMMEDIATE; ALTER TABLE jobs ADD COLUMN accumulate INTEGER NOT NULL DEFAULT 1;"
                 "UPDATE meta SET value = 2 WHERE key = 'schema'; COMMIT;");
    if (st) {
      if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK;", NULL, NULL, NULL);
      svc_db_close(s);
      return st;
    }
    version = 2;
  }
  if (version != SCHEMA_VERSION) {
    svc_db_close(s);
    return bt_fail(BT_E_FORMAT, "%s: a job database of schema %d (this build reads %d)", path, version,
                   SCHEMA_VERSION);
  }
  return BT_OK;
}

void svc_db_close(bt_service *s) {
  if (s->db) sqlite3_close(s->db);
  s->db = NULL;
}

static char *uploads_text(const svc_job *j) {
  json_object *o = json_object_new_object();
  for (int f = 0; f < SVC_NFILES; f++) {
    json_object *u = json_object_new_object();
    json_object_object_add(u, "received", json_object_new_int64((int64_t)j->up[f].received));
    json_object_object_add(u, "size", json_object_new_int64((int64_t)j->up[f].size));
    json_object_object_add(u, "complete", json_object_new_boolean(j->up[f].complete));
    json_object_object_add(o, svc_file_name((svc_file)f), u);
  }
  char *text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
  json_object_put(o);
  return text;
}

static void uploads_parse(const char *text, svc_job *j) {
  json_object *o = text ? json_tokener_parse(text) : NULL, *u, *v;
  for (int f = 0; o && f < SVC_NFILES; f++) {
    if (!json_object_object_get_ex(o, svc_file_name((svc_file)f), &u)) continue;
    if (json_object_object_get_ex(u, "received", &v)) j->up[f].received = (uint64_t)json_object_get_int64(v);
    if (json_object_object_get_ex(u, "size", &v)) j->up[f].size = (uint64_t)json_object_get_int64(v);
    if (json_object_object_get_ex(u, "complete", &v)) j->up[f].complete = json_object_get_boolean(v);
  }
  if (o) json_object_put(o);
}

bt_status svc_db_save(bt_service *s, const svc_job *j) {
  static const char sql[] =
      "INSERT OR REPLACE INTO jobs (id, token_hash, state, epochs, lr, momentum, seed, queue_seq, epochs_done,"
      " waiting_epoch, stopped, infer, infer_epoch, params_hash, tag, mem, created, error, uploads, accumulate)"
      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)";
  sqlite3_stmt *q = NULL;
  if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) return db_fail(s, "prepare");
  char *up = uploads_text(j);
  sqlite3_bind_text(q, 1, j->id, -1, SQLITE_STATIC);
  sqlite3_bind_blob(q, 2, j->token_hash, SVC_HASH_BYTES, SQLITE_STATIC);
  sqlite3_bind_int(q, 3, (int)j->state);
  sqlite3_bind_int(q, 4, j->opt.epochs);
  sqlite3_bind_double(q, 5, j->opt.lr);
  sqlite3_bind_double(q, 6, j->opt.momentum);
  sqlite3_bind_int64(q, 7, (sqlite3_int64)j->opt.seed);
  sqlite3_bind_int64(q, 8, j->queue_seq);
  sqlite3_bind_int(q, 9, j->epochs_done);
  sqlite3_bind_int(q, 10, j->waiting_epoch);
  sqlite3_bind_int(q, 11, j->stopped);
  sqlite3_bind_int(q, 12, (int)j->infer);
  sqlite3_bind_int(q, 13, j->infer_epoch);
  sqlite3_bind_blob(q, 14, j->params_hash, BT_PARAMS_HASH_BYTES, SQLITE_STATIC);
  sqlite3_bind_blob(q, 15, &j->tag, sizeof j->tag, SQLITE_STATIC);
  sqlite3_bind_double(q, 16, j->mem_estimate);
  sqlite3_bind_double(q, 17, j->created);
  sqlite3_bind_text(q, 18, j->error, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 19, up ? up : "{}", -1, SQLITE_STATIC);
  sqlite3_bind_int(q, 20, j->opt.accumulate > 0 ? j->opt.accumulate : 1);
  const int rc = sqlite3_step(q);
  sqlite3_finalize(q);
  free(up);
  return rc == SQLITE_DONE ? BT_OK : db_fail(s, "save");
}

bt_status svc_db_delete(bt_service *s, const char *id) {
  sqlite3_stmt *q = NULL;
  if (sqlite3_prepare_v2(s->db, "DELETE FROM jobs WHERE id = ?1", -1, &q, NULL) != SQLITE_OK)
    return db_fail(s, "prepare");
  sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
  const int rc = sqlite3_step(q);
  sqlite3_finalize(q);
  return rc == SQLITE_DONE ? BT_OK : db_fail(s, "delete");
}

static void copy_blob(sqlite3_stmt *q, int col, void *out, size_t len) {
  if (sqlite3_column_bytes(q, col) == (int)len) memcpy(out, sqlite3_column_blob(q, col), len);
}

bt_status svc_db_load(bt_service *s) {
  static const char sql[] =
      "SELECT id, token_hash, state, epochs, lr, momentum, seed, queue_seq, epochs_done, waiting_epoch, stopped,"
      " infer, infer_epoch, params_hash, tag, mem, created, error, uploads, accumulate FROM jobs ORDER BY created";
  sqlite3_stmt *q = NULL;
  if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) return db_fail(s, "prepare");
  int rc;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    const char *id = (const char *)sqlite3_column_text(q, 0);
    if (!id || strlen(id) != SVC_ID_HEX - 1 || strspn(id, "0123456789abcdef") != SVC_ID_HEX - 1) continue;
    svc_job *j = calloc(1, sizeof *j);
    if (!j) {
      sqlite3_finalize(q);
      return bt_fail(BT_E_NOMEM, "out of memory");
    }
    memcpy(j->id, id, SVC_ID_HEX);
    copy_blob(q, 1, j->token_hash, SVC_HASH_BYTES);
    const int state = sqlite3_column_int(q, 2), infer = sqlite3_column_int(q, 11);
    j->state = state >= 0 && state < SVC_NSTATES ? (svc_state)state : SVC_FAILED;
    j->opt.epochs = sqlite3_column_int(q, 3);
    j->opt.lr = sqlite3_column_double(q, 4);
    j->opt.momentum = sqlite3_column_double(q, 5);
    j->opt.seed = (uint64_t)sqlite3_column_int64(q, 6);
    j->opt.accumulate = sqlite3_column_int(q, 19);
    if (j->opt.accumulate < 1 || j->opt.accumulate > BT_MAX_ACCUMULATE) j->opt.accumulate = 1;
    j->queue_seq = sqlite3_column_int64(q, 7);
    j->epochs_done = sqlite3_column_int(q, 8);
    j->waiting_epoch = sqlite3_column_int(q, 9);
    j->stopped = sqlite3_column_int(q, 10);
    j->infer = infer >= 0 && infer <= SVC_INFER_FAILED ? (svc_infer)infer : SVC_INFER_FAILED;
    j->infer_epoch = sqlite3_column_int(q, 12);
    copy_blob(q, 13, j->params_hash, BT_PARAMS_HASH_BYTES);
    copy_blob(q, 14, &j->tag, sizeof j->tag);
    j->mem_estimate = sqlite3_column_double(q, 15);
    j->created = sqlite3_column_double(q, 16);
    const char *err = (const char *)sqlite3_column_text(q, 17);
    snprintf(j->error, sizeof j->error, "%s", err ? err : "");
    uploads_parse((const char *)sqlite3_column_text(q, 18), j);
    if (j->queue_seq >= s->next_seq) s->next_seq = j->queue_seq + 1;
    j->next = s->jobs;
    s->jobs = j;
  }
  sqlite3_finalize(q);
  return rc == SQLITE_DONE ? BT_OK : db_fail(s, "load");
}

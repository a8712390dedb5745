/* Uploads (docs/API.md): HEAD says how many bytes the server has, PUT
 * chunks streamed from the file carry the rest from there, and complete
 * gives the size and the BLAKE2b-256 of the whole file, which the server
 * checks with the container before the file counts.  A broken connection
 * or a restarted server costs the chunk in flight: HEAD says where to go
 * on.  The checksum is computed from the bytes as they are sent, so a
 * file is read once (plus the prefix the server had, on a resume). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "remote/internal.h"

/* The running BLAKE2b-256 of the file's bytes [0, done). */
typedef struct up_hash {
  crypto_generichash_state st;
  uint64_t done;
} up_hash;

static void hash_bytes(void *user, uint64_t offset, const uint8_t *buf, size_t n) {
  up_hash *h = user;
  /* bytes sent again (a chunk retried) were hashed the first time */
  if (offset > h->done || offset + n <= h->done) return;
  const size_t skip = (size_t)(h->done - offset);
  crypto_generichash_update(&h->st, buf + skip, n - skip);
  h->done += n - skip;
}

/* Hashes the file up to `upto` from where the hash is (a resumed upload's
 * prefix, which this call did not send). */
static bt_status hash_to(up_hash *h, int fd, uint64_t upto, const char *path) {
  if (h->done >= upto) return BT_OK;
  const size_t cap = 1 << 20;
  uint8_t *buf = malloc(cap);
  if (!buf) return bt_fail(BT_E_NOMEM, "out of memory");
  bt_status st = BT_OK;
  while (h->done < upto) {
    const size_t want = upto - h->done < cap ? (size_t)(upto - h->done) : cap;
    const ssize_t n = pread(fd, buf, want, (off_t)h->done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      st = bt_fail(BT_E_IO, "%s: cannot read: %s", path, n < 0 ? strerror(errno) : "the file became shorter");
      break;
    }
    crypto_generichash_update(&h->st, buf, (size_t)n);
    h->done += (uint64_t)n;
  }
  free(buf);
  return st;
}

static int name_index(const char *name) {
  for (int i = 0; i < 4; i++)
    if (!strcmp(name, bt_remote_file_name(i))) return i;
  return -1;
}

typedef struct up_where {
  int64_t offset, length; /* -1: not said */
  int complete;
} up_where;

/* HEAD, retried while the server cannot be reached. */
static bt_status head(bt_remote *r, const char *path, const char *name, up_where *w) {
  char what[64];
  snprintf(what, sizeof what, "upload of %s", name);
  for (int k = 0;; k++) {
    const rm_opts o = {.timeout_s = 120, .auth = 1};
    rm_reply rep;
    rm_reply_init(&rep);
    bt_status st = rm_send(r, "HEAD", path, NULL, &o, &rep);
    if (!st && rep.status == 200) {
      w->offset = rep.upload_offset, w->length = rep.upload_length, w->complete = rep.upload_complete == 1;
      rm_reply_free(&rep);
      if (w->offset < 0) return bt_fail(BT_E_FORMAT, "%s: the server's HEAD says no Upload-Offset", what);
      return BT_OK;
    }
    if (!st) st = rm_http_fail(&rep, what); /* a HEAD answer has no body: the status says it */
    const int again = !rep.local && rm_transient(r->http) && k < RM_RETRIES;
    rm_reply_free(&rep);
    if (!again) {
      if (r->http == 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", bt_last_error());
        st = bt_fail(st, "%s: %s", what, why);
      }
      return st;
    }
    rm_sleep(rm_backoff(k));
  }
}

/* The local checks before a byte is sent: a container of the kind the
 * name takes, whole, never a secret. */
static bt_status check_file(int fd, uint64_t size, const char *path, int idx) {
  bt_io_info info;
  bt_status st = rm_file_header(fd, size, path, &info);
  if (st) return st;
  if (info.kind == BT_IO_SECRET_BUNDLE || info.kind == BT_IO_SECRET_KEY)
    return bt_fail(BT_E_ARG, "%s is a secret bundle: it never leaves the client (the server takes the evaluation "
                             "bundle)", path);
  const bt_io_kind want = idx == 0 ? BT_IO_EVAL_BUNDLE : BT_IO_DATASET;
  if (info.kind != want)
    return bt_fail(BT_E_FORMAT, "%s holds a file of kind '%s'; the job's %s takes '%s'", path,
                   bt_pipeline_kind_name(info.kind), bt_remote_file_name(idx), bt_pipeline_kind_name(want));
  if (info.payload_bytes > size || info.payload_bytes + BT_IO_HEADER_BYTES != size)
    return bt_fail(BT_E_FORMAT, "%s: %llu bytes, its header says %llu: a truncated or damaged file", path,
                   (unsigned long long)size, (unsigned long long)(info.payload_bytes + BT_IO_HEADER_BYTES));
  return BT_OK;
}

/* One PUT of [offset, offset + len); *next gets where the server is after it
 * (*next < 0: it did not say), *failed 1 for a failure worth retrying. */
static bt_status put_chunk(bt_remote *r, const char *path, const char *what, int fd, uint64_t offset, uint64_t len,
                           uint64_t size, up_hash *h, bt_remote_progress_fn progress, void *user, int64_t *next,
                           int *failed) {
  char url[600];
  snprintf(url, sizeof url, "%s?offset=%llu", path, (unsigned long long)offset);
  const rm_body b = {.kind = RM_FILE, .fd = fd, .offset = offset, .len = len, .on_bytes = hash_bytes, .user = h};
  const rm_opts o = {.low_speed = 1, .auth = 1, .progress = progress, .user = user, .progress_base = offset,
                     .progress_total = size};
  rm_reply rep;
  rm_reply_init(&rep);
  *next = -1;
  *failed = 0;
  bt_status st = rm_send(r, "PUT", url, &b, &o, &rep);
  if (st) {
    *failed = !rep.local;
  } else if (rep.status == 200) {
    json_object *obj = rm_parse_object(rep.body, rep.len), *v;
    if (obj && json_object_object_get_ex(obj, "received", &v) && json_object_is_type(v, json_type_int))
      *next = json_object_get_int64(v);
    else *next = rep.upload_offset >= 0 ? rep.upload_offset : (int64_t)(offset + len);
    if (obj) json_object_put(obj);
  } else if (rep.status == 409 && rep.upload_offset >= 0) {
    *next = rep.upload_offset; /* not where the server is: it says where */
    st = rm_http_fail(&rep, what);
    *failed = 1;
  } else {
    st = rm_http_fail(&rep, what);
    /* 409 without an offset: another PUT of this file is still open on the
     * server (the one that broke, not noticed yet); 5xx: the server's */
    *failed = rep.status == 409 || rm_transient(rep.status);
  }
  rm_reply_free(&rep);
  return st;
}

/* POST complete; *done 1 on success, *failed 1 for a failure worth retrying. */
static bt_status complete(bt_remote *r, const char *path, const char *what, uint64_t size,
                          const uint8_t digest[32], int *failed) {
  char hex[65], body[160], url[600];
  sodium_bin2hex(hex, sizeof hex, digest, 32);
  snprintf(body, sizeof body, "{\"size\": %llu, \"blake2b\": \"%s\"}", (unsigned long long)size, hex);
  snprintf(url, sizeof url, "%s/complete", path);
  /* the server hashes and checks the whole container before it answers */
  const rm_body b = {.kind = RM_MEMORY, .content_type = "application/json", .data = body, .len = strlen(body)};
  const rm_opts o = {.timeout_s = 3600, .auth = 1};
  rm_reply rep;
  rm_reply_init(&rep);
  *failed = 0;
  bt_status st = rm_send(r, "POST", url, &b, &o, &rep);
  if (st) *failed = !rep.local;
  else if (rep.status != 200) {
    st = rm_http_fail(&rep, what);
    *failed = rep.status == 409 || rm_transient(rep.status);
    if (rep.status == 422) {
      char why[512];
      snprintf(why, sizeof why, "%s", bt_last_error());
      st = bt_fail(st, "%s; the server starts this upload again from 0 on the next try", why);
    }
  }
  rm_reply_free(&rep);
  return st;
}

/* HEAD said complete: this file if the sizes agree. */
static bt_status complete_there(const up_where *w, uint64_t size, const char *what, const char *fpath) {
  const int64_t have = w->length >= 0 ? w->length : w->offset;
  if (have >= 0 && (uint64_t)have == size) return BT_OK;
  return bt_fail(BT_E_ARG, "%s: the server holds a complete file of %lld bytes, %s has %llu: another file", what,
                 (long long)have, fpath, (unsigned long long)size);
}

static bt_status upload_fd(bt_remote *r, const char *name, const char *fpath, int fd, uint64_t size,
                           bt_remote_progress_fn progress, void *user, bt_remote_upload_result *res) {
  char path[512], suffix[64], what[64];
  snprintf(suffix, sizeof suffix, "/files/%s", name);
  snprintf(what, sizeof what, "upload of %s", name);
  rm_job_path(r, path, sizeof path, suffix);
  up_where w;
  bt_status st = head(r, path, name, &w);
  if (st) return st;
  if (w.complete) {
    if ((st = complete_there(&w, size, what, fpath))) return st;
    res->skipped = 1;
    res->resumed_at = size;
    return BT_OK;
  }
  res->resumed_at = (uint64_t)w.offset;
  up_hash h = {.done = 0};
  crypto_generichash_init(&h.st, NULL, 0, 32);
  uint64_t offset = (uint64_t)w.offset;
  int failures = 0, refusals = 0;
  /* failures in a row count until the server holds more than it ever did:
   * a server that keeps losing what it was sent ends the call */
  uint64_t reached = offset;
  for (;;) {
    if (offset > size || (w.length >= 0 && (uint64_t)w.length != size))
      return bt_fail(BT_E_ARG, "%s: the server has %llu bytes of a %lld-byte %s, %s has %llu: another file", what,
                     (unsigned long long)offset, (long long)w.length, name, fpath, (unsigned long long)size);
    /* the prefix the server has from before is hashed here; the rest as it is sent */
    if ((st = hash_to(&h, fd, offset, fpath))) return st;
    while (offset < size) {
      const uint64_t len = size - offset < r->chunk ? size - offset : r->chunk;
      int64_t next;
      int failed;
      st = put_chunk(r, path, what, fd, offset, len, size, &h, progress, user, &next, &failed);
      if (!st && (next < 0 || (uint64_t)next > size || (uint64_t)next < offset))
        return bt_fail(BT_E_FORMAT, "%s: the server says %lld bytes received after a chunk that ends at %llu", what,
                       (long long)next, (unsigned long long)(offset + len));
      if (!st && (uint64_t)next == offset) {
        /* accepted and nothing kept: a failure like any other, not a loop */
        st = bt_fail(BT_E_IO, "%s: the server kept none of the %llu bytes sent at %llu", what,
                     (unsigned long long)len, (unsigned long long)offset);
        failed = 1;
        next = -1;
      }
      if (!st) {
        offset = (uint64_t)next;
        if (offset > reached) {
          reached = offset;
          failures = 0;
        }
        if (progress && progress(user, offset, size)) return bt_fail(BT_E_ARG, "cancelled");
        if ((st = hash_to(&h, fd, offset, fpath))) return st;
        continue;
      }
      if (!failed || failures >= RM_RETRIES) {
        if (failed) {
          char why[512];
          snprintf(why, sizeof why, "%s", bt_last_error());
          return bt_fail(st, "%s (after %d tries; run again to resume from the server's %llu bytes)", why,
                         failures + 1, (unsigned long long)offset);
        }
        return st;
      }
      if (next < 0) rm_sleep(rm_backoff(failures)); /* a 409 with the offset: at once */
      failures++;
      res->retries++;
      if ((st = head(r, path, name, &w))) return st;
      if (w.complete) break; /* completed meanwhile (another client): its size says whether it is this file */
      offset = (uint64_t)w.offset;
      if (offset > size || (w.length >= 0 && (uint64_t)w.length != size))
        return bt_fail(BT_E_ARG, "%s: the server has %llu bytes of a %lld-byte %s, %s has %llu: another file", what,
                       (unsigned long long)offset, (long long)w.length, name, fpath, (unsigned long long)size);
      if ((st = hash_to(&h, fd, offset, fpath))) return st;
    }
    if (w.complete) return complete_there(&w, size, what, fpath);
    if ((st = hash_to(&h, fd, size, fpath))) return st;
    uint8_t digest[32];
    crypto_generichash_state copy = h.st; /* complete may be retried: keep the state */
    crypto_generichash_final(&copy, digest, 32);
    int failed;
    st = complete(r, path, what, size, digest, &failed);
    if (!st) return BT_OK;
    if (!failed || failures >= RM_RETRIES) return st;
    char why[512];
    snprintf(why, sizeof why, "%s", bt_last_error());
    const long said = bt_remote_http_status(r); /* 0 (no answer), 409 or a 5xx */
    rm_sleep(rm_backoff(failures));
    failures++;
    if ((st = head(r, path, name, &w))) return st;
    if (w.complete) return complete_there(&w, size, what, fpath); /* a complete whose answer was lost */
    /* all there and still refused: another PUT still open on the server
     * passes, a missing evaluation bundle does not */
    if ((uint64_t)w.offset == size && said == 409 && ++refusals > 2) return bt_fail(BT_E_ARG, "%s", why);
    offset = (uint64_t)w.offset; /* bytes lost in a restart are sent again */
  }
}

bt_status bt_remote_check_file(const char *name, const char *path) {
  const int idx = name ? name_index(name) : -1;
  if (idx < 0) return bt_fail(BT_E_ARG, "upload: the name is eval, train, val or test, not '%s'", name ? name : "");
  int fd;
  uint64_t size;
  bt_status st = bt_file_open_read(path, &fd, &size);
  if (st) return st;
  st = check_file(fd, size, path, idx);
  close(fd);
  return st;
}

bt_status bt_remote_upload(bt_remote *r, const char *name, const char *path, bt_remote_progress_fn progress,
                           void *user, bt_remote_upload_result *res) {
  bt_remote_upload_result dummy;
  if (!res) res = &dummy;
  memset(res, 0, sizeof *res);
  const int idx = name ? name_index(name) : -1;
  if (idx < 0) return bt_fail(BT_E_ARG, "upload: the name is eval, train, val or test, not '%s'", name ? name : "");
  int fd;
  uint64_t size;
  bt_status st = bt_file_open_read(path, &fd, &size);
  if (st) return st;
  res->size = size;
  st = check_file(fd, size, path, idx);
  if (!st) st = upload_fd(r, name, path, fd, size, progress, user, res);
  close(fd);
  return st;
}

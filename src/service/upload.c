/* Uploads: PUT streams a file's bytes to DIR/jobs/<id>/<name>.part at the
 * offset the client names (which must be the bytes received so far), HEAD
 * says how far it got, and complete verifies the whole container (size,
 * BLAKE2b-256, kind, parameters, key set) before the file takes its name.
 * The container header, the first 88 bytes, is checked before a byte is
 * written: a secret bundle never reaches the disk. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "service/internal.h"

static bt_io_kind kind_of(svc_file f) { return f == SVC_EVAL ? BT_IO_EVAL_BUNDLE : BT_IO_DATASET; }

static uint64_t limit_of(const bt_service *s, svc_file f) {
  return f == SVC_EVAL ? s->o.max_eval_bytes : s->o.max_data_bytes;
}

uint64_t svc_part_size(const char *part) {
  uint8_t h[BT_IO_HEADER_BYTES];
  bt_io_info info;
  const int fd = open(part, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  const ssize_t n = fd >= 0 ? read(fd, h, sizeof h) : -1;
  if (fd >= 0) close(fd);
  if (n != (ssize_t)sizeof h || bt_io_header_info(h, sizeof h, &info)) {
    bt_clear_error();
    return 0;
  }
  return info.payload_bytes + BT_IO_HEADER_BYTES;
}

void svc_upload_head(bt_service *s, svc_request *r) {
  pthread_mutex_lock(&s->mu);
  const svc_upload u = r->job->up[r->file];
  pthread_mutex_unlock(&s->mu);
  r->reply.status = 200;
  snprintf(r->reply.offset_header, sizeof r->reply.offset_header, "%llu", (unsigned long long)u.received);
  if (u.size) snprintf(r->reply.length_header, sizeof r->reply.length_header, "%llu", (unsigned long long)u.size);
  snprintf(r->reply.complete_header, sizeof r->reply.complete_header, "%d", u.complete);
}

void svc_upload_begin(bt_service *s, svc_request *r, const char *offset) {
  char *end = NULL;
  errno = 0;
  const unsigned long long off = offset ? strtoull(offset, &end, 10) : 0;
  if (!offset || !*offset || *end || errno || offset[0] == '-')
    return svc_error(&r->reply, 400, "PUT needs ?offset=N, the bytes received so far (HEAD says)");
  char part[SVC_PATH];
  if (svc_upload_path(s, r->job->id, r->file, 1, part)) return svc_error(&r->reply, 500, "%s", bt_last_error());
  pthread_mutex_lock(&s->mu);
  svc_upload *u = &r->job->up[r->file];
  if (u->complete) {
    pthread_mutex_unlock(&s->mu);
    return svc_error(&r->reply, 409, "%s is complete already", svc_file_name(r->file));
  }
  if (u->busy) {
    pthread_mutex_unlock(&s->mu);
    return svc_error(&r->reply, 409, "another upload of %s is in progress", svc_file_name(r->file));
  }
  if (r->job->state != SVC_CREATED && r->job->state != SVC_FAILED && r->file != SVC_TEST) {
    pthread_mutex_unlock(&s->mu);
    return svc_error(&r->reply, 409, "the job has started: %s cannot change", svc_file_name(r->file));
  }
  if (off != u->received) {
    snprintf(r->reply.offset_header, sizeof r->reply.offset_header, "%llu", (unsigned long long)u->received);
    pthread_mutex_unlock(&s->mu);
    return svc_error(&r->reply, 409, "offset %llu: %llu bytes of %s have been received", off,
                     (unsigned long long)u->received, svc_file_name(r->file));
  }
  u->busy = 1;
  r->busy = 1;
  r->limit = u->size ? u->size : limit_of(s, r->file);
  pthread_mutex_unlock(&s->mu);
  r->offset = off;
  r->fd = open(part, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (r->fd < 0 || ftruncate(r->fd, (off_t)off) != 0 || lseek(r->fd, (off_t)off, SEEK_SET) < 0)
    return svc_error(&r->reply, 500, "cannot write %s: %s", svc_file_name(r->file), strerror(errno));
}

static int write_all(int fd, const uint8_t *b, size_t n) {
  while (n) {
    const ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    b += w, n -= (size_t)w;
  }
  return 0;
}

/* The header, once the first 88 bytes are in: the right kind, not a
 * secret, a declared size within the limit. */
static void check_header(bt_service *s, svc_request *r) {
  bt_io_info info;
  if (bt_io_header_info(r->head, sizeof r->head, &info))
    return svc_error(&r->reply, 422, "%s: %s", svc_file_name(r->file), bt_last_error());
  if (info.kind == BT_IO_SECRET_BUNDLE || info.kind == BT_IO_SECRET_KEY)
    return svc_error(&r->reply, 422, "%s: this is a secret bundle, which must never leave the client: refused, "
                                     "nothing of it was stored", svc_file_name(r->file));
  if (info.kind != kind_of(r->file))
    return svc_error(&r->reply, 422, "%s: %s expected, this is %s", svc_file_name(r->file),
                     bt_pipeline_kind_name(kind_of(r->file)), bt_pipeline_kind_name(info.kind));
  const uint64_t size = info.payload_bytes + BT_IO_HEADER_BYTES;
  if (size > limit_of(s, r->file))
    return svc_error(&r->reply, 413, "%s: %llu bytes, over the limit of %llu", svc_file_name(r->file),
                     (unsigned long long)size, (unsigned long long)limit_of(s, r->file));
  pthread_mutex_lock(&s->mu);
  r->job->up[r->file].size = size;
  pthread_mutex_unlock(&s->mu);
  r->limit = size;
  if (write_all(r->fd, r->head, sizeof r->head))
    return svc_error(&r->reply, 500, "cannot write %s: %s", svc_file_name(r->file), strerror(errno));
  r->written += sizeof r->head;
}

void svc_upload_data(bt_service *s, svc_request *r, const char *data, size_t size) {
  const uint8_t *b = (const uint8_t *)data;
  if (r->offset + r->written < BT_IO_HEADER_BYTES) {
    const size_t take = size < sizeof r->head - r->head_len ? size : sizeof r->head - r->head_len;
    memcpy(r->head + r->head_len, b, take);
    r->head_len += take;
    b += take, size -= take;
    if (r->head_len < sizeof r->head) return;
    check_header(s, r);
    if (r->replied || r->reply.status) return;
  }
  if (!size) return;
  if (r->offset + r->written + size > r->limit)
    return svc_error(&r->reply, 413, "%s: more bytes than the container's %llu", svc_file_name(r->file),
                     (unsigned long long)r->limit);
  if (write_all(r->fd, b, size))
    return svc_error(&r->reply, 507, "cannot write %s: %s", svc_file_name(r->file), strerror(errno));
  r->written += size;
  pthread_mutex_lock(&s->mu);
  r->job->up[r->file].received = r->offset + r->written;
  pthread_mutex_unlock(&s->mu);
}

void svc_upload_end(bt_service *s, svc_request *r, int aborted) {
  if (r->fd >= 0) {
    /* an upload refused for its content keeps nothing of this request;
     * one cut short keeps what arrived (a prefix of the file) */
    const int refused = r->reply.status >= 400 && r->reply.status != 500 && r->reply.status != 507;
    uint64_t keep = refused ? r->offset : r->offset + r->written;
    /* a part file is empty or holds a whole, checked header */
    if (keep < BT_IO_HEADER_BYTES) keep = 0;
    if (ftruncate(r->fd, (off_t)keep) != 0 || fdatasync(r->fd) != 0)
      if (!r->reply.status) svc_error(&r->reply, 507, "cannot write %s: %s", svc_file_name(r->file), strerror(errno));
    close(r->fd);
    r->fd = -1;
    pthread_mutex_lock(&s->mu);
    svc_upload *u = &r->job->up[r->file];
    u->received = keep;
    if (keep < BT_IO_HEADER_BYTES) u->size = 0;
    if (!r->job->deleted) (void)svc_db_save(s, r->job);
    pthread_mutex_unlock(&s->mu);
  }
  if (r->busy) {
    pthread_mutex_lock(&s->mu);
    r->job->up[r->file].busy = 0;
    pthread_mutex_unlock(&s->mu);
    r->busy = 0;
  }
  if (aborted || r->reply.status) return;
  r->reply.status = 200;
  r->reply.body = json_object_new_object();
  json_object_object_add(r->reply.body, "received", json_object_new_int64((int64_t)(r->offset + r->written)));
  snprintf(r->reply.offset_header, sizeof r->reply.offset_header, "%llu", (unsigned long long)(r->offset + r->written));
}

json_object *svc_body_json(svc_request *r) {
  json_tokener *t = json_tokener_new();
  json_object *o = t && r->body_len ? json_tokener_parse_ex(t, r->body, (int)r->body_len) : NULL;
  const int ok = o && json_tokener_get_error(t) == json_tokener_success && json_object_is_type(o, json_type_object);
  if (t) json_tokener_free(t);
  if (!r->body_len) return json_object_new_object();
  if (ok) return o;
  if (o) json_object_put(o);
  svc_error(&r->reply, 400, "the body is not a JSON object");
  return NULL;
}

/* BLAKE2b-256 of a file, streamed. */
static bt_status file_hash(const char *path, uint8_t out[32]) {
  int fd;
  uint64_t size;
  bt_status st = bt_file_open_read(path, &fd, &size);
  if (st) return st;
  crypto_generichash_state h;
  crypto_generichash_init(&h, NULL, 0, 32);
  uint8_t *buf = malloc(1 << 20);
  ssize_t n = buf ? 0 : -1;
  while (buf && (n = read(fd, buf, 1 << 20)) > 0) crypto_generichash_update(&h, buf, (size_t)n);
  free(buf);
  close(fd);
  if (n < 0) return bt_fail(BT_E_IO, "cannot read the upload: %s", strerror(errno));
  crypto_generichash_final(&h, out, 32);
  return BT_OK;
}

/* The container as a whole, against the job: the evaluation bundle's
 * parameters (and whether INSECURE ones are accepted), a dataset's key
 * set, parameters and role. */
static int check_container(bt_service *s, svc_request *r, const char *part, svc_job *snap) {
  if (r->file == SVC_EVAL) {
    bt_ckks_params *p = NULL;
    bt_job_tag tag;
    if (bt_pipeline_load_eval_params(part, s->o.allow_insecure ? BT_ALLOW_INSECURE : 0u, &p, &tag)) {
      svc_error(&r->reply, 422, "eval: %s", bt_last_error());
      return 0;
    }
    memcpy(snap->params_hash, bt_ckks_params_hash(p), BT_PARAMS_HASH_BYTES);
    snap->tag = tag;
    bt_ckks_params_free(p);
    return 1;
  }
  bt_pipeline_summary sum;
  if (bt_pipeline_summarize(part, &sum)) {
    svc_error(&r->reply, 422, "%s: %s", svc_file_name(r->file), bt_last_error());
    return 0;
  }
  static const int role[SVC_NFILES] = {0, BT_SET_TRAIN, BT_SET_VAL, BT_SET_TEST};
  if (sum.info.kind != BT_IO_DATASET) {
    svc_error(&r->reply, 422, "%s: not an encrypted dataset", svc_file_name(r->file));
    return 0;
  }
  if (memcmp(sum.info.params_hash, snap->params_hash, BT_PARAMS_HASH_BYTES) || !sum.has_tag ||
      memcmp(&sum.tag, &snap->tag, sizeof sum.tag)) {
    svc_error(&r->reply, 422, "%s: encrypted under another key set than the job's evaluation bundle",
              svc_file_name(r->file));
    return 0;
  }
  if (sum.role != role[r->file]) {
    svc_error(&r->reply, 422, "%s: a %s set, not a %s set", svc_file_name(r->file),
              sum.role >= 1 && sum.role <= 3 ? bt_set_role_name((bt_set_role)sum.role) : "unknown",
              bt_set_role_name((bt_set_role)role[r->file]));
    return 0;
  }
  return 1;
}

void svc_upload_complete(bt_service *s, svc_request *r) {
  json_object *o = svc_body_json(r), *v;
  if (!o) return;
  const uint64_t size = json_object_object_get_ex(o, "size", &v) ? (uint64_t)json_object_get_int64(v) : 0;
  char want[65] = "";
  if (json_object_object_get_ex(o, "blake2b", &v) && json_object_is_type(v, json_type_string))
    snprintf(want, sizeof want, "%s", json_object_get_string(v));
  json_object_put(o);
  if (strlen(want) != 64 || strspn(want, "0123456789abcdef") != 64)
    return svc_error(&r->reply, 400, "complete needs {\"size\": N, \"blake2b\": \"<64 lowercase hex digits>\"}");
  char part[SVC_PATH], final[SVC_PATH];
  if (svc_upload_path(s, r->job->id, r->file, 1, part) || svc_upload_path(s, r->job->id, r->file, 0, final))
    return svc_error(&r->reply, 500, "%s", bt_last_error());
  pthread_mutex_lock(&s->mu);
  svc_upload *u = &r->job->up[r->file];
  svc_job snap = *r->job;
  const char *why = u->complete ? "is complete already"
                    : u->busy   ? "is being uploaded"
                    : !u->size || u->received != u->size ? "is not all there"
                    : r->file != SVC_EVAL && !r->job->up[SVC_EVAL].complete ? "needs the evaluation bundle first"
                                                                            : NULL;
  if (!why) u->busy = 1;
  pthread_mutex_unlock(&s->mu);
  if (why) {
    snprintf(r->reply.offset_header, sizeof r->reply.offset_header, "%llu", (unsigned long long)snap.up[r->file].received);
    return svc_error(&r->reply, 409, "%s %s (%llu of %llu bytes)", svc_file_name(r->file), why,
                     (unsigned long long)snap.up[r->file].received, (unsigned long long)snap.up[r->file].size);
  }
  int ok = 0;
  uint8_t got[32];
  char hex[65];
  if (size != snap.up[r->file].size) {
    svc_error(&r->reply, 422, "%s: %llu bytes received, the client says %llu", svc_file_name(r->file),
              (unsigned long long)snap.up[r->file].size, (unsigned long long)size);
  } else if (file_hash(part, got)) {
    svc_error(&r->reply, 500, "%s", bt_last_error());
  } else if (svc_hex(got, 32, hex), strcmp(hex, want)) {
    svc_error(&r->reply, 422, "%s: BLAKE2b mismatch (the bytes received are not the client's file)",
              svc_file_name(r->file));
  } else if (check_container(s, r, part, &snap)) {
    if (rename(part, final) != 0) svc_error(&r->reply, 500, "cannot keep %s: %s", svc_file_name(r->file), strerror(errno));
    else ok = 1;
  }
  pthread_mutex_lock(&s->mu);
  u->busy = 0;
  if (ok) {
    u->complete = 1;
    if (r->file == SVC_EVAL) {
      memcpy(r->job->params_hash, snap.params_hash, sizeof snap.params_hash);
      r->job->tag = snap.tag;
    }
  } else if (r->reply.status == 422) {
    /* refused content: the upload starts again from nothing */
    unlink(part);
    u->received = u->size = 0;
  }
  if (!r->job->deleted) (void)svc_db_save(s, r->job);
  pthread_mutex_unlock(&s->mu);
  if (!ok) return;
  r->reply.status = 200;
  r->reply.body = json_object_new_object();
  json_object_object_add(r->reply.body, "name", json_object_new_string(svc_file_name(r->file)));
  json_object_object_add(r->reply.body, "kind", json_object_new_string(bt_pipeline_kind_name(kind_of(r->file))));
  json_object_object_add(r->reply.body, "size", json_object_new_int64((int64_t)size));
}

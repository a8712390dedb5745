/* An evaluation bundle's parameters and tag without its keys
 * (bt_pipeline_load_eval_params): the service checks an uploaded bundle with
 * it before any training loads the whole bundle. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

typedef struct eval_head {
  bt_ckks_params *p;
  bt_job_tag *tag;
} eval_head;

static bt_status eh_parse(bt_io_reader *r, const bt_ckks_params *unused, unsigned flags, void *out) {
  (void)unused;
  eval_head *h = out;
  bt_io_get_bytes(r, h->tag->keyset, BT_KEYSET_ID_BYTES);
  h->tag->batch = bt_io_get_int(r, 1, 65536, "rows per batch");
  h->tag->features = bt_io_get_int(r, 2, 1 << 20, "features");
  h->tag->classes = bt_io_get_int(r, 2, 4096, "classes");
  if (bt_io_get_object(r, &bt_io_params_codec, NULL, flags, &h->p, "the parameters")) return bt_io_reader_status(r);
  if (memcmp(bt_ckks_params_hash(h->p), bt_io_reader_params_hash(r), BT_PARAMS_HASH_BYTES) != 0)
    return bt_io_reader_fail(r, BT_E_FORMAT, "the header's parameter hash does not match the parameters inside");
  /* the keys: read (the checksum covers them) but not built */
  enum { CHUNK = 1 << 16 };
  uint8_t *scratch = malloc(CHUNK);
  if (!scratch) return bt_io_reader_fail(r, BT_E_NOMEM, "out of memory");
  for (uint64_t left; !bt_io_reader_status(r) && (left = bt_io_remaining(r)) > 0;)
    bt_io_get_bytes(r, scratch, left < CHUNK ? (size_t)left : CHUNK);
  free(scratch);
  return bt_io_reader_status(r);
}

static void eh_discard(void *out) {
  eval_head *h = out;
  bt_ckks_params_free(h->p);
  h->p = NULL;
}

static bt_status eh_measure(const void *obj, uint64_t *payload) {
  (void)obj, (void)payload;
  return bt_fail(BT_E_UNSUPPORTED, "an evaluation bundle's head is read, never written");
}

static bt_status eh_emit(bt_io_writer *w, const void *obj) {
  (void)obj;
  return bt_io_writer_set_error(w, bt_fail(BT_E_UNSUPPORTED, "an evaluation bundle's head is read, never written"));
}

bt_status bt_pipeline_load_eval_params(const char *path, unsigned flags, bt_ckks_params **p, bt_job_tag *tag) {
  static const bt_io_codec eh_codec = {BT_IO_EVAL_BUNDLE, 0, eh_measure, eh_emit, eh_parse, eh_discard};
  *p = NULL;
  memset(tag, 0, sizeof *tag);
  eval_head h = {NULL, tag};
  const bt_status st = bt_io_load(&eh_codec, path, NULL, flags, &h);
  if (!st) *p = h.p;
  return st;
}

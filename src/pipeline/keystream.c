/* An evaluation bundle written while its keys are made (internal.h,
 * bt_pl_save_eval_stream): `blindtuner keygen` never holds the bundle's
 * switching keys in memory.  The bytes are those of the EVAL_BUNDLE
 * container (docs/FORMAT.md): tag | PARAMS | has_encaps | [ENCAPS |
 * SWITCH_KEY] | EVAL_KEYS, where the EVAL_KEYS frame (has_relin, count,
 * then the keys' SWITCH_KEY payloads) is emitted key by key: `threads` keys
 * are made at a time from their seeds into buffers that are reused, then
 * written in the plan's order. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

typedef struct stream {
  const bt_pl_key_stream *ks;
  const bt_ckks_params *p;
  bt_switch_key **keys; /* threads buffers, reused while the level stays */
  int nbuf;
} stream;

/* ---- the EVAL_KEYS frame, made as it is written ---- */
static bt_status keys_measure(const void *obj, uint64_t *payload) {
  const stream *s = obj;
  *payload = 4 + 4;
  for (size_t i = 0; i < s->ks->nkeys; i++) {
    const uint64_t b = bt_io_switch_key_bytes(s->p, s->ks->levels[i]);
    if (!b) return bt_fail(BT_E_ARG, "key %zu: level %d out of range", i, s->ks->levels[i]);
    *payload += b;
  }
  return BT_OK;
}

static bt_status keys_emit(bt_io_writer *w, const void *obj) {
  const stream *s = obj;
  const bt_pl_key_stream *ks = s->ks;
  const int relin = ks->nkeys > 0 && ks->plan[0] == 0;
  bt_io_put_u32(w, relin ? 1u : 0u);
  bt_io_put_u32(w, (uint32_t)(ks->nkeys - (size_t)relin));
  for (size_t i = 0; i < ks->nkeys && !bt_io_writer_status(w); i += (size_t)s->nbuf) {
    const int cnt = ks->nkeys - i < (size_t)s->nbuf ? (int)(ks->nkeys - i) : s->nbuf;
    bt_status sts[64] = {BT_OK}; /* each key's status (nbuf <= 64): no lock needed */
#pragma omp parallel for num_threads(cnt) schedule(static, 1)
    for (int t = 0; t < cnt; t++)
      sts[t] = bt_keygen_switch_seeded(ks->sk, ks->plan[i + (size_t)t], ks->levels[i + (size_t)t],
                                       ks->seeds[i + (size_t)t], &s->keys[t]);
    for (int t = 0; t < cnt; t++)
      if (sts[t]) return bt_io_writer_set_error(w, sts[t]);
    for (int t = 0; t < cnt && !bt_io_writer_status(w); t++) bt_io_switch_key_codec.emit(w, s->keys[t]);
    if (!bt_io_writer_status(w) && ks->progress &&
        ks->progress(ks->user, "key", (int)(i + (size_t)cnt), (int)ks->nkeys))
      return bt_io_writer_set_error(w, bt_fail(BT_E_ARG, "cancelled"));
  }
  return bt_io_writer_status(w);
}

static const bt_io_codec keys_codec = {BT_IO_EVAL_KEYS, 0, keys_measure, keys_emit, NULL, NULL};

/* ---- the bundle around it, as files.c's evaluation bundle ---- */
static bt_status bundle_measure(const void *obj, uint64_t *payload) {
  const stream *s = obj;
  const bt_pl_key_stream *ks = s->ks;
  uint64_t n = TAG_BYTES + 4;
  bt_status st = bt_pl_check_tag_fields(&ks->tag);
  if (!st && !ks->to_sparse != !ks->to_dense) st = bt_fail(BT_E_ARG, "encapsulation keys come in pairs");
  if (!st) st = bt_io_object_bytes(&bt_io_params_codec, s->p, &n);
  if (!st && ks->to_sparse) st = bt_io_object_bytes(&bt_io_encaps_key_codec, ks->to_sparse, &n);
  if (!st && ks->to_dense) st = bt_io_object_bytes(&bt_io_switch_key_codec, ks->to_dense, &n);
  if (!st) st = bt_io_object_bytes(&keys_codec, s, &n);
  *payload = n;
  return st;
}

static bt_status bundle_emit(bt_io_writer *w, const void *obj) {
  const stream *s = obj;
  const bt_pl_key_stream *ks = s->ks;
  bt_pl_put_tag(w, &ks->tag);
  bt_io_put_object(w, &bt_io_params_codec, s->p);
  bt_io_put_u32(w, ks->to_sparse ? 1u : 0u);
  if (ks->to_sparse) {
    bt_io_put_object(w, &bt_io_encaps_key_codec, ks->to_sparse);
    bt_io_put_object(w, &bt_io_switch_key_codec, ks->to_dense);
  }
  bt_io_put_object(w, &keys_codec, s);
  return bt_io_writer_status(w);
}

static const bt_io_codec bundle_codec = {BT_IO_EVAL_BUNDLE, 0, bundle_measure, bundle_emit, NULL, NULL};

bt_status bt_pl_save_eval_stream(const char *path, const bt_pl_key_stream *ks) {
  if (!ks->sk || !ks->plan || !ks->levels || !ks->seeds || ks->nkeys > UINT32_MAX)
    return bt_fail(BT_E_ARG, "%s: no keys to make", path);
  stream s = {.ks = ks, .p = ks->sk->params};
  s.nbuf = ks->threads < 1 ? 1 : ks->threads > 64 ? 64 : ks->threads;
  if ((size_t)s.nbuf > ks->nkeys) s.nbuf = ks->nkeys ? (int)ks->nkeys : 1;
  s.keys = calloc((size_t)s.nbuf, sizeof *s.keys);
  if (!s.keys) return bt_fail(BT_E_NOMEM, "out of memory");
  const bt_status st = bt_io_save(&bundle_codec, path, &s, bt_ckks_params_hash(s.p));
  for (int t = 0; t < s.nbuf; t++) bt_switch_key_free(s.keys[t]);
  free(s.keys);
  return st;
}

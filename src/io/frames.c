/* Frames: objects embedded in a container's payload (a u64 length, then
 * the object's own payload), and the view of the writer and reader that
 * the layers above io get (include/blindtuner/io.h, "composite
 * containers"). */
#include "io/internal.h"

uint64_t bt_io_remaining(const bt_io_reader *r) { return r->framed ? r->frame_left : r->avail + r->unread; }

bt_status bt_io_expect_remaining(bt_io_reader *r, uint64_t want, const char *what) {
  if (r->st) return r->st;
  uint64_t have = bt_io_remaining(r);
  if (have != want)
    return bt_io_reader_fail(r, BT_E_FORMAT, "%s needs %llu more payload bytes, the payload has %llu",
                             what, (unsigned long long)want, (unsigned long long)have);
  return BT_OK;
}

bt_status bt_io_frame_begin(bt_io_reader *r, uint64_t len, const char *what) {
  if (r->st) return r->st;
  if (r->framed) return bt_io_reader_fail(r, BT_E_ARG, "internal error: nested frames");
  if (len > bt_io_remaining(r))
    return bt_io_reader_fail(r, BT_E_FORMAT, "%s of %llu bytes runs past the payload (%llu bytes left)", what,
                             (unsigned long long)len, (unsigned long long)bt_io_remaining(r));
  r->framed = 1;
  r->frame_left = len;
  return BT_OK;
}

bt_status bt_io_frame_end(bt_io_reader *r, const char *what) {
  const uint64_t left = r->frame_left;
  r->framed = 0;
  r->frame_left = 0;
  if (!r->st && left)
    return bt_io_reader_fail(r, BT_E_FORMAT, "%llu unexpected bytes at the end of %s", (unsigned long long)left,
                             what);
  return r->st;
}

/* ---- the writer and reader as the layers above see them ---- */
bt_status bt_io_writer_status(const bt_io_writer *w) { return w->st; }

bt_status bt_io_writer_set_error(bt_io_writer *w, bt_status s) {
  if (!w->st) w->st = s;
  return w->st;
}

bt_status bt_io_reader_status(const bt_io_reader *r) { return r->st; }

const uint8_t *bt_io_reader_params_hash(const bt_io_reader *r) { return r->params_hash; }

bt_status bt_io_object_bytes(const bt_io_codec *c, const void *obj, uint64_t *n) {
  uint64_t m;
  bt_status st = c->measure(obj, &m);
  if (!st) *n += 8 + m;
  return st;
}

void bt_io_put_object(bt_io_writer *w, const bt_io_codec *c, const void *obj) {
  uint64_t m;
  if (w->st) return;
  bt_status st = c->measure(obj, &m);
  if (st) {
    w->st = st;
    return;
  }
  bt_io_put_u64(w, m);
  if (!w->st && (st = c->emit(w, obj)) && !w->st) w->st = st;
}

bt_status bt_io_get_object(bt_io_reader *r, const bt_io_codec *c, const bt_ckks_params *p, unsigned flags,
                           void *out, const char *what) {
  const uint64_t len = bt_io_get_u64(r);
  if (bt_io_frame_begin(r, len, what)) return r->st;
  bt_status st = c->parse(r, p, flags, out);
  if (st && !r->st) r->st = st;
  if (bt_io_frame_end(r, what)) c->discard(out);
  return r->st;
}

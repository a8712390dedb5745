/* What a pipeline file holds, for `blindtuner inspect`: the header (its
 * checksum verified over the whole file) and the first fields of the
 * payload, read as raw bytes; never key material. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/internal.h"

static uint32_t rd32(const uint8_t *b, size_t len, size_t off) {
  if (off + 4 > len) return 0;
  return (uint32_t)b[off] | (uint32_t)b[off + 1] << 8 | (uint32_t)b[off + 2] << 16 | (uint32_t)b[off + 3] << 24;
}

/* logn and name from a PARAMS payload at b[off..len) */
static void params_summary(const uint8_t *b, size_t len, size_t off, bt_pipeline_summary *s) {
  s->logn = (int)rd32(b, len, off);
  const uint32_t nq = rd32(b, len, off + 4);
  if (nq > BT_MAX_PRIMES) return;
  const size_t at = off + 8 + 4 * (size_t)nq + 6 * 4;
  if (at >= len) return;
  size_t nl = b[at];
  if (nl > sizeof s->params_name - 1 || at + 1 + nl > len) return;
  for (size_t i = 0; i < nl; i++) s->params_name[i] = (char)(b[at + 1 + i] >= 0x20 && b[at + 1 + i] < 0x7f ? b[at + 1 + i] : '?');
  s->params_name[nl] = '\0';
}

static void summarize_payload(const uint8_t *b, size_t len, bt_pipeline_summary *s);

bt_status bt_pipeline_summarize(const char *path, bt_pipeline_summary *s) {
  memset(s, 0, sizeof *s);
  s->role = s->rows = s->batches = s->epoch = s->flag = s->logn = -1;
  bt_status st = bt_io_inspect(path, &s->info);
  if (st) return st;
  /* The first bytes of the payload: a secret bundle's include the start of
   * the secret key, so they are read with no stdio buffer in between, never
   * printed, and wiped before returning.  Opened like every input (a
   * regular file only, without blocking). */
  uint8_t b[4096];
  size_t len = 0;
  int fd;
  uint64_t size;
  if ((st = bt_file_open_read(path, &fd, &size))) return st;
  for (ssize_t r; len < sizeof b; len += (size_t)r) {
    r = pread(fd, b + len, sizeof b - len, (off_t)(BT_IO_HEADER_BYTES + len));
    if (r < 0 && errno == EINTR) r = 0;
    else if (r <= 0) break;
  }
  close(fd);
  summarize_payload(b, len, s);
  bt_wipe(b, sizeof b);
  return BT_OK;
}

static void summarize_payload(const uint8_t *b, size_t len, bt_pipeline_summary *s) {
  const bt_io_kind k = s->info.kind;
  if (k == BT_IO_PARAMS) {
    params_summary(b, len, 0, s);
    return;
  }
  if (k < BT_IO_SECRET_BUNDLE || len < TAG_BYTES) return;
  s->has_tag = 1;
  memcpy(s->tag.keyset, b, BT_KEYSET_ID_BYTES);
  s->tag.batch = (int)rd32(b, len, 16);
  s->tag.features = (int)rd32(b, len, 20);
  s->tag.classes = (int)rd32(b, len, 24);
  const size_t o = TAG_BYTES;
  switch (k) {
    case BT_IO_SECRET_BUNDLE:
    case BT_IO_EVAL_BUNDLE: params_summary(b, len, o + 8, s); break;
    case BT_IO_DATASET:
      s->role = (int)rd32(b, len, o);
      s->rows = (int)rd32(b, len, o + 4);
      s->batches = (int)rd32(b, len, o + 12);
      s->flag = (int)rd32(b, len, o + 16);
      break;
    case BT_IO_MODEL:
    case BT_IO_LOSS:
    case BT_IO_PLAIN_MODEL: s->epoch = (int)rd32(b, len, o); break;
    case BT_IO_CHECKPOINT:
      s->epoch = (int)rd32(b, len, o);
      s->flag = (int)rd32(b, len, o + 4);
      break;
    case BT_IO_ANSWER:
      s->epoch = (int)rd32(b, len, o);
      s->flag = (int)rd32(b, len, o + 4);
      break;
    case BT_IO_LOGITS:
      s->rows = (int)rd32(b, len, o);
      s->batches = (int)rd32(b, len, o + 4);
      break;
    default: break;
  }
}


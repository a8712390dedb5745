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

/* ---- an evaluation bundle's keys, from each key's 12-byte header ---- */
static void skip(bt_io_reader *r, uint64_t n) {
  uint8_t buf[1 << 16];
  while (n && !bt_io_reader_status(r)) {
    const size_t k = n < sizeof buf ? (size_t)n : sizeof buf;
    bt_io_get_bytes(r, buf, k);
    n -= k;
  }
}

/* A frame skipped whole; its 8 + length bytes are added to *bytes. */
static void skip_frame(bt_io_reader *r, uint64_t *bytes, const char *what) {
  const uint64_t n = bt_io_get_u64(r);
  if (!bt_io_reader_status(r) && n > bt_io_remaining(r))
    bt_io_reader_fail(r, BT_E_FORMAT, "%s: a frame of %llu bytes, %llu left", what, (unsigned long long)n,
                      (unsigned long long)bt_io_remaining(r));
  skip(r, n);
  *bytes += 8 + n;
}

static bt_status skim_keys(bt_io_reader *r, const bt_ckks_params *p, bt_pipeline_summary *s) {
  const uint64_t frame = bt_io_get_u64(r);
  if (!bt_io_reader_status(r) && frame != bt_io_remaining(r))
    return bt_io_reader_fail(r, BT_E_FORMAT, "the evaluation keys' frame of %llu bytes is not the %llu left",
                             (unsigned long long)frame, (unsigned long long)bt_io_remaining(r));
  const int has_relin = bt_io_get_int(r, 0, 1, "relinearisation-key flag");
  const uint32_t count = bt_io_get_u32(r);
  const uint64_t conj = bt_ckks_galois_conjugate(p);
  for (uint64_t i = 0; i < (uint64_t)has_relin + count && !bt_io_reader_status(r); i++) {
    const uint64_t galois = bt_io_get_u64(r);
    const uint32_t shape = bt_io_get_u32(r), rows = shape >> 16;
    if (bt_io_reader_status(r)) break;
    const int level = rows ? (int)rows - 1 : bt_ckks_max_level(p);
    const uint64_t bytes = bt_io_switch_key_bytes(p, level);
    if (!bytes || (shape & 0xffffu) != (uint32_t)bt_ckks_digits_at(p, level))
      return bt_io_reader_fail(r, BT_E_FORMAT, "switching key %llu: shape %#lx", (unsigned long long)i,
                               (unsigned long)shape);
    skip(r, bytes - 12);
    if (galois == 0) {
      s->relin_level = level, s->relin_bytes = bytes;
    } else if (galois == conj) {
      s->conj_level = level, s->conj_bytes = bytes;
    } else {
      int g = 0;
      while (g < s->ngroups && s->groups[g].level != level) g++;
      if (g == s->ngroups) {
        if (g == BT_MAX_PRIMES) return bt_io_reader_fail(r, BT_E_FORMAT, "too many key levels");
        /* keep the groups ordered, highest level first */
        while (g > 0 && s->groups[g - 1].level < level) s->groups[g] = s->groups[g - 1], g--;
        s->groups[g] = (bt_key_group){.level = level};
        s->ngroups++;
      }
      s->groups[g].count++;
      s->groups[g].bytes += bytes;
    }
  }
  return bt_io_reader_status(r);
}

static bt_status skim_parse(bt_io_reader *r, const bt_ckks_params *unused, unsigned flags, void *out) {
  (void)unused;
  bt_pipeline_summary *s = out;
  uint8_t tag[TAG_BYTES];
  bt_io_get_bytes(r, tag, sizeof tag); /* summarised from the first bytes already */
  bt_ckks_params *p = NULL;
  bt_status st = bt_io_get_object(r, &bt_io_params_codec, NULL, flags, &p, "the parameters");
  if (st) return st;
  s->max_level = bt_ckks_max_level(p);
  s->encaps = bt_io_get_int(r, 0, 1, "encapsulation flag");
  if (s->encaps == 1) {
    skip_frame(r, &s->encaps_bytes, "the encapsulation key");
    skip_frame(r, &s->encaps_bytes, "the key back to the dense secret");
  }
  st = bt_io_reader_status(r);
  if (!st) st = skim_keys(r, p, s);
  bt_ckks_params_free(p);
  return st;
}

static void skim_discard(void *out) { (void)out; }

static const bt_io_codec skim_codec = {BT_IO_EVAL_BUNDLE, 0, NULL, NULL, skim_parse, skim_discard};

bt_status bt_pipeline_summarize(const char *path, bt_pipeline_summary *s) {
  memset(s, 0, sizeof *s);
  s->role = s->rows = s->batches = s->epoch = s->flag = s->logn = -1;
  s->max_level = s->relin_level = s->conj_level = -1;
  bt_io_kind kind = 0;
  bt_status st = bt_io_peek_kind(path, &kind);
  if (!st && kind == BT_IO_EVAL_BUNDLE) {
    /* one pass: the keys' headers read while the checksum is verified */
    uint8_t h[BT_IO_HEADER_BYTES];
    int fd;
    uint64_t size;
    if ((st = bt_file_open_read(path, &fd, &size))) return st;
    const ssize_t got = pread(fd, h, sizeof h, 0);
    close(fd);
    st = got == (ssize_t)sizeof h ? bt_io_header_info(h, sizeof h, &s->info) : bt_io_inspect(path, &s->info);
    if (!st) st = bt_io_load(&skim_codec, path, NULL, BT_ALLOW_INSECURE, s);
  } else if (!st) {
    st = bt_io_inspect(path, &s->info);
  }
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


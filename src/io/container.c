/* Container: the fixed header, the checksum, buffered payload I/O and atomic
 * file replacement (docs/FORMAT.md).
 *
 * Header (88 bytes, little endian, written field by field so neither struct
 * padding nor host byte order leaks into files):
 *   0 magic "BLNDTUNR" | 8 version u16 | 10 kind u16 | 12 flags u32
 *   | 16 parameter hash [32] | 48 payload length u64 | 56 checksum [32]
 * checksum = BLAKE2b-256(header[0..56) || payload).
 *
 * Loading checks magic, version (the rest of the layout depends on it), a
 * known kind, zero flags and the payload length against the real size, then:
 * - in memory: the checksum, the expected kind, the parameter hash, the
 *   payload, so corruption is always reported as such;
 * - from a file: the expected kind (a mix-up of files is reported at once,
 *   without reading gigabytes of keys), then the parameter hash and the
 *   payload, read in one pass and hashed as they go.  The checksum is known
 *   only at the end, so when parsing stops early the rest of the file is
 *   still hashed, and a checksum mismatch is reported in preference to what
 *   the parser saw, since a corrupted byte explains any later complaint.
 *
 * Saving writes to "<path>.tmp.<random>" in the same directory (rename is
 * atomic only within one file system), created O_EXCL | O_NOFOLLOW, fsyncs
 * it, renames it over the destination (a symlink there is replaced, never
 * followed) and fsyncs the directory; any failure unlinks the temporary.
 * Inputs are regular files only, refused without blocking otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/internal.h"

enum {
  OFF_MAGIC = 0,
  OFF_VERSION = 8,
  OFF_KIND = 10,
  OFF_FLAGS = 12,
  OFF_HASH = 16,
  OFF_LENGTH = 48,
  OFF_CHECKSUM = 56
};
_Static_assert(OFF_HASH + BT_PARAMS_HASH_BYTES == OFF_LENGTH, "parameter hash field");
_Static_assert(OFF_CHECKSUM + BT_IO_CHECKSUM_BYTES == BT_IO_HEADER_BYTES, "header size");
_Static_assert(BT_IO_HEADER_BYTES == 88, "the version-1 header is 88 bytes");
_Static_assert(BT_IO_CHECKSUM_BYTES == crypto_generichash_BYTES, "BLAKE2b-256");

static const char magic[8] = {'B', 'L', 'N', 'D', 'T', 'U', 'N', 'R'};

/* Staging buffer for file I/O: large enough that system calls are few,
 * small enough that multi-gigabyte key sets stream in constant memory. */
#define STAGE_BYTES ((size_t)1 << 20)

/* ---- little-endian fields ---- */
static void put16(uint8_t *b, uint16_t v) {
  b[0] = (uint8_t)v;
  b[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *b, uint32_t v) {
  for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *b, uint64_t v) {
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *b) { return (uint16_t)(b[0] | (unsigned)b[1] << 8); }
static uint32_t get32(const uint8_t *b) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = v << 8 | b[i];
  return v;
}
static uint64_t get64(const uint8_t *b) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
  return v;
}

/* ---- kinds and messages ---- */
static const struct {
  const char *name, *phrase;
} kinds[] = {
    {"unknown", "an unknown object"},
    {"parameters", "a parameter set"},
    {"plaintext", "a plaintext"},
    {"ciphertext", "a ciphertext"},
    {"secret key", "a secret key"},
    {"public key", "a public key"},
    {"switching key", "a switching key"},
    {"evaluation keys", "evaluation keys"},
    {"secret bundle", "a secret bundle"},
    {"evaluation bundle", "an evaluation-key bundle"},
    {"encrypted dataset", "an encrypted dataset"},
    {"encrypted model", "an encrypted model"},
    {"training checkpoint", "a training checkpoint"},
    {"encrypted validation loss", "an encrypted validation loss"},
    {"early-stopping answer", "an early-stopping answer"},
    {"decrypted model", "a decrypted model"},
    {"encrypted logits", "encrypted logits"},
    {"feature scaler", "a feature scaler"},
};
#define NKINDS (sizeof kinds / sizeof *kinds)

const char *bt_io_kind_name(bt_io_kind kind) {
  unsigned k = (unsigned)kind;
  return k < NKINDS ? kinds[k].name : kinds[0].name;
}

static const char *kind_phrase(unsigned k) { return k < NKINDS ? kinds[k].phrase : kinds[0].phrase; }

/* The word naming the input in messages. */
static const char *noun(const char *src) { return src ? "file" : "buffer"; }

bt_status bt_io_fail(const char *src, bt_status s, const char *fmt, ...) {
  char msg[448];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (src) return bt_fail(s, "%s: %s", src, msg);
  return bt_fail(s, "%s", msg);
}

bt_status bt_io_rewrap(const char *src, bt_status s, const char *what) {
  /* copied first: bt_fail formats into the buffer bt_last_error points at */
  char prev[448];
  snprintf(prev, sizeof prev, "%s", bt_last_error());
  if (!prev[0]) snprintf(prev, sizeof prev, "%s", bt_status_name(s));
  return bt_io_fail(src, s, "%s%s%s", what ? what : "", what ? ": " : "", prev);
}

static bt_status os_fail(const char *src, const char *doing) {
  return bt_io_fail(src, BT_E_IO, "%s: %s", doing, strerror(errno));
}

/* ---- header ---- */
static void header_encode(uint8_t *h, bt_io_kind kind, const uint8_t *hash, uint64_t payload) {
  memcpy(h + OFF_MAGIC, magic, sizeof magic);
  put16(h + OFF_VERSION, BT_IO_VERSION);
  put16(h + OFF_KIND, (uint16_t)kind);
  put32(h + OFF_FLAGS, 0);
  if (hash) memcpy(h + OFF_HASH, hash, BT_PARAMS_HASH_BYTES);
  else memset(h + OFF_HASH, 0, BT_PARAMS_HASH_BYTES);
  put64(h + OFF_LENGTH, payload);
  memset(h + OFF_CHECKSUM, 0, BT_IO_CHECKSUM_BYTES);
}

/* `have` header bytes at h out of a container of `total` bytes. */
static bt_status header_parse(const char *src, const uint8_t *h, uint64_t total,
                              bt_io_info *info) {
  if (total == 0) return bt_io_fail(src, BT_E_FORMAT, "empty %s", noun(src));
  if (total < BT_IO_HEADER_BYTES)
    return bt_io_fail(src, BT_E_FORMAT,
                      "truncated: %llu bytes, shorter than the %d-byte container header",
                      (unsigned long long)total, BT_IO_HEADER_BYTES);
  if (memcmp(h + OFF_MAGIC, magic, sizeof magic) != 0)
    return bt_io_fail(src, BT_E_FORMAT, "not a BlindTuner container (bad magic)");
  unsigned version = get16(h + OFF_VERSION);
  if (version != BT_IO_VERSION)
    return bt_io_fail(src, BT_E_FORMAT,
                      "container format version %u is not supported (this build reads version %d)",
                      version, BT_IO_VERSION);
  unsigned kind = get16(h + OFF_KIND);
  if (kind < 1 || kind >= NKINDS)
    return bt_io_fail(src, BT_E_FORMAT, "unknown object kind %u", kind);
  uint32_t flags = get32(h + OFF_FLAGS);
  if (flags != 0)
    return bt_io_fail(src, BT_E_FORMAT, "reserved header flags 0x%08x are set", (unsigned)flags);
  uint64_t payload = get64(h + OFF_LENGTH), present = total - BT_IO_HEADER_BYTES;
  if (payload > present)
    return bt_io_fail(src, BT_E_FORMAT,
                      "truncated: the header announces %llu payload bytes, only %llu are present",
                      (unsigned long long)payload, (unsigned long long)present);
  if (payload < present)
    return bt_io_fail(src, BT_E_FORMAT, "%llu unexpected bytes after the %llu-byte payload",
                      (unsigned long long)(present - payload), (unsigned long long)payload);
  info->version = (int)version;
  info->kind = (bt_io_kind)kind;
  memcpy(info->params_hash, h + OFF_HASH, BT_PARAMS_HASH_BYTES);
  info->payload_bytes = payload;
  return BT_OK;
}

bt_status bt_io_header_info(const uint8_t *h, size_t len, bt_io_info *info) {
  memset(info, 0, sizeof *info);
  if (len < BT_IO_HEADER_BYTES)
    return bt_io_fail(NULL, BT_E_FORMAT, "%zu bytes, shorter than the %d-byte container header", len,
                      BT_IO_HEADER_BYTES);
  /* the whole container as the header declares it: the payload is then
   * checked against itself only */
  const uint64_t payload = get64(h + OFF_LENGTH);
  if (payload > UINT64_MAX - BT_IO_HEADER_BYTES)
    return bt_io_fail(NULL, BT_E_FORMAT, "a payload of %llu bytes", (unsigned long long)payload);
  return header_parse(NULL, h, payload + BT_IO_HEADER_BYTES, info);
}

static void hash_start(crypto_generichash_state *s, const uint8_t *h) {
  crypto_generichash_init(s, NULL, 0, BT_IO_CHECKSUM_BYTES);
  crypto_generichash_update(s, h, OFF_CHECKSUM);
}

static bt_status checksum_verdict(const char *src, crypto_generichash_state *s, const uint8_t *h) {
  uint8_t sum[BT_IO_CHECKSUM_BYTES];
  crypto_generichash_final(s, sum, sizeof sum);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  /* fuzz builds only: let mutated payloads reach the field validation */
  (void)h;
  if (0)
#else
  if (memcmp(sum, h + OFF_CHECKSUM, sizeof sum) != 0)
#endif
    return bt_io_fail(src, BT_E_FORMAT, "checksum mismatch: the %s is corrupted", noun(src));
  return BT_OK;
}

static bt_status check_kind(const char *src, const bt_io_info *info, bt_io_kind want) {
  if (info->kind != want)
    return bt_io_fail(src, BT_E_FORMAT, "%s holds %s, expected %s", noun(src),
                      kind_phrase(info->kind), kind_phrase(want));
  return BT_OK;
}

static bt_status check_params(const char *src, const bt_io_info *info, const bt_ckks_params *p) {
  static const uint8_t zero[BT_PARAMS_HASH_BYTES];
  /* bundles carry their parameters; their parser checks the hash */
  if (!p && (info->kind == BT_IO_SECRET_BUNDLE || info->kind == BT_IO_EVAL_BUNDLE)) return BT_OK;
  /* plaintext heads may be used without the key set's parameters */
  if (!p && (info->kind == BT_IO_PLAIN_MODEL || info->kind == BT_IO_SCALER)) return BT_OK;
  if (info->kind == BT_IO_PARAMS) {
    if (memcmp(info->params_hash, zero, sizeof zero) != 0)
      return bt_io_fail(src, BT_E_FORMAT, "a parameter container must carry a zero parameter hash");
    return BT_OK;
  }
  if (!p) return bt_io_fail(src, BT_E_ARG, "no parameters given to load %s", kind_phrase(info->kind));
  const uint8_t *want = bt_ckks_params_hash(p);
  if (memcmp(info->params_hash, want, BT_PARAMS_HASH_BYTES) != 0) {
    char got_hex[17], want_hex[17];
    sodium_bin2hex(got_hex, sizeof got_hex, info->params_hash, 8);
    sodium_bin2hex(want_hex, sizeof want_hex, want, 8);
    return bt_io_fail(src, BT_E_PARAMS,
                      "%s was made for other parameters (parameter hash %s..., these are %s...)",
                      kind_phrase(info->kind), got_hex, want_hex);
  }
  return BT_OK;
}

/* ---- raw file I/O ---- */
/* Reads up to n bytes; *got < n only at end of file. */
static bt_status read_full(const char *src, int fd, uint8_t *buf, size_t n, size_t *got) {
  size_t done = 0;
  *got = 0;
  while (done < n) {
    ssize_t r = read(fd, buf + done, n - done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return os_fail(src, "read failed");
    if (r == 0) break;
    done += (size_t)r;
  }
  *got = done;
  return BT_OK;
}

static bt_status write_full(const char *src, int fd, const uint8_t *buf, size_t n) {
  while (n) {
    ssize_t r = write(fd, buf, n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return os_fail(src, "write failed");
    buf += r;
    n -= (size_t)r;
  }
  return BT_OK;
}

/* A regular file only, refused without blocking otherwise (util's
 * bt_file_open_read: a FIFO or a device named as an input cannot hang the
 * loader).  Containers are streamed, never read whole: no size limit here;
 * every length inside is checked against what remains. */
static bt_status open_input(const char *path, int *fd, uint64_t *size) {
  return bt_file_open_read(path, fd, size);
}

/* Reads and parses the header of an open file of `size` bytes. */
static bt_status read_header(const char *path, int fd, uint64_t size, uint8_t *h,
                             bt_io_info *info) {
  size_t want = size < BT_IO_HEADER_BYTES ? (size_t)size : BT_IO_HEADER_BYTES, got;
  bt_status st = read_full(path, fd, h, want, &got);
  if (st) return st;
  /* a file that shrank under us reads as what is really there */
  return header_parse(path, h, got < want ? got : size, info);
}

/* ---- inspection ---- */
bt_status bt_io_inspect_buffer(const uint8_t *buf, size_t len, bt_io_info *info) {
  if (!buf && len) return bt_fail(BT_E_ARG, "NULL buffer of %zu bytes", len);
  bt_status st = header_parse(NULL, buf, len, info);
  if (st) return st;
  crypto_generichash_state s;
  hash_start(&s, buf);
  crypto_generichash_update(&s, buf + BT_IO_HEADER_BYTES, info->payload_bytes);
  return checksum_verdict(NULL, &s, buf);
}

bt_status bt_io_inspect(const char *path, bt_io_info *info) {
  int fd;
  uint64_t size;
  uint8_t h[BT_IO_HEADER_BYTES];
  bt_status st = open_input(path, &fd, &size);
  if (st) return st;
  uint8_t *chunk = NULL;
  if ((st = read_header(path, fd, size, h, info))) goto out;
  if (!(chunk = bt_alloc(STAGE_BYTES))) {
    st = BT_E_NOMEM;
    goto out;
  }
  crypto_generichash_state s;
  hash_start(&s, h);
  for (uint64_t left = info->payload_bytes; left;) {
    size_t want = left < STAGE_BYTES ? (size_t)left : STAGE_BYTES, got;
    if ((st = read_full(path, fd, chunk, want, &got))) goto out;
    if (got < want) {
      st = bt_io_fail(path, BT_E_FORMAT, "truncated while reading (the file changed?)");
      goto out;
    }
    crypto_generichash_update(&s, chunk, got);
    left -= got;
  }
  st = checksum_verdict(path, &s, h);
  bt_wipe(&s, sizeof s);
out:
  if (st == BT_E_NOMEM) st = bt_io_rewrap(path, st, NULL);
  /* the file may be a secret bundle: nothing of it stays in freed memory */
  bt_free_secret(chunk, STAGE_BYTES);
  close(fd);
  return st;
}

bt_status bt_io_peek_kind(const char *path, bt_io_kind *kind) {
  *kind = (bt_io_kind)0;
  int fd;
  uint64_t size;
  uint8_t h[BT_IO_HEADER_BYTES];
  bt_status st = open_input(path, &fd, &size);
  if (st) return st;
  size_t got;
  st = read_full(path, fd, h, sizeof h, &got);
  close(fd);
  if (st) return st;
  if (got >= OFF_HASH && !memcmp(h + OFF_MAGIC, magic, sizeof magic) && get16(h + OFF_KIND) < NKINDS)
    *kind = (bt_io_kind)get16(h + OFF_KIND);
  return BT_OK;
}

/* ---- writer ---- */
static void flush(bt_io_writer *w) {
  if (w->st || w->fd < 0 || w->len == 0) return;
  crypto_generichash_update(&w->hash, w->buf, w->len);
  w->st = write_full(w->src, w->fd, w->buf, w->len);
  w->len = 0;
}

uint8_t *bt_io_reserve(bt_io_writer *w, size_t n) {
  if (w->st) return NULL;
  if (n > w->left) {
    /* measure and emit disagree: a bug in this module, not bad data */
    w->st = bt_io_fail(w->src, BT_E_ARG, "internal error: object exceeds its announced size");
    return NULL;
  }
  w->left -= n;
  if (w->fd >= 0 && w->len + n > w->cap) {
    flush(w);
    if (w->st) return NULL;
    if (n > w->cap) {
      uint8_t *bigger = bt_alloc(n);
      if (!bigger) {
        w->st = BT_E_NOMEM;
        return NULL;
      }
      bt_free_secret(w->buf, w->cap);
      w->buf = bigger;
      w->cap = n;
    }
  }
  uint8_t *p = w->buf + w->len;
  w->len += n;
  return p;
}

void bt_io_put_u32(bt_io_writer *w, uint32_t v) {
  uint8_t *b = bt_io_reserve(w, 4);
  if (b) put32(b, v);
}

void bt_io_put_u64(bt_io_writer *w, uint64_t v) {
  uint8_t *b = bt_io_reserve(w, 8);
  if (b) put64(b, v);
}

void bt_io_put_f64(bt_io_writer *w, double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof u);
  bt_io_put_u64(w, u);
}

void bt_io_put_bytes(bt_io_writer *w, const void *src, size_t n) {
  uint8_t *b = bt_io_reserve(w, n);
  if (b && n) memcpy(b, src, n);
}

static uint64_t limb_bytes(const bt_ckks_params *p, int i) {
  return ((uint64_t)N_OF(p) * (uint64_t)bt_ckks_modulus(p, i)->bits + 7) / 8;
}

uint64_t bt_io_poly_bytes(const bt_ckks_params *p, int first, int count) {
  uint64_t s = 0;
  for (int t = 0; t < count; t++) s += limb_bytes(p, first + t);
  return s;
}

/* Coefficient j occupies bits [j*bits, (j+1)*bits) of the limb's bit
 * string, least significant bit first; the last byte is zero-padded.
 * Returns nonzero if some coefficient is not below q. */
static int pack_limb(uint8_t *out, const uint64_t *a, size_t n, uint64_t q, int bits) {
  const uint64_t mask = ((uint64_t)1 << bits) - 1;
  bt_u128 acc = 0;
  int have = 0, bad = 0;
  size_t o = 0;
  for (size_t j = 0; j < n; j++) {
    bad |= a[j] >= q;
    acc |= (bt_u128)(a[j] & mask) << have;
    have += bits;
    while (have >= 8) {
      out[o++] = (uint8_t)acc;
      acc >>= 8;
      have -= 8;
    }
  }
  if (have) out[o] = (uint8_t)acc;
  return bad;
}

/* Inverse of pack_limb; returns the index + 1 of the first coefficient not
 * below q, n + 1 if the padding bits are not zero, else 0. */
static size_t unpack_limb(const uint8_t *in, uint64_t *a, size_t n, uint64_t q, int bits) {
  const uint64_t mask = ((uint64_t)1 << bits) - 1;
  bt_u128 acc = 0;
  int have = 0;
  size_t i = 0, bad = 0;
  for (size_t j = 0; j < n; j++) {
    while (have < bits) {
      acc |= (bt_u128)in[i++] << have;
      have += 8;
    }
    uint64_t v = (uint64_t)acc & mask;
    acc >>= bits;
    have -= bits;
    a[j] = v;
    if (v >= q && !bad) bad = j + 1;
  }
  if (!bad && acc != 0) bad = n + 1;
  return bad;
}

void bt_io_put_poly(bt_io_writer *w, const bt_ckks_params *p, const uint64_t *a, int first,
                    int count, const char *what) {
  for (int t = 0; t < count && !w->st; t++) {
    const int i = first + t;
    uint8_t *out = bt_io_reserve(w, (size_t)limb_bytes(p, i));
    if (out && pack_limb(out, a + (size_t)t * N_OF(p), N_OF(p), bt_ckks_modulus(p, i)->q, bt_ckks_modulus(p, i)->bits))
      w->st = bt_io_fail(w->src, BT_E_ARG,
                         "cannot save %s: limb %d holds a coefficient not below its prime", what,
                         t);
  }
}

/* ---- reader ---- */
bt_status bt_io_reader_fail(bt_io_reader *r, bt_status s, const char *fmt, ...) {
  if (r->st) return r->st;
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return r->st = bt_io_fail(r->src, s, "%s", msg);
}

const uint8_t *bt_io_take(bt_io_reader *r, size_t n) {
  if (r->st) return NULL;
  if (n > bt_io_remaining(r)) {
    bt_io_reader_fail(r, BT_E_FORMAT, "the payload ends early (%llu bytes left, %zu needed)",
                      (unsigned long long)bt_io_remaining(r), n);
    return NULL;
  }
  if (r->avail < n) {
    /* file mode: move the leftover to the front and refill behind it */
    if (n > r->stage_cap) {
      size_t cap = n > STAGE_BYTES ? n : STAGE_BYTES;
      uint8_t *bigger = bt_alloc(cap);
      if (!bigger) {
        r->st = BT_E_NOMEM;
        return NULL;
      }
      if (r->avail) memcpy(bigger, r->cur, r->avail);
      bt_free_secret(r->stage, r->stage_cap);
      r->stage = bigger;
      r->stage_cap = cap;
    } else if (r->avail) {
      memmove(r->stage, r->cur, r->avail);
    }
    r->cur = r->stage;
    uint64_t room = r->stage_cap - r->avail;
    size_t want = (size_t)(r->unread < room ? r->unread : room), got;
    bt_status st = read_full(r->src, r->fd, r->stage + r->avail, want, &got);
    if (st) {
      r->st = st;
      return NULL;
    }
    if (got < want) {
      bt_io_reader_fail(r, BT_E_FORMAT, "truncated while reading (the file changed?)");
      return NULL;
    }
    crypto_generichash_update(&r->hash, r->stage + r->avail, got);
    r->unread -= got;
    r->avail += got;
  }
  const uint8_t *p = r->cur;
  r->cur += n;
  r->avail -= n;
  if (r->framed) r->frame_left -= n;
  return p;
}

uint32_t bt_io_get_u32(bt_io_reader *r) {
  const uint8_t *b = bt_io_take(r, 4);
  return b ? get32(b) : 0;
}

uint64_t bt_io_get_u64(bt_io_reader *r) {
  const uint8_t *b = bt_io_take(r, 8);
  return b ? get64(b) : 0;
}

double bt_io_get_f64(bt_io_reader *r) {
  const uint64_t u = bt_io_get_u64(r);
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

void bt_io_get_bytes(bt_io_reader *r, void *out, size_t n) {
  const uint8_t *b = bt_io_take(r, n);
  if (b) memcpy(out, b, n);
  else memset(out, 0, n);
}

int bt_io_get_int(bt_io_reader *r, int lo, int hi, const char *what) {
  uint32_t v = bt_io_get_u32(r);
  if (r->st) return lo;
  if ((int64_t)v < lo || (int64_t)v > hi) {
    bt_io_reader_fail(r, BT_E_FORMAT, "%s is %lu, expected %d..%d", what, (unsigned long)v, lo,
                      hi);
    return lo;
  }
  return (int)v;
}

void bt_io_get_poly(bt_io_reader *r, const bt_ckks_params *p, uint64_t *a, int first, int count,
                    const char *what) {
  for (int t = 0; t < count && !r->st; t++) {
    const int i = first + t;
    const uint8_t *in = bt_io_take(r, (size_t)limb_bytes(p, i));
    if (!in) return;
    size_t bad = unpack_limb(in, a + (size_t)t * N_OF(p), N_OF(p), bt_ckks_modulus(p, i)->q, bt_ckks_modulus(p, i)->bits);
    if (bad == N_OF(p) + 1)
      bt_io_reader_fail(r, BT_E_FORMAT, "%s, limb %d: padding bits are not zero", what, t);
    else if (bad)
      bt_io_reader_fail(r, BT_E_FORMAT,
                        "%s, limb %d: coefficient %zu = %llu is not below the prime %llu", what, t,
                        bad - 1, (unsigned long long)a[(size_t)t * N_OF(p) + bad - 1],
                        (unsigned long long)bt_ckks_modulus(p, i)->q);
  }
}

/* ---- object drivers ---- */
bt_status bt_io_encode(const bt_io_codec *c, const void *obj, const uint8_t *hash, uint8_t **buf,
                       size_t *len) {
  *buf = NULL;
  *len = 0;
  uint64_t payload;
  bt_status st = c->measure(obj, &payload);
  if (st) return st;
  if (payload > SIZE_MAX - BT_IO_HEADER_BYTES)
    return bt_fail(BT_E_NOMEM, "%s of %llu bytes does not fit in memory", kinds[c->kind].name,
                   (unsigned long long)payload);
  const size_t total = BT_IO_HEADER_BYTES + (size_t)payload;
  uint8_t *b = bt_alloc(total);
  if (!b) return BT_E_NOMEM;
  header_encode(b, c->kind, hash, payload);
  bt_io_writer w = {.src = NULL, .buf = b, .cap = total, .len = BT_IO_HEADER_BYTES, .fd = -1,
                    .left = payload};
  st = c->emit(&w, obj);
  if (!st) st = w.st;
  if (!st && w.left)
    st = bt_fail(BT_E_ARG, "internal error: %s is %llu bytes short of its announced size",
                 kinds[c->kind].name, (unsigned long long)w.left);
  if (st) {
    bt_free_secret(b, total);
    return st;
  }
  crypto_generichash_state s;
  hash_start(&s, b);
  crypto_generichash_update(&s, b + BT_IO_HEADER_BYTES, payload);
  crypto_generichash_final(&s, b + OFF_CHECKSUM, BT_IO_CHECKSUM_BYTES);
  *buf = b;
  *len = total;
  return BT_OK;
}

/* Temporaries and the rename are util's (bt_file_create_temp: O_EXCL |
 * O_NOFOLLOW, 0600 for secrets; bt_file_commit: rename, fsync the
 * directory). */
static bt_status create_temp(const char *path, int secret, char **tmp, int *fd) {
  bt_status st = bt_file_create_temp(path, secret, tmp, fd);
  if (st == BT_E_NOMEM) st = bt_io_rewrap(path, st, NULL);
  return st;
}

/* A file holding a secret (a secret bundle or key) is replaced only by an
 * object of the same kind: a mistyped output option (decrypt --out
 * client.key) cannot destroy the user's secret.  A quick look at the header;
 * a path that does not exist or is not a regular file is nobody's secret, a
 * regular file that cannot be read is not replaced. */
static bt_status refuse(const char *path, bt_io_kind writing, const char *output) {
  bt_io_kind there;
  if (bt_io_peek_kind(path, &there) != BT_OK) {
    struct stat sb; /* a regular file that cannot be read may well be a secret */
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
      return bt_io_fail(path, BT_E_IO, "cannot tell whether it holds a secret (%s); not replaced", bt_last_error());
    bt_clear_error();
    return BT_OK;
  }
  if ((there == BT_IO_SECRET_BUNDLE || there == BT_IO_SECRET_KEY) && there != writing)
    return bt_io_fail(path, BT_E_ARG, "holds %s: not replaced by %s (choose another output file)",
                      kind_phrase(there), output);
  return BT_OK;
}

bt_status bt_io_refuse_secret(const char *path, const char *output) { return refuse(path, 0, output); }

static bt_status guard_secret(const char *path, bt_io_kind writing) {
  return refuse(path, writing, kind_phrase(writing));
}

bt_status bt_io_save(const bt_io_codec *c, const char *path, const void *obj,
                     const uint8_t *hash) {
  uint64_t payload;
  bt_status st = guard_secret(path, c->kind);
  if (st) return st;
  st = c->measure(obj, &payload);
  if (st) return bt_io_rewrap(path, st, NULL);
  char *tmp = NULL;
  int fd = -1;
  bt_io_writer w = {.src = path, .fd = -1, .left = payload};
  uint8_t h[BT_IO_HEADER_BYTES];
  if ((st = create_temp(path, c->secret, &tmp, &fd))) return st;
  w.fd = fd;
  w.cap = payload < STAGE_BYTES ? (size_t)payload + 1 : STAGE_BYTES;
  if (!(w.buf = bt_alloc(w.cap))) {
    st = BT_E_NOMEM;
    goto fail;
  }
  header_encode(h, c->kind, hash, payload);
  if ((st = write_full(path, fd, h, sizeof h))) goto fail;
  hash_start(&w.hash, h);
  st = c->emit(&w, obj);
  if (!st) flush(&w);
  if (!st) st = w.st;
  if (!st && w.left)
    st = bt_io_fail(path, BT_E_ARG, "internal error: %s is %llu bytes short of its announced size",
                    kinds[c->kind].name, (unsigned long long)w.left);
  if (st) goto fail;
  crypto_generichash_final(&w.hash, h + OFF_CHECKSUM, BT_IO_CHECKSUM_BYTES);
  for (;;) {
    ssize_t r = pwrite(fd, h + OFF_CHECKSUM, BT_IO_CHECKSUM_BYTES, OFF_CHECKSUM);
    if (r == BT_IO_CHECKSUM_BYTES) break;
    if (r < 0 && errno == EINTR) continue;
    st = r < 0 ? os_fail(path, "write failed") : bt_io_fail(path, BT_E_IO, "short write");
    goto fail;
  }
  if (fsync(fd) != 0) {
    st = os_fail(path, "fsync failed");
    goto fail;
  }
  int rc = close(fd);
  fd = -1;
  if (rc != 0) {
    st = os_fail(path, "close failed");
    goto fail;
  }
  if ((st = bt_file_commit(tmp, path))) goto fail;
  bt_free_secret(w.buf, w.cap);
  bt_free(tmp);
  return BT_OK;
fail:
  if (st == BT_E_NOMEM) st = bt_io_rewrap(path, st, NULL);
  if (fd >= 0) close(fd);
  unlink(tmp);
  bt_free_secret(w.buf, w.cap);
  bt_free(tmp);
  return st;
}

bt_status bt_io_decode(const bt_io_codec *c, const uint8_t *buf, size_t len,
                       const bt_ckks_params *p, unsigned flags, void *out) {
  bt_io_info info;
  /* whole buffer at hand: the checksum is judged before the kind, the
   * parameter hash or any payload field */
  bt_status st = bt_io_inspect_buffer(buf, len, &info);
  if (st) return st;
  if ((st = check_kind(NULL, &info, c->kind)) || (st = check_params(NULL, &info, p))) return st;
  bt_io_reader r = {.src = NULL, .cur = buf + BT_IO_HEADER_BYTES, .avail = (size_t)info.payload_bytes,
                    .fd = -1};
  memcpy(r.params_hash, info.params_hash, sizeof r.params_hash);
  st = c->parse(&r, p, flags, out);
  if (!st) st = r.st;
  if (!st && bt_io_remaining(&r))
    st = bt_io_fail(NULL, BT_E_FORMAT, "%llu unexpected bytes at the end of the payload",
                    (unsigned long long)bt_io_remaining(&r));
  if (st) c->discard(out);
  return st;
}

bt_status bt_io_load(const bt_io_codec *c, const char *path, const bt_ckks_params *p,
                     unsigned flags, void *out) {
  int fd;
  uint64_t size;
  uint8_t h[BT_IO_HEADER_BYTES];
  bt_io_info info;
  bt_status st = open_input(path, &fd, &size);
  if (st) return st;
  if ((st = read_header(path, fd, size, h, &info)) || (st = check_kind(path, &info, c->kind))) {
    close(fd);
    return st;
  }
  bt_io_reader r = {.src = path, .unread = info.payload_bytes, .fd = fd};
  memcpy(r.params_hash, info.params_hash, sizeof r.params_hash);
  r.stage_cap = info.payload_bytes < STAGE_BYTES ? (size_t)info.payload_bytes + 1 : STAGE_BYTES;
  if (!(r.stage = bt_alloc(r.stage_cap))) {
    close(fd);
    return bt_io_rewrap(path, BT_E_NOMEM, NULL);
  }
  r.cur = r.stage;
  hash_start(&r.hash, h);
  st = check_params(path, &info, p);
  if (!st) {
    st = c->parse(&r, p, flags, out);
    if (!st) st = r.st;
    if (!st && bt_io_remaining(&r))
      st = bt_io_fail(path, BT_E_FORMAT, "%llu unexpected bytes at the end of the payload",
                      (unsigned long long)bt_io_remaining(&r));
  }
  /* Hash whatever was not read (all of it when parsing stopped early) so
   * that corruption is named as such rather than as its first symptom. */
  bt_status drained = BT_OK;
  while (r.unread && !drained) {
    size_t want = r.unread < r.stage_cap ? (size_t)r.unread : r.stage_cap, got;
    drained = read_full(path, fd, r.stage, want, &got);
    if (!drained && got < want)
      drained = bt_io_fail(path, BT_E_FORMAT, "truncated while reading (the file changed?)");
    if (!drained) {
      crypto_generichash_update(&r.hash, r.stage, got);
      r.unread -= got;
    }
  }
  if (!drained) {
    bt_status sum = checksum_verdict(path, &r.hash, h);
    if (sum) st = sum;
  } else if (!st) {
    st = drained;
  }
  if (st) c->discard(out);
  if (st == BT_E_NOMEM) st = bt_io_rewrap(path, st, NULL);
  bt_wipe(&r.hash, sizeof r.hash);
  bt_free_secret(r.stage, r.stage_cap);
  close(fd);
  return st;
}

bt_status bt_io_write_atomic(const char *path, const void *data, size_t len, int secret) {
  return bt_file_write_atomic(path, data, len, secret);
}

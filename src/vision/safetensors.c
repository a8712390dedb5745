/* safetensors reading and writing.
 *
 * The format (huggingface/safetensors, "format" in its README): an unsigned
 * 64-bit little-endian header size n, then n bytes of UTF-8 JSON mapping each
 * tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets from
 * the end of the header) plus an optional "__metadata__" map of strings, then
 * the data.  The JSON is read by a small strict parser written for this
 * purpose: the file is untrusted input, so every length, offset and product
 * is checked before use and anything malformed is BT_E_FORMAT, never a crash.
 * The tensors must tile the data section exactly (no overlap, no gap, no
 * trailing bytes), as the reference implementation requires. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blindtuner/vision.h"
#include "vision/internal.h"

#define MAX_HEADER (100u << 20)  /* the reference implementation's limit */
#define MAX_DEPTH 64

typedef struct meta_kv {
  const char *key, *value;
} meta_kv;

struct bt_safetensors {
  uint8_t *buf;           /* the whole file */
  size_t len;
  char *arena;            /* decoded strings */
  size_t arena_used, arena_cap;
  bt_tensor_view *t;
  size_t *off;            /* data offset of each tensor */
  size_t n, cap;
  meta_kv *meta;
  size_t nmeta, metacap;
};

static const struct {
  const char *name;
  bt_dtype dtype;
  int size;
} dtypes[] = {
    {"F32", BT_DTYPE_F32, 4},   {"F16", BT_DTYPE_F16, 2},  {"BF16", BT_DTYPE_BF16, 2},
    {"F64", BT_DTYPE_F64, 8},   {"I64", BT_DTYPE_I64, 8},  {"I32", BT_DTYPE_I32, 4},
    {"I16", BT_DTYPE_I16, 2},   {"I8", BT_DTYPE_I8, 1},    {"U8", BT_DTYPE_U8, 1},
    {"BOOL", BT_DTYPE_BOOL, 1}, {"U16", BT_DTYPE_U16, 2},  {"U32", BT_DTYPE_U32, 4},
    {"U64", BT_DTYPE_U64, 8},   {"F8_E4M3", BT_DTYPE_F8_E4M3, 1}, {"F8_E5M2", BT_DTYPE_F8_E5M2, 1},
};

const char *bt_dtype_name(bt_dtype t) {
  for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
    if (dtypes[i].dtype == t) return dtypes[i].name;
  return "?";
}

static int dtype_size(bt_dtype t) {
  for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
    if (dtypes[i].dtype == t) return dtypes[i].size;
  return 0;
}

/* ---------------------------------------------------------------- JSON */

typedef struct parser {
  const char *p, *end;
  bt_safetensors *st;
  const char *what;  /* the tensor being read, for messages */
} parser;

static bt_status bad(const parser *ps, const char *msg) {
  const char *h = (const char *)ps->st->buf + 8;
  if (ps->what)
    return bt_fail(BT_E_FORMAT, "safetensors: tensor '%s': %s (header byte %td)", ps->what, msg,
                   ps->p - h);
  return bt_fail(BT_E_FORMAT, "safetensors: %s (header byte %td)", msg, ps->p - h);
}

static void skip_ws(parser *ps) {
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
    ps->p++;
}

static int expect(parser *ps, char c) {
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == c) {
    ps->p++;
    return 1;
  }
  return 0;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int read_hex4(parser *ps, unsigned *out) {
  if (ps->end - ps->p < 4) return 0;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(ps->p[i]);
    if (h < 0) return 0;
    v = v * 16 + (unsigned)h;
  }
  ps->p += 4;
  *out = v;
  return 1;
}

/* Decodes a JSON string into the arena (NUL-terminated); *out points at it.
 * The arena is as large as the header, and a decoded string is never longer
 * than its encoding, so it cannot overflow. */
static bt_status parse_string(parser *ps, const char **out) {
  if (!expect(ps, '"')) return bad(ps, "expected a string");
  bt_safetensors *st = ps->st;
  char *dst = st->arena + st->arena_used;
  char *d = dst;
  while (1) {
    if (ps->p >= ps->end) return bad(ps, "unterminated string");
    unsigned char c = (unsigned char)*ps->p++;
    if (c == '"') break;
    if (c < 0x20) return bad(ps, "control character in string");
    if (c != '\\') {
      *d++ = (char)c;
      continue;
    }
    if (ps->p >= ps->end) return bad(ps, "unterminated string");
    char e = *ps->p++;
    unsigned u;
    switch (e) {
    case '"': *d++ = '"'; break;
    case '\\': *d++ = '\\'; break;
    case '/': *d++ = '/'; break;
    case 'b': *d++ = '\b'; break;
    case 'f': *d++ = '\f'; break;
    case 'n': *d++ = '\n'; break;
    case 'r': *d++ = '\r'; break;
    case 't': *d++ = '\t'; break;
    case 'u':
      if (!read_hex4(ps, &u)) return bad(ps, "bad \\u escape");
      if (u >= 0xD800 && u <= 0xDBFF) {
        unsigned lo;
        if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u') return bad(ps, "lone surrogate");
        ps->p += 2;
        if (!read_hex4(ps, &lo) || lo < 0xDC00 || lo > 0xDFFF) return bad(ps, "bad surrogate pair");
        u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
      } else if (u >= 0xDC00 && u <= 0xDFFF) {
        return bad(ps, "lone surrogate");
      }
      if (u == 0) return bad(ps, "NUL in string");
      /* UTF-8 of u takes at most as many bytes as its 6- or 12-byte escape */
      if (u < 0x80) {
        *d++ = (char)u;
      } else if (u < 0x800) {
        *d++ = (char)(0xC0 | (u >> 6));
        *d++ = (char)(0x80 | (u & 0x3F));
      } else if (u < 0x10000) {
        *d++ = (char)(0xE0 | (u >> 12));
        *d++ = (char)(0x80 | ((u >> 6) & 0x3F));
        *d++ = (char)(0x80 | (u & 0x3F));
      } else {
        *d++ = (char)(0xF0 | (u >> 18));
        *d++ = (char)(0x80 | ((u >> 12) & 0x3F));
        *d++ = (char)(0x80 | ((u >> 6) & 0x3F));
        *d++ = (char)(0x80 | (u & 0x3F));
      }
      break;
    default: return bad(ps, "bad escape in string");
    }
  }
  *d++ = '\0';
  st->arena_used += (size_t)(d - dst);
  *out = dst;
  return BT_OK;
}

/* A non-negative integer below 2^62. */
static bt_status parse_uint(parser *ps, int64_t *out) {
  skip_ws(ps);
  if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return bad(ps, "expected a non-negative integer");
  if (*ps->p == '0' && ps->end - ps->p > 1 && ps->p[1] >= '0' && ps->p[1] <= '9')
    return bad(ps, "leading zero in integer");
  int64_t v = 0;
  while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
    if (v > ((int64_t)1 << 62) / 10) return bad(ps, "integer too large");
    v = v * 10 + (*ps->p++ - '0');
  }
  if (ps->p < ps->end && (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E'))
    return bad(ps, "expected an integer");
  *out = v;
  return BT_OK;
}

/* Skips any JSON value (for keys this reader does not use). */
static bt_status skip_value(parser *ps, int depth) {
  if (depth > MAX_DEPTH) return bad(ps, "nesting too deep");
  skip_ws(ps);
  if (ps->p >= ps->end) return bad(ps, "unexpected end of header");
  char c = *ps->p;
  const char *s;
  if (c == '"') {
    size_t save = ps->st->arena_used;
    bt_status r = parse_string(ps, &s);
    ps->st->arena_used = save;
    return r;
  }
  if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    ps->p++;
    if (expect(ps, close)) return BT_OK;
    do {
      if (c == '{') {
        size_t save = ps->st->arena_used;
        bt_status r = parse_string(ps, &s);
        ps->st->arena_used = save;
        if (r) return r;
        if (!expect(ps, ':')) return bad(ps, "expected ':'");
      }
      bt_status r = skip_value(ps, depth + 1);
      if (r) return r;
    } while (expect(ps, ','));
    if (!expect(ps, close)) return bad(ps, "expected ',' or closing bracket");
    return BT_OK;
  }
  static const char *const words[] = {"true", "false", "null"};
  for (int i = 0; i < 3; i++) {
    size_t l = strlen(words[i]);
    if ((size_t)(ps->end - ps->p) >= l && !memcmp(ps->p, words[i], l)) {
      ps->p += l;
      return BT_OK;
    }
  }
  if (c == '-' || (c >= '0' && c <= '9')) {
    if (c == '-') ps->p++;
    int digits = 0;
    while (ps->p < ps->end && ((*ps->p >= '0' && *ps->p <= '9') || *ps->p == '.' || *ps->p == 'e' ||
                               *ps->p == 'E' || *ps->p == '+' || *ps->p == '-')) {
      ps->p++;
      digits++;
    }
    if (!digits) return bad(ps, "bad number");
    return BT_OK;
  }
  return bad(ps, "unexpected character");
}

static bt_status parse_int_array(parser *ps, int64_t *v, int max, int *n, const char *field) {
  if (!expect(ps, '[')) return bad(ps, field);
  *n = 0;
  if (expect(ps, ']')) return BT_OK;
  do {
    if (*n >= max) return bad(ps, "too many dimensions");
    bt_status r = parse_uint(ps, &v[*n]);
    if (r) return r;
    (*n)++;
  } while (expect(ps, ','));
  if (!expect(ps, ']')) return bad(ps, "expected ',' or ']'");
  return BT_OK;
}

static bt_status parse_tensor(parser *ps, const char *name, size_t data_len) {
  bt_safetensors *st = ps->st;
  if (st->n == st->cap) {
    size_t cap = st->cap ? 2 * st->cap : 64;
    bt_tensor_view *t = realloc(st->t, cap * sizeof *t);
    if (t) st->t = t;
    size_t *o = realloc(st->off, cap * sizeof *o);
    if (o) st->off = o;
    if (!t || !o) return bt_fail(BT_E_NOMEM, "safetensors: out of memory");
    st->cap = cap;
  }
  bt_tensor_view *t = &st->t[st->n];
  memset(t, 0, sizeof *t);
  t->name = name;
  ps->what = name;
  int have_dtype = 0, have_shape = 0, have_off = 0;
  int64_t off[2] = {0, 0};
  if (!expect(ps, '{')) return bad(ps, "expected an object");
  if (!expect(ps, '}')) {
    do {
      const char *key;
      size_t save = st->arena_used;
      bt_status r = parse_string(ps, &key);
      if (r) return r;
      if (!expect(ps, ':')) return bad(ps, "expected ':'");
      if (!strcmp(key, "dtype")) {
        const char *dt;
        if ((r = parse_string(ps, &dt))) return r;
        size_t i = 0, nd = sizeof dtypes / sizeof dtypes[0];
        while (i < nd && strcmp(dtypes[i].name, dt)) i++;
        if (i == nd) {
          char msg[96];
          snprintf(msg, sizeof msg, "unknown dtype '%.40s'", dt);
          return bad(ps, msg);
        }
        t->dtype = dtypes[i].dtype;
        have_dtype++;
      } else if (!strcmp(key, "shape")) {
        if ((r = parse_int_array(ps, t->shape, BT_TENSOR_MAX_DIMS, &t->ndim, "shape must be an array")))
          return r;
        have_shape++;
      } else if (!strcmp(key, "data_offsets")) {
        int k;
        if ((r = parse_int_array(ps, off, 2, &k, "data_offsets must be an array"))) return r;
        if (k != 2) return bad(ps, "data_offsets must hold two integers");
        have_off++;
      } else if ((r = skip_value(ps, 1))) {
        return r;
      }
      st->arena_used = save;  /* the key and dtype strings are not kept */
    } while (expect(ps, ','));
    if (!expect(ps, '}')) return bad(ps, "expected ',' or '}'");
  }
  if (have_dtype != 1 || have_shape != 1 || have_off != 1)
    return bad(ps, "needs exactly one each of dtype, shape and data_offsets");
  int64_t count = 1;
  for (int i = 0; i < t->ndim; i++) {
    if (t->shape[i] && count > ((int64_t)1 << 62) / t->shape[i]) return bad(ps, "shape too large");
    count *= t->shape[i];
  }
  int64_t esize = dtype_size(t->dtype);
  if (count > ((int64_t)1 << 62) / esize) return bad(ps, "shape too large");
  if (off[0] > off[1]) return bad(ps, "data_offsets begin after end");
  if ((uint64_t)off[1] > data_len) return bad(ps, "data_offsets past the end of the file (truncated?)");
  if (off[1] - off[0] != count * esize) {
    char msg[160];
    snprintf(msg, sizeof msg, "holds %lld bytes but shape x dtype needs %lld",
             (long long)(off[1] - off[0]), (long long)(count * esize));
    return bad(ps, msg);
  }
  t->count = count;
  t->bytes = (size_t)(off[1] - off[0]);
  t->data = NULL;  /* set once the header is fully read */
  st->off[st->n] = (size_t)off[0];
  st->n++;
  ps->what = NULL;
  return BT_OK;
}

static bt_status parse_metadata(parser *ps) {
  bt_safetensors *st = ps->st;
  if (!expect(ps, '{')) return bad(ps, "__metadata__ must be an object");
  if (expect(ps, '}')) return BT_OK;
  do {
    const char *k, *v;
    bt_status r = parse_string(ps, &k);
    if (r) return r;
    if (!expect(ps, ':')) return bad(ps, "expected ':'");
    if ((r = parse_string(ps, &v))) return bad(ps, "__metadata__ values must be strings");
    if (st->nmeta == st->metacap) {
      size_t cap = st->metacap ? 2 * st->metacap : 16;
      meta_kv *m = realloc(st->meta, cap * sizeof *m);
      if (!m) return bt_fail(BT_E_NOMEM, "safetensors: out of memory");
      st->meta = m;
      st->metacap = cap;
    }
    st->meta[st->nmeta].key = k;
    st->meta[st->nmeta].value = v;
    st->nmeta++;
  } while (expect(ps, ','));
  if (!expect(ps, '}')) return bad(ps, "expected ',' or '}' in __metadata__");
  return BT_OK;
}

static int cmp_view_name(const void *a, const void *b) {
  const bt_tensor_view *const *x = a, *const *y = b;
  return strcmp((*x)->name, (*y)->name);
}

static int cmp_span(const void *a, const void *b) {
  const size_t *x = a, *y = b;
  if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
  return x[1] < y[1] ? -1 : x[1] > y[1];
}

/* The data section must be tiled exactly by the tensors, as the reference
 * implementation requires: sorted by begin offset, each tensor starts where
 * the previous one ended (the first at 0) and the last ends at the end of
 * the file.  Overlapping tensors (two views of the same bytes), gaps (bytes
 * no tensor owns) and trailing bytes are all refused. */
static bt_status check_layout(const bt_safetensors *st, size_t data_len) {
  if (!st->n) {
    if (data_len)
      return bt_fail(BT_E_FORMAT, "safetensors: %zu data bytes but no tensors", data_len);
    return BT_OK;
  }
  size_t *span = malloc(2 * st->n * sizeof *span);
  if (!span) return bt_fail(BT_E_NOMEM, "safetensors: out of memory");
  for (size_t i = 0; i < st->n; i++) {
    span[2 * i] = st->off[i];
    span[2 * i + 1] = st->off[i] + st->t[i].bytes;
  }
  qsort(span, st->n, 2 * sizeof *span, cmp_span);
  size_t at = 0;
  bt_status r = BT_OK;
  for (size_t i = 0; i < st->n && !r; i++) {
    if (span[2 * i] < at)
      r = bt_fail(BT_E_FORMAT, "safetensors: tensor data at bytes [%zu, %zu) overlaps the previous tensor",
                  span[2 * i], span[2 * i + 1]);
    else if (span[2 * i] > at)
      r = bt_fail(BT_E_FORMAT, "safetensors: gap in the data: bytes [%zu, %zu) belong to no tensor", at,
                  span[2 * i]);
    at = span[2 * i + 1];
  }
  if (!r && at != data_len)
    r = bt_fail(BT_E_FORMAT, "safetensors: %zu trailing data bytes after the last tensor", data_len - at);
  free(span);
  return r;
}

static bt_status parse_header(bt_safetensors *st) {
  if (st->len < 8) return bt_fail(BT_E_FORMAT, "safetensors: file too short (%zu bytes)", st->len);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | st->buf[i];
  if (n < 2 || n > MAX_HEADER)
    return bt_fail(BT_E_FORMAT, "safetensors: implausible header size %llu", (unsigned long long)n);
  if (n > st->len - 8)
    return bt_fail(BT_E_FORMAT, "safetensors: header of %llu bytes but file has %zu (truncated?)",
                   (unsigned long long)n, st->len);
  size_t data_len = st->len - 8 - (size_t)n;
  st->arena_cap = (size_t)n + 1;
  st->arena = malloc(st->arena_cap);
  if (!st->arena) return bt_fail(BT_E_NOMEM, "safetensors: out of memory");
  parser ps = {(const char *)st->buf + 8, (const char *)st->buf + 8 + n, st, NULL};
  if (!expect(&ps, '{')) return bad(&ps, "header must be a JSON object");
  bt_status r;
  int have_meta = 0;
  if (!expect(&ps, '}')) {
    do {
      const char *name;
      if ((r = parse_string(&ps, &name))) return r;
      if (!expect(&ps, ':')) return bad(&ps, "expected ':'");
      if (!strcmp(name, "__metadata__")) {
        if (have_meta++) return bad(&ps, "two __metadata__ entries");
        r = parse_metadata(&ps);
      } else {
        if (!*name) return bad(&ps, "empty tensor name");
        r = parse_tensor(&ps, name, data_len);
      }
      if (r) return r;
    } while (expect(&ps, ','));
    if (!expect(&ps, '}')) return bad(&ps, "expected ',' or '}'");
  }
  skip_ws(&ps);
  if (ps.p != ps.end) return bad(&ps, "trailing bytes after the header object");
  const uint8_t *data = st->buf + 8 + n;
  for (size_t i = 0; i < st->n; i++) st->t[i].data = data + st->off[i];
  /* names must be unique */
  if (st->n > 1) {
    const bt_tensor_view **idx = malloc(st->n * sizeof *idx);
    if (!idx) return bt_fail(BT_E_NOMEM, "safetensors: out of memory");
    for (size_t i = 0; i < st->n; i++) idx[i] = &st->t[i];
    qsort(idx, st->n, sizeof *idx, cmp_view_name);
    for (size_t i = 1; i < st->n; i++)
      if (!strcmp(idx[i - 1]->name, idx[i]->name)) {
        r = bt_fail(BT_E_FORMAT, "safetensors: tensor '%s' appears twice", idx[i]->name);
        free(idx);
        return r;
      }
    free(idx);
  }
  return check_layout(st, data_len);
}

bt_status bt_safetensors_parse(const void *bytes, size_t len, bt_safetensors **out) {
  *out = NULL;
  if (!bytes && len) return bt_fail(BT_E_ARG, "safetensors: NULL buffer");
  bt_safetensors *st = calloc(1, sizeof *st);
  if (!st) return bt_fail(BT_E_NOMEM, "safetensors: out of memory");
  st->buf = bt_alloc(len ? len : 1);
  if (!st->buf) {
    free(st);
    return BT_E_NOMEM;
  }
  if (len) memcpy(st->buf, bytes, len);
  st->len = len;
  bt_status r = parse_header(st);
  if (r) {
    bt_safetensors_free(st);
    return r;
  }
  *out = st;
  return BT_OK;
}

bt_status bt_safetensors_open(const char *path, bt_safetensors **out) {
  *out = NULL;
  uint8_t *buf;
  size_t len;
  bt_status r = bt_read_file(path, &buf, &len);
  if (r) return r;
  bt_safetensors *st = calloc(1, sizeof *st);
  if (!st) {
    bt_free(buf);
    return bt_fail(BT_E_NOMEM, "safetensors: out of memory");
  }
  st->buf = buf;
  st->len = len;
  r = parse_header(st);
  if (r) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", bt_last_error());
    bt_safetensors_free(st);
    return bt_fail(r, "%s: %s", path, msg);
  }
  *out = st;
  return BT_OK;
}

void bt_safetensors_free(bt_safetensors *st) {
  if (!st) return;
  bt_free(st->buf);
  free(st->arena);
  free(st->t);
  free(st->off);
  free(st->meta);
  free(st);
}

size_t bt_safetensors_count(const bt_safetensors *st) { return st ? st->n : 0; }

const bt_tensor_view *bt_safetensors_at(const bt_safetensors *st, size_t i) {
  return st && i < st->n ? &st->t[i] : NULL;
}

const bt_tensor_view *bt_safetensors_find(const bt_safetensors *st, const char *name) {
  if (!st || !name) return NULL;
  for (size_t i = 0; i < st->n; i++)
    if (!strcmp(st->t[i].name, name)) return &st->t[i];
  return NULL;
}

const char *bt_safetensors_meta(const bt_safetensors *st, const char *key) {
  if (!st || !key) return NULL;
  for (size_t i = 0; i < st->nmeta; i++)
    if (!strcmp(st->meta[i].key, key)) return st->meta[i].value;
  return NULL;
}

/* ---------------------------------------------------------------- conversion */

float bt_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (man << 13);  /* inf / nan */
  } else if (exp) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man) {  /* subnormal: normalise */
    int e = -1;
    do {
      man <<= 1;
      e++;
    } while (!(man & 0x400));
    bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3FF) << 13);
  } else {
    bits = sign;
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t bt_float_to_half(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u) return (uint16_t)(sign | 0x7C00 | (ax > 0x7F800000u ? 0x200 : 0));
  if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00);  /* rounds past the largest half */
  if (ax < 0x38800000u) {                                   /* subnormal or zero in half */
    if (ax < 0x33000000u) return (uint16_t)sign;
    uint32_t e = ax >> 23, m = (ax & 0x7FFFFF) | 0x800000;
    uint32_t shift = 126 - e;  /* 14..24 */
    uint32_t v = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (v & 1))) v++;
    return (uint16_t)(sign | v);
  }
  uint32_t v = ((ax >> 13) - (112u << 10));
  uint32_t rem = ax & 0x1FFF;
  if (rem > 0x1000 || (rem == 0x1000 && (v & 1))) v++;
  return (uint16_t)(sign | v);
}

static uint16_t float_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x40);
  x += 0x7FFF + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

bt_status bt_tensor_to_f32(const bt_tensor_view *t, float *out) {
  const uint8_t *d = t->data;
  switch (t->dtype) {
  case BT_DTYPE_F32:
    for (int64_t i = 0; i < t->count; i++) {
      uint32_t b = (uint32_t)d[4 * i] | (uint32_t)d[4 * i + 1] << 8 | (uint32_t)d[4 * i + 2] << 16 |
                   (uint32_t)d[4 * i + 3] << 24;
      memcpy(&out[i], &b, 4);
    }
    return BT_OK;
  case BT_DTYPE_F16:
    for (int64_t i = 0; i < t->count; i++)
      out[i] = bt_half_to_float((uint16_t)(d[2 * i] | d[2 * i + 1] << 8));
    return BT_OK;
  case BT_DTYPE_BF16:
    for (int64_t i = 0; i < t->count; i++) {
      uint32_t b = ((uint32_t)d[2 * i] | (uint32_t)d[2 * i + 1] << 8) << 16;
      memcpy(&out[i], &b, 4);
    }
    return BT_OK;
  default:
    return bt_fail(BT_E_FORMAT, "tensor '%s': dtype %s is not float32, float16 or bfloat16", t->name,
                   bt_dtype_name(t->dtype));
  }
}

/* ---------------------------------------------------------------- writing */

static void put_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

bt_status bt_safetensors_write(const char *path, const bt_tensor_out *tensors, size_t count,
                               const char *const *meta) {
  if (count && !tensors) return bt_fail(BT_E_ARG, "safetensors: no tensors given");
  /* the header goes to a memory stream first, to learn its length */
  char *hdr = NULL;
  size_t hlen = 0;
  FILE *h = open_memstream(&hdr, &hlen);
  if (!h) return bt_fail(BT_E_NOMEM, "safetensors: out of memory");
  fputc('{', h);
  uint64_t off = 0;
  for (size_t i = 0; i < count; i++) {
    const bt_tensor_out *t = &tensors[i];
    int es = dtype_size(t->dtype);
    if ((t->dtype != BT_DTYPE_F32 && t->dtype != BT_DTYPE_F16 && t->dtype != BT_DTYPE_BF16) ||
        t->ndim < 0 || t->ndim > BT_TENSOR_MAX_DIMS || !t->name) {
      fclose(h);
      free(hdr);
      return bt_fail(BT_E_ARG, "safetensors: cannot write tensor %zu", i);
    }
    uint64_t n = 1;
    for (int k = 0; k < t->ndim; k++) n *= (uint64_t)t->shape[k];
    if (i) fputc(',', h);
    put_json_string(h, t->name);
    fprintf(h, ":{\"dtype\":\"%s\",\"shape\":[", bt_dtype_name(t->dtype));
    for (int k = 0; k < t->ndim; k++) fprintf(h, "%s%lld", k ? "," : "", (long long)t->shape[k]);
    fprintf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
            (unsigned long long)(off + n * (uint64_t)es));
    off += n * (uint64_t)es;
  }
  if (meta && meta[0]) {
    fprintf(h, "%s\"__metadata__\":{", count ? "," : "");
    for (size_t i = 0; meta[i] && meta[i + 1]; i += 2) {
      if (i) fputc(',', h);
      put_json_string(h, meta[i]);
      fputc(':', h);
      put_json_string(h, meta[i + 1]);
    }
    fputc('}', h);
  }
  fputc('}', h);
  while ((ftell(h) % 8) != 0) fputc(' ', h);
  if (fclose(h) != 0) {
    free(hdr);
    return bt_fail(BT_E_NOMEM, "safetensors: out of memory");
  }

  bt_file_out fo;
  bt_status r = bt_file_out_open(&fo, path);
  if (r) {
    free(hdr);
    return r;
  }
  uint8_t len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
  fwrite(len8, 1, 8, fo.f);
  fwrite(hdr, 1, hlen, fo.f);
  free(hdr);
  for (size_t i = 0; i < count; i++) {
    const bt_tensor_out *t = &tensors[i];
    int64_t n = 1;
    for (int k = 0; k < t->ndim; k++) n *= t->shape[k];
    for (int64_t j = 0; j < n; j++) {
      uint8_t b[4];
      if (t->dtype == BT_DTYPE_F32) {
        uint32_t x;
        memcpy(&x, &t->data[j], 4);
        for (int k = 0; k < 4; k++) b[k] = (uint8_t)(x >> (8 * k));
        fwrite(b, 1, 4, fo.f);
      } else {
        uint16_t x = t->dtype == BT_DTYPE_F16 ? bt_float_to_half(t->data[j]) : float_to_bf16(t->data[j]);
        b[0] = (uint8_t)x;
        b[1] = (uint8_t)(x >> 8);
        fwrite(b, 1, 2, fo.f);
      }
    }
  }
  return bt_file_out_commit(&fo);
}

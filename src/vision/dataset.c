/* Dataset readers (IDX, NumPy .npy/.npz, image folders) and .npy output.
 *
 * IDX (LeCun's MNIST format): big-endian magic 0x0000 | type | ndim, ndim
 * big-endian uint32 sizes, then the data; images are type 0x08 (uint8) with 3
 * dimensions, labels 0x08 with 1.  .npy (NumPy format 1.0-3.0): "\x93NUMPY",
 * version, header length, a Python dict literal {'descr', 'fortran_order',
 * 'shape'}, the data.  .npz: a ZIP archive of .npy members, stored or
 * deflated, with ZIP64 extensions (numpy writes them).  Every size and offset
 * read from a file is checked before use.
 *
 * Size limits (docs/FUZZING.md): an IDX file is inflated only up to what
 * its header declares (plus one byte, to see that it goes on) and at most
 * 16 GiB; a .npy array (alone or in an .npz) declares at most
 * BT_NPY_MAX_BYTES (2 GiB) of data, checked before its data is read or
 * allocated; an .npz member's declared size must be one deflate can reach
 * from its compressed size. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "blindtuner/util.h"
#include "blindtuner/vision_data.h"
#include "vision/internal.h"

#define MAX_LABEL (1 << 20)

struct bt_dataset {
  size_t n;
  int *labels;
  int num_classes;
  /* in-memory datasets (IDX, npz) */
  uint8_t *pixels;  /* n x h x w x c */
  int h, w, c;
  /* folders */
  char **files;
  char **class_names;
};

void bt_dataset_free(bt_dataset *d) {
  if (!d) return;
  free(d->labels);
  bt_free(d->pixels);
  if (d->files)
    for (size_t i = 0; i < d->n; i++) free(d->files[i]);
  free(d->files);
  if (d->class_names)
    for (int i = 0; i < d->num_classes; i++) free(d->class_names[i]);
  free(d->class_names);
  free(d);
}

size_t bt_dataset_count(const bt_dataset *d) { return d->n; }
int bt_dataset_num_classes(const bt_dataset *d) { return d->num_classes; }
int bt_dataset_label(const bt_dataset *d, size_t i) { return i < d->n ? d->labels[i] : -1; }

const char *bt_dataset_class_name(const bt_dataset *d, int label) {
  return d->class_names && label >= 0 && label < d->num_classes ? d->class_names[label] : NULL;
}

bt_status bt_dataset_image(const bt_dataset *d, size_t i, bt_image *out) {
  memset(out, 0, sizeof *out);
  if (i >= d->n) return bt_fail(BT_E_ARG, "dataset: image %zu of %zu", i, d->n);
  if (d->files) return bt_image_load(d->files[i], out);
  bt_status r = bt_image_new(d->w, d->h, d->c, out);
  if (r) return r;
  size_t sz = (size_t)d->h * (size_t)d->w * (size_t)d->c;
  memcpy(out->data, d->pixels + i * sz, sz);
  return BT_OK;
}

static bt_status finish_labels(bt_dataset *d, const char *what) {
  d->num_classes = 0;
  for (size_t i = 0; i < d->n; i++) {
    if (d->labels[i] < 0 || d->labels[i] >= MAX_LABEL)
      return bt_fail(BT_E_FORMAT, "%s: label %d of image %zu out of range", what, d->labels[i], i);
    if (d->labels[i] + 1 > d->num_classes) d->num_classes = d->labels[i] + 1;
  }
  return BT_OK;
}

/* ---------------------------------------------------------------- IDX */

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The most data an IDX file may declare: 16 GiB. */
#define IDX_MAX_DATA ((uint64_t)1 << 34)

/* Checks the first 4 + 4 ndim bytes of an IDX file (uint8 data with `ndim`
 * dimensions): dims and *total, the data bytes the header declares. */
static bt_status idx_header(const char *path, const uint8_t *b, size_t len, int ndim, uint32_t *dims,
                            uint64_t *total) {
  if (len < 4 + 4 * (size_t)ndim || b[0] || b[1])
    return bt_fail(BT_E_FORMAT, "%s: not an IDX file", path);
  if (b[2] != 0x08 || b[3] != ndim)
    return bt_fail(BT_E_FORMAT, "%s: IDX type 0x%02x with %d dimensions; expected uint8 (0x08) with %d", path,
                   b[2], b[3], ndim);
  *total = 1;
  for (int i = 0; i < ndim; i++) {
    dims[i] = be32(b + 4 + 4 * i);
    *total *= dims[i];
    if (*total > IDX_MAX_DATA)
      return bt_fail(BT_E_FORMAT, "%s: IDX sizes declare more than 16 GiB of data", path);
  }
  return BT_OK;
}

/* Reads as much as gzread gives, up to n bytes; the count, or -1. */
static long long gz_read_full(gzFile f, uint8_t *out, size_t n) {
  size_t got = 0;
  while (got < n) {
    size_t want = n - got > (1u << 30) ? (1u << 30) : n - got;
    int k = gzread(f, out + got, (unsigned)want);
    if (k < 0) return -1;
    if (k == 0) break;
    got += (size_t)k;
  }
  return (long long)got;
}

/* Reads an IDX file (uint8 data, `ndim` dimensions) that may be gzip'd
 * (zlib reads plain files transparently).  The header is read first; the
 * rest is inflated into a buffer that grows with what arrives and never
 * past what the header declares plus one byte: a stream that inflates
 * further (a gzip bomb behind a small header) is refused as soon as it
 * does, and a short one is refused too.  *buf holds the whole file. */
static bt_status read_idx(const char *path, int ndim, uint32_t *dims, uint8_t **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  gzFile f = gzopen(path, "rb");
  if (!f) return bt_fail(BT_E_IO, "%s: cannot open: %s", path, strerror(errno));
  const size_t hl = 4 + 4 * (size_t)ndim;
  uint8_t h[16];
  uint64_t total = 0;
  uint8_t *b = NULL;
  size_t n = 0;
  int e;
  bt_status r = BT_OK;
  long long k = gz_read_full(f, h, hl);
  if (k < 0) r = bt_fail(BT_E_FORMAT, "%s: %s", path, gzerror(f, &e));
  if (!r) r = idx_header(path, h, (size_t)k, ndim, dims, &total);
  /* at most one byte more than declared is ever inflated */
  const size_t limit = r ? 0 : hl + (size_t)total + 1;
  size_t cap = limit < ((size_t)1 << 20) ? limit : ((size_t)1 << 20);
  if (!r && !(b = malloc(cap))) r = bt_fail(BT_E_NOMEM, "%s: out of memory", path);
  if (!r) {
    memcpy(b, h, hl);
    n = hl;
  }
  while (!r) {
    if (n == cap) {
      if (cap == limit) {
        r = bt_fail(BT_E_FORMAT, "%s: data continues past the %llu bytes the IDX header declares", path,
                    (unsigned long long)total);
        break;
      }
      size_t nc = cap > limit / 2 ? limit : 2 * cap;
      uint8_t *nb = realloc(b, nc);
      if (!nb) {
        r = bt_fail(BT_E_NOMEM, "%s: out of memory", path);
        break;
      }
      b = nb;
      cap = nc;
    }
    k = gz_read_full(f, b + n, cap - n);
    if (k < 0) {
      r = bt_fail(BT_E_FORMAT, "%s: %s", path, gzerror(f, &e));
      break;
    }
    if (k == 0) break;
    n += (size_t)k;
  }
  e = gzclose_r(f);
  if (!r && e != Z_OK) r = bt_fail(BT_E_FORMAT, "%s: truncated or corrupt gzip stream", path);
  if (!r && n != hl + total)
    r = bt_fail(BT_E_FORMAT, "%s: IDX header says %llu bytes of data, file has %zu (truncated?)", path,
                (unsigned long long)total, n - hl);
  if (r) {
    free(b);
    return r;
  }
  *buf = b;
  *len = n;
  return BT_OK;
}

bt_status bt_dataset_open_idx(const char *images, const char *labels, bt_dataset **out) {
  *out = NULL;
  uint8_t *ib = NULL, *lb = NULL;
  size_t il, ll;
  uint32_t id[3] = {0}, ld[1] = {0};
  bt_dataset *d = NULL;
  bt_status r = read_idx(images, 3, id, &ib, &il);
  if (!r) r = read_idx(labels, 1, ld, &lb, &ll);
  if (!r && id[0] != ld[0])
    r = bt_fail(BT_E_FORMAT, "%s holds %u images but %s %u labels", images, id[0], labels, ld[0]);
  if (!r && (id[1] < 1 || id[2] < 1 || id[1] > 65535 || id[2] > 65535))
    r = bt_fail(BT_E_FORMAT, "%s: image size %u x %u", images, id[1], id[2]);
  if (!r && !(d = calloc(1, sizeof *d))) r = bt_fail(BT_E_NOMEM, "dataset: out of memory");
  if (!r) {
    d->n = id[0];
    d->h = (int)id[1];
    d->w = (int)id[2];
    d->c = 1;
    d->pixels = bt_alloc(il - 16);
    d->labels = malloc((d->n ? d->n : 1) * sizeof *d->labels);
    if (!d->pixels || !d->labels) r = bt_fail(BT_E_NOMEM, "dataset: out of memory");
  }
  if (!r) {
    memcpy(d->pixels, ib + 16, il - 16);
    for (size_t i = 0; i < d->n; i++) d->labels[i] = lb[8 + i];
    r = finish_labels(d, labels);
  }
  free(ib);
  free(lb);
  if (r) {
    bt_dataset_free(d);
    return r;
  }
  *out = d;
  return BT_OK;
}

/* ---------------------------------------------------------------- .npy */

/* Finds 'key': in a header dict and returns the text after the colon (NULL
 * when absent or when nothing follows it before `end`). */
static const char *dict_value(const char *h, const char *end, const char *key) {
  size_t kl = strlen(key);
  for (const char *p = h; p + kl + 2 < end; p++) {
    if ((*p == '\'' || *p == '"') && !memcmp(p + 1, key, kl) && p[kl + 1] == *p) {
      p += kl + 2;
      while (p < end && isspace((unsigned char)*p)) p++;
      if (p < end && *p == ':') {
        p++;
        while (p < end && isspace((unsigned char)*p)) p++;
        return p < end ? p : NULL; /* a key at the very end has no value */
      }
    }
  }
  return NULL;
}

bt_status bt_npy_parse_header(const uint8_t *b, size_t len, bt_npy *out, size_t *data_off) {
  memset(out, 0, sizeof *out);
  *data_off = 0;
  if (!b || len < 10 || memcmp(b, "\x93NUMPY", 6)) return bt_fail(BT_E_FORMAT, "npy: bad magic");
  size_t hl, off;
  if (b[6] == 1) {
    hl = (size_t)b[8] | (size_t)b[9] << 8;
    off = 10;
  } else if (b[6] == 2 || b[6] == 3) {
    if (len < 12) return bt_fail(BT_E_FORMAT, "npy: truncated");
    hl = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    off = 12;
  } else {
    return bt_fail(BT_E_FORMAT, "npy: unknown format version %d", b[6]);
  }
  if (hl > len - off) return bt_fail(BT_E_FORMAT, "npy: header past the end (truncated?)");
  const char *h = (const char *)b + off, *end = h + hl;
  const char *v = dict_value(h, end, "descr");
  if (!v || (*v != '\'' && *v != '"')) return bt_fail(BT_E_FORMAT, "npy: no 'descr'");
  char q = *v++;
  const char *ve = v;
  while (ve < end && *ve != q) ve++;
  if (ve >= end || ve - v < 2 || ve - v > 6) return bt_fail(BT_E_FORMAT, "npy: bad 'descr'");
  char bo = v[0];
  if (bo != '<' && bo != '>' && bo != '|' && bo != '=') return bt_fail(BT_E_FORMAT, "npy: bad byte order");
  memcpy(out->dtype, v + 1, (size_t)(ve - v - 1));
  out->dtype[ve - v - 1] = '\0';
  if (!strchr("fiub", out->dtype[0]) || !isdigit((unsigned char)out->dtype[1]))
    return bt_fail(BT_E_FORMAT, "npy: unsupported dtype '%s'", out->dtype);
  out->itemsize = atoi(out->dtype + 1);
  if (out->itemsize != 1 && out->itemsize != 2 && out->itemsize != 4 && out->itemsize != 8)
    return bt_fail(BT_E_FORMAT, "npy: unsupported dtype '%s'", out->dtype);
  out->little = bo != '>' || out->itemsize == 1;
  v = dict_value(h, end, "fortran_order");
  if (!v || (size_t)(end - v) < 4) return bt_fail(BT_E_FORMAT, "npy: no 'fortran_order'");
  if (!memcmp(v, "True", 4)) return bt_fail(BT_E_UNSUPPORTED, "npy: Fortran-order arrays are not supported");
  if ((size_t)(end - v) < 5 || memcmp(v, "False", 5)) return bt_fail(BT_E_FORMAT, "npy: bad 'fortran_order'");
  v = dict_value(h, end, "shape");
  if (!v || *v != '(') return bt_fail(BT_E_FORMAT, "npy: no 'shape'");
  v++;
  out->count = 1;
  while (1) {
    while (v < end && isspace((unsigned char)*v)) v++;
    if (v < end && *v == ')') break;
    if (out->ndim == BT_TENSOR_MAX_DIMS) return bt_fail(BT_E_FORMAT, "npy: too many dimensions");
    if (v >= end || !isdigit((unsigned char)*v)) return bt_fail(BT_E_FORMAT, "npy: bad 'shape'");
    int64_t x = 0;
    while (v < end && isdigit((unsigned char)*v)) {
      if (x > ((int64_t)1 << 40)) return bt_fail(BT_E_FORMAT, "npy: shape too large");
      x = x * 10 + (*v++ - '0');
    }
    out->shape[out->ndim++] = x;
    if (x && out->count > ((int64_t)1 << 40) / x) return bt_fail(BT_E_FORMAT, "npy: shape too large");
    out->count *= x;
    while (v < end && isspace((unsigned char)*v)) v++;
    if (v < end && *v == ',') v++;
  }
  const uint64_t bytes = (uint64_t)out->count * (uint64_t)out->itemsize;
  if (bytes > BT_NPY_MAX_BYTES)
    return bt_fail(BT_E_FORMAT, "npy: the declared shape holds %llu bytes, above the limit of %llu (2 GiB)",
                   (unsigned long long)bytes, (unsigned long long)BT_NPY_MAX_BYTES);
  *data_off = off + hl;
  return BT_OK;
}

bt_status bt_npy_parse(const uint8_t *b, size_t len, bt_npy *out) {
  size_t off;
  bt_status r = bt_npy_parse_header(b, len, out, &off);
  if (r) return r;
  const size_t bytes = (size_t)out->count * (size_t)out->itemsize;
  if (bytes > len - off)
    return bt_fail(BT_E_FORMAT, "npy: %zu bytes of data expected, %zu present (truncated?)", bytes, len - off);
  out->data = b + off;
  return BT_OK;
}

/* Element i of an integer array as int64 (label arrays). */
static int64_t npy_int(const bt_npy *a, int64_t i) {
  const uint8_t *p = a->data + i * a->itemsize;
  uint64_t u = 0;
  for (int k = 0; k < a->itemsize; k++) {
    int byte = a->little ? k : a->itemsize - 1 - k;
    u |= (uint64_t)p[byte] << (8 * k);
  }
  if (a->dtype[0] == 'i' && a->itemsize < 8 && (u >> (8 * a->itemsize - 1)) & 1)
    u |= ~(uint64_t)0 << (8 * a->itemsize);
  return (int64_t)u;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error ".npy output assumes a little-endian host"
#endif

static bt_status npy_write(const char *path, const void *data, size_t elsize, int ndim, const int64_t *shape,
                           const char *descr) {
  if (ndim < 1 || ndim > BT_TENSOR_MAX_DIMS) return bt_fail(BT_E_ARG, "npy: %d dimensions", ndim);
  char h[512];
  int k = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
  size_t count = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return bt_fail(BT_E_ARG, "npy: negative dimension");
    k += snprintf(h + k, sizeof h - (size_t)k, "%lld%s", (long long)shape[i], ndim == 1 ? "," : i + 1 < ndim ? ", " : "");
    count *= (size_t)shape[i];
  }
  k += snprintf(h + k, sizeof h - (size_t)k, "), }");
  /* pad with spaces so that the data starts on a 64-byte boundary; end with \n */
  while ((10 + k + 1) % 64) h[k++] = ' ';
  h[k++] = '\n';
  uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)k, (uint8_t)(k >> 8)};
  bt_file_out fo;
  bt_status r = bt_file_out_open(&fo, path);
  if (r) return r;
  fwrite(pre, 1, 10, fo.f);
  fwrite(h, 1, (size_t)k, fo.f);
  if (count) fwrite(data, elsize, count, fo.f);
  return bt_file_out_commit(&fo);
}

bt_status bt_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape) {
  return npy_write(path, data, 4, ndim, shape, "<f4");
}

bt_status bt_npy_write_i64(const char *path, const int64_t *data, int ndim, const int64_t *shape) {
  return npy_write(path, data, 8, ndim, shape, "<i8");
}

/* ---------------------------------------------------------------- .npz (ZIP) */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

/* room for a member's .npy magic and header dictionary */
#define NPZ_HEADER_SLACK ((uint64_t)1 << 16)

/* Extracts member `name` of a ZIP archive into a malloc'd buffer. */
static bt_status zip_member(const char *path, const uint8_t *z, size_t len, const char *name, uint8_t **out,
                            size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  /* end of central directory: the last signature in the final 64 KiB + 22 bytes */
  if (len < 22) return bt_fail(BT_E_FORMAT, "%s: not a ZIP (npz) file", path);
  size_t eocd = len - 22, stop = len > 65557 ? len - 65557 : 0;
  while (le32(z + eocd) != 0x06054b50) {
    if (eocd == stop) return bt_fail(BT_E_FORMAT, "%s: not a ZIP (npz) file", path);
    eocd--;
  }
  uint64_t entries = le16(z + eocd + 10), cd_size = le32(z + eocd + 12), cd_off = le32(z + eocd + 16);
  if (entries == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
    /* ZIP64: locator just before the EOCD points at the ZIP64 EOCD record */
    if (eocd < 20 || le32(z + eocd - 20) != 0x07064b50) return bt_fail(BT_E_FORMAT, "%s: bad ZIP64 locator", path);
    uint64_t rec = le64(z + eocd - 20 + 8);
    if (rec > len - 56 || le32(z + rec) != 0x06064b50) return bt_fail(BT_E_FORMAT, "%s: bad ZIP64 record", path);
    entries = le64(z + rec + 32);
    cd_size = le64(z + rec + 40);
    cd_off = le64(z + rec + 48);
  }
  if (cd_off > len || cd_size > len - cd_off) return bt_fail(BT_E_FORMAT, "%s: central directory past the end", path);
  size_t p = (size_t)cd_off, cd_end = (size_t)(cd_off + cd_size), nl = strlen(name);
  for (uint64_t e = 0; e < entries; e++) {
    if (cd_end - p < 46 || le32(z + p) != 0x02014b50) return bt_fail(BT_E_FORMAT, "%s: corrupt central directory", path);
    int method = le16(z + p + 10);
    uint32_t crc = le32(z + p + 16);
    uint64_t csize = le32(z + p + 20), usize = le32(z + p + 24), loff = le32(z + p + 42);
    size_t fnl = le16(z + p + 28), exl = le16(z + p + 30), cml = le16(z + p + 32);
    if (cd_end - p - 46 < fnl + exl + cml) return bt_fail(BT_E_FORMAT, "%s: corrupt central directory", path);
    const uint8_t *fname = z + p + 46, *ex = fname + fnl;
    /* ZIP64 extra field: the 64-bit values of the fields that are 0xFFFFFFFF, in order */
    for (size_t q = 0; q + 4 <= exl;) {
      size_t id = le16(ex + q), sz = le16(ex + q + 2);
      if (q + 4 + sz > exl) break;
      if (id == 1) {
        const uint8_t *v = ex + q + 4;
        size_t k = 0;
        if (usize == 0xFFFFFFFFu && k + 8 <= sz) usize = le64(v + k), k += 8;
        if (csize == 0xFFFFFFFFu && k + 8 <= sz) csize = le64(v + k), k += 8;
        if (loff == 0xFFFFFFFFu && k + 8 <= sz) loff = le64(v + k), k += 8;
      }
      q += 4 + sz;
    }
    p += 46 + fnl + exl + cml;
    if (fnl != nl || memcmp(fname, name, nl)) continue;
    if (loff > len - 30 || le32(z + loff) != 0x04034b50) return bt_fail(BT_E_FORMAT, "%s: %s: bad local header", path, name);
    size_t data = (size_t)loff + 30 + le16(z + loff + 26) + le16(z + loff + 28);
    if (data > len || csize > len - data) return bt_fail(BT_E_FORMAT, "%s: %s: data past the end (truncated?)", path, name);
    /* the member's declared size is checked before anything is allocated:
     * a .npy member holds at most BT_NPY_MAX_BYTES of data after a header,
     * and deflate never expands more than 1032 to 1 */
    if (usize > BT_NPY_MAX_BYTES + NPZ_HEADER_SLACK)
      return bt_fail(BT_E_FORMAT, "%s: %s: declares %llu bytes, above the limit of %llu", path, name,
                     (unsigned long long)usize, (unsigned long long)(BT_NPY_MAX_BYTES + NPZ_HEADER_SLACK));
    if (method == 0 && csize != usize) return bt_fail(BT_E_FORMAT, "%s: %s: stored sizes differ", path, name);
    if (method == 8 && usize > csize * 1032 + 1024)
      return bt_fail(BT_E_FORMAT, "%s: %s: declares %llu bytes, more than %llu bytes of deflate data can hold",
                     path, name, (unsigned long long)usize, (unsigned long long)csize);
    uint8_t *buf = malloc(usize ? (size_t)usize : 1);
    if (!buf) return bt_fail(BT_E_NOMEM, "%s: out of memory", path);
    if (method == 0) {
      memcpy(buf, z + data, (size_t)usize);
    } else if (method == 8) {
      z_stream s;
      memset(&s, 0, sizeof s);
      if (inflateInit2(&s, -15) != Z_OK) {
        free(buf);
        return bt_fail(BT_E_NOMEM, "%s: zlib init failed", path);
      }
      /* sizes above 4 GiB are fed in pieces */
      size_t in_left = (size_t)csize, out_left = (size_t)usize;
      s.next_in = (Bytef *)(uintptr_t)(z + data);
      s.next_out = buf;
      int zr = Z_OK;
      while (zr == Z_OK) {
        uInt ai = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
        uInt ao = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
        s.avail_in = ai;
        s.avail_out = ao;
        zr = inflate(&s, Z_NO_FLUSH);
        in_left -= ai - s.avail_in;
        out_left -= ao - s.avail_out;
        if (zr == Z_OK && ai == s.avail_in && ao == s.avail_out) zr = Z_BUF_ERROR; /* no progress */
      }
      inflateEnd(&s);
      if (zr != Z_STREAM_END || out_left) {
        free(buf);
        return bt_fail(BT_E_FORMAT, "%s: %s: corrupt deflate data", path, name);
      }
    } else {
      free(buf);
      return bt_fail(BT_E_UNSUPPORTED, "%s: %s: ZIP compression method %d", path, name, method);
    }
    uLong c = crc32(0L, Z_NULL, 0);
    for (size_t k = 0; k < usize; k += (1u << 30))
      c = crc32(c, buf + k, (uInt)(usize - k > (1u << 30) ? (1u << 30) : usize - k));
    if (c != crc) {
      free(buf);
      return bt_fail(BT_E_FORMAT, "%s: %s: CRC mismatch (corrupt file)", path, name);
    }
    *out = buf;
    *out_len = (size_t)usize;
    return BT_OK;
  }
  return bt_fail(BT_E_FORMAT, "%s: no member '%s'", path, name);
}

bt_status bt_dataset_open_npz(const char *path, const char *split, bt_dataset **out) {
  *out = NULL;
  uint8_t *z = NULL, *ib = NULL, *lb = NULL;
  size_t zl, il, ll;
  char name[128];
  bt_dataset *d = NULL;
  bt_npy im, lab;
  bt_status r = bt_read_file(path, &z, &zl);
  if (!r) {
    snprintf(name, sizeof name, "%s_images.npy", split);
    r = zip_member(path, z, zl, name, &ib, &il);
  }
  if (!r) {
    snprintf(name, sizeof name, "%s_labels.npy", split);
    r = zip_member(path, z, zl, name, &lb, &ll);
  }
  if (!r && (r = bt_npy_parse(ib, il, &im)) == BT_OK && (r = bt_npy_parse(lb, ll, &lab)) == BT_OK) {
    if (strcmp(im.dtype, "u1"))
      r = bt_fail(BT_E_UNSUPPORTED, "%s: %s_images has dtype %s; expected uint8", path, split, im.dtype);
    else if (!((im.ndim == 3) || (im.ndim == 4 && (im.shape[3] == 3 || im.shape[3] == 1))))
      r = bt_fail(BT_E_FORMAT, "%s: %s_images must be N x H x W or N x H x W x 3", path, split);
    else if (im.shape[1] < 1 || im.shape[2] < 1 || im.shape[1] > 65535 || im.shape[2] > 65535)
      r = bt_fail(BT_E_FORMAT, "%s: %s_images: bad image size", path, split);
    else if (lab.dtype[0] != 'i' && lab.dtype[0] != 'u')
      r = bt_fail(BT_E_FORMAT, "%s: %s_labels must be integers", path, split);
    else if (!(lab.ndim == 1 || (lab.ndim == 2 && lab.shape[1] == 1)))
      r = bt_fail(BT_E_UNSUPPORTED, "%s: %s_labels must be N or N x 1 (one class per image; multi-label is not supported)",
                  path, split);
    else if (lab.shape[0] != im.shape[0])
      r = bt_fail(BT_E_FORMAT, "%s: %lld images but %lld labels", path, (long long)im.shape[0], (long long)lab.shape[0]);
  }
  if (!r && !(d = calloc(1, sizeof *d))) r = bt_fail(BT_E_NOMEM, "dataset: out of memory");
  if (!r) {
    d->n = (size_t)im.shape[0];
    d->h = (int)im.shape[1];
    d->w = (int)im.shape[2];
    d->c = im.ndim == 4 ? (int)im.shape[3] : 1;
    d->pixels = bt_alloc((size_t)im.count ? (size_t)im.count : 1);
    d->labels = malloc((d->n ? d->n : 1) * sizeof *d->labels);
    if (!d->pixels || !d->labels) r = bt_fail(BT_E_NOMEM, "dataset: out of memory");
  }
  if (!r) {
    memcpy(d->pixels, im.data, (size_t)im.count);
    for (size_t i = 0; i < d->n; i++) {
      int64_t v = npy_int(&lab, (int64_t)i);
      d->labels[i] = v < 0 || v >= MAX_LABEL ? -1 : (int)v;
    }
    r = finish_labels(d, path);
  }
  bt_free(z);
  free(ib);
  free(lb);
  if (r) {
    bt_dataset_free(d);
    return r;
  }
  *out = d;
  return BT_OK;
}

/* ---------------------------------------------------------------- folders */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int has_image_ext(const char *n) {
  const char *dot = strrchr(n, '.');
  if (!dot) return 0;
  char e[8] = {0};
  for (size_t i = 0; dot[1 + i]; i++) {
    if (i + 1 >= sizeof e) return 0;
    e[i] = (char)tolower((unsigned char)dot[1 + i]);
  }
  return !strcmp(e, "png") || !strcmp(e, "jpg") || !strcmp(e, "jpeg");
}

/* Sorted names in `dir` that are directories (want_dirs) or image files. */
static bt_status list_dir(const char *dir, int want_dirs, char ***names, size_t *count) {
  *names = NULL;
  *count = 0;
  DIR *dp = opendir(dir);
  if (!dp) return bt_fail(BT_E_IO, "%s: cannot open directory: %s", dir, strerror(errno));
  size_t cap = 0, n = 0;
  char **v = NULL;
  struct dirent *de;
  bt_status r = BT_OK;
  while ((de = readdir(dp))) {
    if (de->d_name[0] == '.') continue;
    char full[4096];
    if ((size_t)snprintf(full, sizeof full, "%s/%s", dir, de->d_name) >= sizeof full) continue;
    struct stat sb;
    if (stat(full, &sb) != 0) continue;
    if (want_dirs ? !S_ISDIR(sb.st_mode) : !(S_ISREG(sb.st_mode) && has_image_ext(de->d_name))) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      char **nv = realloc(v, cap * sizeof *nv);
      if (!nv) {
        r = bt_fail(BT_E_NOMEM, "dataset: out of memory");
        break;
      }
      v = nv;
    }
    if (!(v[n] = strdup(want_dirs ? de->d_name : full))) {
      r = bt_fail(BT_E_NOMEM, "dataset: out of memory");
      break;
    }
    n++;
  }
  closedir(dp);
  if (r) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
    return r;
  }
  if (n) qsort(v, n, sizeof *v, cmp_str);
  *names = v;
  *count = n;
  return BT_OK;
}

bt_status bt_dataset_open_folder(const char *dir, bt_dataset **out) {
  *out = NULL;
  char **classes;
  size_t nc;
  bt_status r = list_dir(dir, 1, &classes, &nc);
  if (r) return r;
  bt_dataset *d = calloc(1, sizeof *d);
  if (!d) {
    for (size_t i = 0; i < nc; i++) free(classes[i]);
    free(classes);
    return bt_fail(BT_E_NOMEM, "dataset: out of memory");
  }
  d->class_names = classes;
  d->num_classes = (int)nc;
  if (!nc) r = bt_fail(BT_E_FORMAT, "%s: no class sub-folders", dir);
  size_t cap = 0;
  for (size_t c = 0; !r && c < nc; c++) {
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/%s", dir, classes[c]);
    char **files;
    size_t nf;
    if ((r = list_dir(sub, 0, &files, &nf))) break;
    if (d->n + nf > cap) {
      cap = 2 * (d->n + nf);
      char **nfv = realloc(d->files, cap * sizeof *nfv);
      int *nl = realloc(d->labels, cap * sizeof *nl);
      if (nfv) d->files = nfv;
      if (nl) d->labels = nl;
      if (!nfv || !nl) {
        for (size_t i = 0; i < nf; i++) free(files[i]);
        free(files);
        r = bt_fail(BT_E_NOMEM, "dataset: out of memory");
        break;
      }
    }
    for (size_t i = 0; i < nf; i++) {
      d->files[d->n] = files[i];
      d->labels[d->n++] = (int)c;
    }
    free(files);
  }
  if (!r && !d->n) r = bt_fail(BT_E_FORMAT, "%s: no PNG or JPEG images in the class folders", dir);
  if (r) {
    bt_dataset_free(d);
    return r;
  }
  *out = d;
  return BT_OK;
}

/* ---------------------------------------------------------------- specs */

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

bt_status bt_dataset_open(const char *spec, bt_dataset **out) {
  *out = NULL;
  char buf[4096];
  if (strlen(spec) >= sizeof buf - 64) return bt_fail(BT_E_ARG, "dataset: spec too long");
  if (!strncmp(spec, "fashion-mnist", 13) && (!spec[13] || spec[13] == ':')) {
    const char *split = spec[13] ? spec + 14 : "train";
    const char *stem = !strcmp(split, "train") ? "train" : !strcmp(split, "test") ? "t10k" : NULL;
    if (!stem) return bt_fail(BT_E_ARG, "dataset: fashion-mnist split '%s' (train or test)", split);
    char lab[256];
    snprintf(buf, sizeof buf, "%s/%s-images-idx3-ubyte.gz", FASHION_DIR, stem);
    snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte.gz", FASHION_DIR, stem);
    bt_status r = bt_dataset_open_idx(buf, lab, out);
    if (r == BT_E_IO) {
      char msg[512];
      snprintf(msg, sizeof msg, "%s", bt_last_error());
      return bt_fail(r, "%s (install Debian's dataset-fashion-mnist package)", msg);
    }
    return r;
  }
  if (!strncmp(spec, "idx:", 4)) {
    snprintf(buf, sizeof buf, "%s", spec + 4);
    char *comma = strchr(buf, ',');
    if (comma) {
      *comma = '\0';
      return bt_dataset_open_idx(buf, comma + 1, out);
    }
    spec = spec + 4;
  } else if (!strncmp(spec, "npz:", 4)) {
    snprintf(buf, sizeof buf, "%s", spec + 4);
    char *colon = strrchr(buf, ':');
    const char *split = "train";
    if (colon && !strchr(colon, '/')) {
      *colon = '\0';
      split = colon + 1;
    }
    return bt_dataset_open_npz(buf, split, out);
  } else if (!strncmp(spec, "folder:", 7)) {
    return bt_dataset_open_folder(spec + 7, out);
  } else {
    struct stat sb;
    if (stat(spec, &sb) == 0 && S_ISDIR(sb.st_mode)) return bt_dataset_open_folder(spec, out);
    size_t l = strlen(spec);
    if (l > 4 && !strcmp(spec + l - 4, ".npz")) return bt_dataset_open_npz(spec, "train", out);
  }
  /* IDX images: labels by the MNIST naming convention */
  const char *m = strstr(spec, "images-idx3");
  if (!m) return bt_fail(BT_E_ARG, "dataset: cannot tell the labels file of '%s' (use idx:IMAGES,LABELS)", spec);
  snprintf(buf, sizeof buf, "%.*slabels-idx1%s", (int)(m - spec), spec, m + strlen("images-idx3"));
  return bt_dataset_open_idx(spec, buf, out);
}

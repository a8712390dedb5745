/* Typed .npy inputs of the pipeline: features and labels as the client
 * hands them to encryption (include/blindtuner/vision_data.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blindtuner/util.h"
#include "blindtuner/vision_data.h"
#include "vision/internal.h"

/* numpy itself refuses headers above 10000 bytes by default */
#define NPY_MAX_HEADER 65536

/* Reads a .npy file whose array is checked before its data is: the first
 * bytes (magic, version, header dictionary; at most NPY_MAX_HEADER of
 * header) are read and parsed, the declared shape must stay within
 * BT_NPY_MAX_BYTES and the file must hold exactly the header and that
 * data; only then is the whole file read, with util's reader bounded by
 * that size.  *a views into *buf (bt_free it). */
static bt_status npy_load(const char *path, uint8_t **buf, size_t *len, bt_npy *a) {
  *buf = NULL;
  *len = 0;
  int fd;
  uint64_t size;
  bt_status st = bt_file_open_read(path, &fd, &size);
  if (st) return st;
  const size_t cap = 12 + NPY_MAX_HEADER;
  const size_t want = size < cap ? (size_t)size : cap;
  uint8_t *head = malloc(want ? want : 1);
  size_t got = 0;
  if (!head) st = bt_fail(BT_E_NOMEM, "out of memory");
  while (!st && got < want) {
    ssize_t k = pread(fd, head + got, want - got, (off_t)got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      st = bt_fail(BT_E_IO, "%s: read error: %s", path, k < 0 ? strerror(errno) : "file shrank");
      break;
    }
    got += (size_t)k;
  }
  close(fd);
  size_t off = 0;
  if (!st && (st = bt_npy_parse_header(head, got, a, &off)) != BT_OK) {
    char msg[400];
    snprintf(msg, sizeof msg, "%s", bt_last_error());
    st = bt_fail(st, "%s: %s", path, msg);
  }
  free(head);
  if (st) return st;
  const uint64_t bytes = (uint64_t)a->count * (uint64_t)a->itemsize;
  if (size - off != bytes)
    return bt_fail(BT_E_FORMAT, "%s: the shape declares %llu bytes of data, the file holds %llu%s", path,
                   (unsigned long long)bytes, (unsigned long long)(size - off),
                   size - off < bytes ? " (truncated?)" : "");
  if ((st = bt_file_read(path, off + bytes, buf, len)) != BT_OK) return st;
  if ((st = bt_npy_parse(*buf, *len, a)) != BT_OK) {
    bt_free(*buf);
    *buf = NULL;
  }
  return st;
}

bt_status bt_npy_read_features(const char *path, float **x, size_t *n, size_t *dim) {
  uint8_t *buf = NULL;
  size_t len = 0;
  bt_npy a;
  *x = NULL;
  bt_status st = npy_load(path, &buf, &len, &a);
  if (!st && (strcmp(a.dtype, "f4") || !a.little || a.ndim != 2 || a.shape[0] < 1 || a.shape[1] < 1))
    st = bt_fail(BT_E_FORMAT, "%s: expected features as a 2-D little-endian float32 array (n x dim)", path);
  if (!st && !(*x = malloc((size_t)a.count * sizeof **x))) st = bt_fail(BT_E_NOMEM, "out of memory");
  if (!st) {
    memcpy(*x, a.data, (size_t)a.count * sizeof **x);
    *n = (size_t)a.shape[0];
    *dim = (size_t)a.shape[1];
    for (size_t i = 0; i < (size_t)a.count && !st; i++)
      if (!isfinite((*x)[i])) st = bt_fail(BT_E_FORMAT, "%s: value %zu is not finite", path, i);
    if (st) free(*x), *x = NULL;
  }
  bt_free(buf);
  return st;
}

bt_status bt_npy_read_labels(const char *path, size_t n, int classes, int **y) {
  uint8_t *buf = NULL;
  size_t len = 0;
  bt_npy a;
  *y = NULL;
  bt_status st = npy_load(path, &buf, &len, &a);
  const int i8 = !st && !strcmp(a.dtype, "i8"), i4 = !st && !strcmp(a.dtype, "i4");
  if (!st && ((!i8 && !i4) || !a.little || a.ndim != 1))
    st = bt_fail(BT_E_FORMAT, "%s: expected labels as a 1-D little-endian int64 or int32 array", path);
  else if (!st && (size_t)a.shape[0] != n)
    st = bt_fail(BT_E_FORMAT, "%s holds %lld labels for %zu feature rows", path, (long long)a.shape[0], n);
  else if (!st && !(*y = malloc(n * sizeof **y)))
    st = bt_fail(BT_E_NOMEM, "out of memory");
  for (size_t i = 0; !st && i < n; i++) {
    int64_t v;
    if (i8) {
      memcpy(&v, a.data + 8 * i, 8);
    } else {
      int32_t v4;
      memcpy(&v4, a.data + 4 * i, 4);
      v = v4;
    }
    if (v < 0 || v >= classes)
      st = bt_fail(BT_E_FORMAT, "%s: label %zu is %lld, the keys were made for classes 0..%d", path, i, (long long)v,
                   classes - 1);
    else
      (*y)[i] = (int)v;
  }
  if (st) free(*y), *y = NULL;
  bt_free(buf);
  return st;
}

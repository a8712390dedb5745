/* Typed .npy inputs of the pipeline: features and labels as the client
 * hands them to encryption (include/blindtuner/vision_data.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blindtuner/vision_data.h"

bt_status bt_npy_read_features(const char *path, float **x, size_t *n, size_t *dim) {
  uint8_t *buf = NULL;
  size_t len = 0;
  bt_npy a;
  *x = NULL;
  bt_status st = bt_read_file(path, &buf, &len);
  if (!st) st = bt_npy_parse(buf, len, &a);
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
  bt_status st = bt_read_file(path, &buf, &len);
  if (!st) st = bt_npy_parse(buf, len, &a);
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

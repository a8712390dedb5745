/* Whole-file reads and write-then-rename outputs for the vision layer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blindtuner/util.h"
#include "vision/internal.h"

bt_status bt_read_file(const char *path, uint8_t **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return bt_fail(BT_E_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    fclose(f);
    return bt_fail(BT_E_IO, "%s: not a regular file", path);
  }
  size_t n = (size_t)sb.st_size;
  uint8_t *b = bt_alloc(n + 1);
  if (!b) {
    fclose(f);
    return bt_fail(BT_E_NOMEM, "%s: out of memory reading %zu bytes", path, n);
  }
  size_t got = fread(b, 1, n, f);
  int err = ferror(f);
  fclose(f);
  if (err || got != n) {
    bt_free(b);
    return bt_fail(BT_E_IO, "%s: read error", path);
  }
  b[n] = 0;
  *buf = b;
  *len = n;
  return BT_OK;
}

bt_status bt_file_out_open(bt_file_out *fo, const char *path) {
  memset(fo, 0, sizeof *fo);
  size_t l = strlen(path);
  fo->path = malloc(l + 1);
  fo->tmp = malloc(l + 32);
  if (!fo->path || !fo->tmp) {
    free(fo->path);
    free(fo->tmp);
    return bt_fail(BT_E_NOMEM, "out of memory");
  }
  memcpy(fo->path, path, l + 1);
  snprintf(fo->tmp, l + 32, "%s.tmp.%ld", path, (long)getpid());
  fo->f = fopen(fo->tmp, "wb");
  if (!fo->f) {
    bt_status r = bt_fail(BT_E_IO, "%s: cannot create: %s", fo->tmp, strerror(errno));
    free(fo->path);
    free(fo->tmp);
    return r;
  }
  return BT_OK;
}

void bt_file_out_abort(bt_file_out *fo) {
  if (fo->f) fclose(fo->f);
  if (fo->tmp) remove(fo->tmp);
  free(fo->path);
  free(fo->tmp);
  memset(fo, 0, sizeof *fo);
}

bt_status bt_file_out_commit(bt_file_out *fo) {
  int bad = fflush(fo->f) != 0 || ferror(fo->f);
  bad |= fclose(fo->f) != 0;
  fo->f = NULL;
  if (bad) {
    bt_status r = bt_fail(BT_E_IO, "%s: write error: %s", fo->path, strerror(errno));
    bt_file_out_abort(fo);
    return r;
  }
  if (rename(fo->tmp, fo->path) != 0) {
    bt_status r = bt_fail(BT_E_IO, "%s: cannot rename into place: %s", fo->path, strerror(errno));
    bt_file_out_abort(fo);
    return r;
  }
  free(fo->path);
  free(fo->tmp);
  memset(fo, 0, sizeof *fo);
  return BT_OK;
}

/* Whole-file reads and write-then-rename outputs for the vision layer, on
 * util's careful files (util.h, "files"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blindtuner/util.h"
#include "vision/internal.h"

/* util's reader: regular files only (a FIFO or device is refused without
 * blocking), at most BT_FILE_READ_MAX bytes, refused before reading. */
bt_status bt_read_file(const char *path, uint8_t **buf, size_t *len) {
  return bt_file_read(path, 0, buf, len);
}

bt_status bt_file_out_open(bt_file_out *fo, const char *path) {
  memset(fo, 0, sizeof *fo);
  const size_t l = strlen(path);
  if (!(fo->path = malloc(l + 1))) return bt_fail(BT_E_NOMEM, "out of memory");
  memcpy(fo->path, path, l + 1);
  /* util's temporary: a random name, O_EXCL | O_NOFOLLOW (a planted symlink
   * is never written through), mode 0600: what the vision layer writes is
   * the client's (features, labels, predictions, decrypted logits) */
  char *tmp;
  int fd;
  bt_status r = bt_file_create_temp(path, 1, &tmp, &fd);
  if (r) {
    free(fo->path);
    fo->path = NULL;
    return r;
  }
  fo->tmp = malloc(strlen(tmp) + 1);
  if (fo->tmp) memcpy(fo->tmp, tmp, strlen(tmp) + 1);
  if (!fo->tmp || !(fo->f = fdopen(fd, "wb"))) {
    r = bt_fail(BT_E_IO, "%s: cannot create: %s", tmp, fo->tmp ? strerror(errno) : "out of memory");
    close(fd);
    unlink(tmp);
    free(fo->path);
    free(fo->tmp);
    memset(fo, 0, sizeof *fo);
  }
  bt_free(tmp);
  return r;
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
  bad |= fsync(fileno(fo->f)) != 0;
  bad |= fclose(fo->f) != 0;
  fo->f = NULL;
  if (bad) {
    bt_status r = bt_fail(BT_E_IO, "%s: write error: %s", fo->path, strerror(errno));
    bt_file_out_abort(fo);
    return r;
  }
  if (bt_file_commit(fo->tmp, fo->path) != BT_OK) { /* rename (replacing a symlink), fsync the directory */
    bt_status r = bt_fail(BT_E_IO, "%s: cannot rename into place: %s", fo->path, strerror(errno));
    bt_file_out_abort(fo);
    return r;
  }
  free(fo->path);
  free(fo->tmp);
  memset(fo, 0, sizeof *fo);
  return BT_OK;
}

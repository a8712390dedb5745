/* Files every layer reads and writes the same careful way (util.h, "files";
 * docs/PIPELINE.md, "Files on disk").
 *
 * Reading: a file is opened with O_NONBLOCK so that a FIFO or a device
 * named as an input cannot hang the open, then fstat'ed: anything but a
 * regular file is refused before a byte is read; O_NONBLOCK is then cleared.
 * Files read whole have a size limit, checked before the allocation.
 *
 * Writing: "<path>.tmp.<12 random hex digits>" in the target's directory,
 * created with O_CREAT | O_EXCL | O_NOFOLLOW (a planted file or symlink at
 * that name is never opened, let alone written through), mode 0600 for
 * secrets; renamed over the target, which replaces a symlink there instead
 * of following it; the directory fsynced after the rename. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "blindtuner/util.h"

static const char *kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a plain file";
}

bt_status bt_file_open_read(const char *path, int *fd, uint64_t *size) {
  *fd = -1;
  *size = 0;
  const int f = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (f < 0) return bt_fail(BT_E_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat sb;
  bt_status st = BT_OK;
  int flags;
  if (fstat(f, &sb) != 0)
    st = bt_fail(BT_E_IO, "%s: cannot stat: %s", path, strerror(errno));
  else if (!S_ISREG(sb.st_mode))
    st = bt_fail(BT_E_IO, "%s: not a regular file (%s)", path, kind_of(sb.st_mode));
  else if ((flags = fcntl(f, F_GETFL)) < 0 || fcntl(f, F_SETFL, flags & ~O_NONBLOCK) != 0)
    st = bt_fail(BT_E_IO, "%s: fcntl failed: %s", path, strerror(errno));
  if (st) {
    close(f);
    return st;
  }
  *fd = f;
  *size = (uint64_t)sb.st_size;
  return BT_OK;
}

bt_status bt_file_read(const char *path, uint64_t max, uint8_t **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  if (!max) max = BT_FILE_READ_MAX;
  int fd;
  uint64_t size;
  bt_status st = bt_file_open_read(path, &fd, &size);
  if (st) return st;
  if (size > max || size >= SIZE_MAX) {
    close(fd);
    return bt_fail(BT_E_IO, "%s: %llu bytes, more than the %llu bytes a file read whole may have", path,
                   (unsigned long long)size, (unsigned long long)max);
  }
  const size_t n = (size_t)size;
  uint8_t *b = bt_alloc(n + 1);
  if (!b) {
    close(fd);
    return bt_fail(BT_E_NOMEM, "%s: out of memory reading %zu bytes", path, n);
  }
  size_t done = 0;
  while (done < n) {
    const ssize_t r = read(fd, b + done, n - done);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) st = bt_fail(BT_E_IO, "%s: read error: %s", path, strerror(errno));
    else if (r == 0) st = bt_fail(BT_E_IO, "%s: truncated while reading (the file changed?)", path);
    if (st) break;
    done += (size_t)r;
  }
  close(fd);
  if (st) {
    bt_free_secret(b, n + 1); /* the caller may have been reading a secret */
    return st;
  }
  b[n] = 0;
  *buf = b;
  *len = n;
  return BT_OK;
}

bt_status bt_file_create_temp(const char *path, int secret, char **tmp, int *fd) {
  const size_t cap = strlen(path) + 32;
  *fd = -1;
  *tmp = bt_alloc(cap);
  if (!*tmp) return bt_fail(BT_E_NOMEM, "%s: out of memory", path);
  /* test hook (tests/cli/hostile_files.sh; builds with BT_TEST_HOOKS only):
   * the first name tried ends in this suffix instead of random digits, so a
   * test can plant a link there */
#ifdef BT_TEST_HOOKS
  const char *planted = getenv("BT_TEST_TEMP_SUFFIX");
#else
  const char *planted = NULL;
#endif
  int err = 0;
  for (int attempt = 0; attempt < 16; attempt++) {
    if (attempt == 0 && planted && *planted && strlen(planted) <= 16 && !strchr(planted, '/')) {
      snprintf(*tmp, cap, "%s.tmp.%s", path, planted);
    } else {
      uint8_t rnd[6];
      char hex[13];
      bt_random_bytes(rnd, sizeof rnd);
      sodium_bin2hex(hex, sizeof hex, rnd, sizeof rnd);
      snprintf(*tmp, cap, "%s.tmp.%s", path, hex);
    }
    /* 0666 leaves the umask in charge for public objects; secrets are never
     * readable by others, whatever the umask.  O_EXCL alone already refuses
     * a symlink; O_NOFOLLOW says so twice. */
    *fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, secret ? 0600 : 0666);
    if (*fd >= 0) return BT_OK;
    err = errno;
    if (err != EEXIST && err != ELOOP) break;
  }
  const bt_status st = bt_fail(BT_E_IO, "%s: cannot create the temporary file %s: %s", path, *tmp, strerror(err));
  bt_free(*tmp);
  *tmp = NULL;
  return st;
}

/* The directory part of path ("." when none, "/" for "/x"); bt_free it. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  const size_t n = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
  char *dir = bt_alloc(n + 1);
  if (!dir) return NULL;
  if (!slash) memcpy(dir, ".", 1);
  else memcpy(dir, slash == path ? "/" : path, n);
  dir[n] = '\0';
  return dir;
}

void bt_file_sync_dir(const char *path) {
  char *dir = dir_of(path);
  if (!dir) return;
  const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd); /* a failure leaves a complete file: not reported */
    close(fd);
  }
  bt_free(dir);
}

bt_status bt_file_commit(const char *tmp, const char *path) {
  if (rename(tmp, path) != 0)
    return bt_fail(BT_E_IO, "%s: cannot rename the temporary file over it: %s", path, strerror(errno));
  bt_file_sync_dir(path);
  return BT_OK;
}

bt_status bt_file_write_atomic(const char *path, const void *data, size_t len, int secret) {
  char *tmp = NULL;
  int fd = -1;
  bt_status st = bt_file_create_temp(path, secret, &tmp, &fd);
  if (st) return st;
  const uint8_t *b = data;
  for (size_t left = len; left && !st;) {
    const ssize_t r = write(fd, b, left);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) st = bt_fail(BT_E_IO, "%s: write failed: %s", path, strerror(errno));
    else b += r, left -= (size_t)r;
  }
  if (!st && fsync(fd) != 0) st = bt_fail(BT_E_IO, "%s: fsync failed: %s", path, strerror(errno));
  if (close(fd) != 0 && !st) st = bt_fail(BT_E_IO, "%s: close failed: %s", path, strerror(errno));
  if (!st) st = bt_file_commit(tmp, path);
  if (st) unlink(tmp);
  bt_free(tmp);
  return st;
}

/* The directory entry path names: its directory resolved (realpath), a
 * symlink in the last component followed (up to 8 times, dangling or not).
 * NULL when the directory does not exist. */
static char *entry_of(const char *path) {
  char cur[PATH_MAX], link[PATH_MAX];
  if (snprintf(cur, sizeof cur, "%s", path) >= (int)sizeof cur) return NULL;
  for (int hop = 0; hop < 8; hop++) {
    struct stat sb;
    if (lstat(cur, &sb) != 0 || !S_ISLNK(sb.st_mode)) break;
    const ssize_t n = readlink(cur, link, sizeof link - 1);
    if (n <= 0) break;
    link[n] = '\0';
    if (link[0] == '/') {
      memcpy(cur, link, (size_t)n + 1);
    } else {
      char *dir = dir_of(cur);
      const int w = dir ? snprintf(cur, sizeof cur, "%s/%s", dir, link) : -1;
      bt_free(dir);
      if (w < 0 || w >= (int)sizeof cur) return NULL;
    }
  }
  const char *slash = strrchr(cur, '/');
  const char *base = slash ? slash + 1 : cur;
  char *dir = dir_of(cur), *real = dir ? realpath(dir, NULL) : NULL;
  bt_free(dir);
  if (!real) return NULL;
  /* "x/" or "x/." or "x/..": the whole path is a directory, resolved as one */
  if (!*base || !strcmp(base, ".") || !strcmp(base, "..")) {
    free(real);
    return realpath(cur, NULL);
  }
  const size_t cap = strlen(real) + strlen(base) + 2;
  char *out = malloc(cap);
  if (out) snprintf(out, cap, "%s/%s", strcmp(real, "/") ? real : "", base);
  free(real);
  return out;
}

int bt_file_same(const char *a, const char *b) {
  if (!strcmp(a, b)) return 1;
  struct stat sa, sb;
  if (stat(a, &sa) == 0 && stat(b, &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  char *ea = entry_of(a), *eb = entry_of(b);
  const int same = ea && eb && !strcmp(ea, eb);
  free(ea);
  free(eb);
  return same;
}

bt_status bt_dir_lock(const char *dir, double wait_s, int *fd) {
  *fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (*fd < 0) return bt_fail(BT_E_IO, "%s: cannot open the directory: %s", dir, strerror(errno));
  const double t0 = bt_seconds();
  int r, err;
  while ((r = flock(*fd, LOCK_EX | LOCK_NB)) != 0) {
    err = errno;
    if (err == EINTR) continue;
    if (err != EWOULDBLOCK || bt_seconds() - t0 >= wait_s) break;
    usleep(100000); /* another process holds it: look again */
  }
  if (!r) return BT_OK;
  close(*fd);
  *fd = -1;
  if (err == EWOULDBLOCK)
    return bt_fail(BT_E_IO, "%s is in use by another process (a train or decide on the same directory); "
                   "run this again once it has finished", dir);
  return bt_fail(BT_E_UNSUPPORTED, "%s: cannot lock the directory: %s", dir, strerror(err));
}

void bt_dir_unlock(int fd) {
  if (fd >= 0) close(fd); /* closing the last descriptor releases the lock */
}

/* Files that belong together, committed together (pipeline.h, "pairs";
 * docs/PIPELINE.md, "Files on disk"): keygen's secret and evaluation
 * bundles, encrypt's training set and its scaler.
 *
 * Both are written complete and fsynced under temporary names beside their
 * targets (util's bt_file_create_temp: O_EXCL | O_NOFOLLOW).  Then a journal
 * "<second>.commit" names the two temporaries and their targets, the two
 * renames follow, and the journal is removed.  The second file is the one
 * the client reads again (the secret bundle, the scaler), and every load of
 * it first finishes a journal found beside it (bt_pipeline_finish_pair):
 * a crash before the journal leaves the old pair, a crash after it the new
 * pair once the client next reads it, never a mix. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/internal.h"

/* A name reserved beside path (the saver then renames its own temporary
 * over it). */
static bt_status reserve(const char *path, int secret, char **tmp) {
  int fd;
  const bt_status st = bt_file_create_temp(path, secret, tmp, &fd);
  if (!st) close(fd);
  return st;
}

static void drop(char **tmp) {
  if (!*tmp) return;
  unlink(*tmp);
  bt_free(*tmp);
  *tmp = NULL;
}

static void journal_of(const char *path, char *out, size_t cap) { snprintf(out, cap, "%s.commit", path); }

/* Refuses two names for one file, also the first file named as the second's
 * journal (first is renamed first, second last). */
static bt_status distinct(const char *first, const char *second) {
  char j[PATH_MAX + 16];
  journal_of(second, j, sizeof j);
  if (bt_file_same(first, second)) return bt_fail(BT_E_ARG, "%s and %s are the same file", first, second);
  if (bt_file_same(first, j)) return bt_fail(BT_E_ARG, "%s is the name of %s's commit journal", first, second);
  return BT_OK;
}

/* ---- the journal ---- */
enum { JOURNAL_MAX = 4 * PATH_MAX + 64, HEX = 12 };

/* path with its directory resolved (realpath) and its last component kept
 * as it is (a rename replaces a symlink there, never follows it). */
static bt_status absolute(const char *path, char *out, size_t cap) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  char dir[PATH_MAX], real[PATH_MAX];
  if (!*base || !strcmp(base, ".") || !strcmp(base, "..") || strchr(path, '\n'))
    return bt_fail(BT_E_ARG, "%s: not a file name", path);
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == path) snprintf(dir, sizeof dir, "/");
  else if ((size_t)(slash - path) >= sizeof dir) return bt_fail(BT_E_ARG, "%s: path too long", path);
  else memcpy(dir, path, (size_t)(slash - path)), dir[slash - path] = '\0';
  if (!realpath(dir, real)) return bt_fail(BT_E_IO, "%s: cannot resolve %s: %s", path, dir, strerror(errno));
  if (strchr(real, '\n')) return bt_fail(BT_E_ARG, "%s: a newline in the directory's name", path);
  if (snprintf(out, cap, "%s%s%s", real, strcmp(real, "/") ? "/" : "", base) >= (int)cap)
    return bt_fail(BT_E_ARG, "%s: path too long", path);
  return BT_OK;
}

/* A temporary of target: "<target>.tmp." and 12 hex digits. */
static int is_temp_of(const char *tmp, const char *target) {
  const size_t n = strlen(target);
  if (strncmp(tmp, target, n) || strncmp(tmp + n, ".tmp.", 5) || strlen(tmp + n + 5) != HEX) return 0;
  for (const char *c = tmp + n + 5; *c; c++)
    if (!strchr("0123456789abcdef", *c)) return 0;
  return 1;
}

bt_status bt_pipeline_finish_pair(const char *path, int *finished) {
  char jpath[PATH_MAX + 16];
  if (finished) *finished = 0;
  journal_of(path, jpath, sizeof jpath);
  struct stat sb;
  if (lstat(jpath, &sb) != 0) return errno == ENOENT ? BT_OK : bt_fail(BT_E_IO, "%s: %s", jpath, strerror(errno));
  if (sb.st_uid != geteuid())
    return bt_fail(BT_E_FORMAT, "%s: a commit journal of another user (remove it by hand once checked)", jpath);
  uint8_t *buf = NULL;
  size_t len = 0;
  bt_status st = bt_file_read(jpath, JOURNAL_MAX, &buf, &len);
  if (st) return st;
  /* four lines: temporary, target, temporary, target; the last target is path */
  char *line[4] = {0}, *save = NULL;
  int n = 0;
  for (char *t = strtok_r((char *)buf, "\n", &save); t && n < 5; t = strtok_r(NULL, "\n", &save)) {
    if (n < 4) line[n] = t;
    n++;
  }
  if (n != 4 || !is_temp_of(line[0], line[1]) || !is_temp_of(line[2], line[3]) || line[1][0] != '/' ||
      line[3][0] != '/' || !bt_file_same(line[3], path))
    st = bt_fail(BT_E_FORMAT, "%s: not a commit journal of %s (remove it by hand once checked)", jpath, path);
  /* renames still to do are done (a crash here repeats them, harmlessly) */
  for (int i = 0; !st && i < 4; i += 2) {
    if (lstat(line[i], &sb) != 0) continue; /* renamed before the crash */
    if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid())
      st = bt_fail(BT_E_FORMAT, "%s: not a regular file of this user", line[i]);
    else st = bt_file_commit(line[i], line[i + 1]);
  }
  if (!st && unlink(jpath) != 0 && errno != ENOENT) /* ENOENT: another load finished it */
    st = bt_fail(BT_E_IO, "%s: cannot remove: %s", jpath, strerror(errno));
  if (!st) bt_file_sync_dir(jpath);
  if (!st && finished) *finished = 1;
  bt_free_secret(buf, len + 1);
  return st;
}

/* Renames first then second under a journal beside the second; on a
 * failure before the journal nothing is renamed, after it the message
 * says so (the next load of the second finishes the pair). */
static bt_status commit_both(char **t1, const char *p1, char **t2, const char *p2) {
  char a[4][PATH_MAX], jpath[PATH_MAX + 16], text[JOURNAL_MAX];
  bt_status st = absolute(*t1, a[0], sizeof a[0]);
  if (!st) st = absolute(p1, a[1], sizeof a[1]);
  if (!st) st = absolute(*t2, a[2], sizeof a[2]);
  if (!st) st = absolute(p2, a[3], sizeof a[3]);
  if (st) return st;
  journal_of(p2, jpath, sizeof jpath);
  const int len = snprintf(text, sizeof text, "%s\n%s\n%s\n%s\n", a[0], a[1], a[2], a[3]);
  if ((st = bt_file_write_atomic(jpath, text, (size_t)len, 1))) return st;
  st = bt_file_commit(*t1, p1);
  if (!st) {
    bt_free(*t1);
    *t1 = NULL;
#ifdef BT_TEST_HOOKS
    const char *hook = getenv("BT_TEST_PAIR_CRASH"); /* test hook: tests/cli/hostile_files.sh */
    if (hook && !strcmp(hook, "1")) raise(SIGKILL);
#endif
    /* the same file after all (a case-insensitive file system, say): the
     * second rename would replace the first file, so nothing more is done */
    if (bt_file_same(p1, p2)) {
      unlink(*t2);
      unlink(jpath);
      return bt_fail(BT_E_ARG, "%s and %s are the same file; %s was written, %s not", p1, p2, p1, p2);
    }
    st = bt_file_commit(*t2, p2);
  }
  if (st) {
    char why[384];
    snprintf(why, sizeof why, "%s", bt_last_error());
    if (*t1) { /* nothing renamed: the old pair stays */
      unlink(jpath);
      return bt_fail(st, "%s", why);
    }
    bt_free(*t2); /* left for the journal */
    *t2 = NULL;
    return bt_fail(st, "%s is new but %s is not yet (%s); the next load of %s finishes it", p1, p2, why, p2);
  }
  bt_free(*t2);
  *t2 = NULL;
  if (unlink(jpath) != 0) return bt_fail(BT_E_IO, "%s: cannot remove: %s", jpath, strerror(errno));
  bt_file_sync_dir(jpath);
  return BT_OK;
}

static bt_status save_eval_bundle(const char *path, void *eb) { return bt_pipeline_save_eval_bundle(path, eb); }

bt_status bt_client_save_keyset(const bt_client *c, const bt_eval_bundle *eb, const char *secret, const char *eval) {
  return bt_pl_save_keyset(c, save_eval_bundle, (void *)eb, secret, eval);
}

bt_status bt_pl_save_keyset(const bt_client *c, bt_status (*save_eval)(const char *path, void *ctx), void *ctx,
                            const char *secret, const char *eval) {
  char *ts = NULL, *te = NULL;
  bt_status st = distinct(eval, secret);
  if (!st) st = bt_pipeline_finish_pair(secret, NULL); /* an earlier, interrupted keygen */
  if (!st) st = bt_io_refuse_secret(eval, "an evaluation bundle");
  if (!st) st = reserve(secret, 1, &ts);
  if (!st) st = reserve(eval, 0, &te);
  if (!st) st = bt_client_save(c, ts);
  if (!st) st = save_eval(te, ctx);
  /* the secret bundle second: the client's next load of it finishes the pair */
  if (!st) st = commit_both(&te, eval, &ts, secret);
  drop(&ts);
  drop(&te);
  return st;
}

bt_status bt_pipeline_save_train_set(const char *set, const bt_enc_dataset *d, const char *scaler,
                                     const bt_ckks_params *p, const bt_plain_head *sc) {
  char *td = NULL, *tsc = NULL;
  bt_status st = distinct(set, scaler);
  if (!st) st = bt_pipeline_finish_pair(scaler, NULL); /* an earlier, interrupted encrypt */
  if (!st) st = bt_io_refuse_secret(set, "an encrypted dataset");
  if (!st) st = bt_io_refuse_secret(scaler, "a scaler");
  if (!st) st = reserve(set, 0, &td);
  if (!st) st = reserve(scaler, 1, &tsc);
  if (!st) st = bt_pipeline_save_dataset(td, d);
  if (!st) st = bt_pipeline_save_head(tsc, BT_IO_SCALER, p, sc);
  /* the scaler second: the client's next load of it finishes the pair */
  if (!st) st = commit_both(&td, set, &tsc, scaler);
  drop(&td);
  drop(&tsc);
  return st;
}

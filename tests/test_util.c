#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif

#include "blindtuner/util.h"
#include "testutil.h"

static void prng_is_deterministic(void **state) {
  (void)state;
  uint8_t seed[BT_SEED_BYTES] = {1, 2, 3};
  bt_prng a, b;
  bt_prng_init(&a, seed);
  bt_prng_init(&b, seed);
  uint8_t x[3000], y[3000];
  /* different read sizes must give the same stream */
  bt_prng_bytes(&a, x, 1000);
  bt_prng_bytes(&a, x + 1000, 2000);
  for (size_t i = 0; i < sizeof y; i += 7) bt_prng_bytes(&b, y + i, sizeof y - i < 7 ? sizeof y - i : 7);
  assert_memory_equal(x, y, sizeof x);
  seed[0] ^= 1;
  bt_prng_init(&b, seed);
  bt_prng_bytes(&b, y, sizeof y);
  assert_memory_not_equal(x, y, sizeof x);
  bt_prng_wipe(&a);
  uint8_t zero[sizeof a.key] = {0};
  assert_memory_equal(a.key, zero, sizeof zero);
}

static void errors_carry_messages(void **state) {
  (void)state;
  bt_clear_error();
  assert_string_equal(bt_last_error(), "");
  assert_int_equal(bt_fail(BT_E_LEVEL, "cannot rescale: level %d", 0), BT_E_LEVEL);
  assert_string_equal(bt_last_error(), "cannot rescale: level 0");
  assert_string_equal(bt_status_name(BT_E_FORMAT), "BT_E_FORMAT");
}

static void alloc_is_aligned_and_wipe_works(void **state) {
  (void)state;
  uint8_t *p = bt_alloc(100);
  assert_non_null(p);
  assert_int_equal((uintptr_t)p % 64, 0);
  memset(p, 0xAB, 100);
  bt_wipe(p, 100);
  for (int i = 0; i < 100; i++) assert_int_equal(p[i], 0);
  bt_free(p);
  assert_null(bt_calloc(SIZE_MAX / 2, 4));
}

static void locked_memory_is_zeroed_and_usable(void **state) {
  (void)state;
  uint8_t *p = bt_alloc_locked(1000);
  assert_non_null(p);
  for (int i = 0; i < 1000; i++) assert_int_equal(p[i], 0);
  memset(p, 0x5A, 1000); /* the whole size is writable (a guard page sits past it) */
  /* the kernel keeps it out of core dumps; locked where RLIMIT_MEMLOCK allows */
  const int dd = bt_test_vm_flag(p, "dd"), lo = bt_test_vm_flag(p, "lo");
  printf("  guarded block: VmFlags dd=%d lo=%d\n", dd, lo);
  if (dd >= 0) assert_int_equal(dd, 1);
  /* an ordinary allocation is not excluded: the check can fail */
  uint8_t *q = bt_alloc(1 << 20);
  if (dd >= 0) assert_int_equal(bt_test_vm_flag(q, "dd"), 0);
  bt_free(q);
  bt_free_locked(p);
  bt_free_locked(NULL);
  /* every size comes back 64-byte aligned (decoders run vector code on it) */
  for (size_t n = 1; n < 300; n += 37) {
    uint8_t *r = bt_alloc_locked(n);
    assert_non_null(r);
    assert_int_equal((uintptr_t)r % 64, 0);
    bt_free_locked(r);
  }
}

/* The byte past a guarded block is a guard page: writing it kills the
 * process (checked in a child). */
static void locked_memory_overrun_faults(void **state) {
  (void)state;
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    signal(SIGSEGV, SIG_DFL); /* cmocka's handler would report and carry on as a test runner */
    signal(SIGBUS, SIG_DFL);
    volatile uint8_t *p = bt_alloc_locked(4096 - 64);
    if (!p) _exit(3);
    p[4096 - 64] = 1; /* one past the end */
    _exit(0);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  printf("  overrun: %s %d\n", WIFSIGNALED(status) ? "signal" : "exit", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
  /* a signal, or a sanitizer's report and non-zero exit; never a clean exit */
  assert_true(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 3));
}

static void core_dumps_can_be_turned_off(void **state) {
  (void)state;
  assert_int_equal(bt_disable_core_dumps(), BT_OK);
  struct rlimit r;
  assert_int_equal(getrlimit(RLIMIT_CORE, &r), 0);
  assert_int_equal(r.rlim_cur, 0);
  assert_int_equal(r.rlim_max, 0);
#if defined(__linux__)
  assert_int_equal(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
#endif
}

/* A scratch directory under the build tree's working directory. */
static void scratch(char *dir, size_t cap, const char *name) {
  snprintf(dir, cap, "util-%s", name);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir %s", dir, dir);
  assert_int_equal(system(cmd), 0);
}

static void files_are_written_atomically_and_compared(void **state) {
  (void)state;
  char d[64], a[128], b[128], l[128], fifo[128];
  scratch(d, sizeof d, "files");
  snprintf(a, sizeof a, "%s/a", d);
  snprintf(b, sizeof b, "%s/b", d);
  snprintf(l, sizeof l, "%s/link", d);
  snprintf(fifo, sizeof fifo, "%s/fifo", d);
  assert_int_equal(bt_file_write_atomic(a, "secret", 6, 1), BT_OK);
  struct stat sb;
  assert_int_equal(stat(a, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  uint8_t *buf = NULL;
  size_t len = 0;
  assert_int_equal(bt_file_read(a, 0, &buf, &len), BT_OK);
  assert_int_equal(len, 6);
  assert_memory_equal(buf, "secret", 6);
  bt_free(buf);
  assert_int_equal(bt_file_read(a, 5, &buf, &len), BT_E_IO); /* over the caller's limit */
  /* the same file through a symlink, a dangling symlink and ./ */
  assert_int_equal(symlink("a", l), 0);
  assert_true(bt_file_same(a, l));
  char a2[140];
  snprintf(a2, sizeof a2, "%s/./a", d);
  assert_true(bt_file_same(a, a2));
  assert_false(bt_file_same(a, b));
  char dl[128];
  snprintf(dl, sizeof dl, "%s/dangling", d);
  assert_int_equal(symlink("b", dl), 0);
  assert_true(bt_file_same(b, dl));
  /* a FIFO is refused at once (a blocking open would hang here) */
  assert_int_equal(mkfifo(fifo, 0600), 0);
  int fd = -1;
  uint64_t size = 0;
  assert_int_not_equal(bt_file_open_read(fifo, &fd, &size), BT_OK);
  assert_non_null(strstr(bt_last_error(), "not a regular file"));
  assert_int_not_equal(bt_file_read(d, 0, &buf, &len), BT_OK);
  /* a temporary never opens an existing name */
  char *tmp = NULL;
  assert_int_equal(bt_file_create_temp(b, 0, &tmp, &fd), BT_OK);
  assert_non_null(strstr(tmp, "/b.tmp."));
  close(fd);
  assert_int_equal(bt_file_commit(tmp, b), BT_OK);
  bt_free(tmp);
  assert_int_equal(lstat(b, &sb), 0);
  assert_true(S_ISREG(sb.st_mode));
}

static void directory_lock_is_exclusive(void **state) {
  (void)state;
  char d[64];
  scratch(d, sizeof d, "lock");
  int fd1 = -1, fd2 = -1;
  assert_int_equal(bt_dir_lock(d, 0, &fd1), BT_OK);
  /* flock locks belong to the open file description: a second open is refused */
  assert_int_equal(bt_dir_lock(d, 0.3, &fd2), BT_E_IO);
  assert_non_null(strstr(bt_last_error(), "in use by another process"));
  bt_dir_unlock(fd1);
  assert_int_equal(bt_dir_lock(d, 0, &fd2), BT_OK);
  bt_dir_unlock(fd2);
}

int main(void) {
  bt_test_seed();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(prng_is_deterministic),
      cmocka_unit_test(errors_carry_messages),
      cmocka_unit_test(alloc_is_aligned_and_wipe_works),
      cmocka_unit_test(locked_memory_is_zeroed_and_usable),
      cmocka_unit_test(locked_memory_overrun_faults),
      cmocka_unit_test(files_are_written_atomically_and_compared),
      cmocka_unit_test(directory_lock_is_exclusive),
      cmocka_unit_test(core_dumps_can_be_turned_off),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

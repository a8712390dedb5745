#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <sodium.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__)
#include <sys/prctl.h>
#endif

#include "blindtuner/util.h"

/* LeakSanitizer scans the heap, stacks and globals for pointers, not the
 * pages libsodium maps for guarded blocks; a structure kept there (the
 * client's state) holds the only pointers to its heap blocks, which LSan
 * would then call leaked.  Under a sanitizer each guarded block is
 * registered as a root region while it lives. */
#if defined(__SANITIZE_ADDRESS__)
#define BT_LSAN_ROOTS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define BT_LSAN_ROOTS 1
#endif
#endif
#ifdef BT_LSAN_ROOTS
#include <pthread.h>
#include <sanitizer/lsan_interface.h>

typedef struct lsan_root {
  void *p;
  size_t bytes;
  struct lsan_root *next;
} lsan_root;
static lsan_root *lsan_roots;
static pthread_mutex_t lsan_lock = PTHREAD_MUTEX_INITIALIZER;

static void lsan_add(void *p, size_t bytes) {
  lsan_root *r = malloc(sizeof *r);
  if (!r) return; /* only a false leak report can follow */
  __lsan_register_root_region(p, bytes);
  pthread_mutex_lock(&lsan_lock);
  *r = (lsan_root){p, bytes, lsan_roots};
  lsan_roots = r;
  pthread_mutex_unlock(&lsan_lock);
}

static void lsan_remove(void *p) {
  pthread_mutex_lock(&lsan_lock);
  for (lsan_root **at = &lsan_roots; *at; at = &(*at)->next)
    if ((*at)->p == p) {
      lsan_root *r = *at;
      *at = r->next;
      __lsan_unregister_root_region(r->p, r->bytes);
      free(r);
      break;
    }
  pthread_mutex_unlock(&lsan_lock);
}
#endif

bt_status bt_init(void) {
  if (sodium_init() < 0)
    return bt_fail(BT_E_RANDOM, "cannot initialise libsodium");
#if defined(__GLIBC__)
  /* Ciphertexts are tens of MB and circuits create and drop them by the
   * hundred.  Served by mmap, each would be returned to the kernel on free
   * and page-faulted in again on the next allocation (a third of
   * bootstrapping's time at N = 2^16); kept in the heap they are reused. */
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  return BT_OK;
}

/* Blocks of at least BT_HUGE_MIN bytes (limbs of ciphertexts, keys and
 * transform scratch at N = 2^16) are offered to the kernel as transparent
 * huge pages where it takes them (madvise mode), from their first 2 MiB
 * boundary on: a fresh block then costs one page fault per 2 MiB instead of
 * per 4 KiB (docs/ENGINE.md).  The blocks keep their ordinary alignment: 2 MiB
 * aligned blocks would put the many limbs a kernel streams at once into the
 * same cache sets. */
#define BT_HUGE_MIN ((size_t)4 << 20)
#define BT_HUGE_PAGE ((size_t)2 << 20)

void *bt_alloc(size_t bytes) {
  void *p = NULL;
  if (bytes == 0) bytes = 1;
  /* aligned_alloc wants a multiple of the alignment */
  size_t rounded = (bytes + 63) & ~(size_t)63;
  if (rounded < bytes || posix_memalign(&p, 64, rounded) != 0) {
    bt_fail(BT_E_NOMEM, "out of memory allocating %zu bytes", bytes);
    return NULL;
  }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (rounded >= BT_HUGE_MIN) {
    const uintptr_t a = (uintptr_t)p, lo = (a + BT_HUGE_PAGE - 1) & ~(uintptr_t)(BT_HUGE_PAGE - 1),
                    hi = (a + rounded) & ~(uintptr_t)(BT_HUGE_PAGE - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE); /* advice only */
  }
#endif
  return p;
}

void *bt_calloc(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size) {
    bt_fail(BT_E_NOMEM, "allocation size overflow");
    return NULL;
  }
  void *p = bt_alloc(count * size);
  if (p) memset(p, 0, count * size);
  return p;
}

void bt_free(void *p) { free(p); }

void bt_wipe(void *p, size_t bytes) {
  if (p && bytes) sodium_memzero(p, bytes);
}

/* Secrets (the secret key) live in libsodium's guarded allocations:
 * pages of their own between inaccessible guard pages, with a canary,
 * excluded from core dumps (MADV_DONTDUMP) and locked in RAM as far as
 * RLIMIT_MEMLOCK allows (best effort: beyond it they stay swappable but
 * still out of core dumps); sodium_free wipes them. */
void *bt_alloc_locked(size_t bytes) {
  /* sodium_malloc places the block against the trailing guard page, so its
   * address is only as aligned as its size: rounding the size up to 64
   * bytes keeps every guarded block as aligned as bt_alloc's (the NTT's
   * vector loads need it) */
  const size_t rounded = ((bytes ? bytes : 1) + 63) & ~(size_t)63;
  void *p = rounded < bytes || sodium_init() < 0 ? NULL : sodium_malloc(rounded); /* init: idempotent */
  if (!p) {
    bt_fail(BT_E_NOMEM, "out of memory allocating %zu bytes of guarded memory", bytes);
    return NULL;
  }
  memset(p, 0, rounded); /* sodium_malloc fills with garbage */
#ifdef BT_LSAN_ROOTS
  lsan_add(p, rounded);
#endif
  return p;
}

void bt_free_locked(void *p) {
#ifdef BT_LSAN_ROOTS
  if (p) lsan_remove(p);
#endif
  sodium_free(p);
}

void bt_free_secret(void *p, size_t bytes) {
  if (!p) return;
  sodium_memzero(p, bytes);
  free(p);
}

bt_status bt_disable_core_dumps(void) {
  const struct rlimit none = {0, 0};
  if (setrlimit(RLIMIT_CORE, &none) != 0) return bt_fail(BT_E_IO, "cannot disable core dumps (RLIMIT_CORE)");
#if defined(__linux__)
  /* also: no core through a pipe handler, no ptrace or /proc/PID/mem by
   * other processes of the same user */
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return bt_fail(BT_E_IO, "cannot disable core dumps (PR_SET_DUMPABLE)");
#endif
#ifdef BT_TEST_HOOKS
  /* test hook (tests/cli/hostile_files.sh): the kernel's view afterwards,
   * the "Max core file size" line of /proc/self/limits and the dumpable
   * flag, appended to the file BT_TEST_CORE_REPORT names */
  const char *report = getenv("BT_TEST_CORE_REPORT");
  if (!report || !*report) return BT_OK;
  FILE *out = fopen(report, "a"), *lim = fopen("/proc/self/limits", "r");
  char line[256];
  while (out && lim && fgets(line, sizeof line, lim))
    if (!strncmp(line, "Max core file size", 18)) fputs(line, out);
#if defined(__linux__)
  if (out) fprintf(out, "dumpable %d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
#endif
  if (lim) fclose(lim);
  if (out) fclose(out);
#endif
  return BT_OK;
}

#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "blindtuner/util.h"

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

void *bt_alloc(size_t bytes) {
  void *p = NULL;
  if (bytes == 0) bytes = 1;
  /* aligned_alloc wants a multiple of the alignment */
  size_t rounded = (bytes + 63) & ~(size_t)63;
  if (rounded < bytes || posix_memalign(&p, 64, rounded) != 0) {
    bt_fail(BT_E_NOMEM, "out of memory allocating %zu bytes", bytes);
    return NULL;
  }
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

void bt_free_secret(void *p, size_t bytes) {
  if (!p) return;
  sodium_memzero(p, bytes);
  free(p);
}

/* util: allocation, secure wipe, randomness and thread settings.
 *
 * Randomness: secrets and public "a" polynomials come from a ChaCha20 stream
 * (libsodium).  A stream keyed by a fresh 32-byte seed from the OS CSPRNG is
 * a CSPRNG; a stream keyed by a *public* seed is an extendable-output function
 * that anyone holding the seed can expand, which lets keys and fresh
 * ciphertexts travel as (b, seed) instead of (b, a). */
#ifndef BLINDTUNER_UTIL_H
#define BLINDTUNER_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include "blindtuner/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BT_SEED_BYTES 32

/* Must be called once before anything else (initialises libsodium).
 * Safe to call several times and from several threads. */
BT_API bt_status bt_init(void) BT_MUST_CHECK;

/* 64-byte aligned allocation; returns NULL on failure (and records BT_E_NOMEM). */
BT_API void *bt_alloc(size_t bytes);
BT_API void *bt_calloc(size_t count, size_t size);
BT_API void bt_free(void *p);
/* Zeroes memory in a way the compiler cannot elide. */
BT_API void bt_wipe(void *p, size_t bytes);
/* Wipes `bytes` then frees (memory from bt_alloc/bt_calloc). */
BT_API void bt_free_secret(void *p, size_t bytes);
/* Zeroed, 64-byte aligned memory for secrets (the secret key, decrypted
 * values before their release): libsodium's guarded allocation
 * (sodium_malloc: guard pages, excluded from core dumps with MADV_DONTDUMP,
 * locked in RAM as far as RLIMIT_MEMLOCK allows).  Free (wiped) with
 * bt_free_locked; NULL on failure (BT_E_NOMEM recorded). */
BT_API void *bt_alloc_locked(size_t bytes);
BT_API void bt_free_locked(void *p);
/* For processes that hold secrets or decrypted data (the client commands):
 * RLIMIT_CORE 0 and, on Linux, PR_SET_DUMPABLE 0 (no core file, not even
 * through a core_pattern pipe; no ptrace by other processes of the user). */
BT_API bt_status bt_disable_core_dumps(void) BT_MUST_CHECK;

/* Fills `out` from the operating system's CSPRNG. */
BT_API void bt_random_bytes(void *out, size_t n);

/* A deterministic ChaCha20 byte stream keyed by a 32-byte seed. */
typedef struct bt_prng {
  uint8_t key[BT_SEED_BYTES];
  uint64_t counter;   /* 64-byte block counter */
  uint8_t buf[1024];
  size_t pos;         /* bytes of buf already used */
} bt_prng;

BT_API void bt_prng_init(bt_prng *g, const uint8_t seed[BT_SEED_BYTES]);
/* Keyed by a fresh seed from the OS CSPRNG. */
BT_API void bt_prng_init_random(bt_prng *g);
BT_API void bt_prng_bytes(bt_prng *g, void *out, size_t n);
BT_API uint64_t bt_prng_u64(bt_prng *g);
/* Wipes the stream state. */
BT_API void bt_prng_wipe(bt_prng *g);

/* ---- files (docs/PIPELINE.md, "Files on disk") ---- */
/* The largest file bt_file_read reads whole unless told otherwise: 16 GiB. */
#define BT_FILE_READ_MAX ((uint64_t)1 << 34)
/* Opens a file for reading; anything but a regular file (a FIFO, a
 * directory, a device) is refused before a byte is read, without blocking
 * (opened O_NONBLOCK, checked with fstat, then O_NONBLOCK cleared).
 * *size: its size.  Errors name the path. */
BT_API bt_status bt_file_open_read(const char *path, int *fd, uint64_t *size) BT_MUST_CHECK;
/* Reads a whole regular file into a bt_alloc'd buffer (*len bytes and a NUL
 * past them; bt_free it); one larger than max bytes (0: BT_FILE_READ_MAX) is
 * refused before anything is allocated or read. */
BT_API bt_status bt_file_read(const char *path, uint64_t max, uint8_t **buf, size_t *len) BT_MUST_CHECK;
/* Creates "<path>.tmp.<12 random hex digits>" beside path with O_CREAT |
 * O_EXCL | O_NOFOLLOW (never an existing file or symlink), mode 0600 when
 * secret, else 0666 less the umask.  *tmp: bt_free it. */
BT_API bt_status bt_file_create_temp(const char *path, int secret, char **tmp, int *fd) BT_MUST_CHECK;
/* Renames tmp over path (a symlink at path is replaced, not followed) and
 * fsyncs the directory.  On failure tmp is left for the caller to unlink. */
BT_API bt_status bt_file_commit(const char *tmp, const char *path) BT_MUST_CHECK;
/* fsyncs the directory holding path (best effort). */
BT_API void bt_file_sync_dir(const char *path);
/* data -> a temporary (bt_file_create_temp), fsync, bt_file_commit; on
 * failure nothing is left and an old file at path is unchanged. */
BT_API bt_status bt_file_write_atomic(const char *path, const void *data, size_t len, int secret) BT_MUST_CHECK;
/* 1 when a and b name the same file: the same string, the same device and
 * inode when both exist (through symlinks and hard links), or the same
 * directory entry after resolving the directories and a symlink in the last
 * component (dangling or not). */
BT_API int bt_file_same(const char *a, const char *b);
/* An exclusive flock on a directory (train's and decide's exchange
 * directory), held until bt_dir_unlock.  While another process holds it,
 * looks again every 0.1 s for up to wait_s seconds (0: once), then fails
 * with BT_E_IO and a message; BT_E_UNSUPPORTED when the file system cannot
 * lock (then *fd is -1 and the caller decides). */
BT_API bt_status bt_dir_lock(const char *dir, double wait_s, int *fd) BT_MUST_CHECK;
BT_API void bt_dir_unlock(int fd);

/* Number of threads the library uses when a caller passes 0:
 * BT_THREADS from the environment if set and valid, else the OpenMP default. */
BT_API int bt_default_threads(void);

/* Monotonic wall-clock seconds. */
BT_API double bt_seconds(void);

#ifdef __cplusplus
}
#endif
#endif

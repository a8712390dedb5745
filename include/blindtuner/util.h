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
/* Wipes `bytes` then frees. */
BT_API void bt_free_secret(void *p, size_t bytes);

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

/* Number of threads the library uses when a caller passes 0:
 * BT_THREADS from the environment if set and valid, else the OpenMP default. */
BT_API int bt_default_threads(void);

/* Monotonic wall-clock seconds. */
BT_API double bt_seconds(void);

#ifdef __cplusplus
}
#endif
#endif

/* ChaCha20 keystream as CSPRNG / XOF (libsodium's crypto_stream_chacha20,
 * 64-bit nonce fixed at zero, 64-bit block counter).  Domain separation
 * between streams is the caller's job: derive distinct seeds. */
#include <string.h>

#include <sodium.h>

#include "blindtuner/util.h"

static void refill(bt_prng *g) {
  static const uint8_t nonce[crypto_stream_chacha20_NONCEBYTES] = {0};
  memset(g->buf, 0, sizeof g->buf);
  crypto_stream_chacha20_xor_ic(g->buf, g->buf, sizeof g->buf, nonce,
                                g->counter, g->key);
  g->counter += sizeof g->buf / 64;
  g->pos = 0;
}

void bt_prng_init(bt_prng *g, const uint8_t seed[BT_SEED_BYTES]) {
  memcpy(g->key, seed, BT_SEED_BYTES);
  g->counter = 0;
  refill(g);
}

void bt_prng_init_random(bt_prng *g) {
  uint8_t seed[BT_SEED_BYTES];
  bt_random_bytes(seed, sizeof seed);
  bt_prng_init(g, seed);
  sodium_memzero(seed, sizeof seed);
}

void bt_prng_bytes(bt_prng *g, void *out, size_t n) {
  uint8_t *o = out;
  while (n) {
    if (g->pos == sizeof g->buf) refill(g);
    size_t take = sizeof g->buf - g->pos;
    if (take > n) take = n;
    memcpy(o, g->buf + g->pos, take);
    /* used keystream is erased so a later memory disclosure cannot replay it */
    sodium_memzero(g->buf + g->pos, take);
    g->pos += take;
    o += take;
    n -= take;
  }
}

uint64_t bt_prng_u64(bt_prng *g) {
  uint64_t v;
  bt_prng_bytes(g, &v, sizeof v);
  return v;
}

void bt_prng_wipe(bt_prng *g) { sodium_memzero(g, sizeof *g); }

void bt_random_bytes(void *out, size_t n) { randombytes_buf(out, n); }

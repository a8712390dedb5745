/* Writes one valid container of each kind (INSECURE-n10), prefixed with the
 * selector byte fuzz_io.c uses, as a seed corpus: make_corpus DIR */
#include <stdio.h>
#include <stdlib.h>

#include "blindtuner/io.h"

static int put(const char *dir, int sel, uint8_t *buf, size_t len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/seed-%d", dir, sel);
  FILE *f = fopen(path, "wb");
  if (!f) return 1;
  uint8_t s = (uint8_t)sel;
  int bad = fwrite(&s, 1, 1, f) != 1 || fwrite(buf, 1, len, f) != len;
  bad |= fclose(f) != 0;
  bt_free(buf);
  return bad;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_corpus DIR\n");
    return 2;
  }
  bt_ckks_literal lit;
  bt_ckks_params *p;
  bt_prng g;
  uint8_t seed[BT_SEED_BYTES] = {7};
  bt_secret_key *sk;
  bt_public_key *pk;
  bt_switch_key *rk;
  bt_eval_keys *ek;
  bt_plaintext *pt;
  bt_ciphertext *ct;
  double v[4] = {1, 2, 3, 4};
  const int steps[1] = {1};
  uint8_t *buf;
  size_t len;
  bt_prng_init(&g, seed);
  if (bt_init() || bt_ckks_preset("INSECURE-n10", &lit) || bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &p) ||
      bt_keygen_secret(p, &g, &sk) || bt_keygen_public(sk, &g, &pk) || bt_keygen_relin(sk, &g, &rk) ||
      bt_eval_keys_new(p, &ek) || bt_keygen_eval(sk, &g, 1, steps, 1, 0, ek) || bt_plaintext_new(p, &pt) ||
      bt_ciphertext_new(p, &ct) || bt_ckks_encode_real(p, v, 4, 2, 2, 1 << 20, pt) ||
      bt_encrypt_sk(sk, pt, &g, ct)) {
    fprintf(stderr, "make_corpus: %s\n", bt_last_error());
    return 1;
  }
  int bad = 0;
  if (!bt_io_write_params(p, &buf, &len)) bad |= put(argv[1], 0, buf, len);
  if (!bt_io_write_ciphertext(ct, &buf, &len)) bad |= put(argv[1], 1, buf, len);
  if (!bt_io_write_plaintext(pt, &buf, &len)) bad |= put(argv[1], 2, buf, len);
  if (!bt_io_write_secret_key(sk, &buf, &len)) bad |= put(argv[1], 3, buf, len);
  if (!bt_io_write_public_key(pk, &buf, &len)) bad |= put(argv[1], 4, buf, len);
  if (!bt_io_write_switch_key(rk, &buf, &len)) bad |= put(argv[1], 5, buf, len);
  if (!bt_io_write_eval_keys(ek, &buf, &len)) bad |= put(argv[1], 6, buf, len);
  bt_ciphertext_free(ct);
  bt_plaintext_free(pt);
  bt_eval_keys_free(ek);
  bt_switch_key_free(rk);
  bt_public_key_free(pk);
  bt_secret_key_free(sk);
  bt_ckks_params_free(p);
  return bad;
}

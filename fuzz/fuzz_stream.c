/* libFuzzer target for the streaming file reader (bt_io_load through a
 * path, reading through its stage): the first byte picks the codec, the
 * rest is written to a scratch file and loaded.  Every codec io.h exports
 * (params, secret key, switch key, eval keys, and the encapsulation key in
 * a one-frame container), plus the ciphertext, plaintext and public-key
 * loaders.  Seeds: fuzz/corpus/fuzz_stream (fuzz/make_seeds.c). */
#include <stddef.h>
#include <stdint.h>

#include "blindtuner/io.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const bt_ckks_params *p = fuzz_small_params();
  if (size < 1) return 0;
  const char *path = fuzz_write_scratch(data + 1, size - 1);
  switch (data[0] % 8) {
  case 0: {
    bt_ckks_params *q = NULL;
    if (bt_io_load(&bt_io_params_codec, path, NULL, BT_ALLOW_INSECURE, &q) == BT_OK) bt_ckks_params_free(q);
    break;
  }
  case 1: {
    bt_secret_key *k = NULL;
    if (bt_io_load(&bt_io_secret_key_codec, path, p, 0, &k) == BT_OK) bt_secret_key_free(k);
    break;
  }
  case 2: {
    bt_switch_key *k = NULL;
    if (bt_io_load(&bt_io_switch_key_codec, path, p, 0, &k) == BT_OK) bt_switch_key_free(k);
    break;
  }
  case 3: {
    bt_eval_keys *k = NULL;
    if (bt_io_load(&bt_io_eval_keys_codec, path, p, 0, &k) == BT_OK) bt_eval_keys_free(k);
    break;
  }
  case 4: {
    bt_encaps_key *k = NULL;
    if (bt_io_load(&fuzz_encaps_codec, path, p, 0, &k) == BT_OK) bt_encaps_key_free(k);
    break;
  }
  case 5: {
    bt_ciphertext *c = NULL;
    if (bt_io_load_ciphertext(path, p, &c) == BT_OK) bt_ciphertext_free(c);
    break;
  }
  case 6: {
    bt_plaintext *c = NULL;
    if (bt_io_load_plaintext(path, p, &c) == BT_OK) bt_plaintext_free(c);
    break;
  }
  default: {
    bt_public_key *c = NULL;
    if (bt_io_load_public_key(path, p, &c) == BT_OK) bt_public_key_free(c);
    break;
  }
  }
  return 0;
}

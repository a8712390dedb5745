/* libFuzzer target for the container parser: every reader must refuse or
 * accept any byte string without crashing, leaking or reading out of bounds.
 * Build: cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DBT_FUZZ=ON &&
 *        cmake --build build-fuzz --target fuzz_io && ./build-fuzz/fuzz_io -max_total_time=60 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "blindtuner/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bt_ckks_params *params(void) {
  static bt_ckks_params *p;
  if (!p) {
    bt_ckks_literal lit;
    if (bt_init() || bt_ckks_preset("INSECURE-n10", &lit) || bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &p))
      abort();
  }
  return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const bt_ckks_params *p = params();
  bt_io_info info;
  (void)bt_io_inspect_buffer(data, size, &info);
  /* the first byte picks the reader so the fuzzer can reach each one; the
   * rest is the container */
  if (size < 1) return 0;
  const uint8_t *buf = data + 1;
  const size_t len = size - 1;
  switch (data[0] % 8) {
  case 0: {
    bt_ckks_params *q = NULL;
    if (bt_io_read_params(buf, len, BT_ALLOW_INSECURE, &q) == BT_OK) bt_ckks_params_free(q);
    break;
  }
  case 1: {
    bt_ciphertext *c = NULL;
    if (bt_io_read_ciphertext(buf, len, p, &c) == BT_OK) bt_ciphertext_free(c);
    break;
  }
  case 2: {
    bt_plaintext *c = NULL;
    if (bt_io_read_plaintext(buf, len, p, &c) == BT_OK) bt_plaintext_free(c);
    break;
  }
  case 3: {
    bt_secret_key *c = NULL;
    if (bt_io_read_secret_key(buf, len, p, &c) == BT_OK) bt_secret_key_free(c);
    break;
  }
  case 4: {
    bt_public_key *c = NULL;
    if (bt_io_read_public_key(buf, len, p, &c) == BT_OK) bt_public_key_free(c);
    break;
  }
  case 5: {
    bt_switch_key *c = NULL;
    if (bt_io_read_switch_key(buf, len, p, &c) == BT_OK) bt_switch_key_free(c);
    break;
  }
  case 7:
    /* the pipeline's files: the second byte picks the kind */
    if (len >= 1) (void)bt_pipeline_validate_buffer((bt_io_kind)(BT_IO_SECRET_BUNDLE + buf[0] % 10), buf + 1, len - 1, p);
    break;
  default: {
    bt_eval_keys *c = NULL;
    if (bt_io_read_eval_keys(buf, len, p, &c) == BT_OK) bt_eval_keys_free(c);
    break;
  }
  }
  return 0;
}

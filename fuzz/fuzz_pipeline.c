/* libFuzzer target for the pipeline's file loaders (include/blindtuner/
 * pipeline.h), each through a file as the command line reads them: the
 * first byte picks the loader, the rest is written to a scratch file.
 * Secret and evaluation bundles, encrypted datasets, model and loss
 * epochs, checkpoints, answers, logits, plaintext heads and scalers, the
 * evaluation-parameters peek, the summary `inspect` prints, and the
 * client's decisions record (JSON).  Seeds: fuzz/corpus/fuzz_pipeline. */
#include <stddef.h>
#include <stdint.h>

#include "blindtuner/pipeline.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const bt_ckks_params *p = fuzz_small_params();
  static const bt_job_tag tag = FUZZ_TAG;
  if (size < 1) return 0;
  const char *path = fuzz_write_scratch(data + 1, size - 1);
  bt_ckks_params *q = NULL;
  switch (data[0] % 13) {
  case 0: {
    bt_secret_bundle b;
    if (bt_pipeline_load_secret_bundle(path, BT_ALLOW_INSECURE, &q, &b) == BT_OK) {
      bt_secret_bundle_clear(&b);
      bt_ckks_params_free(q);
    }
    break;
  }
  case 1: {
    bt_eval_bundle b;
    if (bt_pipeline_load_eval_bundle(path, BT_ALLOW_INSECURE, &q, &b) == BT_OK) {
      bt_eval_bundle_clear(&b);
      bt_ckks_params_free(q);
    }
    break;
  }
  case 2: {
    bt_enc_dataset d;
    if (bt_pipeline_load_dataset(path, p, NULL, &d) == BT_OK) bt_enc_dataset_clear(&d);
    break;
  }
  case 3:
  case 4: {
    bt_enc_epoch e;
    if (bt_pipeline_load_epoch(path, data[0] % 13 == 3 ? BT_IO_MODEL : BT_IO_LOSS, p, &tag, &e) == BT_OK)
      bt_enc_epoch_clear(&e);
    break;
  }
  case 5: {
    bt_checkpoint c;
    if (bt_pipeline_load_checkpoint(path, p, NULL, &c) == BT_OK) bt_checkpoint_clear(&c);
    break;
  }
  case 6: {
    bt_answer a;
    (void)bt_pipeline_load_answer(path, p, &tag, &a);
    break;
  }
  case 7: {
    bt_enc_logits l;
    if (bt_pipeline_load_logits(path, p, NULL, &l) == BT_OK) bt_enc_logits_clear(&l);
    break;
  }
  case 8:
  case 9: {
    bt_plain_head h;
    /* a plaintext head loads without parameters too (selector top bit set) */
    const bt_ckks_params *hp = data[0] & 0x80 ? NULL : p;
    if (bt_pipeline_load_head(path, data[0] % 13 == 8 ? BT_IO_PLAIN_MODEL : BT_IO_SCALER, hp, NULL, &h) == BT_OK)
      bt_plain_head_clear(&h);
    break;
  }
  case 10: {
    bt_job_tag t;
    if (bt_pipeline_load_eval_params(path, BT_ALLOW_INSECURE, &q, &t) == BT_OK) bt_ckks_params_free(q);
    break;
  }
  case 11: {
    bt_pipeline_summary s;
    (void)bt_pipeline_summarize(path, &s);
    break;
  }
  default: {
    bt_decisions d;
    if (bt_decisions_load(path, &tag, &d) == BT_OK) bt_decisions_clear(&d);
    break;
  }
  }
  return 0;
}

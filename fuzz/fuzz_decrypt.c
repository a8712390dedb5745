/* libFuzzer target for the client's handling of what the server returns:
 * model, loss and logits files are loaded (against the client's tag, as the
 * command line does) and handed to the client's decryption and decoding
 * (bt_client_decrypt_model / _loss / _logits, and bt_client_decide, the
 * early-stopping step).  The key set is INSECURE (FUZZ_PRESET), made once
 * from BT_INSECURE_TEST_SEED = FUZZ_TEST_SEED so the seeds in
 * fuzz/corpus/fuzz_decrypt (fuzz/make_seeds.c) are encrypted under it.
 * The first byte picks: 0 model, 1 loss, 2 logits, 3 decide. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "blindtuner/pipeline.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bt_client *client;
static bt_plain_head scaler;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  if (setenv("BT_INSECURE_TEST_SEED", FUZZ_TEST_SEED, 1) != 0 || bt_init()) abort();
  bt_eval_bundle eb;
  if (bt_client_keygen(FUZZ_PRESET, BT_ALLOW_INSECURE, FUZZ_DIM, FUZZ_CLASSES, FUZZ_BATCH, 1, &client, &eb)) {
    fprintf(stderr, "fuzz_decrypt: keygen: %s\n", bt_last_error());
    abort();
  }
  bt_eval_bundle_clear(&eb);
  const float x[2 * FUZZ_DIM] = {1, 2, 3, -1, 0.5f, 4};
  /* whitened, so that decrypting a model also folds the projection in */
  if (bt_scaler_fit(bt_client_tag(client), x, 2, FUZZ_DIM, &scaler) || bt_scaler_whiten(&scaler, x, 2, 0)) abort();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const bt_ckks_params *p = bt_client_params(client);
  const bt_job_tag *tag = bt_client_tag(client);
  const char *path = fuzz_write_scratch(data + 1, size - 1);
  bt_status st = BT_OK;
  switch (data[0] % 4) {
  case 0: {
    bt_enc_epoch e;
    bt_plain_head h;
    if ((st = bt_pipeline_load_epoch(path, BT_IO_MODEL, p, tag, &e))) break;
    if ((st = bt_client_decrypt_model(client, &e, &scaler, &h)) == BT_OK) bt_plain_head_clear(&h);
    bt_enc_epoch_clear(&e);
    break;
  }
  case 1: {
    bt_enc_epoch e;
    double v;
    if ((st = bt_pipeline_load_epoch(path, BT_IO_LOSS, p, tag, &e))) break;
    st = bt_client_decrypt_loss(client, &e, &v);
    bt_enc_epoch_clear(&e);
    break;
  }
  case 2: {
    bt_enc_logits l;
    if ((st = bt_pipeline_load_logits(path, p, tag, &l))) break;
    float *z = malloc((size_t)l.rows * FUZZ_CLASSES * sizeof *z);
    if (z) st = bt_client_decrypt_logits(client, &l, z);
    free(z);
    bt_enc_logits_clear(&l);
    break;
  }
  default: {
    bt_enc_epoch e;
    bt_early_stop es;
    bt_answer a;
    double v;
    if ((st = bt_pipeline_load_epoch(path, BT_IO_LOSS, p, tag, &e))) break;
    bt_early_stop_init(&es, 3, 10);
    st = bt_client_decide(client, &es, &e, &v, &a);
    bt_enc_epoch_clear(&e);
    break;
  }
  }
  /* BT_FUZZ_VERBOSE=1: what became of each input (checking the seeds) */
  static int verbose = -1;
  if (verbose < 0) verbose = getenv("BT_FUZZ_VERBOSE") != NULL;
  if (verbose) fprintf(stderr, "fuzz_decrypt: selector %d: %s%s%s\n", data[0] % 4, bt_status_name(st),
                       st ? ": " : "", st ? bt_last_error() : "");
  return 0;
}

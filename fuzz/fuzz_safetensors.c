/* libFuzzer target for the safetensors reader (bt_safetensors_parse, the
 * parser bt_safetensors_open runs on a file's bytes): on success every
 * tensor is converted to float32, the metadata is looked up and the file
 * is offered to the ViT loader (bt_vit_from_safetensors), which checks the
 * tensors' names and shapes.  Seeds: fuzz/corpus/fuzz_safetensors. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "blindtuner/vision.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bt_safetensors *st = NULL;
  if (bt_safetensors_parse(data, size, &st) != BT_OK) return 0;
  const size_t n = bt_safetensors_count(st);
  for (size_t i = 0; i < n; i++) {
    const bt_tensor_view *t = bt_safetensors_at(st, i);
    /* a tensor's elements all lie in the file, so this is bounded by its size */
    float *f = malloc(t->count ? (size_t)t->count * sizeof *f : 1);
    if (f) (void)bt_tensor_to_f32(t, f);
    free(f);
    (void)bt_safetensors_find(st, t->name);
  }
  (void)bt_safetensors_meta(st, "format");
  bt_vit *m = NULL;
  if (bt_vit_from_safetensors(st, &m) == BT_OK) bt_vit_free(m);
  bt_safetensors_free(st);
  return 0;
}

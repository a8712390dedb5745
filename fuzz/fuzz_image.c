/* libFuzzer target for the image decoders (bt_image_decode: PNG through
 * libpng, JPEG through libjpeg, chosen by the signature, with the size
 * limit checked from the header): a decoded image is also resized, as
 * preprocessing does.  Seeds: fuzz/corpus/fuzz_image (test fixtures). */
#include <stddef.h>
#include <stdint.h>

#include "blindtuner/vision_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  bt_image im, small;
  if (bt_image_decode(data, size, &im) != BT_OK) return 0;
  if (bt_image_resize(&im, 7, 5, &small) == BT_OK) bt_image_free(&small);
  bt_image_free(&im);
  return 0;
}

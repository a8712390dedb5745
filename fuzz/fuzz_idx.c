/* libFuzzer target for the IDX dataset reader (bt_dataset_open_idx), plain
 * or gzip-compressed: the input is a little-endian u16 L, then the images
 * file (L bytes, fewer if the input ends), then the labels file; each goes
 * to its own scratch file.  A loaded dataset's first images are read back.
 * Seeds: fuzz/corpus/fuzz_idx. */
#include <stddef.h>
#include <stdint.h>

#include "blindtuner/vision_data.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t il = (size_t)data[0] | (size_t)data[1] << 8;
  if (il > size - 2) il = size - 2;
  const char *images = fuzz_write_slot(0, data + 2, il);
  const char *labels = fuzz_write_slot(1, data + 2 + il, size - 2 - il);
  bt_dataset *d = NULL;
  if (bt_dataset_open_idx(images, labels, &d) != BT_OK) return 0;
  const size_t count = bt_dataset_count(d);
  for (size_t i = 0; i < count && i < 3; i++) {
    bt_image im;
    if (bt_dataset_image(d, i, &im) == BT_OK) bt_image_free(&im);
  }
  (void)bt_dataset_num_classes(d);
  bt_dataset_free(d);
  return 0;
}

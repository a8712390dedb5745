/* libFuzzer target for the NumPy readers of the vision layer: the first
 * byte picks 0 .npy features (bt_npy_read_features), 1 .npy labels
 * (bt_npy_read_labels), 2 an .npz dataset (bt_dataset_open_npz, split
 * "train", then its images and labels read back), 3 the same with split
 * "test"; the rest is written to a scratch file.  bt_npy_parse also sees
 * the bytes in memory.  Seeds: fuzz/corpus/fuzz_npy. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "blindtuner/vision_data.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const uint8_t *b = data + 1;
  const size_t n = size - 1;
  bt_npy a;
  const int parsed = bt_npy_parse(b, n, &a) == BT_OK;
  const char *path = fuzz_write_scratch(b, n);
  switch (data[0] % 4) {
  case 0: {
    float *x = NULL;
    size_t rows, dim;
    if (bt_npy_read_features(path, &x, &rows, &dim) == BT_OK) free(x);
    break;
  }
  case 1: {
    int *y = NULL;
    /* the row count the caller expects: the array's own when it parses */
    const size_t rows = parsed && a.ndim == 1 ? (size_t)a.shape[0] : 3;
    if (bt_npy_read_labels(path, rows, 3, &y) == BT_OK) free(y);
    break;
  }
  default: {
    bt_dataset *d = NULL;
    if (bt_dataset_open_npz(path, data[0] % 4 == 2 ? "train" : "test", &d) != BT_OK) break;
    const size_t count = bt_dataset_count(d);
    for (size_t i = 0; i < count && i < 3; i++) {
      bt_image im;
      if (bt_dataset_image(d, i, &im) == BT_OK) bt_image_free(&im);
      (void)bt_dataset_label(d, i);
    }
    (void)bt_dataset_num_classes(d);
    bt_dataset_free(d);
    break;
  }
  }
  return 0;
}

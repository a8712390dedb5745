/* Helpers shared by the vision layer's sources; not part of the public API
 * (what other layers and tests may use is in vision.h and vision_data.h). */
#ifndef BT_VISION_INTERNAL_H
#define BT_VISION_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "blindtuner/status.h"
#include "blindtuner/vision_data.h"

/* An output file written under a temporary name and renamed into place on
 * commit, so a failed run never leaves a partial file behind. */
typedef struct bt_file_out {
  FILE *f;
  char *path, *tmp;
} bt_file_out;

bt_status bt_file_out_open(bt_file_out *fo, const char *path) BT_MUST_CHECK;
/* Flushes, checks for write errors, closes and renames; frees `fo` either way. */
bt_status bt_file_out_commit(bt_file_out *fo) BT_MUST_CHECK;
/* Closes and removes the temporary file. */
void bt_file_out_abort(bt_file_out *fo);

/* The largest .npy array the readers accept: 2 GiB of data (the declared
 * shape times the item size), checked from the header before the data is
 * read or any array allocated. */
#define BT_NPY_MAX_BYTES ((uint64_t)1 << 31)
/* Parses the magic and header dictionary of .npy bytes, of which `len`
 * are at hand (the data need not be): *out without its data pointer, and
 * *data_off, where the data starts.  Refuses shapes above BT_NPY_MAX_BYTES. */
bt_status bt_npy_parse_header(const uint8_t *bytes, size_t len, bt_npy *out, size_t *data_off) BT_MUST_CHECK;

#endif

/* vision: what an untrusted input may declare (docs/FUZZING.md, "Size limits
 * of the vision parsers"): images over 8192 x 8192, gzip bombs behind IDX
 * headers, .npy shapes over 2 GiB or past the file, each refused from the
 * header before the data is read or allocated. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "blindtuner/vision.h"
#include "blindtuner/vision_data.h"
#include "testutil.h"
#include "vision_fixture.h"

/* Sets a big-endian u32. */
static void put_be32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* Images whose header declares more than the decoders' limit of 8192 x 8192
 * pixels are refused from the header, before any pixel is decoded: real
 * small files with their dimensions rewritten (the PNG's IHDR CRC fixed). */
static void image_decoding_refuses_huge_images(void **state) {
  (void)state;
  uint8_t *buf;
  size_t len;
  bt_image im;
  BT_CHECK(bt_read_file(data_path("rgb.png"), &buf, &len));
  const uint32_t sizes[3][2] = {{16384, 16384}, {8193, 1}, {1, 8193}};
  for (int k = 0; k < 3; k++) {
    /* IHDR: length at 8, type at 12, width at 16, height at 20, CRC at 29 */
    assert_memory_equal(buf + 12, "IHDR", 4);
    put_be32(buf + 16, sizes[k][0]);
    put_be32(buf + 20, sizes[k][1]);
    put_be32(buf + 29, (uint32_t)crc32(crc32(0L, Z_NULL, 0), buf + 12, 17));
    assert_int_equal(bt_image_decode(buf, len, &im), BT_E_FORMAT);
    assert_null(im.data);
    if (!strstr(bt_last_error(), "exceeds the decoder's limit")) fail_msg("png: %s", bt_last_error());
  }
  bt_free(buf);
  BT_CHECK(bt_read_file(data_path("photo.jpg"), &buf, &len));
  size_t sof = 2;
  /* walk the markers to the frame header (SOF0..SOF2) */
  while (sof + 9 < len && !(buf[sof] == 0xFF && buf[sof + 1] >= 0xC0 && buf[sof + 1] <= 0xC2))
    sof += 2 + ((size_t)buf[sof + 2] << 8 | buf[sof + 3]);
  assert_true(sof + 9 < len);
  for (int k = 0; k < 3; k++) {
    /* SOF: marker, length (2), precision (1), height (2), width (2) */
    buf[sof + 5] = (uint8_t)(sizes[k][1] >> 8), buf[sof + 6] = (uint8_t)sizes[k][1];
    buf[sof + 7] = (uint8_t)(sizes[k][0] >> 8), buf[sof + 8] = (uint8_t)sizes[k][0];
    assert_int_equal(bt_image_decode(buf, len, &im), BT_E_FORMAT);
    assert_null(im.data);
    if (!strstr(bt_last_error(), "exceeds the decoder's limit")) fail_msg("jpeg: %s", bt_last_error());
  }
  bt_free(buf);
}

/* ---------------------------------------------------------------- datasets */

static void write_gz(const char *path, const uint8_t *head, size_t hl, size_t zeros) {
  gzFile f = gzopen(path, "wb9");
  assert_non_null(f);
  assert_int_equal(gzwrite(f, head, (unsigned)hl), (int)hl);
  static const uint8_t zero[65536];
  for (size_t left = zeros; left;) {
    unsigned k = left < sizeof zero ? (unsigned)left : (unsigned)sizeof zero;
    assert_int_equal(gzwrite(f, zero, k), (int)k);
    left -= k;
  }
  assert_int_equal(gzclose(f), Z_OK);
}

/* A gzip bomb behind a small IDX header (2 images of 2 x 2 declared, 64 MiB
 * inflated) is refused as soon as the stream passes what the header
 * declares; the same file with the declared data only is read. */
static void idx_refuses_gzip_bombs(void **state) {
  (void)state;
  uint8_t ih[16] = {0, 0, 8, 3}, lh[8] = {0, 0, 8, 1};
  put_be32(ih + 4, 2);
  put_be32(ih + 8, 2);
  put_be32(ih + 12, 2);
  put_be32(lh + 4, 2);
  const char *im = tmp_path("bomb-images-idx3-ubyte.gz"), *lab = tmp_path("bomb-labels-idx1-ubyte.gz");
  write_gz(lab, lh, 8, 2);
  write_gz(im, ih, 16, 8);
  bt_dataset *d = NULL;
  BT_CHECK(bt_dataset_open_idx(im, lab, &d));
  assert_int_equal(bt_dataset_count(d), 2);
  bt_dataset_free(d);
  d = NULL;
  write_gz(im, ih, 16, (size_t)64 << 20);
  assert_int_equal(bt_dataset_open_idx(im, lab, &d), BT_E_FORMAT);
  assert_null(d);
  if (!strstr(bt_last_error(), "past the 8 bytes the IDX header declares")) fail_msg("%s", bt_last_error());
  /* one byte too many, and one too few */
  write_gz(im, ih, 16, 9);
  assert_int_equal(bt_dataset_open_idx(im, lab, &d), BT_E_FORMAT);
  write_gz(im, ih, 16, 7);
  assert_int_equal(bt_dataset_open_idx(im, lab, &d), BT_E_FORMAT);
  if (!strstr(bt_last_error(), "truncated")) fail_msg("%s", bt_last_error());
  /* a header declaring more than 16 GiB */
  put_be32(ih + 4, 1u << 20);
  put_be32(ih + 8, 1u << 10);
  put_be32(ih + 12, 1u << 10);
  write_gz(im, ih, 16, 8);
  assert_int_equal(bt_dataset_open_idx(im, lab, &d), BT_E_FORMAT);
  if (!strstr(bt_last_error(), "16 GiB")) fail_msg("%s", bt_last_error());
}

/* A .npy header with shape `shape` (a Python tuple) and `data` bytes after it. */
static size_t make_npy(uint8_t *out, const char *descr, const char *shape) {
  char h[128];
  int k = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
  while ((10 + k + 1) % 64) h[k++] = ' ';
  h[k++] = '\n';
  memcpy(out, "\x93NUMPY\x01\x00", 8);
  out[8] = (uint8_t)k;
  out[9] = 0;
  memcpy(out + 10, h, (size_t)k);
  return 10 + (size_t)k;
}

/* .npy arrays declaring more than 2 GiB, or more data than the file holds,
 * are refused from the header, before the data is read or allocated. */
static void npy_refuses_oversized_shapes(void **state) {
  (void)state;
  uint8_t b[256 + 64] = {0};
  bt_npy a;
  float *x = NULL;
  int *y = NULL;
  size_t n, dim;
  /* 3 GB of float32 declared, 64 bytes present */
  size_t hl = make_npy(b, "<f4", "(750000, 1000)");
  assert_int_equal(bt_npy_parse(b, hl + 64, &a), BT_E_FORMAT);
  if (!strstr(bt_last_error(), "above the limit")) fail_msg("%s", bt_last_error());
  write_bytes(tmp_path("big.npy"), b, hl + 64);
  assert_int_equal(bt_npy_read_features(tmp_path("big.npy"), &x, &n, &dim), BT_E_FORMAT);
  assert_null(x);
  if (!strstr(bt_last_error(), "above the limit")) fail_msg("%s", bt_last_error());
  /* within the limit but more than the file holds: refused before reading */
  hl = make_npy(b, "<f4", "(1000, 1000)");
  write_bytes(tmp_path("short.npy"), b, hl + 64);
  assert_int_equal(bt_npy_read_features(tmp_path("short.npy"), &x, &n, &dim), BT_E_FORMAT);
  if (!strstr(bt_last_error(), "truncated")) fail_msg("%s", bt_last_error());
  /* bytes after the declared data */
  hl = make_npy(b, "<i8", "(2,)");
  write_bytes(tmp_path("long.npy"), b, hl + 24);
  assert_int_equal(bt_npy_read_labels(tmp_path("long.npy"), 2, 3, &y), BT_E_FORMAT);
  assert_null(y);
  /* a header that ends right after a key's colon (found by fuzz_npy: read
   * one byte past the header) */
  static const char cut[] = "\x93NUMPY\x01\x00\x0c\x00{'descr':   ";
  uint8_t *exact = malloc(sizeof cut - 1); /* no byte after it, for ASan */
  assert_non_null(exact);
  memcpy(exact, cut, sizeof cut - 1);
  assert_int_equal(bt_npy_parse(exact, sizeof cut - 1, &a), BT_E_FORMAT);
  free(exact);
  /* exactly right: read */
  write_bytes(tmp_path("ok.npy"), b, hl + 16);
  BT_CHECK(bt_npy_read_labels(tmp_path("ok.npy"), 2, 3, &y));
  assert_int_equal(y[0], 0);
  free(y);
  hl = make_npy(b, "<f4", "(2, 4)");
  memset(b + hl, 0, 32);
  write_bytes(tmp_path("okf.npy"), b, hl + 32);
  BT_CHECK(bt_npy_read_features(tmp_path("okf.npy"), &x, &n, &dim));
  assert_int_equal(n, 2);
  assert_int_equal(dim, 4);
  free(x);
}

int main(void) {
  bt_test_seed();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(image_decoding_refuses_huge_images),
      cmocka_unit_test(idx_refuses_gzip_bombs),
      cmocka_unit_test(npy_refuses_oversized_shapes),
  };
  return cmocka_run_group_tests(tests, vision_setup, vision_teardown);
}

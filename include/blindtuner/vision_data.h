/* vision data: images, timm's preprocessing, dataset readers and .npy files.
 *
 * Images are 8-bit, height x width x channels (1 grey or 3 RGB), as decoded
 * from PNG (libpng) or JPEG (libjpeg-turbo) or read from a dataset.
 * Preprocessing reproduces timm's evaluation transform on PIL images:
 *   Resize(shorter side -> floor(size / crop_pct), PIL bicubic) -> CenterCrop(size)
 *   -> ToTensor (/255) -> Normalize(mean, std), grey replicated to 3 channels,
 * with PIL's fixed-point resampling emulated exactly, so the pixels match. */
#ifndef BLINDTUNER_VISION_DATA_H
#define BLINDTUNER_VISION_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "blindtuner/status.h"
#include "blindtuner/vision.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bt_image {
  int width, height, channels; /* channels: 1 or 3 */
  uint8_t *data;               /* height x width x channels, owned (bt_image_free) */
} bt_image;

/* PNG or JPEG, told apart by their signatures.  16-bit PNGs are reduced to
 * 8 bits, palettes expanded, alpha dropped; CMYK JPEGs are refused. */
BT_API bt_status bt_image_decode(const void *bytes, size_t len, bt_image *out) BT_MUST_CHECK BT_NONNULL(3);
BT_API bt_status bt_image_load(const char *path, bt_image *out) BT_MUST_CHECK BT_NONNULL(1, 2);
/* An owned image of the given size (zeroed). */
BT_API bt_status bt_image_new(int width, int height, int channels, bt_image *out) BT_MUST_CHECK BT_NONNULL(4);
BT_API void bt_image_free(bt_image *im);

/* PIL's Image.resize(..., BICUBIC) on 8-bit images, bit for bit: a separable
 * filter (a = -0.5) widened by the scale when shrinking (antialiasing),
 * horizontal pass first, both rounded to 8 bits. */
BT_API bt_status bt_image_resize(const bt_image *in, int width, int height, bt_image *out) BT_MUST_CHECK
    BT_NONNULL(1, 4);

typedef struct bt_preprocess {
  int size;         /* output is size x size */
  float crop_pct;   /* shorter side resized to floor(size / crop_pct), then centre crop */
  float mean[3], std[3];
  int channels;     /* output channels: 3 (grey replicated) or 1 (RGB averaged by ITU-R 601-2 luma, as PIL's convert("L")) */
} bt_preprocess;

/* The preprocessing a model was trained with. */
BT_API void bt_preprocess_of(const bt_vit_config *c, bt_preprocess *pp) BT_NONNULL(1, 2);
/* Writes channels x size x size floats. */
BT_API bt_status bt_image_preprocess(const bt_image *in, const bt_preprocess *pp, float *out) BT_MUST_CHECK
    BT_NONNULL(1, 2, 3);

/* ------------------------------------------------------------------ datasets
 * One interface for the three layouts:
 *  - IDX (MNIST, Fashion-MNIST): an images file (magic 0x00000803, uint8,
 *    n x rows x cols) and a labels file (0x00000801), gzip'd or not;
 *  - NumPy .npz in MedMNIST's layout: <split>_images (n x h x w or n x h x w x 3,
 *    uint8) and <split>_labels (n or n x 1, any integer type), stored or deflated;
 *  - an image folder: one sub-folder per class (sorted by name = label),
 *    PNG/JPEG files inside (sorted by name). */

typedef struct bt_dataset bt_dataset;

BT_API bt_status bt_dataset_open_idx(const char *images, const char *labels, bt_dataset **out) BT_MUST_CHECK
    BT_NONNULL(1, 2, 3);
BT_API bt_status bt_dataset_open_npz(const char *path, const char *split, bt_dataset **out) BT_MUST_CHECK
    BT_NONNULL(1, 2, 3);
BT_API bt_status bt_dataset_open_folder(const char *dir, bt_dataset **out) BT_MUST_CHECK BT_NONNULL(1, 2);
/* From a command-line spec:
 *   idx:IMAGES[,LABELS]    (LABELS defaults to IMAGES with "images-idx3" -> "labels-idx1")
 *   npz:FILE[:SPLIT]       (SPLIT defaults to "train")
 *   folder:DIR
 *   fashion-mnist[:train|:test], mnist[:train|:test]   (Debian's dataset packages)
 * or a bare path: a directory is a folder, *.npz an npz, anything else IDX. */
BT_API bt_status bt_dataset_open(const char *spec, bt_dataset **out) BT_MUST_CHECK BT_NONNULL(1, 2);
BT_API void bt_dataset_free(bt_dataset *d);

BT_API size_t bt_dataset_count(const bt_dataset *d) BT_NONNULL(1);
/* 1 + the largest label. */
BT_API int bt_dataset_num_classes(const bt_dataset *d) BT_NONNULL(1);
/* A folder's class names; NULL for the other layouts. */
BT_API const char *bt_dataset_class_name(const bt_dataset *d, int label) BT_NONNULL(1);
BT_API int bt_dataset_label(const bt_dataset *d, size_t i) BT_NONNULL(1);
/* Image i (a new owned image: bt_image_free it). */
BT_API bt_status bt_dataset_image(const bt_dataset *d, size_t i, bt_image *out) BT_MUST_CHECK BT_NONNULL(1, 3);

/* ------------------------------------------------------------------ files */

/* Reads a whole file into a bt_alloc'd buffer (*len bytes, plus a NUL past
 * the end; bt_free it).  Regular files only; errors name the path. */
BT_API bt_status bt_read_file(const char *path, uint8_t **buf, size_t *len) BT_MUST_CHECK
    BT_NONNULL(1, 2, 3);

/* ------------------------------------------------------------------ .npy */

/* Writes a NumPy .npy (format 1.0) file of float32 ('<f4') or int64 ('<i8'),
 * C order, through a temporary name. */
BT_API bt_status bt_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape) BT_MUST_CHECK
    BT_NONNULL(1, 4);
BT_API bt_status bt_npy_write_i64(const char *path, const int64_t *data, int ndim, const int64_t *shape) BT_MUST_CHECK
    BT_NONNULL(1, 4);

/* A parsed .npy array (views into `bytes`). */
typedef struct bt_npy {
  char dtype[8];      /* the descr without byte order: "f4", "u1", "i8", ... */
  int little;         /* 1 little-endian or byte-sized, 0 big-endian */
  int itemsize;
  int ndim;
  int64_t shape[BT_TENSOR_MAX_DIMS];
  int64_t count;
  const uint8_t *data;
} bt_npy;

/* Parses .npy bytes (C order only); BT_E_FORMAT on anything malformed. */
BT_API bt_status bt_npy_parse(const uint8_t *bytes, size_t len, bt_npy *out) BT_MUST_CHECK BT_NONNULL(3);

/* The pipeline's inputs: a float32 n x dim matrix of finite values (*x
 * malloc'd), and n labels (int64 or int32, 1-D) in [0, classes) as ints. */
BT_API bt_status bt_npy_read_features(const char *path, float **x, size_t *n, size_t *dim) BT_MUST_CHECK;
BT_API bt_status bt_npy_read_labels(const char *path, size_t n, int classes, int **y) BT_MUST_CHECK;

/* ------------------------------------------------------------ features */
/* What bt_features_extract computes: the transformer features of (a
 * selection of) a dataset's images. */
typedef struct bt_features_request {
  const char *data;    /* dataset spec (bt_dataset_open) */
  const char *model;   /* safetensors; NULL: bt_vit_default_model */
  const char *classes; /* NULL, or labels to keep and renumber in order: "5,6,7" or "5-9" */
  bt_vit_pool pool;
  int limit;           /* > 0: the first `limit` images (after classes) */
  size_t sample;       /* > 0: instead a random `sample` of them, shuffled with `seed` */
  uint64_t seed;
  int size, batch, threads;        /* 0: the model's size, 64 images per pass, bt_default_threads() */
  float crop, mean[3], std[3];     /* crop <= 0: the model's; mean/std when have_mean/have_std */
  int have_mean, have_std;
  /* optional: told what will run once it is known, and the images done
   * after each pass (nonzero cancels) */
  void (*info)(void *user, const char *model, size_t images, int classes, int size, size_t dim, int threads);
  int (*progress)(void *user, size_t done, size_t total);
  void *user;
} bt_features_request;
/* *feats (n x dim float32) and *labels (n) are malloc'd; *classes (may be
 * NULL) gets the number of classes after the selection. */
BT_API bt_status bt_features_extract(const bt_features_request *r, float **feats, int64_t **labels, size_t *n,
                                     size_t *dim, int *classes) BT_MUST_CHECK;
/* The bundled model: $BT_MODEL, else models/deit_fmnist05.safetensors next
 * to the executable (or one or two levels up), else relative to the
 * current directory.  Written into buf (n bytes) unless taken from the
 * environment. */
BT_API const char *bt_vit_default_model(char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif

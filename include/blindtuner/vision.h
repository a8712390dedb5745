/* vision: the client's transformer (docs/VISION.md).
 *
 * A DeiT / ViT forward pass in float32 on OpenBLAS, with weights read from
 * safetensors files that use timm's or Hugging Face's tensor names.  The
 * client runs it in the clear on its own images and keeps one feature vector
 * per image; only those vectors are encrypted.  Depends on util only.
 *
 * Images and datasets (decoding, timm's preprocessing, IDX / NumPy / folder
 * readers, .npy output) are in vision_data.h. */
#ifndef BLINDTUNER_VISION_H
#define BLINDTUNER_VISION_H

#include <stddef.h>
#include <stdint.h>

#include "blindtuner/status.h"
#include "blindtuner/util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- safetensors
 * Format: an 8-byte little-endian header length n, n bytes of JSON
 *   {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...,
 *    "__metadata__": {"<key>": "<string>"}}
 * then the tensor bytes (offsets relative to the end of the header).
 * Everything is checked on open: header size and syntax, dtypes, shapes,
 * offsets inside the file and consistent with shape x dtype, unique names.
 * Anything wrong is BT_E_FORMAT with a message naming the tensor. */

typedef enum bt_dtype {
  BT_DTYPE_F32,
  BT_DTYPE_F16,
  BT_DTYPE_BF16,
  BT_DTYPE_F64,
  BT_DTYPE_I64,
  BT_DTYPE_I32,
  BT_DTYPE_I16,
  BT_DTYPE_I8,
  BT_DTYPE_U8,
  BT_DTYPE_BOOL,
  BT_DTYPE_U16,
  BT_DTYPE_U32,
  BT_DTYPE_U64,
  BT_DTYPE_F8_E4M3,
  BT_DTYPE_F8_E5M2
} bt_dtype;

#define BT_TENSOR_MAX_DIMS 8

typedef struct bt_tensor_view {
  const char *name;
  bt_dtype dtype;
  int ndim;
  int64_t shape[BT_TENSOR_MAX_DIMS];
  int64_t count;        /* number of elements */
  const uint8_t *data;  /* little-endian, unaligned, `bytes` long */
  size_t bytes;
} bt_tensor_view;

typedef struct bt_safetensors bt_safetensors;

/* Reads and validates a whole file. */
BT_API bt_status bt_safetensors_open(const char *path, bt_safetensors **out) BT_MUST_CHECK BT_NONNULL(1, 2);
/* Validates a file already in memory; the bytes are copied. */
BT_API bt_status bt_safetensors_parse(const void *bytes, size_t len, bt_safetensors **out) BT_MUST_CHECK
    BT_NONNULL(3);
BT_API void bt_safetensors_free(bt_safetensors *st);

BT_API size_t bt_safetensors_count(const bt_safetensors *st);
/* Tensors in file order; NULL past the end. */
BT_API const bt_tensor_view *bt_safetensors_at(const bt_safetensors *st, size_t i);
/* NULL if absent. */
BT_API const bt_tensor_view *bt_safetensors_find(const bt_safetensors *st, const char *name);
/* A "__metadata__" string, or NULL. */
BT_API const char *bt_safetensors_meta(const bt_safetensors *st, const char *key);

/* "F32", "BF16", ... */
BT_API const char *bt_dtype_name(bt_dtype t);
/* Converts a float32/float16/bfloat16 tensor to float32 (`out` holds t->count
 * floats); other dtypes are BT_E_FORMAT. */
BT_API bt_status bt_tensor_to_f32(const bt_tensor_view *t, float *out) BT_MUST_CHECK BT_NONNULL(1, 2);
/* IEEE 754 binary16 <-> float32: exact widening; narrowing rounds to
 * nearest even, overflow to infinity, NaN stays NaN. */
BT_API float bt_half_to_float(uint16_t h);
BT_API uint16_t bt_float_to_half(float f);

/* One tensor to write. */
typedef struct bt_tensor_out {
  const char *name;
  bt_dtype dtype;       /* F32, F16 or BF16: `data` (float32) is converted */
  int ndim;
  int64_t shape[BT_TENSOR_MAX_DIMS];
  const float *data;
} bt_tensor_out;

/* Writes a safetensors file (through a temporary name, then rename).
 * `meta` is NULL or a NULL-terminated list of key, value, key, value... */
BT_API bt_status bt_safetensors_write(const char *path, const bt_tensor_out *tensors, size_t count,
                                      const char *const *meta) BT_MUST_CHECK BT_NONNULL(1);

/* ------------------------------------------------------------------ the model */

/* Architecture and preprocessing of a DeiT / ViT.  From a file, the shapes
 * give everything but the number of heads (dim / 64 for every DeiT and ViT,
 * or "bt.num_heads" in the file's metadata) and the preprocessing (timm's
 * defaults unless the metadata says otherwise: bt.crop_pct, bt.mean, bt.std,
 * bt.eps, bt.image_size). */
typedef struct bt_vit_config {
  int image_size;   /* resolution the position embeddings were trained at (square) */
  int patch_size;
  int in_chans;
  int dim;          /* embedding width */
  int depth;        /* number of blocks */
  int heads;
  int mlp_dim;      /* hidden width of the MLP, usually 4 * dim */
  int distilled;    /* 1: CLS and distillation tokens (DeiT distilled); 0: CLS only */
  float eps;        /* LayerNorm epsilon (timm 1e-6, Hugging Face 1e-12) */
  /* preprocessing as timm's eval transform */
  float crop_pct;   /* resize the shorter side to floor(image_size / crop_pct), centre crop */
  float mean[3], std[3];
} bt_vit_config;

/* Known shapes: deit_tiny_patch16_224, deit_small_patch16_224,
 * deit_base_patch16_224 (each also *_distilled_*), vit_base_patch16_224. */
BT_API bt_status bt_vit_config_preset(const char *name, bt_vit_config *cfg) BT_MUST_CHECK BT_NONNULL(1, 2);
/* Checks a configuration (positive sizes, heads dividing dim, ...). */
BT_API bt_status bt_vit_config_check(const bt_vit_config *cfg) BT_MUST_CHECK BT_NONNULL(1);

typedef struct bt_vit bt_vit;

/* Loads a model: every tensor the architecture needs must be present, be
 * float32, float16 or bfloat16 and have the expected shape.  Names are
 * timm's (cls_token, blocks.0.attn.qkv.weight, ...) or Hugging Face's
 * ([vit.|deit.]embeddings.cls_token, ...encoder.layer.0.attention.attention.query.weight, ...);
 * classifier heads are ignored. */
BT_API bt_status bt_vit_load(const char *path, bt_vit **out) BT_MUST_CHECK BT_NONNULL(1, 2);
BT_API bt_status bt_vit_from_safetensors(const bt_safetensors *st, bt_vit **out) BT_MUST_CHECK BT_NONNULL(1, 2);
/* A model with random weights (normal-like, std 0.02; LayerNorms 1, 0), for
 * benchmarks and tests. */
BT_API bt_status bt_vit_new_random(const bt_vit_config *cfg, const uint8_t seed[BT_SEED_BYTES],
                                   bt_vit **out) BT_MUST_CHECK BT_NONNULL(1, 2, 3);
BT_API void bt_vit_free(bt_vit *m);
BT_API const bt_vit_config *bt_vit_config_of(const bt_vit *m) BT_NONNULL(1);
/* Number of parameters used by the forward pass. */
BT_API size_t bt_vit_param_count(const bt_vit *m) BT_NONNULL(1);

/* Which feature vector to keep per image (all of width dim, after the final norm). */
typedef enum bt_vit_pool {
  BT_VIT_POOL_CLS,        /* the CLS token (DeiT's and ViT's usual feature) */
  BT_VIT_POOL_DIST,       /* the distillation token (distilled models only) */
  BT_VIT_POOL_CLS_DIST,   /* mean of CLS and distillation tokens (DeiT's inference) */
  BT_VIT_POOL_PATCH_MEAN  /* mean of the patch tokens */
} bt_vit_pool;

/* Parses "cls", "dist", "cls+dist", "mean" (patch mean). */
BT_API bt_status bt_vit_pool_parse(const char *s, bt_vit_pool *out) BT_MUST_CHECK BT_NONNULL(1, 2);
BT_API const char *bt_vit_pool_name(bt_vit_pool p);

/* Tokens per image at h x w: prefix tokens + (h / patch) * (w / patch). */
BT_API int bt_vit_tokens_per_image(const bt_vit *m, int h, int w) BT_NONNULL(1);

/* Forward pass over n preprocessed images (float32, n x in_chans x h x w,
 * h and w multiples of the patch size; position embeddings are resampled
 * bicubically when the grid differs from the trained one).
 *  tokens:   NULL or n x T x dim floats: every token after the final norm;
 *  features: NULL or n x dim floats: the pooled feature.
 * threads: 0 = bt_default_threads().  Work buffers are allocated per call;
 * a batch of 8-32 images amortises them. */
BT_API bt_status bt_vit_forward(const bt_vit *m, const float *images, int n, int h, int w,
                                bt_vit_pool pool, float *features, float *tokens, int threads)
    BT_MUST_CHECK BT_NONNULL(1, 2);

#ifdef __cplusplus
}
#endif
#endif

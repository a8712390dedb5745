/* DeiT / ViT forward pass (Dosovitskiy et al., ICLR 2021; Touvron et al., ICML 2021).
 *
 *   x0 = [cls, (dist,) patches * W_pe + b_pe] + pos          T = prefix + (h/p)(w/p) tokens
 *   per block:  x += Proj(MHA(LN1(x)));  x += FC2(GELU(FC1(LN2(x))))
 *   out = LN(x)
 * MHA: softmax(Q K^T / sqrt(d_head)) V per head, Q, K, V from one qkv matrix
 * whose rows are [q heads..., k heads..., v heads...] (timm's layout; Hugging
 * Face's separate query/key/value are stacked into it on load).  GELU is the
 * exact erf form, LayerNorm uses the biased variance, as PyTorch does.
 *
 * Threads: all parallelism is OpenMP with the thread count given by the
 * caller; OpenBLAS is asked for one thread and each OpenMP thread multiplies
 * its own block of rows, so two thread pools never compete for the cores. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#include "blindtuner/vision.h"
#include "vision/internal.h"

typedef struct block_w {
  float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
  float *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} block_w;

struct bt_vit {
  bt_vit_config cfg;
  float *params;  /* every weight, in one allocation */
  size_t nparams;
  float *patch_w; /* dim x (in_chans * patch * patch) */
  float *patch_b, *cls, *dist, *pos, *norm_w, *norm_b;
  block_w *blocks;
};

/* ---------------------------------------------------------------- configuration */

static const struct {
  const char *name;
  int dim, depth, heads;
  float crop_pct, mean, std; /* mean/std < 0: ImageNet's */
} presets[] = {
    {"deit_tiny_patch16_224", 192, 12, 3, 0.875f, -1, -1},
    {"deit_small_patch16_224", 384, 12, 6, 0.875f, -1, -1},
    {"deit_base_patch16_224", 768, 12, 12, 0.875f, -1, -1},
    {"vit_base_patch16_224", 768, 12, 12, 0.9f, 0.5f, 0.5f},
};

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};

static void default_preprocessing(bt_vit_config *c) {
  c->crop_pct = 0.875f;
  memcpy(c->mean, imagenet_mean, sizeof c->mean);
  memcpy(c->std, imagenet_std, sizeof c->std);
}

bt_status bt_vit_config_preset(const char *name, bt_vit_config *cfg) {
  char base[64];
  const char *d = strstr(name, "_distilled");
  int distilled = d != NULL;
  if (strlen(name) >= sizeof base) return bt_fail(BT_E_ARG, "unknown model '%s'", name);
  if (d) {
    size_t k = (size_t)(d - name);
    memcpy(base, name, k);
    snprintf(base + k, sizeof base - k, "%s", d + strlen("_distilled"));
  } else {
    snprintf(base, sizeof base, "%s", name);
  }
  for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
    if (strcmp(presets[i].name, base) || (distilled && base[0] != 'd')) continue;
    memset(cfg, 0, sizeof *cfg);
    cfg->image_size = 224;
    cfg->patch_size = 16;
    cfg->in_chans = 3;
    cfg->dim = presets[i].dim;
    cfg->depth = presets[i].depth;
    cfg->heads = presets[i].heads;
    cfg->mlp_dim = 4 * presets[i].dim;
    cfg->distilled = distilled;
    cfg->eps = 1e-6f;
    default_preprocessing(cfg);
    cfg->crop_pct = presets[i].crop_pct;
    if (presets[i].mean >= 0)
      for (int c = 0; c < 3; c++) cfg->mean[c] = presets[i].mean, cfg->std[c] = presets[i].std;
    return BT_OK;
  }
  return bt_fail(BT_E_ARG,
                 "unknown model '%s' (known: deit_{tiny,small,base}[_distilled]_patch16_224, "
                 "vit_base_patch16_224)",
                 name);
}

bt_status bt_vit_config_check(const bt_vit_config *c) {
  if (c->patch_size < 1 || c->patch_size > 64) return bt_fail(BT_E_PARAMS, "vit: patch size %d", c->patch_size);
  if (c->image_size < c->patch_size || c->image_size > 4096 || c->image_size % c->patch_size)
    return bt_fail(BT_E_PARAMS, "vit: image size %d is not a multiple of patch size %d", c->image_size,
                   c->patch_size);
  if (c->in_chans < 1 || c->in_chans > 4) return bt_fail(BT_E_PARAMS, "vit: %d input channels", c->in_chans);
  if (c->dim < 1 || c->dim > 8192 || c->depth < 1 || c->depth > 256 || c->mlp_dim < 1 || c->mlp_dim > 65536)
    return bt_fail(BT_E_PARAMS, "vit: dim %d, depth %d, mlp %d out of range", c->dim, c->depth, c->mlp_dim);
  if (c->heads < 1 || c->dim % c->heads)
    return bt_fail(BT_E_PARAMS, "vit: %d heads do not divide dim %d", c->heads, c->dim);
  if (c->distilled != 0 && c->distilled != 1) return bt_fail(BT_E_PARAMS, "vit: distilled must be 0 or 1");
  if (!(c->eps > 0 && c->eps < 1)) return bt_fail(BT_E_PARAMS, "vit: LayerNorm eps %g", (double)c->eps);
  if (!(c->crop_pct > 0.05f && c->crop_pct <= 1.0f))
    return bt_fail(BT_E_PARAMS, "vit: crop_pct %g not in (0.05, 1]", (double)c->crop_pct);
  for (int i = 0; i < 3; i++)
    if (!(c->std[i] > 0) || !isfinite(c->mean[i]))
      return bt_fail(BT_E_PARAMS, "vit: bad normalisation mean/std");
  return BT_OK;
}

static int prefix_tokens(const bt_vit_config *c) { return 1 + c->distilled; }

/* Lays out every weight of `c` in one allocation. */
static bt_status vit_alloc(const bt_vit_config *c, bt_vit **out) {
  *out = NULL;
  bt_status r = bt_vit_config_check(c);
  if (r) return r;
  size_t D = (size_t)c->dim, F = (size_t)c->mlp_dim, g = (size_t)(c->image_size / c->patch_size);
  size_t K = (size_t)c->in_chans * (size_t)c->patch_size * (size_t)c->patch_size;
  size_t per_block = 4 * D + 3 * D * D + 3 * D + D * D + D + F * D + F + D * F + D;
  size_t total = D * K + D + D + (c->distilled ? D : 0) + (g * g + (size_t)prefix_tokens(c)) * D + 2 * D +
                 (size_t)c->depth * per_block;
  bt_vit *m = calloc(1, sizeof *m);
  if (!m) return bt_fail(BT_E_NOMEM, "vit: out of memory");
  m->cfg = *c;
  m->nparams = total;
  m->params = bt_alloc(total * sizeof(float));
  m->blocks = calloc((size_t)c->depth, sizeof *m->blocks);
  if (!m->params || !m->blocks) {
    bt_vit_free(m);
    return bt_fail(BT_E_NOMEM, "vit: out of memory for %zu parameters", total);
  }
  float *p = m->params;
#define TAKE(ptr, n) (ptr = p, p += (n))
  TAKE(m->patch_w, D * K);
  TAKE(m->patch_b, D);
  TAKE(m->cls, D);
  if (c->distilled) TAKE(m->dist, D);
  TAKE(m->pos, (g * g + (size_t)prefix_tokens(c)) * D);
  TAKE(m->norm_w, D);
  TAKE(m->norm_b, D);
  for (int i = 0; i < c->depth; i++) {
    block_w *b = &m->blocks[i];
    TAKE(b->ln1_w, D);
    TAKE(b->ln1_b, D);
    TAKE(b->qkv_w, 3 * D * D);
    TAKE(b->qkv_b, 3 * D);
    TAKE(b->proj_w, D * D);
    TAKE(b->proj_b, D);
    TAKE(b->ln2_w, D);
    TAKE(b->ln2_b, D);
    TAKE(b->fc1_w, F * D);
    TAKE(b->fc1_b, F);
    TAKE(b->fc2_w, D * F);
    TAKE(b->fc2_b, D);
  }
#undef TAKE
  if ((size_t)(p - m->params) != total) {
    bt_vit_free(m);
    return bt_fail(BT_E_PARAMS, "vit: internal layout error");
  }
  *out = m;
  return BT_OK;
}

void bt_vit_free(bt_vit *m) {
  if (!m) return;
  bt_free(m->params);
  free(m->blocks);
  free(m);
}

const bt_vit_config *bt_vit_config_of(const bt_vit *m) { return &m->cfg; }
size_t bt_vit_param_count(const bt_vit *m) { return m->nparams; }

int bt_vit_tokens_per_image(const bt_vit *m, int h, int w) {
  return prefix_tokens(&m->cfg) + (h / m->cfg.patch_size) * (w / m->cfg.patch_size);
}

bt_status bt_vit_pool_parse(const char *s, bt_vit_pool *out) {
  static const char *const names[] = {"cls", "dist", "cls+dist", "mean"};
  for (int i = 0; i < 4; i++)
    if (!strcmp(s, names[i])) {
      *out = (bt_vit_pool)i;
      return BT_OK;
    }
  return bt_fail(BT_E_ARG, "unknown feature '%s' (cls, dist, cls+dist or mean)", s);
}

const char *bt_vit_pool_name(bt_vit_pool p) {
  switch (p) {
  case BT_VIT_POOL_CLS: return "cls";
  case BT_VIT_POOL_DIST: return "dist";
  case BT_VIT_POOL_CLS_DIST: return "cls+dist";
  case BT_VIT_POOL_PATCH_MEAN: return "mean";
  }
  return "?";
}

/* ---------------------------------------------------------------- random weights */

bt_status bt_vit_new_random(const bt_vit_config *cfg, const uint8_t seed[BT_SEED_BYTES], bt_vit **out) {
  bt_status r = vit_alloc(cfg, out);
  if (r) return r;
  bt_vit *m = *out;
  bt_prng g;
  bt_prng_init(&g, seed);
  /* uniform on [-a, a] with a = 0.02 sqrt(3): standard deviation 0.02, as timm's init */
  const float a = 0.02f * 1.7320508f;
  uint32_t buf[1024];
  for (size_t i = 0; i < m->nparams; i += 1024) {
    size_t k = m->nparams - i < 1024 ? m->nparams - i : 1024;
    bt_prng_bytes(&g, buf, k * sizeof buf[0]);
    for (size_t j = 0; j < k; j++) m->params[i + j] = a * (2.0f * (float)(buf[j] >> 8) / 16777216.0f - 1.0f);
  }
  size_t D = (size_t)cfg->dim;
  for (size_t j = 0; j < D; j++) m->norm_w[j] = 1, m->norm_b[j] = 0;
  for (int i = 0; i < cfg->depth; i++)
    for (size_t j = 0; j < D; j++) {
      m->blocks[i].ln1_w[j] = m->blocks[i].ln2_w[j] = 1;
      m->blocks[i].ln1_b[j] = m->blocks[i].ln2_b[j] = 0;
    }
  bt_prng_wipe(&g);
  return BT_OK;
}

/* ---------------------------------------------------------------- loading */

typedef struct loader {
  const bt_safetensors *st;
  int hf;              /* Hugging Face names */
  const char *prefix;  /* "", "vit.", "deit.", "module." */
} loader;

static const bt_tensor_view *find(const loader *L, const char *name) {
  char full[256];
  snprintf(full, sizeof full, "%s%s", L->prefix, name);
  return bt_safetensors_find(L->st, full);
}

static void shape_str(char *s, size_t n, const int64_t *shape, int ndim) {
  size_t k = (size_t)snprintf(s, n, "[");
  for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(s + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
  if (k < n) snprintf(s + k, n - k, "]");
}

static int is_float(const bt_tensor_view *t) {
  return t->dtype == BT_DTYPE_F32 || t->dtype == BT_DTYPE_F16 || t->dtype == BT_DTYPE_BF16;
}

/* Reads `name` (shape `shape`) into dst, converting to float32. */
static bt_status take(const loader *L, const char *name, int ndim, const int64_t *shape, float *dst) {
  const bt_tensor_view *t = find(L, name);
  if (!t) return bt_fail(BT_E_FORMAT, "tensor '%s%s' is missing", L->prefix, name);
  if (!is_float(t))
    return bt_fail(BT_E_FORMAT, "tensor '%s' has dtype %s; expected F32, F16 or BF16", t->name,
                   bt_dtype_name(t->dtype));
  int ok = t->ndim == ndim;
  for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
  if (!ok) {
    char got[128], want[128];
    shape_str(got, sizeof got, t->shape, t->ndim);
    shape_str(want, sizeof want, shape, ndim);
    return bt_fail(BT_E_FORMAT, "tensor '%s' has shape %s; expected %s", t->name, got, want);
  }
  return bt_tensor_to_f32(t, dst);
}

static bt_status take1(const loader *L, const char *name, int64_t n, float *dst) {
  int64_t s[1] = {n};
  return take(L, name, 1, s, dst);
}

static bt_status take2(const loader *L, const char *name, int64_t a, int64_t b, float *dst) {
  int64_t s[2] = {a, b};
  return take(L, name, 2, s, dst);
}

static float meta_float(const bt_safetensors *st, const char *key, float dflt, int *bad) {
  const char *v = bt_safetensors_meta(st, key);
  if (!v) return dflt;
  char *end;
  float f = strtof(v, &end);
  if (end == v || *end) *bad = 1;
  return f;
}

static int meta_floats3(const bt_safetensors *st, const char *key, float out[3]) {
  const char *v = bt_safetensors_meta(st, key);
  if (!v) return 0;
  char *end;
  for (int i = 0; i < 3; i++) {
    out[i] = strtof(v, &end);
    if (end == v) return -1;
    v = end;
    if (i < 2) {
      if (*v != ',') return -1;
      v++;
    }
  }
  return *v ? -1 : 1;
}

/* Shapes give the architecture; the metadata, heads and preprocessing. */
static bt_status infer_config(const loader *L, bt_vit_config *c) {
  memset(c, 0, sizeof *c);
  const char *n_cls = L->hf ? "embeddings.cls_token" : "cls_token";
  const char *n_dist = L->hf ? "embeddings.distillation_token" : "dist_token";
  const char *n_pos = L->hf ? "embeddings.position_embeddings" : "pos_embed";
  const char *n_pe = L->hf ? "embeddings.patch_embeddings.projection.weight" : "patch_embed.proj.weight";
  const bt_tensor_view *cls = find(L, n_cls), *pos = find(L, n_pos), *pe = find(L, n_pe);
  const bt_tensor_view *shaping[3] = {cls, pos, pe};
  for (int i = 0; i < 3; i++)
    if (shaping[i] && !is_float(shaping[i]))
      return bt_fail(BT_E_FORMAT, "tensor '%s' has dtype %s; expected F32, F16 or BF16", shaping[i]->name,
                     bt_dtype_name(shaping[i]->dtype));
  if (!cls || cls->ndim != 3 || cls->shape[0] != 1 || cls->shape[1] != 1 || cls->shape[2] < 1)
    return bt_fail(BT_E_FORMAT, "tensor '%s%s' is missing or not [1, 1, dim]", L->prefix, n_cls);
  int64_t D = cls->shape[2];
  if (D > 8192) return bt_fail(BT_E_FORMAT, "tensor '%s' implies dim %lld", cls->name, (long long)D);
  c->dim = (int)D;
  c->distilled = find(L, n_dist) != NULL;
  if (!pe || pe->ndim != 4 || pe->shape[0] != D || pe->shape[2] != pe->shape[3] || pe->shape[2] < 1 ||
      pe->shape[2] > 64 || pe->shape[1] < 1 || pe->shape[1] > 4)
    return bt_fail(BT_E_FORMAT, "tensor '%s%s' is missing or not [dim, channels, patch, patch]", L->prefix, n_pe);
  c->in_chans = (int)pe->shape[1];
  c->patch_size = (int)pe->shape[2];
  if (!pos || pos->ndim != 3 || pos->shape[0] != 1 || pos->shape[2] != D)
    return bt_fail(BT_E_FORMAT, "tensor '%s%s' is missing or not [1, tokens, dim]", L->prefix, n_pos);
  int64_t np = pos->shape[1] - prefix_tokens(c), g = 0;
  while (g * g < np) g++;
  if (np < 1 || g * g != np || g * c->patch_size > 4096)
    return bt_fail(BT_E_FORMAT, "tensor '%s' holds %lld tokens: not %d prefix token(s) plus a square grid",
                   pos->name, (long long)pos->shape[1], prefix_tokens(c));
  c->image_size = (int)g * c->patch_size;
  char name[128];
  while (c->depth < 256) {
    snprintf(name, sizeof name, L->hf ? "encoder.layer.%d.layernorm_before.weight" : "blocks.%d.norm1.weight",
             c->depth);
    if (!find(L, name)) break;
    c->depth++;
  }
  if (!c->depth) return bt_fail(BT_E_FORMAT, "no transformer blocks found ('%s%s' is missing)", L->prefix, name);
  snprintf(name, sizeof name, L->hf ? "encoder.layer.0.intermediate.dense.weight" : "blocks.0.mlp.fc1.weight");
  const bt_tensor_view *fc1 = find(L, name);
  if (!fc1 || fc1->ndim != 2 || fc1->shape[1] != D || fc1->shape[0] < 1 || fc1->shape[0] > 65536)
    return bt_fail(BT_E_FORMAT, "tensor '%s%s' is missing or not [mlp, dim]", L->prefix, name);
  c->mlp_dim = (int)fc1->shape[0];
  if (!L->hf && (find(L, "blocks.0.ls1.gamma") || find(L, "blocks.0.gamma_1")))
    return bt_fail(BT_E_UNSUPPORTED, "layer scale (DeiT III / CaiT style) is not supported");

  int bad = 0;
  c->heads = (int)meta_float(L->st, "bt.num_heads", D % 64 == 0 ? (float)(D / 64) : 0.0f, &bad);
  if (bad || c->heads < 1 || D % c->heads)
    return bt_fail(BT_E_FORMAT, "cannot tell the number of heads for dim %lld: set metadata bt.num_heads",
                   (long long)D);
  c->eps = meta_float(L->st, "bt.eps", L->hf ? 1e-12f : 1e-6f, &bad);
  default_preprocessing(c);
  c->crop_pct = meta_float(L->st, "bt.crop_pct", c->crop_pct, &bad);
  int is = (int)meta_float(L->st, "bt.image_size", (float)c->image_size, &bad);
  if (bad || is != c->image_size || meta_floats3(L->st, "bt.mean", c->mean) < 0 ||
      meta_floats3(L->st, "bt.std", c->std) < 0)
    return bt_fail(BT_E_FORMAT, "bad bt.* metadata (eps, crop_pct, image_size, mean or std)");
  return bt_vit_config_check(c);
}

static bt_status load_block(const loader *L, int i, const bt_vit_config *c, block_w *b) {
  char n[160];
  int64_t D = c->dim, F = c->mlp_dim;
  bt_status r;
#define T1(field, fmt, len)                        \
  snprintf(n, sizeof n, fmt, i);                   \
  if ((r = take1(L, n, len, b->field))) return r;
#define T2(field, fmt, rows, cols, off)                       \
  snprintf(n, sizeof n, fmt, i);                              \
  if ((r = take2(L, n, rows, cols, b->field + (off)))) return r;
  if (L->hf) {
    T1(ln1_w, "encoder.layer.%d.layernorm_before.weight", D);
    T1(ln1_b, "encoder.layer.%d.layernorm_before.bias", D);
    static const char *const qkv[3] = {"query", "key", "value"};
    for (int k = 0; k < 3; k++) {
      snprintf(n, sizeof n, "encoder.layer.%d.attention.attention.%s.weight", i, qkv[k]);
      if ((r = take2(L, n, D, D, b->qkv_w + k * D * D))) return r;
      snprintf(n, sizeof n, "encoder.layer.%d.attention.attention.%s.bias", i, qkv[k]);
      if ((r = take1(L, n, D, b->qkv_b + k * D))) return r;
    }
    T2(proj_w, "encoder.layer.%d.attention.output.dense.weight", D, D, 0);
    T1(proj_b, "encoder.layer.%d.attention.output.dense.bias", D);
    T1(ln2_w, "encoder.layer.%d.layernorm_after.weight", D);
    T1(ln2_b, "encoder.layer.%d.layernorm_after.bias", D);
    T2(fc1_w, "encoder.layer.%d.intermediate.dense.weight", F, D, 0);
    T1(fc1_b, "encoder.layer.%d.intermediate.dense.bias", F);
    T2(fc2_w, "encoder.layer.%d.output.dense.weight", D, F, 0);
    T1(fc2_b, "encoder.layer.%d.output.dense.bias", D);
  } else {
    T1(ln1_w, "blocks.%d.norm1.weight", D);
    T1(ln1_b, "blocks.%d.norm1.bias", D);
    T2(qkv_w, "blocks.%d.attn.qkv.weight", 3 * D, D, 0);
    T1(qkv_b, "blocks.%d.attn.qkv.bias", 3 * D);
    T2(proj_w, "blocks.%d.attn.proj.weight", D, D, 0);
    T1(proj_b, "blocks.%d.attn.proj.bias", D);
    T1(ln2_w, "blocks.%d.norm2.weight", D);
    T1(ln2_b, "blocks.%d.norm2.bias", D);
    T2(fc1_w, "blocks.%d.mlp.fc1.weight", F, D, 0);
    T1(fc1_b, "blocks.%d.mlp.fc1.bias", F);
    T2(fc2_w, "blocks.%d.mlp.fc2.weight", D, F, 0);
    T1(fc2_b, "blocks.%d.mlp.fc2.bias", D);
  }
#undef T1
#undef T2
  return BT_OK;
}

bt_status bt_vit_from_safetensors(const bt_safetensors *st, bt_vit **out) {
  *out = NULL;
  static const struct {
    const char *prefix;
    int hf;
  } styles[] = {{"", 0}, {"module.", 0}, {"", 1}, {"vit.", 1}, {"deit.", 1}};
  loader L = {st, -1, NULL};
  for (size_t i = 0; i < sizeof styles / sizeof styles[0]; i++) {
    loader t = {st, styles[i].hf, styles[i].prefix};
    if (find(&t, styles[i].hf ? "embeddings.cls_token" : "cls_token")) {
      L = t;
      break;
    }
  }
  if (L.hf < 0)
    return bt_fail(BT_E_FORMAT,
                   "not a DeiT/ViT: no 'cls_token' (timm) or '[vit.|deit.]embeddings.cls_token' "
                   "(Hugging Face) tensor");
  bt_vit_config c;
  bt_status r = infer_config(&L, &c);
  if (r) return r;
  bt_vit *m;
  if ((r = vit_alloc(&c, &m))) return r;
  int64_t D = c.dim, g = c.image_size / c.patch_size, T0 = g * g + prefix_tokens(&c);
  int64_t s3[3] = {1, 1, D}, pe[4] = {D, c.in_chans, c.patch_size, c.patch_size}, ps[3] = {1, T0, D};
  if (L.hf) {
    if (!(r = take(&L, "embeddings.cls_token", 3, s3, m->cls)) &&
        !(r = c.distilled ? take(&L, "embeddings.distillation_token", 3, s3, m->dist) : BT_OK) &&
        !(r = take(&L, "embeddings.position_embeddings", 3, ps, m->pos)) &&
        !(r = take(&L, "embeddings.patch_embeddings.projection.weight", 4, pe, m->patch_w)) &&
        !(r = take1(&L, "embeddings.patch_embeddings.projection.bias", D, m->patch_b)) &&
        !(r = take1(&L, "layernorm.weight", D, m->norm_w)))
      r = take1(&L, "layernorm.bias", D, m->norm_b);
  } else {
    if (!(r = take(&L, "cls_token", 3, s3, m->cls)) &&
        !(r = c.distilled ? take(&L, "dist_token", 3, s3, m->dist) : BT_OK) &&
        !(r = take(&L, "pos_embed", 3, ps, m->pos)) &&
        !(r = take(&L, "patch_embed.proj.weight", 4, pe, m->patch_w)) &&
        !(r = take1(&L, "patch_embed.proj.bias", D, m->patch_b)) && !(r = take1(&L, "norm.weight", D, m->norm_w)))
      r = take1(&L, "norm.bias", D, m->norm_b);
  }
  for (int i = 0; !r && i < c.depth; i++) r = load_block(&L, i, &c, &m->blocks[i]);
  if (!r) {
    /* a non-finite weight would silently poison every feature */
    for (size_t i = 0; i < m->nparams; i++)
      if (!isfinite(m->params[i])) {
        r = bt_fail(BT_E_FORMAT, "model holds a non-finite weight (parameter %zu)", i);
        break;
      }
  }
  if (r) {
    bt_vit_free(m);
    return r;
  }
  *out = m;
  return BT_OK;
}

bt_status bt_vit_load(const char *path, bt_vit **out) {
  *out = NULL;
  bt_safetensors *st;
  bt_status r = bt_safetensors_open(path, &st);
  if (r) return r;
  r = bt_vit_from_safetensors(st, out);
  bt_safetensors_free(st);
  if (r) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", bt_last_error());
    return bt_fail(r, "%s: %s", path, msg);
  }
  return BT_OK;
}

/* ---------------------------------------------------------------- forward pass */

/* C[M x N] = A[M x K] W[N x K]^T + beta C, rows split across the threads
 * (called inside a parallel region). */
static void linear_rows(int M, int N, int K, const float *A, int lda, const float *W, float *C, int ldc,
                        float beta) {
  int nt = omp_get_num_threads(), id = omp_get_thread_num();
  int per = (M + nt - 1) / nt;
  per = (per + 7) & ~7;
  int r0 = id * per, r1 = r0 + per < M ? r0 + per : M;
  if (r0 < r1)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, N, K, 1.0f, A + (size_t)r0 * (size_t)lda, lda, W,
                K, beta, C + (size_t)r0 * (size_t)ldc, ldc);
#pragma omp barrier
}

/* out = LayerNorm(x) * w + b over rows of width D; then x += add (a bias
 * that the following residual sgemm would otherwise need a pass for). */
static void layernorm_rows(int rows, int D, float *x, const float *w, const float *b, float eps, float *out,
                           const float *add) {
#pragma omp for schedule(static)
  for (int r = 0; r < rows; r++) {
    float *xr = x + (size_t)r * (size_t)D;
    float *o = out + (size_t)r * (size_t)D;
    double s = 0;
    for (int j = 0; j < D; j++) s += xr[j];
    float mean = (float)(s / D);
    double v = 0;
    for (int j = 0; j < D; j++) {
      float d = xr[j] - mean;
      v += (double)d * d;
    }
    float inv = (float)(1.0 / sqrt(v / D + eps));
    for (int j = 0; j < D; j++) o[j] = (xr[j] - mean) * inv * w[j] + b[j];
    if (add)
      for (int j = 0; j < D; j++) xr[j] += add[j];
  }
}

/* Bicubic resampling of the position-embedding grid as torch.nn.functional.
 * interpolate(mode="bicubic", align_corners=False) does it (Keys' kernel,
 * A = -0.75, edge samples clamped): what DeiT, timm <= 0.6 and Hugging Face use. */
static void cubic_weights(float t, float w[4]) {
  const float A = -0.75f;
  float x1 = t + 1, x2 = 1 - t, x3 = 2 - t;
  w[0] = ((A * x1 - 5 * A) * x1 + 8 * A) * x1 - 4 * A;
  w[1] = ((A + 2) * t - (A + 3)) * t * t + 1;
  w[2] = ((A + 2) * x2 - (A + 3)) * x2 * x2 + 1;
  w[3] = ((A * x3 - 5 * A) * x3 + 8 * A) * x3 - 4 * A;
}

static void src_index(int i, int in, int out, int *idx, float *t) {
  float scale = (float)in / (float)out;
  float real = scale * ((float)i + 0.5f) - 0.5f;
  int k = (int)floorf(real);
  if (k > in - 1) k = in - 1;
  float l = real - (float)k;
  *idx = k;
  *t = l < 0 ? 0 : l > 1 ? 1 : l;
}

static void resample_pos(const bt_vit *m, int gh, int gw, float *dst) {
  int D = m->cfg.dim, g = m->cfg.image_size / m->cfg.patch_size, pre = prefix_tokens(&m->cfg);
  memcpy(dst, m->pos, (size_t)pre * (size_t)D * sizeof(float));
  const float *src = m->pos + (size_t)pre * (size_t)D;
  for (int oy = 0; oy < gh; oy++) {
    int iy;
    float ty, wy[4];
    src_index(oy, g, gh, &iy, &ty);
    cubic_weights(ty, wy);
    for (int ox = 0; ox < gw; ox++) {
      int ix;
      float tx, wx[4];
      src_index(ox, g, gw, &ix, &tx);
      cubic_weights(tx, wx);
      float *o = dst + ((size_t)pre + (size_t)oy * (size_t)gw + (size_t)ox) * (size_t)D;
      for (int d = 0; d < D; d++) {
        float acc = 0;
        for (int a = 0; a < 4; a++) {
          int y = iy - 1 + a;
          y = y < 0 ? 0 : y > g - 1 ? g - 1 : y;
          float row = 0;
          for (int b = 0; b < 4; b++) {
            int x = ix - 1 + b;
            x = x < 0 ? 0 : x > g - 1 ? g - 1 : x;
            row += wx[b] * src[((size_t)y * (size_t)g + (size_t)x) * (size_t)D + (size_t)d];
          }
          acc += wy[a] * row;
        }
        o[d] = acc;
      }
    }
  }
}

/* exp and erf written so that loops over them vectorise (no libm calls, no
 * floorf: -O3 without -ffast-math cannot vectorise either).
 * exp: x = n ln2 + r, |r| <= ln2/2, degree-6 Taylor polynomial for e^r, 2^n by
 * building the exponent bits; relative error below 3e-7 on [-87, 88], inputs
 * below -87 give e^-87 (softmax and erf only ever feed it x <= 0).
 * erf: Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7 (the formula
 * PyTorch's vectorised erf uses); GELU's absolute error stays below 5e-7. */
static inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f; /* round to nearest */
  float r = x - n * 0.693145752f - n * 1.42860677e-6f;     /* ln2 split in two */
  float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666679f + r * (0.00833333377f +
                                                                                          r * 0.00138888892f)))));
  union {
    int32_t i;
    float f;
  } u;
  u.i = ((int32_t)n + 127) << 23;
  return p * u.f;
}

static inline float gelu(float x) {
  float z = x * 0.70710678f, az = fabsf(z);
  float t = 1.0f / (1.0f + 0.3275911f * az);
  float poly = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
  float e = copysignf(1.0f - poly * exp_approx(-az * az), z);
  return 0.5f * x * (1.0f + e);
}

typedef struct work {
  int B, T, D, F, H, hd;
  float *x, *h, *qkv, *att, *mlp, *scores; /* scores: T x T per thread */
} work;

/* One batch of B images through the network; x ends up holding LN(x). */
static void forward_batch(const bt_vit *m, const float *img, int gh, int gw, const float *pos, work *wk,
                          int threads) {
  const bt_vit_config *c = &m->cfg;
  const int B = wk->B, T = wk->T, D = wk->D, F = wk->F, H = wk->H, hd = wk->hd, P = c->patch_size;
  const int pre = prefix_tokens(c), np = gh * gw, K = c->in_chans * P * P, rows = B * T;
  const int W = gw * P, Hh = gh * P;
  const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel num_threads(threads)
  {
    /* patch embedding: im2col into `h` (np x K per image), then one sgemm */
#pragma omp for schedule(static)
    for (int r = 0; r < B * np; r++) {
      int b = r / np, p = r % np, py = p / gw, px = p % gw;
      float *dst = wk->h + (size_t)r * (size_t)K;
      for (int ch = 0; ch < c->in_chans; ch++)
        for (int ky = 0; ky < P; ky++) {
          const float *s = img + (((size_t)b * (size_t)c->in_chans + (size_t)ch) * (size_t)Hh +
                                  (size_t)(py * P + ky)) * (size_t)W + (size_t)(px * P);
          memcpy(dst + (ch * P + ky) * P, s, (size_t)P * sizeof(float));
        }
    }
    for (int b = 0; b < B; b++)
      linear_rows(np, D, K, wk->h + (size_t)b * (size_t)np * (size_t)K, K, m->patch_w,
                  wk->x + ((size_t)b * (size_t)T + (size_t)pre) * (size_t)D, D, 0.0f);
#pragma omp for schedule(static)
    for (int r = 0; r < rows; r++) {
      int t = r % T;
      float *xr = wk->x + (size_t)r * (size_t)D;
      const float *pr = pos + (size_t)t * (size_t)D;
      if (t == 0) {
        for (int j = 0; j < D; j++) xr[j] = m->cls[j] + pr[j];
      } else if (t < pre) {
        for (int j = 0; j < D; j++) xr[j] = m->dist[j] + pr[j];
      } else {
        for (int j = 0; j < D; j++) xr[j] += m->patch_b[j] + pr[j];
      }
    }

    float *S = wk->scores + (size_t)omp_get_thread_num() * (size_t)T * (size_t)T;
    for (int l = 0; l < c->depth; l++) {
      const block_w *bw = &m->blocks[l];
      layernorm_rows(rows, D, wk->x, bw->ln1_w, bw->ln1_b, c->eps, wk->h, bw->proj_b);
      linear_rows(rows, 3 * D, D, wk->h, D, bw->qkv_w, wk->qkv, 3 * D, 0.0f);
#pragma omp for schedule(static)
      for (int r = 0; r < rows; r++) {
        float *q = wk->qkv + (size_t)r * 3 * (size_t)D;
        for (int j = 0; j < 3 * D; j++) q[j] += bw->qkv_b[j];
      }
#pragma omp for schedule(dynamic, 1)
      for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, hh = bh % H;
        const float *Q = wk->qkv + (size_t)b * (size_t)T * 3 * (size_t)D + (size_t)hh * (size_t)hd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, Q, 3 * D, Q + D, 3 * D, 0.0f, S, T);
        for (int i = 0; i < T; i++) {
          float *s = S + (size_t)i * (size_t)T, mx = s[0], sum = 0;
          for (int j = 1; j < T; j++) mx = s[j] > mx ? s[j] : mx;
          for (int j = 0; j < T; j++) s[j] = exp_approx(s[j] - mx);
          for (int j = 0; j < T; j++) sum += s[j];
          float inv = 1.0f / sum;
          for (int j = 0; j < T; j++) s[j] *= inv;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, S, T, Q + 2 * D, 3 * D, 0.0f,
                    wk->att + (size_t)b * (size_t)T * (size_t)D + (size_t)hh * (size_t)hd, D);
      }
      linear_rows(rows, D, D, wk->att, D, bw->proj_w, wk->x, D, 1.0f);
      layernorm_rows(rows, D, wk->x, bw->ln2_w, bw->ln2_b, c->eps, wk->h, bw->fc2_b);
      linear_rows(rows, F, D, wk->h, D, bw->fc1_w, wk->mlp, F, 0.0f);
#pragma omp for schedule(static)
      for (int r = 0; r < rows; r++) {
        float *u = wk->mlp + (size_t)r * (size_t)F;
        for (int j = 0; j < F; j++) u[j] = gelu(u[j] + bw->fc1_b[j]);
      }
      linear_rows(rows, D, F, wk->mlp, F, bw->fc2_w, wk->x, D, 1.0f);
    }
    layernorm_rows(rows, D, wk->x, m->norm_w, m->norm_b, c->eps, wk->h, NULL);
  }
}

bt_status bt_vit_forward(const bt_vit *m, const float *images, int n, int h, int w, bt_vit_pool pool,
                         float *features, float *tokens, int threads) {
  const bt_vit_config *c = &m->cfg;
  const int P = c->patch_size;
  if (n < 0 || h < P || w < P || h % P || w % P || h > 8192 || w > 8192)
    return bt_fail(BT_E_ARG, "vit: image size %d x %d is not a positive multiple of the patch size %d", h, w, P);
  if (pool == BT_VIT_POOL_DIST || pool == BT_VIT_POOL_CLS_DIST) {
    if (!c->distilled && features) return bt_fail(BT_E_ARG, "vit: the model has no distillation token");
  } else if (pool != BT_VIT_POOL_CLS && pool != BT_VIT_POOL_PATCH_MEAN) {
    return bt_fail(BT_E_ARG, "vit: unknown pooling %d", (int)pool);
  }
  if (threads <= 0) threads = bt_default_threads();
  if (n == 0 || (!features && !tokens)) return BT_OK;

  work wk;
  const int gh = h / P, gw = w / P, pre = prefix_tokens(c), g = c->image_size / P;
  wk.T = pre + gh * gw;
  wk.D = c->dim;
  wk.F = c->mlp_dim;
  wk.H = c->heads;
  wk.hd = c->dim / c->heads;
  /* about 2048 token rows per batch: large enough for efficient sgemm,
   * small enough that the work buffers stay in the tens of MB */
  wk.B = 2048 / wk.T;
  if (wk.B < 1) wk.B = 1;
  if (wk.B > n) wk.B = n;
  const size_t T = (size_t)wk.T, D = (size_t)wk.D, rows = (size_t)wk.B * T;
  const size_t K = (size_t)c->in_chans * (size_t)P * (size_t)P;
  size_t hcols = D > K ? D : K;
  wk.x = bt_alloc(rows * D * sizeof(float));
  wk.h = bt_alloc(rows * hcols * sizeof(float));
  wk.qkv = bt_alloc(rows * 3 * D * sizeof(float));
  wk.att = bt_alloc(rows * D * sizeof(float));
  wk.mlp = bt_alloc(rows * (size_t)wk.F * sizeof(float));
  wk.scores = bt_alloc((size_t)threads * T * T * sizeof(float));
  float *pos = (gh == g && gw == g) ? m->pos : bt_alloc(T * D * sizeof(float));
  bt_status r = BT_OK;
  if (!wk.x || !wk.h || !wk.qkv || !wk.att || !wk.mlp || !wk.scores || !pos) {
    r = bt_fail(BT_E_NOMEM, "vit: out of memory for a batch of %d images", wk.B);
    goto out;
  }
  if (pos != m->pos) resample_pos(m, gh, gw, pos);

  int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  const size_t img_floats = (size_t)c->in_chans * (size_t)h * (size_t)w;
  for (int i0 = 0; i0 < n; i0 += wk.B) {
    int B = n - i0 < wk.B ? n - i0 : wk.B;
    work bw = wk;
    bw.B = B;
    forward_batch(m, images + (size_t)i0 * img_floats, gh, gw, pos, &bw, threads);
    const float *y = wk.h; /* the normed tokens */
    if (tokens) memcpy(tokens + (size_t)i0 * T * D, y, (size_t)B * T * D * sizeof(float));
    if (!features) continue;
    for (int b = 0; b < B; b++) {
      const float *yt = y + (size_t)b * T * D;
      float *f = features + ((size_t)i0 + (size_t)b) * D;
      switch (pool) {
      case BT_VIT_POOL_CLS: memcpy(f, yt, D * sizeof(float)); break;
      case BT_VIT_POOL_DIST: memcpy(f, yt + D, D * sizeof(float)); break;
      case BT_VIT_POOL_CLS_DIST:
        for (size_t j = 0; j < D; j++) f[j] = 0.5f * (yt[j] + yt[D + j]);
        break;
      case BT_VIT_POOL_PATCH_MEAN:
        for (size_t j = 0; j < D; j++) {
          double s = 0;
          for (size_t t = (size_t)pre; t < T; t++) s += yt[t * D + j];
          f[j] = (float)(s / (double)(T - (size_t)pre));
        }
        break;
      }
    }
  }
  openblas_set_num_threads(blas_threads);
out:
  bt_free(wk.x);
  bt_free(wk.h);
  bt_free(wk.qkv);
  bt_free(wk.att);
  bt_free(wk.mlp);
  bt_free(wk.scores);
  if (pos != m->pos) bt_free(pos);
  return r;
}

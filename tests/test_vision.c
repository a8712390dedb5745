/* vision: golden tests against PyTorch (fixtures made by tools/make_golden.py,
 * committed under tests/data/vision/), safetensors validation and rejection of
 * broken or mismatched files, image decoding and timm's preprocessing, dataset
 * readers and .npy output.  No torch needed here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "blindtuner/vision.h"
#include "blindtuner/vision_data.h"
#include "testutil.h"
#include "vision_fixture.h"

/* ---------------------------------------------------------------- helpers */

/* max |a - b| / max |b|: the error relative to the reference's scale */
static double rel_err(const float *a, const float *b, size_t n) {
  double e = 0, s = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (!(d <= e)) e = d;  /* NaN-propagating max */
    if (fabs((double)b[i]) > s) s = fabs((double)b[i]);
  }
  return s > 0 ? e / s : e;
}

static float *view_f32(const bt_tensor_view *t) {
  assert_non_null(t);
  float *f = malloc((size_t)t->count * sizeof *f);
  assert_non_null(f);
  BT_CHECK(bt_tensor_to_f32(t, f));
  return f;
}


/* ---------------------------------------------------------------- golden models */

static double worst_golden;

static void check_golden(const char *name, int distilled, int heads, int dim) {
  char mpath[256], iopath[256];
  snprintf(mpath, sizeof mpath, "%s.safetensors", name);
  snprintf(iopath, sizeof iopath, "%s.io.safetensors", name);
  bt_vit *m;
  BT_CHECK(bt_vit_load(data_path(mpath), &m));
  const bt_vit_config *c = bt_vit_config_of(m);
  assert_int_equal(c->distilled, distilled);
  assert_int_equal(c->heads, heads);
  assert_int_equal(c->dim, dim);
  bt_safetensors *io;
  BT_CHECK(bt_safetensors_open(data_path(iopath), &io));
  const int pre = 1 + distilled;
  for (int k = 0;; k++) {
    char in[32], outn[32];
    snprintf(in, sizeof in, "images%d", k);
    snprintf(outn, sizeof outn, "tokens%d", k);
    const bt_tensor_view *ti = bt_safetensors_find(io, in), *to = bt_safetensors_find(io, outn);
    if (!ti) break;
    assert_non_null(to);
    int n = (int)ti->shape[0], h = (int)ti->shape[2], w = (int)ti->shape[3];
    int T = bt_vit_tokens_per_image(m, h, w);
    assert_int_equal(to->shape[1], T);
    assert_int_equal(to->shape[2], dim);
    float *x = view_f32(ti), *ref = view_f32(to);
    float *tok = malloc((size_t)n * (size_t)T * (size_t)dim * sizeof *tok);
    float *feat = malloc((size_t)n * (size_t)dim * sizeof *feat);
    float *want = malloc((size_t)n * (size_t)dim * sizeof *want);
    assert_true(tok && feat && want);
    for (int threads = 1; threads <= 2; threads++) {
      BT_CHECK(bt_vit_forward(m, x, n, h, w, BT_VIT_POOL_CLS, NULL, tok, threads));
      double e = rel_err(tok, ref, (size_t)n * (size_t)T * (size_t)dim);
      char label[96];
      snprintf(label, sizeof label, "%s %dx%d x%d, %d thr: max rel err (1e-6)", name, h, w, n, threads);
      bt_test_report(label, e * 1e6, "", 100);
      if (e > worst_golden) worst_golden = e;
      assert_true(e < 1e-4);
    }
    /* every pooling against the reference tokens */
    for (int p = 0; p < 4; p++) {
      if (!distilled && (p == BT_VIT_POOL_DIST || p == BT_VIT_POOL_CLS_DIST)) {
        assert_int_equal(bt_vit_forward(m, x, n, h, w, (bt_vit_pool)p, feat, NULL, 2), BT_E_ARG);
        continue;
      }
      BT_CHECK(bt_vit_forward(m, x, n, h, w, (bt_vit_pool)p, feat, NULL, 2));
      for (int b = 0; b < n; b++)
        for (int j = 0; j < dim; j++) {
          const float *r = ref + (size_t)b * (size_t)T * (size_t)dim;
          double v = 0;
          if (p == BT_VIT_POOL_CLS) v = r[j];
          else if (p == BT_VIT_POOL_DIST) v = r[dim + j];
          else if (p == BT_VIT_POOL_CLS_DIST) v = 0.5 * (r[j] + r[dim + j]);
          else {
            for (int t = pre; t < T; t++) v += r[(size_t)t * (size_t)dim + (size_t)j];
            v /= T - pre;
          }
          want[(size_t)b * (size_t)dim + (size_t)j] = (float)v;
        }
      assert_true(rel_err(feat, want, (size_t)n * (size_t)dim) < 1e-4);
    }
    free(x);
    free(ref);
    free(tok);
    free(feat);
    free(want);
  }
  bt_safetensors_free(io);
  bt_vit_free(m);
}

static void golden_deit_tiny_f32(void **state) {
  (void)state;
  check_golden("deit_tiny_f32", 0, 2, 32);
}

static void golden_deit_distilled_f16(void **state) {
  (void)state;
  check_golden("deit_distilled_f16", 1, 4, 32);
}

static void golden_vit_hf_bf16(void **state) {
  (void)state;
  check_golden("vit_hf_bf16", 0, 3, 24);
}

static void golden_deit_hf_distilled_f32(void **state) {
  (void)state;
  check_golden("deit_hf_distilled_f32", 1, 2, 24);
  char label[64];
  snprintf(label, sizeof label, "worst golden max rel err so far (1e-6)");
  bt_test_report(label, worst_golden * 1e6, "", 100);
}

/* ---------------------------------------------------------------- safetensors */

static void half_conversion_round_trips(void **state) {
  (void)state;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = bt_half_to_float((uint16_t)h);
    if (isnan(f)) continue;
    assert_int_equal(bt_float_to_half(f), h);
  }
  assert_true(bt_half_to_float(0x3C00) == 1.0f);
  assert_true(bt_half_to_float(0x0001) == ldexpf(1, -24));
  assert_int_equal(bt_float_to_half(65520.0f), 0x7C00);      /* rounds to infinity */
  assert_int_equal(bt_float_to_half(1.0f + ldexpf(1, -11)), 0x3C00); /* ties to even */
}

/* Expects bt_safetensors_parse to refuse `s` with BT_E_FORMAT and a message containing `msg`. */
static void refuse_header(const char *json, const char *msg, size_t data_len) {
  size_t n = strlen(json);
  uint8_t *b = calloc(1, 8 + n + data_len);
  assert_non_null(b);
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)n >> (8 * i));
  memcpy(b + 8, json, n);
  bt_safetensors *st = NULL;
  bt_status r = bt_safetensors_parse(b, 8 + n + data_len, &st);
  if (r != BT_E_FORMAT || !strstr(bt_last_error(), msg))
    fail_msg("header %s: got %s '%s', wanted BT_E_FORMAT with '%s'", json, bt_status_name(r), bt_last_error(), msg);
  assert_null(st);
  free(b);
}

static void safetensors_rejects_bad_headers(void **state) {
  (void)state;
  refuse_header("[]", "JSON object", 0);
  refuse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", "expected ',' or '}'", 8);
  refuse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "past the end", 4);
  refuse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "shape x dtype", 8);
  refuse_header("{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", "unknown dtype", 8);
  refuse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", "non-negative", 8);
  refuse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", "begin after end", 8);
  refuse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", "exactly one each", 8);
  refuse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                "appears twice", 8);
  refuse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387903,4611686018427387903],"
                "\"data_offsets\":[0,8]}}",
                "too large", 8);
  refuse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}}",
                "too large", 8);
  refuse_header("{\"__metadata__\":{\"k\":1}}", "strings", 0);
  refuse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":"
                "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]"
                "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}",
                "too deep", 8);
  refuse_header("{\"a\\ud800\":{}}", "surrogate", 0);
  refuse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", "trailing", 8);
  /* the tensors must tile the data: overlapping offsets, gaps and trailing bytes are refused */
  refuse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                "overlaps", 8);
  refuse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                "overlaps", 12);
  refuse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                "gap", 12);
  refuse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "gap", 8);
  refuse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "trailing", 12);
  refuse_header("{}", "no tensors", 4);
  /* header length past the end of the file, and absurd */
  uint8_t b[16] = {0xF0, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
  bt_safetensors *st;
  assert_int_equal(bt_safetensors_parse(b, 10, &st), BT_E_FORMAT);
  memset(b, 0xFF, 8);
  assert_int_equal(bt_safetensors_parse(b, 16, &st), BT_E_FORMAT);
  assert_int_equal(bt_safetensors_parse(b, 3, &st), BT_E_FORMAT);
  /* a good one, with unknown keys skipped, escapes decoded and metadata kept */
  const char *good = "{\"__metadata__\":{\"bt.num_heads\":\"2\",\"n\\u00e9\":\"\\\"x\\\"\"},"
                     "\"t\\u00e9\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[0,4],"
                     "\"extra\":[1,{\"k\":null,\"j\":-1.5e3},true]},\"e\":{\"dtype\":\"F32\",\"shape\":[0],"
                     "\"data_offsets\":[4,4]}}";
  size_t n = strlen(good);
  uint8_t *g = calloc(1, 8 + n + 4);
  g[0] = (uint8_t)n;
  memcpy(g + 8, good, n);
  g[8 + n + 1] = 0x3F;  /* bf16 1.0 = 0x3F80 */
  g[8 + n] = 0x80;
  g[8 + n + 3] = 0xC0;  /* bf16 -2.0 = 0xC000 */
  BT_CHECK(bt_safetensors_parse(g, 8 + n + 4, &st));
  assert_int_equal(bt_safetensors_count(st), 2);
  assert_string_equal(bt_safetensors_meta(st, "n\xc3\xa9"), "\"x\"");
  const bt_tensor_view *t = bt_safetensors_find(st, "t\xc3\xa9");
  assert_non_null(t);
  float f[2];
  BT_CHECK(bt_tensor_to_f32(t, f));
  assert_true(f[0] == 1.0f && f[1] == -2.0f);
  assert_int_equal(bt_safetensors_find(st, "e")->count, 0);
  bt_safetensors_free(st);
  free(g);
}

/* Every truncation and many random corruptions of a real model file:
 * refused with BT_E_FORMAT (or loaded, when a flip only hits data), never a crash. */
static void safetensors_survives_corruption(void **state) {
  (void)state;
  uint8_t *buf;
  size_t len;
  BT_CHECK(bt_read_file(data_path("deit_hf_distilled_f32.safetensors"), &buf, &len));
  size_t hlen = 8 + (size_t)buf[0] + ((size_t)buf[1] << 8);
  bt_safetensors *st;
  bt_vit *m;
  int refused = 0;
  for (size_t cut = 0; cut < len; cut += (cut < hlen + 64 ? 1 : 997)) {
    bt_status r = bt_safetensors_parse(buf, cut, &st);
    assert_int_equal(r, BT_E_FORMAT);
    refused++;
  }
  bt_prng g;
  bt_test_prng(&g, "safetensors corruption");
  uint8_t *c = malloc(len);
  int loaded = 0;
  for (int trial = 0; trial < 3000; trial++) {
    memcpy(c, buf, len);
    int flips = 1 + (int)(bt_prng_u64(&g) % 4);
    for (int k = 0; k < flips; k++) {
      size_t at = (size_t)(bt_prng_u64(&g) % (trial % 2 ? hlen : len));
      c[at] = (uint8_t)bt_prng_u64(&g);
    }
    bt_status r = bt_safetensors_parse(c, len, &st);
    if (r == BT_OK) {
      r = bt_vit_from_safetensors(st, &m);
      if (r == BT_OK) {
        loaded++;
        bt_vit_free(m);
      }
      bt_safetensors_free(st);
    }
    if (r != BT_OK && r != BT_E_FORMAT && r != BT_E_UNSUPPORTED && r != BT_E_PARAMS)
      fail_msg("corruption gave %s: %s", bt_status_name(r), bt_last_error());
  }
  bt_test_report("corrupted copies that still loaded (data-only flips)", loaded, "of 3000", 3000);
  bt_test_report("truncations refused", refused, "", 0);
  free(c);
  bt_free(buf);
}

/* Rewrites a fixture with one tensor changed by `edit` (returns 0 to drop it). */
typedef int (*edit_fn)(bt_tensor_out *t);

static void rewrite(const char *src, const char *dst, edit_fn edit, const char *const *meta) {
  bt_safetensors *st;
  BT_CHECK(bt_safetensors_open(data_path(src), &st));
  size_t n = bt_safetensors_count(st), k = 0;
  bt_tensor_out *out = calloc(n, sizeof *out);
  float **data = calloc(n, sizeof *data);
  for (size_t i = 0; i < n; i++) {
    const bt_tensor_view *v = bt_safetensors_at(st, i);
    data[i] = view_f32(v);
    bt_tensor_out t = {v->name, v->dtype, v->ndim, {0}, data[i]};
    memcpy(t.shape, v->shape, sizeof t.shape);
    if (edit(&t)) out[k++] = t;
  }
  BT_CHECK(bt_safetensors_write(tmp_path(dst), out, k, meta));
  for (size_t i = 0; i < n; i++) free(data[i]);
  free(data);
  free(out);
  bt_safetensors_free(st);
}

static int keep_all(bt_tensor_out *t) { (void)t; return 1; }
static int drop_fc2(bt_tensor_out *t) { return strcmp(t->name, "blocks.1.mlp.fc2.weight") != 0; }
static int shrink_qkv(bt_tensor_out *t) {
  if (!strcmp(t->name, "blocks.0.attn.qkv.bias")) t->shape[0] -= 1;
  return 1;
}
static int widen_fc1(bt_tensor_out *t) {
  if (!strcmp(t->name, "blocks.1.mlp.fc1.weight")) t->shape[0] = 64, t->shape[1] = 64;
  return 1;
}
static int drop_dist_token(bt_tensor_out *t) { return strcmp(t->name, "dist_token") != 0; }

static void expect_load_error(const char *file, bt_status want, const char *msg) {
  bt_vit *m = NULL;
  bt_status r = bt_vit_load(tmp_path(file), &m);
  if (r != want || !strstr(bt_last_error(), msg))
    fail_msg("%s: got %s '%s', wanted %s with '%s'", file, bt_status_name(r), bt_last_error(), bt_status_name(want),
             msg);
  assert_null(m);
}

static void vit_rejects_mismatched_models(void **state) {
  (void)state;
  /* a faithful rewrite loads and gives the same tokens */
  rewrite("deit_tiny_f32.safetensors", "same.safetensors", keep_all,
          (const char *const[]){"bt.num_heads", "2", NULL});
  bt_vit *a, *b;
  BT_CHECK(bt_vit_load(tmp_path("same.safetensors"), &a));
  BT_CHECK(bt_vit_load(data_path("deit_tiny_f32.safetensors"), &b));
  float x[3 * 16 * 16], fa[32], fb[32];
  for (int i = 0; i < 3 * 16 * 16; i++) x[i] = (float)sin(i);
  BT_CHECK(bt_vit_forward(a, x, 1, 16, 16, BT_VIT_POOL_CLS, fa, NULL, 1));
  BT_CHECK(bt_vit_forward(b, x, 1, 16, 16, BT_VIT_POOL_CLS, fb, NULL, 1));
  assert_memory_equal(fa, fb, sizeof fa);
  /* bad image sizes */
  assert_int_equal(bt_vit_forward(a, x, 1, 15, 16, BT_VIT_POOL_CLS, fa, NULL, 1), BT_E_ARG);
  bt_vit_free(a);
  bt_vit_free(b);

  const char *const heads2[] = {"bt.num_heads", "2", NULL};
  rewrite("deit_tiny_f32.safetensors", "nofc2.safetensors", drop_fc2, heads2);
  expect_load_error("nofc2.safetensors", BT_E_FORMAT, "'blocks.1.mlp.fc2.weight' is missing");
  rewrite("deit_tiny_f32.safetensors", "qkv.safetensors", shrink_qkv, heads2);
  expect_load_error("qkv.safetensors", BT_E_FORMAT, "'blocks.0.attn.qkv.bias' has shape [95]; expected [96]");
  rewrite("deit_tiny_f32.safetensors", "fc1.safetensors", widen_fc1, heads2);
  expect_load_error("fc1.safetensors", BT_E_FORMAT, "'blocks.1.mlp.fc1.weight' has shape [64, 64]");
  /* no bt.num_heads and dim 32 is not a multiple of 64 */
  rewrite("deit_tiny_f32.safetensors", "noheads.safetensors", keep_all, NULL);
  expect_load_error("noheads.safetensors", BT_E_FORMAT, "bt.num_heads");
  rewrite("deit_tiny_f32.safetensors", "badheads.safetensors", keep_all,
          (const char *const[]){"bt.num_heads", "5", NULL});
  expect_load_error("badheads.safetensors", BT_E_FORMAT, "bt.num_heads");
  /* a distilled model without its distillation token has one position too many */
  rewrite("deit_distilled_f16.safetensors", "nodist.safetensors", drop_dist_token,
          (const char *const[]){"bt.num_heads", "4", NULL});
  expect_load_error("nodist.safetensors", BT_E_FORMAT, "pos_embed");

  /* integer dtype: written by hand */
  const char *hdr = "{\"cls_token\":{\"dtype\":\"I32\",\"shape\":[1,1,2],\"data_offsets\":[0,8]}}";
  size_t n = strlen(hdr);
  uint8_t file[256] = {0};
  file[0] = (uint8_t)n;
  memcpy(file + 8, hdr, n);
  write_bytes(tmp_path("int.safetensors"), file, 8 + n + 8);
  expect_load_error("int.safetensors", BT_E_FORMAT, "'cls_token' has dtype I32");
  write_bytes(tmp_path("garbage.safetensors"), "not a model at all", 18);
  expect_load_error("garbage.safetensors", BT_E_FORMAT, "garbage.safetensors");
  bt_vit *m = NULL;
  assert_int_equal(bt_vit_load(tmp_path("absent.safetensors"), &m), BT_E_IO);
}

static void vit_presets_and_random(void **state) {
  (void)state;
  bt_vit_config c;
  BT_CHECK(bt_vit_config_preset("deit_base_distilled_patch16_224", &c));
  assert_int_equal(c.dim, 768);
  assert_int_equal(c.heads, 12);
  assert_int_equal(c.distilled, 1);
  BT_CHECK(bt_vit_config_preset("vit_base_patch16_224", &c));
  assert_int_equal(c.distilled, 0);
  assert_int_equal(bt_vit_config_preset("vit_distilled_base_patch16_224", &c), BT_E_ARG);
  assert_int_equal(bt_vit_config_preset("resnet50", &c), BT_E_ARG);
  BT_CHECK(bt_vit_config_preset("deit_tiny_distilled_patch16_224", &c));
  c.image_size = 32;
  c.depth = 2;
  uint8_t seed[BT_SEED_BYTES] = {7};
  bt_vit *m;
  BT_CHECK(bt_vit_new_random(&c, seed, &m));
  float *x = calloc(2 * 3 * 32 * 32, sizeof *x), f1[2 * 192], f2[2 * 192];
  for (int i = 0; i < 2 * 3 * 32 * 32; i++) x[i] = (float)cos(0.1 * i);
  BT_CHECK(bt_vit_forward(m, x, 2, 32, 32, BT_VIT_POOL_CLS_DIST, f1, NULL, 2));
  /* one image at a time gives the same features */
  BT_CHECK(bt_vit_forward(m, x, 1, 32, 32, BT_VIT_POOL_CLS_DIST, f2, NULL, 1));
  BT_CHECK(bt_vit_forward(m, x + 3 * 32 * 32, 1, 32, 32, BT_VIT_POOL_CLS_DIST, f2 + 192, NULL, 1));
  assert_true(rel_err(f1, f2, 2 * 192) < 1e-5);
  for (int i = 0; i < 192; i++) assert_true(isfinite(f1[i]));
  c.heads = 5;
  bt_vit *bad = NULL;
  assert_int_equal(bt_vit_new_random(&c, seed, &bad), BT_E_PARAMS);
  assert_null(bad);
  bt_vit_pool p;
  BT_CHECK(bt_vit_pool_parse("cls+dist", &p));
  assert_int_equal(p, BT_VIT_POOL_CLS_DIST);
  assert_int_equal(bt_vit_pool_parse("avg", &p), BT_E_ARG);
  free(x);
  bt_vit_free(m);
}

/* ---------------------------------------------------------------- images */

static void image_decoding_matches_pil(void **state) {
  (void)state;
  bt_safetensors *io;
  BT_CHECK(bt_safetensors_open(data_path("images.io.safetensors"), &io));
  static const struct {
    const char *name, *file;
    int channels;
  } cases[] = {{"rgb", "rgb.png", 3},
               {"grey", "grey.png", 1},
               {"palette", "palette.png", 3},
               {"photo", "photo.jpg", 3},
               {"greyjpg", "greyjpg.jpg", 1}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    bt_image im;
    BT_CHECK(bt_image_load(data_path(cases[k].file), &im));
    char key[64];
    snprintf(key, sizeof key, "%s.pixels", cases[k].name);
    const bt_tensor_view *px = bt_safetensors_find(io, key);
    assert_non_null(px);
    assert_int_equal(px->dtype, BT_DTYPE_U8);
    assert_int_equal(im.height, px->shape[0]);
    assert_int_equal(im.width, px->shape[1]);
    assert_int_equal(im.channels, cases[k].channels);
    int worst = 0;
    for (int i = 0; i < im.width * im.height; i++)
      for (int c = 0; c < 3; c++) {
        int a = im.data[i * im.channels + (im.channels == 3 ? c : 0)], b = px->data[i * 3 + c];
        if (abs(a - b) > worst) worst = abs(a - b);
      }
    if (worst) fail_msg("%s: decoded pixels differ from PIL's by up to %d", cases[k].file, worst);

    /* timm's eval transform at three settings */
    static const struct {
      const char *suffix;
      int size;
      float crop, mean, std;
    } pre[] = {{"pre16", 16, 0.875f, -1, -1}, {"pre12_c1", 12, 1.0f, 0.5f, 0.5f}, {"pre28", 28, 0.875f, -1, -1}};
    for (int p = 0; p < 3; p++) {
      bt_preprocess pp = {pre[p].size, pre[p].crop, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, 3};
      if (pre[p].mean > 0)
        for (int c = 0; c < 3; c++) pp.mean[c] = pre[p].mean, pp.std[c] = pre[p].std;
      snprintf(key, sizeof key, "%s.%s", cases[k].name, pre[p].suffix);
      float *want = view_f32(bt_safetensors_find(io, key));
      float *got = malloc(3 * (size_t)pp.size * (size_t)pp.size * sizeof *got);
      BT_CHECK(bt_image_preprocess(&im, &pp, got));
      double e = 0;
      for (int i = 0; i < 3 * pp.size * pp.size; i++) e = fmax(e, fabs((double)got[i] - want[i]));
      if (e > 1e-6) fail_msg("%s: preprocessing %s differs from timm by %g", cases[k].file, key, e);
      free(want);
      free(got);
    }
    bt_image_free(&im);
  }
  bt_safetensors_free(io);
  /* a resize to the same size is a copy; a bad size is refused */
  bt_image a, b;
  BT_CHECK(bt_image_new(3, 2, 1, &a));
  a.data[4] = 200;
  BT_CHECK(bt_image_resize(&a, 3, 2, &b));
  assert_memory_equal(a.data, b.data, 6);
  bt_image_free(&b);
  assert_int_equal(bt_image_resize(&a, 0, 2, &b), BT_E_ARG);
  bt_image_free(&a);
}

static void image_decoding_refuses_corrupt_files(void **state) {
  (void)state;
  const char *files[] = {"rgb.png", "photo.jpg", "palette.png", "greyjpg.jpg"};
  bt_prng g;
  bt_test_prng(&g, "image corruption");
  int refused = 0;
  for (int f = 0; f < 4; f++) {
    uint8_t *buf;
    size_t len;
    BT_CHECK(bt_read_file(data_path(files[f]), &buf, &len));
    bt_image im;
    for (size_t cut = 0; cut < len; cut += 3) {
      bt_status r = bt_image_decode(buf, cut, &im);
      if (r != BT_E_FORMAT) fail_msg("%s cut to %zu bytes: %s", files[f], cut, bt_status_name(r));
      assert_null(im.data);
      refused++;
    }
    uint8_t *c = malloc(len);
    for (int t = 0; t < 300; t++) {
      memcpy(c, buf, len);
      for (int k = 0; k < 3; k++) c[bt_prng_u64(&g) % len] = (uint8_t)bt_prng_u64(&g);
      bt_status r = bt_image_decode(c, len, &im);
      if (r == BT_OK) bt_image_free(&im);
      else assert_int_equal(r, BT_E_FORMAT);
    }
    free(c);
    bt_free(buf);
  }
  bt_test_report("truncated images refused", refused, "", 0);
  bt_image im;
  assert_int_equal(bt_image_decode("GIF89a..", 8, &im), BT_E_FORMAT);
  assert_int_equal(bt_image_load(data_path("absent.png"), &im), BT_E_IO);
}

static void check_pixels(const bt_dataset *d, size_t i, const bt_tensor_view *want) {
  bt_image im;
  BT_CHECK(bt_dataset_image(d, i, &im));
  assert_int_equal((size_t)im.width * (size_t)im.height * (size_t)im.channels, want->count);
  assert_memory_equal(im.data, want->data, want->count);
  bt_image_free(&im);
}

static void check_labels(const bt_dataset *d, const bt_tensor_view *want) {
  assert_int_equal(bt_dataset_count(d), want->count);
  for (int64_t i = 0; i < want->count; i++) {
    int64_t v = 0;
    memcpy(&v, want->data + 8 * i, 8);
    assert_int_equal(bt_dataset_label(d, (size_t)i), v);
  }
}

static void datasets_read_idx_npz_and_folders(void **state) {
  (void)state;
  bt_safetensors *io;
  BT_CHECK(bt_safetensors_open(data_path("datasets.io.safetensors"), &io));
  bt_dataset *d;
  /* IDX, labels found by the MNIST naming convention */
  char spec[1400];
  snprintf(spec, sizeof spec, "idx:%s", data_path("tiny-images-idx3-ubyte.gz"));
  BT_CHECK(bt_dataset_open(spec, &d));
  check_labels(d, bt_safetensors_find(io, "idx.labels"));
  check_pixels(d, 3, bt_safetensors_find(io, "idx.image3"));
  assert_int_equal(bt_dataset_num_classes(d), 6);
  assert_null(bt_dataset_class_name(d, 0));
  bt_image im;
  assert_int_equal(bt_dataset_image(d, 5, &im), BT_E_ARG);
  bt_dataset_free(d);
  /* npz, stored (np.savez) and deflated (np.savez_compressed) */
  BT_CHECK(bt_dataset_open(data_path("tiny_grey.npz"), &d));
  check_labels(d, bt_safetensors_find(io, "grey.train_labels"));
  check_pixels(d, 1, bt_safetensors_find(io, "grey.train_image1"));
  bt_dataset_free(d);
  snprintf(spec, sizeof spec, "npz:%s:test", data_path("tiny_rgb.npz"));
  BT_CHECK(bt_dataset_open(spec, &d));
  check_labels(d, bt_safetensors_find(io, "rgb.test_labels"));
  check_pixels(d, 1, bt_safetensors_find(io, "rgb.test_image1"));
  BT_CHECK(bt_dataset_image(d, 0, &im));
  assert_int_equal(im.channels, 3);
  assert_int_equal(im.width, 6);
  bt_image_free(&im);
  bt_dataset_free(d);
  assert_int_equal(bt_dataset_open_npz(data_path("tiny_rgb.npz"), "nosuch", &d), BT_E_FORMAT);
  assert_non_null(strstr(bt_last_error(), "nosuch_images.npy"));
  /* folder */
  BT_CHECK(bt_dataset_open(data_path("folder"), &d));
  assert_int_equal(bt_dataset_count(d), 3);
  assert_int_equal(bt_dataset_num_classes(d), 2);
  assert_string_equal(bt_dataset_class_name(d, 1), "dog");
  assert_int_equal(bt_dataset_label(d, 2), 1);
  BT_CHECK(bt_dataset_image(d, 1, &im));
  assert_int_equal(im.width, 6);
  bt_image_free(&im);
  bt_dataset_free(d);
  assert_int_equal(bt_dataset_open("folder:/nonexistent/dir", &d), BT_E_IO);
  assert_int_equal(bt_dataset_open("fashion-mnist:validation", &d), BT_E_ARG);
  bt_safetensors_free(io);
}

static void datasets_refuse_corrupt_files(void **state) {
  (void)state;
  bt_dataset *d = NULL;
  const char *names[] = {"tiny_grey.npz", "tiny_rgb.npz", "tiny-images-idx3-ubyte.gz"};
  bt_prng g;
  bt_test_prng(&g, "dataset corruption");
  for (int f = 0; f < 3; f++) {
    uint8_t *buf;
    size_t len;
    BT_CHECK(bt_read_file(data_path(names[f]), &buf, &len));
    const char *dst = tmp_path(f == 2 ? "bad-images-idx3-ubyte.gz" : "bad.npz");
    for (size_t cut = 0; cut < len; cut += (f == 2 ? 3 : 23)) {
      write_bytes(dst, buf, cut);
      bt_status r = f == 2 ? bt_dataset_open_idx(dst, data_path("tiny-labels-idx1-ubyte.gz"), &d)
                           : bt_dataset_open_npz(dst, "train", &d);
      if (r != BT_E_FORMAT) fail_msg("%s cut to %zu: %s %s", names[f], cut, bt_status_name(r), bt_last_error());
      assert_null(d);
    }
    for (int t = 0; t < 200; t++) {
      uint8_t *c = malloc(len);
      memcpy(c, buf, len);
      c[bt_prng_u64(&g) % len] ^= (uint8_t)(1 + bt_prng_u64(&g) % 255);
      write_bytes(dst, c, len);
      bt_status r = f == 2 ? bt_dataset_open_idx(dst, data_path("tiny-labels-idx1-ubyte.gz"), &d)
                           : bt_dataset_open_npz(dst, "train", &d);
      if (r == BT_OK) bt_dataset_free(d);  /* a flip in an unused member or a zip comment */
      else if (r != BT_E_FORMAT && r != BT_E_UNSUPPORTED)
        fail_msg("%s corrupted: %s %s", names[f], bt_status_name(r), bt_last_error());
      free(c);
    }
    bt_free(buf);
  }
  /* labels that do not match the images */
  assert_int_equal(bt_dataset_open_idx(data_path("tiny-images-idx3-ubyte.gz"), data_path("tiny-images-idx3-ubyte.gz"), &d),
                   BT_E_FORMAT);
}

static void npy_round_trip(void **state) {
  (void)state;
  float f[6] = {1, -2, 3.5f, 0, 1e-30f, 7};
  int64_t l[3] = {5, -1, 1LL << 40}, fs[2] = {2, 3}, ls[1] = {3};
  BT_CHECK(bt_npy_write_f32(tmp_path("f.npy"), f, 2, fs));
  BT_CHECK(bt_npy_write_i64(tmp_path("l.npy"), l, 1, ls));
  uint8_t *b;
  size_t n;
  bt_npy a;
  BT_CHECK(bt_read_file(tmp_path("f.npy"), &b, &n));
  assert_int_equal((n - 6 * 4) % 64, 0);
  BT_CHECK(bt_npy_parse(b, n, &a));
  assert_string_equal(a.dtype, "f4");
  assert_int_equal(a.ndim, 2);
  assert_int_equal(a.shape[1], 3);
  assert_memory_equal(a.data, f, sizeof f);
  assert_int_equal(bt_npy_parse(b, n - 1, &a), BT_E_FORMAT);
  bt_free(b);
  BT_CHECK(bt_read_file(tmp_path("l.npy"), &b, &n));
  BT_CHECK(bt_npy_parse(b, n, &a));
  assert_string_equal(a.dtype, "i8");
  assert_int_equal(a.ndim, 1);
  assert_memory_equal(a.data, l, sizeof l);
  for (size_t cut = 0; cut < n - 24; cut++) assert_int_equal(bt_npy_parse(b, cut, &a), BT_E_FORMAT);
  bt_free(b);
}

#define VISION_DATA_TESTS                                              \
  cmocka_unit_test(image_decoding_matches_pil),                        \
      cmocka_unit_test(image_decoding_refuses_corrupt_files),          \
      cmocka_unit_test(datasets_read_idx_npz_and_folders),             \
      cmocka_unit_test(datasets_refuse_corrupt_files), cmocka_unit_test(npy_round_trip),

int main(void) {
  bt_test_seed();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(golden_deit_tiny_f32),
      cmocka_unit_test(golden_deit_distilled_f16),
      cmocka_unit_test(golden_vit_hf_bf16),
      cmocka_unit_test(golden_deit_hf_distilled_f32),
      cmocka_unit_test(half_conversion_round_trips),
      cmocka_unit_test(safetensors_rejects_bad_headers),
      cmocka_unit_test(safetensors_survives_corruption),
      cmocka_unit_test(vit_rejects_mismatched_models),
      cmocka_unit_test(vit_presets_and_random),
      VISION_DATA_TESTS
  };
  return cmocka_run_group_tests(tests, vision_setup, vision_teardown);
}

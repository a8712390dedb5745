/* Image decoding (libpng, libjpeg-turbo) and timm's evaluation preprocessing.
 *
 * timm's eval transform runs on PIL images: Resize(shorter side to
 * floor(size / crop_pct), BICUBIC) -> CenterCrop(size) -> ToTensor ->
 * Normalize.  PIL resamples 8-bit images with a separable convolution
 * (Pillow, src/libImaging/Resample.c): bicubic kernel with a = -0.5, support
 * widened by the scale factor when shrinking (so shrinking is antialiased),
 * coefficients normalised in double then rounded to 22-bit fixed point, a
 * horizontal pass rounded and clipped to 8 bits, then a vertical pass.  This
 * file follows that arithmetic step by step, so the pixels match PIL's bit for
 * bit and the features match timm's pipeline, not just approximately.
 * Decoding follows PIL's choices too: 16-bit samples keep their high byte,
 * alpha is dropped (not composited), palettes are expanded. */
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "blindtuner/util.h"
#include "blindtuner/vision_data.h"
#include "vision/internal.h"

#define MAX_PIXELS (1u << 28)
#define MAX_SIDE 65535

/* The largest image the decoders accept: 8192 x 8192 pixels (8192 a
 * side), 192 MiB decoded as RGB.  The header's dimensions are checked
 * before any pixel is decoded or any image memory allocated, so a small
 * file declaring a huge image (a 16384 x 16384 PNG of one colour deflates
 * to a few hundred kilobytes) is refused cheaply.  The models this project
 * runs take 224 x 224 or 384 x 384 inputs; a 48-megapixel photo (8000 x
 * 6000) still fits. */
#define DECODE_MAX_SIDE 8192u

/* BT_OK when an image of w x h may be decoded, else the error (the codec
 * named in the message). */
static bt_status decode_size_ok(const char *codec, uint32_t w, uint32_t h) {
  if (w > DECODE_MAX_SIDE || h > DECODE_MAX_SIDE)
    return bt_fail(BT_E_FORMAT, "%s: image of %u x %u pixels exceeds the decoder's limit of %u x %u", codec, w,
                   h, DECODE_MAX_SIDE, DECODE_MAX_SIDE);
  return BT_OK;
}

bt_status bt_image_new(int width, int height, int channels, bt_image *out) {
  memset(out, 0, sizeof *out);
  if (width < 1 || height < 1 || width > MAX_SIDE || height > MAX_SIDE ||
      (uint64_t)width * (uint64_t)height > MAX_PIXELS || (channels != 1 && channels != 3))
    return bt_fail(BT_E_ARG, "image: bad size %d x %d x %d", width, height, channels);
  out->data = bt_calloc((size_t)width * (size_t)height, (size_t)channels);
  if (!out->data) return BT_E_NOMEM;
  out->width = width;
  out->height = height;
  out->channels = channels;
  return BT_OK;
}

void bt_image_free(bt_image *im) {
  if (!im) return;
  bt_free(im->data);
  memset(im, 0, sizeof *im);
}

/* ---------------------------------------------------------------- PNG */

typedef struct png_src {
  const uint8_t *p;
  size_t left;
} png_src;

static void png_read_mem(png_structp png, png_bytep out, size_t n) {
  png_src *s = png_get_io_ptr(png);
  if (n > s->left) png_error(png, "truncated file");
  memcpy(out, s->p, n);
  s->p += n;
  s->left -= n;
}

static void png_err(png_structp png, png_const_charp msg) {
  char *buf = png_get_error_ptr(png);
  snprintf(buf, 200, "%s", msg);
  png_longjmp(png, 1);
}

static void png_warn(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;
}

static bt_status decode_png(const uint8_t *b, size_t len, bt_image *out) {
  char msg[200] = "";
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, msg, png_err, png_warn);
  if (!png) return bt_fail(BT_E_NOMEM, "png: out of memory");
  png_infop info = png_create_info_struct(png);
  png_bytep *volatile rows = NULL;
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    return bt_fail(BT_E_NOMEM, "png: out of memory");
  }
  png_src src = {b, len};
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    bt_image_free(out);
    return bt_fail(BT_E_FORMAT, "png: %s", msg[0] ? msg : "corrupt file");
  }
  png_set_read_fn(png, &src, png_read_mem);
  png_set_user_limits(png, MAX_SIDE, MAX_SIDE);
  png_read_info(png, info);
  if (decode_size_ok("png", png_get_image_width(png, info), png_get_image_height(png, info)) != BT_OK) {
    png_destroy_read_struct(&png, &info, NULL);
    return BT_E_FORMAT; /* the message is recorded */
  }
  int ct = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  if (depth == 16) png_set_strip_16(png);
  if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (ct == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (ct & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int w = (int)png_get_image_width(png, info), h = (int)png_get_image_height(png, info);
  int ch = png_get_channels(png, info);
  if ((ch != 1 && ch != 3) || png_get_rowbytes(png, info) != (size_t)w * (size_t)ch)
    png_error(png, "unsupported pixel layout");
  if (bt_image_new(w, h, ch, out) != BT_OK) png_error(png, "image too large");
  rows = malloc((size_t)h * sizeof *rows);
  if (!rows) png_error(png, "out of memory");
  for (int y = 0; y < h; y++) rows[y] = out->data + (size_t)y * (size_t)w * (size_t)ch;
  png_read_image(png, rows);
  png_read_end(png, NULL);
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  return BT_OK;
}

/* ---------------------------------------------------------------- JPEG */

typedef struct jpeg_err {
  struct jpeg_error_mgr mgr;
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_fail(j_common_ptr cinfo) {
  jpeg_err *e = (jpeg_err *)cinfo->err;
  e->mgr.format_message(cinfo, e->msg);
  longjmp(e->jb, 1);
}

/* Warnings are tolerated (as PIL does) except a premature end of data, which
 * libjpeg would pad with grey: a truncated file is refused instead. */
static void jpeg_warn(j_common_ptr cinfo, int level) {
  jpeg_err *e = (jpeg_err *)cinfo->err;
  if (level == -1 && e->mgr.msg_code == JWRN_JPEG_EOF) {
    snprintf(e->msg, sizeof e->msg, "truncated file");
    longjmp(e->jb, 1);
  }
}

static bt_status decode_jpeg(const uint8_t *b, size_t len, bt_image *out) {
  struct jpeg_decompress_struct cinfo;
  jpeg_err err;
  memset(&cinfo, 0, sizeof cinfo);
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  err.mgr.emit_message = jpeg_warn;
  err.msg[0] = '\0';
  if (setjmp(err.jb)) {
    jpeg_destroy_decompress(&cinfo);
    bt_image_free(out);
    return bt_fail(BT_E_FORMAT, "jpeg: %s", err.msg[0] ? err.msg : "corrupt file");
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, b, (unsigned long)len);
  jpeg_read_header(&cinfo, TRUE);
  if (decode_size_ok("jpeg", cinfo.image_width, cinfo.image_height) != BT_OK) {
    jpeg_destroy_decompress(&cinfo);
    return BT_E_FORMAT; /* the message is recorded */
  }
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    snprintf(err.msg, sizeof err.msg, "CMYK images are not supported");
    longjmp(err.jb, 1);
  }
  cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  int w = (int)cinfo.output_width, h = (int)cinfo.output_height, ch = cinfo.output_components;
  if (bt_image_new(w, h, ch, out) != BT_OK) {
    snprintf(err.msg, sizeof err.msg, "bad image size %d x %d x %d", w, h, ch);
    longjmp(err.jb, 1);
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out->data + (size_t)cinfo.output_scanline * (size_t)w * (size_t)ch;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return BT_OK;
}

bt_status bt_image_decode(const void *bytes, size_t len, bt_image *out) {
  memset(out, 0, sizeof *out);
  const uint8_t *b = bytes;
  if (!b || len < 8) return bt_fail(BT_E_FORMAT, "image: too short to be a PNG or JPEG");
  if (!png_sig_cmp(b, 0, 8)) return decode_png(b, len, out);
  if (b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return decode_jpeg(b, len, out);
  return bt_fail(BT_E_FORMAT, "image: neither PNG nor JPEG");
}

bt_status bt_image_load(const char *path, bt_image *out) {
  memset(out, 0, sizeof *out);
  uint8_t *buf;
  size_t len;
  bt_status r = bt_read_file(path, &buf, &len);
  if (r) return r;
  r = bt_image_decode(buf, len, out);
  bt_free(buf);
  if (r) {
    char msg[400];
    snprintf(msg, sizeof msg, "%s", bt_last_error());
    return bt_fail(r, "%s: %s", path, msg);
  }
  return BT_OK;
}

/* ---------------------------------------------------------------- PIL bicubic */

#define PRECISION_BITS (32 - 8 - 2)

static double bicubic_filter(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the whole input
 * range: for each output index its first input index, tap count and
 * fixed-point taps (ksize per output). */
static int coeffs(int in_size, int out_size, int **bounds, int32_t **kk) {
  double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
  double support = 2.0 * filterscale;
  int ksize = (int)ceil(support) * 2 + 1;
  double *pre = malloc((size_t)out_size * (size_t)ksize * sizeof *pre);
  *bounds = malloc((size_t)out_size * 2 * sizeof **bounds);
  *kk = malloc((size_t)out_size * (size_t)ksize * sizeof **kk);
  if (!pre || !*bounds || !*kk) {
    free(pre);
    free(*bounds);
    free(*kk);
    return 0;
  }
  for (int xx = 0; xx < out_size; xx++) {
    double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
    int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
    if (xmin < 0) xmin = 0;
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double *k = &pre[(size_t)xx * (size_t)ksize];
    int x;
    for (x = 0; x < xmax; x++) {
      double w = bicubic_filter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (x = 0; x < xmax; x++)
      if (ww != 0.0) k[x] /= ww;
    for (; x < ksize; x++) k[x] = 0;
    (*bounds)[xx * 2] = xmin;
    (*bounds)[xx * 2 + 1] = xmax;
  }
  for (size_t i = 0; i < (size_t)out_size * (size_t)ksize; i++)
    (*kk)[i] = pre[i] < 0 ? (int32_t)(-0.5 + pre[i] * (1 << PRECISION_BITS))
                          : (int32_t)(0.5 + pre[i] * (1 << PRECISION_BITS));
  free(pre);
  return ksize;
}

static uint8_t clip8(int32_t ss) {
  if (ss < 0) return 0;
  ss >>= PRECISION_BITS;
  return (uint8_t)(ss > 255 ? 255 : ss);
}

bt_status bt_image_resize(const bt_image *in, int width, int height, bt_image *out) {
  memset(out, 0, sizeof *out);
  bt_status r = bt_image_new(width, height, in->channels, out);
  if (r) return r;
  const int ch = in->channels, iw = in->width, ih = in->height;
  if (width == iw && height == ih) {
    memcpy(out->data, in->data, (size_t)iw * (size_t)ih * (size_t)ch);
    return BT_OK;
  }
  int *bh = NULL, *bv = NULL;
  int32_t *kh = NULL, *kv = NULL;
  uint8_t *tmp = NULL;
  int ksh = coeffs(iw, width, &bh, &kh), ksv = coeffs(ih, height, &bv, &kv);
  if (!ksh || !ksv) {
    r = bt_fail(BT_E_NOMEM, "image: out of memory resizing");
    goto done;
  }
  int need_h = width != iw, need_v = height != ih;
  /* rows of the input the vertical pass reads */
  int y0 = bv[0], y1 = bv[(height - 1) * 2] + bv[(height - 1) * 2 + 1];
  const uint8_t *src = in->data;
  int src_rows0 = 0; /* row index in `src` of input row y0 */
  if (need_h) {
    int rows = need_v ? y1 - y0 : ih;
    int first = need_v ? y0 : 0;
    tmp = malloc((size_t)rows * (size_t)width * (size_t)ch);
    if (!tmp) {
      r = bt_fail(BT_E_NOMEM, "image: out of memory resizing");
      goto done;
    }
    for (int y = 0; y < rows; y++) {
      const uint8_t *line = in->data + (size_t)(y + first) * (size_t)iw * (size_t)ch;
      for (int xx = 0; xx < width; xx++) {
        int xmin = bh[xx * 2], xmax = bh[xx * 2 + 1];
        const int32_t *k = &kh[(size_t)xx * (size_t)ksh];
        for (int c = 0; c < ch; c++) {
          int32_t ss = 1 << (PRECISION_BITS - 1);
          for (int x = 0; x < xmax; x++) ss += line[(size_t)(x + xmin) * (size_t)ch + (size_t)c] * k[x];
          tmp[((size_t)y * (size_t)width + (size_t)xx) * (size_t)ch + (size_t)c] = clip8(ss);
        }
      }
    }
    src = tmp;
    src_rows0 = need_v ? y0 : 0;
    if (!need_v) {
      memcpy(out->data, tmp, (size_t)width * (size_t)height * (size_t)ch);
      goto done;
    }
  }
  /* vertical pass over `src` (width columns), whose row 0 is input row src_rows0 */
  for (int yy = 0; yy < height; yy++) {
    int ymin = bv[yy * 2] - src_rows0, ymax = bv[yy * 2 + 1];
    const int32_t *k = &kv[(size_t)yy * (size_t)ksv];
    for (int xx = 0; xx < width; xx++)
      for (int c = 0; c < ch; c++) {
        int32_t ss = 1 << (PRECISION_BITS - 1);
        for (int y = 0; y < ymax; y++)
          ss += src[((size_t)(y + ymin) * (size_t)width + (size_t)xx) * (size_t)ch + (size_t)c] * k[y];
        out->data[((size_t)yy * (size_t)width + (size_t)xx) * (size_t)ch + (size_t)c] = clip8(ss);
      }
  }
done:
  free(bh);
  free(bv);
  free(kh);
  free(kv);
  free(tmp);
  if (r) bt_image_free(out);
  return r;
}

/* ---------------------------------------------------------------- preprocessing */

void bt_preprocess_of(const bt_vit_config *c, bt_preprocess *pp) {
  pp->size = c->image_size;
  pp->crop_pct = c->crop_pct;
  memcpy(pp->mean, c->mean, sizeof pp->mean);
  memcpy(pp->std, c->std, sizeof pp->std);
  pp->channels = c->in_chans == 1 ? 1 : 3;
}

/* Python's round(): halves to even (torchvision's CenterCrop uses it). */
static int round_half_even(double x) {
  double f = floor(x), d = x - f;
  if (d > 0.5 || (d == 0.5 && fmod(f, 2.0) != 0)) f += 1;
  return (int)f;
}

bt_status bt_image_preprocess(const bt_image *in, const bt_preprocess *pp, float *out) {
  if (pp->size < 1 || pp->size > 8192 || !(pp->crop_pct > 0.05f && pp->crop_pct <= 1.0f) ||
      (pp->channels != 1 && pp->channels != 3))
    return bt_fail(BT_E_ARG, "preprocess: bad settings (size %d, crop_pct %g, %d channels)", pp->size,
                   (double)pp->crop_pct, pp->channels);
  if (!in->data || in->width < 1 || in->height < 1 || (in->channels != 1 && in->channels != 3))
    return bt_fail(BT_E_ARG, "preprocess: empty image");
  int scale = (int)floor((double)pp->size / (double)pp->crop_pct);
  int w = in->width, h = in->height, nw, nh;
  if (w <= h) {
    nw = scale;
    nh = (int)((double)scale * h / w);
  } else {
    nh = scale;
    nw = (int)((double)scale * w / h);
  }
  if (nw < pp->size || nh < pp->size || nw > MAX_SIDE || nh > MAX_SIDE)
    return bt_fail(BT_E_ARG, "preprocess: cannot resize %d x %d to %d x %d", w, h, nw, nh);
  bt_image rs;
  bt_status r = bt_image_resize(in, nw, nh, &rs);
  if (r) return r;
  int top = round_half_even((nh - pp->size) / 2.0), left = round_half_even((nw - pp->size) / 2.0);
  const int S = pp->size, ich = rs.channels;
  for (int c = 0; c < pp->channels; c++) {
    float mean = pp->mean[c], std = pp->std[c];
    for (int y = 0; y < S; y++) {
      const uint8_t *row = rs.data + ((size_t)(y + top) * (size_t)nw + (size_t)left) * (size_t)ich;
      float *o = out + ((size_t)c * (size_t)S + (size_t)y) * (size_t)S;
      for (int x = 0; x < S; x++) {
        const uint8_t *px = row + (size_t)x * (size_t)ich;
        int v;
        if (ich == 1) v = px[0];
        else if (pp->channels == 3) v = px[c];
        else v = (px[0] * 19595 + px[1] * 38470 + px[2] * 7471 + 0x8000) >> 16; /* PIL's L */
        float f = (float)v / 255.0f;
        o[x] = (f - mean) / std;
      }
    }
  }
  bt_image_free(&rs);
  return BT_OK;
}

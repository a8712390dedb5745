/* Transformer features of a dataset: select images (classes, limit or a
 * seeded sample), preprocess them as timm does, run the model in batches
 * (include/blindtuner/vision_data.h, bt_features_extract). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blindtuner/vision_data.h"

#define DEFAULT_MODEL "deit_fmnist05.safetensors"

static int parse_classes(const char *s, int *map, int max) {
  for (int i = 0; i < max; i++) map[i] = -1;
  int k = 0;
  while (*s) {
    char *end;
    long a = strtol(s, &end, 10), b = a;
    if (end == s || a < 0 || a >= max) return -1;
    s = end;
    if (*s == '-') {
      b = strtol(s + 1, &end, 10);
      if (end == s + 1 || b < a || b >= max) return -1;
      s = end;
    }
    for (long c = a; c <= b; c++) {
      if (map[c] >= 0) return -1;
      map[c] = k++;
    }
    if (*s == ',') s++;
    else if (*s) return -1;
  }
  return k;
}

const char *bt_vit_default_model(char *buf, size_t n) {
  const char *env = getenv("BT_MODEL");
  if (env && *env) return env;
  /* next to the executable (build/blindtuner -> models/), then the current directory */
  char exe[PATH_MAX];
  ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (l > 0) {
    exe[l] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      const char *up[] = {"/../models/", "/models/", "/../../models/"};
      for (int i = 0; i < 3; i++) {
        snprintf(buf, n, "%s%s%s", exe, up[i], DEFAULT_MODEL);
        if (access(buf, R_OK) == 0) return buf;
      }
    }
  }
  snprintf(buf, n, "models/%s", DEFAULT_MODEL);
  return buf;
}

bt_status bt_features_extract(const bt_features_request *r, float **feats_out, int64_t **labels_out, size_t *n_out,
                              size_t *dim_out, int *classes_out) {
  bt_status rc = BT_E_ARG;
  int threads = r->threads ? r->threads : bt_default_threads(), batch = r->batch ? r->batch : 64;
  bt_vit *m = NULL;
  bt_dataset *d = NULL;
  size_t *idx = NULL;
  int64_t *labels = NULL;
  float *feats = NULL, *x = NULL;
  bt_status *st = NULL;
  int map[1024];
  char mbuf[PATH_MAX + 64];
  const char *model = r->model ? r->model : bt_vit_default_model(mbuf, sizeof mbuf);
  *feats_out = NULL;
  *labels_out = NULL;
  if ((rc = bt_vit_load(model, &m)) || (rc = bt_dataset_open(r->data, &d))) goto out;
  rc = BT_E_ARG;
  const bt_vit_config *c = bt_vit_config_of(m);
  if ((r->pool == BT_VIT_POOL_DIST || r->pool == BT_VIT_POOL_CLS_DIST) && !c->distilled) {
    bt_fail(BT_E_ARG, "feature %s needs a distilled model", bt_vit_pool_name(r->pool));
    goto out;
  }
  bt_preprocess pp;
  bt_preprocess_of(c, &pp);
  if (r->size) pp.size = r->size;
  if (r->crop > 0) pp.crop_pct = r->crop;
  if (r->have_mean) memcpy(pp.mean, r->mean, sizeof r->mean);
  if (r->have_std) memcpy(pp.std, r->std, sizeof r->std);
  if (pp.size % c->patch_size) {
    bt_fail(BT_E_ARG, "size %d is not a multiple of the patch size %d", pp.size, c->patch_size);
    goto out;
  }

  /* which images, and their labels */
  size_t total = bt_dataset_count(d), n = 0;
  int k = 0;
  if (r->classes && (k = parse_classes(r->classes, map, 1024)) <= 0) {
    bt_fail(BT_E_ARG, "bad class list '%s' (e.g. 5,6,7 or 5-9)", r->classes);
    goto out;
  }
  idx = malloc((total ? total : 1) * sizeof *idx);
  labels = malloc((total ? total : 1) * sizeof *labels);
  if (!idx || !labels) goto nomem;
  for (size_t i = 0; i < total && (r->limit <= 0 || r->sample || n < (size_t)r->limit); i++) {
    int l = bt_dataset_label(d, i);
    if (r->classes && (l >= 1024 || map[l] < 0)) continue;
    idx[n] = i;
    labels[n++] = r->classes ? map[l] : l;
  }
  if (r->sample) {
    if (r->sample > n) {
      bt_fail(BT_E_ARG, "%zu images wanted, %s has %zu%s", r->sample, r->data, n, r->classes ? " of those classes" : "");
      goto out;
    }
    /* a seeded shuffle (Fisher-Yates), then the first `sample` */
    bt_prng g;
    uint8_t seed[BT_SEED_BYTES] = {0};
    memcpy(seed, &r->seed, sizeof r->seed);
    bt_prng_init(&g, seed);
    for (size_t i = n - 1; i > 0; i--) {
      const size_t j = (size_t)(bt_prng_u64(&g) % (uint64_t)(i + 1));
      size_t ti = idx[i];
      int64_t tl = labels[i];
      idx[i] = idx[j], labels[i] = labels[j];
      idx[j] = ti, labels[j] = tl;
    }
    bt_prng_wipe(&g);
    n = r->sample;
  }
  if (!n) {
    bt_fail(BT_E_ARG, "no images selected");
    goto out;
  }
  const size_t D = (size_t)c->dim, per = (size_t)pp.channels * (size_t)pp.size * (size_t)pp.size;
  feats = malloc(n * D * sizeof *feats);
  x = malloc((size_t)batch * per * sizeof *x);
  st = malloc((size_t)batch * sizeof *st);
  if (!feats || !x || !st) goto nomem;
  if (r->info)
    r->info(r->user, model, n, r->classes ? k : bt_dataset_num_classes(d), pp.size, D, threads);
  for (size_t i0 = 0; i0 < n; i0 += (size_t)batch) {
    int b = (int)(n - i0 < (size_t)batch ? n - i0 : (size_t)batch);
#pragma omp parallel for num_threads(threads) schedule(dynamic)
    for (int j = 0; j < b; j++) {
      bt_image im;
      st[j] = bt_dataset_image(d, idx[i0 + (size_t)j], &im);
      if (!st[j]) st[j] = bt_image_preprocess(&im, &pp, x + (size_t)j * per);
      bt_image_free(&im);
    }
    for (int j = 0; j < b; j++)
      if (st[j]) {
        /* again on this thread, for the message */
        bt_image im;
        bt_status e = bt_dataset_image(d, idx[i0 + (size_t)j], &im);
        if (!e) e = bt_image_preprocess(&im, &pp, x + (size_t)j * per);
        bt_image_free(&im);
        char why[512];
        snprintf(why, sizeof why, "%s", bt_last_error());
        rc = bt_fail(e ? e : BT_E_FORMAT, "image %zu: %s", idx[i0 + (size_t)j], why);
        goto out;
      }
    if ((rc = bt_vit_forward(m, x, b, pp.size, pp.size, r->pool, feats + i0 * D, NULL, threads))) goto out;
    rc = BT_E_ARG;
    if (r->progress && r->progress(r->user, i0 + (size_t)b, n)) {
      rc = bt_fail(BT_E_ARG, "cancelled");
      goto out;
    }
  }
  *feats_out = feats;
  *labels_out = labels;
  *n_out = n;
  *dim_out = D;
  if (classes_out) *classes_out = r->classes ? k : bt_dataset_num_classes(d);
  feats = NULL;
  labels = NULL;
  rc = BT_OK;
  goto out;
nomem:
  rc = bt_fail(BT_E_NOMEM, "out of memory");
out:
  free(st);
  free(x);
  free(feats);
  free(labels);
  free(idx);
  bt_dataset_free(d);
  bt_vit_free(m);
  return rc;
}


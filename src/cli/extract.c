/* `blindtuner extract`: the client's first step.  Runs the transformer over
 * a dataset in the clear and writes one feature vector per image (.npy,
 * float32, n x dim) and the labels (.npy, int64, n), ready to be encrypted.
 * Nothing here leaves the client. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blindtuner/vision.h"
#include "blindtuner/vision_data.h"
#include "cli/cli.h"

#define DEFAULT_MODEL "deit_fmnist05.safetensors"

static void help(void) {
  printf("usage: blindtuner extract --data SPEC --out PREFIX [options]\n"
         "\n"
         "Extracts transformer features of every image of a dataset and writes\n"
         "PREFIX.features.npy (float32, n x dim) and PREFIX.labels.npy (int64, n).\n"
         "\n"
         "  --data SPEC        the dataset:\n"
         "                       fashion-mnist[:train|:test]   Debian's dataset-fashion-mnist\n"
         "                       idx:IMAGES[,LABELS]          IDX files, gzip'd or not\n"
         "                       npz:FILE[:SPLIT]             MedMNIST-style .npz (split: train)\n"
         "                       folder:DIR                   one sub-folder per class\n"
         "  --model FILE       DeiT/ViT safetensors (default: $BT_MODEL, else the bundled\n"
         "                     models/" DEFAULT_MODEL ", pretrained on Fashion-MNIST 0-4)\n"
         "  --feature F        cls (default), dist, cls+dist or mean (of the patch tokens)\n"
         "  --classes LIST     keep only these labels (e.g. 5,6,7,8,9 or 5-9) and renumber\n"
         "                     them 0, 1, ... in the order given\n"
         "  --limit N          stop after N images (after --classes)\n"
         "  --size S           input resolution (default: the model's)\n"
         "  --crop-pct P, --mean A,B,C, --std A,B,C   override the preprocessing\n"
         "  --batch B          images per forward pass (default 64)\n"
         "  --threads N        threads (default: BT_THREADS or all cores)\n"
         "  --quiet            no progress lines\n");
}

static int parse_floats3(const char *s, float out[3]) {
  char *end;
  for (int i = 0; i < 3; i++) {
    out[i] = strtof(s, &end);
    if (end == s) return -1;
    s = end;
    if (i < 2 && *s++ != ',') return -1;
  }
  return *s ? -1 : 0;
}

/* "5,6,7" or "5-9" (or a mix) into map[label] = new label; returns the count or -1. */
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

static const char *default_model(char *buf, size_t n) {
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

int bt_cli_features(const bt_cli_features_req *r, const char *who, float **feats_out, int64_t **labels_out,
                    size_t *n_out, size_t *dim_out, int *classes_out) {
  int rc = 1, threads = r->threads ? r->threads : bt_default_threads(), batch = r->batch ? r->batch : 64;
  bt_vit *m = NULL;
  bt_dataset *d = NULL;
  size_t *idx = NULL;
  int64_t *labels = NULL;
  float *feats = NULL, *x = NULL;
  bt_status *st = NULL;
  int map[1024];
  char mbuf[PATH_MAX + 64];
  const char *model = r->model ? r->model : default_model(mbuf, sizeof mbuf);
  *feats_out = NULL;
  *labels_out = NULL;
  if (bt_vit_load(model, &m) != BT_OK || bt_dataset_open(r->data, &d) != BT_OK) {
    fprintf(stderr, "blindtuner %s: %s\n", who, bt_last_error());
    goto out;
  }
  const bt_vit_config *c = bt_vit_config_of(m);
  if ((r->pool == BT_VIT_POOL_DIST || r->pool == BT_VIT_POOL_CLS_DIST) && !c->distilled) {
    fprintf(stderr, "blindtuner %s: --feature %s needs a distilled model\n", who, bt_vit_pool_name(r->pool));
    goto out;
  }
  bt_preprocess pp;
  bt_preprocess_of(c, &pp);
  if (r->size) pp.size = r->size;
  if (r->crop > 0) pp.crop_pct = r->crop;
  if (r->have_mean) memcpy(pp.mean, r->mean, sizeof r->mean);
  if (r->have_std) memcpy(pp.std, r->std, sizeof r->std);
  if (pp.size % c->patch_size) {
    fprintf(stderr, "blindtuner %s: size %d is not a multiple of the patch size %d\n", who, pp.size, c->patch_size);
    goto out;
  }

  /* which images, and their labels */
  size_t total = bt_dataset_count(d), n = 0;
  int k = 0;
  if (r->classes && (k = parse_classes(r->classes, map, 1024)) <= 0) {
    fprintf(stderr, "blindtuner %s: bad --classes '%s'\n", who, r->classes);
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
      fprintf(stderr, "blindtuner %s: %zu images wanted, %s has %zu%s\n", who, r->sample, r->data, n,
              r->classes ? " of those classes" : "");
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
    fprintf(stderr, "blindtuner %s: no images selected\n", who);
    goto out;
  }
  const size_t D = (size_t)c->dim, per = (size_t)pp.channels * (size_t)pp.size * (size_t)pp.size;
  feats = malloc(n * D * sizeof *feats);
  x = malloc((size_t)batch * per * sizeof *x);
  st = malloc((size_t)batch * sizeof *st);
  if (!feats || !x || !st) goto nomem;
  if (!r->quiet)
    fprintf(stderr, "%s: %s, %zu images of %s (%d classes), %dx%d, feature %s, dim %zu, %d thread(s)\n", who,
            model, n, r->data, r->classes ? k : bt_dataset_num_classes(d), pp.size, pp.size,
            bt_vit_pool_name(r->pool), D, threads);
  int tty = isatty(2);
  double t0 = bt_seconds(), last = t0;
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
        fprintf(stderr, "blindtuner %s: image %zu: %s\n", who, idx[i0 + (size_t)j], bt_last_error());
        goto out;
      }
    if (bt_vit_forward(m, x, b, pp.size, pp.size, r->pool, feats + i0 * D, NULL, threads) != BT_OK) {
      fprintf(stderr, "blindtuner %s: %s\n", who, bt_last_error());
      goto out;
    }
    double now = bt_seconds();
    size_t done = i0 + (size_t)b;
    if (!r->quiet && (done == n || now - last > (tty ? 0.5 : 10.0))) {
      double rate = (double)done / (now - t0);
      fprintf(stderr, tty ? "\r%s: %zu/%zu images, %.1f images/s, ETA %.0f s   " : "%s: %zu/%zu images, %.1f images/s, ETA %.0f s\n",
              who, done, n, rate, (double)(n - done) / rate);
      last = now;
    }
  }
  if (!r->quiet && tty) fputc('\n', stderr);
  *feats_out = feats;
  *labels_out = labels;
  *n_out = n;
  *dim_out = D;
  if (classes_out) *classes_out = r->classes ? k : bt_dataset_num_classes(d);
  feats = NULL;
  labels = NULL;
  rc = 0;
  goto out;
nomem:
  fprintf(stderr, "blindtuner %s: out of memory\n", who);
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

int bt_cli_extract(int argc, char **argv) {
  const char *outp = NULL;
  bt_cli_features_req r = {.pool = BT_VIT_POOL_CLS, .crop = -1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      help();
      return 0;
    }
    if (!strcmp(a, "--quiet")) {
      r.quiet = 1;
      continue;
    }
    if (!v) {
      fprintf(stderr, "blindtuner extract: %s needs a value (or is unknown; see --help)\n", a);
      return 2;
    }
    i++;
    if (!strcmp(a, "--data")) r.data = v;
    else if (!strcmp(a, "--out")) outp = v;
    else if (!strcmp(a, "--model")) r.model = v;
    else if (!strcmp(a, "--classes")) r.classes = v;
    else if (!strcmp(a, "--feature")) {
      if (bt_vit_pool_parse(v, &r.pool) != BT_OK) {
        fprintf(stderr, "blindtuner extract: %s\n", bt_last_error());
        return 2;
      }
    } else if (!strcmp(a, "--limit")) {
      if ((r.limit = bt_cli_parse_int(a, v, 1, INT_MAX)) < 0) return 2;
    } else if (!strcmp(a, "--size")) {
      if ((r.size = bt_cli_parse_int(a, v, 1, 8192)) < 0) return 2;
    } else if (!strcmp(a, "--batch")) {
      if ((r.batch = bt_cli_parse_int(a, v, 1, 4096)) < 0) return 2;
    } else if (!strcmp(a, "--threads")) {
      if ((r.threads = bt_cli_parse_int(a, v, 1, 1024)) < 0) return 2;
    } else if (!strcmp(a, "--crop-pct")) {
      char *end;
      r.crop = strtof(v, &end);
      if (*end || !(r.crop > 0.05f && r.crop <= 1.0f)) {
        fprintf(stderr, "blindtuner extract: --crop-pct expects a number in (0.05, 1]\n");
        return 2;
      }
    } else if (!strcmp(a, "--mean") || !strcmp(a, "--std")) {
      int is_mean = a[2] == 'm';
      if (parse_floats3(v, is_mean ? r.mean : r.std) < 0) {
        fprintf(stderr, "blindtuner extract: %s expects three numbers A,B,C\n", a);
        return 2;
      }
      *(is_mean ? &r.have_mean : &r.have_std) = 1;
    } else {
      fprintf(stderr, "blindtuner extract: unknown option '%s' (see --help)\n", a);
      return 2;
    }
  }
  if (!r.data || !outp) {
    fprintf(stderr, "blindtuner extract: --data and --out are required (see --help)\n");
    return 2;
  }
  float *feats = NULL;
  int64_t *labels = NULL;
  size_t n = 0, D = 0;
  char path[PATH_MAX + 32];
  const double t0 = bt_seconds();
  int rc = bt_cli_features(&r, "extract", &feats, &labels, &n, &D, NULL);
  if (rc) return rc;
  rc = 1;
  int64_t fshape[2] = {(int64_t)n, (int64_t)D}, lshape[1] = {(int64_t)n};
  snprintf(path, sizeof path, "%s.features.npy", outp);
  if (bt_npy_write_f32(path, feats, 2, fshape) != BT_OK) {
    fprintf(stderr, "blindtuner extract: %s\n", bt_last_error());
    goto out;
  }
  snprintf(path, sizeof path, "%s.labels.npy", outp);
  if (bt_npy_write_i64(path, labels, 1, lshape) != BT_OK) {
    fprintf(stderr, "blindtuner extract: %s\n", bt_last_error());
    snprintf(path, sizeof path, "%s.features.npy", outp); /* no half-written pair */
    remove(path);
    goto out;
  }
  if (!r.quiet)
    fprintf(stderr, "extract: wrote %s.features.npy (%zu x %zu float32) and %s.labels.npy in %.1f s\n", outp, n, D,
            outp, bt_seconds() - t0);
  rc = 0;
out:
  free(feats);
  free(labels);
  return rc;
}

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
#include "cli.h"

#define DEFAULT_MODEL "deit_fmnist05.safetensors" /* for the help text */

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
static void info(void *user, const char *model, size_t images, int classes, int size, size_t dim, int threads) {
  const bt_cli_features_req *r = user;
  fprintf(stderr, "%s: %s, %zu images of %s (%d classes), %dx%d, feature %s, dim %zu, %d thread(s)\n", r->who, model,
          images, r->req.data, classes, size, size, bt_vit_pool_name(r->req.pool), dim, threads);
}

static int progress(void *user, size_t done, size_t total) {
  bt_cli_features_req *r = user;
  const double now = bt_seconds();
  if (done == total || now - r->last > (r->tty ? 0.5 : 10.0)) {
    const double rate = (double)done / (now - r->t0);
    fprintf(stderr, r->tty ? "\r%s: %zu/%zu images, %.1f images/s, ETA %.0f s   %s" : "%s: %zu/%zu images, %.1f images/s, ETA %.0f s\n%s",
            r->who, done, total, rate, (double)(total - done) / rate, r->tty && done == total ? "\n" : "");
    r->last = now;
  }
  return 0;
}

int bt_cli_features(bt_cli_features_req *r, float **feats, int64_t **labels, size_t *n, size_t *dim, int *classes) {
  r->t0 = r->last = bt_seconds();
  r->tty = isatty(2);
  r->req.user = r;
  if (!r->quiet) r->req.info = info, r->req.progress = progress;
  return bt_cli_failed(r->who, bt_features_extract(&r->req, feats, labels, n, dim, classes));
}

int bt_cli_extract(int argc, char **argv) {
  const char *outp = NULL, *pool = NULL;
  bt_cli_features_req r = {.who = "extract", .req = {.pool = BT_VIT_POOL_CLS, .crop = -1}};
  const char *mean = NULL, *sd = NULL;
  double crop = -1;
  const bt_cli_opt opts[] = {{"--data", BT_OPT_STR, &r.req.data, 0, 0},
                             {"--out", BT_OPT_STR, &outp, 0, 0},
                             {"--model", BT_OPT_STR, &r.req.model, 0, 0},
                             {"--classes", BT_OPT_STR, &r.req.classes, 0, 0},
                             {"--feature", BT_OPT_STR, &pool, 0, 0},
                             {"--limit", BT_OPT_INT, &r.req.limit, 1, INT_MAX},
                             {"--size", BT_OPT_INT, &r.req.size, 1, 8192},
                             {"--batch", BT_OPT_INT, &r.req.batch, 1, 4096},
                             {"--threads", BT_OPT_INT, &r.req.threads, 1, 1024},
                             {"--crop-pct", BT_OPT_DBL, &crop, 0.0501, 1},
                             {"--mean", BT_OPT_STR, &mean, 0, 0},
                             {"--std", BT_OPT_STR, &sd, 0, 0},
                             {"--quiet", BT_OPT_FLAG, &r.quiet, 0, 0},
                             {0}};
  const int parsed = bt_cli_parse("extract", argc, argv, opts, help);
  if (parsed) return parsed == 1 ? 0 : 2;
  if (pool && bt_vit_pool_parse(pool, &r.req.pool) != BT_OK) {
    fprintf(stderr, "blindtuner extract: %s\n", bt_last_error());
    return 2;
  }
  r.req.crop = (float)crop;
  if ((mean && parse_floats3(mean, r.req.mean) < 0) || (sd && parse_floats3(sd, r.req.std) < 0)) {
    fprintf(stderr, "blindtuner extract: --mean and --std expect three numbers A,B,C\n");
    return 2;
  }
  r.req.have_mean = mean != NULL, r.req.have_std = sd != NULL;
  if (!r.req.data || !outp) {
    fprintf(stderr, "blindtuner extract: --data and --out are required (see --help)\n");
    return 2;
  }
  float *feats = NULL;
  int64_t *labels = NULL;
  size_t n = 0, D = 0;
  char path[PATH_MAX + 32];
  const double t0 = bt_seconds();
  int rc = bt_cli_features(&r, &feats, &labels, &n, &D, NULL);
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

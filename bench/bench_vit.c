/* `blindtuner bench vit`: images per second of the DeiT/ViT forward pass on
 * the real code path (bt_vit_forward, features of the CLS and distillation
 * tokens), by default on a deit_base_distilled_patch16_224-shaped model with
 * random weights made here.  tools/bench_vit_torch.py times PyTorch on the
 * same shape, threads and batch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "blindtuner/vision.h"
#include "bench.h"

static void help(void) {
  printf("usage: blindtuner bench vit [--model FILE | --arch NAME] [--threads N] [--batch B]\n"
         "                             [--runs R] [--size S] [--json]\n"
         "\n"
         "Times the transformer's forward pass on random S x S images (default 224) and\n"
         "prints the median images per second over R runs (default 3) of a batch of B\n"
         "images (default 8), after one warm-up batch.  Without --model the weights are\n"
         "random, in the shape of --arch (default deit_base_distilled_patch16_224).\n"
         "--json prints {\"model\", \"image_size\", \"threads\", \"batch\", \"runs\",\n"
         "\"parameters\", \"seconds_per_batch\", \"images_per_s\"}.\n");
}

int bt_bench_vit(int argc, char **argv) {
  const char *model = NULL, *arch = "deit_base_distilled_patch16_224";
  int threads = 0, batch = 8, runs = 3, size = 224, json = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      help();
      return 0;
    } else if (!strcmp(a, "--model") && v) {
      model = argv[++i];
    } else if (!strcmp(a, "--arch") && v) {
      arch = argv[++i];
    } else if (!strcmp(a, "--threads")) {
      if ((threads = bt_bench_parse_int(a, v, 1, 1024)) < 0) return 2;
      i++;
    } else if (!strcmp(a, "--batch")) {
      if ((batch = bt_bench_parse_int(a, v, 1, 4096)) < 0) return 2;
      i++;
    } else if (!strcmp(a, "--runs")) {
      if ((runs = bt_bench_parse_int(a, v, 1, 1000)) < 0) return 2;
      i++;
    } else if (!strcmp(a, "--size")) {
      if ((size = bt_bench_parse_int(a, v, 1, 4096)) < 0) return 2;
      i++;
    } else if (!strcmp(a, "--json")) {
      json = 1;
    } else {
      fprintf(stderr, "blindtuner bench vit: unknown or incomplete option '%s'\n", a);
      return 2;
    }
  }
  if (!threads) threads = bt_default_threads();

  bt_vit *m = NULL;
  bt_status r;
  if (model) {
    r = bt_vit_load(model, &m);
  } else {
    bt_vit_config c;
    uint8_t seed[BT_SEED_BYTES] = {0x42};
    r = bt_vit_config_preset(arch, &c);
    if (!r) r = bt_vit_new_random(&c, seed, &m);
  }
  if (r) {
    fprintf(stderr, "blindtuner bench vit: %s\n", bt_last_error());
    return 1;
  }
  const bt_vit_config *c = bt_vit_config_of(m);
  if (size % c->patch_size) {
    fprintf(stderr, "blindtuner bench vit: --size %d is not a multiple of the patch size %d\n", size, c->patch_size);
    bt_vit_free(m);
    return 2;
  }
  size_t per = (size_t)c->in_chans * (size_t)size * (size_t)size;
  float *x = malloc((size_t)batch * per * sizeof *x);
  float *f = malloc((size_t)batch * (size_t)c->dim * sizeof *f);
  double *t = malloc((size_t)runs * sizeof *t);
  int rc = 1;
  if (!x || !f || !t) {
    fprintf(stderr, "blindtuner bench vit: out of memory\n");
    goto out;
  }
  bt_prng g;
  uint8_t seed[BT_SEED_BYTES] = {0x17};
  bt_prng_init(&g, seed);
  for (size_t i = 0; i < (size_t)batch * per; i++) x[i] = (float)(bt_prng_u64(&g) >> 40) / 8388608.0f - 1.0f;
  bt_vit_pool pool = c->distilled ? BT_VIT_POOL_CLS_DIST : BT_VIT_POOL_CLS;
  if (!json)
    printf("bench vit: %s, %zu parameters, %d x %d, batch %d, %d thread(s), %d run(s)\n", model ? model : arch,
           bt_vit_param_count(m), size, size, batch, threads, runs);
  for (int k = -1; k < runs; k++) {  /* k = -1: warm-up */
    double t0 = bt_seconds();
    if ((r = bt_vit_forward(m, x, batch, size, size, pool, f, NULL, threads))) {
      fprintf(stderr, "blindtuner bench vit: %s\n", bt_last_error());
      goto out;
    }
    if (k >= 0) t[k] = bt_seconds() - t0;
    if (k >= 0 && !json) printf("  run %d: %.3f s, %.2f images/s\n", k + 1, t[k], batch / t[k]);
  }
  double med = bt_bench_median(t, runs);
  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "model", json_object_new_string(model ? model : arch));
    json_object_object_add(o, "image_size", json_object_new_int(size));
    json_object_object_add(o, "threads", json_object_new_int(threads));
    json_object_object_add(o, "batch", json_object_new_int(batch));
    json_object_object_add(o, "runs", json_object_new_int(runs));
    json_object_object_add(o, "parameters", json_object_new_int64((int64_t)bt_vit_param_count(m)));
    json_object_object_add(o, "seconds_per_batch", json_object_new_double(med));
    json_object_object_add(o, "images_per_s", json_object_new_double(batch / med));
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else {
    printf("median: %.3f s per batch, %.2f images/s\n", med, batch / med);
  }
  rc = 0;
out:
  free(x);
  free(f);
  free(t);
  bt_vit_free(m);
  return rc;
}

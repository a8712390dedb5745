/* `blindtuner bench`: which benchmark to run. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

int bt_bench_main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    printf("usage: blindtuner bench <what> [options]\n\n"
           "  ckks      CKKS engine operations at N = 2^16 (blindtuner bench ckks --help)\n"
           "  bootstrap full-slot bootstrapping: time, precision (blindtuner bench bootstrap --help)\n"
           "  hemat     encrypted matrix products of a training step (blindtuner bench hemat --help)\n"
           "  train     encrypted training steps: time split, bootstraps (blindtuner bench train --help)\n"
           "  vit       DeiT/ViT feature extraction, images/s (blindtuner bench vit --help)\n"
           "  serve     the service under load: status latency, uploads, training slowdown\n");
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "ckks")) return bt_bench_ckks(argc - 1, argv + 1);
  if (!strcmp(argv[1], "vit")) return bt_bench_vit(argc - 1, argv + 1);
  if (!strcmp(argv[1], "bootstrap")) return bt_bench_bootstrap(argc - 1, argv + 1);
  if (!strcmp(argv[1], "hemat")) return bt_bench_hemat(argc - 1, argv + 1);
  if (!strcmp(argv[1], "train")) return bt_bench_train(argc - 1, argv + 1);
  if (!strcmp(argv[1], "serve")) return bt_bench_serve(argc - 1, argv + 1);
  fprintf(stderr, "blindtuner bench: unknown benchmark '%s'\n", argv[1]);
  return 2;
}

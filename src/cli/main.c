/* blindtuner: the command-line front end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blindtuner/status.h"
#include "blindtuner/util.h"
#include "bench.h"
#include "blindtuner/dist.h"
#include "cli.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: blindtuner <command> [options]\n"
          "\n"
          "Privacy-preserving fine-tuning with CKKS homomorphic encryption.\n"
          "\n"
          "commands:\n"
          "  demo               the whole pipeline on Fashion-MNIST 5-9: features, encryption,\n"
          "                     encrypted training with bootstrapping, decryption, accuracy\n"

          "\n"
          "client (holds the secret key and the plaintext data):\n"
          "  extract            transformer features of a dataset, as .npy\n"
          "  keygen             a key set: secret bundle (stays here) and evaluation bundle (server)\n"
          "  encrypt            features and labels -> an encrypted training, validation or test set\n"
          "  decide             decrypt the server's validation losses, answer continue or stop\n"
          "  decrypt            an encrypted model -> a plaintext head; encrypted logits -> .npy\n"
          "  evaluate           accuracy and loss of a decrypted model on labelled features\n"
          "  predict            labels and probabilities of features with a decrypted model\n"
          "  report             a training run's losses, accuracy and time per epoch (JSON + HTML)\n"
#ifdef BT_REMOTE
          "  remote             a training service's client: submit a job, watch it, answer its\n"
          "                     losses, fetch models (see 'blindtuner remote --help')\n"
#endif
          "server (evaluation keys and ciphertexts only):\n"
          "  train              encrypted training with bootstrapping, checkpoints, early stopping\n"
          "  infer              encrypted logits of an encrypted dataset under an encrypted model\n"
#ifdef BT_SERVICE
          "  serve              the training service over HTTP: jobs, uploads, queue (docs/API.md)\n"
#endif
          "either:\n"
          "  inspect            what a file holds (kind, key set, layout), without secrets\n"
          "  bench ckks         time the CKKS engine at N = 2^16 (see 'blindtuner bench --help')\n"
          "  help               this text\n"
          "\n"
          "Run 'blindtuner <command> --help' for a command's options.\n"
          "Environment: BT_THREADS sets the default number of threads.\n");
}

int main(int argc, char **argv) {
  if (bt_init() != BT_OK) {
    fprintf(stderr, "blindtuner: %s\n", bt_last_error());
    return 1;
  }
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version")) {
    printf("blindtuner %s\n", BT_VERSION);
    return 0;
  }
  /* under mpirun with several ranks, K copies of any other command would
   * each do the whole job (and write the same files) */
  if (bt_dist_launcher_size() != 0 && bt_dist_launcher_size() != 1 && strcmp(cmd, "train") && strcmp(cmd, "infer") &&
      !(!strcmp(cmd, "bench") && argc > 2 && !strcmp(argv[2], "train"))) {
    fprintf(stderr, "blindtuner %s: started by an MPI launcher; only train, infer and bench train run on ranks\n", cmd);
    return 2;
  }
  if (!strcmp(cmd, "bench")) return bt_bench_main(argc - 1, argv + 1);
#ifdef BT_SERVICE
  if (!strcmp(cmd, "serve")) return bt_cli_serve(argc - 1, argv + 1);
#endif
  /* client: holds the secret key or decrypted data, so never dumps core */
  static const struct {
    const char *name;
    int (*run)(int, char **);
    int client;
  } cmds[] = {{"keygen", bt_cli_keygen, 1},   {"encrypt", bt_cli_encrypt, 1}, {"train", bt_cli_train, 0},
              {"decide", bt_cli_decide, 1},   {"decrypt", bt_cli_decrypt, 1}, {"evaluate", bt_cli_evaluate, 1},
              {"predict", bt_cli_predict, 1}, {"infer", bt_cli_infer, 0},     {"inspect", bt_cli_inspect, 1},
              {"report", bt_cli_report, 1},   {"extract", bt_cli_extract, 1}, {"demo", bt_cli_demo, 1},
#ifdef BT_REMOTE
              /* client: watch and decide hold the secret key */
              {"remote", bt_cli_remote, 1},
#endif
  };
  for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
    if (!strcmp(cmd, cmds[i].name))
      return cmds[i].client && bt_cli_failed(cmd, bt_disable_core_dumps()) ? 1 : cmds[i].run(argc - 1, argv + 1);
  fprintf(stderr, "blindtuner: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}

/* `blindtuner serve`: the server role as an HTTP service (docs/API.md). */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#ifdef BT_SERVICE
#include "blindtuner/service.h"

static void serve_help(void) {
  printf("usage: blindtuner serve --listen ADDR:PORT --data DIR [options]\n"
         "\n"
         "Server.  The training service: clients create jobs, upload an evaluation bundle\n"
         "and encrypted datasets, start training, answer each epoch's encrypted loss with\n"
         "one bit and fetch encrypted models (`blindtuner remote`; docs/API.md).  Each\n"
         "training or inference runs as a child process (`blindtuner train` / `infer`) in\n"
         "the job's directory.  Runs until SIGINT or SIGTERM; a job that was training\n"
         "resumes from its checkpoint when the service starts again on the same --data.\n"
         "\n"
         "  --listen ADDR:PORT  an IPv4 address or localhost, and a port (0: any free one)\n"
         "  --data DIR          jobs.db (SQLite) and one directory per job\n"
         "  --workers N         trainings or inferences at once (default 1)\n"
         "  --memory-gib G      memory budget for them (default: physical memory less 2 GiB)\n"
         "  --threads N         threads per training (default: all cores / workers)\n"
         "  --answer-grace S    seconds a training keeps its keys loaded waiting for the\n"
         "                      client's answer before it lets its worker go (default 30)\n"
         "  --launcher CMD      a command put in front of each child (e.g. \"mpirun -np 2\"),\n"
         "                      split at spaces\n"
         "  --tls-cert FILE     HTTPS only, with this PEM certificate (chain) ...\n"
         "  --tls-key FILE      ... and its PEM private key (libmicrohttpd's GnuTLS)\n"
         "  --allow-insecure    accept key sets of INSECURE test parameters (tests only)\n"
         "  --quiet             no request log on stderr\n");
}

int bt_cli_serve(int argc, char **argv) {
  const char *who = "serve", *listen = NULL, *data = NULL, *launcher = NULL, *cert = NULL, *key = NULL;
  int workers = 1, threads = 0, grace = 30, insecure = 0, quiet = 0;
  double mem = 0;
  const bt_cli_opt opts[] = {{"--listen", BT_OPT_STR, &listen, 0, 0},
                             {"--data", BT_OPT_STR, &data, 0, 0},
                             {"--workers", BT_OPT_INT, &workers, 1, 64},
                             {"--memory-gib", BT_OPT_DBL, &mem, 0.01, 1e6},
                             {"--threads", BT_OPT_INT, &threads, 1, 1024},
                             {"--answer-grace", BT_OPT_INT, &grace, 0, 86400},
                             {"--launcher", BT_OPT_STR, &launcher, 0, 0},
                             {"--tls-cert", BT_OPT_STR, &cert, 0, 0},
                             {"--tls-key", BT_OPT_STR, &key, 0, 0},
                             {"--allow-insecure", BT_OPT_FLAG, &insecure, 0, 0},
                             {"--quiet", BT_OPT_FLAG, &quiet, 0, 0},
                             {0}};
  int r = bt_cli_parse(who, argc, argv, opts, serve_help);
  if (r) return r == 1 ? 0 : 2;
  if (bt_cli_need(who, "--listen", listen) || bt_cli_need(who, "--data", data)) return 2;
  /* the trainer: this very program, behind the launcher's words */
  char self[PATH_MAX], *words = launcher ? strdup(launcher) : NULL;
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    fprintf(stderr, "blindtuner serve: cannot find this program's path (/proc/self/exe)\n");
    free(words);
    return 1;
  }
  self[n] = 0;
  const char *trainer[33];
  int nt = 0;
  for (char *save = NULL, *w = words ? strtok_r(words, " ", &save) : NULL; w && nt < 31; w = strtok_r(NULL, " ", &save))
    trainer[nt++] = w;
  trainer[nt++] = self;
  trainer[nt] = NULL;

  bt_service_options o;
  bt_service_options_init(&o);
  o.listen = listen, o.data_dir = data, o.trainer = trainer, o.tls_cert = cert, o.tls_key = key;
  o.workers = workers, o.memory_gib = mem, o.threads = threads, o.answer_grace_s = grace;
  o.allow_insecure = insecure, o.log_requests = !quiet;
  /* the signals are waited for here: every thread the service starts
   * inherits the mask */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  bt_service *s = NULL;
  if (bt_cli_failed(who, bt_service_start(&o, &s))) {
    free(words);
    return 1;
  }
  printf("serve: listening on %s://%.*s:%d, data in %s, %d worker%s, memory budget %.1f GiB\n", cert ? "https" : "http",
         (int)(strrchr(listen, ':') - listen), listen, bt_service_port(s), data, workers,
         workers > 1 ? "s" : "", bt_service_budget_bytes(s) / 1073741824.0);
  fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  fprintf(stderr, "serve: %s: stopping (running jobs resume on the next start)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  bt_service_stop(s);
  free(words);
  return 0;
}
#endif

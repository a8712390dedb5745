/* `blindtuner bench serve`: the service under load.  One job trains on an
 * idle service (the baseline), then the same job again while C clients poll
 * its status and U clients upload evaluation bundles to jobs of their own:
 * status latency (median, 99th percentile), aggregate upload throughput,
 * and how much longer the training took (--runs pairs, alternated).  Everything
 * goes over loopback HTTP to a `blindtuner serve` started in this process,
 * whose trainings run as children of this program, as in production. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#include <json-c/json.h>
#include <sodium.h>

#include "bench.h"
#include "blindtuner/util.h"

#if defined(BT_SERVICE) && defined(BT_REMOTE)
#include <curl/curl.h>

#include "blindtuner/service.h"

typedef struct grow {
  char *b;
  size_t n;
} grow;

static size_t on_body(char *p, size_t size, size_t n, void *user) {
  grow *g = user;
  char *nb = realloc(g->b, g->n + size * n + 1);
  if (!nb) return 0;
  memcpy(nb + g->n, p, size * n);
  g->b = nb, g->n += size * n;
  g->b[g->n] = 0;
  return size * n;
}

typedef struct client {
  CURL *h;
  char base[128], auth[128], id[64];
} client;

/* One request: the body (malloc'd, NUL-terminated) and the status; up
 * (may be NULL) is a file to PUT. */
static long request(client *c, const char *method, const char *path, const char *json, FILE *up, long long up_len,
                    char **body) {
  char url[512];
  snprintf(url, sizeof url, "%s%s", c->base, path);
  grow g = {0};
  struct curl_slist *hd = NULL;
  if (c->auth[0]) hd = curl_slist_append(hd, c->auth);
  curl_easy_reset(c->h);
  curl_easy_setopt(c->h, CURLOPT_URL, url);
  curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &g);
  curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
  if (json) {
    hd = curl_slist_append(hd, "Content-Type: application/json");
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, json);
  }
  if (up) {
    curl_easy_setopt(c->h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c->h, CURLOPT_READDATA, up);
    curl_easy_setopt(c->h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)up_len);
  }
  curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, hd);
  long code = 0;
  if (curl_easy_perform(c->h) == CURLE_OK) curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(hd);
  if (body) *body = g.b ? g.b : strdup("");
  else free(g.b);
  return code;
}

static int new_job(client *c) {
  char *body = NULL;
  c->auth[0] = 0;
  const long code = request(c, "POST", "/v1/jobs", NULL, NULL, 0, &body);
  json_object *o = code == 201 ? json_tokener_parse(body) : NULL, *v;
  free(body);
  if (!o) return -1;
  if (json_object_object_get_ex(o, "id", &v)) snprintf(c->id, sizeof c->id, "%s", json_object_get_string(v));
  if (json_object_object_get_ex(o, "token", &v))
    snprintf(c->auth, sizeof c->auth, "Authorization: Bearer %s", json_object_get_string(v));
  json_object_put(o);
  return 0;
}

/* PUT the whole file, then complete it; seconds spent in the PUT in *put_s. */
static int upload(client *c, const char *name, const char *file, const char *hash_hex, double *put_s) {
  FILE *f = fopen(file, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  const long long len = ftell(f);
  rewind(f);
  char path[256], json[256];
  snprintf(path, sizeof path, "/v1/jobs/%s/files/%s?offset=0", c->id, name);
  const double t0 = bt_seconds();
  long code = request(c, "PUT", path, NULL, f, len, NULL);
  if (put_s) *put_s = bt_seconds() - t0;
  fclose(f);
  if (code != 200) return -1;
  snprintf(path, sizeof path, "/v1/jobs/%s/files/%s/complete", c->id, name);
  snprintf(json, sizeof json, "{\"size\": %lld, \"blake2b\": \"%s\"}", len, hash_hex);
  code = request(c, "POST", path, json, NULL, 0, NULL);
  return code == 200 ? 0 : -1;
}

static int file_hash(const char *file, char hex[65]) {
  FILE *f = fopen(file, "rb");
  if (!f) return -1;
  crypto_generichash_state h;
  crypto_generichash_init(&h, NULL, 0, 32);
  static unsigned char buf[1 << 20];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) crypto_generichash_update(&h, buf, n);
  fclose(f);
  unsigned char out[32];
  crypto_generichash_final(&h, out, sizeof out);
  sodium_bin2hex(hex, 65, out, sizeof out);
  return 0;
}

/* Starts a training of the job and waits for it: wall seconds. */
static double train(client *c, int epochs) {
  char path[256], json[64], *body = NULL;
  snprintf(path, sizeof path, "/v1/jobs/%s/start", c->id);
  snprintf(json, sizeof json, "{\"epochs\": %d}", epochs);
  const double t0 = bt_seconds();
  if (request(c, "POST", path, json, NULL, 0, NULL) != 202) return -1;
  snprintf(path, sizeof path, "/v1/jobs/%s", c->id);
  for (;;) {
    usleep(200 * 1000);
    if (request(c, "GET", path, NULL, NULL, 0, &body) != 200) {
      free(body);
      return -1;
    }
    const int done = strstr(body, "\"state\":\"done\"") != NULL, failed = strstr(body, "\"state\":\"failed\"") != NULL;
    free(body);
    if (done) return bt_seconds() - t0;
    if (failed) return -1;
  }
}

typedef struct load {
  const char *base, *eval, *eval_hash, *job_auth, *job_id;
  volatile int stop;
  int interval_ms;   /* between a poller's requests */
  int uploader_nice; /* the uploading clients' nice value */
  pthread_mutex_t mu;
  double *lat;
  size_t nlat, cap;
  double up_bytes;
} load;

static void *poller(void *arg) {
  load *l = arg;
  client c = {.h = curl_easy_init()};
  snprintf(c.base, sizeof c.base, "%s", l->base);
  snprintf(c.auth, sizeof c.auth, "%s", l->job_auth);
  char path[128];
  snprintf(path, sizeof path, "/v1/jobs/%s", l->job_id);
  while (!l->stop) {
    if (l->interval_ms) usleep((useconds_t)l->interval_ms * 1000);
    const double t0 = bt_seconds();
    const long code = request(&c, "GET", path, NULL, NULL, 0, NULL);
    const double ms = (bt_seconds() - t0) * 1e3;
    if (code != 200) continue;
    pthread_mutex_lock(&l->mu);
    if (l->nlat == l->cap) {
      l->cap = l->cap ? 2 * l->cap : 4096;
      double *nl = realloc(l->lat, l->cap * sizeof *nl);
      if (nl) l->lat = nl;
      else l->cap = l->nlat;
    }
    if (l->nlat < l->cap) l->lat[l->nlat++] = ms;
    pthread_mutex_unlock(&l->mu);
  }
  curl_easy_cleanup(c.h);
  return NULL;
}

static void *uploader(void *arg) {
  load *l = arg;
#if defined(__linux__)
  if (l->uploader_nice) (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), l->uploader_nice);
#endif
  client c = {.h = curl_easy_init()};
  snprintf(c.base, sizeof c.base, "%s", l->base);
  while (!l->stop) {
    double put_s = 0;
    if (new_job(&c) || upload(&c, "eval", l->eval, l->eval_hash, &put_s)) break;
    FILE *f = fopen(l->eval, "rb");
    fseek(f, 0, SEEK_END);
    const double bytes = (double)ftell(f);
    fclose(f);
    pthread_mutex_lock(&l->mu);
    l->up_bytes += bytes;
    pthread_mutex_unlock(&l->mu);
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s", c.id);
    request(&c, "DELETE", path, NULL, NULL, 0, NULL);
  }
  curl_easy_cleanup(c.h);
  return NULL;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void help(void) {
  printf("usage: blindtuner bench serve --keys EVAL --train FILE [options]\n"
         "\n"
         "The service under load, over loopback HTTP to a `serve` started here: one job trains\n"
         "on the idle service, then again while --clients poll its status and --uploaders\n"
         "upload EVAL to jobs of their own.  Prints status latency (median, 99th percentile),\n"
         "aggregate upload MB/s and the training's slowdown.\n"
         "\n"
         "  --keys FILE      an evaluation bundle (keygen --eval)\n"
         "  --train FILE     an encrypted training set of that key set\n"
         "  --epochs E       epochs per training (default 1)\n"
         "  --clients C      status pollers (default 50)\n"
         "  --interval-ms M  each poller's pause between requests (default 100; 0: none)\n"
         "  --uploaders U    uploaders (default 5)\n"
         "  --threads N      threads of the training (default all cores)\n"
         "  --runs R         idle and loaded trainings, alternated (default 1; medians)\n"
         "  --uploader-nice N  nice value of the uploading clients' threads (default 0;\n"
         "                   19 stands for clients on other machines)\n"
         "  --allow-insecure accept INSECURE test parameters\n"
         "  --json           print the result as JSON\n");
}

int bt_bench_serve(int argc, char **argv) {
  const char *keys = NULL, *trainp = NULL;
  int epochs = 1, clients = 50, uploaders = 5, threads = 0, json = 0, insecure = 0, interval = 100, runs = 1, unice = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help")) return help(), 0;
    if (!strcmp(a, "--json")) json = 1;
    else if (!strcmp(a, "--allow-insecure")) insecure = 1;
    else if (!v) return fprintf(stderr, "bench serve: %s needs a value\n", a), 2;
    else if (!strcmp(a, "--keys")) keys = v, i++;
    else if (!strcmp(a, "--train")) trainp = v, i++;
    else if (!strcmp(a, "--epochs") && (epochs = bt_bench_parse_int(a, v, 1, 100)) > 0) i++;
    else if (!strcmp(a, "--clients") && (clients = bt_bench_parse_int(a, v, 0, 1000)) >= 0) i++;
    else if (!strcmp(a, "--uploaders") && (uploaders = bt_bench_parse_int(a, v, 0, 100)) >= 0) i++;
    else if (!strcmp(a, "--threads") && (threads = bt_bench_parse_int(a, v, 1, 1024)) > 0) i++;
    else if (!strcmp(a, "--interval-ms") && (interval = bt_bench_parse_int(a, v, 0, 60000)) >= 0) i++;
    else if (!strcmp(a, "--runs") && (runs = bt_bench_parse_int(a, v, 1, 100)) > 0) i++;
    else if (!strcmp(a, "--uploader-nice") && (unice = bt_bench_parse_int(a, v, 0, 19)) >= 0) i++;
    else return fprintf(stderr, "bench serve: bad option '%s' (see --help)\n", a), 2;
  }
  if (!keys || !trainp) return fprintf(stderr, "bench serve: --keys and --train are required\n"), 2;
  char self[4096], data[] = "/tmp/bt-bench-serve-XXXXXX";
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0 || !mkdtemp(data)) return fprintf(stderr, "bench serve: cannot set up\n"), 1;
  self[n] = 0;
  const char *trainer[] = {self, NULL};
  bt_service_options o;
  bt_service_options_init(&o);
  o.listen = "127.0.0.1:0", o.data_dir = data, o.trainer = trainer, o.threads = threads;
  o.allow_insecure = insecure, o.log_requests = 0;
  curl_global_init(CURL_GLOBAL_ALL);
  bt_service *s = NULL;
  if (bt_service_start(&o, &s)) return fprintf(stderr, "bench serve: %s\n", bt_last_error()), 1;
  char eval_hash[65], train_hash[65];
  int rc = 1;
  load l = {.eval = keys, .eval_hash = eval_hash, .interval_ms = interval, .uploader_nice = unice};
  pthread_mutex_init(&l.mu, NULL);
  char base[64];
  snprintf(base, sizeof base, "http://127.0.0.1:%d", bt_service_port(s));
  l.base = base;
  if (file_hash(keys, eval_hash) || file_hash(trainp, train_hash)) {
    fprintf(stderr, "bench serve: cannot read %s or %s\n", keys, trainp);
    goto out;
  }
  /* idle and loaded trainings alternate, each on a new job, so that drift
   * of the machine shows in both; the slowdown is the median of the pairs'
   * ratios */
  double *idle = calloc((size_t)runs, sizeof *idle), *loaded = calloc((size_t)runs, sizeof *loaded);
  double *ratio = calloc((size_t)runs, sizeof *ratio), *mbs = calloc((size_t)runs, sizeof *mbs);
  if (!idle || !loaded || !ratio || !mbs) goto pairs_out;
  for (int run = 0; run < runs; run++) {
    client a = {.h = curl_easy_init()}, b = {.h = curl_easy_init()};
    snprintf(a.base, sizeof a.base, "%s", l.base);
    snprintf(b.base, sizeof b.base, "%s", l.base);
    int ok = 0;
    fprintf(stderr, "bench serve: run %d of %d: idle training\n", run + 1, runs);
    if (new_job(&a) || upload(&a, "eval", keys, eval_hash, NULL) || upload(&a, "train", trainp, train_hash, NULL) ||
        (idle[run] = train(&a, epochs)) < 0 || new_job(&b) || upload(&b, "eval", keys, eval_hash, NULL) ||
        upload(&b, "train", trainp, train_hash, NULL)) {
      fprintf(stderr, "bench serve: the idle run failed or uploads were refused\n");
    } else {
      fprintf(stderr, "bench serve: idle %.1f s; loaded: %d pollers, %d uploaders\n", idle[run], clients, uploaders);
      l.job_auth = b.auth, l.job_id = b.id, l.stop = 0, l.up_bytes = 0;
      pthread_t *t = calloc((size_t)(clients + uploaders), sizeof *t);
      int started = 0;
      for (int i = 0; t && i < clients + uploaders; i++)
        started += pthread_create(&t[started], NULL, i < clients ? poller : uploader, &l) == 0;
      const double t_up = bt_seconds();
      loaded[run] = train(&b, epochs);
      const double up_wall = bt_seconds() - t_up;
      l.stop = 1;
      for (int i = 0; i < started; i++) pthread_join(t[i], NULL);
      free(t);
      mbs[run] = l.up_bytes / 1e6 / up_wall;
      ratio[run] = loaded[run] / idle[run];
      ok = loaded[run] > 0;
      if (!ok) fprintf(stderr, "bench serve: the loaded run failed\n");
    }
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%s", a.id);
    if (a.auth[0]) request(&a, "DELETE", path, NULL, NULL, 0, NULL);
    snprintf(path, sizeof path, "/v1/jobs/%s", b.id);
    if (b.auth[0]) request(&b, "DELETE", path, NULL, NULL, 0, NULL);
    curl_easy_cleanup(a.h);
    curl_easy_cleanup(b.h);
    if (!ok) goto pairs_out;
  }
  if (!l.nlat) {
    fprintf(stderr, "bench serve: no status request succeeded\n");
    goto pairs_out;
  }
  qsort(l.lat, l.nlat, sizeof *l.lat, cmp_double);
  const double p50 = l.lat[l.nlat / 2], p99 = l.lat[(size_t)floor(0.99 * (double)(l.nlat - 1))];
  const double idle_m = median(idle, runs), loaded_m = median(loaded, runs), mbs_m = median(mbs, runs);
  const double slow = median(ratio, runs) - 1;
  if (json)
    printf("{\"clients\": %d, \"interval_ms\": %d, \"uploaders\": %d, \"uploader_nice\": %d, \"runs\": %d, "
           "\"status_requests\": %zu, \"status_p50_ms\": %.2f, \"status_p99_ms\": %.2f, \"upload_mb_s\": %.1f, "
           "\"idle_s\": %.2f, \"loaded_s\": %.2f, \"train_slowdown\": %.4f}\n",
           clients, interval, uploaders, l.uploader_nice, runs, l.nlat, p50, p99, mbs_m, idle_m, loaded_m, slow);
  else
    printf("bench serve: %d run%s, %zu status requests: p50 %.2f ms, p99 %.2f ms; uploads %.1f MB/s; training "
           "%.1f s idle, %.1f s loaded (%+.1f %%; medians)\n",
           runs, runs > 1 ? "s" : "", l.nlat, p50, p99, mbs_m, idle_m, loaded_m, 100 * slow);
  rc = 0;
pairs_out:
  free(idle), free(loaded), free(ratio), free(mbs);
out:
  free(l.lat);
  bt_service_stop(s);
  if (nftw(data, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) fprintf(stderr, "bench serve: cannot remove %s\n", data);
  curl_global_cleanup();
  return rc;
}
#else
int bt_bench_serve(int argc, char **argv) {
  (void)argc, (void)argv;
  fprintf(stderr, "bench serve: this build has no service (libmicrohttpd, SQLite, libcurl)\n");
  return 1;
}
#endif

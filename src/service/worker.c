/* The scheduler: worker threads take queued tasks (a training or an
 * inference) in FIFO order while their memory estimates fit what the
 * budget leaves, and run each as a child process of the trainer command in
 * the job's directory, the `train` command's file protocol and all.  The
 * child's exit says what happened: 0 finished, 3 waiting for the client's
 * answer, anything else failed (its log's last line is the job's error). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif

#include "service/internal.h"

#define EXIT_WAITING 3 /* train: stopped to wait for the client's answer */
#define MAX_ARGS 64

double svc_task_estimate(const svc_job *j, int infer) {
  uint64_t data = infer ? j->up[SVC_TEST].size : j->up[SVC_TRAIN].size + j->up[SVC_VAL].size;
  return bt_service_memory_estimate(j->up[SVC_EVAL].size, data);
}

void svc_queue(bt_service *s, svc_job *j) {
  j->state = SVC_QUEUED;
  j->queue_seq = s->next_seq++;
  pthread_cond_broadcast(&s->cv);
}

/* The head of the queue (lowest sequence number, no child running), or NULL. */
static svc_job *queue_head(bt_service *s, int *infer) {
  svc_job *best = NULL;
  for (svc_job *j = s->jobs; j; j = j->next) {
    if (j->child || j->deleted) continue;
    if (j->state != SVC_QUEUED && j->infer != SVC_INFER_QUEUED) continue;
    if (!best || j->queue_seq < best->queue_seq) best = j;
  }
  if (best) *infer = best->state != SVC_QUEUED;
  return best;
}

/* argv for the child: the trainer prefix, then the command and its options. */
static int build_argv(const bt_service *s, const svc_job *j, int infer, char *store, size_t cap, char **argv) {
  int n = 0;
  size_t used = 0;
  for (int i = 0; i < s->ntrainer && n < MAX_ARGS - 1; i++) argv[n++] = s->trainer[i];
#define ARG(...)                                                              \
  do {                                                                        \
    int w_ = snprintf(store + used, cap - used, __VA_ARGS__);                 \
    if (w_ < 0 || (size_t)w_ >= cap - used || n >= MAX_ARGS - 1) return -1;  \
    argv[n++] = store + used;                                                 \
    used += (size_t)w_ + 1;                                                   \
  } while (0)
  char path[SVC_PATH], work[SVC_PATH];
  if (svc_upload_path(s, j->id, SVC_EVAL, 0, path) || svc_job_path(s, j->id, "work", work)) return -1;
  ARG("%s", infer ? "infer" : "train");
  ARG("--keys");
  ARG("%s", path);
  if (infer) {
    char model[SVC_PATH], out[SVC_PATH];
    if (bt_pipeline_path(model, sizeof model, work, "model", j->infer_epoch) ||
        bt_pipeline_path(out, sizeof out, work, "logits", j->infer_epoch) ||
        svc_upload_path(s, j->id, SVC_TEST, 0, path))
      return -1;
    ARG("--model");
    ARG("%s", model);
    ARG("--data");
    ARG("%s", path);
    ARG("--out");
    ARG("%s", out);
  } else {
    if (svc_upload_path(s, j->id, SVC_TRAIN, 0, path)) return -1;
    ARG("--train");
    ARG("%s", path);
    if (j->up[SVC_VAL].complete) {
      if (svc_upload_path(s, j->id, SVC_VAL, 0, path)) return -1;
      ARG("--val");
      ARG("%s", path);
    }
    ARG("--workdir");
    ARG("%s", work);
    ARG("--epochs");
    ARG("%d", j->opt.epochs);
    if (j->opt.lr > 0) { /* else train's default: the large-batch rule */
      ARG("--lr");
      ARG("%.17g", j->opt.lr);
    }
    if (j->opt.accumulate > 1) {
      ARG("--accumulate");
      ARG("%d", j->opt.accumulate);
    }
    ARG("--momentum");
    ARG("%.17g", j->opt.momentum);
    ARG("--seed");
    ARG("%llu", (unsigned long long)j->opt.seed);
    ARG("--wait");
    ARG("%d", s->o.answer_grace_s);
    char progress[SVC_PATH];
    if (svc_job_path(s, j->id, "work/progress.json", progress)) return -1;
    ARG("--progress");
    ARG("%s", progress);
  }
  ARG("--threads");
  ARG("%d", s->threads);
  if (s->o.allow_insecure) ARG("--allow-insecure");
#undef ARG
  argv[n] = NULL;
  return n;
}

/* Starts the child: its own process group (so that the whole launcher tree
 * can be killed), killed when this thread dies, output to the log. */
static pid_t spawn(char **argv, const char *log) {
  const int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    /* async-signal-safe calls only until exec */
    setpgid(0, 0);
#if defined(__linux__)
    prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    if (getppid() != parent) _exit(127);
    dup2(fd, 1);
    dup2(fd, 2);
    const int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, 0);
    execvp(argv[0], argv);
    _exit(127);
  }
  close(fd);
  return pid;
}

/* The last non-empty line of a child's log, without the job directory's
 * path (messages name files as "work/model-001.bt"). */
static void last_line(const char *log, const char *dir, char *out, size_t cap) {
  out[0] = 0;
  FILE *f = fopen(log, "r");
  if (!f) return;
  char line[1024];
  if (fseek(f, -4096, SEEK_END) != 0) rewind(f);
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = 0;
    if (!*line) continue;
    const size_t n = strlen(line) < cap - 1 ? strlen(line) : cap - 1;
    memcpy(out, line, n);
    out[n] = 0;
  }
  fclose(f);
  const size_t dl = strlen(dir);
  for (char *p; dl && (p = strstr(out, dir));) memmove(p, p + dl + (p[dl] == '/'), strlen(p + dl + (p[dl] == '/')) + 1);
}

/* After a training child: where the job stands, from the checkpoint. */
static void read_checkpoint(const bt_service *s, const svc_job *j, int *epochs_done, int *stopped) {
  char path[SVC_PATH];
  bt_pipeline_summary sum;
  *epochs_done = 0, *stopped = 0;
  if (svc_job_path(s, j->id, "work/checkpoint.bt", path) || bt_pipeline_summarize(path, &sum)) {
    bt_clear_error();
    return;
  }
  *epochs_done = sum.epoch > 0 ? sum.epoch : 0;
  *stopped = sum.flag > 0;
}

static void finish(bt_service *s, svc_job *j, int infer, int status, const char *log) {
  char dir[SVC_PATH];
  if (svc_job_path(s, j->id, "", dir)) dir[0] = 0;
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (s->stopping || j->deleted) {
    /* stopped with the service: queued again, resumed on the next start */
    if (infer) j->infer = SVC_INFER_QUEUED;
    else j->state = SVC_QUEUED;
    return;
  }
  if (infer) {
    j->infer = code == 0 ? SVC_INFER_DONE : SVC_INFER_FAILED;
    if (code != 0) last_line(log, dir, j->error, sizeof j->error);
    return;
  }
  pthread_mutex_unlock(&s->mu);
  int done = 0, stopped = 0;
  read_checkpoint(s, j, &done, &stopped);
  char answer[SVC_PATH], work[SVC_PATH];
  int answered = 0;
  if (!svc_job_path(s, j->id, "work", work) && !bt_pipeline_path(answer, sizeof answer, work, "answer", done))
    answered = access(answer, F_OK) == 0;
  pthread_mutex_lock(&s->mu);
  j->epochs_done = done;
  j->stopped = stopped;
  if (code == 0) {
    j->state = SVC_DONE;
    j->waiting_epoch = 0;
  } else if (code == EXIT_WAITING) {
    j->waiting_epoch = done;
    if (answered) svc_queue(s, j); /* the answer came as the child gave up waiting */
    else j->state = SVC_WAITING;
  } else {
    j->state = SVC_FAILED;
    last_line(log, dir, j->error, sizeof j->error);
    if (!*j->error || !WIFEXITED(status))
      snprintf(j->error, sizeof j->error, "the training process %s %d%s", WIFEXITED(status) ? "exited with" : "was killed by signal",
               WIFEXITED(status) ? code : WTERMSIG(status), WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ? " (out of memory?)" : "");
  }
}

static void *worker_main(void *arg) {
  bt_service *s = arg;
  pthread_mutex_lock(&s->mu);
  while (!s->stopping) {
    int infer = 0;
    svc_job *j = queue_head(s, &infer);
    const double need = j ? svc_task_estimate(j, infer) : 0;
    /* strict FIFO: the head waits until what the budget leaves fits it */
    if (!j || (s->running > 0 && s->reserved + need > s->budget)) {
      pthread_cond_wait(&s->cv, &s->mu);
      continue;
    }
    char store[4 * SVC_PATH + 512], *argv[MAX_ARGS], log[SVC_PATH];
    if (build_argv(s, j, infer, store, sizeof store, argv) < 0 ||
        svc_job_path(s, j->id, infer ? "infer.log" : "train.log", log)) {
      j->state = SVC_FAILED;
      snprintf(j->error, sizeof j->error, "%s", "the job's paths are too long");
      (void)svc_db_save(s, j);
      continue;
    }
    if (infer) j->infer = SVC_INFER_RUNNING;
    else j->state = SVC_TRAINING;
    j->mem_estimate = need;
    j->error[0] = 0;
    j->refs++;
    j->child = -1; /* starting */
    j->child_infer = infer;
    s->reserved += need;
    s->running++;
    if (svc_db_save(s, j)) fprintf(stderr, "blindtuner serve: %s\n", bt_last_error());
    pthread_mutex_unlock(&s->mu);

    const pid_t pid = spawn(argv, log);
    int status = 0;
    pthread_mutex_lock(&s->mu);
    j->child = pid > 0 ? pid : 0;
    const int kill_now = j->deleted || s->stopping;
    pthread_mutex_unlock(&s->mu);
    if (pid > 0) {
      if (kill_now) kill(-pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    } else {
      status = 127 << 8;
    }
    pthread_mutex_lock(&s->mu);
    j->child = 0;
    s->reserved -= need;
    s->running--;
    finish(s, j, infer, status, log);
    if (!j->deleted && svc_db_save(s, j)) fprintf(stderr, "blindtuner serve: %s\n", bt_last_error());
    svc_job_put(s, j);
    pthread_cond_broadcast(&s->cv);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

bt_status svc_workers_start(bt_service *s) {
  s->workers = calloc((size_t)s->o.workers, sizeof *s->workers);
  if (!s->workers) return bt_fail(BT_E_NOMEM, "out of memory");
  for (int i = 0; i < s->o.workers; i++) {
    if (pthread_create(&s->workers[i], NULL, worker_main, s) != 0) {
      svc_workers_stop(s);
      return bt_fail(BT_E_NOMEM, "cannot start a worker thread");
    }
    s->nworkers++;
  }
  return BT_OK;
}

void svc_workers_stop(bt_service *s) {
  pthread_mutex_lock(&s->mu);
  s->stopping = 1;
  for (svc_job *j = s->jobs; j; j = j->next)
    if (j->child > 0) kill(-j->child, SIGKILL);
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < s->nworkers; i++) pthread_join(s->workers[i], NULL);
  free(s->workers);
  s->workers = NULL;
  s->nworkers = 0;
}

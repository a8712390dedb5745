/* A training job's exchange directory (include/blindtuner/pipeline.h): the
 * files the server writes after each epoch and reads back when it resumes
 * or gets the client's answer, and the wait for that answer under the
 * directory's lock.  The `train` command keeps its jobs here; a service
 * would keep each job in such a directory too. */
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/internal.h"

static int exists(const char *path) { return access(path, F_OK) == 0; }

bt_status bt_job_resume_dir(bt_job *j, const char *dir, int *resumed) {
  char path[4096];
  *resumed = 0;
  bt_status st = bt_pipeline_path(path, sizeof path, dir, "checkpoint", 0);
  if (st || !exists(path)) return st;
  bt_checkpoint saved; /* owns its model until restored into the job */
  st = bt_pipeline_load_checkpoint(path, bt_job_params_of(j), bt_job_tag_of(j), &saved);
  if (st) return st;
  st = bt_job_restore(j, &saved);
  bt_checkpoint_clear(&saved);
  if (!st) *resumed = 1;
  return st;
}

bt_status bt_job_save_checkpoint_dir(const bt_job *j, const char *dir) {
  char path[4096];
  bt_checkpoint cp;
  bt_job_checkpoint(j, &cp); /* a view: cp.a is the job's model */
  bt_status st = bt_pipeline_path(path, sizeof path, dir, "checkpoint", 0);
  return st ? st : bt_pipeline_save_checkpoint(path, &cp);
}

bt_status bt_job_save_epoch(const bt_job *j, const char *dir, const bt_job_epoch_report *r, int *report_ok) {
  char path[4096];
  bt_enc_epoch e;
  const int epoch = bt_job_epochs_done(j);
  if (report_ok) *report_ok = 0;
  bt_status st = BT_OK;
  if (bt_job_has_validation(j)) {
    st = bt_job_loss(j, &e);
    if (!st) st = bt_pipeline_path(path, sizeof path, dir, "loss", epoch);
    if (!st) st = bt_pipeline_save_epoch(path, BT_IO_LOSS, &e);
  }
  if (!st) st = bt_job_model(j, &e);
  if (!st) st = bt_pipeline_path(path, sizeof path, dir, "model", epoch);
  if (!st) st = bt_pipeline_save_epoch(path, BT_IO_MODEL, &e);
  /* the checkpoint last: a crash before it redoes the epoch, after it finds every file */
  if (!st) st = bt_job_save_checkpoint_dir(j, dir);
  if (st) return st;
  const bt_status rs = bt_report_record_epoch(dir, r);
  if (report_ok) *report_ok = rs == BT_OK;
  return BT_OK;
}

bt_status bt_job_answer_dir(bt_job *j, const char *dir, int *found, int *go_on) {
  char path[4096];
  *found = 0;
  *go_on = 0;
  const int e = bt_job_epochs_done(j);
  if (bt_job_state_of(j) != BT_JOB_WAIT) return bt_fail(BT_E_ARG, "job: no answer is awaited");
  bt_status st = bt_pipeline_path(path, sizeof path, dir, "answer", e);
  if (st || !exists(path)) return st;
  bt_answer a;
  st = bt_pipeline_load_answer(path, bt_job_params_of(j), bt_job_tag_of(j), &a);
  if (!st && a.epoch != e) st = bt_fail(BT_E_FORMAT, "%s answers epoch %d, not %d", path, a.epoch, e);
  if (!st) st = bt_job_answer(j, &a);
  if (st) return st;
  *found = 1;
  *go_on = a.go_on;
  /* a stop ends the run: the checkpoint says so */
  return a.go_on ? BT_OK : bt_job_save_checkpoint_dir(j, dir);
}

/* The checkpoint's identity: every save renames a new file over it, so
 * another inode means another process saved one. */
static int checkpoint_id(const char *dir, struct stat *sb) {
  char path[4096];
  return !bt_pipeline_path(path, sizeof path, dir, "checkpoint", 0) && stat(path, sb) == 0;
}

bt_status bt_job_await_answer_dir(bt_job *j, const char *dir, int wait_s, int *lock, int *found, int *go_on) {
  char path[4096];
  struct stat before = {0}, now = {0};
  const double t0 = bt_seconds();
  *found = *go_on = 0;
  bt_status st = bt_pipeline_path(path, sizeof path, dir, "answer", bt_job_epochs_done(j));
  for (int locked = 1, had = 0; !st;) {
    if (!locked && exists(path)) {
      /* a decide may hold it for a moment after writing its answer */
      if ((st = bt_dir_lock(dir, 60, lock)) == BT_E_UNSUPPORTED) st = BT_OK;
      if (st) break;
      locked = 1;
      /* a second train on the directory, started while this one let go of
       * the lock, may have gone on in the meantime: then this one stops */
      const int has = checkpoint_id(dir, &now);
      if (has != had || (has && (now.st_dev != before.st_dev || now.st_ino != before.st_ino))) {
        st = bt_fail(BT_E_IO, "%s: another process saved a checkpoint while this one waited for the answer "
                     "(two trains on one directory?)", dir);
        break;
      }
    }
    if (locked && ((st = bt_job_answer_dir(j, dir, found, go_on)) || *found)) break;
    if (bt_seconds() - t0 >= wait_s) break;
    if (locked) { /* let decide in while nothing is there */
      had = checkpoint_id(dir, &before);
      bt_dir_unlock(*lock);
      *lock = -1, locked = 0;
    }
    sleep(1);
  }
  return st;
}

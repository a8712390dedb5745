/* What the subcommands share: a table-driven option parser, .npy inputs,
 * progress lines, error lines and JSON numbers.  The protocol itself is the
 * pipeline layer's (include/blindtuner/pipeline.h). */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blindtuner/vision_data.h"
#include "cli.h"

int bt_cli_parse(const char *who, int argc, char **argv, const bt_cli_opt *opts, void (*help)(void)) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      help();
      return 1;
    }
    const bt_cli_opt *o = opts;
    while (o->name && strcmp(o->name, a)) o++;
    if (!o->name) {
      fprintf(stderr, "blindtuner %s: unknown option '%s' (see --help)\n", who, a);
      return 2;
    }
    if (o->type == BT_OPT_FLAG) {
      *(int *)o->ptr = 1;
      continue;
    }
    const char *v = i + 1 < argc ? argv[++i] : NULL;
    if (!v) {
      fprintf(stderr, "blindtuner %s: %s needs a value\n", who, a);
      return 2;
    }
    if (o->type == BT_OPT_STR) {
      *(const char **)o->ptr = v;
    } else {
      char *end;
      errno = 0;
      const double x = strtod(v, &end);
      if (*v == '\0' || *end != '\0' || errno || !(x >= o->lo && x <= o->hi) ||
          (o->type == BT_OPT_INT && x != floor(x))) {
        fprintf(stderr, "blindtuner %s: %s expects %s in [%g, %g], got '%s'\n", who, a,
                o->type == BT_OPT_INT ? "an integer" : "a number", o->lo, o->hi, v);
        return 2;
      }
      if (o->type == BT_OPT_INT) *(int *)o->ptr = (int)x;
      else *(double *)o->ptr = x;
    }
  }
  return 0;
}

int bt_cli_need(const char *who, const char *opt, const char *val) {
  if (val) return 0;
  fprintf(stderr, "blindtuner %s: %s is required (see --help)\n", who, opt);
  return 1;
}

/* ---- .npy inputs ---- */
int bt_cli_load_features(const char *who, const char *path, float **x, size_t *n, size_t *dim) {
  return bt_cli_failed(who, bt_npy_read_features(path, x, n, dim));
}

int bt_cli_load_labels(const char *who, const char *path, size_t n, int classes, int **y) {
  return bt_cli_failed(who, bt_npy_read_labels(path, n, classes, y));
}

/* ---- progress ---- */
/* "who: what, E s elapsed, ETA R s": one rewritten line on a terminal, plain lines otherwise. */
static void progress_line(const char *who, int tty, double done, double total, double t0, const char *what) {
  const double el = bt_seconds() - t0, eta = done > 0 ? el / done * (total - done) : 0;
  if (tty)
    fprintf(stderr, "\r%s: %s, %.0f s elapsed, ETA %.0f s   %s", who, what, el, eta, done >= total ? "\n" : "");
  else
    fprintf(stderr, "%s: %s, %.0f s elapsed, ETA %.0f s\n", who, what, el, eta);
}

void bt_cli_progress(const bt_cli_meter *m, const char *phase, int step, int steps) {
  if (!m->progress) return;
  char text[256];
  const int n = snprintf(text, sizeof text,
                         "{\"phase\": \"%s\", \"epoch\": %d, \"step\": %d, \"steps\": %d, \"elapsed_s\": %.3f}\n",
                         phase, m->epoch, step, steps, bt_seconds() - m->t0);
  /* best effort: a progress file that cannot be written costs the service
   * its progress line, not the training */
  if (n > 0 && (size_t)n < sizeof text && bt_file_write_atomic(m->progress, text, (size_t)n, 0)) bt_clear_error();
}

int bt_cli_meter_cb(void *user, const char *what, int done, int total) {
  bt_cli_meter *m = user;
  bt_cli_progress(m, strcmp(what, "step") ? what : "training", done, total);
  if (m->kill_after && !strcmp(what, "step") && ++m->steps >= m->kill_after) raise(SIGKILL);
  if (m->quiet) return 0;
  if (m->total > 0 && strcmp(what, "step")) return 0; /* the meter counts steps only */
  char line[160];
  snprintf(line, sizeof line, "%s%s %d/%d", m->prefix ? m->prefix : "", what, done, total);
  const double t = m->total > 0 ? m->total : total;
  if (m->tty || t > 1) progress_line(m->who, m->tty, m->done0 + done, t, m->t0, line);
  return 0;
}

int bt_cli_failed(const char *who, bt_status st) {
  if (st == BT_OK) return 0;
  fprintf(stderr, "blindtuner %s: %s (%s)\n", who, bt_last_error(), bt_status_name(st));
  return 1;
}

/* ---- JSON ---- */
json_object *bt_cli_json_number(double v) {
  if (v == (double)(int64_t)v && v > -9e15 && v < 9e15) return json_object_new_int64((int64_t)v);
  return json_object_new_double(v);
}

void bt_cli_json_add_numbers(json_object *o, const bt_cli_json_field *f, size_t n) {
  for (size_t i = 0; i < n; i++) json_object_object_add(o, f[i].key, bt_cli_json_number(f[i].value));
}

/* ---- paths ---- */
void bt_cli_path(char *out, size_t cap, const char *dir, const char *name, int epoch) {
  if (bt_pipeline_path(out, cap, dir, name, epoch)) snprintf(out, cap, "%s", "(path too long)");
}

int bt_cli_exists(const char *path) { return access(path, F_OK) == 0; }

/* ---- INSECURE parameters: accepted only when the user says so, and said ---- */
void bt_cli_decisions_path(char *out, size_t cap, const char *keys, const char *state) {
  if (state) snprintf(out, cap, "%s", state);
  else snprintf(out, cap, "%s.decisions", keys);
}

void bt_cli_note_insecure(const char *who, const bt_ckks_params *p) {
  const bt_ckks_literal *l = bt_ckks_literal_of(p);
  if (l->insecure)
    fprintf(stderr, "blindtuner %s: note: INSECURE test parameters (%s), below 128-bit security: test data only\n",
            who, l->name ? l->name : "custom");
}

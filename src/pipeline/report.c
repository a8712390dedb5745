/* Reports of a training job: SVG charts (curves per epoch, the time split
 * per epoch), the client's HTML page, and the server's record of each
 * epoch's timings (report.json and report.svg in the job's directory; the
 * server sees no loss or accuracy, so it records none). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "pipeline/internal.h"

/* ---- a growing string ---- */
typedef struct sbuf {
  char *s;
  size_t len, cap;
  int bad;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) BT_PRINTF(2, 3);
static void put(sbuf *b, const char *fmt, ...) {
  if (b->bad) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->bad = 1;
      return;
    }
    if (b->s && b->len + (size_t)n < b->cap) {
      b->len += (size_t)n;
      return;
    }
    const size_t cap = (b->cap + (size_t)n + 1) * 2;
    char *t = realloc(b->s, cap);
    if (!t) {
      b->bad = 1;
      return;
    }
    b->s = t;
    b->cap = cap;
  }
}

/* Text for HTML: & < > " escaped (paths are the user's, but still text). */
static void put_text(sbuf *b, const char *t) {
  for (; *t; t++) switch (*t) {
      case '&': put(b, "&amp;"); break;
      case '<': put(b, "&lt;"); break;
      case '>': put(b, "&gt;"); break;
      case '"': put(b, "&quot;"); break;
      default: put(b, "%c", *t);
    }
}

static char *done(sbuf *b) {
  if (b->bad) {
    free(b->s);
    return NULL;
  }
  return b->s;
}

enum { W = 640, H = 320, X0 = 64, Y0 = 32, PW = 420, PH = 240 };

static void frame(sbuf *b, const char *title, double lo, double hi, const char *fmt) {
  put(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
         "font-size=\"12\">\n<text x=\"%d\" y=\"18\" font-size=\"14\">%s</text>\n", W, H, X0, title);
  put(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", X0, Y0 + PH, X0 + PW, Y0 + PH);
  put(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", X0, Y0, X0, Y0 + PH);
  for (int t = 0; t <= 4; t++) {
    const int y = Y0 + PH - PH * t / 4;
    put(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", X0 - 4, y + 4);
    put(b, fmt, lo + (hi - lo) * t / 4);
    put(b, "</text>\n<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ddd\"/>\n", X0, y, X0 + PW, y);
  }
  put(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">epoch</text>\n", X0 + PW / 2, Y0 + PH + 32);
}

static void legend(sbuf *b, int k, const char *name, const char *colour) {
  put(b, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>\n", X0 + PW + 20, Y0 + 20 * k, colour);
  put(b, "<text x=\"%d\" y=\"%d\">%s</text>\n", X0 + PW + 38, Y0 + 20 * k + 11, name);
}

char *bt_report_svg_lines(const char *title, int n, const bt_report_series *s, int ns, const char *fmt) {
  sbuf b = {0};
  double lo = INFINITY, hi = -INFINITY;
  for (int k = 0; k < ns; k++)
    for (int i = 0; i < n; i++)
      if (isfinite(s[k].y[i])) lo = fmin(lo, s[k].y[i]), hi = fmax(hi, s[k].y[i]);
  if (!(lo <= hi)) lo = 0, hi = 1;
  const double pad = hi > lo ? 0.08 * (hi - lo) : fmax(0.5, 0.1 * fabs(hi));
  lo -= pad, hi += pad;
  frame(&b, title, lo, hi, fmt);
  const double dx = n > 1 ? (double)PW / (n - 1) : 0, x0 = n > 1 ? X0 : X0 + PW / 2.0;
  for (int i = 0; i < n; i++)
    put(&b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", x0 + dx * i, Y0 + PH + 16, i + 1);
  for (int k = 0; k < ns; k++) {
    put(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", s[k].colour);
    for (int i = 0; i < n; i++)
      if (isfinite(s[k].y[i])) put(&b, "%.1f,%.1f ", x0 + dx * i, Y0 + PH - PH * (s[k].y[i] - lo) / (hi - lo));
    put(&b, "\"/>\n");
    for (int i = 0; i < n; i++)
      if (isfinite(s[k].y[i]))
        put(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>epoch %d: %g</title></circle>\n",
            x0 + dx * i, Y0 + PH - PH * (s[k].y[i] - lo) / (hi - lo), s[k].colour, i + 1, s[k].y[i]);
    legend(&b, k, s[k].name, s[k].colour);
  }
  put(&b, "</svg>\n");
  return done(&b);
}

char *bt_report_svg_bars(const char *title, int n, const bt_report_series *s, int ns) {
  sbuf b = {0};
  double top = 1e-9;
  for (int i = 0; i < n; i++) {
    double t = 0;
    for (int k = 0; k < ns; k++) t += isfinite(s[k].y[i]) ? s[k].y[i] : 0;
    top = fmax(top, t);
  }
  frame(&b, title, 0, top, "%.0f");
  const double bw = n ? (double)PW / n : PW;
  for (int i = 0; i < n; i++) {
    double y = Y0 + PH;
    for (int k = 0; k < ns; k++) {
      const double v = isfinite(s[k].y[i]) ? s[k].y[i] : 0, h = PH * v / top;
      y -= h;
      put(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>epoch %d %s: %.1f s"
              "</title></rect>\n",
          X0 + bw * i + bw * 0.15, y, bw * 0.7, h, s[k].colour, i + 1, s[k].name, v);
    }
    put(&b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", X0 + bw * (i + 0.5), Y0 + PH + 16, i + 1);
  }
  for (int k = 0; k < ns; k++) legend(&b, k, s[k].name, s[k].colour);
  put(&b, "</svg>\n");
  return done(&b);
}

/* The phases of a training epoch, as `train` records them in report.json. */
const char *const bt_report_phase_keys[BT_REPORT_PHASES] = {"matmul_s", "softmax_s", "bootstrap_s", "other_s",
                                                      "validation_s"};
static const char *const phase_names[BT_REPORT_PHASES] = {"matrix products", "softmax", "bootstrapping", "other",
                                                       "validation"};
static const char *const phase_colours[BT_REPORT_PHASES] = {"#4e79a7", "#f28e2b", "#e15759", "#bab0ac", "#59a14f"};

char *bt_report_svg_phases(int n, const double *phase /* n x BT_REPORT_PHASES */) {
  bt_report_series s[BT_REPORT_PHASES];
  double *cols = malloc((size_t)(n ? n : 1) * BT_REPORT_PHASES * sizeof *cols);
  if (!cols) return NULL;
  for (int k = 0; k < BT_REPORT_PHASES; k++) {
    for (int i = 0; i < n; i++) cols[k * n + i] = phase[i * BT_REPORT_PHASES + k];
    s[k] = (bt_report_series){phase_names[k], phase_colours[k], cols + k * n};
  }
  char *svg = bt_report_svg_bars("seconds per epoch, by phase (server)", n, s, BT_REPORT_PHASES);
  free(cols);
  return svg;
}

char *bt_report_html(const char *dir, int n, const double *loss, const double *sloss, const double *acc,
                     const double *phase, const char *scored_on) {
  const bt_report_series ls[2] = {{"validation loss (encrypted)", "#e15759", loss},
                                  {"loss of the decrypted model", "#4e79a7", sloss}};
  const bt_report_series as = {"accuracy of the decrypted model", "#59a14f", acc};
  sbuf html = {0};
  char *s1 = bt_report_svg_lines("cross-entropy per epoch (client)", n, ls, scored_on ? 2 : 1, "%.3f");
  char *s2 = scored_on ? bt_report_svg_lines("accuracy per epoch (client)", n, &as, 1, "%.3f") : NULL;
  char *s3 = phase ? bt_report_svg_phases(n, phase) : NULL;
  if (!s1 || (scored_on && !s2) || (phase && !s3)) html.bad = 1;
  const char *f = scored_on, *fpath = scored_on;
  put(&html, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>blindtuner report</title></head>\n"
             "<body style=\"font-family:sans-serif\">\n<h1>Encrypted training: ");
  put_text(&html, dir);
  put(&html, "</h1>\n<p>%d epochs. Losses are decrypted by the client; the server never saw them.", n);
  if (f) {
    put(&html, " Accuracy: each epoch's decrypted model on ");
    put_text(&html, fpath);
    put(&html, ".");
  }
  put(&html, "</p>\n%s%s%s", s1, s2 ? s2 : "", s3 ? s3 : "");
  put(&html, "<table border=\"1\" cellpadding=\"4\" style=\"border-collapse:collapse\">\n<tr><th>epoch</th>"
             "<th>validation loss</th><th>accuracy</th><th>seconds</th></tr>\n");
  for (int e = 0; e < n; e++) {
    double t = 0;
    for (int k = 0; phase && k < BT_REPORT_PHASES; k++) t += isfinite(phase[e * BT_REPORT_PHASES + k]) ? phase[e * BT_REPORT_PHASES + k] : 0;
    put(&html, "<tr><td>%d</td><td>%.5f</td><td>%.2f %%</td><td>%.1f</td></tr>\n", e + 1, loss[e], 100 * acc[e], t);
  }
  put(&html, "</table>\n</body></html>\n");
  free(s1), free(s2), free(s3);
  return done(&html);
}

json_object *bt_pl_json_read(const char *path) {
  uint8_t *buf;
  size_t len;
  if (bt_file_read(path, BT_JSON_MAX, &buf, &len)) return NULL;
  json_object *o = json_tokener_parse((const char *)buf);
  if (!o) bt_fail(BT_E_FORMAT, "%s: not valid JSON", path);
  bt_free_secret(buf, len + 1); /* the client's record holds released losses */
  return o;
}

/* ---- the server's record of a training job ---- */
static json_object *record_load(const char *path) {
  json_object *o = access(path, F_OK) == 0 ? bt_pl_json_read(path) : NULL, *ep;
  if (!o || !json_object_object_get_ex(o, "epochs", &ep) || !json_object_is_type(ep, json_type_array)) {
    json_object_put(o);
    o = json_object_new_object();
    json_object_object_add(o, "epochs", json_object_new_array());
  }
  return o;
}

static void add_number(json_object *o, const char *key, double v) {
  json_object_object_add(o, key, v == (double)(int64_t)v && fabs(v) < 9e15 ? json_object_new_int64((int64_t)v)
                                                                           : json_object_new_double(v));
}

bt_status bt_report_record_epoch(const char *dir, const bt_job_epoch_report *r) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s/report.json", dir) >= (int)sizeof path) return bt_fail(BT_E_ARG, "%s: path too long", dir);
  json_object *rep = record_load(path), *ep, *je = json_object_new_object();
  json_object_object_get_ex(rep, "epochs", &ep);
  /* this epoch's entry replaces any from an interrupted run */
  while (json_object_array_length(ep) >= (size_t)r->epoch && json_object_array_length(ep) > 0)
    json_object_array_del_idx(ep, json_object_array_length(ep) - 1, 1);
  const struct {
    const char *key;
    double v;
  } f[] = {{"epoch", r->epoch},
           {"steps", r->steps},
           {"train_s", r->train_s},
           {"matmul_s", r->stats.matmul_s},
           {"softmax_s", r->stats.softmax_s},
           {"bootstrap_s", r->stats.bootstrap_s},
           {"other_s", r->stats.other_s},
           {"validation_s", r->validation_s},
           {"bootstraps", (double)r->stats.bootstraps}};
  for (size_t i = 0; i < sizeof f / sizeof *f; i++) add_number(je, f[i].key, f[i].v);
  json_object_array_add(ep, je);
  const char *text = json_object_to_json_string_ext(rep, JSON_C_TO_STRING_PRETTY);
  bt_status st = bt_io_write_atomic(path, text, strlen(text), 0);
  const int n = (int)json_object_array_length(ep);
  double *phase = st ? NULL : calloc((size_t)(n ? n : 1) * BT_REPORT_PHASES, sizeof *phase);
  if (!st && !phase) st = bt_fail(BT_E_NOMEM, "out of memory");
  for (int i = 0; !st && i < n; i++)
    for (int k = 0; k < BT_REPORT_PHASES; k++) {
      json_object *v;
      if (json_object_object_get_ex(json_object_array_get_idx(ep, (size_t)i), bt_report_phase_keys[k], &v))
        phase[i * BT_REPORT_PHASES + k] = json_object_get_double(v);
    }
  char *svg = st ? NULL : bt_report_svg_phases(n, phase);
  if (!st && !svg) st = bt_fail(BT_E_NOMEM, "out of memory");
  snprintf(path, sizeof path, "%s/report.svg", dir);
  if (!st) st = bt_io_write_atomic(path, svg, strlen(svg), 0);
  free(svg), free(phase);
  json_object_put(rep);
  return st;
}

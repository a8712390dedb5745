/* Training reports: SVG charts (curves per epoch, time split per epoch) and
 * `blindtuner report`, the client's report of a training run, which adds
 * what only the client can know (the decrypted validation loss and the
 * accuracy of each epoch's decrypted model) to the server's timings. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli/cli.h"

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

char *bt_cli_svg_lines(const char *title, int n, const bt_cli_series *s, int ns, const char *fmt) {
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

char *bt_cli_svg_bars(const char *title, int n, const bt_cli_series *s, int ns) {
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
const char *const bt_cli_phase_keys[BT_CLI_PHASES] = {"matmul_s", "softmax_s", "bootstrap_s", "other_s",
                                                      "validation_s"};
static const char *const phase_names[BT_CLI_PHASES] = {"matrix products", "softmax", "bootstrapping", "other",
                                                       "validation"};
static const char *const phase_colours[BT_CLI_PHASES] = {"#4e79a7", "#f28e2b", "#e15759", "#bab0ac", "#59a14f"};

char *bt_cli_svg_phases(int n, const double *phase /* n x BT_CLI_PHASES */) {
  bt_cli_series s[BT_CLI_PHASES];
  double *cols = malloc((size_t)(n ? n : 1) * BT_CLI_PHASES * sizeof *cols);
  if (!cols) return NULL;
  for (int k = 0; k < BT_CLI_PHASES; k++) {
    for (int i = 0; i < n; i++) cols[k * n + i] = phase[i * BT_CLI_PHASES + k];
    s[k] = (bt_cli_series){phase_names[k], phase_colours[k], cols + k * n};
  }
  char *svg = bt_cli_svg_bars("seconds per epoch, by phase (server)", n, s, BT_CLI_PHASES);
  free(cols);
  return svg;
}

int bt_cli_write_text(const char *path, const char *text) {
  const size_t cap = strlen(path) + 32;
  char *tmp = malloc(cap);
  if (!tmp) return -1;
  snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  int rc = -1;
  if (f) {
    const int bad = fputs(text, f) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0;
    if (fclose(f) == 0 && !bad && rename(tmp, path) == 0) rc = 0;
    else remove(tmp);
  }
  free(tmp);
  return rc;
}

/* ================================================================ report */
static void report_help(void) {
  printf("usage: blindtuner report --keys SECRET --workdir DIR --scaler FILE --out PREFIX\n"
         "                         [--features F.npy --labels L.npy] [--json]\n"
         "\n"
         "Client.  The report of a training run, with what only the client can see: for every\n"
         "epoch the server finished (DIR/model-EEE.bt), the decrypted validation loss\n"
         "(DIR/loss-EEE.bt) and, with --features/--labels, the accuracy and loss of that epoch's\n"
         "decrypted model on those rows; beside the server's time per phase (DIR/report.json).\n"
         "Writes PREFIX.json and PREFIX.html (charts a browser opens; no script, no network).\n"
         "\n"
         "  --keys FILE       the secret bundle\n"
         "  --workdir DIR     train's exchange directory\n"
         "  --scaler FILE     the standardisation written by `encrypt --role train`\n"
         "  --features FILE   labelled rows to score each epoch's model on (e.g. validation)\n"
         "  --labels FILE\n"
         "  --out PREFIX      output files PREFIX.json and PREFIX.html\n"
         "  --json            also print the report on stdout\n");
}

static double jnum(json_object *o, const char *key) {
  json_object *v;
  return o && json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : NAN;
}

int bt_cli_report(int argc, char **argv) {
  const char *who = "report", *keys = NULL, *dir = NULL, *scp = NULL, *fpath = NULL, *lpath = NULL, *outp = NULL;
  int json = 0;
  const bt_cli_opt opts[] = {{"--keys", BT_OPT_STR, &keys, 0, 0},       {"--workdir", BT_OPT_STR, &dir, 0, 0},
                             {"--scaler", BT_OPT_STR, &scp, 0, 0},      {"--features", BT_OPT_STR, &fpath, 0, 0},
                             {"--labels", BT_OPT_STR, &lpath, 0, 0},    {"--out", BT_OPT_STR, &outp, 0, 0},
                             {"--json", BT_OPT_FLAG, &json, 0, 0},      {0}};
  int r = bt_cli_parse(who, argc, argv, opts, report_help);
  if (r) return r == 1 ? 0 : 2;
  if (bt_cli_need(who, "--keys", keys) || bt_cli_need(who, "--workdir", dir) || bt_cli_need(who, "--scaler", scp) ||
      bt_cli_need(who, "--out", outp))
    return 2;
  if (!fpath != !lpath) {
    fprintf(stderr, "blindtuner report: --features and --labels go together\n");
    return 2;
  }
  int rc = 1, n = 0;
  bt_ckks_params *p = NULL;
  bt_secret_bundle sb = {0};
  bt_plain_head sc = {0};
  bt_hemat_layout L;
  double *slots = NULL, *w = NULL, *xs = NULL, *loss = NULL, *acc = NULL, *sloss = NULL, *phase = NULL;
  float *f = NULL;
  int *y = NULL;
  size_t nrows = 0, dim = 0;
  json_object *server = NULL, *sep = NULL, *out = json_object_new_object(), *jep = json_object_new_array();
  char path[4200], *s1 = NULL, *s2 = NULL, *s3 = NULL;
  sbuf html = {0};
  if (bt_io_load_secret_bundle(keys, BT_ALLOW_INSECURE, &p, &sb) != BT_OK) goto fail;
  if (bt_cli_layout(p, &sb.tag, &L, NULL) != BT_OK) goto fail;
  if (bt_io_load_head(scp, BT_IO_SCALER, p, &sb.tag, &sc) != BT_OK) goto fail;
  const int F = sb.tag.features, C = sb.tag.classes;
  if (fpath) {
    if (bt_cli_load_features(who, fpath, &f, &nrows, &dim)) goto out;
    if ((int)dim + 1 != F) {
      fprintf(stderr, "blindtuner report: %s has %zu features per row, the keys %d\n", fpath, dim, F - 1);
      goto out;
    }
    if (bt_cli_load_labels(who, lpath, nrows, C, &y)) goto out;
    xs = malloc(nrows * (size_t)F * sizeof *xs);
    if (!xs) goto nomem;
    for (size_t i = 0; i < nrows; i++) {
      for (size_t j = 0; j < dim; j++) xs[i * F + j] = ((double)f[i * dim + j] - sc.mean[j]) / sc.sd[j];
      xs[i * F + dim] = 1;
    }
  }
  while (bt_cli_path(path, sizeof path, dir, "model", n + 1), bt_cli_exists(path)) n++;
  if (!n) {
    fprintf(stderr, "blindtuner report: no model in %s (expected %s/model-001.bt)\n", dir, dir);
    goto out;
  }
  slots = malloc(L.slots * sizeof *slots);
  w = malloc((size_t)C * F * sizeof *w);
  loss = malloc((size_t)n * sizeof *loss);
  acc = malloc((size_t)n * sizeof *acc);
  sloss = malloc((size_t)n * sizeof *sloss);
  phase = calloc((size_t)n * BT_CLI_PHASES, sizeof *phase);
  if (!slots || !w || !loss || !acc || !sloss || !phase) goto nomem;
  snprintf(path, sizeof path, "%s/report.json", dir);
  server = bt_cli_exists(path) ? json_object_from_file(path) : NULL;
  if (server) json_object_object_get_ex(server, "epochs", &sep);
  for (int e = 0; e < n; e++) {
    bt_enc_epoch m;
    loss[e] = acc[e] = sloss[e] = NAN;
    bt_cli_path(path, sizeof path, dir, "loss", e + 1);
    if (bt_cli_exists(path)) {
      if (bt_io_load_epoch(path, BT_IO_LOSS, p, &sb.tag, &m) != BT_OK) goto fail;
      const bt_status st = bt_cli_decrypt_slots(sb.sk, m.ct, &L, slots, NULL);
      bt_ciphertext_free(m.ct);
      if (st) goto fail;
      loss[e] = slots[0];
    }
    if (xs) {
      bt_cli_path(path, sizeof path, dir, "model", e + 1);
      if (bt_io_load_epoch(path, BT_IO_MODEL, p, &sb.tag, &m) != BT_OK) goto fail;
      const bt_status st = bt_cli_decrypt_slots(sb.sk, m.ct, &L, NULL, slots);
      bt_ciphertext_free(m.ct);
      if (st) goto fail;
      bt_hemat_unpack_w(&L, slots, w);
      if (bt_plain_evaluate(NULL, L.batch, (int)nrows, F, C, xs, y, w, &sloss[e], &acc[e]) != BT_OK) goto fail;
    }
    json_object *se = sep && (size_t)e < json_object_array_length(sep) ? json_object_array_get_idx(sep, (size_t)e) : NULL;
    json_object *je = json_object_new_object();
    json_object_object_add(je, "epoch", json_object_new_int(e + 1));
    if (isfinite(loss[e])) json_object_object_add(je, "val_loss", json_object_new_double(loss[e]));
    if (xs) {
      json_object_object_add(je, "accuracy", json_object_new_double(acc[e]));
      json_object_object_add(je, "loss", json_object_new_double(sloss[e]));
    }
    for (int k = 0; k < BT_CLI_PHASES; k++) {
      phase[e * BT_CLI_PHASES + k] = jnum(se, bt_cli_phase_keys[k]);
      if (se) json_object_object_add(je, bt_cli_phase_keys[k], json_object_new_double(phase[e * BT_CLI_PHASES + k]));
    }
    if (se) json_object_object_add(je, "bootstraps", bt_cli_json_number(jnum(se, "bootstraps")));
    json_object_array_add(jep, je);
  }
  json_object_object_add(out, "workdir", json_object_new_string(dir));
  if (fpath) json_object_object_add(out, "scored_on", json_object_new_string(fpath));
  json_object_object_add(out, "epochs", jep);
  jep = NULL;
  const char *text = json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY);
  snprintf(path, sizeof path, "%s.json", outp);
  if (bt_cli_write_text(path, text)) {
    fprintf(stderr, "blindtuner report: cannot write %s\n", path);
    goto out;
  }
  if (json) printf("%s\n", text);
  /* the page */
  const bt_cli_series ls[2] = {{"validation loss (encrypted)", "#e15759", loss},
                               {"loss of the decrypted model", "#4e79a7", sloss}};
  const bt_cli_series as = {"accuracy of the decrypted model", "#59a14f", acc};
  s1 = bt_cli_svg_lines("cross-entropy per epoch (client)", n, ls, xs ? 2 : 1, "%.3f");
  s2 = xs ? bt_cli_svg_lines("accuracy per epoch (client)", n, &as, 1, "%.3f") : NULL;
  s3 = server ? bt_cli_svg_phases(n, phase) : NULL;
  if (!s1 || (xs && !s2) || (server && !s3)) goto nomem;
  put(&html, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>blindtuner report</title></head>\n"
             "<body style=\"font-family:sans-serif\">\n<h1>Encrypted training: ");
  put_text(&html, dir);
  put(&html, "</h1>\n<p>%d epochs. Losses are decrypted by the client; the server never saw them.", n);
  if (xs) {
    put(&html, " Accuracy: each epoch's decrypted model on ");
    put_text(&html, fpath);
    put(&html, ".");
  }
  put(&html, "</p>\n%s%s%s", s1, s2 ? s2 : "", s3 ? s3 : "");
  put(&html, "<table border=\"1\" cellpadding=\"4\" style=\"border-collapse:collapse\">\n<tr><th>epoch</th>"
             "<th>validation loss</th><th>accuracy</th><th>seconds</th></tr>\n");
  for (int e = 0; e < n; e++) {
    double t = 0;
    for (int k = 0; k < BT_CLI_PHASES; k++) t += isfinite(phase[e * BT_CLI_PHASES + k]) ? phase[e * BT_CLI_PHASES + k] : 0;
    put(&html, "<tr><td>%d</td><td>%.5f</td><td>%.2f %%</td><td>%.1f</td></tr>\n", e + 1, loss[e], 100 * acc[e], t);
  }
  put(&html, "</table>\n</body></html>\n");
  char *page = done(&html);
  html.s = NULL;
  snprintf(path, sizeof path, "%s.html", outp);
  if (!page || bt_cli_write_text(path, page)) {
    free(page);
    fprintf(stderr, "blindtuner report: cannot write %s\n", path);
    snprintf(path, sizeof path, "%s.json", outp);
    unlink(path);
    goto out;
  }
  free(page);
  if (!json) printf("report: %d epochs -> %s.json, %s.html\n", n, outp, outp);
  rc = 0;
  goto out;
nomem:
  fprintf(stderr, "blindtuner report: out of memory\n");
  goto out;
fail:
  fprintf(stderr, "blindtuner report: %s\n", bt_last_error());
out:
  free(html.s);
  free(s1), free(s2), free(s3);
  json_object_put(server), json_object_put(out), json_object_put(jep);
  bt_secret_bundle_clear(&sb);
  bt_plain_head_clear(&sc);
  bt_ckks_params_free(p);
  free(slots), free(w), free(xs), free(loss), free(acc), free(sloss), free(phase), free(f), free(y);
  return rc;
}

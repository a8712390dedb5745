/* `blindtuner report`: the client's report of a training run, which adds
 * what only the client can know (the decrypted validation loss and the
 * accuracy of each epoch's decrypted model) to the server's timings. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"

/* ================================================================ report */
static void report_help(void) {
  printf("usage: blindtuner report --keys SECRET --workdir DIR --scaler FILE --out PREFIX\n"
         "                         [--features F.npy --labels L.npy] [--state FILE | --epochs E]\n"
         "                         [--json]\n"
         "\n"
         "Client.  The report of a training run, with what only the client can see: for every\n"
         "epoch the server finished (DIR/model-EEE.bt), the validation loss `decide` recorded\n"
         "(its --state; no loss is decrypted again) and, with --features/--labels, the accuracy\n"
         "and loss of that epoch's decrypted model on those rows; beside the server's time per\n"
         "phase (DIR/report.json).  Models are decrypted for at most the epochs the client\n"
         "agreed to (the state's, or --epochs without one).  Writes PREFIX.json and PREFIX.html\n"
         "(charts a browser opens; no script, no network), mode 0600, values rounded.\n"
         "\n"
         "  --keys FILE       the secret bundle\n"
         "  --state FILE      decide's record (default SECRET.decisions)\n"
         "  --epochs E        the agreed epochs, for a run without validation (no state)\n"
         "  --allow-insecure  accept a secret bundle of INSECURE test parameters\n"
         "  --workdir DIR     train's exchange directory\n"
         "  --scaler FILE     the scaler written by `encrypt --role train`\n"
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
  const char *state = NULL;
  int json = 0, insecure = 0, epochs = 0;
  const bt_cli_opt opts[] = {{"--keys", BT_OPT_STR, &keys, 0, 0},       {"--workdir", BT_OPT_STR, &dir, 0, 0},
                             {"--state", BT_OPT_STR, &state, 0, 0},     {"--epochs", BT_OPT_INT, &epochs, 1, BT_MAX_DECISIONS},
                             {"--allow-insecure", BT_OPT_FLAG, &insecure, 0, 0},
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
  bt_client *cl = NULL;
  bt_decisions dec = {0};
  char spath[4096];
  bt_plain_head sc = {0};
  double *loss = NULL, *acc = NULL, *sloss = NULL, *phase = NULL;
  float *f = NULL;
  int *y = NULL;
  size_t nrows = 0, dim = 0;
  json_object *server = NULL, *sep = NULL, *out = json_object_new_object(), *jep = json_object_new_array();
  char path[4200];
  if (bt_client_open(keys, bt_cli_insecure_flags(insecure), &cl) != BT_OK) goto fail;
  const bt_ckks_params *p = bt_client_params(cl);
  bt_cli_note_insecure(who, p);
  const bt_job_tag *tag = bt_client_tag(cl);
  bt_cli_decisions_path(spath, sizeof spath, keys, state);
  if (bt_decisions_open(spath, tag, 0, epochs, &dec)) goto fail; /* or --epochs for a run without validation */
  const int agreed = dec.es.max_epochs;
  if (bt_pipeline_load_head(scp, BT_IO_SCALER, p, tag, &sc) != BT_OK) goto fail;
  const int F = tag->features, C = tag->classes;
  if (fpath) {
    if (bt_cli_load_features(who, fpath, &f, &nrows, &dim)) goto out;
    if ((int)dim + 1 != F) {
      fprintf(stderr, "blindtuner report: %s has %zu features per row, the keys %d\n", fpath, dim, F - 1);
      goto out;
    }
    if (bt_cli_load_labels(who, lpath, nrows, C, &y)) goto out;
  }
  while (n < agreed && (bt_cli_path(path, sizeof path, dir, "model", n + 1), bt_cli_exists(path))) n++;
  if (!n) {
    fprintf(stderr, "blindtuner report: no model in %s (expected %s/model-001.bt)\n", dir, dir);
    goto out;
  }
  loss = malloc((size_t)n * sizeof *loss);
  acc = malloc((size_t)n * sizeof *acc);
  sloss = malloc((size_t)n * sizeof *sloss);
  phase = calloc((size_t)n * BT_REPORT_PHASES, sizeof *phase);
  if ((!loss || !acc || !sloss || !phase) && bt_fail(BT_E_NOMEM, "out of memory")) goto fail;
  snprintf(path, sizeof path, "%s/report.json", dir);
  server = bt_cli_exists(path) ? json_object_from_file(path) : NULL;
  if (server) json_object_object_get_ex(server, "epochs", &sep);
  for (int e = 0; e < n; e++) {
    bt_enc_epoch m;
    loss[e] = acc[e] = sloss[e] = NAN;
    if (e < dec.es.epochs) loss[e] = dec.loss[e]; /* released by decide */
    if (f) {
      bt_plain_head h;
      bt_cli_path(path, sizeof path, dir, "model", e + 1);
      if (bt_pipeline_load_epoch(path, BT_IO_MODEL, p, tag, &m) != BT_OK) goto fail;
      const bt_status st = bt_client_decrypt_model(cl, &m, &sc, &h);
      bt_ciphertext_free(m.ct);
      if (st) goto fail;
      const bt_status se2 = bt_plain_head_evaluate(&h, f, y, nrows, &acc[e], &sloss[e], NULL, NULL);
      bt_plain_head_clear(&h);
      if (se2) goto fail;
      acc[e] = bt_release_round(acc[e]), sloss[e] = bt_release_round(sloss[e]);
    }
    json_object *se = sep && (size_t)e < json_object_array_length(sep) ? json_object_array_get_idx(sep, (size_t)e) : NULL;
    json_object *je = json_object_new_object();
    json_object_object_add(je, "epoch", json_object_new_int(e + 1));
    if (isfinite(loss[e])) json_object_object_add(je, "val_loss", json_object_new_double(loss[e]));
    if (f) {
      json_object_object_add(je, "accuracy", json_object_new_double(acc[e]));
      json_object_object_add(je, "loss", json_object_new_double(sloss[e]));
    }
    for (int k = 0; k < BT_REPORT_PHASES; k++) {
      phase[e * BT_REPORT_PHASES + k] = jnum(se, bt_report_phase_keys[k]);
      if (se) json_object_object_add(je, bt_report_phase_keys[k], json_object_new_double(phase[e * BT_REPORT_PHASES + k]));
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
  if (bt_io_write_atomic(path, text, strlen(text), 1)) {
    fprintf(stderr, "blindtuner report: cannot write %s\n", path);
    goto out;
  }
  if (json) printf("%s\n", text);
  /* the page */
  char *page = bt_report_html(dir, n, loss, sloss, acc, server ? phase : NULL, fpath);
  snprintf(path, sizeof path, "%s.html", outp);
  if (!page || bt_io_write_atomic(path, page, strlen(page), 1)) {
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
fail:
  fprintf(stderr, "blindtuner report: %s\n", bt_last_error());
out:
  json_object_put(server), json_object_put(out), json_object_put(jep);
  bt_client_free(cl);
  bt_decisions_clear(&dec);
  bt_plain_head_clear(&sc);
  free(loss), free(acc), free(sloss), free(phase), free(f), free(y);
  return rc;
}

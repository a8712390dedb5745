/* The client's subcommands: keygen, encrypt, decide, decrypt, evaluate,
 * predict.  Everything here may hold the secret key or plaintext data and
 * runs on the client's machine only (docs/PIPELINE.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "blindtuner/vision_data.h"
#include "cli.h"

/* ================================================================ keygen */
static void keygen_help(void) {
  printf("usage: blindtuner keygen --dim D --classes C --secret FILE --eval FILE [options]\n"
         "\n"
         "Client.  Generates a CKKS key set for training a softmax head on D-dimensional\n"
         "features (as `blindtuner extract` wrote them) and C classes, and writes two files:\n"
         "  --secret FILE    the secret bundle: parameters and secret key, mode 0600.  It never\n"
         "                   leaves the client; encrypt, decide and decrypt read it.\n"
         "  --eval FILE      the evaluation bundle for the server: parameters, relinearisation,\n"
         "                   rotation and bootstrapping keys.  Nothing in it decrypts anything.\n"
         "Both carry a random key-set ID; every file made with these keys carries it too, and\n"
         "each command refuses files from another keygen.\n"
         "\n"
         "  --dim D          feature dimension (the bias column is added: F = D + 1)\n"
         "  --classes C      number of classes (labels 0..C-1)\n"
         "  --batch B        rows per encrypted batch (default 1024)\n"
         "  --preset NAME    CKKS parameters (default train-n16, 128-bit; INSECURE-* need\n"
         "                   --allow-insecure)\n"
         "  --allow-insecure permit INSECURE test presets\n"
         "  --force          replace an existing secret bundle (its data can then no longer be\n"
         "                   decrypted)\n"
         "  --threads N      threads (default BT_THREADS or all cores)\n"
         "  --json           print what was made as JSON\n");
}

int bt_cli_keygen(int argc, char **argv) {
  const char *who = "keygen", *secret = NULL, *evalp = NULL, *preset = "train-n16";
  int dim = 0, classes = 0, batch = 1024, insecure = 0, force = 0, threads = 0, json = 0;
  const bt_cli_opt opts[] = {{"--dim", BT_OPT_INT, &dim, 1, (1 << 20) - 2},
                             {"--classes", BT_OPT_INT, &classes, 2, 4096},
                             {"--batch", BT_OPT_INT, &batch, 1, 65536},
                             {"--secret", BT_OPT_STR, &secret, 0, 0},
                             {"--eval", BT_OPT_STR, &evalp, 0, 0},
                             {"--preset", BT_OPT_STR, &preset, 0, 0},
                             {"--allow-insecure", BT_OPT_FLAG, &insecure, 0, 0},
                             {"--force", BT_OPT_FLAG, &force, 0, 0},
                             {"--threads", BT_OPT_INT, &threads, 1, 1024},
                             {"--json", BT_OPT_FLAG, &json, 0, 0},
                             {0}};
  int r = bt_cli_parse(who, argc, argv, opts, keygen_help);
  if (r) return r == 1 ? 0 : 2;
  if (bt_cli_need(who, "--dim", dim ? "" : NULL) || bt_cli_need(who, "--classes", classes ? "" : NULL) ||
      bt_cli_need(who, "--secret", secret) || bt_cli_need(who, "--eval", evalp))
    return 2;
  if (bt_file_same(secret, evalp)) {
    fprintf(stderr, "blindtuner keygen: --secret and --eval must be different files\n");
    return 2;
  }
  if (!force && bt_cli_exists(secret)) {
    fprintf(stderr, "blindtuner keygen: %s exists; replacing a secret bundle makes everything encrypted under it "
                    "undecryptable (use --force)\n", secret);
    return 1;
  }
  int rc = 1;
  bt_client *c = NULL;
  bt_keyset_info info;
  const double t0 = bt_seconds();
  bt_cli_meter m = {.who = who, .tty = 1, .t0 = t0};
  /* both files or neither; the evaluation keys are written as they are made (a progress line on a terminal) */
  TRY(who, bt_client_keygen_save(preset, insecure ? BT_ALLOW_INSECURE : 0, dim, classes, batch, threads, secret,
                                 evalp, isatty(2) && !json ? bt_cli_meter_cb : NULL, &m, &c, &info));
  const bt_ckks_params *p = bt_client_params(c);
  const bt_job_tag tag = *bt_client_tag(c);
  bt_hemat_layout L;
  TRY(who, bt_job_layout(p, &tag, &L, NULL));
  struct stat est;
  const double eval_bytes = stat(evalp, &est) == 0 ? (double)est.st_size : -1;
  char id[2 * BT_KEYSET_ID_BYTES + 1];
  for (int i = 0; i < BT_KEYSET_ID_BYTES; i++) sprintf(id + 2 * i, "%02x", tag.keyset[i]);
  const double secs = bt_seconds() - t0;
  const int blogslots = L.fold ? L.fold_logslots : L.logslots;
  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "keyset", json_object_new_string(id));
    json_object_object_add(o, "preset", json_object_new_string(preset));
    json_object_object_add(o, "secret", json_object_new_string(secret));
    json_object_object_add(o, "eval", json_object_new_string(evalp));
    const bt_cli_json_field f[] = {{"batch", tag.batch}, {"features", dim + 1}, {"classes", classes},
                                   {"galois_keys", (double)info.galois_keys}, {"bootstrap_logslots", blogslots},
                                   {"folded", L.fold}, {"eval_bundle_bytes", eval_bytes}, {"seconds", secs}};
    bt_cli_json_add_numbers(o, f, sizeof f / sizeof *f);
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else {
    printf("keygen: key set %s, preset %s%s (N = 2^%d), layout %d rows x %d features x %d classes%s\n"
           "        %s: secret bundle (mode 0600, keep it here)\n"
           "        %s: evaluation bundle for the server (%.0f bytes: %zu rotation keys%s; bootstrapping 2^%d "
           "slots), %.1f s\n",
           id, preset, bt_ckks_literal_of(p)->insecure ? " (INSECURE)" : "", bt_ckks_logn(p), tag.batch, dim + 1,
           classes, L.fold ? ", folded softmax" : "", secret, evalp, eval_bytes, info.galois_keys,
           info.encapsulation ? ", encapsulation keys" : "", blogslots, secs);
  }
  rc = 0;
out:
  bt_client_free(c);
  return rc;
}

/* ================================================================ encrypt */
static void encrypt_help(void) {
  printf("usage: blindtuner encrypt --keys SECRET --role ROLE --features F.npy [--labels L.npy]\n"
         "                          --scaler FILE --out FILE [options]\n"
         "\n"
         "Client.  Standardises and whitens features, appends the bias column, packs them and\n"
         "one-hot labels into batches and encrypts them under the secret bundle's key (F.npy:\n"
         "float32 n x D as `blindtuner extract` writes it, L.npy: int64 labels 0..C-1).\n"
         "\n"
         "  --keys FILE      the secret bundle (blindtuner keygen --secret)\n"
         "  --allow-insecure accept a secret bundle of INSECURE test parameters\n"
         "  --role ROLE      train, val or test\n"
         "                     train: rows are shuffled (--seed); the standardisation (mean and\n"
         "                            deviation of each feature over these rows) and the whitening\n"
         "                            (their decorrelation, docs/TRAINING.md) are written to\n"
         "                            --scaler, a client-side file (mode 0600)\n"
         "                     val, test: rows keep their order; the scaler is read from\n"
         "                            --scaler; test labels are optional\n"
         "  --features FILE  features (.npy)\n"
         "  --labels FILE    labels (.npy)\n"
         "  --scaler FILE    the scaler (written for train, read otherwise)\n"
         "  --no-whiten      train: standardise only (gradient descent then needs many more steps)\n"
         "  --ridge R        train: the whitening's regularisation, relative to the correlation\n"
         "                   matrix's mean eigenvalue 1 (default 2e-3 x D / rows, within [1e-6, 1])\n"
         "  --out FILE       the encrypted dataset, for the server\n"
         "  --seed S         shuffle seed for train (default: random)\n"
         "  --threads N      threads (default BT_THREADS or all cores)\n"
         "  --json           print what was written as JSON\n");
}

int bt_cli_encrypt(int argc, char **argv) {
  const char *who = "encrypt", *keys = NULL, *role_s = NULL, *fpath = NULL, *lpath = NULL, *scp = NULL, *outp = NULL;
  int seed = -1, threads = 0, json = 0, insecure = 0, no_whiten = 0;
  double ridge = 0;
  const bt_cli_opt opts[] = {{"--keys", BT_OPT_STR, &keys, 0, 0},      {"--role", BT_OPT_STR, &role_s, 0, 0},
                             {"--no-whiten", BT_OPT_FLAG, &no_whiten, 0, 0},
                             {"--ridge", BT_OPT_DBL, &ridge, 1e-12, 1e6},
                             {"--allow-insecure", BT_OPT_FLAG, &insecure, 0, 0},
                             {"--json", BT_OPT_FLAG, &json, 0, 0},
                             {"--features", BT_OPT_STR, &fpath, 0, 0}, {"--labels", BT_OPT_STR, &lpath, 0, 0},
                             {"--scaler", BT_OPT_STR, &scp, 0, 0},     {"--out", BT_OPT_STR, &outp, 0, 0},
                             {"--seed", BT_OPT_INT, &seed, 0, 2147483647.0},
                             {"--threads", BT_OPT_INT, &threads, 1, 1024},
                             {0}};
  int r = bt_cli_parse(who, argc, argv, opts, encrypt_help);
  if (r) return r == 1 ? 0 : 2;
  if (bt_cli_need(who, "--keys", keys) || bt_cli_need(who, "--role", role_s) ||
      bt_cli_need(who, "--features", fpath) || bt_cli_need(who, "--scaler", scp) || bt_cli_need(who, "--out", outp))
    return 2;
  bt_set_role role = !strcmp(role_s, "train") ? BT_SET_TRAIN
                     : !strcmp(role_s, "val") ? BT_SET_VAL
                     : !strcmp(role_s, "test") ? BT_SET_TEST
                                               : 0;
  if (!role) {
    fprintf(stderr, "blindtuner encrypt: --role is train, val or test, not '%s'\n", role_s);
    return 2;
  }
  if (role != BT_SET_TEST && !lpath) {
    fprintf(stderr, "blindtuner encrypt: a %s set needs --labels\n", bt_set_role_name(role));
    return 2;
  }
  int rc = 1;
  bt_client *c = NULL;
  bt_plain_head sc = {0};
  bt_enc_dataset d = {0};
  float *f = NULL;
  int *y = NULL, *perm = NULL;
  size_t n = 0, dim = 0;
  const double t0 = bt_seconds();
  TRY(who, bt_client_open(keys, bt_cli_insecure_flags(insecure), &c));
  bt_cli_note_insecure(who, bt_client_params(c));
  bt_client_set_threads(c, threads);
  const bt_job_tag *tag = bt_client_tag(c);
  if (bt_cli_load_features(who, fpath, &f, &n, &dim)) goto out;
  if ((int)dim + 1 != tag->features)
    FAIL(who, "%s has %zu features per row, the keys were made for %d", fpath, dim, tag->features - 1);
  if (lpath && bt_cli_load_labels(who, lpath, n, tag->classes, &y)) goto out;
  if (role == BT_SET_TRAIN) {
    uint64_t s64;
    if (seed >= 0) s64 = (uint64_t)seed;
    else bt_random_bytes(&s64, sizeof s64);
    if (!(perm = malloc(n * sizeof *perm))) FAIL(who, "out of memory");
    TRY(who, bt_pipeline_row_order(s64, n, perm));
    TRY(who, bt_scaler_fit(tag, f, n, dim, &sc));
    if (no_whiten && ridge > 0) FAIL(who, "--ridge is the whitening's: it does not go with --no-whiten");
    if (!no_whiten) TRY(who, bt_scaler_whiten(&sc, f, n, ridge));
  } else {
    if (no_whiten || ridge > 0) FAIL(who, "--no-whiten and --ridge apply to a training set; val and test use its scaler");
    TRY(who, bt_pipeline_load_head(scp, BT_IO_SCALER, bt_client_params(c), tag, &sc));
  }
  bt_cli_meter m = {.who = who, .tty = isatty(2), .t0 = t0};
  TRY(who, bt_client_encrypt(c, role, f, y, n, &sc, perm, bt_cli_meter_cb, &m, &d));
  if (role == BT_SET_TRAIN) TRY(who, bt_pipeline_save_train_set(outp, &d, scp, bt_client_params(c), &sc));
  else TRY(who, bt_pipeline_save_dataset(outp, &d));
  const int B = tag->batch;
  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "role", json_object_new_string(bt_set_role_name(role)));
    json_object_object_add(o, "out", json_object_new_string(outp));
    if (role == BT_SET_TRAIN) json_object_object_add(o, "scaler", json_object_new_string(scp));
    json_object_object_add(o, "whitened", json_object_new_boolean(sc.proj != NULL));
    const bt_cli_json_field fl[] = {{"rows", (double)n}, {"batches", d.nbatches}, {"labelled", y != NULL},
                                    {"seconds", bt_seconds() - t0}};
    bt_cli_json_add_numbers(o, fl, sizeof fl / sizeof *fl);
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else {
    printf("encrypt: %s set of %zu rows%s in %d batch%s of %d -> %s (%.1f s)%s%s\n", bt_set_role_name(role), n,
           y ? " with labels" : "", d.nbatches, d.nbatches > 1 ? "es" : "", B, outp, bt_seconds() - t0,
           role == BT_SET_TRAIN ? (sc.proj ? "; standardisation and whitening -> " : "; standardisation -> ") : "",
           role == BT_SET_TRAIN ? scp : "");
  }
  rc = 0;
out:
  bt_enc_dataset_clear(&d);
  bt_plain_head_clear(&sc);
  bt_client_free(c);
  free(f), free(y), free(perm);
  return rc;
}

/* ================================================================ decide */
static void decide_help(void) {
  printf("usage: blindtuner decide --keys SECRET --workdir DIR [--epochs E] [--patience P]\n"
         "                         [--state FILE] [--json]\n"
         "\n"
         "Client: the early-stopping half of the protocol.  Decrypts the encrypted validation\n"
         "loss of the next epoch the server wrote (DIR/loss-EEE.bt), keeps it to itself, and\n"
         "writes one bit, continue or stop, to DIR/answer-EEE.bt for the server.  It stops once\n"
         "P epochs in a row have not improved on the best loss or at the E-th epoch, and names\n"
         "the best epoch, whose model (DIR/model-EEE.bt) the client should decrypt.\n"
         "\n"
         "The client's own record (--state, mode 0600) bounds what it decrypts: each epoch is\n"
         "decided once, none beyond the E epochs agreed, none after a stop; a loss that fails\n"
         "validation is answered stop.  No decrypted value ever goes back, and what is printed\n"
         "is flooded and rounded (docs/SECURITY.md).\n"
         "\n"
         "  --keys FILE      the secret bundle\n"
         "  --workdir DIR    the exchange directory of `blindtuner train`\n"
         "  --epochs E       the epochs agreed with the server (train --epochs); needed for the\n"
         "                   first decision, and must not change afterwards\n"
         "  --patience P     epochs without improvement before stopping (default 3)\n"
         "  --state FILE     the client's decisions (default SECRET.decisions)\n"
         "  --allow-insecure accept a secret bundle of INSECURE test parameters\n"
         "  --json           print the losses and the decision as JSON\n");
}

int bt_cli_decide(int argc, char **argv) {
  const char *who = "decide", *keys = NULL, *dir = NULL, *state = NULL;
  int patience = 0, json = 0, epochs = 0, insecure = 0;
  const bt_cli_opt opts[] = {{"--keys", BT_OPT_STR, &keys, 0, 0},
                             {"--workdir", BT_OPT_STR, &dir, 0, 0},
                             {"--epochs", BT_OPT_INT, &epochs, 1, BT_MAX_DECISIONS},
                             {"--patience", BT_OPT_INT, &patience, 1, 100000},
                             {"--state", BT_OPT_STR, &state, 0, 0},
                             {"--allow-insecure", BT_OPT_FLAG, &insecure, 0, 0},
                             {"--json", BT_OPT_FLAG, &json, 0, 0},
                             {0}};
  int r = bt_cli_parse(who, argc, argv, opts, decide_help);
  if (r) return r == 1 ? 0 : 2;
  if (bt_cli_need(who, "--keys", keys) || bt_cli_need(who, "--workdir", dir)) return 2;
  int rc = 1;
  bt_client *c = NULL;
  bt_decisions d = {0};
  bt_decide_result res;
  char spath[4096];
  TRY(who, bt_client_open(keys, bt_cli_insecure_flags(insecure), &c));
  bt_cli_note_insecure(who, bt_client_params(c));
  const bt_job_tag *tag = bt_client_tag(c);
  bt_cli_decisions_path(spath, sizeof spath, keys, state);
  TRY(who, bt_decisions_open(spath, tag, patience, epochs, &d)); /* --epochs: needed for the first decision */
  TRY(who, bt_client_decide_dir(c, dir, spath, &d, &res));
  const bt_early_stop *es = &d.es;
  if (res.rewritten)
    fprintf(stderr, "decide: the answer to epoch %d re-written from %s (nothing decrypted)\n", res.answer.epoch, spath);
  char best[4096];
  bt_cli_path(best, sizeof best, dir, "model", es->best_epoch + 1);
  if (json) {
    json_object *o = json_object_new_object(), *ja = json_object_new_array();
    for (int k = 0; k < es->epochs; k++) {
      json_object *je = json_object_new_object();
      json_object_object_add(je, "epoch", json_object_new_int(k + 1));
      json_object_object_add(je, "val_loss", isfinite(d.loss[k]) ? json_object_new_double(d.loss[k]) : NULL);
      json_object_array_add(ja, je);
    }
    json_object_object_add(o, "epochs", ja);
    json_object_object_add(o, "continue", json_object_new_boolean(res.answer.go_on));
    json_object_object_add(o, "best_epoch", json_object_new_int(es->best_epoch + 1));
    json_object_object_add(o, "best_model", json_object_new_string(best));
    json_object_object_add(o, "answer", json_object_new_string(res.answer_path));
    json_object_object_add(o, "state", json_object_new_string(spath));
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else {
    if (res.decided)
      printf("decide: epoch %3d  validation loss %.6f%s\n", res.epoch, res.loss,
             es->best_epoch == res.epoch - 1 ? "  (best)" : "");
    else
      printf("decide: no loss of epoch %d to decide (%s)\n", res.epoch,
             es->stopped || es->epochs >= es->max_epochs ? "no further epoch is agreed" : "the server has not written it yet");
    printf("decide: answer for epoch %d: %s -> %s\n"
           "decide: best epoch so far %d: %s\n",
           res.answer.epoch, res.answer.go_on ? "continue" : "stop", res.answer_path, es->best_epoch + 1, best);
  }
  rc = 0;
out:
  bt_decisions_clear(&d);
  bt_client_free(c);
  return rc;
}

/* ================================================================ decrypt */
static void print_json(const char *kind, const char *out, const bt_cli_json_field *f, size_t n) {
  json_object *o = json_object_new_object();
  json_object_object_add(o, "kind", json_object_new_string(kind));
  json_object_object_add(o, "out", json_object_new_string(out));
  bt_cli_json_add_numbers(o, f, n);
  printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
  json_object_put(o);
}

static void decrypt_help(void) {
  printf("usage: blindtuner decrypt --keys SECRET --model FILE --scaler FILE --out HEAD\n"
         "       blindtuner decrypt --keys SECRET --logits FILE --out LOGITS.npy [--predictions P.npy]\n"
         "\n"
         "Client.  Decrypts what the server returned:\n"
         "  an encrypted model (train's DIR/model-EEE.bt): writes the plaintext head, its weights\n"
         "    with --scaler's whitening folded in and its standardisation, for `evaluate` and\n"
         "    `predict` (mode 0600);\n"
         "  encrypted logits (`infer`): writes them as float32 n x C .npy and, with\n"
         "    --predictions, the predicted labels as int64 .npy.\n"
         "\n"
         "  --keys FILE        the secret bundle\n"
         "  --allow-insecure   accept a secret bundle of INSECURE test parameters\n"
         "  --model FILE       an encrypted model\n"
         "  --scaler FILE      the scaler written by `encrypt --role train`\n"
         "  --logits FILE      encrypted logits\n"
         "  --out FILE         the output\n"
         "  --predictions FILE predicted labels (with --logits)\n"
         "  --json             print what was written as JSON\n");
}

int bt_cli_decrypt(int argc, char **argv) {
  const char *who = "decrypt", *keys = NULL, *model = NULL, *scp = NULL, *logits = NULL, *outp = NULL,
             *preds = NULL;
  int json = 0, insecure = 0;
  const bt_cli_opt opts[] = {{"--json", BT_OPT_FLAG, &json, 0, 0}, {"--allow-insecure", BT_OPT_FLAG, &insecure, 0, 0},
                             {"--keys", BT_OPT_STR, &keys, 0, 0},   {"--model", BT_OPT_STR, &model, 0, 0},
                             {"--scaler", BT_OPT_STR, &scp, 0, 0},  {"--logits", BT_OPT_STR, &logits, 0, 0},
                             {"--out", BT_OPT_STR, &outp, 0, 0},    {"--predictions", BT_OPT_STR, &preds, 0, 0},
                             {0}};
  int r = bt_cli_parse(who, argc, argv, opts, decrypt_help);
  if (r) return r == 1 ? 0 : 2;
  if (bt_cli_need(who, "--keys", keys) || bt_cli_need(who, "--out", outp)) return 2;
  if (!model == !logits) {
    fprintf(stderr, "blindtuner decrypt: give one of --model or --logits\n");
    return 2;
  }
  if (model && bt_cli_need(who, "--scaler", scp)) return 2;
  if (bt_cli_failed(who, bt_io_refuse_secret(outp, "decrypted values")) ||
      (preds && bt_cli_failed(who, bt_io_refuse_secret(preds, "predictions"))))
    return 1;
  if (preds && bt_file_same(outp, preds)) {
    fprintf(stderr, "blindtuner decrypt: --out and --predictions must be different files\n");
    return 2;
  }
  int rc = 1;
  bt_client *c = NULL;
  bt_plain_head h = {0}, sc = {0};
  bt_enc_epoch e = {0};
  bt_enc_logits lg = {0};
  float *z = NULL;
  size_t zbytes = 0;
  int64_t *pred = NULL;
  TRY(who, bt_client_open(keys, bt_cli_insecure_flags(insecure), &c));
  bt_cli_note_insecure(who, bt_client_params(c));
  const bt_ckks_params *p = bt_client_params(c);
  const bt_job_tag *tag = bt_client_tag(c);
  const int C = tag->classes;
  if (model) {
    TRY(who, bt_pipeline_load_epoch(model, BT_IO_MODEL, p, tag, &e));
    TRY(who, bt_pipeline_load_head(scp, BT_IO_SCALER, p, tag, &sc));
    TRY(who, bt_client_decrypt_model(c, &e, &sc, &h));
    TRY(who, bt_pipeline_save_head(outp, BT_IO_PLAIN_MODEL, p, &h));
    if (json) {
      const bt_cli_json_field fl[] = {{"epoch", e.epoch}, {"classes", C}, {"features", tag->features}};
      print_json("model", outp, fl, sizeof fl / sizeof *fl);
    } else
      printf("decrypt: model of epoch %d (%d classes x %d features) -> %s\n", e.epoch, C, tag->features, outp);
  } else {
    TRY(who, bt_pipeline_load_logits(logits, p, tag, &lg));
    z = malloc(zbytes = (size_t)lg.rows * C * sizeof *z);
    pred = malloc((size_t)lg.rows * sizeof *pred);
    if (!z || !pred) FAIL(who, "out of memory");
    TRY(who, bt_client_decrypt_logits(c, &lg, z));
    bt_logits_argmax(z, (size_t)lg.rows, C, pred);
    const int64_t zs[2] = {lg.rows, C}, ps[1] = {lg.rows};
    TRY(who, bt_npy_write_f32(outp, z, 2, zs));
    if (preds) {
      bt_status st = bt_npy_write_i64(preds, pred, 1, ps);
      if (st) {
        unlink(outp);
        TRY(who, st);
      }
    }
    if (json) {
      const bt_cli_json_field fl[] = {{"rows", lg.rows}, {"classes", C}};
      print_json("logits", outp, fl, sizeof fl / sizeof *fl);
    } else
      printf("decrypt: logits of %d rows x %d classes -> %s%s%s\n", lg.rows, C, outp,
             preds ? ", predictions -> " : "", preds ? preds : "");
  }
  rc = 0;
out:
  bt_plain_head_clear(&h);
  bt_plain_head_clear(&sc);
  bt_ciphertext_free(e.ct);
  bt_enc_logits_clear(&lg);
  bt_client_free(c);
  bt_free_secret(z, zbytes); /* decrypted */
  free(pred);
  return rc;
}

/* ================================================================ evaluate, predict */
static int load_head_and_features(const char *who, const char *model, const char *fpath, bt_plain_head *h, float **f,
                                  size_t *n) {
  size_t dim;
  if (bt_pipeline_load_head(model, BT_IO_PLAIN_MODEL, NULL, NULL, h) != BT_OK) {
    fprintf(stderr, "blindtuner %s: %s\n", who, bt_last_error());
    return 1;
  }
  if (bt_cli_load_features(who, fpath, f, n, &dim)) return 1;
  if ((int)dim != h->dim) {
    fprintf(stderr, "blindtuner %s: %s has %zu features per row, the model %d\n", who, fpath, dim, h->dim);
    return 1;
  }
  return 0;
}

static void evaluate_help(void) {
  printf("usage: blindtuner evaluate --model HEAD --features F.npy --labels L.npy [options]\n"
         "\n"
         "Client.  Tests a decrypted model (`blindtuner decrypt --model`) on plaintext features:\n"
         "accuracy, mean cross-entropy and per-class accuracy.\n"
         "\n"
         "  --model FILE      the decrypted model\n"
         "  --features FILE   features (.npy, float32 n x D)\n"
         "  --labels FILE     labels (.npy, int64)\n"
         "  --reference FILE  another decrypted model: also print the largest weight difference\n"
         "  --tolerance T     with --reference: fail (exit 1) when that difference exceeds T\n"
         "  --json            print the results as JSON\n");
}

int bt_cli_evaluate(int argc, char **argv) {
  const char *who = "evaluate", *model = NULL, *fpath = NULL, *lpath = NULL, *refp = NULL;
  double tol = -1;
  int json = 0;
  const bt_cli_opt opts[] = {{"--model", BT_OPT_STR, &model, 0, 0},      {"--features", BT_OPT_STR, &fpath, 0, 0},
                             {"--labels", BT_OPT_STR, &lpath, 0, 0},     {"--reference", BT_OPT_STR, &refp, 0, 0},
                             {"--tolerance", BT_OPT_DBL, &tol, 0, 1e300}, {"--json", BT_OPT_FLAG, &json, 0, 0},
                             {0}};
  int r = bt_cli_parse(who, argc, argv, opts, evaluate_help);
  if (r) return r == 1 ? 0 : 2;
  if (bt_cli_need(who, "--model", model) || bt_cli_need(who, "--features", fpath) ||
      bt_cli_need(who, "--labels", lpath))
    return 2;
  if (tol >= 0 && !refp) {
    fprintf(stderr, "blindtuner evaluate: --tolerance needs --reference\n");
    return 2;
  }
  int rc = 1;
  bt_plain_head h = {0}, ref = {0};
  float *f = NULL;
  int *y = NULL;
  size_t n = 0;
  long *right = NULL, *count = NULL;
  if (load_head_and_features(who, model, fpath, &h, &f, &n)) goto out;
  if (bt_cli_load_labels(who, lpath, n, h.classes, &y)) goto out;
  const int C = h.classes;
  right = calloc((size_t)C, sizeof *right);
  count = calloc((size_t)C, sizeof *count);
  if (!right || !count) FAIL(who, "out of memory");
  double acc, loss;
  TRY(who, bt_plain_head_evaluate(&h, f, y, n, &acc, &loss, right, count));
  double diff = -1;
  if (refp) {
    if (bt_pipeline_load_head(refp, BT_IO_PLAIN_MODEL, NULL, NULL, &ref) != BT_OK) FAIL(who, "%s", bt_last_error());
    if (ref.dim != h.dim || ref.classes != h.classes) FAIL(who, "%s has another shape than %s", refp, model);
    diff = 0;
    for (size_t i = 0; i < (size_t)C * (size_t)(h.dim + 1); i++) diff = fmax(diff, fabs(h.w[i] - ref.w[i]));
  }
  if (json) {
    json_object *o = json_object_new_object(), *pc = json_object_new_array();
    for (int c = 0; c < C; c++) json_object_array_add(pc, bt_cli_json_number(count[c] ? (double)right[c] / count[c] : 0));
    json_object_object_add(o, "per_class_accuracy", pc);
    const bt_cli_json_field fl[] = {{"rows", (double)n}, {"accuracy", acc}, {"loss", loss}, {"epoch", h.epoch}};
    bt_cli_json_add_numbers(o, fl, sizeof fl / sizeof *fl);
    if (refp) json_object_object_add(o, "max_weight_diff", json_object_new_double(diff));
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else {
    printf("evaluate: %zu rows: accuracy %.2f %%, mean cross-entropy %.5f (model of epoch %d)\n", n, 100 * acc, loss,
           h.epoch);
    for (int c = 0; c < C; c++)
      if (count[c]) printf("evaluate:   class %d: %.2f %% of %ld\n", c, 100.0 * right[c] / count[c], count[c]);
    if (refp)
      printf("evaluate: largest weight difference from %s: %.3e (%.1f bits)\n", refp, diff,
             diff > 0 ? -log2(diff) : 64.0);
  }
  if (tol >= 0 && !(diff <= tol)) FAIL(who, "weights differ from %s by %.3e, more than the tolerance %.3e", refp, diff, tol);
  rc = 0;
out:
  bt_plain_head_clear(&h);
  bt_plain_head_clear(&ref);
  free(f), free(y), free(right), free(count);
  return rc;
}

static void predict_help(void) {
  printf("usage: blindtuner predict --model HEAD --features F.npy --out P.npy [--probabilities Q.npy]\n"
         "\n"
         "Client.  Labels plaintext features with a decrypted model: P.npy gets the predicted\n"
         "labels (int64, n), Q.npy the softmax probabilities (float32, n x C).  --json prints\n"
         "the number of rows predicted per class as JSON.\n");
}

int bt_cli_predict(int argc, char **argv) {
  const char *who = "predict", *model = NULL, *fpath = NULL, *outp = NULL, *probp = NULL;
  int json = 0;
  const bt_cli_opt opts[] = {{"--json", BT_OPT_FLAG, &json, 0, 0},
                             {"--model", BT_OPT_STR, &model, 0, 0},
                             {"--features", BT_OPT_STR, &fpath, 0, 0},
                             {"--out", BT_OPT_STR, &outp, 0, 0},
                             {"--probabilities", BT_OPT_STR, &probp, 0, 0},
                             {0}};
  int r = bt_cli_parse(who, argc, argv, opts, predict_help);
  if (r) return r == 1 ? 0 : 2;
  if (bt_cli_need(who, "--model", model) || bt_cli_need(who, "--features", fpath) || bt_cli_need(who, "--out", outp))
    return 2;
  if (bt_cli_failed(who, bt_io_refuse_secret(outp, "predictions")) ||
      (probp && bt_cli_failed(who, bt_io_refuse_secret(probp, "probabilities"))))
    return 1;
  int rc = 1;
  bt_plain_head h = {0};
  float *f = NULL, *q = NULL;
  int64_t *pred = NULL;
  size_t n = 0;
  if (load_head_and_features(who, model, fpath, &h, &f, &n)) goto out;
  const int C = h.classes;
  q = malloc(n * (size_t)C * sizeof *q);
  pred = malloc(n * sizeof *pred);
  if (!q || !pred) FAIL(who, "out of memory");
  TRY(who, bt_plain_head_predict(&h, f, n, pred, q));
  const int64_t ps[1] = {(int64_t)n}, qs[2] = {(int64_t)n, C};
  TRY(who, bt_npy_write_i64(outp, pred, 1, ps));
  if (probp) {
    bt_status st = bt_npy_write_f32(probp, q, 2, qs);
    if (st) {
      unlink(outp);
      TRY(who, st);
    }
  }
  if (json) {
    json_object *o = json_object_new_object(), *per = json_object_new_array();
    for (int c = 0; c < C; c++) {
      long k = 0;
      for (size_t i = 0; i < n; i++) k += pred[i] == c;
      json_object_array_add(per, json_object_new_int64(k));
    }
    json_object_object_add(o, "rows", json_object_new_int64((int64_t)n));
    json_object_object_add(o, "predicted_per_class", per);
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else {
    printf("predict: %zu rows -> %s%s%s\n", n, outp, probp ? ", probabilities -> " : "", probp ? probp : "");
  }
  rc = 0;
out:
  bt_plain_head_clear(&h);
  free(f), free(q), free(pred);
  return rc;
}

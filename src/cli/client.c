/* The client's subcommands: keygen, encrypt, decide, decrypt, evaluate,
 * predict.  Everything here may hold the secret key or plaintext data and
 * runs on the client's machine only (docs/PIPELINE.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "blindtuner/vision_data.h"
#include "cli/cli.h"

#define FAIL(who, ...)                                  \
  do {                                                  \
    fprintf(stderr, "blindtuner %s: ", who);            \
    fprintf(stderr, __VA_ARGS__);                       \
    fputc('\n', stderr);                                \
    goto out;                                           \
  } while (0)
#define TRY(who, expr)                                                                 \
  do {                                                                                 \
    bt_status st_ = (expr);                                                            \
    if (st_ != BT_OK) FAIL(who, "%s (%s)", bt_last_error(), bt_status_name(st_));      \
  } while (0)

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
  if (!strcmp(secret, evalp)) {
    fprintf(stderr, "blindtuner keygen: --secret and --eval must be different files\n");
    return 2;
  }
  if (!force && bt_cli_exists(secret)) {
    fprintf(stderr, "blindtuner keygen: %s exists; replacing a secret bundle makes everything encrypted under it "
                    "undecryptable (use --force)\n", secret);
    return 1;
  }
  int rc = 1, wrote_eval = 0;
  bt_ckks_params *p = NULL;
  bt_hemat_layout L;
  bt_softmax_approx sa = {0};
  bt_bootstrapper *bs = NULL;
  bt_trainer *t = NULL;
  bt_prng g;
  bt_secret_bundle sb = {0};
  bt_eval_bundle eb = {0};
  bt_prng_init_random(&g);
  const double t0 = bt_seconds();
  bt_ckks_literal lit;
  TRY(who, bt_ckks_preset(preset, &lit));
  TRY(who, bt_ckks_params_new(&lit, insecure ? BT_ALLOW_INSECURE : 0, &p));
  bt_ckks_set_threads(p, threads ? threads : bt_default_threads());
  bt_io_tag tag = {.batch = batch, .features = dim + 1, .classes = classes};
  bt_random_bytes(tag.keyset, sizeof tag.keyset);
  TRY(who, bt_cli_layout(p, &tag, &L, &sa));
  /* the rotations bootstrapping and training need */
  bt_bootstrap_config cfg;
  TRY(who, bt_trainer_bootstrap_config(p, &L, &cfg));
  TRY(who, bt_bootstrapper_new(p, &cfg, bt_ckks_default_scale(p), &bs));
  TRY(who, bt_trainer_new(p, &L, &sa, bs, 0.1, 0, &t));
  sb.tag = eb.tag = tag;
  TRY(who, bt_cli_training_keys(p, bs, t, cfg.encaps_hamming_weight, &g, &sb.sk, &eb.ek, &eb.to_sparse,
                                &eb.to_dense));
  TRY(who, bt_io_save_eval_bundle(evalp, &eb));
  wrote_eval = 1;
  TRY(who, bt_io_save_secret_bundle(secret, &sb));
  wrote_eval = 0;
  char id[2 * BT_KEYSET_ID_BYTES + 1];
  for (int i = 0; i < BT_KEYSET_ID_BYTES; i++) sprintf(id + 2 * i, "%02x", tag.keyset[i]);
  const double secs = bt_seconds() - t0;
  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "keyset", json_object_new_string(id));
    json_object_object_add(o, "preset", json_object_new_string(preset));
    json_object_object_add(o, "secret", json_object_new_string(secret));
    json_object_object_add(o, "eval", json_object_new_string(evalp));
    const bt_cli_json_field f[] = {{"batch", batch}, {"features", dim + 1}, {"classes", classes},
                                   {"galois_keys", (double)eb.ek->ngalois},
                                   {"bootstrap_logslots", bt_bootstrap_logslots(bs)}, {"folded", L.fold},
                                   {"seconds", secs}};
    bt_cli_json_add_numbers(o, f, sizeof f / sizeof *f);
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else {
    printf("keygen: key set %s, preset %s%s (N = 2^%d), layout %d rows x %d features x %d classes%s\n"
           "        %s: secret bundle (mode 0600, keep it here)\n"
           "        %s: evaluation bundle for the server (%zu rotation keys%s; bootstrapping 2^%d slots), "
           "%.1f s\n",
           id, preset, lit.insecure ? " (INSECURE)" : "", bt_ckks_logn(p), batch, dim + 1, classes,
           L.fold ? ", folded softmax" : "", secret, evalp, eb.ek->ngalois,
           eb.to_sparse ? ", encapsulation keys" : "", bt_bootstrap_logslots(bs), secs);
  }
  rc = 0;
out:
  if (wrote_eval) unlink(evalp); /* no half of a key set */
  bt_secret_bundle_clear(&sb);
  bt_eval_bundle_clear(&eb);
  bt_trainer_free(t);
  bt_bootstrapper_free(bs);
  bt_softmax_approx_free(&sa);
  bt_prng_wipe(&g);
  bt_ckks_params_free(p);
  return rc;
}

/* ================================================================ encrypt */
static void encrypt_help(void) {
  printf("usage: blindtuner encrypt --keys SECRET --role ROLE --features F.npy [--labels L.npy]\n"
         "                          --scaler FILE --out FILE [options]\n"
         "\n"
         "Client.  Standardises features, appends the bias column, packs them and one-hot labels\n"
         "into batches and encrypts them under the secret bundle's key (F.npy: float32 n x D as\n"
         "`blindtuner extract` writes it, L.npy: int64 labels 0..C-1).\n"
         "\n"
         "  --keys FILE      the secret bundle (blindtuner keygen --secret)\n"
         "  --role ROLE      train, val or test\n"
         "                     train: rows are shuffled (--seed) and the standardisation (mean and\n"
         "                            deviation of each feature over these rows) is written to\n"
         "                            --scaler, a client-side file (mode 0600)\n"
         "                     val, test: rows keep their order; the standardisation is read from\n"
         "                            --scaler; test labels are optional\n"
         "  --features FILE  features (.npy)\n"
         "  --labels FILE    labels (.npy)\n"
         "  --scaler FILE    the standardisation (written for train, read otherwise)\n"
         "  --out FILE       the encrypted dataset, for the server\n"
         "  --seed S         shuffle seed for train (default: random)\n"
         "  --threads N      threads (default BT_THREADS or all cores)\n"
         "  --json           print what was written as JSON\n");
}

int bt_cli_encrypt(int argc, char **argv) {
  const char *who = "encrypt", *keys = NULL, *role_s = NULL, *fpath = NULL, *lpath = NULL, *scp = NULL, *outp = NULL;
  int seed = -1, threads = 0, json = 0;
  const bt_cli_opt opts[] = {{"--keys", BT_OPT_STR, &keys, 0, 0},      {"--role", BT_OPT_STR, &role_s, 0, 0},
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
  bt_ckks_params *p = NULL;
  bt_secret_bundle sb = {0};
  bt_plain_head sc = {0};
  bt_hemat_layout L;
  bt_trainer *t = NULL;
  bt_softmax_approx sa = {0};
  bt_enc_dataset d = {0};
  float *f = NULL;
  int *y = NULL, *perm = NULL;
  double *rows = NULL, *slots = NULL;
  size_t n = 0, dim = 0;
  bt_prng g;
  bt_prng_init_random(&g);
  const double t0 = bt_seconds();
  TRY(who, bt_io_load_secret_bundle(keys, BT_ALLOW_INSECURE, &p, &sb));
  bt_ckks_set_threads(p, threads ? threads : bt_default_threads());
  const bt_io_tag *tag = &sb.tag;
  if (bt_cli_load_features(who, fpath, &f, &n, &dim)) goto out;
  if ((int)dim + 1 != tag->features)
    FAIL(who, "%s has %zu features per row, the keys were made for %d", fpath, dim, tag->features - 1);
  if (lpath && bt_cli_load_labels(who, lpath, n, tag->classes, &y)) goto out;
  if (n > (size_t)1 << 30) FAIL(who, "too many rows");
  TRY(who, bt_cli_layout(p, tag, &L, &sa));
  TRY(who, bt_trainer_new(p, &L, &sa, NULL, 0.1, 0, &t)); /* only for its levels */
  /* the standardisation */
  if (role == BT_SET_TRAIN) {
    sc.tag = *tag;
    sc.dim = (int)dim;
    sc.classes = tag->classes;
    sc.mean = calloc(dim, sizeof *sc.mean);
    sc.sd = calloc(dim, sizeof *sc.sd);
    if (!sc.mean || !sc.sd) FAIL(who, "out of memory");
    for (size_t j = 0; j < dim; j++) {
      double s = 0, s2 = 0;
      for (size_t i = 0; i < n; i++) s += f[i * dim + j];
      s /= (double)n;
      for (size_t i = 0; i < n; i++) s2 += (f[i * dim + j] - s) * (f[i * dim + j] - s);
      sc.mean[j] = s;
      sc.sd[j] = sqrt(s2 / (double)n) + 1e-6;
    }
  } else {
    TRY(who, bt_io_load_head(scp, BT_IO_SCALER, p, tag, &sc));
  }
  /* row order: shuffled for training */
  perm = malloc(n * sizeof *perm);
  if (!perm) FAIL(who, "out of memory");
  for (size_t i = 0; i < n; i++) perm[i] = (int)i;
  if (role == BT_SET_TRAIN) {
    bt_prng sg;
    uint8_t s[BT_SEED_BYTES] = {'r', 'o', 'w', 's'};
    if (seed >= 0) {
      const uint64_t s64 = (uint64_t)seed;
      memcpy(s + 8, &s64, sizeof s64);
      bt_prng_init(&sg, s);
    } else {
      bt_prng_init_random(&sg);
    }
    for (size_t i = n - 1; i > 0; i--) {
      const size_t j = (size_t)(bt_prng_u64(&sg) % (uint64_t)(i + 1));
      const int tmp = perm[i];
      perm[i] = perm[j], perm[j] = tmp;
    }
    bt_prng_wipe(&sg);
  }
  const int B = tag->batch, F = tag->features, C = tag->classes;
  d.tag = *tag;
  d.role = role;
  d.rows = (int)n;
  d.nx = L.nb;
  d.labelled = y != NULL;
  d.nbatches = (int)((n + (size_t)B - 1) / (size_t)B);
  d.b = calloc((size_t)d.nbatches, sizeof *d.b);
  rows = malloc((size_t)B * (size_t)(F > C ? F : C) * sizeof *rows);
  slots = malloc(L.slots * sizeof *slots);
  if (!d.b || !rows || !slots) FAIL(who, "out of memory");
  const int tty = isatty(2);
  for (int k = 0; k < d.nbatches; k++) {
    bt_enc_batch *b = &d.b[k];
    const size_t first = (size_t)k * B;
    b->rows = (int)(n - first < (size_t)B ? n - first : (size_t)B);
    if (!(b->x = calloc((size_t)L.nb, sizeof *b->x))) FAIL(who, "out of memory");
    memset(rows, 0, (size_t)B * F * sizeof *rows);
    for (int i = 0; i < b->rows; i++) {
      const float *src = f + (size_t)perm[first + (size_t)i] * dim;
      for (size_t j = 0; j < dim; j++) rows[(size_t)i * F + j] = ((double)src[j] - sc.mean[j]) / sc.sd[j];
      rows[(size_t)i * F + dim] = 1;
    }
    for (int j = 0; j < L.nb; j++) {
      bt_hemat_pack_x(&L, rows, j, slots);
      TRY(who, bt_cli_encrypt_slots(p, &L, sb.sk, &g, slots, bt_trainer_x_level(t), &b->x[j]));
    }
    if (y) {
      memset(rows, 0, (size_t)B * C * sizeof *rows);
      for (int i = 0; i < b->rows; i++) rows[(size_t)i * C + y[perm[first + (size_t)i]]] = 1;
      bt_hemat_pack_diag(&L, rows, slots);
      TRY(who, bt_cli_encrypt_slots(p, &L, sb.sk, &g, slots, bt_trainer_y_level(t), &b->y));
    }
    char what[64];
    snprintf(what, sizeof what, "batch %d/%d encrypted", k + 1, d.nbatches);
    if (tty || d.nbatches > 1) bt_cli_progress(who, tty, k + 1, d.nbatches, t0, what);
  }
  TRY(who, bt_io_save_dataset(outp, &d));
  if (role == BT_SET_TRAIN) {
    bt_status st = bt_io_save_head(scp, BT_IO_SCALER, p, &sc);
    if (st) {
      unlink(outp); /* a training set without its scaler could not be used */
      TRY(who, st);
    }
  }
  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "role", json_object_new_string(bt_set_role_name(role)));
    json_object_object_add(o, "out", json_object_new_string(outp));
    if (role == BT_SET_TRAIN) json_object_object_add(o, "scaler", json_object_new_string(scp));
    const bt_cli_json_field fl[] = {{"rows", (double)n}, {"batches", d.nbatches}, {"labelled", y != NULL},
                                    {"seconds", bt_seconds() - t0}};
    bt_cli_json_add_numbers(o, fl, sizeof fl / sizeof *fl);
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else {
    printf("encrypt: %s set of %zu rows%s in %d batch%s of %d -> %s (%.1f s)%s%s\n", bt_set_role_name(role), n,
           y ? " with labels" : "", d.nbatches, d.nbatches > 1 ? "es" : "", B, outp, bt_seconds() - t0,
           role == BT_SET_TRAIN ? "; standardisation -> " : "", role == BT_SET_TRAIN ? scp : "");
  }
  rc = 0;
out:
  bt_enc_dataset_clear(&d);
  bt_secret_bundle_clear(&sb);
  bt_plain_head_clear(&sc);
  bt_trainer_free(t);
  bt_softmax_approx_free(&sa);
  bt_prng_wipe(&g);
  bt_ckks_params_free(p);
  free(f), free(y), free(perm);
  free(rows), free(slots);
  return rc;
}

/* ================================================================ decide */
static void decide_help(void) {
  printf("usage: blindtuner decide --keys SECRET --workdir DIR [--patience P] [--json]\n"
         "\n"
         "Client: the early-stopping half of the protocol.  Decrypts the encrypted validation\n"
         "losses the server wrote (DIR/loss-001.bt, loss-002.bt, ...), keeps them to itself, and\n"
         "writes one bit for the latest epoch, continue or stop, to DIR/answer-EEE.bt for the\n"
         "server.  It stops once P epochs in a row have not improved on the best loss, and\n"
         "names the best epoch, whose model (DIR/model-EEE.bt) the client should decrypt.\n"
         "No decrypted value ever goes back (CKKS decryptions could leak the key).\n"
         "\n"
         "  --keys FILE      the secret bundle\n"
         "  --workdir DIR    the exchange directory of `blindtuner train`\n"
         "  --patience P     epochs without improvement before stopping (default 3)\n"
         "  --json           print the losses and the decision as JSON\n");
}

int bt_cli_decide(int argc, char **argv) {
  const char *who = "decide", *keys = NULL, *dir = NULL;
  int patience = 3, json = 0;
  const bt_cli_opt opts[] = {{"--keys", BT_OPT_STR, &keys, 0, 0},
                             {"--workdir", BT_OPT_STR, &dir, 0, 0},
                             {"--patience", BT_OPT_INT, &patience, 1, 100000},
                             {"--json", BT_OPT_FLAG, &json, 0, 0},
                             {0}};
  int r = bt_cli_parse(who, argc, argv, opts, decide_help);
  if (r) return r == 1 ? 0 : 2;
  if (bt_cli_need(who, "--keys", keys) || bt_cli_need(who, "--workdir", dir)) return 2;
  int rc = 1;
  bt_ckks_params *p = NULL;
  bt_secret_bundle sb = {0};
  bt_hemat_layout L;
  double *re = NULL, *losses = NULL;
  char path[4096];
  json_object *ja = json_object_new_array();
  TRY(who, bt_io_load_secret_bundle(keys, BT_ALLOW_INSECURE, &p, &sb));
  TRY(who, bt_cli_layout(p, &sb.tag, &L, NULL));
  re = malloc(L.slots * sizeof *re);
  if (!re) FAIL(who, "out of memory");
  int n = 0;
  for (;; n++) {
    bt_cli_path(path, sizeof path, dir, "loss", n + 1);
    if (!bt_cli_exists(path)) break;
    double *grown = realloc(losses, (size_t)(n + 1) * sizeof *losses);
    if (!grown) FAIL(who, "out of memory");
    losses = grown;
    bt_enc_epoch e;
    TRY(who, bt_io_load_epoch(path, BT_IO_LOSS, p, &sb.tag, &e));
    bt_status st = e.epoch == n + 1 ? bt_cli_decrypt_slots(sb.sk, e.ct, &L, re, NULL)
                                    : bt_fail(BT_E_FORMAT, "%s holds the loss of epoch %d", path, e.epoch);
    bt_ciphertext_free(e.ct);
    TRY(who, st);
    losses[n] = re[0];
  }
  if (!n) FAIL(who, "no validation loss in %s (expected %s/loss-001.bt)", dir, dir);
  bt_early_stop es;
  bt_early_stop_init(&es, patience);
  int go_on = 1;
  for (int e = 0; e < n; e++) {
    go_on = bt_early_stop_update(&es, losses[e]);
    if (!go_on && e + 1 < n) FAIL(who, "the server trained past epoch %d, where the answer was stop", e + 1);
    json_object *je = json_object_new_object();
    json_object_object_add(je, "epoch", json_object_new_int(e + 1));
    json_object_object_add(je, "val_loss", json_object_new_double(losses[e]));
    json_object_array_add(ja, je);
    if (!json) printf("decide: epoch %3d  validation loss %.6f%s\n", e + 1, losses[e], es.best_epoch == e ? "  (best)" : "");
  }
  bt_answer ans = {.tag = sb.tag, .epoch = n, .go_on = go_on};
  bt_cli_path(path, sizeof path, dir, "answer", n);
  TRY(who, bt_io_save_answer(path, p, &ans));
  char best[4096];
  bt_cli_path(best, sizeof best, dir, "model", es.best_epoch + 1);
  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "epochs", ja);
    ja = NULL;
    json_object_object_add(o, "continue", json_object_new_boolean(go_on));
    json_object_object_add(o, "best_epoch", json_object_new_int(es.best_epoch + 1));
    json_object_object_add(o, "best_model", json_object_new_string(best));
    json_object_object_add(o, "answer", json_object_new_string(path));
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else {
    printf("decide: answer for epoch %d: %s -> %s\n"
           "decide: best epoch so far %d: %s\n",
           n, go_on ? "continue" : "stop", path, es.best_epoch + 1, best);
  }
  rc = 0;
out:
  json_object_put(ja);
  bt_secret_bundle_clear(&sb);
  bt_ckks_params_free(p);
  free(re), free(losses);
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
         "    with the standardisation of --scaler, for `evaluate` and `predict` (mode 0600);\n"
         "  encrypted logits (`infer`): writes them as float32 n x C .npy and, with\n"
         "    --predictions, the predicted labels as int64 .npy.\n"
         "\n"
         "  --keys FILE        the secret bundle\n"
         "  --model FILE       an encrypted model\n"
         "  --scaler FILE      the standardisation written by `encrypt --role train`\n"
         "  --logits FILE      encrypted logits\n"
         "  --out FILE         the output\n"
         "  --predictions FILE predicted labels (with --logits)\n"
         "  --json             print what was written as JSON\n");
}

int bt_cli_decrypt(int argc, char **argv) {
  const char *who = "decrypt", *keys = NULL, *model = NULL, *scp = NULL, *logits = NULL, *outp = NULL,
             *preds = NULL;
  int json = 0;
  const bt_cli_opt opts[] = {{"--json", BT_OPT_FLAG, &json, 0, 0},
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
  int rc = 1;
  bt_ckks_params *p = NULL;
  bt_secret_bundle sb = {0};
  bt_hemat_layout L;
  bt_plain_head h = {0};
  bt_enc_epoch e = {0};
  bt_enc_logits lg = {0};
  double *slots = NULL, *z = NULL;
  float *zf = NULL;
  int64_t *pred = NULL;
  TRY(who, bt_io_load_secret_bundle(keys, BT_ALLOW_INSECURE, &p, &sb));
  TRY(who, bt_cli_layout(p, &sb.tag, &L, NULL));
  const int B = sb.tag.batch, C = sb.tag.classes;
  slots = malloc(L.slots * sizeof *slots);
  if (!slots) FAIL(who, "out of memory");
  if (model) {
    TRY(who, bt_io_load_epoch(model, BT_IO_MODEL, p, &sb.tag, &e));
    TRY(who, bt_io_load_head(scp, BT_IO_SCALER, p, &sb.tag, &h));
    if (!(h.w = calloc((size_t)C * (size_t)sb.tag.features, sizeof *h.w))) FAIL(who, "out of memory");
    TRY(who, bt_cli_decrypt_slots(sb.sk, e.ct, &L, NULL, slots)); /* W = Im(A) */
    bt_hemat_unpack_w(&L, slots, h.w);
    h.epoch = e.epoch;
    TRY(who, bt_io_save_head(outp, BT_IO_PLAIN_MODEL, p, &h));
    if (json) {
      const bt_cli_json_field fl[] = {{"epoch", e.epoch}, {"classes", C}, {"features", sb.tag.features}};
      print_json("model", outp, fl, sizeof fl / sizeof *fl);
    } else
      printf("decrypt: model of epoch %d (%d classes x %d features) -> %s\n", e.epoch, C, sb.tag.features, outp);
  } else {
    TRY(who, bt_io_load_logits(logits, p, &sb.tag, &lg));
    z = malloc((size_t)B * C * sizeof *z);
    zf = malloc((size_t)lg.rows * C * sizeof *zf);
    pred = malloc((size_t)lg.rows * sizeof *pred);
    if (!z || !zf || !pred) FAIL(who, "out of memory");
    size_t row = 0;
    for (int k = 0; k < lg.nbatches; k++) {
      TRY(who, bt_cli_decrypt_slots(sb.sk, lg.z[k], &L, slots, NULL));
      bt_hemat_unpack_logits(&L, slots, z);
      for (int i = 0; i < lg.batch_rows[k]; i++, row++) {
        int best = 0;
        for (int c = 0; c < C; c++) {
          zf[row * C + (size_t)c] = (float)z[i * C + c];
          if (z[i * C + c] > z[i * C + best]) best = c;
        }
        pred[row] = best;
      }
    }
    const int64_t zs[2] = {lg.rows, C}, ps[1] = {lg.rows};
    TRY(who, bt_npy_write_f32(outp, zf, 2, zs));
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
  bt_secret_bundle_clear(&sb);
  bt_plain_head_clear(&h);
  bt_ciphertext_free(e.ct);
  bt_enc_logits_clear(&lg);
  bt_ckks_params_free(p);
  free(slots), free(z), free(zf), free(pred);
  return rc;
}

/* ================================================================ evaluate, predict */
/* Logits of n rows of raw features through a head: z (n x C). */
static void head_logits(const bt_plain_head *h, const float *f, size_t n, double *z) {
  const int D = h->dim, C = h->classes, F = D + 1;
  for (size_t i = 0; i < n; i++)
    for (int c = 0; c < C; c++) {
      const double *w = h->w + (size_t)c * F;
      double s = w[D];
      for (int j = 0; j < D; j++) s += w[j] * (((double)f[i * D + j] - h->mean[j]) / h->sd[j]);
      z[i * C + c] = s;
    }
}

static int load_head_and_features(const char *who, const char *model, const char *fpath, bt_plain_head *h, float **f,
                                  size_t *n) {
  size_t dim;
  if (bt_io_load_head(model, BT_IO_PLAIN_MODEL, NULL, NULL, h) != BT_OK) {
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
  double *z = NULL;
  size_t n = 0;
  long *right = NULL, *count = NULL;
  if (load_head_and_features(who, model, fpath, &h, &f, &n)) goto out;
  if (bt_cli_load_labels(who, lpath, n, h.classes, &y)) goto out;
  const int C = h.classes;
  z = malloc(n * (size_t)C * sizeof *z);
  right = calloc((size_t)C, sizeof *right);
  count = calloc((size_t)C, sizeof *count);
  if (!z || !right || !count) FAIL(who, "out of memory");
  head_logits(&h, f, n, z);
  double loss = 0;
  long ok = 0;
  for (size_t i = 0; i < n; i++) {
    const double *zi = z + i * (size_t)C;
    int best = 0;
    double m = zi[0], s = 0;
    for (int c = 1; c < C; c++) {
      if (zi[c] > zi[best]) best = c;
      if (zi[c] > m) m = zi[c];
    }
    for (int c = 0; c < C; c++) s += exp(zi[c] - m);
    loss += log(s) + m - zi[y[i]];
    count[y[i]]++;
    if (best == y[i]) ok++, right[y[i]]++;
  }
  loss /= (double)n;
  const double acc = (double)ok / (double)n;
  double diff = -1;
  if (refp) {
    if (bt_io_load_head(refp, BT_IO_PLAIN_MODEL, NULL, NULL, &ref) != BT_OK) FAIL(who, "%s", bt_last_error());
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
  free(f), free(y), free(z), free(right), free(count);
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
  int rc = 1;
  bt_plain_head h = {0};
  float *f = NULL, *q = NULL;
  double *z = NULL;
  int64_t *pred = NULL;
  size_t n = 0;
  if (load_head_and_features(who, model, fpath, &h, &f, &n)) goto out;
  const int C = h.classes;
  z = malloc(n * (size_t)C * sizeof *z);
  q = malloc(n * (size_t)C * sizeof *q);
  pred = malloc(n * sizeof *pred);
  if (!z || !q || !pred) FAIL(who, "out of memory");
  head_logits(&h, f, n, z);
  for (size_t i = 0; i < n; i++) {
    double p[4096];
    bt_softmax_exact_row(C, z + i * (size_t)C, p);
    int best = 0;
    for (int c = 0; c < C; c++) {
      q[i * (size_t)C + (size_t)c] = (float)p[c];
      if (p[c] > p[best]) best = c;
    }
    pred[i] = best;
  }
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
  free(f), free(q), free(z), free(pred);
  return rc;
}

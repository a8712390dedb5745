/* `blindtuner demo`: the whole private fine-tuning pipeline in one process,
 * on the embedded default (Fashion-MNIST classes 5-9, the bundled DeiT).
 *
 * The two roles are kept apart in the code even though they share a
 * process: the client (extract, standardise and whiten, keygen, encrypt, decrypt,
 * decide) holds the secret key; the server (train, validation loss,
 * inference) gets an evaluator built on evaluation keys only and touches
 * ciphertexts only.  The one thing that flows back each epoch is the
 * client's early-stopping bit.  Beside the encrypted run the client trains
 * the plaintext twin (same approximations, same batches, same order) and the
 * exact reference, and prints the three test accuracies side by side. */
#include <complex.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <json-c/json.h>

#include "blindtuner/train.h"
#include "blindtuner/vision_data.h"
#include "cli.h"

static void help(void) {
  printf("usage: blindtuner demo [options]\n"
         "\n"
         "Runs private fine-tuning end to end, client and server in one process:\n"
         "  client  extracts transformer features of Fashion-MNIST (classes 5-9 by default)\n"
         "          with the bundled DeiT, standardises and whitens them, generates keys, encrypts the\n"
         "          training and validation batches and zero initial weights;\n"
         "  server  trains the softmax head on ciphertexts only (evaluation keys, bootstrapping),\n"
         "          epoch by epoch over client-shuffled batches in a new order each epoch, and\n"
         "          computes the encrypted validation loss after each epoch;\n"
         "  client  decrypts that loss and answers one bit, continue or stop (early stopping with\n"
         "          patience P); at the end decrypts the model of its best epoch, tests it, and\n"
         "          has the server run encrypted inference on one batch of test images.\n"
         "Prints test accuracy of the decrypted model beside the plaintext twin (same\n"
         "approximations, same batches) and the exact reference (true softmax), the decrypted\n"
         "weights' precision against the twin, and where the time went.\n"
         "\n"
         "  --train N        training rows, drawn at random from the training split (default 2048)\n"
         "  --val N          validation rows, drawn from the rest of it (default 512)\n"
         "  --test N         test rows from the test split, 0 = all (default 0)\n"
         "  --batch B        rows per batch (default 1024)\n"
         "  --epochs E       at most E epochs (default 2)\n"
         "  --patience P     stop after P epochs without a better validation loss (default 3)\n"
         "  --lr X           learning rate (default 0.3)\n"
         "  --momentum X     Nesterov momentum (default 0.9)\n"
         "  --softmax-range R\n"
         "                   the logits' range the softmax approximation covers (default 32;\n"
         "                   the twin's largest logit is checked against it)\n"
         "  --no-whiten      standardise the features only (docs/TRAINING.md, \"Preconditioned features\")\n"
         "  --ridge R        the whitening's regularisation (default 2e-3 x features / training rows,\n"
         "                   within [1e-6, 1])\n"
         "  --classes LIST   labels to keep and renumber (default 5-9)\n"
         "  --dataset NAME   fashion-mnist (default) or mnist\n"
         "  --feature F      transformer feature: mean (default), cls, ...\n"
         "  --model FILE     DeiT/ViT safetensors (default: the bundled one)\n"
         "  --preset NAME    CKKS parameters (default train-n16, 128-bit)\n"
         "  --allow-insecure permit INSECURE test presets\n"
         "  --seed S         the client's sampling and row order and the server's batch order\n"
         "                   (default 1), as `encrypt --seed S` and `train --seed S` use them;\n"
         "                   keys and encryption randomness are always fresh\n"
         "  --threads N      threads (default BT_THREADS or all cores)\n"
         "  --json           print the report as JSON on stdout (progress stays on stderr)\n"
         "  --save-features DIR  also write the rows used as DIR/{train,val,test}.{features,labels}.npy\n"
         "  --save-model FILE     also write the decrypted model (as `blindtuner decrypt` does)\n"
         "\n"
         "The full-size experiment: --train 24000 --val 6000 --epochs 20 (many hours on 2 cores).\n");
}

/* --save-features: the rows the demo trains, validates and tests on, as
 * `blindtuner extract` would write them (DIR/train.features.npy, ...). */
static int save_split(const char *dir, const char *name, const float *f, const int *y, size_t n, size_t dim) {
  char path[4096];
  int64_t *l = malloc(n * sizeof *l);
  if (!l) return -1;
  for (size_t i = 0; i < n; i++) l[i] = y[i];
  const int64_t fs[2] = {(int64_t)n, (int64_t)dim}, ls[1] = {(int64_t)n};
  snprintf(path, sizeof path, "%s/%s.features.npy", dir, name);
  bt_status st = bt_npy_write_f32(path, f, 2, fs);
  snprintf(path, sizeof path, "%s/%s.labels.npy", dir, name);
  if (!st) st = bt_npy_write_i64(path, l, 1, ls);
  free(l);
  return st ? -1 : 0;
}

/* The largest |logit| of rows x (rows x F) under weights v (C x F): what
 * the softmax approximation must cover at this step. */
static double max_abs_logit(const double *x, int rows, int F, int C, const double *v) {
  double m = 0;
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < C; c++) {
      double z = 0;
      for (int f = 0; f < F; f++) z += x[(size_t)r * F + f] * v[(size_t)c * F + f];
      m = fmax(m, fabs(z));
    }
  return m;
}

int bt_cli_demo(int argc, char **argv) {
  int ntrain = 2048, nval = 512, ntest = 0, B = 1024, epochs = 2, patience = 3, threads = 0, json = 0;
  int no_whiten = 0;
  double lr = 0.3, mu = 0.9, ridge = 0, zmax = 0, srange = 0;
  const char *preset = "train-n16", *classes = "5-9", *dataset = "fashion-mnist", *model = NULL;
  const char *save_features = NULL, *save_model = NULL;
  bt_vit_pool pool = BT_VIT_POOL_PATCH_MEAN;
  int seed_i = 1, insecure = 0;
  const char *pool_s = "mean";
  const bt_cli_opt opts[] = {{"--train", BT_OPT_INT, &ntrain, 2, 1 << 20},
                             {"--val", BT_OPT_INT, &nval, 1, 1 << 20},
                             {"--test", BT_OPT_INT, &ntest, 0, 1 << 20},
                             {"--batch", BT_OPT_INT, &B, 1, 1 << 16},
                             {"--epochs", BT_OPT_INT, &epochs, 1, 10000},
                             {"--patience", BT_OPT_INT, &patience, 1, 10000},
                             {"--threads", BT_OPT_INT, &threads, 1, 1024},
                             {"--seed", BT_OPT_INT, &seed_i, 0, INT_MAX},
                             {"--lr", BT_OPT_DBL, &lr, 1e-6, 1e3},
                             {"--momentum", BT_OPT_DBL, &mu, 0, 0.999},
                             {"--softmax-range", BT_OPT_DBL, &srange, 1, BT_MAX_SOFTMAX_BOUND},
                             {"--no-whiten", BT_OPT_FLAG, &no_whiten, 0, 0},
                             {"--ridge", BT_OPT_DBL, &ridge, 1e-12, 1e6},
                             {"--preset", BT_OPT_STR, &preset, 0, 0},
                             {"--classes", BT_OPT_STR, &classes, 0, 0},
                             {"--dataset", BT_OPT_STR, &dataset, 0, 0},
                             {"--feature", BT_OPT_STR, &pool_s, 0, 0},
                             {"--model", BT_OPT_STR, &model, 0, 0},
                             {"--save-features", BT_OPT_STR, &save_features, 0, 0},
                             {"--save-model", BT_OPT_STR, &save_model, 0, 0},
                             {"--allow-insecure", BT_OPT_FLAG, &insecure, 0, 0},
                             {"--json", BT_OPT_FLAG, &json, 0, 0},
                             {0}};
  const int parsed = bt_cli_parse("demo", argc, argv, opts, help);
  if (parsed) return parsed == 1 ? 0 : 2;
  if (strcmp(dataset, "fashion-mnist") && strcmp(dataset, "mnist")) {
    fprintf(stderr, "blindtuner demo: --dataset is fashion-mnist or mnist\n");
    return 2;
  }
  if (no_whiten && ridge > 0) {
    fprintf(stderr, "blindtuner demo: --ridge is the whitening's: it does not go with --no-whiten\n");
    return 2;
  }
  if (bt_vit_pool_parse(pool_s, &pool) != BT_OK) {
    fprintf(stderr, "blindtuner demo: %s\n", bt_last_error());
    return 2;
  }
  const uint64_t seed = (uint64_t)seed_i;
  const unsigned flags = insecure ? BT_ALLOW_INSECURE : 0;
  if (!threads) threads = bt_default_threads();
  const int tty = isatty(2);

  int rc = 1;
  char split[64];
  float *ftr = NULL, *fte = NULL;
  int64_t *ltr = NULL, *lte = NULL;
  size_t n_all = 0, n_te = 0, dim = 0, dim_te = 0;
  int *ytr = NULL, *yte = NULL, *order = NULL, *border = NULL;
  bt_ckks_params *pcheck = NULL;
  bt_client *cl = NULL;
  bt_eval_bundle eb = {0};
  bt_plain_head sc = {0}, head = {0};
  bt_enc_dataset tr = {0}, va = {0}, ts = {0};
  bt_enc_logits lg = {0};
  bt_job *job = NULL;
  bt_softmax_approx sa = {0};
  bt_hemat_layout L = {0};
  bt_ciphertext **hist = NULL;
  double *xtr = NULL, *xval = NULL, *xte = NULL, *tw_v = NULL, *tw_w = NULL, *ex_v = NULL, *ex_w = NULL;
  double **tw_hist = NULL, **ex_hist = NULL;
  float *zf = NULL;
  json_object *jepochs = json_object_new_array();
  bt_train_stats stats = {0};
  double t_extract = 0, t_setup = 0, t_encrypt = 0, t_train = 0, t_val = 0, t_infer = 0;
  double t_all = bt_seconds();

  /* parameters first: a refused preset costs nothing */
  bt_ckks_literal lit;
  TRY("demo", bt_ckks_preset(preset, &lit));
  TRY("demo", bt_ckks_params_new(&lit, flags, &pcheck));
  bt_ckks_params_free(pcheck);

  /* ---- client: features ---- */
  double t0 = bt_seconds();
  int C = 0;
  {
    bt_cli_features_req r = {.who = "demo", .quiet = json && !tty,
                             .req = {.model = model, .classes = classes, .pool = pool, .threads = threads,
                                     .sample = (size_t)ntrain + (size_t)nval, .seed = seed}};
    snprintf(split, sizeof split, "%s:train", dataset);
    r.req.data = split;
    if (bt_cli_features(&r, &ftr, &ltr, &n_all, &dim, &C)) goto out;
    snprintf(split, sizeof split, "%s:test", dataset);
    r.req.sample = (size_t)ntest;
    r.req.data = split;
    if (bt_cli_features(&r, &fte, &lte, &n_te, &dim_te, NULL)) goto out;
  }
  t_extract = bt_seconds() - t0;
  if (C < 2) FAIL("demo", "need at least 2 classes, --classes '%s' keeps %d", classes, C);
  const int F = (int)dim + 1;
  ytr = malloc(n_all * sizeof *ytr);
  yte = malloc(n_te * sizeof *yte);
  if (!ytr || !yte) FAIL("demo", "out of memory");
  for (size_t r = 0; r < n_all; r++) ytr[r] = (int)ltr[r];
  for (size_t r = 0; r < n_te; r++) yte[r] = (int)lte[r];
  const float *fval = ftr + (size_t)ntrain * dim;
  const int *yval = ytr + ntrain;
  if (save_features && (save_split(save_features, "train", ftr, ytr, (size_t)ntrain, dim) ||
                        save_split(save_features, "val", fval, yval, (size_t)nval, dim) ||
                        save_split(save_features, "test", fte, yte, n_te, dim)))
    FAIL("demo", "%s", bt_last_error());

  /* ---- client: keys, standardisation, encryption ---- */
  t0 = bt_seconds();
  TRY("demo", bt_client_keygen(preset, flags, (int)dim, C, B, threads, &cl, &eb));
  const bt_ckks_params *p = bt_client_params(cl);
  const bt_job_tag *tag = bt_client_tag(cl);
  TRY("demo", bt_job_layout(p, tag, &L, NULL));
  const bt_softmax_config scfg = {.bound = srange};
  TRY("demo", bt_softmax_approx_init(C, &scfg, &sa)); /* the job's (bt_job_options.softmax_bound) */
  t_setup = bt_seconds() - t0;
  if (!json)
    printf("demo: %s classes %s, %d train / %d validation / %zu test rows, features %s (%zu + bias)\n"
           "      preset %s%s (N = 2^%d), %d threads; batch %d: %d X blocks of %d x %d, softmax depth %d; "
           "%zu Galois keys; features %.1f s, keys %.1f s\n",
           dataset, classes, ntrain, nval, n_te, bt_vit_pool_name(pool), dim, preset,
           lit.insecure ? " (INSECURE)" : "", bt_ckks_logn(p), threads, B, L.nb, L.s0, L.s1,
           bt_softmax_approx_depth(&sa), eb.ek->ngalois, t_extract, t_setup);
  fflush(stdout);
  t0 = bt_seconds();
  order = malloc((size_t)ntrain * sizeof *order);
  if (!order) FAIL("demo", "out of memory");
  TRY("demo", bt_pipeline_row_order(seed, (size_t)ntrain, order)); /* as `encrypt --role train --seed S` */
  TRY("demo", bt_scaler_fit(tag, ftr, (size_t)ntrain, dim, &sc));
  if (!no_whiten) {
    if (ridge <= 0) ridge = bt_scaler_default_ridge(dim, (size_t)ntrain);
    TRY("demo", bt_scaler_whiten(&sc, ftr, (size_t)ntrain, ridge));
  }
  TRY("demo", bt_client_encrypt(cl, BT_SET_TRAIN, ftr, ytr, (size_t)ntrain, &sc, order, NULL, NULL, &tr));
  TRY("demo", bt_client_encrypt(cl, BT_SET_VAL, fval, yval, (size_t)nval, &sc, NULL, NULL, NULL, &va));
  t_encrypt = bt_seconds() - t0;
  /* the twin's rows: the same preprocessing, the same order */
  xtr = malloc((size_t)ntrain * F * sizeof *xtr), xval = malloc((size_t)nval * F * sizeof *xval);
  xte = malloc(n_te * F * sizeof *xte);
  int *ytw = malloc((size_t)ntrain * sizeof *ytw);
  if (!xtr || !xval || !xte || !ytw) FAIL("demo", "out of memory");
  bt_scaler_apply(&sc, ftr, (size_t)ntrain, order, xtr);
  bt_scaler_apply(&sc, fval, (size_t)nval, NULL, xval);
  bt_scaler_apply(&sc, fte, n_te, NULL, xte);
  for (int r = 0; r < ntrain; r++) ytw[r] = ytr[order[r]];
  memcpy(ytr, ytw, (size_t)ntrain * sizeof *ytw); /* training labels in training order from here on */
  free(ytw);

  /* ---- server: the training job on the evaluation bundle only ---- */
  bt_job_options jo = {.epochs = epochs, .lr = lr, .momentum = mu, .seed = seed, .softmax_bound = srange};
  TRY("demo", bt_job_new(p, &eb, &tr, &va, &jo, &job));
  const int ntb = tr.nbatches;
  const size_t CF = (size_t)C * (size_t)F;
  tw_v = calloc(CF, sizeof *tw_v), tw_w = calloc(CF, sizeof *tw_w);
  ex_v = calloc(CF, sizeof *ex_v), ex_w = calloc(CF, sizeof *ex_w);
  hist = calloc((size_t)epochs, sizeof *hist);
  tw_hist = calloc((size_t)epochs, sizeof *tw_hist);
  ex_hist = calloc((size_t)epochs, sizeof *ex_hist);
  border = malloc((size_t)ntb * sizeof *border);
  if (!tw_v || !tw_w || !ex_v || !ex_w || !hist || !tw_hist || !ex_hist || !border) FAIL("demo", "out of memory");
  bt_early_stop es;
  bt_early_stop_init(&es, patience, epochs);
  bt_cli_meter meter = {.who = "demo", .tty = tty, .t0 = bt_seconds(), .total = (double)epochs * ntb};
  int ran = 0;
  for (int e = 0; e < epochs; e++) {
    char prefix[48];
    snprintf(prefix, sizeof prefix, "epoch %d/%d ", e + 1, epochs);
    meter.prefix = prefix;
    meter.done0 = (double)e * ntb;
    bt_job_epoch_report rep;
    TRY("demo", bt_job_run_epoch(job, bt_cli_meter_cb, &meter, &rep)); /* server */
    t_train += rep.train_s;
    t_val += rep.validation_s;
    stats.matmul_s += rep.stats.matmul_s, stats.softmax_s += rep.stats.softmax_s;
    stats.bootstrap_s += rep.stats.bootstrap_s, stats.other_s += rep.stats.other_s;
    stats.bootstraps += rep.stats.bootstraps;
    /* the twin and the exact reference: the same batches in the same order */
    bt_pipeline_batch_order(seed, e, ntb, border);
    for (int k = 0; k < ntb; k++) {
      const int b = border[k], first = b * B, rows = ntrain - first < B ? ntrain - first : B;
      zmax = fmax(zmax, max_abs_logit(xtr + (size_t)first * F, rows, F, C, tw_v));
      TRY("demo", bt_plain_step(&sa, rows, F, C, xtr + (size_t)first * F, ytr + first, lr, mu, tw_v, tw_w));
      TRY("demo", bt_plain_step(NULL, rows, F, C, xtr + (size_t)first * F, ytr + first, lr, mu, ex_v, ex_w));
    }
    bt_enc_epoch m, le;
    TRY("demo", bt_job_model(job, &m));
    TRY("demo", bt_ciphertext_new(p, &hist[e]));
    TRY("demo", bt_ciphertext_copy(m.ct, hist[e])); /* the server keeps each epoch's model */
    tw_hist[e] = malloc(CF * sizeof **tw_hist);
    ex_hist[e] = malloc(CF * sizeof **ex_hist);
    if (!tw_hist[e] || !ex_hist[e]) FAIL("demo", "out of memory");
    memcpy(tw_hist[e], tw_w, CF * sizeof *tw_w);
    memcpy(ex_hist[e], ex_w, CF * sizeof *ex_w);
    /* client: decrypt the loss, decide, send one bit */
    double vloss, tw_loss, ex_loss;
    bt_answer ans;
    TRY("demo", bt_job_loss(job, &le));
    TRY("demo", bt_client_decide(cl, &es, &le, &vloss, &ans));
    TRY("demo", bt_plain_evaluate(&sa, B, nval, F, C, xval, yval, tw_w, &tw_loss, NULL));
    TRY("demo", bt_plain_evaluate(NULL, B, nval, F, C, xval, yval, ex_w, &ex_loss, NULL));
    ran = e + 1;
    if (tty && ran * ntb < epochs * ntb) fputc('\n', stderr); /* end the progress line */
    fprintf(stderr, "demo: epoch %d: validation loss %.5f encrypted, %.5f twin, %.5f exact; client says %s\n", e + 1,
            vloss, tw_loss, ex_loss, ans.go_on ? "continue" : "stop");
    json_object *je = json_object_new_object();
    json_object_object_add(je, "epoch", json_object_new_int(e + 1));
    json_object_object_add(je, "val_loss", json_object_new_double(vloss));
    json_object_object_add(je, "val_loss_twin", json_object_new_double(tw_loss));
    json_object_object_add(je, "val_loss_exact", json_object_new_double(ex_loss));
    json_object_object_add(je, "continue", json_object_new_boolean(ans.go_on));
    json_object_array_add(jepochs, je);
    if (e + 1 < epochs) TRY("demo", bt_job_answer(job, &ans));
    if (!ans.go_on) break;
  }
  const int best = es.best_epoch >= 0 ? es.best_epoch : ran - 1;

  /* ---- client: decrypt the best epoch's model, test it ---- */
  const bt_enc_epoch bm = {.tag = *tag, .epoch = best + 1, .ct = hist[best]};
  bt_plain_head std_only = sc; /* the server's weights, in the units the twin has them */
  std_only.proj = NULL;
  TRY("demo", bt_client_decrypt_model(cl, &bm, &std_only, &head));
  double werr = 0, wmag = 0;
  for (size_t i = 0; i < CF; i++) {
    werr = fmax(werr, fabs(head.w[i] - tw_hist[best][i]));
    wmag = fmax(wmag, fabs(tw_hist[best][i]));
  }
  TRY("demo", bt_scaler_fold(&sc, head.w)); /* now as bt_client_decrypt_model(..., &sc, ...) gives it */
  if (save_model) TRY("demo", bt_pipeline_save_head(save_model, BT_IO_PLAIN_MODEL, p, &head));
  if (zmax > sa.bound)
    fprintf(stderr, "demo: warning: a logit of the twin's steps reached %.1f, beyond the softmax approximation's "
                    "range +-%g; lower --lr or widen --softmax-range\n", zmax, sa.bound);
  double acc_enc, acc_tw, acc_ex, loss_enc, loss_tw, loss_ex;
  TRY("demo", bt_plain_head_evaluate(&head, fte, yte, n_te, &acc_enc, &loss_enc, NULL, NULL));
  TRY("demo", bt_plain_evaluate(NULL, B, (int)n_te, F, C, xte, yte, tw_hist[best], &loss_tw, &acc_tw));
  TRY("demo", bt_plain_evaluate(NULL, B, (int)n_te, F, C, xte, yte, ex_hist[best], &loss_ex, &acc_ex));

  /* ---- server: encrypted inference on one batch of test images ---- */
  t0 = bt_seconds();
  const int irows = (int)n_te < B ? (int)n_te : B;
  TRY("demo", bt_client_encrypt(cl, BT_SET_TEST, fte, NULL, (size_t)irows, &sc, NULL, NULL, NULL, &ts));
  TRY("demo", bt_job_infer(job, &bm, &ts, NULL, NULL, &lg));
  t_infer = bt_seconds() - t0;
  if (!(zf = malloc((size_t)irows * C * sizeof *zf))) FAIL("demo", "out of memory");
  TRY("demo", bt_client_decrypt_logits(cl, &lg, zf));
  double *zc = malloc((size_t)C * sizeof *zc);
  if (!zc) FAIL("demo", "out of memory");
  int right = 0, agree = 0;
  for (int r = 0; r < irows; r++) {
    int be = 0, bc = 0;
    bt_plain_head_logits(&head, fte + (size_t)r * dim, 1, zc);
    for (int c = 0; c < C; c++) {
      if (zf[(size_t)r * C + c] > zf[(size_t)r * C + be]) be = c;
      if (zc[c] > zc[bc]) bc = c;
    }
    right += be == yte[r];
    agree += be == bc;
  }
  free(zc);

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const double peak_gib = (double)ru.ru_maxrss / (1024.0 * 1024.0), total_s = bt_seconds() - t_all;
  const int nsteps = ran * ntb;
  const double w_bits = werr > 0 ? -log2(werr) : 64;
  if (json) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "dataset", json_object_new_string(dataset));
    json_object_object_add(o, "classes", json_object_new_string(classes));
    json_object_object_add(o, "preset", json_object_new_string(preset));
    json_object_object_add(o, "epochs", jepochs);
    json_object_object_add(o, "whitened", json_object_new_boolean(!no_whiten));
    jepochs = NULL;
    const bt_cli_json_field f[] = {
        {"train_rows", ntrain}, {"val_rows", nval}, {"test_rows", (double)n_te}, {"features", F},
        {"ridge", no_whiten ? 0 : ridge}, {"twin_max_abs_logit", zmax},
        {"softmax_bound", sa.bound},
        {"threads", threads}, {"batch", B}, {"lr", lr}, {"momentum", mu}, {"epochs_run", ran},
        {"best_epoch", best + 1}, {"steps", nsteps}, {"test_acc_encrypted", acc_enc}, {"test_acc_twin", acc_tw},
        {"test_acc_exact", acc_ex}, {"test_loss_encrypted", loss_enc}, {"weights_vs_twin_bits", w_bits},
        {"infer_rows", irows}, {"infer_acc", (double)right / irows}, {"infer_agree", (double)agree / irows},
        {"extract_s", t_extract}, {"keygen_s", t_setup}, {"encrypt_s", t_encrypt}, {"train_s", t_train},
        {"validation_s", t_val}, {"infer_s", t_infer}, {"matmul_s", stats.matmul_s},
        {"softmax_s", stats.softmax_s}, {"bootstrap_s", stats.bootstrap_s}, {"other_s", stats.other_s},
        {"bootstraps", (double)stats.bootstraps}, {"total_s", total_s}, {"peak_memory_gib", peak_gib}};
    bt_cli_json_add_numbers(o, f, sizeof f / sizeof *f);
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
    json_object_put(o);
  } else {
    printf("\nfeatures %s; largest |logit| in the twin's steps %.2f (the softmax approximation covers +-%g)\n",
           no_whiten ? "standardised" : "standardised and whitened", zmax, sa.bound);
    if (!no_whiten) printf("whitening ridge %.3g\n", ridge);
    printf("\ntest accuracy on %zu rows after epoch %d of %d (the client's best by validation loss):\n"
           "  encrypted training, decrypted model   %6.2f %%\n"
           "  plaintext twin (same approximations)  %6.2f %%\n"
           "  exact reference (true softmax)        %6.2f %%\n"
           "decrypted weights vs the twin: max error %.2e (%.1f bits, |W| <= %.3f)\n"
           "encrypted inference on %d test rows: %.2f %% correct, argmax agrees with the decrypted model on "
           "%d/%d\n",
           n_te, best + 1, ran, 100 * acc_enc, 100 * acc_tw, 100 * acc_ex, werr, w_bits, wmag, irows,
           100.0 * right / irows, agree, irows);
    printf("time: %.1f s in all — features %.1f, keys %.1f, encryption %.1f, training %.1f (%d steps, %.1f s "
           "each: matmul %.1f, softmax %.1f, bootstrapping %.1f in %ld bootstraps, other %.1f), validation "
           "%.1f, inference %.1f; peak memory %.1f GiB\n",
           total_s, t_extract, t_setup, t_encrypt, t_train, nsteps, nsteps ? t_train / nsteps : 0, stats.matmul_s,
           stats.softmax_s, stats.bootstrap_s, stats.bootstraps, stats.other_s, t_val, t_infer, peak_gib);
    printf("(the time split covers training and validation together)\n");
  }
  rc = 0;
out:
  json_object_put(jepochs);
  if (hist)
    for (int e = 0; e < epochs; e++) bt_ciphertext_free(hist[e]);
  if (tw_hist)
    for (int e = 0; e < epochs; e++) free(tw_hist[e]);
  if (ex_hist)
    for (int e = 0; e < epochs; e++) free(ex_hist[e]);
  free(hist), free(tw_hist), free(ex_hist);
  bt_job_free(job);
  bt_enc_dataset_clear(&tr), bt_enc_dataset_clear(&va), bt_enc_dataset_clear(&ts);
  bt_enc_logits_clear(&lg);
  bt_plain_head_clear(&sc), bt_plain_head_clear(&head);
  bt_softmax_approx_free(&sa);
  bt_eval_bundle_clear(&eb);
  bt_client_free(cl);
  free(ftr), free(fte), free(ltr), free(lte), free(ytr), free(yte), free(order), free(border);
  free(xtr), free(xval), free(xte), free(tw_v), free(tw_w), free(ex_v), free(ex_w), free(zf);
  return rc;
}

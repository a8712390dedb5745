/* `blindtuner demo`: the whole private fine-tuning pipeline in one process,
 * on the embedded default (Fashion-MNIST classes 5-9, the bundled DeiT).
 *
 * The two roles are kept apart in the code even though they share a
 * process: the client (extract, standardise, keygen, encrypt, decrypt,
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
#include "cli/cli.h"

static void help(void) {
  printf("usage: blindtuner demo [options]\n"
         "\n"
         "Runs private fine-tuning end to end, client and server in one process:\n"
         "  client  extracts transformer features of Fashion-MNIST (classes 5-9 by default)\n"
         "          with the bundled DeiT, standardises them, generates keys, encrypts the\n"
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
         "  --classes LIST   labels to keep and renumber (default 5-9)\n"
         "  --dataset NAME   fashion-mnist (default) or mnist\n"
         "  --feature F      transformer feature: mean (default), cls, ...\n"
         "  --model FILE     DeiT/ViT safetensors (default: the bundled one)\n"
         "  --preset NAME    CKKS parameters (default train-n16, 128-bit)\n"
         "  --allow-insecure permit INSECURE test presets\n"
         "  --seed S         the client's data sampling and shuffling seed (default 1); keys and\n"
         "                   encryption randomness are always fresh\n"
         "  --threads N      threads (default BT_THREADS or all cores)\n"
         "  --json           print the report as JSON on stdout (progress stays on stderr)\n"
         "\n"
         "The full-size experiment: --train 24000 --val 6000 --epochs 20 (many hours on 2 cores).\n");
}

#define FAIL(...)                                     \
  do {                                                \
    fprintf(stderr, "blindtuner demo: " __VA_ARGS__); \
    fputc('\n', stderr);                              \
    goto out;                                         \
  } while (0)
#define TRY(expr)                                                                            \
  do {                                                                                       \
    bt_status st_ = (expr);                                                                  \
    if (st_ != BT_OK) FAIL("%s (%s)", bt_last_error(), bt_status_name(st_));               \
  } while (0)

static int parse_double(const char *opt, const char *v, double lo, double hi, double *out) {
  char *end;
  double x = v ? strtod(v, &end) : 0;
  if (!v || *v == '\0' || *end != '\0' || !(x >= lo && x <= hi)) {
    fprintf(stderr, "blindtuner demo: %s expects a number in [%g, %g]\n", opt, lo, hi);
    return -1;
  }
  *out = x;
  return 0;
}

/* One encrypted batch as the client hands it over. */
typedef struct enc_batch {
  bt_ciphertext **x; /* nb blocks at the trainer's X level */
  bt_ciphertext *y;  /* one-hot labels, diagonal layout */
  int first, rows;   /* rows [first, first + rows) of the split */
} enc_batch;

typedef struct client {
  const bt_ckks_params *p;
  const bt_hemat_layout *L;
  bt_secret_key *sk;
  bt_prng g;
  bt_plaintext *pt;
  double *slots, *rows_buf;
  double complex *cv;
} client;

static bt_status client_encrypt(client *c, const double complex *v, int level, bt_ciphertext **out) {
  bt_status st = bt_ciphertext_new(c->p, out);
  if (!st) st = bt_ckks_encode(c->p, v, c->L->slots, c->L->logslots, level, bt_ckks_default_scale(c->p), c->pt);
  if (!st) st = bt_encrypt_sk(c->sk, c->pt, &c->g, *out);
  return st;
}

/* Packs and encrypts rows [first, first + rows) of x (F columns) and y. */
static bt_status client_batch(client *c, const double *x, const int *y, int first, int rows, int classes,
                              int xlevel, int ylevel, enc_batch *b) {
  const bt_hemat_layout *L = c->L;
  bt_status st = BT_OK;
  b->first = first;
  b->rows = rows;
  b->x = calloc((size_t)L->nb, sizeof *b->x);
  if (!b->x) return bt_fail(BT_E_NOMEM, "out of memory");
  /* the batch, zero-padded to B rows */
  memset(c->rows_buf, 0, (size_t)L->batch * L->features * sizeof *c->rows_buf);
  memcpy(c->rows_buf, x + (size_t)first * L->features, (size_t)rows * L->features * sizeof *c->rows_buf);
  for (int j = 0; j < L->nb && !st; j++) {
    bt_hemat_pack_x(L, c->rows_buf, j, c->slots);
    for (size_t i = 0; i < L->slots; i++) c->cv[i] = c->slots[i];
    st = client_encrypt(c, c->cv, xlevel, &b->x[j]);
  }
  if (st) return st;
  memset(c->rows_buf, 0, (size_t)L->batch * classes * sizeof *c->rows_buf);
  for (int r = 0; r < rows; r++) c->rows_buf[(size_t)r * classes + y[first + r]] = 1;
  bt_hemat_pack_diag(L, c->rows_buf, c->slots);
  for (size_t i = 0; i < L->slots; i++) c->cv[i] = c->slots[i];
  return client_encrypt(c, c->cv, ylevel, &b->y);
}

static void free_batch(const bt_hemat_layout *L, enc_batch *b) {
  if (b->x)
    for (int j = 0; j < L->nb; j++) bt_ciphertext_free(b->x[j]);
  free(b->x);
  bt_ciphertext_free(b->y);
  memset(b, 0, sizeof *b);
}

static bt_status client_decrypt(client *c, const bt_ciphertext *ct) {
  bt_status st = bt_decrypt(c->sk, ct, c->pt);
  return st ? st : bt_ckks_decode(c->pt, c->cv);
}

/* Standardise with the training rows' statistics (client side) and append the bias column. */
static double *standardise(const float *f, size_t n, size_t dim, const double *mean, const double *sd) {
  double *x = malloc(n * (dim + 1) * sizeof *x);
  if (!x) return NULL;
  for (size_t r = 0; r < n; r++) {
    for (size_t j = 0; j < dim; j++) x[r * (dim + 1) + j] = ((double)f[r * dim + j] - mean[j]) / sd[j];
    x[r * (dim + 1) + dim] = 1;
  }
  return x;
}

int bt_cli_demo(int argc, char **argv) {
  int ntrain = 2048, nval = 512, ntest = 0, B = 1024, epochs = 2, patience = 3, threads = 0, json = 0;
  unsigned flags = 0;
  double lr = 0.3, mu = 0.9;
  uint64_t seed = 1;
  const char *preset = "train-n16", *classes = "5-9", *dataset = "fashion-mnist", *model = NULL;
  bt_vit_pool pool = BT_VIT_POOL_PATCH_MEAN;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      help();
      return 0;
    }
    if (!strcmp(a, "--json")) {
      json = 1;
      continue;
    }
    if (!strcmp(a, "--allow-insecure")) {
      flags |= BT_ALLOW_INSECURE;
      continue;
    }
    if (!v) {
      fprintf(stderr, "blindtuner demo: %s needs a value (or is unknown; see --help)\n", a);
      return 2;
    }
    i++;
    if (!strcmp(a, "--train")) {
      if ((ntrain = bt_cli_parse_int(a, v, 2, 1 << 20)) < 0) return 2;
    } else if (!strcmp(a, "--val")) {
      if ((nval = bt_cli_parse_int(a, v, 1, 1 << 20)) < 0) return 2;
    } else if (!strcmp(a, "--test")) {
      if ((ntest = bt_cli_parse_int(a, v, 0, 1 << 20)) < 0) return 2;
    } else if (!strcmp(a, "--batch")) {
      if ((B = bt_cli_parse_int(a, v, 1, 1 << 16)) < 0) return 2;
    } else if (!strcmp(a, "--epochs")) {
      if ((epochs = bt_cli_parse_int(a, v, 1, 10000)) < 0) return 2;
    } else if (!strcmp(a, "--patience")) {
      if ((patience = bt_cli_parse_int(a, v, 1, 10000)) < 0) return 2;
    } else if (!strcmp(a, "--threads")) {
      if ((threads = bt_cli_parse_int(a, v, 1, 1024)) < 0) return 2;
    } else if (!strcmp(a, "--seed")) {
      int s = bt_cli_parse_int(a, v, 0, INT_MAX);
      if (s < 0) return 2;
      seed = (uint64_t)s;
    } else if (!strcmp(a, "--lr")) {
      if (parse_double(a, v, 1e-6, 1e3, &lr)) return 2;
    } else if (!strcmp(a, "--momentum")) {
      if (parse_double(a, v, 0, 0.999, &mu)) return 2;
    } else if (!strcmp(a, "--preset")) {
      preset = v;
    } else if (!strcmp(a, "--classes")) {
      classes = v;
    } else if (!strcmp(a, "--dataset")) {
      if (strcmp(v, "fashion-mnist") && strcmp(v, "mnist")) {
        fprintf(stderr, "blindtuner demo: --dataset is fashion-mnist or mnist\n");
        return 2;
      }
      dataset = v;
    } else if (!strcmp(a, "--feature")) {
      if (bt_vit_pool_parse(v, &pool) != BT_OK) {
        fprintf(stderr, "blindtuner demo: %s\n", bt_last_error());
        return 2;
      }
    } else if (!strcmp(a, "--model")) {
      model = v;
    } else {
      fprintf(stderr, "blindtuner demo: unknown option '%s' (see --help)\n", a);
      return 2;
    }
  }
  if (!threads) threads = bt_default_threads();
  const int tty = isatty(2);

  int rc = 1;
  char split[64];
  float *ftr = NULL, *fte = NULL;
  int64_t *ltr = NULL, *lte = NULL;
  size_t n_all = 0, n_te = 0, dim = 0, dim_te = 0;
  double *mean = NULL, *sd = NULL, *xtr = NULL, *xte = NULL;
  int *ytr = NULL, *yte = NULL;
  bt_ckks_params *p = NULL;
  bt_cli_session ss = {0};
  bt_softmax_approx sa = {0};
  bt_hemat_layout L = {0};
  client cl = {0};
  enc_batch *tb = NULL, *vb = NULL, ib = {0};
  int ntb = 0, nvb = 0;
  bt_ciphertext *a = NULL, **hist = NULL, *loss = NULL, *lpart = NULL, *z = NULL;
  double *tw_v = NULL, *tw_w = NULL, *ex_v = NULL, *ex_w = NULL, **tw_hist = NULL, **ex_hist = NULL;
  double *wdec = NULL, *wre = NULL, *zbuf = NULL;
  int *order = NULL;
  json_object *jepochs = json_object_new_array();
  bt_train_stats stats = {0};
  double t_extract = 0, t_setup = 0, t_encrypt = 0, t_train = 0, t_val = 0, t_infer = 0;
  double t_all = bt_seconds();

  /* parameters first: a refused preset costs nothing */
  bt_ckks_literal lit;
  TRY(bt_ckks_preset(preset, &lit));
  TRY(bt_ckks_params_new(&lit, flags, &p));
  bt_ckks_set_threads(p, threads);

  /* ---- client: features ---- */
  double t0 = bt_seconds();
  int C = 0;
  {
    bt_cli_features_req r = {.model = model, .classes = classes, .pool = pool, .threads = threads,
                             .sample = (size_t)ntrain + (size_t)nval, .seed = seed, .quiet = json && !tty};
    snprintf(split, sizeof split, "%s:train", dataset);
    r.data = split;
    if (bt_cli_features(&r, "demo", &ftr, &ltr, &n_all, &dim, &C)) goto out;
    snprintf(split, sizeof split, "%s:test", dataset);
    r.sample = (size_t)ntest;
    r.data = split;
    if (bt_cli_features(&r, "demo", &fte, &lte, &n_te, &dim_te, NULL)) goto out;
  }
  t_extract = bt_seconds() - t0;
  if (C < 2) FAIL("need at least 2 classes, --classes '%s' keeps %d", classes, C);
  const int F = (int)dim + 1;
  mean = calloc(dim, sizeof *mean);
  sd = calloc(dim, sizeof *sd);
  ytr = malloc(n_all * sizeof *ytr);
  yte = malloc(n_te * sizeof *yte);
  if (!mean || !sd || !ytr || !yte) FAIL("out of memory");
  for (size_t j = 0; j < dim; j++) {
    double s = 0, s2 = 0;
    for (int r = 0; r < ntrain; r++) s += ftr[(size_t)r * dim + j];
    s /= ntrain;
    for (int r = 0; r < ntrain; r++) s2 += (ftr[(size_t)r * dim + j] - s) * (ftr[(size_t)r * dim + j] - s);
    mean[j] = s;
    sd[j] = sqrt(s2 / ntrain) + 1e-6;
  }
  xtr = standardise(ftr, n_all, dim, mean, sd);
  xte = standardise(fte, n_te, dim, mean, sd);
  if (!xtr || !xte) FAIL("out of memory");
  for (size_t r = 0; r < n_all; r++) ytr[r] = (int)ltr[r];
  for (size_t r = 0; r < n_te; r++) yte[r] = (int)lte[r];
  const double *xval = xtr + (size_t)ntrain * F;
  const int *yval = ytr + ntrain;

  /* ---- parameters, keys (client), server objects ---- */
  t0 = bt_seconds();
  TRY(bt_hemat_layout_init(bt_ckks_logn(p) - 1, B, F, C, &L));
  bt_hemat_layout_fold(&L, 1);
  TRY(bt_softmax_approx_init(C, NULL, &sa));
  TRY(bt_cli_session_new(p, &L, &sa, lr, mu, &ss));
  bt_trainer *const t = ss.trainer;
  bt_evaluator *const ev = ss.ev; /* the server's: evaluation keys only */
  cl.p = p;
  cl.L = &L;
  cl.sk = ss.sk;
  bt_prng_init_random(&cl.g); /* its own stream for encryption */
  cl.slots = malloc(L.slots * sizeof *cl.slots);
  cl.cv = malloc(L.slots * sizeof *cl.cv);
  cl.rows_buf = malloc((size_t)B * (size_t)(F > C ? F : C) * sizeof *cl.rows_buf);
  if (!cl.slots || !cl.cv || !cl.rows_buf) FAIL("out of memory");
  TRY(bt_plaintext_new(p, &cl.pt));
  t_setup = bt_seconds() - t0;
  if (!json)
    printf("demo: %s classes %s, %d train / %d validation / %zu test rows, features %s (%zu + bias)\n"
           "      preset %s%s (N = 2^%d), %d threads; batch %d: %d X blocks of %d x %d, softmax depth %d; "
           "%zu Galois keys; features %.1f s, keys %.1f s\n",
           dataset, classes, ntrain, nval, n_te, bt_vit_pool_name(pool), dim, preset,
           lit.insecure ? " (INSECURE)" : "", bt_ckks_logn(p), threads, B, L.nb, L.s0, L.s1,
           bt_softmax_approx_depth(&sa), ss.ek->ngalois, t_extract, t_setup);
  fflush(stdout);

  /* ---- client: encrypt the batches (its own shuffle was the sampling) ---- */
  t0 = bt_seconds();
  ntb = (ntrain + B - 1) / B;
  nvb = (nval + B - 1) / B;
  tb = calloc((size_t)ntb, sizeof *tb);
  vb = calloc((size_t)nvb, sizeof *vb);
  if (!tb || !vb) FAIL("out of memory");
  for (int k = 0; k < ntb; k++)
    TRY(client_batch(&cl, xtr, ytr, k * B, ntrain - k * B < B ? ntrain - k * B : B, C, bt_trainer_x_level(t),
                     bt_trainer_y_level(t), &tb[k]));
  for (int k = 0; k < nvb; k++)
    TRY(client_batch(&cl, xval, yval, k * B, nval - k * B < B ? nval - k * B : B, C, bt_trainer_x_level(t),
                     bt_trainer_y_level(t), &vb[k]));
  memset(cl.cv, 0, L.slots * sizeof *cl.cv);
  TRY(client_encrypt(&cl, cl.cv, 4, &a)); /* A_0 = V_0 + i W_0 = 0 */
  t_encrypt = bt_seconds() - t0;

  /* ---- server: epochs; client: the loss and the bit ---- */
  const size_t CF = (size_t)C * (size_t)F;
  tw_v = calloc(CF, sizeof *tw_v), tw_w = calloc(CF, sizeof *tw_w);
  ex_v = calloc(CF, sizeof *ex_v), ex_w = calloc(CF, sizeof *ex_w);
  hist = calloc((size_t)epochs, sizeof *hist);
  tw_hist = calloc((size_t)epochs, sizeof *tw_hist);
  ex_hist = calloc((size_t)epochs, sizeof *ex_hist);
  order = malloc((size_t)ntb * sizeof *order);
  if (!tw_v || !tw_w || !ex_v || !ex_w || !hist || !tw_hist || !ex_hist || !order) FAIL("out of memory");
  TRY(bt_ciphertext_new(p, &loss));
  TRY(bt_ciphertext_new(p, &lpart));
  bt_prng sg; /* the server's batch order: public randomness, it sees no data */
  {
    uint8_t s[BT_SEED_BYTES] = {'o', 'r', 'd', 'e', 'r'};
    memcpy(s + 8, &seed, sizeof seed);
    bt_prng_init(&sg, s);
  }
  bt_early_stop es;
  bt_early_stop_init(&es, patience);
  const double t_train0 = bt_seconds();
  const double total_steps = (double)epochs * ntb;
  int ran = 0;
  for (int e = 0; e < epochs; e++) {
    for (int k = 0; k < ntb; k++) order[k] = k;
    for (int k = ntb - 1; k > 0; k--) {
      const int j = (int)(bt_prng_u64(&sg) % (uint64_t)(k + 1)), tmp = order[k];
      order[k] = order[j], order[j] = tmp;
    }
    double ts = bt_seconds();
    for (int k = 0; k < ntb; k++) {
      const enc_batch *b = &tb[order[k]];
      TRY(bt_trainer_step(t, ev, b->x, b->y, b->rows, a, &stats)); /* server */
      TRY(bt_plain_step(&sa, b->rows, F, C, xtr + (size_t)b->first * F, ytr + b->first, lr, mu, tw_v, tw_w));
      TRY(bt_plain_step(NULL, b->rows, F, C, xtr + (size_t)b->first * F, ytr + b->first, lr, mu, ex_v, ex_w));
      char what[64];
      snprintf(what, sizeof what, "epoch %d/%d step %d/%d", e + 1, epochs, k + 1, ntb);
      bt_cli_progress("demo", tty, (double)(e * ntb + k + 1), total_steps, t_train0, what);
    }
    t_train += bt_seconds() - ts;
    /* server: encrypted validation loss, the sum of the batches' shares */
    ts = bt_seconds();
    for (int k = 0; k < nvb; k++) {
      TRY(bt_trainer_loss(t, ev, vb[k].x, vb[k].y, vb[k].rows, 1.0 / nval, a, k ? lpart : loss, &stats));
      if (k) TRY(bt_eval_add(ev, loss, lpart, loss));
    }
    t_val += bt_seconds() - ts;
    TRY(bt_ciphertext_new(p, &hist[e]));
    TRY(bt_ciphertext_copy(hist[e], a)); /* the server keeps each epoch's model */
    tw_hist[e] = malloc(CF * sizeof **tw_hist);
    ex_hist[e] = malloc(CF * sizeof **ex_hist);
    if (!tw_hist[e] || !ex_hist[e]) FAIL("out of memory");
    memcpy(tw_hist[e], tw_w, CF * sizeof *tw_w);
    memcpy(ex_hist[e], ex_w, CF * sizeof *ex_w);
    /* client: decrypt the loss, decide, send one bit */
    TRY(client_decrypt(&cl, loss));
    const double vloss = creal(cl.cv[0]);
    double tw_loss, ex_loss;
    TRY(bt_plain_evaluate(&sa, B, nval, F, C, xval, yval, tw_w, &tw_loss, NULL));
    TRY(bt_plain_evaluate(NULL, B, nval, F, C, xval, yval, ex_w, &ex_loss, NULL));
    const int go_on = bt_early_stop_update(&es, vloss);
    ran = e + 1;
    if (tty && (double)(e + 1) * ntb < total_steps) fputc('\n', stderr); /* end the progress line */
    fprintf(stderr, "demo: epoch %d: validation loss %.5f encrypted, %.5f twin, %.5f exact; client says %s\n", e + 1,
            vloss, tw_loss, ex_loss, go_on ? "continue" : "stop");
    json_object *je = json_object_new_object();
    json_object_object_add(je, "epoch", json_object_new_int(e + 1));
    json_object_object_add(je, "val_loss", json_object_new_double(vloss));
    json_object_object_add(je, "val_loss_twin", json_object_new_double(tw_loss));
    json_object_object_add(je, "val_loss_exact", json_object_new_double(ex_loss));
    json_object_object_add(je, "continue", json_object_new_boolean(go_on));
    json_object_array_add(jepochs, je);
    if (!go_on) break;
  }
  const int best = es.best_epoch >= 0 ? es.best_epoch : ran - 1;

  /* ---- client: decrypt the best epoch's model, test it ---- */
  wdec = calloc(CF, sizeof *wdec);
  wre = malloc(L.slots * sizeof *wre);
  if (!wdec || !wre) FAIL("out of memory");
  TRY(client_decrypt(&cl, hist[best]));
  for (size_t i = 0; i < L.slots; i++) wre[i] = cimag(cl.cv[i]);
  bt_hemat_unpack_w(&L, wre, wdec);
  double werr = 0, wmag = 0;
  for (size_t i = 0; i < CF; i++) {
    werr = fmax(werr, fabs(wdec[i] - tw_hist[best][i]));
    wmag = fmax(wmag, fabs(tw_hist[best][i]));
  }
  double acc_enc, acc_tw, acc_ex, loss_enc, loss_tw, loss_ex;
  TRY(bt_plain_evaluate(NULL, B, (int)n_te, F, C, xte, yte, wdec, &loss_enc, &acc_enc));
  TRY(bt_plain_evaluate(NULL, B, (int)n_te, F, C, xte, yte, tw_hist[best], &loss_tw, &acc_tw));
  TRY(bt_plain_evaluate(NULL, B, (int)n_te, F, C, xte, yte, ex_hist[best], &loss_ex, &acc_ex));

  /* ---- server: encrypted inference on one batch of test images ---- */
  t0 = bt_seconds();
  const int irows = (int)n_te < B ? (int)n_te : B;
  TRY(client_batch(&cl, xte, yte, 0, irows, C, bt_trainer_x_level(t), bt_trainer_y_level(t), &ib));
  TRY(bt_ciphertext_new(p, &z));
  TRY(bt_trainer_logits(t, ev, ib.x, hist[best], z, NULL));
  t_infer = bt_seconds() - t0;
  TRY(client_decrypt(&cl, z));
  zbuf = malloc((size_t)B * C * sizeof *zbuf);
  if (!zbuf) FAIL("out of memory");
  for (size_t i = 0; i < L.slots; i++) wre[i] = creal(cl.cv[i]);
  bt_hemat_unpack_logits(&L, wre, zbuf);
  int right = 0, agree = 0;
  for (int r = 0; r < irows; r++) {
    int be = 0, bc = 0;
    double zc[1024];
    for (int c = 0; c < C; c++) {
      double s = 0;
      for (int f = 0; f < F; f++) s += xte[(size_t)r * F + f] * wdec[(size_t)c * F + f];
      zc[c] = s;
      if (zbuf[r * C + c] > zbuf[r * C + be]) be = c;
      if (zc[c] > zc[bc]) bc = c;
    }
    right += be == yte[r];
    agree += be == bc;
  }

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
    jepochs = NULL;
    const bt_cli_json_field f[] = {
        {"train_rows", ntrain}, {"val_rows", nval}, {"test_rows", (double)n_te}, {"features", F},
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
  if (tb)
    for (int k = 0; k < ntb; k++) free_batch(&L, &tb[k]);
  if (vb)
    for (int k = 0; k < nvb; k++) free_batch(&L, &vb[k]);
  free(tb), free(vb);
  free_batch(&L, &ib);
  if (hist)
    for (int e = 0; e < epochs; e++) bt_ciphertext_free(hist[e]);
  if (tw_hist)
    for (int e = 0; e < epochs; e++) free(tw_hist[e]);
  if (ex_hist)
    for (int e = 0; e < epochs; e++) free(ex_hist[e]);
  free(hist), free(tw_hist), free(ex_hist);
  bt_ciphertext_free(a), bt_ciphertext_free(loss), bt_ciphertext_free(lpart), bt_ciphertext_free(z);
  bt_prng_wipe(&cl.g);
  bt_cli_session_free(&ss);
  bt_plaintext_free(cl.pt);
  free(cl.slots), free(cl.cv), free(cl.rows_buf);
  bt_ckks_params_free(p);
  bt_softmax_approx_free(&sa);
  free(ftr), free(fte), free(ltr), free(lte), free(mean), free(sd), free(xtr), free(xte), free(ytr), free(yte);
  free(tw_v), free(tw_w), free(ex_v), free(ex_w), free(wdec), free(wre), free(zbuf), free(order);
  return rc;
}

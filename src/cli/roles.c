/* What the file-based subcommands (keygen, encrypt, train, decide, decrypt,
 * evaluate, predict, infer, inspect) share: a table-driven option parser,
 * .npy inputs, the layout a key set was made for, the server's objects,
 * progress lines and the client's packing. */
#include <complex.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "blindtuner/vision_data.h"
#include "cli/cli.h"
#include "vision/internal.h"

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
  uint8_t *buf = NULL;
  size_t len = 0;
  bt_npy a;
  *x = NULL;
  if (bt_read_file(path, &buf, &len) != BT_OK || bt_npy_parse(buf, len, &a) != BT_OK) {
    fprintf(stderr, "blindtuner %s: %s\n", who, bt_last_error());
    bt_free(buf);
    return 1;
  }
  int rc = 1;
  if (strcmp(a.dtype, "f4") || !a.little || a.ndim != 2 || a.shape[0] < 1 || a.shape[1] < 1) {
    fprintf(stderr, "blindtuner %s: %s: expected features as a 2-D little-endian float32 array (n x dim)\n", who,
            path);
  } else if (!(*x = malloc((size_t)a.count * sizeof **x))) {
    fprintf(stderr, "blindtuner %s: out of memory\n", who);
  } else {
    memcpy(*x, a.data, (size_t)a.count * sizeof **x);
    *n = (size_t)a.shape[0];
    *dim = (size_t)a.shape[1];
    rc = 0;
    for (size_t i = 0; i < (size_t)a.count && !rc; i++)
      if (!isfinite((*x)[i])) {
        fprintf(stderr, "blindtuner %s: %s: value %zu is not finite\n", who, path, i);
        rc = 1;
      }
    if (rc) free(*x), *x = NULL;
  }
  bt_free(buf);
  return rc;
}

int bt_cli_load_labels(const char *who, const char *path, size_t n, int classes, int **y) {
  uint8_t *buf = NULL;
  size_t len = 0;
  bt_npy a;
  *y = NULL;
  if (bt_read_file(path, &buf, &len) != BT_OK || bt_npy_parse(buf, len, &a) != BT_OK) {
    fprintf(stderr, "blindtuner %s: %s\n", who, bt_last_error());
    bt_free(buf);
    return 1;
  }
  int rc = 1;
  const int i8 = !strcmp(a.dtype, "i8"), i4 = !strcmp(a.dtype, "i4");
  if ((!i8 && !i4) || !a.little || a.ndim != 1) {
    fprintf(stderr, "blindtuner %s: %s: expected labels as a 1-D little-endian int64 or int32 array\n", who, path);
  } else if ((size_t)a.shape[0] != n) {
    fprintf(stderr, "blindtuner %s: %s holds %lld labels for %zu feature rows\n", who, path, (long long)a.shape[0], n);
  } else if (!(*y = malloc(n * sizeof **y))) {
    fprintf(stderr, "blindtuner %s: out of memory\n", who);
  } else {
    rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
      int64_t v;
      if (i8) memcpy(&v, a.data + 8 * i, 8);
      else {
        int32_t v4;
        memcpy(&v4, a.data + 4 * i, 4);
        v = v4;
      }
      if (v < 0 || v >= classes) {
        fprintf(stderr, "blindtuner %s: %s: label %zu is %lld, the keys were made for classes 0..%d\n", who, path, i,
                (long long)v, classes - 1);
        rc = 1;
      }
      (*y)[i] = (int)v;
    }
    if (rc) free(*y), *y = NULL;
  }
  bt_free(buf);
  return rc;
}

/* ---- the layout and softmax of a key set ---- */
bt_status bt_cli_layout(const bt_ckks_params *p, const bt_io_tag *tag, bt_hemat_layout *L, bt_softmax_approx *sa) {
  bt_status st = bt_hemat_layout_init(bt_ckks_logn(p) - 1, tag->batch, tag->features, tag->classes, L);
  if (!st) bt_hemat_layout_fold(L, 1); /* the folded softmax wherever the shape allows it */
  if (!st && sa) st = bt_softmax_approx_init(tag->classes, NULL, sa);
  return st;
}

/* ---- the server's objects ---- */
void bt_cli_server_free(bt_cli_server *s) {
  if (!s) return;
  bt_trainer_free(s->trainer);
  bt_evaluator_free(s->ev);
  bt_bootstrapper_free(s->bs);
  memset(s, 0, sizeof *s);
}

bt_status bt_cli_server_new(const bt_ckks_params *p, const bt_hemat_layout *L, const bt_softmax_approx *sa,
                            const bt_eval_bundle *eb, double lr, double momentum, bt_cli_server *s) {
  memset(s, 0, sizeof *s);
  const double t0 = bt_seconds();
  bt_bootstrap_config cfg;
  bt_status st = bt_trainer_bootstrap_config(p, L, &cfg);
  if (!st && !!cfg.encaps_hamming_weight != !!eb->to_sparse)
    st = bt_fail(BT_E_FORMAT, "the evaluation bundle %s encapsulation keys, the parameters %s them",
                 eb->to_sparse ? "has" : "lacks", cfg.encaps_hamming_weight ? "need" : "do not use");
  if (!st) st = bt_bootstrapper_new(p, &cfg, bt_ckks_default_scale(p), &s->bs);
  if (!st && eb->to_sparse) st = bt_bootstrapper_set_encapsulation(s->bs, eb->to_sparse, eb->to_dense);
  if (!st) st = bt_trainer_new(p, L, sa, s->bs, lr, momentum, &s->trainer);
  if (!st) st = bt_evaluator_new(p, eb->ek, &s->ev);
  s->setup_s = bt_seconds() - t0;
  if (st) bt_cli_server_free(s);
  return st;
}

/* ---- progress ---- */
void bt_cli_progress(const char *who, int tty, double done, double total, double t0, const char *what) {
  const double el = bt_seconds() - t0, eta = done > 0 ? el / done * (total - done) : 0;
  if (tty)
    fprintf(stderr, "\r%s: %s, %.0f s elapsed, ETA %.0f s   %s", who, what, el, eta, done >= total ? "\n" : "");
  else
    fprintf(stderr, "%s: %s, %.0f s elapsed, ETA %.0f s\n", who, what, el, eta);
}

/* ---- the client's packing ---- */
bt_status bt_cli_encrypt_slots(const bt_ckks_params *p, const bt_hemat_layout *L, const bt_secret_key *sk,
                                bt_prng *g, const double *slots, int level, bt_ciphertext **out) {
  double complex *cv = malloc(L->slots * sizeof *cv);
  bt_plaintext *pt = NULL;
  bt_status st = cv ? bt_plaintext_new(p, &pt) : bt_fail(BT_E_NOMEM, "out of memory");
  if (!st) {
    for (size_t i = 0; i < L->slots; i++) cv[i] = slots[i];
    st = bt_ciphertext_new(p, out);
  }
  if (!st) st = bt_ckks_encode(p, cv, L->slots, L->logslots, level, bt_ckks_default_scale(p), pt);
  if (!st) st = bt_encrypt_sk(sk, pt, g, *out);
  bt_plaintext_free(pt);
  free(cv);
  return st;
}

bt_status bt_cli_decrypt_slots(const bt_secret_key *sk, const bt_ciphertext *ct, const bt_hemat_layout *L,
                               double *re, double *im) {
  const bt_ckks_params *p = ct->params;
  double complex *cv = malloc(L->slots * sizeof *cv);
  bt_plaintext *pt = NULL;
  bt_status st = cv ? bt_plaintext_new(p, &pt) : bt_fail(BT_E_NOMEM, "out of memory");
  if (!st) st = bt_decrypt(sk, ct, pt);
  if (!st) st = bt_ckks_decode(pt, cv);
  for (size_t i = 0; !st && i < L->slots; i++) {
    if (re) re[i] = creal(cv[i]);
    if (im) im[i] = cimag(cv[i]);
  }
  bt_plaintext_free(pt);
  if (cv) sodium_memzero(cv, L->slots * sizeof *cv);
  free(cv);
  return st;
}

/* ---- paths ---- */
void bt_cli_path(char *out, size_t cap, const char *dir, const char *name, int epoch) {
  if (epoch > 0) snprintf(out, cap, "%s/%s-%03d.bt", dir, name, epoch);
  else snprintf(out, cap, "%s/%s.bt", dir, name);
}

int bt_cli_exists(const char *path) { return access(path, F_OK) == 0; }

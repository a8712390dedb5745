/* The client's preprocessing (include/blindtuner/pipeline.h): the
 * standardisation of the training rows, their whitening, applying both to
 * rows before encryption, and folding the whitening back into a decrypted
 * model.  The linear algebra is OpenBLAS's (BLAS and LAPACK). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "blindtuner/pipeline.h"

/* LAPACK's symmetric eigensolver (divide and conquer), as OpenBLAS exports
 * it: Fortran calling convention, the two character arguments' hidden
 * lengths last. */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                    double *work, const int *lwork, int *iwork, const int *liwork, int *info, size_t jobz_len,
                    size_t uplo_len);

bt_status bt_scaler_fit(const bt_job_tag *tag, const float *x, size_t n, size_t dim, bt_plain_head *sc) {
  memset(sc, 0, sizeof *sc);
  if (n < 1 || (int)dim + 1 != tag->features)
    return bt_fail(BT_E_ARG, "scaler: %zu rows of %zu features for a key set of %d", n, dim, tag->features - 1);
  sc->tag = *tag;
  sc->dim = (int)dim;
  sc->classes = tag->classes;
  sc->mean = calloc(dim, sizeof *sc->mean);
  sc->sd = calloc(dim, sizeof *sc->sd);
  if (!sc->mean || !sc->sd) {
    bt_plain_head_clear(sc);
    return bt_fail(BT_E_NOMEM, "out of memory");
  }
  for (size_t j = 0; j < dim; j++) {
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) s += x[i * dim + j];
    s /= (double)n;
    for (size_t i = 0; i < n; i++) s2 += (x[i * dim + j] - s) * (x[i * dim + j] - s);
    sc->mean[j] = s;
    sc->sd[j] = sqrt(s2 / (double)n) + 1e-6;
  }
  return BT_OK;
}

double bt_scaler_default_ridge(size_t dim, size_t n) {
  const double r = 2e-3 * (double)dim / (double)(n ? n : 1);
  return r < 1e-6 ? 1e-6 : r > 1 ? 1 : r;
}

#define CHUNK 256 /* rows standardised at a time */

/* rows (k x dim) = (x - mean) / sd for k rows of x taken in `order`. */
static void standardise(const bt_plain_head *sc, const float *x, size_t k, const int *order, double *rows) {
  const size_t dim = (size_t)sc->dim;
  for (size_t r = 0; r < k; r++) {
    const float *src = x + (order ? (size_t)order[r] : r) * dim;
    for (size_t j = 0; j < dim; j++) rows[r * dim + j] = ((double)src[j] - sc->mean[j]) / sc->sd[j];
  }
}

bt_status bt_scaler_whiten(bt_plain_head *sc, const float *x, size_t n, double ridge) {
  const int d = sc->dim;
  if (!sc->mean || !sc->sd || d < 1 || sc->w) return bt_fail(BT_E_ARG, "whiten: not a fitted scaler");
  if (n < 1) return bt_fail(BT_E_ARG, "whiten: no rows");
  if (!(ridge <= 0 || (ridge >= 1e-12 && ridge <= 1e6))) return bt_fail(BT_E_ARG, "whiten: ridge %g out of range", ridge);
  if (d > 16384) return bt_fail(BT_E_ARG, "whiten: %d features is more than 16384", d);
  if (ridge <= 0) ridge = bt_scaler_default_ridge((size_t)d, n);
  const size_t dd = (size_t)d * (size_t)d;
  double *cor = calloc(dd, sizeof *cor), *rows = malloc(CHUNK * (size_t)d * sizeof *rows);
  double *lam = malloc((size_t)d * sizeof *lam), *proj = bt_alloc(dd * sizeof *proj);
  double *work = NULL;
  int *iwork = NULL;
  bt_status st = cor && rows && lam && proj ? BT_OK : bt_fail(BT_E_NOMEM, "out of memory");
  /* the correlation matrix (upper triangle, column-major = lower row-major) */
  for (size_t first = 0; !st && first < n; first += CHUNK) {
    const size_t k = n - first < CHUNK ? n - first : CHUNK;
    standardise(sc, x + first * (size_t)d, k, NULL, rows);
    cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, d, (int)k, 1.0 / (double)n, rows, d, 1.0, cor, d);
  }
  for (size_t i = 0; !st && i < dd; i++)
    if (!isfinite(cor[i])) st = bt_fail(BT_E_ARG, "whiten: the features are not all finite");
  /* its eigenvectors (the columns, column-major) and eigenvalues, ascending */
  int info = 0, lwork = -1, liwork = -1, iw_query = 0;
  double w_query = 0;
  const int dn = d;
  if (!st) {
    dsyevd_("V", "U", &dn, cor, &dn, lam, &w_query, &lwork, &iw_query, &liwork, &info, 1, 1);
    if (info) st = bt_fail(BT_E_ARG, "whiten: LAPACK dsyevd workspace query failed (%d)", info);
  }
  if (!st) {
    lwork = (int)w_query + 1;
    liwork = iw_query + 1;
    work = malloc((size_t)lwork * sizeof *work);
    iwork = malloc((size_t)liwork * sizeof *iwork);
    if (!work || !iwork) st = bt_fail(BT_E_NOMEM, "out of memory");
  }
  if (!st) {
    dsyevd_("V", "U", &dn, cor, &dn, lam, work, &lwork, iwork, &liwork, &info, 1, 1);
    if (info) st = bt_fail(BT_E_ARG, "whiten: the eigendecomposition did not converge (LAPACK dsyevd %d)", info);
  }
  /* P's row k: the k-th largest eigenvector / sqrt(eigenvalue + ridge), or
   * zero for a direction the rows barely span (eigenvalue <= ridge / 1000:
   * whitened, its training variance would be under 0.1 %, and 1/sqrt(ridge)
   * would only magnify the release noise of the weights along it) */
  for (int k = 0; !st && k < d; k++) {
    const double *v = cor + (size_t)(d - 1 - k) * (size_t)d;
    const double l = lam[d - 1 - k] > 0 ? lam[d - 1 - k] : 0;
    if (l <= 1e-3 * ridge) {
      memset(proj + (size_t)k * d, 0, (size_t)d * sizeof *proj);
      continue;
    }
    int big = 0;
    for (int j = 1; j < d; j++)
      if (fabs(v[j]) > fabs(v[big])) big = j;
    const double f = (v[big] < 0 ? -1 : 1) / sqrt(l + ridge);
    for (int j = 0; j < d; j++) proj[(size_t)k * d + (size_t)j] = f * v[j];
    if (!isfinite(f)) st = bt_fail(BT_E_ARG, "whiten: eigenvalue %d is not finite", k);
  }
  if (!st) {
    bt_free_secret(sc->proj, sc->proj ? dd * sizeof *proj : 0);
    sc->proj = proj;
    proj = NULL;
  }
  bt_free_secret(cor, cor ? dd * sizeof *cor : 0); /* statistics of the client's rows */
  bt_free_secret(rows, rows ? CHUNK * (size_t)d * sizeof *rows : 0);
  bt_free_secret(proj, proj ? dd * sizeof *proj : 0);
  bt_free_secret(lam, lam ? (size_t)d * sizeof *lam : 0);
  bt_free_secret(work, work ? (size_t)lwork * sizeof *work : 0);
  bt_free_secret(iwork, iwork ? (size_t)liwork * sizeof *iwork : 0);
  return st;
}

void bt_scaler_apply(const bt_plain_head *sc, const float *x, size_t n, const int *order, double *out) {
  const size_t dim = (size_t)sc->dim;
  double *rows = sc->proj ? malloc(CHUNK * dim * sizeof *rows) : NULL;
  for (size_t first = 0; first < n; first += CHUNK) {
    const size_t k = n - first < CHUNK ? n - first : CHUNK;
    const int *ord = order ? order + first : NULL;
    const float *src = order ? x : x + first * dim;
    double *dst = out + first * (dim + 1);
    if (sc->proj && rows) { /* dst = rows P^T, rows of stride dim + 1 */
      standardise(sc, src, k, ord, rows);
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)k, (int)dim, (int)dim, 1.0, rows, (int)dim, sc->proj,
                  (int)dim, 0.0, dst, (int)dim + 1);
    } else if (sc->proj) { /* no memory for a chunk: one row at a time */
      for (size_t r = 0; r < k; r++) {
        const float *xr = src + (ord ? (size_t)ord[r] : r) * dim;
        for (size_t i = 0; i < dim; i++) {
          double s = 0;
          for (size_t j = 0; j < dim; j++) s += sc->proj[i * dim + j] * (((double)xr[j] - sc->mean[j]) / sc->sd[j]);
          dst[r * (dim + 1) + i] = s;
        }
      }
    } else {
      for (size_t r = 0; r < k; r++) {
        const float *xr = src + (ord ? (size_t)ord[r] : r) * dim;
        for (size_t j = 0; j < dim; j++) dst[r * (dim + 1) + j] = ((double)xr[j] - sc->mean[j]) / sc->sd[j];
      }
    }
    for (size_t r = 0; r < k; r++) dst[r * (dim + 1) + dim] = 1;
  }
  bt_free_secret(rows, rows ? CHUNK * dim * sizeof *rows : 0);
}

bt_status bt_scaler_fold(const bt_plain_head *sc, double *w) {
  if (!sc->proj) return BT_OK;
  const size_t dim = (size_t)sc->dim, F = dim + 1;
  double *t = malloc(dim * sizeof *t);
  if (!t) return bt_fail(BT_E_NOMEM, "out of memory");
  for (int c = 0; c < sc->classes; c++) { /* W'[c][j] = sum_k W[c][k] P[k][j], summed in order */
    double *wc = w + (size_t)c * F;
    for (size_t j = 0; j < dim; j++) t[j] = 0;
    for (size_t k = 0; k < dim; k++)
      for (size_t j = 0; j < dim; j++) t[j] += wc[k] * sc->proj[k * dim + j];
    memcpy(wc, t, dim * sizeof *t);
  }
  bt_free_secret(t, dim * sizeof *t);
  return BT_OK;
}

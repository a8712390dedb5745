/* pipeline: the BlindTuner protocol as a library, between the layers that
 * compute (train, io) and the front ends (the `blindtuner` command, the
 * Python package, the service to come).
 *
 * Roles.  The client holds the secret key and the plaintext data: it makes
 * a key set for a job (bt_client_keygen), standardises and encrypts its
 * datasets, decrypts what the server returns (models, validation losses,
 * logits), answers one bit per epoch (continue or stop) and evaluates the
 * decrypted head in the clear.  The server holds the evaluation bundle and
 * ciphertexts only: a training job (bt_job) runs epochs of encrypted
 * Nesterov steps with bootstrapping, computes the encrypted validation
 * loss, waits for the client's bit, checkpoints and resumes, and runs
 * encrypted inference.  Nothing in the server half takes a secret key.
 *
 * What a job needs is a pure function of its parameters and shape: the
 * layout, the rotation steps of its evaluation keys and the levels of its
 * ciphertexts are computed here from (parameters, tag) without building
 * the objects that use them.
 *
 * Files and memory.  Every object that crosses between the roles has a
 * container kind (include/blindtuner/io.h) and is saved to or loaded from a
 * file (atomically, validated) or encoded to and decoded from a memory
 * buffer (bt_pipeline_encode, bt_pipeline_decode), so a service can stream
 * it.
 *
 * Determinism.  Batch membership and batch order are public functions of
 * the client's and the server's seeds (bt_pipeline_row_order,
 * bt_pipeline_batch_order), so the same seeds train the same model whether
 * the roles run in one process (`blindtuner demo`) or apart.  With INSECURE
 * parameters only, the environment variable BT_INSECURE_TEST_SEED (hex)
 * replaces the client's fresh randomness (keys, encryption noise) with a
 * stream derived from it, so tests can compare runs bit for bit; it is
 * ignored, with a message, for any other parameters. */
#ifndef BLINDTUNER_PIPELINE_H
#define BLINDTUNER_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "blindtuner/io.h"
#include "blindtuner/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the pipeline's files (container kinds 8-17, docs/FORMAT.md section 5) ----
 * Every one of them starts with a tag: the key set's random identifier,
 * chosen by keygen, and the training layout the keys were made for.  A
 * loader given `expect` refuses (BT_E_PARAMS) a file whose tag differs:
 * data encrypted under other keys, or for another layout, is named as such
 * instead of decrypting to noise.  Bundles carry their parameters (load them
 * first; the other files are then loaded against them).  Objects inside a
 * loaded bundle or file refer to the parameters, which must outlive them. */
#define BT_KEYSET_ID_BYTES 16
typedef struct bt_job_tag {
  uint8_t keyset[BT_KEYSET_ID_BYTES];
  int batch;    /* rows per batch */
  int features; /* F: feature columns including the bias column */
  int classes;  /* C */
} bt_job_tag;

/* The client's: the secret key (file mode 0600, wiped buffers). */
typedef struct bt_secret_bundle {
  bt_job_tag tag;
  bt_secret_key *sk;
} bt_secret_bundle;
/* The server's: everything it computes with, nothing secret. */
typedef struct bt_eval_bundle {
  bt_job_tag tag;
  bt_eval_keys *ek;
  bt_encaps_key *to_sparse; /* dense-secret bootstrapping; both NULL otherwise */
  bt_switch_key *to_dense;
} bt_eval_bundle;

typedef enum bt_set_role { BT_SET_TRAIN = 1, BT_SET_VAL = 2, BT_SET_TEST = 3 } bt_set_role;
BT_API const char *bt_set_role_name(bt_set_role role);
/* An encrypted dataset: batches of rows, each as nx feature blocks and
 * (when labelled) one label ciphertext. */
typedef struct bt_enc_batch {
  int rows;
  bt_ciphertext **x; /* nx */
  bt_ciphertext *y;  /* NULL: no labels */
} bt_enc_batch;
typedef struct bt_enc_dataset {
  bt_job_tag tag;
  bt_set_role role;
  int rows, nx, nbatches, labelled;
  bt_enc_batch *b;
  /* A rank's share (bt_pipeline_load_dataset_share): only the batches k
   * with k % share_ranks == share_rank hold ciphertexts, the others their
   * row count alone (x and y NULL).  0: the whole set. */
  int share_rank, share_ranks;
} bt_enc_dataset;
BT_API void bt_enc_dataset_clear(bt_enc_dataset *d);

/* One ciphertext of an epoch: MODEL (A = V + iW) or LOSS (slot 0). */
typedef struct bt_enc_epoch {
  bt_job_tag tag;
  int epoch; /* 1-based */
  bt_ciphertext *ct;
} bt_enc_epoch;
/* Frees a loaded epoch's ciphertext (not for the views bt_job_model and
 * bt_job_loss return). */
BT_API void bt_enc_epoch_clear(bt_enc_epoch *e);

/* The server's training state after `epochs_done` epochs. */
typedef struct bt_checkpoint {
  bt_job_tag tag;
  int epochs_done;
  int stopped;            /* the client said stop */
  double lr, momentum;
  uint64_t seed;          /* batch order */
  double train_s, val_s;  /* seconds so far */
  long steps, bootstraps;
  bt_ciphertext *a;
  int answered;           /* in memory only (not saved): the client's bit for the last
                           * epoch has been given; a restored job asks for it again */
} bt_checkpoint;
/* Frees a loaded checkpoint's ciphertext (not for bt_job_checkpoint's view). */
BT_API void bt_checkpoint_clear(bt_checkpoint *c);

/* The client's one bit for an epoch. */
typedef struct bt_answer {
  bt_job_tag tag;
  int epoch;
  int go_on; /* 1 continue, 0 stop */
} bt_answer;

/* Encrypted logits of a dataset: one ciphertext per batch. */
typedef struct bt_enc_logits {
  bt_job_tag tag;
  int rows, nbatches;
  int *batch_rows;
  bt_ciphertext **z;
} bt_enc_logits;
BT_API void bt_enc_logits_clear(bt_enc_logits *l);

/* The client's plaintext head.  Raw features x (dim of them) are first
 * standardised, s = (x - mean) / sd.  A SCALER (the client's preprocessing,
 * w NULL) may then whiten them, u = P s with P = proj (dim x dim, row-major;
 * NULL: u = s); the server trains on [u; 1].  A PLAIN MODEL holds the
 * logits W [s; 1] with W classes x (dim + 1): the projection is folded into
 * W at decryption (bt_scaler_fold), so a model never carries proj.  Both
 * files are mode 0600. */
typedef struct bt_plain_head {
  bt_job_tag tag;
  int epoch; /* the model's epoch; 0 for a scaler */
  int dim, classes;
  double *mean, *sd, *w;
  double *proj; /* scalers only: the whitening projection, or NULL */
} bt_plain_head;
BT_API void bt_plain_head_clear(bt_plain_head *h);

BT_API bt_status bt_pipeline_save_secret_bundle(const char *path, const bt_secret_bundle *b) BT_MUST_CHECK BT_NONNULL(1, 2);
/* *p gets the bundle's parameters (flags as for bt_ckks_params_new). */
BT_API bt_status bt_pipeline_load_secret_bundle(const char *path, unsigned flags, bt_ckks_params **p,
                                   bt_secret_bundle *b) BT_MUST_CHECK BT_NONNULL(1, 3, 4);
BT_API void bt_secret_bundle_clear(bt_secret_bundle *b);
BT_API bt_status bt_pipeline_save_eval_bundle(const char *path, const bt_eval_bundle *b) BT_MUST_CHECK BT_NONNULL(1, 2);
BT_API bt_status bt_pipeline_load_eval_bundle(const char *path, unsigned flags, bt_ckks_params **p,
                                 bt_eval_bundle *b) BT_MUST_CHECK BT_NONNULL(1, 3, 4);
BT_API void bt_eval_bundle_clear(bt_eval_bundle *b);

BT_API bt_status bt_pipeline_save_dataset(const char *path, const bt_enc_dataset *d) BT_MUST_CHECK BT_NONNULL(1, 2);
/* A training set and its scaler, committed together the same way (the
 * scaler last, its journal "<scaler>.commit"); the same refusals. */
BT_API bt_status bt_pipeline_save_train_set(const char *set, const bt_enc_dataset *d, const char *scaler,
                                            const bt_ckks_params *p, const bt_plain_head *sc) BT_MUST_CHECK;
/* Finishes a pair commit that a crash interrupted: when "<path>.commit"
 * exists, the renames it names that are not done yet are done and it is
 * removed (*finished 1).  Loading a secret bundle or a scaler calls it
 * first.  A journal that does not name path as its second target, or names
 * anything but temporaries of its targets, is refused (BT_E_FORMAT). */
BT_API bt_status bt_pipeline_finish_pair(const char *path, int *finished) BT_MUST_CHECK;
BT_API bt_status bt_pipeline_load_dataset(const char *path, const bt_ckks_params *p, const bt_job_tag *expect,
                             bt_enc_dataset *d) BT_MUST_CHECK BT_NONNULL(1, 2, 4);
/* Rank `rank`'s share of it among `ranks` (a data-parallel job, include
 * this header's bt_collective): every batch is read and checked, only the
 * batches k with k % ranks == rank are kept (the rest as row counts). */
BT_API bt_status bt_pipeline_load_dataset_share(const char *path, const bt_ckks_params *p, const bt_job_tag *expect,
                                                int rank, int ranks, bt_enc_dataset *d) BT_MUST_CHECK BT_NONNULL(1, 2, 6);
/* kind: BT_IO_MODEL or BT_IO_LOSS */
BT_API bt_status bt_pipeline_save_epoch(const char *path, bt_io_kind kind, const bt_enc_epoch *e) BT_MUST_CHECK BT_NONNULL(1, 3);
BT_API bt_status bt_pipeline_load_epoch(const char *path, bt_io_kind kind, const bt_ckks_params *p, const bt_job_tag *expect,
                           bt_enc_epoch *e) BT_MUST_CHECK BT_NONNULL(1, 3, 5);
BT_API bt_status bt_pipeline_save_checkpoint(const char *path, const bt_checkpoint *c) BT_MUST_CHECK BT_NONNULL(1, 2);
BT_API bt_status bt_pipeline_load_checkpoint(const char *path, const bt_ckks_params *p, const bt_job_tag *expect,
                                bt_checkpoint *c) BT_MUST_CHECK BT_NONNULL(1, 2, 4);
BT_API bt_status bt_pipeline_save_answer(const char *path, const bt_ckks_params *p, const bt_answer *a) BT_MUST_CHECK
    BT_NONNULL(1, 2, 3);
BT_API bt_status bt_pipeline_load_answer(const char *path, const bt_ckks_params *p, const bt_job_tag *expect,
                            bt_answer *a) BT_MUST_CHECK BT_NONNULL(1, 2, 4);
BT_API bt_status bt_pipeline_save_logits(const char *path, const bt_enc_logits *l) BT_MUST_CHECK BT_NONNULL(1, 2);
BT_API bt_status bt_pipeline_load_logits(const char *path, const bt_ckks_params *p, const bt_job_tag *expect,
                            bt_enc_logits *l) BT_MUST_CHECK BT_NONNULL(1, 2, 4);
/* kind: BT_IO_PLAIN_MODEL or BT_IO_SCALER.  These hold no ciphertexts: the
 * parameter hash is that of `p` (the key set's) when given, and a loader
 * given p == NULL does not check it, so a decrypted model can be used
 * without any key. */
BT_API bt_status bt_pipeline_save_head(const char *path, bt_io_kind kind, const bt_ckks_params *p,
                          const bt_plain_head *h) BT_MUST_CHECK BT_NONNULL(1, 4);
BT_API bt_status bt_pipeline_load_head(const char *path, bt_io_kind kind, const bt_ckks_params *p, const bt_job_tag *expect,
                          bt_plain_head *h) BT_MUST_CHECK BT_NONNULL(1, 5);

/* What a file holds, for `blindtuner inspect`: the header (checksum
 * verified over the whole file) and the first fields of the payload.  Never
 * reads key material.  Fields that do not apply to the kind are -1. */
typedef struct bt_key_group {
  int level;      /* the highest ciphertext level the keys serve */
  int count;      /* rotation keys at that level */
  uint64_t bytes; /* their payload bytes */
} bt_key_group;
typedef struct bt_pipeline_summary {
  bt_io_info info;
  int has_tag;
  bt_job_tag tag;
  int role, rows, batches, epoch, flag; /* flag: stopped (checkpoint), continue (answer) */
  int logn;                             /* PARAMS and bundles */
  char params_name[64];
  /* EVAL_BUNDLE: its keys (read from each key's header; -1 / 0 otherwise) */
  int max_level;                /* of the parameters */
  int relin_level, conj_level;  /* -1 when absent */
  uint64_t relin_bytes, conj_bytes;
  int encaps;                   /* the encapsulation pair is there */
  uint64_t encaps_bytes;        /* both of its frames */
  int ngroups;                  /* rotation keys by level, highest first */
  bt_key_group groups[BT_MAX_PRIMES];
} bt_pipeline_summary;
BT_API bt_status bt_pipeline_summarize(const char *path, bt_pipeline_summary *s) BT_MUST_CHECK BT_NONNULL(1, 2);

/* Parses a pipeline container (kinds 8..17) from memory with every check a
 * file load makes, then discards it: BT_OK when valid (fuzzing, tests).  p:
 * the parameters other kinds than bundles must have been made for. */
BT_API bt_status bt_pipeline_validate_buffer(bt_io_kind kind, const uint8_t *buf, size_t len,
                                const bt_ckks_params *p) BT_MUST_CHECK BT_NONNULL(2);


/* Memory buffers: one container of `kind` (8..17) for the object `obj`
 * (the struct of that kind above; for BT_IO_MODEL and BT_IO_LOSS a
 * bt_enc_epoch, for the two head kinds a bt_plain_head).  `params` are the
 * object's parameters; for the two head kinds they may be NULL, as for
 * bt_pipeline_save_head.  *buf is freed with bt_free_secret(*buf, *len) (the
 * secret bundle and heads hold secrets; other kinds may use bt_free).  The
 * decoder applies every check a file load makes; for the bundles `*params`
 * receives the parameters (flags as for bt_ckks_params_new), for the other
 * kinds `params` points at the parameters they must have been made for. */
BT_API bt_status bt_pipeline_encode(bt_io_kind kind, const void *obj, const bt_ckks_params *params, uint8_t **buf,
                                    size_t *len) BT_MUST_CHECK;
BT_API bt_status bt_pipeline_decode(bt_io_kind kind, const uint8_t *buf, size_t len, unsigned flags,
                                    bt_ckks_params **params, const bt_job_tag *expect, void *out) BT_MUST_CHECK;
/* The size of the struct that holds an object of `kind` (8..17), 0 for
 * any other kind: for bindings that allocate the caller-owned structs
 * without mirroring their fields (the Python package). */
BT_API size_t bt_pipeline_sizeof(bt_io_kind kind);
/* "secret bundle", "encrypted dataset", ...; the container registry's name. */
BT_API const char *bt_pipeline_kind_name(bt_io_kind kind);

/* ---- a job's shape: pure functions of (parameters, tag) ---- */
/* The layout of a tag: the diagonal layout of hemat, folded wherever the
 * shape allows (include/blindtuner/hemat.h), and the softmax approximation
 * for its classes (sa may be NULL; else free it with bt_softmax_approx_free). */
BT_API bt_status bt_job_layout(const bt_ckks_params *p, const bt_job_tag *tag, bt_hemat_layout *L,
                               bt_softmax_approx *sa) BT_MUST_CHECK;
/* The rotation steps the evaluation keys of a job must cover (bootstrapping
 * and training, without repeats): writes at most `cap` into steps and sets
 * *count to the number there are (call with cap 0 to size the array).
 * levels (may be NULL) receives the highest level each step is used at:
 * bootstrapping's from bt_bootstrap_config_steps, training's from
 * bt_train_layout_steps: the encrypted products' at BT_TRAIN_PRODUCT_LEVEL,
 * the softmax's at the level bootstrapping outputs (training never holds a
 * ciphertext above it), so the keys for them are level-limited
 * (bt_keygen_eval_levels). */
BT_API bt_status bt_job_rotations(const bt_ckks_params *p, const bt_job_tag *tag, int *steps, int *levels,
                                  size_t cap, size_t *count) BT_MUST_CHECK;
/* BT_OK when the keys cover every rotation of the job at its level, with
 * relinearisation and conjugation keys; else BT_E_KEY naming the first
 * missing or too-low key. */
BT_API bt_status bt_job_check_keys(const bt_ckks_params *p, const bt_job_tag *tag,
                                   const bt_eval_keys *ek) BT_MUST_CHECK;
/* The Hamming weight of the encapsulation keys the job's bootstrapping
 * needs (0: none, the secret is sparse already). */
BT_API int bt_job_encaps_weight(const bt_ckks_params *p);

/* The client's row order of a training set: a permutation of n rows from
 * the seed (the same in `encrypt --seed S` and `demo --seed S`). */
BT_API bt_status bt_pipeline_row_order(uint64_t seed, size_t n, int *perm) BT_MUST_CHECK;
/* The server's batch order in epoch `epoch` (0-based) from its seed. */
BT_API void bt_pipeline_batch_order(uint64_t seed, int epoch, int nbatches, int *order);
/* The same for rank `rank` of a data-parallel job of `ranks`: it owns the
 * batches k with k % ranks == rank and visits them in the order
 * bt_pipeline_batch_order gives for their count; step s of the epoch takes
 * order[s] of every rank that has one.  Writes and returns that count
 * (order has room for nbatches / ranks + 1).  One rank: the order above. */
BT_API int bt_pipeline_rank_order(uint64_t seed, int epoch, int nbatches, int rank, int ranks, int *order);

/* Progress of a long call: `done` of `total` units of `what` ("batch",
 * "step", "validation batch"); return nonzero to cancel (the call then
 * fails with BT_E_ARG "cancelled"). */
typedef int (*bt_progress_fn)(void *user, const char *what, int done, int total);

/* ---- the client ---- */
typedef struct bt_client bt_client;

/* A new key set for `classes` classes of `dim`-dimensional features in
 * batches of `batch` rows (0: 1024) under the preset (flags as for
 * bt_ckks_params_new): the client (secret key, tag with a fresh key-set
 * ID) and, in *eb, the evaluation bundle for the server (clear it with
 * bt_eval_bundle_clear; its objects refer to the client's parameters, so
 * free the client after it).  threads: 0 for bt_default_threads(). */
BT_API bt_status bt_client_keygen(const char *preset, unsigned flags, int dim, int classes, int batch, int threads,
                                  bt_client **out, bt_eval_bundle *eb) BT_MUST_CHECK;
/* The same key set as bt_client_keygen (the same bytes for the same
 * randomness), written straight to a key-set pair as bt_client_save_keyset
 * writes it, without ever holding the evaluation keys in memory: they are
 * made `threads` at a time (0: bt_default_threads()) into reused buffers
 * and written as they are made.  progress ("key", done, total) may be NULL.
 * *out gets the client; info (may be NULL) what was made. */
typedef struct bt_keyset_info {
  size_t galois_keys; /* rotation and conjugation keys */
  int encapsulation;  /* the bundle has the sparse-secret encapsulation keys */
} bt_keyset_info;
BT_API bt_status bt_client_keygen_save(const char *preset, unsigned flags, int dim, int classes, int batch,
                                       int threads, const char *secret, const char *eval, bt_progress_fn progress,
                                       void *user, bt_client **out, bt_keyset_info *info) BT_MUST_CHECK;
/* The client of a saved secret bundle (file or memory). */
BT_API bt_status bt_client_open(const char *path, unsigned flags, bt_client **out) BT_MUST_CHECK;
BT_API bt_status bt_client_open_buffer(const uint8_t *buf, size_t len, unsigned flags,
                                       bt_client **out) BT_MUST_CHECK;
/* The secret bundle: a file of mode 0600, or a buffer for bt_free_secret. */
BT_API bt_status bt_client_save(const bt_client *c, const char *path) BT_MUST_CHECK;
BT_API bt_status bt_client_write(const bt_client *c, uint8_t **buf, size_t *len) BT_MUST_CHECK;
/* The key set as a pair of files committed together (src/pipeline/pairs.c):
 * both written complete under temporary names beside their targets, a
 * journal "<secret>.commit", then the two renames (the secret bundle last);
 * a crash leaves the old pair, or the new one once the secret bundle is
 * next loaded (bt_pipeline_finish_pair).  Refuses two names for one file
 * (also through links) and an eval path that holds a secret bundle or key. */
BT_API bt_status bt_client_save_keyset(const bt_client *c, const bt_eval_bundle *eb, const char *secret,
                                       const char *eval) BT_MUST_CHECK;
/* Wipes the secret key. */
BT_API void bt_client_free(bt_client *c);
BT_API const bt_ckks_params *bt_client_params(const bt_client *c);
BT_API const bt_job_tag *bt_client_tag(const bt_client *c);
BT_API void bt_client_set_threads(bt_client *c, int threads);

/* The standardisation of the client's training rows: mean and deviation
 * (+1e-6) of each of the dim features over n rows (x: n x dim). */
BT_API bt_status bt_scaler_fit(const bt_job_tag *tag, const float *x, size_t n, size_t dim,
                               bt_plain_head *scaler) BT_MUST_CHECK;
/* Whitening (docs/TRAINING.md, "Preconditioned features"): adds to a fitted
 * scaler the projection P = (Lambda + ridge)^(-1/2) U^T, where U Lambda U^T
 * is the correlation matrix of the n standardised rows of x (the same rows
 * the scaler was fitted on), eigenvalues in decreasing order, each
 * eigenvector's largest entry positive; the rows of P for eigenvalues at
 * most ridge / 1000 (directions the rows barely span) are zero.  The whitened training rows then
 * have (nearly) identity covariance, which makes gradient descent converge
 * in far fewer steps.  ridge <= 0 picks bt_scaler_default_ridge(dim, n).
 * Replaces a projection the scaler had. */
BT_API bt_status bt_scaler_whiten(bt_plain_head *scaler, const float *x, size_t n, double ridge) BT_MUST_CHECK;
/* 2e-3 * dim / n, clamped to [1e-6, 1]: the regularisation that did best in
 * the sweep recorded in docs/TRAINING.md (its noise floor grows as dim / n). */
BT_API double bt_scaler_default_ridge(size_t dim, size_t n);
/* The rows encryption packs: out (n x (dim + 1)) = [P (x - mean) / sd; 1]
 * (P the identity without a projection) for rows of x (n x dim) taken in
 * `order` (NULL: as given). */
BT_API void bt_scaler_apply(const bt_plain_head *scaler, const float *x, size_t n, const int *order, double *out);
/* Folds the scaler's projection into weights of the server's units, in
 * place: w (classes x (dim + 1)) becomes W' with W' [s; 1] = W [P s; 1]
 * (nothing changes without a projection). */
BT_API bt_status bt_scaler_fold(const bt_plain_head *scaler, double *w) BT_MUST_CHECK;
/* labels[i] = the index of row i's largest logit (z: rows x classes). */
BT_API void bt_logits_argmax(const float *z, size_t rows, int classes, int64_t *labels);

/* Encrypts n rows of x (n x dim float32, dim = tag features - 1) and, when
 * y is not NULL, their labels (0..classes-1): rows standardised (and
 * whitened, when it has a projection) by `scaler`, the bias column appended, taken in the order `order` (NULL:
 * as given; a training set is normally taken in bt_pipeline_row_order's
 * order), packed into batches of the tag's batch rows (the last one
 * partial) and encrypted under the secret key. */
BT_API bt_status bt_client_encrypt(bt_client *c, bt_set_role role, const float *x, const int *y, size_t n,
                                   const bt_plain_head *scaler, const int *order, bt_progress_fn progress,
                                   void *user, bt_enc_dataset *out) BT_MUST_CHECK;
/* The plaintext head of an encrypted model: W = Im(A) unpacked (classes x
 * features, bias last), the scaler's projection folded in (bt_scaler_fold)
 * so that W applies to standardised features, and the scaler's
 * standardisation copied in, ready for evaluate/predict.  With a scaler
 * without a projection, W is the server's weights as they are. */
BT_API bt_status bt_client_decrypt_model(bt_client *c, const bt_enc_epoch *model, const bt_plain_head *scaler,
                                         bt_plain_head *out) BT_MUST_CHECK;
/* Everything the server returns is checked before it is decoded (the
 * job's parameters, slot count and degree 1; a level of the parameters; a
 * scale within a factor BT_RETURN_SCALE_SLACK of the default and within the
 * level's modulus; not a trivial encryption), and every decrypted value is
 * released flooded with Gaussian noise of standard deviation
 * BT_RELEASE_SIGMA, a function of the secret key and the ciphertext (the
 * same ciphertext always gives the same values), and rounded to multiples
 * of 1 / BT_RELEASE_GRID_INV (docs/SECURITY.md). */
#define BT_RETURN_SCALE_SLACK 1024.0
#define BT_RELEASE_SIGMA 0x1p-16
#define BT_RELEASE_GRID_INV 0x1p24
BT_API double bt_release_round(double v);
/* The value of an encrypted validation loss (slot 0). */
BT_API bt_status bt_client_decrypt_loss(bt_client *c, const bt_enc_epoch *loss, double *value) BT_MUST_CHECK;
/* Decrypted logits: z gets rows x classes floats (rows = lg->rows). */
BT_API bt_status bt_client_decrypt_logits(bt_client *c, const bt_enc_logits *lg, float *z) BT_MUST_CHECK;

/* The early-stopping half of the protocol: decrypts the loss of the next
 * epoch (it must be epoch es->epochs + 1, within es->max_epochs, and `es`
 * must not have said stop: the client's record bounds what it decrypts, not
 * the server's counter), feeds it to `es` and fills the one-bit answer for
 * the server.  *value (may be NULL) gets the released loss (flooded and
 * rounded, see bt_release_round).  A loss that fails validation or
 * decryption is refused: the call fails, `es` is stopped and *answer is a
 * stop for that epoch. */
BT_API bt_status bt_client_decide(bt_client *c, bt_early_stop *es, const bt_enc_epoch *loss, double *value,
                                  bt_answer *answer) BT_MUST_CHECK;

/* The client's record of its decisions for one training run: the
 * early-stopping state (the agreed epochs included) and the released loss
 * of each decided epoch (NaN for a refused one).  It is kept by the client,
 * never in the server's hands: a JSON file, mode 0600, checked against the
 * key set on load. */
#define BT_MAX_DECISIONS 10000
typedef struct bt_decisions {
  bt_early_stop es;
  double *loss; /* es.max_epochs entries, es.epochs used */
} bt_decisions;
BT_API bt_status bt_decisions_init(bt_decisions *d, int patience, int max_epochs) BT_MUST_CHECK;
BT_API void bt_decisions_clear(bt_decisions *d);
BT_API bt_status bt_decisions_load(const char *path, const bt_job_tag *tag, bt_decisions *d) BT_MUST_CHECK;
/* Loads the record at path, or starts one when there is none (which needs
 * max_epochs; patience 0 means 3).  Non-zero patience and max_epochs must
 * match an existing record's: the agreement does not change mid-run. */
BT_API bt_status bt_decisions_open(const char *path, const bt_job_tag *tag, int patience, int max_epochs,
                                   bt_decisions *d) BT_MUST_CHECK;
BT_API bt_status bt_decisions_save(const char *path, const bt_job_tag *tag, const bt_decisions *d) BT_MUST_CHECK;

/* The client's step of the file protocol in a job's exchange directory:
 * decides the next epoch if DIR/loss-EEE.bt is there (bt_client_decide),
 * saves the record to `record`, then writes DIR/answer-EEE.bt.  A loss
 * beyond the agreement or after a stop is refused undecrypted; a malformed
 * or forged one is recorded and answered stop (and the call fails).  With
 * no new loss nothing is decrypted: a lost answer is re-written from the
 * record (rewritten = 1).  It holds DIR's lock (bt_dir_lock; the `train`
 * command takes the same) while it runs and refuses to run when another
 * process holds it, or when the record on disk is no longer the one *d was
 * read from (another decide ran in between). */
typedef struct bt_decide_result {
  int decided;   /* an epoch was decided in this call */
  int rewritten; /* nothing to decide; the last answer was re-written */
  int epoch;     /* the epoch decided, or the next one when nothing was */
  double loss;   /* the released loss (decided), NaN otherwise */
  bt_answer answer; /* the last answer (its epoch 0 when none was written) */
  char answer_path[4096];
} bt_decide_result;
BT_API bt_status bt_client_decide_dir(bt_client *c, const char *dir, const char *record, bt_decisions *d,
                                      bt_decide_result *out) BT_MUST_CHECK;

/* ---- the plaintext head (client side, no keys) ---- */
/* z (n x classes) = W [standardised x; 1] for n rows of raw features. */
BT_API void bt_plain_head_logits(const bt_plain_head *h, const float *x, size_t n, double *z);
/* Accuracy and mean cross-entropy on labelled rows; right and count (each
 * `classes` long, may be NULL) get per-class hits and rows. */
BT_API bt_status bt_plain_head_evaluate(const bt_plain_head *h, const float *x, const int *y, size_t n,
                                        double *accuracy, double *loss, long *right, long *count) BT_MUST_CHECK;
/* Predicted labels (n) and, when prob is not NULL, softmax probabilities (n x classes). */
BT_API bt_status bt_plain_head_predict(const bt_plain_head *h, const float *x, size_t n, int64_t *labels,
                                       float *prob) BT_MUST_CHECK;

/* ---- the server: evaluation keys and ciphertexts only ---- */
/* The objects encrypted training and inference run on, built from an
 * evaluation bundle (which must outlive them). */
typedef struct bt_server_engine {
  bt_bootstrapper *bs;
  bt_trainer *trainer;
  bt_evaluator *ev;
  double setup_s;
} bt_server_engine;
BT_API bt_status bt_server_engine_init(const bt_ckks_params *p, const bt_hemat_layout *L,
                                       const bt_softmax_approx *sa, const bt_eval_bundle *eb, double lr,
                                       double momentum, bt_server_engine *e) BT_MUST_CHECK;
BT_API void bt_server_engine_clear(bt_server_engine *e);

/* The ranks of a data-parallel job (docs/SCALING.md): the transport is the
 * caller's (MPI in include/blindtuner/dist.h, threads in the tests).  Every
 * call is collective: all ranks make it, in the same order. */
typedef struct bt_collective {
  int rank, ranks;
  void *user;
  bt_ct_sum_fn sum; /* a ciphertext summed over the ranks (include/blindtuner/train.h) */
  /* *all_same = 1 when every rank passed the same 32 bytes */
  bt_status (*same)(void *user, const uint8_t digest[32], int *all_same);
} bt_collective;

typedef struct bt_job_options {
  int epochs;      /* at most this many epochs (default 2) */
  double lr;       /* 0 (the default): the large-batch rule, bt_lr_for_batch of
                    * the global batch (0.3 up to 1,024 rows); a resumed job
                    * keeps its checkpoint's rate */
  double momentum; /* default 0.9 */
  uint64_t seed;   /* batch order (default 1) */
  /* NULL: one process.  Else this rank's part of a data-parallel job: its
   * datasets are its shares (bt_pipeline_load_dataset_share with the same
   * rank and ranks), a step's global batch is one batch of every rank, the
   * validation loss and inference split their batches over the ranks.
   * Must outlive the job.  A progress callback that cancels must do so on
   * every rank at the same step (a rank that stops alone leaves the others
   * waiting in a sum: end them all, as `blindtuner train` does). */
  const bt_collective *coll;
  /* Batches per rank in a step (gradient accumulation; 0 or 1: one, at
   * most BT_MAX_ACCUMULATE): a step's global batch is ranks x accumulate
   * batches, their gradients summed before one update -- the model ranks x
   * accumulate ranks of one batch each would train, byte for byte.  The way
   * to batches larger than a layout's block (docs/TRAINING.md). */
  int accumulate;
  /* The logits' range the softmax approximation covers (0: BT_SOFTMAX_BOUND,
   * 32; at most BT_MAX_SOFTMAX_BOUND).  A wider range takes deeper
   * polynomials and more bootstraps a step (docs/TRAINING.md); a logit
   * outside it makes the step's output garbage. */
  double softmax_bound;
} bt_job_options;
#define BT_MAX_SOFTMAX_BOUND 256
#define BT_MAX_ACCUMULATE 64
/* The large-batch learning-rate rule (docs/TRAINING.md): BT_LR_BASE for a
 * global batch (rows a step: ranks x accumulate x the layout's batch) of at
 * most BT_LR_BASE_ROWS rows, scaled linearly with the batch above that
 * (Goyal et al. 2017), so that an epoch moves the model about as far in
 * fewer steps. */
#define BT_LR_BASE 0.3
#define BT_LR_BASE_ROWS 1024
BT_API double bt_lr_for_batch(long global_rows);
/* The defaults above. */
BT_API void bt_job_options_init(bt_job_options *o);

typedef enum bt_job_state {
  BT_JOB_TRAIN = 1, /* an epoch is ready to train */
  BT_JOB_WAIT = 2,  /* the validation loss of the last epoch waits for the client's answer */
  BT_JOB_DONE = 3   /* all epochs trained, or the client said stop */
} bt_job_state;

/* What one epoch took. */
typedef struct bt_job_epoch_report {
  int epoch, steps;
  double train_s, validation_s;
  bt_train_stats stats; /* training and validation together */
} bt_job_epoch_report;

typedef struct bt_job bt_job;
/* A job on the evaluation bundle `eb` (whose parameters are p) and the
 * encrypted sets (decoded against p; borrowed:
 * they must outlive the job; val may be NULL: no validation loss and no
 * answers; train may be NULL for an inference-only job).  It starts from
 * the zero model; the server's objects are built on the first epoch or
 * inference. */
BT_API bt_status bt_job_new(const bt_ckks_params *p, const bt_eval_bundle *eb, const bt_enc_dataset *train,
                            const bt_enc_dataset *val, const bt_job_options *o, bt_job **out) BT_MUST_CHECK;
BT_API void bt_job_free(bt_job *j);
/* Continues from a checkpoint (copied): its options must be the job's (a
 * job whose options left the learning rate to the rule takes the
 * checkpoint's, before its first epoch). */
BT_API bt_status bt_job_restore(bt_job *j, const bt_checkpoint *cp) BT_MUST_CHECK;
/* The state to save after an epoch or an answer: a view (cp->a points at
 * the job's model; do not free it). */
BT_API void bt_job_checkpoint(const bt_job *j, bt_checkpoint *cp);
BT_API bt_job_state bt_job_state_of(const bt_job *j);
BT_API int bt_job_epochs_done(const bt_job *j);
/* The learning rate the job trains with: the options' or the rule's. */
BT_API double bt_job_lr(const bt_job *j);
/* Trains the next epoch and, with a validation set, computes its encrypted
 * loss; the job then waits for the answer (BT_JOB_WAIT) or is done.  On
 * failure or cancellation the job is as it was before the call (the model
 * of the last finished epoch), so the epoch can be run again. */
BT_API bt_status bt_job_run_epoch(bt_job *j, bt_progress_fn progress, void *user,
                                  bt_job_epoch_report *report) BT_MUST_CHECK;
/* Views of the model and the validation loss after the last epoch (ct
 * points into the job). */
BT_API bt_status bt_job_model(const bt_job *j, bt_enc_epoch *out) BT_MUST_CHECK;
BT_API bt_status bt_job_loss(const bt_job *j, bt_enc_epoch *out) BT_MUST_CHECK;
/* The client's bit for the last epoch: checked against the job (key set,
 * epoch); go on or stop. */
BT_API bt_status bt_job_answer(bt_job *j, const bt_answer *a) BT_MUST_CHECK;
/* On ranks: fails (BT_E_PARAMS) unless every rank holds the same model and
 * state (epochs done, answer); collective.  Call it after each rank has
 * restored or resumed the job.  BT_OK without ranks. */
BT_API bt_status bt_job_check_ranks(const bt_job *j) BT_MUST_CHECK;
/* Encrypted inference: the logits of every row of `d` under `model`.  On
 * ranks (bt_job_options.coll; d this rank's share) each computes its own
 * batches and every rank gets all the logits. */
BT_API bt_status bt_job_infer(bt_job *j, const bt_enc_epoch *model, const bt_enc_dataset *d, bt_progress_fn progress,
                              void *user, bt_enc_logits *out) BT_MUST_CHECK;
/* Seconds spent building the server's objects (0 before they exist). */
BT_API double bt_job_setup_seconds(const bt_job *j);

/* ---- a job in its exchange directory DIR (the `train` command and the service) ----
 * Continues the job from DIR/checkpoint.bt when there is one (*resumed = 1):
 * loaded against the job's parameters and tag, restored (bt_job_restore:
 * the options must be the job's). */
BT_API bt_status bt_job_resume_dir(bt_job *j, const char *dir, int *resumed) BT_MUST_CHECK;
/* The record of the epoch just run: DIR/loss-EEE.bt (with a validation
 * set), DIR/model-EEE.bt, then DIR/checkpoint.bt (last, so a crash before it
 * redoes the epoch), then report.json and report.svg (bt_report_record_epoch).
 * A report that cannot be written does not fail the call: *report_ok (may
 * be NULL) is 0 and bt_last_error says why. */
BT_API bt_status bt_job_save_epoch(const bt_job *j, const char *dir, const bt_job_epoch_report *r,
                                   int *report_ok) BT_MUST_CHECK;
/* DIR/checkpoint.bt from the job's state now. */
BT_API bt_status bt_job_save_checkpoint_dir(const bt_job *j, const char *dir) BT_MUST_CHECK;
/* The client's answer to the epoch the job waits for (BT_JOB_WAIT), from
 * DIR/answer-EEE.bt: *found = 0 while there is none; else it is loaded
 * against the job's key set, must answer that epoch, and is given to the job
 * (bt_job_answer); *go_on says which; after a stop the checkpoint is saved. */
BT_API bt_status bt_job_answer_dir(bt_job *j, const char *dir, int *found, int *go_on) BT_MUST_CHECK;
/* bt_job_answer_dir, waiting up to wait_s seconds (0: one look) for the
 * answer file.  *lock is the directory's lock (bt_dir_lock; -1 where the file
 * system cannot lock), held on entry: while nothing is there it is let go, so
 * that the client's decide can take it, and taken again (retrying for a
 * minute) once the answer file appears; on return it is held again unless
 * the wait ran out (then *lock is -1 and *found 0).  Fails (BT_E_IO) when
 * another process saved a checkpoint in DIR meanwhile: a second train on
 * the directory, started while this one let go, went on without it. */
BT_API bt_status bt_job_await_answer_dir(bt_job *j, const char *dir, int wait_s, int *lock, int *found,
                                         int *go_on) BT_MUST_CHECK;
/* An evaluation bundle's parameters (flags as for bt_ckks_params_new) and
 * tag, without building its keys: the header and the checksum over the
 * whole file are verified, the keys are read but not parsed (a service
 * checks an upload with it; training loads the whole bundle). */
BT_API bt_status bt_pipeline_load_eval_params(const char *path, unsigned flags, bt_ckks_params **p,
                                              bt_job_tag *tag) BT_MUST_CHECK BT_NONNULL(1, 3, 4);

/* ---- reports ---- */
typedef struct bt_report_series {
  const char *name, *colour;
  const double *y; /* one value per epoch; NaN: none */
} bt_report_series;
/* SVG documents (malloc'd; NULL when out of memory): curves over epochs
 * 1..n with tick labels in `fmt`; stacked bars per epoch. */
BT_API char *bt_report_svg_lines(const char *title, int n, const bt_report_series *s, int ns, const char *fmt);
BT_API char *bt_report_svg_bars(const char *title, int n, const bt_report_series *s, int ns);
/* The server's time split: phase[e * BT_REPORT_PHASES + k] for these keys. */
#define BT_REPORT_PHASES 5
BT_API extern const char *const bt_report_phase_keys[BT_REPORT_PHASES];
BT_API char *bt_report_svg_phases(int n, const double *phase);
/* The client's page (malloc'd HTML): the decrypted validation loss per
 * epoch and, with scored_on (the features' name), each epoch model's loss
 * and accuracy on them; phase (may be NULL) the server's timings. */
BT_API char *bt_report_html(const char *dir, int n, const double *loss, const double *sloss, const double *acc,
                            const double *phase, const char *scored_on);
/* The server's record in DIR: report.json gets (or has replaced) the entry
 * of epoch r->epoch with its timings, and report.svg is redrawn. */
BT_API bt_status bt_report_record_epoch(const char *dir, const bt_job_epoch_report *r) BT_MUST_CHECK;

/* ---- file names in a training job's exchange directory ----
 * DIR/NAME-EEE.bt for epoch > 0, DIR/NAME.bt otherwise ("model", "loss",
 * "answer", "checkpoint"); BT_E_ARG if it does not fit in cap. */
BT_API bt_status bt_pipeline_path(char *out, size_t cap, const char *dir, const char *name, int epoch) BT_MUST_CHECK;

#ifdef __cplusplus
}
#endif
#endif

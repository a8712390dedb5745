/* io: the versioned container format for every CKKS object on disk or on
 * the wire (docs/FORMAT.md describes it byte by byte).
 *
 * A container is a fixed 88-byte little-endian header followed by a payload:
 *
 *   magic "BLNDTUNR" | version u16 | kind u16 | flags u32 | parameter hash 32 B
 *   | payload length u64 | BLAKE2b-256 checksum 32 B | payload
 *
 * The checksum covers the header bytes before it and the payload, so any
 * corruption is caught before a payload is trusted.  The parameter hash
 * (bt_ckks_params_hash) ties each object to the parameter set it was made
 * for; it is all zero in a PARAMS container, which describes parameters
 * itself.
 *
 * Payloads are compact: polynomials are stored in NTT form with each
 * coefficient bit-packed at the width of its prime; public "a" polynomials
 * (public key, switching keys, fresh secret-key ciphertexts) travel as their
 * 32-byte seed and are re-expanded on load, halving their size; a secret key
 * travels as its N ternary coefficients, 2 bits each.
 *
 * Loading validates everything (magic, version, kind, parameter hash, payload
 * length, checksum, every field's range, every coefficient below its prime)
 * and returns BT_E_FORMAT (malformed input), BT_E_PARAMS (made for other
 * parameters) or BT_E_IO (operating-system failure) with a message naming the
 * file and what is wrong; no input makes it crash.
 *
 * Saving is atomic: the object is written to a temporary file in the
 * destination directory, flushed to disk (fsync) and renamed over the
 * destination, so a failed save leaves neither a partial file nor a changed
 * old one.  Secret keys are created with mode 0600.
 *
 * In-memory variants write a whole container into a buffer the caller frees
 * with bt_free (bt_free_secret(buf, len) for a secret key, whose buffer holds
 * the key) and read one from a caller's buffer. */
#ifndef BLINDTUNER_IO_H
#define BLINDTUNER_IO_H

#include <stddef.h>
#include <stdint.h>

#include "blindtuner/ckks.h"
#include "blindtuner/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The format version this build writes and the only one it reads. */
#define BT_IO_VERSION 1
/* Size of the fixed header; the payload starts at this offset. */
#define BT_IO_HEADER_BYTES 88
#define BT_IO_CHECKSUM_BYTES 32

typedef enum bt_io_kind {
  BT_IO_PARAMS = 1,
  BT_IO_PLAINTEXT = 2,
  BT_IO_CIPHERTEXT = 3,
  BT_IO_SECRET_KEY = 4,
  BT_IO_PUBLIC_KEY = 5,
  BT_IO_SWITCH_KEY = 6,
  BT_IO_EVAL_KEYS = 7, /* optional relinearisation key + any number of Galois keys */
  /* the pipeline's files (below) */
  BT_IO_SECRET_BUNDLE = 8,
  BT_IO_EVAL_BUNDLE = 9,
  BT_IO_DATASET = 10,
  BT_IO_MODEL = 11,
  BT_IO_CHECKPOINT = 12,
  BT_IO_LOSS = 13,
  BT_IO_ANSWER = 14,
  BT_IO_PLAIN_MODEL = 15,
  BT_IO_LOGITS = 16,
  BT_IO_SCALER = 17
} bt_io_kind;

/* "ciphertext", "public key", ... ; "unknown" for a value outside the enum. */
const char *bt_io_kind_name(bt_io_kind kind);

/* What a container holds, from its header. */
typedef struct bt_io_info {
  int version;
  bt_io_kind kind;
  uint8_t params_hash[BT_PARAMS_HASH_BYTES]; /* all zero for BT_IO_PARAMS */
  uint64_t payload_bytes;
} bt_io_info;

/* Reads a file's header and verifies its length and checksum (reading the
 * whole payload, without interpreting it). */
bt_status bt_io_inspect(const char *path, bt_io_info *info) BT_MUST_CHECK BT_NONNULL(1, 2);
/* The same for a container in memory. */
bt_status bt_io_inspect_buffer(const uint8_t *buf, size_t len,
                               bt_io_info *info) BT_MUST_CHECK BT_NONNULL(3);

/* ---- in memory ----
 * bt_io_write_*: allocates *buf (free with bt_free; a secret key's with
 * bt_free_secret(*buf, *len)) and writes one container.
 * bt_io_read_*: reads one container made for parameters `p` into a new
 * object (*out is NULL on failure). */
bt_status bt_io_write_params(const bt_ckks_params *p, uint8_t **buf,
                             size_t *len) BT_MUST_CHECK BT_NONNULL(1, 2, 3);
/* Rebuilds the handle and checks that it generates the stored primes.
 * `flags` as for bt_ckks_params_new (BT_ALLOW_INSECURE). */
bt_status bt_io_read_params(const uint8_t *buf, size_t len, unsigned flags,
                            bt_ckks_params **out) BT_MUST_CHECK BT_NONNULL(4);

bt_status bt_io_write_plaintext(const bt_plaintext *pt, uint8_t **buf,
                                size_t *len) BT_MUST_CHECK BT_NONNULL(1, 2, 3);
bt_status bt_io_read_plaintext(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                               bt_plaintext **out) BT_MUST_CHECK BT_NONNULL(3, 4);

/* A fresh secret-key ciphertext (seeded, degree 1) is stored with its seed
 * in place of c1, at about half the size. */
bt_status bt_io_write_ciphertext(const bt_ciphertext *ct, uint8_t **buf,
                                 size_t *len) BT_MUST_CHECK BT_NONNULL(1, 2, 3);
bt_status bt_io_read_ciphertext(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                                bt_ciphertext **out) BT_MUST_CHECK BT_NONNULL(3, 4);

bt_status bt_io_write_secret_key(const bt_secret_key *sk, uint8_t **buf,
                                 size_t *len) BT_MUST_CHECK BT_NONNULL(1, 2, 3);
bt_status bt_io_read_secret_key(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                                bt_secret_key **out) BT_MUST_CHECK BT_NONNULL(3, 4);

bt_status bt_io_write_public_key(const bt_public_key *pk, uint8_t **buf,
                                 size_t *len) BT_MUST_CHECK BT_NONNULL(1, 2, 3);
bt_status bt_io_read_public_key(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                                bt_public_key **out) BT_MUST_CHECK BT_NONNULL(3, 4);

bt_status bt_io_write_switch_key(const bt_switch_key *k, uint8_t **buf,
                                 size_t *len) BT_MUST_CHECK BT_NONNULL(1, 2, 3);
bt_status bt_io_read_switch_key(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                                bt_switch_key **out) BT_MUST_CHECK BT_NONNULL(3, 4);

/* Evaluation keys in memory (mainly for tests and small parameters: at
 * N = 2^16 prefer the streaming file functions below). */
bt_status bt_io_write_eval_keys(const bt_eval_keys *ek, uint8_t **buf,
                                size_t *len) BT_MUST_CHECK BT_NONNULL(1, 2, 3);
bt_status bt_io_read_eval_keys(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                               bt_eval_keys **out) BT_MUST_CHECK BT_NONNULL(3, 4);

/* ---- files ----
 * bt_io_save_*: writes atomically (temporary file, fsync, rename).
 * bt_io_load_*: reads and validates; *out is NULL on failure. */
bt_status bt_io_save_params(const char *path, const bt_ckks_params *p) BT_MUST_CHECK BT_NONNULL(1, 2);
bt_status bt_io_load_params(const char *path, unsigned flags,
                            bt_ckks_params **out) BT_MUST_CHECK BT_NONNULL(1, 3);

bt_status bt_io_save_plaintext(const char *path, const bt_plaintext *pt) BT_MUST_CHECK BT_NONNULL(1, 2);
bt_status bt_io_load_plaintext(const char *path, const bt_ckks_params *p,
                               bt_plaintext **out) BT_MUST_CHECK BT_NONNULL(1, 2, 3);

bt_status bt_io_save_ciphertext(const char *path, const bt_ciphertext *ct) BT_MUST_CHECK BT_NONNULL(1, 2);
bt_status bt_io_load_ciphertext(const char *path, const bt_ckks_params *p,
                                bt_ciphertext **out) BT_MUST_CHECK BT_NONNULL(1, 2, 3);

/* The file is created with mode 0600. */
bt_status bt_io_save_secret_key(const char *path, const bt_secret_key *sk) BT_MUST_CHECK BT_NONNULL(1, 2);
bt_status bt_io_load_secret_key(const char *path, const bt_ckks_params *p,
                                bt_secret_key **out) BT_MUST_CHECK BT_NONNULL(1, 2, 3);

bt_status bt_io_save_public_key(const char *path, const bt_public_key *pk) BT_MUST_CHECK BT_NONNULL(1, 2);
bt_status bt_io_load_public_key(const char *path, const bt_ckks_params *p,
                                bt_public_key **out) BT_MUST_CHECK BT_NONNULL(1, 2, 3);

bt_status bt_io_save_switch_key(const char *path, const bt_switch_key *k) BT_MUST_CHECK BT_NONNULL(1, 2);
bt_status bt_io_load_switch_key(const char *path, const bt_ckks_params *p,
                                bt_switch_key **out) BT_MUST_CHECK BT_NONNULL(1, 2, 3);

/* Streams: each key is written to the file as it is serialised (the
 * checksum is computed incrementally) and read back key by key, so memory
 * holds the keys themselves plus a buffer of about one megabyte. */
bt_status bt_io_save_eval_keys(const char *path, const bt_eval_keys *ek) BT_MUST_CHECK BT_NONNULL(1, 2);
bt_status bt_io_load_eval_keys(const char *path, const bt_ckks_params *p,
                               bt_eval_keys **out) BT_MUST_CHECK BT_NONNULL(1, 2, 3);

/* ---- the pipeline's files (blindtuner keygen, encrypt, train, ...) ----
 * Every one of them starts with a tag: the key set's random identifier,
 * chosen by keygen, and the training layout the keys were made for.  A
 * loader given `expect` refuses (BT_E_PARAMS) a file whose tag differs:
 * data encrypted under other keys, or for another layout, is named as such
 * instead of decrypting to noise.  Bundles carry their parameters (load them
 * first; the other files are then loaded against them).  Objects inside a
 * loaded bundle or file refer to the parameters, which must outlive them. */
#define BT_KEYSET_ID_BYTES 16
typedef struct bt_io_tag {
  uint8_t keyset[BT_KEYSET_ID_BYTES];
  int batch;    /* rows per batch */
  int features; /* F: feature columns including the bias column */
  int classes;  /* C */
} bt_io_tag;

/* The client's: the secret key (file mode 0600, wiped buffers). */
typedef struct bt_secret_bundle {
  bt_io_tag tag;
  bt_secret_key *sk;
} bt_secret_bundle;
/* The server's: everything it computes with, nothing secret. */
typedef struct bt_eval_bundle {
  bt_io_tag tag;
  bt_eval_keys *ek;
  bt_encaps_key *to_sparse; /* dense-secret bootstrapping; both NULL otherwise */
  bt_switch_key *to_dense;
} bt_eval_bundle;

typedef enum bt_set_role { BT_SET_TRAIN = 1, BT_SET_VAL = 2, BT_SET_TEST = 3 } bt_set_role;
const char *bt_set_role_name(bt_set_role role);
/* An encrypted dataset: batches of rows, each as nx feature blocks and
 * (when labelled) one label ciphertext. */
typedef struct bt_enc_batch {
  int rows;
  bt_ciphertext **x; /* nx */
  bt_ciphertext *y;  /* NULL: no labels */
} bt_enc_batch;
typedef struct bt_enc_dataset {
  bt_io_tag tag;
  bt_set_role role;
  int rows, nx, nbatches, labelled;
  bt_enc_batch *b;
} bt_enc_dataset;
void bt_enc_dataset_clear(bt_enc_dataset *d);

/* One ciphertext of an epoch: MODEL (A = V + iW) or LOSS (slot 0). */
typedef struct bt_enc_epoch {
  bt_io_tag tag;
  int epoch; /* 1-based */
  bt_ciphertext *ct;
} bt_enc_epoch;

/* The server's training state after `epochs_done` epochs. */
typedef struct bt_checkpoint {
  bt_io_tag tag;
  int epochs_done;
  int stopped;            /* the client said stop */
  double lr, momentum;
  uint64_t seed;          /* batch order */
  double train_s, val_s;  /* seconds so far */
  long steps, bootstraps;
  bt_ciphertext *a;
} bt_checkpoint;

/* The client's one bit for an epoch. */
typedef struct bt_answer {
  bt_io_tag tag;
  int epoch;
  int go_on; /* 1 continue, 0 stop */
} bt_answer;

/* Encrypted logits of a dataset: one ciphertext per batch. */
typedef struct bt_enc_logits {
  bt_io_tag tag;
  int rows, nbatches;
  int *batch_rows;
  bt_ciphertext **z;
} bt_enc_logits;
void bt_enc_logits_clear(bt_enc_logits *l);

/* The client's plaintext head: standardisation of the `dim` raw features
 * (x - mean) / sd, then logits W [x; 1] with W classes x (dim + 1).  A
 * SCALER file holds the standardisation only (w NULL).  Both mode 0600. */
typedef struct bt_plain_head {
  bt_io_tag tag;
  int epoch; /* the model's epoch; 0 for a scaler */
  int dim, classes;
  double *mean, *sd, *w;
} bt_plain_head;
void bt_plain_head_clear(bt_plain_head *h);

bt_status bt_io_save_secret_bundle(const char *path, const bt_secret_bundle *b) BT_MUST_CHECK BT_NONNULL(1, 2);
/* *p gets the bundle's parameters (flags as for bt_ckks_params_new). */
bt_status bt_io_load_secret_bundle(const char *path, unsigned flags, bt_ckks_params **p,
                                   bt_secret_bundle *b) BT_MUST_CHECK BT_NONNULL(1, 3, 4);
void bt_secret_bundle_clear(bt_secret_bundle *b);
bt_status bt_io_save_eval_bundle(const char *path, const bt_eval_bundle *b) BT_MUST_CHECK BT_NONNULL(1, 2);
bt_status bt_io_load_eval_bundle(const char *path, unsigned flags, bt_ckks_params **p,
                                 bt_eval_bundle *b) BT_MUST_CHECK BT_NONNULL(1, 3, 4);
void bt_eval_bundle_clear(bt_eval_bundle *b);

bt_status bt_io_save_dataset(const char *path, const bt_enc_dataset *d) BT_MUST_CHECK BT_NONNULL(1, 2);
bt_status bt_io_load_dataset(const char *path, const bt_ckks_params *p, const bt_io_tag *expect,
                             bt_enc_dataset *d) BT_MUST_CHECK BT_NONNULL(1, 2, 4);
/* kind: BT_IO_MODEL or BT_IO_LOSS */
bt_status bt_io_save_epoch(const char *path, bt_io_kind kind, const bt_enc_epoch *e) BT_MUST_CHECK BT_NONNULL(1, 3);
bt_status bt_io_load_epoch(const char *path, bt_io_kind kind, const bt_ckks_params *p, const bt_io_tag *expect,
                           bt_enc_epoch *e) BT_MUST_CHECK BT_NONNULL(1, 3, 5);
bt_status bt_io_save_checkpoint(const char *path, const bt_checkpoint *c) BT_MUST_CHECK BT_NONNULL(1, 2);
bt_status bt_io_load_checkpoint(const char *path, const bt_ckks_params *p, const bt_io_tag *expect,
                                bt_checkpoint *c) BT_MUST_CHECK BT_NONNULL(1, 2, 4);
bt_status bt_io_save_answer(const char *path, const bt_ckks_params *p, const bt_answer *a) BT_MUST_CHECK
    BT_NONNULL(1, 2, 3);
bt_status bt_io_load_answer(const char *path, const bt_ckks_params *p, const bt_io_tag *expect,
                            bt_answer *a) BT_MUST_CHECK BT_NONNULL(1, 2, 4);
bt_status bt_io_save_logits(const char *path, const bt_enc_logits *l) BT_MUST_CHECK BT_NONNULL(1, 2);
bt_status bt_io_load_logits(const char *path, const bt_ckks_params *p, const bt_io_tag *expect,
                            bt_enc_logits *l) BT_MUST_CHECK BT_NONNULL(1, 2, 4);
/* kind: BT_IO_PLAIN_MODEL or BT_IO_SCALER.  These hold no ciphertexts: the
 * parameter hash is that of `p` (the key set's) when given, and a loader
 * given p == NULL does not check it, so a decrypted model can be used
 * without any key. */
bt_status bt_io_save_head(const char *path, bt_io_kind kind, const bt_ckks_params *p,
                          const bt_plain_head *h) BT_MUST_CHECK BT_NONNULL(1, 4);
bt_status bt_io_load_head(const char *path, bt_io_kind kind, const bt_ckks_params *p, const bt_io_tag *expect,
                          bt_plain_head *h) BT_MUST_CHECK BT_NONNULL(1, 5);

/* What a file holds, for `blindtuner inspect`: the header (checksum
 * verified over the whole file) and the first fields of the payload.  Never
 * reads key material.  Fields that do not apply to the kind are -1. */
typedef struct bt_io_summary {
  bt_io_info info;
  int has_tag;
  bt_io_tag tag;
  int role, rows, batches, epoch, flag; /* flag: stopped (checkpoint), continue (answer) */
  int logn;                             /* PARAMS and bundles */
  char params_name[64];
} bt_io_summary;
bt_status bt_io_summarize(const char *path, bt_io_summary *s) BT_MUST_CHECK BT_NONNULL(1, 2);

/* Parses a pipeline container (kinds 8..17) from memory with every check a
 * file load makes, then discards it: BT_OK when valid (fuzzing, tests).  p:
 * the parameters other kinds than bundles must have been made for. */
bt_status bt_io_validate_buffer(bt_io_kind kind, const uint8_t *buf, size_t len,
                                const bt_ckks_params *p) BT_MUST_CHECK BT_NONNULL(2);

#ifdef __cplusplus
}
#endif
#endif

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
  /* the pipeline's files (include/blindtuner/pipeline.h defines them; the
   * numbers are part of the format, so they are reserved here) */
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
BT_API const char *bt_io_kind_name(bt_io_kind kind);

/* What a container holds, from its header. */
typedef struct bt_io_info {
  int version;
  bt_io_kind kind;
  uint8_t params_hash[BT_PARAMS_HASH_BYTES]; /* all zero for BT_IO_PARAMS */
  uint64_t payload_bytes;
} bt_io_info;

/* Reads a file's header and verifies its length and checksum (reading the
 * whole payload, without interpreting it). */
BT_API bt_status bt_io_inspect(const char *path, bt_io_info *info) BT_MUST_CHECK BT_NONNULL(1, 2);
/* The kind a file's header announces, reading the header only (no
 * checksum: a quick look before overwriting a file, e.g. to refuse to
 * replace a secret bundle); 0 when the file is not a container.  Fails only
 * when the file cannot be opened or is not a regular file. */
BT_API bt_status bt_io_peek_kind(const char *path, bt_io_kind *kind) BT_MUST_CHECK BT_NONNULL(1, 2);
/* BT_E_ARG ("PATH holds a secret bundle: not replaced by OUTPUT ...") when
 * path holds a secret bundle or secret key: what an output is never written
 * over (bt_io_save refuses it itself, for every kind but the same one).
 * BT_OK when path is absent, not a regular file or another kind. */
BT_API bt_status bt_io_refuse_secret(const char *path, const char *output) BT_MUST_CHECK BT_NONNULL(1, 2);
/* The same for a container in memory. */
BT_API bt_status bt_io_inspect_buffer(const uint8_t *buf, size_t len,
                               bt_io_info *info) BT_MUST_CHECK BT_NONNULL(3);

/* The header of a container whose first bytes only are at hand (a stream,
 * an upload): magic, version, kind and flags checked, *info filled
 * (payload_bytes as declared; the container is BT_IO_HEADER_BYTES +
 * payload_bytes long).  Nothing else is verified. */
BT_API bt_status bt_io_header_info(const uint8_t *h, size_t len, bt_io_info *info) BT_MUST_CHECK BT_NONNULL(1, 3);

/* ---- in memory ----
 * bt_io_write_*: allocates *buf (free with bt_free; a secret key's with
 * bt_free_secret(*buf, *len)) and writes one container.
 * bt_io_read_*: reads one container made for parameters `p` into a new
 * object (*out is NULL on failure). */
BT_API bt_status bt_io_write_params(const bt_ckks_params *p, uint8_t **buf,
                             size_t *len) BT_MUST_CHECK BT_NONNULL(1, 2, 3);
/* Rebuilds the handle and checks that it generates the stored primes.
 * `flags` as for bt_ckks_params_new (BT_ALLOW_INSECURE). */
BT_API bt_status bt_io_read_params(const uint8_t *buf, size_t len, unsigned flags,
                            bt_ckks_params **out) BT_MUST_CHECK BT_NONNULL(4);

BT_API bt_status bt_io_write_plaintext(const bt_plaintext *pt, uint8_t **buf,
                                size_t *len) BT_MUST_CHECK BT_NONNULL(1, 2, 3);
BT_API bt_status bt_io_read_plaintext(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                               bt_plaintext **out) BT_MUST_CHECK BT_NONNULL(3, 4);

/* A fresh secret-key ciphertext (seeded, degree 1) is stored with its seed
 * in place of c1, at about half the size. */
BT_API bt_status bt_io_write_ciphertext(const bt_ciphertext *ct, uint8_t **buf,
                                 size_t *len) BT_MUST_CHECK BT_NONNULL(1, 2, 3);
BT_API bt_status bt_io_read_ciphertext(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                                bt_ciphertext **out) BT_MUST_CHECK BT_NONNULL(3, 4);

BT_API bt_status bt_io_write_secret_key(const bt_secret_key *sk, uint8_t **buf,
                                 size_t *len) BT_MUST_CHECK BT_NONNULL(1, 2, 3);
BT_API bt_status bt_io_read_secret_key(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                                bt_secret_key **out) BT_MUST_CHECK BT_NONNULL(3, 4);

BT_API bt_status bt_io_write_public_key(const bt_public_key *pk, uint8_t **buf,
                                 size_t *len) BT_MUST_CHECK BT_NONNULL(1, 2, 3);
BT_API bt_status bt_io_read_public_key(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                                bt_public_key **out) BT_MUST_CHECK BT_NONNULL(3, 4);

BT_API bt_status bt_io_write_switch_key(const bt_switch_key *k, uint8_t **buf,
                                 size_t *len) BT_MUST_CHECK BT_NONNULL(1, 2, 3);
BT_API bt_status bt_io_read_switch_key(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                                bt_switch_key **out) BT_MUST_CHECK BT_NONNULL(3, 4);

/* Evaluation keys in memory (mainly for tests and small parameters: at
 * N = 2^16 prefer the streaming file functions below). */
BT_API bt_status bt_io_write_eval_keys(const bt_eval_keys *ek, uint8_t **buf,
                                size_t *len) BT_MUST_CHECK BT_NONNULL(1, 2, 3);
BT_API bt_status bt_io_read_eval_keys(const uint8_t *buf, size_t len, const bt_ckks_params *p,
                               bt_eval_keys **out) BT_MUST_CHECK BT_NONNULL(3, 4);

/* ---- files ----
 * bt_io_save_*: writes atomically (temporary file, fsync, rename).
 * bt_io_load_*: reads and validates; *out is NULL on failure. */
BT_API bt_status bt_io_save_params(const char *path, const bt_ckks_params *p) BT_MUST_CHECK BT_NONNULL(1, 2);
BT_API bt_status bt_io_load_params(const char *path, unsigned flags,
                            bt_ckks_params **out) BT_MUST_CHECK BT_NONNULL(1, 3);

BT_API bt_status bt_io_save_plaintext(const char *path, const bt_plaintext *pt) BT_MUST_CHECK BT_NONNULL(1, 2);
BT_API bt_status bt_io_load_plaintext(const char *path, const bt_ckks_params *p,
                               bt_plaintext **out) BT_MUST_CHECK BT_NONNULL(1, 2, 3);

BT_API bt_status bt_io_save_ciphertext(const char *path, const bt_ciphertext *ct) BT_MUST_CHECK BT_NONNULL(1, 2);
BT_API bt_status bt_io_load_ciphertext(const char *path, const bt_ckks_params *p,
                                bt_ciphertext **out) BT_MUST_CHECK BT_NONNULL(1, 2, 3);

/* The file is created with mode 0600. */
BT_API bt_status bt_io_save_secret_key(const char *path, const bt_secret_key *sk) BT_MUST_CHECK BT_NONNULL(1, 2);
BT_API bt_status bt_io_load_secret_key(const char *path, const bt_ckks_params *p,
                                bt_secret_key **out) BT_MUST_CHECK BT_NONNULL(1, 2, 3);

BT_API bt_status bt_io_save_public_key(const char *path, const bt_public_key *pk) BT_MUST_CHECK BT_NONNULL(1, 2);
BT_API bt_status bt_io_load_public_key(const char *path, const bt_ckks_params *p,
                                bt_public_key **out) BT_MUST_CHECK BT_NONNULL(1, 2, 3);

BT_API bt_status bt_io_save_switch_key(const char *path, const bt_switch_key *k) BT_MUST_CHECK BT_NONNULL(1, 2);
BT_API bt_status bt_io_load_switch_key(const char *path, const bt_ckks_params *p,
                                bt_switch_key **out) BT_MUST_CHECK BT_NONNULL(1, 2, 3);

/* Streams: each key is written to the file as it is serialised (the
 * checksum is computed incrementally) and read back key by key, so memory
 * holds the keys themselves plus a buffer of about one megabyte. */
BT_API bt_status bt_io_save_eval_keys(const char *path, const bt_eval_keys *ek) BT_MUST_CHECK BT_NONNULL(1, 2);
BT_API bt_status bt_io_load_eval_keys(const char *path, const bt_ckks_params *p,
                               bt_eval_keys **out) BT_MUST_CHECK BT_NONNULL(1, 2, 3);

/* ---- composite containers, for the layers above io ----
 * A layer above io (the pipeline's files, include/blindtuner/pipeline.h)
 * defines its own container kinds with a codec: how an object is measured,
 * written, read and discarded.  Its payload may embed the CKKS objects
 * below as frames (a u64 length, then that object's payload exactly as it
 * would follow its own header), parsed by their own codecs with every
 * check.  The container (header, checksum, streaming, atomic files) stays
 * here; the writer and reader are opaque. */
typedef struct bt_io_writer bt_io_writer;
typedef struct bt_io_reader bt_io_reader;

typedef struct bt_io_codec {
  bt_io_kind kind;
  int secret; /* file mode 0600; buffers wiped */
  /* Checks the object can be written and returns its payload size. */
  bt_status (*measure)(const void *obj, uint64_t *payload);
  bt_status (*emit)(bt_io_writer *w, const void *obj);
  /* Reads one object into `out` (its own convention); on bad input it
   * records the error on the reader or returns it. */
  bt_status (*parse)(bt_io_reader *r, const bt_ckks_params *p, unsigned flags, void *out);
  /* Frees what a failed or unwanted parse left in `out`. */
  void (*discard)(void *out);
} bt_io_codec;

/* Writing: each call does nothing once an error is recorded. */
BT_API void bt_io_put_u32(bt_io_writer *w, uint32_t v);
BT_API void bt_io_put_u64(bt_io_writer *w, uint64_t v);
BT_API void bt_io_put_bytes(bt_io_writer *w, const void *b, size_t n);
/* An IEEE-754 binary64 as the u64 of its bits. */
BT_API void bt_io_put_f64(bt_io_writer *w, double v);
/* The first error recorded on the writer (BT_OK if none). */
BT_API bt_status bt_io_writer_status(const bt_io_writer *w);
/* Records `s` unless an error is already recorded; returns the status now recorded. */
BT_API bt_status bt_io_writer_set_error(bt_io_writer *w, bt_status s);

/* Reading: each call does nothing (returns 0) once an error is recorded. */
BT_API uint32_t bt_io_get_u32(bt_io_reader *r);
BT_API uint64_t bt_io_get_u64(bt_io_reader *r);
BT_API void bt_io_get_bytes(bt_io_reader *r, void *out, size_t n);
BT_API double bt_io_get_f64(bt_io_reader *r);
/* Reads a u32 and fails with BT_E_FORMAT unless lo <= value <= hi. */
BT_API int bt_io_get_int(bt_io_reader *r, int lo, int hi, const char *what);
/* Payload bytes left to read (in the current frame, inside one). */
BT_API uint64_t bt_io_remaining(const bt_io_reader *r);
/* Fails with BT_E_FORMAT unless exactly `want` payload bytes are left. */
BT_API bt_status bt_io_expect_remaining(bt_io_reader *r, uint64_t want, const char *what);
BT_API bt_status bt_io_reader_status(const bt_io_reader *r);
/* Records an error naming the input (first one wins) and returns it. */
BT_API bt_status bt_io_reader_fail(bt_io_reader *r, bt_status s, const char *fmt, ...) BT_PRINTF(3, 4);
/* The parameter hash of the container's header. */
BT_API const uint8_t *bt_io_reader_params_hash(const bt_io_reader *r);
/* Records "src: message" (the message alone when src is NULL) and returns s. */
BT_API bt_status bt_io_fail(const char *src, bt_status s, const char *fmt, ...) BT_PRINTF(3, 4);

/* Embedded objects.  object_bytes adds the frame's size (8 + payload) to
 * *n; get_object parses one frame into `out` with the codec (on failure
 * the codec's discard has run and the error is recorded on the reader). */
BT_API bt_status bt_io_object_bytes(const bt_io_codec *c, const void *obj, uint64_t *n) BT_MUST_CHECK;
BT_API void bt_io_put_object(bt_io_writer *w, const bt_io_codec *c, const void *obj);
BT_API bt_status bt_io_get_object(bt_io_reader *r, const bt_io_codec *c, const bt_ckks_params *p, unsigned flags,
                                  void *out, const char *what);
/* Ciphertexts (a fresh secret-key ciphertext travels with its seed). */
BT_API bt_status bt_io_ciphertext_bytes(const bt_ciphertext *ct, uint64_t *n) BT_MUST_CHECK;
BT_API void bt_io_put_ciphertext(bt_io_writer *w, const bt_ciphertext *ct);
/* NULL after recording the error on the reader. */
BT_API bt_ciphertext *bt_io_get_ciphertext(bt_io_reader *r, const bt_ckks_params *p, const char *what);
/* Codecs of the objects above, for frames: parse into a `T **`.  The
 * params codec takes the handle (flags as for bt_ckks_params_new). */
BT_API extern const bt_io_codec bt_io_params_codec, bt_io_secret_key_codec, bt_io_switch_key_codec,
    bt_io_eval_keys_codec, bt_io_encaps_key_codec;
/* Payload bytes of a switching key serving levels 0..level (0 when the
 * level is out of range). */
BT_API uint64_t bt_io_switch_key_bytes(const bt_ckks_params *p, int level);

/* Any bytes written atomically (util's bt_file_write_atomic): a temporary
 * file created exclusively (O_EXCL | O_NOFOLLOW) in the destination's
 * directory, flushed, renamed over `path` (mode 0600 when secret, else 0666
 * less the umask); a failure leaves neither a partial file nor a changed
 * old one. */
BT_API bt_status bt_io_write_atomic(const char *path, const void *data, size_t len, int secret) BT_MUST_CHECK;

/* Whole containers with a codec: in memory (*buf freed with bt_free, or
 * bt_free_secret(*buf, *len) for a secret codec) and as files (atomic
 * save; load reads through a stage of about a megabyte).  hash: the
 * object's parameter hash.  p: the parameters the container must have been
 * made for (NULL: not checked, for kinds that carry their own).  A save
 * never replaces a file holding a secret bundle or secret key with an
 * object of another kind (BT_E_ARG: "holds a secret bundle: not replaced"). */
BT_API bt_status bt_io_encode(const bt_io_codec *c, const void *obj, const uint8_t *hash, uint8_t **buf,
                              size_t *len) BT_MUST_CHECK;
BT_API bt_status bt_io_save(const bt_io_codec *c, const char *path, const void *obj,
                            const uint8_t *hash) BT_MUST_CHECK;
BT_API bt_status bt_io_decode(const bt_io_codec *c, const uint8_t *buf, size_t len, const bt_ckks_params *p,
                              unsigned flags, void *out) BT_MUST_CHECK;
BT_API bt_status bt_io_load(const bt_io_codec *c, const char *path, const bt_ckks_params *p, unsigned flags,
                            void *out) BT_MUST_CHECK;

#ifdef __cplusplus
}
#endif
#endif

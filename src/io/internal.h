/* Internal interface between the container (src/io/container.c: header,
 * checksum, buffered reading and writing, atomic files) and the object
 * payloads (src/io/serialize.c). */
#ifndef BT_IO_INTERNAL_H
#define BT_IO_INTERNAL_H

#include <sodium.h>

#include "blindtuner/io.h"
#include "ckks/internal.h"

/* Records "src: message" (or just the message when src is NULL, for
 * in-memory input) and returns s. */
bt_status bt_io_fail(const char *src, bt_status s, const char *fmt, ...) BT_PRINTF(3, 4);
/* Prefixes the message a lower layer recorded with src. */
bt_status bt_io_rewrap(const char *src, bt_status s, const char *what);

/* A payload sink.  In memory it fills one buffer holding the whole
 * container; for a file it stages up to about a megabyte, hashing and writing
 * each full stage, so objects of any size stream through.  The stage is
 * wiped when freed (it may have held a secret key). */
typedef struct bt_io_writer {
  const char *src;        /* destination path, NULL in memory */
  uint8_t *buf;           /* memory: the container; file: the stage */
  size_t cap, len;
  int fd;                 /* -1 in memory */
  uint64_t left;          /* payload bytes promised by the header, not yet reserved */
  crypto_generichash_state hash; /* file only: header prefix + flushed payload */
  bt_status st;           /* first error; later calls do nothing */
} bt_io_writer;

/* n contiguous bytes of payload to fill, or NULL after an error. */
uint8_t *bt_io_reserve(bt_io_writer *w, size_t n);
void bt_io_put_u32(bt_io_writer *w, uint32_t v);
void bt_io_put_u64(bt_io_writer *w, uint64_t v);
void bt_io_put_bytes(bt_io_writer *w, const void *b, size_t n);
/* An IEEE-754 binary64 as the u64 of its bits. */
void bt_io_put_f64(bt_io_writer *w, double v);
/* Polynomial limbs first..first+count-1 (NTT form), each coefficient packed
 * at its prime's bit width.  A coefficient not below its prime is a broken
 * object and fails with BT_E_ARG. */
void bt_io_put_poly(bt_io_writer *w, const bt_ckks_params *p, const uint64_t *a, int first,
                    int count, const char *what);

/* A payload source: the rest of a caller's buffer, or a file read through a
 * stage that grows to the largest single request (one limb).  File bytes are
 * hashed as they are pulled in. */
typedef struct bt_io_reader {
  const char *src;        /* path, NULL in memory */
  const uint8_t *cur;     /* next unconsumed byte */
  size_t avail;           /* bytes at cur */
  uint64_t unread;        /* file: payload bytes not yet pulled in */
  int fd;                 /* -1 in memory */
  uint8_t *stage;
  size_t stage_cap;
  crypto_generichash_state hash;
  bt_status st;           /* first error; later calls do nothing */
  uint8_t params_hash[BT_PARAMS_HASH_BYTES]; /* from the header */
  int framed;             /* inside a frame: remaining counts its bytes only */
  uint64_t frame_left;
} bt_io_reader;

/* n contiguous payload bytes, or NULL (payload too short, I/O error). */
const uint8_t *bt_io_take(bt_io_reader *r, size_t n);
uint32_t bt_io_get_u32(bt_io_reader *r);
uint64_t bt_io_get_u64(bt_io_reader *r);
void bt_io_get_bytes(bt_io_reader *r, void *out, size_t n);
double bt_io_get_f64(bt_io_reader *r);
/* Reads a u32 and fails with BT_E_FORMAT unless lo <= value <= hi. */
int bt_io_get_int(bt_io_reader *r, int lo, int hi, const char *what);
/* A frame: the next `len` payload bytes hold one embedded object, which the
 * codecs' parsers see as a whole payload (bt_io_remaining counts the frame
 * only).  Frames do not nest.  frame_end fails unless it was all read. */
bt_status bt_io_frame_begin(bt_io_reader *r, uint64_t len, const char *what);
bt_status bt_io_frame_end(bt_io_reader *r, const char *what);
/* Payload bytes left to read (in the frame, inside one). */
uint64_t bt_io_remaining(const bt_io_reader *r);
/* Fails with BT_E_FORMAT unless exactly `want` payload bytes are left. */
bt_status bt_io_expect_remaining(bt_io_reader *r, uint64_t want, const char *what);
/* Reads limbs first..first+count-1 and checks every coefficient is below
 * its prime. */
void bt_io_get_poly(bt_io_reader *r, const bt_ckks_params *p, uint64_t *a, int first, int count,
                    const char *what);
/* Records an error on the reader (first one wins) and returns it. */
bt_status bt_io_reader_fail(bt_io_reader *r, bt_status s, const char *fmt, ...) BT_PRINTF(3, 4);

/* Bytes of `count` packed limbs starting at prime index `first`. */
uint64_t bt_io_poly_bytes(const bt_ckks_params *p, int first, int count);

/* How one kind of object is measured, written, read and discarded. */
typedef struct bt_io_codec {
  bt_io_kind kind;
  int secret; /* file mode 0600; buffers wiped */
  /* Checks the object can be written and returns its payload size. */
  bt_status (*measure)(const void *obj, uint64_t *payload);
  bt_status (*emit)(bt_io_writer *w, const void *obj);
  /* Reads one object into *(T **)out; must set r->st (via the reader
   * helpers) or return an error on bad input. */
  bt_status (*parse)(bt_io_reader *r, const bt_ckks_params *p, unsigned flags, void *out);
  /* Frees *(T **)out and sets it to NULL. */
  void (*discard)(void *out);
} bt_io_codec;

/* hash: the object's parameter hash, NULL for the PARAMS kind. */
bt_status bt_io_encode(const bt_io_codec *c, const void *obj, const uint8_t *hash, uint8_t **buf,
                       size_t *len);
bt_status bt_io_save(const bt_io_codec *c, const char *path, const void *obj,
                     const uint8_t *hash);
/* p: the parameters the object must have been made for, NULL for PARAMS. */
bt_status bt_io_decode(const bt_io_codec *c, const uint8_t *buf, size_t len,
                       const bt_ckks_params *p, unsigned flags, void *out);
bt_status bt_io_load(const bt_io_codec *c, const char *path, const bt_ckks_params *p,
                     unsigned flags, void *out);

/* The object codecs of serialize.c, for the pipeline's composite files
 * (pipeline.c), which embed their payloads.  The ciphertext codec takes a
 * bt_io_ct_view. */
typedef struct bt_io_ct_view {
  const bt_ciphertext *ct;
  int seeded;
} bt_io_ct_view;
bt_status bt_io_ct_view_of(const bt_ciphertext *ct, bt_io_ct_view *v);
extern const bt_io_codec bt_io_params_codec, bt_io_ciphertext_codec, bt_io_secret_key_codec,
    bt_io_switch_key_codec, bt_io_eval_keys_codec;

#endif

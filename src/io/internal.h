/* Internal interface between the container (src/io/container.c: header,
 * checksum, buffered reading and writing, atomic files) and the object
 * payloads (src/io/serialize.c). */
#ifndef BT_IO_INTERNAL_H
#define BT_IO_INTERNAL_H

#include <sodium.h>

#include "blindtuner/io.h"

/* The parameter handle through its public accessors (the ckks layer's
 * internals are its own). */
#define N_OF(p) bt_ckks_n(p)
#define NQ(p) (bt_ckks_max_level(p) + 1)
#define NP(p) bt_ckks_num_special(p)

/* Prefixes the message a lower layer recorded with src. */
bt_status bt_io_rewrap(const char *src, bt_status s, const char *what);

/* A payload sink.  In memory it fills one buffer holding the whole
 * container; for a file it stages up to about a megabyte, hashing and writing
 * each full stage, so objects of any size stream through.  The stage is
 * wiped when freed (it may have held a secret key). */
struct bt_io_writer {
  const char *src;        /* destination path, NULL in memory */
  uint8_t *buf;           /* memory: the container; file: the stage */
  size_t cap, len;
  int fd;                 /* -1 in memory */
  uint64_t left;          /* payload bytes promised by the header, not yet reserved */
  crypto_generichash_state hash; /* file only: header prefix + flushed payload */
  bt_status st;           /* first error; later calls do nothing */
};

/* n contiguous bytes of payload to fill, or NULL after an error. */
uint8_t *bt_io_reserve(bt_io_writer *w, size_t n);
/* Polynomial limbs first..first+count-1 (NTT form), each coefficient packed
 * at its prime's bit width.  A coefficient not below its prime is a broken
 * object and fails with BT_E_ARG. */
void bt_io_put_poly(bt_io_writer *w, const bt_ckks_params *p, const uint64_t *a, int first,
                    int count, const char *what);

/* A payload source: the rest of a caller's buffer, or a file read through a
 * stage that grows to the largest single request (one limb).  File bytes are
 * hashed as they are pulled in. */
struct bt_io_reader {
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
};

/* n contiguous payload bytes, or NULL (payload too short, I/O error). */
const uint8_t *bt_io_take(bt_io_reader *r, size_t n);
/* A frame: the next `len` payload bytes hold one embedded object, which the
 * codecs' parsers see as a whole payload (bt_io_remaining counts the frame
 * only).  Frames do not nest.  frame_end fails unless it was all read. */
bt_status bt_io_frame_begin(bt_io_reader *r, uint64_t len, const char *what);
bt_status bt_io_frame_end(bt_io_reader *r, const char *what);
/* Reads limbs first..first+count-1 and checks every coefficient is below
 * its prime. */
void bt_io_get_poly(bt_io_reader *r, const bt_ckks_params *p, uint64_t *a, int first, int count,
                    const char *what);

/* Bytes of `count` packed limbs starting at prime index `first`. */
uint64_t bt_io_poly_bytes(const bt_ckks_params *p, int first, int count);

/* The ciphertext codec takes a bt_io_ct_view (whether c1 travels as its seed). */
typedef struct bt_io_ct_view {
  const bt_ciphertext *ct;
  int seeded;
} bt_io_ct_view;
bt_status bt_io_ct_view_of(const bt_ciphertext *ct, bt_io_ct_view *v);
extern const bt_io_codec bt_io_ciphertext_codec;

#endif

/* Helpers shared by the libFuzzer targets (fuzz/fuzz_*.c) and the seed
 * generator (fuzz/make_seeds.c): a per-process scratch file for parsers
 * that only read from a path, and the small parameter sets the seeds are
 * made for.  Public headers only. */
#ifndef BT_FUZZ_COMMON_H
#define BT_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blindtuner/ckks.h"
#include "blindtuner/io.h"
#include "blindtuner/util.h"

/* The test seed the decrypt target's key set is made from
 * (BT_INSECURE_TEST_SEED, honoured with INSECURE parameters only): the
 * seeds in fuzz/corpus/fuzz_decrypt are encrypted under that key set. */
#define FUZZ_TEST_SEED "f0220f0220f0220f"
/* The preset and job shape of the decrypt target's key set. */
#define FUZZ_PRESET "INSECURE-n10"
#define FUZZ_DIM 3
#define FUZZ_CLASSES 2
#define FUZZ_BATCH 4

/* The job tag of the small seeds (pipeline files, decisions record). */
#define FUZZ_TAG                                                                         \
  {.keyset = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, .batch = 4, .features = 4, \
   .classes = 2}

/* A tiny INSECURE parameter set (N = 64, three primes, one key-switching
 * digit) so that keys and ciphertexts in the seed corpora are a few
 * kilobytes: the stream and pipeline targets and their seeds use it. */
static inline bt_ckks_params *fuzz_small_params(void) {
  static bt_ckks_params *p;
  if (!p) {
    bt_ckks_literal lit;
    memset(&lit, 0, sizeof lit);
    lit.name = "INSECURE-fuzz-n6";
    lit.logn = 6;
    lit.nq = 3;
    lit.q_bits[0] = 40;
    lit.q_bits[1] = 30;
    lit.q_bits[2] = 30;
    lit.dnum = 1;
    lit.p_bits = 40;
    lit.log_scale = 30;
    lit.secret = BT_SECRET_TERNARY;
    lit.insecure = 1;
    if (bt_init() || bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &p)) {
      fprintf(stderr, "fuzz: small parameters: %s\n", bt_last_error());
      abort();
    }
  }
  return p;
}

/* The encapsulation key has a codec for frames only (kind 0 is no
 * container kind): this container of kind BT_IO_SWITCH_KEY holds one
 * encapsulation key frame, so the streaming reader reaches its parser.
 * Parses into a bt_encaps_key **. */
static inline bt_status fuzz_encaps_measure(const void *obj, uint64_t *payload) {
  *payload = 0;
  return bt_io_object_bytes(&bt_io_encaps_key_codec, obj, payload);
}
static inline bt_status fuzz_encaps_emit(bt_io_writer *w, const void *obj) {
  bt_io_put_object(w, &bt_io_encaps_key_codec, obj);
  return bt_io_writer_status(w);
}
static inline bt_status fuzz_encaps_parse(bt_io_reader *r, const bt_ckks_params *p, unsigned flags, void *out) {
  return bt_io_get_object(r, &bt_io_encaps_key_codec, p, flags, out, "encapsulation key");
}
static inline void fuzz_encaps_discard(void *out) {
  bt_encaps_key **k = out;
  bt_encaps_key_free(*k);
  *k = NULL;
}
static const bt_io_codec fuzz_encaps_codec = {BT_IO_SWITCH_KEY, 0, fuzz_encaps_measure, fuzz_encaps_emit,
                                              fuzz_encaps_parse, fuzz_encaps_discard};

/* Writes bytes to this process's scratch file `slot` (0 or 1; each made
 * once with mkstemp under /tmp, removed at exit) and returns its path. */
static char fuzz_scratch_path[2][64];
static int fuzz_scratch_fd[2] = {-1, -1};

static inline void fuzz_scratch_remove(void) {
  for (int i = 0; i < 2; i++)
    if (fuzz_scratch_fd[i] >= 0) unlink(fuzz_scratch_path[i]);
}

static inline const char *fuzz_write_slot(int slot, const uint8_t *data, size_t size) {
  if (fuzz_scratch_fd[slot] < 0) {
    snprintf(fuzz_scratch_path[slot], sizeof fuzz_scratch_path[slot], "/tmp/bt-fuzz-XXXXXX");
    fuzz_scratch_fd[slot] = mkstemp(fuzz_scratch_path[slot]);
    if (fuzz_scratch_fd[slot] < 0) {
      perror("fuzz: mkstemp");
      abort();
    }
    if (fuzz_scratch_fd[!slot] < 0) atexit(fuzz_scratch_remove);
  }
  if (ftruncate(fuzz_scratch_fd[slot], 0) != 0) abort();
  size_t done = 0;
  while (done < size) {
    ssize_t k = pwrite(fuzz_scratch_fd[slot], data + done, size - done, (off_t)done);
    if (k <= 0) abort();
    done += (size_t)k;
  }
  return fuzz_scratch_path[slot];
}

static inline const char *fuzz_write_scratch(const uint8_t *data, size_t size) {
  return fuzz_write_slot(0, data, size);
}

#endif

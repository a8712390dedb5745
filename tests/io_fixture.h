/* The io tests' shared fixture and helpers (test_io.c, test_io_corrupt.c):
 * INSECURE-n12 keys with an evaluator, other parameters to be refused, a
 * scratch directory; values, encryption, precision and equality checks. */
#ifndef BT_IO_FIXTURE_H
#define BT_IO_FIXTURE_H

#include <complex.h>
#include <stddef.h>
#include <stdint.h>

#include "blindtuner/ckks.h"

/* Header field offsets from docs/FORMAT.md, restated here so the tests
 * check the documented layout rather than the implementation's constants. */
enum { H_VERSION = 8, H_KIND = 10, H_FLAGS = 12, H_HASH = 16, H_LENGTH = 48, H_SUM = 56, H_END = 88 };

typedef struct fixture {
  bt_ckks_params *p, *other; /* INSECURE-n12 and INSECURE-n12-sparse */
  bt_secret_key *sk;
  bt_public_key *pk;
  bt_eval_keys *ek;
  bt_evaluator *ev;
  bt_prng g;
  size_t slots;
  int logslots;
  char dir[256];
} fixture;

/* A validated handle of a preset (INSECURE allowed), or NULL. */
bt_ckks_params *make_params(const char *name);
/* The cmocka group fixture: a fixture in *state; the teardown frees it and
 * removes the scratch directory (kept, with a note, if a test left files). */
int group_setup(void **state);
int group_teardown(void **state);

/* <scratch directory>/<name> into out. */
void path_in(const fixture *f, const char *name, char *out, size_t cap);
/* Entries of a directory other than . and .. */
size_t dir_entries(const char *dir);
/* Writes a whole file (asserts it can). */
void write_file(const char *path, const uint8_t *buf, size_t len);
/* A malloc'ed copy with one spare byte; free() it. */
uint8_t *dup_buf(const uint8_t *b, size_t len);
/* n random slot values of modulus at most 1. */
void random_values(bt_prng *g, double complex *v, size_t n);
/* f->slots values encrypted at `level`, with the public key or (seeded) the secret key. */
bt_ciphertext *encrypt_values(fixture *f, const double complex *v, int level, int use_pk);
/* Decrypts with `sk`, prints and checks precision against `want`. */
void expect_values(const fixture *f, const bt_secret_key *sk, const bt_ciphertext *ct,
                   const double complex *want, const char *what, double bar);
/* Assert equality word for word. */
void assert_same_ct(const bt_ciphertext *a, const bt_ciphertext *b);
void assert_same_switch_key(const bt_ckks_params *p, const bt_switch_key *a, const bt_switch_key *b);

#endif

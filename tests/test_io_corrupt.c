/* Container format tests of bad input: every kind of truncated, corrupted,
 * mislabelled or mismatched container or file is refused with the right
 * status and a message that says what is wrong, never a crash; random
 * mutations of valid containers never crash or leak.  Round trips: test_io.c. */
#include <complex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blindtuner/ckks.h"
#include "blindtuner/io.h"
#include "io_fixture.h"
#include "testutil.h"

/* ---- corrupt input ---- */
static void params_files_and_corruption(void **state) {
  fixture *f = *state;
  char path[512];
  path_in(f, "params.bt", path, sizeof path);
  bt_ckks_params *q;
  BT_CHECK(bt_io_save_params(path, f->p));
  BT_CHECK(bt_io_load_params(path, BT_ALLOW_INSECURE, &q));
  assert_memory_equal(bt_ckks_params_hash(f->p), bt_ckks_params_hash(q), BT_PARAMS_HASH_BYTES);
  bt_ckks_params_free(q);
  size_t len;
  uint8_t *buf = bt_test_read_file(path, &len);
  assert_int_equal(unlink(path), 0);

  /* every truncation of a small blob, in memory and as a file */
  for (size_t cut = 0; cut < len; cut++) {
    bt_test_expect_fail(bt_io_read_params(buf, cut, BT_ALLOW_INSECURE, &q), BT_E_FORMAT, NULL, "truncated");
    assert_null(q);
  }
  for (size_t cut = 0; cut < len; cut += 7) {
    write_file(path, buf, cut);
    bt_test_expect_fail(bt_io_load_params(path, BT_ALLOW_INSECURE, &q), BT_E_FORMAT, path, "truncated file");
  }
  assert_int_equal(unlink(path), 0);
  printf("  all %zu truncations refused, e.g. %s\n", len, bt_last_error());

  /* a changed prime (valid checksum): prime generation differs */
  uint8_t *c = dup_buf(buf, len);
  c[len - 8] ^= 2;
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_params(c, len, BT_ALLOW_INSECURE, &q), BT_E_PARAMS, "prime generation",
              "changed prime");
  printf("  refused: %s\n", bt_last_error());
  /* a parameter container must carry a zero parameter hash */
  memcpy(c, buf, len);
  c[H_HASH + 3] = 1;
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_params(c, len, BT_ALLOW_INSECURE, &q), BT_E_FORMAT, "zero", "hash");
  /* invalid literal fields are refused by the parameter validation */
  memcpy(c, buf, len);
  bt_test_put_le(c + H_END, 20, 4); /* logn */
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_params(c, len, BT_ALLOW_INSECURE, &q), BT_E_PARAMS, "log2 N", "logn");
  memcpy(c, buf, len);
  bt_test_put_le(c + H_END + 4, 0, 4); /* nq */
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_params(c, len, BT_ALLOW_INSECURE, &q), BT_E_FORMAT, "primes", "nq");
  free(c);
  free(buf);
}

static void corrupt_ciphertexts(void **state) {
  fixture *f = *state;
  double complex *v = malloc(f->slots * sizeof *v);
  random_values(&f->g, v, f->slots);
  bt_ciphertext *ct = encrypt_values(f, v, 2, 1), *r;
  uint8_t *buf, *c;
  size_t len;
  BT_CHECK(bt_io_write_ciphertext(ct, &buf, &len));
  c = dup_buf(buf, len); /* one spare byte */

  /* truncated or extended */
  const size_t cuts[] = {0, 1, 8, 55, 87, 88, 89, 100, len / 2, len - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
    bt_test_expect_fail(bt_io_read_ciphertext(buf, cuts[i], f->p, &r), BT_E_FORMAT, NULL, "truncated");
    assert_null(r);
  }
  bt_test_expect_fail(bt_io_read_ciphertext(buf, len - 1, f->p, &r), BT_E_FORMAT, "truncated", "cut");
  printf("  refused: %s\n", bt_last_error());
  c[len] = 0;
  bt_test_expect_fail(bt_io_read_ciphertext(c, len + 1, f->p, &r), BT_E_FORMAT, "unexpected", "extended");

  /* one flipped bit anywhere in the header */
  for (size_t off = 0; off < H_END; off++) {
    memcpy(c, buf, len);
    c[off] ^= 0x10;
    /* the hash and the checksum itself are only caught by the checksum */
    const int summed = (off >= H_HASH && off < H_LENGTH) || off >= H_SUM;
    bt_test_expect_fail(bt_io_read_ciphertext(c, len, f->p, &r), BT_E_FORMAT,
                summed ? "checksum mismatch" : NULL, "header flip");
    assert_null(r);
  }
  /* ... and in the payload */
  const size_t offs[] = {H_END, H_END + 4, H_END + 30, len / 2, len - 1};
  for (size_t i = 0; i < sizeof offs / sizeof *offs; i++) {
    memcpy(c, buf, len);
    c[offs[i]] ^= 0x01;
    bt_test_expect_fail(bt_io_read_ciphertext(c, len, f->p, &r), BT_E_FORMAT, "checksum mismatch",
                "payload flip");
  }
  printf("  refused: %s\n", bt_last_error());

  /* magic, version, kind, parameters */
  memcpy(c, buf, len);
  c[0] = 'X';
  bt_test_expect_fail(bt_io_read_ciphertext(c, len, f->p, &r), BT_E_FORMAT, "magic", "magic");
  memcpy(c, buf, len);
  bt_test_put_le(c + H_VERSION, 2, 2);
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_ciphertext(c, len, f->p, &r), BT_E_FORMAT, "version 2", "version");
  printf("  refused: %s\n", bt_last_error());
  memcpy(c, buf, len);
  bt_test_put_le(c + H_KIND, 18, 2); /* one past the last kind */
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_ciphertext(c, len, f->p, &r), BT_E_FORMAT, "kind 18", "unknown kind");
  memcpy(c, buf, len);
  bt_test_put_le(c + H_FLAGS, 1, 4);
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_ciphertext(c, len, f->p, &r), BT_E_FORMAT, "flags", "flags");
  bt_public_key *pk;
  bt_test_expect_fail(bt_io_read_public_key(buf, len, f->p, &pk), BT_E_FORMAT,
              "holds a ciphertext, expected a public key", "wrong kind");
  assert_null(pk);
  printf("  refused: %s\n", bt_last_error());
  bt_test_expect_fail(bt_io_read_ciphertext(buf, len, f->other, &r), BT_E_PARAMS, "other parameters",
              "other parameters");
  printf("  refused: %s\n", bt_last_error());

  /* field ranges, each with a valid checksum so the field check itself runs */
  const struct {
    size_t off;
    int bytes;
    uint64_t value;
    const char *needle;
  } fields[] = {
      {0, 4, 99, "level"},         {4, 4, 3, "degree"},          {4, 4, 0, "degree"},
      {8, 4, 12, "log2 slots"},    {12, 8, 0, "scale"},          {12, 8, 0xbff0000000000000u, "scale"},
      {12, 8, 0x7ff8000000000000u, "scale"}, {12, 8, 0x7ff0000000000000u, "scale"},
      {20, 4, 2, "seeded"},        {20, 4, 1, "ciphertext needs"}, {0, 4, 1, "ciphertext needs"},
  };
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
    memcpy(c, buf, len);
    bt_test_put_le(c + H_END + fields[i].off, fields[i].value, fields[i].bytes);
    bt_test_fix_checksum(c, len);
    bt_test_expect_fail(bt_io_read_ciphertext(c, len, f->p, &r), BT_E_FORMAT, fields[i].needle,
                fields[i].needle);
    assert_null(r);
  }
  /* a coefficient equal to its prime and one far above it */
  const uint64_t q0 = bt_ckks_q(f->p, 0);
  for (int t = 0; t < 2; t++) {
    memcpy(c, buf, len);
    uint64_t big = t == 0 ? q0 : (((uint64_t)1 << 58) - 1); /* q_0 has 58 bits */
    /* coefficient 0 of limb 0 of c0: the low 58 bits after the 24 field bytes */
    uint64_t word = 0;
    for (int b = 0; b < 8; b++) word |= (uint64_t)c[H_END + 24 + b] << (8 * b);
    word = (word & ~(((uint64_t)1 << 58) - 1)) | big;
    bt_test_put_le(c + H_END + 24, word, 8);
    bt_test_fix_checksum(c, len);
    bt_test_expect_fail(bt_io_read_ciphertext(c, len, f->p, &r), BT_E_FORMAT, "not below the prime",
                "coefficient >= prime");
    assert_null(r);
  }
  printf("  refused: %s\n", bt_last_error());

  free(c);
  bt_free(buf);
  bt_ciphertext_free(ct);
  free(v);
}

static void corrupt_keys(void **state) {
  fixture *f = *state;
  uint8_t *buf;
  size_t len;
  bt_secret_key *sk;
  BT_CHECK(bt_io_write_secret_key(f->sk, &buf, &len));
  /* code 3 is no ternary value */
  buf[H_END + 5] |= 3 << 4;
  bt_test_fix_checksum(buf, len);
  bt_test_expect_fail(bt_io_read_secret_key(buf, len, f->p, &sk), BT_E_FORMAT, "coefficient 22", "code 3");
  assert_null(sk);
  printf("  refused: %s\n", bt_last_error());
  bt_free_secret(buf, len);

  /* a switching key with an even Galois element, or the wrong digit count */
  bt_switch_key *k;
  BT_CHECK(bt_io_write_switch_key(f->ek->galois[0], &buf, &len));
  uint8_t *c = dup_buf(buf, len);
  bt_test_put_le(c + H_END, 4, 8);
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_switch_key(c, len, f->p, &k), BT_E_FORMAT, "Galois element 4", "galois");
  memcpy(c, buf, len);
  bt_test_put_le(c + H_END, 2 * bt_ckks_n(f->p) + 1, 8);
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_switch_key(c, len, f->p, &k), BT_E_FORMAT, "Galois", "galois >= 2N");
  memcpy(c, buf, len);
  bt_test_put_le(c + H_END + 8, 3, 4);
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_switch_key(c, len, f->p, &k), BT_E_FORMAT, "digits", "digits");
  printf("  refused: %s\n", bt_last_error());
  assert_null(k);
  /* the shape word's prime count: all of them spelled out (only 0 means
   * that), a count whose digits disagree, and a level-0 shape on a full
   * key's bytes (too many) */
  const uint64_t dnum = (uint64_t)bt_ckks_dnum(f->p), nq = (uint64_t)bt_ckks_max_level(f->p) + 1;
  const uint64_t bad_shapes[] = {dnum | nq << 16, dnum | 1u << 16, 1u | 1u << 16, dnum | 0xffffu << 16};
  const char *bad_needles[] = {"ciphertext primes", "digits", "unexpected bytes", "ciphertext primes"};
  for (int t = 0; t < 4; t++) {
    memcpy(c, buf, len);
    bt_test_put_le(c + H_END + 8, bad_shapes[t], 4);
    bt_test_fix_checksum(c, len);
    bt_test_expect_fail(bt_io_read_switch_key(c, len, f->p, &k), BT_E_FORMAT, bad_needles[t], "switching key shape");
    printf("  refused: %s\n", bt_last_error());
    assert_null(k);
  }
  free(c);
  bt_free(buf);

  /* evaluation keys: a count that does not match the payload, a relin key
   * where a Galois key belongs */
  bt_eval_keys *ek;
  BT_CHECK(bt_io_write_eval_keys(f->ek, &buf, &len));
  c = dup_buf(buf, len);
  bt_test_put_le(c + H_END + 4, 1000000, 4);
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_eval_keys(c, len, f->p, &ek), BT_E_FORMAT, "switching keys", "count");
  assert_null(ek);
  memcpy(c, buf, len);
  bt_test_put_le(c + H_END, 0, 4); /* has_relin = 0: the relin key is read as a Galois key */
  bt_test_put_le(c + H_END + 4, (uint64_t)f->ek->ngalois + 1, 4);
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_eval_keys(c, len, f->p, &ek), BT_E_FORMAT, "Galois element 0", "relin");
  assert_null(ek);
  /* one key fewer than the payload holds: bytes left after the last */
  memcpy(c, buf, len);
  bt_test_put_le(c + H_END + 4, (uint64_t)f->ek->ngalois - 1, 4);
  bt_test_fix_checksum(c, len);
  bt_test_expect_fail(bt_io_read_eval_keys(c, len, f->p, &ek), BT_E_FORMAT, "after the last", "count - 1");
  assert_null(ek);
  /* the first key's shape says level 0: the next key is read from inside it */
  memcpy(c, buf, len);
  bt_test_put_le(c + H_END + 8 + 8, 1u | 1u << 16, 4);
  bt_test_fix_checksum(c, len);
  assert_int_equal(bt_io_read_eval_keys(c, len, f->p, &ek), BT_E_FORMAT);
  printf("  refused: %s\n", bt_last_error());
  assert_null(ek);
  free(c);
  bt_free(buf);
}

static void corrupt_files(void **state) {
  fixture *f = *state;
  char path[512], other[600];
  bt_ciphertext *ct;
  bt_eval_keys *ek;

  /* nonexistent path, directory, empty file */
  path_in(f, "missing.bt", path, sizeof path);
  bt_test_expect_fail(bt_io_load_ciphertext(path, f->p, &ct), BT_E_IO, path, "missing");
  assert_null(ct);
  printf("  refused: %s\n", bt_last_error());
  bt_io_info info;
  bt_test_expect_fail(bt_io_inspect(path, &info), BT_E_IO, path, "inspect missing");
  bt_test_expect_fail(bt_io_load_ciphertext(f->dir, f->p, &ct), BT_E_IO, "regular", "directory");
  path_in(f, "empty.bt", path, sizeof path);
  write_file(path, (const uint8_t *)"", 0);
  bt_test_expect_fail(bt_io_load_ciphertext(path, f->p, &ct), BT_E_FORMAT, "empty file", "empty");
  printf("  refused: %s\n", bt_last_error());
  bt_test_expect_fail(bt_io_inspect(path, &info), BT_E_FORMAT, "empty", "inspect empty");
  assert_int_equal(unlink(path), 0);

  /* wrong kind names both kinds and the path */
  path_in(f, "pk.bt", path, sizeof path);
  BT_CHECK(bt_io_save_public_key(path, f->pk));
  bt_test_expect_fail(bt_io_load_ciphertext(path, f->p, &ct), BT_E_FORMAT,
              "file holds a public key, expected a ciphertext", "file kind");
  assert_non_null(strstr(bt_last_error(), path));
  printf("  refused: %s\n", bt_last_error());
  /* other parameters */
  bt_public_key *pk;
  bt_test_expect_fail(bt_io_load_public_key(path, f->other, &pk), BT_E_PARAMS, "made for other parameters",
              "file params");
  assert_null(pk);
  size_t len;
  uint8_t *buf = bt_test_read_file(path, &len);
  assert_int_equal(unlink(path), 0);

  /* truncated files at several lengths */
  const size_t cuts[] = {1, 87, 88, 200, len / 2, len - 33, len - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
    write_file(path, buf, cuts[i]);
    bt_test_expect_fail(bt_io_load_public_key(path, f->p, &pk), BT_E_FORMAT, "truncated", "truncated file");
    bt_test_expect_fail(bt_io_inspect(path, &info), BT_E_FORMAT, "truncated", "inspect truncated");
  }
  printf("  refused: %s\n", bt_last_error());
  /* a flipped parameter-hash byte reads as corruption, not as other parameters */
  buf[H_HASH] ^= 1;
  write_file(path, buf, len);
  bt_test_expect_fail(bt_io_load_public_key(path, f->p, &pk), BT_E_FORMAT, "checksum mismatch", "hash flip");
  bt_test_expect_fail(bt_io_inspect(path, &info), BT_E_FORMAT, "checksum mismatch", "inspect flip");
  buf[H_HASH] ^= 1;
  /* a coefficient above its prime with a valid checksum, through the file reader */
  bt_test_put_le(buf + H_END, ~(uint64_t)0, 8);
  bt_test_fix_checksum(buf, len);
  write_file(path, buf, len);
  bt_test_expect_fail(bt_io_load_public_key(path, f->p, &pk), BT_E_FORMAT, "not below the prime", "file coef");
  assert_null(pk);
  assert_int_equal(unlink(path), 0);
  free(buf);

  /* streamed evaluation keys: corruption deep in the payload is found by the
   * incremental checksum; corruption of a field is still named as corruption */
  path_in(f, "ek.bt", path, sizeof path);
  BT_CHECK(bt_io_save_eval_keys(path, f->ek));
  BT_CHECK(bt_io_inspect(path, &info));
  assert_int_equal(info.kind, BT_IO_EVAL_KEYS);
  buf = bt_test_read_file(path, &len);
  const size_t offs[] = {H_END, H_END + 8 + 3, len / 2, len - 1};
  for (size_t i = 0; i < sizeof offs / sizeof *offs; i++) {
    buf[offs[i]] ^= 0x40;
    write_file(path, buf, len);
    bt_test_expect_fail(bt_io_load_eval_keys(path, f->p, &ek), BT_E_FORMAT, "checksum mismatch", "ek flip");
    assert_null(ek);
    buf[offs[i]] ^= 0x40;
  }
  printf("  refused: %s\n", bt_last_error());
  snprintf(other, sizeof other, "%s.cut", path);
  write_file(other, buf, len - 100);
  bt_test_expect_fail(bt_io_load_eval_keys(other, f->p, &ek), BT_E_FORMAT, "truncated", "ek cut");
  assert_int_equal(unlink(other), 0);
  assert_int_equal(unlink(path), 0);
  free(buf);
}

/* Random bytes written anywhere in the payload of valid containers, with
 * the checksum recomputed so the parsers see them: whatever the outcome, no
 * crash, no leak (the sanitizer build checks), and a failure leaves *out NULL. */
static void random_mutations(void **state) {
  fixture *f = *state;
  bt_prng g;
  bt_test_prng(&g, "io-mutations");
  double complex *v = malloc(f->slots * sizeof *v);
  random_values(&f->g, v, f->slots);
  bt_ciphertext *ct = encrypt_values(f, v, 1, 0);
  bt_eval_keys *small;
  BT_CHECK(bt_eval_keys_new(f->p, &small));
  bt_switch_key *k;
  BT_CHECK(bt_keygen_galois(f->sk, bt_ckks_galois_conjugate(f->p), &f->g, &k));
  BT_CHECK(bt_eval_keys_add(small, k));
  uint8_t *blob[6];
  size_t len[6];
  BT_CHECK(bt_io_write_params(f->p, &blob[0], &len[0]));
  BT_CHECK(bt_io_write_ciphertext(ct, &blob[1], &len[1]));
  BT_CHECK(bt_io_write_secret_key(f->sk, &blob[2], &len[2]));
  BT_CHECK(bt_io_write_public_key(f->pk, &blob[3], &len[3]));
  BT_CHECK(bt_io_write_switch_key(k, &blob[4], &len[4]));
  BT_CHECK(bt_io_write_eval_keys(small, &blob[5], &len[5]));
  size_t refused = 0, accepted = 0;
  for (int round = 0; round < 240; round++) {
    const int kind = round % 6;
    uint8_t *c = dup_buf(blob[kind], len[kind]);
    const size_t payload = len[kind] - H_END;
    /* mostly the leading fields, where the structure is */
    for (int m = 0; m < 1 + (int)(bt_prng_u64(&g) % 3); m++) {
      uint64_t x = bt_prng_u64(&g);
      size_t window = (x & 1) ? payload : (payload < 64 ? payload : 64);
      c[H_END + (x >> 8) % window] = (uint8_t)(x >> 1);
    }
    bt_test_fix_checksum(c, len[kind]);
    bt_status st;
    void *obj = NULL;
    switch (kind) {
    case 0: {
      bt_ckks_params *q = NULL;
      st = bt_io_read_params(c, len[kind], BT_ALLOW_INSECURE, &q);
      bt_ckks_params_free(q);
      obj = q;
      break;
    }
    case 1: {
      bt_ciphertext *r = NULL;
      st = bt_io_read_ciphertext(c, len[kind], f->p, &r);
      bt_ciphertext_free(r);
      obj = r;
      break;
    }
    case 2: {
      bt_secret_key *r = NULL;
      st = bt_io_read_secret_key(c, len[kind], f->p, &r);
      bt_secret_key_free(r);
      obj = r;
      break;
    }
    case 3: {
      bt_public_key *r = NULL;
      st = bt_io_read_public_key(c, len[kind], f->p, &r);
      bt_public_key_free(r);
      obj = r;
      break;
    }
    case 4: {
      bt_switch_key *r = NULL;
      st = bt_io_read_switch_key(c, len[kind], f->p, &r);
      bt_switch_key_free(r);
      obj = r;
      break;
    }
    default: {
      bt_eval_keys *r = NULL;
      st = bt_io_read_eval_keys(c, len[kind], f->p, &r);
      bt_eval_keys_free(r);
      obj = r;
      break;
    }
    }
    if (st) {
      assert_null(obj);
      assert_true(st == BT_E_FORMAT || st == BT_E_PARAMS);
      assert_true(bt_last_error()[0] != '\0');
      refused++;
    } else {
      accepted++;
    }
    free(c);
  }
  printf("  mutated containers: %zu refused, %zu accepted (mutations of values only)\n", refused,
         accepted);
  for (int i = 0; i < 6; i++) bt_free_secret(blob[i], len[i]);
  bt_eval_keys_free(small);
  bt_ciphertext_free(ct);
  bt_prng_wipe(&g);
  free(v);
}

int main(void) {
  bt_test_seed();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(params_files_and_corruption),
      cmocka_unit_test(corrupt_ciphertexts),
      cmocka_unit_test(corrupt_keys),
      cmocka_unit_test(corrupt_files),
      cmocka_unit_test(random_mutations),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

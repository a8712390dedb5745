#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blindtuner/ring.h"
#include "testutil.h"

static void barrett_matches_division(void **state) {
  (void)state;
  bt_prng g;
  bt_test_prng(&g, "barrett");
  uint64_t qs[3];
  assert_int_equal(bt_primes_generate(61, 16, 1, NULL, 0, qs), BT_OK);
  assert_int_equal(bt_primes_generate(50, 16, 1, NULL, 0, qs + 1), BT_OK);
  assert_int_equal(bt_primes_generate(30, 12, 1, NULL, 0, qs + 2), BT_OK);
  for (int k = 0; k < 3; k++) {
    bt_modulus m;
    assert_int_equal(bt_modulus_init(&m, qs[k]), BT_OK);
    for (int i = 0; i < 20000; i++) {
      bt_u128 x = ((bt_u128)bt_prng_u64(&g) << 64) | bt_prng_u64(&g);
      if (i % 3 == 0) x = ~(bt_u128)0 - (bt_u128)i; /* extremes */
      assert_true(bt_mod_reduce128(x, &m) == (uint64_t)(x % qs[k]));
      uint64_t y = bt_prng_u64(&g);
      assert_true(bt_mod_reduce64(y, &m) == y % qs[k]);
      uint64_t a = y % qs[k], w = bt_prng_u64(&g) % qs[k];
      assert_true(bt_mul_shoup(a, w, bt_shoup(w, qs[k]), qs[k]) == (uint64_t)(((bt_u128)a * w) % qs[k]));
    }
    assert_int_equal(bt_mod_mul(bt_mod_inv(12345, &m), 12345, &m), 1);
  }
}

static void primes_are_ntt_friendly(void **state) {
  (void)state;
  uint64_t q[10];
  assert_int_equal(bt_primes_generate(48, 16, 10, NULL, 0, q), BT_OK);
  for (int i = 0; i < 10; i++) {
    assert_true(bt_is_prime(q[i]));
    assert_int_equal(q[i] % (1u << 17), 1);
    assert_int_equal(64 - __builtin_clzll(q[i]), 48);
    for (int j = 0; j < i; j++) assert_true(q[i] != q[j]);
  }
  assert_false(bt_is_prime(3215031751ULL)); /* strong pseudoprime to 2, 3, 5, 7 */
  assert_true(bt_is_prime(18446744073709551557ULL));
  assert_int_not_equal(bt_primes_generate(20, 16, 100, NULL, 0, q), BT_OK);
}

static void ntt_matches_naive(void **state) {
  (void)state;
  bt_prng g;
  bt_test_prng(&g, "ntt-naive");
  /* 59 and the largest prime size (61 bits), where the lazy butterflies'
   * [0, 4q) is tightest; the largest residues in some coefficients */
  for (int r = 0; r < 16; r++) {
    const int logn = 3 + r % 8, bits = r < 8 ? 59 : BT_MAX_PRIME_BITS;
    uint64_t q;
    assert_int_equal(bt_primes_generate(bits, logn, 1, NULL, 0, &q), BT_OK);
    bt_ntt_table t;
    assert_int_equal(bt_ntt_table_init(&t, q, logn), BT_OK);
    size_t n = t.n;
    uint64_t *a = bt_alloc(n * 8), *b = bt_alloc(n * 8), *c = bt_alloc(n * 8);
    bt_sample_uniform(&g, &t.mod, 1, n, a);
    for (size_t i = 0; i < n; i += 3) a[i] = q - 1 - i % 2;
    memcpy(b, a, n * 8);
    bt_ntt_forward(&t, b);
    bt_ntt_naive(&t, a, c);
    assert_memory_equal(b, c, n * 8);
    bt_ntt_inverse(&t, b);
    assert_memory_equal(a, b, n * 8);
    bt_free(a);
    bt_free(b);
    bt_free(c);
    bt_ntt_table_free(&t);
  }
}

/* Negacyclic product: NTT pointwise product equals schoolbook multiplication. */
static void ntt_multiplies_negacyclically(void **state) {
  (void)state;
  bt_prng g;
  bt_test_prng(&g, "ntt-mul");
  const int logn = 8;
  uint64_t q;
  assert_int_equal(bt_primes_generate(60, logn, 1, NULL, 0, &q), BT_OK);
  bt_ntt_table t;
  assert_int_equal(bt_ntt_table_init(&t, q, logn), BT_OK);
  size_t n = t.n;
  uint64_t a[256], b[256], want[256] = {0};
  bt_sample_uniform(&g, &t.mod, 1, n, a);
  bt_sample_uniform(&g, &t.mod, 1, n, b);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++) {
      uint64_t p = bt_mod_mul(a[i], b[j], &t.mod);
      size_t k = i + j;
      if (k < n) want[k] = bt_mod_add(want[k], p, q);
      else want[k - n] = bt_mod_sub(want[k - n], p, q);
    }
  bt_ntt_forward(&t, a);
  bt_ntt_forward(&t, b);
  for (size_t i = 0; i < n; i++) a[i] = bt_mod_mul(a[i], b[i], &t.mod);
  bt_ntt_inverse(&t, a);
  assert_memory_equal(a, want, sizeof want);
  bt_ntt_table_free(&t);
}

static void large_ntt_round_trip(void **state) {
  (void)state;
  bt_prng g;
  bt_test_prng(&g, "ntt-16");
  uint64_t q;
  assert_int_equal(bt_primes_generate(61, 16, 1, NULL, 0, &q), BT_OK);
  bt_ntt_table t;
  assert_int_equal(bt_ntt_table_init(&t, q, 16), BT_OK);
  size_t n = t.n;
  uint64_t *a = bt_alloc(n * 8), *b = bt_alloc(n * 8);
  bt_sample_uniform(&g, &t.mod, 1, n, a);
  memcpy(b, a, n * 8);
  bt_ntt_forward(&t, b);
  for (size_t i = 0; i < n; i++) assert_true(b[i] < q);
  bt_ntt_inverse(&t, b);
  assert_memory_equal(a, b, n * 8);
  bt_free(a);
  bt_free(b);
  bt_ntt_table_free(&t);
}

static void automorphism_permutes_ntt(void **state) {
  (void)state;
  bt_prng g;
  bt_test_prng(&g, "auto");
  const int logn = 9;
  uint64_t q;
  assert_int_equal(bt_primes_generate(55, logn, 1, NULL, 0, &q), BT_OK);
  bt_ntt_table t;
  assert_int_equal(bt_ntt_table_init(&t, q, logn), BT_OK);
  size_t n = t.n;
  uint64_t a[512], b[512], c[512];
  uint32_t idx[512];
  const uint64_t ks[] = {5, 25, 2 * 512 - 1, 3, 5 * 5 * 5 % 1024};
  for (size_t r = 0; r < sizeof ks / sizeof *ks; r++) {
    bt_sample_uniform(&g, &t.mod, 1, n, a);
    bt_poly_automorphism_coeff(a, b, n, ks[r], q);
    bt_ntt_forward(&t, b);
    bt_ntt_forward(&t, a);
    bt_ntt_automorphism_index(logn, ks[r], idx);
    for (size_t i = 0; i < n; i++) c[i] = a[idx[i]];
    assert_memory_equal(b, c, sizeof c);
  }
  bt_ntt_table_free(&t);
}

static void basis_extension_is_exact_up_to_multiple(void **state) {
  (void)state;
  bt_prng g;
  bt_test_prng(&g, "conv");
  uint64_t from[4], to[3];
  assert_int_equal(bt_primes_generate(50, 10, 4, NULL, 0, from), BT_OK);
  assert_int_equal(bt_primes_generate(58, 10, 3, NULL, 0, to), BT_OK);
  bt_rns_conv c;
  assert_int_equal(bt_rns_conv_init(&c, from, 4, to, 3), BT_OK);
  bt_crt crt;
  assert_int_equal(bt_crt_init(&crt, from, 4), BT_OK);
  const size_t n = 64;
  bt_modulus fm[4];
  for (int i = 0; i < 4; i++) assert_int_equal(bt_modulus_init(&fm[i], from[i]), BT_OK);
  uint64_t in[4 * 64], out[3 * 64];
  bt_sample_uniform(&g, fm, 4, n, in);
  bt_rns_conv_apply(&c, in, out, n, NULL, 1);
  /* x + u B for some 0 <= u < 4: check out_j - x mod c_j is a small multiple of B mod c_j */
  for (size_t t = 0; t < n; t++) {
    uint64_t res[4], scratch[10];
    for (int i = 0; i < 4; i++) res[i] = in[i * n + t];
    long double x = bt_crt_centered(&crt, res, scratch);
    (void)x;
    for (int j = 0; j < 3; j++) {
      bt_modulus m;
      assert_int_equal(bt_modulus_init(&m, to[j]), BT_OK);
      /* exact x mod c_j from the residues via the CRT sum without reduction */
      uint64_t xs = 0, bm = 1;
      for (int i = 0; i < 4; i++) bm = bt_mod_mul(bm, from[i] % to[j], &m);
      for (int i = 0; i < 4; i++) {
        uint64_t hat = 1, hatq = 1;
        for (int l = 0; l < 4; l++)
          if (l != i) {
            hat = bt_mod_mul(hat, from[l] % to[j], &m);
            hatq = bt_mod_mul(hatq, from[l] % from[i], &fm[i]);
          }
        uint64_t y = bt_mod_mul(res[i], bt_mod_inv(hatq, &fm[i]), &fm[i]);
        xs = bt_mod_add(xs, bt_mod_mul(y % to[j], hat, &m), to[j]);
      }
      /* xs = x + u B with u the CRT overflow count; out must equal xs exactly */
      assert_true(out[j * n + t] == xs);
      (void)bm;
    }
  }
  bt_crt_free(&crt);
  bt_rns_conv_free(&c);
}

/* The exact conversion returns the centred representative: with a source
 * basis below 2^62 the centred value fits an int64 and is checked directly.
 * Within a hair (k 2^-52 B) of +-B/2 either representative is allowed (the
 * floating-point rounding may pick x - B for x = (B-1)/2); both still make
 * ModDown err by at most 1/2 + tiny. */
static void exact_basis_extension_is_centred(void **state) {
  (void)state;
  bt_prng g;
  bt_test_prng(&g, "conv exact");
  uint64_t from[2], to[3];
  assert_int_equal(bt_primes_generate(30, 10, 2, NULL, 0, from), BT_OK);
  assert_int_equal(bt_primes_generate(58, 10, 3, NULL, 0, to), BT_OK);
  bt_rns_conv c;
  assert_int_equal(bt_rns_conv_init(&c, from, 2, to, 3), BT_OK);
  const int64_t B = (int64_t)(from[0] * from[1]);
  enum { n = 256 };
  int64_t x[n];
  uint64_t in[2 * n], out[3 * n];
  for (size_t t = 0; t < n; t++) {
    if (t < 6) {
      const int64_t edge[6] = {0, 1, -1, B / 2, -(B / 2) + 1, B / 2 - 1};
      x[t] = edge[t];
    } else {
      x[t] = (int64_t)(bt_prng_u64(&g) % (uint64_t)B) - B / 2 + 1; /* (-B/2, B/2] */
    }
    for (int i = 0; i < 2; i++) {
      int64_t r = x[t] % (int64_t)from[i];
      in[i * n + t] = (uint64_t)(r < 0 ? r + (int64_t)from[i] : r);
    }
  }
  bt_rns_conv_apply_exact(&c, in, out, n, NULL, 1);
  for (size_t t = 0; t < n; t++)
    for (int j = 0; j < 3; j++) {
      int64_t r = x[t] % (int64_t)to[j];
      uint64_t want = (uint64_t)(r < 0 ? r + (int64_t)to[j] : r);
      const int near_half = x[t] > B / 2 - (B >> 48);
      if (near_half) {
        int64_t r2 = (x[t] - B) % (int64_t)to[j];
        if (out[j * n + t] == (uint64_t)(r2 < 0 ? r2 + (int64_t)to[j] : r2)) continue;
      }
      if (out[j * n + t] != want) fail_msg("x = %lld: residue mod c_%d is %llu, want %llu", (long long)x[t], j,
                                           (unsigned long long)out[j * n + t], (unsigned long long)want);
    }
  bt_rns_conv_free(&c);
}

/* The vector conversion (blocks of 64 coefficients, then a scalar tail)
 * against its definition, sum_i [x_i (B/b_i)^-1]_{b_i} (B/b_i) mod c_j, at
 * the largest prime size with the largest residues; and the exact variant
 * against the centred value computed in long double (random inputs are
 * nowhere near the +-B/2 ties). */
static void basis_extension_matches_definition_at_61_bits(void **state) {
  (void)state;
  bt_prng g;
  bt_test_prng(&g, "conv 61");
  enum { K = 9, M = 5, N = 200 };
  uint64_t from[K], to[M];
  assert_int_equal(bt_primes_generate(BT_MAX_PRIME_BITS, 10, K, NULL, 0, from), BT_OK);
  assert_int_equal(bt_primes_generate(BT_MAX_PRIME_BITS, 10, M, from, K, to), BT_OK);
  bt_rns_conv c;
  assert_int_equal(bt_rns_conv_init(&c, from, K, to, M), BT_OK);
  bt_modulus fm[K], tm[M];
  for (int i = 0; i < K; i++) assert_int_equal(bt_modulus_init(&fm[i], from[i]), BT_OK);
  for (int j = 0; j < M; j++) assert_int_equal(bt_modulus_init(&tm[j], to[j]), BT_OK);
  static uint64_t in[K * N], out[M * N], ex[M * N];
  bt_sample_uniform(&g, fm, K, N, in);
  for (int i = 0; i < K; i++)
    for (size_t t = 0; t < N; t += 5) in[i * N + t] = from[i] - 1;
  /* coefficients 64..127: every y_i (the input times (B/b_i)^-1) the
   * largest value below b_i with all 32 low bits set, the worst case of the
   * vector sums' partial products */
  for (int i = 0; i < K; i++) {
    uint64_t hat = 1;
    for (int l = 0; l < K; l++)
      if (l != i) hat = bt_mod_mul(hat, from[l] % from[i], &fm[i]);
    const uint64_t worst = ((from[i] >> 32) << 32) - 1;
    for (size_t t = 64; t < 128; t++) in[i * N + t] = bt_mod_mul(worst, hat, &fm[i]);
  }
  bt_rns_conv_apply(&c, in, out, N, NULL, 2);
  bt_rns_conv_apply_exact(&c, in, ex, N, NULL, 2);
  for (size_t t = 0; t < N; t++) {
    uint64_t y[K];
    long double frac = 0;
    for (int i = 0; i < K; i++) {
      uint64_t hat = 1;
      for (int l = 0; l < K; l++)
        if (l != i) hat = bt_mod_mul(hat, from[l] % from[i], &fm[i]);
      y[i] = bt_mod_mul(in[i * N + t], bt_mod_inv(hat, &fm[i]), &fm[i]);
      frac += (long double)y[i] / (long double)from[i];
    }
    const uint64_t v = (uint64_t)llroundl(frac); /* x = sum y_i B/b_i - v B, centred */
    for (int j = 0; j < M; j++) {
      uint64_t want = 0, bm = 1;
      for (int i = 0; i < K; i++) {
        uint64_t hat = 1;
        for (int l = 0; l < K; l++)
          if (l != i) hat = bt_mod_mul(hat, from[l] % to[j], &tm[j]);
        want = bt_mod_add(want, bt_mod_mul(y[i] % to[j], hat, &tm[j]), to[j]);
        bm = bt_mod_mul(bm, from[i] % to[j], &tm[j]);
      }
      if (out[j * N + t] != want) fail_msg("coefficient %zu, target %d: %llu, want %llu", t, j,
                                           (unsigned long long)out[j * N + t], (unsigned long long)want);
      const uint64_t want_ex = bt_mod_sub(want, bt_mod_mul(v % to[j], bm, &tm[j]), to[j]);
      if (ex[j * N + t] != want_ex) fail_msg("exact: coefficient %zu, target %d: %llu, want %llu", t, j,
                                             (unsigned long long)ex[j * N + t], (unsigned long long)want_ex);
    }
  }
  bt_rns_conv_free(&c);
}

/* bt_limb_dot2 against 128-bit products reduced one by one: term counts
 * around the accumulator's fold (7) and chunk (32) sizes, a length with a
 * scalar tail, 61-bit primes with the largest residues, with and without a
 * permutation of the x limbs. */
static void limb_dot2_matches_reference(void **state) {
  (void)state;
  bt_prng g;
  bt_test_prng(&g, "dot2");
  enum { LEN = 203, MAXT = 70 };
  uint64_t q;
  assert_int_equal(bt_primes_generate(BT_MAX_PRIME_BITS, 10, 1, NULL, 0, &q), BT_OK);
  bt_modulus m;
  assert_int_equal(bt_modulus_init(&m, q), BT_OK);
  uint64_t *buf = bt_alloc(3 * MAXT * LEN * sizeof *buf);
  assert_non_null(buf);
  bt_sample_uniform(&g, &m, 1, 3 * MAXT * LEN, buf);
  for (size_t i = 0; i < 3 * MAXT * LEN; i += 4) buf[i] = q - 1;
  /* coefficients 8..71 of every limb: the worst case of the vector sums'
   * partial products, all 32 low bits set and the high half largest */
  for (size_t l = 0; l < 3 * MAXT; l++)
    for (size_t i = 8; i < 72; i++) buf[l * LEN + i] = ((q >> 32) << 32) - 1;
  const uint64_t *x[MAXT], *k0[MAXT], *k1[MAXT];
  for (int j = 0; j < MAXT; j++) {
    x[j] = buf + (size_t)j * LEN;
    k0[j] = buf + (size_t)(MAXT + j) * LEN;
    k1[j] = buf + (size_t)(2 * MAXT + j) * LEN;
  }
  uint32_t perm[LEN];
  for (uint32_t i = 0; i < LEN; i++) perm[i] = i;
  for (uint32_t i = LEN - 1; i > 0; i--) {
    const uint32_t r = (uint32_t)(bt_prng_u64(&g) % (i + 1)), tmp = perm[i];
    perm[i] = perm[r];
    perm[r] = tmp;
  }
  const size_t counts[] = {1, 2, 6, 7, 8, 14, 31, 32, 33, 64, 70};
  uint64_t o0[LEN], o1[LEN];
  for (size_t ci = 0; ci < sizeof counts / sizeof *counts; ci++)
    for (int usep = 0; usep < 2; usep++) {
      const size_t terms = counts[ci];
      /* the permuted runs accumulate onto a start value */
      for (size_t i = 0; i < LEN; i++) o0[i] = o1[i] = usep ? q - 1 - i : 12345;
      bt_limb_dot2(&m, LEN, terms, x, usep ? perm : NULL, k0, k1, o0, o1, usep);
      for (size_t i = 0; i < LEN; i++) {
        const size_t xi = usep ? perm[i] : i;
        uint64_t w0 = usep ? q - 1 - i : 0, w1 = w0;
        for (size_t j = 0; j < terms; j++) {
          w0 = bt_mod_add(w0, bt_mod_mul(x[j][xi], k0[j][i], &m), q);
          w1 = bt_mod_add(w1, bt_mod_mul(x[j][xi], k1[j][i], &m), q);
        }
        if (o0[i] != w0 || o1[i] != w1)
          fail_msg("%zu terms%s, coefficient %zu: (%llu, %llu), want (%llu, %llu)", terms, usep ? " permuted" : "", i,
                   (unsigned long long)o0[i], (unsigned long long)o1[i], (unsigned long long)w0,
                   (unsigned long long)w1);
      }
    }
  bt_free(buf);
}

/* Signed coefficients to residues: extremes, both signs, a scalar tail. */
static void limb_from_signed_matches_reference(void **state) {
  (void)state;
  bt_prng g;
  bt_test_prng(&g, "from signed");
  enum { LEN = 83 };
  int64_t in[LEN];
  uint64_t out[LEN];
  const int bits[3] = {BT_MAX_PRIME_BITS, 43, 20};
  for (int b = 0; b < 3; b++) {
    uint64_t q;
    assert_int_equal(bt_primes_generate(bits[b], 10, 1, NULL, 0, &q), BT_OK);
    bt_modulus m;
    assert_int_equal(bt_modulus_init(&m, q), BT_OK);
    const int64_t edge[8] = {0, 1, -1, (int64_t)q, -(int64_t)q, INT64_MAX, -INT64_MAX, (int64_t)q - 1};
    for (size_t i = 0; i < LEN; i++) in[i] = i < 8 ? edge[i] : (int64_t)bt_prng_u64(&g) >> (i % 5 * 10);
    bt_limb_from_signed(&m, in, LEN, out);
    for (size_t i = 0; i < LEN; i++) {
      const __int128 r = (__int128)in[i] % (__int128)q;
      const uint64_t want = (uint64_t)(r < 0 ? r + (__int128)q : r);
      if (out[i] != want) fail_msg("%lld mod %llu: %llu, want %llu", (long long)in[i], (unsigned long long)q,
                                   (unsigned long long)out[i], (unsigned long long)want);
    }
  }
}

static void crt_reconstructs_signed_values(void **state) {
  (void)state;
  bt_prng g;
  bt_test_prng(&g, "crt");
  uint64_t q[3];
  assert_int_equal(bt_primes_generate(60, 12, 3, NULL, 0, q), BT_OK);
  bt_crt crt;
  assert_int_equal(bt_crt_init(&crt, q, 3), BT_OK);
  for (int r = 0; r < 1000; r++) {
    int64_t v = (int64_t)(bt_prng_u64(&g) >> 1) * ((r & 1) ? -1 : 1);
    uint64_t res[3], scratch[8];
    for (int i = 0; i < 3; i++) {
      int64_t m = v % (int64_t)q[i];
      res[i] = (uint64_t)(m < 0 ? m + (int64_t)q[i] : m);
    }
    long double got = bt_crt_centered(&crt, res, scratch);
    assert_true(got == (long double)v);
  }
  bt_crt_free(&crt);
}

static void samplers_have_the_right_shape(void **state) {
  (void)state;
  bt_prng g;
  bt_test_prng(&g, "samplers");
  const size_t n = 1 << 16;
  int8_t *v = bt_alloc(n);
  bt_sample_ternary(&g, n, v);
  size_t cnt[3] = {0};
  for (size_t i = 0; i < n; i++) {
    assert_true(v[i] >= -1 && v[i] <= 1);
    cnt[v[i] + 1]++;
  }
  for (int k = 0; k < 3; k++) assert_true(fabs((double)cnt[k] / (double)n - 1.0 / 3) < 0.01);
  assert_int_equal(bt_sample_ternary_hw(&g, n, 192, v), BT_OK);
  size_t hw = 0, pos = 0;
  for (size_t i = 0; i < n; i++) {
    assert_true(v[i] >= -1 && v[i] <= 1);
    hw += v[i] != 0;
    pos += v[i] == 1;
  }
  assert_int_equal(hw, 192);
  assert_true(pos > 50 && pos < 142);
  bt_sample_gaussian(&g, n, v);
  double mean = 0, var = 0;
  int mx = 0;
  for (size_t i = 0; i < n; i++) {
    mean += v[i];
    var += (double)v[i] * v[i];
    if (abs(v[i]) > mx) mx = abs(v[i]);
  }
  mean /= (double)n;
  var = var / (double)n - mean * mean;
  printf("  gaussian: mean %.4f, sigma %.4f (want 0, 3.2), max |e| %d\n", mean, sqrt(var), mx);
  assert_true(fabs(mean) < 0.05);
  assert_true(fabs(sqrt(var) - 3.2) < 0.05);
  assert_true(mx <= 19);
  bt_free(v);
}

int main(void) {
  bt_test_seed();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(barrett_matches_division),
      cmocka_unit_test(primes_are_ntt_friendly),
      cmocka_unit_test(ntt_matches_naive),
      cmocka_unit_test(ntt_multiplies_negacyclically),
      cmocka_unit_test(large_ntt_round_trip),
      cmocka_unit_test(automorphism_permutes_ntt),
      cmocka_unit_test(basis_extension_is_exact_up_to_multiple),
      cmocka_unit_test(exact_basis_extension_is_centred),
      cmocka_unit_test(basis_extension_matches_definition_at_61_bits),
      cmocka_unit_test(limb_dot2_matches_reference),
      cmocka_unit_test(limb_from_signed_matches_reference),
      cmocka_unit_test(crt_reconstructs_signed_values),
      cmocka_unit_test(samplers_have_the_right_shape),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The MPI transport of a data-parallel job (src/dist/mpi.c), run under
 * `mpirun -np K`: every rank makes the same pseudo-random ciphertexts (one
 * per rank, from the rank's number), so each knows what the sum over the
 * ranks must be, limb by limb, and checks what MPI_Allreduce with the
 * modular add gives: with every rank contributing, and with rank 1 passing
 * none (its level, scale and slots come from the others).  Then the
 * broadcast, the maximum and the digest comparison.  Started
 * without a launcher it says so and exits 77 (skipped). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blindtuner/dist.h"

static int failures;
#define EXPECT(cond, ...)                      \
  do {                                         \
    if (!(cond)) {                             \
      fprintf(stderr, "FAIL: " __VA_ARGS__);   \
      fputc('\n', stderr);                     \
      failures++;                              \
    }                                          \
  } while (0)

static void fill(const bt_ckks_params *p, int rank, int level, bt_ciphertext *ct) {
  uint8_t seed[BT_SEED_BYTES] = {'d', 'i', 's', 't', (uint8_t)rank};
  bt_prng g;
  bt_prng_init(&g, seed);
  const size_t n = bt_ckks_n(p);
  ct->level = level, ct->degree = 1, ct->logslots = 10, ct->scale = 0x1p40;
  for (int c = 0; c < 2; c++)
    for (int l = 0; l <= level; l++) {
      const uint64_t q = bt_ckks_q(p, l);
      /* values near q too: the sum must wrap */
      for (size_t i = 0; i < n; i++) ct->c[c][(size_t)l * n + i] = i % 7 ? bt_prng_u64(&g) % q : q - 1 - (uint64_t)rank;
    }
  bt_prng_wipe(&g);
}

static int check_sum(const bt_ckks_params *p, const bt_collective *co, int level, int skip) {
  bt_ciphertext *ct = NULL, *want = NULL, *one = NULL;
  if (bt_ciphertext_new(p, &ct) || bt_ciphertext_new(p, &want) || bt_ciphertext_new(p, &one)) return 1;
  const size_t n = bt_ckks_n(p), words = (size_t)(level + 1) * n;
  memset(want->c[0], 0, words * 8), memset(want->c[1], 0, words * 8);
  for (int r = 0; r < co->ranks; r++) {
    if (r == skip) continue;
    fill(p, r, level, one);
    for (int c = 0; c < 2; c++)
      for (int l = 0; l <= level; l++)
        for (size_t i = 0; i < n; i++) {
          uint64_t *w = &want->c[c][(size_t)l * n + i];
          *w = (*w + one->c[c][(size_t)l * n + i]) % bt_ckks_q(p, l);
        }
  }
  const int mine = co->rank != skip;
  if (mine) fill(p, co->rank, level, ct);
  else ct->level = 0, ct->logslots = 3, ct->scale = 1; /* to be replaced */
  bt_status st = co->sum(co->user, ct, mine);
  EXPECT(!st, "rank %d: sum: %s", co->rank, bt_last_error());
  if (!st) {
    EXPECT(ct->level == level && ct->degree == 1 && ct->logslots == 10 && ct->scale == 0x1p40,
           "rank %d: the sum's shape (level %d, slots 2^%d, scale %g)", co->rank, ct->level, ct->logslots, ct->scale);
    EXPECT(!memcmp(ct->c[0], want->c[0], words * 8) && !memcmp(ct->c[1], want->c[1], words * 8),
           "rank %d: the sum's limbs differ from the modular sum (level %d, skip %d)", co->rank, level, skip);
  }
  bt_ciphertext_free(ct), bt_ciphertext_free(want), bt_ciphertext_free(one);
  return 0;
}

int main(int argc, char **argv) {
  bt_collective co;
  int active = 0;
  if (bt_dist_init(&argc, &argv, &co, &active)) {
    fprintf(stderr, "dist_mpi: %s\n", bt_last_error());
    return 1;
  }
  if (!active) {
    printf("dist_mpi: not started by an MPI launcher: skipped\n");
    return 77;
  }
  bt_ckks_literal lit;
  bt_ckks_params *p = NULL;
  if (bt_ckks_preset("INSECURE-n12", &lit) || bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &p)) {
    fprintf(stderr, "dist_mpi: %s\n", bt_last_error());
    bt_dist_abort(1);
    return 1;
  }
  const int K = co.ranks;
  const int top = bt_ckks_max_level(p);
  check_sum(p, &co, top, -1);
  check_sum(p, &co, 2, -1);
  if (K > 1) check_sum(p, &co, 3, 1); /* rank 1 contributes nothing */

  int64_t b = co.rank == 0 ? 42 : -1;
  EXPECT(!bt_dist_bcast_i64(&co, &b, 1, 0) && b == 42, "rank %d: broadcast gave %lld", co.rank, (long long)b);
  double m = co.rank;
  EXPECT(!bt_dist_max_f64(&co, &m, 1) && m == K - 1, "rank %d: maximum %g", co.rank, m);
  uint8_t d[32] = {0};
  int same = 0;
  EXPECT(!co.same(co.user, d, &same) && same, "rank %d: equal digests called different", co.rank);
  d[31] = (uint8_t)co.rank;
  EXPECT(!co.same(co.user, d, &same) && same == (K == 1), "rank %d: different digests called %s", co.rank,
         same ? "equal" : "different");

  double bad = failures; /* any rank's */
  if (bt_dist_max_f64(&co, &bad, 1)) bad = 1;
  if (co.rank == 0) printf("dist_mpi: %d ranks: sums, broadcast, maximum and digests %s\n", K, bad ? "FAILED" : "ok");
  bt_ckks_params_free(p);
  bt_dist_finalize();
  return bad ? 1 : 0;
}

/* Internal layout of the CKKS parameter handle, shared by src/ckks and src/io. */
#ifndef BT_CKKS_INTERNAL_H
#define BT_CKKS_INTERNAL_H

#include <complex.h>

#include "blindtuner/ckks.h"

typedef struct bt_slot_tables {
  double complex *twist;  /* w^k, k < n (w = exp(2 pi i / 4n)) */
  uint32_t *order;        /* slot j -> FFT index t with 4t + 1 = 5^j mod 4n */
  void *fwd, *bwd;        /* in-place FFTW plans of size n */
} bt_slot_tables;

struct bt_ckks_params {
  bt_ckks_literal lit;       /* lit.name points at name_buf */
  char name_buf[64];
  int logn;
  size_t n;
  int nq, np, alpha, dnum;   /* np == alpha == ceil(nq / dnum) */
  /* key-switching digit j holds primes dstart[j] .. dstart[j+1]-1; digits are
   * balanced by bits, not by count, so that every digit stays well below P
   * (dmax: the most primes in one digit) */
  int dstart[BT_MAX_PRIMES + 1], dmax;
  uint64_t primes[BT_MAX_PRIMES]; /* q_0..q_{nq-1}, p_0..p_{np-1} */
  bt_modulus mod[BT_MAX_PRIMES];
  bt_ntt_table ntt[BT_MAX_PRIMES];
  double scale;
  double log_qp;
  uint8_t hash[BT_PARAMS_HASH_BYTES];
  int threads;

  /* rescale: q_l^-1 mod q_i at [l * nq + i], Shoup form alongside */
  uint64_t *qlinv, *qlinvp;
  /* ModDown: P^-1 mod q_i; P mod q_i */
  uint64_t pinv[BT_MAX_PRIMES], pinvp[BT_MAX_PRIMES], pmodq[BT_MAX_PRIMES];
  /* ModUp from the first c primes of digit j to every prime of QP:
   * modup[j * dmax + (c - 1)] */
  bt_rns_conv *modup;
  /* ModDown: P -> Q */
  bt_rns_conv moddown;
  /* exact CRT over q_0..q_{k-1}: crt[k - 1] */
  bt_crt crt[BT_MAX_PRIMES];
  /* i = sqrt(-1) mod each prime (NTT image of X^(N/2) is +i on the first
   * half of the NTT vector and -i on the second) */
  uint64_t imag[BT_MAX_PRIMES];
  bt_slot_tables slots[20];
};

/* Index of special prime j in primes[]/ntt[]. */
static inline int bt_pidx(const bt_ckks_params *p, int j) { return p->nq + j; }

/* Number of digits at a level. */
static inline int bt_digits_at(const bt_ckks_params *p, int level) {
  int j = 1;
  while (j < p->dnum && p->dstart[j] <= level) j++;
  return j;
}

/* Shared helpers. */
/* `a` holds `count` consecutive limbs; limb t belongs to prime index first + t. */
void bt_poly_ntt(const bt_ckks_params *p, uint64_t *a, int first, int count);
void bt_poly_intt(const bt_ckks_params *p, uint64_t *a, int first, int count);
/* Secret s as (nq + np) NTT limbs: expand a signed small polynomial. */
void bt_small_to_ntt(const bt_ckks_params *p, const int8_t *v, uint64_t *out, int first, int count);
/* a in NTT form expanded from a public seed over the given prime range. */
void bt_expand_uniform(const bt_ckks_params *p, const uint8_t seed[BT_SEED_BYTES], uint64_t *out,
                       int first, int count);



/* Evaluator state: scratch sized for the largest level. */
struct bt_evaluator {
  const bt_ckks_params *p;
  const bt_eval_keys *keys;
  uint64_t *digits;   /* dnum blocks of (nq + np) limbs: ModUp of each digit */
  uint64_t *coef;     /* nq limbs: input in coefficient form */
  uint64_t *acc;      /* 2 blocks of (nq + np) limbs: key-switch accumulators */
  uint64_t *tmp;      /* nq + np limbs */
  uint64_t *keep;     /* nq limbs: c0 kept across hoisted rotations */
  uint32_t *perm;     /* automorphism index */
  bt_ciphertext *aux; /* scale matching */
  bt_op_counts counts;
};

/* Key-switching steps shared by keyswitch.c and bsgs.c (docs/ENGINE.md).
 * decompose: ModUp of every digit of c (level + 1 NTT limbs) into digits;
 * inner_product: (acc0, acc1) = sum_j perm(digit_j) (b_j, a_j) over Q_l P;
 * mod_down_poly: out (+)= ModDown of one polynomial over Q_l P whose Q limbs
 * start at qin and P limbs at pin; rotation_key: the key for `step`, checked
 * for `level` (NULL for the identity). */
void bt_ks_decompose(bt_evaluator *ev, const uint64_t *c, int level);
void bt_ks_inner_product(bt_evaluator *ev, const bt_switch_key *k, int level, const uint32_t *perm);
void bt_ks_mod_down_poly(bt_evaluator *ev, int level, const uint64_t *qin, const uint64_t *pin, uint64_t *out,
                         int add);
bt_status bt_ks_rotation_key(const bt_evaluator *ev, int step, int level, const bt_switch_key **k);
#endif

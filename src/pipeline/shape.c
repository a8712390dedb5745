/* What a job needs, as pure functions of its parameters and shape: the
 * layout, the rotation steps its evaluation keys must cover, and the public
 * orders of rows and batches that both roles agree on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blindtuner/pipeline.h"

bt_status bt_job_layout(const bt_ckks_params *p, const bt_job_tag *tag, bt_hemat_layout *L, bt_softmax_approx *sa) {
  bt_status st = bt_hemat_layout_init(bt_ckks_logn(p) - 1, tag->batch, tag->features, tag->classes, L);
  if (st == BT_E_ARG && tag->batch > 1 &&
      bt_hemat_layout_init(bt_ckks_logn(p) - 1, 1, tag->features, tag->classes, L) == BT_OK) {
    /* the batch alone is too large: say how to train with larger steps */
    st = bt_hemat_layout_init(bt_ckks_logn(p) - 1, tag->batch, tag->features, tag->classes, L);
    char why[400];
    snprintf(why, sizeof why, "%s", bt_last_error());
    return bt_fail(st, "%s; for larger steps, train with --accumulate (Job accumulate=: several batches summed "
                   "into one update, docs/TRAINING.md)", why);
  }
  if (!st) bt_hemat_layout_fold(L, 1); /* the folded softmax wherever the shape allows it */
  if (!st && sa) st = bt_softmax_approx_init(tag->classes, NULL, sa);
  return st;
}

int bt_job_encaps_weight(const bt_ckks_params *p) {
  bt_bootstrap_config cfg;
  return bt_bootstrap_config_default(p, &cfg) ? 0 : cfg.encaps_hamming_weight;
}

bt_status bt_job_rotations(const bt_ckks_params *p, const bt_job_tag *tag, int *steps, int *levels, size_t cap,
                           size_t *count) {
  bt_hemat_layout L;
  *count = 0;
  bt_status st = bt_job_layout(p, tag, &L, NULL);
  return st ? st : bt_train_layout_rotations(p, &L, steps, levels, cap, count);
}

bt_status bt_job_check_keys(const bt_ckks_params *p, const bt_job_tag *tag, const bt_eval_keys *ek) {
  size_t n = 0;
  bt_status st = bt_job_rotations(p, tag, NULL, NULL, 0, &n);
  int *steps = st ? NULL : malloc(2 * (n ? n : 1) * sizeof *steps);
  if (!st && !steps) st = bt_fail(BT_E_NOMEM, "out of memory");
  if (!st) st = bt_job_rotations(p, tag, steps, steps + n, n, &n);
  const int top = bt_ckks_max_level(p);
  const bt_switch_key *k;
  if (!st && (!(k = bt_eval_keys_find(ek, 0)) || k->level < top))
    st = bt_fail(BT_E_KEY, "the evaluation keys lack a full relinearisation key");
  if (!st && (!(k = bt_eval_keys_find(ek, bt_ckks_galois_conjugate(p))) || k->level < top))
    st = bt_fail(BT_E_KEY, "the evaluation keys lack a full conjugation key");
  for (size_t i = 0; !st && i < n; i++) {
    const uint64_t gal = bt_ckks_galois_rotate(p, steps[i]);
    if (gal == 1) continue;
    if (!(k = bt_eval_keys_find(ek, gal)))
      st = bt_fail(BT_E_KEY, "the evaluation keys lack the rotation by %d this job needs (keys made before "
                   "library 0.5 take other rotations: run keygen again)", steps[i]);
    else if (k->level < steps[n + i])
      st = bt_fail(BT_E_KEY, "the rotation key for %d serves levels up to %d, this job uses it at %d (keys made "
                   "before library 0.5 take other levels: run keygen again)", steps[i], k->level, steps[n + i]);
  }
  free(steps);
  return st;
}

bt_status bt_pipeline_row_order(uint64_t seed, size_t n, int *perm) {
  if (n > (size_t)1 << 30) return bt_fail(BT_E_ARG, "%zu rows: at most 2^30", n);
  for (size_t i = 0; i < n; i++) perm[i] = (int)i;
  bt_prng g;
  uint8_t s[BT_SEED_BYTES] = {'r', 'o', 'w', 's'};
  memcpy(s + 8, &seed, sizeof seed);
  bt_prng_init(&g, s);
  for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
    const size_t j = (size_t)(bt_prng_u64(&g) % (uint64_t)i);
    const int t = perm[i - 1];
    perm[i - 1] = perm[j], perm[j] = t;
  }
  bt_prng_wipe(&g);
  return BT_OK;
}

void bt_pipeline_batch_order(uint64_t seed, int epoch, int nbatches, int *order) {
  bt_prng g;
  uint8_t s[BT_SEED_BYTES] = {'o', 'r', 'd', 'e', 'r'};
  const uint64_t e64 = (uint64_t)epoch;
  memcpy(s + 8, &seed, 8);
  memcpy(s + 16, &e64, 8);
  bt_prng_init(&g, s);
  for (int k = 0; k < nbatches; k++) order[k] = k;
  for (int k = nbatches - 1; k > 0; k--) {
    const int j = (int)(bt_prng_u64(&g) % (uint64_t)(k + 1)), t = order[k];
    order[k] = order[j], order[j] = t;
  }
  bt_prng_wipe(&g);
}

int bt_pipeline_rank_order(uint64_t seed, int epoch, int nbatches, int rank, int ranks, int *order) {
  if (ranks < 1 || rank < 0 || rank >= ranks || nbatches < 0) return 0;
  const int n = rank < nbatches ? (nbatches - rank + ranks - 1) / ranks : 0;
  bt_pipeline_batch_order(seed, epoch, n, order);
  for (int i = 0; i < n; i++) order[i] = rank + order[i] * ranks;
  return n;
}

bt_status bt_pipeline_path(char *out, size_t cap, const char *dir, const char *name, int epoch) {
  const int n = epoch > 0 ? snprintf(out, cap, "%s/%s-%03d.bt", dir, name, epoch)
                          : snprintf(out, cap, "%s/%s.bt", dir, name);
  if (n < 0 || (size_t)n >= cap) return bt_fail(BT_E_ARG, "path %s/%s... is too long", dir, name);
  return BT_OK;
}

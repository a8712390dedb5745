/* Both roles of encrypted training set up in one process (demo, bench
 * train): the client's secret key and the evaluation keys it makes for the
 * server, and the server's objects built on those evaluation keys only. */
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli/cli.h"

void bt_cli_session_free(bt_cli_session *s) {
  if (!s) return;
  bt_trainer_free(s->trainer);
  bt_evaluator_free(s->ev);
  bt_eval_keys_free(s->ek);
  bt_bootstrapper_free(s->bs);
  bt_encaps_key_free(s->to_sparse);
  bt_switch_key_free(s->to_dense);
  bt_secret_key_free(s->sk);
  bt_prng_wipe(&s->g);
  memset(s, 0, sizeof *s);
}

bt_status bt_cli_training_keys(const bt_ckks_params *p, const bt_bootstrapper *bs, const bt_trainer *t,
                                int encaps_hw, bt_prng *g, bt_secret_key **sk, bt_eval_keys **ek,
                                bt_encaps_key **to_sparse, bt_switch_key **to_dense) {
  *sk = NULL, *ek = NULL, *to_sparse = NULL, *to_dense = NULL;
  int *steps = malloc((4096 + 512) * sizeof *steps);
  if (!steps) return bt_fail(BT_E_NOMEM, "out of memory");
  size_t ns = bt_bootstrap_steps(bs, steps);
  ns += bt_trainer_steps(t, steps + ns);
  bt_status st = bt_keygen_secret(p, g, sk);
  if (!st) st = bt_eval_keys_new(p, ek);
  if (!st) st = bt_keygen_eval(*sk, g, 1, steps, ns, 1, *ek);
  if (!st && encaps_hw) st = bt_keygen_encapsulation(*sk, encaps_hw, g, to_sparse, to_dense);
  free(steps);
  if (st) {
    bt_switch_key_free(*to_dense), bt_encaps_key_free(*to_sparse), bt_eval_keys_free(*ek), bt_secret_key_free(*sk);
    *sk = NULL, *ek = NULL, *to_sparse = NULL, *to_dense = NULL;
  }
  return st;
}

bt_status bt_cli_session_new(const bt_ckks_params *p, const bt_hemat_layout *L, const bt_softmax_approx *sa,
                             double lr, double momentum, bt_cli_session *s) {
  memset(s, 0, sizeof *s);
  const double t0 = bt_seconds();
  bt_bootstrap_config cfg;
  bt_prng_init_random(&s->g);
  /* server side: what bootstrapping and training need */
  bt_status st = bt_trainer_bootstrap_config(p, L, &cfg);
  if (!st) st = bt_bootstrapper_new(p, &cfg, bt_ckks_default_scale(p), &s->bs);
  if (!st) st = bt_trainer_new(p, L, sa, s->bs, lr, momentum, &s->trainer);
  /* client side: the secret key and the evaluation keys for those steps */
  if (!st)
    st = bt_cli_training_keys(p, s->bs, s->trainer, cfg.encaps_hamming_weight, &s->g, &s->sk, &s->ek, &s->to_sparse,
                              &s->to_dense);
  if (!st && s->to_sparse) st = bt_bootstrapper_set_encapsulation(s->bs, s->to_sparse, s->to_dense);
  /* the server's evaluator: evaluation keys only */
  if (!st) st = bt_evaluator_new(p, s->ek, &s->ev);
  s->setup_s = bt_seconds() - t0;
  if (st) bt_cli_session_free(s);
  return st;
}

json_object *bt_cli_json_number(double v) {
  if (v == (double)(int64_t)v && v > -9e15 && v < 9e15) return json_object_new_int64((int64_t)v);
  return json_object_new_double(v);
}

void bt_cli_json_add_numbers(json_object *o, const bt_cli_json_field *f, size_t n) {
  for (size_t i = 0; i < n; i++) json_object_object_add(o, f[i].key, bt_cli_json_number(f[i].value));
}

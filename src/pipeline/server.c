/* The server: a training job on the evaluation bundle and ciphertexts only
 * (include/blindtuner/pipeline.h).  Nothing here takes a secret key; the
 * one thing that comes back from the client is the early-stopping bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "pipeline/internal.h"

void bt_server_engine_clear(bt_server_engine *e) {
  if (!e) return;
  bt_trainer_free(e->trainer);
  bt_evaluator_free(e->ev);
  bt_bootstrapper_free(e->bs);
  memset(e, 0, sizeof *e);
}

bt_status bt_server_engine_init(const bt_ckks_params *p, const bt_hemat_layout *L, const bt_softmax_approx *sa,
                                const bt_eval_bundle *eb, double lr, double momentum, bt_server_engine *e) {
  memset(e, 0, sizeof *e);
  const double t0 = bt_seconds();
  bt_bootstrap_config cfg;
  bt_status st = bt_trainer_bootstrap_config(p, L, &cfg);
  if (!st && !!cfg.encaps_hamming_weight != !!eb->to_sparse)
    st = bt_fail(BT_E_FORMAT, "the evaluation bundle %s encapsulation keys, the parameters %s them",
                 eb->to_sparse ? "has" : "lacks", cfg.encaps_hamming_weight ? "need" : "do not use");
  if (!st) st = bt_bootstrapper_new(p, &cfg, bt_ckks_default_scale(p), &e->bs);
  if (!st && eb->to_sparse) st = bt_bootstrapper_set_encapsulation(e->bs, eb->to_sparse, eb->to_dense);
  if (!st) st = bt_trainer_new(p, L, sa, e->bs, lr, momentum, &e->trainer);
  if (!st) st = bt_evaluator_new(p, eb->ek, &e->ev);
  e->setup_s = bt_seconds() - t0;
  if (st) bt_server_engine_clear(e);
  return st;
}

void bt_job_options_init(bt_job_options *o) {
  *o = (bt_job_options){.epochs = 2, .lr = 0, .momentum = 0.9, .seed = 1, .accumulate = 1};
}

struct bt_job {
  const bt_ckks_params *p;
  const bt_eval_bundle *eb;
  const bt_enc_dataset *train, *val;
  bt_job_options o;
  bt_hemat_layout L;
  bt_softmax_approx sa;
  bt_server_engine en; /* built on the first epoch or inference */
  bt_checkpoint cp;    /* the state; cp.a the model A = V + iW */
  bt_ciphertext *loss, *lpart;
  bt_ciphertext *a0;   /* the model at the start of the running epoch (restored on failure) */
  int have_loss;       /* loss holds the last epoch's validation loss */
  int lr_rule;         /* the options left the learning rate to bt_lr_for_batch */
};

static bt_status check_set(const bt_job *j, const bt_enc_dataset *d, bt_set_role role, const char *what) {
  if (memcmp(&d->tag, &j->eb->tag, sizeof d->tag) != 0)
    return bt_fail(BT_E_PARAMS, "the %s was made for another key set or layout", what);
  const bt_collective *co = j->o.coll;
  const int ranks = co && co->ranks > 1 ? co->ranks : 0, rank = co ? co->rank : 0;
  if (d->share_ranks != ranks || (ranks && d->share_rank != rank))
    return bt_fail(BT_E_ARG, "the %s is %s share, the job is rank %d of %d", what,
                   d->share_ranks ? "another rank's" : "whole, not this rank's", rank, ranks ? ranks : 1);
  for (int k = 0; k < d->nbatches; k++)
    for (int x = 0; d->b[k].x && x < d->nx; x++)
      if (d->b[k].x[x]->params != j->p || (d->b[k].y && d->b[k].y->params != j->p))
        return bt_fail(BT_E_PARAMS, "the %s was decoded against other parameters than the job's", what);
  if (d->nx != j->L.nb) return bt_fail(BT_E_FORMAT, "the %s has %d feature blocks per batch, the layout %d", what, d->nx, j->L.nb);
  if (role && (d->role != role || !d->labelled))
    return bt_fail(BT_E_FORMAT, "the %s is a%s %s set, not a labelled %s set", what, d->labelled ? "" : "n unlabelled",
                   bt_set_role_name(d->role), bt_set_role_name(role));
  return BT_OK;
}

void bt_job_free(bt_job *j) {
  if (!j) return;
  bt_server_engine_clear(&j->en);
  bt_softmax_approx_free(&j->sa);
  bt_ciphertext_free(j->cp.a);
  bt_ciphertext_free(j->loss);
  bt_ciphertext_free(j->lpart);
  bt_ciphertext_free(j->a0);
  free(j);
}

bt_status bt_job_new(const bt_ckks_params *p, const bt_eval_bundle *eb, const bt_enc_dataset *train,
                     const bt_enc_dataset *val, const bt_job_options *o, bt_job **out) {
  *out = NULL;
  bt_job_options d;
  bt_job_options_init(&d);
  if (!o) o = &d;
  if (o->epochs < 0 || !(o->lr == 0 || (o->lr > 0 && o->lr < 1e6)) || !(o->momentum >= 0 && o->momentum < 1))
    return bt_fail(BT_E_ARG, "job: %d epochs, learning rate %g, momentum %g out of range", o->epochs, o->lr, o->momentum);
  if (!eb->ek || eb->ek->params != p) return bt_fail(BT_E_ARG, "job: the evaluation bundle is not of these parameters");
  if (o->accumulate < 0 || o->accumulate > BT_MAX_ACCUMULATE)
    return bt_fail(BT_E_ARG, "job: %d batches per step and rank (1 to %d)", o->accumulate, BT_MAX_ACCUMULATE);
  if (!(o->softmax_bound == 0 || (o->softmax_bound >= 1 && o->softmax_bound <= BT_MAX_SOFTMAX_BOUND)))
    return bt_fail(BT_E_ARG, "job: softmax range %g (1 to %d)", o->softmax_bound, BT_MAX_SOFTMAX_BOUND);
  const bt_collective *co = o->coll;
  if (co && (co->ranks < 1 || co->rank < 0 || co->rank >= co->ranks || !co->sum || !co->same))
    return bt_fail(BT_E_ARG, "job: rank %d of %d, or a collective operation missing", co->rank, co->ranks);
  bt_job *j = calloc(1, sizeof *j);
  if (!j) return bt_fail(BT_E_NOMEM, "out of memory");
  j->p = p, j->eb = eb, j->train = train, j->val = val, j->o = *o;
  if (!j->o.accumulate) j->o.accumulate = 1;
  bt_status st = bt_job_layout(p, &eb->tag, &j->L, NULL);
  const bt_softmax_config sc = {.bound = o->softmax_bound};
  if (!st) st = bt_softmax_approx_init(eb->tag.classes, &sc, &j->sa);
  j->lr_rule = o->lr == 0;
  if (!st && j->lr_rule) j->o.lr = bt_lr_for_batch((long)(co ? co->ranks : 1) * j->o.accumulate * j->L.batch);
  if (!st) st = bt_job_check_keys(p, &eb->tag, eb->ek); /* a key short of its level, named now, not mid-epoch */
  if (!st && train) st = check_set(j, train, BT_SET_TRAIN, "training set");
  if (!st && val) st = check_set(j, val, BT_SET_VAL, "validation set");
  if (!st) st = bt_ciphertext_new(p, &j->loss);
  if (!st) st = bt_ciphertext_new(p, &j->lpart);
  if (!st) st = bt_ciphertext_new(p, &j->cp.a);
  if (!st) st = bt_ciphertext_new(p, &j->a0);
  if (!st) {
    /* W_0 = V_0 = 0, known to everyone: a trivial encryption of zero */
    bt_ciphertext *a = j->cp.a;
    a->level = 4 < bt_ckks_max_level(p) ? 4 : bt_ckks_max_level(p);
    a->degree = 1;
    a->logslots = j->L.logslots;
    a->scale = bt_ckks_default_scale(p);
    for (int c = 0; c < 2; c++) memset(a->c[c], 0, (size_t)(a->level + 1) * bt_ckks_n(p) * sizeof(uint64_t));
    j->cp.tag = eb->tag;
    j->cp.lr = j->o.lr, j->cp.momentum = o->momentum, j->cp.seed = o->seed;
  }
  if (st) bt_job_free(j);
  else *out = j;
  return st;
}

bt_status bt_job_restore(bt_job *j, const bt_checkpoint *cp) {
  if (memcmp(&cp->tag, &j->eb->tag, sizeof cp->tag) != 0)
    return bt_fail(BT_E_PARAMS, "the checkpoint was made for another key set or layout");
  /* a rate left to the rule is the checkpoint's: the rule of another
   * number of ranks would change the rate half-way */
  if (j->lr_rule && !j->en.trainer && isfinite(cp->lr) && cp->lr > 0 && cp->lr < 1e6) j->o.lr = cp->lr;
  if (cp->lr != j->o.lr || cp->momentum != j->o.momentum || cp->seed != j->o.seed)
    return bt_fail(BT_E_ARG, "the checkpoint was made with learning rate %g, momentum %g, seed %llu; the job has %g, %g, %llu",
                   cp->lr, cp->momentum, (unsigned long long)cp->seed, j->o.lr, j->o.momentum,
                   (unsigned long long)j->o.seed);
  bt_ciphertext *a = j->cp.a;
  bt_status st = bt_ciphertext_copy(cp->a, a);
  if (st) return st;
  j->cp = *cp;
  j->cp.a = a;
  j->have_loss = 0;
  return BT_OK;
}

void bt_job_checkpoint(const bt_job *j, bt_checkpoint *cp) { *cp = j->cp; }

bt_job_state bt_job_state_of(const bt_job *j) {
  if (j->cp.stopped || j->cp.epochs_done >= j->o.epochs) return BT_JOB_DONE;
  if (j->val && j->cp.epochs_done > 0 && !j->cp.answered) return BT_JOB_WAIT;
  return BT_JOB_TRAIN;
}

int bt_job_epochs_done(const bt_job *j) { return j->cp.epochs_done; }
double bt_job_lr(const bt_job *j) { return j->o.lr; }

double bt_lr_for_batch(long global_rows) {
  return global_rows <= BT_LR_BASE_ROWS ? BT_LR_BASE : BT_LR_BASE * (double)global_rows / BT_LR_BASE_ROWS;
}
const bt_ckks_params *bt_job_params_of(const bt_job *j) { return j->p; }
const bt_job_tag *bt_job_tag_of(const bt_job *j) { return &j->eb->tag; }
int bt_job_has_validation(const bt_job *j) { return j->val != NULL; }
double bt_job_setup_seconds(const bt_job *j) { return j->en.setup_s; }

static bt_status engine(bt_job *j) {
  if (j->en.trainer) return BT_OK;
  return bt_server_engine_init(j->p, &j->L, &j->sa, j->eb, j->o.lr, j->o.momentum, &j->en);
}

/* Every rank must hold the same model after an epoch: the ring sums are
 * exact and bootstrapping deterministic on one build and CPU, so a
 * difference means a rank ran other code (docs/SCALING.md). */
static bt_status check_same_model(const bt_job *j, int epoch) {
  const bt_ciphertext *a = j->cp.a;
  const int32_t state[3] = {j->cp.epochs_done, j->cp.answered, j->cp.stopped};
  const size_t n = bt_ckks_n(j->p);
  crypto_generichash_state h;
  uint8_t d[32];
  const int32_t meta[3] = {a->level, a->degree, a->logslots};
  crypto_generichash_init(&h, NULL, 0, sizeof d);
  crypto_generichash_update(&h, (const unsigned char *)meta, sizeof meta);
  crypto_generichash_update(&h, (const unsigned char *)state, sizeof state);
  crypto_generichash_update(&h, (const unsigned char *)&a->scale, sizeof a->scale);
  for (int c = 0; c <= a->degree; c++)
    crypto_generichash_update(&h, (const unsigned char *)a->c[c], (size_t)(a->level + 1) * n * sizeof(uint64_t));
  crypto_generichash_final(&h, d, sizeof d);
  int same = 0;
  const bt_status st = j->o.coll->same(j->o.coll->user, d, &same);
  if (st) return st;
  if (!same)
    return epoch >= 0 ? bt_fail(BT_E_PARAMS, "the ranks' models differ after epoch %d: every rank must run the same build "
                                             "on the same kind of CPU", epoch)
                      : bt_fail(BT_E_PARAMS, "the ranks start from different states: the exchange directory must be "
                                             "the same (shared) directory for every rank");
  return BT_OK;
}

bt_status bt_job_check_ranks(const bt_job *j) {
  if (!j->o.coll) return BT_OK;
  return check_same_model(j, -1);
}

/* A failed or cancelled epoch leaves the job as it was before it. */
static bt_status rollback(bt_job *j, bt_status st) {
  j->have_loss = 0;
  if (bt_ciphertext_copy(j->a0, j->cp.a)) abort(); /* same parameters and sizes: cannot fail */
  return st;
}

bt_status bt_job_run_epoch(bt_job *j, bt_progress_fn progress, void *user, bt_job_epoch_report *rep) {
  memset(rep, 0, sizeof *rep);
  const bt_job_state s = bt_job_state_of(j);
  if (!j->train) return bt_fail(BT_E_ARG, "job: no training set");
  if (s == BT_JOB_DONE) return bt_fail(BT_E_ARG, "job: done, no epoch left to train");
  if (s == BT_JOB_WAIT) return bt_fail(BT_E_ARG, "job: waiting for the client's answer to epoch %d", j->cp.epochs_done);
  bt_status st = engine(j);
  if (!st) st = bt_ciphertext_copy(j->cp.a, j->a0);
  if (st) return st;
  const int e = j->cp.epochs_done;
  const bt_enc_dataset *tr = j->train;
  const bt_collective *co = j->o.coll;
  rep->epoch = e + 1;
  double t = bt_seconds();
  /* a step's global batch: one batch of each of V = ranks x accumulate
   * virtual ranks (every rank's order is public: the global batch's rows
   * without a message); this rank trains virtual ranks rank + ranks * i */
  const int K = co ? co->ranks : 1, A = j->o.accumulate, V = K * A, me = co ? co->rank : 0;
  const int steps = (tr->nbatches + V - 1) / V;
  int *ord = malloc((size_t)V * (size_t)(steps + 1) * sizeof *ord), *cnt = calloc((size_t)V, sizeof *cnt);
  const bt_ciphertext *const **xs = malloc((size_t)A * sizeof *xs);
  const bt_ciphertext **ys = malloc((size_t)A * sizeof *ys);
  int *rows = malloc((size_t)A * sizeof *rows);
  if (!ord || !cnt || !xs || !ys || !rows) st = bt_fail(BT_E_NOMEM, "out of memory");
  for (int v = 0; v < V && !st; v++) cnt[v] = bt_pipeline_rank_order(j->o.seed, e, tr->nbatches, v, V, ord + (size_t)v * (steps + 1));
  for (int step = 0; step < steps && !st; step++) {
    int total = 0, n = 0;
    for (int v = 0; v < V; v++) {
      const int k = step < cnt[v] ? ord[(size_t)v * (steps + 1) + step] : -1;
      if (k < 0) continue;
      total += tr->b[k].rows;
      if (v % K == me) {
        xs[n] = (const bt_ciphertext *const *)tr->b[k].x;
        ys[n] = tr->b[k].y;
        rows[n++] = tr->b[k].rows;
      }
    }
    st = bt_trainer_step_many(j->en.trainer, j->en.ev, n, (bt_ciphertext *const *const *)xs, ys, rows, total,
                              co ? co->sum : NULL, co ? co->user : NULL, j->cp.a, &rep->stats);
    if (!st && progress && progress(user, "step", step + 1, steps)) st = bt_fail(BT_E_ARG, "cancelled");
  }
  free(ord), free(cnt), free(xs), free(ys), free(rows);
  if (st) return rollback(j, st);
  rep->steps = steps;
  rep->train_s = bt_seconds() - t;
  t = bt_seconds();
  j->have_loss = 0;
  int mine = 0; /* validation batches this rank computed */
  for (int k = 0; j->val && k < j->val->nbatches && !st; k++) {
    const bt_enc_batch *b = &j->val->b[k];
    if (b->x) { /* else another rank's; every rank still reports it, so a cancel can be collective */
      st = bt_trainer_loss(j->en.trainer, j->en.ev, b->x, b->y, b->rows, 1.0 / j->val->rows, j->cp.a,
                           mine ? j->lpart : j->loss, &rep->stats);
      if (!st && mine) st = bt_eval_add(j->en.ev, j->loss, j->lpart, j->loss);
      mine++;
    }
    if (!st && progress && progress(user, "validation batch", k + 1, j->val->nbatches)) st = bt_fail(BT_E_ARG, "cancelled");
  }
  if (!st && co && j->val) {
    /* a rank without a validation batch refreshes the model as the loss
     * would have, so that every rank's stays the same ciphertext */
    if (!mine) st = bt_trainer_refresh(j->en.trainer, j->en.ev, j->cp.a, &rep->stats);
    if (!st) st = co->sum(co->user, j->loss, mine > 0);
  }
  if (!st && co) st = check_same_model(j, e + 1);
  if (st) return rollback(j, st);
  j->have_loss = j->val != NULL;
  rep->validation_s = bt_seconds() - t;
  j->cp.epochs_done = e + 1;
  j->cp.answered = 0;
  j->cp.train_s += rep->train_s;
  j->cp.val_s += rep->validation_s;
  j->cp.steps += steps;
  j->cp.bootstraps += rep->stats.bootstraps;
  return BT_OK;
}

bt_status bt_job_model(const bt_job *j, bt_enc_epoch *out) {
  *out = (bt_enc_epoch){.tag = j->eb->tag, .epoch = j->cp.epochs_done, .ct = j->cp.a};
  return BT_OK;
}

bt_status bt_job_loss(const bt_job *j, bt_enc_epoch *out) {
  if (!j->have_loss) return bt_fail(BT_E_ARG, "job: no validation loss computed since the last epoch started");
  *out = (bt_enc_epoch){.tag = j->eb->tag, .epoch = j->cp.epochs_done, .ct = j->loss};
  return BT_OK;
}

bt_status bt_job_answer(bt_job *j, const bt_answer *a) {
  if (memcmp(&a->tag, &j->eb->tag, sizeof a->tag) != 0)
    return bt_fail(BT_E_PARAMS, "the answer was made for another key set or layout");
  if (bt_job_state_of(j) != BT_JOB_WAIT) return bt_fail(BT_E_ARG, "job: no answer is awaited");
  if (a->epoch != j->cp.epochs_done)
    return bt_fail(BT_E_FORMAT, "the answer is for epoch %d, the job waits for epoch %d", a->epoch, j->cp.epochs_done);
  j->cp.answered = 1;
  j->cp.stopped = !a->go_on;
  return BT_OK;
}

bt_status bt_job_infer(bt_job *j, const bt_enc_epoch *model, const bt_enc_dataset *d, bt_progress_fn progress,
                       void *user, bt_enc_logits *lg) {
  memset(lg, 0, sizeof *lg);
  bt_status st = check_set(j, d, 0, "dataset");
  if (!st && memcmp(&model->tag, &j->eb->tag, sizeof model->tag) != 0)
    st = bt_fail(BT_E_PARAMS, "the model was made for another key set or layout");
  if (!st) st = engine(j);
  if (st) return st;
  lg->tag = j->eb->tag;
  lg->rows = d->rows;
  lg->nbatches = d->nbatches;
  lg->z = calloc((size_t)d->nbatches, sizeof *lg->z);
  lg->batch_rows = calloc((size_t)d->nbatches, sizeof *lg->batch_rows);
  if (!lg->z || !lg->batch_rows) st = bt_fail(BT_E_NOMEM, "out of memory");
  bt_ciphertext *a = NULL; /* a copy: inference may bootstrap the model in place */
  if (!st) st = bt_ciphertext_new(j->p, &a);
  if (!st) st = bt_ciphertext_copy(model->ct, a);
  const bt_collective *co = j->o.coll;
  for (int k = 0; !st && k < d->nbatches; k++) {
    lg->batch_rows[k] = d->b[k].rows;
    st = bt_ciphertext_new(j->p, &lg->z[k]);
    if (!st && d->b[k].x) st = bt_trainer_logits(j->en.trainer, j->en.ev, d->b[k].x, a, lg->z[k], NULL);
    /* the owner's logits to every rank: a sum to which the others add nothing */
    if (!st && co) st = co->sum(co->user, lg->z[k], d->b[k].x != NULL);
    if (!st && progress && progress(user, "batch", k + 1, d->nbatches)) st = bt_fail(BT_E_ARG, "cancelled");
  }
  bt_ciphertext_free(a);
  if (st) bt_enc_logits_clear(lg);
  return st;
}

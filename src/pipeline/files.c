/* The pipeline's files: bundles of keys, encrypted datasets, models,
 * losses, answers, checkpoints, logits and the client's plaintext heads
 * (docs/FORMAT.md, section 5).
 *
 * Each is one container whose payload starts with the tag (key-set
 * identifier and training layout) and embeds the payloads of the basic
 * objects (serialize.c) as frames: a u64 length, then that object's payload
 * exactly as it would follow its own header.  Loading parses each frame
 * with the object's own parser, so every check of section 4 applies, and
 * the one checksum in the header covers the whole file.  Evaluation keys,
 * the largest object by far, come last in their bundle and stream through
 * the writer and reader like a plain EVAL_KEYS file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/internal.h"

#define MAX_BATCHES (1 << 20)
#define MAX_BLOCKS 4096

/* ---- building blocks ---- */

void bt_pl_put_tag(bt_io_writer *w, const bt_job_tag *t) {
  bt_io_put_bytes(w, t->keyset, BT_KEYSET_ID_BYTES);
  bt_io_put_u32(w, (uint32_t)t->batch);
  bt_io_put_u32(w, (uint32_t)t->features);
  bt_io_put_u32(w, (uint32_t)t->classes);
}

bt_status bt_pl_check_tag_fields(const bt_job_tag *t) {
  if (t->batch < 1 || t->batch > 65536 || t->features < 2 || t->features > (1 << 20) || t->classes < 2 ||
      t->classes > 4096)
    return bt_fail(BT_E_ARG, "layout %d x %d x %d out of range", t->batch, t->features, t->classes);
  return BT_OK;
}

static void get_tag(bt_io_reader *r, bt_job_tag *t) {
  bt_io_get_bytes(r, t->keyset, BT_KEYSET_ID_BYTES);
  t->batch = bt_io_get_int(r, 1, 65536, "rows per batch");
  t->features = bt_io_get_int(r, 2, 1 << 20, "features");
  t->classes = bt_io_get_int(r, 2, 4096, "classes");
}

/* The caller's expectation, after a successful load. */
static bt_status check_expect(const char *path, const bt_job_tag *got, const bt_job_tag *want) {
  if (!want) return BT_OK;
  if (memcmp(got->keyset, want->keyset, BT_KEYSET_ID_BYTES) != 0)
    return bt_io_fail(path, BT_E_PARAMS, "was made with the keys of another keygen (key-set ID differs)");
  if (got->batch != want->batch || got->features != want->features || got->classes != want->classes)
    return bt_io_fail(path, BT_E_PARAMS, "is for the layout %d rows x %d features x %d classes, the keys for %d x %d x %d",
                      got->batch, got->features, got->classes, want->batch, want->features, want->classes);
  return BT_OK;
}

#define obj_bytes bt_io_object_bytes
#define put_obj bt_io_put_object
#define get_obj bt_io_get_object
#define ct_bytes bt_io_ciphertext_bytes
#define put_ct bt_io_put_ciphertext
#define get_ct bt_io_get_ciphertext

static bt_status params_match(bt_io_reader *r, const bt_ckks_params *p) {
  if (memcmp(bt_ckks_params_hash(p), bt_io_reader_params_hash(r), BT_PARAMS_HASH_BYTES) != 0)
    return bt_io_reader_fail(r, BT_E_FORMAT, "the header's parameter hash does not match the parameters inside");
  return BT_OK;
}

/* Loads into a scratch struct and hands it over only on success. */
typedef struct bundle_load {
  bt_ckks_params *p;
  void *b;
} bundle_load;


/* ---- secret bundle: tag | PARAMS | SECRET_KEY ---- */
static bt_status sb_measure(const void *obj, uint64_t *payload) {
  const bt_secret_bundle *b = obj;
  uint64_t n = TAG_BYTES;
  bt_status st = bt_pl_check_tag_fields(&b->tag);
  if (!st) st = obj_bytes(&bt_io_params_codec, b->sk->params, &n);
  if (!st) st = obj_bytes(&bt_io_secret_key_codec, b->sk, &n);
  *payload = n;
  return st;
}

static bt_status sb_emit(bt_io_writer *w, const void *obj) {
  const bt_secret_bundle *b = obj;
  bt_pl_put_tag(w, &b->tag);
  put_obj(w, &bt_io_params_codec, b->sk->params);
  put_obj(w, &bt_io_secret_key_codec, b->sk);
  return bt_io_writer_status(w);
}

static bt_status sb_parse(bt_io_reader *r, const bt_ckks_params *unused, unsigned flags, void *out) {
  (void)unused;
  bundle_load *l = out;
  bt_secret_bundle *b = l->b;
  get_tag(r, &b->tag);
  if (get_obj(r, &bt_io_params_codec, NULL, flags, &l->p, "the parameters")) return bt_io_reader_status(r);
  if (params_match(r, l->p)) return bt_io_reader_status(r);
  return get_obj(r, &bt_io_secret_key_codec, l->p, 0, &b->sk, "the secret key");
}

static void sb_discard(void *out) {
  bundle_load *l = out;
  bt_secret_bundle_clear(l->b);
  bt_ckks_params_free(l->p);
  l->p = NULL;
}

static const bt_io_codec sb_codec = {BT_IO_SECRET_BUNDLE, 1, sb_measure, sb_emit, sb_parse, sb_discard};

void bt_secret_bundle_clear(bt_secret_bundle *b) {
  if (!b) return;
  bt_secret_key_free(b->sk);
  memset(b, 0, sizeof *b);
}

bt_status bt_pipeline_save_secret_bundle(const char *path, const bt_secret_bundle *b) {
  if (!b->sk) return bt_fail(BT_E_ARG, "%s: no secret key to save", path);
  return bt_io_save(&sb_codec, path, b, bt_ckks_params_hash(b->sk->params));
}

bt_status bt_pipeline_load_secret_bundle(const char *path, unsigned flags, bt_ckks_params **p, bt_secret_bundle *b) {
  memset(b, 0, sizeof *b);
  *p = NULL;
  bundle_load l = {NULL, b};
  bt_status st = bt_pipeline_finish_pair(path, NULL); /* an interrupted keygen (pairs.c) */
  if (!st) st = bt_io_load(&sb_codec, path, NULL, flags, &l);
  if (!st) *p = l.p;
  return st;
}

/* ---- evaluation bundle: tag | PARAMS | has_encaps u32 | [encaps | SWITCH_KEY] | EVAL_KEYS ---- */
static bt_status eb_measure(const void *obj, uint64_t *payload) {
  const bt_eval_bundle *b = obj;
  uint64_t n = TAG_BYTES + 4;
  bt_status st = bt_pl_check_tag_fields(&b->tag);
  if (!st && !b->to_sparse != !b->to_dense) st = bt_fail(BT_E_ARG, "encapsulation keys come in pairs");
  if (!st) st = obj_bytes(&bt_io_params_codec, b->ek->params, &n);
  if (!st && b->to_sparse) st = obj_bytes(&bt_io_encaps_key_codec, b->to_sparse, &n);
  if (!st && b->to_dense) st = obj_bytes(&bt_io_switch_key_codec, b->to_dense, &n);
  if (!st) st = obj_bytes(&bt_io_eval_keys_codec, b->ek, &n);
  *payload = n;
  return st;
}

static bt_status eb_emit(bt_io_writer *w, const void *obj) {
  const bt_eval_bundle *b = obj;
  bt_pl_put_tag(w, &b->tag);
  put_obj(w, &bt_io_params_codec, b->ek->params);
  bt_io_put_u32(w, b->to_sparse ? 1u : 0u);
  if (b->to_sparse) {
    put_obj(w, &bt_io_encaps_key_codec, b->to_sparse);
    put_obj(w, &bt_io_switch_key_codec, b->to_dense);
  }
  put_obj(w, &bt_io_eval_keys_codec, b->ek);
  return bt_io_writer_status(w);
}

static bt_status eb_parse(bt_io_reader *r, const bt_ckks_params *unused, unsigned flags, void *out) {
  (void)unused;
  bundle_load *l = out;
  bt_eval_bundle *b = l->b;
  get_tag(r, &b->tag);
  if (get_obj(r, &bt_io_params_codec, NULL, flags, &l->p, "the parameters")) return bt_io_reader_status(r);
  if (params_match(r, l->p)) return bt_io_reader_status(r);
  const int encaps = bt_io_get_int(r, 0, 1, "encapsulation flag");
  if (encaps && get_obj(r, &bt_io_encaps_key_codec, l->p, 0, &b->to_sparse, "the encapsulation key")) return bt_io_reader_status(r);
  /* the sparse secret's weight is the one the security argument is made for
   * (docs/SECURITY.md): a bundle with another one is refused */
  if (encaps && b->to_sparse->hamming_weight != bt_job_encaps_weight(l->p))
    return bt_io_reader_fail(r, BT_E_FORMAT, "the encapsulation key has Hamming weight %d, these parameters use %d",
                             b->to_sparse->hamming_weight, bt_job_encaps_weight(l->p));
  if (encaps && get_obj(r, &bt_io_switch_key_codec, l->p, 0, &b->to_dense, "the key back from encapsulation"))
    return bt_io_reader_status(r);
  return get_obj(r, &bt_io_eval_keys_codec, l->p, 0, &b->ek, "the evaluation keys");
}

static void eb_discard(void *out) {
  bundle_load *l = out;
  bt_eval_bundle_clear(l->b);
  bt_ckks_params_free(l->p);
  l->p = NULL;
}

static const bt_io_codec eb_codec = {BT_IO_EVAL_BUNDLE, 0, eb_measure, eb_emit, eb_parse, eb_discard};

void bt_eval_bundle_clear(bt_eval_bundle *b) {
  if (!b) return;
  bt_eval_keys_free(b->ek);
  bt_encaps_key_free(b->to_sparse);
  bt_switch_key_free(b->to_dense);
  memset(b, 0, sizeof *b);
}

bt_status bt_pipeline_save_eval_bundle(const char *path, const bt_eval_bundle *b) {
  if (!b->ek) return bt_fail(BT_E_ARG, "%s: no evaluation keys to save", path);
  return bt_io_save(&eb_codec, path, b, bt_ckks_params_hash(b->ek->params));
}

bt_status bt_pipeline_load_eval_bundle(const char *path, unsigned flags, bt_ckks_params **p, bt_eval_bundle *b) {
  memset(b, 0, sizeof *b);
  *p = NULL;
  bundle_load l = {NULL, b};
  bt_status st = bt_io_load(&eb_codec, path, NULL, flags, &l);
  if (!st) *p = l.p;
  return st;
}

/* ---- encrypted dataset: tag | role | rows | nx | nbatches | labelled
 *      | per batch: rows u32, nx CIPHERTEXT, [CIPHERTEXT y] ---- */
const char *bt_set_role_name(bt_set_role role) {
  switch (role) {
    case BT_SET_TRAIN: return "training";
    case BT_SET_VAL: return "validation";
    case BT_SET_TEST: return "test";
  }
  return "unknown";
}

void bt_enc_dataset_clear(bt_enc_dataset *d) {
  if (!d) return;
  for (int k = 0; d->b && k < d->nbatches; k++) {
    for (int j = 0; d->b[k].x && j < d->nx; j++) bt_ciphertext_free(d->b[k].x[j]);
    free(d->b[k].x);
    bt_ciphertext_free(d->b[k].y);
  }
  free(d->b);
  memset(d, 0, sizeof *d);
}

static bt_status ds_measure(const void *obj, uint64_t *payload) {
  const bt_enc_dataset *d = obj;
  uint64_t n = TAG_BYTES + 5 * 4;
  bt_status st = bt_pl_check_tag_fields(&d->tag);
  if (!st && d->share_ranks > 1) st = bt_fail(BT_E_ARG, "cannot save one rank's share of a dataset");
  if (!st && (d->nx < 1 || d->nx > MAX_BLOCKS || d->nbatches < 1 || d->nbatches > MAX_BATCHES))
    st = bt_fail(BT_E_ARG, "cannot save a dataset of %d batches of %d blocks", d->nbatches, d->nx);
  for (int k = 0; k < d->nbatches && !st; k++) {
    n += 4;
    for (int j = 0; j < d->nx && !st; j++) st = ct_bytes(d->b[k].x[j], &n);
    if (!st && d->labelled) st = ct_bytes(d->b[k].y, &n);
  }
  *payload = n;
  return st;
}

static bt_status ds_emit(bt_io_writer *w, const void *obj) {
  const bt_enc_dataset *d = obj;
  bt_pl_put_tag(w, &d->tag);
  bt_io_put_u32(w, (uint32_t)d->role);
  bt_io_put_u32(w, (uint32_t)d->rows);
  bt_io_put_u32(w, (uint32_t)d->nx);
  bt_io_put_u32(w, (uint32_t)d->nbatches);
  bt_io_put_u32(w, d->labelled ? 1u : 0u);
  for (int k = 0; k < d->nbatches && !bt_io_writer_status(w); k++) {
    bt_io_put_u32(w, (uint32_t)d->b[k].rows);
    for (int j = 0; j < d->nx; j++) put_ct(w, d->b[k].x[j]);
    if (d->labelled) put_ct(w, d->b[k].y);
  }
  return bt_io_writer_status(w);
}

static bt_status ds_parse(bt_io_reader *r, const bt_ckks_params *p, unsigned flags, void *out) {
  (void)flags;
  bt_enc_dataset *d = out;
  const int share = d->share_ranks > 1 ? d->share_ranks : 1, mine = d->share_rank; /* set by the caller */
  get_tag(r, &d->tag);
  d->role = (bt_set_role)bt_io_get_int(r, BT_SET_TRAIN, BT_SET_TEST, "dataset role");
  d->rows = bt_io_get_int(r, 1, 1 << 30, "rows");
  const int nx = bt_io_get_int(r, 1, MAX_BLOCKS, "blocks per batch");
  const int nb = bt_io_get_int(r, 1, MAX_BATCHES, "batches");
  d->labelled = bt_io_get_int(r, 0, 1, "labels flag");
  if (bt_io_reader_status(r)) return bt_io_reader_status(r);
  /* each batch holds at least (nx + labelled) framed ciphertexts of more
   * than 8 bytes: bound the count by the payload before allocating */
  if ((uint64_t)nb * (uint64_t)(nx + d->labelled) * 16 > bt_io_remaining(r))
    return bt_io_reader_fail(r, BT_E_FORMAT, "%d batches of %d ciphertexts cannot fit in %llu bytes", nb,
                             nx + d->labelled, (unsigned long long)bt_io_remaining(r));
  if (!(d->b = calloc((size_t)nb, sizeof *d->b))) return BT_E_NOMEM;
  d->nbatches = nb;
  d->nx = nx;
  long total = 0;
  for (int k = 0; k < nb && !bt_io_reader_status(r); k++) {
    bt_enc_batch *b = &d->b[k];
    b->rows = bt_io_get_int(r, 1, d->tag.batch, "rows of a batch");
    total += b->rows;
    if (k % share != mine) { /* another rank's: checked as it streams past, not kept */
      for (int j = 0; j < nx + d->labelled && !bt_io_reader_status(r); j++)
        bt_ciphertext_free(get_ct(r, p, j < nx ? "a feature block" : "a label block"));
      continue;
    }
    if (!(b->x = calloc((size_t)nx, sizeof *b->x))) return BT_E_NOMEM;
    for (int j = 0; j < nx && !bt_io_reader_status(r); j++) b->x[j] = get_ct(r, p, "a feature block");
    if (d->labelled && !bt_io_reader_status(r)) b->y = get_ct(r, p, "a label block");
  }
  if (!bt_io_reader_status(r) && total != d->rows)
    return bt_io_reader_fail(r, BT_E_FORMAT, "the batches hold %ld rows, the header says %d", total, d->rows);
  return bt_io_reader_status(r);
}

static void ds_discard(void *out) { bt_enc_dataset_clear(out); }

static const bt_io_codec ds_codec = {BT_IO_DATASET, 0, ds_measure, ds_emit, ds_parse, ds_discard};

static const uint8_t *hash_of(const bt_ciphertext *ct) { return bt_ckks_params_hash(ct->params); }

bt_status bt_pipeline_save_dataset(const char *path, const bt_enc_dataset *d) {
  if (d->share_ranks > 1) return bt_fail(BT_E_ARG, "%s: cannot save one rank's share of a dataset", path);
  if (!d->b || !d->b[0].x || !d->b[0].x[0]) return bt_fail(BT_E_ARG, "%s: empty dataset", path);
  return bt_io_save(&ds_codec, path, d, hash_of(d->b[0].x[0]));
}

bt_status bt_pipeline_load_dataset(const char *path, const bt_ckks_params *p, const bt_job_tag *expect, bt_enc_dataset *d) {
  return bt_pipeline_load_dataset_share(path, p, expect, 0, 1, d);
}

bt_status bt_pipeline_load_dataset_share(const char *path, const bt_ckks_params *p, const bt_job_tag *expect, int rank,
                                         int ranks, bt_enc_dataset *d) {
  memset(d, 0, sizeof *d);
  if (ranks < 1 || rank < 0 || rank >= ranks) return bt_fail(BT_E_ARG, "%s: rank %d of %d", path, rank, ranks);
  d->share_rank = rank, d->share_ranks = ranks > 1 ? ranks : 0;
  bt_status st = bt_io_load(&ds_codec, path, p, 0, d);
  if (!st && (st = check_expect(path, &d->tag, expect))) bt_enc_dataset_clear(d);
  if (st) memset(d, 0, sizeof *d);
  return st;
}

/* ---- model / loss: tag | epoch | CIPHERTEXT ---- */
static bt_status ep_measure(const void *obj, uint64_t *payload) {
  const bt_enc_epoch *e = obj;
  uint64_t n = TAG_BYTES + 4;
  bt_status st = bt_pl_check_tag_fields(&e->tag);
  if (!st) st = ct_bytes(e->ct, &n);
  *payload = n;
  return st;
}

static bt_status ep_emit(bt_io_writer *w, const void *obj) {
  const bt_enc_epoch *e = obj;
  bt_pl_put_tag(w, &e->tag);
  bt_io_put_u32(w, (uint32_t)e->epoch);
  put_ct(w, e->ct);
  return bt_io_writer_status(w);
}

static bt_status ep_parse(bt_io_reader *r, const bt_ckks_params *p, unsigned flags, void *out) {
  (void)flags;
  bt_enc_epoch *e = out;
  get_tag(r, &e->tag);
  e->epoch = bt_io_get_int(r, 0, 1 << 20, "epoch");
  if (!bt_io_reader_status(r)) e->ct = get_ct(r, p, "the ciphertext");
  return bt_io_reader_status(r);
}

static void ep_discard(void *out) {
  bt_enc_epoch *e = out;
  bt_ciphertext_free(e->ct);
  memset(e, 0, sizeof *e);
}

void bt_enc_epoch_clear(bt_enc_epoch *e) {
  if (e) ep_discard(e);
}

static const bt_io_codec model_codec = {BT_IO_MODEL, 0, ep_measure, ep_emit, ep_parse, ep_discard};
static const bt_io_codec loss_codec = {BT_IO_LOSS, 0, ep_measure, ep_emit, ep_parse, ep_discard};

bt_status bt_pipeline_save_epoch(const char *path, bt_io_kind kind, const bt_enc_epoch *e) {
  if (kind != BT_IO_MODEL && kind != BT_IO_LOSS) return bt_fail(BT_E_ARG, "%s: not an epoch kind", path);
  return bt_io_save(kind == BT_IO_MODEL ? &model_codec : &loss_codec, path, e, hash_of(e->ct));
}

bt_status bt_pipeline_load_epoch(const char *path, bt_io_kind kind, const bt_ckks_params *p, const bt_job_tag *expect,
                           bt_enc_epoch *e) {
  memset(e, 0, sizeof *e);
  if (kind != BT_IO_MODEL && kind != BT_IO_LOSS) return bt_fail(BT_E_ARG, "%s: not an epoch kind", path);
  bt_status st = bt_io_load(kind == BT_IO_MODEL ? &model_codec : &loss_codec, path, p, 0, e);
  if (!st && (st = check_expect(path, &e->tag, expect))) ep_discard(e);
  return st;
}

/* ---- checkpoint: tag | epochs_done | stopped | lr | momentum | seed
 *      | train_s | val_s | steps | bootstraps | CIPHERTEXT a ---- */
static bt_status cp_measure(const void *obj, uint64_t *payload) {
  const bt_checkpoint *c = obj;
  uint64_t n = TAG_BYTES + 2 * 4 + 7 * 8;
  bt_status st = bt_pl_check_tag_fields(&c->tag);
  if (!st) st = ct_bytes(c->a, &n);
  *payload = n;
  return st;
}

static bt_status cp_emit(bt_io_writer *w, const void *obj) {
  const bt_checkpoint *c = obj;
  bt_pl_put_tag(w, &c->tag);
  bt_io_put_u32(w, (uint32_t)c->epochs_done);
  bt_io_put_u32(w, c->stopped ? 1u : 0u);
  bt_io_put_f64(w, c->lr);
  bt_io_put_f64(w, c->momentum);
  bt_io_put_u64(w, c->seed);
  bt_io_put_f64(w, c->train_s);
  bt_io_put_f64(w, c->val_s);
  bt_io_put_u64(w, (uint64_t)c->steps);
  bt_io_put_u64(w, (uint64_t)c->bootstraps);
  put_ct(w, c->a);
  return bt_io_writer_status(w);
}

static bt_status cp_parse(bt_io_reader *r, const bt_ckks_params *p, unsigned flags, void *out) {
  (void)flags;
  bt_checkpoint *c = out;
  get_tag(r, &c->tag);
  c->epochs_done = bt_io_get_int(r, 0, 1 << 20, "epochs done");
  c->stopped = bt_io_get_int(r, 0, 1, "stopped flag");
  c->lr = bt_io_get_f64(r);
  c->momentum = bt_io_get_f64(r);
  c->seed = bt_io_get_u64(r);
  c->train_s = bt_io_get_f64(r);
  c->val_s = bt_io_get_f64(r);
  c->steps = (long)(bt_io_get_u64(r) & 0x7fffffffffffffffULL);
  c->bootstraps = (long)(bt_io_get_u64(r) & 0x7fffffffffffffffULL);
  if (!bt_io_reader_status(r) && !(isfinite(c->lr) && isfinite(c->momentum) && isfinite(c->train_s) && isfinite(c->val_s)))
    return bt_io_reader_fail(r, BT_E_FORMAT, "a number of the checkpoint is not finite");
  if (!bt_io_reader_status(r)) c->a = get_ct(r, p, "the model");
  return bt_io_reader_status(r);
}

static void cp_discard(void *out) {
  bt_checkpoint *c = out;
  bt_ciphertext_free(c->a);
  memset(c, 0, sizeof *c);
}

void bt_checkpoint_clear(bt_checkpoint *c) {
  if (c) cp_discard(c);
}

static const bt_io_codec cp_codec = {BT_IO_CHECKPOINT, 0, cp_measure, cp_emit, cp_parse, cp_discard};

bt_status bt_pipeline_save_checkpoint(const char *path, const bt_checkpoint *c) {
  return bt_io_save(&cp_codec, path, c, hash_of(c->a));
}

bt_status bt_pipeline_load_checkpoint(const char *path, const bt_ckks_params *p, const bt_job_tag *expect,
                                bt_checkpoint *c) {
  memset(c, 0, sizeof *c);
  bt_status st = bt_io_load(&cp_codec, path, p, 0, c);
  if (!st && (st = check_expect(path, &c->tag, expect))) cp_discard(c);
  return st;
}

/* ---- answer: tag | epoch | continue u32 ---- */
static bt_status an_measure(const void *obj, uint64_t *payload) {
  *payload = TAG_BYTES + 8;
  return bt_pl_check_tag_fields(&((const bt_answer *)obj)->tag);
}

static bt_status an_emit(bt_io_writer *w, const void *obj) {
  const bt_answer *a = obj;
  bt_pl_put_tag(w, &a->tag);
  bt_io_put_u32(w, (uint32_t)a->epoch);
  bt_io_put_u32(w, a->go_on ? 1u : 0u);
  return bt_io_writer_status(w);
}

static bt_status an_parse(bt_io_reader *r, const bt_ckks_params *p, unsigned flags, void *out) {
  (void)p, (void)flags;
  bt_answer *a = out;
  get_tag(r, &a->tag);
  a->epoch = bt_io_get_int(r, 1, 1 << 20, "epoch");
  a->go_on = bt_io_get_int(r, 0, 1, "answer");
  return bt_io_reader_status(r);
}

static void an_discard(void *out) { memset(out, 0, sizeof(bt_answer)); }

static const bt_io_codec an_codec = {BT_IO_ANSWER, 0, an_measure, an_emit, an_parse, an_discard};

bt_status bt_pipeline_save_answer(const char *path, const bt_ckks_params *p, const bt_answer *a) {
  return bt_io_save(&an_codec, path, a, bt_ckks_params_hash(p));
}

bt_status bt_pipeline_load_answer(const char *path, const bt_ckks_params *p, const bt_job_tag *expect, bt_answer *a) {
  memset(a, 0, sizeof *a);
  bt_status st = bt_io_load(&an_codec, path, p, 0, a);
  if (!st && (st = check_expect(path, &a->tag, expect))) an_discard(a);
  return st;
}

/* ---- logits: tag | rows | nbatches | per batch: rows u32, CIPHERTEXT ---- */
void bt_enc_logits_clear(bt_enc_logits *l) {
  if (!l) return;
  for (int k = 0; l->z && k < l->nbatches; k++) bt_ciphertext_free(l->z[k]);
  free(l->z);
  free(l->batch_rows);
  memset(l, 0, sizeof *l);
}

static bt_status lg_measure(const void *obj, uint64_t *payload) {
  const bt_enc_logits *l = obj;
  uint64_t n = TAG_BYTES + 8;
  bt_status st = bt_pl_check_tag_fields(&l->tag);
  if (!st && (l->nbatches < 1 || l->nbatches > MAX_BATCHES)) st = bt_fail(BT_E_ARG, "bad batch count");
  for (int k = 0; k < l->nbatches && !st; k++) {
    n += 4;
    st = ct_bytes(l->z[k], &n);
  }
  *payload = n;
  return st;
}

static bt_status lg_emit(bt_io_writer *w, const void *obj) {
  const bt_enc_logits *l = obj;
  bt_pl_put_tag(w, &l->tag);
  bt_io_put_u32(w, (uint32_t)l->rows);
  bt_io_put_u32(w, (uint32_t)l->nbatches);
  for (int k = 0; k < l->nbatches && !bt_io_writer_status(w); k++) {
    bt_io_put_u32(w, (uint32_t)l->batch_rows[k]);
    put_ct(w, l->z[k]);
  }
  return bt_io_writer_status(w);
}

static bt_status lg_parse(bt_io_reader *r, const bt_ckks_params *p, unsigned flags, void *out) {
  (void)flags;
  bt_enc_logits *l = out;
  get_tag(r, &l->tag);
  l->rows = bt_io_get_int(r, 1, 1 << 30, "rows");
  const int nb = bt_io_get_int(r, 1, MAX_BATCHES, "batches");
  if (bt_io_reader_status(r)) return bt_io_reader_status(r);
  if ((uint64_t)nb * 16 > bt_io_remaining(r))
    return bt_io_reader_fail(r, BT_E_FORMAT, "%d batches cannot fit in %llu bytes", nb,
                             (unsigned long long)bt_io_remaining(r));
  l->z = calloc((size_t)nb, sizeof *l->z);
  l->batch_rows = calloc((size_t)nb, sizeof *l->batch_rows);
  if (!l->z || !l->batch_rows) return BT_E_NOMEM;
  l->nbatches = nb;
  long total = 0;
  for (int k = 0; k < nb && !bt_io_reader_status(r); k++) {
    total += l->batch_rows[k] = bt_io_get_int(r, 1, l->tag.batch, "rows of a batch");
    if (!bt_io_reader_status(r)) l->z[k] = get_ct(r, p, "a logits block");
  }
  if (!bt_io_reader_status(r) && total != l->rows)
    return bt_io_reader_fail(r, BT_E_FORMAT, "the batches hold %ld rows, the header says %d", total, l->rows);
  return bt_io_reader_status(r);
}

static void lg_discard(void *out) { bt_enc_logits_clear(out); }

static const bt_io_codec lg_codec = {BT_IO_LOGITS, 0, lg_measure, lg_emit, lg_parse, lg_discard};

bt_status bt_pipeline_save_logits(const char *path, const bt_enc_logits *l) {
  if (!l->z || !l->z[0]) return bt_fail(BT_E_ARG, "%s: no logits", path);
  return bt_io_save(&lg_codec, path, l, hash_of(l->z[0]));
}

bt_status bt_pipeline_load_logits(const char *path, const bt_ckks_params *p, const bt_job_tag *expect, bt_enc_logits *l) {
  memset(l, 0, sizeof *l);
  bt_status st = bt_io_load(&lg_codec, path, p, 0, l);
  if (!st && (st = check_expect(path, &l->tag, expect))) bt_enc_logits_clear(l);
  return st;
}

/* ---- plaintext heads: tag | epoch | dim | classes | flags (1 weights,
 *      2 projection) | mean[dim] f64 | sd[dim] f64 | [proj[dim * dim] f64]
 *      | [w[classes * (dim + 1)] f64]; a projection only in a scaler ---- */
void bt_plain_head_clear(bt_plain_head *h) {
  if (!h) return;
  const size_t dim = h->dim > 0 ? (size_t)h->dim : 0, cls = h->classes > 0 ? (size_t)h->classes : 0;
  bt_free_secret(h->mean, dim * sizeof(double));
  bt_free_secret(h->sd, dim * sizeof(double));
  bt_free_secret(h->w, cls * (dim + 1) * sizeof(double));
  bt_free_secret(h->proj, dim * dim * sizeof(double));
  memset(h, 0, sizeof *h);
}

static bt_status hd_measure(const void *obj, uint64_t *payload) {
  const bt_plain_head *h = obj;
  bt_status st = bt_pl_check_tag_fields(&h->tag);
  if (!st && (h->dim < 1 || h->dim + 1 != h->tag.features || h->classes != h->tag.classes))
    st = bt_fail(BT_E_ARG, "cannot save a head of %d features and %d classes for the layout %d x %d", h->dim,
                 h->classes, h->tag.features, h->tag.classes);
  if (!st && h->w && h->proj) st = bt_fail(BT_E_ARG, "a model's projection is folded into its weights, not saved");
  *payload = TAG_BYTES + 16 + 16 * (uint64_t)h->dim + (h->w ? 8 * (uint64_t)h->classes * (uint64_t)(h->dim + 1) : 0) +
             (h->proj ? 8 * (uint64_t)h->dim * (uint64_t)h->dim : 0);
  return st;
}

static void put_f64s(bt_io_writer *w, const double *v, size_t n) {
  for (size_t i = 0; i < n && !bt_io_writer_status(w); i++) bt_io_put_f64(w, v[i]);
}

static bt_status hd_emit(bt_io_writer *w, const void *obj) {
  const bt_plain_head *h = obj;
  bt_pl_put_tag(w, &h->tag);
  bt_io_put_u32(w, (uint32_t)h->epoch);
  bt_io_put_u32(w, (uint32_t)h->dim);
  bt_io_put_u32(w, (uint32_t)h->classes);
  bt_io_put_u32(w, (h->w ? 1u : 0u) | (h->proj ? 2u : 0u));
  put_f64s(w, h->mean, (size_t)h->dim);
  put_f64s(w, h->sd, (size_t)h->dim);
  if (h->proj) put_f64s(w, h->proj, (size_t)h->dim * (size_t)h->dim);
  if (h->w) put_f64s(w, h->w, (size_t)h->classes * (size_t)(h->dim + 1));
  return bt_io_writer_status(w);
}

static double *get_f64s(bt_io_reader *r, size_t n, int positive, const char *what) {
  if (bt_io_reader_status(r)) return NULL;
  if (n * 8 > bt_io_remaining(r)) {
    bt_io_reader_fail(r, BT_E_FORMAT, "the payload ends inside %s", what);
    return NULL;
  }
  double *v = bt_alloc(n * sizeof *v);
  if (!v) {
    bt_io_reader_fail(r, BT_E_NOMEM, "out of memory reading %s", what);
    return NULL;
  }
  for (size_t i = 0; i < n && !bt_io_reader_status(r); i++) {
    v[i] = bt_io_get_f64(r);
    if (!bt_io_reader_status(r) && (!isfinite(v[i]) || (positive && !(v[i] > 0))))
      bt_io_reader_fail(r, BT_E_FORMAT, "%s value %zu is %g", what, i, v[i]);
  }
  return v;
}

static bt_status hd_parse_kind(bt_io_reader *r, void *out, int want_w) {
  bt_plain_head *h = out;
  get_tag(r, &h->tag);
  h->epoch = bt_io_get_int(r, 0, 1 << 20, "epoch");
  const int dim = bt_io_get_int(r, 1, (1 << 20) - 1, "feature dimension");
  const int classes = bt_io_get_int(r, 2, 4096, "classes");
  const int flags = bt_io_get_int(r, 0, 3, "flags");
  const int has_w = flags & 1, has_proj = flags >> 1;
  if (bt_io_reader_status(r)) return bt_io_reader_status(r);
  if (dim + 1 != h->tag.features || classes != h->tag.classes || has_w != want_w)
    return bt_io_reader_fail(r, BT_E_FORMAT, "head of %d features, %d classes%s does not match its tag", dim, classes,
                             has_w ? " with weights" : "");
  if (has_proj && (has_w || (uint64_t)dim * (uint64_t)dim * 8 > bt_io_remaining(r)))
    return bt_io_reader_fail(r, BT_E_FORMAT, has_w ? "a model with a projection (models hold it folded)"
                                                   : "the payload ends inside the projection");
  h->dim = dim;
  h->classes = classes;
  h->mean = get_f64s(r, (size_t)dim, 0, "the feature means");
  h->sd = get_f64s(r, (size_t)dim, 1, "the feature deviations");
  if (has_proj) h->proj = get_f64s(r, (size_t)dim * (size_t)dim, 0, "the projection");
  if (has_w) h->w = get_f64s(r, (size_t)classes * (size_t)(dim + 1), 0, "the weights");
  return bt_io_reader_status(r);
}

static bt_status hm_parse(bt_io_reader *r, const bt_ckks_params *p, unsigned flags, void *out) {
  (void)p, (void)flags;
  return hd_parse_kind(r, out, 1);
}

static bt_status sc_parse(bt_io_reader *r, const bt_ckks_params *p, unsigned flags, void *out) {
  (void)p, (void)flags;
  return hd_parse_kind(r, out, 0);
}

static void hd_discard(void *out) { bt_plain_head_clear(out); }

static const bt_io_codec hm_codec = {BT_IO_PLAIN_MODEL, 1, hd_measure, hd_emit, hm_parse, hd_discard};
static const bt_io_codec sc_codec = {BT_IO_SCALER, 1, hd_measure, hd_emit, sc_parse, hd_discard};

bt_status bt_pipeline_save_head(const char *path, bt_io_kind kind, const bt_ckks_params *p, const bt_plain_head *h) {
  static const uint8_t zero[BT_PARAMS_HASH_BYTES];
  if ((kind != BT_IO_PLAIN_MODEL && kind != BT_IO_SCALER) || (kind == BT_IO_PLAIN_MODEL) != !!h->w)
    return bt_fail(BT_E_ARG, "%s: a decrypted model has weights, a scaler none", path);
  return bt_io_save(kind == BT_IO_SCALER ? &sc_codec : &hm_codec, path, h, p ? bt_ckks_params_hash(p) : zero);
}

bt_status bt_pipeline_load_head(const char *path, bt_io_kind kind, const bt_ckks_params *p, const bt_job_tag *expect,
                          bt_plain_head *h) {
  memset(h, 0, sizeof *h);
  if (kind != BT_IO_PLAIN_MODEL && kind != BT_IO_SCALER) return bt_fail(BT_E_ARG, "%s: not a head kind", path);
  bt_status st = kind == BT_IO_SCALER ? bt_pipeline_finish_pair(path, NULL) : BT_OK; /* pairs.c */
  if (!st) st = bt_io_load(kind == BT_IO_SCALER ? &sc_codec : &hm_codec, path, p, 0, h);
  if (!st && (st = check_expect(path, &h->tag, expect))) bt_plain_head_clear(h);
  return st;
}

/* ---- validation in memory (fuzzing, tests) ---- */
bt_status bt_pipeline_validate_buffer(bt_io_kind kind, const uint8_t *buf, size_t len, const bt_ckks_params *p) {
  union {
    bt_secret_bundle sb;
    bt_eval_bundle eb;
    bt_enc_dataset d;
    bt_enc_epoch e;
    bt_checkpoint c;
    bt_answer a;
    bt_enc_logits l;
    bt_plain_head h;
  } u;
  memset(&u, 0, sizeof u);
  bundle_load bl = {NULL, &u};
  const bt_io_codec *c;
  void *out = &u;
  switch (kind) {
    case BT_IO_SECRET_BUNDLE: c = &sb_codec, out = &bl, p = NULL; break;
    case BT_IO_EVAL_BUNDLE: c = &eb_codec, out = &bl, p = NULL; break;
    case BT_IO_DATASET: c = &ds_codec; break;
    case BT_IO_MODEL: c = &model_codec; break;
    case BT_IO_LOSS: c = &loss_codec; break;
    case BT_IO_CHECKPOINT: c = &cp_codec; break;
    case BT_IO_ANSWER: c = &an_codec; break;
    case BT_IO_LOGITS: c = &lg_codec; break;
    case BT_IO_PLAIN_MODEL: c = &hm_codec; break;
    case BT_IO_SCALER: c = &sc_codec; break;
    default: return bt_fail(BT_E_ARG, "kind %d is not one of the pipeline's", (int)kind);
  }
  bt_status st = bt_io_decode(c, buf, len, p, BT_ALLOW_INSECURE, out);
  if (!st) c->discard(out);
  return st;
}

/* ---- memory buffers ---- */
static const bt_io_codec *codec_of(bt_io_kind kind) {
  switch (kind) {
    case BT_IO_SECRET_BUNDLE: return &sb_codec;
    case BT_IO_EVAL_BUNDLE: return &eb_codec;
    case BT_IO_DATASET: return &ds_codec;
    case BT_IO_MODEL: return &model_codec;
    case BT_IO_LOSS: return &loss_codec;
    case BT_IO_CHECKPOINT: return &cp_codec;
    case BT_IO_ANSWER: return &an_codec;
    case BT_IO_LOGITS: return &lg_codec;
    case BT_IO_PLAIN_MODEL: return &hm_codec;
    case BT_IO_SCALER: return &sc_codec;
    default: return NULL;
  }
}

const char *bt_pipeline_kind_name(bt_io_kind kind) { return bt_io_kind_name(kind); }

size_t bt_pipeline_sizeof(bt_io_kind kind) {
  switch (kind) {
    case BT_IO_SECRET_BUNDLE: return sizeof(bt_secret_bundle);
    case BT_IO_EVAL_BUNDLE: return sizeof(bt_eval_bundle);
    case BT_IO_DATASET: return sizeof(bt_enc_dataset);
    case BT_IO_MODEL:
    case BT_IO_LOSS: return sizeof(bt_enc_epoch);
    case BT_IO_CHECKPOINT: return sizeof(bt_checkpoint);
    case BT_IO_ANSWER: return sizeof(bt_answer);
    case BT_IO_LOGITS: return sizeof(bt_enc_logits);
    case BT_IO_PLAIN_MODEL:
    case BT_IO_SCALER: return sizeof(bt_plain_head);
    default: return 0;
  }
}

bt_status bt_pipeline_encode(bt_io_kind kind, const void *obj, const bt_ckks_params *params, uint8_t **buf,
                             size_t *len) {
  *buf = NULL;
  *len = 0;
  static const uint8_t zero[BT_PARAMS_HASH_BYTES];
  const bt_io_codec *c = codec_of(kind);
  const int head = kind == BT_IO_PLAIN_MODEL || kind == BT_IO_SCALER;
  if (!c || (!params && !head))
    return bt_fail(BT_E_ARG, "encode: kind %d is not one of the pipeline's, or no parameters", (int)kind);
  return bt_io_encode(c, obj, params ? bt_ckks_params_hash(params) : zero, buf, len);
}

static const bt_job_tag *tag_of(bt_io_kind kind, const void *out) {
  switch (kind) {
    case BT_IO_DATASET: return &((const bt_enc_dataset *)out)->tag;
    case BT_IO_MODEL:
    case BT_IO_LOSS: return &((const bt_enc_epoch *)out)->tag;
    case BT_IO_CHECKPOINT: return &((const bt_checkpoint *)out)->tag;
    case BT_IO_ANSWER: return &((const bt_answer *)out)->tag;
    case BT_IO_LOGITS: return &((const bt_enc_logits *)out)->tag;
    case BT_IO_PLAIN_MODEL:
    case BT_IO_SCALER: return &((const bt_plain_head *)out)->tag;
    default: return NULL;
  }
}

bt_status bt_pipeline_decode(bt_io_kind kind, const uint8_t *buf, size_t len, unsigned flags, bt_ckks_params **params,
                             const bt_job_tag *expect, void *out) {
  const bt_io_codec *c = codec_of(kind);
  if (!c) return bt_fail(BT_E_ARG, "decode: kind %d is not one of the pipeline's", (int)kind);
  memset(out, 0, bt_pipeline_sizeof(kind));
  if (kind == BT_IO_SECRET_BUNDLE || kind == BT_IO_EVAL_BUNDLE) {
    *params = NULL;
    bundle_load l = {NULL, out};
    bt_status st = bt_io_decode(c, buf, len, NULL, flags, &l);
    if (!st) *params = l.p;
    return st;
  }
  if (!params || (!*params && kind != BT_IO_PLAIN_MODEL && kind != BT_IO_SCALER))
    return bt_fail(BT_E_ARG, "decode: the parameters are needed for %s", bt_io_kind_name(kind));
  bt_status st = bt_io_decode(c, buf, len, *params, 0, out);
  if (!st && (st = check_expect(NULL, tag_of(kind, out), expect))) c->discard(out);
  return st;
}

/* What the pipeline layer's sources share; not part of its public API. */
#ifndef BT_PIPELINE_INTERNAL_H
#define BT_PIPELINE_INTERNAL_H

#include "blindtuner/pipeline.h"

/* Every pipeline payload starts with the tag: key-set ID, batch, features,
 * classes (docs/FORMAT.md, section 5). */
#define TAG_BYTES (BT_KEYSET_ID_BYTES + 3 * 4)

/* files.c's tag writer and check, for the other writers of pipeline kinds. */
void bt_pl_put_tag(bt_io_writer *w, const bt_job_tag *t);
bt_status bt_pl_check_tag_fields(const bt_job_tag *t);

/* A key set as a pair of files committed together (pairs.c): the secret
 * bundle of c, and the evaluation bundle that save_eval(path, ctx) writes. */
bt_status bt_pl_save_keyset(const bt_client *c, bt_status (*save_eval)(const char *path, void *ctx), void *ctx,
                            const char *secret, const char *eval);

/* An evaluation bundle written while its switching keys are made
 * (keystream.c): the keys of `plan` (0 first for relinearisation, as
 * bt_keygen_eval_plan orders them), each from its seed
 * (bt_keygen_switch_seeded), `threads` at a time into reused buffers, each
 * written as soon as it is made; the same bytes bt_pipeline_save_eval_bundle
 * writes for the bundle bt_keygen_eval would make from the same seeds. */
typedef struct bt_pl_key_stream {
  bt_job_tag tag;
  const bt_secret_key *sk;
  const uint64_t *plan;
  const int *levels; /* each key's level (bt_keygen_eval_plan) */
  const uint8_t (*seeds)[BT_SEED_BYTES];
  size_t nkeys;
  const bt_encaps_key *to_sparse; /* both NULL or both set */
  const bt_switch_key *to_dense;
  int threads;
  bt_progress_fn progress; /* "key", done, nkeys; may be NULL */
  void *user;
} bt_pl_key_stream;
bt_status bt_pl_save_eval_stream(const char *path, const bt_pl_key_stream *ks);

/* server.c's job, for the exchange directory's functions (workdir.c). */
const bt_ckks_params *bt_job_params_of(const bt_job *j);
const bt_job_tag *bt_job_tag_of(const bt_job *j);
int bt_job_has_validation(const bt_job *j);

/* A small JSON file (the client's decisions record, the server's
 * report.json): util's reader (a regular file only, refused without
 * blocking otherwise; at most BT_JSON_MAX bytes, refused before reading),
 * then parsed.  NULL with a message recorded on failure. */
#define BT_JSON_MAX ((uint64_t)16 << 20)
struct json_object;
struct json_object *bt_pl_json_read(const char *path);

#endif

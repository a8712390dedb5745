/* What the pipeline layer's sources share; not part of its public API. */
#ifndef BT_PIPELINE_INTERNAL_H
#define BT_PIPELINE_INTERNAL_H

#include "blindtuner/pipeline.h"

/* Every pipeline payload starts with the tag: key-set ID, batch, features,
 * classes (docs/FORMAT.md, section 5). */
#define TAG_BYTES (BT_KEYSET_ID_BYTES + 3 * 4)

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

/* What the pipeline layer's sources share; not part of its public API. */
#ifndef BT_PIPELINE_INTERNAL_H
#define BT_PIPELINE_INTERNAL_H

#include "blindtuner/pipeline.h"

/* Every pipeline payload starts with the tag: key-set ID, batch, features,
 * classes (docs/FORMAT.md, section 5). */
#define TAG_BYTES (BT_KEYSET_ID_BYTES + 3 * 4)

#endif

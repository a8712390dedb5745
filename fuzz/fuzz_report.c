/* libFuzzer target for the JSON records: the first byte picks 0 the
 * server's report.json (read back, amended and rewritten by
 * bt_report_record_epoch in a scratch directory, as each epoch does) or 1
 * the client's decisions record (bt_decisions_load, checked against the
 * seeds' tag).  Seeds: fuzz/corpus/fuzz_report. */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "blindtuner/pipeline.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char report_dir[64], report_json[128], report_svg[128];

static void remove_report_dir(void) {
  unlink(report_json);
  unlink(report_svg);
  rmdir(report_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const bt_job_tag tag = FUZZ_TAG;
  if (size < 1) return 0;
  if (data[0] % 2) {
    bt_decisions d;
    if (bt_decisions_load(fuzz_write_scratch(data + 1, size - 1), &tag, &d) == BT_OK) bt_decisions_clear(&d);
    return 0;
  }
  if (!report_dir[0]) {
    snprintf(report_dir, sizeof report_dir, "/tmp/bt-fuzz-report-XXXXXX");
    if (!mkdtemp(report_dir)) abort();
    snprintf(report_json, sizeof report_json, "%s/report.json", report_dir);
    snprintf(report_svg, sizeof report_svg, "%s/report.svg", report_dir);
    atexit(remove_report_dir);
  }
  /* the record is replaced on each call: write the input afresh */
  int fd = open(report_json, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) abort();
  for (size_t done = 1; done < size;) {
    ssize_t k = write(fd, data + done, size - done);
    if (k <= 0) abort();
    done += (size_t)k;
  }
  close(fd);
  bt_job_epoch_report r = {0};
  r.epoch = 2;
  r.steps = 5;
  r.train_s = 1;
  r.stats.matmul_s = 0.5;
  (void)bt_report_record_epoch(report_dir, &r);
  return 0;
}

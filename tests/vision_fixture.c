/* The vision tests' fixture: the data directory (tests/data/vision, or
 * BT_TEST_DATA) and a scratch directory made for the run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "vision_fixture.h"

static char data_dir[1024];
static char tmp_dir[256];

const char *data_path(const char *name) {
  static char buf[4][1400];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", data_dir, name);
  return buf[k];
}

const char *tmp_path(const char *name) {
  static char buf[4][400];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_dir, name);
  return buf[k];
}

void write_bytes(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

int vision_setup(void **state) {
  (void)state;
  const char *env = getenv("BT_TEST_DATA");
  if (env) {
    snprintf(data_dir, sizeof data_dir, "%s", env);
  } else {
    /* __FILE__ is the absolute path CMake compiles */
    snprintf(data_dir, sizeof data_dir, "%s", __FILE__);
    char *slash = strrchr(data_dir, '/');
    if (slash) *slash = '\0';
    else snprintf(data_dir, sizeof data_dir, ".");
    strncat(data_dir, "/data/vision", sizeof data_dir - strlen(data_dir) - 1);
  }
  const char *t = getenv("TMPDIR");
  snprintf(tmp_dir, sizeof tmp_dir, "%s/bt_test_vision_XXXXXX", t && *t ? t : "/tmp");
  if (!mkdtemp(tmp_dir)) return -1;
  return 0;
}

int vision_teardown(void **state) {
  (void)state;
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
  return system(cmd) == 0 ? 0 : -1;
}


#include <stdlib.h>
#include <time.h>

#include <omp.h>

#include "blindtuner/util.h"

int bt_default_threads(void) {
  const char *s = getenv("BT_THREADS");
  if (s && *s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end == '\0' && v >= 1 && v <= 1024) return (int)v;
  }
  return omp_get_max_threads();
}

double bt_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

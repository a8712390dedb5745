#include <stdarg.h>
#include <stdio.h>

#include "blindtuner/status.h"

static _Thread_local char last_msg[512];

const char *bt_status_name(bt_status s) {
  switch (s) {
  case BT_OK: return "BT_OK";
  case BT_E_NOMEM: return "BT_E_NOMEM";
  case BT_E_ARG: return "BT_E_ARG";
  case BT_E_PARAMS: return "BT_E_PARAMS";
  case BT_E_LEVEL: return "BT_E_LEVEL";
  case BT_E_SCALE: return "BT_E_SCALE";
  case BT_E_KEY: return "BT_E_KEY";
  case BT_E_FORMAT: return "BT_E_FORMAT";
  case BT_E_IO: return "BT_E_IO";
  case BT_E_INSECURE: return "BT_E_INSECURE";
  case BT_E_RANDOM: return "BT_E_RANDOM";
  case BT_E_UNSUPPORTED: return "BT_E_UNSUPPORTED";
  }
  return "BT_E_UNKNOWN";
}

const char *bt_last_error(void) { return last_msg; }

void bt_clear_error(void) { last_msg[0] = '\0'; }

bt_status bt_fail(bt_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_msg, sizeof last_msg, fmt, ap);
  va_end(ap);
  return s;
}

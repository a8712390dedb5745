/* Status codes shared by every layer.
 *
 * Bad data (files, user parameters, network bytes) returns a negative status
 * and records a human-readable message retrievable with bt_last_error();
 * a broken internal invariant is a programming error and asserts instead. */
#ifndef BLINDTUNER_STATUS_H
#define BLINDTUNER_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum bt_status {
  BT_OK = 0,
  BT_E_NOMEM = -1,   /* allocation failed */
  BT_E_ARG = -2,     /* invalid argument */
  BT_E_PARAMS = -3,  /* invalid or mismatched parameters */
  BT_E_LEVEL = -4,   /* not enough levels / level mismatch */
  BT_E_SCALE = -5,   /* scales cannot be matched */
  BT_E_KEY = -6,     /* a needed key is missing or does not fit */
  BT_E_FORMAT = -7,  /* malformed, truncated or corrupted input */
  BT_E_IO = -8,      /* operating-system I/O failure */
  BT_E_INSECURE = -9,/* INSECURE parameters used without permission */
  BT_E_RANDOM = -10, /* randomness source failed */
  BT_E_UNSUPPORTED = -11
} bt_status;

/* BT_API marks the functions libblindtuner.so exports; the libraries are
 * built with hidden visibility, so nothing else leaves the shared library. */
#if defined(__GNUC__)
#define BT_API __attribute__((visibility("default")))
#else
#define BT_API
#endif

#if defined(__GNUC__)
#define BT_MUST_CHECK __attribute__((warn_unused_result))
#define BT_NONNULL(...) __attribute__((nonnull(__VA_ARGS__)))
#define BT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BT_MUST_CHECK
#define BT_NONNULL(...)
#define BT_PRINTF(f, a)
#endif

/* Name of a status code ("BT_E_FORMAT"). */
BT_API const char *bt_status_name(bt_status s);

/* Message of the last error recorded on this thread, or "" if none. */
BT_API const char *bt_last_error(void);

/* Records a message for this thread and returns `s` (so callers can write
 * `return bt_fail(BT_E_LEVEL, "cannot rescale: level 0");`). */
BT_API bt_status bt_fail(bt_status s, const char *fmt, ...) BT_PRINTF(2, 3);

/* Forgets the last error message on this thread. */
BT_API void bt_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif

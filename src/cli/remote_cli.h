/* What the `blindtuner remote` subcommands share (remote.c: submit, status,
 * delete and the dispatch; remote_follow.c: decide, fetch, watch, infer). */
#ifndef BT_CLI_REMOTE_H
#define BT_CLI_REMOTE_H

#include <stdio.h>

#include "blindtuner/remote.h"
#include "cli.h"

#define COMMON_HELP                                                                        \
  "  --job FILE       the job file (default job.json; mode 0600: it holds the job's token)\n" \
  "  --ca FILE        CA bundle (PEM) that authenticates an https server (default: the\n"     \
  "                   one the job file names, else the system's)\n"

/* Sleeps s seconds. */
void bt_cli_rm_nap(double s);
/* The job file's job (--ca, when given, replaces its CA); 1 after a message. */
int bt_cli_rm_open_job(const char *who, const char *job, const char *ca, bt_remote **r);
/* The client's exchange directory, made when missing (the parent must
 * exist); 1 after a message.  NULL: nothing to do. */
int bt_cli_rm_ensure_dir(const char *who, const char *dir);
/* One line for a job's state; with times 0, without the clock (elapsed,
 * ETA): what changes only when something happens, for plain-line logs. */
void bt_cli_rm_describe(const bt_remote_info *s, char *out, size_t cap, int times);

int bt_cli_remote_decide(int argc, char **argv);
int bt_cli_remote_fetch(int argc, char **argv);
int bt_cli_remote_watch(int argc, char **argv);
int bt_cli_remote_infer(int argc, char **argv);

#endif

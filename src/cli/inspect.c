/* `blindtuner inspect`: what a file holds, from its header and the first
 * fields of its payload (never key material), with the checksum verified. */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"

static void help(void) {
  printf("usage: blindtuner inspect [--json] FILE...\n"
         "\n"
         "Prints what each container file holds: its kind, format version, size, parameter\n"
         "hash and, for the pipeline's files, the key-set ID and layout, the dataset's role,\n"
         "rows and batches, or the epoch; for an evaluation bundle, its keys by the highest\n"
         "level each serves and their sizes.  The whole file is read and its checksum verified;\n"
         "no key or value is ever printed.  Exit status 1 if any file is not a valid container.\n");
}

static double mb(uint64_t b) { return (double)b / 1e6; }

/* An evaluation bundle's keys: relinearisation, conjugation, rotations by
 * level, the encapsulation pair. */
static void print_keys(const bt_pipeline_summary *s) {
  int n = 0;
  uint64_t total = s->relin_bytes + s->conj_bytes + s->encaps_bytes;
  for (int g = 0; g < s->ngroups; g++) n += s->groups[g].count, total += s->groups[g].bytes;
  printf("  keys: %d rotation%s, %s relinearisation, %s conjugation%s; %.1f MB\n", n, n == 1 ? "" : "s",
         s->relin_level >= 0 ? "a" : "no", s->conj_level >= 0 ? "a" : "no",
         s->encaps ? ", the encapsulation pair" : "", mb(total));
  if (s->relin_level >= 0)
    printf("    relinearisation   level %2d%s %10.1f MB\n", s->relin_level, s->relin_level == s->max_level ? " (full)" : "       ",
           mb(s->relin_bytes));
  if (s->conj_level >= 0)
    printf("    conjugation       level %2d%s %10.1f MB\n", s->conj_level, s->conj_level == s->max_level ? " (full)" : "       ",
           mb(s->conj_bytes));
  for (int g = 0; g < s->ngroups; g++)
    printf("    %3d rotation%s     level %2d%s %10.1f MB\n", s->groups[g].count, s->groups[g].count == 1 ? " " : "s",
           s->groups[g].level, s->groups[g].level == s->max_level ? " (full)" : "       ", mb(s->groups[g].bytes));
  if (s->encaps) printf("    encapsulation pair                %10.1f MB\n", mb(s->encaps_bytes));
}

static json_object *keys_json(const bt_pipeline_summary *s) {
  json_object *o = json_object_new_object(), *g = json_object_new_array();
  const bt_cli_json_field f[] = {{"max_level", s->max_level},
                                 {"relin_level", s->relin_level},
                                 {"relin_bytes", (double)s->relin_bytes},
                                 {"conj_level", s->conj_level},
                                 {"conj_bytes", (double)s->conj_bytes},
                                 {"encaps_bytes", (double)s->encaps_bytes}};
  bt_cli_json_add_numbers(o, f, 6);
  for (int k = 0; k < s->ngroups; k++) {
    json_object *e = json_object_new_object();
    const bt_cli_json_field t[] = {{"level", s->groups[k].level}, {"count", s->groups[k].count},
                                   {"bytes", (double)s->groups[k].bytes}};
    bt_cli_json_add_numbers(e, t, 3);
    json_object_array_add(g, e);
  }
  json_object_object_add(o, "rotations", g);
  return o;
}

int bt_cli_inspect(int argc, char **argv) {
  int json = 0, files = 0, bad = 0;
  json_object *arr = json_object_new_array();
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      help();
      json_object_put(arr);
      return 0;
    }
    if (!strcmp(argv[i], "--json")) {
      json = 1;
      continue;
    }
    if (argv[i][0] == '-' && argv[i][1]) {
      fprintf(stderr, "blindtuner inspect: unknown option '%s' (see --help)\n", argv[i]);
      json_object_put(arr);
      return 2;
    }
  }
  for (int i = 1; i < argc; i++) {
    if (argv[i][0] == '-' && argv[i][1]) continue;
    files++;
    bt_pipeline_summary s;
    if (bt_pipeline_summarize(argv[i], &s) != BT_OK) {
      fprintf(stderr, "blindtuner inspect: %s\n", bt_last_error());
      bad = 1;
      continue;
    }
    char hash[17], id[2 * BT_KEYSET_ID_BYTES + 1] = "";
    for (int k = 0; k < 8; k++) sprintf(hash + 2 * k, "%02x", s.info.params_hash[k]);
    for (int k = 0; s.has_tag && k < BT_KEYSET_ID_BYTES; k++) sprintf(id + 2 * k, "%02x", s.tag.keyset[k]);
    const char *kind = bt_io_kind_name(s.info.kind);
    if (json) {
      json_object *o = json_object_new_object();
      json_object_object_add(o, "file", json_object_new_string(argv[i]));
      json_object_object_add(o, "kind", json_object_new_string(kind));
      json_object_object_add(o, "params_hash", json_object_new_string(hash));
      const bt_cli_json_field f[] = {{"version", s.info.version}, {"payload_bytes", (double)s.info.payload_bytes}};
      bt_cli_json_add_numbers(o, f, 2);
      if (s.params_name[0]) json_object_object_add(o, "preset", json_object_new_string(s.params_name));
      if (s.logn >= 0) json_object_object_add(o, "logn", json_object_new_int(s.logn));
      if (s.has_tag) {
        json_object_object_add(o, "keyset", json_object_new_string(id));
        const bt_cli_json_field t[] = {{"batch", s.tag.batch}, {"features", s.tag.features}, {"classes", s.tag.classes}};
        bt_cli_json_add_numbers(o, t, 3);
      }
      if (s.role >= 0) json_object_object_add(o, "role", json_object_new_string(bt_set_role_name((bt_set_role)s.role)));
      if (s.rows >= 0) json_object_object_add(o, "rows", json_object_new_int(s.rows));
      if (s.batches >= 0) json_object_object_add(o, "batches", json_object_new_int(s.batches));
      if (s.epoch >= 0) json_object_object_add(o, "epoch", json_object_new_int(s.epoch));
      if (s.info.kind == BT_IO_EVAL_BUNDLE) json_object_object_add(o, "keys", keys_json(&s));
      json_object_array_add(arr, o);
      continue;
    }
    printf("%s: %s, format version %d, %llu payload bytes, parameter hash %s...\n", argv[i], kind, s.info.version,
           (unsigned long long)s.info.payload_bytes, hash);
    if (s.params_name[0] || s.logn >= 0) printf("  parameters %s, N = 2^%d\n", s.params_name[0] ? s.params_name : "(unnamed)", s.logn);
    if (s.has_tag)
      printf("  key set %s, layout %d rows x %d features x %d classes\n", id, s.tag.batch, s.tag.features, s.tag.classes);
    if (s.role >= 0)
      printf("  %s set: %d rows in %d batch%s%s\n", bt_set_role_name((bt_set_role)s.role), s.rows, s.batches,
             s.batches == 1 ? "" : "es", s.flag ? ", with labels" : ", no labels");
    if (s.info.kind == BT_IO_LOGITS) printf("  %d rows in %d batch%s\n", s.rows, s.batches, s.batches == 1 ? "" : "es");
    if (s.info.kind == BT_IO_CHECKPOINT)
      printf("  after epoch %d%s\n", s.epoch, s.flag ? ", stopped by the client" : "");
    else if (s.info.kind == BT_IO_ANSWER)
      printf("  epoch %d: %s\n", s.epoch, s.flag ? "continue" : "stop");
    else if (s.epoch >= 0)
      printf("  epoch %d\n", s.epoch);
    if (s.info.kind == BT_IO_EVAL_BUNDLE) print_keys(&s);
  }
  if (json) printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY));
  json_object_put(arr);
  if (!files) {
    fprintf(stderr, "blindtuner inspect: no file given (see --help)\n");
    return 2;
  }
  return bad;
}

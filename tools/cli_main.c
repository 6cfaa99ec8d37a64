/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shmbus: a command line tool over the public API (docs/shmbus.1).
 *   shmbus list    the domain's services and nodes
 *   shmbus info    a service's ports and connections (--watch)
 *   shmbus echo    print a service's samples
 *   shmbus hz      a service's publish rate
 *   shmbus pub     publish bytes from stdin or a file
 *   shmbus record  record services into a file
 *   shmbus replay  publish a recording again
 *   shmbus nodes   the domain's nodes
 *   shmbus cleanup remove what dead nodes left
 * Options of every command: --domain D (default $SHMBUS_DOMAIN, else
 * "default"), --dir ROOT (the directory backend), --json, --help.
 * Errors go to stderr: exit status 1 for a failure, 2 for a usage error.
 */
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#endif

#include "cli.h"

/* ---- the commands ---------------------------------------------------------- */

static const command commands[] = {
    {"list", "", "the domain's services and nodes",
     "Lists the services of the domain (name, type, limits, overflow policy, ports)\n"
     "and its nodes (alive or dead). Reads only: creates and changes nothing.\n",
     0, ARGS_NONE, cmd_list},
    {"info", "[--watch] SERVICE", "a service's ports and connections",
     "Shows one service: its configuration and memory, its publishers (samples\n"
     "published, loans out) and subscribers with their nodes (alive or dead), and\n"
     "per connection the samples published, delivered, lost, queued and held now.\n"
     "Reads only.\n"
     "  --watch      show it again every second (with --json: one line each)\n",
     OPT_WATCH, ARGS_SERVICE, cmd_info},
    {"echo", "[--count N] [--format FIELDS] [--duration S] SERVICE", "print a service's samples",
     "Subscribes to SERVICE and prints each sample: its publisher, sequence number,\n"
     "timestamp and size, then the payload as a hex dump, or as fields. Waits for\n"
     "the service to appear unless --type is given (which creates it if missing).\n"
     "  --count N         stop after N samples (-n N)\n"
     "  --format FIELDS   the payload as fields, e.g. 'u64 f32[3]': i8 u8 i16 u16 i32\n"
     "                    u32 i64 u64 f32 f64, each optionally [N], little-endian,\n"
     "                    in order without padding, repeated over the payload\n"
     "  --duration S      stop after S seconds\n"
     "  --timeout S       give up after S seconds without the service\n"
     "  --type NAME:SIZE[:ALIGN]  the element type, to open the service before it exists\n"
     "  --elements N      elements per sample with --type (default 1)\n"
     "  --json            one JSON object per sample and line (payload in hex)\n",
     OPT_COUNT | OPT_FORMAT | OPT_DURATION | OPT_TIMEOUT | OPT_TYPE | OPT_ELEMENTS, ARGS_SERVICE,
     cmd_echo},
    {"hz", "[--window N] [--count N] [--duration S] SERVICE", "a service's publish rate",
     "Subscribes to SERVICE and reports every second, over the last N samples\n"
     "(their publish timestamps): the rate, the interval's mean, min, max and\n"
     "standard deviation, the bandwidth, and samples lost.\n"
     "  --window N        samples per report (default 10000)\n"
     "  --count N         stop after N samples (-n N)\n"
     "  --duration S      stop after S seconds\n"
     "  --timeout S       give up after S seconds without the service\n"
     "  --json            one JSON object per report and line\n",
     OPT_WINDOW | OPT_COUNT | OPT_DURATION | OPT_TIMEOUT, ARGS_SERVICE, cmd_hz},
    {"pub", "[--file F] [--count N] [--rate HZ] SERVICE", "publish bytes from stdin or a file",
     "Publishes the bytes of FILE (default: standard input), as one sample, N times.\n"
     "Opens the service with its own type, or creates it with --type.\n"
     "  --file F          read the payload from F (default: standard input)\n"
     "  --count N         publish N samples (default 1) (-n N)\n"
     "  --rate HZ         publish HZ samples a second (default: as fast as possible)\n"
     "  --wait-subscribers N  first wait until N subscribers are connected\n"
     "  --timeout S       give up waiting for subscribers after S seconds\n"
     "  --type NAME:SIZE[:ALIGN]  the element type, to create the service\n"
     "  --elements N      elements per sample with --type (default: what the input needs)\n"
     "  --quiet           no progress line (-q)\n"
     "  --json            print what was published as JSON\n",
     OPT_INPUT | OPT_COUNT | OPT_RATE | OPT_SUBSCRIBERS | OPT_TIMEOUT | OPT_TYPE | OPT_ELEMENTS |
         OPT_QUIET,
     ARGS_SERVICE, cmd_pub},
    {"record", "-o FILE [--count N] [--duration S] SERVICE...", "record services into a file",
     "Subscribes to each SERVICE (waiting for it to appear) and writes every sample\n"
     "(payload, publisher, sequence number, publish timestamp) with each service's\n"
     "type and limits into FILE (docs/record-format.md), as the samples arrive,\n"
     "until --count, --duration or Ctrl-C; then a footer with the counts. A\n"
     "recording cut off by a crash is still readable up to its last whole sample.\n"
     "Prints a summary (samples, bytes, lost) on stderr.\n"
     "  --output FILE     the recording (-o FILE); '-' is standard output\n"
     "  --count N         stop after N samples in all, those lost included (so that\n"
     "                    the N samples of a publisher end the recording)\n"
     "  --duration S      stop after S seconds\n"
     "  --timeout S       give up after S seconds without a service\n"
     "  --quiet           no progress line and no summary (-q)\n"
     "  --json            print the summary as JSON on stdout\n",
     OPT_OUTPUT | OPT_COUNT | OPT_DURATION | OPT_TIMEOUT | OPT_QUIET, ARGS_SERVICES, cmd_record},
    {"replay", "[--rate HZ] [--count N] FILE", "publish a recording again",
     "Publishes the samples of a recording (FILE, or '-' for standard input) on\n"
     "their services, in the recorded order and with the recorded timing (or at\n"
     "--rate), one publisher per service. A missing service is created with the\n"
     "recorded type and limits; an existing one must have the recorded type (its\n"
     "own limits are used). The samples get new sequence numbers and timestamps.\n"
     "A damaged or cut off file is replayed up to the damage, then reported\n"
     "(exit status 1).\n"
     "  --rate HZ         HZ samples a second instead of the recorded timing\n"
     "  --count N         stop after N samples\n"
     "  --wait-subscribers N  first wait until each service has N subscribers\n"
     "  --timeout S       give up after S seconds waiting for subscribers, or for\n"
     "                    room at a full subscriber of a BLOCK service\n"
     "  --quiet           no progress line and no summary (-q)\n"
     "  --json            print the summary as JSON on stdout\n",
     OPT_RATE | OPT_COUNT | OPT_SUBSCRIBERS | OPT_TIMEOUT | OPT_QUIET, ARGS_FILE, cmd_replay},
    {"nodes", "", "the domain's nodes",
     "Lists the nodes of the domain and whether they are alive. Reads only.\n", 0, ARGS_NONE,
     cmd_nodes},
    {"cleanup", "", "remove what dead nodes left",
     "Removes what dead nodes of the domain left behind: their liveness tokens,\n"
     "their ports' slots, dead publishers' segments, services nobody uses.\n",
     0, ARGS_NONE, cmd_cleanup},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* ---- options ------------------------------------------------------------------- */

enum { KIND_FLAG, KIND_U64, KIND_SECONDS, KIND_STRING };

typedef struct option {
  const char *name, *alias;
  unsigned flag; /* OPT_*, 0 for the common ones */
  int kind;
  size_t offset; /* in cli_opts */
} option;

#define AT(field) offsetof(cli_opts, field)
static const option options[] = {
    {"--json", NULL, 0, KIND_FLAG, AT(json)},
    {"--watch", NULL, OPT_WATCH, KIND_FLAG, AT(watch)},
    {"--quiet", "-q", OPT_QUIET, KIND_FLAG, AT(quiet)},
    {"--count", "-n", OPT_COUNT, KIND_U64, AT(count)},
    {"--rate", NULL, OPT_RATE, KIND_SECONDS, AT(rate)},
    {"--duration", NULL, OPT_DURATION, KIND_SECONDS, AT(duration)},
    {"--timeout", NULL, OPT_TIMEOUT, KIND_SECONDS, AT(timeout)},
    {"--window", NULL, OPT_WINDOW, KIND_U64, AT(window)},
    {"--format", NULL, OPT_FORMAT, KIND_STRING, AT(format)},
    {"--type", NULL, OPT_TYPE, KIND_STRING, AT(type)},
    {"--elements", NULL, OPT_ELEMENTS, KIND_U64, AT(elements)},
    {"--file", NULL, OPT_INPUT, KIND_STRING, AT(input)},
    {"--output", "-o", OPT_OUTPUT, KIND_STRING, AT(output)},
    {"--wait-subscribers", NULL, OPT_SUBSCRIBERS, KIND_U64, AT(subscribers)},
};
#undef AT

static const option *find_option(const char *a) {
  for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
    if (!strcmp(a, options[i].name) || (options[i].alias && !strcmp(a, options[i].alias)))
      return &options[i];
  return NULL;
}

/* A positive number of seconds (or Hz): finite, > 0. */
static int parse_positive(const char *s, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end != '\0' || !(v > 0) || v > 1e12) return -1;
  *out = v;
  return 0;
}

static int parse_value(const command *c, const option *opt, const char *v, cli_opts *o) {
  void *field = (char *)o + opt->offset;
  switch (opt->kind) {
  case KIND_U64:
    if (cli_parse_u64(v, field)) return cli_usage_error(c, "%s: not a number: '%s'", opt->name, v);
    /* 0 is how cli_opts says "not given". */
    if (*(uint64_t *)field == 0) return cli_usage_error(c, "%s: must be at least 1", opt->name);
    return 0;
  case KIND_SECONDS:
    if (parse_positive(v, field))
      return cli_usage_error(c, "%s: not a positive number: '%s'", opt->name, v);
    return 0;
  default: *(const char **)field = v; return 0;
  }
}

/* 0 when parsed, 1 when --help was printed, else a usage error (2). */
static int parse_options(const command *c, int argc, char **argv, cli_opts *o) {
  memset(o, 0, sizeof *o);
  o->node = (shmbus_node_opts)SHMBUS_NODE_OPTS_INIT;
  o->timeout = -1;
  o->args = calloc((size_t)argc + 1, sizeof *o->args);
  if (o->args == NULL) return cli_fail("options", SHMBUS_ERR_NOMEM) + 1;
  int only_args = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    const option *opt = only_args ? NULL : find_option(a);
    if (only_args || a[0] != '-' || !strcmp(a, "-")) {
      o->args[o->nargs++] = argv[i];
    } else if (!strcmp(a, "--")) {
      only_args = 1;
    } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      cli_print_command_help(stdout, c);
      return 1;
    } else if (!strcmp(a, "--domain") || !strcmp(a, "--dir")) {
      if (i + 1 == argc) return cli_usage_error(c, "%s needs a value", a);
      if (!strcmp(a, "--domain")) {
        o->node.domain = argv[++i];
      } else {
        o->node.backend = SHMBUS_BACKEND_DIR;
        o->node.root = argv[++i];
      }
    } else if (opt == NULL || (opt->flag && !(c->accepts & opt->flag))) {
      return cli_usage_error(c, "%s: unknown option %s", c->name, a);
    } else if (opt->kind == KIND_FLAG) {
      *(int *)((char *)o + opt->offset) = 1;
    } else {
      if (i + 1 == argc) return cli_usage_error(c, "%s needs a value", a);
      int r = parse_value(c, opt, argv[++i], o);
      if (r) return r;
    }
  }
  switch (c->positional) {
  case ARGS_NONE:
    if (o->nargs) return cli_usage_error(c, "%s: unexpected argument '%s'", c->name, o->args[0]);
    break;
  case ARGS_SERVICE:
  case ARGS_FILE:
    if (o->nargs == 0)
      return cli_usage_error(c, "%s: which %s?", c->name,
                             c->positional == ARGS_FILE ? "file" : "service");
    if (o->nargs > 1)
      return cli_usage_error(c, "%s: unexpected argument '%s'", c->name, o->args[1]);
    break;
  default:
    if (o->nargs == 0) return cli_usage_error(c, "%s: which services?", c->name);
  }
  shmbus_type t;
  char name[SHMBUS_TYPE_NAME_MAX + 1];
  if (o->type && cli_parse_type(o->type, &t, name))
    return cli_usage_error(c, "--type %s: not NAME:SIZE or NAME:SIZE:ALIGN (ALIGN a power of two)",
                           o->type);
  if (o->elements > UINT32_MAX) return cli_usage_error(c, "--elements: too many");
  if ((c->accepts & OPT_OUTPUT) && o->output == NULL)
    return cli_usage_error(c, "%s: where to? (-o FILE)", c->name);
  return 0;
}

/* ---- main ------------------------------------------------------------------------ */

static void print_usage(FILE *f) {
  fputs("usage: shmbus COMMAND [--domain D] [--dir ROOT] [--json] [ARGS]\n\ncommands:\n", f);
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
  fputs("\n'shmbus COMMAND --help' says more; 'man shmbus' says all.\n", f);
}

static const command *find_command(const char *name) {
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (!strcmp(commands[i].name, name)) return &commands[i];
  return NULL;
}

int main(int argc, char **argv) {
#ifdef _WIN32
  /* Lines end in \n on every OS: the output is for scripts too (and
   * record -o - writes a binary file to stdout). */
  _setmode(_fileno(stdout), _O_BINARY);
#endif
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    const command *c = argc > 2 ? find_command(argv[2]) : NULL;
    if (argc > 2 && c == NULL) return cli_usage_error(NULL, "no command '%s'", argv[2]);
    if (c)
      cli_print_command_help(stdout, c);
    else
      print_usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("shmbus %s\n", shmbus_version_string());
    return 0;
  }
  const command *c = find_command(argv[1]);
  if (c == NULL) {
    fprintf(stderr, "shmbus: no command '%s'\n", argv[1]);
    print_usage(stderr);
    return 2;
  }
  cli_opts o;
  int r = parse_options(c, argc - 2, argv + 2, &o);
  if (r) {
    free(o.args);
    return r == 1 ? 0 : r;
  }
  cli_catch_signals();
  shmbus_node *node;
  r = shmbus_node_open(&o.node, &node);
  if (r) {
    free(o.args);
    return cli_fail("cannot open a node", r);
  }
  r = c->run(node, &o);
  if (cli_flush() && r == 0) r = 1;
  shmbus_node_close(node);
  free(o.args);
  return r;
}

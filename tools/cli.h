/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `shmbus` command's shared parts: its options, its errors, JSON output,
 * reading a domain through the introspection API, and what the commands
 * that move samples (echo, hz, pub, record, replay) have in common: finding
 * a service's type, waiting for samples, pacing, progress and stopping on a
 * signal. Each command is in the file of its kind:
 *   cli_main.c     the command table, option parsing and main()
 *   cli_inspect.c  list, info, nodes, cleanup (they only read, or clean up)
 *   cli_stream.c   echo, hz, pub
 *   cli_record.c   record, replay (the file format: record_file.h)
 * Everything here uses the public API only.
 */
#ifndef SHMBUS_CLI_H
#define SHMBUS_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <shmbus.h>

/* ---- options ---------------------------------------------------------------
 * Options a command accepts beyond the common ones (--domain, --dir, --json,
 * --help). Each is parsed once, in cli_main.c, into cli_opts. */
enum {
  OPT_WATCH = 1u << 0,        /* --watch                                      */
  OPT_COUNT = 1u << 1,        /* --count N        (-n N)                      */
  OPT_RATE = 1u << 2,         /* --rate HZ                                    */
  OPT_DURATION = 1u << 3,     /* --duration SECONDS                           */
  OPT_WINDOW = 1u << 4,       /* --window N                                   */
  OPT_FORMAT = 1u << 5,       /* --format FIELDS                              */
  OPT_TYPE = 1u << 6,         /* --type NAME:SIZE[:ALIGN]                     */
  OPT_ELEMENTS = 1u << 7,     /* --elements N                                 */
  OPT_INPUT = 1u << 8,        /* --file FILE                                  */
  OPT_OUTPUT = 1u << 9,       /* --output FILE    (-o FILE)                   */
  OPT_SUBSCRIBERS = 1u << 10, /* --wait-subscribers N                         */
  OPT_QUIET = 1u << 11,       /* --quiet          (-q): no progress            */
  OPT_TIMEOUT = 1u << 12      /* --timeout SECONDS: how long to wait for peers */
};

/* What a command takes after its options. */
enum { ARGS_NONE, ARGS_SERVICE, ARGS_SERVICES, ARGS_FILE };

typedef struct cli_opts {
  shmbus_node_opts node;
  int json, watch, quiet;
  char **args; /* the positional arguments (services, or a FILE)      */
  size_t nargs;
  uint64_t count;       /* --count: 0 is no limit                         */
  double rate;          /* --rate: 0 is unset                             */
  double duration;      /* --duration: 0 is no limit                      */
  double timeout;       /* --timeout: < 0 is forever (the default)        */
  uint64_t window;      /* --window: 0 is the command's default           */
  const char *format;   /* --format, or NULL                              */
  const char *type;     /* --type, or NULL                                */
  uint64_t elements;    /* --elements: 0 is the command's default         */
  const char *input;    /* --file, or NULL (standard input)               */
  const char *output;   /* --output, or NULL                              */
  uint64_t subscribers; /* --wait-subscribers: 0 does not wait            */
} cli_opts;

typedef struct command {
  const char *name;
  const char *args;    /* usage after the name and the common options */
  const char *summary; /* one line for `shmbus --help`                */
  const char *help;    /* what it does, then its own options          */
  unsigned accepts;    /* OPT_*                                       */
  int positional;      /* ARGS_*                                      */
  int (*run)(shmbus_node *node, const cli_opts *o);
} command;

/* The commands, by file. */
int cmd_list(shmbus_node *node, const cli_opts *o);
int cmd_info(shmbus_node *node, const cli_opts *o);
int cmd_nodes(shmbus_node *node, const cli_opts *o);
int cmd_cleanup(shmbus_node *node, const cli_opts *o);
int cmd_echo(shmbus_node *node, const cli_opts *o);
int cmd_hz(shmbus_node *node, const cli_opts *o);
int cmd_pub(shmbus_node *node, const cli_opts *o);
int cmd_record(shmbus_node *node, const cli_opts *o);
int cmd_replay(shmbus_node *node, const cli_opts *o);

/* ---- errors ------------------------------------------------------------------
 * Every failure is one line on stderr, "shmbus: WHAT: message (NAME)", and
 * exit status 1; usage errors exit with 2. */
int cli_fail(const char *what, int err);                     /* for a SHMBUS_ERR_ code: 1 */
int cli_failf(const char *fmt, ...);                         /* any message: 1            */
int cli_usage_error(const command *c, const char *fmt, ...); /* 2, with the usage */
void cli_print_command_help(FILE *f, const command *c);

/* ---- JSON on stdout ------------------------------------------------------------ */
void json_str(const char *s); /* a JSON string, escaped */
void json_key(const char *key, int *first);
void json_u64(const char *key, uint64_t v, int *first);
void json_double(const char *key, double v, int *first);
void json_bool(const char *key, int v, int *first);
void json_string(const char *key, const char *v, int *first);
void json_hex(const char *key, uint64_t v, int *first); /* "%016llx" as a string */
void json_error(int err, int *first);                   /* "error": null, or its name and message */

/* ---- names of values ------------------------------------------------------------ */
const char *overflow_name(uint32_t v);
const char *port_state_name(uint32_t v);
const char *connection_state_name(uint32_t v);

/* ---- reading a domain -------------------------------------------------------------
 * The API's cap/count calls, grown until everything fits; 0 or a
 * SHMBUS_ERR_ code; on success the caller frees the arrays. */
int read_nodes(shmbus_node *node, shmbus_node_info **out, size_t *n);
int read_services(shmbus_node *node, shmbus_service_info **out, size_t *n);

typedef struct detail {
  shmbus_service_info info;
  shmbus_port_info *ports;
  size_t nports;
  shmbus_connection_info *conns;
  size_t nconns;
} detail;

int read_detail(shmbus_node *node, const char *service, detail *d);
void detail_free(detail *d);

/* ---- stopping, time, progress ---------------------------------------------------- */

/* Makes SIGINT and SIGTERM (Windows: Ctrl-C) set cli_stop_requested()
 * instead of killing the command, so that a record finishes its file and
 * every port is closed. */
void cli_catch_signals(void);
int cli_stop_requested(void);

/* The clock of sample timestamps (shmbus_now_ns), and a sleep on it that
 * a signal ends (within 100 ms). */
uint64_t cli_now_ns(void);
void cli_sleep_ns(uint64_t ns);
/* A deadline `seconds` from now; UINT64_MAX for seconds <= 0 (none). */
uint64_t cli_deadline(double seconds);

/* A progress line on stderr, redrawn at most once a second, only when
 * stderr is a terminal and --quiet was not given. */
typedef struct cli_progress {
  int on, shown;
  uint64_t next_ns;
} cli_progress;
void cli_progress_start(cli_progress *p, const cli_opts *o);
void cli_progress_show(cli_progress *p, const char *fmt, ...);
void cli_progress_end(cli_progress *p);

/* ---- ports on a service of any type ------------------------------------------------
 * The options of a port on `service`: with --type, that type (NAME:SIZE
 * with ALIGN 1 unless given) and --elements (default 1); else the type and
 * element count of the existing service (describe), every limit 0 ("what
 * the service has"). NOT_FOUND when the service does not exist and --type
 * was not given. `type_name` receives the name `so->type.name` points at. */
int cli_service_opts(shmbus_node *node, const char *service, const cli_opts *o,
                     shmbus_service_opts *so, char type_name[SHMBUS_TYPE_NAME_MAX + 1]);

/* cli_service_opts, waiting for the service to appear (saying so once on
 * stderr) until --timeout, --duration or a signal: TIMEDOUT then. */
int cli_service_opts_wait(shmbus_node *node, const char *service, const cli_opts *o,
                          shmbus_service_opts *so, char type_name[SHMBUS_TYPE_NAME_MAX + 1]);

/* Takes the next sample of `sub`, waiting until `deadline` (cli_now_ns
 * time) or a signal: 0, TIMEDOUT (the deadline passed or a signal came),
 * or take's errors but EMPTY. A subscriber that loses its publishers keeps
 * waiting for new ones. */
int cli_take(shmbus_subscriber *sub, uint64_t deadline, shmbus_sample *out);

/* Parses --type's NAME:SIZE[:ALIGN] (ALIGN a power of two up to 4096,
 * default 1) into *t, its name into `name`: 0 or -1. */
int cli_parse_type(const char *spec, shmbus_type *t, char name[SHMBUS_TYPE_NAME_MAX + 1]);

/* Flushes stdout: 0, or 1 after saying on stderr that it cannot be
 * written (a closed pipe, a full disk): the command then stops. */
int cli_flush(void);

/* Parses a whole decimal number (no sign, no garbage): 0 or -1. */
int cli_parse_u64(const char *s, uint64_t *out);

#endif /* SHMBUS_CLI_H */

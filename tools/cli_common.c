/* SPDX-License-Identifier: Apache-2.0 */
/* The `shmbus` command's shared parts (cli.h). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* nanosleep, sigaction */
#endif

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _WIN32
#include <io.h>
#include <windows.h>
#else
#include <unistd.h>
#endif

#include "cli.h"

/* ---- errors ------------------------------------------------------------------ */

static const char common_options[] =
    "  --domain D   the domain (default: $SHMBUS_DOMAIN, else \"default\")\n"
    "  --dir ROOT   the directory backend, rooted at ROOT (default: POSIX shared memory)\n"
    "  --json       print JSON on stdout\n"
    "  --help       print this help\n";

void cli_print_command_help(FILE *f, const command *c) {
  fprintf(f, "usage: shmbus %s [--domain D] [--dir ROOT] [--json]%s%s\n\n%s\n%s", c->name,
          c->args[0] ? " " : "", c->args, c->help, common_options);
}

int cli_usage_error(const command *c, const char *fmt, ...) {
  va_list ap;
  fputs("shmbus: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (c) cli_print_command_help(stderr, c);
  return 2;
}

int cli_fail(const char *what, int err) {
  /* The detail describes the thread's last failed open, which is this
   * error only when it is an open's INCOMPATIBLE (shmbus.h). */
  const char *more = err == SHMBUS_ERR_INCOMPATIBLE ? shmbus_error_detail() : "";
  fprintf(stderr, "shmbus: %s: %s (%s)%s%s\n", what, shmbus_strerror(err), shmbus_err_name(err),
          more[0] ? ": " : "", more);
  return 1;
}

int cli_failf(const char *fmt, ...) {
  va_list ap;
  fputs("shmbus: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return 1;
}

/* ---- JSON ----------------------------------------------------------------- */

/* A JSON string: quotes, backslashes and every byte outside printable
 * ASCII escaped (names are printable ASCII; anything else is a peer's). */
void json_str(const char *s) {
  putchar('"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      printf("\\%c", *p);
    else if (*p < 0x20 || *p >= 0x7f)
      printf("\\u%04x", *p);
    else
      putchar(*p);
  }
  putchar('"');
}

void json_key(const char *key, int *first) {
  if (!*first) putchar(',');
  *first = 0;
  json_str(key);
  putchar(':');
}

void json_u64(const char *key, uint64_t v, int *first) {
  json_key(key, first);
  printf("%llu", (unsigned long long)v);
}

/* JSON has no NaN or infinity: those are null. */
void json_double(const char *key, double v, int *first) {
  json_key(key, first);
  if (v == v && v - v == 0)
    printf("%.9g", v);
  else
    fputs("null", stdout);
}

void json_bool(const char *key, int v, int *first) {
  json_key(key, first);
  fputs(v ? "true" : "false", stdout);
}

void json_string(const char *key, const char *v, int *first) {
  json_key(key, first);
  json_str(v);
}

void json_hex(const char *key, uint64_t v, int *first) {
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", (unsigned long long)v);
  json_string(key, buf, first);
}

/* "error": null, or the code's name plus its message. */
void json_error(int err, int *first) {
  json_key("error", first);
  if (err == 0) {
    fputs("null", stdout);
    return;
  }
  json_str(shmbus_err_name(err));
  json_string("error_message", shmbus_strerror(err), first);
}

/* ---- names of values -------------------------------------------------------- */

const char *overflow_name(uint32_t v) {
  switch (v) {
  case SHMBUS_OVERFLOW_DROP_OLDEST: return "drop_oldest";
  case SHMBUS_OVERFLOW_DROP_NEWEST: return "drop_newest";
  case SHMBUS_OVERFLOW_BLOCK: return "block";
  default: return "unknown";
  }
}

const char *port_state_name(uint32_t v) {
  switch (v) {
  case SHMBUS_PORT_READY: return "ready";
  case SHMBUS_PORT_OPENING: return "opening";
  case SHMBUS_PORT_REAPING: return "reaping";
  case SHMBUS_PORT_UNOWNED: return "unowned";
  default: return "unknown";
  }
}

const char *connection_state_name(uint32_t v) {
  switch (v) {
  case SHMBUS_CONNECTION_UNBOUND: return "unbound";
  case SHMBUS_CONNECTION_BINDING: return "binding";
  case SHMBUS_CONNECTION_BOUND: return "bound";
  case SHMBUS_CONNECTION_STALE: return "stale";
  case SHMBUS_CONNECTION_CORRUPT: return "corrupt";
  default: return "unknown";
  }
}

/* ---- reading a domain ------------------------------------------------------ */

int read_nodes(shmbus_node *node, shmbus_node_info **out, size_t *n) {
  size_t cap = 64;
  *out = NULL;
  for (;;) {
    shmbus_node_info *p = realloc(*out, cap * sizeof *p);
    if (p == NULL) return SHMBUS_ERR_NOMEM;
    *out = p;
    int r = shmbus_node_list(node, *out, cap, n);
    if (r || *n <= cap) return r;
    cap = *n + 16;
  }
}

int read_services(shmbus_node *node, shmbus_service_info **out, size_t *n) {
  size_t cap = 16;
  *out = NULL;
  for (;;) {
    shmbus_service_info *p = realloc(*out, cap * sizeof *p);
    if (p == NULL) return SHMBUS_ERR_NOMEM;
    *out = p;
    int r = shmbus_service_list(node, *out, cap, n);
    if (r || *n <= cap) return r;
    cap = *n + 16;
  }
}

void detail_free(detail *d) {
  free(d->ports);
  free(d->conns);
  memset(d, 0, sizeof *d);
}

int read_detail(shmbus_node *node, const char *service, detail *d) {
  size_t pcap = 16, ccap = 64;
  memset(d, 0, sizeof *d);
  for (;;) {
    shmbus_port_info *p = realloc(d->ports, pcap * sizeof *p);
    if (p) d->ports = p;
    shmbus_connection_info *c = p ? realloc(d->conns, ccap * sizeof *c) : NULL;
    if (c) d->conns = c;
    if (p == NULL || c == NULL) {
      detail_free(d);
      return SHMBUS_ERR_NOMEM;
    }
    int r = shmbus_service_describe(node, service, &d->info, d->ports, pcap, &d->nports, d->conns,
                                    ccap, &d->nconns);
    if (r) {
      detail_free(d);
      return r;
    }
    if (d->nports <= pcap && d->nconns <= ccap) return 0;
    pcap = d->nports + 8;
    ccap = d->nconns + 32;
  }
}

/* ---- stopping, time, progress ---------------------------------------------- */

static volatile sig_atomic_t stop_requested;

#ifdef _WIN32
static BOOL WINAPI on_console_event(DWORD event) {
  (void)event;
  stop_requested = 1;
  return TRUE;
}

void cli_catch_signals(void) { SetConsoleCtrlHandler(on_console_event, TRUE); }
#else
static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

void cli_catch_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN); /* a closed pipe is a write error, then a stop */
}
#endif

int cli_stop_requested(void) { return stop_requested != 0; }

uint64_t cli_now_ns(void) { return shmbus_now_ns(); }

/* In slices of at most 100 ms, each after a look at the stop flag: a
 * signal that comes just before a slice ends the sleep within one. */
void cli_sleep_ns(uint64_t ns) {
  enum { SLICE_NS = 100 * 1000 * 1000 };
  uint64_t end = cli_now_ns() + ns;
  if (end < ns) end = UINT64_MAX;
  for (uint64_t now = cli_now_ns(); now < end && !stop_requested; now = cli_now_ns()) {
    uint64_t left = end - now < SLICE_NS ? end - now : SLICE_NS;
#ifdef _WIN32
    Sleep((DWORD)((left + 999999u) / 1000000u));
#else
    struct timespec ts = {0, (long)left};
    nanosleep(&ts, NULL);
#endif
  }
}

uint64_t cli_deadline(double seconds) {
  if (!(seconds > 0)) return UINT64_MAX;
  if (seconds > 1e9) return UINT64_MAX;
  return cli_now_ns() + (uint64_t)(seconds * 1e9);
}

static int stderr_is_terminal(void) {
#ifdef _WIN32
  return _isatty(_fileno(stderr));
#else
  return isatty(STDERR_FILENO);
#endif
}

void cli_progress_start(cli_progress *p, const cli_opts *o) {
  p->on = !o->quiet && stderr_is_terminal();
  p->shown = 0;
  p->next_ns = cli_now_ns() + 1000000000u;
}

void cli_progress_show(cli_progress *p, const char *fmt, ...) {
  if (!p->on) return;
  uint64_t now = cli_now_ns();
  if (now < p->next_ns) return;
  p->next_ns = now + 1000000000u;
  va_list ap;
  fputs("\r\033[K", stderr); /* start of the line, erase it */
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fflush(stderr);
  p->shown = 1;
}

void cli_progress_end(cli_progress *p) {
  if (p->shown) fputs("\r\033[K", stderr);
  p->shown = 0;
}

int cli_flush(void) {
  if (fflush(stdout) == 0 && !ferror(stdout)) return 0;
  /* Said once: the stream stays in error. */
  static int said;
  if (!said) cli_failf("cannot write the output: %s", strerror(errno));
  said = 1;
  return 1;
}

/* ---- ports on a service of any type -------------------------------------------- */

int cli_parse_u64(const char *s, uint64_t *out) {
  uint64_t v = 0;
  if (s == NULL || *s == '\0') return -1;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return -1;
    unsigned d = (unsigned)(*p - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* NAME:SIZE[:ALIGN]; the name is everything before the last two colons'
 * numbers, so that C++ names such as ns::imu work. */
int cli_parse_type(const char *spec, shmbus_type *t, char name[SHMBUS_TYPE_NAME_MAX + 1]) {
  char buf[SHMBUS_TYPE_NAME_MAX + 48];
  if (strlen(spec) >= sizeof buf) return -1;
  strcpy(buf, spec);
  uint64_t size = 0, align = 1;
  char *colon = strrchr(buf, ':');
  if (colon == NULL || cli_parse_u64(colon + 1, &size)) return -1;
  *colon = '\0';
  char *second = strrchr(buf, ':');
  uint64_t n;
  if (second && second > buf && second[-1] != ':' && cli_parse_u64(second + 1, &n) == 0) {
    /* NAME:SIZE:ALIGN */
    align = size;
    size = n;
    *second = '\0';
  }
  if (buf[0] == '\0' || strlen(buf) > SHMBUS_TYPE_NAME_MAX || size == 0 || size > UINT32_MAX ||
      align == 0 || align > 4096 || (align & (align - 1)))
    return -1;
  strcpy(name, buf);
  t->name = name;
  t->size = (size_t)size;
  t->align = (size_t)align;
  return 0;
}

int cli_service_opts(shmbus_node *node, const char *service, const cli_opts *o,
                     shmbus_service_opts *so, char type_name[SHMBUS_TYPE_NAME_MAX + 1]) {
  *so = (shmbus_service_opts)SHMBUS_SERVICE_OPTS_INIT;
  if (o->type) {
    if (cli_parse_type(o->type, &so->type, type_name)) return SHMBUS_ERR_INVAL; /* checked */
    if (o->elements > UINT32_MAX) return SHMBUS_ERR_INVAL;
    so->max_elements = o->elements ? (uint32_t)o->elements : 1;
    return 0;
  }
  shmbus_service_info info;
  int r = shmbus_service_describe(node, service, &info, NULL, 0, NULL, NULL, 0, NULL);
  if (r) return r;
  memcpy(type_name, info.type_name, SHMBUS_TYPE_NAME_MAX + 1);
  type_name[SHMBUS_TYPE_NAME_MAX] = '\0';
  so->type.name = type_name;
  so->type.size = info.type_size;
  so->type.align = info.type_align;
  so->max_elements = info.max_elements;
  return 0;
}

int cli_service_opts_wait(shmbus_node *node, const char *service, const cli_opts *o,
                          shmbus_service_opts *so, char type_name[SHMBUS_TYPE_NAME_MAX + 1]) {
  uint64_t deadline = cli_deadline(o->timeout), end = cli_deadline(o->duration);
  if (end < deadline) deadline = end;
  int said = 0;
  for (;;) {
    int r = cli_service_opts(node, service, o, so, type_name);
    if (r != SHMBUS_ERR_NOT_FOUND && r != SHMBUS_ERR_NOT_READY) return r;
    if (cli_stop_requested() || cli_now_ns() >= deadline) return SHMBUS_ERR_TIMEDOUT;
    if (!said && !o->quiet) fprintf(stderr, "shmbus: waiting for service %s\n", service);
    said = 1;
    cli_sleep_ns(50 * 1000 * 1000);
  }
}

int cli_take(shmbus_subscriber *sub, uint64_t deadline, shmbus_sample *out) {
  for (;;) {
    int r = shmbus_subscriber_take(sub, out);
    if (r != SHMBUS_ERR_EMPTY) return r;
    uint64_t now = cli_now_ns();
    if (cli_stop_requested() || now >= deadline) return SHMBUS_ERR_TIMEDOUT;
    /* Slices of 100 ms: a signal ends the wait within one. */
    uint64_t slice = deadline - now < 100000000u ? deadline - now : 100000000u;
    r = shmbus_subscriber_wait(sub, (int64_t)slice);
    if (r != 0 && r != SHMBUS_ERR_TIMEDOUT && r != SHMBUS_ERR_NO_PUBLISHER) return r;
  }
}

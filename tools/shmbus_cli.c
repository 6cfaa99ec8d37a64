/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shmbus: a command line tool over the public API.
 *   shmbus list    [options]           the domain's services and nodes
 *   shmbus info    [options] SERVICE   a service's ports and connections
 *   shmbus nodes   [options]           the domain's nodes
 *   shmbus cleanup [options]           remove what dead nodes left
 * Options of every command: --domain D (default $SHMBUS_DOMAIN, else
 * "default"), --dir ROOT (the directory backend), --json (one JSON
 * document on stdout: node ids are strings of 16 hex digits, port ids and
 * counts are numbers), --help. `info --watch` shows it again every second.
 * Errors go to stderr: exit status 1 for a failure, 2 for a usage error.
 * list, info and nodes only read: they change nothing in the domain.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* nanosleep (--watch) */
#endif

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _WIN32
#include <windows.h>
#endif

#include <shmbus.h>

/* ---- options ------------------------------------------------------------- */

enum { OPT_SERVICE = 1, OPT_WATCH = 2 }; /* what a command accepts beyond the common */

typedef struct cli_opts {
  shmbus_node_opts node;
  int json, watch;
  const char *service;
} cli_opts;

typedef struct command {
  const char *name;
  const char *args;    /* usage after the name                */
  const char *summary; /* one line for `shmbus --help`        */
  const char *help;    /* what it does, then its own options  */
  unsigned accepts;    /* OPT_* */
  int (*run)(shmbus_node *node, const cli_opts *o);
} command;

static const char common_options[] =
    "  --domain D   the domain (default: $SHMBUS_DOMAIN, else \"default\")\n"
    "  --dir ROOT   the directory backend, rooted at ROOT (default: POSIX shared memory)\n"
    "  --json       print one JSON document on stdout\n"
    "  --help       print this help\n";

static void print_command_help(FILE *f, const command *c) {
  fprintf(f, "usage: shmbus %s [--domain D] [--dir ROOT] [--json]%s%s\n\n%s\n%s", c->name,
          c->args[0] ? " " : "", c->args, c->help, common_options);
}

static int usage_error(const command *c, const char *fmt, ...) {
  va_list ap;
  fputs("shmbus: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (c) print_command_help(stderr, c);
  return 2;
}

/* 0 when parsed, 1 when --help was printed, else a usage error (2). */
static int parse_options(const command *c, int argc, char **argv, cli_opts *o) {
  memset(o, 0, sizeof *o);
  o->node = (shmbus_node_opts)SHMBUS_NODE_OPTS_INIT;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      print_command_help(stdout, c);
      return 1;
    } else if (!strcmp(a, "--domain") || !strcmp(a, "--dir")) {
      if (i + 1 == argc) return usage_error(c, "%s needs a value", a);
      if (!strcmp(a, "--domain")) {
        o->node.domain = argv[++i];
      } else {
        o->node.backend = SHMBUS_BACKEND_DIR;
        o->node.root = argv[++i];
      }
    } else if (!strcmp(a, "--json")) {
      o->json = 1;
    } else if (!strcmp(a, "--watch") && (c->accepts & OPT_WATCH)) {
      o->watch = 1;
    } else if (a[0] == '-' && a[1] != '\0') {
      return usage_error(c, "%s: unknown option %s", c->name, a);
    } else if ((c->accepts & OPT_SERVICE) && o->service == NULL) {
      o->service = a;
    } else {
      return usage_error(c, "%s: unexpected argument '%s'", c->name, a);
    }
  }
  if ((c->accepts & OPT_SERVICE) && o->service == NULL)
    return usage_error(c, "%s: which service?", c->name);
  return 0;
}

static int fail(const char *what, int err) {
  const char *detail = shmbus_error_detail();
  fprintf(stderr, "shmbus: %s: %s (%s)%s%s\n", what, shmbus_strerror(err), shmbus_err_name(err),
          detail[0] ? ": " : "", detail);
  return 1;
}

/* ---- JSON ----------------------------------------------------------------- */

/* A JSON string: quotes, backslashes and every byte outside printable
 * ASCII escaped (names are printable ASCII; anything else is a peer's). */
static void json_str(const char *s) {
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

static void json_key(const char *key, int *first) {
  if (!*first) putchar(',');
  *first = 0;
  json_str(key);
  putchar(':');
}

static void json_u64(const char *key, uint64_t v, int *first) {
  json_key(key, first);
  printf("%llu", (unsigned long long)v);
}

static void json_bool(const char *key, int v, int *first) {
  json_key(key, first);
  fputs(v ? "true" : "false", stdout);
}

static void json_string(const char *key, const char *v, int *first) {
  json_key(key, first);
  json_str(v);
}

static void json_hex(const char *key, uint64_t v, int *first) {
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", (unsigned long long)v);
  json_string(key, buf, first);
}

/* "error": null, or the code's name plus its message. */
static void json_error(int err, int *first) {
  json_key("error", first);
  if (err == 0) {
    fputs("null", stdout);
    return;
  }
  json_str(shmbus_err_name(err));
  json_string("error_message", shmbus_strerror(err), first);
}

/* ---- names of values -------------------------------------------------------- */

static const char *overflow_name(uint32_t v) {
  switch (v) {
  case SHMBUS_OVERFLOW_DROP_OLDEST: return "drop_oldest";
  case SHMBUS_OVERFLOW_DROP_NEWEST: return "drop_newest";
  case SHMBUS_OVERFLOW_BLOCK: return "block";
  default: return "unknown";
  }
}

static const char *port_state_name(uint32_t v) {
  switch (v) {
  case SHMBUS_PORT_READY: return "ready";
  case SHMBUS_PORT_OPENING: return "opening";
  case SHMBUS_PORT_REAPING: return "reaping";
  case SHMBUS_PORT_UNOWNED: return "unowned";
  default: return "unknown";
  }
}

static const char *connection_state_name(uint32_t v) {
  switch (v) {
  case SHMBUS_CONNECTION_UNBOUND: return "unbound";
  case SHMBUS_CONNECTION_BINDING: return "binding";
  case SHMBUS_CONNECTION_BOUND: return "bound";
  case SHMBUS_CONNECTION_STALE: return "stale";
  case SHMBUS_CONNECTION_CORRUPT: return "corrupt";
  default: return "unknown";
  }
}

/* ---- reading the domain ------------------------------------------------------ */

/* The API's cap/count calls, grown until everything fits. Each returns 0 or
 * a SHMBUS_ERR_ code; on success the caller frees the arrays. */
static int read_nodes(shmbus_node *node, shmbus_node_info **out, size_t *n) {
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

static int read_services(shmbus_node *node, shmbus_service_info **out, size_t *n) {
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

typedef struct detail {
  shmbus_service_info info;
  shmbus_port_info *ports;
  size_t nports;
  shmbus_connection_info *conns;
  size_t nconns;
} detail;

static void detail_free(detail *d) {
  free(d->ports);
  free(d->conns);
  memset(d, 0, sizeof *d);
}

static int read_detail(shmbus_node *node, const char *service, detail *d) {
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

static int by_name(const void *a, const void *b) {
  const shmbus_service_info *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : strcmp(x->object, y->object);
}

/* Nanoseconds of the clock that stamps samples, or 0 where unknown. */
static uint64_t monotonic_ns(void) {
#if defined(CLOCK_MONOTONIC) && !defined(_WIN32)
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
  return 0;
}

/* ---- printing a service -------------------------------------------------------- */

static void json_service(const shmbus_service_info *s) {
  int f = 1;
  putchar('{');
  json_key("name", &f);
  if (s->error)
    fputs("null", stdout);
  else
    json_str(s->name);
  json_string("object", s->object, &f);
  json_error(s->error, &f);
  if (!s->error) {
    json_key("type", &f);
    int t = 1;
    putchar('{');
    json_string("name", s->type_name, &t);
    json_u64("size", s->type_size, &t);
    json_u64("align", s->type_align, &t);
    putchar('}');
    json_u64("max_elements", s->max_elements, &f);
    json_u64("max_payload", s->max_payload, &f);
    json_u64("max_publishers", s->max_publishers, &f);
    json_u64("max_subscribers", s->max_subscribers, &f);
    json_u64("queue_depth", s->queue_depth, &f);
    json_u64("history", s->history, &f);
    json_u64("max_loans", s->max_loans, &f);
    json_u64("max_held", s->max_held, &f);
    json_string("overflow", overflow_name(s->overflow), &f);
    json_u64("publishers", s->publishers, &f);
    json_u64("subscribers", s->subscribers, &f);
    json_u64("users", s->users, &f);
    json_bool("removing", s->removing, &f);
    json_hex("creator_node", s->creator_node_id, &f);
    json_u64("chunks", s->chunks, &f);
    json_key("memory", &f);
    int m = 1;
    putchar('{');
    json_u64("service_bytes", s->service_bytes, &m);
    json_u64("data_bytes", s->data_bytes, &m);
    json_u64("control_bytes", s->control_bytes, &m);
    putchar('}');
  }
  putchar('}');
}

static void json_port(const shmbus_port_info *p) {
  int f = 1;
  putchar('{');
  json_u64("slot", p->slot, &f);
  json_u64("id", p->id, &f);
  json_hex("node", p->node_id, &f);
  json_string("state", port_state_name(p->state), &f);
  json_bool("alive", p->alive, &f);
  if (p->kind == SHMBUS_PORT_PUBLISHER) {
    json_error(p->error, &f);
    json_u64("published", p->published, &f);
    json_u64("last_timestamp_ns", p->last_timestamp_ns, &f);
  } else {
    json_bool("sleeping", (p->flags & SHMBUS_PORT_SLEEPING) != 0, &f);
    json_bool("waitset", (p->flags & SHMBUS_PORT_WAITSET) != 0, &f);
  }
  putchar('}');
}

static void json_connection(const detail *d, const shmbus_connection_info *c) {
  int f = 1;
  putchar('{');
  json_u64("publisher", c->publisher_id, &f);
  if (c->publisher < d->nports) json_u64("publisher_slot", d->ports[c->publisher].slot, &f);
  json_u64("subscriber", c->subscriber_id, &f);
  json_u64("subscriber_slot", c->subscriber_slot, &f);
  json_string("state", connection_state_name(c->state), &f);
  json_u64("published", c->published, &f);
  json_u64("delivered", c->delivered, &f);
  json_u64("lost", c->lost, &f);
  json_u64("released", c->released, &f);
  json_u64("queued", c->queued, &f);
  json_u64("held", c->held, &f);
  json_u64("in_flight", c->in_flight, &f);
  json_bool("publisher_waiting", c->publisher_waiting, &f);
  putchar('}');
}

static void json_detail(shmbus_node *node, const detail *d) {
  int f = 1;
  putchar('{');
  json_string("domain", shmbus_node_domain(node), &f);
  json_key("service", &f);
  json_service(&d->info);
  for (int kind = SHMBUS_PORT_PUBLISHER; kind <= SHMBUS_PORT_SUBSCRIBER; kind++) {
    json_key(kind == SHMBUS_PORT_PUBLISHER ? "publishers" : "subscribers", &f);
    putchar('[');
    int first = 1;
    for (size_t i = 0; i < d->nports; i++) {
      if (d->ports[i].kind != (uint32_t)kind) continue;
      if (!first) putchar(',');
      first = 0;
      json_port(&d->ports[i]);
    }
    putchar(']');
  }
  json_key("connections", &f);
  putchar('[');
  for (size_t i = 0; i < d->nconns; i++) {
    if (i) putchar(',');
    json_connection(d, &d->conns[i]);
  }
  puts("]}");
}

static void text_detail(const detail *d) {
  const shmbus_service_info *s = &d->info;
  printf("service   %s\n", s->name);
  printf("type      %s: %u bytes, align %u, up to %u per sample (%llu bytes)\n", s->type_name,
         (unsigned)s->type_size, (unsigned)s->type_align, (unsigned)s->max_elements,
         (unsigned long long)s->max_payload);
  printf("limits    queue depth %u, history %u, loans %u, held %u, overflow %s\n",
         (unsigned)s->queue_depth, (unsigned)s->history, (unsigned)s->max_loans,
         (unsigned)s->max_held, overflow_name(s->overflow));
  printf("ports     %u/%u publishers, %u/%u subscribers, %llu users%s\n", (unsigned)s->publishers,
         (unsigned)s->max_publishers, (unsigned)s->subscribers, (unsigned)s->max_subscribers,
         (unsigned long long)s->users, s->removing ? " (being removed)" : "");
  printf("memory    service %llu B; per publisher: data %llu B (%llu chunks), control %llu B\n",
         (unsigned long long)s->service_bytes, (unsigned long long)s->data_bytes,
         (unsigned long long)s->chunks, (unsigned long long)s->control_bytes);
  uint64_t now = monotonic_ns();
  printf("\n%-4s  %-20s  %-16s  %-7s  %-5s  %10s  %9s  %s\n", "PUB", "ID", "NODE", "STATE", "NODE?",
         "PUBLISHED", "LAST", "ERROR");
  for (size_t i = 0; i < d->nports; i++) {
    const shmbus_port_info *p = &d->ports[i];
    if (p->kind != SHMBUS_PORT_PUBLISHER) continue;
    char last[32] = "-";
    if (p->last_timestamp_ns && now >= p->last_timestamp_ns)
      snprintf(last, sizeof last, "%.3fs ago", (double)(now - p->last_timestamp_ns) / 1e9);
    printf("%-4u  %-20llu  %016llx  %-7s  %-5s  %10llu  %9s  %s\n", (unsigned)p->slot,
           (unsigned long long)p->id, (unsigned long long)p->node_id, port_state_name(p->state),
           p->alive ? "alive" : "dead", (unsigned long long)p->published, last,
           p->error ? shmbus_err_name(p->error) : "");
  }
  printf("\n%-4s  %-20s  %-16s  %-7s  %-5s  %s\n", "SUB", "ID", "NODE", "STATE", "NODE?", "WAITS");
  for (size_t i = 0; i < d->nports; i++) {
    const shmbus_port_info *p = &d->ports[i];
    if (p->kind != SHMBUS_PORT_SUBSCRIBER) continue;
    const char *waits = (p->flags & SHMBUS_PORT_WAITSET)    ? "wait set"
                        : (p->flags & SHMBUS_PORT_SLEEPING) ? "sleeping"
                                                            : "";
    printf("%-4u  %-20llu  %016llx  %-7s  %-5s  %s\n", (unsigned)p->slot, (unsigned long long)p->id,
           (unsigned long long)p->node_id, port_state_name(p->state), p->alive ? "alive" : "dead",
           waits);
  }
  printf("\n%-7s  %-7s  %10s  %10s  %10s  %6s  %5s  %9s\n", "PUB>SUB", "STATE", "PUBLISHED",
         "DELIVERED", "LOST", "QUEUED", "HELD", "IN-FLIGHT");
  for (size_t i = 0; i < d->nconns; i++) {
    const shmbus_connection_info *c = &d->conns[i];
    char pair[32];
    snprintf(pair, sizeof pair, "%u>%u",
             c->publisher < d->nports ? (unsigned)d->ports[c->publisher].slot : 0u,
             (unsigned)c->subscriber_slot);
    printf("%-7s  %-7s  %10llu  %10llu  %10llu  %6u  %5u  %9u%s\n", pair,
           connection_state_name(c->state), (unsigned long long)c->published,
           (unsigned long long)c->delivered, (unsigned long long)c->lost, (unsigned)c->queued,
           (unsigned)c->held, (unsigned)c->in_flight,
           c->publisher_waiting ? "  (publisher waits)" : "");
  }
}

/* ---- commands --------------------------------------------------------------------- */

static void text_services(const shmbus_service_info *s, size_t n) {
  int width = 7;
  for (size_t i = 0; i < n; i++) {
    int w = (int)strlen(s[i].error ? s[i].object : s[i].name);
    if (w > width) width = w;
  }
  printf("%-*s  %-24s  %6s  %5s  %5s  %5s  %5s  %4s  %s\n", width, "SERVICE", "TYPE", "SIZE",
         "ALIGN", "PUBS", "SUBS", "DEPTH", "HIST", "OVERFLOW");
  for (size_t i = 0; i < n; i++) {
    if (s[i].error) {
      printf("%-*s  (unreadable: %s)\n", width, s[i].object, shmbus_strerror(s[i].error));
      continue;
    }
    char pubs[24], subs[24];
    snprintf(pubs, sizeof pubs, "%u/%u", (unsigned)s[i].publishers, (unsigned)s[i].max_publishers);
    snprintf(subs, sizeof subs, "%u/%u", (unsigned)s[i].subscribers,
             (unsigned)s[i].max_subscribers);
    printf("%-*s  %-24s  %6u  %5u  %5s  %5s  %5u  %4u  %s\n", width, s[i].name, s[i].type_name,
           (unsigned)s[i].type_size, (unsigned)s[i].type_align, pubs, subs,
           (unsigned)s[i].queue_depth, (unsigned)s[i].history, overflow_name(s[i].overflow));
  }
}

static void text_nodes(shmbus_node *node, const shmbus_node_info *info, size_t n) {
  for (size_t i = 0; i < n; i++)
    printf("%016llx %s%s\n", (unsigned long long)info[i].id, info[i].alive ? "alive" : "dead",
           info[i].id == shmbus_node_id(node) ? " (this command)" : "");
}

static void json_nodes(shmbus_node *node, const shmbus_node_info *info, size_t n) {
  putchar('[');
  for (size_t i = 0; i < n; i++) {
    int f = 1;
    printf("%s{", i ? "," : "");
    json_hex("id", info[i].id, &f);
    json_bool("alive", info[i].alive, &f);
    json_bool("self", info[i].id == shmbus_node_id(node), &f);
    putchar('}');
  }
  putchar(']');
}

static int cmd_list(shmbus_node *node, const cli_opts *o) {
  shmbus_service_info *services;
  shmbus_node_info *nodes = NULL;
  size_t nservices = 0, nnodes = 0;
  int r = read_services(node, &services, &nservices);
  if (r == 0) r = read_nodes(node, &nodes, &nnodes);
  if (r) {
    free(services);
    free(nodes);
    return fail("list", r);
  }
  qsort(services, nservices, sizeof *services, by_name);
  if (o->json) {
    int f = 1;
    putchar('{');
    json_string("domain", shmbus_node_domain(node), &f);
    json_key("services", &f);
    putchar('[');
    for (size_t i = 0; i < nservices; i++) {
      if (i) putchar(',');
      json_service(&services[i]);
    }
    putchar(']');
    json_key("nodes", &f);
    json_nodes(node, nodes, nnodes);
    puts("}");
  } else {
    printf("domain %s: %zu service%s\n\n", shmbus_node_domain(node), nservices,
           nservices == 1 ? "" : "s");
    if (nservices) {
      text_services(services, nservices);
      putchar('\n');
    }
    printf("NODE             STATE\n");
    text_nodes(node, nodes, nnodes);
  }
  free(services);
  free(nodes);
  return 0;
}

static void sleep_one_second(void) {
#ifdef _WIN32
  Sleep(1000);
#else
  struct timespec ts = {1, 0};
  nanosleep(&ts, NULL);
#endif
}

static int cmd_info(shmbus_node *node, const cli_opts *o) {
  for (;;) {
    detail d;
    int r = read_detail(node, o->service, &d);
    if (r) {
      char what[320];
      snprintf(what, sizeof what, "info %s", o->service);
      return fail(what, r);
    }
    if (o->json) {
      json_detail(node, &d);
    } else {
      if (o->watch) fputs("\033[H\033[J", stdout); /* home, clear */
      text_detail(&d);
    }
    detail_free(&d);
    fflush(stdout);
    if (!o->watch) return 0;
    sleep_one_second();
  }
}

static int cmd_nodes(shmbus_node *node, const cli_opts *o) {
  shmbus_node_info *nodes;
  size_t n = 0;
  int r = read_nodes(node, &nodes, &n);
  if (r) {
    free(nodes);
    return fail("nodes", r);
  }
  if (o->json) {
    int f = 1;
    putchar('{');
    json_string("domain", shmbus_node_domain(node), &f);
    json_key("nodes", &f);
    json_nodes(node, nodes, n);
    puts("}");
  } else {
    text_nodes(node, nodes, n);
  }
  free(nodes);
  return 0;
}

static int cmd_cleanup(shmbus_node *node, const cli_opts *o) {
  int r = shmbus_domain_cleanup(node);
  if (r < 0) return fail("cleanup", r);
  if (o->json) {
    int f = 1;
    putchar('{');
    json_string("domain", shmbus_node_domain(node), &f);
    json_u64("removed", (uint64_t)r, &f);
    puts("}");
  } else {
    printf("shmbus: cleaned %d objects and ports in domain %s\n", r, shmbus_node_domain(node));
  }
  return 0;
}

static const command commands[] = {
    {"list", "", "the domain's services and nodes",
     "Lists the services of the domain (name, type, limits, overflow policy, ports)\n"
     "and its nodes (alive or dead). Reads only: creates and changes nothing.\n",
     0, cmd_list},
    {"info", "[--watch] SERVICE", "a service's ports and connections",
     "Shows one service: its configuration and memory, its publishers and\n"
     "subscribers with their nodes (alive or dead), and per connection the samples\n"
     "published, delivered, lost, queued and held now. Reads only.\n"
     "  --watch      show it again every second (with --json: one line each)\n",
     OPT_SERVICE | OPT_WATCH, cmd_info},
    {"nodes", "", "the domain's nodes",
     "Lists the nodes of the domain and whether they are alive. Reads only.\n", 0, cmd_nodes},
    {"cleanup", "", "remove what dead nodes left",
     "Removes what dead nodes of the domain left behind: their liveness tokens,\n"
     "their ports' slots, dead publishers' segments, services nobody uses.\n",
     0, cmd_cleanup},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void print_usage(FILE *f) {
  fputs("usage: shmbus COMMAND [--domain D] [--dir ROOT] [--json] [ARGS]\n\ncommands:\n", f);
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
  fputs("\n'shmbus COMMAND --help' says more.\n", f);
}

static const command *find_command(const char *name) {
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (!strcmp(commands[i].name, name)) return &commands[i];
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    const command *c = argc > 2 ? find_command(argv[2]) : NULL;
    if (argc > 2 && c == NULL) return usage_error(NULL, "no command '%s'", argv[2]);
    if (c)
      print_command_help(stdout, c);
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
  if (r) return r == 1 ? 0 : r;
  shmbus_node *node;
  r = shmbus_node_open(&o.node, &node);
  if (r) return fail("cannot open a node", r);
  r = c->run(node, &o);
  shmbus_node_close(node);
  return r;
}

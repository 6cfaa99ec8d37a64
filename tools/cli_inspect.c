/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shmbus list, info, nodes and cleanup: what runs in a domain, through the
 * introspection API. All but cleanup only read: they change nothing.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int by_name(const void *a, const void *b) {
  const shmbus_service_info *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : strcmp(x->object, y->object);
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
    json_u64("loans", p->loans, &f);
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
  uint64_t now = cli_now_ns();
  printf("\n%-4s  %-20s  %-16s  %-7s  %-5s  %10s  %5s  %9s  %s\n", "PUB", "ID", "NODE", "STATE",
         "NODE?", "PUBLISHED", "LOANS", "LAST", "ERROR");
  for (size_t i = 0; i < d->nports; i++) {
    const shmbus_port_info *p = &d->ports[i];
    if (p->kind != SHMBUS_PORT_PUBLISHER) continue;
    char last[32] = "-";
    if (p->last_timestamp_ns && now >= p->last_timestamp_ns)
      snprintf(last, sizeof last, "%.3fs ago", (double)(now - p->last_timestamp_ns) / 1e9);
    printf("%-4u  %-20llu  %016llx  %-7s  %-5s  %10llu  %5u  %9s  %s\n", (unsigned)p->slot,
           (unsigned long long)p->id, (unsigned long long)p->node_id, port_state_name(p->state),
           p->alive ? "alive" : "dead", (unsigned long long)p->published, (unsigned)p->loans, last,
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

int cmd_list(shmbus_node *node, const cli_opts *o) {
  shmbus_service_info *services;
  shmbus_node_info *nodes = NULL;
  size_t nservices = 0, nnodes = 0;
  int r = read_services(node, &services, &nservices);
  if (r == 0) r = read_nodes(node, &nodes, &nnodes);
  if (r) {
    free(services);
    free(nodes);
    return cli_fail("list", r);
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

int cmd_info(shmbus_node *node, const cli_opts *o) {
  for (;;) {
    detail d;
    int r = read_detail(node, o->args[0], &d);
    if (r) {
      char what[320];
      snprintf(what, sizeof what, "info %s", o->args[0]);
      return cli_fail(what, r);
    }
    if (o->json) {
      json_detail(node, &d);
    } else {
      if (o->watch) fputs("\033[H\033[J", stdout); /* home, clear */
      text_detail(&d);
    }
    detail_free(&d);
    if (cli_flush()) return 1; /* a closed pipe ends --watch */
    if (!o->watch) return 0;
    cli_sleep_ns(1000000000u);
    if (cli_stop_requested()) return 0;
  }
}

int cmd_nodes(shmbus_node *node, const cli_opts *o) {
  shmbus_node_info *nodes;
  size_t n = 0;
  int r = read_nodes(node, &nodes, &n);
  if (r) {
    free(nodes);
    return cli_fail("nodes", r);
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

int cmd_cleanup(shmbus_node *node, const cli_opts *o) {
  int r = shmbus_domain_cleanup(node);
  if (r < 0) return cli_fail("cleanup", r);
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

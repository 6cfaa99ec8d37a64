/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Introspection (shmbus.h, "Introspection"): what a domain's services are
 * and what their ports do, read by a process that takes no part.
 *
 * Rules, beyond the threat model's (docs/security.md):
 *   - nothing here writes shared memory: every segment is mapped read-only,
 *     no use of a service is counted, no slot claimed, no port reaped (a
 *     dead one is shown as dead), no lock taken but the shared probe of a
 *     token (shmbus__node_alive), which a live holder's lock refuses;
 *   - every word is loaded once into a local, and what is used as an index,
 *     an offset or a count is checked against the layout computed from the
 *     private copy of the configuration (shmbus__service_load_config);
 *   - a value that contradicts the limits is reported as corrupt, clamped,
 *     never followed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "service.h"

/* The public structures are the same in every ABI (shmbus.h). */
#define LAYOUT_ASSERT(type, member, offset) \
  _Static_assert(offsetof(type, member) == (offset), #type "." #member " moved")
LAYOUT_ASSERT(shmbus_service_info, type_name, 256);
LAYOUT_ASSERT(shmbus_service_info, object, 384);
LAYOUT_ASSERT(shmbus_service_info, error, 480);
LAYOUT_ASSERT(shmbus_service_info, removing, 532);
LAYOUT_ASSERT(shmbus_service_info, users, 536);
LAYOUT_ASSERT(shmbus_service_info, reserved, 592);
_Static_assert(sizeof(shmbus_service_info) == 624, "shmbus_service_info changed size");
LAYOUT_ASSERT(shmbus_port_info, kind, 16);
LAYOUT_ASSERT(shmbus_port_info, error, 32);
LAYOUT_ASSERT(shmbus_port_info, published, 40);
LAYOUT_ASSERT(shmbus_port_info, loans, 56);
LAYOUT_ASSERT(shmbus_port_info, reserved, 64);
_Static_assert(sizeof(shmbus_port_info) == 72, "shmbus_port_info changed size");
LAYOUT_ASSERT(shmbus_connection_info, publisher, 16);
LAYOUT_ASSERT(shmbus_connection_info, published, 32);
LAYOUT_ASSERT(shmbus_connection_info, queued, 64);
LAYOUT_ASSERT(shmbus_connection_info, reserved, 80);
_Static_assert(sizeof(shmbus_connection_info) == 96, "shmbus_connection_info changed size");
_Static_assert(SHMBUS__OBJECT_NAME_MAX == SHMBUS_OBJECT_NAME_MAX + 1,
               "shmbus_service_info.object holds every object name");
_Static_assert(sizeof(((shmbus__service_config *)0)->name) == SHMBUS_SERVICE_NAME_MAX + 1 &&
                   sizeof(((shmbus__service_config *)0)->type_name) == SHMBUS_TYPE_NAME_MAX + 1,
               "shmbus_service_info holds the configuration's names");

/* A peer can create any number of objects under the domain's prefix: a
 * listing looks at no more names than this (liveness.c has the same). */
enum { LIST_MAX = 1 << 16 };

/* ---- a service segment, read-only ---------------------------------------- */

typedef struct view {
  shmbus__segment seg;
  const uint8_t *base;
  shmbus__service_config cfg; /* private, checked copy */
  shmbus__layout layout;
  uint64_t hash;
} view;

static void view_close(view *v) { shmbus__segment_close(&v->seg); }

/* Maps service object `object` read-only (at most the largest valid
 * layout), without waiting for an unfinished one, and checks its
 * configuration: limits, printable names, and a name that hashes to the
 * object's (an object made for another name is a peer's forgery). */
static int view_open(const shmbus_node *node, const char *object, view *v) {
  memset(v, 0, sizeof *v);
  int r = shmbus__segment_open_wait(&node->root, object, 0, SHMBUS__SEG_SERVICE,
                                    sizeof(shmbus__service_seg), shmbus__service_size_max(), 0,
                                    &v->seg);
  if (r) return r;
  shmbus__service svc;
  memset(&svc, 0, sizeof svc);
  svc.seg = v->seg;
  svc.shm = (shmbus__service_seg *)v->seg.base;
  r = shmbus__service_load_config(&svc, &v->cfg, &v->layout);
  const char *name = (const char *)v->cfg.name;
  if (r == 0 && (shmbus__check_service_name(name) != 0 ||
                 shmbus__check_type_name((const char *)v->cfg.type_name) != 0))
    r = SHMBUS_ERR_CORRUPT;
  if (r == 0) {
    char expected[SHMBUS__OBJECT_NAME_MAX];
    v->hash = shmbus__hash64(name);
    shmbus__object_name(expected, node->domain, v->hash, "s");
    if (strcmp(expected, object) != 0) r = SHMBUS_ERR_CORRUPT;
  }
  if (r) {
    view_close(v);
    return r;
  }
  v->base = v->seg.base;
  return 0;
}

static const shmbus__port_slot *view_slot(const view *v, int kind, uint32_t i) {
  return (const shmbus__port_slot *)(v->base +
                                     shmbus__layout_slot_offset(&v->layout, &v->cfg, kind, i));
}

static const shmbus__wait_slot *view_wait(const view *v, uint32_t k) {
  return (const shmbus__wait_slot *)(v->base + shmbus__layout_wait_offset(&v->layout, k));
}

static const shmbus__service_dyn *view_dyn(const view *v) {
  return &((const shmbus__service_seg *)v->base)->dyn;
}

static uint32_t slot_count(const view *v, int kind) {
  return kind == SHMBUS__PUBLISHER ? v->cfg.max_publishers : v->cfg.max_subscribers;
}

/* Ready ports of a kind, by their slot words (no liveness probe). */
static uint32_t ready_ports(const view *v, int kind) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < slot_count(v, kind); i++)
    /* Pairs with the store-release in shmbus__service_ready. */
    n += shmbus__slot_ready_id(shmbus__load64_acquire(&view_slot(v, kind, i)->word)) != 0;
  return n;
}

static void fill_info(const view *v, shmbus_service_info *info) {
  const shmbus__service_config *c = &v->cfg;
  const shmbus__layout *l = &v->layout;
  /* Both names were found NUL-terminated within their arrays, which are
   * as long as the public ones. */
  memcpy(info->name, c->name, strlen((const char *)c->name) + 1);
  memcpy(info->type_name, c->type_name, strlen((const char *)c->type_name) + 1);
  info->type_size = c->element_size;
  info->type_align = c->element_align;
  info->max_elements = c->max_elements;
  info->max_publishers = c->max_publishers;
  info->max_subscribers = c->max_subscribers;
  info->queue_depth = c->queue_depth;
  info->history = c->history;
  info->max_loans = c->max_loans;
  info->max_held = c->max_held;
  info->overflow = c->overflow;
  info->publishers = ready_ports(v, SHMBUS__PUBLISHER);
  info->subscribers = ready_ports(v, SHMBUS__SUBSCRIBER);
  uint64_t users = shmbus__load64_relaxed(&view_dyn(v)->users);
  info->removing = (users & SHMBUS__USERS_REMOVING) != 0;
  info->users = users & ~SHMBUS__USERS_REMOVING;
  info->creator_node_id =
      shmbus__load64_relaxed(&((const shmbus__seg_header *)v->base)->creator_node_id);
  info->max_payload = l->max_payload;
  info->chunks = l->chunks;
  info->service_bytes = l->service_size;
  info->data_bytes = l->data_size;
  info->control_bytes = l->control_size;
}

/* Zero pages replaced the mapping while we read (a peer truncated it):
 * what was read is no service. */
static int view_intact(const view *v) {
  return shmbus__segment_faulted(&v->seg) ? SHMBUS_ERR_CORRUPT : 0;
}

/* Reads one service object into *info (zeroed first; `object` always set). */
static int read_service(const shmbus_node *node, const char *object, shmbus_service_info *info) {
  memset(info, 0, sizeof *info);
  memcpy(info->object, object, strlen(object) + 1);
  view v;
  int r = view_open(node, object, &v);
  if (r == 0) {
    fill_info(&v, info);
    r = view_intact(&v);
    view_close(&v);
  }
  if (r) {
    memset(info, 0, sizeof *info);
    memcpy(info->object, object, strlen(object) + 1);
    info->error = r;
  }
  return r;
}

/* ---- shmbus_service_list -------------------------------------------------- */

typedef struct lister {
  const shmbus_node *node;
  shmbus_service_info *out;
  size_t cap, found, seen;
  size_t prefix_len; /* "shmbus.<domain>." */
} lister;

/* "shmbus.<domain>.<16 lowercase hex>.s" (names.c): a service object. */
static int service_object_name(const char *name, size_t prefix_len) {
  if (strlen(name) != prefix_len + 16 + 2) return 0;
  for (size_t i = prefix_len; i < prefix_len + 16; i++) {
    char c = name[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return 0;
  }
  return strcmp(name + prefix_len + 16, ".s") == 0;
}

static int list_one(const char *name, void *arg) {
  lister *l = arg;
  if (++l->seen > LIST_MAX) return 1;
  /* The listing gave names with our prefix; strlen bounds the rest. */
  if (strlen(name) >= SHMBUS__OBJECT_NAME_MAX || !service_object_name(name, l->prefix_len))
    return 0;
  if (l->found < l->cap && read_service(l->node, name, &l->out[l->found]) == SHMBUS_ERR_NOT_FOUND) {
    memset(&l->out[l->found], 0, sizeof l->out[l->found]);
    return 0; /* removed since the listing saw it */
  }
  l->found++;
  return 0;
}

int shmbus_service_list(shmbus_node *node, shmbus_service_info *out, size_t cap, size_t *count) {
  if (count) *count = 0;
  if (node == NULL || count == NULL || (out == NULL && cap > 0)) return SHMBUS_ERR_INVAL;
  char prefix[SHMBUS__OBJECT_NAME_MAX];
  lister l = {node, out, cap, 0, 0, 0};
  l.prefix_len = (size_t)snprintf(prefix, sizeof prefix, "shmbus.%s.", node->domain);
  int r = shmbus__list_objects(&node->root, prefix, list_one, &l);
  if (r) {
    if (out) memset(out, 0, (l.found < cap ? l.found : cap) * sizeof *out);
    return r;
  }
  *count = l.found;
  return 0;
}

/* ---- shmbus_service_describe ---------------------------------------------- */

/* The liveness of a node seen already: one probe per node. */
typedef struct node_seen {
  uint64_t id;
  int alive;
} node_seen;

typedef struct describer {
  const shmbus_node *node;
  view v;
  shmbus_port_info *ports;
  size_t port_cap, nports;
  shmbus_connection_info *conns;
  size_t conn_cap, nconns;
  shmbus_port_info *pubs; /* [max_publishers] the publishers found        */
  node_seen *seen;        /* [max_publishers + max_subscribers]           */
  size_t nseen;
  uint32_t *sub_index; /* [max_subscribers] slot k's port index, or UINT32_MAX */
  uint64_t *sub_id;    /* [max_subscribers] slot k's port id, 0 when none     */
} describer;

static int alive(describer *d, uint64_t node_id) {
  for (size_t i = 0; i < d->nseen; i++)
    if (d->seen[i].id == node_id) return d->seen[i].alive;
  int a = shmbus__node_alive(d->node, node_id);
  /* At most one new node per slot: the array has room. */
  d->seen[d->nseen].id = node_id;
  d->seen[d->nseen].alive = a;
  d->nseen++;
  return a;
}

/* A registry slot, each word loaded once. 0 when the slot is free. */
static int port_from_slot(describer *d, int kind, uint32_t i, shmbus_port_info *p) {
  const shmbus__port_slot *s = view_slot(&d->v, kind, i);
  /* Pairs with the store-release of the word by a claim or a ready. */
  uint64_t word = shmbus__load64_acquire(&s->word);
  uint64_t owner = shmbus__load64_acquire(&s->node_id);
  if (word == 0 && owner == 0) return 0;
  memset(p, 0, sizeof *p);
  p->kind = kind == SHMBUS__PUBLISHER ? SHMBUS_PORT_PUBLISHER : SHMBUS_PORT_SUBSCRIBER;
  p->slot = i;
  p->id = word >> 1;
  p->node_id = owner & ~SHMBUS__SLOT_REAPER;
  if (owner == 0)
    p->state = SHMBUS_PORT_UNOWNED;
  else if (owner & SHMBUS__SLOT_REAPER)
    p->state = SHMBUS_PORT_REAPING;
  else
    p->state = (word & 1u) ? SHMBUS_PORT_READY : SHMBUS_PORT_OPENING;
  p->alive = p->node_id != 0 ? alive(d, p->node_id) : 0;
  return 1;
}

/* Appends a port to the output (if it fits) and counts it. */
static void emit_port(describer *d, const shmbus_port_info *p) {
  if (d->nports < d->port_cap) d->ports[d->nports] = *p;
  d->nports++;
}

/* Subscriber slot k's wait state, meaningful while its port is ready. */
static uint32_t subscriber_flags(const describer *d, uint32_t k) {
  const shmbus__wait_slot *w = view_wait(&d->v, k);
  uint32_t flags = 0;
  if (shmbus__load32_relaxed(&w->sleeping) != 0) flags |= SHMBUS_PORT_SLEEPING;
  if (shmbus__load64_relaxed(&w->notifier) != 0) flags |= SHMBUS_PORT_WAITSET;
  return flags;
}

/* The subscribers, whose indices come after the `npubs` publishers. */
static void find_subscribers(describer *d, size_t npubs, shmbus_port_info *subs, size_t *nsubs) {
  *nsubs = 0;
  for (uint32_t k = 0; k < d->v.cfg.max_subscribers; k++) {
    shmbus_port_info *p = &subs[*nsubs];
    d->sub_index[k] = UINT32_MAX;
    d->sub_id[k] = 0;
    if (!port_from_slot(d, SHMBUS__SUBSCRIBER, k, p)) continue;
    if (p->state == SHMBUS_PORT_READY) p->flags = subscriber_flags(d, k);
    d->sub_index[k] = (uint32_t)(npubs + *nsubs);
    d->sub_id[k] = p->id;
    ++*nsubs;
  }
}

/* A publisher's data or control segment, read-only, exactly as large as
 * the layout says, checked as a subscriber checks it. */
static int map_publisher_segment(const describer *d, uint64_t pub_id, int data,
                                 shmbus__segment *seg) {
  const shmbus__layout *l = &d->v.layout;
  uint64_t size = data ? l->data_size : l->control_size;
  char name[SHMBUS__OBJECT_NAME_MAX];
  shmbus__publisher_object_name(name, d->node->domain, d->v.hash, pub_id, data);
  int r = shmbus__segment_open_wait(
      &d->node->root, name, 0, data ? SHMBUS__SEG_DATA : SHMBUS__SEG_CONTROL, size, size, 0, seg);
  if (r) return r;
  const shmbus__seg_header *h = seg->base;
  if (shmbus__load64_relaxed(&h->total_size) != size ||
      shmbus__load64_relaxed(&h->generation) != pub_id) {
    shmbus__segment_close(seg);
    return SHMBUS_ERR_CORRUPT;
  }
  return 0;
}

/* What a connection's shared words say, each loaded once. The order makes
 * an honest connection's snapshot err on the low side: head before the
 * loss count (an eviction moves both), before the completions. */
static void read_connection(const describer *d, const shmbus__conn *conn,
                            shmbus_connection_info *c) {
  const shmbus__layout *l = &d->v.layout;
  const shmbus__service_config *cfg = &d->v.cfg;
  const uint64_t *slots = (const uint64_t *)((const uint8_t *)conn + l->sub_ring_offset);
  uint32_t mask = l->queue_cap - 1;
  int corrupt = 0;
  /* Pairs with the subscriber's compare-and-swap of head (take). */
  uint64_t head = shmbus__load64_acquire(&conn->head);
  uint64_t lost = shmbus__load64_relaxed(&conn->lost);
  /* Pairs with the store-release in shmbus__done_push. */
  uint64_t released = shmbus__load64_acquire(&conn->done_tail);
  uint64_t collected = shmbus__load64_relaxed(&conn->done_head);
  uint32_t waiting = shmbus__load32_relaxed(&conn->pub_waiting);
  /* The filled entries from head on: position p is filled when its slot's
   * tag is p + 1 (ring.h). No more than the ring's capacity is looked at. */
  uint32_t queued = 0;
  for (uint32_t i = 0; i < l->queue_cap; i++) {
    uint64_t pos = head + i;
    /* Pairs with the store-release in shmbus__ring_put. */
    uint64_t w = shmbus__load64_acquire(&slots[pos & mask]);
    if ((uint32_t)(w >> 32) != (uint32_t)(pos + 1)) break;
    queued++;
  }
  if (queued > cfg->queue_depth) {
    corrupt = 1;
    queued = cfg->queue_depth;
  }
  /* Drop-oldest loses by evicting at head (counted just before, so the
   * count may lead head by one); the others drop before the queue. */
  uint64_t evicted = cfg->overflow == SHMBUS_OVERFLOW_DROP_OLDEST ? lost : 0;
  if (evicted > head + 1) corrupt = 1;
  uint64_t delivered = head > evicted ? head - evicted : 0;
  uint64_t held = delivered > released ? delivered - released : 0;
  if (held > cfg->max_held) {
    corrupt = 1;
    held = cfg->max_held;
  }
  uint64_t returning = released - collected; /* unsigned difference */
  if (returning > l->done_cap) {
    corrupt = 1;
    returning = 0;
  }
  c->published = head + queued + (cfg->overflow == SHMBUS_OVERFLOW_DROP_NEWEST ? lost : 0);
  c->delivered = delivered;
  c->lost = lost;
  c->released = released;
  c->queued = queued;
  c->held = (uint32_t)held;
  c->in_flight = queued + (uint32_t)held + (uint32_t)returning;
  c->publisher_waiting = waiting != 0;
  if (corrupt) c->state = SHMBUS_CONNECTION_CORRUPT;
}

/* A publisher's mapped segments. */
typedef struct pub_view {
  shmbus__segment data, ctl;
  uint64_t id;
} pub_view;

static void emit_connections(describer *d, pub_view *pv, uint32_t pub_index) {
  const shmbus__layout *l = &d->v.layout;
  for (uint32_t k = 0; k < d->v.cfg.max_subscribers; k++) {
    const shmbus__conn *conn =
        (const shmbus__conn *)((const uint8_t *)pv->ctl.base + shmbus__layout_conn_offset(l, k));
    /* Pairs with the publisher's store-release of sub_id in bind(): the
     * reset connection is visible with it. */
    uint64_t bound = shmbus__load64_acquire(&conn->sub_id);
    if (bound == 0 && d->sub_index[k] == UINT32_MAX) continue;
    shmbus_connection_info c;
    memset(&c, 0, sizeof c);
    c.publisher_id = pv->id;
    c.publisher = pub_index;
    c.subscriber_slot = k;
    c.subscriber = d->sub_index[k];
    c.subscriber_id = bound != 0 ? bound : d->sub_id[k];
    if (bound == 0) {
      c.state = SHMBUS_CONNECTION_UNBOUND;
    } else {
      if (bound != d->sub_id[k])
        c.state = SHMBUS_CONNECTION_STALE;
      else /* Pairs with the subscriber's store-release of sub_ack. */
        c.state = shmbus__load64_acquire(&conn->sub_ack) == bound ? SHMBUS_CONNECTION_BOUND
                                                                  : SHMBUS_CONNECTION_BINDING;
      read_connection(d, conn, &c);
    }
    if (d->nconns < d->conn_cap) d->conns[d->nconns] = c;
    d->nconns++;
  }
}

/* What the publisher shows onlookers (layout.h), each word loaded once. */
static void read_pub_stats(const describer *d, const pub_view *pv, shmbus_port_info *p) {
  const shmbus__pub_stats *st =
      (const shmbus__pub_stats *)((const uint8_t *)pv->ctl.base + SHMBUS__PUB_STATS_OFFSET);
  p->published = shmbus__load64_relaxed(&st->published);
  p->last_timestamp_ns = shmbus__load64_relaxed(&st->last_timestamp_ns);
  uint32_t loans = shmbus__load32_relaxed(&st->loans);
  if (loans > d->v.cfg.max_loans) {
    p->error = SHMBUS_ERR_CORRUPT;
    loans = d->v.cfg.max_loans;
  }
  p->loans = loans;
}

/* A ready publisher's segments: its counters and its connections. */
static void describe_publisher(describer *d, shmbus_port_info *p, uint32_t index) {
  if (p->state != SHMBUS_PORT_READY) {
    p->error = SHMBUS_ERR_NOT_READY;
    return;
  }
  pub_view pv;
  memset(&pv, 0, sizeof pv);
  pv.id = p->id;
  p->error = map_publisher_segment(d, p->id, 0, &pv.ctl);
  int r = map_publisher_segment(d, p->id, 1, &pv.data);
  if (p->error == 0) p->error = r;
  if (pv.ctl.base) {
    read_pub_stats(d, &pv, p);
    emit_connections(d, &pv, index);
  }
  /* Zero pages replaced a mapping while we read it: nothing read is true. */
  if (shmbus__segment_faulted(&pv.ctl) || shmbus__segment_faulted(&pv.data)) {
    p->error = SHMBUS_ERR_CORRUPT;
    p->published = p->last_timestamp_ns = 0;
    p->loans = 0;
  }
  shmbus__segment_close(&pv.ctl);
  shmbus__segment_close(&pv.data);
}

/* Publishers first (by slot), then subscribers. The subscribers are read
 * first, so that each connection can name its subscriber's index. */
static void describe_ports(describer *d, shmbus_port_info *subs) {
  size_t npubs = 0, nsubs = 0;
  for (uint32_t i = 0; i < d->v.cfg.max_publishers; i++)
    npubs += port_from_slot(d, SHMBUS__PUBLISHER, i, &d->pubs[npubs]);
  find_subscribers(d, npubs, subs, &nsubs);
  for (size_t j = 0; j < npubs; j++) {
    describe_publisher(d, &d->pubs[j], (uint32_t)j);
    emit_port(d, &d->pubs[j]);
  }
  for (size_t j = 0; j < nsubs; j++) emit_port(d, &subs[j]);
}

static int describe_run(describer *d) {
  const shmbus__service_config *c = &d->v.cfg;
  d->pubs = calloc(c->max_publishers, sizeof *d->pubs);
  d->seen = calloc((size_t)c->max_publishers + c->max_subscribers, sizeof *d->seen);
  d->sub_index = calloc(c->max_subscribers, sizeof *d->sub_index);
  d->sub_id = calloc(c->max_subscribers, sizeof *d->sub_id);
  shmbus_port_info *subs = calloc(c->max_subscribers, sizeof *subs);
  int r = d->pubs && d->seen && d->sub_index && d->sub_id && subs ? 0 : SHMBUS_ERR_NOMEM;
  if (r == 0) describe_ports(d, subs);
  free(subs);
  free(d->pubs);
  free(d->seen);
  free(d->sub_index);
  free(d->sub_id);
  return r;
}

int shmbus_service_describe(shmbus_node *node, const char *service, shmbus_service_info *info,
                            shmbus_port_info *ports, size_t port_cap, size_t *port_count,
                            shmbus_connection_info *conns, size_t conn_cap, size_t *conn_count) {
  if (info) memset(info, 0, sizeof *info);
  if (port_count) *port_count = 0;
  if (conn_count) *conn_count = 0;
  if (node == NULL || service == NULL || info == NULL || (ports == NULL && port_cap > 0) ||
      (conns == NULL && conn_cap > 0))
    return SHMBUS_ERR_INVAL;
  int r = shmbus__check_service_name(service);
  if (r) return r;
  describer d;
  memset(&d, 0, sizeof d);
  d.node = node;
  d.ports = ports;
  d.port_cap = port_cap;
  d.conns = conns;
  d.conn_cap = conn_cap;
  char object[SHMBUS__OBJECT_NAME_MAX];
  shmbus__object_name(object, node->domain, shmbus__hash64(service), "s");
  r = view_open(node, object, &d.v);
  if (r) return r;
  /* The object holds another service whose name has the same hash. */
  if (strcmp((const char *)d.v.cfg.name, service) != 0) r = SHMBUS_ERR_NOT_FOUND;
  if (r == 0) {
    fill_info(&d.v, info);
    memcpy(info->object, object, strlen(object) + 1);
    r = describe_run(&d);
  }
  if (r == 0) r = view_intact(&d.v);
  view_close(&d.v);
  if (r) {
    memset(info, 0, sizeof *info);
    if (ports) memset(ports, 0, (d.nports < port_cap ? d.nports : port_cap) * sizeof *ports);
    if (conns) memset(conns, 0, (d.nconns < conn_cap ? d.nconns : conn_cap) * sizeof *conns);
    return r;
  }
  if (port_count) *port_count = d.nports;
  if (conn_count) *conn_count = d.nconns;
  return 0;
}

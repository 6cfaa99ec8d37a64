/* SPDX-License-Identifier: Apache-2.0 */
/* Service segments: creation, checked opening, the port registry and the
 * removal by the last user. */
#include <stdio.h>
#include <string.h>

#include "atomic.h"
#include "service.h"
#include "wait.h"

enum {
  DEFAULT_MAX_ELEMENTS = 1,
  DEFAULT_MAX_PUBLISHERS = 4,
  DEFAULT_MAX_SUBSCRIBERS = 8,
  DEFAULT_QUEUE_DEPTH = 16,
  DEFAULT_MAX_LOANS = 4,
  DEFAULT_MAX_HELD = 4
};

static uint64_t next_pow2(uint64_t v) {
  uint64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

static int in_range(uint32_t v, uint32_t lo, uint32_t hi) { return v >= lo && v <= hi; }

int shmbus__layout_compute(const shmbus__service_config *cfg, shmbus__layout *out) {
  memset(out, 0, sizeof *out);
  uint32_t align = cfg->element_align;
  if (cfg->element_size == 0 || align == 0 || (align & (align - 1)) != 0 || align > 4096 ||
      cfg->max_elements == 0 || !in_range(cfg->max_publishers, 1, SHMBUS_MAX_PORTS) ||
      !in_range(cfg->max_subscribers, 1, SHMBUS_MAX_PORTS) ||
      !in_range(cfg->queue_depth, 1, SHMBUS_MAX_QUEUE_DEPTH) || cfg->history > SHMBUS_MAX_HISTORY ||
      !in_range(cfg->max_loans, 1, SHMBUS_MAX_LOANS) ||
      !in_range(cfg->max_held, 1, SHMBUS_MAX_HELD) ||
      (cfg->overflow != SHMBUS_OVERFLOW_DROP_OLDEST &&
       cfg->overflow != SHMBUS_OVERFLOW_DROP_NEWEST && cfg->overflow != SHMBUS_OVERFLOW_BLOCK))
    return SHMBUS_ERR_INVAL;
  /* Both factors are below 2^32: the product fits in 64 bits. */
  uint64_t max_payload = (uint64_t)cfg->element_size * cfg->max_elements;
  if (max_payload > SHMBUS_MAX_PAYLOAD) return SHMBUS_ERR_TOO_LARGE;
  uint64_t chunk_align = align > SHMBUS__CACHE_LINE ? align : SHMBUS__CACHE_LINE;
  uint64_t payload_offset = SHMBUS__ALIGN_UP(sizeof(shmbus__chunk_header), align);
  uint64_t stride = SHMBUS__ALIGN_UP(payload_offset + max_payload, chunk_align);
  uint64_t chunks = (uint64_t)cfg->max_subscribers * (cfg->queue_depth + cfg->max_held) +
                    cfg->history + cfg->max_loans;
  uint64_t chunks_offset = SHMBUS__ALIGN_UP(sizeof(shmbus__seg_header), chunk_align);
  /* chunks < 2^26 and stride < 2^31: the product fits in 64 bits. */
  uint64_t data_size = chunks_offset + chunks * stride;
  if (data_size > (UINT64_C(1) << 46)) return SHMBUS_ERR_TOO_LARGE;
  uint64_t queue_cap = next_pow2(cfg->queue_depth);
  uint64_t done_cap = next_pow2((uint64_t)cfg->queue_depth + cfg->max_held);
  uint64_t sub_ring_offset = sizeof(shmbus__conn);
  uint64_t done_ring_offset =
      sub_ring_offset + SHMBUS__ALIGN_UP(queue_cap * sizeof(uint64_t), SHMBUS__CACHE_LINE);
  /* A page of its own per connection and per slot: confinement (layout.h). */
  uint64_t page = shmbus__page_size();
  uint64_t conn_stride = SHMBUS__ALIGN_UP(
      done_ring_offset + SHMBUS__ALIGN_UP(done_cap * sizeof(uint32_t), SHMBUS__CACHE_LINE), page);
  uint64_t slots = (uint64_t)cfg->max_publishers + cfg->max_subscribers;
  uint64_t wait_offset = page + SHMBUS__ALIGN_UP(slots * sizeof(shmbus__port_slot), page);
  uint64_t wake_offset = wait_offset + (uint64_t)cfg->max_subscribers * page;

  out->chunks = (uint32_t)chunks;
  out->payload_offset = (uint32_t)payload_offset;
  out->max_payload = max_payload;
  out->chunk_stride = stride;
  out->chunks_offset = chunks_offset;
  out->data_size = data_size;
  out->queue_cap = (uint32_t)queue_cap;
  out->done_cap = (uint32_t)done_cap;
  out->sub_ring_offset = sub_ring_offset;
  out->done_ring_offset = done_ring_offset;
  out->conn_stride = conn_stride;
  out->page = page;
  out->control_size = page + cfg->max_subscribers * conn_stride;
  out->wait_offset = wait_offset;
  out->wake_offset = wake_offset;
  out->service_size =
      wake_offset +
      SHMBUS__ALIGN_UP((uint64_t)cfg->max_subscribers * sizeof(shmbus__wake_word), page);
  return 0;
}

static uint32_t or_default(uint32_t v, uint32_t def) { return v ? v : def; }

/* The configuration a creator would write for these options. */
static int config_from_opts(const char *name, const shmbus_service_opts *o,
                            shmbus__service_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  if (o->type.size == 0 || o->type.align == 0) return SHMBUS_ERR_INVAL;
  if ((o->type.align & (o->type.align - 1)) != 0 || o->type.align > 4096) return SHMBUS_ERR_INVAL;
  if (o->type.size > UINT32_MAX) return SHMBUS_ERR_TOO_LARGE;
  if (o->overflow < SHMBUS_OVERFLOW_DEFAULT || o->overflow > SHMBUS_OVERFLOW_BLOCK)
    return SHMBUS_ERR_INVAL;
  memcpy(cfg->name, name, strlen(name) + 1);
  memcpy(cfg->type_name, o->type.name, strlen(o->type.name) + 1);
  cfg->element_size = (uint32_t)o->type.size;
  cfg->element_align = (uint32_t)o->type.align;
  cfg->max_elements = or_default(o->max_elements, DEFAULT_MAX_ELEMENTS);
  cfg->max_publishers = or_default(o->max_publishers, DEFAULT_MAX_PUBLISHERS);
  cfg->max_subscribers = or_default(o->max_subscribers, DEFAULT_MAX_SUBSCRIBERS);
  cfg->queue_depth = or_default(o->queue_depth, DEFAULT_QUEUE_DEPTH);
  cfg->history = o->history;
  cfg->max_loans = or_default(o->max_loans, DEFAULT_MAX_LOANS);
  cfg->max_held = or_default(o->max_held, DEFAULT_MAX_HELD);
  cfg->overflow = o->overflow == SHMBUS_OVERFLOW_DEFAULT ? (uint32_t)SHMBUS_OVERFLOW_DROP_OLDEST
                                                         : (uint32_t)o->overflow;
  shmbus__layout layout;
  return shmbus__layout_compute(cfg, &layout);
}

/* Whether options asked of an existing service fit what it has; if not,
 * says what differs (shmbus_error_detail). */
static int config_compatible(const shmbus__service_config *have, const char *name,
                             const shmbus_service_opts *o) {
  if (strcmp((const char *)have->name, name) != 0) { /* hash collision */
    shmbus__set_error_detail(
        "service '%s': its object holds service '%s' (the names' hashes "
        "collide: rename one)",
        name, (const char *)have->name);
    return 0;
  }
  if (strcmp((const char *)have->type_name, o->type.name) != 0) {
    shmbus__set_error_detail("service '%s' carries type '%s', not '%s'", name,
                             (const char *)have->type_name, o->type.name);
    return 0;
  }
  if (have->element_size != o->type.size || have->element_align != o->type.align) {
    shmbus__set_error_detail(
        "service '%s': type '%s' is %zu bytes with alignment %zu here, %u bytes with "
        "alignment %u in the service (a 32-bit and a 64-bit build of one struct differ when "
        "it has 8-byte fields without explicit alignment: see the README, \"Mixed 32- and "
        "64-bit processes\")",
        name, o->type.name, o->type.size, o->type.align, (unsigned)have->element_size,
        (unsigned)have->element_align);
    return 0;
  }
  const struct {
    const char *what;
    uint32_t asked, has;
  } limits[] = {
      {"max_elements", o->max_elements, have->max_elements},
      {"max_publishers", o->max_publishers, have->max_publishers},
      {"max_subscribers", o->max_subscribers, have->max_subscribers},
      {"queue_depth", o->queue_depth, have->queue_depth},
      {"history", o->history, have->history},
      {"max_loans", o->max_loans, have->max_loans},
      {"max_held", o->max_held, have->max_held},
  };
  for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
    if (limits[i].asked > limits[i].has) {
      shmbus__set_error_detail(
          "service '%s': %s %u asked, the service has %u (0 takes the "
          "service's)",
          name, limits[i].what, (unsigned)limits[i].asked, (unsigned)limits[i].has);
      return 0;
    }
  if (o->overflow != SHMBUS_OVERFLOW_DEFAULT && (uint32_t)o->overflow != have->overflow) {
    shmbus__set_error_detail(
        "service '%s': overflow %d asked, the service has %u "
        "(SHMBUS_OVERFLOW_DEFAULT takes the service's)",
        name, o->overflow, (unsigned)have->overflow);
    return 0;
  }
  return 1;
}

/* The largest service segment any valid configuration lays out: openers
 * never map more, whatever length a peer gave the object. */
static uint64_t service_size_max(void) {
  uint64_t page = shmbus__page_size();
  return page * (1 + (uint64_t)SHMBUS_MAX_PORTS) +
         SHMBUS__ALIGN_UP(2 * SHMBUS_MAX_PORTS * sizeof(shmbus__port_slot), page) +
         SHMBUS__ALIGN_UP(SHMBUS_MAX_PORTS * sizeof(shmbus__wake_word), page);
}

/* Reads the shared configuration once into a private copy and checks it:
 * a peer may have written anything there, and may write again after this
 * read. Everything after uses only the private copy and its layout. */
static int load_config(const shmbus__service *svc, shmbus__service_config *cfg,
                       shmbus__layout *layout) {
  memcpy(cfg, &svc->shm->cfg, sizeof *cfg);
  if (memchr(cfg->name, 0, sizeof cfg->name) == NULL ||
      memchr(cfg->type_name, 0, sizeof cfg->type_name) == NULL)
    return SHMBUS_ERR_CORRUPT;
  int r = shmbus__layout_compute(cfg, layout);
  if (r) return SHMBUS_ERR_CORRUPT;
  /* The header's total_size was checked against the mapping already
   * (shmbus__seg_header_wait); the mapping is what we may touch. */
  if (layout->service_size > svc->seg.size) return SHMBUS_ERR_CORRUPT;
  return 0;
}

uint64_t shmbus__service_size_max(void) { return service_size_max(); }

int shmbus__service_load_config(const shmbus__service *svc, shmbus__service_config *cfg,
                                shmbus__layout *layout) {
  return load_config(svc, cfg, layout);
}

/* ---- confinement (layout.h) --------------------------------------------- */

static void protect(shmbus__service *svc, uint64_t offset, uint64_t len, int writable) {
  /* A failure leaves more writable than wanted: less confinement, never a
   * fault of ours (sealing only narrows what the port does not write;
   * unsealing only widens, which merges mappings and cannot run out). */
  (void)shmbus__segment_protect(&svc->seg, offset, len, writable);
}

void shmbus__service_unseal(shmbus__service *svc) {
  if (svc->unsealed++ == 0) protect(svc, 0, svc->seg.size, 1);
}

/* Read-only but for what the port writes in steady state: a subscriber
 * its wait page, a publisher the wake words. Only the rest is protected,
 * so that a failure leaves more writable, never too little. */
void shmbus__service_seal(shmbus__service *svc) {
  if (svc->unsealed > 0 && --svc->unsealed > 0) return;
  const shmbus__layout *l = &svc->layout;
  uint64_t from = svc->seg.size, to = svc->seg.size;
  if (svc->own_kind == SHMBUS__SUBSCRIBER && svc->own_slot != UINT32_MAX) {
    from = shmbus__layout_wait_offset(l, svc->own_slot);
    to = from + l->page;
  } else if (svc->own_kind == SHMBUS__PUBLISHER) {
    from = l->wake_offset;
    to = l->service_size;
  }
  protect(svc, 0, from, 0);
  protect(svc, to, svc->seg.size - to, 0);
}

/* ---- users ---------------------------------------------------------------- */

/* Compare-and-swap loops on `users` give up after this many lost races: a
 * peer that rewrites the word without end must not keep us. */
enum { USERS_CAS_TRIES = 1000 };

/* Counts one more user unless the last one is removing the service. */
static int add_user(shmbus__service *svc) {
  shmbus__service_dyn *dyn = &svc->shm->dyn;
  int r = SHMBUS_ERR_BUSY;
  shmbus__service_unseal(svc);
  uint64_t users = shmbus__load64_relaxed(&dyn->users);
  for (int tries = 0; tries < USERS_CAS_TRIES; tries++) {
    if (users & SHMBUS__USERS_REMOVING) break;
    if (users >= SHMBUS__USERS_REMOVING - 1) {
      r = SHMBUS_ERR_CORRUPT;
      break;
    }
    if (shmbus__cas64(&dyn->users, &users, users + 1)) {
      r = 0;
      break;
    }
  }
  shmbus__service_seal(svc);
  return r;
}

static int create_service(shmbus__service *svc, const shmbus__service_config *cfg,
                          const shmbus__layout *layout) {
  const shmbus_node *node = svc->node;
  int r = shmbus__segment_create(&node->root, svc->object_name, layout->service_size, &svc->seg);
  if (r) return r;
  shmbus__service_seg *s = (shmbus__service_seg *)svc->seg.base;
  shmbus__seg_header_init(&s->hdr, SHMBUS__SEG_SERVICE, layout->service_size, node->id,
                          shmbus__random64());
  s->cfg = *cfg;
  s->dyn.users = 1;
  /* Random: a port of a removed instance of this service (a mapping kept
   * after the name went) never shares an id, nor object names, with a
   * port of this one. Below 2^44, far from the 2^62 the registry allows. */
  s->dyn.next_port_id = 1 + (shmbus__random64() >> 20);
  shmbus__seg_header_publish(&s->hdr);
  /* Named only now, whole: a creator that dies before leaves nothing. */
  r = shmbus__segment_publish(&node->root, svc->object_name, &svc->seg);
  if (r) shmbus__segment_close(&svc->seg);
  return r;
}

/* From here on only the private, validated copy of the configuration and
 * the layout derived from it are used. */
static void finish_attach(shmbus__service *svc, const shmbus__service_config *cfg,
                          const shmbus__layout *layout) {
  svc->shm = (shmbus__service_seg *)svc->seg.base;
  svc->cfg = *cfg;
  svc->layout = *layout;
  svc->own_kind = -1;
  svc->own_slot = UINT32_MAX;
  svc->unsealed = 0;
  shmbus__service_seal(svc);
}

static int open_checked(shmbus__service *svc, const char *object_name, uint64_t deadline,
                        shmbus__service_config *cfg, shmbus__layout *layout) {
  int r = shmbus__segment_open_wait(&svc->node->root, object_name, 1, SHMBUS__SEG_SERVICE,
                                    sizeof(shmbus__service_seg), service_size_max(), deadline,
                                    &svc->seg);
  if (r) return r;
  svc->shm = (shmbus__service_seg *)svc->seg.base;
  r = load_config(svc, cfg, layout);
  /* Mapped what the object offered, up to the largest layout: keep only
   * what ours says. */
  if (r == 0) r = shmbus__segment_shrink(&svc->seg, layout->service_size);
  if (r) shmbus__segment_close(&svc->seg);
  return r;
}

static int open_service(shmbus__service *svc, const char *name, const shmbus_service_opts *opts,
                        uint64_t deadline) {
  shmbus__service_config cfg;
  shmbus__layout layout;
  int r = open_checked(svc, svc->object_name, deadline, &cfg, &layout);
  if (r) return r;
  if (!config_compatible(&cfg, name, opts)) r = SHMBUS_ERR_INCOMPATIBLE;
  if (r == 0) {
    /* A restarted process finds the slots of its dead predecessor free.
     * Swept before we count as a user: between add_user and the slot claim
     * nothing slow may happen (a death there leaks the use). */
    finish_attach(svc, &cfg, &layout);
    shmbus__service_sweep(svc);
    r = add_user(svc);
  }
  if (r) shmbus__segment_close(&svc->seg);
  return r;
}

int shmbus__service_attach(shmbus_node *node, const char *name, const shmbus_service_opts *opts,
                           shmbus__service *svc) {
  memset(svc, 0, sizeof *svc);
  shmbus__set_error_detail(NULL);
  if (node == NULL || name == NULL || opts == NULL) return SHMBUS_ERR_INVAL;
  int r = shmbus__check_service_name(name);
  if (r) return r;
  r = shmbus__check_type_name(opts->type.name);
  if (r) return r;
  shmbus__service_config wanted;
  r = config_from_opts(name, opts, &wanted);
  if (r) return r;
  shmbus__layout wanted_layout;
  r = shmbus__layout_compute(&wanted, &wanted_layout);
  if (r) return r;
  svc->node = node;
  svc->hash = shmbus__hash64(name);
  shmbus__object_name(svc->object_name, node->domain, svc->hash, "s");

  /* Before we count as a user: see the `opening` rule in service.h. */
  shmbus__node_opening(node, 1);
  uint64_t deadline = shmbus__now_ns() + SHMBUS__INIT_TIMEOUT_NS;
  int created = 0;
  for (;;) {
    /* Opening first: most ports join a service that exists. */
    r = open_service(svc, name, opts, deadline);
    if (r == SHMBUS_ERR_NOT_FOUND) {
      r = create_service(svc, &wanted, &wanted_layout);
      created = r == 0;
    }
    /* EXISTS: another creator won; BUSY: its last user is removing it.
     * Either way the next round finds it, or finds the name free. */
    if ((r == SHMBUS_ERR_EXISTS || r == SHMBUS_ERR_BUSY) && shmbus__now_ns() < deadline) {
      shmbus__yield();
      continue;
    }
    if (r == SHMBUS_ERR_BUSY || r == SHMBUS_ERR_EXISTS) r = SHMBUS_ERR_TIMEDOUT;
    break;
  }
  if (r) {
    shmbus__node_opening(node, -1);
    memset(svc, 0, sizeof *svc);
    return r;
  }
  /* An opened service was attached by open_service already. */
  if (created) finish_attach(svc, &wanted, &wanted_layout);
  svc->opening = 1;
  return 0;
}

/* The port is ready, or its open failed: it no longer counts as opening. */
static void opened(shmbus__service *svc) {
  if (!svc->opening) return;
  svc->opening = 0;
  shmbus__node_opening(svc->node, -1);
}

int shmbus__service_attach_object(shmbus_node *node, const char *object_name, uint64_t deadline_ns,
                                  shmbus__service *svc) {
  memset(svc, 0, sizeof *svc);
  svc->node = node;
  snprintf(svc->object_name, sizeof svc->object_name, "%s", object_name);
  shmbus__service_config cfg;
  shmbus__layout layout;
  int r = open_checked(svc, object_name, deadline_ns, &cfg, &layout);
  if (r) {
    memset(svc, 0, sizeof *svc);
    return r;
  }
  finish_attach(svc, &cfg, &layout);
  r = add_user(svc);
  if (r) {
    shmbus__segment_close(&svc->seg);
    memset(svc, 0, sizeof *svc);
    return r;
  }
  svc->hash = shmbus__hash64((const char *)cfg.name);
  return 0;
}

/* Drops one use of the service, for the caller or for a dead port; the
 * one that drops the last use removes it (1 then, else 0). */
static int drop_user(shmbus__service *svc) {
  shmbus__service_dyn *dyn = &svc->shm->dyn;
  int removed = 0;
  shmbus__service_unseal(svc);
  uint64_t users = shmbus__load64_relaxed(&dyn->users);
  for (int tries = 0; tries < USERS_CAS_TRIES; tries++) {
    if (users & SHMBUS__USERS_REMOVING) break; /* corrupt: leave it to cleanup */
    uint64_t next = users <= 1 ? SHMBUS__USERS_REMOVING : users - 1;
    if (shmbus__cas64(&dyn->users, &users, next)) {
      removed = next == SHMBUS__USERS_REMOVING &&
                shmbus__segment_unlink(&svc->node->root, svc->object_name) == 0;
      break;
    }
  }
  shmbus__service_seal(svc);
  return removed;
}

int shmbus__service_detach(shmbus__service *svc) {
  if (svc->shm == NULL) return 0;
  int removed = svc->use_dropped ? 0 : drop_user(svc);
  opened(svc);
  shmbus__segment_close(&svc->seg);
  memset(svc, 0, sizeof *svc);
  return removed;
}

/* How many slots of a kind there are (the private copy's count). */
static uint32_t slot_count(const shmbus__service *svc, int kind) {
  return kind == SHMBUS__PUBLISHER ? svc->cfg.max_publishers : svc->cfg.max_subscribers;
}

int shmbus__service_claim(shmbus__service *svc, int kind, uint32_t *slot, uint64_t *id) {
  uint32_t count = slot_count(svc, kind);
  int r = SHMBUS_ERR_PORT_LIMIT;
  shmbus__service_unseal(svc);
  uint64_t my_id = shmbus__fetch_add64(&svc->shm->dyn.next_port_id, 1);
  if (my_id == 0 || my_id >= (UINT64_C(1) << 62)) r = SHMBUS_ERR_CORRUPT;
  for (uint32_t i = 0; r == SHMBUS_ERR_PORT_LIMIT && i < 2 * count; i++) {
    /* All taken: sweep once for dead ports, then look again. */
    if (i == count && shmbus__service_sweep(svc) == 0) break;
    shmbus__port_slot *p = shmbus__service_slot(svc, kind, i % count);
    /* The owner first, in one step: from here a death of ours leaves a
     * slot that names a dead node, which any sweep reclaims. */
    uint64_t expected = 0;
    if (!shmbus__cas64(&p->node_id, &expected, svc->node->id)) continue;
    if (kind == SHMBUS__SUBSCRIBER) {
      /* The previous owner's wait state; ready publishes the reset. */
      shmbus__wait_slot *w = shmbus__service_wait(svc, i % count);
      shmbus__store32_relaxed(&w->wait_mode, 0);
      shmbus__store32_relaxed(&w->sleeping, 0);
      shmbus__store64_relaxed(&w->notifier, 0);
    }
    /* Pairs with the load-acquire of the word by the other side's scan:
     * whoever sees the word sees its owner. */
    shmbus__store64_release(&p->word, my_id << 1);
    *slot = i % count;
    *id = my_id;
    svc->own_kind = kind;
    svc->own_slot = i % count;
    r = 0;
  }
  shmbus__service_seal(svc); /* a subscriber's wait page stays writable */
  return r;
}

void shmbus__remove_publisher_segments(shmbus_node *node, uint64_t service_hash, uint64_t pub_id) {
  char name[SHMBUS__OBJECT_NAME_MAX];
  for (int data = 0; data < 2; data++) {
    shmbus__publisher_object_name(name, node->domain, service_hash, pub_id, data);
    shmbus__segment_unlink(&node->root, name);
  }
}

static uint64_t *generation_of(shmbus__service *svc, int kind) {
  return kind == SHMBUS__PUBLISHER ? &svc->shm->dyn.pub_generation : &svc->shm->dyn.sub_generation;
}

/* Wakes every subscriber slot that sleeps, through waitables of its own:
 * a reaper keeps none (a cold path, after a death). */
static void wake_all(shmbus__service *svc) {
  char name[SHMBUS__OBJECT_NAME_MAX];
  for (uint32_t k = 0; k < svc->cfg.max_subscribers; k++) {
    shmbus__waitable w;
    shmbus__wake_object_name(name, svc->node->domain, svc->hash, k);
    shmbus__waitable_init(&w, &svc->node->root, name);
    shmbus__service_wake(svc, k, NULL, &w);
    shmbus__waitable_close(&w);
  }
}

int shmbus__service_reap(shmbus__service *svc, int kind, uint32_t slot, uint64_t owner) {
  if (slot >= slot_count(svc, kind)) return 0;
  shmbus__port_slot *p = shmbus__service_slot(svc, kind, slot);
  shmbus__service_unseal(svc);
  uint64_t word = shmbus__load64_acquire(&p->word);
  int port;
  if (owner == 0) {
    /* A word without an owner is a peer's: cleared, nothing else (a
     * claimant that takes the slot meanwhile writes its own word after). */
    port =
        word != 0 && shmbus__load64_acquire(&p->node_id) == 0 && shmbus__cas64(&p->word, &word, 0);
    if (!port) {
      shmbus__service_seal(svc);
      return 0;
    }
  } else {
    /* Whoever wins this exchange reclaims the slot, exactly once. A reaper
     * that dies before it finishes leaves its own mark, which the next
     * sweep finds dead and takes over. */
    uint64_t expected = owner;
    if (!shmbus__cas64(&p->node_id, &expected, SHMBUS__SLOT_REAPER | svc->node->id)) {
      shmbus__service_seal(svc);
      return 0;
    }
    /* The dead port's word, if it wrote one: 0 when it died right after
     * claiming, or while leaving. The exchange decides against a live
     * leaver (a peer can make a live port look dead); see leave. */
    word = shmbus__load64_acquire(&p->word);
    port = word != 0 && shmbus__cas64(&p->word, &word, 0);
    /* Pairs with the claimant's compare-and-swap: the word is clear first. */
    shmbus__store64_release(&p->node_id, 0);
    if (port && kind == SHMBUS__PUBLISHER)
      shmbus__remove_publisher_segments(svc->node, svc->hash, word >> 1);
    /* Its use of the service, as its detach would have: the node that
     * owned the slot counted one, and a reaper drops it only after its
     * mark is gone (a reaper killed in between leaks it, for cleanup; a
     * use dropped twice would remove a service in use). An opener that
     * sweeps before it counts itself may thereby remove the service: its
     * add_user then says BUSY and the open creates it anew. */
    drop_user(svc);
  }
  shmbus__fetch_add64(generation_of(svc, kind), 1);
  /* A subscriber we took for dead that lives (a peer can fake a death)
   * looks at its slot when this generation moves (subscriber.c). */
  if (kind == SHMBUS__SUBSCRIBER) shmbus__fetch_add64(&svc->shm->dyn.pub_generation, 1);
  if (kind == SHMBUS__PUBLISHER) {
    /* Its subscribers may be asleep with nobody else to tell them. */
    shmbus__wake_fence();
    wake_all(svc);
  }
  shmbus__service_seal(svc);
  return 1;
}

int shmbus__service_sweep(shmbus__service *svc) {
  int freed = 0;
  for (int kind = SHMBUS__PUBLISHER; kind <= SHMBUS__SUBSCRIBER; kind++) {
    uint32_t count = slot_count(svc, kind);
    for (uint32_t i = 0; i < count; i++) {
      const shmbus__port_slot *p = shmbus__service_slot(svc, kind, i);
      uint64_t owner = shmbus__load64_acquire(&p->node_id);
      if (owner == 0) {
        /* A word without an owner: no claim, leave or reap makes one (each
         * has the owner set while the word is not 0), only a peer's write. */
        if (shmbus__load64_acquire(&p->word) != 0) freed += shmbus__service_reap(svc, kind, i, 0);
        continue;
      }
      if (!shmbus__node_alive(svc->node, owner & ~SHMBUS__SLOT_REAPER))
        freed += shmbus__service_reap(svc, kind, i, owner);
    }
  }
  return freed;
}

void shmbus__service_ready(shmbus__service *svc, int kind, uint32_t slot, uint64_t id) {
  shmbus__port_slot *p = shmbus__service_slot(svc, kind, slot);
  shmbus__service_unseal(svc);
  /* Pairs with the load-acquire of the slot by the other side's scan: the
   * port's segments are complete before it is seen as ready. */
  shmbus__store64_release(&p->word, (id << 1) | 1u);
  shmbus__fetch_add64(generation_of(svc, kind), 1);
  shmbus__service_seal(svc);
  opened(svc);
}

void shmbus__service_leave(shmbus__service *svc, int kind, uint32_t slot, uint64_t id) {
  shmbus__port_slot *p = shmbus__service_slot(svc, kind, slot);
  shmbus__service_unseal(svc);
  /* Only while the slot is still ours: a reaper that took us for dead (a
   * peer can make us look dead) may have given it to another port. The
   * word first, then the owner, both by exchange: a death between them
   * leaves a slot owned by a dead node (a sweep's), and a reaper that
   * meets us takes the owner from us and then drops our use, whichever
   * of us cleared the word. */
  uint64_t word = shmbus__load64_acquire(&p->word);
  int ours = (word == ((id << 1) | 1u) || word == id << 1) && shmbus__cas64(&p->word, &word, 0);
  uint64_t owner = svc->node->id;
  /* Pairs with the next claimant's compare-and-swap. */
  if (ours) ours = shmbus__cas64(&p->node_id, &owner, 0);
  /* A reaper that freed our slot dropped our use of the service as well. */
  if (!ours) svc->use_dropped = 1;
  shmbus__fetch_add64(generation_of(svc, kind), 1);
  /* The slot is the next claimant's now: its page is not ours to write. */
  if (svc->own_kind == kind && svc->own_slot == slot) svc->own_slot = UINT32_MAX;
  shmbus__service_seal(svc);
}

void shmbus__service_wake(shmbus__service *svc, uint32_t k, uint32_t *woken, shmbus__waitable *w) {
  uint64_t notifier;
  if (!shmbus__sleeper_look(shmbus__service_wait(svc, k), woken, &notifier)) return;
  if (notifier != 0)
    shmbus__notify(svc->node->domain, notifier);
  else
    shmbus__wake(w, shmbus__service_event(svc, k));
}

/* Whether any registry slot is claimed (or written by a peer). */
static int slots_in_use(shmbus__service *svc) {
  for (int kind = SHMBUS__PUBLISHER; kind <= SHMBUS__SUBSCRIBER; kind++)
    for (uint32_t i = 0; i < slot_count(svc, kind); i++) {
      const shmbus__port_slot *p = shmbus__service_slot(svc, kind, i);
      if (shmbus__load64_acquire(&p->node_id) != 0 || shmbus__load64_acquire(&p->word) != 0)
        return 1;
    }
  return 0;
}

int shmbus__service_remove_orphaned(shmbus__service *svc, int (*alone)(shmbus_node *node)) {
  /* A slot in use after the sweep that ran before has a live owner (or a
   * peer keeps writing one). Whatever the count says beyond our own use
   * was left by ports that died between counting themselves and claiming
   * a slot. The order makes
   * it safe. A port counted in the `users` we load was opened by a node
   * whose token existed before it counted itself: if that node is another
   * one, the look for live nodes that follows sees it; if it is ours, the
   * look sees it still opening, or its slot, marked ready before it stopped
   * opening, is in the scan after that. A port that counts itself after our
   * load makes the exchange fail. */
  uint64_t users = shmbus__load64_acquire(&svc->shm->dyn.users);
  if ((users & SHMBUS__USERS_REMOVING) || !alone(svc->node) || slots_in_use(svc)) return 0;
  shmbus__service_unseal(svc);
  int removed = shmbus__cas64(&svc->shm->dyn.users, &users, SHMBUS__USERS_REMOVING);
  shmbus__service_seal(svc);
  return (removed && shmbus__segment_unlink(&svc->node->root, svc->object_name) == 0);
}

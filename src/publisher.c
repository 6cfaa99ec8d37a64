/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Publishers: a data segment (the chunk pool) and a control segment (one
 * connection per subscriber slot), plus private bookkeeping that no other
 * process can touch: reference counts, the free stack, and per connection
 * the exact set of chunks in flight on it. That set is what makes
 * reclaiming a departed or misbehaving subscriber's chunks exact.
 */
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "pool.h"
#include "ring.h"
#include "service.h"
#include "wait.h"

typedef struct pub_conn {
  shmbus__ring ring;
  uint64_t bound_id;   /* subscriber served, 0 when none                  */
  uint64_t node_id;    /* its node, for liveness checks                   */
  uint64_t next_probe; /* monotonic time before which we do not probe     */
  int broken;          /* the subscriber broke the protocol: not served   */
  int waker;           /* it may sleep: wake it after each publish        */
  uint32_t woken;      /* the last of its sleeps we woke (an epoch)       */
  uint64_t tail;       /* submission write position (we are its writer)   */
  uint64_t head_seen;  /* last head loaded; saves reloading it per publish */
  uint64_t done_head;  /* completion read position (we are its writer)    */
  uint64_t lost;       /* our copy of conn->lost (we are its writer)      */
  uint32_t inflight;   /* chunks marked below                             */
  uint32_t *shadow;    /* [queue_cap] the chunk we put at each position   */
  uint64_t *marks;     /* [chunks bits] in flight on this connection      */
} pub_conn;

struct shmbus_publisher {
  shmbus__service svc;
  uint64_t id;
  uint32_t slot;
  uint32_t depth;          /* cfg.queue_depth                        */
  uint32_t inflight_limit; /* queue_depth + max_held                 */
  uint64_t sequence;
  uint64_t sub_generation;  /* last one acted on                      */
  uint32_t wakers;          /* conns with waker set                   */
  int64_t block_timeout_ns; /* overflow BLOCK; negative: no limit     */
  int demote;               /* demote what a publish wrote (below)    */
  uint64_t last_publish_ns; /* the previous publish's stamp           */
  shmbus__segment data;
  shmbus__segment ctl;
  uint8_t *chunks;          /* first chunk in the data segment        */
  shmbus__pub_stats *stats; /* in the control segment (layout.h)    */
  shmbus__pool pool;
  uint32_t *loan_bytes; /* [chunks] bytes loaned, 0 when not on loan
                                 (never read back from the shared
                                 chunk header)                          */
  uint32_t fault_epoch; /* shmbus__fault_epoch() last looked at   */
  uint32_t loans;
  uint32_t last_loan; /* chunk of the latest loan               */
  const void *last_loan_payload;
  pub_conn *conns;         /* [max_subscribers]                      */
  shmbus__waitable *wakes; /* [max_subscribers] subscriber slot k's
                              wake word (wait.h)                   */
  shmbus__waitable *rooms; /* [max_subscribers] connection k's room
                              word; NULL unless overflow BLOCK      */
  uint32_t *serving;       /* indices of conns served, compact       */
  uint32_t nserving;
  uint32_t *history; /* [history] ring of chunk indices        */
  uint32_t history_len;
  uint32_t history_start;
};

/* ---- chunk addressing ---------------------------------------------------- */

static shmbus__chunk_header *chunk_header(const shmbus_publisher *pub, uint32_t chunk) {
  return (shmbus__chunk_header *)(pub->chunks + (uint64_t)chunk * pub->svc.layout.chunk_stride);
}

static void *chunk_payload(const shmbus_publisher *pub, uint32_t chunk) {
  return (uint8_t *)chunk_header(pub, chunk) + pub->svc.layout.payload_offset;
}

/* The loaned chunk behind a payload pointer, or -1. Private state only:
 * nothing a subscriber can write is trusted here. The last loan is
 * remembered because loan -> fill -> publish is the common rhythm, which
 * saves the division on the hot path. */
static int64_t loaned_chunk(const shmbus_publisher *pub, const void *payload) {
  if (payload == pub->last_loan_payload && pub->loan_bytes[pub->last_loan]) return pub->last_loan;
  const shmbus__layout *l = &pub->svc.layout;
  uintptr_t p = (uintptr_t)payload, first = (uintptr_t)pub->chunks + l->payload_offset;
  if (p < first) return -1;
  uint64_t off = (uint64_t)(p - first);
  uint64_t chunk = off / l->chunk_stride;
  if (chunk >= l->chunks || off != chunk * l->chunk_stride || !pub->loan_bytes[chunk]) return -1;
  return (int64_t)chunk;
}

/* ---- in-flight marks --------------------------------------------------- */

static int marked(const pub_conn *c, uint32_t chunk) {
  return (int)((c->marks[chunk >> 6] >> (chunk & 63)) & 1u);
}

static void mark(pub_conn *c, uint32_t chunk) {
  c->marks[chunk >> 6] |= UINT64_C(1) << (chunk & 63);
  c->inflight++;
}

static void unmark(pub_conn *c, uint32_t chunk) {
  c->marks[chunk >> 6] &= ~(UINT64_C(1) << (chunk & 63));
  c->inflight--;
}

/* Gives back every chunk in flight on a connection: exact, whatever the
 * subscriber did, because the marks are ours. */
static void reclaim_all(shmbus_publisher *pub, pub_conn *c) {
  uint32_t words = (pub->svc.layout.chunks + 63) / 64;
  for (uint32_t w = 0; w < words && c->inflight > 0; w++) {
    while (c->marks[w]) {
      uint32_t chunk = w * 64 + shmbus__ctz64(c->marks[w]);
      unmark(c, chunk);
      shmbus__pool_unref(&pub->pool, chunk);
    }
  }
}

/* ---- connections ------------------------------------------------------- */

static void count_lost(pub_conn *c) {
  c->lost++;
  shmbus__store64_relaxed(&c->ring.conn->lost, c->lost);
}

/* Stops serving a subscriber that broke the protocol (or whose words a
 * peer forged). Its queue is voided before its chunks are reclaimed, and
 * sub_id cleared, which the subscriber takes for CORRUPT (subscriber.c,
 * cut_off) instead of an endless EMPTY. */
static void break_conn(shmbus_publisher *pub, pub_conn *c) {
  shmbus__ring_void(&c->ring, c->tail);
  reclaim_all(pub, c);
  c->broken = 1;
  /* Pairs with the subscriber's load-acquire of sub_id (try_bind, cut_off). */
  shmbus__store64_release(&c->ring.conn->sub_id, 0);
}

enum { PROBE_INTERVAL_NS = 10 * 1000 * 1000 };

/* A subscriber stopped consuming (its queue overflows or it holds too
 * much): if its node died, free its slot so that the next look at the
 * registry reclaims its chunks. At most one probe per connection per
 * PROBE_INTERVAL_NS: a slow but live subscriber costs no system calls. */
static void suspect(shmbus_publisher *pub, uint32_t k) {
  pub_conn *c = &pub->conns[k];
  uint64_t now = shmbus__now_ns();
  if (now < c->next_probe) return;
  c->next_probe = now + PROBE_INTERVAL_NS;
  if (!shmbus__node_alive(pub->svc.node, c->node_id))
    shmbus__service_reap(&pub->svc, SHMBUS__SUBSCRIBER, k, c->node_id);
}

/* Collects released chunks. Validates every index against our marks: a
 * subscriber that returns what it does not hold is cut off. */
static void collect(shmbus_publisher *pub, pub_conn *c) {
  if (c->broken) return;
  uint64_t tail = shmbus__done_available(&c->ring);
  uint64_t n = tail - c->done_head;
  if (n == 0) return;
  if (n > (uint64_t)c->ring.done_mask + 1) {
    break_conn(pub, c);
    return;
  }
  for (uint64_t pos = c->done_head; pos != tail; pos++) {
    uint32_t chunk = shmbus__done_at(&c->ring, pos);
    if (chunk >= pub->svc.layout.chunks || !marked(c, chunk)) {
      break_conn(pub, c);
      return;
    }
    unmark(c, chunk);
    shmbus__pool_unref(&pub->pool, chunk);
  }
  c->done_head = tail;
  shmbus__done_consumed(&c->ring, tail);
}

/* Loads the subscriber's read position into head_seen, checked: head only
 * moves forward, from the last one seen up to tail at most; anything else
 * (ahead of tail, behind what we saw, too far behind) breaks the
 * connection (0). */
static int load_head(shmbus_publisher *pub, pub_conn *c) {
  uint64_t head = shmbus__ring_head(&c->ring);
  if (head - c->head_seen > c->tail - c->head_seen || c->tail - head > pub->depth) {
    break_conn(pub, c);
    return 0;
  }
  c->head_seen = head;
  return 1;
}

/* Makes room in a full submission ring. 1 when there is room. */
static int make_room(shmbus_publisher *pub, pub_conn *c) {
  for (int tries = 0; tries < 4; tries++) {
    if (!load_head(pub, c)) return 0;
    uint64_t head = c->head_seen;
    if (c->tail - head < pub->depth) return 1;
    if (pub->svc.cfg.overflow != SHMBUS_OVERFLOW_DROP_OLDEST) return 0;
    /* Counted before the eviction: a subscriber that takes the sample after
     * the evicted one (its head CAS follows ours) sees the loss counted, and
     * a publisher killed in between leaves an over-count, never a gap that
     * nothing accounts for. */
    count_lost(c);
    if (shmbus__ring_evict(&c->ring, &head)) {
      uint32_t evicted = c->shadow[head & c->ring.slot_mask];
      c->head_seen = head + 1;
      /* Queued, so still in flight on this connection, unless the
       * subscriber "released" it without taking it: then its reference is
       * gone already, and dropping it again would free a chunk that others
       * hold. */
      if (!marked(c, evicted)) {
        break_conn(pub, c);
        return 0;
      }
      unmark(c, evicted);
      shmbus__pool_unref(&pub->pool, evicted);
      return 1;
    }
    /* The subscriber took the oldest meanwhile: not lost; look again. */
    c->lost--;
    shmbus__store64_relaxed(&c->ring.conn->lost, c->lost);
  }
  break_conn(pub, c);
  return 0;
}

/* ---- waking subscribers -------------------------------------------------
 * A subscriber that may sleep sets wait_mode in its slot once. We notice it
 * (a relaxed load per delivery until then, or at bind after a fence), say
 * so in the connection's wait_ack, and from then on follow each publish by
 * a fence and a look at its `sleeping` word: the fence pairs with the one
 * the sleeper issues between storing `sleeping` and its last look at the
 * rings, so either it sees the sample or we see it asleep. A subscriber
 * does not sleep for long on a connection that has not acknowledged. Busy
 * subscribers cost one predictable branch per delivery. */

static void set_waker(shmbus_publisher *pub, pub_conn *c, int on) {
  if (c->waker == on) return;
  c->waker = on;
  if (on) {
    pub->wakers++;
    /* Pairs with the subscriber's load-acquire of wait_ack: what we
     * delivered before is visible with it. */
    shmbus__store64_release(&c->ring.conn->wait_ack, c->bound_id);
  } else {
    pub->wakers--;
  }
}

static void watch_wait_mode(shmbus_publisher *pub, uint32_t k) {
  if (shmbus__load32_relaxed(&shmbus__service_wait(&pub->svc, k)->wait_mode) != 0)
    set_waker(pub, &pub->conns[k], 1);
}

/* After the samples of a publish are in the rings. */
static void wake_sleepers(shmbus_publisher *pub) {
  if (pub->wakers == 0) return;
  shmbus__wake_fence();
  for (uint32_t i = 0; i < pub->nserving; i++) {
    uint32_t k = pub->serving[i];
    if (pub->conns[k].waker)
      shmbus__service_wake(&pub->svc, k, &pub->conns[k].woken, &pub->wakes[k]);
  }
}

static void deliver(shmbus_publisher *pub, uint32_t k, uint32_t chunk) {
  pub_conn *c = &pub->conns[k];
  if (c->broken) return;
  if (c->tail - c->head_seen >= pub->depth) {
    uint64_t lost = c->lost;
    int room = make_room(pub, c);
    if (c->lost != lost || !room) suspect(pub, k);
    if (!room) {
      if (!c->broken) count_lost(c);
      return;
    }
  }
  if (c->inflight >= pub->inflight_limit) {
    collect(pub, c);
    if (c->broken) return;
    /* Still full: the subscriber holds more than max_held. Never let one
     * subscriber eat the pool: the sample is lost for it alone. */
    if (c->inflight >= pub->inflight_limit) {
      suspect(pub, k);
      count_lost(c);
      return;
    }
  }
  c->shadow[c->tail & c->ring.slot_mask] = chunk;
  shmbus__ring_put(&c->ring, c->tail, chunk);
  c->tail++;
  mark(c, chunk);
  shmbus__pool_ref(&pub->pool, chunk);
  if (!c->waker) watch_wait_mode(pub, k);
}

static void unbind(shmbus_publisher *pub, pub_conn *c) {
  reclaim_all(pub, c);
  /* Pairs with the subscriber's load-acquire of sub_id (try_bind). */
  shmbus__store64_release(&c->ring.conn->sub_id, 0);
  set_waker(pub, c, 0);
  c->bound_id = 0;
  c->broken = 0;
}

static void history_replay(shmbus_publisher *pub, uint32_t k) {
  uint32_t n = pub->history_len < pub->depth ? pub->history_len : pub->depth;
  uint32_t cap = pub->svc.cfg.history;
  for (uint32_t i = pub->history_len - n; i < pub->history_len; i++)
    deliver(pub, k, pub->history[(pub->history_start + i) % cap]);
}

static void bind(shmbus_publisher *pub, uint32_t k, uint64_t sub_id) {
  pub_conn *c = &pub->conns[k];
  shmbus__conn *conn = c->ring.conn;
  /* Its owner, written before the word we saw ready (a reaper's mark, if
   * one came meanwhile, names the reaper: then no probe judges it). */
  c->node_id =
      shmbus__load64_relaxed(&shmbus__service_slot(&pub->svc, SHMBUS__SUBSCRIBER, k)->node_id) &
      ~SHMBUS__SLOT_REAPER;
  c->next_probe = 0;
  /* Nobody else touches the connection now: its previous subscriber left
   * and the new one waits for sub_id to name it. */
  shmbus__store64_relaxed(&conn->head, 0);
  shmbus__store64_relaxed(&conn->done_tail, 0);
  shmbus__store64_relaxed(&conn->sub_ack, 0);
  shmbus__store64_relaxed(&conn->done_head, 0);
  shmbus__store64_relaxed(&conn->lost, 0);
  shmbus__store64_relaxed(&conn->wait_ack, 0);
  shmbus__store32_relaxed(&conn->pub_waiting, 0);
  shmbus__store32_relaxed(&conn->room_event, 0);
  set_waker(pub, c, 0);
  for (uint32_t i = 0; i <= c->ring.slot_mask; i++) shmbus__store64_relaxed(&c->ring.slots[i], 0);
  c->tail = c->head_seen = c->done_head = c->lost = 0;
  c->broken = 0;
  c->woken = 0;         /* the previous subscriber's epochs mean nothing now */
  c->bound_id = sub_id; /* the replay may acknowledge wait_mode with it */
  history_replay(pub, k);
  /* Pairs with the subscriber's load-acquire of sub_id (try_bind): the
   * reset connection and the replayed history are visible first. */
  shmbus__store64_release(&conn->sub_id, sub_id);
  /* Pairs with the fence in the subscriber's arm: it either sees the
   * generation that announced us and our sub_id, or we see its wait_mode
   * and that it sleeps. Woken, it maps us and acknowledges the binding, so
   * that shmbus_publisher_update counts a subscriber asleep in a wait or an
   * event loop before anything is published. */
  shmbus__wake_fence();
  watch_wait_mode(pub, k);
  shmbus__service_wake(&pub->svc, k, &c->woken, &pub->wakes[k]);
}

/* Acts on subscribers that joined or left since the last look. */
static void update_connections(shmbus_publisher *pub, int force) {
  /* Pairs with the fetch-add in shmbus__service_ready/_leave. */
  uint64_t gen = shmbus__load64_acquire(&pub->svc.shm->dyn.sub_generation);
  if (gen == pub->sub_generation && !force) return;
  pub->sub_generation = gen;
  pub->nserving = 0;
  for (uint32_t k = 0; k < pub->svc.cfg.max_subscribers; k++) {
    pub_conn *c = &pub->conns[k];
    /* Pairs with the store-release in shmbus__service_ready. */
    uint64_t id = shmbus__slot_ready_id(
        shmbus__load64_acquire(&shmbus__service_slot(&pub->svc, SHMBUS__SUBSCRIBER, k)->word));
    if (c->bound_id != id) {
      if (c->bound_id) unbind(pub, c);
      if (id) bind(pub, k, id);
    }
    if (c->bound_id) pub->serving[pub->nserving++] = k;
  }
}

/* ---- open / close ------------------------------------------------------ */

static int create_segments(shmbus_publisher *pub) {
  const shmbus__layout *l = &pub->svc.layout;
  shmbus_node *node = pub->svc.node;
  char name[SHMBUS__OBJECT_NAME_MAX];
  shmbus__publisher_object_name(name, node->domain, pub->svc.hash, pub->id, 1);
  int r = shmbus__segment_create(&node->root, name, l->data_size, &pub->data);
  if (r) return r;
  shmbus__publisher_object_name(name, node->domain, pub->svc.hash, pub->id, 0);
  r = shmbus__segment_create(&node->root, name, l->control_size, &pub->ctl);
  if (r) return r; /* the caller's remove_segments takes the data segment */
  shmbus__seg_header_init(pub->data.base, SHMBUS__SEG_DATA, l->data_size, node->id, pub->id);
  shmbus__seg_header_init(pub->ctl.base, SHMBUS__SEG_CONTROL, l->control_size, node->id, pub->id);
  pub->chunks = (uint8_t *)pub->data.base + l->chunks_offset;
  pub->stats = (shmbus__pub_stats *)((uint8_t *)pub->ctl.base + SHMBUS__PUB_STATS_OFFSET);
  shmbus__seg_header_publish(pub->data.base);
  shmbus__seg_header_publish(pub->ctl.base);
  shmbus__publisher_object_name(name, node->domain, pub->svc.hash, pub->id, 1);
  r = shmbus__segment_publish(&node->root, name, &pub->data);
  if (r) return r;
  shmbus__publisher_object_name(name, node->domain, pub->svc.hash, pub->id, 0);
  return shmbus__segment_publish(&node->root, name, &pub->ctl);
}

/* Undoes create_segments, whole or in part (a failed open). */
static void remove_segments(shmbus_publisher *pub) {
  if (pub->data.base == NULL && pub->ctl.base == NULL) return;
  shmbus__segment_close(&pub->data);
  shmbus__segment_close(&pub->ctl);
  shmbus__remove_publisher_segments(pub->svc.node, pub->svc.hash, pub->id);
}

static void free_private(shmbus_publisher *pub) {
  if (pub->conns) {
    for (uint32_t k = 0; k < pub->svc.cfg.max_subscribers; k++) {
      free(pub->conns[k].shadow);
      free(pub->conns[k].marks);
    }
  }
  free(pub->conns);
  free(pub->serving);
  free(pub->history);
  free(pub->loan_bytes);
  shmbus__pool_destroy(&pub->pool);
}

static void free_waitables(shmbus_publisher *pub) {
  for (uint32_t k = 0; k < pub->svc.cfg.max_subscribers; k++) {
    if (pub->wakes) shmbus__waitable_close(&pub->wakes[k]);
    if (pub->rooms) shmbus__waitable_close(&pub->rooms[k]);
  }
  free(pub->wakes);
  free(pub->rooms);
}

/* The OS objects of the words we wake (subscriber slots) and sleep on
 * (room, overflow BLOCK only). The room objects exist before we first
 * announce that we wait; a failure to make one only makes that wait sleep
 * in short slices (platform.h). */
static int alloc_waitables(shmbus_publisher *pub) {
  const shmbus__service_config *cfg = &pub->svc.cfg;
  shmbus_node *node = pub->svc.node;
  char name[SHMBUS__OBJECT_NAME_MAX];
  pub->wakes = calloc(cfg->max_subscribers, sizeof *pub->wakes);
  if (cfg->overflow == SHMBUS_OVERFLOW_BLOCK)
    pub->rooms = calloc(cfg->max_subscribers, sizeof *pub->rooms);
  if (!pub->wakes || (cfg->overflow == SHMBUS_OVERFLOW_BLOCK && !pub->rooms))
    return SHMBUS_ERR_NOMEM;
  for (uint32_t k = 0; k < cfg->max_subscribers; k++) {
    shmbus__wake_object_name(name, node->domain, pub->svc.hash, k);
    shmbus__waitable_init(&pub->wakes[k], &node->root, name);
    if (pub->rooms) {
      shmbus__room_object_name(name, node->domain, pub->svc.hash, pub->id, k);
      shmbus__waitable_init(&pub->rooms[k], &node->root, name);
      (void)shmbus__waitable_open(&pub->rooms[k]);
    }
  }
  return 0;
}

static int alloc_private(shmbus_publisher *pub) {
  const shmbus__layout *l = &pub->svc.layout;
  const shmbus__service_config *cfg = &pub->svc.cfg;
  if (shmbus__pool_init(&pub->pool, l->chunks)) return SHMBUS_ERR_NOMEM;
  pub->loan_bytes = calloc(l->chunks, sizeof *pub->loan_bytes);
  pub->conns = calloc(cfg->max_subscribers, sizeof *pub->conns);
  pub->serving = calloc(cfg->max_subscribers, sizeof *pub->serving);
  pub->history = cfg->history ? calloc(cfg->history, sizeof *pub->history) : NULL;
  if (!pub->loan_bytes || !pub->conns || !pub->serving || (cfg->history && !pub->history))
    return SHMBUS_ERR_NOMEM;
  size_t mark_words = ((size_t)l->chunks + 63) / 64;
  for (uint32_t k = 0; k < cfg->max_subscribers; k++) {
    pub_conn *c = &pub->conns[k];
    c->shadow = calloc(l->queue_cap, sizeof *c->shadow);
    c->marks = calloc(mark_words, sizeof *c->marks);
    if (!c->shadow || !c->marks) return SHMBUS_ERR_NOMEM;
    shmbus__ring_view(&c->ring, (uint8_t *)pub->ctl.base + shmbus__layout_conn_offset(l, k),
                      l->sub_ring_offset, l->done_ring_offset, l->queue_cap, l->done_cap);
  }
  return 0;
}

int shmbus_publisher_open(shmbus_node *node, const char *service, const shmbus_service_opts *opts,
                          shmbus_publisher **out) {
  SHMBUS__CLEAR_OUT(out);
  if (node == NULL || service == NULL || opts == NULL || out == NULL) return SHMBUS_ERR_INVAL;
  shmbus_publisher *pub = calloc(1, sizeof *pub);
  if (pub == NULL) return SHMBUS_ERR_NOMEM;
  /* Subscribers in wait sets are woken through it: made now, not found
   * missing at a publish (and before we count as a user of the service:
   * nothing slow between that and the slot claim). */
  int r = shmbus__notify_init();
  if (r) {
    free(pub);
    return r;
  }
  r = shmbus__service_attach(node, service, opts, &pub->svc);
  if (r) {
    free(pub);
    return r;
  }
  shmbus__node_ref(node);
  pub->depth = pub->svc.cfg.queue_depth;
  pub->inflight_limit = pub->svc.cfg.queue_depth + pub->svc.cfg.max_held;
  pub->block_timeout_ns = -1;
  pub->demote = shmbus__cpu_can_demote() && !shmbus__env_off("SHMBUS_CLDEMOTE");
  int claimed = 0;
  r = shmbus__service_claim(&pub->svc, SHMBUS__PUBLISHER, &pub->slot, &pub->id);
  if (r == 0) {
    claimed = 1;
    r = create_segments(pub);
  }
  if (r == 0) r = alloc_private(pub);
  if (r == 0) r = alloc_waitables(pub);
  if (r) {
    if (claimed) shmbus__service_leave(&pub->svc, SHMBUS__PUBLISHER, pub->slot, pub->id);
    remove_segments(pub);
    free_private(pub);
    free_waitables(pub);
    shmbus__service_detach(&pub->svc);
    shmbus__node_unref(node);
    free(pub);
    return r;
  }
  shmbus__service_ready(&pub->svc, SHMBUS__PUBLISHER, pub->slot, pub->id);
  update_connections(pub, 1);
  *out = pub;
  return 0;
}

void shmbus_publisher_close(shmbus_publisher *pub) {
  if (pub == NULL) return;
  shmbus_node *node = pub->svc.node;
  /* Subscribers notice through the generation and drain what is queued;
   * the segments live on in their mappings until they let go. Leave and
   * detach follow each other with nothing slow between: a death between
   * them would leak our use of the service. */
  shmbus__remove_publisher_segments(node, pub->svc.hash, pub->id);
  free_private(pub);
  shmbus__service_leave(&pub->svc, SHMBUS__PUBLISHER, pub->slot, pub->id);
  /* Sleepers learn that we left (the generation) and may be left with no
   * publisher. */
  shmbus__wake_fence();
  for (uint32_t k = 0; k < pub->svc.cfg.max_subscribers; k++)
    shmbus__service_wake(&pub->svc, k, NULL, &pub->wakes[k]);
  free_waitables(pub);
  shmbus__service_detach(&pub->svc);
  shmbus__segment_close(&pub->data);
  shmbus__segment_close(&pub->ctl);
  shmbus__node_unref(node);
  free(pub);
}

/* ---- the hot path ------------------------------------------------------ */

static void collect_all(shmbus_publisher *pub) {
  for (uint32_t i = 0; i < pub->nserving; i++) collect(pub, &pub->conns[pub->serving[i]]);
}

int shmbus_publisher_loan(shmbus_publisher *pub, size_t elements, void **payload) {
  SHMBUS__CLEAR_OUT(payload);
  if (pub == NULL || payload == NULL || elements == 0) return SHMBUS_ERR_INVAL;
  if (elements > pub->svc.cfg.max_elements) return SHMBUS_ERR_TOO_LARGE;
  if (pub->loans >= pub->svc.cfg.max_loans) return SHMBUS_ERR_LOAN_LIMIT;
  uint32_t chunk;
  if (!shmbus__pool_get(&pub->pool, &chunk)) {
    collect_all(pub);
    /* The pool is sized for the worst case (service.c): with fewer than
     * max_loans out, a chunk is free once completions are collected. */
    if (!shmbus__pool_get(&pub->pool, &chunk)) return SHMBUS_ERR_CORRUPT;
  }
  shmbus__store32_relaxed(&pub->stats->loans, ++pub->loans);
  pub->loan_bytes[chunk] = (uint32_t)(elements * pub->svc.cfg.element_size);
  *payload = chunk_payload(pub, chunk);
  pub->last_loan = chunk;
  pub->last_loan_payload = *payload;
  return 0;
}

static void end_loan(shmbus_publisher *pub, uint32_t chunk) {
  pub->loan_bytes[chunk] = 0;
  shmbus__store32_relaxed(&pub->stats->loans, --pub->loans);
  shmbus__pool_unref(&pub->pool, chunk);
}

static void history_push(shmbus_publisher *pub, uint32_t chunk) {
  uint32_t cap = pub->svc.cfg.history;
  if (pub->history_len == cap) {
    shmbus__pool_unref(&pub->pool, pub->history[pub->history_start]);
    pub->history_start = (pub->history_start + 1) % cap;
    pub->history_len--;
  }
  pub->history[(pub->history_start + pub->history_len) % cap] = chunk;
  pub->history_len++;
  shmbus__pool_ref(&pub->pool, chunk);
}

/* ---- backpressure (SHMBUS_OVERFLOW_BLOCK) ---------------------------------
 * A publish first waits until every connection has room: a free queue slot
 * and an in-flight count below queue_depth + max_held. The publisher sleeps
 * on the connection's room_event after announcing itself in pub_waiting; a
 * subscriber that frees room (take, release) and sees pub_waiting adds to
 * room_event and wakes it (the fences on both sides pair as for subscriber
 * sleep). Every ROOM_SLICE_NS it checks that the subscriber lives. */

enum { ROOM_SLICE_NS = 10 * 1000 * 1000 };

/* 1 when connection k cannot take another sample now. */
static int conn_full(shmbus_publisher *pub, pub_conn *c) {
  if (c->broken) return 0;
  if (c->tail - c->head_seen >= pub->depth) {
    if (!load_head(pub, c)) return 0;
    if (c->tail - c->head_seen >= pub->depth) return 1;
  }
  if (c->inflight >= pub->inflight_limit) collect(pub, c);
  return !c->broken && c->inflight >= pub->inflight_limit;
}

/* Sleeps once on connection k's room_event, at most until `until`. */
static void sleep_for_room(shmbus_publisher *pub, uint32_t k, uint64_t until) {
  pub_conn *c = &pub->conns[k];
  shmbus__conn *conn = c->ring.conn;
  uint32_t seen = shmbus__room_arm(conn);
  uint64_t now = shmbus__now_ns();
  /* Pairs with the fetch-add in shmbus__service_leave: a subscriber that
   * left is not waited for. */
  if (conn_full(pub, c) && now < until &&
      shmbus__load64_acquire(&pub->svc.shm->dyn.sub_generation) == pub->sub_generation)
    shmbus__sleep(&pub->rooms[k], &conn->room_event, seen, (int64_t)(until - now));
  shmbus__room_disarm(conn);
}

static int wait_for_room(shmbus_publisher *pub) {
  uint64_t now = shmbus__now_ns();
  uint64_t deadline =
      pub->block_timeout_ns < 0 ? UINT64_MAX : now + (uint64_t)pub->block_timeout_ns;
  uint64_t next_probe = now + ROOM_SLICE_NS;
  for (int round = 0;; round++) {
    /* Every round, not only before a sleep: a peer that keeps bumping
     * sub_generation sends us round again without one. */
    if (round > 0 && shmbus__now_ns() >= deadline) return SHMBUS_ERR_TIMEDOUT;
    update_connections(pub, 0);
    uint64_t gen = pub->sub_generation;
    uint32_t i = 0;
    for (; i < pub->nserving; i++) {
      uint32_t k = pub->serving[i];
      if (!conn_full(pub, &pub->conns[k])) continue;
      now = shmbus__now_ns();
      if (now >= deadline) return SHMBUS_ERR_TIMEDOUT;
      /* Liveness by the clock, not by how the sleep ended: signals or a
       * subscriber that keeps bumping room_event do not postpone it. */
      if (now >= next_probe) {
        next_probe = now + ROOM_SLICE_NS;
        pub_conn *c = &pub->conns[k];
        if (!shmbus__node_alive(pub->svc.node, c->node_id)) {
          /* One that closed before its process ended left its slot, and
           * did not die on us: the next round unbinds it and delivers to
           * the others. (Its leave is visible once its token is released;
           * the slot, not the generation, which any peer can bump.)
           * Pairs with the compare-and-swap in shmbus__service_leave. */
          uint64_t word =
              shmbus__load64_acquire(&shmbus__service_slot(&pub->svc, SHMBUS__SUBSCRIBER, k)->word);
          if (shmbus__slot_ready_id(word) != c->bound_id) break;
          shmbus__service_reap(&pub->svc, SHMBUS__SUBSCRIBER, k, c->node_id);
          update_connections(pub, 0);
          return SHMBUS_ERR_PEER_DEAD;
        }
      }
      sleep_for_room(pub, k, deadline < next_probe ? deadline : next_probe);
      break; /* look at every connection again: the set may have changed */
    }
    if (i == pub->nserving) {
      /* Pairs with the fetch-add in shmbus__service_ready/_leave: nobody
       * joined or left since the look; every connection has room. */
      if (shmbus__load64_acquire(&pub->svc.shm->dyn.sub_generation) == gen) return 0;
    }
  }
}

/* CORRUPT once a peer truncated one of our segments (the fault handler
 * put zero pages in its place, platform.h): nobody can see what we publish
 * any more. Costs one load of a process-local counter until a fault. */
static int own_segments_intact(shmbus_publisher *pub) {
  uint32_t epoch = shmbus__fault_epoch();
  if (epoch == pub->fault_epoch) return 0;
  if (shmbus__segment_faulted(&pub->data) || shmbus__segment_faulted(&pub->ctl) ||
      shmbus__segment_faulted(&pub->svc.seg))
    return SHMBUS_ERR_CORRUPT;
  pub->fault_epoch = epoch;
  return 0;
}

/* Pushes the lines a subscriber reads first, the chunk's header (with the
 * payload's first bytes) and each slot just filled, out of our caches to
 * the shared one (shmbus__cpu_demote), so that the subscriber's read of
 * them hits there instead of snooping our core: measured 10-15% off a busy
 * hop's latency between two cores that share no cache but L3
 * (docs/performance.md). Only after a pause in publishing: a publisher
 * that publishes back to back (a stream, whose subscribers read behind it)
 * writes the same slot line again next time and would fetch it back, which
 * halved the throughput when it demoted every time. Each demote costs the
 * publisher about 10 ns after its signals went out (16 subscribers: about
 * 160 ns more per publish), so the slots only for a few subscribers. */
#define SHMBUS__DEMOTE_GAP_NS 256u
#define SHMBUS__DEMOTE_MAX_SLOTS 4u

static void demote(const shmbus_publisher *pub, uint32_t chunk) {
  const uint8_t *hdr = (const uint8_t *)chunk_header(pub, chunk);
  shmbus__cpu_demote(hdr);
  if (pub->svc.layout.payload_offset >= SHMBUS__CACHE_LINE)
    shmbus__cpu_demote(hdr + pub->svc.layout.payload_offset);
  if (pub->nserving > SHMBUS__DEMOTE_MAX_SLOTS) return;
  for (uint32_t i = 0; i < pub->nserving; i++) {
    const pub_conn *c = &pub->conns[pub->serving[i]];
    shmbus__cpu_demote(&c->ring.slots[(c->tail - 1) & c->ring.slot_mask]);
  }
}

/* After a publish, the bookkeeping that the next one would otherwise do
 * before its delivery: reloading the head of a queue that looks full, and
 * collecting the completions of a connection at its in-flight limit. Both
 * read lines the subscriber writes, about once in 16 publishes; done here,
 * after the signal went out, they overlap with the subscriber's work
 * instead of delaying the next sample (a request-reply publisher waits
 * for the reply next): busy 64 B p99 606 -> 381 ns and p90 354 -> 303 ns,
 * p50 and throughput unchanged (docs/performance.md). */
static void look_ahead(shmbus_publisher *pub) {
  for (uint32_t i = 0; i < pub->nserving; i++) {
    pub_conn *c = &pub->conns[pub->serving[i]];
    if (!c->broken && c->tail - c->head_seen >= pub->depth) (void)load_head(pub, c);
    if (!c->broken && c->inflight >= pub->inflight_limit) collect(pub, c);
  }
}

static int publish_chunk(shmbus_publisher *pub, void *payload, size_t bytes, int whole) {
  if (pub == NULL || payload == NULL) return SHMBUS_ERR_INVAL;
  int64_t found = loaned_chunk(pub, payload);
  if (found < 0) return SHMBUS_ERR_NOT_LOANED;
  uint32_t chunk = (uint32_t)found;
  shmbus__chunk_header *hdr = chunk_header(pub, chunk);
  /* The loan's size is ours: the shared header may say anything. */
  if (!whole && bytes > pub->loan_bytes[chunk]) return SHMBUS_ERR_TOO_LARGE;
  int r = own_segments_intact(pub);
  if (r) return r;
  if (pub->svc.cfg.overflow == SHMBUS_OVERFLOW_BLOCK) {
    /* Its look at the subscribers is the one this publish delivers to:
     * one bound later could be full of history. */
    r = wait_for_room(pub);
    if (r) return r; /* still the caller's loan, unchanged */
  } else {
    update_connections(pub, 0);
  }
  /* Written, never read back (a subscriber's view of the chunk is its own
   * problem; ours is private). */
  shmbus__store32_relaxed(&hdr->payload_bytes, whole ? pub->loan_bytes[chunk] : (uint32_t)bytes);
  uint64_t now = shmbus__now_ns();
  shmbus__store64_relaxed(&hdr->sequence, pub->sequence++);
  shmbus__store64_relaxed(&hdr->timestamp_ns, now);
  shmbus__store64_relaxed(&hdr->publisher_id, pub->id);
  for (uint32_t i = 0; i < pub->nserving; i++) deliver(pub, pub->serving[i], chunk);
  if (pub->demote && now - pub->last_publish_ns >= SHMBUS__DEMOTE_GAP_NS) demote(pub, chunk);
  pub->last_publish_ns = now;
  shmbus__store64_relaxed(&pub->stats->published, pub->sequence);
  shmbus__store64_relaxed(&pub->stats->last_timestamp_ns, now);
  wake_sleepers(pub);
  if (pub->svc.cfg.history) history_push(pub, chunk);
  end_loan(pub, chunk);
  look_ahead(pub);
  return 0;
}

int shmbus_publisher_publish(shmbus_publisher *pub, void *payload) {
  return publish_chunk(pub, payload, 0, 1);
}

int shmbus_publisher_publish_bytes(shmbus_publisher *pub, void *payload, size_t bytes) {
  return publish_chunk(pub, payload, bytes, 0);
}

int shmbus_publisher_discard(shmbus_publisher *pub, void *payload) {
  if (pub == NULL || payload == NULL) return SHMBUS_ERR_INVAL;
  int64_t found = loaned_chunk(pub, payload);
  if (found < 0) return SHMBUS_ERR_NOT_LOANED;
  end_loan(pub, (uint32_t)found);
  return 0;
}

int shmbus_publisher_send_copy(shmbus_publisher *pub, const void *data, size_t bytes) {
  if (pub == NULL || data == NULL || bytes == 0) return SHMBUS_ERR_INVAL;
  if (bytes > pub->svc.layout.max_payload) return SHMBUS_ERR_TOO_LARGE;
  size_t size = pub->svc.cfg.element_size;
  void *payload;
  int r = shmbus_publisher_loan(pub, (bytes + size - 1) / size, &payload);
  if (r) return r;
  memcpy(payload, data, bytes);
  r = publish_chunk(pub, payload, bytes, 0);
  /* The caller never saw this loan: a publish that could not happen
   * (overflow BLOCK) gives it back. */
  if (r) shmbus_publisher_discard(pub, payload);
  return r;
}

int shmbus_publisher_set_block_timeout(shmbus_publisher *pub, int64_t timeout_ns) {
  if (pub == NULL) return SHMBUS_ERR_INVAL;
  pub->block_timeout_ns = timeout_ns;
  return 0;
}

int shmbus_publisher_update(shmbus_publisher *pub) {
  if (pub == NULL) return SHMBUS_ERR_INVAL;
  shmbus__service_sweep(&pub->svc);
  update_connections(pub, 0);
  collect_all(pub);
  int ready = 0;
  for (uint32_t i = 0; i < pub->nserving; i++) {
    pub_conn *c = &pub->conns[pub->serving[i]];
    /* Pairs with the subscriber's store-release of sub_ack. */
    if (!c->broken && shmbus__load64_acquire(&c->ring.conn->sub_ack) == c->bound_id) ready++;
  }
  return ready;
}

uint64_t shmbus_publisher_id(const shmbus_publisher *pub) { return pub ? pub->id : 0; }

void shmbus__publisher_set_sequence(shmbus_publisher *pub, uint64_t next) { pub->sequence = next; }

int shmbus__publisher_demotes(const shmbus_publisher *pub) { return pub->demote; }

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Subscribers: one source per publisher seen, each with the publisher's
 * data segment mapped read-only and our connection in its control segment.
 * A private table of held samples makes release exact: a sample released
 * twice, or one that never came from here, is refused.
 */
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "ring.h"
#include "service.h"
#include "wait.h"

enum {
  SRC_FREE = 0,
  SRC_CONNECTING, /* mapped; the publisher has not bound our connection yet */
  SRC_BOUND,      /* served                                                 */
  SRC_GONE,       /* the publisher left: drain what is queued, then let go  */
  SRC_BROKEN      /* the publisher broke the protocol: ignored              */
};

typedef struct sub_source {
  int state;
  uint64_t pub_id;
  uint32_t pub_slot;
  uint32_t held;        /* samples held from this source       */
  shmbus__segment data; /* read-only                           */
  shmbus__segment ctl;
  const uint8_t *chunks;
  shmbus__ring ring;
  uint64_t done_tail; /* completion write position (ours)    */
  uint64_t done_head_seen;
  shmbus__waitable room; /* the publisher's room word (wait.h)   */
} sub_source;

/* A taken sample. The handle (shmbus_sample.internal_) names the entry
 * and the chunk; the sequence tells a stale copy of a released sample
 * from a newer one that the same entry holds in the same chunk. */
typedef struct held_sample {
  uint32_t chunk;
  uint32_t source; /* UINT32_MAX while free                */
  uint64_t sequence;
} held_sample;

struct shmbus_subscriber {
  shmbus__service svc;
  uint64_t id;
  uint32_t slot;
  uint32_t nsources; /* capacity: max_publishers + max_held  */
  uint32_t cursor;   /* round-robin start                    */
  uint64_t pub_generation;
  uint64_t lost_retired; /* lost on sources already let go       */
  sub_source *sources;
  held_sample *held;   /* [max_held]                           */
  uint32_t *held_free; /* stack of free indices into held      */
  uint32_t held_free_count;
  int block;         /* the service's overflow is BLOCK      */
  int may_sleep;     /* wait_mode set in our slot            */
  int had_publisher; /* a publisher was connected since the
                             last NO_PUBLISHER                    */
  int64_t spin_ns;
  uint32_t sleep_epoch;    /* stored in `sleeping` while asleep     */
  uint32_t fault_epoch;    /* shmbus__fault_epoch() last acted on   */
  int defunct;             /* CORRUPT from now on: a peer truncated the
                             service segment, or got our slot reaped */
  int cut_untold;          /* a source was found cut off (cut_off) and
                              no take has said so yet                */
  uint64_t retry_at;       /* no new connection attempt before this */
  shmbus_waitset *waitset; /* the one we are attached to, or NULL */
  shmbus__waitable wake;   /* our slot's wake word (wait.h)       */
};

/* ---- sources ----------------------------------------------------------- */

static const shmbus__chunk_header *source_chunk(const shmbus_subscriber *sub, const sub_source *s,
                                                uint32_t chunk) {
  return (const shmbus__chunk_header *)(s->chunks + (uint64_t)chunk * sub->svc.layout.chunk_stride);
}

static void retire(shmbus_subscriber *sub, sub_source *s) {
  if (s->state == SRC_BOUND || s->state == SRC_GONE)
    sub->lost_retired += shmbus__load64_relaxed(&s->ring.conn->lost);
  shmbus__segment_close(&s->data);
  shmbus__segment_close(&s->ctl);
  shmbus__waitable_close(&s->room);
  memset(s, 0, sizeof *s);
}

/* Maps a new publisher's segments. Never waits: this runs inside take.
 * Returns 0, or an error for which a later look may succeed (NOT_READY,
 * PORT_LIMIT for no free source). */
static int connect_source(shmbus_subscriber *sub, uint32_t pub_slot, uint64_t pub_id) {
  sub_source *s = NULL;
  for (uint32_t i = 0; i < sub->nsources && s == NULL; i++)
    if (sub->sources[i].state == SRC_FREE) s = &sub->sources[i];
  if (s == NULL) return SHMBUS_ERR_PORT_LIMIT;

  const shmbus__layout *l = &sub->svc.layout;
  shmbus_node *node = sub->svc.node;
  char name[SHMBUS__OBJECT_NAME_MAX];
  /* Exactly the sizes our layout says: a longer object maps no further. */
  shmbus__publisher_object_name(name, node->domain, sub->svc.hash, pub_id, 1);
  int r = shmbus__segment_open_wait(&node->root, name, 0, SHMBUS__SEG_DATA, l->data_size,
                                    l->data_size, 0, &s->data);
  if (r) return r;
  shmbus__publisher_object_name(name, node->domain, sub->svc.hash, pub_id, 0);
  r = shmbus__segment_open_wait(&node->root, name, 1, SHMBUS__SEG_CONTROL, l->control_size,
                                l->control_size, 0, &s->ctl);
  if (r == 0) {
    const shmbus__seg_header *dh = s->data.base, *ch = s->ctl.base;
    if (shmbus__load64_relaxed(&dh->total_size) != l->data_size ||
        shmbus__load64_relaxed(&dh->generation) != pub_id ||
        shmbus__load64_relaxed(&ch->total_size) != l->control_size ||
        shmbus__load64_relaxed(&ch->generation) != pub_id)
      r = SHMBUS_ERR_CORRUPT;
  }
  /* Confinement: of the publisher's control segment only our connection
   * stays writable, so a stray write of ours reaches no other subscriber's
   * rings (layout.h). */
  uint64_t conn = shmbus__layout_conn_offset(l, sub->slot);
  if (r == 0) r = shmbus__segment_protect(&s->ctl, 0, l->control_size, 0);
  if (r == 0) r = shmbus__segment_protect(&s->ctl, conn, l->conn_stride, 1);
  if (r) {
    shmbus__segment_close(&s->data);
    shmbus__segment_close(&s->ctl);
    return r;
  }
  s->state = SRC_CONNECTING;
  sub->had_publisher = 1; /* its loss will be reported (waiting) */
  s->pub_id = pub_id;
  s->pub_slot = pub_slot;
  s->chunks = (const uint8_t *)s->data.base + l->chunks_offset;
  shmbus__ring_view(&s->ring, (uint8_t *)s->ctl.base + conn, l->sub_ring_offset,
                    l->done_ring_offset, l->queue_cap, l->done_cap);
  shmbus__room_object_name(name, node->domain, sub->svc.hash, pub_id, sub->slot);
  shmbus__waitable_init(&s->room, &node->root, name);
  return 0;
}

static int known_source(const shmbus_subscriber *sub, uint64_t pub_id) {
  for (uint32_t i = 0; i < sub->nsources; i++)
    if (sub->sources[i].state != SRC_FREE && sub->sources[i].pub_id == pub_id) return 1;
  return 0;
}

/* 1 when the source can be taken from. */
static int source_usable(const shmbus_subscriber *sub, sub_source *s) {
  if (s->state == SRC_BOUND || s->state == SRC_GONE) return 1;
  if (s->state != SRC_CONNECTING) return 0;
  /* Pairs with the publisher's store-release of sub_id in bind(). */
  if (shmbus__load64_acquire(&s->ring.conn->sub_id) != sub->id) return 0;
  s->state = SRC_BOUND;
  s->done_tail = 0;
  s->done_head_seen = 0;
  /* Pairs with the load-acquire in shmbus_publisher_update: the publisher
   * may count us as connected (our mapping keeps its samples alive). */
  shmbus__store64_release(&s->ring.conn->sub_ack, sub->id);
  return 1;
}

/* A publisher whose segments are not ready yet is looked at again after
 * this long, not at every take: each look costs system calls. */
enum { RETRY_NS = 1000 * 1000 };

/* Sources whose segments a peer truncated (the fault handler replaced
 * them by zero pages) are broken; a truncated service segment makes the
 * subscriber report CORRUPT from then on. One relaxed load per call until
 * a fault happens in the process. */
static void notice_faults(shmbus_subscriber *sub) {
  uint32_t epoch = shmbus__fault_epoch();
  if (epoch == sub->fault_epoch) return;
  sub->fault_epoch = epoch;
  if (shmbus__segment_faulted(&sub->svc.seg)) sub->defunct = 1;
  for (uint32_t i = 0; i < sub->nsources; i++) {
    sub_source *s = &sub->sources[i];
    if (s->state != SRC_FREE &&
        (shmbus__segment_faulted(&s->data) || shmbus__segment_faulted(&s->ctl)))
      s->state = SRC_BROKEN;
  }
}

/* Acts on publishers that joined or left since the last look. */
static void refresh_sources(shmbus_subscriber *sub) {
  notice_faults(sub);
  /* Pairs with the fetch-add in shmbus__service_ready/_leave. */
  uint64_t gen = shmbus__load64_acquire(&sub->svc.shm->dyn.pub_generation);
  if (gen == sub->pub_generation) return;
  /* A reaper that took us for dead (a peer can make us look dead) freed
   * our slot and bumped this generation: our connections may be bound to
   * the slot's next owner now. */
  if (shmbus__load64_acquire(
          &shmbus__service_slot(&sub->svc, SHMBUS__SUBSCRIBER, sub->slot)->word) !=
      ((sub->id << 1) | 1u)) {
    sub->defunct = 1;
    return;
  }
  if (sub->retry_at != 0) {
    if (shmbus__now_ns() < sub->retry_at) return;
    sub->retry_at = 0;
  }
  int retry = 0;
  for (uint32_t i = 0; i < sub->nsources; i++) {
    sub_source *s = &sub->sources[i];
    if (s->state == SRC_FREE || s->state == SRC_GONE) continue;
    uint64_t word = shmbus__load64_acquire(
        &shmbus__service_slot(&sub->svc, SHMBUS__PUBLISHER, s->pub_slot)->word);
    if (shmbus__slot_ready_id(word) == s->pub_id) continue;
    /* A publisher that bound us before it left still has samples queued
     * for us: drain them. One that never did has nothing for us. */
    if (s->state == SRC_CONNECTING && !source_usable(sub, s))
      retire(sub, s);
    else
      s->state = SRC_GONE;
  }
  for (uint32_t j = 0; j < sub->svc.cfg.max_publishers; j++) {
    /* Pairs with the store-release in shmbus__service_ready: the
     * publisher's segments are complete. */
    uint64_t id = shmbus__slot_ready_id(
        shmbus__load64_acquire(&shmbus__service_slot(&sub->svc, SHMBUS__PUBLISHER, j)->word));
    if (id == 0 || known_source(sub, id)) continue;
    int r = connect_source(sub, j, id);
    if (r == SHMBUS_ERR_NOT_READY || r == SHMBUS_ERR_PORT_LIMIT || r == SHMBUS_ERR_NOMEM) retry = 1;
  }
  if (retry)
    sub->retry_at = shmbus__now_ns() + RETRY_NS;
  else
    sub->pub_generation = gen;
}

/* Wakes the publisher if it waits for room on this connection. */
static void wake_publisher(sub_source *s) { shmbus__room_wake(s->ring.conn, &s->room); }

/* Overflow BLOCK: we took or released a sample. */
static void room_freed(const shmbus_subscriber *sub, sub_source *s) {
  if (sub->block) wake_publisher(s);
}

/* Returns a chunk to its publisher. */
static void complete(const shmbus_subscriber *sub, sub_source *s, uint32_t chunk) {
  if (s->state == SRC_BOUND || s->state == SRC_GONE) {
    (void)shmbus__done_push(&s->ring, &s->done_tail, &s->done_head_seen, chunk);
    room_freed(sub, s);
  }
}

static void break_source(sub_source *s) { s->state = SRC_BROKEN; }

/* Whether the publisher cut this bound source off (publisher.c,
 * break_conn: it cleared sub_id and took its chunks back); then the source
 * is broken and the news kept (cut_untold) until a take or take_latest
 * says CORRUPT, once (tell_cut). Looked at only when the queue is empty (a
 * cut-off queue reads empty): the word's line changes only when the
 * binding does, so an idle poll reads it from its cache. */
static int cut_off(shmbus_subscriber *sub, sub_source *s) {
  if (s->state != SRC_BOUND) return 0;
  /* Pairs with the store-release in break_conn. */
  if (shmbus__load64_acquire(&s->ring.conn->sub_id) == sub->id) return 0;
  break_source(s);
  sub->cut_untold = 1;
  return 1;
}

/* CORRUPT once after a cut-off that no take has told, else 0. */
static int tell_cut(shmbus_subscriber *sub) {
  if (!sub->cut_untold) return 0;
  sub->cut_untold = 0;
  return SHMBUS_ERR_CORRUPT;
}

/* ---- samples ----------------------------------------------------------- */

/* Reads a popped chunk's header once and checks it. CORRUPT breaks the
 * source (the chunk is returned so an honest-but-buggy publisher keeps its
 * accounting). */
static int read_chunk(shmbus_subscriber *sub, sub_source *s, uint32_t chunk, shmbus_sample *out) {
  const shmbus__layout *l = &sub->svc.layout;
  if (chunk >= l->chunks) {
    break_source(s);
    return SHMBUS_ERR_CORRUPT;
  }
  const shmbus__chunk_header *hdr = source_chunk(sub, s, chunk);
  /* Each field once: the publisher (or anyone) may rewrite them. */
  uint32_t bytes = shmbus__load32_relaxed(&hdr->payload_bytes);
  if (bytes > l->max_payload) {
    complete(sub, s, chunk);
    break_source(s);
    return SHMBUS_ERR_CORRUPT;
  }
  out->payload = (const uint8_t *)hdr + l->payload_offset;
  out->bytes = bytes;
  out->sequence = shmbus__load64_relaxed(&hdr->sequence);
  out->timestamp_ns = shmbus__load64_relaxed(&hdr->timestamp_ns);
  /* What we just read may have come from zero pages that replaced a
   * truncated segment: then it is no sample. */
  if (shmbus__fault_epoch() != sub->fault_epoch) {
    notice_faults(sub);
    if (s->state == SRC_BROKEN) return SHMBUS_ERR_CORRUPT;
  }
  out->publisher_id = s->pub_id;
  return 0;
}

static void hold(shmbus_subscriber *sub, uint32_t source, uint32_t chunk, shmbus_sample *out) {
  uint32_t h = sub->held_free[--sub->held_free_count];
  sub->held[h].chunk = chunk;
  sub->held[h].source = source;
  sub->held[h].sequence = out->sequence;
  sub->sources[source].held++;
  out->internal_ = ((uint64_t)h << 32) | chunk;
}

int shmbus_subscriber_take(shmbus_subscriber *sub, shmbus_sample *out) {
  if (out) memset(out, 0, sizeof *out);
  if (sub == NULL || out == NULL) return SHMBUS_ERR_INVAL;
  if (sub->held_free_count == 0) return SHMBUS_ERR_HOLD_LIMIT;
  int told = tell_cut(sub);
  if (told) return told;
  /* A second round only when the first let a drained source go: a
   * publisher waiting for a free source may be connected now. */
  for (int round = 0, retired = 1; round < 2 && retired; round++) {
    retired = 0;
    refresh_sources(sub);
    if (sub->defunct) return SHMBUS_ERR_CORRUPT;
    for (uint32_t n = 0; n < sub->nsources; n++) {
      uint32_t i = sub->cursor + n;
      if (i >= sub->nsources) i -= sub->nsources;
      sub_source *s = &sub->sources[i];
      if (!source_usable(sub, s)) continue;
      uint32_t chunk;
      if (shmbus__ring_pop(&s->ring, &chunk)) {
        room_freed(sub, s);
        sub->cursor = i + 1 == sub->nsources ? 0 : i + 1;
        int r = read_chunk(sub, s, chunk, out);
        if (r) {
          memset(out, 0, sizeof *out);
          return r;
        }
        hold(sub, i, chunk, out);
        return 0;
      }
      if (cut_off(sub, s)) return tell_cut(sub);
      if (s->state == SRC_GONE && s->held == 0) {
        retire(sub, s);
        retired = 1;
      }
    }
  }
  return SHMBUS_ERR_EMPTY;
}

/* A timestamp from the future ranks as the oldest: a publisher cannot make
 * its samples win over everybody's by stamping them ahead. */
static uint64_t rank(uint64_t timestamp, uint64_t *now) {
  if (*now == 0) *now = shmbus__now_ns();
  return timestamp > *now ? 0 : timestamp;
}

/* Whether `cand` replaces `best`: within one publisher the later in its
 * queue is the newer; across publishers the later timestamp. */
static int newer(const shmbus_sample *cand, int same_source, const shmbus_sample *best,
                 uint64_t *now) {
  return same_source || rank(cand->timestamp_ns, now) >= rank(best->timestamp_ns, now);
}

int shmbus_subscriber_take_latest(shmbus_subscriber *sub, shmbus_sample *out) {
  if (out) memset(out, 0, sizeof *out);
  if (sub == NULL || out == NULL) return SHMBUS_ERR_INVAL;
  if (sub->held_free_count == 0) return SHMBUS_ERR_HOLD_LIMIT;
  int told = tell_cut(sub);
  if (told) return told;
  refresh_sources(sub);
  if (sub->defunct) return SHMBUS_ERR_CORRUPT;
  uint32_t best_source = UINT32_MAX, best_chunk = 0;
  uint64_t now = 0; /* read only to compare the samples of two publishers */
  int err = 0;
  for (uint32_t i = 0; i < sub->nsources; i++) {
    sub_source *s = &sub->sources[i];
    if (!source_usable(sub, s)) continue;
    uint32_t chunk;
    shmbus_sample cand;
    /* Bounded: a publisher refilling as fast as we drain cannot keep us. */
    uint32_t n = 0;
    for (; n <= sub->svc.layout.queue_cap && shmbus__ring_pop(&s->ring, &chunk); n++) {
      room_freed(sub, s);
      int r = read_chunk(sub, s, chunk, &cand);
      if (r) {
        err = r;
        break;
      }
      if (best_source != UINT32_MAX && !newer(&cand, best_source == i, out, &now)) {
        complete(sub, s, chunk);
        continue;
      }
      if (best_source != UINT32_MAX) complete(sub, &sub->sources[best_source], best_chunk);
      *out = cand;
      best_source = i;
      best_chunk = chunk;
    }
    /* Told now when nothing is taken, else by the next take. */
    if (n == 0) cut_off(sub, s);
  }
  if (best_source == UINT32_MAX) {
    memset(out, 0, sizeof *out);
    told = tell_cut(sub);
    return told ? told : err ? err : SHMBUS_ERR_EMPTY;
  }
  /* A read after the best one's may have found its segment truncated
   * (zero pages replace it): then what was read of it is no sample. */
  notice_faults(sub);
  if (sub->sources[best_source].state == SRC_BROKEN) {
    memset(out, 0, sizeof *out);
    return SHMBUS_ERR_CORRUPT;
  }
  hold(sub, best_source, best_chunk, out);
  return 0;
}

int shmbus_subscriber_release(shmbus_subscriber *sub, const shmbus_sample *sample) {
  if (sub == NULL || sample == NULL) return SHMBUS_ERR_INVAL;
  uint64_t h = sample->internal_ >> 32;
  uint32_t chunk = (uint32_t)sample->internal_;
  if (h >= sub->svc.cfg.max_held) return SHMBUS_ERR_NOT_HELD;
  held_sample *e = &sub->held[h];
  if (e->source == UINT32_MAX || e->chunk != chunk || e->sequence != sample->sequence)
    return SHMBUS_ERR_NOT_HELD;
  sub_source *s = &sub->sources[e->source];
  if (sample->publisher_id != s->pub_id) return SHMBUS_ERR_NOT_HELD;
  const uint8_t *expected =
      (const uint8_t *)source_chunk(sub, s, chunk) + sub->svc.layout.payload_offset;
  if (sample->payload != expected) return SHMBUS_ERR_NOT_HELD;
  complete(sub, s, chunk);
  s->held--;
  e->source = UINT32_MAX;
  sub->held_free[sub->held_free_count++] = (uint32_t)h;
  /* The payload was read from memory a peer may have truncated meanwhile
   * (then it read zeros): say so, so that the caller discards it. */
  notice_faults(sub);
  return s->state == SRC_BROKEN && shmbus__segment_faulted(&s->data) ? SHMBUS_ERR_CORRUPT : 0;
}

uint64_t shmbus_subscriber_lost(const shmbus_subscriber *sub) {
  if (sub == NULL) return 0;
  uint64_t lost = sub->lost_retired;
  for (uint32_t i = 0; i < sub->nsources; i++) {
    const sub_source *s = &sub->sources[i];
    /* A source still CONNECTING on our side may be bound already. Pairs
     * with the publisher's store-release of sub_id in bind(). */
    int bound =
        s->state == SRC_BOUND || s->state == SRC_GONE ||
        (s->state == SRC_CONNECTING && shmbus__load64_acquire(&s->ring.conn->sub_id) == sub->id);
    if (bound) lost += shmbus__load64_relaxed(&s->ring.conn->lost);
  }
  return lost;
}

int shmbus_subscriber_publishers(shmbus_subscriber *sub) {
  if (sub == NULL) return SHMBUS_ERR_INVAL;
  shmbus__service_sweep(&sub->svc);
  refresh_sources(sub);
  int n = 0, retired = 0;
  for (uint32_t i = 0; i < sub->nsources; i++) {
    sub_source *s = &sub->sources[i];
    if (s->state == SRC_GONE && s->held == 0 && shmbus__ring_empty(&s->ring)) {
      retire(sub, s);
      retired = 1;
    }
  }
  /* A publisher that found no free source can be connected now. */
  if (retired) refresh_sources(sub);
  for (uint32_t i = 0; i < sub->nsources; i++) {
    sub_source *s = &sub->sources[i];
    if (s->state == SRC_CONNECTING) source_usable(sub, s);
    if (s->state == SRC_BOUND) n++;
  }
  return n;
}

uint64_t shmbus_subscriber_id(const shmbus_subscriber *sub) { return sub ? sub->id : 0; }

/* ---- waiting -------------------------------------------------------------
 * The protocol is wait.h's: we arm our wait slot, then look at every ring
 * once more; a publisher stores its sample, fences, then looks at our slot
 * (publisher.c, wake_sleepers). A publisher only looks once it has seen our
 * wait_mode, which it acknowledges in the connection's wait_ack; until
 * every connection has, we sleep in short, growing slices. Sleepers also
 * wake every LIVENESS_SLICE_NS to reap dead publishers. */

enum { ACK_SLICE_NS = SHMBUS__ACK_SLICE_NS, LIVENESS_SLICE_NS = SHMBUS__LIVENESS_SLICE_NS };

void shmbus__subscriber_arm(shmbus_subscriber *sub) {
  shmbus__wait_slot *slot = shmbus__service_wait(&sub->svc, sub->slot);
  /* Holding its maximum it could not take what a wake-up announces (a
   * wait set would be woken by every publish for nothing). */
  if (sub->held_free_count == 0) return;
  if (!sub->may_sleep) {
    sub->may_sleep = 1;
    shmbus__store32_relaxed(&slot->wait_mode, 1);
  }
  /* A new epoch per sleep, never 0: each waker wakes each sleep once. */
  if (++sub->sleep_epoch == 0) sub->sleep_epoch = 1;
  shmbus__sleeper_arm(slot, sub->sleep_epoch);
}

void shmbus__subscriber_disarm(shmbus_subscriber *sub) {
  shmbus__sleeper_disarm(shmbus__service_wait(&sub->svc, sub->slot));
}

int shmbus__subscriber_ready(shmbus_subscriber *sub) {
  if (sub->cut_untold) return 0;
  int publishers = 0;
  /* A second round only when the first let a drained source go: a
   * publisher that found no free source can be connected now. */
  for (int round = 0, retired = 1; round < 2 && retired; round++) {
    refresh_sources(sub);
    if (sub->defunct) return SHMBUS_ERR_CORRUPT;
    publishers = 0;
    retired = 0;
    for (uint32_t i = 0; i < sub->nsources; i++) {
      sub_source *s = &sub->sources[i];
      if (s->state == SRC_CONNECTING && !source_usable(sub, s)) {
        publishers++;
        continue;
      }
      if (s->state != SRC_BOUND && s->state != SRC_GONE) continue;
      /* Queued but not takeable while we hold our maximum. */
      if (!shmbus__ring_empty(&s->ring))
        return sub->held_free_count > 0 ? 0 : SHMBUS_ERR_HOLD_LIMIT;
      if (cut_off(sub, s)) return 0; /* ready: the take tells it */
      if (s->state == SRC_BOUND) {
        publishers++;
      } else if (s->held == 0) {
        retire(sub, s);
        retired = 1;
      }
    }
  }
  if (publishers > 0) {
    sub->had_publisher = 1;
    return SHMBUS_ERR_EMPTY;
  }
  if (!sub->had_publisher) return SHMBUS_ERR_EMPTY;
  sub->had_publisher = 0;
  return SHMBUS_ERR_NO_PUBLISHER;
}

int shmbus__subscriber_acked(const shmbus_subscriber *sub) {
  for (uint32_t i = 0; i < sub->nsources; i++) {
    const sub_source *s = &sub->sources[i];
    if (s->state != SRC_CONNECTING && s->state != SRC_BOUND) continue;
    /* Pairs with the publisher's store-release of wait_ack (set_waker). */
    if (shmbus__load64_acquire(&s->ring.conn->wait_ack) != sub->id) return 0;
  }
  return 1;
}

int64_t shmbus__subscriber_spin(const shmbus_subscriber *sub) { return sub->spin_ns; }

void shmbus__subscriber_sweep(shmbus_subscriber *sub) { shmbus__service_sweep(&sub->svc); }

int shmbus__subscriber_join(shmbus_subscriber *sub, shmbus_waitset *ws, const char *domain,
                            uint64_t notifier) {
  /* Publishers address the notifier in their own domain. */
  if (ws != NULL && strcmp(domain, sub->svc.node->domain) != 0) return SHMBUS_ERR_INVAL;
  if (ws != NULL && sub->waitset != NULL) return SHMBUS_ERR_BUSY;
  sub->waitset = ws;
  shmbus__store64_relaxed(&shmbus__service_wait(&sub->svc, sub->slot)->notifier, notifier);
  return 0;
}

int shmbus_subscriber_set_spin(shmbus_subscriber *sub, int64_t spin_ns) {
  if (sub == NULL || spin_ns < 0) return SHMBUS_ERR_INVAL;
  sub->spin_ns = spin_ns;
  return 0;
}

uint64_t shmbus__wait_deadline(int64_t timeout_ns) {
  return timeout_ns < 0 ? UINT64_MAX : shmbus__now_ns() + (uint64_t)timeout_ns;
}

uint64_t shmbus__wait_slice(uint64_t *ack_slice, int acked, uint64_t now, uint64_t deadline) {
  uint64_t slice = LIVENESS_SLICE_NS;
  if (!acked) {
    slice = *ack_slice;
    *ack_slice = *ack_slice * 2 < LIVENESS_SLICE_NS ? *ack_slice * 2 : LIVENESS_SLICE_NS;
  }
  return deadline - now < slice ? deadline - now : slice;
}

int shmbus_subscriber_wait(shmbus_subscriber *sub, int64_t timeout_ns) {
  if (sub == NULL) return SHMBUS_ERR_INVAL;
  if (sub->waitset != NULL) return SHMBUS_ERR_BUSY;
  if (sub->held_free_count == 0) return SHMBUS_ERR_HOLD_LIMIT;
  uint64_t deadline = shmbus__wait_deadline(timeout_ns);
  int r = shmbus__subscriber_ready(sub);
  if (r != SHMBUS_ERR_EMPTY) return r;
  if (timeout_ns == 0) return SHMBUS_ERR_TIMEDOUT;
  uint64_t now = shmbus__now_ns();
  uint64_t spin_end = now + (uint64_t)sub->spin_ns;
  while (now < spin_end && now < deadline) {
    shmbus__cpu_relax();
    if ((r = shmbus__subscriber_ready(sub)) != SHMBUS_ERR_EMPTY) return r;
    now = shmbus__now_ns();
  }
  uint32_t *event = shmbus__service_event(&sub->svc, sub->slot);
  uint64_t ack_slice = ACK_SLICE_NS, next_sweep = now + LIVENESS_SLICE_NS;
  for (;;) {
    shmbus__subscriber_arm(sub);
    uint32_t seen = shmbus__sleep_seen(event);
    r = shmbus__subscriber_ready(sub);
    if (r == SHMBUS_ERR_EMPTY) {
      now = shmbus__now_ns();
      if (now >= deadline) {
        shmbus__subscriber_disarm(sub);
        return SHMBUS_ERR_TIMEDOUT;
      }
      uint64_t slice = shmbus__wait_slice(&ack_slice, shmbus__subscriber_acked(sub), now, deadline);
      shmbus__sleep(&sub->wake, event, seen, (int64_t)slice);
    }
    shmbus__subscriber_disarm(sub);
    if (r != SHMBUS_ERR_EMPTY) return r;
    now = shmbus__now_ns();
    if (now >= next_sweep) {
      shmbus__service_sweep(&sub->svc);
      next_sweep = now + LIVENESS_SLICE_NS;
    }
  }
}

/* ---- open / close ------------------------------------------------------ */

static void free_subscriber(shmbus_subscriber *sub) {
  if (sub->sources) {
    for (uint32_t i = 0; i < sub->nsources; i++)
      if (sub->sources[i].state != SRC_FREE) retire(sub, &sub->sources[i]);
  }
  free(sub->sources);
  free(sub->held);
  free(sub->held_free);
  free(sub);
}

int shmbus_subscriber_open(shmbus_node *node, const char *service, const shmbus_service_opts *opts,
                           shmbus_subscriber **out) {
  SHMBUS__CLEAR_OUT(out);
  if (node == NULL || service == NULL || opts == NULL || out == NULL) return SHMBUS_ERR_INVAL;
  shmbus_subscriber *sub = calloc(1, sizeof *sub);
  if (sub == NULL) return SHMBUS_ERR_NOMEM;
  int r = shmbus__service_attach(node, service, opts, &sub->svc);
  if (r) {
    free(sub);
    return r;
  }
  shmbus__node_ref(node);
  const shmbus__service_config *cfg = &sub->svc.cfg;
  /* Live publishers, plus departed ones we still hold samples of. */
  sub->nsources = cfg->max_publishers + cfg->max_held;
  sub->sources = calloc(sub->nsources, sizeof *sub->sources);
  sub->held = calloc(cfg->max_held, sizeof *sub->held);
  sub->held_free = calloc(cfg->max_held, sizeof *sub->held_free);
  r = (!sub->sources || !sub->held || !sub->held_free) ? SHMBUS_ERR_NOMEM : 0;
  if (r == 0) r = shmbus__service_claim(&sub->svc, SHMBUS__SUBSCRIBER, &sub->slot, &sub->id);
  if (r) {
    shmbus__service_detach(&sub->svc);
    free_subscriber(sub);
    shmbus__node_unref(node);
    return r;
  }
  for (uint32_t h = 0; h < cfg->max_held; h++) {
    sub->held[h].source = UINT32_MAX;
    sub->held_free[h] = cfg->max_held - 1 - h;
  }
  sub->held_free_count = cfg->max_held;
  sub->block = cfg->overflow == SHMBUS_OVERFLOW_BLOCK;
  /* Our wake word's OS object exists before anybody may see us sleep. A
   * failure only makes our waits sleep in short slices (platform.h). */
  char name[SHMBUS__OBJECT_NAME_MAX];
  shmbus__wake_object_name(name, node->domain, sub->svc.hash, sub->slot);
  shmbus__waitable_init(&sub->wake, &node->root, name);
  (void)shmbus__waitable_open(&sub->wake);
  sub->pub_generation = shmbus__load64_relaxed(&sub->svc.shm->dyn.pub_generation) - 1;
  shmbus__service_ready(&sub->svc, SHMBUS__SUBSCRIBER, sub->slot, sub->id);
  refresh_sources(sub);
  *out = sub;
  return 0;
}

void shmbus_subscriber_close(shmbus_subscriber *sub) {
  if (sub == NULL) return;
  shmbus_node *node = sub->svc.node;
  if (sub->waitset) shmbus_waitset_detach(sub->waitset, sub);
  /* The publishers reclaim everything in flight on our connections when
   * they see the slot free: no need to hand samples back one by one. */
  shmbus__service_leave(&sub->svc, SHMBUS__SUBSCRIBER, sub->slot, sub->id);
  /* A publisher waiting for room for us looks again and unbinds us. */
  if (sub->block)
    for (uint32_t i = 0; i < sub->nsources; i++)
      if (sub->sources[i].state != SRC_FREE) wake_publisher(&sub->sources[i]);
  shmbus__service_detach(&sub->svc); /* right after leave: see publisher close */
  free_subscriber(sub);
  shmbus__node_unref(node);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The two rings of a connection (layout.h, shmbus__conn), as inline
 * functions over a view of one connection. Contract:
 *
 *   submission ring  publisher -> subscriber, chunk indices.
 *     put:   publisher only, when the caller has made room (tail - head <
 *            depth); wait-free.
 *     pop:   subscriber; advances head by compare-and-swap; lock-free,
 *            bounded retries.
 *     evict: publisher, on a full ring; takes the oldest entry by the same
 *            compare-and-swap, so each entry is owned by exactly one side.
 *   completion ring  subscriber -> publisher, released chunk indices; SPSC,
 *     wait-free on both sides; capacity >= depth + held, which the
 *     publisher's in-flight accounting guarantees is never exceeded by an
 *     honest subscriber.
 *
 * Positions are 64-bit and compared only by unsigned difference. Nothing
 * here trusts what the other side wrote: callers validate indices.
 */
#ifndef SHMBUS_RING_H
#define SHMBUS_RING_H

#include <stdint.h>

#include "atomic.h"
#include "layout.h"

typedef struct shmbus__ring {
  shmbus__conn *conn;
  uint64_t *slots; /* submission ring, queue_cap entries */
  uint32_t *done;  /* completion ring, done_cap entries  */
  uint32_t slot_mask;
  uint32_t done_mask;
} shmbus__ring;

static inline void shmbus__ring_view(shmbus__ring *r, void *conn_base, uint64_t sub_ring_offset,
                                     uint64_t done_ring_offset, uint32_t queue_cap,
                                     uint32_t done_cap) {
  r->conn = (shmbus__conn *)conn_base;
  r->slots = (uint64_t *)((char *)conn_base + sub_ring_offset);
  r->done = (uint32_t *)((char *)conn_base + done_ring_offset);
  r->slot_mask = queue_cap - 1;
  r->done_mask = done_cap - 1;
}

/* The slot word for `chunk` at `pos`: the tag (pos + 1) marks it filled. */
static inline uint64_t shmbus__slot_word(uint64_t pos, uint32_t chunk) {
  return ((uint64_t)(uint32_t)(pos + 1) << 32) | chunk;
}

/* Publisher: writes `chunk` at position `tail`. */
static inline void shmbus__ring_put(const shmbus__ring *r, uint64_t tail, uint32_t chunk) {
  /* Pairs with the load-acquire in shmbus__ring_pop: the chunk's header and
   * payload are visible before the slot says it is filled. */
  shmbus__store64_release(&r->slots[tail & r->slot_mask], shmbus__slot_word(tail, chunk));
}

/* Publisher, for a connection it stops serving: makes every slot read as
 * empty at each read position from tail - capacity to tail (all an honest
 * subscriber can be at), so that it takes none of the entries whose chunks
 * were reclaimed. Each slot gets the word of the position one lap before
 * the last one written there, a tag that none of those positions expects.
 * A subscriber that read an entry just before still takes it. */
static inline void shmbus__ring_void(const shmbus__ring *r, uint64_t tail) {
  uint64_t cap = (uint64_t)r->slot_mask + 1;
  for (uint64_t pos = tail - cap; pos != tail; pos++)
    shmbus__store64_relaxed(&r->slots[pos & r->slot_mask], shmbus__slot_word(pos - cap, 0));
}

/* Publisher: the subscriber's read position (acquire: the subscriber's
 * reads of the entries it consumed happen before we overwrite them). */
static inline uint64_t shmbus__ring_head(const shmbus__ring *r) {
  /* Pairs with the compare-and-swap in shmbus__ring_pop. */
  return shmbus__load64_acquire(&r->conn->head);
}

/* Publisher: evicts the oldest entry if head still equals *head. 1 on
 * success (the entry at *head is ours now); 0 if the subscriber moved head
 * first (*head then holds the new value). */
static inline int shmbus__ring_evict(const shmbus__ring *r, uint64_t *head) {
  return shmbus__cas64(&r->conn->head, head, *head + 1);
}

/* Subscriber: takes the entry at head. 1 and *chunk on success, 0 when the
 * ring is empty (or the publisher keeps evicting under us). */
static inline int shmbus__ring_pop(const shmbus__ring *r, uint32_t *chunk) {
  uint64_t head = shmbus__load64_relaxed(&r->conn->head);
  for (int tries = 0; tries < 64; tries++) {
    /* Pairs with the store-release in shmbus__ring_put. */
    uint64_t w = shmbus__load64_acquire(&r->slots[head & r->slot_mask]);
    if ((uint32_t)(w >> 32) != (uint32_t)(head + 1)) {
      /* Not filled at our head, unless head moved (an eviction) meanwhile. */
      uint64_t now = shmbus__load64_acquire(&r->conn->head);
      if (now == head) return 0;
      head = now;
      continue;
    }
    /* Pairs with the publisher's load-acquire of head (shmbus__ring_head)
     * and with its competing compare-and-swap in shmbus__ring_evict. */
    if (shmbus__cas64(&r->conn->head, &head, head + 1)) {
      *chunk = (uint32_t)w;
      return 1;
    }
  }
  return 0;
}

/* Subscriber: whether nothing is queued at head (a peek; no state changes). */
static inline int shmbus__ring_empty(const shmbus__ring *r) {
  uint64_t head = shmbus__load64_acquire(&r->conn->head);
  /* Pairs with the store-release in shmbus__ring_put. */
  uint64_t w = shmbus__load64_acquire(&r->slots[head & r->slot_mask]);
  return (uint32_t)(w >> 32) != (uint32_t)(head + 1);
}

/* Subscriber: appends a released chunk. `tail` is the subscriber's private
 * copy of done_tail; `*cached_head` its last view of done_head. 0 when full
 * (only a publisher that stopped collecting can cause it). */
static inline int shmbus__done_push(const shmbus__ring *r, uint64_t *tail, uint64_t *cached_head,
                                    uint32_t chunk) {
  uint64_t cap = (uint64_t)r->done_mask + 1;
  if (*tail - *cached_head >= cap) {
    /* Pairs with the store-release in shmbus__done_consumed: the publisher
     * has read the entries before we overwrite them. */
    *cached_head = shmbus__load64_acquire(&r->conn->done_head);
    if (*tail - *cached_head >= cap) return 0;
  }
  shmbus__store32_relaxed(&r->done[*tail & r->done_mask], chunk);
  ++*tail;
  /* Pairs with the load-acquire in shmbus__done_available. */
  shmbus__store64_release(&r->conn->done_tail, *tail);
  return 1;
}

/* Publisher: the completion ring's write position. */
static inline uint64_t shmbus__done_available(const shmbus__ring *r) {
  /* Pairs with the store-release in shmbus__done_push. */
  return shmbus__load64_acquire(&r->conn->done_tail);
}

static inline uint32_t shmbus__done_at(const shmbus__ring *r, uint64_t pos) {
  return shmbus__load32_relaxed(&r->done[pos & r->done_mask]);
}

/* Publisher: everything before `head` has been read. */
static inline void shmbus__done_consumed(const shmbus__ring *r, uint64_t head) {
  /* Pairs with the load-acquire in shmbus__done_push. */
  shmbus__store64_release(&r->conn->done_head, head);
}

#endif /* SHMBUS_RING_H */

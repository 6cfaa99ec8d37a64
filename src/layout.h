/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Everything that lives in shared memory, in one place.
 *
 * Rules (DESIGN.md, "Shared-memory layout rules"):
 *   - only fixed-width integers, explicit padding, a _Static_assert on every
 *     offset and size, so 32- and 64-bit processes share one layout;
 *   - no pointers: chunk indices and byte offsets only;
 *   - every word has one writer (the one exception, conn.head, is named),
 *     and words of different writers sit on different cache lines;
 *   - counters are 64-bit and compared only by unsigned difference;
 *   - a reader loads a shared word once into a local, checks it against its
 *     private copy of the limits, then uses it.
 *
 * Three kinds of segment, each starting with shmbus__seg_header:
 *   service  (one per service)   static config, port registry, generations
 *   data     (one per publisher) the chunk pool; subscribers map it read-only
 *   control  (one per publisher) one connection per subscriber slot: the
 *                                submission and completion rings
 *
 * Confinement (docs/security.md): what one port writes in steady state sits
 * on pages of its own, and every port keeps the rest of its mappings
 * read-only (mprotect), so its stray writes reach nothing that another
 * port's delivery depends on. The unit is the page (seg header page_size):
 *   service  page 0: header, config, dyn; then the registry slots, which
 *            only cold operations write (open, close, reaping a dead port:
 *            the segment is writable whole only inside them); then one
 *            page per subscriber slot with its wait state (its own); then
 *            the wake words (publishers write them);
 *   control  page 0: header and the publisher's counters for onlookers
 *            (shmbus__pub_stats); then one page-aligned block per
 *            connection, the only part its subscriber maps writable.
 */
#ifndef SHMBUS_LAYOUT_H
#define SHMBUS_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define SHMBUS__CACHE_LINE 64
#define SHMBUS__MAGIC UINT64_C(0x3153554248534d53) /* "SMHSBUS1" little-endian */
/* 4: registry slots are owned by node_id (claimed before the word; see
 * shmbus__port_slot), which version 3 processes would not respect. */
#define SHMBUS__LAYOUT_VERSION 4u
#define SHMBUS__INITIALISED 0x494e4954u /* "INIT" */

#define SHMBUS__LAYOUT_ASSERT(type, member, offset) \
  _Static_assert(offsetof(type, member) == (offset), #type "." #member " moved")
#define SHMBUS__SIZE_ASSERT(type, size) \
  _Static_assert(sizeof(type) == (size), #type " changed size")

enum { SHMBUS__SEG_SERVICE = 1, SHMBUS__SEG_DATA = 2, SHMBUS__SEG_CONTROL = 3 };

/* The first 64 bytes of every segment. Written by the creator before
 * `initialised`, which is stored last with release; openers load it with
 * acquire (segment.c) and never trust anything else before that. */
typedef struct shmbus__seg_header {
  uint64_t magic;
  uint32_t layout_version;
  uint32_t kind;        /* SHMBUS__SEG_*                                 */
  uint64_t header_size; /* bytes before the segment's own content        */
  uint64_t total_size;  /* bytes of the whole segment                    */
  uint64_t creator_node_id;
  uint64_t generation;  /* the instance: service nonce or publisher id   */
  uint32_t initialised; /* SHMBUS__INITIALISED once complete             */
  uint32_t page_size;   /* the layout's page (platform page size)        */
  uint64_t reserved1;
} shmbus__seg_header;
SHMBUS__LAYOUT_ASSERT(shmbus__seg_header, magic, 0);
SHMBUS__LAYOUT_ASSERT(shmbus__seg_header, layout_version, 8);
SHMBUS__LAYOUT_ASSERT(shmbus__seg_header, kind, 12);
SHMBUS__LAYOUT_ASSERT(shmbus__seg_header, header_size, 16);
SHMBUS__LAYOUT_ASSERT(shmbus__seg_header, total_size, 24);
SHMBUS__LAYOUT_ASSERT(shmbus__seg_header, creator_node_id, 32);
SHMBUS__LAYOUT_ASSERT(shmbus__seg_header, generation, 40);
SHMBUS__LAYOUT_ASSERT(shmbus__seg_header, initialised, 48);
SHMBUS__LAYOUT_ASSERT(shmbus__seg_header, page_size, 52);
SHMBUS__LAYOUT_ASSERT(shmbus__seg_header, reserved1, 56);
SHMBUS__SIZE_ASSERT(shmbus__seg_header, 64);

/* ---- service segment ---------------------------------------------------- */

/* Immutable once the segment is initialised. Names are NUL-terminated. */
typedef struct shmbus__service_config {
  uint8_t name[256];
  uint8_t type_name[128];
  uint32_t element_size;
  uint32_t element_align;
  uint32_t max_elements;
  uint32_t max_publishers;
  uint32_t max_subscribers;
  uint32_t queue_depth;
  uint32_t history;
  uint32_t max_loans;
  uint32_t max_held;
  uint32_t overflow; /* SHMBUS_OVERFLOW_DROP_OLDEST, _NEWEST, _BLOCK  */
  uint32_t reserved[6];
} shmbus__service_config;
SHMBUS__LAYOUT_ASSERT(shmbus__service_config, type_name, 256);
SHMBUS__LAYOUT_ASSERT(shmbus__service_config, element_size, 384);
SHMBUS__LAYOUT_ASSERT(shmbus__service_config, overflow, 420);
SHMBUS__SIZE_ASSERT(shmbus__service_config, 448);

/* A registry slot of a publisher or subscriber, one cache line.
 * `node_id` owns it: 0 when free, the owner's node id from the claim
 * (compare-and-swap from 0) until it is freed, or SHMBUS__SLOT_REAPER |
 * the reaper's node id while a reaper of a dead owner frees it. `word` is
 * 0 until the owner writes id << 1 (set up), then (id << 1) | 1 (ready);
 * it is cleared before node_id. Any state a death leaves names a node
 * whose token says whether it lives. Written only inside a cold operation:
 * no port keeps these pages writable, so no stray write reaches them. */
#define SHMBUS__SLOT_REAPER (UINT64_C(1) << 63)
typedef struct shmbus__port_slot {
  uint64_t word;
  uint64_t node_id;
  uint64_t reserved[6];
} shmbus__port_slot;
SHMBUS__LAYOUT_ASSERT(shmbus__port_slot, node_id, 8);
SHMBUS__SIZE_ASSERT(shmbus__port_slot, 64);

/* Subscriber slot k's wait state, at the start of a page of its own: only
 * the subscriber writes it (subscriber.c, "waiting"); the claimer zeroes it
 * before the slot is ready:
 *   wait_mode  1 once the subscriber may sleep; publishers that saw it
 *              check `sleeping` after each publish (and say so in their
 *              connection's wait_ack);
 *   sleeping   non-zero while the subscriber, or its wait set, may sleep:
 *              a new epoch per sleep, so that each waker wakes each sleep
 *              once (it remembers the last epoch it woke);
 *   notifier   0: sleepers wait on their wake word's `event`; else the id
 *              of the wait set's notifier to send a wake-up to. */
typedef struct shmbus__wait_slot {
  uint32_t wait_mode;
  uint32_t sleeping;
  uint64_t notifier;
  uint64_t reserved[6];
} shmbus__wait_slot;
SHMBUS__LAYOUT_ASSERT(shmbus__wait_slot, sleeping, 4);
SHMBUS__LAYOUT_ASSERT(shmbus__wait_slot, notifier, 8);
SHMBUS__SIZE_ASSERT(shmbus__wait_slot, 64);

/* Subscriber slot k's futex word, one cache line each, after the slots:
 * a waker adds 1 to `event`, then wakes (many writers: fetch-add only).
 * Publishers keep these writable; a stray write here costs a sleeper a
 * spurious or a late wake-up (at most one liveness slice), never a sample. */
typedef struct shmbus__wake_word {
  uint32_t event;
  uint32_t reserved0[15];
} shmbus__wake_word;
SHMBUS__SIZE_ASSERT(shmbus__wake_word, 64);

#define SHMBUS__USERS_REMOVING (UINT64_C(1) << 63)

typedef struct shmbus__service_dyn {
  /* Line 0: open ports (low bits) and the REMOVING flag. Every port changes
   * it by compare-and-swap; the one that takes it from 1 to REMOVING
   * unlinks the service. */
  uint64_t users;
  uint64_t next_port_id; /* fetch-add by every opener; starts random     */
  uint64_t pad0[6];
  /* Line 1: bumped after a publisher became ready or left. */
  uint64_t pub_generation;
  uint64_t pad1[7];
  /* Line 2: bumped after a subscriber became ready or left. */
  uint64_t sub_generation;
  uint64_t pad2[7];
} shmbus__service_dyn;
SHMBUS__LAYOUT_ASSERT(shmbus__service_dyn, next_port_id, 8);
SHMBUS__LAYOUT_ASSERT(shmbus__service_dyn, pub_generation, 64);
SHMBUS__LAYOUT_ASSERT(shmbus__service_dyn, sub_generation, 128);
SHMBUS__SIZE_ASSERT(shmbus__service_dyn, 192);

typedef struct shmbus__service_seg {
  shmbus__seg_header hdr;
  shmbus__service_config cfg;
  shmbus__service_dyn dyn;
  /* then, each part from a page boundary on (shmbus__layout in service.h):
   * shmbus__port_slot pubs[max_publishers], subs[max_subscribers];
   * one page per subscriber slot, starting with its shmbus__wait_slot;
   * shmbus__wake_word wake[max_subscribers] */
} shmbus__service_seg;
SHMBUS__LAYOUT_ASSERT(shmbus__service_seg, cfg, 64);
SHMBUS__LAYOUT_ASSERT(shmbus__service_seg, dyn, 512);
SHMBUS__SIZE_ASSERT(shmbus__service_seg, 704);

/* ---- data segment ------------------------------------------------------- */

/* The start of every chunk; the payload follows at the type's alignment, so
 * for alignments up to 32 the header and the payload's first bytes share
 * the chunk's first cache line. Written by the publisher before publish. */
typedef struct shmbus__chunk_header {
  uint64_t sequence;
  uint64_t timestamp_ns;
  uint64_t publisher_id;
  uint32_t payload_bytes;
  uint32_t reserved;
} shmbus__chunk_header;
SHMBUS__LAYOUT_ASSERT(shmbus__chunk_header, timestamp_ns, 8);
SHMBUS__LAYOUT_ASSERT(shmbus__chunk_header, publisher_id, 16);
SHMBUS__LAYOUT_ASSERT(shmbus__chunk_header, payload_bytes, 24);
SHMBUS__LAYOUT_ASSERT(shmbus__chunk_header, reserved, 28);
SHMBUS__SIZE_ASSERT(shmbus__chunk_header, 32);

/* ---- control segment ---------------------------------------------------- */

/* One connection publisher -> subscriber slot k, at the start of a
 * page-aligned block of its own (its subscriber maps only this block
 * writable). Followed in memory by
 *   uint64_t sub_ring[queue capacity]   submission ring (publisher writes)
 *   uint32_t done_ring[done capacity]   completion ring (subscriber writes)
 * each starting on a cache line (see shmbus__layout in internal.h).
 *
 * Submission slot word: ((uint64_t)(uint32_t)(position + 1) << 32) | chunk.
 * The position tag is the signal: the subscriber sees that slot `head` is
 * filled when its tag equals head + 1, so the signal and the chunk index
 * share one line and no separate tail counter is read. */
typedef struct shmbus__conn {
  /* Line 0: written by the publisher. */
  uint64_t sub_id;      /* bound subscriber id, 0 while unbound          */
  uint64_t lost;        /* samples dropped for this subscriber           */
  uint64_t wait_ack;    /* = sub_id once we wake it when it sleeps       */
  uint32_t pub_waiting; /* 1 while we wait for room (overflow BLOCK)     */
  uint32_t reserved0;
  uint64_t pad0[4];
  /* Line 1: the submission ring's read position. The one shared word with
   * two writers: the subscriber advances it by compare-and-swap on take,
   * the publisher by compare-and-swap when it evicts the oldest sample of a
   * full queue (drop-oldest), which hands it the evicted chunk exactly. */
  uint64_t head;
  uint64_t pad1[7];
  /* Line 2: written by the subscriber. */
  uint64_t done_tail;  /* completion ring write position                */
  uint64_t sub_ack;    /* = sub_id once the subscriber has mapped us    */
  uint32_t room_event; /* futex word: +1 when it frees room for a
                               waiting publisher (overflow BLOCK)            */
  uint32_t reserved2;
  uint64_t pad2[5];
  /* Line 3: written by the publisher: completion ring read position. */
  uint64_t done_head;
  uint64_t pad3[7];
} shmbus__conn;
SHMBUS__LAYOUT_ASSERT(shmbus__conn, lost, 8);
SHMBUS__LAYOUT_ASSERT(shmbus__conn, wait_ack, 16);
SHMBUS__LAYOUT_ASSERT(shmbus__conn, pub_waiting, 24);
SHMBUS__LAYOUT_ASSERT(shmbus__conn, head, 64);
SHMBUS__LAYOUT_ASSERT(shmbus__conn, done_tail, 128);
SHMBUS__LAYOUT_ASSERT(shmbus__conn, sub_ack, 136);
SHMBUS__LAYOUT_ASSERT(shmbus__conn, room_event, 144);
SHMBUS__LAYOUT_ASSERT(shmbus__conn, done_head, 192);
SHMBUS__SIZE_ASSERT(shmbus__conn, 256);

/* Control page 0, after the header: what the publisher shows onlookers
 * (introspection.c), on a line only it writes, in steady state with plain
 * relaxed stores to a line it owns (nobody else writes it; a reader costs
 * it one miss per read). No delivery depends on these words: they are
 * reported, never followed. Processes of layout 4 that predate them leave
 * them 0, which reads as "nothing published, nothing loaned". */
typedef struct shmbus__pub_stats {
  uint64_t published;         /* samples published: the next sequence number */
  uint64_t last_timestamp_ns; /* the newest sample's stamp, 0 before it       */
  uint32_t loans;             /* payloads loaned now, at most max_loans       */
  uint32_t reserved0;
  uint64_t pad[5];
} shmbus__pub_stats;
#define SHMBUS__PUB_STATS_OFFSET 64
SHMBUS__LAYOUT_ASSERT(shmbus__pub_stats, last_timestamp_ns, 8);
SHMBUS__LAYOUT_ASSERT(shmbus__pub_stats, loans, 16);
SHMBUS__SIZE_ASSERT(shmbus__pub_stats, 64);
_Static_assert(SHMBUS__PUB_STATS_OFFSET >= sizeof(shmbus__seg_header),
               "the counters follow the header");

#endif /* SHMBUS_LAYOUT_H */

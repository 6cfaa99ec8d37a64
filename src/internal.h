/* SPDX-License-Identifier: Apache-2.0 */
/* Internal declarations shared by the core's files (shmbus__ names). */
#ifndef SHMBUS_INTERNAL_H
#define SHMBUS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "layout.h"
#include "platform.h"
#include "shmbus.h"

#define SHMBUS__DEFAULT_DOMAIN "default"
#define SHMBUS__DEFAULT_MODE 0600u
/* How long an opener waits for a segment's creator to finish it. */
#define SHMBUS__INIT_TIMEOUT_NS (UINT64_C(2000) * 1000 * 1000)

/* Sets what shmbus_error_detail() returns to this thread (fmt NULL: ""). */
#if defined(__MINGW32__)
/* MinGW's vsnprintf is C99's under __USE_MINGW_ANSI_STDIO (CMakeLists.txt). */
__attribute__((format(gnu_printf, 1, 2)))
#elif defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
void shmbus__set_error_detail(const char *fmt, ...);

/* The index of the lowest set bit of v (v != 0), without an OS or compiler
 * #ifdef in the core: GCC and Clang builtins, MSVC's intrinsic, else a loop. */
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
static inline uint32_t shmbus__ctz64(uint64_t v) {
  unsigned long i;
  _BitScanForward64(&i, v);
  return (uint32_t)i;
}
#elif defined(__GNUC__)
static inline uint32_t shmbus__ctz64(uint64_t v) { return (uint32_t)__builtin_ctzll(v); }
#else
static inline uint32_t shmbus__ctz64(uint64_t v) {
  uint32_t i = 0;
  while (!(v & 1u)) v >>= 1, i++;
  return i;
}
#endif

#define SHMBUS__ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((uint64_t)(a)-1))

/* ---- node.c ------------------------------------------------------------- */

struct shmbus_node {
  uint64_t refs;    /* user reference + one per open port (atomic) */
  uint64_t opening; /* port opens in progress (atomic): cleanup spares
                       services while one may be between counting itself
                       as a user and claiming its slot               */
  uint64_t id;      /* random, non-zero, never reused              */
  shmbus__root root;
  shmbus__token token; /* held while the node lives                */
  char domain[SHMBUS_DOMAIN_MAX + 1];
};

/* A port takes a reference on open and drops it on close. */
void shmbus__node_ref(shmbus_node *node);
void shmbus__node_unref(shmbus_node *node);
/* +1 when a port open starts, -1 when it ends (see `opening`). */
void shmbus__node_opening(shmbus_node *node, int delta);

/* ---- names.c ------------------------------------------------------------ */

int shmbus__check_domain(const char *domain);
int shmbus__check_service_name(const char *name);
int shmbus__check_type_name(const char *name);
/* FNV-1a, 64 bits: the fixed-length stand-in for a service name in object
 * names; the full name is stored in the segment and compared on open. */
uint64_t shmbus__hash64(const char *s);
/* "shmbus.<domain>.<hash>.<suffix>": every object carries this prefix so
 * cleanup and leak checks find them. `out` has SHMBUS__OBJECT_NAME_MAX. */
void shmbus__object_name(char *out, const char *domain, uint64_t service_hash, const char *suffix);
/* "shmbus.<domain>.n.<id>": a node's liveness token. */
void shmbus__node_token_name(char *out, const char *domain, uint64_t node_id);
/* Whether node `node_id` of the domain lives (liveness.c): 1 alive, 0 dead.
 * A node that cannot be probed (another user's) counts as alive. */
int shmbus__node_alive(const shmbus_node *self, uint64_t node_id);
/* The suffixes of a publisher's segments: "<id>.d" (data) and "<id>.c". */
void shmbus__publisher_object_name(char *out, const char *domain, uint64_t service_hash,
                                   uint64_t pub_id, int data);
/* The OS objects of waitable words (wait.h; only Win32 makes any):
 * "<hash>.e<k>", subscriber slot k's wake word, and "<hash>.p<id>.r<k>",
 * the room word of publisher <id>'s connection k. */
void shmbus__wake_object_name(char *out, const char *domain, uint64_t service_hash, uint32_t slot);
void shmbus__room_object_name(char *out, const char *domain, uint64_t service_hash, uint64_t pub_id,
                              uint32_t slot);

/* ---- segment.c ---------------------------------------------------------- */

/* Fills a fresh segment's header except `initialised`. */
void shmbus__seg_header_init(shmbus__seg_header *hdr, uint32_t kind, uint64_t total_size,
                             uint64_t creator, uint64_t generation);
/* Marks the segment complete: the store-release that openers' acquire in
 * shmbus__seg_header_wait pairs with. */
void shmbus__seg_header_publish(shmbus__seg_header *hdr);
/* Waits (bounded) until the segment is complete and checks its header
 * against the mapped size: CORRUPT (magic, kind, sizes), VERSION,
 * INCOMPATIBLE (another page size), NOT_READY (never completed). */
int shmbus__seg_header_wait(const shmbus__segment *seg, uint32_t kind, uint64_t deadline_ns);
/* Opens a segment (shmbus__segment_open: at least min_size bytes, at most
 * max_size mapped), retrying until deadline_ns while its creator has not
 * sized or finished it; a deadline in the past tries once. */
int shmbus__segment_open_wait(const shmbus__root *root, const char *name, int writable,
                              uint32_t kind, uint64_t min_size, uint64_t max_size,
                              uint64_t deadline_ns, shmbus__segment *out);

/* ---- subscriber.c: waiting, shared with waitset.c ---------------------- */

/* 0 when a sample can be taken (or the next take has an error to tell: a
 * publisher cut a connection off), HOLD_LIMIT when one is queued but the
 * subscriber holds its maximum, NO_PUBLISHER when the last publisher went
 * (once), CORRUPT when the subscriber is defunct, EMPTY otherwise. Looks
 * for new publishers. */
int shmbus__subscriber_ready(shmbus_subscriber *sub);
/* Announces that the caller may sleep (the subscriber's `sleeping`, then a
 * seq_cst fence); look with shmbus__subscriber_ready once more before
 * sleeping. */
void shmbus__subscriber_arm(shmbus_subscriber *sub);
void shmbus__subscriber_disarm(shmbus_subscriber *sub);
/* 1 when every connected publisher has acknowledged that it wakes us. */
int shmbus__subscriber_acked(const shmbus_subscriber *sub);
int64_t shmbus__subscriber_spin(const shmbus_subscriber *sub);
/* Reaps dead ports of the subscriber's service. */
void shmbus__subscriber_sweep(shmbus_subscriber *sub);
/* Records the wait set (NULL: none) and the notifier publishers wake
 * (0: the futex). BUSY when joining a second wait set, INVAL when the wait
 * set's `domain` is not the subscriber's (its notifier would be addressed
 * in the wrong domain). */
int shmbus__subscriber_join(shmbus_subscriber *sub, shmbus_waitset *ws, const char *domain,
                            uint64_t notifier);
/* A deadline for a timeout (negative: none). */
uint64_t shmbus__wait_deadline(int64_t timeout_ns);
/* How long to sleep now: short, doubling slices (*ack_slice) while not
 * every publisher acknowledged, else the liveness slice; never past the
 * deadline. */
uint64_t shmbus__wait_slice(uint64_t *ack_slice, int acked, uint64_t now, uint64_t deadline);
/* The first of the short slices, and the liveness slice. */
enum { SHMBUS__ACK_SLICE_NS = 1000 * 1000, SHMBUS__LIVENESS_SLICE_NS = 100 * 1000 * 1000 };

/* Test hook: the sequence number the publisher's next sample gets (tests
 * cross the 2^64 wrap with it). */
void shmbus__publisher_set_sequence(shmbus_publisher *pub, uint64_t next);
/* Test hook: 1 when the publisher demotes what it publishes (publisher.c,
 * demote: the CPU can, and SHMBUS_CLDEMOTE is not "0" or "off"). */
int shmbus__publisher_demotes(const shmbus_publisher *pub);

/* Clears an out-pointer on every error path: the public contract. */
#define SHMBUS__CLEAR_OUT(p) \
  do {                       \
    if (p) *(p) = NULL;      \
  } while (0)

#endif /* SHMBUS_INTERNAL_H */

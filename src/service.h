/* SPDX-License-Identifier: Apache-2.0 */
/* A service: its segment, its immutable configuration, the sizes derived
 * from it, and the registry of ports. */
#ifndef SHMBUS_SERVICE_H
#define SHMBUS_SERVICE_H

#include "internal.h"

/* Sizes and offsets derived from a configuration. Every process computes
 * them privately from its validated copy of the configuration, so no
 * offset or size is ever read from shared memory. */
typedef struct shmbus__layout {
  uint64_t page;           /* shmbus__page_size(): the unit of confinement      */
  uint32_t chunks;         /* pool size: subs x (queue + held) + history + loans */
  uint32_t payload_offset; /* payload start within a chunk                    */
  uint64_t max_payload;    /* bytes                                           */
  uint64_t chunk_stride;   /* bytes between chunk starts, cache-line multiple */
  uint64_t chunks_offset;  /* first chunk within the data segment             */
  uint64_t data_size;
  uint32_t queue_cap;       /* submission ring slots: power of two >= depth    */
  uint32_t done_cap;        /* completion ring slots: power of two >= depth + held */
  uint64_t sub_ring_offset; /* within a connection block                       */
  uint64_t done_ring_offset;
  uint64_t conn_stride; /* a multiple of page                               */
  uint64_t control_size;
  uint64_t wait_offset; /* the subscribers' wait pages, service segment     */
  uint64_t wake_offset; /* the wake words in the service segment            */
  uint64_t service_size;
} shmbus__layout;

/* Where things are, as byte offsets from the start of their segment (what
 * tests, fuzzers and the cleanup tool use instead of repeating the layout):
 * connection k in a publisher's control segment, registry slot i of a kind
 * (SHMBUS__PUBLISHER, SHMBUS__SUBSCRIBER) in the service segment, chunk c
 * in the data segment. */
enum { SHMBUS__PUBLISHER = 0, SHMBUS__SUBSCRIBER = 1 };

static inline uint64_t shmbus__layout_conn_offset(const shmbus__layout *l, uint32_t k) {
  return l->page + (uint64_t)k * l->conn_stride;
}
static inline uint64_t shmbus__layout_slot_offset(const shmbus__layout *l,
                                                  const shmbus__service_config *cfg, int kind,
                                                  uint32_t i) {
  uint64_t n = kind == SHMBUS__PUBLISHER ? i : (uint64_t)cfg->max_publishers + i;
  return l->page + n * sizeof(shmbus__port_slot);
}
/* Subscriber slot k's wait page. */
static inline uint64_t shmbus__layout_wait_offset(const shmbus__layout *l, uint32_t k) {
  return l->wait_offset + (uint64_t)k * l->page;
}
static inline uint64_t shmbus__layout_wake_offset(const shmbus__layout *l, uint32_t k) {
  return l->wake_offset + (uint64_t)k * sizeof(shmbus__wake_word);
}
static inline uint64_t shmbus__layout_chunk_offset(const shmbus__layout *l, uint32_t c) {
  return l->chunks_offset + (uint64_t)c * l->chunk_stride;
}

/* Checks a configuration's limits and derives its layout (for this
 * machine's page size). INVAL for a limit out of range, TOO_LARGE when
 * sizes overflow. */
int shmbus__layout_compute(const shmbus__service_config *cfg, shmbus__layout *out);

typedef struct shmbus__service {
  shmbus_node *node;
  shmbus__segment seg;
  shmbus__service_seg *shm;   /* seg.base                                  */
  shmbus__service_config cfg; /* private, validated copy                  */
  shmbus__layout layout;
  uint64_t hash; /* of the service name                      */
  int opening;   /* counted in node->opening until ready     */
  /* Confinement: the mapping is read-only but for a subscriber's own wait
   * page and, for a publisher, the wake words; `unsealed` counts the cold
   * operations in progress that opened it whole. */
  int own_kind; /* -1 until a slot is claimed               */
  uint32_t own_slot;
  int unsealed;
  int use_dropped; /* a reaper dropped our use (see leave)     */
  char object_name[SHMBUS__OBJECT_NAME_MAX];
} shmbus__service;

/* Registry slot i of a kind; subscriber slot k's wait state and wake word. */
static inline shmbus__port_slot *shmbus__service_slot(const shmbus__service *svc, int kind,
                                                      uint32_t i) {
  return (shmbus__port_slot *)((uint8_t *)svc->shm +
                               shmbus__layout_slot_offset(&svc->layout, &svc->cfg, kind, i));
}
static inline shmbus__wait_slot *shmbus__service_wait(const shmbus__service *svc, uint32_t k) {
  return (shmbus__wait_slot *)((uint8_t *)svc->shm + shmbus__layout_wait_offset(&svc->layout, k));
}
static inline uint32_t *shmbus__service_event(const shmbus__service *svc, uint32_t k) {
  return &((shmbus__wake_word *)((uint8_t *)svc->shm + shmbus__layout_wake_offset(&svc->layout, k)))
              ->event;
}

/* A cold operation writes the registry: unseal before, seal after (they
 * nest). Two system calls each way; never on the hot path. */
void shmbus__service_unseal(shmbus__service *svc);
void shmbus__service_seal(shmbus__service *svc);

/* Creates the service or opens and checks the existing one, and counts
 * the caller as a user. On error nothing is kept. From here until
 * shmbus__service_ready (or detach) the port counts as opening on its node
 * (node->opening), which cleanup respects. */
int shmbus__service_attach(shmbus_node *node, const char *name, const shmbus_service_opts *opts,
                           shmbus__service *svc);
/* Opens an existing service by object name whatever its type (cleanup).
 * NOT_FOUND, CORRUPT, VERSION, NOT_READY, BUSY (being removed). */
int shmbus__service_attach_object(shmbus_node *node, const char *object_name, uint64_t deadline_ns,
                                  shmbus__service *svc);
/* For a reader that attaches nothing (introspect.c): the largest service
 * segment any valid configuration lays out (map no more), and the checked
 * private copy of the configuration of a mapped service segment (`svc`
 * needs only seg and shm): CORRUPT unless the names are NUL-terminated,
 * every limit is in range and the layout fits the mapping. */
uint64_t shmbus__service_size_max(void);
int shmbus__service_load_config(const shmbus__service *svc, shmbus__service_config *cfg,
                                shmbus__layout *layout);
/* Drops the caller's use; the last user removes the service (returns 1
 * then, else 0). */
int shmbus__service_detach(shmbus__service *svc);

/* Claims a free slot of the given kind with a new id (not yet visible as
 * ready). PORT_LIMIT when all are taken. */
int shmbus__service_claim(shmbus__service *svc, int kind, uint32_t *slot, uint64_t *id);
/* Marks a claimed slot ready and tells the other side. */
void shmbus__service_ready(shmbus__service *svc, int kind, uint32_t slot, uint64_t id);
/* Frees our slot (claimed with `id`) and tells the other side. A slot
 * that is no longer ours (a reaper took us for dead and freed it) is left
 * alone, and so is our use of the service, which that reaper dropped. */
void shmbus__service_leave(shmbus__service *svc, int kind, uint32_t slot, uint64_t id);

/* Frees a slot whose owner the caller found dead, if `owner` (a node id, a
 * dead reaper's mark, or 0 for a word a peer wrote without an owner) still
 * owns it: removes a dead publisher's segments, drops the dead port's use
 * of the service and tells the other side. 1 if this call did it. */
int shmbus__service_reap(shmbus__service *svc, int kind, uint32_t slot, uint64_t owner);
/* Frees the registry slots of ports whose nodes are dead, removing dead
 * publishers' segments, and tells the other side. Returns how many. */
int shmbus__service_sweep(shmbus__service *svc);

/* Cleanup's last resort, for a service whose sweep found no live port:
 * when alone(node) says that no other node of the domain lives and that
 * this one opens no port, removes the service whatever its use count (a
 * port killed between counting itself and claiming its slot leaks a use).
 * Returns 1 if it removed the service (the caller's detach then only
 * unmaps). */
int shmbus__service_remove_orphaned(shmbus__service *svc, int (*alone)(shmbus_node *node));

/* Wakes subscriber slot `k` if it sleeps (wait.h): one system call then,
 * none otherwise. `woken`, when not NULL, is the caller's memory of the
 * last sleep it woke there: a sleep it woke already is not woken again.
 * `w` is the caller's waitable of slot k's wake word. The caller made its
 * news visible and then called shmbus__wake_fence. */
void shmbus__service_wake(shmbus__service *svc, uint32_t k, uint32_t *woken, shmbus__waitable *w);

/* Removes publisher `pub_id`'s segments (the data and control objects). */
void shmbus__remove_publisher_segments(shmbus_node *node, uint64_t service_hash, uint64_t pub_id);

/* The id in a slot word when its port is ready, else 0. */
static inline uint64_t shmbus__slot_ready_id(uint64_t word) { return (word & 1u) ? word >> 1 : 0; }

#endif /* SHMBUS_SERVICE_H */

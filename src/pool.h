/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A publisher's private bookkeeping of its chunks: the free stack and the
 * reader reference counts. Only the publisher reads or writes these, so a
 * subscriber can never corrupt them; a chunk goes back on the free stack
 * exactly when its count drops to zero.
 *
 * References: +1 for the loan, +1 per delivery to a connection, +1 per
 * history slot; -1 when a loan is published or discarded, per completion
 * or eviction, per history drop, per reclaimed dead connection.
 */
#ifndef SHMBUS_POOL_H
#define SHMBUS_POOL_H

#include <stdint.h>

typedef struct shmbus__pool {
  uint32_t chunks;
  uint32_t free_count;
  uint32_t *free_stack; /* LIFO: the most recently freed chunk is warm     */
  uint32_t *refs;
} shmbus__pool;

/* Allocates the bookkeeping for `chunks` chunks, all free. NOMEM. */
int shmbus__pool_init(shmbus__pool *pool, uint32_t chunks);
void shmbus__pool_destroy(shmbus__pool *pool);

/* Takes a free chunk with one reference. 0 when none is free. */
static inline int shmbus__pool_get(shmbus__pool *pool, uint32_t *chunk) {
  if (pool->free_count == 0) return 0;
  uint32_t c = pool->free_stack[--pool->free_count];
  pool->refs[c] = 1;
  *chunk = c;
  return 1;
}

static inline void shmbus__pool_ref(shmbus__pool *pool, uint32_t chunk) { pool->refs[chunk]++; }

/* Drops one reference; the chunk is free again at zero. */
static inline void shmbus__pool_unref(shmbus__pool *pool, uint32_t chunk) {
  if (--pool->refs[chunk] == 0) pool->free_stack[pool->free_count++] = chunk;
}

#endif /* SHMBUS_POOL_H */

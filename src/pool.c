/* SPDX-License-Identifier: Apache-2.0 */
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "shmbus.h"

int shmbus__pool_init(shmbus__pool *pool, uint32_t chunks) {
  memset(pool, 0, sizeof *pool);
  pool->free_stack = malloc((size_t)chunks * sizeof(uint32_t));
  pool->refs = calloc(chunks, sizeof(uint32_t));
  if (pool->free_stack == NULL || pool->refs == NULL) {
    shmbus__pool_destroy(pool);
    return SHMBUS_ERR_NOMEM;
  }
  pool->chunks = chunks;
  /* Chunk 0 on top: a fresh publisher loans 0, 1, 2, ... */
  for (uint32_t i = 0; i < chunks; i++) pool->free_stack[i] = chunks - 1 - i;
  pool->free_count = chunks;
  return 0;
}

void shmbus__pool_destroy(shmbus__pool *pool) {
  free(pool->free_stack);
  free(pool->refs);
  memset(pool, 0, sizeof *pool);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Heap allocations counted, for shmbus-hotpath-audit-cpp (hotpath_audit.cpp):
 * malloc and friends interposed (operator new of the C++ runtime calls
 * malloc, so it is counted too). Counting is on while hotpath_counting is
 * non-zero. The C audit (hotpath_audit.c) has the same interposition inline.
 */
#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>

#include "hotpath_malloc.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

volatile int hotpath_counting;
volatile unsigned long hotpath_allocations;

void *malloc(size_t n) {
  if (hotpath_counting) hotpath_allocations++;
  return __libc_malloc(n);
}
void *calloc(size_t n, size_t m) {
  if (hotpath_counting) hotpath_allocations++;
  return __libc_calloc(n, m);
}
void *realloc(void *p, size_t n) {
  if (hotpath_counting) hotpath_allocations++;
  return __libc_realloc(p, n);
}
void *memalign(size_t a, size_t n) {
  if (hotpath_counting) hotpath_allocations++;
  return __libc_memalign(a, n);
}
void *aligned_alloc(size_t a, size_t n) { return memalign(a, n); }
int posix_memalign(void **out, size_t a, size_t n) {
  *out = memalign(a, n);
  return *out ? 0 : 12; /* ENOMEM */
}
void free(void *p) { __libc_free(p); }

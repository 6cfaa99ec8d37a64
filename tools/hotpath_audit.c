/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shmbus-hotpath-audit: runs steady-state loan -> publish -> take -> release
 * cycles and counts the heap allocations made during them (malloc and
 * friends are interposed below). System calls are counted from outside by
 * tools/hotpath-audit.sh, which runs this program under strace: the
 * measured loop is bracketed by two getppid() calls (MARK_BEGIN/MARK_END).
 *
 *   shmbus-hotpath-audit [CYCLES]      (default 1000000)
 * Exit status: 0 when no allocation was made during the cycles, 1 otherwise.
 */
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <shmbus.h>

/* ---- malloc interposition ---- */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static volatile int counting;
static volatile unsigned long allocations;

void *malloc(size_t n) {
  if (counting) allocations++;
  return __libc_malloc(n);
}
void *calloc(size_t n, size_t m) {
  if (counting) allocations++;
  return __libc_calloc(n, m);
}
void *realloc(void *p, size_t n) {
  if (counting) allocations++;
  return __libc_realloc(p, n);
}
void *memalign(size_t a, size_t n) {
  if (counting) allocations++;
  return __libc_memalign(a, n);
}
void *aligned_alloc(size_t a, size_t n) { return memalign(a, n); }
int posix_memalign(void **out, size_t a, size_t n) {
  *out = memalign(a, n);
  return *out ? 0 : 12; /* ENOMEM */
}
void free(void *p) { __libc_free(p); }

/* Markers that strace shows around the measured loop; neither is made by
 * shmbus or libc on their own. */
#define MARK_BEGIN() syscall(SYS_getppid)
#define MARK_END() syscall(SYS_getppid)

#define CHECK(call)                                                                       \
  do {                                                                                    \
    int r_ = (call);                                                                      \
    if (r_ != 0) {                                                                        \
      fprintf(stderr, "hotpath-audit: %s: %s\n", #call, shmbus_strerror(r_));             \
      exit(2);                                                                            \
    }                                                                                     \
  } while (0)

int main(int argc, char **argv) {
  unsigned long cycles = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000ul;
  char domain[32];
  snprintf(domain, sizeof domain, "audit%ld", (long)getpid());
  shmbus_node_opts no = SHMBUS_NODE_OPTS_INIT;
  no.domain = domain;
  shmbus_node *node;
  CHECK(shmbus_node_open(&no, &node));
  shmbus_service_opts so = SHMBUS_SERVICE_OPTS_INIT;
  so.type.name = "audit/bytes";
  so.type.size = 1;
  so.type.align = 8;
  so.max_elements = 256;
  so.history = 2;
  shmbus_publisher *pub;
  shmbus_subscriber *subs[2];
  CHECK(shmbus_publisher_open(node, "audit", &so, &pub));
  CHECK(shmbus_subscriber_open(node, "audit", &so, &subs[0]));
  CHECK(shmbus_subscriber_open(node, "audit", &so, &subs[1]));
  /* Connect both ways before measuring: steady state. */
  for (int connected = 0; connected < 3;) {
    connected = (shmbus_subscriber_publishers(subs[0]) == 1) +
                (shmbus_subscriber_publishers(subs[1]) == 1) + (shmbus_publisher_update(pub) == 2);
  }
  uint64_t received = 0;
  for (int warm = 0; warm < 2; warm++) {
    if (warm == 1) {
      counting = 1;
      MARK_BEGIN();
    }
    unsigned long n = warm == 0 ? 1000 : cycles;
    for (unsigned long i = 0; i < n; i++) {
      void *payload;
      CHECK(shmbus_publisher_loan(pub, 64 + (i % 64), &payload));
      memset(payload, (int)i, 64);
      CHECK(shmbus_publisher_publish(pub, payload));
      for (int k = 0; k < 2; k++) {
        shmbus_sample s;
        CHECK(shmbus_subscriber_take(subs[k], &s));
        received += s.bytes;
        CHECK(shmbus_subscriber_release(subs[k], &s));
      }
    }
  }
  MARK_END();
  counting = 0;
  unsigned long allocs = allocations;
  printf("hotpath-audit: %lu cycles of loan/publish/take/release (2 subscribers, history 2): "
         "%lu heap allocations\n", cycles, allocs);
  shmbus_subscriber_close(subs[0]);
  shmbus_subscriber_close(subs[1]);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  (void)received;
  return allocs == 0 ? 0 : 1;
}

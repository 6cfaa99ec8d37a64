/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shmbus-hotpath-audit: runs steady-state loan -> publish -> take -> release
 * cycles and counts the heap allocations made during them (malloc and
 * friends are interposed below). System calls are counted from outside by
 * tools/hotpath-audit.sh, which runs this program under strace: each
 * measured phase is bracketed by two getppid() calls (MARK_BEGIN/MARK_END).
 *
 *   phase 1, busy: CYCLES cycles with 2 subscribers polling; one of them has
 *            waited before (so the publisher follows each publish with the
 *            check for sleepers) but is awake. Expected: 0 system calls.
 *   phase 2, sleeping: SLEEP_CYCLES publishes to a subscriber in another
 *            process that sleeps in shmbus_subscriber_wait between samples.
 *            Expected: at most 1 system call per publish (the futex wake).
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
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
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

#define CHECK(call)                                                           \
  do {                                                                        \
    int r_ = (call);                                                          \
    if (r_ != 0) {                                                            \
      fprintf(stderr, "hotpath-audit: %s: %s\n", #call, shmbus_strerror(r_)); \
      exit(2);                                                                \
    }                                                                         \
  } while (0)

enum { SLEEP_CYCLES = 1000, SLEEP_WARMUP = 20 };

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no system call */
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The sleeping subscriber of phase 2 (a child process): counts what it
 * consumed into *consumed. */
static int sleeper(const char *domain, const shmbus_service_opts *so, uint64_t *consumed) {
  shmbus_node_opts no = SHMBUS_NODE_OPTS_INIT;
  no.domain = domain;
  shmbus_node *node;
  shmbus_subscriber *sub;
  CHECK(shmbus_node_open(&no, &node));
  CHECK(shmbus_subscriber_open(node, "audit-sleep", so, &sub));
  __atomic_store_n(consumed, UINT64_MAX, __ATOMIC_RELEASE); /* open */
  for (uint64_t n = 0; n < SLEEP_WARMUP + SLEEP_CYCLES; n++) {
    shmbus_sample s;
    CHECK(shmbus_subscriber_wait(sub, 10 * 1000000000LL));
    CHECK(shmbus_subscriber_take(sub, &s));
    CHECK(shmbus_subscriber_release(sub, &s));
    __atomic_store_n(consumed, n + 1, __ATOMIC_RELEASE);
  }
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  return 0;
}

/* Phase 2, publisher side. */
static void sleeping_phase(shmbus_node *node, const char *domain, const shmbus_service_opts *so) {
  uint64_t *consumed = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (consumed == MAP_FAILED) exit(2);
  *consumed = 0;
  pid_t child = fork();
  if (child < 0) exit(2);
  if (child == 0) _exit(sleeper(domain, so, consumed));
  while (__atomic_load_n(consumed, __ATOMIC_ACQUIRE) != UINT64_MAX) usleep(100);
  shmbus_publisher *pub;
  CHECK(shmbus_publisher_open(node, "audit-sleep", so, &pub));
  while (shmbus_publisher_update(pub) != 1) usleep(100);
  for (uint64_t i = 0; i < SLEEP_WARMUP + SLEEP_CYCLES; i++) {
    if (i == SLEEP_WARMUP) MARK_BEGIN();
    void *payload;
    CHECK(shmbus_publisher_loan(pub, 64, &payload));
    memset(payload, (int)i, 64);
    CHECK(shmbus_publisher_publish(pub, payload));
    /* Spin (no system call) until it took the sample, then give it 200 us
     * to go back to sleep. */
    uint64_t give_up = mono_ns() + 10 * 1000000000ull;
    while (__atomic_load_n(consumed, __ATOMIC_ACQUIRE) != i + 1)
      if (mono_ns() > give_up) exit(2);
    for (uint64_t until = mono_ns() + 200 * 1000; mono_ns() < until;) {
    }
  }
  MARK_END();
  int status = 0;
  waitpid(child, &status, 0);
  shmbus_publisher_close(pub);
  munmap(consumed, 4096);
  printf("hotpath-audit: %d publishes to a subscriber sleeping in another process\n", SLEEP_CYCLES);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) exit(2);
}

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
  /* subs[1] has slept once: the publisher checks it for sleep after every
   * publish from now on, which must stay free of system calls. */
  if (shmbus_subscriber_wait(subs[1], 1000000) != SHMBUS_ERR_TIMEDOUT) exit(2);
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
  printf(
      "hotpath-audit: %lu cycles of loan/publish/take/release (2 subscribers, history 2, "
      "one of them in wait mode): %lu heap allocations\n",
      cycles, allocs);
  so.history = 0;
  sleeping_phase(node, domain, &so);
  shmbus_subscriber_close(subs[0]);
  shmbus_subscriber_close(subs[1]);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  (void)received;
  return allocs == 0 ? 0 : 1;
}

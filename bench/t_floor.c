/* SPDX-License-Identifier: Apache-2.0 */
/* The floors: one cache line ping-ponged between the two cores (busy
 * latency), two lines per trip (floor2: a payload line in a rotating pool
 * of chunks, then a signal line: what a zero-copy delivery cannot do
 * without), a futex word ping-ponged with both sides asleep in the kernel
 * (blocking latency; Linux only), and an SPSC ring of 64-byte records
 * (throughput). Shared memory is made by the parent before the peers start
 * (bench_os_share: an anonymous shared mapping inherited across fork on
 * POSIX; on Windows a named section, which a peer opens on its first use). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#ifndef _WIN32
#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "atomic.h" /* the library's shmbus__cpu_demote, for floor2-cldemote */
#include "bench.h"

#define LINE 64
#define STOP UINT64_MAX

static uint64_t *line;

static int floor_prepare(const bench_params *p) {
  if (line == NULL) {
    void *m = bench_os_share(p, "floor", 4096, NULL, 0);
    if (m == NULL) return -1;
    line = m;
  }
  __atomic_store_n(line, 0, __ATOMIC_RELAXED);
  return 0;
}

/* A writes odd values, B answers with the next even one: each one-way trip
 * is one transfer of one cache line. */
static int floor_run(const bench_params *p, int role, bench_shared *sh) {
  /* A peer that did not inherit the parent's line (Windows) opens it. */
  if (line == NULL) {
    char why[128];
    if ((line = bench_os_share(p, "floor", 4096, why, sizeof why)) == NULL) {
      bench_fail(sh, "floor: %s", why);
      return -1;
    }
  }
  if (bench_handshake(sh, role)) return -1;
  uint64_t start = bench_now_ns();
  for (uint64_t i = 0;; i++) {
    uint64_t ask = 2 * i + 1, answer = 2 * i + 2;
    if (role == ROLE_A) {
      uint64_t t0 = bench_now_ns();
      __atomic_store_n(line, ask, __ATOMIC_RELEASE);
      while (__atomic_load_n(line, __ATOMIC_ACQUIRE) != answer) {
      }
      if (!bench_record(p, sh, i, t0, bench_now_ns(), start)) {
        __atomic_store_n(line, STOP, __ATOMIC_RELEASE);
        return 0;
      }
    } else {
      uint64_t v;
      while ((v = __atomic_load_n(line, __ATOMIC_ACQUIRE)) != ask) {
        if (v == STOP) return 0;
        if (sh->failed) return -1;
      }
      __atomic_store_n(line, answer, __ATOMIC_RELEASE);
    }
  }
}

const bench_transport bench_floor = {"floor", "busy", 0, NULL, floor_prepare, floor_run, NULL};

/* ---- floor2: a payload line and a signal line per trip ----
 * Each direction has a pool of as many chunks as shmbus's pool holds for
 * the same payload in the busy row (bench_shmbus_pool), of shmbus's chunk
 * stride, and a signal line. The sender fills chunk i % N's first line (or
 * the whole payload with --touch all) at shmbus's payload offset, then
 * stores i + 1 in the signal line; the receiver spins on the signal, then
 * reads the stamp from the chunk. Two line transfers per one-way trip and
 * the same memory footprint (lines, pages, TLB entries) as shmbus. */

enum { FLOOR2_PAYLOAD_OFFSET = 32 }; /* shmbus's chunk header, alignment 8 */

typedef struct floor2_region {
  void *base;
  size_t bytes, stride;
  uint32_t chunks;
} floor2_region;

static floor2_region f2;

static void floor2_tag(const bench_params *p, char *tag, size_t size) {
  snprintf(tag, size, "floor2-%u", p->run);
}

/* Two signal pages, then the two pools. */
static size_t floor2_bytes(size_t stride, uint32_t chunks) {
  return 2 * 4096 + 2 * (size_t)chunks * stride;
}

/* Maps the region (the parent makes it, a Windows peer opens it). */
static int floor2_map(const bench_params *p, char *why, size_t why_size) {
  uint32_t chunks;
  size_t stride;
  if (bench_shmbus_pool(p, &chunks, &stride)) {
    if (why) snprintf(why, why_size, "no shmbus pool to size the chunks by");
    return -1;
  }
  char tag[32];
  floor2_tag(p, tag, sizeof tag);
  size_t bytes = floor2_bytes(stride, chunks);
  void *m = bench_os_share(p, tag, bytes, why, why_size);
  if (m == NULL) return -1;
  f2 = (floor2_region){m, bytes, stride, chunks};
  return 0;
}

static int floor2_prepare(const bench_params *p) { return floor2_map(p, NULL, 0); }

static void floor2_cleanup(const bench_params *p) {
  (void)p;
  bench_os_unshare(f2.base, f2.bytes);
  memset(&f2, 0, sizeof f2);
}

static uint64_t *floor2_signal(int to_b) {
  return (uint64_t *)((char *)f2.base + (to_b ? 0 : 4096));
}

static unsigned char *floor2_chunk(int to_b, uint64_t i) {
  size_t pool = (size_t)f2.chunks * f2.stride;
  return (unsigned char *)f2.base + 2 * 4096 + (to_b ? 0 : pool) +
         (size_t)(i % f2.chunks) * f2.stride + FLOOR2_PAYLOAD_OFFSET;
}

static int f2_demote; /* floor2-cldemote (below), set in the peers */

static void floor2_send(const bench_params *p, int to_b, uint64_t i, uint64_t stamp) {
  bench_touch(floor2_chunk(to_b, i), p->payload, stamp, p->touch_all);
  __atomic_store_n(floor2_signal(to_b), i + 1, __ATOMIC_RELEASE);
  if (f2_demote) {
    shmbus__cpu_demote(floor2_chunk(to_b, i));
    shmbus__cpu_demote(floor2_signal(to_b));
  }
}

/* Spins until trip i arrived; its stamp, or STOP (stopped or failed). */
static uint64_t floor2_receive(bench_shared *sh, int to_b, uint64_t i) {
  uint64_t v;
  while ((v = __atomic_load_n(floor2_signal(to_b), __ATOMIC_ACQUIRE)) != i + 1) {
    if (v == STOP || sh->failed) return STOP;
  }
  return bench_stamp(floor2_chunk(to_b, i));
}

static int floor2_run(const bench_params *p, int role, bench_shared *sh) {
  char why[128];
  if (f2.base == NULL && floor2_map(p, why, sizeof why)) {
    bench_fail(sh, "floor2: %s", why);
    return -1;
  }
  if (bench_handshake(sh, role)) return -1;
  uint64_t start = bench_now_ns();
  for (uint64_t i = 0;; i++) {
    if (role == ROLE_A) {
      uint64_t t0 = bench_now_ns();
      floor2_send(p, 1, i, i);
      uint64_t got = floor2_receive(sh, 0, i);
      if (got != i) {
        bench_fail(sh, "floor2: stamp %llu, expected %llu", (unsigned long long)got,
                   (unsigned long long)i);
        return -1;
      }
      if (!bench_record(p, sh, i, t0, bench_now_ns(), start)) {
        __atomic_store_n(floor2_signal(1), STOP, __ATOMIC_RELEASE);
        return 0;
      }
    } else {
      uint64_t stamp = floor2_receive(sh, 1, i);
      if (stamp == STOP) return sh->failed ? -1 : 0;
      floor2_send(p, 0, i, stamp);
    }
  }
}

const bench_transport bench_floor2 = {"floor2",   "busy",        0, NULL, floor2_prepare,
                                      floor2_run, floor2_cleanup};

/* ---- floor2-cldemote: floor2 whose sender demotes both lines ----
 * After each trip's stores the sender demotes the chunk line and the signal
 * line to the shared cache (CLDEMOTE), as shmbus's publisher does after a
 * pause (src/publisher.c, demote): what the same hint buys the floor, so
 * that shmbus / floor2 is not read as less software than it is. */
static const char *floor2_demote_unavailable(void) {
  return shmbus__cpu_can_demote() ? NULL : "the CPU has no CLDEMOTE";
}

static int floor2_demote_run(const bench_params *p, int role, bench_shared *sh) {
  f2_demote = 1;
  return floor2_run(p, role, sh);
}

const bench_transport bench_floor2_demote = {
    "floor2-cldemote", "busy",        0, floor2_demote_unavailable, floor2_prepare,
    floor2_demote_run, floor2_cleanup};

#ifndef _WIN32

/* ---- futex ping-pong: the floor of a blocking transport ----
 * One 32-bit word. A stores an odd value and wakes, B sleeps until it sees
 * it, stores the next even value and wakes, A sleeps until it sees that.
 * Both sides sleep at once (no spinning: shmbus_subscriber_wait's default
 * spin time is 0 too) and every wake is a FUTEX_WAKE system call. The
 * mapping is shared between processes, so the futex is not PRIVATE. */

#define FUTEX_STOP UINT32_MAX /* never reached by the counter: < 2^31 trips */

static uint32_t *fword;

static int futex_prepare(const bench_params *p) {
  void *m = bench_os_share(p, "futex", 4096, NULL, 0);
  if (m == NULL) return -1;
  fword = m;
  __atomic_store_n(fword, 0, __ATOMIC_RELAXED);
  return 0;
}

static void futex_cleanup(const bench_params *p) {
  (void)p;
  if (fword) bench_os_unshare(fword, 4096);
  fword = NULL;
}

static int futex_wake(bench_shared *sh) {
  if (syscall(SYS_futex, fword, FUTEX_WAKE, 1, NULL, NULL, 0) < 0) {
    bench_fail(sh, "FUTEX_WAKE: %s", strerror(errno));
    return -1;
  }
  return 0;
}

/* Sleeps until the word is `want` (0) or FUTEX_STOP (1); -1 on error. */
static int futex_await(bench_shared *sh, uint32_t want) {
  for (;;) {
    uint32_t v = __atomic_load_n(fword, __ATOMIC_ACQUIRE);
    if (v == want) return 0;
    if (v == FUTEX_STOP) return 1;
    if (syscall(SYS_futex, fword, FUTEX_WAIT, v, NULL, NULL, 0) < 0 && errno != EAGAIN &&
        errno != EINTR) {
      bench_fail(sh, "FUTEX_WAIT: %s", strerror(errno));
      return -1;
    }
  }
}

static int futex_run(const bench_params *p, int role, bench_shared *sh) {
  if (bench_handshake(sh, role)) return -1;
  uint64_t start = bench_now_ns();
  for (uint64_t i = 0;; i++) {
    uint32_t ask = (uint32_t)(2 * i + 1), answer = (uint32_t)(2 * i + 2);
    if (role == ROLE_A) {
      uint64_t t0 = bench_now_ns();
      __atomic_store_n(fword, ask, __ATOMIC_RELEASE);
      if (futex_wake(sh) || futex_await(sh, answer)) break;
      if (!bench_record(p, sh, i, t0, bench_now_ns(), start)) {
        __atomic_store_n(fword, FUTEX_STOP, __ATOMIC_RELEASE);
        return futex_wake(sh);
      }
    } else {
      int r = futex_await(sh, ask);
      if (r > 0) return 0; /* A said stop */
      if (r < 0) break;
      __atomic_store_n(fword, answer, __ATOMIC_RELEASE);
      if (futex_wake(sh)) break;
    }
  }
  /* A failure: let the other side out of its sleep. */
  if (sh->why[0] == 0) bench_fail(sh, "futex_floor: unexpected stop");
  __atomic_store_n(fword, FUTEX_STOP, __ATOMIC_RELEASE);
  syscall(SYS_futex, fword, FUTEX_WAKE, 1, NULL, NULL, 0);
  return -1;
}

const bench_transport bench_futex_floor = {"futex_floor", "blocking",   0, NULL, futex_prepare,
                                           futex_run,     futex_cleanup};
#endif /* !_WIN32: on Windows, os_win.c says why there is no futex_floor row */

/* ---- SPSC ring of 64-byte records ---- */

enum { RING_SLOTS = 1024 };

typedef struct spsc {
  uint64_t head; /* consumer writes */
  char pad0[LINE - 8];
  uint64_t tail; /* producer writes */
  char pad1[LINE - 8];
  unsigned char rec[RING_SLOTS][LINE];
} spsc;

static spsc *ring;

/* One ring per measurement: its name (Windows) says which. */
static void spsc_tag(const bench_params *p, char *tag, size_t size) {
  snprintf(tag, size, "spsc%u", p->run);
}

int bench_spsc_prepare(const bench_params *p) {
  char tag[32];
  spsc_tag(p, tag, sizeof tag);
  void *m = bench_os_share(p, tag, sizeof(spsc), NULL, 0);
  if (m == NULL) return -1;
  ring = m;
  return 0;
}

void bench_spsc_cleanup(const bench_params *p) {
  (void)p;
  bench_os_unshare(ring, sizeof(spsc));
  ring = NULL;
}

int bench_spsc_throughput(const bench_params *p, int role, bench_shared *sh) {
  /* A peer that did not inherit the parent's ring (Windows) opens it. */
  if (ring == NULL) {
    char tag[32], why[128];
    spsc_tag(p, tag, sizeof tag);
    if ((ring = bench_os_share(p, tag, sizeof(spsc), why, sizeof why)) == NULL) {
      bench_fail(sh, "spsc: %s", why);
      return -1;
    }
  }
  if (bench_handshake(sh, role)) return -1;
  uint64_t n = p->iterations, budget = (uint64_t)(p->budget_s * 1e9);
  uint64_t start = bench_now_ns();
  if (role == ROLE_A) {
    uint64_t tail = 0, head_seen = 0, i = 0;
    for (; i < n; i++) {
      while (tail - head_seen >= RING_SLOTS)
        head_seen = __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE);
      unsigned char *rec = ring->rec[tail % RING_SLOTS];
      bench_touch(rec, p->payload < LINE ? p->payload : LINE, i, 0);
      __atomic_store_n(&ring->tail, ++tail, __ATOMIC_RELEASE);
      if ((i & 1023) == 0 && bench_now_ns() - start > budget) {
        i++;
        break;
      }
    }
    /* End marker, then wait until everything was consumed. */
    while (tail - head_seen >= RING_SLOTS)
      head_seen = __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE);
    bench_touch(ring->rec[tail % RING_SLOTS], 8, UINT64_MAX, 0);
    __atomic_store_n(&ring->tail, ++tail, __ATOMIC_RELEASE);
    while (__atomic_load_n(&ring->head, __ATOMIC_ACQUIRE) != tail) {
    }
    sh->count = i;
    sh->msgs_per_s = (double)i * 1e9 / (double)(bench_now_ns() - start);
    return 0;
  }
  uint64_t head = 0, tail_seen = 0;
  for (uint64_t expect = 0;; expect++) {
    while (head == tail_seen) {
      tail_seen = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);
      if (sh->failed) return -1;
    }
    uint64_t stamp = bench_stamp(ring->rec[head % RING_SLOTS]);
    __atomic_store_n(&ring->head, ++head, __ATOMIC_RELEASE);
    if (stamp == UINT64_MAX) return 0;
    if (stamp != expect) {
      bench_fail(sh, "spsc: got %llu expected %llu", (unsigned long long)stamp,
                 (unsigned long long)expect);
      return -1;
    }
  }
}

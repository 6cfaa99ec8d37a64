/* SPDX-License-Identifier: Apache-2.0 */
/* shmbus itself: latency ping-pong, throughput and fan-out. */
#include <stdio.h>
#include <string.h>

#include <shmbus.h>

#include "bench.h"

#define CONNECT_TIMEOUT_NS (UINT64_C(10) * 1000000000u)
#define LATENCY_DEPTH 16 /* queue depth of the latency rows */

typedef struct ends {
  shmbus_node *node;
  shmbus_publisher *pub;
  shmbus_subscriber *sub;
} ends;

static shmbus_service_opts service_opts(size_t payload, uint32_t subs, uint32_t depth) {
  shmbus_service_opts o = SHMBUS_SERVICE_OPTS_INIT;
  /* Alignment 8 puts the payload's first bytes on the chunk header's line. */
  o.type.name = "bench/bytes";
  o.type.size = 1;
  o.type.align = 8;
  o.max_elements = (uint32_t)payload;
  o.max_publishers = 1;
  o.max_subscribers = subs;
  o.queue_depth = depth;
  o.max_held = 2;
  o.max_loans = 2;
  return o;
}

static void close_ends(ends *e) {
  shmbus_publisher_close(e->pub);
  shmbus_subscriber_close(e->sub);
  shmbus_node_close(e->node);
  memset(e, 0, sizeof *e);
}

/* Opens a publisher on `out` and a subscriber on `in` (either may be
 * NULL) and waits until both are connected to the other side. */
static int open_ends(const bench_params *p, bench_shared *sh, const char *out, const char *in,
                     uint32_t depth, ends *e) {
  memset(e, 0, sizeof *e);
  shmbus_node_opts no = SHMBUS_NODE_OPTS_INIT;
  no.domain = p->domain;
  shmbus_service_opts so = service_opts(p->payload, 1, depth);
  int r = shmbus_node_open(&no, &e->node);
  if (r == 0 && out) r = shmbus_publisher_open(e->node, out, &so, &e->pub);
  if (r == 0 && in) r = shmbus_subscriber_open(e->node, in, &so, &e->sub);
  if (r) {
    bench_fail(sh, "shmbus open: %s", shmbus_strerror(r));
    close_ends(e);
    return -1;
  }
  uint64_t deadline = bench_now_ns() + CONNECT_TIMEOUT_NS;
  for (;;) {
    /* Both calls every round: each side's look lets the other count it. */
    int subs = out ? shmbus_publisher_update(e->pub) : 1;
    int pubs = in ? shmbus_subscriber_publishers(e->sub) : 1;
    if (subs >= 1 && pubs >= 1) break;
    if (bench_now_ns() > deadline || sh->failed) {
      bench_fail(sh, "shmbus: peers did not connect");
      close_ends(e);
      return -1;
    }
  }
  return 0;
}

static int send_stamp(const bench_params *p, bench_shared *sh, shmbus_publisher *pub,
                      uint64_t stamp) {
  void *payload;
  int r = shmbus_publisher_loan(pub, p->payload, &payload);
  if (r == 0) {
    bench_touch(payload, p->payload, stamp, p->touch_all);
    r = shmbus_publisher_publish(pub, payload);
  }
  if (r) bench_fail(sh, "shmbus send: %s", shmbus_strerror(r));
  return r;
}

/* Takes the next sample: busy-polls shmbus_subscriber_take, or (blocking)
 * sleeps in shmbus_subscriber_wait(sub, -1) with the default spin time 0
 * until one is queued. 0, or non-zero with sh->why set. */
static int take_next(bench_shared *sh, shmbus_subscriber *sub, int blocking, shmbus_sample *s) {
  int r;
  for (;;) {
    if (blocking && (r = shmbus_subscriber_wait(sub, -1)) != 0) {
      bench_fail(sh, "shmbus wait: %s", shmbus_strerror(r));
      return r;
    }
    if ((r = shmbus_subscriber_take(sub, s)) != SHMBUS_ERR_EMPTY) break;
    if (sh->failed) return -1;
  }
  if (r) bench_fail(sh, "shmbus take: %s", shmbus_strerror(r));
  return r;
}

/* Takes the next sample and checks its stamp. */
static int recv_stamp(bench_shared *sh, shmbus_subscriber *sub, int blocking, uint64_t stamp) {
  shmbus_sample s;
  int r = take_next(sh, sub, blocking, &s);
  if (r) return r;
  uint64_t got = bench_stamp(s.payload);
  shmbus_subscriber_release(sub, &s);
  if (got != stamp) {
    bench_fail(sh, "shmbus: stamp %llu, expected %llu", (unsigned long long)got,
               (unsigned long long)stamp);
    return -1;
  }
  return 0;
}

/* The ping-pong, busy (both sides poll take) or blocking (both sides sleep
 * in shmbus_subscriber_wait); everything else is the same. */
static int latency(const bench_params *p, int role, bench_shared *sh, int blocking) {
  ends e;
  const char *out = role == ROLE_A ? "bench/ping" : "bench/pong";
  const char *in = role == ROLE_A ? "bench/pong" : "bench/ping";
  if (open_ends(p, sh, out, in, LATENCY_DEPTH, &e)) return -1;
  int r = bench_handshake(sh, role);
  uint64_t start = bench_now_ns();
  for (uint64_t i = 0; r == 0; i++) {
    if (role == ROLE_A) {
      uint64_t t0 = bench_now_ns();
      if ((r = send_stamp(p, sh, e.pub, i)) != 0) break;
      if ((r = recv_stamp(sh, e.sub, blocking, i)) != 0) break;
      if (!bench_record(p, sh, i, t0, bench_now_ns(), start)) {
        /* Tell B to stop: a stamp it will echo once more. */
        r = send_stamp(p, sh, e.pub, UINT64_MAX);
        if (r == 0) r = recv_stamp(sh, e.sub, blocking, UINT64_MAX);
        break;
      }
    } else {
      shmbus_sample s;
      if ((r = take_next(sh, e.sub, blocking, &s)) != 0) break;
      uint64_t stamp = bench_stamp(s.payload);
      shmbus_subscriber_release(e.sub, &s);
      r = send_stamp(p, sh, e.pub, stamp);
      if (stamp == UINT64_MAX) break;
    }
  }
  close_ends(&e);
  return r;
}

static int latency_busy(const bench_params *p, int role, bench_shared *sh) {
  return latency(p, role, sh, 0);
}

static int latency_blocking(const bench_params *p, int role, bench_shared *sh) {
  return latency(p, role, sh, 1);
}

int bench_shmbus_pool(const bench_params *p, uint32_t *chunks, size_t *stride) {
  shmbus_node_opts no = SHMBUS_NODE_OPTS_INIT;
  no.domain = p->domain;
  shmbus_service_opts so = service_opts(p->payload, 1, LATENCY_DEPTH);
  shmbus_node *node = NULL;
  shmbus_publisher *pub = NULL;
  shmbus_service_info info;
  int r = shmbus_node_open(&no, &node);
  if (r == 0) r = shmbus_publisher_open(node, "bench/pool", &so, &pub);
  if (r == 0) r = shmbus_service_describe(node, "bench/pool", &info, NULL, 0, NULL, NULL, 0, NULL);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  if (r || info.chunks == 0 || info.chunks > UINT32_MAX) return -1;
  *chunks = (uint32_t)info.chunks;
  /* Alignment 8: the payload follows the 32-byte chunk header; chunks are
   * whole cache lines (src/service.c, shmbus__layout_compute). */
  *stride = (32 + p->payload + 63) / 64 * 64;
  return 0;
}

const bench_transport bench_shmbus = {"shmbus", "busy", 0, NULL, NULL, latency_busy, NULL};
const bench_transport bench_shmbus_blocking = {"shmbus", "blocking",       0,   NULL,
                                               NULL,     latency_blocking, NULL};

/* ---- shmbus-observed: the busy ping-pong while a third party reads it ----
 * The introspection API costs the observed ports nothing on their path
 * (shmbus.h, "introspection"): this row is the busy row while a third
 * process, on no core of its own, describes the ping service every 10 ms
 * (a hundred times as often as `shmbus info --watch`), to be read beside
 * the shmbus row of the same run. A process, not a thread of the parent:
 * the parent forks the peers afterwards. */
#ifndef _WIN32
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { OBSERVE_EVERY_NS = 10 * 1000 * 1000 };

static pid_t observer = -1;
static volatile sig_atomic_t observer_stop;

static void on_stop(int sig) {
  (void)sig;
  observer_stop = 1;
}

static void observe(const bench_params *p) {
  signal(SIGTERM, on_stop);
  shmbus_node_opts no = SHMBUS_NODE_OPTS_INIT;
  no.domain = p->domain;
  shmbus_node *node;
  if (shmbus_node_open(&no, &node)) _exit(1);
  shmbus_port_info ports[4];
  shmbus_connection_info conns[4];
  /* Until the parent stops it (cleanup) or dies; then it closes its node
   * (a killed one would leave its liveness token behind). */
  while (!observer_stop && getppid() != 1) {
    shmbus_service_info info;
    size_t np, nc;
    shmbus_service_describe(node, "bench/ping", &info, ports, 4, &np, conns, 4, &nc);
    struct timespec ts = {0, OBSERVE_EVERY_NS};
    nanosleep(&ts, NULL);
  }
  shmbus_node_close(node);
  _exit(0);
}

static int observed_prepare(const bench_params *p) {
  observer = fork();
  if (observer == 0) observe(p);
  return observer > 0 ? 0 : -1;
}

static void observed_cleanup(const bench_params *p) {
  (void)p;
  if (observer <= 0) return;
  kill(observer, SIGTERM);
  waitpid(observer, NULL, 0);
  observer = -1;
}

const bench_transport bench_shmbus_observed = {
    "shmbus-observed", "busy", 0, NULL, observed_prepare, latency_busy, observed_cleanup};
#else
static const char *observed_unavailable(void) { return "POSIX only (the observer thread)"; }
const bench_transport bench_shmbus_observed = {
    "shmbus-observed", "busy", 0, observed_unavailable, NULL, NULL, NULL};
#endif

/* ---- throughput ---- */

enum { TP_DEPTH = 1024, TP_WINDOW = 512, TP_ACK_EVERY = 64 };

int bench_shmbus_throughput(const bench_params *p, int role, bench_shared *sh) {
  ends e;
  bench_params ack = *p;
  ack.payload = 8;
  /* Data goes A -> B; B acknowledges progress on a second service so that A
   * never overruns the queue: nothing is lost, every sample is taken. */
  if (role == ROLE_A) {
    if (open_ends(p, sh, "bench/tp", NULL, TP_DEPTH, &e)) return -1;
    ends a;
    if (open_ends(&ack, sh, NULL, "bench/tp-ack", 16, &a)) {
      close_ends(&e);
      return -1;
    }
    int r = bench_handshake(sh, role);
    uint64_t acked = 0, n = p->iterations;
    uint64_t start = bench_now_ns(), budget = (uint64_t)(p->budget_s * 1e9);
    uint64_t i = 0;
    for (; r == 0 && i < n; i++) {
      while (i - acked >= TP_WINDOW) {
        shmbus_sample s;
        if (shmbus_subscriber_take_latest(a.sub, &s) == 0) {
          acked = bench_stamp(s.payload);
          shmbus_subscriber_release(a.sub, &s);
        }
      }
      r = send_stamp(p, sh, e.pub, i);
      if ((i & 1023) == 0 && bench_now_ns() - start > budget) {
        i++;
        break;
      }
    }
    if (r == 0) r = send_stamp(p, sh, e.pub, UINT64_MAX); /* end */
    while (r == 0 && acked != i) {
      shmbus_sample s;
      if (shmbus_subscriber_take_latest(a.sub, &s) == 0) {
        acked = bench_stamp(s.payload);
        shmbus_subscriber_release(a.sub, &s);
      }
    }
    uint64_t elapsed = bench_now_ns() - start;
    sh->count = i;
    sh->msgs_per_s = (double)i * 1e9 / (double)elapsed;
    close_ends(&a);
    close_ends(&e);
    return r;
  }
  if (open_ends(p, sh, NULL, "bench/tp", TP_DEPTH, &e)) return -1;
  ends a;
  if (open_ends(&ack, sh, "bench/tp-ack", NULL, 16, &a)) {
    close_ends(&e);
    return -1;
  }
  int r = bench_handshake(sh, role);
  uint64_t expect = 0;
  while (r == 0) {
    shmbus_sample s;
    r = shmbus_subscriber_take(e.sub, &s);
    if (r == SHMBUS_ERR_EMPTY) {
      r = 0;
      continue;
    }
    if (r) break;
    uint64_t stamp = bench_stamp(s.payload);
    shmbus_subscriber_release(e.sub, &s);
    if (stamp == UINT64_MAX) {
      r = send_stamp(&ack, sh, a.pub, expect);
      break;
    }
    if (stamp != expect) {
      bench_fail(sh, "throughput: got %llu, expected %llu", (unsigned long long)stamp,
                 (unsigned long long)expect);
      r = -1;
      break;
    }
    expect++;
    if (expect % TP_ACK_EVERY == 0) r = send_stamp(&ack, sh, a.pub, expect);
  }
  if (r == 0 && shmbus_subscriber_lost(e.sub) != 0) {
    bench_fail(sh, "throughput: %llu lost", (unsigned long long)shmbus_subscriber_lost(e.sub));
    r = -1;
  }
  close_ends(&a);
  close_ends(&e);
  return r;
}

/* ---- fan-out ---- */

enum { FAN_DEPTH = 256, FAN_AHEAD = 64 };

int bench_shmbus_fanout(const bench_params *p, int role, bench_shared *sh) {
  shmbus_node_opts no = SHMBUS_NODE_OPTS_INIT;
  no.domain = p->domain;
  shmbus_service_opts so = service_opts(p->payload, 16, FAN_DEPTH);
  shmbus_node *node = NULL;
  int r = shmbus_node_open(&no, &node);
  if (r) {
    bench_fail(sh, "fanout: %s", shmbus_strerror(r));
    return -1;
  }
  uint64_t total = p->warmup + p->iterations;
  if (role == ROLE_A) {
    shmbus_publisher *pub = NULL;
    r = shmbus_publisher_open(node, "bench/fan", &so, &pub);
    uint64_t deadline = bench_now_ns() + CONNECT_TIMEOUT_NS;
    while (r == 0 && shmbus_publisher_update(pub) < p->subscribers) {
      if (bench_now_ns() > deadline || sh->failed) r = -1;
    }
    if (r == 0) r = bench_handshake(sh, role);
    uint64_t start = bench_now_ns(), budget = (uint64_t)(p->budget_s * 1e9);
    uint64_t i = 0;
    for (; r == 0 && i < total; i++) {
      /* Keep within the subscribers' queues: pacing is not timed. */
      while (i - __atomic_load_n(&sh->progress, __ATOMIC_ACQUIRE) >= FAN_AHEAD) {
      }
      uint64_t t0 = bench_now_ns();
      void *payload;
      r = shmbus_publisher_loan(pub, p->payload, &payload);
      if (r) break;
      bench_touch(payload, p->payload, i, p->touch_all);
      r = shmbus_publisher_publish(pub, payload);
      uint64_t t1 = bench_now_ns();
      if (i >= p->warmup) sh->samples[sh->count++] = t1 - t0;
      if (i >= p->warmup && t1 - start > budget) {
        i++;
        break;
      }
    }
    if (r) bench_fail(sh, "fanout publish: %s", shmbus_strerror(r));
    /* Stop marker. */
    void *payload;
    if (r == 0 && (r = shmbus_publisher_loan(pub, p->payload, &payload)) == 0) {
      bench_touch(payload, p->payload, UINT64_MAX, 0);
      r = shmbus_publisher_publish(pub, payload);
    }
    shmbus_publisher_close(pub);
    shmbus_node_close(node);
    return r;
  }
  shmbus_subscriber *subs[16] = {0};
  uint64_t taken[16] = {0};
  int n = p->subscribers, done = 0;
  for (int k = 0; k < n && r == 0; k++)
    r = shmbus_subscriber_open(node, "bench/fan", &so, &subs[k]);
  uint64_t deadline = bench_now_ns() + CONNECT_TIMEOUT_NS;
  for (int connected = 0; r == 0 && connected < n;) {
    connected = 0;
    for (int k = 0; k < n; k++) connected += shmbus_subscriber_publishers(subs[k]) == 1;
    if (bench_now_ns() > deadline || sh->failed) r = -1;
  }
  if (r == 0) r = bench_handshake(sh, role);
  while (r == 0 && done < n) {
    uint64_t least = UINT64_MAX;
    for (int k = 0; k < n; k++) {
      shmbus_sample s;
      if (taken[k] != UINT64_MAX && shmbus_subscriber_take(subs[k], &s) == 0) {
        uint64_t stamp = bench_stamp(s.payload);
        shmbus_subscriber_release(subs[k], &s);
        if (stamp == UINT64_MAX) {
          taken[k] = UINT64_MAX;
          done++;
        } else {
          taken[k] = stamp + 1;
        }
      }
      if (taken[k] < least) least = taken[k];
    }
    if (least != UINT64_MAX) __atomic_store_n(&sh->progress, least, __ATOMIC_RELEASE);
    if (sh->failed) r = -1;
  }
  for (int k = 0; k < n; k++) {
    if (subs[k] && shmbus_subscriber_lost(subs[k]) != 0) {
      bench_fail(sh, "fanout: subscriber %d lost samples", k);
      r = -1;
    }
    shmbus_subscriber_close(subs[k]);
  }
  shmbus_node_close(node);
  return r;
}

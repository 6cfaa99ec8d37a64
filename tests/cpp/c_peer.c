/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shmbus-cpp-test-c-peer: the C side of the C/C++ exchange tests
 * (tests/cpp/test_multiprocess.cpp, test_hostile.cpp). Plain C on
 * <shmbus.h>, the type of peer_type.h, the domain from SHMBUS_DOMAIN.
 *
 *   c_peer pub COUNT SERVICE   publishes COUNT samples, seq 0..COUNT-1
 *                              (backpressure: none is lost), after a
 *                              subscriber connected; then waits for it to
 *                              leave
 *   c_peer sub COUNT SERVICE   takes COUNT samples and checks that they are
 *                              exactly seq 0..COUNT-1, in order, intact
 *   c_peer short SERVICE       a buggy publisher: one sample of 8 bytes
 *                              (publish_bytes), then a whole one (seq 1)
 *
 * Exit status: 0 pass, 1 fail, 2 bad usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <shmbus.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peer_type.h"

#define NS_PER_S UINT64_C(1000000000)

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms) {
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, NULL);
}

static int fail(const char *what, int r) {
  fprintf(stderr, "c_peer: %s: %s (SHMBUS_ERR_%s)\n", what, shmbus_strerror(r), shmbus_err_name(r));
  return 1;
}

static shmbus_service_opts peer_opts(void) {
  shmbus_service_opts o = SHMBUS_SERVICE_OPTS_INIT;
  o.type.name = CPP_PEER_TYPE_NAME;
  o.type.size = sizeof(cpp_peer_reading);
  o.type.align = _Alignof(cpp_peer_reading);
  o.queue_depth = CPP_PEER_QUEUE_DEPTH;
  o.overflow = SHMBUS_OVERFLOW_BLOCK;
  return o;
}

/* Waits up to `s` seconds until the publisher counts at least `want`
 * subscribers (want > 0) or none any more (want == 0). */
static int await_subscribers(shmbus_publisher *pub, int want, uint64_t s) {
  uint64_t deadline = now_ns() + s * NS_PER_S;
  for (;;) {
    int n = shmbus_publisher_update(pub);
    if (n < 0) return n;
    if (want > 0 ? n >= want : n == 0) return 0;
    if (now_ns() > deadline) return SHMBUS_ERR_TIMEDOUT;
    sleep_ms(1);
  }
}

static int run_pub(shmbus_node *node, const char *service, uint64_t count) {
  shmbus_service_opts o = peer_opts();
  shmbus_publisher *pub = NULL;
  int r = shmbus_publisher_open(node, service, &o, &pub);
  if (r) return fail("publisher_open", r);
  r = shmbus_publisher_set_block_timeout(pub, 20 * (int64_t)NS_PER_S);
  if (r == 0) r = await_subscribers(pub, 1, 10);
  if (r) {
    shmbus_publisher_close(pub);
    return fail("waiting for a subscriber", r);
  }
  for (uint64_t seq = 0; r == 0 && seq < count; seq++) {
    void *payload;
    r = shmbus_publisher_loan(pub, 1, &payload);
    if (r) break;
    cpp_peer_fill(payload, seq);
    r = shmbus_publisher_publish(pub, payload);
    if (r) shmbus_publisher_discard(pub, payload);
  }
  if (r == 0) r = await_subscribers(pub, 0, 30);
  shmbus_publisher_close(pub);
  return r ? fail("publishing", r) : 0;
}

static int run_sub(shmbus_node *node, const char *service, uint64_t count) {
  shmbus_service_opts o = peer_opts();
  shmbus_subscriber *sub = NULL;
  int r = shmbus_subscriber_open(node, service, &o, &sub);
  if (r) return fail("subscriber_open", r);
  uint64_t next = 0, last_progress = now_ns();
  unsigned idle = 0;
  while (r == 0 && next < count) {
    shmbus_sample s;
    r = shmbus_subscriber_take(sub, &s);
    if (r == SHMBUS_ERR_EMPTY) {
      r = 0;
      if (++idle % 4096 == 0 && now_ns() - last_progress > 20 * NS_PER_S) {
        fprintf(stderr, "c_peer: no sample for 20 s after %llu\n", (unsigned long long)next);
        r = SHMBUS_ERR_TIMEDOUT;
      }
      continue;
    }
    if (r) break;
    const cpp_peer_reading *p = s.payload;
    if (s.bytes != sizeof *p || p->seq != next || s.sequence != next || !cpp_peer_valid(p)) {
      fprintf(stderr, "c_peer: sample %llu: bytes %zu, seq %llu, sequence %llu, valid %d\n",
              (unsigned long long)next, s.bytes, (unsigned long long)p->seq,
              (unsigned long long)s.sequence, cpp_peer_valid(p));
      shmbus_subscriber_release(sub, &s);
      shmbus_subscriber_close(sub);
      return 1;
    }
    r = shmbus_subscriber_release(sub, &s);
    next++;
    last_progress = now_ns();
  }
  uint64_t lost = shmbus_subscriber_lost(sub);
  shmbus_subscriber_close(sub);
  if (r) return fail("taking", r);
  if (lost != 0) {
    fprintf(stderr, "c_peer: %llu lost\n", (unsigned long long)lost);
    return 1;
  }
  printf("c_peer: %llu samples, every sequence number in order\n", (unsigned long long)count);
  return 0;
}

static int run_short(shmbus_node *node, const char *service) {
  shmbus_service_opts o = peer_opts();
  shmbus_publisher *pub = NULL;
  int r = shmbus_publisher_open(node, service, &o, &pub);
  if (r) return fail("publisher_open", r);
  r = await_subscribers(pub, 1, 10);
  void *payload = NULL;
  if (r == 0) r = shmbus_publisher_loan(pub, 1, &payload);
  if (r == 0) {
    cpp_peer_fill(payload, 0);
    r = shmbus_publisher_publish_bytes(pub, payload, 8); /* the buggy part */
  }
  if (r == 0) r = shmbus_publisher_loan(pub, 1, &payload);
  if (r == 0) {
    cpp_peer_fill(payload, 1);
    r = shmbus_publisher_publish(pub, payload);
  }
  if (r == 0) r = await_subscribers(pub, 0, 30);
  shmbus_publisher_close(pub);
  return r ? fail("short", r) : 0;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  int is_short = strcmp(mode, "short") == 0;
  if (!(is_short ? argc == 3 : argc == 4 && (!strcmp(mode, "pub") || !strcmp(mode, "sub")))) {
    fprintf(stderr, "usage: c_peer pub|sub COUNT SERVICE | c_peer short SERVICE\n");
    return 2;
  }
  uint64_t count = is_short ? 0 : strtoull(argv[2], NULL, 10);
  const char *service = argv[argc - 1];
  shmbus_node *node = NULL;
  int r = shmbus_node_open(NULL, &node); /* domain: $SHMBUS_DOMAIN */
  if (r) return fail("node_open", r);
  int rc = is_short         ? run_short(node, service)
           : mode[0] == 'p' ? run_pub(node, service, count)
                            : run_sub(node, service, count);
  shmbus_node_close(node);
  return rc;
}

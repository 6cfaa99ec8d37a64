/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Multi-threaded variants of the concurrency tests, for ThreadSanitizer
 * (scripts/test.sh runs this binary in its TSan suite): the same rings and
 * counters as between processes, but in one address space, where TSan can
 * see every access.
 *   - one publisher thread, two subscriber threads, 10^5 samples, every
 *     sequence number and payload checked, gaps equal to the lost count;
 *   - node-level calls (port open/close) from four threads on one node.
 */
#include <pthread.h>
#include <string.h>

#include "support.h"

enum { SAMPLES = 100000, SUBSCRIBERS = 2, OPENERS = 4, OPEN_ROUNDS = 50 };

typedef struct shared {
  shmbus_node *node;
  char service[64];
  int failed; /* an opener's error (atomic) */
} shared;

typedef struct sub_result {
  uint64_t received, lost, gaps;
  int error;
} sub_result;

typedef struct sub_arg {
  shmbus_subscriber *sub;
  sub_result result;
} sub_arg;

static void *subscriber_thread(void *p) {
  sub_arg *a = p;
  uint64_t next = 0;
  for (;;) {
    shmbus_sample s;
    int r = shmbus_subscriber_take(a->sub, &s);
    if (r == SHMBUS_ERR_EMPTY) {
      shmbus_subscriber_publishers(a->sub); /* lets the publisher count us */
      continue;
    }
    if (r != 0) {
      a->result.error = r;
      break;
    }
    const uint64_t *v = s.payload;
    if (s.bytes != 2 * sizeof(uint64_t) || v[0] != s.sequence || v[1] != ~s.sequence ||
        s.sequence < next)
      a->result.error = SHMBUS_ERR_CORRUPT;
    a->result.gaps += s.sequence - next;
    next = s.sequence + 1;
    a->result.received++;
    shmbus_subscriber_release(a->sub, &s);
    if (a->result.error || next == SAMPLES) break;
  }
  a->result.gaps += SAMPLES - next;
  a->result.lost = shmbus_subscriber_lost(a->sub);
  return NULL;
}

static void test_publisher_and_subscriber_threads(void **state) {
  ts_env *env = *state;
  shared sh;
  memset(&sh, 0, sizeof sh);
  sh.node = ts_node(env);
  ts_service_name(sh.service, sizeof sh.service, "threads");
  shmbus_service_opts o = SHMBUS_SERVICE_OPTS_INIT;
  o.type.name = "u64x2";
  o.type.size = 2 * sizeof(uint64_t);
  o.type.align = 8;
  o.queue_depth = 64;
  shmbus_publisher *pub;
  ts_assert_ok(shmbus_publisher_open(sh.node, sh.service, &o, &pub));
  sub_arg args[SUBSCRIBERS];
  pthread_t threads[SUBSCRIBERS];
  for (int i = 0; i < SUBSCRIBERS; i++) {
    memset(&args[i], 0, sizeof args[i]);
    ts_assert_ok(shmbus_subscriber_open(sh.node, sh.service, &o, &args[i].sub));
    assert_int_equal(pthread_create(&threads[i], NULL, subscriber_thread, &args[i]), 0);
  }
  while (shmbus_publisher_update(pub) < SUBSCRIBERS) {
  }
  for (uint64_t i = 0; i < SAMPLES; i++) {
    void *payload;
    ts_assert_ok(shmbus_publisher_loan(pub, 1, &payload));
    uint64_t *v = payload;
    v[0] = i;
    v[1] = ~i;
    ts_assert_ok(shmbus_publisher_publish(pub, payload));
  }
  /* Subscribers stop at the last sequence number: drop-oldest always keeps
   * the newest samples, so every subscriber sees it. */
  for (int i = 0; i < SUBSCRIBERS; i++) {
    assert_int_equal(pthread_join(threads[i], NULL), 0);
    sub_result *r = &args[i].result;
    assert_int_equal(r->error, 0);
    assert_true(r->received > 0);
    /* Every sample is accounted for: received, or lost with a gap. */
    assert_int_equal(r->received + r->gaps, SAMPLES);
    assert_true(r->gaps <= r->lost);
    shmbus_subscriber_close(args[i].sub);
  }
  shmbus_publisher_close(pub);
  shmbus_node_close(sh.node);
}

static void *opener_thread(void *p) {
  shared *sh = p;
  shmbus_service_opts o = ts_opts();
  for (int i = 0; i < OPEN_ROUNDS; i++) {
    shmbus_publisher *pub = NULL;
    shmbus_subscriber *sub = NULL;
    int r = shmbus_subscriber_open(sh->node, sh->service, &o, &sub);
    if (r == 0) r = shmbus_publisher_open(sh->node, sh->service, &o, &pub);
    if (r == 0) r = shmbus_publisher_send_copy(pub, "x", 1);
    if (r != 0 && r != SHMBUS_ERR_PORT_LIMIT) __atomic_store_n(&sh->failed, r, __ATOMIC_RELEASE);
    shmbus_publisher_close(pub);
    shmbus_subscriber_close(sub);
  }
  return NULL;
}

static void test_node_calls_from_threads(void **state) {
  ts_env *env = *state;
  shared sh;
  memset(&sh, 0, sizeof sh);
  sh.node = ts_node(env);
  ts_service_name(sh.service, sizeof sh.service, "openers");
  pthread_t threads[OPENERS];
  for (int i = 0; i < OPENERS; i++)
    assert_int_equal(pthread_create(&threads[i], NULL, opener_thread, &sh), 0);
  for (int i = 0; i < OPENERS; i++) assert_int_equal(pthread_join(threads[i], NULL), 0);
  ts_assert_ok(sh.failed);
  shmbus_node_close(sh.node);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_publisher_and_subscriber_threads, ts_setup_shm,
                                      ts_teardown),
      cmocka_unit_test_setup_teardown(test_node_calls_from_threads, ts_setup_shm, ts_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

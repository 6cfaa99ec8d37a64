/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Publish/subscribe in one process (one node, several ports): payloads and
 * metadata, variable-length samples, latest-value reads, overflow counts,
 * history for late joiners, ports leaving while samples are in flight, and
 * the pool's worst-case sizing. A core subset runs on both backends.
 */
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "support.h"

static shmbus_publisher *open_pub(shmbus_node *node, const char *service,
                                  const shmbus_service_opts *o) {
  shmbus_publisher *pub = NULL;
  ts_assert_ok(shmbus_publisher_open(node, service, o, &pub));
  assert_non_null(pub);
  return pub;
}

static shmbus_subscriber *open_sub(shmbus_node *node, const char *service,
                                   const shmbus_service_opts *o) {
  shmbus_subscriber *sub = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, service, o, &sub));
  assert_non_null(sub);
  return sub;
}

/* Loans, fills with (tag, seq) and publishes; asserts every step. */
static void publish(shmbus_publisher *pub, uint64_t tag, uint64_t seq) {
  void *p = NULL;
  ts_assert_ok(shmbus_publisher_loan(pub, 1, &p));
  ts_sample_fill(p, tag, seq);
  ts_assert_ok(shmbus_publisher_publish(pub, p));
}

/* Takes one sample and checks it is (tag, seq) from `pub`, then releases. */
static void expect_take(shmbus_subscriber *sub, const shmbus_publisher *pub, uint64_t tag,
                        uint64_t seq) {
  shmbus_sample s;
  int r = shmbus_subscriber_take(sub, &s);
  if (r != 0)
    fail_msg("take: %s, expected sequence %llu", shmbus_err_name(r), (unsigned long long)seq);
  assert_int_equal(s.sequence, seq);
  assert_int_equal(s.bytes, sizeof(ts_sample));
  if (pub) assert_int_equal(s.publisher_id, shmbus_publisher_id(pub));
  const ts_sample *p = s.payload;
  assert_true(ts_sample_valid(p));
  assert_int_equal(p->seq, seq);
  assert_int_equal(p->tag, tag);
  ts_assert_ok(shmbus_subscriber_release(sub, &s));
}

static void expect_empty(shmbus_subscriber *sub) {
  shmbus_sample s;
  ts_assert_err(shmbus_subscriber_take(sub, &s), SHMBUS_ERR_EMPTY);
}

/* The handshake of shmbus_publisher_update: the publishers connect the
 * subscribers, the subscribers look (and map them), then each publisher
 * counts every subscriber. */
static void connect_all(shmbus_publisher **pubs, int npubs, shmbus_subscriber **subs, int nsubs) {
  for (int i = 0; i < npubs; i++) assert_true(shmbus_publisher_update(pubs[i]) >= 0);
  for (int k = 0; k < nsubs; k++) assert_int_equal(shmbus_subscriber_publishers(subs[k]), npubs);
  for (int i = 0; i < npubs; i++) assert_int_equal(shmbus_publisher_update(pubs[i]), nsubs);
}

/* Sample timestamps come from a per-publisher clock that extrapolates
 * CLOCK_MONOTONIC (within tens of ns, src/platform.h): compare with slack. */
#define CLOCK_SLACK_NS UINT64_C(1000000)

/* Lets the monotonic clock move on by `ns` (so that timestamps of
 * different publishers are ordered); not a synchronisation. */
static void spin_ns(uint64_t ns) {
  uint64_t end = ts_now_ns() + ns;
  while (ts_now_ns() < end) {
  }
}

/* ---- basics ------------------------------------------------------------------- */

static void test_basic_send_take(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  shmbus_publisher *pub = open_pub(node, "basic", &o);
  shmbus_subscriber *sub = open_sub(node, "basic", &o);
  connect_all(&pub, 1, &sub, 1);

  void *p = NULL;
  ts_assert_ok(shmbus_publisher_loan(pub, 1, &p));
  assert_int_equal((uintptr_t)p % _Alignof(ts_sample), 0);
  ts_sample_fill(p, 42, 0);
  uint64_t before = ts_now_ns();
  ts_assert_ok(shmbus_publisher_publish(pub, p));
  uint64_t after = ts_now_ns();

  shmbus_sample s;
  ts_assert_ok(shmbus_subscriber_take(sub, &s));
  assert_int_equal(s.sequence, 0);
  assert_int_equal(s.bytes, sizeof(ts_sample));
  assert_int_equal(s.publisher_id, shmbus_publisher_id(pub));
  assert_true(s.timestamp_ns + CLOCK_SLACK_NS >= before);
  assert_true(s.timestamp_ns <= after + CLOCK_SLACK_NS);
  assert_true(ts_sample_valid(s.payload));
  assert_int_equal(((const ts_sample *)s.payload)->tag, 42);
  assert_ptr_not_equal(s.payload, p);                   /* the subscriber has its own mapping... */
  assert_memory_equal(s.payload, p, sizeof(ts_sample)); /* ...of the same bytes */
  ts_assert_ok(shmbus_subscriber_release(sub, &s));
  expect_empty(sub);
  assert_int_equal(shmbus_subscriber_lost(sub), 0);

  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_sequence_and_timestamps(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  shmbus_subscriber *sub = open_sub(node, "meta", &o); /* subscriber first */
  shmbus_publisher *pub = open_pub(node, "meta", &o);
  uint64_t start = ts_now_ns(), last_ts = 0;
  for (uint64_t i = 0; i < 500; i++) {
    publish(pub, 1, i);
    if (i % 3 == 2) { /* take in bursts of three */
      for (uint64_t j = i - 2; j <= i; j++) {
        shmbus_sample s;
        ts_assert_ok(shmbus_subscriber_take(sub, &s));
        assert_int_equal(s.sequence, j);
        assert_int_equal(((const ts_sample *)s.payload)->seq, j);
        assert_true(s.timestamp_ns >= last_ts); /* monotonic */
        assert_true(s.timestamp_ns + CLOCK_SLACK_NS >= start);
        assert_true(s.timestamp_ns <= ts_now_ns() + CLOCK_SLACK_NS);
        last_ts = s.timestamp_ns;
        ts_assert_ok(shmbus_subscriber_release(sub, &s));
      }
    }
  }
  expect_take(sub, pub, 1, 498);
  expect_take(sub, pub, 1, 499);
  expect_empty(sub);
  assert_int_equal(shmbus_subscriber_lost(sub), 0);
  shmbus_publisher_close(pub);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_variable_length(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.max_elements = 8;
  shmbus_publisher *pub = open_pub(node, "varlen", &o);
  shmbus_subscriber *sub = open_sub(node, "varlen", &o);
  for (size_t k = 1; k <= 8; k++) {
    ts_sample *p = NULL;
    ts_assert_ok(shmbus_publisher_loan(pub, k, (void **)&p));
    assert_int_equal((uintptr_t)p % _Alignof(ts_sample), 0);
    for (size_t e = 0; e < k; e++) ts_sample_fill(&p[e], k, e);
    ts_assert_ok(shmbus_publisher_publish(pub, p));
    shmbus_sample s;
    ts_assert_ok(shmbus_subscriber_take(sub, &s));
    assert_int_equal(s.bytes, k * sizeof(ts_sample));
    assert_int_equal(s.sequence, k - 1);
    const ts_sample *got = s.payload;
    for (size_t e = 0; e < k; e++) {
      assert_true(ts_sample_valid(&got[e]));
      assert_int_equal(got[e].tag, k);
      assert_int_equal(got[e].seq, e);
    }
    ts_assert_ok(shmbus_subscriber_release(sub, &s));
  }
  /* publish_bytes: shorter than the loan, not a multiple of the element. */
  const size_t lengths[] = {1, 5, sizeof(ts_sample) + 3, 3 * sizeof(ts_sample)};
  for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
    uint8_t *p = NULL;
    ts_assert_ok(shmbus_publisher_loan(pub, 3, (void **)&p));
    for (size_t b = 0; b < lengths[i]; b++) p[b] = (uint8_t)(b * 7 + i);
    ts_assert_ok(shmbus_publisher_publish_bytes(pub, p, lengths[i]));
    shmbus_sample s;
    ts_assert_ok(shmbus_subscriber_take(sub, &s));
    assert_int_equal(s.bytes, lengths[i]);
    assert_memory_equal(s.payload, p, lengths[i]);
    ts_assert_ok(shmbus_subscriber_release(sub, &s));
  }
  expect_empty(sub);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_send_copy(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.max_elements = 4;
  shmbus_publisher *pub = open_pub(node, "copy", &o);
  shmbus_subscriber *sub = open_sub(node, "copy", &o);
  uint8_t buf[4 * sizeof(ts_sample)];
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i ^ 0xa5);
  const size_t lengths[] = {1, 31, 32, 33, 100, sizeof buf};
  for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
    ts_assert_ok(shmbus_publisher_send_copy(pub, buf, lengths[i]));
    shmbus_sample s;
    ts_assert_ok(shmbus_subscriber_take(sub, &s));
    assert_int_equal(s.sequence, i);
    assert_int_equal(s.bytes, lengths[i]);
    assert_memory_equal(s.payload, buf, lengths[i]);
    ts_assert_ok(shmbus_subscriber_release(sub, &s));
  }
  /* send_copy returns its loan: many more than the pool holds. */
  for (int i = 0; i < 1000; i++) ts_assert_ok(shmbus_publisher_send_copy(pub, buf, 8));
  assert_int_equal(shmbus_subscriber_lost(sub), 1000 - 16);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_discard_returns_chunk(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.max_loans = 3;
  shmbus_publisher *pub = open_pub(node, "discard", &o);
  shmbus_subscriber *sub = open_sub(node, "discard", &o);
  /* Far more loans than chunks (8 x 20 + 3): a leak would run dry. */
  for (int i = 0; i < 2000; i++) {
    void *a = NULL, *b = NULL;
    ts_assert_ok(shmbus_publisher_loan(pub, 1, &a));
    ts_assert_ok(shmbus_publisher_loan(pub, 1, &b));
    ts_assert_ok(shmbus_publisher_discard(pub, b));
    ts_assert_ok(shmbus_publisher_discard(pub, a));
  }
  expect_empty(sub);  /* discarded loans are never seen */
  publish(pub, 5, 0); /* and took no sequence number */
  expect_take(sub, pub, 5, 0);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* ---- latest value --------------------------------------------------------------- */

static void test_take_latest(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.max_subscribers = 2;
  o.queue_depth = 8;
  shmbus_publisher *pub = open_pub(node, "latest", &o);
  shmbus_subscriber *sub = open_sub(node, "latest", &o);
  for (uint64_t i = 0; i < 5; i++) publish(pub, 3, i);
  shmbus_sample s;
  ts_assert_ok(shmbus_subscriber_take_latest(sub, &s));
  assert_int_equal(s.sequence, 4);
  assert_true(ts_sample_valid(s.payload));
  assert_int_equal(((const ts_sample *)s.payload)->seq, 4);
  ts_assert_ok(shmbus_subscriber_release(sub, &s));
  expect_empty(sub);
  ts_assert_err(shmbus_subscriber_take_latest(sub, &s), SHMBUS_ERR_EMPTY);
  assert_int_equal(shmbus_subscriber_lost(sub), 0); /* skipped is not lost */

  /* The skipped chunks came back: publish and read the latest far longer
   * than the pool (2 x 12 + 4 chunks) lasts, holding one sample at times. */
  uint64_t seq = 5;
  shmbus_sample held;
  int holding = 0;
  for (int round = 0; round < 2000; round++) {
    int n = 1 + round % 7;
    for (int i = 0; i < n; i++) publish(pub, 3, seq++);
    ts_assert_ok(shmbus_subscriber_take_latest(sub, &s));
    assert_int_equal(s.sequence, seq - 1);
    assert_true(ts_sample_valid(s.payload));
    if (holding) {
      assert_true(ts_sample_valid(held.payload)); /* never reused while held */
      assert_int_equal(((const ts_sample *)held.payload)->seq, held.sequence);
      ts_assert_ok(shmbus_subscriber_release(sub, &held));
    }
    holding = round % 3 == 0;
    if (holding)
      held = s;
    else
      ts_assert_ok(shmbus_subscriber_release(sub, &s));
  }
  if (holding) ts_assert_ok(shmbus_subscriber_release(sub, &held));
  assert_int_equal(shmbus_subscriber_lost(sub), 0);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_take_latest_two_publishers(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  shmbus_publisher *a = open_pub(node, "latest2", &o);
  shmbus_publisher *b = open_pub(node, "latest2", &o);
  shmbus_subscriber *sub = open_sub(node, "latest2", &o);
  publish(a, 1, 0);
  spin_ns(100000);
  publish(b, 2, 0);
  spin_ns(100000);
  publish(a, 1, 1); /* the newest of all, by time */
  shmbus_sample s;
  ts_assert_ok(shmbus_subscriber_take_latest(sub, &s));
  assert_int_equal(s.publisher_id, shmbus_publisher_id(a));
  assert_int_equal(s.sequence, 1);
  ts_assert_ok(shmbus_subscriber_release(sub, &s));
  expect_empty(sub);
  publish(a, 1, 2);
  spin_ns(100000);
  publish(b, 2, 1);
  ts_assert_ok(shmbus_subscriber_take_latest(sub, &s));
  assert_int_equal(s.publisher_id, shmbus_publisher_id(b));
  assert_int_equal(s.sequence, 1);
  ts_assert_ok(shmbus_subscriber_release(sub, &s));
  expect_empty(sub);
  assert_int_equal(shmbus_subscriber_lost(sub), 0);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(b);
  shmbus_publisher_close(a);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* ---- overflow ---------------------------------------------------------------------- */

static void run_overflow(const ts_env *env, int policy) {
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.queue_depth = 4;
  o.overflow = policy;
  shmbus_publisher *pub = open_pub(node, "overflow", &o);
  shmbus_subscriber *sub = open_sub(node, "overflow", &o);
  for (uint64_t i = 0; i < 10; i++) publish(pub, 1, i);
  uint64_t first = policy == SHMBUS_OVERFLOW_DROP_OLDEST ? 6 : 0;
  for (uint64_t i = first; i < first + 4; i++) expect_take(sub, pub, 1, i);
  expect_empty(sub);
  assert_int_equal(shmbus_subscriber_lost(sub), 6);

  /* Drained, the queue takes samples again; counts go on exactly. */
  for (uint64_t i = 10; i < 13; i++) publish(pub, 1, i);
  for (uint64_t i = 10; i < 13; i++) expect_take(sub, pub, 1, i);
  expect_empty(sub);
  assert_int_equal(shmbus_subscriber_lost(sub), 6);

  /* Overflow while holding: with max_held (4) held and the queue full the
   * policy still decides what is delivered. */
  shmbus_sample h[4];
  for (uint64_t i = 13; i < 17; i++) publish(pub, 1, i);
  for (int i = 0; i < 4; i++) ts_assert_ok(shmbus_subscriber_take(sub, &h[i]));
  for (uint64_t i = 17; i < 27; i++) publish(pub, 1, i);
  assert_int_equal(shmbus_subscriber_lost(sub), 12);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(h[i].sequence, 13 + (uint64_t)i);
    assert_true(ts_sample_valid(h[i].payload));
    ts_assert_ok(shmbus_subscriber_release(sub, &h[i]));
  }
  first = policy == SHMBUS_OVERFLOW_DROP_OLDEST ? 23 : 17;
  for (uint64_t i = first; i < first + 4; i++) expect_take(sub, pub, 1, i);
  expect_empty(sub);
  assert_int_equal(shmbus_subscriber_lost(sub), 12);

  /* The count survives the publisher: 2 more lost, then it leaves. */
  for (uint64_t i = 27; i < 33; i++) publish(pub, 1, i);
  shmbus_publisher_close(pub);
  first = policy == SHMBUS_OVERFLOW_DROP_OLDEST ? 29 : 27;
  for (uint64_t i = first; i < first + 4; i++) expect_take(sub, NULL, 1, i);
  expect_empty(sub);
  expect_empty(sub);
  assert_int_equal(shmbus_subscriber_lost(sub), 14);
  assert_int_equal(shmbus_subscriber_publishers(sub), 0);

  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_overflow_drop_oldest(void **state) {
  run_overflow(*state, SHMBUS_OVERFLOW_DROP_OLDEST);
}

static void test_overflow_drop_newest(void **state) {
  run_overflow(*state, SHMBUS_OVERFLOW_DROP_NEWEST);
}

static void test_overflow_default_is_drop_oldest(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.queue_depth = 2;
  shmbus_publisher *pub = open_pub(node, "default-policy", &o);
  shmbus_subscriber *sub = open_sub(node, "default-policy", &o);
  for (uint64_t i = 0; i < 5; i++) publish(pub, 1, i);
  expect_take(sub, pub, 1, 3);
  expect_take(sub, pub, 1, 4);
  assert_int_equal(shmbus_subscriber_lost(sub), 3);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* Per-subscriber overflow: a slow subscriber loses, a fast one does not. */
static void test_overflow_per_subscriber(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.queue_depth = 4;
  shmbus_publisher *pub = open_pub(node, "per-sub", &o);
  shmbus_subscriber *fast = open_sub(node, "per-sub", &o);
  shmbus_subscriber *slow = open_sub(node, "per-sub", &o);
  for (uint64_t i = 0; i < 100; i++) {
    publish(pub, 1, i);
    expect_take(fast, pub, 1, i);
  }
  assert_int_equal(shmbus_subscriber_lost(fast), 0);
  for (uint64_t i = 96; i < 100; i++) expect_take(slow, pub, 1, i);
  expect_empty(slow);
  assert_int_equal(shmbus_subscriber_lost(slow), 96);
  assert_int_equal(shmbus_subscriber_lost(fast), 0);
  shmbus_subscriber_close(slow);
  shmbus_subscriber_close(fast);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* shmbus_subscriber_lost: "Samples lost to overflow (queue full) since the
 * subscriber opened". A subscriber connected by the publisher has lost
 * samples whether or not it has called take since. */
static void test_lost_before_first_take(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.queue_depth = 4;
  shmbus_publisher *pub = open_pub(node, "lost-early", &o);
  shmbus_subscriber *sub = open_sub(node, "lost-early", &o);
  for (uint64_t i = 0; i < 10; i++) publish(pub, 1, i);
  uint64_t before_take = shmbus_subscriber_lost(sub);
  expect_take(sub, pub, 1, 6);
  uint64_t after_take = shmbus_subscriber_lost(sub);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
  assert_int_equal(after_take, 6);
  assert_int_equal(before_take, 6);
}

/* ---- history ------------------------------------------------------------------------ */

static void test_history_late_joiner(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.history = 3;
  shmbus_publisher *pub = open_pub(node, "history", &o);
  for (uint64_t i = 0; i < 5; i++) publish(pub, 1, i);
  shmbus_subscriber *sub = open_sub(node, "history", &o);
  assert_true(shmbus_publisher_update(pub) >= 0); /* connects it, serves the history */
  for (uint64_t i = 2; i < 5; i++) expect_take(sub, pub, 1, i);
  expect_empty(sub);
  assert_int_equal(shmbus_subscriber_lost(sub), 0);
  assert_int_equal(shmbus_publisher_update(pub), 1); /* it has seen us now */

  /* Without an update, the next publish connects the late joiner: history
   * first, then the new sample. */
  shmbus_subscriber *late = open_sub(node, "history", &o);
  publish(pub, 1, 5);
  for (uint64_t i = 2; i < 6; i++) expect_take(late, pub, 1, i);
  expect_empty(late);
  expect_take(sub, pub, 1, 5);

  /* History keeps its samples while subscribers come and go. */
  shmbus_subscriber_close(late);
  late = open_sub(node, "history", &o);
  assert_true(shmbus_publisher_update(pub) >= 1);
  for (uint64_t i = 3; i < 6; i++) expect_take(late, pub, 1, i);
  expect_empty(late);
  assert_int_equal(shmbus_publisher_update(pub), 2);

  shmbus_subscriber_close(late);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_history_larger_than_queue(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.history = 8;
  o.queue_depth = 4;
  shmbus_publisher *pub = open_pub(node, "history-big", &o);
  for (uint64_t i = 0; i < 10; i++) publish(pub, 1, i);
  shmbus_subscriber *sub = open_sub(node, "history-big", &o);
  assert_true(shmbus_publisher_update(pub) >= 0);
  /* The newest that fit the queue, none counted lost. */
  for (uint64_t i = 6; i < 10; i++) expect_take(sub, pub, 1, i);
  expect_empty(sub);
  assert_int_equal(shmbus_subscriber_lost(sub), 0);
  /* The history's chunks are all held and reused correctly over time. */
  for (uint64_t i = 10; i < 400; i++) {
    publish(pub, 1, i);
    expect_take(sub, pub, 1, i);
  }
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_history_fewer_than_capacity(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.history = 5;
  shmbus_publisher *pub = open_pub(node, "history-few", &o);
  shmbus_subscriber *empty = open_sub(node, "history-few", &o);
  assert_true(shmbus_publisher_update(pub) >= 0);
  expect_empty(empty); /* nothing published: no history */
  assert_int_equal(shmbus_publisher_update(pub), 1);
  publish(pub, 1, 0);
  publish(pub, 1, 1);
  shmbus_subscriber *sub = open_sub(node, "history-few", &o);
  assert_true(shmbus_publisher_update(pub) >= 1);
  expect_take(sub, pub, 1, 0);
  expect_take(sub, pub, 1, 1);
  expect_empty(sub);
  assert_int_equal(shmbus_publisher_update(pub), 2);
  shmbus_subscriber_close(sub);
  shmbus_subscriber_close(empty);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* ---- several ports ------------------------------------------------------------------- */

static void test_many_publishers_and_subscribers(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.queue_depth = 64;
  enum { PUBS = 3, SUBS = 4, N = 50 };
  shmbus_publisher *pubs[PUBS];
  shmbus_subscriber *subs[SUBS];
  subs[0] = open_sub(node, "many", &o);
  for (int i = 0; i < PUBS; i++) pubs[i] = open_pub(node, "many", &o);
  for (int i = 1; i < SUBS; i++) subs[i] = open_sub(node, "many", &o);
  connect_all(pubs, PUBS, subs, SUBS);

  for (uint64_t seq = 0; seq < N; seq++)
    for (int i = 0; i < PUBS; i++) publish(pubs[i], (uint64_t)i, seq);

  for (int k = 0; k < SUBS; k++) {
    uint64_t next[PUBS] = {0};
    int got = 0;
    shmbus_sample s;
    while (shmbus_subscriber_take(subs[k], &s) == 0) {
      const ts_sample *p = s.payload;
      assert_true(ts_sample_valid(p));
      assert_true(p->tag < PUBS);
      assert_int_equal(s.publisher_id, shmbus_publisher_id(pubs[p->tag]));
      assert_int_equal(s.sequence, next[p->tag]); /* per publisher, in order */
      next[p->tag]++;
      got++;
      ts_assert_ok(shmbus_subscriber_release(subs[k], &s));
    }
    assert_int_equal(got, PUBS * N);
    assert_int_equal(shmbus_subscriber_lost(subs[k]), 0);
  }
  for (int i = 0; i < SUBS; i++) shmbus_subscriber_close(subs[i]);
  for (int i = 0; i < PUBS; i++) shmbus_publisher_close(pubs[i]);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_round_robin(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  shmbus_publisher *a = open_pub(node, "rr", &o);
  shmbus_publisher *b = open_pub(node, "rr", &o);
  shmbus_subscriber *sub = open_sub(node, "rr", &o);
  for (uint64_t i = 0; i < 6; i++) publish(a, 0, i);
  for (uint64_t i = 0; i < 6; i++) publish(b, 1, i);
  /* Both are served while both have samples: no publisher starves. */
  int from_a = 0, from_b = 0;
  for (int i = 0; i < 6; i++) {
    shmbus_sample s;
    ts_assert_ok(shmbus_subscriber_take(sub, &s));
    if (s.publisher_id == shmbus_publisher_id(a))
      from_a++;
    else
      from_b++;
    ts_assert_ok(shmbus_subscriber_release(sub, &s));
  }
  assert_int_equal(from_a, 3);
  assert_int_equal(from_b, 3);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(b);
  shmbus_publisher_close(a);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* ---- ports leaving ---------------------------------------------------------------------- */

static void test_subscriber_closes_while_holding(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.max_subscribers = 2;
  o.queue_depth = 4;
  o.max_held = 2;
  o.max_loans = 2;
  o.history = 1;
  /* Pool: 2 x (4 + 2) + 1 + 2 = 15 chunks. */
  shmbus_publisher *pub = open_pub(node, "leaver", &o);
  shmbus_subscriber *steady = open_sub(node, "leaver", &o);
  uint64_t seq = 0;
  for (int round = 0; round < 150; round++) {
    shmbus_subscriber *leaver = open_sub(node, "leaver", &o);
    for (int i = 0; i < 7; i++) {
      publish(pub, 1, seq);
      expect_take(steady, pub, 1, seq);
      seq++;
    }
    shmbus_sample h[2];
    ts_assert_ok(shmbus_subscriber_take(leaver, &h[0]));
    ts_assert_ok(shmbus_subscriber_take(leaver, &h[1]));
    assert_true(ts_sample_valid(h[0].payload));
    /* Closes holding 2 with a full queue of 4. */
    shmbus_subscriber_close(leaver);
  }
  /* The publisher still has every chunk: all loans work, nothing broke. */
  void *a = NULL, *b = NULL;
  ts_assert_ok(shmbus_publisher_loan(pub, 1, &a));
  ts_assert_ok(shmbus_publisher_loan(pub, 1, &b));
  ts_assert_ok(shmbus_publisher_discard(pub, a));
  ts_assert_ok(shmbus_publisher_discard(pub, b));
  assert_int_equal(shmbus_publisher_update(pub), 1);
  assert_int_equal(shmbus_subscriber_lost(steady), 0);
  shmbus_subscriber_close(steady);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_publisher_closes_while_held(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  shmbus_publisher *pub = open_pub(node, "pubgone", &o);
  shmbus_subscriber *sub = open_sub(node, "pubgone", &o);
  uint64_t id = shmbus_publisher_id(pub);
  for (uint64_t i = 0; i < 4; i++) publish(pub, 1, i);
  shmbus_sample held;
  ts_assert_ok(shmbus_subscriber_take(sub, &held));
  assert_int_equal(shmbus_subscriber_publishers(sub), 1);
  void *loan = NULL;
  ts_assert_ok(shmbus_publisher_loan(pub, 1, &loan)); /* discarded by close */
  shmbus_publisher_close(pub);

  assert_int_equal(shmbus_subscriber_publishers(sub), 0);
  /* The held sample stays readable, the queued ones are still taken. */
  assert_true(ts_sample_valid(held.payload));
  assert_int_equal(((const ts_sample *)held.payload)->seq, 0);
  for (uint64_t i = 1; i < 4; i++) {
    shmbus_sample s;
    ts_assert_ok(shmbus_subscriber_take(sub, &s));
    assert_int_equal(s.sequence, i);
    assert_int_equal(s.publisher_id, id);
    assert_true(ts_sample_valid(s.payload));
    ts_assert_ok(shmbus_subscriber_release(sub, &s));
  }
  expect_empty(sub);
  assert_true(ts_sample_valid(held.payload));
  ts_assert_ok(shmbus_subscriber_release(sub, &held));
  expect_empty(sub);
  assert_int_equal(shmbus_subscriber_publishers(sub), 0);
  assert_int_equal(shmbus_subscriber_lost(sub), 0);
  /* Only the service is left, owned by the subscriber. */
  ts_assert_objects(env, 1);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static uint64_t take_all_in_order(shmbus_subscriber *sub, uint64_t *first_bad) {
  uint64_t taken = 0;
  shmbus_sample s;
  *first_bad = UINT64_MAX;
  while (shmbus_subscriber_take(sub, &s) == 0) {
    if (*first_bad == UINT64_MAX && (s.sequence != taken || !ts_sample_valid(s.payload)))
      *first_bad = taken;
    taken++;
    ts_assert_ok(shmbus_subscriber_release(sub, &s));
  }
  return taken;
}

/* The subscriber opens after the publisher, so it maps the publisher at
 * once; the publisher connects it, publishes and closes before the
 * subscriber's first take. The header (shmbus_publisher_close):
 * "Subscribers that had mapped it ... keep the samples they hold and still
 * take what is queued". The samples must be taken, or at least counted
 * lost; they must not vanish. */
static void test_publisher_closes_before_first_take(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  shmbus_publisher *pub = open_pub(node, "quick-pub", &o);
  shmbus_subscriber *sub = open_sub(node, "quick-pub", &o);
  for (uint64_t i = 0; i < 3; i++) publish(pub, 1, i); /* connects sub, then sends */
  shmbus_publisher_close(pub);
  uint64_t bad, taken = take_all_in_order(sub, &bad);
  uint64_t lost = shmbus_subscriber_lost(sub);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
  assert_int_equal(bad, UINT64_MAX);
  assert_int_equal(taken + lost, 3);
  assert_int_equal(taken, 3);
}

/* The documented way to hand over samples before closing: the publisher
 * waits until shmbus_publisher_update counts the subscriber (which has
 * looked and mapped it); then what it queued survives its close. Both
 * start orders. */
static void run_wait_for_mapping(const ts_env *env, int sub_first) {
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  shmbus_subscriber *sub = sub_first ? open_sub(node, "handover", &o) : NULL;
  shmbus_publisher *pub = open_pub(node, "handover", &o);
  if (!sub_first) sub = open_sub(node, "handover", &o);
  int rounds = 0;
  while (shmbus_publisher_update(pub) < 1) {
    assert_true(shmbus_subscriber_publishers(sub) >= 0); /* the subscriber looks */
    assert_true(++rounds < 10);
  }
  for (uint64_t i = 0; i < 3; i++) publish(pub, 1, i);
  shmbus_publisher_close(pub);
  uint64_t bad, taken = take_all_in_order(sub, &bad);
  assert_int_equal(bad, UINT64_MAX);
  assert_int_equal(taken, 3);
  assert_int_equal(shmbus_subscriber_lost(sub), 0);
  assert_int_equal(shmbus_subscriber_publishers(sub), 0);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_publisher_waits_for_mapping(void **state) {
  run_wait_for_mapping(*state, 1);
  run_wait_for_mapping(*state, 0);
}

static void test_new_publisher_same_name(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  shmbus_subscriber *sub = open_sub(node, "restart", &o);
  shmbus_publisher *old = open_pub(node, "restart", &o);
  uint64_t old_id = shmbus_publisher_id(old);
  assert_int_equal(shmbus_subscriber_publishers(sub), 1);
  publish(old, 1, 0);
  publish(old, 1, 1);
  shmbus_publisher_close(old);

  shmbus_publisher *pub = open_pub(node, "restart", &o);
  assert_int_not_equal(shmbus_publisher_id(pub), old_id);
  connect_all(&pub, 1, &sub, 1);
  publish(pub, 2, 0);
  /* The old one's queue first or not: both arrive, each in order. */
  uint64_t next_old = 0, next_new = 0;
  shmbus_sample s;
  while (shmbus_subscriber_take(sub, &s) == 0) {
    const ts_sample *p = s.payload;
    assert_true(ts_sample_valid(p));
    if (s.publisher_id == old_id) {
      assert_int_equal(p->tag, 1);
      assert_int_equal(s.sequence, next_old++);
    } else {
      assert_int_equal(s.publisher_id, shmbus_publisher_id(pub));
      assert_int_equal(p->tag, 2);
      assert_int_equal(s.sequence, next_new++); /* a new publisher counts from 0 */
    }
    ts_assert_ok(shmbus_subscriber_release(sub, &s));
  }
  assert_int_equal(next_old, 2);
  assert_int_equal(next_new, 1);
  assert_int_equal(shmbus_subscriber_publishers(sub), 1);
  for (uint64_t i = 1; i < 50; i++) {
    publish(pub, 2, i);
    expect_take(sub, pub, 2, i);
  }

  /* With nobody left the service goes; a new one under the name works. */
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  ts_assert_objects(env, 0);
  o.queue_depth = 3; /* even with other limits: it is a new service */
  pub = open_pub(node, "restart", &o);
  sub = open_sub(node, "restart", &o);
  publish(pub, 3, 0);
  expect_take(sub, pub, 3, 0);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* Publishers come and go (one at a time, max_publishers 1) while the
 * subscriber holds a sample of each departed one: their segments stay
 * mapped until released, and every new publisher is still served. */
static void test_publisher_churn_while_holding(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.max_publishers = 1;
  shmbus_subscriber *sub = open_sub(node, "pub-churn", &o);
  shmbus_sample held[8];
  int nheld = 0;
  for (uint64_t round = 0; round < 8; round++) {
    shmbus_publisher *pub = open_pub(node, "pub-churn", &o);
    publish(pub, round, 0);
    publish(pub, round, 1);
    /* Room for this round's two takes within max_held. */
    while (nheld > 2) { /* max_held is the default, 4 */
      ts_assert_ok(shmbus_subscriber_release(sub, &held[0]));
      memmove(held, held + 1, (size_t)(nheld - 1) * sizeof held[0]);
      nheld--;
    }
    /* The subscriber may need to let go of old samples first: release the
     * oldest held one whenever a take finds nothing or holds too much. */
    shmbus_sample s;
    int tries = 0, e;
    while (
        ((e = shmbus_subscriber_take(sub, &s)) == SHMBUS_ERR_EMPTY || e == SHMBUS_ERR_HOLD_LIMIT) &&
        nheld > 0 && tries < 16) {
      ts_assert_ok(shmbus_subscriber_release(sub, &held[0]));
      memmove(held, held + 1, (size_t)(nheld - 1) * sizeof held[0]);
      nheld--;
      tries++;
    }
    ts_assert_ok(e);
    assert_int_equal(s.publisher_id, shmbus_publisher_id(pub));
    assert_int_equal(s.sequence, 0);
    held[nheld++] = s; /* keep sample 0 of this publisher */
    expect_take(sub, pub, round, 1);
    assert_int_equal(shmbus_publisher_update(pub), 1); /* it has seen us */
    shmbus_publisher_close(pub);
    for (int i = 0; i < nheld; i++) {
      const ts_sample *p = held[i].payload;
      assert_true(ts_sample_valid(p)); /* still mapped, intact */
      assert_int_equal(p->seq, 0);
    }
  }
  for (int i = 0; i < nheld; i++) ts_assert_ok(shmbus_subscriber_release(sub, &held[i]));
  expect_empty(sub);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* A subscriber keeps a source per publisher it holds samples of
 * (max_publishers + max_held). Holding one sample of each of two departed publishers
 * (max_publishers 1) used to keep it from connecting a third; once it releases one of
 * them, the third's queued samples must be taken: EMPTY means "nothing
 * queued". */
static void test_take_after_releasing_departed_publisher(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.max_publishers = 1;
  shmbus_subscriber *sub = open_sub(node, "departed", &o);
  shmbus_sample held[2];
  for (int k = 0; k < 2; k++) {
    shmbus_publisher *pub = open_pub(node, "departed", &o);
    assert_int_equal(shmbus_subscriber_publishers(sub), 1);
    publish(pub, (uint64_t)k, 0);
    ts_assert_ok(shmbus_subscriber_take(sub, &held[k]));
    shmbus_publisher_close(pub);
  }
  shmbus_publisher *third = open_pub(node, "departed", &o);
  publish(third, 2, 0); /* connects the subscriber and queues for it */
  ts_assert_ok(shmbus_subscriber_release(sub, &held[0]));
  shmbus_sample s;
  int first = shmbus_subscriber_take(sub, &s);
  if (first == 0) ts_assert_ok(shmbus_subscriber_release(sub, &s));
  ts_assert_ok(shmbus_subscriber_release(sub, &held[1]));
  shmbus_publisher_close(third);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
  ts_assert_ok(first);
}

/* ---- threads -------------------------------------------------------------------- */

/* Two publisher and two subscriber threads share one node and one service
 * ("different ports may be used concurrently from different threads; node
 * functions are thread-safe"). */
enum { THREAD_SAMPLES = 20000 };

typedef struct thread_arg {
  shmbus_node *node;
  pthread_barrier_t *barrier;
  int index;
  int failed;
  uint64_t received, lost;
} thread_arg;

static shmbus_service_opts thread_opts(void) {
  shmbus_service_opts o = ts_opts();
  o.queue_depth = 4096;
  o.overflow = SHMBUS_OVERFLOW_DROP_NEWEST;
  return o;
}

static void *publisher_thread(void *p) {
  thread_arg *a = p;
  shmbus_service_opts o = thread_opts();
  shmbus_publisher *pub = NULL;
  a->failed = 1;
  if (shmbus_publisher_open(a->node, "threads", &o, &pub) != 0) return NULL;
  pthread_barrier_wait(a->barrier); /* every port is open */
  unsigned round = 0;
  while (shmbus_publisher_update(pub) < 2) ts_backoff(&round);
  pthread_barrier_wait(a->barrier); /* everybody is connected */
  for (uint64_t seq = 0; seq < THREAD_SAMPLES; seq++) {
    void *x = NULL;
    if (shmbus_publisher_loan(pub, 1, &x) != 0) return NULL;
    ts_sample_fill(x, (uint64_t)a->index, seq);
    if (shmbus_publisher_publish(pub, x) != 0) return NULL;
    if (seq % 64 == 0) sched_yield();
  }
  shmbus_publisher_close(pub);
  a->failed = 0;
  return NULL;
}

static void *subscriber_thread(void *p) {
  thread_arg *a = p;
  shmbus_service_opts o = thread_opts();
  shmbus_subscriber *sub = NULL;
  a->failed = 1;
  if (shmbus_subscriber_open(a->node, "threads", &o, &sub) != 0) return NULL;
  pthread_barrier_wait(a->barrier);
  unsigned round = 0;
  while (shmbus_subscriber_publishers(sub) < 2) ts_backoff(&round);
  pthread_barrier_wait(a->barrier);
  uint64_t next[2] = {0, 0}, gaps = 0;
  int gone = 0;
  for (;;) {
    shmbus_sample s;
    int r = shmbus_subscriber_take(sub, &s);
    if (r == 0) {
      const ts_sample *x = s.payload;
      if (!ts_sample_valid(x) || x->tag > 1 || s.sequence < next[x->tag]) return NULL;
      gaps += s.sequence - next[x->tag];
      next[x->tag] = s.sequence + 1;
      a->received++;
      if (shmbus_subscriber_release(sub, &s) != 0) return NULL;
      continue;
    }
    if (r != SHMBUS_ERR_EMPTY) return NULL;
    if (a->received + shmbus_subscriber_lost(sub) >= 2 * THREAD_SAMPLES || gone) break;
    if (shmbus_subscriber_publishers(sub) == 0) gone = 1;
    ts_backoff(&round);
  }
  a->lost = shmbus_subscriber_lost(sub);
  gaps += (THREAD_SAMPLES - next[0]) + (THREAD_SAMPLES - next[1]);
  shmbus_subscriber_close(sub);
  if (gaps != a->lost) return NULL;
  a->failed = 0;
  return NULL;
}

static void test_threads_share_a_node(void **state) {
  ts_env *env = *state;
  TS_SKIP_WITHOUT_THREADS();
  ts_alarm(60); /* a thread that fails early leaves the others at a barrier */
  shmbus_node *node = ts_node(env);
  pthread_barrier_t barrier;
  assert_int_equal(pthread_barrier_init(&barrier, NULL, 4), 0);
  pthread_t t[4];
  thread_arg args[4];
  memset(args, 0, sizeof args);
  for (int i = 0; i < 4; i++) {
    args[i].node = node;
    args[i].barrier = &barrier;
    args[i].index = i % 2;
    assert_int_equal(
        pthread_create(&t[i], NULL, i < 2 ? publisher_thread : subscriber_thread, &args[i]), 0);
  }
  for (int i = 0; i < 4; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
  pthread_barrier_destroy(&barrier);
  shmbus_node_close(node);
  for (int i = 0; i < 4; i++) assert_int_equal(args[i].failed, 0);
  for (int i = 2; i < 4; i++) assert_int_equal(args[i].received + args[i].lost, 2 * THREAD_SAMPLES);
  ts_assert_env_clean(env);
  ts_alarm(0);
}

/* Ports opened and closed from several threads on one node, the node
 * closed by the main thread while they run. */
static void *open_close_thread(void *p) {
  thread_arg *a = p;
  shmbus_service_opts o = ts_opts();
  o.max_publishers = 8;
  o.max_subscribers = 8;
  a->failed = 1;
  pthread_barrier_wait(a->barrier);
  shmbus_publisher *keep = NULL; /* holds a node reference all along */
  if (shmbus_publisher_open(a->node, "thread-churn", &o, &keep) != 0) return NULL;
  pthread_barrier_wait(a->barrier); /* the main thread closes its reference now */
  for (int r = 0; r < 200; r++) {
    shmbus_publisher *pub = NULL;
    shmbus_subscriber *sub = NULL;
    if (shmbus_publisher_open(a->node, "thread-churn", &o, &pub) != 0) return NULL;
    if (shmbus_subscriber_open(a->node, "thread-churn", &o, &sub) != 0) return NULL;
    if (shmbus_publisher_send_copy(pub, "x", 1) != 0) return NULL;
    shmbus_sample s;
    while (shmbus_subscriber_take(sub, &s) == 0)
      if (shmbus_subscriber_release(sub, &s) != 0) return NULL;
    shmbus_subscriber_close(sub);
    shmbus_publisher_close(pub);
  }
  shmbus_publisher_close(keep);
  a->failed = 0;
  return NULL;
}

static void test_threads_open_and_close_ports(void **state) {
  ts_env *env = *state;
  TS_SKIP_WITHOUT_THREADS();
  ts_alarm(60);
  shmbus_node *node = ts_node(env);
  pthread_barrier_t barrier;
  assert_int_equal(pthread_barrier_init(&barrier, NULL, 4), 0);
  pthread_t t[3];
  thread_arg args[3];
  memset(args, 0, sizeof args);
  for (int i = 0; i < 3; i++) {
    args[i].node = node;
    args[i].barrier = &barrier;
    assert_int_equal(pthread_create(&t[i], NULL, open_close_thread, &args[i]), 0);
  }
  pthread_barrier_wait(&barrier);
  pthread_barrier_wait(&barrier);
  shmbus_node_close(node); /* the ports keep the node alive */
  for (int i = 0; i < 3; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
  pthread_barrier_destroy(&barrier);
  for (int i = 0; i < 3; i++) assert_int_equal(args[i].failed, 0);
  ts_assert_env_clean(env);
  ts_alarm(0);
}

/* ---- the pool never runs dry ------------------------------------------------------------ */

/* Takes n samples and keeps them in h[]. */
static void take_hold(shmbus_subscriber *sub, shmbus_sample *h, int n, uint64_t first) {
  for (int i = 0; i < n; i++) {
    ts_assert_ok(shmbus_subscriber_take(sub, &h[i]));
    assert_int_equal(h[i].sequence, first + (uint64_t)i);
  }
}

static void drain(shmbus_subscriber *sub, uint64_t first, uint64_t count) {
  for (uint64_t i = first; i < first + count; i++) expect_take(sub, NULL, 1, i);
  expect_empty(sub);
}

/* Every subscriber holds max_held samples and has a full queue, all of
 * different chunks, the history is full of others and every loan is out:
 * exactly the pool's worst case, 3 x (2 + 2) + 2 + 2 = 16 chunks. */
static void test_pool_worst_case(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.max_subscribers = 3;
  o.queue_depth = 2;
  o.max_held = 2;
  o.history = 2;
  o.max_loans = 2;
  o.overflow = SHMBUS_OVERFLOW_DROP_NEWEST;
  shmbus_publisher *pub = open_pub(node, "worst", &o);
  shmbus_subscriber *a = open_sub(node, "worst", &o);
  shmbus_subscriber *b = open_sub(node, "worst", &o);
  shmbus_subscriber *c = open_sub(node, "worst", &o);
  shmbus_sample ha[2], hb[2], hc[2];

  publish(pub, 1, 0);
  publish(pub, 1, 1);
  take_hold(a, ha, 2, 0);
  drain(b, 0, 2);
  drain(c, 0, 2);
  publish(pub, 1, 2);
  publish(pub, 1, 3); /* a: holds 0 1, queue 2 3 */
  drain(b, 2, 2);
  drain(c, 2, 2);
  publish(pub, 1, 4);
  publish(pub, 1, 5);
  take_hold(b, hb, 2, 4);
  drain(c, 4, 2);
  publish(pub, 1, 6);
  publish(pub, 1, 7); /* b: holds 4 5, queue 6 7 */
  drain(c, 6, 2);
  publish(pub, 1, 8);
  publish(pub, 1, 9);
  take_hold(c, hc, 2, 8);
  publish(pub, 1, 10);
  publish(pub, 1, 11); /* c: holds 8 9, queue 10 11 */
  publish(pub, 1, 12);
  publish(pub, 1, 13); /* history: 12 13 */

  void *l1 = NULL, *l2 = NULL, *l3 = (void *)&l1;
  ts_assert_ok(shmbus_publisher_loan(pub, 1, &l1));
  ts_assert_ok(shmbus_publisher_loan(pub, 1, &l2));
  ts_assert_err(shmbus_publisher_loan(pub, 1, &l3), SHMBUS_ERR_LOAN_LIMIT);
  assert_null(l3);
  ts_sample_fill(l1, 1, 14);
  ts_sample_fill(l2, 1, 15);
  ts_assert_ok(shmbus_publisher_publish(pub, l1)); /* dropped for all, into history */
  ts_assert_ok(shmbus_publisher_publish(pub, l2));
  for (uint64_t seq = 16; seq < 200; seq++) publish(pub, 1, seq);

  /* Nothing held or queued was overwritten all along. */
  shmbus_sample *held[3] = {ha, hb, hc};
  shmbus_subscriber *subs[3] = {a, b, c};
  for (int k = 0; k < 3; k++) {
    for (int i = 0; i < 2; i++) {
      assert_true(ts_sample_valid(held[k][i].payload));
      assert_int_equal(((const ts_sample *)held[k][i].payload)->seq, held[k][i].sequence);
      ts_assert_ok(shmbus_subscriber_release(subs[k], &held[k][i]));
    }
    drain(subs[k], 2 + 4 * (uint64_t)k, 2);
  }
  shmbus_subscriber_close(a);
  shmbus_subscriber *late = open_sub(node, "worst", &o);
  assert_true(shmbus_publisher_update(pub) >= 2); /* serves late the history */
  drain(late, 198, 2);
  assert_int_equal(shmbus_publisher_update(pub), 3);
  shmbus_subscriber_close(late);
  shmbus_subscriber_close(c);
  shmbus_subscriber_close(b);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* A deterministic random walk over publish, loan, discard, take, take
 * latest, release and reopen with small limits: loans fail only with
 * LOAN_LIMIT when max_loans are out, and no held sample is ever
 * overwritten. */
typedef struct walk_sub {
  shmbus_subscriber *sub;
  shmbus_sample held[3];
  int nheld;
  uint64_t last_seq;
} walk_sub;

static uint64_t lcg(uint64_t *x) {
  *x = *x * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
  return *x >> 33;
}

static void run_walk(const ts_env *env, int policy, uint64_t seed) {
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.max_subscribers = 3;
  o.queue_depth = 3;
  o.max_held = 3;
  o.history = 2;
  o.max_loans = 3;
  o.overflow = policy;
  shmbus_publisher *pub = open_pub(node, "walk", &o);
  walk_sub subs[3];
  for (int k = 0; k < 3; k++) {
    subs[k].sub = open_sub(node, "walk", &o);
    subs[k].nheld = 0;
    subs[k].last_seq = UINT64_MAX;
  }
  void *loans[3];
  int nloans = 0;
  uint64_t seq = 0, x = seed;
  for (int step = 0; step < 20000; step++) {
    uint64_t r = lcg(&x) % 100;
    walk_sub *w = &subs[lcg(&x) % 3];
    if (r < 35) { /* loan (and maybe keep it) */
      void *p = NULL;
      int e = shmbus_publisher_loan(pub, 1, &p);
      if (nloans == 3) {
        ts_assert_err(e, SHMBUS_ERR_LOAN_LIMIT);
      } else {
        ts_assert_ok(e);
        loans[nloans++] = p;
      }
    } else if (r < 60 && nloans > 0) { /* publish or discard the oldest loan */
      void *p = loans[0];
      memmove(loans, loans + 1, (size_t)(nloans - 1) * sizeof loans[0]);
      nloans--;
      if (r < 55) {
        ts_sample_fill(p, 1, seq++);
        ts_assert_ok(shmbus_publisher_publish(pub, p));
      } else {
        ts_assert_ok(shmbus_publisher_discard(pub, p));
      }
    } else if (r < 80) { /* take or take_latest */
      shmbus_sample s;
      int e =
          r < 75 ? shmbus_subscriber_take(w->sub, &s) : shmbus_subscriber_take_latest(w->sub, &s);
      if (w->nheld == 3) {
        ts_assert_err(e, SHMBUS_ERR_HOLD_LIMIT);
      } else if (e == 0) {
        assert_true(ts_sample_valid(s.payload));
        assert_int_equal(((const ts_sample *)s.payload)->seq, s.sequence);
        if (w->last_seq != UINT64_MAX) assert_true(s.sequence > w->last_seq);
        w->last_seq = s.sequence;
        w->held[w->nheld++] = s;
      } else {
        ts_assert_err(e, SHMBUS_ERR_EMPTY);
      }
    } else if (r < 97) { /* release one held sample */
      if (w->nheld > 0) {
        int i = (int)(lcg(&x) % (uint64_t)w->nheld);
        ts_assert_ok(shmbus_subscriber_release(w->sub, &w->held[i]));
        w->held[i] = w->held[--w->nheld];
      }
    } else { /* close while holding, reopen */
      shmbus_subscriber_close(w->sub);
      w->sub = open_sub(node, "walk", &o);
      w->nheld = 0;
      w->last_seq = UINT64_MAX;
    }
    /* No held sample is ever overwritten. */
    for (int k = 0; k < 3; k++)
      for (int i = 0; i < subs[k].nheld; i++) {
        const ts_sample *p = subs[k].held[i].payload;
        if (!ts_sample_valid(p) || p->seq != subs[k].held[i].sequence)
          fail_msg("step %d: held sample %llu overwritten", step,
                   (unsigned long long)subs[k].held[i].sequence);
      }
  }
  assert_true(seq > 3000);
  for (int i = 0; i < nloans; i++) ts_assert_ok(shmbus_publisher_discard(pub, loans[i]));
  for (int k = 0; k < 3; k++) shmbus_subscriber_close(subs[k].sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_pool_random_walk_drop_oldest(void **state) {
  run_walk(*state, SHMBUS_OVERFLOW_DROP_OLDEST, 1);
  run_walk(*state, SHMBUS_OVERFLOW_DROP_OLDEST, 99);
}

static void test_pool_random_walk_drop_newest(void **state) {
  run_walk(*state, SHMBUS_OVERFLOW_DROP_NEWEST, 7);
}

#define SHM_TEST(f) cmocka_unit_test_setup_teardown(f, ts_setup_shm, ts_teardown)
#define DIR_TEST(f) cmocka_unit_test_setup_teardown(f, ts_setup_dir, ts_teardown)

int main(void) {
  const struct CMUnitTest shm[] = {
      SHM_TEST(test_basic_send_take),
      SHM_TEST(test_sequence_and_timestamps),
      SHM_TEST(test_variable_length),
      SHM_TEST(test_send_copy),
      SHM_TEST(test_discard_returns_chunk),
      SHM_TEST(test_take_latest),
      SHM_TEST(test_take_latest_two_publishers),
      SHM_TEST(test_overflow_drop_oldest),
      SHM_TEST(test_overflow_drop_newest),
      SHM_TEST(test_overflow_default_is_drop_oldest),
      SHM_TEST(test_overflow_per_subscriber),
      SHM_TEST(test_lost_before_first_take),
      SHM_TEST(test_history_late_joiner),
      SHM_TEST(test_history_larger_than_queue),
      SHM_TEST(test_history_fewer_than_capacity),
      SHM_TEST(test_many_publishers_and_subscribers),
      SHM_TEST(test_round_robin),
      SHM_TEST(test_subscriber_closes_while_holding),
      SHM_TEST(test_publisher_closes_while_held),
      SHM_TEST(test_publisher_closes_before_first_take),
      SHM_TEST(test_publisher_waits_for_mapping),
      SHM_TEST(test_new_publisher_same_name),
      SHM_TEST(test_publisher_churn_while_holding),
      SHM_TEST(test_take_after_releasing_departed_publisher),
      SHM_TEST(test_threads_share_a_node),
      SHM_TEST(test_threads_open_and_close_ports),
      SHM_TEST(test_pool_worst_case),
      SHM_TEST(test_pool_random_walk_drop_oldest),
      SHM_TEST(test_pool_random_walk_drop_newest),
  };
  const struct CMUnitTest dir[] = {
      DIR_TEST(test_basic_send_take),
      DIR_TEST(test_variable_length),
      DIR_TEST(test_take_latest),
      DIR_TEST(test_overflow_drop_oldest),
      DIR_TEST(test_overflow_drop_newest),
      DIR_TEST(test_history_late_joiner),
      DIR_TEST(test_many_publishers_and_subscribers),
      DIR_TEST(test_subscriber_closes_while_holding),
      DIR_TEST(test_publisher_closes_while_held),
      DIR_TEST(test_new_publisher_same_name),
      DIR_TEST(test_pool_worst_case),
      DIR_TEST(test_pool_random_walk_drop_oldest),
  };
  int failed = cmocka_run_group_tests_name("pubsub_shm", shm, NULL, NULL);
  failed += cmocka_run_group_tests_name("pubsub_dir", dir, NULL, NULL);
  return failed ? 1 : 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Publish/subscribe between real processes. Every child opens its own node
 * and ports, has a watchdog (ts_alarm) and reports to the parent over pipes;
 * the parent only coordinates (pipes are the only synchronisation; sleeps
 * are backoff in polls). Receivers check every sequence number and payload
 * and account exactly: received + lost == sent, and the gaps in each
 * publisher's sequence add up to the lost count.
 */
#include <sched.h>
#include <string.h>
#include <time.h>

#include "support.h"

/* The handshake before samples flow: a publisher polls
 * shmbus_publisher_update until it counts every subscriber, while each
 * subscriber polls shmbus_subscriber_publishers until it counts every
 * publisher (that call is also how a subscriber tells a publisher that it
 * has mapped it). */
enum {
  MSG_READY = 1, /* child: port open                                  */
  MSG_SUBS_SEEN, /* publisher: update() counts every subscriber       */
  MSG_CONNECTED, /* subscriber: publishers() counts every publisher   */
  MSG_GO,        /* parent -> child: go on                            */
  MSG_DONE,      /* child: finished its part                          */
  MSG_FINISH     /* parent -> child: close and exit                   */
};

/* Subscriber side of the handshake. 0 when every publisher counts. */
static int await_publishers(shmbus_subscriber *sub, int npubs) {
  unsigned round = 0;
  for (;;) {
    int n = shmbus_subscriber_publishers(sub);
    TS_CHECK(n >= 0 && n <= npubs);
    if (n == npubs) return 0;
    ts_backoff(&round);
  }
}

/* Publisher side of the handshake. */
static int await_subscribers(shmbus_publisher *pub, int nsubs) {
  unsigned round = 0;
  for (;;) {
    int n = shmbus_publisher_update(pub);
    TS_CHECK(n >= 0 && n <= nsubs);
    if (n == nsubs) return 0;
    ts_backoff(&round);
  }
}

#define MAX_PUBS 4

/* Sets the parent's own watchdog (children have theirs). */
static void parent_watchdog(void) { ts_alarm(120); }

/* ---- streams: N publishers -> M subscribers --------------------------------------- */

typedef struct stream_cfg {
  ts_env env;
  char service[64];
  shmbus_service_opts opts;
  uint64_t n; /* samples per publisher                          */
  int npubs;
  int nsubs;
  uint64_t tag;     /* publisher: its index, written into each payload */
  int hold;         /* subscriber: samples kept before releasing       */
  int pace;         /* publisher: gives up the CPU every `pace` samples (0: never) */
  uint64_t pace_ns; /* ... by sleeping that long (0: sched_yield)    */
} stream_cfg;

static int stream_publisher(ts_child *self, void *arg) {
  const stream_cfg *c = arg;
  shmbus_node *node = ts_child_node(&c->env);
  TS_CHECK(node != NULL);
  shmbus_publisher *pub = NULL;
  TS_CHECK_ERR(shmbus_publisher_open(node, c->service, &c->opts, &pub), 0);
  TS_CHECK(ts_child_send(self, shmbus_publisher_id(pub)) == 0);
  if (await_subscribers(pub, c->nsubs)) return TS_CHILD_FAILED;
  TS_CHECK(ts_child_send(self, MSG_SUBS_SEEN) == 0);
  uint64_t m = 0;
  TS_CHECK(ts_child_recv(self, &m) == 0);
  TS_CHECK_EQ(m, MSG_GO);
  for (uint64_t seq = 0; seq < c->n; seq++) {
    void *p = NULL;
    TS_CHECK_ERR(shmbus_publisher_loan(pub, 1, &p), 0);
    ts_sample_fill(p, c->tag, seq);
    TS_CHECK_ERR(shmbus_publisher_publish(pub, p), 0);
    /* On 2 cores the publishers would otherwise starve the subscribers.
     * Pacing only: the accounting is exact whatever is lost. */
    if (c->pace && seq % (uint64_t)c->pace == 0) {
      if (c->pace_ns) {
        struct timespec ts = {0, (long)c->pace_ns};
        nanosleep(&ts, NULL);
      } else {
        sched_yield();
      }
    }
  }
  TS_CHECK(ts_child_send(self, MSG_DONE) == 0);
  /* Close at once: subscribers drain what is queued after we are gone. */
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  return 0;
}

static int stream_subscriber(ts_child *self, void *arg) {
  const stream_cfg *c = arg;
  shmbus_node *node = ts_child_node(&c->env);
  TS_CHECK(node != NULL);
  shmbus_subscriber *sub = NULL;
  TS_CHECK_ERR(shmbus_subscriber_open(node, c->service, &c->opts, &sub), 0);
  TS_CHECK(ts_child_send(self, MSG_READY) == 0);
  if (await_publishers(sub, c->npubs)) return TS_CHILD_FAILED;
  TS_CHECK(ts_child_send(self, MSG_CONNECTED) == 0);

  const uint64_t total = c->n * (uint64_t)c->npubs;
  uint64_t next[MAX_PUBS] = {0}, ids[MAX_PUBS] = {0}, gaps = 0, received = 0;
  shmbus_sample held[8];
  int nheld = 0, gone = 0;
  unsigned round = 0;
  uint64_t first_gap_at = UINT64_MAX, first_gap_len = 0, first_gap_received = 0;
  for (;;) {
    shmbus_sample s;
    int r = shmbus_subscriber_take(sub, &s);
    if (r == 0) {
      const ts_sample *p = s.payload;
      TS_CHECK_EQ(s.bytes, sizeof(ts_sample));
      TS_CHECK(ts_sample_valid(p));
      TS_CHECK_EQ(p->seq, s.sequence);
      TS_CHECK(p->tag < (uint64_t)c->npubs);
      if (ids[p->tag] == 0) ids[p->tag] = s.publisher_id;
      TS_CHECK_EQ(s.publisher_id, ids[p->tag]);
      TS_CHECK(s.sequence >= next[p->tag]); /* per publisher, strictly increasing */
      TS_CHECK(s.sequence < c->n);
      if (s.sequence != next[p->tag] && first_gap_at == UINT64_MAX) {
        first_gap_at = next[p->tag];
        first_gap_len = s.sequence - next[p->tag];
        first_gap_received = received;
      }
      gaps += s.sequence - next[p->tag];
      next[p->tag] = s.sequence + 1;
      received++;
      held[nheld++] = s;
      if (nheld > c->hold) { /* release the oldest, checking it was left alone */
        const ts_sample *old = held[0].payload;
        TS_CHECK(ts_sample_valid(old));
        TS_CHECK_EQ(old->seq, held[0].sequence);
        TS_CHECK_ERR(shmbus_subscriber_release(sub, &held[0]), 0);
        memmove(held, held + 1, (size_t)(nheld - 1) * sizeof held[0]);
        nheld--;
      }
      round = 0;
      continue;
    }
    TS_CHECK_ERR(r, SHMBUS_ERR_EMPTY);
    if (received + shmbus_subscriber_lost(sub) >= total) break;
    /* Every publisher closed and the queues drained: nothing more comes. */
    if (gone) break;
    if (shmbus_subscriber_publishers(sub) == 0) gone = 1; /* take once more */
    ts_backoff(&round);
  }
  for (int i = 0; i < nheld; i++) TS_CHECK_ERR(shmbus_subscriber_release(sub, &held[i]), 0);
  uint64_t lost = shmbus_subscriber_lost(sub);
  uint64_t trailing = 0;
  for (int i = 0; i < c->npubs; i++) trailing += c->n - next[i];
  if (received + lost != total || gaps + trailing != lost || getenv("TS_VERBOSE"))
    fprintf(stderr,
            "subscriber %ld: received %llu lost %llu gaps %llu trailing %llu of %llu; "
            "first gap: %llu samples from seq %llu (after %llu received)\n",
            (long)getpid(), (unsigned long long)received, (unsigned long long)lost,
            (unsigned long long)gaps, (unsigned long long)trailing, (unsigned long long)total,
            (unsigned long long)first_gap_len, (unsigned long long)first_gap_at,
            (unsigned long long)first_gap_received);
  TS_CHECK_EQ(received + lost, total);
  TS_CHECK_EQ(gaps + trailing, lost);
  TS_CHECK(ts_child_send(self, received) == 0);
  TS_CHECK(ts_child_send(self, lost) == 0);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  return 0;
}

/* Runs npubs -> nsubs, subscribers or publishers started first. */
static void run_stream(const ts_env *env, stream_cfg base, int subs_first) {
  parent_watchdog();
  ts_child pubs[MAX_PUBS], subs[4];
  stream_cfg pc[MAX_PUBS], sc[4];
  assert_true(base.npubs <= MAX_PUBS && base.nsubs <= 4);
  ts_env_copy(&base.env, env);
  for (int i = 0; i < base.npubs; i++) {
    pc[i] = base;
    pc[i].tag = (uint64_t)i;
  }
  for (int k = 0; k < base.nsubs; k++) sc[k] = base;
  uint64_t t0 = ts_now_ns(), v = 0;

  for (int pass = 0; pass < 2; pass++) {
    if ((pass == 0) == (subs_first != 0)) {
      for (int k = 0; k < base.nsubs; k++) {
        ts_child_start(&subs[k], stream_subscriber, &sc[k]);
        ts_parent_expect(&subs[k], MSG_READY);
      }
    } else {
      for (int i = 0; i < base.npubs; i++) {
        ts_child_start(&pubs[i], stream_publisher, &pc[i]);
        ts_parent_recv(&pubs[i], &v); /* its id */
        assert_int_not_equal(v, 0);
      }
    }
  }
  for (int i = 0; i < base.npubs; i++) ts_parent_expect(&pubs[i], MSG_SUBS_SEEN);
  for (int k = 0; k < base.nsubs; k++) ts_parent_expect(&subs[k], MSG_CONNECTED);
  for (int i = 0; i < base.npubs; i++) ts_parent_send(&pubs[i], MSG_GO);
  for (int i = 0; i < base.npubs; i++) ts_parent_expect(&pubs[i], MSG_DONE);
  uint64_t lost_total = 0;
  for (int k = 0; k < base.nsubs; k++) {
    uint64_t received = 0, lost = 0;
    ts_parent_recv(&subs[k], &received);
    ts_parent_recv(&subs[k], &lost);
    assert_int_equal(received + lost, base.n * (uint64_t)base.npubs);
    print_message("    subscriber %d: received %llu, lost %llu\n", k, (unsigned long long)received,
                  (unsigned long long)lost);
    lost_total += lost;
  }
  for (int i = 0; i < base.npubs; i++) ts_assert_child_ok(&pubs[i]);
  for (int k = 0; k < base.nsubs; k++) ts_assert_child_ok(&subs[k]);
  print_message("    %d -> %d, %llu samples each, %s first: lost %llu, %.2f s\n", base.npubs,
                base.nsubs, (unsigned long long)base.n, subs_first ? "subscribers" : "publishers",
                (unsigned long long)lost_total, (double)(ts_now_ns() - t0) / 1e9);
  ts_assert_env_clean(env);
  ts_alarm(0);
}

static stream_cfg one_to_three(void) {
  stream_cfg c;
  memset(&c, 0, sizeof c);
  snprintf(c.service, sizeof c.service, "stream-1-3");
  c.opts = ts_opts();
  c.opts.max_publishers = 1;
  c.opts.max_subscribers = 3;
  c.opts.queue_depth = SHMBUS_MAX_QUEUE_DEPTH; /* generous: losses very unlikely */
  c.opts.overflow = SHMBUS_OVERFLOW_DROP_NEWEST;
  c.n = 100000;
  c.npubs = 1;
  c.nsubs = 3;
  c.hold = 0;
  c.pace = 2048; /* 4 processes on 2 cores: let the subscribers run */
  c.pace_ns = 100000;
  return c;
}

static void test_one_to_three_subscribers_first(void **state) {
  run_stream(*state, one_to_three(), 1);
}

static void test_one_to_three_publisher_first(void **state) {
  run_stream(*state, one_to_three(), 0);
}

/* Three publishers, two subscribers that keep a few samples each; a small
 * queue, so that (with drop-oldest) evictions race with takes across
 * processes. The publishers yield now and then so that the subscribers get
 * some CPU on a 2-core machine: some samples are lost, most arrive, and the
 * accounting must be exact either way. */
static stream_cfg three_to_two(void) {
  stream_cfg c;
  memset(&c, 0, sizeof c);
  snprintf(c.service, sizeof c.service, "stream-3-2");
  c.opts = ts_opts();
  c.opts.max_publishers = 3;
  c.opts.max_subscribers = 2;
  c.opts.queue_depth = 16;
  c.opts.max_held = 4;
  c.opts.overflow = SHMBUS_OVERFLOW_DROP_OLDEST;
  c.n = 50000;
  c.npubs = 3;
  c.nsubs = 2;
  c.hold = 3;
  c.pace = 16;
  return c;
}

static void test_three_to_two_drop_oldest(void **state) { run_stream(*state, three_to_two(), 1); }

static void test_three_to_two_drop_newest(void **state) {
  stream_cfg c = three_to_two();
  c.opts.overflow = SHMBUS_OVERFLOW_DROP_NEWEST;
  run_stream(*state, c, 0);
}

/* ---- timestamps ------------------------------------------------------------------ */

/* shmbus_sample.timestamp_ns is "CLOCK_MONOTONIC at publish": a monotonic
 * reading taken before the publish is not later, one taken after the take
 * is not earlier (user code compares them: examples/cpp_driver.cpp). The
 * library derives timestamps from a clock it calibrates once per process,
 * so each check runs in a fresh child: this test must run before the parent
 * opens a publisher itself. */
enum { STAMP_CHILDREN = 12, STAMP_ROUNDS = 50000 };

static int stamp_child(ts_child *self, void *arg) {
  const ts_env *env = arg;
  shmbus_service_opts o = ts_opts();
  shmbus_node *node = ts_child_node(env);
  TS_CHECK(node != NULL);
  char service[64];
  snprintf(service, sizeof service, "stamp-%ld", (long)getpid());
  shmbus_publisher *pub = NULL;
  shmbus_subscriber *sub = NULL;
  TS_CHECK_ERR(shmbus_publisher_open(node, service, &o, &pub), 0);
  TS_CHECK_ERR(shmbus_subscriber_open(node, service, &o, &sub), 0);
  uint64_t early = 0, late = 0, worst = 0;
  for (int i = 0; i < STAMP_ROUNDS; i++) {
    uint64_t before = ts_now_ns();
    TS_CHECK_ERR(shmbus_publisher_send_copy(pub, &before, sizeof before), 0);
    shmbus_sample s;
    TS_CHECK_ERR(shmbus_subscriber_take(sub, &s), 0);
    uint64_t after = ts_now_ns();
    if (s.timestamp_ns < before) {
      early++;
      if (before - s.timestamp_ns > worst) worst = before - s.timestamp_ns;
    }
    if (s.timestamp_ns > after) {
      late++;
      if (s.timestamp_ns - after > worst) worst = s.timestamp_ns - after;
    }
    TS_CHECK_ERR(shmbus_subscriber_release(sub, &s), 0);
  }
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  TS_CHECK(ts_child_send(self, early) == 0);
  TS_CHECK(ts_child_send(self, late) == 0);
  TS_CHECK(ts_child_send(self, worst) == 0);
  return 0;
}

static void test_timestamps_are_monotonic_clock(void **state) {
  ts_env *env = *state;
  parent_watchdog();
  uint64_t early = 0, late = 0, worst = 0, bad_children = 0;
  for (int i = 0; i < STAMP_CHILDREN; i++) {
    ts_child c;
    uint64_t e = 0, l = 0, w = 0;
    ts_child_start(&c, stamp_child, env);
    ts_parent_recv(&c, &e);
    ts_parent_recv(&c, &l);
    ts_parent_recv(&c, &w);
    ts_assert_child_ok(&c);
    early += e;
    late += l;
    if (w > worst) worst = w;
    if (e || l) bad_children++;
  }
  ts_assert_env_clean(env);
  ts_alarm(0);
  if (early || late)
    fail_msg(
        "in %llu of %d processes, of %d timestamps each: %llu before the publish, %llu "
        "after the take, off by up to %llu ns",
        (unsigned long long)bad_children, STAMP_CHILDREN, STAMP_ROUNDS, (unsigned long long)early,
        (unsigned long long)late, (unsigned long long)worst);
}

/* ---- one publisher, one subscriber, in rounds ---------------------------------------- */

/* Used for the late joiner's history and for exact overflow counts: the
 * subscriber process waits on its pipe while the publisher process works. */
typedef struct small_cfg {
  ts_env env;
  shmbus_service_opts opts;
  uint64_t before_join; /* published before the subscriber exists       */
  uint64_t after_join;  /* published once update() has connected it     */
  uint64_t round2;      /* published on the second MSG_GO               */
} small_cfg;

static int publish_range(shmbus_publisher *pub, uint64_t *seq, uint64_t count) {
  for (uint64_t end = *seq + count; *seq < end; ++*seq) {
    void *p = NULL;
    TS_CHECK_ERR(shmbus_publisher_loan(pub, 1, &p), 0);
    ts_sample_fill(p, 5, *seq);
    TS_CHECK_ERR(shmbus_publisher_publish(pub, p), 0);
  }
  return 0;
}

/* Reports its id after the first burst; on MSG_GO connects the subscriber
 * (handshake) and publishes the second; on MSG_GO again the third; closes
 * on MSG_FINISH. */
static int small_publisher(ts_child *self, void *arg) {
  const small_cfg *c = arg;
  shmbus_node *node = ts_child_node(&c->env);
  TS_CHECK(node != NULL);
  shmbus_publisher *pub = NULL;
  TS_CHECK_ERR(shmbus_publisher_open(node, "small", &c->opts, &pub), 0);
  uint64_t seq = 0, m = 0;
  if (publish_range(pub, &seq, c->before_join)) return TS_CHILD_FAILED;
  TS_CHECK(ts_child_send(self, shmbus_publisher_id(pub)) == 0);
  TS_CHECK(ts_child_recv(self, &m) == 0);
  TS_CHECK_EQ(m, MSG_GO); /* the subscriber is open */
  if (await_subscribers(pub, 1)) return TS_CHILD_FAILED;
  if (publish_range(pub, &seq, c->after_join)) return TS_CHILD_FAILED;
  TS_CHECK(ts_child_send(self, MSG_DONE) == 0);
  TS_CHECK(ts_child_recv(self, &m) == 0);
  TS_CHECK_EQ(m, MSG_GO);
  if (publish_range(pub, &seq, c->round2)) return TS_CHILD_FAILED;
  TS_CHECK(ts_child_send(self, MSG_DONE) == 0);
  TS_CHECK(ts_child_recv(self, &m) == 0);
  TS_CHECK_EQ(m, MSG_FINISH);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  return 0;
}

/* Takes everything queued and checks it is exactly first..first+count-1
 * from publisher `id`, then EMPTY. */
static int take_exactly(shmbus_subscriber *sub, uint64_t id, uint64_t first, uint64_t count) {
  for (uint64_t seq = first; seq < first + count; seq++) {
    shmbus_sample s;
    TS_CHECK_ERR(shmbus_subscriber_take(sub, &s), 0);
    TS_CHECK_EQ(s.sequence, seq);
    TS_CHECK_EQ(s.publisher_id, id);
    TS_CHECK(ts_sample_valid(s.payload));
    TS_CHECK_EQ(((const ts_sample *)s.payload)->seq, seq);
    TS_CHECK_ERR(shmbus_subscriber_release(sub, &s), 0);
  }
  shmbus_sample s;
  TS_CHECK_ERR(shmbus_subscriber_take(sub, &s), SHMBUS_ERR_EMPTY);
  return 0;
}

typedef struct small_sub_cfg {
  ts_env env;
  shmbus_service_opts opts;
  uint64_t expect_first[2], expect_count[2], expect_lost[2];
} small_sub_cfg;

/* Opens on MSG_GO, connects, then in two rounds waits for the publisher's
 * id (it has published) and checks what is queued. */
static int small_subscriber(ts_child *self, void *arg) {
  const small_sub_cfg *c = arg;
  uint64_t m = 0, id = 0;
  TS_CHECK(ts_child_recv(self, &m) == 0);
  TS_CHECK_EQ(m, MSG_GO);
  shmbus_node *node = ts_child_node(&c->env);
  TS_CHECK(node != NULL);
  shmbus_subscriber *sub = NULL;
  TS_CHECK_ERR(shmbus_subscriber_open(node, "small", &c->opts, &sub), 0);
  TS_CHECK(ts_child_send(self, MSG_READY) == 0);
  if (await_publishers(sub, 1)) return TS_CHILD_FAILED;
  TS_CHECK(ts_child_send(self, MSG_CONNECTED) == 0);
  for (int r = 0; r < 2; r++) {
    TS_CHECK(ts_child_recv(self, &id) == 0); /* the publisher has published */
    int e = take_exactly(sub, id, c->expect_first[r], c->expect_count[r]);
    if (e) return e;
    TS_CHECK_EQ(shmbus_subscriber_lost(sub), c->expect_lost[r]);
    TS_CHECK(ts_child_send(self, MSG_DONE) == 0);
  }
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  return 0;
}

/* Parent side of a publisher/subscriber pair in two rounds. */
static void run_small(const ts_env *env, small_cfg *pc, small_sub_cfg *sc) {
  parent_watchdog();
  ts_env_copy(&pc->env, env);
  ts_env_copy(&sc->env, env);
  ts_child pub, sub;
  uint64_t id = 0;
  ts_child_start(&pub, small_publisher, pc);
  ts_parent_recv(&pub, &id); /* open, history published */
  ts_child_start(&sub, small_subscriber, sc);
  ts_parent_send(&sub, MSG_GO);
  ts_parent_expect(&sub, MSG_READY); /* open */
  ts_parent_send(&pub, MSG_GO);
  ts_parent_expect(&sub, MSG_CONNECTED);
  ts_parent_expect(&pub, MSG_DONE); /* connected it, published */
  ts_parent_send(&sub, id);
  ts_parent_expect(&sub, MSG_DONE); /* checked round one */
  ts_parent_send(&pub, MSG_GO);
  ts_parent_expect(&pub, MSG_DONE);
  ts_parent_send(&sub, id);
  ts_parent_expect(&sub, MSG_DONE);
  ts_parent_send(&pub, MSG_FINISH);
  ts_assert_child_ok(&sub);
  ts_assert_child_ok(&pub);
  ts_assert_env_clean(env);
  ts_alarm(0);
}

static void test_late_joiner_history(void **state) {
  small_cfg pc;
  small_sub_cfg sc;
  memset(&pc, 0, sizeof pc);
  memset(&sc, 0, sizeof sc);
  pc.opts = ts_opts();
  pc.opts.history = 3;
  pc.before_join = 5;
  pc.after_join = 0; /* the subscriber gets the history only */
  pc.round2 = 3;
  sc.opts = ts_opts();
  sc.expect_first[0] = 2; /* 2 3 4 */
  sc.expect_count[0] = 3;
  sc.expect_first[1] = 5; /* then live samples */
  sc.expect_count[1] = 3;
  run_small(*state, &pc, &sc);
}

/* ---- overflow counts across processes --------------------------------------------- */

static void run_overflow_mp(const ts_env *env, int policy) {
  small_cfg pc;
  small_sub_cfg sc;
  memset(&pc, 0, sizeof pc);
  memset(&sc, 0, sizeof sc);
  pc.opts = ts_opts();
  pc.opts.queue_depth = 4;
  pc.opts.overflow = policy;
  pc.after_join = 10; /* while the subscriber waits on its pipe */
  pc.round2 = 3;
  sc.opts = ts_opts();
  sc.expect_first[0] = policy == SHMBUS_OVERFLOW_DROP_OLDEST ? 6 : 0;
  sc.expect_count[0] = 4;
  sc.expect_lost[0] = 6;
  sc.expect_first[1] = 10;
  sc.expect_count[1] = 3;
  sc.expect_lost[1] = 6;
  run_small(env, &pc, &sc);
}

static void test_overflow_drop_oldest_mp(void **state) {
  run_overflow_mp(*state, SHMBUS_OVERFLOW_DROP_OLDEST);
}

static void test_overflow_drop_newest_mp(void **state) {
  run_overflow_mp(*state, SHMBUS_OVERFLOW_DROP_NEWEST);
}

/* ---- services created and removed concurrently ----------------------------------- */

typedef struct churn_cfg {
  ts_env env;
  int index;
  int rounds;
} churn_cfg;

/* Opens and closes ports on one service over and over, so that the
 * service is created and removed many times while others open it. */
static int churn_child(ts_child *self, void *arg) {
  const churn_cfg *c = arg;
  shmbus_service_opts o = ts_opts();
  o.max_publishers = 8;
  o.max_subscribers = 8;
  uint64_t m = 0;
  TS_CHECK(ts_child_recv(self, &m) == 0); /* start together */
  for (int r = 0; r < c->rounds; r++) {
    shmbus_node *node = ts_child_node(&c->env);
    TS_CHECK(node != NULL);
    shmbus_publisher *pub = NULL;
    shmbus_subscriber *sub = NULL;
    if ((r + c->index) % 3 != 0) TS_CHECK_ERR(shmbus_publisher_open(node, "churn", &o, &pub), 0);
    if ((r + c->index) % 3 != 1) TS_CHECK_ERR(shmbus_subscriber_open(node, "churn", &o, &sub), 0);
    if (pub) {
      ts_sample x;
      ts_sample_fill(&x, (uint64_t)c->index, (uint64_t)r);
      TS_CHECK_ERR(shmbus_publisher_send_copy(pub, &x, sizeof x), 0);
    }
    if (sub) {
      shmbus_sample s;
      int e;
      while ((e = shmbus_subscriber_take(sub, &s)) == 0) {
        TS_CHECK(ts_sample_valid(s.payload));
        TS_CHECK_ERR(shmbus_subscriber_release(sub, &s), 0);
      }
      TS_CHECK_ERR(e, SHMBUS_ERR_EMPTY);
    }
    if (r % 2) shmbus_node_close(node); /* node first or ports first */
    shmbus_subscriber_close(sub);
    shmbus_publisher_close(pub);
    if (r % 2 == 0) shmbus_node_close(node);
  }
  TS_CHECK(ts_child_send(self, MSG_DONE) == 0);
  return 0;
}

static void test_service_churn(void **state) {
  ts_env *env = *state;
  parent_watchdog();
  enum { CHILDREN = 4 };
  ts_child kids[CHILDREN];
  churn_cfg cfg[CHILDREN];
  for (int i = 0; i < CHILDREN; i++) {
    ts_env_copy(&cfg[i].env, env);
    cfg[i].index = i;
    cfg[i].rounds = 300;
    ts_child_start(&kids[i], churn_child, &cfg[i]);
  }
  for (int i = 0; i < CHILDREN; i++) ts_parent_send(&kids[i], MSG_GO);
  for (int i = 0; i < CHILDREN; i++) ts_parent_expect(&kids[i], MSG_DONE);
  for (int i = 0; i < CHILDREN; i++) ts_assert_child_ok(&kids[i]);
  ts_assert_env_clean(env);
  ts_alarm(0);
}

/* ---- subscribers map payloads read-only ------------------------------------------------ */

static int readonly_subscriber(ts_child *self, void *arg) {
  const ts_env *env = arg;
  shmbus_service_opts o = ts_opts();
  shmbus_node *node = ts_child_node(env);
  TS_CHECK(node != NULL);
  shmbus_subscriber *sub = NULL;
  TS_CHECK_ERR(shmbus_subscriber_open(node, "readonly", &o, &sub), 0);
  TS_CHECK(ts_child_send(self, MSG_READY) == 0);
  if (await_publishers(sub, 1)) return TS_CHILD_FAILED;
  TS_CHECK(ts_child_send(self, MSG_CONNECTED) == 0);
  uint64_t m = 0;
  TS_CHECK(ts_child_recv(self, &m) == 0);
  TS_CHECK_EQ(m, MSG_GO);
  shmbus_sample s;
  TS_CHECK_ERR(shmbus_subscriber_take(sub, &s), 0);
  TS_CHECK(ts_sample_valid(s.payload));
  /* The payload byte keeps its value: the probe writes it back, if at all. */
  int faulted = ts_write_faults((volatile uint8_t *)(uintptr_t)s.payload);
  TS_CHECK(faulted);
  TS_CHECK(ts_sample_valid(s.payload));
  TS_CHECK_ERR(shmbus_subscriber_release(sub, &s), 0);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  return 0;
}

static void test_subscriber_payload_is_readonly(void **state) {
  ts_env *env = *state;
  parent_watchdog();
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  shmbus_publisher *pub = NULL;
  ts_assert_ok(shmbus_publisher_open(node, "readonly", &o, &pub));
  ts_child sub;
  ts_child_start(&sub, readonly_subscriber, env);
  ts_parent_expect(&sub, MSG_READY);
  unsigned round = 0;
  while (shmbus_publisher_update(pub) < 1) ts_backoff(&round);
  ts_parent_expect(&sub, MSG_CONNECTED);
  ts_sample x;
  ts_sample_fill(&x, 1, 0);
  ts_assert_ok(shmbus_publisher_send_copy(pub, &x, sizeof x));
  ts_parent_send(&sub, MSG_GO);
  ts_assert_child_ok(&sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
  ts_alarm(0);
}

/* ---- processes that die ------------------------------------------------------------ */

static int dying_subscriber(ts_child *self, void *arg) {
  const ts_env *env = arg;
  shmbus_service_opts o = ts_opts();
  shmbus_node *node = ts_child_node(env);
  TS_CHECK(node != NULL);
  shmbus_subscriber *sub = NULL;
  TS_CHECK_ERR(shmbus_subscriber_open(node, "dying", &o, &sub), 0);
  TS_CHECK(ts_child_send(self, MSG_READY) == 0);
  if (await_publishers(sub, 1)) return TS_CHILD_FAILED;
  TS_CHECK(ts_child_send(self, MSG_CONNECTED) == 0);
  uint64_t m = 0;
  TS_CHECK(ts_child_recv(self, &m) == 0);
  /* Take and hold what we can, then wait to be killed. */
  shmbus_sample s;
  unsigned round = 0;
  int held = 0;
  while (held < 4) {
    int r = shmbus_subscriber_take(sub, &s);
    if (r == 0)
      held++;
    else
      ts_backoff(&round);
  }
  TS_CHECK(ts_child_send(self, MSG_DONE) == 0);
  TS_CHECK(ts_child_recv(self, &m) == 0); /* never answered */
  return 0;
}

/* A subscriber process killed while it holds samples and has a queue: the
 * publisher notices its node is dead, frees its slot and takes its chunks
 * back; a live subscriber is served all along; shmbus_domain_cleanup then
 * removes the dead node's token. */
static void test_killed_subscriber_is_reclaimed(void **state) {
  ts_env *env = *state;
  parent_watchdog();
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.queue_depth = 8;
  o.max_subscribers = 2;
  shmbus_publisher *pub = NULL;
  ts_assert_ok(shmbus_publisher_open(node, "dying", &o, &pub));
  shmbus_subscriber *live = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, "dying", &o, &live));
  ts_child victim;
  ts_child_start(&victim, dying_subscriber, env);
  ts_parent_expect(&victim, MSG_READY);
  unsigned round = 0;
  while (shmbus_publisher_update(pub) < 2) {
    assert_true(shmbus_subscriber_publishers(live) >= 0);
    ts_backoff(&round);
  }
  ts_parent_expect(&victim, MSG_CONNECTED);
  ts_parent_send(&victim, MSG_GO);
  uint64_t seq = 0;
  for (; seq < 4; seq++) {
    ts_sample x;
    ts_sample_fill(&x, 1, seq);
    ts_assert_ok(shmbus_publisher_send_copy(pub, &x, sizeof x));
  }
  ts_parent_expect(&victim, MSG_DONE);
  ts_child_kill(&victim);
  assert_int_equal(ts_child_wait(&victim), TS_KILLED);

  /* Listed dead until cleanup, where its token outlives it. */
  const size_t dead_tokens = (size_t)ts_dead_tokens_stay();
  shmbus_node_info info[4];
  size_t count = 0;
  ts_assert_ok(shmbus_node_list(node, info, 4, &count));
  assert_int_equal(count, 1 + dead_tokens);
  assert_int_equal(info[0].alive + (count > 1 ? info[1].alive : 0), 1);

  /* Its slot is freed: a third subscriber fits (max_subscribers 2). */
  assert_int_equal(shmbus_publisher_update(pub), 1);
  shmbus_subscriber *third = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, "dying", &o, &third));

  shmbus_sample s;
  for (uint64_t i = 0; i < 4; i++) {
    ts_assert_ok(shmbus_subscriber_take(live, &s));
    ts_assert_ok(shmbus_subscriber_release(live, &s));
  }
  /* Far more samples than the pool has chunks (2 x 12 + 4). */
  for (; seq < 2000; seq++) {
    ts_sample x;
    ts_sample_fill(&x, 1, seq);
    ts_assert_ok(shmbus_publisher_send_copy(pub, &x, sizeof x));
    ts_assert_ok(shmbus_subscriber_take(live, &s));
    assert_int_equal(s.sequence, seq);
    assert_true(ts_sample_valid(s.payload));
    ts_assert_ok(shmbus_subscriber_release(live, &s));
    if (shmbus_subscriber_take(third, &s) == 0) ts_assert_ok(shmbus_subscriber_release(third, &s));
  }
  assert_int_equal(shmbus_subscriber_lost(live), 0);
  shmbus_subscriber_close(third);
  shmbus_subscriber_close(live);
  shmbus_publisher_close(pub);
  /* The service went with its last live user; the dead node's token is
   * all that is left (where it outlives its process), and cleanup removes
   * it. */
  ts_assert_objects(env, 0);
  assert_int_equal(ts_tokens(env->domain, env->dir), 1 + dead_tokens);
  assert_true(shmbus_domain_cleanup(node) >= (int)dead_tokens);
  assert_int_equal(ts_tokens(env->domain, env->dir), 1);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
  ts_alarm(0);
}

static int dying_publisher(ts_child *self, void *arg) {
  const ts_env *env = arg;
  shmbus_service_opts o = ts_opts();
  shmbus_node *node = ts_child_node(env);
  TS_CHECK(node != NULL);
  shmbus_publisher *pub = NULL;
  TS_CHECK_ERR(shmbus_publisher_open(node, "dying-pub", &o, &pub), 0);
  TS_CHECK(ts_child_send(self, MSG_READY) == 0);
  if (await_subscribers(pub, 1)) return TS_CHILD_FAILED;
  TS_CHECK(ts_child_send(self, MSG_SUBS_SEEN) == 0);
  for (uint64_t seq = 0; seq < 4; seq++) {
    ts_sample x;
    ts_sample_fill(&x, 7, seq);
    TS_CHECK_ERR(shmbus_publisher_send_copy(pub, &x, sizeof x), 0);
  }
  TS_CHECK(ts_child_send(self, MSG_DONE) == 0);
  uint64_t m = 0;
  TS_CHECK(ts_child_recv(self, &m) == 0); /* never answered */
  return 0;
}

/* A publisher process killed after publishing: the subscriber frees its
 * slot, keeps the sample it holds and still takes what is queued; nothing
 * is left once everything is closed and cleaned up. */
static void test_killed_publisher_is_reclaimed(void **state) {
  ts_env *env = *state;
  parent_watchdog();
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  shmbus_subscriber *sub = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, "dying-pub", &o, &sub));
  ts_child victim;
  ts_child_start(&victim, dying_publisher, env);
  ts_parent_expect(&victim, MSG_READY);
  unsigned round = 0;
  while (shmbus_subscriber_publishers(sub) < 1) ts_backoff(&round);
  ts_parent_expect(&victim, MSG_SUBS_SEEN);
  ts_parent_expect(&victim, MSG_DONE);
  shmbus_sample held;
  ts_assert_ok(shmbus_subscriber_take(sub, &held));
  assert_int_equal(held.sequence, 0);
  ts_child_kill(&victim);
  assert_int_equal(ts_child_wait(&victim), TS_KILLED);

  assert_int_equal(shmbus_subscriber_publishers(sub), 0); /* reaped */
  ts_assert_objects(env, 1);                              /* its segments are gone */
  assert_true(ts_sample_valid(held.payload));
  for (uint64_t i = 1; i < 4; i++) {
    shmbus_sample s;
    ts_assert_ok(shmbus_subscriber_take(sub, &s));
    assert_int_equal(s.sequence, i);
    assert_true(ts_sample_valid(s.payload));
    assert_int_equal(((const ts_sample *)s.payload)->tag, 7);
    ts_assert_ok(shmbus_subscriber_release(sub, &s));
  }
  shmbus_sample s;
  ts_assert_err(shmbus_subscriber_take(sub, &s), SHMBUS_ERR_EMPTY);
  ts_assert_ok(shmbus_subscriber_release(sub, &held));
  assert_int_equal(shmbus_subscriber_lost(sub), 0);
  shmbus_subscriber_close(sub);
  ts_assert_objects(env, 0);
  /* The dead token, where it outlives its process. */
  assert_true(shmbus_domain_cleanup(node) >= ts_dead_tokens_stay());
  shmbus_node_close(node);
  ts_assert_env_clean(env);
  ts_alarm(0);
}

#define SHM_TEST(f) cmocka_unit_test_setup_teardown(f, ts_setup_shm, ts_teardown)
#define DIR_TEST(f) cmocka_unit_test_setup_teardown(f, ts_setup_dir, ts_teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      SHM_TEST(test_one_to_three_subscribers_first),
      SHM_TEST(test_one_to_three_publisher_first),
      SHM_TEST(test_three_to_two_drop_oldest),
      SHM_TEST(test_three_to_two_drop_newest),
      SHM_TEST(test_timestamps_are_monotonic_clock),
      SHM_TEST(test_late_joiner_history),
      SHM_TEST(test_overflow_drop_oldest_mp),
      SHM_TEST(test_overflow_drop_newest_mp),
      SHM_TEST(test_subscriber_payload_is_readonly),
      SHM_TEST(test_service_churn),
      SHM_TEST(test_killed_subscriber_is_reclaimed),
      SHM_TEST(test_killed_publisher_is_reclaimed),
      DIR_TEST(test_one_to_three_subscribers_first),
      DIR_TEST(test_three_to_two_drop_oldest),
      DIR_TEST(test_late_joiner_history),
      DIR_TEST(test_overflow_drop_oldest_mp),
      DIR_TEST(test_subscriber_payload_is_readonly),
      DIR_TEST(test_service_churn),
      DIR_TEST(test_killed_subscriber_is_reclaimed),
      DIR_TEST(test_killed_publisher_is_reclaimed),
  };
  return cmocka_run_group_tests_name("multiprocess", tests, NULL, NULL) ? 1 : 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Blocking waits, wait sets, the pollable descriptor and the BLOCK overflow
 * policy, between real processes (issue 5). Waiters here sleep: spin time
 * is 0 unless a case says otherwise, so every wake-up goes through the
 * futex or the wait set's notifier.
 */
#include <pthread.h>
#include <string.h>
#include <time.h>
#ifndef _WIN32
#include <sys/epoll.h>
#endif

#include "support.h"

enum { MSG_READY = 1, MSG_GO, MSG_DONE, MSG_FINISH };

static uint64_t now_ns(void) { return ts_now_ns(); }

#define MS (UINT64_C(1000000))

typedef struct wait_cfg {
  ts_env env;
  char service[64];
  char reply[64]; /* ping-pong: the service of the answers */
  shmbus_service_opts opts;
  uint64_t n;
} wait_cfg;

static void cfg_init(wait_cfg *c, const ts_env *env, const char *hint) {
  memset(c, 0, sizeof *c);
  ts_env_copy(&c->env, env);
  ts_service_name(c->service, sizeof c->service, hint);
  ts_service_name(c->reply, sizeof c->reply, "reply");
  c->opts = ts_opts();
}

/* Waits, with a stall limit, until `sub` has a sample and takes it. */
static int take_waiting(shmbus_subscriber *sub, shmbus_sample *s, int64_t stall_ns) {
  int r = shmbus_subscriber_wait(sub, stall_ns);
  if (r) return r;
  return shmbus_subscriber_take(sub, s);
}

/* ---- timeouts ------------------------------------------------------------- */

static void test_wait_timeout(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  shmbus_subscriber *sub = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, "timeout", &o, &sub));
  ts_assert_err(shmbus_subscriber_wait(NULL, 0), SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_subscriber_set_spin(sub, -1), SHMBUS_ERR_INVAL);

  uint64_t t0 = now_ns();
  ts_assert_err(shmbus_subscriber_wait(sub, 0), SHMBUS_ERR_TIMEDOUT);
  assert_true(now_ns() - t0 < 50 * MS);

  /* With no publisher at all, and then with a silent one. */
  for (int with_pub = 0; with_pub < 2; with_pub++) {
    shmbus_publisher *pub = NULL;
    if (with_pub) ts_assert_ok(shmbus_publisher_open(node, "timeout", &o, &pub));
    t0 = now_ns();
    ts_assert_err(shmbus_subscriber_wait(sub, (int64_t)(50 * MS)), SHMBUS_ERR_TIMEDOUT);
    uint64_t took = now_ns() - t0;
    print_message("50 ms wait (%s publisher): returned after %.2f ms\n",
                  with_pub ? "a silent" : "no", (double)took / 1e6);
    assert_true(took >= 50 * MS);
    assert_true(took < 1000 * MS);
    shmbus_publisher_close(pub);
  }
  /* The silent publisher went: said once, then waits time out again. */
  ts_assert_err(shmbus_subscriber_wait(sub, 0), SHMBUS_ERR_NO_PUBLISHER);
  /* Spinning first changes nothing about the result. */
  ts_assert_ok(shmbus_subscriber_set_spin(sub, (int64_t)(5 * MS)));
  t0 = now_ns();
  ts_assert_err(shmbus_subscriber_wait(sub, (int64_t)(20 * MS)), SHMBUS_ERR_TIMEDOUT);
  assert_true(now_ns() - t0 >= 20 * MS);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* ---- the publisher goes --------------------------------------------------- */

/* Publishes one sample when told, then closes (or is killed by the parent). */
static int one_sample_publisher(ts_child *self, void *arg) {
  wait_cfg *c = arg;
  shmbus_node *node = ts_child_node(&c->env);
  TS_CHECK(node != NULL);
  shmbus_publisher *pub = NULL;
  TS_CHECK_ERR(shmbus_publisher_open(node, c->service, &c->opts, &pub), 0);
  unsigned round = 0;
  while (shmbus_publisher_update(pub) < 1) ts_backoff(&round);
  TS_CHECK(ts_child_send(self, MSG_READY) == 0);
  uint64_t m;
  TS_CHECK(ts_child_recv(self, &m) == 0 && m == MSG_GO);
  ts_sample s;
  ts_sample_fill(&s, 1, 0);
  TS_CHECK_ERR(shmbus_publisher_send_copy(pub, &s, sizeof s), 0);
  TS_CHECK(ts_child_send(self, MSG_DONE) == 0);
  TS_CHECK(ts_child_recv(self, &m) == 0 && m == MSG_FINISH);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  return 0;
}

static void no_publisher_case(ts_env *env, int kill_it) {
  shmbus_node *node = ts_node(env);
  wait_cfg c;
  cfg_init(&c, env, kill_it ? "killed-pub" : "closed-pub");
  shmbus_subscriber *sub = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, c.service, &c.opts, &sub));
  ts_child child;
  ts_child_start(&child, one_sample_publisher, &c);
  unsigned round = 0;
  while (shmbus_subscriber_publishers(sub) < 1) ts_backoff(&round);
  ts_parent_expect(&child, MSG_READY);
  ts_parent_send(&child, MSG_GO);
  shmbus_sample s;
  ts_assert_ok(take_waiting(sub, &s, (int64_t)(1000 * MS)));
  assert_true(ts_sample_valid(s.payload));
  ts_assert_ok(shmbus_subscriber_release(sub, &s));
  ts_parent_expect(&child, MSG_DONE);

  uint64_t t0 = now_ns();
  if (kill_it) {
    ts_child_kill(&child);
    assert_int_equal(ts_child_wait(&child), TS_KILLED);
  } else {
    ts_parent_send(&child, MSG_FINISH);
  }
  /* The subscriber sleeps while the publisher goes: the close wakes it, a
   * death is found by the sleeper's liveness sweep. */
  ts_assert_err(shmbus_subscriber_wait(sub, (int64_t)(2000 * MS)), SHMBUS_ERR_NO_PUBLISHER);
  print_message("NO_PUBLISHER %.1f ms after the publisher was %s\n", (double)(now_ns() - t0) / 1e6,
                kill_it ? "killed" : "closed");
  if (!kill_it) ts_assert_child_ok(&child);
  /* Reported once: the next wait waits for a new publisher. */
  ts_assert_err(shmbus_subscriber_wait(sub, (int64_t)(20 * MS)), SHMBUS_ERR_TIMEDOUT);
  shmbus_subscriber_close(sub);
  shmbus_domain_cleanup(node);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_wait_publisher_closes(void **state) { no_publisher_case(*state, 0); }
static void test_wait_publisher_killed(void **state) { no_publisher_case(*state, 1); }

/* ---- no lost wake-up: ping-pong where both sides sleep --------------------- */

#define PING_CYCLES 100000
#define STALL_NS ((int64_t)(1000 * MS))

/* Publishes i on `service`, sleeps until the answer i arrives on `reply`. */
static int ping_side(ts_child *self, void *arg) {
  wait_cfg *c = arg;
  shmbus_node *node = ts_child_node(&c->env);
  TS_CHECK(node != NULL);
  shmbus_publisher *pub = NULL;
  shmbus_subscriber *sub = NULL;
  TS_CHECK_ERR(shmbus_publisher_open(node, c->service, &c->opts, &pub), 0);
  TS_CHECK_ERR(shmbus_subscriber_open(node, c->reply, &c->opts, &sub), 0);
  unsigned round = 0;
  /* Both calls every round: each side's update counts the other's
   * subscriber only once that one has looked (publishers()). */
  for (;;) {
    int subs = shmbus_publisher_update(pub), pubs = shmbus_subscriber_publishers(sub);
    if (subs >= 1 && pubs >= 1) break;
    ts_backoff(&round);
  }
  TS_CHECK(ts_child_send(self, MSG_READY) == 0);
  for (uint64_t i = 0; i < c->n; i++) {
    ts_sample s;
    ts_sample_fill(&s, 7, i);
    TS_CHECK_ERR(shmbus_publisher_send_copy(pub, &s, sizeof s), 0);
    shmbus_sample got;
    int r = take_waiting(sub, &got, STALL_NS);
    if (r) fprintf(stderr, "ping: cycle %llu: %s\n", (unsigned long long)i, shmbus_err_name(r));
    TS_CHECK_ERR(r, 0);
    TS_CHECK_EQ(((const ts_sample *)got.payload)->seq, i);
    TS_CHECK_ERR(shmbus_subscriber_release(sub, &got), 0);
  }
  TS_CHECK(ts_child_send(self, MSG_DONE) == 0);
  uint64_t m;
  TS_CHECK(ts_child_recv(self, &m) == 0 && m == MSG_FINISH);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  return 0;
}

static void test_no_lost_wakeup(void **state) {
  ts_env *env = *state;
  ts_alarm(300);
  shmbus_node *node = ts_node(env);
  wait_cfg c;
  cfg_init(&c, env, "ping");
  c.n = PING_CYCLES;
  shmbus_subscriber *sub = NULL;
  shmbus_publisher *pub = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, c.service, &c.opts, &sub));
  ts_assert_ok(shmbus_publisher_open(node, c.reply, &c.opts, &pub));
  ts_child child;
  ts_child_start(&child, ping_side, &c);
  unsigned round = 0;
  /* Both calls every round: each side's update counts the other's
   * subscriber only once that one has looked (publishers()). */
  for (;;) {
    int subs = shmbus_publisher_update(pub), pubs = shmbus_subscriber_publishers(sub);
    if (subs >= 1 && pubs >= 1) break;
    ts_backoff(&round);
  }
  ts_parent_expect(&child, MSG_READY);
  uint64_t t0 = now_ns(), worst = 0;
  for (uint64_t i = 0; i < c.n; i++) {
    uint64_t w0 = now_ns();
    shmbus_sample got;
    int r = take_waiting(sub, &got, STALL_NS);
    if (r)
      fail_msg("cycle %llu: wait/take gave %s (a stall over 1 s is a lost wake-up)",
               (unsigned long long)i, shmbus_err_name(r));
    uint64_t waited = now_ns() - w0;
    if (waited > worst) worst = waited;
    assert_int_equal(((const ts_sample *)got.payload)->seq, i);
    assert_true(ts_sample_valid(got.payload));
    ts_assert_ok(shmbus_subscriber_release(sub, &got));
    ts_sample s;
    ts_sample_fill(&s, 8, i);
    ts_assert_ok(shmbus_publisher_send_copy(pub, &s, sizeof s));
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  print_message(
      "%d sleeping ping-pong cycles in %.2f s (%.1f us per round trip), longest "
      "wait %.2f ms\n",
      PING_CYCLES, secs, secs * 1e6 / PING_CYCLES, (double)worst / 1e6);
  ts_parent_expect(&child, MSG_DONE);
  ts_parent_send(&child, MSG_FINISH);
  ts_assert_child_ok(&child);
  shmbus_publisher_close(pub);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
  ts_alarm(0);
}

/* ---- wait sets ----------------------------------------------------------- */

#define WS_SUBS 32

typedef struct ws_cfg {
  ts_env env;
  char services[WS_SUBS][64];
  shmbus_service_opts opts;
  int order[WS_SUBS];
  int index[WS_SUBS]; /* the user pointers: index[k] == k */
} ws_cfg;

/* Publishes one sample on services[order[i]] per MSG_GO. */
static int ws_publisher(ts_child *self, void *arg) {
  ws_cfg *c = arg;
  shmbus_node *node = ts_child_node(&c->env);
  TS_CHECK(node != NULL);
  shmbus_publisher *pubs[WS_SUBS];
  for (int i = 0; i < WS_SUBS; i++)
    TS_CHECK_ERR(shmbus_publisher_open(node, c->services[i], &c->opts, &pubs[i]), 0);
  /* The subscribers exist: each open bound them. */
  TS_CHECK(ts_child_send(self, MSG_READY) == 0);
  for (int i = 0; i < WS_SUBS; i++) {
    uint64_t m;
    TS_CHECK(ts_child_recv(self, &m) == 0 && m == MSG_GO);
    ts_sample s;
    ts_sample_fill(&s, (uint64_t)c->order[i], (uint64_t)i);
    TS_CHECK_ERR(shmbus_publisher_send_copy(pubs[c->order[i]], &s, sizeof s), 0);
  }
  uint64_t m;
  TS_CHECK(ts_child_recv(self, &m) == 0 && m == MSG_FINISH);
  for (int i = 0; i < WS_SUBS; i++) shmbus_publisher_close(pubs[i]);
  shmbus_node_close(node);
  return 0;
}

static void *trigger_later(void *arg) {
  ts_sleep_ns(20 * MS);
  shmbus_waitset_trigger(arg);
  return NULL;
}

static void test_waitset_32_services(void **state) {
  ts_env *env = *state;
  ts_alarm(120);
  shmbus_node *node = ts_node(env);
  ws_cfg c;
  memset(&c, 0, sizeof c);
  ts_env_copy(&c.env, env);
  c.opts = ts_opts();
  for (int i = 0; i < WS_SUBS; i++) {
    ts_service_name(c.services[i], sizeof c.services[i], "ws");
    c.order[i] = (i * 13 + 5) % WS_SUBS; /* a permutation: 13 is prime to 32 */
    c.index[i] = i;
  }
  shmbus_waitset *ws = NULL;
  ts_assert_ok(shmbus_waitset_open(node, &ws));
  shmbus_os_handle os = -1;
  ts_assert_ok(shmbus_waitset_os_handle(ws, &os));
#ifdef _WIN32
  /* A HANDLE, not a descriptor. */
  ts_assert_err(shmbus_waitset_fd(ws), SHMBUS_ERR_UNSUPPORTED);
  assert_true(os != 0 && os != -1);
#else
  /* On POSIX the OS handle is the descriptor. */
  assert_true(shmbus_waitset_fd(ws) >= 0);
  assert_int_equal(os, shmbus_waitset_fd(ws));
#endif
  ts_assert_err(shmbus_waitset_os_handle(NULL, &os), SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_waitset_os_handle(ws, NULL), SHMBUS_ERR_INVAL);
  shmbus_subscriber *subs[WS_SUBS];
  for (int i = 0; i < WS_SUBS; i++) {
    ts_assert_ok(shmbus_subscriber_open(node, c.services[i], &c.opts, &subs[i]));
    ts_assert_ok(shmbus_waitset_attach(ws, subs[i], &c.index[i]));
  }
  /* Attached: its own wait is refused, a second attach too. */
  ts_assert_err(shmbus_subscriber_wait(subs[0], 0), SHMBUS_ERR_BUSY);
  ts_assert_err(shmbus_waitset_attach(ws, subs[0], NULL), SHMBUS_ERR_BUSY);
  shmbus_wait_event ev[WS_SUBS + 1];
  ts_assert_err(shmbus_waitset_wait(ws, 0, ev, 0), SHMBUS_ERR_INVAL);

  /* Nothing yet: a timed wait times out. */
  uint64_t t0 = now_ns();
  ts_assert_err(shmbus_waitset_wait(ws, (int64_t)(30 * MS), ev, WS_SUBS), SHMBUS_ERR_TIMEDOUT);
  assert_true(now_ns() - t0 >= 30 * MS);

  /* The user trigger, from another thread. */
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, trigger_later, ws), 0);
  int n = shmbus_waitset_wait(ws, (int64_t)(2000 * MS), ev, WS_SUBS);
  pthread_join(th, NULL);
  assert_int_equal(n, 1);
  assert_int_equal(ev[0].what, SHMBUS_WAIT_TRIGGER);
  assert_null(ev[0].sub);

  ts_child child;
  ts_child_start(&child, ws_publisher, &c);
  ts_parent_expect(&child, MSG_READY);
  for (int i = 0; i < WS_SUBS; i++) {
    int k = c.order[i];
    /* The OS handle's protocol (shmbus.h): a look that finds nothing arms
     * the set; then sleep on the handle (poll, or WaitForMultipleObjects
     * beside another handle), and look again once it is signalled. */
    ts_assert_err(shmbus_waitset_wait(ws, 0, ev, WS_SUBS), SHMBUS_ERR_TIMEDOUT);
    ts_parent_send(&child, MSG_GO);
    if (ts_os_handle_ready(os, 2000) != 1) fail_msg("publish %d: the OS handle stayed quiet", i);
    n = shmbus_waitset_wait(ws, 0, ev, WS_SUBS);
    if (n != 1)
      fail_msg("publish %d on subscriber %d: wait gave %s (%d events)", i, k,
               n < 0 ? shmbus_err_name(n) : "OK", n);
    assert_int_equal(ev[0].what, SHMBUS_WAIT_DATA);
    assert_ptr_equal(ev[0].sub, subs[k]);
    assert_int_equal(*(int *)ev[0].user, k);
    shmbus_sample s;
    ts_assert_ok(shmbus_subscriber_take(subs[k], &s));
    assert_int_equal(((const ts_sample *)s.payload)->seq, (uint64_t)i);
    ts_assert_ok(shmbus_subscriber_release(subs[k], &s));
  }
  print_message(
      "wait set over %d subscribers of %d services: each publish reported the one "
      "ready subscriber\n",
      WS_SUBS, WS_SUBS);
  ts_parent_send(&child, MSG_FINISH);
  ts_assert_child_ok(&child);
  /* Every publisher closed: each subscriber reports it once. */
  int gone = 0;
  for (int tries = 0; tries < 100 && gone < WS_SUBS; tries++) {
    n = shmbus_waitset_wait(ws, (int64_t)(1000 * MS), ev, WS_SUBS);
    if (n == SHMBUS_ERR_TIMEDOUT) break;
    assert_true(n > 0);
    for (int e = 0; e < n; e++) {
      assert_int_equal(ev[e].what, SHMBUS_WAIT_NO_PUBLISHER);
      gone++;
    }
  }
  assert_int_equal(gone, WS_SUBS);
  ts_assert_ok(shmbus_waitset_detach(ws, subs[3]));
  ts_assert_err(shmbus_waitset_detach(ws, subs[3]), SHMBUS_ERR_NOT_FOUND);
  ts_assert_err(shmbus_subscriber_wait(subs[3], 0), SHMBUS_ERR_TIMEDOUT);
  for (int i = 0; i < WS_SUBS; i++) shmbus_subscriber_close(subs[i]); /* detaches */
  shmbus_waitset_close(ws);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
  ts_alarm(0);
}

/* One subscriber always has data; the others must still be reported. */
static void test_waitset_no_starvation(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  enum { N = 4 };
  shmbus_publisher *pubs[N];
  shmbus_subscriber *subs[N];
  shmbus_waitset *ws = NULL;
  ts_assert_ok(shmbus_waitset_open(node, &ws));
  int idx[N];
  for (int i = 0; i < N; i++) {
    char name[64];
    ts_service_name(name, sizeof name, "fair");
    ts_assert_ok(shmbus_subscriber_open(node, name, &o, &subs[i]));
    ts_assert_ok(shmbus_publisher_open(node, name, &o, &pubs[i]));
    idx[i] = i;
    ts_assert_ok(shmbus_waitset_attach(ws, subs[i], &idx[i]));
  }
  int reported[N] = {0};
  ts_sample s;
  ts_sample_fill(&s, 0, 0);
  for (int i = 1; i < N; i++) ts_assert_ok(shmbus_publisher_send_copy(pubs[i], &s, sizeof s));
  for (int round = 0; round < 4 * N; round++) {
    /* Subscriber 0 is refilled before every wait. */
    ts_assert_ok(shmbus_publisher_send_copy(pubs[0], &s, sizeof s));
    shmbus_wait_event ev;
    assert_int_equal(shmbus_waitset_wait(ws, (int64_t)(1000 * MS), &ev, 1), 1);
    int k = *(int *)ev.user;
    reported[k]++;
    shmbus_sample got;
    ts_assert_ok(shmbus_subscriber_take(subs[k], &got));
    ts_assert_ok(shmbus_subscriber_release(subs[k], &got));
    if (k != 0) ts_assert_ok(shmbus_publisher_send_copy(pubs[k], &s, sizeof s));
  }
  for (int i = 0; i < N; i++) {
    print_message("subscriber %d reported %d times of %d\n", i, reported[i], 4 * N);
    assert_true(reported[i] >= 3);
  }
  shmbus_waitset_close(ws);
  for (int i = 0; i < N; i++) {
    shmbus_subscriber_close(subs[i]);
    shmbus_publisher_close(pubs[i]);
  }
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* A subscriber that holds its maximum is neither reported nor armed: the
 * descriptor stays quiet while publishes arrive, until it releases. */
static void test_waitset_hold_limit(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.max_held = 1;
  shmbus_publisher *pub = NULL;
  shmbus_subscriber *sub = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, "hold-limit", &o, &sub));
  ts_assert_ok(shmbus_publisher_open(node, "hold-limit", &o, &pub));
  shmbus_waitset *ws = NULL;
  ts_assert_ok(shmbus_waitset_open(node, &ws));
  ts_assert_ok(shmbus_waitset_attach(ws, sub, NULL));
  ts_sample s;
  ts_sample_fill(&s, 1, 0);
  ts_assert_ok(shmbus_publisher_send_copy(pub, &s, sizeof s));
  shmbus_wait_event ev;
  assert_int_equal(shmbus_waitset_wait(ws, 0, &ev, 1), 1);
  shmbus_sample held;
  ts_assert_ok(shmbus_subscriber_take(sub, &held));
  ts_assert_err(shmbus_waitset_wait(ws, 0, &ev, 1), SHMBUS_ERR_TIMEDOUT);
  for (uint64_t i = 1; i <= 3; i++) {
    ts_sample_fill(&s, 1, i);
    ts_assert_ok(shmbus_publisher_send_copy(pub, &s, sizeof s));
  }
  ts_assert_err(shmbus_waitset_wait(ws, 0, &ev, 1), SHMBUS_ERR_TIMEDOUT);
  shmbus_os_handle os = -1;
  ts_assert_ok(shmbus_waitset_os_handle(ws, &os));
  assert_int_equal(ts_os_handle_ready(os, 0), 0); /* nobody was woken for nothing */
  ts_assert_ok(shmbus_subscriber_release(sub, &held));
  assert_int_equal(shmbus_waitset_wait(ws, 0, &ev, 1), 1);
  assert_int_equal(ev.what, SHMBUS_WAIT_DATA);
  shmbus_waitset_close(ws);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

#ifdef _WIN32
/* epoll is Linux's: on Windows the OS handle's protocol is tested in
 * test_waitset_32_services (WaitForMultipleObjects) and
 * test_waitset_hold_limit. */
static void test_waitset_fd_epoll(void **state) {
  (void)state;
  print_message("skipped: epoll is Linux's (Windows: test_waitset_32_services)\n");
  skip();
}
static void test_waitset_fd_publisher_killed(void **state) {
  (void)state;
  print_message("skipped: epoll is Linux's (Windows: test_waitset_32_services)\n");
  skip();
}
#else
/* An epoll loop over a wait set with one subscriber on c->service. */
static int epoll_loop_open(shmbus_node *node, const wait_cfg *c, shmbus_subscriber **sub,
                           shmbus_waitset **ws) {
  ts_assert_ok(shmbus_subscriber_open(node, c->service, &c->opts, sub));
  ts_assert_ok(shmbus_waitset_open(node, ws));
  ts_assert_ok(shmbus_waitset_attach(*ws, *sub, NULL));
  int ep = epoll_create1(EPOLL_CLOEXEC);
  assert_true(ep >= 0);
  struct epoll_event e = {.events = EPOLLIN};
  assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, shmbus_waitset_fd(*ws), &e), 0);
  return ep;
}

static void epoll_loop_close(int ep, shmbus_subscriber *sub, shmbus_waitset *ws) {
  close(ep);
  shmbus_waitset_close(ws);
  shmbus_subscriber_close(sub);
}

/* The descriptor in an epoll loop, with the publisher in another process. */
static void test_waitset_fd_epoll(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  wait_cfg c;
  cfg_init(&c, env, "epoll");
  shmbus_subscriber *sub = NULL;
  shmbus_waitset *ws = NULL;
  int ep = epoll_loop_open(node, &c, &sub, &ws);

  shmbus_wait_event ev[2];
  struct epoll_event out;
  /* The protocol: look (which arms) until nothing, then sleep on the fd. */
  ts_assert_err(shmbus_waitset_wait(ws, 0, ev, 2), SHMBUS_ERR_TIMEDOUT);
  assert_int_equal(epoll_wait(ep, &out, 1, 50), 0); /* quiet: no publisher yet */
  /* The publisher's open wakes the sleeping loop, whose next look maps the
   * publisher: only then does the publisher's update count us (it waits for
   * that before it sends MSG_READY). */
  ts_child child;
  ts_child_start(&child, one_sample_publisher, &c);
  assert_int_equal(epoll_wait(ep, &out, 1, 2000), 1);
  ts_assert_err(shmbus_waitset_wait(ws, 0, ev, 2), SHMBUS_ERR_TIMEDOUT);
  ts_parent_expect(&child, MSG_READY);
  assert_int_equal(epoll_wait(ep, &out, 1, 50), 0); /* quiet while nothing is published */
  ts_parent_send(&child, MSG_GO);
  assert_int_equal(epoll_wait(ep, &out, 1, 2000), 1);
  assert_int_equal(shmbus_waitset_wait(ws, 0, ev, 2), 1);
  assert_int_equal(ev[0].what, SHMBUS_WAIT_DATA);
  shmbus_sample s;
  ts_assert_ok(shmbus_subscriber_take(sub, &s));
  ts_assert_ok(shmbus_subscriber_release(sub, &s));
  ts_assert_err(shmbus_waitset_wait(ws, 0, ev, 2), SHMBUS_ERR_TIMEDOUT);
  ts_parent_expect(&child, MSG_DONE);
  ts_parent_send(&child, MSG_FINISH);
  ts_assert_child_ok(&child);
  /* The close woke the descriptor. */
  assert_int_equal(epoll_wait(ep, &out, 1, 2000), 1);
  assert_int_equal(shmbus_waitset_wait(ws, 0, ev, 2), 1);
  assert_int_equal(ev[0].what, SHMBUS_WAIT_NO_PUBLISHER);
  epoll_loop_close(ep, sub, ws);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* Through the descriptor, a killed publisher is reported too: the looks
 * the loop makes (at least every 100 ms) reap it. A subscriber of another
 * domain cannot join (its publishers would address the wrong notifier). */
static void test_waitset_fd_publisher_killed(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  wait_cfg c;
  cfg_init(&c, env, "epoll-kill");
  shmbus_subscriber *sub = NULL;
  shmbus_waitset *ws = NULL;
  int ep = epoll_loop_open(node, &c, &sub, &ws);

  ts_env other = *env;
  ts_unique_domain(other.domain);
  shmbus_node *node2 = ts_node(&other);
  shmbus_subscriber *foreign = NULL;
  ts_assert_ok(shmbus_subscriber_open(node2, c.service, &c.opts, &foreign));
  ts_assert_err(shmbus_waitset_attach(ws, foreign, NULL), SHMBUS_ERR_INVAL);
  shmbus_subscriber_close(foreign);
  shmbus_node_close(node2);
  ts_assert_env_clean(&other);

  ts_child child;
  ts_child_start(&child, one_sample_publisher, &c);
  unsigned round = 0;
  while (shmbus_subscriber_publishers(sub) < 1) ts_backoff(&round);
  ts_parent_expect(&child, MSG_READY);
  ts_child_kill(&child);
  assert_int_equal(ts_child_wait(&child), TS_KILLED);
  uint64_t t0 = now_ns();
  int what = 0;
  while (what == 0 && now_ns() - t0 < 3000 * MS) {
    shmbus_wait_event ev;
    int n = shmbus_waitset_wait(ws, 0, &ev, 1);
    if (n == 1) {
      what = ev.what;
      break;
    }
    ts_assert_err(n, SHMBUS_ERR_TIMEDOUT);
    struct epoll_event out;
    epoll_wait(ep, &out, 1, 100);
  }
  print_message("descriptor loop: killed publisher reported after %.1f ms\n",
                (double)(now_ns() - t0) / 1e6);
  assert_int_equal(what, SHMBUS_WAIT_NO_PUBLISHER);
  epoll_loop_close(ep, sub, ws);
  shmbus_domain_cleanup(node);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

#endif /* _WIN32 */

/* ---- backpressure: SHMBUS_OVERFLOW_BLOCK ---------------------------------- */

/* Under wine a blocked publish and its wake-up cost tens of microseconds:
 * a million samples took 48-100 s there, past the publisher child's 60 s
 * watchdog (TS_CHILD_ALARM_S); 200000 keep 10 pauses of the subscriber. */
static uint64_t block_samples(void) {
#ifdef _WIN32
  if (ts_under_wine()) return 200000;
#endif
  return 1000000;
}

static shmbus_service_opts block_opts(void) {
  shmbus_service_opts o = ts_opts();
  o.overflow = SHMBUS_OVERFLOW_BLOCK;
  o.queue_depth = 64;
  return o;
}

/* Publishes c->n samples with sequence numbers; every publish must succeed. */
static int block_publisher(ts_child *self, void *arg) {
  wait_cfg *c = arg;
  shmbus_node *node = ts_child_node(&c->env);
  TS_CHECK(node != NULL);
  shmbus_publisher *pub = NULL;
  TS_CHECK_ERR(shmbus_publisher_open(node, c->service, &c->opts, &pub), 0);
  unsigned round = 0;
  while (shmbus_publisher_update(pub) < 1) ts_backoff(&round);
  TS_CHECK(ts_child_send(self, MSG_READY) == 0);
  for (uint64_t i = 0; i < c->n; i++) {
    ts_sample *p;
    TS_CHECK_ERR(shmbus_publisher_loan(pub, 1, (void **)&p), 0);
    ts_sample_fill(p, 3, i);
    TS_CHECK_ERR(shmbus_publisher_publish(pub, p), 0);
  }
  TS_CHECK(ts_child_send(self, MSG_DONE) == 0);
  uint64_t m;
  TS_CHECK(ts_child_recv(self, &m) == 0 && m == MSG_FINISH);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  return 0;
}

static void test_block_slow_subscriber(void **state) {
  ts_env *env = *state;
  ts_alarm(300);
  shmbus_node *node = ts_node(env);
  wait_cfg c;
  cfg_init(&c, env, "block");
  c.opts = block_opts();
  c.n = block_samples();
  shmbus_subscriber *sub = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, c.service, &c.opts, &sub));
  ts_child child;
  ts_child_start(&child, block_publisher, &c);
  unsigned round = 0;
  while (shmbus_subscriber_publishers(sub) < 1) ts_backoff(&round);
  ts_parent_expect(&child, MSG_READY);
  uint64_t t0 = now_ns(), pauses = 0;
  for (uint64_t i = 0; i < c.n; i++) {
    shmbus_sample s;
    int r = take_waiting(sub, &s, STALL_NS);
    if (r) fail_msg("sample %llu: %s", (unsigned long long)i, shmbus_err_name(r));
    const ts_sample *p = s.payload;
    if (p->seq != i || s.sequence != i || !ts_sample_valid(p))
      fail_msg("sample %llu: got sequence %llu", (unsigned long long)i,
               (unsigned long long)s.sequence);
    ts_assert_ok(shmbus_subscriber_release(sub, &s));
    /* Deliberately slow: a pause every 20000 samples fills the queue. */
    if (i % 20000 == 19999) {
      ts_sleep_ns(2 * MS);
      pauses++;
    }
  }
  assert_int_equal(shmbus_subscriber_lost(sub), 0);
  print_message(
      "BLOCK policy: %llu samples, every sequence number in order, 0 lost, %llu "
      "pauses, %.2f s\n",
      (unsigned long long)c.n, (unsigned long long)pauses, (double)(now_ns() - t0) / 1e9);
  ts_parent_expect(&child, MSG_DONE);
  ts_parent_send(&child, MSG_FINISH);
  ts_assert_child_ok(&child);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
  ts_alarm(0);
}

/* Opens a subscriber and never takes (until it is killed or told to go). */
static int idle_subscriber(ts_child *self, void *arg) {
  wait_cfg *c = arg;
  shmbus_node *node = ts_child_node(&c->env);
  TS_CHECK(node != NULL);
  shmbus_subscriber *sub = NULL;
  TS_CHECK_ERR(shmbus_subscriber_open(node, c->service, &c->opts, &sub), 0);
  unsigned round = 0;
  while (shmbus_subscriber_publishers(sub) < 1) ts_backoff(&round);
  TS_CHECK(ts_child_send(self, MSG_READY) == 0);
  uint64_t m;
  TS_CHECK(ts_child_recv(self, &m) == 0 && m == MSG_FINISH);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  return 0;
}

/* Fills the idle subscriber's queue; returns the loan that no longer fits. */
static void *kill_later(void *arg) {
  ts_sleep_ns(100 * MS);
  ts_child_kill(arg);
  return NULL;
}

static void *fill_queue(shmbus_publisher *pub, uint32_t depth) {
  for (uint32_t i = 0; i < depth; i++) {
    void *p;
    ts_assert_ok(shmbus_publisher_loan(pub, 1, &p));
    ts_sample_fill(p, 1, i);
    ts_assert_ok(shmbus_publisher_publish(pub, p));
  }
  void *p;
  ts_assert_ok(shmbus_publisher_loan(pub, 1, &p));
  ts_sample_fill(p, 1, depth);
  return p;
}

static void test_block_subscriber_killed(void **state) {
  ts_env *env = *state;
  ts_alarm(60);
  shmbus_node *node = ts_node(env);
  wait_cfg c;
  cfg_init(&c, env, "block-kill");
  c.opts = block_opts();
  c.opts.queue_depth = 8;
  shmbus_publisher *pub = NULL;
  ts_assert_ok(shmbus_publisher_open(node, c.service, &c.opts, &pub));
  ts_assert_err(shmbus_publisher_set_block_timeout(NULL, 0), SHMBUS_ERR_INVAL);
  ts_child child;
  ts_child_start(&child, idle_subscriber, &c);
  unsigned round = 0;
  while (shmbus_publisher_update(pub) < 1) ts_backoff(&round);
  ts_parent_expect(&child, MSG_READY);
  void *p = fill_queue(pub, 8);

  /* A bounded wait on a live subscriber that does not take: TIMEDOUT, and
   * the loan is still ours. */
  ts_assert_ok(shmbus_publisher_set_block_timeout(pub, (int64_t)(50 * MS)));
  uint64_t t0 = now_ns();
  ts_assert_err(shmbus_publisher_publish(pub, p), SHMBUS_ERR_TIMEDOUT);
  uint64_t took = now_ns() - t0;
  assert_true(took >= 50 * MS && took < 1000 * MS);
  ts_assert_ok(shmbus_publisher_set_block_timeout(pub, 0));
  ts_assert_err(shmbus_publisher_publish(pub, p), SHMBUS_ERR_TIMEDOUT);
  /* A failed publish_bytes leaves the loan whole; send_copy gives its own
   * loan back (more failures than max_loans, never LOAN_LIMIT). */
  ts_assert_err(shmbus_publisher_publish_bytes(pub, p, 8), SHMBUS_ERR_TIMEDOUT);
  ts_sample copy;
  ts_sample_fill(&copy, 1, 99);
  for (int i = 0; i < 3 * 4; i++)
    ts_assert_err(shmbus_publisher_send_copy(pub, &copy, sizeof copy), SHMBUS_ERR_TIMEDOUT);

  /* Forever, and the subscriber is killed meanwhile. */
  ts_assert_ok(shmbus_publisher_set_block_timeout(pub, -1));
  pthread_t killer;
  assert_int_equal(pthread_create(&killer, NULL, kill_later, &child), 0);
  t0 = now_ns();
  ts_assert_err(shmbus_publisher_publish(pub, p), SHMBUS_ERR_PEER_DEAD);
  took = now_ns() - t0;
  print_message(
      "publish blocked on a subscriber killed after 100 ms returned PEER_DEAD "
      "after %.1f ms\n",
      (double)took / 1e6);
  assert_true(took < 2000 * MS);
  pthread_join(killer, NULL);
  assert_int_equal(ts_child_wait(&child), TS_KILLED);
  /* The dead subscriber is gone; the same loan publishes now. */
  ts_assert_ok(shmbus_publisher_publish(pub, p));
  assert_int_equal(shmbus_publisher_update(pub), 0);
  shmbus_publisher_close(pub);
  shmbus_domain_cleanup(node);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
  ts_alarm(0);
}

static void *finish_later(void *arg) {
  ts_sleep_ns(50 * MS);
  ts_send(((ts_child *)arg)->down[1], MSG_FINISH);
  return NULL;
}

/* A subscriber that closes releases a publisher blocked on it. */
static void test_block_subscriber_closes(void **state) {
  ts_env *env = *state;
  ts_alarm(60);
  shmbus_node *node = ts_node(env);
  wait_cfg c;
  cfg_init(&c, env, "block-close");
  c.opts = block_opts();
  c.opts.queue_depth = 4;
  shmbus_publisher *pub = NULL;
  ts_assert_ok(shmbus_publisher_open(node, c.service, &c.opts, &pub));
  ts_child child;
  ts_child_start(&child, idle_subscriber, &c);
  unsigned round = 0;
  while (shmbus_publisher_update(pub) < 1) ts_backoff(&round);
  ts_parent_expect(&child, MSG_READY);
  void *p = fill_queue(pub, 4);
  pthread_t th;
  uint64_t t0 = now_ns();
  assert_int_equal(pthread_create(&th, NULL, finish_later, &child), 0);
  ts_assert_ok(shmbus_publisher_publish(pub, p));
  uint64_t took = now_ns() - t0;
  pthread_join(th, NULL);
  print_message(
      "publish blocked on a subscriber told to close after 50 ms returned after "
      "%.1f ms\n",
      (double)took / 1e6);
  assert_true(took >= 40 * MS && took < 2000 * MS);
  ts_assert_child_ok(&child);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
  ts_alarm(0);
}

/* A late joiner under BLOCK gets the history replayed into its queue; a
 * publish that finds that queue full waits (here: TIMEDOUT at once) instead
 * of losing the sample, and goes through once the subscriber took one. */
static void test_block_history_late_joiner(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = block_opts();
  o.queue_depth = 4;
  o.history = 4;
  shmbus_publisher *pub = NULL;
  ts_assert_ok(shmbus_publisher_open(node, "block-history", &o, &pub));
  ts_assert_ok(shmbus_publisher_set_block_timeout(pub, 0));
  ts_sample s;
  for (uint64_t i = 0; i < 4; i++) {
    ts_sample_fill(&s, 2, i);
    ts_assert_ok(shmbus_publisher_send_copy(pub, &s, sizeof s)); /* nobody yet: history */
  }
  shmbus_subscriber *sub = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, "block-history", &o, &sub));
  void *p;
  ts_assert_ok(shmbus_publisher_loan(pub, 1, &p));
  ts_sample_fill(p, 2, 4);
  ts_assert_err(shmbus_publisher_publish(pub, p), SHMBUS_ERR_TIMEDOUT); /* 4 replayed */
  shmbus_sample got;
  ts_assert_ok(shmbus_subscriber_take(sub, &got));
  assert_int_equal(got.sequence, 0);
  ts_assert_ok(shmbus_subscriber_release(sub, &got));
  ts_assert_ok(shmbus_publisher_publish(pub, p));
  for (uint64_t i = 1; i <= 4; i++) {
    ts_assert_ok(shmbus_subscriber_take(sub, &got));
    assert_int_equal(got.sequence, i);
    assert_true(ts_sample_valid(got.payload));
    ts_assert_ok(shmbus_subscriber_release(sub, &got));
  }
  assert_int_equal(shmbus_subscriber_lost(sub), 0);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

#define SHM_TEST(f) cmocka_unit_test_setup_teardown(f, ts_setup_shm, ts_teardown)
#define DIR_TEST(f) cmocka_unit_test_setup_teardown(f, ts_setup_dir, ts_teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      SHM_TEST(test_wait_timeout),
      SHM_TEST(test_wait_publisher_closes),
      SHM_TEST(test_wait_publisher_killed),
      SHM_TEST(test_no_lost_wakeup),
      SHM_TEST(test_waitset_32_services),
      SHM_TEST(test_waitset_no_starvation),
      SHM_TEST(test_waitset_hold_limit),
      SHM_TEST(test_waitset_fd_epoll),
      SHM_TEST(test_waitset_fd_publisher_killed),
      SHM_TEST(test_block_slow_subscriber),
      SHM_TEST(test_block_subscriber_killed),
      SHM_TEST(test_block_subscriber_closes),
      SHM_TEST(test_block_history_late_joiner),
      DIR_TEST(test_wait_publisher_closes),
      DIR_TEST(test_waitset_fd_epoll),
  };
  return cmocka_run_group_tests_name("wait", tests, NULL, NULL) ? 1 : 0;
}

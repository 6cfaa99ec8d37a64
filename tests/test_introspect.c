/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Introspection (shmbus.h, "Introspection"): shmbus_service_list and
 * shmbus_service_describe against ports of this process and of killed
 * children, on both backends:
 *   - the list shows the services opened, with their types and limits;
 *   - describe shows every port with its node (a killed child's as dead),
 *     and per connection what was published, delivered, lost (drop-oldest
 *     and drop-newest overflows), queued and held, matching the API;
 *   - it leaves no trace: every segment is byte for byte the same after
 *     it, the service's users are unchanged, nothing is reaped, and the
 *     last close removes the service as before;
 *   - forged configurations and connection words are reported as errors
 *     or as corrupt, never followed (also in a child process).
 *
 * The same program serves the CLI test (tests/cli_introspect.sh):
 *   test_introspect --serve DIR DOMAIN READY STOP
 *   test_introspect --serve-victim DIR DOMAIN READY
 * keep services open in the directory backend (see serve()).
 */
#include <errno.h>
#include <string.h>

#include "support.h"
/* Internals: the layout, to forge words where the library keeps them. */
#include "service.h"

#ifndef _WIN32
#include <sys/stat.h>
#endif

/* ---- helpers ------------------------------------------------------------ */

/* Whether shmbus_service_list can find the environment's services: not on
 * Windows' default backend, whose sections the OS cannot enumerate
 * (shmbus.h; describe finds them by name). */
static int list_enumerates(const ts_env *env) {
#ifdef _WIN32
  return env->backend == SHMBUS_BACKEND_DIR;
#else
  (void)env;
  return 1;
#endif
}

/* The object names of publisher `pub_id`'s segments (names.c). */
static void publisher_object(char *out, size_t cap, const char *domain, const char *service,
                             uint64_t pub_id, int data) {
  snprintf(out, cap, "shmbus.%s.%016llx.p%llx.%c", domain, (unsigned long long)ts_fnv1a64(service),
           (unsigned long long)pub_id, data ? 'd' : 'c');
}

static void send_samples(shmbus_publisher *pub, uint64_t from, uint64_t n) {
  for (uint64_t i = from; i < from + n; i++) {
    ts_sample x;
    ts_sample_fill(&x, 7, i);
    ts_assert_ok(shmbus_publisher_send_copy(pub, &x, sizeof x));
  }
}

/* Until the publisher counts `n` subscribers that mapped it. */
static void connect_all(shmbus_publisher *pub, shmbus_subscriber **subs, int n) {
  unsigned round = 0;
  while (shmbus_publisher_update(pub) < n) {
    for (int i = 0; i < n; i++) assert_true(shmbus_subscriber_publishers(subs[i]) >= 0);
    ts_backoff(&round);
  }
}

typedef struct described {
  shmbus_service_info info;
  shmbus_port_info ports[16];
  size_t nports;
  shmbus_connection_info conns[32];
  size_t nconns;
} described;

static int describe(shmbus_node *node, const char *service, described *d) {
  memset(d, 0, sizeof *d);
  return shmbus_service_describe(node, service, &d->info, d->ports, 16, &d->nports, d->conns, 32,
                                 &d->nconns);
}

static const shmbus_port_info *find_port(const described *d, uint32_t kind, uint64_t id) {
  for (size_t i = 0; i < d->nports && i < 16; i++)
    if (d->ports[i].kind == kind && d->ports[i].id == id) return &d->ports[i];
  return NULL;
}

static const shmbus_connection_info *find_conn(const described *d, uint64_t pub, uint64_t sub) {
  for (size_t i = 0; i < d->nconns && i < 32; i++)
    if (d->conns[i].publisher_id == pub && d->conns[i].subscriber_id == sub) return &d->conns[i];
  return NULL;
}

static const shmbus_service_info *find_service(const shmbus_service_info *s, size_t n,
                                               const char *name) {
  for (size_t i = 0; i < n; i++)
    if (s[i].error == 0 && strcmp(s[i].name, name) == 0) return &s[i];
  return NULL;
}

/* ---- the list ------------------------------------------------------------ */

static void test_list_shows_services(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  size_t count = 99;
  shmbus_service_info out[4];
  ts_assert_ok(shmbus_service_list(node, out, 4, &count));
  assert_int_equal(count, 0);

  shmbus_service_opts a = ts_opts();
  a.max_elements = 3;
  a.max_publishers = 2;
  a.max_subscribers = 3;
  a.queue_depth = 5;
  a.history = 2;
  a.max_loans = 3;
  a.max_held = 2;
  a.overflow = SHMBUS_OVERFLOW_DROP_NEWEST;
  shmbus_publisher *pub = NULL;
  ts_assert_ok(shmbus_publisher_open(node, "intro/a", &a, &pub));
  shmbus_subscriber *sub = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, "intro/a", &a, &sub));
  shmbus_service_opts b = SHMBUS_SERVICE_OPTS_INIT;
  b.type.name = "intro/u16";
  b.type.size = 2;
  b.type.align = 2;
  shmbus_subscriber *sub_b = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, "intro/\"b\"\\", &b, &sub_b));

  ts_assert_ok(shmbus_service_list(node, out, 4, &count));
  if (!list_enumerates(env)) {
    assert_int_equal(count, 0);
    shmbus_subscriber_close(sub_b);
    shmbus_subscriber_close(sub);
    shmbus_publisher_close(pub);
    shmbus_node_close(node);
    print_message("skipped: this backend's objects cannot be listed (shmbus.h)\n");
    skip();
  }
  assert_int_equal(count, 2);
  const shmbus_service_info *s = find_service(out, count, "intro/a");
  assert_non_null(s);
  assert_int_equal(s->error, 0);
  assert_string_equal(s->type_name, TS_TYPE_NAME);
  assert_int_equal(s->type_size, sizeof(ts_sample));
  assert_int_equal(s->type_align, _Alignof(ts_sample));
  assert_int_equal(s->max_elements, 3);
  assert_int_equal(s->max_publishers, 2);
  assert_int_equal(s->max_subscribers, 3);
  assert_int_equal(s->queue_depth, 5);
  assert_int_equal(s->history, 2);
  assert_int_equal(s->max_loans, 3);
  assert_int_equal(s->max_held, 2);
  assert_int_equal(s->overflow, SHMBUS_OVERFLOW_DROP_NEWEST);
  assert_int_equal(s->publishers, 1);
  assert_int_equal(s->subscribers, 1);
  assert_int_equal(s->users, 2);
  assert_int_equal(s->removing, 0);
  assert_int_equal(s->creator_node_id, shmbus_node_id(node));
  assert_int_equal(s->max_payload, 3 * sizeof(ts_sample));
  /* The pool's worst case: subscribers x (depth + held) + history + loans. */
  assert_int_equal(s->chunks, 3 * (5 + 2) + 2 + 3);
  assert_true(s->service_bytes > 0 && s->data_bytes > s->chunks * sizeof(ts_sample));
  assert_true(s->control_bytes > 0);
  char object[128];
  ts_service_object_name(object, sizeof object, env->domain, "intro/a");
  assert_string_equal(s->object, object);

  /* Defaults applied, and a name with quotes and a backslash. */
  s = find_service(out, count, "intro/\"b\"\\");
  assert_non_null(s);
  assert_string_equal(s->type_name, "intro/u16");
  assert_int_equal(s->type_size, 2);
  assert_int_equal(s->max_publishers, 4);
  assert_int_equal(s->max_subscribers, 8);
  assert_int_equal(s->queue_depth, 16);
  assert_int_equal(s->overflow, SHMBUS_OVERFLOW_DROP_OLDEST);
  assert_int_equal(s->publishers, 0);
  assert_int_equal(s->subscribers, 1);

  /* More than fit: counted; counting only. */
  ts_assert_ok(shmbus_service_list(node, out, 1, &count));
  assert_int_equal(count, 2);
  ts_assert_ok(shmbus_service_list(node, NULL, 0, &count));
  assert_int_equal(count, 2);
  ts_assert_err(shmbus_service_list(NULL, out, 4, &count), SHMBUS_ERR_INVAL);
  assert_int_equal(count, 0);
  ts_assert_err(shmbus_service_list(node, NULL, 1, &count), SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_service_list(node, out, 4, NULL), SHMBUS_ERR_INVAL);

  shmbus_subscriber_close(sub_b);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  ts_assert_ok(shmbus_service_list(node, out, 4, &count));
  assert_int_equal(count, 0);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* ---- describe -------------------------------------------------------------- */

static void test_describe_arguments(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  described d;
  size_t np = 9, nc = 9;
  ts_assert_err(describe(node, "nothing-here", &d), SHMBUS_ERR_NOT_FOUND);
  ts_assert_err(shmbus_service_describe(node, "bad name", &d.info, NULL, 0, &np, NULL, 0, &nc),
                SHMBUS_ERR_NAME);
  assert_int_equal(np + nc, 0);
  ts_assert_err(shmbus_service_describe(NULL, "x", &d.info, NULL, 0, NULL, NULL, 0, NULL),
                SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_service_describe(node, NULL, &d.info, NULL, 0, NULL, NULL, 0, NULL),
                SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_service_describe(node, "x", NULL, NULL, 0, NULL, NULL, 0, NULL),
                SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_service_describe(node, "x", &d.info, NULL, 1, NULL, NULL, 0, NULL),
                SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus_service_describe(node, "x", &d.info, NULL, 0, NULL, NULL, 1, NULL),
                SHMBUS_ERR_INVAL);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* One publisher, two subscribers, depth 4 with drop-oldest: one
 * subscriber takes 3 and releases 2 of them, then 7 more are published;
 * the other takes nothing. */
static void test_describe_counts_drop_oldest(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.queue_depth = 4;
  o.max_held = 2;
  o.max_subscribers = 3;
  shmbus_publisher *pub = NULL;
  shmbus_subscriber *subs[2] = {NULL, NULL};
  ts_assert_ok(shmbus_subscriber_open(node, "intro/c", &o, &subs[0]));
  ts_assert_ok(shmbus_publisher_open(node, "intro/c", &o, &pub));
  ts_assert_ok(shmbus_subscriber_open(node, "intro/c", &o, &subs[1]));
  connect_all(pub, subs, 2);

  described d;
  ts_assert_ok(describe(node, "intro/c", &d));
  assert_int_equal(d.nports, 3);
  assert_int_equal(d.nconns, 2);
  assert_int_equal(d.ports[0].kind, SHMBUS_PORT_PUBLISHER); /* publishers first */
  const shmbus_port_info *p = find_port(&d, SHMBUS_PORT_PUBLISHER, shmbus_publisher_id(pub));
  assert_non_null(p);
  assert_int_equal(p->published, 0);
  assert_int_equal(p->last_timestamp_ns, 0);
  assert_int_equal(p->loans, 0);
  void *loaned[2];
  for (int i = 0; i < 2; i++) ts_assert_ok(shmbus_publisher_loan(pub, 1, &loaned[i]));
  ts_assert_ok(describe(node, "intro/c", &d));
  p = find_port(&d, SHMBUS_PORT_PUBLISHER, shmbus_publisher_id(pub));
  assert_int_equal(p->loans, 2);
  ts_assert_ok(shmbus_publisher_discard(pub, loaned[0]));
  ts_assert_ok(shmbus_publisher_discard(pub, loaned[1]));

  send_samples(pub, 0, 3);
  shmbus_sample held, s;
  ts_assert_ok(shmbus_subscriber_take(subs[0], &held));
  for (int i = 0; i < 2; i++) {
    ts_assert_ok(shmbus_subscriber_take(subs[0], &s));
    ts_assert_ok(shmbus_subscriber_release(subs[0], &s));
  }
  uint64_t before = ts_now_ns();
  send_samples(pub, 3, 7);
  /* Collects what was released: in_flight is then exact. */
  assert_int_equal(shmbus_publisher_update(pub), 2);

  ts_assert_ok(describe(node, "intro/c", &d));
  assert_int_equal(d.nports, 3);
  assert_int_equal(d.nconns, 2);
  assert_string_equal(d.info.name, "intro/c");
  assert_int_equal(d.info.queue_depth, 4);
  assert_int_equal(d.info.publishers, 1);
  assert_int_equal(d.info.subscribers, 2);
  assert_int_equal(d.info.users, 3);
  p = find_port(&d, SHMBUS_PORT_PUBLISHER, shmbus_publisher_id(pub));
  assert_non_null(p);
  assert_int_equal(p->state, SHMBUS_PORT_READY);
  assert_int_equal(p->alive, 1);
  assert_int_equal(p->node_id, shmbus_node_id(node));
  assert_int_equal(p->error, 0);
  assert_int_equal(p->published, 10);
  assert_int_equal(p->loans, 0);
  assert_true(p->last_timestamp_ns >= before && p->last_timestamp_ns <= shmbus_now_ns());
  uint32_t sub_index[2];
  for (int i = 0; i < 2; i++) {
    const shmbus_port_info *q =
        find_port(&d, SHMBUS_PORT_SUBSCRIBER, shmbus_subscriber_id(subs[i]));
    assert_non_null(q);
    assert_int_equal(q->state, SHMBUS_PORT_READY);
    assert_int_equal(q->alive, 1);
    assert_int_equal(q->node_id, shmbus_node_id(node));
    assert_int_equal(q->flags, 0);
    sub_index[i] = (uint32_t)(q - d.ports);
  }

  const shmbus_connection_info *c =
      find_conn(&d, shmbus_publisher_id(pub), shmbus_subscriber_id(subs[0]));
  assert_non_null(c);
  assert_int_equal(c->state, SHMBUS_CONNECTION_BOUND);
  assert_int_equal(c->publisher, (uint32_t)(p - d.ports));
  assert_int_equal(c->subscriber, sub_index[0]);
  assert_int_equal(c->subscriber_slot, d.ports[sub_index[0]].slot);
  assert_int_equal(c->published, 10);
  assert_int_equal(c->delivered, 3);
  assert_int_equal(c->lost, 3); /* 7 more into a queue of 4 */
  assert_int_equal(c->lost, shmbus_subscriber_lost(subs[0]));
  assert_int_equal(c->released, 2);
  assert_int_equal(c->queued, 4);
  assert_int_equal(c->held, 1);
  assert_int_equal(c->in_flight, 5);
  assert_int_equal(c->publisher_waiting, 0);

  c = find_conn(&d, shmbus_publisher_id(pub), shmbus_subscriber_id(subs[1]));
  assert_non_null(c);
  assert_int_equal(c->state, SHMBUS_CONNECTION_BOUND);
  assert_int_equal(c->published, 10);
  assert_int_equal(c->delivered, 0);
  assert_int_equal(c->lost, 6);
  assert_int_equal(c->lost, shmbus_subscriber_lost(subs[1]));
  assert_int_equal(c->queued, 4);
  assert_int_equal(c->held, 0);
  assert_int_equal(c->in_flight, 4);

  /* Taking moves them; the queue's order is the publisher's. */
  ts_assert_ok(shmbus_subscriber_take(subs[1], &s));
  assert_int_equal(s.sequence, 6);
  ts_assert_ok(describe(node, "intro/c", &d));
  c = find_conn(&d, shmbus_publisher_id(pub), shmbus_subscriber_id(subs[1]));
  assert_non_null(c);
  assert_int_equal(c->delivered, 1);
  assert_int_equal(c->queued, 3);
  assert_int_equal(c->held, 1);
  ts_assert_ok(shmbus_subscriber_release(subs[1], &s));

  /* Caps smaller than the counts: counted, only what fits written. */
  shmbus_service_info info;
  shmbus_port_info one;
  size_t np = 0, nc = 0;
  ts_assert_ok(shmbus_service_describe(node, "intro/c", &info, &one, 1, &np, NULL, 0, &nc));
  assert_int_equal(np, 3);
  assert_int_equal(nc, 2);
  assert_int_equal(one.kind, SHMBUS_PORT_PUBLISHER);
  ts_assert_ok(shmbus_service_describe(node, "intro/c", &info, NULL, 0, NULL, NULL, 0, NULL));
  assert_int_equal(info.queue_depth, 4);

  ts_assert_ok(shmbus_subscriber_release(subs[0], &held));
  shmbus_subscriber_close(subs[0]);
  shmbus_subscriber_close(subs[1]);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* Drop-newest: the queue keeps the first 4, the rest is lost before it. */
static void test_describe_counts_drop_newest(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.queue_depth = 4;
  o.overflow = SHMBUS_OVERFLOW_DROP_NEWEST;
  shmbus_publisher *pub = NULL;
  shmbus_subscriber *sub = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, "intro/n", &o, &sub));
  ts_assert_ok(shmbus_publisher_open(node, "intro/n", &o, &pub));
  connect_all(pub, &sub, 1);
  send_samples(pub, 0, 9);
  shmbus_sample s;
  ts_assert_ok(shmbus_subscriber_take(sub, &s));
  described d;
  ts_assert_ok(describe(node, "intro/n", &d));
  const shmbus_connection_info *c =
      find_conn(&d, shmbus_publisher_id(pub), shmbus_subscriber_id(sub));
  assert_non_null(c);
  assert_int_equal(c->state, SHMBUS_CONNECTION_BOUND);
  assert_int_equal(c->published, 9);
  assert_int_equal(c->lost, 5);
  assert_int_equal(c->lost, shmbus_subscriber_lost(sub));
  assert_int_equal(c->delivered, 1);
  assert_int_equal(c->queued, 3);
  assert_int_equal(c->held, 1);
  const shmbus_port_info *p = find_port(&d, SHMBUS_PORT_PUBLISHER, shmbus_publisher_id(pub));
  assert_non_null(p);
  assert_int_equal(p->published, 9); /* its 5 lost samples went through chunks too */
  ts_assert_ok(shmbus_subscriber_release(sub, &s));
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* A subscriber that waits (sleeps) in another thread would do; a wait set
 * shows without threads: its subscriber's slot names the notifier. */
static void test_describe_waitset_flag(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  shmbus_subscriber *sub = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, "intro/w", &o, &sub));
  shmbus_waitset *ws = NULL;
  int r = shmbus_waitset_open(node, &ws);
  if (r == SHMBUS_ERR_UNSUPPORTED) {
    shmbus_subscriber_close(sub);
    shmbus_node_close(node);
    print_message("skipped: no wait sets here\n");
    skip();
  }
  ts_assert_ok(r);
  ts_assert_ok(shmbus_waitset_attach(ws, sub, NULL));
  described d;
  ts_assert_ok(describe(node, "intro/w", &d));
  assert_int_equal(d.nports, 1);
  assert_int_equal(d.ports[0].kind, SHMBUS_PORT_SUBSCRIBER);
  assert_true(d.ports[0].flags & SHMBUS_PORT_WAITSET);
  shmbus_waitset_close(ws);
  ts_assert_ok(describe(node, "intro/w", &d));
  assert_false(d.ports[0].flags & SHMBUS_PORT_WAITSET);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* ---- a killed child: dead, shown, not reaped ------------------------------------ */

enum { MSG_READY = 1, MSG_NODE };

/* Opens a subscriber and a publisher, publishes 3 samples, says its node
 * id and waits to be killed. */
static int doomed_child(ts_child *self, void *arg) {
  const ts_env *env = arg;
  shmbus_service_opts o = ts_opts();
  shmbus_node *node = ts_child_node(env);
  TS_CHECK(node != NULL);
  shmbus_subscriber *sub = NULL;
  TS_CHECK_ERR(shmbus_subscriber_open(node, "intro/dead", &o, &sub), 0);
  shmbus_publisher *pub = NULL;
  TS_CHECK_ERR(shmbus_publisher_open(node, "intro/dead", &o, &pub), 0);
  for (uint64_t i = 0; i < 3; i++) {
    ts_sample x;
    ts_sample_fill(&x, 3, i);
    TS_CHECK_ERR(shmbus_publisher_send_copy(pub, &x, sizeof x), 0);
  }
  TS_CHECK(ts_child_send(self, MSG_READY) == 0);
  TS_CHECK(ts_child_send(self, shmbus_node_id(node)) == 0);
  TS_CHECK(ts_child_send(self, shmbus_publisher_id(pub)) == 0);
  TS_CHECK(ts_child_send(self, shmbus_subscriber_id(sub)) == 0);
  uint64_t m;
  TS_CHECK(ts_child_recv(self, &m) == 0); /* never answered */
  return 0;
}

static void test_describe_killed_child(void **state) {
  ts_env *env = *state;
  ts_alarm(60);
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  shmbus_subscriber *mine = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, "intro/dead", &o, &mine));
  ts_child child;
  ts_child_start(&child, doomed_child, env);
  ts_parent_expect(&child, MSG_READY);
  uint64_t child_node = 0, pub_id = 0, sub_id = 0;
  ts_parent_recv(&child, &child_node);
  ts_parent_recv(&child, &pub_id);
  ts_parent_recv(&child, &sub_id);
  /* Mapped by us before the child dies (Windows removes a section with
   * its last handle: this one is ours then). */
  unsigned round = 0;
  while (shmbus_subscriber_publishers(mine) < 1) ts_backoff(&round);

  described d;
  ts_assert_ok(describe(node, "intro/dead", &d));
  const shmbus_port_info *p = find_port(&d, SHMBUS_PORT_PUBLISHER, pub_id);
  assert_non_null(p);
  assert_int_equal(p->alive, 1);
  assert_int_equal(p->node_id, child_node);
  ts_child_kill(&child);
  assert_int_equal(ts_child_wait(&child), TS_KILLED);

  /* Twice: looking reaps nothing. */
  for (int look = 0; look < 2; look++) {
    ts_assert_ok(describe(node, "intro/dead", &d));
    assert_int_equal(d.nports, 3);
    assert_int_equal(d.info.publishers, 1);
    assert_int_equal(d.info.subscribers, 2);
    p = find_port(&d, SHMBUS_PORT_PUBLISHER, pub_id);
    assert_non_null(p);
    assert_int_equal(p->state, SHMBUS_PORT_READY);
    assert_int_equal(p->alive, 0);
    assert_int_equal(p->node_id, child_node);
    assert_int_equal(p->error, 0);
    assert_int_equal(p->published, 3);
    const shmbus_port_info *q = find_port(&d, SHMBUS_PORT_SUBSCRIBER, sub_id);
    assert_non_null(q);
    assert_int_equal(q->alive, 0);
    q = find_port(&d, SHMBUS_PORT_SUBSCRIBER, shmbus_subscriber_id(mine));
    assert_non_null(q);
    assert_int_equal(q->alive, 1);
    /* Bound by the publisher at its open; mapped by us, not by the
     * child's subscriber. */
    const shmbus_connection_info *c = find_conn(&d, pub_id, shmbus_subscriber_id(mine));
    assert_non_null(c);
    assert_int_equal(c->state, SHMBUS_CONNECTION_BOUND);
    assert_int_equal(c->published, 3);
    assert_int_equal(c->queued, 3);
    assert_int_equal(c->delivered, 0);
    c = find_conn(&d, pub_id, sub_id);
    assert_non_null(c);
    assert_int_equal(c->state, SHMBUS_CONNECTION_BINDING);
    assert_int_equal(c->queued, 3);
  }
  /* A dead publisher's queued samples are still there for us. */
  shmbus_sample s;
  ts_assert_ok(shmbus_subscriber_take(mine, &s));
  assert_int_equal(s.sequence, 0);
  ts_assert_ok(describe(node, "intro/dead", &d));
  const shmbus_connection_info *c = find_conn(&d, pub_id, shmbus_subscriber_id(mine));
  assert_non_null(c);
  assert_int_equal(c->state, SHMBUS_CONNECTION_BOUND);
  assert_int_equal(c->delivered, 1);
  assert_int_equal(c->held, 1);
  assert_int_equal(c->queued, 2);
  ts_assert_ok(shmbus_subscriber_release(mine, &s));

  /* The library's own sweep reaps them; then they are gone. */
  assert_true(shmbus_subscriber_publishers(mine) >= 0);
  ts_assert_ok(describe(node, "intro/dead", &d));
  assert_int_equal(d.nports, 1);
  assert_int_equal(d.ports[0].id, shmbus_subscriber_id(mine));
  shmbus_subscriber_close(mine);
  assert_true(shmbus_domain_cleanup(node) >= ts_dead_tokens_stay());
  shmbus_node_close(node);
  ts_assert_env_clean(env);
  ts_alarm(0);
}

/* ---- no trace -------------------------------------------------------------------- */

typedef struct snapshot {
  void *copy[3];
  size_t size[3];
  char name[3][128];
} snapshot;

/* Copies of the service segment and the publisher's two segments. */
static void snap(const ts_env *env, const char *service, uint64_t pub_id, snapshot *s) {
  ts_service_object_name(s->name[0], sizeof s->name[0], env->domain, service);
  publisher_object(s->name[1], sizeof s->name[1], env->domain, service, pub_id, 1);
  publisher_object(s->name[2], sizeof s->name[2], env->domain, service, pub_id, 0);
  for (int i = 0; i < 3; i++) {
    void *p = ts_map_object(env->dir, s->name[i], &s->size[i]);
    assert_non_null(p);
    s->copy[i] = malloc(s->size[i]);
    assert_non_null(s->copy[i]);
    memcpy(s->copy[i], p, s->size[i]);
    ts_unmap_object(p, s->size[i]);
  }
}

static void assert_same(const ts_env *env, const snapshot *a) {
  for (int i = 0; i < 3; i++) {
    size_t size = 0;
    void *p = ts_map_object(env->dir, a->name[i], &size);
    assert_non_null(p);
    assert_int_equal(size, a->size[i]);
    if (memcmp(p, a->copy[i], size) != 0) fail_msg("%s changed", a->name[i]);
    ts_unmap_object(p, size);
  }
}

static void snap_free(snapshot *s) {
  for (int i = 0; i < 3; i++) free(s->copy[i]);
}

static void test_no_trace(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.queue_depth = 4;
  shmbus_publisher *pub = NULL;
  shmbus_subscriber *sub = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, "intro/t", &o, &sub));
  ts_assert_ok(shmbus_publisher_open(node, "intro/t", &o, &pub));
  connect_all(pub, &sub, 1);
  send_samples(pub, 0, 6);
  shmbus_sample s;
  ts_assert_ok(shmbus_subscriber_take(sub, &s));

  size_t objects = ts_objects(env->domain, env->dir), tokens = ts_tokens(env->domain, env->dir);
  snapshot before;
  snap(env, "intro/t", shmbus_publisher_id(pub), &before);
  for (int i = 0; i < 20; i++) {
    described d;
    ts_assert_ok(describe(node, "intro/t", &d));
    assert_int_equal(d.info.users, 2);
    shmbus_service_info out[2];
    size_t n = 0;
    ts_assert_ok(shmbus_service_list(node, out, 2, &n));
    assert_int_equal(n, list_enumerates(env) ? 1 : 0);
    if (n) assert_int_equal(out[0].users, 2);
    ts_assert_err(describe(node, "intro/none", &d), SHMBUS_ERR_NOT_FOUND);
  }
  /* Every byte of every segment as it was, no object more or less. */
  assert_same(env, &before);
  snap_free(&before);
  assert_int_equal(ts_objects(env->domain, env->dir), objects);
  assert_int_equal(ts_tokens(env->domain, env->dir), tokens);

  /* The ports go on as if nothing happened, and the last close removes
   * the service: introspection counted no use of it. */
  ts_assert_ok(shmbus_subscriber_release(sub, &s));
  send_samples(pub, 6, 1);
  ts_assert_ok(shmbus_subscriber_take(sub, &s));
  assert_int_equal(s.sequence, 3); /* 3..5 and 6 queued: 2 was taken */
  ts_assert_ok(shmbus_subscriber_release(sub, &s));
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  ts_assert_objects(env, 0);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* ---- forged memory ------------------------------------------------------------------ */

static shmbus__service_config *map_config(const ts_env *env, const char *service, size_t *size) {
  char name[128];
  ts_service_object_name(name, sizeof name, env->domain, service);
  uint8_t *p = ts_map_object(env->dir, name, size);
  return p ? (shmbus__service_config *)(p + offsetof(shmbus__service_seg, cfg)) : NULL;
}

static void unmap_config(shmbus__service_config *cfg, size_t size) {
  ts_unmap_object((uint8_t *)cfg - offsetof(shmbus__service_seg, cfg), size);
}

/* The list reports `service`'s object with `err`, describe fails with it. */
static int reported_as(shmbus_node *node, const ts_env *env, const char *service, int err) {
  shmbus_service_info out[4];
  size_t n = 0;
  char object[128];
  ts_service_object_name(object, sizeof object, env->domain, service);
  if (shmbus_service_list(node, out, 4, &n) != 0) return 0;
  if (!list_enumerates(env) && n != 0) return 0;
  if (list_enumerates(env) &&
      (n != 1 || out[0].error != err || strcmp(out[0].object, object) != 0 || out[0].name[0] != 0))
    return 0;
  described d;
  return describe(node, service, &d) == err && d.nports == 0 && d.info.queue_depth == 0;
}

/* What a peer writes into the configuration: each forgery is refused, and
 * the original is read again once restored. Usable in a child. */
static int check_forged_configs(shmbus_node *node, const ts_env *env, const char *service) {
  size_t size;
  shmbus__service_config *cfg = map_config(env, service, &size);
  if (cfg == NULL) return 0;
  shmbus__service_config orig = *cfg;
  int ok = 1;
  cfg->queue_depth = 0x7fffffff; /* out of range */
  ok &= reported_as(node, env, service, SHMBUS_ERR_CORRUPT);
  cfg->queue_depth = orig.queue_depth;
  cfg->max_subscribers = SHMBUS_MAX_PORTS; /* in range, but larger than the segment */
  ok &= reported_as(node, env, service, SHMBUS_ERR_CORRUPT);
  cfg->max_subscribers = orig.max_subscribers;
  memset(cfg->name, 'A', sizeof cfg->name); /* not terminated */
  ok &= reported_as(node, env, service, SHMBUS_ERR_CORRUPT);
  memcpy(cfg->name, orig.name, sizeof cfg->name);
  cfg->type_name[0] = '\n'; /* not printable */
  ok &= reported_as(node, env, service, SHMBUS_ERR_CORRUPT);
  cfg->type_name[0] = orig.type_name[0];
  memcpy(cfg->name, "intro/other", sizeof "intro/other"); /* not its object's name */
  ok &= reported_as(node, env, service, SHMBUS_ERR_CORRUPT);
  *cfg = orig;
  shmbus_service_info out[2];
  size_t n = 0;
  if (list_enumerates(env))
    ok &= shmbus_service_list(node, out, 2, &n) == 0 && n == 1 && out[0].error == 0 &&
          strcmp(out[0].name, service) == 0;
  described d;
  ok &= describe(node, service, &d) == 0 && strcmp(d.info.name, service) == 0;
  unmap_config(cfg, size);
  return ok;
}

static int forged_child(ts_child *self, void *arg) {
  (void)self;
  const ts_env *env = arg;
  shmbus_node *node = ts_child_node(env);
  TS_CHECK(node != NULL);
  TS_CHECK(check_forged_configs(node, env, "intro/f"));
  shmbus_node_close(node);
  return 0;
}

static void test_forged_config(void **state) {
  ts_env *env = *state;
  ts_alarm(60);
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  shmbus_publisher *pub = NULL;
  ts_assert_ok(shmbus_publisher_open(node, "intro/f", &o, &pub));
  assert_true(check_forged_configs(node, env, "intro/f"));
  ts_child child;
  ts_child_start(&child, forged_child, env);
  ts_assert_child_ok(&child);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
  ts_alarm(0);
}

/* Objects under a service's name that no library made: listed with an
 * error, refused by describe, never read past what they are. */
static void test_forged_objects(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  char name[128];
  ts_service_object_name(name, sizeof name, env->domain, "intro/zero");
  /* A page of zeros: a creator that never finished. */
  assert_int_equal(ts_create_object(env->dir, name, 4096), 0);
  assert_true(reported_as(node, env, "intro/zero", SHMBUS_ERR_NOT_READY));
  /* A foreign header. */
  size_t size;
  uint8_t *p = ts_map_object(env->dir, name, &size);
  assert_non_null(p);
  memset(p, 0xa5, size);
  assert_true(reported_as(node, env, "intro/zero", SHMBUS_ERR_CORRUPT));
  /* Our header, initialised, but a page too short for any service. */
  shmbus__seg_header *h = (shmbus__seg_header *)p;
  memset(p, 0, size);
  shmbus__seg_header_init(h, SHMBUS__SEG_SERVICE, size, 1, 1);
  shmbus__seg_header_publish(h);
  assert_true(reported_as(node, env, "intro/zero", SHMBUS_ERR_CORRUPT));
  h->layout_version = SHMBUS__LAYOUT_VERSION + 1;
  assert_true(reported_as(node, env, "intro/zero", SHMBUS_ERR_VERSION));
  ts_unmap_object(p, size);
  assert_int_equal(ts_unlink_object(env->dir, name), 0);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* A peer writes a connection's words: describe says corrupt, clamps, and
 * reads nothing out of bounds. */
static void test_forged_connection(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.queue_depth = 4;
  o.max_held = 2;
  shmbus_publisher *pub = NULL;
  shmbus_subscriber *sub = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, "intro/x", &o, &sub));
  ts_assert_ok(shmbus_publisher_open(node, "intro/x", &o, &pub));
  connect_all(pub, &sub, 1);
  send_samples(pub, 0, 2);
  described d;
  ts_assert_ok(describe(node, "intro/x", &d));
  assert_int_equal(d.nconns, 1);
  uint32_t k = d.conns[0].subscriber_slot;

  /* The layout this machine computes for the service. */
  shmbus__service_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.element_size = sizeof(ts_sample);
  cfg.element_align = _Alignof(ts_sample);
  cfg.max_elements = 1;
  cfg.max_publishers = 4;
  cfg.max_subscribers = 8;
  cfg.queue_depth = 4;
  cfg.max_loans = 4;
  cfg.max_held = 2;
  cfg.overflow = SHMBUS_OVERFLOW_DROP_OLDEST;
  shmbus__layout l;
  ts_assert_ok(shmbus__layout_compute(&cfg, &l));
  char name[128];
  publisher_object(name, sizeof name, env->domain, "intro/x", shmbus_publisher_id(pub), 0);
  size_t size;
  uint8_t *ctl = ts_map_object(env->dir, name, &size);
  assert_non_null(ctl);
  assert_int_equal(size, l.control_size);
  shmbus__conn *conn = (shmbus__conn *)(ctl + shmbus__layout_conn_offset(&l, k));
  shmbus__conn saved = *conn;
  shmbus__pub_stats *stats = (shmbus__pub_stats *)(ctl + SHMBUS__PUB_STATS_OFFSET);
  stats->loans = UINT32_MAX; /* more loans than max_loans: clamped */
  ts_assert_ok(describe(node, "intro/x", &d));
  assert_int_equal(d.ports[0].error, SHMBUS_ERR_CORRUPT);
  assert_int_equal(d.ports[0].loans, 4);
  stats->loans = 0;
  uint64_t *slots = (uint64_t *)((uint8_t *)conn + l.sub_ring_offset);
  uint64_t saved_slots[4];
  memcpy(saved_slots, slots, sizeof saved_slots);

  conn->lost = UINT64_MAX; /* more evictions than positions */
  ts_assert_ok(describe(node, "intro/x", &d));
  assert_int_equal(d.conns[0].state, SHMBUS_CONNECTION_CORRUPT);
  assert_int_equal(d.conns[0].delivered, 0);
  assert_true(d.conns[0].queued <= 4 && d.conns[0].held <= 2);
  conn->lost = saved.lost;
  conn->done_tail = 1000; /* released more than delivered: clamped */
  conn->done_head = 0;
  ts_assert_ok(describe(node, "intro/x", &d));
  assert_int_equal(d.conns[0].state, SHMBUS_CONNECTION_CORRUPT); /* 1000 to collect > ring */
  assert_int_equal(d.conns[0].held, 0);
  conn->done_tail = saved.done_tail;
  conn->done_head = saved.done_head;
  /* Far ahead, at a position whose 32-bit tag no slot holds. */
  conn->head = (UINT64_C(1) << 40) + 100;
  ts_assert_ok(describe(node, "intro/x", &d));
  assert_int_equal(d.conns[0].queued, 0);
  assert_int_equal(d.conns[0].held, 2); /* "took" 2^40: clamped to max_held */
  assert_int_equal(d.conns[0].state, SHMBUS_CONNECTION_CORRUPT);
  conn->head = saved.head;
  /* Every slot "filled" with a chunk index far out of the pool. */
  for (uint64_t i = 0; i < 4; i++) slots[i] = ((i + 1) << 32) | 0xffffffffu;
  ts_assert_ok(describe(node, "intro/x", &d));
  assert_int_equal(d.conns[0].queued, 4);
  assert_int_equal(d.ports[0].published, 2); /* the publisher's count, not the forged slots */
  memcpy(slots, saved_slots, sizeof saved_slots);
  conn->sub_id = 12345; /* bound to somebody else */
  ts_assert_ok(describe(node, "intro/x", &d));
  assert_int_equal(d.conns[0].state, SHMBUS_CONNECTION_STALE);
  assert_int_equal(d.conns[0].subscriber_id, 12345);
  *conn = saved;
  ts_assert_ok(describe(node, "intro/x", &d));
  assert_int_equal(d.conns[0].state, SHMBUS_CONNECTION_BOUND);
  assert_int_equal(d.conns[0].queued, 2);
  ts_unmap_object(ctl, size);

#ifndef _WIN32
  /* A data segment cut short (POSIX: Windows cannot shrink a mapped
   * section): the publisher's error, not a fault. */
  char path[1024];
  publisher_object(name, sizeof name, env->domain, "intro/x", shmbus_publisher_id(pub), 1);
  ts_object_path(path, sizeof path, env->dir, name);
  assert_int_equal(truncate(path, 1000), 0); /* shorter than data_size */
  ts_assert_ok(describe(node, "intro/x", &d));
  assert_int_equal(d.ports[0].error, SHMBUS_ERR_CORRUPT);
  assert_int_equal(d.ports[0].published, 2); /* the control segment is intact */
  assert_int_equal(d.nconns, 1);
#endif
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* ---- the CLI test's helpers ------------------------------------------------------------ */

/* The service of tests/cli_introspect.sh: quotes and a backslash in its
 * name, for the JSON escaper. */
#define CLI_SERVICE "cli/\"q\"\\s"

static int serve_fail(const char *what, int r) {
  fprintf(stderr, "test_introspect --serve: %s: %s\n", what, shmbus_err_name(r));
  return 1;
}

static int file_exists(const char *path) {
  FILE *f = fopen(path, "r");
  if (f) fclose(f);
  return f != NULL;
}

static int write_ready(const char *path, shmbus_node *node) {
  FILE *f = fopen(path, "w");
  if (f == NULL) return 0;
  /* The sample type's alignment is 4 on i386, 8 elsewhere. */
  fprintf(f, "%016llx %u\n", (unsigned long long)shmbus_node_id(node),
          (unsigned)_Alignof(ts_sample));
  return fclose(f) == 0;
}

/* --serve DIR DOMAIN READY STOP: a publisher and a subscriber of
 * CLI_SERVICE (depth 4, drop-oldest, max_held 2): 3 published, 1 taken and
 * held, 5 more published (3 evicted), 1 loaned. Writes its node id and the sample
 * type's alignment to READY, then
 * waits for STOP to exist, closes everything and exits 0. */
static int serve(char **argv) {
  const char *dir = argv[0], *domain = argv[1], *ready = argv[2], *stop = argv[3];
  ts_alarm(60);
  shmbus_node_opts no = SHMBUS_NODE_OPTS_INIT;
  no.domain = domain;
  no.backend = SHMBUS_BACKEND_DIR;
  no.root = dir;
  shmbus_node *node;
  int r = shmbus_node_open(&no, &node);
  if (r) return serve_fail("node", r);
  shmbus_service_opts o = ts_opts();
  o.queue_depth = 4;
  o.max_held = 2;
  shmbus_subscriber *sub = NULL;
  shmbus_publisher *pub = NULL;
  if ((r = shmbus_subscriber_open(node, CLI_SERVICE, &o, &sub)) != 0) return serve_fail("sub", r);
  if ((r = shmbus_publisher_open(node, CLI_SERVICE, &o, &pub)) != 0) return serve_fail("pub", r);
  unsigned round = 0;
  while (shmbus_publisher_update(pub) < 1) {
    shmbus_subscriber_publishers(sub);
    ts_backoff(&round);
  }
  shmbus_sample held;
  for (uint64_t i = 0; i < 8; i++) {
    ts_sample x;
    ts_sample_fill(&x, 1, i);
    if ((r = shmbus_publisher_send_copy(pub, &x, sizeof x)) != 0) return serve_fail("send", r);
    if (i == 2 && (r = shmbus_subscriber_take(sub, &held)) != 0) return serve_fail("take", r);
  }
  void *loan; /* one loan out, for `info` to show */
  if ((r = shmbus_publisher_loan(pub, 1, &loan)) != 0) return serve_fail("loan", r);
  if (!write_ready(ready, node)) return serve_fail("ready file", SHMBUS_ERR_IO);
  while (!file_exists(stop)) ts_sleep_ns(10 * 1000 * 1000);
  shmbus_subscriber_release(sub, &held);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  return 0;
}

/* --serve-victim DIR DOMAIN READY: a subscriber of CLI_SERVICE that writes
 * its node id (and the alignment) to READY and waits to be killed. */
static int serve_victim(char **argv) {
  ts_alarm(60);
  shmbus_node_opts no = SHMBUS_NODE_OPTS_INIT;
  no.domain = argv[1];
  no.backend = SHMBUS_BACKEND_DIR;
  no.root = argv[0];
  shmbus_node *node;
  int r = shmbus_node_open(&no, &node);
  if (r) return serve_fail("node", r);
  shmbus_service_opts o = ts_opts();
  shmbus_subscriber *sub = NULL;
  if ((r = shmbus_subscriber_open(node, CLI_SERVICE, &o, &sub)) != 0) return serve_fail("sub", r);
  if (!write_ready(argv[2], node)) return serve_fail("ready file", SHMBUS_ERR_IO);
  for (;;) ts_sleep_ns(100 * 1000 * 1000);
}

#define SHM_TEST(f) cmocka_unit_test_setup_teardown(f, ts_setup_shm, ts_teardown)
#define DIR_TEST(f) cmocka_unit_test_setup_teardown(f, ts_setup_dir, ts_teardown)

int main(int argc, char **argv) {
  if (argc == 6 && strcmp(argv[1], "--serve") == 0) return serve(argv + 2);
  if (argc == 5 && strcmp(argv[1], "--serve-victim") == 0) return serve_victim(argv + 2);
  const struct CMUnitTest tests[] = {
      SHM_TEST(test_list_shows_services),
      SHM_TEST(test_describe_arguments),
      SHM_TEST(test_describe_counts_drop_oldest),
      SHM_TEST(test_describe_counts_drop_newest),
      SHM_TEST(test_describe_waitset_flag),
      SHM_TEST(test_describe_killed_child),
      SHM_TEST(test_no_trace),
      SHM_TEST(test_forged_config),
      SHM_TEST(test_forged_objects),
      SHM_TEST(test_forged_connection),
      DIR_TEST(test_list_shows_services),
      DIR_TEST(test_describe_counts_drop_oldest),
      DIR_TEST(test_describe_killed_child),
      DIR_TEST(test_no_trace),
      DIR_TEST(test_forged_config),
      DIR_TEST(test_forged_objects),
      DIR_TEST(test_forged_connection),
  };
  return cmocka_run_group_tests_name("introspect", tests, NULL, NULL) ? 1 : 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A peer truncates a live service's segments (docs/security.md, "Truncation"):
 * the service segment, the publisher's data segment and its control segment,
 * to zero and to one page (the header stays valid), while a publisher and a
 * subscriber work and while the subscriber holds a sample. On the landed code
 * before the fix each case died by SIGBUS. Now: no signal, the held sample
 * stays readable (zeros where its memory went), release says CORRUPT when it
 * did, the ports report CORRUPT (or see nothing) instead of delivering zeros,
 * and closing, cleanup and a fresh service afterwards work.
 *
 * Each case runs in a forked child, so that a death by a signal is reported
 * as such (the parent checks the wait status) and the cmocka runner goes on.
 */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

#include "service.h" /* object names of a publisher's segments */

enum { KIND_SERVICE, KIND_DATA, KIND_CONTROL };

typedef struct trunc_case {
  const ts_env *env;
  int kind;
  int keep_page; /* truncate to one page (the header stays), else to zero */
} trunc_case;

static void object_of(const ts_env *env, const char *service, shmbus_publisher *pub, int kind,
                      char *out, size_t cap) {
  if (kind == KIND_SERVICE) {
    ts_service_object_name(out, cap, env->domain, service);
    return;
  }
  char name[SHMBUS__OBJECT_NAME_MAX];
  shmbus__publisher_object_name(name, env->domain, shmbus__hash64(service),
                                shmbus_publisher_id(pub), kind == KIND_DATA);
  snprintf(out, cap, "%s", name);
}

/* ftruncate(2) of the object under `name`, as any process of the user may. */
static int truncate_object(const ts_env *env, const char *name, int keep_page) {
  char path[2048];
  ts_object_path(path, sizeof path, env->dir, name);
  int fd = open(path, O_RDWR);
  if (fd < 0) return -1;
  int r = ftruncate(fd, keep_page ? (off_t)sysconf(_SC_PAGESIZE) : 0);
  close(fd);
  return r;
}

/* Reads every byte of a payload (the access that faults on a truncated
 * mapping); returns their sum so that the reads are not optimised away. */
static unsigned touch(const void *p, size_t n) {
  const volatile unsigned char *b = p;
  unsigned sum = 0;
  for (size_t i = 0; i < n; i++) sum += b[i];
  return sum;
}

static int run_case(ts_child *self, void *arg) {
  (void)self;
  const trunc_case *tc = arg;
  char service[64];
  ts_service_name(service, sizeof service, "trunc");
  shmbus_node *node = ts_child_node(tc->env);
  TS_CHECK(node != NULL);
  shmbus_service_opts o = ts_opts();
  o.queue_depth = 8;
  shmbus_publisher *pub = NULL;
  shmbus_subscriber *sub = NULL;
  TS_CHECK_ERR(shmbus_publisher_open(node, service, &o, &pub), 0);
  TS_CHECK_ERR(shmbus_subscriber_open(node, service, &o, &sub), 0);
  ts_sample s;
  for (uint64_t seq = 0; seq < 4; seq++) {
    ts_sample_fill(&s, 1, seq);
    TS_CHECK_ERR(shmbus_publisher_send_copy(pub, &s, sizeof s), 0);
  }
  shmbus_sample held;
  TS_CHECK_ERR(shmbus_subscriber_take(sub, &held), 0);
  TS_CHECK(ts_sample_valid(held.payload));

  char name[SHMBUS__OBJECT_NAME_MAX];
  object_of(tc->env, service, pub, tc->kind, name, sizeof name);
  TS_CHECK(truncate_object(tc->env, name, tc->keep_page) == 0);

  /* The held sample: readable whatever happened to its memory. */
  (void)touch(held.payload, held.bytes);
  int released = shmbus_subscriber_release(sub, &held);
  TS_CHECK(released == 0 || released == SHMBUS_ERR_CORRUPT);
  if (tc->kind == KIND_DATA && !tc->keep_page) TS_CHECK_ERR(released, SHMBUS_ERR_CORRUPT);

  /* Both ports keep going: every call returns a code, none delivers a
   * sample from zero pages (a zero payload fails ts_sample_valid). */
  int corrupt = 0, delivered = 0;
  for (uint64_t seq = 4; seq < 40; seq++) {
    void *p = NULL;
    int r = shmbus_publisher_loan(pub, 1, &p);
    if (r == 0) {
      ts_sample_fill(p, 1, seq);
      r = shmbus_publisher_publish(pub, p);
      if (r) shmbus_publisher_discard(pub, p);
    }
    TS_CHECK(r == 0 || r == SHMBUS_ERR_CORRUPT);
    corrupt += r == SHMBUS_ERR_CORRUPT;
    shmbus_sample got;
    while ((r = shmbus_subscriber_take(sub, &got)) == 0) {
      TS_CHECK(ts_sample_valid(got.payload));
      delivered++;
      r = shmbus_subscriber_release(sub, &got);
      TS_CHECK(r == 0 || r == SHMBUS_ERR_CORRUPT);
    }
    TS_CHECK(r == SHMBUS_ERR_EMPTY || r == SHMBUS_ERR_CORRUPT);
    corrupt += r == SHMBUS_ERR_CORRUPT;
  }
  /* Nothing is left to deliver through: somebody must say so. (A data
   * segment cut to one page may still hold every chunk in use: the pool
   * reuses the chunk released last.) */
  if (!(tc->keep_page && tc->kind == KIND_DATA)) TS_CHECK(corrupt > 0);
  fprintf(stderr, "kind %d, %s: %d CORRUPT reports, %d samples delivered after\n", tc->kind,
          tc->keep_page ? "one page kept" : "to zero", corrupt, delivered);

  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  /* What the truncated objects left (the peer broke their accounting). */
  TS_CHECK(shmbus_domain_cleanup(node) >= 0);
  ts_remove_leftovers(tc->env->domain, tc->env->dir);

  /* The service name works again. */
  TS_CHECK_ERR(shmbus_publisher_open(node, service, &o, &pub), 0);
  TS_CHECK_ERR(shmbus_subscriber_open(node, service, &o, &sub), 0);
  ts_sample_fill(&s, 2, 0);
  TS_CHECK_ERR(shmbus_publisher_send_copy(pub, &s, sizeof s), 0);
  shmbus_sample got;
  TS_CHECK_ERR(shmbus_subscriber_take(sub, &got), 0);
  TS_CHECK(ts_sample_valid(got.payload));
  TS_CHECK_ERR(shmbus_subscriber_release(sub, &got), 0);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  return 0;
}

static void truncate_each(const ts_env *env, int keep_page) {
  for (int kind = KIND_SERVICE; kind <= KIND_CONTROL; kind++) {
    trunc_case tc = {env, kind, keep_page};
    ts_child c;
    ts_child_start(&c, run_case, &tc);
    int r = ts_child_wait(&c);
    if (r != 0)
      print_error("segment kind %d truncated (one page kept: %d): child %s %d\n", kind, keep_page,
                  r > 128 ? "died by signal" : "failed with", r > 128 ? r - 128 : r);
    assert_int_equal(r, 0);
  }
}

static void test_truncate_to_zero(void **state) { truncate_each(*state, 0); }
static void test_truncate_to_one_page(void **state) { truncate_each(*state, 1); }

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_truncate_to_zero, ts_setup_shm, ts_teardown),
      cmocka_unit_test_setup_teardown(test_truncate_to_one_page, ts_setup_shm, ts_teardown),
      cmocka_unit_test_setup_teardown(test_truncate_to_zero, ts_setup_dir, ts_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

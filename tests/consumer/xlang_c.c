/* SPDX-License-Identifier: Apache-2.0 */
/* The C side of the cross-language exchange (run.sh):
 *   xlang_c pub DOMAIN COUNT   publishes COUNT samples (BLOCK: none lost)
 *   xlang_c sub DOMAIN COUNT   takes them, asleep in shmbus_subscriber_wait
 *                              between bursts, and checks every one
 * Exit 0 when all went through, 1 otherwise. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep in strict C11 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xlang.h"

static int fail(const char *what, int r) {
  fprintf(stderr, "xlang_c: %s: %s (%s)\n", what, shmbus_strerror(r), shmbus_err_name(r));
  if (shmbus_error_detail()[0]) fprintf(stderr, "xlang_c: %s\n", shmbus_error_detail());
  return 1;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static shmbus_service_opts xlang_opts(void) {
  shmbus_service_opts o = SHMBUS_SERVICE_OPTS_INIT;
  o.type.name = XLANG_TYPE_NAME;
  o.type.size = sizeof(xlang_sample);
  o.type.align = _Alignof(xlang_sample);
  o.queue_depth = XLANG_QUEUE_DEPTH;
  o.overflow = SHMBUS_OVERFLOW_BLOCK;
  return o;
}

static int publish(shmbus_node *node, uint64_t count) {
  shmbus_service_opts o = xlang_opts();
  shmbus_publisher *pub = NULL;
  int r = shmbus_publisher_open(node, XLANG_SERVICE, &o, &pub);
  if (r) return fail("shmbus_publisher_open", r);
  shmbus_publisher_set_block_timeout(pub, INT64_C(10000000000)); /* a stuck peer: fail */
  uint64_t deadline = now_ns() + UINT64_C(20000000000);
  while ((r = shmbus_publisher_update(pub)) < 1) {
    if (r < 0 || now_ns() > deadline) {
      shmbus_publisher_close(pub);
      return fail("waiting for the subscriber", r < 0 ? r : SHMBUS_ERR_TIMEDOUT);
    }
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  for (uint64_t seq = 0; seq < count; seq++) {
    void *p = NULL;
    if ((r = shmbus_publisher_loan(pub, 1, &p)) != 0) break;
    xlang_fill(p, seq);
    if ((r = shmbus_publisher_publish(pub, p)) != 0) break;
  }
  shmbus_publisher_close(pub);
  if (r) return fail("publishing", r);
  printf("xlang_c: published %llu\n", (unsigned long long)count);
  return 0;
}

static int subscribe(shmbus_node *node, uint64_t count) {
  shmbus_service_opts o = xlang_opts();
  shmbus_subscriber *sub = NULL;
  int r = shmbus_subscriber_open(node, XLANG_SERVICE, &o, &sub);
  if (r) return fail("shmbus_subscriber_open", r);
  uint64_t next = 0, waits = 0;
  uint64_t deadline = now_ns() + UINT64_C(120000000000);
  while (next < count && r == 0) {
    shmbus_sample s;
    r = shmbus_subscriber_take(sub, &s);
    if (r == SHMBUS_ERR_EMPTY) {
      if (now_ns() > deadline)
        r = SHMBUS_ERR_TIMEDOUT;
      else if ((r = shmbus_subscriber_wait(sub, INT64_C(1000000000))) == SHMBUS_ERR_TIMEDOUT)
        r = 0; /* the publisher may not be there yet */
      waits++;
      continue;
    }
    if (r) break;
    int valid = s.bytes == sizeof(xlang_sample) && xlang_valid(s.payload, next);
    if (!valid)
      fprintf(stderr, "xlang_c: sample %llu: wrong (seq %llu, %zu bytes)\n",
              (unsigned long long)next, (unsigned long long)((const xlang_sample *)s.payload)->seq,
              s.bytes);
    r = shmbus_subscriber_release(sub, &s);
    if (!valid) r = SHMBUS_ERR_CORRUPT;
    next++;
  }
  uint64_t lost = shmbus_subscriber_lost(sub);
  shmbus_subscriber_close(sub);
  if (r) return fail("subscribing", r);
  if (lost) {
    fprintf(stderr, "xlang_c: %llu lost\n", (unsigned long long)lost);
    return 1;
  }
  printf("xlang_c: took and checked %llu in order (%llu waits)\n", (unsigned long long)next,
         (unsigned long long)waits);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 4 || (strcmp(argv[1], "pub") != 0 && strcmp(argv[1], "sub") != 0)) {
    fprintf(stderr, "usage: xlang_c pub|sub DOMAIN COUNT\n");
    return 2;
  }
  shmbus_node_opts no = SHMBUS_NODE_OPTS_INIT;
  no.domain = argv[2];
  shmbus_node *node = NULL;
  int r = shmbus_node_open(&no, &node);
  if (r) return fail("shmbus_node_open", r);
  uint64_t count = strtoull(argv[3], NULL, 10);
  int rc = argv[1][0] == 'p' ? publish(node, count) : subscribe(node, count);
  shmbus_node_close(node);
  return rc;
}

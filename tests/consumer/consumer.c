/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A minimal user of an installed shmbus: one node, one publisher and one
 * subscriber on a domain of its own, one sample sent with send_copy, taken,
 * checked and released, everything closed. Exit 0 on success, 1 on failure.
 */
#define _POSIX_C_SOURCE 200809L

#include <shmbus.h>

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHECK(call)                                                                    \
  do {                                                                                 \
    int rc_ = (call);                                                                  \
    if (rc_ < 0) {                                                                     \
      fprintf(stderr, "consumer_c: %s failed: %s (%s)\n", #call, shmbus_err_name(rc_), \
              shmbus_strerror(rc_));                                                   \
      goto out;                                                                        \
    }                                                                                  \
  } while (0)

int main(void) {
  char domain[SHMBUS_DOMAIN_MAX + 1];
  shmbus_node_opts node_opts = SHMBUS_NODE_OPTS_INIT;
  shmbus_service_opts opts = SHMBUS_SERVICE_OPTS_INIT;
  shmbus_node *node = NULL;
  shmbus_publisher *pub = NULL;
  shmbus_subscriber *sub = NULL;
  shmbus_sample sample;
  const uint64_t value = UINT64_C(0x5eb05eb0c0ffee);
  uint64_t got = 0;
  int status = 1, tries, rc;

  memset(&sample, 0, sizeof sample);
  snprintf(domain, sizeof domain, "consumer-c-%ld", (long)getpid());
  node_opts.domain = domain;
  opts.type.name = "consumer/u64";
  opts.type.size = sizeof(uint64_t);
  opts.type.align = sizeof(uint64_t);

  CHECK(shmbus_node_open(&node_opts, &node));
  CHECK(shmbus_publisher_open(node, "consumer/value", &opts, &pub));
  CHECK(shmbus_subscriber_open(node, "consumer/value", &opts, &sub));
  CHECK(shmbus_subscriber_publishers(sub));
  CHECK(shmbus_publisher_update(pub));
  CHECK(shmbus_publisher_send_copy(pub, &value, sizeof value));

  /* Same process, so the sample is there at once; allow a second anyway. */
  for (tries = 0; (rc = shmbus_subscriber_take(sub, &sample)) == SHMBUS_ERR_EMPTY && tries < 1000;
       tries++) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  CHECK(rc);
  if (sample.bytes != sizeof got || sample.payload == NULL) {
    fprintf(stderr, "consumer_c: sample of %zu bytes, expected %zu\n", sample.bytes, sizeof got);
    goto out;
  }
  memcpy(&got, sample.payload, sizeof got);
  if (got != value || sample.sequence != 0 || sample.publisher_id != shmbus_publisher_id(pub)) {
    fprintf(stderr, "consumer_c: wrong sample (value %llx, sequence %llu)\n",
            (unsigned long long)got, (unsigned long long)sample.sequence);
    goto out;
  }
  CHECK(shmbus_subscriber_release(sub, &sample));
  status = 0;
  printf("consumer_c: ok (shmbus %s, domain %s)\n", shmbus_version_string(), domain);

out:
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  return status;
}

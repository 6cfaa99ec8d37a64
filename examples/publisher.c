/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shmbus-example-publisher [COUNT] [SERVICE]
 *
 * A sensor driver in miniature: publishes COUNT (default 1000) Imu readings
 * on SERVICE (default "shmbus/examples/imu"), zero-copy: loan a sample in
 * shared memory, fill it in place, publish it. The domain comes from the
 * environment variable SHMBUS_DOMAIN (default "default").
 *
 * Before the first reading it waits up to 5 s for a subscriber; after the
 * last one it waits up to 10 s for the subscribers to finish and leave.
 * Run shmbus-example-subscriber with the same COUNT and SERVICE next to it.
 *
 * Exit status: 0 on success, 1 on failure, 2 on bad usage.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep, sigaction */
#endif

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shmbus.h>

#include "imu.h"

#define PROGRAM "shmbus-example-publisher"

#define MS (UINT64_C(1000) * 1000)
#define SUBSCRIBER_WAIT_NS (5000 * MS) /* for the first subscriber      */
#define PUBLISH_PERIOD_NS (100 * 1000) /* a 10 kHz sensor, give or take */

#include "example_util.h"

/* Polls until at least one subscriber is connected. Returns how many are, 0
 * when none came within `timeout_ns`, or an error. shmbus_publisher_update
 * connects subscribers that joined and counts those that have mapped this
 * publisher: they receive what follows and keep what is queued for them
 * even after we close. A sample published before anyone listens reaches
 * nobody. */
static int wait_for_subscribers(shmbus_publisher *pub, uint64_t timeout_ns) {
  uint64_t deadline = now_ns() + timeout_ns;
  for (;;) {
    int n = shmbus_publisher_update(pub);
    if (n != 0 || interrupted || now_ns() >= deadline) return n;
    sleep_ns(1 * MS);
  }
}

/* One reading, zero-copy: loan -> fill in place -> publish. */
static int publish_reading(shmbus_publisher *pub, uint64_t counter) {
  void *payload;
  int r = shmbus_publisher_loan(pub, 1, &payload);
  if (r != 0) return r;
  /* The loan is uninitialised shared memory of the type's size and
   * alignment: write every field. */
  imu_fill((Imu *)payload, counter, now_ns());
  /* Stamps the sample with the next sequence number (0, 1, ...) and hands
   * it to every connected subscriber; the payload is theirs from now on. */
  return shmbus_publisher_publish(pub, payload);
}

int main(int argc, char **argv) {
  uint64_t count = 1000;
  const char *service = IMU_DEFAULT_SERVICE;
  if (argc > 3 || (argc > 1 && !parse_count(argv[1], &count))) {
    fprintf(stderr,
            "usage: %s [COUNT] [SERVICE]\n"
            "  COUNT    readings to publish, 1 or more (default 1000)\n"
            "  SERVICE  service name (default \"%s\")\n"
            "  The domain is $SHMBUS_DOMAIN, else \"default\".\n",
            PROGRAM, IMU_DEFAULT_SERVICE);
    return 2;
  }
  if (argc > 2) service = argv[2];

  catch_signals();
  int status = 1;
  shmbus_node *node = NULL;
  shmbus_publisher *pub = NULL;
  shmbus_service_opts opts = imu_service_opts();

  /* NULL options: the domain from SHMBUS_DOMAIN (else "default"), POSIX
   * shared memory. */
  int r = shmbus_node_open(NULL, &node);
  if (r != 0) {
    report("shmbus_node_open", r);
    goto done;
  }
  r = shmbus_publisher_open(node, service, &opts, &pub);
  if (r != 0) {
    report("shmbus_publisher_open", r);
    goto done;
  }

  printf("%s: waiting for a subscriber on '%s' (domain '%s')\n", PROGRAM, service,
         shmbus_node_domain(node));
  fflush(stdout);
  int subscribers = wait_for_subscribers(pub, SUBSCRIBER_WAIT_NS);
  if (subscribers < 0) {
    report("shmbus_publisher_update", subscribers);
    goto done;
  }
  if (interrupted) {
    fprintf(stderr, "%s: interrupted\n", PROGRAM);
    goto done;
  }
  if (subscribers == 0) {
    fprintf(stderr, "%s: no subscriber connected to '%s' (domain '%s') within %llu s\n", PROGRAM,
            service, shmbus_node_domain(node),
            (unsigned long long)(SUBSCRIBER_WAIT_NS / 1000 / MS));
    goto done;
  }

  uint64_t start = now_ns();
  for (uint64_t i = 0; i < count; i++) {
    if (interrupted) {
      fprintf(stderr, "%s: interrupted after %llu readings\n", PROGRAM, (unsigned long long)i);
      goto done;
    }
    r = publish_reading(pub, i);
    if (r != 0) {
      report("publishing a reading", r);
      goto done;
    }
    /* A real driver publishes at its sensor's rate. Going much faster than
     * the subscriber reads would only overflow its queue (the oldest
     * samples are dropped and counted as lost on its side). */
    sleep_ns(PUBLISH_PERIOD_NS);
  }
  double seconds = (double)(now_ns() - start) / 1e9;
  printf("%s: published %llu Imu readings in %.3f s (%d subscriber(s) at the start)\n", PROGRAM,
         (unsigned long long)count, seconds, subscribers);
  fflush(stdout);

  /* No need to wait for the subscribers: what is queued for them stays
   * readable after we close (their mappings keep our segments alive). */
  status = 0;

done:
  /* Both accept NULL; the order does not matter (a port keeps its node). */
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  return status;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shmbus-example-epoll [COUNT] [SERVICE]
 *
 * shmbus inside an event loop (Linux epoll): the loop sleeps in epoll_wait
 * on a wait set's descriptor next to its other descriptors (here a
 * signalfd for SIGINT/SIGTERM) and never polls shmbus. Publishers in other
 * processes, which share no descriptor with us, wake the loop only while it
 * sleeps. Receives Imu readings from SERVICE (default
 * "shmbus/examples/imu") until COUNT (default 1000) are accounted for
 * (received or lost), checking each; run shmbus-example-publisher beside it.
 *
 * The protocol of the descriptor: when it is readable, call
 * shmbus_waitset_wait(ws, 0, ...) until it says TIMEDOUT (nothing more),
 * taking the samples it reports; only then sleep in epoll_wait again.
 *
 * Exit status: 0 when COUNT samples are accounted for and all were right;
 * 1 on a wrong sample, an error, or 10 s without progress; 2 on bad usage.
 */
#define _GNU_SOURCE /* signalfd, epoll */

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <shmbus.h>

#include "imu.h"

#define PROGRAM "shmbus-example-epoll"
#define IDLE_LIMIT_MS 10000

#include "example_util.h"

/* Takes everything queued; returns -1 on a wrong sample or an error. */
static int drain(shmbus_subscriber *sub, uint64_t *received, uint64_t *next_seq) {
  for (;;) {
    shmbus_sample s;
    int r = shmbus_subscriber_take(sub, &s);
    if (r == SHMBUS_ERR_EMPTY) return 0;
    if (r != 0) {
      report("shmbus_subscriber_take", r);
      return -1;
    }
    const Imu *imu = (const Imu *)s.payload;
    int ok = s.bytes == sizeof(Imu) && imu->counter == s.sequence && imu_check(imu, imu->counter) &&
             (*next_seq == UINT64_MAX || s.sequence >= *next_seq);
    *next_seq = s.sequence + 1;
    shmbus_subscriber_release(sub, &s);
    if (!ok) {
      fprintf(stderr, "%s: wrong sample %llu\n", PROGRAM, (unsigned long long)s.sequence);
      return -1;
    }
    ++*received;
  }
}

int main(int argc, char **argv) {
  uint64_t count = 1000;
  const char *service = IMU_DEFAULT_SERVICE;
  if (argc > 3 || (argc > 1 && !parse_count(argv[1], &count))) {
    fprintf(stderr, "usage: %s [COUNT] [SERVICE]\n", PROGRAM);
    return 2;
  }
  if (argc > 2) service = argv[2];

  int status = 1, ep = -1, sigfd = -1;
  shmbus_node *node = NULL;
  shmbus_subscriber *sub = NULL;
  shmbus_waitset *ws = NULL;
  shmbus_service_opts opts = imu_service_opts();
  uint64_t received = 0, next_seq = UINT64_MAX;

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (sigfd < 0 || ep < 0) {
    perror(PROGRAM);
    goto done;
  }
  int r = shmbus_node_open(NULL, &node);
  if (r == 0) r = shmbus_subscriber_open(node, service, &opts, &sub);
  if (r == 0) r = shmbus_waitset_open(node, &ws);
  if (r == 0) r = shmbus_waitset_attach(ws, sub, NULL);
  if (r != 0) {
    report("opening", r);
    goto done;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = shmbus_waitset_fd(ws)};
  struct epoll_event sev = {.events = EPOLLIN, .data.fd = sigfd};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, ev.data.fd, &ev) != 0 ||
      epoll_ctl(ep, EPOLL_CTL_ADD, sigfd, &sev) != 0) {
    perror(PROGRAM);
    goto done;
  }
  printf("%s: waiting for %llu samples on '%s' (domain '%s')\n", PROGRAM, (unsigned long long)count,
         service, shmbus_node_domain(node));
  fflush(stdout);

  int readable = 1; /* look once before the first sleep */
  while (received + shmbus_subscriber_lost(sub) < count) {
    if (readable) {
      shmbus_wait_event events[4];
      /* Until nothing is left; the TIMEDOUT look arms the wake-up. */
      while ((r = shmbus_waitset_wait(ws, 0, events, 4)) > 0)
        for (int i = 0; i < r; i++)
          if (events[i].what == SHMBUS_WAIT_DATA && drain(sub, &received, &next_seq) != 0)
            goto done;
      if (r != SHMBUS_ERR_TIMEDOUT) {
        report("shmbus_waitset_wait", r);
        goto done;
      }
      if (received + shmbus_subscriber_lost(sub) >= count) break;
    }
    struct epoll_event out;
    int n = epoll_wait(ep, &out, 1, IDLE_LIMIT_MS);
    if (n == 0) {
      fprintf(stderr, "%s: nothing for %d s: %llu of %llu\n", PROGRAM, IDLE_LIMIT_MS / 1000,
              (unsigned long long)received, (unsigned long long)count);
      goto done;
    }
    if (n > 0 && out.data.fd == sigfd) {
      fprintf(stderr, "%s: interrupted\n", PROGRAM);
      goto done;
    }
    readable = n > 0;
  }
  printf("%s: %llu received, %llu lost\n", PROGRAM, (unsigned long long)received,
         (unsigned long long)shmbus_subscriber_lost(sub));
  status = 0;
done:
  shmbus_waitset_close(ws);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  if (ep >= 0) close(ep);
  if (sigfd >= 0) close(sigfd);
  return status;
}

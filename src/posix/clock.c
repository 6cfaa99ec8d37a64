/* SPDX-License-Identifier: Apache-2.0 */
/* Time, sleeping, randomness and the environment (platform.h). */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "posix.h"

uint64_t shmbus__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

void shmbus__yield(void) { sched_yield(); }

void shmbus__sleep_ns(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

uint64_t shmbus__random64(void) {
  uint64_t v = 0;
  if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v && v != 0) return v;
  /* splitmix64 over the clock and the process id: unique enough for ids. */
  v = shmbus__now_ns() ^ ((uint64_t)getpid() << 32);
  v += UINT64_C(0x9e3779b97f4a7c15);
  v = (v ^ (v >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  v = (v ^ (v >> 27)) * UINT64_C(0x94d049bb133111eb);
  v ^= v >> 31;
  return v ? v : 1;
}

const char *shmbus__getenv(const char *name) { return getenv(name); }

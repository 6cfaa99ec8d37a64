/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the C examples: clock, sleep, signals, errors and
 * command line counts. Include after defining PROGRAM. */
#ifndef SHMBUS_EXAMPLE_UTIL_H
#define SHMBUS_EXAMPLE_UTIL_H

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shmbus.h>

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void sleep_ns(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Set by SIGINT and SIGTERM: stop, close the ports and exit cleanly (a
 * killed process's objects are reclaimed too, but only once some other
 * participant notices; see shmbus_domain_cleanup). */
static volatile sig_atomic_t interrupted;

static inline void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

static inline void catch_signals(void) {
#ifdef _WIN32
  /* No sigaction: the C library's signal() (Ctrl-C arrives as SIGINT). */
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
#else
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
#endif
}

static inline void report(const char *what, int err) {
  fprintf(stderr, "%s: %s: %s (SHMBUS_ERR_%s)\n", PROGRAM, what, shmbus_strerror(err),
          shmbus_err_name(err));
}

/* A decimal count from 1 to 10^12. */
static inline int parse_count(const char *text, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v == 0 || v > 1000000000000ull)
    return 0;
  *out = (uint64_t)v;
  return 1;
}

#endif /* SHMBUS_EXAMPLE_UTIL_H */

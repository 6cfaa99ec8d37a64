/* SPDX-License-Identifier: Apache-2.0 */
/* Waits on a shared 32-bit word (platform.h): futex on Linux, __ulock on
 * macOS, _umtx_op on FreeBSD, polling elsewhere. */
#include <errno.h>
#include <time.h>
#include <unistd.h>

#include "posix.h"

/* The address is all a POSIX word wait needs: nothing to open or close. */
void shmbus__waitable_init(shmbus__waitable *w, const shmbus__root *root, const char *name) {
  (void)name;
  w->handle = 0;
  w->root = root;
  w->name[0] = '\0';
}

int shmbus__waitable_open(shmbus__waitable *w) {
  (void)w;
  return 0;
}

void shmbus__waitable_close(shmbus__waitable *w) { (void)w; }

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>

int shmbus__word_wait(shmbus__waitable *w, uint32_t *word, uint32_t expected, int64_t timeout_ns) {
  (void)w;
  struct timespec ts;
  struct timespec *tp = shmbus__posix_relative_timeout(timeout_ns, &ts);
  /* Relative timeout, CLOCK_MONOTONIC. Not FUTEX_PRIVATE_FLAG: the word
   * lives in memory shared with other processes. */
  long rc = syscall(SYS_futex, word, FUTEX_WAIT, expected, tp, NULL, 0);
  return rc != 0 && errno == ETIMEDOUT ? SHMBUS_ERR_TIMEDOUT : 0;
}

void shmbus__word_wake(shmbus__waitable *w, uint32_t *word) {
  (void)w;
  syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

#else /* other POSIX systems */

/* The word waits of macOS (__ulock, the shared flavour, as libc++ uses for
 * std::atomic::wait) and FreeBSD (_umtx_op on an unsigned int, not the
 * private flavour): both wait on a word of shared memory like a futex.
 * Written against their system interfaces but built and tested only on
 * Linux here. Elsewhere the word is re-read every 50 us. */
#if defined(__APPLE__)
extern int __ulock_wait(uint32_t operation, void *addr, uint64_t value, uint32_t timeout_us);
extern int __ulock_wake(uint32_t operation, void *addr, uint64_t wake_value);
#define SHMBUS_UL_COMPARE_AND_WAIT_SHARED 3u
#define SHMBUS_ULF_WAKE_ALL 0x00000100u

int shmbus__word_wait(shmbus__waitable *w, uint32_t *word, uint32_t expected, int64_t timeout_ns) {
  (void)w;
  /* 0 means no limit; longer waits are cut to the largest finite one. */
  uint64_t us = timeout_ns < 0 ? 0 : (uint64_t)timeout_ns / 1000 + 1;
  if (us > UINT32_MAX) us = UINT32_MAX;
  int rc = __ulock_wait(SHMBUS_UL_COMPARE_AND_WAIT_SHARED, word, expected, (uint32_t)us);
  return rc < 0 && errno == ETIMEDOUT ? SHMBUS_ERR_TIMEDOUT : 0;
}

void shmbus__word_wake(shmbus__waitable *w, uint32_t *word) {
  (void)w;
  __ulock_wake(SHMBUS_UL_COMPARE_AND_WAIT_SHARED | SHMBUS_ULF_WAKE_ALL, word, 0);
}
#elif defined(__FreeBSD__)
#include <sys/types.h>
#include <sys/umtx.h>

int shmbus__word_wait(shmbus__waitable *w, uint32_t *word, uint32_t expected, int64_t timeout_ns) {
  (void)w;
  struct timespec ts;
  struct timespec *tp = shmbus__posix_relative_timeout(timeout_ns, &ts);
  /* A relative timespec in uaddr2 when uaddr is NULL. */
  int rc = _umtx_op(word, UMTX_OP_WAIT_UINT, expected, NULL, tp);
  return rc != 0 && errno == ETIMEDOUT ? SHMBUS_ERR_TIMEDOUT : 0;
}

void shmbus__word_wake(shmbus__waitable *w, uint32_t *word) {
  (void)w;
  _umtx_op(word, UMTX_OP_WAKE, INT32_MAX, NULL, NULL);
}
#else
int shmbus__word_wait(shmbus__waitable *w, uint32_t *word, uint32_t expected, int64_t timeout_ns) {
  (void)w;
  uint64_t end = timeout_ns < 0 ? UINT64_MAX : shmbus__now_ns() + (uint64_t)timeout_ns;
  while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == expected) {
    if (shmbus__now_ns() >= end) return SHMBUS_ERR_TIMEDOUT;
    shmbus__sleep_ns(50 * 1000);
  }
  return 0;
}

void shmbus__word_wake(shmbus__waitable *w, uint32_t *word) {
  (void)w;
  (void)word;
}
#endif

#endif

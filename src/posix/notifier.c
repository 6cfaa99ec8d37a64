/* SPDX-License-Identifier: Apache-2.0 */
/* Notifiers (platform.h): what a wait set sleeps on and publishers poke,
 * an abstract datagram socket on Linux; unsupported elsewhere. */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "posix.h"

#ifdef __linux__
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

/* The abstract address of notifier `id` ("\0shmbus.<domain>.w.<16 hex>");
 * returns its length. Built by hand, without snprintf: it runs inside
 * shmbus_waitset_trigger, which signal handlers may call. */
static socklen_t notifier_addr(const char *domain, uint64_t id, struct sockaddr_un *a) {
  static const char hex[] = "0123456789abcdef";
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  char *p = a->sun_path + 1; /* abstract: starts with a NUL */
  const char *parts[3] = {"shmbus.", domain, ".w."};
  for (int i = 0; i < 3; i++)
    for (const char *q = parts[i]; *q; q++) *p++ = *q; /* domain <= 32 chars: fits */
  for (int shift = 60; shift >= 0; shift -= 4) *p++ = hex[(id >> shift) & 15];
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)(p - a->sun_path));
}

int shmbus__notifier_open(const char *domain, unsigned mode, uint64_t id, shmbus__notifier *out) {
  (void)mode; /* anybody may send to an abstract socket */
  out->handle = -1;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return shmbus__posix_errno(errno);
  struct sockaddr_un a;
  socklen_t len = notifier_addr(domain, id, &a);
  if (bind(fd, (struct sockaddr *)&a, len) != 0) {
    int r = errno == EADDRINUSE ? SHMBUS_ERR_EXISTS : shmbus__posix_errno(errno);
    close(fd);
    return r;
  }
  out->handle = fd;
  return 0;
}

void shmbus__notifier_close(shmbus__notifier *n) {
  if (n->handle >= 0) close((int)n->handle);
  n->handle = -1;
}

int shmbus__notifier_fd(const shmbus__notifier *n) { return (int)n->handle; }

void shmbus__notifier_drain(shmbus__notifier *n) {
  char buf[64];
  /* Anybody may send to an abstract socket: a flood must not keep us. */
  for (int i = 0; i < 64 && recv((int)n->handle, buf, sizeof buf, MSG_DONTWAIT) >= 0; i++) {
  }
}

int shmbus__notifier_wait(shmbus__notifier *n, int64_t timeout_ns) {
  struct pollfd p = {(int)n->handle, POLLIN, 0};
  struct timespec ts;
  struct timespec *tp = shmbus__posix_relative_timeout(timeout_ns, &ts);
  int rc = ppoll(&p, 1, tp, NULL);
  return rc == 0 ? SHMBUS_ERR_TIMEDOUT : 0;
}

/* The process's sending socket, made once (a fork child shares it, which
 * is harmless: it is never bound). */
static int notify_fd = -1;

int shmbus__notify_init(void) {
  if (__atomic_load_n(&notify_fd, __ATOMIC_ACQUIRE) >= 0) return 0;
  int mine = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (mine < 0) return shmbus__posix_errno(errno);
  int expected = -1;
  if (!__atomic_compare_exchange_n(&notify_fd, &expected, mine, 0, __ATOMIC_ACQ_REL,
                                   __ATOMIC_ACQUIRE))
    close(mine); /* another thread made it first */
  return 0;
}

void shmbus__notify(const char *domain, uint64_t id) {
  if (shmbus__notify_init() != 0) return;
  struct sockaddr_un a;
  socklen_t len = notifier_addr(domain, id, &a);
  static const char one = 1;
  (void)sendto(__atomic_load_n(&notify_fd, __ATOMIC_ACQUIRE), &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL,
               (struct sockaddr *)&a, len);
}

#else /* other POSIX systems: no pollable notifier */

int shmbus__notifier_open(const char *domain, unsigned mode, uint64_t id, shmbus__notifier *out) {
  (void)domain;
  (void)mode;
  (void)id;
  out->handle = -1;
  return SHMBUS_ERR_UNSUPPORTED;
}
void shmbus__notifier_close(shmbus__notifier *n) { n->handle = -1; }
int shmbus__notifier_fd(const shmbus__notifier *n) { return (int)n->handle; }
void shmbus__notifier_drain(shmbus__notifier *n) { (void)n; }
int shmbus__notifier_wait(shmbus__notifier *n, int64_t timeout_ns) {
  (void)n;
  shmbus__sleep_ns(timeout_ns < 0 ? 1000000 : (uint64_t)timeout_ns);
  return SHMBUS_ERR_TIMEDOUT;
}
int shmbus__notify_init(void) { return 0; }
void shmbus__notify(const char *domain, uint64_t id) {
  (void)domain;
  (void)id;
}

#endif

/* On POSIX the OS object to wait on is the descriptor. */
intptr_t shmbus__notifier_os_handle(const shmbus__notifier *n) { return n->handle; }

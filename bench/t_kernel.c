/* SPDX-License-Identifier: Apache-2.0 */
/* Copying, blocking kernel transports: pipe, Unix domain socket, POSIX
 * message queue. The whole payload is copied both ways. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

#define STOP UINT64_MAX

/* fds[0]: A -> B, fds[1]: B -> A; [dir][0] read end, [dir][1] write end. */
static int fds[2][2] = {{-1, -1}, {-1, -1}};

static void close_fds(const bench_params *p) {
  (void)p;
  for (int d = 0; d < 2; d++)
    for (int e = 0; e < 2; e++) {
      if (fds[d][e] >= 0) close(fds[d][e]);
      fds[d][e] = -1;
    }
}

static int pipe_prepare(const bench_params *p) {
  (void)p;
  return pipe(fds[0]) || pipe(fds[1]) ? -1 : 0;
}

static int uds_prepare(const bench_params *p) {
  (void)p;
  int a[2], b[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, a) || socketpair(AF_UNIX, SOCK_STREAM, 0, b)) return -1;
  fds[0][0] = a[0];
  fds[0][1] = a[1];
  fds[1][0] = b[0];
  fds[1][1] = b[1];
  return 0;
}

static int write_all(int fd, const char *buf, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, buf, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    buf += w;
    n -= (size_t)w;
  }
  return 0;
}

static int read_all(int fd, char *buf, size_t n) {
  while (n > 0) {
    ssize_t r = read(fd, buf, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    buf += r;
    n -= (size_t)r;
  }
  return 0;
}

/* The ping-pong over a send and a receive function, shared by all three. */
typedef int (*xfer_fn)(int dir, char *buf, size_t n);

static int fd_send(int dir, char *buf, size_t n) { return write_all(fds[dir][1], buf, n); }
static int fd_recv(int dir, char *buf, size_t n) { return read_all(fds[dir][0], buf, n); }

static int ping_pong(const bench_params *p, int role, bench_shared *sh, xfer_fn send,
                     xfer_fn recv) {
  size_t n = p->payload < 8 ? 8 : p->payload;
  char *buf = malloc(n);
  if (buf == NULL) return -1;
  memset(buf, 0, n);
  int r = bench_handshake(sh, role);
  uint64_t start = bench_now_ns();
  for (uint64_t i = 0; r == 0; i++) {
    if (role == ROLE_A) {
      uint64_t t0 = bench_now_ns();
      bench_touch(buf, n, i, p->touch_all);
      if (send(0, buf, n) || recv(1, buf, n))
        r = -1;
      else if (bench_stamp(buf) != i)
        r = -1;
      if (r == 0 && !bench_record(p, sh, i, t0, bench_now_ns(), start)) {
        bench_touch(buf, n, STOP, 0);
        r = send(0, buf, n) || recv(1, buf, n) ? -1 : 0;
        break;
      }
    } else {
      if (recv(0, buf, n) || send(1, buf, n))
        r = -1;
      else if (bench_stamp(buf) == STOP)
        break;
    }
  }
  if (r) bench_fail(sh, "transfer failed: %s", strerror(errno));
  free(buf);
  return r;
}

static int fd_run(const bench_params *p, int role, bench_shared *sh) {
  return ping_pong(p, role, sh, fd_send, fd_recv);
}

const bench_transport bench_pipe = {"pipe", "blocking", 0, NULL, pipe_prepare, fd_run, close_fds};
const bench_transport bench_uds = {"uds", "blocking", 0, NULL, uds_prepare, fd_run, close_fds};

/* ---- POSIX message queues ---- */

static char mq_names[2][48];
static mqd_t mqs[2] = {(mqd_t)-1, (mqd_t)-1};

static int mq_prepare(const bench_params *p) {
  /* Root may raise the per-user byte limit; others keep the default and
   * may see larger payloads refused (reported as a failed row). */
  struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
  setrlimit(RLIMIT_MSGQUEUE, &rl);
  struct mq_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.mq_maxmsg = 1;
  attr.mq_msgsize = (long)(p->payload < 8 ? 8 : p->payload);
  for (int d = 0; d < 2; d++) {
    snprintf(mq_names[d], sizeof mq_names[d], "/sbbench-%ld-%d", (long)getpid(), d);
    mqs[d] = mq_open(mq_names[d], O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
    if (mqs[d] == (mqd_t)-1) {
      fprintf(stderr, "mq_open(%zu bytes): %s\n", p->payload, strerror(errno));
      return -1;
    }
  }
  return 0;
}

static void mq_cleanup(const bench_params *p) {
  (void)p;
  for (int d = 0; d < 2; d++) {
    if (mqs[d] != (mqd_t)-1) {
      mq_close(mqs[d]);
      mq_unlink(mq_names[d]);
    }
    mqs[d] = (mqd_t)-1;
  }
}

static int mq_xsend(int dir, char *buf, size_t n) { return mq_send(mqs[dir], buf, n, 0); }
static int mq_xrecv(int dir, char *buf, size_t n) {
  return mq_receive(mqs[dir], buf, n, NULL) == (ssize_t)n ? 0 : -1;
}

static int mq_run(const bench_params *p, int role, bench_shared *sh) {
  return ping_pong(p, role, sh, mq_xsend, mq_xrecv);
}

const bench_transport bench_mqueue = {"mqueue",   "blocking", 0,         NULL,
                                      mq_prepare, mq_run,     mq_cleanup};

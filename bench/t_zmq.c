/* SPDX-License-Identifier: Apache-2.0 */
/* ZeroMQ over ipc:// (a Unix domain socket underneath), PAIR sockets,
 * blocking send and receive. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#ifndef SHMBUS_BENCH_HAVE_ZMQ

static const char *zmq_unavailable(void) {
  return "libzmq not found at configure time (apt-get install libzmq3-dev)";
}
const bench_transport bench_zmq = {"zmq", "blocking", 0, zmq_unavailable, NULL, NULL, NULL};

#else

#include <stdlib.h>
#include <zmq.h>

#define STOP UINT64_MAX

static void endpoint(const bench_params *p, char *out, size_t n) {
  snprintf(out, n, "ipc:///tmp/sbbench-zmq-%s-%u", p->domain, p->run);
}

static int zmq_run(const bench_params *p, int role, bench_shared *sh) {
  char ep[64];
  endpoint(p, ep, sizeof ep);
  void *ctx = zmq_ctx_new();
  void *sock = zmq_socket(ctx, ZMQ_PAIR);
  size_t n = p->payload < 8 ? 8 : p->payload;
  char *buf = malloc(n);
  int r = (ctx && sock && buf) ? 0 : -1;
  if (r == 0) r = role == ROLE_A ? zmq_bind(sock, ep) : zmq_connect(sock, ep);
  if (r == 0) r = bench_handshake(sh, role);
  if (r == 0) memset(buf, 0, n);
  uint64_t start = bench_now_ns();
  for (uint64_t i = 0; r == 0; i++) {
    if (role == ROLE_A) {
      uint64_t t0 = bench_now_ns();
      bench_touch(buf, n, i, p->touch_all);
      if (zmq_send(sock, buf, n, 0) != (int)n || zmq_recv(sock, buf, n, 0) != (int)n ||
          bench_stamp(buf) != i) {
        r = -1;
        break;
      }
      if (!bench_record(p, sh, i, t0, bench_now_ns(), start)) {
        bench_touch(buf, n, STOP, 0);
        if (zmq_send(sock, buf, n, 0) != (int)n || zmq_recv(sock, buf, n, 0) != (int)n) r = -1;
        break;
      }
    } else {
      if (zmq_recv(sock, buf, n, 0) != (int)n || zmq_send(sock, buf, n, 0) != (int)n) {
        r = -1;
        break;
      }
      if (bench_stamp(buf) == STOP) break;
    }
  }
  if (r) bench_fail(sh, "zmq: %s", zmq_strerror(zmq_errno()));
  /* Let the last (possibly large) echo leave before the socket closes. */
  int linger = 5000;
  if (sock) {
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(sock);
  }
  if (ctx) zmq_ctx_term(ctx);
  free(buf);
  if (role == ROLE_A) unlink(ep + strlen("ipc://"));
  return r;
}

const bench_transport bench_zmq = {"zmq", "blocking", 0, NULL, NULL, zmq_run, NULL};
#endif

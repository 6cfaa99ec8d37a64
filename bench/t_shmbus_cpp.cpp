// SPDX-License-Identifier: Apache-2.0
//
// The shmbus-cpp row: the busy latency ping-pong of t_shmbus.c, made
// through the C++ API (<shmbus.hpp>) instead of the C calls, in the same
// run, on the same cores, measured by the same driver. Everything that is
// not the API is the same: two services (ping and pong), one publisher and
// one subscriber each, queue depth 16, max_loans 2, max_held 2, payload in
// 8-byte elements of alignment 8 (the C row's "bench/bytes" type has size 1
// and alignment 8: the chunks have the same layout), the same stamp in the
// first line (or the whole payload). Loans are Loan<uint64_t[]> published
// with publish(std::move(loan)); samples are Sample<uint64_t[]> released by
// their destructors; failures are shmbus::Error exceptions.
#include <shmbus.hpp>

#include <cstdint>
#include <cstring>
#include <exception>

extern "C" {
#include "bench.h"
}

namespace {

using Words = std::uint64_t[];

const std::uint64_t kConnectTimeoutNs = UINT64_C(10) * 1000000000u;

std::size_t words_for(std::size_t payload) { return (payload + 7) / 8; }

shmbus::ServiceOptions options(std::size_t payload) {
  return shmbus::ServiceOptions()
      .max_elements(static_cast<std::uint32_t>(words_for(payload)))
      .max_publishers(1)
      .max_subscribers(1)
      .queue_depth(16)
      .max_held(2)
      .max_loans(2);
}

struct Ends {
  shmbus::Node node;
  shmbus::Publisher<Words> pub;
  shmbus::Subscriber<Words> sub;
};

// Opens a publisher on `out` and a subscriber on `in` and waits until both
// are connected to the other side (both look every round, as in C).
bool open_ends(const bench_params *p, bench_shared *sh, const char *out, const char *in, Ends &e) {
  e.node = shmbus::Node(shmbus::NodeOptions().domain(p->domain));
  e.pub = shmbus::Publisher<Words>(e.node, out, options(p->payload));
  e.sub = shmbus::Subscriber<Words>(e.node, in, options(p->payload));
  const std::uint64_t deadline = bench_now_ns() + kConnectTimeoutNs;
  for (;;) {
    const int subs = e.pub.update();
    const int pubs = e.sub.publishers();
    if (subs >= 1 && pubs >= 1) return true;
    if (bench_now_ns() > deadline || sh->failed) {
      bench_fail(sh, "shmbus-cpp: peers did not connect");
      return false;
    }
  }
}

void send_stamp(const bench_params *p, shmbus::Publisher<Words> &pub, std::uint64_t stamp) {
  shmbus::Loan<Words> loan = pub.loan(words_for(p->payload));
  bench_touch(loan.data(), p->payload, stamp, p->touch_all);
  pub.publish(std::move(loan));
}

// Busy-polls take() for the next sample and returns its stamp; the Sample
// is released when it goes out of scope. Returns false when the other side
// failed meanwhile.
bool recv_stamp(bench_shared *sh, shmbus::Subscriber<Words> &sub, std::uint64_t *stamp) {
  for (;;) {
    shmbus::Sample<Words> s = sub.take();
    if (s) {
      *stamp = bench_stamp(s.data());
      return true;
    }
    if (sh->failed) return false;
  }
}

int latency(const bench_params *p, int role, bench_shared *sh) {
  const char *out = role == ROLE_A ? "bench/cpp-ping" : "bench/cpp-pong";
  const char *in = role == ROLE_A ? "bench/cpp-pong" : "bench/cpp-ping";
  try {
    Ends e;
    if (!open_ends(p, sh, out, in, e)) return -1;
    if (bench_handshake(sh, role) != 0) return -1;
    const std::uint64_t start = bench_now_ns();
    for (std::uint64_t i = 0;; i++) {
      std::uint64_t got = 0;
      if (role == ROLE_A) {
        const std::uint64_t t0 = bench_now_ns();
        send_stamp(p, e.pub, i);
        if (!recv_stamp(sh, e.sub, &got)) return -1;
        if (got != i) {
          bench_fail(sh, "shmbus-cpp: stamp %llu, expected %llu",
                     static_cast<unsigned long long>(got), static_cast<unsigned long long>(i));
          return -1;
        }
        if (!bench_record(p, sh, i, t0, bench_now_ns(), start)) {
          // Tell B to stop: a stamp it will echo once more.
          send_stamp(p, e.pub, UINT64_MAX);
          if (!recv_stamp(sh, e.sub, &got)) return -1;
          return 0;
        }
      } else {
        if (!recv_stamp(sh, e.sub, &got)) return -1;
        send_stamp(p, e.pub, got);
        if (got == UINT64_MAX) return 0;
      }
    }
  } catch (const std::exception &ex) { // shmbus::Error
    bench_fail(sh, "shmbus-cpp: %s", ex.what());
    return -1;
  }
}

} // namespace

extern "C" const bench_transport bench_shmbus_cpp = {"shmbus-cpp", "busy",  0,      nullptr,
                                                     nullptr,      latency, nullptr};

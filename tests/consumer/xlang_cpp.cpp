// SPDX-License-Identifier: Apache-2.0
//
// The C++ side of the cross-language exchange (run.sh), written from the
// README's "From C++" and <shmbus.hpp> only:
//   xlang_cpp pub DOMAIN COUNT   publishes COUNT samples (BLOCK: none lost)
//   xlang_cpp sub DOMAIN COUNT   takes them, asleep in wait_for between
//                                bursts, and checks every one
// Exit 0 when all went through, 1 otherwise (a shmbus::Error says why).
#include <shmbus.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <thread>
#include <utility>

#include "xlang.h"

SHMBUS_TYPE_NAME(xlang_sample, XLANG_TYPE_NAME);

namespace {

shmbus::ServiceOptions options() {
  return shmbus::ServiceOptions().queue_depth(XLANG_QUEUE_DEPTH).overflow(shmbus::Overflow::block);
}

int publish(shmbus::Node &node, std::uint64_t count) {
  shmbus::Publisher<xlang_sample> pub(node, XLANG_SERVICE, options());
  pub.set_block_timeout(std::chrono::seconds(10)); // a stuck peer: an Error
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (pub.update() < 1) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "xlang_cpp: no subscriber came\n");
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (std::uint64_t seq = 0; seq < count; seq++) {
    shmbus::Loan<xlang_sample> loan = pub.loan();
    xlang_fill(loan.get(), seq);
    pub.publish(std::move(loan));
  }
  std::printf("xlang_cpp: published %llu\n", static_cast<unsigned long long>(count));
  return 0;
}

int subscribe(shmbus::Node &node, std::uint64_t count) {
  shmbus::Subscriber<xlang_sample> sub(node, XLANG_SERVICE, options());
  std::uint64_t next = 0, waits = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (next < count) {
    shmbus::Sample<xlang_sample> s = sub.take();
    if (!s) {
      if (std::chrono::steady_clock::now() > deadline) {
        std::fprintf(stderr, "xlang_cpp: only %llu of %llu in 120 s\n",
                     static_cast<unsigned long long>(next), static_cast<unsigned long long>(count));
        return 1;
      }
      (void)sub.wait_for(std::chrono::seconds(1)); // timed out: the publisher may not be up yet
      waits++;
      continue;
    }
    if (!xlang_valid(&*s, next)) {
      std::fprintf(stderr, "xlang_cpp: sample %llu: wrong (seq %llu)\n",
                   static_cast<unsigned long long>(next), static_cast<unsigned long long>(s->seq));
      return 1;
    }
    next++;
  }
  if (sub.lost() != 0) {
    std::fprintf(stderr, "xlang_cpp: %llu lost\n", static_cast<unsigned long long>(sub.lost()));
    return 1;
  }
  std::printf("xlang_cpp: took and checked %llu in order (%llu waits)\n",
              static_cast<unsigned long long>(next), static_cast<unsigned long long>(waits));
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  if (argc != 4 || (std::strcmp(argv[1], "pub") != 0 && std::strcmp(argv[1], "sub") != 0)) {
    std::fprintf(stderr, "usage: xlang_cpp pub|sub DOMAIN COUNT\n");
    return 2;
  }
  try {
    shmbus::Node node(shmbus::NodeOptions().domain(argv[2]));
    const std::uint64_t count = std::strtoull(argv[3], nullptr, 10);
    return argv[1][0] == 'p' ? publish(node, count) : subscribe(node, count);
  } catch (const std::exception &e) { // shmbus::Error
    std::fprintf(stderr, "xlang_cpp: %s\n", e.what());
    return 1;
  }
}

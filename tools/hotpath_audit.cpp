// SPDX-License-Identifier: Apache-2.0
//
// shmbus-hotpath-audit-cpp: the hot-path audit of tools/hotpath_audit.c,
// through the C++ API (<shmbus.hpp>): steady-state cycles made with
// Publisher<uint8_t[]>::loan / publish / send, Subscriber::take /
// take_latest and the Samples' destructors, both in their throwing and in
// their try_ forms, counting the heap allocations made meanwhile (malloc
// interposed: hotpath_malloc.c; operator new calls malloc). System calls
// are counted from outside by tools/hotpath-audit.sh under strace, between
// the getppid() markers, exactly as for the C audit:
//
//   phase 1, busy: CYCLES cycles with 2 subscribers polling, one of which
//            has waited before (so each publish checks it for sleep) but is
//            awake. Expected: 0 system calls, 0 allocations.
//   phase 2, sleeping: 1000 publishes through the wrapper to a subscriber in
//            another process that sleeps in Subscriber::wait_for between
//            samples. Expected: at most 1 system call per publish.
//
//   shmbus-hotpath-audit-cpp [CYCLES]      (default 1000000)
// Exit status: 0 when no allocation was made during the cycles, 1 when one
// was, 2 when something failed.
#include <shmbus.hpp>

#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "hotpath_malloc.h"

namespace {

using namespace std::chrono_literals;
using Bytes = std::uint8_t[];

// Markers that strace shows around the measured loops; neither is made by
// shmbus or libc on their own.
void mark() { syscall(SYS_getppid); }

constexpr int kSleepCycles = 1000; // SLEEP_CYCLES of hotpath_audit.c
constexpr int kSleepWarmup = 20;

[[noreturn]] void die(const char *what) {
  std::fprintf(stderr, "hotpath-audit-cpp: %s\n", what);
  std::exit(2);
}

// The sleeping subscriber of phase 2 (a child process): counts what it
// consumed into *consumed.
int sleeper(const std::string &domain, const shmbus::ServiceOptions &so,
            std::atomic<std::uint64_t> *consumed) {
  shmbus::Node node(shmbus::NodeOptions().domain(domain));
  shmbus::Subscriber<Bytes> sub(node, "audit-sleep", so);
  consumed->store(UINT64_MAX); // open
  for (std::uint64_t n = 0; n < kSleepWarmup + kSleepCycles; n++) {
    if (sub.wait_for(10s) != shmbus::WaitStatus::ready) return 2;
    shmbus::Sample<Bytes> s = sub.take();
    if (!s) return 2;
    s.release();
    consumed->store(n + 1);
  }
  return 0;
}

// Phase 2, publisher side.
void sleeping_phase(const shmbus::Node &node, const std::string &domain,
                    const shmbus::ServiceOptions &so) {
  void *shared = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) die("mmap");
  auto *consumed = new (shared) std::atomic<std::uint64_t>(0);
  std::fflush(nullptr);
  const pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    int rc = 2;
    try {
      rc = sleeper(domain, so, consumed);
    } catch (const shmbus::Error &e) {
      std::fprintf(stderr, "hotpath-audit-cpp: sleeper: %s\n", e.what());
    }
    _exit(rc);
  }
  while (consumed->load() != UINT64_MAX) usleep(100);
  shmbus::Publisher<Bytes> pub(node, "audit-sleep", so);
  while (pub.update() != 1) usleep(100);
  for (std::uint64_t i = 0; i < kSleepWarmup + kSleepCycles; i++) {
    if (i == kSleepWarmup) mark();
    shmbus::Loan<Bytes> loan = pub.loan(64);
    std::memset(loan.data(), static_cast<int>(i), 64);
    pub.publish(std::move(loan));
    // Spin (the vDSO clock: no system call) until it took the sample, then
    // give it 200 us to go back to sleep.
    const auto give_up = shmbus::Clock::now() + 10s;
    while (consumed->load() != i + 1)
      if (shmbus::Clock::now() > give_up) die("the sleeper does not take");
    for (const auto until = shmbus::Clock::now() + 200us; shmbus::Clock::now() < until;) {
    }
  }
  mark();
  int status = 0;
  waitpid(child, &status, 0);
  munmap(shared, 4096);
  std::printf("hotpath-audit-cpp: %d publishes to a subscriber sleeping in another process\n",
              kSleepCycles);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("the sleeper failed");
}

// One busy cycle through the wrapper; the forms rotate so that each is
// audited: loan/publish/take, their try_ forms, send/take_latest.
std::uint64_t cycle(shmbus::Publisher<Bytes> &pub, shmbus::Subscriber<Bytes> *subs,
                    unsigned long i) {
  const std::size_t n = 64 + i % 64;
  std::uint64_t received = 0;
  switch (i % 3) {
  case 0: {
    shmbus::Loan<Bytes> loan = pub.loan(n);
    std::memset(loan.data(), static_cast<int>(i), 64);
    pub.publish(std::move(loan));
    for (int k = 0; k < 2; k++) {
      shmbus::Sample<Bytes> s = subs[k].take();
      if (!s) die("take: nothing");
      received += s.size();
    } // released by the destructor
    break;
  }
  case 1: {
    shmbus::Result<shmbus::Loan<Bytes>> loan = pub.try_loan(n);
    if (!loan) die("try_loan");
    std::memset(loan->data(), static_cast<int>(i), 64);
    if (!pub.try_publish(std::move(*loan))) die("try_publish");
    for (int k = 0; k < 2; k++) {
      shmbus::Result<shmbus::Sample<Bytes>> s = subs[k].try_take();
      if (!s || !*s) die("try_take");
      received += s->size();
      if (!s->try_release()) die("try_release");
    }
    break;
  }
  default: {
    std::uint8_t data[128];
    std::memset(data, static_cast<int>(i), sizeof data);
    pub.send(data, n);
    for (int k = 0; k < 2; k++) {
      shmbus::Sample<Bytes> s = subs[k].take_latest();
      if (!s) die("take_latest: nothing");
      received += s[0];
      shmbus::Sample<Bytes> moved = std::move(s); // a move, then the release
    }
    break;
  }
  }
  return received;
}

int run(unsigned long cycles) {
  const std::string domain = "auditcpp" + std::to_string(static_cast<long>(getpid()));
  shmbus::Node node(shmbus::NodeOptions().domain(domain));
  shmbus::ServiceOptions so = shmbus::ServiceOptions().max_elements(256).history(2);
  shmbus::Publisher<Bytes> pub(node, "audit", so);
  shmbus::Subscriber<Bytes> subs[2] = {shmbus::Subscriber<Bytes>(node, "audit", so),
                                       shmbus::Subscriber<Bytes>(node, "audit", so)};
  // Connect both ways before measuring: steady state.
  for (int connected = 0; connected < 3;)
    connected = (subs[0].publishers() == 1) + (subs[1].publishers() == 1) + (pub.update() == 2);
  // subs[1] has slept once: the publisher checks it for sleep after every
  // publish from now on, which must stay free of system calls.
  if (subs[1].wait_for(1ms) != shmbus::WaitStatus::timed_out) die("wait");

  std::uint64_t received = 0;
  for (int warm = 0; warm < 2; warm++) {
    if (warm == 1) {
      hotpath_counting = 1;
      mark();
    }
    const unsigned long n = warm == 0 ? 1000 : cycles;
    for (unsigned long i = 0; i < n; i++) received += cycle(pub, subs, i);
  }
  mark();
  hotpath_counting = 0;
  const unsigned long allocs = hotpath_allocations;
  std::printf(
      "hotpath-audit-cpp: %lu cycles through shmbus.hpp (loan/publish/take, try_loan/"
      "try_publish/try_take/try_release, send/take_latest; 2 subscribers, history 2, one "
      "of them in wait mode): %lu heap allocations\n",
      cycles, allocs);
  so.history(0);
  sleeping_phase(node, domain, so);
  (void)received;
  return allocs == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char **argv) {
  const unsigned long cycles = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1000000ul;
  try {
    return run(cycles);
  } catch (const shmbus::Error &e) {
    std::fprintf(stderr, "hotpath-audit-cpp: %s\n", e.what());
    return 2;
  }
}

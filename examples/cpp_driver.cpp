// SPDX-License-Identifier: Apache-2.0
//
// shmbus-example-cpp-driver [COUNT] [--thread]
//
// A sensor driver and its consumer in C++17 on <shmbus.hpp>, the C++ API:
//
//   shmbus::Node                      a participant of the domain
//   shmbus::Publisher<Imu>            loan() -> fill in place -> publish()
//   shmbus::Subscriber<Imu>           take() -> read in place -> released
//   shmbus::Loan<Imu>                 discarded if it goes out of scope
//                                     unpublished
//   shmbus::Sample<Imu>               released when it goes out of scope;
//                                     empty when nothing was queued
//
// Errors are shmbus::Error exceptions (code, name, message); "nothing
// queued" is an empty Sample, a wait that timed out a WaitStatus.
//
// The program publishes COUNT (default 1000) Imu readings (examples/imu.h,
// the same type as the C examples) and receives them in a second process
// (fork), or in a second thread of the same process with --thread,
// checking every one. Exit status: 0 on success, 1 on failure, 2 on bad
// usage.
#include <shmbus.hpp>

#include "example_util.hpp"
#include "imu.hpp"

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <thread>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;

const char *const kProgram = "shmbus-example-cpp-driver";
const char *const kService = "shmbus/examples/cpp-driver";

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(shmbus::Clock::now().time_since_epoch().count());
}

// A Loan that is never published gives its chunk back: loaning far more
// than max_loans without publishing must never fail.
void check_loan_guard(shmbus::Publisher<Imu> &pub) {
  for (int i = 0; i < 64; i++) {
    shmbus::Loan<Imu> unused = pub.loan();
    unused->counter = UINT64_MAX; // never seen by anyone: discarded below
  }
}

// The publishing side: a driver that reads its sensor `count` times.
void drive(const shmbus::Node &node, std::uint64_t count) {
  shmbus::Publisher<Imu> pub(node, kService, example::imu_options());
  check_loan_guard(pub);

  // Samples published before anyone listens reach nobody.
  auto deadline = shmbus::Clock::now() + 5s;
  while (pub.update() == 0) {
    if (shmbus::Clock::now() > deadline) throw std::runtime_error("no subscriber within 5 s");
    std::this_thread::sleep_for(1ms);
  }

  for (std::uint64_t i = 0; i < count; i++) {
    shmbus::Loan<Imu> reading = pub.loan(); // uninitialised, in shared memory
    imu_fill(reading.get(), i, now_ns());   // filled in place
    pub.publish(std::move(reading));        // the subscribers' now
    std::this_thread::sleep_for(100us);     // the sensor's rate
  }
  std::printf("%s: published %" PRIu64 " Imu readings\n", kProgram, count);
  std::fflush(stdout);

  // A connected subscriber keeps what is queued for it after we close, but
  // this one should also see us until the end: let it finish first.
  deadline = shmbus::Clock::now() + 10s;
  while (pub.update() > 0) {
    if (shmbus::Clock::now() > deadline) throw std::runtime_error("the subscriber did not finish");
    std::this_thread::sleep_for(1ms);
  }
}

// The consuming side: accounts for `count` readings, checking each one in
// place. Returns 0 when all were right.
int receive(const shmbus::Node &node, std::uint64_t count) {
  shmbus::Subscriber<Imu> sub(node, kService, example::imu_options());
  std::uint64_t received = 0, lost = 0, gaps = 0, next_sequence = 0;
  auto last_progress = shmbus::Clock::now();
  while (received + lost < count) {
    if (shmbus::Sample<Imu> s = sub.take()) {
      if (received > 0 && s.sequence() < next_sequence) {
        std::fprintf(stderr, "%s: sequence %" PRIu64 " after %" PRIu64 "\n", kProgram, s.sequence(),
                     next_sequence - 1);
        return 1;
      }
      if (received > 0) gaps += s.sequence() - next_sequence;
      next_sequence = s.sequence() + 1;
      if (s->counter != s.sequence() || !imu_check(s.get(), s->counter) ||
          s.timestamp_ns() < s->timestamp_ns) {
        std::fprintf(stderr, "%s: sample %" PRIu64 " is wrong (reading %" PRIu64 ")\n", kProgram,
                     s.sequence(), s->counter);
        return 1;
      }
      received++;
      last_progress = shmbus::Clock::now();
      continue; // the Sample is released here, at the end of its scope
    }
    const std::uint64_t now_lost = sub.lost();
    if (now_lost != lost) {
      lost = now_lost;
      last_progress = shmbus::Clock::now();
    }
    if (shmbus::Clock::now() - last_progress > 10s) {
      std::fprintf(stderr, "%s: no progress for 10 s: %" PRIu64 " received, %" PRIu64 " lost\n",
                   kProgram, received, lost);
      return 1;
    }
    (void)sub.wait_for(100ms); // sleeps; a publish wakes it
  }
  std::printf("%s: %" PRIu64 " of %" PRIu64 " readings received, %" PRIu64 " lost\n", kProgram,
              received, count, lost);
  std::fflush(stdout);
  if (gaps > lost || received == 0) {
    std::fprintf(stderr, "%s: %" PRIu64 " readings missing, %" PRIu64 " counted lost\n", kProgram,
                 gaps, lost);
    return 1;
  }
  return 0;
}

// The consumer in a child process, the driver in this one: what a real
// system looks like. Each process opens its own node.
int run_processes(std::uint64_t count) {
  std::fflush(stdout);
  const pid_t child = fork();
  if (child < 0) {
    std::perror("fork");
    return 1;
  }
  if (child == 0) {
    int rc = 1;
    try {
      rc = receive(shmbus::Node(), count);
    } catch (const shmbus::Error &e) {
      std::fprintf(stderr, "%s: subscriber process: %s\n", kProgram, e.what());
    }
    std::fflush(nullptr);
    _exit(rc);
  }
  int rc = 0;
  try {
    drive(shmbus::Node(), count);
  } catch (const std::exception &e) { // shmbus::Error or ours
    std::fprintf(stderr, "%s: publisher: %s\n", kProgram, e.what());
    rc = 1;
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) {
      std::perror("waitpid");
      return 1;
    }
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "%s: the subscriber process failed (status 0x%x)\n", kProgram, status);
    rc = 1;
  }
  return rc;
}

// Both sides in one process: one node, used from two threads (node calls are
// thread-safe), each port used by its own thread only.
int run_threads(std::uint64_t count) {
  shmbus::Node node;
  int reader_rc = 1;
  std::thread reader([&node, &reader_rc, count] {
    try {
      reader_rc = receive(node, count);
    } catch (const shmbus::Error &e) {
      std::fprintf(stderr, "%s: subscriber thread: %s\n", kProgram, e.what());
    }
  });
  int rc = 0;
  try {
    drive(node, count);
  } catch (const std::exception &e) {
    std::fprintf(stderr, "%s: publisher: %s\n", kProgram, e.what());
    rc = 1;
  }
  reader.join();
  return rc != 0 || reader_rc != 0 ? 1 : 0;
}

} // namespace

int main(int argc, char **argv) {
  std::uint64_t count = 1000;
  bool threads = false, have_count = false;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--thread") == 0 && !threads) {
      threads = true;
    } else if (!have_count && example::parse_count(argv[i], &count)) {
      have_count = true;
    } else {
      std::fprintf(stderr,
                   "usage: %s [COUNT] [--thread]\n"
                   "  COUNT     readings to publish and receive (default 1000)\n"
                   "  --thread  receive in a thread instead of a child process\n"
                   "  The domain is $SHMBUS_DOMAIN, else \"default\".\n",
                   kProgram);
      return 2;
    }
  }
  std::printf("%s: %" PRIu64 " readings on '%s', subscriber in a %s\n", kProgram, count, kService,
              threads ? "thread" : "child process");
  try {
    return threads ? run_threads(count) : run_processes(count);
  } catch (const shmbus::Error &e) { // opening the node
    std::fprintf(stderr, "%s: %s\n", kProgram, e.what());
    return 1;
  }
}

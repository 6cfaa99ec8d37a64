// SPDX-License-Identifier: Apache-2.0
//
// shmbus-example-imu-consumer [COUNT] [SERVICE]
//
// Consumes Imu readings (examples/imu.h) in C++17 on <shmbus.hpp>, politely:
// it sleeps in Subscriber::wait_for until a publisher wakes it (a publisher
// makes the wake-up system call only while somebody sleeps), then takes
// everything queued and checks each reading in place. Stops when COUNT
// readings are accounted for: received, or counted lost to a full queue.
//
// Reports how late the readings were when taken (from their publish
// timestamps) and how much CPU it used for how long it ran. With
// SHMBUS_EXAMPLE_MAX_CPU=P in the environment it fails when that exceeds P
// percent (the end-to-end test's proof that it sleeps).
//
// Works with any Imu driver: shmbus-example-imu-driver (C++, 1 kHz) or
// shmbus-example-publisher (C). Exit status: 0 when COUNT readings are
// accounted for and all were right; 1 on a wrong reading, an error, or 10 s
// without progress; 2 on bad usage.
#include <shmbus.hpp>

#include "example_util.hpp"
#include "imu.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <vector>

#ifdef _WIN32
#include <windows.h>
#else
#include <sys/resource.h>
#endif

namespace {

using namespace std::chrono_literals;

const char *const kProgram = "shmbus-example-imu-consumer";

// User and system time of this process, in seconds.
double cpu_seconds() {
#ifdef _WIN32
  FILETIME created, exited, kernel, user;
  if (!GetProcessTimes(GetCurrentProcess(), &created, &exited, &kernel, &user)) return 0;
  auto ticks = [](const FILETIME &t) {
    return static_cast<double>((static_cast<std::uint64_t>(t.dwHighDateTime) << 32) |
                               t.dwLowDateTime);
  };
  return (ticks(kernel) + ticks(user)) / 1e7; // 100 ns ticks
#else
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
#endif
}

// Sequence numbers count up from 0 per publisher: each stream is checked
// on its own. Returns false (after saying why) for a wrong reading.
class Tally {
 public:
  bool check(const shmbus::Sample<Imu> &s) {
    auto next = next_.find(s.publisher_id());
    if (next != next_.end()) {
      if (s.sequence() < next->second) {
        std::fprintf(stderr, "%s: sequence %" PRIu64 " after %" PRIu64 "\n", kProgram, s.sequence(),
                     next->second - 1);
        return false;
      }
      gaps += s.sequence() - next->second;
    }
    next_[s.publisher_id()] = s.sequence() + 1;
    // Read in place: the publisher's memory, mapped read-only here.
    if (s->counter != s.sequence() || !imu_check(s.get(), s->counter) ||
        s.timestamp_ns() < s->timestamp_ns) {
      std::fprintf(stderr, "%s: sample %" PRIu64 " holds reading %" PRIu64 ", or wrong values\n",
                   kProgram, s.sequence(), s->counter);
      return false;
    }
    ages_us.push_back(std::chrono::duration<double, std::micro>(s.age()).count());
    received++;
    return true;
  }
  std::size_t publishers() const { return next_.size(); }

  std::uint64_t received = 0;
  std::uint64_t gaps = 0; // sequence numbers skipped between received readings
  std::vector<double> ages_us;

 private:
  std::map<std::uint64_t, std::uint64_t> next_;
};

int run(std::uint64_t count, const char *service) {
  shmbus::Node node;
  // Either side may start first: both ask for the same options.
  shmbus::Subscriber<Imu> sub(node, service, example::imu_options());
  std::printf("%s: waiting for %" PRIu64 " readings on '%s' (domain '%s')\n", kProgram, count,
              service, node.domain());
  std::fflush(stdout);

  Tally t;
  t.ages_us.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(count, 1u << 24)));
  std::uint64_t lost = 0, wakeups = 0;
  const double cpu0 = cpu_seconds();
  auto first = shmbus::Clock::now(), last_progress = first;
  bool started = false;
  while (t.received + lost < count) {
    if (example::interrupted()) {
      std::fprintf(stderr, "%s: interrupted\n", kProgram);
      return 1;
    }
    // Everything queued, each Sample released at the end of its iteration.
    while (shmbus::Sample<Imu> s = sub.take()) {
      if (!started) {
        started = true;
        first = shmbus::Clock::now();
      }
      if (!t.check(s)) return 1;
      last_progress = shmbus::Clock::now();
    }
    if (sub.lost() != lost) {
      lost = sub.lost();
      last_progress = shmbus::Clock::now();
    }
    if (t.received + lost >= count) break;
    if (shmbus::Clock::now() - last_progress > 10s) {
      std::fprintf(stderr, "%s: no reading for 10 s: %" PRIu64 " received, %" PRIu64 " lost\n",
                   kProgram, t.received, lost);
      return 1;
    }
    // Sleeps until a reading arrives; at most 100 ms, to see signals.
    if (sub.wait_for(100ms) == shmbus::WaitStatus::ready) wakeups++;
  }
  const double wall = std::chrono::duration<double>(shmbus::Clock::now() - first).count();
  const double cpu = cpu_seconds() - cpu0;

  std::sort(t.ages_us.begin(), t.ages_us.end());
  const double p50 = t.ages_us.empty() ? 0 : t.ages_us[t.ages_us.size() / 2];
  const double worst = t.ages_us.empty() ? 0 : t.ages_us.back();
  const double cpu_percent = wall > 0 ? 100.0 * cpu / wall : 0;
  std::printf("%s: %" PRIu64 " of %" PRIu64 " readings received, %" PRIu64
              " lost, from %zu publisher(s); %" PRIu64 " wake-ups\n",
              kProgram, t.received, count, lost, t.publishers(), wakeups);
  std::printf("%s: age when taken: median %.1f us, worst %.1f us; CPU %.3f s in %.3f s (%.1f%%)\n",
              kProgram, p50, worst, cpu, wall, cpu_percent);
  if (t.gaps > lost) {
    std::fprintf(stderr, "%s: %" PRIu64 " readings missing, only %" PRIu64 " counted lost\n",
                 kProgram, t.gaps, lost);
    return 1;
  }
  if (t.received == 0) {
    std::fprintf(stderr, "%s: every reading was lost\n", kProgram);
    return 1;
  }
  if (const char *max = std::getenv("SHMBUS_EXAMPLE_MAX_CPU")) {
    if (cpu_percent > std::atof(max)) {
      std::fprintf(stderr, "%s: used %.1f%% CPU, more than %s%%: it did not sleep\n", kProgram,
                   cpu_percent, max);
      return 1;
    }
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  std::uint64_t count = 2000;
  if (argc > 3 || (argc > 1 && !example::parse_count(argv[1], &count))) {
    std::fprintf(stderr,
                 "usage: %s [COUNT] [SERVICE]\n"
                 "  COUNT    readings to account for (default 2000)\n"
                 "  SERVICE  service name (default \"%s\")\n"
                 "  The domain is $SHMBUS_DOMAIN, else \"default\"; SHMBUS_EXAMPLE_MAX_CPU=P\n"
                 "  fails the run above P percent of one CPU.\n",
                 kProgram, IMU_DEFAULT_SERVICE);
    return 2;
  }
  example::catch_signals();
  try {
    return run(count, argc > 2 ? argv[2] : IMU_DEFAULT_SERVICE);
  } catch (const shmbus::Error &e) {
    std::fprintf(stderr, "%s: %s\n", kProgram, e.what());
    return 1;
  }
}

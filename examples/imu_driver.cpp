// SPDX-License-Identifier: Apache-2.0
//
// shmbus-example-imu-driver [COUNT] [SERVICE]
//
// An IMU driver in C++17 on <shmbus.hpp>: reads its (simulated) sensor at
// 1 kHz and publishes every reading zero-copy: loan an Imu in shared
// memory, fill it in place, publish it. On a fixed schedule (1 ms ticks
// from the start, no drift), with the achieved rate and the worst lateness
// of a tick reported at the end.
//
// The type and options are those of examples/imu.h, so any Imu consumer
// works with it: shmbus-example-imu-consumer (C++, sleeps in wait) or
// shmbus-example-subscriber (C). SERVICE defaults to "shmbus/examples/imu";
// the domain is $SHMBUS_DOMAIN, else "default".
//
// Waits up to 5 s for a subscriber before the first reading. After the last
// one it closes at once: connected subscribers keep what is queued for them.
// Exit status: 0 on success, 1 on failure, 2 on bad usage.
#include <shmbus.hpp>

#include "example_util.hpp"
#include "imu.hpp"

#include <cinttypes>
#include <cstdio>
#include <thread>

namespace {

using namespace std::chrono_literals;

const char *const kProgram = "shmbus-example-imu-driver";
constexpr auto kPeriod = 1ms; // 1 kHz

int run(std::uint64_t count, const char *service) {
  shmbus::Node node; // domain: $SHMBUS_DOMAIN or "default"
  shmbus::Publisher<Imu> pub(node, service, example::imu_options());
  std::printf("%s: waiting for a subscriber on '%s' (domain '%s')\n", kProgram, service,
              node.domain());
  std::fflush(stdout);

  // Samples published while nobody listens reach nobody.
  const auto give_up = shmbus::Clock::now() + 5s;
  while (pub.update() == 0) {
    if (example::interrupted() || shmbus::Clock::now() > give_up) {
      std::fprintf(stderr, "%s: no subscriber within 5 s\n", kProgram);
      return 1;
    }
    std::this_thread::sleep_for(1ms);
  }

  const auto start = std::chrono::steady_clock::now();
  auto tick = start;
  std::chrono::nanoseconds worst_late(0);
  for (std::uint64_t i = 0; i < count; i++) {
    if (example::interrupted()) {
      std::fprintf(stderr, "%s: interrupted after %" PRIu64 " readings\n", kProgram, i);
      return 1;
    }
    tick += kPeriod;
    std::this_thread::sleep_until(tick);
    const auto late = std::chrono::steady_clock::now() - tick;
    if (late > worst_late) worst_late = late;

    shmbus::Loan<Imu> reading = pub.loan(); // an uninitialised Imu in shared memory
    const auto now = shmbus::Clock::now().time_since_epoch();
    imu_fill(reading.get(), i, static_cast<std::uint64_t>(now.count())); // in place
    pub.publish(std::move(reading)); // zero-copy: the subscribers read these bytes
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s: published %" PRIu64 " readings in %.3f s (%.0f Hz), worst tick %.3f ms late\n",
              kProgram, count, seconds, static_cast<double>(count) / seconds,
              std::chrono::duration<double, std::milli>(worst_late).count());
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  std::uint64_t count = 2000;
  if (argc > 3 || (argc > 1 && !example::parse_count(argv[1], &count))) {
    std::fprintf(stderr,
                 "usage: %s [COUNT] [SERVICE]\n"
                 "  COUNT    readings to publish at 1 kHz (default 2000)\n"
                 "  SERVICE  service name (default \"%s\")\n"
                 "  The domain is $SHMBUS_DOMAIN, else \"default\".\n",
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

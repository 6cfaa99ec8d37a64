// SPDX-License-Identifier: Apache-2.0
//
// shmbus-example-camera-driver [COUNT] [SERVICE]
//
// A camera driver in C++17 on <shmbus.hpp>: COUNT (default 60) frames of
// 8 MiB at 30 frames per second, zero-copy. Each frame is loaned in shared
// memory, the "sensor" writes its pixels there (examples/camera.hpp,
// expose), and publishing hands those very bytes to every subscriber: no
// frame is ever copied, whatever its size. Run shmbus-example-camera-viewer
// next to it. SERVICE defaults to "shmbus/examples/camera"; the domain is
// $SHMBUS_DOMAIN, else "default".
//
// Waits up to 5 s for a viewer before the first frame; closes after the
// last one (a connected viewer keeps what is queued for it).
// Exit status: 0 on success, 1 on failure, 2 on bad usage.
#include <shmbus.hpp>

#include "camera.hpp"
#include "example_util.hpp"

#include <cinttypes>
#include <cstdio>
#include <thread>

namespace {

using namespace std::chrono_literals;

const char *const kProgram = "shmbus-example-camera-driver";
const char *const kDefaultService = "shmbus/examples/camera";
constexpr std::chrono::nanoseconds kFramePeriod(1000000000 / 30);

int run(std::uint64_t count, const char *service) {
  shmbus::Node node;
  shmbus::Publisher<example::Frame> pub(node, service, example::camera_options());
  std::printf("%s: %zu-byte frames on '%s' (domain '%s'); waiting for a viewer\n", kProgram,
              sizeof(example::Frame), service, node.domain());
  std::fflush(stdout);

  const auto give_up = shmbus::Clock::now() + 5s;
  while (pub.update() == 0) {
    if (example::interrupted() || shmbus::Clock::now() > give_up) {
      std::fprintf(stderr, "%s: no viewer within 5 s\n", kProgram);
      return 1;
    }
    std::this_thread::sleep_for(1ms);
  }

  std::chrono::nanoseconds writing(0);
  auto tick = std::chrono::steady_clock::now();
  const auto start = tick;
  for (std::uint64_t n = 0; n < count; n++) {
    if (example::interrupted()) {
      std::fprintf(stderr, "%s: interrupted after %" PRIu64 " frames\n", kProgram, n);
      return 1;
    }
    std::this_thread::sleep_until(tick);
    tick += kFramePeriod;

    // The frame lives in shared memory from the start: the loan is where the
    // sensor's readout goes. (Never a Frame on the stack: it is 8 MiB.)
    shmbus::Loan<example::Frame> frame = pub.loan();
    const auto t0 = shmbus::Clock::now();
    example::expose(*frame, n, static_cast<std::uint64_t>(t0.time_since_epoch().count()));
    writing += shmbus::Clock::now() - t0;
    pub.publish(std::move(frame)); // zero-copy: the viewer reads these bytes
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "%s: published %" PRIu64
      " frames (%.0f MiB) in %.2f s; writing a frame took "
      "%.2f ms on average\n",
      kProgram, count, static_cast<double>(count) * sizeof(example::Frame) / 1048576.0, seconds,
      std::chrono::duration<double, std::milli>(writing).count() / static_cast<double>(count));
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  std::uint64_t count = 60;
  if (argc > 3 || (argc > 1 && !example::parse_count(argv[1], &count))) {
    std::fprintf(stderr,
                 "usage: %s [COUNT] [SERVICE]\n"
                 "  COUNT    frames to publish at 30 fps (default 60)\n"
                 "  SERVICE  service name (default \"%s\")\n"
                 "  The domain is $SHMBUS_DOMAIN, else \"default\".\n",
                 kProgram, kDefaultService);
    return 2;
  }
  example::catch_signals();
  try {
    return run(count, argc > 2 ? argv[2] : kDefaultService);
  } catch (const shmbus::Error &e) {
    std::fprintf(stderr, "%s: %s\n", kProgram, e.what());
    return 1;
  }
}

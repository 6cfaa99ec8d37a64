// SPDX-License-Identifier: Apache-2.0
//
// shmbus-example-camera-viewer [COUNT] [SERVICE]
//
// The consumer of shmbus-example-camera-driver, in C++17 on <shmbus.hpp>:
// sleeps until a frame arrives, then checks every pixel of it in place, in
// the driver's shared memory, through the Sample<Frame> (no copy), and
// releases it. Stops when COUNT (default 60) frames are accounted for:
// checked, or dropped because it fell behind (the queue keeps the newest
// two). On Linux it also shows where the first frame was read: a read-only
// mapping of the driver's segment in /dev/shm, not memory of its own.
//
// Exit status: 0 when COUNT frames are accounted for and every checked one
// was exactly what the driver wrote; 1 otherwise (or after 10 s without a
// frame); 2 on bad usage.
#include <shmbus.hpp>

#include "camera.hpp"
#include "example_util.hpp"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

using namespace std::chrono_literals;

const char *const kProgram = "shmbus-example-camera-viewer";
const char *const kDefaultService = "shmbus/examples/camera";

// The line of /proc/self/maps that holds `p` (Linux), or "".
std::string mapping_of(const void *p) {
  std::FILE *f = std::fopen("/proc/self/maps", "r");
  if (f == nullptr) return "";
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  char line[1024];
  std::string found;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long long lo = 0, hi = 0;
    if (std::sscanf(line, "%llx-%llx", &lo, &hi) == 2 && addr >= lo && addr < hi) {
      found = line;
      if (!found.empty() && found.back() == '\n') found.pop_back();
      break;
    }
  }
  std::fclose(f);
  return found;
}

// In place: the frame is in a shared, read-only mapping of a shmbus
// segment. True where that cannot be seen (no /proc).
bool read_in_place(const example::Frame &f) {
  const std::string m = mapping_of(&f);
  if (m.empty()) return true;
  std::printf("%s: frame %" PRIu64 " is read in place at %p:\n  %s\n", kProgram, f.number,
              static_cast<const void *>(&f), m.c_str());
  // "start-end perms offset dev inode path": read-only and shared (r--s), a
  // file of shmbus (the POSIX shared memory backend: /dev/shm/shmbus.*).
  const bool shared_ro = m.find(" r--s ") != std::string::npos;
  const bool shmbus_object = m.find("/shmbus.") != std::string::npos;
  return shared_ro && shmbus_object;
}

int run(std::uint64_t count, const char *service) {
  shmbus::Node node;
  shmbus::Subscriber<example::Frame> sub(node, service, example::camera_options());
  std::printf("%s: waiting for %" PRIu64 " frames on '%s' (domain '%s')\n", kProgram, count,
              service, node.domain());
  std::fflush(stdout);

  std::uint64_t checked = 0, lost = 0, gaps = 0, next = 0;
  std::chrono::nanoseconds checking(0), worst_age(0);
  auto last_progress = shmbus::Clock::now();
  while (checked + lost < count) {
    if (example::interrupted()) {
      std::fprintf(stderr, "%s: interrupted\n", kProgram);
      return 1;
    }
    if (shmbus::Sample<example::Frame> frame = sub.take()) {
      const example::Frame &f = *frame; // 8 MiB, in the driver's memory
      if (checked == 0 && !read_in_place(f)) {
        std::fprintf(stderr, "%s: the frame is not in a read-only shared mapping\n", kProgram);
        return 1;
      }
      if (checked > 0 && frame.sequence() < next) {
        std::fprintf(stderr, "%s: frame %" PRIu64 " after %" PRIu64 "\n", kProgram,
                     frame.sequence(), next - 1);
        return 1;
      }
      if (checked > 0) gaps += frame.sequence() - next;
      next = frame.sequence() + 1;
      const auto t0 = shmbus::Clock::now();
      const long long wrong = example::first_wrong_pixel(f);
      checking += shmbus::Clock::now() - t0;
      if (f.number != frame.sequence() || f.width != example::kWidth ||
          f.height != example::kHeight || f.stride != example::kWidth * 4 ||
          f.fourcc != example::kFourccRgba || wrong >= 0 || frame.timestamp_ns() < f.exposure_ns) {
        std::fprintf(stderr, "%s: frame %" PRIu64 " (number %" PRIu64 ") is wrong at pixel %lld\n",
                     kProgram, frame.sequence(), f.number, wrong);
        return 1;
      }
      if (frame.age() > worst_age) worst_age = frame.age();
      checked++;
      last_progress = shmbus::Clock::now();
      continue; // released here: the driver may reuse its memory
    }
    if (sub.lost() != lost) {
      lost = sub.lost();
      last_progress = shmbus::Clock::now();
    }
    if (shmbus::Clock::now() - last_progress > 10s) {
      std::fprintf(stderr, "%s: no frame for 10 s: %" PRIu64 " checked, %" PRIu64 " lost\n",
                   kProgram, checked, lost);
      return 1;
    }
    (void)sub.wait_for(100ms);
  }
  std::printf("%s: %" PRIu64 " of %" PRIu64 " frames checked pixel by pixel in place, %" PRIu64
              " dropped; checking took %.2f ms per frame; worst age %.2f ms\n",
              kProgram, checked, count, lost,
              checked ? std::chrono::duration<double, std::milli>(checking).count() /
                            static_cast<double>(checked)
                      : 0.0,
              std::chrono::duration<double, std::milli>(worst_age).count());
  if (gaps > lost || checked == 0) {
    std::fprintf(stderr, "%s: %" PRIu64 " frames missing, %" PRIu64 " counted lost\n", kProgram,
                 gaps, lost);
    return 1;
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  std::uint64_t count = 60;
  if (argc > 3 || (argc > 1 && !example::parse_count(argv[1], &count))) {
    std::fprintf(stderr,
                 "usage: %s [COUNT] [SERVICE]\n"
                 "  COUNT    frames to account for (default 60)\n"
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

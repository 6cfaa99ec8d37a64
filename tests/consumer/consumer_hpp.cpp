// SPDX-License-Identifier: Apache-2.0
//
// A user of an installed shmbus through its C++ API, <shmbus.hpp>: a typed
// round trip (loan, fill in place, publish, take, read in place, release)
// on a domain of its own, and a slice. Built by tests/consumer/run.sh with
// find_package(shmbus) and with pkg-config, also with -fno-exceptions (then
// only the try_ forms exist). Exit 0 on success, 1 on failure.
#include <shmbus.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <utility>

namespace consumer {
struct Reading {
  double celsius;
  std::uint32_t sensor;
  std::uint32_t flags;
};
} // namespace consumer

SHMBUS_TYPE_NAME(consumer::Reading, "consumer/Reading");

namespace {

bool ok(const shmbus::Status &s, const char *what) {
  if (s) return true;
  std::fprintf(stderr, "consumer_hpp: %s: %s (%s)\n", what, s.error_message(), s.error_name());
  return false;
}

template <class T>
bool ok(const shmbus::Result<T> &r, const char *what) {
  if (r) return true;
  std::fprintf(stderr, "consumer_hpp: %s: %s (%s)\n", what, r.error_message(), r.error_name());
  return false;
}

int run() {
  const std::string domain = "consumer-cxx-" + std::to_string(static_cast<long>(getpid()));
  shmbus::Result<shmbus::Node> node = shmbus::Node::try_open(shmbus::NodeOptions().domain(domain));
  if (!ok(node, "Node::try_open")) return 1;
  const shmbus::ServiceOptions opts = shmbus::ServiceOptions().queue_depth(4).max_elements(8);

  auto pub = shmbus::Publisher<consumer::Reading>::try_open(*node, "consumer/reading", opts);
  auto sub = shmbus::Subscriber<consumer::Reading>::try_open(*node, "consumer/reading", opts);
  if (!ok(pub, "Publisher::try_open") || !ok(sub, "Subscriber::try_open")) return 1;
  for (int i = 0; i < 1000; i++) {
    shmbus::Result<int> pubs = sub->try_publishers();
    shmbus::Result<int> subs = pub->try_update();
    if (pubs && subs && *pubs == 1 && *subs == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  shmbus::Result<shmbus::Loan<consumer::Reading>> loan = pub->try_loan();
  if (!ok(loan, "try_loan")) return 1;
  loan->emplace(consumer::Reading{21.5, 7u, 0x10u}); // constructed in place
  if (!ok(pub->try_publish(std::move(*loan)), "try_publish")) return 1;

  shmbus::Result<shmbus::Sample<consumer::Reading>> got = sub->try_take();
  if (!ok(got, "try_take")) return 1;
  const shmbus::Sample<consumer::Reading> &s = *got;
  if (!s || s->celsius != 21.5 || s->sensor != 7u || s->flags != 0x10u || s.sequence() != 0 ||
      s.publisher_id() != pub->id()) {
    std::fprintf(stderr, "consumer_hpp: wrong sample\n");
    return 1;
  }
  if (!ok(got->try_release(), "try_release")) return 1;

  // A slice of the same service's neighbour: up to 8 floats per sample.
  auto fpub = shmbus::Publisher<float[]>::try_open(*node, "consumer/floats", opts);
  auto fsub = shmbus::Subscriber<float[]>::try_open(*node, "consumer/floats", opts);
  if (!ok(fpub, "slice publisher") || !ok(fsub, "slice subscriber")) return 1;
  for (int i = 0; i < 1000 && !(*fsub->try_publishers() == 1 && *fpub->try_update() == 1); i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const float values[3] = {1.0f, 2.0f, 4.0f};
  if (!ok(fpub->try_send(values, 3), "slice send")) return 1;
  shmbus::Result<shmbus::Sample<float[]>> slice = fsub->try_take();
  if (!ok(slice, "slice take") || !*slice || slice->size() != 3 || (*slice)[2] != 4.0f) {
    std::fprintf(stderr, "consumer_hpp: wrong slice\n");
    return 1;
  }

#if SHMBUS_CPP_EXCEPTIONS
  try {
    pub->send(consumer::Reading{1.0, 1u, 0u});
    shmbus::Sample<consumer::Reading> again = sub->take();
    if (!again || again.sequence() != 1) return 1;
  } catch (const shmbus::Error &e) {
    std::fprintf(stderr, "consumer_hpp: %s\n", e.what());
    return 1;
  }
#endif
  std::printf("consumer_hpp: ok (shmbus %s, C++%ld, exceptions %s, domain %s)\n", shmbus::version(),
              static_cast<long>(__cplusplus / 100 % 100), SHMBUS_CPP_EXCEPTIONS ? "on" : "off",
              domain.c_str());
  return 0;
}

} // namespace

int main() { return run(); }

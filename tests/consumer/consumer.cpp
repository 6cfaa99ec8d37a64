// SPDX-License-Identifier: Apache-2.0
//
// The C++ side of the consumer test: the same round trip as consumer.c,
// with the handles owned by std::unique_ptr. Exit 0 on success, 1 on failure.
#include <shmbus.h>

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

namespace {

struct NodeCloser {
  void operator()(shmbus_node *n) const { shmbus_node_close(n); }
};
struct PublisherCloser {
  void operator()(shmbus_publisher *p) const { shmbus_publisher_close(p); }
};
struct SubscriberCloser {
  void operator()(shmbus_subscriber *s) const { shmbus_subscriber_close(s); }
};

bool ok(int rc, const char *what) {
  if (rc >= 0) return true;
  std::fprintf(stderr, "consumer_cpp: %s failed: %s (%s)\n", what, shmbus_err_name(rc),
               shmbus_strerror(rc));
  return false;
}

struct Reading {
  double celsius;
  std::uint32_t sensor;
  std::uint32_t flags;
};

int run() {
  const std::string domain = "consumer-cpp-" + std::to_string(static_cast<long>(getpid()));
  shmbus_node_opts node_opts = SHMBUS_NODE_OPTS_INIT;
  node_opts.domain = domain.c_str();
  shmbus_service_opts opts = SHMBUS_SERVICE_OPTS_INIT;
  opts.type = shmbus_type{"consumer/Reading", sizeof(Reading), alignof(Reading)};

  shmbus_node *raw_node = nullptr;
  if (!ok(shmbus_node_open(&node_opts, &raw_node), "shmbus_node_open")) return 1;
  std::unique_ptr<shmbus_node, NodeCloser> node(raw_node);

  shmbus_publisher *raw_pub = nullptr;
  if (!ok(shmbus_publisher_open(node.get(), "consumer/reading", &opts, &raw_pub),
          "shmbus_publisher_open"))
    return 1;
  std::unique_ptr<shmbus_publisher, PublisherCloser> pub(raw_pub);

  shmbus_subscriber *raw_sub = nullptr;
  if (!ok(shmbus_subscriber_open(node.get(), "consumer/reading", &opts, &raw_sub),
          "shmbus_subscriber_open"))
    return 1;
  std::unique_ptr<shmbus_subscriber, SubscriberCloser> sub(raw_sub);

  if (!ok(shmbus_subscriber_publishers(sub.get()), "shmbus_subscriber_publishers")) return 1;
  if (!ok(shmbus_publisher_update(pub.get()), "shmbus_publisher_update")) return 1;

  const Reading sent = {21.5, 7u, 0x10u};
  if (!ok(shmbus_publisher_send_copy(pub.get(), &sent, sizeof sent), "shmbus_publisher_send_copy"))
    return 1;

  shmbus_sample sample = shmbus_sample();
  int rc = SHMBUS_ERR_EMPTY;
  for (int tries = 0; tries < 1000; tries++) {
    rc = shmbus_subscriber_take(sub.get(), &sample);
    if (rc != SHMBUS_ERR_EMPTY) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!ok(rc, "shmbus_subscriber_take")) return 1;

  Reading got;
  if (sample.bytes != sizeof got || sample.payload == nullptr) {
    std::fprintf(stderr, "consumer_cpp: sample of %zu bytes, expected %zu\n", sample.bytes,
                 sizeof got);
    return 1;
  }
  std::memcpy(&got, sample.payload, sizeof got);
  if (got.celsius != sent.celsius || got.sensor != sent.sensor || got.flags != sent.flags) {
    std::fprintf(stderr, "consumer_cpp: wrong sample\n");
    return 1;
  }
  if (!ok(shmbus_subscriber_release(sub.get(), &sample), "shmbus_subscriber_release")) return 1;

  std::printf("consumer_cpp: ok (shmbus %s, domain %s)\n", shmbus_version_string(), domain.c_str());
  return 0;
}

} // namespace

int main() { return run(); }

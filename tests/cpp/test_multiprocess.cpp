// SPDX-License-Identifier: Apache-2.0
//
// Real processes: two C++ processes exchanging typed samples (a stream with
// every sequence number accounted for, and a request/reply ping-pong where
// both sides sleep in wait), C++ and C exchanging 10^6 samples in both
// directions (the C side is tests/cpp/c_peer.c, exec'd), and a publisher
// killed while a sample of it is held.
#include "support.hpp"

using cpptest::make_reading;
using cpptest::Reading;
using cpptest::Reply;
using cpptest::Request;
using cpptest::TestDomain;

namespace {

using Ms = std::chrono::milliseconds;

const shmbus::ServiceOptions kStream =
    shmbus::ServiceOptions().queue_depth(256).overflow(shmbus::Overflow::block);

const shmbus::ServiceOptions kPeer =
    shmbus::ServiceOptions().queue_depth(CPP_PEER_QUEUE_DEPTH).overflow(shmbus::Overflow::block);

// The child of "a stream": takes `count` Readings, exactly seq 0..count-1.
int receive_stream(const TestDomain &d, const std::string &service, std::uint64_t count) {
  shmbus::Node node = d.node();
  shmbus::Subscriber<Reading> sub(node, service, kStream);
  std::uint64_t next = 0;
  auto last = std::chrono::steady_clock::now();
  while (next < count) {
    shmbus::Sample<Reading> s = sub.take();
    if (!s) {
      if (sub.wait_for(Ms(100)) == shmbus::WaitStatus::timed_out &&
          std::chrono::steady_clock::now() - last > std::chrono::seconds(20)) {
        std::fprintf(stderr, "stream: stuck at %llu\n", static_cast<unsigned long long>(next));
        return 1;
      }
      continue;
    }
    CHILD_CHECK(s->seq == next);
    CHILD_CHECK(s.sequence() == next);
    CHILD_CHECK(cpptest::valid(*s));
    next++;
    last = std::chrono::steady_clock::now();
  }
  CHILD_CHECK(sub.lost() == 0);
  return 0;
}

std::uint64_t env_count(const char *name, std::uint64_t fallback) {
  const char *v = std::getenv(name);
  return v != nullptr ? std::strtoull(v, nullptr, 10) : fallback;
}

} // namespace

TEST_SUITE("multiprocess") {
  TEST_CASE("two C++ processes: a stream of typed samples, every sequence number accounted for") {
    TestDomain d;
    const std::string service = cpptest::service_name("stream");
    const std::uint64_t count = 200000;
    const pid_t child = cpptest::fork_child([&] { return receive_stream(d, service, count); });
    {
      shmbus::Node node = d.node();
      shmbus::Publisher<Reading> pub(node, service, kStream);
      pub.set_block_timeout(std::chrono::seconds(20));
      REQUIRE(cpptest::eventually([&] { return pub.update() == 1; }));
      for (std::uint64_t i = 0; i < count; i++) {
        shmbus::Loan<Reading> loan = pub.loan();
        loan.emplace(make_reading(i));
        pub.publish(std::move(loan));
      }
      // Connected subscribers keep what is queued; wait until it is done.
      CHECK(cpptest::eventually([&] { return pub.update() == 0; }, Ms(30000)));
    }
    CHECK(cpptest::wait_child(child) == 0);
  }

  TEST_CASE("two C++ processes: request and reply, both sleeping in wait") {
    TestDomain d;
    const int rounds = 2000;
    const pid_t child = cpptest::fork_child([&] {
      shmbus::Node node = d.node();
      shmbus::Subscriber<Request> requests(node, "rpc/request");
      shmbus::Publisher<Reply> replies(node, "rpc/reply");
      for (int served = 0; served < rounds;) {
        shmbus::Sample<Request> q = requests.take();
        if (!q) {
          CHILD_CHECK(requests.wait_for(std::chrono::seconds(20)) != shmbus::WaitStatus::timed_out);
          continue;
        }
        shmbus::Loan<Reply> a = replies.loan();
        a->id = q->id;
        a->sum = static_cast<std::int64_t>(q->x) + q->y;
        while (replies.update() < 1) std::this_thread::sleep_for(Ms(1));
        replies.publish(std::move(a));
        served++;
      }
      // Until the parent has taken the last reply.
      return cpptest::eventually([&] { return replies.update() == 0; }, Ms(20000)) ? 0 : 1;
    });
    {
      shmbus::Node node = d.node();
      shmbus::Publisher<Request> requests(node, "rpc/request");
      shmbus::Subscriber<Reply> replies(node, "rpc/reply");
      REQUIRE(cpptest::eventually([&] { return requests.update() == 1; }));
      for (int i = 0; i < rounds; i++) {
        Request q = {static_cast<std::uint64_t>(i), i, -2 * i + 7};
        requests.send(q);
        shmbus::Sample<Reply> a;
        while (!(a = replies.take()))
          REQUIRE(replies.wait_for(std::chrono::seconds(20)) != shmbus::WaitStatus::timed_out);
        REQUIRE(a->id == static_cast<std::uint64_t>(i));
        REQUIRE(a->sum == static_cast<std::int64_t>(-i + 7));
      }
    }
    CHECK(cpptest::wait_child(child) == 0);
  }

  TEST_CASE("a C++ subscriber takes 10^6 samples from a C publisher, every one in order") {
    TestDomain d;
    const std::uint64_t count = env_count("SHMBUS_CPP_TEST_COUNT", 1000000);
    const std::string service = cpptest::service_name("from-c");
    shmbus::Node node = d.node();
    shmbus::Subscriber<cpp_peer_reading> sub(node, service, kPeer);
    const pid_t peer =
        cpptest::spawn(d.name(), {SHMBUS_CPP_TEST_C_PEER, "pub", std::to_string(count), service});
    std::uint64_t next = 0;
    auto last = std::chrono::steady_clock::now();
    bool ok = true;
    while (ok && next < count) {
      shmbus::Sample<cpp_peer_reading> s = sub.take();
      if (!s) {
        if (std::chrono::steady_clock::now() - last > std::chrono::seconds(30)) break;
        continue; // busy: the C publisher backs off when the queue is full
      }
      ok = s->seq == next && s.sequence() == next && cpp_peer_valid(s.get());
      if (!ok) FAIL_CHECK("sample " << next << ": seq " << s->seq << ", sequence " << s.sequence());
      next++;
      last = std::chrono::steady_clock::now();
    }
    CHECK(next == count);
    CHECK(sub.lost() == 0);
    sub.close();
    CHECK(cpptest::wait_child(peer) == 0);
  }

  TEST_CASE("a C subscriber takes 10^6 samples from a C++ publisher, every one in order") {
    TestDomain d;
    const std::uint64_t count = env_count("SHMBUS_CPP_TEST_COUNT", 1000000);
    const std::string service = cpptest::service_name("to-c");
    const pid_t peer =
        cpptest::spawn(d.name(), {SHMBUS_CPP_TEST_C_PEER, "sub", std::to_string(count), service});
    {
      shmbus::Node node = d.node();
      shmbus::Publisher<cpp_peer_reading> pub(node, service, kPeer);
      pub.set_block_timeout(std::chrono::seconds(30));
      REQUIRE(cpptest::eventually([&] { return pub.update() == 1; }));
      for (std::uint64_t i = 0; i < count; i++) {
        shmbus::Loan<cpp_peer_reading> loan = pub.loan();
        cpp_peer_fill(loan.get(), i);
        pub.publish(std::move(loan));
      }
      CHECK(cpptest::eventually([&] { return pub.update() == 0; }, Ms(30000)));
    }
    CHECK(cpptest::wait_child(peer) == 0);
  }

  TEST_CASE("a publisher killed while its sample is held: the sample stays readable") {
    TestDomain d;
    const std::string service = cpptest::service_name("killed");
    shmbus::Node node = d.node();
    shmbus::Subscriber<Reading> sub(node, service);
    const pid_t child = cpptest::fork_child([&] {
      shmbus::Node n = d.node();
      shmbus::Publisher<Reading> pub(n, service);
      while (pub.update() < 1) std::this_thread::sleep_for(Ms(1));
      pub.send(make_reading(1));
      pub.send(make_reading(2));
      pause(); // until killed
      return 0;
    });
    shmbus::Sample<Reading> held;
    REQUIRE(cpptest::eventually([&] {
      sub.publishers();
      held = sub.take();
      return static_cast<bool>(held);
    }));
    kill(child, SIGKILL);
    CHECK(cpptest::wait_child(child) == 128 + SIGKILL);
    CHECK(held->seq == 1); // the dead publisher's memory is still mapped
    CHECK(cpptest::valid(*held));
    shmbus::Sample<Reading> queued = sub.take(); // and what it queued can be taken
    REQUIRE(queued);
    CHECK(queued->seq == 2);
    CHECK(sub.wait_for(std::chrono::seconds(5)) == shmbus::WaitStatus::no_publisher);
    held.release();
    queued.release();
    CHECK(node.cleanup() >= 1); // its token and its segments
  }
}

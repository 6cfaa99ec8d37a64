// SPDX-License-Identifier: Apache-2.0
//
// Waiting with std::chrono: timeouts, a sample arriving while the
// subscriber sleeps, the loss of the last publisher, deadlines on any
// clock, and the metadata a sample carries (sequence, timestamp, age).
#include "support.hpp"

using cpptest::make_reading;
using cpptest::Reading;
using cpptest::TestDomain;

namespace {
using Ms = std::chrono::milliseconds;
}

TEST_SUITE("wait") {
  TEST_CASE("wait_for times out after about its timeout; zero looks once") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus::Subscriber<Reading> sub(node, "silent");
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(sub.wait_for(Ms(50)) == shmbus::WaitStatus::timed_out);
    const auto took = std::chrono::steady_clock::now() - t0;
    CHECK(took >= Ms(45));
    CHECK(took < Ms(5000));
    CHECK(sub.wait_for(Ms(0)) == shmbus::WaitStatus::timed_out);
    CHECK(sub.wait_for(Ms(-5)) == shmbus::WaitStatus::timed_out);
    shmbus::Result<shmbus::WaitStatus> r = sub.try_wait_for(std::chrono::microseconds(100));
    REQUIRE(r.ok());
    CHECK(*r == shmbus::WaitStatus::timed_out);
  }

  TEST_CASE("a sample published while the subscriber sleeps wakes it") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus::Publisher<Reading> pub(node, "wake");
    shmbus::Subscriber<Reading> sub(node, "wake");
    REQUIRE(cpptest::connect(pub, sub));
    // Another thread uses the publisher only (ports may be used from
    // different threads; each by one at a time).
    std::thread publisher([&pub] {
      std::this_thread::sleep_for(Ms(30));
      pub.send(make_reading(5));
    });
    const shmbus::Timestamp before = shmbus::Clock::now();
    const shmbus::WaitStatus st = sub.wait_for(std::chrono::seconds(10));
    publisher.join();
    CHECK(st == shmbus::WaitStatus::ready);
    shmbus::Sample<Reading> s = sub.take();
    REQUIRE(s);
    CHECK(s->seq == 5);
    CHECK(s.sequence() == 0);
    CHECK(s.timestamp() >= before);
    CHECK(s.timestamp() <= shmbus::Clock::now());
    CHECK(s.timestamp_ns() == static_cast<std::uint64_t>(s.timestamp().time_since_epoch().count()));
    CHECK(s.age() >= shmbus::Clock::duration::zero());
    CHECK(s.age() < std::chrono::seconds(10));
  }

  TEST_CASE("wait() without a timeout, and the wait of a subscriber that has data") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus::Publisher<Reading> pub(node, "forever");
    shmbus::Subscriber<Reading> sub(node, "forever");
    REQUIRE(cpptest::connect(pub, sub));
    pub.send(make_reading(1));
    CHECK(sub.wait() == shmbus::WaitStatus::ready); // queued: returns at once
    CHECK(sub.wait_for(Ms(0)) == shmbus::WaitStatus::ready);
    CHECK(sub.take());
    std::thread publisher([&pub] {
      std::this_thread::sleep_for(Ms(20));
      pub.send(make_reading(2));
    });
    CHECK(sub.try_wait().ok());
    publisher.join();
    shmbus::Sample<Reading> s = sub.take();
    REQUIRE(s);
    CHECK(s->seq == 2);
    CHECK(s.sequence() == 1);
  }

  TEST_CASE("the loss of the last publisher is reported once: no_publisher") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus::Subscriber<Reading> sub(node, "lonely");
    {
      shmbus::Publisher<Reading> pub(node, "lonely");
      REQUIRE(cpptest::connect(pub, sub));
      pub.send(make_reading(0));
    }
    CHECK(sub.wait_for(Ms(100)) == shmbus::WaitStatus::ready); // what it left is still there
    CHECK(sub.take());
    CHECK(sub.wait_for(std::chrono::seconds(5)) == shmbus::WaitStatus::no_publisher);
    CHECK(sub.wait_for(Ms(20)) == shmbus::WaitStatus::timed_out); // once per loss
  }

  TEST_CASE("wait_until on shmbus::Clock and on std::chrono::steady_clock; set_spin") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus::Subscriber<Reading> sub(node, "deadline");
    sub.set_spin(std::chrono::microseconds(50));
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(sub.wait_until(shmbus::Clock::now() + Ms(30)) == shmbus::WaitStatus::timed_out);
    CHECK(sub.wait_until(std::chrono::steady_clock::now() + Ms(30)) ==
          shmbus::WaitStatus::timed_out);
    CHECK(sub.wait_until(std::chrono::steady_clock::now() - Ms(30)) ==
          shmbus::WaitStatus::timed_out); // in the past: looks once
    CHECK(std::chrono::steady_clock::now() - t0 >= Ms(55));
    CHECK(sub.try_set_spin(Ms(0)).ok());
  }

  TEST_CASE("take_latest skips to the newest and releases the rest") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus::Publisher<Reading> pub(node, "latest", shmbus::ServiceOptions().queue_depth(16));
    shmbus::Subscriber<Reading> sub(node, "latest", shmbus::ServiceOptions().queue_depth(16));
    REQUIRE(cpptest::connect(pub, sub));
    for (std::uint64_t i = 0; i < 10; i++) pub.send(make_reading(i));
    shmbus::Sample<Reading> s = sub.take_latest();
    REQUIRE(s);
    CHECK(s->seq == 9);
    CHECK(!sub.take());
    CHECK(sub.lost() == 0);
  }
}

// SPDX-License-Identifier: Apache-2.0
//
// What a bad peer can do to a C++ user (docs/security.md): truncate the
// publisher's segment while a sample is held (release reports CORRUPT; a
// Sample destroyed with that result hands it to the next take), truncate it
// while a loan is out, and publish samples shorter than the type (a buggy C
// publisher). Cases that truncate run in a forked child, so that a death by
// SIGBUS would show as such.
#include "support.hpp"

using cpptest::make_reading;
using cpptest::Reading;
using cpptest::TestDomain;

namespace {

// Reads every byte (the access that faults on a truncated mapping).
unsigned touch(const void *p, std::size_t n) {
  const volatile unsigned char *b = static_cast<const volatile unsigned char *>(p);
  unsigned sum = 0;
  for (std::size_t i = 0; i < n; i++) sum += b[i];
  return sum;
}

// In a child: a publisher and a subscriber, a held sample, then the data
// segment cut to zero; `then` says what the C++ user sees. Returns the
// child's exit code (0 pass, 128 + signal for a death).
template <class F>
int with_truncated_sample(const TestDomain &d, F then) {
  const pid_t pid = cpptest::fork_child([&d, &then] {
    const std::string service = cpptest::service_name("trunc");
    shmbus::Node node = d.node();
    shmbus::Publisher<Reading> pub(node, service, shmbus::ServiceOptions().queue_depth(8));
    shmbus::Subscriber<Reading> sub(node, service, shmbus::ServiceOptions().queue_depth(8));
    CHILD_CHECK(cpptest::connect(pub, sub));
    for (std::uint64_t i = 0; i < 4; i++) pub.send(make_reading(i));
    shmbus::Sample<Reading> held = sub.take();
    CHILD_CHECK(held && cpptest::valid(*held));
    CHILD_CHECK(
        cpptest::truncate_object(cpptest::publisher_object(d.name(), service, pub.id(), true), 0));
    (void)touch(held.get(), sizeof(Reading)); // zeros now, no signal
    const int rc = then(pub, sub, held);
    sub.close();
    pub.close();
    (void)node.cleanup(); // what the truncated segment's accounting left
    cpptest::remove_objects(d.name());
    return rc;
  });
  return cpptest::wait_child(pid);
}

} // namespace

TEST_SUITE("hostile") {
  TEST_CASE("a sample whose publisher's segment was truncated while held: release says CORRUPT") {
    TestDomain d;
    CHECK(with_truncated_sample(d, [](shmbus::Publisher<Reading> &, shmbus::Subscriber<Reading> &,
                                      shmbus::Sample<Reading> &held) {
            shmbus::Status st = held.try_release();
            CHILD_CHECK(st.error() == SHMBUS_ERR_CORRUPT);
            CHILD_CHECK(std::string(st.detail()).find("truncated") != std::string::npos);
            CHILD_CHECK(!held);
            return 0;
          }) == 0);
    CHECK(with_truncated_sample(d, [](shmbus::Publisher<Reading> &, shmbus::Subscriber<Reading> &,
                                      shmbus::Sample<Reading> &held) {
            try {
              held.release();
            } catch (const shmbus::Error &e) {
              CHILD_CHECK(e.code() == SHMBUS_ERR_CORRUPT);
              CHILD_CHECK(std::string(e.where()) == "shmbus::Sample::release");
              return 0;
            }
            return 1; // no exception
          }) == 0);
  }

  TEST_CASE("a Sample destroyed with that result hands CORRUPT to its subscriber's next take") {
    TestDomain d;
    CHECK(with_truncated_sample(d, [](shmbus::Publisher<Reading> &pub,
                                      shmbus::Subscriber<Reading> &sub,
                                      shmbus::Sample<Reading> &held) {
            held = shmbus::Sample<Reading>(); // the destructor's path: no throw
            CHILD_CHECK(sub.release_errors() == 1);
            shmbus::Result<shmbus::Sample<Reading>> next = sub.try_take();
            CHILD_CHECK(next.error() == SHMBUS_ERR_CORRUPT);
            CHILD_CHECK(std::string(next.detail()).find("destructor") != std::string::npos);
            // Reported once; the ports go on with codes, never a signal, and
            // never deliver a sample read from the zero pages.
            for (std::uint64_t i = 10; i < 40; i++) {
              (void)pub.try_send(make_reading(i));
              shmbus::Result<shmbus::Sample<Reading>> r = sub.try_take();
              CHILD_CHECK(r.ok() || r.error() == SHMBUS_ERR_CORRUPT);
              CHILD_CHECK(r.ok() || std::string(r.detail() ? r.detail() : "").find("destructor") ==
                                        std::string::npos);
              if (r && *r) CHILD_CHECK(cpptest::valid(**r));
            }
            return 0;
          }) == 0);
  }

  TEST_CASE("a wait after such a destructor reports it too") {
    TestDomain d;
    CHECK(
        with_truncated_sample(d, [](shmbus::Publisher<Reading> &, shmbus::Subscriber<Reading> &sub,
                                    shmbus::Sample<Reading> &held) {
          { shmbus::Sample<Reading> gone = std::move(held); }
          try {
            (void)sub.wait_for(std::chrono::milliseconds(10));
          } catch (const shmbus::Error &e) {
            CHILD_CHECK(e.code() == SHMBUS_ERR_CORRUPT);
            return 0;
          }
          return 1;
        }) == 0);
  }

  TEST_CASE("a loan out while its segment is truncated: publish reports, the loan is dropped") {
    TestDomain d;
    const pid_t pid = cpptest::fork_child([&d] {
      const std::string service = cpptest::service_name("trunc-loan");
      shmbus::Node node = d.node();
      shmbus::Publisher<Reading> pub(node, service);
      shmbus::Subscriber<Reading> sub(node, service);
      CHILD_CHECK(cpptest::connect(pub, sub));
      shmbus::Loan<Reading> loan = pub.loan();
      CHILD_CHECK(cpptest::truncate_object(
          cpptest::publisher_object(d.name(), service, pub.id(), true), 0));
      loan.write(make_reading(1)); // writes zero pages: no signal
      shmbus::Status st = pub.try_publish(std::move(loan));
      CHILD_CHECK(st.ok() || st.error() == SHMBUS_ERR_CORRUPT);
      for (int i = 0; i < 8; i++) { // loans keep coming back or failing with a code
        shmbus::Result<shmbus::Loan<Reading>> l = pub.try_loan();
        CHILD_CHECK(l.ok() || l.error() == SHMBUS_ERR_CORRUPT ||
                    l.error() == SHMBUS_ERR_LOAN_LIMIT);
      }
      shmbus::Result<shmbus::Sample<Reading>> r = sub.try_take();
      CHILD_CHECK(r.ok() || r.error() == SHMBUS_ERR_CORRUPT);
      if (r && *r) CHILD_CHECK(!cpptest::valid(**r) || (*r)->seq == 1);
      sub.close();
      pub.close();
      (void)node.cleanup();
      cpptest::remove_objects(d.name());
      return 0;
    });
    CHECK(cpptest::wait_child(pid) == 0);
  }

  TEST_CASE("a timestamp forged past INT64_MAX reads as Timestamp::max(); age() cannot overflow") {
    TestDomain d;
    const std::string service = cpptest::service_name("stamp");
    shmbus::Node node = d.node();
    shmbus::Publisher<Reading> pub(node, service);
    shmbus::Subscriber<Reading> sub(node, service);
    REQUIRE(cpptest::connect(pub, sub));
    const std::uint64_t forged[] = {UINT64_C(1) << 63, UINT64_MAX, UINT64_C(1) << 62};
    std::uint64_t seq = 0;
    for (std::uint64_t stamp : forged) {
      shmbus::Loan<Reading> loan = pub.loan();
      loan.write(make_reading(seq));
      // A publisher may write its own data segment at any time: this one
      // rewrites the chunk header's timestamp after publishing. The header
      // (src/layout.h: sequence, timestamp_ns, publisher_id, ...; 32 bytes)
      // precedes the payload, which follows at the type's alignment (8).
      auto *header =
          reinterpret_cast<std::uint64_t *>(reinterpret_cast<unsigned char *>(loan.get()) - 32);
      pub.publish(std::move(loan));
      REQUIRE(header[0] == seq);      // sequence: the layout is as assumed
      REQUIRE(header[2] == pub.id()); // publisher_id
      __atomic_store_n(&header[1], stamp, __ATOMIC_RELEASE);
      shmbus::Sample<Reading> s = sub.take();
      REQUIRE(s);
      CHECK(s.timestamp_ns() == stamp);
      const shmbus::Clock::duration age = s.age();  // UBSan: no signed overflow
      CHECK(age < shmbus::Clock::duration::zero()); // from the future
      if (stamp > static_cast<std::uint64_t>(INT64_MAX))
        CHECK(s.timestamp() == shmbus::Timestamp::max());
      else
        CHECK(s.timestamp().time_since_epoch().count() == static_cast<std::int64_t>(stamp));
      seq++;
    }
  }

  TEST_CASE("a buggy C publisher's short sample is refused; its next one is taken") {
    TestDomain d;
    const std::string service = cpptest::service_name("short");
    shmbus::Node node = d.node();
    shmbus::Subscriber<cpp_peer_reading> sub(node, service,
                                             shmbus::ServiceOptions()
                                                 .queue_depth(CPP_PEER_QUEUE_DEPTH)
                                                 .overflow(shmbus::Overflow::block));
    const pid_t peer = cpptest::spawn(d.name(), {SHMBUS_CPP_TEST_C_PEER, "short", service});
    int refused = 0;
    shmbus::Sample<cpp_peer_reading> good;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!good && std::chrono::steady_clock::now() < deadline) {
      shmbus::Result<shmbus::Sample<cpp_peer_reading>> r = sub.try_take();
      if (!r) {
        CHECK(r.error() == SHMBUS_ERR_CORRUPT);
        CHECK(std::string(r.detail()).find("does not fit") != std::string::npos);
        refused++;
        continue;
      }
      if (*r)
        good = std::move(*r);
      else
        (void)sub.try_wait_for(std::chrono::milliseconds(100));
    }
    CHECK(refused == 1);
    REQUIRE(good);
    CHECK(good->seq == 1);
    CHECK(cpp_peer_valid(good.get()));
    good.release();
    sub.close();
    CHECK(cpptest::wait_child(peer) == 0);
  }
}

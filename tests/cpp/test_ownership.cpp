// SPDX-License-Identifier: Apache-2.0
//
// Ownership and lifetimes (shmbus.hpp, "Lifetimes"): loans come back when
// dropped, publishing consumes a loan and a failed one keeps it, moved-from
// and self-moved objects, samples and loans that outlive their ports and
// nodes, any destruction order, use after close or move, and what an empty
// Sample or Loan does when dereferenced.
#include "support.hpp"

#include <stdexcept>
#include <type_traits>
#include <utility>

using cpptest::make_reading;
using cpptest::Reading;
using cpptest::TestDomain;

namespace {

// A plain type whose default constructor may throw (legal for a sample
// type: it is still trivially copyable and standard layout).
bool g_throw_in_ctor = false;
struct ThrowingCtor {
  std::uint64_t v;
  ThrowingCtor() : v(7) {
    if (g_throw_in_ctor) throw std::runtime_error("ThrowingCtor");
  }
};
static_assert(std::is_trivially_copyable<ThrowingCtor>::value &&
                  std::is_standard_layout<ThrowingCtor>::value,
              "a sample type");

} // namespace

SHMBUS_TYPE_NAME(ThrowingCtor, "shmbus-cpp-test/ThrowingCtor");

namespace {

shmbus::ServiceOptions small() {
  return shmbus::ServiceOptions().queue_depth(8).max_loans(4).max_held(2);
}

struct Pair {
  Pair(const TestDomain &d, const shmbus::ServiceOptions &opts = small(),
       const std::string &service = cpptest::service_name("pair"))
      : node(d.node()), pub(node, service, opts), sub(node, service, opts) {
    REQUIRE(cpptest::connect(pub, sub));
  }
  shmbus::Node node;
  shmbus::Publisher<Reading> pub;
  shmbus::Subscriber<Reading> sub;
};

} // namespace

TEST_SUITE("ownership") {
  TEST_CASE(
      "a Loan dropped unpublished gives its chunk back: loaning max_loans times in a loop "
      "never fails") {
    TestDomain d;
    Pair p(d);
    for (int i = 0; i < 10000; i++) {
      shmbus::Loan<Reading> loan = p.pub.loan();
      loan->seq = static_cast<std::uint64_t>(i); // never seen: discarded below
    }
    for (int i = 0; i < 1000; i++) {
      std::vector<shmbus::Loan<Reading>> held;
      for (int k = 0; k < 4; k++) held.push_back(p.pub.loan());
      shmbus::Result<shmbus::Loan<Reading>> fifth = p.pub.try_loan();
      REQUIRE(fifth.error() == SHMBUS_ERR_LOAN_LIMIT);
    }
    CHECK(!p.sub.take()); // nothing was published
  }

  TEST_CASE("a loan whose T constructor throws is discarded, never leaked") {
    TestDomain d;
    shmbus::Node node = d.node();
    const shmbus::ServiceOptions opts = small().max_elements(4);
    {
      shmbus::Publisher<ThrowingCtor> pub(node, cpptest::service_name("throwing"), opts);
      shmbus::Publisher<ThrowingCtor[]> slices(node, cpptest::service_name("throwing[]"), opts);
      static_assert(!noexcept(pub.try_loan()), "T's constructor may throw");
      static_assert(noexcept(std::declval<shmbus::Publisher<Reading> &>().try_loan()),
                    "a plain T's cannot");
      g_throw_in_ctor = true;
      for (int i = 0; i < 10; i++) { // more than max_loans: each came back
        CHECK_THROWS_AS((void)pub.loan(), std::runtime_error);
        CHECK_THROWS_AS((void)slices.loan(3), std::runtime_error);
      }
      g_throw_in_ctor = false;
      std::vector<shmbus::Loan<ThrowingCtor>> held;
      for (int k = 0; k < 4; k++) held.push_back(pub.loan());
      CHECK(held[3]->v == 7); // constructed
      shmbus::Loan<ThrowingCtor[]> slice = slices.loan(4);
      CHECK(slice[3].v == 7);
    }
    // The ports closed with their handles: no loan kept them open.
    CHECK(cpptest::eventually([&] {
      for (const std::string &o : cpptest::objects_of(d.name()))
        if (o.find(".n.") == std::string::npos) return false;
      return true;
    }));
  }

  TEST_CASE("a Sample released through the C API is not reported as an error by its destructor") {
    TestDomain d;
    Pair p(d);
    p.pub.send(make_reading(1));
    p.pub.send(make_reading(2));
    {
      shmbus::Sample<Reading> s = p.sub.take();
      REQUIRE(s);
      CHECK(shmbus_subscriber_release(p.sub.native_handle(), &s.native()) == 0);
    } // its release now says NOT_HELD: nothing about the memory
    CHECK(p.sub.release_errors() == 0);
    shmbus::Result<shmbus::Sample<Reading>> next = p.sub.try_take();
    REQUIRE(next.ok());
    REQUIRE(*next);
    CHECK((*next)->seq == 2);
  }

  TEST_CASE("publish consumes the loan; a failed publish leaves it with the caller") {
    TestDomain d;
    const shmbus::ServiceOptions opts =
        shmbus::ServiceOptions().queue_depth(1).max_held(1).overflow(shmbus::Overflow::block);
    Pair p(d, opts);
    p.pub.set_block_timeout(std::chrono::milliseconds(0));

    shmbus::Loan<Reading> first = p.pub.loan();
    first.write(make_reading(0));
    p.pub.publish(std::move(first));
    CHECK(!first);

    shmbus::Loan<Reading> second = p.pub.loan();
    second.write(make_reading(1));
    shmbus::Status full = p.pub.try_publish(std::move(second));
    CHECK(full.error() == SHMBUS_ERR_TIMEDOUT); // the queue is full (BLOCK, timeout 0)
    REQUIRE(second);                            // still ours
    CHECK(second->seq == 1);

    {
      shmbus::Sample<Reading> s = p.sub.take();
      REQUIRE(s);
      CHECK(s->seq == 0);
    }                                 // released: room again
    p.pub.publish(std::move(second)); // the retry goes through
    CHECK(!second);
    shmbus::Sample<Reading> s = p.sub.take();
    REQUIRE(s);
    CHECK(s->seq == 1);
    CHECK(s.sequence() == 1);
  }

  TEST_CASE("a loan of another publisher, or an empty one, is refused and stays usable") {
    TestDomain d;
    Pair p(d);
    shmbus::Publisher<Reading> other(p.node, cpptest::service_name("other"), small());
    shmbus::Loan<Reading> foreign = other.loan();
    shmbus::Status st = p.pub.try_publish(std::move(foreign));
    CHECK(st.error() == SHMBUS_ERR_NOT_LOANED);
    CHECK(foreign);
    other.publish(std::move(foreign)); // to its own publisher it goes
    shmbus::Loan<Reading> empty;
    CHECK(p.pub.try_publish(std::move(empty)).error() == SHMBUS_ERR_INVAL);
    CHECK_THROWS_AS(p.pub.publish(std::move(empty)), shmbus::Error);
  }

  TEST_CASE("moved-from objects are empty, self-move is a no-op, move-assignment lets go first") {
    TestDomain d;
    Pair p(d, shmbus::ServiceOptions().queue_depth(8).max_loans(2).max_held(2));

    shmbus::Loan<Reading> a = p.pub.loan();
    shmbus::Loan<Reading> b = std::move(a);
    CHECK(!a);
    CHECK(!a.has_value());
    CHECK(b);
    shmbus::Loan<Reading> &alias = b;
    b = std::move(alias); // self-move
    CHECK(b);
    a = p.pub.loan(); // two outstanding: the limit
    CHECK(p.pub.try_loan().error() == SHMBUS_ERR_LOAN_LIMIT);
    a = std::move(b); // a's loan is discarded first
    CHECK(!b);
    CHECK(a);
    shmbus::Loan<Reading> c = p.pub.loan(); // so there is room for one
    CHECK(p.pub.try_loan().error() == SHMBUS_ERR_LOAN_LIMIT);
    a.discard();
    c.discard();
    CHECK(!a);
    a.discard(); // twice: nothing

    for (std::uint64_t i = 0; i < 3; i++) p.pub.send(make_reading(i));
    shmbus::Sample<Reading> s1 = p.sub.take();
    shmbus::Sample<Reading> s2 = p.sub.take();
    REQUIRE(s1);
    REQUIRE(s2);
    CHECK(p.sub.try_take().error() == SHMBUS_ERR_HOLD_LIMIT);
    shmbus::Sample<Reading> &salias = s1;
    s1 = std::move(salias); // self-move
    CHECK(s1);
    CHECK(s1->seq == 0);
    s1 = std::move(s2); // releases sample 0 first
    CHECK(!s2);
    CHECK(s1->seq == 1);
    CHECK(s2.sequence() == 0); // an empty Sample's metadata is 0
    CHECK(s2.bytes() == 0);
    shmbus::Sample<Reading> s3 = p.sub.take(); // room for it
    REQUIRE(s3);
    CHECK(s3->seq == 2);

    shmbus::Publisher<Reading> moved = std::move(p.pub);
    CHECK(!p.pub);
    CHECK(moved);
    shmbus::Publisher<Reading> &palias = moved;
    moved = std::move(palias);
    CHECK(moved.is_open());
    shmbus::Subscriber<Reading> msub = std::move(p.sub);
    CHECK(!p.sub);
    CHECK(msub.lost() == 0);
    CHECK(p.sub.lost() == 0);
  }

  TEST_CASE("a Sample outlives its Subscriber, Publisher and Node and stays readable") {
    TestDomain d;
    shmbus::Sample<Reading> kept;
    std::string service = cpptest::service_name("outlive");
    std::uint64_t pub_id = 0;
    {
      Pair p(d, small(), service);
      p.pub.send(make_reading(7));
      kept = p.sub.take();
      REQUIRE(kept);
      pub_id = p.pub.id();
    } // subscriber, publisher and node handles are gone
    CHECK(kept->seq == 7);
    CHECK(cpptest::valid(*kept));
    CHECK(kept.publisher_id() == pub_id);
    CHECK(kept.try_release().ok());
    CHECK(!kept);
  }

  TEST_CASE("a Loan outlives its Publisher; destroyed, it is discarded and the port closes") {
    TestDomain d;
    shmbus::Node node = d.node();
    const std::string service = cpptest::service_name("loan-outlives");
    shmbus::Subscriber<Reading> sub(node, service, small());
    shmbus::Loan<Reading> loan;
    {
      shmbus::Publisher<Reading> pub(node, service, small());
      REQUIRE(cpptest::connect(pub, sub));
      loan = pub.loan();
    }
    loan->seq = 1; // still writable: the C port is open while the loan lives
    CHECK(sub.publishers() == 1);
    loan = shmbus::Loan<Reading>(); // discarded: the last reference closes the port
    CHECK(cpptest::eventually([&] { return sub.publishers() == 0; }));
    CHECK(!sub.take());
  }

  TEST_CASE("a closed Subscriber with a live Sample keeps its slot until the Sample goes") {
    TestDomain d;
    Pair p(d);
    p.pub.send(make_reading(1));
    shmbus::Sample<Reading> s = p.sub.take();
    REQUIRE(s);
    p.sub.close();
    CHECK(!p.sub);
    CHECK(p.pub.update() == 1); // the C subscriber is still there
    s = shmbus::Sample<Reading>();
    CHECK(cpptest::eventually([&] { return p.pub.update() == 0; }));
  }

  TEST_CASE("use after close or move is an error, never undefined behaviour") {
    TestDomain d;
    Pair p(d);
    shmbus::Publisher<Reading> pub = std::move(p.pub);
    try {
      (void)p.pub.loan();
      FAIL("no exception");
    } catch (const shmbus::Error &e) {
      CHECK(e.code() == SHMBUS_ERR_INVAL);
      CHECK(std::string(e.where()) == "shmbus::Publisher::loan");
      CHECK(std::string(e.what()).find("used after close or move") != std::string::npos);
    }
    CHECK(p.pub.try_send(make_reading(0)).error() == SHMBUS_ERR_INVAL);
    CHECK(p.pub.try_update().error() == SHMBUS_ERR_INVAL);
    CHECK(p.pub.id() == 0);
    CHECK(p.pub.native_handle() == nullptr);

    p.sub.close();
    p.sub.close(); // twice: nothing
    CHECK_THROWS_AS((void)p.sub.take(), shmbus::Error);
    CHECK(p.sub.try_take_latest().error() == SHMBUS_ERR_INVAL);
    CHECK(p.sub.try_wait_for(std::chrono::milliseconds(1)).error() == SHMBUS_ERR_INVAL);
    CHECK(p.sub.try_publishers().error() == SHMBUS_ERR_INVAL);
    CHECK(p.sub.id() == 0);

    shmbus::Node node = std::move(p.node);
    CHECK(!p.node);
    CHECK(p.node.domain() == nullptr);
    CHECK(p.node.id() == 0);
    shmbus::Result<shmbus::Subscriber<Reading>> r =
        shmbus::Subscriber<Reading>::try_open(p.node, "x");
    CHECK(r.error() == SHMBUS_ERR_INVAL);
    CHECK(p.node.try_cleanup().error() == SHMBUS_ERR_INVAL);
    CHECK(p.node.try_nodes().error() == SHMBUS_ERR_INVAL);
    shmbus::WaitSet ws;
    CHECK(!ws);
    ws.trigger(); // nothing
    CHECK(ws.fd() == -1);
    CHECK(ws.try_wait(std::chrono::milliseconds(0)).error() == SHMBUS_ERR_INVAL);
  }

  TEST_CASE("dereferencing an empty Sample or Loan aborts with a message") {
    for (int which = 0; which < 2; which++) {
      pid_t pid = cpptest::fork_child([which] {
        if (which == 0) {
          shmbus::Sample<Reading> empty;
          std::printf("%llu\n", static_cast<unsigned long long>(empty->seq));
        } else {
          shmbus::Loan<Reading> empty;
          empty->seq = 1;
        }
        return 0; // not reached
      });
      CHECK(cpptest::wait_child(pid) == 128 + SIGABRT);
    }
  }

  TEST_CASE("any destruction order at scope exit") {
    TestDomain d;
    const std::string service = cpptest::service_name("order");
    for (int order = 0; order < 6; order++) {
      shmbus::Sample<Reading> sample;
      shmbus::Loan<Reading> loan;
      {
        shmbus::Node node = d.node();
        shmbus::Publisher<Reading> pub(node, service, small());
        shmbus::Subscriber<Reading> sub(node, service, small());
        REQUIRE(cpptest::connect(pub, sub));
        pub.send(make_reading(static_cast<std::uint64_t>(order)));
        sample = sub.take();
        loan = pub.loan();
        REQUIRE(sample);
        switch (order) {
        case 0: node.close(); break; // node first
        case 1:
          pub.close();
          sub.close();
          break; // ports first
        case 2:
          sub.close();
          node.close();
          break;                                           // subscriber, node
        case 3: sample = shmbus::Sample<Reading>(); break; // sample before its port
        case 4:
          loan.discard();
          pub.close();
          break;        // loan before its port
        default: break; // reverse declaration order
        }
      }
      if (sample) CHECK(sample->seq == static_cast<std::uint64_t>(order));
      if (loan) loan->seq = 99;
    }
  }

  TEST_CASE("ports keep their node: a Node may be destroyed first") {
    TestDomain d;
    shmbus::Publisher<Reading> pub;
    shmbus::Subscriber<Reading> sub;
    {
      shmbus::Node node = d.node();
      pub = shmbus::Publisher<Reading>(node, "keep-node", small());
      sub = shmbus::Subscriber<Reading>(node, "keep-node", small());
    }
    REQUIRE(cpptest::connect(pub, sub));
    pub.send(make_reading(3));
    shmbus::Sample<Reading> s = sub.take();
    REQUIRE(s);
    CHECK(s->seq == 3);
  }
}

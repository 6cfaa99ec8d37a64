// SPDX-License-Identifier: Apache-2.0
//
// Errors (shmbus.hpp, "Errors"): the exception's code, name, message and
// text; Result and Status; the conditions that are values (nothing queued);
// type checks between the two sides; the option builders and their C
// defaults; names; the directory backend; node lists and cleanup.
#include "support.hpp"

#include <sys/stat.h>

using cpptest::make_reading;
using cpptest::Other;
using cpptest::Reading;
using cpptest::TestDomain;

TEST_SUITE("errors") {
  TEST_CASE("shmbus::Error carries the code, its name, the message and the failing call") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus::Publisher<Reading> pub(node, "typed");
    try {
      shmbus::Subscriber<Other> wrong(node, "typed"); // same size, another type
      FAIL("no exception");
    } catch (const shmbus::Error &e) {
      CHECK(e.code() == SHMBUS_ERR_INCOMPATIBLE);
      CHECK(std::string(e.name()) == "INCOMPATIBLE");
      CHECK(std::string(e.message()) == shmbus_strerror(SHMBUS_ERR_INCOMPATIBLE));
      CHECK(std::string(e.where()) == "shmbus::Subscriber::open");
      const std::string what = e.what();
      CHECK(what.find("shmbus::Subscriber::open") != std::string::npos);
      CHECK(what.find(e.message()) != std::string::npos);
      CHECK(what.find("SHMBUS_ERR_INCOMPATIBLE") != std::string::npos);
      // The C library's finding (shmbus_error_detail): which setting differs.
      CHECK(what.find("service 'typed' carries type") != std::string::npos);
      const std::exception &base = e; // one exception type, a std::exception
      CHECK(std::string(base.what()) == what);
    }
  }

  TEST_CASE("Result and Status: a value or a code; value() of a failure throws") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus::Publisher<Reading> pub(node, "typed");
    shmbus::Result<shmbus::Subscriber<Other>> r =
        shmbus::Subscriber<Other>::try_open(node, "typed");
    CHECK(!r.ok());
    CHECK(!r);
    CHECK(r.error() == SHMBUS_ERR_INCOMPATIBLE);
    CHECK(std::string(r.error_name()) == "INCOMPATIBLE");
    CHECK(std::string(r.where()) == "shmbus::Subscriber::open");
    CHECK(std::string(r.detail() ? r.detail() : "").find("carries type") != std::string::npos);
    CHECK_THROWS_AS((void)r.value(), shmbus::Error);
    try {
      (void)*r;
    } catch (const shmbus::Error &e) {
      CHECK(e.code() == SHMBUS_ERR_INCOMPATIBLE);
    }

    shmbus::Result<shmbus::Subscriber<Reading>> ok =
        shmbus::Subscriber<Reading>::try_open(node, "typed");
    REQUIRE(ok.ok());
    CHECK(ok.error() == SHMBUS_OK);
    CHECK(ok.where() == nullptr);
    shmbus::Subscriber<Reading> sub = std::move(ok).value();
    CHECK(sub.is_open());

    shmbus::Status good = pub.try_send(make_reading(0));
    CHECK(good.ok());
    good.value(); // no throw
    shmbus::Status bad = shmbus::Publisher<Reading>().try_send(make_reading(0));
    CHECK(bad.error() == SHMBUS_ERR_INVAL);
    CHECK(std::string(bad.detail()).find("close or move") != std::string::npos);
    CHECK_THROWS_AS(bad.value(), shmbus::Error);
  }

  TEST_CASE("nothing queued is an empty Sample, not an error") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus::Subscriber<Reading> sub(node, "quiet");
    shmbus::Sample<Reading> s = sub.take();
    CHECK(!s);
    CHECK(!sub.take_latest());
    shmbus::Result<shmbus::Sample<Reading>> r = sub.try_take();
    CHECK(r.ok());
    CHECK(!*r);
    CHECK(sub.wait_for(std::chrono::milliseconds(0)) == shmbus::WaitStatus::timed_out);
  }

  TEST_CASE("limits are errors with their codes: LOAN_LIMIT, HOLD_LIMIT, TOO_LARGE") {
    TestDomain d;
    shmbus::Node node = d.node();
    const auto opts = shmbus::ServiceOptions().max_loans(1).max_held(1);
    shmbus::Publisher<Reading> pub(node, "limits", opts);
    shmbus::Subscriber<Reading> sub(node, "limits", opts);
    REQUIRE(cpptest::connect(pub, sub));
    shmbus::Loan<Reading> held = pub.loan();
    try {
      (void)pub.loan();
      FAIL("no exception");
    } catch (const shmbus::Error &e) {
      CHECK(e.code() == SHMBUS_ERR_LOAN_LIMIT);
      CHECK(std::string(e.where()) == "shmbus::Publisher::loan");
    }
    held.discard();
    pub.send(make_reading(0));
    pub.send(make_reading(1));
    shmbus::Sample<Reading> s = sub.take();
    REQUIRE(s);
    CHECK(sub.try_take().error() == SHMBUS_ERR_HOLD_LIMIT);
    s.release();
    CHECK(sub.take());
  }

  TEST_CASE("the type comes from T: options naming another type are refused") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus_service_opts c = SHMBUS_SERVICE_OPTS_INIT;
    c.type.name = "shmbus-cpp-test/Reading";
    c.type.size = sizeof(Reading);
    c.type.align = alignof(Reading);
    c.queue_depth = 32;
    shmbus::Publisher<Reading> same(node, "c-opts", shmbus::ServiceOptions(c)); // the same type
    c.type.size = 8;
    shmbus::Result<shmbus::Subscriber<Reading>> wrong =
        shmbus::Subscriber<Reading>::try_open(node, "c-opts", c);
    CHECK(wrong.error() == SHMBUS_ERR_INCOMPATIBLE);
    CHECK(std::string(wrong.detail()).find("another type") != std::string::npos);
    c.type.name = nullptr; // no type: the port's
    c.type.size = 0;
    c.type.align = 0;
    shmbus::Subscriber<Reading> sub(node, "c-opts", c);
    // A type with the alignment of a cache line works as any other.
    shmbus::Publisher<cpptest::Wide> wide(node, "wide");
    shmbus::Subscriber<cpptest::Wide> wsub(node, "wide");
    REQUIRE(cpptest::connect(wide, wsub));
    cpptest::Wide w;
    w.v = 5;
    wide.send(w);
    shmbus::Sample<cpptest::Wide> ws = wsub.take();
    REQUIRE(ws);
    CHECK(reinterpret_cast<std::uintptr_t>(ws.get()) % 64 == 0);
    CHECK(ws->v == 5);
  }

  TEST_CASE("ServiceOptions start from SHMBUS_SERVICE_OPTS_INIT; the builder sets each field") {
    const shmbus_service_opts init = SHMBUS_SERVICE_OPTS_INIT;
    const shmbus::ServiceOptions def;
    const shmbus_service_opts &c = def.c_opts();
    CHECK(c.type.name == init.type.name);
    CHECK(c.max_elements == init.max_elements);
    CHECK(c.max_publishers == init.max_publishers);
    CHECK(c.max_subscribers == init.max_subscribers);
    CHECK(c.queue_depth == init.queue_depth);
    CHECK(c.history == init.history);
    CHECK(c.max_loans == init.max_loans);
    CHECK(c.max_held == init.max_held);
    CHECK(c.overflow == init.overflow);
    CHECK(def.overflow() == shmbus::Overflow::default_policy);

    const shmbus::ServiceOptions o = shmbus::ServiceOptions()
                                         .max_elements(2)
                                         .max_publishers(3)
                                         .max_subscribers(5)
                                         .queue_depth(7)
                                         .history(11)
                                         .max_loans(13)
                                         .max_held(17)
                                         .overflow(shmbus::Overflow::drop_newest);
    CHECK(o.max_elements() == 2);
    CHECK(o.max_publishers() == 3);
    CHECK(o.max_subscribers() == 5);
    CHECK(o.queue_depth() == 7);
    CHECK(o.history() == 11);
    CHECK(o.max_loans() == 13);
    CHECK(o.max_held() == 17);
    CHECK(o.c_opts().overflow == SHMBUS_OVERFLOW_DROP_NEWEST);
  }

  TEST_CASE("bad names and options are errors of the C library, passed through") {
    TestDomain d;
    shmbus::Node node = d.node();
    CHECK(shmbus::Publisher<Reading>::try_open(node, "").error() == SHMBUS_ERR_NAME);
    CHECK(shmbus::Publisher<Reading>::try_open(node, "has space").error() == SHMBUS_ERR_NAME);
    CHECK(shmbus::Publisher<Reading>::try_open(node, static_cast<const char *>(nullptr)).error() ==
          SHMBUS_ERR_NAME);
    CHECK(shmbus::Subscriber<Reading>::try_open(node, std::string(300, 'x')).error() ==
          SHMBUS_ERR_NAME);
#if SHMBUS_CPP17
    const std::string long_name(300, 'y');
    CHECK(shmbus::Subscriber<Reading>::try_open(node, std::string_view(long_name)).error() ==
          SHMBUS_ERR_NAME);
    const std::string_view sv = std::string_view("sv-name-and-more").substr(0, 7);
    shmbus::Publisher<Reading> by_view(node, sv); // "sv-name", copied with its NUL
    shmbus::Subscriber<Reading> by_string(node, std::string("sv-name"));
    CHECK(cpptest::connect(by_view, by_string));
#endif
    CHECK(shmbus::Publisher<Reading>::try_open(
              node, "q", shmbus::ServiceOptions().queue_depth(SHMBUS_MAX_QUEUE_DEPTH + 1))
              .error() == SHMBUS_ERR_INVAL);
    CHECK(shmbus::Node::try_open(shmbus::NodeOptions().domain("bad domain")).error() ==
          SHMBUS_ERR_NAME);
    CHECK(shmbus::Node::try_open(shmbus::NodeOptions().domain(std::string(40, 'd'))).error() ==
          SHMBUS_ERR_NAME);
    CHECK(shmbus::Node::try_open(shmbus::NodeOptions().directory("/nonexistent/shmbus")).error() ==
          SHMBUS_ERR_INVAL);
    CHECK_THROWS_AS(shmbus::Node(shmbus::NodeOptions().domain("")), shmbus::Error);
  }

  TEST_CASE("a name with a NUL inside is NAME, never the part before the NUL") {
    TestDomain d;
    shmbus::Node node = d.node();
    const std::string with_nul("nul-name\0tail", 13);
    REQUIRE(with_nul.size() == 13);
    CHECK(shmbus::Publisher<Reading>::try_open(node, with_nul).error() == SHMBUS_ERR_NAME);
    CHECK(shmbus::Node::try_open(shmbus::NodeOptions().domain(std::string("dom\0x", 5))).error() ==
          SHMBUS_ERR_NAME);
#if SHMBUS_CPP17
    CHECK(shmbus::Subscriber<Reading>::try_open(node, std::string_view(with_nul)).error() ==
          SHMBUS_ERR_NAME);
#endif
    for (const std::string &o : cpptest::objects_of(d.name())) // no service "nul-name"
      CHECK_MESSAGE(o.find(".n.") != std::string::npos, o);
  }

  TEST_CASE("a node: domain, id, node list, cleanup, and the directory backend") {
    TestDomain d;
    shmbus::Node node = d.node();
    CHECK(std::string(node.domain()) == d.name());
    CHECK(node.id() != 0);
    std::vector<shmbus::NodeInfo> nodes = node.nodes();
    bool found = false;
    for (const shmbus::NodeInfo &n : nodes) found = found || (n.id == node.id() && n.alive);
    CHECK(found);
    CHECK(node.cleanup() >= 0);

    char tmpl[] = "/tmp/shmbus-cpp-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    {
      shmbus::Node dir(shmbus::NodeOptions().domain(d.name()).directory(tmpl).mode(0600));
      shmbus::Publisher<Reading> pub(dir, "in-a-directory");
      shmbus::Subscriber<Reading> sub(dir, "in-a-directory");
      REQUIRE(cpptest::connect(pub, sub));
      pub.send(make_reading(9));
      shmbus::Sample<Reading> s = sub.take();
      REQUIRE(s);
      CHECK(s->seq == 9);
    }
    // Everything was removed from the directory: rmdir works.
    CHECK(rmdir(tmpl) == 0);
  }

  TEST_CASE("timeouts: std::chrono durations become the C API's nanoseconds") {
    using namespace std::chrono;
    CHECK(shmbus::detail::timeout_ns(seconds(-1)) == 0); // the past: look once
    CHECK(shmbus::detail::timeout_ns(seconds(0)) == 0);
    CHECK(shmbus::detail::timeout_ns(milliseconds(250)) == 250000000);
    CHECK(shmbus::detail::timeout_ns(duration<double>(1.5)) == 1500000000);
    CHECK(shmbus::detail::timeout_ns(duration<long long, std::pico>(1)) == 1); // rounds up
    CHECK(shmbus::detail::timeout_ns(hours::max()) == INT64_MAX);              // saturates
    CHECK(shmbus::detail::timeout_ns(duration<double>(1e300)) == INT64_MAX);
  }

  TEST_CASE("the clock: CLOCK_MONOTONIC, steady, convertible to steady_clock") {
    static_assert(shmbus::Clock::is_steady, "steady");
    static_assert(std::is_same<shmbus::Clock::duration, std::chrono::nanoseconds>::value, "ns");
    const bool &steady = shmbus::Clock::is_steady; // odr-used: defined in the header
    CHECK(steady);
    const shmbus::Timestamp a = shmbus::Clock::now();
    const shmbus::Timestamp b = shmbus::Clock::now();
    CHECK(a <= b);
    const auto s = shmbus::Clock::to_steady(a);
    const auto diff = std::chrono::steady_clock::now() - s;
    CHECK(diff >= std::chrono::steady_clock::duration::zero());
    CHECK(diff < std::chrono::seconds(1));
  }
}

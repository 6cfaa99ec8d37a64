// SPDX-License-Identifier: Apache-2.0
//
// Slices: Publisher<T[]> / Subscriber<T[]>, loans of n elements, publishing
// all or the first n, spans, copies, bytes, and what a single-element port
// does with a slice.
#include "support.hpp"

#include <numeric>

using cpptest::make_reading;
using cpptest::Reading;
using cpptest::TestDomain;

namespace {
const shmbus::ServiceOptions kSliceOpts = shmbus::ServiceOptions().max_elements(16).queue_depth(8);
}

TEST_SUITE("slices") {
  TEST_CASE("a slice of n elements: loan(n), fill in place, publish, read as a span") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus::Publisher<Reading[]> pub(node, "slices", kSliceOpts);
    shmbus::Subscriber<Reading[]> sub(node, "slices", kSliceOpts);
    REQUIRE(cpptest::connect(pub, sub));

    for (std::size_t n = 1; n <= 16; n++) {
      shmbus::Loan<Reading[]> loan = pub.loan(n);
      REQUIRE(loan.size() == n);
      for (std::size_t i = 0; i < n; i++) loan[i] = make_reading(100 * n + i);
      pub.publish(std::move(loan));
      CHECK(!loan);

      shmbus::Sample<Reading[]> s = sub.take();
      REQUIRE(s);
      REQUIRE(s.size() == n);
      CHECK(s.bytes() == n * sizeof(Reading));
      std::size_t i = 0;
      for (const Reading &r : s) {
        CHECK(r.seq == 100 * n + i);
        CHECK(cpptest::valid(r));
        i++;
      }
      shmbus::Span<const Reading> view = s.span();
      CHECK(view.size() == n);
      CHECK(view.data() == s.data());
      CHECK(view.front().seq == 100 * n);
      CHECK(view.back().seq == 100 * n + n - 1);
#if defined(__cpp_lib_span)
      std::span<const Reading> std_view = view;
      CHECK(std_view.size() == n);
#endif
    }
  }

  TEST_CASE("publish(loan, n) publishes the first n elements; bounds are errors") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus::Publisher<std::uint32_t[]> pub(node, "words", kSliceOpts);
    shmbus::Subscriber<std::uint32_t[]> sub(node, "words", kSliceOpts);
    REQUIRE(cpptest::connect(pub, sub));

    shmbus::Loan<std::uint32_t[]> loan = pub.loan(16);
    for (std::size_t i = 0; i < 3; i++) loan[i] = static_cast<std::uint32_t>(i + 1);
    CHECK(pub.try_publish(std::move(loan), 0).error() == SHMBUS_ERR_INVAL);
    CHECK(pub.try_publish(std::move(loan), 17).error() == SHMBUS_ERR_TOO_LARGE);
    REQUIRE(loan);                       // refused: still ours
    shmbus::Loan<std::uint32_t[]> empty; // an empty loan is INVAL whatever n is
    shmbus::Status st = pub.try_publish(std::move(empty), 1);
    CHECK(st.error() == SHMBUS_ERR_INVAL);
    CHECK(std::string(st.detail() ? st.detail() : "").find("loan is empty") != std::string::npos);
    shmbus::Publisher<std::uint32_t[]> closed;
    CHECK(closed.try_publish(std::move(loan), 3).error() == SHMBUS_ERR_INVAL);
    CHECK(closed.try_send(loan.data(), SIZE_MAX).error() == SHMBUS_ERR_INVAL); // empty first
    REQUIRE(loan);
    pub.publish(std::move(loan), 3);
    shmbus::Sample<std::uint32_t[]> s = sub.take();
    REQUIRE(s);
    CHECK(s.size() == 3);
    CHECK(std::accumulate(s.begin(), s.end(), 0u) == 6u);

    CHECK(pub.try_loan(0).error() == SHMBUS_ERR_INVAL);
    CHECK(pub.try_loan(17).error() == SHMBUS_ERR_TOO_LARGE);
    CHECK_THROWS_AS((void)pub.loan(17), shmbus::Error);
  }

  TEST_CASE("send copies a span; Loan<T[]>::write copies into a loan") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus::Publisher<double[]> pub(node, "doubles", kSliceOpts);
    shmbus::Subscriber<double[]> sub(node, "doubles", kSliceOpts);
    REQUIRE(cpptest::connect(pub, sub));

    double values[5] = {0.5, 1.5, 2.5, 3.5, 4.5};
    pub.send(shmbus::Span<const double>(values));
    pub.send(values, 2);
    shmbus::Loan<double[]> loan = pub.loan(4);
    loan.write(values + 1, 4);
    pub.publish(std::move(loan));
#if SHMBUS_CPP17
    shmbus::Span deduced(values, 3); // class template argument deduction
    static_assert(std::is_same<decltype(deduced), shmbus::Span<double>>::value, "CTAD");
    pub.send(shmbus::Span<const double>(deduced));
#endif
    CHECK(pub.try_send(values, 0).error() == SHMBUS_ERR_INVAL);
    CHECK(pub.try_send(values, 17).error() == SHMBUS_ERR_TOO_LARGE);

    shmbus::Sample<double[]> a = sub.take();
    shmbus::Sample<double[]> b = sub.take();
    shmbus::Sample<double[]> c = sub.take();
    REQUIRE(a);
    REQUIRE(b);
    REQUIRE(c);
    CHECK(a.size() == 5);
    CHECK(a[4] == 4.5);
    CHECK(b.size() == 2);
    CHECK(b[1] == 1.5);
    CHECK(c.size() == 4);
    CHECK(c[0] == 1.5);
    CHECK(c[3] == 4.5);
#if SHMBUS_CPP17
    a.release();
    shmbus::Sample<double[]> e = sub.take();
    REQUIRE(e);
    CHECK(e.size() == 3);
#endif
  }

  TEST_CASE("a single-element subscriber refuses a slice's sample (CORRUPT) and goes on") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus::Publisher<Reading[]> pub(node, "mixed", kSliceOpts);
    shmbus::Subscriber<Reading> single(node, "mixed");
    REQUIRE(cpptest::connect(pub, single));

    Reading three[3] = {make_reading(0), make_reading(1), make_reading(2)};
    pub.send(three, 3);
    pub.send(three + 2, 1);
    try {
      (void)single.take();
      FAIL("no exception");
    } catch (const shmbus::Error &e) {
      CHECK(e.code() == SHMBUS_ERR_CORRUPT);
      CHECK(std::string(e.what()).find("does not fit the type") != std::string::npos);
    }
    shmbus::Sample<Reading> s = single.take(); // the refused one was released
    REQUIRE(s);
    CHECK(s->seq == 2);
    CHECK(s.bytes() == sizeof(Reading));
  }

  TEST_CASE("bytes: uint8_t slices meet a C type {\"uint8_t\", 1, 1}") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus_service_opts c = SHMBUS_SERVICE_OPTS_INIT;
    c.type.name = "uint8_t";
    c.type.size = 1;
    c.type.align = 1;
    c.max_elements = 4096;
    shmbus_publisher *cpub = nullptr;
    REQUIRE(shmbus_publisher_open(node.native_handle(), "bytes", &c, &cpub) == 0);
    shmbus::Subscriber<std::uint8_t[]> sub(node, "bytes");
    REQUIRE(cpptest::eventually([&] {
      const int publishers = sub.publishers();
      return shmbus_publisher_update(cpub) == 1 && publishers == 1;
    }));
    const char text[] = "hello, shared memory";
    REQUIRE(shmbus_publisher_send_copy(cpub, text, sizeof text) == 0);
    shmbus::Sample<std::uint8_t[]> s = sub.take();
    REQUIRE(s);
    CHECK(s.size() == sizeof text);
    CHECK(std::memcmp(s.data(), text, sizeof text) == 0);
    s.release();
    shmbus_publisher_close(cpub);
  }
}

// SPDX-License-Identifier: Apache-2.0
//
// Wait sets: events that carry the typed subscriber, callbacks run by
// dispatch, the trigger, and the lifetimes of attachments (moved, destroyed,
// detached from a callback, wait set destroyed first).
#include "support.hpp"

#include <stdexcept>

using cpptest::make_reading;
using cpptest::Other;
using cpptest::Reading;
using cpptest::TestDomain;

namespace {
using Ms = std::chrono::milliseconds;

struct Two {
  explicit Two(const TestDomain &d)
      : node(d.node()),
        rpub(node, "ws-reading"),
        rsub(node, "ws-reading"),
        opub(node, "ws-other"),
        osub(node, "ws-other"),
        ws(node) {
    REQUIRE(cpptest::connect(rpub, rsub));
    REQUIRE(cpptest::connect(opub, osub));
  }
  shmbus::Node node;
  shmbus::Publisher<Reading> rpub;
  shmbus::Subscriber<Reading> rsub;
  shmbus::Publisher<Other> opub;
  shmbus::Subscriber<Other> osub;
  shmbus::WaitSet ws;
};

Other make_other(std::uint64_t v) {
  Other o = {v, v + 1, v + 2, v + 3};
  return o;
}
} // namespace

TEST_SUITE("waitset") {
  TEST_CASE("events carry the typed subscriber") {
    TestDomain d;
    Two t(d);
    t.ws.attach(t.rsub);
    t.ws.attach(t.osub);
    CHECK(t.ws.wait(Ms(0)).empty());

    t.opub.send(make_other(1));
    shmbus::WaitSet::Events events = t.ws.wait(std::chrono::seconds(5));
    REQUIRE(events.size() == 1);
    const shmbus::WaitEvent &e = events[0];
    CHECK(e.has_data());
    CHECK(e.kind() == shmbus::WaitEvent::Kind::data);
    CHECK(e.is_from(t.osub));
    CHECK(!e.is_from(t.rsub));
    CHECK(e.subscriber<Other>() == &t.osub);
    CHECK(e.subscriber<Reading>() == nullptr); // another type
    CHECK(!events.triggered());
    shmbus::Sample<Other> s = e.subscriber<Other>()->take();
    REQUIRE(s);
    CHECK(s->a == 1);

    t.rpub.send(make_reading(2));
    t.opub.send(make_other(3));
    int seen = 0;
    for (const shmbus::WaitEvent &ev : t.ws.wait(std::chrono::seconds(5))) {
      if (shmbus::Subscriber<Reading> *r = ev.subscriber<Reading>()) {
        shmbus::Sample<Reading> x = r->take();
        CHECK((x && x->seq == 2));
        seen |= 1;
      } else if (shmbus::Subscriber<Other> *o = ev.subscriber<Other>()) {
        shmbus::Sample<Other> x = o->take();
        CHECK((x && x->a == 3));
        seen |= 2;
      }
    }
    if (seen != 3) { // the two publishes may straddle a wait
      for (const shmbus::WaitEvent &ev : t.ws.wait(std::chrono::seconds(5))) {
        if (ev.is_from(t.rsub) && t.rsub.take()) seen |= 1;
        if (ev.is_from(t.osub) && t.osub.take()) seen |= 2;
      }
    }
    CHECK(seen == 3);
  }

  TEST_CASE("dispatch runs each subscriber's callback; the trigger stops it") {
    TestDomain d;
    Two t(d);
    std::vector<std::uint64_t> readings, others;
    int lost = 0;
    t.ws.attach(t.rsub, [&readings](shmbus::Subscriber<Reading> &sub) {
      while (shmbus::Sample<Reading> s = sub.take()) readings.push_back(s->seq);
    });
    t.ws.attach(t.osub,
                [&others, &lost](shmbus::Subscriber<Other> &sub, const shmbus::WaitEvent &e) {
                  if (e.lost_publishers()) lost++;
                  while (shmbus::Sample<Other> s = sub.take()) others.push_back(s->a);
                });
    for (std::uint64_t i = 0; i < 5; i++) t.rpub.send(make_reading(i));
    t.opub.send(make_other(10));
    while (readings.size() < 5 || others.size() < 1)
      REQUIRE(t.ws.dispatch(std::chrono::seconds(5)));
    CHECK(readings == std::vector<std::uint64_t>({0, 1, 2, 3, 4}));
    CHECK(others == std::vector<std::uint64_t>({10}));

    t.opub.close(); // the other subscriber's last publisher leaves
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (lost == 0 && std::chrono::steady_clock::now() < deadline) t.ws.dispatch(Ms(100));
    CHECK(lost == 1);

    std::thread stopper([&t] {
      std::this_thread::sleep_for(Ms(20));
      t.ws.trigger(); // from another thread
    });
    bool go_on = true;
    for (int i = 0; i < 100 && go_on; i++) go_on = t.ws.dispatch(); // no timeout
    stopper.join();
    CHECK(!go_on);
  }

  TEST_CASE("a wait set with no subscriber: the trigger and the time-out") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus::WaitSet ws(node);
    CHECK(ws.fd() >= 0);
    CHECK(ws.wait(Ms(10)).empty());
    ws.trigger();
    shmbus::WaitSet::Events ev = ws.wait(std::chrono::seconds(5));
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].is_trigger());
    CHECK(ev.triggered());
    CHECK(ev[0].subscriber<Reading>() == nullptr);
    shmbus::Result<shmbus::WaitSet::Events> r = ws.try_wait(Ms(0));
    REQUIRE(r.ok());
    CHECK(r->empty());
  }

  TEST_CASE("a moved Subscriber is found at its new place; attached, it cannot wait alone") {
    TestDomain d;
    Two t(d);
    t.ws.attach(t.rsub);
    CHECK(t.rsub.try_wait_for(Ms(0)).error() == SHMBUS_ERR_BUSY);
    CHECK(t.ws.try_attach(t.rsub).error() == SHMBUS_ERR_BUSY); // in a wait set already
    shmbus::Subscriber<Reading> moved = std::move(t.rsub);
    t.rpub.send(make_reading(4));
    shmbus::WaitSet::Events ev = t.ws.wait(std::chrono::seconds(5));
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].subscriber<Reading>() == &moved);
    CHECK(ev[0].is_from(moved));
    CHECK(!ev[0].is_from(t.rsub));
    CHECK(moved.take());
    t.ws.detach(moved);
    CHECK(t.ws.try_detach(moved).error() == SHMBUS_ERR_NOT_FOUND);
    CHECK(moved.wait_for(Ms(0)) == shmbus::WaitStatus::timed_out); // on its own again
  }

  TEST_CASE("destroying an attached Subscriber detaches it; events of it then name nobody") {
    TestDomain d;
    Two t(d);
    t.ws.attach(t.rsub, [](shmbus::Subscriber<Reading> &sub) { (void)sub.take(); });
    t.ws.attach(t.osub);
    t.rpub.send(make_reading(1));
    shmbus::WaitSet::Events ev = t.ws.wait(std::chrono::seconds(5));
    REQUIRE(ev.size() == 1);
    t.rsub.close(); // detached: the event stays valid but names nobody
    CHECK(ev[0].subscriber<Reading>() == nullptr);
    CHECK(!ev[0].is_from(t.rsub));
    t.rpub.send(make_reading(2));
    t.opub.send(make_other(3));
    ev = t.ws.wait(std::chrono::seconds(5));
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].is_from(t.osub));
  }

  TEST_CASE("a callback may close another subscriber of the same dispatch") {
    TestDomain d;
    Two t(d);
    int other_calls = 0;
    t.ws.attach(t.rsub, [&t](shmbus::Subscriber<Reading> &sub) {
      (void)sub.take();
      t.osub.close(); // its event, if it is later in this dispatch, is skipped
    });
    t.ws.attach(t.osub, [&other_calls](shmbus::Subscriber<Other> &) { other_calls++; });
    t.opub.send(make_other(1));
    t.rpub.send(make_reading(1));
    for (int i = 0; i < 3; i++) t.ws.dispatch(Ms(50));
    CHECK(!t.osub);
    CHECK(other_calls <= 1); // before the close, maybe; never after
  }

  TEST_CASE("a callback may attach a subscriber; it cannot wait on its own wait set") {
    TestDomain d;
    Two t(d);
    int reading_calls = 0, other_calls = 0;
    int nested = 0;
    t.ws.attach(t.rsub, [&](shmbus::Subscriber<Reading> &sub) {
      reading_calls++;
      while (sub.take()) {
      }
      if (reading_calls == 1) { // grows the set while its events are walked
        t.ws.attach(t.osub, [&other_calls](shmbus::Subscriber<Other> &o) {
          other_calls++;
          while (o.take()) {
          }
        });
        nested = t.ws.try_wait(Ms(0)).error(); // not from its own callback
      }
    });
    t.rpub.send(make_reading(1));
    REQUIRE(t.ws.dispatch(std::chrono::seconds(5)));
    CHECK(reading_calls == 1);
    CHECK(nested == SHMBUS_ERR_BUSY);
    t.opub.send(make_other(2));
    for (int i = 0; i < 50 && other_calls == 0; i++) t.ws.dispatch(Ms(100));
    CHECK(other_calls == 1);
  }

  TEST_CASE("an exception from a callback leaves dispatch; the wait set goes on") {
    TestDomain d;
    Two t(d);
    t.ws.attach(t.rsub, [](shmbus::Subscriber<Reading> &sub) {
      (void)sub.take();
      throw std::runtime_error("from the callback");
    });
    t.rpub.send(make_reading(1));
    CHECK_THROWS_AS(t.ws.dispatch(std::chrono::seconds(5)), std::runtime_error);
    CHECK(t.ws.wait(Ms(0)).empty()); // not stuck in dispatch
  }

  TEST_CASE("the WaitSet may go first: its subscribers wait on their own again") {
    TestDomain d;
    shmbus::Node node = d.node();
    shmbus::Publisher<Reading> pub(node, "ws-first");
    shmbus::Subscriber<Reading> sub(node, "ws-first");
    REQUIRE(cpptest::connect(pub, sub));
    {
      shmbus::WaitSet ws(node);
      ws.attach(sub, [](shmbus::Subscriber<Reading> &) {});
      CHECK(sub.try_wait_for(Ms(0)).error() == SHMBUS_ERR_BUSY);
      shmbus::WaitSet moved = std::move(ws);
      CHECK(!ws);
      pub.send(make_reading(1));
      CHECK(moved.dispatch(std::chrono::seconds(5)));
    }
    CHECK(sub.wait_for(std::chrono::seconds(5)) == shmbus::WaitStatus::ready);
    CHECK(sub.take());
  }
}

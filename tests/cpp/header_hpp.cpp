// SPDX-License-Identifier: Apache-2.0
//
// <shmbus.hpp> on its own, compiled as C++11, 14, 17 and 20, with and
// without exceptions (and then without RTTI too), with -Wall -Wextra
// -Werror -pedantic (tests/cpp/cpp.cmake). Every class template is
// explicitly instantiated, so every member compiles; the member templates
// are called once. Then one round trip on a domain of its own, through the
// non-throwing forms (and the throwing ones when exceptions are on), and a
// check that the domain left nothing in /dev/shm.
// Exit 0 on success, 1 on failure.
#include <shmbus.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include <dirent.h>

namespace hdr {
struct Reading {
  std::uint64_t counter;
  double value;
  std::uint32_t sensor;
  std::uint32_t flags;
};
struct NeedsInit { // trivially copyable, not trivially default constructible
  NeedsInit() : a(7) {}
  NeedsInit(std::uint32_t x, std::uint32_t y) : a(x + y) {}
  std::uint32_t a;
};
} // namespace hdr

SHMBUS_TYPE_NAME(hdr::Reading, "header-test/Reading");
SHMBUS_TYPE_NAME(hdr::NeedsInit, "header-test/NeedsInit");

// Every member of every class template.
template class shmbus::Publisher<hdr::Reading>;
template class shmbus::Publisher<hdr::Reading[]>;
template class shmbus::Publisher<std::uint8_t[]>;
template class shmbus::Subscriber<hdr::Reading>;
template class shmbus::Subscriber<hdr::Reading[]>;
template class shmbus::Loan<hdr::Reading>;
template class shmbus::Loan<hdr::Reading[]>;
template class shmbus::Loan<hdr::NeedsInit>;
template class shmbus::Loan<hdr::NeedsInit[]>;
template class shmbus::Sample<hdr::Reading>;
template class shmbus::Sample<hdr::Reading[]>;
template class shmbus::Result<int>;
template class shmbus::Result<shmbus::Node>;
template class shmbus::Result<shmbus::Loan<hdr::Reading>>;
template class shmbus::Result<shmbus::Sample<hdr::Reading[]>>;
template class shmbus::Span<const hdr::Reading>;
template class shmbus::Span<double>;

namespace {

int failures;

void check(bool ok, const char *what) {
  if (!ok) {
    std::fprintf(stderr, "header_hpp: FAILED: %s\n", what);
    failures++;
  }
}

int leftovers(const std::string &domain) {
  DIR *d = opendir("/dev/shm");
  if (d == nullptr) return 0;
  const std::string prefix = "shmbus." + domain + ".";
  int n = 0;
  while (dirent *e = readdir(d))
    if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) n++;
  closedir(d);
  return n;
}

// The member templates, instantiated (not all run).
void instantiate(shmbus::Publisher<hdr::NeedsInit> &pub, shmbus::Subscriber<hdr::Reading> &sub,
                 shmbus::WaitSet &ws) {
  shmbus::Result<shmbus::Loan<hdr::NeedsInit>> l = pub.try_loan();
  if (l) {
    l->emplace(1u, 2u);
    l->emplace();
  }
  (void)pub.try_set_block_timeout(std::chrono::milliseconds(5));
  (void)sub.try_set_spin(std::chrono::microseconds(10));
  (void)sub.try_wait_for(std::chrono::duration<double>(0.0));
  (void)sub.try_wait_until(std::chrono::steady_clock::now());
  (void)ws.try_attach(sub, [](shmbus::Subscriber<hdr::Reading> &) {});
  (void)ws.try_attach(sub, [](shmbus::Subscriber<hdr::Reading> &, const shmbus::WaitEvent &) {});
  (void)ws.try_dispatch(std::chrono::seconds(0));
  (void)ws.try_wait(std::chrono::nanoseconds(0));
#if SHMBUS_CPP_EXCEPTIONS
  pub.set_block_timeout(std::chrono::milliseconds(1));
  (void)sub.wait_for(std::chrono::milliseconds(0));
  (void)sub.wait_until(shmbus::Clock::now());
  ws.attach(sub, [](shmbus::Subscriber<hdr::Reading> &) {});
  (void)ws.dispatch(std::chrono::milliseconds(0));
  (void)ws.wait(std::chrono::milliseconds(0));
#endif
}

int run() {
  const std::string domain = "hdrpp" + std::to_string(static_cast<long>(getpid()));
  {
    shmbus::Result<shmbus::Node> node =
        shmbus::Node::try_open(shmbus::NodeOptions().domain(domain));
    check(node.ok(), "Node::try_open");
    if (!node) return 1;
    const shmbus::ServiceOptions opts = shmbus::ServiceOptions().queue_depth(4).max_held(2);
    shmbus::Result<shmbus::Publisher<hdr::Reading>> pub =
        shmbus::Publisher<hdr::Reading>::try_open(*node, "header/reading", opts);
    shmbus::Result<shmbus::Subscriber<hdr::Reading>> sub =
        shmbus::Subscriber<hdr::Reading>::try_open(*node, "header/reading", opts);
    check(pub.ok() && sub.ok(), "try_open");
    if (!pub || !sub) return 1;
    check(sub->try_publishers().ok(), "try_publishers");
    check(pub->try_update().ok(), "try_update");

    shmbus::Result<shmbus::Sample<hdr::Reading>> none = sub->try_take();
    check(none.ok() && !*none, "nothing queued: an empty Sample");

    shmbus::Result<shmbus::Loan<hdr::Reading>> loan = pub->try_loan();
    check(loan.ok(), "try_loan");
    if (!loan) return 1;
    hdr::Reading r = {42, 2.5, 7, 0};
    loan->write(r);
    check(pub->try_publish(std::move(*loan)).ok(), "try_publish");
    check(!*loan, "a published loan is empty");

    shmbus::Result<shmbus::Sample<hdr::Reading>> got = sub->try_take();
    check(got.ok() && static_cast<bool>(*got), "try_take");
    if (got && *got) {
      const shmbus::Sample<hdr::Reading> &s = *got;
      check(s->counter == 42 && s->value == 2.5 && s.sequence() == 0, "sample contents");
      check(s.timestamp() <= shmbus::Clock::now(), "timestamp in the past");
      check(s.publisher_id() == pub->id(), "publisher id");
      check(s.bytes() == sizeof(hdr::Reading), "bytes");
    }
    check(got->try_release().ok(), "try_release");

#if SHMBUS_CPP_EXCEPTIONS
    pub->send(r);
    shmbus::Sample<hdr::Reading> s = sub->take();
    check(s && s->counter == 42 && s.sequence() == 1, "send/take");
    bool threw = false;
    try {
      shmbus::Publisher<hdr::Reading> empty;
      (void)empty.loan();
    } catch (const shmbus::Error &e) {
      threw = e.code() == SHMBUS_ERR_INVAL && std::strcmp(e.name(), "INVAL") == 0;
    }
    check(threw, "an empty publisher throws INVAL");
#endif
    shmbus::Result<shmbus::WaitSet> ws = shmbus::WaitSet::try_open(*node);
    check(ws.ok() || ws.error() == SHMBUS_ERR_UNSUPPORTED, "WaitSet::try_open");
    if (false && ws && pub) {
      shmbus::Result<shmbus::Publisher<hdr::NeedsInit>> p2 =
          shmbus::Publisher<hdr::NeedsInit>::try_open(*node, "header/needs-init");
      if (p2) instantiate(*p2, *sub, *ws);
    }
  }
  check(leftovers(domain) == 0, "nothing left in /dev/shm");
  return failures == 0 ? 0 : 1;
}

} // namespace

int main() {
  const int rc = run();
  if (rc == 0)
    std::printf("header_hpp: ok (C++%ld, exceptions %s, shmbus %s)\n",
                static_cast<long>(__cplusplus / 100 % 100), SHMBUS_CPP_EXCEPTIONS ? "on" : "off",
                shmbus::version());
  return rc;
}

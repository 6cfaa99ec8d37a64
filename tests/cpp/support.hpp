// SPDX-License-Identifier: Apache-2.0
//
// Helpers of the C++ test suite (tests/cpp/test_*.cpp), as tests/support.h
// is for the C tests:
//   - TestDomain: a domain unique to the process and the case; its
//     destructor fails the case if the domain left an object in /dev/shm
//     (and removes it);
//   - the sample types the cases share (one is also the C peer's,
//     peer_type.h);
//   - children: run a function in a forked process with an alarm()
//     watchdog, or exec a program, and wait for its exit code;
//   - the object names the library gives a service's segments (computed as
//     src/names.c does), so that a case can act as a hostile peer.
// Children never use doctest's assertions (they would report into the
// child's copy of the runner); they return an exit code: 0 pass.
#ifndef SHMBUS_TESTS_CPP_SUPPORT_HPP
#define SHMBUS_TESTS_CPP_SUPPORT_HPP

#include <shmbus.hpp>

#include <doctest/doctest.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "peer_type.h"

namespace cpptest {

struct Reading {
  std::uint64_t seq;
  std::uint64_t check;
  double value;
  std::uint32_t sensor;
  std::uint32_t flags;
};

inline Reading make_reading(std::uint64_t seq) {
  Reading r = {seq, seq * 0x9E3779B97F4A7C15ull ^ 0x5eb0u, static_cast<double>(seq) / 4.0,
               static_cast<std::uint32_t>(seq % 7), 0u};
  return r;
}
inline bool valid(const Reading &r) {
  return r.check == (r.seq * 0x9E3779B97F4A7C15ull ^ 0x5eb0u) &&
         r.value == static_cast<double>(r.seq) / 4.0 && r.sensor == r.seq % 7 && r.flags == 0;
}

struct Other { // same size as Reading, another type
  std::uint64_t a, b, c, d;
};

struct alignas(64) Wide { // a type with an alignment of a cache line
  std::uint64_t v;
};

struct Request {
  std::uint64_t id;
  std::int32_t x;
  std::int32_t y;
};
struct Reply {
  std::uint64_t id;
  std::int64_t sum;
};

} // namespace cpptest

SHMBUS_TYPE_NAME(cpptest::Reading, "shmbus-cpp-test/Reading");
SHMBUS_TYPE_NAME(cpptest::Other, "shmbus-cpp-test/Other");
SHMBUS_TYPE_NAME(cpptest::Wide, "shmbus-cpp-test/Wide");
SHMBUS_TYPE_NAME(cpptest::Request, "shmbus-cpp-test/Request");
SHMBUS_TYPE_NAME(cpptest::Reply, "shmbus-cpp-test/Reply");
SHMBUS_TYPE_NAME(cpp_peer_reading, CPP_PEER_TYPE_NAME);

namespace cpptest {

// ---- objects of a domain in /dev/shm ---------------------------------------

inline std::vector<std::string> objects_of(const std::string &domain) {
  std::vector<std::string> names;
  DIR *d = opendir("/dev/shm");
  if (d == nullptr) return names;
  const std::string prefix = "shmbus." + domain + ".";
  while (dirent *e = readdir(d))
    if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) names.push_back(e->d_name);
  closedir(d);
  return names;
}

inline void remove_objects(const std::string &domain) {
  for (const std::string &n : objects_of(domain)) unlink(("/dev/shm/" + n).c_str());
}

// A fresh domain per case; fails the case if anything of it is left.
class TestDomain {
 public:
  TestDomain() {
    static unsigned counter;
    name_ = "cx" + std::to_string(static_cast<long>(getpid())) + "x" + std::to_string(++counter);
  }
  ~TestDomain() {
    std::vector<std::string> left = objects_of(name_);
    std::string list;
    for (const std::string &n : left) list += " " + n;
    CHECK_MESSAGE(left.empty(), "left behind in /dev/shm:" << list);
    remove_objects(name_);
  }
  TestDomain(const TestDomain &) = delete;
  TestDomain &operator=(const TestDomain &) = delete;

  const std::string &name() const { return name_; }
  shmbus::NodeOptions options() const { return shmbus::NodeOptions().domain(name_); }
  shmbus::Node node() const { return shmbus::Node(options()); }

 private:
  std::string name_;
};

inline std::string service_name(const char *hint) {
  static unsigned counter;
  return std::string("svc-") + std::to_string(++counter) + "-" + hint;
}

// ---- object names, computed the way src/names.c does ------------------------

inline std::uint64_t fnv1a64(const std::string &s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// "shmbus.<domain>.<hash>.p<id>.d" (data) or ".c" (control).
inline std::string publisher_object(const std::string &domain, const std::string &service,
                                    std::uint64_t pub_id, bool data) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "shmbus.%s.%016llx.p%llx.%c", domain.c_str(),
                static_cast<unsigned long long>(fnv1a64(service)),
                static_cast<unsigned long long>(pub_id), data ? 'd' : 'c');
  return buf;
}

// ftruncate(2) of /dev/shm/<name>, as any process of the user may.
inline bool truncate_object(const std::string &name, off_t size) {
  const int fd = open(("/dev/shm/" + name).c_str(), O_RDWR);
  if (fd < 0) return false;
  const bool ok = ftruncate(fd, size) == 0;
  close(fd);
  return ok;
}

// ---- children ------------------------------------------------------------------

const int kChildAlarmSeconds = 60;

// Runs fn() (returning an exit code) in a forked child with a watchdog.
// An exception in the child is printed and fails it.
template <class F>
pid_t fork_child(F fn) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid != 0) return pid;
  // doctest's crash handlers belong to the parent's runner: a crash here
  // is the child's exit status.
  for (int sig : {SIGABRT, SIGSEGV, SIGILL, SIGFPE}) signal(sig, SIG_DFL);
  alarm(kChildAlarmSeconds);
  int rc = 1;
  try {
    rc = fn();
  } catch (const std::exception &e) {
    std::fprintf(stderr, "child %ld: exception: %s\n", static_cast<long>(getpid()), e.what());
  }
  std::fflush(nullptr);
  _exit(rc);
}

// Forks and execs `argv` with SHMBUS_DOMAIN=domain.
inline pid_t spawn(const std::string &domain, const std::vector<std::string> &argv) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid != 0) return pid;
  setenv("SHMBUS_DOMAIN", domain.c_str(), 1);
  std::vector<char *> args;
  for (const std::string &a : argv) args.push_back(const_cast<char *>(a.c_str()));
  args.push_back(nullptr);
  execv(args[0], args.data());
  std::perror("execv");
  _exit(127);
}

// The child's exit code, or 128 + the signal that killed it.
inline int wait_child(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// A check inside a child: prints and returns 1 from the enclosing function.
#define CHILD_CHECK(cond)                                                              \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: child %ld: check failed: %s\n", __FILE__, __LINE__, \
                   static_cast<long>(getpid()), #cond);                                \
      return 1;                                                                        \
    }                                                                                  \
  } while (0)

// Waits (polling, bounded) until cond() holds; false on time-out.
template <class F>
bool eventually(F cond, std::chrono::milliseconds limit = std::chrono::milliseconds(10000)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

// Opens both sides' views of each other (a subscriber notices a publisher
// on its next look; a publisher connects it on its next update). Both look
// every round: each side's look lets the other count it.
template <class P, class S>
bool connect(P &pub, S &sub, int subscribers = 1) {
  return eventually([&] {
    const int publishers = sub.publishers();
    const int connected = pub.update();
    return publishers >= 1 && connected >= subscribers;
  });
}

} // namespace cpptest

#endif // SHMBUS_TESTS_CPP_SUPPORT_HPP

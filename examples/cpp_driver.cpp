// SPDX-License-Identifier: Apache-2.0
//
// shmbus-example-cpp-driver [COUNT] [--thread]
//
// A sensor driver in C++17 on the C API: <shmbus.h> is the whole interface,
// wrapped here in a few small RAII classes that a project would keep in a
// header of its own:
//
//   Node, Publisher<T>, Subscriber<T>  own their handle (unique_ptr with the
//                                      matching close function as deleter)
//   Loan<T>    a loaned sample: publish() hands it to the subscribers; if it
//              goes out of scope unpublished it is discarded
//   Sample<T>  a taken sample, read in place; released when it goes out of
//              scope
//
// Errors become exceptions (shmbus::Error, with the SHMBUS_ERR_* code), except
// "nothing to take", which is an empty std::optional.
//
// The program publishes COUNT (default 1000) Imu readings (examples/imu.h,
// the same type as the C examples) and receives them in a second process
// (fork), or in a second thread of the same process with --thread, checking
// every one. Exit status: 0 on success, 1 on failure, 2 on bad usage.
#include <shmbus.h>

#include "imu.h"

#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

// ---------------------------------------------------------------------------
// The wrapper
// ---------------------------------------------------------------------------

namespace shmbus {

// A failed shmbus call: what was called, the message and the code's name.
class Error : public std::runtime_error {
 public:
  Error(const std::string &call, int code)
      : std::runtime_error(call + ": " + shmbus_strerror(code) + " (SHMBUS_ERR_" +
                           shmbus_err_name(code) + ")"),
        code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

// Passes a non-negative result through; throws on an error code.
inline int check(int result, const char *call) {
  if (result < 0) throw Error(call, result);
  return result;
}

struct NodeClose {
  void operator()(shmbus_node *node) const noexcept { shmbus_node_close(node); }
};
struct PublisherClose {
  void operator()(shmbus_publisher *pub) const noexcept { shmbus_publisher_close(pub); }
};
struct SubscriberClose {
  void operator()(shmbus_subscriber *sub) const noexcept { shmbus_subscriber_close(sub); }
};

// A participant. Ports keep what they need of it: a Node may be destroyed
// before the Publishers and Subscribers opened through it.
class Node {
 public:
  explicit Node(const shmbus_node_opts *opts = nullptr) {
    shmbus_node *node = nullptr;
    check(shmbus_node_open(opts, &node), "shmbus_node_open");
    node_.reset(node);
  }
  shmbus_node *get() const noexcept { return node_.get(); }
  const char *domain() const noexcept { return shmbus_node_domain(node_.get()); }

 private:
  std::unique_ptr<shmbus_node, NodeClose> node_;
};

// Only plain data can live in shared memory and be read by another process.
template <typename T>
void check_type(const shmbus_service_opts &opts) {
  static_assert(std::is_trivially_copyable<T>::value && std::is_standard_layout<T>::value,
                "a sample type must be plain data: trivially copyable, standard layout");
  if (opts.type.size != sizeof(T) || opts.type.align != alignof(T))
    throw std::invalid_argument("service type size or alignment does not match the C++ type");
}

template <typename T>
class Publisher;
template <typename T>
class Subscriber;

// A loaned, not yet published sample. Move-only; must not outlive its
// Publisher.
template <typename T>
class Loan {
 public:
  Loan(Loan &&other) noexcept
      : pub_(other.pub_), value_(std::exchange(other.value_, nullptr)) {}
  Loan &operator=(Loan &&other) noexcept {
    if (this != &other) {
      discard();
      pub_ = other.pub_;
      value_ = std::exchange(other.value_, nullptr);
    }
    return *this;
  }
  Loan(const Loan &) = delete;
  Loan &operator=(const Loan &) = delete;
  ~Loan() { discard(); }

  T *operator->() const noexcept { return value_; }
  T &operator*() const noexcept { return *value_; }
  explicit operator bool() const noexcept { return value_ != nullptr; }

  // Publishes to every connected subscriber; the sample is theirs now and
  // this Loan is empty. On failure the loan stays (and is discarded later).
  void publish() {
    check(shmbus_publisher_publish(pub_, value_), "shmbus_publisher_publish");
    value_ = nullptr;
  }

  // Gives the sample back unpublished. Does nothing on an empty Loan.
  void discard() noexcept {
    if (value_ != nullptr) (void)shmbus_publisher_discard(pub_, value_);
    value_ = nullptr;
  }

 private:
  friend class Publisher<T>;
  Loan(shmbus_publisher *pub, T *value) noexcept : pub_(pub), value_(value) {}

  shmbus_publisher *pub_;
  T *value_;
};

template <typename T>
class Publisher {
 public:
  Publisher(const Node &node, const char *service, const shmbus_service_opts &opts) {
    check_type<T>(opts);
    shmbus_publisher *pub = nullptr;
    check(shmbus_publisher_open(node.get(), service, &opts, &pub), "shmbus_publisher_open");
    pub_.reset(pub);
  }

  // An uninitialised T in shared memory: fill every field, then publish().
  Loan<T> loan() {
    void *raw = nullptr;
    check(shmbus_publisher_loan(pub_.get(), 1, &raw), "shmbus_publisher_loan");
    // Begins the lifetime of a T there; for plain data that writes nothing.
    return Loan<T>(pub_.get(), ::new (raw) T);
  }

  // Connects new subscribers, drops departed ones; returns how many are
  // connected.
  int update() { return check(shmbus_publisher_update(pub_.get()), "shmbus_publisher_update"); }

  uint64_t id() const noexcept { return shmbus_publisher_id(pub_.get()); }

 private:
  std::unique_ptr<shmbus_publisher, PublisherClose> pub_;
};

// A taken sample, read in place. Move-only; released when destroyed; must
// not outlive its Subscriber.
template <typename T>
class Sample {
 public:
  Sample(Sample &&other) noexcept
      : sub_(std::exchange(other.sub_, nullptr)), sample_(other.sample_) {}
  Sample &operator=(Sample &&other) noexcept {
    if (this != &other) {
      release();
      sub_ = std::exchange(other.sub_, nullptr);
      sample_ = other.sample_;
    }
    return *this;
  }
  Sample(const Sample &) = delete;
  Sample &operator=(const Sample &) = delete;
  ~Sample() { release(); }

  const T *operator->() const noexcept { return static_cast<const T *>(sample_.payload); }
  const T &operator*() const noexcept { return *operator->(); }
  uint64_t sequence() const noexcept { return sample_.sequence; }
  uint64_t timestamp_ns() const noexcept { return sample_.timestamp_ns; }
  uint64_t publisher_id() const noexcept { return sample_.publisher_id; }

  // Hands the memory back to the publisher. Does nothing the second time.
  void release() noexcept {
    if (sub_ != nullptr) (void)shmbus_subscriber_release(sub_, &sample_);
    sub_ = nullptr;
  }

 private:
  friend class Subscriber<T>;
  Sample(shmbus_subscriber *sub, const shmbus_sample &sample) noexcept
      : sub_(sub), sample_(sample) {}

  shmbus_subscriber *sub_;
  shmbus_sample sample_;
};

template <typename T>
class Subscriber {
 public:
  Subscriber(const Node &node, const char *service, const shmbus_service_opts &opts) {
    check_type<T>(opts);
    shmbus_subscriber *sub = nullptr;
    check(shmbus_subscriber_open(node.get(), service, &opts, &sub), "shmbus_subscriber_open");
    sub_.reset(sub);
  }

  // The next sample, or nothing when none is queued.
  std::optional<Sample<T>> take() {
    shmbus_sample sample;
    int r = shmbus_subscriber_take(sub_.get(), &sample);
    if (r == SHMBUS_ERR_EMPTY) return std::nullopt;
    check(r, "shmbus_subscriber_take");
    Sample<T> guard(sub_.get(), sample);  // released on every way out
    if (sample.bytes != sizeof(T))
      throw std::runtime_error("sample of " + std::to_string(sample.bytes) + " bytes, expected " +
                               std::to_string(sizeof(T)));
    return std::optional<Sample<T>>(std::move(guard));
  }

  // Sleeps until a sample can be taken (true) or `timeout_ns` passed
  // (false). A publisher that closed or died is not an error here: the next
  // wait waits for a new one.
  bool wait(int64_t timeout_ns) {
    int r = shmbus_subscriber_wait(sub_.get(), timeout_ns);
    if (r == SHMBUS_ERR_TIMEDOUT || r == SHMBUS_ERR_NO_PUBLISHER) return false;
    check(r, "shmbus_subscriber_wait");
    return true;
  }

  // Samples dropped because our queue was full.
  uint64_t lost() const noexcept { return shmbus_subscriber_lost(sub_.get()); }

 private:
  std::unique_ptr<shmbus_subscriber, SubscriberClose> sub_;
};

}  // namespace shmbus

// ---------------------------------------------------------------------------
// The driver and its consumer
// ---------------------------------------------------------------------------

namespace {

const char *const kProgram = "shmbus-example-cpp-driver";
const char *const kService = "shmbus/examples/cpp-driver";

constexpr uint64_t kMs = 1000 * 1000;
constexpr uint64_t kSubscriberWaitNs = 5000 * kMs;  // for the consumer to connect
constexpr uint64_t kLingerNs = 10000 * kMs;         // for the consumer to finish
constexpr uint64_t kProgressTimeoutNs = 10000 * kMs;
constexpr uint64_t kPublishPeriodNs = 100 * 1000;

// CLOCK_MONOTONIC, like the timestamps shmbus puts on samples.
uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

void sleep_ns(uint64_t ns) {
  timespec ts{static_cast<time_t>(ns / 1000000000u), static_cast<long>(ns % 1000000000u)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

// The Loan guard must give back what it does not publish: loan far more
// than max_loans without publishing; a leak would end in LOAN_LIMIT.
void check_loan_guard(shmbus::Publisher<Imu> &pub) {
  for (int i = 0; i < 64; i++) {
    shmbus::Loan<Imu> unused = pub.loan();
    unused->counter = UINT64_MAX;  // never seen by anyone: discarded below
  }
}

// The publishing side: a driver that reads its sensor `count` times.
void drive(const shmbus::Node &node, uint64_t count) {
  shmbus::Publisher<Imu> pub(node, kService, imu_service_opts());
  check_loan_guard(pub);

  // Samples published before anyone listens reach nobody.
  uint64_t deadline = now_ns() + kSubscriberWaitNs;
  while (pub.update() == 0) {
    if (now_ns() >= deadline) throw std::runtime_error("no subscriber connected within 5 s");
    sleep_ns(1 * kMs);
  }

  for (uint64_t i = 0; i < count; i++) {
    shmbus::Loan<Imu> reading = pub.loan();
    imu_fill(&*reading, i, now_ns());
    reading.publish();
    sleep_ns(kPublishPeriodNs);  // the sensor's rate
  }
  std::printf("%s: published %" PRIu64 " Imu readings\n", kProgram, count);
  std::fflush(stdout);

  // Closing takes the publisher's memory away: let the consumer finish first
  // (shmbus has no flush; see examples/publisher.c).
  deadline = now_ns() + kLingerNs;
  while (pub.update() > 0) {
    if (now_ns() >= deadline) throw std::runtime_error("the subscriber did not finish");
    sleep_ns(1 * kMs);
  }
}

// The consuming side: accounts for `count` readings, checking each one.
// Returns 0 when all were right.
int receive(const shmbus::Node &node, uint64_t count) {
  shmbus::Subscriber<Imu> sub(node, kService, imu_service_opts());
  uint64_t received = 0, lost = 0, gaps = 0, next_sequence = 0;
  uint64_t last_progress = now_ns();
  while (received + lost < count) {
    if (std::optional<shmbus::Sample<Imu>> sample = sub.take()) {
      const shmbus::Sample<Imu> &s = *sample;
      if (received > 0 && s.sequence() < next_sequence) {
        std::fprintf(stderr, "%s: sequence %" PRIu64 " after %" PRIu64 "\n", kProgram,
                     s.sequence(), next_sequence - 1);
        return 1;
      }
      if (received > 0) gaps += s.sequence() - next_sequence;
      next_sequence = s.sequence() + 1;
      if (s->counter != s.sequence() || !imu_check(&*s, s->counter) ||
          s.timestamp_ns() < s->timestamp_ns) {
        std::fprintf(stderr, "%s: sample %" PRIu64 " is wrong (reading %" PRIu64 ")\n", kProgram,
                     s.sequence(), s->counter);
        return 1;
      }
      received++;
      last_progress = now_ns();
      continue;  // the Sample is released here, at the end of its scope
    }
    uint64_t now_lost = sub.lost();
    if (now_lost != lost) {
      lost = now_lost;
      last_progress = now_ns();
    }
    if (now_ns() - last_progress > kProgressTimeoutNs) {
      std::fprintf(stderr, "%s: no progress for 10 s: %" PRIu64 " received, %" PRIu64 " lost\n",
                   kProgram, received, lost);
      return 1;
    }
    sub.wait(static_cast<int64_t>(100 * kMs));  // sleeps; a publish wakes it
  }
  std::printf("%s: %" PRIu64 " of %" PRIu64 " readings received, %" PRIu64 " lost\n", kProgram,
              received, count, lost);
  std::fflush(stdout);
  if (gaps > lost || received == 0) {
    std::fprintf(stderr, "%s: %" PRIu64 " readings missing, %" PRIu64 " counted lost\n", kProgram,
                 gaps, lost);
    return 1;
  }
  return 0;
}

// The consumer in a child process, the driver in this one: what a real
// system looks like. Each process opens its own node.
int run_processes(uint64_t count) {
  std::fflush(stdout);
  pid_t child = fork();
  if (child < 0) {
    std::perror("fork");
    return 1;
  }
  if (child == 0) {
    int rc = 1;
    try {
      rc = receive(shmbus::Node(), count);
    } catch (const std::exception &e) {
      std::fprintf(stderr, "%s: subscriber process: %s\n", kProgram, e.what());
    }
    std::fflush(nullptr);
    _exit(rc);
  }
  int rc = 0;
  try {
    drive(shmbus::Node(), count);
  } catch (const std::exception &e) {
    // The child gives up on its own (progress timeout) and cleans up.
    std::fprintf(stderr, "%s: publisher: %s\n", kProgram, e.what());
    rc = 1;
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) {
      std::perror("waitpid");
      return 1;
    }
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "%s: the subscriber process failed (status 0x%x)\n", kProgram, status);
    rc = 1;
  }
  return rc;
}

// Both sides in one process: one node, used from two threads (node calls are
// thread-safe), each port used by its own thread only.
int run_threads(uint64_t count) {
  shmbus::Node node;
  int reader_rc = 1;
  std::thread reader([&node, &reader_rc, count] {
    try {
      reader_rc = receive(node, count);
    } catch (const std::exception &e) {
      std::fprintf(stderr, "%s: subscriber thread: %s\n", kProgram, e.what());
    }
  });
  int rc = 0;
  try {
    drive(node, count);
  } catch (const std::exception &e) {
    std::fprintf(stderr, "%s: publisher: %s\n", kProgram, e.what());
    rc = 1;
  }
  reader.join();
  return rc != 0 || reader_rc != 0 ? 1 : 0;
}

bool parse_count(const char *text, uint64_t *out) {
  char *end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v == 0 ||
      v > 1000000000000ull)
    return false;
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char **argv) {
  uint64_t count = 1000;
  bool threads = false, have_count = false;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--thread") == 0 && !threads) {
      threads = true;
    } else if (!have_count && parse_count(argv[i], &count)) {
      have_count = true;
    } else {
      std::fprintf(stderr,
                   "usage: %s [COUNT] [--thread]\n"
                   "  COUNT     readings to publish and receive (default 1000)\n"
                   "  --thread  receive in a thread instead of a child process\n"
                   "  The domain is $SHMBUS_DOMAIN, else \"default\".\n",
                   kProgram);
      return 2;
    }
  }
  std::printf("%s: %" PRIu64 " readings on '%s', subscriber in a %s\n", kProgram, count, kService,
              threads ? "thread" : "child process");
  return threads ? run_threads(count) : run_processes(count);
}

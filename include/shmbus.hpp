// SPDX-License-Identifier: Apache-2.0
/**
 * @file
 * shmbus.hpp: the C++ API of shmbus. Header-only, over the C API of
 * <shmbus.h> (link shmbus::shmbus or shmbus::shmbus_static, as from C).
 * C++11 or later; C++17 and C++20 add a little (see "Standards" below).
 *
 * This header is the C++ API's specification; <shmbus.h> remains the
 * specification of what happens underneath (every error code named here is
 * explained there, function by function).
 *
 * @code{.unparsed}
 *   shmbus::Node                 a participant: domain, backend, id, node list,
 *                                cleanup (NodeOptions builds its options)
 *   shmbus::Publisher<T>         publishes samples of one T
 *   shmbus::Publisher<T[]>       publishes slices: 1 to max_elements T each
 *   shmbus::Subscriber<T>        takes samples of one T (or slices, T[])
 *   shmbus::Loan<T>              a loaned, unpublished sample (move-only)
 *   shmbus::Sample<T>            a taken sample, read in place (move-only)
 *   shmbus::ServiceOptions       the service's limits, defaults of
 *                                SHMBUS_SERVICE_OPTS_INIT
 *   shmbus::WaitSet              one thread waits on many subscribers and a
 *                                trigger; events carry the typed subscriber or
 *                                run a callback
 *   shmbus::Error                the one exception type (code, name, message)
 *   shmbus::Result<T>, Status    the non-throwing form (try_* functions)
 *   shmbus::Clock, Timestamp     CLOCK_MONOTONIC as a std::chrono clock
 * @endcode
 *
 * A first program (the README's "From C++" has the whole of it):
 *
 * @code
 *   struct Imu { std::uint64_t counter; float accel[3]; float gyro[3]; };
 *   SHMBUS_TYPE_NAME(Imu, "demo/Imu");          // once per type, global scope
 *
 *   shmbus::Node node;                           // domain: $SHMBUS_DOMAIN or "default"
 *   shmbus::Publisher<Imu> pub(node, "demo/imu");
 *   shmbus::Loan<Imu> loan = pub.loan();         // a sample in shared memory
 *   loan->counter = 1;                           // fill it in place
 *   pub.publish(std::move(loan));                // now it is the subscribers'
 *
 *   shmbus::Subscriber<Imu> sub(node, "demo/imu");
 *   if (shmbus::Sample<Imu> s = sub.take())      // empty: nothing queued
 *     use(s->counter, s.sequence(), s.timestamp());
 *                                                // released at the end of scope
 * @endcode
 *
 * ---- Sample types -----------------------------------------------------------
 * T must be trivially copyable and standard layout (checked by static_assert):
 * other processes, C or C++, read it in place, so no constructor, destructor
 * or virtual function of it runs there, and no pointer means anything there.
 * Fixed-width integers, float, double, enums with a fixed underlying type and
 * fixed-size arrays of them, in plain structs; no pointers, references,
 * std::string or std::vector; laid out as <shmbus.h> says ("Sample types
 * that every process lays out the same": SHMBUS_ALIGNAS,
 * SHMBUS_ASSERT_LAYOUT) when 32-bit or C peers share the service. A
 * variable number of elements is a slice, Publisher<T[]> / Subscriber<T[]>,
 * with up to max_elements elements.
 * A Sample's bytes are whatever its publisher wrote (docs/security.md: a
 * buggy or hostile one may write anything, even while it is read): the
 * header checks the length against T, never the contents. So prefer types
 * for which every bit pattern is a value: a bool holding 2, or an enum
 * without a fixed underlying type holding a value outside its range, is
 * undefined behaviour when read (use an integer), and a count or an index
 * read from a sample is checked before it is used.
 *
 * The service's type descriptor comes from T: its size, its alignment and a
 * name given once per type, with SHMBUS_TYPE_NAME(T, "name") at global scope
 * or a specialisation of shmbus::type_name<T>. Both sides of a service name
 * T the same way by construction, and a C peer gives the same name, size and
 * alignment in its shmbus_type (a mismatch is SHMBUS_ERR_INCOMPATIBLE at
 * open, never a misread). Names are predefined for char, the fixed-width
 * integers ("uint8_t", "int32_t", ...), float and double.
 *
 * ---- Errors ---------------------------------------------------------------------
 * Every failure is a shmbus_errno code from <shmbus.h>. Two forms:
 *   - by default (C++ exceptions on) the plain functions throw shmbus::Error,
 *     which carries the code (code()), its name ("LOAN_LIMIT", name()), the C
 *     library's message (message()), the C++ function that failed (where())
 *     and, in what(), all of that in one line. No other exception type is
 *     thrown by this header, except std::bad_alloc from the standard
 *     library's containers (Node::nodes, WaitSet::attach) and what the
 *     user's code throws: T's constructors (emplace, or a loan of a T whose
 *     default constructor does something) and WaitSet callbacks.
 *   - every operation that can fail has a try_ form returning Result<X> (a
 *     value or a code) or Status (Result<void>), noexcept except where the
 *     user's code or an allocation runs: try_nodes and try_attach
 *     (std::bad_alloc), try_dispatch (the callbacks), try_loan of a T whose
 *     default constructor may throw. Built with -fno-exceptions (or
 *     SHMBUS_CPP_EXCEPTIONS defined to 0, the same in every translation
 *     unit) only the try_ forms exist: a throwing call does not compile.
 *     Result::value() of a failure throws the Error, or without exceptions
 *     prints it and aborts.
 *
 * Conditions that are not failures are values, never exceptions: "nothing
 * queued" is an empty Sample from take() and take_latest(); a wait that
 * timed out or whose publishers left returns WaitStatus::timed_out or
 * ::no_publisher; a wait set that timed out returns no events.
 *
 * Errors that no caller is left to receive are never dropped: a Sample's
 * destructor must not throw, and release can fail with SHMBUS_ERR_CORRUPT (a
 * peer truncated the publisher's segment while the sample was held: what was
 * read from it may have been zeros). A Sample destroyed (or overwritten by a
 * move) with that result records it in its subscriber, whose next take(),
 * take_latest() or wait reports it as SHMBUS_ERR_CORRUPT (taking nothing), once;
 * release_errors() counts them. Call sample.release() (or try_release()) to
 * get the code at once instead. A Loan's destructor discards the loan; the C
 * library's discard fails only for a payload that is not a current loan,
 * which this header never passes.
 *
 * Contract violations are not error codes: dereferencing an empty Sample or
 * Loan (moved from, released, published, or nothing taken) prints what
 * happened and calls std::abort(), never undefined behaviour.
 *
 * ---- Lifetimes (safe by construction, or defined) ------------------------------
 *   - Node, Publisher, Subscriber and WaitSet are move-only handles. A
 *     moved-from or close()d handle is empty: every call on it fails with
 *     SHMBUS_ERR_INVAL ("used after close or move") or, for the noexcept
 *     accessors, returns 0/nullptr; it never touches freed memory.
 *   - Ports keep what they need of their Node (the C library counts
 *     references): a Node may be destroyed before its ports.
 *   - A Loan keeps its publisher's C port open, a Sample its subscriber's: a
 *     Publisher or Subscriber destroyed (or closed, or moved-from and
 *     destroyed) while Loans or Samples of it live only lets go of its handle;
 *     the C port is closed when the last of them is gone. Samples therefore stay
 *     readable, and Loans can still be discarded, whatever the order of
 *     destruction at scope exit. (A subscriber kept open this way still holds
 *     its slot and its queue until then.)
 *   - Loan and Sample are move-only; moving leaves the source empty; self-move
 *     is a no-op; a moved-over Loan is discarded first, a moved-over Sample
 *     released first.
 *   - pub.publish(std::move(loan)) consumes the loan on success; on failure
 *     (BLOCK overflow: TIMEDOUT or PEER_DEAD) the loan stays with the caller
 *     (it was passed by rvalue reference, not moved from), so publishing it
 *     again retries. A loan of another publisher is SHMBUS_ERR_NOT_LOANED.
 *   - A Subscriber attached to a WaitSet is detached when its handle is
 *     destroyed or closed; a WaitSet may be destroyed before or after its
 *     subscribers. WaitEvents stay valid until the next wait or dispatch of
 *     their WaitSet, or its destruction; the subscriber an event names is
 *     found through it while that subscriber is attached (moving the
 *     Subscriber object is fine), nullptr after.
 *
 * ---- Threads -------------------------------------------------------------------
 * As in C: a port is used by one thread at a time, and its Loans and Samples
 * count as uses of it (a Sample's destructor releases through its
 * subscriber: destroy it on the thread that uses the subscriber, or hand both
 * over together). Different ports may be used from different threads; Node
 * operations and opening ports are thread-safe. A WaitSet is used by one
 * thread, except trigger(), which any thread or a signal handler may call
 * but not concurrently with the WaitSet's close, move or destruction.
 *
 * ---- Hot path ------------------------------------------------------------------
 * loan, publish, send, take, take_latest, release and the destructors of
 * Loan and Sample add no allocation, no system call and no lock to the C
 * calls they make (checked by tools/hotpath-audit.sh through
 * shmbus-hotpath-audit-cpp). Opening a port allocates once (its control
 * block); attaching to a wait set allocates; waiting makes system calls.
 *
 * ---- Standards -----------------------------------------------------------------
 * C++11 is the minimum. C++17 adds [[nodiscard]] on the try_ forms and on
 * functions that return an owning object, std::string_view for names, and
 * class template argument deduction for Span; C++20 converts a Span to a
 * std::span. take() returns a Sample that is itself optional-like (empty when
 * nothing is queued) rather than a std::optional<Sample>, in every standard:
 * the Sample is already nullable (as a moved-from one must be), so
 * std::optional would add a second empty state and a flag to a hot path.
 */
#ifndef SHMBUS_HPP
#define SHMBUS_HPP

#include "shmbus.h"

#include <time.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(_MSVC_LANG) && _MSVC_LANG > __cplusplus
#define SHMBUS__CPLUSPLUS _MSVC_LANG
#else
#define SHMBUS__CPLUSPLUS __cplusplus
#endif

#if SHMBUS__CPLUSPLUS < 201103L
#error "shmbus.hpp needs C++11 or later"
#endif

/** 1 when the throwing forms exist. Defaults to whether the compiler has
 * exceptions on; define it to 0 to use only the try_ forms anyway. */
#ifndef SHMBUS_CPP_EXCEPTIONS
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define SHMBUS_CPP_EXCEPTIONS 1
#else
#define SHMBUS_CPP_EXCEPTIONS 0
#endif
#endif

#if SHMBUS_CPP_EXCEPTIONS
#include <exception>
#endif

/** @def SHMBUS_CPP17
 * 1 from C++17 on, else 0 (see "Standards"). */
/** @def SHMBUS_NODISCARD
 * [[nodiscard]] from C++17 on, else nothing. */
#if SHMBUS__CPLUSPLUS >= 201703L
#define SHMBUS_CPP17 1
#define SHMBUS_NODISCARD [[nodiscard]]
#include <string_view>
#else
#define SHMBUS_CPP17 0
#define SHMBUS_NODISCARD
#endif

#if SHMBUS__CPLUSPLUS >= 202002L && defined(__has_include)
#if __has_include(<span>)
#include <span>
#endif
#endif

/** The C++ API: this file's description says what is where. */
namespace shmbus {

template <class T>
class Publisher;
template <class T>
class Subscriber;
template <class T>
class Loan;
template <class T>
class Sample;
class WaitSet;
class WaitEvent;

// ===========================================================================
// Contract failures and errors
// ===========================================================================

/** @cond internal */
namespace detail {

// A use that no error code can describe (an empty Sample dereferenced):
// says what happened and aborts.
[[noreturn]] inline void contract_failure(const char *what) noexcept {
  std::fprintf(stderr, "shmbus: %s\n", what);
  std::fflush(stderr);
  std::abort();
}

// A failed call as the try_ forms carry it: the code, the C++ function, and
// a static explanation when the C library's message is not the whole story.
struct Failure {
  int code;
  const char *where;
  const char *detail;
};

// The static texts are functions, not namespace-scope constants: a
// `const char *const` there has internal linkage, one per translation unit,
// and the inline functions below that use it would then differ between
// translation units (an ODR violation in a program of several translation units).
inline const char *kEmptyPort() noexcept {
  return "used after close or move (the handle is empty)";
}
inline const char *kEmptyLoan() noexcept {
  return "the loan is empty (moved from, published or discarded)";
}
inline const char *kPubOpen() noexcept { return "shmbus::Publisher::open"; }
inline const char *kPubLoan() noexcept { return "shmbus::Publisher::loan"; }
inline const char *kPubPublish() noexcept { return "shmbus::Publisher::publish"; }
inline const char *kPubSend() noexcept { return "shmbus::Publisher::send"; }
inline const char *kSubOpen() noexcept { return "shmbus::Subscriber::open"; }
inline const char *kSubTake() noexcept { return "shmbus::Subscriber::take"; }
inline const char *kWsOpen() noexcept { return "shmbus::WaitSet::open"; }
inline const char *kWsAttach() noexcept { return "shmbus::WaitSet::attach"; }
inline const char *kTruncated() noexcept {
  return "a peer truncated the publisher's memory while the sample was held (what was read "
         "from it may have been zeros)";
}

} // namespace detail
/** @endcond */

#define SHMBUS__EXPECT(cond, what) \
  ((cond) ? static_cast<void>(0) : ::shmbus::detail::contract_failure(what))

/// The code's name without the prefix ("EMPTY") and its message.
/// @{
inline const char *error_name(int code) noexcept { return shmbus_err_name(code); }
inline const char *error_message(int code) noexcept { return shmbus_strerror(code); }
/// @}

#if SHMBUS_CPP_EXCEPTIONS
/// The one exception type. Its text is formatted when it is made, into the
/// object itself: throwing allocates nothing beyond the exception object.
class Error : public std::exception {
 public:
  /// The failure `code` of the C++ function `where`, with a static
  /// explanation beyond the code's message, or nullptr.
  Error(int code, const char *where, const char *detail = nullptr) noexcept
      : code_(code), where_(where != nullptr ? where : "shmbus") {
    if (detail != nullptr)
      std::snprintf(what_, sizeof what_, "%s: %s: %s (SHMBUS_ERR_%s)", where_, detail,
                    shmbus_strerror(code), shmbus_err_name(code));
    else
      std::snprintf(what_, sizeof what_, "%s: %s (SHMBUS_ERR_%s)", where_, shmbus_strerror(code),
                    shmbus_err_name(code));
  }

  /// The code, a SHMBUS_ERR_*.
  shmbus_errno code() const noexcept { return static_cast<shmbus_errno>(code_); }
  /// "LOAN_LIMIT", without the SHMBUS_ERR_ prefix.
  const char *name() const noexcept { return shmbus_err_name(code_); }
  /// The C library's message for the code.
  const char *message() const noexcept { return shmbus_strerror(code_); }
  /// The C++ function that failed, e.g. "shmbus::Publisher::loan".
  const char *where() const noexcept { return where_; }
  /// "where: [detail: ]message (SHMBUS_ERR_NAME)".
  const char *what() const noexcept override { return what_; }

 private:
  int code_;
  const char *where_;
  char what_[256];
};
#endif

/** @cond internal */
namespace detail {

// What a failed Result does when its value is asked for.
[[noreturn]] inline void raise(int code, const char *where, const char *detail) {
#if SHMBUS_CPP_EXCEPTIONS
  throw Error(code, where, detail);
#else
  std::fprintf(stderr, "shmbus: %s: %s%s%s (SHMBUS_ERR_%s)\n", where != nullptr ? where : "?",
               detail != nullptr ? detail : "", detail != nullptr ? ": " : "",
               shmbus_strerror(code), shmbus_err_name(code));
  std::fflush(stderr);
  std::abort();
#endif
}

} // namespace detail
/** @endcond */

/// A value or an error code: what the try_ forms return. Move-only. value()
/// of a failure throws Error (aborts without exceptions).
template <class T>
class Result {
 public:
  /// A success that holds `value`.
  Result(T &&value) noexcept : code_(0), where_(nullptr), detail_(nullptr) {
    ::new (static_cast<void *>(&value_)) T(std::move(value));
  }
  /// A failure, as the try_ forms make it.
  Result(detail::Failure f) noexcept : code_(f.code), where_(f.where), detail_(f.detail) {}
  /// Moves the value or the failure.
  /// @{
  Result(Result &&other) noexcept
      : code_(other.code_), where_(other.where_), detail_(other.detail_) {
    if (code_ == 0) ::new (static_cast<void *>(&value_)) T(std::move(other.value_));
  }
  Result &operator=(Result &&other) noexcept {
    if (this != &other) {
      destroy();
      code_ = other.code_;
      where_ = other.where_;
      detail_ = other.detail_;
      if (code_ == 0) ::new (static_cast<void *>(&value_)) T(std::move(other.value_));
    }
    return *this;
  }
  /// @}
  Result(const Result &) = delete;
  Result &operator=(const Result &) = delete;
  ~Result() { destroy(); }

  /// Whether it holds a value.
  /// @{
  bool ok() const noexcept { return code_ == 0; }
  explicit operator bool() const noexcept { return code_ == 0; }
  /// @}
  /// SHMBUS_OK, or the failure's code.
  shmbus_errno error() const noexcept { return static_cast<shmbus_errno>(code_); }
  /// The code's name and message, as shmbus::error_name and error_message.
  /// @{
  const char *error_name() const noexcept { return shmbus_err_name(code_); }
  const char *error_message() const noexcept { return shmbus_strerror(code_); }
  /// @}
  /// The C++ function that failed (nullptr on success).
  const char *where() const noexcept { return where_; }
  /// A static explanation beyond the code's message, or nullptr.
  const char *detail() const noexcept { return detail_; }

  /// The value; of a failure, throws its Error (aborts without exceptions).
  /// @{
  T &value() & {
    require();
    return value_;
  }
  const T &value() const & {
    require();
    return value_;
  }
  T &&value() && {
    require();
    return std::move(value_);
  }
  /// @}
  /// value(), as through a pointer.
  /// @{
  T &operator*() & { return value(); }
  const T &operator*() const & { return value(); }
  T &&operator*() && { return std::move(*this).value(); }
  T *operator->() { return &value(); }
  const T *operator->() const { return &value(); }
  /// @}

 private:
  void require() const {
    if (code_ != 0) detail::raise(code_, where_, detail_);
  }
  void destroy() noexcept {
    if (code_ == 0) value_.~T();
    code_ = SHMBUS_ERR_INVAL; // nothing is held any more
  }

  union {
    T value_;
  };
  int code_;
  const char *where_;
  const char *detail_;
};

/// Success or an error code.
template <>
class Result<void> {
 public:
  /// Success.
  Result() noexcept : code_(0), where_(nullptr), detail_(nullptr) {}
  /// A failure, as the try_ forms make it.
  Result(detail::Failure f) noexcept : code_(f.code), where_(f.where), detail_(f.detail) {}

  /// As in Result<T>.
  /// @{
  bool ok() const noexcept { return code_ == 0; }
  explicit operator bool() const noexcept { return code_ == 0; }
  shmbus_errno error() const noexcept { return static_cast<shmbus_errno>(code_); }
  const char *error_name() const noexcept { return shmbus_err_name(code_); }
  const char *error_message() const noexcept { return shmbus_strerror(code_); }
  const char *where() const noexcept { return where_; }
  const char *detail() const noexcept { return detail_; }
  /// @}
  /// Throws the Error (aborts without exceptions) unless ok().
  void value() const {
    if (code_ != 0) detail::raise(code_, where_, detail_);
  }

 private:
  int code_;
  const char *where_;
  const char *detail_;
};

/// Success or an error code: what the try_ forms without a value return.
using Status = Result<void>;

/** @cond internal */
namespace detail {
// What the C library found on a failed open (shmbus_error_detail(): which
// setting of an INCOMPATIBLE service differs), or nullptr. The text is the
// thread's and lasts until its next open: an Error copies it at once, a
// Status's detail() is read before the thread opens another port.
inline const char *open_detail() noexcept {
  const char *d = shmbus_error_detail();
  return d[0] != '\0' ? d : nullptr;
}
inline Failure failure(int code, const char *where, const char *detail = nullptr) noexcept {
  Failure f = {code, where, detail};
  return f;
}
// Turns a C result into a Status.
inline Status status(int code, const char *where, const char *detail = nullptr) noexcept {
  if (code == 0) return Status();
  return Status(failure(code, where, detail));
}
// The throwing forms: passes a non-negative result through.
inline int check(int code, const char *where, const char *detail = nullptr) {
  if (code < 0) raise(code, where, detail);
  return code;
}
} // namespace detail
/** @endcond */

// ===========================================================================
// Time
// ===========================================================================

/// Not for direct use: the clock behind Clock, and the bases that hold what
/// the public classes of one kind share whatever their T (their members are
/// those classes' own). The rest of it is internal.
namespace detail {

/// CLOCK_MONOTONIC as a std::chrono clock (a template only so that the
/// static member has its definition in this header before C++17).
template <class Unused = void>
struct MonotonicClock {
  /// What the std::chrono Clock requirements ask for: nanoseconds in an
  /// int64_t, steady.
  /// @{
  using rep = std::int64_t;
  using period = std::nano;
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<MonotonicClock, duration>;
  static constexpr bool is_steady = true;
  /// @}

  /// The current time.
  static time_point now() noexcept {
#if defined(CLOCK_MONOTONIC)
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); // vDSO on Linux: no system call
    return time_point(duration(static_cast<rep>(ts.tv_sec) * 1000000000 + ts.tv_nsec));
#else
    return time_point(
        std::chrono::duration_cast<duration>(std::chrono::steady_clock::now().time_since_epoch()));
#endif
  }

  /// The same instant on std::chrono::steady_clock (the same clock on Linux
  /// with libstdc++ and libc++; computed from both clocks' now() in any case).
  static std::chrono::steady_clock::time_point to_steady(time_point t) noexcept {
    const auto steady_now = std::chrono::steady_clock::now();
    const time_point mono_now = now();
    return steady_now +
           std::chrono::duration_cast<std::chrono::steady_clock::duration>(t - mono_now);
  }
};
#if !SHMBUS_CPP17
template <class Unused>
constexpr bool MonotonicClock<Unused>::is_steady;
#endif

/** @cond internal */
// A std::chrono duration as the C API's timeout: <= 0 polls (0), longer
// than 292 years saturates, a fraction of a nanosecond rounds up.
template <class Rep, class Period>
std::int64_t timeout_ns(std::chrono::duration<Rep, Period> d) noexcept {
  const double ns = std::chrono::duration<double, std::nano>(d).count();
  if (!(ns > 0)) return 0;
  if (ns >= 9.2e18) return INT64_MAX;
  const std::int64_t n = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  return n > 0 ? n : 1;
}
/** @endcond */

} // namespace detail

/// The clock of every sample's timestamp and of every timeout here:
/// CLOCK_MONOTONIC, in nanoseconds (satisfies the std::chrono Clock
/// requirements; is_steady).
/// @{
using Clock = detail::MonotonicClock<>;
using Timestamp = Clock::time_point;
/// @}

// ===========================================================================
// Names
// ===========================================================================

/// A NUL-terminated name for the C API: from a const char *, a std::string
/// or (C++17) a std::string_view, which is copied (names are short). Used
/// only for the duration of the call it is passed to. A std::string or
/// std::string_view with a NUL inside cannot be given (the C API would see
/// another name, the part before the NUL).
class Name {
 public:
  /// The name `s`: implicit, so that a Name parameter takes each of these.
  /// @{
  Name(const char *s) noexcept : p_(s), ok_(s != nullptr) {}
  Name(const std::string &s) noexcept : p_(s.c_str()), ok_(s.find('\0') == std::string::npos) {}
#if SHMBUS_CPP17
  Name(std::string_view s) noexcept
      : p_(buf_),
        ok_(s.size() <= SHMBUS_SERVICE_NAME_MAX && s.find('\0') == std::string_view::npos) {
    const std::size_t n = ok_ ? s.size() : 0;
    if (n > 0) std::memcpy(buf_, s.data(), n);
    buf_[n] = '\0';
  }
#endif
  /// @}
  /// A copy (of a copied std::string_view, too).
  Name(const Name &other) noexcept : p_(other.p_), ok_(other.ok_) {
#if SHMBUS_CPP17
    if (other.p_ == other.buf_) {
      std::memcpy(buf_, other.buf_, sizeof buf_);
      p_ = buf_;
    }
#endif
  }
  Name &operator=(const Name &) = delete;

  /// nullptr when the name could not be given (NULL, too long to copy, or
  /// with a NUL inside).
  const char *c_str() const noexcept { return ok_ ? p_ : nullptr; }

 private:
  const char *p_;
  bool ok_;
#if SHMBUS_CPP17
  char buf_[SHMBUS_SERVICE_NAME_MAX + 1];
#endif
};

// ===========================================================================
// Sample types
// ===========================================================================

/// The name of a sample type, given once per type: SHMBUS_TYPE_NAME below,
/// or a specialisation of this template with `static constexpr bool defined
/// = true;` and `static const char *get() noexcept`.
template <class T>
struct type_name {
  /// Whether T has a name: not unless a specialisation says so.
  static constexpr bool defined = false;
};

/// At global scope, once per type, in a header both sides include:
/// @code
///   SHMBUS_TYPE_NAME(Imu, "demo/Imu");
/// @endcode
/// Name: a string literal of 1 to SHMBUS_TYPE_NAME_MAX printable characters,
/// the same as a C peer's shmbus_type.name. (A type whose name has a comma,
/// such as a template specialisation, needs a typedef or the trait.)
/// @hideinitializer
#define SHMBUS_TYPE_NAME(Type, Name)                                                     \
  namespace shmbus {                                                                     \
  template <>                                                                            \
  struct type_name<Type> {                                                               \
    static_assert(sizeof(Name) > 1 && sizeof(Name) - 1 <= SHMBUS_TYPE_NAME_MAX,          \
                  "shmbus: a type name has 1 to SHMBUS_TYPE_NAME_MAX (127) characters"); \
    static constexpr bool defined = true;                                                \
    static const char *get() noexcept { return Name; }                                   \
  };                                                                                     \
  }                                                                                      \
  static_assert(::shmbus::type_name<Type>::defined, "shmbus: SHMBUS_TYPE_NAME")

/** @cond internal */
namespace detail {

template <class T>
struct port_traits {
  using element = T;
  static constexpr bool slice = false;
};
template <class E>
struct port_traits<E[]> {
  using element = E;
  static constexpr bool slice = true;
};

// The rules for a sample type, with what to do about each.
template <class T>
struct check_sample_type {
  using E = typename port_traits<T>::element;
  static_assert(!std::is_array<E>::value,
                "shmbus: a sample type is not a fixed-size array: wrap it in a struct "
                "(struct Row { float v[16]; };), or use a slice, Publisher<T[]>");
  static_assert(!std::is_const<E>::value && !std::is_volatile<E>::value,
                "shmbus: name the sample type without const or volatile");
  static_assert(!std::is_pointer<E>::value && !std::is_member_pointer<E>::value &&
                    !std::is_reference<E>::value,
                "shmbus: a pointer or reference cannot be a sample: other processes map "
                "shared memory elsewhere, so a pointer of this process means nothing "
                "there; send offsets or indices instead");
  static_assert(std::is_trivially_copyable<E>::value && std::is_standard_layout<E>::value,
                "shmbus: a sample type must be trivially copyable and standard layout, "
                "because other processes (C or C++, any compiler) read it in place in "
                "shared memory, where none of its constructors, destructors or virtual "
                "functions run and no pointer of this process is valid. Use a plain "
                "struct of fixed-width integers, floats, enums and fixed-size arrays "
                "(no std::string, std::vector, pointers, references, virtual functions "
                "or members of mixed access); for a variable number of elements use a "
                "slice, Publisher<T[]> and Subscriber<T[]>");
  // (Named only once it can be a sample at all: one message at a time.)
  static constexpr bool plain = !std::is_array<E>::value && !std::is_pointer<E>::value &&
                                !std::is_member_pointer<E>::value && !std::is_reference<E>::value &&
                                std::is_trivially_copyable<E>::value &&
                                std::is_standard_layout<E>::value;
  static_assert(!plain || type_name<E>::defined,
                "shmbus: the sample type has no name: give it one, once, at global "
                "scope in a header that both sides include: "
                "SHMBUS_TYPE_NAME(MyType, \"my/Type\"); (or specialise "
                "shmbus::type_name<MyType>). Both sides of a service, C programs too, "
                "must use the same name, size and alignment");
  static constexpr bool ok = true;
};

// A unique address per type: identifies a Subscriber<T> in a wait set.
template <class T>
struct type_tag {
  static const char id;
};
template <class T>
const char type_tag<T>::id = 0;

// Loaned memory holds no T yet. For types whose default initialisation
// does nothing (plain structs) this begins the objects' lifetime at no
// cost; for others it runs their default constructors. The caller owns the
// loan already (a Loan holds it), so a constructor that throws leaves
// nothing behind: the Loan's destructor discards the chunk.
template <class E>
struct nothrow_lifetime
    : std::integral_constant<bool, std::is_trivially_default_constructible<E>::value ||
                                       std::is_nothrow_default_constructible<E>::value> {};
template <class E>
void begin_lifetime(void *raw, std::size_t n, std::true_type /*trivial*/) noexcept {
  (void)raw;
  (void)n;
}
template <class E>
void begin_lifetime(void *raw, std::size_t n,
                    std::false_type /*trivial*/) noexcept(nothrow_lifetime<E>::value) {
  E *p = static_cast<E *>(raw);
  for (std::size_t i = 0; i < n; i++) ::new (static_cast<void *>(p + i)) E;
}
template <class E>
void begin_lifetime(void *raw, std::size_t n) noexcept(nothrow_lifetime<E>::value) {
  begin_lifetime<E>(raw, n, std::is_trivially_default_constructible<E>());
}

} // namespace detail
/** @endcond */

// Predefined names, usable from C as the same strings.
#define SHMBUS__BUILTIN_TYPE(Type, Text)               \
  template <>                                          \
  struct type_name<Type> {                             \
    static constexpr bool defined = true;              \
    static const char *get() noexcept { return Text; } \
  };
SHMBUS__BUILTIN_TYPE(char, "char")
SHMBUS__BUILTIN_TYPE(std::int8_t, "int8_t")
SHMBUS__BUILTIN_TYPE(std::uint8_t, "uint8_t")
SHMBUS__BUILTIN_TYPE(std::int16_t, "int16_t")
SHMBUS__BUILTIN_TYPE(std::uint16_t, "uint16_t")
SHMBUS__BUILTIN_TYPE(std::int32_t, "int32_t")
SHMBUS__BUILTIN_TYPE(std::uint32_t, "uint32_t")
SHMBUS__BUILTIN_TYPE(std::int64_t, "int64_t")
SHMBUS__BUILTIN_TYPE(std::uint64_t, "uint64_t")
SHMBUS__BUILTIN_TYPE(float, "float")
SHMBUS__BUILTIN_TYPE(double, "double")
#undef SHMBUS__BUILTIN_TYPE

// ===========================================================================
// Span: a view of n contiguous elements (a slice's payload)
// ===========================================================================

/// A view of n contiguous elements (a slice's payload).
template <class T>
class Span {
 public:
  /// As std::span's.
  /// @{
  using element_type = T;
  using value_type = typename std::remove_cv<T>::type;
  using size_type = std::size_t;
  using iterator = T *;
  /// @}

  /// No elements.
  Span() noexcept : data_(nullptr), size_(0) {}
  /// The `size` elements at `data`.
  Span(T *data, std::size_t size) noexcept : data_(data), size_(size) {}
  /// The elements of an array.
  template <std::size_t N>
  Span(T (&array)[N]) noexcept : data_(array), size_(N) {}
  /// Span<T> converts to Span<const T>.
  template <class U, typename std::enable_if<std::is_same<const U, T>::value, int>::type = 0>
  Span(const Span<U> &other) noexcept : data_(other.data()), size_(other.size()) {}

  /// The first element, the number of elements, their bytes, whether there
  /// are none.
  /// @{
  T *data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t size_bytes() const noexcept { return size_ * sizeof(T); }
  bool empty() const noexcept { return size_ == 0; }
  /// @}
  /// Unchecked, as std::span's.
  /// @{
  T &operator[](std::size_t i) const noexcept { return data_[i]; }
  T &front() const noexcept { return data_[0]; }
  T &back() const noexcept { return data_[size_ - 1]; }
  T *begin() const noexcept { return data_; }
  T *end() const noexcept { return data_ + size_; }
  /// @}
#if defined(__cpp_lib_span)
  operator std::span<T>() const noexcept { return std::span<T>(data_, size_); }
#endif

 private:
  T *data_;
  std::size_t size_;
};

#if SHMBUS_CPP17
/// Class template argument deduction (C++17): Span(p, n), Span(array).
/// @{
template <class T>
Span(T *, std::size_t) -> Span<T>;
template <class T, std::size_t N>
Span(T (&)[N]) -> Span<T>;
/// @}
#endif

// ===========================================================================
// Options
// ===========================================================================

/// What a publisher does when a subscriber's queue is full (SHMBUS_OVERFLOW_*).
enum class Overflow : int {
  default_policy = SHMBUS_OVERFLOW_DEFAULT,  ///< drop_oldest when creating, any when opening
  drop_oldest = SHMBUS_OVERFLOW_DROP_OLDEST, ///< evict the oldest queued sample
  drop_newest = SHMBUS_OVERFLOW_DROP_NEWEST, ///< do not deliver the new sample
  block = SHMBUS_OVERFLOW_BLOCK              ///< backpressure: see Publisher::set_block_timeout
};

/// A service's limits, starting from SHMBUS_SERVICE_OPTS_INIT: every limit 0
/// means "the default" when the port creates the service and "whatever the
/// service has" when it opens an existing one (<shmbus.h>, "Services"; the
/// defaults are max_elements 1, max_publishers 4, max_subscribers 8,
/// queue_depth 16, history 0, max_loans 4, max_held 4, drop_oldest). The type
/// is not set here: the port takes it from T. Give both sides the same options.
/// @code
///   shmbus::ServiceOptions().queue_depth(256).history(1)
/// @endcode
class ServiceOptions {
 public:
  /// The options of SHMBUS_SERVICE_OPTS_INIT.
  ServiceOptions() noexcept : o_(init()) {}
  /// From C options (e.g. a header shared with C programs). A type in them
  /// must be the port's: name, size and alignment, or the open fails with
  /// SHMBUS_ERR_INCOMPATIBLE.
  ServiceOptions(const shmbus_service_opts &c) noexcept : o_(c) {}

  /// Sets the field of the same name of shmbus_service_opts (a limit of 0:
  /// see above); returns *this.
  /// @{
  ServiceOptions &max_elements(std::uint32_t v) noexcept { return set(o_.max_elements, v); }
  ServiceOptions &max_publishers(std::uint32_t v) noexcept { return set(o_.max_publishers, v); }
  ServiceOptions &max_subscribers(std::uint32_t v) noexcept { return set(o_.max_subscribers, v); }
  ServiceOptions &queue_depth(std::uint32_t v) noexcept { return set(o_.queue_depth, v); }
  ServiceOptions &history(std::uint32_t v) noexcept { return set(o_.history, v); }
  ServiceOptions &max_loans(std::uint32_t v) noexcept { return set(o_.max_loans, v); }
  ServiceOptions &max_held(std::uint32_t v) noexcept { return set(o_.max_held, v); }
  ServiceOptions &overflow(Overflow v) noexcept {
    o_.overflow = static_cast<int>(v);
    return *this;
  }
  /// @}

  /// The field of the same name as set here (a limit of 0: not set).
  /// @{
  std::uint32_t max_elements() const noexcept { return o_.max_elements; }
  std::uint32_t max_publishers() const noexcept { return o_.max_publishers; }
  std::uint32_t max_subscribers() const noexcept { return o_.max_subscribers; }
  std::uint32_t queue_depth() const noexcept { return o_.queue_depth; }
  std::uint32_t history() const noexcept { return o_.history; }
  std::uint32_t max_loans() const noexcept { return o_.max_loans; }
  std::uint32_t max_held() const noexcept { return o_.max_held; }
  Overflow overflow() const noexcept { return static_cast<Overflow>(o_.overflow); }
  /// @}

  /// The C options (type as given, usually unset).
  const shmbus_service_opts &c_opts() const noexcept { return o_; }

 private:
  static shmbus_service_opts init() noexcept {
    shmbus_service_opts o = SHMBUS_SERVICE_OPTS_INIT;
    return o;
  }
  ServiceOptions &set(std::uint32_t &field, std::uint32_t v) noexcept {
    field = v;
    return *this;
  }

  shmbus_service_opts o_;
};

/// A node's options, starting from SHMBUS_NODE_OPTS_INIT (domain from
/// $SHMBUS_DOMAIN or "default", POSIX shared memory, mode 0600).
/// @code
///   shmbus::NodeOptions().domain("test-42").directory("/var/lib/bus")
/// @endcode
class NodeOptions {
 public:
  /// The options of SHMBUS_NODE_OPTS_INIT.
  NodeOptions() : backend_(SHMBUS_BACKEND_SHM), mode_(0), has_domain_(false), has_root_(false) {}

  /// 1 to SHMBUS_DOMAIN_MAX characters of [A-Za-z0-9_-].
  NodeOptions &domain(const Name &d) {
    const char *s = d.c_str();
    domain_ = s != nullptr ? s : "";
    has_domain_ = true;
    return *this;
  }
  /// POSIX shared memory (the default).
  NodeOptions &shared_memory() {
    backend_ = SHMBUS_BACKEND_SHM;
    has_root_ = false;
    root_.clear();
    return *this;
  }
  /// Memory-mapped files in an existing directory.
  NodeOptions &directory(const Name &root) {
    const char *s = root.c_str();
    backend_ = SHMBUS_BACKEND_DIR;
    root_ = s != nullptr ? s : "";
    has_root_ = true;
    return *this;
  }
  /// Permission bits of the objects this node creates; 0 means 0600.
  NodeOptions &mode(unsigned bits) {
    mode_ = bits;
    return *this;
  }

  /// The C options; their strings point into this object.
  shmbus_node_opts c_opts() const noexcept {
    shmbus_node_opts o = SHMBUS_NODE_OPTS_INIT;
    o.domain = has_domain_ ? domain_.c_str() : nullptr;
    o.backend = backend_;
    o.root = has_root_ ? root_.c_str() : nullptr;
    o.mode = mode_;
    return o;
  }

 private:
  std::string domain_;
  std::string root_;
  int backend_;
  unsigned mode_;
  bool has_domain_;
  bool has_root_;
};

// ===========================================================================
// Node
// ===========================================================================

/// A node of the domain, as Node::nodes lists it (shmbus_node_info).
struct NodeInfo {
  std::uint64_t id; ///< shmbus_node_id
  bool alive;       ///< alive or dead
};

/// A participant (one per process is typical). Move-only. Ports keep what
/// they need of it: a Node may be destroyed before its ports. Thread-safe.
class Node {
 public:
#if SHMBUS_CPP_EXCEPTIONS
  /// Opens a node with the default options / with `opts`. Throws Error:
  /// INVAL, NAME, PERM, BUSY, NOMEM, IO (shmbus_node_open).
  /// @{
  Node() : node_(open_or_throw(NodeOptions())) {}
  explicit Node(const NodeOptions &opts) : node_(open_or_throw(opts)) {}
  /// @}
#endif
  /// The try_ form of the constructors.
  SHMBUS_NODISCARD static Result<Node> try_open(const NodeOptions &opts = NodeOptions()) noexcept {
    const shmbus_node_opts o = opts.c_opts();
    shmbus_node *n = nullptr;
    const int r = shmbus_node_open(&o, &n);
    if (r != 0) return detail::failure(r, "shmbus::Node::open");
    return Result<Node>(Node(n));
  }

  /// Moves the handle: the source is left empty (a node moved over is
  /// closed first).
  /// @{
  Node(Node &&other) noexcept : node_(other.node_) { other.node_ = nullptr; }
  Node &operator=(Node &&other) noexcept {
    if (this != &other) {
      close();
      node_ = other.node_;
      other.node_ = nullptr;
    }
    return *this;
  }
  /// @}
  Node(const Node &) = delete;
  Node &operator=(const Node &) = delete;
  ~Node() { close(); }

  /// Drops this handle now (the ports opened through it stay usable).
  void close() noexcept {
    shmbus_node_close(node_);
    node_ = nullptr;
  }
  /// Whether the handle is open (not closed, not moved from).
  /// @{
  bool is_open() const noexcept { return node_ != nullptr; }
  explicit operator bool() const noexcept { return node_ != nullptr; }
  /// @}

  /// The domain (valid while the node is open), nullptr when empty.
  const char *domain() const noexcept { return shmbus_node_domain(node_); }
  /// 64 random bits, unique in the domain and never reused; 0 when empty.
  std::uint64_t id() const noexcept { return shmbus_node_id(node_); }

#if SHMBUS_CPP_EXCEPTIONS
  /// The nodes of the domain, this one included. Throws Error (INVAL, IO;
  /// BUSY when the domain's nodes kept changing while they were listed).
  std::vector<NodeInfo> nodes() const {
    Result<std::vector<NodeInfo>> r = try_nodes();
    return std::move(r).value();
  }
  /// Removes what dead participants of the domain left behind; returns the
  /// number of objects removed and ports reclaimed. Throws Error (INVAL, IO).
  int cleanup() const { return detail::check(try_cleanup_raw(), "shmbus::Node::cleanup"); }
#endif
  /// The try_ form of nodes(). Allocates the vector (std::bad_alloc as any
  /// container when exceptions are on); makes system calls.
  SHMBUS_NODISCARD Result<std::vector<NodeInfo>> try_nodes() const {
    const char *where = "shmbus::Node::nodes";
    if (node_ == nullptr) return detail::failure(SHMBUS_ERR_INVAL, where, detail::kEmptyPort());
    std::vector<shmbus_node_info> raw;
    for (int round = 0; round < 16; round++) {
      std::size_t count = 0;
      const int r = shmbus_node_list(node_, raw.empty() ? nullptr : raw.data(), raw.size(), &count);
      if (r != 0) return detail::failure(r, where);
      if (count <= raw.size()) {
        std::vector<NodeInfo> out;
        out.reserve(count);
        for (std::size_t i = 0; i < count; i++) {
          NodeInfo info = {raw[i].id, raw[i].alive != 0};
          out.push_back(info);
        }
        return Result<std::vector<NodeInfo>>(std::move(out));
      }
      raw.resize(count + 4); // room for a few that start meanwhile
    }
    return detail::failure(SHMBUS_ERR_BUSY, where, "the domain's nodes kept changing");
  }
  /// The try_ form of cleanup().
  SHMBUS_NODISCARD Result<int> try_cleanup() const noexcept {
    const int r = try_cleanup_raw();
    if (r < 0) return detail::failure(r, "shmbus::Node::cleanup");
    return Result<int>(int(r));
  }

  /// The C node, still owned by this handle; nullptr when empty.
  shmbus_node *native_handle() const noexcept { return node_; }

 private:
  explicit Node(shmbus_node *n) noexcept : node_(n) {}
  int try_cleanup_raw() const noexcept {
    return node_ == nullptr ? static_cast<int>(SHMBUS_ERR_INVAL) : shmbus_domain_cleanup(node_);
  }
#if SHMBUS_CPP_EXCEPTIONS
  static shmbus_node *open_or_throw(const NodeOptions &opts) {
    const shmbus_node_opts o = opts.c_opts();
    shmbus_node *n = nullptr;
    detail::check(shmbus_node_open(&o, &n), "shmbus::Node::open");
    return n;
  }
#endif

  shmbus_node *node_;
};

// ===========================================================================
// Port control blocks (internal)
// ===========================================================================

/** @cond internal */
namespace detail {

struct WaitSetCore;
struct Attachment;

// A publisher's C port and the count of what keeps it open: its Publisher
// handle and every live Loan. Used by one thread at a time (the port's
// rule), so the count is a plain integer.
struct PublisherCore {
  shmbus_publisher *pub;
  std::size_t refs;
};

// GCC 12's -Wuse-after-free cannot see that a port's handle holds a
// reference while a Loan or Sample drops its own: when both unrefs inline
// into one function it warns about the second (a false positive, and an
// error for users who build with -Werror). Silenced here only.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuse-after-free"
#define SHMBUS_CPP_UAF_SILENCED 1
#endif

inline void unref(PublisherCore *core) noexcept {
  if (--core->refs == 0) {
    shmbus_publisher_close(core->pub);
    delete core;
  }
}

class SubscriberBase;

// A subscriber's C port, what keeps it open (its handle and every live
// Sample), the handle object of the moment (for wait sets), its wait set,
// and what a destructor could not report.
struct SubscriberCore {
  shmbus_subscriber *sub;
  std::size_t refs;
  SubscriberBase *owner;  // nullptr once the handle let go
  Attachment *attachment; // in a WaitSet, else nullptr
  int pending;            // a release error for the next take or wait
  std::uint64_t release_errors;
};

inline void unref(SubscriberCore *core) noexcept {
  if (--core->refs == 0) {
    shmbus_subscriber_close(core->sub);
    delete core;
  }
}

#if defined(SHMBUS_CPP_UAF_SILENCED)
#pragma GCC diagnostic pop
#undef SHMBUS_CPP_UAF_SILENCED
#endif

inline void detach(SubscriberCore *core) noexcept; // WaitSet, below

} // namespace detail
/** @endcond */

// ===========================================================================
// Loan<T>: a loaned sample that is not published yet
// ===========================================================================

namespace detail {

/// What every Loan holds: its publisher's control block, the payload and the
/// number of elements loaned. Discarded unless published.
class LoanBase {
 public:
  /// An empty Loan.
  LoanBase() noexcept : core_(nullptr), payload_(nullptr), elements_(0) {}
  /// Moves the loan: the source is left empty (a loan moved over is
  /// discarded first).
  /// @{
  LoanBase(LoanBase &&other) noexcept
      : core_(other.core_), payload_(other.payload_), elements_(other.elements_) {
    other.forget();
  }
  LoanBase &operator=(LoanBase &&other) noexcept {
    if (this != &other) {
      discard();
      core_ = other.core_;
      payload_ = other.payload_;
      elements_ = other.elements_;
      other.forget();
    }
    return *this;
  }
  /// @}
  LoanBase(const LoanBase &) = delete;
  LoanBase &operator=(const LoanBase &) = delete;
  /// Discards the loan unless it was published.
  ~LoanBase() { discard(); }

  /// Gives the sample back unpublished now; nothing on an empty Loan.
  void discard() noexcept {
    if (payload_ != nullptr) {
      (void)shmbus_publisher_discard(core_->pub, payload_); // fails only for a non-loan
      unref(core_);
    }
    forget();
  }
  /// Whether it holds a loan (not moved from, published or discarded).
  /// @{
  bool has_value() const noexcept { return payload_ != nullptr; }
  explicit operator bool() const noexcept { return payload_ != nullptr; }
  /// @}

  /** @cond internal */
 protected:
  LoanBase(PublisherCore *core, void *payload, std::size_t elements) noexcept
      : core_(core), payload_(payload), elements_(elements) {}
  void *checked() const noexcept {
    SHMBUS__EXPECT(payload_ != nullptr,
                   "Loan: access to an empty loan (moved from, published or discarded)");
    return payload_;
  }
  // Published: the payload is the subscribers' now.
  void published() noexcept {
    unref(core_);
    forget();
  }
  void forget() noexcept {
    core_ = nullptr;
    payload_ = nullptr;
    elements_ = 0;
  }

  PublisherCore *core_;
  void *payload_;
  std::size_t elements_;

  friend class PublisherBase;
  /** @endcond */
};

} // namespace detail

/// A loaned T in shared memory: fill it, then pub.publish(std::move(loan)).
/// The memory is uninitialised; for plain structs assign the fields through
/// ->, or construct the whole value with emplace() or write(). Destroyed
/// unpublished, it is discarded. Move-only; empty after a move.
template <class T>
class Loan : public detail::LoanBase {
  static_assert(detail::check_sample_type<T>::ok, "");

 public:
  /// An empty Loan (Publisher::loan makes full ones).
  Loan() noexcept = default;
  /// As LoanBase's.
  /// @{
  Loan(Loan &&) noexcept = default;
  Loan &operator=(Loan &&) noexcept = default;
  /// @}

  /// Constructs the T in place from `args` (T(args...), or T{args...} for an
  /// aggregate) and returns it.
  template <class... Args>
  T &emplace(Args &&...args) {
    return *construct(std::is_constructible<T, Args...>(), std::forward<Args>(args)...);
  }
  /// Copies `value` into the loan and returns it.
  T &write(const T &value) noexcept { return *::new (checked()) T(value); }

  /// The T in shared memory; an empty Loan aborts (see "Errors").
  /// @{
  T *get() const noexcept { return static_cast<T *>(checked()); }
  T &operator*() const noexcept { return *get(); }
  T *operator->() const noexcept { return get(); }
  /// @}

 private:
  template <class... Args>
  T *construct(std::true_type, Args &&...args) {
    return ::new (checked()) T(std::forward<Args>(args)...);
  }
  template <class... Args>
  T *construct(std::false_type, Args &&...args) {
    return ::new (checked()) T{std::forward<Args>(args)...};
  }

  Loan(detail::PublisherCore *core, void *payload) noexcept : LoanBase(core, payload, 1) {}
  friend class Publisher<T>;
};

/// A loaned slice of 1 to max_elements E: size() elements, uninitialised
/// unless E's default initialisation does something. Publish all of them, or
/// the first n with pub.publish(std::move(loan), n).
template <class E>
class Loan<E[]> : public detail::LoanBase {
  static_assert(detail::check_sample_type<E[]>::ok, "");

 public:
  /// An empty Loan (Publisher::loan makes full ones).
  Loan() noexcept = default;
  /// As LoanBase's.
  /// @{
  Loan(Loan &&) noexcept = default;
  Loan &operator=(Loan &&) noexcept = default;
  /// @}

  /// The number of elements loaned; 0 when empty.
  std::size_t size() const noexcept { return elements_; }
  /// The first element, and all of them as a Span; an empty Loan aborts
  /// (see "Errors").
  /// @{
  E *data() const noexcept { return static_cast<E *>(checked()); }
  Span<E> span() const noexcept { return Span<E>(data(), elements_); }
  /// @}
  /// Unchecked, as std::span's.
  E &operator[](std::size_t i) const noexcept { return data()[i]; }
  /// The elements as a range; an empty Loan aborts.
  /// @{
  E *begin() const noexcept { return data(); }
  E *end() const noexcept { return data() + elements_; }
  /// @}
  /// Copies n elements (n <= size()) to the start of the slice.
  /// @{
  void write(const E *src, std::size_t n) noexcept {
    SHMBUS__EXPECT(n <= elements_, "Loan<T[]>::write: more elements than were loaned");
    if (n > 0) std::memcpy(static_cast<void *>(data()), src, n * sizeof(E));
  }
  void write(Span<const E> src) noexcept { write(src.data(), src.size()); }
  /// @}

 private:
  Loan(detail::PublisherCore *core, void *payload, std::size_t n) noexcept
      : LoanBase(core, payload, n) {}
  friend class Publisher<E[]>;
};

// ===========================================================================
// Publisher<T>
// ===========================================================================

namespace detail {

/** @cond internal */
// The C options of a port of type T from the user's options.
template <class T>
int port_options(const ServiceOptions &opts, shmbus_service_opts *out) noexcept {
  using E = typename port_traits<T>::element;
  *out = opts.c_opts();
  const char *name = type_name<E>::get();
  if (out->type.name != nullptr && (std::strcmp(out->type.name, name) != 0 ||
                                    out->type.size != sizeof(E) || out->type.align != alignof(E)))
    return SHMBUS_ERR_INCOMPATIBLE;
  out->type.name = name;
  out->type.size = sizeof(E);
  out->type.align = alignof(E);
  return 0;
}
inline const char *kOtherType() noexcept { return "the options name another type than the port's"; }
/** @endcond */

/// Everything of a publisher that does not depend on T.
class PublisherBase {
 public:
  /// An empty publisher.
  PublisherBase() noexcept : core_(nullptr) {}
  /// Moves the handle: the source is left empty (a publisher moved over is
  /// closed first).
  /// @{
  PublisherBase(PublisherBase &&other) noexcept : core_(other.core_) { other.core_ = nullptr; }
  PublisherBase &operator=(PublisherBase &&other) noexcept {
    if (this != &other) {
      close();
      core_ = other.core_;
      other.core_ = nullptr;
    }
    return *this;
  }
  /// @}
  PublisherBase(const PublisherBase &) = delete;
  PublisherBase &operator=(const PublisherBase &) = delete;
  /// As close().
  ~PublisherBase() { close(); }

  /// Lets go of this handle now; the C port closes (discarding what is
  /// loaned: see <shmbus.h>) once no Loan of it is alive.
  void close() noexcept {
    if (core_ != nullptr) unref(core_);
    core_ = nullptr;
  }
  /// Whether the handle is open (not closed, not moved from).
  /// @{
  bool is_open() const noexcept { return core_ != nullptr; }
  explicit operator bool() const noexcept { return core_ != nullptr; }
  /// @}

  /// Unique within the service; 0 when empty.
  std::uint64_t id() const noexcept { return core_ ? shmbus_publisher_id(core_->pub) : 0; }

#if SHMBUS_CPP_EXCEPTIONS
  /// Connects subscribers that joined (replaying the history), drops those
  /// that left; returns how many are connected. Throws Error (INVAL).
  int update() { return check(update_raw(), "shmbus::Publisher::update"); }
  /// How long a publish of a BLOCK service waits for a full subscriber.
  template <class Rep, class Period>
  void set_block_timeout(std::chrono::duration<Rep, Period> timeout) {
    try_set_block_timeout(timeout).value();
  }
  /// ... as long as the subscriber lives (the default).
  void set_block_forever() { try_set_block_forever().value(); }
#endif
  /// The try_ form of update().
  SHMBUS_NODISCARD Result<int> try_update() noexcept {
    const int r = update_raw();
    if (r < 0) return failure(r, "shmbus::Publisher::update", core_ ? nullptr : kEmptyPort());
    return Result<int>(int(r));
  }
  /// The try_ forms of set_block_timeout() and set_block_forever().
  /// @{
  template <class Rep, class Period>
  SHMBUS_NODISCARD Status
  try_set_block_timeout(std::chrono::duration<Rep, Period> timeout) noexcept {
    return block_timeout(timeout_ns(timeout));
  }
  SHMBUS_NODISCARD Status try_set_block_forever() noexcept { return block_timeout(-1); }
  /// @}

  /// The C publisher, still owned by this handle; nullptr when empty.
  shmbus_publisher *native_handle() const noexcept { return core_ ? core_->pub : nullptr; }

  /** @cond internal */
 protected:
  template <class T>
  int open(const Node &node, const Name &service, const ServiceOptions &opts,
           const char **why) noexcept {
    close();
    *why = nullptr;
    shmbus_service_opts o;
    int r = port_options<T>(opts, &o);
    if (r != 0) {
      *why = kOtherType();
      return r;
    }
    if (node.native_handle() == nullptr) {
      *why = kEmptyPort();
      return SHMBUS_ERR_INVAL;
    }
    if (service.c_str() == nullptr) return SHMBUS_ERR_NAME;
    PublisherCore *core = new (std::nothrow) PublisherCore();
    if (core == nullptr) return SHMBUS_ERR_NOMEM;
    r = shmbus_publisher_open(node.native_handle(), service.c_str(), &o, &core->pub);
    if (r != 0) {
      delete core;
      *why = detail::open_detail();
      return r;
    }
    core->refs = 1;
    core_ = core;
    return 0;
  }

  // Loans n elements; counts the loan.
  int loan_raw(std::size_t n, void **payload) noexcept {
    *payload = nullptr;
    if (core_ == nullptr) return SHMBUS_ERR_INVAL;
    const int r = shmbus_publisher_loan(core_->pub, n, payload);
    if (r == 0) core_->refs++;
    return r;
  }

  // Publishes `loan` (all of it, or `bytes` bytes when bytes != 0). The loan
  // is emptied on success only.
  int publish_raw(LoanBase &loan, std::size_t bytes, const char **why) noexcept {
    *why = nullptr;
    if (core_ == nullptr) {
      *why = kEmptyPort();
      return SHMBUS_ERR_INVAL;
    }
    if (loan.payload_ == nullptr) {
      *why = kEmptyLoan();
      return SHMBUS_ERR_INVAL;
    }
    if (loan.core_ != core_) {
      *why = "the loan is another publisher's";
      return SHMBUS_ERR_NOT_LOANED;
    }
    const int r = bytes == 0 ? shmbus_publisher_publish(core_->pub, loan.payload_)
                             : shmbus_publisher_publish_bytes(core_->pub, loan.payload_, bytes);
    if (r == 0) loan.published();
    return r;
  }

  int send_raw(const void *data, std::size_t bytes) noexcept {
    if (core_ == nullptr) return SHMBUS_ERR_INVAL;
    return shmbus_publisher_send_copy(core_->pub, data, bytes);
  }

  PublisherCore *core_;

 private:
  int update_raw() noexcept {
    return core_ ? shmbus_publisher_update(core_->pub) : static_cast<int>(SHMBUS_ERR_INVAL);
  }
  Status block_timeout(std::int64_t ns) noexcept {
    const char *where = "shmbus::Publisher::set_block_timeout";
    if (core_ == nullptr) return failure(SHMBUS_ERR_INVAL, where, kEmptyPort());
    return status(shmbus_publisher_set_block_timeout(core_->pub, ns), where);
  }
  /** @endcond */
};

} // namespace detail

/// Publishes samples of one T on a service (creating it if needed).
/// Move-only; empty after a move or close(). Used by one thread at a time.
template <class T>
class Publisher : public detail::PublisherBase {
  static_assert(detail::check_sample_type<T>::ok, "");

 public:
  /// T.
  using value_type = T;

  /// An empty publisher (open one with try_open, or move one in).
  Publisher() noexcept = default;
#if SHMBUS_CPP_EXCEPTIONS
  /// Opens a publisher on `service`. Throws Error: INVAL, NAME, TOO_LARGE,
  /// INCOMPATIBLE (another type or smaller limits), CORRUPT, VERSION,
  /// NOT_READY, PORT_LIMIT, NO_SPACE, PERM, NOMEM, IO.
  Publisher(const Node &node, const Name &service, const ServiceOptions &opts = ServiceOptions()) {
    const char *why = nullptr;
    const int r = open<T>(node, service, opts, &why);
    detail::check(r, detail::kPubOpen(), why);
  }
#endif
  /// The try_ form of the constructor.
  SHMBUS_NODISCARD static Result<Publisher> try_open(
      const Node &node, const Name &service,
      const ServiceOptions &opts = ServiceOptions()) noexcept {
    Publisher p;
    const char *why = nullptr;
    const int r = p.template open<T>(node, service, opts, &why);
    if (r != 0) return detail::failure(r, detail::kPubOpen(), why);
    return Result<Publisher>(std::move(p));
  }

#if SHMBUS_CPP_EXCEPTIONS
  /// Loans an uninitialised T in shared memory. Throws Error: INVAL (empty),
  /// LOAN_LIMIT (max_loans outstanding). Hot path.
  SHMBUS_NODISCARD Loan<T> loan() {
    void *p = nullptr;
    detail::check(loan_raw(1, &p), detail::kPubLoan(), empty_why());
    Loan<T> l(core_, p); // owns the chunk before T's constructor (if any) runs
    detail::begin_lifetime<T>(p, 1);
    return l;
  }
  /// Publishes the loan: it is the subscribers' now and `loan` is empty.
  /// Throws Error: INVAL (empty port or loan), NOT_LOANED (another
  /// publisher's); with Overflow::block also TIMEDOUT and PEER_DEAD, and then
  /// the loan stays with the caller. Hot path unless it has to wait.
  void publish(Loan<T> &&loan) {
    const char *why = nullptr;
    const int r = publish_raw(loan, 0, &why);
    detail::check(r, detail::kPubPublish(), why);
  }
  /// Loans, copies `value` and publishes. Errors as loan and publish.
  void send(const T &value) {
    detail::check(send_raw(&value, sizeof(T)), detail::kPubSend(), empty_why());
  }
#endif
  /// The try_ form of loan(): noexcept unless T has a default constructor
  /// that may throw.
  SHMBUS_NODISCARD Result<Loan<T>> try_loan() noexcept(detail::nothrow_lifetime<T>::value) {
    void *p = nullptr;
    const int r = loan_raw(1, &p);
    if (r != 0) return detail::failure(r, detail::kPubLoan(), empty_why());
    Loan<T> l(core_, p);
    detail::begin_lifetime<T>(p, 1);
    return Result<Loan<T>>(std::move(l));
  }
  /// The try_ form of publish(): the loan stays with the caller on failure.
  SHMBUS_NODISCARD Status try_publish(Loan<T> &&loan) noexcept {
    const char *why = nullptr;
    const int r = publish_raw(loan, 0, &why);
    return detail::status(r, detail::kPubPublish(), why);
  }
  /// The try_ form of send().
  SHMBUS_NODISCARD Status try_send(const T &value) noexcept {
    return detail::status(send_raw(&value, sizeof(T)), detail::kPubSend(), empty_why());
  }

 private:
  const char *empty_why() const noexcept { return core_ ? nullptr : detail::kEmptyPort(); }
};

/// Publishes slices: 1 to max_elements E per sample (set max_elements in the
/// options of whichever port creates the service).
template <class E>
class Publisher<E[]> : public detail::PublisherBase {
  static_assert(detail::check_sample_type<E[]>::ok, "");

 public:
  /// E.
  using element_type = E;

  /// An empty publisher (open one with try_open, or move one in).
  Publisher() noexcept = default;
#if SHMBUS_CPP_EXCEPTIONS
  /// Opens a publisher on `service`. Throws Error as Publisher<T>'s.
  Publisher(const Node &node, const Name &service, const ServiceOptions &opts = ServiceOptions()) {
    const char *why = nullptr;
    const int r = open<E[]>(node, service, opts, &why);
    detail::check(r, detail::kPubOpen(), why);
  }
#endif
  /// The try_ form of the constructor.
  SHMBUS_NODISCARD static Result<Publisher> try_open(
      const Node &node, const Name &service,
      const ServiceOptions &opts = ServiceOptions()) noexcept {
    Publisher p;
    const char *why = nullptr;
    const int r = p.template open<E[]>(node, service, opts, &why);
    if (r != 0) return detail::failure(r, detail::kPubOpen(), why);
    return Result<Publisher>(std::move(p));
  }

#if SHMBUS_CPP_EXCEPTIONS
  /// Loans n (1..max_elements) elements. Throws Error: INVAL (empty, n == 0),
  /// TOO_LARGE (n > max_elements), LOAN_LIMIT. Hot path.
  SHMBUS_NODISCARD Loan<E[]> loan(std::size_t n) {
    void *p = nullptr;
    detail::check(loan_raw(n, &p), detail::kPubLoan(), empty_why());
    Loan<E[]> l(core_, p, n); // owns the chunk before E's constructor (if any) runs
    detail::begin_lifetime<E>(p, n);
    return l;
  }
  /// Publishes every loaned element. Errors as Publisher<T>::publish.
  void publish(Loan<E[]> &&loan) {
    const char *why = nullptr;
    const int r = publish_raw(loan, 0, &why);
    detail::check(r, detail::kPubPublish(), why);
  }
  /// Publishes the first n (1..loan.size()) elements. Also TOO_LARGE.
  void publish(Loan<E[]> &&loan, std::size_t n) {
    const char *why = nullptr;
    const int r = publish_first(loan, n, &why);
    detail::check(r, detail::kPubPublish(), why);
  }
  /// Loans n elements, copies them from `data` and publishes.
  /// @{
  void send(const E *data, std::size_t n) {
    detail::check(send_slice(data, n), detail::kPubSend(), empty_why());
  }
  void send(Span<const E> data) { send(data.data(), data.size()); }
  /// @}
#endif
  /// The try_ form of loan(): noexcept unless E has a default constructor
  /// that may throw.
  SHMBUS_NODISCARD Result<Loan<E[]>> try_loan(std::size_t n) noexcept(
      detail::nothrow_lifetime<E>::value) {
    void *p = nullptr;
    const int r = loan_raw(n, &p);
    if (r != 0) return detail::failure(r, detail::kPubLoan(), empty_why());
    Loan<E[]> l(core_, p, n);
    detail::begin_lifetime<E>(p, n);
    return Result<Loan<E[]>>(std::move(l));
  }
  /// The try_ forms of publish(): the loan stays with the caller on failure.
  /// @{
  SHMBUS_NODISCARD Status try_publish(Loan<E[]> &&loan) noexcept {
    const char *why = nullptr;
    const int r = publish_raw(loan, 0, &why);
    return detail::status(r, detail::kPubPublish(), why);
  }
  SHMBUS_NODISCARD Status try_publish(Loan<E[]> &&loan, std::size_t n) noexcept {
    const char *why = nullptr;
    const int r = publish_first(loan, n, &why);
    return detail::status(r, detail::kPubPublish(), why);
  }
  /// @}
  /// The try_ forms of send().
  /// @{
  SHMBUS_NODISCARD Status try_send(const E *data, std::size_t n) noexcept {
    return detail::status(send_slice(data, n), detail::kPubSend(), empty_why());
  }
  SHMBUS_NODISCARD Status try_send(Span<const E> data) noexcept {
    return try_send(data.data(), data.size());
  }
  /// @}

 private:
  const char *empty_why() const noexcept { return core_ ? nullptr : detail::kEmptyPort(); }
  int publish_first(Loan<E[]> &loan, std::size_t n, const char **why) noexcept {
    *why = nullptr;
    if (n == 0) {
      *why = "a sample has at least one element";
      return SHMBUS_ERR_INVAL;
    }
    if (!is_open() || !loan) return publish_raw(loan, 0, why); // INVAL: says which is empty
    if (n > loan.size()) {
      *why = "more elements than were loaned";
      return SHMBUS_ERR_TOO_LARGE;
    }
    return publish_raw(loan, n * sizeof(E), why);
  }
  int send_slice(const E *data, std::size_t n) noexcept {
    if (!is_open() || n == 0 || data == nullptr) return SHMBUS_ERR_INVAL;
    if (n > SIZE_MAX / sizeof(E)) return SHMBUS_ERR_TOO_LARGE;
    return send_raw(data, n * sizeof(E));
  }
};

// ===========================================================================
// Sample<T>: a taken sample, read in place
// ===========================================================================

namespace detail {

/// What every Sample holds: its subscriber's control block and the C sample.
class SampleBase {
 public:
  /// An empty Sample.
  SampleBase() noexcept : core_(nullptr), s_() {}
  /// Moves the sample: the source is left empty (a sample moved over is
  /// released first, as by the destructor).
  /// @{
  SampleBase(SampleBase &&other) noexcept : core_(other.core_), s_(other.s_) { other.forget(); }
  SampleBase &operator=(SampleBase &&other) noexcept {
    if (this != &other) {
      (void)release_raw(true);
      core_ = other.core_;
      s_ = other.s_;
      other.forget();
    }
    return *this;
  }
  /// @}
  SampleBase(const SampleBase &) = delete;
  SampleBase &operator=(const SampleBase &) = delete;
  /// Releases; a CORRUPT result goes to the subscriber (see "Errors").
  ~SampleBase() { (void)release_raw(true); }

  /// False for an empty Sample: nothing was queued, or it was moved from or
  /// released. Every accessor below returns 0 for an empty Sample.
  /// @{
  bool has_value() const noexcept { return core_ != nullptr; }
  explicit operator bool() const noexcept { return core_ != nullptr; }
  /// @}

  /// Per publisher, from 0, +1 per publish.
  std::uint64_t sequence() const noexcept { return s_.sequence; }
  /// When it was published (CLOCK_MONOTONIC), as its publisher stamped it:
  /// any 64-bit value a peer wrote (docs/security.md). One past INT64_MAX
  /// nanoseconds reads as Timestamp::max(), so that arithmetic on it with
  /// Clock::now() cannot overflow.
  Timestamp timestamp() const noexcept {
    const std::uint64_t ns = s_.timestamp_ns;
    return Timestamp(std::chrono::nanoseconds(
        ns > static_cast<std::uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<std::int64_t>(ns)));
  }
  /// The stamp in nanoseconds, as the publisher wrote it (any value).
  std::uint64_t timestamp_ns() const noexcept { return s_.timestamp_ns; }
  /// How long ago it was published; negative for a stamp in the future.
  Clock::duration age() const noexcept { return Clock::now() - timestamp(); }
  /// Its publisher's id (Publisher::id).
  std::uint64_t publisher_id() const noexcept { return s_.publisher_id; }
  /// Payload length in bytes.
  std::size_t bytes() const noexcept { return s_.bytes; }

#if SHMBUS_CPP_EXCEPTIONS
  /// Hands the memory back now. Throws Error CORRUPT when a peer truncated
  /// the publisher's segment while it was held (what was read from it may
  /// have been zeros: discard it); the Sample is empty either way.
  void release() { check(release_raw(false), "shmbus::Sample::release", kTruncated()); }
#endif
  /// The try_ form of release().
  SHMBUS_NODISCARD Status try_release() noexcept {
    return status(release_raw(false), "shmbus::Sample::release", kTruncated());
  }

  /// The C sample (payload pointer, bytes, sequence, timestamp, publisher).
  const shmbus_sample &native() const noexcept { return s_; }

  /** @cond internal */
 protected:
  SampleBase(SubscriberCore *core, const shmbus_sample &s) noexcept : core_(core), s_(s) {}
  const void *checked() const noexcept {
    SHMBUS__EXPECT(core_ != nullptr,
                   "Sample: access to an empty sample (nothing was taken, or it was moved "
                   "from or released)");
    return s_.payload;
  }
  // `deferred`: nobody receives the code (a destructor, a move over it), so
  // the subscriber reports it later. Only CORRUPT is: the other codes
  // (NOT_HELD) mean that the sample was released already, through the C
  // API, which is not news about the memory.
  int release_raw(bool deferred) noexcept {
    if (core_ == nullptr) return 0;
    const int r = shmbus_subscriber_release(core_->sub, &s_);
    if (r == SHMBUS_ERR_CORRUPT && deferred) {
      core_->pending = r;
      core_->release_errors++;
    }
    unref(core_);
    forget();
    return r;
  }
  void forget() noexcept {
    core_ = nullptr;
    s_ = shmbus_sample();
  }

  SubscriberCore *core_;
  shmbus_sample s_;

  friend class SubscriberBase;
  /** @endcond */
};

} // namespace detail

/// A taken T, read-only, in the publisher's shared memory (no copy).
/// Released by its destructor. Move-only; empty after a move, and when take()
/// found nothing queued.
template <class T>
class Sample : public detail::SampleBase {
  static_assert(detail::check_sample_type<T>::ok, "");

 public:
  /// An empty Sample.
  Sample() noexcept = default;
  /// As SampleBase's.
  /// @{
  Sample(Sample &&) noexcept = default;
  Sample &operator=(Sample &&) noexcept = default;
  /// @}

  /// The T, read in place; an empty Sample aborts (see "Errors").
  /// @{
  const T *get() const noexcept { return static_cast<const T *>(checked()); }
  const T &operator*() const noexcept { return *get(); }
  const T *operator->() const noexcept { return get(); }
  /// @}

 private:
  Sample(detail::SubscriberCore *core, const shmbus_sample &s) noexcept : SampleBase(core, s) {}
  friend class Subscriber<T>;
};

/// A taken slice: size() elements (1..max_elements) of E, read-only, in place.
template <class E>
class Sample<E[]> : public detail::SampleBase {
  static_assert(detail::check_sample_type<E[]>::ok, "");

 public:
  /// An empty Sample.
  Sample() noexcept = default;
  /// As SampleBase's.
  /// @{
  Sample(Sample &&) noexcept = default;
  Sample &operator=(Sample &&) noexcept = default;
  /// @}

  /// The number of elements; 0 when empty.
  std::size_t size() const noexcept { return s_.bytes / sizeof(E); }
  /// The first element, and all of them as a Span; an empty Sample aborts
  /// (see "Errors").
  /// @{
  const E *data() const noexcept { return static_cast<const E *>(checked()); }
  Span<const E> span() const noexcept { return Span<const E>(data(), size()); }
  /// @}
  /// Unchecked, as std::span's.
  const E &operator[](std::size_t i) const noexcept { return data()[i]; }
  /// The elements as a range; an empty Sample aborts.
  /// @{
  const E *begin() const noexcept { return data(); }
  const E *end() const noexcept { return data() + size(); }
  /// @}

 private:
  Sample(detail::SubscriberCore *core, const shmbus_sample &s) noexcept : SampleBase(core, s) {}
  friend class Subscriber<E[]>;
};

// ===========================================================================
// Subscriber<T>
// ===========================================================================

/// What a wait on a subscriber found.
enum class WaitStatus {
  ready,       ///< a sample can be taken
  timed_out,   ///< nothing arrived in time
  no_publisher ///< its last publisher closed or died, nothing is queued
               ///< (reported once per loss; the next wait waits for a new one)
};

namespace detail {

/** @cond internal */
inline const char *kPendingRelease() noexcept {
  return "an earlier Sample, released by its destructor, had its memory truncated by a peer "
         "while it was held (what was read from it may have been zeros)";
}
inline const char *kWrongLength() noexcept {
  return "a sample's length does not fit the type (a slice or a short sample on a "
         "single-element port, or a partial element); it was released";
}
/** @endcond */

/// Everything of a subscriber that does not depend on T.
class SubscriberBase {
 public:
  /// An empty subscriber.
  SubscriberBase() noexcept : core_(nullptr) {}
  /// Moves the handle: the source is left empty (a subscriber moved over is
  /// closed first); a wait set finds the subscriber at its new address.
  /// @{
  SubscriberBase(SubscriberBase &&other) noexcept : core_(other.core_) {
    other.core_ = nullptr;
    if (core_ != nullptr) core_->owner = this;
  }
  SubscriberBase &operator=(SubscriberBase &&other) noexcept {
    if (this != &other) {
      close();
      core_ = other.core_;
      other.core_ = nullptr;
      if (core_ != nullptr) core_->owner = this;
    }
    return *this;
  }
  /// @}
  SubscriberBase(const SubscriberBase &) = delete;
  SubscriberBase &operator=(const SubscriberBase &) = delete;
  /// As close().
  ~SubscriberBase() { close(); }

  /// Lets go of this handle now: detaches it from its wait set; the C port
  /// closes once no Sample of it is alive.
  void close() noexcept {
    if (core_ == nullptr) return;
    if (core_->attachment != nullptr) detach(core_);
    core_->owner = nullptr;
    unref(core_);
    core_ = nullptr;
  }
  /// Whether the handle is open (not closed, not moved from).
  /// @{
  bool is_open() const noexcept { return core_ != nullptr; }
  explicit operator bool() const noexcept { return core_ != nullptr; }
  /// @}

  /// Samples lost to overflow since it opened, over all publishers.
  std::uint64_t lost() const noexcept { return core_ ? shmbus_subscriber_lost(core_->sub) : 0; }
  /// Unique within the service; 0 when empty.
  std::uint64_t id() const noexcept { return core_ ? shmbus_subscriber_id(core_->sub) : 0; }
  /// Samples whose destructor's release found their memory truncated.
  std::uint64_t release_errors() const noexcept { return core_ ? core_->release_errors : 0; }

#if SHMBUS_CPP_EXCEPTIONS
  /// Live publishers it is connected to (looks for new ones, frees the slots
  /// of dead ports). Throws Error (INVAL). Makes system calls.
  int publishers() { return check(publishers_raw(), "shmbus::Subscriber::publishers", why()); }
  /// How long waits poll before they sleep (default 0). Throws Error (INVAL).
  template <class Rep, class Period>
  void set_spin(std::chrono::duration<Rep, Period> spin) {
    try_set_spin(spin).value();
  }
  /// Waits until a sample can be taken, for at most `timeout` (<= 0 looks
  /// once). Throws Error: BUSY (attached to a wait set: wait there), CORRUPT
  /// (a peer truncated the service's segment: reopen; or a pending release
  /// error, see "Errors"), INVAL, HOLD_LIMIT. Sleeping makes system calls.
  template <class Rep, class Period>
  WaitStatus wait_for(std::chrono::duration<Rep, Period> timeout) {
    return wait_or_throw(timeout_ns(timeout));
  }
  /// wait_for() until `deadline`, a time point of any clock.
  template <class C, class D>
  WaitStatus wait_until(std::chrono::time_point<C, D> deadline) {
    return wait_for(deadline - C::now());
  }
  /// Without a timeout: returns ready or no_publisher.
  WaitStatus wait() { return wait_or_throw(-1); }
#endif
  /// The try_ form of publishers().
  SHMBUS_NODISCARD Result<int> try_publishers() noexcept {
    const int r = publishers_raw();
    if (r < 0) return failure(r, "shmbus::Subscriber::publishers", why());
    return Result<int>(int(r));
  }
  /// The try_ form of set_spin().
  template <class Rep, class Period>
  SHMBUS_NODISCARD Status try_set_spin(std::chrono::duration<Rep, Period> spin) noexcept {
    const char *where = "shmbus::Subscriber::set_spin";
    if (core_ == nullptr) return failure(SHMBUS_ERR_INVAL, where, kEmptyPort());
    return status(shmbus_subscriber_set_spin(core_->sub, timeout_ns(spin)), where);
  }
  /// The try_ forms of wait_for(), wait_until() and wait().
  /// @{
  template <class Rep, class Period>
  SHMBUS_NODISCARD Result<WaitStatus> try_wait_for(
      std::chrono::duration<Rep, Period> timeout) noexcept {
    return try_wait_ns(timeout_ns(timeout));
  }
  template <class C, class D>
  SHMBUS_NODISCARD Result<WaitStatus> try_wait_until(
      std::chrono::time_point<C, D> deadline) noexcept {
    return try_wait_for(deadline - C::now());
  }
  SHMBUS_NODISCARD Result<WaitStatus> try_wait() noexcept { return try_wait_ns(-1); }
  /// @}

  /// The C subscriber, still owned by this handle; nullptr when empty.
  shmbus_subscriber *native_handle() const noexcept { return core_ ? core_->sub : nullptr; }

  /** @cond internal */
 protected:
  template <class T>
  int open(const Node &node, const Name &service, const ServiceOptions &opts,
           const char **why_out) noexcept {
    close();
    *why_out = nullptr;
    shmbus_service_opts o;
    int r = port_options<T>(opts, &o);
    if (r != 0) {
      *why_out = kOtherType();
      return r;
    }
    if (node.native_handle() == nullptr) {
      *why_out = kEmptyPort();
      return SHMBUS_ERR_INVAL;
    }
    if (service.c_str() == nullptr) return SHMBUS_ERR_NAME;
    SubscriberCore *core = new (std::nothrow) SubscriberCore();
    if (core == nullptr) return SHMBUS_ERR_NOMEM;
    r = shmbus_subscriber_open(node.native_handle(), service.c_str(), &o, &core->sub);
    if (r != 0) {
      delete core;
      *why_out = detail::open_detail();
      return r;
    }
    core->refs = 1;
    core->owner = this;
    core->attachment = nullptr;
    core->pending = 0;
    core->release_errors = 0;
    core_ = core;
    return 0;
  }

  // Takes into `out` (which must be empty): 0 with a sample, 0 with an
  // empty `out` when nothing is queued, or an error. `element`: the size
  // the sample's length must be a multiple of; `single`: exactly one.
  int take_raw(bool latest, std::size_t element, bool single, SampleBase &out,
               const char **why_out) noexcept {
    *why_out = nullptr;
    if (core_ == nullptr) {
      *why_out = kEmptyPort();
      return SHMBUS_ERR_INVAL;
    }
    if (core_->pending != 0) return report_pending(why_out);
    shmbus_sample s;
    const int r = latest ? shmbus_subscriber_take_latest(core_->sub, &s)
                         : shmbus_subscriber_take(core_->sub, &s);
    if (r != 0) return r == SHMBUS_ERR_EMPTY ? 0 : r;
    core_->refs++;
    out.core_ = core_;
    out.s_ = s;
    const bool fits = single ? s.bytes == element : s.bytes != 0 && s.bytes % element == 0;
    if (!fits) {
      (void)out.release_raw(false);
      *why_out = kWrongLength();
      return SHMBUS_ERR_CORRUPT;
    }
    return 0;
  }

  const char *why() const noexcept { return core_ ? nullptr : kEmptyPort(); }

  SubscriberCore *core_;

 private:
  int report_pending(const char **why_out) noexcept {
    const int r = core_->pending;
    core_->pending = 0;
    *why_out = kPendingRelease();
    return r;
  }
  int publishers_raw() noexcept {
    return core_ ? shmbus_subscriber_publishers(core_->sub) : static_cast<int>(SHMBUS_ERR_INVAL);
  }
  int wait_raw(std::int64_t ns, WaitStatus *st, const char **why_out) noexcept {
    *why_out = nullptr;
    *st = WaitStatus::timed_out;
    if (core_ == nullptr) {
      *why_out = kEmptyPort();
      return SHMBUS_ERR_INVAL;
    }
    if (core_->pending != 0) return report_pending(why_out);
    const int r = shmbus_subscriber_wait(core_->sub, ns);
    if (r == 0)
      *st = WaitStatus::ready;
    else if (r == SHMBUS_ERR_NO_PUBLISHER)
      *st = WaitStatus::no_publisher;
    else if (r != SHMBUS_ERR_TIMEDOUT)
      return r;
    return 0;
  }
  Result<WaitStatus> try_wait_ns(std::int64_t ns) noexcept {
    WaitStatus st;
    const char *w = nullptr;
    const int r = wait_raw(ns, &st, &w);
    if (r != 0) return failure(r, "shmbus::Subscriber::wait", w);
    return Result<WaitStatus>(std::move(st));
  }
#if SHMBUS_CPP_EXCEPTIONS
  WaitStatus wait_or_throw(std::int64_t ns) {
    WaitStatus st;
    const char *w = nullptr;
    const int r = wait_raw(ns, &st, &w);
    check(r, "shmbus::Subscriber::wait", w);
    return st;
  }
#endif

  friend class ::shmbus::WaitSet;
  friend class ::shmbus::WaitEvent;
  /** @endcond */
};

} // namespace detail

/// Takes samples of one T from a service (creating it if needed).
/// Move-only; empty after a move or close(). Used by one thread at a time.
template <class T>
class Subscriber : public detail::SubscriberBase {
  static_assert(detail::check_sample_type<T>::ok, "");

 public:
  /// T.
  using value_type = T;

  /// An empty subscriber (open one with try_open, or move one in).
  Subscriber() noexcept = default;
  /// As SubscriberBase's.
  /// @{
  Subscriber(Subscriber &&) noexcept = default;
  Subscriber &operator=(Subscriber &&) noexcept = default;
  /// @}
#if SHMBUS_CPP_EXCEPTIONS
  /// Opens a subscriber on `service`. Errors as Publisher's constructor.
  Subscriber(const Node &node, const Name &service, const ServiceOptions &opts = ServiceOptions()) {
    const char *w = nullptr;
    const int r = open<T>(node, service, opts, &w);
    detail::check(r, detail::kSubOpen(), w);
  }
#endif
  /// The try_ form of the constructor.
  SHMBUS_NODISCARD static Result<Subscriber> try_open(
      const Node &node, const Name &service,
      const ServiceOptions &opts = ServiceOptions()) noexcept {
    Subscriber s;
    const char *w = nullptr;
    const int r = s.template open<T>(node, service, opts, &w);
    if (r != 0) return detail::failure(r, detail::kSubOpen(), w);
    return Result<Subscriber>(std::move(s));
  }

#if SHMBUS_CPP_EXCEPTIONS
  /// The next sample (publishers round-robin, each in order), or an empty
  /// Sample when nothing is queued. Throws Error: INVAL (empty), HOLD_LIMIT
  /// (max_held held: release one), CORRUPT (a publisher wrote nonsense and is
  /// disconnected, or the sample's length is not sizeof(T): it was released,
  /// or a pending release error: see "Errors"). Hot path.
  SHMBUS_NODISCARD Sample<T> take() { return take_or_throw(false); }
  /// The newest queued sample of all publishers; the older ones are released
  /// (taken, not lost). Errors as take(). Hot path.
  SHMBUS_NODISCARD Sample<T> take_latest() { return take_or_throw(true); }
#endif
  /// The try_ forms of take() and take_latest().
  /// Success with an empty Sample when nothing is queued.
  /// @{
  SHMBUS_NODISCARD Result<Sample<T>> try_take() noexcept { return try_take_(false); }
  SHMBUS_NODISCARD Result<Sample<T>> try_take_latest() noexcept { return try_take_(true); }
  /// @}

 private:
#if SHMBUS_CPP_EXCEPTIONS
  Sample<T> take_or_throw(bool latest) {
    Sample<T> s;
    const char *w = nullptr;
    const int r = take_raw(latest, sizeof(T), true, s, &w);
    detail::check(r, detail::kSubTake(), w);
    return s;
  }
#endif
  Result<Sample<T>> try_take_(bool latest) noexcept {
    Sample<T> s;
    const char *w = nullptr;
    const int r = take_raw(latest, sizeof(T), true, s, &w);
    if (r != 0) return detail::failure(r, detail::kSubTake(), w);
    return Result<Sample<T>>(std::move(s));
  }
};

/// Takes slices of E.
template <class E>
class Subscriber<E[]> : public detail::SubscriberBase {
  static_assert(detail::check_sample_type<E[]>::ok, "");

 public:
  /// E.
  using element_type = E;

  /// An empty subscriber (open one with try_open, or move one in).
  Subscriber() noexcept = default;
  /// As SubscriberBase's.
  /// @{
  Subscriber(Subscriber &&) noexcept = default;
  Subscriber &operator=(Subscriber &&) noexcept = default;
  /// @}
#if SHMBUS_CPP_EXCEPTIONS
  /// Opens a subscriber on `service`. Errors as Publisher's constructor.
  Subscriber(const Node &node, const Name &service, const ServiceOptions &opts = ServiceOptions()) {
    const char *w = nullptr;
    const int r = open<E[]>(node, service, opts, &w);
    detail::check(r, detail::kSubOpen(), w);
  }
#endif
  /// The try_ form of the constructor.
  SHMBUS_NODISCARD static Result<Subscriber> try_open(
      const Node &node, const Name &service,
      const ServiceOptions &opts = ServiceOptions()) noexcept {
    Subscriber s;
    const char *w = nullptr;
    const int r = s.template open<E[]>(node, service, opts, &w);
    if (r != 0) return detail::failure(r, detail::kSubOpen(), w);
    return Result<Subscriber>(std::move(s));
  }

#if SHMBUS_CPP_EXCEPTIONS
  /// As Subscriber<T>::take; CORRUPT also for a length that is not a whole
  /// number of elements.
  SHMBUS_NODISCARD Sample<E[]> take() { return take_or_throw(false); }
  /// As Subscriber<T>::take_latest; CORRUPT as for take().
  SHMBUS_NODISCARD Sample<E[]> take_latest() { return take_or_throw(true); }
#endif
  /// The try_ forms of take() and take_latest().
  /// Success with an empty Sample when nothing is queued.
  /// @{
  SHMBUS_NODISCARD Result<Sample<E[]>> try_take() noexcept { return try_take_(false); }
  SHMBUS_NODISCARD Result<Sample<E[]>> try_take_latest() noexcept { return try_take_(true); }
  /// @}

 private:
#if SHMBUS_CPP_EXCEPTIONS
  Sample<E[]> take_or_throw(bool latest) {
    Sample<E[]> s;
    const char *w = nullptr;
    const int r = take_raw(latest, sizeof(E), false, s, &w);
    detail::check(r, detail::kSubTake(), w);
    return s;
  }
#endif
  Result<Sample<E[]>> try_take_(bool latest) noexcept {
    Sample<E[]> s;
    const char *w = nullptr;
    const int r = take_raw(latest, sizeof(E), false, s, &w);
    if (r != 0) return detail::failure(r, detail::kSubTake(), w);
    return Result<Sample<E[]>>(std::move(s));
  }
};

// ===========================================================================
// WaitSet
// ===========================================================================

/** @cond internal */
namespace detail {

struct Callback {
  virtual ~Callback() {}
  virtual void call(const WaitEvent &event) = 0;
};

// One attached subscriber. Owned by its WaitSet; `core` becomes nullptr
// when it is detached, and the entry is freed by the next wait (events of
// the last one may still point to it).
struct Attachment {
  SubscriberCore *core;
  const void *tag; // type_tag<T> of the Subscriber<T> attached
  WaitSetCore *ws;
  std::unique_ptr<Callback> callback;
};

} // namespace detail
/** @endcond */

/// What a wait set reported.
class WaitEvent {
 public:
  /// What the event is about (SHMBUS_WAIT_*).
  enum class Kind {
    data = SHMBUS_WAIT_DATA,                 ///< samples can be taken (or take reports an error)
    no_publisher = SHMBUS_WAIT_NO_PUBLISHER, ///< the subscriber lost its last publisher (once)
    trigger = SHMBUS_WAIT_TRIGGER            ///< WaitSet::trigger()
  };

  /// What the event is about.
  Kind kind() const noexcept { return kind_; }
  /// kind() is Kind::data.
  bool has_data() const noexcept { return kind_ == Kind::data; }
  /// kind() is Kind::no_publisher.
  bool lost_publishers() const noexcept { return kind_ == Kind::no_publisher; }
  /// kind() is Kind::trigger.
  bool is_trigger() const noexcept { return kind_ == Kind::trigger; }

  /// Whether the event is about `sub` (false once it was detached).
  bool is_from(const detail::SubscriberBase &sub) const noexcept {
    return att_ != nullptr && att_->core != nullptr && att_->core == sub.core_;
  }
  /// The subscriber, when it is a Subscriber<T> that is still attached;
  /// nullptr otherwise (another type, the trigger, detached since).
  template <class T>
  Subscriber<T> *subscriber() const noexcept {
    if (att_ == nullptr || att_->core == nullptr || att_->core->owner == nullptr ||
        att_->tag != &detail::type_tag<T>::id)
      return nullptr;
    return static_cast<Subscriber<T> *>(att_->core->owner);
  }

 private:
  WaitEvent(Kind kind, detail::Attachment *att) noexcept : kind_(kind), att_(att) {}

  Kind kind_;
  detail::Attachment *att_;

  friend class WaitSet;
};

/** @cond internal */
namespace detail {

struct WaitSetCore {
  shmbus_waitset *ws;
  std::vector<Attachment *> attachments; // owned
  std::vector<shmbus_wait_event> raw;    // sized at attach: wait allocates nothing
  std::vector<WaitEvent> events;
  bool detached;    // some attachment waits to be freed
  bool dispatching; // in dispatch(): the events are being walked
};

inline void detach(SubscriberCore *core) noexcept {
  Attachment *a = core->attachment;
  (void)shmbus_waitset_detach(a->ws->ws, core->sub);
  a->core = nullptr;
  a->ws->detached = true;
  core->attachment = nullptr;
}

} // namespace detail
/** @endcond */

/// One thread waits on many subscribers (of any types and services) and a
/// trigger. Move-only. Used by one thread, except trigger().
///
/// @code
///   shmbus::WaitSet ws(node);
///   ws.attach(imu);                                  // events name it
///   ws.attach(cam, [](shmbus::Subscriber<Frame> &s) {  // or run a callback
///     while (shmbus::Sample<Frame> f = s.take()) show(*f);
///   });
///   for (const shmbus::WaitEvent &e : ws.wait(std::chrono::milliseconds(100))) {
///     if (e.is_trigger()) return;
///     if (e.is_from(imu)) while (auto s = imu.take()) use(*s);
///   }
///   ... or: while (ws.dispatch(std::chrono::milliseconds(100))) {}
/// @endcode
class WaitSet {
 public:
  /// The events of the last wait: valid until the next wait or dispatch.
  class Events {
   public:
    /// The events, as a range.
    /// @{
    const WaitEvent *begin() const noexcept { return data_; }
    const WaitEvent *end() const noexcept { return data_ + size_; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    const WaitEvent &operator[](std::size_t i) const noexcept { return data_[i]; }
    /// @}
    /// Whether the trigger fired.
    bool triggered() const noexcept {
      for (std::size_t i = 0; i < size_; i++)
        if (data_[i].is_trigger()) return true;
      return false;
    }

   private:
    Events(const WaitEvent *data, std::size_t size) noexcept : data_(data), size_(size) {}
    const WaitEvent *data_;
    std::size_t size_;
    friend class WaitSet;
  };

  /// An empty wait set.
  WaitSet() noexcept : core_(nullptr) {}
#if SHMBUS_CPP_EXCEPTIONS
  /// Opens a wait set. Throws Error: INVAL, NOMEM, UNSUPPORTED (not Linux), IO.
  explicit WaitSet(const Node &node) : core_(nullptr) {
    detail::check(open(node), detail::kWsOpen(), node ? nullptr : detail::kEmptyPort());
  }
#endif
  /// The try_ form of the constructor.
  SHMBUS_NODISCARD static Result<WaitSet> try_open(const Node &node) noexcept {
    WaitSet w;
    const int r = w.open(node);
    if (r != 0) return detail::failure(r, detail::kWsOpen(), node ? nullptr : detail::kEmptyPort());
    return Result<WaitSet>(std::move(w));
  }

  /// Moves the handle: the source is left empty (a wait set moved over is
  /// closed first).
  /// @{
  WaitSet(WaitSet &&other) noexcept : core_(other.core_) { other.core_ = nullptr; }
  WaitSet &operator=(WaitSet &&other) noexcept {
    if (this != &other) {
      close();
      core_ = other.core_;
      other.core_ = nullptr;
    }
    return *this;
  }
  /// @}
  WaitSet(const WaitSet &) = delete;
  WaitSet &operator=(const WaitSet &) = delete;
  /// As close().
  ~WaitSet() { close(); }

  /// Detaches every subscriber and closes. Not from its own callbacks.
  void close() noexcept {
    if (core_ == nullptr) return;
    SHMBUS__EXPECT(!core_->dispatching, "WaitSet: closed or destroyed from its own callback");
    for (detail::Attachment *a : core_->attachments) {
      if (a->core != nullptr) a->core->attachment = nullptr;
      delete a;
    }
    shmbus_waitset_close(core_->ws);
    delete core_;
    core_ = nullptr;
  }
  /// Whether the handle is open (not closed, not moved from).
  /// @{
  bool is_open() const noexcept { return core_ != nullptr; }
  explicit operator bool() const noexcept { return core_ != nullptr; }
  /// @}

#if SHMBUS_CPP_EXCEPTIONS
  /// Attaches `sub` (its events name it; subscriber<T>() finds it). While it
  /// is attached, sub.wait...() fails with BUSY. Throws Error: INVAL (empty,
  /// another domain), BUSY (in a wait set already), NOMEM. Allocates.
  template <class T>
  void attach(Subscriber<T> &sub) {
    check(attach_raw(sub, &detail::type_tag<T>::id, nullptr));
  }
  /// ... and runs callback(sub) for its data events in dispatch(), or
  /// callback(sub, event) for all its events if it takes both arguments.
  template <class T, class F>
  void attach(Subscriber<T> &sub, F &&callback) {
    check(try_attach(sub, std::forward<F>(callback)));
  }
  /// Throws Error: INVAL, NOT_FOUND (not in this wait set).
  template <class T>
  void detach(Subscriber<T> &sub) {
    check(try_detach(sub));
  }
  /// Waits until a subscriber has data or lost its publishers, or the
  /// trigger fired, for at most `timeout` (<= 0 looks once); no events when
  /// it timed out. Throws Error: INVAL, IO. Sleeping makes system calls.
  /// @{
  template <class Rep, class Period>
  Events wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_or_throw(detail::timeout_ns(timeout));
  }
  Events wait() { return wait_or_throw(-1); }
  /// @}
  /// Waits as wait() and runs the callbacks of the events; events of
  /// subscribers attached without a callback are skipped (they are reported
  /// again by the next wait while they have data). Returns false when the
  /// trigger fired, true otherwise (also when it timed out). A callback may
  /// take, attach, detach and close subscribers (an event of one closed
  /// meanwhile is skipped); waiting on the same WaitSet from it fails with
  /// BUSY, closing it aborts. An exception from a callback leaves dispatch.
  /// @{
  template <class Rep, class Period>
  bool dispatch(std::chrono::duration<Rep, Period> timeout) {
    return run(wait(timeout));
  }
  bool dispatch() { return run(wait()); }
  /// @}
#endif
  /// The try_ forms of attach(): they may throw std::bad_alloc (see "Errors").
  /// @{
  template <class T>
  SHMBUS_NODISCARD Status try_attach(Subscriber<T> &sub) {
    return status(attach_raw(sub, &detail::type_tag<T>::id, nullptr));
  }
  template <class T, class F>
  SHMBUS_NODISCARD Status try_attach(Subscriber<T> &sub, F &&callback) {
    using Fn = typename std::decay<F>::type;
    std::unique_ptr<detail::Callback> cb(new (std::nothrow)
                                             CallbackOf<T, Fn>(std::forward<F>(callback)));
    if (!cb) return status(SHMBUS_ERR_NOMEM);
    return status(attach_raw(sub, &detail::type_tag<T>::id, &cb));
  }
  /// @}
  /// The try_ form of detach().
  template <class T>
  SHMBUS_NODISCARD Status try_detach(Subscriber<T> &sub) noexcept {
    const char *where = "shmbus::WaitSet::detach";
    if (core_ == nullptr || !sub)
      return detail::failure(SHMBUS_ERR_INVAL, where, detail::kEmptyPort());
    detail::Attachment *a = sub.core_->attachment;
    if (a == nullptr || a->ws != core_) return detail::failure(SHMBUS_ERR_NOT_FOUND, where);
    detail::detach(sub.core_);
    return Status();
  }
  /// The try_ forms of wait().
  /// @{
  template <class Rep, class Period>
  SHMBUS_NODISCARD Result<Events> try_wait(std::chrono::duration<Rep, Period> timeout) noexcept {
    return try_wait_ns(detail::timeout_ns(timeout));
  }
  SHMBUS_NODISCARD Result<Events> try_wait() noexcept { return try_wait_ns(-1); }
  /// @}
  /// The try_ forms of dispatch(): what a callback throws passes through.
  /// @{
  template <class Rep, class Period>
  SHMBUS_NODISCARD Result<bool> try_dispatch(std::chrono::duration<Rep, Period> timeout) {
    return try_run(try_wait(timeout));
  }
  SHMBUS_NODISCARD Result<bool> try_dispatch() { return try_run(try_wait()); }
  /// @}

  /// Wakes the waiter, whose wait reports a trigger event (for shutdown).
  /// Any thread, or a signal handler, but not concurrently with the WaitSet's
  /// close, move or destruction. Nothing on an empty WaitSet.
  void trigger() const noexcept {
    if (core_ != nullptr) (void)shmbus_waitset_trigger(core_->ws);
  }
  /// A descriptor for poll/epoll, readable when there may be events: then
  /// call wait(0) until it returns no events (<shmbus.h>, shmbus_waitset_fd).
  /// -1 when empty; negative (UNSUPPORTED) on Windows: use os_handle().
  int fd() const noexcept { return core_ ? shmbus_waitset_fd(core_->ws) : -1; }
  /// The waitable OS object with fd()'s protocol: the descriptor on POSIX, an
  /// event HANDLE for WaitForMultipleObjects on Windows
  /// (shmbus_waitset_os_handle). -1 when empty.
  shmbus_os_handle os_handle() const noexcept {
    shmbus_os_handle h = -1;
    if (core_ != nullptr) (void)shmbus_waitset_os_handle(core_->ws, &h);
    return h;
  }

  /// The C wait set, still owned by this handle; nullptr when empty.
  shmbus_waitset *native_handle() const noexcept { return core_ ? core_->ws : nullptr; }

 private:
  template <class T, class F>
  struct CallbackOf : detail::Callback {
    template <class G>
    explicit CallbackOf(G &&g) : f(std::forward<G>(g)) {}
    void call(const WaitEvent &event) override {
      Subscriber<T> *sub = event.subscriber<T>();
      if (sub != nullptr) invoke(f, *sub, event, 0);
    }
    // f(sub, event) for every event if F takes both, else f(sub) for data.
    template <class G>
    static auto invoke(G &g, Subscriber<T> &sub, const WaitEvent &event, int)
        -> decltype(g(sub, event), void()) {
      g(sub, event);
    }
    template <class G>
    static auto invoke(G &g, Subscriber<T> &sub, const WaitEvent &event, long)
        -> decltype(g(sub), void()) {
      if (event.has_data()) g(sub);
    }
    F f;
  };

  struct Code {
    int code;
    const char *why;
  };

  int open(const Node &node) noexcept {
    if (node.native_handle() == nullptr) return SHMBUS_ERR_INVAL;
    detail::WaitSetCore *core = new (std::nothrow) detail::WaitSetCore();
    if (core == nullptr) return SHMBUS_ERR_NOMEM;
    const int r = shmbus_waitset_open(node.native_handle(), &core->ws);
    if (r != 0) {
      delete core;
      return r;
    }
    core->detached = false;
    core->dispatching = false;
    core->raw.resize(1); // the trigger's event: wait allocates nothing
    core_ = core;
    return 0;
  }

  Code attach_raw(detail::SubscriberBase &sub, const void *tag,
                  std::unique_ptr<detail::Callback> *cb) {
    if (core_ == nullptr || sub.core_ == nullptr) {
      Code c = {SHMBUS_ERR_INVAL, detail::kEmptyPort()};
      return c;
    }
    if (sub.core_->attachment != nullptr) {
      Code c = {SHMBUS_ERR_BUSY, "the subscriber is in a wait set already"};
      return c;
    }
    // Room for every event first, so that wait does not allocate. (Detached
    // entries are freed by the next wait only: events may still name them.
    // Within dispatch the events are being walked: wait makes the room.)
    const std::size_t cap = core_->attachments.size() + 2;
    if (core_->raw.size() < cap) core_->raw.resize(cap);
    if (!core_->dispatching && core_->events.capacity() < cap) core_->events.reserve(cap);
    core_->attachments.reserve(core_->attachments.size() + 1);
    detail::Attachment *a = new (std::nothrow) detail::Attachment();
    if (a == nullptr) {
      Code c = {SHMBUS_ERR_NOMEM, nullptr};
      return c;
    }
    a->core = sub.core_;
    a->tag = tag;
    a->ws = core_;
    if (cb != nullptr) a->callback = std::move(*cb);
    const int r = shmbus_waitset_attach(core_->ws, sub.core_->sub, a);
    if (r != 0) {
      delete a;
      Code c = {r, nullptr};
      return c;
    }
    core_->attachments.push_back(a);
    sub.core_->attachment = a;
    Code c = {0, nullptr};
    return c;
  }

  // Frees the entries of detached subscribers (no event refers to them
  // once a new wait begins).
  void collect() noexcept {
    if (!core_->detached) return;
    std::size_t kept = 0;
    for (detail::Attachment *a : core_->attachments) {
      if (a->core != nullptr)
        core_->attachments[kept++] = a;
      else
        delete a;
    }
    core_->attachments.resize(kept);
    core_->detached = false;
  }

  int wait_raw(std::int64_t ns, Events *out, const char **why) noexcept {
    *out = Events(nullptr, 0);
    *why = nullptr;
    if (core_ == nullptr) {
      *why = detail::kEmptyPort();
      return SHMBUS_ERR_INVAL;
    }
    if (core_->dispatching) {
      *why = "called from a callback of its own dispatch";
      return SHMBUS_ERR_BUSY;
    }
    core_->events.clear();
    collect();
    if (core_->events.capacity() < core_->raw.size()) core_->events.reserve(core_->raw.size());
    const int r = shmbus_waitset_wait(core_->ws, ns, core_->raw.data(), core_->raw.size());
    if (r == SHMBUS_ERR_TIMEDOUT) return 0;
    if (r < 0) return r;
    for (int i = 0; i < r; i++) {
      const shmbus_wait_event &e = core_->raw[static_cast<std::size_t>(i)];
      core_->events.push_back(WaitEvent(static_cast<WaitEvent::Kind>(e.what),
                                        static_cast<detail::Attachment *>(e.user)));
    }
    *out = Events(core_->events.data(), core_->events.size());
    return 0;
  }
  Result<Events> try_wait_ns(std::int64_t ns) noexcept {
    Events ev(nullptr, 0);
    const char *why = nullptr;
    const int r = wait_raw(ns, &ev, &why);
    if (r != 0) return detail::failure(r, "shmbus::WaitSet::wait", why);
    return Result<Events>(std::move(ev));
  }

  // Marks the events as being walked for as long as it lives (also when a
  // callback throws).
  struct Dispatching {
    explicit Dispatching(detail::WaitSetCore *c) noexcept : core(c) { core->dispatching = true; }
    ~Dispatching() { core->dispatching = false; }
    Dispatching(const Dispatching &) = delete;
    Dispatching &operator=(const Dispatching &) = delete;
    detail::WaitSetCore *core;
  };

  bool run(const Events &events) {
    bool go_on = true;
    Dispatching guard(core_);
    for (const WaitEvent &e : events) {
      if (e.is_trigger()) {
        go_on = false;
        continue;
      }
      // Checked per event: a callback may detach others.
      if (e.att_ != nullptr && e.att_->core != nullptr && e.att_->callback)
        e.att_->callback->call(e);
    }
    return go_on;
  }
  Result<bool> try_run(Result<Events> events) {
    if (!events) return detail::failure(events.error(), events.where(), events.detail());
    return Result<bool>(run(*events));
  }

  static Status status(Code c) noexcept {
    return detail::status(c.code, detail::kWsAttach(), c.why);
  }
  static Status status(int code) noexcept { return detail::status(code, detail::kWsAttach()); }
#if SHMBUS_CPP_EXCEPTIONS
  static void check(Code c) { detail::check(c.code, detail::kWsAttach(), c.why); }
  static void check(const Status &s) { s.value(); }
  Events wait_or_throw(std::int64_t ns) {
    Events ev(nullptr, 0);
    const char *why = nullptr;
    const int r = wait_raw(ns, &ev, &why);
    detail::check(r, "shmbus::WaitSet::wait", why);
    return ev;
  }
#endif

  detail::WaitSetCore *core_;
};

/// The library's version string, e.g. "0.1.0".
inline const char *version() noexcept { return shmbus_version_string(); }

} // namespace shmbus

#endif // SHMBUS_HPP

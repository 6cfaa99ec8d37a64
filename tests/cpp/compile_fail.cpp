// SPDX-License-Identifier: Apache-2.0
//
// Programs that must not compile, one per SHMBUS_COMPILE_FAIL_CASE, each
// with the message the compiler must give (tests/cpp/cpp.cmake lists them;
// tests/cpp/compile_fail.sh compiles and checks). What a type that cannot
// live in shared memory, a missing type name, a copy of a move-only object
// or a throwing call without exceptions do at compile time.
#include <shmbus.hpp>

#include <cstdint>
#include <string>

struct WithString {
  std::string s; // owns heap memory of this process
};
SHMBUS_TYPE_NAME(WithString, "fail/WithString");

struct Virtual {
  virtual ~Virtual() {}
  int x;
};
SHMBUS_TYPE_NAME(Virtual, "fail/Virtual");

struct Unnamed {
  std::uint32_t x;
};

#if SHMBUS_COMPILE_FAIL_CASE == 1
shmbus::Publisher<WithString> p; // not trivially copyable
#elif SHMBUS_COMPILE_FAIL_CASE == 2
shmbus::Subscriber<Virtual> s; // not trivially copyable nor standard layout
#elif SHMBUS_COMPILE_FAIL_CASE == 3
shmbus::Publisher<Unnamed> p; // no type name
#elif SHMBUS_COMPILE_FAIL_CASE == 4
shmbus::Publisher<std::uint32_t *> p; // a pointer
#elif SHMBUS_COMPILE_FAIL_CASE == 5
shmbus::Publisher<float[3]> p; // a fixed-size array
#elif SHMBUS_COMPILE_FAIL_CASE == 6
void f(shmbus::Sample<std::uint32_t> &a) { shmbus::Sample<std::uint32_t> b = a; } // a copy
#elif SHMBUS_COMPILE_FAIL_CASE == 7
void f(shmbus::Loan<std::uint32_t> &a, shmbus::Loan<std::uint32_t> &b) { a = b; } // a copy
#elif SHMBUS_COMPILE_FAIL_CASE == 8
struct Empty {
  std::uint32_t x;
};
SHMBUS_TYPE_NAME(Empty, ""); // an empty name
#elif SHMBUS_COMPILE_FAIL_CASE == 9
// Without exceptions only the try_ forms exist.
void f(shmbus::Publisher<std::uint32_t> &p) { (void)p.loan(); }
#elif SHMBUS_COMPILE_FAIL_CASE == 10
// publish consumes the loan: an lvalue is not accepted.
void f(shmbus::Publisher<std::uint32_t> &p, shmbus::Loan<std::uint32_t> &l) {
  (void)p.try_publish(l);
}
#elif SHMBUS_COMPILE_FAIL_CASE == 11
// A Sample is read-only shared memory.
void f(shmbus::Sample<std::uint32_t> &s) { *s = 1; }
#else
#error "no such case"
#endif

// SPDX-License-Identifier: Apache-2.0
//
// Helpers shared by the C++ examples: a stop flag set by SIGINT and
// SIGTERM, command line counts, and the monotonic clock of shmbus.
#ifndef SHMBUS_EXAMPLE_UTIL_HPP
#define SHMBUS_EXAMPLE_UTIL_HPP

#include <shmbus.hpp>

#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cerrno>

namespace example {

// Set by SIGINT and SIGTERM: stop, close the ports and exit cleanly.
inline volatile std::sig_atomic_t &interrupted() {
  static volatile std::sig_atomic_t flag = 0;
  return flag;
}

inline void catch_signals() {
  struct Handler {
    static void on_signal(int) { interrupted() = 1; }
  };
  std::signal(SIGINT, Handler::on_signal);
  std::signal(SIGTERM, Handler::on_signal);
}

// A decimal count from 1 to 10^12.
inline bool parse_count(const char *text, std::uint64_t *out) {
  char *end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v == 0 || v > 1000000000000ull)
    return false;
  *out = v;
  return true;
}

} // namespace example

#endif // SHMBUS_EXAMPLE_UTIL_HPP

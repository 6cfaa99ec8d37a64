// SPDX-License-Identifier: Apache-2.0
//
// <shmbus.h> compiled as C++ (C++11 and C++17, -Wall -Wextra -Werror
// -pedantic): the header is valid C++, its C initialisers work, and the
// functions link with C linkage. Makes no shared-memory object.
// Exit 0 on success, 1 on failure.
#include <shmbus.h>

#include <cstdio>
#include <cstring>

namespace {

int failures = 0;

void check(bool ok, const char *what) {
  if (!ok) {
    std::fprintf(stderr, "header_cpp: FAILED: %s\n", what);
    failures++;
  }
}

struct Imu {
  float accel[3];
  float gyro[3];
  uint64_t stamp;
};

} // namespace

int main() {
  shmbus_node_opts node_opts = SHMBUS_NODE_OPTS_INIT;
  shmbus_service_opts service_opts = SHMBUS_SERVICE_OPTS_INIT;
  service_opts.type = shmbus_type{"demo/Imu", sizeof(Imu), alignof(Imu)};
  service_opts.queue_depth = 4;
  service_opts.overflow = SHMBUS_OVERFLOW_DROP_NEWEST;
  shmbus_sample sample = shmbus_sample();

  // Function pointers of the exact declared types: the signatures are usable
  // from C++ and link with C linkage.
  int (*node_open)(const shmbus_node_opts *, shmbus_node **) = &shmbus_node_open;
  int (*pub_open)(shmbus_node *, const char *, const shmbus_service_opts *, shmbus_publisher **) =
      &shmbus_publisher_open;
  int (*sub_take)(shmbus_subscriber *, shmbus_sample *) = &shmbus_subscriber_take;
  const char *(*err_name)(int) = &shmbus_err_name;
  check(node_open != nullptr && pub_open != nullptr && sub_take != nullptr, "function pointers");

  check(std::strcmp(err_name(SHMBUS_ERR_EMPTY), "EMPTY") == 0, "err_name(EMPTY)");
  check(shmbus_strerror(SHMBUS_ERR_INVAL) != nullptr, "strerror(INVAL)");
  check(std::strcmp(shmbus_version_string(), SHMBUS_VERSION_STRING) == 0, "version string");
  check(SHMBUS_ERR_INVAL == -1, "SHMBUS_ERR_INVAL is -1");

  const shmbus_errno code = SHMBUS_ERR_TIMEDOUT;
  check(code < 0, "shmbus_errno is negative");

  check(node_opts.domain == nullptr && node_opts.backend == SHMBUS_BACKEND_SHM,
        "SHMBUS_NODE_OPTS_INIT");
  check(service_opts.type.size == sizeof(Imu) && service_opts.max_loans == 0,
        "SHMBUS_SERVICE_OPTS_INIT");
  check(sample.payload == nullptr && sample.bytes == 0, "shmbus_sample value-initialised");

  shmbus_node *node = nullptr;
  check(shmbus_node_open(&node_opts, nullptr) == SHMBUS_ERR_INVAL, "node_open(opts, nullptr)");
  check(node == nullptr, "node untouched");
  shmbus_node_close(nullptr);
  shmbus_publisher_close(nullptr);
  shmbus_subscriber_close(nullptr);
  check(shmbus_publisher_id(nullptr) == 0 && shmbus_subscriber_lost(nullptr) == 0, "NULL getters");

  if (failures != 0) return 1;
  std::printf("header_cpp (C++%ld): ok\n", static_cast<long>(__cplusplus / 100 % 100));
  return 0;
}

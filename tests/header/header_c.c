/* SPDX-License-Identifier: Apache-2.0 */
/*
 * <shmbus.h> on its own, as strict C11 with -Wall -Wextra -Werror -pedantic:
 * the header is self-contained, its initialisers compile, and every function
 * it declares is defined by the shared library (the list is generated from
 * the header by tests/CMakeLists.txt). Makes no shared-memory object.
 * Exit 0 on success, 1 on failure.
 */
#include <shmbus.h>

#include <stdio.h>
#include <string.h>

#include "shmbus_api_list.h"

typedef void (*api_fn)(void);

/* Taking every address makes the link fail if one is missing. */
#define API_ENTRY(fn) {#fn, (api_fn)fn},
static const struct {
  const char *name;
  api_fn fn;
} api[] = {SHMBUS_TEST_API_LIST(API_ENTRY)};

static int failures;

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "header_c: FAILED: %s\n", what);
    failures++;
  }
}

int main(void) {
  shmbus_node_opts node_opts = SHMBUS_NODE_OPTS_INIT;
  shmbus_service_opts service_opts = SHMBUS_SERVICE_OPTS_INIT;
  static char sentinel;
  shmbus_node *node = (shmbus_node *)(void *)&sentinel; /* must be cleared on error */
  size_t i;

  for (i = 0; i < sizeof api / sizeof api[0]; i++) check(api[i].fn != NULL, api[i].name);

  check(SHMBUS_OK == 0, "SHMBUS_OK is 0");
  check(SHMBUS_ERR_INVAL == -1, "SHMBUS_ERR_INVAL is -1");
  check(SHMBUS_ERR_NAME == -2, "SHMBUS_ERR_NAME is -2");
  check(strcmp(shmbus_err_name(SHMBUS_ERR_EMPTY), "EMPTY") == 0, "err_name(EMPTY)");
  check(strcmp(shmbus_err_name(0), "OK") == 0, "err_name(0)");
  check(strcmp(shmbus_err_name(-100000), "UNKNOWN") == 0, "err_name(unknown)");
  check(shmbus_strerror(SHMBUS_ERR_TIMEDOUT) != NULL, "strerror(TIMEDOUT)");
  check(shmbus_strerror(12345) != NULL, "strerror(unknown)");

  check(strcmp(shmbus_version_string(), SHMBUS_VERSION_STRING) == 0,
        "shmbus_version_string() == SHMBUS_VERSION_STRING");
#ifdef SHMBUS_TEST_EXPECTED_VERSION
  check(strcmp(SHMBUS_VERSION_STRING, SHMBUS_TEST_EXPECTED_VERSION) == 0,
        "SHMBUS_VERSION_STRING == the CMake project version");
#endif
  check(SHMBUS_VERSION_HEX ==
            ((SHMBUS_VERSION_MAJOR << 16) | (SHMBUS_VERSION_MINOR << 8) | SHMBUS_VERSION_PATCH),
        "SHMBUS_VERSION_HEX");

  check(node_opts.domain == NULL && node_opts.backend == SHMBUS_BACKEND_SHM &&
            node_opts.root == NULL && node_opts.mode == 0,
        "SHMBUS_NODE_OPTS_INIT");
  check(service_opts.type.name == NULL && service_opts.max_elements == 0 &&
            service_opts.overflow == SHMBUS_OVERFLOW_DEFAULT,
        "SHMBUS_SERVICE_OPTS_INIT");

  /* Argument checks that touch no shared memory. */
  check(shmbus_node_open(&node_opts, NULL) == SHMBUS_ERR_INVAL, "node_open(opts, NULL)");
  node_opts.backend = 99;
  check(shmbus_node_open(&node_opts, &node) == SHMBUS_ERR_INVAL, "node_open(bad backend)");
  check(node == NULL, "node_open clears *out on error");
  shmbus_node_close(NULL);
  shmbus_publisher_close(NULL);
  shmbus_subscriber_close(NULL);
  check(shmbus_node_domain(NULL) == NULL, "node_domain(NULL)");

  if (failures) return 1;
  printf("header_c: ok (%u API functions)\n", (unsigned)(sizeof api / sizeof api[0]));
  return 0;
}

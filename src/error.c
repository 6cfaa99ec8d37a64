/* SPDX-License-Identifier: Apache-2.0 */
/* The error table's two readers; both generated from SHMBUS_ERRNO_MAP. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

const char *shmbus_strerror(int err) {
  switch (err) {
  case SHMBUS_OK: return "success";
#define SHMBUS__ERR_MSG(name, msg) \
  case SHMBUS_ERR_##name: return msg;
    SHMBUS_ERRNO_MAP(SHMBUS__ERR_MSG)
#undef SHMBUS__ERR_MSG
  default: return "unknown error";
  }
}

const char *shmbus_err_name(int err) {
  switch (err) {
  case SHMBUS_OK: return "OK";
#define SHMBUS__ERR_NAME(name, msg) \
  case SHMBUS_ERR_##name: return #name;
    SHMBUS_ERRNO_MAP(SHMBUS__ERR_NAME)
#undef SHMBUS__ERR_NAME
  default: return "UNKNOWN";
  }
}

const char *shmbus_version_string(void) { return SHMBUS_VERSION_STRING; }

/* Per thread: one open's finding, read back by the same thread. */
#if defined(_MSC_VER) && !defined(__clang__)
#define SHMBUS__THREAD_LOCAL __declspec(thread)
#else
#define SHMBUS__THREAD_LOCAL _Thread_local
#endif
static SHMBUS__THREAD_LOCAL char error_detail[512];

void shmbus__set_error_detail(const char *fmt, ...) {
  if (fmt == NULL) {
    error_detail[0] = '\0';
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(error_detail, sizeof error_detail, fmt, ap);
  va_end(ap);
}

const char *shmbus_error_detail(void) { return error_detail; }

/* SPDX-License-Identifier: Apache-2.0 */
/* The error table's two readers; both generated from SHMBUS_ERRNO_MAP. */
#include "shmbus.h"

const char *shmbus_strerror(int err) {
  switch (err) {
  case SHMBUS_OK: return "success";
#define SHMBUS__ERR_MSG(name, msg) case SHMBUS_ERR_##name: return msg;
    SHMBUS_ERRNO_MAP(SHMBUS__ERR_MSG)
#undef SHMBUS__ERR_MSG
  default: return "unknown error";
  }
}

const char *shmbus_err_name(int err) {
  switch (err) {
  case SHMBUS_OK: return "OK";
#define SHMBUS__ERR_NAME(name, msg) case SHMBUS_ERR_##name: return #name;
    SHMBUS_ERRNO_MAP(SHMBUS__ERR_NAME)
#undef SHMBUS__ERR_NAME
  default: return "UNKNOWN";
  }
}

const char *shmbus_version_string(void) { return SHMBUS_VERSION_STRING; }

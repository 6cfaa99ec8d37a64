/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SHMBUS_VERSION_H
#define SHMBUS_VERSION_H

#define SHMBUS_VERSION_MAJOR 0
#define SHMBUS_VERSION_MINOR 1
#define SHMBUS_VERSION_PATCH 0

/* One number that grows with every release: 0xMMmmpp. */
#define SHMBUS_VERSION_HEX \
  ((SHMBUS_VERSION_MAJOR << 16) | (SHMBUS_VERSION_MINOR << 8) | SHMBUS_VERSION_PATCH)

#define SHMBUS__STR2(x) #x
#define SHMBUS__STR(x) SHMBUS__STR2(x)
#define SHMBUS_VERSION_STRING                                   \
  SHMBUS__STR(SHMBUS_VERSION_MAJOR) "." SHMBUS__STR(SHMBUS_VERSION_MINOR) "." \
  SHMBUS__STR(SHMBUS_VERSION_PATCH)

#endif /* SHMBUS_VERSION_H */

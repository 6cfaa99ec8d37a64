/* SPDX-License-Identifier: Apache-2.0 */
/* What the POSIX backend's files (the .c files of src/posix/) share and nothing else
 * sees: object paths and opening (object.c), the errno translation, and
 * timeouts. */
#ifndef SHMBUS_POSIX_H
#define SHMBUS_POSIX_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "platform.h"

/* The one errno translation point: an errno value as a SHMBUS_ERR_ code. */
int shmbus__posix_errno(int e);
/* The path of object `name`: "/name" for shm_open, "dir/name" otherwise. */
int shmbus__posix_object_path(const shmbus__root *root, const char *name, char *path, size_t cap);
/* open()/shm_open() of a path; an existing object without following links
 * or blocking. -1 with errno. */
int shmbus__posix_open_object(const shmbus__root *root, const char *path, int flags, mode_t mode);
int shmbus__posix_unlink_object(const shmbus__root *root, const char *path);
/* The length of an open regular file; CORRUPT for anything else. */
int shmbus__posix_regular_size(int fd, uint64_t *size);
/* The SHMBUS_ERR_ code of a failed open of an existing object. */
int shmbus__posix_open_error(const shmbus__root *root, int e);
/* The file system path of object `name` (its directory: the root's, or
 * /dev/shm on Linux). */
int shmbus__posix_dir_path(const shmbus__root *root, const char *name, char *path, size_t cap);
/* A new object to be called `path`: unnamed where possible (*named = 0),
 * else created under `path` exclusively (*named = 1). -1 with errno. */
int shmbus__posix_open_new(const shmbus__root *root, const char *path, int *named);
/* Names the unnamed object `fd` `name`, exclusively (EXISTS). */
int shmbus__posix_name_object(const shmbus__root *root, const char *name, int fd);

/* `ns` as a relative timespec in *ts, or NULL (no limit) when negative.
 * Inline: not every system's waits use it. */
static inline struct timespec *shmbus__posix_relative_timeout(int64_t ns, struct timespec *ts) {
  if (ns < 0) return NULL;
  ts->tv_sec = (time_t)(ns / 1000000000);
  ts->tv_nsec = (long)(ns % 1000000000);
  return ts;
}

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* Segments (platform.h): creating, opening, mapping, protecting and
 * removing shared memory objects. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "posix.h"

static int map_fd(int fd, uint64_t size, int writable, shmbus__segment *out) {
  if (size > (uint64_t)SIZE_MAX) return SHMBUS_ERR_NOMEM;
  void *p =
      mmap(NULL, (size_t)size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return shmbus__posix_errno(errno);
  out->base = p;
  out->size = size;
  out->guard = shmbus__guard_add(p, size);
  return 0;
}

static int sys_reserve(intptr_t fd, int64_t length) {
  int e = posix_fallocate((int)fd, 0, (off_t)length);
  return e != 0 ? shmbus__posix_errno(e) : 0;
}

int (*shmbus__sys_reserve)(intptr_t object, int64_t length) = sys_reserve;

int shmbus__segment_create(const shmbus__root *root, const char *name, uint64_t size,
                           shmbus__segment *out) {
  char path[SHMBUS__ROOT_PATH_MAX + SHMBUS__OBJECT_NAME_MAX + 2];
  memset(out, 0, sizeof *out);
  int r = shmbus__posix_object_path(root, name, path, sizeof path);
  if (r) return r;
  if (size == 0 || size > (uint64_t)INT64_MAX) return SHMBUS_ERR_TOO_LARGE;
  int named;
  int fd = shmbus__posix_open_new(root, path, &named);
  if (fd < 0) return shmbus__posix_errno(errno);
  /* The umask must not narrow what the caller asked for. */
  if (fchmod(fd, (mode_t)root->mode) != 0) {
    r = shmbus__posix_errno(errno);
  } else {
    /* Reserves every page before anyone maps it, and only then grows the
     * length from 0: an opener never maps pages that could SIGBUS. */
    r = shmbus__sys_reserve(fd, (int64_t)size);
    if (r == 0) r = map_fd(fd, size, 1, out);
  }
  if (r == 0 && !named) {
    out->draft = (intptr_t)fd + 1; /* kept open: it is the object */
    return 0;
  }
  close(fd); /* an unnamed object goes with its last descriptor */
  if (r && named) shmbus__posix_unlink_object(root, path);
  return r;
}

int shmbus__segment_publish(const shmbus__root *root, const char *name, shmbus__segment *seg) {
  if (seg->draft == 0) return 0;
  int r = shmbus__posix_name_object(root, name, (int)(seg->draft - 1));
  if (r) return r;
  close((int)(seg->draft - 1));
  seg->draft = 0;
  return 0;
}

int shmbus__segment_open(const shmbus__root *root, const char *name, int writable,
                         uint64_t min_size, uint64_t max_size, shmbus__segment *out) {
  char path[SHMBUS__ROOT_PATH_MAX + SHMBUS__OBJECT_NAME_MAX + 2];
  memset(out, 0, sizeof *out);
  int r = shmbus__posix_object_path(root, name, path, sizeof path);
  if (r) return r;
  int fd = shmbus__posix_open_object(root, path, writable ? O_RDWR : O_RDONLY, 0);
  if (fd < 0) return shmbus__posix_open_error(root, errno);
  uint64_t size = 0;
  r = shmbus__posix_regular_size(fd, &size);
  if (r == 0 && size == 0) r = SHMBUS_ERR_NOT_READY;
  if (r == 0 && size < min_size) r = SHMBUS_ERR_CORRUPT;
  if (r == 0) r = map_fd(fd, size < max_size ? size : max_size, writable, out);
  close(fd);
  return r;
}

int shmbus__segment_shrink(shmbus__segment *seg, uint64_t size) {
  if (seg->base == NULL || size == 0 || size % shmbus__page_size() || size > seg->size)
    return SHMBUS_ERR_INVAL;
  if (size == seg->size) return 0;
  /* The guard follows the new length (before the unmap: see fault.c). */
  shmbus__guard_remove(seg->guard);
  int r = munmap((char *)seg->base + size, (size_t)(seg->size - size)) == 0
              ? 0
              : shmbus__posix_errno(errno);
  if (r == 0) seg->size = size;
  seg->guard = shmbus__guard_add(seg->base, seg->size);
  return r;
}

uint64_t shmbus__page_size(void) {
  static uint64_t page;
  uint64_t p = __atomic_load_n(&page, __ATOMIC_RELAXED);
  if (p == 0) {
    long v = sysconf(_SC_PAGESIZE);
    p = v > 0 ? (uint64_t)v : 4096;
    __atomic_store_n(&page, p, __ATOMIC_RELAXED);
  }
  return p;
}

int shmbus__segment_protect(const shmbus__segment *seg, uint64_t offset, uint64_t len,
                            int writable) {
  uint64_t page = shmbus__page_size();
  if (seg->base == NULL || offset % page || len % page || offset > seg->size ||
      len > seg->size - offset)
    return SHMBUS_ERR_INVAL;
  if (len == 0) return 0;
  /* A mapping that faulted is private zero pages now: nothing to protect. */
  if (shmbus__segment_faulted(seg)) return 0;
  return mprotect((char *)seg->base + offset, (size_t)len,
                  writable ? PROT_READ | PROT_WRITE : PROT_READ) == 0
             ? 0
             : shmbus__posix_errno(errno);
}

void shmbus__segment_close(shmbus__segment *seg) {
  shmbus__guard_remove(seg->guard); /* before the unmap: see fault.c */
  if (seg->base != NULL) munmap(seg->base, (size_t)seg->size);
  if (seg->draft != 0) close((int)(seg->draft - 1));
  seg->base = NULL;
  seg->size = 0;
  seg->draft = 0;
  seg->guard = 0;
}

int shmbus__segment_unlink(const shmbus__root *root, const char *name) {
  char path[SHMBUS__ROOT_PATH_MAX + SHMBUS__OBJECT_NAME_MAX + 2];
  int r = shmbus__posix_object_path(root, name, path, sizeof path);
  if (r) return r;
  return shmbus__posix_unlink_object(root, path) == 0 ? 0 : shmbus__posix_errno(errno);
}

int shmbus__segment_age(const shmbus__root *root, const char *name, uint64_t *seconds) {
  char path[SHMBUS__ROOT_PATH_MAX + SHMBUS__OBJECT_NAME_MAX + 2];
  int r = shmbus__posix_dir_path(root, name, path, sizeof path);
  if (r) return r;
  struct stat st;
  if (lstat(path, &st) != 0) return shmbus__posix_errno(errno);
  time_t now = time(NULL);
  *seconds = now > st.st_mtime ? (uint64_t)(now - st.st_mtime) : 0;
  return 0;
}

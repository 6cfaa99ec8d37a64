/* SPDX-License-Identifier: Apache-2.0 */
/* Objects by name (platform.h): paths, opening, unnamed creation and
 * naming, the errno translation and listing a domain's names, shared by
 * segments (segment.c) and liveness tokens (token.c). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "posix.h"

/* The one errno translation point. */
int shmbus__posix_errno(int e) {
  switch (e) {
  case EEXIST: return SHMBUS_ERR_EXISTS;
  case ENOENT: return SHMBUS_ERR_NOT_FOUND;
  case EACCES:
  case EPERM:
  case EROFS: return SHMBUS_ERR_PERM;
  case ENOSPC:
  case EFBIG:
#ifdef EDQUOT
  case EDQUOT:
#endif
    return SHMBUS_ERR_NO_SPACE;
  case ENOMEM: return SHMBUS_ERR_NOMEM;
  case ENAMETOOLONG: return SHMBUS_ERR_NAME;
  case EWOULDBLOCK: return SHMBUS_ERR_BUSY; /* a lock held by somebody else */
  case EINVAL: return SHMBUS_ERR_INVAL;
  default: return SHMBUS_ERR_IO;
  }
}

/* Builds the path for `name`: "/name" for shm_open, "dir/name" otherwise. */
int shmbus__posix_object_path(const shmbus__root *root, const char *name, char *path, size_t cap) {
  int n = root->backend == SHMBUS_BACKEND_DIR ? snprintf(path, cap, "%s/%s", root->dir, name)
                                              : snprintf(path, cap, "/%s", name);
  return (n < 0 || (size_t)n >= cap) ? SHMBUS_ERR_NAME : 0;
}

/* Opens (or with O_CREAT creates) an object. Existing objects are opened
 * without following a symbolic link and without blocking (a FIFO under our
 * name would block an O_RDONLY open forever). */
int shmbus__posix_open_object(const shmbus__root *root, const char *path, int flags, mode_t mode) {
  int fd;
  if (!(flags & O_CREAT)) flags |= O_NOFOLLOW | O_NONBLOCK;
  do {
    fd = root->backend == SHMBUS_BACKEND_DIR ? open(path, flags | O_CLOEXEC, mode)
                                             : shm_open(path, flags, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

int shmbus__posix_unlink_object(const shmbus__root *root, const char *path) {
  return root->backend == SHMBUS_BACKEND_DIR ? unlink(path) : shm_unlink(path);
}

int shmbus__root_prepare(shmbus__root *root) {
  root->tag = 0; /* POSIX objects of a root are all in its namespace */
  if (root->backend == SHMBUS_BACKEND_SHM) return 0;
  if (root->backend != SHMBUS_BACKEND_DIR) return SHMBUS_ERR_INVAL;
  struct stat st;
  if (stat(root->dir, &st) != 0 || !S_ISDIR(st.st_mode)) return SHMBUS_ERR_INVAL;
  if (access(root->dir, W_OK | X_OK) != 0) return SHMBUS_ERR_PERM;
  return 0;
}

/* An opened object's length, when it is a regular file (shared memory
 * objects are): CORRUPT for a FIFO, device, directory or socket. */
int shmbus__posix_regular_size(int fd, uint64_t *size) {
  struct stat st;
  if (fstat(fd, &st) != 0) return shmbus__posix_errno(errno);
  if (!S_ISREG(st.st_mode) || st.st_size < 0) return SHMBUS_ERR_CORRUPT;
  *size = (uint64_t)st.st_size;
  return 0;
}

/* errno of a failed open of an existing object: a symbolic link (ELOOP:
 * O_NOFOLLOW) or a directory (EISDIR; glibc's shm_open reports it as
 * EINVAL, and our names are always valid) where our object should be is
 * somebody else's doing, not a missing object. */
int shmbus__posix_open_error(const shmbus__root *root, int e) {
  if (e == ELOOP || e == EISDIR || (e == EINVAL && root->backend == SHMBUS_BACKEND_SHM))
    return SHMBUS_ERR_CORRUPT;
  return shmbus__posix_errno(e);
}

/* The directory an object's path lives in, where it is a file system
 * directory: the root's, or /dev/shm for Linux shared memory (glibc's
 * shm_open names are its files). NULL where there is none. */
static const char *object_dir(const shmbus__root *root) {
  if (root->backend == SHMBUS_BACKEND_DIR) return root->dir;
#ifdef __linux__
  return "/dev/shm";
#else
  return NULL;
#endif
}

/* The file system path of object `name` in its directory (object_dir). */
int shmbus__posix_dir_path(const shmbus__root *root, const char *name, char *path, size_t cap) {
  const char *dir = object_dir(root);
  if (dir == NULL) return SHMBUS_ERR_IO;
  int n = snprintf(path, cap, "%s/%s", dir, name);
  return (n < 0 || (size_t)n >= cap) ? SHMBUS_ERR_NAME : 0;
}

#ifdef O_TMPFILE
/* Naming an unnamed file goes through /proc/self/fd (shmbus__posix_name_object); without
 * a mounted /proc (some chroots and containers) objects are created named. */
static int proc_fd_usable;
static pthread_once_t proc_fd_once = PTHREAD_ONCE_INIT;
static void probe_proc_fd(void) { proc_fd_usable = access("/proc/self/fd", X_OK) == 0; }
#endif

/* Opens a new object that is to be called `path`: unnamed (Linux
 * O_TMPFILE) where the object directory allows it, *named = 0; otherwise
 * created under `path` exclusively, *named = 1. -1 with errno on failure. */
int shmbus__posix_open_new(const shmbus__root *root, const char *path, int *named) {
#ifdef O_TMPFILE
  const char *dir = object_dir(root);
  pthread_once(&proc_fd_once, probe_proc_fd);
  if (dir != NULL && proc_fd_usable) {
    int fd;
    do {
      fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, (mode_t)root->mode);
    } while (fd < 0 && errno == EINTR);
    /* Anything else than "not here" (an old kernel or a file system
     * without it) would fail the named creation just the same. */
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) {
      *named = 0;
      return fd;
    }
  }
#endif
  *named = 1;
  return shmbus__posix_open_object(root, path, O_RDWR | O_CREAT | O_EXCL, (mode_t)root->mode);
}

/* Gives the unnamed object `fd` the name `name`, exclusively (EXISTS). */
int shmbus__posix_name_object(const shmbus__root *root, const char *name, int fd) {
  char path[SHMBUS__ROOT_PATH_MAX + SHMBUS__OBJECT_NAME_MAX + 2];
  int r = shmbus__posix_dir_path(root, name, path, sizeof path);
  if (r) return r;
  /* linkat with AT_EMPTY_PATH needs a capability; following the
   * descriptor's /proc link does not. */
  char self[64];
  snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
  return linkat(AT_FDCWD, self, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0
             ? 0
             : shmbus__posix_errno(errno);
}

int shmbus__list_objects(const shmbus__root *root, const char *prefix,
                         int (*fn)(const char *name, void *arg), void *arg) {
#ifdef __linux__
  const char *dir = root->backend == SHMBUS_BACKEND_DIR ? root->dir : "/dev/shm";
#else
  if (root->backend != SHMBUS_BACKEND_DIR) return SHMBUS_ERR_IO;
  const char *dir = root->dir;
#endif
  DIR *d = opendir(dir);
  if (d == NULL) return shmbus__posix_errno(errno);
  size_t n = strlen(prefix);
  struct dirent *e;
  int r = 0;
  while (r == 0 && (e = readdir(d)) != NULL)
    if (strncmp(e->d_name, prefix, n) == 0) r = fn(e->d_name, arg);
  closedir(d);
  return r < 0 ? r : 0;
}

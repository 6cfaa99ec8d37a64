/* SPDX-License-Identifier: Apache-2.0 */
/* The platform contract (src/platform.h) on POSIX systems. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "platform.h"

/* The one errno translation point. */
static int translate_errno(int e) {
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
static int object_path(const shmbus__root *root, const char *name, char *path, size_t cap) {
  int n = root->backend == SHMBUS_BACKEND_DIR ? snprintf(path, cap, "%s/%s", root->dir, name)
                                              : snprintf(path, cap, "/%s", name);
  return (n < 0 || (size_t)n >= cap) ? SHMBUS_ERR_NAME : 0;
}

/* Opens (or with O_CREAT creates) an object. Existing objects are opened
 * without following a symbolic link and without blocking (a FIFO under our
 * name would block an O_RDONLY open forever). */
static int open_object(const shmbus__root *root, const char *path, int flags, mode_t mode) {
  int fd;
  if (!(flags & O_CREAT)) flags |= O_NOFOLLOW | O_NONBLOCK;
  do {
    fd = root->backend == SHMBUS_BACKEND_DIR ? open(path, flags | O_CLOEXEC, mode)
                                             : shm_open(path, flags, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

static int unlink_object(const shmbus__root *root, const char *path) {
  return root->backend == SHMBUS_BACKEND_DIR ? unlink(path) : shm_unlink(path);
}

int shmbus__root_check(const shmbus__root *root) {
  if (root->backend == SHMBUS_BACKEND_SHM) return 0;
  if (root->backend != SHMBUS_BACKEND_DIR) return SHMBUS_ERR_INVAL;
  struct stat st;
  if (stat(root->dir, &st) != 0 || !S_ISDIR(st.st_mode)) return SHMBUS_ERR_INVAL;
  if (access(root->dir, W_OK | X_OK) != 0) return SHMBUS_ERR_PERM;
  return 0;
}

static int map_fd(int fd, uint64_t size, int writable, shmbus__segment *out) {
  if (size > (uint64_t)SIZE_MAX) return SHMBUS_ERR_NOMEM;
  void *p =
      mmap(NULL, (size_t)size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return translate_errno(errno);
  out->base = p;
  out->size = size;
  out->guard = shmbus__guard_add(p, size);
  return 0;
}

/* An opened object's length, when it is a regular file (shared memory
 * objects are): CORRUPT for a FIFO, device, directory or socket. */
static int regular_size(int fd, uint64_t *size) {
  struct stat st;
  if (fstat(fd, &st) != 0) return translate_errno(errno);
  if (!S_ISREG(st.st_mode) || st.st_size < 0) return SHMBUS_ERR_CORRUPT;
  *size = (uint64_t)st.st_size;
  return 0;
}

/* errno of a failed open of an existing object: a symbolic link (ELOOP:
 * O_NOFOLLOW) or a directory (EISDIR; glibc's shm_open reports it as
 * EINVAL, and our names are always valid) where our object should be is
 * somebody else's doing, not a missing object. */
static int open_error(const shmbus__root *root, int e) {
  if (e == ELOOP || e == EISDIR || (e == EINVAL && root->backend == SHMBUS_BACKEND_SHM))
    return SHMBUS_ERR_CORRUPT;
  return translate_errno(e);
}

static int sys_fallocate(int fd, int64_t offset, int64_t length) {
  return posix_fallocate(fd, (off_t)offset, (off_t)length);
}

int (*shmbus__sys_fallocate)(int fd, int64_t offset, int64_t length) = sys_fallocate;

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
static int dir_path(const shmbus__root *root, const char *name, char *path, size_t cap) {
  const char *dir = object_dir(root);
  if (dir == NULL) return SHMBUS_ERR_IO;
  int n = snprintf(path, cap, "%s/%s", dir, name);
  return (n < 0 || (size_t)n >= cap) ? SHMBUS_ERR_NAME : 0;
}

#ifdef O_TMPFILE
/* Naming an unnamed file goes through /proc/self/fd (name_object); without
 * a mounted /proc (some chroots and containers) objects are created named. */
static int proc_fd_usable;
static pthread_once_t proc_fd_once = PTHREAD_ONCE_INIT;
static void probe_proc_fd(void) { proc_fd_usable = access("/proc/self/fd", X_OK) == 0; }
#endif

/* Opens a new object that is to be called `path`: unnamed (Linux
 * O_TMPFILE) where the object directory allows it, *named = 0; otherwise
 * created under `path` exclusively, *named = 1. -1 with errno on failure. */
static int open_new(const shmbus__root *root, const char *path, int *named) {
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
  return open_object(root, path, O_RDWR | O_CREAT | O_EXCL, (mode_t)root->mode);
}

/* Gives the unnamed object `fd` the name `name`, exclusively (EXISTS). */
static int name_object(const shmbus__root *root, const char *name, int fd) {
  char path[SHMBUS__ROOT_PATH_MAX + SHMBUS__OBJECT_NAME_MAX + 2];
  int r = dir_path(root, name, path, sizeof path);
  if (r) return r;
  /* linkat with AT_EMPTY_PATH needs a capability; following the
   * descriptor's /proc link does not. */
  char self[64];
  snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
  return linkat(AT_FDCWD, self, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0 ? 0
                                                                        : translate_errno(errno);
}

int shmbus__segment_create(const shmbus__root *root, const char *name, uint64_t size,
                           shmbus__segment *out) {
  char path[SHMBUS__ROOT_PATH_MAX + SHMBUS__OBJECT_NAME_MAX + 2];
  memset(out, 0, sizeof *out);
  int r = object_path(root, name, path, sizeof path);
  if (r) return r;
  if (size == 0 || size > (uint64_t)INT64_MAX) return SHMBUS_ERR_TOO_LARGE;
  int named;
  int fd = open_new(root, path, &named);
  if (fd < 0) return translate_errno(errno);
  /* The umask must not narrow what the caller asked for. */
  if (fchmod(fd, (mode_t)root->mode) != 0) {
    r = translate_errno(errno);
  } else {
    /* Reserves every page before anyone maps it, and only then grows the
     * length from 0: an opener never maps pages that could SIGBUS. */
    int e = shmbus__sys_fallocate(fd, 0, (int64_t)size);
    r = e != 0 ? translate_errno(e) : map_fd(fd, size, 1, out);
  }
  if (r == 0 && !named) {
    out->draft = (intptr_t)fd + 1; /* kept open: it is the object */
    return 0;
  }
  close(fd); /* an unnamed object goes with its last descriptor */
  if (r && named) unlink_object(root, path);
  return r;
}

int shmbus__segment_publish(const shmbus__root *root, const char *name, shmbus__segment *seg) {
  if (seg->draft == 0) return 0;
  int r = name_object(root, name, (int)(seg->draft - 1));
  if (r) return r;
  close((int)(seg->draft - 1));
  seg->draft = 0;
  return 0;
}

int shmbus__segment_open(const shmbus__root *root, const char *name, int writable,
                         uint64_t min_size, uint64_t max_size, shmbus__segment *out) {
  char path[SHMBUS__ROOT_PATH_MAX + SHMBUS__OBJECT_NAME_MAX + 2];
  memset(out, 0, sizeof *out);
  int r = object_path(root, name, path, sizeof path);
  if (r) return r;
  int fd = open_object(root, path, writable ? O_RDWR : O_RDONLY, 0);
  if (fd < 0) return open_error(root, errno);
  uint64_t size = 0;
  r = regular_size(fd, &size);
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
              : translate_errno(errno);
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
             : translate_errno(errno);
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
  int r = object_path(root, name, path, sizeof path);
  if (r) return r;
  return unlink_object(root, path) == 0 ? 0 : translate_errno(errno);
}

int shmbus__segment_age(const shmbus__root *root, const char *name, uint64_t *seconds) {
  char path[SHMBUS__ROOT_PATH_MAX + SHMBUS__OBJECT_NAME_MAX + 2];
  int r = dir_path(root, name, path, sizeof path);
  if (r) return r;
  struct stat st;
  if (lstat(path, &st) != 0) return translate_errno(errno);
  time_t now = time(NULL);
  *seconds = now > st.st_mtime ? (uint64_t)(now - st.st_mtime) : 0;
  return 0;
}

/* ---- liveness tokens ---- */

/* flock() locks belong to the open file description, which fork() shares:
 * a child would keep a dead parent's token locked. So every token's
 * descriptor is listed here and a fork handler closes them in the child. */
enum { MAX_TOKENS = 256 };
static int token_fds[MAX_TOKENS];
static int token_count;
static pthread_mutex_t token_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t token_once = PTHREAD_ONCE_INIT;

static void tokens_in_child(void) {
  /* The child has one thread and a copy of the list; the mutex may have
   * been held by another thread of the parent, so it is not taken. */
  for (int i = 0; i < token_count; i++) close(token_fds[i]);
  token_count = 0;
  pthread_mutex_init(&token_lock, NULL);
}

static void tokens_register_handler(void) { pthread_atfork(NULL, NULL, tokens_in_child); }

static int tokens_add(int fd) {
  pthread_once(&token_once, tokens_register_handler);
  pthread_mutex_lock(&token_lock);
  int ok = token_count < MAX_TOKENS;
  if (ok) token_fds[token_count++] = fd;
  pthread_mutex_unlock(&token_lock);
  return ok ? 0 : SHMBUS_ERR_NOMEM;
}

static void tokens_remove(int fd) {
  pthread_mutex_lock(&token_lock);
  for (int i = 0; i < token_count; i++)
    if (token_fds[i] == fd) {
      token_fds[i] = token_fds[--token_count];
      break;
    }
  pthread_mutex_unlock(&token_lock);
}

int shmbus__token_create(const shmbus__root *root, const char *name, shmbus__token *out) {
  char path[SHMBUS__ROOT_PATH_MAX + SHMBUS__OBJECT_NAME_MAX + 2];
  out->handle = -1;
  out->owner = (int64_t)getpid();
  int r = object_path(root, name, path, sizeof path);
  if (r) return r;
  int named;
  int fd = open_new(root, path, &named);
  if (fd < 0) return translate_errno(errno);
  /* A prober may hold a shared lock for an instant; a peer that keeps one
   * (possible only where the token is named before it is locked) must not
   * keep us: give up after about 100 ms. */
  for (int tries = 0; (r = flock(fd, LOCK_EX | LOCK_NB)) != 0 && tries < 100; tries++) {
    if (errno != EWOULDBLOCK && errno != EINTR) break;
    shmbus__sleep_ns(1000 * 1000);
  }
  /* Length 1 says "finished": a prober that finds a token unlocked and
   * still empty is looking at a creator between open and lock (only where
   * the token could not be made unnamed and then named, locked). */
  if (r != 0 || fchmod(fd, (mode_t)root->mode) != 0 || ftruncate(fd, 1) != 0)
    r = translate_errno(errno);
  else
    r = tokens_add(fd);
  if (r == 0 && !named && (r = name_object(root, name, fd)) != 0) tokens_remove(fd);
  if (r) {
    close(fd);
    if (named) unlink_object(root, path);
    return r;
  }
  out->handle = fd;
  return 0;
}

void shmbus__token_destroy(const shmbus__root *root, const char *name, shmbus__token *token) {
  char path[SHMBUS__ROOT_PATH_MAX + SHMBUS__OBJECT_NAME_MAX + 2];
  if (token->handle < 0 || token->owner != (int64_t)getpid()) return;
  /* Name first: nobody may find the token unlocked while we still live. */
  if (object_path(root, name, path, sizeof path) == 0) unlink_object(root, path);
  tokens_remove((int)token->handle);
  close((int)token->handle);
  token->handle = -1;
}

int shmbus__token_probe(const shmbus__root *root, const char *name) {
  char path[SHMBUS__ROOT_PATH_MAX + SHMBUS__OBJECT_NAME_MAX + 2];
  int r = object_path(root, name, path, sizeof path);
  if (r) return r;
  int fd = open_object(root, path, O_RDONLY, 0);
  /* A link, FIFO or directory under a token's name is no token (and never
   * blocks us). */
  if (fd < 0) {
    r = open_error(root, errno);
    return r == SHMBUS_ERR_CORRUPT ? SHMBUS_ERR_NOT_FOUND : r;
  }
  uint64_t size;
  if (regular_size(fd, &size) != 0) {
    close(fd);
    return SHMBUS_ERR_NOT_FOUND;
  }
  if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
    r = errno == EWOULDBLOCK ? SHMBUS__ALIVE : translate_errno(errno);
    close(fd);
    return r;
  }
  struct stat st;
  r = SHMBUS__DEAD;
  /* Empty: its creator is between open and lock, or died there. Give a
   * creator ten seconds before calling it dead. */
  if (fstat(fd, &st) == 0 && st.st_size == 0 && time(NULL) - st.st_mtime < 10) r = SHMBUS__ALIVE;
  flock(fd, LOCK_UN);
  close(fd);
  return r;
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
  if (d == NULL) return translate_errno(errno);
  size_t n = strlen(prefix);
  struct dirent *e;
  int r = 0;
  while (r == 0 && (e = readdir(d)) != NULL)
    if (strncmp(e->d_name, prefix, n) == 0) r = fn(e->d_name, arg);
  closedir(d);
  return r < 0 ? r : 0;
}

uint64_t shmbus__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

void shmbus__yield(void) { sched_yield(); }

/* `ns` as a relative timespec in *ts, or NULL (no limit) when negative.
 * Inline: not every system's waits below use it. */
static inline struct timespec *relative_timeout(int64_t ns, struct timespec *ts) {
  if (ns < 0) return NULL;
  ts->tv_sec = (time_t)(ns / 1000000000);
  ts->tv_nsec = (long)(ns % 1000000000);
  return ts;
}

void shmbus__sleep_ns(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

uint64_t shmbus__random64(void) {
  uint64_t v = 0;
  if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v && v != 0) return v;
  /* splitmix64 over the clock and the process id: unique enough for ids. */
  v = shmbus__now_ns() ^ ((uint64_t)getpid() << 32);
  v += UINT64_C(0x9e3779b97f4a7c15);
  v = (v ^ (v >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  v = (v ^ (v >> 27)) * UINT64_C(0x94d049bb133111eb);
  v ^= v >> 31;
  return v ? v : 1;
}

const char *shmbus__getenv(const char *name) { return getenv(name); }

/* ---- waiting ---- */

#ifdef __linux__
#include <linux/futex.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

int shmbus__word_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns) {
  struct timespec ts;
  struct timespec *tp = relative_timeout(timeout_ns, &ts);
  /* Relative timeout, CLOCK_MONOTONIC. Not FUTEX_PRIVATE_FLAG: the word
   * lives in memory shared with other processes. */
  long rc = syscall(SYS_futex, word, FUTEX_WAIT, expected, tp, NULL, 0);
  return rc != 0 && errno == ETIMEDOUT ? SHMBUS_ERR_TIMEDOUT : 0;
}

void shmbus__word_wake(uint32_t *word) {
  syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

/* The abstract address of notifier `id` ("\0shmbus.<domain>.w.<16 hex>");
 * returns its length. Built by hand, without snprintf: it runs inside
 * shmbus_waitset_trigger, which signal handlers may call. */
static socklen_t notifier_addr(const char *domain, uint64_t id, struct sockaddr_un *a) {
  static const char hex[] = "0123456789abcdef";
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  char *p = a->sun_path + 1; /* abstract: starts with a NUL */
  const char *parts[3] = {"shmbus.", domain, ".w."};
  for (int i = 0; i < 3; i++)
    for (const char *q = parts[i]; *q; q++) *p++ = *q; /* domain <= 32 chars: fits */
  for (int shift = 60; shift >= 0; shift -= 4) *p++ = hex[(id >> shift) & 15];
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)(p - a->sun_path));
}

int shmbus__notifier_open(const char *domain, uint64_t id, shmbus__notifier *out) {
  out->handle = -1;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return translate_errno(errno);
  struct sockaddr_un a;
  socklen_t len = notifier_addr(domain, id, &a);
  if (bind(fd, (struct sockaddr *)&a, len) != 0) {
    int r = errno == EADDRINUSE ? SHMBUS_ERR_EXISTS : translate_errno(errno);
    close(fd);
    return r;
  }
  out->handle = fd;
  return 0;
}

void shmbus__notifier_close(shmbus__notifier *n) {
  if (n->handle >= 0) close((int)n->handle);
  n->handle = -1;
}

int shmbus__notifier_fd(const shmbus__notifier *n) { return (int)n->handle; }

void shmbus__notifier_drain(shmbus__notifier *n) {
  char buf[64];
  /* Anybody may send to an abstract socket: a flood must not keep us. */
  for (int i = 0; i < 64 && recv((int)n->handle, buf, sizeof buf, MSG_DONTWAIT) >= 0; i++) {
  }
}

int shmbus__notifier_wait(shmbus__notifier *n, int64_t timeout_ns) {
  struct pollfd p = {(int)n->handle, POLLIN, 0};
  struct timespec ts;
  struct timespec *tp = relative_timeout(timeout_ns, &ts);
  int rc = ppoll(&p, 1, tp, NULL);
  return rc == 0 ? SHMBUS_ERR_TIMEDOUT : 0;
}

/* The process's sending socket, made once (a fork child shares it, which
 * is harmless: it is never bound). */
static int notify_fd = -1;

int shmbus__notify_init(void) {
  if (__atomic_load_n(&notify_fd, __ATOMIC_ACQUIRE) >= 0) return 0;
  int mine = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (mine < 0) return translate_errno(errno);
  int expected = -1;
  if (!__atomic_compare_exchange_n(&notify_fd, &expected, mine, 0, __ATOMIC_ACQ_REL,
                                   __ATOMIC_ACQUIRE))
    close(mine); /* another thread made it first */
  return 0;
}

void shmbus__notify(const char *domain, uint64_t id) {
  if (shmbus__notify_init() != 0) return;
  struct sockaddr_un a;
  socklen_t len = notifier_addr(domain, id, &a);
  static const char one = 1;
  (void)sendto(__atomic_load_n(&notify_fd, __ATOMIC_ACQUIRE), &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL,
               (struct sockaddr *)&a, len);
}

#else /* other POSIX systems */

/* The word waits of macOS (__ulock, the shared flavour, as libc++ uses for
 * std::atomic::wait) and FreeBSD (_umtx_op on an unsigned int, not the
 * private flavour): both wait on a word of shared memory like a futex.
 * Written against their system interfaces but built and tested only on
 * Linux here. Elsewhere the word is re-read every 50 us. */
#if defined(__APPLE__)
extern int __ulock_wait(uint32_t operation, void *addr, uint64_t value, uint32_t timeout_us);
extern int __ulock_wake(uint32_t operation, void *addr, uint64_t wake_value);
#define SHMBUS_UL_COMPARE_AND_WAIT_SHARED 3u
#define SHMBUS_ULF_WAKE_ALL 0x00000100u

int shmbus__word_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns) {
  /* 0 means no limit; longer waits are cut to the largest finite one. */
  uint64_t us = timeout_ns < 0 ? 0 : (uint64_t)timeout_ns / 1000 + 1;
  if (us > UINT32_MAX) us = UINT32_MAX;
  int rc = __ulock_wait(SHMBUS_UL_COMPARE_AND_WAIT_SHARED, word, expected, (uint32_t)us);
  return rc < 0 && errno == ETIMEDOUT ? SHMBUS_ERR_TIMEDOUT : 0;
}

void shmbus__word_wake(uint32_t *word) {
  __ulock_wake(SHMBUS_UL_COMPARE_AND_WAIT_SHARED | SHMBUS_ULF_WAKE_ALL, word, 0);
}
#elif defined(__FreeBSD__)
#include <sys/types.h>
#include <sys/umtx.h>

int shmbus__word_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns) {
  struct timespec ts;
  struct timespec *tp = relative_timeout(timeout_ns, &ts);
  /* A relative timespec in uaddr2 when uaddr is NULL. */
  int rc = _umtx_op(word, UMTX_OP_WAIT_UINT, expected, NULL, tp);
  return rc != 0 && errno == ETIMEDOUT ? SHMBUS_ERR_TIMEDOUT : 0;
}

void shmbus__word_wake(uint32_t *word) { _umtx_op(word, UMTX_OP_WAKE, INT32_MAX, NULL, NULL); }
#else
int shmbus__word_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns) {
  uint64_t end = timeout_ns < 0 ? UINT64_MAX : shmbus__now_ns() + (uint64_t)timeout_ns;
  while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == expected) {
    if (shmbus__now_ns() >= end) return SHMBUS_ERR_TIMEDOUT;
    shmbus__sleep_ns(50 * 1000);
  }
  return 0;
}

void shmbus__word_wake(uint32_t *word) { (void)word; }
#endif

int shmbus__notifier_open(const char *domain, uint64_t id, shmbus__notifier *out) {
  (void)domain;
  (void)id;
  out->handle = -1;
  return SHMBUS_ERR_UNSUPPORTED;
}
void shmbus__notifier_close(shmbus__notifier *n) { n->handle = -1; }
int shmbus__notifier_fd(const shmbus__notifier *n) { return (int)n->handle; }
void shmbus__notifier_drain(shmbus__notifier *n) { (void)n; }
int shmbus__notifier_wait(shmbus__notifier *n, int64_t timeout_ns) {
  (void)n;
  shmbus__sleep_ns(timeout_ns < 0 ? 1000000 : (uint64_t)timeout_ns);
  return SHMBUS_ERR_TIMEDOUT;
}
int shmbus__notify_init(void) { return 0; }
void shmbus__notify(const char *domain, uint64_t id) {
  (void)domain;
  (void)id;
}

#endif

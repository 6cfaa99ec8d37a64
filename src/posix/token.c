/* SPDX-License-Identifier: Apache-2.0 */
/* Liveness tokens (platform.h): locked files the kernel unlocks when their
 * process dies. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "posix.h"

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
  int r = shmbus__posix_object_path(root, name, path, sizeof path);
  if (r) return r;
  int named;
  int fd = shmbus__posix_open_new(root, path, &named);
  if (fd < 0) return shmbus__posix_errno(errno);
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
    r = shmbus__posix_errno(errno);
  else
    r = tokens_add(fd);
  if (r == 0 && !named && (r = shmbus__posix_name_object(root, name, fd)) != 0) tokens_remove(fd);
  if (r) {
    close(fd);
    if (named) shmbus__posix_unlink_object(root, path);
    return r;
  }
  out->handle = fd;
  return 0;
}

void shmbus__token_destroy(const shmbus__root *root, const char *name, shmbus__token *token) {
  char path[SHMBUS__ROOT_PATH_MAX + SHMBUS__OBJECT_NAME_MAX + 2];
  if (token->handle < 0 || token->owner != (int64_t)getpid()) return;
  /* Name first: nobody may find the token unlocked while we still live. */
  if (shmbus__posix_object_path(root, name, path, sizeof path) == 0)
    shmbus__posix_unlink_object(root, path);
  tokens_remove((int)token->handle);
  close((int)token->handle);
  token->handle = -1;
}

int shmbus__token_probe(const shmbus__root *root, const char *name) {
  char path[SHMBUS__ROOT_PATH_MAX + SHMBUS__OBJECT_NAME_MAX + 2];
  int r = shmbus__posix_object_path(root, name, path, sizeof path);
  if (r) return r;
  int fd = shmbus__posix_open_object(root, path, O_RDONLY, 0);
  /* A link, FIFO or directory under a token's name is no token (and never
   * blocks us). */
  if (fd < 0) {
    r = shmbus__posix_open_error(root, errno);
    return r == SHMBUS_ERR_CORRUPT ? SHMBUS_ERR_NOT_FOUND : r;
  }
  uint64_t size;
  if (shmbus__posix_regular_size(fd, &size) != 0) {
    close(fd);
    return SHMBUS_ERR_NOT_FOUND;
  }
  if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
    r = errno == EWOULDBLOCK ? SHMBUS__ALIVE : shmbus__posix_errno(errno);
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

/* SPDX-License-Identifier: Apache-2.0 */
/* The POSIX half of the test helpers (support.h): forked children, pipes,
 * /dev/shm, temporary directories, the hostile-peer helpers, watchdogs. */
#include "support.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "support_os.h"

const char *ts__objects_dir(void) { return "/dev/shm"; }

int ts_dead_tokens_stay(void) { return 1; }

int ts__objects_listable(int backend) {
  (void)backend;
  return 1;
}

void ts__remove_file(const char *path) { unlink(path); }

const char *ts__signal_name(int sig) { return strsignal(sig); }

uint32_t ts_pid(void) { return (uint32_t)getpid(); }

void ts_alarm(unsigned seconds) { alarm(seconds); }

int ts_os_handle_ready(shmbus_os_handle h, int timeout_ms) {
  struct pollfd pfd = {(int)h, POLLIN, 0};
  int r;
  do {
    r = poll(&pfd, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  return r < 0 ? -1 : r > 0;
}

/* ---- write probes --------------------------------------------------------------- */

static sigjmp_buf fault_jump;

static void on_fault(int sig) {
  (void)sig;
  siglongjmp(fault_jump, 1);
}

int ts_write_faults(volatile uint8_t *p) {
  struct sigaction sa, old_segv, old_bus;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_fault;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &old_segv);
  sigaction(SIGBUS, &sa, &old_bus);
  volatile int faulted = 0;
  if (sigsetjmp(fault_jump, 1) == 0)
    *p = *p;
  else
    faulted = 1;
  sigaction(SIGSEGV, &old_segv, NULL);
  sigaction(SIGBUS, &old_bus, NULL);
  return faulted;
}

/* ---- children registry (so that teardown can reap what a failed test left) */

#define TS_MAX_CHILDREN 64
static pid_t live_children[TS_MAX_CHILDREN];

static void register_child(pid_t pid) {
  for (int i = 0; i < TS_MAX_CHILDREN; i++) {
    if (live_children[i] == 0) {
      live_children[i] = pid;
      return;
    }
  }
}

static void unregister_child(pid_t pid) {
  for (int i = 0; i < TS_MAX_CHILDREN; i++)
    if (live_children[i] == pid) live_children[i] = 0;
}

/* Kills (by pid: only our own children) and reaps every child still
 * registered. Returns how many there were. */
int ts__reap_children(void) {
  int n = 0;
  for (int i = 0; i < TS_MAX_CHILDREN; i++) {
    pid_t pid = live_children[i];
    if (pid == 0) continue;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    live_children[i] = 0;
    n++;
  }
  return n;
}

/* ---- temporary directories ------------------------------------------------------- */

int ts__tmpdir_new(char *out, size_t cap) {
  char tmpl[] = "/tmp/shmbus-test-XXXXXX";
  if (cap < sizeof tmpl || mkdtemp(tmpl) == NULL) return -1;
  memcpy(out, tmpl, sizeof tmpl);
  return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

void ts__tmpdir_delete(const char *path) { nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* ---- children and pipes ---------------------------------------------------------- */

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

void ts__child_start(ts_child *c, ts_child_fn fn, void *arg, size_t size) {
  (void)size; /* fork copies everything */
  assert_int_equal(pipe(c->up), 0);
  assert_int_equal(pipe(c->down), 0);
  fflush(NULL); /* the child must not print the parent's buffers again */
  c->pid = fork();
  assert_true(c->pid >= 0);
  if (c->pid == 0) {
    /* cmocka's handlers would longjmp into the copy of the test runner. */
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGABRT, SIGALRM};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], SIG_DFL);
    alarm(TS_CHILD_ALARM_S);
    close_fd(&c->up[0]);
    close_fd(&c->down[1]);
    int rc = fn(c, arg);
    fflush(NULL);
    _exit(rc);
  }
  register_child(c->pid);
  close_fd(&c->up[1]);
  close_fd(&c->down[0]);
}

/* Waits for the child (flags: 0 or WNOHANG): -1 while it runs; else reaps
 * it, closes its pipes and returns its exit code or 128 + signal. */
static int reap_child(ts_child *c, int flags) {
  int status = 0;
  pid_t r;
  do {
    r = waitpid(c->pid, &status, flags);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return -1;
  unregister_child(c->pid);
  close_fd(&c->up[0]);
  close_fd(&c->down[1]);
  if (r != c->pid) return 255;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

int ts_child_wait(ts_child *c) { return reap_child(c, 0); }

int ts_send(int fd, uint64_t value) {
  const char *p = (const char *)&value;
  size_t left = sizeof value;
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    left -= (size_t)n;
  }
  return 0;
}

int ts_recv(int fd, uint64_t *value) {
  char *p = (char *)value;
  size_t left = sizeof *value;
  uint64_t deadline = ts_now_ns() + (uint64_t)TS_WAIT_MS * 1000000u;
  while (left > 0) {
    uint64_t now = ts_now_ns();
    if (now >= deadline) return -1;
    struct pollfd pfd = {fd, POLLIN, 0};
    int r = poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    ssize_t n = read(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1; /* EOF: the other side is gone */
    p += n;
    left -= (size_t)n;
  }
  return 0;
}

void ts_child_kill(ts_child *c) {
  if (c->pid > 0) kill(c->pid, SIGKILL);
}

/* ---- hostile-peer helpers ---- */

void *ts_map_object(const char *dir, const char *name, size_t *size) {
  char path[2048];
  ts_object_path(path, sizeof path, dir, name);
  *size = 0;
  int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return NULL;
  struct stat st;
  void *p = NULL;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
      p = NULL;
    else
      *size = (size_t)st.st_size;
  } else {
    errno = EINVAL;
  }
  int e = errno;
  close(fd);
  errno = e;
  return p;
}

void ts_unmap_object(void *base, size_t size) {
  if (base != NULL) munmap(base, size);
}

int ts_create_object(const char *dir, const char *name, uint64_t size) {
  char path[2048];
  ts_object_path(path, sizeof path, dir, name);
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  if (size > 0 && ftruncate(fd, (off_t)size) != 0) {
    int e = errno;
    close(fd);
    unlink(path);
    errno = e;
    return -1;
  }
  close(fd);
  return 0;
}

int ts_unlink_object(const char *dir, const char *name) {
  char path[2048];
  ts_object_path(path, sizeof path, dir, name);
  return unlink(path);
}

int ts_object_mode(const char *dir, const char *name, unsigned *mode) {
  char path[2048];
  ts_object_path(path, sizeof path, dir, name);
  struct stat st;
  if (lstat(path, &st) != 0) return -1;
  *mode = (unsigned)(st.st_mode & 0777);
  return 0;
}

int ts_setenv(const char *name, const char *value) { return setenv(name, value, 1); }

int ts_unsetenv(const char *name) { return unsetenv(name); }

void *ts_shared_alloc(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void ts_shared_free(void *p, size_t size) {
  if (p != NULL) munmap(p, size);
}

void ts_watchdog_start(ts_watchdog *w, const char *domain, const char *dir, unsigned seconds,
                       const char *what) {
  int fds[2];
  w->pid = 0;
  w->fd = -1;
  assert_int_equal(pipe(fds), 0);
  pid_t parent = getpid();
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[1]);
    uint64_t deadline = ts_now_ns() + (uint64_t)seconds * 1000000000u;
    for (;;) {
      struct pollfd pfd = {fds[0], POLLIN, 0};
      int r = poll(&pfd, 1, 100);
      /* Stopped (a byte or EOF), or the test process is gone. */
      if (r > 0 || getppid() != parent) _exit(0);
      if (ts_now_ns() >= deadline) break;
    }
    fprintf(stderr, "watchdog: %s: still running after %u s: killing the test process\n", what,
            seconds);
    kill(parent, SIGKILL);
    if (domain != NULL) ts_remove_leftovers(domain, dir);
    if (dir != NULL) {
      char *copy = strdup(dir);
      if (copy != NULL) ts_tmpdir_remove(copy);
    }
    _exit(1);
  }
  close(fds[0]);
  w->pid = pid;
  w->fd = fds[1];
}

void ts_watchdog_stop(ts_watchdog *w) {
  if (w->pid <= 0) return;
  static const char stop = 1;
  if (write(w->fd, &stop, 1) < 0) { /* EOF stops it as well */
  }
  close(w->fd);
  while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR) {
  }
  w->pid = 0;
  w->fd = -1;
}

int ts_child_poll(ts_child *c) { return reap_child(c, WNOHANG); }

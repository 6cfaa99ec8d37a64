/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Robustness: real processes (fork) that die, stop, race and run out of
 * space, against the liveness and cleanup contract of include/shmbus.h.
 *
 *   dead subscriber    a SIGKILLed subscriber holding samples with more queued
 *                      is reclaimed by shmbus_publisher_update, or by publish
 *                      alone (suspect() on overflow) within a couple of
 *                      publishes; the publisher keeps loaning and publishing
 *   dead publisher     held samples stay readable, queued ones can be taken,
 *                      a new publisher under the same name works at once
 *   restart            max_publishers 1: kill, reopen, repeatedly (also while
 *                      the subscriber only polls publishers(), and while it
 *                      holds samples of the dead ones); a process killed
 *                      inside shmbus_publisher_open, inside the service's
 *                      creation (fault injection through the space reservation hook)
 *                      and inside shmbus_publisher_close (through an
 *                      interposed shm_unlink); a killed node whose forked
 *                      helper process lives on
 *   stale objects      shmbus_domain_cleanup removes everything dead nodes
 *                      left and nothing of live ones
 *   creation race      8 processes open the same fresh service at once,
 *                      exactly one creates it; plus open/close churn
 *   exhausted space    ENOSPC by fault injection and on a real 1 MiB tmpfs
 *   permissions        object modes; another user gets PERM
 *   SIGSTOP            a stopped node is alive and keeps its slot
 *   kill loop          4 publishers x 8 subscribers, >= 1000 random SIGKILLs
 *   integrity          CRC32C and sequence checks over >= 10^7 samples, and
 *                      across the 2^64 sequence wrap
 *
 * Every child opens its own node, has an alarm() watchdog and never uses
 * cmocka (CK* checks print and exit non-zero). The parent has its own
 * watchdog (SIGALRM kills the children and exits) and bounded waits. Each
 * case uses a fresh domain "rb<pid>x<n>" and ends with shmbus_domain_cleanup
 * from a fresh node and a check that /dev/shm holds nothing of the domain.
 *
 * Environment knobs (for development; the defaults are the CI settings):
 *   RB_FILTER   cmocka test filter (glob), e.g. "*kill*"
 *   RB_KILLS    kills in the kill loop (default 1000)
 *   RB_SAMPLES  samples checked in the integrity run (default 10000000)
 *   RB_ROUNDS   rounds of the creation race (default 1000)
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "service.h" /* layout, platform.h: shmbus__sys_reserve, hooks */
#include "support.h" /* ts_crc32c */
#include "shmbus.h"

/* ======================================================================== */
/* Infrastructure                                                           */
/* ======================================================================== */

#define RB_CHILD_ALARM_S 60
#define RB_WAIT_MS 30000

/* The current test's environment (one at a time; globals so that the
 * parent's SIGALRM handler and the teardown can clean up). */
static struct {
  char domain[SHMBUS_DOMAIN_MAX + 1];
  char dir[256];     /* SHMBUS_BACKEND_DIR root when non-empty */
  char mounted[256]; /* a tmpfs we mounted (umount at teardown) */
  mode_t umask_saved;
  int umask_changed;
} rb;

static int (*rb_orig_reserve)(intptr_t, int64_t);

static uint64_t rb_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static void rb_sleep_us(uint64_t us) {
  struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static unsigned long rb_env_ulong(const char *name, unsigned long def) {
  const char *v = getenv(name);
  if (v == NULL || *v == '\0') return def;
  char *end;
  unsigned long x = strtoul(v, &end, 10);
  return *end == '\0' && x > 0 ? x : def;
}

/* xorshift64*: per-process random numbers. */
static uint64_t rb_rand_state;
static uint64_t rb_rand(void) {
  uint64_t x = rb_rand_state;
  if (x == 0) x = UINT64_C(0x9e3779b97f4a7c15) ^ ((uint64_t)getpid() << 20) ^ rb_now_ns();
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rb_rand_state = x;
  return x * UINT64_C(0x2545f4914f6cdd1d);
}
static void rb_rand_seed(uint64_t seed) { rb_rand_state = seed ? seed : 1; }

/* ---- children -------------------------------------------------------- */

#define RB_MAX_CHILDREN 64
static pid_t rb_children[RB_MAX_CHILDREN];
static volatile sig_atomic_t rb_in_child;

static void rb_track(pid_t pid) {
  for (int i = 0; i < RB_MAX_CHILDREN; i++)
    if (rb_children[i] == 0) {
      rb_children[i] = pid;
      return;
    }
}

static void rb_untrack(pid_t pid) {
  for (int i = 0; i < RB_MAX_CHILDREN; i++)
    if (rb_children[i] == pid) rb_children[i] = 0;
}

/* Kills (by pid: only our own children) and reaps what is still tracked. */
static int rb_reap_all(void) {
  int n = 0;
  for (int i = 0; i < RB_MAX_CHILDREN; i++) {
    pid_t pid = rb_children[i];
    if (pid == 0) continue;
    kill(pid, SIGCONT);
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    rb_children[i] = 0;
    n++;
  }
  return n;
}

typedef struct rb_child {
  pid_t pid;
  int up[2];   /* child -> parent */
  int down[2]; /* parent -> child */
} rb_child;

typedef int (*rb_child_fn)(rb_child *self, void *arg);

static int rb_write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

static int rb_send(int fd, uint64_t v) { return rb_write_all(fd, &v, sizeof v); }

/* Receives one 64-bit message, waiting at most timeout_ms. */
static int rb_recv(int fd, uint64_t *v, int timeout_ms) {
  char *c = (char *)v;
  size_t got = 0;
  uint64_t deadline = rb_now_ns() + (uint64_t)timeout_ms * 1000000u;
  while (got < sizeof *v) {
    uint64_t now = rb_now_ns();
    if (now >= deadline) return -1;
    struct pollfd pfd = {fd, POLLIN, 0};
    int r = poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    ssize_t n = read(fd, c + got, sizeof *v - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  return 0;
}

static int rb_csend(rb_child *self, uint64_t v) { return rb_send(self->up[1], v); }
static int rb_crecv(rb_child *self, uint64_t *v) { return rb_recv(self->down[0], v, RB_WAIT_MS); }

/* Parent side. */
#define RB_SEND(c, v) assert_int_equal(rb_send((c)->down[1], (uint64_t)(v)), 0)
#define RB_RECV(c, pv) assert_int_equal(rb_recv((c)->up[0], (pv), RB_WAIT_MS), 0)
#define RB_EXPECT(c, v)                     \
  do {                                      \
    uint64_t rb__v = ~(uint64_t)0;          \
    RB_RECV((c), &rb__v);                   \
    assert_int_equal(rb__v, (uint64_t)(v)); \
  } while (0)

static void rb_child_start(rb_child *c, rb_child_fn fn, void *arg, unsigned alarm_s) {
  assert_int_equal(pipe(c->up), 0);
  assert_int_equal(pipe(c->down), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    rb_in_child = 1;
    signal(SIGALRM, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    close(c->up[0]);
    close(c->down[1]);
    alarm(alarm_s ? alarm_s : RB_CHILD_ALARM_S);
    int rc = fn(c, arg);
    fflush(NULL);
    _exit(rc);
  }
  close(c->up[1]);
  close(c->down[0]);
  c->pid = pid;
  rb_track(pid);
}

/* Waits for the child; returns its exit code, 128 + signal, or -1 when it
 * did not end within timeout_ms (it is killed then). Closes the pipes. */
static int rb_child_wait(rb_child *c, int timeout_ms) {
  int st = 0, rc = -1;
  uint64_t deadline = rb_now_ns() + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    pid_t r = waitpid(c->pid, &st, WNOHANG);
    if (r == c->pid) {
      rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (r < 0 && errno != EINTR) break;
    if (rb_now_ns() >= deadline) {
      kill(c->pid, SIGKILL);
      while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR) {
      }
      rc = -1;
      break;
    }
    rb_sleep_us(1000);
  }
  rb_untrack(c->pid);
  if (c->up[0] >= 0) close(c->up[0]);
  if (c->down[1] >= 0) close(c->down[1]);
  c->up[0] = c->down[1] = -1;
  return rc;
}

#define rb_assert_child_ok(c)                                                     \
  do {                                                                            \
    int rb__rc = rb_child_wait((c), RB_WAIT_MS);                                  \
    if (rb__rc != 0) fail_msg("child exited with %d (-1: hung, killed)", rb__rc); \
  } while (0)

/* SIGKILLs a child and reaps it: its liveness token is unlocked afterwards. */
static void rb_kill(rb_child *c) {
  assert_int_equal(kill(c->pid, SIGKILL), 0);
  int rc = rb_child_wait(c, 10000);
  if (rc != 128 + SIGKILL)
    fail_msg("child %ld ended with %d before it was killed", (long)c->pid, rc);
}

/* Kills a group of children as one event: all are stopped first (so none
 * of them can reclaim another's ports in between), then all are killed. */
static void rb_kill_group(rb_child *c, int n) {
  for (int i = 0; i < n; i++) assert_int_equal(kill(c[i].pid, SIGSTOP), 0);
  for (int i = 0; i < n; i++) {
    int st = 0;
    assert_int_equal(waitpid(c[i].pid, &st, WUNTRACED), c[i].pid);
    if (!WIFSTOPPED(st)) fail_msg("child %ld ended before it was killed", (long)c[i].pid);
  }
  for (int i = 0; i < n; i++) rb_kill(&c[i]);
}

/* A child parks here until it is killed (or told to finish: returns 0). */
static int rb_park(rb_child *self) {
  uint64_t v;
  for (;;) {
    int r = rb_recv(self->down[0], &v, 1000);
    if (r == 0) return 0;
    if (getppid() == 1) return 1; /* orphaned */
  }
}

/* Checks inside children: print and return 1. */
#define CK(cond)                                                                                  \
  do {                                                                                            \
    if (!(cond)) {                                                                                \
      fprintf(stderr, "%s:%d: child %ld: check failed: %s\n", __FILE__, __LINE__, (long)getpid(), \
              #cond);                                                                             \
      return 1;                                                                                   \
    }                                                                                             \
  } while (0)
#define CK_ERR(actual, expected)                                                               \
  do {                                                                                         \
    int ck__r = (int)(actual), ck__e = (int)(expected);                                        \
    if (ck__r != ck__e) {                                                                      \
      fprintf(stderr, "%s:%d: child %ld: %s gave %s (%d), expected %s\n", __FILE__, __LINE__,  \
              (long)getpid(), #actual, shmbus_err_name(ck__r), ck__r, shmbus_err_name(ck__e)); \
      return 1;                                                                                \
    }                                                                                          \
  } while (0)

/* Parent-side error code assertion. */
#define assert_err(actual, expected)                                                   \
  do {                                                                                 \
    int as__r = (int)(actual), as__e = (int)(expected);                                \
    if (as__r != as__e)                                                                \
      fail_msg("%s gave %s (%d), expected %s", #actual, shmbus_err_name(as__r), as__r, \
               shmbus_err_name(as__e));                                                \
  } while (0)
#define assert_ok(actual) assert_err(actual, 0)

/* ---- objects of the domain ------------------------------------------- */

static const char *rb_objdir(void) { return rb.dir[0] ? rb.dir : "/dev/shm"; }

/* Counts the domain's objects (names starting "shmbus.<domain>."); lists
 * them into `names` when given. `only`: NULL for all, "n." for the node
 * tokens, else a suffix (".s" services, ".d" data, ".c" control). */
static size_t rb_list(const char *dir, const char *only, char *names, size_t cap) {
  char prefix[64];
  snprintf(prefix, sizeof prefix, "shmbus.%s.", rb.domain);
  if (names && cap) names[0] = '\0';
  DIR *d = opendir(dir ? dir : rb_objdir());
  if (d == NULL) return 0;
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
    const char *rest = e->d_name + strlen(prefix);
    if (only && strcmp(only, "n.") == 0 && strncmp(rest, "n.", 2) != 0) continue;
    if (only && strcmp(only, "n.") != 0 &&
        (strlen(rest) < strlen(only) || strcmp(rest + strlen(rest) - strlen(only), only) != 0))
      continue;
    n++;
    if (names && cap) {
      size_t used = strlen(names);
      if (used + 1 < cap) snprintf(names + used, cap - used, "%s%s", used ? " " : "", e->d_name);
    }
  }
  closedir(d);
  return n;
}

static size_t rb_count(const char *only) { return rb_list(NULL, only, NULL, 0); }
static size_t rb_tokens(void) { return rb_count("n."); }

static void rb_remove_leftovers(const char *dir) {
  char prefix[64];
  snprintf(prefix, sizeof prefix, "shmbus.%s.", rb.domain);
  DIR *d = opendir(dir);
  if (d == NULL) return;
  struct dirent *e;
  char path[1024];
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
}

static uint64_t rb_fnv1a64(const char *s) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    h ^= *p;
    h *= UINT64_C(0x100000001b3);
  }
  return h;
}

/* "shmbus.<domain>.<hash>.s" and the publisher segments "...p<id>.d|c". */
static void rb_service_object(char *out, size_t cap, const char *service) {
  snprintf(out, cap, "shmbus.%s.%016" PRIx64 ".s", rb.domain, rb_fnv1a64(service));
}
static void rb_publisher_object(char *out, size_t cap, const char *service, uint64_t pub_id,
                                int data) {
  snprintf(out, cap, "shmbus.%s.%016" PRIx64 ".p%" PRIx64 ".%c", rb.domain, rb_fnv1a64(service),
           pub_id, data ? 'd' : 'c');
}
static void rb_token_object(char *out, size_t cap, uint64_t node_id) {
  snprintf(out, cap, "shmbus.%s.n.%016" PRIx64, rb.domain, node_id);
}

static int rb_object_exists(const char *name) {
  char path[1024];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", rb_objdir(), name);
  return stat(path, &st) == 0;
}

static unsigned rb_object_mode(const char *name) {
  char path[1024];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", rb_objdir(), name);
  if (stat(path, &st) != 0) return 0xffffffffu;
  return (unsigned)(st.st_mode & 07777);
}

/* Maps an object read-only (NULL when absent); *size receives its length. */
static void *rb_map_ro(const char *name, size_t *size) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", rb_objdir(), name);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  struct stat st;
  void *p = NULL;
  if (fstat(fd, &st) == 0 && st.st_size > 0) {
    p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
      p = NULL;
    else
      *size = (size_t)st.st_size;
  }
  close(fd);
  return p;
}

/* Registry slot i of a kind in a mapped service segment, found through
 * the layout its configuration gives (never a hard-coded offset). */
static shmbus__port_slot *rb_slot(const uint8_t *map, int kind, uint32_t i) {
  const shmbus__service_seg *seg = (const shmbus__service_seg *)map;
  shmbus__layout l;
  if (shmbus__layout_compute(&seg->cfg, &l) != 0) return NULL;
  return (shmbus__port_slot *)(map + shmbus__layout_slot_offset(&l, &seg->cfg, kind, i));
}

/* Connection k in a mapped control segment of a service with these opts. */
static const shmbus__conn *rb_conn(const uint8_t *svc_map, const uint8_t *ctl_map, uint32_t k) {
  const shmbus__service_seg *seg = (const shmbus__service_seg *)svc_map;
  shmbus__layout l;
  if (shmbus__layout_compute(&seg->cfg, &l) != 0) return NULL;
  return (const shmbus__conn *)(ctl_map + shmbus__layout_conn_offset(&l, k));
}

static uint64_t rb_load64(const volatile uint64_t *p) {
  return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* ---- nodes and options ----------------------------------------------- */

static int rb_node_open(shmbus_node **out, unsigned mode) {
  shmbus_node_opts o = SHMBUS_NODE_OPTS_INIT;
  o.domain = rb.domain;
  if (rb.dir[0]) {
    o.backend = SHMBUS_BACKEND_DIR;
    o.root = rb.dir;
  }
  o.mode = mode;
  return shmbus_node_open(&o, out);
}

static shmbus_node *rb_node(void) {
  shmbus_node *n = NULL;
  assert_ok(rb_node_open(&n, 0));
  assert_non_null(n);
  return n;
}

/* The test's element: 64-bit words; every word of a payload derives from
 * (publisher id, sequence, index) so a reader can check each one. */
static shmbus_service_opts rb_opts(void) {
  shmbus_service_opts o = SHMBUS_SERVICE_OPTS_INIT;
  o.type.name = "rb/u64";
  o.type.size = sizeof(uint64_t);
  o.type.align = _Alignof(uint64_t);
  return o;
}

static uint64_t rb_word(uint64_t tag, uint64_t seq, uint64_t j) {
  uint64_t x = tag * UINT64_C(0x9e3779b97f4a7c15) ^ (seq + 1) * UINT64_C(0xbf58476d1ce4e5b9) ^
               (j + 1) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 29);
}

static void rb_fill(void *payload, size_t words, uint64_t tag, uint64_t seq) {
  uint64_t *p = payload;
  for (size_t j = 0; j < words; j++) p[j] = rb_word(tag, seq, j);
}

static int rb_valid(const void *payload, size_t words, uint64_t tag, uint64_t seq) {
  const uint64_t *p = payload;
  for (size_t j = 0; j < words; j++)
    if (p[j] != rb_word(tag, seq, j)) return 0;
  return 1;
}

/* Publishes one sample of `words` words tagged (tag, seq). */
static int rb_publish(shmbus_publisher *pub, size_t words, uint64_t tag, uint64_t seq) {
  void *p = NULL;
  int r = shmbus_publisher_loan(pub, words, &p);
  if (r) return r;
  rb_fill(p, words, tag, seq);
  return shmbus_publisher_publish(pub, p);
}

/* Handshakes, bounded. A subscriber acknowledges a publisher (and so is
 * counted by shmbus_publisher_update) from take or publishers. */
static int rb_wait_publishers(shmbus_subscriber *sub, int n, int timeout_ms) {
  uint64_t deadline = rb_now_ns() + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    int r = shmbus_subscriber_publishers(sub);
    if (r == n) return 0;
    if (r < 0 || rb_now_ns() >= deadline) {
      fprintf(stderr, "pid %ld: publishers() = %d, waiting for %d\n", (long)getpid(), r, n);
      return -1;
    }
    rb_sleep_us(200);
  }
}

static int rb_wait_subscribers(shmbus_publisher *pub, int n, int timeout_ms) {
  uint64_t deadline = rb_now_ns() + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    int r = shmbus_publisher_update(pub);
    if (r == n) return 0;
    if (r < 0 || rb_now_ns() >= deadline) {
      fprintf(stderr, "pid %ld: update() = %d, waiting for %d\n", (long)getpid(), r, n);
      return -1;
    }
    rb_sleep_us(200);
  }
}

/* Takes one sample, waiting at most timeout_ms for it. */
static int rb_take_wait(shmbus_subscriber *sub, shmbus_sample *s, int timeout_ms) {
  uint64_t deadline = rb_now_ns() + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    int r = shmbus_subscriber_take(sub, s);
    if (r != SHMBUS_ERR_EMPTY || rb_now_ns() >= deadline) return r;
    rb_sleep_us(100);
  }
}

/* In-process handshake of one publisher and one subscriber (both calls
 * every round: the subscriber acknowledges in publishers()). */
static void rb_pair_wait(shmbus_publisher *pub, shmbus_subscriber *sub) {
  uint64_t deadline = rb_now_ns() + UINT64_C(5000000000);
  for (;;) {
    int u = shmbus_publisher_update(pub);
    int n = shmbus_subscriber_publishers(sub);
    if (u == 1 && n == 1) return;
    if (rb_now_ns() > deadline) fail_msg("handshake: update() %d, publishers() %d", u, n);
    rb_sleep_us(200);
  }
}

/* The liveness shmbus_node_list reports for `id`: 1, 0, or -1 (not listed). */
static int rb_listed_alive(shmbus_node *node, uint64_t id) {
  shmbus_node_info info[64];
  size_t count = 0;
  assert_ok(shmbus_node_list(node, info, 64, &count));
  for (size_t i = 0; i < count && i < 64; i++)
    if (info[i].id == id) return info[i].alive;
  return -1;
}

/* ---- per-test environment, watchdog, final cleanup -------------------- */

static void rb_on_parent_alarm(int sig) {
  (void)sig;
  static const char msg[] = "test_robustness: parent watchdog expired, killing the children\n";
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
  for (int i = 0; i < RB_MAX_CHILDREN; i++)
    if (rb_children[i] > 0) {
      kill(rb_children[i], SIGCONT);
      kill(rb_children[i], SIGKILL);
    }
  if (rb.mounted[0]) umount2(rb.mounted, MNT_DETACH);
  rb_remove_leftovers("/dev/shm"); /* last resort, not async-signal-safe */
  if (rb.dir[0] && !rb.mounted[0]) {
    rb_remove_leftovers(rb.dir);
    rmdir(rb.dir);
  }
  _exit(3);
}

/* The parent's watchdog for one test. */
static void rb_watchdog(unsigned seconds) {
  signal(SIGALRM, rb_on_parent_alarm);
  alarm(seconds);
}

static int rb_setup(void **state) {
  static unsigned counter;
  (void)state;
  memset(&rb, 0, sizeof rb);
  snprintf(rb.domain, sizeof rb.domain, "rb%ldx%u", (long)getpid(), ++counter);
  if (rb_orig_reserve == NULL) rb_orig_reserve = shmbus__sys_reserve;
  return 0;
}

static int rb_setup_dir(void **state) {
  rb_setup(state);
  char tmpl[] = "/tmp/shmbus-rb-XXXXXX";
  if (mkdtemp(tmpl) == NULL) return -1;
  snprintf(rb.dir, sizeof rb.dir, "%s", tmpl);
  return 0;
}

/* Every test checks its own children's exit codes and its leftovers; this
 * only cleans up after a test that failed half-way (and says what it did). */
static int rb_teardown(void **state) {
  (void)state;
  alarm(0);
  shmbus__sys_reserve = rb_orig_reserve;
  if (rb_reap_all() > 0) print_message("teardown: killed the children the test left running\n");
  char names[2048];
  if (rb_list("/dev/shm", NULL, names, sizeof names) > 0) {
    print_message("teardown: removing leftovers in /dev/shm: %s\n", names);
    rb_remove_leftovers("/dev/shm");
  }
  if (rb.dir[0] && rb_list(rb.dir, NULL, names, sizeof names) > 0) {
    print_message("teardown: removing leftovers in %s: %s\n", rb.dir, names);
    rb_remove_leftovers(rb.dir);
  }
  if (rb.mounted[0]) {
    umount2(rb.mounted, MNT_DETACH);
    rmdir(rb.mounted);
  } else if (rb.dir[0]) {
    rmdir(rb.dir);
  }
  if (rb.umask_changed) umask(rb.umask_saved);
  memset(&rb, 0, sizeof rb);
  return 0;
}

/* The end of every test: shmbus_domain_cleanup from a fresh node, then the
 * domain must have nothing left (the fresh node's token goes with it).
 * Returns what cleanup returned. */
static int rb_finish(void) {
  shmbus_node *n = rb_node();
  int r = shmbus_domain_cleanup(n);
  shmbus_node_close(n);
  assert_true(r >= 0);
  char names[2048];
  size_t left = rb_list(NULL, NULL, names, sizeof names);
  if (left) fail_msg("%zu object(s) of domain %s left after cleanup: %s", left, rb.domain, names);
  return r;
}

/* ======================================================================== */
/* 1. Dead subscriber                                                       */
/* ======================================================================== */

typedef struct hold_arg {
  const char *service;
  shmbus_service_opts opts;
  uint32_t hold; /* samples taken and held before waiting to be killed */
  uint64_t tag;  /* the publisher's tag in payloads                    */
} hold_arg;

/* Subscriber that reports (node id, subscriber id), waits for the number of
 * samples published, takes and holds `hold` of them (checked), reports, and
 * waits to be killed. */
static int child_holding_subscriber(rb_child *self, void *varg) {
  const hold_arg *a = varg;
  shmbus_node *node = NULL;
  CK_ERR(rb_node_open(&node, 0), 0);
  shmbus_subscriber *sub = NULL;
  CK_ERR(shmbus_subscriber_open(node, a->service, &a->opts, &sub), 0);
  CK(rb_wait_publishers(sub, 1, 10000) == 0);
  CK(rb_csend(self, shmbus_node_id(node)) == 0);
  CK(rb_csend(self, shmbus_subscriber_id(sub)) == 0);
  uint64_t n = 0;
  CK(rb_crecv(self, &n) == 0);
  CK(n >= a->hold);
  shmbus_sample held[64];
  CK(a->hold <= 64);
  for (uint32_t i = 0; i < a->hold; i++) {
    CK_ERR(rb_take_wait(sub, &held[i], 10000), 0);
    CK(held[i].sequence == i);
    CK(rb_valid(held[i].payload, held[i].bytes / 8, a->tag, i));
  }
  CK(rb_csend(self, a->hold) == 0);
  return rb_park(self) == 0 ? 0 : 1;
}

/* A pool-sized workout: max_loans loans at once, every one published, for
 * `rounds` rounds. No LOAN_LIMIT, no CORRUPT. */
static void rb_loan_rounds(shmbus_publisher *pub, uint32_t max_loans, uint32_t rounds,
                           uint64_t *seq) {
  void *p[64];
  assert_true(max_loans <= 64);
  for (uint32_t r = 0; r < rounds; r++) {
    for (uint32_t j = 0; j < max_loans; j++) {
      int e = shmbus_publisher_loan(pub, 1, &p[j]);
      if (e) fail_msg("round %u: loan %u of %u gave %s", r, j, max_loans, shmbus_err_name(e));
    }
    for (uint32_t j = 0; j < max_loans; j++) {
      rb_fill(p[j], 1, 1, *seq);
      ++*seq;
      assert_ok(shmbus_publisher_publish(pub, p[j]));
    }
  }
}

/* Dead-subscriber service: 1 subscriber slot, depth 4, held 3, loans 3:
 * a pool of 1 x (4 + 3) + 3 = 10 chunks. */
static shmbus_service_opts dead_sub_opts(int overflow) {
  shmbus_service_opts o = rb_opts();
  o.max_publishers = 1;
  o.max_subscribers = 1;
  o.queue_depth = 4;
  o.max_held = 3;
  o.max_loans = 3;
  o.overflow = overflow;
  return o;
}
enum { DEAD_SUB_POOL = 1 * (4 + 3) + 3 };

/* After the dead subscriber is gone, a new one takes its (only) slot and
 * receives everything. */
static void rb_new_subscriber_served(shmbus_node *node, shmbus_publisher *pub, const char *service,
                                     const shmbus_service_opts *o, uint64_t *seq) {
  shmbus_subscriber *sub = NULL;
  assert_ok(shmbus_subscriber_open(node, service, o, &sub));
  rb_pair_wait(pub, sub);
  for (int i = 0; i < 100; i++) {
    assert_ok(rb_publish(pub, 1, 1, *seq));
    shmbus_sample s;
    assert_ok(shmbus_subscriber_take(sub, &s));
    assert_int_equal(s.sequence, *seq);
    assert_true(rb_valid(s.payload, 1, 1, *seq));
    assert_ok(shmbus_subscriber_release(sub, &s));
    ++*seq;
  }
  assert_int_equal(shmbus_subscriber_lost(sub), 0);
  shmbus_subscriber_close(sub);
}

/* A subscriber process holding max_held samples with two more queued is
 * SIGKILLed; shmbus_publisher_update reclaims it; the publisher then loans
 * max_loans at once and publishes 10x the pool. */
static void test_dead_subscriber_update(void **state) {
  (void)state;
  rb_watchdog(60);
  const char *svc = "dead-sub";
  shmbus_service_opts o = dead_sub_opts(SHMBUS_OVERFLOW_DEFAULT);
  shmbus_node *node = rb_node();
  shmbus_publisher *pub = NULL;
  assert_ok(shmbus_publisher_open(node, svc, &o, &pub));
  hold_arg a = {svc, o, 3, shmbus_publisher_id(pub)};
  rb_child c;
  rb_child_start(&c, child_holding_subscriber, &a, 0);
  assert_int_equal(rb_wait_subscribers(pub, 1, 10000), 0);
  uint64_t child_node = 0, child_sub = 0;
  RB_RECV(&c, &child_node);
  RB_RECV(&c, &child_sub);
  uint64_t seq = 0;
  for (; seq < 3; seq++) assert_ok(rb_publish(pub, 1, a.tag, seq));
  RB_SEND(&c, 3);
  RB_EXPECT(&c, 3);                                                 /* holds 0..2 */
  for (; seq < 5; seq++) assert_ok(rb_publish(pub, 1, a.tag, seq)); /* 3, 4 queued */
  assert_int_equal(rb_listed_alive(node, child_node), 1);

  rb_kill(&c);
  assert_int_equal(rb_listed_alive(node, child_node), 0);
  assert_int_equal(rb_listed_alive(node, shmbus_node_id(node)), 1);
  assert_int_equal(shmbus_publisher_update(pub), 0); /* sweeps the dead port */

  rb_loan_rounds(pub, o.max_loans, 10 * DEAD_SUB_POOL, &seq);
  rb_new_subscriber_served(node, pub, svc, &o, &seq);
  rb_loan_rounds(pub, o.max_loans, 10 * DEAD_SUB_POOL, &seq);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  assert_true(rb_finish() >= 1); /* the dead node's token */
}

/* The same, but nobody calls update: the dead subscriber's queue overflows
 * and publish's suspect() probe must reclaim it. Observed exactly through
 * the service's registry slot (freed by the reap) and the connection's
 * sub_id in the control segment (cleared when the publisher unbinds it and
 * takes its chunks back). */
static void run_dead_subscriber_overflow(int overflow) {
  rb_watchdog(60);
  const char *svc = overflow == SHMBUS_OVERFLOW_DROP_NEWEST ? "dead-sub-newest" : "dead-sub-oldest";
  shmbus_service_opts o = dead_sub_opts(overflow);
  shmbus_node *node = rb_node();
  shmbus_publisher *pub = NULL;
  assert_ok(shmbus_publisher_open(node, svc, &o, &pub));
  hold_arg a = {svc, o, 3, shmbus_publisher_id(pub)};
  rb_child c;
  rb_child_start(&c, child_holding_subscriber, &a, 0);
  assert_int_equal(rb_wait_subscribers(pub, 1, 10000), 0);
  uint64_t child_node = 0, child_sub = 0;
  RB_RECV(&c, &child_node);
  RB_RECV(&c, &child_sub);
  uint64_t seq = 0;
  for (; seq < 3; seq++) assert_ok(rb_publish(pub, 1, a.tag, seq));
  RB_SEND(&c, 3);
  RB_EXPECT(&c, 3);                                                 /* holds 0..2 */
  for (; seq < 5; seq++) assert_ok(rb_publish(pub, 1, a.tag, seq)); /* queue: 2 of 4 */

  char name[128];
  size_t svc_size = 0, ctl_size = 0;
  rb_service_object(name, sizeof name, svc);
  const uint8_t *svc_map = rb_map_ro(name, &svc_size);
  assert_non_null(svc_map);
  const shmbus__port_slot *sub_slot = rb_slot(svc_map, SHMBUS__SUBSCRIBER, 0);
  rb_publisher_object(name, sizeof name, svc, shmbus_publisher_id(pub), 0);
  const uint8_t *ctl_map = rb_map_ro(name, &ctl_size);
  assert_non_null(ctl_map);
  const shmbus__conn *conn = rb_conn(svc_map, ctl_map, 0);
  assert_int_equal(rb_load64(&sub_slot->word), (child_sub << 1) | 1u);
  assert_int_equal(rb_load64(&conn->sub_id), child_sub);

  rb_kill(&c);
  /* From here on: loan and publish only. Publish #2 (0-based) overflows
   * the queue (2 queued + 2 = full). */
  enum { OVERFLOWING = 2 };
  uint64_t t_overflow = 0, t_reaped = 0, t_unbound = 0, deadline = rb_now_ns() + 2000000000u;
  int reaped_at = -1, unbound_at = -1, i = 0;
  for (; rb_now_ns() < deadline; i++) {
    void *p[3];
    for (uint32_t j = 0; j < o.max_loans; j++) assert_ok(shmbus_publisher_loan(pub, 1, &p[j]));
    rb_fill(p[0], 1, a.tag, seq);
    if (i == OVERFLOWING) t_overflow = rb_now_ns();
    assert_ok(shmbus_publisher_publish(pub, p[0]));
    seq++;
    for (uint32_t j = 1; j < o.max_loans; j++) assert_ok(shmbus_publisher_discard(pub, p[j]));
    if (reaped_at < 0 && rb_load64(&sub_slot->word) == 0) {
      reaped_at = i;
      t_reaped = rb_now_ns();
    }
    if (unbound_at < 0 && rb_load64(&conn->sub_id) == 0) {
      unbound_at = i;
      t_unbound = rb_now_ns();
    }
    if (reaped_at >= 0 && unbound_at >= 0 && rb_listed_alive(node, child_node) == 0) break;
    rb_sleep_us(1000);
  }
  print_message(
      "overflow %s: slot reaped at publish %d (%.2f ms after the first overflow), "
      "chunks reclaimed at publish %d (%.2f ms)\n",
      overflow == SHMBUS_OVERFLOW_DROP_NEWEST ? "drop-newest" : "drop-oldest", reaped_at,
      reaped_at >= 0 ? (double)(t_reaped - t_overflow) / 1e6 : -1.0, unbound_at,
      unbound_at >= 0 ? (double)(t_unbound - t_overflow) / 1e6 : -1.0);
  if (reaped_at < 0 || unbound_at < 0)
    fail_msg("publish alone never reclaimed the dead subscriber (reaped at %d, unbound at %d)",
             reaped_at, unbound_at);
  /* The first overflow probes (no probe happened before it) and reaps the
   * slot, within that very publish; the next publish sees the registry
   * change and takes the chunks back (1 ms later here, by our sleep). */
  assert_int_equal(reaped_at, OVERFLOWING);
  assert_true(t_reaped - t_overflow < UINT64_C(20000000));
  assert_int_equal(unbound_at, OVERFLOWING + 1);
  assert_int_equal(rb_listed_alive(node, child_node), 0);
  assert_int_equal(rb_listed_alive(node, shmbus_node_id(node)), 1);
  munmap((void *)svc_map, svc_size);
  munmap((void *)ctl_map, ctl_size);

  rb_loan_rounds(pub, o.max_loans, 10 * DEAD_SUB_POOL, &seq);
  assert_int_equal(shmbus_publisher_update(pub), 0);
  rb_new_subscriber_served(node, pub, svc, &o, &seq);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  assert_true(rb_finish() >= 1);
}

static void test_dead_subscriber_overflow_drop_oldest(void **state) {
  (void)state;
  run_dead_subscriber_overflow(SHMBUS_OVERFLOW_DROP_OLDEST);
}

static void test_dead_subscriber_overflow_drop_newest(void **state) {
  (void)state;
  run_dead_subscriber_overflow(SHMBUS_OVERFLOW_DROP_NEWEST);
}

/* ======================================================================== */
/* 2. Dead publisher                                                        */
/* ======================================================================== */

enum { MSG_FINISH = 0xF1 };

typedef struct burst_arg {
  const char *service;
  shmbus_service_opts opts;
  int nsubs; /* subscribers to wait for before publishing       */
} burst_arg;

/* Publisher: reports (open result, publisher id, node id), waits until
 * update() counts nsubs subscribers, reports 1, publishes the number of
 * samples it is sent (full size, tagged with its id), reports 2, parks;
 * closes cleanly on MSG_FINISH. */
static int child_burst_publisher(rb_child *self, void *varg) {
  const burst_arg *a = varg;
  shmbus_node *node = NULL;
  CK_ERR(rb_node_open(&node, 0), 0);
  shmbus_publisher *pub = NULL;
  int r = shmbus_publisher_open(node, a->service, &a->opts, &pub);
  CK(rb_csend(self, (uint64_t)(int64_t)r) == 0);
  CK_ERR(r, 0);
  CK(rb_csend(self, shmbus_publisher_id(pub)) == 0);
  CK(rb_csend(self, shmbus_node_id(node)) == 0);
  CK(rb_wait_subscribers(pub, a->nsubs, 10000) == 0);
  CK(rb_csend(self, 1) == 0);
  uint64_t n = 0;
  CK(rb_crecv(self, &n) == 0);
  size_t words = a->opts.max_elements ? a->opts.max_elements : 1;
  for (uint64_t seq = 0; seq < n; seq++)
    CK_ERR(rb_publish(pub, words, shmbus_publisher_id(pub), seq), 0);
  CK(rb_csend(self, 2) == 0);
  if (rb_park(self) != 0) return 1;
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  return 0;
}

static void rb_expect_sample(shmbus_subscriber *sub, shmbus_sample *s, uint64_t pub_id,
                             uint64_t seq, size_t words) {
  assert_ok(rb_take_wait(sub, s, 5000));
  assert_int_equal(s->sequence, seq);
  assert_int_equal(s->publisher_id, pub_id);
  assert_int_equal(s->bytes, words * 8);
  assert_true(rb_valid(s->payload, words, pub_id, seq));
}

/* A publisher process is SIGKILLed after publishing 8 samples while the
 * subscriber holds two: the held payloads stay readable, the queued ones
 * can still be taken (before and after the dead publisher is swept),
 * shmbus_subscriber_publishers returns 0, and a new publisher process under
 * the same name works at once. */
static void test_dead_publisher(void **state) {
  (void)state;
  rb_watchdog(60);
  const char *svc = "dead-pub";
  shmbus_service_opts o = rb_opts();
  o.queue_depth = 8;
  o.max_held = 4;
  o.max_elements = 4;
  o.max_publishers = 2;
  shmbus_node *node = rb_node();
  shmbus_subscriber *sub = NULL;
  assert_ok(shmbus_subscriber_open(node, svc, &o, &sub));
  burst_arg a = {svc, o, 1};

  rb_child c;
  rb_child_start(&c, child_burst_publisher, &a, 0);
  uint64_t pub_a = 0, node_a = 0;
  RB_EXPECT(&c, 0);
  RB_RECV(&c, &pub_a);
  RB_RECV(&c, &node_a);
  assert_int_equal(rb_wait_publishers(sub, 1, 10000), 0);
  RB_EXPECT(&c, 1);
  RB_SEND(&c, 8);
  RB_EXPECT(&c, 2);
  shmbus_sample held[2], s;
  rb_expect_sample(sub, &held[0], pub_a, 0, 4);
  rb_expect_sample(sub, &held[1], pub_a, 1, 4);
  rb_kill(&c);
  assert_int_equal(rb_listed_alive(node, node_a), 0);

  /* Held: readable. Queued: takeable, before the sweep ... */
  for (int i = 0; i < 2; i++) assert_true(rb_valid(held[i].payload, 4, pub_a, (uint64_t)i));
  for (uint64_t seq = 2; seq < 4; seq++) {
    rb_expect_sample(sub, &s, pub_a, seq, 4);
    assert_ok(shmbus_subscriber_release(sub, &s));
  }
  /* ... and after it: publishers() sweeps the dead port and its segments. */
  assert_int_equal(shmbus_subscriber_publishers(sub), 0);
  char name[128];
  rb_publisher_object(name, sizeof name, svc, pub_a, 1);
  assert_false(rb_object_exists(name));
  rb_publisher_object(name, sizeof name, svc, pub_a, 0);
  assert_false(rb_object_exists(name));
  for (uint64_t seq = 4; seq < 8; seq++) {
    rb_expect_sample(sub, &s, pub_a, seq, 4);
    assert_ok(shmbus_subscriber_release(sub, &s));
  }
  assert_err(shmbus_subscriber_take(sub, &s), SHMBUS_ERR_EMPTY);
  for (int i = 0; i < 2; i++) {
    assert_true(rb_valid(held[i].payload, 4, pub_a, (uint64_t)i));
    assert_ok(shmbus_subscriber_release(sub, &held[i]));
  }

  /* A new publisher under the same name: works at once. */
  rb_child d;
  rb_child_start(&d, child_burst_publisher, &a, 0);
  uint64_t pub_b = 0, node_b = 0;
  RB_EXPECT(&d, 0);
  RB_RECV(&d, &pub_b);
  RB_RECV(&d, &node_b);
  assert_true(pub_b != pub_a);
  assert_int_equal(rb_wait_publishers(sub, 1, 10000), 0);
  RB_EXPECT(&d, 1);
  RB_SEND(&d, 8);
  RB_EXPECT(&d, 2);
  for (uint64_t seq = 0; seq < 8; seq++) {
    rb_expect_sample(sub, &s, pub_b, seq, 4);
    assert_ok(shmbus_subscriber_release(sub, &s));
  }
  assert_err(shmbus_subscriber_take(sub, &s), SHMBUS_ERR_EMPTY);
  assert_int_equal(shmbus_subscriber_lost(sub), 0);
  RB_SEND(&d, MSG_FINISH);
  rb_assert_child_ok(&d);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  assert_true(rb_finish() >= 1);
}

/* ======================================================================== */
/* 3. Restart                                                               */
/* ======================================================================== */

/* max_publishers 1: a publisher process is killed, a new one opens the
 * same service at once (the open sweeps the dead slot), many times over;
 * first with nobody else on the service (the dead publisher was its only
 * user), then with a live subscriber that receives from each generation.
 * The service goes away with its last live user. */
static void test_restart_single_publisher(void **state) {
  (void)state;
  rb_watchdog(120);
  shmbus_service_opts o = rb_opts();
  o.max_publishers = 1;
  o.queue_depth = 4;
  char name[128];

  /* Phase 1: no other user. */
  burst_arg a = {"restart-alone", o, 0};
  rb_service_object(name, sizeof name, a.service);
  rb_child c;
  for (int gen = 0; gen < 5; gen++) {
    rb_child_start(&c, child_burst_publisher, &a, 0);
    RB_EXPECT(&c, 0); /* not PORT_LIMIT: the dead slot was swept */
    uint64_t id = 0, node_id = 0;
    RB_RECV(&c, &id);
    RB_RECV(&c, &node_id);
    RB_EXPECT(&c, 1);
    RB_SEND(&c, 3);
    RB_EXPECT(&c, 2);
    if (gen < 4) {
      rb_kill(&c);
      assert_true(rb_object_exists(name)); /* kept by the dead user */
    } else {
      RB_SEND(&c, MSG_FINISH);
      rb_assert_child_ok(&c);
    }
  }
  /* The last clean close removed the service: the dead users were dropped. */
  assert_false(rb_object_exists(name));
  assert_int_equal(rb_count(NULL) - rb_tokens(), 0);

  /* Phase 2: a live subscriber receives from every generation. */
  burst_arg b = {"restart-sub", o, 1};
  shmbus_node *node = rb_node();
  shmbus_subscriber *sub = NULL;
  assert_ok(shmbus_subscriber_open(node, b.service, &o, &sub));
  for (int gen = 0; gen < 10; gen++) {
    rb_child_start(&c, child_burst_publisher, &b, 0);
    RB_EXPECT(&c, 0);
    uint64_t id = 0, node_id = 0;
    RB_RECV(&c, &id);
    RB_RECV(&c, &node_id);
    assert_int_equal(rb_wait_publishers(sub, 1, 10000), 0);
    RB_EXPECT(&c, 1);
    RB_SEND(&c, 3);
    RB_EXPECT(&c, 2);
    for (uint64_t seq = 0; seq < 3; seq++) {
      shmbus_sample s;
      rb_expect_sample(sub, &s, id, seq, 1);
      assert_ok(shmbus_subscriber_release(sub, &s));
    }
    if (gen < 9) {
      rb_kill(&c);
      assert_int_equal(shmbus_subscriber_publishers(sub), 0);
      rb_publisher_object(name, sizeof name, b.service, id, 1);
      assert_false(rb_object_exists(name));
    } else {
      RB_SEND(&c, MSG_FINISH);
      rb_assert_child_ok(&c);
    }
  }
  assert_int_equal(shmbus_subscriber_lost(sub), 0);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  assert_int_equal(rb_count(NULL) - rb_tokens(), 0);
  assert_true(rb_finish() >= 9); /* the dead tokens */
}

/* Publisher processes of a max_publishers 1 service are killed and
 * restarted one after the other; the subscriber waits for each new one the
 * documented way, polling shmbus_subscriber_publishers ("after looking for
 * new ones and freeing the slots of ports whose nodes died"), without
 * taking (the dead ones published nothing). It must see every new one. */
static void test_restart_seen_by_publishers_poll(void **state) {
  (void)state;
  rb_watchdog(60);
  shmbus_service_opts o = rb_opts();
  o.max_publishers = 1;
  burst_arg a = {"restart-polled", o, 1};
  shmbus_node *node = rb_node();
  shmbus_subscriber *sub = NULL;
  assert_ok(shmbus_subscriber_open(node, a.service, &o, &sub));
  rb_child c;
  uint64_t id = 0, node_id = 0;
  int gen = 0, blocked = 0;
  for (; gen < 4; gen++) {
    rb_child_start(&c, child_burst_publisher, &a, 0);
    RB_EXPECT(&c, 0);
    RB_RECV(&c, &id);
    RB_RECV(&c, &node_id);
    if (rb_wait_publishers(sub, 1, 2000) != 0) {
      blocked = 1;
      break;
    }
    RB_EXPECT(&c, 1);
    if (gen == 3) break;
    rb_kill(&c);
    assert_int_equal(shmbus_subscriber_publishers(sub), 0);
  }
  print_message("publishers() polling across publisher restarts: publisher #%d %s\n", gen + 1,
                blocked ? "NOT seen" : "seen (all four)");
  if (blocked) {
    /* One take (nothing is queued) retires the drained sources. */
    shmbus_sample s;
    assert_err(shmbus_subscriber_take(sub, &s), SHMBUS_ERR_EMPTY);
    assert_int_equal(rb_wait_publishers(sub, 1, 5000), 0);
    RB_EXPECT(&c, 1);
  }
  RB_SEND(&c, 1);
  RB_EXPECT(&c, 2);
  shmbus_sample s;
  rb_expect_sample(sub, &s, id, 0, 1);
  assert_ok(shmbus_subscriber_release(sub, &s));
  RB_SEND(&c, MSG_FINISH);
  rb_assert_child_ok(&c);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  assert_true(rb_finish() >= 1);
  if (blocked)
    fail_msg(
        "shmbus_subscriber_publishers never sees publisher #%d (max_publishers 1): the "
        "dead publishers' drained sources are retired only by take() (src/subscriber.c), "
        "so with 2 x max_publishers of them connect_source finds no free source; one "
        "take() unblocks it",
        gen + 1);
}

/* The same restarts while the subscriber keeps one sample of each killed
 * publisher (max_held 4: holding up to 4 is legitimate). It must connect to
 * every new, live publisher. */
static void test_restart_while_holding_samples(void **state) {
  (void)state;
  rb_watchdog(60);
  shmbus_service_opts o = rb_opts();
  o.max_publishers = 1;
  o.max_held = 4;
  burst_arg a = {"restart-holding", o, 1};
  shmbus_node *node = rb_node();
  shmbus_subscriber *sub = NULL;
  assert_ok(shmbus_subscriber_open(node, a.service, &o, &sub));
  shmbus_sample held[4], s;
  int nheld = 0, blocked_at = -1;
  rb_child c;
  uint64_t id = 0, node_id = 0;
  for (int gen = 0; gen < 4; gen++) {
    rb_child_start(&c, child_burst_publisher, &a, 0);
    RB_EXPECT(&c, 0);
    RB_RECV(&c, &id);
    RB_RECV(&c, &node_id);
    /* Take (nothing queued yet) and poll: both look for publishers. */
    uint64_t deadline = rb_now_ns() + UINT64_C(2000000000);
    int n = 0;
    while ((n = shmbus_subscriber_publishers(sub)) != 1 && rb_now_ns() < deadline) {
      assert_err(shmbus_subscriber_take(sub, &s), SHMBUS_ERR_EMPTY);
      rb_sleep_us(500);
    }
    if (n != 1) {
      blocked_at = gen;
      break;
    }
    RB_EXPECT(&c, 1);
    RB_SEND(&c, 1);
    RB_EXPECT(&c, 2);
    rb_expect_sample(sub, &held[nheld++], id, 0, 1);
    if (gen == 3) break;
    rb_kill(&c);
    assert_int_equal(shmbus_subscriber_publishers(sub), 0);
  }
  if (blocked_at >= 0)
    print_message("holding %d samples of %d dead publishers: publisher #%d NOT connected\n", nheld,
                  nheld, blocked_at + 1);
  else
    print_message("holding samples of dead publishers: every new publisher was connected\n");
  for (int i = 0; i < nheld; i++) {
    assert_true(rb_valid(held[i].payload, 1, held[i].publisher_id, 0));
    assert_ok(shmbus_subscriber_release(sub, &held[i]));
  }
  if (blocked_at >= 0) { /* recovers once they are released (and a take retires them) */
    assert_err(shmbus_subscriber_take(sub, &s), SHMBUS_ERR_EMPTY);
    assert_int_equal(rb_wait_publishers(sub, 1, 5000), 0);
    RB_EXPECT(&c, 1);
    RB_SEND(&c, 1);
    RB_EXPECT(&c, 2);
    rb_expect_sample(sub, &s, id, 0, 1);
    assert_ok(shmbus_subscriber_release(sub, &s));
  }
  RB_SEND(&c, MSG_FINISH);
  rb_assert_child_ok(&c);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  assert_true(rb_finish() >= 1);
  if (blocked_at >= 0)
    fail_msg(
        "a subscriber that holds samples of %d dead publishers (max_publishers 1, "
        "max_held 4) cannot connect to the new live publisher #%d until it releases "
        "them: src/subscriber.c keeps a GONE source while its samples are held and has "
        "only 2 x max_publishers sources (connect_source: PORT_LIMIT)",
        nheld, blocked_at + 1);
}

/* ---- killed in the middle of an open (fault injection) ---------------- */

static int rb_block_fd = -1;

/* A space reservation that never returns: tells the parent, then sleeps
 * until the process is killed. */
static int blocking_reserve(intptr_t object, int64_t length) {
  (void)object;
  (void)length;
  uint64_t v = 0xB10C;
  if (rb_write_all(rb_block_fd, &v, sizeof v) != 0) _exit(1);
  for (;;) pause();
}

/* Opens a publisher whose first space reservation blocks: the process is
 * then inside shmbus_publisher_open, between claiming a slot and marking it
 * ready (or, for a fresh service, inside the service's creation). */
static int child_blocked_publisher(rb_child *self, void *varg) {
  const burst_arg *a = varg;
  shmbus_node *node = NULL;
  CK_ERR(rb_node_open(&node, 0), 0);
  rb_block_fd = self->up[1];
  shmbus__sys_reserve = blocking_reserve;
  shmbus_publisher *pub = NULL;
  (void)shmbus_publisher_open(node, a->service, &a->opts, &pub);
  fprintf(stderr, "child %ld: the blocking reservation returned\n", (long)getpid());
  return 1;
}

/* Runs a publisher child that must open the service at once; returns the
 * open's result (it is closed cleanly on success). */
static int rb_restart_result(const burst_arg *a) {
  rb_child c;
  rb_child_start(&c, child_burst_publisher, (void *)a, 0);
  uint64_t r = 0;
  RB_RECV(&c, &r);
  if ((int)(int64_t)r == 0) {
    uint64_t id, node_id;
    RB_RECV(&c, &id);
    RB_RECV(&c, &node_id);
    RB_EXPECT(&c, 1);
    RB_SEND(&c, 3);
    RB_EXPECT(&c, 2);
    RB_SEND(&c, MSG_FINISH);
    rb_assert_child_ok(&c);
  } else {
    rb_child_wait(&c, RB_WAIT_MS);
  }
  return (int)(int64_t)r;
}

/* A publisher process is SIGKILLed inside shmbus_publisher_open, after it
 * claimed the only publisher slot and created its data segment but before
 * the slot was marked ready. DESIGN.md: "Restarting a process with the same
 * service name just works" and cleanup removes what dead participants left
 * behind. */
static void test_killed_while_opening_publisher(void **state) {
  (void)state;
  rb_watchdog(60);
  shmbus_service_opts o = rb_opts();
  o.max_publishers = 1;
  burst_arg a = {"killed-opening", o, 0};
  shmbus_node *node = rb_node();
  shmbus_subscriber *sub = NULL; /* keeps the service: the child only adds a publisher */
  assert_ok(shmbus_subscriber_open(node, a.service, &o, &sub));

  rb_child c;
  rb_child_start(&c, child_blocked_publisher, &a, 0);
  RB_EXPECT(&c, 0xB10C);
  char name[128];
  size_t size = 0;
  rb_service_object(name, sizeof name, a.service);
  const uint8_t *map = rb_map_ro(name, &size);
  assert_non_null(map);
  const shmbus__port_slot *slot = rb_slot(map, SHMBUS__PUBLISHER, 0);
  uint64_t word = rb_load64(&slot->word);
  print_message("publisher slot while its owner is blocked in open: word %#" PRIx64
                " (claimed, %s)\n",
                word, (word & 1u) ? "ready" : "not ready");
  rb_kill(&c);

  /* Restart: must not be PORT_LIMIT. */
  int restart = rb_restart_result(&a);
  print_message("publisher restart after a kill inside open: %s\n", shmbus_err_name(restart));
  int swept = shmbus_subscriber_publishers(sub);
  (void)swept;
  word = rb_load64(&slot->word);
  munmap((void *)map, size);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);

  /* Cleanup must then remove everything. */
  shmbus_node *n2 = rb_node();
  int cleaned = shmbus_domain_cleanup(n2);
  shmbus_node_close(n2);
  char names[2048];
  size_t left = rb_list(NULL, NULL, names, sizeof names);
  print_message(
      "after every live port closed and shmbus_domain_cleanup (returned %d): %zu "
      "object(s) left: %s\n",
      cleaned, left, names);
  if (restart != 0 || left != 0)
    fail_msg(
        "a publisher killed inside shmbus_publisher_open (slot claimed, not ready) is "
        "never reclaimed: restart gave %s (slot word %#" PRIx64
        "), %zu object(s) "
        "left after cleanup: %s",
        shmbus_err_name(restart), word, left, names);
}

/* The first port of a service is SIGKILLed while it creates the service
 * segment (inside the space reservation, before the segment is initialised
 * and named). A restarted process must be able to open the service at once,
 * and nothing may be left. */
static void test_killed_while_creating_service(void **state) {
  (void)state;
  rb_watchdog(60);
  shmbus_service_opts o = rb_opts();
  burst_arg a = {"killed-creating", o, 0};
  rb_child c;
  rb_child_start(&c, child_blocked_publisher, &a, 0);
  RB_EXPECT(&c, 0xB10C);
  rb_kill(&c);
  char name[128];
  rb_service_object(name, sizeof name, a.service);
  /* Where the OS creates unnamed objects the name never appeared. */
  print_message("service object of the killed creator: %s\n",
                rb_object_exists(name) ? "named, unfinished" : "never named");

  uint64_t t0 = rb_now_ns();
  int restart = rb_restart_result(&a);
  double restart_s = (double)(rb_now_ns() - t0) / 1e9;
  print_message("restart after the creator died mid-creation: %s after %.2f s\n",
                shmbus_err_name(restart), restart_s);
  shmbus_node *n2 = rb_node();
  int cleaned = shmbus_domain_cleanup(n2);
  shmbus_node_close(n2);
  int exists_after_cleanup = rb_object_exists(name);
  int restart2 = exists_after_cleanup ? rb_restart_result(&a) : 0;
  n2 = rb_node();
  shmbus_domain_cleanup(n2);
  shmbus_node_close(n2);
  char names[2048];
  size_t left = rb_list(NULL, NULL, names, sizeof names);
  print_message("cleanup returned %d; unfinished service object %s; left: %s\n", cleaned,
                exists_after_cleanup ? "still there" : "removed", names);
  if (restart != 0 || exists_after_cleanup || left != 0)
    fail_msg(
        "a service whose creator died before initialising it blocks the name for good: "
        "open gave %s (after %.2f s), cleanup %s it, a second restart gave %s; left: %s",
        shmbus_err_name(restart), restart_s, exists_after_cleanup ? "did not remove" : "removed",
        shmbus_err_name(restart2), names);
}

/* A node that only lives: a node open, no ports, until told to go. */
static int child_idle_node(rb_child *self, void *varg) {
  (void)varg;
  shmbus_node *node = NULL;
  CK_ERR(rb_node_open(&node, 0), 0);
  CK(rb_csend(self, 1) == 0);
  uint64_t m;
  CK(rb_crecv(self, &m) == 0);
  shmbus_node_close(node);
  return 0;
}

/* The two windows of a port's open that a death can end in: between
 * counting itself as a user of the service and claiming its slot (a use
 * without a slot: no sweep can judge it), and between claiming a slot and
 * writing its word there (a slot its dead node owns, with word 0). Both are
 * forged here, in a service whose real ports then close. The first sweep
 * frees the slot and drops its use whoever else lives; the leaked use
 * keeps the service while another node lives (it could be such an opener,
 * alive), and cleanup removes it once the cleaning node is alone. */
static void test_cleanup_leaked_use(void **state) {
  (void)state;
  rb_watchdog(60);
  shmbus_service_opts o = rb_opts();
  shmbus_node *node = rb_node();
  shmbus_subscriber *sub = NULL;
  assert_ok(shmbus_subscriber_open(node, "leaked-use", &o, &sub));
  char name[128];
  rb_service_object(name, sizeof name, "leaked-use");
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", rb_objdir(), name);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  assert_true(fd >= 0);
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  uint8_t *map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  assert_true(map != MAP_FAILED);
  shmbus__service_seg *seg = (shmbus__service_seg *)map;
  shmbus__port_slot *pub_slot = rb_slot(map, SHMBUS__PUBLISHER, 0);
  __atomic_fetch_add(&seg->dyn.users, 2, __ATOMIC_SEQ_CST); /* both windows counted a use */
  const uint64_t dead_node = UINT64_C(0x0badc0de0badc0de);  /* no token: a dead node */
  __atomic_store_n(&pub_slot->node_id, dead_node, __ATOMIC_SEQ_CST); /* word never written */
  shmbus_subscriber_close(sub);
  assert_true(rb_object_exists(name));

  rb_child c;
  rb_child_start(&c, child_idle_node, NULL, 0);
  RB_EXPECT(&c, 1);
  int r = shmbus_domain_cleanup(node);
  print_message("cleanup while another node lives: %d, service %s\n", r,
                rb_object_exists(name) ? "kept" : "removed");
  assert_true(rb_object_exists(name));
  assert_true(r >= 1); /* the dead node's slot */
  assert_int_equal(__atomic_load_n(&pub_slot->node_id, __ATOMIC_SEQ_CST), 0);
  assert_int_equal(__atomic_load_n(&pub_slot->word, __ATOMIC_SEQ_CST), 0);
  RB_SEND(&c, 1);
  assert_int_equal(rb_child_wait(&c, RB_WAIT_MS), 0);

  r = shmbus_domain_cleanup(node);
  print_message("cleanup alone: %d, service %s\n", r, rb_object_exists(name) ? "kept" : "removed");
  assert_false(rb_object_exists(name));
  assert_true(r >= 1); /* the service */
  munmap(map, (size_t)st.st_size);
  shmbus_node_close(node);
  char names[1024];
  if (rb_list(NULL, NULL, names, sizeof names) != 0) fail_msg("left: %s", names);
}

/* What a death leaves in a registry slot, in each window of the slot
 * protocol (layout.h): a claimant or leaver killed with the slot owned and
 * its word 0, a reaper killed after marking the slot (the dead port's use
 * not yet dropped in both), and a word without an owner (only a peer
 * writes one; no use counted). With one subscriber slot, each would block
 * every open with PORT_LIMIT unless the next claimant's sweep frees it;
 * the service lives on and goes with its last port (uses balance). */
static void test_slot_left_by_death(void **state) {
  (void)state;
  rb_watchdog(60);
  shmbus_service_opts o = rb_opts();
  o.max_subscribers = 1;
  shmbus_node *node = rb_node();
  shmbus_publisher *pub = NULL;
  assert_ok(shmbus_publisher_open(node, "slot-death", &o, &pub));
  char name[128];
  rb_service_object(name, sizeof name, "slot-death");
  size_t size = 0;
  uint8_t *map = ts_map_object(rb.dir[0] ? rb.dir : NULL, name, &size);
  assert_non_null(map);
  shmbus__service_seg *seg = (shmbus__service_seg *)map;
  shmbus__port_slot *slot = rb_slot(map, SHMBUS__SUBSCRIBER, 0);
  static const struct { /* 0x0badc0de0badc0de: no token, a dead node */
    const char *what;
    uint64_t owner, word, uses;
  } left[] = {
      {"claimant or leaver killed", UINT64_C(0x0badc0de0badc0de), 0, 1},
      {"reaper killed", SHMBUS__SLOT_REAPER | UINT64_C(0x0badc0de0badc0de),
       (UINT64_C(77) << 1) | 1u, 1},
      {"word without an owner", 0, UINT64_C(78) << 1, 0},
  };
  for (size_t i = 0; i < sizeof left / sizeof left[0]; i++) {
    __atomic_fetch_add(&seg->dyn.users, left[i].uses, __ATOMIC_SEQ_CST);
    __atomic_store_n(&slot->node_id, left[i].owner, __ATOMIC_SEQ_CST);
    __atomic_store_n(&slot->word, left[i].word, __ATOMIC_SEQ_CST);
    shmbus_subscriber *sub = NULL;
    int r = shmbus_subscriber_open(node, "slot-death", &o, &sub);
    if (r != 0) fail_msg("%s: open gave %s", left[i].what, shmbus_strerror(r));
    uint64_t seq = i + 1;
    rb_pair_wait(pub, sub);
    assert_ok(shmbus_publisher_send_copy(pub, &seq, sizeof seq));
    shmbus_sample got;
    assert_ok(shmbus_subscriber_take(sub, &got));
    assert_int_equal(*(const uint64_t *)got.payload, seq);
    assert_ok(shmbus_subscriber_release(sub, &got));
    shmbus_subscriber_close(sub);
    assert_int_equal(__atomic_load_n(&slot->node_id, __ATOMIC_SEQ_CST), 0);
    assert_int_equal(__atomic_load_n(&slot->word, __ATOMIC_SEQ_CST), 0);
  }
  ts_unmap_object(map, size);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  assert_int_equal(rb_list(NULL, NULL, NULL, 0), 0);
}

/* Makes an uninitialised object of `size` zero bytes named `name`, last
 * modified `age_s` seconds ago: what a creator killed before initialising
 * leaves where objects cannot be created unnamed. */
static void rb_forge_uninitialised(const char *name, off_t size, time_t age_s) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", rb_objdir(), name);
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, size), 0);
  struct timespec t[2];
  clock_gettime(CLOCK_REALTIME, &t[0]);
  t[0].tv_sec -= age_s;
  t[1] = t[0];
  assert_int_equal(futimens(fd, t), 0);
  close(fd);
}

/* Uninitialised objects (the named-creation fallback's creation window) are
 * removed by cleanup once untouched for 10 s, and kept before. */
static void test_cleanup_abandoned_uninitialised(void **state) {
  (void)state;
  rb_watchdog(60);
  char svc_old[128], svc_new[128], data_old[128];
  rb_service_object(svc_old, sizeof svc_old, "abandoned-old");
  rb_service_object(svc_new, sizeof svc_new, "abandoned-new");
  rb_publisher_object(data_old, sizeof data_old, "abandoned-old", 77, 1);
  rb_forge_uninitialised(svc_old, 4096, 20);
  rb_forge_uninitialised(data_old, 0, 20);
  rb_forge_uninitialised(svc_new, 4096, 0);
  shmbus_node *node = rb_node();
  int r = shmbus_domain_cleanup(node);
  print_message("cleanup: %d; old service %s, old data segment %s, fresh service %s\n", r,
                rb_object_exists(svc_old) ? "kept" : "removed",
                rb_object_exists(data_old) ? "kept" : "removed",
                rb_object_exists(svc_new) ? "kept" : "removed");
  assert_false(rb_object_exists(svc_old));
  assert_false(rb_object_exists(data_old));
  assert_true(rb_object_exists(svc_new));
  assert_true(r >= 2);
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", rb_objdir(), svc_new);
  assert_int_equal(unlink(path), 0);
  shmbus_node_close(node);
  char names[1024];
  if (rb_list(NULL, NULL, names, sizeof names) != 0) fail_msg("left: %s", names);
}

/* ---- killed in the middle of a close (interposed shm_unlink) ---------- */

/* The test binary's own shm_unlink: the library's calls reach it first. It
 * forwards to the C library unless a child armed it, in which case the
 * first unlink of a data segment (".d") tells the parent and blocks: the
 * publisher is then inside shmbus_publisher_close, after it freed its
 * registry slot and before it dropped its use of the service. */
static volatile sig_atomic_t rb_unlink_armed;
static int rb_unlink_fd = -1;

int shm_unlink(const char *name) {
  static int (*real)(const char *);
  if (real == NULL) {
    void *sym = dlsym(RTLD_NEXT, "shm_unlink");
    memcpy(&real, &sym, sizeof real);
    if (real == NULL) {
      errno = ENOSYS;
      return -1;
    }
  }
  size_t n = strlen(name);
  if (rb_unlink_armed && n > 2 && strcmp(name + n - 2, ".d") == 0) {
    uint64_t v = 0xC105E;
    if (rb_write_all(rb_unlink_fd, &v, sizeof v) != 0) _exit(1);
    for (;;) pause();
  }
  return real(name);
}

/* A publisher that opens, publishes, and is told to close: its close
 * blocks in the interposed shm_unlink. */
static int child_closing_publisher(rb_child *self, void *varg) {
  const burst_arg *a = varg;
  shmbus_node *node = NULL;
  CK_ERR(rb_node_open(&node, 0), 0);
  shmbus_publisher *pub = NULL;
  CK_ERR(shmbus_publisher_open(node, a->service, &a->opts, &pub), 0);
  for (uint64_t seq = 0; seq < 3; seq++) CK_ERR(rb_publish(pub, 1, 2, seq), 0);
  CK(rb_csend(self, shmbus_publisher_id(pub)) == 0);
  uint64_t go;
  CK(rb_crecv(self, &go) == 0);
  rb_unlink_fd = self->up[1];
  rb_unlink_armed = 1;
  shmbus_publisher_close(pub);
  fprintf(stderr, "child %ld: close returned through an armed shm_unlink\n", (long)getpid());
  return 1;
}

/* A publisher process is SIGKILLed inside shmbus_publisher_close, after it
 * freed its slot and before it dropped its use of the service (the window
 * is its segment removal). Its service is now used by nobody: cleanup must
 * remove it, and a later publisher's clean close must too. */
static void test_killed_while_closing_publisher(void **state) {
  (void)state;
  rb_watchdog(60);
  if (rb.dir[0]) skip(); /* the DIR backend unlinks with unlink(), not interposed */
  burst_arg a = {"killed-closing", rb_opts(), 0};
  rb_child c;
  rb_child_start(&c, child_closing_publisher, &a, 0);
  uint64_t id = 0;
  RB_RECV(&c, &id);
  RB_SEND(&c, 1);
  RB_EXPECT(&c, 0xC105E);
  rb_kill(&c);
  char svc_name[128];
  rb_service_object(svc_name, sizeof svc_name, a.service);

  shmbus_node *node = rb_node();
  int cleaned = shmbus_domain_cleanup(node);
  shmbus_node_close(node);
  int after_cleanup = rb_object_exists(svc_name);
  /* A new publisher comes and goes cleanly: the last user leaving must
   * remove the service. */
  int restart = rb_restart_result(&a);
  int after_restart = rb_object_exists(svc_name);
  node = rb_node();
  shmbus_domain_cleanup(node);
  shmbus_node_close(node);
  char names[2048];
  size_t left = rb_list(NULL, NULL, names, sizeof names);
  print_message(
      "publisher killed inside close: cleanup returned %d, service %s after cleanup, "
      "restart %s, service %s after the restarted publisher closed; left: %s\n",
      cleaned, after_cleanup ? "still there" : "removed", shmbus_err_name(restart),
      after_restart ? "still there" : "removed", names);
  assert_ok(restart);
  if (after_cleanup || after_restart || left)
    fail_msg(
        "a publisher killed inside shmbus_publisher_close leaks its use of the service: "
        "the service object is never removed (after cleanup: %s; after a later clean "
        "close: %s); left: %s",
        after_cleanup ? "present" : "gone", after_restart ? "present" : "gone", names);
}

/* ---- a forked helper and the liveness token --------------------------- */

/* Opens a node and a publisher, then forks a helper process (no exec, no
 * shmbus calls: a worker, say) that sleeps; reports node id, publisher id
 * and the helper's pid, and waits to be killed. */
static int child_forking_publisher(rb_child *self, void *varg) {
  const burst_arg *a = varg;
  shmbus_node *node = NULL;
  CK_ERR(rb_node_open(&node, 0), 0);
  shmbus_publisher *pub = NULL;
  CK_ERR(shmbus_publisher_open(node, a->service, &a->opts, &pub), 0);
  CK(rb_csend(self, shmbus_node_id(node)) == 0);
  CK(rb_csend(self, shmbus_publisher_id(pub)) == 0);
  /* The helper says it runs: fork's child handlers (the library closes
   * its tokens there) have run by then. Until they have, the helper does
   * share the token, and a test that killed the parent at once would see
   * the node alive for that instant. */
  int ready[2];
  CK(pipe(ready) == 0);
  pid_t helper = fork();
  CK(helper >= 0);
  if (helper == 0) {
    alarm(30);
    char one = 1;
    if (write(ready[1], &one, 1) != 1) _exit(1);
    for (;;) pause();
  }
  char got;
  CK(read(ready[0], &got, 1) == 1);
  close(ready[0]);
  close(ready[1]);
  CK(rb_csend(self, (uint64_t)helper) == 0);
  return rb_park(self) == 0 ? 0 : 1;
}

/* A publisher process that had forked a helper is SIGKILLed; the helper
 * lives on. include/shmbus.h: the token is unlocked "when the process
 * dies, however it dies". The node must be reported dead and its
 * publisher reclaimed while the helper still runs. */
static void test_forked_helper_keeps_node_alive(void **state) {
  (void)state;
  rb_watchdog(60);
  burst_arg a = {"forked-helper", rb_opts(), 0};
  shmbus_node *node = rb_node();
  shmbus_subscriber *sub = NULL;
  assert_ok(shmbus_subscriber_open(node, a.service, &a.opts, &sub));
  rb_child c;
  rb_child_start(&c, child_forking_publisher, &a, 0);
  uint64_t node_id = 0, pub_id = 0, helper = 0;
  RB_RECV(&c, &node_id);
  RB_RECV(&c, &pub_id);
  RB_RECV(&c, &helper);
  rb_track((pid_t)helper); /* ours (this process is a subreaper): teardown kills it */
  assert_int_equal(rb_wait_publishers(sub, 1, 10000), 0);
  rb_kill(&c);
  assert_int_equal(kill((pid_t)helper, 0), 0); /* the helper lives */
  int alive = rb_listed_alive(node, node_id);
  int pubs = shmbus_subscriber_publishers(sub);
  print_message(
      "publisher process killed, its forked helper alive: node listed %s, "
      "publishers() = %d\n",
      alive == 1   ? "ALIVE"
      : alive == 0 ? "dead"
                   : "absent",
      pubs);
  /* Now the helper goes too. */
  kill((pid_t)helper, SIGKILL);
  while (waitpid((pid_t)helper, NULL, 0) < 0 && errno == EINTR) {
  }
  rb_untrack((pid_t)helper);
  int alive_after = rb_listed_alive(node, node_id);
  int pubs_after = shmbus_subscriber_publishers(sub);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  assert_true(rb_finish() >= 1);
  assert_int_equal(alive_after, 0);
  assert_int_equal(pubs_after, 0);
  if (alive != 0 || pubs != 0)
    fail_msg(
        "a node whose process died is reported alive (%d) and its publisher kept "
        "(publishers() = %d) for as long as a process it forked lives: the flock on the "
        "token is shared with the fork",
        alive, pubs);
}

/* ======================================================================== */
/* 4. Stale objects                                                         */
/* ======================================================================== */

typedef struct stale_port {
  int sub; /* 0 publisher, 1 subscriber */
  const char *service;
} stale_port;

typedef struct stale_arg {
  int nports;
  stale_port ports[4];
  shmbus_service_opts opts;
} stale_arg;

/* Opens its ports, reports its node id, then publishes / takes and holds
 * every millisecond; reports 1 after 20 rounds; runs until killed. */
static int child_stale(rb_child *self, void *varg) {
  const stale_arg *a = varg;
  shmbus_node *node = NULL;
  CK_ERR(rb_node_open(&node, 0), 0);
  shmbus_publisher *pubs[4] = {0};
  shmbus_subscriber *subs[4] = {0};
  for (int i = 0; i < a->nports; i++) {
    const char *svc = a->ports[i].service;
    if (a->ports[i].sub)
      CK_ERR(shmbus_subscriber_open(node, svc, &a->opts, &subs[i]), 0);
    else
      CK_ERR(shmbus_publisher_open(node, svc, &a->opts, &pubs[i]), 0);
  }
  CK(rb_csend(self, shmbus_node_id(node)) == 0);
  uint64_t seq = 0;
  for (int round = 0;; round++) {
    for (int i = 0; i < a->nports; i++) {
      if (pubs[i]) {
        CK(shmbus_publisher_update(pubs[i]) >= 0);
        CK_ERR(rb_publish(pubs[i], 1, 5, seq++), 0);
      } else {
        shmbus_sample s;
        CK(shmbus_subscriber_publishers(subs[i]) >= 0);
        int r = shmbus_subscriber_take(subs[i], &s); /* keeps what it takes */
        CK(r == 0 || r == SHMBUS_ERR_EMPTY || r == SHMBUS_ERR_HOLD_LIMIT);
      }
    }
    if (round == 20) CK(rb_csend(self, 1) == 0);
    rb_sleep_us(1000);
  }
}

/* Children with publishers and subscribers on three services are all
 * SIGKILLed. shmbus_domain_cleanup from a new node reclaims every port and
 * removes every service, publisher segment and token. */
static void test_stale_objects_removed(void **state) {
  (void)state;
  rb_watchdog(60);
  shmbus_service_opts o = rb_opts();
  o.max_held = 2;
  static const char *svcs[3] = {"stale-0", "stale-1", "stale-2"};
  enum { NCHILD = 13 };
  stale_arg args[NCHILD];
  int nports = 0, k = 0;
  for (int s = 0; s < 3; s++)
    for (int j = 0; j < 4; j++) {
      args[k].nports = 1;
      args[k].ports[0].sub = j >= 2;
      args[k].ports[0].service = svcs[s];
      args[k].opts = o;
      k++;
      nports++;
    }
  /* One child with ports on all three. */
  args[k].nports = 3;
  args[k].ports[0] = (stale_port){0, svcs[0]};
  args[k].ports[1] = (stale_port){1, svcs[1]};
  args[k].ports[2] = (stale_port){0, svcs[2]};
  args[k].opts = o;
  nports += 3;
  k++;
  assert_int_equal(k, NCHILD);

  rb_child c[NCHILD];
  uint64_t ids[NCHILD];
  for (int i = 0; i < NCHILD; i++) rb_child_start(&c[i], child_stale, &args[i], 0);
  for (int i = 0; i < NCHILD; i++) RB_RECV(&c[i], &ids[i]);
  for (int i = 0; i < NCHILD; i++) RB_EXPECT(&c[i], 1);
  rb_sleep_us(50000);
  rb_kill_group(c, NCHILD);

  size_t services = rb_count(".s"), datas = rb_count(".d"), ctls = rb_count(".c"),
         tokens = rb_tokens();
  assert_int_equal(services, 3);
  assert_int_equal(datas, 8); /* 2 + 1 + 2 + 0 + 2 + 1 publishers */
  assert_int_equal(ctls, 8);
  assert_int_equal(tokens, NCHILD);

  shmbus_node *node = rb_node();
  for (int i = 0; i < NCHILD; i++) assert_int_equal(rb_listed_alive(node, ids[i]), 0);
  int r = shmbus_domain_cleanup(node);
  int expected = nports + 3 + NCHILD; /* ports reclaimed, services, tokens */
  print_message(
      "cleanup after %d killed processes returned %d (ports %d + services 3 + "
      "tokens %d = %d)\n",
      NCHILD, r, nports, NCHILD, expected);
  assert_true(r > 0);
  char names[2048];
  size_t left = rb_list(NULL, NULL, names, sizeof names);
  assert_int_equal(rb_tokens(), 1); /* ours */
  if (left != 1) fail_msg("cleanup left %zu objects: %s", left, names);
  assert_int_equal(r, expected);
  assert_int_equal(shmbus_domain_cleanup(node), 0); /* nothing more */
  shmbus_node_close(node);
  assert_int_equal(rb_finish(), 0);
}

typedef struct live_arg {
  const char *service;
  shmbus_service_opts opts;
  uint64_t n;
} live_arg;

/* Live publisher: open, wait for the subscriber, report (node id, pub id),
 * on GO publish n samples paced, checking update() keeps counting 1; report
 * n; on FINISH check update() once more and close. */
static int child_live_publisher(rb_child *self, void *varg) {
  const live_arg *a = varg;
  shmbus_node *node = NULL;
  CK_ERR(rb_node_open(&node, 0), 0);
  shmbus_publisher *pub = NULL;
  CK_ERR(shmbus_publisher_open(node, a->service, &a->opts, &pub), 0);
  CK(rb_wait_subscribers(pub, 1, 10000) == 0);
  CK(rb_csend(self, shmbus_node_id(node)) == 0);
  CK(rb_csend(self, shmbus_publisher_id(pub)) == 0);
  uint64_t go;
  CK(rb_crecv(self, &go) == 0);
  for (uint64_t seq = 0; seq < a->n; seq++) {
    CK_ERR(rb_publish(pub, 1, 9, seq), 0);
    if (seq % 64 == 63) {
      CK(shmbus_publisher_update(pub) == 1);
      rb_sleep_us(200);
    }
  }
  CK(rb_csend(self, a->n) == 0);
  uint64_t fin;
  CK(rb_crecv(self, &fin) == 0);
  CK(shmbus_publisher_update(pub) == 1);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  return 0;
}

/* Live subscriber: receives all n samples in order (received + lost == n,
 * gaps == lost), reports the received count and lost; closes on FINISH. */
static int child_live_subscriber(rb_child *self, void *varg) {
  const live_arg *a = varg;
  shmbus_node *node = NULL;
  CK_ERR(rb_node_open(&node, 0), 0);
  shmbus_subscriber *sub = NULL;
  CK_ERR(shmbus_subscriber_open(node, a->service, &a->opts, &sub), 0);
  CK(rb_wait_publishers(sub, 1, 10000) == 0);
  CK(rb_csend(self, shmbus_node_id(node)) == 0);
  uint64_t received = 0, gaps = 0, expect = 0;
  uint64_t deadline = rb_now_ns() + UINT64_C(30000000000);
  while (expect < a->n) {
    shmbus_sample s;
    int r = shmbus_subscriber_take(sub, &s);
    if (r == SHMBUS_ERR_EMPTY) {
      CK(rb_now_ns() < deadline);
      rb_sleep_us(50);
      continue;
    }
    CK_ERR(r, 0);
    CK(s.sequence >= expect);
    CK(rb_valid(s.payload, 1, 9, s.sequence));
    gaps += s.sequence - expect;
    expect = s.sequence + 1;
    received++;
    CK_ERR(shmbus_subscriber_release(sub, &s), 0);
  }
  CK(shmbus_subscriber_publishers(sub) == 1);
  CK(gaps == shmbus_subscriber_lost(sub));
  CK(rb_csend(self, received) == 0);
  CK(rb_csend(self, shmbus_subscriber_lost(sub)) == 0);
  uint64_t fin;
  CK(rb_crecv(self, &fin) == 0);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  return 0;
}

/* shmbus_domain_cleanup while a live publisher and subscriber stream, next
 * to what killed processes left (a dead publisher and subscriber on the
 * same service, a dead publisher alone on another): cleanup reclaims the
 * dead and touches nothing of the live pair, which keeps streaming
 * undisturbed through 50 cleanups. */
static void test_cleanup_spares_live(void **state) {
  (void)state;
  rb_watchdog(90);
  shmbus_service_opts o = rb_opts();
  o.queue_depth = 64;
  o.max_held = 2;
  live_arg la = {"live", o, 20000};
  stale_arg dead[3] = {{1, {{0, "live"}}, o}, {1, {{1, "live"}}, o}, {1, {{0, "other"}}, o}};
  rb_child dc[3];
  uint64_t dead_ids[3];
  for (int i = 0; i < 3; i++) rb_child_start(&dc[i], child_stale, &dead[i], 0);
  for (int i = 0; i < 3; i++) RB_RECV(&dc[i], &dead_ids[i]);
  for (int i = 0; i < 3; i++) RB_EXPECT(&dc[i], 1);
  rb_kill_group(dc, 3);

  rb_child lp, ls;
  rb_child_start(&ls, child_live_subscriber, &la, 0);
  rb_child_start(&lp, child_live_publisher, &la, 0);
  uint64_t lp_node = 0, lp_id = 0, ls_node = 0;
  RB_RECV(&ls, &ls_node);
  RB_RECV(&lp, &lp_node);
  RB_RECV(&lp, &lp_id);

  char live_names[4][128];
  rb_service_object(live_names[0], 128, "live");
  rb_publisher_object(live_names[1], 128, "live", lp_id, 1);
  rb_publisher_object(live_names[2], 128, "live", lp_id, 0);
  rb_token_object(live_names[3], 128, lp_node);
  char ls_token[128];
  rb_token_object(ls_token, sizeof ls_token, ls_node);

  shmbus_node *node = rb_node();
  RB_SEND(&lp, 1); /* stream */
  int total = 0, first = -1;
  for (int i = 0; i < 50; i++) {
    int r = shmbus_domain_cleanup(node);
    assert_true(r >= 0);
    if (first < 0) first = r;
    total += r;
    for (int j = 0; j < 4; j++)
      if (!rb_object_exists(live_names[j]))
        fail_msg("cleanup removed %s of a live node", live_names[j]);
    assert_true(rb_object_exists(ls_token));
    assert_int_equal(rb_listed_alive(node, lp_node), 1);
    assert_int_equal(rb_listed_alive(node, ls_node), 1);
    rb_sleep_us(2000);
  }
  print_message("cleanup next to a live pair: first call %d, all 50 calls %d\n", first, total);
  assert_true(first > 0);
  /* Gone: the "other" service and its dead publisher's segments, the
   * dead tokens (the live pair's opens swept the dead ports on "live").
   * Kept: "live", the live publisher's segments, the live tokens. */
  assert_int_equal(rb_count(".s"), 1);
  assert_int_equal(rb_count(".d"), 1);
  assert_int_equal(rb_count(".c"), 1);
  assert_int_equal(rb_tokens(), 3); /* live pair + ours */
  for (int i = 0; i < 3; i++) assert_int_equal(rb_listed_alive(node, dead_ids[i]), -1);

  uint64_t sent = 0, received = 0, lost = 0;
  RB_RECV(&lp, &sent);
  RB_RECV(&ls, &received);
  RB_RECV(&ls, &lost);
  print_message("live stream during cleanup: %" PRIu64 " sent, %" PRIu64 " received, %" PRIu64
                " lost\n",
                sent, received, lost);
  assert_int_equal(received + lost, sent);
  RB_SEND(&lp, MSG_FINISH);
  rb_assert_child_ok(&lp);
  RB_SEND(&ls, MSG_FINISH);
  rb_assert_child_ok(&ls);
  shmbus_node_close(node);
  assert_int_equal(rb_finish(), 0);
}

/* ======================================================================== */
/* 5. Creation race                                                         */
/* ======================================================================== */

enum { RACE_PROCS = 8 };

typedef struct race_result {
  uint64_t creator;    /* the service header's creator_node_id, seen right after open */
  uint64_t generation; /* the service instance's nonce                               */
  int32_t err;         /* the open's result                                          */
  int32_t hdr;         /* 0, or why the header could not be read                     */
} race_result;

typedef struct race_shared {
  pthread_barrier_t barrier;
  uint32_t rounds;
  uint32_t churn; /* open/close iterations of the churn phase */
  uint64_t node_id[RACE_PROCS];
  uint64_t churn_errors[RACE_PROCS];
  int32_t churn_first_error[RACE_PROCS];
  race_result res[]; /* [rounds][RACE_PROCS] */
} race_shared;

typedef struct race_arg {
  race_shared *sh;
  int index;
} race_arg;

/* Reads the creator and nonce of a service from its header through a
 * read-only mapping of the object, as an outsider would. */
static int race_read_header(const char *service, uint64_t *creator, uint64_t *generation) {
  char name[128], path[1024];
  rb_service_object(name, sizeof name, service);
  int fd;
  if (rb.dir[0]) {
    snprintf(path, sizeof path, "%s/%s", rb.dir, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
  } else {
    snprintf(path, sizeof path, "/%s", name);
    fd = shm_open(path, O_RDONLY, 0);
  }
  if (fd < 0) return 1;
  void *p = mmap(NULL, sizeof(shmbus__seg_header), PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return 2;
  const shmbus__seg_header *h = p;
  int r = 0;
  if (__atomic_load_n(&h->initialised, __ATOMIC_ACQUIRE) != SHMBUS__INITIALISED)
    r = 3;
  else if (h->magic != SHMBUS__MAGIC || h->kind != SHMBUS__SEG_SERVICE)
    r = 4;
  *creator = h->creator_node_id;
  *generation = h->generation;
  munmap(p, sizeof(shmbus__seg_header));
  return r;
}

static int child_race(rb_child *self, void *varg) {
  (void)self;
  const race_arg *a = varg;
  race_shared *sh = a->sh;
  shmbus_service_opts o = rb_opts();
  o.max_publishers = RACE_PROCS;
  o.max_subscribers = RACE_PROCS;
  shmbus_node *node = NULL;
  CK_ERR(rb_node_open(&node, 0), 0);
  sh->node_id[a->index] = shmbus_node_id(node);
  int as_pub = a->index % 2;
  char service[64];
  for (uint32_t r = 0; r < sh->rounds; r++) {
    snprintf(service, sizeof service, "race-%u", r);
    race_result *res = &sh->res[(size_t)r * RACE_PROCS + (size_t)a->index];
    shmbus_publisher *pub = NULL;
    shmbus_subscriber *sub = NULL;
    pthread_barrier_wait(&sh->barrier); /* everybody at the start line */
    res->err = as_pub ? shmbus_publisher_open(node, service, &o, &pub)
                      : shmbus_subscriber_open(node, service, &o, &sub);
    if (res->err == 0) res->hdr = race_read_header(service, &res->creator, &res->generation);
    pthread_barrier_wait(&sh->barrier); /* nobody closes before all opened */
    shmbus_publisher_close(pub);
    shmbus_subscriber_close(sub);
    if ((r + a->index) % 4 == 0) as_pub = !as_pub;
  }
  /* Churn: open and close one name as fast as possible, no barrier: opens
   * race with the last user's removal. */
  pthread_barrier_wait(&sh->barrier);
  for (uint32_t i = 0; i < sh->churn; i++) {
    shmbus_publisher *pub = NULL;
    shmbus_subscriber *sub = NULL;
    int e = ((i + (uint32_t)a->index) % 2) ? shmbus_publisher_open(node, "churn", &o, &pub)
                                           : shmbus_subscriber_open(node, "churn", &o, &sub);
    if (e != 0) {
      if (sh->churn_errors[a->index]++ == 0) sh->churn_first_error[a->index] = e;
    } else if (pub) {
      (void)rb_publish(pub, 1, 1, i);
    } else {
      shmbus_sample s;
      if (shmbus_subscriber_take(sub, &s) == 0) shmbus_subscriber_release(sub, &s);
    }
    shmbus_publisher_close(pub);
    shmbus_subscriber_close(sub);
  }
  shmbus_node_close(node);
  return 0;
}

/* 8 processes race to open the same fresh service, round after round (a
 * new name each round; publishers and subscribers mixed). Nobody may see an
 * error, and exactly one of them creates it: every racer reads the same
 * instance nonce and the same creator id, which is one of the racers'
 * node ids (a second creation would show as a second nonce). Then a churn
 * phase without barriers: open/close of one name races with removals. */
static void test_creation_race(void **state) {
  (void)state;
  rb_watchdog(400);
  assert_int_equal(rb_fnv1a64("race-0"), shmbus__hash64("race-0"));
  uint32_t rounds = (uint32_t)rb_env_ulong("RB_ROUNDS", 1000);
  size_t size = sizeof(race_shared) + (size_t)rounds * RACE_PROCS * sizeof(race_result);
  race_shared *sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(sh != MAP_FAILED);
  memset(sh, 0, size);
  sh->rounds = rounds;
  sh->churn = 2000;
  pthread_barrierattr_t ba;
  pthread_barrierattr_init(&ba);
  pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
  assert_int_equal(pthread_barrier_init(&sh->barrier, &ba, RACE_PROCS), 0);
  pthread_barrierattr_destroy(&ba);

  rb_child c[RACE_PROCS];
  race_arg args[RACE_PROCS];
  uint64_t t0 = rb_now_ns();
  for (int i = 0; i < RACE_PROCS; i++) {
    args[i] = (race_arg){sh, i};
    rb_child_start(&c[i], child_race, &args[i], 380);
  }
  int rcs[RACE_PROCS];
  for (int i = 0; i < RACE_PROCS; i++) rcs[i] = rb_child_wait(&c[i], 390 * 1000);
  double secs = (double)(rb_now_ns() - t0) / 1e9;
  for (int i = 0; i < RACE_PROCS; i++)
    if (rcs[i] != 0) fail_msg("racer %d ended with %d", i, rcs[i]);

  uint32_t bad = 0, pub_creators = 0, created_by[RACE_PROCS] = {0};
  for (uint32_t r = 0; r < rounds; r++) {
    const race_result *res = &sh->res[(size_t)r * RACE_PROCS];
    int creators = 0;
    for (int i = 0; i < RACE_PROCS; i++) {
      if (res[i].err != 0 || res[i].hdr != 0 || res[i].generation == 0 ||
          res[i].generation != res[0].generation || res[i].creator != res[0].creator) {
        if (bad++ < 10)
          print_error("round %u racer %d: open %s, header %d, nonce %#" PRIx64
                      " (racer 0: %#" PRIx64 "), creator %#" PRIx64 "\n",
                      r, i, shmbus_err_name(res[i].err), res[i].hdr, res[i].generation,
                      res[0].generation, res[i].creator);
      }
      if (sh->node_id[i] == res[0].creator) {
        creators++;
        created_by[i]++;
        if (i % 2) pub_creators++;
      }
    }
    if (creators != 1 && bad++ < 10)
      print_error("round %u: %d creators among the racers (creator %#" PRIx64 ")\n", r, creators,
                  res[0].creator);
  }
  uint64_t churn_errors = 0;
  for (int i = 0; i < RACE_PROCS; i++) {
    churn_errors += sh->churn_errors[i];
    if (sh->churn_errors[i])
      print_error("churn racer %d: %" PRIu64 " errors, first %s\n", i, sh->churn_errors[i],
                  shmbus_err_name(sh->churn_first_error[i]));
  }
  print_message(
      "creation race: %u rounds x %d processes + %u churn opens each in %.1f s; "
      "creations by racer: %u %u %u %u %u %u %u %u (%u by publishers)\n",
      rounds, RACE_PROCS, sh->churn, secs, created_by[0], created_by[1], created_by[2],
      created_by[3], created_by[4], created_by[5], created_by[6], created_by[7], pub_creators);
  pthread_barrier_destroy(&sh->barrier);
  munmap(sh, size);
  assert_int_equal(bad, 0);
  assert_int_equal(churn_errors, 0);
  assert_int_equal(rb_count(NULL), 0);
  assert_int_equal(rb_finish(), 0);
}

/* ======================================================================== */
/* 6. Exhausted space                                                       */
/* ======================================================================== */

static int fail_call; /* 0: every call fails; n: only the n-th */
static int alloc_calls;

static int enospc_reserve(intptr_t object, int64_t length) {
  alloc_calls++;
  if (fail_call == 0 || alloc_calls == fail_call) return SHMBUS_ERR_NO_SPACE;
  return rb_orig_reserve(object, length);
}

static void rb_inject_enospc(int nth) {
  fail_call = nth;
  alloc_calls = 0;
  shmbus__sys_reserve = enospc_reserve;
}

static void rb_assert_only_tokens(const char *what) {
  char names[1024];
  size_t n = rb_list(NULL, NULL, names, sizeof names);
  if (n != rb_tokens()) fail_msg("%s left objects behind: %s", what, names);
}

/* ENOSPC at each space reservation of an open (the service segment, the
 * publisher's data segment, its control segment): SHMBUS_ERR_NO_SPACE, a
 * NULL out-pointer and nothing left behind; an existing service keeps
 * working and the failed publisher's slot is free again. */
static void test_no_space_injected(void **state) {
  (void)state;
  rb_watchdog(60);
  shmbus_service_opts o = rb_opts();
  o.max_publishers = 1;
  shmbus_node *node = rb_node();
  shmbus_publisher *pub = (shmbus_publisher *)node; /* must be cleared */
  shmbus_subscriber *sub = (shmbus_subscriber *)node;

  rb_inject_enospc(0);
  assert_err(shmbus_publisher_open(node, "full", &o, &pub), SHMBUS_ERR_NO_SPACE);
  assert_null(pub);
  assert_err(shmbus_subscriber_open(node, "full", &o, &sub), SHMBUS_ERR_NO_SPACE);
  assert_null(sub);
  rb_assert_only_tokens("ENOSPC on every reservation");
  for (int nth = 1; nth <= 3; nth++) {
    rb_inject_enospc(nth);
    pub = (shmbus_publisher *)node;
    assert_err(shmbus_publisher_open(node, "full", &o, &pub), SHMBUS_ERR_NO_SPACE);
    assert_null(pub);
    assert_int_equal(alloc_calls, nth);
    char what[64];
    snprintf(what, sizeof what, "ENOSPC on reservation %d of a fresh service", nth);
    rb_assert_only_tokens(what);
  }

  /* An existing service: the publisher's own reservations fail. */
  shmbus__sys_reserve = rb_orig_reserve;
  assert_ok(shmbus_subscriber_open(node, "full", &o, &sub));
  for (int nth = 1; nth <= 2; nth++) {
    rb_inject_enospc(nth);
    pub = (shmbus_publisher *)node;
    assert_err(shmbus_publisher_open(node, "full", &o, &pub), SHMBUS_ERR_NO_SPACE);
    assert_null(pub);
    assert_int_equal(rb_count(".d") + rb_count(".c"), 0);
  }
  shmbus__sys_reserve = rb_orig_reserve;
  /* The slot (max_publishers 1) is free and the service works. */
  assert_ok(shmbus_publisher_open(node, "full", &o, &pub));
  rb_pair_wait(pub, sub);
  for (uint64_t seq = 0; seq < 10; seq++) {
    assert_ok(rb_publish(pub, 1, 3, seq));
    shmbus_sample s;
    assert_ok(shmbus_subscriber_take(sub, &s));
    assert_int_equal(s.sequence, seq);
    assert_true(rb_valid(s.payload, 1, 3, seq));
    assert_ok(shmbus_subscriber_release(sub, &s));
  }
  shmbus_publisher_close(pub);
  shmbus_subscriber_close(sub);
  rb_assert_only_tokens("closing");
  shmbus_node_close(node);
  assert_int_equal(rb_finish(), 0);
}

/* A real full file system: a 1 MiB tmpfs used as a SHMBUS_BACKEND_DIR root.
 * A service whose data segment does not fit gives NO_SPACE and leaves
 * nothing; a smaller one works. */
static void test_no_space_tmpfs(void **state) {
  (void)state;
  rb_watchdog(60);
  if (geteuid() != 0) {
    print_message("skipped: mounting a tmpfs needs root\n");
    skip();
  }
  char tmpl[] = "/tmp/shmbus-rb-tmpfs-XXXXXX";
  assert_non_null(mkdtemp(tmpl));
  if (mount("tmpfs", tmpl, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0700") != 0) {
    print_message("skipped: mount -t tmpfs failed: %s\n", strerror(errno));
    rmdir(tmpl);
    skip();
  }
  snprintf(rb.mounted, sizeof rb.mounted, "%s", tmpl);
  snprintf(rb.dir, sizeof rb.dir, "%s", tmpl);

  shmbus_node *node = rb_node();
  shmbus_service_opts big = rb_opts();
  big.type.name = "rb/block";
  big.type.size = 64 * 1024;
  big.max_subscribers = 1; /* 1 x (16 + 4) + 4 = 24 chunks of 64 KiB: 1.5 MiB */
  shmbus_publisher *pub = (shmbus_publisher *)node;
  assert_err(shmbus_publisher_open(node, "too-big", &big, &pub), SHMBUS_ERR_NO_SPACE);
  assert_null(pub);
  rb_assert_only_tokens("NO_SPACE on a full tmpfs");

  shmbus_service_opts small = big;
  small.type.name = "rb/small";
  small.type.size = 8 * 1024; /* 24 x 8 KiB: fits */
  assert_ok(shmbus_publisher_open(node, "fits", &small, &pub));
  shmbus_subscriber *sub = NULL;
  assert_ok(shmbus_subscriber_open(node, "fits", &small, &sub));
  rb_pair_wait(pub, sub);
  for (uint64_t seq = 0; seq < 100; seq++) {
    void *p = NULL;
    assert_ok(shmbus_publisher_loan(pub, 1, &p));
    rb_fill(p, 1024, 4, seq);
    assert_ok(shmbus_publisher_publish(pub, p));
    shmbus_sample s;
    assert_ok(shmbus_subscriber_take(sub, &s));
    assert_true(rb_valid(s.payload, 1024, 4, seq));
    assert_ok(shmbus_subscriber_release(sub, &s));
  }
  /* The big one still does not fit next to it. */
  shmbus_publisher *pub2 = (shmbus_publisher *)node;
  assert_err(shmbus_publisher_open(node, "too-big", &big, &pub2), SHMBUS_ERR_NO_SPACE);
  assert_null(pub2);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  assert_int_equal(rb_finish(), 0);
  /* Nothing at all is left on the file system, then unmount it. */
  DIR *d = opendir(tmpl);
  assert_non_null(d);
  struct dirent *e;
  int entries = 0;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) entries++;
  closedir(d);
  assert_int_equal(entries, 0);
  assert_int_equal(umount(tmpl), 0);
  rmdir(tmpl);
  rb.mounted[0] = '\0';
  rb.dir[0] = '\0';
}

/* ======================================================================== */
/* 7. Permissions                                                           */
/* ======================================================================== */

static void rb_set_umask(mode_t m) {
  mode_t old = umask(m);
  if (!rb.umask_changed) {
    rb.umask_saved = old;
    rb.umask_changed = 1;
  }
}

/* Opens a publisher and a subscriber on `service` from a node with `mode`
 * and checks the mode of every object they made (service, data, control,
 * token). */
static void rb_check_modes(const char *service, unsigned mode, unsigned expect) {
  shmbus_node *node = NULL;
  assert_ok(rb_node_open(&node, mode));
  shmbus_service_opts o = rb_opts();
  shmbus_publisher *pub = NULL;
  shmbus_subscriber *sub = NULL;
  assert_ok(shmbus_publisher_open(node, service, &o, &pub));
  assert_ok(shmbus_subscriber_open(node, service, &o, &sub));
  char names[4][128];
  rb_service_object(names[0], 128, service);
  rb_publisher_object(names[1], 128, service, shmbus_publisher_id(pub), 1);
  rb_publisher_object(names[2], 128, service, shmbus_publisher_id(pub), 0);
  rb_token_object(names[3], 128, shmbus_node_id(node));
  for (int i = 0; i < 4; i++) {
    unsigned m = rb_object_mode(names[i]);
    if (m != expect)
      fail_msg("%s has mode %04o, expected %04o (node mode %04o)", names[i], m, expect, mode);
  }
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
}

/* Objects are created 0600 by default and with node_opts.mode otherwise,
 * whatever the umask. */
static void test_object_modes(void **state) {
  (void)state;
  rb_watchdog(30);
  rb_set_umask(077);
  rb_check_modes("mode-default", 0, 0600);
  rb_check_modes("mode-0640", 0640, 0640);
  rb_set_umask(022);
  rb_check_modes("mode-default-022", 0, 0600);
  rb_check_modes("mode-0666", 0666, 0666);
  rb_set_umask(0);
  rb_check_modes("mode-0600-000", 0600, 0600);
  assert_int_equal(rb_finish(), 0);
}

typedef struct perm_arg {
  shmbus_service_opts opts;
  uint64_t n; /* samples to receive on the open service */
} perm_arg;

/* As user nobody: PERM on the 0600 and 0640 services (subscriber and
 * publisher), a working subscriber on the 0666 one; a cleanup that finds
 * nothing it may remove. Reports 0 after the PERM checks, then the cleanup
 * result, then the number of samples received. */
static int child_nobody(rb_child *self, void *varg) {
  const perm_arg *a = varg;
  CK(setgroups(0, NULL) == 0);
  CK(setgid(65534) == 0);
  CK(setuid(65534) == 0);
  CK(geteuid() == 65534);
  shmbus_node *node = NULL;
  CK_ERR(rb_node_open(&node, 0), 0);
  shmbus_subscriber *sub = (shmbus_subscriber *)node;
  shmbus_publisher *pub = (shmbus_publisher *)node;
  CK_ERR(shmbus_subscriber_open(node, "perm-0600", &a->opts, &sub), SHMBUS_ERR_PERM);
  CK(sub == NULL);
  CK_ERR(shmbus_publisher_open(node, "perm-0600", &a->opts, &pub), SHMBUS_ERR_PERM);
  CK(pub == NULL);
  CK_ERR(shmbus_subscriber_open(node, "perm-0640", &a->opts, &sub), SHMBUS_ERR_PERM);
  CK(rb_csend(self, 0) == 0);
  int cleaned = shmbus_domain_cleanup(node);
  CK(rb_csend(self, (uint64_t)(int64_t)cleaned) == 0);
  CK_ERR(shmbus_subscriber_open(node, "perm-0666", &a->opts, &sub), 0);
  CK(rb_wait_publishers(sub, 1, 10000) == 0);
  uint64_t got = 0;
  for (uint64_t seq = 0; seq < a->n; seq++) {
    shmbus_sample s;
    CK_ERR(rb_take_wait(sub, &s, 10000), 0);
    CK(s.sequence == seq);
    CK(rb_valid(s.payload, 1, 6, seq));
    CK_ERR(shmbus_subscriber_release(sub, &s), 0);
    got++;
  }
  CK(rb_csend(self, got) == 0);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  return 0;
}

/* Another user (nobody, 65534) gets PERM on 0600 and 0640 services, and
 * can use a 0666 one; its cleanup removes nothing of ours. Root only. */
static void test_permission_denied(void **state) {
  (void)state;
  rb_watchdog(60);
  if (geteuid() != 0) {
    print_message("skipped: switching to user nobody needs root\n");
    skip();
  }
  rb_set_umask(022);
  perm_arg a = {rb_opts(), 20};
  a.opts.queue_depth = 32; /* the 20 samples all fit */
  shmbus_node *n600 = NULL, *n640 = NULL, *n666 = NULL;
  assert_ok(rb_node_open(&n600, 0));
  assert_ok(rb_node_open(&n640, 0640));
  assert_ok(rb_node_open(&n666, 0666));
  shmbus_publisher *p600 = NULL, *p640 = NULL, *p666 = NULL;
  assert_ok(shmbus_publisher_open(n600, "perm-0600", &a.opts, &p600));
  assert_ok(shmbus_publisher_open(n640, "perm-0640", &a.opts, &p640));
  assert_ok(shmbus_publisher_open(n666, "perm-0666", &a.opts, &p666));
  size_t objects = rb_count(NULL);

  rb_child c;
  rb_child_start(&c, child_nobody, &a, 0);
  RB_EXPECT(&c, 0);
  uint64_t cleaned = 0;
  RB_RECV(&c, &cleaned);
  assert_int_equal((int)(int64_t)cleaned, 0);
  assert_true(rb_count(NULL) >= objects); /* ours, plus the child's token */
  assert_int_equal(rb_wait_subscribers(p666, 1, 10000), 0);
  for (uint64_t seq = 0; seq < a.n; seq++) assert_ok(rb_publish(p666, 1, 6, seq));
  RB_EXPECT(&c, a.n);
  rb_assert_child_ok(&c);
  assert_int_equal(rb_count(NULL), objects);
  shmbus_publisher_close(p600);
  shmbus_publisher_close(p640);
  shmbus_publisher_close(p666);
  shmbus_node_close(n600);
  shmbus_node_close(n640);
  shmbus_node_close(n666);
  assert_int_equal(rb_finish(), 0);
}

/* ======================================================================== */
/* 8. SIGSTOP                                                               */
/* ======================================================================== */

typedef struct stop_arg {
  const char *service;
  shmbus_service_opts opts;
  uint64_t n; /* the publisher's last sequence is n - 1 */
} stop_arg;

/* Receives until sequence n - 1, checking order and that the gaps add up
 * to the lost count; reports received and lost, then waits to be killed. */
static int child_stop_subscriber(rb_child *self, void *varg) {
  const stop_arg *a = varg;
  shmbus_node *node = NULL;
  CK_ERR(rb_node_open(&node, 0), 0);
  shmbus_subscriber *sub = NULL;
  CK_ERR(shmbus_subscriber_open(node, a->service, &a->opts, &sub), 0);
  CK(rb_wait_publishers(sub, 1, 10000) == 0);
  CK(rb_csend(self, shmbus_node_id(node)) == 0);
  CK(rb_csend(self, shmbus_subscriber_id(sub)) == 0);
  uint64_t expect = 0, received = 0, gaps = 0;
  while (expect < a->n) {
    shmbus_sample s;
    int r = shmbus_subscriber_take(sub, &s);
    if (r == SHMBUS_ERR_EMPTY) {
      rb_sleep_us(100);
      continue;
    }
    CK_ERR(r, 0);
    CK(s.sequence >= expect);
    CK(rb_valid(s.payload, 1, 7, s.sequence));
    gaps += s.sequence - expect;
    expect = s.sequence + 1;
    received++;
    CK_ERR(shmbus_subscriber_release(sub, &s), 0);
  }
  CK(gaps == shmbus_subscriber_lost(sub));
  CK(rb_csend(self, received) == 0);
  CK(rb_csend(self, shmbus_subscriber_lost(sub)) == 0);
  return rb_park(self) == 0 ? 0 : 1;
}

/* A SIGSTOPped subscriber process is alive: shmbus_node_list says so, its
 * slot survives update() and overflow probes, update() keeps counting it;
 * after SIGCONT it receives again (with the overflow accounted as lost);
 * after SIGKILL it is dead. */
static void test_stopped_subscriber(void **state) {
  (void)state;
  rb_watchdog(60);
  stop_arg a = {"stopped", rb_opts(), 500};
  a.opts.queue_depth = 8;
  a.opts.max_publishers = 1;
  shmbus_node *node = rb_node();
  shmbus_publisher *pub = NULL;
  assert_ok(shmbus_publisher_open(node, a.service, &a.opts, &pub));
  rb_child c;
  rb_child_start(&c, child_stop_subscriber, &a, 0);
  assert_int_equal(rb_wait_subscribers(pub, 1, 10000), 0);
  uint64_t child_node = 0, child_sub = 0;
  RB_RECV(&c, &child_node);
  RB_RECV(&c, &child_sub);
  uint64_t seq = 0;
  for (; seq < 100; seq++) {
    assert_ok(rb_publish(pub, 1, 7, seq));
    rb_sleep_us(200);
  }

  assert_int_equal(kill(c.pid, SIGSTOP), 0);
  int st = 0;
  assert_int_equal(waitpid(c.pid, &st, WUNTRACED), c.pid);
  assert_true(WIFSTOPPED(st));
  assert_int_equal(rb_listed_alive(node, child_node), 1);
  char name[128];
  size_t size = 0;
  rb_service_object(name, sizeof name, a.service);
  const uint8_t *map = rb_map_ro(name, &size);
  assert_non_null(map);
  /* Registry: max_publishers (1) publisher slots, then the subscribers'. */
  const shmbus__port_slot *slot = rb_slot(map, SHMBUS__SUBSCRIBER, 0);
  uint64_t word = (child_sub << 1) | 1u;
  assert_int_equal(rb_load64(&slot->word), word);
  /* 300 publishes over more than 300 ms: the queue (8) overflows and the
   * publisher probes the stopped node every 10 ms. */
  for (int i = 0; i < 300; i++, seq++) {
    assert_ok(rb_publish(pub, 1, 7, seq));
    if (i % 10 == 9) assert_int_equal(shmbus_publisher_update(pub), 1);
    rb_sleep_us(1000);
  }
  assert_int_equal(rb_load64(&slot->word), word);
  assert_int_equal(rb_listed_alive(node, child_node), 1);
  assert_int_equal(shmbus_publisher_update(pub), 1);

  assert_int_equal(kill(c.pid, SIGCONT), 0);
  assert_int_equal(waitpid(c.pid, &st, WCONTINUED), c.pid);
  for (; seq < a.n; seq++) {
    assert_ok(rb_publish(pub, 1, 7, seq));
    rb_sleep_us(200);
  }
  uint64_t received = 0, lost = 0;
  RB_RECV(&c, &received);
  RB_RECV(&c, &lost);
  print_message("stopped subscriber: %" PRIu64 " received, %" PRIu64 " lost of %" PRIu64 "\n",
                received, lost, a.n);
  assert_int_equal(received + lost, a.n);
  assert_true(lost >= 300 - 8 - 4); /* what did not fit while it was stopped */
  assert_int_equal(shmbus_publisher_update(pub), 1);

  rb_kill(&c);
  assert_int_equal(rb_listed_alive(node, child_node), 0);
  assert_int_equal(shmbus_publisher_update(pub), 0);
  assert_int_equal(rb_load64(&slot->word), 0);
  munmap((void *)map, size);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  assert_true(rb_finish() >= 1);
}

/* ======================================================================== */
/* 9. Kill loop                                                             */
/* ======================================================================== */

enum { KL_PUBS = 4, KL_SUBS = 8, KL_PROCS = KL_PUBS + KL_SUBS };
enum { KL_RUN = 0, KL_FINAL = 1, KL_SUBS_CLOSE = 2, KL_PUBS_CLOSE = 3 };

typedef struct kl_proc {
  uint64_t up;        /* 1 once its port is open                          */
  uint64_t progress;  /* loop iterations                                  */
  uint64_t pub_id;    /* publisher: its id                                */
  uint64_t final_ok;  /* subscriber: heard every publisher in KL_FINAL    */
  uint64_t taken;     /* subscriber: samples checked by this incarnation  */
  uint64_t gaps;      /* subscriber: sum of sequence gaps                 */
  uint64_t lost;      /* subscriber: shmbus_subscriber_lost               */
  uint64_t published; /* publisher                                        */
} kl_proc;

typedef struct kl_shared {
  int32_t phase;
  int32_t pad;
  kl_proc p[KL_PROCS];
} kl_shared;

typedef struct kl_arg {
  kl_shared *sh;
  int index;
  shmbus_service_opts opts;
} kl_arg;

#define KL_SERVICE "killloop"
#define KL_STORE(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELEASE)
#define KL_LOAD(field) __atomic_load_n(&(field), __ATOMIC_ACQUIRE)

typedef struct kl_seen {
  uint64_t id; /* 0: free */
  uint64_t last;
  uint64_t final_seen;
} kl_seen;

enum { KL_SEEN = 4096 };

static kl_seen *kl_find(kl_seen *t, uint64_t id) {
  for (uint64_t i = 0; i < KL_SEEN; i++) {
    kl_seen *e = &t[(id + i) % KL_SEEN];
    if (e->id == id || e->id == 0) return e;
  }
  return NULL;
}

/* Subscriber: takes in bursts, holds up to max_held, checks every payload
 * and that each publisher's sequence strictly increases; the alarm is
 * re-armed every iteration, so a hang of 10 s kills it (the parent sees a
 * death it did not cause). */
static int child_kl_subscriber(rb_child *self, void *varg) {
  (void)self;
  const kl_arg *a = varg;
  kl_shared *sh = a->sh;
  kl_proc *me = &sh->p[a->index];
  rb_rand_seed(rb_now_ns() ^ (uint64_t)getpid());
  static kl_seen seen[KL_SEEN];
  shmbus_node *node = NULL;
  CK_ERR(rb_node_open(&node, 0), 0);
  shmbus_subscriber *sub = NULL;
  CK_ERR(shmbus_subscriber_open(node, KL_SERVICE, &a->opts, &sub), 0);
  KL_STORE(me->up, 1);
  shmbus_sample held[16];
  uint32_t nheld = 0, max_held = a->opts.max_held;
  uint64_t taken = 0, gaps = 0;
  for (uint64_t iter = 0;; iter++) {
    alarm(10);
    int phase = KL_LOAD(sh->phase);
    KL_STORE(me->progress, iter + 1);
    if (phase >= KL_SUBS_CLOSE) break;
    for (int k = 0; k < 32; k++) {
      if (nheld == max_held) {
        CK_ERR(shmbus_subscriber_release(sub, &held[0]), 0);
        memmove(&held[0], &held[1], --nheld * sizeof held[0]);
      }
      shmbus_sample s;
      int r = shmbus_subscriber_take(sub, &s);
      if (r == SHMBUS_ERR_EMPTY) break;
      CK_ERR(r, 0);
      const uint64_t *w = s.payload;
      CK(s.bytes == 16);
      CK(w[0] == s.sequence);
      CK(w[1] == s.publisher_id);
      kl_seen *e = kl_find(seen, s.publisher_id);
      CK(e != NULL);
      if (e->id != 0) {
        uint64_t d = s.sequence - e->last; /* unsigned difference */
        if (d == 0 || d >= (UINT64_C(1) << 63)) {
          fprintf(stderr,
                  "child %ld: publisher %" PRIu64 ": sequence %" PRIu64 " after %" PRIu64 "\n",
                  (long)getpid(), s.publisher_id, s.sequence, e->last);
          return 1;
        }
        gaps += d - 1;
      }
      e->id = s.publisher_id;
      e->last = s.sequence;
      if (phase == KL_FINAL) e->final_seen++;
      taken++;
      held[nheld++] = s;
    }
    if (rb_rand() % 4 == 0) {
      for (uint32_t i = 0; i < nheld; i++) CK_ERR(shmbus_subscriber_release(sub, &held[i]), 0);
      nheld = 0;
    }
    uint64_t lost = shmbus_subscriber_lost(sub);
    KL_STORE(me->taken, taken);
    KL_STORE(me->gaps, gaps);
    KL_STORE(me->lost, lost);
    if (gaps > lost) {
      fprintf(stderr, "child %ld: gaps %" PRIu64 " > lost %" PRIu64 "\n", (long)getpid(), gaps,
              lost);
      return 1;
    }
    if (iter % 16 == 0) {
      int n = shmbus_subscriber_publishers(sub);
      CK(n >= 0 && n <= KL_PUBS);
    }
    if (phase == KL_FINAL && !KL_LOAD(me->final_ok) &&
        shmbus_subscriber_publishers(sub) == KL_PUBS) {
      int all = 1;
      for (int p = 0; p < KL_PUBS; p++) {
        kl_seen *e = kl_find(seen, KL_LOAD(sh->p[p].pub_id));
        if (e == NULL || e->id == 0 || e->final_seen == 0) all = 0;
      }
      if (all) KL_STORE(me->final_ok, 1);
    }
    rb_sleep_us(500 + rb_rand() % 500);
  }
  for (uint32_t i = 0; i < nheld; i++) CK_ERR(shmbus_subscriber_release(sub, &held[i]), 0);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  return 0;
}

/* Publisher: bursts of 1..max_loans loans at once (the last sometimes
 * discarded), update() now and then; at the end, once its subscribers are
 * gone, max_loans loans at once must work, repeatedly. */
static int child_kl_publisher(rb_child *self, void *varg) {
  (void)self;
  const kl_arg *a = varg;
  kl_shared *sh = a->sh;
  kl_proc *me = &sh->p[a->index];
  rb_rand_seed(rb_now_ns() ^ (uint64_t)getpid());
  shmbus_node *node = NULL;
  CK_ERR(rb_node_open(&node, 0), 0);
  shmbus_publisher *pub = NULL;
  CK_ERR(shmbus_publisher_open(node, KL_SERVICE, &a->opts, &pub), 0);
  uint64_t id = shmbus_publisher_id(pub), seq = 0;
  KL_STORE(me->pub_id, id);
  KL_STORE(me->up, 1);
  uint32_t max_loans = a->opts.max_loans;
  void *p[16];
  for (uint64_t iter = 0;; iter++) {
    alarm(10);
    int phase = KL_LOAD(sh->phase);
    KL_STORE(me->progress, iter + 1);
    if (phase == KL_PUBS_CLOSE) break;
    uint32_t k = 1 + (uint32_t)(rb_rand() % max_loans);
    for (uint32_t j = 0; j < k; j++) CK_ERR(shmbus_publisher_loan(pub, 2, &p[j]), 0);
    for (uint32_t j = 0; j < k; j++) {
      if (j == k - 1 && rb_rand() % 8 == 0) {
        CK_ERR(shmbus_publisher_discard(pub, p[j]), 0);
        continue;
      }
      uint64_t *w = p[j];
      w[0] = seq++;
      w[1] = id;
      CK_ERR(shmbus_publisher_publish(pub, p[j]), 0);
    }
    KL_STORE(me->published, seq);
    if (iter % 8 == 0) {
      int n = shmbus_publisher_update(pub);
      CK(n >= 0 && n <= KL_SUBS);
    }
    rb_sleep_us(300 + rb_rand() % 700);
  }
  alarm(30);
  uint64_t deadline = rb_now_ns() + UINT64_C(10000000000);
  int n;
  while ((n = shmbus_publisher_update(pub)) != 0) {
    CK(n > 0 && rb_now_ns() < deadline);
    rb_sleep_us(1000);
  }
  for (int round = 0; round < 200; round++) {
    for (uint32_t j = 0; j < max_loans; j++) CK_ERR(shmbus_publisher_loan(pub, 2, &p[j]), 0);
    for (uint32_t j = 0; j < max_loans; j++) {
      uint64_t *w = p[j];
      w[0] = seq++;
      w[1] = id;
      CK_ERR(shmbus_publisher_publish(pub, p[j]), 0);
    }
  }
  CK(shmbus_publisher_update(pub) == 0);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  return 0;
}

static void kl_start(rb_child *c, kl_arg *a) {
  memset(&a->sh->p[a->index], 0, sizeof a->sh->p[a->index]);
  rb_child_start(c, a->index < KL_PUBS ? child_kl_publisher : child_kl_subscriber, a, 60);
}

static const char *kl_role(int i) { return i < KL_PUBS ? "publisher" : "subscriber"; }

/* Fails if a process died that we did not kill. */
static void kl_check_deaths(rb_child *c, uint64_t kills) {
  for (int i = 0; i < KL_PROCS; i++) {
    int st;
    pid_t r = waitpid(c[i].pid, &st, WNOHANG);
    if (r == c[i].pid) {
      rb_untrack(c[i].pid);
      fail_msg("%s %d (pid %ld) died on its own after %" PRIu64 " kills: %s %d", kl_role(i), i,
               (long)c[i].pid, kills, WIFEXITED(st) ? "exit" : "signal",
               WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    }
  }
}

static void kl_wait_all_up(kl_shared *sh, rb_child *c, uint64_t kills) {
  uint64_t deadline = rb_now_ns() + UINT64_C(15000000000);
  for (;;) {
    int up = 0;
    for (int i = 0; i < KL_PROCS; i++) up += KL_LOAD(sh->p[i].up) != 0;
    if (up == KL_PROCS) return;
    kl_check_deaths(c, kills);
    if (rb_now_ns() > deadline) fail_msg("only %d of %d processes opened their port", up, KL_PROCS);
    rb_sleep_us(1000);
  }
}

/* 4 publisher and 8 subscriber processes on one service; a random one is
 * SIGKILLed every 0-50 ms and restarted, >= 1000 times. Nobody else ever
 * dies or hangs, every restart opens its port at once, sequences only
 * increase; at the end every subscriber hears every publisher, the
 * publishers' pools are whole once the subscribers left, and cleanup
 * leaves nothing. */
static void test_kill_loop(void **state) {
  (void)state;
  rb_watchdog(500);
  uint64_t target = rb_env_ulong("RB_KILLS", 1000);
  kl_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(sh != MAP_FAILED);
  memset(sh, 0, sizeof *sh);
  shmbus_service_opts o = rb_opts();
  o.max_publishers = KL_PUBS;
  o.max_subscribers = KL_SUBS;
  o.queue_depth = 4;
  o.max_held = 2;
  o.max_loans = 2;
  o.max_elements = 2;
  rb_rand_seed(rb_now_ns());

  rb_child c[KL_PROCS];
  kl_arg args[KL_PROCS];
  for (int i = 0; i < KL_PROCS; i++) {
    args[i] = (kl_arg){sh, i, o};
    kl_start(&c[i], &args[i]);
  }
  kl_wait_all_up(sh, c, 0);

  uint64_t t0 = rb_now_ns(), kills = 0, taken = 0, gaps = 0, lost = 0, published = 0;
  uint64_t kills_of[2] = {0, 0}, kills_early = 0;
  while (kills < target) {
    if (rb_now_ns() - t0 > UINT64_C(300000000000))
      fail_msg("only %" PRIu64 " kills in 300 s", kills);
    rb_sleep_us(rb_rand() % 50001);
    kl_check_deaths(c, kills);
    int v = (int)(rb_rand() % KL_PROCS);
    if (!KL_LOAD(sh->p[v].up)) kills_early++;
    assert_int_equal(kill(c[v].pid, SIGKILL), 0);
    int rc = rb_child_wait(&c[v], 10000);
    if (rc != 128 + SIGKILL)
      fail_msg("%s %d ended with %d before kill %" PRIu64 " reached it", kl_role(v), v, rc, kills);
    taken += sh->p[v].taken;
    gaps += sh->p[v].gaps;
    lost += sh->p[v].lost;
    published += sh->p[v].published;
    kills_of[v >= KL_PUBS]++;
    kl_start(&c[v], &args[v]);
    kills++;
  }
  double kill_secs = (double)(rb_now_ns() - t0) / 1e9;

  /* Final: no more kills; everyone up; every subscriber hears all four. */
  kl_wait_all_up(sh, c, kills);
  KL_STORE(sh->phase, KL_FINAL);
  uint64_t deadline = rb_now_ns() + UINT64_C(30000000000);
  for (;;) {
    int ok = 0;
    for (int i = KL_PUBS; i < KL_PROCS; i++) ok += KL_LOAD(sh->p[i].final_ok) != 0;
    if (ok == KL_SUBS) break;
    kl_check_deaths(c, kills);
    if (rb_now_ns() > deadline) {
      for (int i = KL_PUBS; i < KL_PROCS; i++)
        print_error("subscriber %d: final_ok %" PRIu64 ", progress %" PRIu64 "\n", i,
                    sh->p[i].final_ok, sh->p[i].progress);
      fail_msg("only %d of %d subscribers heard every publisher after the kills", ok, KL_SUBS);
    }
    rb_sleep_us(2000);
  }
  KL_STORE(sh->phase, KL_SUBS_CLOSE);
  for (int i = KL_PUBS; i < KL_PROCS; i++) {
    taken += sh->p[i].taken;
    int rc = rb_child_wait(&c[i], 15000);
    if (rc != 0) fail_msg("subscriber %d ended with %d when told to close", i, rc);
    gaps += sh->p[i].gaps;
    lost += sh->p[i].lost;
  }
  KL_STORE(sh->phase, KL_PUBS_CLOSE);
  for (int i = 0; i < KL_PUBS; i++) {
    int rc = rb_child_wait(&c[i], 30000);
    if (rc != 0) fail_msg("publisher %d ended with %d in the final pool check", i, rc);
    published += sh->p[i].published;
  }
  print_message("kill loop: %" PRIu64 " kills (%" PRIu64 " publishers, %" PRIu64
                " subscribers, %" PRIu64 " before the port was open) in %.1f s; %" PRIu64
                " published, %" PRIu64 " taken and checked, gaps %" PRIu64 " <= lost %" PRIu64 "\n",
                kills, kills_of[0], kills_of[1], kills_early, kill_secs, published, taken, gaps,
                lost);
  munmap(sh, sizeof *sh);
  int cleaned = rb_finish();
  print_message("kill loop: final cleanup removed %d\n", cleaned);
}

/* ======================================================================== */
/* 10. Integrity                                                            */
/* ======================================================================== */

/* CRC32C: ts_crc32c (support.c). */

/* A sample: this header, then `len` random bytes. The CRC covers the
 * sequence, the length and the bytes. */
typedef struct ig_hdr {
  uint64_t seq;
  uint32_t crc;
  uint32_t len;
} ig_hdr;

enum { IG_PUBS = 2, IG_SUBS = 2, IG_MAX_BYTES = 128, IG_MAX_DATA = IG_MAX_BYTES - 16 };

static uint32_t ig_crc(const ig_hdr *h, const uint8_t *data) {
  uint32_t c = ts_crc32c_update(~0u, &h->seq, 8);
  c = ts_crc32c_update(c, &h->len, 4);
  return ~ts_crc32c_update(c, data, h->len);
}

typedef struct ig_shared {
  int32_t stop;
  int32_t pad;
  uint64_t start;
  uint64_t pub_id[IG_PUBS];
  uint64_t final_seq[IG_PUBS];
  uint64_t published[IG_PUBS];
  int32_t pub_done[IG_PUBS];
  uint64_t checked[IG_SUBS];
  uint64_t gaps[IG_SUBS];
  uint64_t lost[IG_SUBS];
  uint64_t saw_high[IG_SUBS]; /* sequences from `start` up to 2^64 - 1 seen */
  uint64_t saw_low[IG_SUBS];  /* sequences seen after the wrap */
} ig_shared;

typedef struct ig_arg {
  ig_shared *sh;
  int index;
  shmbus_service_opts opts;
} ig_arg;

static int child_ig_publisher(rb_child *self, void *varg) {
  const ig_arg *a = varg;
  ig_shared *sh = a->sh;
  rb_rand_seed(rb_now_ns() ^ ((uint64_t)getpid() << 17));
  shmbus_node *node = NULL;
  CK_ERR(rb_node_open(&node, 0), 0);
  shmbus_publisher *pub = NULL;
  CK_ERR(shmbus_publisher_open(node, "integrity", &a->opts, &pub), 0);
  if (sh->start) shmbus__publisher_set_sequence(pub, sh->start);
  KL_STORE(sh->pub_id[a->index], shmbus_publisher_id(pub));
  CK(rb_wait_subscribers(pub, IG_SUBS, 10000) == 0);
  CK(rb_csend(self, 1) == 0);
  uint64_t go;
  CK(rb_crecv(self, &go) == 0);
  uint64_t seq = sh->start, n = 0;
  uint8_t data[IG_MAX_DATA + 8];
  while (!KL_LOAD(sh->stop)) {
    for (int burst = 0; burst < 64; burst++) {
      ig_hdr h;
      h.seq = seq;
      h.len = (uint32_t)(rb_rand() % (IG_MAX_DATA + 1));
      for (uint32_t j = 0; j < h.len; j += 8) {
        uint64_t r = rb_rand();
        memcpy(data + j, &r, 8);
      }
      h.crc = ig_crc(&h, data);
      void *p = NULL;
      CK_ERR(shmbus_publisher_loan(pub, sizeof h + h.len, &p), 0);
      memcpy(p, &h, sizeof h);
      memcpy((uint8_t *)p + sizeof h, data, h.len);
      CK_ERR(shmbus_publisher_publish(pub, p), 0);
      seq++;
      n++;
    }
    sched_yield();
  }
  KL_STORE(sh->final_seq[a->index], seq - 1);
  KL_STORE(sh->published[a->index], n);
  KL_STORE(sh->pub_done[a->index], 1);
  if (rb_park(self) != 0) return 1;
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  return 0;
}

/* Checks one held sample's bytes (again, at release: the publisher must
 * not have reused the chunk meanwhile). */
static int ig_check(const shmbus_sample *s) {
  ig_hdr h;
  if (s->bytes < sizeof h) return 0;
  memcpy(&h, s->payload, sizeof h);
  if (h.len != s->bytes - sizeof h || h.seq != s->sequence) return 0;
  return ig_crc(&h, (const uint8_t *)s->payload + sizeof h) == h.crc;
}

static int child_ig_subscriber(rb_child *self, void *varg) {
  const ig_arg *a = varg;
  ig_shared *sh = a->sh;
  shmbus_node *node = NULL;
  CK_ERR(rb_node_open(&node, 0), 0);
  shmbus_subscriber *sub = NULL;
  CK_ERR(shmbus_subscriber_open(node, "integrity", &a->opts, &sub), 0);
  CK(rb_wait_publishers(sub, IG_PUBS, 10000) == 0);
  CK(rb_csend(self, 1) == 0);
  uint64_t ids[IG_PUBS] = {0}, expect[IG_PUBS], last[IG_PUBS] = {0};
  int seen[IG_PUBS] = {0};
  for (int k = 0; k < IG_PUBS; k++) expect[k] = sh->start;
  uint64_t checked = 0, gaps = 0, high = 0, low = 0;
  shmbus_sample held[8];
  uint32_t nheld = 0, keep = a->opts.max_held - 1;
  uint64_t deadline = rb_now_ns() + UINT64_C(400000000000);
  for (;;) {
    shmbus_sample s;
    int r = shmbus_subscriber_take(sub, &s);
    if (r == SHMBUS_ERR_EMPTY) {
      int done = 1;
      for (int p = 0; p < IG_PUBS; p++) {
        if (!KL_LOAD(sh->pub_done[p])) {
          done = 0;
          break;
        }
        uint64_t id = sh->pub_id[p];
        int k = 0;
        while (k < IG_PUBS && ids[k] != id) k++;
        if (k == IG_PUBS || !seen[k] || last[k] != sh->final_seq[p]) done = 0;
      }
      if (done) break;
      CK(rb_now_ns() < deadline);
      sched_yield();
      continue;
    }
    CK_ERR(r, 0);
    if (!ig_check(&s)) {
      fprintf(stderr, "child %ld: bad sample seq %" PRIu64 " bytes %zu from %" PRIu64 "\n",
              (long)getpid(), s.sequence, s.bytes, s.publisher_id);
      return 1;
    }
    int k = 0;
    while (k < IG_PUBS && ids[k] != s.publisher_id && ids[k] != 0) k++;
    CK(k < IG_PUBS);
    ids[k] = s.publisher_id;
    uint64_t gap = s.sequence - expect[k]; /* unsigned: across the wrap too */
    if (gap >= (UINT64_C(1) << 62)) {
      fprintf(stderr, "child %ld: publisher %" PRIu64 " went back: %" PRIu64 " after %" PRIu64 "\n",
              (long)getpid(), s.publisher_id, s.sequence, last[k]);
      return 1;
    }
    gaps += gap;
    expect[k] = s.sequence + 1;
    last[k] = s.sequence;
    seen[k] = 1;
    if (sh->start && s.sequence >= sh->start) high++;
    if (sh->start && s.sequence < sh->start) low++; /* after the wrap */
    checked++;
    if (nheld == keep) {
      if (!ig_check(&held[0])) {
        fprintf(stderr, "child %ld: held sample seq %" PRIu64 " changed under us\n", (long)getpid(),
                held[0].sequence);
        return 1;
      }
      CK_ERR(shmbus_subscriber_release(sub, &held[0]), 0);
      memmove(&held[0], &held[1], --nheld * sizeof held[0]);
    }
    held[nheld++] = s;
    if ((checked & 4095) == 0) KL_STORE(sh->checked[a->index], checked);
  }
  for (uint32_t i = 0; i < nheld; i++) {
    CK(ig_check(&held[i]));
    CK_ERR(shmbus_subscriber_release(sub, &held[i]), 0);
  }
  uint64_t lost = shmbus_subscriber_lost(sub);
  KL_STORE(sh->checked[a->index], checked);
  KL_STORE(sh->gaps[a->index], gaps);
  KL_STORE(sh->lost[a->index], lost);
  KL_STORE(sh->saw_high[a->index], high);
  KL_STORE(sh->saw_low[a->index], low);
  if (gaps != lost) {
    fprintf(stderr, "child %ld: gaps %" PRIu64 " != lost %" PRIu64 "\n", (long)getpid(), gaps,
            lost);
    return 1;
  }
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  return 0;
}

/* 2 publisher and 2 subscriber processes; samples of random length and
 * random bytes with a CRC32C; each subscriber checks every CRC (again when
 * it releases a held sample), that each publisher's sequence numbers only
 * increase, and that the gaps add up to shmbus_subscriber_lost. Runs until
 * `target` samples were checked. */
static void run_integrity(uint64_t start, uint64_t target) {
  ig_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(sh != MAP_FAILED);
  memset(sh, 0, sizeof *sh);
  sh->start = start;
  assert_int_equal(ts_crc32c("123456789", 9), 0xE3069283u); /* the standard check value */
  shmbus_service_opts o = SHMBUS_SERVICE_OPTS_INIT;
  o.type.name = "rb/bytes";
  o.type.size = 1;
  o.type.align = 8;
  o.max_elements = IG_MAX_BYTES;
  o.max_publishers = IG_PUBS;
  o.max_subscribers = IG_SUBS;
  o.queue_depth = 256;
  o.max_held = 4;
  o.max_loans = 2;
  rb_child subs[IG_SUBS], pubs[IG_PUBS];
  ig_arg sa[IG_SUBS], pa[IG_PUBS];
  for (int i = 0; i < IG_SUBS; i++) {
    sa[i] = (ig_arg){sh, i, o};
    rb_child_start(&subs[i], child_ig_subscriber, &sa[i], 420);
  }
  for (int i = 0; i < IG_PUBS; i++) {
    pa[i] = (ig_arg){sh, i, o};
    rb_child_start(&pubs[i], child_ig_publisher, &pa[i], 420);
  }
  for (int i = 0; i < IG_SUBS; i++) RB_EXPECT(&subs[i], 1);
  for (int i = 0; i < IG_PUBS; i++) RB_EXPECT(&pubs[i], 1);
  uint64_t t0 = rb_now_ns();
  for (int i = 0; i < IG_PUBS; i++) RB_SEND(&pubs[i], 1);
  uint64_t checked = 0;
  while (checked < target) {
    rb_sleep_us(20000);
    checked = 0;
    for (int i = 0; i < IG_SUBS; i++) checked += KL_LOAD(sh->checked[i]);
    if (rb_now_ns() - t0 > UINT64_C(360000000000)) break;
    for (int i = 0; i < IG_SUBS; i++) {
      int st;
      if (waitpid(subs[i].pid, &st, WNOHANG) == subs[i].pid) {
        rb_untrack(subs[i].pid);
        fail_msg("subscriber %d ended early (%d)", i,
                 WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
      }
    }
  }
  KL_STORE(sh->stop, 1);
  for (int i = 0; i < IG_SUBS; i++) {
    int rc = rb_child_wait(&subs[i], 60000);
    if (rc != 0) fail_msg("subscriber %d ended with %d", i, rc);
  }
  double secs = (double)(rb_now_ns() - t0) / 1e9;
  for (int i = 0; i < IG_PUBS; i++) RB_SEND(&pubs[i], MSG_FINISH);
  for (int i = 0; i < IG_PUBS; i++) rb_assert_child_ok(&pubs[i]);
  uint64_t published = 0, lost = 0;
  checked = 0;
  for (int i = 0; i < IG_PUBS; i++) published += sh->published[i];
  for (int i = 0; i < IG_SUBS; i++) {
    checked += sh->checked[i];
    lost += sh->lost[i];
    assert_int_equal(sh->gaps[i], sh->lost[i]);
    /* Every sample reached each subscriber or was counted lost. */
    assert_int_equal(sh->checked[i] + sh->lost[i], published);
    if (start) {
      assert_true(sh->saw_high[i] > 0);
      assert_true(sh->saw_low[i] > 0);
    }
  }
  print_message("integrity%s: %" PRIu64 " published, %" PRIu64 " checked (CRC32C, order), %" PRIu64
                " lost, in %.1f s: %.2f M checked/s\n",
                start ? " across the 2^64 wrap" : "", published, checked, lost, secs,
                (double)checked / secs / 1e6);
  munmap(sh, sizeof *sh);
  assert_true(checked >= target);
  assert_int_equal(rb_finish(), 0);
}

static void test_integrity(void **state) {
  (void)state;
  rb_watchdog(500);
  run_integrity(0, rb_env_ulong("RB_SAMPLES", 10000000));
}

static void test_integrity_sequence_wrap(void **state) {
  (void)state;
  rb_watchdog(500);
  /* 100000 samples before the wrap (about 20 ms at the measured rate): with
   * only 1000, a subscriber descheduled for 0.2 ms saw none of them. */
  run_integrity(UINT64_MAX - 100000, rb_env_ulong("RB_SAMPLES", 10000000) / 10);
}

/* ======================================================================== */

#define RB_TEST(f) cmocka_unit_test_setup_teardown(f, rb_setup, rb_teardown)
#define RB_DIR_TEST(f) \
  { #f "_dir", f, rb_setup_dir, rb_teardown, NULL }

int main(void) {
  const char *filter = getenv("RB_FILTER");
  if (filter && *filter) cmocka_set_test_filter(filter);
  /* Orphaned grandchildren (a test's forked helpers) become ours. */
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  const struct CMUnitTest tests[] = {
      RB_TEST(test_dead_subscriber_update),
      RB_TEST(test_dead_subscriber_overflow_drop_oldest),
      RB_TEST(test_dead_subscriber_overflow_drop_newest),
      RB_TEST(test_dead_publisher),
      RB_TEST(test_restart_single_publisher),
      RB_TEST(test_restart_seen_by_publishers_poll),
      RB_TEST(test_restart_while_holding_samples),
      RB_TEST(test_killed_while_opening_publisher),
      RB_TEST(test_killed_while_creating_service),
      RB_TEST(test_killed_while_closing_publisher),
      RB_TEST(test_forked_helper_keeps_node_alive),
      RB_TEST(test_stale_objects_removed),
      RB_TEST(test_cleanup_leaked_use),
      RB_TEST(test_slot_left_by_death),
      RB_TEST(test_cleanup_abandoned_uninitialised),
      RB_TEST(test_cleanup_spares_live),
      RB_TEST(test_creation_race),
      RB_TEST(test_no_space_injected),
      RB_TEST(test_no_space_tmpfs),
      RB_TEST(test_object_modes),
      RB_TEST(test_permission_denied),
      RB_TEST(test_stopped_subscriber),
      RB_TEST(test_kill_loop),
      RB_TEST(test_integrity),
      RB_TEST(test_integrity_sequence_wrap),
      RB_DIR_TEST(test_dead_subscriber_update),
      RB_DIR_TEST(test_dead_subscriber_overflow_drop_oldest),
      RB_DIR_TEST(test_dead_publisher),
      RB_DIR_TEST(test_restart_single_publisher),
      RB_DIR_TEST(test_stale_objects_removed),
      RB_DIR_TEST(test_cleanup_leaked_use),
      RB_DIR_TEST(test_slot_left_by_death),
      RB_DIR_TEST(test_cleanup_abandoned_uninitialised),
      RB_DIR_TEST(test_cleanup_spares_live),
      RB_DIR_TEST(test_creation_race),
      RB_DIR_TEST(test_stopped_subscriber),
  };
  return cmocka_run_group_tests_name("robustness", tests, NULL, NULL) ? 1 : 0;
}

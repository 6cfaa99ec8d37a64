/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the cmocka tests (tests/test_*.c). Names start with ts_.
 *
 *   - a unique domain per test, so tests (and test binaries run in parallel
 *     by ctest) never share an object;
 *   - leak checks: the objects of a domain left in /dev/shm or in a
 *     directory-backend root (their names start with "shmbus.<domain>.");
 *   - temporary directories for SHMBUS_BACKEND_DIR;
 *   - child processes: a child runs a function in a real process with a
 *     watchdog and talks to the parent over pipes (POSIX: fork; Windows: the
 *     test program started again with CreateProcessW, support_win.c);
 *   - the standard sample type and service options of the tests.
 *
 * Rules for children: they never use cmocka's assertions (a failing one
 * would longjmp into the copy of the test runner inside the child); they use
 * TS_CHECK*, which print the failure and exit with TS_CHILD_FAILED. They open
 * their own node and ports.
 */
#ifndef SHMBUS_TEST_SUPPORT_H
#define SHMBUS_TEST_SUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#include "shmbus.h"

/* ---- error codes --------------------------------------------------------- */

/* Asserts that `actual` (an int return code) equals `expected`, naming both
 * codes on failure. */
#define ts_assert_err(actual, expected) \
  ts__assert_err((int)(actual), (int)(expected), #actual, __FILE__, __LINE__)
#define ts_assert_ok(actual) ts_assert_err(actual, SHMBUS_OK)
void ts__assert_err(int actual, int expected, const char *expr, const char *file, int line);

/* ---- domains and the per-test environment ------------------------------- */

#define TS_DOMAIN_SIZE (SHMBUS_DOMAIN_MAX + 1)

/* Writes a domain unique to this process and call: "t<pid>x<counter>". */
void ts_unique_domain(char out[TS_DOMAIN_SIZE]);

/* What a test runs on: a fresh domain and a backend. `dir` is NULL for
 * SHMBUS_BACKEND_SHM, else the temporary directory in dir_buf, removed at
 * teardown. Self-contained (ts_child_start on Windows copies it): copy one
 * with ts_env_copy, which points the copy's dir at its own dir_buf. */
#define TS_DIR_MAX 512
typedef struct ts_env {
  char domain[TS_DOMAIN_SIZE];
  int backend;
  char *dir;
  char dir_buf[TS_DIR_MAX];
} ts_env;
void ts_env_copy(ts_env *dst, const ts_env *src);

/* cmocka fixtures: *state becomes a ts_env *. ts_teardown fails the test if
 * the domain has leftover objects (and removes them), kills and reaps any
 * child still running, and removes the temporary directory. */
int ts_setup_shm(void **state);
int ts_setup_dir(void **state);
int ts_teardown(void **state);

/* Opens a node on the environment (cmocka-asserts success). */
shmbus_node *ts_node(const ts_env *env);
/* The same for children: returns NULL on failure (after printing). */
shmbus_node *ts_child_node(const ts_env *env);

/* ---- leftovers ------------------------------------------------------------ */

/* Counts the objects of `domain` in `dir` (NULL: /dev/shm). When `names` is
 * not NULL, appends their names (space separated, truncated) to it. */
size_t ts_leftovers(const char *domain, const char *dir, char *names, size_t cap);
/* Counts them without the nodes' liveness tokens ("shmbus.<domain>.n.*")
 * and the graveyard files of Windows ("shmbus.<domain>.x.*", unlinked
 * while mapped: platform.h): the services and publisher segments. A
 * leftover graveyard file still fails ts_assert_no_leftovers. */
size_t ts_objects(const char *domain, const char *dir);
/* Counts only the liveness tokens. */
size_t ts_tokens(const char *domain, const char *dir);
/* 1 where a dead node's token stays until cleanup removes it (POSIX), 0
 * where the OS deletes it when its process dies, however it dies (Windows:
 * FILE_FLAG_DELETE_ON_CLOSE). */
int ts_dead_tokens_stay(void);
/* Asserts that the domain has `n` objects besides tokens (services,
 * publisher segments), where they can be listed: on Windows the default
 * backend's sections cannot be (they go with their last handle), so there
 * only the directory backend is counted. */
#define ts_assert_objects(env, n) ts__assert_objects((env), (n), __FILE__, __LINE__)
void ts__assert_objects(const ts_env *env, size_t n, const char *file, int line);
/* Removes the objects of `domain` in `dir` (NULL: /dev/shm). */
void ts_remove_leftovers(const char *domain, const char *dir);
/* cmocka assertion: no object of the domain remains. */
#define ts_assert_no_leftovers(domain, dir) \
  ts__assert_no_leftovers((domain), (dir), __FILE__, __LINE__)
#define ts_assert_env_clean(env) ts_assert_no_leftovers((env)->domain, (env)->dir)
void ts__assert_no_leftovers(const char *domain, const char *dir, const char *file, int line);

/* ---- temporary directories ------------------------------------------------ */

/* mkdtemp under /tmp; returns a malloc'd path (cmocka-asserts success). */
char *ts_tmpdir_create(void);
/* Removes the directory and everything in it, then frees the path. */
void ts_tmpdir_remove(char *path);

/* ---- object names, computed the way src/names.c does ---------------------- */

uint64_t ts_fnv1a64(const char *s);
/* "shmbus.<domain>.<16 hex FNV-1a-64 of service>.s" */
void ts_service_object_name(char *out, size_t cap, const char *domain, const char *service);
/* The path of an object: "/dev/shm/<name>" or "<dir>/<name>". */
void ts_object_path(char *out, size_t cap, const char *dir, const char *name);

/* ---- the standard sample type ---------------------------------------------- */

/* 32 bytes; every word derives from (publisher tag, sequence) so a receiver
 * can check each payload. */
typedef struct ts_sample {
  uint64_t seq;
  uint64_t tag;
  uint64_t mix1;
  uint64_t mix2;
} ts_sample;

#define TS_TYPE_NAME "shmbus-test/Sample"

void ts_sample_fill(ts_sample *s, uint64_t tag, uint64_t seq);
/* 1 when the payload is what ts_sample_fill wrote for its own seq and tag. */
int ts_sample_valid(const ts_sample *s);

/* SHMBUS_SERVICE_OPTS_INIT with the standard type. */
shmbus_service_opts ts_opts(void);

/* A service name unique within the process ("svc-<counter>-<hint>"). */
void ts_service_name(char *out, size_t cap, const char *hint);

/* ---- children and pipes ------------------------------------------------------ */

#define TS_CHILD_ALARM_S 60
#define TS_CHILD_FAILED 1
/* How long a parent or child waits for a message before giving up. */
#define TS_WAIT_MS 30000

typedef struct ts_child ts_child;
typedef int (*ts_child_fn)(ts_child *self, void *arg);

struct ts_child {
  pid_t pid;
  int up[2];   /* child -> parent */
  int down[2]; /* parent -> child */
};

/* Starts a child process that runs fn(self, arg) with a watchdog of
 * TS_CHILD_ALARM_S seconds (POSIX: alarm(), with default signal
 * dispositions) and exits with its return value (0 = pass). The child is
 * registered so that ts_teardown can kill it if the test fails early.
 * Parent side: cmocka-asserts that the start worked. POSIX forks. Windows
 * starts the test program again and sends it a copy of *arg, so there an
 * argument must be self-contained: no pointer in it may point outside it
 * (pointers into the block itself are moved with it), and fn must be a
 * function of the test program (linked without ASLR, so that its address
 * is the same in the child). */
#define ts_child_start(c, fn, arg) ts__child_start((c), (fn), (arg), sizeof *(arg))
void ts__child_start(ts_child *c, ts_child_fn fn, void *arg, size_t size);
/* Kills the child at once (POSIX: SIGKILL; Windows: TerminateProcess with
 * exit code 137). ts_child_wait then reports TS_KILLED on both. */
void ts_child_kill(ts_child *c);
#define TS_KILLED (128 + 9)
/* The calling process's own watchdog, as alarm(): ends it (exit status
 * 128 + 14, SIGALRM on POSIX) unless called again within `seconds`; 0
 * cancels it. */
void ts_alarm(unsigned seconds);
/* Waits for the child; returns its exit code, or 128 + signal. Closes the
 * pipes. */
int ts_child_wait(ts_child *c);
/* Parent: waits for the child and asserts it exited with 0. */
#define ts_assert_child_ok(c) ts__assert_child_ok((c), __FILE__, __LINE__)
void ts__assert_child_ok(ts_child *c, const char *file, int line);

/* Messages are 64-bit values. Receive waits at most TS_WAIT_MS; all return
 * 0 on success, -1 on error, EOF or time-out. */
int ts_send(int fd, uint64_t value);
int ts_recv(int fd, uint64_t *value);
/* Child side and parent side of the two pipes. */
int ts_child_send(ts_child *self, uint64_t value);
int ts_child_recv(ts_child *self, uint64_t *value);
#define ts_parent_send(c, v) assert_int_equal(ts_send((c)->down[1], (v)), 0)
#define ts_parent_recv(c, pv) assert_int_equal(ts_recv((c)->up[0], (pv)), 0)
/* Receives one message and asserts its value. */
#define ts_parent_expect(c, v)              \
  do {                                      \
    uint64_t ts__v = ~(uint64_t)0;          \
    ts_parent_recv((c), &ts__v);            \
    assert_int_equal(ts__v, (uint64_t)(v)); \
  } while (0)

/* Checks for children: print and return TS_CHILD_FAILED from the child
 * function (use inside a function returning int). */
#define TS_CHECK(cond)                                                                            \
  do {                                                                                            \
    if (!(cond)) {                                                                                \
      fprintf(stderr, "%s:%d: child %ld: check failed: %s\n", __FILE__, __LINE__, (long)getpid(), \
              #cond);                                                                             \
      return TS_CHILD_FAILED;                                                                     \
    }                                                                                             \
  } while (0)
#define TS_CHECK_EQ(a, b)                                                                      \
  do {                                                                                         \
    unsigned long long ts__a = (unsigned long long)(a);                                        \
    unsigned long long ts__b = (unsigned long long)(b);                                        \
    if (ts__a != ts__b) {                                                                      \
      fprintf(stderr, "%s:%d: child %ld: %s == %s failed: %llu != %llu\n", __FILE__, __LINE__, \
              (long)getpid(), #a, #b, ts__a, ts__b);                                           \
      return TS_CHILD_FAILED;                                                                  \
    }                                                                                          \
  } while (0)
#define TS_CHECK_ERR(actual, expected)                                                      \
  do {                                                                                      \
    int ts__r = (int)(actual), ts__e = (int)(expected);                                     \
    if (ts__r != ts__e) {                                                                   \
      fprintf(stderr, "%s:%d: child %ld: %s gave %s (%d), expected %s (%d) %s\n", __FILE__, \
              __LINE__, (long)getpid(), #actual, shmbus_err_name(ts__r), ts__r,             \
              shmbus_err_name(ts__e), ts__e, shmbus_error_detail());                        \
      return TS_CHILD_FAILED;                                                               \
    }                                                                                       \
  } while (0)

/* Backoff in polling loops (never synchronisation on its own). */
void ts_backoff(unsigned *round);

/* 1 when a write to *p faults in this process, 0 when it would succeed.
 * POSIX writes the byte back to itself, catching SIGSEGV and SIGBUS;
 * Windows asks VirtualQuery whether the page is read-only. */
int ts_write_faults(volatile uint8_t *p);

/* Waits at most timeout_ms for an OS handle of the library (a wait set's)
 * to be signalled: 1 when it is, 0 on time-out, -1 on error. POSIX polls
 * the descriptor for reading; Windows waits with WaitForMultipleObjects on
 * it beside an event of its own that is never set. */
int ts_os_handle_ready(shmbus_os_handle h, int timeout_ms);

/* Memory aligned to `align` (a power of two), freed with ts_aligned_free
 * (Windows has no C11 aligned_alloc). NULL on failure. */
void *ts_aligned_alloc(size_t align, size_t size);
void ts_aligned_free(void *p);

/* Monotonic clock, ns. */
uint64_t ts_now_ns(void);
/* Sleeps at least `ns` (nanosleep; Windows rounds up to milliseconds). */
void ts_sleep_ns(uint64_t ns);
/* This process's id, for messages. */
uint32_t ts_pid(void);

/* Skips the calling cmocka test, saying why, when SHMBUS_TEST_NO_THREADS is
 * set: for emulators that cannot run a second thread (qemu-user 7.2 on
 * some hosts hangs in the guest's first pthread_create; scripts/test.sh's
 * aarch64 suite sets it). Returns only when threads may be used. */
#define TS_SKIP_WITHOUT_THREADS()                                                                 \
  do {                                                                                            \
    if (ts_threads_unavailable()) {                                                               \
      print_message("skipped: SHMBUS_TEST_NO_THREADS is set (this runner cannot run threads)\n"); \
      skip();                                                                                     \
    }                                                                                             \
  } while (0)
int ts_threads_unavailable(void);

/* ---- hostile-peer helpers ---- */
/* What an attacking peer of the same user does (docs/security.md): it opens
 * the domain's objects by name, read-write, and writes shared words; it
 * plants objects under the library's names. Usable in children (no cmocka
 * assertion inside). */

/* Maps object `name` of a backend root (dir NULL: /dev/shm) read-write over
 * its whole current length. Returns the mapping and its length in *size, or
 * NULL (errno set) when it cannot be opened or is empty.
 * Windows, dir NULL (the default backend): the paging-file section
 * "Local\\<name>" (OpenFileMappingW, then MapViewOfFile of the whole
 * section; *size is VirtualQuery's committed run from its start, a page
 * multiple); a section whose first page is not committed (SEC_RESERVE) is
 * refused (EINVAL), and so is an object of another type. The section
 * handle is closed at once, as POSIX closes the descriptor: the view does
 * not keep the section's name alive. With dir: the file <dir>\<name>. */
void *ts_map_object(const char *dir, const char *name, size_t *size);
void ts_unmap_object(void *base, size_t size);
/* Creates object `name` exclusively (mode 0600), `size` bytes of zeros (0:
 * an empty object). 0, or -1 with errno.
 * Windows, dir NULL: a SEC_COMMIT paging-file section of `size` bytes
 * (page-granular to its viewers; 0 is refused, EINVAL: a section cannot be
 * empty), with the default security of the process. A section lives only
 * while a handle to it is open, so the helper keeps the one it created in
 * a registry of the process until ts_unlink_object closes it; ts_teardown
 * closes any that a test left open and fails that test. (Children have
 * registries of their own, which die with them.) */
int ts_create_object(const char *dir, const char *name, uint64_t size);
/* Removes object `name`. 0, or -1 with errno.
 * Windows, dir NULL: closes the handle ts_create_object kept (the section
 * goes with its last handle: once the library's ports have closed theirs
 * too); else deletes a file of that name in the per-session state
 * directory (liveness tokens). A section made by somebody else cannot be
 * removed at all: -1 with EPERM. */
int ts_unlink_object(const char *dir, const char *name);

/* The permission bits of object `name` (dir NULL: /dev/shm): 0 and *mode;
 * -1 (errno, ENOENT when it does not exist). POSIX: lstat's st_mode & 0777.
 * Windows: read back from the object's DACL the way the library writes it
 * (src/win/object.c): the owner's, the primary group's and Authenticated
 * Users' allow ACEs become the owner, group and other triples (read: map
 * read / read data; write: map write / write data); dir NULL: the section
 * "Local\\<name>". 1 when the OS kept no security descriptor of ours to
 * read (a file system that ignores file DACLs: wine's, for one). */
int ts_object_mode(const char *dir, const char *name, unsigned *mode);

/* setenv(name, value, 1) and unsetenv(name), for the library's getenv
 * (Windows: _putenv_s, the CRT's table that getenv reads). 0 or -1. */
int ts_setenv(const char *name, const char *value);
int ts_unsetenv(const char *name);

/* Shared memory that the parent and its children see (stop flags,
 * counters); zeroed. NULL on failure. POSIX: anonymous MAP_SHARED, which
 * fork shares. Windows: a named section mapped at a fixed address of a
 * test arena (at most TS_SHARED_MAX regions at a time); ts_child_start
 * tells every child the regions live at its start, and the child maps
 * them at the same addresses before it runs its function, so pointers to
 * them may be passed in a child's argument. */
#define TS_SHARED_MAX 8
void *ts_shared_alloc(size_t size);
void ts_shared_free(void *p, size_t size);

#ifdef _WIN32
/* 1 when the program runs under wine (ntdll exports wine_get_version):
 * for skips that name a wine limitation. */
int ts_under_wine(void);
#endif

/* Scheduling controls for timing bounds, measured in the same run as the
 * case: how much longer than `ns` a plain nanosleep(ns) took (the wake-up
 * delay of this moment), and the longest stretch during which a loop that
 * reads the clock for `ns` did not run (how long a busy victim is kept off
 * the CPU by the load of this moment). */
uint64_t ts_sleep_overrun_ns(uint64_t ns);
uint64_t ts_spin_gap_ns(uint64_t ns);

/* A watchdog for a hang the library must not have: a forked process that,
 * unless stopped within `seconds`, prints what hung, SIGKILLs the test
 * process and removes the objects of `domain` in `dir` (NULL: /dev/shm) and
 * the directory `dir` itself, so that a hung test still leaves nothing. */
typedef struct ts_watchdog {
  pid_t pid;
  int fd;
} ts_watchdog;
void ts_watchdog_start(ts_watchdog *w, const char *domain, const char *dir, unsigned seconds,
                       const char *what);
/* Stops it (idempotent; a zeroed ts_watchdog is stopped). */
void ts_watchdog_stop(ts_watchdog *w);

/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), slicing by 8, for
 * payload integrity checks. ts_crc32c_update continues a running value
 * (start with ~0u and complement the end); ts_crc32c does both:
 * ts_crc32c("123456789", 9) == 0xE3069283. Thread-safe (the table is built
 * once, on first use). */
uint32_t ts_crc32c_update(uint32_t crc, const void *data, size_t n);
uint32_t ts_crc32c(const void *data, size_t n);

/* ts_child_wait without waiting: -1 while the child runs; once it ended,
 * reaps it, closes its pipes and returns its exit code or 128 + signal, as
 * ts_child_wait does. */
int ts_child_poll(ts_child *c);

#endif /* SHMBUS_TEST_SUPPORT_H */

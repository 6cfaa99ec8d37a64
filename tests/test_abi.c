/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Mixed 32/64-bit ABIs on one bus (issue 11, "Tests in CI"). This build's
 * shmbus_abi_peer (SHMBUS_ABI_OWN_PEER) against the other ABI's (argv[1],
 * the cache variable SHMBUS_ABI_PEER), as real processes (fork/exec), on
 * the shm and the directory backend:
 *
 *   layout     both peers print every field of shmbus__layout for a set of
 *              configurations and sizeof/offsetof of every shared struct:
 *              the texts must be identical (the first differing line is
 *              named);
 *   segments   the service, data and control objects of two services have
 *              the same lengths in both ABIs;
 *   stream     10^6 samples other -> own and own -> other, overflow BLOCK:
 *              the subscriber checks that every sequence number arrives
 *              once and in order, every CRC32C and every field;
 *              subscribers polling, asleep in shmbus_subscriber_wait and in
 *              a wait set (each direction with each waiting mode on one of
 *              the backends); a sleeper fails when its wake-ups are lost
 *              (its waits end only at the 100 ms look for dead peers);
 *   history    a late subscriber of one ABI gets the last H samples of a
 *              publisher of the other, then the live ones;
 *   latest     take_latest across ABIs, in lockstep: after each batch the
 *              subscriber must get exactly the newest sample and find the
 *              queue empty;
 *   reclaim    a SIGKILLed subscriber (holding samples, more queued) is
 *              reclaimed by the other ABI's publisher: shmbus_publisher_update
 *              drops to 0 within 5 s and a new subscriber of the killed one's
 *              ABI then gets every sample (one subscriber slot: an unfreed
 *              slot or unreturned chunks would stop it);
 *   and after every case nothing of its domain is left in /dev/shm or in
 *   its directory (ts_teardown; the killed node's liveness token is removed
 *   by shmbus_domain_cleanup, as the API says).
 *
 * The peers print protocol lines ("ready", "published <n>", ...) that the
 * driver waits for, with bounded waits everywhere (and alarm() in the
 * peers). Without a peer of the other ABI the test exits 77 (skipped).
 *
 * Environment knobs: ABI_SAMPLES (samples per stream, default 1000000),
 * ABI_FILTER (cmocka test filter, e.g. "stream*").
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

#ifndef SHMBUS_ABI_OWN_PEER
#error "SHMBUS_ABI_OWN_PEER (the path of this build's shmbus_abi_peer) is set by tests/abi.cmake"
#endif

#define LINE_MS 30000    /* a protocol line arrives within this  */
#define STREAM_MS 150000 /* a 10^6-sample stream ends within this */
#define SHORT_MS 60000   /* any other peer ends within this       */

static const char *own_peer = SHMBUS_ABI_OWN_PEER;
static const char *other_peer;
static int own_bits, other_bits;
static uint64_t stream_samples = 1000000;

/* ======================================================================== */
/* Peer processes                                                           */
/* ======================================================================== */

/* A running peer: its stdin and stdout are pipes of ours; stderr is ours. */
typedef struct peer {
  pid_t pid;   /* 0: slot free */
  int in, out; /* our ends: its stdin, its stdout */
  char label[48];
  char buf[4096];
  size_t len;
  int eof;
  int exited, status; /* reaped early (see check_others): its exit status */
} peer;

/* In a static pool so that the teardown can kill what a failed case left
 * (cmocka's failure longjmps out of the case's frame). */
#define MAX_PEERS 8
static peer peers[MAX_PEERS];

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static void peer_free(peer *p) {
  close_fd(&p->in);
  close_fd(&p->out);
  p->pid = 0;
}

/* Returns how many peers were still running. */
static int kill_all_peers(void) {
  int killed = 0;
  for (int i = 0; i < MAX_PEERS; i++) {
    peer *p = &peers[i];
    if (p->pid == 0) continue;
    if (p->exited) {
      peer_free(p);
      continue;
    }
    kill(p->pid, SIGKILL);
    while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    peer_free(p);
    killed++;
  }
  return killed;
}

/* An argument vector being built. */
typedef struct args {
  const char *v[64];
  int n;
  char store[4096];
  size_t used;
} args;

static void arg(args *a, const char *s) {
  assert_true(a->n < 62);
  a->v[a->n++] = s;
  a->v[a->n] = NULL;
}

static void argf(args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void argf(args *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *dst = a->store + a->used;
  int n = vsnprintf(dst, sizeof a->store - a->used, fmt, ap);
  va_end(ap);
  assert_true(n >= 0 && (size_t)n < sizeof a->store - a->used);
  a->used += (size_t)n + 1;
  arg(a, dst);
}

static void args_init(args *a, const char *exe, const char *role) {
  memset(a, 0, sizeof *a);
  arg(a, exe);
  arg(a, role);
}

/* pub/sub arguments for the case's domain and backend. */
static void args_port(args *a, const char *exe, const char *role, const ts_env *env,
                      const char *service) {
  args_init(a, exe, role);
  arg(a, "--domain");
  arg(a, env->domain);
  arg(a, "--backend");
  arg(a, env->backend == SHMBUS_BACKEND_DIR ? "dir" : "shm");
  if (env->dir) {
    arg(a, "--dir");
    arg(a, env->dir);
  }
  arg(a, "--service");
  arg(a, service);
}

static int bits_of(const char *exe) { return exe == own_peer ? own_bits : other_bits; }

static peer *peer_start(const char *what, const args *a) {
  peer *p = NULL;
  for (int i = 0; i < MAX_PEERS && p == NULL; i++)
    if (peers[i].pid == 0) p = &peers[i];
  assert_non_null(p);
  memset(p, 0, sizeof *p);
  snprintf(p->label, sizeof p->label, "%d-bit %s", bits_of(a->v[0]), what);
  int in[2], out[2];
  assert_int_equal(pipe2(in, O_CLOEXEC), 0);
  assert_int_equal(pipe2(out, O_CLOEXEC), 0);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* dup2 leaves the new descriptors without FD_CLOEXEC. */
    if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0) _exit(127);
    signal(SIGPIPE, SIG_DFL);
    execv(a->v[0], (char *const *)a->v);
    fprintf(stderr, "test_abi: exec %s: %s\n", a->v[0], strerror(errno));
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  p->pid = pid;
  p->in = in[1];
  p->out = out[0];
  return p;
}

static int exit_code(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* While we wait for `p`, another peer of the case may fail (a publisher
 * that cannot open): fail at once instead of waiting out the one that
 * waits for it. */
static void check_others(const peer *p) {
  for (int i = 0; i < MAX_PEERS; i++) {
    peer *o = &peers[i];
    int status;
    if (o == p || o->pid == 0 || o->exited) continue;
    if (waitpid(o->pid, &status, WNOHANG) != o->pid) continue;
    o->exited = 1;
    o->status = exit_code(status);
    if (o->status != 0)
      fail_msg("%s (pid %ld) failed with exit status %d while waiting for %s", o->label,
               (long)o->pid, o->status, p->label);
  }
}

/* Reads the next line of the peer's stdout into `line`. 0, or -1 at EOF,
 * -2 when nothing came by `deadline_ns`. */
static int peer_line(peer *p, char *line, size_t cap, uint64_t deadline_ns) {
  for (;;) {
    char *nl = memchr(p->buf, '\n', p->len);
    if (nl != NULL || (p->eof && p->len > 0) || p->len == sizeof p->buf) {
      size_t n = nl ? (size_t)(nl - p->buf) : p->len;
      size_t copy = n < cap - 1 ? n : cap - 1;
      memcpy(line, p->buf, copy);
      line[copy] = '\0';
      size_t drop = nl ? n + 1 : n;
      memmove(p->buf, p->buf + drop, p->len - drop);
      p->len -= drop;
      return 0;
    }
    if (p->eof) return -1;
    uint64_t now = ts_now_ns();
    if (now >= deadline_ns) return -2;
    struct pollfd pfd = {p->out, POLLIN, 0};
    uint64_t ms = (deadline_ns - now) / 1000000u + 1;
    int r = poll(&pfd, 1, ms < 100 ? (int)ms : 100);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) {
      check_others(p);
      continue;
    }
    ssize_t got = read(p->out, p->buf + p->len, sizeof p->buf - p->len);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      p->eof = 1;
      continue;
    }
    p->len += (size_t)got;
  }
}

/* Waits for a line starting with `prefix` (echoing the lines on the way)
 * and copies it to `line`. */
static void peer_expect(peer *p, const char *prefix, char *line, size_t cap) {
  uint64_t deadline = ts_now_ns() + (uint64_t)LINE_MS * 1000000u;
  for (;;) {
    int r = peer_line(p, line, cap, deadline);
    if (r == -1)
      fail_msg("%s (pid %ld) ended before printing \"%s\"", p->label, (long)p->pid, prefix);
    if (r == -2)
      fail_msg("%s (pid %ld) did not print \"%s\" within %d ms", p->label, (long)p->pid, prefix,
               LINE_MS);
    printf("    [%s] %s\n", p->label, line);
    if (strncmp(line, prefix, strlen(prefix)) == 0) return;
  }
}

static void peer_send(peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void peer_send(peer *p, const char *fmt, ...) {
  char msg[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  assert_true(n > 0 && (size_t)n < sizeof msg);
  ssize_t w = write(p->in, msg, (size_t)n);
  if (w != n) fail_msg("writing to %s: %s", p->label, strerror(errno));
}

/* Reads the rest of the peer's output (echoed, or appended to *capture
 * when it is not NULL) and reaps it. Returns its exit code, 128 + signal,
 * or -1 when it did not end in time (it is killed then). */
static int peer_finish(peer *p, int timeout_ms, char **capture) {
  uint64_t deadline = ts_now_ns() + (uint64_t)timeout_ms * 1000000u;
  size_t cap_len = 0, cap_size = 0;
  char line[1024];
  int r;
  while ((r = peer_line(p, line, sizeof line, deadline)) == 0) {
    if (capture == NULL) {
      printf("    [%s] %s\n", p->label, line);
      continue;
    }
    size_t n = strlen(line);
    if (cap_len + n + 2 > cap_size) {
      cap_size = (cap_len + n + 2) * 2;
      *capture = realloc(cap_len ? *capture : NULL, cap_size);
      assert_non_null(*capture);
    }
    memcpy(*capture + cap_len, line, n);
    cap_len += n;
    (*capture)[cap_len++] = '\n';
    (*capture)[cap_len] = '\0';
  }
  if (capture != NULL && cap_len == 0) {
    *capture = strdup("");
    assert_non_null(*capture);
  }
  int status = 0, rc = -1;
  for (;;) {
    if (p->exited) {
      rc = p->status;
      break;
    }
    pid_t w = waitpid(p->pid, &status, r == -2 ? WNOHANG : 0);
    if (w < 0 && errno == EINTR) continue;
    if (w == p->pid) {
      rc = exit_code(status);
      break;
    }
    /* Still running after its deadline: it hangs. */
    print_error("%s (pid %ld) did not end within %d ms: killed\n", p->label, (long)p->pid,
                timeout_ms);
    kill(p->pid, SIGKILL);
    while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    break;
  }
  peer_free(p);
  return rc;
}

static void peer_finish_ok(peer *p, int timeout_ms) {
  char label[48];
  snprintf(label, sizeof label, "%s", p->label);
  int rc = peer_finish(p, timeout_ms, NULL);
  if (rc != 0) fail_msg("%s failed: exit status %d (see its messages above)", label, rc);
}

/* Runs a peer to its end and returns its output (malloc'd). */
static char *peer_run(const char *what, const args *a) {
  peer *p = peer_start(what, a);
  char label[48];
  snprintf(label, sizeof label, "%s", p->label);
  char *out = NULL;
  int rc = peer_finish(p, SHORT_MS, &out);
  if (rc != 0) {
    print_error("output of %s:\n%s", label, out);
    free(out);
    fail_msg("%s failed: exit status %d", label, rc);
  }
  return out;
}

/* ======================================================================== */
/* Fixtures                                                                 */
/* ======================================================================== */

static int teardown(void **state) {
  ts_env *env = *state;
  /* Peers still running: the case failed already. What the killed ones
   * leave is no second failure; remove it. */
  if (kill_all_peers() > 0 && env != NULL) {
    print_error(
        "teardown: killed the peers the failed case left running, removed their "
        "objects\n");
    ts_remove_leftovers(env->domain, env->dir);
  }
  return ts_teardown(state); /* leftovers of the domain, the directory */
}

/* Removes a killed node's liveness token (the one thing a SIGKILL may
 * leave, by design: docs of shmbus_domain_cleanup), after checking that no
 * service or segment is left. */
static void cleanup_dead_tokens(const ts_env *env) {
  char names[1024] = "";
  ts_leftovers(env->domain, env->dir, names, sizeof names);
  if (ts_objects(env->domain, env->dir) != 0)
    fail_msg("services or segments left after every port closed: %s", names);
  if (ts_tokens(env->domain, env->dir) > 1)
    fail_msg("more liveness tokens than the one killed node's: %s", names);
  shmbus_node *node = ts_node(env);
  assert_true(shmbus_domain_cleanup(node) >= 0);
  shmbus_node_close(node);
}

/* ======================================================================== */
/* layout and segments                                                      */
/* ======================================================================== */

/* Fails naming the first line where the two outputs differ. */
static void assert_same_text(const char *what, const char *own, const char *other) {
  unsigned line = 1;
  const char *a = own, *b = other;
  while (*a != '\0' || *b != '\0') {
    const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
    size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
    if (la != lb || memcmp(a, b, la) != 0 || (*a == '\0') != (*b == '\0')) {
      fail_msg(
          "%s differs between the ABIs at line %u:\n"
          "  %d-bit (%s): %.*s\n  %d-bit (%s): %.*s",
          what, line, own_bits, own_peer, (int)la, *a ? a : "(end of output)", other_bits,
          other_peer, (int)lb, *b ? b : "(end of output)");
    }
    a += la + (ea != NULL);
    b += lb + (eb != NULL);
    line++;
  }
  printf("    %s: %u lines, identical in the %d- and %d-bit builds\n", what, line - 1, own_bits,
         other_bits);
}

static void test_layout(void **state) {
  (void)state;
  args a;
  args_init(&a, own_peer, "layout");
  char *own = peer_run("layout", &a);
  args_init(&a, other_peer, "layout");
  char *other = peer_run("layout", &a);
  /* The layout role prints well over 100 lines: an empty or cut output is
   * a failure of its own, not a match. */
  assert_true(strlen(own) > 2000);
  assert_non_null(strstr(own, "case0.service_size "));
  assert_same_text("the layout (shmbus_abi_peer layout)", own, other);
  free(own);
  free(other);
}

static void test_segments(void **state) {
  ts_env *env = *state;
  char other_domain[TS_DOMAIN_SIZE];
  ts_unique_domain(other_domain);
  const char *dir = env->dir ? env->dir : "-";
  const char *backend = env->backend == SHMBUS_BACKEND_DIR ? "dir" : "shm";
  args a;
  args_init(&a, own_peer, "segments");
  arg(&a, backend);
  arg(&a, dir);
  arg(&a, env->domain);
  char *own = peer_run("segments", &a);
  args_init(&a, other_peer, "segments");
  arg(&a, backend);
  arg(&a, dir);
  arg(&a, other_domain);
  char *other = peer_run("segments", &a);
  ts_assert_no_leftovers(other_domain, env->dir);
  assert_non_null(strstr(own, "case1.control_object_size "));
  printf("%s", own);
  assert_same_text("the segment sizes (shmbus_abi_peer segments)", own, other);
  free(own);
  free(other);
}

/* ======================================================================== */
/* streams                                                                  */
/* ======================================================================== */

/* `n` samples from a publisher run by pub_exe to a subscriber run by
 * sub_exe that waits in `mode`. */
static void stream(const ts_env *env, const char *pub_exe, const char *sub_exe, const char *mode) {
  char service[64];
  ts_service_name(service, sizeof service, "stream");
  uint64_t t0 = ts_now_ns();
  args a;
  args_port(&a, sub_exe, "sub", env, service);
  argf(&a, "--count=%" PRIu64, stream_samples);
  arg(&a, "--mode");
  arg(&a, mode);
  peer *sub = peer_start("subscriber", &a);
  char line[512];
  peer_expect(sub, "ready", line, sizeof line);

  args_port(&a, pub_exe, "pub", env, service);
  argf(&a, "--count=%" PRIu64, stream_samples);
  peer *pub = peer_start("publisher", &a);

  /* The subscriber's summary says how often it waited. */
  peer_expect(sub, "sub: ok ", line, sizeof line);
  unsigned long long waits = 0;
  const char *w = strstr(line, " waits,");
  while (w != NULL && w > line && w[-1] >= '0' && w[-1] <= '9') w--;
  if (w != NULL) waits = strtoull(w, NULL, 10);
  peer_finish_ok(pub, STREAM_MS);
  peer_finish_ok(sub, STREAM_MS);
  if (strcmp(mode, "poll") != 0 && waits == 0)
    fail_msg("the subscriber never waited (mode %s): the case did not test waking", mode);
  printf("    %" PRIu64 " samples %d-bit -> %d-bit, subscriber mode %s: %.2f s\n", stream_samples,
         bits_of(pub_exe), bits_of(sub_exe), mode, (double)(ts_now_ns() - t0) / 1e9);
  ts_assert_env_clean(env);
}

/* ======================================================================== */
/* history and take_latest                                                  */
/* ======================================================================== */

#define HISTORY 8
#define HISTORY_BEFORE 40
#define HISTORY_AFTER 1000

static void history(const ts_env *env, const char *pub_exe, const char *sub_exe, const char *mode) {
  char service[64];
  ts_service_name(service, sizeof service, "history");
  args a;
  args_port(&a, pub_exe, "pub", env, service);
  argf(&a, "--history=%d", HISTORY);
  arg(&a, "--subs");
  arg(&a, "0");
  argf(&a, "--count=%d", HISTORY_BEFORE);
  arg(&a, "--then-subs");
  arg(&a, "1");
  argf(&a, "--then-count=%d", HISTORY_AFTER);
  peer *pub = peer_start("publisher", &a);
  char line[512];
  char want[64];
  snprintf(want, sizeof want, "published %d", HISTORY_BEFORE);
  peer_expect(pub, want, line, sizeof line);

  /* A late subscriber: the last HISTORY samples, then the live ones. */
  args_port(&a, sub_exe, "sub", env, service);
  argf(&a, "--history=%d", HISTORY);
  argf(&a, "--first=%d", HISTORY_BEFORE - HISTORY);
  argf(&a, "--count=%d", HISTORY + HISTORY_AFTER);
  arg(&a, "--mode");
  arg(&a, mode);
  peer *sub = peer_start("late subscriber", &a);
  peer_finish_ok(sub, SHORT_MS);
  peer_finish_ok(pub, SHORT_MS);
  ts_assert_env_clean(env);
}

#define BATCHES 24

static void latest(const ts_env *env, const char *pub_exe, const char *sub_exe) {
  char service[64];
  ts_service_name(service, sizeof service, "latest");
  args a;
  args_port(&a, sub_exe, "sub", env, service);
  arg(&a, "--take");
  arg(&a, "latest");
  argf(&a, "--batches=%d", BATCHES);
  peer *sub = peer_start("subscriber", &a);
  char line[512];
  peer_expect(sub, "ready", line, sizeof line);
  args_port(&a, pub_exe, "pub", env, service);
  argf(&a, "--batches=%d", BATCHES);
  peer *pub = peer_start("publisher", &a);
  for (int k = 0; k < BATCHES; k++) {
    peer_expect(pub, "batch ", line, sizeof line);
    unsigned long long seq = strtoull(line + 6, NULL, 10);
    peer_send(sub, "%llu\n", seq);
    peer_expect(sub, "got ", line, sizeof line);
    assert_int_equal(strtoull(line + 4, NULL, 10), seq);
    peer_send(pub, "next\n");
  }
  peer_finish_ok(pub, SHORT_MS);
  peer_finish_ok(sub, SHORT_MS);
  ts_assert_env_clean(env);
}

/* ======================================================================== */
/* a killed subscriber, reclaimed across ABIs                               */
/* ======================================================================== */

#define RECLAIM_BEFORE 12 /* published; the victim takes 6 and holds 3 */
#define RECLAIM_TAKEN 6
#define RECLAIM_HELD 3
#define RECLAIM_AFTER 100000

static void reclaim(const ts_env *env, const char *pub_exe, const char *sub_exe) {
  char service[64];
  ts_service_name(service, sizeof service, "reclaim");
  /* One subscriber slot, so that the new subscriber needs the dead one's
   * slot, and a pool of exactly one subscriber's chunks. */
  args a;
  args_port(&a, sub_exe, "sub", env, service);
  arg(&a, "--max-subs");
  arg(&a, "1");
  argf(&a, "--count=%d", RECLAIM_TAKEN);
  argf(&a, "--hold=%d", RECLAIM_HELD);
  arg(&a, "--stall");
  peer *victim = peer_start("victim subscriber", &a);
  char line[512];
  peer_expect(victim, "ready", line, sizeof line);

  args_port(&a, pub_exe, "pub", env, service);
  arg(&a, "--max-subs");
  arg(&a, "1");
  argf(&a, "--count=%d", RECLAIM_BEFORE);
  arg(&a, "--reclaim");
  arg(&a, "--then-subs");
  arg(&a, "1");
  argf(&a, "--then-count=%d", RECLAIM_AFTER);
  peer *pub = peer_start("publisher", &a);
  char want[64];
  snprintf(want, sizeof want, "published %d", RECLAIM_BEFORE);
  peer_expect(pub, want, line, sizeof line);
  snprintf(want, sizeof want, "stalled %d", RECLAIM_TAKEN);
  peer_expect(victim, want, line, sizeof line);

  assert_int_equal(kill(victim->pid, SIGKILL), 0);
  assert_int_equal(peer_finish(victim, SHORT_MS, NULL), 128 + SIGKILL);
  peer_send(pub, "killed\n");
  peer_expect(pub, "reclaimed ", line, sizeof line); /* the publisher bounds it: 5 s */

  args_port(&a, sub_exe, "sub", env, service);
  arg(&a, "--max-subs");
  arg(&a, "1");
  argf(&a, "--first=%d", RECLAIM_BEFORE);
  argf(&a, "--count=%d", RECLAIM_AFTER);
  peer *next = peer_start("new subscriber", &a);
  peer_finish_ok(next, SHORT_MS);
  peer_finish_ok(pub, SHORT_MS);
  cleanup_dead_tokens(env);
  ts_assert_env_clean(env);
}

/* ======================================================================== */
/* The cases                                                                */
/* ======================================================================== */

#define OWN own_peer
#define OTHER other_peer

/* Each direction polling, and with each waiting mode on one of the
 * backends. */
static void test_stream_other_to_own_poll(void **s) { stream(*s, OTHER, OWN, "poll"); }
static void test_stream_own_to_other_poll(void **s) { stream(*s, OWN, OTHER, "poll"); }
static void test_stream_other_to_own_wait(void **s) { stream(*s, OTHER, OWN, "wait"); }
static void test_stream_own_to_other_waitset(void **s) { stream(*s, OWN, OTHER, "waitset"); }
static void test_stream_other_to_own_waitset(void **s) { stream(*s, OTHER, OWN, "waitset"); }
static void test_stream_own_to_other_wait(void **s) { stream(*s, OWN, OTHER, "wait"); }
static void test_history_other_to_own(void **s) { history(*s, OTHER, OWN, "poll"); }
static void test_history_own_to_other(void **s) { history(*s, OWN, OTHER, "wait"); }
static void test_latest_other_to_own(void **s) { latest(*s, OTHER, OWN); }
static void test_latest_own_to_other(void **s) { latest(*s, OWN, OTHER); }
static void test_reclaim_own_sub_other_pub(void **s) { reclaim(*s, OTHER, OWN); }
static void test_reclaim_other_sub_own_pub(void **s) { reclaim(*s, OWN, OTHER); }

#define SHM(name, fn) \
  { name "/shm", fn, ts_setup_shm, teardown, NULL }
#define DIR_(name, fn) \
  { name "/dir", fn, ts_setup_dir, teardown, NULL }

/* "<N>-bit (...)": N, or 0. */
static int peer_bits(const char *exe, char *info, size_t cap) {
  args a;
  args_init(&a, exe, "info");
  peer *p = peer_start("info", &a);
  char *out = NULL;
  int rc = peer_finish(p, SHORT_MS, &out);
  snprintf(info, cap, "%s", out ? out : "");
  free(out);
  char *nl = strchr(info, '\n');
  if (nl) *nl = '\0';
  return rc == 0 ? atoi(info) : 0;
}

int main(int argc, char **argv) {
  other_peer = argc > 1 ? argv[1] : getenv("SHMBUS_ABI_PEER");
  if (other_peer == NULL || *other_peer == '\0') {
    printf(
        "test_abi: skipped: no shmbus_abi_peer of the other ABI to run against: configure "
        "with -DSHMBUS_ABI_PEER=<32-bit build>/tests/shmbus_abi_peer (or the 64-bit one for "
        "a 32-bit build); scripts/test.sh does\n");
    return 77;
  }
  /* A peer that was configured but is missing is a failure, not a skip. */
  if (access(other_peer, X_OK) != 0) {
    fprintf(stderr,
            "test_abi: SHMBUS_ABI_PEER=%s: %s (build it first: cmake --build "
            "<that build> --target shmbus_abi_peer)\n",
            other_peer, strerror(errno));
    return 1;
  }
  const char *n = getenv("ABI_SAMPLES");
  if (n != NULL && *n != '\0') stream_samples = strtoull(n, NULL, 10);
  if (stream_samples == 0) stream_samples = 1;
  const char *filter = getenv("ABI_FILTER");
  if (filter && *filter) cmocka_set_test_filter(filter);
  signal(SIGPIPE, SIG_IGN); /* a peer that died must fail a case, not kill us */
  for (int i = 0; i < MAX_PEERS; i++) peers[i].in = peers[i].out = -1;

  char own_info[256], other_info[256];
  own_bits = peer_bits(own_peer, own_info, sizeof own_info);
  other_bits = peer_bits(other_peer, other_info, sizeof other_info);
  printf("test_abi: this build's peer: %s\n          %s\n", own_peer, own_info);
  printf("test_abi: the other ABI's peer: %s\n          %s\n", other_peer, other_info);
  if (own_bits == 0 || other_bits == 0) {
    fprintf(stderr, "test_abi: a peer does not run (see above)\n");
    return 1;
  }
  if (own_bits == other_bits) {
    fprintf(stderr,
            "test_abi: both peers are %d-bit: SHMBUS_ABI_PEER must be the peer of a "
            "build of the other ABI\n",
            own_bits);
    return 1;
  }
  printf("test_abi: %" PRIu64 " samples per stream (ABI_SAMPLES)\n", stream_samples);

  const struct CMUnitTest tests[] = {
      SHM("layout", test_layout),
      SHM("segments", test_segments),
      DIR_("segments", test_segments),
      SHM("stream_other_to_own_poll", test_stream_other_to_own_poll),
      SHM("stream_own_to_other_poll", test_stream_own_to_other_poll),
      SHM("stream_other_to_own_wait", test_stream_other_to_own_wait),
      SHM("stream_own_to_other_waitset", test_stream_own_to_other_waitset),
      DIR_("stream_other_to_own_waitset", test_stream_other_to_own_waitset),
      DIR_("stream_own_to_other_wait", test_stream_own_to_other_wait),
      SHM("history_other_to_own", test_history_other_to_own),
      SHM("history_own_to_other", test_history_own_to_other),
      DIR_("history_other_to_own", test_history_other_to_own),
      DIR_("history_own_to_other", test_history_own_to_other),
      SHM("latest_other_to_own", test_latest_other_to_own),
      SHM("latest_own_to_other", test_latest_own_to_other),
      DIR_("latest_other_to_own", test_latest_other_to_own),
      DIR_("latest_own_to_other", test_latest_own_to_other),
      SHM("reclaim_own_sub_other_pub", test_reclaim_own_sub_other_pub),
      SHM("reclaim_other_sub_own_pub", test_reclaim_other_sub_own_pub),
      DIR_("reclaim_own_sub_other_pub", test_reclaim_own_sub_other_pub),
      DIR_("reclaim_other_sub_own_pub", test_reclaim_other_sub_own_pub),
  };
  return cmocka_run_group_tests_name("abi", tests, NULL, NULL) ? 1 : 0;
}

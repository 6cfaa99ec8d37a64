/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hostile and buggy peers against live services (issue 9, deliverable 5;
 * the threat model is docs/security.md and DESIGN.md, "Threat model").
 * Two cases, each on both backends:
 *
 * scribbler
 *   2 publisher and 3 subscriber processes, each with its own node, work on
 *   two services: A (drop-oldest, history 2) and B (BLOCK overflow, publishes
 *   with block timeouts of 0 to 5 ms). They reopen their ports every 0.1 to
 *   0.8 s and after any unexpected error (CORRUPT and the like); subscriber 0
 *   also runs shmbus_domain_cleanup now and then. Meanwhile 2 attacker
 *   processes (same user) do, in random order (SCRIBBLER_ATTACKS selects):
 *     word      random 64-bit values, +1 / -1 bumps, torn (half-written)
 *               values, transient values put back, small values, at random
 *               words of every segment of the domain: service ".s", data
 *               ".d", control ".c" (mapped read-write from the object
 *               directory)
 *     sweep     the same over consecutive windows, so every word of every
 *               segment gets its turn (the summary shows the coverage)
 *     truncate  ftruncate to 0, 64 bytes, half, size - 1, + one page,
 *               1 TiB (sparse), then back; data/control ones also to 0 for
 *               good
 *     replace   unlink and create a new object under the name (a copy);
 *               garbage, a header only or an empty object under the name,
 *               then the original put back
 *     unlink    an object removed (at most 4 per second)
 *     fifo      a FIFO swapped in under an object's name, then put back
 *     symlink   a symbolic link swapped in (to the object itself, /dev/zero,
 *               another object, nowhere), then put back
 *     slot      forged registry slots: phantom ready publishers and
 *               subscribers (no segments; FIFOs, links, garbage, empty or
 *               copied segments; a FIFO as the phantom's node token), live
 *               slots' words and node ids changed, a slot left "setting up"
 *     sizes     forged header fields (magic, version, kind, header and total
 *               size, initialised, generation), config limits and names,
 *               the users count and next_port_id
 *     gen       generation counters churned (bursts of +1 for 1 to 60 ms,
 *               random values), segment generations changed
 *     conn      forged connection words (head, done_tail, done_head, sub_id,
 *               sub_ack, lost, wait_ack, pub_waiting, room_event) and ring
 *               entries, and a completion of a chunk that is still queued
 *     chunk     forged chunk headers (payload_bytes, sequence, publisher id)
 *               and payloads
 *     wake      spurious futex wake-ups (event words, room_event), forged
 *               sleeping and wait_mode words
 *     token     node tokens renamed away (the node looks dead), or a FIFO or
 *               a link in their place, then put back
 *   Forging uses the layout accessors of src/service.h, never offsets of
 *   its own. Attacker 0 also unlinks a service whose header or config stays
 *   broken (a peer may): otherwise one permanent scribble would deny service
 *   for the rest of the run and the victims would exercise little.
 *
 *   Victims must never die by a signal, never hang (a control thread in each
 *   victim ends it when one call runs longer than SCRIBBLER_HANG_S; alarm()
 *   backs it up; the parent has a deadline and a watchdog process), and never
 *   exceed a timeout by more than 10 ms plus scheduling: every
 *   shmbus_subscriber_wait(timeout) and BLOCK publish records its overrun,
 *   every non-blocking call (loan, publish with drop-oldest, discard, take,
 *   take_latest, release, lost) its duration. The scheduling allowance is
 *   measured, not guessed: the control thread of every victim runs plain
 *   nanosleeps of 0 to 2 ms all along and records their overrun; the
 *   allowance is 10 ms plus the largest overrun measured in the run (in any
 *   victim). Victims report their counts (samples,
 *   errors by operation and code name, maxima) over the ts_ pipes; the parent
 *   prints a summary, restarts a victim that died (so that one run shows
 *   every kind of death, each with the attacks running at that moment) and
 *   fails on any death, hang or overrun. At the end the attackers stop, the
 *   victims close, shmbus_domain_cleanup runs and every leftover is removed.
 *
 * confinement
 *   1 publisher, 3 honest subscribers and 1 buggy subscriber, all separate
 *   processes. Once connected, the buggy one writes random words, small
 *   values, copies and +1 / -1 bumps into exactly the memory the library
 *   mapped writable for it (the "rw-s" mappings of its /proc/self/maps that
 *   belong to the domain; it re-reads them before each burst) while it keeps
 *   using its subscriber. The honest subscribers must receive every one of
 *   CONFINE_SAMPLES samples (the publisher paces them at CONFINE_RATE per
 *   second into queues deep enough to lose nothing): each checked by
 *   sequence number and by the CRC32C it carries, again when it is released,
 *   with zero loss and nothing missing that shmbus_subscriber_lost does not
 *   report.
 *
 * Environment knobs (defaults are the CI settings):
 *   SCRIBBLER_SECONDS  scribbler time per run over both backends (default
 *                      20: 14 s on shm, 6 s on dir); 200 runs it 10x longer
 *                      (run the binary directly, or raise ctest's timeout)
 *   SCRIBBLER_ATTACKS  comma-separated attack kinds (default: all; names as
 *                      above), to find which attack does what
 *   SCRIBBLER_HANG_S   a call longer than this is a hang (default 5)
 *   SCRIBBLER_FILTER   cmocka test filter, e.g. "*confinement*"
 *   SCRIBBLER_VERBOSE  1: print every death with the attacks around it
 *   CONFINE_SAMPLES    samples of the confinement case (default 100000; the
 *                      directory backend runs a quarter)
 *   CONFINE_RATE       samples per second (default 25000)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "service.h" /* layout accessors, object names: forging */
#include "support.h"

/* The layout accessors changed with layout version 3 (a page per
 * subscriber's wait state, wake words apart). Version 2 is kept so that the
 * test also builds against the code before the hostile-peer fixes
 * (ed298e3), to show what it catches there. */
#if SHMBUS__LAYOUT_VERSION >= 3
#define SC_SLOT_OFFSET(l, cfg, kind, i) shmbus__layout_slot_offset((l), (cfg), (kind), (i))
#define SC_EVENT_OFFSET(l, cfg, k) shmbus__layout_wake_offset((l), (k))
#define SC_WAIT_OFFSET(l, cfg, k, field) \
  (shmbus__layout_wait_offset((l), (k)) + offsetof(shmbus__wait_slot, field))
#else
#define SC_SLOT_OFFSET(l, cfg, kind, i) shmbus__layout_slot_offset((cfg), (kind), (i))
#define SC_EVENT_OFFSET(l, cfg, k) \
  (shmbus__layout_slot_offset((cfg), SHMBUS__SUBSCRIBER, (k)) + offsetof(shmbus__port_slot, event))
#define SC_WAIT_OFFSET(l, cfg, k, field) \
  (shmbus__layout_slot_offset((cfg), SHMBUS__SUBSCRIBER, (k)) + offsetof(shmbus__port_slot, field))
#endif

#define SC_MS UINT64_C(1000000)
#define SC_S UINT64_C(1000000000)
/* What a timeout may be exceeded by, beyond the measured scheduling delay. */
#define SC_SLACK_NS (10 * SC_MS)
#define SC_EXIT_HANG 3

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)
#define ADD(x, v) __atomic_fetch_add(&(x), (v), __ATOMIC_RELAXED)

/* ======================================================================== */
/* Small things                                                             */
/* ======================================================================== */

static uint64_t sc_next(uint64_t *s) { /* splitmix64 */
  uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static uint64_t sc_below(uint64_t *s, uint64_t n) { return n ? sc_next(s) % n : 0; }

static uint64_t sc_seed(uint64_t salt) {
  return ts_now_ns() ^ ((uint64_t)getpid() << 32) ^ (salt * UINT64_C(0x2545F4914F6CDD1D));
}

static void sc_sleep_ns(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / SC_S), (long)(ns % SC_S)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static unsigned long sc_env_ulong(const char *name, unsigned long def) {
  const char *v = getenv(name);
  if (v == NULL || *v == '\0') return def;
  char *end;
  unsigned long r = strtoul(v, &end, 10);
  return *end == '\0' ? r : def;
}

static double sc_env_double(const char *name, double def) {
  const char *v = getenv(name);
  if (v == NULL || *v == '\0') return def;
  char *end;
  double r = strtod(v, &end);
  return *end == '\0' && r > 0 ? r : def;
}

static double sc_ms(uint64_t ns) { return (double)ns / 1e6; }

/* Error codes as indices: -code, and one for codes outside the table. */
enum { SC_NERR = SHMBUS__ERR_COUNT_ + 1 };
static int sc_err_index(int rc) { return rc < 0 && -rc < SHMBUS__ERR_COUNT_ ? -rc : SC_NERR - 1; }
static const char *sc_err_label(int i) {
  return i == SC_NERR - 1 ? "UNKNOWN" : shmbus_err_name(-i);
}

/* A text buffer for summaries and failure lists. */
typedef struct sc_text {
  char buf[16384];
  size_t len;
} sc_text;

static void sc_printf(sc_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sc_printf(sc_text *t, const char *fmt, ...) {
  if (t->len + 1 >= sizeof t->buf) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(t->buf + t->len, sizeof t->buf - t->len, fmt, ap);
  va_end(ap);
  if (n > 0) t->len += (size_t)n;
  if (t->len >= sizeof t->buf) t->len = sizeof t->buf - 1;
}

/* cmocka's print functions cut at 1 KiB. */
static void sc_print(const sc_text *t) {
  fflush(stdout);
  fputs(t->buf, stdout);
  fflush(stdout);
}

static void sc_eprint(const sc_text *t) {
  fflush(stderr);
  fputs(t->buf, stderr);
  fflush(stderr);
}

static void sc_futex_wake(void *addr) {
  syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Reads exactly n 64-bit words from fd before the deadline. 0 or -1. */
static int sc_recv_words(int fd, uint64_t *words, size_t n, uint64_t deadline) {
  char *p = (char *)words;
  size_t left = n * sizeof *words;
  while (left > 0) {
    uint64_t now = ts_now_ns();
    if (now >= deadline) return -1;
    struct pollfd pfd = {fd, POLLIN, 0};
    int r = poll(&pfd, 1, (int)((deadline - now) / SC_MS) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    ssize_t got = read(fd, p, left);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return -1;
    p += got;
    left -= (size_t)got;
  }
  return 0;
}

static int sc_send_words(int fd, const uint64_t *words, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (ts_send(fd, words[i]) != 0) return -1;
  return 0;
}

/* ======================================================================== */
/* The scribbler: configuration and shared state                            */
/* ======================================================================== */

enum { SC_PUBS = 2, SC_SUBS = 3, SC_VICTIMS = SC_PUBS + SC_SUBS, SC_ATTACKERS = 2 };
enum { SC_SVC_A = 0, SC_SVC_B = 1, SC_NSVC = 2 };

/* Target kinds. */
enum { T_SERVICE, T_DATA, T_CONTROL, T_TOKEN, T_OTHER, T_KINDS };
static const char *const sc_target_names[T_KINDS] = {"service", "data", "control", "token",
                                                     "other"};

/* Attack kinds and their variants. */
enum {
  K_WORD,
  K_SWEEP,
  K_TRUNCATE,
  K_REPLACE,
  K_UNLINK,
  K_FIFO,
  K_SYMLINK,
  K_SLOT,
  K_SIZES,
  K_GEN,
  K_CONN,
  K_CHUNK,
  K_WAKE,
  K_TOKEN,
  K_KINDS
};
enum { SC_MAX_VARIANTS = 12 };

typedef struct sc_kind_info {
  const char *name;
  unsigned weight;
  const char *variants[SC_MAX_VARIANTS];
} sc_kind_info;

enum { W_RANDOM, W_INC, W_DEC, W_TORN, W_HALF, W_FLIP, W_SMALL, W_VARIANTS };
enum { TR_0, TR_64, TR_HALF, TR_MINUS1, TR_PAGE, TR_HUGE, TR_0_KEPT, TR_VARIANTS };
enum { RP_COPY, RP_GARBAGE, RP_HEADER, RP_EMPTY, RP_VARIANTS };
enum { SL_SELF, SL_DEVZERO, SL_OTHER, SL_DANGLING, SL_VARIANTS };
enum {
  SLOT_PHANTOM,
  SLOT_PH_FIFO,
  SLOT_PH_LINK,
  SLOT_PH_GARBAGE,
  SLOT_PH_EMPTY,
  SLOT_PH_COPY,
  SLOT_PH_TOKEN_FIFO,
  SLOT_LIVE_WORD,
  SLOT_LIVE_NODE,
  SLOT_SETTING_UP,
  SLOT_VARIANTS
};
enum {
  SZ_MAGIC,
  SZ_VERSION,
  SZ_KIND,
  SZ_HEADER_SIZE,
  SZ_TOTAL_SIZE,
  SZ_INITIALISED,
  SZ_GENERATION,
  SZ_CFG_LIMIT,
  SZ_CFG_NAME,
  SZ_USERS,
  SZ_NEXT_PORT_ID,
  SZ_VARIANTS
};
enum { GEN_PUB_BURST, GEN_SUB_BURST, GEN_RANDOM, GEN_SEGMENT, GEN_VARIANTS };
enum {
  CO_HEAD,
  CO_DONE_TAIL,
  CO_DONE_HEAD,
  CO_SUB_ID,
  CO_SUB_ACK,
  CO_LOST,
  CO_WAIT_ACK,
  CO_PUB_WAITING,
  CO_ROOM_EVENT,
  CO_SUB_RING,
  CO_DONE_RING,
  CO_COMPLETE_QUEUED,
  CO_VARIANTS
};
enum { CH_PAYLOAD_BYTES, CH_SEQUENCE, CH_PUBLISHER_ID, CH_PAYLOAD, CH_VARIANTS };
enum { WK_EVENT, WK_SLEEPING, WK_ROOM, WK_WAIT_MODE, WK_VARIANTS };
enum { TK_FIFO, TK_ASIDE, TK_LINK, TK_VARIANTS };

static const sc_kind_info sc_kinds[K_KINDS] = {
    [K_WORD] = {"word", 30, {"random", "+1", "-1", "torn", "half-written", "transient", "small"}},
    [K_SWEEP] = {"sweep", 6, {"window"}},
    [K_TRUNCATE] = {"truncate",
                    4,
                    {"to 0", "to 64", "to half", "to size-1", "to +page", "to 1 TiB",
                     "to 0 for good"}},
    [K_REPLACE] = {"replace", 3, {"copy", "garbage", "header only", "empty"}},
    [K_UNLINK] = {"unlink", 2, {"unlink"}},
    [K_FIFO] = {"fifo", 3, {"fifo"}},
    [K_SYMLINK] = {"symlink", 3, {"to itself", "to /dev/zero", "to another object", "dangling"}},
    [K_SLOT] = {"slot",
                6,
                {"phantom", "phantom+fifo", "phantom+link", "phantom+garbage", "phantom+empty",
                 "phantom+copy", "phantom+token fifo", "live word", "live node id", "setting up"}},
    [K_SIZES] = {"sizes",
                 5,
                 {"magic", "version", "kind", "header_size", "total_size", "initialised",
                  "generation", "cfg limit", "cfg name", "users", "next_port_id"}},
    [K_GEN] = {"gen", 5, {"pub burst", "sub burst", "random", "segment"}},
    [K_CONN] = {"conn",
                8,
                {"head", "done_tail", "done_head", "sub_id", "sub_ack", "lost", "wait_ack",
                 "pub_waiting", "room_event", "sub ring", "done ring", "complete queued"}},
    [K_CHUNK] = {"chunk", 4, {"payload_bytes", "sequence", "publisher_id", "payload"}},
    [K_WAKE] = {"wake", 3, {"event", "sleeping", "room_event", "wait_mode"}},
    [K_TOKEN] = {"token", 1, {"fifo", "aside", "link"}},
};

/* One attack action, for attributing deaths. */
typedef struct sc_log_entry {
  uint64_t start_ns, end_ns; /* end 0 while running */
  uint32_t kind, variant, target, attacker;
} sc_log_entry;

/* Long enough to still hold what ran when a call began that is found hung
 * SCRIBBLER_HANG_S later (attackers log up to ~10^4 actions a second). */
enum { SC_LOG = 1 << 16 };

/* What the parent sees of a victim while it runs. */
typedef struct sc_status {
  uint32_t op; /* SC_OP_*, SC_OP_NONE between calls */
  uint32_t incarnation;
  uint64_t op_start_ns;
} sc_status;

enum { SC_COVER_WORDS = 1 << 17 };

typedef struct sc_shared {
  uint32_t stop_attack, stop_victims;
  uint32_t swap_lock; /* one name swap at a time: two attackers swapping the
                         same name would put a FIFO back for good */
  uint32_t pad0;
  uint64_t last_unlink_ns; /* unlinks are rationed: see sc_attack_unlink */
  uint64_t t0;
  sc_status victim[SC_VICTIMS];
  uint64_t attempts[K_KINDS][SC_MAX_VARIANTS];
  uint64_t hits[K_KINDS][SC_MAX_VARIANTS]; /* took effect */
  uint64_t targets[T_KINDS];
  uint64_t attacker_sigbus, heals, actions;
  uint64_t log_next;
  sc_log_entry log[SC_LOG];
  uint64_t cover[3][SC_COVER_WORDS / 64]; /* service, data, control word bitmaps */
  /* Each victim's counts as it goes (sc_report, below): what the parent
   * keeps of an incarnation that died. */
  uint64_t live[SC_VICTIMS][1024];
} sc_shared;

/* Everything a child needs (it inherits the parent's copy). */
typedef struct sc_run {
  const ts_env *env;
  sc_shared *sh;
  char svc_name[SC_NSVC][64];
  char svc_object[SC_NSVC][SHMBUS__OBJECT_NAME_MAX];
  uint64_t hash[SC_NSVC];
  shmbus_service_opts opts[SC_NSVC];
  shmbus__service_config cfg[SC_NSVC];
  shmbus__layout layout[SC_NSVC];
  uint64_t cover_words[3];
  uint64_t seconds_ns;
  uint64_t hang_ns;
  unsigned attack_mask;
  int verbose;
} sc_run;

/* What a child function gets. */
typedef struct sc_arg {
  const sc_run *run;
  int index;
} sc_arg;

/* ---- victims' operations ----------------------------------------------- */

enum { C_REPORT, C_NONBLOCK, C_TIMED };
enum {
  SC_OP_NONE,
  SC_OP_NODE_OPEN,
  SC_OP_NODE_CLOSE,
  SC_OP_PUB_OPEN,
  SC_OP_PUB_CLOSE,
  SC_OP_SUB_OPEN,
  SC_OP_SUB_CLOSE,
  SC_OP_LOAN,
  SC_OP_PUBLISH,
  SC_OP_PUBLISH_BLOCK,
  SC_OP_DISCARD,
  SC_OP_UPDATE,
  SC_OP_TAKE,
  SC_OP_TAKE_LATEST,
  SC_OP_RELEASE,
  SC_OP_LOST,
  SC_OP_WAIT,
  SC_OP_PUBLISHERS,
  SC_OP_CLEANUP,
  SC_OP_READ,
  SC_NOPS
};

static const struct {
  const char *name;
  int cls;
} sc_ops[SC_NOPS] = {
    [SC_OP_NONE] = {"(between calls)", C_REPORT},
    [SC_OP_NODE_OPEN] = {"node_open", C_REPORT},
    [SC_OP_NODE_CLOSE] = {"node_close", C_REPORT},
    [SC_OP_PUB_OPEN] = {"publisher_open", C_REPORT},
    [SC_OP_PUB_CLOSE] = {"publisher_close", C_REPORT},
    [SC_OP_SUB_OPEN] = {"subscriber_open", C_REPORT},
    [SC_OP_SUB_CLOSE] = {"subscriber_close", C_REPORT},
    [SC_OP_LOAN] = {"loan", C_NONBLOCK},
    [SC_OP_PUBLISH] = {"publish (drop-oldest)", C_NONBLOCK},
    [SC_OP_PUBLISH_BLOCK] = {"publish (BLOCK, timeout)", C_TIMED},
    [SC_OP_DISCARD] = {"discard", C_NONBLOCK},
    [SC_OP_UPDATE] = {"publisher_update", C_REPORT},
    [SC_OP_TAKE] = {"take", C_NONBLOCK},
    [SC_OP_TAKE_LATEST] = {"take_latest", C_NONBLOCK},
    [SC_OP_RELEASE] = {"release", C_NONBLOCK},
    [SC_OP_LOST] = {"subscriber_lost", C_NONBLOCK},
    [SC_OP_WAIT] = {"subscriber_wait (timeout)", C_TIMED},
    [SC_OP_PUBLISHERS] = {"subscriber_publishers", C_REPORT},
    [SC_OP_CLEANUP] = {"domain_cleanup", C_REPORT},
    [SC_OP_READ] = {"reading a taken payload", C_REPORT},
};

typedef struct sc_opstat {
  uint64_t calls;
  uint64_t max_ns; /* overrun (timed) or duration (others) */
  uint64_t over;   /* calls above SC_SLACK_NS */
  uint64_t err[SC_NERR];
} sc_opstat;

enum { SC_REPORT_MAGIC = 0x5343524942u };

typedef struct sc_report {
  uint64_t magic;
  uint64_t taken_valid, taken_garbled, changed_held, published, published_block, block_timeouts;
  uint64_t reopens, ctl_max_ns, ctl_samples;
  sc_opstat op[SC_NOPS];
} sc_report;
_Static_assert(sizeof(sc_report) % 8 == 0, "sc_report is sent as 64-bit words");
_Static_assert(sizeof(sc_report) <= sizeof(((sc_shared *)0)->live[0]), "sc_shared.live too small");

typedef struct sc_victim {
  const sc_run *run;
  sc_status *st;
  int index; /* 0..SC_VICTIMS-1: publishers first */
  uint64_t rng;
  sc_report *rep_; /* in the shared area: see sc_shared.live */
  shmbus_node *node;
  pthread_t ctl;
  int ctl_started;
  uint32_t ctl_stop;
} sc_victim;

static uint64_t sc_begin(sc_victim *v, int op) {
  uint64_t t = ts_now_ns();
  __atomic_store_n(&v->st->op_start_ns, t, __ATOMIC_RELAXED);
  STORE(v->st->op, (uint32_t)op);
  return t;
}

/* Records one call that started at t0 with the given timeout (0 for a
 * non-blocking call); returns rc. */
static int sc_end(sc_victim *v, int op, uint64_t t0, uint64_t timeout_ns, int rc) {
  uint64_t d = ts_now_ns() - t0;
  STORE(v->st->op, (uint32_t)SC_OP_NONE);
  uint64_t val = d > timeout_ns ? d - timeout_ns : 0;
  sc_opstat *s = &v->rep_->op[op];
  s->calls++;
  if (val > s->max_ns) s->max_ns = val;
  if (val > SC_SLACK_NS) s->over++;
  if (rc < 0) s->err[sc_err_index(rc)]++;
  return rc;
}

static uint64_t sc_hang_limit(const sc_run *run, uint32_t op) {
  /* Cleanup opens every object of the domain, each within the 2 s that
   * opening allows: many forged objects make it long, not hung. */
  return op == SC_OP_CLEANUP ? 6 * run->hang_ns : run->hang_ns;
}

/* The control thread: measures what a plain nanosleep overruns (the
 * scheduling delay of this process at this moment) and ends the process
 * when one library call has run for longer than the hang limit. */
static void *sc_control(void *arg) {
  sc_victim *v = arg;
  uint64_t rng = sc_seed(0xc0);
  while (!LOAD(v->ctl_stop)) {
    uint64_t over = ts_sleep_overrun_ns(sc_below(&rng, 2 * SC_MS));
    if (over > LOAD(v->rep_->ctl_max_ns)) STORE(v->rep_->ctl_max_ns, over);
    ADD(v->rep_->ctl_samples, 1);
    uint32_t op = LOAD(v->st->op);
    uint64_t start = __atomic_load_n(&v->st->op_start_ns, __ATOMIC_RELAXED);
    uint64_t now = ts_now_ns();
    if (op != SC_OP_NONE && op < SC_NOPS && now > start &&
        now - start > sc_hang_limit(v->run, op)) {
      fprintf(stderr, "scribbler: victim %d (pid %ld): HANG: %s has run for %.1f s\n", v->index,
              (long)getpid(), sc_ops[op].name, (double)(now - start) / 1e9);
      fflush(stderr);
      _exit(SC_EXIT_HANG);
    }
  }
  return NULL;
}

static int sc_victim_start(sc_victim *v, const sc_run *run, int index) {
  memset(v, 0, sizeof *v);
  v->run = run;
  v->index = index;
  v->st = &run->sh->victim[index];
  v->rng = sc_seed((uint64_t)index + 1);
  v->rep_ = (sc_report *)run->sh->live[index];
  memset(v->rep_, 0, sizeof *v->rep_);
  v->rep_->magic = SC_REPORT_MAGIC;
  STORE(v->st->op, (uint32_t)SC_OP_NONE);
  alarm((unsigned)(run->seconds_ns / SC_S) + 120); /* the backstop of the control thread */
  if (pthread_create(&v->ctl, NULL, sc_control, v) != 0) return -1;
  v->ctl_started = 1;
  shmbus_node_opts o = SHMBUS_NODE_OPTS_INIT;
  o.domain = run->env->domain;
  o.backend = run->env->backend;
  o.root = run->env->dir;
  while (v->node == NULL && !LOAD(run->sh->stop_victims)) {
    uint64_t t0 = sc_begin(v, SC_OP_NODE_OPEN);
    int r = sc_end(v, SC_OP_NODE_OPEN, t0, 0, shmbus_node_open(&o, &v->node));
    if (r) {
      v->node = NULL;
      sc_sleep_ns(SC_MS);
    }
  }
  return 0;
}

/* Closes the node, stops the control thread and sends the report. */
static int sc_victim_finish(ts_child *self, sc_victim *v) {
  if (v->node) {
    uint64_t t0 = sc_begin(v, SC_OP_NODE_CLOSE);
    shmbus_node_close(v->node);
    sc_end(v, SC_OP_NODE_CLOSE, t0, 0, 0);
    v->node = NULL;
  }
  STORE(v->ctl_stop, 1);
  if (v->ctl_started) pthread_join(v->ctl, NULL);
  TS_CHECK(sc_send_words(self->up[1], (const uint64_t *)v->rep_, sizeof *v->rep_ / 8) == 0);
  return 0;
}

static uint64_t sc_reopen_at(sc_victim *v) {
  return ts_now_ns() + 100 * SC_MS + sc_below(&v->rng, 700 * SC_MS);
}

/* ---- publisher victim ---------------------------------------------------- */

typedef struct sc_pub_port {
  shmbus_publisher *pub;
  uint64_t retry_at, reopen_at, seq;
} sc_pub_port;

static void sc_pub_close(sc_victim *v, sc_pub_port *p) {
  if (p->pub == NULL) return;
  uint64_t t0 = sc_begin(v, SC_OP_PUB_CLOSE);
  shmbus_publisher_close(p->pub);
  sc_end(v, SC_OP_PUB_CLOSE, t0, 0, 0);
  p->pub = NULL;
  p->retry_at = ts_now_ns() + sc_below(&v->rng, 2 * SC_MS);
}

static void sc_pub_ensure(sc_victim *v, sc_pub_port *p, int svc) {
  uint64_t now = ts_now_ns();
  if (p->pub != NULL && now >= p->reopen_at) sc_pub_close(v, p);
  if (p->pub != NULL || now < p->retry_at) return;
  uint64_t t0 = sc_begin(v, SC_OP_PUB_OPEN);
  int r =
      sc_end(v, SC_OP_PUB_OPEN, t0, 0,
             shmbus_publisher_open(v->node, v->run->svc_name[svc], &v->run->opts[svc], &p->pub));
  if (r) {
    p->pub = NULL;
    p->retry_at = ts_now_ns() + SC_MS + sc_below(&v->rng, 4 * SC_MS);
    return;
  }
  v->rep_->reopens++;
  p->reopen_at = sc_reopen_at(v);
}

/* One sample on service A (drop-oldest): loan, fill, publish or discard. */
static void sc_pub_step_a(sc_victim *v, sc_pub_port *p) {
  void *payload = NULL;
  uint64_t t0 = sc_begin(v, SC_OP_LOAN);
  int r = sc_end(v, SC_OP_LOAN, t0, 0, shmbus_publisher_loan(p->pub, 1, &payload));
  if (r) {
    sc_pub_close(v, p);
    return;
  }
  ts_sample_fill(payload, (uint64_t)v->index + 1, p->seq++);
  if (sc_below(&v->rng, 16) == 0) {
    t0 = sc_begin(v, SC_OP_DISCARD);
    r = sc_end(v, SC_OP_DISCARD, t0, 0, shmbus_publisher_discard(p->pub, payload));
  } else {
    t0 = sc_begin(v, SC_OP_PUBLISH);
    r = sc_end(v, SC_OP_PUBLISH, t0, 0, shmbus_publisher_publish(p->pub, payload));
    if (r == 0) v->rep_->published++;
    if (r && r != SHMBUS_ERR_NOT_LOANED) {
      t0 = sc_begin(v, SC_OP_DISCARD);
      sc_end(v, SC_OP_DISCARD, t0, 0, shmbus_publisher_discard(p->pub, payload));
    }
  }
  if (r) sc_pub_close(v, p);
}

/* One sample on service B (BLOCK): the publish waits at most its timeout. */
static void sc_pub_step_b(sc_victim *v, sc_pub_port *p) {
  static const uint64_t timeouts[] = {0, SC_MS / 2, SC_MS, 2 * SC_MS, 5 * SC_MS};
  uint64_t timeout = timeouts[sc_below(&v->rng, sizeof timeouts / sizeof timeouts[0])];
  if (shmbus_publisher_set_block_timeout(p->pub, (int64_t)timeout) != 0) {
    sc_pub_close(v, p);
    return;
  }
  void *payload = NULL;
  uint64_t t0 = sc_begin(v, SC_OP_LOAN);
  int r = sc_end(v, SC_OP_LOAN, t0, 0, shmbus_publisher_loan(p->pub, 1, &payload));
  if (r) {
    sc_pub_close(v, p);
    return;
  }
  ts_sample_fill(payload, (uint64_t)v->index + 101, p->seq++);
  t0 = sc_begin(v, SC_OP_PUBLISH_BLOCK);
  r = sc_end(v, SC_OP_PUBLISH_BLOCK, t0, timeout, shmbus_publisher_publish(p->pub, payload));
  if (r == 0) {
    v->rep_->published_block++;
    return;
  }
  if (r == SHMBUS_ERR_TIMEDOUT) v->rep_->block_timeouts++;
  if (r != SHMBUS_ERR_NOT_LOANED) {
    t0 = sc_begin(v, SC_OP_DISCARD);
    int d = sc_end(v, SC_OP_DISCARD, t0, 0, shmbus_publisher_discard(p->pub, payload));
    if (d) r = d;
  }
  if (r != SHMBUS_ERR_TIMEDOUT && r != SHMBUS_ERR_PEER_DEAD) sc_pub_close(v, p);
}

static int sc_victim_publisher(ts_child *self, void *arg) {
  const sc_run *run = ((const sc_arg *)arg)->run;
  int index = ((const sc_arg *)arg)->index;
  sc_victim v;
  TS_CHECK(sc_victim_start(&v, run, index) == 0);
  sc_pub_port ports[SC_NSVC];
  memset(ports, 0, sizeof ports);
  while (!LOAD(run->sh->stop_victims)) {
    for (int s = 0; s < SC_NSVC; s++) {
      sc_pub_ensure(&v, &ports[s], s);
      if (ports[s].pub == NULL) continue;
      if (s == SC_SVC_A)
        sc_pub_step_a(&v, &ports[s]);
      else
        sc_pub_step_b(&v, &ports[s]);
      if (ports[s].pub != NULL && sc_below(&v.rng, 64) == 0) {
        uint64_t t0 = sc_begin(&v, SC_OP_UPDATE);
        int r = sc_end(&v, SC_OP_UPDATE, t0, 0, shmbus_publisher_update(ports[s].pub));
        if (r < 0) sc_pub_close(&v, &ports[s]);
      }
    }
    sc_sleep_ns(100 * 1000 + sc_below(&v.rng, 300 * 1000));
  }
  for (int s = 0; s < SC_NSVC; s++) sc_pub_close(&v, &ports[s]);
  return sc_victim_finish(self, &v);
}

/* ---- subscriber victim ----------------------------------------------------- */

enum { SC_MAX_HELD = 8 };

typedef struct sc_sub_port {
  shmbus_subscriber *sub;
  uint64_t retry_at, reopen_at;
  shmbus_sample held[SC_MAX_HELD];
  int held_valid[SC_MAX_HELD];
  uint32_t nheld;
} sc_sub_port;

static void sc_sub_close(sc_victim *v, sc_sub_port *p) {
  if (p->sub == NULL) return;
  uint64_t t0 = sc_begin(v, SC_OP_SUB_CLOSE);
  shmbus_subscriber_close(p->sub); /* releases what we held */
  sc_end(v, SC_OP_SUB_CLOSE, t0, 0, 0);
  p->sub = NULL;
  p->nheld = 0;
  p->retry_at = ts_now_ns() + sc_below(&v->rng, 2 * SC_MS);
}

static void sc_sub_ensure(sc_victim *v, sc_sub_port *p, int svc) {
  uint64_t now = ts_now_ns();
  if (p->sub != NULL && now >= p->reopen_at) sc_sub_close(v, p);
  if (p->sub != NULL || now < p->retry_at) return;
  uint64_t t0 = sc_begin(v, SC_OP_SUB_OPEN);
  int r =
      sc_end(v, SC_OP_SUB_OPEN, t0, 0,
             shmbus_subscriber_open(v->node, v->run->svc_name[svc], &v->run->opts[svc], &p->sub));
  if (r) {
    p->sub = NULL;
    p->retry_at = ts_now_ns() + SC_MS + sc_below(&v->rng, 4 * SC_MS);
    return;
  }
  v->rep_->reopens++;
  p->reopen_at = sc_reopen_at(v);
}

/* Reads a taken payload (peers may have garbled it: counted, not failed). */
static int sc_payload_ok(sc_victim *v, const shmbus_sample *s) {
  uint64_t t0 = sc_begin(v, SC_OP_READ);
  int ok = s->payload != NULL && s->bytes == sizeof(ts_sample) && ts_sample_valid(s->payload);
  sc_end(v, SC_OP_READ, t0, 0, 0);
  return ok;
}

/* Releases held sample i (checking it again first). 0, or the error. */
static int sc_release(sc_victim *v, sc_sub_port *p, uint32_t i) {
  int ok = sc_payload_ok(v, &p->held[i]);
  if (p->held_valid[i] && !ok) v->rep_->changed_held++;
  uint64_t t0 = sc_begin(v, SC_OP_RELEASE);
  int r = sc_end(v, SC_OP_RELEASE, t0, 0, shmbus_subscriber_release(p->sub, &p->held[i]));
  p->nheld--;
  p->held[i] = p->held[p->nheld];
  p->held_valid[i] = p->held_valid[p->nheld];
  return r;
}

static void sc_sub_step_a(sc_victim *v, sc_sub_port *p) {
  static const uint64_t timeouts[] = {0, 100 * 1000, SC_MS, 5 * SC_MS, 20 * SC_MS};
  uint32_t max_held = v->run->opts[SC_SVC_A].max_held;
  uint64_t timeout = timeouts[sc_below(&v->rng, sizeof timeouts / sizeof timeouts[0])];
  uint64_t t0 = sc_begin(v, SC_OP_WAIT);
  int r = sc_end(v, SC_OP_WAIT, t0, timeout, shmbus_subscriber_wait(p->sub, (int64_t)timeout));
  if (r == SHMBUS_ERR_HOLD_LIMIT && p->nheld > 0) r = sc_release(v, p, 0);
  if (r != 0 && r != SHMBUS_ERR_TIMEDOUT && r != SHMBUS_ERR_NO_PUBLISHER &&
      r != SHMBUS_ERR_HOLD_LIMIT) {
    sc_sub_close(v, p);
    return;
  }
  for (int n = 0; n < 4; n++) {
    if (p->nheld >= max_held - 1 && (r = sc_release(v, p, 0)) != 0) {
      sc_sub_close(v, p);
      return;
    }
    shmbus_sample s;
    int latest = sc_below(&v->rng, 4) == 0;
    int op = latest ? SC_OP_TAKE_LATEST : SC_OP_TAKE;
    t0 = sc_begin(v, op);
    r = sc_end(
        v, op, t0, 0,
        latest ? shmbus_subscriber_take_latest(p->sub, &s) : shmbus_subscriber_take(p->sub, &s));
    if (r == SHMBUS_ERR_EMPTY) break;
    if (r) {
      sc_sub_close(v, p);
      return;
    }
    int ok = sc_payload_ok(v, &s);
    if (ok)
      v->rep_->taken_valid++;
    else
      v->rep_->taken_garbled++;
    p->held[p->nheld] = s;
    p->held_valid[p->nheld] = ok;
    p->nheld++;
    if (sc_below(&v->rng, 2) == 0 && sc_release(v, p, p->nheld - 1) != 0) {
      sc_sub_close(v, p);
      return;
    }
  }
  t0 = sc_begin(v, SC_OP_LOST);
  (void)shmbus_subscriber_lost(p->sub);
  sc_end(v, SC_OP_LOST, t0, 0, 0);
  if (sc_below(&v->rng, 32) == 0) {
    t0 = sc_begin(v, SC_OP_PUBLISHERS);
    if (sc_end(v, SC_OP_PUBLISHERS, t0, 0, shmbus_subscriber_publishers(p->sub)) < 0)
      sc_sub_close(v, p);
  }
}

/* Service B: take and release what is queued, so that BLOCK publishes get
 * room now and then. */
static void sc_sub_step_b(sc_victim *v, sc_sub_port *p) {
  for (int n = 0; n < 4; n++) {
    shmbus_sample s;
    uint64_t t0 = sc_begin(v, SC_OP_TAKE);
    int r = sc_end(v, SC_OP_TAKE, t0, 0, shmbus_subscriber_take(p->sub, &s));
    if (r == SHMBUS_ERR_EMPTY) return;
    if (r) {
      sc_sub_close(v, p);
      return;
    }
    if (sc_payload_ok(v, &s))
      v->rep_->taken_valid++;
    else
      v->rep_->taken_garbled++;
    t0 = sc_begin(v, SC_OP_RELEASE);
    if (sc_end(v, SC_OP_RELEASE, t0, 0, shmbus_subscriber_release(p->sub, &s)) != 0) {
      sc_sub_close(v, p);
      return;
    }
  }
}

static int sc_victim_subscriber(ts_child *self, void *arg) {
  const sc_run *run = ((const sc_arg *)arg)->run;
  int index = ((const sc_arg *)arg)->index;
  sc_victim v;
  TS_CHECK(sc_victim_start(&v, run, index) == 0);
  sc_sub_port ports[SC_NSVC];
  memset(ports, 0, sizeof ports);
  uint64_t next_cleanup = ts_now_ns() + 500 * SC_MS;
  while (!LOAD(run->sh->stop_victims)) {
    for (int s = 0; s < SC_NSVC; s++) {
      sc_sub_ensure(&v, &ports[s], s);
      if (ports[s].sub == NULL) continue;
      if (s == SC_SVC_A)
        sc_sub_step_a(&v, &ports[s]);
      else
        sc_sub_step_b(&v, &ports[s]);
    }
    if (ports[SC_SVC_A].sub == NULL) sc_sleep_ns(200 * 1000);
    if (index == SC_PUBS && ts_now_ns() >= next_cleanup) {
      uint64_t t0 = sc_begin(&v, SC_OP_CLEANUP);
      sc_end(&v, SC_OP_CLEANUP, t0, 0, shmbus_domain_cleanup(v.node));
      next_cleanup = ts_now_ns() + 500 * SC_MS + sc_below(&v.rng, 1000 * SC_MS);
    }
  }
  for (int s = 0; s < SC_NSVC; s++) sc_sub_close(&v, &ports[s]);
  return sc_victim_finish(self, &v);
}

/* ======================================================================== */
/* The scribbler: attackers                                                 */
/* ======================================================================== */

enum { SC_MAX_OBJS = 128, SC_MAP_CAP = 16 << 20 };

typedef struct sc_obj {
  char name[SHMBUS__OBJECT_NAME_MAX];
  int kind; /* T_* */
  int svc;  /* SC_SVC_A, SC_SVC_B or -1 */
} sc_obj;

typedef struct sc_attacker {
  const sc_run *run;
  sc_shared *sh;
  int index;
  uint64_t rng;
  sc_obj objs[SC_MAX_OBJS];
  int nobjs;
  uint64_t aside_count;
  uint64_t cursor[3];
  uint64_t bad_since[SC_NSVC];
  char prefix[64];
  sc_log_entry *cur; /* the log entry of the action in progress */
} sc_attacker;

/* SIGBUS while an attacker writes into an object another one truncated. */
static sigjmp_buf sc_jmp;
static volatile sig_atomic_t sc_guarded;

static void sc_on_sigbus(int sig, siginfo_t *info, void *ctx) {
  (void)info;
  (void)ctx;
  if (sc_guarded) {
    sc_guarded = 0;
    siglongjmp(sc_jmp, 1);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

static void sc_path(const sc_attacker *a, const char *name, char *out, size_t cap) {
  ts_object_path(out, cap, a->run->env->dir, name);
}

static void sc_aside_name(sc_attacker *a, char *out, size_t cap) {
  snprintf(out, cap, "%szz%d-%" PRIu64, a->prefix, a->index, ++a->aside_count);
}

static int sc_svc_of(const sc_attacker *a, const char *rest) {
  for (int s = 0; s < SC_NSVC; s++) {
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, a->run->hash[s]);
    if (strncmp(rest, hex, 16) == 0) return s;
  }
  return -1;
}

static int sc_has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void sc_list(sc_attacker *a) {
  a->nobjs = 0;
  DIR *d = opendir(a->run->env->dir ? a->run->env->dir : "/dev/shm");
  if (d == NULL) return;
  size_t plen = strlen(a->prefix);
  struct dirent *e;
  while ((e = readdir(d)) != NULL && a->nobjs < SC_MAX_OBJS) {
    if (strncmp(e->d_name, a->prefix, plen) != 0 || strlen(e->d_name) >= SHMBUS__OBJECT_NAME_MAX)
      continue;
    const char *rest = e->d_name + plen;
    sc_obj *o = &a->objs[a->nobjs];
    memcpy(o->name, e->d_name, strlen(e->d_name) + 1); /* shorter: checked above */
    o->svc = -1;
    if (strncmp(rest, "n.", 2) == 0)
      o->kind = T_TOKEN;
    else if (strncmp(rest, "zz", 2) == 0)
      o->kind = T_OTHER;
    else if (sc_has_suffix(rest, ".s"))
      o->kind = T_SERVICE;
    else if (sc_has_suffix(rest, ".d"))
      o->kind = T_DATA;
    else if (sc_has_suffix(rest, ".c"))
      o->kind = T_CONTROL;
    else
      o->kind = T_OTHER;
    if (o->kind != T_TOKEN && o->kind != T_OTHER) o->svc = sc_svc_of(a, rest);
    a->nobjs++;
  }
  closedir(d);
}

/* A random object of one of the kinds in `mask` (1 << T_*), optionally of
 * a known service only. */
static const sc_obj *sc_pick(sc_attacker *a, unsigned mask, int known_svc) {
  int idx[SC_MAX_OBJS], n = 0;
  for (int i = 0; i < a->nobjs; i++)
    if ((mask >> a->objs[i].kind) & 1u && (!known_svc || a->objs[i].svc >= 0)) idx[n++] = i;
  return n ? &a->objs[idx[sc_below(&a->rng, (uint64_t)n)]] : NULL;
}

/* A mapping of an object, read-write, at most SC_MAP_CAP bytes. */
typedef struct sc_map {
  uint8_t *p;
  size_t len;
} sc_map;

static int sc_map_open(sc_attacker *a, const char *name, sc_map *m) {
  char path[2048];
  sc_path(a, name, path, sizeof path);
  m->p = NULL;
  m->len = 0;
  int fd = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 8) {
    close(fd);
    return -1;
  }
  size_t len = (uint64_t)st.st_size > SC_MAP_CAP ? SC_MAP_CAP : (size_t)st.st_size;
  len &= ~(size_t)7;
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return -1;
  m->p = p;
  m->len = len;
  return 0;
}

static void sc_map_close(sc_map *m) {
  if (m->p) munmap(m->p, m->len);
  m->p = NULL;
}

static uint64_t sc_expected_size(const sc_attacker *a, const sc_obj *o) {
  int s = o->svc >= 0 ? o->svc : 0;
  const shmbus__layout *l = &a->run->layout[s];
  switch (o->kind) {
  case T_SERVICE: return l->service_size;
  case T_DATA: return l->data_size;
  case T_CONTROL: return l->control_size;
  default: return 64;
  }
}

static void sc_cover(sc_attacker *a, int kind, uint64_t word) {
  if (kind > T_CONTROL || word >= SC_COVER_WORDS) return;
  __atomic_fetch_or(&a->sh->cover[kind][word / 64], UINT64_C(1) << (word % 64), __ATOMIC_RELAXED);
}

static void sc_pause(sc_attacker *a) {
  uint64_t n = sc_below(&a->rng, 4);
  if (n == 0)
    sched_yield();
  else
    for (volatile uint64_t i = 0; i < n * 200; i++) {
    }
}

/* A short hold: a victim may be inside any call meanwhile. */
static void sc_hold(sc_attacker *a, uint64_t max_ns) { sc_sleep_ns(sc_below(&a->rng, max_ns)); }

/* Mostly short, a quarter of the time ten times longer: long enough to
 * outlast a victim's timeouts and the allowance. */
static void sc_hold_tail(sc_attacker *a, uint64_t max_ns) {
  sc_hold(a, sc_below(&a->rng, 4) == 0 ? 10 * max_ns : max_ns);
}

/* One word operation; returns the variant done. */
static void sc_word_op(sc_attacker *a, uint64_t *w, int variant) {
  uint64_t v = sc_next(&a->rng);
  uint32_t *half = (uint32_t *)w;
  switch (variant) {
  case W_RANDOM: __atomic_store_n(w, v, __ATOMIC_RELAXED); break;
  case W_INC: __atomic_fetch_add(w, 1, __ATOMIC_RELAXED); break;
  case W_DEC: __atomic_fetch_sub(w, 1, __ATOMIC_RELAXED); break;
  case W_TORN: /* both halves, a pause between them */
    __atomic_store_n(&half[0], (uint32_t)v, __ATOMIC_RELAXED);
    sc_pause(a);
    __atomic_store_n(&half[1], (uint32_t)(v >> 32), __ATOMIC_RELAXED);
    break;
  case W_HALF: /* one half only, for good */
    __atomic_store_n(&half[v & 1], (uint32_t)(v >> 32), __ATOMIC_RELAXED);
    break;
  case W_FLIP: { /* a value for a moment, then the old one back */
    uint64_t old = __atomic_load_n(w, __ATOMIC_RELAXED);
    __atomic_store_n(w, v, __ATOMIC_RELAXED);
    sc_pause(a);
    __atomic_compare_exchange_n(w, &v, old, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    break;
  }
  default: __atomic_store_n(w, sc_below(&a->rng, 300), __ATOMIC_RELAXED); break;
  }
}

typedef struct sc_action {
  int kind, variant, target;
  int hit;
} sc_action;

/* Names the action in the log before it does anything. */
static void sc_note(sc_attacker *a, const sc_action *act) {
  STORE(a->cur->variant, (uint32_t)act->variant);
  STORE(a->cur->target, (uint32_t)act->target);
}

/* Random words (K_WORD) or a window of consecutive words (K_SWEEP). */
static void sc_attack_words(sc_attacker *a, sc_action *act, int sweep) {
  if (!sweep) act->variant = (int)sc_below(&a->rng, W_VARIANTS);
  const sc_obj *o = sc_pick(a, 1u << T_SERVICE | 1u << T_DATA | 1u << T_CONTROL, 0);
  if (o == NULL) return;
  act->target = o->kind;
  sc_note(a, act);
  sc_map m;
  if (sc_map_open(a, o->name, &m) != 0) return;
  uint64_t words = m.len / 8, want = sc_expected_size(a, o) / 8;
  if (want > 0 && want < words && sc_below(&a->rng, 8) != 0) words = want;
  uint64_t *w = (uint64_t *)m.p;
  if (sigsetjmp(sc_jmp, 1) == 0) {
    sc_guarded = 1;
    if (sweep) {
      uint64_t n = 16 + sc_below(&a->rng, 512);
      uint64_t c = a->cursor[o->kind] % words;
      for (uint64_t i = 0; i < n; i++, c = (c + 1) % words) {
        sc_word_op(a, &w[c], (int)sc_below(&a->rng, W_VARIANTS));
        sc_cover(a, o->kind, c);
      }
      a->cursor[o->kind] = c;
    } else {
      uint64_t n = 1 + sc_below(&a->rng, 32);
      for (uint64_t i = 0; i < n; i++) {
        uint64_t c = sc_below(&a->rng, words);
        sc_word_op(a, &w[c], act->variant);
        sc_cover(a, o->kind, c);
      }
    }
    act->hit = 1;
    sc_guarded = 0;
  } else {
    ADD(a->sh->attacker_sigbus, 1);
  }
  sc_map_close(&m);
}

static void sc_attack_truncate(sc_attacker *a, sc_action *act) {
  const sc_obj *o = sc_pick(a, 1u << T_SERVICE | 1u << T_DATA | 1u << T_CONTROL, 0);
  if (o == NULL) return;
  act->target = o->kind;
  act->variant = (int)sc_below(&a->rng, TR_VARIANTS);
  if (act->variant == TR_0_KEPT && o->kind == T_SERVICE) act->variant = TR_0;
  sc_note(a, act);
  char path[2048];
  sc_path(a, o->name, path, sizeof path);
  int fd = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return;
  }
  off_t size = st.st_size, to = 0;
  switch (act->variant) {
  case TR_64: to = 64; break;
  case TR_HALF: to = size / 2; break;
  case TR_MINUS1: to = size > 0 ? size - 1 : 0; break;
  case TR_PAGE: to = size + 4096; break;
  case TR_HUGE: to = (off_t)1 << 40; break;
  default: to = 0; break;
  }
  if (ftruncate(fd, to) == 0) {
    act->hit = 1;
    if (act->variant != TR_0_KEPT) {
      sc_hold(a, sc_below(&a->rng, 4) == 0 ? 20 * SC_MS : 3 * SC_MS);
      if (fstat(fd, &st) == 0 && st.st_size == to && ftruncate(fd, size) != 0) {
      }
    }
  }
  close(fd);
}

/* Creates `path` exclusively with `len` bytes from `data` (NULL: random). */
static int sc_create_file(sc_attacker *a, const char *path, const void *data, size_t len) {
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  uint8_t buf[4096];
  size_t done = 0;
  int ok = 1;
  while (done < len && ok) {
    size_t n = len - done < sizeof buf ? len - done : sizeof buf;
    const void *src = data ? (const uint8_t *)data + done : buf;
    if (data == NULL)
      for (size_t i = 0; i < n; i += 8) {
        uint64_t v = sc_next(&a->rng);
        memcpy(buf + i, &v, n - i < 8 ? n - i : 8);
      }
    ssize_t w = pwrite(fd, src, n, (off_t)done);
    if (w <= 0)
      ok = 0;
    else
      done += (size_t)w;
  }
  close(fd);
  return ok ? 0 : -1;
}

/* Copies an object's bytes (at most SC_MAP_CAP) into malloc'd memory. */
static void *sc_read_object(sc_attacker *a, const char *name, size_t *len) {
  char path[2048];
  sc_path(a, name, path, sizeof path);
  *len = 0;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return NULL;
  struct stat st;
  void *buf = NULL;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 && st.st_size <= SC_MAP_CAP) {
    buf = malloc((size_t)st.st_size);
    ssize_t got = buf ? pread(fd, buf, (size_t)st.st_size, 0) : -1;
    if (got != st.st_size) {
      free(buf);
      buf = NULL;
    } else {
      *len = (size_t)got;
    }
  }
  close(fd);
  return buf;
}

/* Swaps: the object goes aside under a name of the domain, something else
 * takes its name, then the object comes back (rename replaces). */
static int sc_swap_lock(sc_attacker *a) {
  return __atomic_exchange_n(&a->sh->swap_lock, 1u, __ATOMIC_ACQUIRE) == 0;
}
static void sc_swap_unlock(sc_attacker *a) { STORE(a->sh->swap_lock, 0u); }

/* Takes the swap lock and moves a regular object aside; 0 on success (the
 * caller then calls sc_swap_back). */
static int sc_swap_out(sc_attacker *a, const char *name, char *aside_path, size_t cap) {
  char path[2048], aside[SHMBUS__OBJECT_NAME_MAX + 16];
  struct stat st;
  sc_path(a, name, path, sizeof path);
  if (!sc_swap_lock(a)) return -1;
  if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
    sc_swap_unlock(a);
    return -1;
  }
  sc_aside_name(a, aside, sizeof aside);
  sc_path(a, aside, aside_path, cap);
  if (rename(path, aside_path) != 0) {
    sc_swap_unlock(a);
    return -1;
  }
  return 0;
}

/* Puts the object back over whatever took its name; drops the lock. */
static void sc_swap_back(sc_attacker *a, const char *name, const char *aside_path) {
  char path[2048];
  sc_path(a, name, path, sizeof path);
  if (rename(aside_path, path) != 0) {
    unlink(path); /* never leave our FIFO or link behind */
    unlink(aside_path);
  }
  sc_swap_unlock(a);
}

static void sc_attack_replace(sc_attacker *a, sc_action *act) {
  const sc_obj *o = sc_pick(a, 1u << T_SERVICE | 1u << T_DATA | 1u << T_CONTROL, 0);
  if (o == NULL) return;
  act->target = o->kind;
  act->variant = (int)sc_below(&a->rng, RP_VARIANTS);
  sc_note(a, act);
  char path[2048], aside[2048];
  sc_path(a, o->name, path, sizeof path);
  size_t len;
  uint8_t *copy = sc_read_object(a, o->name, &len);
  if (act->variant == RP_COPY) {
    /* Unlink and create a new object under the name: for good. */
    if (copy != NULL && sc_swap_lock(a)) {
      struct stat st;
      if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && unlink(path) == 0 &&
          sc_create_file(a, path, copy, len) == 0)
        act->hit = 1;
      sc_swap_unlock(a);
    }
    free(copy);
    return;
  }
  if (sc_swap_out(a, o->name, aside, sizeof aside) != 0) {
    free(copy);
    return;
  }
  int made = -1;
  if (act->variant == RP_GARBAGE)
    made = sc_create_file(a, path, NULL, 64 + (size_t)sc_below(&a->rng, 2 * (len ? len : 4096)));
  else if (act->variant == RP_HEADER)
    made =
        copy && len >= 64 ? sc_create_file(a, path, copy, 64) : sc_create_file(a, path, NULL, 64);
  else
    made = sc_create_file(a, path, NULL, 0);
  act->hit = made == 0;
  sc_hold(a, 10 * SC_MS);
  sc_swap_back(a, o->name, aside);
  free(copy);
}

static void sc_attack_unlink(sc_attacker *a, sc_action *act) {
  /* One per 250 ms over all attackers: unlinking is so cheap that more
   * would keep the names away almost all the time (the victims recreate
   * them only when they reopen) and starve every other attack. */
  uint64_t last = LOAD(a->sh->last_unlink_ns), now = ts_now_ns();
  if (now - last < 250 * SC_MS ||
      !__atomic_compare_exchange_n(&a->sh->last_unlink_ns, &last, now, 0, __ATOMIC_RELAXED,
                                   __ATOMIC_RELAXED))
    return;
  const sc_obj *o = sc_pick(a, 1u << T_SERVICE | 1u << T_DATA | 1u << T_CONTROL, 0);
  if (o == NULL) return;
  act->target = o->kind;
  sc_note(a, act);
  char path[2048];
  sc_path(a, o->name, path, sizeof path);
  act->hit = unlink(path) == 0;
}

static void sc_attack_fifo(sc_attacker *a, sc_action *act, unsigned mask) {
  const sc_obj *o = sc_pick(a, mask, 0);
  if (o == NULL) return;
  act->target = o->kind;
  sc_note(a, act);
  char path[2048], aside[2048];
  sc_path(a, o->name, path, sizeof path);
  if (sc_swap_out(a, o->name, aside, sizeof aside) != 0) return;
  act->hit = mkfifo(path, 0600) == 0;
  sc_hold(a, 10 * SC_MS);
  sc_swap_back(a, o->name, aside);
}

static void sc_attack_symlink(sc_attacker *a, sc_action *act, unsigned mask, int variant) {
  const sc_obj *o = sc_pick(a, mask, 0);
  if (o == NULL) return;
  act->target = o->kind;
  act->variant = variant;
  sc_note(a, act);
  char path[2048], aside[2048], other[2048];
  sc_path(a, o->name, path, sizeof path);
  const sc_obj *x = sc_pick(a, 1u << o->kind, 0);
  if (x != NULL)
    sc_path(a, x->name, other, sizeof other);
  else
    snprintf(other, sizeof other, "/dev/zero");
  if (sc_swap_out(a, o->name, aside, sizeof aside) != 0) return;
  const char *to = variant == SL_SELF      ? aside
                   : variant == SL_DEVZERO ? "/dev/zero"
                   : variant == SL_OTHER   ? other
                                           : "/nonexistent/shmbus-scribbler";
  act->hit = symlink(to, path) == 0;
  sc_hold(a, 10 * SC_MS);
  sc_swap_back(a, o->name, aside);
}

/* ---- targeted forging -------------------------------------------------- */

/* The word at byte offset `off` of a mapping, or NULL when out of it. */
static void *sc_at(const sc_map *m, uint64_t off, size_t size) {
  return off + size <= m->len && off % size == 0 ? m->p + off : NULL;
}

/* Maps the live service segment of a known service. */
static int sc_map_service(sc_attacker *a, int *svc, sc_map *m) {
  *svc = (int)sc_below(&a->rng, SC_NSVC);
  return sc_map_open(a, a->run->svc_object[*svc], m);
}

static uint64_t *sc_slot_word(const sc_attacker *a, const sc_map *m, int svc, int kind, uint32_t i,
                              size_t field) {
  uint64_t off = SC_SLOT_OFFSET(&a->run->layout[svc], &a->run->cfg[svc], kind, i) + field;
  return sc_at(m, off, 8);
}

static void sc_bump_generation(const sc_map *m, int kind) {
  uint64_t off = offsetof(shmbus__service_seg, dyn) +
                 (kind == SHMBUS__PUBLISHER ? offsetof(shmbus__service_dyn, pub_generation)
                                            : offsetof(shmbus__service_dyn, sub_generation));
  uint64_t *g = sc_at(m, off, 8);
  if (g) __atomic_fetch_add(g, 1, __ATOMIC_RELEASE);
}

/* A live node id from some ready slot, or a random (dead) one. */
static uint64_t sc_some_node_id(sc_attacker *a, const sc_map *m, int svc) {
  const shmbus__service_config *cfg = &a->run->cfg[svc];
  uint32_t n = cfg->max_publishers + cfg->max_subscribers;
  for (uint32_t tries = 0; tries < n; tries++) {
    uint32_t j = (uint32_t)sc_below(&a->rng, n);
    int kind = j < cfg->max_publishers ? SHMBUS__PUBLISHER : SHMBUS__SUBSCRIBER;
    uint32_t i = kind == SHMBUS__PUBLISHER ? j : j - cfg->max_publishers;
    uint64_t *w = sc_slot_word(a, m, svc, kind, i, offsetof(shmbus__port_slot, node_id));
    uint64_t id = w ? __atomic_load_n(w, __ATOMIC_RELAXED) : 0;
    if (id) return id;
  }
  return 1 + sc_below(&a->rng, UINT64_C(1) << 62);
}

/* Makes a phantom publisher's objects (pub_id's ".d" and ".c"). */
static void sc_phantom_objects(sc_attacker *a, int variant, int svc, uint64_t id, int make) {
  const char *domain = a->run->env->domain;
  for (int data = 0; data < 2; data++) {
    char name[SHMBUS__OBJECT_NAME_MAX], path[2048];
    shmbus__publisher_object_name(name, domain, a->run->hash[svc], id, data);
    sc_path(a, name, path, sizeof path);
    if (!make) {
      unlink(path);
      continue;
    }
    switch (variant) {
    case SLOT_PH_FIFO: (void)mkfifo(path, 0600); break;
    case SLOT_PH_LINK: {
      const sc_obj *o = sc_pick(a, 1u << (data ? T_DATA : T_CONTROL), 0);
      char to[2048];
      if (o)
        sc_path(a, o->name, to, sizeof to);
      else
        snprintf(to, sizeof to, "/dev/zero");
      (void)symlink(to, path);
      break;
    }
    case SLOT_PH_GARBAGE: (void)sc_create_file(a, path, NULL, 4096); break;
    case SLOT_PH_EMPTY: (void)sc_create_file(a, path, NULL, 0); break;
    case SLOT_PH_COPY: { /* a real publisher's segments with our id */
      const sc_obj *o = NULL;
      for (int t = 0; t < 8 && (o == NULL || o->svc != svc); t++)
        o = sc_pick(a, 1u << (data ? T_DATA : T_CONTROL), 1);
      size_t len;
      uint8_t *copy = o && o->svc == svc ? sc_read_object(a, o->name, &len) : NULL;
      if (copy && len >= sizeof(shmbus__seg_header)) {
        shmbus__seg_header *h = (shmbus__seg_header *)copy;
        h->generation = id;
        (void)sc_create_file(a, path, copy, len);
      }
      free(copy);
      break;
    }
    default: break;
    }
  }
}

static void sc_attack_slot(sc_attacker *a, sc_action *act) {
  int svc;
  sc_map m;
  act->target = T_SERVICE;
  act->variant = (int)sc_below(&a->rng, SLOT_VARIANTS);
  sc_note(a, act);
  if (sc_map_service(a, &svc, &m) != 0) return;
  const shmbus__service_config *cfg = &a->run->cfg[svc];
  int kind = act->variant >= SLOT_PH_FIFO && act->variant <= SLOT_PH_COPY
                 ? SHMBUS__PUBLISHER
                 : (int)sc_below(&a->rng, 2);
  uint32_t count = kind == SHMBUS__PUBLISHER ? cfg->max_publishers : cfg->max_subscribers;
  uint32_t start = (uint32_t)sc_below(&a->rng, count);
  char token_path[2048] = "";
  if (sigsetjmp(sc_jmp, 1) != 0) {
    ADD(a->sh->attacker_sigbus, 1);
    sc_map_close(&m);
    if (token_path[0]) unlink(token_path);
    return;
  }
  sc_guarded = 1;
  for (uint32_t n = 0; n < count; n++) {
    uint32_t i = (start + n) % count;
    uint64_t *word = sc_slot_word(a, &m, svc, kind, i, offsetof(shmbus__port_slot, word));
    uint64_t *node = sc_slot_word(a, &m, svc, kind, i, offsetof(shmbus__port_slot, node_id));
    if (word == NULL || node == NULL) break;
    uint64_t w = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    if (act->variant == SLOT_LIVE_WORD || act->variant == SLOT_LIVE_NODE) {
      if (w == 0) continue;
      uint64_t *target = act->variant == SLOT_LIVE_WORD ? word : node;
      uint64_t old = __atomic_load_n(target, __ATOMIC_RELAXED);
      uint64_t forged;
      switch (sc_below(&a->rng, 4)) {
      case 0: forged = old ^ 1; break;
      case 1: forged = 0; break;
      case 2: forged = old + 2; break;
      default: forged = sc_next(&a->rng); break;
      }
      __atomic_store_n(target, forged, __ATOMIC_RELEASE);
      sc_bump_generation(&m, kind);
      act->hit = 1;
      sc_hold(a, 20 * SC_MS);
      __atomic_compare_exchange_n(target, &forged, old, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
      sc_bump_generation(&m, kind);
      break;
    }
    if (w != 0) continue;
    /* A free slot: a phantom port. */
    uint64_t id = 1 + sc_below(&a->rng, UINT64_C(1) << 40);
    uint64_t forged = act->variant == SLOT_SETTING_UP ? id << 1 : (id << 1) | 1u;
    uint64_t node_id = sc_below(&a->rng, 2) ? sc_some_node_id(a, &m, svc)
                                            : 1 + sc_below(&a->rng, UINT64_C(1) << 62);
    if (act->variant == SLOT_SETTING_UP && sc_below(&a->rng, 2)) node_id = 0;
    if (act->variant == SLOT_PH_TOKEN_FIFO) {
      char name[SHMBUS__OBJECT_NAME_MAX];
      node_id = 1 + sc_below(&a->rng, UINT64_C(1) << 62);
      shmbus__node_token_name(name, a->run->env->domain, node_id);
      sc_path(a, name, token_path, sizeof token_path);
      if (mkfifo(token_path, 0600) != 0) token_path[0] = '\0';
    }
    if (kind == SHMBUS__PUBLISHER) sc_phantom_objects(a, act->variant, svc, id, 1);
    /* As a claimant does: the owner first, by exchange (none: a word
     * without an owner, which a sweep frees at once), then the word; and
     * the reverse to leave. */
    uint64_t expect = 0;
    int claimed = node_id == 0 ? __atomic_compare_exchange_n(word, &expect, forged, 0,
                                                             __ATOMIC_RELEASE, __ATOMIC_RELAXED)
                               : __atomic_compare_exchange_n(node, &expect, node_id, 0,
                                                             __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    if (claimed) {
      if (node_id != 0) __atomic_store_n(word, forged, __ATOMIC_RELEASE);
      sc_bump_generation(&m, kind);
      act->hit = 1;
      sc_hold_tail(a, 20 * SC_MS);
      expect = forged;
      if (__atomic_compare_exchange_n(word, &expect, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED) &&
          node_id != 0) {
        uint64_t n_expect = node_id;
        __atomic_compare_exchange_n(node, &n_expect, 0, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
      }
      sc_bump_generation(&m, kind);
    }
    if (kind == SHMBUS__PUBLISHER) sc_phantom_objects(a, act->variant, svc, id, 0);
    break;
  }
  sc_guarded = 0;
  if (token_path[0]) unlink(token_path);
  sc_map_close(&m);
}

static void sc_attack_sizes(sc_attacker *a, sc_action *act) {
  act->variant = (int)sc_below(&a->rng, SZ_VARIANTS);
  sc_note(a, act);
  int svc = -1;
  sc_map m;
  int svc_only = act->variant >= SZ_CFG_LIMIT;
  if (svc_only) {
    act->target = T_SERVICE;
    if (sc_map_service(a, &svc, &m) != 0) return;
  } else {
    const sc_obj *o = sc_pick(a, 1u << T_SERVICE | 1u << T_DATA | 1u << T_CONTROL, 0);
    if (o == NULL) return;
    act->target = o->kind;
    if (sc_map_open(a, o->name, &m) != 0) return;
  }
  uint64_t off = 0;
  size_t size = 8;
  switch (act->variant) {
  case SZ_MAGIC: off = offsetof(shmbus__seg_header, magic); break;
  case SZ_VERSION: off = offsetof(shmbus__seg_header, layout_version), size = 4; break;
  case SZ_KIND: off = offsetof(shmbus__seg_header, kind), size = 4; break;
  case SZ_HEADER_SIZE: off = offsetof(shmbus__seg_header, header_size); break;
  case SZ_TOTAL_SIZE: off = offsetof(shmbus__seg_header, total_size); break;
  case SZ_INITIALISED: off = offsetof(shmbus__seg_header, initialised), size = 4; break;
  case SZ_GENERATION: off = offsetof(shmbus__seg_header, generation); break;
  case SZ_CFG_LIMIT: {
    static const size_t limits[] = {offsetof(shmbus__service_config, element_size),
                                    offsetof(shmbus__service_config, element_align),
                                    offsetof(shmbus__service_config, max_elements),
                                    offsetof(shmbus__service_config, max_publishers),
                                    offsetof(shmbus__service_config, max_subscribers),
                                    offsetof(shmbus__service_config, queue_depth),
                                    offsetof(shmbus__service_config, history),
                                    offsetof(shmbus__service_config, max_loans),
                                    offsetof(shmbus__service_config, max_held),
                                    offsetof(shmbus__service_config, overflow)};
    off = offsetof(shmbus__service_seg, cfg) +
          limits[sc_below(&a->rng, sizeof limits / sizeof limits[0])];
    size = 4;
    break;
  }
  case SZ_CFG_NAME:
    off = offsetof(shmbus__service_seg, cfg) + offsetof(shmbus__service_config, name) +
          8 * sc_below(&a->rng, sizeof(((shmbus__service_config *)0)->name) / 8);
    break;
  case SZ_USERS:
    off = offsetof(shmbus__service_seg, dyn) + offsetof(shmbus__service_dyn, users);
    break;
  default:
    off = offsetof(shmbus__service_seg, dyn) + offsetof(shmbus__service_dyn, next_port_id);
    break;
  }
  void *p = sc_at(&m, off, size);
  if (p == NULL) {
    sc_map_close(&m);
    return;
  }
  uint64_t r = sc_next(&a->rng);
  uint64_t choices[] = {0,
                        1,
                        r,
                        UINT64_MAX,
                        SHMBUS__USERS_REMOVING,
                        SHMBUS__USERS_REMOVING - 1,
                        (UINT64_C(1) << 62) - 1,
                        (uint64_t)m.len * 2,
                        r & 0xffff};
  uint64_t forged = choices[sc_below(&a->rng, sizeof choices / sizeof choices[0])];
  int permanent = sc_below(&a->rng, 8) == 0;
  if (sigsetjmp(sc_jmp, 1) == 0) {
    sc_guarded = 1;
    if (size == 4) {
      uint32_t *volatile q = p; /* survives the siglongjmp */
      uint32_t old = __atomic_load_n(q, __ATOMIC_RELAXED), f = (uint32_t)forged;
      if (sc_below(&a->rng, 3) == 0) f = old + (sc_below(&a->rng, 2) ? 1u : 0xffffffffu);
      __atomic_store_n(q, f, __ATOMIC_RELEASE);
      act->hit = 1;
      if (!permanent) {
        sc_hold(a, 10 * SC_MS);
        __atomic_compare_exchange_n(q, &f, old, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
      }
    } else {
      uint64_t *volatile q = p; /* survives the siglongjmp */
      uint64_t old = __atomic_load_n(q, __ATOMIC_RELAXED);
      if (sc_below(&a->rng, 3) == 0) forged = old + (sc_below(&a->rng, 2) ? 1 : UINT64_MAX);
      __atomic_store_n(q, forged, __ATOMIC_RELEASE);
      act->hit = 1;
      if (!permanent) {
        sc_hold(a, 10 * SC_MS);
        __atomic_compare_exchange_n(q, &forged, old, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
      }
    }
    sc_guarded = 0;
  } else {
    ADD(a->sh->attacker_sigbus, 1);
  }
  sc_map_close(&m);
}

static void sc_attack_gen(sc_attacker *a, sc_action *act) {
  act->variant = (int)sc_below(&a->rng, GEN_VARIANTS);
  sc_note(a, act);
  sc_map m;
  int svc;
  if (act->variant == GEN_SEGMENT) {
    const sc_obj *o = sc_pick(a, 1u << T_DATA | 1u << T_CONTROL, 0);
    if (o == NULL) return;
    act->target = o->kind;
    if (sc_map_open(a, o->name, &m) != 0) return;
  } else {
    act->target = T_SERVICE;
    if (sc_map_service(a, &svc, &m) != 0) return;
  }
  if (sigsetjmp(sc_jmp, 1) == 0) {
    sc_guarded = 1;
    if (act->variant == GEN_SEGMENT) {
      uint64_t *g = sc_at(&m, offsetof(shmbus__seg_header, generation), 8);
      if (g) {
        uint64_t old = __atomic_load_n(g, __ATOMIC_RELAXED), forged = sc_next(&a->rng);
        __atomic_store_n(g, forged, __ATOMIC_RELEASE);
        act->hit = 1;
        sc_hold(a, 10 * SC_MS);
        __atomic_compare_exchange_n(g, &forged, old, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
      }
    } else if (act->variant == GEN_RANDOM) {
      uint64_t off = offsetof(shmbus__service_seg, dyn) +
                     (sc_below(&a->rng, 2) ? offsetof(shmbus__service_dyn, pub_generation)
                                           : offsetof(shmbus__service_dyn, sub_generation));
      uint64_t *g = sc_at(&m, off, 8);
      if (g) {
        __atomic_store_n(g, sc_next(&a->rng), __ATOMIC_RELEASE);
        act->hit = 1;
      }
    } else {
      /* Bumps for 1 to 5 ms, a quarter of the time 20 to 60 ms: a BLOCK
       * publish that loops while the set of subscribers "changes" must
       * still keep its deadline. */
      int kind = act->variant == GEN_PUB_BURST ? SHMBUS__PUBLISHER : SHMBUS__SUBSCRIBER;
      uint64_t until =
          ts_now_ns() + (sc_below(&a->rng, 4) == 0 ? 20 * SC_MS + sc_below(&a->rng, 40 * SC_MS)
                                                   : SC_MS + sc_below(&a->rng, 4 * SC_MS));
      while (ts_now_ns() < until)
        for (int i = 0; i < 64; i++) sc_bump_generation(&m, kind);
      act->hit = 1;
    }
    sc_guarded = 0;
  } else {
    ADD(a->sh->attacker_sigbus, 1);
  }
  sc_map_close(&m);
}

static void sc_attack_conn(sc_attacker *a, sc_action *act) {
  act->target = T_CONTROL;
  act->variant = (int)sc_below(&a->rng, CO_VARIANTS);
  sc_note(a, act);
  const sc_obj *o = sc_pick(a, 1u << T_CONTROL, 1);
  if (o == NULL) return;
  const shmbus__layout *l = &a->run->layout[o->svc];
  const shmbus__service_config *cfg = &a->run->cfg[o->svc];
  sc_map m;
  if (sc_map_open(a, o->name, &m) != 0) return;
  uint32_t k = (uint32_t)sc_below(&a->rng, cfg->max_subscribers);
  uint64_t base = shmbus__layout_conn_offset(l, k);
  static const size_t fields[] = {[CO_HEAD] = offsetof(shmbus__conn, head),
                                  [CO_DONE_TAIL] = offsetof(shmbus__conn, done_tail),
                                  [CO_DONE_HEAD] = offsetof(shmbus__conn, done_head),
                                  [CO_SUB_ID] = offsetof(shmbus__conn, sub_id),
                                  [CO_SUB_ACK] = offsetof(shmbus__conn, sub_ack),
                                  [CO_LOST] = offsetof(shmbus__conn, lost),
                                  [CO_WAIT_ACK] = offsetof(shmbus__conn, wait_ack),
                                  [CO_PUB_WAITING] = offsetof(shmbus__conn, pub_waiting),
                                  [CO_ROOM_EVENT] = offsetof(shmbus__conn, room_event)};
  if (sigsetjmp(sc_jmp, 1) != 0) {
    ADD(a->sh->attacker_sigbus, 1);
    sc_map_close(&m);
    return;
  }
  sc_guarded = 1;
  uint64_t r = sc_next(&a->rng);
  if (act->variant == CO_PUB_WAITING || act->variant == CO_ROOM_EVENT) {
    uint32_t *w = sc_at(&m, base + fields[act->variant], 4);
    if (w) {
      if (act->variant == CO_ROOM_EVENT) {
        __atomic_fetch_add(w, 1 + (uint32_t)(r & 1), __ATOMIC_RELEASE);
        sc_futex_wake(w);
      } else {
        __atomic_store_n(w, (uint32_t)(r & 3), __ATOMIC_RELEASE);
      }
      act->hit = 1;
    }
  } else if (act->variant < CO_SUB_RING) {
    uint64_t *w = sc_at(&m, base + fields[act->variant], 8);
    if (w) {
      uint64_t old = __atomic_load_n(w, __ATOMIC_RELAXED);
      uint64_t choices[] = {r, old + 1,  old - 1,          old + cfg->queue_depth,
                            0, r & 0xff, old + l->done_cap};
      uint64_t forged = choices[sc_below(&a->rng, sizeof choices / sizeof choices[0])];
      __atomic_store_n(w, forged, __ATOMIC_RELEASE);
      act->hit = 1;
      if (sc_below(&a->rng, 4) == 0) {
        sc_hold(a, 5 * SC_MS);
        __atomic_compare_exchange_n(w, &forged, old, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
      }
    }
  } else if (act->variant == CO_SUB_RING) {
    uint64_t *head = sc_at(&m, base + offsetof(shmbus__conn, head), 8);
    uint32_t j = (uint32_t)sc_below(&a->rng, l->queue_cap);
    uint64_t *slot = sc_at(&m, base + l->sub_ring_offset + 8 * (uint64_t)j, 8);
    if (head && slot) {
      uint64_t h = __atomic_load_n(head, __ATOMIC_RELAXED) + sc_below(&a->rng, 3);
      uint64_t chunk = sc_below(&a->rng, 2) ? sc_below(&a->rng, l->chunks + 2) : (r & 0xffffffffu);
      uint64_t forged = sc_below(&a->rng, 2) ? ((uint64_t)(uint32_t)(h + 1) << 32 | chunk) : r;
      slot = sc_at(&m, base + l->sub_ring_offset + 8 * (h & (l->queue_cap - 1)), 8);
      if (slot) {
        __atomic_store_n(slot, forged, __ATOMIC_RELEASE);
        act->hit = 1;
      }
    }
  } else if (act->variant == CO_DONE_RING) {
    uint32_t j = (uint32_t)sc_below(&a->rng, l->done_cap);
    uint32_t *e = sc_at(&m, base + l->done_ring_offset + 4 * (uint64_t)j, 4);
    if (e) {
      __atomic_store_n(
          e, sc_below(&a->rng, 2) ? (uint32_t)sc_below(&a->rng, l->chunks + 2) : (uint32_t)r,
          __ATOMIC_RELEASE);
      act->hit = 1;
    }
  } else {
    /* A completion of the chunk at head, still queued (finding 3): the
     * publisher must not drop its reference twice. */
    uint64_t *head = sc_at(&m, base + offsetof(shmbus__conn, head), 8);
    uint64_t *tail = sc_at(&m, base + offsetof(shmbus__conn, done_tail), 8);
    if (head && tail) {
      uint64_t h = __atomic_load_n(head, __ATOMIC_ACQUIRE);
      uint64_t *slot = sc_at(&m, base + l->sub_ring_offset + 8 * (h & (l->queue_cap - 1)), 8);
      uint64_t w = slot ? __atomic_load_n(slot, __ATOMIC_ACQUIRE) : 0;
      if ((uint32_t)(w >> 32) == (uint32_t)(h + 1)) {
        uint64_t t = __atomic_load_n(tail, __ATOMIC_RELAXED);
        uint32_t *e = sc_at(&m, base + l->done_ring_offset + 4 * (t & (l->done_cap - 1)), 4);
        if (e) {
          __atomic_store_n(e, (uint32_t)w, __ATOMIC_RELAXED);
          __atomic_store_n(tail, t + 1, __ATOMIC_RELEASE);
          act->hit = 1;
        }
      }
    }
  }
  sc_guarded = 0;
  sc_map_close(&m);
}

static void sc_attack_chunk(sc_attacker *a, sc_action *act) {
  act->target = T_DATA;
  act->variant = (int)sc_below(&a->rng, CH_VARIANTS);
  sc_note(a, act);
  const sc_obj *o = sc_pick(a, 1u << T_DATA, 1);
  if (o == NULL) return;
  const shmbus__layout *l = &a->run->layout[o->svc];
  sc_map m;
  if (sc_map_open(a, o->name, &m) != 0) return;
  uint64_t base = shmbus__layout_chunk_offset(l, (uint32_t)sc_below(&a->rng, l->chunks));
  uint64_t r = sc_next(&a->rng);
  if (sigsetjmp(sc_jmp, 1) == 0) {
    sc_guarded = 1;
    if (act->variant == CH_PAYLOAD_BYTES) {
      uint32_t *w = sc_at(&m, base + offsetof(shmbus__chunk_header, payload_bytes), 4);
      uint32_t choices[] = {(uint32_t)r, (uint32_t)l->max_payload + 1, UINT32_MAX, 0};
      if (w) __atomic_store_n(w, choices[sc_below(&a->rng, 4)], __ATOMIC_RELEASE), act->hit = 1;
    } else if (act->variant == CH_PAYLOAD) {
      uint64_t *w =
          sc_at(&m, base + l->payload_offset + 8 * sc_below(&a->rng, l->max_payload / 8 + 1), 8);
      if (w) __atomic_store_n(w, r, __ATOMIC_RELAXED), act->hit = 1;
    } else {
      size_t f = act->variant == CH_SEQUENCE ? offsetof(shmbus__chunk_header, sequence)
                                             : offsetof(shmbus__chunk_header, publisher_id);
      uint64_t *w = sc_at(&m, base + f, 8);
      if (w) __atomic_store_n(w, r, __ATOMIC_RELEASE), act->hit = 1;
    }
    sc_guarded = 0;
  } else {
    ADD(a->sh->attacker_sigbus, 1);
  }
  sc_map_close(&m);
}

static void sc_attack_wake(sc_attacker *a, sc_action *act) {
  act->variant = (int)sc_below(&a->rng, WK_VARIANTS);
  sc_note(a, act);
  sc_map m;
  int svc;
  if (act->variant == WK_ROOM) {
    act->target = T_CONTROL;
    const sc_obj *o = sc_pick(a, 1u << T_CONTROL, 1);
    if (o == NULL) return;
    svc = o->svc;
    if (sc_map_open(a, o->name, &m) != 0) return;
  } else {
    act->target = T_SERVICE;
    if (sc_map_service(a, &svc, &m) != 0) return;
  }
  const shmbus__layout *l = &a->run->layout[svc];
  const shmbus__service_config *cfg = &a->run->cfg[svc];
  uint32_t k = (uint32_t)sc_below(&a->rng, cfg->max_subscribers);
  if (sigsetjmp(sc_jmp, 1) == 0) {
    sc_guarded = 1;
    int storm = 1 + (int)sc_below(&a->rng, 64);
    for (int n = 0; n < storm; n++) {
      uint32_t *w = NULL;
      switch (act->variant) {
      case WK_EVENT: w = sc_at(&m, SC_EVENT_OFFSET(l, cfg, k), 4); break;
      case WK_ROOM:
        w = sc_at(&m, shmbus__layout_conn_offset(l, k) + offsetof(shmbus__conn, room_event), 4);
        break;
      case WK_SLEEPING: w = sc_at(&m, SC_WAIT_OFFSET(l, cfg, k, sleeping), 4); break;
      default: w = sc_at(&m, SC_WAIT_OFFSET(l, cfg, k, wait_mode), 4); break;
      }
      if (w == NULL) break;
      if (act->variant == WK_EVENT || act->variant == WK_ROOM) {
        __atomic_fetch_add(w, 1, __ATOMIC_RELEASE);
        sc_futex_wake(w);
      } else {
        __atomic_store_n(w, (uint32_t)sc_below(&a->rng, 3), __ATOMIC_RELEASE);
      }
      act->hit = 1;
      if (storm > 1) sc_sleep_ns(20 * 1000);
    }
    sc_guarded = 0;
  } else {
    ADD(a->sh->attacker_sigbus, 1);
  }
  sc_map_close(&m);
}

static void sc_attack_token(sc_attacker *a, sc_action *act) {
  act->variant = (int)sc_below(&a->rng, TK_VARIANTS);
  act->target = T_TOKEN;
  sc_note(a, act);
  if (act->variant == TK_FIFO) {
    sc_attack_fifo(a, act, 1u << T_TOKEN); /* act->variant stays TK_FIFO (0) */
    return;
  }
  if (act->variant == TK_LINK) {
    sc_attack_symlink(a, act, 1u << T_TOKEN, SL_SELF);
    act->variant = TK_LINK;
    return;
  }
  const sc_obj *o = sc_pick(a, 1u << T_TOKEN, 0);
  char aside[2048];
  if (o == NULL || sc_swap_out(a, o->name, aside, sizeof aside) != 0) return;
  act->hit = 1;
  sc_hold(a, 20 * SC_MS);
  sc_swap_back(a, o->name, aside);
}

/* Attacker 0: a service whose header or config stays broken for two looks
 * is unlinked (a peer may), so that the victims get a fresh one. */
static void sc_heal(sc_attacker *a) {
  for (int s = 0; s < SC_NSVC; s++) {
    char path[2048];
    sc_path(a, a->run->svc_object[s], path, sizeof path);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      a->bad_since[s] = 0;
      continue;
    }
    struct stat st;
    int bad = 1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size == a->run->layout[s].service_size) {
      shmbus__service_seg seg;
      if (pread(fd, &seg, sizeof seg, 0) == (ssize_t)sizeof seg) {
        const shmbus__service_config *want = &a->run->cfg[s], *c = &seg.cfg;
        bad = seg.hdr.magic != SHMBUS__MAGIC || seg.hdr.layout_version != SHMBUS__LAYOUT_VERSION ||
              seg.hdr.kind != SHMBUS__SEG_SERVICE ||
              seg.hdr.header_size != sizeof(shmbus__seg_header) ||
              seg.hdr.total_size != (uint64_t)st.st_size ||
              seg.hdr.initialised != SHMBUS__INITIALISED ||
              memcmp(c->name, want->name, sizeof c->name) != 0 ||
              memcmp(c->type_name, want->type_name, sizeof c->type_name) != 0 ||
              c->element_size != want->element_size || c->element_align != want->element_align ||
              c->max_elements != want->max_elements || c->max_publishers != want->max_publishers ||
              c->max_subscribers != want->max_subscribers || c->queue_depth != want->queue_depth ||
              c->history != want->history || c->max_loans != want->max_loans ||
              c->max_held != want->max_held || c->overflow != want->overflow ||
              (seg.dyn.users & SHMBUS__USERS_REMOVING) || seg.dyn.users > 1000 ||
              seg.dyn.next_port_id >= (UINT64_C(1) << 61);
      }
    }
    close(fd);
    if (!bad) {
      a->bad_since[s] = 0;
    } else if (a->bad_since[s] == 0) {
      a->bad_since[s] = ts_now_ns();
    } else if (ts_now_ns() - a->bad_since[s] > 200 * SC_MS) {
      if (unlink(path) == 0) ADD(a->sh->heals, 1);
      a->bad_since[s] = 0;
    }
  }
}

static int sc_pick_kind(sc_attacker *a) {
  unsigned total = 0;
  for (int k = 0; k < K_KINDS; k++)
    if ((a->run->attack_mask >> k) & 1u) total += sc_kinds[k].weight;
  uint64_t r = sc_below(&a->rng, total);
  for (int k = 0; k < K_KINDS; k++) {
    if (!((a->run->attack_mask >> k) & 1u)) continue;
    if (r < sc_kinds[k].weight) return k;
    r -= sc_kinds[k].weight;
  }
  return K_WORD;
}

static int sc_attacker_main(ts_child *self, void *arg) {
  (void)self;
  const sc_run *run = ((const sc_arg *)arg)->run;
  sc_attacker *a = calloc(1, sizeof *a);
  TS_CHECK(a != NULL);
  a->run = run;
  a->sh = run->sh;
  a->index = ((const sc_arg *)arg)->index;
  a->rng = sc_seed(0xa77ac0 + (uint64_t)a->index);
  snprintf(a->prefix, sizeof a->prefix, "shmbus.%s.", run->env->domain);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = sc_on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  TS_CHECK(sigaction(SIGBUS, &sa, NULL) == 0);
  alarm((unsigned)(run->seconds_ns / SC_S) + 120);
  uint64_t next_list = 0, next_heal = ts_now_ns() + 250 * SC_MS;
  while (!LOAD(a->sh->stop_attack)) {
    uint64_t now = ts_now_ns();
    if (now >= next_list) {
      sc_list(a);
      next_list = now + 10 * SC_MS;
    }
    if (a->index == 0 && now >= next_heal) {
      sc_heal(a);
      next_heal = now + 250 * SC_MS;
    }
    sc_action act = {sc_pick_kind(a), 0, T_OTHER, 0};
    uint64_t slot = ADD(a->sh->log_next, 1) % SC_LOG;
    sc_log_entry *e = &a->sh->log[slot];
    a->cur = e;
    STORE(e->start_ns, 0); /* invalid while it is rewritten */
    STORE(e->end_ns, 0);
    STORE(e->kind, (uint32_t)act.kind);
    STORE(e->variant, 0u);
    STORE(e->attacker, (uint32_t)a->index);
    STORE(e->start_ns, now);
    switch (act.kind) {
    case K_WORD: sc_attack_words(a, &act, 0); break;
    case K_SWEEP: sc_attack_words(a, &act, 1); break;
    case K_TRUNCATE: sc_attack_truncate(a, &act); break;
    case K_REPLACE: sc_attack_replace(a, &act); break;
    case K_UNLINK: sc_attack_unlink(a, &act); break;
    case K_FIFO: sc_attack_fifo(a, &act, 1u << T_SERVICE | 1u << T_DATA | 1u << T_CONTROL); break;
    case K_SYMLINK:
      sc_attack_symlink(a, &act, 1u << T_SERVICE | 1u << T_DATA | 1u << T_CONTROL,
                        (int)sc_below(&a->rng, SL_VARIANTS));
      break;
    case K_SLOT: sc_attack_slot(a, &act); break;
    case K_SIZES: sc_attack_sizes(a, &act); break;
    case K_GEN: sc_attack_gen(a, &act); break;
    case K_CONN: sc_attack_conn(a, &act); break;
    case K_CHUNK: sc_attack_chunk(a, &act); break;
    case K_WAKE: sc_attack_wake(a, &act); break;
    default: sc_attack_token(a, &act); break;
    }
    sc_note(a, &act);
    STORE(e->end_ns, ts_now_ns());
    if (act.target != T_OTHER) ADD(a->sh->attempts[act.kind][act.variant], 1); /* found a target */
    ADD(a->sh->actions, 1);
    if (act.hit) {
      ADD(a->sh->hits[act.kind][act.variant], 1);
      ADD(a->sh->targets[act.target], 1);
    }
    if (sc_below(&a->rng, 4) == 0)
      sched_yield();
    else
      sc_sleep_ns(sc_below(&a->rng, 300 * 1000));
  }
  free(a);
  return 0;
}

/* ======================================================================== */
/* The scribbler: parent                                                    */
/* ======================================================================== */

static unsigned sc_attack_mask(void) {
  const char *v = getenv("SCRIBBLER_ATTACKS");
  if (v == NULL || *v == '\0' || strcmp(v, "all") == 0) return (1u << K_KINDS) - 1;
  unsigned mask = 0;
  char buf[512];
  snprintf(buf, sizeof buf, "%s", v);
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    int found = 0;
    for (int k = 0; k < K_KINDS; k++)
      if (strcmp(t, sc_kinds[k].name) == 0) mask |= 1u << k, found = 1;
    if (!found) fprintf(stderr, "scribbler: SCRIBBLER_ATTACKS: unknown kind '%s' (ignored)\n", t);
  }
  return mask ? mask : (1u << K_KINDS) - 1;
}

/* The configuration a creator writes for these options (all limits are
 * given explicitly, so no default enters). */
static void sc_config(const char *name, const shmbus_service_opts *o, shmbus__service_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  snprintf((char *)cfg->name, sizeof cfg->name, "%s", name);
  snprintf((char *)cfg->type_name, sizeof cfg->type_name, "%s", o->type.name);
  cfg->element_size = (uint32_t)o->type.size;
  cfg->element_align = (uint32_t)o->type.align;
  cfg->max_elements = o->max_elements;
  cfg->max_publishers = o->max_publishers;
  cfg->max_subscribers = o->max_subscribers;
  cfg->queue_depth = o->queue_depth;
  cfg->history = o->history;
  cfg->max_loans = o->max_loans;
  cfg->max_held = o->max_held;
  cfg->overflow = (uint32_t)o->overflow;
}

typedef struct sc_death {
  int victim;
  int code;
  uint32_t op;
  uint64_t at_ns, op_age_ns;
  char around[400];
} sc_death;

enum { SC_MAX_DEATHS = 64, SC_MAX_RESPAWNS = 100 };

typedef struct sc_parent {
  sc_run run;
  ts_child victims[SC_VICTIMS];
  int alive[SC_VICTIMS];
  sc_arg vargs[SC_VICTIMS];
  ts_child attackers[SC_ATTACKERS];
  sc_arg aargs[SC_ATTACKERS];
  sc_death deaths[SC_MAX_DEATHS];
  int ndeaths, respawns;
  uint64_t at_deaths[K_KINDS][SC_MAX_VARIANTS];
  sc_report total[SC_VICTIMS];
  int reported[SC_VICTIMS];
  uint64_t svc_looks, svc_present[SC_NSVC]; /* how often the services' names existed */
  sc_text fail;
} sc_parent;

static const char *sc_role(int v) { return v < SC_PUBS ? "publisher" : "subscriber"; }
static int sc_role_index(int v) { return v < SC_PUBS ? v : v - SC_PUBS; }

static void sc_start_victim(sc_parent *p, int v) {
  p->vargs[v] = (sc_arg){&p->run, v};
  ADD(p->run.sh->victim[v].incarnation, 1);
  ts_child_start(&p->victims[v], v < SC_PUBS ? sc_victim_publisher : sc_victim_subscriber,
                 &p->vargs[v]);
  p->alive[v] = 1;
}

static void sc_describe_code(char *out, size_t cap, int code) {
  if (code == SC_EXIT_HANG)
    snprintf(out, cap, "HUNG (a call ran longer than the hang limit)");
  else if (code == 128 + SIGALRM)
    snprintf(out, cap, "HUNG (killed by its alarm backstop)");
  else if (code > 128)
    snprintf(out, cap, "DIED of signal %d (%s)", code - 128, strsignal(code - 128));
  else
    snprintf(out, cap, "exited with %d", code);
}

static void sc_add_report(sc_report *to, const sc_report *r) {
  uint64_t *t = (uint64_t *)to;
  const uint64_t *f = (const uint64_t *)r;
  for (size_t i = 0; i < sizeof *r / 8; i++) t[i] += f[i];
  /* maxima are not sums */
  to->ctl_max_ns -= r->ctl_max_ns;
  if (r->ctl_max_ns > to->ctl_max_ns) to->ctl_max_ns = r->ctl_max_ns;
  for (int o = 0; o < SC_NOPS; o++) {
    to->op[o].max_ns -= r->op[o].max_ns;
    if (r->op[o].max_ns > to->op[o].max_ns) to->op[o].max_ns = r->op[o].max_ns;
  }
}

/* Records a victim that ended during the run, with the attacks that ran
 * from a little before its last call until now. */
static void sc_record_death(sc_parent *p, int v, int code) {
  sc_shared *sh = p->run.sh;
  uint64_t now = ts_now_ns();
  uint32_t op = LOAD(sh->victim[v].op);
  uint64_t op_start = __atomic_load_n(&sh->victim[v].op_start_ns, __ATOMIC_RELAXED);
  if (op >= SC_NOPS) op = SC_OP_NONE;
  /* A death: from just before its call until now. A hang: what ran when
   * the call began. */
  int hang = code == SC_EXIT_HANG || code == 128 + SIGALRM;
  uint64_t from = (op != SC_OP_NONE && op_start < now ? op_start : now - 20 * SC_MS) - 5 * SC_MS;
  uint64_t to = hang && op != SC_OP_NONE && op_start < now ? op_start + 20 * SC_MS : now;
  uint64_t counts[K_KINDS][SC_MAX_VARIANTS];
  memset(counts, 0, sizeof counts);
  for (int i = 0; i < SC_LOG; i++) {
    const sc_log_entry *e = &sh->log[i];
    uint64_t s = LOAD(e->start_ns), end = LOAD(e->end_ns);
    uint32_t k = LOAD(e->kind), var = LOAD(e->variant);
    if (s == 0 || k >= K_KINDS || var >= SC_MAX_VARIANTS) continue;
    if (end == 0) end = now;
    if (end >= from && s <= to) counts[k][var]++;
  }
  /* What the incarnation counted until it ended. */
  sc_report snap;
  memcpy(&snap, sh->live[v], sizeof snap);
  memset(sh->live[v], 0, sizeof snap);
  if (snap.magic == SC_REPORT_MAGIC) {
    sc_add_report(&p->total[v], &snap);
    p->reported[v] = 1;
  }
  sc_death d = {v, code, op, now - sh->t0, op != SC_OP_NONE ? now - op_start : 0, ""};
  size_t len = 0;
  for (int k = 0; k < K_KINDS; k++)
    for (int var = 0; var < SC_MAX_VARIANTS; var++) {
      if (counts[k][var] == 0) continue;
      p->at_deaths[k][var]++;
      if (k == K_WORD || k == K_SWEEP) continue; /* everywhere all the time: not news */
      int n = snprintf(d.around + len, sizeof d.around - len, "%s%s/%s", len ? ", " : "",
                       sc_kinds[k].name, sc_kinds[k].variants[var]);
      if (n > 0 && (size_t)n < sizeof d.around - len) len += (size_t)n;
    }
  if (p->ndeaths < SC_MAX_DEATHS) p->deaths[p->ndeaths] = d;
  p->ndeaths++;
  if (p->run.verbose || p->ndeaths <= 3) {
    char what[96];
    sc_describe_code(what, sizeof what, code);
    print_message("scribbler: %.1f s: %s %d %s in %s (for %.1f ms); attacks then: %s\n",
                  (double)d.at_ns / 1e9, sc_role(v), sc_role_index(v), what, sc_ops[op].name,
                  sc_ms(d.op_age_ns), d.around[0] ? d.around : "none but word scribbles");
  }
}

static void sc_poll_children(sc_parent *p, int respawn) {
  for (int v = 0; v < SC_VICTIMS; v++) {
    if (!p->alive[v]) continue;
    int code = ts_child_poll(&p->victims[v]);
    if (code < 0) continue;
    p->alive[v] = 0;
    sc_record_death(p, v, code);
    if (respawn && p->respawns < SC_MAX_RESPAWNS) {
      p->respawns++;
      sc_start_victim(p, v);
    }
  }
}

static void sc_summary(sc_parent *p, double secs) {
  sc_shared *sh = p->run.sh;
  sc_text t = {.len = 0};
  sc_report all;
  memset(&all, 0, sizeof all);
  uint64_t ctl_max = 0;
  for (int v = 0; v < SC_VICTIMS; v++) {
    if (!p->reported[v]) continue;
    sc_add_report(&all, &p->total[v]);
    if (p->total[v].ctl_max_ns > ctl_max) ctl_max = p->total[v].ctl_max_ns;
  }
  uint64_t allowance = SC_SLACK_NS + ctl_max;
  sc_printf(&t,
            "scribbler summary (%s backend, %.1f s, attacks %s; per variant: took effect/tried):\n",
            p->run.env->backend == SHMBUS_BACKEND_DIR ? "dir" : "shm", secs,
            p->run.attack_mask == (1u << K_KINDS) - 1 ? "all" : "selected");
  sc_printf(&t,
            "  attacks: %" PRIu64 " actions, %" PRIu64 " took effect on: service %" PRIu64
            ", data %" PRIu64 ", control %" PRIu64 ", token %" PRIu64
            "; attacker SIGBUS caught %" PRIu64 "; broken services unlinked %" PRIu64 "\n",
            LOAD(sh->actions),
            sh->targets[T_SERVICE] + sh->targets[T_DATA] + sh->targets[T_CONTROL] +
                sh->targets[T_TOKEN] + sh->targets[T_OTHER],
            sh->targets[T_SERVICE], sh->targets[T_DATA], sh->targets[T_CONTROL],
            sh->targets[T_TOKEN], sh->attacker_sigbus, sh->heals);
  for (int k = 0; k < K_KINDS; k++) {
    if (!((p->run.attack_mask >> k) & 1u)) continue;
    sc_printf(&t, "    %-9s", sc_kinds[k].name);
    for (int var = 0; var < SC_MAX_VARIANTS && sc_kinds[k].variants[var]; var++)
      if (p->at_deaths[k][var])
        sc_printf(&t, " %s %" PRIu64 "/%" PRIu64 " [at %" PRIu64 " deaths];",
                  sc_kinds[k].variants[var], sh->hits[k][var], sh->attempts[k][var],
                  p->at_deaths[k][var]);
      else
        sc_printf(&t, " %s %" PRIu64 "/%" PRIu64 ";", sc_kinds[k].variants[var], sh->hits[k][var],
                  sh->attempts[k][var]);
    sc_printf(&t, "\n");
  }
  sc_printf(&t,
            "  service objects under their names (the victims recreate them): A %.0f%%, B %.0f%% "
            "of the time\n",
            p->svc_looks ? 100.0 * (double)p->svc_present[0] / (double)p->svc_looks : 0.0,
            p->svc_looks ? 100.0 * (double)p->svc_present[1] / (double)p->svc_looks : 0.0);
  for (int kind = 0; kind < 3; kind++) {
    uint64_t want = p->run.cover_words[kind], got = 0;
    if (want > SC_COVER_WORDS) want = SC_COVER_WORDS;
    for (uint64_t w = 0; w < want; w++) got += (sh->cover[kind][w / 64] >> (w % 64)) & 1u;
    sc_printf(&t, "  coverage of %s segment words: %" PRIu64 " of %" PRIu64 " (%.0f%%)\n",
              sc_target_names[kind], got, want, want ? 100.0 * (double)got / (double)want : 0.0);
  }
  sc_printf(&t,
            "  victims: %d deaths or hangs, %d restarts; samples taken %" PRIu64 " valid + %" PRIu64
            " garbled (%" PRIu64 " changed while held); published %" PRIu64 " (A) + %" PRIu64
            " (B, %" PRIu64 " block timeouts); %" PRIu64 " port opens\n",
            p->ndeaths, p->respawns, all.taken_valid, all.taken_garbled, all.changed_held,
            all.published, all.published_block, all.block_timeouts, all.reopens);
  sc_printf(&t,
            "  scheduling: max nanosleep overrun %.2f ms over %" PRIu64
            " control sleeps: allowance %.2f ms (10 ms + that)\n",
            sc_ms(ctl_max), all.ctl_samples, sc_ms(allowance));
  sc_printf(&t, "  %-26s %9s %11s %8s  errors\n", "operation", "calls", "max (ms)", ">10ms");
  for (int o = 1; o < SC_NOPS; o++) {
    const sc_opstat *s = &all.op[o];
    if (s->calls == 0) continue;
    sc_printf(&t, "  %-26s %9" PRIu64 " %11.2f %8" PRIu64 " %s", sc_ops[o].name, s->calls,
              sc_ms(s->max_ns), s->over,
              sc_ops[o].cls == C_TIMED      ? "overrun "
              : sc_ops[o].cls == C_NONBLOCK ? "duration"
                                            : "(info) ");
    for (int e = 1; e < SC_NERR; e++)
      if (s->err[e]) sc_printf(&t, " %s=%" PRIu64, sc_err_label(e), s->err[e]);
    sc_printf(&t, "\n");
  }
  sc_print(&t);
  /* Checks: overruns first (they must not be cut off by a long list). */
  for (int o = 1; o < SC_NOPS; o++) {
    const sc_opstat *s = &all.op[o];
    if (sc_ops[o].cls == C_REPORT || s->calls == 0 || s->max_ns <= allowance) continue;
    int worst = -1;
    for (int v = 0; v < SC_VICTIMS; v++)
      if (p->reported[v] && p->total[v].op[o].max_ns == s->max_ns) worst = v;
    sc_printf(&p->fail,
              "%s %s %.2f ms (allowance %.2f ms: 10 ms + measured scheduling %.2f ms); %" PRIu64
              " of %" PRIu64 " calls above 10 ms; worst in %s %d\n",
              sc_ops[o].name, sc_ops[o].cls == C_TIMED ? "overran its timeout by" : "took",
              sc_ms(s->max_ns), sc_ms(allowance), sc_ms(ctl_max), s->over, s->calls,
              worst >= 0 ? sc_role(worst) : "?", worst >= 0 ? sc_role_index(worst) : -1);
  }
  /* Deaths and hangs: a tally by kind and call, then the first ones in
   * detail. */
  int listed = p->ndeaths < SC_MAX_DEATHS ? p->ndeaths : SC_MAX_DEATHS;
  int tallied[SC_MAX_DEATHS] = {0};
  for (int i = 0; i < listed; i++) {
    if (tallied[i]) continue;
    int n = 0;
    for (int j = i; j < listed; j++)
      if (!tallied[j] && p->deaths[j].code == p->deaths[i].code &&
          p->deaths[j].op == p->deaths[i].op &&
          (p->deaths[j].victim < SC_PUBS) == (p->deaths[i].victim < SC_PUBS))
        tallied[j] = 1, n++;
    char what[96];
    sc_describe_code(what, sizeof what, p->deaths[i].code);
    sc_printf(&p->fail, "%d x a %s %s in %s\n", n, sc_role(p->deaths[i].victim), what,
              sc_ops[p->deaths[i].op].name);
  }
  if (p->ndeaths > SC_MAX_DEATHS)
    sc_printf(&p->fail, "... and %d more deaths or hangs\n", p->ndeaths - SC_MAX_DEATHS);
  for (int i = 0; i < listed && i < 10; i++) {
    const sc_death *d = &p->deaths[i];
    char what[96];
    sc_describe_code(what, sizeof what, d->code);
    sc_printf(&p->fail, "  %s %d %s at %.1f s in %s (for %.1f ms); attacks then: %s\n",
              sc_role(d->victim), sc_role_index(d->victim), what, (double)d->at_ns / 1e9,
              sc_ops[d->op].name, sc_ms(d->op_age_ns),
              d->around[0] ? d->around : "none but word scribbles");
  }
  if (all.taken_valid == 0)
    sc_printf(&p->fail, "no subscriber took a single valid sample: the run exercised nothing\n");
}

/* The final shmbus_domain_cleanup, in a child: the parent trusts the
 * library no more than the victims do. */
static int sc_cleanup_child(ts_child *self, void *arg) {
  const ts_env *env = arg;
  shmbus_node *node = ts_child_node(env);
  TS_CHECK(node != NULL);
  int r = shmbus_domain_cleanup(node);
  shmbus_node_close(node);
  TS_CHECK(ts_child_send(self, (uint64_t)(int64_t)r) == 0);
  return 0;
}

/* Runs it; returns its result, or INT_MIN when it hung or died (and says so
 * in `fail`). */
static int sc_final_cleanup(ts_env *env, sc_text *fail, const char *what) {
  ts_child c;
  ts_child_start(&c, sc_cleanup_child, env);
  uint64_t r = 0;
  int got = sc_recv_words(c.up[0], &r, 1, ts_now_ns() + 60 * SC_S) == 0;
  int code;
  uint64_t deadline = ts_now_ns() + 5 * SC_S;
  while ((code = ts_child_poll(&c)) < 0 && ts_now_ns() < deadline) sc_sleep_ns(5 * SC_MS);
  if (code < 0) {
    kill(c.pid, SIGKILL);
    ts_child_wait(&c);
  }
  if (got && code == 0) return (int)(int64_t)r;
  char how[96];
  sc_describe_code(how, sizeof how, code < 0 ? SC_EXIT_HANG : code);
  sc_printf(fail, "%s: shmbus_domain_cleanup after the run %s%s\n", what, how,
            got ? "" : " (no result within 60 s)");
  return INT_MIN;
}

static void run_scribbler(ts_env *env, double seconds) {
  sc_parent *p = calloc(1, sizeof *p);
  assert_non_null(p);
  sc_run *run = &p->run;
  run->env = env;
  run->sh = ts_shared_alloc(sizeof(sc_shared));
  assert_non_null(run->sh);
  run->seconds_ns = (uint64_t)(seconds * 1e9);
  run->hang_ns = (uint64_t)(sc_env_double("SCRIBBLER_HANG_S", 5) * 1e9);
  run->attack_mask = sc_attack_mask();
  run->verbose = (int)sc_env_ulong("SCRIBBLER_VERBOSE", 0);
  for (int s = 0; s < SC_NSVC; s++) {
    ts_service_name(run->svc_name[s], sizeof run->svc_name[s],
                    s == SC_SVC_A ? "scribble-a" : "scribble-b");
    shmbus_service_opts o = ts_opts();
    o.max_elements = 1;
    o.max_publishers = 4;
    o.max_subscribers = 6;
    o.queue_depth = s == SC_SVC_A ? 16 : 8;
    o.history = s == SC_SVC_A ? 2 : 0;
    o.max_loans = 2;
    o.max_held = s == SC_SVC_A ? 4 : 2;
    o.overflow = s == SC_SVC_A ? SHMBUS_OVERFLOW_DROP_OLDEST : SHMBUS_OVERFLOW_BLOCK;
    run->opts[s] = o;
    sc_config(run->svc_name[s], &o, &run->cfg[s]);
    ts_assert_ok(shmbus__layout_compute(&run->cfg[s], &run->layout[s]));
    run->hash[s] = shmbus__hash64(run->svc_name[s]);
    ts_service_object_name(run->svc_object[s], sizeof run->svc_object[s], env->domain,
                           run->svc_name[s]);
    uint64_t sizes[3] = {run->layout[s].service_size, run->layout[s].data_size,
                         run->layout[s].control_size};
    for (int k = 0; k < 3; k++)
      if (sizes[k] / 8 > run->cover_words[k]) run->cover_words[k] = sizes[k] / 8;
  }
  sc_shared *sh = run->sh;
  sh->t0 = ts_now_ns();
  ts_watchdog wd;
  ts_watchdog_start(&wd, env->domain, env->dir, (unsigned)seconds + 180, "scribbler");
  for (int v = 0; v < SC_VICTIMS; v++) sc_start_victim(p, v);
  for (int i = 0; i < SC_ATTACKERS; i++) {
    p->aargs[i] = (sc_arg){run, i};
    ts_child_start(&p->attackers[i], sc_attacker_main, &p->aargs[i]);
  }
  uint64_t end = sh->t0 + run->seconds_ns;
  while (ts_now_ns() < end) {
    sc_sleep_ns(5 * SC_MS);
    sc_poll_children(p, 1);
    p->svc_looks++;
    for (int s = 0; s < SC_NSVC; s++) {
      char path[2048];
      struct stat st;
      ts_object_path(path, sizeof path, env->dir, run->svc_object[s]);
      if (lstat(path, &st) == 0 && S_ISREG(st.st_mode)) p->svc_present[s]++;
    }
  }
  /* Stop the attackers (each finishes and undoes its current action). */
  STORE(sh->stop_attack, 1);
  uint64_t deadline = ts_now_ns() + 20 * SC_S;
  for (int i = 0; i < SC_ATTACKERS; i++) {
    int code;
    while ((code = ts_child_poll(&p->attackers[i])) < 0 && ts_now_ns() < deadline) {
      sc_sleep_ns(5 * SC_MS);
      sc_poll_children(p, 0);
    }
    if (code < 0) {
      kill(p->attackers[i].pid, SIGKILL);
      code = ts_child_wait(&p->attackers[i]);
      sc_printf(&p->fail, "attacker %d did not stop (test bug)\n", i);
    } else if (code != 0) {
      char what[96];
      sc_describe_code(what, sizeof what, code);
      sc_printf(&p->fail, "attacker %d %s (test bug)\n", i, what);
    }
  }
  /* Let the victims close and report, all watched at once (a death or a
   * hang is recorded when it happens). */
  STORE(sh->stop_victims, 1);
  deadline = ts_now_ns() + run->hang_ns * 8 + 10 * SC_S;
  for (int pending = 1; pending;) {
    pending = 0;
    for (int v = 0; v < SC_VICTIMS; v++) {
      if (!p->alive[v]) continue;
      struct pollfd pfd = {p->victims[v].up[0], POLLIN, 0};
      if (poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN)) {
        sc_report r;
        if (sc_recv_words(p->victims[v].up[0], (uint64_t *)&r, sizeof r / 8,
                          ts_now_ns() + 5 * SC_S) == 0 &&
            r.magic == SC_REPORT_MAGIC) {
          sc_add_report(&p->total[v], &r);
          p->reported[v] = 1;
          memset(sh->live[v], 0, sizeof r); /* counted: not again if it dies now */
        }
        int code;
        uint64_t by = ts_now_ns() + 5 * SC_S;
        while ((code = ts_child_poll(&p->victims[v])) < 0 && ts_now_ns() < by) sc_sleep_ns(SC_MS);
        if (code < 0) {
          sc_record_death(p, v, SC_EXIT_HANG); /* reported but did not exit */
          kill(p->victims[v].pid, SIGKILL);
          ts_child_wait(&p->victims[v]);
        } else if (code != 0) {
          sc_record_death(p, v, code);
        }
        p->alive[v] = 0;
        continue;
      }
      int code = ts_child_poll(&p->victims[v]);
      if (code >= 0) { /* ended without a report */
        sc_record_death(p, v, code);
        p->alive[v] = 0;
        continue;
      }
      if (ts_now_ns() >= deadline) {
        sc_record_death(p, v, SC_EXIT_HANG);
        kill(p->victims[v].pid, SIGKILL);
        ts_child_wait(&p->victims[v]);
        p->alive[v] = 0;
        continue;
      }
      pending = 1;
    }
    if (pending) sc_sleep_ns(2 * SC_MS);
  }
  double secs = (double)(ts_now_ns() - sh->t0) / 1e9;
  sc_summary(p, secs);
  /* Cleanup: what the library removes, then every leftover. */
  int cleaned = sc_final_cleanup(env, &p->fail, "scribbler");
  char names[1024] = "";
  size_t left = ts_leftovers(env->domain, env->dir, names, sizeof names);
  printf("scribbler: shmbus_domain_cleanup gave %d (%s); %zu object(s) left after it%s%s\n",
         cleaned,
         cleaned == INT_MIN ? "hung or died"
         : cleaned < 0      ? shmbus_err_name(cleaned)
                            : "removed",
         left, left ? ": " : "", names);
  ts_remove_leftovers(env->domain, env->dir);
  ts_watchdog_stop(&wd);
  ts_shared_free(run->sh, sizeof(sc_shared));
  int failed = p->fail.len > 0;
  if (failed) {
    fprintf(stderr, "scribbler FAILED:\n");
    sc_eprint(&p->fail);
  }
  free(p);
  if (failed) fail_msg("scribbler: victims died, hung or overran their timeouts (see above)");
}

static double sc_seconds_total(void) { return sc_env_double("SCRIBBLER_SECONDS", 20); }

static void test_scribbler_shm(void **state) { run_scribbler(*state, sc_seconds_total() * 0.7); }
static void test_scribbler_dir(void **state) { run_scribbler(*state, sc_seconds_total() * 0.3); }

/* ======================================================================== */
/* Confinement                                                              */
/* ======================================================================== */

enum {
  CF_HONEST = 3,
  CF_MSG_READY = 1,
  CF_MSG_GO = 2,
  CF_MSG_STOP = 3,
  CF_MSG_PUB_DONE = 4,
  CF_MSG_FINISH = 5,
  CF_DATA = 48
};

/* The payload: its sequence number, a CRC32C over the sequence and the
 * data, random data. */
typedef struct cf_payload {
  uint64_t seq;
  uint32_t crc;
  uint32_t pad;
  uint8_t data[CF_DATA];
} cf_payload;

typedef struct cf_run {
  const ts_env *env;
  char service[64];
  shmbus_service_opts opts;
  uint64_t samples;
  double rate;
  unsigned alarm_s; /* the children's alarm backstop */
  int index;
} cf_run;

static uint32_t cf_crc(const cf_payload *p) {
  uint32_t c = ts_crc32c_update(~0u, &p->seq, sizeof p->seq);
  return ~ts_crc32c_update(c, p->data, sizeof p->data);
}

/* What an honest subscriber saw. */
typedef struct cf_honest_report {
  uint64_t received, gaps, lost, bad_len, bad_crc, bad_seq_field, bad_order, changed_held, foreign;
  uint64_t last_seq, errors, first_bad_seq;
  uint64_t err[SC_NERR];
} cf_honest_report;

typedef struct cf_buggy_report {
  uint64_t writes, bursts, ranges_max, bytes_max, takes, errors;
  uint64_t err[SC_NERR];
} cf_buggy_report;

typedef struct cf_pub_report {
  uint64_t published, errors;
  uint64_t err[SC_NERR];
} cf_pub_report;

static int cf_node_sub(const cf_run *r, shmbus_node **node, shmbus_subscriber **sub) {
  alarm(r->alarm_s);
  *node = ts_child_node(r->env);
  if (*node == NULL) return -1;
  int e = shmbus_subscriber_open(*node, r->service, &r->opts, sub);
  if (e) {
    fprintf(stderr, "confinement: child %ld: subscriber_open: %s\n", (long)getpid(),
            shmbus_err_name(e));
    return -1;
  }
  uint64_t deadline = ts_now_ns() + 10 * SC_S;
  while (shmbus_subscriber_publishers(*sub) < 1) {
    if (ts_now_ns() > deadline) return -1;
    sc_sleep_ns(SC_MS);
  }
  return 0;
}

static int cf_check(const shmbus_sample *s, cf_honest_report *rep, int count) {
  if (s->bytes != sizeof(cf_payload)) {
    if (count) rep->bad_len++;
    return 0;
  }
  const cf_payload *p = s->payload;
  if (p->seq != s->sequence) {
    if (count) rep->bad_seq_field++;
    return 0;
  }
  if (cf_crc(p) != p->crc) {
    if (count) rep->bad_crc++;
    return 0;
  }
  return 1;
}

static int cf_honest(ts_child *self, void *arg) {
  const cf_run *r = arg;
  shmbus_node *node;
  shmbus_subscriber *sub = NULL;
  TS_CHECK(cf_node_sub(r, &node, &sub) == 0);
  TS_CHECK(ts_child_send(self, CF_MSG_READY) == 0);
  cf_honest_report rep;
  memset(&rep, 0, sizeof rep);
  rep.first_bad_seq = UINT64_MAX;
  uint64_t expect = 0, pub_id = 0, drain_until = UINT64_MAX;
  uint64_t deadline = ts_now_ns() + (uint64_t)((double)r->samples / r->rate * 4e9) + 60 * SC_S;
  shmbus_sample held[4];
  uint32_t nheld = 0, keep = r->opts.max_held - 1;
  int reports = 0;
  while (expect < r->samples && ts_now_ns() < deadline && ts_now_ns() < drain_until) {
    int w = shmbus_subscriber_wait(sub, 10 * (int64_t)SC_MS);
    if (w != 0 && w != SHMBUS_ERR_TIMEDOUT) rep.err[sc_err_index(w)]++, rep.errors++;
    for (;;) {
      if (nheld == keep) {
        if (!cf_check(&held[0], &rep, 0)) {
          rep.changed_held++;
          if (reports++ < 5)
            fprintf(stderr, "confinement: honest %d: sample %" PRIu64 " changed while held\n",
                    r->index, held[0].sequence);
        }
        int e = shmbus_subscriber_release(sub, &held[0]);
        if (e) rep.err[sc_err_index(e)]++, rep.errors++;
        memmove(&held[0], &held[1], --nheld * sizeof held[0]);
      }
      shmbus_sample s;
      int e = shmbus_subscriber_take(sub, &s);
      if (e == SHMBUS_ERR_EMPTY) break;
      if (e) {
        rep.err[sc_err_index(e)]++, rep.errors++;
        break;
      }
      rep.received++;
      if (pub_id == 0) pub_id = s.publisher_id;
      if (s.publisher_id != pub_id) rep.foreign++;
      if (!cf_check(&s, &rep, 1)) {
        if (rep.first_bad_seq == UINT64_MAX) rep.first_bad_seq = s.sequence;
        if (reports++ < 5)
          fprintf(stderr, "confinement: honest %d: bad sample: sequence %" PRIu64 ", %zu bytes\n",
                  r->index, s.sequence, s.bytes);
      }
      if (s.sequence > expect) {
        rep.gaps += s.sequence - expect;
        if (reports++ < 5)
          fprintf(stderr, "confinement: honest %d: gap: %" PRIu64 " after %" PRIu64 "\n", r->index,
                  s.sequence, expect);
        expect = s.sequence + 1;
      } else if (s.sequence < expect) {
        rep.bad_order++;
        if (reports++ < 5)
          fprintf(stderr,
                  "confinement: honest %d: sequence %" PRIu64 " again (expected %" PRIu64 ")\n",
                  r->index, s.sequence, expect);
      } else {
        expect++;
      }
      rep.last_seq = s.sequence;
      held[nheld++] = s;
    }
    struct pollfd pfd = {self->down[0], POLLIN, 0};
    if (drain_until == UINT64_MAX && poll(&pfd, 1, 0) > 0) {
      uint64_t m;
      if (ts_child_recv(self, &m) == 0 && m == CF_MSG_PUB_DONE)
        drain_until = ts_now_ns() + 5 * SC_S;
    }
  }
  for (uint32_t i = 0; i < nheld; i++) {
    if (!cf_check(&held[i], &rep, 0)) rep.changed_held++;
    int e = shmbus_subscriber_release(sub, &held[i]);
    if (e) rep.err[sc_err_index(e)]++, rep.errors++;
  }
  rep.lost = shmbus_subscriber_lost(sub);
  TS_CHECK(sc_send_words(self->up[1], (const uint64_t *)&rep, sizeof rep / 8) == 0);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  return 0;
}

typedef struct cf_range {
  uintptr_t lo, hi;
  char name[128];
} cf_range;

/* The domain's shared mappings this process may write ("rw-s"). */
static int cf_writable(const char *prefix, cf_range *out, int cap) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (f == NULL) return 0;
  char line[1024];
  int n = 0;
  size_t plen = strlen(prefix);
  while (n < cap && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    char perms[8];
    int off = -1;
    if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, perms, &off) < 3 || off < 0) continue;
    char *path = line + off;
    path[strcspn(path, "\n")] = '\0';
    if (strncmp(path, prefix, plen) != 0 || perms[1] != 'w' || perms[3] != 's' || hi <= lo)
      continue;
    out[n].lo = lo;
    out[n].hi = hi;
    const char *base = strrchr(path, '/');
    snprintf(out[n].name, sizeof out[n].name, "%s", base ? base + 1 : path);
    n++;
  }
  fclose(f);
  return n;
}

static int cf_buggy(ts_child *self, void *arg) {
  const cf_run *r = arg;
  shmbus_node *node;
  shmbus_subscriber *sub = NULL;
  TS_CHECK(cf_node_sub(r, &node, &sub) == 0);
  TS_CHECK(ts_child_send(self, CF_MSG_READY) == 0);
  uint64_t go = 0;
  TS_CHECK(ts_child_recv(self, &go) == 0 && go == CF_MSG_GO);
  char prefix[1200];
  snprintf(prefix, sizeof prefix, "%s/shmbus.%s.", r->env->dir ? r->env->dir : "/dev/shm",
           r->env->domain);
  cf_buggy_report rep;
  memset(&rep, 0, sizeof rep);
  uint64_t rng = sc_seed(0xb0667);
  enum { MAX_RANGES = 64, MAX_SEEN = 16 };
  cf_range ranges[MAX_RANGES], seen[MAX_SEEN];
  int nseen = 0;
  shmbus_sample held[4];
  uint32_t nheld = 0;
  for (;;) {
    struct pollfd pfd = {self->down[0], POLLIN, 0};
    if (poll(&pfd, 1, 0) > 0) break; /* STOP */
    /* Its own use of the library, over what it scribbled. */
    (void)shmbus_subscriber_wait(sub, 0);
    for (int n = 0; n < 8; n++) {
      if (nheld == r->opts.max_held - 1) {
        int e = shmbus_subscriber_release(sub, &held[0]);
        if (e) rep.err[sc_err_index(e)]++, rep.errors++;
        memmove(&held[0], &held[1], --nheld * sizeof held[0]);
      }
      shmbus_sample s;
      int e = shmbus_subscriber_take(sub, &s);
      if (e == SHMBUS_ERR_EMPTY) break;
      if (e) {
        rep.err[sc_err_index(e)]++, rep.errors++;
        break;
      }
      rep.takes++;
      held[nheld++] = s;
    }
    /* Only now, after the calls that may map or unmap: what is writable. */
    int n = cf_writable(prefix, ranges, MAX_RANGES);
    uint64_t bytes = 0;
    for (int i = 0; i < n; i++) {
      bytes += ranges[i].hi - ranges[i].lo;
      int known = 0;
      for (int j = 0; j < nseen; j++)
        known |= strcmp(seen[j].name, ranges[i].name) == 0 &&
                 seen[j].hi - seen[j].lo == ranges[i].hi - ranges[i].lo;
      if (!known && nseen < MAX_SEEN) seen[nseen++] = ranges[i];
    }
    if ((uint64_t)n > rep.ranges_max) rep.ranges_max = (uint64_t)n;
    if (bytes > rep.bytes_max) rep.bytes_max = bytes;
    if (n > 0) {
      rep.bursts++;
      for (int w = 0; w < 32; w++) {
        const cf_range *g = &ranges[sc_below(&rng, (uint64_t)n)];
        uint64_t words = (g->hi - g->lo) / 8;
        uint64_t *p = (uint64_t *)g->lo + sc_below(&rng, words);
        uint64_t v = sc_next(&rng);
        switch (sc_below(&rng, 6)) {
        case 0: __atomic_store_n(p, v, __ATOMIC_RELAXED); break;
        case 1: __atomic_fetch_add(p, 1, __ATOMIC_RELAXED); break;
        case 2: __atomic_fetch_sub(p, 1, __ATOMIC_RELAXED); break;
        case 3: __atomic_store_n(p, v % 512, __ATOMIC_RELAXED); break;
        case 4:
          __atomic_store_n(
              p, __atomic_load_n((uint64_t *)g->lo + sc_below(&rng, words), __ATOMIC_RELAXED),
              __ATOMIC_RELAXED);
          break;
        default: __atomic_store_n(p, 0, __ATOMIC_RELAXED); break;
        }
        rep.writes++;
      }
    }
    sc_sleep_ns(100 * 1000);
  }
  uint64_t stop;
  TS_CHECK(ts_child_recv(self, &stop) == 0 && stop == CF_MSG_STOP);
  fprintf(stderr, "confinement: buggy subscriber: writable shared mappings of the domain seen:");
  for (int j = 0; j < nseen; j++)
    fprintf(stderr, " %s [%lu B]", seen[j].name, (unsigned long)(seen[j].hi - seen[j].lo));
  fprintf(stderr, "%s\n", nseen ? "" : " none");
  for (uint32_t i = 0; i < nheld; i++) (void)shmbus_subscriber_release(sub, &held[i]);
  TS_CHECK(sc_send_words(self->up[1], (const uint64_t *)&rep, sizeof rep / 8) == 0);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  return 0;
}

static int cf_publisher(ts_child *self, void *arg) {
  const cf_run *r = arg;
  alarm(r->alarm_s);
  shmbus_node *node = ts_child_node(r->env);
  TS_CHECK(node != NULL);
  shmbus_publisher *pub = NULL;
  TS_CHECK_ERR(shmbus_publisher_open(node, r->service, &r->opts, &pub), 0);
  uint64_t deadline = ts_now_ns() + 10 * SC_S;
  while (shmbus_publisher_update(pub) < CF_HONEST + 1) {
    TS_CHECK(ts_now_ns() < deadline);
    sc_sleep_ns(SC_MS);
  }
  TS_CHECK(ts_child_send(self, CF_MSG_READY) == 0);
  uint64_t go = 0;
  TS_CHECK(ts_child_recv(self, &go) == 0 && go == CF_MSG_GO);
  cf_pub_report rep;
  memset(&rep, 0, sizeof rep);
  uint64_t rng = sc_seed(0x9b);
  uint64_t t0 = ts_now_ns();
  while (rep.published < r->samples) {
    uint64_t due = (uint64_t)((double)(ts_now_ns() - t0) / 1e9 * r->rate) + 1;
    while (rep.published < due && rep.published < r->samples) {
      void *p = NULL;
      int e = shmbus_publisher_loan(pub, 1, &p);
      if (e == 0) {
        cf_payload *c = p;
        c->seq = rep.published; /* the publisher's sequence numbers start at 0 too */
        c->pad = 0;
        for (int i = 0; i < CF_DATA; i += 8) {
          uint64_t v = sc_next(&rng);
          memcpy(c->data + i, &v, 8);
        }
        c->crc = cf_crc(c);
        e = shmbus_publisher_publish(pub, p);
        if (e) shmbus_publisher_discard(pub, p);
      }
      if (e) {
        rep.err[sc_err_index(e)]++, rep.errors++;
        TS_CHECK(rep.errors < 1000000);
        continue; /* the same sequence number again: it was not published */
      }
      rep.published++;
    }
    sc_sleep_ns(200 * 1000);
  }
  TS_CHECK(sc_send_words(self->up[1], (const uint64_t *)&rep, sizeof rep / 8) == 0);
  uint64_t fin = 0;
  TS_CHECK(ts_child_recv(self, &fin) == 0 && fin == CF_MSG_FINISH);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  return 0;
}

static void cf_errors(sc_text *t, const uint64_t *err) {
  for (int e = 1; e < SC_NERR; e++)
    if (err[e]) sc_printf(t, " %s=%" PRIu64, sc_err_label(e), err[e]);
}

/* Receives one message and compares it, without cmocka. */
static int cf_expect(ts_child *c, uint64_t want, uint64_t deadline) {
  uint64_t got = 0;
  if (sc_recv_words(c->up[0], &got, 1, deadline) != 0 || got != want) {
    print_error("confinement: child %ld did not get ready\n", (long)c->pid);
    return 0;
  }
  return 1;
}

/* Waits for a child that reported (a few seconds), or kills one that did
 * not; returns its code as ts_child_wait does. */
static int cf_reap(ts_child *c, int reported) {
  uint64_t deadline = ts_now_ns() + (reported ? 20 : 2) * SC_S;
  int code;
  while ((code = ts_child_poll(c)) < 0 && ts_now_ns() < deadline) sc_sleep_ns(5 * SC_MS);
  if (code >= 0) return code;
  kill(c->pid, SIGKILL);
  ts_child_wait(c);
  return SC_EXIT_HANG;
}

static void run_confinement(ts_env *env, uint64_t samples) {
  cf_run base;
  memset(&base, 0, sizeof base);
  base.env = env;
  ts_service_name(base.service, sizeof base.service, "confine");
  base.opts.type.name = "shmbus-test/Crc64";
  base.opts.type.size = sizeof(cf_payload);
  base.opts.type.align = 8;
  base.opts.max_elements = 1;
  base.opts.max_publishers = 2;
  base.opts.max_subscribers = CF_HONEST + 1;
  base.opts.queue_depth = 16384; /* 0.65 s of slack at 25000/s */
  base.opts.max_loans = 2;
  base.opts.max_held = 4;
  base.opts.overflow = SHMBUS_OVERFLOW_DROP_OLDEST;
  base.samples = samples;
  base.rate = sc_env_double("CONFINE_RATE", 25000);
  assert_int_equal(ts_crc32c("123456789", 9), 0xE3069283u);
  double expected_s = (double)samples / base.rate;
  base.alarm_s = (unsigned)(expected_s * 4) + 90;
  ts_watchdog wd;
  ts_watchdog_start(&wd, env->domain, env->dir, base.alarm_s + 60, "confinement");
  cf_run hr[CF_HONEST], br = base, pr = base;
  ts_child honest[CF_HONEST], buggy, pub;
  for (int i = 0; i < CF_HONEST; i++) {
    hr[i] = base;
    hr[i].index = i;
    ts_child_start(&honest[i], cf_honest, &hr[i]);
  }
  ts_child_start(&buggy, cf_buggy, &br);
  ts_child_start(&pub, cf_publisher, &pr);
  /* No cmocka assertion from here until every child is reaped. */
  uint64_t ready_by = ts_now_ns() + 30 * SC_S;
  int ready = 1;
  for (int i = 0; i < CF_HONEST; i++) ready &= cf_expect(&honest[i], CF_MSG_READY, ready_by);
  ready &= cf_expect(&buggy, CF_MSG_READY, ready_by);
  ready &= cf_expect(&pub, CF_MSG_READY, ready_by);
  uint64_t t0 = ts_now_ns();
  cf_pub_report prep;
  memset(&prep, 0, sizeof prep);
  int pub_reported = 0;
  if (ready) {
    (void)ts_send(buggy.down[1], CF_MSG_GO);
    sc_sleep_ns(20 * SC_MS); /* it scribbles before the first sample */
    (void)ts_send(pub.down[1], CF_MSG_GO);
    uint64_t pub_deadline = ts_now_ns() + (uint64_t)(expected_s * 4e9) + 60 * SC_S;
    pub_reported = sc_recv_words(pub.up[0], (uint64_t *)&prep, sizeof prep / 8, pub_deadline) == 0;
  }
  double secs = (double)(ts_now_ns() - t0) / 1e9;
  cf_honest_report hrep[CF_HONEST];
  int hok[CF_HONEST];
  memset(hrep, 0, sizeof hrep);
  for (int i = 0; i < CF_HONEST; i++) (void)ts_send(honest[i].down[1], CF_MSG_PUB_DONE);
  for (int i = 0; i < CF_HONEST; i++)
    hok[i] = ready && sc_recv_words(honest[i].up[0], (uint64_t *)&hrep[i], sizeof hrep[i] / 8,
                                    ts_now_ns() + 30 * SC_S) == 0;
  (void)ts_send(buggy.down[1], CF_MSG_STOP);
  cf_buggy_report brep;
  memset(&brep, 0, sizeof brep);
  int bok = ready && sc_recv_words(buggy.up[0], (uint64_t *)&brep, sizeof brep / 8,
                                   ts_now_ns() + 30 * SC_S) == 0;
  (void)ts_send(pub.down[1], CF_MSG_FINISH);
  int hcode[CF_HONEST], bcode, pcode;
  for (int i = 0; i < CF_HONEST; i++) hcode[i] = cf_reap(&honest[i], hok[i]);
  bcode = cf_reap(&buggy, bok);
  pcode = cf_reap(&pub, pub_reported);
  ts_watchdog_stop(&wd);

  sc_text t = {.len = 0}, fail = {.len = 0};
  char what[96];
  sc_printf(&t, "confinement (%s backend): %" PRIu64 " samples published in %.2f s (%.0f/s)",
            env->backend == SHMBUS_BACKEND_DIR ? "dir" : "shm", prep.published, secs,
            secs > 0 ? (double)prep.published / secs : 0.0);
  cf_errors(&t, prep.err);
  sc_printf(&t,
            "\n  buggy subscriber: %" PRIu64 " writes in %" PRIu64 " bursts into up to %" PRIu64
            " writable mappings (%" PRIu64 " bytes); it took %" PRIu64 " samples, errors:",
            brep.writes, brep.bursts, brep.ranges_max, brep.bytes_max, brep.takes);
  cf_errors(&t, brep.err);
  sc_printf(&t, "\n");
  if (!pub_reported || pcode != 0) {
    sc_describe_code(what, sizeof what, pcode);
    sc_printf(&fail, "publisher %s%s\n", what, pub_reported ? "" : " (no report: it hung or died)");
  }
  if (prep.published != samples)
    sc_printf(&fail, "publisher published %" PRIu64 " of %" PRIu64 "\n", prep.published, samples);
  if (!ready) sc_printf(&fail, "the children did not all get ready (see above)\n");
  if (!bok || bcode != 0) {
    sc_describe_code(what, sizeof what, bcode);
    sc_printf(&fail, "buggy subscriber %s%s (its own library calls over its own scribbles)\n", what,
              bok ? "" : ", no report");
  }
  if (bok && brep.writes == 0)
    sc_printf(&fail,
              "buggy subscriber found no writable mapping of the domain: nothing was tested\n");
  for (int i = 0; i < CF_HONEST; i++) {
    const cf_honest_report *h = &hrep[i];
    if (!hok[i]) {
      sc_describe_code(what, sizeof what, hcode[i]);
      sc_printf(&fail, "honest subscriber %d sent no report: %s\n", i, what);
      continue;
    }
    sc_printf(&t,
              "  honest %d: received %" PRIu64 " of %" PRIu64 ", gaps %" PRIu64 ", lost %" PRIu64
              ", bad CRC %" PRIu64 ", bad length %" PRIu64 ", wrong seq field %" PRIu64
              ", out of order %" PRIu64 ", changed while held %" PRIu64 ", foreign %" PRIu64
              ", errors:",
              i, h->received, samples, h->gaps, h->lost, h->bad_crc, h->bad_len, h->bad_seq_field,
              h->bad_order, h->changed_held, h->foreign);
    cf_errors(&t, h->err);
    sc_printf(&t, "\n");
    if (hcode[i] != 0) {
      sc_describe_code(what, sizeof what, hcode[i]);
      sc_printf(&fail, "honest subscriber %d %s\n", i, what);
    }
    uint64_t missing = h->received + h->gaps < samples ? samples - h->received - h->gaps : 0;
    if (h->received != samples || h->gaps || h->lost || h->bad_crc || h->bad_len ||
        h->bad_seq_field || h->bad_order || h->changed_held || h->foreign || h->errors)
      sc_printf(&fail,
                "honest subscriber %d: received %" PRIu64 " of %" PRIu64 " (%" PRIu64
                " never arrived after the last one taken), gaps %" PRIu64
                " (overflow count says %" PRIu64 "%s), bad CRC %" PRIu64 ", bad length %" PRIu64
                ", wrong sequence field %" PRIu64 ", out of order %" PRIu64
                ", changed while held %" PRIu64 ", foreign publisher %" PRIu64 ", errors %" PRIu64
                " (first bad sequence %" PRId64 ")\n",
                i, h->received, samples, missing, h->gaps, h->lost,
                h->gaps != h->lost ? ": unexplained loss" : "", h->bad_crc, h->bad_len,
                h->bad_seq_field, h->bad_order, h->changed_held, h->foreign, h->errors,
                h->first_bad_seq == UINT64_MAX ? (int64_t)-1 : (int64_t)h->first_bad_seq);
  }
  sc_print(&t);
  (void)sc_final_cleanup(env, &fail, "confinement");
  ts_remove_leftovers(env->domain, env->dir);
  if (fail.len) {
    fprintf(stderr, "confinement FAILED:\n");
    sc_eprint(&fail);
    fail_msg("confinement: a buggy subscriber's stray writes reached other ports (see above)");
  }
}

static uint64_t cf_samples(void) { return sc_env_ulong("CONFINE_SAMPLES", 100000); }

static void test_confinement_shm(void **state) { run_confinement(*state, cf_samples()); }
static void test_confinement_dir(void **state) { run_confinement(*state, cf_samples() / 4); }

int main(void) {
  const char *filter = getenv("SCRIBBLER_FILTER");
  if (filter && *filter) cmocka_set_test_filter(filter);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_scribbler_shm, ts_setup_shm, ts_teardown),
      cmocka_unit_test_setup_teardown(test_scribbler_dir, ts_setup_dir, ts_teardown),
      cmocka_unit_test_setup_teardown(test_confinement_shm, ts_setup_shm, ts_teardown),
      cmocka_unit_test_setup_teardown(test_confinement_dir, ts_setup_dir, ts_teardown),
  };
  /* A child that died must not kill us when we write to its pipe. */
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests_name("scribbler", tests, NULL, NULL) ? 1 : 0;
}

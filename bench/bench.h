/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shmbus-bench: every transport is measured the same way, in the same run,
 * on the same two cores.
 *
 * Latency: two processes, A pinned to one core and B to another. A sends a
 * message, B echoes it, A records (round trip / 2) per iteration. Busy
 * transports poll; blocking ones sleep in the kernel.
 */
#ifndef SHMBUS_BENCH_H
#define SHMBUS_BENCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct bench_params {
  size_t payload;      /* bytes per message                         */
  uint64_t iterations; /* at most this many measured round trips    */
  uint64_t warmup;     /* round trips before measuring              */
  double budget_s;     /* stop measuring after this many seconds    */
  int touch_all;       /* write the whole payload, not its first line */
  int subscribers;     /* fan-out                                   */
  char domain[32];     /* unique per run of the benchmark           */
  unsigned run;        /* unique per measurement within a run       */
} bench_params;

/* Shared between the two processes of one measurement (bench_os_share:
 * an anonymous shared mapping made before fork on POSIX, a named section
 * on Windows). */
typedef struct bench_shared {
  volatile int ready[2]; /* each side set up                          */
  volatile int failed;
  char why[160];              /* the reason of a failure or skip           */
  uint64_t count;             /* samples written by role A                 */
  double msgs_per_s;          /* throughput modes                          */
  volatile uint64_t progress; /* free for a transport's own pacing      */
  int measuring;              /* bench_record: warm-up is over             */
  uint64_t measure_start;     /* bench_record: when measuring began        */
  uint64_t samples[];         /* one-way ns per iteration (role A)         */
} bench_shared;

enum { ROLE_A = 0, ROLE_B = 1 };

typedef struct bench_transport {
  const char *name;   /* CSV `transport`                            */
  const char *mode;   /* CSV `mode`: busy or blocking               */
  size_t max_payload; /* 0: any                                     */
  /* NULL when usable, else why it is skipped. */
  const char *(*unavailable)(void);
  /* In the parent, before the two processes start (may be NULL). */
  int (*prepare)(const bench_params *p);
  /* One side of the ping-pong; role A fills sh->samples. 0 or -1 (with
   * sh->why set). */
  int (*run)(const bench_params *p, int role, bench_shared *sh);
  /* In the parent, after both ended (may be NULL). */
  void (*cleanup)(const bench_params *p);
} bench_transport;

/* ---- helpers (bench.c) ---- */
uint64_t bench_now_ns(void); /* calibrated TSC or CLOCK_MONOTONIC */
void bench_fail(bench_shared *sh, const char *fmt, ...);
/* Waits until the other side is ready (bounded); 0 or -1. */
int bench_handshake(bench_shared *sh, int role);
/* Fills the first line (or the whole payload) with a stamp. */
void bench_touch(void *payload, size_t bytes, uint64_t stamp, int all);
/* Reads the stamp the sender wrote. */
uint64_t bench_stamp(const void *payload);
/* Records one-way latency for a round trip and says whether to go on.
 * Warm-up ends after p->warmup round trips or a fifth of the budget; the
 * budget then applies to the measured part. */
int bench_record(const bench_params *p, bench_shared *sh, uint64_t i, uint64_t t0, uint64_t t1,
                 uint64_t start);

/* ---- the OS layer (os_posix.c, os_win.c) ----
 * POSIX: peers are fork()ed children; they inherit anonymous shared
 * mappings and the module state their transport's prepare() set up.
 * Windows: peers are this program started again (CreateProcessW) with the
 * peer's description on its command line; shared regions are named
 * sections, which a peer opens by the name its parent created them with. */

typedef int (*bench_role_fn)(const bench_params *p, int role, bench_shared *sh);

/* What one peer process runs: one role of one measurement on one core. */
typedef struct bench_peer {
  bench_params params;
  bench_role_fn fn;
  int role;
  int cpu;
  double ns_per_tick; /* the parent's TSC calibration (0: none) */
  bench_shared *sh;
} bench_peer;

/* A started peer: a pid (POSIX) or a process handle (Windows); -1 if it
 * could not be started. */
typedef struct bench_proc {
  intptr_t id;
  uint64_t deadline_ns; /* Windows: killed if still running then */
} bench_proc;

uint64_t bench_os_mono_ns(void);       /* CLOCK_MONOTONIC or QPC, in ns     */
const char *bench_os_clock_name(void); /* the name of that clock            */
int bench_os_invariant_tsc(void);      /* x86: TSC constant and non-stop    */
void bench_os_yield(void);             /* sched_yield or SwitchToThread     */
long bench_os_pid(void);               /* this process's id                 */
/* What this runs on, e.g. "Linux 6.1.0 x86_64" or "Windows (wine 8.0 on
 * Linux 6.1.0)"; no commas (it is a CSV field). */
const char *bench_os_platform(void);
/* A zeroed region of `bytes` shared with the peers started after it: in
 * the parent it is made, in a peer process (Windows) the parent's region
 * of the same `tag` (unique within a run of the benchmark) is opened.
 * NULL on failure, with the reason in `why` (may be NULL). */
void *bench_os_share(const bench_params *p, const char *tag, size_t bytes, char *why,
                     size_t why_size);
void bench_os_unshare(void *m, size_t bytes);
/* Starts a peer process pinned to peer->cpu running bench_peer_run(peer)
 * with a watchdog of budget + 60 s. sh must come from bench_os_share. */
bench_proc bench_os_start(const bench_peer *peer);
/* Waits until it ended; 1 if it exited with 0, else 0. `status`: the raw
 * wait status (POSIX) or the exit code (Windows). */
int bench_os_wait(bench_proc *proc, int *status);
/* First thing in main(): in a peer process started by bench_os_start
 * (Windows), runs it and returns its exit code; -1 in any other process. */
int bench_os_peer_main(int argc, char **argv);
/* bench.c: what a peer process runs (the clock, then the role). */
int bench_peer_run(const bench_peer *peer);

/* ---- transports ---- */
extern const bench_transport bench_shmbus;          /* busy: polls take          */
extern const bench_transport bench_shmbus_blocking; /* sleeps in subscriber_wait */
extern const bench_transport bench_shmbus_cpp;      /* busy, through shmbus.hpp  */
extern const bench_transport bench_shmbus_observed; /* busy, while described     */
extern const bench_transport bench_floor;           /* busy: one cache line      */
extern const bench_transport bench_floor2;          /* busy: payload + signal    */
extern const bench_transport bench_floor2_demote;   /* the same, lines demoted   */
extern const bench_transport bench_futex_floor;     /* blocking: one futex word  */
extern const bench_transport bench_pipe;
extern const bench_transport bench_uds;
extern const bench_transport bench_mqueue;
extern const bench_transport bench_iceoryx;
extern const bench_transport bench_zmq;

/* The pool of the shmbus busy row for p->payload: its chunks (asked of
 * shmbus itself, through shmbus_service_describe) and their stride. 0 or
 * -1. */
int bench_shmbus_pool(const bench_params *p, uint32_t *chunks, size_t *stride);

/* Throughput: one publisher process, one subscriber process. */
int bench_shmbus_throughput(const bench_params *p, int role, bench_shared *sh);
int bench_spsc_throughput(const bench_params *p, int role, bench_shared *sh);
int bench_spsc_prepare(const bench_params *p);
void bench_spsc_cleanup(const bench_params *p);
/* Fan-out: role A publishes to p->subscribers subscribers drained by role
 * B; samples are the cost of one loan + publish. */
int bench_shmbus_fanout(const bench_params *p, int role, bench_shared *sh);

#endif /* SHMBUS_BENCH_H */

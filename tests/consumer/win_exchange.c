/* SPDX-License-Identifier: Apache-2.0 */
/*
 * win_exchange: shmbus between Windows processes, as a user writes it.
 *
 *   win_exchange [-n COUNT] [ROOT]
 *
 * The parent opens a publisher on a domain of its own and starts itself
 * twice (CreateProcessW) as a subscriber:
 *
 *   (a) exchange: the first child takes COUNT samples (default 10^6) and
 *       checks that every sequence number arrives once, in order, with its
 *       payload intact; the service blocks the publisher while the
 *       subscriber's queue is full (SHMBUS_OVERFLOW_BLOCK), so none is lost;
 *   (b) reclaim: the second child takes one sample, keeps it and sleeps.
 *       The parent kills it with TerminateProcess and checks that shmbus
 *       reclaims it: the blocked publish reports SHMBUS_ERR_PEER_DEAD
 *       instead of waiting forever, the subscriber count drops, no dead node
 *       is left after shmbus_domain_cleanup, the freed slot (the service
 *       has two) takes a new subscriber, and publishing goes on.
 *
 * One line per check goes to stdout; exit 0 when every check passed, 1
 * otherwise. ROOT (an existing directory) selects the directory backend,
 * memory-mapped files in ROOT; the default backend is named paging-file
 * sections in the session's Local\ namespace.
 *
 * The children are this program again: win_exchange ROLE DOMAIN SERVICE
 * COUNT [ROOT], with ROLE "sub" (take and check COUNT samples, exit 0) or
 * "hold" (take COUNT samples, hold them and sleep until killed).
 *
 * Building it with MinGW-w64 against an installed shmbus (<prefix>):
 *
 *   CMake:       find_package(shmbus CONFIG REQUIRED)
 *                target_link_libraries(win_exchange PRIVATE shmbus::shmbus)
 *                (shmbus::shmbus_static links the static library instead)
 *                cmake -DCMAKE_PREFIX_PATH=<prefix> ...
 *   pkg-config:  PKG_CONFIG_LIBDIR=<prefix>/lib/pkgconfig
 *                x86_64-w64-mingw32-gcc -std=c11 win_exchange.c \
 *                  $(pkg-config --cflags --libs shmbus) -o win_exchange.exe
 *
 * Linked with shmbus::shmbus (or -lshmbus), the program needs libshmbus.dll
 * at run time, which is installed in <prefix>/bin: copy it beside
 * win_exchange.exe (Windows looks in the program's directory first) or put
 * <prefix>/bin on PATH (under wine: WINEPATH). A MinGW-built libshmbus.dll
 * also needs MinGW's runtime DLLs (libgcc_s_seh-1.dll, libwinpthread-1.dll,
 * in MinGW's bin directory): on PATH, or copied beside it the same way.
 * Linked with the static library (shmbus::shmbus_static, or -DSHMBUS_STATIC
 * and -static $(pkg-config --static --libs shmbus)), it needs no DLL.
 */
#include <shmbus.h>

#include <windows.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SERVICE "win_exchange/samples"
#define DEFAULT_COUNT 1000000ull
#define QUEUE_DEPTH 256u     /* samples queued per subscriber */
#define SPIN_NS 50000        /* how long a subscriber polls before it sleeps */
#define KILLED_EXIT 137u     /* the exit code TerminateProcess gives the holder */
#define TIMEOUT_MS 20000u    /* no step of a healthy run takes this long */
#define MORE_AFTER_KILL 1000 /* samples published after the reclaim */

/* The sample: laid out the same in every ABI (shmbus.h, "Sample types"). */
typedef struct exchange_sample {
  SHMBUS_ALIGNAS(8) uint64_t sequence; /* 0, 1, 2, ... */
  uint64_t check;                      /* check_of(sequence) */
} exchange_sample;
SHMBUS_ASSERT_LAYOUT(exchange_sample, 16, 8);

static uint64_t check_of(uint64_t sequence) {
  return (sequence * UINT64_C(0x9e3779b97f4a7c15)) ^ UINT64_C(0x5eb05eb0c0ffee);
}

/* Every process opens the service with the same settings: the first one
 * creates it, later ones are checked against it. */
static shmbus_service_opts service_opts(void) {
  shmbus_service_opts o = SHMBUS_SERVICE_OPTS_INIT;
  o.type.name = "win_exchange/sample";
  o.type.size = sizeof(exchange_sample);
  o.type.align = _Alignof(exchange_sample);
  o.max_subscribers = 2; /* (b) needs the dead subscriber's slot back */
  o.queue_depth = QUEUE_DEPTH;
  o.overflow = SHMBUS_OVERFLOW_BLOCK; /* backpressure: nothing is lost */
  return o;
}

/* ---- small helpers ------------------------------------------------------ */

static const char *role = "parent"; /* for messages */

static int fail(const char *what, int err) {
  fprintf(stderr, "win_exchange %s: FAILED: %s: %s (%s)\n", role, what, shmbus_err_name(err),
          shmbus_strerror(err));
  if (shmbus_error_detail()[0])
    fprintf(stderr, "win_exchange %s: %s\n", role, shmbus_error_detail());
  return 1;
}

static int fail_msg(const char *what) {
  fprintf(stderr, "win_exchange %s: FAILED: %s\n", role, what);
  return 1;
}

/* Writes a line at once: a killed process loses what it buffered. */
static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("win_exchange %s: ", role);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  fflush(stdout);
}

static double now_ms(void) {
  LARGE_INTEGER t, f;
  QueryPerformanceCounter(&t);
  QueryPerformanceFrequency(&f);
  return (double)t.QuadPart * 1000.0 / (double)f.QuadPart;
}

static shmbus_node *open_node(const char *domain, const char *root) {
  shmbus_node_opts no = SHMBUS_NODE_OPTS_INIT;
  no.domain = domain;
  if (root != NULL) {
    no.backend = SHMBUS_BACKEND_DIR;
    no.root = root;
  }
  shmbus_node *node = NULL;
  int r = shmbus_node_open(&no, &node);
  if (r) fail("shmbus_node_open", r);
  return node;
}

/* ---- the children ------------------------------------------------------- */

/* Subscriber 1: takes `count` samples, sleeping in shmbus_subscriber_wait
 * whenever its queue is empty, and checks each. */
static int subscribe(shmbus_node *node, const char *service, uint64_t count) {
  shmbus_service_opts o = service_opts();
  shmbus_subscriber *sub = NULL;
  int r = shmbus_subscriber_open(node, service, &o, &sub);
  if (r) return fail("shmbus_subscriber_open", r);
  /* Poll for 50 us before sleeping: a sleep and its wake-up are kernel
   * calls (under wine, round trips to the wineserver), too slow to pay for
   * every few samples of a stream this dense. 0, the default, sleeps at
   * once and spares the CPU. */
  shmbus_subscriber_set_spin(sub, SPIN_NS);
  uint64_t next = 0, waits = 0;
  while (next < count) {
    shmbus_sample s;
    r = shmbus_subscriber_take(sub, &s);
    if (r == SHMBUS_ERR_EMPTY) {
      /* Nothing queued: sleep until the publisher publishes. */
      waits++;
      r = shmbus_subscriber_wait(sub, (int64_t)TIMEOUT_MS * 1000000);
      if (r) break; /* TIMEDOUT, NO_PUBLISHER: the publisher stopped early */
      continue;
    }
    if (r) break;
    /* The payload is the publisher's shared memory, read in place. */
    const exchange_sample *x = s.payload;
    int ok = s.bytes == sizeof *x && s.sequence == next && x->sequence == next &&
             x->check == check_of(next);
    if (!ok)
      fprintf(stderr, "win_exchange sub: expected sample %llu, got sequence %llu (payload %llu)\n",
              (unsigned long long)next, (unsigned long long)s.sequence,
              s.bytes >= sizeof *x ? (unsigned long long)x->sequence : 0ull);
    r = shmbus_subscriber_release(sub, &s); /* the payload must not be used after this */
    if (!ok) r = SHMBUS_ERR_CORRUPT;
    if (r) break;
    next++;
  }
  uint64_t lost = shmbus_subscriber_lost(sub);
  shmbus_subscriber_close(sub);
  if (r) return fail(next == 0 ? "waiting for the first sample" : "taking samples", r);
  if (lost) return fail_msg("samples lost to overflow");
  say("took %llu samples, sequence numbers 0..%llu each once and in order, payloads intact, "
      "0 lost (%llu calls to shmbus_subscriber_wait)",
      (unsigned long long)next, (unsigned long long)(next - 1), (unsigned long long)waits);
  return 0;
}

/* Subscriber 2: takes `count` samples, keeps them and sleeps until it is
 * killed. */
static int hold(shmbus_node *node, const char *service, uint64_t count) {
  shmbus_service_opts o = service_opts();
  shmbus_subscriber *sub = NULL;
  int r = shmbus_subscriber_open(node, service, &o, &sub);
  if (r) return fail("shmbus_subscriber_open", r);
  shmbus_sample s;
  for (uint64_t held = 0; held < count;) {
    r = shmbus_subscriber_take(sub, &s);
    if (r == SHMBUS_ERR_EMPTY)
      r = shmbus_subscriber_wait(sub, (int64_t)TIMEOUT_MS * 1000000);
    else if (r == 0)
      held++; /* not released: the process dies holding it */
    if (r) return fail("taking a sample to hold", r);
  }
  say("holds %llu sample(s), the last with sequence %llu; sleeping until killed",
      (unsigned long long)count, (unsigned long long)s.sequence);
  Sleep(3 * TIMEOUT_MS); /* the parent kills us long before */
  return 3;
}

/* ---- the parent --------------------------------------------------------- */

/* Starts this program again as `child_role` with CreateProcessW. The
 * child needs nothing from us but its command line: it finds the service
 * by its domain and name. */
static int start_child(const char *child_role, const char *domain, uint64_t count, const char *root,
                       PROCESS_INFORMATION *pi) {
  wchar_t exe[MAX_PATH];
  DWORD n = GetModuleFileNameW(NULL, exe, MAX_PATH);
  if (n == 0 || n >= MAX_PATH) return fail_msg("GetModuleFileNameW");
  char args[MAX_PATH + 200];
  /* ROOT in quotes, for paths with spaces (without a trailing backslash,
   * which would escape the closing quote). */
  snprintf(args, sizeof args, " %s %s %s %llu%s%s%s", child_role, domain, SERVICE,
           (unsigned long long)count, root ? " \"" : "", root ? root : "", root ? "\"" : "");
  wchar_t cmd[2 * MAX_PATH + 200];
  wcscpy(cmd, L"\"");
  wcscat(cmd, exe);
  wcscat(cmd, L"\"");
  size_t used = wcslen(cmd);
  if (!MultiByteToWideChar(CP_ACP, 0, args, -1, cmd + used,
                           (int)(sizeof cmd / sizeof cmd[0] - used)))
    return fail_msg("MultiByteToWideChar");
  /* The child writes to our stdout and stderr (which may be pipes): they
   * are the only handles it inherits (shmbus's own are not inheritable). */
  STARTUPINFOW si;
  memset(&si, 0, sizeof si);
  si.cb = sizeof si;
  si.dwFlags = STARTF_USESTDHANDLES;
  si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
  si.hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE);
  si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
  SetHandleInformation(si.hStdOutput, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT);
  SetHandleInformation(si.hStdError, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT);
  fflush(stdout);
  if (!CreateProcessW(exe, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, pi)) {
    fprintf(stderr, "win_exchange parent: CreateProcessW failed: error %lu\n",
            (unsigned long)GetLastError());
    return 1;
  }
  CloseHandle(pi->hThread);
  return 0;
}

/* Waits until `n` subscribers are connected to the publisher. A
 * subscriber connects when it looks for publishers, which its take and wait
 * do; `own` is one of this process's, which we make look. */
static int await_subscribers(shmbus_publisher *pub, int n, shmbus_subscriber *own, HANDLE child) {
  double deadline = now_ms() + TIMEOUT_MS;
  int r;
  while ((r = shmbus_publisher_update(pub)) != n) {
    if (r < 0) return fail("shmbus_publisher_update", r);
    if (own != NULL && (r = shmbus_subscriber_publishers(own)) < 0)
      return fail("shmbus_subscriber_publishers", r);
    if (child != NULL && WaitForSingleObject(child, 0) == WAIT_OBJECT_0)
      return fail_msg("the child exited early");
    if (now_ms() > deadline) return fail_msg("the subscriber did not connect");
    Sleep(1);
  }
  return 0;
}

/* Publishes sample `sequence` (loan, fill in place, publish). */
static int publish(shmbus_publisher *pub, uint64_t sequence) {
  void *p = NULL;
  int r = shmbus_publisher_loan(pub, 1, &p);
  if (r) return r;
  exchange_sample *x = p;
  x->sequence = sequence;
  x->check = check_of(sequence);
  r = shmbus_publisher_publish(pub, p);
  if (r) shmbus_publisher_discard(pub, p); /* a failed publish leaves the loan with us */
  return r;
}

/* Takes the one queued sample of a subscriber of the parent's own, and
 * checks that it is sample `*next` (then counts it). */
static int take_one(shmbus_subscriber *sub, uint64_t *next) {
  shmbus_sample s;
  int r = shmbus_subscriber_take(sub, &s);
  if (r) return fail("the parent's subscriber: take", r);
  const exchange_sample *x = s.payload;
  int ok = s.sequence == *next && x->sequence == *next && x->check == check_of(*next);
  shmbus_subscriber_release(sub, &s);
  if (!ok) {
    fprintf(stderr, "win_exchange parent: expected sample %llu, got %llu\n",
            (unsigned long long)*next, (unsigned long long)s.sequence);
    return 1;
  }
  ++*next;
  return 0;
}

/* Counts the domain's nodes: all of them and the dead ones. */
static int count_nodes(shmbus_node *node, size_t *all, size_t *dead) {
  shmbus_node_info info[16];
  size_t n = 0;
  int r = shmbus_node_list(node, info, 16, &n);
  if (r) return fail("shmbus_node_list", r);
  *all = n;
  *dead = 0;
  for (size_t i = 0; i < n && i < 16; i++) *dead += !info[i].alive;
  return 0;
}

static int run_parent(uint64_t count, const char *root) {
  char domain[SHMBUS_DOMAIN_MAX + 1];
  snprintf(domain, sizeof domain, "winx-%lu", (unsigned long)GetCurrentProcessId());
  say("shmbus %s, domain %s, %s backend%s%s", shmbus_version_string(), domain,
      root ? "directory" : "default (Local\\ sections)", root ? " in " : "", root ? root : "");

  int status = 1;
  shmbus_node *node = open_node(domain, root);
  shmbus_publisher *pub = NULL;
  shmbus_subscriber *live = NULL, *extra = NULL;
  PROCESS_INFORMATION sub1 = {0}, holder = {0};
  shmbus_service_opts o = service_opts();
  int r;
  if (node == NULL) goto out;
  if ((r = shmbus_publisher_open(node, SERVICE, &o, &pub)) != 0) {
    fail("shmbus_publisher_open", r);
    goto out;
  }
  /* A BLOCK publish waits as long as its subscriber lives (the default);
   * a bound turns a stuck one into TIMEDOUT. */
  shmbus_publisher_set_block_timeout(pub, (int64_t)TIMEOUT_MS * 1000000);

  /* ---- (a) 10^6 samples to another process, none lost ---------------- */
  if (start_child("sub", domain, count, root, &sub1)) goto out;
  if (await_subscribers(pub, 1, NULL, sub1.hProcess)) goto out;
  double t0 = now_ms();
  uint64_t seq = 0;
  for (; seq < count; seq++) {
    if ((r = publish(pub, seq)) != 0) {
      fail("publishing", r);
      goto out;
    }
  }
  DWORD code = 1;
  if (WaitForSingleObject(sub1.hProcess, 6 * TIMEOUT_MS) != WAIT_OBJECT_0 ||
      !GetExitCodeProcess(sub1.hProcess, &code) || code != 0) {
    fprintf(stderr, "win_exchange parent: the subscriber exited with %lu\n", (unsigned long)code);
    goto out;
  }
  double ms = now_ms() - t0;
  say("check 1 exchange: %llu samples published (BLOCK) and taken by another process in %.0f ms "
      "(%.0f samples/s); the subscriber checked every sequence number and exited 0",
      (unsigned long long)count, ms, ms > 0 ? (double)count * 1000.0 / ms : 0.0);

  /* ---- (b) a subscriber killed with TerminateProcess is reclaimed ---- */
  /* Both slots taken: one by a subscriber of the parent's own ("live"),
   * one by the holder. */
  if ((r = shmbus_subscriber_open(node, SERVICE, &o, &live)) != 0) {
    fail("shmbus_subscriber_open (live)", r);
    goto out;
  }
  if (start_child("hold", domain, 1, root, &holder)) goto out;
  if (await_subscribers(pub, 2, live, holder.hProcess)) goto out;
  r = shmbus_subscriber_open(node, SERVICE, &o, &extra);
  if (r != SHMBUS_ERR_PORT_LIMIT) {
    fail_msg("a third subscriber opened while both slots were taken");
    goto out;
  }
  say("check 2 slots: 2 subscribers connected (the parent's and the holder), a third open "
      "gives PORT_LIMIT");

  /* Fill the holder's queue: it takes one sample and keeps it, so
   * QUEUE_DEPTH + 1 publishes fit (the last only once it took one). */
  uint64_t live_next = seq;
  for (unsigned i = 0; i < QUEUE_DEPTH + 1; i++, seq++) {
    if ((r = publish(pub, seq)) != 0) {
      fail("filling the holder's queue", r);
      goto out;
    }
    if (take_one(live, &live_next)) goto out;
  }
  /* Its queue is full now: a publish that may not wait gives TIMEDOUT
   * and delivers nothing, to nobody. */
  shmbus_publisher_set_block_timeout(pub, 0);
  if ((r = publish(pub, seq)) != SHMBUS_ERR_TIMEDOUT) {
    fail("a publish to the full holder did not time out", r);
    goto out;
  }
  say("check 3 backpressure: the holder's queue is full (%u queued, 1 held), a publish gives "
      "TIMEDOUT",
      QUEUE_DEPTH);

  /* Kill it: no chance to close anything. */
  double t_kill = now_ms();
  if (!TerminateProcess(holder.hProcess, KILLED_EXIT) ||
      WaitForSingleObject(holder.hProcess, TIMEOUT_MS) != WAIT_OBJECT_0 ||
      !GetExitCodeProcess(holder.hProcess, &code) || code != KILLED_EXIT) {
    fail_msg("TerminateProcess");
    goto out;
  }
  double t_dead = now_ms();

  /* Wait as long as the subscriber lives: the publish finds it dead,
   * disconnects it and reports PEER_DEAD instead of blocking forever. */
  shmbus_publisher_set_block_timeout(pub, -1);
  r = publish(pub, seq);
  double t_reclaimed = now_ms();
  if (r != SHMBUS_ERR_PEER_DEAD && r != 0) {
    fail("publishing after the kill", r);
    goto out;
  }
  const char *first = r == 0 ? "0 (the dead one was already gone)" : "PEER_DEAD";
  if (r == SHMBUS_ERR_PEER_DEAD && (r = publish(pub, seq)) != 0) {
    fail("publishing again after PEER_DEAD", r);
    goto out;
  }
  seq++;
  if (take_one(live, &live_next)) goto out;
  r = shmbus_publisher_update(pub);
  if (r != 1) {
    fail_msg("the dead subscriber is still counted by shmbus_publisher_update");
    goto out;
  }
  say("check 4 reclaim: TerminateProcess returned after %.1f ms; the next publish (no timeout) "
      "returned %s %.1f ms after the kill, the one after it delivered; "
      "shmbus_publisher_update counts 1 subscriber",
      t_dead - t_kill, first, t_reclaimed - t_kill);

  size_t all = 0, dead = 0;
  if (count_nodes(node, &all, &dead)) goto out;
  int cleaned = shmbus_domain_cleanup(node);
  if (cleaned < 0) {
    fail("shmbus_domain_cleanup", cleaned);
    goto out;
  }
  size_t all_after = 0, dead_after = 0;
  if (count_nodes(node, &all_after, &dead_after)) goto out;
  if (dead_after != 0 || all_after != 1) {
    fail_msg("shmbus_node_list still shows a dead node (or another) after cleanup");
    goto out;
  }
  say("check 5 nodes: %llu listed (%llu dead) after the kill; shmbus_domain_cleanup removed %d; "
      "then 1 listed, alive (the parent's)",
      (unsigned long long)all, (unsigned long long)dead, cleaned);

  /* The dead subscriber's slot takes a new subscriber. */
  if ((r = shmbus_subscriber_open(node, SERVICE, &o, &extra)) != 0) {
    fail("opening a subscriber in the freed slot", r);
    goto out;
  }
  if (await_subscribers(pub, 2, extra, NULL)) goto out;
  /* And publishing goes on, to both, nothing lost. */
  uint64_t extra_next = seq;
  shmbus_publisher_set_block_timeout(pub, (int64_t)TIMEOUT_MS * 1000000);
  for (int i = 0; i < MORE_AFTER_KILL; i++, seq++) {
    if ((r = publish(pub, seq)) != 0) {
      fail("publishing after the reclaim", r);
      goto out;
    }
    if (take_one(live, &live_next) || take_one(extra, &extra_next)) goto out;
  }
  if (shmbus_subscriber_lost(live) != 0 || shmbus_subscriber_lost(extra) != 0) {
    fail_msg("samples lost");
    goto out;
  }
  say("check 6 slot reuse: a new subscriber opened in the freed slot; %d more samples reached "
      "both subscribers, in order, 0 lost (sequence numbers up to %llu)",
      MORE_AFTER_KILL, (unsigned long long)(seq - 1));
  status = 0;

out:
  shmbus_subscriber_close(extra);
  shmbus_subscriber_close(live);
  shmbus_publisher_close(pub);
  /* A child still running (after a failure) must not outlive us. */
  if (sub1.hProcess) {
    TerminateProcess(sub1.hProcess, 1);
    CloseHandle(sub1.hProcess);
  }
  if (holder.hProcess) {
    TerminateProcess(holder.hProcess, 1);
    CloseHandle(holder.hProcess);
  }
  /* The service and the publisher's segment went with their last user;
   * the node's token goes with its close. */
  shmbus_node_close(node);
  say(status == 0 ? "ok" : "FAILED");
  return status;
}

int main(int argc, char **argv) {
  if (argc >= 5 && (strcmp(argv[1], "sub") == 0 || strcmp(argv[1], "hold") == 0)) {
    role = argv[1];
    shmbus_node *node = open_node(argv[2], argc > 5 ? argv[5] : NULL);
    if (node == NULL) return 1;
    uint64_t count = strtoull(argv[4], NULL, 10);
    int rc = role[0] == 's' ? subscribe(node, argv[3], count) : hold(node, argv[3], count);
    shmbus_node_close(node);
    return rc;
  }
  uint64_t count = DEFAULT_COUNT;
  int i = 1;
  if (argc > 2 && strcmp(argv[1], "-n") == 0) {
    count = strtoull(argv[2], NULL, 10);
    i = 3;
  }
  if (argc > i + 1 || count == 0 || (argc == i + 1 && argv[i][0] == '-')) {
    fprintf(stderr, "usage: win_exchange [-n COUNT] [ROOT]\n");
    return 2;
  }
  return run_parent(count, argc == i + 1 ? argv[i] : NULL);
}

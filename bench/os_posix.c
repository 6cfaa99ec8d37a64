/* SPDX-License-Identifier: Apache-2.0 */
/* shmbus-bench's OS layer on POSIX (bench.h): peers are fork()ed children
 * pinned by sched_setaffinity with an alarm() as their watchdog; shared
 * regions are anonymous shared mappings, inherited across fork. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

uint64_t bench_os_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *bench_os_clock_name(void) { return "CLOCK_MONOTONIC"; }

void bench_os_yield(void) { sched_yield(); }

long bench_os_pid(void) { return (long)getpid(); }

/* The kernel's verdict on the TSC (Linux's /proc/cpuinfo flags). */
int bench_os_invariant_tsc(void) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  int ok = 0;
  if (f) {
    char line[4096];
    while (fgets(line, sizeof line, f))
      if (strncmp(line, "flags", 5) == 0) {
        ok = strstr(line, " constant_tsc") && strstr(line, " nonstop_tsc");
        break;
      }
    fclose(f);
  }
  return ok;
}

const char *bench_os_platform(void) {
  static char name[256]; /* three utsname fields of at most 64 characters */
  if (name[0] == 0) {
    struct utsname u;
    if (uname(&u) == 0)
      snprintf(name, sizeof name, "%s %s %s", u.sysname, u.release, u.machine);
    else
      snprintf(name, sizeof name, "POSIX");
    for (char *c = name; *c; c++)
      if (*c == ',') *c = ';';
  }
  return name;
}

void *bench_os_share(const bench_params *p, const char *tag, size_t bytes, char *why,
                     size_t why_size) {
  (void)p;
  (void)tag;
  void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    if (why) snprintf(why, why_size, "mmap: %s", strerror(errno));
    return NULL;
  }
  return m;
}

void bench_os_unshare(void *m, size_t bytes) { munmap(m, bytes); }

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

bench_proc bench_os_start(const bench_peer *peer) {
  bench_proc proc = {0, 0};
  pid_t pid = fork();
  if (pid != 0) {
    proc.id = pid;
    return proc;
  }
  pin(peer->cpu);
  alarm((unsigned)(peer->params.budget_s + 60));
  int r = bench_peer_run(peer);
  _exit(r == 0 ? 0 : 1);
}

int bench_os_wait(bench_proc *proc, int *status) {
  int s = 0;
  waitpid((pid_t)proc->id, &s, 0);
  *status = s;
  return WIFEXITED(s) && WEXITSTATUS(s) == 0;
}

/* Peers are fork()ed: no process is ever started as one. */
int bench_os_peer_main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return -1;
}

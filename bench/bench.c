/* SPDX-License-Identifier: Apache-2.0 */
/* shmbus-bench: the driver. See bench.h for the method, --help for use.
 * Processes, shared memory, affinity and the fallback clock are the OS
 * layer's (os_posix.c, os_win.c). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#endif

/* ---- clock ---- */

static double ns_per_tick;

static uint64_t mono_ns(void) { return bench_os_mono_ns(); }

uint64_t bench_now_ns(void) {
#ifdef HAVE_TSC
  if (ns_per_tick > 0) return (uint64_t)((double)__rdtsc() * ns_per_tick);
#endif
  return mono_ns();
}

/* The TSC is constant and non-stop on the machines we care about; its
 * rate is measured against CLOCK_MONOTONIC (Windows: QPC) so results stay
 * in ns. */
static void calibrate_clock(void) {
#ifdef HAVE_TSC
  if (!bench_os_invariant_tsc()) return;
  uint64_t m0 = mono_ns(), t0 = __rdtsc();
  while (mono_ns() - m0 < 50 * 1000 * 1000) {
  }
  uint64_t m1 = mono_ns(), t1 = __rdtsc();
  ns_per_tick = (double)(m1 - m0) / (double)(t1 - t0);
#endif
}

/* ---- helpers for transports ---- */

void bench_fail(bench_shared *sh, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sh->why, sizeof sh->why, fmt, ap);
  va_end(ap);
  __atomic_store_n(&sh->failed, 1, __ATOMIC_RELEASE);
}

int bench_handshake(bench_shared *sh, int role) {
  __atomic_store_n(&sh->ready[role], 1, __ATOMIC_RELEASE);
  uint64_t deadline = mono_ns() + UINT64_C(20) * 1000000000u;
  while (!__atomic_load_n(&sh->ready[!role], __ATOMIC_ACQUIRE)) {
    if (__atomic_load_n(&sh->failed, __ATOMIC_ACQUIRE) || mono_ns() > deadline) return -1;
    bench_os_yield();
  }
  return 0;
}

void bench_touch(void *payload, size_t bytes, uint64_t stamp, int all) {
  size_t n = all ? bytes : (bytes < 64 ? bytes : 64);
  if (n >= 8) {
    memset((char *)payload + 8, (int)(stamp & 0xff), n - 8);
    memcpy(payload, &stamp, 8);
  } else {
    memcpy(payload, &stamp, n);
  }
}

uint64_t bench_stamp(const void *payload) {
  uint64_t v;
  memcpy(&v, payload, 8);
  return v;
}

int bench_record(const bench_params *p, bench_shared *sh, uint64_t i, uint64_t t0, uint64_t t1,
                 uint64_t start) {
  uint64_t budget = (uint64_t)(p->budget_s * 1e9);
  if (!sh->measuring) {
    if (i + 1 >= p->warmup || t1 - start > budget / 5) {
      sh->measuring = 1;
      sh->measure_start = t1;
    }
    return 1;
  }
  sh->samples[sh->count++] = (t1 - t0) / 2;
  return sh->count < p->iterations && t1 - sh->measure_start < budget;
}

/* ---- one measurement ---- */

typedef struct row {
  const char *transport, *mode;
  size_t payload;
  uint64_t n;
  double p50, p90, p99, p999, max, mean, msgs_per_s;
  char why[256];
} row;

static FILE *csv;
static row rows[256];
static int nrows;
static int cpu_a = 0, cpu_b = 1;

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double pct(const uint64_t *s, uint64_t n, double p) {
  uint64_t idx = (uint64_t)(p * (double)n + 0.999999);
  if (idx == 0) idx = 1;
  if (idx > n) idx = n;
  return (double)s[idx - 1];
}

typedef bench_role_fn role_fn;

static void emit(row *r) {
  if (r->n == 0) {
    printf("%-15s %-10s %9zu  skipped: %s\n", r->transport, r->mode, r->payload, r->why);
  } else if (r->p50 > 0) {
    printf("%-15s %-10s %9zu %9llu %9.0f %9.0f %9.0f %9.0f %10.0f %9.0f %12.0f\n", r->transport,
           r->mode, r->payload, (unsigned long long)r->n, r->p50, r->p90, r->p99, r->p999, r->max,
           r->mean, r->msgs_per_s);
  } else {
    printf("%-15s %-10s %9zu %9llu %9s %9s %9s %9s %10s %9s %12.0f\n", r->transport, r->mode,
           r->payload, (unsigned long long)r->n, "-", "-", "-", "-", "-", "-", r->msgs_per_s);
  }
  fflush(stdout);
  if (csv) {
    if (r->n == 0)
      fprintf(csv, "%s,%s,%zu,0,,,,,,,,%s\n", r->transport, r->mode, r->payload,
              bench_os_platform());
    else if (r->p50 > 0)
      fprintf(csv, "%s,%s,%zu,%llu,%.0f,%.0f,%.0f,%.0f,%.0f,%.1f,%.0f,%s\n", r->transport, r->mode,
              r->payload, (unsigned long long)r->n, r->p50, r->p90, r->p99, r->p999, r->max,
              r->mean, r->msgs_per_s, bench_os_platform());
    else
      fprintf(csv, "%s,%s,%zu,%llu,,,,,,,%.0f,%s\n", r->transport, r->mode, r->payload,
              (unsigned long long)r->n, r->msgs_per_s, bench_os_platform());
    fflush(csv);
  }
  if (nrows < (int)(sizeof rows / sizeof rows[0])) rows[nrows++] = *r;
}

static unsigned runs;

int bench_peer_run(const bench_peer *peer) {
  ns_per_tick = peer->ns_per_tick;
  return peer->fn(&peer->params, peer->role, peer->sh);
}

static bench_proc spawn(const bench_params *p, role_fn fn, int role, int cpu, bench_shared *sh) {
  bench_peer peer;
  memset(&peer, 0, sizeof peer);
  peer.params = *p;
  peer.fn = fn;
  peer.role = role;
  peer.cpu = cpu;
  peer.ns_per_tick = ns_per_tick;
  peer.sh = sh;
  return bench_os_start(&peer);
}

/* Runs both roles; fills `r`. `latency`: samples are one-way latencies. */
static void measure(const bench_params *params, const char *transport, const char *mode, role_fn fn,
                    int (*prepare)(const bench_params *), void (*cleanup)(const bench_params *),
                    row *r) {
  bench_params run = *params;
  const bench_params *p = &run;
  run.run = ++runs;
  memset(r, 0, sizeof *r);
  r->transport = transport;
  r->mode = mode;
  r->payload = p->payload;
  size_t bytes = sizeof(bench_shared) + (p->iterations + 1) * sizeof(uint64_t);
  char tag[32];
  snprintf(tag, sizeof tag, "run%u", run.run);
  bench_shared *sh = bench_os_share(p, tag, bytes, r->why, sizeof r->why);
  if (sh == NULL) return;
  if (prepare && prepare(p) != 0) {
    snprintf(r->why, sizeof r->why, "setup failed");
    bench_os_unshare(sh, bytes);
    return;
  }
  bench_proc b = spawn(p, fn, ROLE_B, cpu_b, sh);
  bench_proc a = spawn(p, fn, ROLE_A, cpu_a, sh);
  int sa = 0, sb = 0;
  int ok_a = bench_os_wait(&a, &sa);
  if (!ok_a) __atomic_store_n(&sh->failed, 1, __ATOMIC_RELEASE);
  int ok_b = bench_os_wait(&b, &sb);
  if (cleanup) cleanup(p);
  int ok = ok_a && ok_b;
  if (!ok) {
    snprintf(r->why, sizeof r->why, "FAILED (%s; A status %d, B status %d)",
             sh->why[0] ? sh->why : "no reason given", sa, sb);
    bench_os_unshare(sh, bytes);
    return;
  }
  uint64_t n = sh->count;
  r->n = n;
  r->msgs_per_s = sh->msgs_per_s;
  if (n > 0 && sh->msgs_per_s == 0) {
    qsort(sh->samples, n, sizeof(uint64_t), cmp_u64);
    double sum = 0;
    for (uint64_t i = 0; i < n; i++) sum += (double)sh->samples[i];
    r->p50 = pct(sh->samples, n, 0.50);
    r->p90 = pct(sh->samples, n, 0.90);
    r->p99 = pct(sh->samples, n, 0.99);
    r->p999 = pct(sh->samples, n, 0.999);
    r->max = (double)sh->samples[n - 1];
    r->mean = sum / (double)n;
    /* Latency rows: messages per second of the ping-pong (two per round
     * trip); fan-out rows: publishes per second. */
    int fanout = strncmp(mode, "fanout", 6) == 0;
    r->msgs_per_s = r->mean > 0 ? 1e9 / ((fanout ? 1 : 2) * r->mean) : 0;
  }
  bench_os_unshare(sh, bytes);
}

static const row *find(const char *transport, const char *mode, size_t payload) {
  for (int i = 0; i < nrows; i++)
    if (strcmp(rows[i].transport, transport) == 0 && strcmp(rows[i].mode, mode) == 0 &&
        rows[i].payload == payload && rows[i].n > 0)
      return &rows[i];
  return NULL;
}

static void verdict(const char *what, double value, double limit, int at_most) {
  int ok = at_most ? value <= limit : value >= limit;
  printf("  %-52s %8.3f  (target %s %.2f)  %s\n", what, value, at_most ? "<=" : ">=", limit,
         ok ? "met" : "MISSED");
}

static void summary(void) {
  printf("\nRatios from this run (p50 unless named):\n");
  const row *s64 = find("shmbus", "busy", 64), *fl = find("floor", "busy", 64);
  const row *fl2 = find("floor2", "busy", 64), *f2m = find("floor2", "busy", 4u << 20);
  const row *f2d = find("floor2-cldemote", "busy", 64);
  const row *s4m = find("shmbus", "busy", 4u << 20), *iox = find("iceoryx", "busy", 64);
  const row *st = find("shmbus", "throughput", 64), *sp = find("spsc_floor", "throughput", 64);
  const row *b64 = find("shmbus", "blocking", 64), *ffl = find("futex_floor", "blocking", 64);
  const row *cpp64 = find("shmbus-cpp", "busy", 64);
  const row *obs64 = find("shmbus-observed", "busy", 64);
  if (s64 && fl2)
    verdict("shmbus 64 B / floor2 (payload + signal line)", s64->p50 / fl2->p50, 1.25, 1);
  if (s64 && fl) verdict("shmbus 64 B / floor", s64->p50 / fl->p50, 1.5, 1);
  if (fl2 && fl)
    printf("  %-52s %8.3f\n", "floor2 64 B / floor (what the second line costs)",
           fl2->p50 / fl->p50);
  if (s64 && f2d)
    printf("  %-52s %8.3f\n", "shmbus 64 B / floor2-cldemote (the same hint)", s64->p50 / f2d->p50);
  /* The C++ API adds nothing measurable: within the run-to-run noise. */
  if (s64 && cpp64)
    verdict("shmbus-cpp 64 B / shmbus 64 B (C++ API)", cpp64->p50 / s64->p50, 1.1, 1);
  /* Introspection costs the observed ports nothing: within the noise. */
  if (s64 && obs64)
    verdict("shmbus-observed 64 B / shmbus 64 B (described)", obs64->p50 / s64->p50, 1.1, 1);
  if (b64 && ffl)
    verdict("shmbus blocking / futex_floor p50 at 64 B", b64->p50 / ffl->p50, 1.15, 1);
  else if (b64 || ffl)
    printf("  (shmbus blocking / futex_floor: a 64 B row is missing, see above)\n");
  if (s64 && s4m) verdict("shmbus 4 MiB / shmbus 64 B", s4m->p50 / s64->p50, 1.1, 1);
  if (fl2 && f2m) printf("  %-52s %8.3f\n", "floor2 4 MiB / floor2 64 B", f2m->p50 / fl2->p50);
  if (s64 && iox) verdict("shmbus 64 B / iceoryx 64 B", s64->p50 / iox->p50, 0.15, 1);
  if (s64) verdict("shmbus 64 B p99.9 / p50", s64->p999 / s64->p50, 5.0, 1);
  if (st && sp)
    verdict("shmbus throughput 64 B / SPSC floor", st->msgs_per_s / sp->msgs_per_s, 0.4, 0);
  const row *f1 = NULL, *fmax = NULL;
  int nmax = 0;
  for (int i = 0; i < nrows; i++) {
    if (strncmp(rows[i].mode, "fanout-", 7) != 0 || rows[i].n == 0) continue;
    int subs = atoi(rows[i].mode + 7);
    if (subs == 1) f1 = &rows[i];
    if (subs > nmax) {
      nmax = subs;
      fmax = &rows[i];
    }
  }
  if (f1 && fmax && nmax > 1)
    verdict("fan-out: ns added per extra subscriber", (fmax->p50 - f1->p50) / (nmax - 1), 30, 1);
  if (!iox) printf("  (iceoryx: no row, see above for why)\n");
}

/* The shmbus-cpp row (t_shmbus_cpp.cpp) when the tree has no C++ compiler. */
#ifndef SHMBUS_BENCH_HAVE_CPP
static const char *cpp_unavailable(void) { return "built without a C++ compiler"; }
const bench_transport bench_shmbus_cpp = {"shmbus-cpp", "busy", 0,   cpp_unavailable,
                                          NULL,         NULL,   NULL};
#endif

/* ---- command line ---- */

/* Busy and blocking rows alike; a name selects all of its modes. */
static const bench_transport *const transports[] = {
    &bench_shmbus, &bench_shmbus_cpp, &bench_shmbus_observed, &bench_shmbus_blocking,
    &bench_floor,  &bench_floor2,     &bench_floor2_demote,   &bench_futex_floor,
    &bench_pipe,   &bench_uds,        &bench_mqueue,          &bench_iceoryx,
    &bench_zmq,
};

static void usage(void) {
  puts(
      "usage: shmbus-bench [--quick | --full] [--mode latency|throughput|fanout|all]\n"
      "                    [--transports a,b,...] [--payloads 64,1024,...] [--touch first|all]\n"
      "                    [--iterations N] [--cpus A,B] [--csv FILE]\n"
      "transports: shmbus (busy and blocking) shmbus-cpp floor floor2 floor2-cldemote\n"
      "            futex_floor pipe uds mqueue\n"
      "            iceoryx zmq\n"
      "  busy (poll):         shmbus shmbus-cpp (the same through shmbus.hpp)\n"
      "                       shmbus-observed (the same, described every 10 ms) floor floor2\n"
      "                       floor2-cldemote (its lines demoted, as shmbus does) iceoryx\n"
      "  blocking (sleep):    shmbus futex_floor pipe uds mqueue zmq\n"
      "  throughput:          shmbus spsc_floor; fan-out: shmbus\n"
      "Quick mode (the default) runs the whole comparison in about half a minute.");
}

static int listed(const char *list, const char *name) {
  if (list == NULL) return 1;
  size_t n = strlen(name);
  for (const char *p = list; p && *p;) {
    if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == '\0')) return 1;
    p = strchr(p, ',');
    if (p) p++;
  }
  return 0;
}

int main(int argc, char **argv) {
  int peer = bench_os_peer_main(argc, argv);
  if (peer >= 0) return peer;
  int full = 0, touch_all = 0;
  const char *mode = "all", *only = NULL, *csv_path = NULL, *payload_list = NULL;
  uint64_t iterations = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--quick"))
      full = 0;
    else if (!strcmp(a, "--full"))
      full = 1;
    else if (!strcmp(a, "--mode") && v)
      mode = argv[++i];
    else if (!strcmp(a, "--transports") && v)
      only = argv[++i];
    else if (!strcmp(a, "--payloads") && v)
      payload_list = argv[++i];
    else if (!strcmp(a, "--touch") && v)
      touch_all = !strcmp(argv[++i], "all");
    else if (!strcmp(a, "--iterations") && v)
      iterations = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(a, "--csv") && v)
      csv_path = argv[++i];
    else if (!strcmp(a, "--cpus") && v) {
      if (sscanf(argv[++i], "%d,%d", &cpu_a, &cpu_b) != 2) {
        usage();
        return 2;
      }
    } else {
      usage();
      return strcmp(a, "--help") == 0 ? 0 : 2;
    }
  }
  calibrate_clock();
  if (csv_path) {
    csv = fopen(csv_path, "w");
    if (!csv) {
      perror(csv_path);
      return 1;
    }
    fprintf(csv,
            "transport,mode,payload_bytes,iterations,p50_ns,p90_ns,p99_ns,p999_ns,max_ns,"
            "mean_ns,msgs_per_s,platform\n");
  }
  size_t payloads[16] = {64, 1024, 16 << 10, 256 << 10, 1 << 20, 4 << 20};
  int npayloads = 6;
  if (payload_list) {
    npayloads = 0;
    for (const char *p = payload_list; p && *p && npayloads < 16;) {
      payloads[npayloads++] = strtoull(p, NULL, 10);
      p = strchr(p, ',');
      if (p) p++;
    }
  }
  printf("shmbus-bench: %s mode, cores %d and %d, clock %s, one-way latency in ns\n",
         full ? "full" : "quick", cpu_a, cpu_b, ns_per_tick > 0 ? "TSC" : bench_os_clock_name());
  printf("platform: %s\n", bench_os_platform());
  printf("%-15s %-10s %9s %9s %9s %9s %9s %9s %10s %9s %12s\n", "transport", "mode", "payload",
         "iters", "p50", "p90", "p99", "p99.9", "max", "mean", "msgs/s");

  bench_params p;
  memset(&p, 0, sizeof p);
  p.touch_all = touch_all;
  snprintf(p.domain, sizeof p.domain, "bench%ld", bench_os_pid());
  row r;

  if (!strcmp(mode, "all") || !strcmp(mode, "latency")) {
    for (size_t t = 0; t < sizeof transports / sizeof transports[0]; t++) {
      const bench_transport *tr = transports[t];
      if (!listed(only, tr->name)) continue;
      const char *why = tr->unavailable ? tr->unavailable() : NULL;
      for (int k = 0; k < npayloads; k++) {
        p.payload = payloads[k];
        /* The floors move one cache line (one word) whatever the payload;
         * floor2 is measured at every payload (its chunks span it). */
        if ((tr == &bench_floor || tr == &bench_futex_floor || tr == &bench_shmbus_observed ||
             tr == &bench_floor2_demote) &&
            k > 0)
          break;
        int blocking = strcmp(tr->mode, "blocking") == 0;
        p.iterations = iterations ? iterations : full ? 1000000 : blocking ? 20000 : 200000;
        p.warmup = p.iterations / 10 < 1000 ? p.iterations / 10 : 1000;
        p.budget_s = full ? 10.0 : blocking ? 0.5 : 0.6;
        if (why || (tr->max_payload && p.payload > tr->max_payload)) {
          memset(&r, 0, sizeof r);
          r.transport = tr->name;
          r.mode = tr->mode;
          r.payload = p.payload;
          snprintf(r.why, sizeof r.why, "%s", why ? why : "payload above the transport's limit");
          emit(&r);
          continue;
        }
        measure(&p, tr->name, tr->mode, tr->run, tr->prepare, tr->cleanup, &r);
        emit(&r);
      }
    }
  }
  if (!strcmp(mode, "all") || !strcmp(mode, "throughput")) {
    size_t sizes[2] = {64, 4096};
    for (int k = 0; k < 2; k++) {
      p.payload = sizes[k];
      p.iterations = iterations ? iterations : full ? 50000000 : 5000000;
      p.warmup = 0;
      p.budget_s = full ? 5.0 : 1.0;
      if (listed(only, "shmbus")) {
        measure(&p, "shmbus", "throughput", bench_shmbus_throughput, NULL, NULL, &r);
        emit(&r);
      }
      if (listed(only, "spsc_floor")) {
        measure(&p, "spsc_floor", "throughput", bench_spsc_throughput, bench_spsc_prepare,
                bench_spsc_cleanup, &r);
        emit(&r);
      }
    }
  }
  if ((!strcmp(mode, "all") || !strcmp(mode, "fanout")) && listed(only, "shmbus")) {
    static char names[5][32];
    int counts[5] = {1, 2, 4, 8, 16};
    for (int k = 0; k < 5; k++) {
      p.payload = 64;
      p.subscribers = counts[k];
      p.iterations = iterations ? iterations : full ? 200000 : 20000;
      p.warmup = 1000;
      p.budget_s = full ? 5.0 : 0.5;
      snprintf(names[k], sizeof names[k], "fanout-%d", counts[k]);
      measure(&p, "shmbus", names[k], bench_shmbus_fanout, NULL, NULL, &r);
      emit(&r);
    }
  }
  summary();
  if (csv) fclose(csv);
  return 0;
}

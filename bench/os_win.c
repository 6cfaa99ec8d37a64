/* SPDX-License-Identifier: Apache-2.0 */
/* shmbus-bench's OS layer on Windows (bench.h). A peer is this program
 * started again by CreateProcessW as
 *     "<program>" --bench-peer <section> <hex>
 * where <section> names the measurement's bench_shared section and <hex>
 * is the bench_peer, its role function given as an offset in the
 * program's image (so ASLR does not matter; the program is linked static:
 * every role is in the image). Shared regions are named paging-file
 * sections, Local\shmbus-bench.<domain>.<tag>: the parent creates them, a
 * peer opens them by the same name. Peers pin themselves with
 * SetThreadAffinityMask, run in a job object that kills them if the parent
 * goes away, and are killed by TerminateProcess if still running at
 * budget + 60 s (the POSIX peers' alarm). Under wine the platform says so
 * (ntdll's wine_get_version). The rows without a Windows peer are at the
 * end. */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include <stdio.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "bench.h"

#define PEER_ARG "--bench-peer"
#define WATCHDOG_EXIT 142 /* 128 + SIGALRM: what the POSIX peer's alarm would say */

static int is_peer; /* this process was started by bench_os_start */

/* ---- clock, scheduling, identity ---- */

uint64_t bench_os_mono_ns(void) {
  static uint64_t freq; /* fixed at boot */
  if (freq == 0) {
    LARGE_INTEGER f;
    freq = QueryPerformanceFrequency(&f) && f.QuadPart > 0 ? (uint64_t)f.QuadPart : 1;
  }
  LARGE_INTEGER c;
  QueryPerformanceCounter(&c);
  uint64_t q = (uint64_t)c.QuadPart;
  /* Whole seconds and the remainder apart: q * 1e9 would overflow. */
  return q / freq * UINT64_C(1000000000) + q % freq * UINT64_C(1000000000) / freq;
}

const char *bench_os_clock_name(void) { return "QueryPerformanceCounter"; }

void bench_os_yield(void) { SwitchToThread(); }

long bench_os_pid(void) { return (long)GetCurrentProcessId(); }

/* CPUID 0x80000007 EDX bit 8, the invariant TSC: what Linux reports as
 * constant_tsc and nonstop_tsc. */
int bench_os_invariant_tsc(void) {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (!__get_cpuid(0x80000007, &a, &b, &c, &d)) return 0;
  return (d >> 8) & 1;
#else
  return 0;
#endif
}

typedef const char *(__cdecl *wine_version_fn)(void);
typedef void(__cdecl *wine_host_fn)(const char **sysname, const char **release);
typedef LONG(WINAPI *rtl_version_fn)(OSVERSIONINFOW *info);

/* GetProcAddress's FARPROC through void (*)(void), which converts to any
 * function pointer type without -Wcast-function-type. */
static void (*ntdll_export(const char *name))(void) {
  HMODULE nt = GetModuleHandleW(L"ntdll.dll");
  return nt ? (void (*)(void))GetProcAddress(nt, name) : NULL;
}

const char *bench_os_platform(void) {
  static char name[160];
  if (name[0]) return name;
  wine_version_fn wine_version = (wine_version_fn)ntdll_export("wine_get_version");
  if (wine_version) {
    const char *version = wine_version(), *sys = NULL, *release = NULL;
    wine_host_fn host = (wine_host_fn)ntdll_export("wine_get_host_version");
    if (host) host(&sys, &release);
    snprintf(name, sizeof name, "Windows (wine %s on %s%s%s)", version ? version : "?",
             sys ? sys : "an unknown host", release ? " " : "", release ? release : "");
  } else {
    /* GetVersionEx reports what the manifest allows; RtlGetVersion does not. */
    OSVERSIONINFOW v;
    memset(&v, 0, sizeof v);
    v.dwOSVersionInfoSize = sizeof v;
    rtl_version_fn rtl_version = (rtl_version_fn)ntdll_export("RtlGetVersion");
    if (rtl_version && rtl_version(&v) == 0)
      snprintf(name, sizeof name, "Windows %lu.%lu.%lu", (unsigned long)v.dwMajorVersion,
               (unsigned long)v.dwMinorVersion, (unsigned long)v.dwBuildNumber);
    else
      snprintf(name, sizeof name, "Windows");
  }
  for (char *c = name; *c; c++)
    if (*c == ',') *c = ';';
  return name;
}

/* ---- shared regions: named sections ---- */

typedef struct region {
  void *view;
  HANDLE section;
  char name[96];
} region;

static region regions[16];

static void widen(const char *s, wchar_t *w, size_t n) {
  size_t i = 0;
  for (; s[i] && i + 1 < n; i++) w[i] = (wchar_t)(unsigned char)s[i];
  w[i] = 0;
}

static region *region_of(const void *view) {
  for (size_t i = 0; i < sizeof regions / sizeof regions[0]; i++)
    if (regions[i].view == view) return &regions[i];
  return NULL;
}

/* Maps the section `name`: created (the parent) or opened (a peer). */
static void *map_section(const char *name, size_t bytes, char *why, size_t why_size) {
  region *r = region_of(NULL);
  if (r == NULL) {
    if (why)
      snprintf(why, why_size, "more than %u shared regions",
               (unsigned)(sizeof regions / sizeof regions[0]));
    return NULL;
  }
  wchar_t wname[96];
  widen(name, wname, sizeof wname / sizeof wname[0]);
  HANDLE h;
  const char *call;
  if (is_peer) {
    call = "OpenFileMappingW";
    h = OpenFileMappingW(FILE_MAP_READ | FILE_MAP_WRITE, FALSE, wname);
  } else {
    call = "CreateFileMappingW";
    uint64_t size = bytes;
    h = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, (DWORD)(size >> 32),
                           (DWORD)size, wname);
    if (h != NULL && GetLastError() == ERROR_ALREADY_EXISTS) {
      CloseHandle(h);
      h = NULL;
      SetLastError(ERROR_ALREADY_EXISTS);
    }
  }
  if (h == NULL) {
    if (why) snprintf(why, why_size, "%s %s: error %lu", call, name, (unsigned long)GetLastError());
    return NULL;
  }
  /* A peer maps the whole section, whatever size it was made with. */
  void *view = MapViewOfFile(h, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, is_peer ? 0 : bytes);
  if (view == NULL) {
    if (why)
      snprintf(why, why_size, "MapViewOfFile %s: error %lu", name, (unsigned long)GetLastError());
    CloseHandle(h);
    return NULL;
  }
  r->view = view;
  r->section = h;
  snprintf(r->name, sizeof r->name, "%s", name);
  return view;
}

void *bench_os_share(const bench_params *p, const char *tag, size_t bytes, char *why,
                     size_t why_size) {
  char name[96];
  snprintf(name, sizeof name, "Local\\shmbus-bench.%s.%s", p->domain, tag);
  return map_section(name, bytes, why, why_size);
}

void bench_os_unshare(void *m, size_t bytes) {
  (void)bytes;
  region *r = m ? region_of(m) : NULL;
  if (r == NULL) return;
  UnmapViewOfFile(r->view);
  CloseHandle(r->section);
  memset(r, 0, sizeof *r);
}

/* ---- peers ---- */

/* What the command line carries: the peer without its pointers, and its
 * role function as an offset from the image base. */
typedef struct wire {
  bench_peer peer;
  uint64_t fn_offset;
} wire;

static uintptr_t image_base(void) { return (uintptr_t)GetModuleHandleW(NULL); }

/* Kills the peers when its last handle closes: when the parent ends,
 * however it ends. Best effort (NULL: peers run without). */
static HANDLE peer_job(void) {
  static HANDLE job;
  static int tried;
  if (!tried) {
    tried = 1;
    job = CreateJobObjectW(NULL, NULL);
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION info;
    memset(&info, 0, sizeof info);
    info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    if (job &&
        !SetInformationJobObject(job, JobObjectExtendedLimitInformation, &info, sizeof info)) {
      CloseHandle(job);
      job = NULL;
    }
  }
  return job;
}

bench_proc bench_os_start(const bench_peer *peer) {
  bench_proc proc = {-1, 0};
  const region *r = peer->sh ? region_of(peer->sh) : NULL;
  if (r == NULL) {
    if (peer->sh) bench_fail(peer->sh, "peer: its shared region is not a named section");
    return proc;
  }
  wire w;
  memset(&w, 0, sizeof w);
  w.peer = *peer;
  w.peer.fn = NULL;
  w.peer.sh = NULL;
  w.fn_offset = (uint64_t)((uintptr_t)peer->fn - image_base());
  static const char digits[] = "0123456789abcdef";
  char tail[sizeof r->name + 2 * sizeof w + 32];
  int n = snprintf(tail, sizeof tail, " %s %s ", PEER_ARG, r->name);
  const unsigned char *bytes = (const unsigned char *)&w;
  for (size_t i = 0; i < sizeof w; i++) {
    tail[n++] = digits[bytes[i] >> 4];
    tail[n++] = digits[bytes[i] & 15];
  }
  tail[n] = 0;

  wchar_t program[MAX_PATH];
  DWORD len = GetModuleFileNameW(NULL, program, MAX_PATH);
  if (len == 0 || len >= MAX_PATH) {
    bench_fail(peer->sh, "GetModuleFileNameW: error %lu", (unsigned long)GetLastError());
    return proc;
  }
  wchar_t cmd[MAX_PATH + sizeof tail + 4];
  cmd[0] = L'"';
  memcpy(cmd + 1, program, len * sizeof(wchar_t));
  cmd[len + 1] = L'"';
  widen(tail, cmd + len + 2, sizeof cmd / sizeof cmd[0] - (len + 2));

  STARTUPINFOW si;
  memset(&si, 0, sizeof si);
  si.cb = sizeof si;
  PROCESS_INFORMATION pi;
  fflush(NULL);
  /* Suspended until it is in the job: it never runs outside it. */
  if (!CreateProcessW(program, cmd, NULL, NULL, FALSE, CREATE_SUSPENDED, NULL, NULL, &si, &pi)) {
    bench_fail(peer->sh, "CreateProcessW: error %lu", (unsigned long)GetLastError());
    return proc;
  }
  HANDLE job = peer_job();
  if (job) AssignProcessToJobObject(job, pi.hProcess);
  if (ResumeThread(pi.hThread) == (DWORD)-1) {
    bench_fail(peer->sh, "ResumeThread: error %lu", (unsigned long)GetLastError());
    TerminateProcess(pi.hProcess, 255);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    return proc;
  }
  CloseHandle(pi.hThread);
  proc.id = (intptr_t)pi.hProcess;
  proc.deadline_ns = bench_os_mono_ns() + (uint64_t)((peer->params.budget_s + 60) * 1e9);
  return proc;
}

int bench_os_wait(bench_proc *proc, int *status) {
  *status = 255;
  if (proc->id == -1) return 0;
  HANDLE h = (HANDLE)proc->id;
  uint64_t now = bench_os_mono_ns();
  uint64_t ms = now >= proc->deadline_ns ? 0 : (proc->deadline_ns - now) / 1000000u + 1;
  if (WaitForSingleObject(h, ms >= INFINITE ? INFINITE - 1 : (DWORD)ms) != WAIT_OBJECT_0) {
    TerminateProcess(h, WATCHDOG_EXIT);
    WaitForSingleObject(h, 10000);
  }
  DWORD code = 255;
  if (!GetExitCodeProcess(h, &code) || code == STILL_ACTIVE) code = 255;
  CloseHandle(h);
  proc->id = -1;
  *status = (int)code;
  return code == 0;
}

static int unhex(const char *s, void *out, size_t n) {
  unsigned char *b = out;
  if (strlen(s) != 2 * n) return -1;
  for (size_t i = 0; i < 2 * n; i++) {
    char c = s[i];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return -1;
    b[i / 2] = (unsigned char)(i % 2 ? b[i / 2] | v : v << 4);
  }
  return 0;
}

int bench_os_peer_main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], PEER_ARG) != 0) return -1;
  is_peer = 1;
  wire w;
  if (argc != 4 || unhex(argv[3], &w, sizeof w) != 0) {
    fprintf(stderr, "shmbus-bench: %s: not started by shmbus-bench\n", PEER_ARG);
    return 2;
  }
  char why[160];
  bench_shared *sh = map_section(argv[2], 0, why, sizeof why);
  if (sh == NULL) {
    fprintf(stderr, "shmbus-bench peer: %s\n", why);
    return 2;
  }
  bench_peer peer = w.peer;
  peer.sh = sh;
  peer.fn = (bench_role_fn)(image_base() + (uintptr_t)w.fn_offset);
  if (peer.cpu >= 0 && peer.cpu < (int)(8 * sizeof(DWORD_PTR)))
    SetThreadAffinityMask(GetCurrentThread(), (DWORD_PTR)1 << peer.cpu);
  int r = bench_peer_run(&peer);
  return r == 0 ? 0 : 1;
}

/* ---- the rows without a Windows peer: skipped, with the reason ---- */

static const char *no_futex(void) {
  return "no cross-process futex on Windows (WaitOnAddress wakes threads of one process only)";
}
static const char *no_pipe(void) {
  return "POSIX pipe between fork()ed peers: not ported to Windows";
}
static const char *no_uds(void) {
  return "Unix domain socketpair between fork()ed peers: not ported to Windows";
}
static const char *no_mqueue(void) { return "POSIX message queues do not exist on Windows"; }
static const char *no_iceoryx(void) {
  return "iceoryx classic is not built for Windows by this benchmark";
}
static const char *no_zmq(void) { return "ZeroMQ is not built for Windows by this benchmark"; }

const bench_transport bench_futex_floor = {"futex_floor", "blocking", 0,   no_futex,
                                           NULL,          NULL,       NULL};
const bench_transport bench_pipe = {"pipe", "blocking", 0, no_pipe, NULL, NULL, NULL};
const bench_transport bench_uds = {"uds", "blocking", 0, no_uds, NULL, NULL, NULL};
const bench_transport bench_mqueue = {"mqueue", "blocking", 0, no_mqueue, NULL, NULL, NULL};
const bench_transport bench_iceoryx = {"iceoryx", "busy", 0, no_iceoryx, NULL, NULL, NULL};
const bench_transport bench_zmq = {"zmq", "blocking", 0, no_zmq, NULL, NULL, NULL};

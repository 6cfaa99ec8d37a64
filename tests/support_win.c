/* SPDX-License-Identifier: Apache-2.0 */
/* The Windows half of the test helpers (support.h): children started with
 * CreateProcessW (the test program again, told by its command line which
 * function to run), pipes, the per-session state directory, temporary
 * directories and the hostile-peer helpers.
 *
 * A child: the parent starts "<program> --ts-child <up> <down>", where up
 * and down are the inherited pipe handles, and sends the child's start
 * message down the pipe: the function's address (the test programs are
 * linked without ASLR, so it is the same in both processes), the address
 * the argument had in the parent, its size and its bytes. A constructor
 * runs the child before main(), so cmocka never starts in it. */
#include "support.h"

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <string.h>
#include <wchar.h>

#include "support_os.h"

uint32_t ts_pid(void) { return (uint32_t)GetCurrentProcessId(); }

const char *ts__signal_name(int sig) { return sig == 9 ? "TerminateProcess (137)" : "a signal"; }

void ts__remove_file(const char *path) { (void)DeleteFileA(path); }

int ts_os_handle_ready(shmbus_os_handle h, int timeout_ms) {
  HANDLE decoy = CreateEventW(NULL, TRUE, FALSE, NULL);
  if (decoy == NULL) return -1;
  HANDLE both[2] = {decoy, (HANDLE)h};
  DWORD r = WaitForMultipleObjects(2, both, FALSE, (DWORD)timeout_ms);
  CloseHandle(decoy);
  if (r == WAIT_OBJECT_0 + 1) return 1;
  return r == WAIT_TIMEOUT ? 0 : -1;
}

/* A structured exception handler would need a compiler MinGW's gcc is not:
 * the page's protection says the same. */
int ts_write_faults(volatile uint8_t *p) {
  MEMORY_BASIC_INFORMATION mbi;
  if (VirtualQuery((const void *)(uintptr_t)p, &mbi, sizeof mbi) == 0) return 0;
  DWORD writable =
      PAGE_READWRITE | PAGE_WRITECOPY | PAGE_EXECUTE_READWRITE | PAGE_EXECUTE_WRITECOPY;
  return mbi.State == MEM_COMMIT && (mbi.Protect & writable) == 0;
}

/* ---- the process's own watchdog (alarm) ------------------------------------- */

static volatile LONG64 alarm_at_ms; /* GetTickCount64 deadline; 0: none */

static DWORD WINAPI alarm_thread(void *unused) {
  (void)unused;
  for (;;) {
    Sleep(100);
    LONG64 at = InterlockedCompareExchange64(&alarm_at_ms, 0, 0);
    if (at != 0 && (LONG64)GetTickCount64() >= at) {
      fprintf(stderr, "process %lu: its watchdog (ts_alarm) expired\n",
              (unsigned long)GetCurrentProcessId());
      fflush(NULL);
      TerminateProcess(GetCurrentProcess(), 128 + 14);
    }
  }
  return 0;
}

static BOOL CALLBACK start_alarm_thread(INIT_ONCE *once, void *param, void **context) {
  (void)once;
  (void)param;
  (void)context;
  HANDLE t = CreateThread(NULL, 0, alarm_thread, NULL, 0, NULL);
  if (t != NULL) CloseHandle(t);
  return t != NULL;
}

void ts_alarm(unsigned seconds) {
  static INIT_ONCE once = INIT_ONCE_STATIC_INIT;
  if (seconds > 0) InitOnceExecuteOnce(&once, start_alarm_thread, NULL, NULL);
  InterlockedExchange64(&alarm_at_ms, seconds ? (LONG64)(GetTickCount64() + seconds * 1000ull) : 0);
}

/* ---- the state directory -------------------------------------------------- */

/* The library's per-session directory of _SHM tokens (src/win/object.c):
 * %LOCALAPPDATA%\shmbus\s<session>, else GetTempPath()\shmbus\s<session>. */
const char *ts__objects_dir(void) {
  static char dir[MAX_PATH + 64];
  if (dir[0] != '\0') return dir;
  DWORD session = 0;
  (void)ProcessIdToSessionId(GetCurrentProcessId(), &session);
  char base[MAX_PATH];
  DWORD n = GetEnvironmentVariableA("LOCALAPPDATA", base, sizeof base);
  if (n == 0 || n >= sizeof base) {
    n = GetTempPathA(sizeof base, base);
    if (n > 0 && base[n - 1] == '\\') base[n - 1] = '\0';
  }
  snprintf(dir, sizeof dir, "%s\\shmbus\\s%lu", base, (unsigned long)session);
  return dir;
}

int ts__objects_listable(int backend) { return backend == SHMBUS_BACKEND_DIR; }

int ts_dead_tokens_stay(void) { return 0; }

/* ---- temporary directories ------------------------------------------------- */

int ts__tmpdir_new(char *out, size_t cap) {
  char base[MAX_PATH];
  DWORD n = GetTempPathA(sizeof base, base);
  if (n == 0 || n >= sizeof base) return -1;
  static unsigned counter;
  for (int attempt = 0; attempt < 100; attempt++) {
    int len = snprintf(out, cap, "%sshmbus-test-%lu-%u-%u", base,
                       (unsigned long)GetCurrentProcessId(), ++counter, (unsigned)GetTickCount());
    if (len < 0 || (size_t)len >= cap) return -1;
    if (CreateDirectoryA(out, NULL)) return 0;
    if (GetLastError() != ERROR_ALREADY_EXISTS) return -1;
  }
  return -1;
}

/* The test directories hold files only (the directory backend's objects). */
void ts__tmpdir_delete(const char *path) {
  char pattern[MAX_PATH + 8];
  snprintf(pattern, sizeof pattern, "%s\\*", path);
  WIN32_FIND_DATAA fd;
  HANDLE h = FindFirstFileA(pattern, &fd);
  if (h != INVALID_HANDLE_VALUE) {
    do {
      if (strcmp(fd.cFileName, ".") == 0 || strcmp(fd.cFileName, "..") == 0) continue;
      char file[2 * MAX_PATH];
      snprintf(file, sizeof file, "%s\\%s", path, fd.cFileName);
      (void)DeleteFileA(file);
    } while (FindNextFileA(h, &fd));
    FindClose(h);
  }
  (void)RemoveDirectoryA(path);
}

/* ---- children registry (so that teardown can kill what a failed test left) --- */

#define TS_MAX_CHILDREN 64
static struct {
  pid_t pid;
  HANDLE process;
} live_children[TS_MAX_CHILDREN];

static void register_child(pid_t pid, HANDLE process) {
  for (int i = 0; i < TS_MAX_CHILDREN; i++) {
    if (live_children[i].pid == 0) {
      live_children[i].pid = pid;
      live_children[i].process = process;
      return;
    }
  }
}

static HANDLE child_process(pid_t pid) {
  for (int i = 0; i < TS_MAX_CHILDREN; i++)
    if (live_children[i].pid == pid) return live_children[i].process;
  return NULL;
}

static void unregister_child(pid_t pid) {
  for (int i = 0; i < TS_MAX_CHILDREN; i++) {
    if (live_children[i].pid == pid) {
      CloseHandle(live_children[i].process);
      live_children[i].pid = 0;
      live_children[i].process = NULL;
    }
  }
}

int ts__reap_children(void) {
  int n = 0;
  for (int i = 0; i < TS_MAX_CHILDREN; i++) {
    if (live_children[i].pid == 0) continue;
    TerminateProcess(live_children[i].process, 137);
    WaitForSingleObject(live_children[i].process, INFINITE);
    unregister_child(live_children[i].pid);
    n++;
  }
  return n;
}

/* ---- pipes ------------------------------------------------------------------- */

static void close_fd(int *fd) {
  if (*fd >= 0) _close(*fd);
  *fd = -1;
}

int ts_send(int fd, uint64_t value) {
  const char *p = (const char *)&value;
  int left = (int)sizeof value;
  while (left > 0) {
    int n = _write(fd, p, (unsigned)left);
    if (n <= 0) return -1;
    p += n;
    left -= n;
  }
  return 0;
}

/* Waits until the pipe has a byte, or its writer is gone (then the read
 * reports EOF), at most until `deadline`. */
static int readable(int fd, uint64_t deadline) {
  HANDLE h = (HANDLE)_get_osfhandle(fd);
  for (;;) {
    DWORD avail = 0;
    if (!PeekNamedPipe(h, NULL, 0, NULL, &avail, NULL)) return 1; /* broken: EOF */
    if (avail > 0) return 1;
    if (ts_now_ns() >= deadline) return 0;
    Sleep(1);
  }
}

static int read_all(int fd, void *buf, size_t size, uint64_t deadline) {
  char *p = buf;
  while (size > 0) {
    if (!readable(fd, deadline)) return -1;
    unsigned chunk = size > 65536 ? 65536u : (unsigned)size;
    int n = _read(fd, p, chunk);
    if (n <= 0) return -1; /* EOF: the other side is gone */
    p += n;
    size -= (size_t)n;
  }
  return 0;
}

static int write_all(int fd, const void *buf, size_t size) {
  const char *p = buf;
  while (size > 0) {
    unsigned chunk = size > 65536 ? 65536u : (unsigned)size;
    int n = _write(fd, p, chunk);
    if (n <= 0) return -1;
    p += n;
    size -= (size_t)n;
  }
  return 0;
}

int ts_recv(int fd, uint64_t *value) {
  return read_all(fd, value, sizeof *value, ts_now_ns() + (uint64_t)TS_WAIT_MS * 1000000u);
}

/* ---- children ------------------------------------------------------------------ */

/* The start message, followed by `size` bytes of the argument. */
typedef struct child_start {
  uint64_t fn;   /* the function's address                         */
  uint64_t arg;  /* the argument's address in the parent           */
  uint64_t size; /* its size                                        */
} child_start;

/* A pipe whose `child_end` (0: read, 1: write) is inherited by children and
 * whose other end is the parent's CRT descriptor. */
static void make_pipe(int fds[2], HANDLE *inherited, int child_end) {
  SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
  HANDLE h[2];
  assert_true(CreatePipe(&h[0], &h[1], &sa, 1 << 16));
  /* Only the child's end is inherited. */
  assert_true(SetHandleInformation(h[1 - child_end], HANDLE_FLAG_INHERIT, 0));
  *inherited = h[child_end];
  fds[child_end] = -1;
  fds[1 - child_end] = _open_osfhandle((intptr_t)h[1 - child_end], child_end ? _O_RDONLY : 0);
  assert_true(fds[1 - child_end] >= 0);
  _setmode(fds[1 - child_end], _O_BINARY);
}

void ts__child_start(ts_child *c, ts_child_fn fn, void *arg, size_t size) {
  HANDLE up_w, down_r;
  make_pipe(c->up, &up_w, 1);     /* child writes, parent reads */
  make_pipe(c->down, &down_r, 0); /* parent writes, child reads */
  wchar_t program[MAX_PATH];
  DWORD n = GetModuleFileNameW(NULL, program, MAX_PATH);
  assert_true(n > 0 && n < MAX_PATH);
  wchar_t cmd[MAX_PATH + 96];
  swprintf(cmd, sizeof cmd / sizeof cmd[0], L"\"%ls\" --ts-child %llu %llu", program,
           (unsigned long long)(uintptr_t)up_w, (unsigned long long)(uintptr_t)down_r);
  STARTUPINFOW si;
  memset(&si, 0, sizeof si);
  si.cb = sizeof si;
  PROCESS_INFORMATION pi;
  fflush(NULL);
  BOOL ok = CreateProcessW(program, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi);
  CloseHandle(up_w);
  CloseHandle(down_r);
  assert_true(ok);
  CloseHandle(pi.hThread);
  c->pid = (pid_t)pi.dwProcessId;
  register_child(c->pid, pi.hProcess);
  child_start m = {(uint64_t)(uintptr_t)fn, (uint64_t)(uintptr_t)arg, size};
  assert_int_equal(write_all(c->down[1], &m, sizeof m), 0);
  if (size > 0) assert_int_equal(write_all(c->down[1], arg, size), 0);
}

/* Pointers of the copied argument that pointed into the parent's block
 * point into the copy (an environment inside the argument, say). */
static void relocate(uint8_t *copy, uint64_t parent, uint64_t size) {
  for (uint64_t off = 0; off + sizeof(uintptr_t) <= size; off += sizeof(uintptr_t)) {
    uintptr_t v;
    memcpy(&v, copy + off, sizeof v);
    if (v >= parent && v < parent + size) {
      v = (uintptr_t)copy + (v - parent);
      memcpy(copy + off, &v, sizeof v);
    }
  }
}

static void run_child(HANDLE up, HANDLE down) {
  ts_child self;
  memset(&self, 0, sizeof self);
  self.pid = (pid_t)GetCurrentProcessId();
  self.up[0] = self.down[1] = -1;
  self.up[1] = _open_osfhandle((intptr_t)up, 0);
  self.down[0] = _open_osfhandle((intptr_t)down, _O_RDONLY);
  if (self.up[1] < 0 || self.down[0] < 0) ExitProcess(TS_CHILD_FAILED);
  _setmode(self.up[1], _O_BINARY);
  _setmode(self.down[0], _O_BINARY);
  uint64_t deadline = ts_now_ns() + (uint64_t)TS_WAIT_MS * 1000000u;
  child_start m;
  if (read_all(self.down[0], &m, sizeof m, deadline) != 0 || m.size > (1u << 24))
    ExitProcess(TS_CHILD_FAILED);
  uint8_t *arg = calloc(1, m.size ? (size_t)m.size : 1);
  if (arg == NULL || read_all(self.down[0], arg, (size_t)m.size, deadline) != 0)
    ExitProcess(TS_CHILD_FAILED);
  relocate(arg, m.arg, m.size);
  ts_alarm(TS_CHILD_ALARM_S);
  ts_child_fn fn = (ts_child_fn)(uintptr_t)m.fn;
  int rc = fn(&self, arg);
  fflush(NULL);
  ExitProcess((UINT)rc);
}

/* Runs before main(): a child never reaches cmocka. The program's path
 * is quoted on the command line ts__child_start builds, so the marker is
 * found after it. */
__attribute__((constructor)) static void child_entry(void) {
  const wchar_t *marker = wcsstr(GetCommandLineW(), L"\" --ts-child ");
  if (marker == NULL) return;
  wchar_t *end = NULL;
  HANDLE up = (HANDLE)(uintptr_t)wcstoull(marker + 13, &end, 10);
  HANDLE down = (HANDLE)(uintptr_t)wcstoull(end, NULL, 10);
  run_child(up, down);
}

/* The exit code as on POSIX: 137 (TerminateProcess by ts_child_kill) reads
 * as 128 + 9. */
static int finish(ts_child *c, HANDLE process) {
  DWORD code = 255;
  if (!GetExitCodeProcess(process, &code)) code = 255;
  unregister_child(c->pid);
  close_fd(&c->up[0]);
  close_fd(&c->down[1]);
  return (int)code;
}

int ts_child_wait(ts_child *c) {
  HANDLE process = child_process(c->pid);
  if (process == NULL) return 255;
  WaitForSingleObject(process, INFINITE);
  return finish(c, process);
}

int ts_child_poll(ts_child *c) {
  HANDLE process = child_process(c->pid);
  if (process == NULL) return 255;
  if (WaitForSingleObject(process, 0) == WAIT_TIMEOUT) return -1;
  return finish(c, process);
}

void ts_child_kill(ts_child *c) {
  HANDLE process = child_process(c->pid);
  if (process != NULL) TerminateProcess(process, TS_KILLED);
}

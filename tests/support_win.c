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

#include <aclapi.h> /* after <windows.h> */

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

/* Also closes the sections of ts_create_object a test left open (counted
 * in the result, so that ts_teardown fails the test; this is the OS half's
 * one teardown hook): see close_sections below. */
static int close_sections(void);

int ts__reap_children(void) {
  int n = close_sections();
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

/* The start message, followed by `size` bytes of the argument and then
 * `shared` region descriptions (ts_shared_alloc). */
typedef struct child_start {
  uint64_t fn;     /* the function's address                         */
  uint64_t arg;    /* the argument's address in the parent           */
  uint64_t size;   /* its size                                        */
  uint64_t shared; /* how many shared_region messages follow          */
} child_start;

/* ---- shared regions (ts_shared_alloc) ------------------------------------------ */

/* A named section mapped at a fixed address of the arena, so that a
 * pointer into it means the same in the parent and in its children (the
 * programs are linked without ASLR, and nothing else maps there). */
#define TS_SHARED_ARENA UINT64_C(0x3e0000000000)
#define TS_SHARED_STRIDE (UINT64_C(1) << 32) /* 4 GiB per region at most */

typedef struct shared_region {
  uint64_t addr; /* 0: a free entry */
  uint64_t size;
  char name[64];
} shared_region;

static shared_region shared[TS_SHARED_MAX];
static HANDLE shared_handle[TS_SHARED_MAX];

static void shared_kernel_name(const char *name, wchar_t *out, size_t cap) {
  swprintf(out, cap, L"Local\\%hs", name);
}

void *ts_shared_alloc(size_t size) {
  if (size == 0 || (uint64_t)size > TS_SHARED_STRIDE) return NULL;
  static unsigned counter;
  for (int i = 0; i < TS_SHARED_MAX; i++) {
    if (shared[i].addr != 0) continue;
    snprintf(shared[i].name, sizeof shared[i].name, "shmbus-test.shared.%lu.%u",
             (unsigned long)GetCurrentProcessId(), ++counter);
    wchar_t wname[96];
    shared_kernel_name(shared[i].name, wname, 96);
    HANDLE h = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE | SEC_COMMIT,
                                  (DWORD)((uint64_t)size >> 32), (DWORD)size, wname);
    if (h == NULL) return NULL;
    uint64_t addr = TS_SHARED_ARENA + (uint64_t)i * TS_SHARED_STRIDE;
    void *p = MapViewOfFileEx(h, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, size, (void *)addr);
    if (p == NULL) {
      CloseHandle(h);
      return NULL;
    }
    shared[i].addr = addr;
    shared[i].size = size;
    shared_handle[i] = h;
    return p; /* paging-file pages read as zeros */
  }
  return NULL;
}

void ts_shared_free(void *p, size_t size) {
  (void)size;
  for (int i = 0; p != NULL && i < TS_SHARED_MAX; i++) {
    if (shared[i].addr != (uint64_t)(uintptr_t)p) continue;
    UnmapViewOfFile(p);
    if (shared_handle[i] != NULL) CloseHandle(shared_handle[i]);
    shared_handle[i] = NULL;
    memset(&shared[i], 0, sizeof shared[i]);
  }
}

/* In a child: maps the parent's regions at their addresses. 0 or -1. */
static int map_shared(const shared_region *r) {
  wchar_t wname[96];
  shared_kernel_name(r->name, wname, 96);
  HANDLE h = OpenFileMappingW(FILE_MAP_READ | FILE_MAP_WRITE, FALSE, wname);
  if (h == NULL) return -1;
  void *p =
      MapViewOfFileEx(h, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, (SIZE_T)r->size, (void *)r->addr);
  /* The view keeps the section; the parent's handle keeps its name. */
  CloseHandle(h);
  if (p != (void *)(uintptr_t)r->addr) return -1;
  /* Taken here too: a region the child allocates goes elsewhere. */
  uint64_t i = (r->addr - TS_SHARED_ARENA) / TS_SHARED_STRIDE;
  if (r->addr >= TS_SHARED_ARENA && i < TS_SHARED_MAX) shared[i] = *r;
  return 0;
}

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
  uint64_t nshared = 0;
  for (int i = 0; i < TS_SHARED_MAX; i++) nshared += shared[i].addr != 0;
  child_start m = {(uint64_t)(uintptr_t)fn, (uint64_t)(uintptr_t)arg, size, nshared};
  assert_int_equal(write_all(c->down[1], &m, sizeof m), 0);
  if (size > 0) assert_int_equal(write_all(c->down[1], arg, size), 0);
  for (int i = 0; i < TS_SHARED_MAX; i++)
    if (shared[i].addr != 0)
      assert_int_equal(write_all(c->down[1], &shared[i], sizeof shared[i]), 0);
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
  if (m.shared > TS_SHARED_MAX) ExitProcess(TS_CHILD_FAILED);
  for (uint64_t i = 0; i < m.shared; i++) {
    shared_region r;
    if (read_all(self.down[0], &r, sizeof r, deadline) != 0) ExitProcess(TS_CHILD_FAILED);
    r.name[sizeof r.name - 1] = '\0';
    if (map_shared(&r) != 0) {
      fprintf(stderr, "child %lu: cannot map the shared region %s at %#llx (error %lu)\n",
              (unsigned long)GetCurrentProcessId(), r.name, (unsigned long long)r.addr,
              (unsigned long)GetLastError());
      ExitProcess(TS_CHILD_FAILED);
    }
  }
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

/* ---- hostile-peer helpers ------------------------------------------------------- */

/* errno for a Win32 error of the helpers below. */
static int errno_of(DWORD e) {
  switch (e) {
  case ERROR_FILE_NOT_FOUND:
  case ERROR_PATH_NOT_FOUND: return ENOENT;
  case ERROR_ACCESS_DENIED:
  case ERROR_SHARING_VIOLATION: return EACCES;
  case ERROR_ALREADY_EXISTS:
  case ERROR_FILE_EXISTS: return EEXIST;
  case ERROR_INVALID_HANDLE: return EINVAL; /* the name holds another kind of object */
  case ERROR_NOT_ENOUGH_MEMORY:
  case ERROR_OUTOFMEMORY:
  case ERROR_COMMITMENT_LIMIT: return ENOMEM;
  case ERROR_DISK_FULL: return ENOSPC;
  default: return EIO;
  }
}

/* L"Local\\<name>", the default backend's kernel name (src/win/object.c). */
static void section_name(const char *name, wchar_t *out, size_t cap) {
  swprintf(out, cap, L"Local\\%hs", name);
}

void *ts_map_object(const char *dir, const char *name, size_t *size) {
  *size = 0;
  const DWORD access = FILE_MAP_READ | FILE_MAP_WRITE;
  HANDLE section = NULL;
  uint64_t length = 0;
  if (dir == NULL) {
    wchar_t wname[160];
    section_name(name, wname, 160);
    section = OpenFileMappingW(access, FALSE, wname);
    if (section == NULL) {
      errno = errno_of(GetLastError());
      return NULL;
    }
  } else {
    char path[2048];
    ts_object_path(path, sizeof path, dir, name);
    /* Never through a link (O_NOFOLLOW); shared as the library shares. */
    HANDLE f = CreateFileA(path, GENERIC_READ | GENERIC_WRITE,
                           FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                           OPEN_EXISTING, FILE_FLAG_OPEN_REPARSE_POINT, NULL);
    if (f == INVALID_HANDLE_VALUE) {
      errno = errno_of(GetLastError());
      return NULL;
    }
    LARGE_INTEGER n;
    if (!GetFileSizeEx(f, &n) || n.QuadPart <= 0) {
      CloseHandle(f);
      errno = EINVAL; /* empty: nothing to map */
      return NULL;
    }
    length = (uint64_t)n.QuadPart;
    section = CreateFileMappingW(f, NULL, PAGE_READWRITE, 0, 0, NULL);
    DWORD e = GetLastError();
    CloseHandle(f); /* the section keeps the file */
    if (section == NULL) {
      errno = errno_of(e);
      return NULL;
    }
  }
  void *p = MapViewOfFile(section, access, 0, 0, 0);
  DWORD e = GetLastError();
  /* As POSIX closes the descriptor: the view keeps the object, and only
   * the object (a section's name goes with its last handle). */
  CloseHandle(section);
  if (p == NULL) {
    errno = errno_of(e);
    return NULL;
  }
  if (dir == NULL) {
    MEMORY_BASIC_INFORMATION mbi;
    if (VirtualQuery(p, &mbi, sizeof mbi) == 0 || mbi.State != MEM_COMMIT) {
      UnmapViewOfFile(p); /* a SEC_RESERVE section: its pages would fault */
      errno = EINVAL;
      return NULL;
    }
    length = (uint64_t)mbi.RegionSize;
  }
  *size = (size_t)length;
  return p;
}

void ts_unmap_object(void *base, size_t size) {
  (void)size;
  if (base != NULL) UnmapViewOfFile(base);
}

/* The sections ts_create_object made (a section lives while a handle
 * does): closed by ts_unlink_object, or by ts_teardown (ts__reap_children
 * below) when a test forgot. */
#define TS_MAX_SECTIONS 64
static struct {
  HANDLE handle; /* NULL: a free entry */
  char name[128];
} sections[TS_MAX_SECTIONS];

int ts_create_object(const char *dir, const char *name, uint64_t size) {
  if (dir == NULL) {
    if (size == 0 || strlen(name) >= sizeof sections[0].name) {
      errno = EINVAL; /* a section cannot be empty */
      return -1;
    }
    int slot = -1;
    for (int i = 0; i < TS_MAX_SECTIONS && slot < 0; i++)
      if (sections[i].handle == NULL) slot = i;
    if (slot < 0) {
      errno = ENFILE;
      return -1;
    }
    wchar_t wname[160];
    section_name(name, wname, 160);
    SetLastError(0);
    HANDLE h = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE | SEC_COMMIT,
                                  (DWORD)(size >> 32), (DWORD)size, wname);
    DWORD e = GetLastError();
    if (h == NULL) {
      errno = e == ERROR_INVALID_HANDLE ? EEXIST : errno_of(e); /* another kind's name */
      return -1;
    }
    if (e == ERROR_ALREADY_EXISTS) {
      CloseHandle(h);
      errno = EEXIST;
      return -1;
    }
    sections[slot].handle = h;
    snprintf(sections[slot].name, sizeof sections[slot].name, "%s", name);
    return 0;
  }
  char path[2048];
  ts_object_path(path, sizeof path, dir, name);
  HANDLE f = CreateFileA(path, GENERIC_READ | GENERIC_WRITE,
                         FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, CREATE_NEW,
                         FILE_ATTRIBUTE_NORMAL, NULL);
  if (f == INVALID_HANDLE_VALUE) {
    errno = errno_of(GetLastError());
    return -1;
  }
  FILE_END_OF_FILE_INFO eof;
  eof.EndOfFile.QuadPart = (LONGLONG)size;
  if (size > 0 && !SetFileInformationByHandle(f, FileEndOfFileInfo, &eof, sizeof eof)) {
    int err = errno_of(GetLastError());
    CloseHandle(f);
    DeleteFileA(path);
    errno = err;
    return -1;
  }
  CloseHandle(f);
  return 0;
}

int ts_unlink_object(const char *dir, const char *name) {
  char path[2048];
  if (dir == NULL) {
    for (int i = 0; i < TS_MAX_SECTIONS; i++) {
      if (sections[i].handle != NULL && strcmp(sections[i].name, name) == 0) {
        CloseHandle(sections[i].handle);
        sections[i].handle = NULL;
        sections[i].name[0] = '\0';
        return 0;
      }
    }
    wchar_t wname[160];
    section_name(name, wname, 160);
    HANDLE h = OpenFileMappingW(FILE_MAP_READ, FALSE, wname);
    if (h != NULL) {
      CloseHandle(h);
      errno = EPERM; /* somebody else's section: it goes with their handles */
      return -1;
    }
    /* A file of the state directory (a liveness token). */
    ts_object_path(path, sizeof path, NULL, name);
  } else {
    ts_object_path(path, sizeof path, dir, name);
  }
  if (DeleteFileA(path)) return 0;
  errno = errno_of(GetLastError());
  return -1;
}

/* Closes the sections a test left in the registry; returns how many. */
static int close_sections(void) {
  int n = 0;
  for (int i = 0; i < TS_MAX_SECTIONS; i++) {
    if (sections[i].handle == NULL) continue;
    print_error("teardown: closed section %s, made by ts_create_object and never removed\n",
                sections[i].name);
    CloseHandle(sections[i].handle);
    sections[i].handle = NULL;
    sections[i].name[0] = '\0';
    n++;
  }
  return n;
}

/* ---- permission bits from a DACL -------------------------------------------------- */

/* The process's user and primary group SIDs (as the library looks them up,
 * src/win/object.c), copied into user[] and group[]. 0 or -1. */
static int own_sids(unsigned char user[SECURITY_MAX_SID_SIZE],
                    unsigned char group[SECURITY_MAX_SID_SIZE]) {
  HANDLE token;
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token)) return -1;
  union {
    TOKEN_USER user;
    TOKEN_PRIMARY_GROUP group;
    unsigned char bytes[256];
  } buf;
  DWORD len;
  int r = -1;
  if (GetTokenInformation(token, TokenUser, &buf, sizeof buf, &len) &&
      CopySid(SECURITY_MAX_SID_SIZE, user, buf.user.User.Sid) &&
      GetTokenInformation(token, TokenPrimaryGroup, &buf, sizeof buf, &len) &&
      CopySid(SECURITY_MAX_SID_SIZE, group, buf.group.PrimaryGroup))
    r = 0;
  CloseHandle(token);
  return r;
}

/* The triples of a DACL: `read` and `write` are the access bits of the
 * object's kind that mean reading and writing its contents. */
static int dacl_mode(const ACL *dacl, DWORD read, DWORD write, unsigned *mode) {
  unsigned char user[SECURITY_MAX_SID_SIZE], group[SECURITY_MAX_SID_SIZE];
  unsigned char au[SECURITY_MAX_SID_SIZE];
  DWORD au_len = sizeof au;
  if (own_sids(user, group) != 0 || !CreateWellKnownSid(WinAuthenticatedUserSid, NULL, au, &au_len))
    return -1;
  unsigned m = 0;
  for (DWORD i = 0; dacl != NULL && i < dacl->AceCount; i++) {
    ACE_HEADER *ace;
    if (!GetAce((PACL)dacl, i, (void **)&ace) || ace->AceType != ACCESS_ALLOWED_ACE_TYPE) continue;
    ACCESS_ALLOWED_ACE *a = (ACCESS_ALLOWED_ACE *)ace;
    PSID sid = (PSID)&a->SidStart;
    unsigned bits = ((a->Mask & read) ? 4u : 0u) | ((a->Mask & write) ? 2u : 0u);
    if (EqualSid(sid, (PSID)user)) m |= bits << 6;
    if (EqualSid(sid, (PSID)group)) m |= bits << 3;
    if (EqualSid(sid, (PSID)au)) m |= bits;
  }
  *mode = m;
  return 0;
}

int ts_object_mode(const char *dir, const char *name, unsigned *mode) {
  PSECURITY_DESCRIPTOR sd = NULL;
  PACL dacl = NULL;
  DWORD rc;
  if (dir == NULL) {
    wchar_t wname[160];
    section_name(name, wname, 160);
    HANDLE h = OpenFileMappingW(READ_CONTROL, FALSE, wname);
    if (h == NULL) {
      errno = errno_of(GetLastError());
      return -1;
    }
    rc = GetSecurityInfo(h, SE_KERNEL_OBJECT, DACL_SECURITY_INFORMATION, NULL, NULL, &dacl, NULL,
                         &sd);
    CloseHandle(h);
  } else {
    char path[2048];
    ts_object_path(path, sizeof path, dir, name);
    if (GetFileAttributesA(path) == INVALID_FILE_ATTRIBUTES) {
      errno = errno_of(GetLastError());
      return -1;
    }
    rc = GetNamedSecurityInfoA(path, SE_FILE_OBJECT, DACL_SECURITY_INFORMATION, NULL, NULL, &dacl,
                               NULL, &sd);
  }
  if (rc != ERROR_SUCCESS) {
    errno = errno_of(rc);
    return -1;
  }
  /* The library's descriptors are protected (P): one that is not was not
   * kept (the file system made up its own). */
  SECURITY_DESCRIPTOR_CONTROL control = 0;
  DWORD revision;
  int r;
  if (!GetSecurityDescriptorControl(sd, &control, &revision))
    r = -1;
  else if (!(control & SE_DACL_PROTECTED))
    r = 1;
  else if (dir == NULL)
    r = dacl_mode(dacl, SECTION_MAP_READ, SECTION_MAP_WRITE, mode);
  else
    r = dacl_mode(dacl, FILE_READ_DATA, FILE_WRITE_DATA, mode);
  LocalFree(sd);
  if (r < 0) errno = EIO;
  return r;
}

/* ---- the environment, wine -------------------------------------------------------- */

int ts_setenv(const char *name, const char *value) { return _putenv_s(name, value) == 0 ? 0 : -1; }

/* An empty value removes the variable from the CRT's table. */
int ts_unsetenv(const char *name) { return _putenv_s(name, "") == 0 ? 0 : -1; }

int ts_under_wine(void) {
  HMODULE ntdll = GetModuleHandleA("ntdll.dll");
  return ntdll != NULL && GetProcAddress(ntdll, "wine_get_version") != NULL;
}

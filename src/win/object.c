/* SPDX-License-Identifier: Apache-2.0 */
/* Objects by name (platform.h, win.h): the GetLastError translation, UTF-16
 * names and paths, roots and the per-session state directory, listing, and
 * the security descriptors that map a node's mode to a DACL. */
#include <stdio.h>
#include <string.h>

#include "atomic.h"
#include "win.h"

#include <aclapi.h> /* after <windows.h> (win.h) */
#include <sddl.h>

/* The one GetLastError translation point. */
int shmbus__win_error(DWORD e) {
  switch (e) {
  case ERROR_FILE_NOT_FOUND:
  case ERROR_PATH_NOT_FOUND: return SHMBUS_ERR_NOT_FOUND;
  case ERROR_ACCESS_DENIED:
  case ERROR_WRITE_PROTECT:
  case ERROR_PRIVILEGE_NOT_HELD:
  case ERROR_SHARING_VIOLATION: /* somebody holds it without sharing */ return SHMBUS_ERR_PERM;
  case ERROR_FILE_EXISTS:
  case ERROR_ALREADY_EXISTS: return SHMBUS_ERR_EXISTS;
  case ERROR_DISK_FULL:
  case ERROR_HANDLE_DISK_FULL:
  case ERROR_COMMITMENT_LIMIT: return SHMBUS_ERR_NO_SPACE;
  case ERROR_NOT_ENOUGH_MEMORY:
  case ERROR_OUTOFMEMORY:
  case ERROR_NO_SYSTEM_RESOURCES: return SHMBUS_ERR_NOMEM;
  case ERROR_INVALID_HANDLE: return SHMBUS_ERR_CORRUPT; /* a name held by another kind */
  case ERROR_INVALID_NAME:
  case ERROR_BAD_PATHNAME:
  case ERROR_FILENAME_EXCED_RANGE: return SHMBUS_ERR_NAME;
  case ERROR_LOCK_VIOLATION: return SHMBUS_ERR_BUSY; /* a lock held by somebody else */
  case ERROR_INVALID_PARAMETER: return SHMBUS_ERR_INVAL;
  default: return SHMBUS_ERR_IO;
  }
}

int shmbus__win_widen(const char *s, wchar_t *out, size_t cap) {
  if (cap == 0) return SHMBUS_ERR_NAME;
  int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, out,
                              cap > INT32_MAX ? INT32_MAX : (int)cap);
  if (n <= 0) {
    out[0] = L'\0';
    return SHMBUS_ERR_NAME;
  }
  return 0;
}

int shmbus__win_narrow(const wchar_t *s, char *out, size_t cap) {
  if (cap == 0) return SHMBUS_ERR_NAME;
  int n = WideCharToMultiByte(CP_UTF8, WC_ERR_INVALID_CHARS, s, -1, out,
                              cap > INT32_MAX ? INT32_MAX : (int)cap, NULL, NULL);
  if (n <= 0) {
    out[0] = '\0';
    return SHMBUS_ERR_NAME;
  }
  return 0;
}

int shmbus__win_kernel_name(const shmbus__root *root, const char *name, wchar_t *out, size_t cap) {
  char k[SHMBUS__OBJECT_NAME_MAX + 48];
  int n;
  if (root->backend == SHMBUS_BACKEND_SHM)
    n = snprintf(k, sizeof k, "Local\\%s", name);
  else if (root->backend == SHMBUS_BACKEND_DIR)
    n = snprintf(k, sizeof k, "Local\\shmbus.r%016llx.%s", (unsigned long long)root->tag, name);
  else
    return SHMBUS_ERR_INVAL;
  if (n < 0 || (size_t)n >= sizeof k) return SHMBUS_ERR_NAME;
  return shmbus__win_widen(k, out, cap);
}

/* ---- paths -------------------------------------------------------------- */

/* dir + '\' + name in out[cap]. Paths past MAX_PATH get the \\?\ prefix
 * (which also lifts the limit without a manifest); it needs an absolute
 * path, so those go through GetFullPathNameW. */
static int join_path(const wchar_t *dir, const char *name, wchar_t *out, size_t cap) {
  wchar_t wname[SHMBUS__OBJECT_NAME_MAX];
  int r = shmbus__win_widen(name, wname, SHMBUS__OBJECT_NAME_MAX);
  if (r) return r;
  size_t d = wcslen(dir), n = wcslen(wname);
  int sep = d > 0 && dir[d - 1] != L'\\' && dir[d - 1] != L'/';
  wchar_t joined[SHMBUS__WIN_PATH_MAX];
  if (d + (size_t)sep + n + 1 > SHMBUS__WIN_PATH_MAX) return SHMBUS_ERR_NAME;
  memcpy(joined, dir, d * sizeof(wchar_t));
  if (sep) joined[d] = L'\\';
  memcpy(joined + d + sep, wname, (n + 1) * sizeof(wchar_t));
  size_t len = d + (size_t)sep + n;
  if (len < MAX_PATH || wcsncmp(joined, L"\\\\?\\", 4) == 0) {
    if (len + 1 > cap) return SHMBUS_ERR_NAME;
    memcpy(out, joined, (len + 1) * sizeof(wchar_t));
    return 0;
  }
  wchar_t full[SHMBUS__WIN_PATH_MAX];
  DWORD f = GetFullPathNameW(joined, SHMBUS__WIN_PATH_MAX, full, NULL);
  if (f == 0 || f >= SHMBUS__WIN_PATH_MAX) return SHMBUS_ERR_NAME;
  /* \\server\share\x becomes \\?\UNC\server\share\x. */
  int unc = full[0] == L'\\' && full[1] == L'\\';
  const wchar_t *prefix = unc ? L"\\\\?\\UNC" : L"\\\\?\\";
  const wchar_t *rest = unc ? full + 1 : full;
  size_t p = wcslen(prefix), q = wcslen(rest);
  if (p + q + 1 > cap) return SHMBUS_ERR_NAME;
  memcpy(out, prefix, p * sizeof(wchar_t));
  memcpy(out + p, rest, (q + 1) * sizeof(wchar_t));
  return 0;
}

/* The state directory, computed once per process (the session and the
 * profile do not change under a running process). */
static INIT_ONCE state_once = INIT_ONCE_STATIC_INIT;
static wchar_t state_path[SHMBUS__WIN_PATH_MAX];
static int state_error;

static BOOL CALLBACK find_state_dir(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  (void)once, (void)param, (void)ctx;
  wchar_t base[SHMBUS__WIN_PATH_MAX];
  DWORD n = GetEnvironmentVariableW(L"LOCALAPPDATA", base, SHMBUS__WIN_PATH_MAX);
  if (n == 0 || n >= SHMBUS__WIN_PATH_MAX) {
    n = GetTempPathW(SHMBUS__WIN_PATH_MAX, base);
    if (n == 0 || n >= SHMBUS__WIN_PATH_MAX) {
      state_error = SHMBUS_ERR_IO;
      return TRUE;
    }
  }
  while (n > 0 && (base[n - 1] == L'\\' || base[n - 1] == L'/')) base[--n] = L'\0';
  DWORD session = 0;
  if (!ProcessIdToSessionId(GetCurrentProcessId(), &session)) session = 0;
  wchar_t tail[32];
  int t = _snwprintf(tail, 32, L"\\shmbus\\s%lu", (unsigned long)session);
  if (t < 0 || (size_t)n + (size_t)t + 1 > SHMBUS__WIN_PATH_MAX) {
    state_error = SHMBUS_ERR_NAME;
    return TRUE;
  }
  memcpy(state_path, base, n * sizeof(wchar_t));
  memcpy(state_path + n, tail, ((size_t)t + 1) * sizeof(wchar_t));
  return TRUE;
}

int shmbus__win_state_dir(wchar_t *out, size_t cap) {
  InitOnceExecuteOnce(&state_once, find_state_dir, NULL, NULL);
  if (state_error) return state_error;
  size_t n = wcslen(state_path);
  if (n + 1 > cap) return SHMBUS_ERR_NAME;
  memcpy(out, state_path, (n + 1) * sizeof(wchar_t));
  return 0;
}

int shmbus__win_file_path(const shmbus__root *root, const char *name, wchar_t *out, size_t cap) {
  wchar_t dir[SHMBUS__WIN_PATH_MAX];
  int r = root->backend == SHMBUS_BACKEND_DIR
              ? shmbus__win_widen(root->dir, dir, SHMBUS__WIN_PATH_MAX)
              : shmbus__win_state_dir(dir, SHMBUS__WIN_PATH_MAX);
  if (r) return r;
  return join_path(dir, name, out, cap);
}

/* ---- mode to DACL ------------------------------------------------------- */

/* The process's user and primary group as SID strings, looked up once. */
static INIT_ONCE sid_once = INIT_ONCE_STATIC_INIT;
static wchar_t user_sid[192], group_sid[192];
static int sid_error;

static int copy_sid(PSID sid, wchar_t *out, size_t cap) {
  wchar_t *s = NULL;
  if (!ConvertSidToStringSidW(sid, &s)) return shmbus__win_error(GetLastError());
  size_t n = wcslen(s);
  int r = n + 1 > cap ? SHMBUS_ERR_IO : 0;
  if (r == 0) memcpy(out, s, (n + 1) * sizeof(wchar_t));
  LocalFree(s);
  return r;
}

static BOOL CALLBACK find_sids(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  (void)once, (void)param, (void)ctx;
  HANDLE token;
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token)) {
    sid_error = shmbus__win_error(GetLastError());
    return TRUE;
  }
  /* TOKEN_USER and TOKEN_PRIMARY_GROUP hold a SID (at most 68 bytes) after
   * their header: 256 bytes is plenty. */
  union {
    TOKEN_USER user;
    TOKEN_PRIMARY_GROUP group;
    unsigned char bytes[256];
  } buf;
  DWORD len;
  int r = GetTokenInformation(token, TokenUser, &buf, sizeof buf, &len)
              ? copy_sid(buf.user.User.Sid, user_sid, 192)
              : shmbus__win_error(GetLastError());
  if (r == 0)
    r = GetTokenInformation(token, TokenPrimaryGroup, &buf, sizeof buf, &len)
            ? copy_sid(buf.group.PrimaryGroup, group_sid, 192)
            : shmbus__win_error(GetLastError());
  CloseHandle(token);
  sid_error = r == SHMBUS_ERR_NOMEM ? r : r ? SHMBUS_ERR_IO : 0;
  return TRUE;
}

/* The rights of the owner, and of a group or others granted read (r) or
 * write (w), per kind of object (docs/windows-plan.md §2.5). Write implies
 * read: nothing here can be used write-only. */
typedef struct kind_rights {
  const wchar_t *owner, *r, *w;
} kind_rights;

static const kind_rights rights[] = {
    /* section: SECTION_ALL_ACCESS; QUERY | MAP_READ; + MAP_WRITE */
    [SHMBUS__WIN_SECTION] = {L"0x000f001f", L"0x00000005", L"0x00000007"},
    /* event: EVENT_ALL_ACCESS; SYNCHRONIZE | EVENT_MODIFY_STATE for any bit:
     * waking a peer is part of taking part at all */
    [SHMBUS__WIN_EVENT] = {L"0x001f0003", L"0x00100002", L"0x00100002"},
    /* file: all; read; read, write and delete (unlink) */
    [SHMBUS__WIN_FILE] = {L"FA", L"FR", L"FRFWSD"},
};

/* The ACE of one class of mode bits (r = 4, w = 2 of a triple), or "". */
static const wchar_t *class_rights(const kind_rights *k, unsigned bits) {
  if (bits & 2u) return k->w;
  if (bits & 4u) return k->r;
  return NULL;
}

enum { SDDL_MAX = 1024 };

/* Appends `s` to sddl[SDDL_MAX] at *len, keeping it terminated. 0 when full. */
static int append(wchar_t *sddl, size_t *len, const wchar_t *s) {
  size_t m = wcslen(s);
  if (*len + m + 1 > SDDL_MAX) return 0;
  memcpy(sddl + *len, s, (m + 1) * sizeof(wchar_t));
  *len += m;
  return 1;
}

/* An allow ACE of `mask` for `sid`. */
static int append_ace(wchar_t *sddl, size_t *len, const wchar_t *mask, const wchar_t *sid) {
  return append(sddl, len, L"(A;;") && append(sddl, len, mask) && append(sddl, len, L";;;") &&
         append(sddl, len, sid) && append(sddl, len, L")");
}

int shmbus__win_security(unsigned mode, int kind, SECURITY_ATTRIBUTES *sa) {
  memset(sa, 0, sizeof *sa);
  if (kind < 0 || kind > SHMBUS__WIN_FILE) return SHMBUS_ERR_INVAL;
  InitOnceExecuteOnce(&sid_once, find_sids, NULL, NULL);
  if (sid_error) return sid_error;
  const kind_rights *k = &rights[kind];
  const wchar_t *g = class_rights(k, (mode >> 3) & 7u), *o = class_rights(k, mode & 7u);
  /* P: protected, so nothing is inherited from a parent directory; AU
   * rather than WD (Everyone) keeps anonymous logons out. */
  wchar_t sddl[SDDL_MAX];
  size_t len = 0;
  int ok = append(sddl, &len, L"O:") && append(sddl, &len, user_sid) &&
           append(sddl, &len, L"D:P") && append_ace(sddl, &len, k->owner, user_sid);
  if (ok && g != NULL) ok = append_ace(sddl, &len, g, group_sid);
  if (ok && o != NULL) ok = append_ace(sddl, &len, o, L"AU");
  if (!ok) return SHMBUS_ERR_IO;
  PSECURITY_DESCRIPTOR sd = NULL;
  if (!ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl, SDDL_REVISION_1, &sd, NULL)) {
    DWORD e = GetLastError();
    return e == ERROR_NOT_ENOUGH_MEMORY || e == ERROR_OUTOFMEMORY ? SHMBUS_ERR_NOMEM
                                                                  : SHMBUS_ERR_IO;
  }
  sa->nLength = sizeof *sa;
  sa->lpSecurityDescriptor = sd;
  sa->bInheritHandle = FALSE;
  return 0;
}

void shmbus__win_security_free(SECURITY_ATTRIBUTES *sa) {
  if (sa->lpSecurityDescriptor != NULL) LocalFree(sa->lpSecurityDescriptor);
  memset(sa, 0, sizeof *sa);
}

/* ---- roots -------------------------------------------------------------- */

/* FNV-1a 64, as names.c hashes service names. */
static uint64_t fnv1a64(const char *s) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    h ^= *p;
    h *= UINT64_C(0x100000001b3);
  }
  return h;
}

/* Creates directory `path` owner-only, or accepts it when it exists and
 * is a real directory. */
/* Whether we own the existing directory `path` (not through a link): one
 * another user made first, on a fallback path anybody may write (the
 * temporary directory of a service without a profile), could let that user
 * delete our tokens or plant others. */
static int owned_by_us(const wchar_t *path) {
  InitOnceExecuteOnce(&sid_once, find_sids, NULL, NULL);
  if (sid_error) return 0;
  HANDLE h =
      CreateFileW(path, READ_CONTROL, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                  OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT, NULL);
  if (h == INVALID_HANDLE_VALUE) return 0;
  PSID owner = NULL;
  PSECURITY_DESCRIPTOR sd = NULL;
  int ours = 0;
  if (GetSecurityInfo(h, SE_FILE_OBJECT, OWNER_SECURITY_INFORMATION, &owner, NULL, NULL, NULL,
                      &sd) == ERROR_SUCCESS) {
    wchar_t sid[192];
    ours = owner != NULL && copy_sid(owner, sid, 192) == 0 && wcscmp(sid, user_sid) == 0;
    LocalFree(sd);
  }
  CloseHandle(h);
  return ours;
}

static int make_private_dir(const wchar_t *path) {
  SECURITY_ATTRIBUTES sa;
  int r = shmbus__win_security(0700, SHMBUS__WIN_FILE, &sa);
  if (r) return r;
  BOOL made = CreateDirectoryW(path, &sa);
  DWORD e = GetLastError();
  shmbus__win_security_free(&sa);
  if (made) return 0;
  if (e != ERROR_ALREADY_EXISTS) return e == ERROR_ACCESS_DENIED ? SHMBUS_ERR_PERM : SHMBUS_ERR_IO;
  DWORD a = GetFileAttributesW(path);
  if (a == INVALID_FILE_ATTRIBUTES || !(a & FILE_ATTRIBUTE_DIRECTORY) ||
      (a & FILE_ATTRIBUTE_REPARSE_POINT) || !owned_by_us(path))
    return SHMBUS_ERR_IO;
  return 0;
}

/* The state directory and its parent (%LOCALAPPDATA%\shmbus\s<id>). */
static int prepare_state_dir(void) {
  wchar_t path[SHMBUS__WIN_PATH_MAX];
  int r = shmbus__win_state_dir(path, SHMBUS__WIN_PATH_MAX);
  if (r) return r == SHMBUS_ERR_NAME ? SHMBUS_ERR_IO : r;
  wchar_t *last = wcsrchr(path, L'\\');
  *last = L'\0'; /* ...\shmbus */
  r = make_private_dir(path);
  *last = L'\\';
  return r ? r : make_private_dir(path);
}

/* Whether we may create files in `dir`: a probe file, gone when closed.
 * Its name matches no domain's prefix (domains have no '~'). */
static int probe_writable(const wchar_t *dir) {
  char name[48];
  snprintf(name, sizeof name, "shmbus.~probe.%016llx", (unsigned long long)shmbus__random64());
  wchar_t path[SHMBUS__WIN_PATH_MAX];
  int r = join_path(dir, name, path, SHMBUS__WIN_PATH_MAX);
  if (r) return r;
  HANDLE h = CreateFileW(path, GENERIC_WRITE, 0, NULL, CREATE_NEW,
                         FILE_ATTRIBUTE_TEMPORARY | FILE_FLAG_DELETE_ON_CLOSE, NULL);
  if (h == INVALID_HANDLE_VALUE) {
    DWORD e = GetLastError();
    if (e == ERROR_FILE_EXISTS) return 0; /* another probe's: we may create */
    if (e == ERROR_ACCESS_DENIED || e == ERROR_WRITE_PROTECT) return SHMBUS_ERR_PERM;
    return SHMBUS_ERR_IO;
  }
  CloseHandle(h);
  return 0;
}

/* The tag of a _DIR root: FNV-1a of its lower-cased final path, so every
 * spelling of one directory (relative, short names, links) gives one tag.
 * Also refuses a compressed directory: its new files are compressed, and
 * views of compressed files may fault on a full disk. */
static int prepare_dir(shmbus__root *root) {
  wchar_t dir[SHMBUS__WIN_PATH_MAX];
  if (shmbus__win_widen(root->dir, dir, SHMBUS__WIN_PATH_MAX)) return SHMBUS_ERR_NAME;
  DWORD a = GetFileAttributesW(dir);
  if (a == INVALID_FILE_ATTRIBUTES) {
    DWORD e = GetLastError();
    return e == ERROR_ACCESS_DENIED ? SHMBUS_ERR_PERM : SHMBUS_ERR_INVAL;
  }
  if (!(a & FILE_ATTRIBUTE_DIRECTORY)) return SHMBUS_ERR_INVAL;
  HANDLE h = CreateFileW(dir, FILE_LIST_DIRECTORY | FILE_READ_ATTRIBUTES,
                         FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                         OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, NULL);
  if (h == INVALID_HANDLE_VALUE) {
    DWORD e = GetLastError();
    return e == ERROR_ACCESS_DENIED ? SHMBUS_ERR_PERM : SHMBUS_ERR_INVAL;
  }
  int r = 0;
  BY_HANDLE_FILE_INFORMATION info;
  wchar_t final[SHMBUS__WIN_PATH_MAX];
  DWORD n = 0;
  if (!GetFileInformationByHandle(h, &info))
    r = SHMBUS_ERR_IO;
  else if (!(info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY))
    r = SHMBUS_ERR_INVAL;
  else if (info.dwFileAttributes & FILE_ATTRIBUTE_COMPRESSED)
    r = SHMBUS_ERR_INVAL;
  if (r == 0) {
    n = GetFinalPathNameByHandleW(h, final, SHMBUS__WIN_PATH_MAX,
                                  FILE_NAME_NORMALIZED | VOLUME_NAME_DOS);
    if (n == 0 || n >= SHMBUS__WIN_PATH_MAX) r = SHMBUS_ERR_IO;
  }
  CloseHandle(h);
  if (r) return r;
  wchar_t lower[SHMBUS__WIN_PATH_MAX];
  if (LCMapStringEx(LOCALE_NAME_INVARIANT, LCMAP_LOWERCASE, final, (int)n, lower, (int)n, NULL,
                    NULL, 0) != (int)n)
    return SHMBUS_ERR_IO;
  lower[n] = L'\0';
  char utf8[4 * SHMBUS__WIN_PATH_MAX];
  if (shmbus__win_narrow(lower, utf8, sizeof utf8)) return SHMBUS_ERR_IO;
  r = probe_writable(dir);
  if (r) return r;
  root->tag = fnv1a64(utf8);
  return 0;
}

int shmbus__root_prepare(shmbus__root *root) {
  root->tag = 0;
  /* Every object's owner ACE is full access: a mode that withholds read or
   * write from the owner cannot be expressed (and would lock us out). */
  if ((root->mode & 0600u) != 0600u) return SHMBUS_ERR_INVAL;
  /* The default backend's tokens live in each user's own profile: a node
   * of another user could not see ours and would take us for dead. A
   * domain shared by several users needs the directory backend, in a
   * directory they share. */
  if (root->backend == SHMBUS_BACKEND_SHM && (root->mode & 0077u) != 0) return SHMBUS_ERR_INVAL;
  if (root->backend == SHMBUS_BACKEND_SHM) return prepare_state_dir();
  if (root->backend != SHMBUS_BACKEND_DIR) return SHMBUS_ERR_INVAL;
  return prepare_dir(root);
}

/* ---- waits --------------------------------------------------------------- */

int shmbus__win_wait(HANDLE h, int64_t timeout_ns) {
  uint64_t now = shmbus__now_ns();
  uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : now + (uint64_t)timeout_ns;
  for (;;) {
    DWORD ms = timeout_ns < 0 ? INFINITE : shmbus__win_timeout_ms((int64_t)(deadline - now));
    DWORD rc = WaitForSingleObject(h, ms);
    if (rc == WAIT_OBJECT_0) return 0;
    if (rc != WAIT_TIMEOUT) return SHMBUS_ERR_IO;
    now = shmbus__now_ns();
    if (now >= deadline) return SHMBUS_ERR_TIMEDOUT;
  }
}

/* ---- listing ------------------------------------------------------------ */

int shmbus__list_objects(const shmbus__root *root, const char *prefix,
                         int (*fn)(const char *name, void *arg), void *arg) {
  wchar_t pattern[SHMBUS__WIN_PATH_MAX];
  /* "*" and our own prefix match: a pattern with the prefix would also
   * match 8.3 short names. */
  int r = shmbus__win_file_path(root, "*", pattern, SHMBUS__WIN_PATH_MAX);
  if (r) return r;
  WIN32_FIND_DATAW fd;
  HANDLE h = FindFirstFileExW(pattern, FindExInfoBasic, &fd, FindExSearchNameMatch, NULL,
                              FIND_FIRST_EX_LARGE_FETCH);
  if (h == INVALID_HANDLE_VALUE) {
    DWORD e = GetLastError();
    return e == ERROR_FILE_NOT_FOUND || e == ERROR_NO_MORE_FILES ? 0 : shmbus__win_error(e);
  }
  size_t n = strlen(prefix);
  char name[4 * MAX_PATH];
  do {
    /* names too long for us are not ours */
    if (shmbus__win_narrow(fd.cFileName, name, sizeof name) == 0 && strncmp(name, prefix, n) == 0)
      r = fn(name, arg);
  } while (r == 0 && FindNextFileW(h, &fd));
  FindClose(h);
  return r < 0 ? r : 0;
}

uint64_t shmbus__page_size(void) {
  static uint64_t page;
  uint64_t p = shmbus__load64_relaxed(&page);
  if (p == 0) {
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    p = si.dwPageSize ? (uint64_t)si.dwPageSize : 4096;
    shmbus__store64_relaxed(&page, p);
  }
  return p;
}

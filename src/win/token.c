/* SPDX-License-Identifier: Apache-2.0 */
/* Liveness tokens (platform.h): files locked with LockFileEx, which the
 * kernel unlocks when their process dies, and opened delete-on-close, so
 * that the name goes with the last handle however the process ends. */
#include "win.h"

/* The one byte every token locks: far past its end (a lock beyond the end
 * of a file is allowed), so byte 0, the "finished" mark, stays readable
 * and writable while the lock is held. Offset 2^62. */
static OVERLAPPED lock_range(void) {
  OVERLAPPED ov;
  ZeroMemory(&ov, sizeof ov);
  ov.Offset = 0;
  ov.OffsetHigh = 0x40000000u;
  return ov;
}

/* An empty token younger than this is a creator between its open and its
 * write (or one that died there): alive, as on POSIX. */
static const ULONGLONG EMPTY_GRACE_100NS = 10ull * 10000000ull; /* 10 s */

static int no_token(intptr_t h) { return h == 0 || (HANDLE)h == INVALID_HANDLE_VALUE; }

int shmbus__token_create(const shmbus__root *root, const char *name, shmbus__token *out) {
  wchar_t path[SHMBUS__WIN_PATH_MAX];
  out->handle = 0;
  out->owner = (int64_t)GetCurrentProcessId();
  int r = shmbus__win_file_path(root, name, path, SHMBUS__WIN_PATH_MAX);
  if (r) return r;
  SECURITY_ATTRIBUTES sa;
  r = shmbus__win_security(root->mode, SHMBUS__WIN_FILE, &sa);
  if (r) return r;
  /* Shared for read, write and delete: probers open it while we hold it
   * (our handle has DELETE access, so they must share delete, and so must
   * we). Not inheritable (sa): a child would keep the name alive. */
  HANDLE h = CreateFileW(path, GENERIC_READ | GENERIC_WRITE | DELETE,
                         FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, &sa, CREATE_NEW,
                         FILE_ATTRIBUTE_NORMAL | FILE_FLAG_DELETE_ON_CLOSE, NULL);
  DWORD e = GetLastError();
  shmbus__win_security_free(&sa);
  if (h == INVALID_HANDLE_VALUE) return shmbus__win_error(e);
  /* The token has its name before it is locked: a prober may hold its
   * shared lock for an instant. One that keeps it must not keep us: give
   * up after about 100 ms (BUSY, as POSIX). */
  OVERLAPPED ov = lock_range();
  uint64_t give_up = shmbus__now_ns() + 100u * 1000 * 1000;
  r = 0;
  while (!LockFileEx(h, LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ov)) {
    e = GetLastError();
    if (e != ERROR_LOCK_VIOLATION) {
      r = shmbus__win_error(e);
      break;
    }
    if (shmbus__now_ns() >= give_up) {
      r = SHMBUS_ERR_BUSY;
      break;
    }
    shmbus__sleep_ns(1000 * 1000);
    ov = lock_range();
  }
  /* One byte says "finished": a prober that finds a token unlocked and
   * still empty is looking at a creator between open and lock. */
  static const char finished = 1;
  DWORD written = 0;
  if (r == 0 && !WriteFile(h, &finished, 1, &written, NULL))
    r = shmbus__win_error(GetLastError()); /* DISK_FULL: NO_SPACE */
  else if (r == 0 && written != 1)
    r = SHMBUS_ERR_IO;
  if (r) {
    /* Delete-on-close removes the name (once a prober that has it open
     * closes it too); closing releases a lock we took. */
    CloseHandle(h);
    return r;
  }
  out->handle = (intptr_t)h;
  return 0;
}

void shmbus__token_destroy(const shmbus__root *root, const char *name, shmbus__token *token) {
  (void)root;
  (void)name;
  /* No fork on Win32, and handles are not inherited: only its creator
   * holds a token. The check keeps the POSIX contract all the same. */
  if (no_token(token->handle) || token->owner != (int64_t)GetCurrentProcessId()) return;
  HANDLE h = (HANDLE)token->handle;
  /* Unlock first: a lock left to CloseHandle is released "depending on
   * available system resources" (LockFileEx), i.e. possibly late. The node
   * has no ports any more, so a prober that finds it unlocked before the
   * name goes (delete-on-close, at the close below or at a prober's
   * close) harms nobody. */
  OVERLAPPED ov = lock_range();
  UnlockFileEx(h, 0, 1, 0, &ov);
  CloseHandle(h);
  token->handle = 0;
}

/* Whether a token that nobody holds is young and empty: its creator may
 * be between its open and its lock. */
static int young_and_empty(const BY_HANDLE_FILE_INFORMATION *info) {
  if (info->nFileSizeHigh != 0 || info->nFileSizeLow != 0) return 0;
  FILETIME now_ft;
  GetSystemTimeAsFileTime(&now_ft);
  ULARGE_INTEGER now, written;
  now.LowPart = now_ft.dwLowDateTime;
  now.HighPart = now_ft.dwHighDateTime;
  written.LowPart = info->ftLastWriteTime.dwLowDateTime;
  written.HighPart = info->ftLastWriteTime.dwHighDateTime;
  /* A time in the future (a clock set back) counts as young, as on POSIX. */
  return now.QuadPart < written.QuadPart || now.QuadPart - written.QuadPart < EMPTY_GRACE_100NS;
}

int shmbus__token_probe(const shmbus__root *root, const char *name) {
  wchar_t path[SHMBUS__WIN_PATH_MAX];
  int r = shmbus__win_file_path(root, name, path, SHMBUS__WIN_PATH_MAX);
  if (r) return r;
  /* OPEN_REPARSE_POINT opens a link itself (O_NOFOLLOW); without
   * BACKUP_SEMANTICS a directory does not open at all. */
  HANDLE h =
      CreateFileW(path, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                  OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OPEN_REPARSE_POINT, NULL);
  if (h == INVALID_HANDLE_VALUE) {
    DWORD e = GetLastError();
    if (e == ERROR_ACCESS_DENIED) {
      /* A directory under a token's name is no token (NOT_FOUND, as on
       * POSIX). Otherwise another user's token, or one pending deletion
       * (opens of those are denied): PERM, which callers read as alive;
       * a pending deletion is over by the next look. */
      DWORD a = GetFileAttributesW(path);
      if (a != INVALID_FILE_ATTRIBUTES &&
          (a & (FILE_ATTRIBUTE_DIRECTORY | FILE_ATTRIBUTE_REPARSE_POINT)))
        return SHMBUS_ERR_NOT_FOUND;
      return SHMBUS_ERR_PERM;
    }
    /* A file squatted without sharing: not ours to judge, assume alive. */
    if (e == ERROR_SHARING_VIOLATION) return SHMBUS_ERR_PERM;
    r = shmbus__win_error(e);
    return r == SHMBUS_ERR_CORRUPT ? SHMBUS_ERR_NOT_FOUND : r;
  }
  BY_HANDLE_FILE_INFORMATION info;
  if (!GetFileInformationByHandle(h, &info)) {
    r = shmbus__win_error(GetLastError());
    CloseHandle(h);
    return r;
  }
  /* A link (or any reparse point) or a directory is no token. */
  if (info.dwFileAttributes & (FILE_ATTRIBUTE_DIRECTORY | FILE_ATTRIBUTE_REPARSE_POINT)) {
    CloseHandle(h);
    return SHMBUS_ERR_NOT_FOUND;
  }
  OVERLAPPED ov = lock_range();
  if (!LockFileEx(h, LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ov)) {
    DWORD e = GetLastError();
    r = e == ERROR_LOCK_VIOLATION ? SHMBUS__ALIVE : shmbus__win_error(e);
    CloseHandle(h);
    return r;
  }
  r = young_and_empty(&info) ? SHMBUS__ALIVE : SHMBUS__DEAD;
  ov = lock_range();
  UnlockFileEx(h, 0, 1, 0, &ov);
  CloseHandle(h);
  return r;
}

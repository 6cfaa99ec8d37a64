/* SPDX-License-Identifier: Apache-2.0 */
/* What the Win32 backend's files (the .c files of src/win/) share and nothing
 * else sees: the GetLastError translation, UTF-16 names and paths, the
 * per-session state directory, and security descriptors. The same file names
 * as src/posix/ hold the same subsystems: object.c (roots, names, paths,
 * listing, security), segment.c (file mappings), token.c (liveness), wait.c
 * (word waits on named events), notifier.c (wait sets), clock.c, fault.c. */
#ifndef SHMBUS_WIN_H
#define SHMBUS_WIN_H

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include <stddef.h>
#include <wchar.h>

#include "platform.h"

/* Longest UTF-16 path or kernel name built here, in wide characters with
 * the NUL: a root of SHMBUS__ROOT_PATH_MAX bytes, a separator, an object
 * name, and the \\?\ prefix of long paths. */
#define SHMBUS__WIN_PATH_MAX (SHMBUS__ROOT_PATH_MAX + SHMBUS__OBJECT_NAME_MAX + 16)

/* The one GetLastError translation point: a Win32 error as a SHMBUS_ERR_
 * code (ERROR_FILE_NOT_FOUND/PATH_NOT_FOUND: NOT_FOUND; ACCESS_DENIED:
 * PERM, also SHARING_VIOLATION; FILE_EXISTS/ALREADY_EXISTS: EXISTS;
 * DISK_FULL, COMMITMENT_LIMIT: NO_SPACE; NOT_ENOUGH_MEMORY: NOMEM (a
 * section's creation reads it as NO_SPACE: segment.c); INVALID_HANDLE for
 * a name held by another kind of object: CORRUPT; LOCK_VIOLATION: BUSY;
 * others IO). */
int shmbus__win_error(DWORD e);

/* `s` (UTF-8) as UTF-16 in out[cap]. NAME when it does not fit. */
int shmbus__win_widen(const char *s, wchar_t *out, size_t cap);
/* The reverse, for listings. NAME when it does not fit. */
int shmbus__win_narrow(const wchar_t *s, char *out, size_t cap);

/* The kernel object name (sections, events) of object `name` of the
 * root: L"Local\\<name>" for _SHM, L"Local\\shmbus.r<tag>.<name>" for _DIR
 * (root->tag keeps two directories of one domain apart). NAME, INVAL. */
int shmbus__win_kernel_name(const shmbus__root *root, const char *name, wchar_t *out, size_t cap);

/* The file path of object `name`: in the root's directory (_DIR), or in
 * the per-session state directory (_SHM: liveness tokens only). NAME. */
int shmbus__win_file_path(const shmbus__root *root, const char *name, wchar_t *out, size_t cap);

/* The per-session state directory of _SHM roots,
 * %LOCALAPPDATA%\shmbus\s<session id> (GetTempPathW()\shmbus\s<id> when
 * LOCALAPPDATA is not set), created owner-only on first use by
 * shmbus__root_prepare. NAME, IO. */
int shmbus__win_state_dir(wchar_t *out, size_t cap);

/* The kinds of object a security descriptor is made for: their access
 * masks differ (object.c, "mode to DACL"). */
enum { SHMBUS__WIN_SECTION = 0, SHMBUS__WIN_EVENT = 1, SHMBUS__WIN_FILE = 2 };

/* Security attributes (not inheritable) whose protected DACL grants the
 * owner full access and the group and other bits of `mode` to the primary
 * group and to Authenticated Users, for an object of `kind`. Free with
 * shmbus__win_security_free. NOMEM, IO. */
int shmbus__win_security(unsigned mode, int kind, SECURITY_ATTRIBUTES *sa);
void shmbus__win_security_free(SECURITY_ATTRIBUTES *sa);

/* fault.c: removes the guard (as shmbus__guard_remove) and says how its
 * mapping ended, atomically with respect to repairs: 0 intact (unmap it),
 * SHMBUS__WIN_GUARD_REPLACED by private zero pages after a fault (release
 * them with VirtualFree), SHMBUS__WIN_GUARD_LOST (the replacement failed:
 * the range may be somebody else's now, leave it). */
enum { SHMBUS__WIN_GUARD_REPLACED = 1, SHMBUS__WIN_GUARD_LOST = 2 };
int shmbus__win_guard_release(intptr_t guard);

/* Waits for `h` at most `timeout_ns` (negative: no limit), never ending
 * early (a wait may end a little before its milliseconds, at the timer's
 * resolution). 0 when signalled, SHMBUS_ERR_TIMEDOUT, or SHMBUS_ERR_IO
 * when the wait itself failed (the caller must then not spin). */
int shmbus__win_wait(HANDLE h, int64_t timeout_ns);

/* Milliseconds for a Win32 wait, rounded up so that a wait never ends
 * early; INFINITE for a negative timeout. */
static inline DWORD shmbus__win_timeout_ms(int64_t ns) {
  if (ns < 0) return INFINITE;
  uint64_t ms = ((uint64_t)ns + 999999u) / 1000000u;
  return ms >= INFINITE ? INFINITE - 1 : (DWORD)ms;
}

#endif /* SHMBUS_WIN_H */

/* SPDX-License-Identifier: Apache-2.0 */
/* Segments (platform.h): paging-file sections in Local\ for _SHM, mapped
 * files for _DIR (docs/windows-plan.md §2). Both take the contract's named
 * fallback: the object is created under its final name, exclusively, and
 * openers wait for the header's initialised word. */
#include <stdio.h>
#include <string.h>

#include "win.h"

static const DWORD share_all = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE;

/* Writes `len` zero bytes at `offset` (at most 64 KiB). */
static int write_zeros_at(HANDLE f, int64_t offset, DWORD len) {
  static const unsigned char zeros[65536];
  OVERLAPPED at;
  memset(&at, 0, sizeof at);
  at.Offset = (DWORD)offset;
  at.OffsetHigh = (DWORD)((uint64_t)offset >> 32);
  DWORD wrote = 0;
  if (!WriteFile(f, zeros, len, &wrote, &at)) return shmbus__win_error(GetLastError());
  return wrote == len ? 0 : SHMBUS_ERR_NO_SPACE;
}

/* Allocates a file's clusters by writing zeros, where the file system
 * cannot allocate without writing (wine 8 has no FileAllocationInfo:
 * ERROR_CALL_NOT_IMPLEMENTED). The file already has its whole length (set
 * in one step, so that an opener sees NOT_READY or the whole length, never
 * a part it would take for a short segment: a growing write would show
 * every length on the way). */
static int write_zeros(HANDLE f, int64_t length) {
  const int64_t chunk = 65536;
  int r = 0;
  for (int64_t at = 0; r == 0 && at < length; at += chunk)
    r = write_zeros_at(f, at, (DWORD)(length - at < chunk ? length - at : chunk));
  return r;
}

static int set_length(HANDLE f, int64_t length) {
  FILE_END_OF_FILE_INFO eof;
  eof.EndOfFile.QuadPart = length;
  return SetFileInformationByHandle(f, FileEndOfFileInfo, &eof, sizeof eof)
             ? 0
             : shmbus__win_error(GetLastError());
}

/* Default reservation. _DIR: allocates the file's clusters, then sets its
 * length (a full disk fails here, not as a fault in a view later). _SHM
 * (object 0): nothing, SEC_COMMIT reserves the commit at creation. */
static int sys_reserve(intptr_t object, int64_t length) {
  if (object == 0) return 0;
  HANDLE f = (HANDLE)object;
  FILE_ALLOCATION_INFO alloc;
  alloc.AllocationSize.QuadPart = length;
  if (SetFileInformationByHandle(f, FileAllocationInfo, &alloc, sizeof alloc))
    return set_length(f, length);
  DWORD e = GetLastError();
  if (e != ERROR_CALL_NOT_IMPLEMENTED && e != ERROR_NOT_SUPPORTED && e != ERROR_INVALID_FUNCTION)
    return shmbus__win_error(e);
  int r = set_length(f, length);
  return r ? r : write_zeros(f, length);
}

int (*shmbus__sys_reserve)(intptr_t object, int64_t length) = sys_reserve;

/* Maps `size` bytes of section `h` and registers the view. */
static int map_view(HANDLE h, uint64_t size, int writable, shmbus__segment *out) {
  void *p = MapViewOfFile(h, writable ? FILE_MAP_READ | FILE_MAP_WRITE : FILE_MAP_READ, 0, 0,
                          (SIZE_T)size);
  if (p == NULL) {
    DWORD e = GetLastError();
    return e == ERROR_NOT_ENOUGH_MEMORY ? SHMBUS_ERR_NOMEM : SHMBUS_ERR_IO;
  }
  out->base = p;
  out->size = size;
  out->handle = (intptr_t)h;
  out->guard = shmbus__guard_add(p, size);
  return 0;
}

/* A failed CreateFileMappingW of a new paging-file section: the commit
 * limit shows as one of these (SEC_COMMIT charges the whole section). */
static int section_create_error(DWORD e) {
  switch (e) {
  case ERROR_COMMITMENT_LIMIT:
  case ERROR_NOT_ENOUGH_MEMORY:
  case ERROR_OUTOFMEMORY:
  case ERROR_NO_SYSTEM_RESOURCES: return SHMBUS_ERR_NO_SPACE;
  case ERROR_INVALID_HANDLE: return SHMBUS_ERR_EXISTS; /* the name is another kind's */
  default: return shmbus__win_error(e);
  }
}

static int create_section(const shmbus__root *root, const char *name, uint64_t size,
                          shmbus__segment *out) {
  wchar_t wname[SHMBUS__WIN_PATH_MAX];
  int r = shmbus__win_kernel_name(root, name, wname, SHMBUS__WIN_PATH_MAX);
  if (r) return r;
  /* The test hook first, so that a test can inject NO_SPACE. */
  r = shmbus__sys_reserve(0, (int64_t)size);
  if (r) return r;
  SECURITY_ATTRIBUTES sa;
  r = shmbus__win_security(root->mode, SHMBUS__WIN_SECTION, &sa);
  if (r) return r;
  SetLastError(0);
  HANDLE h = CreateFileMappingW(INVALID_HANDLE_VALUE, &sa, PAGE_READWRITE | SEC_COMMIT,
                                (DWORD)(size >> 32), (DWORD)size, wname);
  DWORD e = GetLastError();
  shmbus__win_security_free(&sa);
  if (h == NULL) return section_create_error(e);
  /* An existing section comes back with its own size: not ours. */
  if (e == ERROR_ALREADY_EXISTS) {
    CloseHandle(h);
    return SHMBUS_ERR_EXISTS;
  }
  r = map_view(h, size, 1, out);
  if (r) CloseHandle(h); /* the section goes with its only handle */
  return r;
}

/* Removes a file we created and failed to finish: by handle, so that
 * nobody else's file under the name is hit. If an opener has mapped it
 * meanwhile the deletion fails, and the age rule of liveness.c takes it. */
static void discard_file(HANDLE f) {
  FILE_DISPOSITION_INFO d;
  d.DeleteFile = TRUE;
  SetFileInformationByHandle(f, FileDispositionInfo, &d, sizeof d);
}

static int create_file(const shmbus__root *root, const char *name, uint64_t size,
                       shmbus__segment *out) {
  wchar_t path[SHMBUS__WIN_PATH_MAX];
  int r = shmbus__win_file_path(root, name, path, SHMBUS__WIN_PATH_MAX);
  if (r) return r;
  SECURITY_ATTRIBUTES sa;
  r = shmbus__win_security(root->mode, SHMBUS__WIN_FILE, &sa);
  if (r) return r;
  HANDLE f = CreateFileW(path, GENERIC_READ | GENERIC_WRITE | DELETE, share_all, &sa, CREATE_NEW,
                         FILE_ATTRIBUTE_NORMAL, NULL);
  DWORD e = GetLastError();
  shmbus__win_security_free(&sa);
  if (f == INVALID_HANDLE_VALUE) return shmbus__win_error(e);
  /* Reserves the space before anyone can map a page of it. */
  r = shmbus__sys_reserve((intptr_t)f, (int64_t)size);
  HANDLE h = NULL;
  if (r == 0) {
    /* Unnamed: the file is the name. */
    h = CreateFileMappingW(f, NULL, PAGE_READWRITE, (DWORD)(size >> 32), (DWORD)size, NULL);
    if (h == NULL) r = shmbus__win_error(GetLastError());
  }
  if (r == 0) r = map_view(h, size, 1, out);
  if (r) {
    if (h != NULL) CloseHandle(h);
    discard_file(f);
    CloseHandle(f);
    return r;
  }
  out->file = (intptr_t)f; /* see segment_close */
  return 0;
}

int shmbus__segment_create(const shmbus__root *root, const char *name, uint64_t size,
                           shmbus__segment *out) {
  memset(out, 0, sizeof *out);
  if (size == 0 || size > (uint64_t)INT64_MAX) return SHMBUS_ERR_TOO_LARGE;
  if (size > (uint64_t)SIZE_MAX) return SHMBUS_ERR_NOMEM;
  if (root->backend == SHMBUS_BACKEND_SHM) return create_section(root, name, size, out);
  if (root->backend == SHMBUS_BACKEND_DIR) return create_file(root, name, size, out);
  return SHMBUS_ERR_INVAL;
}

/* Win32 cannot name an existing mapping: every segment was created under
 * its name (the fallback of platform.h). */
int shmbus__segment_publish(const shmbus__root *root, const char *name, shmbus__segment *seg) {
  (void)root, (void)name, (void)seg;
  return 0;
}

/* A name that another process chose the object for: sizes are bounded by
 * [min, max] whatever it claims. */
static int open_section(const shmbus__root *root, const char *name, int writable, uint64_t min,
                        uint64_t max, shmbus__segment *out) {
  wchar_t wname[SHMBUS__WIN_PATH_MAX];
  int r = shmbus__win_kernel_name(root, name, wname, SHMBUS__WIN_PATH_MAX);
  if (r) return r;
  DWORD access = writable ? FILE_MAP_READ | FILE_MAP_WRITE : FILE_MAP_READ;
  HANDLE h = OpenFileMappingW(access, FALSE, wname);
  if (h == NULL) return shmbus__win_error(GetLastError());
  /* The whole section, to learn its size (no Win32 call tells it); if
   * there is not room for a hostile huge one, max bytes are enough. */
  void *p = MapViewOfFile(h, access, 0, 0, 0);
  if (p == NULL && max > 0) p = MapViewOfFile(h, access, 0, 0, (SIZE_T)max);
  if (p == NULL) {
    DWORD e = GetLastError();
    CloseHandle(h);
    return e == ERROR_NOT_ENOUGH_MEMORY ? SHMBUS_ERR_NOMEM : SHMBUS_ERR_IO;
  }
  MEMORY_BASIC_INFORMATION mbi;
  uint64_t size = 0;
  if (VirtualQuery(p, &mbi, sizeof mbi) == 0) {
    r = SHMBUS_ERR_IO;
  } else if (mbi.State != MEM_COMMIT) {
    /* A squatter's SEC_RESERVE section: its pages would fault on touch. */
    r = SHMBUS_ERR_CORRUPT;
  } else {
    /* The committed run from the base (all of a SEC_COMMIT section). */
    size = (uint64_t)mbi.RegionSize;
    if (size < min) r = SHMBUS_ERR_CORRUPT;
  }
  if (r == 0 && size > max) {
    UnmapViewOfFile(p);
    size = max;
    p = MapViewOfFile(h, access, 0, 0, (SIZE_T)size);
    if (p == NULL) r = GetLastError() == ERROR_NOT_ENOUGH_MEMORY ? SHMBUS_ERR_NOMEM : SHMBUS_ERR_IO;
  }
  if (r) {
    if (p != NULL) UnmapViewOfFile(p);
    CloseHandle(h);
    return r;
  }
  out->base = p;
  out->size = size;
  out->handle = (intptr_t)h;
  out->guard = shmbus__guard_add(p, size);
  return 0;
}

/* A failed open of an existing file: a directory (which cannot be opened
 * without backup semantics, hence ACCESS_DENIED) or a reparse point under
 * our name is somebody else's doing, not a missing object. */
static int file_open_error(const wchar_t *path, DWORD e) {
  if (e == ERROR_ACCESS_DENIED) {
    DWORD a = GetFileAttributesW(path);
    if (a != INVALID_FILE_ATTRIBUTES &&
        (a & (FILE_ATTRIBUTE_DIRECTORY | FILE_ATTRIBUTE_REPARSE_POINT)))
      return SHMBUS_ERR_CORRUPT;
  }
  return shmbus__win_error(e);
}

static int open_file(const shmbus__root *root, const char *name, int writable, uint64_t min,
                     uint64_t max, shmbus__segment *out) {
  wchar_t path[SHMBUS__WIN_PATH_MAX];
  int r = shmbus__win_file_path(root, name, path, SHMBUS__WIN_PATH_MAX);
  if (r) return r;
  /* OPEN_REPARSE_POINT: a link is opened itself, never followed (the
   * O_NOFOLLOW of POSIX), and refused below. */
  HANDLE f = CreateFileW(path, GENERIC_READ | (writable ? GENERIC_WRITE : 0), share_all, NULL,
                         OPEN_EXISTING, FILE_FLAG_OPEN_REPARSE_POINT, NULL);
  if (f == INVALID_HANDLE_VALUE) return file_open_error(path, GetLastError());
  BY_HANDLE_FILE_INFORMATION info;
  uint64_t size = 0;
  if (!GetFileInformationByHandle(f, &info)) {
    r = shmbus__win_error(GetLastError());
  } else if (GetFileType(f) != FILE_TYPE_DISK ||
             (info.dwFileAttributes &
              (FILE_ATTRIBUTE_DIRECTORY | FILE_ATTRIBUTE_REPARSE_POINT | FILE_ATTRIBUTE_DEVICE))) {
    r = SHMBUS_ERR_CORRUPT;
  } else {
    size = (uint64_t)info.nFileSizeHigh << 32 | info.nFileSizeLow;
    if (size == 0)
      r = SHMBUS_ERR_NOT_READY;
    else if (size < min)
      r = SHMBUS_ERR_CORRUPT;
  }
  if (r == 0 && size > max) size = max;
  if (r == 0 && size > (uint64_t)SIZE_MAX) r = SHMBUS_ERR_NOMEM;
  HANDLE h = NULL;
  if (r == 0) {
    /* A section of exactly what we map: never the whole of a hostile huge
     * file. Once it exists the file cannot be cut below it (SetEndOfFile
     * refuses a file with a mapped section). */
    h = CreateFileMappingW(f, NULL, writable ? PAGE_READWRITE : PAGE_READONLY, (DWORD)(size >> 32),
                           (DWORD)size, NULL);
    if (h == NULL) r = shmbus__win_error(GetLastError());
  }
  if (r == 0) {
    r = map_view(h, size, writable, out);
    if (r) CloseHandle(h);
  }
  if (r) {
    CloseHandle(f);
    return r;
  }
  out->file = (intptr_t)f; /* see segment_close */
  return 0;
}

int shmbus__segment_open(const shmbus__root *root, const char *name, int writable,
                         uint64_t min_size, uint64_t max_size, shmbus__segment *out) {
  memset(out, 0, sizeof *out);
  if (max_size > (uint64_t)SIZE_MAX) max_size = (uint64_t)SIZE_MAX;
  if (root->backend == SHMBUS_BACKEND_SHM)
    return open_section(root, name, writable, min_size, max_size, out);
  if (root->backend == SHMBUS_BACKEND_DIR)
    return open_file(root, name, writable, min_size, max_size, out);
  return SHMBUS_ERR_INVAL;
}

/* A view cannot be cut down (UnmapViewOfFile takes only the base): the
 * tail stays mapped until close, but no access reaches it. The guard keeps
 * the whole view, which is what a repair replaces. */
int shmbus__segment_shrink(shmbus__segment *seg, uint64_t size) {
  if (seg->base == NULL || size == 0 || size % shmbus__page_size() || size > seg->size)
    return SHMBUS_ERR_INVAL;
  if (size == seg->size) return 0;
  DWORD old;
  if (!VirtualProtect((char *)seg->base + size, (SIZE_T)(seg->size - size), PAGE_NOACCESS, &old))
    return SHMBUS_ERR_IO;
  seg->size = size;
  return 0;
}

int shmbus__segment_protect(const shmbus__segment *seg, uint64_t offset, uint64_t len,
                            int writable) {
  uint64_t page = shmbus__page_size();
  if (seg->base == NULL || offset % page || len % page || offset > seg->size ||
      len > seg->size - offset)
    return SHMBUS_ERR_INVAL;
  if (len == 0) return 0;
  /* A mapping that faulted is private zero pages now: nothing to protect. */
  if (shmbus__segment_faulted(seg)) return 0;
  DWORD old;
  return VirtualProtect((char *)seg->base + offset, (SIZE_T)len,
                        writable ? PAGE_READWRITE : PAGE_READONLY, &old)
             ? 0
             : SHMBUS_ERR_IO;
}

/* Closes a _DIR segment's file, and deletes it if an unlink renamed it to
 * a graveyard name while it was mapped (unlink_file): the last process to
 * let go succeeds, the others fail harmlessly while it is still mapped. */
static void delete_if_buried(HANDLE f) {
  wchar_t path[SHMBUS__WIN_PATH_MAX];
  DWORD n = GetFinalPathNameByHandleW(f, path, SHMBUS__WIN_PATH_MAX, FILE_NAME_NORMALIZED);
  CloseHandle(f);
  if (n == 0 || n >= SHMBUS__WIN_PATH_MAX) return;
  const wchar_t *base = wcsrchr(path, L'\\');
  base = base != NULL ? base + 1 : path;
  /* "shmbus.<domain>.x.<random>": the domain holds no dot. The prefix
   * first: a peer with DELETE access may have renamed the file to
   * anything, even a name shorter than it. */
  if (wcsncmp(base, L"shmbus.", 7) != 0) return;
  const wchar_t *dot = wcschr(base + 7, L'.');
  if (dot != NULL && wcsncmp(dot, L".x.", 3) == 0) DeleteFileW(path);
}

void shmbus__segment_close(shmbus__segment *seg) {
  /* The guard goes before the unmap, and says how the mapping ended. */
  int ended = shmbus__win_guard_release(seg->guard);
  if (seg->base != NULL) {
    if (ended == SHMBUS__WIN_GUARD_REPLACED)
      VirtualFree(seg->base, 0, MEM_RELEASE); /* the repair's zero pages */
    else if (ended == 0)
      UnmapViewOfFile(seg->base);
  }
  /* The view first: a section's name lives while a handle does. */
  if (seg->handle != 0) CloseHandle((HANDLE)seg->handle);
  if (seg->file != 0) delete_if_buried((HANDLE)seg->file);
  memset(seg, 0, sizeof *seg);
}

/* "shmbus.<domain>." of an object name, as its length, or 0. */
static size_t domain_prefix(const char *name) {
  static const char head[] = "shmbus.";
  if (strncmp(name, head, sizeof head - 1) != 0) return 0;
  const char *dot = strchr(name + sizeof head - 1, '.');
  return dot != NULL && dot > name + sizeof head - 1 ? (size_t)(dot - name) + 1 : 0;
}

/* A mapped file can be neither deleted nor made delete-pending (which
 * would keep the name anyway): it is renamed to a graveyard name of its
 * domain, "shmbus.<domain>.x.<random>", and deleted when that is possible
 * (now, or by a later cleanup that unlinks the graveyard name itself). */
static int unlink_file(const shmbus__root *root, const char *name) {
  wchar_t path[SHMBUS__WIN_PATH_MAX];
  int r = shmbus__win_file_path(root, name, path, SHMBUS__WIN_PATH_MAX);
  if (r) return r;
  size_t d = domain_prefix(name);
  /* Not one of a domain's names, or a graveyard's already: just delete. */
  if (d == 0 || strncmp(name + d, "x.", 2) == 0)
    return DeleteFileW(path) ? 0 : shmbus__win_error(GetLastError());
  for (int tries = 0;; tries++) {
    char grave[SHMBUS__OBJECT_NAME_MAX];
    snprintf(grave, sizeof grave, "%.*sx.%016llx", (int)d, name,
             (unsigned long long)shmbus__random64());
    wchar_t gpath[SHMBUS__WIN_PATH_MAX];
    r = shmbus__win_file_path(root, grave, gpath, SHMBUS__WIN_PATH_MAX);
    if (r) return r;
    /* No MOVEFILE_REPLACE_EXISTING: another graveyard file is never hit. */
    if (MoveFileExW(path, gpath, 0)) {
      DeleteFileW(gpath); /* fails while mapped: left for a cleanup */
      return 0;
    }
    DWORD e = GetLastError();
    if ((e != ERROR_ALREADY_EXISTS && e != ERROR_FILE_EXISTS) || tries == 3)
      return shmbus__win_error(e);
  }
}

/* _SHM: a section's name goes with its last handle (platform.h); only
 * tokens have files, in the state directory, and a stale one is deleted
 * here (delete-on-close normally took it with its holder). */
static int unlink_state_file(const shmbus__root *root, const char *name) {
  wchar_t path[SHMBUS__WIN_PATH_MAX];
  int r = shmbus__win_file_path(root, name, path, SHMBUS__WIN_PATH_MAX);
  if (r) return r;
  /* No file: a section's name, which goes with its last handle (done, as
   * far as an unlink can do it). A token's file that cannot be deleted is
   * not counted as removed. */
  if (GetFileAttributesW(path) == INVALID_FILE_ATTRIBUTES) return 0;
  return DeleteFileW(path) ? 0 : shmbus__win_error(GetLastError());
}

int shmbus__segment_unlink(const shmbus__root *root, const char *name) {
  if (root->backend == SHMBUS_BACKEND_SHM) return unlink_state_file(root, name);
  if (root->backend == SHMBUS_BACKEND_DIR) return unlink_file(root, name);
  return SHMBUS_ERR_INVAL;
}

int shmbus__segment_age(const shmbus__root *root, const char *name, uint64_t *seconds) {
  /* Sections have no times. */
  if (root->backend != SHMBUS_BACKEND_DIR) return SHMBUS_ERR_IO;
  wchar_t path[SHMBUS__WIN_PATH_MAX];
  int r = shmbus__win_file_path(root, name, path, SHMBUS__WIN_PATH_MAX);
  if (r) return r;
  WIN32_FILE_ATTRIBUTE_DATA data;
  if (!GetFileAttributesExW(path, GetFileExInfoStandard, &data))
    return shmbus__win_error(GetLastError());
  FILETIME now;
  GetSystemTimeAsFileTime(&now);
  /* 100 ns units since 1601, both. */
  uint64_t t =
      (uint64_t)data.ftLastWriteTime.dwHighDateTime << 32 | data.ftLastWriteTime.dwLowDateTime;
  uint64_t n = (uint64_t)now.dwHighDateTime << 32 | now.dwLowDateTime;
  *seconds = n > t ? (n - t) / 10000000u : 0;
  return 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Surviving a mapping whose pages cannot be read (platform.h, "faults").
 * A section cannot shrink on Windows, but a view of a file can still fail
 * to page in: a network drive, a device error, a sparse or compressed file
 * on a full disk (and, under wine, a file that a Unix process truncated).
 * The access then raises EXCEPTION_IN_PAGE_ERROR, which
 * Microsoft's guidance is to handle for file views ("Reading and Writing
 * From a File View"). As on POSIX (src/posix/fault.c), a vectored handler
 * replaces the whole mapping that faulted by zero pages at the same
 * address, flags it and lets the access complete; the core then reports
 * SHMBUS_ERR_CORRUPT for what lived there.
 *
 * The replacement is UnmapViewOfFile then VirtualAlloc at the same base:
 * another thread may take the range in between, and the mapping is then
 * flagged but the exception goes on to the next handler (a known gap; the
 * placeholder APIs of Windows 10 1803 would close it).
 *
 * The registry is the POSIX one: fixed blocks of entries, linked, never
 * freed; an entry is claimed by compare-and-swap on `used`, so adding and
 * removing take no lock. A vectored handler runs on the faulting thread in
 * ordinary context, so repairs themselves are serialised by a lock (two
 * threads faulting in one view must not both replace it).
 */
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "win.h"

enum { GUARD_BLOCK = 255 };

typedef struct guard_entry {
  uint64_t base;
  uint64_t size;
  uint32_t used;    /* 1 while the entry describes a live mapping        */
  uint32_t faulted; /* sticky once set: REPLACED, or LOST (see repair)   */
} guard_entry;

typedef struct guard_block {
  guard_entry e[GUARD_BLOCK];
  uint64_t next; /* the next block's address, 0 at the end */
} guard_block;

/* `faulted`: zero pages replaced the view, or the range was taken by
 * somebody else between the unmap and the VirtualAlloc (win.h). */
enum { REPLACED = SHMBUS__WIN_GUARD_REPLACED, LOST = SHMBUS__WIN_GUARD_LOST };

static guard_block first_block;
static uint32_t fault_epoch;
static PVOID installed;   /* our vectored handler, NULL when none */
static int disabled = -1; /* -1: not decided yet (environment, API) */
static SRWLOCK install_lock = SRWLOCK_INIT;
static SRWLOCK repair_lock = SRWLOCK_INIT;

static guard_block *next_block(guard_block *b) {
  /* Pairs with the compare-and-swap that links a block in guard_add. */
  return (guard_block *)(uintptr_t)shmbus__load64_acquire(&b->next);
}

/* Whether the page at `addr` is committed with a protection that allows
 * the access (ExceptionInformation[0]: 0 read, 1 write, 8 execute). An
 * access violation there is no protection fault but a page that could not
 * be read in: wine raises EXCEPTION_ACCESS_VIOLATION, not
 * EXCEPTION_IN_PAGE_ERROR, for the SIGBUS of a file truncated under a view
 * by a Unix process. Our PAGE_NOACCESS tails and read-only ranges are real
 * protection faults, and stay the application's. */
static int access_permitted(uintptr_t addr, ULONG_PTR kind) {
  MEMORY_BASIC_INFORMATION mbi;
  if (VirtualQuery((void *)addr, &mbi, sizeof mbi) == 0 || mbi.State != MEM_COMMIT ||
      (mbi.Protect & (PAGE_GUARD | PAGE_NOACCESS)))
    return 0;
  DWORD writable =
      PAGE_READWRITE | PAGE_WRITECOPY | PAGE_EXECUTE_READWRITE | PAGE_EXECUTE_WRITECOPY;
  DWORD readable = writable | PAGE_READONLY | PAGE_EXECUTE_READ;
  if (kind == 0) return (mbi.Protect & readable) != 0;
  if (kind == 1) return (mbi.Protect & writable) != 0;
  return 0;
}

/* Replaces the mapping holding `addr` by zero pages. 1 if it was ours and
 * the access may be retried. `av`: the fault was an access violation,
 * which is ours only if the page allows the access (access_permitted).
 * Judged under the lock, after the look for an earlier repair: a thread
 * that touches the view while another replaces it meets free memory, and
 * must wait for the zero pages rather than pass the exception on. */
static int repair(uintptr_t addr, int av, ULONG_PTR kind) {
  int r = 0;
  AcquireSRWLockExclusive(&repair_lock);
  for (guard_block *b = &first_block; b != NULL && r == 0; b = next_block(b)) {
    for (int i = 0; i < GUARD_BLOCK; i++) {
      guard_entry *e = &b->e[i];
      /* Pairs with the store-release of `used` in shmbus__guard_add. */
      if (shmbus__load32_acquire(&e->used) != 1u) continue;
      uintptr_t base = (uintptr_t)shmbus__load64_acquire(&e->base);
      uintptr_t size = (uintptr_t)shmbus__load64_acquire(&e->size);
      if (addr < base || addr - base >= size) continue;
      /* Another thread faulted here first: its zero pages are in place
       * (REPLACED), or there is nothing we can do (LOST). */
      uint32_t f = shmbus__load32_acquire(&e->faulted);
      if (f) {
        r = f == REPLACED ? 1 : -1;
        break;
      }
      if (av && !access_permitted(addr, kind)) {
        r = -1; /* a real protection fault: the application's */
        break;
      }
      /* Writable, so that a publisher's stores into what was its segment
       * land in private memory instead of faulting again. */
      UnmapViewOfFile((void *)base);
      void *p = VirtualAlloc((void *)base, size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
      r = p == (void *)base ? 1 : -1;
      shmbus__store32_release(&e->faulted, r == 1 ? REPLACED : LOST);
      shmbus__fetch_add32(&fault_epoch, 1u);
      break;
    }
  }
  ReleaseSRWLockExclusive(&repair_lock);
  return r == 1;
}

static LONG CALLBACK on_exception(EXCEPTION_POINTERS *ep) {
  const EXCEPTION_RECORD *rec = ep->ExceptionRecord;
  DWORD code = rec->ExceptionCode;
  if ((code != EXCEPTION_IN_PAGE_ERROR && code != EXCEPTION_ACCESS_VIOLATION) ||
      rec->NumberParameters < 2)
    return EXCEPTION_CONTINUE_SEARCH;
  /* ExceptionInformation[1] is the address that could not be accessed. */
  uintptr_t addr = (uintptr_t)rec->ExceptionInformation[1];
  return repair(addr, code == EXCEPTION_ACCESS_VIOLATION, rec->ExceptionInformation[0])
             ? EXCEPTION_CONTINUE_EXECUTION
             : EXCEPTION_CONTINUE_SEARCH;
}

static int want_handler(void) {
  if (disabled < 0) {
    disabled = shmbus__env_off("SHMBUS_SIGBUS");
  }
  return !disabled;
}

static void install_locked(void) {
  if (installed != NULL || !want_handler()) return;
  /* The handler outlives any FreeLibrary of this DLL: the module stays
   * loaded once it is installed (and with it the notifier's cache). */
  HMODULE self;
  (void)GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_PIN,
                           (LPCWSTR)(uintptr_t)on_exception, &self);
  /* First in the chain: an application's handler must not see (and
   * perhaps kill the process for) a fault that we repair. */
  installed = AddVectoredExceptionHandler(1, on_exception);
}

int shmbus_set_sigbus_handler(int enable) {
  AcquireSRWLockExclusive(&install_lock);
  int r = 0;
  if (enable) {
    disabled = 0;
    install_locked();
    if (installed == NULL) r = SHMBUS_ERR_IO;
  } else {
    disabled = 1;
    if (installed != NULL && !RemoveVectoredExceptionHandler(installed)) r = SHMBUS_ERR_IO;
    if (r == 0) installed = NULL;
  }
  ReleaseSRWLockExclusive(&install_lock);
  return r;
}

/* The application's own handler says an access faulted: not a protection
 * question, so judged as an in-page error. */
int shmbus_sigbus_repair(void *addr) { return repair((uintptr_t)addr, 0, 0); }

intptr_t shmbus__guard_add(void *base, uint64_t size) {
  AcquireSRWLockExclusive(&install_lock);
  install_locked();
  ReleaseSRWLockExclusive(&install_lock);
  for (guard_block *b = &first_block;; b = next_block(b)) {
    for (int i = 0; i < GUARD_BLOCK; i++) {
      guard_entry *e = &b->e[i];
      uint32_t expected = 0;
      if (shmbus__load32_relaxed(&e->used) || !shmbus__cas32(&e->used, &expected, 2u)) continue;
      /* 2 while we fill it: the handler skips entries that are not 1. The
       * fill under the repair lock: a repair never reads half of it. */
      AcquireSRWLockExclusive(&repair_lock);
      shmbus__store64_release(&e->base, (uint64_t)(uintptr_t)base);
      shmbus__store64_release(&e->size, size);
      shmbus__store32_release(&e->faulted, 0u);
      /* Pairs with the load-acquire of `used` in repair. */
      shmbus__store32_release(&e->used, 1u);
      ReleaseSRWLockExclusive(&repair_lock);
      return (intptr_t)e;
    }
    if (next_block(b) == NULL) {
      void *p = VirtualAlloc(NULL, sizeof(guard_block), MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
      if (p == NULL) return 0; /* unguarded: it still works, unprotected */
      uint64_t expected = 0;
      if (!shmbus__cas64(&b->next, &expected, (uint64_t)(uintptr_t)p))
        VirtualFree(p, 0, MEM_RELEASE);
    }
  }
}

/* A guard is its entry's address (0: unguarded); blocks are never freed. */
static guard_entry *guard_of(intptr_t guard) { return (guard_entry *)guard; }

int shmbus__win_guard_release(intptr_t guard) {
  guard_entry *e = guard_of(guard);
  if (e == NULL) return 0;
  /* Under the repair lock: no repair is half done on the entry, and none
   * starts on it once it is free for the next mapping. */
  AcquireSRWLockExclusive(&repair_lock);
  int f = (int)shmbus__load32_acquire(&e->faulted);
  shmbus__store32_release(&e->used, 0u);
  ReleaseSRWLockExclusive(&repair_lock);
  return f;
}

void shmbus__guard_remove(intptr_t guard) { (void)shmbus__win_guard_release(guard); }

int shmbus__guard_faulted(intptr_t guard) {
  guard_entry *e = guard_of(guard);
  return e != NULL && shmbus__load32_acquire(&e->faulted) != 0;
}

uint32_t shmbus__fault_epoch(void) { return shmbus__load32_relaxed(&fault_epoch); }

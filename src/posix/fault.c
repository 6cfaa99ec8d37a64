/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Surviving a peer that truncates a segment we have mapped (platform.h,
 * "faults"). Touching a page of a MAP_SHARED mapping past the end of its
 * file raises SIGBUS. As Wayland compositors do for clients that shrink
 * their pools (libwayland-server's wl_shm SIGBUS handler, Mir, KWin), the
 * handler maps anonymous zero pages over the whole mapping that faulted
 * (MAP_FIXED), flags it and returns: the access completes, reading zeros,
 * and the core reports SHMBUS_ERR_CORRUPT for what lived there.
 *
 * The registry of guarded mappings is read by the signal handler, so it
 * holds no locks and allocates with mmap only: fixed blocks of entries,
 * linked, never freed; an entry is claimed by compare-and-swap on `used`.
 * A fault outside every registered mapping goes to the handler that was
 * installed before ours (or to the default action, which kills as before).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "platform.h"

enum { GUARD_BLOCK = 255 };

typedef struct guard_entry {
  uintptr_t base;
  uintptr_t size;
  uint32_t used;    /* 1 while the entry describes a live mapping        */
  uint32_t faulted; /* 1 once zero pages replaced the mapping (sticky)   */
} guard_entry;

typedef struct guard_block {
  guard_entry e[GUARD_BLOCK];
  struct guard_block *next;
} guard_block;

static guard_block first_block;
static uint32_t fault_epoch;
static struct sigaction previous;
static int installed;
static int disabled = -1; /* -1: not decided yet (environment, API)     */
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* Replaces the mapping holding `addr` by zero pages. 1 if it was ours.
 * Async-signal-safe: atomic loads, mmap, nothing else. */
static int repair(uintptr_t addr) {
  for (guard_block *b = &first_block; b != NULL; b = LOAD(&b->next)) {
    for (int i = 0; i < GUARD_BLOCK; i++) {
      guard_entry *e = &b->e[i];
      /* Pairs with the store-release of `used` in shmbus__guard_add. */
      if (!LOAD(&e->used)) continue;
      uintptr_t base = LOAD(&e->base), size = LOAD(&e->size);
      if (addr < base || addr - base >= size) continue;
      /* Writable, so that a publisher's stores into what was its segment
       * land in private memory instead of faulting again. */
      void *p = mmap((void *)base, (size_t)size, PROT_READ | PROT_WRITE,
                     MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) return 0;
      STORE(&e->faulted, 1u);
      __atomic_fetch_add(&fault_epoch, 1u, __ATOMIC_ACQ_REL);
      return 1;
    }
  }
  return 0;
}

static void on_sigbus(int sig, siginfo_t *info, void *ctx) {
  int saved = errno;
  /* si_code <= 0: sent by a process (kill, sigqueue), not a fault: no
   * access to complete; it is the previous handler's, or kills. */
  if (info->si_code <= 0 && !(previous.sa_flags & SA_SIGINFO) &&
      (previous.sa_handler == SIG_DFL || previous.sa_handler == SIG_IGN)) {
    if (previous.sa_handler == SIG_DFL) {
      signal(SIGBUS, SIG_DFL);
      raise(SIGBUS); /* blocked in here: delivered, and fatal, on return */
    }
    errno = saved;
    return;
  }
  if (info->si_code > 0 && repair((uintptr_t)info->si_addr)) {
    errno = saved;
    return;
  }
  errno = saved;
  /* Not ours: whatever was there before us decides. */
  if (previous.sa_flags & SA_SIGINFO) {
    previous.sa_sigaction(sig, info, ctx);
  } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(sig);
  } else {
    /* Default action (an ignored SIGBUS from a fault would only repeat):
     * returning re-executes the access, which now kills as it would have. */
    signal(SIGBUS, SIG_DFL);
  }
}

static int want_handler(void) {
  if (disabled < 0) {
    disabled = shmbus__env_off("SHMBUS_SIGBUS");
  }
  return !disabled;
}

static void install_locked(void) {
  if (installed || !want_handler()) return;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGBUS, &sa, &previous) == 0) installed = 1;
}

int shmbus_set_sigbus_handler(int enable) {
  pthread_mutex_lock(&install_lock);
  int r = 0;
  if (enable) {
    disabled = 0;
    install_locked();
    if (!installed) r = SHMBUS_ERR_IO;
  } else {
    disabled = 1;
    if (installed && sigaction(SIGBUS, &previous, NULL) != 0) r = SHMBUS_ERR_IO;
    if (r == 0) installed = 0;
  }
  pthread_mutex_unlock(&install_lock);
  return r;
}

int shmbus_sigbus_repair(void *addr) { return repair((uintptr_t)addr); }

intptr_t shmbus__guard_add(void *base, uint64_t size) {
  pthread_mutex_lock(&install_lock);
  install_locked();
  pthread_mutex_unlock(&install_lock);
  for (guard_block *b = &first_block;; b = LOAD(&b->next)) {
    for (int i = 0; i < GUARD_BLOCK; i++) {
      guard_entry *e = &b->e[i];
      uint32_t expected = 0;
      if (LOAD(&e->used) || !__atomic_compare_exchange_n(&e->used, &expected, 2u, 0,
                                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        continue;
      /* 2 while we fill it: the handler skips entries that are not 1. */
      STORE(&e->base, (uintptr_t)base);
      STORE(&e->size, (uintptr_t)size);
      STORE(&e->faulted, 0u);
      /* Pairs with the load-acquire of `used` in repair. */
      STORE(&e->used, 1u);
      return (intptr_t)e;
    }
    if (LOAD(&b->next) == NULL) {
      void *p = mmap(NULL, sizeof(guard_block), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
      if (p == MAP_FAILED) return 0; /* unguarded: it still works, unprotected */
      guard_block *expected = NULL;
      if (!__atomic_compare_exchange_n(&b->next, &expected, (guard_block *)p, 0, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE))
        munmap(p, sizeof(guard_block));
    }
  }
}

/* A guard is its entry's address (0: unguarded); blocks are never freed. */
static guard_entry *guard_of(intptr_t guard) { return (guard_entry *)guard; }

void shmbus__guard_remove(intptr_t guard) {
  guard_entry *e = guard_of(guard);
  if (e != NULL) STORE(&e->used, 0u);
}

int shmbus__guard_faulted(intptr_t guard) {
  guard_entry *e = guard_of(guard);
  return e != NULL && LOAD(&e->faulted) != 0;
}

uint32_t shmbus__fault_epoch(void) { return __atomic_load_n(&fault_epoch, __ATOMIC_RELAXED); }

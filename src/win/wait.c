/* SPDX-License-Identifier: Apache-2.0 */
/* Waits on a shared 32-bit word (platform.h): WaitOnAddress wakes only
 * threads of its own process, so each waitable word has a named auto-reset
 * event, created by its one sleeper and opened lazily by its wakers. An
 * auto-reset event is binary: wakers that pile up before the sleeper runs
 * cost one return, not one each (a semaphore would count them). */
#include <string.h>

#include "atomic.h"
#include "win.h"

/* The handle is swapped in with a 64-bit compare-and-swap. */
_Static_assert(sizeof(intptr_t) == sizeof(uint64_t), "Win32 backend: 64-bit handles only");

void shmbus__waitable_init(shmbus__waitable *w, const shmbus__root *root, const char *name) {
  w->handle = 0;
  w->root = root;
  size_t n = strlen(name);
  if (n >= sizeof w->name) n = sizeof w->name - 1; /* never: names.c stays within */
  memcpy(w->name, name, n);
  w->name[n] = '\0';
}

int shmbus__waitable_open(shmbus__waitable *w) {
  if (w->handle != 0) return 0;
  if (w->root == NULL) return SHMBUS_ERR_INVAL; /* never initialised */
  wchar_t kname[SHMBUS__WIN_PATH_MAX];
  int r = shmbus__win_kernel_name(w->root, w->name, kname, SHMBUS__WIN_PATH_MAX);
  if (r) return r;
  SECURITY_ATTRIBUTES sa;
  r = shmbus__win_security(w->root->mode, SHMBUS__WIN_EVENT, &sa);
  if (r) return r;
  /* Creates the event or opens the existing one (a slot's earlier
   * sleeper's, kept alive by a waker's handle). Only the rights we use, so
   * that an event made by another user of the domain, whose DACL grants
   * the group just these, opens too. Another kind of object under the
   * name: INVALID_HANDLE, CORRUPT. */
  HANDLE h = CreateEventExW(&sa, kname, 0, SYNCHRONIZE | EVENT_MODIFY_STATE);
  DWORD e = GetLastError();
  shmbus__win_security_free(&sa);
  if (h == NULL) return shmbus__win_error(e);
  w->handle = (intptr_t)h;
  return 0;
}

void shmbus__waitable_close(shmbus__waitable *w) {
  HANDLE h = (HANDLE)(intptr_t)shmbus__load64_acquire((const uint64_t *)&w->handle);
  if (h != NULL) CloseHandle(h);
  w->handle = 0;
}

/* Without an event (its open failed): a short sleep, late but never lost,
 * since the caller looks at the word again. TIMEDOUT once the whole
 * timeout passed. */
static int slice(const uint32_t *word, uint32_t expected, int64_t timeout_ns) {
  if (timeout_ns == 0) return SHMBUS_ERR_TIMEDOUT;
  uint64_t start = shmbus__now_ns();
  Sleep(1);
  if (shmbus__load32_acquire(word) != expected) return 0;
  /* Sleep(1) may end early (below the timer's resolution): measure. */
  if (timeout_ns > 0 && shmbus__now_ns() - start >= (uint64_t)timeout_ns)
    return SHMBUS_ERR_TIMEDOUT;
  return 0;
}

int shmbus__word_wait(shmbus__waitable *w, uint32_t *word, uint32_t expected, int64_t timeout_ns) {
  /* Pairs with the waker's fetch-add (wait.h, shmbus__wake). */
  if (shmbus__load32_acquire(word) != expected) return 0;
  HANDLE h = (HANDLE)w->handle;
  if (h == NULL) return slice(word, expected, timeout_ns);
  /* A signal left by a wake-up that found us awake, or sent by a peer
   * (which may even have made the event manual-reset before we opened
   * it), is stale: drop it, then look at the word once more. No wake-up
   * is lost: a waker changes the word before it signals, so one that
   * signalled before the reset shows in the word, and one after leaves
   * the event signalled. */
  if (!ResetEvent(h)) return slice(word, expected, timeout_ns);
  if (shmbus__load32_acquire(word) != expected) return 0;
  int r = shmbus__win_wait(h, timeout_ns);
  /* A failed wait must not turn the caller's loop into a spin. */
  return r == SHMBUS_ERR_IO ? slice(word, expected, timeout_ns) : r;
}

/* The waker's first look: opens the sleeper's event if it exists. None
 * means nobody sleeps yet; the next wake looks again. A publisher is one
 * thread, but reapers wake through waitables of their own: the handle is
 * swapped in with a compare-and-swap all the same, and a loser closes its
 * duplicate. */
static HANDLE lookup(shmbus__waitable *w) {
  wchar_t kname[SHMBUS__WIN_PATH_MAX];
  if (w->root == NULL ||
      shmbus__win_kernel_name(w->root, w->name, kname, SHMBUS__WIN_PATH_MAX) != 0)
    return NULL;
  /* EVENT_MODIFY_STATE only: SetEvent is all a waker does. */
  HANDLE h = OpenEventW(EVENT_MODIFY_STATE, FALSE, kname);
  if (h == NULL) return NULL;
  uint64_t none = 0;
  if (shmbus__cas64((uint64_t *)&w->handle, &none, (uint64_t)(intptr_t)h)) return h;
  CloseHandle(h);
  return (HANDLE)(intptr_t)none; /* the winner's */
}

void shmbus__word_wake(shmbus__waitable *w, uint32_t *word) {
  (void)word; /* the event stands for the word */
  /* Pairs with the compare-and-swap in lookup. */
  HANDLE h = (HANDLE)(intptr_t)shmbus__load64_acquire((const uint64_t *)&w->handle);
  if (h == NULL && (h = lookup(w)) == NULL) return;
  SetEvent(h);
}

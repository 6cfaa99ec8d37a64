/* SPDX-License-Identifier: Apache-2.0 */
/* Notifiers (platform.h): what a wait set sleeps on and publishers poke, a
 * named manual-reset event "Local\shmbus.<domain>.w.<16 hex>". Manual
 * reset makes it level-triggered like a readable descriptor: the user's
 * WaitForMultipleObjects does not consume it, and shmbus_waitset_wait
 * resets it (drain) before it arms and looks (include/shmbus.h). */
#include <string.h>

#include "win.h"

/* The kernel name of notifier `id`, built by hand: it runs inside
 * shmbus_waitset_trigger. The domain is 1 to SHMBUS_DOMAIN_MAX ASCII
 * letters, digits, '_' and '-' (names.c): widening is a copy. */
enum { NOTIFIER_NAME_MAX = 8 + 7 + SHMBUS_DOMAIN_MAX + 3 + 16 + 1 };

static void notifier_name(const char *domain, uint64_t id, wchar_t out[NOTIFIER_NAME_MAX]) {
  static const char hex[] = "0123456789abcdef";
  wchar_t *p = out;
  const char *parts[3] = {"Local\\shmbus.", domain, ".w."};
  for (int i = 0; i < 3; i++)
    for (const char *q = parts[i]; *q && p < out + NOTIFIER_NAME_MAX - 17; q++)
      *p++ = (wchar_t)(unsigned char)*q;
  for (int shift = 60; shift >= 0; shift -= 4) *p++ = (wchar_t)hex[(id >> shift) & 15];
  *p = L'\0';
}

/* The node's mode decides who may signal the set (publishers of other
 * users of a shared domain must): object.c maps its group and other bits
 * to SYNCHRONIZE | EVENT_MODIFY_STATE. */
int shmbus__notifier_open(const char *domain, unsigned mode, uint64_t id, shmbus__notifier *out) {
  wchar_t name[NOTIFIER_NAME_MAX];
  out->handle = 0;
  notifier_name(domain, id, name);
  SECURITY_ATTRIBUTES sa;
  int r = shmbus__win_security(mode, SHMBUS__WIN_EVENT, &sa);
  if (r) return r;
  HANDLE h = CreateEventExW(&sa, name, CREATE_EVENT_MANUAL_RESET, SYNCHRONIZE | EVENT_MODIFY_STATE);
  DWORD e = GetLastError();
  shmbus__win_security_free(&sa);
  /* Exclusive: an existing event may be a peer's, primed or reset at its
   * will. Any object under the name (an event, one we may not open, or
   * another kind) means the id is taken: EXISTS, and the caller draws
   * another. */
  if (h != NULL && e == ERROR_ALREADY_EXISTS) {
    CloseHandle(h);
    return SHMBUS_ERR_EXISTS;
  }
  if (h == NULL)
    return e == ERROR_ALREADY_EXISTS || e == ERROR_ACCESS_DENIED || e == ERROR_INVALID_HANDLE
               ? SHMBUS_ERR_EXISTS
               : shmbus__win_error(e);
  out->handle = (intptr_t)h;
  return 0;
}

void shmbus__notifier_close(shmbus__notifier *n) {
  if (n->handle != 0 && (HANDLE)n->handle != INVALID_HANDLE_VALUE) CloseHandle((HANDLE)n->handle);
  n->handle = 0;
}

int shmbus__notifier_fd(const shmbus__notifier *n) {
  (void)n;
  return SHMBUS_ERR_UNSUPPORTED;
}

intptr_t shmbus__notifier_os_handle(const shmbus__notifier *n) { return n->handle; }

/* Consumes every pending wake-up at once: one reset, however many were
 * sent (a flood cannot keep us here). */
void shmbus__notifier_drain(shmbus__notifier *n) { ResetEvent((HANDLE)n->handle); }

int shmbus__notifier_wait(shmbus__notifier *n, int64_t timeout_ns) {
  int r = shmbus__win_wait((HANDLE)n->handle, timeout_ns);
  if (r != SHMBUS_ERR_IO) return r;
  /* Never: our own handle. Do not let the caller spin. */
  Sleep(1);
  return 0;
}

/* Nothing to make ahead: there are no signal handlers to serve, and the
 * cache below opens events when it first needs them. */
int shmbus__notify_init(void) { return 0; }

/* Senders keep the events they poke open: one OpenEventW per wait set,
 * not per wake-up. 64 entries, evicted round-robin. The lock is held
 * across SetEvent, so that an eviction never closes a handle that
 * another thread is signalling. A handle kept here keeps a closed set's
 * event (and its name) alive until its eviction; ids are random, so
 * nobody needs that name again. */
enum { CACHE_SIZE = 64 };
typedef struct notify_entry {
  uint64_t id;
  HANDLE handle; /* NULL: empty */
  char domain[SHMBUS_DOMAIN_MAX + 1];
} notify_entry;
static notify_entry cache[CACHE_SIZE];
static unsigned cache_next; /* the next victim */
static SRWLOCK cache_lock = SRWLOCK_INIT;

static int same_domain(const char *a, const char *b) {
  for (int i = 0; i <= SHMBUS_DOMAIN_MAX; i++) {
    if (a[i] != b[i]) return 0;
    if (a[i] == '\0') return 1;
  }
  return 0; /* longer than any domain: never stored */
}

static HANDLE cache_find(const char *domain, uint64_t id) {
  for (int i = 0; i < CACHE_SIZE; i++)
    if (cache[i].handle != NULL && cache[i].id == id && same_domain(cache[i].domain, domain))
      return cache[i].handle;
  return NULL;
}

void shmbus__notify(const char *domain, uint64_t id) {
  AcquireSRWLockShared(&cache_lock);
  HANDLE h = cache_find(domain, id);
  if (h != NULL) SetEvent(h);
  ReleaseSRWLockShared(&cache_lock);
  if (h != NULL) return;
  /* A miss: open outside the lock (a slow call). No event means a forged
   * id or a set that is gone: nothing is sent, as by a sendto to nowhere;
   * that costs one failed open per wake-up epoch. */
  wchar_t name[NOTIFIER_NAME_MAX];
  notifier_name(domain, id, name);
  HANDLE mine = OpenEventW(EVENT_MODIFY_STATE, FALSE, name);
  if (mine == NULL) return;
  size_t len = 0;
  while (len <= SHMBUS_DOMAIN_MAX && domain[len] != '\0') len++;
  if (len > SHMBUS_DOMAIN_MAX) { /* never (names.c): not cached, a prefix could match */
    SetEvent(mine);
    CloseHandle(mine);
    return;
  }
  AcquireSRWLockExclusive(&cache_lock);
  h = cache_find(domain, id);
  if (h == NULL) {
    notify_entry *e = &cache[cache_next];
    cache_next = (cache_next + 1) % CACHE_SIZE;
    if (e->handle != NULL) CloseHandle(e->handle);
    e->id = id;
    e->handle = mine;
    memcpy(e->domain, domain, len + 1);
    h = mine;
    mine = NULL;
  }
  SetEvent(h);
  ReleaseSRWLockExclusive(&cache_lock);
  if (mine != NULL) CloseHandle(mine); /* another thread cached it first */
}

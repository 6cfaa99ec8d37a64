/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operating-system contract. The portable core (the .c files in src/) uses only what
 * is declared here; each OS folder (src/posix, src/win) implements all of it
 * with the semantics written beside each declaration. There is no OS #ifdef
 * in the core.
 *
 * Every function returns 0 or a negative SHMBUS_ERR_* code; the translation
 * from errno / GetLastError happens once, inside the implementation.
 */
#ifndef SHMBUS_PLATFORM_H
#define SHMBUS_PLATFORM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shmbus.h"

/* Longest directory path accepted for SHMBUS_BACKEND_DIR, in bytes. */
#define SHMBUS__ROOT_PATH_MAX 1024
/* Longest object name the core builds (see names.c), with the NUL. */
#define SHMBUS__OBJECT_NAME_MAX 96

/* Where segments live: chosen per node, immutable afterwards. */
typedef struct shmbus__root {
  int backend;                     /* SHMBUS_BACKEND_SHM or _DIR          */
  unsigned mode;                   /* permission bits of created objects
                                    * (POSIX bits; Win32 maps them to a
                                    * DACL, src/win/object.c)            */
  char dir[SHMBUS__ROOT_PATH_MAX]; /* SHMBUS_BACKEND_DIR only             */
  uint64_t tag;                    /* filled by shmbus__root_prepare: 0 on
                                    * POSIX; Win32 _DIR: a hash of the
                                    * directory's final path, which names
                                    * the root's kernel objects (events)  */
} shmbus__root;

/* A mapped segment. `base` is page aligned; `size` is the mapped length.
 * `draft` is private to the implementation: non-zero while a created
 * segment has no name yet (see shmbus__segment_publish). */
typedef struct shmbus__segment {
  void *base;
  uint64_t size;
  intptr_t draft;
  intptr_t guard;  /* its entry in the fault registry (faults below)    */
  intptr_t handle; /* private to the implementation. Win32: the section
                    * handle, kept until close (a section's name lives
                    * only while a handle to it is open)                  */
  intptr_t file;   /* private. Win32 _DIR: the file, kept until close to
                    * learn whether an unlink renamed it meanwhile        */
} shmbus__segment;

/* Checks that `root` is usable and fills what the OS needs (root->tag):
 * for _DIR that `dir` is an existing, searchable directory (INVAL), that
 * we may create objects in it (PERM). Win32 also refuses a mode without
 * owner read and write (INVAL) and creates the per-session state
 * directory of _SHM's liveness tokens (IO). Errors: INVAL, PERM, IO. */
int shmbus__root_prepare(shmbus__root *root);

/* Test hook (SQLite's habit): the space reservation goes through this
 * pointer, so a test can make it fail (NO_SPACE) without a full disk. It
 * returns 0 or a SHMBUS_ERR_ code. `object` is the implementation's handle
 * of the new object (POSIX: its descriptor, posix_fallocate; Win32 _DIR:
 * the file handle; Win32 _SHM: 0, called before the section is created,
 * whose SEC_COMMIT does the real reservation). Production code never
 * changes it. */
extern int (*shmbus__sys_reserve)(intptr_t object, int64_t length);

/* Creates an object of `size` bytes that is to be called `name`, with
 * root->mode permissions, reserves the space (a full file system gives
 * NO_SPACE now, never SIGBUS later) and maps it read-write. The memory reads
 * as zeros. Nobody can open it before shmbus__segment_publish gives it its
 * name, so the creator initialises it first and a creator that dies before
 * publishing leaves nothing behind. On failure nothing is left behind.
 * Where the OS cannot create unnamed objects (POSIX shared memory outside
 * Linux, file systems without O_TMPFILE) the object is created under `name`
 * at once, exclusively (EXISTS), and publishing does nothing: openers then
 * wait for the header's initialised word (segment.c).
 * Errors: EXISTS, NO_SPACE, PERM, NAME, NOMEM, IO. */
int shmbus__segment_create(const shmbus__root *root, const char *name, uint64_t size,
                           shmbus__segment *out);

/* Gives a created segment its name, atomically and exclusively: an opener
 * finds the whole initialised object or nothing. EXISTS when the name is
 * taken (the segment stays mapped, unnamed; close it). Publishing a segment
 * that already has its name does nothing. Errors: EXISTS, PERM, NAME, IO.
 * Win32 cannot name an existing mapping: it takes the fallback above, and
 * a mapping whose creator died goes with the last handle to it. */
int shmbus__segment_publish(const shmbus__root *root, const char *name, shmbus__segment *seg);

/* Opens and maps the existing object `name`, read-write when `writable`,
 * else read-only (writes then fault). Maps its current length, but never
 * more than `max_size` bytes (a peer's huge sparse file cannot eat our
 * address space); `size` of the result is what was mapped. Never blocks and
 * never follows a symbolic link; the object must be a regular file or
 * shared memory object of at least `min_size` bytes.
 * Errors: NOT_FOUND, PERM, NOT_READY (length 0: its creator has not sized it
 * yet), CORRUPT (a link, FIFO or other non-regular file under the name, or
 * shorter than min_size), NOMEM, IO. */
int shmbus__segment_open(const shmbus__root *root, const char *name, int writable,
                         uint64_t min_size, uint64_t max_size, shmbus__segment *out);

/* Shrinks a mapping to its first `size` bytes (a multiple of the page
 * size, at most seg->size): an opener that mapped what it could before it
 * knew the layout keeps only what the layout says. INVAL, IO. */
int shmbus__segment_shrink(shmbus__segment *seg, uint64_t size);

/* The granule of shmbus__segment_protect, a power of two (the page size).
 * Every process on one machine sees the same value; layouts align on it. */
uint64_t shmbus__page_size(void);

/* Changes this process's access to bytes [offset, offset + len) of a
 * mapped segment: read-write when `writable`, else read-only (our own
 * stray writes there then fault in our process, never reach a peer).
 * offset and len are multiples of shmbus__page_size(). One system call.
 * Errors: INVAL, IO. */
int shmbus__segment_protect(const shmbus__segment *seg, uint64_t offset, uint64_t len,
                            int writable);

/* Unmaps; the object itself stays (an unpublished one goes). Clears *seg.
 * NULL base is a no-op. */
void shmbus__segment_close(shmbus__segment *seg);

/* Removes the name; existing mappings stay valid until they are closed.
 * Win32 _SHM removes nothing: a section's name goes with its last handle
 * (callers that find the service REMOVING retry within their bound).
 * Win32 _DIR cannot delete a mapped file: it renames it to the graveyard
 * name "shmbus.<domain>.x.<random>" and deletes it when it can, now or
 * when the last process that maps it closes it; a cleanup unlinks such
 * names too (liveness.c), and unlinking one deletes it.
 * Errors: NOT_FOUND, PERM, IO. */
int shmbus__segment_unlink(const shmbus__root *root, const char *name);

/* Seconds since the object `name` was last modified (wall clock, as file
 * times are). IO where the OS shows no times for shared memory objects. */
int shmbus__segment_age(const shmbus__root *root, const char *name, uint64_t *seconds);

/* ---- faults ----------------------------------------------------------- */

/* A peer may truncate an object we have mapped; touching a page past its
 * new end raises SIGBUS (POSIX). Every mapping made by segment_create and
 * segment_open is registered, and the process's SIGBUS handler (installed
 * with the first mapping unless the application said no: the public
 * shmbus_set_sigbus_handler, or SHMBUS_SIGBUS=0 in the environment) maps
 * zero pages over a registered mapping that faults, flags it and lets the
 * access complete; faults elsewhere go to the handler that was there before.
 * The core then reports CORRUPT for whatever lived in that segment.
 * Win32: a mapped section cannot shrink, so nothing faults there. */

/* Registers a mapping; returns its guard (0 when the registry cannot grow:
 * the mapping then works unguarded). Thread-safe. */
intptr_t shmbus__guard_add(void *base, uint64_t size);
/* Unregisters it (before the unmap). 0 is a no-op. */
void shmbus__guard_remove(intptr_t guard);
/* 1 once the mapping was replaced by zero pages (sticky). */
int shmbus__guard_faulted(intptr_t guard);
/* A counter that changes whenever any mapping of the process faulted: one
 * relaxed load of process memory, so hot paths notice a fault for free and
 * look at their segments only then. */
uint32_t shmbus__fault_epoch(void);

static inline int shmbus__segment_faulted(const shmbus__segment *seg) {
  return shmbus__guard_faulted(seg->guard);
}

/* ---- liveness --------------------------------------------------------- */

/* A liveness token: an object its holder keeps locked for as long as it
 * lives. The OS releases the lock when the holder dies, however it dies, so
 * a token that exists but is not locked means its holder is dead; unlike a
 * process id, a token is never reused. POSIX: flock() on the object;
 * Win32: a file locked with LockFileEx and opened delete-on-close, in the
 * root's directory (_DIR) or the per-session state directory (_SHM). */
typedef struct shmbus__token {
  intptr_t handle;
  int64_t owner; /* the process that created it (POSIX: fork copies it) */
} shmbus__token;

/* Creates the token `name` exclusively and locks it. EXISTS, PERM, NO_SPACE,
 * IO, BUSY (where a token is named before it is locked: a peer holds its
 * lock; about 100 ms). A child made by fork() does not hold its parent's tokens: they stay
 * the parent's, and die with it. */
int shmbus__token_create(const shmbus__root *root, const char *name, shmbus__token *out);
/* Removes the token's name, then releases the lock. In a forked child it
 * does nothing: the token is the parent's. */
void shmbus__token_destroy(const shmbus__root *root, const char *name, shmbus__token *token);

enum { SHMBUS__DEAD = 0, SHMBUS__ALIVE = 1 };
/* Whether the holder of token `name` lives: SHMBUS__ALIVE, SHMBUS__DEAD
 * (the token exists and nobody holds it), or NOT_FOUND (no token: dead, or
 * never created). PERM when the token cannot be opened (another user's):
 * callers must then assume it is alive. */
int shmbus__token_probe(const shmbus__root *root, const char *name);

/* Calls fn(name, arg) for every object of the root whose name starts with
 * `prefix`; stops early when fn returns non-zero. IO where the OS cannot
 * enumerate its shared memory objects. Win32 _SHM lists the state
 * directory: tokens only (sections go with their last handle, and need no
 * cleanup); _DIR lists the root. */
int shmbus__list_objects(const shmbus__root *root, const char *prefix,
                         int (*fn)(const char *name, void *arg), void *arg);

/* ---- waiting ----------------------------------------------------------- */

/* The OS object behind one waitable word of a shared segment (src/wait.h
 * says which words, and who sleeps and wakes on them). POSIX keeps nothing
 * here: futex, __ulock and _umtx need only the word's address. Win32: a
 * named auto-reset event of the root's kernel namespace, called `name`
 * (names.c builds it), which the sleeper creates and the waker opens. One
 * sleeper per word (the core guarantees it). The core sets one up once per
 * word, on a cold path, and never touches its fields. */
typedef struct shmbus__waitable {
  intptr_t handle;          /* Win32: the event; 0 until opened        */
  const shmbus__root *root; /* the node's, which outlives the waitable */
  char name[SHMBUS__OBJECT_NAME_MAX];
} shmbus__waitable;

/* Remembers where the word's object is; opens nothing and never fails
 * (the name was built by the core, within SHMBUS__OBJECT_NAME_MAX). */
void shmbus__waitable_init(shmbus__waitable *w, const shmbus__root *root, const char *name);
/* The sleeper's side, before it first announces that it may sleep: creates
 * or opens the object. On failure its waits sleep in short slices (no
 * wake-up is lost, it is only late). Errors: PERM, NOMEM, IO, CORRUPT
 * (another kind of object under the name). POSIX: 0. */
int shmbus__waitable_open(shmbus__waitable *w);
/* Closes what init and open made, if anything; a zeroed waitable is a no-op. */
void shmbus__waitable_close(shmbus__waitable *w);

/* Sleeps while the 32-bit word at `word` (in a shared mapping) holds
 * `expected`, for at most `timeout_ns` (negative: no limit). Returns 0 when
 * woken or when the word differed at once, TIMEDOUT otherwise; spurious
 * returns are allowed, callers re-check. Linux: FUTEX_WAIT (not the private
 * flavour: the word is shared between processes). macOS: __ulock_wait
 * (UL_COMPARE_AND_WAIT_SHARED); FreeBSD: _umtx_op(UMTX_OP_WAIT_UINT); both
 * untested here. Other POSIX systems: re-reads the word every 50 us (a
 * process-shared mutex and condition variable would need a lock that a
 * dead peer could keep). Win32: waits on w's event (ms, rounded up). */
int shmbus__word_wait(shmbus__waitable *w, uint32_t *word, uint32_t expected, int64_t timeout_ns);

/* Wakes whoever sleeps on `word` (FUTEX_WAKE; Win32: SetEvent, opening the
 * event on first use: none means nobody sleeps, and it is looked for again
 * at the next wake). The caller changed the word first. One system call;
 * nothing elsewhere. Never fails. */
void shmbus__word_wake(shmbus__waitable *w, uint32_t *word);

/* A notifier: a wake-up channel that a process that shares no descriptor
 * with the waiter reaches by a 64-bit id. Linux: a Unix datagram socket
 * bound in the abstract namespace ("\0shmbus.<domain>.w.<id>"), so nothing
 * is left in any file system when its owner dies. Win32: a named
 * manual-reset event ("Local\\shmbus.<domain>.w.<id>"). Other systems:
 * UNSUPPORTED. */
typedef struct shmbus__notifier {
  intptr_t handle;
} shmbus__notifier;

/* Binds notifier `id` of the domain, which the holders of `mode`'s
 * permission bits may signal (POSIX: anybody can send to an abstract
 * socket; Win32: the event's DACL). EXISTS (id taken), UNSUPPORTED, IO. */
int shmbus__notifier_open(const char *domain, unsigned mode, uint64_t id, shmbus__notifier *out);
void shmbus__notifier_close(shmbus__notifier *n);
/* The pollable descriptor: readable while a wake-up is pending.
 * UNSUPPORTED where the OS object is not a descriptor (Win32). */
int shmbus__notifier_fd(const shmbus__notifier *n);
/* The OS object to wait on, signalled while a wake-up is pending: the
 * descriptor on POSIX, a manual-reset event HANDLE on Win32. */
intptr_t shmbus__notifier_os_handle(const shmbus__notifier *n);
/* Consumes the pending wake-ups; never blocks, and stops after a bounded
 * number of reads (a peer may keep sending). */
void shmbus__notifier_drain(shmbus__notifier *n);
/* Sleeps until a wake-up is pending or `timeout_ns` passed (negative: no
 * limit). 0 or TIMEDOUT. */
int shmbus__notifier_wait(shmbus__notifier *n, int64_t timeout_ns);
/* Makes the process's sending socket if it does not exist yet (publishers
 * and wait sets call it when they open, so that a wake-up never fails for
 * want of a descriptor later). IO, NOMEM (descriptors exhausted). */
int shmbus__notify_init(void);
/* Sends one wake-up to notifier `id` of the domain: one system call, never
 * blocks (a full queue already holds wake-ups). Async-signal-safe once
 * shmbus__notify_init succeeded. */
void shmbus__notify(const char *domain, uint64_t id);

/* Monotonic clock in nanoseconds; never a system call where the OS offers
 * a user-space clock (vDSO, QueryPerformanceCounter). */
uint64_t shmbus__now_ns(void);

/* Gives the CPU to others for a moment (sched_yield / SwitchToThread). */
void shmbus__yield(void);

/* Sleeps at least `ns` nanoseconds. */
void shmbus__sleep_ns(uint64_t ns);

/* 64 unpredictable bits (ids); falls back to clock and process id mixing
 * when the OS source fails. Never fails. */
uint64_t shmbus__random64(void);

/* The value of an environment variable, or NULL. */
const char *shmbus__getenv(const char *name);

/* 1 when the switch `name` (SHMBUS_SIGBUS, SHMBUS_CLDEMOTE) is set to "0"
 * or "off": the user turned that behaviour off. */
static inline int shmbus__env_off(const char *name) {
  const char *v = shmbus__getenv(name);
  return v != NULL && (strcmp(v, "0") == 0 || strcmp(v, "off") == 0);
}

#endif /* SHMBUS_PLATFORM_H */

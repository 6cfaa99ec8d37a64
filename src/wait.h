/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The waiting protocol, in one place (as ring.h holds the rings): who
 * sleeps on which shared word, who wakes it, and the fences that make sure
 * that no wake-up is lost and that nobody makes a system call while nobody
 * sleeps.
 *
 * One pattern, three sleepers:
 *
 *   sleeper                      its flag                wakers
 *   a subscriber in wait()       wait slot `sleeping`    publish, bind, publisher close
 *   a wait set (per member)      the same flag           the same, through the slot's
 *                                                        `notifier` instead of the word
 *   a BLOCK publisher            connection's            take, release, subscriber close
 *                                `pub_waiting`
 *
 * The sleeper stores its flag, issues a seq_cst fence, loads the word it
 * will sleep on (`seen`), looks for news once more, and only then sleeps on
 * the word for as long as it still holds `seen`. The waker makes its news
 * visible, issues a seq_cst fence, and looks at the flag; when it is set, it
 * changes the word and wakes it. Of the two fences one comes first: either
 * the sleeper's last look sees the news, or the waker sees the flag, and
 * then the word differs from `seen` or the sleeper is already asleep. A
 * wake-up that finds nobody asleep costs at most one spurious return.
 *
 * A subscriber's `sleeping` holds a new epoch per sleep (never 0), and each
 * waker remembers the last epoch it woke: publishes that follow one another
 * before the sleeper runs make one system call, and a waker that dies
 * between its look and its wake-up holds back no other waker.
 *
 * Each word has its OS object (platform.h, shmbus__waitable), set up on a
 * cold path: by the sleeper before it first announces itself, by the waker
 * when it first may wake (subscriber slot k's wake word is woken through
 * the publisher's wakes[k], a connection's room word through the
 * subscriber's source). Every flag and word read here may have been
 * written by a peer: a forged flag costs a spurious wake-up, a forged word
 * a spurious return, never more.
 */
#ifndef SHMBUS_WAIT_H
#define SHMBUS_WAIT_H

#include "atomic.h"
#include "layout.h"
#include "platform.h"

/* ---- both sides --------------------------------------------------------- */

/* The word the sleeper will sleep on, loaded after its flag and fence and
 * before its last look. Pairs with the waker's fetch-add. */
static inline uint32_t shmbus__sleep_seen(const uint32_t *word) {
  return shmbus__load32_acquire(word);
}

/* Sleeps on `word` while it holds `seen`, at most `timeout_ns`. 0 or
 * TIMEDOUT; spurious returns happen, callers look again. */
static inline int shmbus__sleep(shmbus__waitable *w, uint32_t *word, uint32_t seen,
                                int64_t timeout_ns) {
  return shmbus__word_wait(w, word, seen, timeout_ns);
}

/* The waker, once it saw the flag: changes the word, then wakes. */
static inline void shmbus__wake(shmbus__waitable *w, uint32_t *word) {
  shmbus__fetch_add32(word, 1);
  shmbus__word_wake(w, word);
}

/* The waker's fence, between its news and its look at the flag. */
static inline void shmbus__wake_fence(void) { shmbus__fence_seq_cst(); }

/* ---- a subscriber, or its wait set ---------------------------------------- */

/* Announces a sleep of epoch `epoch` (never 0) in the subscriber's wait
 * slot, then fences: the last look for news follows. */
static inline void shmbus__sleeper_arm(shmbus__wait_slot *slot, uint32_t epoch) {
  /* Pairs with the waker's load-acquire: it then sees our notifier. */
  shmbus__store32_release(&slot->sleeping, epoch);
  shmbus__fence_seq_cst();
}

static inline void shmbus__sleeper_disarm(shmbus__wait_slot *slot) {
  shmbus__store32_relaxed(&slot->sleeping, 0);
}

/* The waker's look at a wait slot, after shmbus__wake_fence. 0 when nobody
 * sleeps there, or when this waker woke this sleep already (`woken`, when
 * not NULL, is its memory of the last epoch it woke). Else 1, and
 * *notifier is the wait set's notifier to send to, or 0 when the sleeper
 * sleeps on its wake word. */
static inline int shmbus__sleeper_look(const shmbus__wait_slot *slot, uint32_t *woken,
                                       uint64_t *notifier) {
  /* Pairs with the store-release in shmbus__sleeper_arm. */
  uint32_t sleep = shmbus__load32_acquire(&slot->sleeping);
  if (sleep == 0) return 0;
  if (woken != NULL) {
    if (*woken == sleep) return 0;
    *woken = sleep;
  }
  *notifier = shmbus__load64_relaxed(&slot->notifier);
  return 1;
}

/* ---- a BLOCK publisher waiting for room ------------------------------------ */

/* Announces that we may sleep on the connection's room word; returns the
 * value to sleep against. The last look at the connection follows. */
static inline uint32_t shmbus__room_arm(shmbus__conn *conn) {
  shmbus__store32_relaxed(&conn->pub_waiting, 1);
  shmbus__fence_seq_cst();
  return shmbus__sleep_seen(&conn->room_event);
}

static inline void shmbus__room_disarm(shmbus__conn *conn) {
  shmbus__store32_relaxed(&conn->pub_waiting, 0);
}

/* A subscriber that made room on the connection (took, released, or left):
 * wakes the publisher if it may sleep there. */
static inline void shmbus__room_wake(shmbus__conn *conn, shmbus__waitable *w) {
  shmbus__wake_fence();
  if (shmbus__load32_relaxed(&conn->pub_waiting) == 0) return;
  shmbus__wake(w, &conn->room_event);
}

#endif /* SHMBUS_WAIT_H */

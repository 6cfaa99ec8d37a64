/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Wait sets: one thread sleeps on many subscribers, of any services, and a
 * user trigger. The set owns a notifier (platform.h) named by a random id;
 * each attached subscriber writes that id into its registry slot, so a
 * publisher that finds the subscriber asleep sends the set one wake-up
 * instead of a futex wake. The notifier's descriptor is what event loops
 * poll. Arming and the last look before sleeping are the subscriber's
 * (subscriber.c, "waiting").
 */
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "internal.h"

typedef struct ws_entry {
  shmbus_subscriber *sub;
  void *user;
} ws_entry;

struct shmbus_waitset {
  shmbus_node *node;
  uint64_t id;
  shmbus__notifier notifier;
  ws_entry *entries;
  size_t count, cap;
  size_t cursor;       /* where the next scan starts (fairness)   */
  uint64_t next_sweep; /* when to look for dead publishers next   */
  uint32_t triggered;  /* set by shmbus_waitset_trigger (atomic)  */
};

int shmbus_waitset_open(shmbus_node *node, shmbus_waitset **out) {
  SHMBUS__CLEAR_OUT(out);
  if (node == NULL || out == NULL) return SHMBUS_ERR_INVAL;
  /* The trigger sends through it: made now, so that it is
   * async-signal-safe later. */
  int r = shmbus__notify_init();
  if (r) return r;
  shmbus_waitset *ws = calloc(1, sizeof *ws);
  if (ws == NULL) return SHMBUS_ERR_NOMEM;
  r = SHMBUS_ERR_EXISTS;
  for (int tries = 0; tries < 4 && r == SHMBUS_ERR_EXISTS; tries++) {
    ws->id = shmbus__random64();
    r = shmbus__notifier_open(node->domain, node->root.mode, ws->id, &ws->notifier);
  }
  if (r) {
    free(ws);
    return r;
  }
  shmbus__node_ref(node);
  ws->node = node;
  *out = ws;
  return 0;
}

void shmbus_waitset_close(shmbus_waitset *ws) {
  if (ws == NULL) return;
  for (size_t i = 0; i < ws->count; i++) {
    shmbus__subscriber_disarm(ws->entries[i].sub);
    shmbus__subscriber_join(ws->entries[i].sub, NULL, NULL, 0);
  }
  shmbus__notifier_close(&ws->notifier);
  shmbus__node_unref(ws->node);
  free(ws->entries);
  free(ws);
}

int shmbus_waitset_attach(shmbus_waitset *ws, shmbus_subscriber *sub, void *user) {
  if (ws == NULL || sub == NULL) return SHMBUS_ERR_INVAL;
  if (ws->count == ws->cap) {
    size_t cap = ws->cap ? 2 * ws->cap : 8;
    ws_entry *p = realloc(ws->entries, cap * sizeof *p);
    if (p == NULL) return SHMBUS_ERR_NOMEM;
    ws->entries = p;
    ws->cap = cap;
  }
  int r = shmbus__subscriber_join(sub, ws, ws->node->domain, ws->id);
  if (r) return r;
  ws->entries[ws->count].sub = sub;
  ws->entries[ws->count].user = user;
  ws->count++;
  return 0;
}

int shmbus_waitset_detach(shmbus_waitset *ws, shmbus_subscriber *sub) {
  if (ws == NULL || sub == NULL) return SHMBUS_ERR_INVAL;
  for (size_t i = 0; i < ws->count; i++) {
    if (ws->entries[i].sub != sub) continue;
    shmbus__subscriber_disarm(sub);
    shmbus__subscriber_join(sub, NULL, NULL, 0);
    memmove(&ws->entries[i], &ws->entries[i + 1], (ws->count - i - 1) * sizeof *ws->entries);
    ws->count--;
    if (ws->cursor >= ws->count) ws->cursor = 0;
    return 0;
  }
  return SHMBUS_ERR_NOT_FOUND;
}

int shmbus_waitset_trigger(shmbus_waitset *ws) {
  if (ws == NULL) return SHMBUS_ERR_INVAL;
  /* Pairs with the exchange in collect: the flag is seen by the look that
   * follows the wake-up. */
  shmbus__store32_release(&ws->triggered, 1);
  shmbus__notify(ws->node->domain, ws->id);
  return 0;
}

int shmbus_waitset_fd(const shmbus_waitset *ws) {
  return ws == NULL ? SHMBUS_ERR_INVAL : shmbus__notifier_fd(&ws->notifier);
}

int shmbus_waitset_os_handle(const shmbus_waitset *ws, shmbus_os_handle *out) {
  if (ws == NULL || out == NULL) return SHMBUS_ERR_INVAL;
  *out = shmbus__notifier_os_handle(&ws->notifier);
  return 0;
}

/* Fills out[] with what is ready now; returns the count. */
static int collect(shmbus_waitset *ws, shmbus_wait_event *out, size_t cap) {
  size_t n = 0;
  uint32_t one = 1;
  /* Pairs with the store-release in shmbus_waitset_trigger. */
  if (shmbus__load32_acquire(&ws->triggered) && shmbus__cas32(&ws->triggered, &one, 0)) {
    out[n].what = SHMBUS_WAIT_TRIGGER;
    out[n].sub = NULL;
    out[n].user = NULL;
    n++;
  }
  size_t first = SIZE_MAX;
  for (size_t j = 0; j < ws->count && n < cap; j++) {
    size_t i = (ws->cursor + j) % ws->count;
    int r = shmbus__subscriber_ready(ws->entries[i].sub);
    /* CORRUPT (a peer truncated its service segment) is reported as data:
     * the caller's take then returns the error, instead of the subscriber
     * falling silent in the set. */
    if (r != 0 && r != SHMBUS_ERR_NO_PUBLISHER && r != SHMBUS_ERR_CORRUPT) continue;
    out[n].what = r == SHMBUS_ERR_NO_PUBLISHER ? SHMBUS_WAIT_NO_PUBLISHER : SHMBUS_WAIT_DATA;
    out[n].sub = ws->entries[i].sub;
    out[n].user = ws->entries[i].user;
    n++;
    if (first == SIZE_MAX) first = i;
  }
  if (first != SIZE_MAX) ws->cursor = (first + 1) % ws->count;
  return (int)n;
}

static void arm_all(shmbus_waitset *ws, int on) {
  for (size_t i = 0; i < ws->count; i++) {
    if (on)
      shmbus__subscriber_arm(ws->entries[i].sub);
    else
      shmbus__subscriber_disarm(ws->entries[i].sub);
  }
}

/* Reaps dead ports of the subscribers' services once per liveness slice,
 * also for callers that only look (the descriptor protocol): a reaped
 * publisher wakes its subscribers' sleepers. */
static void sweep_when_due(shmbus_waitset *ws, uint64_t now) {
  if (now < ws->next_sweep) return;
  ws->next_sweep = now + SHMBUS__LIVENESS_SLICE_NS;
  for (size_t i = 0; i < ws->count; i++) shmbus__subscriber_sweep(ws->entries[i].sub);
}

static int all_acked(const shmbus_waitset *ws) {
  for (size_t i = 0; i < ws->count; i++)
    if (!shmbus__subscriber_acked(ws->entries[i].sub)) return 0;
  return 1;
}

int shmbus_waitset_wait(shmbus_waitset *ws, int64_t timeout_ns, shmbus_wait_event *out,
                        size_t cap) {
  if (ws == NULL || out == NULL || cap == 0) return SHMBUS_ERR_INVAL;
  uint64_t deadline = shmbus__wait_deadline(timeout_ns);
  uint64_t now = shmbus__now_ns();
  if (ws->next_sweep == 0) ws->next_sweep = now + SHMBUS__LIVENESS_SLICE_NS;
  sweep_when_due(ws, now);
  int n = collect(ws, out, cap);
  int64_t spin = 0;
  for (size_t i = 0; i < ws->count; i++) {
    int64_t s = shmbus__subscriber_spin(ws->entries[i].sub);
    if (s > spin) spin = s;
  }
  uint64_t spin_end = timeout_ns == 0 ? now : now + (uint64_t)spin;
  while (n == 0 && now < spin_end && now < deadline) {
    shmbus__cpu_relax();
    n = collect(ws, out, cap);
    now = shmbus__now_ns();
  }
  uint64_t ack_slice = SHMBUS__ACK_SLICE_NS;
  while (n == 0) {
    /* Wake-ups sent before we look are stale; one sent after is not. */
    shmbus__notifier_drain(&ws->notifier);
    arm_all(ws, 1);
    n = collect(ws, out, cap);
    if (n > 0) break;
    now = shmbus__now_ns();
    /* Stays armed: an event loop sleeps on the descriptor now. */
    if (now >= deadline) return SHMBUS_ERR_TIMEDOUT;
    shmbus__notifier_wait(&ws->notifier,
                          (int64_t)shmbus__wait_slice(&ack_slice, all_acked(ws), now, deadline));
    sweep_when_due(ws, shmbus__now_ns());
  }
  arm_all(ws, 0);
  return n;
}

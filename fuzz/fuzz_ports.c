/* SPDX-License-Identifier: Apache-2.0 */
/* The publisher/subscriber scenario of fuzz_ports.h. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "fuzz_ports.h"

enum {
  MAX_TRACKED = 8, /* samples held per subscriber (max_held <= 2 here) */
  MAX_LOANS = 4,
  MAX_SEQ = 1024,
  MAX_STEPS = 512,
  /* How far a timed call may overrun its timeout: the 10 ms, plus
   * the virtual clock's sleep granularity (fuzz_support.c). */
  TIMEOUT_SLACK_NS = 15 * 1000 * 1000
};

typedef struct port_sub {
  shmbus_subscriber *sub;
  uint64_t id;
  int slot; /* registry slot, -1 when unknown */
  shmbus_sample held[MAX_TRACKED];
  int nheld;
  /* the victim's bookkeeping */
  int have_seq;
  uint64_t last_seq;
  uint64_t plain_gaps; /* samples skipped between plain takes */
} port_sub;

typedef struct loan {
  void *payload;
  size_t cap; /* bytes loaned */
} loan;

typedef struct run {
  const fz_ports_opts *o;
  fz_service *svc;
  fz_map svcmap, data, ctl; /* our own mappings: service, P's data and control */
  shmbus_publisher *pub;
  uint64_t pub_id;
  int64_t block_timeout;
  loan loans[MAX_LOANS];
  int nloans;
  uint64_t next_seq;         /* P's next sequence number */
  uint32_t seq_len[MAX_SEQ]; /* bytes published per sequence number */
  port_sub a, v;
} run;

/* ---- services, one per configuration byte ------------------------------------- */

static fz_service services[128];
static uint8_t prepared[128]; /* 0 not yet, 1 ready, 2 failed */

static fz_service *service_for(const fz_ports_opts *o, uint8_t c0) {
  unsigned k = c0 & 0x7fu;
  if (prepared[k] == 0) {
    shmbus_service_opts so = SHMBUS_SERVICE_OPTS_INIT;
    so.type.name = "fz/u64";
    so.type.size = 8;
    so.type.align = 8;
    so.overflow = 1 + (int)((k & 3u) % 3); /* bits 0-1: DROP_OLDEST, DROP_NEWEST, BLOCK */
    so.queue_depth = 1 + ((k >> 2) & 3u);
    so.max_held = 1 + ((k >> 4) & 1u);
    so.history = (k >> 5) & 1u ? 2 : 0;
    so.max_elements = (k >> 6) & 1u ? 4 : 1;
    so.max_publishers = 2;
    so.max_subscribers = 3;
    so.max_loans = 2;
    char name[64];
    snprintf(name, sizeof name, "%s.%02x", o->tag, k);
    prepared[k] = fz_service_prepare(&services[k], name, &so) == 0 ? 1 : 2;
  }
  return prepared[k] == 1 ? &services[k] : NULL;
}

/* ---- payloads: a pattern per sequence number ----------------------------------- */

static uint8_t pattern(uint64_t seq, size_t i) {
  uint64_t x = (seq + 1) * UINT64_C(0x9e3779b97f4a7c15) ^ (i + 1) * UINT64_C(0xbf58476d1ce4e5b9);
  return (uint8_t)(x >> 56);
}

static void fill(void *p, uint64_t seq, size_t n) {
  for (size_t i = 0; i < n; i++) ((uint8_t *)p)[i] = pattern(seq, i);
}

static int intact(const void *p, uint64_t seq, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (((const uint8_t *)p)[i] != pattern(seq, i)) return 0;
  return 1;
}

static const char *ename(int e) { return e > 0 ? ">0" : shmbus_err_name(e); }

/* A segment the hook truncated faults, and the library reports CORRUPT for
 * what lived in it (docs/security.md): allowed then, and only then. */
static int faulted(int e) { return e == SHMBUS_ERR_CORRUPT && fz_hook_truncated() > 0; }

/* ---- ports ------------------------------------------------------------------------ */

static void pub_open(run *r, int must) {
  int e = shmbus_publisher_open(fz_node, r->svc->name, &r->svc->opts, &r->pub);
  fz_count("publisher_open", e);
  FZ_ASSERT(e == 0 || !must, "an honest publisher_open failed: %s", ename(e));
  r->nloans = 0;
  r->next_seq = 0;
  if (e) return;
  r->pub_id = shmbus_publisher_id(r->pub);
  shmbus_publisher_set_block_timeout(r->pub, r->block_timeout);
  char name[SHMBUS__OBJECT_NAME_MAX];
  fz_publisher_object(r->svc, r->pub_id, 1, name);
  int m = fz_map_open(&r->data, name);
  fz_publisher_object(r->svc, r->pub_id, 0, name);
  m |= fz_map_open(&r->ctl, name);
  FZ_ASSERT(m == 0 || !must, "cannot map publisher %llx's segments", (unsigned long long)r->pub_id);
}

static void pub_close(run *r) {
  shmbus_publisher_close(r->pub);
  r->pub = NULL;
  r->nloans = 0;
  fz_map_close(&r->data);
  fz_map_close(&r->ctl);
}

static void sub_open(run *r, port_sub *s, int must) {
  memset(s, 0, sizeof *s);
  s->slot = -1;
  int e = shmbus_subscriber_open(fz_node, r->svc->name, &r->svc->opts, &s->sub);
  fz_count("subscriber_open", e);
  FZ_ASSERT(e == 0 || !must, "an honest subscriber_open failed: %s", ename(e));
  if (e) return;
  s->id = shmbus_subscriber_id(s->sub);
  s->slot = fz_find_slot(r->svc, &r->svcmap, SHMBUS__SUBSCRIBER, s->id);
}

static void sub_close(port_sub *s) {
  shmbus_subscriber_close(s->sub);
  s->sub = NULL;
  s->nheld = 0;
  s->slot = -1;
}

/* ---- the subscribers' operations ------------------------------------------------------ */

static void check_victim_sample(run *r, port_sub *s, const shmbus_sample *smp, int latest) {
  uint64_t seq = smp->sequence;
  FZ_ASSERT(smp->publisher_id == r->pub_id, "the victim got a sample of publisher %llx",
            (unsigned long long)smp->publisher_id);
  FZ_ASSERT(seq < r->next_seq, "the victim took sequence %llu; %llu were published",
            (unsigned long long)seq, (unsigned long long)r->next_seq);
  FZ_ASSERT(!s->have_seq || seq > s->last_seq, "the victim took sequence %llu after %llu",
            (unsigned long long)seq, (unsigned long long)s->last_seq);
  uint64_t gap = s->have_seq ? seq - s->last_seq - 1 : seq;
  if (!latest) {
    s->plain_gaps += gap;
    uint64_t lost = shmbus_subscriber_lost(s->sub);
    FZ_ASSERT(s->plain_gaps <= lost, "the victim missed %llu samples; its lost count says %llu",
              (unsigned long long)s->plain_gaps, (unsigned long long)lost);
  }
  if (seq < MAX_SEQ)
    FZ_ASSERT(smp->bytes == r->seq_len[seq], "the victim's sample %llu has %zu bytes, %u published",
              (unsigned long long)seq, smp->bytes, r->seq_len[seq]);
  FZ_ASSERT(intact(smp->payload, seq, smp->bytes),
            "the victim's sample %llu has another payload (its chunk was reused)",
            (unsigned long long)seq);
  s->have_seq = 1;
  s->last_seq = seq;
}

static void sub_take(run *r, port_sub *s, int latest, int victim) {
  if (s->sub == NULL) return;
  const char *what =
      victim ? (latest ? "V take_latest" : "V take") : (latest ? "A take_latest" : "A take");
  shmbus_sample smp, zero;
  memset(&zero, 0, sizeof zero);
  uint64_t t0 = fz_vclock_ns();
  int e =
      latest ? shmbus_subscriber_take_latest(s->sub, &smp) : shmbus_subscriber_take(s->sub, &smp);
  fz_count(what, e);
  if (fz_timing())
    FZ_ASSERT(fz_vclock_ns() == t0, "%s slept %llu ns (a hot-path call must not wait)", what,
              (unsigned long long)(fz_vclock_ns() - t0));
  int max_held = (int)r->svc->cfg.max_held;
  if (e == SHMBUS_ERR_HOLD_LIMIT)
    FZ_ASSERT(s->nheld == max_held, "%s: HOLD_LIMIT while holding %d of %d", what, s->nheld,
              max_held);
  else
    FZ_ASSERT(e == 0 || e == SHMBUS_ERR_EMPTY || e == SHMBUS_ERR_CORRUPT || !fz_error_checks(),
              "%s returned %s", what, ename(e));
  if (e) {
    FZ_ASSERT(memcmp(&smp, &zero, sizeof smp) == 0, "%s failed (%s) without clearing the sample",
              what, ename(e));
    if (victim && r->o->victim_checks)
      FZ_ASSERT(e != SHMBUS_ERR_CORRUPT, "%s: CORRUPT (another port broke the victim's delivery)",
                what);
    return;
  }
  FZ_ASSERT(s->nheld < max_held, "%s: a sample beyond max_held (%d)", what, max_held);
  uint32_t chunk = fz_check_payload(r->svc, smp.payload, smp.bytes, 1, NULL, what);
  fz_trace("  sequence %llu, %zu bytes, chunk %u", (unsigned long long)smp.sequence, smp.bytes,
           chunk);
  for (int i = 0; i < s->nheld; i++)
    FZ_ASSERT(s->held[i].internal_ >> 32 != smp.internal_ >> 32,
              "%s: the handle of a held sample was handed out again", what);
  if (victim && r->o->victim_checks) check_victim_sample(r, s, &smp, latest);
  s->held[s->nheld++] = smp;
}

static void forget_held(port_sub *s, int i) { s->held[i] = s->held[--s->nheld]; }

static void sub_release(run *r, port_sub *s, fz_in *in, int victim) {
  if (s->sub == NULL || s->nheld == 0) return;
  int i = fz_u8(in) % s->nheld;
  const shmbus_sample *smp = &s->held[i];
  if (victim && r->o->victim_checks)
    FZ_ASSERT(intact(smp->payload, smp->sequence, smp->bytes),
              "the victim's held sample %llu changed before its release",
              (unsigned long long)smp->sequence);
  int e = shmbus_subscriber_release(s->sub, smp);
  fz_count(victim ? "V release" : "A release", e);
  FZ_ASSERT(e == 0 || faulted(e), "releasing a held sample returned %s", ename(e));
  forget_held(s, i);
}

static void sub_release_forged(run *r, port_sub *s, fz_in *in) {
  (void)r;
  if (s->sub == NULL) return;
  shmbus_sample f;
  memset(&f, 0, sizeof f);
  if (s->nheld > 0) f = s->held[fz_u8(in) % s->nheld];
  switch (fz_u8(in) % 5) {
  case 0: f.internal_ ^= fz_u64(in); break;
  case 1:
    f.payload = (const void *)((uintptr_t)f.payload + (uintptr_t)(intptr_t)(int8_t)fz_u8(in));
    break;
  case 2: f.internal_ = fz_u64(in); break;
  case 3:
    f.internal_ += (uint64_t)(int8_t)fz_u8(in) << 32;
    f.internal_ += (uint64_t)(int8_t)fz_u8(in);
    break;
  case 4: break; /* a second release of the same sample, if it is released */
  }
  int e = shmbus_subscriber_release(s->sub, &f);
  fz_count("A release_forged", e);
  int match = -1;
  for (int i = 0; i < s->nheld; i++)
    if (s->held[i].internal_ == f.internal_ && s->held[i].payload == f.payload) match = i;
  if (e == 0) {
    FZ_ASSERT(match >= 0,
              "release accepted a sample the subscriber does not hold "
              "(internal %llx, payload %p)",
              (unsigned long long)f.internal_, f.payload);
    forget_held(s, match);
  } else {
    FZ_ASSERT(e == SHMBUS_ERR_NOT_HELD || e == SHMBUS_ERR_INVAL, "release returned %s", ename(e));
    FZ_ASSERT(match < 0, "release refused (%s) a sample the subscriber holds", ename(e));
  }
}

static void sub_wait(run *r, port_sub *s, fz_in *in) {
  (void)r;
  if (s->sub == NULL) return;
  int64_t timeout = (int64_t)(fz_u8(in) % 4) * 500 * 1000;
  uint64_t t0 = fz_vclock_ns();
  int e = shmbus_subscriber_wait(s->sub, timeout);
  fz_count("A wait", e);
  if (fz_timing())
    FZ_ASSERT(fz_vclock_ns() - t0 <= (uint64_t)timeout + TIMEOUT_SLACK_NS,
              "wait with a %lld ns timeout took %llu ns", (long long)timeout,
              (unsigned long long)(fz_vclock_ns() - t0));
}

/* ---- the publisher's operations ------------------------------------------------------- */

static int victim_holds(const run *r, uint32_t chunk, uint64_t ino) {
  for (int i = 0; i < r->v.nheld; i++) {
    uint64_t vino;
    fz_range g;
    /* Its data mapping faulted and is zero pages now (docs/security.md §6). */
    if (fz_hook_truncated() && !fz_maps_find(r->v.held[i].payload, &g)) continue;
    uint32_t c =
        fz_check_payload(r->svc, r->v.held[i].payload, r->v.held[i].bytes, 1, &vino, "V held");
    if (c == chunk && vino == ino) return 1;
  }
  return 0;
}

static int is_block(const run *r) { return r->svc->cfg.overflow == SHMBUS_OVERFLOW_BLOCK; }

/* A publish's time: none unless it waits for room (overflow BLOCK), and
 * then no more than its timeout. */
static void check_publish_time(const run *r, uint64_t t0, const char *what) {
  if (!fz_timing()) return;
  uint64_t took = fz_vclock_ns() - t0;
  if (is_block(r))
    FZ_ASSERT(took <= (uint64_t)r->block_timeout + TIMEOUT_SLACK_NS,
              "%s waited %llu ns with a block timeout of %lld ns", what, (unsigned long long)took,
              (long long)r->block_timeout);
  else
    FZ_ASSERT(took == 0, "%s slept %llu ns (a hot-path call must not wait)", what,
              (unsigned long long)took);
}

static int publish_error_ok(const run *r, int e) {
  return is_block(r) && (e == SHMBUS_ERR_TIMEDOUT || e == SHMBUS_ERR_PEER_DEAD);
}

static void published(run *r, size_t bytes) {
  if (r->next_seq < MAX_SEQ) r->seq_len[r->next_seq] = (uint32_t)bytes;
  r->next_seq++;
}

static void p_loan(run *r, fz_in *in) {
  if (r->pub == NULL) return;
  const shmbus__service_config *cfg = &r->svc->cfg;
  uint8_t b = fz_u8(in);
  size_t elements = b % 16 == 15   ? 0
                    : b % 16 == 14 ? cfg->max_elements + 1u
                                   : 1u + b % cfg->max_elements;
  void *p;
  uint64_t t0 = fz_vclock_ns();
  int e = shmbus_publisher_loan(r->pub, elements, &p);
  fz_count("P loan", e);
  if (fz_timing()) FZ_ASSERT(fz_vclock_ns() == t0, "loan slept");
  int expected = elements == 0                      ? SHMBUS_ERR_INVAL
                 : elements > cfg->max_elements     ? SHMBUS_ERR_TOO_LARGE
                 : r->nloans >= (int)cfg->max_loans ? SHMBUS_ERR_LOAN_LIMIT
                                                    : 0;
  if (faulted(e)) return;
  FZ_ASSERT(e == expected, "loan of %zu elements with %d of %u loans out returned %s, not %s",
            elements, r->nloans, cfg->max_loans, ename(e), ename(expected));
  if (e) return;
  size_t cap = elements * cfg->element_size;
  uint64_t ino;
  fz_range g;
  if (fz_hook_truncated() && !fz_maps_find(p, &g)) {
    /* The data segment faulted: loans still succeed, in the zero pages
     * (docs/security.md §6); publishing them says CORRUPT. */
    r->loans[r->nloans].payload = p;
    r->loans[r->nloans].cap = cap;
    r->nloans++;
    return;
  }
  uint32_t c = fz_check_payload(r->svc, p, cap, 0, &ino, "P loan");
  fz_trace("  chunk %u", c);
  for (int i = 0; i < r->nloans; i++)
    FZ_ASSERT(r->loans[i].payload != p, "loan handed out chunk %u twice", c);
  FZ_ASSERT(!victim_holds(r, c, ino), "loan handed out chunk %u, which the victim holds", c);
  r->loans[r->nloans].payload = p;
  r->loans[r->nloans].cap = cap;
  r->nloans++;
}

static void p_publish(run *r, fz_in *in) {
  if (r->pub == NULL || r->nloans == 0) return;
  uint8_t b = fz_u8(in);
  int i = b % r->nloans, partial = (b >> 4) & 1;
  loan *l = &r->loans[i];
  size_t bytes = partial ? fz_u8(in) % (l->cap + 2) : l->cap;
  fill(l->payload, r->next_seq, bytes < l->cap ? bytes : l->cap);
  uint64_t t0 = fz_vclock_ns();
  int e = partial ? shmbus_publisher_publish_bytes(r->pub, l->payload, bytes)
                  : shmbus_publisher_publish(r->pub, l->payload);
  fz_count(partial ? "P publish_bytes" : "P publish", e);
  check_publish_time(r, t0, "publish");
  if (faulted(e)) return;
  if (partial && bytes > l->cap) {
    FZ_ASSERT(e == SHMBUS_ERR_TOO_LARGE,
              "publish_bytes of %zu bytes of a %zu byte loan returned %s", bytes, l->cap, ename(e));
    return;
  }
  FZ_ASSERT(e == 0 || publish_error_ok(r, e), "publish of %zu bytes of a %zu byte loan returned %s",
            bytes, l->cap, ename(e));
  if (e) return;
  published(r, bytes);
  r->loans[i] = r->loans[--r->nloans];
}

static void p_discard(run *r, fz_in *in) {
  if (r->pub == NULL || r->nloans == 0) return;
  int i = fz_u8(in) % r->nloans;
  int e = shmbus_publisher_discard(r->pub, r->loans[i].payload);
  fz_count("P discard", e);
  FZ_ASSERT(e == 0 || faulted(e), "discard of a loan returned %s", ename(e));
  r->loans[i] = r->loans[--r->nloans];
}

static void p_send(run *r, fz_in *in) {
  if (r->pub == NULL) return;
  const shmbus__layout *l = &r->svc->layout;
  size_t bytes = fz_u8(in) % (l->max_payload + 2);
  uint8_t buf[64];
  if (bytes > sizeof buf) bytes = sizeof buf;
  fill(buf, r->next_seq, bytes);
  uint64_t t0 = fz_vclock_ns();
  int e = shmbus_publisher_send_copy(r->pub, buf, bytes);
  fz_count("P send_copy", e);
  check_publish_time(r, t0, "send_copy");
  int expected = bytes == 0                                ? SHMBUS_ERR_INVAL
                 : bytes > l->max_payload                  ? SHMBUS_ERR_TOO_LARGE
                 : r->nloans >= (int)r->svc->cfg.max_loans ? SHMBUS_ERR_LOAN_LIMIT
                                                           : 0;
  FZ_ASSERT(e == expected || (expected == 0 && publish_error_ok(r, e)) || faulted(e),
            "send_copy of %zu bytes with %d loans out returned %s, not %s", bytes, r->nloans,
            ename(e), ename(expected));
  if (e == 0) published(r, bytes);
}

static void p_update(run *r) {
  if (r->pub == NULL) return;
  int e = shmbus_publisher_update(r->pub);
  fz_count("P update", e);
  FZ_ASSERT(e >= 0 || faulted(e), "update returned %s", ename(e));
}

/* ---- writes into A's connection and P's chunks, through our own mappings --------------------- */

#define FIELD(type, m) \
  { offsetof(type, m), sizeof(((type *)0)->m) }
typedef struct field {
  uint32_t off, size;
} field;
static const field conn_fields[] = {FIELD(shmbus__conn, sub_id),   FIELD(shmbus__conn, lost),
                                    FIELD(shmbus__conn, wait_ack), FIELD(shmbus__conn, pub_waiting),
                                    FIELD(shmbus__conn, head),     FIELD(shmbus__conn, done_tail),
                                    FIELD(shmbus__conn, sub_ack),  FIELD(shmbus__conn, room_event),
                                    FIELD(shmbus__conn, done_head)};
static const field chunk_fields[] = {
    FIELD(shmbus__chunk_header, sequence), FIELD(shmbus__chunk_header, timestamp_ns),
    FIELD(shmbus__chunk_header, publisher_id), FIELD(shmbus__chunk_header, payload_bytes),
    FIELD(shmbus__chunk_header, reserved)};
/* A subscriber's own wait state (its page of the service segment). */
static const field wait_fields[] = {FIELD(shmbus__wait_slot, wait_mode),
                                    FIELD(shmbus__wait_slot, sleeping),
                                    FIELD(shmbus__wait_slot, notifier)};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Where A's connection starts in P's control segment, or UINT64_MAX. */
static uint64_t a_conn(const run *r) {
  if (r->pub == NULL || r->a.slot < 0 || r->ctl.base == NULL) return UINT64_MAX;
  return FZ_CONN_OFFSET(&r->svc->layout, (uint32_t)r->a.slot);
}

/* A value for a word that holds `cur`: small numbers, neighbours, ids,
 * chunk indices and submission slot words are what validation tests. */
static uint64_t value(run *r, fz_in *in, uint64_t cur, unsigned size) {
  const shmbus__layout *l = &r->svc->layout;
  uint64_t head = 0, c = a_conn(r);
  if (c != UINT64_MAX) head = fz_get(&r->ctl, c + offsetof(shmbus__conn, head), 8);
  const uint64_t special[] = {0,
                              1,
                              UINT64_MAX,
                              UINT32_MAX,
                              UINT64_C(1) << 31,
                              UINT64_C(1) << 63,
                              l->max_payload,
                              l->max_payload + 1,
                              l->chunks,
                              l->queue_cap,
                              l->done_cap,
                              r->svc->cfg.queue_depth,
                              r->pub_id,
                              r->a.id,
                              r->v.id};
  switch (fz_u8(in) % 10) {
  case 0: return fz_u8(in);
  case 1: return cur + (uint64_t)(int64_t)(int8_t)fz_u8(in);
  case 2: return fz_u64(in);
  case 3: return special[fz_u8(in) % COUNT(special)];
  case 4: return cur ^ (UINT64_C(1) << (fz_u8(in) % (8 * size)));
  case 5: return FZ_PORT_ID_BASE + fz_u8(in) % 8;
  case 6: return fz_u8(in) % (l->chunks + 2);
  case 7: {
    uint64_t pos = head + (uint64_t)(int64_t)(int8_t)fz_u8(in);
    return shmbus__slot_word(pos, fz_u8(in) % (l->chunks + 2));
  }
  case 8: return cur + 1;
  default: return cur - 1;
  }
}

static void write_word(run *r, const fz_map *m, uint64_t off, unsigned size, fz_in *in) {
  uint64_t old = fz_get(m, off, size);
  uint64_t v = value(r, in, old, size);
  fz_trace("write %s+%llu (%u bytes): %llx -> %llx",
           m == &r->ctl    ? "control"
           : m == &r->data ? "data"
                           : "service",
           (unsigned long long)off, size, (unsigned long long)old, (unsigned long long)v);
  fz_put(m, off, size, v);
}

static void w_conn(run *r, fz_in *in) {
  uint64_t c = a_conn(r);
  uint8_t k = fz_u8(in);
  if (c == UINT64_MAX) return;
  if (k < COUNT(conn_fields)) {
    write_word(r, &r->ctl, c + conn_fields[k].off, conn_fields[k].size, in);
  } else {
    /* any word of the header, padding (and words added later) too */
    write_word(r, &r->ctl, c + (uint64_t)(k % (sizeof(shmbus__conn) / 8)) * 8, 8, in);
  }
}

static void w_subring(run *r, fz_in *in) {
  uint64_t c = a_conn(r);
  uint32_t pos = fz_u8(in) % r->svc->layout.queue_cap;
  if (c == UINT64_MAX) return;
  write_word(r, &r->ctl, c + r->svc->layout.sub_ring_offset + 8u * pos, 8, in);
}

static void w_done(run *r, fz_in *in) {
  uint64_t c = a_conn(r);
  uint32_t pos = fz_u8(in) % r->svc->layout.done_cap;
  if (c == UINT64_MAX) return;
  write_word(r, &r->ctl, c + r->svc->layout.done_ring_offset + 4u * pos, 4, in);
}

/* A completion the library did not make: chunk X returned behind its back. */
static void w_push_done(run *r, fz_in *in) {
  uint64_t c = a_conn(r);
  uint32_t chunk = fz_u8(in) % (r->svc->layout.chunks + 2);
  if (c == UINT64_MAX) return;
  const shmbus__layout *l = &r->svc->layout;
  uint64_t tail = fz_get(&r->ctl, c + offsetof(shmbus__conn, done_tail), 8);
  fz_trace("completion of chunk %u behind the library's back at %llu", chunk,
           (unsigned long long)tail);
  fz_put(&r->ctl, c + l->done_ring_offset + 4u * (tail & (l->done_cap - 1)), 4, chunk);
  fz_put(&r->ctl, c + offsetof(shmbus__conn, done_tail), 8, tail + 1);
}

static void w_chunk(run *r, fz_in *in) {
  const shmbus__layout *l = &r->svc->layout;
  uint32_t chunk = fz_u8(in) % l->chunks;
  uint8_t k = fz_u8(in);
  if (r->pub == NULL || r->data.base == NULL) return;
  uint64_t base = FZ_CHUNK_OFFSET(l, chunk);
  if (k < COUNT(chunk_fields)) {
    write_word(r, &r->data, base + chunk_fields[k].off, chunk_fields[k].size, in);
  } else {
    uint64_t words = (l->payload_offset + l->max_payload + 7) / 8;
    write_word(r, &r->data, base + (k % words) * 8, 8, in);
  }
}

static void w_own_slot(run *r, fz_in *in) {
  uint8_t k = fz_u8(in) % COUNT(wait_fields);
  if (r->a.sub == NULL || r->a.slot < 0) return;
  uint64_t off = FZ_WAIT_OFFSET(&r->svc->layout, (uint32_t)r->a.slot);
  write_word(r, &r->svcmap, off + wait_fields[k].off, wait_fields[k].size, in);
}

static void w_block(run *r, fz_in *in) {
  uint64_t c = a_conn(r);
  uint16_t k = fz_u16(in);
  if (c == UINT64_MAX) return;
  write_word(r, &r->ctl, c + (uint64_t)(k % (r->svc->layout.conn_stride / 8)) * 8, 8, in);
}

/* ---- one iteration ----------------------------------------------------------------------- */

static void check_victim_held(const run *r) {
  if (!r->o->victim_checks) return;
  for (int i = 0; i < r->v.nheld; i++) {
    const shmbus_sample *smp = &r->v.held[i];
    FZ_ASSERT(intact(smp->payload, smp->sequence, smp->bytes),
              "the victim's held sample %llu was overwritten while held",
              (unsigned long long)smp->sequence);
  }
}

/* The victim takes everything left; every sample P published reached it
 * or is counted in its lost count. */
static void drain_victim(run *r) {
  port_sub *v = &r->v;
  if (v->sub == NULL || !r->o->victim_checks) return;
  uint8_t zero = 0;
  fz_in none = {&zero, 1};
  uint32_t rounds = 2 * (r->svc->layout.queue_cap + r->svc->cfg.max_held) + 4;
  for (uint32_t i = 0; i < rounds; i++) {
    while (v->nheld > 0) {
      none.p = &zero;
      none.n = 1;
      sub_release(r, v, &none, 1);
    }
    int before = v->nheld;
    sub_take(r, v, 0, 1);
    if (v->nheld == before) break;
  }
  uint64_t tail = v->have_seq ? r->next_seq - 1 - v->last_seq : r->next_seq;
  uint64_t lost = shmbus_subscriber_lost(v->sub);
  FZ_ASSERT(v->plain_gaps + tail <= lost,
            "the victim never got %llu samples; its lost count says %llu",
            (unsigned long long)(v->plain_gaps + tail), (unsigned long long)lost);
}

static void setup(run *r, uint8_t c0) {
  int must = !r->o->hook;
  FZ_ASSERT(fz_service_write(r->svc) == 0, "cannot write service object %s", r->svc->object);
  FZ_ASSERT(fz_map_open(&r->svcmap, r->svc->object) == 0, "cannot map %s", r->svc->object);
  if (c0 & 0x80) {
    sub_open(r, &r->a, must);
    pub_open(r, must);
  } else {
    pub_open(r, must);
    sub_open(r, &r->a, must);
  }
  if (r->o->victim) sub_open(r, &r->v, must);
  /* Bindings settle: P binds, the subscribers acknowledge. */
  p_update(r);
  if (r->a.sub) shmbus_subscriber_publishers(r->a.sub);
  if (r->v.sub) shmbus_subscriber_publishers(r->v.sub);
  if (r->pub) {
    int ready = shmbus_publisher_update(r->pub);
    int want = (r->a.sub != NULL) + (r->v.sub != NULL);
    FZ_ASSERT(!must || ready == want, "after setup %d subscribers are ready, not %d", ready, want);
  }
}

static void step(run *r, enum fz_op op, fz_in *in) {
  switch (op) {
  case FZ_OP_SEND: p_send(r, in); break;
  case FZ_OP_LOAN: p_loan(r, in); break;
  case FZ_OP_PUBLISH: p_publish(r, in); break;
  case FZ_OP_DISCARD: p_discard(r, in); break;
  case FZ_OP_UPDATE: p_update(r); break;
  case FZ_OP_PUB_REOPEN:
    pub_close(r);
    pub_open(r, 0);
    break;
  case FZ_OP_A_TAKE: sub_take(r, &r->a, 0, 0); break;
  case FZ_OP_A_TAKE_LATEST: sub_take(r, &r->a, 1, 0); break;
  case FZ_OP_A_RELEASE: sub_release(r, &r->a, in, 0); break;
  case FZ_OP_A_RELEASE_FORGED: sub_release_forged(r, &r->a, in); break;
  case FZ_OP_A_WAIT: sub_wait(r, &r->a, in); break;
  case FZ_OP_A_PUBLISHERS:
    if (r->a.sub) fz_count("A publishers", shmbus_subscriber_publishers(r->a.sub));
    break;
  case FZ_OP_A_LOST:
    if (r->a.sub) (void)shmbus_subscriber_lost(r->a.sub);
    break;
  case FZ_OP_A_REOPEN:
    sub_close(&r->a);
    sub_open(r, &r->a, 0);
    break;
  case FZ_OP_V_TAKE: sub_take(r, &r->v, 0, 1); break;
  case FZ_OP_V_TAKE_LATEST: sub_take(r, &r->v, 1, 1); break;
  case FZ_OP_V_RELEASE: sub_release(r, &r->v, in, 1); break;
  case FZ_OP_W_CONN: w_conn(r, in); break;
  case FZ_OP_W_SUBRING: w_subring(r, in); break;
  case FZ_OP_W_DONE: w_done(r, in); break;
  case FZ_OP_W_PUSH_DONE: w_push_done(r, in); break;
  case FZ_OP_W_CHUNK: w_chunk(r, in); break;
  case FZ_OP_W_OWN_SLOT: w_own_slot(r, in); break;
  case FZ_OP_W_BLOCK: w_block(r, in); break;
  case FZ_OP_COUNT: break;
  }
}

int fz_ports_run(const uint8_t *data, size_t size, const fz_ports_opts *o) {
  fz_in in = {data, size};
  uint8_t c0 = fz_u8(&in), c1 = fz_u8(&in);
  fz_service *svc = service_for(o, c0);
  if (svc == NULL) fz_fail("cannot prepare service %02x", c0 & 0x7fu);
  static run r; /* large: not on the stack */
  memset(&r, 0, sizeof r);
  r.o = o;
  r.svc = svc;
  r.a.slot = r.v.slot = -1;
  static const int64_t timeouts[] = {0, 1000 * 1000, 3 * 1000 * 1000, 20 * 1000 * 1000};
  r.block_timeout = timeouts[c1 % 4];
  fz_in script = in;
  if (o->hook) {
    script = fz_take_bytes(&in, fz_u16(&in));
    fz_hook_start(in);
  }
  fz_begin_iteration();
  setup(&r, c0);
  for (int n = 0; n < MAX_STEPS && script.n > 0; n++) {
    enum fz_op op = o->ops[fz_u8(&script) % o->nops];
    step(&r, op, &script);
    check_victim_held(&r);
  }
  drain_victim(&r);
  sub_close(&r.a);
  sub_close(&r.v);
  pub_close(&r);
  fz_hook_stop();
  fz_map_close(&r.svcmap);
  fz_remove_objects();
  return 0;
}

/* ---- seeds ---------------------------------------------------------------------------------- */

void fz_write_seed(const char *dir, const char *name, const uint8_t *data, size_t len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fz_fail("cannot write %s", path);
  if (write(fd, data, len) != (ssize_t)len) fz_fail("cannot write %s", path);
  close(fd);
}

typedef struct seed {
  const fz_ports_opts *o;
  uint8_t b[1024];
  size_t n;
  int skip; /* the last operation is not one of this harness's: drop its arguments */
} seed;

static void s_u8(seed *s, uint8_t v) {
  if (!s->skip && s->n < sizeof s->b) s->b[s->n++] = v;
}

static void s_op(seed *s, enum fz_op op) {
  for (size_t i = 0; i < s->o->nops; i++)
    if (s->o->ops[i] == op) {
      s->skip = 0;
      s_u8(s, (uint8_t)i);
      return;
    }
  s->skip = 1;
}

enum { C_OLDEST = 0, C_NEWEST = 1, C_BLOCK = 2 };
static uint8_t config(unsigned overflow, unsigned depth, unsigned held, int history,
                      int elements4) {
  return (uint8_t)(overflow | (depth - 1) << 2 | (held - 1) << 4 | (history ? 1 : 0) << 5 |
                   (elements4 ? 1 : 0) << 6);
}

static void emit(seed *s, const char *dir, const char *name, const uint8_t *hook, size_t hook_len) {
  uint8_t out[2048];
  size_t n = 0;
  memcpy(out, s->b, 2);
  n = 2;
  if (s->o->hook) {
    size_t script = s->n - 2;
    out[n++] = (uint8_t)script;
    out[n++] = (uint8_t)(script >> 8);
  }
  memcpy(out + n, s->b + 2, s->n - 2);
  n += s->n - 2;
  if (s->o->hook && hook_len) {
    memcpy(out + n, hook, hook_len);
    n += hook_len;
  }
  fz_write_seed(dir, name, out, n);
}

static void begin(seed *s, const fz_ports_opts *o, uint8_t c0, uint8_t c1) {
  memset(s, 0, sizeof *s);
  s->o = o;
  s->b[0] = c0;
  s->b[1] = c1;
  s->n = 2;
}

/* Regression inputs of issue 9's finding 3 (eviction without the in-flight
 * mark): a subscriber returns a queued chunk it never took, or rewinds its
 * head onto a chunk it returned, and the publisher then evicts it and drops
 * its reference twice; the chunk is loaned again while the victim holds it. */
static void regression_seeds(const char *dir, const fz_ports_opts *o) {
  seed s;
  begin(&s, o, config(C_OLDEST, 2, 1, 0, 0), 0);
  s_op(&s, FZ_OP_SEND);
  s_u8(&s, 8);
  s_op(&s, FZ_OP_SEND);
  s_u8(&s, 8);
  s_op(&s, FZ_OP_V_TAKE);
  s_op(&s, FZ_OP_W_PUSH_DONE);
  s_u8(&s, 0);
  s_op(&s, FZ_OP_UPDATE);
  s_op(&s, FZ_OP_SEND);
  s_u8(&s, 8);
  s_op(&s, FZ_OP_SEND);
  s_u8(&s, 8);
  emit(&s, dir, "regress-evict-returned", NULL, 0);
  begin(&s, o, config(C_OLDEST, 2, 1, 0, 0), 0);
  s_op(&s, FZ_OP_SEND);
  s_u8(&s, 8);
  s_op(&s, FZ_OP_SEND);
  s_u8(&s, 8);
  s_op(&s, FZ_OP_A_TAKE);
  s_op(&s, FZ_OP_A_RELEASE);
  s_u8(&s, 0);
  s_op(&s, FZ_OP_UPDATE);
  s_op(&s, FZ_OP_W_CONN);
  s_u8(&s, 4); /* head */
  s_u8(&s, 9); /* -1 */
  s_op(&s, FZ_OP_V_TAKE);
  s_op(&s, FZ_OP_SEND);
  s_u8(&s, 8);
  s_op(&s, FZ_OP_SEND);
  s_u8(&s, 8);
  emit(&s, dir, "regress-rewound-head", NULL, 0);
}

void fz_ports_seeds(const char *dir, const fz_ports_opts *o) {
  seed s;
  char name[64];
  regression_seeds(dir, o);
  /* A quiet hook stream and a busy one (fuzz_double_fetch). */
  uint8_t quiet[64], busy[256];
  memset(quiet, 0, sizeof quiet);
  for (size_t i = 0; i < sizeof busy; i++) busy[i] = (uint8_t)(i % 7 == 3 ? 0x81 + i % 13 : 0);
  for (unsigned ov = C_OLDEST; ov <= C_BLOCK; ov++) {
    for (int hist = 0; hist <= 1; hist++) {
      /* publish, take, release on both sides */
      begin(&s, o, config(ov, 2, 2, hist, 0), 1);
      for (int i = 0; i < 3; i++) {
        s_op(&s, FZ_OP_SEND);
        s_u8(&s, 8);
      }
      s_op(&s, FZ_OP_A_TAKE);
      s_op(&s, FZ_OP_V_TAKE);
      s_op(&s, FZ_OP_A_RELEASE);
      s_u8(&s, 0);
      s_op(&s, FZ_OP_V_RELEASE);
      s_u8(&s, 0);
      s_op(&s, FZ_OP_A_TAKE_LATEST);
      s_op(&s, FZ_OP_V_TAKE_LATEST);
      s_op(&s, FZ_OP_UPDATE);
      s_op(&s, FZ_OP_A_REOPEN);
      s_op(&s, FZ_OP_A_TAKE);
      snprintf(name, sizeof name, "basic-%u-%d", ov, hist);
      emit(&s, dir, name, quiet, sizeof quiet);
      /* loans */
      begin(&s, o, config(ov, 4, 1, hist, 1), 0);
      s_op(&s, FZ_OP_LOAN);
      s_u8(&s, 3);
      s_op(&s, FZ_OP_LOAN);
      s_u8(&s, 1);
      s_op(&s, FZ_OP_LOAN);
      s_u8(&s, 0);
      s_op(&s, FZ_OP_PUBLISH);
      s_u8(&s, 0);
      s_op(&s, FZ_OP_PUBLISH);
      s_u8(&s, 0x10);
      s_u8(&s, 5);
      s_op(&s, FZ_OP_LOAN);
      s_u8(&s, 0);
      s_op(&s, FZ_OP_DISCARD);
      s_u8(&s, 0);
      s_op(&s, FZ_OP_A_TAKE);
      s_op(&s, FZ_OP_A_RELEASE_FORGED);
      s_u8(&s, 0);
      s_u8(&s, 3);
      s_u8(&s, 1);
      s_u8(&s, 0);
      s_op(&s, FZ_OP_A_WAIT);
      s_u8(&s, 1);
      s_op(&s, FZ_OP_A_PUBLISHERS);
      s_op(&s, FZ_OP_PUB_REOPEN);
      s_op(&s, FZ_OP_SEND);
      s_u8(&s, 16);
      s_op(&s, FZ_OP_A_TAKE);
      snprintf(name, sizeof name, "loans-%u-%d", ov, hist);
      emit(&s, dir, name, busy, sizeof busy);
    }
    /* a full queue: eviction, drops or blocking */
    begin(&s, o, config(ov, 2, 1, 0, 0), 0);
    for (int i = 0; i < 6; i++) {
      s_op(&s, FZ_OP_SEND);
      s_u8(&s, 8);
    }
    s_op(&s, FZ_OP_A_TAKE);
    s_op(&s, FZ_OP_V_TAKE);
    s_op(&s, FZ_OP_A_LOST);
    snprintf(name, sizeof name, "full-%u", ov);
    emit(&s, dir, name, busy, sizeof busy);
    /* a subscriber's completion ring written behind the library's back */
    begin(&s, o, config(ov, 2, 1, 1, 0), 0);
    s_op(&s, FZ_OP_SEND);
    s_u8(&s, 8);
    s_op(&s, FZ_OP_SEND);
    s_u8(&s, 8);
    s_op(&s, FZ_OP_W_PUSH_DONE);
    s_u8(&s, 1);
    s_op(&s, FZ_OP_UPDATE);
    s_op(&s, FZ_OP_SEND);
    s_u8(&s, 8);
    s_op(&s, FZ_OP_W_DONE);
    s_u8(&s, 0);
    s_u8(&s, 6);
    s_u8(&s, 2);
    s_op(&s, FZ_OP_W_CONN);
    s_u8(&s, 5); /* done_tail */
    s_u8(&s, 8); /* +1 */
    s_op(&s, FZ_OP_LOAN);
    s_u8(&s, 0);
    s_op(&s, FZ_OP_V_TAKE);
    snprintf(name, sizeof name, "done-%u", ov);
    emit(&s, dir, name, quiet, sizeof quiet);
    /* the publisher's words and chunk headers written under the subscriber */
    begin(&s, o, config(ov, 4, 2, 0, 1), 0);
    s_op(&s, FZ_OP_SEND);
    s_u8(&s, 8);
    s_op(&s, FZ_OP_W_CHUNK);
    s_u8(&s, 0);
    s_u8(&s, 3); /* payload_bytes */
    s_u8(&s, 3); /* special */
    s_u8(&s, 7); /* max_payload + 1 */
    s_op(&s, FZ_OP_A_TAKE);
    s_op(&s, FZ_OP_W_SUBRING);
    s_u8(&s, 1);
    s_u8(&s, 7); /* a slot word */
    s_u8(&s, 0);
    s_u8(&s, 2);
    s_op(&s, FZ_OP_A_TAKE);
    s_op(&s, FZ_OP_W_CONN);
    s_u8(&s, 4); /* head */
    s_u8(&s, 9); /* -1 */
    s_op(&s, FZ_OP_SEND);
    s_u8(&s, 8);
    s_op(&s, FZ_OP_A_TAKE);
    s_op(&s, FZ_OP_W_CONN);
    s_u8(&s, 0); /* sub_id */
    s_u8(&s, 0);
    s_u8(&s, 0);
    s_op(&s, FZ_OP_A_TAKE);
    s_op(&s, FZ_OP_W_OWN_SLOT);
    s_u8(&s, 2); /* wait_mode */
    s_u8(&s, 0);
    s_u8(&s, 1);
    s_op(&s, FZ_OP_A_WAIT);
    s_u8(&s, 0);
    s_op(&s, FZ_OP_W_BLOCK);
    s_u8(&s, 8);
    s_u8(&s, 0);
    s_u8(&s, 2);
    s_u8(&s, 0xff);
    s_op(&s, FZ_OP_SEND);
    s_u8(&s, 8);
    snprintf(name, sizeof name, "words-%u", ov);
    emit(&s, dir, name, busy, sizeof busy);
  }
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the core's internals: the publisher's chunk pool, the
 * submission and completion rings (including position tags wrapping around
 * 2^32 and 2^64), the layout computation, names, segment headers and the
 * service's port registry.
 */
#include <string.h>

#include "support.h"

#include "internal.h"
#include "layout.h"
#include "pool.h"
#include "ring.h"
#include "service.h"

/* ---- pool -------------------------------------------------------------------- */

static void test_pool_fresh_order(void **state) {
  (void)state;
  shmbus__pool pool;
  ts_assert_ok(shmbus__pool_init(&pool, 5));
  assert_int_equal(pool.chunks, 5);
  assert_int_equal(pool.free_count, 5);
  uint32_t c = 99;
  for (uint32_t want = 0; want < 5; want++) {
    assert_int_equal(shmbus__pool_get(&pool, &c), 1);
    assert_int_equal(c, want); /* a fresh pool loans 0, 1, 2, ... */
    assert_int_equal(pool.refs[c], 1);
  }
  c = 77;
  assert_int_equal(shmbus__pool_get(&pool, &c), 0);
  assert_int_equal(c, 77); /* untouched when empty */
  assert_int_equal(pool.free_count, 0);
  shmbus__pool_destroy(&pool);
  assert_null(pool.refs);
  assert_null(pool.free_stack);
}

static void test_pool_lifo_and_refs(void **state) {
  (void)state;
  shmbus__pool pool;
  ts_assert_ok(shmbus__pool_init(&pool, 4));
  uint32_t c[4];
  for (int i = 0; i < 4; i++) assert_int_equal(shmbus__pool_get(&pool, &c[i]), 1);

  /* Freed in the order 2, 0: the most recently freed comes back first. */
  shmbus__pool_unref(&pool, 2);
  shmbus__pool_unref(&pool, 0);
  assert_int_equal(pool.free_count, 2);
  uint32_t got = UINT32_MAX; /* written only when a chunk is free */
  assert_int_equal(shmbus__pool_get(&pool, &got), 1);
  assert_int_equal(got, 0);
  assert_int_equal(shmbus__pool_get(&pool, &got), 1);
  assert_int_equal(got, 2);
  assert_int_equal(shmbus__pool_get(&pool, &got), 0);

  /* A chunk is free exactly when its last reference goes. */
  shmbus__pool_ref(&pool, 3);
  shmbus__pool_ref(&pool, 3);
  assert_int_equal(pool.refs[3], 3);
  shmbus__pool_unref(&pool, 3);
  shmbus__pool_unref(&pool, 3);
  assert_int_equal(pool.free_count, 0);
  assert_int_equal(pool.refs[3], 1);
  shmbus__pool_unref(&pool, 3);
  assert_int_equal(pool.free_count, 1);
  assert_int_equal(pool.refs[3], 0);
  assert_int_equal(shmbus__pool_get(&pool, &got), 1);
  assert_int_equal(got, 3);
  assert_int_equal(pool.refs[3], 1); /* a reused chunk starts again at one */
  shmbus__pool_destroy(&pool);
}

/* ---- rings --------------------------------------------------------------------- */

typedef struct ring_fixture {
  shmbus__layout layout;
  void *block;
  shmbus__ring ring;
} ring_fixture;

static shmbus__service_config small_config(void) {
  shmbus__service_config cfg;
  memset(&cfg, 0, sizeof cfg);
  strcpy((char *)cfg.name, "unit");
  strcpy((char *)cfg.type_name, "u64");
  cfg.element_size = 8;
  cfg.element_align = 8;
  cfg.max_elements = 1;
  cfg.max_publishers = 1;
  cfg.max_subscribers = 1;
  cfg.queue_depth = 4;
  cfg.history = 0;
  cfg.max_loans = 2;
  cfg.max_held = 3;
  cfg.overflow = SHMBUS_OVERFLOW_DROP_OLDEST;
  return cfg;
}

static void ring_setup(ring_fixture *f) {
  shmbus__service_config cfg = small_config();
  ts_assert_ok(shmbus__layout_compute(&cfg, &f->layout));
  assert_int_equal(f->layout.queue_cap, 4);
  assert_int_equal(f->layout.done_cap, 8);
  f->block = ts_aligned_alloc(SHMBUS__CACHE_LINE, f->layout.conn_stride);
  assert_non_null(f->block);
  memset(f->block, 0, f->layout.conn_stride);
  shmbus__ring_view(&f->ring, f->block, f->layout.sub_ring_offset, f->layout.done_ring_offset,
                    f->layout.queue_cap, f->layout.done_cap);
  assert_ptr_equal(f->ring.conn, f->block);
  assert_int_equal(f->ring.slot_mask, 3);
  assert_int_equal(f->ring.done_mask, 7);
}

/* Puts the ring at position `pos` as if it had been used since 0: head and
 * tail at pos, every slot holding the word of its previous lap. */
static void ring_seek(ring_fixture *f, uint64_t pos) {
  uint64_t cap = f->layout.queue_cap;
  for (uint64_t p = pos - cap; p != pos; p++)
    f->ring.slots[p & f->ring.slot_mask] = shmbus__slot_word(p, (uint32_t)(1000 + (p & 0xff)));
  f->ring.conn->head = pos;
}

static void test_ring_slot_word(void **state) {
  (void)state;
  assert_int_equal(shmbus__slot_word(0, 5), (UINT64_C(1) << 32) | 5);
  assert_int_equal(shmbus__slot_word(41, 0xffffffffu), (UINT64_C(42) << 32) | 0xffffffffu);
  /* The tag is the low 32 bits of pos + 1. */
  assert_int_equal(shmbus__slot_word(UINT64_C(0xffffffff), 9), 9);
  assert_int_equal(shmbus__slot_word(UINT64_C(0x100000000), 9), (UINT64_C(1) << 32) | 9);
}

static void test_ring_put_pop(void **state) {
  (void)state;
  ring_fixture f;
  ring_setup(&f);
  uint32_t chunk = 1234;
  assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 0); /* fresh ring: empty */
  assert_int_equal(chunk, 1234);
  assert_int_equal(f.ring.conn->head, 0);

  shmbus__ring_put(&f.ring, 0, 7);
  assert_int_equal(f.ring.slots[0], shmbus__slot_word(0, 7));
  assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 1);
  assert_int_equal(chunk, 7);
  assert_int_equal(f.ring.conn->head, 1);
  assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 0);
  assert_int_equal(f.ring.conn->head, 1);

  /* Fill to the depth, then drain in order. */
  for (uint64_t t = 1; t <= 4; t++) shmbus__ring_put(&f.ring, t, (uint32_t)(10 + t));
  assert_int_equal(shmbus__ring_head(&f.ring), 1);
  for (uint64_t t = 1; t <= 4; t++) {
    assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 1);
    assert_int_equal(chunk, 10 + t);
  }
  assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 0);
  assert_int_equal(f.ring.conn->head, 5);
  ts_aligned_free(f.block);
}

static void test_ring_stale_tag_is_empty(void **state) {
  (void)state;
  ring_fixture f;
  ring_setup(&f);
  /* Slot 0 holds position 0's word; at head 4 (same slot) it is stale. */
  shmbus__ring_put(&f.ring, 0, 3);
  f.ring.conn->head = 4;
  uint32_t chunk = 0;
  assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 0);
  assert_int_equal(f.ring.conn->head, 4);
  /* A word for a future lap is not taken either. */
  f.ring.slots[0] = shmbus__slot_word(8, 3);
  assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 0);
  shmbus__ring_put(&f.ring, 4, 21);
  assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 1);
  assert_int_equal(chunk, 21);
  ts_aligned_free(f.block);
}

/* A voided ring (a connection the publisher cut off) reads empty at every
 * head an honest subscriber can be at, also across the 2^32 tag wrap. */
static void test_ring_void(void **state) {
  (void)state;
  ring_fixture f;
  ring_setup(&f);
  const uint64_t starts[] = {0, 3, 6, UINT64_C(0xffffffff) - 2, UINT64_C(0x100000000) + 1};
  for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
    uint64_t cap = f.layout.queue_cap;
    ring_seek(&f, starts[i]);
    for (uint64_t t = starts[i]; t != starts[i] + cap; t++) shmbus__ring_put(&f.ring, t, 7);
    uint64_t tail = starts[i] + cap;
    shmbus__ring_void(&f.ring, tail);
    for (uint64_t h = tail - cap; h != tail + 1; h++) {
      f.ring.conn->head = h;
      uint32_t chunk = 99;
      assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 0);
      assert_int_equal(chunk, 99);
      assert_true(shmbus__ring_empty(&f.ring));
    }
  }
  ts_aligned_free(f.block);
}

static void test_ring_evict(void **state) {
  (void)state;
  ring_fixture f;
  ring_setup(&f);
  for (uint64_t t = 0; t < 4; t++) shmbus__ring_put(&f.ring, t, (uint32_t)(100 + t));
  uint64_t head = shmbus__ring_head(&f.ring);
  assert_int_equal(head, 0);
  assert_int_equal(shmbus__ring_evict(&f.ring, &head), 1); /* oldest (100) is ours */
  assert_int_equal(f.ring.conn->head, 1);

  /* The subscriber continues after the evicted entry. */
  uint32_t chunk = 0;
  assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 1);
  assert_int_equal(chunk, 101);

  /* Evict with a stale head: refused, and we learn the current head. */
  head = 1;
  assert_int_equal(shmbus__ring_evict(&f.ring, &head), 0);
  assert_int_equal(head, 2);
  assert_int_equal(f.ring.conn->head, 2);
  /* Retrying with the value learnt works and skips 102. */
  assert_int_equal(shmbus__ring_evict(&f.ring, &head), 1);
  assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 1);
  assert_int_equal(chunk, 103);
  assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 0);
  ts_aligned_free(f.block);
}

static void test_ring_evict_after_pop_fails(void **state) {
  (void)state;
  ring_fixture f;
  ring_setup(&f);
  shmbus__ring_put(&f.ring, 0, 1);
  shmbus__ring_put(&f.ring, 1, 2);
  uint64_t seen = shmbus__ring_head(&f.ring); /* the publisher looks ... */
  uint32_t chunk = 0;
  assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 1); /* ... the subscriber wins */
  assert_int_equal(chunk, 1);
  assert_int_equal(shmbus__ring_evict(&f.ring, &seen), 0); /* each entry has one owner */
  assert_int_equal(seen, 1);
  assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 1);
  assert_int_equal(chunk, 2);
  ts_aligned_free(f.block);
}

/* Runs entries through the ring from `start` for several laps, one at a
 * time and in bursts that fill it, checking every chunk and emptiness. */
static void ring_run_from(uint64_t start) {
  ring_fixture f;
  ring_setup(&f);
  ring_seek(&f, start);
  uint64_t tail = start;
  uint32_t chunk = 0, next = 0;
  assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 0);
  for (int i = 0; i < 12; i++) {
    shmbus__ring_put(&f.ring, tail++, next);
    assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 1);
    assert_int_equal(chunk, next);
    next++;
    assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 0);
  }
  for (int burst = 0; burst < 6; burst++) {
    uint32_t first = next;
    for (uint64_t k = 0; k < f.layout.queue_cap; k++) shmbus__ring_put(&f.ring, tail++, next++);
    assert_int_equal(tail - shmbus__ring_head(&f.ring), f.layout.queue_cap);
    if (burst & 1) { /* drop-oldest: the publisher takes the first back */
      uint64_t head = shmbus__ring_head(&f.ring);
      assert_int_equal(shmbus__ring_evict(&f.ring, &head), 1);
      first++;
    }
    for (uint32_t want = first; want != next; want++) {
      assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 1);
      assert_int_equal(chunk, want);
    }
    assert_int_equal(shmbus__ring_pop(&f.ring, &chunk), 0);
  }
  assert_int_equal(f.ring.conn->head, tail);
  ts_aligned_free(f.block);
}

static void test_ring_tag_wrap_2_32(void **state) {
  (void)state;
  /* Positions crossing 2^32, where the 32-bit tag wraps (pos + 1 == 2^32
   * gives tag 0), starting at every offset around it. */
  for (uint64_t back = 0; back <= 6; back++) ring_run_from((UINT64_C(1) << 32) - back);
  ring_run_from((UINT64_C(5) << 32) - 3);
}

static void test_ring_position_wrap_2_64(void **state) {
  (void)state;
  ring_run_from(UINT64_MAX - 5);
  ring_run_from(UINT64_MAX);
}

static void test_done_ring_until_full(void **state) {
  (void)state;
  ring_fixture f;
  ring_setup(&f);
  uint64_t tail = 0, cached = 0;
  uint32_t cap = f.layout.done_cap;
  for (uint32_t i = 0; i < cap; i++)
    assert_int_equal(shmbus__done_push(&f.ring, &tail, &cached, 50 + i), 1);
  assert_int_equal(tail, cap);
  assert_int_equal(shmbus__done_push(&f.ring, &tail, &cached, 999), 0); /* full */
  assert_int_equal(tail, cap);
  assert_int_equal(f.ring.conn->done_tail, cap);

  /* The publisher reads half and says so. */
  assert_int_equal(shmbus__done_available(&f.ring), cap);
  for (uint64_t pos = 0; pos < cap / 2; pos++)
    assert_int_equal(shmbus__done_at(&f.ring, pos), 50 + pos);
  shmbus__done_consumed(&f.ring, cap / 2);
  assert_int_equal(f.ring.conn->done_head, cap / 2);

  /* Exactly that much room again; the entries not yet read are intact. */
  for (uint32_t i = 0; i < cap / 2; i++)
    assert_int_equal(shmbus__done_push(&f.ring, &tail, &cached, 200 + i), 1);
  assert_int_equal(cached, cap / 2);
  assert_int_equal(shmbus__done_push(&f.ring, &tail, &cached, 999), 0);
  for (uint64_t pos = cap / 2; pos < cap; pos++)
    assert_int_equal(shmbus__done_at(&f.ring, pos), 50 + pos);
  for (uint64_t pos = cap; pos < cap + cap / 2; pos++)
    assert_int_equal(shmbus__done_at(&f.ring, pos), 200 + (pos - cap));

  /* Positions wrap around 2^64 by unsigned difference. */
  tail = cached = UINT64_MAX - 2;
  f.ring.conn->done_head = tail;
  for (uint32_t i = 0; i < cap; i++)
    assert_int_equal(shmbus__done_push(&f.ring, &tail, &cached, i), 1);
  assert_int_equal(shmbus__done_push(&f.ring, &tail, &cached, 0), 0);
  assert_int_equal(tail, (UINT64_MAX - 2) + cap);
  ts_aligned_free(f.block);
}

/* ---- layout ---------------------------------------------------------------------- */

static shmbus__service_config default_config(void) {
  shmbus__service_config cfg = small_config();
  cfg.element_size = 32;
  cfg.element_align = 8;
  cfg.max_elements = 1;
  cfg.max_publishers = 4;
  cfg.max_subscribers = 8;
  cfg.queue_depth = 16;
  cfg.history = 0;
  cfg.max_loans = 4;
  cfg.max_held = 4;
  return cfg;
}

static void test_layout_defaults(void **state) {
  (void)state;
  shmbus__service_config cfg = default_config();
  shmbus__layout l;
  ts_assert_ok(shmbus__layout_compute(&cfg, &l));
  assert_int_equal(l.chunks, 8 * (16 + 4) + 0 + 4);
  assert_int_equal(l.payload_offset, 32); /* header and payload share a line */
  assert_int_equal(l.max_payload, 32);
  assert_int_equal(l.chunk_stride, 64);
  assert_int_equal(l.chunks_offset, 64);
  assert_int_equal(l.data_size, 64 + 164 * 64);
  assert_int_equal(l.queue_cap, 16);
  assert_int_equal(l.done_cap, 32);
  assert_int_equal(l.sub_ring_offset, sizeof(shmbus__conn));
  assert_int_equal(l.done_ring_offset, 256 + 16 * 8);
  /* A page of its own per connection, per slot, and for the wake words
   * (confinement, layout.h). */
  uint64_t page = shmbus__page_size();
  assert_int_equal(l.page, page);
  assert_int_equal(l.conn_stride, page);
  assert_int_equal(l.control_size, page + 8 * page);
  assert_int_equal(l.wait_offset, page * 2); /* 12 slots of 64 bytes on page 1 */
  assert_int_equal(l.wake_offset, page * (2 + 8));
  assert_int_equal(l.service_size, page * (2 + 8 + 1));
  assert_int_equal(shmbus__layout_slot_offset(&l, &cfg, SHMBUS__SUBSCRIBER, 2), page + 6 * 64);
  assert_int_equal(shmbus__layout_wait_offset(&l, 3), page * 5);
  assert_int_equal(shmbus__layout_conn_offset(&l, 3), page * 4);
}

static void test_layout_shapes(void **state) {
  (void)state;
  shmbus__service_config cfg = default_config();
  shmbus__layout l;

  /* Non power-of-two depth; history and loans in the pool formula. */
  cfg.queue_depth = 5;
  cfg.max_held = 4;
  cfg.history = 7;
  cfg.max_loans = 3;
  cfg.max_subscribers = 3;
  ts_assert_ok(shmbus__layout_compute(&cfg, &l));
  assert_int_equal(l.queue_cap, 8);
  assert_int_equal(l.done_cap, 16);
  assert_int_equal(l.chunks, 3 * (5 + 4) + 7 + 3);
  assert_int_equal(l.done_ring_offset, 256 + 64);
  assert_int_equal(l.conn_stride, shmbus__page_size());

  /* Large alignment: the chunk and the payload follow it. */
  cfg = default_config();
  cfg.element_size = 100;
  cfg.element_align = 128;
  cfg.max_elements = 3;
  ts_assert_ok(shmbus__layout_compute(&cfg, &l));
  assert_int_equal(l.payload_offset, 128);
  assert_int_equal(l.max_payload, 300);
  assert_int_equal(l.chunk_stride, 512); /* 128 + 300 rounded up to 128 */
  assert_int_equal(l.chunks_offset, 128);
  assert_int_equal(l.chunk_stride % 128, 0);

  /* Alignment 4096, element 1 byte. */
  cfg = default_config();
  cfg.element_size = 1;
  cfg.element_align = 4096;
  ts_assert_ok(shmbus__layout_compute(&cfg, &l));
  assert_int_equal(l.payload_offset, 4096);
  assert_int_equal(l.chunk_stride, 8192);
  assert_int_equal(l.chunks_offset, 4096);

  /* Odd element size, byte alignment: stride stays a cache-line multiple. */
  cfg = default_config();
  cfg.element_size = 33;
  cfg.element_align = 1;
  ts_assert_ok(shmbus__layout_compute(&cfg, &l));
  assert_int_equal(l.payload_offset, 32);
  assert_int_equal(l.chunk_stride, 128);

  /* Every limit at its maximum is accepted (only sizes are computed). */
  cfg = default_config();
  cfg.max_publishers = SHMBUS_MAX_PORTS;
  cfg.max_subscribers = SHMBUS_MAX_PORTS;
  cfg.queue_depth = SHMBUS_MAX_QUEUE_DEPTH;
  cfg.history = SHMBUS_MAX_HISTORY;
  cfg.max_loans = SHMBUS_MAX_LOANS;
  cfg.max_held = SHMBUS_MAX_HELD;
  ts_assert_ok(shmbus__layout_compute(&cfg, &l));
  assert_int_equal(l.chunks, 256u * (65536u + 65536u) + 65536u + 65536u);
  assert_int_equal(l.queue_cap, 65536);
  assert_int_equal(l.done_cap, 131072);
}

static void test_layout_too_large(void **state) {
  (void)state;
  shmbus__service_config cfg = default_config();
  shmbus__layout l;
  cfg.element_size = 1u << 20;
  cfg.max_elements = 1u << 10; /* exactly SHMBUS_MAX_PAYLOAD */
  ts_assert_ok(shmbus__layout_compute(&cfg, &l));
  assert_int_equal(l.max_payload, SHMBUS_MAX_PAYLOAD);
  cfg.max_elements++;
  ts_assert_err(shmbus__layout_compute(&cfg, &l), SHMBUS_ERR_TOO_LARGE);

  /* Products of two 32-bit values must not wrap. */
  cfg = default_config();
  cfg.element_size = UINT32_MAX;
  cfg.max_elements = UINT32_MAX;
  ts_assert_err(shmbus__layout_compute(&cfg, &l), SHMBUS_ERR_TOO_LARGE);

  /* The data segment over 2^46 bytes. */
  cfg = default_config();
  cfg.element_size = 1u << 20;
  cfg.max_elements = 1u << 10;
  cfg.max_subscribers = SHMBUS_MAX_PORTS;
  cfg.queue_depth = SHMBUS_MAX_QUEUE_DEPTH;
  cfg.max_held = SHMBUS_MAX_HELD;
  ts_assert_err(shmbus__layout_compute(&cfg, &l), SHMBUS_ERR_TOO_LARGE);
}

static void test_layout_limits(void **state) {
  (void)state;
  shmbus__layout l;
  struct {
    const char *what;
    size_t offset;
    uint32_t bad;
  } cases[] = {
#define CASE(field, value) {#field "=" #value, offsetof(shmbus__service_config, field), value}
      CASE(element_size, 0),
      CASE(element_align, 0),
      CASE(element_align, 3),
      CASE(element_align, 48),
      CASE(element_align, 8192),
      CASE(max_elements, 0),
      CASE(max_publishers, 0),
      CASE(max_publishers, SHMBUS_MAX_PORTS + 1),
      CASE(max_subscribers, 0),
      CASE(max_subscribers, SHMBUS_MAX_PORTS + 1),
      CASE(queue_depth, 0),
      CASE(queue_depth, SHMBUS_MAX_QUEUE_DEPTH + 1),
      CASE(history, SHMBUS_MAX_HISTORY + 1),
      CASE(max_loans, 0),
      CASE(max_loans, SHMBUS_MAX_LOANS + 1),
      CASE(max_held, 0),
      CASE(max_held, SHMBUS_MAX_HELD + 1),
      CASE(overflow, 0), /* DEFAULT is resolved before a config exists */
      CASE(overflow, 4), /* past SHMBUS_OVERFLOW_BLOCK */
      CASE(overflow, UINT32_MAX),
#undef CASE
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    shmbus__service_config cfg = default_config();
    memcpy((char *)&cfg + cases[i].offset, &cases[i].bad, sizeof(uint32_t));
    memset(&l, 0xab, sizeof l);
    int r = shmbus__layout_compute(&cfg, &l);
    if (r != SHMBUS_ERR_INVAL)
      fail_msg("%s: got %s, expected INVAL", cases[i].what, shmbus_err_name(r));
    assert_int_equal(l.chunks, 0); /* the out-parameter is cleared */
    assert_int_equal(l.data_size, 0);
  }
  /* history 0 and overflow DROP_NEWEST are fine. */
  shmbus__service_config cfg = default_config();
  cfg.overflow = SHMBUS_OVERFLOW_DROP_NEWEST;
  cfg.history = 0;
  ts_assert_ok(shmbus__layout_compute(&cfg, &l));
}

/* ---- names ---------------------------------------------------------------------- */

static void test_names_domain(void **state) {
  (void)state;
  char s[64];
  ts_assert_ok(shmbus__check_domain("a"));
  ts_assert_ok(shmbus__check_domain("Az09_-"));
  memset(s, 'd', 32);
  s[32] = '\0';
  ts_assert_ok(shmbus__check_domain(s));
  s[32] = 'd';
  s[33] = '\0';
  ts_assert_err(shmbus__check_domain(s), SHMBUS_ERR_NAME);
  ts_assert_err(shmbus__check_domain(""), SHMBUS_ERR_NAME);
  ts_assert_err(shmbus__check_domain(NULL), SHMBUS_ERR_INVAL);
  const char *bad[] = {"a.b", "a/b", "a b", "a:b", "\xc3\xa9", "a\n", ".", "..", "a*"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    ts_assert_err(shmbus__check_domain(bad[i]), SHMBUS_ERR_NAME);
}

static void test_names_service_and_type(void **state) {
  (void)state;
  char s[300];
  memset(s, 'x', sizeof s);
  s[255] = '\0';
  ts_assert_ok(shmbus__check_service_name(s));
  s[255] = 'x';
  s[256] = '\0';
  ts_assert_err(shmbus__check_service_name(s), SHMBUS_ERR_NAME);
  memset(s, 'y', sizeof s);
  s[127] = '\0';
  ts_assert_ok(shmbus__check_type_name(s));
  s[127] = 'y';
  s[128] = '\0';
  ts_assert_err(shmbus__check_type_name(s), SHMBUS_ERR_NAME);

  ts_assert_ok(shmbus__check_service_name("!~/a.b:c"));
  ts_assert_err(shmbus__check_service_name(""), SHMBUS_ERR_NAME);
  ts_assert_err(shmbus__check_service_name(NULL), SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus__check_type_name(""), SHMBUS_ERR_NAME);
  ts_assert_err(shmbus__check_type_name(NULL), SHMBUS_ERR_INVAL);
  const char *bad[] = {"a b", "a\tb", "\x01", "a\x7f", "\x80", "\xff", "caf\xc3\xa9"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ts_assert_err(shmbus__check_service_name(bad[i]), SHMBUS_ERR_NAME);
    ts_assert_err(shmbus__check_type_name(bad[i]), SHMBUS_ERR_NAME);
  }
}

static void test_names_hash_and_objects(void **state) {
  (void)state;
  /* FNV-1a 64 reference values. */
  assert_int_equal(shmbus__hash64(""), UINT64_C(0xcbf29ce484222325));
  assert_int_equal(shmbus__hash64("a"), UINT64_C(0xaf63dc4c8601ec8c));
  assert_int_equal(shmbus__hash64("foobar"), UINT64_C(0x85944171f73967e8));
  assert_int_equal(shmbus__hash64("demo/Imu"), ts_fnv1a64("demo/Imu"));

  char name[SHMBUS__OBJECT_NAME_MAX], want[128];
  shmbus__object_name(name, "dom", UINT64_C(0xa), "s");
  assert_string_equal(name, "shmbus.dom.000000000000000a.s");
  ts_service_object_name(want, sizeof want, "dom", "foobar");
  shmbus__object_name(name, "dom", shmbus__hash64("foobar"), "s");
  assert_string_equal(name, want);
  assert_string_equal(name, "shmbus.dom.85944171f73967e8.s");

  shmbus__publisher_object_name(name, "dom", 1, UINT64_C(0x2f), 1);
  assert_string_equal(name, "shmbus.dom.0000000000000001.p2f.d");
  shmbus__publisher_object_name(name, "dom", 1, UINT64_C(0x2f), 0);
  assert_string_equal(name, "shmbus.dom.0000000000000001.p2f.c");

  /* The longest domain and the largest id still fit the OS limit (NAME_MAX
   * 255) and our buffer. */
  char domain[SHMBUS_DOMAIN_MAX + 1];
  memset(domain, 'D', SHMBUS_DOMAIN_MAX);
  domain[SHMBUS_DOMAIN_MAX] = '\0';
  shmbus__publisher_object_name(name, domain, UINT64_MAX, (UINT64_C(1) << 62) - 1, 1);
  assert_int_equal(strlen(name), 7 + 32 + 1 + 16 + 2 + 16 + 2);
  assert_true(strlen(name) < SHMBUS__OBJECT_NAME_MAX);
}

/* ---- segment headers --------------------------------------------------------- */

typedef struct header_fixture {
  void *mem;
  shmbus__segment seg;
  shmbus__seg_header *hdr;
} header_fixture;

static void header_setup(header_fixture *f, uint64_t size) {
  f->mem = ts_aligned_alloc(64, size);
  assert_non_null(f->mem);
  memset(f->mem, 0, size);
  f->seg.base = f->mem;
  f->seg.size = size;
  f->hdr = f->mem;
  shmbus__seg_header_init(f->hdr, SHMBUS__SEG_DATA, size, 11, 22);
}

static void test_seg_header(void **state) {
  (void)state;
  header_fixture f;
  header_setup(&f, 4096);
  assert_int_equal(f.hdr->magic, SHMBUS__MAGIC);
  assert_int_equal(f.hdr->layout_version, SHMBUS__LAYOUT_VERSION);
  assert_int_equal(f.hdr->kind, SHMBUS__SEG_DATA);
  assert_int_equal(f.hdr->header_size, 64);
  assert_int_equal(f.hdr->total_size, 4096);
  assert_int_equal(f.hdr->creator_node_id, 11);
  assert_int_equal(f.hdr->generation, 22);
  assert_int_equal(f.hdr->initialised, 0); /* not before publish */

  /* Not published: NOT_READY once the deadline passed (here: at once). */
  uint64_t t0 = ts_now_ns();
  ts_assert_err(shmbus__seg_header_wait(&f.seg, SHMBUS__SEG_DATA, t0), SHMBUS_ERR_NOT_READY);
  /* A foreign magic is refused without waiting. */
  f.hdr->magic = 1;
  ts_assert_err(shmbus__seg_header_wait(&f.seg, SHMBUS__SEG_DATA, t0 + UINT64_C(60000000000)),
                SHMBUS_ERR_CORRUPT);
  f.hdr->magic = SHMBUS__MAGIC;

  shmbus__seg_header_publish(f.hdr);
  assert_int_equal(f.hdr->initialised, SHMBUS__INITIALISED);
  ts_assert_ok(shmbus__seg_header_wait(&f.seg, SHMBUS__SEG_DATA, 0));
  ts_assert_err(shmbus__seg_header_wait(&f.seg, SHMBUS__SEG_CONTROL, 0), SHMBUS_ERR_CORRUPT);

  f.hdr->layout_version = SHMBUS__LAYOUT_VERSION + 1;
  ts_assert_err(shmbus__seg_header_wait(&f.seg, SHMBUS__SEG_DATA, 0), SHMBUS_ERR_VERSION);
  f.hdr->layout_version = SHMBUS__LAYOUT_VERSION;
  f.hdr->magic = ~SHMBUS__MAGIC;
  ts_assert_err(shmbus__seg_header_wait(&f.seg, SHMBUS__SEG_DATA, 0), SHMBUS_ERR_CORRUPT);
  f.hdr->magic = SHMBUS__MAGIC;
  f.hdr->total_size = 4097; /* more than is mapped */
  ts_assert_err(shmbus__seg_header_wait(&f.seg, SHMBUS__SEG_DATA, 0), SHMBUS_ERR_CORRUPT);
  f.hdr->total_size = 63;
  ts_assert_err(shmbus__seg_header_wait(&f.seg, SHMBUS__SEG_DATA, 0), SHMBUS_ERR_CORRUPT);
  f.hdr->total_size = 4096;
  f.hdr->header_size = 128;
  ts_assert_err(shmbus__seg_header_wait(&f.seg, SHMBUS__SEG_DATA, 0), SHMBUS_ERR_CORRUPT);
  f.hdr->header_size = 64;
  ts_assert_ok(shmbus__seg_header_wait(&f.seg, SHMBUS__SEG_DATA, 0));

  /* A mapping shorter than a header. */
  f.seg.size = 32;
  ts_assert_err(shmbus__seg_header_wait(&f.seg, SHMBUS__SEG_DATA, 0), SHMBUS_ERR_CORRUPT);
  ts_aligned_free(f.mem);
}

/* ---- the service's port registry ------------------------------------------------ */

static void test_service_registry(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  o.max_publishers = 2;
  o.max_subscribers = 3;
  shmbus__service a, b;
  ts_assert_ok(shmbus__service_attach(node, "registry", &o, &a));
  ts_assert_objects(env, 1);
  assert_int_equal(a.cfg.max_publishers, 2);
  assert_int_equal(a.cfg.max_subscribers, 3);
  assert_int_equal(a.cfg.queue_depth, 16); /* defaults filled in */
  assert_int_equal(a.cfg.max_loans, 4);
  assert_int_equal(a.cfg.max_held, 4);
  assert_int_equal(a.cfg.overflow, SHMBUS_OVERFLOW_DROP_OLDEST);
  assert_int_equal(a.shm->dyn.users, 1);
  assert_int_equal(a.hash, ts_fnv1a64("registry"));
  ts_assert_ok(shmbus__service_attach(node, "registry", &o, &b));
  assert_int_equal(a.shm->dyn.users, 2);

  uint32_t slot[4];
  uint64_t id[4];
  ts_assert_ok(shmbus__service_claim(&a, SHMBUS__PUBLISHER, &slot[0], &id[0]));
  ts_assert_ok(shmbus__service_claim(&b, SHMBUS__PUBLISHER, &slot[1], &id[1]));
  assert_int_not_equal(slot[0], slot[1]);
  assert_true(id[1] > id[0] && id[0] >= 1);
  ts_assert_err(shmbus__service_claim(&a, SHMBUS__PUBLISHER, &slot[2], &id[2]),
                SHMBUS_ERR_PORT_LIMIT);
  /* Claimed but not ready: invisible to the other side. */
  assert_int_equal(shmbus__service_slot(&a, SHMBUS__PUBLISHER, slot[0])->word, id[0] << 1);
  assert_int_equal(
      shmbus__slot_ready_id(shmbus__service_slot(&a, SHMBUS__PUBLISHER, slot[0])->word), 0);
  assert_int_equal(shmbus__service_slot(&a, SHMBUS__PUBLISHER, slot[0])->node_id, node->id);

  uint64_t gen = b.shm->dyn.pub_generation;
  shmbus__service_ready(&a, SHMBUS__PUBLISHER, slot[0], id[0]);
  assert_int_equal(
      shmbus__slot_ready_id(shmbus__service_slot(&b, SHMBUS__PUBLISHER, slot[0])->word), id[0]);
  assert_int_equal(b.shm->dyn.pub_generation, gen + 1);
  shmbus__service_leave(&a, SHMBUS__PUBLISHER, slot[0], id[0]);
  assert_int_equal(shmbus__service_slot(&b, SHMBUS__PUBLISHER, slot[0])->word, 0);
  assert_int_equal(b.shm->dyn.pub_generation, gen + 2);
  /* A freed slot can be claimed again, with a new id. */
  ts_assert_ok(shmbus__service_claim(&a, SHMBUS__PUBLISHER, &slot[2], &id[2]));
  assert_int_equal(slot[2], slot[0]);
  assert_true(id[2] > id[1]);

  /* Subscriber slots are separate from publisher slots. */
  gen = a.shm->dyn.sub_generation;
  for (int i = 0; i < 3; i++)
    ts_assert_ok(shmbus__service_claim(&b, SHMBUS__SUBSCRIBER, &slot[i], &id[i]));
  ts_assert_err(shmbus__service_claim(&b, SHMBUS__SUBSCRIBER, &slot[3], &id[3]),
                SHMBUS_ERR_PORT_LIMIT);
  shmbus__service_ready(&b, SHMBUS__SUBSCRIBER, slot[1], id[1]);
  assert_int_equal(a.shm->dyn.sub_generation, gen + 1);
  assert_int_equal(
      shmbus__slot_ready_id(shmbus__service_slot(&a, SHMBUS__SUBSCRIBER, slot[1])->word), id[1]);

  /* The last user to detach removes the service. */
  shmbus__service_detach(&a);
  assert_null(a.shm);
  ts_assert_objects(env, 1);
  assert_int_equal(b.shm->dyn.users, 1);
  shmbus__service_detach(&b);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

static void test_service_attach_errors_keep_nothing(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  shmbus__service svc;
  memset(&svc, 0x5a, sizeof svc);
  o.queue_depth = SHMBUS_MAX_QUEUE_DEPTH + 1;
  ts_assert_err(shmbus__service_attach(node, "x", &o, &svc), SHMBUS_ERR_INVAL);
  assert_null(svc.shm);
  assert_null(svc.node);
  o = ts_opts();
  ts_assert_err(shmbus__service_attach(node, "bad name", &o, &svc), SHMBUS_ERR_NAME);
  ts_assert_err(shmbus__service_attach(NULL, "x", &o, &svc), SHMBUS_ERR_INVAL);
  ts_assert_err(shmbus__service_attach(node, "x", NULL, &svc), SHMBUS_ERR_INVAL);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* A full file system or commit limit, through the reservation hook
 * (platform.h; wine accounts no commit, so the hook is the portable way):
 * every open that creates an object says NO_SPACE at once, on both
 * backends, and leaves nothing behind; the next reservation works again. */
static int reserve_calls;
static int no_space_reserve(intptr_t object, int64_t length) {
  (void)object;
  (void)length;
  reserve_calls++;
  return SHMBUS_ERR_NO_SPACE;
}

static void test_reserve_no_space(void **state) {
  ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  shmbus_service_opts o = ts_opts();
  int (*real)(intptr_t, int64_t) = shmbus__sys_reserve;
  shmbus__sys_reserve = no_space_reserve;
  shmbus_publisher *pub = NULL;
  shmbus_subscriber *sub = NULL;
  int r1 = shmbus_publisher_open(node, "full", &o, &pub);
  int r2 = shmbus_subscriber_open(node, "full", &o, &sub);
  shmbus__sys_reserve = real;
  ts_assert_err(r1, SHMBUS_ERR_NO_SPACE);
  ts_assert_err(r2, SHMBUS_ERR_NO_SPACE);
  assert_null(pub);
  assert_null(sub);
  assert_true(reserve_calls >= 2);
  ts_assert_objects(env, 0);
  /* Space again: the same opens work and exchange a sample. */
  ts_assert_ok(shmbus_subscriber_open(node, "full", &o, &sub));
  ts_assert_ok(shmbus_publisher_open(node, "full", &o, &pub));
  assert_int_equal(shmbus_subscriber_publishers(sub), 1); /* maps the publisher */
  assert_int_equal(shmbus_publisher_update(pub), 1);
  ts_sample x;
  ts_sample_fill(&x, 3, 0);
  ts_assert_ok(shmbus_publisher_send_copy(pub, &x, sizeof x));
  shmbus_sample s;
  ts_assert_ok(shmbus_subscriber_take(sub, &s));
  assert_true(ts_sample_valid(s.payload));
  ts_assert_ok(shmbus_subscriber_release(sub, &s));
  shmbus_publisher_close(pub);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

int main(void) {
  const struct CMUnitTest pure[] = {
      cmocka_unit_test(test_pool_fresh_order),
      cmocka_unit_test(test_pool_lifo_and_refs),
      cmocka_unit_test(test_ring_slot_word),
      cmocka_unit_test(test_ring_put_pop),
      cmocka_unit_test(test_ring_stale_tag_is_empty),
      cmocka_unit_test(test_ring_void),
      cmocka_unit_test(test_ring_evict),
      cmocka_unit_test(test_ring_evict_after_pop_fails),
      cmocka_unit_test(test_ring_tag_wrap_2_32),
      cmocka_unit_test(test_ring_position_wrap_2_64),
      cmocka_unit_test(test_done_ring_until_full),
      cmocka_unit_test(test_layout_defaults),
      cmocka_unit_test(test_layout_shapes),
      cmocka_unit_test(test_layout_too_large),
      cmocka_unit_test(test_layout_limits),
      cmocka_unit_test(test_names_domain),
      cmocka_unit_test(test_names_service_and_type),
      cmocka_unit_test(test_names_hash_and_objects),
      cmocka_unit_test(test_seg_header),
  };
  const struct CMUnitTest shm[] = {
      cmocka_unit_test_setup_teardown(test_service_registry, ts_setup_shm, ts_teardown),
      cmocka_unit_test_setup_teardown(test_service_attach_errors_keep_nothing, ts_setup_shm,
                                      ts_teardown),
      cmocka_unit_test_setup_teardown(test_service_registry, ts_setup_dir, ts_teardown),
      cmocka_unit_test_setup_teardown(test_reserve_no_space, ts_setup_shm, ts_teardown),
      cmocka_unit_test_setup_teardown(test_reserve_no_space, ts_setup_dir, ts_teardown),
  };
  int failed = cmocka_run_group_tests_name("units", pure, NULL, NULL);
  failed += cmocka_run_group_tests_name("units_service", shm, NULL, NULL);
  return failed ? 1 : 0;
}

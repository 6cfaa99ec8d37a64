/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Regression tests of issue 9, findings 1-4: what a hostile peer of the same
 * user (docs/security.md; DESIGN.md, "Threat model") writes into the
 * segments of a live service and plants under the library's object names.
 *
 *   1  config read twice        a peer flips the service's configuration
 *                               while ports open (a race, bounded in time)
 *   2  sizes read twice,        sparse objects grown to 64 GiB; a short data
 *      mapping from st_size     segment whose total_size changes between the
 *                               opener's two reads of it
 *   3  eviction without the     a subscriber "returns" a queued chunk it never
 *      in-flight mark           took (or rewinds its head over one it did),
 *                               then the publisher evicts it
 *   4  non-regular files        FIFOs under the service, a data segment and a
 *                               liveness token (named in a forged registry
 *                               slot); a symbolic link under the service name
 *
 * The attacker works as a real one would: it maps the objects under
 * /dev/shm (or the directory root) read-write by name, or replaces them,
 * and writes shared words. Offsets come from the layout accessors of
 * src/service.h and the structs of src/layout.h, never from literals.
 * Victims that could crash or hang on broken code run in forked children
 * with an alarm() watchdog (HL_ALARM_S): a crash shows as "child died of
 * signal 11", a hang as "signal 14 (Alarm clock)".
 *
 * Correct behaviour, which every case checks in its own terms: the library
 * never crashes, hangs or reads out of bounds whatever a peer writes; bad
 * shared data gives an error code (CORRUPT, or NOT_FOUND / NOT_READY where
 * an object is unusable) and breaks only that connection; a mapping is
 * never longer than the validated private layout says; objects under our
 * names that are FIFOs or links give an error quickly (HL_QUICK_NS) and a
 * link's target is never written.
 *
 * Linux (/proc/<pid>/maps, /dev/shm). Each case runs on both backends; the
 * whole file takes about 3 s. HL_FILTER=<cmocka glob> runs a subset.
 */
#include "support.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>

#include "service.h"

/* "Quickly": an open or a sweep that meets a FIFO or a link answers within
 * this. Half the 2 s an opener waits for a creator that never finishes a
 * segment (SHMBUS__INIT_TIMEOUT_NS), which is what broken code spends on a
 * FIFO under a service name; correct code needs microseconds. */
#define HL_QUICK_NS (UINT64_C(1000) * 1000 * 1000)
/* A victim child that hangs is killed by SIGALRM after this. */
#define HL_ALARM_S 4
/* Sparse length a peer gives an object to eat its victims' address space. */
#define HL_HUGE (UINT64_C(64) << 30)

/* The accessors took the configuration alone before the layout was made of
 * pages (layout version 3). */
#if SHMBUS__LAYOUT_VERSION >= 3
#define HL_SLOT_OFFSET(l, cfg, kind, i) shmbus__layout_slot_offset((l), (cfg), (kind), (i))
#else
#define HL_SLOT_OFFSET(l, cfg, kind, i) shmbus__layout_slot_offset((cfg), (kind), (i))
#endif

/* ---- helpers ------------------------------------------------------------- */

static uint64_t hl_page(void) {
  long p = sysconf(_SC_PAGESIZE);
  return p > 0 ? (uint64_t)p : 4096;
}

static uint64_t hl_page_round(uint64_t n) { return (n + hl_page() - 1) & ~(hl_page() - 1); }

static void hl_path(const ts_env *env, const char *name, char *out, size_t cap) {
  ts_object_path(out, cap, env->dir, name);
}

/* The library's own names (src/names.c), so that they follow any change. */
static void hl_pub_object(char out[SHMBUS__OBJECT_NAME_MAX], const ts_env *env, const char *service,
                          uint64_t pub_id, int data) {
  shmbus__publisher_object_name(out, env->domain, shmbus__hash64(service), pub_id, data);
}

static void hl_token_object(char out[SHMBUS__OBJECT_NAME_MAX], const ts_env *env,
                            uint64_t node_id) {
  shmbus__node_token_name(out, env->domain, node_id);
}

/* An attacker's read-write view of a service segment, with the layout
 * derived from the configuration found in it. */
typedef struct hl_service {
  uint8_t *base;
  size_t size;
  shmbus__service_config cfg;
  shmbus__layout layout;
} hl_service;

/* 0, or -1 (usable in children). */
static int hl_service_map(const ts_env *env, const char *service, hl_service *hs) {
  char name[SHMBUS__OBJECT_NAME_MAX];
  ts_service_object_name(name, sizeof name, env->domain, service);
  memset(hs, 0, sizeof *hs);
  hs->base = ts_map_object(env->dir, name, &hs->size);
  if (hs->base == NULL) return -1;
  if (hs->size >= sizeof(shmbus__service_seg)) {
    memcpy(&hs->cfg, hs->base + offsetof(shmbus__service_seg, cfg), sizeof hs->cfg);
    if (shmbus__layout_compute(&hs->cfg, &hs->layout) == 0) return 0;
  }
  ts_unmap_object(hs->base, hs->size);
  hs->base = NULL;
  return -1;
}

static void hl_service_unmap(hl_service *hs) {
  ts_unmap_object(hs->base, hs->size);
  hs->base = NULL;
}

static shmbus__port_slot *hl_slot(const hl_service *hs, int kind, uint32_t i) {
  return (shmbus__port_slot *)(hs->base + HL_SLOT_OFFSET(&hs->layout, &hs->cfg, kind, i));
}

static uint32_t hl_slot_count(const hl_service *hs, int kind) {
  return kind == SHMBUS__PUBLISHER ? hs->cfg.max_publishers : hs->cfg.max_subscribers;
}

/* The slot of the ready port `id`, or UINT32_MAX. */
static uint32_t hl_find_slot(const hl_service *hs, int kind, uint64_t id) {
  for (uint32_t i = 0; i < hl_slot_count(hs, kind); i++)
    if (shmbus__slot_ready_id(__atomic_load_n(&hl_slot(hs, kind, i)->word, __ATOMIC_ACQUIRE)) == id)
      return i;
  return UINT32_MAX;
}

/* Words of one connection in an attacker's mapping of a control segment. */
typedef struct hl_conn {
  uint64_t *sub_id;
  uint64_t *head;
  uint64_t *done_tail;
  uint64_t *done_head;
  uint64_t *slots;
  uint32_t *done;
  uint32_t slot_mask, done_mask;
} hl_conn;

static void hl_conn_view(hl_conn *c, uint8_t *ctl, const shmbus__layout *l, uint32_t k) {
  uint8_t *base = ctl + shmbus__layout_conn_offset(l, k);
  c->sub_id = (uint64_t *)(base + offsetof(shmbus__conn, sub_id));
  c->head = (uint64_t *)(base + offsetof(shmbus__conn, head));
  c->done_tail = (uint64_t *)(base + offsetof(shmbus__conn, done_tail));
  c->done_head = (uint64_t *)(base + offsetof(shmbus__conn, done_head));
  c->slots = (uint64_t *)(base + l->sub_ring_offset);
  c->done = (uint32_t *)(base + l->done_ring_offset);
  c->slot_mask = l->queue_cap - 1;
  c->done_mask = l->done_cap - 1;
}

/* An attacker's writable view of the connection that publisher `pub`
 * keeps for subscriber `sub`: the service and the control segment mapped,
 * and the connection's words. */
typedef struct hl_victim {
  hl_service hs;
  uint8_t *ctl;
  size_t ctl_size;
  hl_conn c;
} hl_victim;

static void hl_victim_map(hl_victim *v, const ts_env *env, const char *service,
                          const shmbus_publisher *pub, const shmbus_subscriber *sub) {
  assert_int_equal(hl_service_map(env, service, &v->hs), 0);
  uint32_t k = hl_find_slot(&v->hs, SHMBUS__SUBSCRIBER, shmbus_subscriber_id(sub));
  assert_true(k != UINT32_MAX);
  char ctl_name[SHMBUS__OBJECT_NAME_MAX];
  hl_pub_object(ctl_name, env, service, shmbus_publisher_id(pub), 0);
  v->ctl = ts_map_object(env->dir, ctl_name, &v->ctl_size);
  assert_non_null(v->ctl);
  hl_conn_view(&v->c, v->ctl, &v->hs.layout, k);
}

static void hl_victim_unmap(hl_victim *v) {
  ts_unmap_object(v->ctl, v->ctl_size);
  hl_service_unmap(&v->hs);
}

/* Appends `chunk` to the connection's completion ring, as its subscriber
 * would; returns the ring's tail before. */
static uint64_t hl_forge_completion(const hl_conn *c, uint32_t chunk) {
  uint64_t dt = __atomic_load_n(c->done_tail, __ATOMIC_RELAXED);
  __atomic_store_n(&c->done[dt & c->done_mask], chunk, __ATOMIC_RELAXED);
  __atomic_store_n(c->done_tail, dt + 1, __ATOMIC_RELEASE);
  return dt;
}

/* Has `pub` cut `sub` off: a completion of the first chunk index past the
 * pool forged into their connection and collected; the canary checks that
 * the publisher cleared sub_id. */
static void hl_cut_off(const ts_env *env, const char *service, shmbus_publisher *pub,
                       const shmbus_subscriber *sub) {
  hl_victim v;
  hl_victim_map(&v, env, service, pub, sub);
  (void)hl_forge_completion(&v.c, (uint32_t)v.hs.layout.chunks);
  assert_true(shmbus_publisher_update(pub) >= 0);
  assert_int_equal(__atomic_load_n(v.c.sub_id, __ATOMIC_ACQUIRE), 0);
  hl_victim_unmap(&v);
}

/* The mappings (VMAs) of one file in a process, from /proc/<pid>/maps. */
typedef struct hl_vmas {
  unsigned count;
  uint64_t total, largest;
} hl_vmas;

static int hl_vmas_of(pid_t pid, dev_t dev, ino_t ino, hl_vmas *out) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/maps", (long)pid);
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  char line[4096];
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned long long start, end, off, inode;
    unsigned maj, min;
    char perms[8];
    if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &start, &end, perms, &off, &maj, &min,
               &inode) != 7)
      continue;
    if (inode != (unsigned long long)ino || maj != major(dev) || min != minor(dev)) continue;
    out->count++;
    out->total += end - start;
    if (end - start > out->largest) out->largest = end - start;
  }
  fclose(f);
  return 0;
}

static void hl_stat(const ts_env *env, const char *name, struct stat *st) {
  char path[2048];
  hl_path(env, name, path, sizeof path);
  assert_int_equal(lstat(path, st), 0);
}

/* A copy of an object's bytes (malloc'd), *size its length. */
static uint8_t *hl_read_object(const ts_env *env, const char *name, size_t *size) {
  char path[2048];
  hl_path(env, name, path, sizeof path);
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  assert_true(fd >= 0);
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  assert_true(S_ISREG(st.st_mode) && st.st_size > 0);
  uint8_t *buf = malloc((size_t)st.st_size);
  assert_non_null(buf);
  assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
  close(fd);
  *size = (size_t)st.st_size;
  return buf;
}

/* Creates a regular file at `path` (exclusively) holding `data`; returns it
 * open read-write. */
static int hl_create_file(const char *path, const void *data, size_t size) {
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, data, size, 0), (ssize_t)size);
  return fd;
}

static void hl_publish(shmbus_publisher *pub, uint64_t tag, uint64_t seq) {
  void *p = NULL;
  ts_assert_ok(shmbus_publisher_loan(pub, 1, &p));
  ts_sample_fill(p, tag, seq);
  ts_assert_ok(shmbus_publisher_publish(pub, p));
}

/* Waits for the child's next message; when the child ended without one,
 * reports how it ended (a crash, the alarm of a hang). */
static void hl_expect(ts_child *c, uint64_t value) {
  uint64_t got = ~(uint64_t)0;
  if (ts_recv(c->up[0], &got) != 0) {
    ts_assert_child_ok(c);
    fail_msg("the child exited without sending %llu", (unsigned long long)value);
  }
  assert_int_equal(got, value);
}

/* In children: a call that must return within HL_QUICK_NS. */
#define HL_CHECK_QUICK(t0, what)                                                          \
  do {                                                                                    \
    uint64_t hl__dt = ts_now_ns() - (t0);                                                 \
    if (hl__dt >= HL_QUICK_NS) {                                                          \
      fprintf(stderr, "%s:%d: child %ld: %s took %.3f s; it must answer within %.1f s\n", \
              __FILE__, __LINE__, (long)getpid(), (what), (double)hl__dt / 1e9,           \
              (double)HL_QUICK_NS / 1e9);                                                 \
      return TS_CHILD_FAILED;                                                             \
    }                                                                                     \
  } while (0)

/* ==== finding 1: the configuration read twice =============================
 * load_config validated a private copy, then finish_attach copied the
 * shared configuration again (twice: in open_service and at the end of
 * attach, and once more in attach_object for cleanup) and used that.
 * Attack: a peer flips cfg.max_publishers between its true value and
 * UINT32_MAX while a victim opens subscribers, publishers and runs the
 * domain cleanup in a loop; three ports of other live nodes make each
 * opener's sweep probe three liveness tokens, widening the window between
 * the reads. Broken code takes the unchecked UINT32_MAX for its slot count
 * (sub_slots 256 GiB past the registry, a 4-billion-slot sweep, nsources
 * wrapping to 3) and dies by SIGSEGV, or fails with an error no valid
 * configuration gives (TOO_LARGE: the layout of the bad copy is all zeros),
 * within milliseconds (within 0.3 s with both cores busy elsewhere).
 * Correct: every open returns 0 (it read the true value, and uses only its
 * private copy from then on) or CORRUPT (it read UINT32_MAX); the ports it
 * opened work; nothing crashes. */

#define RACE_RUN_NS (UINT64_C(1000) * 1000 * 1000)
#define RACE_HALF_PERIOD_NS 700

typedef struct race_ctx {
  const ts_env *env;
  const char *service;
  uint32_t good;
  uint32_t *stop; /* shared with the children: the victim is done */
} race_ctx;

static uint32_t *race_field(const hl_service *hs) {
  return (uint32_t *)(hs->base + offsetof(shmbus__service_seg, cfg) +
                      offsetof(shmbus__service_config, max_publishers));
}

static int race_flipper(ts_child *self, void *arg) {
  const race_ctx *rc = arg;
  hl_service hs;
  TS_CHECK(hl_service_map(rc->env, rc->service, &hs) == 0);
  uint32_t *field = race_field(&hs);
  TS_CHECK(ts_child_send(self, 1) == 0);
  alarm(HL_ALARM_S + 2);
  for (;;) {
    __atomic_store_n(field, UINT32_MAX, __ATOMIC_RELAXED);
    for (uint64_t t = ts_now_ns(); ts_now_ns() - t < RACE_HALF_PERIOD_NS;) {
    }
    __atomic_store_n(field, rc->good, __ATOMIC_RELAXED);
    if (__atomic_load_n(rc->stop, __ATOMIC_RELAXED)) break;
    for (uint64_t t = ts_now_ns(); ts_now_ns() - t < RACE_HALF_PERIOD_NS;) {
    }
  }
  hl_service_unmap(&hs);
  return 0;
}

static int race_victim(ts_child *self, void *arg) {
  const race_ctx *rc = arg;
  alarm(HL_ALARM_S + 2);
  shmbus_node *node = ts_child_node(rc->env);
  TS_CHECK(node != NULL);
  shmbus_service_opts o = ts_opts();
  uint64_t worked = 0, refused = 0;
  uint64_t end = ts_now_ns() + RACE_RUN_NS;
  for (unsigned i = 0; ts_now_ns() < end; i++) {
    int r;
    if (i % 3 == 0) {
      shmbus_subscriber *s = NULL;
      r = shmbus_subscriber_open(node, rc->service, &o, &s);
      if (r == 0) {
        shmbus_sample smp;
        int t = shmbus_subscriber_take(s, &smp);
        TS_CHECK(t == SHMBUS_ERR_EMPTY || t == 0);
        if (t == 0) TS_CHECK_ERR(shmbus_subscriber_release(s, &smp), 0);
        shmbus_subscriber_close(s);
      }
    } else if (i % 3 == 1) {
      shmbus_publisher *p = NULL;
      r = shmbus_publisher_open(node, rc->service, &o, &p);
      if (r == 0) {
        ts_sample x;
        ts_sample_fill(&x, 7, i);
        TS_CHECK_ERR(shmbus_publisher_send_copy(p, &x, sizeof x), 0);
        shmbus_publisher_close(p);
      }
    } else {
      r = shmbus_domain_cleanup(node);
      TS_CHECK(r >= 0);
      r = 0;
    }
    if (r == SHMBUS_ERR_CORRUPT) {
      refused++;
    } else {
      TS_CHECK_ERR(r, 0);
      worked++;
    }
  }
  shmbus_node_close(node);
  TS_CHECK(ts_child_send(self, worked) == 0);
  TS_CHECK(ts_child_send(self, refused) == 0);
  return 0;
}

static void config_flipped_while_opening(void **state) {
  ts_env *env = *state;
  char service[64];
  ts_service_name(service, sizeof service, "cfg-race");
  shmbus_service_opts o = ts_opts();
  shmbus_node *na = ts_node(env), *nb = ts_node(env), *nc = ts_node(env);
  shmbus_publisher *pub;
  shmbus_subscriber *s1, *s2;
  ts_assert_ok(shmbus_publisher_open(na, service, &o, &pub));
  ts_assert_ok(shmbus_subscriber_open(nb, service, &o, &s1));
  ts_assert_ok(shmbus_subscriber_open(nc, service, &o, &s2));
  hl_service hs;
  assert_int_equal(hl_service_map(env, service, &hs), 0);
  uint32_t *stop = ts_shared_alloc(sizeof *stop);
  assert_non_null(stop);
  race_ctx rc = {env, service, hs.cfg.max_publishers, stop};

  ts_child flip, vic;
  ts_child_start(&flip, race_flipper, &rc);
  hl_expect(&flip, 1);
  uint64_t t0 = ts_now_ns();
  ts_child_start(&vic, race_victim, &rc);
  uint64_t worked = 0, refused = 0;
  int got = ts_recv(vic.up[0], &worked) == 0 && ts_recv(vic.up[0], &refused) == 0;
  if (!got)
    print_message("      the victim ended after %.3f s\n", (double)(ts_now_ns() - t0) / 1e9);
  __atomic_store_n(stop, 1, __ATOMIC_RELAXED);
  ts_assert_child_ok(&vic);
  assert_true(got);
  ts_assert_child_ok(&flip);
  ts_shared_free(stop, sizeof *stop);
  __atomic_store_n(race_field(&hs), rc.good, __ATOMIC_RELAXED);
  print_message("      victim: %llu opens/cleanups worked, %llu refused (CORRUPT)\n",
                (unsigned long long)worked, (unsigned long long)refused);
  /* The victim must have met the true value too, or nothing was tested. */
  assert_true(worked > 0);

  hl_service_unmap(&hs);
  shmbus_subscriber_close(s2);
  shmbus_subscriber_close(s1);
  shmbus_publisher_close(pub);
  shmbus_node_close(nc);
  shmbus_node_close(nb);
  shmbus_node_close(na);
}

/* ==== finding 2: sizes read twice, mapping lengths from st_size ===========
 * The length of every mapping was the object's st_size, checked only
 * against the header's total_size, itself read twice (once in
 * shmbus__seg_header_wait, once more in connect_source). */

/* A peer grows a live publisher's data and control segments to 64 GiB
 * (sparse: no memory used) before a subscriber connects. Broken code maps
 * 64 GiB of each into the victim. Correct: the victim maps at most what its
 * validated layout says (or refuses the connection: CORRUPT), and still
 * receives from an honest second publisher. */
static void grown_publisher_segments(void **state) {
  ts_env *env = *state;
  char service[64];
  ts_service_name(service, sizeof service, "grown-pub");
  shmbus_service_opts o = ts_opts();
  shmbus_node *na = ts_node(env), *nb = ts_node(env);
  shmbus_publisher *p1, *p2;
  ts_assert_ok(shmbus_publisher_open(na, service, &o, &p1));
  ts_assert_ok(shmbus_publisher_open(na, service, &o, &p2));
  hl_service hs;
  assert_int_equal(hl_service_map(env, service, &hs), 0);
  shmbus__layout l = hs.layout;
  hl_service_unmap(&hs);

  char data1[SHMBUS__OBJECT_NAME_MAX], ctl1[SHMBUS__OBJECT_NAME_MAX],
      data2[SHMBUS__OBJECT_NAME_MAX];
  hl_pub_object(data1, env, service, shmbus_publisher_id(p1), 1);
  hl_pub_object(ctl1, env, service, shmbus_publisher_id(p1), 0);
  hl_pub_object(data2, env, service, shmbus_publisher_id(p2), 1);
  struct stat sd1, sc1, sd2;
  hl_stat(env, data1, &sd1);
  hl_stat(env, ctl1, &sc1);
  hl_stat(env, data2, &sd2);
  char path[2048];
  hl_path(env, data1, path, sizeof path);
  assert_int_equal(truncate(path, (off_t)HL_HUGE), 0);
  hl_path(env, ctl1, path, sizeof path);
  assert_int_equal(truncate(path, (off_t)HL_HUGE), 0);

  shmbus_subscriber *v;
  ts_assert_ok(shmbus_subscriber_open(nb, service, &o, &v));
  int from_p2 = 0;
  uint64_t deadline = ts_now_ns() + UINT64_C(2000) * 1000 * 1000;
  for (uint64_t seq = 0; !from_p2 && ts_now_ns() < deadline; seq++) {
    hl_publish(p1, 1, seq);
    hl_publish(p2, 2, seq);
    for (;;) {
      shmbus_sample smp;
      int r = shmbus_subscriber_take(v, &smp);
      if (r == SHMBUS_ERR_EMPTY) break;
      if (r == SHMBUS_ERR_CORRUPT) continue; /* p1's connection, refused */
      ts_assert_ok(r);
      assert_true(ts_sample_valid(smp.payload));
      if (smp.publisher_id == shmbus_publisher_id(p2)) from_p2 = 1;
      ts_assert_ok(shmbus_subscriber_release(v, &smp));
    }
  }
  assert_true(from_p2);

  hl_vmas m;
  assert_int_equal(hl_vmas_of(getpid(), sd2.st_dev, sd2.st_ino, &m), 0);
  assert_true(m.count >= 1); /* the scan finds the honest publisher's data segment */
  assert_int_equal(hl_vmas_of(getpid(), sd1.st_dev, sd1.st_ino, &m), 0);
  if (m.largest > hl_page_round(l.data_size))
    fail_msg(
        "a mapping of %llu bytes of a data segment whose layout says %llu bytes "
        "(the peer made the object %llu bytes long)",
        (unsigned long long)m.largest, (unsigned long long)l.data_size,
        (unsigned long long)HL_HUGE);
  assert_int_equal(hl_vmas_of(getpid(), sc1.st_dev, sc1.st_ino, &m), 0);
  if (m.largest > hl_page_round(l.control_size))
    fail_msg("a mapping of %llu bytes of a control segment whose layout says %llu bytes",
             (unsigned long long)m.largest, (unsigned long long)l.control_size);

  shmbus_subscriber_close(v);
  shmbus_publisher_close(p2);
  shmbus_publisher_close(p1);
  shmbus_node_close(nb);
  shmbus_node_close(na);
}

/* The same for the service segment, grown to 64 GiB before a subscriber
 * and a publisher open. Correct: each opens (0) mapping no more than the
 * layout its validated configuration gives, or refuses (CORRUPT); a
 * subscriber that opened receives. Broken code maps 64 GiB. */
static void grown_service_segment(void **state) {
  ts_env *env = *state;
  char service[64], name[SHMBUS__OBJECT_NAME_MAX], path[2048];
  ts_service_name(service, sizeof service, "grown-svc");
  ts_service_object_name(name, sizeof name, env->domain, service);
  shmbus_service_opts o = ts_opts();
  shmbus_node *na = ts_node(env), *nb = ts_node(env);
  shmbus_publisher *p;
  ts_assert_ok(shmbus_publisher_open(na, service, &o, &p));
  hl_service hs;
  assert_int_equal(hl_service_map(env, service, &hs), 0);
  uint64_t limit = hl_page_round(hs.layout.service_size);
  hl_service_unmap(&hs);
  struct stat st;
  hl_stat(env, name, &st);
  hl_path(env, name, path, sizeof path);
  assert_int_equal(truncate(path, (off_t)HL_HUGE), 0);

  shmbus_subscriber *v = NULL;
  int r = shmbus_subscriber_open(nb, service, &o, &v);
  assert_true(r == 0 || r == SHMBUS_ERR_CORRUPT);
  hl_vmas m;
  assert_int_equal(hl_vmas_of(getpid(), st.st_dev, st.st_ino, &m), 0);
  assert_true(m.count >= 1); /* the publisher's own mapping at least */
  if (m.largest > limit)
    fail_msg(
        "a mapping of %llu bytes of a service segment whose layout says %llu bytes "
        "(the peer made the object %llu bytes long)",
        (unsigned long long)m.largest, (unsigned long long)limit, (unsigned long long)HL_HUGE);
  if (r == 0) {
    int got = 0;
    for (uint64_t seq = 0; !got && seq < 1000; seq++) {
      hl_publish(p, 3, seq);
      shmbus_sample smp;
      int t = shmbus_subscriber_take(v, &smp);
      if (t == SHMBUS_ERR_EMPTY) continue;
      ts_assert_ok(t);
      assert_true(ts_sample_valid(smp.payload));
      ts_assert_ok(shmbus_subscriber_release(v, &smp));
      got = 1;
    }
    assert_true(got);
  }
  shmbus_publisher *q = NULL;
  r = shmbus_publisher_open(nb, service, &o, &q);
  assert_true(r == 0 || r == SHMBUS_ERR_CORRUPT);
  assert_int_equal(hl_vmas_of(getpid(), st.st_dev, st.st_ino, &m), 0);
  if (m.largest > limit)
    fail_msg("a publisher maps %llu bytes of a service segment whose layout says %llu bytes",
             (unsigned long long)m.largest, (unsigned long long)limit);

  shmbus_publisher_close(q);
  shmbus_subscriber_close(v);
  shmbus_publisher_close(p);
  shmbus_node_close(nb);
  shmbus_node_close(na);
}

/* A peer replaces a live publisher's segments: the data segment by one page
 * whose header says total_size = one page (so the opener's first check,
 * total_size <= mapped length, passes), the control segment by a copy that
 * is not yet "initialised", so that the opener waits for it. While it
 * waits (its mapping of the forged control segment shows in
 * /proc/<pid>/maps), the peer writes the layout's data_size into the data
 * header and finishes the control segment. Broken code reads total_size a
 * second time, finds what its layout expects and uses a one-page mapping
 * as a data segment of several pages: every chunk past the first page is
 * read out of bounds. Correct: the subscriber never holds a mapping of the
 * data object shorter (or longer) than its layout's data_size: it refuses
 * the object (CORRUPT) or maps exactly the layout's length. (Code that
 * does not wait for the control segment inside take never gives the peer
 * its moment; it passes as long as it checks the length it maps.) */

typedef struct reread_ctx {
  const ts_env *env;
  const char *service;
  const char *data_name;
  uint64_t data_size; /* page-rounded */
} reread_ctx;

static int reread_victim(ts_child *self, void *arg) {
  (void)self;
  const reread_ctx *c = arg;
  alarm(HL_ALARM_S);
  char path[2048];
  hl_path(c->env, c->data_name, path, sizeof path);
  struct stat st;
  TS_CHECK(lstat(path, &st) == 0); /* the forged data segment */
  shmbus_node *node = ts_child_node(c->env);
  TS_CHECK(node != NULL);
  shmbus_service_opts o = ts_opts();
  shmbus_subscriber *s = NULL;
  TS_CHECK_ERR(shmbus_subscriber_open(node, c->service, &o, &s), 0);
  uint64_t end = ts_now_ns() + UINT64_C(300) * 1000 * 1000;
  do {
    hl_vmas m;
    TS_CHECK(hl_vmas_of(getpid(), st.st_dev, st.st_ino, &m) == 0);
    if (m.count > 0 && (m.total != c->data_size || m.largest > c->data_size)) {
      fprintf(stderr,
              "%s:%d: child %ld: the subscriber uses a %llu-byte mapping as a data segment "
              "whose layout says %llu bytes (total_size read twice)\n",
              __FILE__, __LINE__, (long)getpid(), (unsigned long long)m.total,
              (unsigned long long)c->data_size);
      return TS_CHILD_FAILED;
    }
    shmbus_sample smp;
    int r = shmbus_subscriber_take(s, &smp);
    TS_CHECK(r == SHMBUS_ERR_EMPTY || r == SHMBUS_ERR_CORRUPT || r == 0);
    if (r == 0) {
      int rr = shmbus_subscriber_release(s, &smp);
      TS_CHECK(rr == 0 || rr == SHMBUS_ERR_CORRUPT);
    }
    ts_sleep_overrun_ns(1000 * 1000);
  } while (ts_now_ns() < end);
  shmbus_subscriber_close(s);
  shmbus_node_close(node);
  return 0;
}

static void size_changed_between_reads(void **state) {
  ts_env *env = *state;
  char service[64];
  ts_service_name(service, sizeof service, "reread");
  shmbus_service_opts o = ts_opts();
  shmbus_node *na = ts_node(env);
  shmbus_publisher *p;
  ts_assert_ok(shmbus_publisher_open(na, service, &o, &p));
  hl_service hs;
  assert_int_equal(hl_service_map(env, service, &hs), 0);
  shmbus__layout l = hs.layout;
  hl_service_unmap(&hs);
  uint64_t page = hl_page();
  assert_true(hl_page_round(l.data_size) > page); /* else one page would be enough */

  char data[SHMBUS__OBJECT_NAME_MAX], ctl[SHMBUS__OBJECT_NAME_MAX], path[2048];
  hl_pub_object(data, env, service, shmbus_publisher_id(p), 1);
  hl_pub_object(ctl, env, service, shmbus_publisher_id(p), 0);
  size_t data_len, ctl_len;
  uint8_t *real_data = hl_read_object(env, data, &data_len);
  uint8_t *forged_ctl = hl_read_object(env, ctl, &ctl_len);
  assert_int_equal(ts_unlink_object(env->dir, data), 0);
  assert_int_equal(ts_unlink_object(env->dir, ctl), 0);

  uint8_t *forged_data = calloc(1, (size_t)page);
  assert_non_null(forged_data);
  memcpy(forged_data, real_data, sizeof(shmbus__seg_header));
  shmbus__seg_header *dh = (shmbus__seg_header *)forged_data;
  dh->total_size = page;
  hl_path(env, data, path, sizeof path);
  int data_fd = hl_create_file(path, forged_data, (size_t)page);
  ((shmbus__seg_header *)forged_ctl)->initialised = 0;
  hl_path(env, ctl, path, sizeof path);
  int ctl_fd = hl_create_file(path, forged_ctl, ctl_len);
  struct stat cst;
  assert_int_equal(fstat(ctl_fd, &cst), 0);

  reread_ctx rc = {env, service, data, hl_page_round(l.data_size)};
  ts_child vic;
  ts_child_start(&vic, reread_victim, &rc);
  /* Until the victim waits for the forged control segment, or is done. */
  int seen = 0, ended = 0;
  uint64_t deadline = ts_now_ns() + UINT64_C(3000) * 1000 * 1000;
  while (!seen && !ended && ts_now_ns() < deadline) {
    hl_vmas m;
    if (hl_vmas_of(vic.pid, cst.st_dev, cst.st_ino, &m) == 0 && m.count > 0) seen = 1;
    struct pollfd pfd = {vic.up[0], POLLIN, 0};
    if (poll(&pfd, 1, 0) > 0) ended = 1;
  }
  uint64_t total = l.data_size;
  assert_int_equal(pwrite(data_fd, &total, sizeof total, offsetof(shmbus__seg_header, total_size)),
                   (ssize_t)sizeof total);
  uint32_t init = SHMBUS__INITIALISED;
  assert_int_equal(pwrite(ctl_fd, &init, sizeof init, offsetof(shmbus__seg_header, initialised)),
                   (ssize_t)sizeof init);
  ts_assert_child_ok(&vic);
  print_message("      the victim %s the forged control segment\n",
                seen ? "waited for" : "never waited for");

  close(data_fd);
  close(ctl_fd);
  free(forged_data);
  free(forged_ctl);
  free(real_data);
  shmbus_publisher_close(p); /* removes the forged objects under its names */
  shmbus_node_close(na);
}

/* ==== finding 3: eviction without the in-flight mark =======================
 * An honest subscriber H takes sample 0 and holds it. Subscriber X (a
 * real, idle one; the attacker writes its connection words) writes sample
 * 0's chunk into its completion ring although the chunk is still queued on
 * its submission ring, untaken; the publisher collects that completion.
 * Variant "rewind": X takes the chunk (head + 1), releases it properly, and
 * after the publisher collected it moves head back over it. Either way the
 * chunk sits at X's head again and the next full queue evicts it. Broken
 * code drops the reference a second time without asking its in-flight marks
 * whether the chunk is still X's: the chunk goes back to the free stack
 * while H holds it, the next loan (LIFO) takes it, and H's held payload
 * becomes a later sample.
 * Correct: H's held sample keeps its payload while the publisher keeps
 * publishing; H receives every later sample intact and loses none; only
 * X's connection is broken. */

#define EVICT_PUBLISHES 32

static void evict_case(void **state, int rewind) {
  ts_env *env = *state;
  char service[64];
  ts_service_name(service, sizeof service, rewind ? "evict-rewind" : "evict-untaken");
  shmbus_service_opts o = ts_opts();
  o.queue_depth = 2;
  o.max_held = 4;
  o.overflow = SHMBUS_OVERFLOW_DROP_OLDEST;
  shmbus_node *np = ts_node(env), *nh = ts_node(env), *nx = ts_node(env);
  shmbus_publisher *p;
  shmbus_subscriber *h, *x;
  ts_assert_ok(shmbus_publisher_open(np, service, &o, &p));
  ts_assert_ok(shmbus_subscriber_open(nh, service, &o, &h));
  ts_assert_ok(shmbus_subscriber_open(nx, service, &o, &x));
  const uint64_t tag = 0x51;

  hl_publish(p, tag, 0);
  shmbus_sample held;
  ts_assert_ok(shmbus_subscriber_take(h, &held));
  assert_int_equal(held.sequence, 0);
  assert_true(ts_sample_valid(held.payload));
  ts_sample want;
  memcpy(&want, held.payload, sizeof want);

  /* The attacker's view of X's connection. */
  hl_victim v;
  hl_victim_map(&v, env, service, p, x);
  const hl_conn c = v.c;
  uint64_t head = __atomic_load_n(c.head, __ATOMIC_ACQUIRE);
  uint64_t w = __atomic_load_n(&c.slots[head & c.slot_mask], __ATOMIC_ACQUIRE);
  assert_int_equal((uint32_t)(w >> 32), (uint32_t)(head + 1)); /* sample 0, queued for X */
  uint32_t chunk = (uint32_t)w;

  if (rewind)
    assert_true(__atomic_compare_exchange_n(c.head, &head, head + 1, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE));
  uint64_t dt = hl_forge_completion(&c, chunk);
  assert_true(shmbus_publisher_update(p) >= 0); /* collects the completion */
  /* Canary (the attack landed where the layout says): the publisher either
   * consumed the forged completion or cut X off for it. */
  assert_true(__atomic_load_n(c.done_head, __ATOMIC_ACQUIRE) == dt + 1 ||
              __atomic_load_n(c.sub_id, __ATOMIC_ACQUIRE) == 0);
  if (rewind) __atomic_store_n(c.head, head, __ATOMIC_RELEASE);

  for (uint64_t seq = 1; seq <= EVICT_PUBLISHES; seq++) {
    hl_publish(p, tag, seq);
    if (memcmp(held.payload, &want, sizeof want) != 0)
      fail_msg(
          "the held sample 0 of an honest subscriber now reads sample %llu: its chunk "
          "was freed and loaned again while held (after publish %llu)",
          (unsigned long long)((const ts_sample *)held.payload)->seq, (unsigned long long)seq);
    for (;;) {
      shmbus_sample smp;
      int r = shmbus_subscriber_take(h, &smp);
      if (r == SHMBUS_ERR_EMPTY) break;
      ts_assert_ok(r);
      assert_true(ts_sample_valid(smp.payload));
      assert_int_equal(((const ts_sample *)smp.payload)->seq, smp.sequence);
      ts_assert_ok(shmbus_subscriber_release(h, &smp));
    }
  }
  assert_int_equal(shmbus_subscriber_lost(h), 0);
  ts_assert_ok(shmbus_subscriber_release(h, &held));

  hl_victim_unmap(&v);
  shmbus_subscriber_close(x);
  shmbus_subscriber_close(h);
  shmbus_publisher_close(p);
  shmbus_node_close(nx);
  shmbus_node_close(nh);
  shmbus_node_close(np);
}

static void evict_returned_untaken(void **state) { evict_case(state, 0); }
static void evict_rewound_head(void **state) { evict_case(state, 1); }

/* ==== a cut-off connection says so =========================================
 * A peer writes a completion of a chunk that does not exist into the
 * connection of an honest subscriber X, which has two samples queued; the
 * publisher collects it and cuts X off (clears sub_id, takes the queued
 * chunks back and reuses them). X has taken before, so it knows it was
 * bound. Broken code let X take the two queued
 * entries, whose chunks now carry other samples, and then read EMPTY
 * forever. Correct: X's next take says CORRUPT, then EMPTY; the honest H
 * beside it loses nothing. */

static void cut_off_connection(void **state) {
  ts_env *env = *state;
  char service[64];
  ts_service_name(service, sizeof service, "cut-off");
  shmbus_service_opts o = ts_opts();
  o.queue_depth = 4;
  shmbus_node *np = ts_node(env), *nh = ts_node(env), *nx = ts_node(env);
  shmbus_publisher *p;
  shmbus_subscriber *h, *x;
  ts_assert_ok(shmbus_publisher_open(np, service, &o, &p));
  ts_assert_ok(shmbus_subscriber_open(nh, service, &o, &h));
  ts_assert_ok(shmbus_subscriber_open(nx, service, &o, &x));
  const uint64_t tag = 0x52;
  uint64_t next_h = 0;
  shmbus_sample smp;
  hl_publish(p, tag, 0);
  ts_assert_ok(shmbus_subscriber_take(x, &smp)); /* X is bound and active */
  ts_assert_ok(shmbus_subscriber_release(x, &smp));
  hl_publish(p, tag, 1);
  hl_publish(p, tag, 2);

  hl_cut_off(env, service, p, x);
  /* The reclaimed chunks are loaned again. */
  for (uint64_t seq = 3; seq < 8; seq++) {
    hl_publish(p, tag, seq);
    for (; next_h <= seq; next_h++) {
      ts_assert_ok(shmbus_subscriber_take(h, &smp));
      assert_int_equal(smp.sequence, next_h);
      assert_int_equal(((const ts_sample *)smp.payload)->seq, next_h);
      ts_assert_ok(shmbus_subscriber_release(h, &smp));
    }
  }
  shmbus_sample got;
  int r = shmbus_subscriber_take(x, &got);
  if (r == 0)
    fail_msg("a cut-off subscriber took sample %llu (payload %llu) from a reclaimed chunk",
             (unsigned long long)got.sequence,
             (unsigned long long)((const ts_sample *)got.payload)->seq);
  ts_assert_err(r, SHMBUS_ERR_CORRUPT);
  ts_assert_err(shmbus_subscriber_take(x, &got), SHMBUS_ERR_EMPTY);
  ts_assert_err(shmbus_subscriber_take_latest(x, &got), SHMBUS_ERR_EMPTY);
  assert_int_equal(shmbus_subscriber_lost(h), 0);

  shmbus_subscriber_close(x);
  shmbus_subscriber_close(h);
  shmbus_publisher_close(p);
  shmbus_node_close(nx);
  shmbus_node_close(nh);
  shmbus_node_close(np);
}

/* take_latest says so too. */
static void cut_off_connection_latest(void **state) {
  ts_env *env = *state;
  char service[64];
  ts_service_name(service, sizeof service, "cut-off-latest");
  shmbus_service_opts o = ts_opts();
  shmbus_node *np = ts_node(env), *nx = ts_node(env);
  shmbus_publisher *p;
  shmbus_subscriber *x;
  ts_assert_ok(shmbus_publisher_open(np, service, &o, &p));
  ts_assert_ok(shmbus_subscriber_open(nx, service, &o, &x));
  shmbus_sample got;
  hl_publish(p, 0x53, 0);
  ts_assert_ok(shmbus_subscriber_take_latest(x, &got)); /* X is bound and active */
  ts_assert_ok(shmbus_subscriber_release(x, &got));
  hl_publish(p, 0x53, 1);
  hl_cut_off(env, service, p, x);
  ts_assert_err(shmbus_subscriber_take_latest(x, &got), SHMBUS_ERR_CORRUPT);
  ts_assert_err(shmbus_subscriber_take(x, &got), SHMBUS_ERR_EMPTY);

  /* Another publisher's sample goes before the news of a cut: take_latest
   * returns it, and the next take_latest says CORRUPT. */
  shmbus_publisher *p2, *p3;
  ts_assert_ok(shmbus_publisher_open(np, service, &o, &p2));
  ts_assert_ok(shmbus_publisher_open(np, service, &o, &p3));
  hl_publish(p3, 0x53, 0);
  ts_assert_ok(shmbus_subscriber_take_latest(x, &got)); /* bound to p3 */
  assert_int_equal(got.publisher_id, shmbus_publisher_id(p3));
  ts_assert_ok(shmbus_subscriber_release(x, &got));
  hl_cut_off(env, service, p3, x);
  hl_publish(p2, 0x53, 0);
  ts_assert_ok(shmbus_subscriber_take_latest(x, &got));
  assert_int_equal(got.publisher_id, shmbus_publisher_id(p2));
  ts_assert_ok(shmbus_subscriber_release(x, &got));
  ts_assert_err(shmbus_subscriber_take_latest(x, &got), SHMBUS_ERR_CORRUPT);
  ts_assert_err(shmbus_subscriber_take_latest(x, &got), SHMBUS_ERR_EMPTY);
  shmbus_publisher_close(p3);
  shmbus_publisher_close(p2);
  shmbus_subscriber_close(x);
  shmbus_publisher_close(p);
  shmbus_node_close(nx);
  shmbus_node_close(np);
}

/* A subscriber that waits is woken by it: its wait says "ready" (so does a
 * wait set), and the take after it says CORRUPT, once. */
static void cut_off_connection_wait(void **state) {
  ts_env *env = *state;
  char service[64];
  ts_service_name(service, sizeof service, "cut-off-wait");
  shmbus_service_opts o = ts_opts();
  shmbus_node *np = ts_node(env), *nx = ts_node(env);
  shmbus_publisher *p;
  shmbus_subscriber *x;
  shmbus_waitset *ws;
  ts_assert_ok(shmbus_publisher_open(np, service, &o, &p));
  ts_assert_ok(shmbus_subscriber_open(nx, service, &o, &x));
  ts_assert_ok(shmbus_waitset_open(nx, &ws));
  shmbus_sample got;
  hl_publish(p, 0x54, 0);
  ts_assert_ok(shmbus_subscriber_wait(x, 1000 * 1000 * 1000));
  ts_assert_ok(shmbus_subscriber_take(x, &got));
  ts_assert_ok(shmbus_subscriber_release(x, &got));
  ts_assert_err(shmbus_subscriber_wait(x, 0), SHMBUS_ERR_TIMEDOUT); /* bound, idle */
  hl_cut_off(env, service, p, x);
  /* Told however it looks: a wait, twice (it keeps the news for the take),
   * then the take. */
  ts_assert_ok(shmbus_subscriber_wait(x, 1000 * 1000 * 1000));
  ts_assert_ok(shmbus_subscriber_wait(x, 0));
  ts_assert_err(shmbus_subscriber_take(x, &got), SHMBUS_ERR_CORRUPT);
  /* Its only publisher serves it no more. */
  ts_assert_err(shmbus_subscriber_wait(x, 0), SHMBUS_ERR_NO_PUBLISHER);
  ts_assert_err(shmbus_subscriber_wait(x, 0), SHMBUS_ERR_TIMEDOUT);
  ts_assert_err(shmbus_subscriber_take(x, &got), SHMBUS_ERR_EMPTY);

  /* A wait set reports DATA for a member cut off, and its take CORRUPT. */
  shmbus_subscriber *y;
  ts_assert_ok(shmbus_subscriber_open(nx, service, &o, &y));
  ts_assert_ok(shmbus_waitset_attach(ws, y, NULL));
  shmbus_wait_event ev[2];
  hl_publish(p, 0x54, 1);
  assert_int_equal(shmbus_waitset_wait(ws, 1000 * 1000 * 1000, ev, 2), 1);
  ts_assert_ok(shmbus_subscriber_take(y, &got));
  ts_assert_ok(shmbus_subscriber_release(y, &got));
  hl_cut_off(env, service, p, y);
  assert_int_equal(shmbus_waitset_wait(ws, 1000 * 1000 * 1000, ev, 2), 1);
  assert_int_equal(ev[0].what, SHMBUS_WAIT_DATA);
  assert_ptr_equal(ev[0].sub, y);
  ts_assert_err(shmbus_subscriber_take(y, &got), SHMBUS_ERR_CORRUPT);
  ts_assert_err(shmbus_subscriber_take(y, &got), SHMBUS_ERR_EMPTY);
  assert_int_equal(shmbus_waitset_wait(ws, 0, ev, 2), 1);
  assert_int_equal(ev[0].what, SHMBUS_WAIT_NO_PUBLISHER);
  ts_assert_err(shmbus_waitset_wait(ws, 0, ev, 2), SHMBUS_ERR_TIMEDOUT);
  ts_assert_ok(shmbus_waitset_detach(ws, y));
  shmbus_subscriber_close(y);
  shmbus_waitset_close(ws);
  shmbus_subscriber_close(x);
  shmbus_publisher_close(p);
  shmbus_node_close(nx);
  shmbus_node_close(np);
}

/* ==== finding 4: FIFOs and symbolic links under our names ================= */

typedef struct fifo_ctx {
  const ts_env *env;
  const char *service;
  uint64_t honest_pub;
} fifo_ctx;

/* A FIFO under the service's name. Broken code opens it O_RDWR (which does
 * not block), finds length 0 and waits 2 s for a creator that never comes.
 * Correct: subscriber and publisher opens fail at once (CORRUPT: not a
 * regular file), and the domain cleanup returns quickly. */
static int fifo_service_victim(ts_child *self, void *arg) {
  (void)self;
  const fifo_ctx *fc = arg;
  alarm(HL_ALARM_S + 4);
  shmbus_node *node = ts_child_node(fc->env);
  TS_CHECK(node != NULL);
  shmbus_service_opts o = ts_opts();
  shmbus_subscriber *s = NULL;
  uint64_t t0 = ts_now_ns();
  int r = shmbus_subscriber_open(node, fc->service, &o, &s);
  HL_CHECK_QUICK(t0, "shmbus_subscriber_open on a FIFO");
  TS_CHECK(r < 0 && s == NULL);
  shmbus_publisher *p = NULL;
  t0 = ts_now_ns();
  r = shmbus_publisher_open(node, fc->service, &o, &p);
  HL_CHECK_QUICK(t0, "shmbus_publisher_open on a FIFO");
  TS_CHECK(r < 0 && p == NULL);
  t0 = ts_now_ns();
  r = shmbus_domain_cleanup(node);
  HL_CHECK_QUICK(t0, "shmbus_domain_cleanup");
  TS_CHECK(r >= 0);
  shmbus_node_close(node);
  return 0;
}

static void fifo_under_service_name(void **state) {
  ts_env *env = *state;
  char service[64], name[SHMBUS__OBJECT_NAME_MAX], path[2048];
  ts_service_name(service, sizeof service, "fifo-svc");
  ts_service_object_name(name, sizeof name, env->domain, service);
  hl_path(env, name, path, sizeof path);
  assert_int_equal(mkfifo(path, 0600), 0);
  fifo_ctx fc = {env, service, 0};
  ts_child vic;
  ts_child_start(&vic, fifo_service_victim, &fc);
  ts_assert_child_ok(&vic);
  assert_int_equal(unlink(path), 0);
}

/* A peer replaces a live publisher's data segment by a FIFO. Broken code
 * opens it O_RDONLY to connect and blocks forever (in subscriber open,
 * take and the domain cleanup, which opens every data segment read-only).
 * Correct: every call answers quickly; that publisher stays unconnected;
 * an honest second publisher's samples arrive. */
static int fifo_data_victim(ts_child *self, void *arg) {
  const fifo_ctx *fc = arg;
  alarm(HL_ALARM_S);
  shmbus_node *node = ts_child_node(fc->env);
  TS_CHECK(node != NULL);
  shmbus_service_opts o = ts_opts();
  shmbus_subscriber *s = NULL;
  uint64_t t0 = ts_now_ns();
  TS_CHECK_ERR(shmbus_subscriber_open(node, fc->service, &o, &s), 0);
  HL_CHECK_QUICK(t0, "shmbus_subscriber_open");
  TS_CHECK(ts_child_send(self, 1) == 0); /* the parent publishes now */
  int got = 0;
  uint64_t end = ts_now_ns() + UINT64_C(2000) * 1000 * 1000;
  unsigned round = 0;
  while (!got && ts_now_ns() < end) {
    shmbus_sample smp;
    t0 = ts_now_ns();
    int r = shmbus_subscriber_take(s, &smp);
    HL_CHECK_QUICK(t0, "shmbus_subscriber_take");
    if (r == 0) {
      TS_CHECK(ts_sample_valid(smp.payload));
      got = smp.publisher_id == fc->honest_pub;
      TS_CHECK_ERR(shmbus_subscriber_release(s, &smp), 0);
    } else {
      TS_CHECK(r == SHMBUS_ERR_EMPTY || r == SHMBUS_ERR_CORRUPT);
      ts_backoff(&round);
    }
  }
  TS_CHECK(got);
  t0 = ts_now_ns();
  int n = shmbus_subscriber_publishers(s);
  HL_CHECK_QUICK(t0, "shmbus_subscriber_publishers");
  TS_CHECK(n >= 1);
  t0 = ts_now_ns();
  n = shmbus_domain_cleanup(node);
  HL_CHECK_QUICK(t0, "shmbus_domain_cleanup");
  TS_CHECK(n >= 0);
  shmbus_subscriber_close(s);
  shmbus_node_close(node);
  return 0;
}

static void fifo_under_data_name(void **state) {
  ts_env *env = *state;
  char service[64], data[SHMBUS__OBJECT_NAME_MAX], path[2048];
  ts_service_name(service, sizeof service, "fifo-data");
  shmbus_service_opts o = ts_opts();
  shmbus_node *na = ts_node(env);
  shmbus_publisher *p1, *p2;
  ts_assert_ok(shmbus_publisher_open(na, service, &o, &p1));
  ts_assert_ok(shmbus_publisher_open(na, service, &o, &p2));
  hl_pub_object(data, env, service, shmbus_publisher_id(p1), 1);
  hl_path(env, data, path, sizeof path);
  assert_int_equal(unlink(path), 0);
  assert_int_equal(mkfifo(path, 0600), 0);

  fifo_ctx fc = {env, service, shmbus_publisher_id(p2)};
  ts_child vic;
  ts_child_start(&vic, fifo_data_victim, &fc);
  hl_expect(&vic, 1);
  for (uint64_t seq = 0; seq < 4; seq++) {
    hl_publish(p1, 1, seq);
    hl_publish(p2, 2, seq);
  }
  ts_assert_child_ok(&vic);

  shmbus_publisher_close(p2);
  shmbus_publisher_close(p1); /* unlinks its names, the FIFO too */
  shmbus_node_close(na);
  unlink(path);
}

/* A peer writes a registry slot as a claimant would (node_id, then word =
 * id << 1: claimed, not ready) naming a node whose liveness token is a
 * FIFO. Every sweep probes that token. Broken code opens it O_RDONLY and
 * blocks forever: every port open, shmbus_publisher_update,
 * shmbus_subscriber_publishers, shmbus_node_list and the domain cleanup of
 * the whole domain hang. Correct: each answers quickly; the ports of the
 * victim work (the forged slot is nobody's delivery). */
static int fifo_token_victim(ts_child *self, void *arg) {
  (void)self;
  const fifo_ctx *fc = arg;
  alarm(HL_ALARM_S);
  shmbus_node *node = ts_child_node(fc->env);
  TS_CHECK(node != NULL);
  shmbus_service_opts o = ts_opts();
  shmbus_subscriber *s = NULL;
  shmbus_publisher *p = NULL;
  uint64_t t0 = ts_now_ns();
  TS_CHECK_ERR(shmbus_subscriber_open(node, fc->service, &o, &s), 0);
  HL_CHECK_QUICK(t0, "shmbus_subscriber_open");
  t0 = ts_now_ns();
  TS_CHECK_ERR(shmbus_publisher_open(node, fc->service, &o, &p), 0);
  HL_CHECK_QUICK(t0, "shmbus_publisher_open");
  ts_sample x;
  ts_sample_fill(&x, 9, 0);
  TS_CHECK_ERR(shmbus_publisher_send_copy(p, &x, sizeof x), 0);
  int got = 0;
  for (unsigned i = 0; i < 1000 && !got; i++) {
    shmbus_sample smp;
    int r = shmbus_subscriber_take(s, &smp);
    if (r == SHMBUS_ERR_EMPTY) continue;
    TS_CHECK_ERR(r, 0);
    TS_CHECK(ts_sample_valid(smp.payload));
    got = smp.publisher_id == shmbus_publisher_id(p);
    TS_CHECK_ERR(shmbus_subscriber_release(s, &smp), 0);
  }
  TS_CHECK(got);
  t0 = ts_now_ns();
  int n = shmbus_publisher_update(p);
  HL_CHECK_QUICK(t0, "shmbus_publisher_update");
  TS_CHECK(n >= 0);
  t0 = ts_now_ns();
  n = shmbus_subscriber_publishers(s);
  HL_CHECK_QUICK(t0, "shmbus_subscriber_publishers");
  TS_CHECK(n >= 1);
  shmbus_node_info info[16];
  size_t count = 0;
  t0 = ts_now_ns();
  TS_CHECK_ERR(shmbus_node_list(node, info, 16, &count), 0);
  HL_CHECK_QUICK(t0, "shmbus_node_list");
  t0 = ts_now_ns();
  n = shmbus_domain_cleanup(node);
  HL_CHECK_QUICK(t0, "shmbus_domain_cleanup");
  TS_CHECK(n >= 0);
  shmbus_publisher_close(p);
  shmbus_subscriber_close(s);
  shmbus_node_close(node);
  return 0;
}

static void fifo_token_in_slot(void **state) {
  ts_env *env = *state;
  char service[64], token[SHMBUS__OBJECT_NAME_MAX], path[2048];
  ts_service_name(service, sizeof service, "fifo-token");
  shmbus_service_opts o = ts_opts();
  shmbus_node *na = ts_node(env);
  shmbus_publisher *p;
  ts_assert_ok(shmbus_publisher_open(na, service, &o, &p));
  hl_service hs;
  assert_int_equal(hl_service_map(env, service, &hs), 0);
  uint32_t free_slot = UINT32_MAX;
  for (uint32_t i = 0; i < hs.cfg.max_subscribers && free_slot == UINT32_MAX; i++)
    if (__atomic_load_n(&hl_slot(&hs, SHMBUS__SUBSCRIBER, i)->word, __ATOMIC_ACQUIRE) == 0)
      free_slot = i;
  assert_true(free_slot != UINT32_MAX);
  const uint64_t fake_node = UINT64_C(0x5eedfeedc0ffee01);
  const uint64_t fake_word = ((UINT64_C(1) << 61) + 7) << 1;
  shmbus__port_slot *slot = hl_slot(&hs, SHMBUS__SUBSCRIBER, free_slot);
  __atomic_store_n(&slot->node_id, fake_node, __ATOMIC_RELEASE);
  __atomic_store_n(&slot->word, fake_word, __ATOMIC_RELEASE);
  hl_token_object(token, env, fake_node);
  hl_path(env, token, path, sizeof path);
  assert_int_equal(mkfifo(path, 0600), 0);

  fifo_ctx fc = {env, service, 0};
  ts_child vic;
  ts_child_start(&vic, fifo_token_victim, &fc);
  ts_assert_child_ok(&vic);

  /* The victim's cleanup may have removed the bogus token: it is no token. */
  assert_true(unlink(path) == 0 || errno == ENOENT);
  uint64_t expected = fake_word;
  if (__atomic_compare_exchange_n(&slot->word, &expected, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
    __atomic_store_n(&slot->node_id, 0, __ATOMIC_RELEASE);
  hl_service_unmap(&hs);
  shmbus_publisher_close(p);
  shmbus_node_close(na);
}

/* A symbolic link under the service's name, to a copy of a valid service
 * segment of that very service kept somewhere else (what the victim would
 * accept if it followed the link). Broken code follows it on the directory
 * backend (open without O_NOFOLLOW), opens the service and writes into the
 * link's target (users, a registry slot, the generations). Correct: opens
 * and the cleanup refuse the link quickly (an error code) and the target is
 * byte for byte unchanged. (On SHMBUS_BACKEND_SHM glibc's shm_open adds
 * O_NOFOLLOW itself, so this case guards the property there.) */
static void symlink_under_service_name(void **state) {
  ts_env *env = *state;
  char service[64], name[SHMBUS__OBJECT_NAME_MAX], path[2048], target[2048];
  ts_service_name(service, sizeof service, "link-svc");
  ts_service_object_name(name, sizeof name, env->domain, service);
  hl_path(env, name, path, sizeof path);
  shmbus_service_opts o = ts_opts();
  shmbus_node *na = ts_node(env), *nb = ts_node(env);
  shmbus_publisher *p;
  ts_assert_ok(shmbus_publisher_open(na, service, &o, &p));
  size_t size;
  uint8_t *copy = hl_read_object(env, name, &size);
  shmbus_publisher_close(p); /* its last user: the service is gone */
  char *dir = ts_tmpdir_create();
  snprintf(target, sizeof target, "%s/precious", dir);
  close(hl_create_file(target, copy, size));
  assert_int_equal(symlink(target, path), 0);

  shmbus_subscriber *s = NULL;
  uint64_t t0 = ts_now_ns();
  int r = shmbus_subscriber_open(nb, service, &o, &s);
  uint64_t dt = ts_now_ns() - t0;
  if (r == 0) {
    shmbus_subscriber_close(s);
    unlink(path);
    ts_tmpdir_remove(dir);
    fail_msg("a subscriber opened the service through a symbolic link to %s", target);
  }
  assert_true(dt < HL_QUICK_NS);
  shmbus_publisher *q = NULL;
  t0 = ts_now_ns();
  r = shmbus_publisher_open(nb, service, &o, &q);
  dt = ts_now_ns() - t0;
  if (r == 0) {
    shmbus_publisher_close(q);
    unlink(path);
    ts_tmpdir_remove(dir);
    fail_msg("a publisher opened the service through a symbolic link to %s", target);
  }
  assert_true(dt < HL_QUICK_NS);
  t0 = ts_now_ns();
  assert_true(shmbus_domain_cleanup(nb) >= 0);
  assert_true(ts_now_ns() - t0 < HL_QUICK_NS);

  size_t after_size;
  int fd = open(target, O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  after_size = (size_t)st.st_size;
  uint8_t *after = malloc(size);
  assert_non_null(after);
  ssize_t n = pread(fd, after, size, 0);
  close(fd);
  int same = after_size == size && n == (ssize_t)size && memcmp(after, copy, size) == 0;
  free(after);
  free(copy);
  unlink(path); /* the link, if the cleanup left it */
  ts_tmpdir_remove(dir);
  assert_true(same); /* the link's target was not written */
  shmbus_node_close(nb);
  shmbus_node_close(na);
}

/* ---- a directory under the service name ------------------------------------
 * Not an object of ours either: CORRUPT, quickly, for both kinds of port
 * (glibc's shm_open reports a directory as EINVAL; that is no bad argument
 * of the caller's). */
static void directory_under_service_name(void **state) {
  const ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  char service[64], name[SHMBUS__OBJECT_NAME_MAX], path[2048];
  ts_service_name(service, sizeof service, "dir");
  ts_service_object_name(name, sizeof name, env->domain, service);
  hl_path(env, name, path, sizeof path);
  assert_int_equal(mkdir(path, 0700), 0);
  shmbus_service_opts o = ts_opts();
  shmbus_subscriber *sub = NULL;
  shmbus_publisher *pub = NULL;
  ts_assert_err(shmbus_subscriber_open(node, service, &o, &sub), SHMBUS_ERR_CORRUPT);
  ts_assert_err(shmbus_publisher_open(node, service, &o, &pub), SHMBUS_ERR_CORRUPT);
  assert_true(shmbus_domain_cleanup(node) >= 0);
  assert_int_equal(rmdir(path), 0);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* ---- a live subscriber reaped ----------------------------------------------
 * A hostile peer writes a dead node's id into a live subscriber's slot; the
 * next sweep (here the publisher's update) reaps it and the slot goes to a
 * new subscriber, whose connection the publisher binds anew. The reaped one
 * must not go on taking from that connection (it would consume the new
 * owner's samples and return chunks it never held there): its take says
 * CORRUPT from then on, and the new owner receives everything. */
static void reaped_live_subscriber(void **state) {
  const ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  char service[64];
  ts_service_name(service, sizeof service, "reaped");
  shmbus_service_opts o = ts_opts();
  o.max_subscribers = 1;
  shmbus_publisher *pub = NULL;
  shmbus_subscriber *victim = NULL, *next = NULL;
  ts_assert_ok(shmbus_publisher_open(node, service, &o, &pub));
  ts_assert_ok(shmbus_subscriber_open(node, service, &o, &victim));
  hl_publish(pub, 1, 0);
  shmbus_sample got;
  ts_assert_ok(shmbus_subscriber_take(victim, &got));
  ts_assert_ok(shmbus_subscriber_release(victim, &got));

  hl_service hs;
  assert_int_equal(hl_service_map(env, service, &hs), 0);
  uint32_t k = hl_find_slot(&hs, SHMBUS__SUBSCRIBER, shmbus_subscriber_id(victim));
  assert_true(k != UINT32_MAX);
  __atomic_store_n(&hl_slot(&hs, SHMBUS__SUBSCRIBER, k)->node_id, UINT64_C(0xdead0001),
                   __ATOMIC_RELEASE); /* no token: a dead node */
  shmbus_publisher_update(pub);       /* sweeps: reaps the victim */
  ts_assert_ok(shmbus_subscriber_open(node, service, &o, &next));
  assert_int_equal(hl_find_slot(&hs, SHMBUS__SUBSCRIBER, shmbus_subscriber_id(next)), k);
  hl_service_unmap(&hs);

  for (uint64_t seq = 1; seq <= 4; seq++) hl_publish(pub, 1, seq);
  ts_assert_err(shmbus_subscriber_take(victim, &got), SHMBUS_ERR_CORRUPT);
  for (uint64_t seq = 1; seq <= 4; seq++) {
    ts_assert_ok(shmbus_subscriber_take(next, &got));
    assert_int_equal(((const ts_sample *)got.payload)->seq, seq);
    ts_assert_ok(shmbus_subscriber_release(next, &got));
  }
  ts_assert_err(shmbus_subscriber_take(next, &got), SHMBUS_ERR_EMPTY);
  shmbus_subscriber_close(victim); /* leaves next's slot alone */
  hl_publish(pub, 1, 5);
  ts_assert_ok(shmbus_subscriber_take(next, &got));
  ts_assert_ok(shmbus_subscriber_release(next, &got));
  shmbus_subscriber_close(next);
  shmbus_publisher_close(pub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* ---- forged timestamps --------------------------------------------------------
 * take_latest picks the newest sample of all publishers by their
 * timestamps. A publisher (here: a peer rewriting its chunk header) that
 * stamps a sample in the future must not win over an honest publisher's
 * newer sample. */
static void future_timestamp(void **state) {
  const ts_env *env = *state;
  shmbus_node *node = ts_node(env);
  char service[64];
  ts_service_name(service, sizeof service, "future");
  shmbus_service_opts o = ts_opts();
  shmbus_subscriber *sub = NULL;
  shmbus_publisher *forger = NULL, *honest = NULL;
  ts_assert_ok(shmbus_subscriber_open(node, service, &o, &sub));
  ts_assert_ok(shmbus_publisher_open(node, service, &o, &forger));
  ts_assert_ok(shmbus_publisher_open(node, service, &o, &honest));
  hl_publish(forger, 1, 0); /* chunk 0 of a fresh pool */
  hl_service hs;
  assert_int_equal(hl_service_map(env, service, &hs), 0);
  char name[SHMBUS__OBJECT_NAME_MAX];
  hl_pub_object(name, env, service, shmbus_publisher_id(forger), 1);
  size_t size = 0;
  uint8_t *data = ts_map_object(env->dir, name, &size);
  assert_non_null(data);
  shmbus__chunk_header *h =
      (shmbus__chunk_header *)(data + shmbus__layout_chunk_offset(&hs.layout, 0));
  __atomic_store_n(&h->timestamp_ns, UINT64_MAX - 1, __ATOMIC_RELEASE);
  ts_unmap_object(data, size);
  hl_service_unmap(&hs);
  hl_publish(honest, 2, 0);
  shmbus_sample got;
  ts_assert_ok(shmbus_subscriber_take_latest(sub, &got));
  assert_int_equal(got.publisher_id, shmbus_publisher_id(honest));
  ts_assert_ok(shmbus_subscriber_release(sub, &got));
  shmbus_publisher_close(honest);
  shmbus_publisher_close(forger);
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  ts_assert_env_clean(env);
}

/* ---- runner ----------------------------------------------------------------- */

#define HL_BOTH(fn)                                               \
  cmocka_unit_test_setup_teardown(fn, ts_setup_shm, ts_teardown), \
      cmocka_unit_test_setup_teardown(fn, ts_setup_dir, ts_teardown)

/* HL_FILTER (environment): run only the cases matching this cmocka glob. */
int main(void) {
  const char *filter = getenv("HL_FILTER");
  if (filter != NULL && *filter != '\0') cmocka_set_test_filter(filter);
  const struct CMUnitTest tests[] = {
      HL_BOTH(config_flipped_while_opening), HL_BOTH(grown_publisher_segments),
      HL_BOTH(grown_service_segment),        HL_BOTH(size_changed_between_reads),
      HL_BOTH(evict_returned_untaken),       HL_BOTH(evict_rewound_head),
      HL_BOTH(cut_off_connection),           HL_BOTH(cut_off_connection_latest),
      HL_BOTH(cut_off_connection_wait),      HL_BOTH(fifo_under_service_name),
      HL_BOTH(fifo_under_data_name),         HL_BOTH(fifo_token_in_slot),
      HL_BOTH(symlink_under_service_name),   HL_BOTH(directory_under_service_name),
      HL_BOTH(reaped_live_subscriber),       HL_BOTH(future_timestamp),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

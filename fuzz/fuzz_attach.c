/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_attach: segment attach and validation, for each kind of segment.
 *
 * The input becomes the content and length of a service segment, or of a
 * publisher's data and/or control segment (forged under the publisher's
 * object names, announced by a forged ready registry slot), and the real
 * open paths run on it: shmbus_subscriber_open (and the connection to the
 * forged publisher), take / take_latest / release on what it finds,
 * shmbus_publisher_open, shmbus_domain_cleanup. Whatever the bytes, they
 * must return error codes: never crash, never hand out a sample outside a
 * chunk, never wait past their bounds, never sleep on the hot path.
 *
 * Input:
 *   byte 0  bits 0-1  0 service, 1 data, 2 control, 3 data and control
 *           bit 2     raw: the rest is the content; else a patch of the
 *                     library's own segment (below)
 *           bit 3     the forged slot's node is dead (else it is ours)
 *           bit 4     open a real publisher too and send
 *           bit 5     run shmbus_domain_cleanup
 *           bit 6     take_latest instead of take
 *           bit 7     open a second subscriber
 *   byte 1  bit 0     write the subscriber's id into its forged connection
 *           bits 1-3  extra takes
 *           bits 4-5  what lies under the forged object's name (the data
 *                     segment's for kind 3): 0 a regular file, 1 a FIFO,
 *                     2 a symbolic link to the service object, 3 a
 *                     directory
 *   raw, both kinds: u16 length of the data part, then data, then control.
 *   patch: i16 length change of the (data or service) segment, i16 of the
 *     control segment, then records { u8 h; u16 offset; bytes }: 1 + (h & 7)
 *     bytes, into the control segment if h & 8 (kind 3), set (h >> 4 == 0),
 *     added (1, a signed byte), xor-ed (2) or set to 0xff (3).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "fuzz_ports.h"

enum { K_SERVICE = 0, K_DATA = 1, K_CONTROL = 2, K_BOTH = 3 };
enum { MAX_SEGMENT = 256 * 1024 };

/* The forged publisher's id (the id of the publisher whose segments are
 * the templates) and a node id nobody holds. */
#define FORGED_ID UINT64_C(0x4000)
#define DEAD_NODE UINT64_C(0x0dead0000000beef)

static fz_service svc;
static uint8_t *tmpl_data, *tmpl_ctl;
static size_t tmpl_data_len, tmpl_ctl_len;

#define SVC_OFF(member) ((uint64_t)offsetof(shmbus__service_seg, member))

static uint8_t *capture(const char *name, size_t *len) {
  fz_map m;
  if (fz_map_open(&m, name) != 0) fz_fail("cannot map %s", name);
  uint8_t *copy = malloc((size_t)m.size);
  if (copy == NULL) fz_fail("out of memory");
  memcpy(copy, m.base, (size_t)m.size);
  *len = (size_t)m.size;
  fz_map_close(&m);
  return copy;
}

/* The service, and a real publisher's data and control segments as the
 * library makes them (publisher id FORGED_ID). */
static void prepare(void) {
  shmbus_service_opts so = SHMBUS_SERVICE_OPTS_INIT;
  so.type.name = "fz/u64";
  so.type.size = 8;
  so.type.align = 8;
  so.max_elements = 2;
  so.max_publishers = 2;
  so.max_subscribers = 2;
  so.queue_depth = 2;
  so.history = 1;
  so.max_loans = 2;
  so.max_held = 2;
  if (fz_service_prepare(&svc, "attach", &so) != 0) fz_fail("cannot prepare the service");
  if (fz_service_write(&svc) != 0) fz_fail("cannot write the service");
  fz_map m;
  if (fz_map_open(&m, svc.object) != 0) fz_fail("cannot map the service");
  fz_put(&m, SVC_OFF(dyn.next_port_id), 8, FORGED_ID);
  fz_map_close(&m);
  shmbus_publisher *pub;
  int e = shmbus_publisher_open(fz_node, svc.name, &svc.opts, &pub);
  if (e || shmbus_publisher_id(pub) != FORGED_ID)
    fz_fail("template publisher: %s", shmbus_err_name(e));
  char name[SHMBUS__OBJECT_NAME_MAX];
  fz_publisher_object(&svc, FORGED_ID, 1, name);
  tmpl_data = capture(name, &tmpl_data_len);
  fz_publisher_object(&svc, FORGED_ID, 0, name);
  tmpl_ctl = capture(name, &tmpl_ctl_len);
  shmbus_publisher_close(pub);
  fz_remove_objects();
}

/* ---- building the segments ------------------------------------------------------- */

typedef struct seg {
  uint8_t *b;
  size_t len;
} seg;

static void seg_from(seg *s, const uint8_t *tmpl, size_t tmpl_len, int16_t delta) {
  long len = (long)tmpl_len + delta;
  if (len < 0) len = 0;
  s->len = (size_t)len;
  s->b = calloc(1, s->len + 8);
  if (s->b == NULL) fz_fail("out of memory");
  memcpy(s->b, tmpl, s->len < tmpl_len ? s->len : tmpl_len);
}

static void seg_raw(seg *s, fz_in part) {
  s->len = part.n < MAX_SEGMENT ? part.n : MAX_SEGMENT;
  s->b = calloc(1, s->len + 8);
  if (s->b == NULL) fz_fail("out of memory");
  memcpy(s->b, part.p, s->len);
}

static void patch(seg *first, seg *second, fz_in *in) {
  while (in->n >= 3) {
    uint8_t h = fz_u8(in);
    uint16_t off = fz_u16(in);
    seg *s = (h & 8) && second ? second : first;
    unsigned len = 1 + (h & 7u);
    for (unsigned i = 0; i < len; i++) {
      uint8_t v = (h >> 4 & 3) == 3 ? 0xff : fz_u8(in);
      size_t at = (size_t)off + i;
      if (at >= s->len) continue;
      switch (h >> 4 & 3) {
      case 0:
      case 3: s->b[at] = v; break;
      case 1: s->b[at] = (uint8_t)(s->b[at] + (int8_t)v); break;
      case 2: s->b[at] ^= v; break;
      }
    }
  }
}

/* Puts a FIFO, a symbolic link or a directory under object `name`
 * instead of a file (a hostile peer's trick): 0 when done. */
static int plant(const char *name, int what) {
  char path[sizeof "/dev/shm/" + SHMBUS__OBJECT_NAME_MAX], target[sizeof path];
  snprintf(path, sizeof path, "/dev/shm/%s", name);
  snprintf(target, sizeof target, "/dev/shm/%s", svc.object);
  switch (what) {
  case 1: return mkfifo(path, 0600);
  case 2: return symlink(target, path);
  default: return mkdir(path, 0700);
  }
}

/* ---- checks ---------------------------------------------------------------------- */

static void check_code(int e, const char *what) {
  FZ_ASSERT(e <= 0 && e > SHMBUS__ERR_LAST_, "%s returned %d, no error code", what, e);
}

/* What shmbus_publisher_open and shmbus_subscriber_open may return
 * (include/shmbus.h; keep in step), less INVAL and NAME: our arguments are
 * valid, whatever lies in the segments. TIMEDOUT: a service that stays
 * "being removed" past the 2 s bound (docs/security.md §4). */
static void check_open(int e, const void *out, const char *what) {
  static const int documented[] = {0,
                                   SHMBUS_ERR_TOO_LARGE,
                                   SHMBUS_ERR_INCOMPATIBLE,
                                   SHMBUS_ERR_CORRUPT,
                                   SHMBUS_ERR_VERSION,
                                   SHMBUS_ERR_NOT_READY,
                                   SHMBUS_ERR_PORT_LIMIT,
                                   SHMBUS_ERR_NO_SPACE,
                                   SHMBUS_ERR_PERM,
                                   SHMBUS_ERR_NOMEM,
                                   SHMBUS_ERR_IO,
                                   SHMBUS_ERR_TIMEDOUT};
  check_code(e, what);
  int ok = 0;
  for (size_t i = 0; i < sizeof documented / sizeof documented[0]; i++) ok |= e == documented[i];
  FZ_ASSERT(ok || !fz_error_checks(),
            "%s with valid arguments returned %s, which it does not "
            "document",
            what, shmbus_err_name(e));
  FZ_ASSERT(e == 0 || out == NULL, "%s failed (%s) without clearing its out-parameter", what,
            shmbus_err_name(e));
}

enum { OPEN_BOUND_NS = 3000 * 1000 * 1000ull }; /* 2 s for the service + 100 ms per publisher */

typedef struct held {
  shmbus_sample s[4];
  int n;
} held;

static void take(shmbus_subscriber *sub, held *h, int latest) {
  shmbus_sample smp;
  uint64_t t0 = fz_vclock_ns();
  int e = latest ? shmbus_subscriber_take_latest(sub, &smp) : shmbus_subscriber_take(sub, &smp);
  fz_count(latest ? "take_latest" : "take", e);
  check_code(e, "take");
  if (fz_timing())
    FZ_ASSERT(fz_vclock_ns() == t0, "take slept %llu ns (a hot-path call must not wait)",
              (unsigned long long)(fz_vclock_ns() - t0));
  if (e == SHMBUS_ERR_HOLD_LIMIT)
    FZ_ASSERT(h->n == (int)svc.cfg.max_held, "HOLD_LIMIT while holding %d", h->n);
  if (e) return;
  FZ_ASSERT(h->n < (int)svc.cfg.max_held, "a sample beyond max_held");
  fz_check_payload(&svc, smp.payload, smp.bytes, 1, NULL, "take");
  h->s[h->n++] = smp;
}

static void release_all(shmbus_subscriber *sub, held *h) {
  for (int i = 0; i < h->n; i++) {
    int e = shmbus_subscriber_release(sub, &h->s[i]);
    fz_count("release", e);
    FZ_ASSERT(e == 0, "release of a held sample returned %s", shmbus_err_name(e));
  }
  h->n = 0;
}

static shmbus_subscriber *open_sub(const char *what) {
  shmbus_subscriber *sub = NULL;
  uint64_t t0 = fz_vclock_ns();
  int e = shmbus_subscriber_open(fz_node, svc.name, &svc.opts, &sub);
  fz_count(what, e);
  check_open(e, sub, what);
  if (fz_timing())
    FZ_ASSERT(fz_vclock_ns() - t0 <= OPEN_BOUND_NS, "%s waited %llu ns", what,
              (unsigned long long)(fz_vclock_ns() - t0));
  return sub;
}

/* ---- one iteration --------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  uint8_t sel = fz_u8(&in), sel2 = fz_u8(&in);
  int kind = sel & 3, raw = sel & 4;
  seg a = {0}, b = {0}; /* service, or data; control */
  if (kind == K_SERVICE) {
    if (raw)
      seg_raw(&a, in);
    else {
      seg_from(&a, svc.image, svc.image_len, (int16_t)fz_u16(&in));
      (void)fz_u16(&in);
      patch(&a, NULL, &in);
    }
  } else if (raw) {
    fz_in first = kind == K_BOTH ? fz_take_bytes(&in, fz_u16(&in)) : in;
    if (kind != K_CONTROL)
      seg_raw(&a, first);
    else
      seg_from(&a, tmpl_data, tmpl_data_len, 0);
    if (kind != K_DATA)
      seg_raw(&b, kind == K_BOTH ? in : first);
    else
      seg_from(&b, tmpl_ctl, tmpl_ctl_len, 0);
  } else {
    int16_t d0 = (int16_t)fz_u16(&in), d1 = (int16_t)fz_u16(&in);
    seg_from(&a, tmpl_data, tmpl_data_len, kind == K_CONTROL ? 0 : d0);
    seg_from(&b, tmpl_ctl, tmpl_ctl_len, kind == K_DATA ? 0 : d1);
    if (kind == K_DATA)
      patch(&a, NULL, &in);
    else if (kind == K_CONTROL)
      patch(&b, NULL, &in);
    else
      patch(&a, &b, &in);
  }

  fz_begin_iteration();
  int planted = sel2 >> 4 & 3;
  char planted_name[SHMBUS__OBJECT_NAME_MAX];
  if (kind == K_SERVICE) {
    snprintf(planted_name, sizeof planted_name, "%s", svc.object);
    if (planted)
      FZ_ASSERT(plant(svc.object, planted) == 0, "cannot plant under %s", svc.object);
    else
      FZ_ASSERT(fz_object_write(svc.object, a.b, a.len) == 0, "cannot write the service");
  } else {
    /* A valid service whose publisher slot 0 says FORGED_ID is ready. */
    uint8_t *image = malloc(svc.image_len);
    if (image == NULL) fz_fail("out of memory");
    memcpy(image, svc.image, svc.image_len);
    fz_map m = {image, svc.image_len, -1};
    uint64_t slot = FZ_SLOT_OFFSET(&svc.layout, &svc.cfg, SHMBUS__PUBLISHER, 0);
    fz_put(&m, slot + offsetof(shmbus__port_slot, word), 8, fz_ready_word(FORGED_ID));
    fz_put(&m, slot + offsetof(shmbus__port_slot, node_id), 8,
           (sel & 8) ? DEAD_NODE : shmbus_node_id(fz_node));
    fz_put(&m, SVC_OFF(dyn.pub_generation), 8, fz_get(&m, SVC_OFF(dyn.pub_generation), 8) + 1);
    int w = fz_object_write(svc.object, image, svc.image_len);
    free(image);
    FZ_ASSERT(w == 0, "cannot write the service");
    char name[SHMBUS__OBJECT_NAME_MAX];
    fz_publisher_object(&svc, FORGED_ID, kind != K_CONTROL, planted_name);
    fz_publisher_object(&svc, FORGED_ID, 1, name);
    if (planted && strcmp(name, planted_name) == 0)
      FZ_ASSERT(plant(name, planted) == 0, "cannot plant under %s", name);
    else
      FZ_ASSERT(fz_object_write(name, a.b, a.len) == 0, "cannot write %s", name);
    fz_publisher_object(&svc, FORGED_ID, 0, name);
    if (planted && strcmp(name, planted_name) == 0)
      FZ_ASSERT(plant(name, planted) == 0, "cannot plant under %s", name);
    else
      FZ_ASSERT(fz_object_write(name, b.b, b.len) == 0, "cannot write %s", name);
  }
  free(a.b);
  free(b.b);

  held h = {.n = 0}, h2 = {.n = 0};
  shmbus_subscriber *sub = open_sub("subscriber_open"), *sub2 = NULL;
  shmbus_publisher *pub = NULL;
  int latest = (sel & 64) != 0;
  if (sub && (sel2 & 1) && kind != K_SERVICE) {
    /* Bind the forged connection to our subscriber, as its publisher would. */
    fz_map svcmap, ctl;
    char name[SHMBUS__OBJECT_NAME_MAX];
    fz_publisher_object(&svc, FORGED_ID, 0, name);
    if (fz_map_open(&svcmap, svc.object) == 0) {
      int k = fz_find_slot(&svc, &svcmap, SHMBUS__SUBSCRIBER, shmbus_subscriber_id(sub));
      if (k >= 0 && fz_map_open(&ctl, name) == 0) {
        fz_put(&ctl, FZ_CONN_OFFSET(&svc.layout, (uint32_t)k) + offsetof(shmbus__conn, sub_id), 8,
               shmbus_subscriber_id(sub));
        fz_map_close(&ctl);
      }
      fz_map_close(&svcmap);
    }
  }
  if (sub) {
    int takes = 2 + (sel2 >> 1 & 7);
    for (int i = 0; i < takes; i++) {
      take(sub, &h, latest);
      if (i & 1) release_all(sub, &h);
    }
    fz_count("publishers", shmbus_subscriber_publishers(sub));
    (void)shmbus_subscriber_lost(sub);
    uint64_t t0 = fz_vclock_ns();
    int e = shmbus_subscriber_wait(sub, 0);
    fz_count("wait", e);
    if (fz_timing())
      FZ_ASSERT(fz_vclock_ns() - t0 <= 15 * 1000 * 1000, "wait(0) took %llu ns",
                (unsigned long long)(fz_vclock_ns() - t0));
  }
  if (sel & 16) {
    int e = shmbus_publisher_open(fz_node, svc.name, &svc.opts, &pub);
    fz_count("publisher_open", e);
    check_open(e, pub, "publisher_open");
    if (pub) {
      uint8_t payload[8] = {1, 2, 3, 4, 5, 6, 7, 8};
      fz_count("send_copy", shmbus_publisher_send_copy(pub, payload, sizeof payload));
      fz_count("update", shmbus_publisher_update(pub));
      if (sub) take(sub, &h, latest);
    }
  }
  if (sel & 128) {
    sub2 = open_sub("subscriber_open 2");
    if (sub2) take(sub2, &h2, 0);
  }
  if (sel & 32) {
    uint64_t t0 = fz_vclock_ns();
    int e = shmbus_domain_cleanup(fz_node);
    fz_count("domain_cleanup", e);
    FZ_ASSERT(e >= 0 || e > SHMBUS__ERR_LAST_, "cleanup returned %d", e);
    if (fz_timing())
      FZ_ASSERT(fz_vclock_ns() - t0 <= OPEN_BOUND_NS, "cleanup waited %llu ns",
                (unsigned long long)(fz_vclock_ns() - t0));
  }
  if (sub) release_all(sub, &h);
  if (sub2) release_all(sub2, &h2);
  shmbus_subscriber_close(sub2);
  shmbus_subscriber_close(sub);
  shmbus_publisher_close(pub);
  fz_remove_objects();
  return 0;
}

/* ---- seeds ---------------------------------------------------------------------- */

typedef struct pbuf {
  uint8_t b[4096];
  size_t n;
} pbuf;

static void p8(pbuf *p, uint8_t v) {
  if (p->n < sizeof p->b) p->b[p->n++] = v;
}
static void p16(pbuf *p, uint16_t v) {
  p8(p, (uint8_t)v);
  p8(p, (uint8_t)(v >> 8));
}
/* A set record of `len` (1..8) bytes of v at `off`. */
static void rec(pbuf *p, int control, uint64_t off, unsigned len, uint64_t v) {
  p8(p, (uint8_t)((len - 1) | (control ? 8 : 0)));
  p16(p, (uint16_t)off);
  for (unsigned i = 0; i < len; i++) p8(p, (uint8_t)(v >> (8 * i)));
}
static void add(pbuf *p, int control, uint64_t off, int8_t delta) {
  p8(p, (uint8_t)(0x10 | (control ? 8 : 0)));
  p16(p, (uint16_t)off);
  p8(p, (uint8_t)delta);
}
static void start(pbuf *p, uint8_t sel, uint8_t sel2, int16_t d0, int16_t d1) {
  p->n = 0;
  p8(p, sel);
  p8(p, sel2);
  p16(p, (uint16_t)d0);
  p16(p, (uint16_t)d1);
}

#define HDR(m) ((uint64_t)offsetof(shmbus__seg_header, m))
#define CFG(m) (SVC_OFF(cfg) + offsetof(shmbus__service_config, m))

static void write_seeds(const char *dir) {
  pbuf p;
  char name[64];
  const shmbus__layout *l = &svc.layout;
  uint64_t conn0 = FZ_CONN_OFFSET(l, 0);
  /* Raw images of the three kinds, as the library makes them. */
  p.n = 0;
  p8(&p, K_SERVICE | 4 | 16 | 32);
  p8(&p, 0);
  uint8_t *raw = malloc(4 + svc.image_len + tmpl_data_len + tmpl_ctl_len);
  memcpy(raw, p.b, 2);
  memcpy(raw + 2, svc.image, svc.image_len);
  fz_write_seed(dir, "raw-service", raw, 2 + svc.image_len);
  raw[0] = K_BOTH | 4 | 16;
  raw[1] = 1 | 4;
  raw[2] = (uint8_t)tmpl_data_len;
  raw[3] = (uint8_t)(tmpl_data_len >> 8);
  memcpy(raw + 4, tmpl_data, tmpl_data_len);
  memcpy(raw + 4 + tmpl_data_len, tmpl_ctl, tmpl_ctl_len);
  fz_write_seed(dir, "raw-both", raw, 4 + tmpl_data_len + tmpl_ctl_len);
  free(raw);

  /* Service headers and configurations, patched. */
  struct {
    const char *name;
    uint64_t off;
    unsigned len;
    uint64_t v;
  } svc_recs[] = {
      {"magic", HDR(magic), 1, 0x00},
      {"version", HDR(layout_version), 4, SHMBUS__LAYOUT_VERSION + 1},
      {"kind", HDR(kind), 4, SHMBUS__SEG_DATA},
      {"header-size", HDR(header_size), 8, 128},
      {"total-size", HDR(total_size), 8, UINT64_C(1) << 40},
      {"not-initialised", HDR(initialised), 4, 0},
      {"max-publishers", CFG(max_publishers), 4, 300},
      {"max-subscribers", CFG(max_subscribers), 4, 0},
      {"queue-depth", CFG(queue_depth), 4, 70000},
      {"max-held", CFG(max_held), 4, 65536},
      {"element-size", CFG(element_size), 4, 4},
      {"align", CFG(element_align), 4, 3},
      {"overflow", CFG(overflow), 4, 3},
      {"name", CFG(name), 1, 'x'},
      {"users-removing", SVC_OFF(dyn.users), 8, SHMBUS__USERS_REMOVING},
      {"users-max", SVC_OFF(dyn.users), 8, SHMBUS__USERS_REMOVING - 1},
      {"next-port-id", SVC_OFF(dyn.next_port_id), 8, UINT64_C(1) << 62},
      {"pub-slot", FZ_SLOT_OFFSET(l, &svc.cfg, SHMBUS__PUBLISHER, 0), 8, fz_ready_word(0x77)},
      {"sub-slot", FZ_SLOT_OFFSET(l, &svc.cfg, SHMBUS__SUBSCRIBER, 1), 8, fz_ready_word(0x78)},
  };
  for (size_t i = 0; i < sizeof svc_recs / sizeof svc_recs[0]; i++) {
    start(&p, (uint8_t)(K_SERVICE | 16 | (i & 1 ? 32 : 0) | (i & 2 ? 128 : 0)), 0, 0, 0);
    rec(&p, 0, svc_recs[i].off, svc_recs[i].len, svc_recs[i].v);
    snprintf(name, sizeof name, "service-%s", svc_recs[i].name);
    fz_write_seed(dir, name, p.b, p.n);
  }
  start(&p, K_SERVICE | 16 | 32 | 128, 0, 0, 0);
  fz_write_seed(dir, "service-valid", p.b, p.n);
  start(&p, K_SERVICE | 16, 0, -1, 0);
  fz_write_seed(dir, "service-short", p.b, p.n);
  start(&p, K_SERVICE | 16, 0, (int16_t) - (int)FZ_PAGE(l), 0);
  fz_write_seed(dir, "service-page-short", p.b, p.n);
  start(&p, K_SERVICE, 0, (int16_t) - (int)svc.image_len, 0);
  fz_write_seed(dir, "service-empty", p.b, p.n);

  /* Publisher segments: valid, bound, with a sample queued. */
  uint64_t chunk0 = FZ_CHUNK_OFFSET(l, 0);
  for (int variant = 0; variant < 8; variant++) {
    start(&p, (uint8_t)(K_BOTH | (variant & 1 ? 64 : 0) | (variant == 7 ? 16 | 32 : 0)), 1 | 2, 0,
          0);
    rec(&p, 0, chunk0 + offsetof(shmbus__chunk_header, payload_bytes), 4, variant == 2 ? 1000 : 8);
    rec(&p, 1, conn0 + l->sub_ring_offset, 8, shmbus__slot_word(0, variant == 3 ? 200 : 0));
    rec(&p, 1, conn0 + l->sub_ring_offset + 8, 8, shmbus__slot_word(1, 1));
    if (variant == 4) rec(&p, 1, conn0 + offsetof(shmbus__conn, head), 8, 1);
    if (variant == 5) rec(&p, 1, conn0 + offsetof(shmbus__conn, lost), 8, 5);
    if (variant == 6) rec(&p, 1, conn0 + offsetof(shmbus__conn, done_head), 8, 100);
    snprintf(name, sizeof name, "queued-%d", variant);
    fz_write_seed(dir, name, p.b, p.n);
  }
  struct {
    const char *name;
    int control;
    uint64_t off;
    unsigned len;
    uint64_t v;
  } pub_recs[] = {
      {"data-total", 0, HDR(total_size), 8, 0},
      {"data-generation", 0, HDR(generation), 8, FORGED_ID + 1},
      {"data-kind", 0, HDR(kind), 4, SHMBUS__SEG_CONTROL},
      {"data-magic", 0, HDR(magic), 8, 0},
      {"data-init", 0, HDR(initialised), 4, 0},
      {"ctl-total", 1, HDR(total_size), 8, 64},
      {"ctl-generation", 1, HDR(generation), 8, 0},
      {"ctl-version", 1, HDR(layout_version), 4, 1},
      {"ctl-header-size", 1, HDR(header_size), 8, 0},
      {"ctl-init", 1, HDR(initialised), 4, 1},
  };
  for (size_t i = 0; i < sizeof pub_recs / sizeof pub_recs[0]; i++) {
    int k = pub_recs[i].control ? K_CONTROL : K_DATA;
    start(&p, (uint8_t)(k | (i & 1 ? 8 : 0) | (i & 2 ? 32 : 0) | 16), 1, 0, 0);
    rec(&p, 0, pub_recs[i].off, pub_recs[i].len, pub_recs[i].v);
    snprintf(name, sizeof name, "pub-%s", pub_recs[i].name);
    fz_write_seed(dir, name, p.b, p.n);
  }
  start(&p, K_DATA | 32, 0, -1, 0);
  fz_write_seed(dir, "pub-data-short", p.b, p.n);
  start(&p, K_CONTROL | 32, 0, 0, (int16_t)FZ_PAGE(l));
  fz_write_seed(dir, "pub-ctl-long", p.b, p.n);
  start(&p, K_BOTH | 8 | 32, 0, 0, 0);
  add(&p, 0, HDR(total_size), 1);
  fz_write_seed(dir, "pub-dead-node", p.b, p.n);
  /* FIFOs, links and directories under the objects' names. */
  for (int what = 1; what <= 3; what++) {
    for (int k = K_SERVICE; k <= K_CONTROL; k++) {
      start(&p, (uint8_t)(k | 32), (uint8_t)(what << 4), 0, 0);
      snprintf(name, sizeof name, "planted-%d-%d", k, what);
      fz_write_seed(dir, name, p.b, p.n);
    }
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fz_init("attach");
  prepare();
  const char *seeds = getenv("SHMBUS_FUZZ_WRITE_SEEDS");
  if (seeds != NULL) {
    write_seeds(seeds);
    exit(0);
  }
  return 0;
}

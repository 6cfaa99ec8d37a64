/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shmbus_abi_peer: one end of the mixed 32/64-bit tests (tests/test_abi.c).
 * Every build makes one; test_abi runs its own build's peer against the
 * peer of the other ABI (SHMBUS_ABI_PEER) as real processes.
 *
 *   shmbus_abi_peer info
 *       the ABI in one line (pointer size, alignment of uint64_t and double
 *       inside structs)
 *   shmbus_abi_peer layout
 *       `key value` lines: every field of shmbus__layout for a set of
 *       service configurations, the offset helpers, and sizeof/offsetof of
 *       the shared structs of src/layout.h and of the sample type. Two
 *       builds that share services print the same text.
 *   shmbus_abi_peer segments <shm|dir> <dir|-> <domain>
 *       opens a publisher and a subscriber on two services, prints the
 *       lengths (st_size) of the service, data and control objects, closes
 *       and fails if anything of the domain is left
 *   shmbus_abi_peer pub|sub [options]
 *       publisher and subscriber of the sample type below, overflow BLOCK
 *       (nothing is lost). Options:
 *         --domain D --backend shm|dir --dir P --service S
 *         --depth Q --history H --max-subs N --max-held N   (service limits)
 *         --count N         pub: samples to publish once --subs subscribers
 *                           are connected; sub: samples to receive
 *         --subs N          pub: subscribers to wait for first (default 1)
 *         --then-subs N --then-count N
 *                           pub: afterwards wait for N subscribers (a late
 *                           joiner, served the history) and publish more
 *         --reclaim         pub: between the two phases read "killed" on
 *                           stdin and wait until update() drops to 0 (the
 *                           killed subscriber's slot was freed)
 *         --batches K       take_latest lockstep: pub publishes K batches,
 *                           printing "batch <last seq>" and reading a line
 *                           after each; sub reads "<seq>" and take_latest
 *                           must return exactly that sample
 *         --first F         sub: the first sequence number expected
 *         --mode poll|wait|waitset   sub: how it waits for samples
 *         --take take|latest         sub: how it takes
 *         --hold N --stall  sub: after --count, keep the last N samples
 *                           held, print "stalled" and sleep until killed
 *         --alarm S         last-resort watchdog (default 150 s)
 *
 * Protocol lines on stdout (line buffered): "ready" (sub opened),
 * "published <n>", "reclaimed <us>", "stalled <n>", "batch <seq>",
 * "got <seq>", and a last summary line "pub: ok ..." / "sub: ok ...".
 * Failures go to stderr; exit 0 only if every check held, 1 otherwise,
 * 2 for bad usage. Every wait is bounded (PEER_STALL_S, the block timeout,
 * alarm()).
 *
 * Public API only, except the layout role (src/layout.h, src/service.h).
 */
#include <errno.h>
#include <dirent.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "service.h" /* shmbus__layout, shmbus__layout_compute, layout.h */
#include "shmbus.h"
#include "support.h" /* ts_crc32c, ts_now_ns, ts_leftovers */

/* ---- the sample type: the same bytes in every ABI ------------------------- */

typedef struct abi_sample {
  SHMBUS_ALIGNAS(8) uint64_t seq;
  uint64_t mix; /* a function of seq with every bit in use         */
  double value; /* seq / 2 + 1/4: exact, so x87 and SSE agree      */
  float ratio;  /* (seq mod 2^16) / 8: exact                        */
  uint8_t bytes[16];
  uint32_t crc; /* CRC32C of the 44 bytes before it                 */
} abi_sample;
SHMBUS_ASSERT_LAYOUT(abi_sample, 48, 8);
SHMBUS_ASSERT_OFFSET(abi_sample, mix, 8);
SHMBUS_ASSERT_OFFSET(abi_sample, value, 16);
SHMBUS_ASSERT_OFFSET(abi_sample, ratio, 24);
SHMBUS_ASSERT_OFFSET(abi_sample, bytes, 28);
SHMBUS_ASSERT_OFFSET(abi_sample, crc, 44);

#define ABI_TYPE_NAME "shmbus-test/abi-sample"

static void sample_fill(abi_sample *s, uint64_t seq) {
  s->seq = seq;
  s->mix = (seq * UINT64_C(0x9e3779b97f4a7c15)) ^ UINT64_C(0xa5a5f00dc0ffee11);
  s->value = (double)seq * 0.5 + 0.25;
  s->ratio = (float)(uint32_t)(seq & 0xffffu) * 0.125f;
  for (unsigned i = 0; i < sizeof s->bytes; i++)
    s->bytes[i] = (uint8_t)((seq >> (8u * (i % 8u))) + 31u * i);
  s->crc = ts_crc32c(s, offsetof(abi_sample, crc));
}

/* Says what is wrong with a received sample, or NULL when it is what the
 * publisher wrote for `seq`. */
static const char *sample_problem(const abi_sample *s, uint64_t seq) {
  if (((uintptr_t)s & 7u) != 0) return "payload not 8-byte aligned";
  if (ts_crc32c(s, offsetof(abi_sample, crc)) != s->crc) return "CRC32C mismatch";
  abi_sample want;
  memset(&want, 0, sizeof want);
  sample_fill(&want, seq);
  if (s->seq != want.seq) return "seq field differs from the sample's sequence";
  if (s->mix != want.mix) return "uint64_t field differs";
  if (memcmp(&s->value, &want.value, sizeof want.value) != 0) return "double field differs";
  if (memcmp(&s->ratio, &want.ratio, sizeof want.ratio) != 0) return "float field differs";
  if (memcmp(s->bytes, want.bytes, sizeof want.bytes) != 0) return "payload bytes differ";
  if (s->crc != want.crc) return "CRC32C differs from the expected one";
  return NULL;
}

/* ---- small helpers -------------------------------------------------------- */

#define PEER_STALL_S 20  /* no progress for this long: fail      */
#define PEER_RECLAIM_S 5 /* a killed subscriber's slot is freed  */
#define NS_PER_S UINT64_C(1000000000)

static const char *peer_role = "peer";

static int peer_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int peer_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "shmbus_abi_peer %s (%d-bit, pid %ld): ", peer_role, (int)(sizeof(void *) * 8),
          (long)getpid());
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 1;
}

static void sleep_us(unsigned us) {
  struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Reads one line from stdin (without the newline), waiting at most
 * timeout_s. 0, or -1 on EOF, error or time-out. */
static int read_line(char *out, size_t cap, unsigned timeout_s) {
  static char buf[512];
  static size_t len;
  uint64_t deadline = ts_now_ns() + (uint64_t)timeout_s * NS_PER_S;
  for (;;) {
    char *nl = memchr(buf, '\n', len);
    if (nl != NULL) {
      size_t n = (size_t)(nl - buf);
      size_t copy = n < cap - 1 ? n : cap - 1;
      memcpy(out, buf, copy);
      out[copy] = '\0';
      memmove(buf, nl + 1, len - n - 1);
      len -= n + 1;
      return 0;
    }
    if (len == sizeof buf) return -1;
    uint64_t now = ts_now_ns();
    if (now >= deadline) return -1;
    struct pollfd pfd = {0, POLLIN, 0};
    int r = poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    ssize_t got = read(0, buf + len, sizeof buf - len);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return -1;
    len += (size_t)got;
  }
}

/* ---- info ------------------------------------------------------------------ */

struct align_u64 {
  char c;
  uint64_t v;
};
struct align_double {
  char c;
  double v;
};

static int role_info(void) {
  printf("%d-bit (sizeof(void *) %zu, uint64_t aligned to %zu and double to %zu in structs)\n",
         (int)(sizeof(void *) * 8), sizeof(void *), offsetof(struct align_u64, v),
         offsetof(struct align_double, v));
  return 0;
}

/* ---- layout ------------------------------------------------------------------ */

#define P_SIZE(T) printf("sizeof(%s) %zu\n", #T, sizeof(T))
#define P_ALIGN(T) printf("alignof(%s) %zu\n", #T, (size_t) _Alignof(T))
#define P_OFF(T, f) printf("offsetof(%s, %s) %zu\n", #T, #f, offsetof(T, f))

/* Sizes and offsets only for the shared structs: their C alignment is 4 on
 * i386 (uint64_t members), 8 on x86-64, and that is no layout difference,
 * because no shared struct is placed by the compiler: every one sits at an
 * offset the layout computes (page or cache-line multiples, asserted).
 * The sample type's alignment does matter (the open compares it). */
static void print_structs(void) {
  printf("SHMBUS__MAGIC 0x%016" PRIx64 "\n", (uint64_t)SHMBUS__MAGIC);
  printf("SHMBUS__LAYOUT_VERSION %u\n", (unsigned)SHMBUS__LAYOUT_VERSION);
  printf("SHMBUS__CACHE_LINE %u\n", (unsigned)SHMBUS__CACHE_LINE);

  P_SIZE(shmbus__seg_header);
  P_OFF(shmbus__seg_header, magic);
  P_OFF(shmbus__seg_header, layout_version);
  P_OFF(shmbus__seg_header, kind);
  P_OFF(shmbus__seg_header, header_size);
  P_OFF(shmbus__seg_header, total_size);
  P_OFF(shmbus__seg_header, creator_node_id);
  P_OFF(shmbus__seg_header, generation);
  P_OFF(shmbus__seg_header, initialised);
  P_OFF(shmbus__seg_header, page_size);
  P_OFF(shmbus__seg_header, reserved1);

  P_SIZE(shmbus__service_config);
  P_OFF(shmbus__service_config, name);
  P_OFF(shmbus__service_config, type_name);
  P_OFF(shmbus__service_config, element_size);
  P_OFF(shmbus__service_config, element_align);
  P_OFF(shmbus__service_config, max_elements);
  P_OFF(shmbus__service_config, max_publishers);
  P_OFF(shmbus__service_config, max_subscribers);
  P_OFF(shmbus__service_config, queue_depth);
  P_OFF(shmbus__service_config, history);
  P_OFF(shmbus__service_config, max_loans);
  P_OFF(shmbus__service_config, max_held);
  P_OFF(shmbus__service_config, overflow);
  P_OFF(shmbus__service_config, reserved);

  P_SIZE(shmbus__port_slot);
  P_OFF(shmbus__port_slot, word);
  P_OFF(shmbus__port_slot, node_id);
  P_OFF(shmbus__port_slot, reserved);

  P_SIZE(shmbus__wait_slot);
  P_OFF(shmbus__wait_slot, wait_mode);
  P_OFF(shmbus__wait_slot, sleeping);
  P_OFF(shmbus__wait_slot, notifier);
  P_OFF(shmbus__wait_slot, reserved);

  P_SIZE(shmbus__wake_word);
  P_OFF(shmbus__wake_word, event);
  P_OFF(shmbus__wake_word, reserved0);

  P_SIZE(shmbus__service_dyn);
  P_OFF(shmbus__service_dyn, users);
  P_OFF(shmbus__service_dyn, next_port_id);
  P_OFF(shmbus__service_dyn, pad0);
  P_OFF(shmbus__service_dyn, pub_generation);
  P_OFF(shmbus__service_dyn, pad1);
  P_OFF(shmbus__service_dyn, sub_generation);
  P_OFF(shmbus__service_dyn, pad2);

  P_SIZE(shmbus__service_seg);
  P_OFF(shmbus__service_seg, hdr);
  P_OFF(shmbus__service_seg, cfg);
  P_OFF(shmbus__service_seg, dyn);

  P_SIZE(shmbus__chunk_header);
  P_OFF(shmbus__chunk_header, sequence);
  P_OFF(shmbus__chunk_header, timestamp_ns);
  P_OFF(shmbus__chunk_header, publisher_id);
  P_OFF(shmbus__chunk_header, payload_bytes);
  P_OFF(shmbus__chunk_header, reserved);

  P_SIZE(shmbus__conn);
  P_OFF(shmbus__conn, sub_id);
  P_OFF(shmbus__conn, lost);
  P_OFF(shmbus__conn, wait_ack);
  P_OFF(shmbus__conn, pub_waiting);
  P_OFF(shmbus__conn, reserved0);
  P_OFF(shmbus__conn, pad0);
  P_OFF(shmbus__conn, head);
  P_OFF(shmbus__conn, pad1);
  P_OFF(shmbus__conn, done_tail);
  P_OFF(shmbus__conn, sub_ack);
  P_OFF(shmbus__conn, room_event);
  P_OFF(shmbus__conn, reserved2);
  P_OFF(shmbus__conn, pad2);
  P_OFF(shmbus__conn, done_head);
  P_OFF(shmbus__conn, pad3);

  P_SIZE(abi_sample);
  P_ALIGN(abi_sample);
  P_OFF(abi_sample, seq);
  P_OFF(abi_sample, mix);
  P_OFF(abi_sample, value);
  P_OFF(abi_sample, ratio);
  P_OFF(abi_sample, bytes);
  P_OFF(abi_sample, crc);
}

typedef struct layout_case {
  uint32_t size, align, max_elements, pubs, subs, depth, history, loans, held, overflow;
} layout_case;

static const layout_case layout_cases[] = {
    /* the tests' service: the sample type, defaults, BLOCK */
    {sizeof(abi_sample), 8, 1, 4, 8, 16, 0, 4, 4, SHMBUS_OVERFLOW_BLOCK},
    /* everything at its minimum */
    {1, 1, 1, 1, 1, 1, 0, 1, 1, SHMBUS_OVERFLOW_DROP_OLDEST},
    /* odd sizes: rings rounded up, history and loans in the pool */
    {24, 8, 7, 3, 5, 33, 17, 2, 31, SHMBUS_OVERFLOW_DROP_NEWEST},
    /* a byte stream of 1 MiB samples */
    {1, 1, 1u << 20, 2, 3, 4, 2, 8, 2, SHMBUS_OVERFLOW_BLOCK},
    /* alignment above a cache line and a page */
    {192, 128, 5, 6, 2, 1000, 100, 7, 9, SHMBUS_OVERFLOW_BLOCK},
    {4096, 4096, 3, 2, 2, 2, 1, 1, 1, SHMBUS_OVERFLOW_DROP_OLDEST},
    /* the limits */
    {64, 64, 1, SHMBUS_MAX_PORTS, SHMBUS_MAX_PORTS, SHMBUS_MAX_QUEUE_DEPTH, SHMBUS_MAX_HISTORY,
     SHMBUS_MAX_LOANS, SHMBUS_MAX_HELD, SHMBUS_OVERFLOW_BLOCK},
};

static int print_layout_case(unsigned n, const layout_case *c) {
  shmbus__service_config cfg;
  memset(&cfg, 0, sizeof cfg);
  snprintf((char *)cfg.name, sizeof cfg.name, "abi-layout-%u", n);
  snprintf((char *)cfg.type_name, sizeof cfg.type_name, "abi-type-%u", n);
  cfg.element_size = c->size;
  cfg.element_align = c->align;
  cfg.max_elements = c->max_elements;
  cfg.max_publishers = c->pubs;
  cfg.max_subscribers = c->subs;
  cfg.queue_depth = c->depth;
  cfg.history = c->history;
  cfg.max_loans = c->loans;
  cfg.max_held = c->held;
  cfg.overflow = c->overflow;
  shmbus__layout l;
  int r = shmbus__layout_compute(&cfg, &l);
  if (r != 0) return peer_fail("layout case %u: shmbus__layout_compute: %s", n, shmbus_err_name(r));
  printf("case%u.config %u %u %u %u %u %u %u %u %u %u\n", n, c->size, c->align, c->max_elements,
         c->pubs, c->subs, c->depth, c->history, c->loans, c->held, c->overflow);
#define P_L(f) printf("case%u.%s %" PRIu64 "\n", n, #f, (uint64_t)l.f)
  P_L(page);
  P_L(chunks);
  P_L(payload_offset);
  P_L(max_payload);
  P_L(chunk_stride);
  P_L(chunks_offset);
  P_L(data_size);
  P_L(queue_cap);
  P_L(done_cap);
  P_L(sub_ring_offset);
  P_L(done_ring_offset);
  P_L(conn_stride);
  P_L(control_size);
  P_L(wait_offset);
  P_L(wake_offset);
  P_L(service_size);
#undef P_L
  uint32_t last_sub = c->subs - 1, last_pub = c->pubs - 1;
  printf("case%u.conn_offset[0] %" PRIu64 "\n", n, shmbus__layout_conn_offset(&l, 0));
  printf("case%u.conn_offset[last] %" PRIu64 "\n", n, shmbus__layout_conn_offset(&l, last_sub));
  printf("case%u.pub_slot_offset[0] %" PRIu64 "\n", n,
         shmbus__layout_slot_offset(&l, &cfg, SHMBUS__PUBLISHER, 0));
  printf("case%u.pub_slot_offset[last] %" PRIu64 "\n", n,
         shmbus__layout_slot_offset(&l, &cfg, SHMBUS__PUBLISHER, last_pub));
  printf("case%u.sub_slot_offset[0] %" PRIu64 "\n", n,
         shmbus__layout_slot_offset(&l, &cfg, SHMBUS__SUBSCRIBER, 0));
  printf("case%u.sub_slot_offset[last] %" PRIu64 "\n", n,
         shmbus__layout_slot_offset(&l, &cfg, SHMBUS__SUBSCRIBER, last_sub));
  printf("case%u.wait_offset[last] %" PRIu64 "\n", n, shmbus__layout_wait_offset(&l, last_sub));
  printf("case%u.wake_offset[last] %" PRIu64 "\n", n, shmbus__layout_wake_offset(&l, last_sub));
  printf("case%u.chunk_offset[0] %" PRIu64 "\n", n, shmbus__layout_chunk_offset(&l, 0));
  printf("case%u.chunk_offset[last] %" PRIu64 "\n", n,
         shmbus__layout_chunk_offset(&l, l.chunks - 1));
  return 0;
}

static int role_layout(void) {
  print_structs();
  for (unsigned i = 0; i < sizeof layout_cases / sizeof layout_cases[0]; i++)
    if (print_layout_case(i, &layout_cases[i]) != 0) return 1;
  return 0;
}

/* ---- options ------------------------------------------------------------------ */

typedef struct peer_args {
  const char *domain;
  int backend;
  const char *dir;
  const char *service;
  uint32_t depth, history, max_subs, max_held;
  uint64_t count, then_count, first;
  uint32_t subs, then_subs, batches, hold;
  int reclaim, stall;
  const char *mode; /* poll, wait, waitset */
  const char *take; /* take, latest */
  unsigned alarm_s;
} peer_args;

static int parse_u64(const char *s, uint64_t *out) {
  if (s == NULL || *s == '\0') return -1;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0') return -1;
  *out = (uint64_t)v;
  return 0;
}

static int parse_u32(const char *s, uint32_t *out) {
  uint64_t v;
  if (parse_u64(s, &v) != 0 || v > UINT32_MAX) return -1;
  *out = (uint32_t)v;
  return 0;
}

static int usage(const char *why) {
  fprintf(stderr,
          "shmbus_abi_peer: %s\n"
          "usage: shmbus_abi_peer info | layout | segments <shm|dir> <dir|-> <domain>\n"
          "       shmbus_abi_peer pub|sub --domain D [--backend shm|dir --dir P] "
          "[--service S] [options]\n"
          "(see the comment at the top of tests/abi_peer.c)\n",
          why);
  return 2;
}

static int parse_args(int argc, char **argv, peer_args *a) {
  memset(a, 0, sizeof *a);
  a->backend = SHMBUS_BACKEND_SHM;
  a->service = "abi";
  a->subs = 1;
  a->mode = "poll";
  a->take = "take";
  a->alarm_s = 150;
  for (int i = 2; i < argc; i++) {
    /* --key value or --key=value */
    char k[32];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    const char *eq = strchr(argv[i], '=');
    int joined = eq != NULL;
    size_t klen = joined ? (size_t)(eq - argv[i]) : strlen(argv[i]);
    if (klen >= sizeof k) return usage("unknown option");
    memcpy(k, argv[i], klen);
    k[klen] = '\0';
    if (joined) v = eq + 1;
    int bad = 0, flag = 1;
    if (strcmp(k, "--reclaim") == 0) {
      a->reclaim = 1;
    } else if (strcmp(k, "--stall") == 0) {
      a->stall = 1;
    } else {
      flag = 0;
      if (v == NULL) return usage("an option lacks its value");
      if (strcmp(k, "--domain") == 0)
        a->domain = v;
      else if (strcmp(k, "--backend") == 0) {
        if (strcmp(v, "shm") == 0)
          a->backend = SHMBUS_BACKEND_SHM;
        else if (strcmp(v, "dir") == 0)
          a->backend = SHMBUS_BACKEND_DIR;
        else
          bad = 1;
      } else if (strcmp(k, "--dir") == 0)
        a->dir = v;
      else if (strcmp(k, "--service") == 0)
        a->service = v;
      else if (strcmp(k, "--mode") == 0)
        a->mode = v;
      else if (strcmp(k, "--take") == 0)
        a->take = v;
      else if (strcmp(k, "--depth") == 0)
        bad = parse_u32(v, &a->depth);
      else if (strcmp(k, "--history") == 0)
        bad = parse_u32(v, &a->history);
      else if (strcmp(k, "--max-subs") == 0)
        bad = parse_u32(v, &a->max_subs);
      else if (strcmp(k, "--max-held") == 0)
        bad = parse_u32(v, &a->max_held);
      else if (strcmp(k, "--count") == 0)
        bad = parse_u64(v, &a->count);
      else if (strcmp(k, "--then-count") == 0)
        bad = parse_u64(v, &a->then_count);
      else if (strcmp(k, "--first") == 0)
        bad = parse_u64(v, &a->first);
      else if (strcmp(k, "--subs") == 0)
        bad = parse_u32(v, &a->subs);
      else if (strcmp(k, "--then-subs") == 0)
        bad = parse_u32(v, &a->then_subs);
      else if (strcmp(k, "--batches") == 0)
        bad = parse_u32(v, &a->batches);
      else if (strcmp(k, "--hold") == 0)
        bad = parse_u32(v, &a->hold);
      else if (strcmp(k, "--alarm") == 0) {
        uint32_t s = 0;
        bad = parse_u32(v, &s);
        a->alarm_s = s;
      } else
        return usage("unknown option");
    }
    if (bad) return usage("bad option value");
    if (!flag && !joined) i++;
  }
  if (a->domain == NULL) return usage("--domain is required");
  if (a->backend == SHMBUS_BACKEND_DIR && a->dir == NULL) return usage("--backend dir needs --dir");
  if (a->backend == SHMBUS_BACKEND_SHM) a->dir = NULL;
  if (strcmp(a->mode, "poll") != 0 && strcmp(a->mode, "wait") != 0 &&
      strcmp(a->mode, "waitset") != 0)
    return usage("--mode is poll, wait or waitset");
  if (strcmp(a->take, "take") != 0 && strcmp(a->take, "latest") != 0)
    return usage("--take is take or latest");
  return 0;
}

static shmbus_service_opts service_opts(const peer_args *a) {
  shmbus_service_opts o = SHMBUS_SERVICE_OPTS_INIT;
  o.type.name = ABI_TYPE_NAME;
  o.type.size = sizeof(abi_sample);
  o.type.align = _Alignof(abi_sample);
  o.queue_depth = a->depth;
  o.history = a->history;
  o.max_subscribers = a->max_subs;
  o.max_held = a->max_held;
  o.overflow = SHMBUS_OVERFLOW_BLOCK;
  return o;
}

static shmbus_node *open_node(const char *domain, int backend, const char *dir) {
  shmbus_node_opts o = SHMBUS_NODE_OPTS_INIT;
  o.domain = domain;
  o.backend = backend;
  o.root = dir;
  shmbus_node *node = NULL;
  int r = shmbus_node_open(&o, &node);
  if (r != 0) {
    peer_fail("shmbus_node_open(domain %s): %s", domain, shmbus_err_name(r));
    return NULL;
  }
  return node;
}

static int open_failed(const char *what, int r) {
  return peer_fail("%s: %s (%s) %s", what, shmbus_err_name(r), shmbus_strerror(r),
                   shmbus_error_detail());
}

/* ---- segments ------------------------------------------------------------------ */

typedef struct seg_sizes {
  long long service, data, control;
  int n_service, n_data, n_control;
} seg_sizes;

/* The lengths of the domain's objects, by kind (the suffix of the name). */
static int measure_segments(const char *domain, const char *dir, seg_sizes *out) {
  memset(out, 0, sizeof *out);
  char prefix[64];
  snprintf(prefix, sizeof prefix, "shmbus.%s.", domain);
  const char *root = dir ? dir : "/dev/shm";
  DIR *d = opendir(root);
  if (d == NULL) return peer_fail("opendir %s: %s", root, strerror(errno));
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
    const char *rest = e->d_name + strlen(prefix);
    if (strncmp(rest, "n.", 2) == 0) continue; /* a node's liveness token */
    char path[1024];
    ts_object_path(path, sizeof path, dir, e->d_name);
    struct stat st;
    if (stat(path, &st) != 0) {
      closedir(d);
      return peer_fail("stat %s: %s", path, strerror(errno));
    }
    size_t len = strlen(e->d_name);
    char kind = len > 2 && e->d_name[len - 2] == '.' ? e->d_name[len - 1] : '?';
    if (kind == 's') {
      out->service = (long long)st.st_size;
      out->n_service++;
    } else if (kind == 'd') {
      out->data = (long long)st.st_size;
      out->n_data++;
    } else if (kind == 'c') {
      out->control = (long long)st.st_size;
      out->n_control++;
    } else {
      closedir(d);
      return peer_fail("unexpected object %s", e->d_name);
    }
  }
  closedir(d);
  if (out->n_service != 1 || out->n_data != 1 || out->n_control != 1)
    return peer_fail("expected one service, data and control object, found %d, %d, %d",
                     out->n_service, out->n_data, out->n_control);
  return 0;
}

static int segments_case(shmbus_node *node, const char *domain, const char *dir, unsigned n,
                         const peer_args *a) {
  char service[64];
  snprintf(service, sizeof service, "abi-segments-%u", n);
  shmbus_service_opts o = service_opts(a);
  shmbus_subscriber *sub = NULL;
  shmbus_publisher *pub = NULL;
  int r = shmbus_subscriber_open(node, service, &o, &sub);
  if (r != 0) return open_failed("shmbus_subscriber_open", r);
  r = shmbus_publisher_open(node, service, &o, &pub);
  if (r != 0) {
    shmbus_subscriber_close(sub);
    return open_failed("shmbus_publisher_open", r);
  }
  int rc = 0;
  uint64_t deadline = ts_now_ns() + PEER_STALL_S * NS_PER_S;
  /* The subscriber maps the publisher when it looks for publishers. */
  while (shmbus_subscriber_publishers(sub) < 1 || shmbus_publisher_update(pub) < 1) {
    if (ts_now_ns() > deadline) {
      rc = peer_fail("the subscriber never connected");
      break;
    }
    sleep_us(1000);
  }
  seg_sizes s;
  if (rc == 0) rc = measure_segments(domain, dir, &s);
  if (rc == 0) {
    printf("case%u.config depth %u history %u max_subs %u max_held %u\n", n, a->depth, a->history,
           a->max_subs, a->max_held);
    printf("case%u.service_object_size %lld\n", n, s.service);
    printf("case%u.data_object_size %lld\n", n, s.data);
    printf("case%u.control_object_size %lld\n", n, s.control);
  }
  shmbus_publisher_close(pub);
  shmbus_subscriber_close(sub);
  return rc;
}

static int role_segments(int argc, char **argv) {
  if (argc != 5) return usage("segments <shm|dir> <dir|-> <domain>");
  int backend;
  if (strcmp(argv[2], "shm") == 0)
    backend = SHMBUS_BACKEND_SHM;
  else if (strcmp(argv[2], "dir") == 0)
    backend = SHMBUS_BACKEND_DIR;
  else
    return usage("the backend is shm or dir");
  const char *dir = backend == SHMBUS_BACKEND_DIR ? argv[3] : NULL;
  const char *domain = argv[4];
  shmbus_node *node = open_node(domain, backend, dir);
  if (node == NULL) return 1;
  /* The tests' service, and one with larger limits and a history. */
  peer_args cases[2];
  memset(cases, 0, sizeof cases);
  cases[0].depth = 16;
  cases[1].depth = 100;
  cases[1].history = 9;
  cases[1].max_subs = 3;
  cases[1].max_held = 7;
  int rc = 0;
  for (unsigned i = 0; i < 2 && rc == 0; i++) rc = segments_case(node, domain, dir, i, &cases[i]);
  shmbus_node_close(node);
  char names[1024] = "";
  size_t left = ts_leftovers(domain, dir, names, sizeof names);
  if (left != 0) rc = peer_fail("%zu object(s) left after closing: %s", left, names);
  return rc;
}

/* ---- publisher ------------------------------------------------------------------ */

/* Waits until `want` subscribers are connected (update() connects them and
 * replays the history to late joiners). */
static int wait_for_subscribers(shmbus_publisher *pub, uint32_t want) {
  uint64_t deadline = ts_now_ns() + PEER_STALL_S * NS_PER_S;
  for (;;) {
    int n = shmbus_publisher_update(pub);
    if (n < 0) return peer_fail("shmbus_publisher_update: %s", shmbus_err_name(n));
    if ((uint32_t)n >= want) return 0;
    if (ts_now_ns() > deadline)
      return peer_fail("%d of %u subscriber(s) connected after %d s", n, want, PEER_STALL_S);
    sleep_us(1000);
  }
}

static int publish_one(shmbus_publisher *pub, uint64_t seq) {
  void *payload = NULL;
  int r = shmbus_publisher_loan(pub, 1, &payload);
  if (r != 0) return peer_fail("loan of sample %" PRIu64 ": %s", seq, shmbus_err_name(r));
  sample_fill(payload, seq);
  r = shmbus_publisher_publish(pub, payload);
  if (r != 0) {
    shmbus_publisher_discard(pub, payload);
    return peer_fail("publish of sample %" PRIu64 ": %s (%s)", seq, shmbus_err_name(r),
                     shmbus_strerror(r));
  }
  return 0;
}

static int publish_n(shmbus_publisher *pub, uint64_t *seq, uint64_t n) {
  for (uint64_t i = 0; i < n; i++, (*seq)++)
    if (publish_one(pub, *seq) != 0) return 1;
  return 0;
}

/* take_latest lockstep: batch k of 1 + k % depth samples, then the driver
 * has the subscriber take the latest and answers. */
static int publish_batches(shmbus_publisher *pub, uint64_t *seq, const peer_args *a) {
  uint32_t depth = a->depth ? a->depth : 16;
  for (uint32_t k = 0; k < a->batches; k++) {
    if (publish_n(pub, seq, 1 + k % depth) != 0) return 1;
    printf("batch %" PRIu64 "\n", *seq - 1);
    char line[64];
    if (read_line(line, sizeof line, PEER_STALL_S) != 0 || strcmp(line, "next") != 0)
      return peer_fail("batch %u: no \"next\" on stdin", k);
  }
  return 0;
}

/* After the driver killed our subscriber: its slot must be freed within
 * PEER_RECLAIM_S (update() drops to 0). */
static int wait_for_reclaim(shmbus_publisher *pub) {
  char line[64];
  if (read_line(line, sizeof line, PEER_STALL_S) != 0 || strcmp(line, "killed") != 0)
    return peer_fail("no \"killed\" on stdin");
  uint64_t t0 = ts_now_ns(), deadline = t0 + PEER_RECLAIM_S * NS_PER_S;
  for (;;) {
    int n = shmbus_publisher_update(pub);
    if (n == 0) break;
    if (n < 0) return peer_fail("shmbus_publisher_update: %s", shmbus_err_name(n));
    if (ts_now_ns() > deadline)
      return peer_fail("the killed subscriber was not reclaimed: update() is still %d after %d s",
                       n, PEER_RECLAIM_S);
    sleep_us(1000);
  }
  printf("reclaimed %" PRIu64 "\n", (ts_now_ns() - t0) / 1000u);
  return 0;
}

static int role_pub(const peer_args *a) {
  shmbus_node *node = open_node(a->domain, a->backend, a->dir);
  if (node == NULL) return 1;
  shmbus_service_opts o = service_opts(a);
  shmbus_publisher *pub = NULL;
  int r = shmbus_publisher_open(node, a->service, &o, &pub);
  shmbus_node_close(node);
  if (r != 0) return open_failed("shmbus_publisher_open", r);
  /* A subscriber that stops taking makes publish fail in time, not hang. */
  shmbus_publisher_set_block_timeout(pub, (int64_t)PEER_STALL_S * (int64_t)NS_PER_S);
  uint64_t seq = 0, t0 = 0, t1 = 0;
  int rc = wait_for_subscribers(pub, a->subs);
  if (rc == 0) {
    t0 = ts_now_ns();
    rc = a->batches ? publish_batches(pub, &seq, a) : publish_n(pub, &seq, a->count);
    t1 = ts_now_ns();
  }
  if (rc == 0 && (a->reclaim || a->then_subs || a->then_count)) {
    printf("published %" PRIu64 "\n", seq);
    if (a->reclaim) rc = wait_for_reclaim(pub);
    if (rc == 0) rc = wait_for_subscribers(pub, a->then_subs);
    if (rc == 0) rc = publish_n(pub, &seq, a->then_count);
  }
  if (rc == 0) {
    double s = (double)(t1 - t0) / 1e9;
    printf("pub: ok %" PRIu64 " samples published (first phase %.3f s, %.2f Msamples/s)\n", seq, s,
           s > 0 ? (double)(a->batches ? seq : a->count) / s / 1e6 : 0.0);
  }
  shmbus_publisher_close(pub);
  return rc;
}

/* ---- subscriber ------------------------------------------------------------------ */

typedef struct sub_state {
  const peer_args *a;
  shmbus_subscriber *sub;
  shmbus_waitset *ws;
  uint64_t next; /* the sequence expected next */
  uint64_t received;
  uint64_t publisher_id;
  uint64_t waits;      /* times it slept (or looked) for lack of a sample */
  uint64_t slow_wakes; /* waits that ended with a sample only after SLOW_WAKE_MS */
  uint64_t slowest_ns;
  shmbus_sample held[64]; /* --hold: the last samples, not released */
  uint32_t n_held;
} sub_state;

/* Checks one taken sample (expected: sequence `want`). */
static int check_sample(sub_state *st, const shmbus_sample *s, uint64_t want) {
  if (s->bytes != sizeof(abi_sample))
    return peer_fail("sample %" PRIu64 ": %zu bytes, expected %zu", s->sequence, s->bytes,
                     sizeof(abi_sample));
  if (s->sequence != want)
    return peer_fail("expected sequence %" PRIu64 ", got %" PRIu64 " (lost or duplicated samples)",
                     want, s->sequence);
  if (st->publisher_id == 0) st->publisher_id = s->publisher_id;
  if (s->publisher_id != st->publisher_id)
    return peer_fail("sample %" PRIu64 " from publisher %" PRIx64 ", expected %" PRIx64, want,
                     s->publisher_id, st->publisher_id);
  const char *why = sample_problem(s->payload, want);
  if (why != NULL) return peer_fail("sample %" PRIu64 ": %s", want, why);
  return 0;
}

/* A sleeper whose wake-ups do not arrive still finds its samples, at the
 * next look for dead publishers (every 100 ms): a wait that ends with a
 * sample only after this long, once samples flow, means a lost wake-up.
 * Scheduling delays make a few; lost wake-ups make most. */
#define SLOW_WAKE_MS 80
#define SLOW_WAKES_MAX 50

/* Notes how long a wait that ended with a sample took. */
static int note_wake(sub_state *st, uint64_t t0) {
  uint64_t ns = ts_now_ns() - t0;
  if (st->received == 0) return 0; /* before the publisher started */
  if (ns > st->slowest_ns) st->slowest_ns = ns;
  if (ns < (uint64_t)SLOW_WAKE_MS * 1000000u) return 0;
  if (++st->slow_wakes > SLOW_WAKES_MAX)
    return peer_fail("%" PRIu64 " waits (mode %s) ended only after %d ms or more, after %" PRIu64
                     " samples: the publisher's wake-ups do not reach this subscriber",
                     st->slow_wakes, st->a->mode, SLOW_WAKE_MS, st->received);
  return 0;
}

/* Waits for news after take found nothing. 0 to take again. */
static int wait_for_sample(sub_state *st) {
  st->waits++;
  int64_t slice = (int64_t)NS_PER_S;
  uint64_t t0 = ts_now_ns();
  if (strcmp(st->a->mode, "wait") == 0) {
    int r = shmbus_subscriber_wait(st->sub, slice);
    if (r == 0) return note_wake(st, t0);
    if (r == SHMBUS_ERR_TIMEDOUT) return 0;
    return peer_fail("shmbus_subscriber_wait after %" PRIu64 " samples: %s", st->received,
                     shmbus_err_name(r));
  }
  if (strcmp(st->a->mode, "waitset") == 0) {
    shmbus_wait_event ev[2];
    int n = shmbus_waitset_wait(st->ws, slice, ev, 2);
    if (n == SHMBUS_ERR_TIMEDOUT) return 0;
    if (n < 0)
      return peer_fail("shmbus_waitset_wait after %" PRIu64 " samples: %s", st->received,
                       shmbus_err_name(n));
    for (int i = 0; i < n; i++) {
      if (ev[i].what == SHMBUS_WAIT_NO_PUBLISHER)
        return peer_fail("wait set: the publisher left after %" PRIu64 " samples", st->received);
      if (ev[i].what != SHMBUS_WAIT_DATA || ev[i].sub != st->sub)
        return peer_fail("wait set: unexpected event %d", ev[i].what);
    }
    return note_wake(st, t0);
  }
  sched_yield();
  return 0;
}

static int receive_all(sub_state *st) {
  const peer_args *a = st->a;
  uint64_t last_progress = ts_now_ns();
  while (st->received < a->count) {
    shmbus_sample s;
    int r = shmbus_subscriber_take(st->sub, &s);
    if (r == SHMBUS_ERR_EMPTY) {
      if (ts_now_ns() - last_progress > PEER_STALL_S * NS_PER_S)
        return peer_fail("no sample for %d s after %" PRIu64 " of %" PRIu64, PEER_STALL_S,
                         st->received, a->count);
      if (wait_for_sample(st) != 0) return 1;
      continue;
    }
    if (r != 0)
      return peer_fail("take after %" PRIu64 " samples: %s", st->received, shmbus_err_name(r));
    last_progress = ts_now_ns();
    if (check_sample(st, &s, st->next) != 0) return 1;
    st->next++;
    st->received++;
    /* --hold: the last `hold` samples stay taken. */
    if (a->hold && a->count - st->received < a->hold) {
      st->held[st->n_held++] = s;
      continue;
    }
    r = shmbus_subscriber_release(st->sub, &s);
    if (r != 0) return peer_fail("release of %" PRIu64 ": %s", s.sequence, shmbus_err_name(r));
  }
  return 0;
}

/* take_latest lockstep: the driver names the newest sample published. */
static int receive_latest(sub_state *st) {
  /* Map the publisher first (take would; here nothing is taken before the
   * first batch), so that its update() counts us. */
  uint64_t deadline = ts_now_ns() + PEER_STALL_S * NS_PER_S;
  while (shmbus_subscriber_publishers(st->sub) < 1) {
    if (ts_now_ns() > deadline) return peer_fail("no publisher within %d s", PEER_STALL_S);
    sleep_us(1000);
  }
  for (uint32_t k = 0; k < st->a->batches; k++) {
    char line[64];
    uint64_t want;
    if (read_line(line, sizeof line, PEER_STALL_S) != 0 || parse_u64(line, &want) != 0)
      return peer_fail("batch %u: no sequence number on stdin", k);
    shmbus_sample s;
    int r = shmbus_subscriber_take_latest(st->sub, &s);
    if (r != 0) return peer_fail("take_latest in batch %u: %s", k, shmbus_err_name(r));
    if (want < st->next)
      return peer_fail("batch %u: the driver named %" PRIu64 ", not after %" PRIu64, k, want,
                       st->next);
    if (check_sample(st, &s, want) != 0) return 1;
    st->next = want + 1;
    st->received++;
    r = shmbus_subscriber_release(st->sub, &s);
    if (r != 0) return peer_fail("release: %s", shmbus_err_name(r));
    r = shmbus_subscriber_take(st->sub, &s);
    if (r != SHMBUS_ERR_EMPTY)
      return peer_fail("batch %u: take after take_latest gave %s (sequence %" PRIu64
                       "), expected EMPTY: take_latest left older samples queued",
                       k, shmbus_err_name(r), s.sequence);
    printf("got %" PRIu64 "\n", want);
  }
  return 0;
}

static int role_sub(const peer_args *a) {
  if (a->hold > sizeof((sub_state *)0)->held / sizeof(shmbus_sample))
    return usage("--hold is at most 64");
  shmbus_node *node = open_node(a->domain, a->backend, a->dir);
  if (node == NULL) return 1;
  shmbus_service_opts o = service_opts(a);
  sub_state st;
  memset(&st, 0, sizeof st);
  st.a = a;
  st.next = a->first;
  int r = shmbus_subscriber_open(node, a->service, &o, &st.sub);
  if (r != 0) {
    shmbus_node_close(node);
    return open_failed("shmbus_subscriber_open", r);
  }
  if (strcmp(a->mode, "waitset") == 0) {
    r = shmbus_waitset_open(node, &st.ws);
    if (r == 0) r = shmbus_waitset_attach(st.ws, st.sub, NULL);
    if (r != 0) {
      shmbus_waitset_close(st.ws);
      shmbus_subscriber_close(st.sub);
      shmbus_node_close(node);
      return peer_fail("wait set: %s", shmbus_err_name(r));
    }
  }
  shmbus_node_close(node);
  printf("ready\n");
  uint64_t t0 = ts_now_ns();
  int rc = strcmp(a->take, "latest") == 0 ? receive_latest(&st) : receive_all(&st);
  double secs = (double)(ts_now_ns() - t0) / 1e9;
  if (rc == 0 && shmbus_subscriber_lost(st.sub) != 0)
    rc = peer_fail("%" PRIu64 " samples lost (overflow BLOCK loses none)",
                   shmbus_subscriber_lost(st.sub));
  if (rc == 0 && a->stall) {
    /* Hold what we took, leave the rest queued, and wait to be killed. */
    printf("stalled %" PRIu64 "\n", st.received);
    for (;;) pause();
  }
  if (rc == 0 && strcmp(a->take, "take") == 0) {
    shmbus_sample s;
    r = shmbus_subscriber_take(st.sub, &s);
    if (r != SHMBUS_ERR_EMPTY)
      rc =
          peer_fail("a sample beyond the %" PRIu64 " expected: take gave %s (sequence %" PRIu64 ")",
                    a->count, shmbus_err_name(r), s.sequence);
  }
  if (rc == 0 && st.a->batches)
    printf("sub: ok %" PRIu64
           " batches, take_latest gave the newest sample of each (the last "
           "%" PRIu64 ") and left none queued, CRC32C and fields checked, %.3f s\n",
           st.received, st.next - 1, secs);
  else if (rc == 0)
    printf("sub: ok %" PRIu64 " samples, sequences %" PRIu64 "..%" PRIu64
           " once each in order, CRC32C and fields checked, mode %s, %" PRIu64
           " waits, slowest wake %.1f ms, %.3f s (%.2f Msamples/s)\n",
           st.received, a->first, st.next - 1, a->mode, st.waits, (double)st.slowest_ns / 1e6, secs,
           secs > 0 ? (double)st.received / secs / 1e6 : 0.0);
  for (uint32_t i = 0; i < st.n_held; i++) shmbus_subscriber_release(st.sub, &st.held[i]);
  shmbus_waitset_close(st.ws);
  shmbus_subscriber_close(st.sub);
  return rc;
}

/* ---- main -------------------------------------------------------------------------- */

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2) return usage("no role");
  peer_role = argv[1];
  if (strcmp(argv[1], "info") == 0) return role_info();
  if (strcmp(argv[1], "layout") == 0) return role_layout();
  alarm(150); /* a bug must never hang CI: the last resort */
  if (strcmp(argv[1], "segments") == 0) return role_segments(argc, argv);
  if (strcmp(argv[1], "pub") != 0 && strcmp(argv[1], "sub") != 0) return usage("unknown role");
  peer_args a;
  int r = parse_args(argc, argv, &a);
  if (r != 0) return r;
  alarm(a.alarm_s);
  return strcmp(argv[1], "pub") == 0 ? role_pub(&a) : role_sub(&a);
}

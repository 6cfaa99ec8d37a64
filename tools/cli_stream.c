/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shmbus echo, hz and pub: samples of a service, as a subscriber or a
 * publisher of its own type (found with the introspection API, or --type).
 * A sample's payload is a peer's bytes: it is printed, never interpreted
 * beyond its length, which the library has bounded already.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- opening ports ----------------------------------------------------------- */

/* 0 with *sub open; 0 with *sub NULL when --duration or a signal ended
 * the wait for the service (a normal end: nothing to show); else 1. */
static int open_subscriber(shmbus_node *node, const cli_opts *o, shmbus_subscriber **sub) {
  const char *service = o->args[0];
  shmbus_service_opts so;
  char type_name[SHMBUS_TYPE_NAME_MAX + 1];
  char what[SHMBUS_SERVICE_NAME_MAX + 32];
  snprintf(what, sizeof what, "subscribe to %s", service);
  *sub = NULL;
  uint64_t end = cli_deadline(o->duration);
  int r = cli_service_opts_wait(node, service, o, &so, type_name);
  if (r == SHMBUS_ERR_TIMEDOUT) {
    if (cli_stop_requested() || cli_now_ns() >= end) return 0;
    return cli_failf("%s: no such service (waited %g s)", what, o->timeout);
  }
  if (r == 0) r = shmbus_subscriber_open(node, service, &so, sub);
  return r ? cli_fail(what, r) : 0;
}

/* ---- echo ---------------------------------------------------------------------- */

/* --format: fields of a fixed width, each with a count ("f32[3]"). */
enum { FIELDS_MAX = 64, FIELD_COUNT_MAX = 1 << 20 };

typedef struct field {
  char kind;      /* 'i', 'u' or 'f'  */
  unsigned bytes; /* 1, 2, 4 or 8     */
  uint32_t count;
} field;

typedef struct format {
  field f[FIELDS_MAX];
  size_t n;
  uint64_t record_bytes; /* one pass over the fields */
} format;

static int parse_field(const char *tok, size_t len, field *out) {
  static const struct {
    const char *name;
    char kind;
    unsigned bytes;
  } kinds[] = {{"i8", 'i', 1},  {"u8", 'u', 1},  {"i16", 'i', 2}, {"u16", 'u', 2}, {"i32", 'i', 4},
               {"u32", 'u', 4}, {"i64", 'i', 8}, {"u64", 'u', 8}, {"f32", 'f', 4}, {"f64", 'f', 8}};
  size_t name_len = len;
  uint64_t count = 1;
  const char *bracket = memchr(tok, '[', len);
  if (bracket) {
    name_len = (size_t)(bracket - tok);
    size_t digits = len - name_len - 2;
    char buf[16];
    if (tok[len - 1] != ']' || digits == 0 || digits >= sizeof buf) return -1;
    memcpy(buf, bracket + 1, digits);
    buf[digits] = '\0';
    if (cli_parse_u64(buf, &count) || count == 0 || count > FIELD_COUNT_MAX) return -1;
  }
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    if (strlen(kinds[i].name) == name_len && !memcmp(kinds[i].name, tok, name_len)) {
      out->kind = kinds[i].kind;
      out->bytes = kinds[i].bytes;
      out->count = (uint32_t)count;
      return 0;
    }
  }
  return -1;
}

/* 0, or -1 with a message on stderr. */
static int parse_format(const char *s, format *fmt) {
  memset(fmt, 0, sizeof *fmt);
  for (const char *p = s;;) {
    while (*p == ' ' || *p == ',' || *p == '\t') p++;
    if (*p == '\0') break;
    size_t len = strcspn(p, " ,\t");
    if (fmt->n == FIELDS_MAX) return cli_failf("--format: more than %d fields", FIELDS_MAX), -1;
    if (parse_field(p, len, &fmt->f[fmt->n]))
      return cli_failf("--format: '%.*s' is not a field (i8..u64, f32, f64, with [N])", (int)len,
                       p),
             -1;
    fmt->record_bytes += (uint64_t)fmt->f[fmt->n].bytes * fmt->f[fmt->n].count;
    fmt->n++;
    p += len;
  }
  if (fmt->n == 0) return cli_failf("--format: no fields"), -1;
  return 0;
}

/* Little-endian, whatever the host. */
static uint64_t load_le(const unsigned char *p, unsigned bytes) {
  uint64_t v = 0;
  for (unsigned i = bytes; i-- > 0;) v = v << 8 | p[i];
  return v;
}

static void print_value(const field *f, const unsigned char *p) {
  uint64_t v = load_le(p, f->bytes);
  if (f->kind == 'u') {
    printf("%llu", (unsigned long long)v);
  } else if (f->kind == 'i') {
    unsigned shift = 64 - 8 * f->bytes;
    /* Sign-extend through the top bits: implementation-defined shifts of
     * negative values are avoided by the unsigned detour. */
    int64_t s = (int64_t)(v << shift) / ((int64_t)1 << shift);
    printf("%lld", (long long)s);
  } else if (f->bytes == 4) {
    uint32_t w = (uint32_t)v;
    float x;
    memcpy(&x, &w, sizeof x);
    printf("%.9g", (double)x);
  } else {
    double x;
    memcpy(&x, &v, sizeof x);
    printf("%.17g", x);
  }
}

/* The payload as the fields, repeated; a tail too short for a field is
 * shown in hex. In JSON, an array of numbers (non-finite ones as null). */
static void print_fields(const format *fmt, const unsigned char *p, size_t n, int json) {
  size_t at = 0;
  int first = 1;
  if (json) putchar('[');
  while (at < n) {
    for (size_t i = 0; i < fmt->n && at < n; i++) {
      const field *f = &fmt->f[i];
      if (!json && !first) putchar(' ');
      if (!json && f->count > 1) putchar('[');
      for (uint32_t k = 0; k < f->count && at < n; k++) {
        if (n - at < f->bytes) {
          if (!json) printf("%s+%zu bytes", k ? " " : "", n - at);
          at = n;
          break;
        }
        if (json && !first) putchar(',');
        if (!json && k) putchar(' ');
        first = 0;
        if (json && f->kind == 'f') {
          /* JSON has no NaN: null. */
          double x;
          if (f->bytes == 4) {
            uint32_t w = (uint32_t)load_le(p + at, 4);
            float y;
            memcpy(&y, &w, sizeof y);
            x = y;
          } else {
            uint64_t w = load_le(p + at, 8);
            memcpy(&x, &w, sizeof x);
          }
          if (x == x && x - x == 0)
            printf("%.17g", x);
          else
            fputs("null", stdout);
        } else {
          print_value(f, p + at);
        }
        at += f->bytes;
      }
      if (!json && f->count > 1) putchar(']');
    }
  }
  if (json) putchar(']');
}

static void print_hex(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
}

/* 16 bytes a line: offset, hex, printable ASCII. */
static void print_dump(const unsigned char *p, size_t n) {
  for (size_t line = 0; line < n; line += 16) {
    printf("  %08zx ", line);
    for (size_t i = line; i < line + 16; i++) {
      if (i < n)
        printf(" %02x", p[i]);
      else
        fputs("   ", stdout);
    }
    fputs("  |", stdout);
    for (size_t i = line; i < line + 16 && i < n; i++)
      putchar(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '.');
    puts("|");
  }
}

static void echo_sample(const cli_opts *o, const format *fmt, const shmbus_sample *s,
                        uint64_t lost) {
  const unsigned char *p = s->payload;
  if (o->json) {
    int f = 1;
    putchar('{');
    json_u64("publisher", s->publisher_id, &f);
    json_u64("sequence", s->sequence, &f);
    json_u64("timestamp_ns", s->timestamp_ns, &f);
    json_u64("bytes", s->bytes, &f);
    json_u64("lost", lost, &f);
    json_key("payload", &f);
    putchar('"');
    print_hex(p, s->bytes);
    putchar('"');
    if (fmt) {
      json_key("fields", &f);
      print_fields(fmt, p, s->bytes, 1);
    }
    puts("}");
    return;
  }
  printf("publisher %llu  sequence %llu  timestamp %llu ns  %zu bytes\n",
         (unsigned long long)s->publisher_id, (unsigned long long)s->sequence,
         (unsigned long long)s->timestamp_ns, s->bytes);
  if (fmt) {
    fputs("  ", stdout);
    print_fields(fmt, p, s->bytes, 0);
    putchar('\n');
  } else {
    print_dump(p, s->bytes);
  }
}

int cmd_echo(shmbus_node *node, const cli_opts *o) {
  format fmt;
  if (o->format && parse_format(o->format, &fmt)) return 2;
  shmbus_subscriber *sub;
  int r = open_subscriber(node, o, &sub);
  if (r || sub == NULL) return r;
  uint64_t deadline = cli_deadline(o->duration), lost_said = 0;
  for (uint64_t n = 0; o->count == 0 || n < o->count; n++) {
    shmbus_sample s;
    r = cli_take(sub, deadline, &s);
    if (r == SHMBUS_ERR_TIMEDOUT) break; /* --duration or a signal: done */
    if (r) {
      shmbus_subscriber_close(sub);
      return cli_fail("echo: take", r);
    }
    /* A peer can make the count go down: only a rise is news. */
    uint64_t lost = shmbus_subscriber_lost(sub);
    if (!o->json && lost > lost_said)
      printf("(%llu lost)\n", (unsigned long long)(lost - lost_said));
    if (lost > lost_said) lost_said = lost;
    echo_sample(o, o->format ? &fmt : NULL, &s, lost);
    shmbus_subscriber_release(sub, &s);
    if (cli_flush()) {
      r = 1; /* a closed pipe: stop */
      break;
    }
  }
  shmbus_subscriber_close(sub);
  return r == 1 ? 1 : 0;
}

/* ---- hz -------------------------------------------------------------------------- */

enum { HZ_WINDOW_DEFAULT = 10000, HZ_WINDOW_MAX = 10000000 };

/* The last `cap` samples' publish timestamps and sizes, as a ring. */
typedef struct hz_window {
  uint64_t *stamp, *bytes;
  uint64_t cap, n, next;
} hz_window;

typedef struct hz_report {
  uint64_t window;
  double rate_hz, mean_s, min_s, max_s, stddev_s, bytes_per_s;
} hz_report;

static int by_value(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Statistics of the window's intervals, in publish-time order (several
 * publishers interleave; each one's clock is the same monotonic clock).
 * 0, or -1 with fewer than 2 samples or a zero span. */
static int hz_compute(const hz_window *w, uint64_t *sorted, hz_report *out) {
  if (w->n < 2) return -1;
  memcpy(sorted, w->stamp, w->n * sizeof *sorted);
  qsort(sorted, w->n, sizeof *sorted, by_value);
  uint64_t span = sorted[w->n - 1] - sorted[0];
  if (span == 0) return -1;
  double k = (double)(w->n - 1), sum = 0, sq = 0, lo = 0, hi = 0;
  for (uint64_t i = 1; i < w->n; i++) {
    double d = (double)(sorted[i] - sorted[i - 1]) / 1e9;
    sum += d;
    sq += d * d;
    lo = i == 1 || d < lo ? d : lo;
    hi = i == 1 || d > hi ? d : hi;
  }
  uint64_t bytes = 0, oldest = w->n < w->cap ? 0 : w->next;
  /* The bytes that arrived after the window's first sample. */
  for (uint64_t i = 1; i < w->n; i++) bytes += w->bytes[(oldest + i) % w->cap];
  double mean = sum / k, var = sq / k - mean * mean;
  out->window = w->n;
  out->rate_hz = k * 1e9 / (double)span;
  out->mean_s = mean;
  out->min_s = lo;
  out->max_s = hi;
  out->stddev_s = var > 0 ? sqrt(var) : 0;
  out->bytes_per_s = (double)bytes * 1e9 / (double)span;
  return 0;
}

/* A report; h NULL: no sample arrived since the last one (in JSON the
 * figures are then null). 0, or 1 when stdout cannot be written. */
static int hz_print(const cli_opts *o, const hz_report *h, uint64_t total, uint64_t lost) {
  if (h == NULL) {
    if (o->json)
      printf("{\"rate_hz\":null,\"window\":0,\"samples\":%llu,\"lost\":%llu}\n",
             (unsigned long long)total, (unsigned long long)lost);
    else
      puts("no new samples");
    return cli_flush();
  }
  if (o->json) {
    int f = 1;
    putchar('{');
    json_double("rate_hz", h->rate_hz, &f);
    json_double("mean_interval_s", h->mean_s, &f);
    json_double("min_interval_s", h->min_s, &f);
    json_double("max_interval_s", h->max_s, &f);
    json_double("stddev_interval_s", h->stddev_s, &f);
    json_double("bytes_per_s", h->bytes_per_s, &f);
    json_u64("window", h->window, &f);
    json_u64("samples", total, &f);
    json_u64("lost", lost, &f);
    puts("}");
  } else {
    printf("average rate: %.3f Hz\n", h->rate_hz);
    printf("\tmin: %.6fs max: %.6fs std dev: %.6fs window: %llu\n", h->min_s, h->max_s, h->stddev_s,
           (unsigned long long)h->window);
    printf("\tbandwidth: %.1f B/s, %llu samples, %llu lost\n", h->bytes_per_s,
           (unsigned long long)total, (unsigned long long)lost);
  }
  return cli_flush();
}

int cmd_hz(shmbus_node *node, const cli_opts *o) {
  hz_window w = {NULL, NULL, o->window ? o->window : HZ_WINDOW_DEFAULT, 0, 0};
  if (w.cap < 2 || w.cap > HZ_WINDOW_MAX)
    return cli_failf("hz: --window must be 2 to %d samples", HZ_WINDOW_MAX) + 1;
  w.stamp = malloc(w.cap * sizeof *w.stamp);
  w.bytes = malloc(w.cap * sizeof *w.bytes);
  uint64_t *sorted = malloc(w.cap * sizeof *sorted);
  shmbus_subscriber *sub = NULL;
  int r = w.stamp && w.bytes && sorted ? open_subscriber(node, o, &sub)
                                       : cli_fail("hz", SHMBUS_ERR_NOMEM);
  uint64_t deadline = cli_deadline(o->duration), total = 0, reported = 0;
  uint64_t next_report = cli_now_ns() + 1000000000u;
  hz_report h;
  while (r == 0 && sub && (o->count == 0 || total < o->count)) {
    shmbus_sample s;
    uint64_t until = next_report < deadline ? next_report : deadline;
    int t = cli_take(sub, until, &s);
    if (t == 0) {
      w.stamp[w.next] = s.timestamp_ns;
      w.bytes[w.next] = s.bytes;
      w.next = (w.next + 1) % w.cap;
      if (w.n < w.cap) w.n++;
      total++;
      shmbus_subscriber_release(sub, &s);
    } else if (t != SHMBUS_ERR_TIMEDOUT) {
      r = cli_fail("hz: take", t);
      break;
    }
    if (cli_stop_requested() || cli_now_ns() >= deadline) break;
    if (cli_now_ns() >= next_report) {
      next_report = cli_now_ns() + 1000000000u;
      /* The window is not aged by time: a publisher that stopped would
       * keep its old rate. Only new samples make a report. */
      int fresh = total > reported && hz_compute(&w, sorted, &h) == 0;
      reported = total;
      r = hz_print(o, fresh ? &h : NULL, total, shmbus_subscriber_lost(sub));
    }
  }
  /* The last report covers the end (--count, --duration, a signal). */
  if (r == 0 && sub)
    r = hz_print(o, hz_compute(&w, sorted, &h) == 0 ? &h : NULL, total,
                 shmbus_subscriber_lost(sub));
  shmbus_subscriber_close(sub);
  free(w.stamp);
  free(w.bytes);
  free(sorted);
  return r;
}

/* ---- pub ------------------------------------------------------------------------------ */

/* The whole input, at most SHMBUS_MAX_PAYLOAD bytes: 0, or 1 after an error. */
static int read_input(const cli_opts *o, unsigned char **out, size_t *len) {
  FILE *f = o->input ? fopen(o->input, "rb") : stdin;
  const char *name = o->input ? o->input : "standard input";
  *out = NULL;
  *len = 0;
  if (f == NULL) return cli_failf("pub: cannot open %s", name);
  size_t cap = 0;
  int r = 0;
  for (;;) {
    if (*len > SHMBUS_MAX_PAYLOAD) {
      r = cli_failf("pub: %s: more than %u bytes (SHMBUS_MAX_PAYLOAD)", name,
                    (unsigned)SHMBUS_MAX_PAYLOAD);
      break;
    }
    if (*len == cap) {
      /* At most one byte more than a sample can hold: enough to refuse. */
      cap = cap ? cap * 2 : 4096;
      if (cap > (size_t)SHMBUS_MAX_PAYLOAD + 1) cap = (size_t)SHMBUS_MAX_PAYLOAD + 1;
      unsigned char *p = realloc(*out, cap + 1);
      if (p == NULL) {
        r = cli_fail("pub: reading the input", SHMBUS_ERR_NOMEM);
        break;
      }
      *out = p;
    }
    size_t got = fread(*out + *len, 1, cap - *len, f);
    *len += got;
    if (got == 0) {
      if (ferror(f)) r = cli_failf("pub: cannot read %s", name);
      break;
    }
  }
  if (r == 0 && *len == 0) r = cli_failf("pub: %s is empty: nothing to publish", name);
  if (f != stdin) fclose(f);
  if (r) {
    free(*out);
    *out = NULL;
  }
  return r;
}

/* Until `n` subscribers have mapped the publisher: 0, or 1 (timed out). */
static int wait_subscribers(shmbus_publisher *pub, const cli_opts *o) {
  uint64_t deadline = cli_deadline(o->timeout);
  int said = 0;
  for (;;) {
    int r = shmbus_publisher_update(pub);
    if (r >= 0 && (uint64_t)r >= o->subscribers) return 0;
    if (r < 0) return cli_fail("pub: looking for subscribers", r);
    if (cli_stop_requested() || cli_now_ns() >= deadline)
      return cli_failf("pub: %d of %llu subscribers after waiting", r,
                       (unsigned long long)o->subscribers);
    if (!said && !o->quiet)
      fprintf(stderr, "shmbus: waiting for %llu subscribers\n", (unsigned long long)o->subscribers);
    said = 1;
    cli_sleep_ns(10 * 1000 * 1000);
  }
}

static int open_publisher(shmbus_node *node, const cli_opts *o, size_t len,
                          shmbus_publisher **pub) {
  const char *service = o->args[0];
  shmbus_service_opts so;
  char type_name[SHMBUS_TYPE_NAME_MAX + 1];
  char what[SHMBUS_SERVICE_NAME_MAX + 32];
  snprintf(what, sizeof what, "publish to %s", service);
  int r = cli_service_opts(node, service, o, &so, type_name);
  if (r == SHMBUS_ERR_NOT_FOUND)
    return cli_failf("%s: no such service (give --type NAME:SIZE to create it)", what);
  if (r) return cli_fail(what, r);
  if (o->type && o->elements == 0) {
    /* As many elements as the input needs. */
    uint64_t need = (len + so.type.size - 1) / so.type.size;
    if (need > UINT32_MAX) return cli_fail(what, SHMBUS_ERR_TOO_LARGE);
    so.max_elements = (uint32_t)need;
  }
  if ((uint64_t)so.type.size * so.max_elements < len)
    return cli_failf("%s: %zu bytes do not fit its samples (%llu bytes)", what, len,
                     (unsigned long long)so.type.size * so.max_elements);
  r = shmbus_publisher_open(node, service, &so, pub);
  return r ? cli_fail(what, r) : 0;
}

/* A BLOCK publish waits for room in slices of this, so that a signal or
 * --timeout ends it. */
enum { BLOCK_SLICE_NS = 100 * 1000 * 1000 };

/* Publishes once: 0, TIMEDOUT (a signal came, or --timeout passed while a
 * full subscriber kept a BLOCK publish waiting), or a SHMBUS_ERR_ code. A
 * subscriber that died while a BLOCK publish waited for it is dropped by
 * the library, and nothing was sent: publish again to the others. */
static int publish_once(shmbus_publisher *pub, const cli_opts *o, const unsigned char *data,
                        size_t len) {
  uint64_t deadline = cli_deadline(o->timeout);
  for (;;) {
    int r = shmbus_publisher_send_copy(pub, data, len);
    if (r != SHMBUS_ERR_PEER_DEAD && r != SHMBUS_ERR_TIMEDOUT) return r;
    if (cli_stop_requested() || cli_now_ns() >= deadline) return SHMBUS_ERR_TIMEDOUT;
  }
}

int cmd_pub(shmbus_node *node, const cli_opts *o) {
  unsigned char *data;
  size_t len;
  if (read_input(o, &data, &len)) return 1;
  shmbus_publisher *pub = NULL;
  int r = open_publisher(node, o, len, &pub);
  if (r == 0) shmbus_publisher_set_block_timeout(pub, BLOCK_SLICE_NS);
  if (r == 0 && o->subscribers) r = wait_subscribers(pub, o);
  uint64_t count = o->count ? o->count : 1, sent = 0;
  /* Whole nanoseconds; a period past 2^62 ns (146 years) is "never". */
  double every = o->rate > 0 ? 1e9 / o->rate : 0;
  uint64_t period = every < 4.6e18 ? (uint64_t)every : UINT64_C(1) << 62, start = cli_now_ns();
  cli_progress progress;
  cli_progress_start(&progress, o);
  while (r == 0 && sent < count && !cli_stop_requested()) {
    if (period) {
      /* Absolute deadlines: a late publish does not delay the next ones. */
      uint64_t due = sent > (UINT64_MAX - start) / period ? UINT64_MAX : start + sent * period;
      uint64_t now = cli_now_ns();
      if (due > now) cli_sleep_ns(due - now);
      if (cli_stop_requested()) break;
    }
    int e = publish_once(pub, o, data, len);
    if (e == SHMBUS_ERR_TIMEDOUT && cli_stop_requested()) break; /* Ctrl-C: done */
    if (e) {
      r = cli_fail("pub", e);
      break;
    }
    sent++;
    cli_progress_show(&progress, "published %llu of %llu", (unsigned long long)sent,
                      (unsigned long long)count);
  }
  cli_progress_end(&progress);
  if (r == 0 && o->json) {
    int f = 1;
    putchar('{');
    json_string("service", o->args[0], &f);
    json_u64("publisher", shmbus_publisher_id(pub), &f);
    json_u64("published", sent, &f);
    json_u64("bytes", len, &f);
    puts("}");
  }
  shmbus_publisher_close(pub);
  free(data);
  return r;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shmbus record and replay: services into a recording and back again.
 * The file format is record_file.c's (docs/record-format.md); here are the
 * ports, the waiting, the pacing, progress and the summaries.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime(CLOCK_REALTIME), fileno */
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#include <windows.h>
#else
#include <unistd.h>
#endif

#include "cli.h"
#include "record_file.h"

enum {
  IO_BUFFER = 1 << 20, /* stdio buffer of the recording: few, large writes */
  BATCH = 256          /* samples taken from one subscriber before the next */
};

/* The recording's stdio buffer (one command runs per process). Static, as
 * standard input or output may use it until the process exits. */
static char io_buffer[IO_BUFFER];

/* Waits are sliced so that a signal or a redraw of the progress line is
 * never more than this far away. */
#define SLICE_NS UINT64_C(100000000)

/* ---- small things --------------------------------------------------------------- */

/* The wall clock, for the header only: sample times are shmbus_now_ns's. */
static uint64_t unix_now_ns(void) {
#ifdef _WIN32
  FILETIME ft;
  GetSystemTimeAsFileTime(&ft); /* 100 ns units since 1601 */
  uint64_t t = (uint64_t)ft.dwHighDateTime << 32 | ft.dwLowDateTime;
  const uint64_t epoch = UINT64_C(116444736000000000);
  return t < epoch ? 0 : (t - epoch) * 100;
#else
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts)) return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

/* Standard input or output carries a recording: no newline translation. */
static void set_binary(FILE *f) {
#ifdef _WIN32
  _setmode(_fileno(f), _O_BINARY);
#else
  (void)f;
#endif
}

static int stdout_is_terminal(void) {
#ifdef _WIN32
  return _isatty(_fileno(stdout));
#else
  return isatty(fileno(stdout));
#endif
}

/* The size of a regular file, for the progress line; 0 when unknown. */
static uint64_t file_size(FILE *f) {
#ifdef _WIN32
  struct _stati64 st;
  if (_fstati64(_fileno(f), &st) || !(st.st_mode & _S_IFREG)) return 0;
#else
  struct stat st;
  if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) return 0;
#endif
  return st.st_size > 0 ? (uint64_t)st.st_size : 0;
}

static const char *human_bytes(char out[32], uint64_t n) {
  static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = (double)n;
  size_t u = 0;
  while (v >= 1000 && u + 1 < sizeof units / sizeof units[0]) v /= 1000, u++;
  snprintf(out, 32, u ? "%.1f %s" : "%.0f %s", v, units[u]);
  return out;
}

static double seconds_of(uint64_t ns) { return (double)ns / 1e9; }

static void json_type(const char *type_name, uint32_t size, uint32_t align, int *first) {
  int f = 1;
  json_key("type", first);
  putchar('{');
  json_string("name", type_name, &f);
  json_u64("size", size, &f);
  json_u64("align", align, &f);
  putchar('}');
}

/* ---- record ----------------------------------------------------------------------- */

typedef struct recorder {
  const cli_opts *o;
  const char *path; /* as given: "-" is standard output */
  int created;      /* the file did not exist before this recording */
  FILE *f;
  rec_writer w;
  uint32_t n;
  rec_service *services;
  shmbus_subscriber **subs;
  shmbus_service_opts *opts; /* of each subscriber: the type found    */
  rec_counts *counts;
  shmbus_waitset *ws; /* NULL with one service, or where there are none */
  uint64_t samples, bytes, lost, start_ns, duration_ns;
  int err;             /* the SHMBUS_ERR_ code that ended the recording, or 0 */
  const char *stopped; /* why it ended: count, duration, signal, error */
} recorder;

/* --count counts the samples lost too, as the README's subscriber does:
 * a recording of a publisher of N samples ends after them even when some
 * were lost. `lost` is refreshed once per wait, not per sample. */
static int count_reached(const recorder *rc) {
  /* Without overflow: `lost` sums counts a peer can forge. */
  uint64_t count = rc->o->count;
  return count && (rc->lost >= count || rc->samples >= count - rc->lost);
}

static uint64_t lost_so_far(const recorder *rc) {
  uint64_t lost = 0;
  for (uint32_t i = 0; i < rc->n; i++) {
    uint64_t more = shmbus_subscriber_lost(rc->subs[i]);
    lost = more > UINT64_MAX - lost ? UINT64_MAX : lost + more; /* a peer's counts */
  }
  return lost;
}

static const char *output_name(const recorder *rc) {
  return strcmp(rc->path, "-") ? rc->path : "standard output";
}

/* Before any wait: that the output can be written, without truncating
 * what is there (a recording that never starts leaves an existing file
 * as it was, and removes only a file it created). */
static int probe_output(recorder *rc) {
  if (!strcmp(rc->path, "-")) return 0;
  FILE *f = fopen(rc->path, "rb");
  rc->created = f == NULL;
  if (f) fclose(f);
  f = fopen(rc->path, "ab"); /* creates, never truncates */
  if (f == NULL) return cli_failf("record: cannot write %s: %s", rc->path, strerror(errno));
  fclose(f);
  return 0;
}

/* Once every service is subscribed: the recording starts. */
static int open_output(recorder *rc) {
  if (!strcmp(rc->path, "-")) {
    rc->f = stdout;
    set_binary(stdout);
  } else {
    rc->f = fopen(rc->path, "wb");
    if (rc->f == NULL) return cli_failf("record: cannot write %s: %s", rc->path, strerror(errno));
  }
  setvbuf(rc->f, io_buffer, _IOFBF, IO_BUFFER);
  rec_writer_init(&rc->w, rc->f);
  return 0;
}

/* Waits for service i to exist and keeps its type. */
static int find_service(shmbus_node *node, recorder *rc, uint32_t i) {
  const char *name = rc->o->args[i];
  rec_service *s = &rc->services[i];
  int r = cli_service_opts_wait(node, name, rc->o, &rc->opts[i], s->type_name);
  if (r == SHMBUS_ERR_TIMEDOUT && cli_stop_requested())
    return cli_failf("record: interrupted while waiting for %s", name);
  if (r) {
    char what[SHMBUS_SERVICE_NAME_MAX + 16];
    snprintf(what, sizeof what, "record: %s", name);
    return cli_fail(what, r);
  }
  rc->opts[i].type.name = s->type_name;
  return 0;
}

/* Subscribes to service i, and keeps its limits: read after the open,
 * while the subscriber holds the service. (No spin before sleeping: on a
 * busy machine a spinning recorder lost more samples than a sleeping one.) */
static int subscribe(shmbus_node *node, recorder *rc, uint32_t i) {
  rec_service *s = &rc->services[i];
  const char *name = rc->o->args[i];
  shmbus_service_info info;
  int r = shmbus_subscriber_open(node, name, &rc->opts[i], &rc->subs[i]);
  if (r == 0) r = shmbus_service_describe(node, name, &info, NULL, 0, NULL, NULL, 0, NULL);
  if (r) {
    char what[SHMBUS_SERVICE_NAME_MAX + 16];
    snprintf(what, sizeof what, "record: %s", name);
    return cli_fail(what, r);
  }
  snprintf(s->name, sizeof s->name, "%s", name);
  snprintf(s->type_name, sizeof s->type_name, "%s", info.type_name);
  s->type_size = info.type_size;
  s->type_align = info.type_align;
  s->max_elements = info.max_elements;
  s->max_publishers = info.max_publishers;
  s->max_subscribers = info.max_subscribers;
  s->queue_depth = info.queue_depth;
  s->history = info.history;
  s->max_loans = info.max_loans;
  s->max_held = info.max_held;
  s->overflow = info.overflow;
  return 0;
}

/* One wait set for several subscribers; without wait sets (POSIX but not
 * Linux) record polls them instead. */
static int open_waitset(shmbus_node *node, recorder *rc) {
  if (rc->n < 2) return 0;
  int r = shmbus_waitset_open(node, &rc->ws);
  if (r == SHMBUS_ERR_UNSUPPORTED) return 0;
  for (uint32_t i = 0; r == 0 && i < rc->n; i++)
    r = shmbus_waitset_attach(rc->ws, rc->subs[i], (void *)(uintptr_t)i);
  return r ? cli_fail("record: wait set", r) : 0;
}

static int record_failed(recorder *rc, int err) {
  rc->err = err;
  rc->stopped = "error";
  return 1;
}

/* Writes a taken sample, reading it in place, and releases it: 0, or 1
 * when the recording must end (reported). */
static int record_sample(recorder *rc, uint32_t i, const shmbus_sample *s) {
  rec_sample rs = {i,           (uint32_t)s->bytes, s->publisher_id,
                   s->sequence, s->timestamp_ns,    s->payload};
  int written = rec_write_sample(&rc->w, &rs);
  /* CORRUPT here: a peer truncated the publisher's segment while we read
   * it; what is written may be zeros, so the recording ends with it. */
  int r = shmbus_subscriber_release(rc->subs[i], s);
  if (written) return record_failed(rc, SHMBUS_ERR_IO); /* said at the end */
  if (r) {
    cli_failf("record: %s: the last sample may be damaged: %s (%s)", rc->services[i].name,
              shmbus_strerror(r), shmbus_err_name(r));
    return record_failed(rc, r);
  }
  rc->samples++;
  rc->bytes += s->bytes;
  rc->counts[i].samples++;
  rc->counts[i].bytes += s->bytes;
  return 0;
}

static int take_failed(recorder *rc, uint32_t i, int r) {
  cli_failf("record: %s: %s (%s)", rc->services[i].name, shmbus_strerror(r), shmbus_err_name(r));
  return record_failed(rc, r);
}

/* Takes what subscriber i has queued, up to BATCH samples (so that one
 * busy service cannot starve the others) and the --count: the number
 * taken, or -1 when the recording must end. */
static int drain(recorder *rc, uint32_t i) {
  int taken = 0;
  while (taken < BATCH && !count_reached(rc)) {
    shmbus_sample s;
    int r = shmbus_subscriber_take(rc->subs[i], &s);
    if (r == SHMBUS_ERR_EMPTY) break;
    if (r) return -take_failed(rc, i, r);
    if (record_sample(rc, i, &s)) return -1;
    taken++;
  }
  return taken;
}

/* One service: cli_take sleeps on the subscriber until `until`. */
static int wait_one(recorder *rc, uint64_t until) {
  shmbus_sample s;
  int r = cli_take(rc->subs[0], until, &s);
  if (r == SHMBUS_ERR_TIMEDOUT) return 0;
  if (r) return take_failed(rc, 0, r);
  if (record_sample(rc, 0, &s)) return 1;
  return drain(rc, 0) < 0;
}

static int wait_set(recorder *rc, uint64_t until) {
  shmbus_wait_event ev[32];
  uint64_t now = cli_now_ns();
  int n = shmbus_waitset_wait(rc->ws, until > now ? (int64_t)(until - now) : 0, ev, 32);
  if (n == SHMBUS_ERR_TIMEDOUT) return 0;
  if (n < 0) {
    cli_fail("record: wait set", n);
    return record_failed(rc, n);
  }
  /* NO_PUBLISHER events need nothing: the subscriber waits for the next. */
  for (int k = 0; k < n && !count_reached(rc); k++)
    if (ev[k].what == SHMBUS_WAIT_DATA && drain(rc, (uint32_t)(uintptr_t)ev[k].user) < 0) return 1;
  return 0;
}

/* Without a wait set: every subscriber in turn, a short nap when all are
 * empty. */
static int wait_poll(recorder *rc, uint64_t until) {
  int any = 0;
  for (uint32_t i = 0; i < rc->n && !count_reached(rc); i++) {
    int t = drain(rc, i);
    if (t < 0) return 1;
    any |= t > 0;
  }
  uint64_t now = cli_now_ns();
  if (!any && now < until) cli_sleep_ns(until - now < 1000000u ? until - now : 1000000u);
  return 0;
}

static void record_progress(const recorder *rc, cli_progress *p) {
  char b[32];
  if (p->on)
    cli_progress_show(p, "recording: %llu samples, %s, %llu lost", (unsigned long long)rc->samples,
                      human_bytes(b, rc->bytes), (unsigned long long)rc->lost);
}

/* Out to the file at most a second after it was taken: what a crash or a
 * kill -9 loses is bounded (the file stays a valid prefix either way). */
static void flush_now_and_then(recorder *rc, uint64_t *next_ns, uint64_t *flushed) {
  uint64_t now = cli_now_ns();
  if (now < *next_ns || rc->w.offset == *flushed) return;
  *next_ns = now + 1000000000u;
  *flushed = rc->w.offset;
  if (fflush(rc->f) && !rc->w.failed) rc->w.failed = errno ? errno : EIO;
}

static void record_loop(recorder *rc) {
  uint64_t end = cli_deadline(rc->o->duration);
  uint64_t next_flush = 0, flushed = 0;
  cli_progress p;
  cli_progress_start(&p, rc->o);
  for (;;) {
    rc->lost = lost_so_far(rc);
    flush_now_and_then(rc, &next_flush, &flushed);
    if (rc->w.failed) {
      record_failed(rc, SHMBUS_ERR_IO); /* said at the end */
      break;
    }
    if (count_reached(rc)) {
      rc->stopped = "count";
      break;
    }
    if (cli_stop_requested()) {
      rc->stopped = "signal";
      break;
    }
    uint64_t now = cli_now_ns();
    if (now >= end) {
      rc->stopped = "duration";
      break;
    }
    uint64_t until = end - now < SLICE_NS ? end : now + SLICE_NS;
    int failed = rc->n == 1 ? wait_one(rc, until)
                 : rc->ws   ? wait_set(rc, until)
                            : wait_poll(rc, until);
    if (failed) break;
    record_progress(rc, &p);
  }
  cli_progress_end(&p);
}

/* The footer, then everything out and closed: 0, or 1 (reported). */
static int finish_file(recorder *rc) {
  for (uint32_t i = 0; i < rc->n; i++) rc->counts[i].lost = shmbus_subscriber_lost(rc->subs[i]);
  rec_write_footer(&rc->w, rc->duration_ns, rc->counts, rc->n);
  errno = 0;
  int bad = fflush(rc->f) != 0 || ferror(rc->f);
  int why = rc->w.failed ? rc->w.failed : errno ? errno : EIO;
  if (rc->f != stdout && fclose(rc->f) != 0 && !bad) bad = 1, why = errno ? errno : EIO;
  rc->f = NULL;
  if (!bad && !rc->w.failed) return 0;
  rc->err = SHMBUS_ERR_IO;
  rc->stopped = "error";
  return cli_failf("record: cannot write %s: %s", output_name(rc), strerror(why));
}

static void record_summary(const recorder *rc) {
  uint64_t lost = 0;
  for (uint32_t i = 0; i < rc->n; i++) lost += rc->counts[i].lost;
  if (rc->o->json) {
    int first = 1;
    putchar('{');
    json_string("file", rc->path, &first);
    json_u64("samples", rc->samples, &first);
    json_u64("bytes", rc->bytes, &first);
    json_u64("file_bytes", rc->w.offset, &first);
    json_u64("lost", lost, &first);
    json_double("duration_s", seconds_of(rc->duration_ns), &first);
    json_string("stopped", rc->stopped, &first);
    json_key("services", &first);
    putchar('[');
    for (uint32_t i = 0; i < rc->n; i++) {
      const rec_service *s = &rc->services[i];
      int f = 1;
      fputs(i ? ",{" : "{", stdout);
      json_string("name", s->name, &f);
      json_type(s->type_name, s->type_size, s->type_align, &f);
      json_u64("max_elements", s->max_elements, &f);
      json_u64("samples", rc->counts[i].samples, &f);
      json_u64("bytes", rc->counts[i].bytes, &f);
      json_u64("lost", rc->counts[i].lost, &f);
      putchar('}');
    }
    putchar(']');
    json_error(rc->err, &first);
    puts("}");
    fflush(stdout);
    return;
  }
  if (rc->o->quiet) return;
  char b[32];
  fprintf(stderr,
          "shmbus: record: %llu samples (%s) of %u service%s into %s in %.2f s, %llu lost\n",
          (unsigned long long)rc->samples, human_bytes(b, rc->bytes), (unsigned)rc->n,
          rc->n == 1 ? "" : "s", output_name(rc), seconds_of(rc->duration_ns),
          (unsigned long long)lost);
  for (uint32_t i = 0; rc->n > 1 && i < rc->n; i++)
    fprintf(stderr, "  %s: %llu samples (%s), %llu lost\n", rc->services[i].name,
            (unsigned long long)rc->counts[i].samples, human_bytes(b, rc->counts[i].bytes),
            (unsigned long long)rc->counts[i].lost);
}

static void recorder_free(recorder *rc) {
  shmbus_waitset_close(rc->ws); /* before the subscribers it holds */
  for (uint32_t i = 0; rc->subs && i < rc->n; i++) shmbus_subscriber_close(rc->subs[i]);
  if (rc->f && rc->f != stdout) fclose(rc->f);
  if (rc->f == stdout) fflush(stdout);
  free(rc->subs);
  free(rc->services);
  free(rc->counts);
  free(rc->opts);
}

/* Usage errors record can only see in its services and options. */
static int record_usage(const cli_opts *o) {
  if (!strcmp(o->output, "-") && stdout_is_terminal())
    return cli_usage_error(NULL, "record: -o -: standard output is a terminal");
  if (o->json && !strcmp(o->output, "-"))
    return cli_usage_error(NULL, "record: --json and -o - would both write to standard output");
  if (o->nargs > REC_MAX_SERVICES)
    return cli_usage_error(NULL, "record: at most %d services", REC_MAX_SERVICES);
  for (size_t i = 0; i < o->nargs; i++)
    for (size_t j = 0; j < i; j++)
      if (!strcmp(o->args[i], o->args[j]))
        return cli_usage_error(NULL, "record: service %s given twice", o->args[i]);
  return 0;
}

int cmd_record(shmbus_node *node, const cli_opts *o) {
  int r = record_usage(o);
  if (r) return r;
  recorder rc;
  memset(&rc, 0, sizeof rc);
  rc.o = o;
  rc.path = o->output;
  rc.n = (uint32_t)o->nargs;
  rc.subs = calloc(rc.n, sizeof *rc.subs);
  rc.services = calloc(rc.n, sizeof *rc.services);
  rc.counts = calloc(rc.n, sizeof *rc.counts);
  rc.opts = calloc(rc.n, sizeof *rc.opts);
  if (!rc.subs || !rc.services || !rc.counts || !rc.opts) {
    recorder_free(&rc);
    return cli_fail("record", SHMBUS_ERR_NOMEM);
  }
  /* The file first: a path that cannot be written fails before any wait. */
  r = probe_output(&rc);
  /* Every service found before any is subscribed: a publisher that waits
   * for its subscriber starts only when all of them are taken from. */
  for (uint32_t i = 0; r == 0 && i < rc.n; i++) r = find_service(node, &rc, i);
  /* The start is before the first subscriber: every sample it gets is
   * published after it, but for a service's history. */
  rc.start_ns = cli_now_ns();
  for (uint32_t i = 0; r == 0 && i < rc.n; i++) r = subscribe(node, &rc, i);
  if (r == 0) r = open_waitset(node, &rc);
  if (r == 0) r = open_output(&rc);
  if (r) {
    /* Nothing was recorded: no file of ours is left behind, and one that
     * was there is as it was. */
    if (rc.f && rc.f != stdout) fclose(rc.f);
    rc.f = NULL;
    if (rc.created && strcmp(rc.path, "-")) remove(rc.path);
    recorder_free(&rc);
    return r;
  }
  rec_write_header(&rc.w, unix_now_ns(), rc.start_ns, rc.services, rc.n);
  rc.stopped = "error";
  if (!rc.w.failed) record_loop(&rc);
  rc.duration_ns = cli_now_ns() - rc.start_ns;
  /* The file is finished however the recording ended. */
  int failed = rc.err != 0;
  failed |= finish_file(&rc);
  record_summary(&rc);
  recorder_free(&rc);
  return failed ? 1 : 0;
}

/* ---- replay ------------------------------------------------------------------------ */

enum { REPLAY_STOPPED = 1 }; /* publish ended by a signal: not an error */

typedef struct replayer {
  const cli_opts *o;
  const char *path; /* as given: "-" is standard input */
  FILE *f;
  rec_reader rd;
  shmbus_publisher **pubs;
  int *own_limits; /* the service existed with other limits: opened with its own */
  rec_counts *counts;
  uint64_t samples, bytes, start_ns, duration_ns, size;
  int read_status;     /* the reader's last result: REC_END, or an error */
  int err;             /* the SHMBUS_ERR_ code that ended the replay, or 0 */
  const char *stopped; /* why it ended: end, count, signal, error */
} replayer;

static const char *file_name(const replayer *rp) {
  return strcmp(rp->path, "-") ? rp->path : "standard input";
}

/* The reader's error, one line: the file, the offset, what is wrong. */
static int file_error(const replayer *rp) {
  return cli_failf("replay: %s: %s", file_name(rp), rp->rd.error);
}

static int open_input(replayer *rp) {
  if (!strcmp(rp->path, "-")) {
    rp->f = stdin;
    set_binary(stdin);
  } else {
    rp->f = fopen(rp->path, "rb");
    if (rp->f == NULL) return cli_failf("replay: cannot read %s: %s", rp->path, strerror(errno));
  }
  setvbuf(rp->f, io_buffer, _IOFBF, IO_BUFFER);
  rp->size = file_size(rp->f);
  return 0;
}

/* Whether the service has the recorded limits (a 0 in the file is the
 * default, which is not known here: any; but history 0 is none). */
static int same_limits(const rec_service *s, const shmbus_service_info *info) {
  const uint32_t want[] = {s->max_elements, s->max_publishers, s->max_subscribers, s->queue_depth,
                           s->max_loans,    s->max_held,       s->overflow};
  const uint32_t have[] = {info->max_elements, info->max_publishers, info->max_subscribers,
                           info->queue_depth,  info->max_loans,      info->max_held,
                           info->overflow};
  for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
    if (want[k] != 0 && want[k] != have[k]) return 0;
  return s->history == info->history;
}

/* A publisher on recorded service i: with the recorded type and limits,
 * which creates the service where it is missing; where it exists with
 * other limits, with its own (0: "whatever it has"). The type must match
 * in either case. */
static int open_publisher(shmbus_node *node, replayer *rp, uint32_t i) {
  const rec_service *s = &rp->rd.services[i];
  shmbus_service_opts so = SHMBUS_SERVICE_OPTS_INIT;
  so.type.name = s->type_name;
  so.type.size = s->type_size;
  so.type.align = s->type_align;
  so.max_elements = s->max_elements;
  so.max_publishers = s->max_publishers;
  so.max_subscribers = s->max_subscribers;
  so.queue_depth = s->queue_depth;
  so.history = s->history;
  so.max_loans = s->max_loans;
  so.max_held = s->max_held;
  so.overflow = (int)s->overflow;
  int r = shmbus_publisher_open(node, s->name, &so, &rp->pubs[i]);
  if (r == SHMBUS_ERR_INCOMPATIBLE) {
    shmbus_service_opts any = SHMBUS_SERVICE_OPTS_INIT;
    any.type = so.type;
    r = shmbus_publisher_open(node, s->name, &any, &rp->pubs[i]);
  }
  if (r) {
    char what[SHMBUS_SERVICE_NAME_MAX + 16];
    snprintf(what, sizeof what, "replay: %s", s->name);
    return cli_fail(what, r);
  }
  /* An open also accepts limits below the service's: whether the service
   * is as recorded is only known by looking. */
  shmbus_service_info info;
  if (shmbus_service_describe(node, s->name, &info, NULL, 0, NULL, NULL, 0, NULL) == 0 &&
      !same_limits(s, &info)) {
    rp->own_limits[i] = 1;
    if (!rp->o->quiet)
      fprintf(stderr, "shmbus: replay: %s exists with other limits than recorded: using its own\n",
              s->name);
  }
  /* A BLOCK service's publish waits in slices, to see signals (publish). */
  shmbus_publisher_set_block_timeout(rp->pubs[i], (int64_t)SLICE_NS);
  return 0;
}

/* --wait-subscribers N: until every service has N, or --timeout. */
static int wait_subscribers(replayer *rp) {
  uint64_t deadline = cli_deadline(rp->o->timeout);
  for (uint32_t i = 0; rp->o->subscribers && i < rp->rd.nservices; i++) {
    const char *name = rp->rd.services[i].name;
    int said = 0;
    for (;;) {
      int r = shmbus_publisher_update(rp->pubs[i]);
      if (r < 0)
        return cli_failf("replay: %s: %s (%s)", name, shmbus_strerror(r), shmbus_err_name(r));
      if ((uint64_t)r >= rp->o->subscribers) break;
      if (cli_stop_requested())
        return cli_failf("replay: interrupted while waiting for subscribers of %s", name);
      if (cli_now_ns() >= deadline)
        return cli_failf("replay: %s: %d of %llu subscribers after %g s", name, r,
                         (unsigned long long)rp->o->subscribers, rp->o->timeout);
      if (!said && !rp->o->quiet)
        fprintf(stderr, "shmbus: replay: waiting for %llu subscriber%s of %s\n",
                (unsigned long long)rp->o->subscribers, rp->o->subscribers == 1 ? "" : "s", name);
      said = 1;
      cli_sleep_ns(1000000);
    }
  }
  return 0;
}

static void replay_progress(const replayer *rp, cli_progress *p) {
  char b[32], at[32], size[32];
  if (!p->on) return;
  if (rp->size)
    cli_progress_show(p, "replaying: %llu samples, %s, %s of %s read (%.0f%%)",
                      (unsigned long long)rp->samples, human_bytes(b, rp->bytes),
                      human_bytes(at, rp->rd.offset), human_bytes(size, rp->size),
                      100.0 * (double)rp->rd.offset / (double)rp->size);
  else
    cli_progress_show(p, "replaying: %llu samples, %s", (unsigned long long)rp->samples,
                      human_bytes(b, rp->bytes));
}

/* Sleeps until `due` (cli_now_ns time) in slices: 0, or 1 on a signal. */
static int pace(const replayer *rp, uint64_t due, cli_progress *p) {
  for (;;) {
    if (cli_stop_requested()) return 1;
    uint64_t now = cli_now_ns();
    if (now >= due) return 0;
    cli_sleep_ns(due - now < SLICE_NS ? due - now : SLICE_NS);
    replay_progress(rp, p);
  }
}

/* When sample i (timestamp ts, the first one's first_ts) is due: at
 * --rate, or at its recorded distance from the first, both measured from
 * the start (absolute deadlines: a late sample does not delay the rest).
 * A timestamp before the first one's is due at once. */
static uint64_t due_time(const replayer *rp, uint64_t i, uint64_t ts, uint64_t first_ts) {
  uint64_t offset;
  if (rp->o->rate > 0) {
    double d = (double)i * 1e9 / rp->o->rate;
    offset = d < 1.8e19 ? (uint64_t)d : UINT64_MAX;
  } else {
    offset = ts > first_ts ? ts - first_ts : 0;
  }
  return offset > UINT64_MAX - rp->start_ns ? UINT64_MAX : rp->start_ns + offset;
}

/* Loans, copies and publishes one sample: 0, REPLAY_STOPPED, or a
 * SHMBUS_ERR_ code. A BLOCK service's publish that found a subscriber full
 * (TIMEDOUT after a slice) or one that died (PEER_DEAD) sent nothing and
 * left the loan ours: it is tried again, until a signal or --timeout. */
static int publish(replayer *rp, const rec_sample *s) {
  shmbus_publisher *pub = rp->pubs[s->service];
  uint32_t size = rp->rd.services[s->service].type_size;
  size_t elements = s->bytes ? (s->bytes + (size_t)size - 1) / size : 1;
  void *payload;
  int r = shmbus_publisher_loan(pub, elements, &payload);
  if (r) return r;
  memcpy(payload, s->payload, s->bytes);
  uint64_t give_up = 0; /* set at the first wait */
  for (;;) {
    r = shmbus_publisher_publish_bytes(pub, payload, s->bytes);
    if (r == 0) return 0;
    if (r != SHMBUS_ERR_TIMEDOUT && r != SHMBUS_ERR_PEER_DEAD) break;
    if (cli_stop_requested()) {
      r = REPLAY_STOPPED;
      break;
    }
    if (r == SHMBUS_ERR_TIMEDOUT) {
      if (give_up == 0) give_up = cli_deadline(rp->o->timeout);
      if (cli_now_ns() >= give_up) break;
    }
  }
  shmbus_publisher_discard(pub, payload);
  return r;
}

static int publish_failed(replayer *rp, const rec_sample *s, int r) {
  char what[SHMBUS_SERVICE_NAME_MAX + 64];
  snprintf(what, sizeof what, "replay: %s: sample %llu", rp->rd.services[s->service].name,
           (unsigned long long)rp->samples);
  cli_failf("%s: %s (%s)", what, shmbus_strerror(r), shmbus_err_name(r));
  rp->err = r;
  rp->stopped = "error";
  return 1;
}

static void replay_loop(replayer *rp) {
  cli_progress p;
  cli_progress_start(&p, rp->o);
  uint64_t first_ts = 0;
  rp->start_ns = cli_now_ns();
  rp->stopped = "end";
  for (;;) {
    if (rp->o->count && rp->samples >= rp->o->count) {
      rp->stopped = "count";
      break;
    }
    rec_sample s;
    rp->read_status = rec_reader_next(&rp->rd, &s);
    if (rp->read_status != REC_SAMPLE) {
      if (rp->read_status != REC_END) rp->stopped = "error";
      break;
    }
    if (rp->samples == 0) first_ts = s.timestamp_ns;
    int r = pace(rp, due_time(rp, rp->samples, s.timestamp_ns, first_ts), &p);
    if (r == 0) r = publish(rp, &s);
    if (r == REPLAY_STOPPED) {
      rp->stopped = "signal";
      break;
    }
    if (r) {
      publish_failed(rp, &s, r);
      break;
    }
    rp->samples++;
    rp->bytes += s.bytes;
    rp->counts[s.service].samples++;
    rp->counts[s.service].bytes += s.bytes;
    replay_progress(rp, &p);
  }
  rp->duration_ns = cli_now_ns() - rp->start_ns;
  cli_progress_end(&p);
}

/* The reader's status as a JSON error name. */
static const char *file_error_name(int status) {
  switch (status) {
  case REC_TRUNCATED: return "FILE_TRUNCATED";
  case REC_CORRUPT: return "FILE_CORRUPT";
  case REC_IO: return "FILE_IO";
  case REC_NOMEM: return "NOMEM";
  default: return NULL;
  }
}

static void replay_summary(const replayer *rp) {
  const char *file_err = file_error_name(rp->read_status);
  if (rp->o->json) {
    int first = 1;
    putchar('{');
    json_string("file", rp->path, &first);
    json_u64("samples", rp->samples, &first);
    json_u64("bytes", rp->bytes, &first);
    json_double("duration_s", seconds_of(rp->duration_ns), &first);
    json_string("stopped", rp->stopped, &first);
    json_bool("footer", rp->rd.has_footer, &first);
    json_bool("truncated", rp->read_status == REC_TRUNCATED, &first);
    json_key("services", &first);
    putchar('[');
    for (uint32_t i = 0; i < rp->rd.nservices; i++) {
      const rec_service *s = &rp->rd.services[i];
      int f = 1;
      fputs(i ? ",{" : "{", stdout);
      json_string("name", s->name, &f);
      json_type(s->type_name, s->type_size, s->type_align, &f);
      json_u64("max_elements", s->max_elements, &f);
      json_string("limits", rp->own_limits[i] ? "service" : "recorded", &f);
      json_u64("samples", rp->counts[i].samples, &f);
      json_u64("bytes", rp->counts[i].bytes, &f);
      putchar('}');
    }
    putchar(']');
    if (file_err) {
      json_string("error", file_err, &first);
      json_string("error_message", rp->rd.error, &first);
    } else {
      json_error(rp->err, &first);
    }
    puts("}");
    fflush(stdout);
    return;
  }
  if (rp->o->quiet) return;
  char b[32];
  fprintf(stderr, "shmbus: replay: %llu samples (%s) on %u service%s from %s in %.2f s\n",
          (unsigned long long)rp->samples, human_bytes(b, rp->bytes), (unsigned)rp->rd.nservices,
          rp->rd.nservices == 1 ? "" : "s", file_name(rp), seconds_of(rp->duration_ns));
}

static void replayer_free(replayer *rp) {
  for (uint32_t i = 0; rp->pubs && i < rp->rd.nservices; i++) shmbus_publisher_close(rp->pubs[i]);
  rec_reader_close(&rp->rd);
  if (rp->f && rp->f != stdin) fclose(rp->f);
  free(rp->pubs);
  free(rp->own_limits);
  free(rp->counts);
}

int cmd_replay(shmbus_node *node, const cli_opts *o) {
  replayer rp;
  memset(&rp, 0, sizeof rp);
  rp.o = o;
  rp.path = o->args[0];
  int r = open_input(&rp);
  if (r) return r;
  if (rec_reader_open(&rp.rd, rp.f)) {
    r = file_error(&rp);
    replayer_free(&rp);
    return r;
  }
  rp.pubs = calloc(rp.rd.nservices, sizeof *rp.pubs);
  rp.own_limits = calloc(rp.rd.nservices, sizeof *rp.own_limits);
  rp.counts = calloc(rp.rd.nservices, sizeof *rp.counts);
  if (!rp.pubs || !rp.own_limits || !rp.counts) r = cli_fail("replay", SHMBUS_ERR_NOMEM);
  for (uint32_t i = 0; r == 0 && i < rp.rd.nservices; i++) r = open_publisher(node, &rp, i);
  if (r == 0) r = wait_subscribers(&rp);
  if (r) {
    replayer_free(&rp);
    return r;
  }
  replay_loop(&rp);
  /* The summary, then (last, so that it is the line one sees) what was
   * wrong with the file: the samples before it were replayed. */
  replay_summary(&rp);
  int failed = rp.err != 0;
  if (rp.read_status < 0) failed = file_error(&rp);
  replayer_free(&rp);
  return failed ? 1 : 0;
}

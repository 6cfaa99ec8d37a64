/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_record_file: the reader of `shmbus record` files (tools/record_file.c,
 * docs/record-format.md) on any bytes. The input is the file. The reader
 * must never read outside its buffers, allocate more than the input holds
 * (its payload buffer stays within twice the input), loop without bound, or
 * return anything but the documented results; a sample it returns lies
 * within its service's limits. Then a round trip: what was read, written
 * again by the writer (the footer too, when there was one), must read back
 * the same, cleanly; a valid file without extensions (40-byte header, no
 * flags) must come back byte for byte.
 *
 * No shared memory and no library calls: only the format code, so there is
 * nothing to wrap and nothing left in /dev/shm. SHMBUS_FUZZ_WRITE_SEEDS=DIR
 * writes the seed inputs; SHMBUS_FUZZ_STATS=1 prints the results by kind at
 * exit.
 */
#define _POSIX_C_SOURCE 200809L /* fmemopen, open_memstream */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record_file.h"

#define CHECK(cond)                                                                       \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      fprintf(stderr, "fuzz_record_file: check failed: %s (line %d)\n", #cond, __LINE__); \
      abort();                                                                            \
    }                                                                                     \
  } while (0)

/* ---- results by kind (SHMBUS_FUZZ_STATS) ------------------------------------ */

enum { RES_OK, RES_CORRUPT, RES_TRUNCATED, RES_IO, RES_NOMEM, RES_N };
static const char *const res_names[RES_N] = {"ok", "CORRUPT", "TRUNCATED", "IO", "NOMEM"};
static unsigned long long stats_open[RES_N], stats_end[RES_N], stats_samples, stats_footers;

static int res_index(int r) {
  switch (r) {
  case REC_END: return RES_OK; /* also rec_reader_open's 0 */
  case REC_CORRUPT: return RES_CORRUPT;
  case REC_TRUNCATED: return RES_TRUNCATED;
  case REC_IO: return RES_IO;
  case REC_NOMEM: return RES_NOMEM;
  default: CHECK(!"an undocumented result"); return RES_IO;
  }
}

static void print_stats(void) {
  fprintf(stderr, "==shmbus-fuzz== results by operation\n");
  const unsigned long long *rows[2] = {stats_open, stats_end};
  const char *names[2] = {"open", "end"};
  for (int k = 0; k < 2; k++) {
    fprintf(stderr, "  %-6s", names[k]);
    for (int i = 0; i < RES_N; i++) fprintf(stderr, " %s %llu", res_names[i], rows[k][i]);
    fputc('\n', stderr);
  }
  fprintf(stderr, "  samples %llu, footers %llu\n", stats_samples, stats_footers);
}

/* ---- checks ---------------------------------------------------------------------- */

static void check_name(const char *s, size_t max) {
  size_t n = strlen(s);
  CHECK(n >= 1 && n <= max);
  for (size_t i = 0; i < n; i++) CHECK(s[i] >= 0x21 && s[i] <= 0x7e);
}

static void check_services(const rec_reader *r) {
  CHECK(r->nservices >= 1 && r->nservices <= REC_MAX_SERVICES);
  for (uint32_t i = 0; i < r->nservices; i++) {
    const rec_service *s = &r->services[i];
    check_name(s->name, SHMBUS_SERVICE_NAME_MAX);
    check_name(s->type_name, SHMBUS_TYPE_NAME_MAX);
    CHECK(s->type_size >= 1 && s->max_elements >= 1);
    CHECK(s->type_align >= 1 && s->type_align <= 4096 && !(s->type_align & (s->type_align - 1)));
    CHECK(rec_service_max_payload(s) <= SHMBUS_MAX_PAYLOAD);
    CHECK(s->max_publishers <= SHMBUS_MAX_PORTS && s->max_subscribers <= SHMBUS_MAX_PORTS);
    CHECK(s->queue_depth <= SHMBUS_MAX_QUEUE_DEPTH && s->history <= SHMBUS_MAX_HISTORY);
    CHECK(s->max_loans <= SHMBUS_MAX_LOANS && s->max_held <= SHMBUS_MAX_HELD);
    CHECK(s->overflow <= SHMBUS_OVERFLOW_BLOCK);
  }
}

static void check_error(const rec_reader *r, int res) {
  CHECK(r->status == res);
  CHECK(!strncmp(r->error, "offset ", 7));
  CHECK(memchr(r->error, '\0', sizeof r->error) != NULL);
}

/* ---- one input ------------------------------------------------------------------- */

/* Reads a whole file from memory: the result of the last call, and the
 * writer `w` (if not NULL) gets what was read, written again. */
static int read_all(const uint8_t *data, size_t size, rec_writer *w, rec_reader *r) {
  FILE *f = fmemopen((void *)data, size, "rb");
  CHECK(f != NULL);
  int res = rec_reader_open(r, f);
  CHECK(res <= 0);
  if (w) stats_open[res_index(res)]++;
  if (res < 0) {
    check_error(r, res);
    fclose(f);
    return res;
  }
  check_services(r);
  CHECK(r->offset <= size);
  if (w) CHECK(rec_write_header(w, r->start_unix_ns, r->start_ns, r->services, r->nservices) == 0);
  /* Every sample takes at least 40 bytes of the input: a bound. */
  size_t steps = 0;
  for (;;) {
    rec_sample s;
    res = rec_reader_next(r, &s);
    CHECK(++steps <= size / (REC_FRAME_BYTES + REC_SAMPLE_FIXED) + 1);
    CHECK(r->offset <= size);
    CHECK(r->cap <= 4096 || r->cap <= 2 * size);
    if (res != REC_SAMPLE) break;
    CHECK(s.service < r->nservices);
    CHECK(s.bytes <= rec_service_max_payload(&r->services[s.service]));
    CHECK(s.payload != NULL);
    /* Every byte readable (ASan): the payload is the reader's copy. */
    volatile unsigned sum = 0;
    for (uint32_t i = 0; i < s.bytes; i++) sum += ((const unsigned char *)s.payload)[i];
    (void)sum;
    if (w) {
      stats_samples++;
      CHECK(rec_write_sample(w, &s) == 0);
    }
  }
  CHECK(res <= 0);
  if (res < 0) check_error(r, res);
  /* A status is sticky. */
  rec_sample again;
  CHECK(rec_reader_next(r, &again) == res);
  if (res == REC_END && r->has_footer && w) {
    stats_footers++;
    CHECK(rec_write_footer(w, r->footer_duration_ns, r->footer, r->nservices) == 0);
  }
  fclose(f);
  return res;
}

/* Whether `in` holds the samples of `out` (a file the writer made of what
 * was read from `in`), in order, and then ends or breaks where `out` ends. */
static int same_samples(const uint8_t *in, size_t in_len, const uint8_t *out, size_t out_len) {
  FILE *fi = fmemopen((void *)in, in_len, "rb"), *fo = fmemopen((void *)out, out_len, "rb");
  CHECK(fi && fo);
  rec_reader ri, ro;
  int same = rec_reader_open(&ri, fi) == 0 && rec_reader_open(&ro, fo) == 0;
  same = same && ri.nservices == ro.nservices &&
         !memcmp(ri.services, ro.services, ri.nservices * sizeof *ri.services);
  while (same) {
    rec_sample x, y;
    int ry = rec_reader_next(&ro, &y), rx = rec_reader_next(&ri, &x);
    if (ry != REC_SAMPLE) {
      same = ry == REC_END && rx <= 0;
      break;
    }
    same = rx == REC_SAMPLE && x.service == y.service && x.bytes == y.bytes &&
           x.publisher_id == y.publisher_id && x.sequence == y.sequence &&
           x.timestamp_ns == y.timestamp_ns && !memcmp(x.payload, y.payload, x.bytes);
  }
  rec_reader_close(&ri);
  rec_reader_close(&ro);
  fclose(fi);
  fclose(fo);
  return same;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0; /* fmemopen needs a byte; tests/cli_record.sh tries the empty file */
  char *out = NULL;
  size_t out_len = 0;
  FILE *mem = open_memstream(&out, &out_len);
  CHECK(mem != NULL);
  rec_writer w;
  rec_writer_init(&w, mem);
  rec_reader r;
  int res = read_all(data, size, &w, &r);
  stats_end[res_index(res)]++;
  /* The writer wrote a header only when the table was read. */
  int table_read = w.offset > 0;
  /* A file this writer could have made: no extension a reader skips. */
  int plain = table_read && r.version_minor == REC_VERSION_MINOR && r.flags == 0 &&
              data[12] == REC_HEADER_BYTES && !data[13] && !data[14] && !data[15];
  uint32_t nservices = r.nservices;
  int footer = r.has_footer;
  rec_reader_close(&r);
  CHECK(fclose(mem) == 0);
  if (table_read) {
    /* What was read, written again, reads back cleanly: the same samples. */
    rec_reader back;
    CHECK(read_all((const uint8_t *)out, out_len, NULL, &back) == REC_END);
    rec_reader_close(&back);
    CHECK(same_samples(data, size, (const uint8_t *)out, out_len));
    if (res == REC_END && plain) {
      /* Byte for byte, but for the footer's reserved word (ignored). */
      CHECK(out_len == size);
      uint8_t *copy = malloc(size);
      CHECK(copy != NULL);
      memcpy(copy, data, size);
      if (footer) {
        size_t at =
            size -
            (REC_FRAME_BYTES + REC_FOOTER_FIXED + (size_t)REC_FOOTER_PER_SERVICE * nservices) +
            REC_FRAME_BYTES + 20;
        memset(copy + at, 0, 4);
      }
      CHECK(!memcmp(out, copy, size));
      free(copy);
    }
  }
  free(out);
  return 0;
}

/* ---- seeds ---------------------------------------------------------------------- */

static void write_seed(const char *dir, const char *name, void (*make)(rec_writer *)) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (f == NULL) {
    perror(path);
    exit(1);
  }
  rec_writer w;
  rec_writer_init(&w, f);
  make(&w);
  fclose(f);
}

static rec_service seed_service(const char *name, const char *type, uint32_t size, uint32_t n) {
  rec_service s;
  memset(&s, 0, sizeof s);
  snprintf(s.name, sizeof s.name, "%s", name);
  snprintf(s.type_name, sizeof s.type_name, "%s", type);
  s.type_size = size;
  s.type_align = size;
  s.max_elements = n;
  s.max_publishers = 4;
  s.max_subscribers = 8;
  s.queue_depth = 16;
  s.max_loans = 4;
  s.max_held = 4;
  s.overflow = SHMBUS_OVERFLOW_BLOCK;
  return s;
}

static void seed_samples(rec_writer *w, uint32_t nservices, uint32_t count, int footer) {
  rec_counts counts[2];
  memset(counts, 0, sizeof counts);
  unsigned char payload[64];
  for (uint32_t k = 0; k < count; k++) {
    uint32_t svc = k % nservices;
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (unsigned char)(k + i);
    rec_sample s = {svc, (k * 7) % 33, 42 + svc, counts[svc].samples, 1000 + 10 * k, payload};
    rec_write_sample(w, &s);
    counts[svc].samples++;
    counts[svc].bytes += s.bytes;
  }
  if (footer) rec_write_footer(w, 12345, counts, nservices);
}

static void seed_one(rec_writer *w) {
  rec_service s = seed_service("fz/one", "fz/bytes", 1, 32);
  rec_write_header(w, 1, 2, &s, 1);
  seed_samples(w, 1, 3, 0);
}

static void seed_two_footer(rec_writer *w) {
  rec_service s[2] = {seed_service("fz/a", "fz/u32", 4, 8), seed_service("fz/b", "fz/u64", 8, 4)};
  rec_write_header(w, 1, 2, s, 2);
  seed_samples(w, 2, 5, 1);
}

static void seed_table_only(rec_writer *w) {
  rec_service s = seed_service("fz/empty", "fz/bytes", 1, 1);
  rec_write_header(w, 0, 0, &s, 1);
}

static void seed_footer_only(rec_writer *w) {
  rec_service s = seed_service("fz/quiet", "fz/bytes", 1, 16);
  rec_write_header(w, 0, 0, &s, 1);
  seed_samples(w, 1, 0, 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  if (getenv("SHMBUS_FUZZ_STATS") && atoi(getenv("SHMBUS_FUZZ_STATS"))) atexit(print_stats);
  const char *dir = getenv("SHMBUS_FUZZ_WRITE_SEEDS");
  if (dir != NULL) {
    write_seed(dir, "one", seed_one);
    write_seed(dir, "two-footer", seed_two_footer);
    write_seed(dir, "table-only", seed_table_only);
    write_seed(dir, "footer-only", seed_footer_only);
    exit(0);
  }
  return 0;
}

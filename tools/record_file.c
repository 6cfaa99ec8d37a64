/* SPDX-License-Identifier: Apache-2.0 */
/* The recording file: writer and reader (record_file.h, docs/record-format.md). */
#include "record_file.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- little-endian fields ------------------------------------------------------
 * Written and read byte by byte: the file's byte order is the format's,
 * whatever the machine's, and nothing needs to be aligned. */

static void put16(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }

static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p) {
  return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* The record tags: four ASCII bytes, readable in a hex dump. */
static const char TAG_SERVICE[4] = {'S', 'E', 'R', 'V'};
static const char TAG_SAMPLE[4] = {'S', 'A', 'M', 'P'};
static const char TAG_FOOTER[4] = {'F', 'O', 'O', 'T'};

uint64_t rec_service_max_payload(const rec_service *s) {
  return (uint64_t)s->type_size * s->max_elements;
}

/* ---- writing ----------------------------------------------------------------- */

void rec_writer_init(rec_writer *w, FILE *f) {
  w->f = f;
  w->offset = 0;
  w->failed = 0;
}

static int emit(rec_writer *w, const void *p, size_t n) {
  if (w->failed) return -1;
  errno = 0;
  if (n && fwrite(p, 1, n, w->f) != n) {
    w->failed = errno ? errno : EIO;
    return -1;
  }
  w->offset += n;
  return 0;
}

static int emit_frame(rec_writer *w, const char tag[4], uint32_t body) {
  unsigned char b[REC_FRAME_BYTES];
  memcpy(b, tag, 4);
  put32(b + 4, body);
  return emit(w, b, sizeof b);
}

static int write_service(rec_writer *w, uint32_t index, const rec_service *s) {
  size_t nl = strlen(s->name), tl = strlen(s->type_name);
  unsigned char b[REC_SERVICE_FIXED];
  const uint32_t fields[] = {index,           s->type_size,      s->type_align,
                             s->max_elements, s->max_publishers, s->max_subscribers,
                             s->queue_depth,  s->history,        s->max_loans,
                             s->max_held,     s->overflow};
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) put32(b + 4 * i, fields[i]);
  put16(b + 44, (uint32_t)nl);
  put16(b + 46, (uint32_t)tl);
  if (emit_frame(w, TAG_SERVICE, (uint32_t)(REC_SERVICE_FIXED + nl + tl))) return -1;
  if (emit(w, b, sizeof b) || emit(w, s->name, nl)) return -1;
  return emit(w, s->type_name, tl);
}

int rec_write_header(rec_writer *w, uint64_t start_unix_ns, uint64_t start_ns,
                     const rec_service *services, uint32_t nservices) {
  unsigned char b[REC_HEADER_BYTES];
  memcpy(b, REC_MAGIC, 8);
  put16(b + 8, REC_VERSION_MAJOR);
  put16(b + 10, REC_VERSION_MINOR);
  put32(b + 12, REC_HEADER_BYTES);
  put32(b + 16, nservices);
  put32(b + 20, 0); /* flags */
  put64(b + 24, start_unix_ns);
  put64(b + 32, start_ns);
  if (emit(w, b, sizeof b)) return -1;
  for (uint32_t i = 0; i < nservices; i++)
    if (write_service(w, i, &services[i])) return -1;
  return 0;
}

int rec_write_sample(rec_writer *w, const rec_sample *s) {
  unsigned char b[REC_SAMPLE_FIXED];
  put32(b, s->service);
  put32(b + 4, s->bytes);
  put64(b + 8, s->publisher_id);
  put64(b + 16, s->sequence);
  put64(b + 24, s->timestamp_ns);
  if (emit_frame(w, TAG_SAMPLE, REC_SAMPLE_FIXED + s->bytes) || emit(w, b, sizeof b)) return -1;
  return emit(w, s->payload, s->bytes);
}

int rec_write_footer(rec_writer *w, uint64_t duration_ns, const rec_counts *counts,
                     uint32_t nservices) {
  unsigned char b[REC_FOOTER_PER_SERVICE];
  uint64_t total = 0;
  for (uint32_t i = 0; i < nservices; i++) total += counts[i].samples;
  put64(b, duration_ns);
  put64(b + 8, total);
  put32(b + 16, nservices);
  put32(b + 20, 0);
  uint32_t body = REC_FOOTER_FIXED + REC_FOOTER_PER_SERVICE * nservices;
  if (emit_frame(w, TAG_FOOTER, body) || emit(w, b, REC_FOOTER_FIXED)) return -1;
  for (uint32_t i = 0; i < nservices; i++) {
    put64(b, counts[i].samples);
    put64(b + 8, counts[i].bytes);
    put64(b + 16, counts[i].lost);
    if (emit(w, b, REC_FOOTER_PER_SERVICE)) return -1;
  }
  return 0;
}

/* ---- reading ------------------------------------------------------------------ */

/* Records the first error (they are sticky) with the offset it is about. */
static int fail(rec_reader *r, int code, uint64_t offset, const char *fmt, ...) {
  va_list ap;
  int n = snprintf(r->error, sizeof r->error, "offset %llu: ", (unsigned long long)offset);
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof r->error) vsnprintf(r->error + n, sizeof r->error - n, fmt, ap);
  va_end(ap);
  r->status = code;
  return code;
}

/* Reads exactly n bytes: 0; 1 when the file ended before the first of
 * them; REC_TRUNCATED when it ended after some (*got says how many);
 * REC_IO when reading failed. */
static int read_exact(rec_reader *r, void *buf, size_t n, size_t *got) {
  size_t k = n ? fread(buf, 1, n, r->f) : 0;
  r->offset += k;
  if (got) *got = k;
  if (k == n) return 0;
  if (ferror(r->f)) return REC_IO;
  return k == 0 ? 1 : REC_TRUNCATED;
}

/* A read of part of a record at `at` that must succeed. */
static int read_part(rec_reader *r, void *buf, size_t n, uint64_t at, const char *what) {
  size_t got;
  int s = read_exact(r, buf, n, &got);
  if (s == 0) return 0;
  if (s == REC_IO) return fail(r, REC_IO, at, "cannot read %s", what);
  return fail(r, REC_TRUNCATED, at, "the file ends inside %s", what);
}

/* Names as the library accepts them: 1..max printable ASCII, no space. */
static int name_ok(const unsigned char *p, size_t n, size_t max) {
  if (n == 0 || n > max) return 0;
  for (size_t i = 0; i < n; i++)
    if (p[i] < 0x21 || p[i] > 0x7e) return 0;
  return 1;
}

/* The limits as shmbus_service_opts accepts them; 0 is the default. */
static const char *limits_error(const rec_service *s) {
  if (s->type_size == 0) return "type size 0";
  if (s->type_align == 0 || s->type_align > 4096 || (s->type_align & (s->type_align - 1)))
    return "type alignment not a power of two up to 4096";
  if (s->max_elements == 0) return "max_elements 0";
  if (rec_service_max_payload(s) > SHMBUS_MAX_PAYLOAD)
    return "type size x max_elements above SHMBUS_MAX_PAYLOAD";
  if (s->max_publishers > SHMBUS_MAX_PORTS || s->max_subscribers > SHMBUS_MAX_PORTS)
    return "more ports than SHMBUS_MAX_PORTS";
  if (s->queue_depth > SHMBUS_MAX_QUEUE_DEPTH || s->history > SHMBUS_MAX_HISTORY ||
      s->max_loans > SHMBUS_MAX_LOANS || s->max_held > SHMBUS_MAX_HELD)
    return "a limit above its maximum";
  if (s->overflow > SHMBUS_OVERFLOW_BLOCK) return "unknown overflow policy";
  return NULL;
}

static int read_service(rec_reader *r, uint32_t index) {
  uint64_t at = r->offset;
  unsigned char b[REC_SERVICE_FIXED + SHMBUS_SERVICE_NAME_MAX + SHMBUS_TYPE_NAME_MAX];
  int s = read_exact(r, b, REC_FRAME_BYTES, NULL);
  if (s == REC_IO) return fail(r, REC_IO, at, "cannot read service record %u", index);
  if (s != 0)
    return fail(r, REC_TRUNCATED, at, "the file ends in its service table (%u of %u services)",
                index, r->nservices);
  if (memcmp(b, TAG_SERVICE, 4))
    return fail(r, REC_CORRUPT, at, "service record %u of %u expected, tag 0x%08x found", index,
                r->nservices, (unsigned)get32(b));
  uint32_t body = get32(b + 4);
  if (body < REC_SERVICE_FIXED || body > sizeof b)
    return fail(r, REC_CORRUPT, at, "service record of %u bytes (48 to %u)", (unsigned)body,
                (unsigned)sizeof b);
  if (read_part(r, b, REC_SERVICE_FIXED, at, "a service record")) return r->status;
  rec_service *svc = &r->services[index];
  uint32_t *fields[] = {&svc->type_size,      &svc->type_align,      &svc->max_elements,
                        &svc->max_publishers, &svc->max_subscribers, &svc->queue_depth,
                        &svc->history,        &svc->max_loans,       &svc->max_held,
                        &svc->overflow};
  if (get32(b) != index)
    return fail(r, REC_CORRUPT, at, "service record %u says it is service %u", index,
                (unsigned)get32(b));
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) *fields[i] = get32(b + 4 + 4 * i);
  uint32_t nl = get16(b + 44), tl = get16(b + 46);
  if (nl == 0 || nl > SHMBUS_SERVICE_NAME_MAX || tl == 0 || tl > SHMBUS_TYPE_NAME_MAX)
    return fail(r, REC_CORRUPT, at, "service %u: name of %u bytes or type name of %u bytes", index,
                (unsigned)nl, (unsigned)tl);
  if (body != REC_SERVICE_FIXED + nl + tl)
    return fail(r, REC_CORRUPT, at, "service record of %u bytes, its names say %u", (unsigned)body,
                (unsigned)(REC_SERVICE_FIXED + nl + tl));
  if (read_part(r, b, nl + tl, at, "a service record")) return r->status;
  if (!name_ok(b, nl, SHMBUS_SERVICE_NAME_MAX) || !name_ok(b + nl, tl, SHMBUS_TYPE_NAME_MAX))
    return fail(r, REC_CORRUPT, at, "service %u: a name that is not printable ASCII", index);
  memcpy(svc->name, b, nl);
  svc->name[nl] = '\0';
  memcpy(svc->type_name, b + nl, tl);
  svc->type_name[tl] = '\0';
  const char *bad = limits_error(svc);
  if (bad) return fail(r, REC_CORRUPT, at, "service %u (%s): %s", index, svc->name, bad);
  return 0;
}

static int read_header(rec_reader *r) {
  unsigned char b[REC_HEADER_BYTES];
  size_t got;
  int s = read_exact(r, b, sizeof b, &got);
  if (s == REC_IO) return fail(r, REC_IO, 0, "cannot read the header");
  if (got < 8 || memcmp(b, REC_MAGIC, 8))
    return fail(r, REC_CORRUPT, 0, "not a shmbus recording (bad magic)");
  if (s != 0) return fail(r, REC_TRUNCATED, 0, "the file ends inside its header");
  r->version_major = get16(b + 8);
  r->version_minor = get16(b + 10);
  uint32_t header_bytes = get32(b + 12);
  r->nservices = get32(b + 16);
  r->flags = get32(b + 20);
  r->start_unix_ns = get64(b + 24);
  r->start_ns = get64(b + 32);
  if (r->version_major != REC_VERSION_MAJOR)
    return fail(r, REC_CORRUPT, 8, "format version %u.%u (this reader knows %u.x)",
                (unsigned)r->version_major, (unsigned)r->version_minor, REC_VERSION_MAJOR);
  if (header_bytes < REC_HEADER_BYTES || header_bytes > REC_HEADER_MAX)
    return fail(r, REC_CORRUPT, 12, "header of %u bytes (40 to %u)", (unsigned)header_bytes,
                REC_HEADER_MAX);
  if (r->nservices == 0 || r->nservices > REC_MAX_SERVICES)
    return fail(r, REC_CORRUPT, 16, "%u services (1 to %u)", (unsigned)r->nservices,
                REC_MAX_SERVICES);
  /* A later minor version's header fields: skipped. */
  unsigned char skip[REC_HEADER_MAX - REC_HEADER_BYTES];
  if (read_part(r, skip, header_bytes - REC_HEADER_BYTES, 0, "its header")) return r->status;
  return 0;
}

int rec_reader_open(rec_reader *r, FILE *f) {
  memset(r, 0, sizeof *r);
  r->f = f;
  if (read_header(r)) return r->status;
  /* At most REC_MAX_SERVICES entries: bounded whatever the file says. */
  r->services = calloc(r->nservices, sizeof *r->services);
  r->counts = calloc(r->nservices, sizeof *r->counts);
  r->footer = calloc(r->nservices, sizeof *r->footer);
  if (!r->services || !r->counts || !r->footer)
    return fail(r, REC_NOMEM, r->offset, "out of memory");
  for (uint32_t i = 0; i < r->nservices; i++)
    if (read_service(r, i)) return r->status;
  return 0;
}

/* Reads the payload into the buffer, growing it only as the bytes arrive:
 * a length the file claims but does not hold costs no memory. */
static int read_payload(rec_reader *r, uint32_t bytes, uint64_t at) {
  size_t have = 0;
  while (have < bytes) {
    if (have == r->cap) {
      size_t cap = r->cap ? 2 * r->cap : 4096;
      if (cap > bytes) cap = bytes;
      unsigned char *p = realloc(r->buf, cap);
      if (p == NULL)
        return fail(r, REC_NOMEM, at, "out of memory for a payload of %u bytes", bytes);
      r->buf = p;
      r->cap = cap;
    }
    size_t want = (bytes < r->cap ? bytes : r->cap) - have;
    size_t got;
    int s = read_exact(r, r->buf + have, want, &got);
    have += got;
    if (s == REC_IO) return fail(r, REC_IO, at, "cannot read a sample");
    if (s != 0)
      return fail(r, REC_TRUNCATED, at, "the file ends inside a sample (%llu of %u payload bytes)",
                  (unsigned long long)have, (unsigned)bytes);
  }
  return 0;
}

static int read_sample(rec_reader *r, uint32_t body, uint64_t at, rec_sample *out) {
  unsigned char b[REC_SAMPLE_FIXED];
  if (body < REC_SAMPLE_FIXED)
    return fail(r, REC_CORRUPT, at, "sample record of %u bytes (at least 32)", (unsigned)body);
  if (read_part(r, b, sizeof b, at, "a sample record")) return r->status;
  uint32_t service = get32(b), bytes = get32(b + 4);
  if (service >= r->nservices)
    return fail(r, REC_CORRUPT, at, "sample of service %u, the file has %u", (unsigned)service,
                (unsigned)r->nservices);
  const rec_service *svc = &r->services[service];
  if (bytes > rec_service_max_payload(svc))
    return fail(r, REC_CORRUPT, at, "sample of %u bytes, above service %s's maximum of %llu",
                (unsigned)bytes, svc->name, (unsigned long long)rec_service_max_payload(svc));
  if (body != REC_SAMPLE_FIXED + bytes)
    return fail(r, REC_CORRUPT, at, "sample record of %u bytes with a payload of %u",
                (unsigned)body, (unsigned)bytes);
  if (read_payload(r, bytes, at)) return r->status;
  static const unsigned char none[1];
  out->service = service;
  out->bytes = bytes;
  out->publisher_id = get64(b + 8);
  out->sequence = get64(b + 16);
  out->timestamp_ns = get64(b + 24);
  out->payload = bytes ? r->buf : none;
  r->counts[service].samples++;
  r->counts[service].bytes += bytes;
  return REC_SAMPLE;
}

/* The footer: the last record, its counts those of the samples before it. */
static int read_footer(rec_reader *r, uint32_t body, uint64_t at) {
  unsigned char b[REC_FOOTER_FIXED];
  if (body != REC_FOOTER_FIXED + (uint64_t)REC_FOOTER_PER_SERVICE * r->nservices)
    return fail(r, REC_CORRUPT, at, "footer of %u bytes for %u services", (unsigned)body,
                (unsigned)r->nservices);
  if (read_part(r, b, sizeof b, at, "the footer")) return r->status;
  r->footer_duration_ns = get64(b);
  uint64_t total = get64(b + 8), sum = 0;
  if (get32(b + 16) != r->nservices)
    return fail(r, REC_CORRUPT, at, "footer for %u services, the file has %u",
                (unsigned)get32(b + 16), (unsigned)r->nservices);
  for (uint32_t i = 0; i < r->nservices; i++) {
    if (read_part(r, b, REC_FOOTER_PER_SERVICE, at, "the footer")) return r->status;
    r->footer[i].samples = get64(b);
    r->footer[i].bytes = get64(b + 8);
    r->footer[i].lost = get64(b + 16);
    sum += r->footer[i].samples;
    if (r->footer[i].samples != r->counts[i].samples || r->footer[i].bytes != r->counts[i].bytes)
      return fail(r, REC_CORRUPT, at,
                  "the footer counts %llu samples (%llu bytes) of service %u, the file holds "
                  "%llu (%llu bytes)",
                  (unsigned long long)r->footer[i].samples, (unsigned long long)r->footer[i].bytes,
                  (unsigned)i, (unsigned long long)r->counts[i].samples,
                  (unsigned long long)r->counts[i].bytes);
  }
  if (sum != total) return fail(r, REC_CORRUPT, at, "the footer's total is not its sum");
  unsigned char extra;
  int s = read_exact(r, &extra, 1, NULL);
  if (s == REC_IO) return fail(r, REC_IO, r->offset, "cannot read past the footer");
  if (s == 0) return fail(r, REC_CORRUPT, at + REC_FRAME_BYTES + body, "data after the footer");
  r->has_footer = 1;
  return REC_END;
}

int rec_reader_next(rec_reader *r, rec_sample *out) {
  memset(out, 0, sizeof *out);
  if (r->status < 0) return r->status;
  if (r->has_footer) return REC_END;
  uint64_t at = r->offset;
  unsigned char b[REC_FRAME_BYTES];
  int s = read_exact(r, b, sizeof b, NULL);
  if (s == 1) return REC_END; /* a recording without its footer (cut off): valid */
  if (s == REC_IO) return fail(r, REC_IO, at, "cannot read a record");
  if (s != 0) return fail(r, REC_TRUNCATED, at, "the file ends inside a record's frame");
  uint32_t body = get32(b + 4);
  if (!memcmp(b, TAG_SAMPLE, 4)) return read_sample(r, body, at, out);
  if (!memcmp(b, TAG_FOOTER, 4)) return read_footer(r, body, at);
  if (!memcmp(b, TAG_SERVICE, 4))
    return fail(r, REC_CORRUPT, at, "a service record after the service table");
  return fail(r, REC_CORRUPT, at, "unknown record tag 0x%08x", (unsigned)get32(b));
}

void rec_reader_close(rec_reader *r) {
  free(r->services);
  free(r->counts);
  free(r->footer);
  free(r->buf);
  r->services = NULL;
  r->counts = r->footer = NULL;
  r->buf = NULL;
  r->cap = 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The recording file of `shmbus record` and `shmbus replay`
 * (docs/record-format.md is its specification): a header, one SERV record
 * per service (its name, type descriptor and limits), then one SAMP record
 * per sample as it arrived, then an optional FOOT record (counts). Every
 * field is little-endian and of fixed width.
 *
 * The writer streams: each record is complete when written, so a file cut
 * off anywhere is a valid prefix of records plus at most one partial one.
 * The reader treats the file as untrusted: every length, index and limit is
 * checked before anything is allocated or read, and a file that breaks the
 * format is reported with the offset of the record at fault, never misread.
 * Memory grows with the data actually present in the file (a payload
 * buffer is grown as the payload is read), never with a length it claims.
 */
#ifndef SHMBUS_RECORD_FILE_H
#define SHMBUS_RECORD_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <shmbus.h>

/* Sizes of the format, version 1.0 (docs/record-format.md). */
#define REC_MAGIC "SHMBREC\n" /* 8 bytes, no NUL */
enum {
  REC_VERSION_MAJOR = 1,
  REC_VERSION_MINOR = 0,
  REC_HEADER_BYTES = 40,  /* the header this writer writes           */
  REC_HEADER_MAX = 4096,  /* a reader skips header bytes beyond 40   */
  REC_FRAME_BYTES = 8,    /* tag[4], u32 body bytes                  */
  REC_SERVICE_FIXED = 48, /* a SERV body before its two names        */
  REC_SAMPLE_FIXED = 32,  /* a SAMP body before its payload          */
  REC_FOOTER_FIXED = 24,  /* a FOOT body before its per-service part */
  REC_FOOTER_PER_SERVICE = 24,
  REC_MAX_SERVICES = 1024
};

/* One recorded service: what replay needs to open or create it. Limits
 * are the service's (0 in a file: the library's default when created). */
typedef struct rec_service {
  char name[SHMBUS_SERVICE_NAME_MAX + 1];
  char type_name[SHMBUS_TYPE_NAME_MAX + 1];
  uint32_t type_size, type_align, max_elements;
  uint32_t max_publishers, max_subscribers, queue_depth, history;
  uint32_t max_loans, max_held, overflow;
} rec_service;

/* Counts of one service, as in the footer. */
typedef struct rec_counts {
  uint64_t samples, bytes, lost;
} rec_counts;

/* One sample. `payload` points at `bytes` bytes: the caller's when
 * writing; the reader's buffer when read, valid until the next read. */
typedef struct rec_sample {
  uint32_t service; /* index in the service table */
  uint32_t bytes;
  uint64_t publisher_id, sequence, timestamp_ns;
  const void *payload;
} rec_sample;

/* ---- writing ------------------------------------------------------------------
 * Each call returns 0, or -1 once a write failed; after a failure every
 * call fails. The caller owns, buffers, flushes and closes the FILE. */
typedef struct rec_writer {
  FILE *f;
  uint64_t offset; /* bytes written so far */
  int failed;      /* 0, or the errno of the write that failed */
} rec_writer;

void rec_writer_init(rec_writer *w, FILE *f);
int rec_write_header(rec_writer *w, uint64_t start_unix_ns, uint64_t start_ns,
                     const rec_service *services, uint32_t nservices);
int rec_write_sample(rec_writer *w, const rec_sample *s);
int rec_write_footer(rec_writer *w, uint64_t duration_ns, const rec_counts *counts,
                     uint32_t nservices);

/* ---- reading ------------------------------------------------------------------- */

/* What rec_reader_open and rec_reader_next return. */
enum {
  REC_SAMPLE = 1,     /* *out holds the next sample                              */
  REC_END = 0,        /* the end of the file (after the footer, or without one)  */
  REC_CORRUPT = -1,   /* the file breaks the format: `error` says where and how  */
  REC_TRUNCATED = -2, /* the file ends inside a record (a recording cut off)    */
  REC_IO = -3,        /* reading failed (errno)                                  */
  REC_NOMEM = -4
};

typedef struct rec_reader {
  FILE *f;
  uint64_t offset; /* of the next byte to read */
  uint32_t version_major, version_minor, flags;
  uint64_t start_unix_ns, start_ns;
  uint32_t nservices;
  rec_service *services; /* [nservices]                        */
  rec_counts *counts;    /* [nservices]: what was read so far  */
  int has_footer;        /* the footer was read                */
  uint64_t footer_duration_ns;
  rec_counts *footer; /* [nservices], when has_footer     */
  unsigned char *buf; /* the payload of the last sample */
  size_t cap;
  int status;      /* the last error (< 0), sticky, or 0 */
  char error[200]; /* "offset N: what", when status < 0  */
} rec_reader;

/* Reads the header and the service table of `f` (which stays the
 * caller's): 0, or a negative REC_ code with `error` set. Call
 * rec_reader_close in either case. */
int rec_reader_open(rec_reader *r, FILE *f);

/* The next sample: REC_SAMPLE, REC_END, or a negative REC_ code (then
 * every later call returns it again). The footer, when there is one, is
 * checked against what was read before REC_END is returned. */
int rec_reader_next(rec_reader *r, rec_sample *out);

/* Frees what the reader allocated (not the FILE). */
void rec_reader_close(rec_reader *r);

/* The largest payload of service `s`: type_size x max_elements. */
uint64_t rec_service_max_payload(const rec_service *s);

#endif /* SHMBUS_RECORD_FILE_H */

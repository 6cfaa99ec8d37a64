/* SPDX-License-Identifier: Apache-2.0 */
/* The sample type and service that xlang_c.c and xlang_cpp.cpp share: a C
 * and a C++ program of an installed shmbus, one publishing and the other
 * subscribing (run.sh runs both directions). Laid out the same in every
 * ABI, as shmbus.h's "Sample types" asks. */
#ifndef CONSUMER_XLANG_H
#define CONSUMER_XLANG_H

#include <stdint.h>

#include <shmbus.h>

#define XLANG_TYPE_NAME "consumer/XlangSample"
#define XLANG_SERVICE "consumer/xlang"
#define XLANG_QUEUE_DEPTH 64u

typedef struct xlang_sample {
  SHMBUS_ALIGNAS(8) uint64_t seq; /* 0, 1, 2, ... */
  double value;                   /* seq / 4: exact */
  float gain;                     /* seq mod 65536: exact */
  uint32_t check;                 /* xlang_check(seq) */
} xlang_sample;
SHMBUS_ASSERT_LAYOUT(xlang_sample, 24, 8);
SHMBUS_ASSERT_OFFSET(xlang_sample, gain, 16);

static inline uint32_t xlang_check(uint64_t seq) {
  return (uint32_t)(seq * UINT64_C(2654435761)) ^ (uint32_t)(seq >> 32) ^ 0x5eedu;
}

static inline void xlang_fill(xlang_sample *s, uint64_t seq) {
  s->seq = seq;
  s->value = (double)seq / 4.0;
  s->gain = (float)(seq % 65536u);
  s->check = xlang_check(seq);
}

/* 1 when `s` is what xlang_fill wrote for `seq`. */
static inline int xlang_valid(const xlang_sample *s, uint64_t seq) {
  return s->seq == seq && s->value == (double)seq / 4.0 && s->gain == (float)(seq % 65536u) &&
         s->check == xlang_check(seq);
}

#endif

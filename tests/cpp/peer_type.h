/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sample type that the C peer (c_peer.c) and the C++ tests exchange:
 * plain C, the same layout from both languages, and the same type name.
 */
#ifndef SHMBUS_TESTS_CPP_PEER_TYPE_H
#define SHMBUS_TESTS_CPP_PEER_TYPE_H

#include <stdint.h>

#define CPP_PEER_TYPE_NAME "shmbus-cpp-test/PeerReading"

typedef struct cpp_peer_reading {
  uint64_t seq;   /* the counter of the side that wrote it, from 0 */
  uint64_t check; /* cpp_peer_check(seq) */
  uint32_t words[4];
} cpp_peer_reading;

static inline uint64_t cpp_peer_check(uint64_t seq) {
  return (seq * UINT64_C(0xff51afd7ed558ccd)) ^ UINT64_C(0xc4ceb9fe1a85ec53);
}

static inline void cpp_peer_fill(cpp_peer_reading *r, uint64_t seq) {
  r->seq = seq;
  r->check = cpp_peer_check(seq);
  r->words[0] = (uint32_t)seq;
  r->words[1] = (uint32_t)(seq >> 32);
  r->words[2] = (uint32_t)~seq;
  r->words[3] = 0x5eb05eb0u;
}

static inline int cpp_peer_valid(const cpp_peer_reading *r) {
  return r->check == cpp_peer_check(r->seq) && r->words[0] == (uint32_t)r->seq &&
         r->words[1] == (uint32_t)(r->seq >> 32) && r->words[2] == (uint32_t)~r->seq &&
         r->words[3] == 0x5eb05eb0u;
}

/* Both sides' options: nothing is ever lost (backpressure), a queue deep
 * enough that the publisher rarely waits. */
#define CPP_PEER_QUEUE_DEPTH 256u

#endif /* SHMBUS_TESTS_CPP_PEER_TYPE_H */

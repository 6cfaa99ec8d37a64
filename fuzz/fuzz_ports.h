/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The scenario behind fuzz_take, fuzz_publish and fuzz_double_fetch: a real
 * publisher P and real subscribers in this process, on a service of their
 * own per iteration, driven by a script of operations read from the input.
 *
 *   A  the subscriber whose connection the input writes into (its words
 *      and rings through our own mapping of P's control segment, P's chunk
 *      headers through our own mapping of P's data segment, its own
 *      wait state): the subscriber under test of fuzz_take, the buggy
 *      subscriber of fuzz_publish;
 *   V  an honest subscriber (fuzz_publish, fuzz_double_fetch) that nobody
 *      writes for: with `victim_checks` every sample it takes must be one P
 *      published, in order, with its bytes intact while held, and every
 *      sample it misses must be counted in its lost count.
 *
 * Input: byte 0 picks the service (overflow, depth, held, history,
 * elements, who opens first), byte 1 the block timeout; then operations,
 * one byte each plus their arguments. With `hook`, bytes 2-3 give the
 * script's length and what follows it drives the double-fetch hook.
 */
#ifndef SHMBUS_FUZZ_PORTS_H
#define SHMBUS_FUZZ_PORTS_H

#include <stddef.h>
#include <stdint.h>

enum fz_op {
  FZ_OP_SEND,       /* P send_copy (length)                          */
  FZ_OP_LOAN,       /* P loan (elements)                             */
  FZ_OP_PUBLISH,    /* P publish or publish_bytes of a loan          */
  FZ_OP_DISCARD,    /* P discard of a loan                           */
  FZ_OP_UPDATE,     /* P update                                      */
  FZ_OP_PUB_REOPEN, /* P closes; a new publisher opens               */
  FZ_OP_A_TAKE,
  FZ_OP_A_TAKE_LATEST,
  FZ_OP_A_RELEASE,        /* a sample A holds                              */
  FZ_OP_A_RELEASE_FORGED, /* a sample A never got (or a changed one)    */
  FZ_OP_A_WAIT,           /* A wait with a short timeout                   */
  FZ_OP_A_PUBLISHERS,
  FZ_OP_A_LOST,
  FZ_OP_A_REOPEN, /* A closes and opens again (a late joiner)      */
  FZ_OP_V_TAKE,
  FZ_OP_V_TAKE_LATEST,
  FZ_OP_V_RELEASE,
  FZ_OP_W_CONN,      /* a word of A's connection header               */
  FZ_OP_W_SUBRING,   /* an entry of A's submission ring               */
  FZ_OP_W_DONE,      /* an entry of A's completion ring               */
  FZ_OP_W_PUSH_DONE, /* a completion behind the library's back        */
  FZ_OP_W_CHUNK,     /* a chunk header field or payload word of P     */
  FZ_OP_W_OWN_SLOT,  /* a field of A's own wait state (service segment) */
  FZ_OP_W_BLOCK,     /* any word of A's connection block              */
  FZ_OP_COUNT
};

typedef struct fz_ports_opts {
  const char *tag;       /* service names start with it          */
  const enum fz_op *ops; /* the operations the script may use    */
  size_t nops;
  int victim;        /* open V                               */
  int victim_checks; /* check V's promises (no hook: a hostile
                               peer may garble anyone's data)       */
  int hook;          /* the input's tail drives the hook     */
} fz_ports_opts;

/* One iteration. */
int fz_ports_run(const uint8_t *data, size_t size, const fz_ports_opts *o);

/* Writes seed inputs for this harness into `dir` (SHMBUS_FUZZ_WRITE_SEEDS). */
void fz_ports_seeds(const char *dir, const fz_ports_opts *o);

/* Writes one input file dir/<name>. */
void fz_write_seed(const char *dir, const char *name, const uint8_t *data, size_t len);

#endif /* SHMBUS_FUZZ_PORTS_H */

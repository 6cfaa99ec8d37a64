/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_take: subscriber take, take_latest and release (and wait, a look
 * for publishers, a late rejoin) against fuzzer-written connection words
 * (sub_id, lost, wait_ack, head, ...), submission ring entries, completion
 * ring entries and chunk headers, with a real publisher and subscriber in
 * this process: what a buggy or hostile publisher can make a subscriber
 * see. The subscriber must never touch memory outside a chunk of the data
 * segment, hand out a sample beyond its limits, accept the release of a
 * sample it does not hold, or sleep on the hot path (fuzz_ports.h).
 */
#include <stdlib.h>

#include "fuzz.h"
#include "fuzz_ports.h"

static const enum fz_op ops[] = {FZ_OP_SEND, FZ_OP_LOAN, FZ_OP_PUBLISH, FZ_OP_DISCARD, FZ_OP_UPDATE,
                                 FZ_OP_PUB_REOPEN, FZ_OP_A_TAKE, FZ_OP_A_TAKE_LATEST,
                                 FZ_OP_A_RELEASE, FZ_OP_A_RELEASE_FORGED, FZ_OP_A_WAIT,
                                 FZ_OP_A_PUBLISHERS, FZ_OP_A_LOST, FZ_OP_A_REOPEN, FZ_OP_W_CONN,
                                 FZ_OP_W_SUBRING, FZ_OP_W_DONE, FZ_OP_W_CHUNK, FZ_OP_W_BLOCK,
                                 /* twice: what the subscriber reads is the point */
                                 FZ_OP_A_TAKE, FZ_OP_W_SUBRING, FZ_OP_W_CHUNK, FZ_OP_W_CONN};

static const fz_ports_opts opts = {.tag = "take",
                                   .ops = ops,
                                   .nops = sizeof ops / sizeof ops[0],
                                   .victim = 0,
                                   .victim_checks = 0,
                                   .hook = 0};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fz_init("take");
  const char *seeds = getenv("SHMBUS_FUZZ_WRITE_SEEDS");
  if (seeds != NULL) {
    fz_ports_seeds(seeds, &opts);
    exit(0);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fz_ports_run(data, size, &opts);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_double_fetch: the scenario of fuzz_take and fuzz_publish (every
 * operation of both), while the input also rewrites shared words BETWEEN
 * the library's reads: this build's library reports every atomic load,
 * compare-and-swap and fetch-add (src/atomic.h, SHMBUS_FUZZ_HOOKS), and for
 * each one on a word of our domain's mappings (found in /proc/self/maps)
 * the hook takes a byte of the input's tail and may rewrite the word
 * through our own mapping (fuzz_support.c), so a value validated at one
 * read can differ at the next, as a hostile peer makes it. Service, data
 * and control segments are all fair game, so only what no peer may ever
 * cause is checked: no crash, no access outside a chunk, no hang, no
 * sleep on the hot path, exact releases, loans always served. The hook
 * also truncates segments (SIGBUS: the library must survive it and report
 * CORRUPT, docs/security.md §6; SHMBUS_FUZZ_TRUNCATE=0 turns it off).
 */
#include <stdlib.h>

#include "fuzz.h"
#include "fuzz_ports.h"

static const enum fz_op ops[] = {FZ_OP_SEND,        FZ_OP_LOAN,
                                 FZ_OP_PUBLISH,     FZ_OP_DISCARD,
                                 FZ_OP_UPDATE,      FZ_OP_PUB_REOPEN,
                                 FZ_OP_A_TAKE,      FZ_OP_A_TAKE_LATEST,
                                 FZ_OP_A_RELEASE,   FZ_OP_A_RELEASE_FORGED,
                                 FZ_OP_A_WAIT,      FZ_OP_A_PUBLISHERS,
                                 FZ_OP_A_LOST,      FZ_OP_A_REOPEN,
                                 FZ_OP_V_TAKE,      FZ_OP_V_TAKE_LATEST,
                                 FZ_OP_V_RELEASE,   FZ_OP_W_CONN,
                                 FZ_OP_W_SUBRING,   FZ_OP_W_DONE,
                                 FZ_OP_W_PUSH_DONE, FZ_OP_W_CHUNK,
                                 FZ_OP_W_OWN_SLOT,  FZ_OP_W_BLOCK};

static const fz_ports_opts opts = {.tag = "double",
                                   .ops = ops,
                                   .nops = sizeof ops / sizeof ops[0],
                                   .victim = 1,
                                   .victim_checks = 0,
                                   .hook = 1};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fz_init("double");
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

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_publish: publisher collect, make_room and deliver, driven through
 * loan / publish / publish_bytes / discard / send_copy / update, against a
 * buggy subscriber A whose connection block the input writes (completion
 * ring entries, done_tail, head, sub_ack, room_event, any word of its block,
 * its own wait state), with an honest subscriber V beside it. A buggy
 * subscriber may break its own connection only: every sample V takes must
 * be one the publisher sent, in order, intact while held, and whatever V
 * misses must show in its lost count; a loan never fails for lack of
 * memory and never hands out a chunk V holds (fuzz_ports.h).
 */
#include <stdlib.h>

#include "fuzz.h"
#include "fuzz_ports.h"

static const enum fz_op ops[] = {FZ_OP_SEND, FZ_OP_LOAN, FZ_OP_PUBLISH, FZ_OP_DISCARD, FZ_OP_UPDATE,
                                 FZ_OP_A_TAKE, FZ_OP_A_TAKE_LATEST, FZ_OP_A_RELEASE, FZ_OP_A_REOPEN,
                                 FZ_OP_V_TAKE, FZ_OP_V_TAKE_LATEST, FZ_OP_V_RELEASE, FZ_OP_W_CONN,
                                 FZ_OP_W_SUBRING, FZ_OP_W_DONE, FZ_OP_W_PUSH_DONE, FZ_OP_W_OWN_SLOT,
                                 FZ_OP_W_BLOCK,
                                 /* twice: the publisher's side is the point */
                                 FZ_OP_SEND, FZ_OP_W_PUSH_DONE, FZ_OP_W_CONN, FZ_OP_UPDATE};

static const fz_ports_opts opts = {.tag = "publish",
                                   .ops = ops,
                                   .nops = sizeof ops / sizeof ops[0],
                                   .victim = 1,
                                   .victim_checks = 1,
                                   .hook = 0};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fz_init("publish");
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

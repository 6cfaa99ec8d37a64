/* SPDX-License-Identifier: Apache-2.0 */
/* shmbus record and replay: in progress. */
#include "cli.h"

int cmd_record(shmbus_node *node, const cli_opts *o) {
  (void)node;
  (void)o;
  return cli_fail("record", SHMBUS_ERR_UNSUPPORTED);
}

int cmd_replay(shmbus_node *node, const cli_opts *o) {
  (void)node;
  (void)o;
  return cli_fail("replay", SHMBUS_ERR_UNSUPPORTED);
}

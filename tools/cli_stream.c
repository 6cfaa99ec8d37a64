/* SPDX-License-Identifier: Apache-2.0 */
/* shmbus echo, hz and pub. */
#include "cli.h"

int cmd_echo(shmbus_node *node, const cli_opts *o) {
  (void)node;
  (void)o;
  return cli_fail("echo", SHMBUS_ERR_UNSUPPORTED);
}

int cmd_hz(shmbus_node *node, const cli_opts *o) {
  (void)node;
  (void)o;
  return cli_fail("hz", SHMBUS_ERR_UNSUPPORTED);
}

int cmd_pub(shmbus_node *node, const cli_opts *o) {
  (void)node;
  (void)o;
  return cli_fail("pub", SHMBUS_ERR_UNSUPPORTED);
}

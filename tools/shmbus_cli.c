/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shmbus: a small command line tool over the public API.
 *   shmbus nodes   [--domain D] [--dir ROOT]   list the domain's nodes
 *   shmbus cleanup [--domain D] [--dir ROOT]   remove what dead nodes left
 * The domain defaults to $SHMBUS_DOMAIN, else "default"; --dir selects the
 * directory backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmbus.h>

static int usage(void) {
  fputs("usage: shmbus nodes|cleanup [--domain DOMAIN] [--dir ROOT]\n", stderr);
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage();
  const char *cmd = argv[1];
  shmbus_node_opts o = SHMBUS_NODE_OPTS_INIT;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--domain") && i + 1 < argc)
      o.domain = argv[++i];
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
      o.backend = SHMBUS_BACKEND_DIR;
      o.root = argv[++i];
    } else
      return usage();
  }
  shmbus_node *node;
  int r = shmbus_node_open(&o, &node);
  if (r) {
    fprintf(stderr, "shmbus: %s\n", shmbus_strerror(r));
    return 1;
  }
  if (!strcmp(cmd, "nodes")) {
    size_t n = 0;
    shmbus_node_info info[1024];
    r = shmbus_node_list(node, info, 1024, &n);
    for (size_t i = 0; r == 0 && i < n && i < 1024; i++)
      printf("%016llx %s%s\n", (unsigned long long)info[i].id, info[i].alive ? "alive" : "dead",
             info[i].id == shmbus_node_id(node) ? " (this command)" : "");
  } else if (!strcmp(cmd, "cleanup")) {
    r = shmbus_domain_cleanup(node);
    if (r >= 0)
      printf("shmbus: cleaned %d objects and ports in domain %s\n", r, shmbus_node_domain(node));
  } else {
    shmbus_node_close(node);
    return usage();
  }
  shmbus_node_close(node);
  if (r < 0) {
    fprintf(stderr, "shmbus: %s\n", shmbus_strerror(r));
    return 1;
  }
  return 0;
}

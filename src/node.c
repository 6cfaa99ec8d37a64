/* SPDX-License-Identifier: Apache-2.0 */
/* Nodes: a domain, a backend and an id, shared by the ports opened on them. */
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "internal.h"

int shmbus_node_open(const shmbus_node_opts *opts, shmbus_node **out) {
  static const shmbus_node_opts defaults = SHMBUS_NODE_OPTS_INIT;
  SHMBUS__CLEAR_OUT(out);
  if (out == NULL) return SHMBUS_ERR_INVAL;
  if (opts == NULL) opts = &defaults;

  const char *domain = opts->domain;
  if (domain == NULL) {
    domain = shmbus__getenv("SHMBUS_DOMAIN");
    if (domain == NULL || *domain == '\0') domain = SHMBUS__DEFAULT_DOMAIN;
  }
  int r = shmbus__check_domain(domain);
  if (r) return r;
  if (opts->mode > 0777) return SHMBUS_ERR_INVAL;

  shmbus__root root;
  memset(&root, 0, sizeof root);
  root.backend = opts->backend;
  root.mode = opts->mode ? opts->mode : SHMBUS__DEFAULT_MODE;
  if (opts->backend == SHMBUS_BACKEND_DIR) {
    if (opts->root == NULL || opts->root[0] == '\0') return SHMBUS_ERR_INVAL;
    size_t n = strlen(opts->root);
    if (n >= sizeof root.dir) return SHMBUS_ERR_NAME;
    memcpy(root.dir, opts->root, n + 1);
  } else if (opts->backend != SHMBUS_BACKEND_SHM || opts->root != NULL) {
    return SHMBUS_ERR_INVAL;
  }
  r = shmbus__root_prepare(&root);
  if (r) return r;

  shmbus_node *node = calloc(1, sizeof *node);
  if (node == NULL) return SHMBUS_ERR_NOMEM;
  node->refs = 1;
  node->root = root;
  memcpy(node->domain, domain, strlen(domain) + 1);
  char name[SHMBUS__OBJECT_NAME_MAX];
  do { /* a clash of 64 random bits is all but impossible; still */
    /* Never 0 (a free slot), top bit clear (SHMBUS__SLOT_REAPER). */
    node->id = (shmbus__random64() >> 1) | 1u;
    shmbus__node_token_name(name, node->domain, node->id);
    r = shmbus__token_create(&node->root, name, &node->token);
  } while (r == SHMBUS_ERR_EXISTS);
  if (r) {
    free(node);
    return r;
  }
  *out = node;
  return 0;
}

#if defined(__SANITIZE_THREAD__)
uint64_t shmbus__tsan_fence_word; /* see shmbus__fence_seq_cst */
#endif

void shmbus__node_ref(shmbus_node *node) { shmbus__fetch_add64(&node->refs, 1); }

void shmbus__node_opening(shmbus_node *node, int delta) {
  /* Pairs with the load-acquire in cleanup's look for activity (liveness.c). */
  shmbus__fetch_add64(&node->opening, (uint64_t)(int64_t)delta);
}

void shmbus__node_unref(shmbus_node *node) {
  if (shmbus__fetch_add64(&node->refs, (uint64_t)-1) != 1) return;
  char name[SHMBUS__OBJECT_NAME_MAX];
  shmbus__node_token_name(name, node->domain, node->id);
  shmbus__token_destroy(&node->root, name, &node->token);
  free(node);
}

void shmbus_node_close(shmbus_node *node) {
  if (node != NULL) shmbus__node_unref(node);
}

const char *shmbus_node_domain(const shmbus_node *node) { return node ? node->domain : NULL; }

uint64_t shmbus_node_id(const shmbus_node *node) { return node ? node->id : 0; }

uint64_t shmbus_now_ns(void) { return shmbus__now_ns(); }

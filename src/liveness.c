/* SPDX-License-Identifier: Apache-2.0 */
/* Liveness of nodes (their tokens) and the cleanup of what dead ones left. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "service.h"

int shmbus__node_alive(const shmbus_node *self, uint64_t node_id) {
  if (node_id == self->id) return 1;
  char name[SHMBUS__OBJECT_NAME_MAX];
  shmbus__node_token_name(name, self->domain, node_id);
  int r = shmbus__token_probe(&self->root, name);
  return r == SHMBUS__DEAD || r == SHMBUS_ERR_NOT_FOUND ? 0 : 1;
}

/* The names of a domain's objects, copied out of the directory listing. */
typedef struct name_list {
  char (*names)[SHMBUS__OBJECT_NAME_MAX];
  size_t count, cap;
  int nomem;
} name_list;

/* A peer can create any number of objects under the domain's prefix: a
 * listing stops there (what is beyond is left for a later cleanup). */
enum { LIST_MAX = 1 << 16 };

static int collect_name(const char *name, void *arg) {
  name_list *l = arg;
  if (strlen(name) >= SHMBUS__OBJECT_NAME_MAX) return 0; /* not one of ours */
  if (l->count == LIST_MAX) return 1;
  if (l->count == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 64;
    void *p = realloc(l->names, cap * sizeof *l->names);
    if (p == NULL) {
      l->nomem = 1;
      return 1;
    }
    l->names = p;
    l->cap = cap;
  }
  memcpy(l->names[l->count++], name, strlen(name) + 1);
  return 0;
}

static int list_domain(const shmbus_node *node, name_list *l) {
  char prefix[SHMBUS__OBJECT_NAME_MAX];
  snprintf(prefix, sizeof prefix, "shmbus.%s.", node->domain);
  memset(l, 0, sizeof *l);
  int r = shmbus__list_objects(&node->root, prefix, collect_name, l);
  if (r == 0 && l->nomem) r = SHMBUS_ERR_NOMEM;
  if (r) free(l->names);
  return r;
}

/* The node id in a token name "shmbus.<domain>.n.<16 hex>", or 0. */
static uint64_t token_node_id(const shmbus_node *node, const char *name) {
  size_t n = strlen("shmbus.") + strlen(node->domain) + strlen(".n.");
  if (strlen(name) != n + 16 || strncmp(name + n - 3, ".n.", 3) != 0) return 0;
  char *end;
  unsigned long long id = strtoull(name + n, &end, 16);
  return *end == '\0' ? (uint64_t)id : 0;
}

/* "shmbus.<domain>.x.<...>": a graveyard file (platform.h, segment_unlink). */
static int graveyard_name(const shmbus_node *node, const char *name) {
  size_t n = strlen("shmbus.") + strlen(node->domain);
  return strlen(name) > n + 3 && strncmp(name + n, ".x.", 3) == 0;
}

static int has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

int shmbus_node_list(shmbus_node *node, shmbus_node_info *out, size_t cap, size_t *count) {
  if (count) *count = 0;
  if (node == NULL || count == NULL || (out == NULL && cap > 0)) return SHMBUS_ERR_INVAL;
  name_list l;
  int r = list_domain(node, &l);
  if (r) return r;
  size_t found = 0;
  for (size_t i = 0; i < l.count; i++) {
    uint64_t id = token_node_id(node, l.names[i]);
    if (id == 0) continue;
    if (found < cap) {
      out[found].id = id;
      out[found].alive = shmbus__node_alive(node, id);
    }
    found++;
  }
  free(l.names);
  *count = found;
  return 0;
}

/* Objects are named only once initialised (platform.h), except where the
 * OS cannot create them unnamed: there, a creator killed before it
 * initialised one leaves it uninitialised for good. Such an object is taken
 * for abandoned once nobody touched it for this long (the tokens' rule). */
enum { ABANDONED_AFTER_S = 10 };

static int abandoned(shmbus_node *node, const char *name) {
  uint64_t age;
  return shmbus__segment_age(&node->root, name, &age) == 0 && age >= ABANDONED_AFTER_S;
}

/* A publisher segment whose creator node is dead: its publisher died
 * before it could be reclaimed through its service. */
static int orphan_segment(shmbus_node *node, const char *name, int data) {
  shmbus__segment seg;
  uint32_t kind = data ? SHMBUS__SEG_DATA : SHMBUS__SEG_CONTROL;
  /* Only the header is read: one page, whatever length the object has. */
  int r = shmbus__segment_open(&node->root, name, 0, sizeof(shmbus__seg_header),
                               shmbus__page_size(), &seg);
  if (r == SHMBUS_ERR_NOT_READY) return abandoned(node, name);
  if (r != 0) return 0;
  const shmbus__seg_header *hdr = seg.base;
  /* Pairs with the store-release in shmbus__seg_header_publish. */
  int complete = shmbus__load32_acquire(&hdr->initialised) == SHMBUS__INITIALISED;
  int ours = shmbus__load64_relaxed(&hdr->magic) == SHMBUS__MAGIC &&
             shmbus__load32_relaxed(&hdr->kind) == kind;
  uint64_t creator = shmbus__load64_relaxed(&hdr->creator_node_id);
  shmbus__segment_close(&seg);
  if (!complete) return abandoned(node, name);
  return ours && !shmbus__node_alive(node, creator);
}

/* No node of the domain but `node` lives, and `node` opens no port now. */
static int alone(shmbus_node *node) {
  /* Pairs with the fetch-adds around port opens. */
  if (shmbus__load64_acquire(&node->opening) != 0) return 0;
  name_list l;
  if (list_domain(node, &l) != 0) return 0;
  int others = 0;
  for (size_t i = 0; i < l.count && !others; i++) {
    uint64_t id = token_node_id(node, l.names[i]);
    others = id != 0 && id != node->id && shmbus__node_alive(node, id);
  }
  free(l.names);
  return !others;
}

int shmbus_domain_cleanup(shmbus_node *node) {
  if (node == NULL) return SHMBUS_ERR_INVAL;
  name_list l;
  int r = list_domain(node, &l);
  if (r) return r;
  int done = 0;
  uint64_t deadline = shmbus__now_ns() + SHMBUS__INIT_TIMEOUT_NS / 20;
  /* Services first: their sweeps reclaim dead ports and their segments. */
  for (size_t i = 0; i < l.count; i++) {
    if (!has_suffix(l.names[i], ".s")) continue;
    shmbus__service svc;
    int opened = shmbus__service_attach_object(node, l.names[i], deadline, &svc);
    if (opened == SHMBUS_ERR_NOT_READY && abandoned(node, l.names[i]) &&
        shmbus__segment_unlink(&node->root, l.names[i]) == 0)
      done++;
    if (opened != 0) continue;
    done += shmbus__service_sweep(&svc);
    done += shmbus__service_remove_orphaned(&svc, alone);
    done += shmbus__service_detach(&svc);
  }
  for (size_t i = 0; i < l.count; i++) {
    const char *name = l.names[i];
    int data = has_suffix(name, ".d");
    if ((data || has_suffix(name, ".c")) && orphan_segment(node, name, data) &&
        shmbus__segment_unlink(&node->root, name) == 0)
      done++;
  }
  for (size_t i = 0; i < l.count; i++) {
    uint64_t id = token_node_id(node, l.names[i]);
    if (id != 0 && !shmbus__node_alive(node, id) &&
        shmbus__segment_unlink(&node->root, l.names[i]) == 0)
      done++;
  }
  /* Files an unlink could only rename, because they were mapped (Win32,
   * platform.h); one still mapped stays until its last process closes it. */
  for (size_t i = 0; i < l.count; i++)
    if (graveyard_name(node, l.names[i]) && shmbus__segment_unlink(&node->root, l.names[i]) == 0)
      done++;
  free(l.names);
  return done;
}

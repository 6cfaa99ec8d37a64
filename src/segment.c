/* SPDX-License-Identifier: Apache-2.0 */
/* The header every segment starts with: written by its creator, waited for
 * and validated by every opener. */
#include <string.h>

#include "atomic.h"
#include "internal.h"

void shmbus__seg_header_init(shmbus__seg_header *hdr, uint32_t kind, uint64_t total_size,
                             uint64_t creator, uint64_t generation) {
  hdr->magic = SHMBUS__MAGIC;
  hdr->layout_version = SHMBUS__LAYOUT_VERSION;
  hdr->kind = kind;
  hdr->header_size = sizeof(shmbus__seg_header);
  hdr->total_size = total_size;
  hdr->creator_node_id = creator;
  hdr->generation = generation;
  hdr->page_size = (uint32_t)shmbus__page_size();
}

void shmbus__seg_header_publish(shmbus__seg_header *hdr) {
  /* Pairs with the load-acquire in shmbus__seg_header_wait: everything the
   * creator wrote before is visible to an opener that sees INITIALISED. */
  shmbus__store32_release(&hdr->initialised, SHMBUS__INITIALISED);
}

int shmbus__seg_header_wait(const shmbus__segment *seg, uint32_t kind, uint64_t deadline_ns) {
  if (seg->size < sizeof(shmbus__seg_header)) return SHMBUS_ERR_CORRUPT;
  shmbus__seg_header *hdr = (shmbus__seg_header *)seg->base;
  for (;;) {
    /* Pairs with the store-release in shmbus__seg_header_publish. */
    if (shmbus__load32_acquire(&hdr->initialised) == SHMBUS__INITIALISED) break;
    uint64_t magic = shmbus__load64_relaxed(&hdr->magic);
    if (magic != 0 && magic != SHMBUS__MAGIC) return SHMBUS_ERR_CORRUPT;
    if (shmbus__now_ns() >= deadline_ns) return SHMBUS_ERR_NOT_READY;
    shmbus__sleep_ns(20 * 1000);
  }
  /* Each word once, into locals: a peer may change them between reads. */
  if (shmbus__load64_relaxed(&hdr->magic) != SHMBUS__MAGIC) return SHMBUS_ERR_CORRUPT;
  if (shmbus__load32_relaxed(&hdr->layout_version) != SHMBUS__LAYOUT_VERSION)
    return SHMBUS_ERR_VERSION;
  uint32_t seg_kind = shmbus__load32_relaxed(&hdr->kind);
  uint64_t header_size = shmbus__load64_relaxed(&hdr->header_size);
  uint64_t total = shmbus__load64_relaxed(&hdr->total_size);
  if (seg_kind != kind || header_size != sizeof(shmbus__seg_header) ||
      total < sizeof(shmbus__seg_header) || total > seg->size)
    return SHMBUS_ERR_CORRUPT;
  /* Another page size lays everything out differently (layout.h). */
  if (shmbus__load32_relaxed(&hdr->page_size) != shmbus__page_size())
    return SHMBUS_ERR_INCOMPATIBLE;
  return 0;
}

int shmbus__segment_open_wait(const shmbus__root *root, const char *name, int writable,
                              uint32_t kind, uint64_t min_size, uint64_t max_size,
                              uint64_t deadline_ns, shmbus__segment *out) {
  for (;;) {
    int r = shmbus__segment_open(root, name, writable, min_size, max_size, out);
    if (r == SHMBUS_ERR_NOT_READY && shmbus__now_ns() < deadline_ns) {
      shmbus__sleep_ns(20 * 1000);
      continue;
    }
    if (r) return r;
    r = shmbus__seg_header_wait(out, kind, deadline_ns);
    if (r) shmbus__segment_close(out);
    return r;
  }
}

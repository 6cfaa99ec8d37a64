/* SPDX-License-Identifier: Apache-2.0 */
/* Name rules and object naming. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

int shmbus__check_domain(const char *domain) {
  if (domain == NULL) return SHMBUS_ERR_INVAL;
  size_t n = 0;
  for (const char *p = domain; *p; p++, n++) {
    char c = *p;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-';
    if (!ok || n >= SHMBUS_DOMAIN_MAX) return SHMBUS_ERR_NAME;
  }
  return n == 0 ? SHMBUS_ERR_NAME : 0;
}

/* 1..max bytes of printable ASCII without space (0x21-0x7e). */
static int check_printable(const char *s, size_t max) {
  if (s == NULL) return SHMBUS_ERR_INVAL;
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
    if (*p < 0x21 || *p > 0x7e || n >= max) return SHMBUS_ERR_NAME;
  return n == 0 ? SHMBUS_ERR_NAME : 0;
}

int shmbus__check_service_name(const char *name) {
  return check_printable(name, SHMBUS_SERVICE_NAME_MAX);
}

int shmbus__check_type_name(const char *name) {
  return check_printable(name, SHMBUS_TYPE_NAME_MAX);
}

uint64_t shmbus__hash64(const char *s) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    h ^= *p;
    h *= UINT64_C(0x100000001b3);
  }
  return h;
}

void shmbus__object_name(char *out, const char *domain, uint64_t service_hash, const char *suffix) {
  snprintf(out, SHMBUS__OBJECT_NAME_MAX, "shmbus.%s.%016llx.%s", domain,
           (unsigned long long)service_hash, suffix);
}

void shmbus__publisher_object_name(char *out, const char *domain, uint64_t service_hash,
                                   uint64_t pub_id, int data) {
  char suffix[32];
  snprintf(suffix, sizeof suffix, "p%llx.%c", (unsigned long long)pub_id, data ? 'd' : 'c');
  shmbus__object_name(out, domain, service_hash, suffix);
}

void shmbus__wake_object_name(char *out, const char *domain, uint64_t service_hash, uint32_t slot) {
  char suffix[16];
  snprintf(suffix, sizeof suffix, "e%x", (unsigned)slot);
  shmbus__object_name(out, domain, service_hash, suffix);
}

void shmbus__room_object_name(char *out, const char *domain, uint64_t service_hash, uint64_t pub_id,
                              uint32_t slot) {
  char suffix[40];
  snprintf(suffix, sizeof suffix, "p%llx.r%x", (unsigned long long)pub_id, (unsigned)slot);
  shmbus__object_name(out, domain, service_hash, suffix);
}

void shmbus__node_token_name(char *out, const char *domain, uint64_t node_id) {
  snprintf(out, SHMBUS__OBJECT_NAME_MAX, "shmbus.%s.n.%016llx", domain,
           (unsigned long long)node_id);
}

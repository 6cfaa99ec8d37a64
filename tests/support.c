/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the cmocka tests: see support.h. */
#include "support.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "support_os.h"

/* ---- error codes --------------------------------------------------------- */

void ts__assert_err(int actual, int expected, const char *expr, const char *file, int line) {
  if (actual == expected) return;
  print_error("%s gave %s (%d), expected %s (%d)\n", expr, shmbus_err_name(actual), actual,
              shmbus_err_name(expected), expected);
  _fail(file, line);
}

/* ---- domains ---------------------------------------------------------------- */

void ts_unique_domain(char out[TS_DOMAIN_SIZE]) {
  static unsigned counter;
  snprintf(out, TS_DOMAIN_SIZE, "t%ldx%u", (long)ts_pid(), ++counter);
}

void ts_service_name(char *out, size_t cap, const char *hint) {
  static unsigned counter;
  snprintf(out, cap, "svc-%u-%s", ++counter, hint ? hint : "x");
}

/* ---- the per-test environment ----------------------------------------------- */

static int setup(void **state, int backend) {
  ts_env *env = calloc(1, sizeof *env);
  if (env == NULL) return -1;
  ts_unique_domain(env->domain);
  env->backend = backend;
  if (backend == SHMBUS_BACKEND_DIR) {
    if (ts__tmpdir_new(env->dir_buf, sizeof env->dir_buf) != 0) {
      free(env);
      return -1;
    }
    env->dir = env->dir_buf;
  }
  *state = env;
  return 0;
}

int ts_setup_shm(void **state) { return setup(state, SHMBUS_BACKEND_SHM); }
int ts_setup_dir(void **state) { return setup(state, SHMBUS_BACKEND_DIR); }

int ts_teardown(void **state) {
  ts_env *env = *state;
  int rc = 0;
  if (ts__reap_children() > 0) {
    print_error("teardown: killed children the test left running\n");
    rc = -1;
  }
  if (env == NULL) return rc;
  char names[1024] = "";
  size_t n = ts_leftovers(env->domain, env->dir, names, sizeof names);
  if (n > 0) {
    print_error("teardown: %llu leftover object(s) of domain %s: %s\n", (unsigned long long)n,
                env->domain, names);
    ts_remove_leftovers(env->domain, env->dir);
    rc = -1;
  }
  if (env->dir) ts__tmpdir_delete(env->dir);
  free(env);
  *state = NULL;
  return rc;
}

static shmbus_node *open_node(const ts_env *env, int *err) {
  shmbus_node_opts o = SHMBUS_NODE_OPTS_INIT;
  o.domain = env->domain;
  o.backend = env->backend;
  /* From dir_buf, not dir: a copy of the environment made for a child on
   * Windows has its own dir_buf, while its dir may point at the parent's. */
  o.root = env->backend == SHMBUS_BACKEND_DIR ? env->dir_buf : NULL;
  shmbus_node *node = NULL;
  *err = shmbus_node_open(&o, &node);
  return node;
}

shmbus_node *ts_node(const ts_env *env) {
  int err;
  shmbus_node *node = open_node(env, &err);
  ts_assert_ok(err);
  assert_non_null(node);
  return node;
}

shmbus_node *ts_child_node(const ts_env *env) {
  int err;
  shmbus_node *node = open_node(env, &err);
  if (err != 0 || node == NULL)
    fprintf(stderr, "child %ld: shmbus_node_open: %s\n", (long)ts_pid(), shmbus_err_name(err));
  return node;
}

/* ---- leftovers ------------------------------------------------------------------ */

static int domain_prefix(char *out, size_t cap, const char *domain) {
  int n = snprintf(out, cap, "shmbus.%s.", domain);
  return n > 0 && (size_t)n < cap;
}

/* Calls fn(dir, name, ctx) for every object of the domain; returns the count. */
static size_t for_each_object(const char *domain, const char *dir,
                              void (*fn)(const char *dir, const char *name, void *ctx), void *ctx) {
  char prefix[64];
  if (!domain_prefix(prefix, sizeof prefix, domain)) return 0;
  size_t plen = strlen(prefix), n = 0;
  DIR *d = opendir(dir ? dir : ts__objects_dir());
  if (d == NULL) return 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, prefix, plen) != 0) continue;
    n++;
    if (fn) fn(dir, e->d_name, ctx);
  }
  closedir(d);
  return n;
}

typedef struct name_list {
  char *buf;
  size_t cap;
} name_list;

static void append_name(const char *dir, const char *name, void *ctx) {
  (void)dir;
  name_list *l = ctx;
  size_t used = strlen(l->buf);
  if (used + 1 < l->cap) snprintf(l->buf + used, l->cap - used, "%s%s", used ? " " : "", name);
}

size_t ts_leftovers(const char *domain, const char *dir, char *names, size_t cap) {
  if (names == NULL || cap == 0) return for_each_object(domain, dir, NULL, NULL);
  names[0] = '\0';
  name_list l = {names, cap};
  return for_each_object(domain, dir, append_name, &l);
}

typedef struct token_count {
  const char *domain;
  size_t tokens;
  size_t graves; /* files an unlink renamed until their last unmap (Windows) */
} token_count;

static void count_token(const char *dir, const char *name, void *ctx) {
  (void)dir;
  token_count *t = ctx;
  char prefix[64];
  snprintf(prefix, sizeof prefix, "shmbus.%s.n.", t->domain);
  if (strncmp(name, prefix, strlen(prefix)) == 0) t->tokens++;
  snprintf(prefix, sizeof prefix, "shmbus.%s.x.", t->domain);
  if (strncmp(name, prefix, strlen(prefix)) == 0) t->graves++;
}

size_t ts_tokens(const char *domain, const char *dir) {
  token_count t = {domain, 0, 0};
  for_each_object(domain, dir, count_token, &t);
  return t.tokens;
}

size_t ts_objects(const char *domain, const char *dir) {
  token_count t = {domain, 0, 0};
  size_t all = for_each_object(domain, dir, count_token, &t);
  return all - t.tokens - t.graves;
}

void ts__assert_objects(const ts_env *env, size_t n, const char *file, int line) {
  if (!ts__objects_listable(env->backend)) return;
  size_t have = ts_objects(env->domain, env->dir);
  if (have == n) return;
  print_error("the domain has %llu objects besides tokens, expected %llu\n",
              (unsigned long long)have, (unsigned long long)n);
  _fail(file, line);
}

static void remove_object(const char *dir, const char *name, void *ctx) {
  (void)ctx;
  char path[2048];
  ts_object_path(path, sizeof path, dir, name);
  ts__remove_file(path); /* /dev/shm/<name> is what shm_unlink removes too */
}

void ts_remove_leftovers(const char *domain, const char *dir) {
  for_each_object(domain, dir, remove_object, NULL);
}

void ts__assert_no_leftovers(const char *domain, const char *dir, const char *file, int line) {
  char names[1024] = "";
  size_t n = ts_leftovers(domain, dir, names, sizeof names);
  if (n == 0) return;
  ts_remove_leftovers(domain, dir); /* so that the next test starts clean */
  print_error("%llu leftover object(s) of domain %s in %s: %s\n", (unsigned long long)n, domain,
              dir ? dir : ts__objects_dir(), names);
  _fail(file, line);
}

/* ---- object names ---------------------------------------------------------------- */

uint64_t ts_fnv1a64(const char *s) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    h ^= *p;
    h *= UINT64_C(0x100000001b3);
  }
  return h;
}

void ts_service_object_name(char *out, size_t cap, const char *domain, const char *service) {
  snprintf(out, cap, "shmbus.%s.%016llx.s", domain, (unsigned long long)ts_fnv1a64(service));
}

void ts_object_path(char *out, size_t cap, const char *dir, const char *name) {
  snprintf(out, cap, "%s/%s", dir ? dir : ts__objects_dir(), name);
}

/* ---- temporary directories ------------------------------------------------------- */

char *ts_tmpdir_create(void) {
  char *p = malloc(TS_DIR_MAX);
  assert_non_null(p);
  assert_int_equal(ts__tmpdir_new(p, TS_DIR_MAX), 0);
  return p;
}

void ts_tmpdir_remove(char *path) {
  if (path == NULL) return;
  ts__tmpdir_delete(path);
  free(path);
}

void ts_env_copy(ts_env *dst, const ts_env *src) {
  *dst = *src;
  dst->dir = src->dir != NULL ? dst->dir_buf : NULL;
}

/* ---- aligned memory ------------------------------------------------------------- */

void *ts_aligned_alloc(size_t align, size_t size) {
#ifdef _WIN32
  return _aligned_malloc(size, align); /* no C11 aligned_alloc in msvcrt */
#else
  return aligned_alloc(align, (size + align - 1) / align * align);
#endif
}

void ts_aligned_free(void *p) {
#ifdef _WIN32
  _aligned_free(p);
#else
  free(p);
#endif
}

/* ---- samples ------------------------------------------------------------------- */

static uint64_t mix64(uint64_t v) {
  v += UINT64_C(0x9e3779b97f4a7c15);
  v = (v ^ (v >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  v = (v ^ (v >> 27)) * UINT64_C(0x94d049bb133111eb);
  return v ^ (v >> 31);
}

void ts_sample_fill(ts_sample *s, uint64_t tag, uint64_t seq) {
  s->seq = seq;
  s->tag = tag;
  s->mix1 = mix64(seq ^ (tag << 48));
  s->mix2 = ~mix64(s->mix1 + tag);
}

int ts_sample_valid(const ts_sample *s) {
  ts_sample want;
  ts_sample_fill(&want, s->tag, s->seq);
  return memcmp(&want, s, sizeof want) == 0;
}

shmbus_service_opts ts_opts(void) {
  shmbus_service_opts o = SHMBUS_SERVICE_OPTS_INIT;
  o.type.name = TS_TYPE_NAME;
  o.type.size = sizeof(ts_sample);
  o.type.align = _Alignof(ts_sample);
  return o;
}

/* ---- children ------------------------------------------------------------------ */

void ts__assert_child_ok(ts_child *c, const char *file, int line) {
  pid_t pid = c->pid;
  int code = ts_child_wait(c);
  if (code == 0) return;
  if (code > 128)
    print_error("child %ld died of signal %d (%s)\n", (long)pid, code - 128,
                ts__signal_name(code - 128));
  else
    print_error("child %ld exited with %d\n", (long)pid, code);
  _fail(file, line);
}

int ts_child_send(ts_child *self, uint64_t value) { return ts_send(self->up[1], value); }
int ts_child_recv(ts_child *self, uint64_t *value) { return ts_recv(self->down[0], value); }

/* ---- time -------------------------------------------------------------------------- */

uint64_t ts_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

void ts_backoff(unsigned *round) {
  unsigned r = (*round)++;
  if (r < 64) {
    sched_yield();
    return;
  }
  ts_sleep_ns(r < 256 ? 20 * 1000 : 200 * 1000);
}

void ts_sleep_ns(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ---- scheduling controls ------------------------------------------------------- */

uint64_t ts_sleep_overrun_ns(uint64_t ns) {
  uint64_t t0 = ts_now_ns();
  ts_sleep_ns(ns);
  uint64_t took = ts_now_ns() - t0;
  return took > ns ? took - ns : 0;
}

uint64_t ts_spin_gap_ns(uint64_t ns) {
  uint64_t start = ts_now_ns(), last = start, gap = 0;
  while (last - start < ns) {
    uint64_t now = ts_now_ns();
    if (now - last > gap) gap = now - last;
    last = now;
  }
  return gap;
}

/* ---- CRC32C ---------------------------------------------------------------------- */

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    crc32c_table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++)
      crc32c_table[t][i] =
          (crc32c_table[t - 1][i] >> 8) ^ crc32c_table[0][crc32c_table[t - 1][i] & 0xff];
}

uint32_t ts_crc32c_update(uint32_t crc, const void *data, size_t n) {
  pthread_once(&crc32c_once, crc32c_init);
  const uint8_t *p = data;
  while (n >= 8) {
    uint32_t lo, hi;
    memcpy(&lo, p, 4);
    memcpy(&hi, p + 4, 4);
    lo ^= crc;
    crc = crc32c_table[7][lo & 0xff] ^ crc32c_table[6][(lo >> 8) & 0xff] ^
          crc32c_table[5][(lo >> 16) & 0xff] ^ crc32c_table[4][lo >> 24] ^
          crc32c_table[3][hi & 0xff] ^ crc32c_table[2][(hi >> 8) & 0xff] ^
          crc32c_table[1][(hi >> 16) & 0xff] ^ crc32c_table[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) crc = (crc >> 8) ^ crc32c_table[0][(crc ^ *p++) & 0xff];
  return crc;
}

uint32_t ts_crc32c(const void *data, size_t n) { return ~ts_crc32c_update(~0u, data, n); }

int ts_threads_unavailable(void) {
  const char *v = getenv("SHMBUS_TEST_NO_THREADS");
  return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

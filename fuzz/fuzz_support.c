/* SPDX-License-Identifier: Apache-2.0 */
/* What the harnesses share: see fuzz.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fuzz.h"

#define SHM_DIR "/dev/shm"

/* ---- input ---------------------------------------------------------------- */

static uint64_t take_le(fz_in *in, unsigned bytes) {
  uint64_t v = 0;
  for (unsigned i = 0; i < bytes && in->n > 0; i++, in->p++, in->n--)
    v |= (uint64_t)*in->p << (8 * i);
  return v;
}

uint8_t fz_u8(fz_in *in) { return (uint8_t)take_le(in, 1); }
uint16_t fz_u16(fz_in *in) { return (uint16_t)take_le(in, 2); }
uint32_t fz_u32(fz_in *in) { return (uint32_t)take_le(in, 4); }
uint64_t fz_u64(fz_in *in) { return take_le(in, 8); }

fz_in fz_take_bytes(fz_in *in, size_t n) {
  fz_in part = {in->p, n < in->n ? n : in->n};
  in->p += part.n;
  in->n -= part.n;
  return part;
}

/* ---- failures and statistics ------------------------------------------------- */

void fz_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "\n==shmbus-fuzz== BROKEN PROMISE: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}

enum { MAX_OPS = 96, RESULT_BUCKETS = SHMBUS__ERR_COUNT_ + 1 };
static struct {
  const char *op;
  uint64_t n[RESULT_BUCKETS]; /* [0] OK, [i] error -i, [last] positive */
} stats[MAX_OPS];

void fz_count(const char *op, int result) {
  fz_trace("%-20s -> %s", op, result > 0 ? ">0" : shmbus_err_name(result));
  int b = result > 0 ? RESULT_BUCKETS - 1 : -result;
  if (b < 0 || b >= RESULT_BUCKETS) b = RESULT_BUCKETS - 1;
  for (int i = 0; i < MAX_OPS; i++) {
    if (stats[i].op == NULL) stats[i].op = op;
    if (stats[i].op == op || strcmp(stats[i].op, op) == 0) {
      stats[i].n[b]++;
      return;
    }
  }
}

static void print_stats(void) {
  const char *want = getenv("SHMBUS_FUZZ_STATS");
  if (want == NULL || strcmp(want, "1") != 0) return;
  fprintf(stderr, "==shmbus-fuzz== results by operation (%s):\n", fz_domain);
  for (int i = 0; i < MAX_OPS && stats[i].op; i++) {
    fprintf(stderr, "  %-22s", stats[i].op);
    for (int b = 0; b < RESULT_BUCKETS; b++) {
      if (stats[i].n[b] == 0) continue;
      const char *name = b == RESULT_BUCKETS - 1 ? ">0" : shmbus_err_name(-b);
      fprintf(stderr, " %s=%llu", name, (unsigned long long)stats[i].n[b]);
    }
    fprintf(stderr, "\n");
  }
}

void fz_trace(const char *fmt, ...) {
  static int on = -1;
  if (on < 0) {
    const char *v = getenv("SHMBUS_FUZZ_TRACE");
    on = v != NULL && strcmp(v, "1") == 0;
  }
  if (!on) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "  fz: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
}

static int env_on(const char *name) {
  const char *v = getenv(name);
  return !(v != NULL && strcmp(v, "0") == 0);
}

int fz_timing(void) {
  static int timing = -1;
  if (timing < 0) timing = env_on("SHMBUS_FUZZ_TIMING");
  return timing;
}

int fz_error_checks(void) {
  static int errors = -1;
  if (errors < 0) errors = env_on("SHMBUS_FUZZ_ERRORS");
  return errors;
}

/* ---- virtual time ------------------------------------------------------------ */

/* A sleep advances the clock by at least this much ("sleeps at least ns"):
 * a loop that polls every 20 us until a 2 s deadline runs 400 times, not
 * 100000. */
enum { MIN_SLEEP_NS = 5 * 1000 * 1000, YIELD_NS = 1000 * 1000 };

static uint64_t vclock;

uint64_t fz_vclock_ns(void) { return vclock; }

uint64_t __wrap_shmbus__now_ns(void) { return __real_shmbus__now_ns() + vclock; }

void __wrap_shmbus__sleep_ns(uint64_t ns) { vclock += ns < MIN_SLEEP_NS ? MIN_SLEEP_NS : ns; }

void __wrap_shmbus__yield(void) { vclock += YIELD_NS; }

int __wrap_shmbus__word_wait(shmbus__waitable *w, uint32_t *word, uint32_t expected,
                             int64_t timeout_ns) {
  (void)w;
  if (__atomic_load_n(word, __ATOMIC_ACQUIRE) != expected) return 0;
  /* Nobody else runs in this process: a wait without a limit never ends.
   * The harnesses never ask for one, so the library made it up. */
  if (timeout_ns < 0) fz_fail("the library waits on a shared word without a timeout");
  vclock += (uint64_t)timeout_ns > 1000 ? (uint64_t)timeout_ns : 1000;
  return SHMBUS_ERR_TIMEDOUT;
}

/* ---- mapping calls ---------------------------------------------------------- */

static uint64_t mmap_generation = 1;

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  __atomic_fetch_add(&mmap_generation, 1, __ATOMIC_RELAXED);
  return __real_mmap(addr, len, prot, flags, fd, off);
}

void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  __atomic_fetch_add(&mmap_generation, 1, __ATOMIC_RELAXED);
  return __real_mmap64(addr, len, prot, flags, fd, off);
}

int __wrap_munmap(void *addr, size_t len) {
  __atomic_fetch_add(&mmap_generation, 1, __ATOMIC_RELAXED);
  return __real_munmap(addr, len);
}

/* ---- process ---------------------------------------------------------------- */

shmbus_node *fz_node;
char fz_domain[SHMBUS_DOMAIN_MAX + 1];
static char token_name[SHMBUS__OBJECT_NAME_MAX];

/* Calls fn on every /dev/shm name that starts with `prefix`. */
static int for_each_object(const char *prefix, int (*fn)(const char *name, void *arg), void *arg) {
  DIR *d = opendir(SHM_DIR);
  if (d == NULL) return 0;
  size_t n = strlen(prefix);
  int count = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strncmp(e->d_name, prefix, n) == 0) count += fn(e->d_name, arg);
  closedir(d);
  return count;
}

static int unlink_at_shm(const char *name) {
  char path[sizeof SHM_DIR + SHMBUS__OBJECT_NAME_MAX + 8];
  snprintf(path, sizeof path, SHM_DIR "/%s", name);
  return unlink(path) == 0 || rmdir(path) == 0; /* fuzz_attach plants directories */
}

static int remove_unless_token(const char *name, void *arg) {
  (void)arg;
  if (strcmp(name, token_name) == 0) return 0;
  return unlink_at_shm(name);
}

/* Forced re-reads of /proc/self/maps for addresses in no known range
 * (mappings made behind our wrappers' back: the sanitizers' own). */
static unsigned unknown_rereads;

void fz_begin_iteration(void) {
  unknown_rereads = 0;
  fz_remove_objects();
}

int fz_remove_objects(void) {
  char prefix[SHMBUS__OBJECT_NAME_MAX];
  snprintf(prefix, sizeof prefix, "shmbus.%s.", fz_domain);
  return for_each_object(prefix, remove_unless_token, NULL);
}

/* "shmbus.fz-<tag>-<pid>.<rest>" of a fuzzer process that is gone. */
static int remove_if_stale(const char *name, void *arg) {
  (void)arg;
  const char *domain = name + strlen("shmbus.");
  const char *dot = strchr(domain, '.');
  if (dot == NULL) return 0;
  const char *dash = NULL;
  for (const char *p = domain; p < dot; p++)
    if (*p == '-') dash = p;
  if (dash == NULL || dash + 1 == dot) return 0;
  char *end;
  long pid = strtol(dash + 1, &end, 10);
  if (end != dot || pid <= 0) return 0;
  if (pid != (long)getpid() && (kill((pid_t)pid, 0) == 0 || errno != ESRCH)) return 0;
  return unlink_at_shm(name);
}

static void at_exit(void) {
  print_stats();
  if (fz_node == NULL) return;
  fz_hook_stop();
  fz_remove_objects();
  shmbus_node_close(fz_node); /* its token goes with it */
  fz_node = NULL;
  fz_remove_objects();
}

void fz_init(const char *tag) {
  if (fz_node != NULL) return;
  snprintf(fz_domain, sizeof fz_domain, "fz-%s-%ld", tag, (long)getpid());
  for_each_object("shmbus.fz-", remove_if_stale, NULL);
  shmbus_node_opts o = SHMBUS_NODE_OPTS_INIT;
  o.domain = fz_domain;
  int r = shmbus_node_open(&o, &fz_node);
  if (r) fz_fail("shmbus_node_open(%s): %s", fz_domain, shmbus_strerror(r));
  shmbus__node_token_name(token_name, fz_domain, shmbus_node_id(fz_node));
  atexit(at_exit);
}

/* ---- our own mappings ---------------------------------------------------------- */

static int open_shm(const char *name, int flags, mode_t mode) {
  char path[sizeof SHM_DIR + SHMBUS__OBJECT_NAME_MAX + 8];
  snprintf(path, sizeof path, SHM_DIR "/%s", name);
  return open(path, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, mode);
}

int fz_map_open(fz_map *m, const char *name) {
  memset(m, 0, sizeof *m);
  m->fd = -1;
  int fd = open_shm(name, O_RDWR, 0);
  if (fd < 0) return -1;
  struct stat st;
  void *p = MAP_FAILED;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
    p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    close(fd);
    return -1;
  }
  m->base = p;
  m->size = (uint64_t)st.st_size;
  m->fd = fd;
  return 0;
}

void fz_map_close(fz_map *m) {
  if (m->base != NULL) munmap(m->base, (size_t)m->size);
  if (m->base != NULL && m->fd >= 0) close(m->fd);
  memset(m, 0, sizeof *m);
  m->fd = -1;
}

/* Truncations by the hook (fuzz_double_fetch): our own mappings may reach
 * past their object's end, so every write checks the object first. */
static unsigned truncations;

static int in_file(const fz_map *m, uint64_t off, unsigned size) {
  if (m->base == NULL || off > m->size || size > m->size - off) return 0;
  if (truncations == 0 || m->fd < 0) return 1;
  struct stat st;
  return fstat(m->fd, &st) == 0 && (uint64_t)st.st_size >= off + size;
}

uint64_t fz_get(const fz_map *m, uint64_t off, unsigned size) {
  if (!in_file(m, off, size)) return 0;
  uint64_t v = 0;
  memcpy(&v, m->base + off, size);
  return v;
}

void fz_put(const fz_map *m, uint64_t off, unsigned size, uint64_t v) {
  if (!in_file(m, off, size)) return;
  memcpy(m->base + off, &v, size); /* little-endian */
}

int fz_object_write(const char *name, const void *data, size_t len) {
  int fd = open_shm(name, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return -1;
  const uint8_t *p = data;
  size_t done = 0;
  while (done < len) {
    ssize_t w = write(fd, p + done, len - done);
    if (w <= 0) break;
    done += (size_t)w;
  }
  close(fd);
  return done == len ? 0 : -1;
}

/* ---- /proc/self/maps ------------------------------------------------------------- */

enum { MAX_OURS = 512 };
static fz_range ours[MAX_OURS];
static int n_ours;
static int unresolved;           /* the last read saw a segment not named yet */
static uint64_t maps_generation; /* mmap_generation when last read */
static char maps_text[1 << 21];

static uint64_t parse_hex(const char **s) {
  uint64_t v = 0;
  for (;; (*s)++) {
    char c = **s;
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return v;
    v = v << 4 | (uint64_t)d;
  }
}

static uint64_t parse_dec(const char **s) {
  uint64_t v = 0;
  for (; **s >= '0' && **s <= '9'; (*s)++) v = v * 10 + (uint64_t)(**s - '0');
  return v;
}

/* The name under which our domain's object `ino` is linked in /dev/shm,
 * remembered (names are never reused with another inode while mapped). */
static struct {
  uint64_t dev, ino;
  char name[SHMBUS__OBJECT_NAME_MAX];
} inode_names[64];
static unsigned inode_next;

static const char *name_of_inode(uint64_t dev, uint64_t ino) {
  for (unsigned i = 0; i < sizeof inode_names / sizeof inode_names[0]; i++)
    if (inode_names[i].ino == ino && inode_names[i].dev == dev && inode_names[i].name[0])
      return inode_names[i].name;
  char prefix[SHMBUS__OBJECT_NAME_MAX];
  snprintf(prefix, sizeof prefix, "shmbus.%s.", fz_domain);
  size_t n = strlen(prefix);
  DIR *d = opendir(SHM_DIR);
  if (d == NULL) return NULL;
  const char *found = NULL;
  struct dirent *e;
  while (found == NULL && (e = readdir(d)) != NULL) {
    struct stat st;
    if (strncmp(e->d_name, prefix, n) != 0 || (uint64_t)e->d_ino != ino ||
        fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        ((uint64_t)major(st.st_dev) << 32 | minor(st.st_dev)) != dev)
      continue;
    unsigned slot = inode_next++ % (sizeof inode_names / sizeof inode_names[0]);
    inode_names[slot].dev = dev;
    inode_names[slot].ino = ino;
    snprintf(inode_names[slot].name, sizeof inode_names[slot].name, "%s", e->d_name);
    found = inode_names[slot].name;
  }
  closedir(d);
  return found;
}

/* Parses one line "start-end perms offset major:minor inode path". */
static void parse_range(const char *s, fz_range *g) {
  memset(g, 0, sizeof *g);
  g->start = (uintptr_t)parse_hex(&s);
  s++; /* - */
  g->end = (uintptr_t)parse_hex(&s);
  s++;
  memcpy(g->perms, s, 4);
  s += 5;
  g->offset = parse_hex(&s);
  s++;
  uint64_t major = parse_hex(&s);
  s++;
  g->dev = major << 32 | parse_hex(&s);
  s++;
  g->ino = parse_dec(&s);
}

/* Reads the mappings of our domain's objects: only the lines of /dev/shm
 * files are parsed (what the sanitizers map is no business of ours). */
static void read_maps(void) {
  maps_generation = __atomic_load_n(&mmap_generation, __ATOMIC_RELAXED);
  n_ours = 0;
  unresolved = 0;
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  size_t len = 0;
  ssize_t r;
  while (len < sizeof maps_text - 1 &&
         (r = read(fd, maps_text + len, sizeof maps_text - 1 - len)) > 0)
    len += (size_t)r;
  close(fd);
  maps_text[len] = '\0';
  char prefix[64 + SHMBUS_DOMAIN_MAX];
  int prefix_len = snprintf(prefix, sizeof prefix, SHM_DIR "/shmbus.%s.", fz_domain);
  static const char deleted[] = " (deleted)";
  for (const char *at = maps_text; (at = strstr(at, SHM_DIR "/")) != NULL;) {
    const char *line = at;
    while (line > maps_text && line[-1] != '\n') line--;
    const char *eol = strchr(at, '\n');
    if (eol == NULL) eol = at + strlen(at);
    fz_range g;
    parse_range(line, &g);
    size_t path_len = (size_t)(eol - at);
    /* A segment its creator made unnamed (O_TMPFILE) and named afterwards
     * keeps its first name in the maps: "/dev/shm/#<ino> (deleted)". */
    if (path_len > sizeof SHM_DIR + 1 && at[sizeof SHM_DIR] == '#') {
      const char *named = name_of_inode(g.dev, g.ino);
      if (named == NULL) {
        unresolved = 1; /* not named yet: look again at a miss */
      } else if (n_ours < MAX_OURS) {
        snprintf(g.name, sizeof g.name, "%s", named);
        ours[n_ours++] = g;
      }
    } else if (path_len > (size_t)prefix_len && strncmp(at, prefix, (size_t)prefix_len) == 0) {
      const char *name = at + strlen(SHM_DIR "/");
      size_t n = (size_t)(eol - name);
      if (n > sizeof deleted - 1 &&
          memcmp(eol - (sizeof deleted - 1), deleted, sizeof deleted - 1) == 0) {
        g.deleted = 1;
        n -= sizeof deleted - 1;
      }
      if (n < sizeof g.name && n_ours < MAX_OURS) {
        memcpy(g.name, name, n);
        ours[n_ours++] = g;
      }
    }
    at = eol;
  }
}

/* An address in none of our ranges is not ours, unless the last read saw
 * one of our segments before its creator named it: then read again, a
 * bounded number of times per iteration. */
int fz_maps_find(const void *addr, fz_range *out) {
  uintptr_t a = (uintptr_t)addr;
  for (int attempt = 0; attempt < 2; attempt++) {
    if (maps_generation != __atomic_load_n(&mmap_generation, __ATOMIC_RELAXED)) read_maps();
    for (int i = 0; i < n_ours; i++) {
      if (a >= ours[i].start && a < ours[i].end) {
        *out = ours[i];
        /* Neighbouring ranges of the same object (mprotect splits one
         * mapping): report the whole contiguous extent. */
        for (int j = i + 1; j < n_ours && ours[j].start == out->end && ours[j].ino == out->ino &&
                            ours[j].offset == out->offset + (out->end - out->start);
             j++)
          out->end = ours[j].end;
        for (int j = i - 1; j >= 0 && ours[j].end == out->start && ours[j].ino == out->ino &&
                            ours[j].offset + (ours[j].end - ours[j].start) == out->offset;
             j--) {
          out->offset = ours[j].offset;
          out->start = ours[j].start;
        }
        /* perms stay those of the range holding addr */
        return 1;
      }
    }
    if (!unresolved || unknown_rereads++ > 64) return 0;
    maps_generation = 0; /* read again */
  }
  return 0;
}

/* ---- the double-fetch hook ---------------------------------------------------------- */

typedef struct own_map {
  uint64_t dev, ino;
  uint8_t *base;
  uint64_t size;
  int fd;
} own_map;

enum { MAX_OWN = 32 };
static struct {
  int on;
  fz_in in;
  unsigned rewrites;
  int truncate;
  unsigned truncated; /* this iteration */
  own_map own[MAX_OWN];
  int n_own;
} hook;

/* Our read-write mapping of the object behind range r. */
static own_map *own_of(const fz_range *r) {
  for (int i = 0; i < hook.n_own; i++)
    if (hook.own[i].ino == r->ino && hook.own[i].dev == r->dev) return &hook.own[i];
  if (hook.n_own == MAX_OWN) return NULL;
  int fd = -1;
  struct stat st;
  if (!r->deleted) {
    fd = open_shm(r->name, O_RDWR, 0);
    if (fd >= 0 && (fstat(fd, &st) != 0 || st.st_ino != r->ino)) {
      close(fd);
      fd = -1;
    }
  }
  if (fd < 0) {
    /* Unlinked (or replaced): through the mapping itself. */
    char path[96];
    snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)r->start,
             (unsigned long)r->end);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0 && (fstat(fd, &st) != 0 || st.st_ino != r->ino)) {
      close(fd);
      fd = -1;
    }
  }
  if (fd < 0) return NULL;
  void *p = st.st_size > 0
                ? mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                : MAP_FAILED;
  if (p == MAP_FAILED) {
    close(fd);
    return NULL;
  }
  own_map *o = &hook.own[hook.n_own++];
  o->dev = r->dev;
  o->ino = r->ino;
  o->base = p;
  o->size = (uint64_t)st.st_size;
  o->fd = fd;
  return o;
}

unsigned fz_hook_truncated(void) { return hook.on ? hook.truncated : 0; }

void fz_hook_start(fz_in stream) {
  fz_hook_stop();
  hook.in = stream;
  hook.rewrites = 0;
  hook.truncated = 0;
  hook.truncate = env_on("SHMBUS_FUZZ_TRUNCATE");
  hook.on = 1;
}

unsigned fz_hook_stop(void) {
  hook.on = 0;
  for (int i = 0; i < hook.n_own; i++) {
    munmap(hook.own[i].base, (size_t)hook.own[i].size);
    close(hook.own[i].fd);
  }
  hook.n_own = 0;
  return hook.rewrites;
}

/* Reads `size` bytes of an input byte stream as one step of the hook:
 * below 0x80 nothing changes (so zeros are a quiet stream); above, one of
 * the rewrites a hostile peer makes. */
void shmbus__fuzz_access(const void *addr, unsigned size) {
  if (!hook.on || hook.in.n == 0 || (size != 4 && size != 8)) return;
  fz_range r;
  if (!fz_maps_find(addr, &r)) return;
  uint8_t b = fz_u8(&hook.in);
  if (b < 0x80) return;
  own_map *o = own_of(&r);
  if (o == NULL) return;
  uint64_t off = (uint64_t)((uintptr_t)addr - r.start) + r.offset;
  fz_map m = {o->base, o->size, o->fd};
  if (!in_file(&m, off, size)) return;
  uint64_t mask = size == 8 ? UINT64_MAX : UINT32_MAX;
  uint64_t v = fz_get(&m, off, size), arg;
  switch ((b - 0x80) % 13) {
  case 0: v = 0; break;
  case 1: v += 1; break;
  case 2: v -= 1; break;
  case 3: v = UINT64_MAX; break;
  case 4: v ^= UINT64_C(1) << (fz_u8(&hook.in) % (8 * size)); break;
  case 5: v = fz_u64(&hook.in); break;
  case 6: v += fz_u8(&hook.in); break;
  case 7: v -= fz_u8(&hook.in); break;
  case 8: v = fz_u8(&hook.in); break;
  case 9: v ^= UINT64_C(1) << (8 * size - 1); break;
  case 10:
    arg = fz_u8(&hook.in);
    if (hook.truncate) {
      /* Cut the object at the page holding the word (or at 0). */
      long page = sysconf(_SC_PAGESIZE);
      uint64_t at = arg & 1 ? off & ~(uint64_t)(page - 1) : 0;
      if (ftruncate(o->fd, (off_t)at) == 0) {
        truncations++;
        hook.truncated++;
        fz_trace("hook: truncated %s to %llu bytes", r.name, (unsigned long long)at);
      }
      hook.rewrites++;
      return;
    }
    break;
  case 11: v = FZ_PORT_ID_BASE + fz_u8(&hook.in) % 8; break;
  case 12: v = fz_ready_word(FZ_PORT_ID_BASE + fz_u8(&hook.in) % 8); break;
  }
  fz_put(&m, off, size, v & mask);
  hook.rewrites++;
}

/* ---- services -------------------------------------------------------------------- */

#define SVC_OFF(member) ((uint64_t)offsetof(shmbus__service_seg, member))

void fz_publisher_object(const fz_service *s, uint64_t id, int data,
                         char out[SHMBUS__OBJECT_NAME_MAX]) {
  shmbus__publisher_object_name(out, fz_domain, s->hash, id, data);
}

int fz_service_prepare(fz_service *s, const char *name, const shmbus_service_opts *opts) {
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", name);
  s->hash = shmbus__hash64(s->name);
  shmbus__object_name(s->object, fz_domain, s->hash, "s"); /* service.c's suffix */
  s->opts = *opts;
  fz_remove_objects();
  shmbus_subscriber *sub;
  int r = shmbus_subscriber_open(fz_node, s->name, opts, &sub);
  if (r) {
    fprintf(stderr, "fz_service_prepare(%s): %s\n", name, shmbus_strerror(r));
    return -1;
  }
  fz_map m;
  if (fz_map_open(&m, s->object) == 0) {
    s->image = malloc((size_t)m.size);
    if (s->image) memcpy(s->image, m.base, (size_t)m.size);
    s->image_len = (size_t)m.size;
    fz_map_close(&m);
  }
  shmbus_subscriber_close(sub);
  fz_remove_objects();
  if (s->image == NULL || s->image_len < sizeof(shmbus__service_seg)) return -1;
  memcpy(&s->cfg, s->image + SVC_OFF(cfg), sizeof s->cfg);
  if (shmbus__layout_compute(&s->cfg, &s->layout) != 0) return -1;
  fz_map img = {s->image, s->image_len, -1};
  for (int kind = SHMBUS__PUBLISHER; kind <= SHMBUS__SUBSCRIBER; kind++) {
    uint32_t count = kind == SHMBUS__PUBLISHER ? s->cfg.max_publishers : s->cfg.max_subscribers;
    for (uint32_t i = 0; i < count; i++) {
      uint64_t off = FZ_SLOT_OFFSET(&s->layout, &s->cfg, kind, i);
      if (off + sizeof(shmbus__port_slot) <= s->image_len)
        memset(s->image + off, 0, sizeof(shmbus__port_slot));
    }
  }
  fz_put(&img, SVC_OFF(dyn.users), 8, 0);
  fz_put(&img, SVC_OFF(dyn.next_port_id), 8, FZ_PORT_ID_BASE);
  return 0;
}

int fz_service_write(const fz_service *s) {
  return fz_object_write(s->object, s->image, s->image_len);
}

int fz_find_slot(const fz_service *s, const fz_map *svc, int kind, uint64_t id) {
  uint32_t count = kind == SHMBUS__PUBLISHER ? s->cfg.max_publishers : s->cfg.max_subscribers;
  for (uint32_t i = 0; i < count; i++) {
    uint64_t off = FZ_SLOT_OFFSET(&s->layout, &s->cfg, kind, i) + offsetof(shmbus__port_slot, word);
    if (shmbus__slot_ready_id(fz_get(svc, off, 8)) == id) return (int)i;
  }
  return -1;
}

/* ---- checks ---------------------------------------------------------------------- */

uint32_t fz_check_payload(const fz_service *s, const void *payload, size_t bytes, int readonly,
                          uint64_t *ino, const char *what) {
  const shmbus__layout *l = &s->layout;
  fz_range r;
  FZ_ASSERT(payload != NULL, "%s: NULL payload", what);
  FZ_ASSERT(fz_maps_find(payload, &r), "%s: payload %p lies in no mapping of a shmbus object", what,
            payload);
  size_t n = strlen(r.name);
  FZ_ASSERT(n > 2 && strcmp(r.name + n - 2, ".d") == 0,
            "%s: payload %p lies in %s, not in a data segment", what, payload, r.name);
  FZ_ASSERT(!readonly || r.perms[1] == '-', "%s: a subscriber's payload %p is mapped %s", what,
            payload, r.perms);
  uint64_t off = (uint64_t)((uintptr_t)payload - r.start) + r.offset;
  uint64_t first = l->chunks_offset + l->payload_offset;
  FZ_ASSERT(off >= first && (off - first) % l->chunk_stride == 0,
            "%s: payload at offset %llu of %s is not a chunk's payload", what,
            (unsigned long long)off, r.name);
  uint64_t c = (off - first) / l->chunk_stride;
  FZ_ASSERT(c < l->chunks, "%s: chunk %llu of %u", what, (unsigned long long)c, l->chunks);
  FZ_ASSERT(bytes <= l->max_payload, "%s: %zu bytes, the service allows %llu", what, bytes,
            (unsigned long long)l->max_payload);
  uint64_t mapped_end = (uint64_t)(r.end - r.start) + r.offset;
  FZ_ASSERT(off + bytes <= mapped_end && off + bytes <= l->data_size,
            "%s: payload [%llu, +%zu) runs past the mapping (%llu)", what, (unsigned long long)off,
            bytes, (unsigned long long)mapped_end);
  if (bytes > 0) {
    /* Touch it, as an application would. */
    volatile const uint8_t *p = payload;
    (void)p[0];
    (void)p[bytes - 1];
  }
  if (ino) *ino = r.ino;
  return (uint32_t)c;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the libFuzzer harnesses share (fuzz_support.c, fuzz_ports.c).
 *
 * Every harness runs the real library in-process, in a domain of its own
 * ("fz-<tag>-<pid>", default backend: POSIX shared memory), and writes
 * shared words only through its OWN read-write mappings of the objects
 * (fz_map), never through the library's pointers: ports map most of what
 * they see read-only. Offsets come from the layout accessors of
 * src/service.h and the structs of src/layout.h, never from literals.
 *
 * Time is virtual (fuzz/CMakeLists.txt links with --wrap): the library's
 * sleeps, yields and timed waits advance a clock instead of sleeping, so
 * bounded waits cost nothing and a hot-path call that sleeps shows up as
 * virtual time (fz_vclock_ns).
 *
 * Environment:
 *   SHMBUS_FUZZ_TIMING=0    no checks that hot-path calls never sleep and
 *                           that timed calls keep their timeouts
 *   SHMBUS_FUZZ_ERRORS=0    no checks that calls return only the error codes
 *                           they document (to look past such a finding)
 *   SHMBUS_FUZZ_STATS=1     print, at exit, how often each operation
 *                           returned each result (the validation branches
 *                           reached, by error code)
 *   SHMBUS_FUZZ_TRUNCATE=0  fuzz_double_fetch does not truncate segments at
 *                           the library's reads (SIGBUS survival; on by
 *                           default)
 *   SHMBUS_FUZZ_TRACE=1     print every operation and its result
 *   SHMBUS_FUZZ_WRITE_SEEDS=DIR  write the harness's seed inputs into DIR
 *                           and exit (scripts/fuzz.sh --regen-corpus)
 */
#ifndef SHMBUS_FUZZ_H
#define SHMBUS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ring.h"
#include "service.h"

/* libFuzzer's entry points. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The layout accessors, in one place: the layout is being changed. */
#if SHMBUS__LAYOUT_VERSION >= 3
#define FZ_SLOT_OFFSET(l, cfg, kind, i) shmbus__layout_slot_offset((l), (cfg), (kind), (i))
#define FZ_PAGE(l) ((l)->page)
#else /* before the page-aligned layout (commit ed298e3 and older) */
#define FZ_SLOT_OFFSET(l, cfg, kind, i) shmbus__layout_slot_offset((cfg), (kind), (i))
#define FZ_PAGE(l) ((void)(l), UINT64_C(4096))
#endif
#define FZ_CONN_OFFSET(l, k) shmbus__layout_conn_offset((l), (k))
#define FZ_WAIT_OFFSET(l, k) shmbus__layout_wait_offset((l), (k))
#define FZ_CHUNK_OFFSET(l, c) shmbus__layout_chunk_offset((l), (c))

/* A slot word that says "port `id` is ready" (service.h, shmbus__port_slot;
 * the inverse of shmbus__slot_ready_id). */
static inline uint64_t fz_ready_word(uint64_t id) { return (id << 1) | 1u; }

/* The first port id of every service a harness writes (fz_service_write):
 * ports get BASE, BASE + 1, ... in the order they open, in every run. */
#define FZ_PORT_ID_BASE UINT64_C(0x100)

/* ---- input ------------------------------------------------------------- */

typedef struct fz_in {
  const uint8_t *p;
  size_t n;
} fz_in;

/* Little-endian; 0 once the input is exhausted. */
uint8_t fz_u8(fz_in *in);
uint16_t fz_u16(fz_in *in);
uint32_t fz_u32(fz_in *in);
uint64_t fz_u64(fz_in *in);
/* Splits off the next `n` bytes (fewer at the end) as an input of its own. */
fz_in fz_take_bytes(fz_in *in, size_t n);

/* ---- process ----------------------------------------------------------- */

extern shmbus_node *fz_node;
extern char fz_domain[SHMBUS_DOMAIN_MAX + 1];

/* Opens the harness's node in domain "fz-<tag>-<pid>" after removing what
 * dead fuzzer processes left in /dev/shm; registers the cleanup at exit.
 * Idempotent. */
void fz_init(const char *tag);

/* Unlinks every object of our domain but our node's token. Returns how
 * many there were. */
int fz_remove_objects(void);
/* Starts an iteration: removes what the last one left, resets budgets. */
void fz_begin_iteration(void);

/* Reports a broken promise of the library and aborts (libFuzzer saves the
 * input as a crash). */
void fz_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
#define FZ_ASSERT(cond, ...)           \
  do {                                 \
    if (!(cond)) fz_fail(__VA_ARGS__); \
  } while (0)

/* Counts that operation `op` (a static string) returned `result`. */
void fz_count(const char *op, int result);

/* With SHMBUS_FUZZ_TRACE=1, prints what an iteration does (to read a
 * crashing input: run the harness on it alone). */
void fz_trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Whether the timing checks are on (SHMBUS_FUZZ_TIMING), and the checks
 * of error codes against the documented ones (SHMBUS_FUZZ_ERRORS). */
int fz_timing(void);
int fz_error_checks(void);

/* ---- virtual time ------------------------------------------------------ */

/* Nanoseconds the library has slept so far (virtually). */
uint64_t fz_vclock_ns(void);

/* The wrapped platform functions (platform.h) and the originals. */
uint64_t __real_shmbus__now_ns(void);
uint64_t __wrap_shmbus__now_ns(void);
void __real_shmbus__sleep_ns(uint64_t ns);
void __wrap_shmbus__sleep_ns(uint64_t ns);
void __real_shmbus__yield(void);
void __wrap_shmbus__yield(void);
int __real_shmbus__word_wait(shmbus__waitable *w, uint32_t *word, uint32_t expected,
                             int64_t timeout_ns);
int __wrap_shmbus__word_wait(shmbus__waitable *w, uint32_t *word, uint32_t expected,
                             int64_t timeout_ns);

/* The mapping calls, wrapped only to count them: a change tells the maps
 * cache below to read /proc/self/maps again. */
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
/* With _FILE_OFFSET_BITS=64 (CMakeLists.txt) glibc's headers turn mmap
 * into mmap64, so the library calls that symbol: both are wrapped. */
void *__real_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_munmap(void *addr, size_t len);
int __wrap_munmap(void *addr, size_t len);

/* ---- our own mappings and objects ----------------------------------------- */

typedef struct fz_map {
  uint8_t *base;
  uint64_t size;
  int fd; /* kept open (-1: memory of our own, not an object) */
} fz_map;

/* Maps object `name` of the backend read-write (our own mapping). 0 or -1. */
int fz_map_open(fz_map *m, const char *name);
void fz_map_close(fz_map *m);
/* Reads / writes a 1, 2, 4 or 8 byte word at `off` (ignored out of range). */
uint64_t fz_get(const fz_map *m, uint64_t off, unsigned size);
void fz_put(const fz_map *m, uint64_t off, unsigned size, uint64_t v);

/* Creates object `name` exclusively with exactly these bytes. 0 or -1. */
int fz_object_write(const char *name, const void *data, size_t len);

/* ---- the process's mappings (/proc/self/maps) ------------------------------ */

typedef struct fz_range {
  uintptr_t start, end;
  uint64_t offset; /* file offset of start */
  uint64_t dev, ino;
  char perms[5];
  int deleted;                        /* its name was unlinked */
  char name[SHMBUS__OBJECT_NAME_MAX]; /* object name (under /dev/shm) */
} fz_range;

/* 1 and *out when `addr` lies in a mapping of one of our domain's objects. */
int fz_maps_find(const void *addr, fz_range *out);

/* ---- the double-fetch hook (atomic.h, SHMBUS_FUZZ_HOOKS) -------------------- */

/* From now on, every load, compare-and-swap or fetch-add of the library on
 * a word of our domain's mappings first takes one byte of `stream` and may
 * rewrite the word (through our own mapping) as that byte says. */
void fz_hook_start(fz_in stream);
/* Stops and drops the hook's own mappings. Returns the rewrites made. */
unsigned fz_hook_stop(void);
/* How many segments the hook truncated in this iteration (SHMBUS_FUZZ_TRUNCATE). */
unsigned fz_hook_truncated(void);

/* ---- services ------------------------------------------------------------ */

typedef struct fz_service {
  char name[64];
  char object[SHMBUS__OBJECT_NAME_MAX];
  uint64_t hash;
  shmbus_service_opts opts;
  shmbus__service_config cfg; /* as the library wrote it */
  shmbus__layout layout;      /* computed from cfg        */
  uint8_t *image;             /* the segment as created, slots free, users 0 */
  size_t image_len;
} fz_service;

/* Has the library create service `name` with `opts` once, and keeps its
 * segment as an image: every registry slot free, no user, next_port_id =
 * FZ_PORT_ID_BASE. 0 or -1. */
int fz_service_prepare(fz_service *s, const char *name, const shmbus_service_opts *opts);
/* Writes the image as the service's object (it must not exist). */
int fz_service_write(const fz_service *s);
/* The object names of publisher `id`'s data (data = 1) or control segment. */
void fz_publisher_object(const fz_service *s, uint64_t id, int data,
                         char out[SHMBUS__OBJECT_NAME_MAX]);
/* The registry slot of kind `kind` whose ready word names `id`, or -1. */
int fz_find_slot(const fz_service *s, const fz_map *svc, int kind, uint64_t id);

/* ---- checks ------------------------------------------------------------- */

/* A sample or a loan must be a payload of a chunk of a data segment of our
 * domain, mapped here: returns the chunk index (and its data object's
 * inode in *ino when not NULL); fails otherwise. `readonly` demands a
 * read-only mapping (subscribers). */
uint32_t fz_check_payload(const fz_service *s, const void *payload, size_t bytes, int readonly,
                          uint64_t *ino, const char *what);

#endif /* SHMBUS_FUZZ_H */

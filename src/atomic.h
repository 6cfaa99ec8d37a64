/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The handful of atomic operations the core needs, on 32- and 64-bit words
 * that live in shared memory as plain uint32_t / uint64_t (fixed-width types
 * keep one layout for 32- and 64-bit processes).
 *
 * Two backends, chosen at configure time:
 *   SHMBUS_ATOMICS_C11          <stdatomic.h> (default with GCC and Clang)
 *   SHMBUS_ATOMICS_LIBATOMIC_OPS libatomic_ops (compilers without C11
 *                               atomics, e.g. MSVC in C mode)
 *
 * Orders: _relaxed, _acquire (loads), _release (stores), _acq_rel
 * (read-modify-write). Every caller names, in a comment, the operation its
 * acquire or release pairs with.
 */
#ifndef SHMBUS_ATOMIC_H
#define SHMBUS_ATOMIC_H

#include <stdint.h>

/* Fuzzing hook (fuzz/, builds with SHMBUS_FUZZ_HOOKS only): every load,
 * compare-and-swap and fetch-add first reports the address and width of the
 * word it is about to touch, so that a harness may change a shared word
 * between two of the library's reads (double fetches). The harness defines
 * the function and decides which addresses are shared memory; stores and
 * fences are not reported. Without SHMBUS_FUZZ_HOOKS it compiles to
 * nothing. */
#if defined(SHMBUS_FUZZ_HOOKS)
void shmbus__fuzz_access(const void *addr, unsigned size);
#define SHMBUS__FUZZ_ACCESS(p, size) shmbus__fuzz_access((const void *)(p), (size))
#else
#define SHMBUS__FUZZ_ACCESS(p, size) ((void)0)
#endif

#if defined(SHMBUS_ATOMICS_LIBATOMIC_OPS)

#include <atomic_ops.h>

/* Every shared word is a plain 32- or 64-bit word that other processes
 * change concurrently: each operation must be one lock-free instruction
 * sequence (a lock would be this process's alone). libatomic_ops gives
 * 64-bit words only where AO_t is 64 bits: 32-bit targets use the C11
 * backend, whose check is below. */
_Static_assert(sizeof(AO_t) == 8,
               "the libatomic_ops backend needs a 64-bit AO_t: on a 32-bit "
               "target configure with -DSHMBUS_ATOMICS=c11");
_Static_assert(sizeof(unsigned) == 4, "the libatomic_ops backend needs a 32-bit unsigned");
#if !defined(AO_HAVE_fetch_compare_and_swap_full) || !defined(AO_HAVE_fetch_and_add_full) || \
    !defined(AO_HAVE_load_acquire) || !defined(AO_HAVE_store_release) ||                     \
    !defined(AO_HAVE_int_fetch_compare_and_swap_full) || !defined(AO_HAVE_int_fetch_and_add_full)
#error \
    "libatomic_ops has no native compare-and-swap or fetch-and-add here: use -DSHMBUS_ATOMICS=c11"
#endif

#define SHMBUS__A64(p) ((volatile AO_t *)(void *)(p))
#define SHMBUS__A32(p) ((volatile unsigned *)(void *)(p))

static inline uint64_t shmbus__load64_relaxed(const uint64_t *p) {
  SHMBUS__FUZZ_ACCESS(p, 8);
  return (uint64_t)AO_load(SHMBUS__A64(p));
}
static inline uint64_t shmbus__load64_acquire(const uint64_t *p) {
  SHMBUS__FUZZ_ACCESS(p, 8);
  return (uint64_t)AO_load_acquire(SHMBUS__A64(p));
}
static inline void shmbus__store64_relaxed(uint64_t *p, uint64_t v) {
  AO_store(SHMBUS__A64(p), (AO_t)v);
}
static inline void shmbus__store64_release(uint64_t *p, uint64_t v) {
  AO_store_release(SHMBUS__A64(p), (AO_t)v);
}
static inline uint64_t shmbus__fetch_add64(uint64_t *p, uint64_t v) {
  SHMBUS__FUZZ_ACCESS(p, 8);
  return (uint64_t)AO_fetch_and_add_full(SHMBUS__A64(p), (AO_t)v);
}
/* Strong compare-and-swap; on failure *expected receives the current value. */
static inline int shmbus__cas64(uint64_t *p, uint64_t *expected, uint64_t desired) {
  SHMBUS__FUZZ_ACCESS(p, 8);
  AO_t seen = AO_fetch_compare_and_swap_full(SHMBUS__A64(p), (AO_t)*expected, (AO_t)desired);
  if (seen == (AO_t)*expected) return 1;
  *expected = (uint64_t)seen;
  return 0;
}
static inline uint32_t shmbus__load32_relaxed(const uint32_t *p) {
  SHMBUS__FUZZ_ACCESS(p, 4);
  return (uint32_t)AO_int_load(SHMBUS__A32(p));
}
static inline uint32_t shmbus__load32_acquire(const uint32_t *p) {
  SHMBUS__FUZZ_ACCESS(p, 4);
  return (uint32_t)AO_int_load_acquire(SHMBUS__A32(p));
}
static inline void shmbus__store32_relaxed(uint32_t *p, uint32_t v) {
  AO_int_store(SHMBUS__A32(p), v);
}
static inline void shmbus__store32_release(uint32_t *p, uint32_t v) {
  AO_int_store_release(SHMBUS__A32(p), v);
}
static inline uint32_t shmbus__fetch_add32(uint32_t *p, uint32_t v) {
  SHMBUS__FUZZ_ACCESS(p, 4);
  return (uint32_t)AO_int_fetch_and_add_full(SHMBUS__A32(p), v);
}
static inline int shmbus__cas32(uint32_t *p, uint32_t *expected, uint32_t desired) {
  SHMBUS__FUZZ_ACCESS(p, 4);
  unsigned seen = AO_int_fetch_compare_and_swap_full(SHMBUS__A32(p), *expected, desired);
  if (seen == *expected) return 1;
  *expected = seen;
  return 0;
}
static inline void shmbus__fence_seq_cst(void) { AO_nop_full(); }

#else /* C11 */

#include <stdatomic.h>

_Static_assert(sizeof(_Atomic uint64_t) == sizeof(uint64_t),
               "atomic 64-bit words must be plain words");
_Static_assert(sizeof(_Atomic uint32_t) == sizeof(uint32_t),
               "atomic 32-bit words must be plain words");
/* Lock-free, always: another process changes these words, and a lock
 * (libatomic's fallback) would be this process's alone. 32-bit x86 gets
 * 64-bit atomics from cmpxchg8b (i586 and later; Debian's i386 baseline is
 * i686); -march=i386 fails here. */
#if ATOMIC_INT_LOCK_FREE != 2 || ATOMIC_LLONG_LOCK_FREE != 2
#error "shmbus needs always-lock-free 32- and 64-bit atomics (on 32-bit x86: -march=i586 or later)"
#endif
#if defined(__GNUC__)
_Static_assert(__atomic_always_lock_free(sizeof(uint64_t), 0) &&
                   __atomic_always_lock_free(sizeof(uint32_t), 0),
               "shmbus needs always-lock-free 32- and 64-bit atomics");
#endif

#define SHMBUS__A64(p) ((_Atomic uint64_t *)(void *)(p))
#define SHMBUS__A32(p) ((_Atomic uint32_t *)(void *)(p))

static inline uint64_t shmbus__load64_relaxed(const uint64_t *p) {
  SHMBUS__FUZZ_ACCESS(p, 8);
  return atomic_load_explicit(SHMBUS__A64(p), memory_order_relaxed);
}
static inline uint64_t shmbus__load64_acquire(const uint64_t *p) {
  SHMBUS__FUZZ_ACCESS(p, 8);
  return atomic_load_explicit(SHMBUS__A64(p), memory_order_acquire);
}
static inline void shmbus__store64_relaxed(uint64_t *p, uint64_t v) {
  atomic_store_explicit(SHMBUS__A64(p), v, memory_order_relaxed);
}
static inline void shmbus__store64_release(uint64_t *p, uint64_t v) {
  atomic_store_explicit(SHMBUS__A64(p), v, memory_order_release);
}
static inline uint64_t shmbus__fetch_add64(uint64_t *p, uint64_t v) {
  SHMBUS__FUZZ_ACCESS(p, 8);
  return atomic_fetch_add_explicit(SHMBUS__A64(p), v, memory_order_acq_rel);
}
/* Strong compare-and-swap; on failure *expected receives the current value. */
static inline int shmbus__cas64(uint64_t *p, uint64_t *expected, uint64_t desired) {
  SHMBUS__FUZZ_ACCESS(p, 8);
  return atomic_compare_exchange_strong_explicit(SHMBUS__A64(p), expected, desired,
                                                 memory_order_acq_rel, memory_order_acquire);
}
static inline uint32_t shmbus__load32_relaxed(const uint32_t *p) {
  SHMBUS__FUZZ_ACCESS(p, 4);
  return atomic_load_explicit(SHMBUS__A32(p), memory_order_relaxed);
}
static inline uint32_t shmbus__load32_acquire(const uint32_t *p) {
  SHMBUS__FUZZ_ACCESS(p, 4);
  return atomic_load_explicit(SHMBUS__A32(p), memory_order_acquire);
}
static inline void shmbus__store32_relaxed(uint32_t *p, uint32_t v) {
  atomic_store_explicit(SHMBUS__A32(p), v, memory_order_relaxed);
}
static inline void shmbus__store32_release(uint32_t *p, uint32_t v) {
  atomic_store_explicit(SHMBUS__A32(p), v, memory_order_release);
}
static inline uint32_t shmbus__fetch_add32(uint32_t *p, uint32_t v) {
  SHMBUS__FUZZ_ACCESS(p, 4);
  return atomic_fetch_add_explicit(SHMBUS__A32(p), v, memory_order_acq_rel);
}
static inline int shmbus__cas32(uint32_t *p, uint32_t *expected, uint32_t desired) {
  SHMBUS__FUZZ_ACCESS(p, 4);
  return atomic_compare_exchange_strong_explicit(SHMBUS__A32(p), expected, desired,
                                                 memory_order_acq_rel, memory_order_acquire);
}
#if defined(__SANITIZE_THREAD__)
/* ThreadSanitizer does not model fences (GCC refuses them with -Wtsan).
 * In TSan builds the fence is a seq_cst read-modify-write of one word
 * shared by the whole process: every such "fence" is ordered with every
 * other one, which is at least as strong for the threads TSan watches and
 * is something it can see. Production builds use the real fence. */
extern uint64_t shmbus__tsan_fence_word;
static inline void shmbus__fence_seq_cst(void) {
  atomic_fetch_add_explicit(SHMBUS__A64(&shmbus__tsan_fence_word), 0, memory_order_seq_cst);
}
#else
static inline void shmbus__fence_seq_cst(void) { atomic_thread_fence(memory_order_seq_cst); }
#endif

#endif

#if defined(_MSC_VER)
#include <intrin.h>
#elif (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <cpuid.h>
#endif

/* Tells the CPU we are spinning (frees the sibling hyper-thread, saves power). */
static inline void shmbus__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#elif defined(_MSC_VER)
  _mm_pause(); /* <intrin.h>, included above for MSVC */
#endif
}

/* CLDEMOTE (x86; Intel since Sapphire Rapids and Tremont): a hint that
 * moves the line holding `p` from this core's caches to the shared one
 * (L3), where another core's read finds it sooner than by snooping ours.
 * It has no architectural effect, and processors without it execute it as
 * a NOP (Intel SDM), but decoders such as valgrind's need not know it:
 * call it only where shmbus__cpu_can_demote() said yes. */
static inline int shmbus__cpu_can_demote(void) {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  return (int)((c >> 25) & 1u);
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
  int r[4];
  __cpuid(r, 0);
  if (r[0] < 7) return 0;
  __cpuidex(r, 7, 0);
  return (r[2] >> 25) & 1;
#else
  return 0;
#endif
}

static inline void shmbus__cpu_demote(const void *p) {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
  __asm__ __volatile__("cldemote %0" ::"m"(*(const volatile char *)p));
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
  _cldemote(p);
#else
  (void)p;
#endif
}

#endif /* SHMBUS_ATOMIC_H */

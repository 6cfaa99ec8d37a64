/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file
 * shmbus: zero-copy publish/subscribe over shared memory, for C and C++.
 *
 * This header is the whole public API and its specification. Names that
 * start with shmbus_ / SHMBUS_ are public; shmbus__ names are internal and
 * may change at any time; nothing else is exported.
 *
 * The protocol is visible in the names:
 * @code{.unparsed}
 *   publisher:  loan -> fill -> publish   (or discard)
 *   subscriber: take -> read -> release
 * @endcode
 *
 * Conventions that hold for every function below:
 *   - 0 is success; failures are negative SHMBUS_ERR_* codes.
 *   - On failure every out-parameter is cleared (NULL, 0 or zeroed struct).
 *   - Every pointer argument is checked; NULL where not allowed gives
 *     SHMBUS_ERR_INVAL.
 *   - *_close(NULL) is a harmless no-op.
 *   - Threads: a publisher or a subscriber is used by one thread at a time;
 *     different ports may be used concurrently from different threads; node
 *     functions are thread-safe.
 *   - Hot path: shmbus_publisher_loan, _publish, _discard, _send_copy,
 *     shmbus_subscriber_take, _take_latest and _release make no heap
 *     allocation, take no lock and make no system call in steady state. They
 *     may map or unmap segments when a peer joins or leaves.
 *   - Time is CLOCK_MONOTONIC nanoseconds (shmbus_now_ns). Timeouts are int64_t
 *     nanoseconds: 0 polls, a negative one waits forever.
 */
#ifndef SHMBUS_H
#define SHMBUS_H

#include <stddef.h>
#include <stdint.h>

#include "shmbus/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @def SHMBUS_EXTERN
 * Marks what the library exports: dllexport or dllimport on Windows (neither
 * with SHMBUS_STATIC, for the static library), default visibility with GCC
 * and clang. */
#if defined(_WIN32) && !defined(SHMBUS_STATIC)
#if defined(SHMBUS_BUILDING)
#define SHMBUS_EXTERN __declspec(dllexport)
#else
#define SHMBUS_EXTERN __declspec(dllimport)
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define SHMBUS_EXTERN __attribute__((visibility("default")))
#else
#define SHMBUS_EXTERN
#endif

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */
/** @defgroup errors Errors
 * @{ */

/** The one error table: XX(NAME, message). Codes are -1, -2, ... in order. */
#define SHMBUS_ERRNO_MAP(XX)                                                  \
  XX(INVAL, "invalid argument")                                               \
  XX(NAME, "invalid name (empty, too long or with a forbidden character)")    \
  XX(NOMEM, "out of memory")                                                  \
  XX(NO_SPACE, "no space left for shared memory")                             \
  XX(NOT_FOUND, "no such object")                                             \
  XX(EXISTS, "object exists already")                                         \
  XX(PERM, "permission denied")                                               \
  XX(INCOMPATIBLE, "service exists with another type or incompatible limits") \
  XX(CORRUPT, "shared memory is corrupt or has a foreign layout")             \
  XX(VERSION, "shared memory has another layout version")                     \
  XX(NOT_READY, "segment was never finished by its creator")                  \
  XX(TOO_LARGE, "size exceeds the service maximum or overflows")              \
  XX(PORT_LIMIT, "service has no free publisher or subscriber slot")          \
  XX(LOAN_LIMIT, "publisher has loaned its maximum of samples")               \
  XX(HOLD_LIMIT, "subscriber holds its maximum of samples")                   \
  XX(NOT_LOANED, "pointer is not a payload loaned from this publisher")       \
  XX(NOT_HELD, "sample is not held by this subscriber")                       \
  XX(EMPTY, "no sample available")                                            \
  XX(TIMEDOUT, "timed out")                                                   \
  XX(BUSY, "object is in use")                                                \
  XX(IO, "operating system error")                                            \
  XX(NO_PUBLISHER, "no publisher is connected any more")                      \
  XX(PEER_DEAD, "a subscriber the publish waited for died; nothing was sent") \
  XX(UNSUPPORTED, "not supported on this system")

/** @cond internal */
enum {
  SHMBUS__ERR_IDX_OK_ = 0,
/* clang-format off */
#define SHMBUS__ERR_IDX(name, msg) SHMBUS__ERR_IDX_##name,
  SHMBUS_ERRNO_MAP(SHMBUS__ERR_IDX)
#undef SHMBUS__ERR_IDX
  SHMBUS__ERR_COUNT_
  /* clang-format on */
};
/** @endcond */

/** The codes: SHMBUS_ERR_INVAL == -1, SHMBUS_ERR_NAME == -2, ... */
typedef enum shmbus_errno {
  SHMBUS_OK = 0, /**< success */
/* clang-format off */
#define SHMBUS__ERR_DEF(name, msg) SHMBUS_ERR_##name = -SHMBUS__ERR_IDX_##name,
  SHMBUS_ERRNO_MAP(SHMBUS__ERR_DEF)
#undef SHMBUS__ERR_DEF
  /** @cond internal */
  SHMBUS__ERR_LAST_ = -SHMBUS__ERR_COUNT_
  /** @endcond */
  /* clang-format on */
} shmbus_errno;

/** A static, human readable message for an error code. Never NULL: an unknown
 * code gives "unknown error". Thread-safe, no allocation. */
SHMBUS_EXTERN const char *shmbus_strerror(int err);

/** The code's name without the SHMBUS_ERR_ prefix ("EMPTY"); "OK" for 0 and
 * "UNKNOWN" for anything else. Thread-safe, no allocation. */
SHMBUS_EXTERN const char *shmbus_err_name(int err);

/** What this thread's last failed open of a publisher or subscriber found,
 * in one sentence, where the code alone does not say it: for
 * SHMBUS_ERR_INCOMPATIBLE, which setting differs and both values (type
 * name, size and alignment, a limit, the overflow policy). "" when there is
 * nothing to add. Overwritten by the thread's next open; never NULL. */
SHMBUS_EXTERN const char *shmbus_error_detail(void);

/** @} */

/** The library's version string, e.g. "0.1.0". */
SHMBUS_EXTERN const char *shmbus_version_string(void);

/** Now, in nanoseconds of the clock that stamps samples
 * (shmbus_sample.timestamp_ns): CLOCK_MONOTONIC on POSIX,
 * QueryPerformanceCounter on Windows. Thread-safe; no allocation. */
SHMBUS_EXTERN uint64_t shmbus_now_ns(void);

/* ------------------------------------------------------------------------ */
/* Nodes                                                                    */
/* ------------------------------------------------------------------------ */
/** @defgroup nodes Nodes
 * @{ */

/** A node: a participant with a domain and a backend (shmbus_node_open). */
typedef struct shmbus_node shmbus_node;
/** A publisher on one service (shmbus_publisher_open). @ingroup publisher */
typedef struct shmbus_publisher shmbus_publisher;
/** A subscriber on one service (shmbus_subscriber_open). @ingroup subscriber */
typedef struct shmbus_subscriber shmbus_subscriber;

/** Where segments live. */
enum {
  SHMBUS_BACKEND_SHM = 0, /**< POSIX shared memory (shm_open), the default */
  SHMBUS_BACKEND_DIR = 1  /**< memory-mapped files in the directory `root` */
};

/** Limits of names (bytes, without the terminating NUL). @{ */
#define SHMBUS_DOMAIN_MAX 32
#define SHMBUS_SERVICE_NAME_MAX 255
#define SHMBUS_TYPE_NAME_MAX 127
/** @} */

/** The options of shmbus_node_open. */
typedef struct shmbus_node_opts {
  /** The namespace of every object. NULL: the environment variable
   * SHMBUS_DOMAIN, else "default". 1 to SHMBUS_DOMAIN_MAX characters of
   * [A-Za-z0-9_-]. */
  const char *domain;
  /** SHMBUS_BACKEND_SHM or SHMBUS_BACKEND_DIR. */
  int backend;
  /** For SHMBUS_BACKEND_DIR: an existing directory (absolute or relative).
   * Must be NULL for SHMBUS_BACKEND_SHM. */
  const char *root;
  /** Permission bits of the objects this node creates; 0 means 0600. */
  unsigned mode;
} shmbus_node_opts;

/** The initialiser of shmbus_node_opts: every default. */
#define SHMBUS_NODE_OPTS_INIT \
  { NULL, SHMBUS_BACKEND_SHM, NULL, 0u }

/** Opens a node: a participant with a domain and a backend.
 *   opts: may be NULL (all defaults); copied, not kept.
 *   out:  receives the node; must not be NULL.
 * Errors: INVAL (bad backend, root missing or not a directory, NULL out),
 *   NAME (bad domain, root path of SHMBUS_BACKEND_DIR too long), PERM (root
 *   not writable), BUSY (a peer holds the lock of the new liveness token:
 *   possible only where objects are created named, see docs/security.md),
 *   NOMEM, IO.
 * Thread-safe. Allocates; makes system calls. */
SHMBUS_EXTERN int shmbus_node_open(const shmbus_node_opts *opts, shmbus_node **out);

/** Drops the caller's reference to the node. Ports opened through it stay
 * usable; the node's memory is freed when the last of them is closed.
 * NULL is a no-op. Thread-safe. */
SHMBUS_EXTERN void shmbus_node_close(shmbus_node *node);

/** The node's domain (valid while the node is open). NULL for a NULL node. */
SHMBUS_EXTERN const char *shmbus_node_domain(const shmbus_node *node);

/** The node's id: 64 random bits, unique in the domain and never reused
 * (unlike a process id). 0 for NULL. */
SHMBUS_EXTERN uint64_t shmbus_node_id(const shmbus_node *node);

/** @} */

/* ---- liveness and cleanup ------------------------------------------------ */
/** @defgroup liveness Liveness and cleanup
 * Every node holds a liveness token (a locked file or shared memory object
 * named "shmbus.<domain>.n.<id>") that the operating system unlocks when the
 * process dies, however it dies: no heartbeats, no process ids. A stopped
 * (SIGSTOP) process is alive. Ports of dead nodes are reclaimed by whoever
 * notices them: a port opening on the service, shmbus_publisher_update,
 * shmbus_subscriber_publishers, a publisher whose subscriber stops
 * consuming, and shmbus_domain_cleanup.
 * @{ */

/** A node as shmbus_node_list finds it. */
typedef struct shmbus_node_info {
  uint64_t id; /**< shmbus_node_id */
  int alive;   /**< 1 alive, 0 dead */
} shmbus_node_info;

/** Lists the nodes of `node`'s domain (this one included) into out[0..cap)
 * and sets *count to the number found (which may exceed cap).
 * Errors: INVAL (NULL node or count, NULL out with cap > 0), IO (the OS
 * cannot enumerate its shared memory objects). Makes system calls. */
SHMBUS_EXTERN int shmbus_node_list(shmbus_node *node, shmbus_node_info *out, size_t cap,
                                   size_t *count);

/** Removes what dead participants of `node`'s domain left behind: their
 * liveness tokens, their ports' registry slots (their chunks then return to
 * the publishers), dead publishers' segments, and services nobody uses any
 * more. Never touches anything of a live node. Returns the number of objects
 * removed and ports reclaimed, or INVAL / IO. Thread-safe; system calls. */
SHMBUS_EXTERN int shmbus_domain_cleanup(shmbus_node *node);

/** @} */

/* ---- peers that truncate shared memory ------------------------------------ */
/** @defgroup sigbus Peers that truncate shared memory
 * Any process of the same user can shrink a segment that others have mapped;
 * on POSIX, touching a page past its new end raises SIGBUS. shmbus installs
 * a SIGBUS handler with its first mapping (as Wayland compositors do for
 * client pools): a fault inside a shmbus mapping maps zero pages over that
 * mapping, so the access completes (reading zeros) and the port that used it
 * reports SHMBUS_ERR_CORRUPT; a fault anywhere else goes to the handler that
 * was installed before (or kills the process, as without shmbus). See
 * docs/security.md.
 * @{ */

/** Installs (1) or removes (0) shmbus's SIGBUS handler. An application that
 * owns SIGBUS calls shmbus_set_sigbus_handler(0) before opening anything
 * (or sets SHMBUS_SIGBUS=0 in the environment) and calls
 * shmbus_sigbus_repair() from its own handler. Removing restores the handler
 * that was there when shmbus installed its own.
 * Errors: IO (sigaction failed). Thread-safe; a system call. */
SHMBUS_EXTERN int shmbus_set_sigbus_handler(int enable);

/** For an application's own SIGBUS handler: if `fault_address` (siginfo's
 * si_addr) lies in a shmbus mapping, replaces that mapping by zero pages and
 * returns 1 (return from the handler: the access then completes); else 0.
 * Async-signal-safe. */
SHMBUS_EXTERN int shmbus_sigbus_repair(void *fault_address);

/** @} */

/* ------------------------------------------------------------------------ */
/* Services                                                                 */
/* ------------------------------------------------------------------------ */
/** @defgroup services Services
 * @{ */

/** What one element of a sample is. A sample holds 1 to max_elements of them. */
typedef struct shmbus_type {
  const char *name; /**< 1 to SHMBUS_TYPE_NAME_MAX printable characters */
  size_t size;      /**< bytes per element, > 0                          */
  size_t align;     /**< power of two, 1 to 4096                         */
} shmbus_type;

/** @} */

/* ---- Sample types that every process lays out the same ---- */
/** @defgroup sample_types Sample types that every process lays out the same
 *
 * Subscribers read a sample in the publisher's memory, in place, so every
 * process of a service must lay its type out byte for byte the same: C and
 * C++, and 32- and 64-bit builds on one machine (an i386 and an x86-64
 * process share a service like any two). The open compares the type's
 * name, size and alignment and refuses a mismatch (SHMBUS_ERR_INCOMPATIBLE,
 * with shmbus_error_detail() saying what differs). A type that follows these
 * rules matches in every ABI:
 *
 *   1. fixed-width fields only: (u)int8/16/32/64_t, float, double, arrays
 *      and structs of them. No pointers, long, size_t, bool, enums or
 *      bit-fields (their sizes differ between ABIs);
 *   2. every field at an offset that is a multiple of its size, the padding
 *      spelled out as fields (uint32_t reserved;): nothing for the compiler
 *      to insert, and the size a multiple of the largest field;
 *   3. the alignment explicit: SHMBUS_ALIGNAS(8) on the first field of a
 *      type with a 64-bit field, since i386 aligns uint64_t and double to 4
 *      inside structs (x86-64 and aarch64 to 8);
 *   4. the layout stated, so that a build that differs fails to compile:
 *      SHMBUS_ASSERT_LAYOUT(T, size, align) after the type, and
 *      SHMBUS_ASSERT_OFFSET(T, field, offset) for fields that matter.
 *
 * @code
 *   typedef struct imu {
 *     SHMBUS_ALIGNAS(8) uint64_t timestamp_ns;
 *     uint64_t counter;
 *     double temperature;
 *     float accel[3];
 *     uint32_t reserved;    (rule 2: 36 -> 40 bytes, spelled out)
 *   } imu;
 *   SHMBUS_ASSERT_LAYOUT(imu, 40, 8);
 *   SHMBUS_ASSERT_OFFSET(imu, accel, 24);
 * @endcode
 *
 * In C++ (<shmbus.hpp>) the same macros work at namespace scope.
 * @{ */

/** @def SHMBUS_ALIGNAS(n)
 * The alignment of a field, n bytes (rule 3): alignas in C++, _Alignas in C. */
#if defined(__cplusplus)
#define SHMBUS_ALIGNAS(n) alignas(n)
#define SHMBUS__STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#define SHMBUS__ALIGNOF(T) alignof(T)
#else
#define SHMBUS_ALIGNAS(n) _Alignas(n)
#define SHMBUS__STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#define SHMBUS__ALIGNOF(T) _Alignof(T)
#endif
/** Fails to compile unless T has this size and alignment in this build (rule 4).
 * @hideinitializer */
#define SHMBUS_ASSERT_LAYOUT(T, size, align)                                   \
  SHMBUS__STATIC_ASSERT(sizeof(T) == (size),                                   \
                        #T " is not " #size                                    \
                           " bytes in this build: "                            \
                           "a field's size or padding differs (see shmbus.h, " \
                           "\"Sample types\")");                               \
  SHMBUS__STATIC_ASSERT(SHMBUS__ALIGNOF(T) == (align),                         \
                        #T " is not aligned to " #align                        \
                           " in this build: put SHMBUS_ALIGNAS(" #align ") on its first field")
/** Fails to compile unless T's field is at this offset in this build (rule 4).
 * @hideinitializer */
#define SHMBUS_ASSERT_OFFSET(T, field, offset)          \
  SHMBUS__STATIC_ASSERT(offsetof(T, field) == (offset), \
                        #T "." #field " is not at offset " #offset " in this build")

/** @} */

/** @addtogroup services
 * @{ */

/** What a publisher does when a subscriber's queue is full. */
enum {
  SHMBUS_OVERFLOW_DEFAULT = 0,     /**< DROP_OLDEST when creating, any when opening */
  SHMBUS_OVERFLOW_DROP_OLDEST = 1, /**< evict the oldest queued sample             */
  SHMBUS_OVERFLOW_DROP_NEWEST = 2, /**< do not deliver the new sample              */
  SHMBUS_OVERFLOW_BLOCK = 3        /**< publish waits for room (backpressure):
                                        see shmbus_publisher_set_block_timeout */
};

/** A service is a name plus a type plus limits. The first port to open a
 * service creates it with these settings; the static configuration is then
 * immutable and every later open is checked against it.
 *
 * Limits: 0 means "the default" when creating (history: none) and
 * "whatever the service has" when opening. A non-zero limit given when opening must not exceed the
 * service's (SHMBUS_ERR_INCOMPATIBLE otherwise). The type must always match
 * exactly: name, size and alignment. */
typedef struct shmbus_service_opts {
  shmbus_type type;         /**< required; must match exactly             */
  uint32_t max_elements;    /**< elements per sample, default 1             */
  uint32_t max_publishers;  /**< default 4                                  */
  uint32_t max_subscribers; /**< default 8                                  */
  uint32_t queue_depth;     /**< per subscriber and publisher, default 16   */
  uint32_t history;         /**< samples replayed to late joiners, default 0 */
  uint32_t max_loans;       /**< outstanding loans per publisher, default 4 */
  uint32_t max_held;        /**< samples held per subscriber, default 4     */
  int overflow;             /**< SHMBUS_OVERFLOW_*                          */
} shmbus_service_opts;

/** The initialiser of shmbus_service_opts: no type yet, every limit 0. */
#define SHMBUS_SERVICE_OPTS_INIT \
  { {NULL, 0u, 0u}, 0u, 0u, 0u, 0u, 0u, 0u, 0u, SHMBUS_OVERFLOW_DEFAULT }

/** Upper bounds of the limits (SHMBUS_ERR_INVAL above them). @{ */
#define SHMBUS_MAX_PORTS 256 /**< publishers, subscribers        */
#define SHMBUS_MAX_QUEUE_DEPTH 65536
#define SHMBUS_MAX_HISTORY 65536
#define SHMBUS_MAX_LOANS 65536
#define SHMBUS_MAX_HELD 65536
#define SHMBUS_MAX_PAYLOAD (UINT32_C(1) << 30) /**< bytes per sample       */
/** @} */

/** @} */

/* ------------------------------------------------------------------------ */
/* Publisher                                                                */
/* ------------------------------------------------------------------------ */
/** @defgroup publisher Publisher
 * @{ */

/** Opens a publisher on `service`, creating the service if it does not exist.
 *   node:    an open node. service: 1 to SHMBUS_SERVICE_NAME_MAX printable
 *   ASCII characters (0x21-0x7e). opts: must not be NULL (the type is
 *   required). out: receives the publisher.
 * Errors: INVAL, NAME, TOO_LARGE (sizes overflow), INCOMPATIBLE, CORRUPT,
 *   VERSION, NOT_READY, PORT_LIMIT, NO_SPACE, PERM, NOMEM, IO, TIMEDOUT (the
 *   service stayed busy, e.g. being removed, for the 2 s an open may take).
 * Thread-safe with respect to the node. Allocates; makes system calls. */
SHMBUS_EXTERN int shmbus_publisher_open(shmbus_node *node, const char *service,
                                        const shmbus_service_opts *opts, shmbus_publisher **out);

/** Closes the publisher: outstanding loans are discarded. Subscribers that
 * had mapped it (see shmbus_publisher_update) keep the samples they hold
 * and still take what is queued; a subscriber that had not looked for new
 * publishers since this one opened never sees it. NULL is a no-op. */
SHMBUS_EXTERN void shmbus_publisher_close(shmbus_publisher *pub);

/** Loans an uninitialised payload of `elements` elements (1..max_elements),
 * aligned to the type's alignment, in shared memory.
 *   payload: receives the pointer; owned by the publisher until it is passed
 *   to shmbus_publisher_publish or shmbus_publisher_discard.
 * Errors: INVAL (NULL, elements == 0), TOO_LARGE (elements > max_elements),
 *   LOAN_LIMIT (max_loans outstanding). Never fails for lack of memory.
 * Hot path: no allocation, no system call, no lock. */
SHMBUS_EXTERN int shmbus_publisher_loan(shmbus_publisher *pub, size_t elements, void **payload);

/** Publishes a loaned payload to every connected subscriber and to the
 * history; the payload then belongs to the subscribers. Stamps the sample
 * with the next sequence number (per publisher, from 0) and the time.
 * A subscriber sleeping in shmbus_subscriber_wait or a wait set is woken
 * (one system call for it); nobody sleeping costs no system call.
 * With SHMBUS_OVERFLOW_BLOCK, waits until every subscriber has room for the
 * sample (it took or released one), for at most the block timeout.
 * Errors: INVAL (NULL), NOT_LOANED (not a current loan of this publisher;
 *   nothing happens). With SHMBUS_OVERFLOW_BLOCK also TIMEDOUT (a subscriber
 *   stayed full) and PEER_DEAD (a subscriber it waited for died; it is
 *   disconnected and its samples reclaimed, so publishing again goes on with
 *   the others): in both cases nothing was delivered and the payload is still
 *   loaned to the caller. Hot path unless it has to wait. */
SHMBUS_EXTERN int shmbus_publisher_publish(shmbus_publisher *pub, void *payload);

/** Publishes only the first `bytes` bytes of a loaned payload (variable
 * length samples). `bytes` may not exceed the loaned size.
 * Errors: as shmbus_publisher_publish, plus TOO_LARGE. Hot path. */
SHMBUS_EXTERN int shmbus_publisher_publish_bytes(shmbus_publisher *pub, void *payload,
                                                 size_t bytes);

/** Gives a loan back unpublished. Errors: INVAL, NOT_LOANED. Hot path. */
SHMBUS_EXTERN int shmbus_publisher_discard(shmbus_publisher *pub, void *payload);

/** Loans, copies `bytes` bytes (1..element size x max_elements, a multiple of
 * the element size is not required) and publishes.
 * Errors: INVAL, TOO_LARGE, LOAN_LIMIT; with SHMBUS_OVERFLOW_BLOCK also
 * TIMEDOUT and PEER_DEAD (nothing was sent; the internal loan is given
 * back). Hot path (plus the copy). */
SHMBUS_EXTERN int shmbus_publisher_send_copy(shmbus_publisher *pub, const void *data, size_t bytes);

/** Connects subscribers that joined since the last call (replaying the
 * history to them), disconnects those that left and collects released
 * samples. Publish does this on its own when the set of
 * subscribers changes; call it to serve history to a late joiner before the
 * next publish.
 * Returns the number of subscribers that are connected and have mapped this
 * publisher (they receive what it publishes from now on and keep what is
 * queued for them even if the publisher closes), or INVAL.
 * Also frees the slots of ports whose nodes died (see "liveness").
 * No allocation or lock; makes system calls (liveness probes). */
SHMBUS_EXTERN int shmbus_publisher_update(shmbus_publisher *pub);

/** The publisher's id (unique within its service), or 0 for NULL. */
SHMBUS_EXTERN uint64_t shmbus_publisher_id(const shmbus_publisher *pub);

/** How long a publish of a SHMBUS_OVERFLOW_BLOCK service waits for a full
 * subscriber: 0 never waits (TIMEDOUT at once), negative waits as long as
 * the subscriber lives (the default). Errors: INVAL (NULL). */
SHMBUS_EXTERN int shmbus_publisher_set_block_timeout(shmbus_publisher *pub, int64_t timeout_ns);

/** @} */

/* ------------------------------------------------------------------------ */
/* Subscriber                                                               */
/* ------------------------------------------------------------------------ */
/** @defgroup subscriber Subscriber
 * @{ */

/** A received sample. The payload is read-only shared memory, valid until the
 * sample is released or the subscriber closed. */
typedef struct shmbus_sample {
  const void *payload;   /**< the bytes, in the publisher's memory    */
  size_t bytes;          /**< payload length in bytes                 */
  uint64_t sequence;     /**< per publisher, from 0, +1 per publish   */
  uint64_t timestamp_ns; /**< CLOCK_MONOTONIC at publish              */
  uint64_t publisher_id; /**< shmbus_publisher_id of its publisher    */
  uint64_t internal_;    /**< the subscriber's handle; do not touch   */
} shmbus_sample;

/** Opens a subscriber on `service`, creating the service if it does not
 * exist (publishers and subscribers may start in any order).
 * Arguments and errors as shmbus_publisher_open. */
SHMBUS_EXTERN int shmbus_subscriber_open(shmbus_node *node, const char *service,
                                         const shmbus_service_opts *opts, shmbus_subscriber **out);

/** Closes the subscriber; held samples are released. NULL is a no-op. */
SHMBUS_EXTERN void shmbus_subscriber_close(shmbus_subscriber *sub);

/** Takes the next queued sample (publishers are served round-robin; each
 * publisher's samples arrive in order).
 * Errors: INVAL, EMPTY (nothing queued; *out is zeroed), HOLD_LIMIT
 *   (max_held samples held: release one first), CORRUPT (a publisher wrote
 *   nonsense, or cut this subscriber off because its connection words broke
 *   the protocol; that publisher is disconnected, others are unaffected;
 *   said once, then its queue reads EMPTY).
 * Hot path. */
SHMBUS_EXTERN int shmbus_subscriber_take(shmbus_subscriber *sub, shmbus_sample *out);

/** Takes the newest queued sample of all publishers (by timestamp) and
 * releases every older queued one (they count as taken, not as lost).
 * Errors: as shmbus_subscriber_take. Hot path. */
SHMBUS_EXTERN int shmbus_subscriber_take_latest(shmbus_subscriber *sub, shmbus_sample *out);

/** Releases a taken sample; its payload must not be used afterwards.
 * Errors: INVAL (NULL), NOT_HELD (already released, or not from this
 *   subscriber: nothing happens), CORRUPT (the sample is released, but a
 *   peer truncated its publisher's segment while it was held: what was read
 *   may be zeros and must be discarded; that publisher is disconnected).
 * Hot path. */
SHMBUS_EXTERN int shmbus_subscriber_release(shmbus_subscriber *sub, const shmbus_sample *sample);

/** Samples lost to overflow (queue full) since the subscriber opened, over
 * all publishers. 0 for NULL. No system call. */
SHMBUS_EXTERN uint64_t shmbus_subscriber_lost(const shmbus_subscriber *sub);

/** Number of live publishers this subscriber is connected to, after looking
 * for new ones and freeing the slots of ports whose nodes died (a dead
 * publisher's queued samples can still be taken). Errors: INVAL. May map
 * memory; makes system calls (liveness probes). */
SHMBUS_EXTERN int shmbus_subscriber_publishers(shmbus_subscriber *sub);

/** The subscriber's id (unique within its service), or 0 for NULL. */
SHMBUS_EXTERN uint64_t shmbus_subscriber_id(const shmbus_subscriber *sub);

/** @} */

/* ------------------------------------------------------------------------ */
/* Waiting                                                                  */
/* ------------------------------------------------------------------------ */
/** @defgroup waiting Waiting
 * @{ */

/** Waits until a sample can be taken, spinning first for the subscriber's
 * spin time (shmbus_subscriber_set_spin), then sleeping (Linux: a futex on
 * a word of the service; a publisher makes the wake-up system call only
 * while a waiter sleeps). The sample stays queued: take it.
 *   timeout_ns: 0 looks once, negative waits forever.
 * Returns 0 (a sample is queued, or the next take has an error to report:
 * a publisher cut this subscriber off), or
 *   TIMEDOUT      nothing arrived in time;
 *   NO_PUBLISHER  the subscriber was connected to a publisher and none is
 *                 left (closed or died), with nothing queued. Reported once
 *                 per loss: the next wait waits for a new publisher;
 *   BUSY          the subscriber is attached to a wait set (wait there);
 *   CORRUPT       a peer truncated the service's segment: close and reopen;
 *   INVAL, HOLD_LIMIT (max_held samples held: a sample could not be taken).
 * Sleeping makes system calls; a waiter also wakes every 100 ms to look for
 * dead publishers. Not a hot-path function. */
SHMBUS_EXTERN int shmbus_subscriber_wait(shmbus_subscriber *sub, int64_t timeout_ns);

/** How long shmbus_subscriber_wait (and a wait set holding the subscriber)
 * polls before it sleeps: 0 (the default) sleeps at once, trading latency
 * for CPU. Errors: INVAL (NULL, negative). */
SHMBUS_EXTERN int shmbus_subscriber_set_spin(shmbus_subscriber *sub, int64_t spin_ns);

/** @} */

/** @defgroup waitsets Wait sets
 * @{ */

/** A wait set: one thread waits on many subscribers (of any services) and a
 * user trigger at once. It owns a Unix datagram socket in the abstract
 * namespace (Linux; on Windows a named event), named after a random id, to
 * which publishers send a one-byte wake-up (Windows: set the event) only
 * while the wait set sleeps: processes need not share descriptors. Not
 * thread-safe except shmbus_waitset_trigger. */
typedef struct shmbus_waitset shmbus_waitset;

/** Opens a wait set. Errors: INVAL, NOMEM, UNSUPPORTED (a POSIX system
 * without abstract Unix sockets: not Linux), IO. */
SHMBUS_EXTERN int shmbus_waitset_open(shmbus_node *node, shmbus_waitset **out);

/** Detaches every subscriber and closes. NULL is a no-op. */
SHMBUS_EXTERN void shmbus_waitset_close(shmbus_waitset *ws);

/** Adds a subscriber; `user` is reported with its events. A subscriber is in
 * at most one wait set, and then shmbus_subscriber_wait refuses it (BUSY).
 * Closing the subscriber detaches it.
 * Errors: INVAL (also: the subscriber's node has another domain than the
 *   wait set's), BUSY (in a wait set already), NOMEM. */
SHMBUS_EXTERN int shmbus_waitset_attach(shmbus_waitset *ws, shmbus_subscriber *sub, void *user);

/** Removes a subscriber. Errors: INVAL, NOT_FOUND (not in this wait set). */
SHMBUS_EXTERN int shmbus_waitset_detach(shmbus_waitset *ws, shmbus_subscriber *sub);

/** Wakes the wait set's waiter, which reports a SHMBUS_WAIT_TRIGGER event
 * (for shutdown). Thread-safe and async-signal-safe. Errors: INVAL. */
SHMBUS_EXTERN int shmbus_waitset_trigger(shmbus_waitset *ws);

/** What an event is about (shmbus_wait_event.what). */
enum {
  SHMBUS_WAIT_DATA = 1,         /**< samples can be taken from `sub` (or its take
                                     reports an error, e.g. CORRUPT)           */
  SHMBUS_WAIT_NO_PUBLISHER = 2, /**< `sub` lost its last publisher (once)     */
  SHMBUS_WAIT_TRIGGER = 3       /**< shmbus_waitset_trigger; `sub` is NULL     */
};

/** One event of shmbus_waitset_wait. */
typedef struct shmbus_wait_event {
  int what;               /**< SHMBUS_WAIT_*                               */
  shmbus_subscriber *sub; /**< the subscriber it is about                  */
  void *user;             /**< as given to shmbus_waitset_attach            */
} shmbus_wait_event;

/** Waits until a subscriber of the set has data or lost its publishers, or
 * the set is triggered, then reports up to `cap` events in out[] (a
 * subscriber that holds max_held samples is not reported: release first). The
 * scan starts after the subscriber reported first last time, so one that
 * always has data cannot starve the others. Spins first for the longest
 * spin time of its subscribers. Returns the number of events (>= 1), or
 * TIMEDOUT, INVAL (cap 0, NULL), IO. timeout_ns as shmbus_subscriber_wait;
 * 0 looks once (the way to collect after the descriptor polled readable). */
SHMBUS_EXTERN int shmbus_waitset_wait(shmbus_waitset *ws, int64_t timeout_ns,
                                      shmbus_wait_event *out, size_t cap);

/** A descriptor for poll/epoll/libuv: readable when the wait set may have
 * events. Protocol: call shmbus_waitset_wait(ws, 0, ...) when it is readable
 * and until it returns TIMEDOUT; then sleep on the descriptor again (a wait
 * that found nothing arms the publishers' wake-up before returning). A
 * publisher that closes wakes the descriptor; one that dies is found by a
 * look for dead ports that shmbus_waitset_wait makes at most every 100 ms,
 * so a loop that must report dead publishers sleeps at most that long
 * before looking. Owned by the wait set: do not read or close it.
 * Errors: INVAL; UNSUPPORTED on Windows, whose wait sets have no
 * descriptor (shmbus_waitset_os_handle). */
SHMBUS_EXTERN int shmbus_waitset_fd(const shmbus_waitset *ws);

/** An operating-system handle: a POSIX file descriptor, or a Win32 HANDLE
 * (cast it with (HANDLE)). */
typedef intptr_t shmbus_os_handle;

/** The wait set's waitable OS object, with the descriptor's protocol above:
 * on POSIX the descriptor of shmbus_waitset_fd; on Windows an event HANDLE
 * for WaitForSingleObject / WaitForMultipleObjects (or
 * RegisterWaitForSingleObject), signalled while the set may have events
 * and left signalled until shmbus_waitset_wait finds none (a loop that
 * waits again without calling it spins, as on an unread descriptor).
 * Owned by the wait set: do not close it. Errors: INVAL. */
SHMBUS_EXTERN int shmbus_waitset_os_handle(const shmbus_waitset *ws, shmbus_os_handle *out);

/** @} */

/* ---- introspection ------------------------------------------------------- */
/** @defgroup introspection Introspection
 * What the services of a domain are and what their ports do, read from
 * shared memory by a process that takes no part: the calls below map the
 * segments read-only, never count as a user of a service, claim no slot,
 * reap nothing and write no shared word, so the observed ports run exactly
 * as they would unobserved (their next store to a line read here costs
 * them one cache miss, nothing else). Everything read is a peer's and is
 * treated as untrusted (docs/security.md): each word is loaded once and
 * checked against limits computed privately from the validated
 * configuration; a service whose configuration is corrupt is reported
 * with an error, never read further. What is read is a snapshot of words
 * that change while they are read: counts of a busy connection are
 * consistent to within the samples that moved meanwhile.
 *
 * The structures are laid out the same in every ABI (fixed-width fields,
 * no pointers, explicit padding), and every call fills whole entries:
 * fields it cannot know are 0.
 * @{ */

/** Longest name of a shared-memory object (bytes, without the NUL):
 * "shmbus.<domain>.<16 hex digits>.s" for a service. */
#define SHMBUS_OBJECT_NAME_MAX 95

/** A service, as shmbus_service_list and shmbus_service_describe read it. */
typedef struct shmbus_service_info {
  char name[SHMBUS_SERVICE_NAME_MAX + 1];   /**< the service ("" when error) */
  char type_name[SHMBUS_TYPE_NAME_MAX + 1]; /**< its type ("" when error)    */
  char object[SHMBUS_OBJECT_NAME_MAX + 1];  /**< the service's object name   */
  /** 0, or why the service could not be read (every field below is then 0):
   * NOT_READY (its creator has not finished it), CORRUPT (a configuration
   * out of range, names not terminated or not printable, a name that does
   * not hash to its object, a truncated or foreign object), VERSION
   * (another layout version), INCOMPATIBLE (made with another page
   * size), PERM (not readable by us), NOMEM, IO. */
  int32_t error;
  uint32_t type_size;    /**< bytes per element                       */
  uint32_t type_align;   /**< alignment of an element                 */
  uint32_t max_elements; /**< elements per sample                     */
  /** The limits of shmbus_service_opts, as the service has them (defaults
   * applied). @{ */
  uint32_t max_publishers;
  uint32_t max_subscribers;
  uint32_t queue_depth;
  uint32_t history;
  uint32_t max_loans;
  uint32_t max_held;
  /** @} */
  uint32_t overflow; /**< SHMBUS_OVERFLOW_DROP_OLDEST, _DROP_NEWEST, _BLOCK */
  /** Registry slots of ready publishers and subscribers. Their nodes are
   * not probed here: a dead port counts until it is reaped. @{ */
  uint32_t publishers;
  uint32_t subscribers;
  /** @} */
  uint32_t removing;        /**< 1 while its last user removes it              */
  uint64_t users;           /**< ports counted as its users (open or opening)  */
  uint64_t creator_node_id; /**< the node that created it                      */
  uint64_t max_payload;     /**< bytes per sample: type_size x max_elements    */
  uint64_t chunks;          /**< chunks per publisher (the pool's worst case)  */
  uint64_t service_bytes;   /**< the service segment                           */
  uint64_t data_bytes;      /**< each publisher's data segment (its chunks)    */
  uint64_t control_bytes;   /**< each publisher's control segment (its rings)  */
  uint64_t reserved[4];     /**< 0                                             */
} shmbus_service_info;

/** Lists the services of `node`'s domain, in no particular order, into
 * out[0..cap) and sets *count to the number of service objects found
 * (which may exceed cap: those beyond cap are counted, not opened, so a
 * second call may find fewer). A service that cannot be read is listed
 * with its `object` name and its `error`; one removed while the list is
 * made is left out. The listing looks at no more than 65536 object names
 * of the domain (a peer that makes more can hide services beyond them).
 * Creates and changes nothing (see above).
 * Windows: the default backend's sections cannot be enumerated by the OS,
 * so there the list finds only services of SHMBUS_BACKEND_DIR nodes
 * (shmbus_service_describe finds the others by name).
 * Errors: INVAL (NULL node or count, NULL out with cap > 0), IO (the OS
 * cannot enumerate its shared memory objects). Thread-safe. Allocates
 * nothing; makes system calls (an open and a mapping per service). */
SHMBUS_EXTERN int shmbus_service_list(shmbus_node *node, shmbus_service_info *out, size_t cap,
                                      size_t *count);

/** Kinds and states of a port in a service's registry. @{ */
enum {
  SHMBUS_PORT_PUBLISHER = 0, /**< a publisher  */
  SHMBUS_PORT_SUBSCRIBER = 1 /**< a subscriber */
};
enum {
  /** Open and serving. */
  SHMBUS_PORT_READY = 1,
  /** Its slot is claimed, the port not ready yet, or closing (id may be 0). */
  SHMBUS_PORT_OPENING = 2,
  /** A reaper frees the slot of a dead port; node_id is the reaper's. */
  SHMBUS_PORT_REAPING = 3,
  /** A slot word without an owner: only a peer writes that; the next sweep
   * clears it. */
  SHMBUS_PORT_UNOWNED = 4
};
/** @} */
/** Flags of a subscriber (shmbus_port_info.flags). @{ */
#define SHMBUS_PORT_SLEEPING 1u /**< it (or its wait set) may sleep now     */
#define SHMBUS_PORT_WAITSET 2u  /**< it is attached to a wait set           */
/** @} */

/** A port in a service's registry, as shmbus_service_describe reads it. */
typedef struct shmbus_port_info {
  /** shmbus_publisher_id or shmbus_subscriber_id; 0 before the port wrote it. */
  uint64_t id;
  uint64_t node_id; /**< the node that owns the slot (shmbus_node_id)            */
  uint32_t kind;    /**< SHMBUS_PORT_PUBLISHER or SHMBUS_PORT_SUBSCRIBER          */
  uint32_t slot;    /**< its registry slot: 0 to max_publishers (_subscribers) - 1 */
  uint32_t state;   /**< SHMBUS_PORT_*                                            */
  /** 1 while node_id's liveness token is held; 0 when that node is dead (the
   * port is not reaped yet) or the slot has no owner. */
  int32_t alive;
  /** Publishers: 0, or why its segments could not be read: NOT_READY (the
   * port is not ready), NOT_FOUND (they were removed: it closed or was
   * reaped), CORRUPT (wrong sizes or ids, or truncated while read), PERM,
   * NOMEM (no address space for them), IO. Without its control segment
   * it has no connections and its counts are 0. */
  int32_t error;
  uint32_t flags; /**< subscribers: SHMBUS_PORT_SLEEPING | SHMBUS_PORT_WAITSET */
  /** Publishers: samples published so far (its next sequence number), the
   * newest one's timestamp (0 before the first) and the payloads loaned
   * now (at most max_loans), as the publisher keeps them for onlookers in
   * its control segment. @{ */
  uint64_t published;
  uint64_t last_timestamp_ns;
  uint32_t loans;
  /** @} */
  uint32_t reserved0;   /**< 0 */
  uint64_t reserved[1]; /**< 0 */
} shmbus_port_info;

/** States of a connection (publisher -> subscriber slot). */
enum {
  /** The publisher serves nobody on it: it has not seen the subscriber
   * yet, or cut it off. Its counts are 0. */
  SHMBUS_CONNECTION_UNBOUND = 0,
  /** Bound by the publisher, not yet mapped by the subscriber. */
  SHMBUS_CONNECTION_BINDING = 1,
  /** Served: the subscriber mapped it. */
  SHMBUS_CONNECTION_BOUND = 2,
  /** Bound to a subscriber that left the slot; the publisher has not
   * noticed yet (what is queued there is nobody's). */
  SHMBUS_CONNECTION_STALE = 3,
  /** Its shared words contradict each other or the limits (a peer wrote
   * them): the counts are what could be read, clamped to the limits. */
  SHMBUS_CONNECTION_CORRUPT = 4
};

/** One connection, as its shared words show it now. Counts start when the
 * publisher bound the connection (a subscriber that reopens starts again). */
typedef struct shmbus_connection_info {
  uint64_t publisher_id; /**< shmbus_publisher_id of the publisher */
  /** The subscriber id the connection is bound to, else that of the
   * subscriber in the slot (0: none). */
  uint64_t subscriber_id;
  /** The publisher's index in describe's ports[], and the index there of the
   * subscriber in the slot (UINT32_MAX when the slot holds none). @{ */
  uint32_t publisher;
  uint32_t subscriber;
  /** @} */
  uint32_t subscriber_slot; /**< the subscriber slot: 0 to max_subscribers - 1 */
  uint32_t state;           /**< SHMBUS_CONNECTION_* */
  /** Samples the publisher published to it (the history replayed at the
   * bind included): those queued, plus with DROP_NEWEST those dropped. */
  uint64_t published;
  uint64_t delivered; /**< taken by the subscriber (take, take_latest)       */
  uint64_t lost;      /**< lost to overflow (shmbus_subscriber_lost sums them) */
  uint64_t released;  /**< given back by the subscriber (released or skipped) */
  uint32_t queued;    /**< in its queue now, at most queue_depth             */
  uint32_t held;      /**< taken and not released, at most max_held          */
  /** Chunks of the publisher's pool it keeps from reuse: queued, held, and
   * released ones the publisher has not collected yet. */
  uint32_t in_flight;
  /** Overflow BLOCK: 1 while the publisher waits for room on it. */
  uint32_t publisher_waiting;
  uint64_t reserved[2]; /**< 0 */
} shmbus_connection_info;

/** Describes service `service` of `node`'s domain: its configuration into
 * *info; its ports into ports[0..port_cap), the publishers by slot, then
 * the subscribers by slot, *port_count set to how many there are (which
 * may exceed port_cap); and per publisher whose segments could be read,
 * one entry per subscriber slot that holds a port or that the connection
 * is bound to, into conns[0..conn_cap), *conn_count set to how many there
 * are. Probes the liveness of every node owning a port. Creates and
 * changes nothing (see above): a dead port is shown, not reaped.
 *   node, service, info: must not be NULL (service: as for
 *   shmbus_publisher_open). ports, conns: may be NULL with a cap of 0.
 *   port_count, conn_count: may be NULL.
 * Errors: INVAL, NAME, NOT_FOUND (no such service; also when its object
 *   holds another service whose name has the same hash), NOT_READY,
 *   CORRUPT, VERSION, INCOMPATIBLE, PERM, NOMEM, IO: as for an entry of
 *   shmbus_service_list (*info, the counts and the arrays' entries are
 *   then zeroed). A publisher whose segments cannot be read is no error:
 *   see shmbus_port_info.error.
 * Thread-safe. Allocates a little private memory; makes system calls
 * (opens, mappings, liveness probes). */
SHMBUS_EXTERN int shmbus_service_describe(shmbus_node *node, const char *service,
                                          shmbus_service_info *info, shmbus_port_info *ports,
                                          size_t port_cap, size_t *port_count,
                                          shmbus_connection_info *conns, size_t conn_cap,
                                          size_t *conn_count);

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SHMBUS_H */

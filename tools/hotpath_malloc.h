/* SPDX-License-Identifier: Apache-2.0 */
/* The allocation counter of hotpath_malloc.c. */
#ifndef SHMBUS_TOOLS_HOTPATH_MALLOC_H
#define SHMBUS_TOOLS_HOTPATH_MALLOC_H

#ifdef __cplusplus
extern "C" {
#endif

extern volatile int hotpath_counting;              /* count while non-zero */
extern volatile unsigned long hotpath_allocations; /* malloc, calloc, ... */

#ifdef __cplusplus
}
#endif

#endif /* SHMBUS_TOOLS_HOTPATH_MALLOC_H */

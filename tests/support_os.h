/* SPDX-License-Identifier: Apache-2.0 */
/* What tests/support.c needs from the OS half of the test helpers
 * (support_posix.c, support_win.c); tests use support.h only. */
#ifndef SHMBUS_TEST_SUPPORT_OS_H
#define SHMBUS_TEST_SUPPORT_OS_H

/* Where SHMBUS_BACKEND_SHM's listable objects of a domain live: /dev/shm
 * on Linux; on Windows the per-session state directory of liveness
 * tokens (sections cannot be listed, and go with their last handle). */
const char *ts__objects_dir(void);
/* Whether a backend's objects other than tokens can be listed (Windows'
 * paging-file sections cannot). */
int ts__objects_listable(int backend);
/* Makes a new private temporary directory, its path in out[cap]: 0, or -1. */
int ts__tmpdir_new(char *out, size_t cap);
/* Removes a temporary directory and the files in it. */
void ts__tmpdir_delete(const char *path);
/* Removes a file; errors are ignored. */
void ts__remove_file(const char *path);
/* Kills and reaps every child still registered; returns how many. */
int ts__reap_children(void);
/* The name of signal `sig` ("signal 9" where the OS has no names). */
const char *ts__signal_name(int sig);

#endif

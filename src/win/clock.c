/* SPDX-License-Identifier: Apache-2.0 */
/* Time, sleeping, randomness and the environment (platform.h). */
#include <stdlib.h>

#include "atomic.h"
#include "win.h"

#include <bcrypt.h> /* after <windows.h> (win.h) */

/* QueryPerformanceFrequency is fixed at boot: read it once. */
static uint64_t qpc_frequency(void) {
  static uint64_t freq;
  uint64_t f = shmbus__load64_relaxed(&freq);
  if (f == 0) {
    LARGE_INTEGER v;
    f = QueryPerformanceFrequency(&v) && v.QuadPart > 0 ? (uint64_t)v.QuadPart : 1;
    shmbus__store64_relaxed(&freq, f);
  }
  return f;
}

uint64_t shmbus__now_ns(void) {
  LARGE_INTEGER c;
  QueryPerformanceCounter(&c); /* never fails since Windows XP */
  uint64_t q = (uint64_t)c.QuadPart, f = qpc_frequency();
  /* Whole seconds and the remainder apart: q * 1e9 would overflow after
   * 30 minutes at a 10 GHz counter. (q % f) * 1e9 fits while f < 1.8e10. */
  return q / f * UINT64_C(1000000000) + q % f * UINT64_C(1000000000) / f;
}

void shmbus__yield(void) { SwitchToThread(); }

void shmbus__sleep_ns(uint64_t ns) {
  if (ns == 0) return;
  /* Whole milliseconds, rounded up (at least one Sleep). Sleep counts in
   * timer ticks and may wake a little before the milliseconds asked:
   * sleep again until the clock says enough. */
  uint64_t start = shmbus__now_ns(), done = 0;
  do {
    uint64_t ms = (ns - done + 999999u) / 1000000u;
    Sleep(ms >= INFINITE ? INFINITE - 1 : (DWORD)ms);
    done = shmbus__now_ns() - start;
  } while (done < ns);
}

uint64_t shmbus__random64(void) {
  uint64_t v = 0;
  if (BCRYPT_SUCCESS(
          BCryptGenRandom(NULL, (PUCHAR)&v, sizeof v, BCRYPT_USE_SYSTEM_PREFERRED_RNG)) &&
      v != 0)
    return v;
  /* splitmix64 over the clock, the process id and a counter (two calls in
   * one clock tick still differ): unique enough for ids. */
  static uint64_t calls;
  v = shmbus__now_ns() ^ ((uint64_t)GetCurrentProcessId() << 32) ^
      (shmbus__fetch_add64(&calls, 1) * UINT64_C(0x9e3779b97f4a7c15));
  v += UINT64_C(0x9e3779b97f4a7c15);
  v = (v ^ (v >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  v = (v ^ (v >> 27)) * UINT64_C(0x94d049bb133111eb);
  v ^= v >> 31;
  return v ? v : 1;
}

const char *shmbus__getenv(const char *name) { return getenv(name); }

/* SPDX-License-Identifier: Apache-2.0 */
/* Eclipse iceoryx classic through its C binding (Debian's
 * libiceoryx-binding-c-dev). The benchmark starts iox-roudi itself when
 * none runs, with mempools for every payload size, and stops it at exit. */
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#ifndef SHMBUS_BENCH_HAVE_ICEORYX

static const char *iox_unavailable(void) {
  return "iceoryx C binding not found at configure time (apt-get install "
         "libiceoryx-binding-c-dev iceoryx)";
}
const bench_transport bench_iceoryx = {"iceoryx", "busy", 0, iox_unavailable, NULL, NULL, NULL};

#else

#include <iceoryx_binding_c/log.h>
#include <iceoryx_binding_c/publisher.h>
#include <iceoryx_binding_c/runtime.h>
#include <iceoryx_binding_c/subscriber.h>

#define STOP UINT64_MAX

static pid_t roudi = -1;
static int roudi_failed;
static char config_path[64];

static const char *iox_unavailable(void) {
  return access(SHMBUS_BENCH_IOX_ROUDI, X_OK) == 0
             ? NULL
             : "iox-roudi not installed (apt-get install iceoryx)";
}

static void stop_roudi(void) {
  if (roudi > 0) {
    kill(roudi, SIGTERM);
    waitpid(roudi, NULL, 0);
    roudi = -1;
  }
  if (config_path[0]) unlink(config_path);
}

static int roudi_shm_exists(void) {
  struct stat st;
  return stat("/dev/shm/iceoryx_mgmt", &st) == 0;
}

/* A RouDi process, not its shared memory: a killed RouDi leaves that
 * behind, and clients would wait for it forever. */
static int roudi_running(void) {
  DIR *d = opendir("/proc");
  if (d == NULL) return 0;
  int found = 0;
  struct dirent *e;
  while (!found && (e = readdir(d)) != NULL) {
    char path[300], comm[64] = "";
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL) continue;
    if (fgets(comm, sizeof comm, f)) found = strncmp(comm, "iox-roudi", 9) == 0;
    fclose(f);
  }
  closedir(d);
  return found;
}

static int start_roudi(void) {
  static const char config[] =
      "[general]\nversion = 1\n\n[[segment]]\n\n"
      "[[segment.mempool]]\nsize = 256\ncount = 1000\n\n"
      "[[segment.mempool]]\nsize = 2048\ncount = 500\n\n"
      "[[segment.mempool]]\nsize = 32768\ncount = 100\n\n"
      "[[segment.mempool]]\nsize = 524288\ncount = 20\n\n"
      "[[segment.mempool]]\nsize = 2097152\ncount = 16\n\n"
      "[[segment.mempool]]\nsize = 8388608\ncount = 16\n";
  snprintf(config_path, sizeof config_path, "/tmp/sbbench-roudi-%ld.toml", (long)getpid());
  FILE *f = fopen(config_path, "w");
  if (!f) return -1;
  fputs(config, f);
  fclose(f);
  roudi = fork();
  if (roudi == 0) {
    freopen("/dev/null", "w", stdout);
    freopen("/dev/null", "w", stderr);
    execl(SHMBUS_BENCH_IOX_ROUDI, "iox-roudi", "-c", config_path, (char *)NULL);
    _exit(127);
  }
  atexit(stop_roudi);
  /* RouDi replaces stale segments of a dead predecessor, then listens. */
  usleep(300000);
  for (int i = 0; i < 500 && !roudi_shm_exists(); i++) {
    if (waitpid(roudi, NULL, WNOHANG) == roudi) {
      roudi = -1;
      return -1;
    }
    usleep(10000);
  }
  usleep(200000);
  return roudi_shm_exists() && waitpid(roudi, NULL, WNOHANG) == 0 ? 0 : -1;
}

static int iox_prepare(const bench_params *p) {
  (void)p;
  if (roudi_failed) return -1;
  if (roudi < 0 && !roudi_running() && start_roudi() != 0) {
    roudi_failed = 1;
    fprintf(stderr, "iceoryx: could not start iox-roudi\n");
    return -1;
  }
  return 0;
}

static int iox_run(const bench_params *p, int role, bench_shared *sh) {
  char name[64], instance[64];
  snprintf(name, sizeof name, "sbbench_%c_%ld", role == ROLE_A ? 'a' : 'b', (long)getpid());
  snprintf(instance, sizeof instance, "%s_%u", p->domain, p->run);
  iox_set_loglevel(Iceoryx_LogLevel_Error);
  iox_runtime_init(name);
  iox_pub_options_t po;
  iox_pub_options_init(&po);
  iox_sub_options_t so;
  iox_sub_options_init(&so);
  so.queueCapacity = 4;
  iox_pub_storage_t pub_storage;
  iox_sub_storage_t sub_storage;
  iox_pub_t pub =
      iox_pub_init(&pub_storage, "sbbench", instance, role == ROLE_A ? "ping" : "pong", &po);
  iox_sub_t sub =
      iox_sub_init(&sub_storage, "sbbench", instance, role == ROLE_A ? "pong" : "ping", &so);
  int r = 0;
  uint64_t deadline = bench_now_ns() + UINT64_C(10) * 1000000000u;
  while (!iox_pub_has_subscribers(pub) ||
         iox_sub_get_subscription_state(sub) != SubscribeState_SUBSCRIBED) {
    if (bench_now_ns() > deadline || sh->failed) {
      bench_fail(sh, "iceoryx: peers did not connect");
      r = -1;
      break;
    }
    usleep(1000);
  }
  if (r == 0) r = bench_handshake(sh, role);
  uint64_t start = bench_now_ns();
  for (uint64_t i = 0; r == 0; i++) {
    uint64_t t0 = bench_now_ns(), stamp = i;
    if (role == ROLE_B) {
      const void *in;
      while (iox_sub_take_chunk(sub, &in) != ChunkReceiveResult_SUCCESS) {
        if (sh->failed) {
          r = -1;
          break;
        }
      }
      if (r) break;
      stamp = bench_stamp(in);
      iox_sub_release_chunk(sub, in);
    }
    void *out;
    if (iox_pub_loan_chunk(pub, &out, (uint32_t)p->payload) != AllocationResult_SUCCESS) {
      bench_fail(sh, "iceoryx: loan of %zu bytes failed", p->payload);
      r = -1;
      break;
    }
    bench_touch(out, p->payload, stamp, p->touch_all);
    iox_pub_publish_chunk(pub, out);
    if (role == ROLE_B) {
      if (stamp == STOP) break;
      continue;
    }
    const void *in;
    while (iox_sub_take_chunk(sub, &in) != ChunkReceiveResult_SUCCESS) {
    }
    uint64_t got = bench_stamp(in);
    iox_sub_release_chunk(sub, in);
    if (got != stamp) {
      bench_fail(sh, "iceoryx: wrong echo");
      r = -1;
      break;
    }
    if (stamp == STOP) break;
    if (!bench_record(p, sh, i, t0, bench_now_ns(), start)) {
      /* One more round trip carrying STOP ends B. */
      if (iox_pub_loan_chunk(pub, &out, (uint32_t)p->payload) != AllocationResult_SUCCESS) break;
      bench_touch(out, p->payload, STOP, 0);
      iox_pub_publish_chunk(pub, out);
      while (iox_sub_take_chunk(sub, &in) != ChunkReceiveResult_SUCCESS) {
      }
      iox_sub_release_chunk(sub, in);
      break;
    }
  }
  iox_pub_deinit(pub);
  iox_sub_deinit(sub);
  iox_runtime_shutdown();
  return r;
}

const bench_transport bench_iceoryx = {"iceoryx",   "busy",  0,   iox_unavailable,
                                       iox_prepare, iox_run, NULL};
#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shmbus-example-subscriber [COUNT] [SERVICE]
 *
 * Reads Imu readings from SERVICE (default "shmbus/examples/imu") in the
 * domain named by SHMBUS_DOMAIN (default "default") until it has accounted
 * for COUNT (default 1000) of them: received, or lost to a full queue. Each
 * sample is read in place (zero-copy: take -> read -> release) and checked:
 * its size and alignment, a sequence number that grows per publisher, and
 * contents that match what shmbus-example-publisher writes for that number.
 *
 * Exit status: 0 when COUNT samples are accounted for and all were right;
 * 1 on a wrong sample, an error, or 10 s without progress; 2 on bad usage.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep, sigaction */
#endif

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shmbus.h>

#include "imu.h"

#define PROGRAM "shmbus-example-subscriber"

#define MS (UINT64_C(1000) * 1000)
#define PROGRESS_TIMEOUT_NS (10000 * MS) /* give up after this long idle */
#define MAX_PUBLISHERS 16                /* distinct publishers tracked  */

#include "example_util.h"

/* What we know of one publisher's stream: sequence numbers count up from 0
 * per publisher, so each stream is checked on its own. */
typedef struct stream {
  uint64_t publisher_id;
  uint64_t next_sequence; /* the one expected if nothing is lost */
} stream;

typedef struct tally {
  stream streams[MAX_PUBLISHERS];
  unsigned nstreams;
  uint64_t received;
  uint64_t gaps; /* sequence numbers skipped between received samples */
} tally;

static stream *find_stream(tally *t, uint64_t publisher_id) {
  for (unsigned i = 0; i < t->nstreams; i++)
    if (t->streams[i].publisher_id == publisher_id) return &t->streams[i];
  if (t->nstreams == MAX_PUBLISHERS) return NULL;
  stream *s = &t->streams[t->nstreams++];
  s->publisher_id = publisher_id;
  s->next_sequence = UINT64_MAX; /* none seen yet: any first number is fine */
  return s;
}

/* Checks one sample while we hold it. 1 when it is right; otherwise says
 * what is wrong and returns 0. */
static int check_sample(tally *t, const shmbus_sample *sample) {
  if (sample->bytes != sizeof(Imu)) {
    fprintf(stderr, "%s: sample of %zu bytes, expected %zu\n", PROGRAM, sample->bytes, sizeof(Imu));
    return 0;
  }
  if ((uintptr_t)sample->payload % IMU_ALIGN != 0) {
    fprintf(stderr, "%s: payload %p is not aligned to %zu\n", PROGRAM, sample->payload,
            (size_t)IMU_ALIGN);
    return 0;
  }
  stream *s = find_stream(t, sample->publisher_id);
  if (s == NULL) {
    fprintf(stderr, "%s: more than %d publishers\n", PROGRAM, MAX_PUBLISHERS);
    return 0;
  }
  if (s->next_sequence != UINT64_MAX) {
    if (sample->sequence < s->next_sequence) {
      fprintf(stderr, "%s: publisher %llu: sequence %llu after %llu: not increasing\n", PROGRAM,
              (unsigned long long)s->publisher_id, (unsigned long long)sample->sequence,
              (unsigned long long)(s->next_sequence - 1));
      return 0;
    }
    t->gaps += sample->sequence - s->next_sequence;
  }
  s->next_sequence = sample->sequence + 1;

  /* Read in place: the payload is the publisher's shared memory, mapped
   * read-only here, and stays put until we release it. */
  const Imu *imu = (const Imu *)sample->payload;
  /* Our publisher publishes every reading it loans, so its reading counter
   * and the sample's sequence number agree. */
  if (imu->counter != sample->sequence || !imu_check(imu, imu->counter)) {
    fprintf(stderr, "%s: sample %llu holds reading %llu, or its values are wrong\n", PROGRAM,
            (unsigned long long)sample->sequence, (unsigned long long)imu->counter);
    return 0;
  }
  /* The sample is stamped when published, after the sensor was read. */
  if (sample->timestamp_ns < imu->timestamp_ns) {
    fprintf(stderr, "%s: sample %llu published before it was read\n", PROGRAM,
            (unsigned long long)sample->sequence);
    return 0;
  }
  t->received++;
  return 1;
}

int main(int argc, char **argv) {
  uint64_t count = 1000;
  const char *service = IMU_DEFAULT_SERVICE;
  if (argc > 3 || (argc > 1 && !parse_count(argv[1], &count))) {
    fprintf(stderr,
            "usage: %s [COUNT] [SERVICE]\n"
            "  COUNT    samples to account for, 1 or more (default 1000)\n"
            "  SERVICE  service name (default \"%s\")\n"
            "  The domain is $SHMBUS_DOMAIN, else \"default\".\n",
            PROGRAM, IMU_DEFAULT_SERVICE);
    return 2;
  }
  if (argc > 2) service = argv[2];

  catch_signals();
  int status = 1;
  shmbus_node *node = NULL;
  shmbus_subscriber *sub = NULL;
  shmbus_service_opts opts = imu_service_opts();
  static tally t; /* zeroed */
  uint64_t lost = 0;

  int r = shmbus_node_open(NULL, &node);
  if (r != 0) {
    report("shmbus_node_open", r);
    goto done;
  }
  /* Creates the service if no publisher has yet: either side may start
   * first, as long as both ask for the same options (imu_service_opts). */
  r = shmbus_subscriber_open(node, service, &opts, &sub);
  if (r != 0) {
    report("shmbus_subscriber_open", r);
    goto done;
  }
  printf("%s: waiting for %llu samples on '%s' (domain '%s')\n", PROGRAM, (unsigned long long)count,
         service, shmbus_node_domain(node));
  fflush(stdout);

  uint64_t last_progress = now_ns();
  while (t.received + lost < count) {
    if (interrupted) {
      fprintf(stderr, "%s: interrupted: %llu received, %llu lost, %llu expected\n", PROGRAM,
              (unsigned long long)t.received, (unsigned long long)lost, (unsigned long long)count);
      goto done;
    }
    shmbus_sample sample;
    r = shmbus_subscriber_take(sub, &sample);
    if (r == 0) {
      int ok = check_sample(&t, &sample);
      /* Every taken sample goes back, right or wrong: the publisher reuses
       * its memory only once all subscribers have released it. */
      int rr = shmbus_subscriber_release(sub, &sample);
      if (rr != 0) {
        report("shmbus_subscriber_release", rr);
        goto done;
      }
      if (!ok) goto done;
      last_progress = now_ns();
      continue;
    }
    if (r != SHMBUS_ERR_EMPTY) {
      report("shmbus_subscriber_take", r);
      goto done;
    }
    /* Nothing queued. Samples the publisher had to drop because our queue
     * was full count towards COUNT too. */
    uint64_t now_lost = shmbus_subscriber_lost(sub);
    if (now_lost != lost) {
      lost = now_lost;
      last_progress = now_ns();
    }
    if (now_ns() - last_progress > PROGRESS_TIMEOUT_NS) {
      fprintf(stderr,
              "%s: no sample for %llu s: %llu received, %llu lost, %llu expected "
              "(is shmbus-example-publisher running in domain '%s'?)\n",
              PROGRAM, (unsigned long long)(PROGRESS_TIMEOUT_NS / 1000 / MS),
              (unsigned long long)t.received, (unsigned long long)lost, (unsigned long long)count,
              shmbus_node_domain(node));
      goto done;
    }
    /* Sleeps until a sample arrives (a publisher wakes us only while we
     * sleep), at most 100 ms so that signals and the idle limit are seen. A
     * program that must react faster spins first: shmbus_subscriber_set_spin. */
    r = shmbus_subscriber_wait(sub, (int64_t)(100 * MS));
    if (r != 0 && r != SHMBUS_ERR_TIMEDOUT && r != SHMBUS_ERR_NO_PUBLISHER) {
      report("shmbus_subscriber_wait", r);
      goto done;
    }
  }

  printf("%s: %llu of %llu samples received, %llu lost, from %u publisher(s)\n", PROGRAM,
         (unsigned long long)t.received, (unsigned long long)count, (unsigned long long)lost,
         t.nstreams);
  /* Every skipped sequence number must have been counted as lost: a sample
   * that vanished without a trace is a bug. */
  if (t.gaps > lost) {
    fprintf(stderr, "%s: %llu samples missing between those received, only %llu counted lost\n",
            PROGRAM, (unsigned long long)t.gaps, (unsigned long long)lost);
    goto done;
  }
  if (t.received == 0) {
    fprintf(stderr, "%s: every sample was lost\n", PROGRAM);
    goto done;
  }
  status = 0;

done:
  shmbus_subscriber_close(sub);
  shmbus_node_close(node);
  return status;
}

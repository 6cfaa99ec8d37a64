/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sample type the examples share: one reading of an inertial
 * measurement unit (IMU), as a sensor driver would publish it.
 *
 * A type that travels through shared memory is plain data: fixed-width
 * fields, no pointers, the same layout in every process (C and C++, 32 and
 * 64 bits), and a type name that every port of the service agrees on.
 *
 * The examples fill the fields from the sample counter only (imu_fill), so a
 * subscriber can check that what it reads is exactly what was written
 * (imu_check). The values are exact in binary floating point, so the
 * comparison is bit for bit.
 */
#ifndef SHMBUS_EXAMPLES_IMU_H
#define SHMBUS_EXAMPLES_IMU_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <shmbus.h>

/* The type name every port of an Imu service gives (checked on open). */
#define IMU_TYPE_NAME "shmbus/examples/Imu"
/* The service the C publisher and subscriber use unless told otherwise. */
#define IMU_DEFAULT_SERVICE "shmbus/examples/imu"
/* Deep enough that a subscriber that polls with short sleeps keeps up with
 * the examples' publishing pace; overflow still drops the oldest. */
#define IMU_QUEUE_DEPTH 256u

/* Laid out the same in every ABI (shmbus.h, "Sample types"): a 32-bit and
 * a 64-bit build of a driver and its consumers share the service. */
typedef struct Imu {
  SHMBUS_ALIGNAS(8) uint64_t timestamp_ns; /* when read (CLOCK_MONOTONIC) */
  uint64_t counter;                        /* readings since the start, from 0 */
  float accel[3];                          /* m/s^2, x y z                */
  float gyro[3];                           /* rad/s, x y z                */
} Imu;
SHMBUS_ASSERT_LAYOUT(Imu, 40, 8);
SHMBUS_ASSERT_OFFSET(Imu, accel, 16);
SHMBUS_ASSERT_OFFSET(Imu, gyro, 28);

#ifdef __cplusplus
#define IMU_ALIGN alignof(Imu)
#else
#define IMU_ALIGN _Alignof(Imu)
#endif

/* The service options every Imu port uses. All ports must ask for the same
 * limits: whichever opens the service first creates it with its options,
 * and a later port that asks for more (a deeper queue, say) is refused with
 * SHMBUS_ERR_INCOMPATIBLE. */
static inline shmbus_service_opts imu_service_opts(void) {
  shmbus_service_opts opts = SHMBUS_SERVICE_OPTS_INIT;
  opts.type.name = IMU_TYPE_NAME;
  opts.type.size = sizeof(Imu);
  opts.type.align = IMU_ALIGN;
  opts.queue_depth = IMU_QUEUE_DEPTH;
  opts.overflow = SHMBUS_OVERFLOW_DROP_OLDEST;
  return opts;
}

/* Writes reading number `counter`: a made-up but deterministic motion. All
 * values are small integers divided by a power of two: exact in a float. */
static inline void imu_fill(Imu *imu, uint64_t counter, uint64_t timestamp_ns) {
  imu->timestamp_ns = timestamp_ns;
  imu->counter = counter;
  imu->accel[0] = (float)(counter % 1024u) / 64.0f;
  imu->accel[1] = -(float)(counter % 37u) / 8.0f;
  imu->accel[2] = 9.8125f;
  imu->gyro[0] = (float)(counter % 360u) / 256.0f;
  imu->gyro[1] = (float)((counter / 7u) % 100u) / 128.0f;
  imu->gyro[2] = -(float)((counter / 3u) % 50u) / 32.0f;
}

/* 1 when `imu` holds exactly what imu_fill writes for reading `counter`. */
static inline int imu_check(const Imu *imu, uint64_t counter) {
  Imu expected;
  imu_fill(&expected, counter, imu->timestamp_ns);
  /* Bit for bit: the values are exact (see imu_fill), and a NaN or any
   * other stray bit pattern is caught too. */
  return imu->counter == expected.counter &&
         memcmp(imu->accel, expected.accel, sizeof expected.accel) == 0 &&
         memcmp(imu->gyro, expected.gyro, sizeof expected.gyro) == 0;
}

#endif /* SHMBUS_EXAMPLES_IMU_H */

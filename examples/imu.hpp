// SPDX-License-Identifier: Apache-2.0
//
// The Imu sample type of examples/imu.h, for the C++ examples: the same
// struct and options as the C programs use, so that C and C++ drivers and
// consumers of it work together. The name is the one the C side gives in
// its shmbus_type (IMU_TYPE_NAME).
#ifndef SHMBUS_EXAMPLES_IMU_HPP
#define SHMBUS_EXAMPLES_IMU_HPP

#include <shmbus.hpp>

#include "imu.h"

SHMBUS_TYPE_NAME(Imu, IMU_TYPE_NAME);

namespace example {

// imu_service_opts() of imu.h: its type is checked against Imu's.
inline shmbus::ServiceOptions imu_options() { return shmbus::ServiceOptions(imu_service_opts()); }

} // namespace example

#endif // SHMBUS_EXAMPLES_IMU_HPP

# SPDX-License-Identifier: Apache-2.0
#
# Finds libatomic_ops (https://github.com/ivmai/libatomic_ops; Debian:
# libatomic-ops-dev), using its pkg-config module `atomic_ops` as a hint.
#
# Result: AtomicOps_FOUND, AtomicOps_INCLUDE_DIR, AtomicOps_LIBRARY,
# AtomicOps_VERSION and the imported target AtomicOps::AtomicOps.
# Installed next to shmbusConfig.cmake, which uses it for the static library
# when shmbus was built with SHMBUS_ATOMICS=libatomic_ops.

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_AtomicOps QUIET atomic_ops)
endif()

find_path(AtomicOps_INCLUDE_DIR
  NAMES atomic_ops.h
  HINTS ${PC_AtomicOps_INCLUDEDIR} ${PC_AtomicOps_INCLUDE_DIRS})
find_library(AtomicOps_LIBRARY
  NAMES atomic_ops libatomic_ops
  HINTS ${PC_AtomicOps_LIBDIR} ${PC_AtomicOps_LIBRARY_DIRS})
set(AtomicOps_VERSION "${PC_AtomicOps_VERSION}")

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(AtomicOps
  REQUIRED_VARS AtomicOps_LIBRARY AtomicOps_INCLUDE_DIR
  VERSION_VAR AtomicOps_VERSION)

if(AtomicOps_FOUND AND NOT TARGET AtomicOps::AtomicOps)
  add_library(AtomicOps::AtomicOps UNKNOWN IMPORTED)
  set_target_properties(AtomicOps::AtomicOps PROPERTIES
    IMPORTED_LOCATION "${AtomicOps_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${AtomicOps_INCLUDE_DIR}")
endif()

mark_as_advanced(AtomicOps_INCLUDE_DIR AtomicOps_LIBRARY)

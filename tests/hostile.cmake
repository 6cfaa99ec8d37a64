# SPDX-License-Identifier: Apache-2.0
#
# Regression tests of the hostile-peer findings (docs/security.md), label
# hostile (also run under ASan+UBSan by scripts/test.sh):
#   test_hostile_layout  what a peer writes into segments and under object
#                        names: configs and sizes read twice, eviction of a
#                        chunk that is not in flight, FIFOs and links
#   test_hostile_timing  waits a peer can provoke: connecting on the hot
#                        path, unchecked deadlines, unbounded loops
#   test_hostile_truncate segments truncated under live ports (SIGBUS)
# Included by tests/CMakeLists.txt after it defines shmbus_add_test().

# Linux only: /dev/shm, /proc/<pid>/maps, abstract sockets.
if(NOT CMAKE_SYSTEM_NAME STREQUAL "Linux")
  return()
endif()

set(_shmbus_hostile_dir "${CMAKE_CURRENT_LIST_DIR}")
foreach(_t test_hostile_layout test_hostile_timing test_hostile_truncate)
  if(EXISTS "${_shmbus_hostile_dir}/${_t}.c")
    shmbus_add_test(${_t}
      SOURCES "${_shmbus_hostile_dir}/${_t}.c" ${SHMBUS_TEST_SUPPORT}
      LABELS hostile
      TIMEOUT 180)
  endif()
endforeach()

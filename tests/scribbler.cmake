# SPDX-License-Identifier: Apache-2.0
#
# Hostile and buggy peers against live services (tests/test_scribbler.c),
# label hostile (scripts/test.sh also runs it under ASan+UBSan):
#   scribbler    2 publisher and 3 subscriber processes on two services
#                (drop-oldest and BLOCK) while 2 attacker processes scribble,
#                truncate, replace and unlink segments, swap in FIFOs and
#                links, forge slots, sizes and rings and churn generations;
#                victims must not die, hang or overrun a timeout by more than
#                10 ms plus the measured scheduling delay
#   confinement  a buggy subscriber writes into everything the library mapped
#                writable for it; 3 honest subscribers must receive every
#                sample (sequence and CRC32C), with zero loss
# Both on the shm and the directory backend: about 20 s of scribbling
# (SCRIBBLER_SECONDS, the total over both backends) plus about 6 s of
# confinement (CONFINE_SAMPLES, CONFINE_RATE). Other knobs: SCRIBBLER_ATTACKS
# (a comma-separated subset of the attack kinds), SCRIBBLER_HANG_S,
# SCRIBBLER_FILTER (cmocka filter), SCRIBBLER_VERBOSE. A run 10x longer:
#   SCRIBBLER_SECONDS=200 build/<dir>/tests/test_scribbler
# (or ctest --timeout 600 -R test_scribbler with the variable set).
# Linux only (/dev/shm, /proc/self/maps, futexes).
# Included by tests/CMakeLists.txt after it defines shmbus_add_test().

if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  find_package(Threads REQUIRED)
  set(_shmbus_scribbler_dir "${CMAKE_CURRENT_LIST_DIR}")
  shmbus_add_test(test_scribbler
    SOURCES "${_shmbus_scribbler_dir}/test_scribbler.c" ${SHMBUS_TEST_SUPPORT}
    LABELS hostile
    TIMEOUT 300)
  target_link_libraries(test_scribbler PRIVATE Threads::Threads)
endif()

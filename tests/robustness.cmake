# SPDX-License-Identifier: Apache-2.0
#
# Robustness tests (tests/test_robustness.c): real processes that are
# SIGKILLed, SIGSTOPped, race to create services, run out of space, lack
# permissions; a 1000-kill loop and a CRC32C integrity run of 10^7 samples.
# Included by tests/CMakeLists.txt after it defines shmbus_add_test().
# Linux only (/dev/shm, mount, prctl). About 40 s on 2 cores; some cases
# use root (a tmpfs mount, switching to user nobody) and skip otherwise.
#
# Development knobs (environment): RB_FILTER (cmocka glob), RB_KILLS,
# RB_SAMPLES, RB_ROUNDS.

if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  shmbus_add_test(test_robustness
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_robustness.c ${SHMBUS_TEST_SUPPORT}
    LABELS robustness
    TIMEOUT 600)
  # dlsym(RTLD_NEXT): the test interposes shm_unlink (fault injection).
  target_link_libraries(test_robustness PRIVATE ${CMAKE_DL_LIBS})
endif()

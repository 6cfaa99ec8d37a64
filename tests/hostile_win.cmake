# SPDX-License-Identifier: Apache-2.0
#
# Hostile peers on Windows (docs/windows-plan.md §2.4, docs/security.md §10),
# label hostile: squatters under section and event names (SEC_RESERVE
# sections, events, mutexes), flooded events, a held REMOVING section, shared
# words forged across processes, truncating and deleting mapped files, and
# processes killed asleep. The POSIX hostile suites (hostile.cmake) are
# Linux's. Included by tests/CMakeLists.txt after it defines
# shmbus_add_test(), before its `if(WIN32) return()`; runs under wine when
# cross-built (about 20 s).
if(NOT WIN32)
  return()
endif()

shmbus_add_test(test_hostile_win
  SOURCES "${CMAKE_CURRENT_LIST_DIR}/test_hostile_win.c" ${SHMBUS_TEST_SUPPORT}
  LABELS hostile
  TIMEOUT 300)

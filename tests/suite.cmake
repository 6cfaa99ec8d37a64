# SPDX-License-Identifier: Apache-2.0
#
# The core's cmocka tests, included by tests/CMakeLists.txt after it defines
# shmbus_add_test(). Each test is one executable of several cmocka cases:
#
#   test_units         unit         internals: pool, rings (tag wrap), layout,
#                                   names, segment headers, port registry
#   test_api           api          bad input and every error code, forged
#                                   segments, node tokens (about 4 s: one case
#                                   waits out the 2 s init timeout twice)
#   test_pubsub        pubsub       in-process publish/subscribe, threads,
#                                   the pool's worst case; both backends
#   test_multiprocess  multiprocess forked publishers and subscribers: streams
#                                   with exact loss accounting, history,
#                                   overflow, read-only payloads, killed
#                                   processes; both backends
#
# Every case runs in a fresh domain and fails if it leaves an object in
# /dev/shm or in its temporary directory (tests/support.c).
# On Windows the same suites run under wine (support_win.c starts children
# with CreateProcessW): see the WIN32 notes in tests/CMakeLists.txt.

set(_shmbus_suite_dir "${CMAKE_CURRENT_LIST_DIR}")
set(_shmbus_support ${SHMBUS_TEST_SUPPORT})

shmbus_add_test(test_units
  SOURCES "${_shmbus_suite_dir}/test_units.c" ${_shmbus_support}
  LABELS unit
  TIMEOUT 60)

# test_api forges segments through the hostile-peer helpers of support.h
# (on Windows: sections and files), so it runs on both OSes; the cases that
# cannot apply on Windows skip with their reason.
shmbus_add_test(test_api
  SOURCES "${_shmbus_suite_dir}/test_api.c" ${_shmbus_support}
  LABELS api
  TIMEOUT 120)

shmbus_add_test(test_pubsub
  SOURCES "${_shmbus_suite_dir}/test_pubsub.c" ${_shmbus_support}
  LABELS pubsub
  TIMEOUT 120)

shmbus_add_test(test_multiprocess
  SOURCES "${_shmbus_suite_dir}/test_multiprocess.c" ${_shmbus_support}
  LABELS multiprocess
  TIMEOUT 300)

# test_wait  wait, threads (also under TSan)  blocking waits, wait sets, the pollable descriptor and the
#                  BLOCK overflow policy between processes (about 15 s: 10^5
#                  sleeping ping-pong cycles, 10^6 samples under backpressure)
shmbus_add_test(test_wait
  SOURCES "${_shmbus_suite_dir}/test_wait.c" ${_shmbus_support}
  LABELS wait threads
  TIMEOUT 300)

# test_introspect  introspect  shmbus_service_list and _describe: services,
#                  ports (a killed child's as dead), per-connection counts,
#                  no trace left, forged configurations and words. Its
#                  --serve modes keep services open for cli_introspect, the
#                  `shmbus list|info --json` test (POSIX: a shell script
#                  that kills with kill -9; skipped without python3).
shmbus_add_test(test_introspect
  SOURCES "${_shmbus_suite_dir}/test_introspect.c" ${_shmbus_support}
  LABELS introspect
  TIMEOUT 120)
if(UNIX)
  add_test(NAME cli_introspect
    COMMAND "${_shmbus_suite_dir}/cli_introspect.sh" $<TARGET_FILE:shmbus-cli>
            $<TARGET_FILE:test_introspect>)
  set_tests_properties(cli_introspect PROPERTIES
    LABELS "introspect;cli" SKIP_RETURN_CODE 77 TIMEOUT 120)
  # cli_stream     cli  shmbus echo, hz and pub against each other: what
  #                     echo prints (JSON, hex, --format), hz within 5% of a
  #                     200 Hz publisher, pub's errors, a corrupt and a
  #                     truncated service object (a shell script; python3)
  add_test(NAME cli_stream
    COMMAND "${_shmbus_suite_dir}/cli_stream.sh" $<TARGET_FILE:shmbus-cli>)
  set_tests_properties(cli_stream PROPERTIES
    LABELS "cli" SKIP_RETURN_CODE 77 TIMEOUT 120)
elseif(WIN32 AND CMAKE_CROSSCOMPILING_EMULATOR)
  # The same under the emulator (wine): bash runs on the host.
  list(GET CMAKE_CROSSCOMPILING_EMULATOR 0 _shmbus_cli_emulator)
  add_test(NAME cli_stream
    COMMAND bash "${_shmbus_suite_dir}/cli_stream.sh" $<TARGET_FILE:shmbus-cli>)
  set_tests_properties(cli_stream PROPERTIES
    LABELS "cli" SKIP_RETURN_CODE 77 TIMEOUT 300
    ENVIRONMENT "SHMBUS_EMULATOR=${_shmbus_cli_emulator}")
endif()

# cli_record  cli  `shmbus record` and `shmbus replay` against recordings that
#                  python3 writes and parses from docs/record-format.md: 10^5
#                  samples there and back, the original timing, damaged files,
#                  errors and SIGINT (POSIX shell; skipped without python3).
if(UNIX)
  add_test(NAME cli_record
    COMMAND "${_shmbus_suite_dir}/cli_record.sh" $<TARGET_FILE:shmbus-cli>)
  set_tests_properties(cli_record PROPERTIES
    LABELS "cli" SKIP_RETURN_CODE 77 TIMEOUT 300)
endif()

# cli_manpage  cli, docs  docs/shmbus.1 renders without a groff warning and
#                  names every command of `shmbus --help` and every option of
#                  each `shmbus COMMAND --help`, and no option a command does
#                  not take (skipped without groff: groff-base).
if(UNIX)
  add_test(NAME cli_manpage
    COMMAND "${_shmbus_suite_dir}/cli_manpage.sh" $<TARGET_FILE:shmbus-cli>
            "${PROJECT_SOURCE_DIR}/docs/shmbus.1")
  set_tests_properties(cli_manpage PROPERTIES
    LABELS "cli;docs" SKIP_RETURN_CODE 77 TIMEOUT 60)
endif()

# SPDX-License-Identifier: Apache-2.0
#
# Mixed 32/64-bit ABI tests (issue 11), label abi:
#   shmbus_abi_peer  tests/abi_peer.c, built in every build: the layout
#                    printer, the segment sizer and the publisher and
#                    subscriber of a sample type laid out the same in every
#                    ABI (roles by argv; see the top of the file)
#   test_abi         tests/test_abi.c: runs this build's peer against the
#                    other ABI's, both backends: identical layouts and
#                    segment sizes, 10^6 samples each way (sequence, CRC32C
#                    and fields checked; subscribers polling, asleep in
#                    shmbus_subscriber_wait, in a wait set), history and
#                    take_latest across, SIGKILLed subscribers reclaimed by
#                    the other ABI's publisher, no leftovers
# The other ABI's peer is the cache variable SHMBUS_ABI_PEER, e.g.
#   cmake --build build/test-m32 --target shmbus_abi_peer
#   cmake -B build/test -DSHMBUS_ABI_PEER=$PWD/build/test-m32/tests/shmbus_abi_peer
# (scripts/test.sh does). Without it test_abi exits 77 (skipped) and says
# so. About 30 s on 2 cores; ABI_SAMPLES lowers the 10^6 samples of the
# streams for quick local runs, ABI_FILTER selects cases (cmocka glob).
# Linux only (/dev/shm, futexes, wait sets). Included by
# tests/CMakeLists.txt after it defines shmbus_add_test().

if(NOT CMAKE_SYSTEM_NAME STREQUAL "Linux")
  return()
endif()

set(SHMBUS_ABI_PEER "" CACHE FILEPATH
  "shmbus_abi_peer of a build of the other ABI (32-bit for a 64-bit build and the
  reverse) that test_abi runs against; empty: test_abi is skipped")

set(_shmbus_abi_dir "${CMAKE_CURRENT_LIST_DIR}")

# The peer: linked like the tests (static library with the internals for the
# layout role, support.c for CRC32C and leftovers, cmocka for support.c).
add_executable(shmbus_abi_peer
  "${_shmbus_abi_dir}/abi_peer.c" ${SHMBUS_TEST_SUPPORT})
target_link_libraries(shmbus_abi_peer PRIVATE
  shmbus::shmbus_static shmbus_internal ${SHMBUS_CMOCKA_TARGET})
set_target_properties(shmbus_abi_peer PROPERTIES
  C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)

if(SHMBUS_ABI_PEER)
  set(_shmbus_abi_args ARGS "${SHMBUS_ABI_PEER}")
else()
  set(_shmbus_abi_args) # no other peer: the test explains and exits 77
endif()
shmbus_add_test(test_abi
  SOURCES "${_shmbus_abi_dir}/test_abi.c" ${SHMBUS_TEST_SUPPORT}
  LABELS abi
  TIMEOUT 240
  DEPENDS shmbus_abi_peer
  ${_shmbus_abi_args})
target_compile_definitions(test_abi PRIVATE
  SHMBUS_ABI_OWN_PEER="$<TARGET_FILE:shmbus_abi_peer>")

# Multi-threaded variants of the concurrency tests (the TSan suite runs -L threads).
shmbus_add_test(test_threads
  SOURCES "${CMAKE_CURRENT_LIST_DIR}/test_threads.c" ${SHMBUS_TEST_SUPPORT}
  LABELS threads
  TIMEOUT 300)

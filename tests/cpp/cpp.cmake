# SPDX-License-Identifier: Apache-2.0
#
# The tests of the C++ API (include/shmbus.hpp), included by
# tests/CMakeLists.txt when C++ is enabled. Every test has the label "cpp".
#
#   header_hpp_cpp<N>[_noexc]  header   <shmbus.hpp> alone as C++11/14/17/20,
#                                       with exceptions, and without
#                                       exceptions and RTTI; -Wall -Wextra
#                                       -Werror -pedantic; every template
#                                       instantiated, one round trip
#   cpp_compile_fail_<what>    header   what must not compile, with the
#                                       message it must give (compile_fail.cpp)
#   cpp_<suite>                cpp      the doctest suite (test_*.cpp), one
#                                       ctest per doctest test suite: ownership,
#                                       errors, slices, wait, waitset,
#                                       multiprocess, hostile
#
# The doctest suite is C++17 (its cases use the C++17 additions); the
# header tests cover the other standards. Needs doctest (Debian:
# doctest-dev, installed by scripts/deps.sh).

set(_shmbus_cpp_dir "${CMAKE_CURRENT_LIST_DIR}")

if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  set(_shmbus_cpp_strict -Wall -Wextra -Werror -pedantic)
  set(_shmbus_cpp_noexc -fno-exceptions -fno-rtti)
  if(SHMBUS_SANITIZE STREQUAL "address")
    list(APPEND _shmbus_cpp_noexc -fno-sanitize=vptr)  # needs RTTI
  endif()
else()
  set(_shmbus_cpp_strict)
  set(_shmbus_cpp_noexc)
endif()

# ---- header tests --------------------------------------------------------------

foreach(_std 11 14 17 20)
  foreach(_exc on off)
    set(_name header_hpp_cpp${_std})
    if(_exc STREQUAL "off")
      set(_name ${_name}_noexc)
    endif()
    add_executable(shmbus_${_name} "${_shmbus_cpp_dir}/header_hpp.cpp")
    target_link_libraries(shmbus_${_name} PRIVATE shmbus::shmbus)
    target_compile_options(shmbus_${_name} PRIVATE ${_shmbus_cpp_strict})
    if(_exc STREQUAL "off")
      target_compile_options(shmbus_${_name} PRIVATE ${_shmbus_cpp_noexc})
    endif()
    set_target_properties(shmbus_${_name} PROPERTIES
      CXX_STANDARD ${_std} CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF)
    add_test(NAME ${_name} COMMAND shmbus_${_name})
    set_tests_properties(${_name} PROPERTIES LABELS "header;cpp" TIMEOUT 30)
  endforeach()
endforeach()

# ---- what must not compile ---------------------------------------------------------
# case number, name, the message (extended regex), extra flags.

set(_shmbus_cpp_fail_cases
  "1|not_trivially_copyable|must be trivially copyable and standard layout, because other processes|"
  "2|virtual_functions|must be trivially copyable and standard layout|"
  "3|no_type_name|the sample type has no name: give it one|"
  "4|pointer|a pointer or reference cannot be a sample|"
  "5|fixed_size_array|not a fixed-size array: wrap it in a struct|"
  "6|sample_copy|delete|"
  "7|loan_copy|delete|"
  "8|empty_type_name|a type name has 1 to SHMBUS_TYPE_NAME_MAX|"
  "9|throwing_call_without_exceptions|no member named .?loan|-fno-exceptions"
  "10|publish_lvalue_loan|rvalue reference|no (viable|matching)|"
  "11|sample_is_read_only|read-only|const-qualified|const value|")
foreach(_case IN LISTS _shmbus_cpp_fail_cases)
  string(REPLACE "|" ";" _fields "${_case}")
  list(GET _fields 0 _num)
  list(GET _fields 1 _what)
  list(LENGTH _fields _nfields)
  math(EXPR _last "${_nfields} - 1")
  list(GET _fields ${_last} _flags)
  # The regex is everything between the name and the flags (it may hold |).
  set(_regex_parts)
  math(EXPR _rlast "${_last} - 1")
  foreach(_i RANGE 2 ${_rlast})
    list(GET _fields ${_i} _p)
    list(APPEND _regex_parts "${_p}")
  endforeach()
  string(JOIN "|" _regex ${_regex_parts})
  separate_arguments(_flag_list UNIX_COMMAND "${_flags}")
  add_test(NAME cpp_compile_fail_${_what}
    COMMAND sh "${_shmbus_cpp_dir}/compile_fail.sh" "${CMAKE_CXX_COMPILER}"
      "${_shmbus_cpp_dir}/compile_fail.cpp" "${PROJECT_SOURCE_DIR}/include" ${_num}
      "${_regex}" -std=c++17 ${_flag_list})
  set_tests_properties(cpp_compile_fail_${_what} PROPERTIES LABELS "header;cpp" TIMEOUT 60)
endforeach()

# ---- the doctest suite --------------------------------------------------------------

find_package(doctest CONFIG QUIET)
if(TARGET doctest::doctest)
  set(_shmbus_doctest doctest::doctest)
else()
  find_path(SHMBUS_DOCTEST_INCLUDE_DIR doctest/doctest.h)
  if(NOT SHMBUS_DOCTEST_INCLUDE_DIR)
    message(FATAL_ERROR "doctest not found: install it (scripts/deps.sh; Debian: "
      "doctest-dev) or configure with -DSHMBUS_BUILD_TESTS=OFF")
  endif()
  add_library(shmbus_doctest INTERFACE)
  target_include_directories(shmbus_doctest SYSTEM INTERFACE "${SHMBUS_DOCTEST_INCLUDE_DIR}")
  set(_shmbus_doctest shmbus_doctest)
endif()

# The C side of the C/C++ exchanges (exec'd by the suite).
add_executable(shmbus-cpp-test-c-peer "${_shmbus_cpp_dir}/c_peer.c" "${_shmbus_cpp_dir}/peer_type.h")
target_link_libraries(shmbus-cpp-test-c-peer PRIVATE shmbus::shmbus)
set_target_properties(shmbus-cpp-test-c-peer PROPERTIES
  C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)

find_package(Threads REQUIRED)
add_executable(shmbus_test_cpp
  "${_shmbus_cpp_dir}/test_main.cpp"
  "${_shmbus_cpp_dir}/test_ownership.cpp"
  "${_shmbus_cpp_dir}/test_errors.cpp"
  "${_shmbus_cpp_dir}/test_slices.cpp"
  "${_shmbus_cpp_dir}/test_wait.cpp"
  "${_shmbus_cpp_dir}/test_waitset.cpp"
  "${_shmbus_cpp_dir}/test_multiprocess.cpp"
  "${_shmbus_cpp_dir}/test_hostile.cpp"
  "${_shmbus_cpp_dir}/support.hpp"
  "${_shmbus_cpp_dir}/peer_type.h")
target_link_libraries(shmbus_test_cpp PRIVATE shmbus::shmbus ${_shmbus_doctest} Threads::Threads)
target_compile_options(shmbus_test_cpp PRIVATE ${_shmbus_cpp_strict})
target_compile_definitions(shmbus_test_cpp PRIVATE
  SHMBUS_CPP_TEST_C_PEER="$<TARGET_FILE:shmbus-cpp-test-c-peer>")
set_target_properties(shmbus_test_cpp PROPERTIES
  CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF)
add_dependencies(shmbus_test_cpp shmbus-cpp-test-c-peer)

# One ctest per doctest test suite; a suite that matches no case fails.
foreach(_suite ownership errors slices wait waitset multiprocess hostile)
  add_test(NAME cpp_${_suite} COMMAND shmbus_test_cpp --test-suite=${_suite})
  set(_labels cpp)
  if(_suite STREQUAL "multiprocess" OR _suite STREQUAL "hostile")
    list(APPEND _labels ${_suite})
  endif()
  set_tests_properties(cpp_${_suite} PROPERTIES
    LABELS "${_labels}"
    TIMEOUT 300
    FAIL_REGULAR_EXPRESSION "test cases: +0 ")
endforeach()

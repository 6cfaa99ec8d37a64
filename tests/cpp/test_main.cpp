// SPDX-License-Identifier: Apache-2.0
// The C++ suite's runner (doctest). Cases: tests/cpp/test_*.cpp; ctest runs
// it once per test suite (tests/cpp/cpp.cmake).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

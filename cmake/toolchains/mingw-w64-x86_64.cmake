# SPDX-License-Identifier: Apache-2.0
# 64-bit Windows cross-build on a Debian host with MinGW-w64 (the posix
# thread flavour: gcc-mingw-w64-x86-64-posix, g++-mingw-w64-x86-64-posix,
# which bring winpthreads for the tests) and wine64 to run the tests; a
# cmocka cross-built by scripts/win-deps.sh:
#   scripts/win-deps.sh                      # prints the prefix, build/win-deps/prefix
#   cmake -S . -B build/win --toolchain cmake/toolchains/mingw-w64-x86_64.cmake \
#         -DSHMBUS_WIN_DEPS=$PWD/build/win-deps/prefix
#   cmake --build build/win && ctest --test-dir build/win -j1
#   scripts/wine-run.sh --stop               # stop the persistent wineserver
# ctest runs the tests through scripts/wine-run.sh
# (CMAKE_CROSSCOMPILING_EMULATOR), which creates the wine prefix
# (build/wine-prefix, or $SHMBUS_WINEPREFIX) on first use and keeps one
# wineserver running, so that all test processes share its named objects.
# Wine is not Windows: see docs/windows-plan.md ("Wine limitations").
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(_shmbus_mingw x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${_shmbus_mingw}-gcc-posix)
set(CMAKE_CXX_COMPILER ${_shmbus_mingw}-g++-posix)
set(CMAKE_RC_COMPILER ${_shmbus_mingw}-windres)

# The prefix that holds the cross-built test dependencies (cmocka).
# try_compile projects re-read this file without the cache: pass it on.
set(SHMBUS_WIN_DEPS "${SHMBUS_WIN_DEPS}" CACHE PATH
  "Prefix of the cross-built Windows dependencies (cmocka), from scripts/win-deps.sh")
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES SHMBUS_WIN_DEPS)

# Appended, so that -DCMAKE_FIND_ROOT_PATH=<prefix> finds an installed
# shmbus (find_package(shmbus) of a consumer project).
list(APPEND CMAKE_FIND_ROOT_PATH /usr/${_shmbus_mingw})
if(SHMBUS_WIN_DEPS)
  list(APPEND CMAKE_FIND_ROOT_PATH "${SHMBUS_WIN_DEPS}")
  list(APPEND CMAKE_PREFIX_PATH "${SHMBUS_WIN_DEPS}")
endif()
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config must find the Windows .pc files only, never the host's (the
# host's libcmocka-dev has a cmocka.pc too).
set(_shmbus_pc "/usr/${_shmbus_mingw}/lib/pkgconfig")
if(SHMBUS_WIN_DEPS)
  set(_shmbus_pc "${SHMBUS_WIN_DEPS}/lib/pkgconfig:${_shmbus_pc}")
endif()
set(ENV{PKG_CONFIG_LIBDIR} "${_shmbus_pc}")
unset(ENV{PKG_CONFIG_PATH})

get_filename_component(_shmbus_wine_run
  "${CMAKE_CURRENT_LIST_DIR}/../../scripts/wine-run.sh" ABSOLUTE)
set(CMAKE_CROSSCOMPILING_EMULATOR "${_shmbus_wine_run}")

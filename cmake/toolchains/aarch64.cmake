# SPDX-License-Identifier: Apache-2.0
# aarch64 cross-build on an x86-64 Debian host (gcc-aarch64-linux-gnu,
# g++-aarch64-linux-gnu, qemu-user, and libcmocka-dev:arm64 through
# multiarch):
#   cmake -S . -B build/test-aarch64 --toolchain cmake/toolchains/aarch64.cmake
# ctest runs the tests under qemu-aarch64 (CMAKE_CROSSCOMPILING_EMULATOR).
# That checks code generation, alignment and the 64-bit ABI on another
# architecture; qemu-user runs the guest's threads on the host's memory
# model, so it does not check weak memory ordering.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu)
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

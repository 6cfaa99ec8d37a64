# SPDX-License-Identifier: Apache-2.0
# 32-bit x86 build on an x86-64 Debian host (gcc-multilib, g++-multilib and
# the i386 libraries through multiarch, e.g. libcmocka-dev:i386):
#   cmake -S . -B build/test-m32 --toolchain cmake/toolchains/i386.cmake
# The binaries run natively. -march=i686 is Debian i386's baseline; 64-bit
# atomics are then lock-free through cmpxchg8b (checked at configure time).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR i686)
set(CMAKE_C_COMPILER gcc)
set(CMAKE_CXX_COMPILER g++)
set(CMAKE_C_FLAGS_INIT "-m32 -march=i686")
set(CMAKE_CXX_FLAGS_INIT "-m32 -march=i686")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-m32")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-m32")
set(CMAKE_LIBRARY_ARCHITECTURE i386-linux-gnu)
# pkg-config must find the i386 .pc files, not the host's.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/i386-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

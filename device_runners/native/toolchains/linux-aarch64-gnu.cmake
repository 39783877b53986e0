# CMake toolchain file: Linux arm64 (aarch64, glibc) with Debian's cross compiler (apt-get install
# g++-aarch64-linux-gnu). device_runners/runners/native.py passes it for the `linux-arm64` runner target:
#
#   cmake -S device_runners/native -B BUILD -DCMAKE_TOOLCHAIN_FILE=device_runners/native/toolchains/linux-aarch64-gnu.cmake \
#         -DLITERT_LIB=/path/to/aarch64/liblitert-lm.so -DCMAKE_BUILD_TYPE=Release
#
# The prefix of the compiler can be changed with -DCROSS_PREFIX=... (default aarch64-linux-gnu-).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

if(NOT DEFINED CROSS_PREFIX)
  set(CROSS_PREFIX "aarch64-linux-gnu-")
endif()
# Passed on to try_compile projects, which re-read this file.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES CROSS_PREFIX)

set(CMAKE_C_COMPILER "${CROSS_PREFIX}gcc")
set(CMAKE_CXX_COMPILER "${CROSS_PREFIX}g++")

# Debian's multiarch cross sysroot: headers and libraries under /usr/aarch64-linux-gnu.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

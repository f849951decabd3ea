# Cross-compiling parity for arm64 (aarch64) on a Debian x86-64 host:
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# Needs Debian's gcc-aarch64-linux-gnu and the arm64 -dev packages from multiarch
# (dpkg --add-architecture arm64; scripts/install-deps.sh --arm64 installs them all), and
# qemu-user-static, through which ctest runs the test programs (CMAKE_CROSSCOMPILING_EMULATOR).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(PARITY_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${PARITY_CROSS_TRIPLE}-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE ${PARITY_CROSS_TRIPLE})

# Libraries and headers: the cross toolchain's libc (/usr/aarch64-linux-gnu) and Debian's
# multiarch directories (/usr/lib/aarch64-linux-gnu, /usr/include); programs: the host's.
set(CMAKE_FIND_ROOT_PATH /usr/${PARITY_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

# pkg-config reads the arm64 packages' .pc files only, plus ours for libpq (below).
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${PARITY_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig:${CMAKE_CURRENT_LIST_DIR}/aarch64-pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")

# The arm64 programs load libc6:arm64's loader and libraries from Debian's multiarch paths
# (/lib/ld-linux-aarch64.so.1, /usr/lib/aarch64-linux-gnu), so qemu needs no -L prefix. (With
# -L /usr/aarch64-linux-gnu, the cross toolchain's copy of libc, qemu 7.2 never returned from
# the first pthread_create here, and so every test that starts a thread hung.)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static)

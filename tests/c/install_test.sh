#!/bin/sh
# Installs libsluice into a scratch prefix and builds the C example two ways, as a user would:
# with pkg-config, and from a CMake project using find_package(Sluice).
# Usage: install_test.sh <build dir> <source dir>
set -eu
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(ls -d "$tmp"/prefix/lib*/ | head -n 1)
libdir=${libdir%/}

# 1. pkg-config
PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --exists sluice
cc -std=c99 "$src/examples/c/basic.c" \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs sluice) \
  -Wl,-rpath,"$libdir" -o "$tmp/basic_pc"
"$tmp/basic_pc" "$tmp/db1" | grep -q "working on"

# 2. CMake package config
mkdir -p "$tmp/consumer"
cat > "$tmp/consumer/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.16)
project(consumer C)
find_package(Sluice 0.1 CONFIG REQUIRED)
add_executable(basic "$src/examples/c/basic.c")
target_link_libraries(basic PRIVATE Sluice::sluice)
set_target_properties(basic PROPERTIES BUILD_RPATH "$libdir")
CMAKE
cmake -S "$tmp/consumer" -B "$tmp/consumer/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer/build" >/dev/null
"$tmp/consumer/build/basic" "$tmp/db2" | grep -q "working on"
echo "installed libsluice found by pkg-config and find_package(Sluice); the example ran"

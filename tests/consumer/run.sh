#!/usr/bin/env bash
# Builds and runs tests/consumer against offsync one way:
#   run.sh find_package|add_subdirectory SOURCE_DIR BUILD_DIR WORK_DIR
# find_package installs BUILD_DIR (a configured offsync build) into WORK_DIR/prefix first.
set -euo pipefail
mode=$1 source=$2 build=$3 work=$4
rm -rf "$work"
mkdir -p "$work"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
case "$mode" in
find_package)
    cmake --install "$build" --prefix "$work/prefix" >/dev/null
    cmake -S "$source/tests/consumer" -B "$work/build" -G Ninja "${launcher[@]}" \
        -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
    ;;
add_subdirectory)
    cmake -S "$source/tests/consumer" -B "$work/build" -G Ninja "${launcher[@]}" \
        -DOFFSYNC_SOURCE_DIR="$source" >/dev/null
    ;;
*)
    echo "usage: run.sh find_package|add_subdirectory SOURCE_DIR BUILD_DIR WORK_DIR" >&2
    exit 2
    ;;
esac
cmake --build "$work/build" -j 2
"$work/build/consumer"

#!/usr/bin/env bash
# Builds and runs the Landmarks demo on a fresh Debian machine (installs what it needs first).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >/dev/null
cmake --build build -j 2 --target landmarks-demo
exec ./build/examples/landmarks/landmarks-demo "$@"

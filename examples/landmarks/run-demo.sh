#!/usr/bin/env bash
# The Landmarks demo on a fresh Debian machine: installs what it needs, builds landmarks-server
# and the `landmarks` command-line device, then runs the networked story (demo-story.sh): two
# of Alice's devices edit offline, sync with the server, hit a conflict, resolve it and converge;
# Alice shares a reservation with Bob, sees his edit, and takes it back.
# Exits non-zero if any step of the story does not hold. Builds in build/ at the project root.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >/dev/null
cmake --build build -j 2 --target landmarks-server landmarks
exec bash examples/landmarks/demo-story.sh build

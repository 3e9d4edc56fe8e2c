#!/usr/bin/env bash
# Builds offsync and runs every test: a regular build, then an ASan+UBSan build of the tests.
# Usage: scripts/test.sh [--quick]   (--quick skips the sanitizer build)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=2
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}"
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 300

if [ "${1:-}" != "--quick" ]; then
    # The engine is concurrent: run the whole suite again under AddressSanitizer and UBSan.
    cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug "${launcher[@]}" \
        -DOFFSYNC_BUILD_EXAMPLES=OFF -DOFFSYNC_BUILD_BENCHMARKS=OFF \
        -DCMAKE_CXX_FLAGS="-O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
    cmake --build build-asan -j "$jobs" --target offsync-tests offsync-tests-sqlite offsync-unit-tests offsync-doc-snippets \
        offsync-doc-snippets-background offsync-doc-snippets-app-api offsync-doc-snippets-stores \
        offsync-doc-snippets-sharing offsync-doc-snippets-live
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 600 -LE consumer

    # Threads: the app edits on one thread while rounds run on another. ThreadSanitizer checks
    # the stores' locking on the SQLite build of those tests.
    cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug "${launcher[@]}" \
        -DOFFSYNC_BUILD_EXAMPLES=OFF -DOFFSYNC_BUILD_BENCHMARKS=OFF \
        -DCMAKE_CXX_FLAGS="-O1 -fsanitize=thread -Wno-tsan"
    cmake --build build-tsan -j "$jobs" --target offsync-tests-sqlite
    TSAN_OPTIONS=halt_on_error=1 \
        ctest --test-dir build-tsan --output-on-failure -j "$jobs" --timeout 600 -R "^sqlite:"
fi

#!/usr/bin/env bash
# scripts/test.sh — install dependencies, build with ASan+UBSan and
# warnings as errors, and run every test through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DRUMOR_SANITIZE=ON -DRUMOR_WERROR=ON >/dev/null
cmake --build build-test -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Real fuzzing first, bounded: each libFuzzer target for FUZZ_SECONDS (default 10)
# under ASan+UBSan (scripts/fuzz.sh). Skipped with RUMOR_SKIP_FUZZ=1 or when
# ctest was asked for a subset (arguments given).
if [ -z "${RUMOR_SKIP_FUZZ:-}" ] && [ $# -eq 0 ]; then
	FUZZ_SECONDS=${FUZZ_SECONDS:-10} scripts/fuzz.sh
fi
# ctest last, so that its summary closes the output.
# network tests are RUN_SERIAL (tests/CMakeLists.txt): only unit, sim, fuzz
# and style tests run side by side, one per core
(cd build-test && ctest --output-on-failure --timeout 600 -j"$(nproc)" "$@")

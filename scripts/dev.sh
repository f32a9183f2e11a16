#!/usr/bin/env bash
# scripts/dev.sh — install dependencies, build (release) and run
# `rumor agent -dev` in the foreground. Extra arguments go to the agent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
exec build/rumor agent -dev "$@"

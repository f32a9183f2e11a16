#!/usr/bin/env bash
# scripts/check-format.sh — fail when a C file differs from what
# clang-format (.clang-format at the top) would make of it; lists the files.
# Fix with: clang-format -i FILE...
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "clang-format not installed (apt-get install clang-format)"; exit 1; }
# one clang-format per file, one per core at a time; the names of the files
# that differ come back on stdout
bad=$(git ls-files -z '*.c' '*.h' | xargs -0 -n 8 -P "$(nproc)" sh -c '
	for f in "$@"; do
		clang-format --dry-run -Werror -style=file "$f" >/dev/null 2>&1 || echo "not formatted: $f"
	done' sh | tee /dev/stderr | wc -l)
echo "format: $bad file(s) differ from .clang-format"
[ "$bad" -eq 0 ]

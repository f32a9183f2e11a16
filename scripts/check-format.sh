#!/usr/bin/env bash
# scripts/check-format.sh — fail when a C file differs from what
# clang-format (.clang-format at the top) would make of it; lists the files.
# Fix with: clang-format -i FILE...
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "clang-format not installed (apt-get install clang-format)"; exit 1; }
bad=0
while IFS= read -r f; do
	if ! clang-format --dry-run -Werror -style=file "$f" >/dev/null 2>&1; then
		echo "not formatted: $f"
		bad=$((bad + 1))
	fi
done < <(git ls-files '*.c' '*.h')
echo "format: $bad file(s) differ from .clang-format"
[ "$bad" -eq 0 ]

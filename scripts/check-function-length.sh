#!/usr/bin/env bash
# scripts/check-function-length.sh [MAX=120] — list C functions whose body
# is longer than MAX lines (a function's body: from its opening brace in
# column 0 to its closing brace in column 0, as .clang-format writes them);
# exits 1 if any.
set -euo pipefail
cd "$(dirname "$0")/.."
max=${1:-120}
git ls-files '*.c' | xargs awk -v max="$max" '
	FNR == 1 { s = 0; name = "" }
	/^[A-Za-z_].*\(/ && !/;[ \t]*$/ { name = $0 }
	/^\{/ { s = FNR }
	/^\}/ { if (s && FNR - s > max) { printf "%s:%d: %s (%d lines)\n", FILENAME, s, name, FNR - s; bad++ } s = 0 }
	END { printf "functions over %d lines: %d\n", max, bad + 0; exit bad > 0 }'

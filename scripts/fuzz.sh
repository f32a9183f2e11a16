#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] — build every tests/fuzz/fuzz_*.c as a real
# libFuzzer target (clang, ASan+UBSan) and run each for a bounded time.
#
# SECONDS per target: first argument, else $FUZZ_SECONDS, else 20. Each
# target starts from its checked-in seed corpus (tests/fuzz/corpus/<name>/),
# copied to a scratch directory so the seeds are never rewritten. A crash,
# leak, timeout or sanitizer report fails the run; the input that caused it
# is copied into tests/fuzz/corpus/<name>/regress-<sha1> so that the
# ordinary ctest replay (fuzz.<name>) reproduces it from then on: commit it
# with the fix. Build dir: build-fuzz (override with FUZZ_BUILD_DIR).
# Targets run side by side, one per core (FUZZ_JOBS to change).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-${FUZZ_SECONDS:-20}}
bdir=${FUZZ_BUILD_DIR:-build-fuzz}
command -v clang >/dev/null || { echo "fuzz.sh: clang not installed (scripts/deps.sh test)"; exit 1; }

cmake -S . -B "$bdir" -DCMAKE_C_COMPILER=clang -DRUMOR_FUZZ=ON -DRUMOR_SANITIZE=ON \
	-DCMAKE_BUILD_TYPE=Fuzz -DCMAKE_C_FLAGS_FUZZ="-O1 -g" >/dev/null
targets=()
for src in tests/fuzz/fuzz_*.c; do
	targets+=("$(basename "$src" .c)")
done
cmake --build "$bdir" -j"$(nproc)" --target "${targets[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
work=$(mktemp -d /tmp/rumor-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
# One target per core at a time (FUZZ_JOBS overrides): each libFuzzer run
# is single-threaded, so two cores take the 12 targets in half the time.
jobs_max=${FUZZ_JOBS:-$(nproc)}
run_one() {
	local t=$1
	mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
	local seeds=tests/fuzz/corpus/$t
	[ -d "$seeds" ] && cp -r "$seeds/." "$work/$t/corpus/" 2>/dev/null || true
	if "$bdir/tests/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" \
		"$work/$t/corpus" >"$work/$t/log" 2>&1; then
		echo 0 >"$work/$t/rc"
	else
		echo 1 >"$work/$t/rc"
	fi
}
for t in "${targets[@]}"; do
	while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do
		wait -n || true
	done
	echo "== $t: ${secs}s"
	run_one "$t" &
done
wait
failed=()
for t in "${targets[@]}"; do
	seeds=tests/fuzz/corpus/$t
	if [ "$(cat "$work/$t/rc" 2>/dev/null || echo 1)" = 0 ]; then
		echo "== $t: $(grep -E "^stat::number_of_executed_units|DONE" "$work/$t/log" | tail -2 | tr '\n' ' ')"
	else
		failed+=("$t")
		echo "== $t: FAILED"
		tail -n 60 "$work/$t/log"
		mkdir -p "$seeds"
		for a in "$work/$t/artifacts"/*; do
			[ -f "$a" ] || continue
			sum=$(sha1sum "$a" | cut -c1-16)
			cp "$a" "$seeds/regress-$sum"
			echo "!! $t: $(basename "$a") saved as $seeds/regress-$sum (commit it with the fix)"
		done
	fi
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz.sh: FAILED: ${failed[*]}"
	exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${secs}s each, no crash"

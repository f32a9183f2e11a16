#!/bin/sh
# tests/sim/coords_bench.sh [BUILD_DIR] — how well SWIM's Vivaldi coordinates
# predict rumor-sim's latency matrix at 100, 1,000 and 5,000 nodes
# (docs/COORDINATES.md, "Accuracy (simulator)"). Not a test: it takes about
# 5 minutes on 2 cores, most of it the 5,000-node run (about 2 GB of RSS).
#
# Writes into $OUT (default ${TMPDIR:-/tmp}/rumor-sim-coords):
#   curve.tsv    N seed t_s median p90 near_median judged joined_median
#                (every 5 s; joined_median -1 without joins)
#   cdf.tsv      N seed q relative_error (the last sample, 201 quantiles)
#   summary.txt  each run's coord-accuracy line, its wall time (and peak RSS)
# then tests/sim/coords_plot.sh draws docs/sim_coordinates.png from them.
#
# Knobs: DURATION (virtual s, default 600), SEEDS (default "1 2 3"; the
# 5,000-node run takes SEEDS_5000, default "1"), SIZES, REGIONS (5).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
sim=$build/tests/sim/rumor-sim
out=${OUT:-${TMPDIR:-/tmp}/rumor-sim-coords}
duration=${DURATION:-600}
seeds=${SEEDS:-1 2 3}
seeds5000=${SEEDS_5000:-1}
sizes=${SIZES:-100 1000 5000}
regions=${REGIONS:-5}
[ -x "$sim" ] || { echo "no $sim (build the rumor-sim target)" >&2; exit 2; }
mkdir -p "$out"
rm -f "$out/curve.tsv" "$out/cdf.tsv" "$out/summary.txt"
for n in $sizes; do
	s_list=$seeds
	[ "$n" -ge 5000 ] && s_list=$seeds5000
	for s in $s_list; do
		# GNU time, when there, adds the peak RSS
		timer=
		[ -x /usr/bin/time ] && timer="/usr/bin/time -f rss_mb=%M -o $out/time-$n-$s.txt"
		t0=$(date +%s)
		$timer "$sim" -n "$n" -s "$s" -d "$duration" --regions "$regions" -q \
			--coord-curve "$out/curve.tsv" --coord-cdf "$out/cdf.tsv" >"$out/run-$n-$s.txt"
		t1=$(date +%s)
		line=$(grep '^coord-accuracy:' "$out/run-$n-$s.txt")
		rss=$(awk -F= '/^rss_mb=/ { printf " rss_mb=%d", $2 / 1024 }' "$out/time-$n-$s.txt" 2>/dev/null || true)
		echo "$line wall_s=$((t1 - t0))$rss" | tee -a "$out/summary.txt"
	done
done
echo "wrote $out/curve.tsv $out/cdf.tsv $out/summary.txt"

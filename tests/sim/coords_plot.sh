#!/bin/sh
# tests/sim/coords_plot.sh [OUT_DIR] [PNG] — draw docs/sim_coordinates.png
# from tests/sim/coords_bench.sh's curve.tsv and cdf.tsv (seed 1 of each
# size): left, the median and 90th percentile of the relative error against
# virtual time; right, the distribution of the relative error at the end.
# Needs gnuplot (Debian: gnuplot-nox).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-${OUT:-${TMPDIR:-/tmp}/rumor-sim-coords}}
png=${2:-$here/../../docs/sim_coordinates.png}
[ -s "$out/curve.tsv" ] && [ -s "$out/cdf.tsv" ] || {
	echo "no $out/curve.tsv or cdf.tsv: run tests/sim/coords_bench.sh first" >&2
	exit 2
}
gnuplot <<GP
set terminal pngcairo size 1200,520 noenhanced font ",10"
set output "$png"
set multiplot layout 1,2 title "rumor-sim: SWIM's Vivaldi coordinates against a 5-region latency matrix (LAN profile, 1 probe/s, seed 1)"
set grid
set key top right
set logscale y
set yrange [0.01:10]
set xlabel "virtual seconds"
set ylabel "relative error |estimated - true| / true RTT"
set title "error against time (median solid, 90th percentile dashed)"
f(n, c) = (\$1 == n && \$2 == 1) ? column(c) : 1/0
plot "$out/curve.tsv" using (f(100, 3)):4 with lines lw 2 lc 1 title "N=100 median", \
     "$out/curve.tsv" using (f(100, 3)):5 with lines lw 2 dt 2 lc 1 title "N=100 p90", \
     "$out/curve.tsv" using (f(1000, 3)):4 with lines lw 2 lc 2 title "N=1,000 median", \
     "$out/curve.tsv" using (f(1000, 3)):5 with lines lw 2 dt 2 lc 2 title "N=1,000 p90", \
     "$out/curve.tsv" using (f(5000, 3)):4 with lines lw 2 lc 7 title "N=5,000 median", \
     "$out/curve.tsv" using (f(5000, 3)):5 with lines lw 2 dt 2 lc 7 title "N=5,000 p90", \
     0.11 with lines dt 3 lw 2 lc rgb "black" title "Vivaldi paper, King data: median 0.11"
unset logscale y
set logscale x
set xrange [0.001:10]
set yrange [0:1]
set key bottom right
set xlabel "relative error at the end of the run"
set ylabel "fraction of pairs"
set title "distribution of the error at the end (all pairs at N=100, 20,000 sampled above)"
plot "$out/cdf.tsv" using (f(100, 4)):3 with lines lw 2 lc 1 title "N=100", \
     "$out/cdf.tsv" using (f(1000, 4)):3 with lines lw 2 lc 2 title "N=1,000", \
     "$out/cdf.tsv" using (f(5000, 4)):3 with lines lw 2 lc 7 title "N=5,000"
unset multiplot
GP
echo "wrote $png"

#!/bin/sh
# Plot dissemination time against N from bench/out/sim_scale.tsv (run
# bench/sim_scale.sh first) beside Serf's analytic convergence curve, into
# docs/sim_dissemination.png. Needs gnuplot (Debian: gnuplot-nox).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data=${1:-$here/out/sim_scale.tsv}
png=${2:-$here/../docs/sim_dissemination.png}
gnuplot <<GP
set terminal pngcairo size 900,560 noenhanced font ",10"
set output "$png"
set title "rumor-sim: time until nodes know of an event (LAN profile, gossip 200 ms x 3, probe 1 s)"
set logscale x
set xrange [8:12000]
set yrange [0:*]
set xlabel "cluster size N"
set ylabel "seconds after the event"
set key top left
set grid
# Serf's simulator (website/.../_simulator.js): converged(x) = 1/(1+(N+1)e^{-contact N x}),
# contact = fanout/N * 0.5, x in rounds of 0.2 s. Solve for 99.9%.
serf(n) = 0.2 * log((n + 1) * 999.0) / 1.5
plot "$data" using 2:8 smooth unique with linespoints lw 2 title "join, 100% know (measured, mean of seeds)", \
     "$data" using 2:7 smooth unique with linespoints lw 2 title "join, 99% know", \
     "$data" using 2:16 smooth unique with linespoints lw 2 title "leave, 100% know", \
     "$data" using 2:(\$13-\$10) smooth unique with linespoints lw 2 title "failure: first 'dead' -> 100% know", \
     serf(x) with lines dt 2 lw 2 lc rgb "black" title "Serf analytic, 99.9% (fanout 3, 200 ms)"
GP
echo "wrote $png"

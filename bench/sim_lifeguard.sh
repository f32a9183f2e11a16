#!/bin/sh
# Lifeguard's setting: a few members are slow (CPU-starved: every packet to
# or from them takes SLOW ms more), the rest are healthy. Count failure
# events at healthy members about healthy members, with and without the
# Lifeguard features (--no-lifeguard: suspicion_max_timeout_mult=1,
# awareness_max_multiplier=1). N=100, 5 slow members for 300 of 600 s.
# Output: bench/out/sim_lifeguard.tsv
set -eu
here=$(cd "$(dirname "$0")" && pwd)
sim=${RUMOR_SIM:-$here/../build-sim-rel/tests/sim/rumor-sim}
seeds=${SEEDS:-"1 2 3"}
out=$here/out/sim_lifeguard.tsv
mkdir -p "$here/out"
. "$here/sim_header.sh"
sim_header > "$out"
for slow in 400 800 1600; do
	for tcp in "" --no-tcp-ping; do
		for lg in --lifeguard --no-lifeguard; do
			for s in $seeds; do
				"$sim" -e "{\"name\":\"slow${slow}${tcp:+_notcp}\",\"actions\":[{\"at\":60,\"do\":\"slow\",\"count\":5,\"value\":$slow,\"for\":300}]}" \
					-n 100 -s "$s" -d 600 $lg $tcp -q --summary "$out" >/dev/null || true
				tail -n 1 "$out" >&2
			done
		done
	done
done

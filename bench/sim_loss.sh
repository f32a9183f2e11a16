#!/bin/sh
# False positives and detection under packet loss, with and without the
# Lifeguard features (--no-lifeguard: suspicion_max_timeout_mult=1 and
# awareness_max_multiplier=1; nacks and the buddy system stay on).
# N=100, 600 virtual s, loss 0..30%, one crash at 300 s, 3 seeds each.
# Output: bench/out/sim_loss.tsv
set -eu
here=$(cd "$(dirname "$0")" && pwd)
sim=${RUMOR_SIM:-$here/../build-sim-rel/tests/sim/rumor-sim}
n=${N:-100}
dur=${DURATION:-600}
seeds=${SEEDS:-"1 2 3"}
extra=${EXTRA:-}
out=$here/out/sim_loss${TAG:-}.tsv
mkdir -p "$here/out"
. "$here/sim_header.sh"
sim_header > "$out"
for loss in 0 0.05 0.10 0.20 0.30; do
	for lg in --lifeguard --no-lifeguard; do
		for s in $seeds; do
			"$sim" -e '{"name":"loss"}' -n "$n" -s "$s" -d "$dur" --loss "$loss" \
				--jitter 1 $lg $extra --crash 1@300 -q --summary "$out" >/dev/null || true
			tail -n 1 "$out" >&2
		done
	done
done

#!/bin/sh
# Dissemination and detection against cluster size, with the deterministic
# simulator. Each size runs a warm (converged) cluster for 60 virtual s:
# one node crashes at 10 s, one joins at 20 s, one leaves at 30 s.
# Output: bench/out/sim_scale.tsv (one line per N, columns in sim_header).
#   RUMOR_SIM=path/to/rumor-sim SIZES="10 30 100" bench/sim_scale.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
sim=${RUMOR_SIM:-$here/../build-sim-rel/tests/sim/rumor-sim}
sizes=${SIZES:-"10 30 100 300 1000 3000"}
seeds=${SEEDS:-"1 2 3"}
out=$here/out/sim_scale.tsv
mkdir -p "$here/out"
. "$here/sim_header.sh"
sim_header > "$out"
for n in $sizes; do
	for s in $seeds; do
		# big clusters: one seed is enough (and minutes of wall time)
		if [ "$n" -ge 3000 ] && [ "$s" != 1 ]; then continue; fi
		"$sim" -e "{\"name\":\"scale\"}" -n "$n" -s "$s" -d 60 \
			--crash 1@10 --join 1@20 --leave 1@30 -q --summary "$out" >/dev/null
		tail -n 1 "$out" >&2
	done
done

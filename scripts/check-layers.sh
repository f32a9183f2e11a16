#!/usr/bin/env bash
# scripts/check-layers.sh — fail on an #include that runs up the layers.
#
# The layers, lowest first (docs/ARCHITECTURE.md):
#   0  lib/                       depends on nothing of ours
#   1  gossip/  kv/  dns/         may include lib/ and their own folder
#   2  agent/                     the composition root: may include anything
# An include from a layer to a higher one is a back-edge; so is one between
# two folders of layer 1 (kv/ must not reach into gossip/: the agent wires
# them together through interfaces the lower module defines).
# Prints every offending include as FILE:LINE: include; exits 1 if any.
# Usage: scripts/check-layers.sh [--allow-known]   (--allow-known: exit 0
# while only the edges listed in KNOWN below remain, printing them).
set -euo pipefail
cd "$(dirname "$0")/.."

# Edges still being taken apart (issue 15); each line FILE -> INCLUDE.
KNOWN=(
)

layer() {
	case "$1" in
	lib/*) echo 0 ;;
	gossip/* | kv/* | dns/*) echo 1 ;;
	agent/*) echo 2 ;;
	*) echo -1 ;;
	esac
}

bad=0
unknown=0
while IFS= read -r f; do
	fl=$(layer "$f")
	[ "$fl" -ge 0 ] || continue
	fdir=${f%%/*}
	while IFS=: read -r line inc; do
		tl=$(layer "$inc")
		[ "$tl" -ge 0 ] || continue
		tdir=${inc%%/*}
		if [ "$tl" -gt "$fl" ] || { [ "$tl" -eq "$fl" ] && [ "$fl" -eq 1 ] && [ "$tdir" != "$fdir" ]; }; then
			edge="$f -> $inc"
			known=no
			for k in "${KNOWN[@]}"; do [ "$k" = "$edge" ] && known=yes; done
			echo "$f:$line: #include \"$inc\" runs up or across the layers${known/yes/ (known)}" | sed 's/ (known)no//; s/no$//'
			bad=$((bad + 1))
			[ "$known" = yes ] || unknown=$((unknown + 1))
		fi
	done < <(grep -n '^#include "' "$f" | sed 's/^\([0-9]*\):#include "\([^"]*\)".*/\1:\2/')
done < <(git ls-files 'lib/*.[ch]' 'gossip/*.[ch]' 'kv/*.[ch]' 'dns/*.[ch]' 'agent/*.[ch]')

if [ "${1:-}" = "--allow-known" ]; then
	echo "layers: $bad edge(s) up or across, $unknown not in the known list"
	[ "$unknown" -eq 0 ]
	exit $?
fi
echo "layers: $bad edge(s) up or across"
[ "$bad" -eq 0 ]

#!/usr/bin/env bash
# tests/faults/run.sh SCENARIO [ARGS...] — run one fault-injection scenario
# in a network namespace of its own.
#
# Creates namespace rumorf<pid>, brings its loopback up and runs
# faults.py inside it (ip netns exec). faults.py starts the agents, records
# every PID in $FAULTS_DIR/pids, injects faults with nftables in the
# namespace and kills what it started when it ends. This wrapper is the
# safety net: on any exit (failure, timeout, signal) it kills every recorded
# PID and deletes the namespace and the temporary directory.
#
# Exit status: faults.py's; 77 (ctest SKIP) when namespaces or nftables are
# not available (not root, no CAP_NET_ADMIN, tools missing).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
RUMOR_BIN=${RUMOR_BIN:-$HERE/../../build/rumor}
[ -x "$RUMOR_BIN" ] || { echo "rumor binary not found at $RUMOR_BIN (set RUMOR_BIN)"; exit 1; }
export RUMOR_BIN

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "fault tests need root (network namespaces, nftables)"
command -v ip >/dev/null || skip "ip (iproute2) not installed"
command -v nft >/dev/null || skip "nft (nftables) not installed"
command -v setpriv >/dev/null || skip "setpriv (util-linux) not installed"

# Namespaces left by a run that was killed -9 (a ctest timeout): their
# owner PID is gone. Kill what still runs inside them (by PID) and delete.
for old in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^rumorf[0-9]+$'); do
	if ! kill -0 "${old#rumorf}" 2>/dev/null; then
		for pid in $(ip netns pids "$old" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
		ip netns del "$old" 2>/dev/null && echo "# removed stale namespace $old"
	fi
done

NS=rumorf$$
FAULTS_DIR=$(mktemp -d /tmp/rumor-faults.XXXXXX)
export FAULTS_DIR NS

cleanup() {
	local rc=$?
	if [ -f "$FAULTS_DIR/pids" ]; then
		while read -r pid; do
			[ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null
			[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
		done <"$FAULTS_DIR/pids"
	fi
	[ -n "${PYPID:-}" ] && kill -9 "$PYPID" 2>/dev/null
	wait 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] || [ -n "${KEEP_LOGS:-}" ]; then
		for f in "$FAULTS_DIR"/*.log; do
			[ -f "$f" ] || continue
			echo "----- $f (last 30 lines)"
			tail -n 30 "$f"
		done
	fi
	rm -rf "$FAULTS_DIR"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$NS" 2>/dev/null || skip "cannot create a network namespace (ip netns add)"
ip netns exec "$NS" ip link set lo up || exit 1
ip netns exec "$NS" nft add table inet rumorf 2>/dev/null || skip "nftables does not work in the namespace"

# In the background so that the traps above run on a signal at once.
ip netns exec "$NS" /usr/bin/python3 "$HERE/faults.py" "$@" &
PYPID=$!
wait "$PYPID"
rc=$?
PYPID=
exit "$rc"

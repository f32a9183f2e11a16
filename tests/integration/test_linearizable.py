"""Linearizability of the CP KV store on real agents (issue 16): three
servers (-server -bootstrap-expect=3) and a client on loopback. Client
threads put, CAS and read (?consistent and default) a few keys through all
four agents' HTTP APIs, first without faults, then while the leader is killed
with -9 and restarted; each history is then checked with linearize.py (Wing & Gong with Lowe's
memoisation, keys checked apart) and must be linearizable.

The checker is shown to catch what it must, twice: on hand-made histories
(one linearizable, one with a stale read), and on a planted bug on the real
cluster — writes through the leader, each followed in the same thread by a
?stale read on a follower or the client, which is what serving ?consistent
from a lagging replica would be. That history must NOT be linearizable."""
import base64
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Cluster  # noqa: E402
import linearize  # noqa: E402
from linearize import Op  # noqa: E402

c = Cluster()
SERVERS = [1, 2, 3]
CLIENT = 4
AGENTS = SERVERS + [CLIENT]
RUN_SECONDS = 8.0
PLANTED_SECONDS = 3.0

# --- the checker on hand-made histories, before any agent runs
good = [Op(1, "k", "put", "a", "ok", 0.0, 1.0),
        Op(2, "k", "read", None, None, 0.1, 0.5),   # before the put took effect
        Op(2, "k", "read", None, "a", 0.6, 1.5),    # concurrent with it
        Op(3, "k", "cas", ("a", "b"), "ok", 2.0, 3.0),
        Op(1, "k", "cas", ("a", "c"), "fail", 2.5, 3.5),
        Op(2, "k", "put", "d", "unknown", 4.0, None),  # maybe never applied
        Op(1, "k", "read", None, "b", 5.0, 6.0),
        Op(3, "k", "read", None, "d", 7.0, 8.0),    # ... or late
        Op(1, "j", "put", "x", "ok", 0.0, 1.0),
        Op(2, "j", "read", None, "x", 1.1, 1.2)]
r = linearize.check(good)
print("# " + "\n# ".join(linearize.report(r)))
c.check("hand-made history with concurrency, a failed CAS and an unknown put is linearizable",
        True, r["ok"])
stale = [Op(1, "k", "put", "a", "ok", 0.0, 1.0),
         Op(2, "k", "read", None, "a", 1.1, 1.2),
         Op(1, "k", "put", "b", "ok", 2.0, 3.0),
         Op(3, "j", "put", "x", "ok", 2.0, 3.0),
         Op(1, "k", "read", None, "a", 3.1, 3.2),   # stale: b returned before
         Op(2, "k", "read", None, "b", 3.3, 3.4)]
r = linearize.check(stale)
print("# " + "\n# ".join(linearize.report(r)))
c.check("hand-made history with a stale read is not linearizable", False, r["ok"])
c.check("... and its minimal window is put(a), put(b), the stale read",
        [("put", "a"), ("put", "b"), ("read", "a")],
        [(o.kind, o.arg if o.kind != "read" else o.res) for o in r.get("window", [])])
lost_cas = [Op(1, "k", "put", "a", "ok", 0.0, 1.0),
            Op(2, "k", "cas", ("a", "b"), "ok", 1.5, 2.0),
            Op(3, "k", "cas", ("a", "c"), "ok", 2.5, 3.0)]  # old value CASed twice
c.check("hand-made history where two CAS on one value both win is not linearizable",
        False, linearize.check(lost_cas)["ok"])
locks = [Op(1, "l", "acquire", "s1", "ok", 0.0, 1.0),
         Op(2, "l", "acquire", "s2", "fail", 0.5, 1.5),   # s1 held it
         Op(3, "l", "read", None, "s1", 1.6, 1.7),
         Op(1, "l", "acquire", "s1", "ok", 1.8, 1.9),     # the holder again
         Op(2, "l", "release", "s2", "fail", 2.0, 2.1),   # not the holder
         Op(1, "l", "release", "s1", "unknown", 2.2, None),
         Op(2, "l", "acquire", "s2", "ok", 3.0, 3.5),     # so the release applied
         Op(3, "l", "read", None, "s2", 3.6, 3.7)]
c.check("hand-made lock history (contention, re-acquire, an unknown release) is linearizable",
        True, linearize.check(locks)["ok"])
two = [Op(1, "l", "acquire", "s1", "ok", 0.0, 1.0),
       Op(2, "l", "acquire", "s2", "ok", 1.5, 2.0)]  # no release between
c.check("hand-made lock history with two holders at once is not linearizable",
        False, linearize.check(two)["ok"])


# --- a client of the HTTP API recording a history
def req(i, method, path, body=None, timeout=3):
    """(status, body bytes): status -1 when the connection was refused (the
    request surely never arrived), 0 when there was no answer."""
    r = urllib.request.Request("http://%s%s" % (c.haddr(i), path), data=body, method=method)
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except urllib.error.URLError as e:
        return (-1 if isinstance(e.reason, ConnectionRefusedError) else 0), b""
    except ConnectionRefusedError:
        return -1, b""
    except (OSError, socket.timeout):
        return 0, b""


class Recorder:
    def __init__(self):
        self.ops = []
        self.lock = threading.Lock()
        self.counts = {"refused": 0, "no_leader": 0, "unknown": 0, "read_err": 0}

    def add(self, op):
        with self.lock:
            self.ops.append(op)

    def count(self, what):
        with self.lock:
            self.counts[what] += 1

    def write(self, proc, i, key, value, cas=None, old=None):
        """A put (cas None) or a CAS on index cas expecting old; recorded
        unless it surely did nothing. Returns the status."""
        q = "" if cas is None else "?cas=%d" % cas
        t0 = time.monotonic()
        st, b = req(i, "PUT", "/v1/kv/%s%s" % (key, q), value.encode())
        t1 = time.monotonic()
        b = b.strip()
        if st == -1:
            self.count("refused")
            return st
        if st == 500 and b == b"No cluster leader":
            self.count("no_leader")  # never applied (docs/SERVERS.md)
            return st
        if st == 200 and b in (b"true", b"false"):
            res = "ok" if b == b"true" else "fail"
        else:
            res = "unknown"
            self.count("unknown")
        if cas is None:
            if res == "fail":
                res = "unknown"  # a plain put answering false: not expected
            self.add(Op(proc, key, "put", value, res, t0, t1, "a%d" % i))
        else:
            self.add(Op(proc, key, "cas", (old, value), res, t0, t1, "a%d" % i))
        return st

    def read(self, proc, i, key, mode):
        """A read; recorded when answered. Returns (ok, value, ModifyIndex)."""
        t0 = time.monotonic()
        st, b = req(i, "GET", "/v1/kv/%s%s" % (key, mode))
        t1 = time.monotonic()
        if st == 404:
            val, idx = None, 0
        elif st == 200:
            e = json.loads(b)[0]
            val = base64.b64decode(e["Value"]).decode() if e.get("Value") is not None else ""
            idx = e["ModifyIndex"]
        else:
            self.count("refused" if st == -1 else "read_err")
            return False, None, None
        self.add(Op(proc, key, "read", None, val, t0, t1, "a%d%s" % (i, mode)))
        return True, val, idx



def summary(name, rec, result, t0):
    kinds = {}
    for op in rec.ops:
        k = op.kind + ("" if op.kind == "read" else "/" + op.res)
        kinds[k] = kinds.get(k, 0) + 1
    print("# %s: history of %d ops %s; not recorded: %s" % (
        name, len(rec.ops), json.dumps(kinds, sort_keys=True), json.dumps(rec.counts, sort_keys=True)))
    for line in linearize.report(result, t0):
        print("# " + line)


for i in SERVERS:
    c.start_server(i)
c.start(CLIENT, "c4", "-retry-join", "127.0.0.1:%d" % c.gport(1), "-retry-interval", "1s")
ok = Cluster.wait(20, lambda: c.leader_index(SERVERS) is not None)
c.check("three servers elect one leader", True, ok)
ok = Cluster.wait(10, lambda: req(CLIENT, "PUT", "/v1/kv/lin/ready", b"1")[0] == 200)
c.check("the client writes through the leader", True, ok)

# --- the real workload: put / CAS / read on 3 keys through every agent;
# first without faults, then with kill -9 of the leader mid-run, restarted


def worker(rec, stop, keys, proc):
    rng = random.Random(1000 + proc)
    n = 0
    while not stop.is_set() and n < 5000:
        n += 1
        key, i = rng.choice(keys), rng.choice(AGENTS)
        x = rng.random()
        if x < 0.3:
            st = rec.write(proc, i, key, "%s-p%d-%d" % (key, proc, n))
        elif x < 0.55:
            ok, old, idx = rec.read(proc, i, key, "")
            if not ok:
                time.sleep(0.05)
                continue
            st = rec.write(proc, rng.choice(AGENTS), key, "%s-p%d-%d" % (key, proc, n),
                           cas=idx, old=old)
        else:
            ok, _, _ = rec.read(proc, i, key, rng.choice(["?consistent", ""]))
            st = 200 if ok else -1
        if st in (-1, 0, 500):
            time.sleep(0.05)  # a dead agent or no leader: do not spin


def run_workload(name, keys, seconds, kill):
    rec, stop = Recorder(), threading.Event()
    t_start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(rec, stop, keys, p)) for p in range(4)]
    [t.start() for t in threads]
    if kill:
        time.sleep(seconds * 0.35)
        L = c.leader_index(SERVERS)
        c.check("a leader to kill mid-run", True, L is not None)
        if L is not None:
            t_kill = time.monotonic()
            os.kill(c.procs[L].pid, signal.SIGKILL)
            c.procs[L].wait()
            ok = Cluster.wait(10, lambda: c.leader_index(SERVERS) not in (None, L))
            c.check("a new leader after kill -9 of s%d (%.1f s)" % (L, time.monotonic() - t_kill), True, ok)
            t_spawn = time.monotonic()
            c.start_server(L)
            print("# s%d (a%d) killed at %.3f s, restarted at %.3f s, answering HTTP at %.3f s" % (
                L, L, t_kill - t_start, t_spawn - t_start, time.monotonic() - t_start))
    time.sleep(max(0.0, t_start + seconds - time.monotonic()))
    stop.set()
    [t.join(15) for t in threads]
    c.check("the client threads stopped", False, any(t.is_alive() for t in threads))
    res = linearize.check(list(rec.ops), max_seconds=15.0)
    summary(name, rec, res, t_start)
    c.check("%s: enough history to mean something (%d ops, >= 200)" % (name, len(rec.ops)),
            True, len(rec.ops) >= 200)
    c.check("%s: the history is linearizable (checked in %.2f s)" % (name, res["seconds"]),
            True, res["ok"])


# --- locks: acquire / release / read of the holder on 2 keys, one session
# per thread on different agents, through a kill -9 of the leader


def lock_worker(rec, stop, keys, proc, sess, i):
    rng = random.Random(3000 + proc)
    n = 0
    while not stop.is_set() and n < 3000:
        n += 1
        key = rng.choice(keys)
        x = rng.random()
        if x < 0.6:
            kind = "acquire" if x < 0.35 else "release"
            t0 = time.monotonic()
            st, b = req(i, "PUT", "/v1/kv/%s?%s=%s" % (key, kind, sess), b"")
            t1 = time.monotonic()
            b = b.strip()
            if st == -1 or (st == 500 and b == b"No cluster leader"):
                rec.count("refused" if st == -1 else "no_leader")
                time.sleep(0.05)
                continue
            res = {b"true": "ok", b"false": "fail"}.get(b) if st == 200 else None
            if res is None:
                res = "unknown"
                rec.count("unknown")
            rec.add(Op(proc, key, kind, sess, res, t0, t1, "a%d" % i))
        else:
            t0 = time.monotonic()
            st, b = req(i, "GET", "/v1/kv/%s%s" % (key, rng.choice(["", "?consistent"])))
            t1 = time.monotonic()
            if st == 404:
                holder = None
            elif st == 200:
                holder = json.loads(b)[0].get("Session")
            else:
                rec.count("read_err")
                time.sleep(0.05)
                continue
            rec.add(Op(proc, key, "read", None, holder, t0, t1, "a%d" % i))


def run_locks(seconds):
    rec, stop = Recorder(), threading.Event()
    keys = ["locks/a", "locks/b"]
    sess = []
    for p, i in enumerate(AGENTS[:4]):
        st, b = req(i, "PUT", "/v1/session/create",
                    json.dumps({"Name": "lin%d" % p, "Checks": [], "LockDelay": "0s"}).encode())
        sess.append((json.loads(b)["ID"] if st == 200 else None, i))
    c.check("lock run: one session per thread, on four agents", True,
            all(s for s, _ in sess))
    for k in keys:  # every key exists and is free at the start (None holder)
        req(CLIENT, "PUT", "/v1/kv/%s" % k, b"")
    t_start = time.monotonic()
    threads = [threading.Thread(target=lock_worker, args=(rec, stop, keys, p, s, i))
               for p, (s, i) in enumerate(sess)]
    [t.start() for t in threads]
    time.sleep(seconds * 0.4)
    L = c.leader_index(SERVERS)
    if L is not None:
        os.kill(c.procs[L].pid, signal.SIGKILL)
        c.procs[L].wait()
        Cluster.wait(10, lambda: c.leader_index(SERVERS) not in (None, L))
        c.start_server(L)
    time.sleep(max(0.0, t_start + seconds - time.monotonic()))
    stop.set()
    [t.join(15) for t in threads]
    res = linearize.check(list(rec.ops), max_seconds=15.0)
    summary("locks, kill -9 of the leader", rec, res, t_start)
    acq = sum(1 for o in rec.ops if o.kind == "acquire" and o.res == "ok")
    c.check("locks: enough history (%d ops, %d acquired, >= 100 and >= 10)" % (
        len(rec.ops), acq), True, len(rec.ops) >= 100 and acq >= 10)
    c.check("locks: the acquire/release/holder history is linearizable (%.2f s)" %
            res["seconds"], True, res["ok"])


print("# ops are labelled a1..a3 = servers s1..s3, a4 = the client c4; times in s from the run's start")
run_workload("no faults", ["lin/a", "lin/b", "lin/c"], RUN_SECONDS / 2, False)
run_workload("kill -9 of the leader, restarted", ["kill/a", "kill/b", "kill/c"], RUN_SECONDS, True)
Cluster.wait(20, lambda: c.leader_index(SERVERS) is not None)
run_locks(RUN_SECONDS / 2)

# --- the planted bug: ?stale reads on followers and the client right after
# a write through the leader (serving ?consistent from a lagging replica)
ok = Cluster.wait(20, lambda: c.leader_index(SERVERS) is not None)
c.check("a leader again for the planted run", True, ok)
L = c.leader_index(SERVERS) or 1
others = [i for i in AGENTS if i != L]
prec = Recorder()
stop = threading.Event()


def stale_worker(proc):
    rng = random.Random(2000 + proc)
    n = 0
    while not stop.is_set() and n < 3000:
        n += 1
        key = "planted/%d" % rng.randrange(2)
        if prec.write(proc, L, key, "s%d-%d" % (proc, n)) != 200:
            time.sleep(0.05)
            continue
        prec.read(proc, rng.choice(others), key, "?stale")


t_start = time.monotonic()
threads = [threading.Thread(target=stale_worker, args=(p,)) for p in range(3)]
[t.start() for t in threads]
time.sleep(PLANTED_SECONDS)
stop.set()
[t.join(15) for t in threads]
pres = linearize.check(list(prec.ops), max_seconds=15.0)
summary("planted bug: ?stale reads on lagging replicas", prec, pres, t_start)
c.check("the planted bug is caught: the history is not linearizable", False, pres["ok"])
win = pres.get("window") or []
c.check("... with a minimal window ending in a stale read (%d ops)" % len(win), True,
        bool(win) and len(win) <= 5 and any(o.kind == "read" for o in win))

raise SystemExit(c.finish())

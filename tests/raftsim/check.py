"""tests/raftsim/check.py — run the Raft simulation (rumor-raftsim) on a
range of seeds and check each history with tests/integration/linearize.py.

    check.py RAFTSIM [--seeds 1-20] [--bug none|follower-read|no-barrier]
             [--seconds S] [--keep DIR] [-v]

Without --bug, every seed must give a linearizable history (an undecided
check, a bound reached, fails too) and the simulator must exit 0 (its
replicas agree after the final heal, every server caught up). With --bug,
the checker must report a violation on at least one seed; how many is
printed (with --default-reads alone, how many is only reported); with --no-clamp, a server that never caught up
or whose Raft shut down (libraft 0.15's bug, docs/SIMULATION.md) is noted,
not failed.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import linearize  # noqa: E402
from linearize import Op  # noqa: E402


def seeds(spec):
    out = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def history(doc):
    """linearize.Op objects from the simulator's JSON."""
    ops = []
    for o in doc["ops"]:
        arg = tuple(o["arg"]) if o["kind"] == "cas" else o["arg"]
        ops.append(Op(o["p"], o["key"], o["kind"], arg, o["res"], o["call"], o["ret"],
                      o.get("node", "")))
    return ops


def run_seed(sim, seed, bug, seconds, keep, extra=()):
    cmd = [sim, "-seed", str(seed), "-bug", bug] + list(extra)
    if seconds:
        cmd += ["-seconds", str(seconds)]
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=240)
    wall = time.monotonic() - t0
    if keep:
        with open(os.path.join(keep, "seed%d-%s.json" % (seed, bug)), "wb") as f:
            f.write(p.stdout)
    try:
        doc = json.loads(p.stdout)
    except ValueError:
        doc = None
    return p.returncode, p.stderr.decode(errors="replace"), doc, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sim")
    ap.add_argument("--seeds", default="1-20")
    ap.add_argument("--bug", default="none")
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--default-reads", type=int, default=0,
                    help="percent of reads in the default mode (not only ?consistent)")
    ap.add_argument("--ready", default="barrier", help="barrier (server.c) or tick (before the fix)")
    ap.add_argument("--no-clamp", action="store_true",
                    help="without server/raft_io.c's workaround of libraft 0.15's bug")
    ap.add_argument("--keep", default="")
    ap.add_argument("-v", action="store_true")
    a = ap.parse_args()
    planted = a.bug != "none" or a.default_reads > 0
    # default reads are not linearizable in every schedule (a deposed leader
    # answers until it steps down): with them alone, the counts are reported
    explore = a.bug == "none"
    failures, caught, ran = [], [], 0
    t_start = time.monotonic()
    for seed in seeds(a.seeds):
        extra = ["-default-reads", str(a.default_reads), "-ready", a.ready,
                 "-clamp", "0" if a.no_clamp else "1"]
        rc, err, doc, wall = run_seed(a.sim, seed, a.bug, a.seconds, a.keep, extra)
        ran += 1
        if doc is None or rc not in (0, 1):
            failures.append("seed %d: the simulator failed (exit %d):\n%s" % (seed, rc, err))
            continue
        if rc != 0 or doc["violation"]:
            failures.append("seed %d: %s\n%s" % (seed, doc["violation"], err.strip()))
        ops = history(doc)
        res = linearize.check(ops, max_seconds=20.0)
        kinds = {}
        for op in ops:
            k = op.kind + ("" if op.kind == "read" else "/" + op.res)
            kinds[k] = kinds.get(k, 0) + 1
        verdict = {True: "linearizable", False: "NOT linearizable", None: "UNDECIDED"}[res["ok"]]
        print("seed %2d: %4d ops %s, %d leader changes, %d crashes, %d partitions, "
              "%d snapshots restored; %s (check %.2f s, sim %.2f s)" % (
                  seed, len(ops), json.dumps(kinds, sort_keys=True), doc["leader_changes"],
                  doc["crashes"], doc["partitions"], doc["snapshots_restored"], verdict,
                  res["seconds"], wall))
        if a.v:
            print("  faults: " + doc["faults"])
        if res["ok"] is False:
            caught.append(seed)
            if not planted or a.v or len(caught) == 1:
                print("\n".join("  " + line for line in linearize.report(res)))
        if res["ok"] is None:
            failures.append("seed %d: the check was undecided (a bound was reached)" % seed)
        elif res["ok"] is False and not planted:
            failures.append("seed %d: the history is not linearizable" % seed)
        if len(ops) < 100:
            failures.append("seed %d: only %d operations recorded" % (seed, len(ops)))
    print("%d seeds in %.1f s; violations found on %d: %s" % (
        ran, time.monotonic() - t_start, len(caught), caught))
    if planted:
        what = a.bug if a.bug != "none" else "default reads (%d %%, ready on %s)" % (
            a.default_reads, a.ready)
        print("%s: not linearizable on %d of %d seeds" % (what, len(caught), ran))
        if not caught and not explore:
            failures.append("%s: caught on no seed" % what)
        # with a planted bug, only the checker's verdict matters, and the
        # replicas must still agree (the bug is in reads alone); libraft
        # 0.15's own bug (docs/SIMULATION.md), shown with --no-clamp, is
        # noted, not failed
        libraft = ("never caught up", "Raft shut down") if a.no_clamp else ()
        for f in failures:
            if any(m in f for m in libraft):
                print("NOTE (libraft 0.15, see docs/SIMULATION.md): " + f.split("\n")[0])
        failures = [f for f in failures if "not linearizable" not in f and
                    not any(m in f for m in libraft)]
    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

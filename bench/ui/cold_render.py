#!/usr/bin/env python3
"""bench/ui/cold_render.py — the web UI's first render on a cold load.

Starts three agents on loopback (n1 with -ui), then N times: a new headless
Chromium with a fresh profile (nothing cached, no earlier visit), one
navigation from about:blank to http://<n1>/ui/#/nodes, and the browser's
own figures for it:

  paint    first render: when the Nodes table with every node's row was
           painted (Element Timing on the rows' name cells, set before they
           are painted by a script the bench injects; renderTime), in ms
           after navigation start. This is the figure issue 19 asks for.
  dom      when those rows were in the DOM (the paint follows: style,
           layout, paint, the frame presented)
  fcp      first contentful paint (the page's shell)
  doc      the HTML's last byte
  api      when the first /v1/ request was started
  requests the requests the load made, static + API, and the depth of the
           static waterfall (0: the page alone; 1: all it needs is named
           in the HTML; 2: a module asked for another...)
  bytes    bytes of HTML, CSS and JavaScript the browser decoded

Prints one line per load, then min / median / max of each, and the
machine's load average (the figures are wall-clock on a shared machine).

    RUMOR_BIN=build-ui/rumor python3 bench/ui/cold_render.py [N] [--stock] [--settle S] [--compare BIN]

N loads (default 10). --settle S: navigate S seconds after the browser
started (default 1, as test_ui.py; 0: at once, the browser still starting
up beside the page). --compare BIN: a fourth agent runs BIN with -ui and
the loads alternate between n1 (A, RUMOR_BIN) and it (B), N each, so that
both see the same load on a shared machine (the table then has 4 rows).

The browser is started as tests/integration/cdp.py starts it; --stock keeps
the two features cdp.QUIET_ARGS turns off (headless Chromium builds its
omnibox popup at start, in a renderer of its own, competing for the CPU
with the page being measured).

Exits 77 without Chromium. Timing is reported, never asserted.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "integration"))
from agents import Cluster  # noqa: E402
import cdp  # noqa: E402

ROWS = "#nodes tbody tr > th"


def cold_load(chromium, url, rows, quiet, settle):
    """One load in a fresh browser; a dict of the figures above (ms)."""
    b = cdp.Browser(chromium, quiet=quiet)
    try:
        b.call("Network.enable")
        b.watch_first_paint(ROWS, rows)
        time.sleep(settle)  # let the browser finish starting up
        b.navigate(url)
        fp = b.first_paint(rows)
        t = b.load_timeline()
    finally:
        b.close()
    static = [r for r in t["requests"] if "/v1/" not in r["url"]]
    api = [r for r in t["res"] if "/v1/" in r["url"]]
    return {"paint": fp["paint"], "dom": fp["dom"], "fcp": t["fcp"], "doc": t["docEnd"],
            "api": min(r["start"] for r in api) if api else None,
            "static": len(static), "apireqs": len(t["requests"]) - len(static),
            "depth": max(r["depth"] for r in static), "bytes": t["docBytes"] + sum(
                r["bytes"] for r in t["res"] if "/v1/" not in r["url"])}


def fmt(x):
    return "   -  " if x is None else "%6.1f" % x


def summary(label, runs, keys):
    for name, f in (("min", min), ("median", statistics.median), ("max", max)):
        print("%-7s %s %s" % (name, " ".join(fmt(f([r[k] for r in runs if r[k] is not None]) if any(
            r[k] is not None for r in runs) else None) for k in keys), label))


def main():
    args = sys.argv[1:]
    quiet = "--stock" not in args
    args = [a for a in args if a != "--stock"]
    other = None
    settle = 1.0
    if "--settle" in args:
        i = args.index("--settle")
        settle = float(args[i + 1])
        del args[i:i + 2]
    if "--compare" in args:
        i = args.index("--compare")
        other = os.path.abspath(args[i + 1])
        del args[i:i + 2]
    n = int(args[0]) if args else 10
    chromium = cdp.find_chromium()
    if chromium is None:
        print("SKIP: no chromium installed (apt-get install chromium)")
        return 77
    c = Cluster()
    fast = ("-profile", "local")
    c.start(1, "n1", "-ui", *fast)
    c.start(2, "n2", "-join", "127.0.0.1:%d" % c.gport(1), *fast)
    c.start(3, "n3", "-join", "127.0.0.1:%d" % c.gport(1), *fast)
    targets = [("", c.haddr(1))]
    if other:  # a fourth agent, the other binary's UI, loads alternating
        import agents
        mine, agents.RUMOR_BIN = agents.RUMOR_BIN, other
        c.start(4, "n4", "-ui", "-join", "127.0.0.1:%d" % c.gport(1), *fast)
        agents.RUMOR_BIN = mine
        targets = [("A", c.haddr(1)), ("B", c.haddr(4))]
    rows = 4 if other else 3
    if not c.wait(10, lambda: [m["Status"] for m in c.get(1, "/v1/agent/members") or []] == [1] * rows):
        print("FAIL: the agents did not come up")
        return 1
    keys = ("paint", "dom", "fcp", "doc", "api")
    print("# %d cold loads of http://<agent>/ui/#/nodes (fresh Chromium profile each%s%s), ms after navigation start"
          % (n, "" if quiet else "; --stock: its omnibox popup built too",
             "; navigating %.1f s after the browser started" % settle))
    if other:
        print("# A: %s, B: %s, alternating" % (os.path.abspath(agents.RUMOR_BIN), other))
    print("# load  " + " ".join("%6s" % k for k in keys) + "  requests(static+api) depth bytes")
    runs = {label: [] for label, _ in targets}
    for i in range(n):
        for label, addr in targets:
            r = cold_load(chromium, "http://%s/ui/#/nodes" % addr, rows, quiet, settle)
            runs[label].append(r)
            print("%6d  %s  %d+%d %d %d %s" % (i + 1, " ".join(fmt(r[k]) for k in keys), r["static"],
                                             r["apireqs"], r["depth"], r["bytes"], label))
            time.sleep(0.2)
    for label, _ in targets:
        summary(label, runs[label], keys)
    print("# load average:", " ".join(open("/proc/loadavg").read().split()[:3]), "on", os.cpu_count(), "cores")
    return 0 if all(r["paint"] is not None for v in runs.values() for r in v) else 1


if __name__ == "__main__":
    sys.exit(main())

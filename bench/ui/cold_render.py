#!/usr/bin/env python3
"""bench/ui/cold_render.py — the web UI's first render on a cold load.

Starts three agents on loopback (n1 with -ui), then N times: a new headless
Chromium with a fresh profile (nothing cached, no renderer running), one
navigation to http://<n1>/ui/#/nodes, and the browser's own figures for it:

  paint    first render: when the Nodes table with every node's row was
           painted (Element Timing on the rows' name cells, set before they
           are painted by a script the bench injects; renderTime), in ms
           after navigation start. This is the figure issue 19 asks for.
  dom      when those rows were in the DOM (the paint follows: style,
           layout, paint, the frame presented)
  fcp      first contentful paint (the page's shell)
  doc      the HTML's last byte
  api      when the first /v1/ request was started
  reqs     requests the load made, static / API, and the depth of the
           static waterfall (1: everything is asked for by the HTML)
  bytes    bytes of HTML, CSS and JavaScript the browser decoded

Prints one line per load, then min / median / max of each, and the
machine's load average (the figures are wall-clock on a shared machine).

    RUMOR_BIN=build-ui/rumor python3 bench/ui/cold_render.py [N]   # N=10

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


def cold_load(chromium, url, rows):
    """One load in a fresh browser; a dict of the figures above (ms)."""
    b = cdp.Browser(chromium)
    try:
        b.call("Network.enable")
        b.watch_first_paint(ROWS, rows)
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


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    chromium = cdp.find_chromium()
    if chromium is None:
        print("SKIP: no chromium installed (apt-get install chromium)")
        return 77
    c = Cluster()
    fast = ("-profile", "local")
    c.start(1, "n1", "-ui", *fast)
    c.start(2, "n2", "-join", "127.0.0.1:%d" % c.gport(1), *fast)
    c.start(3, "n3", "-join", "127.0.0.1:%d" % c.gport(1), *fast)
    if not c.wait(10, lambda: [m["Status"] for m in c.get(1, "/v1/agent/members") or []] == [1, 1, 1]):
        print("FAIL: the three agents did not come up")
        return 1
    url = "http://%s/ui/#/nodes" % c.haddr(1)
    keys = ("paint", "dom", "fcp", "doc", "api")
    print("# %d cold loads of %s (fresh Chromium profile each), ms after navigation start" % (n, url))
    print("# load  " + " ".join("%6s" % k for k in keys) + "  requests(static+api) depth bytes")
    runs = []
    for i in range(n):
        r = cold_load(chromium, url, 3)
        runs.append(r)
        print("%6d  %s  %d+%d %d %d" % (i + 1, " ".join(fmt(r[k]) for k in keys), r["static"],
                                      r["apireqs"], r["depth"], r["bytes"]))
        time.sleep(0.2)
    for name, f in (("min", min), ("median", statistics.median), ("max", max)):
        print("%-7s %s" % (name, " ".join(fmt(f([r[k] for r in runs if r[k] is not None]) if any(
            r[k] is not None for r in runs) else None) for k in keys)))
    print("# load average:", " ".join(open("/proc/loadavg").read().split()[:3]), "on", os.cpu_count(), "cores")
    return 0 if all(r["paint"] is not None for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

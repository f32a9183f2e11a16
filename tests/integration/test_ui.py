"""The web UI (issue 19) in a real browser: Debian's headless Chromium,
driven through the DevTools protocol (tests/integration/cdp.py), against a
real 3-agent cluster on loopback.

Checks: the Nodes page lists all three; killing one agent (by PID) turns it
failed on the page without a reload; a service with a failing check shows
the check's output; a key created in the UI is read back over HTTP and a key
written over HTTP appears in the UI; a concurrent edit is detected; an event
fired from the UI is listed; the page reflows at 200% zoom and is reachable
by keyboard; /ui/ is 404 on an agent without -ui; the page is one file
(its style and modules inlined at build time, allowed by hash in the CSP),
so a cold load asks for it and then only the API. Prints the first render
the browser measured (when it painted the Nodes table's rows, docs/UI.md),
cold and on reloads; timing is printed, not asserted (bench/ui/cold_render.py
runs many cold loads). With RUMOR_UI_SCREENSHOTS=<dir> it writes one PNG per
page there (docs/UI.md uses docs/ui/).

Skips (exit 77) only when no Chromium is installed.
"""
import http.client as httpc
import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from agents import Cluster  # noqa: E402
import cdp  # noqa: E402

CHROMIUM = cdp.find_chromium()
if CHROMIUM is None:
    print("SKIP: no chromium installed (apt-get install chromium)")
    sys.exit(77)

SHOTS = os.environ.get("RUMOR_UI_SCREENSHOTS")

c = Cluster()


def http(i, method, path, body=None):
    req = urllib.request.Request("http://%s%s" % (c.haddr(i), path), method=method,
                                 data=body.encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def js(s):
    return json.dumps(s)


def shot(b, name):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        b.eval("document.activeElement && document.activeElement.blur()")
        time.sleep(0.15)  # let the last paint land
        b.screenshot(os.path.join(SHOTS, name + ".png"))


def page_text(b, sel):
    return b.eval("(() => { const e = document.querySelector(%s); return e ? e.textContent : null })()" % js(sel))


PERF = """(() => { const p = performance.getEntriesByName('first-contentful-paint')[0];
    const n = performance.getEntriesByType('navigation')[0];
    return {fcp: p ? p.startTime : null,
            dcl: n ? n.domContentLoadedEventEnd : null, bytes: performance.getEntriesByType('resource')
                .reduce((s, r) => s + (r.initiatorType !== 'fetch' ? r.decodedBodySize : 0), n ? n.decodedBodySize : 0)}; })()"""


VISIBLE = """{ Object.defineProperty(document, 'hidden', {configurable: true, get: () => %s});
    document.dispatchEvent(new Event('visibilitychange')) }"""


def select(b, sel_id, value):
    b.eval("{ const s = document.getElementById(%s); s.value = %s; s.dispatchEvent(new Event('change')) }"
           % (js(sel_id), js(value)))


fast = ("-profile", "local")
c.start(1, "n1", "-ui", *fast)
c.start(2, "n2", "-ui", "-join", "127.0.0.1:%d" % c.gport(1), *fast)
c.start(3, "n3", "-join", "127.0.0.1:%d" % c.gport(1), *fast)  # no -ui
c.check("three members alive", True,
        c.wait(10, lambda: [m["Status"] for m in c.get(1, "/v1/agent/members") or []] == [1, 1, 1]))
c.check("an agent without -ui answers /ui/ 404", 404, http(3, "GET", "/ui/")[0])
c.check("an agent without -ui answers / 404", 404, http(3, "GET", "/")[0])

conn = httpc.HTTPConnection(c.haddr(1), timeout=5)
conn.request("GET", "/")
r = conn.getresponse()
c.check("/ redirects to /ui/ with -ui", (301, "/ui/"), (r.status, r.getheader("Location")))
r.read()
conn.request("GET", "/ui/")
r = conn.getresponse()
etag, ctype, csp = r.getheader("ETag"), r.getheader("Content-Type"), r.getheader("Content-Security-Policy") or ""
size = len(r.read())
# the payload budget: the page is everything the UI serves
c.check("UI payload under 100 KB (%d bytes)" % size, True, size < 100 * 1024)
c.check("the page is served as HTML", "text/html; charset=utf-8", ctype)
c.check("its CSP allows inline script and style by hash only", (True, True, False),
        ("script-src 'sha256-" in csp, "style-src 'sha256-" in csp, "unsafe" in csp))
conn.request("GET", "/ui/", headers={"If-None-Match": etag or "x"})
r = conn.getresponse()
r.read()
c.check("its ETag revalidates to 304", 304, r.status)
conn.request("GET", "/ui/js/app.js")
r = conn.getresponse()
r.read()
c.check("a module is not served on its own (it is in the page)", 404, r.status)
conn.close()

# a service on n2 whose TTL check is failing, with an output to show
c.check("service registered", 200, http(2, "PUT", "/v1/agent/service/register", json.dumps(
    {"Name": "web", "ID": "web-1", "Port": 8080, "Tags": ["blue"],
     "Check": {"CheckID": "web-ttl", "Name": "web ttl", "TTL": "300s", "Status": "passing"}}))[0])
# (passing first: a status change reaches the catalog at once; an output-only
# change waits for the next sync, as Consul's check_update_interval)
c.check("check failed with a note", 200,
        http(2, "PUT", "/v1/agent/check/fail/web-ttl?note=disk%20full%20on%20%2Fvar")[0])

b = cdp.Browser(CHROMIUM)
try:
    b.call("Network.enable")
    base = "http://%s/ui/" % c.haddr(1)
    # first render: when the browser painted the rows of all three nodes
    b.watch_first_paint("#nodes tbody tr > th", 3)
    time.sleep(1)  # a browser started, not one still starting (bench/ui/cold_render.py --settle)
    # ---- Nodes, the first load of a fresh profile: nothing cached
    b.navigate(base + "#/nodes")
    ok = b.wait("document.body.dataset.rendered === '1' && document.querySelectorAll('#nodes tbody tr').length === 3", 10)
    c.check("Nodes lists all three", True, bool(ok))
    fp = b.first_paint(3)
    perf, t = b.eval(PERF), b.load_timeline()
    static = [r["url"] for r in t["requests"] if "/v1/" not in r["url"]]
    print("# cold load (fresh profile), ms after navigation start: first render (Nodes rows painted) %s;"
          " rows in the DOM %s; first contentful paint %s; DOMContentLoaded %.1f; requests: %d static"
          " (%s), %d API; static bytes %d"
          % (fp["paint"], fp["dom"] and round(fp["dom"], 1), perf["fcp"], perf["dcl"] or -1, len(static),
             " ".join(u.split("/", 3)[-1] for u in static), len(t["requests"]) - len(static), perf["bytes"]))
    c.check("the cold first render was measured (figure above; timing is not asserted)", True,
            fp["paint"] is not None)
    c.check("a cold load asks for the page alone, then only the API", [base], static)
    warm = []
    for _ in range(5):  # a reload: the browser warm, the page revalidated (304)
        b.call("Page.reload")
        b.wait("document.body.dataset.rendered === '1' && document.querySelectorAll('#nodes tbody tr').length === 3", 10)
        warm.append(b.first_paint(3)["paint"] or -1)
    print("# reloads: first render (rows painted) %s ms (median %.1f)"
          % (" ".join("%.1f" % x for x in warm), sorted(warm)[2]))
    c.check("n2's services fill in", True,
            bool(b.wait("document.querySelector('#nodes tr[data-node=\"n2\"] a.tag')", 5)))
    c.check("all three alive on the page", ["alive"] * 3,
            b.eval("[...document.querySelectorAll('#nodes td.status')].map(e => e.textContent)"))
    # keyboard: Tab from the top reaches the skip link, then the first page link
    b.eval("document.activeElement && document.activeElement.blur(); window.focus()")
    b.key("Tab", "Tab", 9)
    b.key("Tab", "Tab", 9)
    c.check("Tab reaches the page links", "Nodes", b.eval("document.activeElement.textContent"))

    # kill n3 by PID: the row turns failed without a reload
    b.eval("window.__noReload = 1")
    c.procs[3].kill()
    c.procs[3].wait()
    t0 = time.monotonic()
    failed = b.wait("document.querySelector('#nodes tr[data-node=\"n3\"] td.status').textContent === 'failed'", 20)
    c.check("killed n3 shows failed without a reload", (True, 1),
            (bool(failed), b.eval("window.__noReload")))
    print("# n3 shown failed %.1f s after the kill" % (time.monotonic() - t0))
    # the RTT column: this agent's estimate to n2 from network coordinates
    # (redrawn with the catalog: n3's failure was a change), none for itself
    rtt_ok = b.wait("/^[0-9]+\\.[0-9]{3} ms$/.test(document.querySelector("
                    "'#nodes tr[data-node=\"n2\"] td.rtt').textContent)", 10)
    c.check("RTT column: an estimate in ms to n2, nothing for this agent itself",
            (True, ""), (bool(rtt_ok), b.eval(
                "document.querySelector('#nodes tr[data-node=\"n1\"] td.rtt').textContent")))
    print("# n1 -> n2 estimated RTT: %s" % b.eval(
        "document.querySelector('#nodes tr[data-node=\"n2\"] td.rtt').textContent"))
    shot(b, "nodes")

    # ---- Services
    b.navigate(base + "#/services")
    out = b.wait("(() => { const e = document.querySelector('[data-check=\"web-ttl\"] pre.output'); return e && e.textContent })()", 10)
    c.check("the failing check's output is shown", "disk full on /var", out)
    c.check("the instance is critical", "critical",
            page_text(b, '[data-instance="web-1"] td .badge'))
    select(b, "f-state", "passing")
    c.check("filter by state passing hides it", None, page_text(b, '[data-instance="web-1"]'))
    select(b, "f-state", "critical")
    select(b, "f-tag", "blue")
    c.check("filter critical + tag blue shows it", "web-1", page_text(b, '[data-instance="web-1"] th'))
    select(b, "f-state", "")
    shot(b, "services")

    # ---- Key/Value: create in the UI, read back over HTTP
    b.navigate(base + "#/kv/")
    b.wait("document.getElementById('kv-create')", 5)
    b.eval("""{ document.getElementById('kv-new-key').value = 'ui/created';
              document.getElementById('kv-new-value').value = 'hello from the UI';
              document.getElementById('kv-create').requestSubmit() }""")
    got = None
    if c.wait(5, lambda: http(1, "GET", "/v1/kv/ui/created?raw")[0] == 200):
        got = http(1, "GET", "/v1/kv/ui/created?raw")[1]
    c.check("a key created in the UI reads back over HTTP", "hello from the UI", got)
    c.check("the UI opens the key it created", True,
            bool(b.wait("location.hash === '#/kv/ui/created' && document.getElementById('kv-editor')", 5)))
    # a key written over HTTP appears in the open folder (blocking query)
    b.navigate(base + "#/kv/ui/")
    b.wait("document.querySelector('#kv-list a[data-key=\"ui/created\"]')", 5)
    http(1, "PUT", "/v1/kv/ui/from-api", '{"written": "over HTTP", "n": 1}')
    c.check("a key written over HTTP appears in the UI", True,
            bool(b.wait("document.querySelector('#kv-list a[data-key=\"ui/from-api\"]')", 10)))
    shot(b, "kv")
    b.navigate(base + "#/kv/ui/from-api")
    b.wait("document.getElementById('kv-value')", 5)
    b.eval("document.querySelector('[aria-pressed]:nth-child(2)').click()")
    c.check("JSON view pretty-prints", True,
            "\n  \"written\"" in (b.wait("document.getElementById('kv-value').textContent", 5) or ""))
    shot(b, "kv-json")

    # concurrent edit: the UI edits from one index, someone else writes, Save is refused
    b.navigate(base + "#/kv/ui/created")
    b.wait("document.getElementById('kv-editor').value === 'hello from the UI'", 5)
    b.eval("""{ const e = document.getElementById('kv-editor'); e.value = 'mine';
              e.dispatchEvent(new Event('input')) }""")
    http(1, "PUT", "/v1/kv/ui/created", "theirs")
    c.check("the page notices the key changed under the edit", True,
            bool(b.wait("document.getElementById('kv-stale')", 10)))
    b.eval("document.getElementById('kv-save').click()")
    conflict = b.wait("(() => { const e = document.getElementById('conflict'); return e && e.textContent })()", 5)
    c.check("Save is refused and the conflict is shown with their value", True,
            bool(conflict) and "Conflict" in conflict and "theirs" in conflict)
    c.check("their value is kept", "theirs", http(1, "GET", "/v1/kv/ui/created?raw")[1])
    shot(b, "kv-conflict")
    # delete the folder from the UI
    b.navigate(base + "#/kv/ui/")
    b.wait("document.querySelector('#kv-list a')", 5)
    b.eval("[...document.querySelectorAll('button')].find(x => x.textContent === 'Delete folder').click()")
    b.eval("document.getElementById('confirm-yes').click()")
    c.check("Delete folder removes every key under it", True,
            c.wait(5, lambda: http(1, "GET", "/v1/kv/ui/?recurse")[0] == 404))
    c.check("and goes up to the parent folder", True, bool(b.wait("location.hash === '#/kv/'", 5)))

    # a hidden tab: the blocking query is aborted and none is sent until the
    # tab is shown again, when the page catches up
    b.wait("document.getElementById('kv-list')", 5)
    time.sleep(0.3)
    b.eval("1")  # read what the browser already sent, then forget it
    b.events.clear()
    b.eval(VISIBLE % "true")
    http(1, "PUT", "/v1/kv/vis/k", "1")
    time.sleep(1.0)
    b.eval("1")  # collect the browser's events
    kv_reqs = [e for e in b.events if e["method"] == "Network.requestWillBeSent"
               and "/v1/kv" in e["params"]["request"]["url"]]
    canceled = [e for e in b.events if e["method"] == "Network.loadingFailed" and e["params"].get("canceled")]
    c.check("hidden: the open blocking query is aborted, no new one sent", (True, []),
            (len(canceled) >= 1, [e["params"]["request"]["url"] for e in kv_reqs]))
    c.check("hidden: the new key is not shown yet", False,
            b.eval("!!document.querySelector('#kv-list a[data-key=\"vis/\"]')"))
    b.eval(VISIBLE % "false")
    c.check("shown again: the page resumes and shows it", True,
            bool(b.wait("document.querySelector('#kv-list a[data-key=\"vis/\"]')", 5)))

    # ---- Events: fire from the UI, listed on the page and by the API
    b.navigate(base + "#/events")
    b.wait("document.getElementById('ev-fire')", 5)
    b.eval("""{ document.getElementById('ev-name').value = 'deploy';
              document.getElementById('ev-payload').value = 'v2';
              document.getElementById('ev-fire').requestSubmit() }""")
    c.check("a fired event is listed on the page", "v2",
            b.wait("(() => { const r = [...document.querySelectorAll('#events tr[data-event]')]"
                   ".find(x => x.querySelector('th').textContent === 'deploy');"
                   " return r && r.querySelector('code').textContent })()", 10))
    c.check("and by the API on another agent", True,
            c.wait(5, lambda: any(e["Name"] == "deploy" for e in c.get(2, "/v1/event/list") or [])))
    shot(b, "events")

    # an API error is shown as the API sent it
    b.eval("""{ document.getElementById('ev-name').value = 'consul:reserved';
              document.getElementById('ev-fire').requestSubmit() }""")
    c.check("an API error is shown verbatim", True, bool(b.wait(
        "(() => { const e = document.getElementById('error'); return !e.hidden && e.textContent.includes("
        "\"400 Event names starting with 'consul:' are reserved\") })()", 5)))
    shot(b, "error")

    # the ACL token: typed once, kept in localStorage, sent as X-Consul-Token
    b.navigate(base + "#/nodes")
    b.wait("document.querySelectorAll('#nodes tbody tr').length === 3", 5)
    b.eval("1")  # read what the browser already sent, then forget it
    b.events.clear()
    b.eval("{ document.getElementById('token').value = 's3cret-ui'; document.getElementById('tokenform').requestSubmit() }")
    b.wait("document.querySelectorAll('#nodes tbody tr').length === 3", 5)
    # and on a load with the token already stored (boot.js's early calls too)
    b.call("Page.reload")
    b.wait("document.body.dataset.rendered === '1' && document.querySelectorAll('#nodes tbody tr').length === 3", 10)
    time.sleep(0.3)
    b.eval("1")
    sent = [e["params"]["request"]["headers"].get("X-Consul-Token") for e in b.events
            if e["method"] == "Network.requestWillBeSent" and "/v1/" in e["params"]["request"]["url"]]
    c.check("the token is sent as X-Consul-Token and kept in localStorage, also after a reload", (True, "s3cret-ui"),
            (len(sent) > 6 and all(t == "s3cret-ui" for t in sent), b.eval("localStorage.getItem('rumor.token')")))
    b.eval("{ document.getElementById('token').value = ''; document.getElementById('tokenform').requestSubmit() }")

    # 200% zoom: a 600 px wide viewport is what a 1200 px window shows at 200%
    b.call("Emulation.setDeviceMetricsOverride", {"width": 600, "height": 800, "deviceScaleFactor": 2, "mobile": False})
    b.navigate(base + "#/nodes")
    b.wait("document.querySelectorAll('#nodes tbody tr').length === 3", 5)
    c.check("no page-wide horizontal scroll at 200% zoom", True,
            b.eval("document.documentElement.scrollWidth <= window.innerWidth"))
    shot(b, "nodes-200")
    c.check("no cookies set", "", b.eval("document.cookie"))
    b.eval("1")
    c.check("no script error or CSP violation in the whole run", [], b.problems)
finally:
    if c.failed:  # what the page asked the agent, for the log
        for e in b.events[-60:]:
            p = e.get("params", {})
            if e["method"] == "Network.requestWillBeSent":
                print("#  ->", p["request"]["method"], p["request"]["url"])
            elif e["method"] == "Network.loadingFailed":
                print("#  !!", p.get("errorText"), p.get("canceled"))
            elif e["method"] in ("Runtime.exceptionThrown", "Runtime.consoleAPICalled"):
                print("#  js", json.dumps(p)[:300])
    b.close()

sys.exit(c.finish())

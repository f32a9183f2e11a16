"""tests/integration/cdp.py — drive Debian's headless Chromium through the
DevTools protocol over --remote-debugging-pipe (fd 3: commands in, fd 4:
replies and events out, each message JSON ended by a NUL byte). No
websocket library, no browser download: only /usr/bin/chromium.

One Browser holds one page (a target attached with flatten=true); every
call is bounded by a timeout and the process is killed by PID at close.
"""
import base64
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    for p in ("/usr/bin/chromium", "/usr/lib/chromium/chromium"):  # whatever PATH says
        if os.access(p, os.X_OK):
            return p
    return None


class CDPError(Exception):
    pass


# Chromium's headless mode still builds the omnibox popup (two WebUI pages in
# a renderer of their own) at start: a third of a second of CPU spent beside
# the page under test on a 2-core machine, for a popup that headless never
# shows. Browser(quiet=True), the default, turns those two features off.
QUIET_ARGS = ["--disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup"]


class Browser:
    def __init__(self, binary, width=1200, height=800, quiet=True):
        self.profile = tempfile.mkdtemp(prefix="rumor-chromium.")
        self.log = open(os.path.join(self.profile, "stderr.log"), "wb")
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()

        def child_fds():  # runs in the child: its fds 3 and 4 are the pipe ends
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        args = [binary, "--headless=new", "--no-sandbox", "--disable-gpu",
                "--remote-debugging-pipe", "--user-data-dir=" + self.profile,
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", "--mute-audio",
                "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                "--window-size=%d,%d" % (width, height)] + (QUIET_ARGS if quiet else []) + ["about:blank"]
        self.proc = subprocess.Popen(args, preexec_fn=child_fds, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=self.log,
                                     start_new_session=True)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.wfd, self.rfd = to_browser_w, from_browser_r
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.problems = []  # see _note_problem
        self.session = None
        tid = self.call("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": tid, "flatten": True},
                                 browser=True)["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Log.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def _read_msg(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError("timed out waiting for the browser")
            r, _, _ = select.select([self.rfd], [], [], left)
            if r:
                chunk = os.read(self.rfd, 1 << 20)
                if not chunk:
                    with open(self.log.name, errors="replace") as f:
                        tail = "".join(f.readlines()[-10:])
                    raise CDPError("the browser closed its pipe (exited?); its stderr:\n" + tail)
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, timeout=10, browser=False):
        self.next_id += 1
        mid = self.next_id
        m = {"id": mid, "method": method, "params": params or {}}
        if self.session and not browser:
            m["sessionId"] = self.session
        data = json.dumps(m).encode() + b"\0"
        while data:
            data = data[os.write(self.wfd, data):]
        deadline = time.monotonic() + timeout
        while True:
            r = self._read_msg(deadline)
            if r.get("id") == mid:
                if "error" in r:
                    raise CDPError("%s: %s" % (method, r["error"]))
                return r.get("result", {})
            if "method" in r:
                self.events.append(r)
                self._note_problem(r)

    def _note_problem(self, ev):
        """Keeps uncaught exceptions and console/CSP errors (not failed
        loads: a 4xx the page asked for is logged by the browser too)."""
        p = ev.get("params", {})
        if ev["method"] == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.problems.append(d.get("exception", {}).get("description") or d.get("text"))
        elif ev["method"] == "Log.entryAdded":
            e = p.get("entry", {})
            if e.get("level") == "error" and e.get("source") != "network":
                self.problems.append("%s: %s" % (e.get("source"), e.get("text")))

    def eval(self, expr, timeout=10):
        """The value of a JavaScript expression (promises awaited)."""
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                          "awaitPromise": True}, timeout=timeout)
        if "exceptionDetails" in r:
            raise CDPError("%s: %s" % (expr[:80], r["exceptionDetails"].get("exception", {}).get(
                "description", r["exceptionDetails"].get("text"))))
        return r["result"].get("value")

    def wait(self, expr, seconds):
        """Polls expr until it is truthy; its value, or None after `seconds`."""
        deadline = time.monotonic() + seconds
        # a DOM node does not serialize (it would come back as {}): true
        expr = "(() => { const v = (%s); return v instanceof Node ? true : v })()" % expr
        while time.monotonic() < deadline:
            try:
                v = self.eval(expr)
            except CDPError:
                v = None
            if v:
                return v
            time.sleep(0.05)
        return None

    def watch_first_paint(self, selector, count):
        """Before every document the browser loads from now on: when `count`
        elements matching `selector` are in the DOM, note the time, and mark
        each with the elementtiming attribute before it is painted, so that
        the browser reports when it painted them (Element Timing). Nothing
        in the page needs to cooperate. Read back with first_paint()."""
        src = r"""(() => { const t = {dom: null, paint: []};
          Object.defineProperty(window, '__firstPaint', {value: t});
          new PerformanceObserver((l) => { for (const e of l.getEntries())
            if (e.identifier === 'cdp-first-paint') t.paint.push(e.renderTime || e.loadTime); })
            .observe({type: 'element', buffered: true});
          new MutationObserver(() => {
            const els = document.querySelectorAll(%s);
            for (const e of els) if (!e.hasAttribute('elementtiming')) e.setAttribute('elementtiming', 'cdp-first-paint');
            if (t.dom == null && els.length >= %d) t.dom = performance.now();
          }).observe(document, {subtree: true, childList: true});
        })()""" % (json.dumps(selector), count)
        self.call("Page.addScriptToEvaluateOnNewDocument", {"source": src})

    def first_paint(self, count, seconds=10):
        """After watch_first_paint and a navigation: {dom, paint} in ms after
        navigation start (paint: when the last of the `count` elements was
        painted, all in one frame as a page draws them at once), None where
        the page never got there."""
        ok = self.wait("window.__firstPaint && window.__firstPaint.paint.length >= %d" % count, seconds)
        t = self.eval("window.__firstPaint || null") or {}
        # a redraw before the first frame replaces elements that were never
        # painted (and so are never reported): the first frame holding
        # `count` of them is the count-th earliest report
        return {"dom": t.get("dom"), "paint": sorted(t["paint"])[count - 1] if ok else None}

    def load_timeline(self):
        """The navigation just made, as the browser saw it: the document's
        timing, each request (from the Network events: URL, when it started,
        its byte count, and its depth: 0 for the document, 1 for what the
        document asked for, n+1 for what a file at depth n asked for)."""
        self.eval("1")  # collect the events sent so far
        nav = self.eval("""(() => { const n = performance.getEntriesByType('navigation')[0];
            const p = performance.getEntriesByName('first-contentful-paint')[0];
            return {t0: performance.timeOrigin, docEnd: n.responseEnd, dcl: n.domContentLoadedEventEnd,
                    fcp: p ? p.startTime : null, docBytes: n.decodedBodySize,
                    res: performance.getEntriesByType('resource').map((r) => ({url: r.name,
                      start: r.startTime, end: r.responseEnd, bytes: r.decodedBodySize}))} })()""")
        depth, reqs = {}, []
        for e in self.events:
            if e["method"] != "Network.requestWillBeSent":
                continue
            p = e["params"]
            url = p["request"]["url"].split("#")[0]
            ini = p.get("initiator", {})
            by = ini.get("url")
            frames = (ini.get("stack") or {}).get("callFrames") or []
            if frames:
                by = frames[-1]["url"]  # the outermost script on the stack
            d = 0 if p.get("type") == "Document" else depth.get((by or "").split("#")[0], 0) + 1
            depth.setdefault(url, d)
            reqs.append({"url": url, "depth": d})
        nav["requests"] = reqs
        return nav

    def navigate(self, url):
        self.call("Page.navigate", {"url": url})

    def key(self, key, code, vk):
        for t in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", {"type": t, "key": key, "code": code,
                                                 "windowsVirtualKeyCode": vk})

    def screenshot(self, path):
        r = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))

    def close(self):
        try:  # the browser and the renderers it forked: its own process group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait()
        for fd in (self.wfd, self.rfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

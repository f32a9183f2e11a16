"""tests/integration/agents.py — start and stop real rumor agents from Python.

Every agent is tracked by its Popen object and killed at exit; waits are
bounded. Used by the test_*.py integration tests (run with /usr/bin/python3).
"""
import atexit
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

def rss_kib(pid):
    """The resident set of process pid in KiB (VmRSS), 0 if it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def flood(socks, payload, seconds, chunk=65536, pause=0.01):
    """Send payload on every non-blocking socket of socks, chunk bytes at a
    time in turn, until each has sent all of it or was closed by the peer,
    or seconds pass. Returns the bytes sent per socket."""
    sent = [0] * len(socks)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(x < len(payload) for x in sent):
        for j, s in enumerate(socks):
            if sent[j] >= len(payload):
                continue
            try:
                sent[j] += s.send(payload[sent[j]:sent[j] + chunk])
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                sent[j] = len(payload)  # closed by the agent
        time.sleep(pause)
    return sent


RUMOR_BIN = os.environ.get("RUMOR_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "rumor")


class Cluster:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="rumor-pytest.")
        self.base = 10000 + random.Random(os.getpid()).randrange(0, 200) * 100  # below the ephemeral range
        self.procs = {}
        self.passed = 0
        self.failed = 0
        atexit.register(self.close)

    def gport(self, i):
        return self.base + i

    def hport(self, i):
        return self.base + 50 + i

    def sport(self, i):
        return self.base + 80 + i

    def haddr(self, i):
        return "127.0.0.1:%d" % self.hport(i)

    def start(self, i, name, *extra):
        data = os.path.join(self.tmp, "data-" + name)
        os.makedirs(data, exist_ok=True)
        log = open(os.path.join(self.tmp, name + ".log"), "ab")
        args = [RUMOR_BIN, "agent", "-node", name, "-bind", "127.0.0.1",
                "-advertise", "127.0.0.1", "-serf-lan-port", str(self.gport(i)),
                "-client", "127.0.0.1", "-http-port", str(self.hport(i)),
                "-dns-port", "-1", "-server-port", str(self.sport(i)), "-data-dir", data, "-log-level", "debug"] + list(extra)
        self.procs[i] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.wait(10, lambda: self.procs[i].poll() is not None or
                  self.get(i, "/v1/agent/self") is not None)
        if self.procs[i].poll() is not None:
            # say so here (the log is printed at exit), not as a later
            # check's puzzling failure
            self.check("agent %s starts and answers (exit status; None: running)" % name,
                       None, self.procs[i].poll())
        return self.procs[i]

    def start_server(self, i, expect=3, join=1, *extra):
        """Agent i as a Raft server named s<i> (-server -bootstrap-expect)."""
        return self.start(i, "s%d" % i, "-server", "-bootstrap-expect=%d" % expect,
                          "-retry-join", "127.0.0.1:%d" % self.gport(join),
                          "-retry-interval", "1s", *extra)

    def leader_index(self, servers):
        """The server every live one of `servers` names in /v1/status/leader
        (matched by its server RPC port), or None."""
        live = [i for i in servers if self.procs[i].poll() is None]
        names = set(self.get(i, "/v1/status/leader") for i in live)
        if len(names) != 1 or "" in names or None in names:
            return None
        addr = names.pop()
        return next((i for i in servers if addr.endswith(":%d" % self.sport(i))), None)

    def get(self, i, path):
        try:
            with urllib.request.urlopen("http://%s%s" % (self.haddr(i), path), timeout=2) as r:
                return json.loads(r.read() or b"null")
        except Exception:
            return None

    def put(self, i, key, value, timeout=30, quiet=False):
        """PUT /v1/kv/<key> on agent i: the status, or None without an
        answer; a failure is printed unless quiet."""
        req = urllib.request.Request("http://%s/v1/kv/%s" % (self.haddr(i), key), data=value,
                                     method="PUT")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status
        except urllib.error.HTTPError as e:
            if not quiet:
                print("PUT %s: %d %s" % (key, e.code, e.read()[:200]))
            return e.code
        except Exception as e:  # noqa: BLE001
            if not quiet:
                print("PUT %s: %r" % (key, e))
            return None

    @staticmethod
    def wait(seconds, cond):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.1)
        return False

    def check(self, desc, expected, actual):
        if expected == actual:
            self.passed += 1
            print("ok   - " + desc)
        else:
            self.failed += 1
            print("FAIL - %s: expected %r, got %r" % (desc, expected, actual))

    def close(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.failed:
            for f in sorted(os.listdir(self.tmp)):
                if f.endswith(".log"):
                    print("-----", f)
                    with open(os.path.join(self.tmp, f), errors="replace") as fh:
                        print("".join(fh.readlines()[-30:]))
        shutil.rmtree(self.tmp, ignore_errors=True)

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        return 1 if self.failed else 0

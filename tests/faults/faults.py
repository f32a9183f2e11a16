#!/usr/bin/python3
"""tests/faults/faults.py SCENARIO — fault-injection scenarios with real agents.

Runs inside the network namespace that run.sh created (never on the host's
network). Agent i listens on 127.0.0.(10+i): gossip on 8301 (UDP and TCP),
HTTP on 8500, so addresses, not ports, tell agents apart and nftables rules
can name a node by its address.

The harness:
  - starts agents and records every PID in $FAULTS_DIR/pids (run.sh kills
    them even if this process dies); kills them itself at the end;
  - injects faults with nftables rules in table inet rumorf, chain input
    (every packet on lo crosses the input hook once): random loss with
    `numgen random mod 100 < N drop`, one-way and two-way partitions between
    groups of nodes, blackholing one node. Only gossip traffic (dport 8301)
    is affected, never the HTTP the harness uses to look;
  - tells senders apart by a packet mark, not by source address: agent i
    runs with group id 40000+i (setpriv; still root otherwise), and the
    output chain marks every packet its sockets send with i. Source
    addresses do not work on one host: a TCP connection from an unbound
    socket to 127.0.0.13 leaves *from* 127.0.0.13, so the TCP fallback
    ping of a node cut off by address would sail through the partition.
    Dropping in output instead would hand the sender EPERM, which no real
    network does; the mark survives lo, and the input chain drops;
  - pauses (SIGSTOP/SIGCONT), kills (-9) and restarts agents;
  - observes through each agent's /v1/agent/members and /v1/agent/self.

Every wait is bounded; every check prints expected and actual; the run ends
with "N passed, M failed" and exits non-zero on any failure. Durations are
short by default; RUMOR_LONG_TESTS=1 runs the issue's full lengths.
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

RUMOR_BIN = os.environ["RUMOR_BIN"]
FAULTS_DIR = os.environ["FAULTS_DIR"]
LONG = os.environ.get("RUMOR_LONG_TESTS", "") not in ("", "0", "OFF")
GOSSIP_PORT = 8301
KV_PORT = 8300  # KV sync over TCP (-server-port); cut with gossip
HTTP_PORT = 8500
STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}
HERE = os.path.dirname(os.path.abspath(__file__))

passed = 0
failed = 0


def log(msg):
    print("# " + msg, flush=True)


def ok(desc):
    global passed
    passed += 1
    print("ok   - " + desc, flush=True)


def bad(desc):
    global failed
    failed += 1
    print("FAIL - " + desc, flush=True)


def check(cond, desc, expected=None, actual=None):
    if cond:
        ok(desc)
    elif expected is None:
        bad(desc)
    else:
        bad("%s: expected %s, got %s" % (desc, expected, actual))
    return cond


def wait_until(seconds, fn, step=0.25):
    """Poll fn until it returns a true value or `seconds` pass; returns
    (value, elapsed seconds)."""
    t0 = time.monotonic()
    deadline = t0 + seconds
    while True:
        v = fn()
        if v:
            return v, time.monotonic() - t0
        if time.monotonic() >= deadline:
            return None, time.monotonic() - t0
        time.sleep(step)


def sh(*args, check_rc=True, stdin=None):
    r = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=20)
    if check_rc and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
    return r


# ------------------------------------------------------------------ faults

class Faults:
    """nftables rules in the namespace; every rule touches cluster traffic
    only (destination ports 8301 gossip UDP+TCP and 8300 KV sync), never
    the HTTP API."""

    GOSSIP = "meta l4proto { tcp, udp } th dport { %d, %d }" % (KV_PORT, GOSSIP_PORT)

    def __init__(self, nodes):
        marks = "".join(" meta skgid %d meta mark set %d;" % (nd.gid, nd.i) for nd in nodes)
        sh("nft", "-f", "-", stdin=(
            "table inet rumorf {\n"
            " chain input { type filter hook input priority 0; policy accept; }\n"
            " chain output { type filter hook output priority 0; policy accept;%s }\n"
            "}\n" % marks))

    def _add(self, rule):
        sh("nft", "add rule inet rumorf input " + rule)

    @staticmethod
    def _set(addrs):
        return "{ " + ", ".join(addrs) + " }"

    def loss(self, pct, to=None):
        """Drop pct% of gossip packets (to the addresses `to`, or all)."""
        where = "ip daddr %s " % self._set(to) if to else ""
        self._add("%s%s numgen random mod 100 < %d counter drop" % (where, self.GOSSIP, pct))

    def _cut(self, src, dst):
        self._add("meta mark %s ip daddr %s %s counter drop" %
                  (self._set([str(nd.i) for nd in src]), self._set([nd.addr for nd in dst]),
                   self.GOSSIP))

    def partition(self, a, b, oneway=False):
        """Drop gossip sent by nodes in a to nodes in b (and b to a unless
        oneway). One-way: a cannot open a connection to or send a packet
        to b; b's connections to a work in both directions."""
        self._cut(a, b)
        if not oneway:
            self._cut(b, a)

    def blackhole(self, nd):
        """Drop all gossip to and from node nd."""
        self._add("ip daddr %s %s counter drop" % (nd.addr, self.GOSSIP))
        self._add("meta mark %d %s counter drop" % (nd.i, self.GOSSIP))

    def clear(self):
        sh("nft", "flush chain inet rumorf input")

    def dropped(self):
        """Packets dropped so far by the current rules."""
        out = sh("nft", "list chain inet rumorf input").stdout
        total = 0
        for line in out.splitlines():
            parts = line.split()
            if "counter" in parts:
                i = parts.index("counter")
                if i + 2 < len(parts) and parts[i + 1] == "packets":
                    total += int(parts[i + 2])
        return total


# ------------------------------------------------------------------ agents

class Node:
    def __init__(self, i):
        self.i = i
        self.name = "n%d" % i
        self.addr = "127.0.0.%d" % (10 + i)
        self.gid = 40000 + i
        self.data = os.path.join(FAULTS_DIR, "data-" + self.name)
        self.logpath = os.path.join(FAULTS_DIR, self.name + ".log")
        self.proc = None
        self.extra = []  # flags of this node only (e.g. -server)

    def url(self, path):
        return "http://%s:%d%s" % (self.addr, HTTP_PORT, path)


class Cluster:
    def __init__(self, n, profile="lan", extra=None):
        self.nodes = [Node(i) for i in range(1, n + 1)]
        self.profile = profile
        self.extra = extra or []
        self.procs = []
        for nd in self.nodes:
            sh("ip", "addr", "add", nd.addr + "/32", "dev", "lo", check_rc=False)

    def node(self, name):
        return next(nd for nd in self.nodes if nd.name == name)

    def start(self, nd, join=None):
        os.makedirs(nd.data, exist_ok=True)
        args = ["setpriv", "--regid=%d" % nd.gid, "--clear-groups", RUMOR_BIN, "agent", "-node", nd.name, "-bind", nd.addr, "-advertise", nd.addr,
                "-serf-lan-port", str(GOSSIP_PORT), "-client", nd.addr,
                "-http-port", str(HTTP_PORT), "-dns-port", "-1", "-data-dir", nd.data,
                "-profile", self.profile, "-log-level", "info"] + self.extra + nd.extra
        if join:
            args += ["-retry-join", "%s:%d" % (join.addr, GOSSIP_PORT), "-retry-interval", "1s",
                     "-retry-max", "30"]
        logf = open(nd.logpath, "a")
        logf.write("===== start %s\n" % time.strftime("%H:%M:%S"))
        logf.flush()
        nd.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        logf.close()
        self.procs.append(nd.proc)
        with open(os.path.join(FAULTS_DIR, "pids"), "a") as f:
            f.write("%d\n" % nd.proc.pid)
        return nd.proc

    def start_all(self):
        first = self.nodes[0]
        self.start(first)
        if not wait_until(15, lambda: self.self_info(first) is not None)[0]:
            raise RuntimeError("%s does not answer HTTP" % first.name)
        for nd in self.nodes[1:]:
            self.start(nd, join=first)
        names = [nd.name for nd in self.nodes]
        _, t = wait_until(60, lambda: self.all_see(self.nodes, names, "alive"))
        return check(self.all_see(self.nodes, names, "alive"),
                     "%d agents form one cluster (%.1f s)" % (len(names), t))

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    # -- observation

    @staticmethod
    def get_json(url, timeout=2.0):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return json.loads(r.read())
        except Exception:
            return None

    def members(self, nd):
        """{name: status string} as nd sees the cluster, or None."""
        j = self.get_json(nd.url("/v1/agent/members"))
        if j is None:
            return None
        return {m["Name"]: STATUS.get(m["Status"], str(m["Status"])) for m in j}

    def self_info(self, nd):
        return self.get_json(nd.url("/v1/agent/self"))

    def stats(self, nd):
        j = self.self_info(nd)
        return j["Stats"]["serf_lan"] if j else None

    def all_see(self, viewers, names, status):
        for v in viewers:
            m = self.members(v)
            if m is None:
                return False
            for n in names:
                if m.get(n) != status:
                    return False
        return True

    def views(self, viewers, names):
        out = {}
        for v in viewers:
            m = self.members(v) or {}
            out[v.name] = {n: m.get(n, "absent") for n in names}
        return out


class Watcher(threading.Thread):
    """Polls every agent's member list once a second and records every time
    one of `viewers` reports one of `names` as failed (a false failure when
    nobody is really down)."""

    def __init__(self, cluster, viewers, names):
        super().__init__(daemon=True)
        self.c = cluster
        self.viewers = viewers
        self.names = set(names)
        self.stop_ev = threading.Event()
        self.events = []
        self.samples = 0

    def run(self):
        while not self.stop_ev.is_set():
            for v in self.viewers:
                m = self.c.members(v)
                if m is None:
                    continue
                self.samples += 1
                for n, st in m.items():
                    if n in self.names and st == "failed":
                        self.events.append((round(time.monotonic(), 1), v.name, n))
            self.stop_ev.wait(1.0)

    def stop(self):
        self.stop_ev.set()
        self.join(timeout=30)


# --------------------------------------------------------------- scenarios

def scenario_loss10(c, f):
    """10 nodes, 10% random loss on all gossip: nobody is marked failed."""
    if not c.start_all():
        return
    secs = 120 if LONG else 40
    names = [nd.name for nd in c.nodes]
    w = Watcher(c, c.nodes, names)
    w.start()
    f.loss(10)
    time.sleep(secs)
    dropped = f.dropped()
    f.clear()
    w.stop()
    log("10%% loss for %d s: %d gossip packets dropped, %d member-list samples" % (secs, dropped, w.samples))
    check(dropped > 0, "the loss rule dropped packets", ">0", dropped)
    check(len(w.events) == 0, "no false failure under 10%% loss for %d s" % secs, "none",
          w.events[:5])
    ok_all, t = wait_until(30, lambda: c.all_see(c.nodes, names, "alive"))
    check(ok_all, "all 10 alive everywhere after the loss (%.1f s)" % t)


def scenario_loss30(c, f):
    """10 nodes, 30% random loss, then none: members converge after."""
    if not c.start_all():
        return
    secs = 120 if LONG else 30
    names = [nd.name for nd in c.nodes]
    w = Watcher(c, c.nodes, names)
    w.start()
    f.loss(30)
    time.sleep(secs)
    dropped = f.dropped()
    f.clear()
    w.stop()
    log("30%% loss for %d s: %d gossip packets dropped; %d failed observations during it" %
        (secs, dropped, len(w.events)))
    check(dropped > 0, "the loss rule dropped packets", ">0", dropped)
    res, t = wait_until(90, lambda: c.all_see(c.nodes, names, "alive"), step=0.5)
    check(res, "all 10 alive everywhere within 90 s after 30%% loss stops (took %.1f s)" % t,
          "all alive", c.views(c.nodes, names) if not res else None)
    log("convergence after the loss stopped: %.1f s" % t)


def scenario_partition(c, f):
    """2|3 two-way partition: each side marks the other failed; after the
    heal everyone rejoins within a bound."""
    if not c.start_all():
        return
    a, b = c.nodes[:2], c.nodes[2:]
    an, bn = [nd.name for nd in a], [nd.name for nd in b]
    names = an + bn
    t0 = time.monotonic()
    f.partition(a, b)
    res1, t1 = wait_until(60, lambda: c.all_see(a, bn, "failed"))
    res2, t2 = wait_until(60 - t1, lambda: c.all_see(b, an, "failed"))
    check(res1, "side {n1,n2} marks n3..n5 failed (%.1f s)" % t1, "failed", c.views(a, bn))
    check(res2, "side {n3,n4,n5} marks n1,n2 failed (%.1f s)" % (time.monotonic() - t0),
          "failed", c.views(b, an))
    check(c.all_see(a, an, "alive") and c.all_see(b, bn, "alive"),
          "each side still sees its own members alive", "alive",
          c.views(c.nodes, names))
    f.clear()
    bound = 150 if LONG else 75
    res, t = wait_until(bound, lambda: c.all_see(c.nodes, names, "alive"), step=0.5)
    check(res, "after the heal all 5 alive everywhere within %d s (took %.1f s)" % (bound, t),
          "all alive", c.views(c.nodes, names) if not res else None)
    log("partition heal to full convergence: %.1f s" % t)


def scenario_oneway(c, f):
    """One-way partition: n1 cannot reach n2's gossip port (n2 can reach
    n1). Indirect probes go around the cut: n2 is not marked failed."""
    if not c.start_all():
        return
    names = [nd.name for nd in c.nodes]
    n1, n2 = c.nodes[0], c.nodes[1]
    w = Watcher(c, c.nodes, names)
    w.start()
    f.partition([n1], [n2], oneway=True)
    time.sleep(30)
    dropped = f.dropped()
    f.clear()
    w.stop()
    check(dropped > 0, "the one-way rule dropped packets", ">0", dropped)
    check(len(w.events) == 0, "a one-way cut n1->n2 causes no failure (indirect probes)",
          "none", w.events[:5])


def scenario_blackhole(c, f):
    """Blackholed node: all others mark it failed, it marks all failed;
    after the blackhole is lifted it rejoins."""
    if not c.start_all():
        return
    names = [nd.name for nd in c.nodes]
    x = c.nodes[3]
    rest = [nd for nd in c.nodes if nd is not x]
    f.blackhole(x)
    res, t = wait_until(60, lambda: c.all_see(rest, [x.name], "failed"))
    check(res, "all others mark blackholed %s failed (%.1f s)" % (x.name, t), "failed",
          c.views(rest, [x.name]))
    res, t = wait_until(60, lambda: c.all_see([x], [nd.name for nd in rest], "failed"))
    check(res, "%s marks all others failed (%.1f s)" % (x.name, t))
    f.clear()
    res, t = wait_until(90, lambda: c.all_see(c.nodes, names, "alive"), step=0.5)
    check(res, "after the blackhole is lifted all alive within 90 s (took %.1f s)" % t,
          "all alive", c.views(c.nodes, names) if not res else None)


def scenario_pause_short(c, f):
    """A node paused (SIGSTOP) for a few seconds and resumed is suspected at
    most: it refutes and nobody marks it failed."""
    if not c.start_all():
        return
    names = [nd.name for nd in c.nodes]
    x = c.nodes[2]
    before = c.stats(x)
    w = Watcher(c, [nd for nd in c.nodes if nd is not x], [x.name])
    w.start()
    secs = 3
    os.kill(x.proc.pid, signal.SIGSTOP)
    time.sleep(secs)
    os.kill(x.proc.pid, signal.SIGCONT)
    time.sleep(10)
    w.stop()
    check(len(w.events) == 0, "%s paused %d s is never marked failed" % (x.name, secs), "none",
          w.events[:5])
    res, t = wait_until(20, lambda: c.all_see(c.nodes, names, "alive"))
    check(res, "all alive everywhere after the pause", "all alive", c.views(c.nodes, names))
    after = c.stats(x)
    if before and after:
        log("%s refutations %d -> %d" %
            (x.name, before["refutations"], after["refutations"]))


def scenario_pause_long(c, f):
    """A node paused past the suspicion timeout is marked failed by all; once
    resumed it refutes and rejoins."""
    if not c.start_all():
        return
    names = [nd.name for nd in c.nodes]
    x = c.nodes[2]
    rest = [nd for nd in c.nodes if nd is not x]
    os.kill(x.proc.pid, signal.SIGSTOP)
    res, t = wait_until(60, lambda: c.all_see(rest, [x.name], "failed"))
    check(res, "paused %s marked failed by all others (%.1f s)" % (x.name, t), "failed",
          c.views(rest, [x.name]))
    os.kill(x.proc.pid, signal.SIGCONT)
    res, t = wait_until(75, lambda: c.all_see(c.nodes, names, "alive"), step=0.5)
    check(res, "resumed %s alive everywhere again within 75 s (took %.1f s)" % (x.name, t),
          "all alive", c.views(c.nodes, names) if not res else None)


def scenario_restart(c, f):
    """kill -9 and restart with the same name, address and data dir: once
    right away (the cluster still thinks the old process alive, at a higher
    incarnation) and once after it was marked failed. Both rejoin."""
    if not c.start_all():
        return
    names = [nd.name for nd in c.nodes]
    x = c.nodes[2]
    rest = [nd for nd in c.nodes if nd is not x]
    # bump x's incarnation first so the restarted process starts lower
    os.kill(x.proc.pid, signal.SIGSTOP)
    time.sleep(2.5)
    os.kill(x.proc.pid, signal.SIGCONT)
    time.sleep(3)
    os.kill(x.proc.pid, signal.SIGKILL)
    x.proc.wait()
    c.start(x, join=c.nodes[0])
    w = Watcher(c, rest, [x.name])
    w.start()
    res, t = wait_until(30, lambda: c.all_see(c.nodes, names, "alive") and
                        c.members(x) is not None)
    time.sleep(5)
    w.stop()
    check(res, "restarted-at-once %s is alive everywhere (%.1f s)" % (x.name, t), "all alive",
          c.views(c.nodes, names))
    check(len(w.events) == 0, "restarted-at-once %s is never marked failed" % x.name, "none",
          w.events[:5])
    os.kill(x.proc.pid, signal.SIGKILL)
    x.proc.wait()
    res, t = wait_until(60, lambda: c.all_see(rest, [x.name], "failed"))
    check(res, "killed %s marked failed (%.1f s)" % (x.name, t))
    c.start(x, join=c.nodes[0])
    res, t = wait_until(30, lambda: c.all_see(c.nodes, names, "alive"))
    check(res, "restarted-after-failure %s is alive everywhere (%.1f s)" % (x.name, t),
          "all alive", c.views(c.nodes, names))


def junk_flood(x, secs, count):
    """Run junk_udp.py against node x's gossip port for at most secs seconds
    and count datagrams (its PID recorded for cleanup); returns the finished
    process and what it printed."""
    sender = subprocess.Popen([sys.executable, os.path.join(HERE, "junk_udp.py"), x.addr,
                               str(GOSSIP_PORT), str(secs), str(count)],
                              stdout=subprocess.PIPE, text=True)
    with open(os.path.join(FAULTS_DIR, "pids"), "a") as fp:
        fp.write("%d\n" % sender.pid)
    try:
        out, _ = sender.communicate(timeout=secs + 15)
    except subprocess.TimeoutExpired:
        sender.kill()
        out, _ = sender.communicate()
    return sender, out


def scenario_flood(c, f):
    """A bounded flood of junk UDP at one node's gossip port: it keeps
    probing, counts the junk as bad packets, nobody is marked failed."""
    if not c.start_all():
        return
    names = [nd.name for nd in c.nodes]
    x = c.nodes[1]
    before = c.stats(x)
    w = Watcher(c, c.nodes, names)
    w.start()
    secs = 15
    sender, out = junk_flood(x, secs, 2000000)
    time.sleep(3)
    w.stop()
    after = c.stats(x)
    log("junk sender: %s" % out.strip())
    check(sender.returncode == 0, "junk sender ran", 0, sender.returncode)
    check(before is not None and after is not None, "%s answers HTTP during and after the flood" % x.name)
    if before and after:
        dp = after["probes"] - before["probes"]
        db = after["bad_packets"] - before["bad_packets"]
        log("%s during the flood: probes +%d, bad_packets +%d" % (x.name, dp, db))
        check(dp >= secs // 2, "%s kept probing during the flood" % x.name, ">= %d probes" % (secs // 2), dp)
        check(db > 0, "%s counted the junk as bad packets" % x.name, "> 0", db)
    check(len(w.events) == 0, "no false failure during the flood", "none", w.events[:5])
    res, t = wait_until(20, lambda: c.all_see(c.nodes, names, "alive"))
    check(res, "all alive after the flood", "all alive", c.views(c.nodes, names))


def scenario_acl_remote(c, f):
    """HTTP on a non-loopback address: without -acl-token the agent warns
    loudly, serves reads, and refuses writes from other hosts; with a token
    writes need it."""
    addr = "10.77.0.1"
    sh("ip", "addr", "add", addr + "/32", "dev", "lo", check_rc=False)
    nd = c.nodes[0]
    c.extra = ["-client", addr]
    c.start(nd)
    base = "http://%s:%d" % (addr, HTTP_PORT)

    def code(method, path, token=None):
        req = urllib.request.Request(base + path, method=method)
        if token:
            req.add_header("X-Consul-Token", token)
        try:
            with urllib.request.urlopen(req, timeout=3) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except Exception:
            return 0

    up, _ = wait_until(15, lambda: code("GET", "/v1/agent/self") == 200)
    check(up, "agent answers on %s" % addr)
    with open(nd.logpath) as fp:
        text = fp.read()
    check("WARNING" in text and "not loopback" in text,
          "agent warns loudly that the API is open on a non-loopback address")
    check(code("GET", "/v1/agent/members") == 200, "reads are open without a token", 200,
          code("GET", "/v1/agent/members"))
    got = code("PUT", "/v1/agent/force-leave/nosuch")
    check(got == 403, "a write from %s (not loopback) without a token is refused" % addr, 403, got)
    got = code("PUT", "/v1/agent/leave")
    check(got == 403, "leave from a non-loopback client is refused", 403, got)
    check(nd.proc.poll() is None, "agent still running")
    os.kill(nd.proc.pid, signal.SIGKILL)
    nd.proc.wait()
    c.extra = ["-client", addr, "-acl-token", "remote-w"]
    c.start(nd)
    up, _ = wait_until(15, lambda: code("GET", "/v1/agent/self") == 200)
    check(up, "agent with -acl-token answers on %s" % addr)
    got = code("PUT", "/v1/agent/force-leave/nosuch")
    check(got == 403, "with a token set, a write without it is refused", 403, got)
    got = code("PUT", "/v1/agent/force-leave/nosuch", "remote-w")
    check(got == 500, "with the token the write reaches the handler (unknown node: 500)", 500, got)


def metric(nd, name):
    """A counter from /v1/agent/metrics?format=prometheus, or None."""
    try:
        with urllib.request.urlopen(nd.url("/v1/agent/metrics?format=prometheus"), timeout=3) as r:
            text = r.read().decode()
    except Exception:
        return None
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            try:
                return float(line.split()[-1])
            except ValueError:
                return None
    return None


KEY1 = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
KEY2 = "HS5lJ+XuTlYKWaeGYyG+/A7kXcV3xbqkb2y1e0TnqYw="


def scenario_flood_encrypted(c, f):
    """An encrypted cluster: an agent with another key cannot join, junk at
    the gossip port is dropped and counted as decrypt failures, nobody is
    marked failed."""
    c.extra = ["-encrypt", KEY1]
    first = c.nodes[0]
    c.start(first)
    if not wait_until(15, lambda: c.self_info(first) is not None)[0]:
        with open(first.logpath) as fp:
            text = fp.read()
        if "AES-NI" in text:
            log("SKIP: this CPU lacks AES-NI; gossip encryption is unavailable")
            return
        bad("%s with -encrypt answers HTTP" % first.name)
        return
    members = c.nodes[:-1]
    outsider = c.nodes[-1]
    for nd in members[1:]:
        c.start(nd, join=first)
    names = [nd.name for nd in members]
    res, t = wait_until(30, lambda: c.all_see(members, names, "alive"))
    check(res, "%d agents with the same key form a cluster (%.1f s)" % (len(members), t))
    c.extra = ["-encrypt", KEY2]
    c.start(outsider, join=first)
    time.sleep(5)
    views = [c.members(nd) or {} for nd in members]
    check(all(outsider.name not in v or v[outsider.name] != "alive" for v in views),
          "an agent with another key is not a member", "absent", views)
    x = members[1]
    before = metric(x, "rumor_memberlist_decrypt_failures_total")
    w = Watcher(c, members, names)
    w.start()
    sender, out = junk_flood(x, 10, 500000)
    time.sleep(2)
    w.stop()
    after = metric(x, "rumor_memberlist_decrypt_failures_total")
    log("junk sender: %s; decrypt failures on %s: %s -> %s" % (out.strip(), x.name, before, after))
    check(before is not None and after is not None and after - before > 1000,
          "junk is counted as decrypt failures", "> 1000 more", (before, after))
    check(len(w.events) == 0, "no false failure during the encrypted flood", "none", w.events[:5])
    res, t = wait_until(20, lambda: c.all_see(members, names, "alive"))
    check(res, "all members alive after the flood", "all alive", c.views(members, names))


def kv_put(nd, key, value, timeout=3.0):
    req = urllib.request.Request(nd.url("/v1/kv/" + key), data=value.encode(), method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status == 200 and r.read().strip() == b"true"
    except Exception:
        return False


def kv_dump(c, nd, prefix):
    """{key: value} of everything under prefix on nd, or None."""
    try:
        with urllib.request.urlopen(nd.url("/v1/kv/%s?recurse" % prefix), timeout=3) as r:
            j = json.loads(r.read())
    except urllib.error.HTTPError as e:
        return {} if e.code == 404 else None
    except Exception:
        return None
    import base64
    return {e["Key"]: base64.b64decode(e["Value"] or "").decode() for e in j}


def scenario_kv_kill9(c, f):
    """kill -9 under a KV write stream, then restart: every acknowledged
    write is on every replica, and the replicas are equal."""
    if not c.start_all():
        return
    n1, x = c.nodes[0], c.nodes[1]
    if not kv_put(n1, "probe", "1"):
        bad("the KV API answers PUT on %s" % n1.name)
        return
    acked = {}
    stop = time.monotonic() + (20 if LONG else 8)
    kill_at = time.monotonic() + (10 if LONG else 4)
    killed = False
    i = 0
    target = x
    while time.monotonic() < stop and i < 100000:
        if not killed and time.monotonic() >= kill_at:
            os.kill(x.proc.pid, signal.SIGKILL)
            x.proc.wait()
            killed = True
        key, val = "stream/k%06d" % i, "v%d-%s" % (i, target.name)
        if kv_put(target, key, val, timeout=2.0):
            acked[key] = val
        elif killed and target is x:
            target = n1  # the writer fails over, as a client would
        i += 1
    log("write stream: %d writes tried, %d acknowledged, %s killed -9 mid-stream" %
        (i, len(acked), x.name))
    check(killed, "%s was killed during the stream" % x.name)
    c.start(x, join=n1)
    names = [nd.name for nd in c.nodes]
    res, t = wait_until(30, lambda: c.all_see(c.nodes, names, "alive"))
    check(res, "restarted %s is alive everywhere (%.1f s)" % (x.name, t))

    def converged():
        dumps = [kv_dump(c, nd, "stream/") for nd in c.nodes]
        if any(d is None for d in dumps):
            return None
        if any(d != dumps[0] for d in dumps):
            return None
        return dumps[0]

    final, t = wait_until(60, converged, step=1.0)
    check(final is not None, "all replicas equal within 60 s (took %.1f s)" % t)
    if final is None:
        final = kv_dump(c, n1, "stream/") or {}
        for nd in c.nodes:
            d = kv_dump(c, nd, "stream/")
            log("%s holds %s keys" % (nd.name, "?" if d is None else len(d)))
    lost = [k for k, v in acked.items() if final.get(k) != v]
    check(not lost, "no acknowledged write lost (%d acknowledged)" % len(acked), "0 lost",
          "%d lost, e.g. %s" % (len(lost), lost[:5]))


def leader_of(c, servers):
    """The server all live `servers` name as leader (by address), or None."""
    seen = set(c.get_json(nd.url("/v1/status/leader")) for nd in servers)
    if len(seen) != 1:
        return None
    addr = seen.pop()
    return next((nd for nd in servers if addr and addr.startswith(nd.addr + ":")), None)


def kv_put_status(nd, key, value, timeout=15.0):
    """(HTTP status, body) of a PUT; (0, b"") when nothing answered."""
    req = urllib.request.Request(nd.url("/v1/kv/" + key), data=value.encode(), method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read().strip()
    except Exception:
        return 0, b""


def scenario_servers_partition(c, f):
    """Servers (issue 16): 3 servers + 2 clients; the leader and one client
    are cut off from the rest. The minority cannot write and says so, the
    majority elects a leader and goes on, and after the heal every replica
    agrees and holds the majority's writes only."""
    servers, clients = c.nodes[:3], c.nodes[3:]
    for nd in servers:
        nd.extra = ["-server", "-bootstrap-expect=3"]
    if not c.start_all():
        return
    ld, t = wait_until(30, lambda: leader_of(c, servers))
    if not check(ld is not None, "3 servers elect a leader (%.1f s)" % t):
        return
    check(kv_put_status(clients[0], "part/before", "1") == (200, b"true"),
          "a client writes through the leader")
    minority = [ld, clients[1]]
    majority = [nd for nd in c.nodes if nd not in minority]
    f.partition(minority, majority)
    t0 = time.monotonic()
    # "No cluster leader", or, when the write reached the old leader before
    # it stepped down, "the leader was lost: ... may or may not have been
    # applied": both refuse; the end state shows it was not applied
    st = kv_put_status(clients[1], "part/minority", "lost", timeout=30)
    check(st[0] == 500 and (st[1] == b"No cluster leader" or b"leader was lost" in st[1]),
          "the minority's client is refused: 500 %s (%.1f s)" % (
              st[1].decode(errors="replace")[:40], time.monotonic() - t0),
          "500 No cluster leader / the leader was lost", st)
    st = kv_put_status(ld, "part/minority2", "lost", timeout=30)
    check(st == (500, b"No cluster leader"), "the old leader refuses writes too",
          (500, b"No cluster leader"), st)
    maj_servers = [nd for nd in servers if nd in majority]
    nl, t = wait_until(30, lambda: leader_of(c, maj_servers))
    check(nl is not None and nl is not ld, "the majority elects a new leader (%.1f s)" % t)
    # A client sends a write to any server it lists alive. Until its gossip
    # marks the old leader failed it may pick that one, which cannot answer
    # across the partition: the call times out after 7 s and, the write
    # having been sent, its outcome is unknown (500), as in Consul, whose
    # clients do not resend a write on a lost connection either. The
    # majority's writes are owed once the client has seen the loss.
    res, t = wait_until(30, lambda: c.all_see([clients[0]], [ld.name], "failed"), step=0.5)
    check(res, "the majority's client lists the old leader failed (%.1f s)" % t)
    ok_n = 0
    for i in range(20):
        t1 = time.monotonic()
        st = kv_put_status(clients[0], "part/major%02d" % i, "v%d" % i)
        if st == (200, b"true"):
            ok_n += 1
        else:
            log("write part/major%02d: %s after %.1f s" % (i, st, time.monotonic() - t1))
    check(ok_n == 20, "the majority's client writes (%d of 20 acknowledged)" % ok_n)
    f.clear()
    names = [nd.name for nd in c.nodes]
    res, t = wait_until(90, lambda: c.all_see(c.nodes, names, "alive"), step=0.5)
    check(res, "after the heal all 5 alive everywhere (%.1f s)" % t)
    want = {"part/before": "1"}
    want.update({"part/major%02d" % i: "v%d" % i for i in range(20)})

    def agreed():
        dumps = [kv_dump(c, nd, "part/") for nd in c.nodes]
        return all(d == want for d in dumps)

    res, t = wait_until(60, agreed, step=1.0)
    check(res, "every replica holds the majority's writes and nothing else (%.1f s)" % t,
          want, {nd.name: kv_dump(c, nd, "part/") for nd in c.nodes} if not res else None)
    res, t = wait_until(30, lambda: leader_of(c, servers))
    check(res is not None, "all three servers agree on one leader again (%.1f s)" % t)


def http(nd, method, path, body=b"", timeout=10.0):
    """(status, body) of one request to nd's HTTP API; (0, b"") when nothing answered."""
    req = urllib.request.Request(nd.url(path), data=body if method != "GET" else None,
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read().strip()
    except Exception:
        return 0, b""


def scenario_sessions_partition(c, f):
    """Sessions (issue 17): 3 servers + 2 clients; the lock holder's agent
    is cut off from everyone. The servers declare its node failed, end its
    session and release the lock; the other client acquires only after the
    lock delay; the cut-off holder cannot renew; after the heal its session
    is gone."""
    servers, (holder, heir) = c.nodes[:3], c.nodes[3:]
    for nd in servers:
        nd.extra = ["-server", "-bootstrap-expect=3"]
    if not c.start_all():
        return
    ld, t = wait_until(30, lambda: leader_of(c, servers))
    if not check(ld is not None, "3 servers elect a leader (%.1f s)" % t):
        return

    def session(nd):
        st, b = http(nd, "PUT", "/v1/session/create", b'{"LockDelay": "3s"}')
        return json.loads(b)["ID"] if st == 200 else None

    hs, es = session(holder), session(heir)
    if not check(hs and es, "a session on each client"):
        return
    check(http(holder, "PUT", "/v1/kv/svc/leader?acquire=" + hs, b"n4") == (200, b"true"),
          "the holder acquires the lock")
    check(http(heir, "PUT", "/v1/kv/svc/leader?acquire=" + es, b"n5") == (200, b"false"),
          "the other client cannot")
    time.sleep(1.5)
    check(http(holder, "PUT", "/v1/session/renew/" + hs)[0] == 200, "the holder renews")
    f.partition([holder], [nd for nd in c.nodes if nd is not holder])
    t_cut = time.monotonic()

    def holder_of():
        st, b = http(heir, "GET", "/v1/kv/svc/leader")
        return json.loads(b)[0].get("Session", "") if st == 200 else None

    released, t = wait_until(40, lambda: holder_of() == "")
    t_rel = time.monotonic()
    status = c.members(servers[0]) or {}
    check(released and status.get(holder.name) == "failed",
          "the servers end the holder's session and release the lock once its node is "
          "failed (%.1f s after the cut)" % (t_rel - t_cut), "failed", status.get(holder.name))
    got, t = wait_until(20, lambda: http(heir, "PUT", "/v1/kv/svc/leader?acquire=" + es,
                                         b"n5") == (200, b"true"), step=0.1)
    t_got = time.monotonic()
    check(got and t_got - t_rel >= 2.5,
          "the other client acquires after the 3 s lock delay (%.1f s after the release)" %
          (t_got - t_rel))
    st = http(holder, "PUT", "/v1/session/renew/" + hs, timeout=30)
    check(st[0] in (404, 500), "the cut-off holder cannot renew (%d %s)" % (
        st[0], st[1].decode(errors="replace")[:40]))
    f.clear()
    names = [nd.name for nd in c.nodes]
    res, t = wait_until(90, lambda: c.all_see(c.nodes, names, "alive"), step=0.5)
    check(res, "after the heal all 5 alive everywhere (%.1f s)" % t)
    res, t = wait_until(30, lambda: http(holder, "PUT", "/v1/session/renew/" + hs)[0] == 404)
    check(res, "... and the holder's session is gone for good (renew: 404)")
    res, t = wait_until(30, lambda: http(holder, "GET", "/v1/kv/svc/leader")[0] == 200 and
                        json.loads(http(holder, "GET", "/v1/kv/svc/leader")[1])[0].get(
                            "Session") == es)
    check(res, "the old holder's agent sees the new holder (%.1f s)" % t)


SCENARIOS = {
    # name: (function, nodes, profile)
    "loss10": (scenario_loss10, 10, "lan"),
    "loss30": (scenario_loss30, 10, "lan"),
    "partition": (scenario_partition, 5, "lan"),
    "oneway": (scenario_oneway, 5, "lan"),
    "blackhole": (scenario_blackhole, 5, "lan"),
    "pause_short": (scenario_pause_short, 5, "lan"),
    "pause_long": (scenario_pause_long, 5, "lan"),
    "restart": (scenario_restart, 5, "lan"),
    "flood": (scenario_flood, 5, "lan"),
    "acl_remote": (scenario_acl_remote, 1, "lan"),
    "kv_kill9": (scenario_kv_kill9, 3, "lan"),
    "flood_encrypted": (scenario_flood_encrypted, 4, "lan"),
    "servers_partition": (scenario_servers_partition, 5, "lan"),
    "sessions_partition": (scenario_sessions_partition, 5, "lan"),
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        print("usage: faults.py {%s}" % "|".join(SCENARIOS), file=sys.stderr)
        return 2
    fn, n, profile = SCENARIOS[sys.argv[1]]
    random.seed(int(os.environ.get("FAULTS_SEED", "1")))
    log("scenario %s: %d agents, profile %s%s" % (sys.argv[1], n, profile, ", long" if LONG else ""))
    c = Cluster(n, profile)
    f = Faults(c.nodes)
    t0 = time.monotonic()
    try:
        fn(c, f)
    except Exception as e:  # a harness error is a failure, not a crash
        bad("scenario raised %s: %s" % (type(e).__name__, e))
    finally:
        try:
            f.clear()
        except Exception:
            pass
        c.stop_all()
    log("scenario took %.1f s" % (time.monotonic() - t0))
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

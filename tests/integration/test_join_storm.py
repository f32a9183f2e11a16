#!/usr/bin/python3
"""test_join_storm.py — a join storm on a busy seed: nobody gives up, all converge.

Issue 21: with 1,000 agents started at once on a 2-core machine, 61 agents
exited because their -join timed out on a seed that was there but slow (as
Consul's agent does: one attempt, memberlist's 10 s TCP timeout, exit).
rumor now backs off and tries again while the node accepts connections but
does not answer in time, and still fails at once when nothing listens.

On 127.0.0.1 this test:
  1. starts a seed and stops it (SIGSTOP): the kernel still takes TCP
     connections for it, nothing answers — a seed too loaded to answer;
  2. starts JOINERS agents at once, each with -join <seed>;
  3. lets the seed go on (SIGCONT) after STOP_S, longer than the 10 s join
     timeout, so every first attempt fails;
  4. requires every agent to be still running and every agent to list all
     JOINERS + 1 members alive within CONVERGE_S of the SIGCONT (before the
     change all JOINERS exited with "Failed to join any nodes");
  5. requires an agent whose -join names a port nobody listens on to exit
     with status 1 within REFUSED_S (Consul's behaviour, kept).
Agents are killed by PID at exit; every wait is bounded.
"""
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import RUMOR_BIN, Cluster  # noqa: E402

JOINERS = 40
STOP_S = 12.0
CONVERGE_S = 30.0
REFUSED_S = 5.0


class StormCluster(Cluster):
    """Up to 48 agents: gossip ports base+i, HTTP base+48+i, no server RPC."""

    def hport(self, i):
        return self.base + 48 + i

    def spawn(self, i, name, *extra):
        data = os.path.join(self.tmp, "data-" + name)
        os.makedirs(data, exist_ok=True)
        log = open(os.path.join(self.tmp, name + ".log"), "ab")
        args = [RUMOR_BIN, "agent", "-node", name, "-bind", "127.0.0.1", "-advertise",
                "127.0.0.1", "-serf-lan-port", str(self.gport(i)), "-client", "127.0.0.1",
                "-http-port", str(self.hport(i)), "-dns-port", "-1", "-server-port", "-1",
                "-data-dir", data, "-log-level", "info"] + list(extra)
        self.procs[i] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self.procs[i]


def alive_count(c, i):
    m = c.get(i, "/v1/agent/members")
    return -1 if m is None else sum(1 for x in m if x.get("Status") == 1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    c = StormCluster()
    n = JOINERS + 1
    seed = c.spawn(0, "seed")
    c.check("seed answers", True, c.wait(15, lambda: c.get(0, "/v1/agent/self") is not None))
    os.kill(seed.pid, signal.SIGSTOP)
    seed_addr = "127.0.0.1:%d" % c.gport(0)
    for i in range(1, n):
        c.spawn(i, "j%d" % i, "-join", seed_addr)
    time.sleep(STOP_S)
    exited = [i for i in range(1, n) if c.procs[i].poll() is not None]
    os.kill(seed.pid, signal.SIGCONT)
    t0 = time.monotonic()
    c.check("no joiner exited while the seed was stopped %.0f s" % STOP_S, [], exited)

    pending = set(range(n))
    times = {}
    deadline = t0 + CONVERGE_S
    while pending and time.monotonic() < deadline:
        for i in list(pending):
            if alive_count(c, i) == n:
                pending.discard(i)
                times[i] = time.monotonic() - t0
        time.sleep(0.2)
    exited = [i for i in range(1, n) if c.procs[i].poll() is not None]
    c.check("no joiner exited after the seed went on", [], exited)
    c.check("every agent lists all %d alive within %.0f s of SIGCONT" % (n, CONVERGE_S), [],
            sorted(pending))
    if times:
        v = sorted(times.values())
        print("# each agent saw all %d: median %.1f s, last %.1f s after SIGCONT" %
              (n, v[len(v) // 2], v[-1]))

    # nothing listens: the join fails at once and the agent exits 1, as in Consul
    lone = c.spawn(47, "lone", "-join", "127.0.0.1:%d" % free_port())
    rc = None
    try:
        rc = lone.wait(timeout=REFUSED_S)
    except Exception:
        pass
    c.check("a -join refused by the address exits 1 within %.0f s" % REFUSED_S, 1, rc)
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())

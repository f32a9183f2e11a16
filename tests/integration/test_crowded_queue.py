#!/usr/bin/python3
"""test_crowded_queue.py — an agent with a crowded gossip queue reads its
socket at its ticks, still answers probes in time, and watches the socket
again once the queue is short.

Issue 21: in a 1,000-agent join storm each agent woke for every datagram
(10-15 a second); with more than 64 member messages queued it now leaves its
UDP socket unwatched and reads it at its own ticks, at least every 0.2 s
(gossip/transport.c, udp_cb). What that must not cost: acks late enough for
a peer to suspect it. On 127.0.0.1 this test:
  1. starts agents a and b, b joined to a;
  2. sends a a join push-pull of FAKES members (127.0.0.2-251, port 9,
     nobody there): a merges them and queues FAKES alive messages;
  3. requires a's memberlist.udp.holds to count a hold within HOLD_S while b
     gossips and probes it;
  4. samples b's view of a every 0.2 s while a's memberlist.udp.held is 1:
     a must stay alive, and b must never log a suspicion of a;
  5. requires memberlist.udp.held back at 0 within RELEASE_S (the queue
     drained: the socket is watched again), a still alive at b.
Agents are killed by PID at exit; every wait is bounded.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Cluster  # noqa: E402
from mlwire import push_pull_stream, send_stream  # noqa: E402

FAKES = 2000
HOLD_S = 20.0
RELEASE_S = 120.0


def metric(c, i, name):
    """A counter's count or a gauge's value from /v1/agent/metrics, or None."""
    m = c.get(i, "/v1/agent/metrics")
    if m is None:
        return None
    for g in m.get("Gauges") or []:
        if g.get("Name") == "rumor." + name:
            return g.get("Value")
    for g in m.get("Counters") or []:
        if g.get("Name") == "rumor." + name:
            return g.get("Count")
    return 0


def status_of(c, i, name):
    for m in c.get(i, "/v1/agent/members") or []:
        if m.get("Name") == name:
            return m.get("Status")
    return None


def suspicions_of(c, i, name):
    with open(os.path.join(c.tmp, "%s.log" % ("a" if i == 0 else "b")), errors="replace") as f:
        return sum(1 for line in f if "Suspect %s has failed" % name in line)


def main():
    c = Cluster()
    c.start(0, "a")
    c.start(1, "b", "-join", "127.0.0.1:%d" % c.gport(0))
    c.check("a and b see each other",
            True, c.wait(20, lambda: status_of(c, 0, "b") == 1 and status_of(c, 1, "a") == 1))
    c.check("no hold before the queue is crowded", 0, metric(c, 0, "memberlist.udp.holds"))

    send_stream(c.gport(0), push_pull_stream(FAKES, "fake", join=True), timeout=20.0)
    c.check("a merged the %d members" % FAKES, True,
            c.wait(20, lambda: len(c.get(0, "/v1/agent/members") or []) >= FAKES + 2))
    t0 = time.monotonic()
    held = c.wait(HOLD_S, lambda: (metric(c, 0, "memberlist.udp.holds") or 0) >= 1)
    c.check("a left its socket to its ticks within %.0f s" % HOLD_S, True, held)

    samples = down = 0
    end = time.monotonic() + RELEASE_S
    while time.monotonic() < end:
        if status_of(c, 1, "a") != 1:
            down += 1
        samples += 1
        if metric(c, 0, "memberlist.udp.held") == 0:
            break
        time.sleep(0.2)
    released = metric(c, 0, "memberlist.udp.held") == 0
    print("held for about %.1f s, %d samples of b's view of a, %d holds"
          % (time.monotonic() - t0, samples, metric(c, 0, "memberlist.udp.holds") or 0))
    c.check("a watches its socket again within %.0f s (memberlist.udp.held 0)" % RELEASE_S,
            True, released)
    c.check("b saw a alive at every sample while a was crowded", 0, down)
    c.check("b never suspected a", 0, suspicions_of(c, 1, "a"))
    c.check("a still alive at b", 1, status_of(c, 1, "a"))
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())

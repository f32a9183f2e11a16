#!/usr/bin/python3
"""User events on real agents: /v1/event/list blocks as Consul's does (a
watch makes a few requests per event, not thousands, and wakes within a
second of the fire), `wait` bounds it, one event has one ID on every agent
(fired over HTTP, by python-consul, by a stock serf agent, or as Consul's
envelope), and python-consul's event.fire / event.list(index=) work."""
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request

import consul

from agents import Cluster

c = Cluster()
c.start(1, "alpha")
c.start(2, "beta", "-join", "127.0.0.1:%d" % c.gport(1))
c.start(3, "gamma", "-join", "127.0.0.1:%d" % c.gport(1))
ok = Cluster.wait(15, lambda: all(len(c.get(i, "/v1/agent/members") or []) == 3 for i in (1, 2, 3)))
c.check("three agents see each other", True, ok)
cl = [None] + [consul.Consul(host="127.0.0.1", port=c.hport(i)) for i in (1, 2, 3)]


def raw_list(i, query=""):
    """(X-Consul-Index, events, seconds) of one GET /v1/event/list."""
    t0 = time.monotonic()
    with urllib.request.urlopen("http://%s/v1/event/list%s" % (c.haddr(i), query), timeout=30) as r:
        import json
        body = json.loads(r.read())
        return r.headers.get("X-Consul-Index"), body, time.monotonic() - t0


idx, evs, _ = raw_list(1)
c.check("empty list has index 1", ("1", []), (idx, evs))

# --- wait=1s on an unchanged index: about one second, same index
idx, _, took = raw_list(1, "?index=1&wait=1s")
c.check("wait=1s returns the same index", "1", idx)
c.check("wait=1s returns after about 1 s (took %.2f s)" % took, True, 0.9 <= took <= 1.6)

# --- a python-consul watch on beta across three events fired on alpha
requests = []
seen = []
stop = threading.Event()


def watch():
    index = None
    while not stop.is_set():
        try:
            index, events = cl[2].event.list(name="deploy", index=index, wait="20s")
        except Exception:
            return  # the agents stopped under a parked request
        requests.append((time.monotonic(), index))
        for e in events:
            if e["ID"] not in [s[1] for s in seen]:
                seen.append((time.monotonic(), e["ID"], e["Payload"]))


t = threading.Thread(target=watch, daemon=True)
t.start()
time.sleep(1)
fired = []
for n in range(3):
    t_fire = time.monotonic()
    ok, ev = True, cl[1].event.fire("deploy", body="v%d" % n)
    fired.append((t_fire, ev["ID"], ev))
    time.sleep(3)
stop.set()
c.check("the watch saw the three events", [f[1] for f in fired], [s[1] for s in seen[-3:]])
lat = [s[0] - f[0] for f, s in zip(fired, seen[-3:])]
c.check("each event reached the watch within ~1 s (%s)" % ", ".join("%.2f" % x for x in lat),
        True, len(lat) == 3 and max(lat) < 1.5)
c.check("the watch made O(1) requests per event (%d requests for 3 events in ~10 s)"
        % len(requests), True, len(requests) <= 3 * 3 + 2)
c.check("fire answers Consul's shape", ["ID", "LTime", "Name", "NodeFilter", "Payload",
        "ServiceFilter", "TagFilter", "Version"], sorted(fired[0][2]))

# --- one event, one ID on three agents
def ids(i):
    return [(e["Name"], e["ID"]) for e in c.get(i, "/v1/event/list") or []]


ok = Cluster.wait(10, lambda: len(ids(1)) >= 3 and ids(1) == ids(2) == ids(3))
c.check("events fired over HTTP have the same IDs on three agents", True, ok)
c.check("... and the same X-Consul-Index", True,
        raw_list(1)[0] == raw_list(2)[0] == raw_list(3)[0] != "1")
c.check("the fire's ID is the ID listed", [f[1] for f in fired],
        [e for n, e in ids(3) if n == "deploy"][-3:])
_, evs = cl[3].event.list(name="deploy")
c.check("python-consul decodes the payloads", [b"v0", b"v1", b"v2"], [e["Payload"] for e in evs])
idx, evs = cl[1].event.list(name="nosuch")
c.check("a name with no events has index 1 and []", ("1", []), (idx, evs))

def mp(v):
    """The few msgpack forms serf's RPC needs (go-msgpack's old raw)."""
    if isinstance(v, bool):
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        return bytes([v])  # 0..127
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return (bytes([0xa0 | len(v)]) if len(v) < 32 else b"\xda" + struct.pack(">H", len(v))) + v
    return bytes([0x80 | len(v)]) + b"".join(mp(k) + mp(x) for k, x in v.items())


def serf_rpc_event(addr, name, payload):
    """Fires a serf user event through serf's RPC, whose payload may hold
    any byte (the serf CLI takes it from argv, where NUL cannot go)."""
    host, port = addr.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(mp({"Command": "handshake", "Seq": 0}) + mp({"Version": 1}))
        s.sendall(mp({"Command": "event", "Seq": 1}) +
                  mp({"Name": name, "Payload": payload, "Coalesce": False}))
        time.sleep(0.5)


# --- a stock serf agent's events (plain, and Consul's envelope) carry one ID too
SERF = os.environ.get("SERF_BIN", "/usr/bin/serf")
if shutil.which(SERF):
    log = open(os.path.join(c.tmp, "serf.log"), "ab")
    rpc = "127.0.0.1:%d" % c.hport(9)
    c.procs[9] = subprocess.Popen([SERF, "agent", "-node", "serf1", "-bind",
                                   "127.0.0.1:%d" % c.gport(9), "-rpc-addr", rpc, "-join",
                                   "127.0.0.1:%d" % c.gport(1)], stdout=log, stderr=log)
    ok = Cluster.wait(15, lambda: len(c.get(3, "/v1/agent/members") or []) == 4)
    c.check("a serf agent joins", True, ok)
    subprocess.run([SERF, "event", "-rpc-addr", rpc, "fromserf", "hello"], stdout=subprocess.DEVNULL)
    # Consul's envelope, as its agent encodes it (msgpack map, strings as raw)
    cid = "cb9a81ad-fff6-52ac-92a7-5f70687805ec"
    env = (b"\x84\xa2ID\xda\x00\x24" + cid.encode() + b"\xa1n\xa6deploy\xa1p\xa3v42\xa1v\x01")
    serf_rpc_event(rpc, "consul:event:deploy", env)

    def serf_ids(i):
        # arrival order may differ between agents (gossip fans out in any
        # order, and Consul lists in arrival order too): compare as sets
        return sorted((n, e) for n, e in ids(i) if n == "fromserf" or e == cid)

    ok = Cluster.wait(10, lambda: len(serf_ids(1)) == 2 and serf_ids(1) == serf_ids(2) == serf_ids(3))
    c.check("serf's events have the same IDs on three agents", True, ok)
    c.check("Consul's envelope: its ID and name are listed", ("deploy", cid),
            ([x for x in serf_ids(1) if x[1] == cid] or [None])[0])
    c.check("... and it sets the index as Consul's uuidToUint64 (in 53 bits)",
            str(6430540886266763072 & ((1 << 53) - 1)), raw_list(2, "?name=deploy")[0])
    c.check("... and its payload", b"v42", cl[2].event.list(name="deploy")[1][-1]["Payload"])
else:
    print("skip - no serf binary at %s" % SERF)

raise SystemExit(c.finish())

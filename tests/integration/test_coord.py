"""tests/integration/test_coord.py — network coordinates (issue 18) on real
agents: three rumor agents and a stock `serf agent` (Debian's 0.8.2) in one
cluster on 127.0.0.1.

Checked: each side learns the other's coordinates from the ack payloads
(`serf rtt` from the Serf agent to a rumor node answers, and `rumor rtt` to
the Serf node does), /v1/coordinate/nodes lists every node with a
coordinate, /v1/agent/self carries Coord, ?near=_agent and ?near=<node>
order /v1/catalog/nodes, /v1/catalog/service/web and /v1/health/service/web
by the distances computed (here, in Python, by Serf's formula) from the
coordinates the agent reports, the agent itself first; DNS SRV and A
answers come in the same order, and shuffled on an agent started with
-dns-nearest-first=false. Loopback round trips are all tiny, so the test
asserts orders, never times. Skips (77) without serf.
"""
import json
import math
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Cluster, RUMOR_BIN  # noqa: E402

SERF = os.environ.get("SERF_BIN", "/usr/bin/serf")
if not os.access(SERF, os.X_OK):
    print("serf not installed at %s (apt-get install serf): skipping" % SERF)
    sys.exit(77)

c = Cluster()
DNS0, DNS3 = c.base + 40, c.base + 43
SERF_I = 9


def gaddr(i):
    return "127.0.0.1:%d" % c.gport(i)


def put(i, path, body):
    req = urllib.request.Request("http://%s%s" % (c.haddr(i), path),
                                 data=json.dumps(body).encode(), method="PUT")
    with urllib.request.urlopen(req, timeout=3) as r:
        return r.status


def status(i, path):
    try:
        with urllib.request.urlopen("http://%s%s" % (c.haddr(i), path), timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def dig(port, name, qtype):
    r = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+short", "+time=2", "+tries=1",
                        name, qtype], capture_output=True, text=True, timeout=10)
    return [line for line in r.stdout.splitlines() if line]


def distance_ns(a, b):
    """Serf's DistanceTo (coordinate/coordinate.go), in whole nanoseconds."""
    d = math.sqrt(sum((x - y) ** 2 for x, y in zip(a["Vec"], b["Vec"])))
    d += a["Height"] + b["Height"]
    adj = d + a["Adjustment"] + b["Adjustment"]
    if adj > 0.0:
        d = adj
    return int(d * 1e9)


def coords(i):
    got = c.get(i, "/v1/coordinate/nodes") or []
    return {e["Node"]: e["Coord"] for e in got}


def in_order(cs, source, got):
    """Whether got (node names) is in distance order from source by the
    coordinates cs: distances never decrease along it (nodes at the same
    distance, to the nanosecond, in either order), and the nodes without a
    coordinate come after all the others."""
    if source not in cs:
        return False
    known = [n for n in got if n in cs]
    if got[:len(known)] != known:
        return False
    # rumor puts a node at 0 from itself (docs/COORDINATES.md)
    d = [0 if n == source else distance_ns(cs[source], cs[n]) for n in known]
    return all(x <= y for x, y in zip(d, d[1:]))


def order_matches(i, source, fetch):
    """fetch() -> node names in the order an endpoint gave them. Coordinates
    move with every probe, so the order is checked against agent i's
    coordinates read just before and just after; retried a few times
    (bounded) before giving up. Two nodes at the same distance may come in
    either order (early in a run two coordinates can still be equal)."""
    got = None
    for _ in range(10):
        before = coords(i)
        got = fetch()
        after = coords(i)
        if in_order(before, source, got) or in_order(after, source, got):
            return True, got
        time.sleep(0.3)
    return False, got


# r0 (DNS, nearest first), r1, r2; r3 with DNS shuffled as Consul; r4 with
# coordinates off; serf s9
start = time.monotonic()
c.start(0, "r0", "-dns-port", str(DNS0))
for i in (1, 2):
    c.start(i, "r%d" % i, "-join", gaddr(0))
c.start(3, "r3", "-join", gaddr(0), "-dns-port", str(DNS3), "-dns-nearest-first=false")
c.start(4, "r4", "-join", gaddr(0), "-disable-coordinates")
serf_log = open(os.path.join(c.tmp, "s9.log"), "ab")
serf = subprocess.Popen([SERF, "agent", "-node", "s9", "-bind", gaddr(SERF_I),
                         "-rpc-addr", c.haddr(SERF_I), "-join", gaddr(0)],
                        stdout=serf_log, stderr=subprocess.STDOUT)
c.procs[SERF_I] = serf  # killed by Cluster.close
for i in range(4):
    put(i, "/v1/agent/service/register",
        {"Name": "web", "Port": 8000 + i, "Address": "10.0.0.%d" % (i + 1)})

NODES = ["r0", "r1", "r2", "r3", "s9"]
c.check("r0 has a coordinate for every node but r4 (its own, 3 rumor, 1 serf)", True,
        Cluster.wait(20, lambda: sorted(coords(0)) == NODES))
c.check("r4 is a member (probed like the others, its acks carry no coordinate)", True,
        Cluster.wait(10, lambda: ((c.get(4, "/v1/agent/self") or {}).get("Stats") or {})
                     .get("serf_lan", {}).get("members") == 6))
c.check("r4 (-disable-coordinates): /v1/coordinate/nodes 401, Coord null", (401, None),
        (status(4, "/v1/coordinate/nodes"), c.get(4, "/v1/agent/self")["Coord"]))
c.check("every instance of web is in r0's catalog", True,
        Cluster.wait(15, lambda: len(c.get(0, "/v1/catalog/service/web") or []) == 4))

self_ = c.get(0, "/v1/agent/self")
co = self_["Coord"]
c.check("/v1/agent/self Coord: 8 floats, Error, Adjustment, Height", (8, True),
        (len(co["Vec"]), all(k in co for k in ("Error", "Adjustment", "Height"))))
c.check("r0 has moved off the origin (it learned from RTTs)", True,
        any(v != 0 for v in co["Vec"]))
with urllib.request.urlopen("http://%s/v1/agent/metrics?format=prometheus" % c.haddr(0),
                            timeout=3) as resp:
    prom = dict(line.rsplit(" ", 1) for line in resp.read().decode().splitlines()
                if line.startswith("rumor_serf_coordinate_"))
c.check("metrics: coordinate updates counted, no bad payload (from rumor and Serf acks)",
        (True, 0.0), (float(prom.get("rumor_serf_coordinate_updates_total", 0)) > 0,
                      float(prom.get("rumor_serf_coordinate_bad_payload_total", -1))))
one = c.get(0, "/v1/coordinate/node/s9")
c.check("/v1/coordinate/node/s9: one entry, Segment \"\"", (1, "s9", ""),
        (len(one), one[0]["Node"], one[0]["Segment"]))
c.check("/v1/coordinate/node/<unknown>: 404", 404, status(0, "/v1/coordinate/node/nobody"))
dcs = c.get(0, "/v1/coordinate/datacenters")
c.check("/v1/coordinate/datacenters: dc1, no WAN servers", [("dc1", "WAN", [])],
        [(d["Datacenter"], d["AreaID"], d["Coordinates"]) for d in dcs])


# Serf learned rumor's coordinate from our acks, and we learned Serf's.
def serf_rtt():
    r = subprocess.run([SERF, "rtt", "-rpc-addr", c.haddr(SERF_I), "r1"],
                       capture_output=True, text=True, timeout=10)
    return r.returncode, r.stdout.strip()


ok = Cluster.wait(20, lambda: serf_rtt()[0] == 0)
rc, out = serf_rtt()
c.check("serf rtt r1 (from the Serf agent) answers: %s" % out, (True, 0, True),
        (ok, rc, out.startswith("Estimated r1 <-> s9 rtt: ") and out.endswith(" ms")))
r = subprocess.run([RUMOR_BIN, "rtt", "-http-addr", c.haddr(0), "s9"],
                   capture_output=True, text=True, timeout=10)
c.check("rumor rtt s9: %s" % r.stdout.strip(), (0, True),
        (r.returncode, r.stdout.startswith("Estimated s9 <-> r0 rtt: ") and
         r.stdout.strip().endswith(" ms (using LAN coordinates)")))
r = subprocess.run([RUMOR_BIN, "rtt", "-http-addr", c.haddr(0), "r1", "s9"],
                   capture_output=True, text=True, timeout=10)
c.check("rumor rtt r1 s9 (two nodes)", (0, True),
        (r.returncode, r.stdout.startswith("Estimated r1 <-> s9 rtt: ")))
r = subprocess.run([RUMOR_BIN, "rtt", "-http-addr", c.haddr(0), "nobody"],
                   capture_output=True, text=True, timeout=10)
c.check("rumor rtt nobody: exit 1, consul's message",
        (1, 'Could not find a coordinate for node "nobody"'), (r.returncode, r.stderr.strip()))

# ?near
nodes_near = lambda: [n["Node"] for n in c.get(0, "/v1/catalog/nodes?near=_agent")]
ok, got = order_matches(0, "r0", nodes_near)
c.check("catalog/nodes?near=_agent in distance order from r0 (%s)" % got, True, ok)
c.check("the agent itself first, r4 (no coordinate) last", ("r0", "r4"), (got[0], got[-1]))
ok, got = order_matches(0, "r2", lambda: [n["Node"] for n in c.get(0, "/v1/catalog/nodes?near=r2")])
c.check("catalog/nodes?near=r2 in distance order from r2 (%s)" % got, (True, "r2"), (ok, got[0]))
ok, got = order_matches(0, "r0", lambda: [e["Node"] for e in
                                          c.get(0, "/v1/catalog/service/web?near=_agent")])
c.check("catalog/service/web?near=_agent in distance order (%s)" % got, (True, "r0"), (ok, got[0]))
ok, got = order_matches(0, "r0", lambda: [e["Node"]["Node"] for e in
                                          c.get(0, "/v1/health/service/web?near=_agent")])
c.check("health/service/web?near=_agent in distance order (%s)" % got, (True, "r0"), (ok, got[0]))
plain = [n["Node"] for n in c.get(0, "/v1/catalog/nodes")]
c.check("without ?near, catalog/nodes keeps its own order", sorted(plain), plain)


# DNS: r0 answers nearest first, r3 shuffles. Instance i of web has the
# address 10.0.0.<i+1>: SRV targets name it (<hex>.addr.dc1.consul.), A
# records carry it.
def ip_node(ip):
    return "r%d" % (int(ip.split(".")[3]) - 1)


def srv_nodes(port):
    out = []
    for line in dig(port, "web.service.consul", "SRV"):
        h = line.split()[3].split(".")[0]
        out.append(ip_node(".".join(str(int(h[k:k + 2], 16)) for k in range(0, 8, 2))))
    return out


def a_nodes(port):
    return [ip_node(ip) for ip in dig(port, "web.service.consul", "A")]


ok, got = order_matches(0, "r0", lambda: srv_nodes(DNS0))
c.check("SRV from r0 nearest first (%s)" % got, (True, "r0", 4), (ok, got[0], len(got)))
ok, got = order_matches(0, "r0", lambda: a_nodes(DNS0))
c.check("A from r0 nearest first (%s)" % got, (True, "r0", 4), (ok, got[0], len(got)))
firsts = set(tuple(srv_nodes(DNS0)[:1]) for _ in range(10))
c.check("ten SRV answers from r0 all start with r0", {("r0",)}, firsts)
orders = set(tuple(srv_nodes(DNS3)) for _ in range(20))
firsts3 = set(srv_nodes(DNS3)[0] for _ in range(20))
c.check("r3 (-dns-nearest-first=false) shuffles: several orders in 20 answers", True,
        len(orders) > 1)
c.check("and not nearest first: r3 is not always first", True, firsts3 != {"r3"})

serf_log.flush()
with open(os.path.join(c.tmp, "s9.log"), errors="replace") as f:
    serf_errors = [line.strip() for line in f
                   if "[ERR]" in line or "oordinate" in line or "ping version" in line]
c.check("the Serf agent logged no error (no coordinate it could not decode)", [], serf_errors)

print("elapsed %.1f s" % (time.monotonic() - start))
sys.exit(c.finish())

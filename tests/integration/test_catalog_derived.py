#!/usr/bin/python3
"""Derived catalog nodes (docs/DNS.md, "Nodes without a record"): an agent with no services,
checks or node meta stores no catalog record; every agent lists it from
gossip all the same (name, ID, address, datacenter), as Consul's leader
lists Serf members. A record is stored once the agent has a service, a
bare document replaces it when the service goes, and a node that leaves
leaves the catalog."""
import json
import os
import random
import sys
import urllib.request

from agents import Cluster

c = Cluster()
c.base = 20000 + random.Random(os.getpid() * 11).randrange(0, 120) * 100


def nodes(i):
    """{name: (ID, Address, Datacenter, TaggedAddresses)} of /v1/catalog/nodes on agent i."""
    got = c.get(i, "/v1/catalog/nodes")
    if got is None:
        return None
    return {n["Node"]: (n["ID"], n["Address"], n["Datacenter"], n["TaggedAddresses"]) for n in got}


def kv_keys(i):
    """The kv.keys gauge of agent i: records in its replica, catalog records included."""
    m = c.get(i, "/v1/agent/metrics")
    if m is None:
        return None
    for g in m.get("Gauges", []):
        if g["Name"].endswith("kv.keys"):
            return g["Value"]
    return None


def node_id(i):
    s = c.get(i, "/v1/agent/self")
    return s["Config"]["NodeID"] if s else None


def services_of(i, node):
    n = c.get(i, "/v1/catalog/node/" + node)
    return sorted((n or {}).get("Services", {}) or {}) if n is not None else None


c.start(1, "alpha")
c.start(2, "beta", "-join", "127.0.0.1:%d" % c.gport(1))
c.start(3, "gamma", "-join", "127.0.0.1:%d" % c.gport(1))
want = {name: (node_id(i), "127.0.0.1", "dc1", {"lan": "127.0.0.1", "wan": "127.0.0.1"})
        for i, name in ((1, "alpha"), (2, "beta"), (3, "gamma"))}
c.check("node IDs known", True, all(v[0] for v in want.values()))
ok = Cluster.wait(15, lambda: all(nodes(i) == want for i in (1, 2, 3)))
c.check("every agent lists all three nodes, ID and address from gossip", want,
        nodes(2) if not ok else want)
c.check("no catalog record stored anywhere (kv.keys 0 on each)", [0, 0, 0],
        [kv_keys(i) for i in (1, 2, 3)])

# a service makes a record; beta learns it through the store
req = urllib.request.Request("http://%s/v1/agent/service/register" % c.haddr(1),
                             data=json.dumps({"Name": "web", "ID": "web1", "Port": 80}).encode(),
                             method="PUT")
with urllib.request.urlopen(req, timeout=5) as r:
    c.check("alpha registers web1", 200, r.status)
ok = Cluster.wait(15, lambda: services_of(2, "alpha") == ["web1"])
c.check("beta lists alpha's web1 (its stored record won over the derived node)", True, ok)
c.check("one record: alpha's", True, Cluster.wait(10, lambda: kv_keys(2) == 1))

# the service goes: the bare document replaces the record (not left stale)
req = urllib.request.Request("http://%s/v1/agent/service/deregister/web1" % c.haddr(1),
                             data=b"", method="PUT")
with urllib.request.urlopen(req, timeout=5) as r:
    c.check("alpha deregisters web1", 200, r.status)
ok = Cluster.wait(15, lambda: services_of(2, "alpha") == [])
c.check("beta lists alpha with no services", True, ok)
c.check("alpha's record is replaced, not deleted (kv.keys stays 1)", 1, kv_keys(2))
c.check("alpha's entry on beta is still the gossip one", want["alpha"], (nodes(2) or {}).get("alpha"))

# a node that leaves leaves the catalog
req = urllib.request.Request("http://%s/v1/agent/leave" % c.haddr(3), data=b"", method="PUT")
try:
    urllib.request.urlopen(req, timeout=5).close()
except Exception:  # noqa: BLE001 - the agent may close before answering
    pass
ok = Cluster.wait(20, lambda: "gamma" not in (nodes(1) or {"gamma": 1}) and
                  "gamma" not in (nodes(2) or {"gamma": 1}))
c.check("gamma left: alpha and beta no longer list it", True, ok)
c.check("alpha and beta still listed", ["alpha", "beta"], sorted(nodes(2) or {}))
sys.exit(c.finish())

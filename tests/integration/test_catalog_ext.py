#!/usr/bin/python3
"""External services as Consul's /v1/catalog/register and /deregister
(issue 14 item 4), through python-consul: a node no agent runs on, stored
in the replicated catalog, seen by every agent with its checks' statuses as
given, answered over DNS (dig) on another agent, and removed by service,
by check or whole; /v1/catalog/datacenters; and Consul endpoints rumor
lacks answering 501 with the X-Consul-* headers (python-consul raises its
own error, not KeyError), unknown paths 404 with them too."""
import json
import os
import random
import subprocess
import sys
import urllib.error
import urllib.request

import consul

from agents import Cluster

c = Cluster()
c.base = 20000 + random.Random(os.getpid() * 13).randrange(0, 120) * 100
DNS = c.base + 71
c.start(1, "alpha", "-server-port", str(c.base + 80))
c.start(2, "beta", "-server-port", str(c.base + 81), "-dns-port", str(DNS),
        "-join", "127.0.0.1:%d" % c.gport(1))
a = consul.Consul(host="127.0.0.1", port=c.hport(1))
b = consul.Consul(host="127.0.0.1", port=c.hport(2))
c.check("both agents see each other", True,
        Cluster.wait(10, lambda: len(b.agent.members()) == 2))


def dig(name, qtype="SRV"):
    r = subprocess.run(["dig", "@127.0.0.1", "-p", str(DNS), "+short", "+time=2", "+tries=1",
                        name, qtype], capture_output=True, text=True, timeout=10)
    return r.stdout.strip()


def http(i, method, path, body=None):
    req = urllib.request.Request("http://%s%s" % (c.haddr(i), path), method=method,
                                 data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def svc_nodes(client, name):
    return [(e["Node"], e["ServiceID"], e["ServicePort"]) for e in client.catalog.service(name)[1]]


c.check("catalog.datacenters", ["dc1"], a.catalog.datacenters())

# register an external node with a service and a passing check on alpha
c.check("catalog.register of an external service", True,
        a.catalog.register("ext1", "10.9.8.7",
                           service={"Service": "pg", "ID": "pg1", "Port": 5432,
                                    "Tags": ["primary"], "Meta": {"v": "15"}},
                           check={"CheckID": "pg-alive", "Name": "pg alive",
                                  "Status": "passing", "ServiceID": "pg1", "Output": "ok"}))
c.check("beta's catalog has it", True,
        Cluster.wait(10, lambda: svc_nodes(b, "pg") == [("ext1", "pg1", 5432)]))
inst = b.catalog.service("pg")[1][0]
c.check("catalog entry", ("10.9.8.7", ["primary"], {"v": "15"}, ""),
        (inst["Address"], inst["ServiceTags"], inst["ServiceMeta"], inst["ServiceKind"]))
h = b.health.service("pg", passing=True)[1]
c.check("beta: health ?passing lists it, with its check as given and no serfHealth",
        [("pg1", [("pg-alive", "passing", "ok")])],
        [(e["Service"]["ID"], [(x["CheckID"], x["Status"], x["Output"]) for x in e["Checks"]])
         for e in h])
c.check("catalog.nodes on beta lists ext1", True,
        "ext1" in [n["Node"] for n in b.catalog.nodes()[1]])
c.check("DNS on beta answers pg.service.consul SRV", "1 1 5432 ext1.node.dc1.consul.",
        dig("pg.service.consul"))
c.check("DNS on beta answers the node's A record", "10.9.8.7", dig("ext1.node.consul", "A"))

# a second service on the same node, with a critical check: not in ?passing nor DNS
c.check("register a second service with a critical check", True,
        b.catalog.register("ext1", "10.9.8.7",
                           service={"Service": "cache", "Port": 6379},
                           check={"Name": "cache alive", "Status": "critical",
                                  "ServiceID": "cache"}))
c.check("alpha sees both services of ext1", True,
        Cluster.wait(10, lambda: sorted(b.catalog.node("ext1")[1]["Services"]) ==
                     sorted(a.catalog.node("ext1")[1]["Services"]) == ["cache", "pg1"]))
c.check("the first service is still there", [("ext1", "pg1", 5432)], svc_nodes(a, "pg"))
c.check("a critical external service is not passing", [],
        b.health.service("cache", passing=True)[1])
c.check("nor in DNS", "", dig("cache.service.consul"))
c.check("its check's status is as given", ["critical"],
        [x["Status"] for x in b.health.checks("cache")[1]])

# refusals
st, hd, body = http(1, "PUT", "/v1/catalog/register", {"Node": "ext2"})
c.check("register without Address: 400", (400, "Must provide address"), (st, body))
st, hd, body = http(1, "PUT", "/v1/catalog/register",
                    {"Node": "ext2", "Address": "10.0.0.2",
                     "Check": {"Name": "x", "ServiceID": "nope"}})
c.check("a check of a service the node lacks: 400", (400, True),
        (st, body.startswith("Missing service registration")))
st, hd, body = http(1, "PUT", "/v1/catalog/register",
                    {"Node": "beta", "Address": "127.0.0.1", "Service": {"Service": "x"}})
c.check("an agent's node is refused: 400", (400, True), (st, "rumor agent's node" in body))

# deregister: a check, a service, the node
c.check("catalog.deregister of a check", True, a.catalog.deregister("ext1", check_id="pg-alive"))
c.check("beta: pg1 has no check left", True,
        Cluster.wait(10, lambda: [x["CheckID"] for e in b.health.service("pg")[1]
                                  for x in e["Checks"]] == []))
c.check("catalog.deregister of a service", True, b.catalog.deregister("ext1", service_id="cache"))
c.check("alpha: cache is gone, with its check", True,
        Cluster.wait(10, lambda: a.catalog.service("cache")[1] == [] and
                     a.health.checks("cache")[1] == []))
c.check("catalog.deregister of the node", True, a.catalog.deregister("ext1"))
c.check("beta: the node and pg are gone", True,
        Cluster.wait(10, lambda: b.catalog.node("ext1")[1] is None and
                     b.catalog.service("pg")[1] == []))
c.check("and out of DNS", True, Cluster.wait(10, lambda: dig("pg.service.consul") == ""))
c.check("deregistering an unknown node answers true", True, a.catalog.deregister("nobody"))


def resyncs(i):
    """beta's catalog.resyncs by kind and catalog.records_reread, from
    /v1/agent/metrics."""
    got = {}
    for m in (c.get(i, "/v1/agent/metrics") or {}).get("Counters") or []:
        if m.get("Name") == "rumor.catalog.resyncs":
            got[(m.get("Labels") or {}).get("kind")] = m.get("Count")
        if m.get("Name") == "rumor.catalog.records_reread":
            got["reread"] = m.get("Count")
    return got


# The catalog follows the store by re-reading only the records commits
# changed; it scans every record only when it attaches (and when more
# changed at once than it keeps track of, or every 10 idle minutes).
before = resyncs(2)
c.check("beta caught up by re-reading changed records, one scan (at start)",
        (True, True, 1),
        (before.get("changed", 0) >= 4, before.get("reread", 0) >= 4, before.get("scan")))
# many nodes at once, from both agents: each agent sees all of them, then none
names = ["bulk%03d" % k for k in range(120)]
for k, n in enumerate(names):
    (a if k % 2 else b).catalog.register(n, "10.1.%d.%d" % (k // 200, k % 200 + 1),
                                       service={"Service": "bulk", "Port": 1000 + k})
for who, cl in (("alpha", a), ("beta", b)):
    c.check("%s lists the 120 bulk nodes" % who, True,
            Cluster.wait(20, lambda: sorted(e["Node"] for e in cl.catalog.service("bulk")[1])
                         == names))
for k, n in enumerate(names):
    (b if k % 2 else a).catalog.deregister(n)
for who, cl in (("alpha", a), ("beta", b)):
    c.check("%s lists none of them after the deregistrations" % who, True,
            Cluster.wait(20, lambda: cl.catalog.service("bulk")[1] == [] and
                         not any(x["Node"].startswith("bulk") for x in cl.catalog.nodes()[1])))
after = resyncs(2)
c.check("beta re-read at least the 240 changes of the bulk nodes", True,
        after.get("reread", 0) - before.get("reread", 0) >= 240 or
        after.get("scan", 0) > before.get("scan", 0))

# Consul endpoints rumor lacks: 501 naming the feature, with the headers
for path, word in (("/v1/acl/tokens", "ACL"), ("/v1/connect/intentions", "Connect"),
                   ("/v1/config/service-defaults", "config entries"),
                   ("/v1/query", "prepared queries"), ("/v1/coordinate/update", "coordinates"),
                   ("/v1/internal/ui/nodes", "internal"), ("/v1/discovery-chain/web", "discovery"),
                   ("/v1/namespaces", "namespaces"), ("/v1/partitions", "partitions"),
                   ("/v1/peerings", "peering"), ("/v1/operator/autopilot/health", "operator")):
    st, hd, body = http(1, "GET", path)
    c.check("%s: 501 naming %s, X-Consul-* headers" % (path, word),
            (501, True, True, "true", "0"),
            (st, word.lower() in body.lower(), int(hd.get("X-Consul-Index", "0")) > 0,
             hd.get("X-Consul-KnownLeader"), hd.get("X-Consul-LastContact")))
st, hd, body = http(1, "GET", "/v1/operator/keyring")
c.check("/v1/operator/keyring (under a listed prefix) is still served", True,
        st not in (404, 501))
st, hd, body = http(1, "PUT", "/v1/agent/service/maintenance/nosuch?enable=true")
c.check("/v1/agent/service/maintenance/<id> is served before /v1/agent/service/",
        (404, 'No service registered with ID "nosuch"'), (st, body))
st, hd, body = http(1, "GET", "/v1/not-consul")
c.check("an unknown path: 404 with X-Consul-Index", (404, "404 page not found", True),
        (st, body, int(hd.get("X-Consul-Index", "0")) > 0))
try:
    a.acl.list()
    r = "no error"
except KeyError as e:
    r = "KeyError %s" % e
except consul.ConsulException as e:
    r = "ConsulException" if str(e).startswith("501") else "other: %s" % e
c.check("python-consul: acl.list raises ConsulException (501), not KeyError",
        "ConsulException", r)
idx, coord_nodes = a.coordinate.nodes()
c.check("python-consul: coordinate.nodes answers (index, list) (served since issue 18)",
        (True, True), (int(idx) > 0, isinstance(coord_nodes, list) and len(coord_nodes) > 0))
c.check("python-consul: kv.get of a missing key (a 404 with X-Consul-Index) still works",
        None, a.kv.get("no/such/key")[1])
sys.exit(c.finish())

#!/usr/bin/python3
"""python3-consul 0.7.1 against rumor's service catalog: agent.service.register
(lowercase keys), catalog.services/service/nodes, health.service (?passing),
agent.check.ttl_pass/ttl_fail (sent as GET), agent.service.deregister (GET),
blocking catalog queries, and the other agent seeing it all."""
import os
import random
import sys
import threading
import time

import consul

from agents import Cluster

c = Cluster()
# ports below the kernel's ephemeral range (32768-60999), so that no client
# socket can hold one of ours
c.base = 20000 + random.Random(os.getpid() * 7).randrange(0, 120) * 100
c.start(1, "alpha", "-server-port", str(c.base + 80))
c.start(2, "beta", "-server-port", str(c.base + 81), "-join", "127.0.0.1:%d" % c.gport(1))
a = consul.Consul(host="127.0.0.1", port=c.hport(1))
b = consul.Consul(host="127.0.0.1", port=c.hport(2))
c.check("both agents see each other", True,
        Cluster.wait(10, lambda: len(b.agent.members()) == 2))

c.check("agent.service.register with a TTL check", True,
        a.agent.service.register("web", service_id="web1", port=8080, tags=["v1"],
                                 check=consul.Check.ttl("30s")))
svcs = a.agent.services()
c.check("agent.services has web1", ["web1"], [k for k in svcs if k == "web1"])
c.check("agent.services shape", ("web", 8080, ["v1"]),
        (svcs["web1"]["Service"], svcs["web1"]["Port"], svcs["web1"]["Tags"]))
checks = a.agent.checks()
c.check("service check id is service:web1", True, "service:web1" in checks)
c.check("TTL check starts critical", "critical", checks["service:web1"]["Status"])

# the other agent learns about it through the replicated catalog
ok = Cluster.wait(10, lambda: "web" in b.catalog.services()[1])
c.check("catalog.services on beta lists web", True, ok)
idx, svcs = b.catalog.services()
c.check("catalog.services gives an index", True, int(idx) > 0)
c.check("catalog.services tags", ["v1"], svcs.get("web"))
idx, nodes = b.catalog.nodes()
c.check("catalog.nodes lists both", ["alpha", "beta"], sorted(n["Node"] for n in nodes))
idx, inst = b.catalog.service("web")
c.check("catalog.service shape", [("alpha", "web1", 8080)],
        [(i["Node"], i["ServiceID"], i["ServicePort"]) for i in inst])
c.check("catalog.service with unknown tag is empty", [], b.catalog.service("web", tag="v9")[1])
idx, h = b.health.service("web", passing=True)
c.check("health.service?passing excludes the critical instance", [], h)

# Consul's shapes: ServiceKind/ServiceTaggedAddresses (catalog) and
# Service.Kind/Service.TaggedAddresses (health); {} for a service on its
# node's address, lan_ipv4/wan_ipv4 {Address, Port} for one with its own
c.check("catalog ServiceKind of a plain service", "", inst[0]["ServiceKind"])
c.check("catalog ServiceTaggedAddresses without an address", {},
        inst[0]["ServiceTaggedAddresses"])
idx, h = b.health.service("web")
c.check("health Service.Kind of a plain service", "", h[0]["Service"]["Kind"])
c.check("health Service.TaggedAddresses without an address", {},
        h[0]["Service"]["TaggedAddresses"])
c.check("register a service with its own address", True,
        a.agent.service.register("api", service_id="api1", address="10.1.2.3", port=9090))
ok = Cluster.wait(10, lambda: len(b.catalog.service("api")[1]) == 1)
c.check("catalog.service on beta lists api", True, ok)
own = {"lan_ipv4": {"Address": "10.1.2.3", "Port": 9090},
       "wan_ipv4": {"Address": "10.1.2.3", "Port": 9090}}
inst = b.catalog.service("api")[1]
c.check("catalog entry of api", ("", "10.1.2.3", own),
        (inst[0]["ServiceKind"], inst[0]["ServiceAddress"], inst[0]["ServiceTaggedAddresses"]))
h = b.health.service("api")[1]
c.check("health entry of api", ("", "10.1.2.3", own),
        (h[0]["Service"]["Kind"], h[0]["Service"]["Address"], h[0]["Service"]["TaggedAddresses"]))
# /v1/catalog/node/<node>: its services carry Kind and TaggedAddresses too
idx, node = b.catalog.node("alpha")
c.check("catalog.node api: Kind, Address, TaggedAddresses", ("", "10.1.2.3", own),
        (node["Services"]["api1"]["Kind"], node["Services"]["api1"]["Address"],
         node["Services"]["api1"]["TaggedAddresses"]))
c.check("catalog.node web1: Kind and TaggedAddresses {}", ("", {}),
        (node["Services"]["web1"]["Kind"], node["Services"]["web1"]["TaggedAddresses"]))
idx, hc = b.health.checks("web")
c.check("health.checks entries carry CreateIndex/ModifyIndex", [True],
        [x["CreateIndex"] > 0 and x["ModifyIndex"] > 0 for x in hc])
c.check("deregister api", True, a.agent.service.deregister("api1"))

# ttl_pass is sent as GET /v1/agent/check/pass/service:web1
c.check("agent.check.ttl_pass", True, a.agent.check.ttl_pass("service:web1", "all good"))
ok = Cluster.wait(10, lambda: len(b.health.service("web", passing=True)[1]) == 1)
c.check("health.service?passing on beta after ttl_pass", True, ok)
idx, h = b.health.service("web")
c.check("health entry shape", ("alpha", "web1", ["serfHealth", "service:web1"]),
        (h[0]["Node"]["Node"], h[0]["Service"]["ID"], sorted(x["CheckID"] for x in h[0]["Checks"])))
c.check("check output carries the note", "all good",
        [x["Output"] for x in h[0]["Checks"] if x["CheckID"] == "service:web1"][0])

# a blocking query on beta wakes when alpha's service changes
idx, _ = b.health.service("web")
result = {}
def block():
    t0 = time.monotonic()
    result["data"] = b.health.service("web", index=idx, wait="20s")
    result["took"] = time.monotonic() - t0
th = threading.Thread(target=block)
th.start()
time.sleep(0.5)
a.agent.check.ttl_fail("service:web1", "down")
th.join(25)
c.check("blocking health query returned before its wait", True, result.get("took", 99) < 10)
c.check("it shows the new status", "critical",
        [x["Status"] for x in result["data"][1][0]["Checks"] if x["CheckID"] == "service:web1"][0])

# deregister is sent as GET
c.check("agent.service.deregister", True, a.agent.service.deregister("web1"))
ok = Cluster.wait(10, lambda: "web" not in b.catalog.services()[1])
c.check("web is gone from beta's catalog", True, ok)
c.check("its check is gone too", False, "service:web1" in a.agent.checks())
try:
    r = a.agent.check.ttl_pass("service:web1")
except consul.base.ConsulException:
    r = False
c.check("ttl_pass of an unknown check fails", False, r)
sys.exit(c.finish())

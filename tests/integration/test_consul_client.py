#!/usr/bin/python3
"""The Debian python3-consul client (0.7.1) against real rumor agents."""
import sys

import consul

from agents import Cluster

c = Cluster()
c.start(1, "alpha")
c.start(2, "beta")
a = consul.Consul(host="127.0.0.1", port=c.hport(1))
b = consul.Consul(host="127.0.0.1", port=c.hport(2))

# agent.join uses GET in python-consul 0.7.1; rumor accepts it
c.check("agent.join returns success", True, b.agent.join("127.0.0.1:%d" % c.gport(1)))
ok = Cluster.wait(10, lambda: len(a.agent.members()) == 2)
c.check("agent.members lists both agents", True, ok)
members = sorted(a.agent.members(), key=lambda m: m["Name"])
c.check("member names", ["alpha", "beta"], [m["Name"] for m in members])
c.check("member statuses are alive (1)", [1, 1], [m["Status"] for m in members])
c.check("member ports", [c.gport(1), c.gport(2)], [m["Port"] for m in members])
c.check("member tags carry the datacenter", "dc1", members[1]["Tags"]["dc"])

me = a.agent.self()
c.check("agent.self NodeName", "alpha", me["Config"]["NodeName"])
c.check("agent.self Member.Name", "alpha", me["Member"]["Name"])
c.check("status.leader is a non-empty address", True, bool(a.status.leader()))
c.check("status.peers lists both", 2, len(a.status.peers()))

try:
    b.agent.join("127.0.0.1:%d" % c.gport(40))
    c.check("join of a closed port raises", "exception", "none")
except consul.base.ConsulException as e:
    c.check("join of a closed port raises with the reason", True, "connection refused" in str(e))

# force_leave uses GET too: unknown node is an error, known failed node works
c.procs[2].kill()
ok = Cluster.wait(60, lambda: [m["Status"] for m in a.agent.members() if m["Name"] == "beta"] == [4])
c.check("killed beta is failed (4)", True, ok)
c.check("agent.force_leave returns success", True, a.agent.force_leave("beta"))
st = [m["Status"] for m in a.agent.members() if m["Name"] == "beta"]
c.check("force-left beta is left (3)", [3], st)

sys.exit(c.finish())

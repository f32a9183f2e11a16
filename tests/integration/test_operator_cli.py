"""`rumor operator raft list-peers|remove-peer` and the consul/raft sections
of `rumor info` against three real servers (-server -bootstrap-expect=3) on
loopback: the list-peers table (Consul's columns, aligned, three voters,
exactly one leader), the CLI finding its agent through -http-addr and
RUMOR_HTTP_ADDR, Consul's usage errors, `rumor info` showing state = Leader
on exactly one server, then kill -9 of a follower, remove-peer of it by
address on the other follower's agent (forwarded to the leader), and
list-peers showing the two left. Every
wait and every CLI run is bounded."""
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Cluster, RUMOR_BIN  # noqa: E402

c = Cluster()
SERVERS = [1, 2, 3]
HEADER = ["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]


def cli(*args, env_addr=None):
    """(exit code, stdout, stderr) of `rumor args...`, at most 20 s."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RUMOR_HTTP_ADDR", "CONSUL_HTTP_ADDR")}
    if env_addr is not None:
        env["RUMOR_HTTP_ADDR"] = env_addr
    try:
        p = subprocess.run([RUMOR_BIN] + list(args), capture_output=True, text=True,
                           timeout=20, env=env)
    except subprocess.TimeoutExpired:
        return -1, "", "timed out"
    return p.returncode, p.stdout, p.stderr


def list_peers(i):
    """(exit code, rows as lists of cells without the header, raw stdout)."""
    rc, out, _ = cli("operator", "raft", "list-peers", "-http-addr=" + c.haddr(i))
    lines = out.splitlines()
    if rc != 0 or not lines or lines[0].split() != HEADER:
        return rc, None, out
    return rc, [ln.split() for ln in lines[1:]], out


def info(i):
    """{section: {key: value}} from `rumor info` on agent i."""
    rc, out, _ = cli("info", "-http-addr=" + c.haddr(i))
    secs, cur = {}, None
    for ln in out.splitlines() if rc == 0 else []:
        if not ln.startswith("\t") and ln.endswith(":"):
            cur = secs.setdefault(ln[:-1], {})
        elif cur is not None and ln.startswith("\t"):
            k, _, v = ln[1:].partition(" = ")
            cur[k] = v
    return secs



for i in SERVERS:
    c.start(i, "s%d" % i, "-server", "-bootstrap-expect=3",
            "-retry-join", "127.0.0.1:%d" % c.gport(1), "-retry-interval", "1s")
ok = Cluster.wait(30, lambda: c.leader_index(SERVERS) is not None)
c.check("three servers elect one leader", True, ok)
L = c.leader_index(SERVERS) or 1

# --- list-peers: Consul's table, three voters, one leader
want_nodes = sorted("s%d" % i for i in SERVERS)
Cluster.wait(15, lambda: sorted(r[0] for r in (list_peers(2)[1] or [])) == want_nodes)
rc, rows, out = list_peers(2)
print(out, end="")
c.check("list-peers exits 0", 0, rc)
c.check("list-peers prints Consul's header", True, rows is not None)
rows = rows or []
c.check("list-peers: three rows, the servers' node names", want_nodes,
        sorted(r[0] for r in rows))
c.check("... their server RPC addresses", sorted("127.0.0.1:%d" % c.sport(i) for i in SERVERS),
        sorted(r[2] for r in rows if len(r) == 6))
c.check("... exactly one leader, two followers", ["follower", "follower", "leader"],
        sorted(r[3] for r in rows if len(r) == 6))
c.check("... the leader is the server /v1/status/leader names",
        ["127.0.0.1:%d" % c.sport(L)], [r[2] for r in rows if len(r) == 6 and r[3] == "leader"])
c.check("... all voters, Raft protocol 3", [["true", "3"]] * 3, [r[4:] for r in rows])
c.check("... IDs are 16 hex digits", 3,
        sum(1 for r in rows if len(r) == 6 and re.fullmatch("[0-9a-f]{16}", r[1])))
lines = out.splitlines()
starts = [[m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", ln)] for ln in lines]
c.check("... columns aligned (each starts at the header's offset on every line)",
        [starts[0]] * len(lines), starts)
c.check("... column gap is two spaces after the longest cell", True,
        lines[0].startswith("Node" + " " * (max([4] + [len(r[0]) for r in rows]) - 4 + 2) + "ID"))

rc, out2, _ = cli("operator", "raft", "list-peers", env_addr=c.haddr(3))
c.check("list-peers finds its agent through RUMOR_HTTP_ADDR", (0, 4), (rc, len(out2.splitlines())))

# --- usage and errors, as Consul words them
rc, _, err = cli("operator", "raft", "remove-peer", "-http-addr=" + c.haddr(L))
c.check("remove-peer without -id or -address: exit 1, Consul's words",
        (1, "Error removing peer: an address or id is required for the peer to remove\n"),
        (rc, err))
rc, _, err = cli("operator", "raft", "remove-peer", "-http-addr=" + c.haddr(L), "-id=ab",
                 "-address=127.0.0.1:1")
c.check("remove-peer with both: exit 1, Consul's words",
        (1, "Error removing peer: cannot give both an address and id\n"), (rc, err))
rc, _, err = cli("operator", "raft", "remove-peer", "-http-addr=" + c.haddr(L),
                 "-address=127.0.0.1:1")
c.check("remove-peer of an unknown address: exit 1, the agent's error",
        (1, True), (rc, err.startswith("Error removing peer: Unexpected response code: 500 (")))
rc, _, err = cli("operator", "raft", "list-peers", "-http-addr=127.0.0.1:1")
c.check("list-peers with no agent: exit 1, Error getting peers",
        (1, True), (rc, err.startswith("Error getting peers: ")))
rc, _, err = cli("operator")
c.check("`rumor operator` alone prints its usage and exits 1",
        (1, True), (rc, "raft list-peers" in err))

# --- rumor info: consul and raft sections, state = Leader on exactly one
Cluster.wait(10, lambda: all(info(i).get("raft", {}).get("num_peers") == "2" for i in SERVERS))
infos = {i: info(i) for i in SERVERS}
print(cli("info", "-http-addr=" + c.haddr(L))[1], end="")
c.check("rumor info on every server has a raft section", [True] * 3,
        [("raft" in infos[i]) for i in SERVERS])
c.check("raft state = Leader on exactly one server, the leader", [L],
        [i for i in SERVERS if infos[i].get("raft", {}).get("state") == "Leader"])
c.check("... Follower on the others", ["Follower"] * 2,
        [infos[i].get("raft", {}).get("state") for i in SERVERS if i != L])
lr = infos[L].get("raft", {})
c.check("leader's raft section: num_peers 2, last_contact 0, indexes",
        ("2", "0", True), (lr.get("num_peers"), lr.get("last_contact"),
                           all(lr.get(k, "").isdigit() for k in
                               ("term", "last_log_index", "commit_index", "applied_index"))))
lc = infos[L].get("consul", {})
c.check("leader's consul section: server, leader, leader_addr",
        ("true", "true", "127.0.0.1:%d" % c.sport(L), "false", "1"),
        (lc.get("server"), lc.get("leader"), lc.get("leader_addr"), lc.get("bootstrap"),
         lc.get("known_datacenters")))
F = [i for i in SERVERS if i != L][0]
c.check("a follower's consul section: leader false, same leader_addr",
        ("false", "127.0.0.1:%d" % c.sport(L)),
        (infos[F].get("consul", {}).get("leader"), infos[F].get("consul", {}).get("leader_addr")))
c.check("agent section says server = true", "true", infos[L].get("agent", {}).get("server"))

# --- kill -9 a follower; remove it by address on the other follower's agent
dead = [i for i in SERVERS if i != L][-1]
other = [i for i in SERVERS if i not in (L, dead)][0]
c.procs[dead].send_signal(signal.SIGKILL)
c.procs[dead].wait(timeout=10)
addr = "127.0.0.1:%d" % c.sport(dead)
rc, out, err = cli("operator", "raft", "remove-peer", "-http-addr=" + c.haddr(other),
                   "-address=" + addr)
c.check("remove-peer -address of the killed server on a follower (forwarded to the "
        "leader): exit 0", (0, ""), (rc, err))
c.check("... prints Consul's line", 'Removed peer with address "%s"\n' % addr, out)
ok = Cluster.wait(15, lambda: len(list_peers(L)[1] or []) == 2)
c.check("list-peers then shows two servers", True, ok)
rows = list_peers(L)[1] or []
c.check("... the two live ones, one leader", (sorted("s%d" % i for i in SERVERS if i != dead),
                                               ["follower", "leader"]),
        (sorted(r[0] for r in rows), sorted(r[3] for r in rows)))
ok = Cluster.wait(10, lambda: info(L).get("raft", {}).get("num_peers") == "1")
c.check("rumor info on the leader: num_peers = 1", True, ok)

sys.exit(c.finish())

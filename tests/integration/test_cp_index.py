"""Indexes with servers (issue 16): ModifyIndex, CreateIndex and
X-Consul-Index are the Raft index, small and monotonic, as Consul's.

Three agents and a client first run serverless: indexes there are the
versions' index form ((ms since 2024) << 12, about 3.8e14). The three are
then restarted as servers on the same data directories (-server
-bootstrap-expect=3): the first leader imports its AP replica, and every key
written before the switch has a small index after it (CreateIndex =
ModifyIndex = the import entry's), the same on every agent; a client holding
a pre-switch index gets its blocking query answered at once (the index went
backwards) and its CAS refused. Then, through the client: a PUT's
ModifyIndex is a Raft index (between the leader's applied index before and
after), strictly increasing, the same on every server and on the client
(?stale), equal to X-Consul-Index; CreateIndex stays; CAS with it succeeds
and with the previous one fails; a blocking query wakes on the next write
with the new index; the catalog and session indexes are small too."""
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Cluster  # noqa: E402

c = Cluster()
SERVERS = [1, 2, 3]
CLIENT = 4
ALL = SERVERS + [CLIENT]
SMALL = 10 ** 6  # a Raft index here; the index form is above 1e14
EPOCH_MS = 1704067200000


def req(i, method, path, body=None, timeout=10):
    """(status, headers, body bytes); status 0 when the agent did not answer."""
    r = urllib.request.Request("http://%s%s" % (c.haddr(i), path), data=body, method=method)
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()
    except Exception:
        return 0, {}, b""


def put(i, key, val, query=""):
    st, _, b = req(i, "PUT", "/v1/kv/%s%s" % (key, query), val.encode())
    return st, b.strip()


def entry(i, key, query=""):
    """(entry dict or None, X-Consul-Index as int or None)."""
    st, h, b = req(i, "GET", "/v1/kv/%s%s" % (key, query), timeout=5)
    xi = h.get("X-Consul-Index") if st else None
    if st != 200:
        return None, int(xi) if xi else None
    return json.loads(b)[0], int(xi) if xi else None


def mi(i, key, query=""):
    e, _ = entry(i, key, query)
    return e["ModifyIndex"] if e else None


def index_form_now():
    return (int(time.time() * 1000) - EPOCH_MS) << 12


def near_now(idx):
    """An index in the versions' index form, within a minute of now."""
    return idx is not None and abs(idx - index_form_now()) < (60000 << 12)


def applied(i):
    st = ((c.get(i, "/v1/agent/self") or {}).get("Stats") or {}).get("raft") or {}
    return int(st.get("applied_index", "0"))


# --- serverless: today's indexes
for i in SERVERS:
    c.start(i, "s%d" % i, "-retry-join", "127.0.0.1:%d" % c.gport(CLIENT),
            "-retry-interval", "1s")
c.start(CLIENT, "c4")
ok = Cluster.wait(15, lambda: all(len(c.get(i, "/v1/agent/members") or []) == 4 for i in ALL))
c.check("four serverless agents see each other", True, ok)
for k in ("pre/a", "pre/b"):
    c.check("serverless PUT %s" % k, (200, b"true"), put(CLIENT, k, "old-" + k))
ea, xa = entry(CLIENT, "pre/a")
pre_a = ea["ModifyIndex"] if ea else None
c.check("serverless: ModifyIndex is the version's index form (~%.1e)" % index_form_now(),
        True, near_now(pre_a))
c.check("serverless: X-Consul-Index of the key is its ModifyIndex", pre_a, xa)
_, h, _ = req(CLIENT, "GET", "/v1/catalog/services")
c.check("serverless: the catalog's X-Consul-Index is in the index form too", True,
        near_now(int(h.get("X-Consul-Index", "0"))))
pre_catalog = int(h.get("X-Consul-Index", "0"))
ok = Cluster.wait(15, lambda: all(mi(i, k) is not None for i in ALL for k in ("pre/a", "pre/b")))
c.check("the AP writes reach every agent", True, ok)

# --- the switch: the three restart as servers on the same data directories
for i in SERVERS:
    c.procs[i].send_signal(signal.SIGTERM)
    c.procs[i].wait()
for i in SERVERS:
    c.start_server(i, join=CLIENT)
ok = Cluster.wait(30, lambda: c.leader_index(SERVERS) is not None)
c.check("the servers elect a leader", True, ok)
L = c.leader_index(SERVERS)


def imported_everywhere():
    es = [entry(i, "pre/a", "?stale")[0] for i in ALL]
    return all(e is not None and e["ModifyIndex"] < SMALL for e in es) and \
        len({e["ModifyIndex"] for e in es}) == 1


ok = Cluster.wait(20, imported_everywhere)
c.check("after the switch pre/a has one small index on every agent", True, ok)
if not ok:
    print("# pre/a: %r" % [entry(i, "pre/a", "?stale") for i in ALL])
for k in ("pre/a", "pre/b"):
    e, x = entry(CLIENT, k)
    c.check("%s keeps its value through the import" % k, "old-" + k,
            (e or {}).get("Value") and __import__("base64").b64decode(e["Value"]).decode())
    c.check("%s: CreateIndex = ModifyIndex = the import entry's index (small)" % k, True,
            e is not None and e["CreateIndex"] == e["ModifyIndex"] < SMALL)
    c.check("%s: X-Consul-Index is that index" % k, (e or {}).get("ModifyIndex"), x)

# a client holding a pre-switch index
t0 = time.monotonic()
st, h, b = req(CLIENT, "GET", "/v1/kv/pre/a?index=%d&wait=20s" % pre_a, timeout=30)
took = time.monotonic() - t0
c.check("a blocking query with a pre-switch index is answered at once (%.2f s)" % took,
        (200, True), (st, took < 3))
c.check("... with the new, small X-Consul-Index", True,
        0 < int(h.get("X-Consul-Index", "0")) < SMALL)
c.check("a CAS with a pre-switch index fails", (200, b"false"),
        put(CLIENT, "pre/a", "x", "?cas=%d" % pre_a))
ok = Cluster.wait(20, lambda: 0 < int((req(CLIENT, "GET", "/v1/catalog/services")[1] or {})
                                      .get("X-Consul-Index", "0")) < SMALL)
c.check("the catalog's X-Consul-Index becomes small after the switch", True, ok)
t0 = time.monotonic()
st, h, _ = req(CLIENT, "GET", "/v1/catalog/services?index=%d&wait=20s" % pre_catalog,
               timeout=30)
took = time.monotonic() - t0
c.check("a catalog blocking query with a pre-switch index is answered at once (%.2f s)" % took,
        (200, True), (st, took < 3))

# --- a write through the client: a Raft index, the same everywhere
before = applied(L)
c.check("PUT through the client", (200, b"true"), put(CLIENT, "app/k", "v1"))
after = applied(L)
e1, x1 = entry(CLIENT, "app/k")
m1 = (e1 or {}).get("ModifyIndex")
c.check("ModifyIndex is a Raft index: leader applied %d < %r <= %d" % (before, m1, after),
        True, m1 is not None and before < m1 <= after)
c.check("X-Consul-Index equals it", m1, x1)
c.check("CreateIndex equals it for a new key", m1, (e1 or {}).get("CreateIndex"))
ok = Cluster.wait(10, lambda: all(mi(i, "app/k", "?stale") == m1 for i in ALL))
c.check("the same ModifyIndex on every server and on the client (?stale)", True, ok)
if not ok:
    print("# app/k: %r" % [entry(i, "app/k", "?stale") for i in ALL])
_, xs = entry(CLIENT, "app/k", "?stale")
c.check("X-Consul-Index of a ?stale read on the client equals it", m1, xs)

seen = [m1]
for n in range(2, 5):
    put(CLIENT, "app/k", "v%d" % n)
    e, x = entry(CLIENT, "app/k")
    seen.append((e or {}).get("ModifyIndex"))
    c.check("write %d: CreateIndex stays %r" % (n, m1), m1, (e or {}).get("CreateIndex"))
    c.check("write %d: X-Consul-Index is the ModifyIndex" % n, seen[-1], x)
c.check("ModifyIndex strictly increases and stays small: %r" % seen, True,
        all(a is not None and a < b < SMALL for a, b in zip(seen, seen[1:])))
c.check("CAS with the previous index fails", (200, b"false"),
        put(CLIENT, "app/k", "x", "?cas=%d" % seen[-2]))
c.check("CAS with the current index succeeds", (200, b"true"),
        put(CLIENT, "app/k", "cas", "?cas=%d" % seen[-1]))
cur = mi(CLIENT, "app/k")
c.check("... and moves the index on", True, cur is not None and cur > seen[-1])

# a blocking query on the key wakes on the next write, with its index
res = {}


def block():
    t = time.monotonic()
    res["r"] = req(CLIENT, "GET", "/v1/kv/app/k?index=%d&wait=20s" % cur, timeout=30)
    res["t"] = time.monotonic() - t


th = threading.Thread(target=block)
th.start()
time.sleep(1.0)
c.check("the blocking query is still parked before the write", True, th.is_alive())
put(2, "app/k", "wake")
th.join(30)
new = mi(CLIENT, "app/k")
st, h, b = res.get("r", (0, {}, b""))
got = json.loads(b)[0]["ModifyIndex"] if st == 200 else None
c.check("it wakes on the write (%.2f s after it started)" % res.get("t", -1), True,
        st == 200 and res.get("t", 99) < 10)
c.check("its ModifyIndex and X-Consul-Index are the new ModifyIndex (%r)" % new,
        (new, new), (got, int(h.get("X-Consul-Index", "0")) if st else None))
c.check("... which passed the one it waited on", True, new is not None and new > cur)

# --- the catalog and sessions show Raft indexes too
st, _, _ = req(CLIENT, "PUT", "/v1/agent/service/register",
               json.dumps({"Name": "web", "Port": 8080}).encode())
c.check("a service registers on the client", 200, st)
ok = Cluster.wait(10, lambda: len(c.get(2, "/v1/catalog/service/web") or []) == 1)
c.check("... and reaches a server's catalog", True, ok)
st, h, b = req(2, "GET", "/v1/catalog/service/web")
svc = json.loads(b)[0] if st == 200 and b else {}
c.check("the registration's ModifyIndex is small (%r)" % svc.get("ModifyIndex"), True,
        0 < svc.get("ModifyIndex", 0) < SMALL)
c.check("the catalog's X-Consul-Index is small (%s)" % h.get("X-Consul-Index"), True,
        0 < int(h.get("X-Consul-Index", "0")) < SMALL)
st, _, b = req(CLIENT, "PUT", "/v1/session/create", b"{}")
sid = json.loads(b).get("ID") if st == 200 else None
c.check("a session is created", True, sid is not None)
st, h, b = req(CLIENT, "GET", "/v1/session/info/%s" % sid)
info = json.loads(b)[0] if st == 200 and b and b != b"null" else {}
c.check("the session's CreateIndex is small (%r)" % info.get("CreateIndex"), True,
        0 < info.get("CreateIndex", 0) < SMALL)
c.check("the sessions' X-Consul-Index is small (%s)" % h.get("X-Consul-Index"), True,
        0 < int(h.get("X-Consul-Index", "0")) < SMALL)

raise SystemExit(c.finish())

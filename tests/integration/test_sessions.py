"""Sessions and locks (issue 17) on three rumor servers and two clients, on
loopback: python-consul's session API (create with a TTL, info, renew,
acquire, contention, blocking read woken by a release, list, node, destroy);
a session tied to a check that goes critical; leader election with three
contenders on three agents, checked from their history (no two holders at
once, LockIndex rising by one per new holder); kill -9 of the holder's
agent (its session ends once gossip declares the node failed and the next
holder waits out the lock delay); a TTL that runs out without renewals;
`rumor lock` (a second waits, a SIGTERM hands over, -n 2 admits two); and a
serverless agent answering 501."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import RUMOR_BIN, Cluster  # noqa: E402

import consul  # noqa: E402  (Debian's python3-consul, /usr/bin/python3)

c = Cluster()
SERVERS = [1, 2, 3]
C4, C5, LONE = 4, 5, 6


def req(i, method, path, body=None, timeout=10):
    r = urllib.request.Request("http://%s%s" % (c.haddr(i), path), data=body, method=method)
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)
    except Exception:
        return 0, b"", {}


def api(i):
    return consul.Consul(host="127.0.0.1", port=c.hport(i))


for i in SERVERS:
    c.start_server(i)
for i, name in ((C4, "c4"), (C5, "c5")):
    c.start(i, name, "-retry-join", "127.0.0.1:%d" % c.gport(1), "-retry-interval", "1s")
c.start(LONE, "lone")
ok = Cluster.wait(20, lambda: c.leader_index(SERVERS) is not None and
                  all(c.get(i, "/v1/status/leader") for i in (C4, C5)))
c.check("three servers elect a leader; both clients know it", True, ok)
Cluster.wait(10, lambda: all(len(c.get(C4, "/v1/catalog/nodes") or []) == 5 for _ in [0]))

# --- without servers: 501, with the usual headers
st, body, hdr = req(LONE, "PUT", "/v1/session/create", b"{}")
c.check("a serverless agent answers /v1/session/create with 501",
        (501, True, True), (st, b"sessions need servers" in body, "X-Consul-Index" in hdr))
st, body, _ = req(LONE, "PUT", "/v1/kv/k?acquire=x", b"v")
c.check("... and ?acquire with 501", (501, True), (st, b"sessions need servers" in body))

# --- python-consul's session API through a client agent
a4, a5 = api(C4), api(C5)
sid = a4.session.create(name="py", ttl=10, lock_delay=1)
info = a4.session.info(sid)[1] or {}
c.check("session.create/info: name, node, TTL, behavior, lock delay, serfHealth",
        ("py", "c4", "10s", "release", 1000000000, ["serfHealth"]),
        (info.get("Name"), info.get("Node"), info.get("TTL"), info.get("Behavior"),
         info.get("LockDelay"), info.get("NodeChecks")))
c.check("session.renew answers the session", sid, (a4.session.renew(sid) or {}).get("ID"))
c.check("kv.put(acquire=) takes a free lock", True, a4.kv.put("el/leader", "c4", acquire=sid))
_, e = a4.kv.get("el/leader")
c.check("... the key shows Session and LockIndex 1", (sid, 1),
        ((e or {}).get("Session"), (e or {}).get("LockIndex")))
sid5 = a5.session.create(name="other", lock_delay=0)
c.check("another session's acquire is refused while held", False,
        a5.kv.put("el/leader", "c5", acquire=sid5))
idx, _ = a5.kv.get("el/leader")
woke = {}


def blocked():
    i2, e2 = a5.kv.get("el/leader", index=idx, wait="20s")
    woke["t"] = time.monotonic()
    woke["session"] = (e2 or {}).get("Session")


t = threading.Thread(target=blocked)
t.start()
time.sleep(0.5)
t_rel = time.monotonic()
c.check("kv.put(release=) by the holder", True, a4.kv.put("el/leader", "c4", release=sid))
t.join(25)
c.check("a blocking read on the key wakes on the release, without a session",
        (True, None), ("t" in woke and woke["t"] - t_rel < 5, woke.get("session")))
c.check("now the other session acquires (LockIndex 2)", (True, 2),
        (a5.kv.put("el/leader", "c5", acquire=sid5),
         (a5.kv.get("el/leader")[1] or {}).get("LockIndex")))
ids = sorted(s["ID"] for s in a4.session.list()[1])
c.check("session.list shows both", sorted([sid, sid5]), ids)
c.check("session.node(c5) shows c5's", [sid5], [s["ID"] for s in a4.session.node("c5")[1]])
c.check("session.destroy", True, a5.session.destroy(sid5))
_, e = a4.kv.get("el/leader")
c.check("... releases its lock (behavior release: the value stays)",
        (None, "c5"), ((e or {}).get("Session"), ((e or {}).get("Value") or b"").decode()))
c.check("... and the session is gone", None, a4.session.info(sid5)[1])
st, body, _ = req(C4, "PUT", "/v1/kv/el/leader?acquire=nope", b"x")
c.check("acquire with an unknown session: 500 invalid session", (500, True),
        (st, b"invalid session" in body))
st, body, _ = req(C4, "PUT", "/v1/session/create", json.dumps({"TTL": "5s"}).encode())
c.check("a TTL under 10s is refused (500, as Consul's Session.Apply)", (500, True),
        (st, b"Invalid Session TTL" in body))
st, body, _ = req(C4, "PUT", "/v1/session/create", json.dumps({"Behavior": "x"}).encode())
c.check("an unknown Behavior is refused (500)", 500, st)
c.check("/v1/agent/self Config.SessionTTLMin is the minimum in ns (Patroni reads it)",
        10 * 10**9, a4.agent.self()["Config"].get("SessionTTLMin"))

# --- a session tied to a check: the check goes critical, the session ends
st, _, _ = req(C4, "PUT", "/v1/agent/check/register",
               json.dumps({"Name": "guard", "CheckID": "guard", "TTL": "60s",
                           "Status": "passing"}).encode())
Cluster.wait(10, lambda: any(ch.get("CheckID") == "guard" for ch in
                             (c.get(1, "/v1/health/node/c4") or [])))
st, body, _ = req(C4, "PUT", "/v1/session/create",
                  json.dumps({"Name": "guarded", "Checks": ["serfHealth", "guard"],
                              "LockDelay": "0s"}).encode())
gsid = json.loads(body).get("ID") if st == 200 else None
c.check("a session with a passing check is created", True, gsid is not None)
st, body, _ = req(C4, "PUT", "/v1/session/create",
                  json.dumps({"Checks": ["no-such-check"]}).encode())
c.check("... one naming an unknown check is refused (500)", (500, True),
        (st, b"no-such-check" in body))
a4.kv.put("guarded/key", "g", acquire=gsid)
req(C4, "PUT", "/v1/agent/check/fail/guard")
ok = Cluster.wait(10, lambda: a4.session.info(gsid)[1] is None)
c.check("the check goes critical: the session is invalidated", True, ok)
c.check("... and its lock released", None, (a4.kv.get("guarded/key")[1] or {}).get("Session"))

# --- a TTL that runs out: started now, checked at the end
tsid = a4.session.create(name="ttl", ttl=10, lock_delay=0, checks=[])
t_ttl = time.monotonic()
a4.kv.put("ttl/key", "t", acquire=tsid)

# --- leader election: three contenders on three agents, from their history
history = []  # (who, lock_index, t_acked, t_release_sent)
hlock = threading.Lock()
stop = threading.Event()


def contender(i, name):
    a = api(i)
    s = a.session.create(name=name, lock_delay=0, ttl=30)
    n = 0
    while not stop.is_set() and n < 200:
        n += 1
        try:
            if a.kv.put("elect/lock", name, acquire=s):
                t_ack = time.monotonic()
                li = (a.kv.get("elect/lock")[1] or {}).get("LockIndex")
                time.sleep(0.15)
                t_rel = time.monotonic()
                a.kv.put("elect/lock", name, release=s)
                with hlock:
                    history.append((name, li, t_ack, t_rel))
            time.sleep(0.05)
        except Exception:
            time.sleep(0.2)
    try:
        a.session.destroy(s)
    except Exception:
        pass


ts = [threading.Thread(target=contender, args=(i, n))
      for i, n in ((C4, "c4"), (C5, "c5"), (2, "s2"))]
[x.start() for x in ts]
time.sleep(6)
stop.set()
[x.join(30) for x in ts]
history.sort(key=lambda h: h[2])
overlaps = [(x, y) for x, y in zip(history, history[1:]) if y[2] < x[3]]
c.check("election: %d holds by %d contenders, never two holders at once" %
        (len(history), len({h[0] for h in history})), (True, []), (len(history) >= 6, overlaps))
lis = [h[1] for h in history]
c.check("... LockIndex rises by one with every new holder",
        list(range(lis[0], lis[0] + len(lis))) if lis else [], lis)

# --- kill -9 of the holder's agent: its session ends, the next waits the lock delay
s5 = a5.session.create(name="victim", lock_delay=3)
c.check("c5 takes the lock", True, a5.kv.put("kill/lock", "c5", acquire=s5))
s4 = a4.session.create(name="heir", lock_delay=3)
time.sleep(1.5)  # past one sweep of the leader
c.check("... its session lives while its node does", True, a4.session.info(s5)[1] is not None)
t_kill = time.monotonic()
os.kill(c.procs[C5].pid, signal.SIGKILL)
c.procs[C5].wait()
gone = None
t_gone = t_got = None
deadline = time.monotonic() + 40
while time.monotonic() < deadline:
    e = a4.kv.get("kill/lock")[1] or {}
    if t_gone is None and not e.get("Session"):
        t_gone = time.monotonic()
        status = {m["Name"]: m["Status"] for m in c.get(1, "/v1/agent/members") or []}
    if t_gone is not None and a4.kv.put("kill/lock", "c4", acquire=s4):
        t_got = time.monotonic()
        break
    time.sleep(0.1)
c.check("the holder's agent killed: its session ends (%.1f s after the kill), once gossip "
        "has declared the node failed" % ((t_gone or 0) - t_kill), (True, 4),
        (t_gone is not None, status.get("c5") if t_gone else None))
c.check("... the heir acquires, after the 3 s lock delay (%.1f s after release)" %
        ((t_got or 0) - (t_gone or 0)), True,
        t_got is not None and t_got - t_gone >= 2.5)

# --- the TTL session (no renewals) has ended: not before the TTL, by 2 x TTL
ok = Cluster.wait(max(0.0, 26 - (time.monotonic() - t_ttl)),
                  lambda: a4.session.info(tsid)[1] is None)
t_end = time.monotonic() - t_ttl
c.check("a 10 s TTL without renewals ends the session after 10-23 s (%.1f s)" % t_end,
        True, ok and 10 <= t_end <= 23)
c.check("... and releases its lock", None, (a4.kv.get("ttl/key")[1] or {}).get("Session"))

# --- rumor lock
env = dict(os.environ, CONSUL_HTTP_ADDR=c.haddr(C4))
mark = os.path.join(c.tmp, "marks")
os.makedirs(mark)
first = subprocess.Popen([RUMOR_BIN, "lock", "rl", "touch %s/first; sleep 60" % mark], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
Cluster.wait(10, lambda: os.path.exists(mark + "/first"))
second = subprocess.Popen([RUMOR_BIN, "lock", "rl", "touch %s/second" % mark], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(2)
c.check("rumor lock: the first runs its command, the second waits", (True, False),
        (os.path.exists(mark + "/first"), os.path.exists(mark + "/second")))
first.send_signal(signal.SIGTERM)
ok = Cluster.wait(15, lambda: os.path.exists(mark + "/second"))
c.check("... SIGTERM to the first hands the lock over", True, ok)
try:
    c.check("... the first exits 1 (its command was stopped), the second 0", (1, 0),
            (first.wait(10), second.wait(10)))
except subprocess.TimeoutExpired:
    c.check("... both exit", True, False)
sem = [subprocess.Popen([RUMOR_BIN, "lock", "-n", "2", "sem",
                         "date +%%s.%%N > %s/sem%d.start; sleep 2; date +%%s.%%N > %s/sem%d.end"
                         % (mark, k, mark, k)], env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for k in range(3)]
for p in sem:
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()


def stamp(k, what):
    try:
        with open("%s/sem%d.%s" % (mark, k, what)) as f:
            return float(f.read())
    except (OSError, ValueError):
        return None


spans = [(stamp(k, "start"), stamp(k, "end")) for k in range(3)]
done = all(s is not None and e is not None for s, e in spans)
most = 0
if done:
    for s, _ in spans:
        most = max(most, sum(1 for s2, e2 in spans if s2 <= s < e2))
c.check("rumor lock -n 2: three contenders all run, at most two at once (max %d)" % most,
        (True, 2), (done, most))

raise SystemExit(c.finish())

"""Snapshots (issue 16): `rumor snapshot save|inspect|restore` and
/v1/snapshot on three servers and a client. A save through the client,
changes after it (a key changed, one added, one deleted), a restore through
a follower: every agent, client included, then holds exactly the saved keys
(lock fields too) and writes go on. A damaged or truncated file is refused
and changes nothing; a serverless agent answers 501."""
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import RUMOR_BIN, Cluster  # noqa: E402

c = Cluster()
SERVERS = [1, 2, 3]
CLIENT, LONE = 4, 5


def req(i, method, path, body=None):
    r = urllib.request.Request("http://%s%s" % (c.haddr(i), path), data=body, method=method)
    try:
        with urllib.request.urlopen(r, timeout=20) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception:
        return 0, b""


def cli(i, *args):
    p = subprocess.run([RUMOR_BIN] + list(args), env=dict(os.environ, CONSUL_HTTP_ADDR=c.haddr(i)),
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def kv(i):
    """{key: (value, Session)} under snap/ as agent i reads it (stale: its replica)."""
    st, b = req(i, "GET", "/v1/kv/snap/?recurse&stale")
    if st != 200:
        return {}
    return {e["Key"]: (e.get("Value"), e.get("Session")) for e in json.loads(b)}


for i in SERVERS:
    c.start_server(i)
c.start(CLIENT, "c4", "-retry-join", "127.0.0.1:%d" % c.gport(1), "-retry-interval", "1s")
c.start(LONE, "lone")
ok = Cluster.wait(20, lambda: c.leader_index(SERVERS) is not None and
                  c.get(CLIENT, "/v1/status/leader"))
c.check("three servers elect a leader", True, bool(ok))
for k, v in (("a", "1"), ("b", "2"), ("c", "3")):
    req(CLIENT, "PUT", "/v1/kv/snap/" + k, v.encode())
st, b = req(CLIENT, "PUT", "/v1/session/create", b'{"LockDelay":"0s"}')
sid = json.loads(b)["ID"]
req(CLIENT, "PUT", "/v1/kv/snap/lock?acquire=" + sid, b"L")
want = None
Cluster.wait(10, lambda: len(kv(CLIENT)) == 4)
want = kv(CLIENT)
path = os.path.join(c.tmp, "backup.snap")
rc, out = cli(CLIENT, "snapshot", "save", path)
c.check("rumor snapshot save through the client", (0, True), (rc, "Saved and verified" in out))
rc, out = cli(CLIENT, "snapshot", "inspect", path)
c.check("rumor snapshot inspect reads it offline", (0, True), (rc, "Records" in out))
req(CLIENT, "PUT", "/v1/kv/snap/a", b"changed")
req(CLIENT, "PUT", "/v1/kv/snap/new", b"x")
req(CLIENT, "DELETE", "/v1/kv/snap/b")
req(CLIENT, "PUT", "/v1/kv/snap/lock?release=" + sid, b"")
Cluster.wait(10, lambda: "snap/new" in kv(CLIENT))
with open(path, "rb") as f:
    data = f.read()
bad = bytearray(data)
bad[len(bad) // 2] ^= 0xff
st, b = req(2, "PUT", "/v1/snapshot", bytes(bad))
c.check("a damaged snapshot is refused (400, checksum)", (400, True), (st, b"checksum" in b))
rc, out = cli(2, "snapshot", "restore", path + ".missing")
c.check("restore of a missing file fails clearly", (1, True), (rc, "Error" in out))
c.check("... and nothing changed", True, "snap/new" in kv(CLIENT))
L = c.leader_index(SERVERS)
follower = next(i for i in SERVERS if i != L)
rc, out = cli(follower, "snapshot", "restore", path)
c.check("rumor snapshot restore through a follower", (0, True), (rc, "Restored" in out))
ok = Cluster.wait(15, lambda: all(kv(i) == want for i in SERVERS + [CLIENT]))
c.check("every agent, the client too, holds exactly the saved keys, lock included", True, ok)
if not ok:
    print("# want %r; got %r" % (want, {i: kv(i) for i in SERVERS + [CLIENT]}))
st, b = req(CLIENT, "PUT", "/v1/kv/snap/after", b"y")
c.check("writes go on after the restore", (200, b"true"), (st, b.strip()))
st, _ = req(LONE, "GET", "/v1/snapshot")
c.check("a serverless agent answers /v1/snapshot with 501", 501, st)
raise SystemExit(c.finish())

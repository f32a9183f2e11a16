"""tests/integration/test_kv_consul.py — Debian's python3-consul (0.7.1)
against rumor's /v1/kv: put/get/delete with recurse, cas, flags, keys,
blocking index, on two agents (writes on one, reads on the other).
Run with /usr/bin/python3; RUMOR_BIN points at the binary."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import consul  # noqa: E402
from agents import Cluster  # noqa: E402

c = Cluster()
# keep every port below Linux's ephemeral range (32768-60999), where an
# outgoing connection may hold the port an agent wants to bind
c.base = 21000 + os.getpid() % 110 * 100


def start_checked(i, name, *extra):
    """Start an agent; if it did not come up, show why and stop."""
    c.start(i, name, *extra)
    if c.get(i, "/v1/agent/self") is None:
        log = os.path.join(c.tmp, name + ".log")
        print("agent %s did not start; its log:" % name)
        print(open(log, errors="replace").read()[-3000:])
        c.check("agent %s started" % name, True, False)
        c.finish()
        sys.exit(1)


start_checked(1, "p1", "-server-port", str(c.base + 31), "-kv-sync-interval", "1s")
start_checked(2, "p2", "-server-port", str(c.base + 32), "-kv-sync-interval", "1s",
              "-join", "127.0.0.1:%d" % c.gport(1))
a = consul.Consul(host="127.0.0.1", port=c.hport(1))
b = consul.Consul(host="127.0.0.1", port=c.hport(2))


def eventually(fn, want, seconds=5):
    deadline = time.monotonic() + seconds
    got = None
    while time.monotonic() < deadline:
        try:
            got = fn()
        except Exception as e:  # noqa: BLE001
            got = repr(e)
        if got == want:
            return got
        time.sleep(0.05)
    return got


c.check("put returns True", True, a.kv.put("cfg/db/host", "10.0.0.1"))
c.check("put with flags", True, a.kv.put("cfg/db/port", "5432", flags=7))
idx, none = a.kv.get("missing/key")
c.check("get of a missing key is None", None, none)
c.check("missing key still has an index", True, int(idx) >= 1)
c.check("value replicated to the other agent", b"10.0.0.1",
        eventually(lambda: (b.kv.get("cfg/db/host")[1] or {}).get("Value"), b"10.0.0.1"))
c.check("flags replicated", 7,
        eventually(lambda: (b.kv.get("cfg/db/port")[1] or {}).get("Flags"), 7))
_, items = b.kv.get("cfg/", recurse=True)
c.check("recurse lists both keys", ["cfg/db/host", "cfg/db/port"],
        sorted(i["Key"] for i in items or []))
_, keys = a.kv.get("cfg/", keys=True, separator="/")
c.check("keys with separator roll up", ["cfg/db/"], keys)

# cas
_, e = a.kv.get("cfg/db/host")
mi = e["ModifyIndex"]
c.check("cas with a stale index fails", False, a.kv.put("cfg/db/host", "x", cas=mi - 1))
c.check("cas with the current index succeeds", True, a.kv.put("cfg/db/host", "10.0.0.2", cas=mi))
c.check("cas=0 on an existing key fails", False, a.kv.put("cfg/db/host", "y", cas=0))
c.check("cas=0 on a new key succeeds", True, a.kv.put("cfg/new", "n", cas=0))
_, e2 = a.kv.get("cfg/db/host")
c.check("delete with a stale cas fails", False, a.kv.delete("cfg/db/host", cas=mi))
c.check("delete with the current cas succeeds", True,
        a.kv.delete("cfg/db/host", cas=e2["ModifyIndex"]))

# blocking query on the other agent, woken by a write on the first
idx, _ = b.kv.get("cfg/db/port")
result = {}


def block():
    t0 = time.monotonic()
    i, v = b.kv.get("cfg/db/port", index=idx, wait="10s")
    result["t"] = time.monotonic() - t0
    result["v"] = v


th = threading.Thread(target=block)
th.start()
time.sleep(0.3)
a.kv.put("cfg/db/port", "6543")
th.join(12)
c.check("blocking get returns the new value", b"6543", (result.get("v") or {}).get("Value"))
c.check("blocking get returns promptly (< 3 s)", True, result.get("t", 99) < 3)

# recursive delete spreads
c.check("recursive delete", True, a.kv.delete("cfg/", recurse=True))
c.check("recursive delete seen on the other agent", None,
        eventually(lambda: b.kv.get("cfg/", recurse=True)[1], None))
c.finish()

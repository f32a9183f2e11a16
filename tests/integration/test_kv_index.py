"""tests/integration/test_kv_index.py — every index rumor emits is exact as
an IEEE double (issue 14 item 1: a JavaScript client rounded 1.2e17 and its
CAS failed). Two real agents; KV get/put/recurse/keys/404, txn, catalog and
health bodies and every X-Consul-Index header are parsed twice, once with
floats for integers (as JavaScript and jq do), and each index must read the
same both ways, stay <= 2^53 - 1, match the header where Consul's does, be
equal on both replicas, grow with each write, and work as ?cas= after the
round trip through a double. An index as an earlier release showed it (the
64-bit version) still works as ?cas= and ?index=.
Run with /usr/bin/python3; RUMOR_BIN points at the binary."""
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from agents import Cluster  # noqa: E402

MAX = 2**53 - 1
EPOCH_MS = 1704067200000  # 2024-01-01T00:00:00Z, docs/KV.md "Indexes"

c = Cluster()
c.base = 23000 + os.getpid() % 60 * 100
c.start(1, "x1", "-kv-sync-interval", "1s")
c.start(2, "x2", "-kv-sync-interval", "1s", "-join", "127.0.0.1:%d" % c.gport(1))
if c.get(1, "/v1/agent/self") is None or c.get(2, "/v1/agent/self") is None:
    c.check("both agents started", True, False)
    sys.exit(c.finish())

seen = []  # (where, value) of every index checked


def http(i, method, path, body=None):
    """(status, headers, raw body) of a request to agent i."""
    req = urllib.request.Request("http://%s%s" % (c.haddr(i), path), data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def exact(where, v):
    """v (an int from the exact parse) is what a double reads, and fits."""
    seen.append((where, v))
    if not (isinstance(v, int) and 0 < v <= MAX and int(float(v)) == v):
        c.check("%s: index %r is exact as a double and <= 2^53-1" % (where, v), True, False)
        return False
    return True


def walk(where, exact_doc, float_doc):
    """Check every *Index field; the float parse must give the same number."""
    ok = True
    if isinstance(exact_doc, dict):
        for k, v in exact_doc.items():
            if k.endswith("Index") and k not in ("LockIndex", "OpIndex") and isinstance(v, int):
                ok &= exact("%s.%s" % (where, k), v)
                ok &= float_doc[k] == v  # a float equal to the int: no rounding
            else:
                ok &= walk("%s.%s" % (where, k), v, float_doc[k])
    elif isinstance(exact_doc, list):
        for n, (a, b) in enumerate(zip(exact_doc, float_doc)):
            ok &= walk("%s[%d]" % (where, n), a, b)
    return ok


def read(i, path, method="GET", body=None):
    """Fetch, check header and body indexes; (status, header index, exact doc)."""
    st, hd, raw = http(i, method, path, body)
    h = hd.get("X-Consul-Index")
    hi = None
    if h is not None:
        hi = int(h)
        exact("%s X-Consul-Index" % path, hi)
        c.check("%s: header read as a double is exact" % path, hi, int(float(h)))
    doc = None
    if raw and hd.get("Content-Type", "").startswith("application/json"):
        doc = json.loads(raw)
        fdoc = json.loads(raw, parse_int=float)
        c.check("%s: every index in the body is exact as a double" % path, True,
                walk(path, doc, fdoc))
    return st, hi, doc


def near_now(v):
    """An index is the clock: (ms since 2024) << 12, within a minute of now."""
    now_ms = int(time.time() * 1000) - EPOCH_MS
    return abs((v >> 12) - now_ms) < 60000


def legacy(idx):
    """The version an earlier release showed for this index (48/16 bits)."""
    return ((idx >> 12) + EPOCH_MS) << 16 | (idx & 4095)


# --- KV writes and reads
c.check("put a/k1", b"true", http(1, "PUT", "/v1/kv/a/k1", b"one")[2])
st, h1, doc = read(1, "/v1/kv/a/k1")
mi = doc[0]["ModifyIndex"]
c.check("get a/k1: header equals ModifyIndex", mi, h1)
c.check("ModifyIndex is the clock's index form (ms since 2024 << 12)", True, near_now(mi))
c.check("CreateIndex equals ModifyIndex after one write", mi, doc[0]["CreateIndex"])
c.check("put a/k2", b"true", http(1, "PUT", "/v1/kv/a/k2", b"two")[2])
st, hr, doc = read(1, "/v1/kv/a?recurse")
c.check("recurse lists two keys", 2, len(doc or []))
c.check("recurse header is the largest ModifyIndex", max(e["ModifyIndex"] for e in doc), hr)
c.check("a later write has a larger index", True, doc[1]["ModifyIndex"] > mi)
read(1, "/v1/kv/a?keys")
read(1, "/v1/kv/?keys&separator=/")
st, hm, _ = read(1, "/v1/kv/missing/key")
c.check("missing key: 404", 404, st)

# --- CAS with the index as JavaScript holds it, ten times in a row
cas_ok = 0
for n in range(10):
    st, _, doc = read(1, "/v1/kv/a/k1")
    js = int(float(json.loads(http(1, "GET", "/v1/kv/a/k1")[2], parse_int=float)[0]["ModifyIndex"]))
    if http(1, "PUT", "/v1/kv/a/k1?cas=%d" % js, b"v%d" % n)[2] == b"true":
        cas_ok += 1
c.check("CAS with ModifyIndex read through a double: 10 of 10", 10, cas_ok)
st, _, doc = read(1, "/v1/kv/a/k1")
c.check("CAS with a stale index fails", b"false",
        http(1, "PUT", "/v1/kv/a/k1?cas=%d" % (doc[0]["ModifyIndex"] - 1), b"stale")[2])
c.check("an index as an earlier release showed it (> 2^53) still works as ?cas=", b"true",
        http(1, "PUT", "/v1/kv/a/k1?cas=%d" % legacy(doc[0]["ModifyIndex"]), b"old-client")[2])

# --- blocking queries: the current index blocks, in either form
st, cur, _ = read(1, "/v1/kv/a/k1")
for form, idx in (("index form", cur), ("earlier release's form", legacy(cur))):
    t0 = time.monotonic()
    st, got, _ = read(1, "/v1/kv/a/k1?index=%d&wait=1s" % idx)
    took = time.monotonic() - t0
    c.check("?index= current (%s) blocks until wait" % form, True, took >= 0.9)
    c.check("?index= current (%s) answers the same index" % form, cur, got)


def later_put(delay):
    time.sleep(delay)
    http(1, "PUT", "/v1/kv/a/k1", b"wake")


t = threading.Thread(target=later_put, args=(0.5,))
t0 = time.monotonic()
t.start()
st, got, _ = read(1, "/v1/kv/a/k1?index=%d&wait=8s" % legacy(cur))
took = time.monotonic() - t0
t.join()
c.check("a write wakes a query blocked on the earlier release's form", (True, True),
        (took < 4, (got or 0) > cur))
st, cur, _ = read(1, "/v1/kv/a/k1")
st, got, _ = read(1, "/v1/kv/a/k1?index=%d&wait=5s" % (cur - 1))
c.check("?index= below the current one answers at once with it", cur, got)

# --- txn
txn = json.dumps([{"KV": {"Verb": "set", "Key": "a/t", "Value": "dA=="}},
                  {"KV": {"Verb": "get", "Key": "a/k2"}}]).encode()
st, _, doc = read(1, "/v1/txn", "PUT", txn)
c.check("txn: 200", 200, st)
ti = doc["Results"][0]["KV"]["ModifyIndex"] if doc and doc.get("Results") else 0
js = int(float(json.loads(json.dumps(ti), parse_int=float)))
txn = json.dumps([{"KV": {"Verb": "check-index", "Key": "a/t", "Index": js}},
                  {"KV": {"Verb": "cas", "Key": "a/t", "Value": "dQ==", "Index": js}}]).encode()
st, _, doc = read(1, "/v1/txn", "PUT", txn)
c.check("txn check-index and cas with the index read through a double: 200", 200, st)

# --- replicas converge to the same indexes
want = {e["Key"]: e["ModifyIndex"] for e in read(1, "/v1/kv/a?recurse")[2]}


def same_on_x2():
    st, h, doc = http(2, "GET", "/v1/kv/a?recurse")
    return st == 200 and {e["Key"]: e["ModifyIndex"] for e in json.loads(doc)} == want


c.check("x2 shows the same ModifyIndex for every key", True, Cluster.wait(10, same_on_x2))
st, h2, doc2 = read(2, "/v1/kv/a?recurse")
c.check("x2 recurse header equals x1's", max(want.values()), h2)
st, h2, doc2 = read(2, "/v1/kv/a/k1")
c.check("x2 get a/k1: header equals ModifyIndex", doc2[0]["ModifyIndex"], h2)

# --- catalog and health
reg = json.dumps({"Name": "web", "ID": "web1", "Port": 8080,
                  "Check": {"TTL": "30s", "Name": "web ttl"}}).encode()
c.check("register web on x1", 200, http(1, "PUT", "/v1/agent/service/register", reg)[0])
c.check("x2 sees web", True,
        Cluster.wait(10, lambda: "web" in (c.get(2, "/v1/catalog/services") or {})))
for i in (1, 2):
    for path in ("/v1/catalog/services", "/v1/catalog/service/web", "/v1/catalog/nodes",
                 "/v1/catalog/node/x1", "/v1/health/service/web", "/v1/health/node/x1",
                 "/v1/health/checks/web", "/v1/health/state/any", "/v1/event/list"):
        st, h, _ = read(i, path)
        c.check("x%d %s: 200 with an X-Consul-Index" % (i, path), (200, True), (st, h is not None))
st, cat_idx, _ = read(1, "/v1/catalog/services")
c.check("catalog index is the clock's index form", True, near_now(cat_idx))

print("%d indexes checked, largest %d (2^53 - 1 = %d)" % (len(seen), max(v for _, v in seen), MAX))
c.check("every index checked fits", True, all(0 < v <= MAX for _, v in seen))
sys.exit(c.finish())

#!/usr/bin/python3
"""tests/integration/test_kv_security.py — the KV sync listener as an attacker sees it.

Real agents on 127.0.0.1; an outsider speaks the sync protocol with raw
sockets (frames: u32 length, u8 type, payload; a sealed frame is type 10
around a memberlist-format AES-256-GCM packet with the 5 header bytes and
the direction as associated data — kv/repl.h).

1. Encrypted cluster (-encrypt), one agent with an ACL token, one without:
   a value larger than the gossip inline limit reaches the other agent (it
   is pulled over the sealed sync channel), and a late joiner gets the
   store by anti-entropy; an outsider's plaintext DIGEST gets no byte back
   and its blind RECORDS change nothing; a frame sealed with another key
   gets nothing and changes nothing; the refusals are counted. A positive
   control seals the same forged record with the cluster's key and sees it
   taken — so the refusals above are the defence, not a broken test.
2. Plaintext cluster: a record 2^64-1 or one hour ahead is refused and
   counted, the key stays writable on both agents; a record one second
   ahead is taken (the channel itself works).
3. Memory: a frame announcing 256 MiB is refused at once; 64 connections
   each feeding most of a 1 MiB frame leave the agent's RSS within the
   stated budget (16 MiB of buffers) plus slack, and it keeps serving.
4. -server-port -1: /v1/kv and /v1/txn answer 500 with a clear message.
"""
import base64
import os
import socket
import struct
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from agents import Cluster, flood, rss_kib  # noqa: E402

try:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:  # scripts/deps.sh installs python3-cryptography
    AESGCM = None

KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = bytes(range(100, 132))
TOKEN = "s3cret-token"
F_DIGEST, F_DIFF, F_RECORDS, F_PULL, F_END, F_SEALED = 1, 2, 3, 4, 5, 10

c = Cluster()


def http(i, method, path, body=None, token=None):
    req = urllib.request.Request("http://%s%s" % (c.haddr(i), path), data=body, method=method)
    if token:
        req.add_header("X-Consul-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception as e:  # noqa: BLE001
        return 0, str(e).encode()


def raw(i, key, token=None):
    st, body = http(i, "GET", "/v1/kv/%s?raw" % key, token=token)
    return body if st == 200 else None


def frame(ftype, payload=b""):
    return struct.pack(">I", 1 + len(payload)) + bytes([ftype]) + payload


def record(key, value, hlc, node=b"evil"):
    k = key.encode()
    rec = (bytes([1, 0]) + struct.pack(">QQQ", hlc, hlc, 0) + bytes([len(node)]) + node +
           struct.pack(">I", len(value)) + value)
    return struct.pack(">H", len(k)) + k + rec


def records_frame(recs):
    return frame(F_RECORDS, struct.pack(">I", len(recs)) + b"".join(recs))


def seal(plain_frame, key, from_initiator=True):
    """Seal one plaintext frame as kv/repl.c does."""
    inner = plain_frame[4:]
    sealed_len = 1 + 12 + len(inner) + 16
    hdr = struct.pack(">I", 1 + sealed_len) + bytes([F_SEALED])
    ad = hdr + (b"I" if from_initiator else b"R")
    nonce = os.urandom(12)
    return hdr + bytes([1]) + nonce + AESGCM(key).encrypt(nonce, inner, ad)


def exchange(port, data, wait=3.0):
    """Send data to the sync port; return every byte received until EOF."""
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            got += chunk
    return got


def metric(i, name):
    st, body = http(i, "GET", "/v1/agent/metrics", token=TOKEN)
    if st != 200:
        return None
    import json
    doc = json.loads(body)
    total = 0
    for m in doc.get("Counters", []) + doc.get("Gauges", []):
        if m["Name"] == name or m["Name"].startswith(name + ";"):
            total += m.get("Count", m.get("Value", 0)) or 0
    return total


def hlc_ms(ms):
    return ms << 16



now_ms = lambda: int(time.time() * 1000)  # noqa: E731

# ---------------------------------------------------------------- 1. encrypted
c.start(1, "e1", "-encrypt", KEY, "-acl-token", TOKEN)
c.start(2, "e2", "-encrypt", KEY, "-join", "127.0.0.1:%d" % c.gport(1))
c.check("encrypted agents see each other", True,
        c.wait(10, lambda: len(c.get(2, "/v1/agent/members") or []) == 2))

big = b"B" * 3000  # over the inline limit: announced, then pulled over sync
st, _ = http(1, "PUT", "/v1/kv/app/secret", b"password=hunter2", token=TOKEN)
c.check("write with the token accepted", 200, st)
st, _ = http(1, "PUT", "/v1/kv/app/big", big, token=TOKEN)
c.check("large write accepted", 200, st)
c.check("large value pulled over the sealed sync channel", True,
        c.wait(10, lambda: raw(2, "app/big") == big))
c.check("small value on the other agent", True,
        c.wait(10, lambda: raw(2, "app/secret") == b"password=hunter2"))
c.start(3, "e3", "-encrypt", KEY, "-join", "127.0.0.1:%d" % c.gport(1))
c.check("a late joiner gets the store by sealed anti-entropy", True,
        c.wait(20, lambda: raw(3, "app/big") == big and raw(3, "app/secret") is not None))

future = hlc_ms(now_ms() + 1000)
forged = records_frame([record("app/secret", b"forged", future)])
digest = frame(F_DIGEST, os.urandom(256 * 8))
for i, token in ((1, TOKEN), (2, None)):
    who = "agent with ACL token" if token else "agent without ACL token"
    got = exchange(c.sport(i), digest + forged + frame(F_END))
    c.check("%s: plaintext DIGEST gets no byte back" % who, b"", got)
    c.check("%s: no secret readable" % who, False, b"hunter2" in got)
time.sleep(1)
c.check("plaintext RECORDS changed nothing (e1)", b"password=hunter2", raw(1, "app/secret", TOKEN))
c.check("plaintext RECORDS changed nothing (e2)", b"password=hunter2", raw(2, "app/secret"))
refused = metric(1, "rumor.kv.anti_entropy.refused")
c.check("plaintext refusals counted", True, refused is not None and refused >= 1)

if AESGCM is None:
    c.check("python3-cryptography present for the sealed cases", True, False)
else:
    got = exchange(c.sport(2), seal(digest, OTHER_KEY) + seal(forged, OTHER_KEY))
    c.check("frame sealed with another key gets no byte back", b"", got)
    time.sleep(0.5)
    c.check("frame sealed with another key changed nothing", b"password=hunter2",
            raw(2, "app/secret"))
    # positive control: the cluster's key opens the channel (a member may write)
    good_key = base64.b64decode(KEY)
    got = exchange(c.sport(2), seal(digest, good_key))
    c.check("with the cluster key the peer answers (sealed, no plaintext)", True,
            len(got) > 0 and got[4] == F_SEALED and b"hunter2" not in got)
    ctl = records_frame([record("app/control", b"member-write", hlc_ms(now_ms()))])
    # an initiator's records follow the responder's END; send DIGEST, read
    # its answer, then our RECORDS + END on the same connection
    with socket.create_connection(("127.0.0.1", c.sport(2)), timeout=3) as s:
        s.sendall(seal(digest, good_key))
        buf = b""
        deadline = time.monotonic() + 3
        ends = 0
        while time.monotonic() < deadline and ends == 0:
            buf += s.recv(65536)
            # walk sealed frames; open each to find END
            off = 0
            while len(buf) - off >= 4:
                n = struct.unpack(">I", buf[off:off + 4])[0]
                if len(buf) - off - 4 < n:
                    break
                hdr = buf[off:off + 5]
                body = buf[off + 5:off + 4 + n]
                inner = AESGCM(good_key).decrypt(body[1:13], body[13:], hdr + b"R")
                if inner[0] == F_END:
                    ends += 1
                off += 4 + n
        s.sendall(seal(ctl, good_key) + seal(frame(F_END), good_key))
        time.sleep(0.5)
    c.check("positive control: a record sealed with the cluster key is taken", True,
            c.wait(5, lambda: raw(2, "app/control") == b"member-write"))
    dec = metric(2, "rumor.kv.anti_entropy.refused")
    c.check("undecryptable frames counted", True, dec is not None and dec >= 2)

# ---------------------------------------------------------------- 2. versions
c.start(4, "p1")
c.start(5, "p2", "-join", "127.0.0.1:%d" % c.gport(4))
c.check("plaintext agents see each other", True,
        c.wait(10, lambda: len(c.get(5, "/v1/agent/members") or []) == 2))
http(4, "PUT", "/v1/kv/cfg/x", b"v1")
c.check("plain write replicated", True, c.wait(10, lambda: raw(5, "cfg/x") == b"v1"))


def push_records(port, recs):
    """Plaintext initiator: DIGEST, wait for the responder's END, RECORDS + END."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(frame(F_DIGEST, b"\0" * 2048))
        buf = b""
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not buf.endswith(frame(F_END)):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        s.sendall(records_frame(recs) + frame(F_END))
        time.sleep(0.3)
    return buf


ahead0 = metric(4, "rumor.kv.versions_ahead") or 0
push_records(c.sport(4), [record("cfg/x", b"poison-max", (1 << 64) - 1),
                          record("cfg/y", b"poison-hour", hlc_ms(now_ms() + 3600 * 1000))])
c.check("a version of 2^64-1 is refused", b"v1", raw(4, "cfg/x"))
c.check("a version one hour ahead is refused", None, raw(4, "cfg/y"))
c.check("refused versions counted", True, (metric(4, "rumor.kv.versions_ahead") or 0) >= ahead0 + 2)
st, _ = http(4, "PUT", "/v1/kv/cfg/x", b"v2")
c.check("the key stays writable", 200, st)
c.check("and the write reaches the other agent", True, c.wait(10, lambda: raw(5, "cfg/x") == b"v2"))
push_records(c.sport(4), [record("cfg/z", b"near", hlc_ms(now_ms() + 1000))])
c.check("control: a version one second ahead is taken", True,
        c.wait(5, lambda: raw(4, "cfg/z") == b"near"))
st, _ = http(5, "PUT", "/v1/kv/cfg/z", b"after")
c.check("a key written from a clock 1 s ahead stays writable", 200, st)

# ---------------------------------------------------------------- 3. memory
pid = c.procs[4].pid
rss0 = rss_kib(pid)
got = exchange(c.sport(4), struct.pack(">I", 256 << 20) + bytes([F_RECORDS]) + b"x" * 1000, wait=2)
c.check("a 256 MiB frame is refused at once (nothing answered)", b"", got)
socks = []
payload = struct.pack(">I", 1 << 20) + bytes([F_DIGEST]) + b"y" * (900 << 10)
for _ in range(64):
    try:
        s = socket.create_connection(("127.0.0.1", c.sport(4)), timeout=2)
        s.setblocking(False)
        socks.append(s)
    except OSError:
        pass
flood(socks, payload, 15)
time.sleep(0.5)
rss1 = rss_kib(pid)
for s in socks:
    s.close()
growth_mib = (rss1 - rss0) / 1024.0
print("# RSS before %d KiB, during the flood %d KiB (+%.1f MiB)" % (rss0, rss1, growth_mib))
c.check("64 x 1 MiB frames: RSS grows < 40 MiB (budget 16 MiB; was 64 x 256 MiB)", True,
        growth_mib < 40)
closed = metric(4, "rumor.kv.anti_entropy.budget_closed")
c.check("connections over the budget were closed and counted", True, closed is not None and closed >= 1)
st, _ = http(4, "PUT", "/v1/kv/cfg/after-flood", b"ok")
c.check("the agent still takes writes after the flood", 200, st)
c.check("and still replicates", True, c.wait(15, lambda: raw(5, "cfg/after-flood") == b"ok"))

# ---------------------------------------------------------------- 4. disabled
c.procs[6] = None
data = os.path.join(c.tmp, "data-off")
os.makedirs(data, exist_ok=True)
import subprocess  # noqa: E402
log = open(os.path.join(c.tmp, "off.log"), "ab")
c.procs[6] = subprocess.Popen(
    [os.environ.get("RUMOR_BIN") or os.path.join(os.path.dirname(__file__), "..", "..", "build", "rumor"),
     "agent", "-node", "off", "-bind", "127.0.0.1", "-serf-lan-port", str(c.gport(6)),
     "-client", "127.0.0.1", "-http-port", str(c.hport(6)), "-dns-port", "-1",
     "-server-port", "-1", "-data-dir", data], stdout=log, stderr=subprocess.STDOUT)
c.wait(10, lambda: c.get(6, "/v1/agent/self") is not None)
for method, path, body in (("GET", "/v1/kv/a", None), ("GET", "/v1/kv/?recurse", None),
                           ("PUT", "/v1/kv/a", b"x"), ("DELETE", "/v1/kv/a", None),
                           ("PUT", "/v1/txn", b"[]")):
    st, body = http(6, method, path, body)
    c.check("-server-port -1: %s %s answers 500" % (method, path), 500, st)
    c.check("-server-port -1: %s %s says why" % (method, path), True, b"-server-port -1" in body)
c.check("-server-port -1: the agent is still up", None, c.procs[6].poll())

sys.exit(c.finish())

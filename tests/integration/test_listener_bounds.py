#!/usr/bin/python3
"""tests/integration/test_listener_bounds.py — each listener's stated memory bound, held.

docs/SECURITY.md states a bound per listener; the KV sync port and the
gossip TCP port have their own flood tests (test_kv_security.py,
test_push_pull_flood.py). This one holds the DNS TCP listener to its bound:
at most 256 connections with a 64 KiB buffer each (16 MiB), whatever the
clients send. 300 connections each announce a 65,535-byte query and send
most of it; the agent's RSS may grow by the bound plus slack, not by 300 x
64 KiB unbounded, connections past the cap are closed, and DNS keeps
answering over UDP meanwhile and over TCP once they are gone.

And the HTTP listener to its: request buffers of all connections together
at most 64 MiB (plus ~10 KB per connection, at most 4096): 600 connections
from 4 addresses each announce a 1 MiB body and send most of it; past the
pool they get 503, RSS grows by the bound plus slack (not 600 MiB), and a
small request from another address is served throughout.
"""
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from agents import Cluster, RUMOR_BIN, flood, rss_kib  # noqa: E402

c = Cluster()
dns_port = c.base + 70
data = os.path.join(c.tmp, "data-b1")
os.makedirs(data, exist_ok=True)
log = open(os.path.join(c.tmp, "b1.log"), "ab")
c.procs[1] = subprocess.Popen(
    [RUMOR_BIN, "agent", "-node", "b1", "-bind", "127.0.0.1", "-serf-lan-port", str(c.gport(1)),
     "-client", "127.0.0.1", "-http-port", str(c.hport(1)), "-dns-port", str(dns_port),
     "-server-port", str(c.sport(1)), "-data-dir", data],
    stdout=log, stderr=subprocess.STDOUT)
c.check("agent up", True, c.wait(10, lambda: c.get(1, "/v1/agent/self") is not None))



def query(name, qtype=1, tcp=False):
    """A minimal DNS query; returns the rcode or None."""
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    for part in name.split("."):
        q += bytes([len(part)]) + part.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    try:
        if tcp:
            with socket.create_connection(("127.0.0.1", dns_port), timeout=2) as s:
                s.sendall(struct.pack(">H", len(q)) + q)
                n = struct.unpack(">H", s.recv(2))[0]
                a = b""
                while len(a) < n:
                    chunk = s.recv(n - len(a))
                    if not chunk:
                        return None
                    a += chunk
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            s.sendto(q, ("127.0.0.1", dns_port))
            a = s.recvfrom(4096)[0]
            s.close()
        return a[3] & 0x0F
    except (OSError, struct.error):
        return None


c.check("DNS answers over UDP", 0, query("b1.node.consul"))
c.check("DNS answers over TCP", 0, query("b1.node.consul", tcp=True))

pid = c.procs[1].pid
rss0 = rss_kib(pid)
socks = []
for _ in range(300):
    try:
        s = socket.create_connection(("127.0.0.1", dns_port), timeout=2)
        s.setblocking(False)
        socks.append(s)
    except OSError:
        pass
payload = struct.pack(">H", 65535) + b"\x01" * 60000
flood(socks, payload, 20, chunk=16384, pause=0.005)
time.sleep(0.5)
rss1 = rss_kib(pid)
closed = 0
for s in socks:
    try:
        if s.recv(1) == b"":
            closed += 1
    except BlockingIOError:
        pass
    except OSError:
        closed += 1
growth = (rss1 - rss0) / 1024.0
print("# %d connections, %d closed by the agent; RSS %d -> %d KiB (+%.1f MiB)"
      % (len(socks), closed, rss0, rss1, growth))
c.check("connections past the 256 cap are closed", True, closed >= len(socks) - 256)
c.check("RSS grows within the 16 MiB bound plus slack (< 32 MiB)", True, growth < 32)
c.check("DNS answers over UDP during the flood", 0, query("b1.node.consul"))
for s in socks:
    s.close()
c.check("DNS answers over TCP once the flood is gone", True,
        c.wait(5, lambda: query("b1.node.consul", tcp=True) == 0))

# ---------------------------------------------------------------- HTTP
rss0 = rss_kib(pid)
hsocks = []
for k in range(600):
    src = "127.0.0.%d" % (10 + k % 4)
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((src, 0))
        s.settimeout(2)
        s.connect(("127.0.0.1", c.hport(1)))
        s.setblocking(False)
        hsocks.append(s)
    except OSError:
        pass
head = b"PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
hpayload = head + b"v" * (900 << 10)
flood(hsocks, hpayload, 30, pause=0.002)
time.sleep(0.5)
rss1 = rss_kib(pid)
busy = 0
for s in hsocks:
    try:
        if b" 503 " in s.recv(200):
            busy += 1
    except OSError:
        pass
growth = (rss1 - rss0) / 1024.0
print("# HTTP: %d connections, %d answered 503; RSS %d -> %d KiB (+%.1f MiB)"
      % (len(hsocks), busy, rss0, rss1, growth))
c.check("HTTP: requests past the buffer pool answered 503", True, busy > 0)
c.check("HTTP: RSS grows within 64 MiB + per-connection state + slack (< 128 MiB)", True,
        growth < 128)
ok = False
try:
    src = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    src.bind(("127.0.0.99", 0))
    src.settimeout(3)
    src.connect(("127.0.0.1", c.hport(1)))
    src.sendall(b"GET /v1/agent/self HTTP/1.1\r\nHost: x\r\n\r\n")
    ok = src.recv(100).startswith(b"HTTP/1.1 200")
    src.close()
except OSError:
    pass
c.check("HTTP: another client is served during the flood", True, ok)
for s in hsocks:
    s.close()
sys.exit(c.finish())

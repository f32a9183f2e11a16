"""mlwire.py — memberlist push-pull streams built by hand for the tests that
feed an agent members (test_push_pull_flood, test_crowded_queue): the subset
of msgpack memberlist writes (Go codec: old raw strings, sorted keys), so no
python3-msgpack is needed."""
import socket
import struct
import time


def mp_raw(b):
    if isinstance(b, str):
        b = b.encode()
    n = len(b)
    if n < 32:
        return bytes([0xA0 | n]) + b
    if n < 65536:
        return b"\xda" + struct.pack(">H", n) + b
    return b"\xdb" + struct.pack(">I", n) + b


def mp_uint(v):
    if v < 128:
        return bytes([v])
    if v < 256:
        return b"\xcc" + bytes([v])
    if v < 65536:
        return b"\xcd" + struct.pack(">H", v)
    return b"\xce" + struct.pack(">I", v)


def mp_map(pairs):
    out = bytes([0x80 | len(pairs)])
    for k, v in pairs:
        out += mp_raw(k) + v
    return out


def push_pull_stream(nodes, prefix, join=False):
    """[pushPullMsg] header (the join flag as given), `nodes` alive members
    named prefix-NNNNNN on 127.0.0.2-251 port 9 (nobody there), no user state."""
    parts = [b"\x06", mp_map([("Join", b"\xc3" if join else b"\xc2"), ("Nodes", mp_uint(nodes)),
                              ("UserStateLen", mp_uint(0))])]
    vsn = mp_raw(bytes([1, 5, 2, 2, 5, 4]))
    for i in range(nodes):
        ip = bytes([127, 0, 0, 2 + i % 250])
        parts.append(mp_map([("Addr", mp_raw(ip)), ("Incarnation", mp_uint(1)),
                             ("Meta", mp_raw(b"")), ("Name", mp_raw("%s-%06d" % (prefix, i))),
                             ("Port", mp_uint(9)), ("State", mp_uint(0)), ("Vsn", vsn)]))
    return b"".join(parts)


def send_stream(port, data, timeout=30.0):
    """Send one stream, read the reply until EOF; returns the reply size (or -1 on error)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            b = s.recv(65536)
            if not b:
                break
            got += len(b)
        return got
    except OSError:
        return -1
    finally:
        s.close()

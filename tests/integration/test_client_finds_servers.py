"""A client in a serverless cluster stops its server-tier tick, and a server
joining later still makes it CP.

A client that knows no server has nothing for the server tier to do, so
it stops that tier's once-a-second tick (a quarter of an idle client's
wake-ups) until a member event brings a member whose tags may name a server
(agent/server.c, tick_cb and server_member_event). On 127.0.0.1 this test:
  1. starts client c1 alone and requires its log to say the tick waits
     (within 5 s);
  2. starts a server s2 (-bootstrap-expect=1) that joins c1;
  3. requires c1 to name s2 as the leader, to take a write through it
     (200 "true") and the leader to read it ?consistent, all within 20 s:
     the member event started the tick again and the client went CP.
Every wait is bounded; agents are killed by PID at exit.
"""
import os
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Cluster  # noqa: E402

CLIENT, SERVER = 1, 2


def req(c, i, method, path, body=None):
    r = urllib.request.Request("http://%s%s" % (c.haddr(i), path), data=body, method=method)
    try:
        with urllib.request.urlopen(r, timeout=5) as resp:
            return resp.status, resp.read().strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read().strip()
    except Exception:
        return 0, b""


def log_has(c, name, text):
    try:
        with open(os.path.join(c.tmp, name + ".log"), errors="replace") as f:
            return text in f.read()
    except OSError:
        return False


def main():
    c = Cluster()
    try:
        c.start(CLIENT, "c1")
        parked = Cluster.wait(5, lambda: log_has(c, "c1", "the tick waits for a member"))
        c.check("a lone client stops its server-tier tick", True, parked)

        c.start_server(SERVER, 1, CLIENT)
        rpc = "127.0.0.1:%d" % c.sport(SERVER)
        ok = Cluster.wait(20, lambda: c.get(CLIENT, "/v1/status/leader") == rpc)
        c.check("after s2 joins, the client names it the leader", True, ok)
        c.check("... the client's log says the member event restarted the tick", True,
                log_has(c, "c1", "s2 may be a server: the tick goes on"))
        ok = Cluster.wait(20, lambda: req(c, CLIENT, "PUT", "/v1/kv/found", b"yes") ==
                          (200, b"true"))
        c.check("a write on the client goes through the leader", True, ok)
        st, body = req(c, SERVER, "GET", "/v1/kv/found?consistent&raw")
        c.check("... and the leader reads it ?consistent", (200, b"yes"), (st, body))
    finally:
        c.close()
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""junk_udp.py HOST PORT SECONDS MAX_PACKETS [RATE] — a bounded flood of junk UDP.

Sends at most MAX_PACKETS datagrams for at most SECONDS, paced to RATE
packets per second (default 20000; the test machine has two cores and the
flood must test the agent, not starve every process of CPU). The junk mixes
pure random bytes with random bytes behind each memberlist message-type
byte (ping, compound, compressed, CRC, encrypted...), so the decoder's every
first branch sees garbage. Seeded: the same run sends the same bytes.
Prints "sent N packets, B bytes in S s".
"""
import random
import socket
import sys
import time


def main():
    host, port, secs, maxp = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    rate = int(sys.argv[5]) if len(sys.argv) > 5 else 20000
    rng = random.Random(8301)
    pool = []
    for k in range(512):
        n = rng.choice((1, 2, 3, 8, 20, 64, 200, 500, 1200, 1400))
        body = bytes(rng.getrandbits(8) for _ in range(n))
        if k % 2 == 0:
            body = bytes([k // 2 % 16]) + body  # a message type byte, then junk
        pool.append(body)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    sent = nbytes = 0
    t0 = time.monotonic()
    burst = max(1, rate // 100)
    while sent < maxp:
        now = time.monotonic()
        if now - t0 >= secs:
            break
        for _ in range(burst):
            p = pool[rng.randrange(len(pool))]
            try:
                s.sendto(p, (host, port))
                sent += 1
                nbytes += len(p)
            except (BlockingIOError, ConnectionRefusedError):
                pass
        # pace: where we should be after `sent` packets
        ahead = sent / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    print("sent %d packets, %d bytes in %.1f s" % (sent, nbytes, time.monotonic() - t0))


if __name__ == "__main__":
    main()

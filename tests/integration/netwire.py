#!/usr/bin/env python3
"""A point-to-point link in user space: two TUN devices and this process copying IP packets
between them, dropping and delaying them like `tc qdisc ... netem loss P delay D` would.

Why: the test kernel has no sch_netem (CONFIG_NET_SCH_NETEM unset; `tc qdisc add ... netem`
says "Specified qdisc kind is unknown"), and no iptables/nft either. A TUN pair gives the same
thing netem on a veth pair gives: a real interface on each side (move one end into a network
namespace with `ip link set DEV netns NS`), a link that `ip link set DEV down` really cuts,
and per-direction loss and delay.

    netwire.py DEV_A DEV_B      creates both (non-persistent: they vanish when this exits),
                                prints "READY", then reads commands on stdin, one a line:
    set a2b|b2a|both LOSS DELAY_S    e.g. "set a2b 0.1 0.3" = netem loss 10% delay 300ms on A's egress
    stats                            prints "STATS a2b_pkts a2b_dropped b2a_pkts b2a_dropped"
Exits when stdin closes (or on SIGTERM). Packets keep their order (a fixed delay per
direction), as netem does without jitter.
"""
import collections
import fcntl
import os
import random
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


def tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Direction:
    def __init__(self, src, dst):
        self.src, self.dst = src, dst
        self.loss, self.delay = 0.0, 0.0
        self.queue = collections.deque()      # (release time, packet)
        self.pkts = self.dropped = 0

    def read(self, now):
        for _ in range(256):
            try:
                p = os.read(self.src, 65536)
            except (BlockingIOError, OSError):
                return
            self.pkts += 1
            if self.loss and random.random() < self.loss:
                self.dropped += 1
                continue
            if self.delay:
                self.queue.append((now + self.delay, p))
            else:
                self.send(p)

    def send(self, p):
        try:
            os.write(self.dst, p)
        except OSError:               # the far end is down (EIO) or full: the packet is lost
            self.dropped += 1

    def flush(self, now):
        while self.queue and self.queue[0][0] <= now:
            self.send(self.queue.popleft()[1])
        return self.queue[0][0] - now if self.queue else None


def main():
    a, b = tun(sys.argv[1]), tun(sys.argv[2])
    dirs = {"a2b": Direction(a, b), "b2a": Direction(b, a)}
    print("READY", flush=True)
    stdin = sys.stdin.fileno()
    buf = b""
    while True:
        waits = [w for w in (d.flush(time.monotonic()) for d in dirs.values()) if w is not None]
        r, _, _ = select.select([a, b, stdin], [], [], max(0.0, min(waits)) if waits else None)
        now = time.monotonic()
        if a in r:
            dirs["a2b"].read(now)
        if b in r:
            dirs["b2a"].read(now)
        if stdin in r:
            chunk = os.read(stdin, 4096)
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                words = line.decode().split()
                if words[:1] == ["set"]:
                    for k in (("a2b", "b2a") if words[1] == "both" else (words[1],)):
                        dirs[k].loss, dirs[k].delay = float(words[2]), float(words[3])
                    print("OK", flush=True)
                elif words[:1] == ["stats"]:
                    print("STATS %d %d %d %d" % (dirs["a2b"].pkts, dirs["a2b"].dropped,
                                                 dirs["b2a"].pkts, dirs["b2a"].dropped), flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass

"""`logs -f` streams are bounded (issue 13 item 3): in number (total and per uid), in what
each holds unread (the oldest events go, and the reader is told how many), and a closed
stream gives back what it held. 2000 streams that never read must not delay root's
`status` beyond 100 ms nor raise the daemon's RSS by more than 32 MiB."""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import socket
import tempfile
import time
from pathlib import Path

import pytest

from conftest import Daemon, binding

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to open streams as many uids")

STREAMS = 2000
PER_UID = 16            # CONTROL_MAX_STREAMS_PER_UID
TOTAL = 64              # CONTROL_MAX_STREAMS
FOLLOW = (json.dumps({"v": 1, "cmd": "logs", "follow": True, "lines": 1000}) + "\n").encode()


@pytest.fixture
def d():
    # Other uids must reach the socket: not in pytest's 0700 tmp dirs.
    root = Path(tempfile.mkdtemp(prefix="mysocketd-streams-", dir="/tmp"))
    root.chmod(0o755)
    dm = Daemon(root)
    dm.write_config(log_level="debug")
    yield dm
    dm.stop()
    shutil.rmtree(root, ignore_errors=True)


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_ms(pid):
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def request(d, obj, timeout=10):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(d.socket))
        s.sendall((json.dumps(obj) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def status_ms(d):
    t = time.monotonic()
    r = request(d, {"v": 1, "cmd": "status"})
    assert r["ok"], r
    return (time.monotonic() - t) * 1000


SAMPLER = """
import json, os, socket, sys, time
path, stop = sys.argv[1], sys.argv[2]
req = (json.dumps({"v": 1, "cmd": "status"}) + "\\n").encode()
out = []
while not os.path.exists(stop):
    t = time.monotonic()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(req)
        buf = b""
        while not buf.endswith(b"\\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    assert json.loads(buf)["ok"]
    out.append((time.monotonic() - t) * 1000)
    time.sleep(0.02)
print(json.dumps(out))
"""


def open_stream(path):
    s = socket.socket(socket.AF_UNIX)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(str(path))
    s.sendall(FOLLOW)
    return s


def spawn_holders(d, uids, per_uid, ready=None):
    """One child per uid opens per_uid streams as that uid and holds them, never reading,
    until its pipe closes. All are forked first and connect together once `ready` (a
    callable, run when every child waits) returns. Returns [(pid, write end)] after every
    child has connected."""
    kids = []
    go_r, go_w = os.pipe()
    for uid in uids:
        ready_r, ready_w = os.pipe()
        hold_r, hold_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(ready_r)
                os.close(hold_w)
                os.close(go_w)
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                os.read(go_r, 1)            # EOF when the parent says go
                socks = [open_stream(d.socket) for _ in range(per_uid)]
                os.write(ready_w, b"x")
                os.read(hold_r, 1)          # blocks until the parent closes hold_w
                del socks
            finally:
                os._exit(0)
        os.close(ready_w)
        os.close(hold_r)
        kids.append((pid, hold_w, ready_r))
    os.close(go_r)
    if ready:
        ready()
    os.close(go_w)
    for pid, _, ready_r in kids:
        assert os.read(ready_r, 1) == b"x", f"holder {pid} did not connect"
        os.close(ready_r)
    return [(pid, w) for pid, w, _ in kids]


def stop_holders(kids):
    for pid, w in kids:
        os.close(w)
    for pid, _ in kids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def churn(d, n):
    """n add/remove cycles over one connection: about 3n events for every stream."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(str(d.socket))
        f = s.makefile("rb")
        for i in range(n):
            for req in ({"v": 1, "cmd": "add", "binding": {"name": f"churn{i}", "port": 8000,
                                                           "remote_port": 20000 + i}},
                        {"v": 1, "cmd": "remove", "name": f"churn{i}"}):
                s.sendall((json.dumps(req) + "\n").encode())
                r = json.loads(f.readline())
                assert r["ok"], r


def test_2000_never_reading_streams_are_bounded(d):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    d.start()
    os.chmod(d.socket, 0o666)
    pid = d.proc.pid
    churn(d, 50)                     # a ring with events in it: every first reply is large
    base_rss = rss_kib(pid)
    base_ms = max(status_ms(d) for _ in range(5))

    # A root stream that reads nothing while the churn runs: it must hear of the drops.
    watcher = open_stream(d.socket)
    time.sleep(0.2)
    # Root asks for status from a process of its own (not behind this one's GIL and forks):
    # while 2000 streams connect at once (reported), and while ~1800 events go to each open
    # stream, more than a socket buffer holds (held to 100 ms).

    def start_sampling(name):
        stop = d.root / f"stop-{name}"
        return stop, subprocess.Popen([sys.executable, "-c", SAMPLER, str(d.socket), str(stop)],
                                      stdout=subprocess.PIPE, text=True)

    def stop_sampling(sampling):
        sampling[0].touch()
        return json.loads(sampling[1].communicate(timeout=30)[0])
    storm = None

    def storm_starts():
        nonlocal storm
        storm = start_sampling("storm"), cpu_ms(pid)
        time.sleep(0.3)
    uids = list(range(20000, 20000 + STREAMS // PER_UID))
    kids = []
    try:
        kids = spawn_holders(d, uids, PER_UID, ready=storm_starts)
        time.sleep(0.5)
        storm_cpu = cpu_ms(pid) - storm[1]
        storm_samples = stop_sampling(storm[0])
        steady = start_sampling("steady")
        # Events for 1.5 s at least: a faster machine churns 600 cycles in less, and the
        # bound wants 20 samples under load.
        t_end = time.monotonic() + 1.5
        churn(d, 600)
        while time.monotonic() < t_end:
            churn(d, 50)
        samples = stop_sampling(steady)
    except BaseException:
        stop_holders(kids)
        raise
    try:
        assert len(samples) >= 20, samples
        worst = max(samples)
        print(f"\nwhile 2000 streams connected at once (daemon CPU {storm_cpu:.0f} ms): "
              f"{len(storm_samples)} status, median {sorted(storm_samples)[len(storm_samples) // 2]:.1f} ms, "
              f"worst {max(storm_samples):.1f} ms")
        print(f"while ~1800 events went to each open stream: {len(samples)} status, median "
              f"{sorted(samples)[len(samples) // 2]:.1f} ms", end="")
        rss_streams = rss_kib(pid)
        st = request(d, {"v": 1, "cmd": "status"})
        assert st["ok"]
        print(f"\nRSS {base_rss} KiB -> {rss_streams} KiB with {len(uids) * PER_UID + 1} streams "
              f"(+{(rss_streams - base_rss) / 1024:.1f} MiB); status worst {worst:.1f} ms (idle {base_ms:.1f} ms)")
        assert worst < 100, f"status took {worst:.1f} ms with {STREAMS} streams open"
        # The connect storm itself (2000 accepts and refusals, on a shared CPU) never freezes it.
        assert max(storm_samples) < 500, storm_samples
        assert rss_streams - base_rss < 32 * 1024, f"RSS grew {rss_streams - base_rss} KiB"

        # Over the per-uid cap: refused with the reason.
        extra = [open_stream(d.socket) for _ in range(PER_UID)]
        r = json.loads(extra[-1].makefile("rb").readline())
        assert not r["ok"] and "too many streams open" in r["error"], r
        for s in extra:
            s.close()

        # The watcher lost its oldest events and is told how many.
        watcher.setblocking(True)
        watcher.settimeout(5)
        f = watcher.makefile("rb")
        first = json.loads(f.readline())
        assert first["ok"]
        notice = None
        watcher.settimeout(2)
        try:
            while notice is None:
                line = json.loads(f.readline())
                msg = line["event"]["message"]
                if "events dropped" in msg:
                    notice = msg
        except (socket.timeout, ValueError):
            pass
        assert notice and int(notice.split()[0]) > 100, notice
        print(f"watcher was told: {notice}")
    finally:
        stop_holders(kids)
        watcher.close()

    # Closed streams give back what they held: a second round does not grow RSS again.
    time.sleep(0.5)
    rss_closed = rss_kib(pid)
    kids = spawn_holders(d, uids, PER_UID)
    try:
        churn(d, 100)
    finally:
        stop_holders(kids)
    time.sleep(0.5)
    rss_again = rss_kib(pid)
    print(f"RSS after closing {rss_closed} KiB, after a second round {rss_again} KiB")
    assert rss_again - rss_closed < 4 * 1024
    assert status_ms(d) < 100


def test_streams_are_capped_per_uid_and_in_total(d):
    d.start()
    os.chmod(d.socket, 0o666)
    kids = spawn_holders(d, [30000, 30001, 30002], PER_UID)
    try:
        # 48 streams held; 16 more from root fit the total; then every uid is refused.
        mine = [open_stream(d.socket) for _ in range(TOTAL - 3 * PER_UID)]
        for s in mine:
            assert json.loads(s.makefile("rb").readline())["ok"]
        late = open_stream(d.socket)
        r = json.loads(late.makefile("rb").readline())
        assert not r["ok"] and r["error"] == "too many streams open (64); try again later", r
        late.close()
        mine.pop().close()
        time.sleep(0.2)
        again = open_stream(d.socket)
        assert json.loads(again.makefile("rb").readline())["ok"]
        again.close()
        for s in mine:
            s.close()
    finally:
        stop_holders(kids)
    # Status and one-shot logs are no streams: never refused.
    assert request(d, {"v": 1, "cmd": "logs"})["ok"]

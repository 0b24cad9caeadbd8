"""The benchmark leaves nothing running when a mode fails (issue 16 item 6).

Imports tests/bench/bench_tunnel.py and runs only its start-up path with a config that cannot
come up — never a transfer. Every process whose command line names the run's directory
(mysocketd -c DIR/..., sshd -f DIR/...) is recorded while it runs; none may remain after.
"""
import argparse
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from relay import Relay

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_tunnel  # noqa: E402

# No libssh2 release has UMAC (OpenSSH has): a relay that allows only this MAC is one
# mysocketd can never finish a key exchange with (with a non-AEAD cipher), so its bindings
# stay in backoff, retrying.
UNREACHABLE_MAC = "umac-128-etm@openssh.com"


def procs_naming(path):
    """pid -> argv of the live processes (not zombies) whose command line contains path."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(str(path).encode() in a for a in argv):
            out[int(d.name)] = [a.decode(errors="replace") for a in argv if a]
    return out


class Watcher:
    """Records every process naming path while the block runs."""

    def __init__(self, path):
        self.path, self.seen, self.stop = path, {}, threading.Event()

    def _run(self):
        while not self.stop.wait(0.05):
            self.seen.update(procs_naming(self.path))

    def __enter__(self):
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join()
        return False


def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_failed_daemon_start_stops_the_daemon(tmp_path):
    """BenchDaemon.start() against a relay port nothing listens on: mysocketd retries in
    backoff until start() gives up; start() then stops it before raising."""
    relay = Relay(tmp_path / "relay")                  # keys and port, never started
    d = bench_tunnel.BenchDaemon(tmp_path / "d", relay, [("b", 1, bench_tunnel.remote_port())])
    with Watcher(tmp_path) as w:
        with pytest.raises(RuntimeError, match="not all up"):
            d.start(timeout=3)
    daemons = [p for p, argv in w.seen.items() if argv[0].endswith("/mysocketd")]
    assert daemons, w.seen                           # it did start one
    assert d.proc.returncode is not None               # and reaped it
    assert not [p for p in w.seen if alive(p)], procs_naming(tmp_path)


def test_failed_mode_stops_daemon_and_relay(tmp_path):
    """run_mode() with a relay whose only MAC mysocketd lacks: the mode fails at the daemon's
    start, and neither the relay's sshd nor mysocketd remains."""
    args = argparse.Namespace(cipher="aes128-ctr", mac=UNREACHABLE_MAC, start_timeout=4,
                              size_mib=1, reps=1, conns=1)
    results = {"bulk": {}, "cpu": {}, "sys": {}, "fb": {}, "cipher": {}, "hwm": {}, "load": []}
    t0 = time.monotonic()
    with Watcher(tmp_path) as w:
        with pytest.raises(RuntimeError, match="not all up"):
            bench_tunnel.run_mode(str(tmp_path), "forced", args, results)
    took = time.monotonic() - t0
    # sshd retitles itself ("sshd: /usr/sbin/sshd -D -e -f ... [listener] ...").
    kinds = {"sshd" if "sshd" in argv[0].split()[0] else Path(argv[0]).name for argv in w.seen.values()}
    assert {"mysocketd", "sshd"} <= kinds, w.seen    # both were running during the mode
    # OpenSSH 10's per-connection sshd-auth leaves a moment after its listener is stopped.
    left = {}
    for _ in range(50):
        left = {p: w.seen[p] for p in w.seen if alive(p)} | procs_naming(tmp_path)
        if not left:
            break
        time.sleep(0.1)
    assert not left, left
    assert not results["bulk"], results              # no transfer ran
    assert took < 30, took
    log = (tmp_path / "forced" / "d" / "mysocketd.log").read_text(errors="replace")
    assert "received Terminated; stopping" in log, log[-2000:]


def test_failed_soak_setup_stops_relay_and_daemon(tmp_path):
    """soak.py whose daemon cannot start (a log level it rejects): the relay's sshd it had
    started is stopped, and the run ends with the daemon's error, not a hang."""
    import subprocess
    from conftest import BUILD
    soak = Path(__file__).resolve().parents[1] / "bench" / "soak.py"
    work = tmp_path / "soak"
    with Watcher(tmp_path) as w:
        p = subprocess.run([sys.executable, str(soak), "--builddir", str(BUILD), "--workdir", str(work),
                            "--results", str(tmp_path / "results"), "--minutes", "0.1", "--log-level", "bogus"],
                           capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and '"bogus" is not a log level' in p.stderr, p.stderr[-2000:]
    assert any("sshd" in argv[0].split()[0] for argv in w.seen.values()), w.seen   # the relay ran
    left = {q: w.seen[q] for q in w.seen if alive(q)} | procs_naming(tmp_path)
    assert not left, left


def children_of_us():
    """pid -> argv of our live child processes (not zombies)."""
    me = os.getpid()
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            state, ppid = (d / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if int(ppid) == me and state != "Z":
            out[int(d.name)] = [a.decode(errors="replace") for a in argv if a]
    return out


@pytest.mark.parametrize("kind", ["direct", "api"])
def test_failed_scale_scenario_stops_everything(tmp_path, kind, monkeypatch):
    """bench_scale.run_scenario() with a relay whose only MAC mysocketd lacks: the start
    fails ("0 of 3 tunnels up"), and nothing it started remains — mysocketd, the relay's
    sshd, the API emulator (API mode), the counting forwarder's thread."""
    import bench_scale
    # A cipher that needs a MAC: with an AEAD one (aes-gcm, chacha20 on libssh2 1.11) no MAC
    # is negotiated and the relay would be reachable after all.
    monkeypatch.setattr(bench_scale, "RELAY_EXTRA", bench_scale.RELAY_EXTRA + ["Ciphers aes128-ctr",
                                                                               "MACs " + UNREACHABLE_MAC])
    args = argparse.Namespace(tunnels=1, start_timeout=3, settle=0, list_calls=1, down=0, tail=0, daemon_extra=[])
    results = {"scenarios": {}}
    threads = set(threading.enumerate())
    seen = {}
    stop = threading.Event()

    def watch_children():
        while not stop.wait(0.05):
            for pid, argv in children_of_us().items():
                seen[pid] = argv or seen.get(pid, argv)    # one caught exiting keeps its name

    with Watcher(tmp_path) as w:
        t = threading.Thread(target=watch_children)
        t.start()
        try:
            with pytest.raises(RuntimeError, match="0 of 3 tunnels up"):
                bench_scale.run_scenario(str(tmp_path), kind, 3, args, results)
        finally:
            stop.set()
            t.join()
    names = {Path(a[0].split()[0]).name if "sshd" not in a[0] else "sshd" for a in seen.values() if a and a[0].split()}
    names |= {"api_emulator.py" for a in seen.values() if any(x.endswith("api_emulator.py") for x in a)}
    assert {"mysocketd", "sshd"} <= names, seen
    assert kind != "api" or "api_emulator.py" in names, seen
    left = {}
    for _ in range(50):
        left = {p: a for p, a in (seen | w.seen).items() if alive(p)} | procs_naming(tmp_path)
        if not left:
            break
        time.sleep(0.1)
    assert not left, left
    assert not [x for x in threading.enumerate() if x not in threads and x.is_alive()]
    r = results["scenarios"]
    assert len(r) == 1 and "0 of 3 tunnels up" in list(r.values())[0]["error"], r

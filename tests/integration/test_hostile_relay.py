"""No input holds the loop (issue 11 item 4): relays that flood the daemon.

A relay (or anything on the path before the host key is checked) that sends RFC 4253
pre-version text lines at full speed, and SSH peers that flood channel data, window adjusts
or global requests once the forward is granted. Throughout: `mysocketctl status` answers
within 1 s, SIGTERM stops the daemon within 5 s, and (pre-version flood) the binding goes
to backoff with an error saying what the relay did, while the bindings of other sessions
stay up. Figures are printed (run with -s).
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from conftest import MYSOCKETCTL, BlobServer, TCPService, binding, free_port_block, new_daemon, wait_for
from hostile import FloodSSHServer, HostileRelay
from relay import free_port
from test_netfaults import figure

STATUS_BOUND = 1.0
STOP_BOUND = 5.0


# The probe's loop, in a process of its own: timed in this process, a status call would
# also wait for the GIL that a flooding server thread of the test holds (paramiko sends from
# Python), and measure the test rather than the daemon.
PROBE = r"""
import os, subprocess, sys, time
stop = sys.argv.pop(1)
while not os.path.exists(stop):
    t0 = time.monotonic()
    try:
        p = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=10)
        rc, err = p.returncode, p.stderr.strip()
    except subprocess.TimeoutExpired:
        rc, err = -1, "timed out after 10 s"
    print("%.6f %d %s" % (time.monotonic() - t0, rc, err.replace("\n", " ")[:200]), flush=True)
    time.sleep(0.05)
"""


class StatusProbe:
    """Runs `mysocketctl status` back to back in a child process and keeps the answer times."""

    def __init__(self, d):
        self.worst = 0.0
        self.times = []
        self.calls = 0
        self.failures = []
        self.stop_file = d.root / "probe.stop"
        self.proc = subprocess.Popen([sys.executable, "-c", PROBE, str(self.stop_file), str(MYSOCKETCTL),
                                      "-s", str(d.socket), "status"],
                                     stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            dt, rc, err = (line.rstrip("\n").split(" ", 2) + ["", ""])[:3]
            self.calls += 1
            self.times.append(float(dt))
            self.worst = max(self.worst, float(dt))
            if rc != "0":
                self.failures.append(err)

    def median(self):
        t = sorted(self.times)
        return t[len(t) // 2] if t else 0.0

    def stop(self):
        self.stop_file.touch()          # the child ends after the call in flight
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.thread.join(15)
        return self.worst


class Sink(TCPService):
    """A local service that reads and drops everything."""

    def handle(self, c):
        try:
            while c.recv(1 << 20):
                pass
        except OSError:
            pass
        finally:
            c.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stop_timed(d):
    t0 = time.monotonic()
    os.kill(d.proc.pid, signal.SIGTERM)
    try:
        d.proc.wait(STOP_BOUND + 5)
    except Exception:
        pass
    dt = time.monotonic() - t0
    d.stop()
    return dt


@pytest.mark.parametrize("mode,said", [("preversion", "text lines"), ("ignore", "without completing it")])
def test_setup_flood_does_not_hold_the_loop(tmp_path, mode, said):
    """Before the host key is checked: text lines before the version line, or (after a
    version line) SSH_MSG_IGNORE packets that libssh2 reads and drops in its key exchange."""
    hostile = HostileRelay(mode)
    svc = BlobServer()
    d = new_daemon(tmp_path / "d")
    try:
        key = d.make_identity()
        d.write_config(binding("web", svc.port, free_port()),
                       ssh={"port": str(hostile.port), "identity_file": str(key), "host_key_check": "accept-new"},
                       backoff={"initial": "1", "max": "2"})
        t0 = time.monotonic()
        d.start(wait=False)
        wait_for(lambda: d.proc.poll() is not None or d.ctl("status", check=False).returncode == 0, timeout=10,
                 what="the control socket")
        probe = StatusProbe(d)
        b = wait_for(lambda: (lambda b: b if b["state"] == "backoff" and b["last_error"] else None)(d.binding("web")),
                     timeout=30, what="web to go to backoff")
        to_backoff = time.monotonic() - t0
        # It keeps trying (and being flooded) on every backoff.
        wait_for(lambda: hostile.connections >= 2, timeout=15, what="a second attempt")
        time.sleep(2)
        worst = probe.stop()
        stop_s = stop_timed(d)
        figure(test="setup_flood_" + mode, status_worst_s=round(worst, 3), status_calls=probe.calls,
               to_backoff_s=round(to_backoff, 2), stop_s=round(stop_s, 2), flood_mib=round(hostile.sent / 2**20, 1),
               error=b["last_error"])
        assert not probe.failures, probe.failures[:3]
        assert worst < STATUS_BOUND, worst
        assert stop_s < STOP_BOUND, stop_s
        assert said in b["last_error"], b["last_error"]
    finally:
        d.stop()
        hostile.stop()
        svc.close()


@pytest.mark.parametrize("kind", ["data", "window", "global"])
def test_ssh_flood_after_the_forward_does_not_hold_the_loop(tmp_path, kind):
    pytest.importorskip("paramiko")
    srv = FloodSSHServer(tmp_path, kind)
    svc = Sink()
    d = new_daemon(tmp_path / "d")
    try:
        key = d.make_identity()
        d.write_config(binding("web", svc.port, 40000),
                       ssh={"port": str(srv.port), "identity_file": str(key), "host_key_check": "accept-new"},
                       backoff={"initial": "1", "max": "2"})
        d.start()
        assert srv.flooding.wait(30), "the flood did not start (forward never granted)"
        probe = StatusProbe(d)
        time.sleep(6)
        worst = probe.stop()
        assert not probe.failures, probe.failures[:3]
        b = d.binding("web")
        rss = rss_kib(d.proc.pid)
        stop_s = stop_timed(d)
        figure(test="ssh_flood_" + kind, status_worst_s=round(worst, 3), status_median_s=round(probe.median(), 3),
               status_calls=probe.calls,
               stop_s=round(stop_s, 2), flood_units=srv.sent, rss_mib=round(rss / 1024, 1), state=b["state"], error=b["last_error"],
               server_errors=srv.errors[:2])
        assert srv.sent > 1000, "the flood did not flow"
        assert worst < STATUS_BOUND, worst
        assert stop_s < STOP_BOUND, stop_s
    finally:
        d.stop()
        srv.stop()
        svc.close()


def test_preversion_flood_on_one_session_leaves_the_others_up(tmp_path):
    """API mode gives every binding a session of its own, all to the same relay address: a
    proxy in front of the real sshd passes the first binding's connection through, then
    floods every new one. The first binding stays up and serves while the second is
    flooded, goes to backoff with the error, and is flooded again on every retry."""
    import sys
    from pathlib import Path
    from conftest import http_site
    from relay import Relay
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from emulator.harness import Emulator
    from test_api import EMAIL, PASSWORD, USERS, ApiDaemon

    relay = Relay(tmp_path / "relay").start()
    proxy = HostileRelay("proxy", upstream=relay.port)
    (tmp_path / "api").mkdir()
    api = Emulator(tmp_path / "api", users=USERS, relay_port_base=free_port_block()).start()
    site = http_site(tmp_path, "hello through the relay\n")
    site_port = next(site)
    d = new_daemon(tmp_path / "d", ApiDaemon, api)
    try:
        (d.state_dir / "known_hosts").write_text(relay.known_hosts_line() + "\n")
        pw = d.root / "password"
        pw.write_text(PASSWORD + "\n")
        os.chmod(pw, 0o600)

        def configure(bindings):
            d.write_config(bindings, api={"url": api.url, "email": EMAIL, "password_file": str(pw)},
                           ssh={"port": str(proxy.port), "identity_file": relay.client_key},
                           backoff={"initial": "1", "max": "2"})

        good = f'[binding "good"]\nport = {site_port}\n\n'
        configure(good)
        d.start()
        g = d.wait_state("good", "up", timeout=30)

        def get():
            with urllib.request.urlopen(f"http://127.0.0.1:{g['relay_port']}/index.html", timeout=5) as r:
                return r.read().decode()

        assert get() == "hello through the relay\n"
        proxy.mode = "preversion"
        t0 = time.monotonic()
        configure(good + f'[binding "bad"]\nport = {site_port}\n\n')
        probe = StatusProbe(d)
        d.ctl("reload")
        b = wait_for(lambda: (lambda b: b if b["state"] == "backoff" and b["last_error"] else None)(d.binding("bad")),
                     timeout=30, what="bad to go to backoff")
        to_backoff = time.monotonic() - t0
        before = proxy.connections
        wait_for(lambda: proxy.connections >= before + 1, timeout=15, what="bad's next attempt")
        assert get() == "hello through the relay\n"
        gb = d.binding("good")
        worst = probe.stop()
        stop_s = stop_timed(d)
        figure(test="preversion_flood_others_up", status_worst_s=round(worst, 3), status_calls=probe.calls,
               to_backoff_s=round(to_backoff, 2), stop_s=round(stop_s, 2), error=b["last_error"],
               good=gb["state"], good_reconnects=gb["reconnects"])
        assert not probe.failures, probe.failures[:3]
        assert worst < STATUS_BOUND, worst
        assert stop_s < STOP_BOUND, stop_s
        assert "text lines" in b["last_error"], b["last_error"]
        assert gb["state"] == "up" and gb["reconnects"] == 0, gb
    finally:
        d.stop()
        proxy.stop()
        api.stop()
        relay.stop()
        next(site, None)


def test_bulk_inflow_through_a_real_relay_does_not_hold_the_loop(relay_daemon, relay):
    """Not hostile at all: eight clients of a real sshd relay pour data into the tunnel as
    fast as they can, sshd keeps every channel's window full, and the session socket never
    runs dry, so every dispatch ends on its input budget and asks to go round again. The
    control socket still gets its turn (the budget's "again" must queue behind the sources
    already waiting, not ahead of them)."""
    d = relay_daemon
    svc = Sink()
    rp = free_port()
    d.configure_relay(relay, binding("bulk", svc.port, rp))
    d.start()
    d.wait_state("bulk", "up", timeout=20)
    stop = threading.Event()
    sent = [0]

    def pour():
        block = b"\0" * (1 << 20)
        try:
            with socket.create_connection(("127.0.0.1", rp), timeout=30) as c:
                while not stop.is_set():
                    c.sendall(block)
                    sent[0] += len(block)
        except OSError:
            pass

    pourers = [threading.Thread(target=pour, daemon=True) for _ in range(8)]
    probe = None
    try:
        for t in pourers:
            t.start()
        wait_for(lambda: sent[0] > 64 << 20, timeout=30, what="the inflow to start")
        p = probe = StatusProbe(d)
        time.sleep(6)
        worst = p.stop()
        probe = None
        b = d.binding("bulk")
        figure(test="bulk_inflow", status_worst_s=round(worst, 3), status_median_s=round(p.median(), 3),
               status_calls=p.calls, inflow_mib=sent[0] >> 20, state=b["state"])
        assert not p.failures, p.failures[:3]
        assert worst < STATUS_BOUND, worst
        assert b["state"] == "up" and b["bytes_in"] > 64 << 20, b
    finally:
        if probe:
            probe.stop()
        stop.set()
        for t in pourers:
            t.join(10)
        svc.close()

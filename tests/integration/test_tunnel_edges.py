"""Edges of the tunnel engine: an IPv6 relay and local service, a relay that refuses the log
shell, and a network change (netlink) cutting a long backoff short."""
import http.server
import os
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import Daemon, binding, new_daemon, start_http_server, wait_for
from relay import Relay, free_port


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello through the tunnel\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def get(port, host="127.0.0.1"):
    url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def test_ipv6_relay_and_ipv6_local_service(tmp_path):
    srv = start_http_server(Hello, "::1")
    relay = Relay(tmp_path / "relay", host="::1").start()
    d = new_daemon(tmp_path / "d")
    try:
        rp = free_port()
        d.configure_relay(relay, binding("v6", srv.server_address[1], rp, extra="host = ::1\n"),
                          ssh={"server": "::1"})
        d.start()
        d.wait_state("v6", "up", timeout=20)
        assert get(rp) == b"hello through the tunnel\n"
        assert d.binding("v6")["host"] == "::1"
        # accept-new recorded the relay under its IPv6 name.
        assert f"[::1]:{relay.port} ssh-ed25519 " in (d.state_dir / "known_hosts").read_text()
    finally:
        d.stop()
        relay.stop()
        srv.shutdown()
        srv.server_close()


def test_relay_that_refuses_the_shell_still_forwards(tmp_path):
    relay = Relay(tmp_path / "relay")
    with open(relay.script, "w") as f:     # the ForceCommand: no shell for you
        f.write("#!/bin/sh\necho 'This account does not get a shell.' >&2\nexit 1\n")
    relay.start()
    srv = start_http_server(Hello)
    d = new_daemon(tmp_path / "d")
    try:
        rp = free_port()
        d.configure_relay(relay, binding("web", srv.server_address[1], rp))
        d.start()
        d.wait_state("web", "up", timeout=20)
        time.sleep(3)    # the shell has come and gone; the forward must not go with it
        assert get(rp) == b"hello through the tunnel\n"
        b = d.binding("web")
        assert b["state"] == "up" and b["reconnects"] == 0
    finally:
        d.stop()
        relay.stop()
        srv.shutdown()
        srv.server_close()


class NsDaemon(Daemon):
    """mysocketd inside a network namespace (ip netns exec execs: the pid is mysocketd's)."""
    netns = None

    def command(self):
        return ["ip", "netns", "exec", self.netns] + super().command()


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    name = f"msd-nw-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name])


def test_network_change_cuts_a_long_backoff_short(tmp_path, netns):
    relay = Relay(tmp_path / "relay", netns=netns)
    d = new_daemon(tmp_path / "d", NsDaemon)
    d.netns = netns
    try:
        d.configure_relay(relay, binding("web", 8000, free_port()),
                          backoff={"initial": "600", "max": "600", "stable_after": "60"})
        d.start()
        # The relay is not there yet: the binding backs off, with full jitter somewhere in
        # [0.1, 600] s. Wait for a draw that is far away, so only the netlink event can
        # explain a quick recovery.
        def far_backoff():
            b = d.binding("web")
            if b["state"] != "backoff" or not b["next_attempt"]:
                return None
            left = time.mktime(time.strptime(b["next_attempt"], "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime())
            return b if left > 60 else None
        wait_for(far_backoff, timeout=120, what="a backoff more than 60 s long")
        relay.start()
        subprocess.run(["ip", "-n", netns, "addr", "add", "10.123.45.1/32", "dev", "lo"], check=True)
        t0 = time.monotonic()
        d.wait_state("web", "up", timeout=10)
        took = time.monotonic() - t0
        print(f"network change -> up in {took:.2f} s")
        assert "network changed: retrying 1 binding now" in d.log_text()
    finally:
        d.stop()
        relay.stop()


class CutProxy:
    """A TCP proxy in front of the relay. The first connection is cut (both sides closed)
    when the client sends its `cut_at`-th chunk; with 6 that is the USERAUTH request
    (banner, KEXINIT, ECDH init, NEWKEYS, SERVICE_REQUEST, USERAUTH_REQUEST). Later
    connections pass untouched."""

    def __init__(self, target_port, cut_at=6):
        self.target, self.cut_at, self.n = target_port, cut_at, 0
        self.lst = socket.socket()
        self.lst.bind(("127.0.0.1", 0))
        self.lst.listen(16)
        self.port = self.lst.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                a, _ = self.lst.accept()
            except OSError:
                return
            self.n += 1
            b = socket.create_connection(("127.0.0.1", self.target))
            cut = self.n == 1
            threading.Thread(target=self.pump, args=(a, b, cut), daemon=True).start()
            threading.Thread(target=self.pump, args=(b, a, False), daemon=True).start()

    def pump(self, src, dst, cut):
        chunks = 0
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                chunks += 1
                if cut and chunks == self.cut_at:
                    break
                dst.sendall(d)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.lst.close()


def test_relay_lost_during_auth_is_retried_not_a_rejected_key(tmp_path):
    relay = Relay(tmp_path / "relay").start()
    proxy = CutProxy(relay.port)
    d = new_daemon(tmp_path / "d")
    try:
        d.configure_relay(relay, binding("web", 8000, free_port()), ssh={"port": str(proxy.port)},
                          backoff={"initial": "1", "max": "1"})
        d.start()
        states = []
        wait_for(lambda: states.append(d.binding("web")["state"]) or states[-1] == "up", timeout=20,
                 what="the binding up after the cut")
        assert "failed" not in states, states
        assert proxy.n >= 2 and d.binding("web")["reconnects"] >= 1
        assert "rejected the key" not in d.log_text()
    finally:
        d.stop()
        proxy.close()
        relay.stop()


def test_log_shell_ending_mid_transfer_keeps_the_data_intact(tmp_path):
    """Issue 11 item 5: when the relay ends the log shell, the session opens a bare session
    channel for the probes (CHANNEL_OPEN) while bulk data is being written. libssh2 1.10
    keeps one half-sent packet per session: a CHANNEL_OPEN left half sent and not recorded
    as the pending call would be flushed by the next channel_write, which would then report
    its own bytes as sent without sending them. The download's hash shows whether it bites."""
    from conftest import BlobServer, pattern_digest
    from test_tunnel import download
    relay = Relay(tmp_path / "relay")
    with open(relay.script, "w") as f:     # a shell that ends on its own, mid-transfer
        f.write("#!/bin/sh\necho 'hello from relay'\nsleep 1\nexit 0\n")
    relay.start()
    blob = BlobServer()
    d = new_daemon(tmp_path / "d")
    try:
        rp = free_port()
        d.configure_relay(relay, binding("big", blob.port, rp, "edge_log = yes\n"))
        d.start()
        d.wait_state("big", "up", timeout=20)
        n = 768 << 20
        digest, got, _ = download(rp, n, timeout=120)
        assert "opening a bare session channel" in d.log_text()
        assert (got, digest) == (n, pattern_digest(n))
        b = d.binding("big")
        assert b["state"] == "up" and b["reconnects"] == 0, b
    finally:
        d.stop()
        relay.stop()
        blob.close()

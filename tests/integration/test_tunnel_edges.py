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
    when the client sends its USERAUTH request; later connections pass untouched.

    Found by the order of the exchange, not by counting recv() chunks (the client's
    packets coalesce in TCP, more so under load): the client's stream is plaintext up to
    its NEWKEYS (message 21); the first encrypted bytes after it are its SERVICE_REQUEST,
    and the client sends nothing more until the relay has answered it (SERVICE_ACCEPT). So
    the first client data after the relay has sent anything since that SERVICE_REQUEST
    went through is the USERAUTH request."""

    def __init__(self, target_port):
        self.target, self.n = target_port, 0
        self.first = {"sr_sent": False, "answered": False, "cut": False}   # the first connection
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
            if self.n == 1:
                threading.Thread(target=self.pump_client, args=(a, b, self.first), daemon=True).start()
                threading.Thread(target=self.pump_relay, args=(b, a, self.first), daemon=True).start()
            else:
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()
                threading.Thread(target=self.pump, args=(b, a), daemon=True).start()

    @staticmethod
    def _close(*socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def pump(self, src, dst):
        try:
            while d := src.recv(65536):
                dst.sendall(d)
        except OSError:
            pass
        self._close(src, dst)

    def pump_client(self, src, dst, state):
        buf, plain = b"", True        # plain: NEWKEYS not yet seen in the client's stream
        try:
            while d := src.recv(65536):
                if not plain and state["sr_sent"] and state["answered"]:
                    state["cut"] = True
                    break                                 # the USERAUTH request
                if plain:
                    buf += d
                    if b"\n" in buf and buf.startswith(b"SSH-"):
                        rest = buf[buf.index(b"\n") + 1:]
                        while len(rest) >= 6:             # uint32 length, padding length, type
                            n = int.from_bytes(rest[:4], "big")
                            if len(rest) < 4 + n:
                                break
                            typ, rest = rest[5], rest[4 + n:]
                            if typ == 21:                 # SSH_MSG_NEWKEYS
                                plain = False
                                break
                        if not plain and rest:
                            state["sr_sent"] = True       # SERVICE_REQUEST in the same chunk
                elif not state["sr_sent"]:
                    state["sr_sent"] = True
                dst.sendall(d)
        except OSError:
            pass
        self._close(src, dst)

    def pump_relay(self, src, dst, state):
        try:
            while d := src.recv(65536):
                was_sent = state["sr_sent"]
                dst.sendall(d)
                if was_sent:
                    state["answered"] = True
        except OSError:
            pass
        self._close(src, dst)

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
        assert proxy.first["cut"], proxy.first        # it was cut at the USERAUTH request
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

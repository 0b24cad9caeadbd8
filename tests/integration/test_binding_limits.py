"""Per-binding relay settings against a real OpenSSH sshd (SPEC §10, issues 14 and 15):
max_connections, remote_host with remote port 0, public_url_pattern."""
import json
import socket
import subprocess
import time

from conftest import TCPService, binding, free_port, wait_for


class EchoServer(TCPService):
    """Echoes every byte until the peer closes."""

    def handle(self, c):
        with c:
            while True:
                try:
                    b = c.recv(65536)
                except OSError:
                    return
                if not b:
                    return
                c.sendall(b)


def echo_ok(c, msg=b"ping\n"):
    c.sendall(msg)
    got = b""
    while len(got) < len(msg):
        b = c.recv(65536)
        if not b:
            return False
        got += b
    return got == msg


def closed_within(c, seconds):
    """True if the peer closes c (EOF or reset) within `seconds`."""
    c.settimeout(seconds)
    try:
        return c.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_max_connections_refuses_beyond_the_cap(relay_daemon, relay):
    d, cap = relay_daemon, 5
    echo = EchoServer()
    conns = []
    try:
        rp = free_port()
        d.configure_relay(relay, binding("capped", echo.port, rp, "max_connections = 5\n"))
        d.start()
        d.wait_state("capped", "up", timeout=20)
        # The first `cap` connections are bridged (each checked with an echo before the next).
        for _ in range(cap):
            c = socket.create_connection(("127.0.0.1", rp), timeout=5)
            conns.append(c)
            assert echo_ok(c)
        wait_for(lambda: d.binding("capped")["connections_active"] == cap, timeout=5, what="5 connections active")
        # 10 more: each is closed promptly, none hangs.
        worst = 0.0
        for _ in range(10):
            c = socket.create_connection(("127.0.0.1", rp), timeout=5)
            t = time.monotonic()
            c.sendall(b"ping\n")
            assert closed_within(c, 3), "a connection beyond max_connections was not closed"
            worst = max(worst, time.monotonic() - t)
            c.close()
        print(f"10 connections beyond the cap, each closed within {worst * 1000:.0f} ms")
        assert worst < 2
        # The first `cap` still work, untouched.
        for c in conns:
            assert echo_ok(c, b"still here\n")
        b = d.binding("capped")
        assert (b["connections_active"], b["connections_total"], b["connections_refused"], b["max_connections"]) \
            == (cap, cap, 10, cap)
        metrics = d.ctl("metrics").stdout
        assert 'mysocketd_binding_connections_refused_total{binding="capped"} 10' in metrics
        # Logged, rate-limited: 10 refusals within seconds give one line, not ten.
        lines = [ln for ln in d.log_text().splitlines() if "refused: 5 connections open (max_connections)" in ln]
        assert 1 <= len(lines) <= 2, lines
        # One closed: room for one more.
        conns.pop().close()
        wait_for(lambda: d.binding("capped")["connections_active"] == cap - 1, timeout=5, what="one closed")
        c = socket.create_connection(("127.0.0.1", rp), timeout=5)
        conns.append(c)
        assert echo_ok(c)
    finally:
        for c in conns:
            c.close()
        echo.close()


def test_max_connections_from_ctl_add_is_saved(relay_daemon, relay):
    d = relay_daemon
    d.configure_relay(relay, "")
    d.start()
    rp = free_port()
    d.ctl("add", "rt", "--port", "8000", "--remote-port", str(rp), "--max-connections", "3")
    assert d.binding("rt")["max_connections"] == 3
    ini = (d.state_dir / "bindings.d" / "rt.ini").read_text()
    assert "max_connections = 3" in ini
    r = d.ctl("add", "bad", "--port", "8000", "--remote-port", str(rp + 1), "--max-connections", "x", check=False)
    assert r.returncode == 2 and "--max-connections" in r.stderr


def test_max_connections_config_errors_name_file_and_line(relay_daemon, relay):
    d = relay_daemon
    d.configure_relay(relay, binding("web", 8000, 9000, "max_connections = -1\n"))
    r = subprocess.run([*d.command(), "--check-config"], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert f"{d.config}:" in r.stderr and "max_connections" in r.stderr, r.stderr

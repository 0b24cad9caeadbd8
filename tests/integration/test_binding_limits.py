"""Per-binding relay settings against a real OpenSSH sshd (SPEC §10, issues 14 and 15):
max_connections, remote_host with remote port 0, public_url_pattern."""
import json
import socket
import subprocess
import time
import urllib.request

from conftest import Echo, binding, free_port, wait_for


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
    echo = Echo()
    conns = []
    try:
        rp = free_port()
        mport = free_port()
        d.configure_relay(relay, binding("capped", echo.port, rp, "max_connections = 5\n"))
        d.config.write_text(d.config.read_text().replace("[daemon]\n", f"[daemon]\nmetrics_listen = 127.0.0.1:{mport}\n"))
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
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/health", timeout=5) as resp:
            h = json.loads(resp.read())
        assert (h["connections"], h["max_connections"], h["connections_capacity_percent"]) == (cap, cap, 100), h
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


def listening(port):
    """The local addresses some process listens on at TCP `port` (ss -ltn)."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return sorted({ln.split()[3].rsplit(":", 1)[0] for ln in out.splitlines() if ln.strip()})


def echo_via(host, port):
    try:
        with socket.create_connection((host, port), timeout=3) as c:
            return echo_ok(c)
    except OSError:
        return False


def echo_via_localhost(port):
    """Through a forward for `localhost` with a port the relay chose: sshd binds it on ::1
    and 127.0.0.1, and keeps the forward when one of the two is taken (an outgoing
    connection of this machine may hold that port on 127.0.0.1): either answering is right."""
    return echo_via("127.0.0.1", port) or echo_via("::1", port)


def test_remote_host_all_addresses_vs_localhost(tmp_path, relay_daemon):
    from relay import Relay
    d, echo = relay_daemon, Echo()
    r = Relay(tmp_path / "gwrelay", extra_config=["GatewayPorts clientspecified"]).start()
    try:
        p_any, p_lo = free_port(), free_port()
        d.configure_relay(r, binding("any", echo.port, p_any, "remote_host = 0.0.0.0\n") +
                          binding("lo", echo.port, p_lo))
        d.start()
        d.wait_state("any", "up", timeout=20)
        d.wait_state("lo", "up", timeout=20)
        print("relay listens:", p_any, listening(p_any), p_lo, listening(p_lo))
        assert listening(p_any) == ["0.0.0.0"]
        assert "0.0.0.0" not in listening(p_lo) and "127.0.0.1" in listening(p_lo)
        # 127.0.0.2 is a loopback address other than 127.0.0.1: only 0.0.0.0 answers on it.
        assert echo_via("127.0.0.2", p_any) and echo_via("127.0.0.1", p_any)
        assert echo_via("127.0.0.1", p_lo) and not echo_via("127.0.0.2", p_lo)
        assert d.binding("any")["remote_host"] == "0.0.0.0" and d.binding("lo")["remote_host"] is None
    finally:
        d.stop()
        r.stop()
        echo.close()


def test_remote_port_zero_records_the_port_the_relay_chose(tmp_path, relay_daemon):
    from relay import Relay
    d, echo = relay_daemon, Echo()
    r = Relay(tmp_path / "dbgrelay", log_level="DEBUG1").start()
    try:
        d.configure_relay(r, binding("auto", echo.port, 0, "remote_host = myname.example\n"))
        d.start()
        d.wait_state("auto", "up", timeout=20)
        b = d.binding("auto")
        port = b["relay_port"]
        print("relay chose port", port, "listening on", listening(port))
        assert port and b["remote_port"] is None and b["remote_host"] == "myname.example"
        assert {"127.0.0.1", "[::1]"} & set(listening(port)), listening(port)   # loopback only
        assert echo_via_localhost(port)
        # The name went to the relay as given.
        assert "tcpip-forward listen myname.example port 0" in r.log()
        assert "-> relay 127.0.0.1 port %d" % port in d.log_text()
    finally:
        d.stop()
        r.stop()
        echo.close()


def test_remote_host_from_ctl_add_is_saved(relay_daemon, relay):
    d = relay_daemon
    d.configure_relay(relay, "")
    d.start()
    d.ctl("add", "rh", "--port", "8000", "--remote-port", str(free_port()), "--remote-host", "0.0.0.0")
    assert d.binding("rh")["remote_host"] == "0.0.0.0"
    assert "remote_host = 0.0.0.0" in (d.state_dir / "bindings.d" / "rh.ini").read_text()
    r = d.ctl("add", "bad", "--port", "8000", "--remote-port", str(free_port()), "--remote-host", "a b", check=False)
    assert r.returncode != 0 and "remote_host" in r.stderr


def test_remote_port_zero_from_ctl_add(relay_daemon, relay):
    d, echo = relay_daemon, Echo()
    try:
        d.configure_relay(relay, "")
        d.start()
        d.ctl("add", "any", "--port", str(echo.port), "--remote-port", "0")
        assert "remote_port = 0" in (d.state_dir / "bindings.d" / "any.ini").read_text()
        d.wait_state("any", "up", timeout=20)
        port = d.binding("any")["relay_port"]
        assert port and echo_via_localhost(port)
        # Kept across a restart: asks for port 0 again and shows what it got.
        d.stop()
        d.start()
        d.wait_state("any", "up", timeout=20)
        port = d.binding("any")["relay_port"]
        assert port and echo_via_localhost(port)
    finally:
        echo.close()


URL_SHELL = """#!/bin/sh
echo "Welcome to the tunnel service"
echo "Your URL: https://abc.example.net"
exec cat >/dev/null
"""


def test_public_url_pattern_reads_the_relays_line(tmp_path, relay_daemon):
    from relay import Relay
    d, echo = relay_daemon, Echo()
    r = Relay(tmp_path / "urlrelay")
    with open(r.script, "w") as f:        # the ForceCommand: prints the URL, then waits
        f.write(URL_SHELL)
    r.start()
    try:
        d.configure_relay(r, binding("svc", echo.port, free_port(), "public_url_pattern = Your URL: (https://[^ ]+)\n") +
                          binding("plain", echo.port, free_port()))
        d.start()
        d.wait_state("svc", "up", timeout=20)
        b = wait_for(lambda: (lambda b: b if b["public_url"] else None)(d.binding("svc")), timeout=10,
                     what="public_url from the relay's line")
        assert b["public_url"] == "https://abc.example.net"
        shown = d.ctl("show", "svc").stdout
        assert "https://abc.example.net" in shown
        # Without a pattern nothing is read from the lines.
        assert d.binding("plain")["public_url"] is None
        assert "public URL from the relay: https://abc.example.net" in d.log_text()
    finally:
        d.stop()
        r.stop()
        echo.close()


def test_public_url_pattern_errors_name_file_and_line(relay_daemon, relay):
    d = relay_daemon
    for pattern, why in (("Your URL: (https://", "is not a POSIX extended regular expression"),
                         ("https://[^ ]+", "has no group")):
        d.configure_relay(relay, binding("web", 8000, 9000, f"public_url_pattern = {pattern}\n"))
        r = subprocess.run([*d.command(), "--check-config"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 78
        assert f'{d.config}:' in r.stderr and '[binding "web"] public_url_pattern: ' in r.stderr and why in r.stderr, \
            r.stderr

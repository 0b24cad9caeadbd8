"""What the daemon says about the relay and the local service, against a real sshd (issue 13
items 10, 11, 12 and the known_hosts / identity file part of item 4):

- a forward the relay refuses names both causes OpenSSH cannot tell apart (port in use,
  PermitListen/AllowTcpForwarding);
- a dead local service is counted (local_errors), named (last_local_error) and shown in
  list's ERROR column while the binding stays up; status counts bindings per state;
- edge_log: in direct mode no shell runs on the relay unless edge_log = yes;
- a FIFO as known_hosts or identity_file is a `file: problem` error, never a hung loop.
"""
import http.server
import os
import re
import socket
import time

from conftest import binding, free_port, new_daemon, start_http_server, wait_for
from relay import Relay

REFUSED = ("relay refused to listen on port {}: the port is in use there, or its "
           "PermitListen/AllowTcpForwarding forbids it")


def hold_port(rp):
    """Listens on rp on both loopback addresses: the relay binds "localhost", both families."""
    held = []
    for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        s = socket.socket(fam)
        s.bind((addr, rp))
        s.listen()
        held.append(s)
    return held


def refused_error(d, name, rp):
    return wait_for(lambda: (lambda b: b if b["last_error"] == REFUSED.format(rp) else None)(d.binding(name)),
                    timeout=20, what=f"{name}'s refused-forward error")


def test_forward_refused_by_permitlisten_names_both_causes(tmp_path):
    rp, allowed = free_port(), free_port()
    relay = Relay(tmp_path / "relay", extra_config=[f"PermitListen localhost:{allowed}"]).start()
    d = new_daemon(tmp_path / "d")
    try:
        d.configure_relay(relay, binding("web", 8000, rp) + binding("ok", 8001, allowed))
        d.start()
        d.wait_state("ok", "up")
        b = refused_error(d, "web", rp)
        assert b["state"] in ("backoff", "connecting"), b
        assert "old session" not in d.log_text()
        # The relay's side of it: sshd refused by policy, not because the port was taken.
        assert f"remote forward to host localhost port {rp}, but the request was denied" in relay.log(), relay.log()[-2000:]
        assert "states" in d.json("status") and d.json("status")["states"]["up"] == 1
    finally:
        d.stop()
        relay.stop()


def test_forward_refused_because_the_port_is_in_use_names_both_causes(tmp_path):
    rp = free_port()
    relay = Relay(tmp_path / "relay").start()
    held = hold_port(rp)
    d = new_daemon(tmp_path / "d")
    try:
        d.configure_relay(relay, binding("web", 8000, rp))
        d.start()
        refused_error(d, "web", rp)
        # Freed: the next attempt gets the port.
        for s in held:
            s.close()
        held = []
        b = d.wait_state("web", "up", timeout=20)
        assert b["last_error"] is None, b
    finally:
        for s in held:
            s.close()
        d.stop()
        relay.stop()


def relay_shells(relay):
    """The relay's ForceCommand processes (one per shell session sshd runs: the script, then
    the tail it execs, both with the emit file as argument)."""
    n = 0
    for pid in relay._children():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                n += relay.emit_file.encode() in f.read()
        except FileNotFoundError:
            pass
    return n


def shell_requests(relay):
    return len(re.findall(r"session_input_channel_req: session \d+ req shell", relay.log()))


def test_edge_log_auto_opens_no_shell_in_direct_mode_yes_does(tmp_path):
    relay = Relay(tmp_path / "relay", log_level="DEBUG1").start()
    site = start_http_server(http.server.SimpleHTTPRequestHandler)
    d = new_daemon(tmp_path / "d")
    try:
        rp_auto, rp_yes = free_port(), free_port()
        d.configure_relay(relay, binding("auto", site.server_address[1], rp_auto))
        d.start()
        d.wait_state("auto", "up")
        with socket.create_connection(("127.0.0.1", rp_auto), timeout=5) as c:
            c.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
            assert c.recv(65536).startswith(b"HTTP/1.0")
        time.sleep(5)      # two keepalive intervals: the probes ran on the bare channel
        assert d.binding("auto")["state"] == "up"
        assert shell_requests(relay) == 0, relay.log()[-3000:]
        assert relay_shells(relay) == 0
        assert "hello from relay" not in d.log_text()

        p = d.ctl("add", "x", "--port", "1", "--remote-port", str(free_port()), "--edge-log", "maybe", check=False)
        assert p.returncode == 2 and "--edge-log" in p.stderr, p.stderr
        d.ctl("add", "loud", "--port", str(site.server_address[1]), "--remote-port", str(rp_yes), "--edge-log", "yes")
        d.wait_state("loud", "up")
        wait_for(lambda: "hello from relay" in d.log_text(), timeout=10, what="the relay's banner")
        assert shell_requests(relay) == 1, relay.log()[-3000:]
        assert relay_shells(relay) == 1
        saved = (d.state_dir / "bindings.d" / "loud.ini").read_text()
        assert "edge_log = yes" in saved, saved
        # Kept across a restart: the saved binding opens its shell again.
        d.stop()
        wait_for(lambda: relay_shells(relay) == 0, timeout=10, what="the old shell to end")
        d.start()
        d.wait_state("loud", "up")
        wait_for(lambda: relay_shells(relay) == 1, timeout=10, what="the saved binding's shell")
        assert shell_requests(relay) == 2
    finally:
        d.stop()
        site.shutdown()
        relay.stop()


def test_a_dead_local_service_is_counted_and_shown_while_up(tmp_path):
    relay = Relay(tmp_path / "relay").start()
    d = new_daemon(tmp_path / "d")
    local = free_port()       # nothing listens there yet
    held = []
    site = None
    try:
        rp, rp_busy = free_port(), free_port()
        held = hold_port(rp_busy)      # keeps "busy" refused: it stays in backoff
        d.configure_relay(relay, binding("web", local, rp) + binding("busy", 8009, rp_busy))
        d.start()
        d.wait_state("web", "up")
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", rp), timeout=5) as c:
                c.settimeout(5)
                assert c.recv(100) == b""        # the relay's connection is closed
        b = wait_for(lambda: (lambda b: b if b["local_errors"] >= 3 else None)(d.binding("web")),
                     timeout=10, what="three local errors")
        assert b["state"] == "up" and b["last_error"] is None, b
        assert b["last_local_error"] == f"cannot connect to 127.0.0.1:{local}: Connection refused", b
        assert b["local_failing"] is True
        row = [ln for ln in d.ctl("list").stdout.splitlines() if ln.startswith("web ")][0]
        assert " up " in row and "cannot connect to 127.0.0.1:%d: Connection refused" % local in row, row
        lst = {x["name"]: x for x in d.json("list")}
        assert {"local_errors", "last_local_error"} <= set(lst["web"]) and lst["busy"]["local_errors"] == 0

        st = wait_for(lambda: (lambda s: s if s["states"]["backoff"] + s["states"]["connecting"] == 1 else None)(
            d.json("status")), timeout=20, what="status states")
        assert st["states"]["up"] == 1 and sum(st["states"].values()) == 2, st
        text = d.ctl("status").stdout
        assert re.search(r"^states:\s+up 1, (backoff|connecting) 1$", text, re.M), text

        # The service comes back: the ERROR column clears, the last error and the count stay.
        site = start_http_server(http.server.SimpleHTTPRequestHandler, port=local)
        with socket.create_connection(("127.0.0.1", rp), timeout=5) as c:
            c.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
            assert c.recv(100).startswith(b"HTTP/1.0")
        b = d.binding("web")
        assert b["local_failing"] is False and b["local_errors"] == 3, b
        assert b["last_local_error"].startswith("cannot connect to"), b
        row = [ln for ln in d.ctl("list").stdout.splitlines() if ln.startswith("web ")][0]
        assert "cannot connect" not in row, row
        assert "cannot connect" in d.ctl("show", "web").stdout
    finally:
        for s in held:
            s.close()
        if site:
            site.shutdown()
        d.stop()
        relay.stop()


def test_a_local_service_that_resets_connections_is_counted(tmp_path):
    relay = Relay(tmp_path / "relay").start()
    d = new_daemon(tmp_path / "d")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    try:
        rp = free_port()
        d.configure_relay(relay, binding("web", srv.getsockname()[1], rp))
        d.start()
        d.wait_state("web", "up")
        with socket.create_connection(("127.0.0.1", rp), timeout=5) as c:
            c.sendall(b"x")
            srv.settimeout(5)
            a, _ = srv.accept()
            a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            a.close()      # RST
            c.settimeout(5)
            try:
                c.recv(100)
            except ConnectionResetError:
                pass
        b = wait_for(lambda: (lambda b: b if b["local_errors"] == 1 else None)(d.binding("web")),
                     timeout=10, what="the reset counted")
        assert "dropped a connection: Connection reset by peer" in b["last_local_error"], b
        assert b["state"] == "up"
    finally:
        srv.close()
        d.stop()
        relay.stop()


def test_fifo_as_known_hosts_or_identity_file_is_a_file_problem(tmp_path):
    relay = Relay(tmp_path / "relay").start()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    try:
        for key, name in (("known_hosts", "kh"), ("identity_file", "id")):
            d = new_daemon(tmp_path / name)
            try:
                d.configure_relay(relay, binding("web", 8000, free_port()), ssh={key: str(fifo)})
                d.start()
                b = wait_for(lambda: (lambda b: b if b["last_error"] else None)(d.binding("web")),
                             timeout=20, what="the file's error")
                err = b["last_error"]
                assert str(fifo) in err and "is a FIFO, not a regular file" in err, err
                # The loop never blocked: status answers fast, again and again.
                for _ in range(5):
                    t = time.monotonic()
                    d.ctl("status")
                    assert time.monotonic() - t < 1.0
                assert d.proc.poll() is None
            finally:
                d.stop()
    finally:
        relay.stop()

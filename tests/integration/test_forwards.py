"""Local forwards ([forward "NAME"], `mysocketctl forward ...`, SPEC section 10) against a real
OpenSSH sshd: the daemon listens on `listen` and opens each accepted connection as a
direct-tcpip channel through the relay session to `target`.

Big transfers both ways (sha256 checked), 200 connections at once, the relay restarting, a
relay that refuses direct-tcpip (AllowTcpForwarding remote, the tests' default), persistence
across a daemon restart, and bad input.
"""
import hashlib
import os
import selectors
import socket
import threading
import time

import pytest

from conftest import (BlobServer, PATTERN, binding, free_port, pattern_digest, report_on_failure,
                      send_pattern, wait_for)
from relay import Relay

TRANSFER = 64 * 1024 * 1024


def forward(name, listen_port, target_port, target_host="127.0.0.1"):
    return f'[forward "{name}"]\nlisten = 127.0.0.1:{listen_port}\ntarget = {target_host}:{target_port}\n\n'


def fwd(d, name):
    for f in d.json("forward", "ls"):
        if f["name"] == name:
            return f
    return None


def wait_fwd(d, name, state, timeout=20):
    return wait_for(lambda: (lambda f: f if f and f["state"] == state else None)(fwd(d, name)),
                    timeout=timeout, what=f"forward {name} to be {state}")


def echo_once(port, payload=b"ping\n", timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(payload)
        got = b""
        while len(got) < len(payload):
            b = c.recv(65536)
            if not b:
                break
            got += b
        return got


def closed_at_once(port, timeout=10):
    """Connects and returns how long until the daemon closed the connection (EOF or reset)."""
    t = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        try:
            c.sendall(b"x")
            b = c.recv(100)
            assert b == b"", f"expected a closed connection, got {b!r}"
        except ConnectionResetError:
            pass
    return time.monotonic() - t


@pytest.fixture
def open_relay(tmp_path, request):
    """A relay that allows local forwards (direct-tcpip)."""
    r = Relay(tmp_path / "relay", extra_config=["AllowTcpForwarding yes"], log_level=os.environ.get("FWD_SSHD_LOG", "DEBUG1")).start()
    yield r
    r.stop()
    report_on_failure(request, "sshd log", r.log)


@pytest.fixture
def blob():
    b = BlobServer()
    yield b.port
    b.close()


class SelectEcho:
    """The forwards' target: an echo server on 127.0.0.1 in one thread with a selector, so
    that 200 connections at once cost no thread each (a thread per connection, under load,
    once left one accepted connection unserved). Counts what it served."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ)
        self.wake_r, self.wake_w = socket.socketpair()
        self.sel.register(self.wake_r, selectors.EVENT_READ)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        pending = {}                      # socket -> bytes not yet echoed
        while True:
            for key, ev in self.sel.select():
                s = key.fileobj
                if s is self.wake_r:
                    for c in list(pending):
                        c.close()
                    return
                if s is self.sock:
                    while True:
                        try:
                            c, _ = self.sock.accept()
                        except BlockingIOError:
                            break
                        c.setblocking(False)
                        self.accepted += 1
                        pending[c] = b""
                        self.sel.register(c, selectors.EVENT_READ)
                    continue
                if ev & selectors.EVENT_WRITE and pending[s]:
                    try:
                        n = s.send(pending[s])
                    except OSError:
                        n = len(pending[s])
                    pending[s] = pending[s][n:]
                if ev & selectors.EVENT_READ:
                    try:
                        b = s.recv(65536)
                    except OSError:
                        b = b""
                    if not b and not pending[s]:
                        self.sel.unregister(s)
                        del pending[s]
                        s.close()
                        continue
                    pending[s] += b
                if s in pending:
                    self.sel.modify(s, selectors.EVENT_READ | (selectors.EVENT_WRITE if pending[s] else 0))

    def close(self):
        self.wake_w.send(b"x")
        self.thread.join(5)
        self.sel.unregister(self.sock)
        self.sock.close()
        self.wake_r.close()
        self.wake_w.close()


@pytest.fixture
def echo():
    e = SelectEcho()
    yield e
    e.close()


def test_64mib_both_ways_intact(open_relay, relay_daemon, blob):
    d, lp = relay_daemon, free_port()
    d.configure_relay(open_relay, forward("blob", lp, blob))
    d.start()
    wait_fwd(d, "blob", "up")

    with socket.create_connection(("127.0.0.1", lp), timeout=120) as c:
        t = time.monotonic()
        c.sendall(b"SEND %d\n" % TRANSFER)
        h, got = hashlib.sha256(), 0
        while True:
            b = c.recv(1 << 20)
            if not b:
                break
            h.update(b)
            got += len(b)
        down_s = time.monotonic() - t
    assert got == TRANSFER and h.hexdigest() == pattern_digest(TRANSFER)

    with socket.create_connection(("127.0.0.1", lp), timeout=120) as c:
        t = time.monotonic()
        c.sendall(b"RECV %d\n" % TRANSFER)
        send_pattern(c, TRANSFER)
        c.shutdown(socket.SHUT_WR)
        line = c.makefile().readline().strip()
        up_s = time.monotonic() - t
    assert line == pattern_digest(TRANSFER)

    print(f"\nlocal forward 64 MiB: target->client {TRANSFER / down_s / 1e6:.1f} MB/s, "
          f"client->target {TRANSFER / up_s / 1e6:.1f} MB/s")
    f = wait_for(lambda: (lambda f: f if f["connections_active"] == 0 else None)(fwd(d, "blob")),
                 what="both connections closed")
    assert f["connections_total"] == 2
    assert f["bytes_in"] >= TRANSFER and f["bytes_out"] >= TRANSFER
    assert f["source"] == "config" and f["target"] == f"127.0.0.1:{blob}"


def test_200_concurrent_connections(open_relay, relay_daemon, echo):
    echo_srv, echo = echo, echo.port
    d, lp = relay_daemon, free_port()
    d.configure_relay(open_relay, forward("echo", lp, echo))
    d.start()
    wait_fwd(d, "echo", "up")
    n, size = 200, 64 * 1024
    results, errors = [None] * n, []
    barrier = threading.Barrier(n)

    def client(i):
        try:
            barrier.wait(30)
            payload = bytes([i % 256]) + PATTERN[:size - 1]
            with socket.create_connection(("127.0.0.1", lp), timeout=60) as c:
                me = c.getsockname()[1]
                c.sendall(payload)
                c.shutdown(socket.SHUT_WR)
                got = b""
                while True:
                    b = c.recv(65536)
                    if not b:
                        break
                    got += b
            results[i] = got == payload
            if got != payload:
                errors.append(f"{i} (port {me}): got {len(got)} bytes of {len(payload)}, first difference at "
                              f"{next((k for k in range(min(len(got), len(payload))) if got[k] != payload[k]), None)}")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"{i}: {e!r}")

    t = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    took = time.monotonic() - t
    assert not errors, (errors[:5], fwd(d, "echo"), echo_srv.accepted)
    assert all(results), f"{results.count(False)} of {n} connections got wrong bytes"
    print(f"\nlocal forward: {n} concurrent connections x 64 KiB echoed in {took:.2f} s")
    f = wait_for(lambda: (lambda f: f if f["connections_active"] == 0 else None)(fwd(d, "echo")),
                 what="every connection closed")
    assert f["connections_total"] == n and f["connections_refused"] == 0


def test_relay_restart(open_relay, relay_daemon, echo):
    echo = echo.port
    d, lp = relay_daemon, free_port()
    d.configure_relay(open_relay, forward("echo", lp, echo))
    d.start()
    wait_fwd(d, "echo", "up")
    assert echo_once(lp) == b"ping\n"

    open_relay.kill()
    f = wait_for(lambda: (lambda f: f if f["state"] != "up" else None)(fwd(d, "echo")), what="forward down")
    assert f["last_error"]
    # The listener stays; a new connection is closed at once while the relay is away.
    assert closed_at_once(lp) < 2
    assert fwd(d, "echo")["connections_unserved"] >= 1

    open_relay.restart()
    wait_fwd(d, "echo", "up", timeout=30)
    assert echo_once(lp, b"after restart\n") == b"after restart\n"
    assert fwd(d, "echo")["reconnects"] >= 1


def test_relay_refuses_direct_tcpip(relay, relay_daemon, echo):
    echo = echo.port
    """The tests' relay has AllowTcpForwarding remote: -R works, direct-tcpip is refused."""
    d, lp, rp = relay_daemon, free_port(), free_port()
    d.configure_relay(relay, binding("web", echo, rp) + forward("db", lp, echo))
    d.start()
    d.wait_state("web", "up")
    wait_fwd(d, "db", "up")

    for _ in range(20):
        assert closed_at_once(lp) < 5
    f = wait_for(lambda: (lambda f: f if f["connections_refused"] >= 20 else None)(fwd(d, "db")),
                 what="20 refusals counted")
    assert "prohibited" in f["last_refusal"], f["last_refusal"]
    assert f["state"] == "up" and f["connections_active"] == 0
    log = d.log_text()
    lines = [ln for ln in log.splitlines() if "refused a channel to 127.0.0.1:%d" % echo in ln]
    assert 1 <= len(lines) <= 3, lines        # logged, and rate-limited
    # The binding on the same session is undisturbed.
    assert d.binding("web")["state"] == "up"
    assert echo_once(rp, b"still here\n") == b"still here\n"
    ls = d.ctl("forward", "ls").stdout
    assert "db" in ls and "prohibited" in ls


def test_persisted_across_restart(open_relay, relay_daemon, echo):
    echo = echo.port
    d, lp = relay_daemon, free_port()
    d.configure_relay(open_relay, "")
    d.start()
    out = d.ctl("forward", "add", "db", "--listen", f"127.0.0.1:{lp}", "--target", f"127.0.0.1:{echo}").stdout
    assert "added" in out
    path = d.state_dir / "forwards.d" / "db.ini"
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
    wait_fwd(d, "db", "up")
    assert echo_once(lp) == b"ping\n"

    d.stop()
    d.start()
    f = wait_fwd(d, "db", "up")
    assert f["source"] == "runtime" and f["defined_at"] == str(path)
    assert echo_once(lp, b"again\n") == b"again\n"

    d.ctl("forward", "rm", "db")
    assert not path.exists() and fwd(d, "db") is None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", lp), timeout=2).close()
    d.stop()
    d.start()
    assert d.json("forward", "ls") == []


def test_bad_input_is_refused_and_loses_nothing(open_relay, relay_daemon, echo):
    echo = echo.port
    d, lp = relay_daemon, free_port()
    d.configure_relay(open_relay, forward("cfg", lp, echo))
    d.start()
    wait_fwd(d, "cfg", "up")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    busy_port = busy.getsockname()[1]
    good = free_port()
    cases = [
        (["add", "x", "--listen", f"127.0.0.1:{busy_port}", "--target", f"127.0.0.1:{echo}"], 1,
         "Address already in use"),
        (["add", "x", "--listen", f"127.0.0.1:{lp}", "--target", f"127.0.0.1:{echo}"], 1, "already used by forward"),
        (["add", "x", "--listen", "localhost:5433", "--target", f"127.0.0.1:{echo}"], 1,
         "is not an address to listen on"),
        (["add", "x", "--listen", f"127.0.0.1:{good}", "--target", "nocolon"], 1, "is not HOST:PORT"),
        (["add", "x", "--listen", f"127.0.0.1:{good}", "--target", "db:99999"], 1, "is not HOST:PORT"),
        (["add", "cfg", "--listen", f"127.0.0.1:{good}", "--target", f"127.0.0.1:{echo}"], 1, "already exists"),
        (["add", "x", "--listen", f"127.0.0.1:{good}"], 2, "--target"),
        (["add", "bad name", "--listen", f"127.0.0.1:{good}", "--target", "a:1"], 2, "not a valid forward name"),
        (["rm", "cfg"], 1, "is defined in"),
        (["rm", "nope"], 1, "no forward named"),
    ]
    try:
        for args, rc, msg in cases:
            p = d.ctl("forward", *args, check=False)
            assert p.returncode == rc and msg in p.stderr, (args, p.returncode, p.stderr)
    finally:
        busy.close()
    assert [f["name"] for f in d.json("forward", "ls")] == ["cfg"]
    assert sorted(os.listdir(d.state_dir / "forwards.d")) == []
    assert echo_once(lp) == b"ping\n"

    # The same mistakes in the config: file:line, section and key, exit 78.
    d.config.write_text(d.config.read_text() + '[forward "cfg"]\nlisten = 127.0.0.1:1\ntarget = a:1\n\n'
                        '[forward "t"]\nlisten = nowhere\ntarget = x\n')
    import subprocess
    from conftest import MYSOCKETD
    p = subprocess.run([str(MYSOCKETD), "--check-config", "-c", str(d.config)], capture_output=True, text=True)
    assert p.returncode == 78
    assert 'forward "cfg" is already defined at' in p.stderr
    assert '[forward "t"] listen: "nowhere" is not an address to listen on' in p.stderr
    assert '[forward "t"] target: "x" is not HOST:PORT' in p.stderr
    assert "missing" not in p.stderr          # a bad value is not reported missing on top
    # A reload with it keeps the running forwards.
    r = d.ctl("reload", check=False)
    assert r.returncode == 1
    assert echo_once(lp, b"kept\n") == b"kept\n"

"""Shared fixtures: the real mysocketd and mysocketctl binaries, run in a temp dir, and the
pieces the tunnel tests share (a relay, a local web site, a blob service, config snippets).

Binaries come from $MYSOCKETD_BUILDDIR (default: <repo>/build, where tools/test.sh
builds). Every process a test starts is stopped by pid when the test ends.
"""
import ctypes
import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from relay import Relay, free_port, free_port_block  # noqa: F401  (tests import them from here)

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MYSOCKETD_BUILDDIR", REPO / "build"))
MYSOCKETD = BUILD / "mysocketd"
MYSOCKETCTL = BUILD / "mysocketctl"
PATTERN = bytes(range(256)) * 256          # 64 KiB of known bytes


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def read_line(s):
    """Reads from socket s up to a newline (or its end); returns the bytes."""
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def binding(name, port, remote_port=None, extra=""):
    """One [binding] section; without remote_port (API mode) it has no remote_port line."""
    rp = f"remote_port = {remote_port}\n" if remote_port is not None else ""
    return f'[binding "{name}"]\nport = {port}\n{rp}{extra}\n'


def send_pattern(c, n):
    """Sends n bytes of PATTERN repeated on socket c."""
    left = n
    while left:
        b = PATTERN[:min(left, len(PATTERN))]
        c.sendall(b)
        left -= len(b)


def pattern_digest(n):
    """The sha256 of n bytes of PATTERN repeated."""
    h = hashlib.sha256()
    full, rest = divmod(n, len(PATTERN))
    for _ in range(full):
        h.update(PATTERN)
    h.update(PATTERN[:rest])
    return h.hexdigest()


class Daemon:
    """One mysocketd in its own directory: config, state dir, control socket, log."""

    def __init__(self, root: Path, api=None):
        self.root = root
        self.state_dir = root / "state"
        self.socket = root / "control.sock"
        self.config = root / "mysocketd.ini"
        self.log = root / "mysocketd.log"
        self.proc = None
        self.api = api

    def base_config(self, log_level="debug", ssh=None, backoff=None, daemon_extra="", api=None):
        """The [daemon] [ssh] [backoff] sections; `ssh` is a dict of [ssh] overrides."""
        ssh_conf = {
            "server": "127.0.0.1",
            "port": "1",  # nothing listens: bindings stay in backoff unless a relay is given
            "user": "root",
            "identity_file": str(self.root / "id_ed25519"),
            "known_hosts": str(self.state_dir / "known_hosts"),
            "keepalive_interval": "2",
            "keepalive_count": "2",
        }
        if api is not None:
            ssh_conf.pop("user")
        ssh_conf.update(ssh or {})
        bo = {"initial": "1", "max": "2", "stable_after": "5"}
        bo.update(backoff or {})
        text = (f"[daemon]\nstate_dir = {self.state_dir}\ncontrol_socket = {self.socket}\n"
                f"control_group = root\nlog_level = {log_level}\n{daemon_extra}\n")
        if api is not None:
            text += "[api]\n" + "".join(f"{k} = {v}\n" for k, v in api.items()) + "\n"
        text += "[ssh]\n" + "".join(f"{k} = {v}\n" for k, v in ssh_conf.items()) + "\n"
        text += "[backoff]\n" + "".join(f"{k} = {v}\n" for k, v in bo.items()) + "\n"
        return text

    def make_identity(self):
        """Creates the [ssh] identity_file of base_config (ed25519, 0600) if it is missing, so
        an engine that checks the key first sees a good one; returns its path."""
        key = self.root / "id_ed25519"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mysocketd-test", "-f", str(key)],
                           check=True, capture_output=True, timeout=30)
        return key

    def write_config(self, bindings="", **kw):
        self.config.write_text(self.base_config(**kw) + bindings)

    def command(self):
        """The argv that runs mysocketd (a subclass may wrap it); its pid must be mysocketd's."""
        return [str(MYSOCKETD), "-c", str(self.config)]

    def configure_relay(self, relay, bindings, ssh=None, backoff=None):
        """Writes a config whose [ssh] reaches relay (direct mode), host key accepted on first use."""
        s = {"port": str(relay.port), "identity_file": relay.client_key, "host_key_check": "accept-new"}
        s.update(ssh or {})
        self.write_config(bindings, ssh=s, backoff=backoff)

    def start(self, wait=True, extra_env=None):
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        env.pop("NOTIFY_SOCKET", None)
        env.update(extra_env or {})
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        if wait:
            wait_for(lambda: self.proc.poll() is not None or self.ctl("status", check=False).returncode == 0,
                     timeout=10, what="mysocketd to answer on its control socket")
            assert self.proc.poll() is None, f"mysocketd exited: {self.log_text()}"
        return self

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError("mysocketd did not stop within %ss of signal %s" % (timeout, sig))
        rc = self.proc.returncode if self.proc else None
        if getattr(self, "logf", None):
            self.logf.close()
            self.logf = None
        return rc

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if getattr(self, "logf", None):
            self.logf.close()
            self.logf = None

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def ctl(self, *args, check=True, json_out=False, timeout=30, **kw):
        cmd = [str(MYSOCKETCTL), "-s", str(self.socket)] + (["--json"] if json_out else []) + list(args)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} -> {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def json(self, *args, **kw):
        return json.loads(self.ctl(*args, json_out=True, **kw).stdout)

    def binding(self, name):
        return self.json("show", name)

    def wait_state(self, name, state, timeout=20):
        return wait_for(lambda: (lambda b: b if b["state"] == state else None)(self.binding(name)),
                        timeout=timeout, what=f"binding {name} to be {state}")

    def request(self, obj, raw=None, timeout=10):
        """Sends one raw request line over the control socket and returns the parsed reply."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(str(self.socket))
            s.sendall(raw if raw is not None else (json.dumps(obj) + "\n").encode())
            buf = read_line(s)
        return json.loads(buf) if buf else None


class TCPService:
    """A local TCP service for tests and benchmarks: listens on 127.0.0.1 (or on sock, made
    e.g. in another network namespace), accepts in a thread and calls handle(c) for each
    connection, in a thread of its own unless `inline`. handle() closes c."""
    inline = False

    def __init__(self, sock=None, backlog=1024):
        self.sock = sock or socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.inline:
                self.handle(c)
            else:
                threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    def handle(self, c):
        raise NotImplementedError

    def close(self):
        self.sock.close()


class Echo(TCPService):
    """The local service of many tests: echoes every byte back until the peer closes."""

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


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def netns(name):
    """This thread (only) in network namespace `name`: sockets made here live there."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns {name}: {os.strerror(e)}")
        yield
    finally:
        _libc.setns(home, CLONE_NEWNET)
        os.close(home)
        os.close(target)


class BlobServer(TCPService):
    """A local service for transfers: "SEND n\\n" -> n PATTERN bytes then EOF; "RECV n\\n" +
    n bytes -> their sha256 in hex; "GET ..." -> one small HTTP/1.0 page."""

    def handle(self, c):
        try:
            f = c.makefile("rb")
            words = f.readline().split()
            if words[:1] == [b"GET"]:          # HTTP/1.0, one small page
                body = b"hello through the tunnel\n"
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                return
            if len(words) != 2:
                return
            n = int(words[1])
            if words[0] == b"SEND":
                send_pattern(c, n)
                c.shutdown(socket.SHUT_WR)
                c.recv(1)
            elif words[0] == b"RECV":
                h, left = hashlib.sha256(), n
                while left:
                    b = f.read1(min(left, 1 << 20))
                    if not b:
                        break
                    h.update(b)
                    left -= len(b)
                c.sendall(h.hexdigest().encode() + b"\n")
        except OSError:
            pass
        finally:
            c.close()


class TestHTTPServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer whose shutdown() cannot hang: select() may call the listening
    socket readable and the client may be gone before accept() (a daemon that stopped), and a
    blocking accept() then waits for ever while shutdown() waits for it. Non-blocking, that
    accept() fails and serve_forever() goes on."""
    daemon_threads = True

    def server_activate(self):
        super().server_activate()
        self.socket.setblocking(False)


class TestHTTPServer6(TestHTTPServer):
    address_family = socket.AF_INET6


def start_http_server(handler, host="127.0.0.1", port=0):
    """A TestHTTPServer on host:port, serving from a thread; stop it with .shutdown()."""
    srv = (TestHTTPServer6 if ":" in host else TestHTTPServer)((host, port), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def http_site(tmp_path, body):
    """For a fixture to `yield from`: a local http.server whose /index.html is body; yields
    its port and stops it afterwards."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text(body)
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **kw)  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    srv = start_http_server(handler)
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def new_daemon(root, cls=Daemon, *args):
    """A daemon (of class cls) in a new directory root with its state dir (0700)."""
    root.mkdir()
    d = cls(root, *args)
    d.state_dir.mkdir(mode=0o700)
    return d


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Remembers each phase's report on the test item, so fixtures can tell a failure."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def report_on_failure(request, what, text):
    """A failing test in CI shows the tail of the daemon's or relay's log in its report."""
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n----- {what} (last 6000 characters) -----\n{text()[-6000:]}")


@pytest.fixture
def daemon(tmp_path, request):
    d = Daemon(tmp_path)
    yield d
    d.stop()
    report_on_failure(request, "mysocketd log", d.log_text)


@pytest.fixture
def relay(tmp_path, request):
    """A real sshd relay on 127.0.0.1 (tests/integration/relay.py)."""
    r = Relay(tmp_path / "relay").start()
    yield r
    r.stop()
    report_on_failure(request, "sshd log", r.log)


@pytest.fixture
def relay_daemon(tmp_path, request):
    """A daemon in tmp_path/d, not started; configure_relay() points it at the relay."""
    d = new_daemon(tmp_path / "d")
    yield d
    d.stop()
    report_on_failure(request, "mysocketd log", d.log_text)


@pytest.fixture
def web_daemon(daemon):
    """The daemon, started with one config binding "web" (port 8000, remote port 9000) and
    an identity file."""
    daemon.make_identity()
    daemon.write_config(binding("web", 8000, 9000))
    daemon.start()
    return daemon


def pytest_configure(config):
    for b in (MYSOCKETD, MYSOCKETCTL):
        if not b.exists():
            raise pytest.UsageError(f"{b} not found: build first (tools/test.sh does), "
                                    "or set MYSOCKETD_BUILDDIR")

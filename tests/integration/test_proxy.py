"""[ssh] proxy (SPEC section 10): the relay reached through a real HTTP CONNECT proxy
(tinyproxy) and a real SOCKS5 proxy (microsocks), both from Debian, started here on loopback
in the foreground and stopped by pid.

Each test checks that the session really goes through the proxy (the daemon's only TCP
connection is to the proxy's port, never to the relay's), that traffic flows, that a proxy
that is down or refuses gives a sentence naming the proxy and its answer, and that the
proxy's password appears in no log line and no control reply.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import BlobServer, binding, free_port, new_daemon, pattern_digest, wait_for
from relay import Relay
from test_tunnel import download, upload

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
MICROSOCKS = shutil.which("microsocks") or "/usr/bin/microsocks"
PROXY_PASSWORD = "Pr0xyS3cret-7f3a"

pytestmark = pytest.mark.skipif(not (os.path.exists(TINYPROXY) and os.path.exists(MICROSOCKS)),
                                reason="tinyproxy and microsocks are needed (tools/setup.sh installs them)")


class Proxy:
    """A proxy process in the foreground on 127.0.0.1:port, its output in a log file."""

    host = "127.0.0.1"

    def __init__(self, root, port=None):
        self.root = root
        root.mkdir(exist_ok=True)
        self.port = port or free_port()
        self.log = root / "proxy.log"
        self.proc = None

    def argv(self):
        raise NotImplementedError

    def start(self):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"proxy exited: {self.log_text()}"
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"proxy not listening on {self.port}: {self.log_text()}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if getattr(self, "logf", None):
            self.logf.close()
            self.logf = None

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Tinyproxy(Proxy):
    def __init__(self, root, connect_port, auth=None, port=None):
        super().__init__(root, port)
        conf = [f"Port {self.port}", "Listen 127.0.0.1", "Timeout 60", "MaxClients 50", "LogLevel Info",
                f"ConnectPort {connect_port}"]
        if auth:
            conf.append(f"BasicAuth {auth[0]} {auth[1]}")
        self.conf = root / "tinyproxy.conf"
        self.conf.write_text("\n".join(conf) + "\n")

    def argv(self):
        return [TINYPROXY, "-d", "-c", str(self.conf)]


class Microsocks(Proxy):
    def __init__(self, root, auth=None, port=None, host="127.0.0.1"):
        self.host = host
        super().__init__(root, port)
        self.auth = auth

    def argv(self):
        a = [MICROSOCKS, "-i", self.host, "-p", str(self.port)]
        if self.auth:
            a += ["-u", self.auth[0], "-P", self.auth[1]]
        return a


@pytest.fixture
def proxies():
    started = []
    yield started
    for p in started:
        p.stop()


@pytest.fixture
def blob():
    b = BlobServer()
    yield b.port
    b.close()


@pytest.fixture
def pd(tmp_path, request):
    d = new_daemon(tmp_path / "d")
    yield d
    d.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n----- mysocketd log -----\n{d.log_text()[-6000:]}")


def tcp_peers(pid):
    """The remote ports of pid's established TCP connections on loopback (ss -tnp)."""
    out = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True, text=True,
                         check=True).stdout
    ports = set()
    for line in out.splitlines():
        if f"pid={pid}," not in line:
            continue
        fields = line.split()
        ports.add(int(fields[3].rsplit(":", 1)[1]))
    return ports


def start_through(d, relay, proxy_url, local, rp=None, wait="up"):
    rp = rp or free_port()
    d.configure_relay(relay, binding("web", local, rp), ssh={"proxy": proxy_url},
                      backoff={"initial": "1", "max": "1"})
    d.start()
    if wait:
        d.wait_state("web", wait, timeout=20)
    return rp


def outputs(d):
    """Every text the daemon gives out: its log, and list/show/status in JSON and text."""
    texts = [d.log_text()]
    for args in (("list",), ("show", "web"), ("status",)):
        texts.append(d.ctl(*args, json_out=True).stdout)
        texts.append(d.ctl(*args).stdout)
    return "\n".join(texts)


def assert_no_password(d, password=PROXY_PASSWORD):
    text = outputs(d)
    assert password not in text
    assert "proxy" in d.json("status")


def test_binding_up_through_http_connect_proxy_with_auth(tmp_path, pd, blob, proxies):
    relay = Relay(tmp_path / "relay").start()
    try:
        tp = Tinyproxy(tmp_path / "tp", relay.port, auth=("alice", PROXY_PASSWORD))
        proxies.append(tp.start())
        rp = start_through(pd, relay, f"http://alice:{PROXY_PASSWORD}@127.0.0.1:{tp.port}", blob)
        n = 16 << 20
        digest, got, secs = download(rp, n, timeout=120)
        assert (got, digest) == (n, pattern_digest(n))
        digest, _ = upload(rp, n, timeout=120)
        assert digest == pattern_digest(n)
        print(f"through tinyproxy: {n >> 20} MiB each way, the first in {secs:.2f} s")
        # Through the proxy, not around it: tinyproxy saw the CONNECT, and the daemon's only
        # TCP connection is to the proxy.
        assert f"CONNECT 127.0.0.1:{relay.port} " in tp.log_text()
        peers = tcp_peers(pd.proc.pid)
        assert tp.port in peers and relay.port not in peers, peers
        assert pd.json("status")["proxy"] == f"http://127.0.0.1:{tp.port}"
        assert_no_password(pd)
    finally:
        relay.stop()


def test_binding_up_through_socks5h_proxy(tmp_path, pd, blob, proxies):
    relay = Relay(tmp_path / "relay").start()
    try:
        ms = Microsocks(tmp_path / "ms")
        proxies.append(ms.start())
        rp = start_through(pd, relay, f"socks5h://127.0.0.1:{ms.port}", blob)
        n = 16 << 20
        digest, got, _ = download(rp, n, timeout=120)
        assert (got, digest) == (n, pattern_digest(n))
        peers = tcp_peers(pd.proc.pid)
        assert ms.port in peers and relay.port not in peers, peers
        assert pd.json("status")["proxy"] == f"socks5h://127.0.0.1:{ms.port}"
        # The proxy going away takes the session with it (the relay's end closed); the next
        # attempts back off naming the proxy; back, the binding comes back.
        ms.stop()
        pd.wait_state("web", "backoff", timeout=20)
        want = f"cannot connect to proxy 127.0.0.1:{ms.port}: Connection refused"
        wait_for(lambda: (lambda b: b["state"] == "backoff" and b["last_error"] == want)(pd.binding("web")),
                 timeout=20, what="a retry failing at the proxy")
        proxies.append(Microsocks(tmp_path / "ms", port=ms.port).start())
        pd.wait_state("web", "up", timeout=20)
        digest, got, _ = download(rp, 1 << 20, timeout=60)
        assert (got, digest) == (1 << 20, pattern_digest(1 << 20))
    finally:
        relay.stop()


def test_socks5_proxy_on_ipv6_resolving_here(tmp_path, pd, blob, proxies):
    """socks5:// (the name resolved by the daemon) to a proxy on [::1]."""
    relay = Relay(tmp_path / "relay").start()
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
        ms = Microsocks(tmp_path / "ms", port=port, host="::1")
        proxies.append(ms.start())
        rp = start_through(pd, relay, f"socks5://[::1]:{ms.port}", blob)
        digest, got, _ = download(rp, 1 << 20, timeout=60)
        assert (got, digest) == (1 << 20, pattern_digest(1 << 20))
        assert pd.json("status")["proxy"] == f"socks5://[::1]:{ms.port}"
        assert ms.port in tcp_peers(pd.proc.pid)
    finally:
        relay.stop()


def test_socks5_proxy_with_user_and_password(tmp_path, pd, blob, proxies):
    relay = Relay(tmp_path / "relay").start()
    try:
        ms = Microsocks(tmp_path / "ms", auth=("bob", PROXY_PASSWORD))
        proxies.append(ms.start())
        rp = start_through(pd, relay, f"socks5h://bob:{PROXY_PASSWORD}@127.0.0.1:{ms.port}", blob)
        digest, got, _ = download(rp, 1 << 20, timeout=60)
        assert (got, digest) == (1 << 20, pattern_digest(1 << 20))
        assert pd.json("status")["proxy"] == f"socks5h://127.0.0.1:{ms.port}"
        assert_no_password(pd)
    finally:
        relay.stop()


def test_proxy_down_is_backoff_naming_the_proxy(tmp_path, pd, blob, proxies):
    relay = Relay(tmp_path / "relay").start()
    try:
        port = free_port()
        start_through(pd, relay, f"http://alice:{PROXY_PASSWORD}@127.0.0.1:{port}", blob, wait="backoff")
        b = pd.binding("web")
        assert b["last_error"] == f"cannot connect to proxy 127.0.0.1:{port}: Connection refused", b
        # Retried, and up once the proxy is there.
        proxies.append(Tinyproxy(tmp_path / "tp", relay.port, auth=("alice", PROXY_PASSWORD), port=port).start())
        pd.wait_state("web", "up", timeout=20)
        assert_no_password(pd)
    finally:
        relay.stop()


def test_http_proxy_refusing_connect_403(tmp_path, pd, blob, proxies):
    relay = Relay(tmp_path / "relay").start()
    try:
        tp = Tinyproxy(tmp_path / "tp", relay.port + 1 if relay.port < 65535 else 1)   # not the relay's port
        proxies.append(tp.start())
        start_through(pd, relay, f"http://127.0.0.1:{tp.port}", blob, wait="backoff")
        b = pd.binding("web")
        assert b["last_error"] == f"proxy 127.0.0.1:{tp.port} refused CONNECT to 127.0.0.1:{relay.port}: HTTP 403", b
        assert "Refused CONNECT method on port" in tp.log_text()
    finally:
        relay.stop()


# tinyproxy answers missing credentials with 407 and wrong ones with 401.
@pytest.mark.parametrize("creds,answer", [("", "407 (proxy authentication required"),
                                          (f"alice:wrong-{PROXY_PASSWORD}@", "401 (proxy authentication failed")],
                         ids=["none", "wrong"])
def test_http_proxy_wanting_credentials(tmp_path, pd, blob, proxies, creds, answer):
    relay = Relay(tmp_path / "relay").start()
    try:
        tp = Tinyproxy(tmp_path / "tp", relay.port, auth=("alice", "the-right-one"))
        proxies.append(tp.start())
        start_through(pd, relay, f"http://{creds}127.0.0.1:{tp.port}", blob, wait="failed")
        b = pd.binding("web")
        assert b["last_error"].startswith(f"proxy 127.0.0.1:{tp.port} refused CONNECT to 127.0.0.1:{relay.port}: "
                                          f"HTTP {answer}: check the user and password in [ssh] proxy)"), b
        assert_no_password(pd, f"wrong-{PROXY_PASSWORD}")
        # The right user and password, reloaded: the failed binding comes up.
        text = pd.config.read_text().replace(f"http://{creds}127.0.0.1", "http://alice:the-right-one@127.0.0.1")
        pd.config.write_text(text)
        pd.ctl("reload")
        pd.wait_state("web", "up", timeout=20)
    finally:
        relay.stop()


def test_socks_proxy_refusals(tmp_path, pd, blob, proxies):
    relay = Relay(tmp_path / "relay").start()
    try:
        # A SOCKS proxy that wants a user and password, asked without.
        ms = Microsocks(tmp_path / "ms", auth=("bob", PROXY_PASSWORD))
        proxies.append(ms.start())
        start_through(pd, relay, f"socks5h://127.0.0.1:{ms.port}", blob, wait="failed")
        err = pd.binding("web")["last_error"]
        assert err.startswith(f"proxy 127.0.0.1:{ms.port} refused the connection to 127.0.0.1:{relay.port}: "
                              "authentication refused"), err
        pd.stop()
        # A SOCKS proxy whose target refuses: the relay's port with nothing listening.
        ms2 = Microsocks(tmp_path / "ms2")
        proxies.append(ms2.start())
        dead = free_port()
        pd.configure_relay(relay, binding("web", blob, free_port()),
                           ssh={"proxy": f"socks5h://127.0.0.1:{ms2.port}", "port": str(dead)})
        pd.start()
        b = pd.wait_state("web", "backoff", timeout=20)
        assert b["last_error"].startswith(f"proxy 127.0.0.1:{ms2.port} refused the connection to "
                                          f"127.0.0.1:{dead}: connection refused by the target"), b
    finally:
        relay.stop()


@pytest.mark.parametrize("value,why", [
    ("ftp://127.0.0.1:21", "the scheme must be http:// (CONNECT), socks5:// or socks5h://"),
    (f"http://alice:{PROXY_PASSWORD}@127.0.0.1", "http://[user:password@]host:port"),
    (f"http://alice:{PROXY_PASSWORD}@127.0.0.1:99999", "http://[user:password@]host:port"),
    ("socks5h://[::1:1080", "http://[user:password@]host:port"),
    ("http://bad host:3128", "http://[user:password@]host:port"),
])
def test_proxy_config_errors_name_file_line_and_hide_the_password(pd, value, why):
    pd.make_identity()
    pd.write_config(binding("web", 8000, 9000), ssh={"proxy": value})
    p = subprocess.run([str(pd.command()[0]), "--check-config", "-c", str(pd.config)], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 78, p
    lines = pd.config.read_text().splitlines()
    lineno = next(i for i, l in enumerate(lines, 1) if l.startswith("proxy ="))
    out = p.stdout + p.stderr
    assert re.search(rf"mysocketd\.ini:{lineno}: \[ssh\] proxy: not a proxy URL", out), out
    assert why in out, out
    assert PROXY_PASSWORD not in out


def test_proxy_config_accepted_forms(pd):
    pd.make_identity()
    for value in ("http://127.0.0.1:3128", "http://u:p@proxy.example.org:8080/", "socks5://[::1]:1080",
                  f"socks5h://bob:{PROXY_PASSWORD}@127.0.0.1:1080", ""):
        pd.write_config(binding("web", 8000, 9000), ssh={"proxy": value})
        p = subprocess.run([str(pd.command()[0]), "--check-config", "-c", str(pd.config)], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0, (value, p.stdout, p.stderr)


def test_a_proxy_that_never_answers_holds_nothing_up(tmp_path, pd, blob):
    """A proxy that accepts and then says nothing: the attempt is libcurl's on the loop, so
    the daemon answers at once meanwhile, and the attempt ends at the setup deadline with a
    sentence naming the proxy."""
    relay = Relay(tmp_path / "relay").start()
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    port = hole.getsockname()[1]
    try:
        t0 = time.monotonic()
        start_through(pd, relay, f"http://127.0.0.1:{port}", blob, wait=None)
        wait_for(lambda: pd.binding("web")["state"] == "connecting", timeout=10, what="connecting")
        worst = 0.0
        while time.monotonic() - t0 < 3:
            t = time.monotonic()
            assert pd.json("status")["proxy"] == f"http://127.0.0.1:{port}"
            worst = max(worst, time.monotonic() - t)
        assert worst < 1.0, f"status took {worst:.2f} s while the proxy hung"
        b = pd.wait_state("web", "backoff", timeout=60)
        assert re.match(rf"timed out connecting through proxy 127\.0\.0\.1:{port} to (relay )?127\.0\.0\.1:{relay.port}$",
                        b["last_error"]), b["last_error"]
        print(f"status answered within {worst * 1000:.0f} ms; the attempt ended after "
              f"{time.monotonic() - t0:.1f} s: {b['last_error']}")
    finally:
        hole.close()
        relay.stop()

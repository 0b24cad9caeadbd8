"""API mode against the emulator (issue 4): stable sockets, token life, faults, the
original client's commands through the daemon, quick connect, and secrets kept out of
every log line and every mysocketctl output.

Most tests point [ssh] at a port where nothing listens: bindings cycle resolving ->
connecting -> backoff and re-resolve on every attempt, which exercises the API path again
and again. The last ones run a real sshd relay (relay.py) and send traffic through it.
"""
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import MYSOCKETCTL, Daemon, free_port, free_port_block, http_site, new_daemon, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emulator import harness  # noqa: E402
from emulator.harness import Emulator  # noqa: E402

EMAIL, PASSWORD = "ops@example.com", "s3cret-pw-4711"
# The relay sshd only accepts existing system users, so the account's user_name is root.
USERS = ((EMAIL, PASSWORD, "root"),)
JWT_HEADER = "eyJhbGciOi"        # base64url of '{"alg":' : the start of every token
TOKEN_RUN = int(os.environ.get("MYSOCKETD_TOKEN_RUN", "60"))


class ApiDaemon(Daemon):
    """A Daemon that keeps every mysocketctl output, to check for secrets at the end."""

    def __init__(self, root, api):
        super().__init__(root, api=api)
        self.outputs = []
        self.tokens = set()

    def ctl(self, *args, **kw):
        p = super().ctl(*args, **kw)
        self.outputs.append(p.stdout + p.stderr)
        return p

    def remember_token(self):
        f = self.state_dir / "token"
        if f.exists():
            self.tokens.add(f.read_text().strip())

    def api_config(self, url=None, bindings=""):
        # A real key, so the engine keeps retrying [ssh] port 1 (refused) rather than
        # failing for good on a missing identity file: every retry re-resolves at the API.
        key = self.root / "id_ed25519"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        pw = self.root / "password"
        pw.write_text(PASSWORD + "\n")
        os.chmod(pw, 0o600)
        self.write_config(bindings, api={"url": url or self.api.url, "email": EMAIL,
                                         "password_file": str(pw)})

    def ids(self, name):
        b = self.binding(name)
        return (b["socket_id"], b["tunnel_id"]) if b["socket_id"] and b["tunnel_id"] else None

    def wait_ids(self, name, timeout=20):
        return wait_for(lambda: self.ids(name), timeout=timeout, what=f"{name} to have a socket and a tunnel")

    def wait_error(self, name, pattern, timeout=20):
        def match():
            b = self.binding(name)
            return b if b["last_error"] and re.search(pattern, b["last_error"], re.I) else None
        return wait_for(match, timeout=timeout, what=f"{name}'s last_error to match {pattern!r}")

    def assert_no_secrets(self):
        self.remember_token()
        texts = [("the daemon log", self.log_text())] + [("mysocketctl output", o) for o in self.outputs]
        for where, text in texts:
            assert PASSWORD not in text, f"the password is in {where}"
            assert JWT_HEADER not in text, f"a token is in {where}"
            for t in self.tokens:
                assert t not in text, f"the token is in {where}"


def binding(name, port, extra=""):
    return f'[binding "{name}"]\nport = {port}\n{extra}\n'


def emulator_on(tmp_path, port, **kw):
    """An emulator on a fixed port (the harness always picks one): for 'the API comes back'."""
    e = Emulator(tmp_path, users=USERS, **kw)
    cmd = [harness.PYTHON, harness.SCRIPT, "--port", str(port), "--token-lifetime", str(e.token_lifetime),
           "--relay-port-base", str(e.relay_port_base), "--tunnel-server", e.tunnel_server,
           "--user", "%s:%s:%s" % USERS[0]]
    with open(e.log_path, "ab") as log:
        e.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    assert select.select([e.proc.stdout], [], [], 10)[0], "emulator did not start"
    assert e.proc.stdout.readline().split() == [b"LISTENING", str(port).encode()]
    e.port = port
    return e


def emulator_log_statuses(api, status):
    """How many requests the emulator answered with this HTTP status (its log lines)."""
    text = Path(api.log_path).read_text(errors="replace") if Path(api.log_path).exists() else ""
    return len(re.findall(r'" %d ' % status, text))


@pytest.fixture
def api(tmp_path):
    e = Emulator(tmp_path, users=USERS).start()
    yield e
    e.stop()


@pytest.fixture
def ad(tmp_path, api):
    """An API-mode daemon, not started; every test ends with the secrets check."""
    d = ApiDaemon(tmp_path / "d", api)
    d.root.mkdir()
    yield d
    d.stop()
    d.assert_no_secrets()


def started(ad, bindings=binding("web", 8000) + binding("db", 5432, "type = tcp")):
    ad.api_config(bindings=bindings)
    ad.start()
    return ad


def sockets_at(api):
    return {s["socket_id"]: s for s in api.state()["sockets"]}


# ---- boot, stable ids, restart ------------------------------------------------------------


def test_unreachable_api_at_boot_daemon_serves_and_keeps_retrying(ad, tmp_path):
    port = free_port()
    ad.api_config(url=f"http://127.0.0.1:{port}", bindings=binding("web", 8000))
    t0 = time.monotonic()
    ad.start()
    assert time.monotonic() - t0 < 5, "the control socket must come up without the API"
    st = ad.json("status")
    assert st["mode"] == "api" and st["token_expiry"] is None
    b = ad.wait_error("web", r"API request .* failed|connect")
    assert b["state"] in ("resolving", "backoff")
    assert b["socket_id"] is None and b["public_url"] is None
    # Retrying: the next attempt is announced and several attempts get logged.
    wait_for(lambda: ad.binding("web")["next_attempt"] is not None, timeout=10, what="a next attempt")
    wait_for(lambda: len(re.findall(r"web: .*retrying", ad.log_text())) >= 3, timeout=20,
             what="three retries in the log")
    # API commands fail cleanly rather than hang.
    p = ad.ctl("account", "show", check=False, timeout=60)
    assert p.returncode == 1 and "mysocketctl:" in p.stderr
    # The API comes back: the binding resolves without a restart.
    e = emulator_on(tmp_path, port)
    try:
        ad.wait_ids("web", timeout=30)
        counts = e.counts()
        assert counts.get("POST /socket") == 1 and counts.get("POST /socket/{id}/tunnel") == 1
        assert ad.json("status")["token_expiry"] is not None
    finally:
        e.stop()


def test_fresh_start_creates_one_socket_and_one_tunnel_per_binding(ad, api):
    started(ad)
    web, db = ad.wait_ids("web"), ad.wait_ids("db")
    assert web != db
    # Several failed tunnel attempts later (each re-resolves), still nothing new.
    wait_for(lambda: ad.binding("web")["reconnects"] >= 3 and ad.binding("db")["reconnects"] >= 3,
             timeout=30, what="three reconnects")
    c = api.counts()
    assert c.get("POST /socket") == 2, c
    assert c.get("POST /socket/{id}/tunnel") == 2, c
    assert c.get("POST /login") == 1, c
    assert ad.ids("web") == web and ad.ids("db") == db
    socks = sockets_at(api)
    assert set(socks) == {web[0], db[0]}
    assert [t["tunnel_id"] for t in socks[web[0]]["tunnels"]] == [web[1]]
    b = ad.binding("web")
    assert b["public_url"] == "https://" + socks[web[0]]["dnsname"]
    assert b["relay_port"] == socks[web[0]]["tunnels"][0]["local_port"]
    d = ad.binding("db")
    assert d["public_url"] == "%s:%d" % (socks[db[0]]["dnsname"], socks[db[0]]["socket_tcp_ports"][0])
    # The SSH user comes from the account.
    assert api.state()["counts"].get("GET /user/{user_id}", 0) >= 1


def test_restart_creates_nothing_and_keeps_the_ids(ad, api):
    started(ad)
    before = {n: ad.wait_ids(n) for n in ("web", "db")}
    ad.stop()
    api.reset_counts()
    ad.start()
    after = {n: ad.wait_ids(n) for n in ("web", "db")}
    assert after == before
    wait_for(lambda: ad.binding("web")["reconnects"] >= 2, timeout=20, what="two reconnects")
    c = api.counts()
    assert c.get("POST /socket", 0) == 0 and c.get("POST /socket/{id}/tunnel", 0) == 0, c
    # The token in the state dir is reused: no new login.
    assert c.get("POST /login", 0) == 0, c
    assert len(sockets_at(api)) == 2


def test_socket_gone_404_is_recreated_with_a_warning(ad, api):
    started(ad)
    old_web, old_db = ad.wait_ids("web"), ad.wait_ids("db")
    api.delete_socket(old_web[0])
    new = wait_for(lambda: (lambda i: i if i and i[0] != old_web[0] else None)(ad.ids("web")),
                   timeout=20, what="web to get a new socket")
    assert new[0] in sockets_at(api)
    assert ad.ids("db") == old_db
    c = api.counts()
    assert c.get("POST /socket") == 3 and c.get("POST /socket/{id}/tunnel") == 3, c
    warn = [ln for ln in ad.log_text().splitlines() if ln.startswith("warning:") and old_web[0] in ln]
    assert warn, "no warning naming the vanished socket:\n" + ad.log_text()[-3000:]
    # The new ids are what a restart uses.
    ad.stop()
    api.reset_counts()
    ad.start()
    assert ad.wait_ids("web") == new
    assert api.counts().get("POST /socket", 0) == 0


# ---- faults -------------------------------------------------------------------------------

FAULTS = [
    # kind, extra fault args, what last_error says
    ("5xx", {}, r"HTTP 503"),
    ("garbage", {}, r"JSON"),
    ("html", {}, r"HTTP 502 .*non-JSON|non-JSON .*502"),
    ("401", {}, r"HTTP 401"),
    ("404", {}, r"404|not found|gone"),
]


@pytest.mark.parametrize("kind,args,pattern", FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_gives_an_error_and_recovers(ad, api, kind, args, pattern):
    started(ad)
    web, db = ad.wait_ids("web"), ad.wait_ids("db")
    path = "GET /socket/{id}"     # what every attempt of a known binding asks first
    if kind == "404":
        # A 404 from the API means "gone": the daemon replaces the socket.
        api.fault(path, "404", count=1)
        wait_for(lambda: api.counts().get("POST /socket", 0) >= 3, timeout=20, what="a new socket")
        return
    logins = api.counts().get("POST /login", 0)
    api.fault(path, kind, **args)
    b = ad.wait_error("web", pattern)
    assert b["state"] in ("resolving", "backoff"), b
    d = ad.wait_error("db", pattern)
    assert (b["socket_id"], b["tunnel_id"]) == web and (d["socket_id"], d["tunnel_id"]) == db
    if kind == "401":
        # A 401 is answered with a fresh login and one retry.
        assert api.counts().get("POST /login", 0) > logins
    # The control socket answers throughout.
    t0 = time.monotonic()
    ad.json("list")
    assert time.monotonic() - t0 < 1.0
    api.clear_faults()
    for n, ids in (("web", web), ("db", db)):
        wait_for(lambda: not re.search(pattern, ad.binding(n)["last_error"] or "", re.I),
                 timeout=20, what=f"{n} to recover")
        assert ad.ids(n) == ids
    c = api.counts()
    assert c.get("POST /socket") == 2 and c.get("POST /socket/{id}/tunnel") == 2, c


def test_slow_api_keeps_the_binding_resolving_and_the_daemon_responsive(ad, api):
    started(ad)
    web = ad.wait_ids("web")
    api.fault("GET /socket/{id}", "slow", delay=4)
    wait_for(lambda: ad.binding("web")["state"] == "resolving", timeout=10, interval=0.02,
             what="web resolving while the API is slow")
    for _ in range(5):
        t0 = time.monotonic()
        ad.json("status")
        assert time.monotonic() - t0 < 1.0
    api.clear_faults()
    wait_for(lambda: ad.binding("web")["reconnects"] >= 4, timeout=30, what="attempts after the slow API")
    assert ad.ids("web") == web


# ---- token life ---------------------------------------------------------------------------


def test_short_tokens_are_refreshed_every_time_without_a_new_login(ad, api):
    api.set_token_lifetime(10)
    started(ad, bindings=binding("web", 8000))
    ad.wait_ids("web")
    t0 = time.monotonic()
    while time.monotonic() - t0 < TOKEN_RUN:
        ad.remember_token()
        assert ad.json("status")["token_expiry"] is not None
        time.sleep(1)
    c = api.counts()
    assert c.get("POST /login") == 1, c
    # Refreshed at half life (5 s) at the latest: at least one per lifetime.
    assert c.get("POST /login/refresh", 0) >= TOKEN_RUN // 10, c
    assert emulator_log_statuses(api, 401) == 0, "a request ran with an expired token"
    assert c.get("POST /socket") == 1
    assert len(ad.tokens) >= TOKEN_RUN // 10


def test_revoked_token_leads_to_a_new_login(ad, api):
    started(ad, bindings=binding("web", 8000))
    web = ad.wait_ids("web")
    assert api.counts().get("POST /login") == 1
    api.revoke()
    wait_for(lambda: api.counts().get("POST /login", 0) >= 2, timeout=20, what="a new login")
    wait_for(lambda: ad.binding("web")["reconnects"] >= ad.binding("web")["reconnects"] + 0 and
             api.counts().get("GET /socket/{id}", 0) >= 3, timeout=20, what="resolves after the login")
    assert ad.ids("web") == web
    assert api.counts().get("POST /socket") == 1
    assert re.search(r"logged in to the API as " + re.escape(EMAIL), ad.log_text())


# ---- remove --purge -------------------------------------------------------------------------


def test_remove_purge_deletes_only_the_sockets_the_daemon_created(ad, api):
    started(ad, bindings="")
    ad.ctl("add", "blog", "--port", "2368")
    blog = ad.wait_ids("blog")
    # A socket made elsewhere, attached with --socket-id: purge must leave it.
    own = ad.json("socket", "create", "--name", "mine")
    ad.ctl("add", "att", "--port", "2369", "--socket-id", own["socket_id"])
    ad.wait_ids("att")
    ad.ctl("remove", "--purge", "blog")
    ad.ctl("remove", "--purge", "att")
    wait_for(lambda: blog[0] not in sockets_at(api), timeout=10, what="blog's socket deleted")
    time.sleep(0.5)
    assert own["socket_id"] in sockets_at(api)
    assert "not created by mysocketd" in ad.log_text()
    assert not (ad.state_dir / "ids" / "blog.json").exists()
    # Without --purge the socket stays.
    ad.ctl("add", "keep", "--port", "2370")
    keep = ad.wait_ids("keep")
    ad.ctl("remove", "keep")
    time.sleep(0.5)
    assert keep[0] in sockets_at(api)


# ---- the original client's commands --------------------------------------------------------


def test_login_with_a_password_file(ad, api):
    started(ad, bindings="")
    f = ad.root / "pw2"
    f.write_text(PASSWORD + "\n")
    os.chmod(f, 0o600)
    n = api.counts().get("POST /login", 0)
    p = ad.ctl("login", "--email", EMAIL, "--password-file", str(f))
    assert EMAIL in p.stdout
    assert api.counts().get("POST /login") == n + 1
    assert ad.json("login", "--email", EMAIL, "--password-file", str(f)) == {}


def test_login_refuses_a_readable_password_file_without_asking_the_api(ad, api):
    started(ad, bindings="")
    f = ad.root / "pw-open"
    f.write_text(PASSWORD + "\n")
    os.chmod(f, 0o644)
    n = api.counts().get("POST /login", 0)
    p = ad.ctl("login", "--email", EMAIL, "--password-file", str(f), check=False)
    assert p.returncode == 1 and f"password file {f} is readable by others (mode 0644); chmod 600 {f}" in p.stderr
    assert api.counts().get("POST /login", 0) == n


def test_login_reads_stdin_when_not_a_tty_and_reports_bad_credentials(ad, api):
    started(ad, bindings="")
    p = ad.ctl("login", "--email", EMAIL, input=PASSWORD + "\n")
    assert "Logged in as" in p.stdout and "Password:" not in p.stdout + p.stderr
    p = ad.ctl("login", "--email", EMAIL, input="wrong\n", check=False)
    assert p.returncode == 1 and "401" in p.stderr
    p = ad.ctl("login", "--email", EMAIL, input="", check=False)
    assert p.returncode == 1 and "no password" in p.stderr
    assert ad.ctl("login", check=False, input="x\n").returncode == 2


def test_account_show(ad, api):
    started(ad, bindings="")
    acc = ad.json("account", "show")
    assert acc["email"] == EMAIL and acc["user_name"] == "root" and acc["user_id"]
    p = ad.ctl("account", "show")
    assert re.search(r"^user_name: +root$", p.stdout, re.M)
    assert re.search(r"^email: +" + re.escape(EMAIL) + "$", p.stdout, re.M)


def test_socket_and_tunnel_commands(ad, api):
    started(ad, bindings="")
    assert ad.ctl("socket", "ls").stdout.strip() == "No sockets."
    s = ad.json("socket", "create", "--name", "shop", "--type", "tcp")
    assert s["socket_type"] == "tcp" and s["socket_tcp_ports"] and s["name"] == "shop"
    p = ad.ctl("socket", "create", "--name", "priv", "--protected", "--username", "u",
               "--password", "basic-pw")
    priv_id = re.search(r"^socket_id: +(\S+)$", p.stdout, re.M).group(1)
    assert re.search(r"^protected: +yes$", p.stdout, re.M)
    assert re.search(r"^public_url: +https://\S+\.edge\.mysocket\.test$", p.stdout, re.M)
    assert "basic-pw" not in p.stdout

    table = ad.ctl("socket", "ls").stdout.splitlines()
    assert table[0].split() == ["SOCKET_ID", "DNSNAME", "TYPE", "NAME", "PORTS", "PROTECTED", "TUNNELS"]
    rows = {ln.split()[0]: ln.split() for ln in table[1:]}
    assert rows[s["socket_id"]][2:] == ["tcp", "shop", str(s["socket_tcp_ports"][0]), "no", "0"]
    assert rows[priv_id][2] == "http" and rows[priv_id][5] == "yes"
    assert {x["socket_id"] for x in ad.json("socket", "ls")} == {s["socket_id"], priv_id}

    t = ad.json("tunnel", "create", s["socket_id"])
    assert t["tunnel_id"] and isinstance(t["local_port"], int)
    p = ad.ctl("tunnel", "create", s["socket_id"])
    t2 = re.search(r"^tunnel_id: +(\S+)$", p.stdout, re.M).group(1)
    assert re.search(r"^relay_port: +\d+$", p.stdout, re.M)
    table = ad.ctl("tunnel", "ls", s["socket_id"]).stdout.splitlines()
    assert table[0].split() == ["TUNNEL_ID", "RELAY_PORT", "SERVER"]
    assert {ln.split()[0] for ln in table[1:]} == {t["tunnel_id"], t2}
    assert [x["tunnel_id"] for x in ad.json("tunnel", "ls", s["socket_id"])] == [t["tunnel_id"], t2]
    assert "Deleted tunnel" in ad.ctl("tunnel", "delete", s["socket_id"], t2).stdout
    assert [x["tunnel_id"] for x in ad.json("tunnel", "ls", s["socket_id"])] == [t["tunnel_id"]]

    assert ad.json("socket", "delete", priv_id) == {}
    assert "Deleted socket" in ad.ctl("socket", "delete", s["socket_id"]).stdout
    assert sockets_at(api) == {}
    # An unknown socket: the API's 404 is the daemon's not-found, exit 1.
    p = ad.ctl("tunnel", "ls", s["socket_id"], check=False)
    assert p.returncode == 1 and "404" in p.stderr
    c = api.counts()
    assert c.get("POST /socket") == 2 and c.get("POST /socket/{id}/tunnel") == 2
    assert c.get("DELETE /socket/{id}") == 2 and c.get("DELETE /socket/{id}/tunnel/{tid}") == 1


@pytest.mark.parametrize("args", [
    ["socket"], ["socket", "frob"], ["socket", "create"], ["socket", "create", "--name", "x", "--type", "ftp"],
    ["socket", "create", "--name", "x", "--protected"], ["socket", "delete"], ["socket", "ls", "extra"],
    ["socket", "ls", "--name", "x"], ["tunnel"], ["tunnel", "ls"], ["tunnel", "delete", "s"],
    ["tunnel", "create", "a", "b"], ["account", "frob"], ["login"], ["connect"],
    ["connect", "--port", "0"], ["connect", "--port", "80", "--type", "ftp"], ["connect", "--port", "80", "x"],
])
def test_usage_errors_exit_2(ad, args):
    ad.api_config()
    p = ad.ctl(*args, check=False)     # no daemon needed: refused before connecting
    assert p.returncode == 2, (args, p.stdout, p.stderr)
    assert "Try 'mysocketctl" in p.stderr


@pytest.mark.parametrize("cmd", ["login", "account", "socket", "tunnel", "connect"])
def test_help(ad, cmd):
    p = subprocess.run([str(MYSOCKETCTL), cmd, "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("Usage: mysocketctl")
    assert "--json" in p.stdout


def test_no_daemon_is_69(ad):
    p = ad.ctl("socket", "ls", check=False)
    assert p.returncode == 69 and str(ad.socket) in p.stderr


def test_direct_mode_refuses_the_api_commands(daemon):
    daemon.write_config('[binding "web"]\nport = 8000\nremote_port = 9000\n')
    daemon.start()
    for args in (["account", "show"], ["socket", "ls"], ["tunnel", "ls", "x"],
                 ["login", "--email", EMAIL]):
        p = daemon.ctl(*args, check=False, input="pw\n")
        assert p.returncode == 1 and "direct mode" in p.stderr, (args, p.stderr)
    # Without --remote-port, direct mode's connect is a usage error in the CLI's words (issue 13 item 14).
    p = daemon.ctl("connect", "--port", "8000", check=False)
    assert p.returncode == 2 and p.stderr.startswith("mysocketctl connect: missing --remote-port"), p.stderr


# ---- connect ----------------------------------------------------------------------------------


def read_line(proc, timeout=10):
    """The client's next stdout line. A thread reads it: select() on the pipe would miss
    lines that Python already buffered."""
    import queue
    import threading
    if not hasattr(proc, "lines"):
        proc.lines, proc.seen = queue.Queue(), []

        def pump():
            for ln in proc.stdout:
                proc.seen.append(ln)
                proc.lines.put(ln)
        proc.reader = threading.Thread(target=pump, daemon=True)
        proc.reader.start()
    try:
        return proc.lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError("no output from mysocketctl connect") from None


def start_connect(ad, *args):
    proc = subprocess.Popen([str(MYSOCKETCTL), "-s", str(ad.socket), "connect", "--port", "8000", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = read_line(proc)
    m = re.match(r"Connecting (connect-\d+) \(local 127\.0\.0\.1:8000\)\.\.\.", first)
    assert m, first
    return proc, m.group(1)


def finish(ad, proc):
    """Collects what the client printed; one still running (a failed test) is killed."""
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    err = proc.stderr.read()
    if hasattr(proc, "reader"):
        proc.reader.join(5)
        out = "".join(proc.seen)
    else:
        out = proc.stdout.read()
    ad.outputs.append(out + err)
    return out, err


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_connect_cleans_up_when_the_client_goes(ad, api, how):
    started(ad, bindings="")
    proc, name = start_connect(ad, "--name", "quick one", "--protected", "--username", "u",
                               "--password", "edge-pw")
    sid, _ = ad.wait_ids(name)
    assert sockets_at(api)[sid]["name"] == "quick one" and sockets_at(api)[sid]["protected_socket"]
    assert not (ad.state_dir / "bindings.d" / f"{name}.ini").exists()
    # The binding's events stream to the client.
    line = read_line(proc)
    assert re.match(r"\d{4}-\d\d-\d\dT\S+ +\w+ +\[" + name + r"\] ", line), line
    os.kill(proc.pid, getattr(signal, how))
    proc.wait(timeout=10)
    out, err = finish(ad, proc)
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 0, err
        assert "disconnected" in err
    wait_for(lambda: name not in [b["name"] for b in ad.json("list")], timeout=10, what=f"{name} removed")
    wait_for(lambda: sid not in sockets_at(api), timeout=10, what="its socket deleted at the API")
    assert "edge-pw" not in ad.log_text() + out + err
    assert not (ad.state_dir / "ids" / f"{name}.json").exists()


def test_connect_exits_1_when_the_daemon_goes(ad, api):
    started(ad, bindings="")
    proc, name = start_connect(ad)
    ad.wait_ids(name)
    ad.stop()
    proc.wait(timeout=10)
    out, err = finish(ad, proc)
    assert proc.returncode == 1 and "closed the connection" in err


def test_connect_socket_left_by_a_killed_daemon_is_deleted_at_the_next_start(ad, api):
    started(ad, bindings="")
    proc, name = start_connect(ad)
    sid, _ = ad.wait_ids(name)
    ad.kill9()
    proc.wait(timeout=10)
    finish(ad, proc)
    assert sid in sockets_at(api) and (ad.state_dir / "ids" / f"{name}.json").exists()
    ad.start()
    wait_for(lambda: sid not in sockets_at(api), timeout=10, what="the orphaned socket deleted at the API")
    assert not (ad.state_dir / "ids" / f"{name}.json").exists()
    assert name not in [b["name"] for b in ad.json("list")]
    assert "left over from an earlier run" in ad.log_text()


def test_connect_json_streams_the_binding_then_events(ad, api):
    started(ad, bindings="")
    proc = subprocess.Popen([str(MYSOCKETCTL), "-s", str(ad.socket), "--json", "connect", "--port", "8000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = json.loads(read_line(proc))
    assert b["name"].startswith("connect-") and b["port"] == 8000
    ev = json.loads(read_line(proc))
    assert ev["binding"] == b["name"] and "message" in ev
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(timeout=10)
    out, err = finish(ad, proc)
    assert proc.returncode == 0
    assert "Connecting" in err


def test_two_connects_get_their_own_bindings(ad, api):
    started(ad, bindings="")
    p1, n1 = start_connect(ad)
    p2, n2 = start_connect(ad)
    assert n1 != n2
    s1, s2 = ad.wait_ids(n1)[0], ad.wait_ids(n2)[0]
    os.kill(p1.pid, signal.SIGINT)
    p1.wait(timeout=10)
    finish(ad, p1)
    wait_for(lambda: s1 not in sockets_at(api), timeout=10, what="the first socket deleted")
    assert s2 in sockets_at(api) and n2 in [b["name"] for b in ad.json("list")]
    os.kill(p2.pid, signal.SIGINT)
    p2.wait(timeout=10)
    finish(ad, p2)
    wait_for(lambda: sockets_at(api) == {}, timeout=10, what="both sockets deleted")


def test_connect_killed_early_leaves_no_socket(ad, api):
    """Killed while the socket is being made (a slow tunnel create): nothing is orphaned."""
    started(ad, bindings="")
    api.fault("POST /socket/{id}/tunnel", "slow", delay=1)
    for delay in (0.0, 0.05, 0.3, 0.6, 1.5):
        proc, _ = start_connect(ad)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        finish(ad, proc)
    wait_for(lambda: ad.json("list") == [], timeout=10, what="every connect binding gone")
    wait_for(lambda: sockets_at(api) == {}, timeout=15, what="no socket left at the API")
    c = api.counts()
    assert c.get("DELETE /socket/{id}", 0) == c.get("POST /socket", 0), c


def test_connect_killed_while_its_socket_is_being_created_leaves_no_socket(ad, api):
    """The POST /socket is already at the API when the client dies: the socket it creates
    must still be deleted, though the binding is gone by the time the reply arrives."""
    started(ad, bindings="")
    api.fault("POST /socket", "slow", delay=1.5)
    proc, _ = start_connect(ad)
    wait_for(lambda: api.counts().get("POST /socket", 0) >= 1, timeout=10, what="POST /socket sent")
    proc.kill()
    proc.wait()
    finish(ad, proc)
    wait_for(lambda: ad.json("list") == [], timeout=10, what="the connect binding gone")
    wait_for(lambda: api.counts().get("DELETE /socket/{id}", 0) == 1, timeout=15, what="the late socket deleted")
    wait_for(lambda: sockets_at(api) == {}, timeout=10, what="no socket left at the API")
    assert "created as its binding went away" in ad.log_text()


# ---- with the relay (a real sshd) and the tunnel engine: traffic ---------------------------

import urllib.request  # noqa: E402


@pytest.fixture
def site(tmp_path):
    """A local http.server whose / answers with a known body."""
    yield from http_site(tmp_path, "hello through the relay\n")


@pytest.fixture
def rapi(tmp_path):
    """An emulator whose relay ports start at a free port (the relay sshd binds them)."""
    e = Emulator(tmp_path / "api", users=USERS, relay_port_base=free_port_block())
    (tmp_path / "api").mkdir()
    e.start()
    yield e
    e.stop()


@pytest.fixture
def rd(tmp_path, rapi, relay):
    """An API-mode daemon whose [ssh] points at the relay; the SSH user comes from the API."""
    d = new_daemon(tmp_path / "d", ApiDaemon, rapi)
    (d.state_dir / "known_hosts").write_text(relay.known_hosts_line() + "\n")
    pw = d.root / "password"
    pw.write_text(PASSWORD + "\n")
    os.chmod(pw, 0o600)
    d.configure = lambda bindings: d.write_config(
        bindings, api={"url": rapi.url, "email": EMAIL, "password_file": str(pw)},
        ssh={"port": str(relay.port), "identity_file": relay.client_key})
    yield d
    d.stop()
    d.assert_no_secrets()


def get_through(relay_port, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{relay_port}/index.html", timeout=timeout) as r:
        return r.read().decode()


def test_traffic_flows_through_the_relay_port(rd, rapi, site):
    rd.configure(binding("web", site))
    rd.start()
    b = rd.wait_state("web", "up", timeout=30)
    assert b["relay_port"] == rapi.state()["tunnels"][0]["local_port"]
    assert get_through(b["relay_port"]) == "hello through the relay\n"
    wait_for(lambda: rd.binding("web")["connections_total"] >= 1, timeout=5, what="the connection counted")
    c = rapi.counts()
    assert c.get("POST /socket") == 1 and c.get("POST /socket/{id}/tunnel") == 1 and c.get("POST /login") == 1


def test_api_bindings_keep_a_connection_each(rd, rapi, relay, site):
    """The mysocket relay's request log on a connection is its one socket's: API mode never
    shares an SSH session between bindings (direct mode does: test_sharing.py)."""
    rd.configure(binding("web", site) + binding("blog", site))
    rd.start()
    for n in ("web", "blog"):
        b = rd.wait_state(n, "up", timeout=30)
        assert get_through(b["relay_port"]) == "hello through the relay\n"
    with open(relay.log_path, errors="replace") as f:
        assert f.read().count("Accepted publickey") == 2


def test_token_refresh_never_drops_the_tunnel(rd, rapi, site):
    rapi.set_token_lifetime(10)
    rd.configure(binding("web", site))
    rd.start()
    b0 = rd.wait_state("web", "up", timeout=30)
    t0 = time.monotonic()
    while time.monotonic() - t0 < TOKEN_RUN:
        rd.remember_token()
        assert get_through(b0["relay_port"]) == "hello through the relay\n"
        b = rd.binding("web")
        assert (b["state"], b["reconnects"], b["connected_since"]) == ("up", b0["reconnects"], b0["connected_since"])
        time.sleep(1)
    c = rapi.counts()
    assert c.get("POST /login") == 1, c
    assert c.get("POST /login/refresh", 0) >= TOKEN_RUN // 10, c
    assert emulator_log_statuses(rapi, 401) == 0


def test_api_fault_for_a_new_binding_leaves_an_up_binding_alone(rd, rapi, site):
    rd.configure(binding("web", site))
    rd.start()
    b0 = rd.wait_state("web", "up", timeout=30)
    for kind, pattern in (("5xx", r"HTTP 503"), ("garbage", r"JSON"), ("html", r"502")):
        rapi.fault("POST /socket", kind)
        rd.ctl("add", "new", "--port", str(site))
        rd.wait_error("new", pattern)
        assert get_through(b0["relay_port"]) == "hello through the relay\n"
        b = rd.binding("web")
        assert (b["state"], b["reconnects"], b["connected_since"]) == ("up", b0["reconnects"], b0["connected_since"])
        rapi.clear_faults()
        n = rd.wait_state("new", "up", timeout=30)
        assert get_through(n["relay_port"]) == "hello through the relay\n"
        rd.ctl("remove", "--purge", "new")
    # Revocation: the tunnel that is up does not care.
    rapi.revoke()
    time.sleep(3)
    b = rd.binding("web")
    assert (b["state"], b["reconnects"]) == ("up", b0["reconnects"])


def test_connect_prints_the_public_url_and_traffic_flows(rd, rapi, site):
    rd.configure("")
    rd.start()
    proc = subprocess.Popen([str(MYSOCKETCTL), "-s", str(rd.socket), "connect", "--port", str(site)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            m = re.search(r"is public at (https://\S+)", read_line(proc, timeout=30))
            url = m and m.group(1)
        assert url and url.endswith(".edge.mysocket.test")
        name = [b for b in rd.json("list")][0]
        assert name["public_url"] == url
        assert get_through(name["relay_port"]) == "hello through the relay\n"
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=10)
    finally:
        finish(rd, proc)
    assert proc.returncode == 0
    wait_for(lambda: rapi.state()["sockets"] == [], timeout=10, what="the socket deleted")

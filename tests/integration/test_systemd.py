"""systemd integration without systemd as PID 1 (SPEC §5, issue 5 item 4).

What is tested for real here:
- socket activation: systemd-socket-activate passes the control socket (LISTEN_FDS with
  LISTEN_FDNAMES=control, or a lone unnamed fd) and the daemon uses it instead of binding
  the config's control_socket;
- sd_notify: a datagram socket standing in for systemd's NOTIFY_SOCKET receives READY,
  STATUS, WATCHDOG, RELOADING+MONOTONIC_USEC and STOPPING;
- journald: a private systemd-journald, started in its own mount namespace with /run bound
  to a temp dir (the machine's /run, /var/log/journal and any real journal are never
  touched), receives the daemon's structured entries, read back with journalctl -o json;
- without the journal: one "<level>: <binding>: <message>" line per event on stderr.
"""
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import MYSOCKETCTL, MYSOCKETD, wait_for

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
JOURNALD = next((p for p in ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald")
                 if os.path.exists(p)), None)
JOURNALCTL = shutil.which("journalctl")
MESSAGE_ID_DOWN = "a4b3c2d1e0f94a8b8c7d6e5f40312233"  # common/log.h, etc/mysocketd.catalog
LEVELS = ("emerg", "alert", "crit", "error", "warning", "notice", "info", "debug")
LINE = re.compile(r"^(%s): \S" % "|".join(LEVELS))
BINDING_STATUS = re.compile(r"^\d+/\d+ bindings up(, \d+ failed)?$")


def binding(name, port, remote_port):
    return f'[binding "{name}"]\nport = {port}\nremote_port = {remote_port}\n\n'


def configure(daemon, bindings, **kw):
    """The config, plus a real key: the tunnel engine fails for good without one, and these
    bindings should stay in backoff (nothing listens on the relay port)."""
    daemon.make_identity()
    daemon.write_config(bindings, **kw)


def ctl(sock, *args, timeout=30):
    return subprocess.run([str(MYSOCKETCTL), "-s", str(sock)] + list(args),
                          capture_output=True, text=True, timeout=timeout)


def short_tmpdir():
    """sun_path holds 107 bytes; pytest's tmp_path can be longer than that."""
    return Path(tempfile.mkdtemp(prefix="msd-", dir="/tmp"))


# ---------------------------------------------------------------- socket activation

def start_activated(daemon, listen, fdname):
    args = [SOCKET_ACTIVATE, "-l", str(listen)]
    if fdname is not None:
        args.append(f"--fdname={fdname}")
    # systemd-socket-activate listens, waits for the first connection (there is no --now),
    # then execs the program in place, so the pid it starts with becomes mysocketd's.
    daemon.logf = open(daemon.log, "ab")
    daemon.proc = subprocess.Popen(args + [str(MYSOCKETD), "-c", str(daemon.config)],
                                   stdout=daemon.logf, stderr=subprocess.STDOUT)
    wait_for(lambda: listen.exists() or daemon.proc.poll() is not None, timeout=10,
             what="systemd-socket-activate to listen")
    assert daemon.proc.poll() is None, daemon.log_text()
    assert stat.S_ISSOCK(listen.stat().st_mode)


def exe_of(pid):
    return os.path.realpath(f"/proc/{pid}/exe")


@pytest.mark.skipif(not SOCKET_ACTIVATE, reason="systemd-socket-activate not installed")
@pytest.mark.parametrize("fdname", ["control", None], ids=["fdname-control", "lone-unnamed-fd"])
def test_socket_activation_uses_the_passed_control_socket(daemon, fdname):
    d = short_tmpdir()
    try:
        listen = d / "activated.sock"
        configure(daemon, binding("web", 8000, 9000))
        start_activated(daemon, listen, fdname)
        # Not started yet: the activator is waiting for a connection.
        assert exe_of(daemon.proc.pid) == os.path.realpath(SOCKET_ACTIVATE)
        # The first connection starts the daemon, which then answers it on the passed fd.
        p = ctl(listen, "status")
        assert p.returncode == 0, (p.stdout, p.stderr, daemon.log_text())
        assert exe_of(daemon.proc.pid) == os.path.realpath(MYSOCKETD)
        env = open(f"/proc/{daemon.proc.pid}/environ", "rb").read().split(b"\0")
        assert b"LISTEN_FDS=1" in env
        assert (b"LISTEN_FDNAMES=control" in env) == (fdname == "control")
        st = json.loads(ctl(listen, "--json", "status").stdout)
        assert st["bindings"] == 1, st
        # status and the start line name the socket it really serves, not the config's.
        assert st["control_socket"] == str(listen), st
        assert f"control socket {listen} (from systemd)" in daemon.log_text()
        # The passed socket is the control socket: commands work through it...
        assert ctl(listen, "add", "api", "--port", "8080", "--remote-port", "9080").returncode == 0
        names = [b["name"] for b in json.loads(ctl(listen, "--json", "list").stdout)]
        assert names == ["web", "api"]
        # Still true after a reload replaced the config the path was first read from.
        assert ctl(listen, "reload").returncode == 0
        st = json.loads(ctl(listen, "--json", "status").stdout)
        assert st["control_socket"] == str(listen), st
        # ...and the config's control_socket was never created.
        assert not daemon.socket.exists()
        assert daemon.stop() == 0
        # The socket belongs to the socket unit (RemoveOnStop=): the daemon leaves it alone.
        assert listen.exists()
        assert not daemon.socket.exists()
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(not SOCKET_ACTIVATE, reason="systemd-socket-activate not installed")
def test_socket_activation_ignores_an_fd_with_another_name(daemon):
    """A single fd named something else is not ours: the daemon binds its own socket."""
    d = short_tmpdir()
    try:
        listen = d / "other.sock"
        configure(daemon, binding("web", 8000, 9000))
        start_activated(daemon, listen, "metrics")
        with socket.socket(socket.AF_UNIX) as s:  # the trigger; nobody will accept it
            s.connect(str(listen))
            wait_for(lambda: daemon.socket.exists() or daemon.proc.poll() is not None, timeout=10,
                     what="the daemon to bind its configured control socket")
        assert daemon.proc.poll() is None, daemon.log_text()
        assert daemon.ctl("status").returncode == 0
        assert daemon.stop() == 0
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- sd_notify

class NotifyListener:
    """A stand-in for systemd's notify socket: collects every datagram with its arrival time.

    When READY=1 arrives, it checks at once that the control socket accepts connections,
    which is what READY promises (SPEC §5)."""

    def __init__(self, path, control_socket):
        self.path = path
        self.control_socket = control_socket
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages = []  # (monotonic time, {key: value}, raw text)
        self.ready_checks = []  # for each READY=1: did the control socket accept a connection?
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            text = data.decode()
            fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
            if fields.get("READY") == "1":
                try:
                    with socket.socket(socket.AF_UNIX) as c:
                        c.connect(str(self.control_socket))
                    self.ready_checks.append(True)
                except OSError:
                    self.ready_checks.append(False)
            with self.lock:
                self.messages.append((time.monotonic(), fields, text))

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def find(self, key, value=None, start=0, match=None):
        """Indexes (into the snapshot) of messages from `start` on carrying key (=value)."""
        msgs = self.snapshot()
        out = []
        for i in range(start, len(msgs)):
            f = msgs[i][1]
            if key in f and (value is None or f[key] == value) and (match is None or match(f[key])):
                out.append(i)
        return out

    def wait(self, key, value=None, start=0, match=None, timeout=10):
        return wait_for(lambda: self.find(key, value, start, match), timeout=timeout,
                        what=f"{key}={value or match or '*'} on the notify socket")[0]

    def statuses(self, start=0):
        msgs = self.snapshot()
        return [msgs[i][1]["STATUS"] for i in self.find("STATUS", start=start)]


@pytest.fixture
def notify(daemon, monkeypatch):
    # sd_watchdog_enabled() honours WATCHDOG_PID if set; it must not leak in from outside.
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    d = short_tmpdir()
    n = NotifyListener(d / "notify", daemon.socket)
    yield n
    n.close()
    shutil.rmtree(d, ignore_errors=True)


def start_notified(daemon, notify, watchdog_usec=None):
    env = {"NOTIFY_SOCKET": str(notify.path)}
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    daemon.start(extra_env=env)


def monotonic_usec():
    return time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6


def check_reload(notify, trigger):
    start = len(notify.snapshot())
    trigger()
    i = notify.wait("RELOADING", "1", start=start)
    msgs = notify.snapshot()
    fields = msgs[i][1]
    # systemd needs MONOTONIC_USEC in the same datagram as RELOADING=1 (Type=notify-reload).
    assert "MONOTONIC_USEC" in fields, msgs[i][2]
    assert re.fullmatch(r"\d+", fields["MONOTONIC_USEC"]), msgs[i][2]
    assert abs(int(fields["MONOTONIC_USEC"]) - monotonic_usec()) < 5e6, (fields, monotonic_usec())
    # READY=1 after it ends the reload.
    j = notify.wait("READY", "1", start=i + 1)
    assert j > i
    return i, j


def test_notify_ready_status_watchdog_reload_stopping(daemon, notify):
    configure(daemon, binding("web", 8000, 9000), backoff={"initial": "3600", "max": "3600"})
    start_notified(daemon, notify, watchdog_usec=2000000)

    # READY=1, once, and only when the control socket already accepted connections.
    notify.wait("READY", "1")
    assert notify.ready_checks == [True]
    assert len(notify.find("READY")) == 1

    # STATUS: "N/M bindings up", kept current as bindings come and go.
    notify.wait("STATUS", "0/1 bindings up")
    assert all(BINDING_STATUS.match(s) for s in notify.statuses()), notify.statuses()
    start = len(notify.snapshot())
    daemon.ctl("add", "api", "--port", "8080", "--remote-port", "9080")
    notify.wait("STATUS", "0/2 bindings up", start=start)
    start = len(notify.snapshot())
    daemon.ctl("remove", "api")
    notify.wait("STATUS", "0/1 bindings up", start=start)

    # WATCHDOG=1 from the loop: at least 3 in 5 s with WATCHDOG_USEC = 2 s, never 2 s apart.
    start = len(notify.snapshot())
    time.sleep(5)
    msgs = notify.snapshot()
    wd = [msgs[i][0] for i in notify.find("WATCHDOG", "1", start=start)]
    assert len(wd) >= 3, [m[2] for m in msgs[start:]]
    assert max(b - a for a, b in zip(wd, wd[1:])) < 2.0, wd
    assert not notify.find("WATCHDOG", match=lambda v: v != "1")

    # Reload by SIGHUP, then by mysocketctl: RELOADING=1 + MONOTONIC_USEC, then READY=1.
    check_reload(notify, lambda: os.kill(daemon.proc.pid, signal.SIGHUP))
    check_reload(notify, lambda: daemon.ctl("reload"))
    assert notify.ready_checks == [True, True, True]

    # A bad config: still RELOADING ... READY=1 (the old config stays in force), and STATUS
    # says the reload failed and why.
    good = daemon.config.read_text()
    daemon.config.write_text(good + binding("bad", "80x", 9001))
    i, _ = check_reload(notify, lambda: os.kill(daemon.proc.pid, signal.SIGHUP))
    st = notify.snapshot()[notify.wait("STATUS", start=i, match=lambda v: "reload failed" in v)][1]["STATUS"]
    assert '[binding "bad"] port: "80x" is not a port' in st, st
    assert str(daemon.config) in st, st
    assert daemon.proc.poll() is None
    # Fixed: the status goes back to the binding count.
    start = len(notify.snapshot())
    daemon.config.write_text(good)
    check_reload(notify, lambda: daemon.ctl("reload"))
    notify.wait("STATUS", "0/1 bindings up", start=start)
    # status after reloads: the daemon's own copy of the socket path, not the freed config's.
    assert daemon.json("status")["control_socket"] == str(daemon.socket)

    # SIGTERM: STOPPING=1 and a clean exit within 5 s.
    start = len(notify.snapshot())
    t0 = time.monotonic()
    os.kill(daemon.proc.pid, signal.SIGTERM)
    assert daemon.proc.wait(5) == 0
    assert time.monotonic() - t0 < 5
    notify.wait("STOPPING", "1", start=start, timeout=2)
    assert not notify.find("READY", start=start)


def test_no_watchdog_pings_without_watchdog_usec(daemon, notify):
    configure(daemon, binding("web", 8000, 9000))
    start_notified(daemon, notify)
    notify.wait("READY", "1")
    time.sleep(2.5)
    assert not notify.find("WATCHDOG"), [m[2] for m in notify.snapshot()]


def test_watchdog_pid_of_another_process_disables_the_watchdog(daemon, notify):
    """WATCHDOG_PID names the process meant to ping; the daemon is not that process."""
    configure(daemon, binding("web", 8000, 9000))
    daemon.start(extra_env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "500000",
                            "WATCHDOG_PID": "1"})
    notify.wait("READY", "1")
    time.sleep(1.5)
    assert not notify.find("WATCHDOG"), [m[2] for m in notify.snapshot()]


# ---------------------------------------------------------------- logging to stderr

def test_stderr_has_one_line_per_event_without_the_journal(daemon):
    configure(daemon, binding("web", 8000, 9000))
    # A JOURNAL_STREAM that does not match stderr (as after a redirect) means: not the journal.
    daemon.start(extra_env={"JOURNAL_STREAM": "0:0"})
    daemon.ctl("add", "api", "--port", "8080", "--remote-port", "9080")
    daemon.wait_state("api", "backoff")
    daemon.wait_state("web", "backoff")
    daemon.ctl("remove", "api")
    os.kill(daemon.proc.pid, signal.SIGHUP)
    wait_for(lambda: "reloaded:" in daemon.log_text(), what="the reload line")
    assert daemon.stop() == 0
    lines = daemon.log_text().splitlines()
    assert lines
    for line in lines:
        assert LINE.match(line), f"not a '<level>: ...' line: {line!r}"
    # Binding events carry the binding's name: "<level>: <binding>: <message>".
    assert any(re.match(r"^info: api: added: local 127\.0\.0\.1:8080$", l) for l in lines), lines
    assert any(re.match(r"^notice: api: .*; retrying in \d+\.\d s$", l) for l in lines), lines
    assert any(re.match(r"^notice: web: .*; retrying in \d+\.\d s$", l) for l in lines), lines
    assert any(re.match(r"^info: api: removed$", l) for l in lines), lines
    assert any(re.match(r"^info: reloaded: \d+ added", l) for l in lines), lines
    # The journal's "<N>" priority prefix only appears if journal sending failed.
    assert not any(l.startswith("<") for l in lines)


# ---------------------------------------------------------------- journald

JOURNALD_CONF = """[Journal]
Storage=volatile
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
RateLimitBurst=0
"""


class PrivateJournal:
    """systemd-journald in its own mount namespace: /run is a temp dir there (sockets in
    run/systemd/journal, files in run/log/journal), /var/log/journal an empty temp dir and
    journald.conf our own. Nothing of the machine's journal is touched or read."""

    def __init__(self, root: Path):
        self.root = root
        self.run = root / "run"
        self.varlog = root / "varlog"
        self.conf = root / "journald.conf"
        self.run.mkdir()
        self.varlog.mkdir()
        self.conf.write_text(JOURNALD_CONF)
        self.log = open(root / "journald.log", "wb")
        binds = [(self.run, "/run"), (self.conf, "/etc/systemd/journald.conf")]
        if os.path.isdir("/var/log/journal"):
            binds.append((self.varlog, "/var/log/journal"))
        script = " && ".join(f"mount --bind {src} {dst}" for src, dst in binds)
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")}
        # unshare and sh exec in place: the pid is journald's, and the namespace lives with it.
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                      f"{script} && exec {JOURNALD}"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: self.proc.poll() is not None or (self.run / "systemd/journal/stdout").exists(),
                 timeout=10, what="the private journald's sockets")
        if self.proc.poll() is not None:
            raise AssertionError(f"journald exited {self.proc.returncode}: "
                                 f"{(root / 'journald.log').read_text(errors='replace')}")
        wait_for(lambda: (self.run / "systemd/journal/socket").exists(), what="the journal socket")
        assert exe_of(self.proc.pid) == os.path.realpath(JOURNALD)

    def stream_fd(self, identifier):
        """What systemd does for StandardError=journal: a stdout stream to journald."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.run / "systemd/journal/stdout"))
        # identifier, unit id, priority, level prefix, forward to syslog/kmsg/console
        s.sendall(f"{identifier}\n\n6\n1\n0\n0\n0\n".encode())
        s.shutdown(socket.SHUT_RD)
        return s

    def in_namespace(self, argv):
        return ["nsenter", "-t", str(self.proc.pid), "--mount", "--"] + argv

    def entries(self, *matches):
        p = subprocess.run([JOURNALCTL, "-D", str(self.run / "log/journal"), "-o", "json",
                            "--no-pager", "-q"] + list(matches),
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        return [json.loads(l) for l in p.stdout.splitlines() if l.strip()]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def journal(tmp_path):
    if not (JOURNALD and JOURNALCTL and shutil.which("unshare") and shutil.which("nsenter")):
        pytest.skip("needs systemd-journald, journalctl, unshare and nsenter")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a mount namespace here: {probe.stderr.strip()}")
    root = tmp_path / "journal"
    root.mkdir()
    j = PrivateJournal(root)
    yield j
    j.stop()


def start_in_journal(daemon, journal):
    """Starts mysocketd with stderr a journal stream and sd_journal_send reaching the private
    journald (in its namespace); returns the pid."""
    stream = journal.stream_fd("mysocketd")
    st = os.fstat(stream.fileno())
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    # In journald's namespace, /run/systemd/journal/socket (sd_journal_send) is the private one.
    daemon.proc = subprocess.Popen(journal.in_namespace([str(MYSOCKETD), "-c", str(daemon.config)]),
                                   stdout=stream.fileno(), stderr=stream.fileno(), env=env)
    stream.close()
    pid = daemon.proc.pid
    wait_for(lambda: daemon.proc.poll() is not None or daemon.ctl("status", check=False).returncode == 0,
             what="mysocketd to answer")
    assert daemon.proc.poll() is None
    assert exe_of(pid) == os.path.realpath(MYSOCKETD)  # nsenter exec'd it in place
    return pid


def test_journal_entries_carry_the_mysocketd_fields(daemon, journal):
    configure(daemon, binding("web", 8000, 9000))
    pid = start_in_journal(daemon, journal)
    daemon.ctl("add", "api", "--port", "8080", "--remote-port", "9080")
    daemon.wait_state("api", "backoff")
    daemon.wait_state("web", "backoff")
    daemon.ctl("remove", "api")
    os.kill(pid, signal.SIGHUP)

    def mine():
        return [e for e in journal.entries(f"_PID={pid}") if e.get("SYSLOG_IDENTIFIER") == "mysocketd"]
    wait_for(lambda: any(e.get("MYSOCKETD_EVENT") == "reload" for e in mine()), timeout=15,
             what="the reload entry in the journal")
    assert daemon.stop() == 0
    entries = wait_for(lambda: (lambda es: es if any("stopping" in e["MESSAGE"] for e in es) else None)(mine()),
                       what="the stop entry in the journal")

    # Structured entries over the native protocol, never text lines on the stream.
    assert all(e["_TRANSPORT"] == "journal" for e in entries), \
        [(e["_TRANSPORT"], e["MESSAGE"]) for e in entries if e["_TRANSPORT"] != "journal"]
    for e in entries:
        assert re.fullmatch(r"[0-7]", e["PRIORITY"]), e
        assert "\n" not in e["MESSAGE"], e
    started = [e for e in entries if e["MESSAGE"].startswith("mysocketd ") and " started: " in e["MESSAGE"]]
    assert len(started) == 1 and started[0]["PRIORITY"] == "6", started

    def events(name):
        return {(e["MYSOCKETD_EVENT"], e["PRIORITY"]) for e in entries
                if e.get("MYSOCKETD_BINDING") == name and "MYSOCKETD_EVENT" in e}

    # A runtime binding's story: added, backing off, removed. Never up: never down.
    api = events("api")
    assert ("add", "6") in api, api
    assert ("backoff", "5") in api, api
    assert ("remove", "6") in api, api
    web = events("web")
    assert ("backoff", "5") in web, web
    assert not any(ev == "down" for ev, _ in api | web), (api, web)
    # Daemon-wide events have no binding field.
    reload_ = [e for e in entries if e.get("MYSOCKETD_EVENT") == "reload"]
    assert reload_ and all("MYSOCKETD_BINDING" not in e for e in reload_), reload_
    # No binding was ever up: no entry with the catalog's down MESSAGE_ID.
    assert not any(e.get("MESSAGE_ID") == MESSAGE_ID_DOWN for e in entries)
    # Every binding's MESSAGE names it.
    assert all(e["MESSAGE"].startswith(e["MYSOCKETD_BINDING"] + ": ") for e in entries if "MYSOCKETD_BINDING" in e)
    # Bindings without an API socket have no socket/tunnel ids to log.
    assert not any("MYSOCKETD_SOCKET_ID" in e or "MYSOCKETD_TUNNEL_ID" in e for e in entries)

    # journalctl MYSOCKETD_BINDING=web: one binding's whole story, nothing else.
    web_only = journal.entries("MYSOCKETD_BINDING=web")
    assert web_only and all(e["MYSOCKETD_BINDING"] == "web" for e in web_only)
    assert {e["MYSOCKETD_EVENT"] for e in web_only} >= {"backoff"}
    assert len(web_only) == sum(1 for e in entries if e.get("MYSOCKETD_BINDING") == "web")
    api_only = journal.entries("MYSOCKETD_BINDING=api", "MYSOCKETD_EVENT=remove")
    assert [e["MESSAGE"] for e in api_only] == ["api: removed"]


MESSAGE_ID_UP = "6c1e8a7b0f2d4b5e9a3c1d2e3f405162"
CATALOG = Path(__file__).resolve().parents[2] / "etc" / "mysocketd.catalog"


def catalog_fields(message_id):
    """The @FIELD@ placeholders of one catalog entry."""
    text = CATALOG.read_text().split(f"-- {message_id}\n", 1)[1].split("\n-- ", 1)[0]
    return set(re.findall(r"@([A-Z0-9_]+)@", text))


def test_journal_tells_a_bindings_story_truthfully(daemon, relay, journal, tmp_path):
    """Issue 13 item 13: `down` (with its MESSAGE_ID) only when a binding that was up goes
    down, removal and daemon stop included; every MESSAGE names its binding; the catalog's
    placeholders are all fields of the entries it explains (direct mode: no socket ids)."""
    from conftest import free_port
    web_port, rt_port = free_port(), free_port()
    daemon.configure_relay(relay, binding("web", 8000, web_port))
    pid = start_in_journal(daemon, journal)
    daemon.wait_state("web", "up")
    daemon.ctl("add", "rt", "--port", "8001", "--remote-port", str(rt_port))
    daemon.wait_state("rt", "up")
    daemon.ctl("remove", "rt")
    assert daemon.stop() == 0

    def mine():
        return [e for e in journal.entries(f"_PID={pid}") if e.get("SYSLOG_IDENTIFIER") == "mysocketd"]
    entries = wait_for(lambda: (lambda es: es if any("web: down: mysocketd is stopping" == e["MESSAGE"]
                                                     for e in es) else None)(mine()),
                       what="web's down entry at stop in the journal")
    downs = [(e["MYSOCKETD_BINDING"], e["MESSAGE"]) for e in entries if e.get("MYSOCKETD_EVENT") == "down"]
    assert downs == [("rt", "rt: down: removed"), ("web", "web: down: mysocketd is stopping")], downs
    for e in entries:
        if "MYSOCKETD_BINDING" in e:
            assert e["MESSAGE"].startswith(e["MYSOCKETD_BINDING"] + ": "), e["MESSAGE"]
    ups = [e for e in entries if e.get("MESSAGE_ID") == MESSAGE_ID_UP]
    downs = [e for e in entries if e.get("MESSAGE_ID") == MESSAGE_ID_DOWN]
    assert len(ups) == 2 and len(downs) == 2
    assert all(e.get("MYSOCKETD_EVENT") == "down" for e in downs)
    # journalctl -x fills each @FIELD@ from the entry, else prints the bare name: all must be there.
    for es, mid in ((ups, MESSAGE_ID_UP), (downs, MESSAGE_ID_DOWN)):
        need = catalog_fields(mid)
        assert "MYSOCKETD_RELAY" in need
        for e in es:
            assert need <= set(e), (mid, need - set(e))
        assert all(e["MYSOCKETD_RELAY"].startswith("relay 127.0.0.1 port ") for e in es)

    # And for real: the catalog compiled into a root of our own, the journal files copied
    # there, journalctl -x prints no placeholder and no bare field name.
    root = tmp_path / "xroot"
    (root / "usr/lib/systemd/catalog").mkdir(parents=True)
    shutil.copy(CATALOG, root / "usr/lib/systemd/catalog")
    subprocess.run([JOURNALCTL, f"--root={root}", "--update-catalog"], check=True, capture_output=True, timeout=60)
    # journalctl -x reads the database at its fixed path: our own, in a mount namespace.
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f"mount --bind {root}/var/lib/systemd/catalog /var/lib/systemd/catalog && exec "
                        f"{JOURNALCTL} -D {journal.run / 'log/journal'} -x --no-pager -q _PID={pid}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "Subject: Tunnel of binding web is down" in p.stdout, p.stdout[-3000:]
    assert "MYSOCKETD_" not in p.stdout.replace("MYSOCKETD_BINDING=", ""), p.stdout[-3000:]
    assert "@" not in "".join(l for l in p.stdout.splitlines() if l.startswith("░░")), p.stdout[-3000:]


def test_permanent_failure_is_logged_at_error_level(daemon, journal):
    daemon.write_config(binding("web", 8000, 9000), ssh={"identity_file": str(daemon.root / "missing_key")})
    pid = start_in_journal(daemon, journal)
    daemon.wait_state("web", "failed")
    assert daemon.stop() == 0
    es = wait_for(lambda: [e for e in journal.entries(f"_PID={pid}", "MYSOCKETD_EVENT=failed")],
                  what="the failed entry")
    assert es and all(int(e["PRIORITY"]) <= 4 for e in es), es
    assert es[0]["MESSAGE"].startswith("web: failed: ") and "missing_key" in es[0]["MESSAGE"], es[0]["MESSAGE"]
    assert not journal.entries(f"_PID={pid}", f"MESSAGE_ID={MESSAGE_ID_DOWN}")


def test_status_returns_to_the_binding_count_after_a_failed_reload(daemon, notify):
    configure(daemon, binding("web", 8000, 9000))
    start_notified(daemon, notify)
    notify.wait("STATUS", "0/1 bindings up")
    start = len(notify.snapshot())
    daemon.config.write_text(daemon.config.read_text() + "[frobnicate]\n")
    assert daemon.ctl("reload", check=False).returncode != 0
    i = notify.wait("STATUS", match=lambda v: v.startswith("reload failed: ") and "unknown section" in v,
                    start=start)
    t = notify.snapshot()[i][0]
    # Shown, then the count again (MANAGER_RELOAD_ERROR_USEC, 10 s), with bindings retrying meanwhile.
    j = notify.wait("STATUS", "0/1 bindings up", start=i + 1, timeout=20)
    assert 9 <= notify.snapshot()[j][0] - t <= 15

"""The Debian package under a real systemd (issue 12 item 5).

Runs INSIDE a booted Debian container (tools/test-systemd.sh bookworm|trixie boots one with
systemd-nspawn and runs this file from a unit after boot), as root, with $MYSOCKETD_DEB
naming the .deb to test. The tests are one admin's story, in order: each builds on the
state the one before left (install, configure, reload, crash, purge).

The relay is the container's own sshd (user "relay", key login, loopback only: the
container has a private network); the local service is python's http.server. Every
command is what an admin would type; the timings are the shipped unit's (WatchdogSec=30,
RestartSec=5), not shortened by a drop-in.
"""
import grp
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

DEB = os.environ.get("MYSOCKETD_DEB", "")
CONF = Path("/etc/mysocketd/mysocketd.ini")
KEY = Path("/etc/mysocketd/id_ed25519")
STATE = Path("/var/lib/mysocketd")
SOCK = Path("/run/mysocketd/control.sock")
WWW = Path("/srv/ci-www")
HELLO = "hello through the tunnel\n"
MAX_EXPOSURE = 1.5
MESSAGE_ID_UP = "6c1e8a7b0f2d4b5e9a3c1d2e3f405162"     # common/log.h, etc/mysocketd.catalog

pytestmark = pytest.mark.skipif(not (DEB and os.path.isdir("/run/systemd/system")),
                                reason="runs inside a booted container: tools/test-systemd.sh")

GOOD = """[ssh]
server = 127.0.0.1
port = 22
user = relay
host_key_check = accept-new
keepalive_interval = 5

[backoff]
initial = 1
max = 5

[binding "web"]
port = 8000
remote_port = 9000
"""


def run(*argv, check=False, timeout=120, **kw):
    return subprocess.run(list(argv), capture_output=True, text=True, check=check,
                          timeout=timeout, **kw)


def wait_for(pred, timeout=30.0, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def prop(unit, name):
    return run("systemctl", "show", "-P", name, unit).stdout.strip()


def main_pid():
    return int(prop("mysocketd.service", "MainPID") or 0)


def binding(name):
    r = run("mysocketctl", "--json", "show", name)
    return json.loads(r.stdout) if r.returncode == 0 else None


def wait_up(name, timeout=30):
    return wait_for(lambda: (lambda b: b if b and b["state"] == "up" else None)(binding(name)),
                    timeout=timeout, what=f"binding {name} up ({binding(name)})")


def fetch(port=9000):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello.txt", timeout=10) as r:
        return r.read().decode()


def figure(text):
    """A measured figure, printed by tools/test-systemd.sh after the run."""
    with open("figures.txt", "a") as f:
        f.write(text + "\n")


def journal(*args):
    r = run("journalctl", "--no-pager", "-q", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module", autouse=True)
def booted():
    r = run("systemctl", "is-system-running", "--wait", timeout=300)
    failed = run("systemctl", "--failed", "--no-legend").stdout
    assert r.stdout.strip() in ("running", "degraded"), (r.stdout, failed)
    figure(f"boot: system {r.stdout.strip()}; failed units: {failed.strip() or 'none'}")
    yield
    run("systemctl", "stop", "ci-origin.service")


# ---------------------------------------------------------------- install

def test_install():
    r = run("apt-get", "install", "-y", DEB, timeout=600,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "ii" == run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "mysocketd").stdout.strip()


def test_user_and_modes():
    u = pwd.getpwnam("mysocketd")
    assert u.pw_uid < 1000 and u.pw_dir == str(STATE)
    assert u.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin")
    assert grp.getgrgid(u.pw_gid).gr_name == "mysocketd"
    st = Path("/etc/mysocketd").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o755, 0)
    st = CONF.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o644, 0)
    # Created by the running units: StateDirectory= and the socket unit.
    st = STATE.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o700, u.pw_uid, u.pw_gid)
    st = SOCK.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o660, 0, u.pw_gid)


def test_both_units_enabled_and_active():
    for unit in ("mysocketd.socket", "mysocketd.service"):
        assert run("systemctl", "is-enabled", unit).stdout.strip() == "enabled", unit
        assert run("systemctl", "is-active", unit).stdout.strip() == "active", \
            run("systemctl", "status", "--no-pager", "-l", unit).stdout
    assert prop("mysocketd.service", "User") == "mysocketd"
    # READY=1 came (Type=notify) and STATUS= is the daemon's binding count.
    assert re.fullmatch(r"\d+/\d+ bindings up.*", prop("mysocketd.service", "StatusText"))


def test_socket_activation_on_first_list():
    assert run("systemctl", "stop", "mysocketd.service").returncode == 0
    assert run("systemctl", "is-active", "mysocketd.service").stdout.strip() == "inactive"
    assert run("systemctl", "is-active", "mysocketd.socket").stdout.strip() == "active"
    assert SOCK.exists()
    r = run("mysocketctl", "list")
    assert r.returncode == 0, r.stderr
    assert run("systemctl", "is-active", "mysocketd.service").stdout.strip() == "active"
    assert main_pid() > 0
    # This start of the service got the control socket from the socket unit.
    invocation = prop("mysocketd.service", "InvocationID")
    assert f"control socket {SOCK} (from systemd)" in \
        journal(f"_SYSTEMD_INVOCATION_ID={invocation}", "-o", "cat")


def test_non_member_gets_77_member_gets_in():
    r = run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            "mysocketctl", "list")
    assert r.returncode == 77, (r.returncode, r.stdout, r.stderr)
    if "ci-member" not in {p.pw_name for p in pwd.getpwall()}:
        run("useradd", "-M", "-G", "mysocketd", "ci-member", check=True)
    r = run("setpriv", "--reuid=ci-member", "--regid=ci-member", "--init-groups",
            "mysocketctl", "list")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)


# ---------------------------------------------------------------- a direct-mode binding

def test_direct_binding_up_and_a_request_through_it():
    assert run("systemctl", "is-active", "ssh.service").stdout.strip() == "active"
    # The relay account, the daemon's key (only the daemon's user reads it).
    if "relay" not in {p.pw_name for p in pwd.getpwall()}:
        run("useradd", "-m", "-s", "/bin/sh", "relay", check=True)
    if not KEY.exists():
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(KEY), check=True)
    shutil.chown(KEY, "mysocketd", "mysocketd")
    KEY.chmod(0o600)
    ssh = Path("/home/relay/.ssh")
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_text(Path(f"{KEY}.pub").read_text())
    for p in (ssh, ssh / "authorized_keys"):
        shutil.chown(p, "relay", "relay")
    # The local service.
    WWW.mkdir(exist_ok=True)
    (WWW / "hello.txt").write_text(HELLO)
    run("systemd-run", "--unit=ci-origin", "--property=DynamicUser=yes", "python3", "-m",
        "http.server", "8000", "--bind", "127.0.0.1", "--directory", str(WWW), check=True)
    wait_for(lambda: run("python3", "-c", "import urllib.request as u;"
                         "u.urlopen('http://127.0.0.1:8000/hello.txt', timeout=2)").returncode == 0,
             what="the local http service")

    CONF.write_text(CONF.read_text() + GOOD)
    r = run("mysocketd", "--check-config")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = run("systemctl", "reload", "mysocketd")
    assert r.returncode == 0, r.stderr
    b = wait_up("web")
    assert b["source"] == "config" and b["relay_port"] == 9000, b
    # 127.0.0.1:9000 is the relay's end of the forward (sshd listens there for the tunnel).
    assert fetch() == HELLO
    assert wait_for(lambda: binding("web")["connections_total"] >= 1, what="the counted connection")
    assert prop("mysocketd.service", "StatusText").startswith("1/1 bindings up")
    # The relay's host key was recorded in the state directory (accept-new).
    assert (STATE / "known_hosts").stat().st_size > 0


def test_journal_one_binding_and_the_catalog():
    entries = [json.loads(l) for l in
               journal("-u", "mysocketd", "MYSOCKETD_BINDING=web", "-o", "json").splitlines()]
    assert entries and all(e["MYSOCKETD_BINDING"] == "web" for e in entries)
    assert "up" in {e.get("MYSOCKETD_EVENT") for e in entries}
    ups = [e for e in entries if e.get("MYSOCKETD_EVENT") == "up"]
    assert all(e.get("MESSAGE_ID") == MESSAGE_ID_UP for e in ups), ups
    # -x adds the catalog's explanation, with the binding's name filled in.
    text = journal("-x", "-u", "mysocketd", "MYSOCKETD_BINDING=web", "MYSOCKETD_EVENT=up")
    assert "Subject: Tunnel of binding web is up" in text, text
    assert "journalctl -u mysocketd MYSOCKETD_BINDING=web" in text, text
    assert MESSAGE_ID_UP in run("journalctl", "--list-catalog").stdout


def test_reload_with_a_bad_config_fails_and_says_why():
    good = CONF.read_text()
    pid = main_pid()
    CONF.write_text(good + '\n[binding "bad"]\nport = 80x\nremote_port = 9001\n')
    try:
        r = run("systemctl", "reload", "mysocketd")
        status = run("systemctl", "status", "--no-pager", "-l", "-n", "20", "mysocketd").stdout
        figure(f"systemctl reload (bad config): exit {r.returncode}: {r.stderr.strip()}")
        figure("systemctl status mysocketd after it:\n  " + "\n  ".join(
            l for l in status.splitlines() if re.search(r"Active:|Status:|80x|reload|Reload", l)))
        assert r.returncode != 0, (r.stdout, r.stderr)
        assert "failed" in r.stderr, r.stderr
        assert '[binding "bad"] port: "80x" is not a port' in status, status
        assert "reload failed" in status, status          # the daemon's STATUS=
        assert "config not reloaded" in status, status    # mysocketctl's stderr in the journal
        # The running config stays in force: same process, web still up and serving.
        assert run("systemctl", "is-active", "mysocketd").stdout.strip() == "active"
        assert main_pid() == pid
        assert binding("web")["state"] == "up" and binding("bad") is None
        assert fetch() == HELLO
    finally:
        CONF.write_text(good)   # the later tests restart the daemon: it must start
    # Fixed: the reload succeeds and the status is the binding count again.
    r = run("systemctl", "reload", "mysocketd")
    assert r.returncode == 0, r.stderr
    assert prop("mysocketd.service", "StatusText").startswith("1/1 bindings up")


# ---------------------------------------------------------------- crashes

def test_watchdog_restarts_a_stopped_daemon():
    pid = main_pid()
    restarts = int(prop("mysocketd.service", "NRestarts"))
    assert prop("mysocketd.service", "WatchdogUSec") == "30s"
    t0 = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: main_pid() not in (0, pid) and
                 run("systemctl", "is-active", "mysocketd").stdout.strip() == "active",
                 timeout=75, interval=1, what="systemd to restart the stopped daemon")
    finally:
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGCONT)
    took = time.monotonic() - t0
    figure(f"watchdog: SIGSTOP to a new active daemon in {took:.1f} s")
    assert 25 < took < 75, took       # WatchdogSec=30 (+ RestartSec=5)
    assert int(prop("mysocketd.service", "NRestarts")) == restarts + 1
    assert "Watchdog timeout" in journal("-u", "mysocketd.service", "-b", "-o", "cat")
    wait_up("web")
    assert fetch() == HELLO


def test_kill_9_restarts_with_the_state_kept():
    r = run("mysocketctl", "add", "rt", "--port", "8000", "--remote-port", "9002", "--wait=30")
    assert r.returncode == 0, r.stderr
    assert fetch(9002) == HELLO
    known_hosts = (STATE / "known_hosts").read_bytes()
    pid = main_pid()
    restarts = int(prop("mysocketd.service", "NRestarts"))
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: main_pid() not in (0, pid), timeout=30, what="the restart after kill -9")
    figure(f"kill -9: restarted in {time.monotonic() - t0:.1f} s (RestartSec=5)")
    assert int(prop("mysocketd.service", "NRestarts")) == restarts + 1
    assert binding("rt")["source"] == "runtime"
    wait_up("rt")
    wait_up("web")
    assert fetch(9002) == HELLO and fetch(9000) == HELLO
    assert (STATE / "known_hosts").read_bytes() == known_hosts
    assert (STATE / "bindings.d/rt.ini").exists()


def test_security_exposure():
    r = run("systemd-analyze", "security", "--no-pager", "mysocketd.service")
    m = re.search(r"Overall exposure level for mysocketd\.service: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    figure(f"systemd-analyze security mysocketd.service: exposure {m.group(1)}")
    assert float(m.group(1)) <= MAX_EXPOSURE, r.stdout


# ---------------------------------------------------------------- purge

def test_purge_leaves_nothing():
    files = [l for l in run("dpkg", "-L", "mysocketd", check=True).stdout.splitlines()
             if l and not os.path.isdir(l)]
    assert "/usr/sbin/mysocketd" in files
    r = run("apt-get", "purge", "-y", "mysocketd", timeout=600,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "mysocketd").stdout.strip() in ("", "un")
    assert [f for f in files if os.path.lexists(f)] == []
    for path in (str(STATE), "/run/mysocketd"):
        assert not os.path.lexists(path), path
    # What stays is the admin's own: the key made above (dpkg keeps files it did not ship,
    # so it keeps their directory too). Without them the directory goes.
    left = sorted(p.name for p in Path("/etc/mysocketd").iterdir())
    assert left == ["id_ed25519", "id_ed25519.pub"], left
    for unit in ("mysocketd.service", "mysocketd.socket"):
        assert run("systemctl", "is-active", unit).stdout.strip() == "inactive", unit
        assert prop(unit, "LoadState") == "not-found", unit
    wants = [str(p) for p in Path("/etc/systemd/system").rglob("mysocketd*")]
    assert wants == []
    assert run("pgrep", "-u", "mysocketd").returncode == 1
    assert MESSAGE_ID_UP not in run("journalctl", "--list-catalog").stdout

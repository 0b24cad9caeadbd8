"""Shared fixtures: the real mysocketd and mysocketctl binaries, run in a temp dir.

Binaries come from $MYSOCKETD_BUILDDIR (default: <repo>/build, where tools/test.sh
builds). Every process a test starts is stopped by pid when the test ends.
"""
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MYSOCKETD_BUILDDIR", REPO / "build"))
MYSOCKETD = BUILD / "mysocketd"
MYSOCKETCTL = BUILD / "mysocketctl"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


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

    def start(self, wait=True, extra_env=None):
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        env.pop("NOTIFY_SOCKET", None)
        env.update(extra_env or {})
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([str(MYSOCKETD), "-c", str(self.config)],
                                     stdout=self.logf, stderr=subprocess.STDOUT, env=env)
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
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return json.loads(buf) if buf else None


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path)
    yield d
    d.stop()


def pytest_configure(config):
    for b in (MYSOCKETD, MYSOCKETCTL):
        if not b.exists():
            raise pytest.UsageError(f"{b} not found: build first (tools/test.sh does), "
                                    "or set MYSOCKETD_BUILDDIR")

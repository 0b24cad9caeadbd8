"""Drives tests/emulator/api_emulator.py from pytest: start, inspect, inject faults, stop.

    from emulator import Emulator          # with tests/ on sys.path
    with Emulator(tmp_path, token_lifetime=10) as api:
        ... config url = api.url ...
        api.fault("POST /socket", "5xx", count=2)
        assert api.state()["counts"]["POST /socket"] == 1
"""

import json
import os
import select
import signal
import subprocess
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "api_emulator.py")
PYTHON = "/usr/bin/python3"


class Emulator:
    def __init__(self, tmpdir, users=(("ops@example.com", "s3cret-pw", "ops"),),
                 token_lifetime=18000, relay_port_base=20000, tunnel_server="127.0.0.1"):
        self.tmpdir = str(tmpdir)
        self.users = list(users)
        self.token_lifetime = token_lifetime
        self.relay_port_base = relay_port_base
        self.tunnel_server = tunnel_server
        self.proc = None
        self.port = None
        self.log_path = os.path.join(self.tmpdir, "api-emulator.log")

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self, timeout=10):
        cmd = [PYTHON, SCRIPT, "--port", "0", "--token-lifetime", str(self.token_lifetime),
               "--relay-port-base", str(self.relay_port_base),
               "--tunnel-server", self.tunnel_server]
        for email, password, user_name in self.users:
            cmd += ["--user", "%s:%s:%s" % (email, password, user_name)]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                self.stop()
                raise RuntimeError("API emulator did not start; see %s" % self.log_path)
            chunk = os.read(self.proc.stdout.fileno(), 1)
            if not chunk:
                self.stop()
                raise RuntimeError("API emulator exited; see %s" % self.log_path)
            line += chunk
        word, port = line.decode().split()
        assert word == "LISTENING", line
        self.port = int(port)
        return self

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc.stdout.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    # --- the control plane ---
    def state(self):
        return self._call("GET", "/_emulator/state")

    def counts(self):
        return self.state()["counts"]

    def fault(self, path="*", kind="5xx", count=None, delay=None, status=None):
        body = {"path": path, "kind": kind, "count": count, "delay": delay}
        if status is not None:
            body["status"] = status
        return self._call("POST", "/_emulator/fault", body)

    def clear_faults(self):
        return self._call("DELETE", "/_emulator/fault")

    def revoke(self):
        return self._call("POST", "/_emulator/revoke", {})

    def reset_counts(self):
        return self._call("POST", "/_emulator/reset-counts", {})

    def set_token_lifetime(self, seconds):
        return self._call("POST", "/_emulator/config", {"token_lifetime": seconds})

    def configure(self, **kw):
        """token_lifetime, token_mode ("normal"|"expired"), clock_offset (s),
        informational ("seed"|"null"|"missing"|"odd"): see api_emulator.py."""
        return self._call("POST", "/_emulator/config", kw)

    def tunnel_connected(self, tunnel_id):
        return self._call("POST", "/_emulator/tunnel/%s/connected" % tunnel_id, {})

    def delete_socket(self, socket_id):
        """Makes a socket vanish behind the daemon's back (the API will answer 404)."""
        try:
            self._call("DELETE", "/_emulator/socket/" + socket_id)
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise

    # --- the API itself, as a client would call it ---
    def login(self, email=None, password=None):
        email = email or self.users[0][0]
        password = password or self.users[0][1]
        return self._call("POST", "/login", {"email": email, "password": password})["token"]

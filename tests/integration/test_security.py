"""Security checks as tests (issue 6 item 5), the ones not already elsewhere:

- who may change bindings (root, the daemon's user, control_group; others get 77):
  tests/integration/test_permissions.py;
- a changed host key under accept-new and strict (binding failed, both fingerprints shown):
  tests/integration/test_tunnel.py::test_changed_host_key_is_refused; here: a pinned
  `SHA256:` fingerprint that does not match;
- 1000 connections that send nothing do not lock out a new client:
  tests/integration/test_control_robustness.py::test_1000_silent_connections_do_not_lock_out_a_new_client
  (with the stalled-client, oversize-line and never-reading-client tests next to it);
- a readable password file given to `mysocketctl login`: test_api.py; here: the daemon's own
  [api] password_file;
- here too: an identity file readable by others, and no password, token or private key
  material in any daemon log line or mysocketctl output (all captured and searched).
"""
import base64
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import MYSOCKETCTL, Daemon, free_port, free_port_block, http_site, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emulator.harness import Emulator  # noqa: E402

EMAIL, API_PASSWORD = "sec@example.com", "Api-Pa55-q7Zr81"
BINDING_PASSWORD, RUNTIME_PASSWORD, CONNECT_PASSWORD = "Edge-Pa55-k3Xw02", "Rt-Pa55-m9Yv44", "Cn-Pa55-z1Lq73"
USERS = ((EMAIL, API_PASSWORD, "root"),)


def binding(name, port, extra=""):
    return f'[binding "{name}"]\nport = {port}\n{extra}\n'


@pytest.fixture
def site(tmp_path):
    yield from http_site(tmp_path, "hello\n")


@pytest.fixture
def d(relay_daemon):
    return relay_daemon


def direct_config(d, relay, site, **ssh):
    d.configure_relay(relay, f'[binding "web"]\nport = {site}\nremote_port = {free_port()}\n', ssh=ssh)


# ---- host key pinned, and the identity file's mode ------------------------------------------


def test_pinned_fingerprint_mismatch_is_refused_with_both_fingerprints(tmp_path, d, relay, site):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    pinned = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(other) + ".pub"], check=True,
                            capture_output=True, text=True).stdout.split()[1]
    direct_config(d, relay, site, host_key_check=pinned)
    d.start()
    b = d.wait_state("web", "failed", timeout=20)
    assert pinned in b["last_error"] and relay.fingerprint() in b["last_error"], b["last_error"]
    assert "Accepted publickey" not in relay.log(), "the daemon authenticated to a relay it should not trust"
    assert not (d.state_dir / "known_hosts").exists() or relay.host_public_key()[1] not in \
        (d.state_dir / "known_hosts").read_text()
    time.sleep(3)                                       # failed means no retries
    b2 = d.binding("web")
    assert (b2["state"], b2["reconnects"]) == ("failed", b["reconnects"])


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_identity_file_readable_by_others_is_refused(tmp_path, d, relay, site, mode):
    key = tmp_path / "id_loose"
    key.write_bytes(Path(relay.client_key).read_bytes())
    os.chmod(key, mode)
    direct_config(d, relay, site, identity_file=str(key))
    d.start()
    b = d.wait_state("web", "failed", timeout=20)
    want = f"identity file {key} is readable by others (mode {mode:04o}); chmod 600 {key}"
    assert want in b["last_error"], b["last_error"]
    assert want in d.log_text()
    assert "Accepted publickey" not in relay.log()


# ---- the API password_file mode ------------------------------------------------------------


@pytest.fixture
def api(tmp_path):
    e = Emulator(tmp_path / "api", users=USERS, relay_port_base=free_port_block())
    (tmp_path / "api").mkdir()
    e.start()
    yield e
    e.stop()


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_api_password_file_readable_by_others_is_refused(tmp_path, d, api, mode):
    pw = d.root / "password"
    pw.write_text(API_PASSWORD + "\n")
    os.chmod(pw, mode)
    d.make_identity()
    d.write_config(binding("web", 8000), api={"url": api.url, "email": EMAIL, "password_file": str(pw)})
    d.start()
    want = f"password file {pw} is readable by others (mode {mode:04o}); chmod 600 {pw}"
    b = wait_for(lambda: (lambda b: b if b["last_error"] and want in b["last_error"] else None)(d.binding("web")),
                 timeout=15, what="the password file refusal")
    assert b["state"] in ("backoff", "failed", "resolving"), b
    assert want in d.log_text()
    assert api.counts().get("POST /login", 0) == 0, "the password was sent although the file is readable"
    assert API_PASSWORD not in d.log_text()


# ---- secrets never in a log line or an output ----------------------------------------------


class Capture(Daemon):
    def __init__(self, root):
        super().__init__(root)
        self.outputs = []
        self.tokens = set()

    def ctl(self, *args, **kw):
        p = super().ctl(*args, **kw)
        self.outputs.append((" ".join(args), p.stdout + p.stderr))
        return p

    def remember_token(self):
        f = self.state_dir / "token"
        if f.exists() and f.read_text().strip():
            self.tokens.add(f.read_text().strip())


def key_material(path):
    """The base64 lines of an OpenSSH private key, and the decoded private part's hex."""
    lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln and not ln.startswith("-----")]
    blob = base64.b64decode("".join(lines))
    return [ln for ln in lines if len(ln) >= 16], blob


def test_no_password_token_or_key_in_any_log_or_output(tmp_path, relay, site):
    api = Emulator(tmp_path / "api", users=USERS, relay_port_base=free_port_block(), token_lifetime=6)
    (tmp_path / "api").mkdir()
    api.start()
    d = Capture(tmp_path / "d")
    d.root.mkdir()
    d.state_dir.mkdir(mode=0o700)
    (d.state_dir / "known_hosts").write_text(relay.known_hosts_line())
    key = d.root / "id_ed25519"
    key.write_bytes(Path(relay.client_key).read_bytes())
    os.chmod(key, 0o600)
    pw = d.root / "password"
    pw.write_text(API_PASSWORD + "\n")
    os.chmod(pw, 0o600)
    connect = None
    try:
        d.write_config(binding("web", site, f"type = http\nprotected = yes\nusername = edge\n"
                                             f"password = {BINDING_PASSWORD}"),
                       log_level="debug", api={"url": api.url, "email": EMAIL, "password_file": str(pw)},
                       ssh={"port": str(relay.port), "identity_file": str(key)})
        d.start()
        d.wait_state("web", "up", timeout=30)
        d.remember_token()
        d.ctl("add", "rt", "--port", str(site), "--protected", "--username", "u2", "--password", RUNTIME_PASSWORD)
        d.wait_state("rt", "up", timeout=30)
        connect = subprocess.Popen([str(MYSOCKETCTL), "-s", str(d.socket), "connect", "--port", str(site),
                                    "--protected", "--username", "u3", "--password", CONNECT_PASSWORD],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # Token refreshes (6 s tokens), a revocation (a new login), and every reading command.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 14:
            d.remember_token()
            time.sleep(1)
        api.revoke()
        wait_for(lambda: api.counts().get("POST /login", 0) >= 2 or (d.remember_token() and False), timeout=20,
                 what="a new login after the revocation")
        time.sleep(2)
        d.remember_token()
        relay.emit("GET / 200 edge-request")
        wait_for(lambda: "edge-request" in d.log_text(), timeout=10, what="the relay's log line in our log")
        for args in (("list",), ("show", "web"), ("show", "rt"), ("status",), ("logs",), ("logs", "web"), ("metrics",),
                     ("account", "show"), ("socket", "ls"), ("reload",)):
            d.ctl(*args, check=False)
            d.ctl(*args, check=False, json_out=True)
        sock_ids = [b["socket_id"] for b in d.json("list") if b["socket_id"]]
        for s in sock_ids:
            d.ctl("tunnel", "ls", s, check=False)
            d.ctl("tunnel", "ls", s, check=False, json_out=True)
        # A login through the daemon with the password on stdin.
        p = subprocess.run([str(MYSOCKETCTL), "-s", str(d.socket), "login", "--email", EMAIL],
                           input=API_PASSWORD + "\n", capture_output=True, text=True, timeout=30)
        d.outputs.append(("login", p.stdout + p.stderr))
        d.remember_token()
        d.ctl("remove", "--purge", "rt")
    finally:
        if connect:
            connect.terminate()
            try:
                out, _ = connect.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                connect.kill()
                out, _ = connect.communicate()
            d.outputs.append(("connect", out))
        d.stop()
        api.stop()
    d.remember_token()
    assert d.tokens, "no token was ever written: the test checked nothing"
    key_lines, key_blob = key_material(key)
    secrets = [("the API password", API_PASSWORD), ("a binding password", BINDING_PASSWORD),
               ("a runtime binding password", RUNTIME_PASSWORD), ("a connect password", CONNECT_PASSWORD),
               ("a JWT", "eyJhbGciOi")]
    secrets += [("a token", t) for t in d.tokens]
    secrets += [("a token's signature", t.rsplit(".", 1)[-1]) for t in d.tokens if t.count(".") == 2]
    secrets += [("a line of the private key", ln) for ln in key_lines]
    secrets += [("the private key blob (hex)", key_blob[-64:].hex())]
    texts = [("the daemon log", d.log_text())] + [(f"mysocketctl {a}", o) for a, o in d.outputs]
    found = [(what, where) for where, text in texts for what, s in secrets if s in text]
    total = sum(len(t) for _, t in texts)
    print(f"\nsecrets check: {len(secrets)} secrets ({len(d.tokens)} tokens) searched in {len(texts)} texts, "
          f"{total} bytes; found {len(found)}")
    assert not found, found
    # The log did see the events the secrets travel with.
    log = d.log_text()
    assert re.search(r"token", log, re.I)

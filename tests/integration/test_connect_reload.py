"""Regression (found by test_security.py): a reload removed quick-connect bindings while their
`mysocketctl connect` client was still attached; the client went on as if connected, and when
it left, the daemon could no longer find the binding, so its socket stayed at the API."""
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import MYSOCKETCTL, Daemon, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emulator.harness import Emulator  # noqa: E402


def test_reload_keeps_a_quick_connect_binding_and_its_client_still_cleans_up(tmp_path):
    api = Emulator(tmp_path, users=(("a@example.com", "pw-123456", "root"),)).start()
    d = Daemon(tmp_path / "d")
    d.root.mkdir()
    d.make_identity()
    pw = d.root / "pw"
    pw.write_text("pw-123456\n")
    os.chmod(pw, 0o600)
    d.write_config(api={"url": api.url, "email": "a@example.com", "password_file": str(pw)})
    c = None
    try:
        d.start()
        c = subprocess.Popen([str(MYSOCKETCTL), "-s", str(d.socket), "connect", "--port", "8000"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: [b["name"] for b in d.json("list")] == ["connect-1"], timeout=10, what="the connect binding")
        wait_for(lambda: len(api.state()["sockets"]) == 1, timeout=10, what="its socket at the API")
        out = d.ctl("reload").stdout
        assert "connect-1" not in out, out
        os.kill(d.proc.pid, 1)                                   # SIGHUP too
        time.sleep(1)
        assert [b["name"] for b in d.json("list")] == ["connect-1"]
        assert c.poll() is None
        c.terminate()
        c.communicate(timeout=10)
        wait_for(lambda: d.json("list") == [], timeout=10, what="the binding removed with its client")
        wait_for(lambda: api.state()["sockets"] == [], timeout=10, what="its socket deleted at the API")
        assert "no binding named" not in d.log_text()
    finally:
        if c and c.poll() is None:
            c.kill()
            c.wait()
        d.stop()
        api.stop()

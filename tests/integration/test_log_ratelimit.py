"""Repeated log lines are rate-limited (issue 13 item 6): 10,000 refused requests write one
line, then "suppressed N similar messages in T s" when the next one comes after the interval;
a binding's up and down are never held back."""
import json
import os
import re
import socket
import time

import pytest

from conftest import wait_for
from test_streams import d  # noqa: F401  (the fixture: a daemon in a dir other uids reach)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to send requests as another uid")

NOBODY = 65534
INTERVAL = 5   # LOG_RATELIMIT_USEC


def refused_as_nobody(d, n):
    """Sends n `add` requests as uid nobody over one connection; returns how many were refused."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        refused = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            req = (json.dumps({"v": 1, "cmd": "add", "binding": {"name": "x", "port": 1, "remote_port": 2}})
                   + "\n").encode()
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(30)
                s.connect(str(d.socket))
                f = s.makefile("rb")
                for _ in range(n):
                    s.sendall(req)
                    if "permission denied" in json.loads(f.readline()).get("error", ""):
                        refused += 1
            os.write(w, str(refused).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 64):
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return int(out or b"0")


def test_10000_refused_requests_write_one_line_then_a_summary(d):
    d.start()
    os.chmod(d.socket, 0o666)
    t0 = time.monotonic()
    assert refused_as_nobody(d, 10000) == 10000
    elapsed = time.monotonic() - t0
    refused = r'refused "add" from uid 65534'

    def lines():
        return [l for l in d.log_text().splitlines() if refused in l and "suppressed" not in l]
    assert len(lines()) == 1, lines()[:5]
    # The ring that `logs` serves is not flushed by them either.
    events = d.json("logs", "-n", "1000")
    assert sum(refused in e["message"] for e in events) == 1
    # Once the interval is over the count comes out, with no further request needed.
    m = wait_for(lambda: re.search(r"suppressed (\d+) similar messages in (\d+) s \(\"control: refused", d.log_text()),
                 timeout=2 * INTERVAL + 2, what="the summary line")
    assert int(m.group(1)) == 9999 and INTERVAL <= int(m.group(2)) <= 2 * INTERVAL + 1, m.group(0)
    assert len(lines()) == 1
    summary = [e for e in d.json("logs", "-n", "1000") if e["event"] == "suppressed"]
    assert len(summary) == 1 and summary[0]["priority"] == "notice", summary
    print(f"\n10000 refusals in {elapsed:.1f} s: 1 line, then \"{m.group(0)}...\" after "
          f"{time.monotonic() - t0:.1f} s")
    # The next one after the interval comes through again.
    time.sleep(INTERVAL + 0.2)
    assert refused_as_nobody(d, 1) == 1
    assert len(lines()) == 2


def test_different_messages_are_not_held_back(d):
    d.start()
    for i in range(5):
        d.ctl("add", f"b{i}", "--port", "8000", "--remote-port", str(9100 + i))
    log = d.log_text()
    for i in range(5):
        assert f"b{i}: added: local 127.0.0.1:8000" in log

"""Repeated log lines are rate-limited (issue 13 item 6): 10,000 refused requests write one
line, then "suppressed N similar messages in T s" when the next one comes after the interval;
a binding's up and down are never held back."""
import json
import os
import re
import socket
import time

import pytest

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
    log = d.log_text()
    assert len(re.findall(refused, log)) == 1, "%d refusal lines" % len(re.findall(refused, log))
    # The ring that `logs` serves is not flushed by them either.
    events = d.json("logs", "-n", "1000")
    assert sum(refused in e["message"] for e in events) == 1
    # After the interval the next one comes through, after the count of those held back.
    time.sleep(max(0, INTERVAL + 0.5 - (time.monotonic() - t0)))
    assert refused_as_nobody(d, 1) == 1
    log = d.log_text()
    m = re.search(r"suppressed (\d+) similar messages in (\d+) s\n.*" + refused, log)
    assert m, log[-2000:]
    assert int(m.group(1)) == 9999 and INTERVAL <= int(m.group(2)) <= INTERVAL + elapsed + 2
    print(f"\n10000 refusals in {elapsed:.1f} s: {len(re.findall(refused, log))} lines, then "
          f"\"suppressed {m.group(1)} similar messages in {m.group(2)} s\"")


def test_different_messages_are_not_held_back(d):
    d.start()
    for i in range(5):
        d.ctl("add", f"b{i}", "--port", "8000", "--remote-port", str(9100 + i))
    log = d.log_text()
    for i in range(5):
        assert f"b{i}: added: local 127.0.0.1:8000" in log

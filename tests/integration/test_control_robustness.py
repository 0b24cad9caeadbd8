"""Malformed and hostile control clients (SPEC §7): each gets an error reply or a closed
connection, and neither the daemon nor other clients notice."""
import json
import resource
import socket
import threading
import time

import pytest

from conftest import read_line, wait_for

LIST = b'{"v":1,"cmd":"list"}\n'


def binding(name, port, remote_port):
    return f'[binding "{name}"]\nport = {port}\nremote_port = {remote_port}\n'


def connect(d, timeout=10):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(str(d.socket))
    return s


class Conn:
    """A raw connection that reads reply lines one at a time."""

    def __init__(self, d, timeout=10):
        self.s = connect(d, timeout)
        self.buf = b""
        self.eof = False
        self.reset = False

    def send(self, data):
        try:
            self.s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.reset = True

    def line(self):
        """The next reply line parsed, or None at EOF/reset."""
        while b"\n" not in self.buf:
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:
                self.reset = True
                return None
            if not chunk:
                self.eof = True
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        line.decode("utf-8")          # replies are always valid UTF-8
        return json.loads(line)

    def closed(self):
        """True once the daemon has closed (EOF or reset) with nothing more to say."""
        if self.buf:
            return False
        try:
            return self.s.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.s.close()


@pytest.fixture
def d(daemon):
    daemon.make_identity()
    daemon.write_config(binding("web", 8000, 9000))
    daemon.start()
    daemon.ctl("add", "rt", "--port", "8001", "--remote-port", "9001")
    return daemon


def assert_healthy(d):
    """The daemon answers correctly, with its bindings intact."""
    assert d.proc.poll() is None, d.log_text()[-2000:]
    st = d.json("status", timeout=5)
    assert st["pid"] == d.proc.pid and st["bindings"] == 2
    bs = d.json("list", timeout=5)
    assert [(b["name"], b["source"], b["port"]) for b in bs] == [("web", "config", 8000), ("rt", "runtime", 8001)]
    r = d.request({"v": 1, "cmd": "show", "name": "rt"}, timeout=5)
    assert r["ok"] is True and r["binding"]["remote_port"] == 9001


def assert_error(reply, code="invalid", contains=None):
    assert isinstance(reply, dict), reply
    assert reply["v"] == 1 and reply["ok"] is False and reply["code"] == code, reply
    assert isinstance(reply["error"], str) and reply["error"], reply
    if contains:
        assert contains in reply["error"], reply


BAD_REQUESTS = [
    (b"{not json\n", "not valid JSON"),
    (b'{"v":1,"cmd":"list"\n', "not valid JSON"),
    (b"[1, 2, 3]\n", "must be a JSON object"),
    (b"42\n", "must be a JSON object"),
    (b'"list"\n', "must be a JSON object"),
    (b"null\n", "must be a JSON object"),
    (b'{"cmd":"list"}\n', '"v"'),
    (b'{"v":2,"cmd":"list"}\n', '"v" must be 1'),
    (b'{"v":"1","cmd":"list"}\n', '"v" must be 1'),
    (b'{"v":1}\n', 'missing "cmd"'),
    (b'{"v":1,"cmd":5}\n', '"cmd" must be a string'),
    (b'{"v":1,"cmd":""}\n', '"cmd"'),
    (b'{"v":1,"cmd":"frobnicate"}\n', 'unknown command "frobnicate"'),
    (b'{"v":1,"cmd":"show"}\n', '"name"'),
    (b'{"v":1,"cmd":"show","name":5}\n', '"name" must be a string'),
    (b'{"v":1,"cmd":"remove","name":["rt"]}\n', '"name" must be a string'),
    (b'{"v":1,"cmd":"remove","name":"rt","purge":"yes"}\n', '"purge" must be true or false'),
    (b'{"v":1,"cmd":"add","binding":"x"}\n', '"binding" must be'),
    (b'{"v":1,"cmd":"add","binding":{"name":"z","port":"80","remote_port":9}}\n', '"port"'),
    (b'{"v":1,"cmd":"add","binding":{"name":"z","port":80.5,"remote_port":9}}\n', '"port"'),
    (b'{"v":1,"cmd":"add","binding":{"name":"z","port":-1,"remote_port":9}}\n', '"port"'),
    (b'{"v":1,"cmd":"add","binding":{"name":"z","port":1e30,"remote_port":9}}\n', '"port"'),
    (b'{"v":1,"cmd":"logs","lines":-1}\n', '"lines"'),
    (b'{"v":1,"cmd":"fr\\u0000ob"}\n', "NUL"),
    (b"\x00\x01\x02\xff\xfe{}\x00\x00\n", "UTF-8"),
    (b'{"v":1,"cmd":"show","name":"\xff\xfe\xc0\xaf"}\n', "UTF-8"),
    (b'{"v":1,"cmd":"show","name":"\xed\xa0\x80"}\n', "UTF-8"),   # a UTF-16 surrogate in UTF-8
]


@pytest.mark.parametrize("data, contains", BAD_REQUESTS, ids=[repr(b[:40]) for b, _ in BAD_REQUESTS])
def test_malformed_request_gets_an_error_and_the_connection_still_works(d, data, contains):
    c = Conn(d)
    c.send(data)
    assert_error(c.line(), "invalid", contains)
    # Same connection: a good request afterwards is answered.
    c.send(LIST)
    r = c.line()
    assert r["ok"] is True and [b["name"] for b in r["bindings"]] == ["web", "rt"]
    c.close()
    assert_healthy(d)
    assert not (d.state_dir / "bindings.d" / "z.ini").exists()


def test_pipelined_requests_and_crlf_are_answered_in_order(d):
    c = Conn(d)
    c.send(b'{"v":1,"cmd":"status"}\r\n\n{"v":1,"cmd":"show","name":"web"}\n{"v":1,"cmd":"nope"}\n' + LIST)
    r1, r2, r3, r4 = c.line(), c.line(), c.line(), c.line()
    assert r1["ok"] and "status" in r1
    assert r2["ok"] and r2["binding"]["name"] == "web"
    assert_error(r3, "invalid", 'unknown command "nope"')
    assert r4["ok"] and len(r4["bindings"]) == 2
    c.close()
    assert_healthy(d)


def test_a_request_split_across_many_writes_is_answered(d):
    c = Conn(d)
    for b in LIST:
        c.send(bytes([b]))
        time.sleep(0.002)
    assert c.line()["ok"] is True
    c.close()


def padded(request, total):
    """request (bytes ending in '}') padded with spaces to `total` bytes including '\\n'."""
    return request[:-1] + b" " * (total - len(request) - 1) + b"}\n"


def test_line_of_exactly_64_KiB_is_accepted(d):
    c = Conn(d)
    c.send(padded(b'{"v":1,"cmd":"list"}', 65536))
    r = c.line()
    assert r["ok"] is True, r
    c.close()


@pytest.mark.parametrize("size, newline", [(65537, True), (70000, False), (1 << 20, False)])
def test_oversize_line_gets_an_error_then_closed(d, size, newline):
    c = Conn(d)
    data = padded(b'{"v":1,"cmd":"list"}', size) if newline else b"x" * size
    # The daemon may close while we are still writing: send from a thread.
    t = threading.Thread(target=c.send, args=(data,))
    t.start()
    r = c.line()
    assert_error(r, "invalid", "longer than 65536 bytes")
    assert c.line() is None and (c.eof or c.reset)
    t.join(10)
    c.close()
    assert_healthy(d)


def test_stalled_client_is_closed_and_others_are_served_meanwhile(d):
    c = Conn(d, timeout=30)
    t0 = time.monotonic()
    c.send(b'{"v":1,"cmd":"li')
    time.sleep(0.5)
    # While it stalls, other clients are served at once.
    worst = 0.0
    for _ in range(5):
        t = time.monotonic()
        p = d.ctl("list", timeout=5)
        worst = max(worst, time.monotonic() - t)
        assert "web" in p.stdout
        r = d.request({"v": 1, "cmd": "status"}, timeout=5)
        assert r["ok"]
    print(f"\nlist during a stalled client: worst {worst * 1000:.0f} ms")
    assert worst < 1.0
    r = c.line()
    waited = time.monotonic() - t0
    print(f"stalled client closed after {waited:.1f} s")
    assert_error(r, "invalid", "no full line")
    assert c.line() is None
    assert 8.0 <= waited <= 15.0, waited
    c.close()
    assert_healthy(d)


def test_idle_connection_after_a_reply_is_also_timed_out(d):
    c = Conn(d, timeout=30)
    c.send(LIST)
    assert c.line()["ok"]
    t0 = time.monotonic()
    c.send(b'{"v":1')
    r = c.line()
    assert_error(r, "invalid", "no full line")
    assert 8.0 <= time.monotonic() - t0 <= 15.0


def test_200_concurrent_clients(d):
    n = 200
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def client(i):
        try:
            s = connect(d, timeout=30)
            barrier.wait(30)
            req = LIST if i % 2 == 0 else b'{"v":1,"cmd":"show","name":"%s"}\n' % (b"web" if i % 4 == 1 else b"rt")
            s.sendall(req)
            buf = read_line(s)
            s.close()
            results[i] = json.loads(buf)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append((i, repr(e)))

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - t0
    print(f"\n{n} concurrent clients: {elapsed:.2f} s, {len(errors)} errors")
    assert errors == []
    for i, r in enumerate(results):
        assert r is not None and r["ok"] is True, (i, r)
        if i % 2 == 0:
            assert [b["name"] for b in r["bindings"]] == ["web", "rt"]
        else:
            assert r["binding"]["name"] == ("web" if i % 4 == 1 else "rt")
    assert_healthy(d)


def test_50_concurrent_mysocketctl_processes(d):
    import subprocess
    from conftest import MYSOCKETCTL
    procs = [subprocess.Popen([str(MYSOCKETCTL), "-s", str(d.socket), "--json", "list" if i % 2 else "status"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(50)]
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        j = json.loads(out)
        assert (len(j) == 2) if i % 2 else (j["bindings"] == 2)
    assert_healthy(d)


def test_1000_silent_connections_do_not_lock_out_a_new_client(d):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    socks = []
    try:
        for _ in range(1000):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10)
            s.connect(str(d.socket))
            socks.append(s)
        time.sleep(0.5)
        t = time.monotonic()
        r = d.request({"v": 1, "cmd": "list"}, timeout=5)
        fast = time.monotonic() - t
        t = time.monotonic()
        p = d.ctl("list", timeout=10)
        ctl_time = time.monotonic() - t
        print(f"\nwith 1000 silent connections: raw list {fast * 1000:.0f} ms, mysocketctl list {ctl_time * 1000:.0f} ms")
        assert r["ok"] is True and len(r["bindings"]) == 2
        assert "rt" in p.stdout
        assert fast < 2.0 and ctl_time < 2.0
    finally:
        for s in socks:
            s.close()
    assert_healthy(d)


def test_a_client_that_never_reads_its_replies_does_not_stall_the_daemon(d):
    s = connect(d, timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    big = LIST * 2000
    sent = blocked = 0
    s.setblocking(False)
    deadline = time.monotonic() + 3
    try:
        while time.monotonic() < deadline:
            try:
                sent += s.send(big)
            except BlockingIOError:
                # The daemon stopped reading from us (or dropped us): others are still served.
                blocked += 1
                time.sleep(0.05)
                t = time.monotonic()
                r = d.request({"v": 1, "cmd": "status"}, timeout=5)
                assert r["ok"] and time.monotonic() - t < 1.0
    except (BrokenPipeError, ConnectionResetError):
        blocked += 1
    s.close()
    assert blocked > 0, f"sent {sent} bytes of requests without ever being held back"
    assert_healthy(d)


def test_client_disconnecting_mid_request_or_before_reply(d):
    for data in (b'{"v":1,"cmd":"li', LIST, LIST * 100):
        s = connect(d)
        s.sendall(data)
        s.close()
    c = Conn(d)
    c.send(LIST)
    c.s.shutdown(socket.SHUT_WR)          # half-close (echo ... | socat): still gets its reply
    r = c.line()
    assert r is not None and r["ok"] is True
    c.close()
    assert_healthy(d)

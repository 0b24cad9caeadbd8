"""Metrics and health over HTTP (SPEC §10, issue 14 item 5) and JSON logs (issue 15 item 5).

The daemon serves /metrics, /health and /ready with libmicrohttpd on its own event loop.
/metrics is checked by a strict parser of the Prometheus text format (below) and, when
Debian's `prometheus` package is installed, by `promtool check metrics` as well. Abuse
(slowloris, a 100 KB header, too many connections) must get an error or a closed connection
while the control socket keeps answering at once.
"""
import datetime
import http.client
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import MYSOCKETD, binding, free_port, http_site, new_daemon, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emulator.harness import Emulator  # noqa: E402

# ---- a strict reader of the Prometheus text format (0.0.4) --------------------------------
# https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format

METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
SAMPLE = re.compile(rf"^({METRIC_NAME})(\{{(.*)\}})? (\S+)( -?\d+)?$")
LABEL = re.compile(rf'({LABEL_NAME})="((?:[^"\\\n]|\\[\\"n])*)"')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_value(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    assert re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s), f"bad sample value {s!r}"
    return float(s)


def parse_labels(body, line):
    labels, pos = {}, 0
    while pos < len(body):
        m = LABEL.match(body, pos)
        assert m, f"bad label set in {line!r} at {body[pos:]!r}"
        name = m.group(1)
        assert name not in labels, f"label {name} twice in {line!r}"
        assert not name.startswith("__"), f"reserved label name in {line!r}"
        labels[name] = re.sub(r"\\(.)", lambda e: {"n": "\n"}.get(e.group(1), e.group(1)), m.group(2))
        pos = m.end()
        if pos < len(body):
            assert body[pos] == ",", f"labels not separated by ',' in {line!r}"
            pos += 1
    return labels


def parse_exposition(text):
    """{family: {"type", "help", "samples": {frozenset(labels): value}}}; asserts every rule."""
    assert text.endswith("\n"), "the exposition must end with a line feed"
    families, order, current = {}, [], None
    for line in text.split("\n")[:-1]:
        assert line == line.strip(" \t") or line.startswith("#"), f"stray blanks: {line!r}"
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                assert re.fullmatch(METRIC_NAME, parts[2]), f"bad name in {line!r}"
                f = families.setdefault(parts[2], {"type": None, "help": None, "samples": {}})
                key = parts[1].lower()
                assert f[key] is None, f"second {parts[1]} for {parts[2]}"
                if key == "type":
                    assert len(parts) == 4 and parts[3] in TYPES, f"bad TYPE line {line!r}"
                    assert not f["samples"], f"TYPE after samples of {parts[2]}"
                    f["type"] = parts[3]
                else:
                    f["help"] = parts[3] if len(parts) == 4 else ""
                    assert "\n" not in f["help"]
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels = m.group(1), parse_labels(m.group(3) or "", line)
        value = parse_value(m.group(4))
        family = name
        if name not in families:
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix) and name[: -len(suffix)] in families:
                    family = name[: -len(suffix)]
        f = families.setdefault(family, {"type": None, "help": None, "samples": {}})
        if family != current:
            assert family not in order, f"samples of {family} are not contiguous"
            order.append(family)
            current = family
        key = (name, frozenset(labels.items()))
        assert key not in f["samples"], f"duplicate series {line!r}"
        if f["type"] == "counter":
            assert value >= 0 and not math.isnan(value), f"negative counter {line!r}"
        f["samples"][key] = value
    return families


def promtool_check(text):
    """`promtool check metrics` when Debian's prometheus package is installed."""
    tool = shutil.which("promtool")
    if not tool:
        return
    p = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


SPEC_BINDING_FAMILIES = {
    "mysocketd_binding_up": "gauge",
    "mysocketd_binding_tunnels_up": "gauge",
    "mysocketd_binding_reconnects_total": "counter",
    "mysocketd_binding_connections_active": "gauge",
    "mysocketd_binding_connections_total": "counter",
    "mysocketd_binding_connections_refused_total": "counter",
    "mysocketd_binding_received_bytes_total": "counter",
    "mysocketd_binding_sent_bytes_total": "counter",
}


def test_the_parser_itself_rejects_what_the_format_forbids():
    """The checker must be able to fail: each text breaks one rule of the format."""
    good = '# HELP a_total A.\n# TYPE a_total counter\na_total{b="x\\"y"} 1\n'
    assert value_of(parse_exposition(good), "a_total", b='x"y') == 1
    for bad in ('a 1',                                         # no final line feed
                'a{b="x"} 1\na{b="x"} 2\n',                    # duplicate series
                'a 1\nb 1\na 2\n',                              # family not contiguous
                'a{b="x\ny"} 1\n',                              # raw line feed in a label
                'a{b="\\q"} 1\n',                              # unknown escape
                'a{b=x} 1\n', 'a{1b="x"} 1\n', '1a 1\n', 'a one\n',
                '# TYPE a counter\na -1\n',                     # negative counter
                '# TYPE a gauge\n# TYPE a gauge\na 1\n',        # second TYPE
                'a 1\n# TYPE a gauge\n',                        # TYPE after samples
                '# TYPE a meter\na 1\n'):
        with pytest.raises(AssertionError):
            parse_exposition(bad)


def value_of(families, family, **labels):
    return families[family]["samples"][(family, frozenset(labels.items()))]


# ---- HTTP helpers ----------------------------------------------------------------------------

def http_get(port, path, method="GET", host="127.0.0.1", timeout=5):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        c.close()


def scrape(port):
    status, headers, body = http_get(port, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    promtool_check(body)
    return parse_exposition(body), body


def health(port):
    status, headers, body = http_get(port, "/health")
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)


def metrics_daemon(d, bindings, listen=None, **kw):
    port = free_port()
    d.make_identity()
    d.write_config(bindings, daemon_extra=f"metrics_listen = {listen or f'127.0.0.1:{port}'}\n", **kw)
    d.start()
    return port


def cpu_seconds(pid):
    """utime + stime of a process, from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_status(d):
    t = time.monotonic()
    d.ctl("status", timeout=5)
    return time.monotonic() - t


@pytest.fixture
def site(tmp_path):
    yield from http_site(tmp_path, "hello\n")


# ---- tests -------------------------------------------------------------------------------------

def test_no_listener_unless_configured(daemon):
    """Off by default: no TCP socket of ours at all, and `mysocketctl metrics` still works."""
    daemon.make_identity()
    daemon.write_config(binding("web", 8000, 9000))
    daemon.start()
    out = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True, timeout=10).stdout
    assert f"pid={daemon.proc.pid}," not in out, out
    fams = parse_exposition(daemon.ctl("metrics").stdout)
    assert value_of(fams, "mysocketd_binding_up", binding="web") == 0


def test_metrics_health_ready_while_up_then_degraded(relay_daemon, relay, site):
    d = relay_daemon
    rp, mport = free_port(), free_port()
    d.configure_relay(relay, binding("web", site, rp))
    d.config.write_text(d.config.read_text().replace("[daemon]\n", f"[daemon]\nmetrics_listen = 127.0.0.1:{mport}\n"))
    d.start()
    d.wait_state("web", "up")

    # Traffic through the tunnel shows in the counters, equal to what `show` says.
    with socket.create_connection(("127.0.0.1", rp), timeout=5) as c:
        c.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        assert b"hello" in c.recv(65536) + c.recv(65536)
    wait_for(lambda: d.binding("web")["connections_total"] >= 1 and d.binding("web")["connections_active"] == 0,
             timeout=10, what="the connection counted and closed")
    fams, body = scrape(mport)
    for name, typ in SPEC_BINDING_FAMILIES.items():
        assert fams[name]["type"] == typ and fams[name]["help"], name
    b = d.binding("web")
    assert value_of(fams, "mysocketd_binding_up", binding="web") == 1
    assert value_of(fams, "mysocketd_binding_tunnels_up", binding="web") == 1
    assert value_of(fams, "mysocketd_binding_connections_total", binding="web") == b["connections_total"] >= 1
    assert value_of(fams, "mysocketd_binding_received_bytes_total", binding="web") == b["bytes_in"] > 0
    assert value_of(fams, "mysocketd_binding_sent_bytes_total", binding="web") == b["bytes_out"] > 0
    assert value_of(fams, "mysocketd_binding_reconnects_total", binding="web") == b["reconnects"]
    assert value_of(fams, "mysocketd_binding_connections_refused_total", binding="web") == 0
    assert value_of(fams, "mysocketd_build_info", version=d.json("status")["version"]) == 1
    assert "mysocketd_token_expiry_timestamp_seconds" not in fams        # direct mode
    assert http_get(mport, "/metrics", method="HEAD")[0] == 200

    status, h = health(mport)
    assert (status, h) == (200, {"status": "ok", "bindings": 1, "up": 1, "connections": 0,
                                 "max_connections": 0, "connections_capacity_percent": 0})
    assert http_get(mport, "/ready")[0] == 200

    # A connection held open through the tunnel is active in both.
    with socket.create_connection(("127.0.0.1", rp), timeout=5):
        wait_for(lambda: health(mport)[1]["connections"] == 1, timeout=10, what="/health to count it")
        fams, _ = scrape(mport)
        assert value_of(fams, "mysocketd_binding_connections_active", binding="web") == 1
    wait_for(lambda: health(mport)[1]["connections"] == 0, timeout=10, what="/health to see it closed")

    # A second binding whose relay port is taken on the relay cannot come up: degraded.
    # (Taken on both loopbacks: sshd grants a "localhost" forward if either bind works.)
    taken, busy = [], free_port()
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            s = socket.socket(family)
            s.bind((host, busy))
            s.listen()
            taken.append(s)
        except OSError:
            pass
    try:
        d.ctl("add", "late", "--port", str(site), "--remote-port", str(busy))
        wait_for(lambda: d.binding("late")["state"] == "backoff", timeout=20, what="late in backoff")
        status, h = health(mport)
        assert status == 200 and h["status"] == "degraded" and (h["bindings"], h["up"]) == (2, 1), h
        assert http_get(mport, "/ready")[0] == 503
        fams, _ = scrape(mport)
        assert value_of(fams, "mysocketd_binding_up", binding="late") == 0
        assert value_of(fams, "mysocketd_binding_up", binding="web") == 1
    finally:
        for s in taken:
            s.close()


def test_health_down_is_503(daemon):
    """Nothing listens on [ssh] port 1: no binding is ever up."""
    port = metrics_daemon(daemon, binding("a", 8000, 9000) + binding("b", 8001, 9001))
    status, h = health(port)
    assert status == 503 and h["status"] == "down" and (h["bindings"], h["up"]) == (2, 0), h
    status, _, body = http_get(port, "/ready")
    assert status == 503 and "not every binding is up" in body


def test_no_bindings_is_ok_and_ready(daemon):
    port = metrics_daemon(daemon, "")
    assert health(port) == (200, {"status": "ok", "bindings": 0, "up": 0, "connections": 0,
                                  "max_connections": 0, "connections_capacity_percent": 0})
    assert http_get(port, "/ready")[0] == 200
    fams, _ = scrape(port)
    assert all(not fams[n]["samples"] for n in SPEC_BINDING_FAMILIES)


def test_other_paths_404_other_methods_405(daemon):
    port = metrics_daemon(daemon, binding("web", 8000, 9000))
    for path in ("/", "/metrics/", "/nope", "/health/x", "/../metrics", "/METRICS"):
        assert http_get(port, path)[0] == 404, path
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        status, headers, _ = http_get(port, "/metrics", method=method)
        assert status == 405, method
        assert headers["Allow"] == "GET, HEAD"
    # Not HTTP at all: an error, and the daemon does not care.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"\x16\x03\x01 garbage\r\n\r\n")
        answer = c.recv(4096)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:80]
    # Keep-alive: several requests on one connection, all answered.
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for path in ("/metrics", "/health", "/ready", "/nope"):
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        assert r.status in (200, 404, 503)
    c.close()


def test_ipv6_listener(daemon):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    port = free_port()
    metrics_daemon(daemon, binding("web", 8000, 9000), listen=f"[::1]:{port}")
    status, _, body = http_get(port, "/metrics", host="::1")
    assert status == 200
    parse_exposition(body)
    with pytest.raises(OSError):
        http_get(port, "/metrics", host="127.0.0.1", timeout=2)


def test_ctl_metrics_equals_http_metrics(daemon):
    port = metrics_daemon(daemon, binding("web", 8000, 9000) + binding("db", 5432, 9001, "type = tcp"))
    via_http = scrape(port)[1]
    via_ctl = daemon.ctl("metrics").stdout
    promtool_check(via_ctl)
    a, b = parse_exposition(via_http), parse_exposition(via_ctl)
    assert {n: (f["type"], set(f["samples"])) for n, f in a.items()} == \
           {n: (f["type"], set(f["samples"])) for n, f in b.items()}
    assert set(SPEC_BINDING_FAMILIES) | {"mysocketd_build_info"} == set(a)
    assert {dict(k[1])["binding"] for k in a["mysocketd_binding_up"]["samples"]} == {"web", "db"}
    # Idle bindings in backoff: nothing moves but the reconnect counters.
    strip = lambda t: re.sub(r"(reconnects_total\{[^}]*\}) \d+", r"\1 N", t)  # noqa: E731
    assert strip(via_http) == strip(via_ctl)
    as_json = json.loads(daemon.ctl("metrics", "--json").stdout)
    assert set(as_json) == {"metrics"} and strip(as_json["metrics"]) == strip(via_ctl)


def test_slowloris_huge_header_and_floods_never_disturb_the_daemon(daemon):
    port = metrics_daemon(daemon, binding("web", 8000, 9000))
    baseline = max(timed_status(daemon) for _ in range(5))
    stop = threading.Event()

    # 10 slowloris clients: a request line, then one header byte a second, never finishing.
    def slow(c):
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        while not stop.is_set():
            try:
                c.sendall(b"X")
            except OSError:
                return
            stop.wait(1)

    cpu0, wall0 = cpu_seconds(daemon.proc.pid), time.monotonic()
    slows = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(10)]
    threads = [threading.Thread(target=slow, args=(c,), daemon=True) for c in slows]
    for t in threads:
        t.start()
    try:
        # An idle half request is dropped after the 5 s timeout, not kept for ever.
        idle = socket.create_connection(("127.0.0.1", port), timeout=15)
        idle.sendall(b"GET /metr")
        t0 = time.monotonic()
        dropped = idle.recv(4096)
        assert dropped == b"" or dropped.startswith(b"HTTP/1.1 408"), dropped[:80]
        idle_closed_after = time.monotonic() - t0
        idle.close()
        assert idle_closed_after < 12, f"an idle connection was kept {idle_closed_after:.1f} s"

        # A 100 KB header: an error or a closed connection, never a 200.
        big = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            big.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        except OSError:
            pass                                    # closed while we were still sending
        try:
            answer = big.recv(4096)
        except OSError:
            answer = b""
        big.close()
        assert not answer.startswith(b"HTTP/1.1 200"), answer[:80]
        big_status = answer.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"

        # 100 connections at once from four loopback addresses: past the per-address limit
        # they are closed, past the global limit they wait in the backlog; none hangs us.
        flood = []
        for i in range(100):
            try:
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=5,
                                                      source_address=(f"127.0.0.{2 + i % 4}", 0)))
            except OSError:
                pass
        time.sleep(1)
        ss = subprocess.run(["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
                            capture_output=True, text=True, timeout=10).stdout
        held = sum(f"pid={daemon.proc.pid}," in line for line in ss.splitlines())
        assert 16 <= held <= 32, f"the daemon holds {held} HTTP connections (limit 32)"

        # Meanwhile the control socket answers as fast as before, and so does /health
        # once the flood is gone.
        during = max(timed_status(daemon) for _ in range(10))
        for c in flood:
            c.close()
        status, h = wait_for(lambda: (lambda r: r if r else None)(try_health(port)), timeout=10,
                             what="/health to answer after the flood")
        assert status == 503 and h["status"] == "down"
        cpu, wall = cpu_seconds(daemon.proc.pid) - cpu0, time.monotonic() - wall0
        print(f"status: {baseline * 1000:.1f} ms before, {during * 1000:.1f} ms under attack; "
              f"idle half request closed after {idle_closed_after:.1f} s; 100 KB header -> {big_status}; "
              f"daemon CPU {cpu:.2f} s in {wall:.1f} s of attack; {held} connections held by the daemon")
        assert during < max(1.0, baseline * 5), (baseline, during)
        assert cpu < 0.25 * wall, f"the daemon spun: {cpu:.2f} s CPU in {wall:.1f} s"
    finally:
        stop.set()
        for c in slows:
            c.close()
    assert daemon.proc.poll() is None
    scrape(port)


def try_health(port):
    try:
        return health(port)
    except (OSError, http.client.HTTPException):
        return None


# ---- config --------------------------------------------------------------------------------------

def check_config(d):
    return subprocess.run([str(MYSOCKETD), "--check-config", "-c", str(d.config)],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("value", ["localhost:9431", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000",
                                   "::1:9431", "[::1]", "[::1]9431", "1.2.3:80", "[127.0.0.1]:80",
                                   "http://127.0.0.1:9431", "127.0.0.1:94x1"])
def test_bad_metrics_listen_is_a_config_error(tmp_path, value):
    d = new_daemon(tmp_path / "d")
    d.write_config(binding("web", 8000, 9000), daemon_extra=f"metrics_listen = {value}\n")
    p = check_config(d)
    line = next(i for i, l in enumerate(d.config.read_text().splitlines(), 1) if l.startswith("metrics_listen"))
    assert p.returncode == 78, p.stderr
    assert f'{d.config}:{line}: [daemon] metrics_listen: "{value}" is not an address to listen on' in p.stderr


def test_empty_metrics_listen_is_off_and_good_values_pass(tmp_path):
    for value in ("", "127.0.0.1:9431", "[::1]:9431", "0.0.0.0:9431", "[::]:9431"):
        d = new_daemon(tmp_path / f"d{len(value)}{value.count(':')}")
        d.write_config(binding("web", 8000, 9000), daemon_extra=f"metrics_listen = {value}\nlog_format = json\n")
        p = check_config(d)
        assert p.returncode == 0, (value, p.stderr)


def test_bad_log_format_is_a_config_error(tmp_path):
    d = new_daemon(tmp_path / "d")
    d.write_config("", daemon_extra="log_format = xml\n")
    p = check_config(d)
    assert p.returncode == 78
    assert '[daemon] log_format: "xml" is not a log format (text, json)' in p.stderr


def test_metrics_port_in_use_stops_the_daemon_with_a_reason(daemon):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        daemon.make_identity()
        daemon.write_config("", daemon_extra=f"metrics_listen = 127.0.0.1:{taken.getsockname()[1]}\n")
        daemon.start(wait=False)
        assert daemon.proc.wait(10) != 0
        assert re.search(rf"cannot listen for metrics on 127.0.0.1:{taken.getsockname()[1]}: .*in use",
                         daemon.log_text(), re.I), daemon.log_text()
    finally:
        taken.close()


# ---- JSON logs -----------------------------------------------------------------------------------

PRIORITIES = {"emerg", "alert", "crit", "error", "warning", "notice", "info", "debug"}


def json_lines(text):
    objs = []
    for line in text.splitlines():
        o = json.loads(line)                       # every line, no exception
        assert isinstance(o, dict), line
        assert {"time", "priority", "message"} <= set(o), line
        assert o["priority"] in PRIORITIES, line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", o["time"]), line
        datetime.datetime.fromisoformat(o["time"].replace("Z", "+00:00"))
        assert all(isinstance(v, str) for v in o.values()), line
        objs.append(o)
    return objs


def test_json_logs_one_object_per_line(relay_daemon, relay, site):
    d = relay_daemon
    rp = free_port()
    d.configure_relay(relay, binding("web", site, rp, "edge_log = yes\n"))
    d.config.write_text(d.config.read_text().replace("[daemon]\n", "[daemon]\nlog_format = json\n"))
    # A warning from the config loader, before the loop runs: JSON too.
    (d.state_dir / "bindings.d").mkdir()
    (d.state_dir / "bindings.d" / "broken.ini").write_text('[binding "broken"]\nport = x\n')
    d.start()
    d.wait_state("web", "up")
    with socket.create_connection(("127.0.0.1", rp), timeout=5) as c:
        c.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        c.recv(65536)
    relay.emit('GET /a"quoted\\path 200 edge-json')
    wait_for(lambda: "edge-json" in d.log_text(), timeout=10, what="the edge log line")
    d.ctl("reload")
    d.stop()
    objs = json_lines(d.log_text())
    assert len(objs) > 5
    assert any(o.get("binding") == "web" and o.get("event") == "up" for o in objs), objs
    assert any(o.get("event") == "edge-log" and 'a"quoted\\path' in o["message"] for o in objs)
    assert any(o["priority"] == "warning" and "broken.ini" in o["message"] for o in objs)
    assert any(o.get("event") == "reload" for o in objs)
    assert any("started" in o["message"] and "binding" not in o for o in objs)
    assert all("binding" in o for o in objs if o.get("event") in ("up", "down", "backoff"))


def test_text_logs_stay_text_by_default(daemon):
    daemon.make_identity()
    daemon.write_config(binding("web", 8000, 9000))
    daemon.start()
    wait_for(lambda: "web:" in daemon.log_text(), timeout=10, what="a binding line")
    daemon.stop()
    for line in daemon.log_text().splitlines():
        assert not line.startswith("{"), line
        assert re.match(r"(debug|info|notice|warning|error): ", line), line


def test_token_expiry_metric_in_api_mode(tmp_path):
    """API mode: mysocketd_token_expiry_timestamp_seconds is the expiry `status` shows."""
    email, password = "ops@example.com", "metrics-pw-1"
    (tmp_path / "api").mkdir()
    api = Emulator(tmp_path / "api", users=((email, password, "root"),)).start()
    d = new_daemon(tmp_path / "d")
    try:
        d.make_identity()
        pw = d.root / "password"
        pw.write_text(password + "\n")
        os.chmod(pw, 0o600)
        port = free_port()
        d.write_config(binding("web", 8000), daemon_extra=f"metrics_listen = 127.0.0.1:{port}\n",
                       api={"url": api.url, "email": email, "password_file": str(pw)})
        d.start()
        expiry = wait_for(lambda: d.json("status")["token_expiry"], timeout=20, what="a token")
        fams, body = scrape(port)
        want = datetime.datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp()
        assert fams["mysocketd_token_expiry_timestamp_seconds"]["type"] == "gauge"
        assert value_of(fams, "mysocketd_token_expiry_timestamp_seconds") == want
        assert want > time.time()
        assert password not in body and "eyJhbGciOi" not in body
    finally:
        d.stop()
        api.stop()


def test_reload_keeps_the_listener_and_says_a_change_needs_a_restart(daemon):
    port = metrics_daemon(daemon, binding("web", 8000, 9000))
    other = free_port()
    daemon.config.write_text(daemon.config.read_text().replace(f"127.0.0.1:{port}", f"127.0.0.1:{other}"))
    p = daemon.ctl("reload")
    assert "metrics_listen changed: takes effect at the next restart" in p.stdout + p.stderr
    assert http_get(port, "/health")[0] == 503          # still the old address, still serving
    with pytest.raises(OSError):
        http_get(other, "/health", timeout=2)

#!/usr/bin/python3
"""Benchmark: mysocketd's reverse tunnel vs `ssh -R` (OpenSSH client) vs direct loopback.

Not part of the pass/fail suite. Everything runs on 127.0.0.1 against a real OpenSSH sshd
(tests/integration/relay.py). Figures, each the median of --reps runs:

  * bulk MB/s each direction, through mysocketd, through `ssh -R` to the same relay, and
    direct (no tunnel); once with the relay restricted to one cipher + MAC (both clients
    then negotiate exactly that) and once with each side's defaults;
  * CPU seconds per GiB of the tunnel client (mysocketd / ssh), utime+stime from
    /proc/PID/stat before and after each transfer;
  * connect-to-first-byte p50/p99 over --conns sequential connections (the local service
    writes one byte as soon as it accepts);
  * VmRSS of mysocketd with 1, 50, 200 idle bindings up, and of one idle `ssh -R` process.

Prints a table, writes it to results/tunnel.txt and a chart to results/tunnel.png (the
chart is skipped with a note when matplotlib is missing). See README.md.

    /usr/bin/python3 tests/bench/bench_tunnel.py            # full: 1 GiB each way, 1000 conns
    /usr/bin/python3 tests/bench/bench_tunnel.py --quick    # smoke run, about a minute
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from relay import Relay, free_port, wait_port  # noqa: E402  (stdlib only)
from conftest import TCPService  # noqa: E402

BUILD = Path(os.environ.get("MYSOCKETD_BUILDDIR", REPO / "build"))
MYSOCKETD = BUILD / "mysocketd"
MYSOCKETCTL = BUILD / "mysocketctl"
SSH = "/usr/bin/ssh"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CHUNK = 1 << 20
PAYLOAD = bytes(range(256)) * (CHUNK // 256)
FORCED_CIPHER, FORCED_MAC = "aes128-ctr", "hmac-sha2-256"

TARGET_THROUGHPUT = 0.6     # x ssh -R
TARGET_P99 = 1.2            # x ssh -R
TARGET_RSS_MIB = 20         # with 200 idle bindings


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- local services ---------------------------------------------------------------------

class BulkServer(TCPService):
    """"SEND n\\n" -> n bytes then EOF; "RECV n\\n" + n bytes -> "OK\\n" once all are in.
    Unlike the tests' BlobServer it hashes nothing: the benchmark measures the tunnel."""

    def handle(self, c):
        try:
            line = b""
            while not line.endswith(b"\n"):
                b = c.recv(1)
                if not b:
                    return
                line += b
            words = line.split()
            if len(words) != 2:
                return
            n = int(words[1])
            if words[0] == b"SEND":
                view = memoryview(PAYLOAD)
                while n:
                    k = min(n, CHUNK)
                    c.sendall(view[:k])
                    n -= k
                c.shutdown(socket.SHUT_WR)
                c.recv(1)
            else:
                buf = bytearray(CHUNK)
                while n:
                    k = c.recv_into(buf, min(n, CHUNK))
                    if not k:
                        return
                    n -= k
                c.sendall(b"OK\n")
        except OSError:
            pass
        finally:
            c.close()


class FirstByteServer(TCPService):
    """Writes one byte as soon as a connection is accepted, then closes it."""
    inline = True

    def handle(self, c):
        try:
            c.sendall(b"!")
        except OSError:
            pass
        c.close()


# ---- clients ----------------------------------------------------------------------------

def download(port, n):
    """service -> client: the tunnel client reads the local service and sends to the relay."""
    buf = bytearray(CHUNK)
    with socket.create_connection(("127.0.0.1", port), timeout=600) as c:
        t = time.monotonic()
        c.sendall(b"SEND %d\n" % n)
        got = 0
        while True:
            k = c.recv_into(buf)
            if not k:
                break
            got += k
        dt = time.monotonic() - t
    if got != n:
        raise RuntimeError("download: got %d of %d bytes" % (got, n))
    return dt


def upload(port, n):
    """client -> service: the tunnel client receives from the relay and writes locally."""
    view = memoryview(PAYLOAD)
    with socket.create_connection(("127.0.0.1", port), timeout=600) as c:
        t = time.monotonic()
        c.sendall(b"RECV %d\n" % n)
        left = n
        while left:
            k = min(left, CHUNK)
            c.sendall(view[:k])
            left -= k
        c.shutdown(socket.SHUT_WR)
        reply = c.recv(3)
        dt = time.monotonic() - t
    if reply != b"OK\n":
        raise RuntimeError("upload: service answered %r" % reply)
    return dt


def first_byte_times(port, count):
    out = []
    for _ in range(count):
        t = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
            if c.recv(1) != b"!":
                raise RuntimeError("first byte: connection closed without the byte")
            out.append(time.perf_counter() - t)
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


# ---- processes ----------------------------------------------------------------------------

_next_port = [20000]


def remote_port():
    """A port for the relay to listen on, below the ephemeral range: with hundreds of
    bindings, a port from free_port() (ephemeral) is soon the local end of one of the
    daemon's own connections, and the relay then refuses that forward."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError):
        low = 32768
    while _next_port[0] < low:
        p = _next_port[0]
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue
    return free_port()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK     # utime, stime (fields 14, 15)


def status_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Syscalls:
    """Counts a process's system calls over a with-block with perf's raw_syscalls tracepoint
    (an exact count, unlike CPU seconds on a shared VM); .count stays None without perf."""
    PERF = shutil.which("perf")

    def __init__(self, pid):
        self.pid, self.count, self.proc = pid, None, None

    def __enter__(self):
        if self.PERF and self.pid:
            self.proc = subprocess.Popen([self.PERF, "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p",
                                          str(self.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         text=True)
            time.sleep(0.3)     # attached before the transfer starts
        return self

    def __exit__(self, *exc):
        if self.proc:
            self.proc.send_signal(signal.SIGINT)
            err = self.proc.communicate(timeout=30)[1]
            for line in err.splitlines():
                f = line.split(",")
                if "raw_syscalls:sys_enter" in line and f[0].isdigit():
                    self.count = int(f[0])
        return False


def stop_proc(p, timeout=10):
    if p is None or p.poll() is not None:
        return
    os.kill(p.pid, signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()


class BenchRelay(Relay):
    """The test relay with LogLevel DEBUG1 (its log names the negotiated cipher and MAC of
    every connection) and room for hundreds of sessions starting at once."""

    def __init__(self, *args, debug=True, **kw):
        super().__init__(*args, log_level="DEBUG1" if debug else "VERBOSE", **kw)

    def negotiated(self, since):
        return super().negotiated(since) or ("?", "?")


class BenchDaemon:
    def __init__(self, root, relay, bindings):
        """bindings: list of (name, local_port, remote_port)."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "state").mkdir(mode=0o700, exist_ok=True)
        self.socket = self.root / "control.sock"
        self.config = self.root / "mysocketd.ini"
        self.log = self.root / "mysocketd.log"
        self.names = [b[0] for b in bindings]
        text = (f"[daemon]\nstate_dir = {self.root / 'state'}\ncontrol_socket = {self.socket}\n"
                f"control_group = root\nlog_level = info\n\n"
                f"[ssh]\nserver = 127.0.0.1\nport = {relay.port}\nuser = {relay.user}\n"
                f"identity_file = {relay.client_key}\nknown_hosts = {self.root / 'state' / 'known_hosts'}\n"
                f"host_key_check = accept-new\nkeepalive_interval = 15\nkeepalive_count = 3\n\n"
                f"[backoff]\ninitial = 1\nmax = 2\nstable_after = 5\n\n")
        for name, lp, rp in bindings:
            text += f'[binding "{name}"]\nport = {lp}\nremote_port = {rp}\n\n'
        self.config.write_text(text)
        self.proc = None

    def start(self, timeout=120):
        self.logf = open(self.log, "ab")
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
        self.proc = subprocess.Popen([str(MYSOCKETD), "-c", str(self.config)], stdout=self.logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError("mysocketd exited; see %s" % self.log)
                states = self.states()
                if states and len(states) == len(self.names) and all(s == "up" for s in states.values()):
                    return self
                time.sleep(0.2)
            raise RuntimeError("bindings not all up after %ds: %s" % (timeout, self.states()))
        except BaseException:
            self.stop()     # a daemon that failed to start would otherwise retry for ever
            raise

    def _request(self, obj):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(str(self.socket))
            s.sendall(json.dumps(obj).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                b = s.recv(1 << 20)
                if not b:
                    break
                buf += b
        return json.loads(buf)

    def states(self):
        """name -> state. `list` first; the daemon refuses a reply over its 64 KiB line limit
        (PROTO_LINE_MAX: "reply too large for one line"), which ~200 bindings exceed, so
        then one `show` per binding."""
        try:
            r = self._request({"v": 1, "cmd": "list"})
            if r.get("ok", True) and "bindings" in r:
                return {b["name"]: b["state"] for b in r["bindings"]}
            out = {}
            for name in self.names:
                r = self._request({"v": 1, "cmd": "show", "name": name})
                b = r.get("binding", r)
                if "state" in b:
                    out[name] = b["state"]
            return out
        except (OSError, ValueError, KeyError):
            return {}

    def stop(self):
        stop_proc(self.proc)
        if getattr(self, "logf", None):
            self.logf.close()
            self.logf = None


def start_ssh(tmp, relay, forwards, extra=()):
    """`ssh -N -R ...` to the relay; forwards: list of (remote_port, local_port)."""
    cmd = [SSH, "-F", "/dev/null", "-N", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
           "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=%s" % (Path(tmp) / "ssh_known_hosts"),
           "-o", "LogLevel=ERROR", "-i", relay.client_key, "-p", str(relay.port)] + list(extra)
    for rp, lp in forwards:
        cmd += ["-R", "%d:127.0.0.1:%d" % (rp, lp)]
    cmd.append("%s@127.0.0.1" % relay.user)
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=open(Path(tmp) / "ssh.log", "ab"))
    for rp, _ in forwards:
        if not wait_port("127.0.0.1", rp, 20) or p.poll() is not None:
            stop_proc(p)
            raise RuntimeError("ssh -R did not come up; see %s" % (Path(tmp) / "ssh.log"))
    return p


# ---- the runs -------------------------------------------------------------------------------

def run_mode(tmp, mode, args, results):
    """One relay (forced cipher+MAC or defaults); mysocketd and ssh -R both connected to it."""
    extra = ["MaxStartups 1000"]
    if mode == "forced":
        extra += ["Ciphers %s" % args.cipher, "MACs %s" % args.mac]
    mdir = Path(tmp) / mode
    relay = BenchRelay(mdir / "relay", extra_config=extra)
    bulk, fb = BulkServer(), FirstByteServer()
    daemon = ssh = None
    try:
        relay.start()
        rp_bulk_d, rp_fb_d, rp_bulk_s, rp_fb_s = (remote_port() for _ in range(4))
        off = len(relay.log())
        # Bound before start(): when start() fails, `finally` still stops the daemon.
        daemon = BenchDaemon(mdir / "d", relay, [("bulk", bulk.port, rp_bulk_d), ("fb", fb.port, rp_fb_d)])
        daemon.start(timeout=args.start_timeout)
        time.sleep(0.5)
        results["cipher"][mode, "mysocketd"] = relay.negotiated(off)
        off = len(relay.log())
        ssh = start_ssh(mdir, relay, [(rp_bulk_s, bulk.port), (rp_fb_s, fb.port)])
        time.sleep(0.5)
        results["cipher"][mode, "ssh"] = relay.negotiated(off)
        log("[%s] mysocketd negotiated %s/%s, ssh %s/%s" % ((mode,) + results["cipher"][mode, "mysocketd"]
                                                          + results["cipher"][mode, "ssh"]))

        paths = [("direct", bulk.port, None), ("mysocketd", rp_bulk_d, daemon.proc.pid),
                 ("ssh", rp_bulk_s, ssh.pid)]
        n = args.size_mib << 20
        for rep in range(args.reps):
            for direction, fn in (("down", download), ("up", upload)):
                for name, port, pid in paths:
                    with Syscalls(pid) as sc:
                        c0 = cpu_seconds(pid) if pid else 0.0
                        dt = fn(port, n)
                        cpu = (cpu_seconds(pid) - c0) if pid else 0.0
                    results["bulk"].setdefault((mode, direction, name), []).append(n / dt / 1e6)
                    if pid:
                        results["cpu"].setdefault((mode, direction, name), []).append(cpu / (n / 2**30))
                    calls = ""
                    if sc.count is not None:
                        per_gib = sc.count / (n / 2**30)
                        results["sys"].setdefault((mode, direction, name), []).append(per_gib)
                        calls = "%.0fk syscalls/GiB" % (per_gib / 1e3)
                    log("[%s] rep %d %-4s %-9s %8.1f MB/s  cpu %.2f s/GiB  %s  load %.2f"
                        % (mode, rep + 1, direction, name, n / dt / 1e6, cpu / (n / 2**30), calls,
                           os.getloadavg()[0]))
            results["load"].append(os.getloadavg()[0])

        fpaths = [("direct", fb.port), ("mysocketd", rp_fb_d), ("ssh", rp_fb_s)]
        for rep in range(args.reps):
            for name, port in fpaths:
                first_byte_times(port, 20)       # warm up
                ts = first_byte_times(port, args.conns)
                results["fb"].setdefault((mode, name), []).append((pct(ts, 50) * 1e3, pct(ts, 99) * 1e3))
                log("[%s] rep %d first byte %-9s p50 %.3f ms p99 %.3f ms  load %.2f"
                    % (mode, rep + 1, name, pct(ts, 50) * 1e3, pct(ts, 99) * 1e3, os.getloadavg()[0]))
            results["load"].append(os.getloadavg()[0])
        results["hwm"][mode] = status_kib(daemon.proc.pid, "VmHWM")
    finally:
        stop_proc(ssh)
        if daemon:
            daemon.stop()
        relay.stop()
        bulk.close()
        fb.close()


def run_rss(tmp, args, results):
    rdir = Path(tmp) / "rss"
    # No cipher to read here; DEBUG1 would also echo into every session.
    relay = BenchRelay(rdir / "relay", extra_config=["MaxStartups 1000"], debug=False)
    idle = free_port()     # nothing needs to listen: the bindings stay idle
    try:
        relay.start()
        for n in args.bindings:
            for rep in range(args.reps):
                d = BenchDaemon(rdir / ("d%d-%d" % (n, rep)), relay,
                                [("b%d" % i, idle, remote_port()) for i in range(n)])
                try:
                    t = time.monotonic()
                    d.start(timeout=60 + 2 * n)
                    up = time.monotonic() - t
                    time.sleep(2)
                    rss = status_kib(d.proc.pid, "VmRSS")
                finally:
                    d.stop()
                results["rss"].setdefault(n, []).append(rss)
                log("[rss] %d bindings: %d KiB (all up in %.1f s)  load %.2f"
                    % (n, rss, up, os.getloadavg()[0]))
        for rep in range(args.reps):
            ssh = start_ssh(rdir, relay, [(remote_port(), idle)])
            try:
                time.sleep(2)
                rss = status_kib(ssh.pid, "VmRSS")
            finally:
                stop_proc(ssh)
            results["rss_ssh"].append(rss)
            log("[rss] one ssh -R: %d KiB" % rss)
    finally:
        relay.stop()


# ---- output -------------------------------------------------------------------------------

def med(xs):
    return statistics.median(xs) if xs else float("nan")


def verdict(ok):
    return "MET" if ok else "MISSED"


def table(results, args):
    L = []
    now = datetime.datetime.now().astimezone()
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    L.append("mysocketd tunnel benchmark  %s" % now.strftime("%Y-%m-%d %H:%M %Z"))
    L.append("machine: %s, %d CPUs, %s, kernel %s" % (cpu, os.cpu_count(), platform.machine(), platform.release()))
    L.append("versions: %s; libssh2 %s; %s" % (results["ssh_version"], results["libssh2"], results["git"]))
    loads = results["load"]
    L.append("load average (1 min) during the run: start %.2f, min %.2f, max %.2f, end %.2f"
             % (results["load0"], min(loads or [0]), max(loads or [0]), os.getloadavg()[0]))
    L.append("transfer %d MiB per direction; first byte over %d sequential connections; median of %d runs"
             % (args.size_mib, args.conns, args.reps))
    L.append("")
    for mode in args.modes:
        title = ("relay restricted to %s + %s" % (args.cipher, args.mac) if mode == "forced"
                 else "each side's defaults")
        cd, cs = results["cipher"].get((mode, "mysocketd"), ("?", "?")), results["cipher"].get((mode, "ssh"), ("?", "?"))
        L.append("== bulk throughput, %s  (mysocketd: %s/%s, ssh: %s/%s)" % ((title,) + cd + cs))
        L.append("%-28s %10s %10s %10s %9s %12s %12s %14s" % ("direction", "direct", "mysocketd", "ssh -R",
                                                              "d/ssh", "cpu d s/GiB", "cpu ssh s/GiB",
                                                              "syscalls d/ssh"))
        for direction, label in (("down", "service->client (tx)"), ("up", "client->service (rx)")):
            g = lambda n: med(results["bulk"].get((mode, direction, n), []))  # noqa: E731
            c = lambda n: med(results["cpu"].get((mode, direction, n), []))   # noqa: E731
            k = lambda n: med(results["sys"].get((mode, direction, n), [])) / 1e3  # noqa: E731
            L.append("%-28s %10.1f %10.1f %10.1f %8.2fx %12.2f %12.2f %14s"
                     % (label + " MB/s", g("direct"), g("mysocketd"), g("ssh"), g("mysocketd") / g("ssh"),
                        c("mysocketd"), c("ssh"),
                        "%.0fk/%.0fk" % (k("mysocketd"), k("ssh")) if results["sys"] else "no perf"))
        L.append("")
        L.append("== connect-to-first-byte, %s (ms)" % title)
        L.append("%-12s %10s %10s" % ("path", "p50", "p99"))
        for name in ("direct", "mysocketd", "ssh"):
            xs = results["fb"].get((mode, name), [])
            L.append("%-12s %10.3f %10.3f" % (name, med([x[0] for x in xs]), med([x[1] for x in xs])))
        if mode in results["hwm"]:
            L.append("mysocketd VmHWM after this run: %.1f MiB" % (results["hwm"][mode] / 1024))
        L.append("")
    if results["rss"]:
        L.append("== RSS with idle bindings (VmRSS, all bindings up)")
        for n in sorted(results["rss"]):
            L.append("mysocketd, %3d bindings      %8.1f MiB" % (n, med(results["rss"][n]) / 1024))
        L.append("one ssh -R client process    %8.1f MiB" % (med(results["rss_ssh"]) / 1024))
        L.append("")
    L.append("== targets")
    for mode in args.modes:
        for direction in ("down", "up"):
            d = med(results["bulk"].get((mode, direction, "mysocketd"), []))
            s = med(results["bulk"].get((mode, direction, "ssh"), []))
            L.append("throughput %-6s %-4s >= %.1fx ssh -R: %.2fx  %s"
                     % (mode, direction, TARGET_THROUGHPUT, d / s, verdict(d >= TARGET_THROUGHPUT * s)))
        d = med([x[1] for x in results["fb"].get((mode, "mysocketd"), [])])
        s = med([x[1] for x in results["fb"].get((mode, "ssh"), [])])
        L.append("p99 first byte %-6s <= %.1fx ssh -R: %.2fx  %s"
                 % (mode, TARGET_P99, d / s, verdict(d <= TARGET_P99 * s)))
    for e in results["errors"]:
        L.append("NOT MEASURED: %s" % e)
    if 200 in results["rss"]:
        r = med(results["rss"][200]) / 1024
        L.append("RSS 200 idle bindings < %d MiB: %.1f MiB  %s" % (TARGET_RSS_MIB, r, verdict(r < TARGET_RSS_MIB)))
    return "\n".join(L) + "\n"


def plot(results, args, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing (apt-get install python3-matplotlib): no chart written")
        return False
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    names = ("direct", "mysocketd", "ssh")
    colors = {"direct": "#999999", "mysocketd": "#1f77b4", "ssh": "#ff7f0e"}

    ax = axes[0][0]
    groups = [(m, d) for m in args.modes for d in ("down", "up")]
    w = 0.27
    for i, n in enumerate(names):
        ys = [med(results["bulk"].get((m, d, n), [])) for m, d in groups]
        ax.bar([x + (i - 1) * w for x in range(len(groups))], ys, w, label=n if n != "ssh" else "ssh -R",
               color=colors[n])
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(["%s\n%s" % (m, "svc->client" if d == "down" else "client->svc") for m, d in groups])
    ax.set_ylabel("MB/s")
    ax.set_yscale("log")
    ax.set_title("bulk throughput (%d MiB, median of %d)" % (args.size_mib, args.reps))
    ax.legend()

    ax = axes[0][1]
    for i, n in enumerate(("mysocketd", "ssh")):
        ys = [med(results["cpu"].get((m, d, n), [])) for m, d in groups]
        ax.bar([x + (i - 0.5) * 0.4 for x in range(len(groups))], ys, 0.4, label=n if n != "ssh" else "ssh -R",
               color=colors[n])
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(["%s\n%s" % (m, "svc->client" if d == "down" else "client->svc") for m, d in groups])
    ax.set_ylabel("CPU seconds per GiB")
    ax.set_title("tunnel client CPU per GiB")
    ax.legend()

    ax = axes[1][0]
    groups = [(m, q) for m in args.modes for q in (0, 1)]
    for i, n in enumerate(names):
        ys = [med([x[q] for x in results["fb"].get((m, n), [])]) for m, q in groups]
        ax.bar([x + (i - 1) * w for x in range(len(groups))], ys, w, label=n if n != "ssh" else "ssh -R",
               color=colors[n])
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(["%s\n%s" % (m, "p50" if q == 0 else "p99") for m, q in groups])
    ax.set_ylabel("ms")
    ax.set_title("connect to first byte (%d connections)" % args.conns)
    ax.legend()

    ax = axes[1][1]
    ns = sorted(results["rss"])
    labels = ["mysocketd\n%d bindings" % n for n in ns] + ["one ssh -R"]
    ys = [med(results["rss"][n]) / 1024 for n in ns] + [med(results["rss_ssh"]) / 1024]
    ax.bar(range(len(ys)), ys, color=[colors["mysocketd"]] * len(ns) + [colors["ssh"]])
    ax.axhline(TARGET_RSS_MIB, color="red", linestyle="--", label="target (200 bindings)")
    ax.set_xticks(range(len(ys)))
    ax.set_xticklabels(labels)
    ax.set_ylabel("VmRSS MiB")
    ax.set_title("RSS, idle bindings up")
    ax.legend()

    fig.suptitle("mysocketd vs ssh -R vs direct loopback — %s, load %.1f–%.1f"
                 % (datetime.date.today().isoformat(), min(results["load"] or [0]), max(results["load"] or [0])))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024, help="bytes per transfer and direction (default 1024)")
    ap.add_argument("--conns", type=int, default=1000, help="sequential connections for first byte (1000)")
    ap.add_argument("--reps", type=int, default=3, help="runs per figure; the median is reported (3)")
    ap.add_argument("--bindings", default="1,50,200", help="idle binding counts for RSS (1,50,200)")
    ap.add_argument("--modes", default="forced,default", help="cipher modes to run (forced,default)")
    ap.add_argument("--cipher", default=FORCED_CIPHER, help="cipher of the forced mode (%s)" % FORCED_CIPHER)
    ap.add_argument("--mac", default=FORCED_MAC, help="MAC of the forced mode (%s); libssh2 1.10 also has "
                    "hmac-sha2-512 and hmac-sha1" % FORCED_MAC)
    ap.add_argument("--start-timeout", type=float, default=120,
                    help="seconds for mysocketd's bindings to come up before the mode fails (120)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 32 MiB, 100 conns, 1 run, 1,10 bindings")
    ap.add_argument("--out", default=str(HERE / "results"), help="directory for tunnel.txt and tunnel.png")
    args = ap.parse_args()

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)      # unwinds through every `finally`: all is stopped
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    if args.quick:
        args.size_mib, args.conns, args.reps, args.bindings = 32, 100, 1, "1,10"
    args.bindings = [int(x) for x in args.bindings.split(",") if x]
    args.modes = [m for m in args.modes.split(",") if m]
    for b in (MYSOCKETD, MYSOCKETCTL, SSH):
        if not Path(b).exists():
            sys.exit("%s not found (build first: cd build && make)" % b)

    results = {"bulk": {}, "cpu": {}, "sys": {}, "fb": {}, "rss": {}, "rss_ssh": [], "cipher": {}, "hwm": {},
               "load": [], "load0": os.getloadavg()[0], "errors": []}
    results["ssh_version"] = subprocess.run([SSH, "-V"], capture_output=True, text=True).stderr.strip()
    try:
        results["libssh2"] = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libssh2-1"],
                                            capture_output=True, text=True).stdout.strip() or "?"
    except OSError:
        results["libssh2"] = "?"
    results["git"] = "mysocketd " + (subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                                    capture_output=True, text=True).stdout.strip() or "?")
    tmp = tempfile.mkdtemp(prefix="mysocketd-bench-")
    try:
        for mode in args.modes:
            try:
                run_mode(tmp, mode, args, results)
            except Exception as e:  # noqa: BLE001
                log("[%s] failed: %r" % (mode, e))
                results["errors"].append("%s: %s" % (mode, e))
        if args.bindings:
            try:
                run_rss(tmp, args, results)
            except Exception as e:  # noqa: BLE001
                log("[rss] failed: %r" % e)
                results["errors"].append("rss: %s" % e)
    finally:
        if not os.environ.get("BENCH_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log("kept %s" % tmp)
    text = table(results, args)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tunnel.txt").write_text(text)
    if plot(results, args, out / "tunnel.png"):
        log("wrote %s and %s" % (out / "tunnel.txt", out / "tunnel.png"))


if __name__ == "__main__":
    main()

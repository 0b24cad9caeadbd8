#!/usr/bin/python3
"""Benchmark: mysocketd's per-connection path vs `ssh -R` (issue 16, item 1).

Not part of the pass/fail suite. A real OpenSSH sshd on loopback is the relay
(tests/integration/relay.py); Debian's nginx serves a small static file on 127.0.0.1 as the
local service; mysocketd (direct mode, one binding) and `ssh -N -R` are connected to the
same relay in the same run, each with its own remote port. Per path (direct, mysocketd,
ssh -R), each the median of --reps runs, the two tunnels taking turns:

  * `ab -n N -c C` (one connection per request, as a browser without keep-alive) against
    the relay's port: requests/s, p50/p99/max (ab -e, in ms), failed requests;
  * --conns short connections in a row: connect, send the request, time to the first byte
    of the answer (p50/p99), then read to the close; the paths take turns connection by
    connection (the machine's load drifts by the second);
  * per accepted connection, over one extra ab run: the tunnel client's system calls
    (`perf stat` on the syscalls:sys_enter_* tracepoints, by call) and its loop turns:
    for mysocketd the calls of sd_event_dispatch (a uprobe on libsystemd, added for the
    run and removed after it) and its epoll_wait calls; for ssh its poll calls (ssh's
    client loop waits in one poll per turn).

Prints a table, writes results/connections.txt and results/connections.png (the chart needs
python3-matplotlib). Needs apache2-utils (ab), nginx-light (or any nginx), linux-perf.

    /usr/bin/python3 tests/bench/bench_connections.py            # full: ab -n 20000 -c 200, 1000 conns, 3 reps
    /usr/bin/python3 tests/bench/bench_connections.py --quick    # -n 2000, 200 conns, 1 rep
"""
import argparse
import datetime
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
from bench_tunnel import (MYSOCKETD, SSH, BenchDaemon, BenchRelay, cpu_seconds, log, med,  # noqa: E402
                          pct, remote_port, start_ssh, stop_proc)
import bench_tunnel  # noqa: E402
sys.path.insert(0, str(REPO / "tests" / "integration"))
from relay import free_port, wait_port  # noqa: E402

# Remote ports from a random point of the band below the ephemeral range: other bench runs
# on the machine start at its bottom too, and a port taken between the probe and sshd's bind
# fails the forward.
bench_tunnel._next_port[0] = random.randrange(21000, 30000)

AB = shutil.which("ab") or "/usr/bin/ab"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PERF = shutil.which("perf")
LIBSYSTEMD = "/usr/lib/x86_64-linux-gnu/libsystemd.so.0"
TRACEFS = next((p for p in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
                if os.path.exists(p + "/uprobe_events")), None)
UPROBE = "msdbench%d/turn" % os.getpid()      # a name of our own: other runs may probe too
BODY = b"<html><body>" + b"mysocketd bench " * 36 + b"</body></html>\n"   # ~600 bytes, like nginx's index
REQUEST = b"GET /index.html HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"


# ---- the local service: nginx in the foreground, its own prefix and pid file ----------------

class Nginx:
    def __init__(self, root):
        self.root = Path(root)
        (self.root / "html").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        (self.root / "html" / "index.html").write_bytes(BODY)
        self.port = free_port()
        temp = " ".join("%s_temp_path %s;" % (k, self.root / k) for k in ("client_body", "proxy", "fastcgi",
                                                                              "uwsgi", "scgi"))
        # user root: the tree is under a 0700 temp dir the default worker user cannot read.
        (self.root / "nginx.conf").write_text(f"""daemon off;
master_process on;
user root;
worker_processes 1;
pid {self.root / 'nginx.pid'};
error_log {self.root / 'logs' / 'error.log'} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    {temp}
    keepalive_timeout 0;
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        root {self.root / 'html'};
    }}
}}
""")
        self.proc = subprocess.Popen([NGINX, "-p", str(self.root), "-c", str(self.root / "nginx.conf")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.root / "logs" / "stderr.log", "ab"))
        if not wait_port("127.0.0.1", self.port, 10) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("nginx did not start; see %s" % (self.root / "logs"))

    def stop(self):
        # SIGTERM to the master (our child, by pid): it stops its worker and exits.
        stop_proc(self.proc)


# ---- clients ----------------------------------------------------------------------------------

def run_ab(port, n, c, tmp):
    """ab -n n -c c; returns dict(rps, p50, p99, max, failed, complete, slow) or raises with
    ab's words. slow: requests of 1 s or more, a SYN or SYN-ACK sent again (the relay's
    listen queue for a forwarded port is 128: sshd accepts one connection per loop turn, and
    ab opens its first 200 at once)."""
    csv, per = Path(tmp) / ("ab-%d.csv" % port), Path(tmp) / ("ab-%d.tsv" % port)
    p = subprocess.run([AB, "-q", "-n", str(n), "-c", str(c), "-s", "60", "-e", str(csv), "-g", str(per),
                        "http://127.0.0.1:%d/index.html" % port], capture_output=True, text=True, timeout=900)
    out = p.stdout
    if p.returncode != 0 or "Requests per second" not in out:
        raise RuntimeError("ab failed (rc %d): %s" % (p.returncode, (p.stderr or out).strip()[-300:]))
    g = lambda rx: float(re.search(rx, out).group(1))  # noqa: E731
    r = {"rps": g(r"Requests per second:\s+([\d.]+)"), "failed": int(g(r"Failed requests:\s+(\d+)")),
         "complete": int(g(r"Complete requests:\s+(\d+)"))}
    m = re.search(r"Non-2xx responses:\s+(\d+)", out)
    r["failed"] += int(m.group(1)) if m else 0
    pcts = {}
    for line in csv.read_text().splitlines()[1:]:
        k, v = line.split(",")
        pcts[int(float(k))] = float(v)
    r["p50"], r["p99"], r["max"] = pcts[50], pcts[99], pcts[100]
    rows = [ln.split("\t") for ln in per.read_text().splitlines()[1:]]
    r["slow"] = sum(1 for f in rows if len(f) > 4 and f[4].strip().isdigit() and int(f[4]) >= 1000)
    return r


def first_byte(port):
    """One connection: connect, request, first byte (s); then reads it to the close."""
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(REQUEST)
        b = s.recv(65536)
        if not b:
            raise RuntimeError("connection closed without an answer")
        dt = time.perf_counter() - t
        while b:
            b = s.recv(65536)
    return dt


def first_bytes(port, count):
    return [first_byte(port) for _ in range(count)]


def first_bytes_interleaved(ports, count):
    """count connections in a row on each port, taking turns connection by connection, so
    that the load of a shared machine, which drifts by the second, weighs on all alike."""
    out = {p: [] for p in ports}
    for _ in range(count):
        for p in ports:
            out[p].append(first_byte(p))
    return out


# ---- counting: system calls and loop turns per connection -------------------------------------

def write_events(line):
    """Appends one definition to tracefs' uprobe_events (no seek: tracefs refuses one)."""
    fd = os.open(TRACEFS + "/uprobe_events", os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class Uprobe:
    """A uprobe on libsystemd's sd_event_dispatch (one call per loop turn that dispatches),
    written to tracefs by this run under its own name and removed in close()."""

    def __init__(self):
        self.event = None
        if not (PERF and TRACEFS and os.path.exists(LIBSYSTEMD)):
            return
        lib = os.path.realpath(LIBSYSTEMD)
        out = subprocess.run(["nm", "-D", lib], capture_output=True, text=True).stdout
        addr = next((ln.split()[0] for ln in out.splitlines() if ln.split()[-1].startswith("sd_event_dispatch@")), None)
        if not addr:
            return
        try:
            write_events("p:%s %s:0x%s\n" % (UPROBE, lib, addr))
            self.event = UPROBE.replace("/", ":")
        except OSError as e:
            log("uprobe on sd_event_dispatch not set (%s): no loop-turn count" % e)

    def close(self):
        if self.event:
            try:
                write_events("-:%s\n" % UPROBE)
            except OSError as e:
                log("cannot remove uprobe %s: %s" % (UPROBE, e))
            self.event = None


class Counts:
    """perf stat -e 'syscalls:sys_enter_*',task-clock (+ extra events) on one pid over a
    with-block; .calls maps each system call to its count, .events the extra events',
    .task_ms the CPU time (utime+stime ticks in .cpu when perf is missing)."""

    def __init__(self, pid, extra=()):
        self.pid, self.extra, self.calls, self.events, self.proc = pid, [e for e in extra if e], {}, {}, None
        self.task_ms = None

    def __enter__(self):
        self.cpu0 = cpu_seconds(self.pid)
        if PERF:
            ev = ",".join(["syscalls:sys_enter_*", "task-clock"] + self.extra)
            self.proc = subprocess.Popen([PERF, "stat", "-x,", "-e", ev, "-p", str(self.pid)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(1.0)      # perf opens ~330 tracepoints before it counts
        return self

    def __exit__(self, *exc):
        self.cpu = cpu_seconds(self.pid) - self.cpu0
        if self.proc:
            self.proc.send_signal(signal.SIGINT)
            err = self.proc.communicate(timeout=60)[1]
            for line in err.splitlines():
                f = line.split(",")
                if len(f) >= 3 and f[2] == "task-clock":
                    self.task_ms = float(f[0])
                if len(f) < 3 or not f[0].isdigit():
                    continue
                name = f[2]
                if name.startswith("syscalls:sys_enter_"):
                    if int(f[0]):
                        self.calls[name[len("syscalls:sys_enter_"):]] = int(f[0])
                else:
                    self.events[name] = int(f[0])
        return False


# ---- the run ----------------------------------------------------------------------------------

def one_run(tmp, args, results):
    extra = ["MaxStartups 1000"]
    if args.cipher:
        extra += ["Ciphers %s" % args.cipher]
    relay = BenchRelay(Path(tmp) / "relay", extra_config=extra, debug=True)
    web = daemon = ssh = base = None
    probe = Uprobe()
    try:
        web = Nginx(Path(tmp) / "nginx")
        relay.start()
        rp_d, rp_s = remote_port(), remote_port()
        off = len(relay.log())
        daemon = BenchDaemon(Path(tmp) / "d", relay, [("web", web.port, rp_d)])
        daemon.start(timeout=args.start_timeout)
        time.sleep(0.5)
        results["cipher"]["mysocketd"] = relay.negotiated(off)
        off = len(relay.log())
        ssh = start_ssh(tmp, relay, [(rp_s, web.port)])
        time.sleep(0.5)
        results["cipher"]["ssh"] = relay.negotiated(off)
        log("mysocketd negotiated %s/%s, ssh %s/%s" % (results["cipher"]["mysocketd"] + results["cipher"]["ssh"]))
        paths = [("direct", web.port, None), ("mysocketd", rp_d, daemon.proc.pid), ("ssh", rp_s, ssh.pid)]
        if args.baseline:
            # bench_tunnel's BenchDaemon starts bench_tunnel.MYSOCKETD: this one from the other build.
            rp_b = remote_port()
            base = BenchDaemon(Path(tmp) / "b", relay, [("web", web.port, rp_b)])
            bench_tunnel.MYSOCKETD = Path(args.baseline) / "mysocketd"
            try:
                base.start(timeout=args.start_timeout)
            finally:
                bench_tunnel.MYSOCKETD = MYSOCKETD
            paths.append(("baseline", rp_b, base.proc.pid))

        for name, port, _ in paths:      # warm up: sessions, windows, nginx
            run_ab(port, min(1000, args.n), min(args.c, 50), tmp)
        for rep in range(args.reps):
            tunnels = paths[1:][rep % (len(paths) - 1):] + paths[1:][:rep % (len(paths) - 1)]
            order = [paths[0]] + tunnels       # each tunnel first in turn
            for name, port, pid in order:
                try:
                    c0 = cpu_seconds(pid) if pid else 0.0
                    r = run_ab(port, args.n, args.c, tmp)
                    r["cpu_us"] = (cpu_seconds(pid) - c0) / r["complete"] * 1e6 if pid else float("nan")
                except RuntimeError as e:
                    results["ab_errors"].append("%s rep %d: %s" % (name, rep + 1, e))
                    log("[ab] %s rep %d: %s" % (name, rep + 1, e))
                    continue
                results["ab"].setdefault(name, []).append(r)
                log("[ab] rep %d %-9s %8.0f req/s  p50 %.1f p99 %.1f max %.1f ms  failed %d  >=1s %d  cpu %.0f us/conn"
                    "  load %.2f" % (rep + 1, name, r["rps"], r["p50"], r["p99"], r["max"], r["failed"], r["slow"],
                                     r["cpu_us"], os.getloadavg()[0]))
            results["load"].append(os.getloadavg()[0])
            c0 = {name: cpu_seconds(pid) for name, _, pid in order if pid}
            tss = first_bytes_interleaved([port for _, port, _ in order], args.conns)
            for name, port, pid in order:
                ts = tss[port]
                cpu = (cpu_seconds(pid) - c0[name]) / args.conns * 1e6 if pid else float("nan")
                results["fb"].setdefault(name, []).append((pct(ts, 50) * 1e3, pct(ts, 99) * 1e3, cpu))
                log("[short] rep %d %-9s p50 %.3f ms p99 %.3f ms  cpu %.0f us/conn  load %.2f"
                    % (rep + 1, name, pct(ts, 50) * 1e3, pct(ts, 99) * 1e3, cpu, os.getloadavg()[0]))
            results["load"].append(os.getloadavg()[0])

        # Counting: its own ab run per tunnel (perf's tracepoints cost a little time).
        if PERF:
            for name, port, pid in paths[1:]:
                with Counts(pid, [probe.event] if name != "ssh" else []) as k:
                    r = run_ab(port, args.count_n, args.c, tmp)
                    time.sleep(0.5)     # the last closes
                results["calls"][name] = {c: v / r["complete"] for c, v in k.calls.items()}
                results["turns"][name] = {e: v / r["complete"] for e, v in k.events.items()}
                results["cpu"][name] = (k.task_ms * 1e3 if k.task_ms is not None else k.cpu * 1e6) / r["complete"]
                total = sum(k.calls.values()) / r["complete"]
                log("[count] %-9s %.1f system calls per connection (%d connections)" % (name, total, r["complete"]))
            for name, port, pid in paths[1:]:
                with Counts(pid, [probe.event] if name != "ssh" else []) as k:
                    first_bytes(port, args.count_conns)
                    time.sleep(0.5)
                results["calls_seq"][name] = {c: v / args.count_conns for c, v in k.calls.items()}
                results["turns_seq"][name] = {e: v / args.count_conns for e, v in k.events.items()}
                results["cpu_seq"][name] = ((k.task_ms * 1e3 if k.task_ms is not None else k.cpu * 1e6)
                                            / args.count_conns)
    finally:
        probe.close()
        for stop in (lambda: stop_proc(ssh), lambda: daemon and daemon.stop(), lambda: base and base.stop(), relay.stop,
                     lambda: web and web.stop()):
            try:
                stop()
            except Exception as e:  # noqa: BLE001
                log("cleanup: %r" % e)


# ---- output -----------------------------------------------------------------------------------

def turns(results, key, name):
    """Loop turns per connection: sd_event_dispatch calls (mysocketd) or poll calls (ssh)."""
    calls, ev = results[key.replace("turns", "calls")].get(name, {}), results[key].get(name, {})
    if name != "ssh":
        d = next((v for e, v in ev.items() if e.startswith("msdbench")), None)
        return d, calls.get("epoll_wait", 0) + calls.get("epoll_pwait", 0)
    return None, calls.get("ppoll", 0) + calls.get("poll", 0) + calls.get("select", 0) + calls.get("pselect6", 0)


def paths_of(results):
    return [n for n in ("direct", "mysocketd", "ssh", "baseline") if n in results["ab"] or n in results["fb"]]


def table(results, args):
    L = []
    now = datetime.datetime.now().astimezone()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        cpu = ""
    L.append("mysocketd connection benchmark  %s" % now.strftime("%Y-%m-%d %H:%M %Z"))
    L.append("machine: %s, %d CPUs, %s, kernel %s" % (cpu, os.cpu_count(), platform.machine(), platform.release()))
    L.append("versions: %s; %s; libssh2 %s; %s" % (results["ssh_version"], results["nginx"], results["libssh2"],
                                                    results["git"]))
    loads = results["load"] or [0]
    L.append("load average (1 min): start %.2f, min %.2f, max %.2f, end %.2f (shared machine: compare ratios)"
             % (results["load0"], min(loads), max(loads), os.getloadavg()[0]))
    cd, cs = results["cipher"].get("mysocketd", ("?", "?")), results["cipher"].get("ssh", ("?", "?"))
    L.append("negotiated: mysocketd %s/%s, ssh %s/%s; %d-byte static file from nginx; median of %d runs"
             % (cd + cs + (len(BODY), args.reps)))
    if args.baseline:
        L.append("baseline: %s, from %s, on the same relay in the same run" % (results["git_base"], args.baseline))
    L.append("")
    L.append("== ab -n %d -c %d (one connection per request)" % (args.n, args.c))
    L.append("%-10s %10s %9s %9s %9s %8s %9s %11s" % ("path", "req/s", "p50 ms", "p99 ms", "max ms", "failed",
                                                       ">=1 s", "CPU us/conn"))
    for name in paths_of(results):
        rs = results["ab"].get(name, [])
        L.append("%-10s %10.0f %9.1f %9.1f %9.1f %8d %9s %11.0f"
                 % (name, med([r["rps"] for r in rs]), med([r["p50"] for r in rs]), med([r["p99"] for r in rs]),
                    med([r["max"] for r in rs]), sum(r["failed"] + args.n - r["complete"] for r in rs),
                    "/".join(str(r["slow"]) for r in rs), med([r["cpu_us"] for r in rs])))
    L.append("(failed: summed over the runs; >=1 s: requests of a second or more in each run, a SYN or SYN-ACK")
    L.append(" sent again when the relay's listen queue (sshd: 128) overflowed; CPU: utime+stime of the tunnel")
    L.append(" client per request, in 10 ms ticks)")
    L.append("")
    L.append("== %d short connections in a row on each path, the paths taking turns connection by connection:"
             % args.conns)
    L.append("   connect + request to first byte (ms)")
    L.append("%-10s %9s %9s %11s" % ("path", "p50", "p99", "CPU us/conn"))
    for name in paths_of(results):
        xs = results["fb"].get(name, [])
        L.append("%-10s %9.3f %9.3f %11.0f" % (name, med([x[0] for x in xs]), med([x[1] for x in xs]),
                                                med([x[2] for x in xs])))
    L.append("")
    for key, title in (("calls", "ab -n %d -c %d" % (args.count_n, args.c)),
                       ("calls_seq", "%d connections in a row" % args.count_conns)):
        if not results[key]:
            continue
        L.append("== per accepted connection, %s: system calls (perf stat syscalls:sys_enter_*)" % title)
        names = sorted(set().union(*[set(v) for v in results[key].values()]),
                       key=lambda c: -max(results[key][n].get(c, 0) for n in results[key]))
        cols = [n for n in paths_of(results) if n in results[key]]
        L.append("%-22s" % "call" + "".join("%10s" % ("ssh -R" if n == "ssh" else n) for n in cols))
        for c in names:
            xs = [results[key][n].get(c, 0) for n in cols]
            if max(xs) >= 0.05:
                L.append("%-22s" % c + "".join("%10.2f" % x for x in xs))
        L.append("%-22s" % "TOTAL" + "".join("%10.2f" % sum(results[key][n].values()) for n in cols))
        tk, ck = key.replace("calls", "turns"), key.replace("calls", "cpu")
        L.append("CPU per connection with ~330 tracepoints and the uprobe attached (perf task-clock; the")
        L.append("  uprobe traps on every turn, so this inflates mysocketd's; unattached figures above):")
        L.append("  " + ", ".join("%s %.0f us" % (n, results[ck].get(n, float("nan"))) for n in cols))
        parts = []
        for n in cols:
            dd, w = turns(results, tk, n)
            parts.append("%s %.2f poll" % (n, w) if n == "ssh" else "%s %s sd_event_dispatch, %.2f epoll_wait"
                         % (n, "%.2f" % dd if dd is not None else "(no uprobe)", w))
        L.append("loop turns: " + "; ".join(parts))
        L.append("")
    L.append("== targets (issue 16 item 1)")
    d, s = results["ab"].get("mysocketd", []), results["ab"].get("ssh", [])
    if d and s:
        rd, rs_ = med([r["rps"] for r in d]), med([r["rps"] for r in s])
        L.append("req/s >= 1.0x ssh -R: %.2fx  %s" % (rd / rs_, "MET" if rd >= rs_ else "MISSED"))
        for k in ("p99", "max"):
            a, b = med([r[k] for r in d]), med([r[k] for r in s])
            L.append("%s no worse than ssh -R: %.1f vs %.1f ms  %s" % (k, a, b, "MET" if a <= b else "MISSED"))
        f = sum(r["failed"] + args.n - r["complete"] for r in d)
        L.append("0 failed requests: %d  %s" % (f, "MET" if f == 0 else "MISSED"))
    fd, fs = results["fb"].get("mysocketd", []), results["fb"].get("ssh", [])
    if fd and fs:
        for i, k in ((0, "p50"), (1, "p99")):
            a, b = med([x[i] for x in fd]), med([x[i] for x in fs])
            L.append("short connections %s no worse than ssh -R: %.3f vs %.3f ms  %s"
                     % (k, a, b, "MET" if a <= b else "MISSED"))
    for e in results["ab_errors"] + results["errors"]:
        L.append("ERROR: %s" % e)
    return "\n".join(L) + "\n"


def plot(results, args, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing (apt-get install python3-matplotlib): no chart written")
        return False
    names = paths_of(results)
    colors = {"direct": "#999999", "mysocketd": "#1f77b4", "ssh": "#ff7f0e", "baseline": "#9ecae1"}
    label = lambda n: "ssh -R" if n == "ssh" else n  # noqa: E731
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))

    ax = axes[0][0]
    ys = [med([r["rps"] for r in results["ab"].get(n, [])]) for n in names]
    ax.bar(range(len(names)), ys, color=[colors[n] for n in names])
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([label(n) for n in names])
    ax.set_ylabel("requests/s")
    ax.set_title("ab -n %d -c %d, one connection per request" % (args.n, args.c))

    ax = axes[0][1]
    w = 0.8 / len(names)
    off = (len(names) - 1) / 2
    for i, n in enumerate(names):
        rs = results["ab"].get(n, [])
        ax.bar([x + (i - off) * w for x in range(3)], [med([r[k] for r in rs]) for k in ("p50", "p99", "max")], w,
               label=label(n), color=colors[n])
    ax.set_xticks(range(3))
    ax.set_xticklabels(["p50", "p99", "max"])
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    ax.set_title("ab request time")
    ax.legend()

    ax = axes[1][0]
    for i, n in enumerate(names):
        xs = results["fb"].get(n, [])
        ax.bar([x + (i - off) * w for x in range(2)], [med([x[q] for x in xs]) for q in (0, 1)], w, label=label(n),
               color=colors[n])
    ax.set_xticks(range(2))
    ax.set_xticklabels(["p50", "p99"])
    ax.set_ylabel("ms")
    ax.set_title("%d short connections in a row: to first byte" % args.conns)
    ax.legend()

    ax = axes[1][1]
    calls = results["calls"]
    if calls:
        top = sorted(set().union(*[set(v) for v in calls.values()]),
                     key=lambda c: -max(calls[n].get(c, 0) for n in calls))[:10]
        cols = [n for n in names if n in calls]
        h = 0.8 / max(1, len(cols))
        for i, n in enumerate(cols):
            ax.barh([y + (i - (len(cols) - 1) / 2) * h for y in range(len(top))],
                    [calls.get(n, {}).get(c, 0) for c in top], h, label=label(n), color=colors[n])
        ax.set_yticks(range(len(top)))
        ax.set_yticklabels(top)
        ax.invert_yaxis()
        ax.set_xlabel("system calls per connection (ab -c %d)" % args.c)
        ax.legend()
    ax.set_title("system calls per accepted connection")
    fig.suptitle("mysocketd vs ssh -R, per-connection path — %s, load %.1f–%.1f"
                 % (datetime.date.today().isoformat(), min(results["load"] or [0]), max(results["load"] or [0])))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20000, help="ab requests per run (20000)")
    ap.add_argument("-c", type=int, default=200, help="ab concurrency (200)")
    ap.add_argument("--conns", type=int, default=1000, help="short connections in a row (1000)")
    ap.add_argument("--reps", type=int, default=3, help="runs per figure, the median reported (3)")
    ap.add_argument("--count-n", type=int, default=5000, help="ab requests of the counting run (5000)")
    ap.add_argument("--count-conns", type=int, default=500, help="connections in a row while counting (500)")
    ap.add_argument("--cipher", default="", help="restrict the relay to this cipher (default: each side's own)")
    ap.add_argument("--start-timeout", type=float, default=60, help="s for the binding to come up (60)")
    ap.add_argument("--quick", action="store_true", help="smoke run: -n 2000, 200 conns, 1 rep")
    ap.add_argument("--out", default=str(HERE / "results"), help="directory for connections.txt/.png")
    ap.add_argument("--name", default="connections", help="file name stem of the results (connections)")
    ap.add_argument("--baseline", default="", metavar="BUILDDIR",
                    help="also run the mysocketd of another build (e.g. of an earlier commit) on the same relay "
                         "in the same run, as 'baseline': before/after figures under the same load")
    args = ap.parse_args()
    if args.quick:
        args.n, args.conns, args.reps, args.count_n, args.count_conns = 2000, 200, 1, 2000, 200
    for b in (MYSOCKETD, SSH, AB, NGINX):
        if not Path(b).exists():
            sys.exit("%s not found (build first; apt-get install apache2-utils nginx-light linux-perf)" % b)
    if not PERF:
        log("perf missing (apt-get install linux-perf): no system call counts")

    results = {"ab": {}, "fb": {}, "cpu": {}, "cpu_seq": {}, "calls": {}, "turns": {}, "calls_seq": {},
               "turns_seq": {}, "cipher": {},
               "load": [], "load0": os.getloadavg()[0], "errors": [], "ab_errors": []}
    results["ssh_version"] = subprocess.run([SSH, "-V"], capture_output=True, text=True).stderr.strip()
    results["nginx"] = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip()
    results["libssh2"] = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libssh2-1"],
                                        capture_output=True, text=True).stdout.strip() or "?"
    src = MYSOCKETD.parent.parent       # the tree the daemon was built from (MYSOCKETD_BUILDDIR)
    results["git"] = "mysocketd " + (subprocess.run(["git", "-C", str(src), "describe", "--always", "--dirty"],
                                                    capture_output=True, text=True).stdout.strip() or "?")
    if args.baseline:
        if not (Path(args.baseline) / "mysocketd").exists():
            sys.exit("%s/mysocketd not found" % args.baseline)
        results["git_base"] = "mysocketd " + (subprocess.run(
            ["git", "-C", str(Path(args.baseline).resolve().parent), "describe", "--always", "--dirty"],
            capture_output=True, text=True).stdout.strip() or "?")
    tmp = tempfile.mkdtemp(prefix="mysocketd-bench-conn-")
    try:
        one_run(tmp, args, results)
    except Exception as e:  # noqa: BLE001
        log("failed: %r" % e)
        results["errors"].append(str(e))
    finally:
        if not os.environ.get("BENCH_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log("kept %s" % tmp)
    text = table(results, args)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / (args.name + ".txt")).write_text(text)
    if plot(results, args, out / (args.name + ".png")):
        log("wrote %s and %s" % (out / (args.name + ".txt"), out / (args.name + ".png")))


if __name__ == "__main__":
    main()

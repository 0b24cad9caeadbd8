#!/usr/bin/python3
"""Benchmark: many idle bindings — memory, start-up, `list` latency, relay restart (issue 14
item 6, issue 16 item 5).

Not part of the pass/fail suite. A real OpenSSH sshd on loopback is the relay
(tests/integration/relay.py); in front of it a counting TCP forwarder written here (every
connect the daemon makes to the relay is one accept of the forwarder, timestamped). Scenarios:

  * direct N: N idle bindings in direct mode (they share one SSH session: one tcpip-forward
    each on it, see agent/tunnel/tunnel.c);
  * api N×T: N bindings × `tunnels = T` in API mode against tests/emulator/api_emulator.py
    (API mode never shares: one SSH session per tunnel, each with its log shell).

Per scenario: time from the daemon's start to every tunnel up; VmRSS and Pss
(/proc/PID/smaps_rollup) once all are up; `mysocketctl list` wall time over --list-calls
calls (median, max) and the raw control request alone; then the relay is killed (SIGKILL of
sshd and its session processes, by pid), kept down --down seconds and started again on the
same port: time to all up again, and the relay's connection attempts per second over time
(the forwarder's accepts; while sshd is down it accepts and resets). Writes
results/scale.txt, results/scale.json (every attempt's time) and results/scale.png.

    /usr/bin/python3 tests/bench/bench_scale.py              # 200 and 1000 direct, 200×2 API
    /usr/bin/python3 tests/bench/bench_scale.py --quick      # 20 and 50 direct, 20×T API
    /usr/bin/python3 tests/bench/bench_scale.py --tunnels 1  # before `tunnels = N` exists
"""
import argparse
import datetime
import json
import os
import platform
import selectors
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))
import bench_tunnel as bt  # noqa: E402  (relay, daemon and process helpers)
from bench_tunnel import BenchDaemon, BenchRelay, log, remote_port, status_kib, stop_proc  # noqa: E402
from emulator.harness import Emulator  # noqa: E402
from relay import free_port  # noqa: E402

EMAIL, PASSWORD = "bench@example.com", "bench-pw-4711"
RELAY_EXTRA = ["MaxStartups 2000", "MaxSessions 100"]
# By (mode, tunnels): API mode's target is for 200 bindings × 2 tunnels, 400 SSH sessions,
# which 400 × 1 stands in for until `tunnels = N` exists.
TARGET_RSS_MIB = {("direct", 200): 20, ("direct", 1000): 24, ("api", 400): 32}
TARGET_LIST_MS = 50
HERD_SHARE = 0.5        # a herd: half the sessions or more connect within one 100 ms


# ---- the counting forwarder ----------------------------------------------------------------

class CountingForwarder:
    """Listens on 127.0.0.1:port and relays each connection to 127.0.0.1:upstream; records
    the monotonic time of every accept. When upstream refuses (sshd down) the connection is
    reset at once, as a dead relay host would. One thread, selectors; for idle traffic."""

    def __init__(self, upstream, port=None):
        self.upstream = upstream
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port or 0))
        self.lsock.listen(4096)
        self.port = self.lsock.getsockname()[1]
        self.accepts = []
        self.lag = 0.0          # the longest a connect waited in the accept queue (s)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.lsock, selectors.EVENT_READ, None)
        self.peer = {}
        self.stopping = False
        self.wake_r, self.wake_w = socket.socketpair()
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _drop(self, s):
        p = self.peer.pop(s, None)
        for x in (s, p):
            if x is None:
                continue
            self.peer.pop(x, None)
            try:
                self.sel.unregister(x)
            except (KeyError, ValueError):
                pass
            x.close()

    def _accept(self):
        try:
            c, _ = self.lsock.accept()
        except OSError:
            return
        now = time.monotonic()
        # When the kernel saw the connection, not when this thread got to it (it may have
        # waited for the GIL): the handshake's last ACK, from TCP_INFO (tcpi_last_ack_recv, ms).
        try:
            ago = struct.unpack_from("8B13I", c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104))[8 + 12]
        except (OSError, struct.error):
            ago = 0
        self.accepts.append(now - min(ago, 5000) / 1e3)
        self.lag = max(self.lag, min(ago, 5000) / 1e3)
        u = socket.socket()
        u.settimeout(2)
        try:
            u.connect(("127.0.0.1", self.upstream))
        except OSError:
            u.close()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()           # RST: the relay is not there
            return
        u.settimeout(None)
        self.peer[c], self.peer[u] = u, c
        self.sel.register(c, selectors.EVENT_READ, "data")
        self.sel.register(u, selectors.EVENT_READ, "data")

    def _run(self):
        while not self.stopping:
            for key, _ in self.sel.select(1.0):
                if key.data is None:
                    self._accept()
                elif key.data == "wake":
                    self.wake_r.recv(64)
                elif key.fileobj in self.peer:
                    s = key.fileobj
                    try:
                        b = s.recv(1 << 16)
                        if b:
                            self.peer[s].sendall(b)
                            continue
                    except OSError:
                        pass
                    self._drop(s)
        for s in list(self.peer):
            self._drop(s)

    def count_since(self, t):
        return sum(1 for a in list(self.accepts) if a >= t)

    def close(self):
        self.stopping = True
        self.wake_w.send(b"x")
        self.thread.join(10)
        for s in (self.lsock, self.wake_r, self.wake_w):
            s.close()


# ---- daemon ---------------------------------------------------------------------------------

class ScaleDaemon(BenchDaemon):
    """bench_tunnel's daemon (start/stop by pid, control requests) with this bench's config:
    direct mode (bindings with remote ports) or API mode (api = the emulator)."""

    def __init__(self, root, relay, port, n, idle_port, api=None, tunnels=1, daemon_extra=""):
        super().__init__(root, relay, [])
        self.names = ["b%04d" % i for i in range(n)]
        self.tunnels = tunnels
        st = self.root / "state"
        text = (f"[daemon]\nstate_dir = {st}\ncontrol_socket = {self.socket}\ncontrol_group = root\n"
                f"log_level = info\n{daemon_extra}\n")
        if api:
            pw = self.root / "password"
            pw.write_text(PASSWORD + "\n")
            os.chmod(pw, 0o600)
            text += f"[api]\nurl = {api.url}\nemail = {EMAIL}\npassword_file = {pw}\n\n"
        # The daemon's own backoff and keepalive defaults: what a user gets.
        text += (f"[ssh]\nserver = 127.0.0.1\nport = {port}\n" + ("" if api else f"user = {relay.user}\n")
                 + f"identity_file = {relay.client_key}\nknown_hosts = {st / 'known_hosts'}\n"
                 f"host_key_check = accept-new\n\n")
        for name in self.names:
            text += f'[binding "{name}"]\nport = {idle_port}\n'
            text += (f"tunnels = {tunnels}\n" if tunnels != 1 else "") if api else f"remote_port = {remote_port()}\n"
            text += "\n"
        self.config.write_text(text)

    def listing(self):
        try:
            r = self._request({"v": 1, "cmd": "list"})
            return r.get("bindings")
        except (OSError, ValueError):
            return None

    def tunnels_up(self):
        """(tunnels up, tunnels wanted) over all bindings, from one `list`."""
        bs = self.listing()
        if not bs or len(bs) != len(self.names):
            return 0, len(self.names) * self.tunnels
        up = 0
        for b in bs:
            want = b.get("tunnels", 1)
            want = len(want) if isinstance(want, list) else want
            up += min(want, b.get("tunnels_up", 1 if b["state"] == "up" else 0)) if b["state"] == "up" else 0
        return up, len(self.names) * self.tunnels

    def start_proc(self):
        self.logf = open(self.log, "ab")
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
        self.proc = subprocess.Popen([str(bt.MYSOCKETD), "-c", str(self.config)], stdout=self.logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    def wait_all_up(self, timeout, what):
        """Seconds until every tunnel is up (polled every 0.1 s); raises after timeout."""
        t0 = time.monotonic()
        last = (0, 0)
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-2:]
                raise RuntimeError("mysocketd exited: %s" % " / ".join(tail))
            last = self.tunnels_up()
            if last[0] == last[1]:
                return time.monotonic() - t0
            time.sleep(0.1)
        raise RuntimeError("%s: %d of %d tunnels up after %ds" % (what, last[0], last[1], timeout))


def memory(pid):
    out = {"rss": status_kib(pid, "VmRSS")}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Pss", "Pss_Anon", "Pss_File", "Private_Dirty"):
                    out[k.lower()] = int(v.split()[0])
    except OSError:
        pass
    return out


def list_latency(d, calls):
    """(CLI wall times, raw control request times) in ms over `calls` calls each."""
    cli, raw = [], []
    for _ in range(calls):
        t = time.perf_counter()
        p = subprocess.run([str(bt.MYSOCKETCTL), "-s", str(d.socket), "list"], capture_output=True, text=True,
                           timeout=30)
        cli.append((time.perf_counter() - t) * 1e3)
        if p.returncode != 0 or len(p.stdout.splitlines()) != len(d.names) + 1:
            raise RuntimeError("mysocketctl list failed: %s" % (p.stderr or p.stdout[-500:]))
        t = time.perf_counter()
        d.listing()
        raw.append((time.perf_counter() - t) * 1e3)
    return cli, raw


def port_block(n, start=24000):
    """A base port with n free ports above it, below the ephemeral range (the emulator hands
    out relay ports base, base+1, ...)."""
    base = start
    while True:
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok, base = False, p + 1
                    break
        if ok:
            return base


# ---- one scenario ---------------------------------------------------------------------------

def run_scenario(tmp, kind, n, args, results):
    tunnels = args.tunnels if kind == "api" else 1
    key = "%s-%d" % (kind, n) + ("x%d" % tunnels if kind == "api" else "")
    sdir = Path(tmp) / key
    sdir.mkdir(parents=True)
    r = {"kind": kind, "bindings": n, "tunnels": tunnels, "load": [os.getloadavg()[0]]}
    results["scenarios"][key] = r
    relay = BenchRelay(sdir / "relay", extra_config=RELAY_EXTRA, debug=False)
    fwd = api = d = None
    try:
        relay.start()
        fwd = CountingForwarder(relay.port)
        if kind == "api":
            api = Emulator(sdir, users=((EMAIL, PASSWORD, relay.user),),
                           relay_port_base=port_block(n * tunnels + 16)).start()
        d = ScaleDaemon(sdir / "d", relay, fwd.port, n, free_port(), api=api, tunnels=tunnels,
                        daemon_extra="".join(x + "\n" for x in args.daemon_extra))
        t0 = time.monotonic()
        r["t0"] = t0
        d.start_proc()
        r["start_up_s"] = d.wait_all_up(args.start_timeout, "start")
        r["start_attempts"] = fwd.count_since(t0)
        log("[%s] all %d tunnels up %.1f s after start, %d connects to the relay  load %.2f"
            % (key, n * tunnels, r["start_up_s"], r["start_attempts"], os.getloadavg()[0]))
        time.sleep(args.settle)
        r["mem"] = memory(d.proc.pid)
        log("[%s] VmRSS %.1f MiB, Pss %.1f MiB (anon %.1f)" % (key, r["mem"]["rss"] / 1024,
                                                              r["mem"].get("pss", 0) / 1024,
                                                              r["mem"].get("pss_anon", 0) / 1024))
        r["sessions"] = len(fwd.peer) // 2
        cli, raw = list_latency(d, args.list_calls)
        r["list_cli_ms"], r["list_raw_ms"] = cli, raw
        log("[%s] list: mysocketctl median %.1f ms max %.1f ms; request alone median %.1f ms max %.1f ms"
            % (key, statistics.median(cli), max(cli), statistics.median(raw), max(raw)))
        r["load"].append(os.getloadavg()[0])

        # Relay restart: sshd and its session processes SIGKILLed by pid, down, started again.
        r["t_kill"] = time.monotonic()
        relay.kill()
        time.sleep(args.down)
        relay.start()
        r["t_restart"] = time.monotonic()
        r["restart_up_s"] = d.wait_all_up(args.start_timeout, "after the relay restart")
        r["t_back"] = time.monotonic()
        time.sleep(args.tail)
        r["restart_attempts"] = fwd.count_since(r["t_kill"])
        log("[%s] relay restarted: all up %.1f s after sshd started again (%.1f s after the kill), "
            "%d connects since the kill  load %.2f"
            % (key, r["restart_up_s"], r["t_back"] - r["t_kill"], r["restart_attempts"], os.getloadavg()[0]))
        r["mem_after"] = memory(d.proc.pid)
        r["load"].append(os.getloadavg()[0])
    except Exception as e:  # noqa: BLE001
        r["error"] = str(e)
        raise
    finally:
        if fwd:
            r["accepts"] = [a - r.get("t0", 0) for a in fwd.accepts]
            r["accept_lag_s"] = fwd.lag
        for stop in (lambda: d and d.stop(), relay.stop, lambda: api and api.stop(), lambda: fwd and fwd.close()):
            try:
                stop()
            except Exception as e:  # noqa: BLE001
                log("[%s] cleanup: %r" % (key, e))


# ---- figures --------------------------------------------------------------------------------

def per_second(times, t_from, t_to, width=1.0):
    """Counts per bin of `width` s in [t_from, t_to): (bin starts, counts)."""
    nb = max(1, int((t_to - t_from) / width + 0.999))
    counts = [0] * nb
    for t in times:
        i = int((t - t_from) / width)
        if 0 <= i < nb:
            counts[i] += 1
    return [t_from + i * width for i in range(nb)], counts


def restart_figures(r):
    t0 = r.get("t0", 0)
    kill, back = r["t_kill"] - t0, r["t_back"] - t0
    times = [a for a in r["accepts"] if a >= kill]
    _, sec = per_second(times, kill, back + 1)
    _, tenth = per_second(times, kill, back + 1, 0.1)
    return {"peak_per_s": max(sec), "peak_per_100ms": max(tenth), "total": len(times),
            "herd": max(tenth) >= max(3, HERD_SHARE * r["sessions"])}


def table(results, args):
    L = []
    now = datetime.datetime.now().astimezone()
    L.append("mysocketd scale benchmark  %s" % now.strftime("%Y-%m-%d %H:%M %Z"))
    L.append("machine: %s, %d CPUs, kernel %s; %s; libssh2 %s; %s"
             % (results["cpu"], os.cpu_count(), platform.release(), results["ssh_version"], results["libssh2"],
                results["git"]))
    L.append("load average (1 min): start %.2f, end %.2f — a shared machine: times move with the load"
             % (results["load0"], os.getloadavg()[0]))
    L.append("relay restart: sshd SIGKILLed, down %.0f s, started again on the same port; the daemon's "
             "default backoff (initial 1 s, max 300 s, full jitter)" % args.down)
    L.append("")
    L.append("%-14s %8s %9s %9s %9s %8s %10s %10s %9s %10s %8s %8s" % (
        "scenario", "tunnels", "start s", "connects", "VmRSS MiB", "Pss MiB", "list p50ms", "list max",
        "raw p50", "restart s", "peak/s", "conn."))
    for key, r in results["scenarios"].items():
        if "error" in r and "mem" not in r:
            L.append("%-14s NOT MEASURED: %s" % (key, r["error"]))
            continue
        rf = restart_figures(r) if "t_back" in r else None
        L.append("%-14s %8d %9.1f %9d %9.1f %8.1f %10.1f %10.1f %9.1f %10s %8s %8s" % (
            key, r["bindings"] * r["tunnels"], r["start_up_s"], r["start_attempts"], r["mem"]["rss"] / 1024,
            r["mem"].get("pss", 0) / 1024, statistics.median(r["list_cli_ms"]), max(r["list_cli_ms"]),
            statistics.median(r["list_raw_ms"]),
            "%.1f" % r["restart_up_s"] if rf else "-", rf["peak_per_s"] if rf else "-",
            rf["total"] if rf else "-"))
        if "error" in r:
            L.append("%-14s   then failed: %s" % ("", r["error"]))
    lag = max([r.get("accept_lag_s", 0) for r in results["scenarios"].values()] or [0])
    L.append("(connect times are the kernel's (TCP_INFO last ACK); the forwarder took them up to %.0f ms late)"
             % (lag * 1e3))
    L.append("(start s: daemon start to every tunnel up; connects: TCP connects the relay saw meanwhile;"
             " restart s: sshd started again to every tunnel up; peak/s: the busiest second of connects"
             " from the kill to all up; conn.: connects in that time)")
    L.append("")
    L.append("== targets")
    for key, r in results["scenarios"].items():
        if "mem" not in r:
            L.append("%s: NOT MEASURED (%s)" % (key, r.get("error")))
            continue
        tgt = TARGET_RSS_MIB.get((r["kind"], r["bindings"] * r["tunnels"]))
        rss = r["mem"]["rss"] / 1024
        if tgt:
            L.append("%s RSS <= %d MiB: %.1f MiB  %s" % (key, tgt, rss, bt.verdict(rss <= tgt)))
        lm = statistics.median(r["list_cli_ms"])
        L.append("%s list < %d ms: median %.1f ms, max %.1f ms  %s" % (key, TARGET_LIST_MS, lm, max(r["list_cli_ms"]),
                                                                     bt.verdict(lm < TARGET_LIST_MS)))
        if "t_back" in r:
            rf = restart_figures(r)
            L.append("%s restart: back in %.1f s; %d connects, peak %d/s and %d in the busiest 100 ms, for %d "
                     "tunnels on %d SSH sessions: %s"
                     % (key, r["restart_up_s"], rf["total"], rf["peak_per_s"], rf["peak_per_100ms"],
                        r["bindings"] * r["tunnels"], r["sessions"], "HERD" if rf["herd"] else "jittered, no herd"))
    return "\n".join(L) + "\n"


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # noqa: BLE001  (ImportError, or a half-installed package)
        log("matplotlib unusable (%s; apt-get install python3-matplotlib): no chart written" % e)
        return False
    sc = [(k, r) for k, r in results["scenarios"].items() if "t_back" in r or "mem" in r]
    if not sc:
        return False
    fig, axes = plt.subplots(len(sc) + 1, 2, figsize=(13, 3.2 * (len(sc) + 1)), squeeze=False)
    for row, (key, r) in enumerate(sc):
        ax = axes[row][0]
        end = r["start_up_s"] + 2
        kill = r.get("t_kill", r["t0"] + end) - r["t0"]     # the restart's connects are the other panel's
        xs, ys = per_second([a for a in r["accepts"] if a < kill], 0, end)
        ax.bar(xs, ys, width=1.0, align="edge", color="#1f77b4")
        ax.axvline(r["start_up_s"], color="green", linestyle="--", label="all up %.1f s" % r["start_up_s"])
        ax.set_title("%s: connects/s to the relay from the daemon's start" % key)
        ax.set_xlabel("s since the daemon started")
        ax.set_ylabel("connects/s")
        ax.legend(fontsize=8)
        ax = axes[row][1]
        if "t_back" in r:
            t0, kill = r["t0"], r["t_kill"] - r["t0"]
            xs, ys = per_second(r["accepts"], kill - 1, r["t_back"] - t0 + args_tail(results))
            ax.bar([x - kill for x in xs], ys, width=1.0, align="edge", color="#ff7f0e")
            ax.axvline(0, color="red", linestyle="--", label="sshd killed")
            ax.axvline(r["t_restart"] - r["t_kill"], color="black", linestyle=":", label="sshd started")
            ax.axvline(r["t_back"] - r["t_kill"], color="green", linestyle="--",
                       label="all %d up (+%.1f s)" % (r["bindings"] * r["tunnels"], r["restart_up_s"]))
            ax.legend(fontsize=8)
        ax.set_title("%s: connects/s around the relay restart" % key)
        ax.set_xlabel("s since sshd was killed")
        ax.set_ylabel("connects/s")
    keys = [k for k, r in sc if "mem" in r]
    ax = axes[-1][0]
    ax.bar([i - 0.2 for i in range(len(keys))], [results["scenarios"][k]["mem"]["rss"] / 1024 for k in keys], 0.4,
           label="VmRSS", color="#1f77b4")
    ax.bar([i + 0.2 for i in range(len(keys))], [results["scenarios"][k]["mem"].get("pss", 0) / 1024 for k in keys],
           0.4, label="Pss", color="#aec7e8")
    for i, k in enumerate(keys):
        r = results["scenarios"][k]
        t = TARGET_RSS_MIB.get((r["kind"], r["bindings"] * r["tunnels"]))
        if t:
            ax.plot([i - 0.4, i + 0.4], [t, t], color="red", linestyle="--")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys)
    ax.set_ylabel("MiB")
    ax.set_title("daemon memory, all up (red: target)")
    ax.legend(fontsize=8)
    ax = axes[-1][1]
    ax.bar([i - 0.2 for i in range(len(keys))], [statistics.median(results["scenarios"][k]["list_cli_ms"])
                                                 for k in keys], 0.4, label="median", color="#2ca02c")
    ax.bar([i + 0.2 for i in range(len(keys))], [max(results["scenarios"][k]["list_cli_ms"]) for k in keys], 0.4,
           label="max", color="#98df8a")
    ax.axhline(TARGET_LIST_MS, color="red", linestyle="--", label="target")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys)
    ax.set_ylabel("ms")
    ax.set_title("`mysocketctl list` wall time")
    ax.legend(fontsize=8)
    fig.suptitle("mysocketd scale — %s, load %.1f–%.1f (shared 2-vCPU machine)"
                 % (datetime.date.today().isoformat(), results["load0"],
                    max([x for r in results["scenarios"].values() for x in r["load"]] or [0])))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return True


def args_tail(results):
    return results.get("tail", 3) + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--direct", default="200,1000", help="direct-mode binding counts (200,1000; empty: none)")
    ap.add_argument("--api", default="200", help="API-mode binding counts (200; empty: none)")
    ap.add_argument("--tunnels", type=int, default=2, help="`tunnels = N` of every API binding (2)")
    ap.add_argument("--list-calls", type=int, default=20, help="mysocketctl list calls per scenario (20)")
    ap.add_argument("--down", type=float, default=5, help="s the relay stays down (5)")
    ap.add_argument("--tail", type=float, default=3, help="s counted after all are up again (3)")
    ap.add_argument("--settle", type=float, default=2, help="s between all up and the memory reading (2)")
    ap.add_argument("--start-timeout", type=float, default=240, help="s for all tunnels up, else it fails (240)")
    ap.add_argument("--daemon-extra", action="append", default=[],
                    help="a line for the daemon's [daemon] section, e.g. 'log_format = json' (repeatable)")
    ap.add_argument("--quick", action="store_true", help="20 and 50 direct, 20 API, 10 list calls, down 3 s")
    ap.add_argument("--out", default=str(HERE / "results"), help="directory for scale.txt/.json/.png")
    args = ap.parse_args()
    if args.quick:
        args.direct, args.api, args.list_calls, args.down = "20,50", "20", 10, 3
    plan = ([("direct", int(x)) for x in args.direct.split(",") if x]
            + [("api", int(x)) for x in args.api.split(",") if x])
    for b in (bt.MYSOCKETD, bt.MYSOCKETCTL):
        if not Path(b).exists():
            sys.exit("%s not found (build first: cd build && make)" % b)
    results = {"scenarios": {}, "load0": os.getloadavg()[0], "tail": args.tail, "errors": []}
    results["ssh_version"] = subprocess.run(["/usr/sbin/sshd", "-V"], capture_output=True, text=True).stderr.strip()
    results["libssh2"] = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libssh2-1"],
                                        capture_output=True, text=True).stdout.strip() or "?"
    results["git"] = "mysocketd " + (subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                                    capture_output=True, text=True).stdout.strip() or "?")
    with open("/proc/cpuinfo") as f:
        results["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    tmp = tempfile.mkdtemp(prefix="mysocketd-scale-")
    try:
        for kind, n in plan:
            try:
                run_scenario(tmp, kind, n, args, results)
            except Exception as e:  # noqa: BLE001
                log("[%s %d] failed: %s" % (kind, n, e))
                results["errors"].append("%s %d: %s" % (kind, n, e))
    finally:
        if os.environ.get("BENCH_KEEP_TMP"):
            log("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    text = table(results, args)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.txt").write_text(text)
    (out / "scale.json").write_text(json.dumps(results, indent=1, default=str))
    if plot(results, out / "scale.png"):
        log("wrote %s, scale.json and scale.png" % (out / "scale.txt"))
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

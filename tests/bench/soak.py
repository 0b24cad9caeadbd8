#!/usr/bin/python3
"""Soak: mysocketd under ASan/LSan/UBSan against a real sshd relay for --minutes (default 30).

Concurrently, for the whole run:
  * connection churn: --clients threads make short TCP connections (connect to the relay's
    forwarded port, send one line, read the local echo service's reply, close) through the
    --static bindings of the config file, at about --rate connections/s in total;
  * a rotating set of run-time bindings (rot-0 .. rot-7, each with its own remote port) is
    added and removed with mysocketctl every --rotate-every seconds; each one added is waited
    for ("--wait") and one request is sent through it;
  * the relay (OpenSSH sshd, tests/integration/relay.py) is restarted every --restart-every
    seconds; the static bindings must be up again within --recover-timeout seconds;
  * every --sample seconds: the daemon's VmRSS and open fds (/proc/PID), bindings up,
    connections ok/failed so far, adds/removes, restarts, load average -> soak.csv.

At the end: churn stops, the run-time bindings are removed, the fds are counted again once
only the static bindings are left ("quiesced", comparable to the baseline taken before the
churn started), then SIGTERM: the exit code must be 0 and the ASan/LSan/UBSan logs empty.
Writes <results>/<name>.csv, <name>.png (RSS and fds over time, relay restarts marked) and
<name>.json (the summary; --name defaults to "soak"), and prints the summary. Exit status 0 only if every check held.

Build the daemon first (its own build dir):
  mkdir -p build-soak && cd build-soak && ../configure -q --enable-sanitizers && make -j2 mysocketd mysocketctl
Run (as root; matplotlib from Debian: apt-get install -y python3-matplotlib):
  /usr/bin/python3 tests/bench/soak.py --minutes 30
Re-plot an existing CSV:  /usr/bin/python3 tests/bench/soak.py --plot-only tests/bench/results/soak.csv
"""
import argparse
import csv
import glob
import json
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

ROT_NAMES = [f"rot-{i}" for i in range(8)]
SAN_PATTERNS = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: \w+Sanitizer")


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


# --- the local service ---------------------------------------------------------------------
class EchoHandler(socketserver.BaseRequestHandler):
    """Reads one line, answers "ECHO <line>", closes."""

    def handle(self):
        self.request.settimeout(30)
        buf = b""
        try:
            while not buf.endswith(b"\n") and len(buf) < 4096:
                b = self.request.recv(4096)
                if not b:
                    return
                buf += b
            self.request.sendall(b"ECHO " + buf)
        except OSError:
            pass


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


# --- counters shared by the threads -------------------------------------------------------
class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0                # every failed churn connection
        self.failed_outage = 0         # ... of them during a relay restart (until bindings back)
        self.fail_kinds = {}
        self.adds = 0
        self.add_failed = 0
        self.removes = 0
        self.remove_failed = 0
        self.rot_traffic_ok = 0
        self.rot_traffic_failed = 0
        self.restarts = 0
        self.restart_times = []        # seconds since start
        self.recovery_s = []           # restart -> all static bindings up again
        self.not_back = []             # restarts after which a binding did not come back
        self.stuck_failed = []         # bindings left "failed" (no retry) by a relay restart
        self.errors = []               # anything unexpected, for the report
        self.outage = threading.Event()

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def fail(self, kind):
        with self.lock:
            self.failed += 1
            if self.outage.is_set():
                self.failed_outage += 1
            self.fail_kinds[kind] = self.fail_kinds.get(kind, 0) + 1


def one_request(port, payload, timeout=10):
    from conftest import read_line
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(payload)
        return read_line(c)


def churn_client(idx, ports, rate, stop, stats):
    """One client thread: about `rate` short connections/s, round robin over `ports`."""
    n = 0
    period = 1.0 / rate
    nxt = time.monotonic()
    while not stop.is_set():
        port = ports[(idx + n) % len(ports)]
        payload = b"req %d %d\n" % (idx, n)
        try:
            reply = one_request(port, payload)
            if reply == b"ECHO " + payload:
                stats.add(ok=1)
            else:
                stats.fail("short reply" if not reply else "bad reply")
        except ConnectionRefusedError:
            stats.fail("refused")
        except socket.timeout:
            stats.fail("timeout")
        except OSError as e:
            stats.fail(type(e).__name__)
        n += 1
        nxt += period
        delay = nxt - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        elif delay < -5:
            nxt = time.monotonic()     # fell behind (relay restart): don't burst to catch up


# --- /proc ---------------------------------------------------------------------------------
def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


# --- the soak ------------------------------------------------------------------------------
class Soak:
    def __init__(self, args):
        from conftest import Daemon, free_port
        from relay import Relay
        self.args = args
        self.free_port = free_port
        self.work = Path(args.workdir or Path(args.builddir) / "soak-run").resolve()
        # A previous run's dir (its state dir holds run-time bindings): start afresh.
        if self.work.is_dir() and {"d", "relay"} >= {c.name for c in self.work.iterdir()} - {"san"}:
            import shutil
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.results = Path(args.results).resolve()
        self.results.mkdir(parents=True, exist_ok=True)
        self.san_dir = self.work / "san"
        self.san_dir.mkdir(exist_ok=True)
        for f in self.san_dir.glob("*"):
            f.unlink()
        self.stats = Stats()
        self.stop_ev = threading.Event()
        self.t0 = None
        self.rows = []
        self.relay = Relay(self.work / "relay")
        self.relay_cls = Relay
        self.d = Daemon(self.work / "d")
        self.d.root.mkdir(exist_ok=True)
        self.d.state_dir.mkdir(mode=0o700, exist_ok=True)
        self.echo = None
        self.static = [f"churn-{i}" for i in range(args.static)]
        self.static_rp = {}
        self.rot_rp = {}
        self.rot_up = []               # run-time bindings currently added, oldest first

    def ctl(self, *a, timeout=60):
        return self.d.ctl(*a, check=False, timeout=timeout)

    def bindings(self):
        p = self.d.ctl("list", json_out=True, check=False, timeout=30)
        if p.returncode != 0:
            return None
        return json.loads(p.stdout)

    def static_all_up(self):
        bl = self.bindings() or []
        up = {b["name"] for b in bl if b.get("state") == "up"}
        return all(n in up for n in self.static)

    def wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(0.2)
        return False

    def setup(self):
        a = self.args
        self.echo = EchoServer(("127.0.0.1", 0), EchoHandler)
        threading.Thread(target=self.echo.serve_forever, daemon=True).start()
        lp = self.echo.server_address[1]
        self.local_port = lp
        self.relay.start()
        used = {self.relay.port}
        for n in self.static + ROT_NAMES:
            p = self.free_port()
            while p in used:
                p = self.free_port()
            used.add(p)
            (self.static_rp if n in self.static else self.rot_rp)[n] = p
        bindings = "".join(f'[binding "{n}"]\nport = {lp}\ntype = tcp\nremote_port = {self.static_rp[n]}\n\n'
                           for n in self.static)
        self.d.write_config(bindings, log_level=a.log_level,
                            ssh={"port": str(self.relay.port), "identity_file": self.relay.client_key,
                                 "host_key_check": "accept-new",
                                 "keepalive_interval": "5", "keepalive_count": "3"},
                            backoff={"initial": "1", "max": "2", "stable_after": "10"})
        env = {
            "ASAN_OPTIONS": f"detect_leaks=1:log_path={self.san_dir}/asan:abort_on_error=0"
                            + (":" + a.asan_options if a.asan_options else ""),
            "LSAN_OPTIONS": "detect_leaks=1",
            "UBSAN_OPTIONS": f"print_stacktrace=1:log_path={self.san_dir}/ubsan",
        }
        self.d.start(extra_env=env)
        self.pid = self.d.proc.pid
        log(f"mysocketd pid {self.pid} ({self.d.proc.args[0]}), relay sshd pid {self.relay.proc.pid} "
            f"port {self.relay.port}, local echo service :{lp}, work dir {self.work}")
        if not self.wait(self.static_all_up, 60):
            raise SystemExit(f"static bindings not up: {self.bindings()}\n{self.d.log_text()[-3000:]}")
        for n in self.static:
            one_request(self.static_rp[n], b"hello\n")
        time.sleep(2)
        self.baseline_fds = nfds(self.pid)
        self.baseline_rss = rss_kib(self.pid)
        log(f"static bindings up: {', '.join(f'{n}->{self.static_rp[n]}' for n in self.static)}; "
            f"baseline fds {self.baseline_fds}, RSS {self.baseline_rss} KiB")

    # threads ------------------------------------------------------------------------------
    def rotator(self):
        """Adds a run-time binding, then removes the oldest, and so on, every rotate_every s.
        Keeps between 1 and 4 of them; names cycle over ROT_NAMES with their fixed ports."""
        a, st = self.args, self.stats
        i, adding = 0, True
        while not self.stop_ev.wait(a.rotate_every):
            if len(self.rot_up) >= 4:
                adding = False
            elif len(self.rot_up) <= 1:
                adding = True
            if adding:
                free = [n for n in ROT_NAMES if n not in self.rot_up]
                name = free[i % len(free)]
                i += 1
                p = self.ctl("add", name, "--port", str(self.local_port), "--type", "tcp",
                             "--remote-port", str(self.rot_rp[name]), "--wait=40", timeout=60)
                if p.returncode == 0:
                    st.add(adds=1)
                    self.rot_up.append(name)
                    try:
                        payload = b"rot %s\n" % name.encode()
                        if one_request(self.rot_rp[name], payload) == b"ECHO " + payload:
                            st.add(rot_traffic_ok=1)
                        else:
                            st.add(rot_traffic_failed=1)
                    except OSError:
                        st.add(rot_traffic_failed=1)
                else:
                    st.add(add_failed=1)
                    # It may exist (added but not up within the wait): remove it next time round.
                    bl = self.bindings() or []
                    if any(b["name"] == name for b in bl):
                        self.rot_up.append(name)
                    msg = f"add {name} -> {p.returncode}: {(p.stdout + p.stderr).strip()[:300]}"
                    if not st.outage.is_set():
                        st.errors.append(f"{self.elapsed():.0f}s {msg}")
                    log(msg)
            else:
                name = self.rot_up.pop(0)
                p = self.ctl("remove", name)
                if p.returncode == 0:
                    st.add(removes=1)
                else:
                    st.add(remove_failed=1)
                    st.errors.append(f"{self.elapsed():.0f}s remove {name} -> {p.returncode}: "
                                     f"{(p.stdout + p.stderr).strip()[:300]}")
                    log(st.errors[-1])

    def restarter(self):
        a, st = self.args, self.stats
        while not self.stop_ev.wait(a.restart_every):
            st.outage.set()
            t = self.elapsed()
            log(f"restarting the relay (#{st.restarts + 1})")
            self.relay.restart()
            st.add(restarts=1)
            st.restart_times.append(t)
            t1 = time.monotonic()
            back = self.wait(self.static_all_up, a.recover_timeout)
            dt = time.monotonic() - t1
            if back:
                st.recovery_s.append(dt)
                log(f"relay restart #{st.restarts}: static bindings up again after {dt:.1f} s "
                    f"(sshd pid {self.relay.proc.pid})")
                # A run-time binding that was connecting when sshd went away must come back too:
                # "failed" (no retry) after a relay restart is a bug.
                time.sleep(3)
                for b in self.bindings() or []:
                    if b.get("state") == "failed":
                        st.stuck_failed.append(f"{t:.0f}s {b['name']}: {b.get('last_error')}")
                        st.errors.append(f"{t:.0f}s relay restart left {b['name']} failed for good: "
                                         f"{b.get('last_error')}")
                        log(st.errors[-1])
            else:
                st.not_back.append(t)
                bl = self.bindings()
                st.errors.append(f"{t:.0f}s relay restart: static bindings not up after "
                                 f"{a.recover_timeout} s: {[(b['name'], b['state'], b.get('last_error')) for b in bl or []]}")
                log(st.errors[-1])
            time.sleep(2)              # the kernel/sshd settle; then failures count as real again
            st.outage.clear()

    def elapsed(self):
        return time.monotonic() - self.t0

    def sample(self):
        st = self.stats
        bl = self.bindings()
        up = sum(1 for b in bl if b.get("state") == "up") if bl is not None else -1
        with st.lock:
            row = {
                "t_s": round(self.elapsed(), 1),
                "rss_kib": rss_kib(self.pid),
                "fds": nfds(self.pid),
                "bindings_up": up,
                "bindings_total": len(bl) if bl is not None else -1,
                "conn_ok": st.ok,
                "conn_failed": st.failed,
                "conn_failed_outage": st.failed_outage,
                "adds": st.adds,
                "removes": st.removes,
                "relay_restarts": st.restarts,
                "load1": os.getloadavg()[0],
            }
        self.rows.append(row)
        return row

    def run(self):
        a, st = self.args, self.stats
        self.setup()
        self.t0 = time.monotonic()
        duration = a.minutes * 60
        ports = [self.static_rp[n] for n in self.static]
        per_client = a.rate / a.clients
        threads = [threading.Thread(target=churn_client, args=(i, ports, per_client, self.stop_ev, st),
                                    daemon=True) for i in range(a.clients)]
        threads += [threading.Thread(target=self.rotator, daemon=True),
                    threading.Thread(target=self.restarter, daemon=True)]
        for t in threads:
            t.start()
        self.sample()
        crashed = False
        next_sample = a.sample
        while self.elapsed() < duration:
            time.sleep(max(0.0, min(next_sample - self.elapsed(), duration - self.elapsed())))
            if self.d.proc.poll() is not None:
                crashed = True
                st.errors.append(f"{self.elapsed():.0f}s mysocketd exited with {self.d.proc.returncode}")
                log(st.errors[-1])
                break
            if self.elapsed() >= next_sample - 0.05:
                r = self.sample()
                next_sample += a.sample
                log(f"t={r['t_s']:6.0f}s rss={r['rss_kib']} KiB fds={r['fds']} up={r['bindings_up']}/"
                    f"{r['bindings_total']} ok={r['conn_ok']} failed={r['conn_failed']} "
                    f"(outage {r['conn_failed_outage']}) adds={r['adds']} removes={r['removes']} "
                    f"restarts={r['relay_restarts']} load={r['load1']:.2f}")
        self.end_t = self.elapsed()
        if not crashed:
            self.sample()
        log("stopping churn, rotation and restarts")
        self.stop_ev.set()
        for t in threads:
            t.join(timeout=a.recover_timeout + 70)
        return self.finish(crashed)

    def finish(self, crashed):
        a, st = self.args, self.stats
        quiesced_fds = quiesced_rss = None
        if not crashed:
            for name in list(self.rot_up):
                p = self.ctl("remove", name)
                if p.returncode == 0:
                    st.add(removes=1)
                    self.rot_up.remove(name)
            self.wait(self.static_all_up, a.recover_timeout)
            # In-flight closes settle (channels closed, sockets freed) before counting.
            self.wait(lambda: nfds(self.pid) <= self.baseline_fds, 20)
            time.sleep(3)
            quiesced_fds, quiesced_rss = nfds(self.pid), rss_kib(self.pid)
            fd_list = sorted(os.readlink(f"/proc/{self.pid}/fd/{f}") for f in os.listdir(f"/proc/{self.pid}/fd"))
            log(f"quiesced (static bindings only): fds {quiesced_fds} (baseline {self.baseline_fds}), "
                f"RSS {quiesced_rss} KiB; open: {fd_list}")
            daemon_conns = {b["name"]: b.get("connections_total") for b in self.bindings() or []}
        else:
            daemon_conns = {}
        rc = self.d.stop(signal.SIGTERM, timeout=120) if not crashed else self.d.proc.returncode
        self.stop_all()
        time.sleep(0.5)
        san_files = sorted(glob.glob(str(self.san_dir / "*")))
        san_text = "".join(Path(f).read_text(errors="replace") for f in san_files)
        daemon_log = self.d.log_text()
        san_in_log = [l for l in daemon_log.splitlines() if SAN_PATTERNS.search(l)]
        leak_lines = [l for l in san_text.splitlines() if "LeakSanitizer" in l or "SUMMARY:" in l]
        # Bindings the daemon gave up on (state "failed", no retry): none is expected here.
        self.gave_up = [l for l in daemon_log.splitlines() if "not retrying" in l]
        summary = self.summarize(rc, crashed, quiesced_fds, quiesced_rss, san_files, san_text,
                                 san_in_log, leak_lines, daemon_conns)
        self.write_outputs(summary)
        return summary

    def stop_all(self):
        """Stops everything the soak started, each by pid, whatever state it is in: the
        threads (no relay restart after this), the daemon, the relay and its sessions, the
        echo service. Idempotent; main() calls it on every way out."""
        self.stop_ev.set()
        steps = [lambda: self.d.stop(signal.SIGTERM, timeout=60) if self.d.proc else None,
                 lambda: self.d.kill9(), self.relay.stop]
        if self.echo:
            steps += [self.echo.shutdown, self.echo.server_close]
        for step in steps:
            try:
                step()
            except Exception as e:  # noqa: BLE001
                log(f"cleanup: {e!r}")
        self.echo = None

    def at(self, t):
        """The first sample at or after t seconds."""
        for r in self.rows:
            if r["t_s"] >= t:
                return r
        return self.rows[-1]

    def summarize(self, rc, crashed, qfds, qrss, san_files, san_text, san_in_log, leak_lines, daemon_conns):
        a, st = self.args, self.stats
        warm_t = a.warmup * 60 if a.warmup is not None else min(300.0, a.minutes * 60 / 6)
        warm = self.at(warm_t)
        end = self.rows[-1]
        after = [r for r in self.rows if r["t_s"] >= warm["t_s"]]
        rss_growth = (end["rss_kib"] - warm["rss_kib"]) / warm["rss_kib"] * 100
        loads = [r["load1"] for r in self.rows]
        s = {
            "duration_s": round(self.end_t, 1),
            "minutes_asked": a.minutes,
            "connections_ok": st.ok,
            "connections_failed": st.failed,
            "connections_failed_during_relay_restart": st.failed_outage,
            "connections_failed_otherwise": st.failed - st.failed_outage,
            "failure_kinds": st.fail_kinds,
            "connections_per_s": round((st.ok + st.failed) / self.end_t, 1),
            "binding_adds": st.adds,
            "binding_add_failed": st.add_failed,
            "binding_removes": st.removes,
            "binding_remove_failed": st.remove_failed,
            "runtime_binding_traffic_ok": st.rot_traffic_ok,
            "runtime_binding_traffic_failed": st.rot_traffic_failed,
            "relay_restarts": st.restarts,
            "relay_recovery_s": {"min": round(min(st.recovery_s), 1), "max": round(max(st.recovery_s), 1),
                                 "mean": round(sum(st.recovery_s) / len(st.recovery_s), 1)} if st.recovery_s else None,
            "bindings_not_back_after_restart": len(st.not_back),
            "bindings_left_failed_by_restart": st.stuck_failed,
            "daemon_log_gave_up_lines": self.gave_up[:20],
            "baseline": {"fds": self.baseline_fds, "rss_kib": self.baseline_rss},
            "warmup": {"t_s": warm["t_s"], "rss_kib": warm["rss_kib"], "fds": warm["fds"]},
            "end": {"t_s": end["t_s"], "rss_kib": end["rss_kib"], "fds": end["fds"]},
            "after_warmup": {"rss_kib_min": min(r["rss_kib"] for r in after),
                             "rss_kib_max": max(r["rss_kib"] for r in after),
                             "fds_min": min(r["fds"] for r in after), "fds_max": max(r["fds"] for r in after)},
            "rss_growth_after_warmup_pct": round(rss_growth, 1),
            "quiesced": {"fds": qfds, "rss_kib": qrss},
            "daemon_connections_total_static": daemon_conns,
            "exit_code": rc,
            "crashed": crashed,
            "sanitizer_files": [os.path.basename(f) for f in san_files],
            "sanitizer_report_lines": leak_lines[:20],
            "sanitizer_lines_in_daemon_log": san_in_log[:20],
            "load_avg_1min": {"min": min(loads), "max": max(loads), "mean": round(sum(loads) / len(loads), 2)},
            "cores": os.cpu_count(),
            "errors": st.errors[:50],
            "args": vars(a),
        }
        checks = {
            "exit code 0 after SIGTERM": rc == 0,
            "no crash": not crashed,
            "sanitizers silent (no ASan/LSan/UBSan report)": not san_text.strip() and not san_in_log,
            "every relay restart: bindings back": not st.not_back and st.restarts > 0,
            "RSS growth after warm-up < 10%": rss_growth < 10,
            "fds back to baseline once quiesced": qfds is not None and qfds <= self.baseline_fds,
            "churn failures outside relay restarts < 0.1%": (st.failed - st.failed_outage) * 1000 < st.ok + st.failed,
            "no binding given up on (daemon log: 'not retrying')": not self.gave_up,
        }
        s["checks"] = checks
        s["passed"] = all(checks.values())
        return s

    def write_outputs(self, s):
        csv_path = self.results / f"{self.args.name}.csv"
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(self.rows[0].keys()))
            w.writeheader()
            w.writerows(self.rows)
        s["restart_times_s"] = [round(t, 1) for t in self.stats.restart_times]
        (self.results / f"{self.args.name}.json").write_text(json.dumps(s, indent=2) + "\n")
        try:
            plot(csv_path, self.results / f"{self.args.name}.png", s["restart_times_s"],
                 warm_t=s["warmup"]["t_s"], baseline_fds=s["baseline"]["fds"])
        except ImportError as e:
            log(f"no plot ({e}): apt-get install -y python3-matplotlib, run with /usr/bin/python3")


def plot(csv_path, png_path, restarts=None, warm_t=None, baseline_fds=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = list(csv.DictReader(open(csv_path)))
    if restarts is None:
        js = Path(csv_path).with_suffix(".json")
        if js.exists():
            j = json.loads(js.read_text())
            restarts, warm_t = j.get("restart_times_s", []), j["warmup"]["t_s"]
            baseline_fds = j["baseline"]["fds"]
        else:
            restarts, prev = [], 0
            for r in rows:
                if int(r["relay_restarts"]) > prev:
                    restarts.append(float(r["t_s"]))
                    prev = int(r["relay_restarts"])
    t = [float(r["t_s"]) / 60 for r in rows]
    rss = [int(r["rss_kib"]) / 1024 for r in rows]
    fds = [int(r["fds"]) for r in rows]
    up = [int(r["bindings_up"]) for r in rows]
    conns = [int(r["conn_ok"]) for r in rows]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    ax1.plot(t, rss, color="tab:blue", marker=".")
    ax1.set_ylabel("VmRSS (MiB)")
    ax1.set_ylim(bottom=0, top=max(rss) * 1.15)
    ax1.set_title("mysocketd soak (ASan+LSan+UBSan build): RSS and open fds; dashed = relay restart")
    ax2.plot(t, fds, color="tab:orange", marker=".", label="open fds")
    ax2.plot(t, up, color="tab:green", marker=".", label="bindings up")
    # Each up binding holds one socket to the relay: what is left is the fixed set plus the
    # local sockets of connections in flight at the sample.
    ax2.plot(t, [f - u for f, u in zip(fds, up)], color="tab:brown", lw=1, label="open fds - bindings up")
    if baseline_fds is not None:
        ax2.axhline(baseline_fds, color="grey", lw=0.8, ls=":", label=f"baseline fds ({baseline_fds})")
    ax2.set_ylabel("count")
    ax2.set_ylim(bottom=0)
    ax2.legend(loc="upper left", fontsize=8)
    ax3.plot(t, conns, color="tab:purple", label="connections ok (cumulative)")
    ax3.set_ylabel("connections")
    ax3.set_xlabel("minutes")
    ax3.legend(loc="upper left", fontsize=8)
    ax4 = ax3.twinx()
    ax4.plot(t, [float(r["load1"]) for r in rows], color="grey", lw=0.8, ls="-.", label="load average (1 min)")
    ax4.set_ylabel("load average (2 cores)", color="grey")
    ax4.legend(loc="lower right", fontsize=8)
    for ax in (ax1, ax2, ax3):
        for rt in restarts:
            ax.axvline(rt / 60, color="red", ls="--", lw=0.8, alpha=0.6)
        if warm_t is not None:
            ax.axvline(warm_t / 60, color="black", ls=":", lw=1)
        ax.grid(alpha=0.3)
    ax1.text(warm_t / 60 if warm_t else 0, max(rss) * 1.05, " warm-up", fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def print_summary(s):
    print("\n==== soak summary ====")
    print(f"duration: {s['duration_s'] / 60:.1f} min ({s['duration_s']} s)")
    print(f"connections: ok {s['connections_ok']}, failed {s['connections_failed']} "
          f"({s['connections_failed_during_relay_restart']} during relay restarts, "
          f"{s['connections_failed_otherwise']} otherwise; kinds {s['failure_kinds']}), "
          f"{s['connections_per_s']} conn/s")
    print(f"run-time bindings: adds {s['binding_adds']} (failed {s['binding_add_failed']}), removes "
          f"{s['binding_removes']} (failed {s['binding_remove_failed']}); traffic through them ok "
          f"{s['runtime_binding_traffic_ok']}, failed {s['runtime_binding_traffic_failed']}")
    print(f"relay restarts: {s['relay_restarts']}, bindings back every time: "
          f"{s['bindings_not_back_after_restart'] == 0}, recovery {s['relay_recovery_s']}")
    if s["daemon_log_gave_up_lines"]:
        print("bindings the daemon gave up on:")
        for l in s["daemon_log_gave_up_lines"]:
            print("  " + l)
    print(f"RSS KiB: baseline {s['baseline']['rss_kib']}, warm-up (t={s['warmup']['t_s']} s) "
          f"{s['warmup']['rss_kib']}, end {s['end']['rss_kib']} ({s['rss_growth_after_warmup_pct']:+.1f}%), "
          f"after warm-up min/max {s['after_warmup']['rss_kib_min']}/{s['after_warmup']['rss_kib_max']}")
    print(f"fds: baseline {s['baseline']['fds']}, warm-up {s['warmup']['fds']}, end {s['end']['fds']}, "
          f"after warm-up min/max {s['after_warmup']['fds_min']}/{s['after_warmup']['fds_max']}, "
          f"quiesced {s['quiesced']['fds']}")
    print(f"exit code after SIGTERM: {s['exit_code']}; sanitizer files: {s['sanitizer_files'] or 'none'}; "
          f"report lines: {s['sanitizer_report_lines'] or 'none'}; in daemon log: "
          f"{s['sanitizer_lines_in_daemon_log'] or 'none'}")
    print(f"load average (1 min) over the run: {s['load_avg_1min']} on {s['cores']} cores")
    if s["errors"]:
        print("errors:")
        for e in s["errors"]:
            print("  " + e)
    for k, v in s["checks"].items():
        print(f"  [{'PASS' if v else 'FAIL'}] {k}")
    print("RESULT:", "PASS" if s["passed"] else "FAIL")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=None,
                    help="minutes of warm-up before RSS/fds must be flat (default min(5, minutes/6))")
    ap.add_argument("--rate", type=float, default=40, help="churn connections/s in total (default 40)")
    ap.add_argument("--clients", type=int, default=4, help="churn client threads (default 4)")
    ap.add_argument("--static", type=int, default=3, help="config-file bindings carrying the churn (default 3)")
    ap.add_argument("--rotate-every", type=float, default=4, help="s between binding add/remove (default 4)")
    ap.add_argument("--restart-every", type=float, default=180, help="s between relay restarts (default 180)")
    ap.add_argument("--recover-timeout", type=float, default=60)
    ap.add_argument("--sample", type=float, default=10, help="s between samples (default 10)")
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--asan-options", default="",
                    help="appended to ASAN_OPTIONS, e.g. quarantine_size_mb=16 (default: ASan's own)")
    ap.add_argument("--builddir", default=os.environ.get("MYSOCKETD_BUILDDIR", str(REPO / "build-soak")))
    ap.add_argument("--workdir", help="run dir (default <builddir>/soak-run)")
    ap.add_argument("--results", default=str(REPO / "tests" / "bench" / "results"))
    ap.add_argument("--name", default="soak", help="base name of the result files (default soak)")
    ap.add_argument("--plot-only", metavar="CSV", help="only redraw the PNG next to this CSV")
    a = ap.parse_args()
    if a.plot_only:
        plot(a.plot_only, Path(a.plot_only).with_suffix(".png"))
        return 0
    os.environ["MYSOCKETD_BUILDDIR"] = a.builddir
    import conftest
    conftest.MYSOCKETD = Path(a.builddir) / "mysocketd"
    conftest.MYSOCKETCTL = Path(a.builddir) / "mysocketctl"
    for b in (conftest.MYSOCKETD, conftest.MYSOCKETCTL):
        if not b.exists():
            raise SystemExit(f"{b} missing: build with --enable-sanitizers first (see --help)")
    soak = Soak(a)
    try:
        s = soak.run()
    finally:
        # Leave nothing running, however run() ended (a failed setup included).
        soak.stop_all()
    print_summary(s)
    return 0 if s["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

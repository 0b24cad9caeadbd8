#!/usr/bin/python3
"""The issue-16 matrix: mysocketd vs `ssh -R` in bulk, per libssh2 build, with and without the
CPU's crypto instructions. Not part of the pass/fail suite; tools/bench-matrix.sh runs every cell
(Debian 12 here, Debian 13 in the trixie root, stock and patched libssh2) and merges them.

  bench_matrix.py cell --label NAME [--mask] [--sweep] [--perf] --out DIR
      One cell against the build in $MYSOCKETD_BUILDDIR (default build/): one relay (OpenSSH
      sshd, DEBUG1 log), mysocketd and `ssh -R` both connected to it with each side's default
      algorithms; per rep and direction a transfer through each (order alternating), MB/s and
      CPU s/GiB of the tunnel client process (/proc/PID/task/*/schedstat). The negotiated
      cipher/MAC: mysocketd's from `mysocketctl --json list`, ssh's from the relay's log.
      --mask sets OPENSSL_ia32cap (MASK below) for every process of the cell: OpenSSL in sshd,
      ssh and mysocketd, and mysocketd's own CPU probe (agent/tunnel/methods.c) then sees no
      AES-NI, PCLMULQDQ, AVX*, SHA or VAES. --sweep also measures mysocketd alone with the relay
      restricted to each AEAD cipher and aes128-ctr (which is fastest on this library: the
      order methods.c picks with AES instructions). --perf records the daemon, then ssh, during one
      more download and upload each (perf record; needs linux-perf). Writes DIR/NAME.json.
  bench_matrix.py merge --out DIR
      Reads DIR/cells/*.json, writes DIR/matrix.txt, DIR/matrix.json and DIR/matrix.png.
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_tunnel as bt  # noqa: E402  (reads MYSOCKETD_BUILDDIR at import)

# No AES-NI, PCLMULQDQ, AVX (LV0 57, 33, 60); no AVX2, AVX-512 F/DQ/IFMA/BW/VL, SHA, VAES,
# VPCLMULQDQ (LV1): a CPU without crypto instructions (a Raspberry Pi 4 stand-in). SSSE3 stays.
MASK = "~0x1200000200000000:~0x00000600E0230020"
SWEEP = (("aes128-gcm@openssh.com", None), ("chacha20-poly1305@openssh.com", None),
         ("aes128-ctr", "hmac-sha2-256-etm@openssh.com"))
DIRS = (("down", "service->client (daemon encrypts)", bt.download),
        ("up", "client->service (daemon decrypts)", bt.upload))
TARGET = 1.0    # patched libssh2: MB/s >= 1.0x ssh -R, CPU s/GiB <= 1.0x ssh


def libssh2_version(daemon):
    """The libssh2 the daemon binary loads (ldd), and its libssh2_version()."""
    out = subprocess.run(["ldd", str(daemon)], capture_output=True, text=True).stdout
    path = next((ln.split("=>")[1].split()[0] for ln in out.splitlines() if "libssh2" in ln and "=>" in ln), "")
    try:
        lib = ctypes.CDLL(path)
        lib.libssh2_version.restype = ctypes.c_char_p
        return path, lib.libssh2_version(0).decode()
    except (OSError, AttributeError):
        return path, "?"


def ctl_algos(daemon, name):
    out = subprocess.run([str(bt.MYSOCKETCTL), "-s", str(daemon.socket), "--json", "list"],
                         capture_output=True, text=True, timeout=30).stdout
    doc = json.loads(out)
    for b in doc if isinstance(doc, list) else doc.get("bindings", []):
        if b.get("name") == name:
            return [b.get("cipher") or "?", b.get("mac") or "<implicit>"]
    return ["?", "?"]


def cpu_seconds(pid):
    """CPU time of every thread of pid: /proc/PID/task/*/schedstat (nanoseconds on the CPU,
    user and system), exact where /proc/PID/stat's utime+stime count 10 ms ticks (0.08 s/GiB
    at 128 MiB); falls back to those without schedstats."""
    try:
        total = 0
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        return bt.cpu_seconds(pid)


def transfer(fn, port, pid, n):
    c0 = cpu_seconds(pid)
    dt = fn(port, n)
    return n / dt / 1e6, (cpu_seconds(pid) - c0) / (n / 2**30)


class Perf:
    """perf record of one pid over a with-block; .report is `perf report` by DSO and symbol."""

    def __init__(self, pid, path):
        self.pid, self.path, self.proc, self.report = pid, path, None, ""

    def __enter__(self):
        if shutil.which("perf"):
            self.proc = subprocess.Popen(["perf", "record", "-q", "-F", "997", "-p", str(self.pid), "-o",
                                          str(self.path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        if not self.proc:
            self.report = "no perf (apt-get install linux-perf)"
            return False
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)
        rep = []
        for sort, limit in (("dso", "0.5"), ("dso,sym", "1.5")):
            r = subprocess.run(["perf", "report", "-i", str(self.path), "--stdio", "--no-children", "--sort", sort,
                                "--percent-limit", limit], capture_output=True, text=True)
            rep += [ln for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
            rep.append("")
        self.report = "\n".join(rep)
        return False


def run_pair(tmp, relay_extra, args, cell, sweep_name=None):
    """One relay, the daemon (and, unless sweeping, ssh -R) on it; fills cell in place."""
    tag = sweep_name or "defaults"
    rdir = Path(tmp) / tag.replace("@", "_")
    relay = bt.BenchRelay(rdir / "relay", extra_config=["MaxStartups 100"] + relay_extra)
    bulk = daemon = ssh = None
    try:
        bulk = bt.BulkServer()
        relay.start()
        rp_d, rp_s = bt.remote_port(), bt.remote_port()
        off = len(relay.log())
        daemon = bt.BenchDaemon(rdir / "d", relay, [("bulk", bulk.port, rp_d)])
        daemon.start(timeout=args.start_timeout)
        time.sleep(0.3)
        algos = ctl_algos(daemon, "bulk")
        relay_view = list(relay.negotiated(off))
        paths = [("mysocketd", rp_d, daemon.proc.pid)]
        if not sweep_name:
            cell["algos"] = {"mysocketd": algos, "mysocketd_relay_log": relay_view}
            off = len(relay.log())
            ssh = bt.start_ssh(rdir, relay, [(rp_s, bulk.port)])
            time.sleep(0.3)
            cell["algos"]["ssh"] = list(relay.negotiated(off))
            paths.append(("ssh", rp_s, ssh.pid))
            bt.log("[%s] mysocketd %s/%s, ssh %s/%s" % ((cell["label"],) + tuple(algos) + tuple(cell["algos"]["ssh"])))
            out = cell["bulk"]
        else:
            out = cell["sweep"].setdefault(sweep_name, {"algos": algos})
        n = args.size_mib << 20
        for rep in range(args.reps):
            for d, _, fn in DIRS:
                for name, port, pid in (paths if rep % 2 == 0 else paths[::-1]):
                    mbs, cpu = transfer(fn, port, pid, n)
                    slot = out.setdefault(d, {}).setdefault(name, {"mbs": [], "cpu": []})
                    slot["mbs"].append(mbs)
                    slot["cpu"].append(cpu)
                    bt.log("[%s %s] rep %d %-4s %-9s %7.1f MB/s  %.2f CPU s/GiB  load %.2f"
                           % (cell["label"], tag, rep + 1, d, name, mbs, cpu, os.getloadavg()[0]))
            cell["load"].append(os.getloadavg()[0])
        if args.perf and not sweep_name:
            for d, _, fn in DIRS:
                for name, port, pid in paths:
                    with Perf(pid, Path(tmp) / ("perf-%s-%s.data" % (name, d))) as p:
                        fn(port, 4 * n)     # a few thousand samples
                    cell["perf"]["%s %s" % (name, d)] = p.report
    finally:
        for stop in (lambda: bt.stop_proc(ssh), lambda: daemon and daemon.stop(), relay.stop,
                     lambda: bulk and bulk.close()):
            try:
                stop()
            except Exception as e:  # noqa: BLE001
                bt.log("[%s] cleanup: %r" % (tag, e))


def cmd_cell(args):
    if args.mask:
        os.environ["OPENSSL_ia32cap"] = MASK    # inherited by sshd, ssh and mysocketd
    else:
        os.environ.pop("OPENSSL_ia32cap", None)
    lib_path, lib_ver = libssh2_version(bt.MYSOCKETD)
    osr = dict(ln.rstrip().split("=", 1) for ln in open("/etc/os-release") if "=" in ln)
    cell = {"label": args.label, "os": osr.get("PRETTY_NAME", "?").strip('"'), "libssh2": lib_ver,
            "libssh2_path": lib_path, "libssh2_build": args.libssh2_build, "mask": args.mask,
            "ia32cap": os.environ.get("OPENSSL_ia32cap"), "size_mib": args.size_mib, "reps": args.reps,
            "ssh": subprocess.run([bt.SSH, "-V"], capture_output=True, text=True).stderr.strip(),
            "openssl": subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip(),
            "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu_model": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                               if ln.startswith("model name")), platform.machine()),
            "load0": os.getloadavg()[0], "load": [], "bulk": {}, "sweep": {}, "perf": {}, "errors": []}
    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="mysocketd-matrix-")
    try:
        try:
            run_pair(tmp, [], args, cell)
        except Exception as e:  # noqa: BLE001
            bt.log("[%s] failed: %r" % (args.label, e))
            cell["errors"].append("defaults: %s" % e)
        if args.sweep and not lib_ver.startswith("1.10"):
            for cipher, mac in SWEEP:
                extra = ["Ciphers %s" % cipher] + (["MACs %s" % mac] if mac else [])
                try:
                    run_pair(tmp, extra, args, cell, sweep_name=cipher)
                except Exception as e:  # noqa: BLE001
                    bt.log("[%s %s] failed: %r" % (args.label, cipher, e))
                    cell["errors"].append("%s: %s" % (cipher, e))
    finally:
        if not os.environ.get("BENCH_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)
    cell["seconds"] = round(time.monotonic() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ("%s.json" % args.label)).write_text(json.dumps(cell, indent=1) + "\n")
    bt.log("[%s] done in %.0f s: %s" % (args.label, cell["seconds"], out / ("%s.json" % args.label)))
    return 1 if cell["errors"] else 0


# ---- merge ----------------------------------------------------------------------------------

def figures(cell, d, src=None):
    """(daemon MB/s, ssh MB/s, ratio, daemon CPU s/GiB, ssh CPU s/GiB, CPU ratio), medians."""
    src = src or cell["bulk"]
    g = lambda who, k: bt.med(src.get(d, {}).get(who, {}).get(k, []))  # noqa: E731
    dm, sm, dc, sc = g("mysocketd", "mbs"), g("ssh", "mbs"), g("mysocketd", "cpu"), g("ssh", "cpu")
    return dm, sm, dm / sm if sm else float("nan"), dc, sc, dc / sc if sc else float("nan")


def short(alg):
    c, m = alg
    c = c.replace("@openssh.com", "")
    return c if m in ("<implicit>", "?") and ("gcm" in c or "chacha" in c) else "%s+%s" % (c, m.replace("@openssh.com", ""))


def merge_table(cells):
    L = ["mysocketd vs ssh -R, bulk, the issue-16 matrix (each side's default algorithms; same relay,",
         "same run per cell; medians; CPU = the tunnel client process's CPU seconds per GiB)", ""]
    for c in cells:
        L.append("%-28s %s; %s; libssh2 %s %s (%s); mask %s" % (c["label"], c["os"], c["ssh"], c["libssh2"],
                                                               c["libssh2_build"], c["libssh2_path"],
                                                               c["ia32cap"] or "none"))
    L.append("CPU: %s, %d vCPUs shared with other jobs; figures taken under load (below)"
             % (cells[0]["cpu_model"], os.cpu_count()))
    L.append("")
    L.append("%-28s %-4s %-40s %8s %8s %7s %7s %7s %7s" % ("cell", "dir", "negotiated mysocketd | ssh", "d MB/s",
                                                         "ssh MB/s", "ratio", "d s/GiB", "ssh s/G", "CPU x"))
    for c in cells:
        a = c.get("algos", {})
        neg = "%s | %s" % (short(a.get("mysocketd", ("?", "?"))), short(a.get("ssh", ("?", "?"))))
        for d, _, _ in DIRS:
            f = figures(c, d)
            L.append("%-28s %-4s %-40s %8.1f %8.1f %6.2fx %7.2f %7.2f %6.2fx"
                     % (c["label"], d, neg, f[0], f[1], f[2], f[3], f[4], f[5]))
        L.append("%-28s      1-min load %.1f-%.1f, %d MiB x %d reps, cell took %.0f s%s"
                 % ("", min(c["load"] or [c["load0"]]), max(c["load"] or [c["load0"]]), c["size_mib"], c["reps"],
                    c.get("seconds", 0), ("; ERRORS: " + "; ".join(c["errors"])) if c["errors"] else ""))
    sweeps = [c for c in cells if c["sweep"]]
    if sweeps:
        L += ["", "== which cipher is fastest on this library (mysocketd alone, relay restricted to one cipher)",
              "%-28s %-34s %9s %9s %9s %9s" % ("cell", "cipher", "down MB/s", "s/GiB", "up MB/s", "s/GiB")]
        for c in sweeps:
            for name, s in c["sweep"].items():
                dn, up = figures(c, "down", s), figures(c, "up", s)
                L.append("%-28s %-34s %9.1f %9.2f %9.1f %9.2f" % (c["label"], short(s["algos"]), dn[0], dn[3],
                                                                   up[0], up[3]))
    L += ["", "== targets (patched libssh2: MB/s >= %.1fx ssh -R and CPU s/GiB <= %.1fx ssh's, both directions)"
          % (TARGET, TARGET)]
    for c in cells:
        if c["libssh2_build"] != "patched":
            continue
        for d, _, _ in DIRS:
            f = figures(c, d)
            L.append("%-28s %-4s throughput %.2fx %s, CPU %.2fx %s" % (c["label"], d, f[2], bt.verdict(f[2] >= TARGET),
                                                                       f[5], bt.verdict(f[5] <= TARGET)))
    perfs = [c for c in cells if c["perf"]]
    for c in perfs:
        for what, text in c["perf"].items():
            who, d = what.split() if " " in what else ("mysocketd", what)
            L += ["", "== perf record, %s during one %s (%d MiB), %s: by DSO, then by symbol"
                  % (who, d, 4 * c["size_mib"], c["label"]), text]
    return "\n".join(L) + "\n"


def merge_plot(cells, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        bt.log("matplotlib missing (apt-get install python3-matplotlib): no chart written")
        return False
    fig, axes = plt.subplots(1, 2, figsize=(16, 6))
    labels = [c["label"] for c in cells]
    for ax, idx, title in ((axes[0], 2, "throughput: mysocketd / ssh -R (higher is better)"),
                           (axes[1], 5, "CPU s/GiB: mysocketd / ssh (lower is better)")):
        for k, (d, name, _) in enumerate(DIRS):
            ys = [figures(c, d)[idx] for c in cells]
            xs = [i + (k - 0.5) * 0.38 for i in range(len(cells))]
            bars = ax.bar(xs, ys, 0.38, label=name, color=("#1f77b4", "#ff7f0e")[k])
            for b, y in zip(bars, ys):
                ax.text(b.get_x() + b.get_width() / 2, y, "%.2f" % y, ha="center", va="bottom", fontsize=7)
        ax.axhline(1.0, color="red", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(cells)))
        ax.set_xticklabels([lb.replace("-", "\n") for lb in labels], fontsize=7)
        ax.set_title(title)
        ax.legend(fontsize=8)
    loads = [x for c in cells for x in c["load"]] or [0]
    fig.suptitle("issue 16 matrix, %s, %d MiB per transfer, load %.1f-%.1f (shared 2-vCPU VM)"
                 % (cells[0]["when"][:10], cells[0]["size_mib"], min(loads), max(loads)))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def cmd_merge(args):
    out = Path(args.out)
    order = {k: i for i, k in enumerate(args.order.split(","))} if args.order else {}
    cells = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
    if not cells:
        sys.exit("no cells in %s" % (out / "cells"))
    cells.sort(key=lambda c: (order.get(c["label"], 99), c["label"]))
    text = merge_table(cells)
    print(text)
    (out / "matrix.txt").write_text(text)
    (out / "matrix.json").write_text(json.dumps(cells, indent=1) + "\n")
    if merge_plot(cells, out / "matrix.png"):
        bt.log("wrote %s, matrix.json, matrix.png" % (out / "matrix.txt"))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cell")
    c.add_argument("--label", required=True)
    c.add_argument("--mask", action="store_true", help="OPENSSL_ia32cap=%s for every process" % MASK)
    c.add_argument("--libssh2-build", default="stock", help="stock or patched (a label for the table)")
    c.add_argument("--size-mib", type=int, default=128)
    c.add_argument("--reps", type=int, default=3)
    c.add_argument("--sweep", action="store_true")
    c.add_argument("--perf", action="store_true")
    c.add_argument("--start-timeout", type=float, default=60)
    c.add_argument("--out", default=str(HERE / "results" / "matrix" / "cells"))
    m = sub.add_parser("merge")
    m.add_argument("--out", default=str(HERE / "results" / "matrix"))
    m.add_argument("--order", default="", help="labels in table order, comma-separated")
    args = ap.parse_args()
    sys.exit(cmd_cell(args) if args.cmd == "cell" else cmd_merge(args))


if __name__ == "__main__":
    main()

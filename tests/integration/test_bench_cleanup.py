"""The tunnel benchmark stops everything it started, even when a mode fails (issue 16, item 6).

tests/bench/bench_tunnel.py is run for real with a relay that offers only a MAC libssh2 does
not have (umac-64@openssh.com), so mysocketd's binding never comes up and the forced mode
fails; the bench must still exit with every process it started (relay sshd, mysocketd,
ssh -R) gone. Its temp dir lives under a dir of this test's own (TMPDIR; short, as the
daemon's control socket path must fit sun_path), so any process whose command line names
that dir was started by the bench.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conftest import BUILD, REPO

BENCH = REPO / "tests" / "bench" / "bench_tunnel.py"


def processes_naming(path):
    """pid -> command line of every process whose command line contains `path`."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmd:
            found[int(d.name)] = cmd
    return found


def test_failed_mode_leaves_no_process(tmp_path):
    short = Path(tempfile.mkdtemp(prefix="mbc-"))
    try:
        run_and_check(short, tmp_path / "out")
    finally:
        for pid in processes_naming(short):  # do not leave them to the next test either
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        shutil.rmtree(short, ignore_errors=True)


def run_and_check(tmpdir, out):
    env = dict(os.environ, TMPDIR=str(tmpdir), MYSOCKETD_BUILDDIR=str(BUILD))
    env.pop("BENCH_KEEP_TMP", None)
    r = subprocess.run([sys.executable, str(BENCH), "--modes", "forced", "--cipher", "aes128-ctr",
                        "--mac", "umac-64@openssh.com", "--start-timeout", "4", "--size-mib", "1",
                        "--reps", "1", "--conns", "5", "--bindings", "", "--out", str(out)],
                       env=env, capture_output=True, text=True, timeout=120)
    # The mode really failed, on the daemon's start, and the bench still finished its report.
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[forced] failed" in r.stderr and "bindings not all up" in r.stderr, r.stderr[-2000:]
    assert (out / "tunnel.txt").exists()
    left = processes_naming(tmpdir)
    deadline = time.monotonic() + 5          # a SIGTERMed child may take a moment to be reaped
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = processes_naming(tmpdir)
    assert not left, "the bench left processes running: %s" % left


def test_sigterm_mid_run_leaves_no_process(tmp_path):
    """SIGTERM while the transfers run (relay, mysocketd and ssh -R all up): the bench
    unwinds like on Ctrl-C, stops them all and exits 128+15."""
    short = Path(tempfile.mkdtemp(prefix="mbc-"))
    env = dict(os.environ, TMPDIR=str(short), MYSOCKETD_BUILDDIR=str(BUILD))
    env.pop("BENCH_KEEP_TMP", None)
    p = subprocess.Popen([sys.executable, str(BENCH), "--modes", "forced", "--size-mib", "4096",
                          "--reps", "1", "--conns", "5", "--bindings", "", "--out", str(tmp_path / "out")],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in p.stderr:                # "negotiated" is logged once both tunnels are up
            seen.append(line)
            if "negotiated" in line:
                break
        assert any("negotiated" in s for s in seen), "".join(seen)[-2000:]
        running = processes_naming(short)
        assert len(running) >= 3, running    # relay sshd, mysocketd, ssh -R (and sshd children)
        p.send_signal(15)
        rc = p.wait(60)
        left = processes_naming(short)
        deadline = time.monotonic() + 5
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = processes_naming(short)
        assert not left, "the bench left processes running: %s" % left
        assert rc == 128 + 15
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for pid in processes_naming(short):  # do not leave them to the next test either
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        shutil.rmtree(short, ignore_errors=True)

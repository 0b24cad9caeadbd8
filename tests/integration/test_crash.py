"""Crash consistency (issue 6 item 3): SIGKILL at a random moment of a storm of adds,
removes and reloads from several clients at once, 500 rounds, one state dir throughout.

Each round: start the daemon; check that every acknowledged add is there (with the settings
of that add) and every acknowledged remove is gone; `mysocketd --check-config` passes with
no "runtime binding skipped" warning (every bindings.d/*.ini parses); then 4 clients add and
remove bindings of their own (so each has at most one request in flight, whose outcome may
go either way) while a fifth reloads (control socket and SIGHUP), and SIGKILL lands after a
random 0-50 ms. The other crash tests (tests/integration/test_persistence.py) kill right
after one acknowledged add or remove; this one kills in the middle of everything.

MYSOCKETD_CRASH_ROUNDS sets the number of rounds (default 500).
"""
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time

from conftest import MYSOCKETD

ROUNDS = int(os.environ.get("MYSOCKETD_CRASH_ROUNDS", "500"))
CLIENTS, NAMES_PER_CLIENT = 4, 6


class Conn:
    """One control connection: a request line, its reply line."""

    def __init__(self, path, timeout=5):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def call(self, obj):
        self.s.sendall((json.dumps(obj) + "\n").encode())
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        self.s.close()


class Model:
    """What must be on disk: name -> port (present) or None (absent), per acknowledged reply;
    `pending` holds the op in flight per name when the kill came (either outcome is right)."""

    def __init__(self):
        self.acked = {}
        self.pending = {}
        self.ops = {"add": 0, "remove": 0, "reload": 0, "sighup": 0}
        self.refused = []                # answers that were not ok: each fails the test


def port_for(name, rng):
    i, j = (int(x) for x in name[1:].split("n"))
    return 2000 + (i * NAMES_PER_CLIENT + j) * 100 + rng.randrange(100)


def storm_client(path, names, model, lock, stop, rng):
    try:
        c = Conn(str(path))
    except OSError:
        return
    try:
        while not stop.is_set():
            name = rng.choice(names)
            with lock:
                present = model.acked.get(name) is not None
            if present:
                op = {"v": 1, "cmd": "remove", "name": name}
                after = None
            else:
                # Each name has its own band of ports: two names never ask for the same
                # remote_port, which the daemon (rightly) refuses.
                port = port_for(name, rng)
                op = {"v": 1, "cmd": "add", "binding": {"name": name, "port": port, "remote_port": port}}
                after = port
            with lock:
                model.pending[name] = after
            try:
                r = c.call(op)
            except (OSError, ConnectionError, ValueError):
                return                       # killed: the pending op stays pending
            with lock:
                del model.pending[name]
                if r.get("ok"):
                    model.acked[name] = after
                    model.ops[op["cmd"]] += 1
                else:
                    model.refused.append(f"{op} -> {r}")
                    return
    finally:
        c.close()


def reloader(path, pid, model, lock, stop, rng):
    try:
        c = Conn(str(path))
    except OSError:
        return
    try:
        while not stop.is_set():
            if rng.random() < 0.3:
                try:
                    os.kill(pid, signal.SIGHUP)
                except ProcessLookupError:
                    return
                with lock:
                    model.ops["sighup"] += 1
                time.sleep(0.002)
                continue
            try:
                r = c.call({"v": 1, "cmd": "reload"})
            except (OSError, ConnectionError, ValueError):
                return
            if not r.get("ok"):
                with lock:
                    model.refused.append(f"reload -> {r}")
                return
            with lock:
                model.ops["reload"] += 1
    finally:
        c.close()


def test_sigkill_during_a_storm_500_rounds(tmp_path):
    state, sock, conf, log = tmp_path / "state", tmp_path / "control.sock", tmp_path / "mysocketd.ini", \
        tmp_path / "mysocketd.log"
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    state.mkdir(mode=0o700)
    conf.write_text(f"[daemon]\nstate_dir = {state}\ncontrol_socket = {sock}\nlog_level = info\n\n"
                    f"[ssh]\nserver = 127.0.0.1\nport = 1\nuser = root\nidentity_file = {key}\n"
                    f"known_hosts = {state}/known_hosts\n\n[backoff]\ninitial = 1\nmax = 2\n\n"
                    f'[binding "cfg"]\nport = 8000\nremote_port = 9000\n')
    rng = random.Random(int(os.environ.get("MYSOCKETD_CRASH_SEED", str(int(time.time())))))
    model, lock = Model(), threading.Lock()
    names = [[f"c{i}n{j}" for j in range(NAMES_PER_CLIENT)] for i in range(CLIENTS)]
    losses, lost, tmp_seen, start_times, killed_midflight = 0, [], set(), [], 0
    t0 = time.monotonic()
    logf = open(log, "ab")
    proc = None
    try:
        for rnd in range(ROUNDS + 1):
            # 1. The daemon always starts again, and answers.
            ts = time.monotonic()
            proc = subprocess.Popen([str(MYSOCKETD), "-c", str(conf)], stdout=logf, stderr=subprocess.STDOUT)
            listing = None
            while time.monotonic() - ts < 10:
                assert proc.poll() is None, f"round {rnd}: mysocketd exited {proc.returncode}: " + \
                    log.read_text(errors="replace")[-2000:]
                try:
                    c = Conn(str(sock), timeout=2)
                    listing = c.call({"v": 1, "cmd": "list"})
                    c.close()
                    break
                except (OSError, ConnectionError, ValueError):
                    time.sleep(0.005)
            assert listing and listing.get("ok"), f"round {rnd}: no answer within 10 s"
            start_times.append(time.monotonic() - ts)
            present = {b["name"]: b["port"] for b in listing["bindings"]}
            assert present.get("cfg") == 8000, f"round {rnd}: the config binding is gone"
            # 2. Every acknowledged change is there; an op in flight may have gone either way.
            for name in [n for grp in names for n in grp]:
                want, got = model.acked.get(name), present.get(name)
                if name in model.pending:
                    assert got in (want, model.pending[name]), f"round {rnd}: {name}: {got} not in {want}/pending"
                elif got != want:
                    losses += 1
                    lost.append((rnd, name, want, got))
                model.acked[name] = got            # go on from what is there
            model.pending.clear()
            # 3. Nothing torn: the files all parse, and there is one per runtime binding.
            files = sorted(os.listdir(state / "bindings.d"))
            tmp_seen.update(f for f in files if ".tmp." in f)
            inis = {f[:-4] for f in files if f.endswith(".ini")}
            assert inis == {n for n in present if n != "cfg"}, f"round {rnd}: files {files} vs {sorted(present)}"
            if rnd % 10 == 0 or rnd == ROUNDS:
                chk = subprocess.run([str(MYSOCKETD), "--check-config", "-c", str(conf)], capture_output=True,
                                     text=True, timeout=10)
                assert chk.returncode == 0 and "skipped" not in chk.stdout + chk.stderr, \
                    f"round {rnd}: --check-config: {chk.returncode} {chk.stdout}{chk.stderr}"
            if rnd == ROUNDS:
                break
            # 4. The storm, and SIGKILL at a random moment of it.
            stop = threading.Event()
            threads = [threading.Thread(target=storm_client, args=(sock, names[i], model, lock, stop,
                                                                   random.Random(rng.random())))
                       for i in range(CLIENTS)]
            threads.append(threading.Thread(target=reloader, args=(sock, proc.pid, model, lock, stop,
                                                                   random.Random(rng.random()))))
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0, 0.050))
            proc.kill()
            proc.wait()
            stop.set()
            for t in threads:
                t.join(10)
            killed_midflight += len(model.pending)
        # No torn file anywhere in the state dir, and the warnings never appeared.
        text = log.read_text(errors="replace")
        assert "runtime binding skipped" not in text
        for f in (state / "bindings.d").iterdir():
            if f.name.endswith(".ini"):
                text = f.read_text()
                assert f'[binding "{f.name[:-4]}"]\n' in text and text.endswith("\n"), (f, text)
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        logf.close()
    elapsed = time.monotonic() - t0
    start_times.sort()
    print(f"\nFIGURE " + json.dumps({
        "test": "crash", "rounds": ROUNDS, "acknowledged": model.ops, "in_flight_at_kill": killed_midflight,
        "losses": losses, "tmp_leftovers": len(tmp_seen), "start_p50_ms": round(start_times[len(start_times) // 2] * 1000, 1),
        "start_max_ms": round(start_times[-1] * 1000, 1), "elapsed_s": round(elapsed, 1)}))
    if tmp_seen:
        print(f"temp files left by kills (ignored by the daemon): {sorted(tmp_seen)[:5]} ...")
    assert not model.refused, model.refused[:5]
    assert losses == 0, lost[:10]

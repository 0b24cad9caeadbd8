"""The container recipe (packaging/container/, docs/CONTAINER.md; issue 15 item 6).

test_entrypoint_*: the image's entry point script and a container-style config (log_format =
json, metrics_listen for the health check, state in one directory) run outside any engine, in
a PID namespace of their own (`unshare --pid --fork --mount-proc`) so that the first process
IS PID 1 as in a container: once as the image runs it (tini as PID 1, mysocketd its child)
and once with mysocketd itself as PID 1. A real sshd relay on loopback; SIGTERM is sent to
the namespace's init from outside, as `docker stop` / `podman stop` do.

test_image_*: the built image under podman, when one is named in MYSOCKETD_CONTAINER_IMAGE
(docs/CONTAINER.md says how it was built here); skipped otherwise.
"""
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import MYSOCKETD, REPO, Echo, free_port, wait_for
from relay import Relay

ENTRYPOINT = REPO / "packaging" / "container" / "entrypoint.sh"
TINI = shutil.which("tini") or "/usr/bin/tini"
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
STOP_WITHIN = 5.0


def container_config(relay, state_dir, control_socket, identity, metrics_port, local_port, remote_port):
    """The config a container mounts (docs/CONTAINER.md), pointed at the test relay."""
    return (f"[daemon]\nstate_dir = {state_dir}\ncontrol_socket = {control_socket}\n"
            f"control_group = root\nlog_format = json\nlog_level = info\n"
            f"metrics_listen = 127.0.0.1:{metrics_port}\n\n"
            f"[ssh]\nserver = 127.0.0.1\nport = {relay.port}\nuser = {relay.user}\n"
            f"identity_file = {identity}\nhost_key_check = accept-new\n"
            f"keepalive_interval = 5\nkeepalive_count = 3\n\n"
            f"[backoff]\ninitial = 1\nmax = 2\nstable_after = 5\n\n"
            f'[binding "web"]\nport = {local_port}\ntype = tcp\nremote_port = {remote_port}\n')


def get_health(port):
    """(HTTP status, parsed body) of GET /health, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:
        return None


def echo_through(port, payload=b"through the relay\n"):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(payload)
        got = b""
        while len(got) < len(payload):
            b = c.recv(65536)
            if not b:
                break
            got += b
    return got


def json_log(text):
    """Every line one JSON object with time, priority and message (nothing else on stderr)."""
    objs = []
    for line in text.splitlines():
        o = json.loads(line)
        assert isinstance(o, dict) and {"time", "priority", "message"} <= set(o), line
        objs.append(o)
    return objs


def ns_pids(pid):
    """A process's pids from its own namespace outwards: NSpid of /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return [int(x) for x in line.split()[1:]]
    return []


def children(pid):
    out = []
    for t in Path(f"/proc/{pid}/task").iterdir():
        out += [int(x) for x in (t / "children").read_text().split()]
    return out


def exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


@pytest.fixture
def setup(tmp_path, request):
    relay = Relay(tmp_path / "relay").start()
    echo = Echo()
    env = {"relay": relay, "echo": echo, "procs": []}
    yield env
    for p in env["procs"]:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)   # unshare and its namespace (its own session)
            p.wait()
    echo.close()
    relay.stop()


@pytest.mark.parametrize("init", ["tini", "mysocketd"])
def test_entrypoint_as_pid1(setup, tmp_path, init):
    """The image's entry point in a PID namespace of its own: JSON log lines only, /health
    answers while the binding carries traffic, and SIGTERM from outside to the namespace's
    init stops mysocketd within 5 s with exit status 0."""
    if init == "tini" and not Path(TINI).exists():
        pytest.fail("tini missing: apt-get install tini (tools/setup.sh installs it)")
    relay, echo = setup["relay"], setup["echo"]
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    metrics_port, remote_port = free_port(), free_port()
    config = tmp_path / "mysocketd.ini"
    config.write_text(container_config(relay, state, tmp_path / "control.sock", relay.client_key,
                                       metrics_port, echo.port, remote_port))
    argv = [UNSHARE, "--pid", "--fork", "--mount-proc", "--kill-child"]
    argv += [TINI, "--", str(ENTRYPOINT)] if init == "tini" else [str(ENTRYPOINT)]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MYSOCKETD_CONFIG": str(config), "MYSOCKETD_BIN": str(MYSOCKETD)}
    stderr = tmp_path / "stderr"
    with open(stderr, "wb") as err:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env,
                             start_new_session=True)
    setup["procs"].append(p)

    # The namespace's init: unshare's only child, pid 1 inside.
    init_pid = wait_for(lambda: (children(p.pid) or [None])[0], timeout=10, what="the namespace's init")
    assert ns_pids(init_pid)[-1] == 1
    if init == "tini":
        wait_for(lambda: children(init_pid) and exe(children(init_pid)[0]).endswith("/mysocketd"),
                 timeout=10, what="mysocketd under tini")
        daemon_pid = children(init_pid)[0]
        assert ns_pids(daemon_pid)[-1] == 2
    else:
        wait_for(lambda: exe(init_pid).endswith("/mysocketd"), timeout=10, what="the entry point to exec mysocketd")
        daemon_pid = init_pid       # exec: the shell's pid 1 is now mysocketd

    health = wait_for(lambda: (lambda h: h if h and h[0] == 200 and h[1]["up"] == 1 else None)(get_health(metrics_port)),
                      timeout=30, what="/health 200 with the binding up")
    assert health[1]["status"] == "ok" and health[1]["bindings"] == 1, health
    assert echo_through(remote_port) == b"through the relay\n"

    t0 = time.monotonic()
    os.kill(init_pid, signal.SIGTERM)          # what the engine's stop does to the container's PID 1
    rc = p.wait(timeout=STOP_WITHIN + 5)
    took = time.monotonic() - t0
    print(f"init={init}: SIGTERM to pid 1 -> exit {rc} after {took * 1e3:.0f} ms")
    assert took < STOP_WITHIN, took
    assert rc == 0, (rc, stderr.read_text())
    assert not Path(f"/proc/{daemon_pid}").exists() or not exe(daemon_pid).endswith("/mysocketd")

    objs = json_log(stderr.read_text(errors="replace"))
    assert any("started" in o["message"] for o in objs), objs
    assert any(o.get("binding") == "web" and o.get("event") == "up" for o in objs), objs
    assert any("received Terminated; stopping" in o["message"] for o in objs), objs


def test_entrypoint_without_config_says_what_to_mount(tmp_path):
    p = subprocess.run([str(ENTRYPOINT)], capture_output=True, text=True, timeout=10,
                       env={"PATH": "/usr/bin:/bin", "MYSOCKETD_CONFIG": str(tmp_path / "absent.ini"),
                            "MYSOCKETD_BIN": str(MYSOCKETD)})
    assert p.returncode == 78, p
    assert f"no readable config at {tmp_path / 'absent.ini'}" in p.stderr and "-v " in p.stderr, p.stderr


# ---- the image under podman (when built: docs/CONTAINER.md) ---------------------------------------

IMAGE = os.environ.get("MYSOCKETD_CONTAINER_IMAGE")
# Extra `podman run` options this machine needs (docs/CONTAINER.md: runc, ulimits).
PODMAN_ARGS = shlex.split(os.environ.get("MYSOCKETD_PODMAN_ARGS", ""))


def podman(*args, timeout=60, check=True):
    p = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} -> {p.returncode}: {p.stderr}")
    return p


@pytest.mark.skipif(not IMAGE or not shutil.which("podman"), reason="MYSOCKETD_CONTAINER_IMAGE not set")
@pytest.mark.parametrize("init", ["tini", "mysocketd"])
def test_image_runs_with_mounted_config(setup, tmp_path, init):
    """The image itself: config and key mounted read-only, the host's loopback relay reached
    with --network=host, the HEALTHCHECK passing, JSON logs from `podman logs`, and `podman
    stop` (SIGTERM to the container's PID 1) ending it within 5 s with status 0. With the
    relay stopped, /health turns 503 and the HEALTHCHECK fails."""
    relay, echo = setup["relay"], setup["echo"]
    metrics_port, remote_port = free_port(), free_port()
    key = tmp_path / "id_ed25519"
    shutil.copy(relay.client_key, key)
    os.chown(key, 999, 999)                    # the image's mysocketd user
    key.chmod(0o600)
    config = tmp_path / "mysocketd.ini"
    config.write_text(container_config(relay, "/var/lib/mysocketd", "/run/mysocketd/control.sock",
                                       "/etc/mysocketd/id_ed25519", metrics_port, echo.port, remote_port))
    config.chmod(0o644)
    name = f"mysocketd-test-{os.getpid()}-{init}"
    run = ["run", "-d", "--name", name, "--network=host", *PODMAN_ARGS,
           "-v", f"{config}:/etc/mysocketd/mysocketd.ini:ro", "-v", f"{key}:/etc/mysocketd/id_ed25519:ro",
           "-e", f"MYSOCKETD_HEALTH_URL=http://127.0.0.1:{metrics_port}/health"]
    if init == "mysocketd":
        run += ["--entrypoint", "/usr/libexec/mysocketd/container-entrypoint"]
    try:
        podman(*run, IMAGE)
        wait_for(lambda: (lambda h: h and h[0] == 200 and h[1]["up"] == 1)(get_health(metrics_port)),
                 timeout=30, what="/health 200 from the container")
        assert podman("healthcheck", "run", name, check=False).returncode == 0
        assert echo_through(remote_port) == b"through the relay\n"
        top = podman("top", name, "pid", "comm").stdout
        assert ("1 tini" if init == "tini" else "1 mysocketd") in " ".join(top.split()), top
        # The relay gone: every binding down, /health 503, and the image's check fails.
        relay.stop()
        wait_for(lambda: (get_health(metrics_port) or (0,))[0] == 503, timeout=30, what="/health 503")
        hc = podman("healthcheck", "run", name, check=False)
        assert hc.returncode != 0, hc
        t0 = time.monotonic()
        podman("stop", "-t", "10", name, timeout=30)
        took = time.monotonic() - t0
        rc = int(podman("inspect", "-f", "{{.State.ExitCode}}", name).stdout)
        print(f"image init={init}: podman stop -> exit {rc} after {took * 1e3:.0f} ms")
        assert took < STOP_WITHIN and rc == 0, (took, rc)
        objs = json_log(podman("logs", name).stderr + podman("logs", name).stdout)
        assert any(o.get("binding") == "web" and o.get("event") == "up" for o in objs), objs
        assert any("received Terminated; stopping" in o["message"] for o in objs), objs
    finally:
        podman("rm", "-f", "-v", name, check=False)

"""Direct mode with several relays (SPEC §10, issue 14 items 2 and 3): `[ssh] server = a, b`
holds every binding's forward on every relay at once, each tunnel with its own state,
backoff and host-key entry; one relay dying, refusing the forward or hanging never
delays, drops or slows the tunnel through the other.

Two real sshd relays: A on 127.0.0.1 in this namespace, B in a network namespace of its
own (reached over a veth pair), so that both can bind the same remote_port on their own
loopback, as two relay hosts would.
"""
import os
import socket
import subprocess
import time

import pytest

from conftest import Echo, binding, free_port, netns, new_daemon, report_on_failure, wait_for
from relay import Relay



def run(*cmd, check=True):
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)


def _netns_possible():
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    probe = f"msd-probe-{os.getpid()}"
    p = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if p.returncode != 0:
        return f"ip netns add is not possible here: {p.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


pytestmark = pytest.mark.skipif(_netns_possible() is not None, reason=str(_netns_possible()))


def connect(port, ns=None, timeout=5):
    """A connection to 127.0.0.1:port, in namespace ns (the far relay's loopback) or here."""
    if ns is None:
        return socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with netns(ns):
        return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def echo_once(c, payload):
    c.sendall(payload)
    got = b""
    while len(got) < len(payload):
        b = c.recv(65536)
        assert b, "connection closed"
        got += b
    return got


def roundtrip(port, ns=None):
    with connect(port, ns) as c:
        return echo_once(c, b"hello %d\n" % port) == b"hello %d\n" % port


@pytest.fixture
def lab(tmp_path, request):
    """Relay B's namespace and the veth wire to it: 10.213.x.1 there, 10.213.x.2 here."""
    tag = os.getpid() % 200 + 20
    ns, here, there = f"msd-h14-{os.getpid()}", f"h14a{os.getpid() % 100000}", f"h14b{os.getpid() % 100000}"
    run("ip", "netns", "add", ns)
    try:
        run("ip", "link", "add", here, "type", "veth", "peer", "name", there)
        run("ip", "link", "set", there, "netns", ns)
        run("ip", "addr", "add", f"10.213.{tag}.2/24", "dev", here)
        run("ip", "link", "set", here, "up")
        run("ip", "netns", "exec", ns, "ip", "addr", "add", f"10.213.{tag}.1/24", "dev", there)
        run("ip", "netns", "exec", ns, "ip", "link", "set", there, "up")
        run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns, f"10.213.{tag}.1"
    finally:
        run("ip", "link", "del", here, check=False)
        run("ip", "netns", "del", ns, check=False)


def start_two(tmp_path, request, lab, relay_a_extra=(), names=("web",)):
    ns, b_host = lab
    a = Relay(tmp_path / "relay-a", extra_config=list(relay_a_extra))
    b = Relay(tmp_path / "relay-b", host=b_host, netns=ns)
    # Both relays accept the same client key.
    with open(b.authorized_keys, "w") as f:
        f.write(a.client_public_key + "\n")
    a.start()
    b.start()
    request.addfinalizer(a.stop)
    request.addfinalizer(b.stop)
    request.addfinalizer(lambda: report_on_failure(request, "relay A", a.log))
    request.addfinalizer(lambda: report_on_failure(request, "relay B", b.log))
    echo = Echo()
    request.addfinalizer(echo.close)
    rport = free_port()
    d = new_daemon(tmp_path / "d")
    bindings = "".join(binding(n, echo.port, rport + i) for i, n in enumerate(names))
    d.configure_relay(a, bindings, ssh={"server": f"127.0.0.1:{a.port}, {b_host}:{b.port}", "port": "22"})
    d.start()
    request.addfinalizer(d.stop)
    request.addfinalizer(lambda: report_on_failure(request, "mysocketd", d.log_text))
    return a, b, d, rport, ns


def tunnels_up(d, name="web"):
    return d.binding(name)["tunnels_up"]


def relay_states(d, name="web"):
    return [r["state"] for r in d.binding(name)["relays"]]


def list_state(d, name="web"):
    for line in d.ctl("list").stdout.splitlines()[1:]:
        cols = line.split()
        if cols and cols[0] == name:
            return " ".join(cols[1:3])
    return None


def test_two_relays_both_hold_the_forward(tmp_path, request, lab):
    a, b, d, rport, ns = start_two(tmp_path, request, lab)
    wait_for(lambda: tunnels_up(d) == 2, timeout=20, what="both tunnels up")
    j = d.binding("web")
    assert j["state"] == "up" and j["tunnels"] == 2
    assert [r["server"] for r in j["relays"]] == [f"127.0.0.1:{a.port}", f"{b.host}:{b.port}"]
    assert all(r["connected_since"] for r in j["relays"])
    assert list_state(d) == "up 2/2"
    # Each relay serves the forward on its own loopback.
    assert roundtrip(rport)
    assert roundtrip(rport, ns)
    # One host-key entry per relay, as OpenSSH writes them: [host]:port.
    kh = (d.state_dir / "known_hosts").read_text()
    assert f"[127.0.0.1]:{a.port} " in kh and f"[{b.host}]:{b.port} " in kh
    # The metric counts tunnels, not bindings.
    metrics = d.ctl("metrics").stdout
    assert 'mysocketd_binding_tunnels_up{binding="web"} 2\n' in metrics
    assert 'mysocketd_binding_up{binding="web"} 1\n' in metrics


def test_reload_to_one_relay_and_back(tmp_path, request, lab):
    """A changed relay list restarts the bindings with one tunnel per relay listed now."""
    a, b, d, rport, ns = start_two(tmp_path, request, lab)
    wait_for(lambda: tunnels_up(d) == 2, timeout=20, what="both tunnels up")
    text = d.config.read_text()
    both = f"127.0.0.1:{a.port}, {b.host}:{b.port}"
    assert both in text
    d.config.write_text(text.replace(both, f"{b.host}:{b.port}"))
    d.ctl("reload")
    wait_for(lambda: (lambda j: j["tunnels"] == 1 and j["tunnels_up"] == 1)(d.binding("web")), timeout=20,
             what="one tunnel, through B")
    assert list_state(d) == "up " + d.binding("web")["type"]   # no count with one tunnel
    assert roundtrip(rport, ns)
    wait_for(lambda: not _listening(rport), timeout=10, what="relay A to drop the forward")
    d.config.write_text(text)
    d.ctl("reload")
    wait_for(lambda: tunnels_up(d) == 2, timeout=20, what="both tunnels up again")
    assert roundtrip(rport) and roundtrip(rport, ns)
    metrics = d.ctl("metrics").stdout
    assert 'mysocketd_binding_tunnels_up{binding="web"} 2\n' in metrics


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_one_relay_dies_the_other_is_untouched(tmp_path, request, lab):
    a, b, d, rport, ns = start_two(tmp_path, request, lab)
    wait_for(lambda: tunnels_up(d) == 2, timeout=20, what="both tunnels up")
    held = connect(rport, ns)           # a connection through B, open across A's death
    try:
        assert echo_once(held, b"before\n") == b"before\n"
        a.kill()
        t0 = time.monotonic()
        wait_for(lambda: tunnels_up(d) == 1, timeout=15, what="A's tunnel seen down")
        j = d.binding("web")
        assert j["state"] == "up"
        assert relay_states(d)[1] == "up" and relay_states(d)[0] in ("backoff", "connecting")
        assert list_state(d) == "up 1/2"
        assert j["last_error"] and j["last_error"].startswith(f"relay 127.0.0.1:{a.port}: ")
        # Traffic through B never stopped: the held connection and new ones work, at once.
        for i in range(20):
            assert echo_once(held, b"during %d\n" % i) == b"during %d\n" % i
            assert roundtrip(rport, ns)
        log = d.log_text()
        assert "down: relay 127.0.0.1:%d" % a.port in log
        # A comes back by itself (backoff max 2 s).
        a.start()
        wait_for(lambda: tunnels_up(d) == 2, timeout=20, what="A's tunnel back")
        print(f"A down seen and back after {time.monotonic() - t0:.1f} s")
        assert roundtrip(rport)
        assert echo_once(held, b"after\n") == b"after\n"
    finally:
        held.close()


def test_relay_refusing_the_forward_never_delays_the_other(tmp_path, request, lab):
    t0 = time.monotonic()
    a, b, d, rport, ns = start_two(tmp_path, request, lab, relay_a_extra=("PermitListen none",))
    wait_for(lambda: tunnels_up(d) == 1, timeout=20, what="B's tunnel up")
    up_after = time.monotonic() - t0
    wait_for(lambda: relay_states(d)[0] in ("backoff", "failed"), timeout=10, what="A refused")
    j = d.binding("web")
    assert j["state"] == "up" and j["tunnels_up"] == 1 and j["relays"][1]["state"] == "up"
    assert j["relays"][0]["last_error"]
    assert list_state(d) == "up 1/2"
    for _ in range(20):
        assert roundtrip(rport, ns)
    # A keeps refusing (and backing off) for a while: B stays up, serving, never reconnected.
    since = j["relays"][1]["connected_since"]
    time.sleep(3)
    j = d.binding("web")
    assert j["relays"][1]["state"] == "up" and j["relays"][1]["connected_since"] == since
    assert roundtrip(rport, ns)
    print(f"B up {up_after:.2f} s after start with A refusing; A: {j['relays'][0]['last_error']}")
    assert up_after < 10


def test_hanging_relay_never_delays_the_other(tmp_path, request, lab):
    """Relay A accepts TCP and never says a word (the setup deadline is 30 s): B's tunnel,
    and a second binding's, are up in seconds anyway."""
    ns, b_host = lab
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)
    request.addfinalizer(hang.close)
    b = Relay(tmp_path / "relay-b", host=b_host, netns=ns)
    b.start()
    request.addfinalizer(b.stop)
    echo = Echo()
    request.addfinalizer(echo.close)
    rport = free_port()
    d = new_daemon(tmp_path / "d")
    d.configure_relay(b, binding("web", echo.port, rport) + binding("api", echo.port, rport + 1),
                      ssh={"server": f"127.0.0.1:{hang.getsockname()[1]}, {b_host}:{b.port}"})
    t0 = time.monotonic()
    d.start()
    request.addfinalizer(d.stop)
    request.addfinalizer(lambda: report_on_failure(request, "mysocketd", d.log_text))
    wait_for(lambda: tunnels_up(d, "web") == 1 and tunnels_up(d, "api") == 1, timeout=15,
             what="B's tunnels up while A hangs")
    took = time.monotonic() - t0
    assert relay_states(d, "web")[0] == "connecting"
    assert roundtrip(rport, ns) and roundtrip(rport + 1, ns)
    print(f"both bindings up through B {took:.2f} s after start while A hangs")
    assert took < 10

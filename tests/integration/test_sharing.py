"""Bindings on the same relay share one SSH session, one tcpip-forward each (issue 3, item 1).

What sharing must not change: each binding serves, a removed binding's forward is gone
from the relay while the others keep serving on the same connection, the same port can be
asked for again at once, and a relay restart brings every binding back. Different relay
credentials (another user) get a session of their own.
"""
import random
import re
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import binding, http_site, wait_for


def remote_ports(n):
    """n ports free now and below the ephemeral range, so that no outgoing connection can
    take one before the relay listens there (free_port() hands out ephemeral ones)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        top = int(f.read().split()[0])
    ports = []
    while len(ports) < n:
        p = random.randrange(10000, top)
        if p in ports:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        ports.append(p)
    return ports


@pytest.fixture
def site(tmp_path):
    yield from http_site(tmp_path, "hello through the tunnel\n")


def get(port, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=timeout) as r:
        return r.read().decode()


def refused(port):
    try:
        get(port, timeout=2)
        return False
    except OSError:
        return True


def relay_connections(pid, relay_port):
    """Established TCP connections from process pid to the relay's port (local ports)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", "( dport = :%d )" % relay_port],
                         capture_output=True, text=True, check=True).stdout
    return sorted(int(re.search(r":(\d+)\s", line.split(None, 3)[2] + " ").group(1))
                  for line in out.splitlines() if "pid=%d," % pid in line)


def logins(relay):
    with open(relay.log_path, errors="replace") as f:
        return f.read().count("Accepted publickey")


def test_bindings_share_one_session(relay_daemon, relay, site):
    td = relay_daemon
    ports = dict(zip(("a", "b", "c"), remote_ports(3)))
    # One from the config file, two added at run time (only those can be removed).
    td.configure_relay(relay, binding("a", site, ports["a"]))
    td.start()
    for n in ("b", "c"):
        td.ctl("add", n, "--port", str(site), "--remote-port", str(ports[n]))
    for n in ports:
        td.wait_state(n, "up", timeout=20)
    for p in ports.values():
        assert get(p) == "hello through the tunnel\n"
    conns = relay_connections(td.proc.pid, relay.port)
    assert len(conns) == 1, conns
    assert logins(relay) == 1
    since = {n: td.binding(n)["connected_since"] for n in ports}

    # Removing one cancels its forward only: the relay port closes, the others go on
    # over the very same connection.
    td.ctl("remove", "b")
    wait_for(lambda: refused(ports["b"]), timeout=10, what="b's forward to be cancelled on the relay")
    for n in ("a", "c"):
        assert get(ports[n]) == "hello through the tunnel\n"
        b = td.binding(n)
        assert b["state"] == "up" and b["reconnects"] == 0 and b["connected_since"] == since[n]
    assert relay_connections(td.proc.pid, relay.port) == conns

    # The same port again, at once: the cancel goes out before the new request.
    td.ctl("add", "b", "--port", str(site), "--remote-port", str(ports["b"]))
    td.wait_state("b", "up", timeout=10)
    assert td.binding("b")["reconnects"] == 0
    assert get(ports["b"]) == "hello through the tunnel\n"
    assert relay_connections(td.proc.pid, relay.port) == conns
    assert logins(relay) == 1

    # Removing them all ends the session (the config's one by a reload without it);
    # adding one starts a new one.
    for n in ("b", "c"):
        td.ctl("remove", n)
    td.configure_relay(relay, "")
    td.ctl("reload")
    wait_for(lambda: not relay_connections(td.proc.pid, relay.port), timeout=10,
             what="the session to close with its last binding")
    td.ctl("add", "d", "--port", str(site), "--remote-port", str(ports["a"]))
    td.wait_state("d", "up", timeout=10)
    assert get(ports["a"]) == "hello through the tunnel\n"
    assert logins(relay) == 2


def test_shared_session_lost_brings_every_binding_back(relay_daemon, relay, site):
    td = relay_daemon
    ports = dict(zip(("a", "b", "c", "d"), remote_ports(4)))
    td.configure_relay(relay, "".join(binding(n, site, p) for n, p in ports.items()),
                       backoff={"initial": "1", "max": "2"})
    td.start()
    for n in ports:
        td.wait_state(n, "up", timeout=20)
    relay.kill()
    wait_for(lambda: all(td.binding(n)["state"] != "up" for n in ports), timeout=10,
             what="every binding to notice the relay is gone")
    relay.start()
    for n in ports:
        b = td.wait_state(n, "up", timeout=20)
        assert b["reconnects"] >= 1
        assert get(ports[n]) == "hello through the tunnel\n"
    # Each binding retried on its own jittered schedule, yet they met on one session again.
    wait_for(lambda: len(relay_connections(td.proc.pid, relay.port)) == 1, timeout=10,
             what="one connection to the relay")


def test_many_bindings_one_connection_each_forward_serves(relay_daemon, relay, site):
    """60 bindings: 60 tcpip-forwards on one session, each reaching its own service port."""
    td = relay_daemon
    ports = remote_ports(60)
    td.configure_relay(relay, "".join(binding("s%02d" % i, site, p) for i, p in enumerate(ports)))
    td.start()
    wait_for(lambda: all(b["state"] == "up" for b in td.json("list")), timeout=60,
             what="60 bindings up")
    for p in ports:
        assert get(p) == "hello through the tunnel\n"
    assert len(relay_connections(td.proc.pid, relay.port)) == 1
    assert logins(relay) == 1

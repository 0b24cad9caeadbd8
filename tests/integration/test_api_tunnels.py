"""API mode, `tunnels = N` (issue 14 item 1): the daemon creates N tunnels for the binding's
socket once, remembers them in the state dir, holds N SSH sessions to the relay (a real
sshd), each forwarding its own relay port; a restart reuses the same ids; lowering N by
reload deletes the extra tunnel at the API (the emulator sees the DELETE) and leaves the
other session alone; raising it creates one more; one session killed leaves the binding
up 1/2 until it comes back by itself.
"""
import json
import os
import re
import signal
import subprocess
import time

from conftest import wait_for
from test_api import binding, get_through, rapi, rd, site  # noqa: F401  (fixtures)

BODY = "hello through the relay\n"


def tunnels_at(api):
    """The one socket at the emulator and its tunnels, as GET /socket/{id} shows them."""
    socks = api.state()["sockets"]
    assert len(socks) == 1, socks
    return socks[0], socks[0]["tunnels"]


def wait_up(d, name, n, timeout=40):
    def ok():
        b = d.binding(name)
        return b if b["state"] == "up" and b["tunnels_up"] == n and b["tunnels"] == n else None
    return wait_for(ok, timeout=timeout, what=f"{name} up with {n}/{n} tunnels")


def session_pid(port):
    """The pid of the sshd session process that listens on relay port `port`."""
    out = subprocess.run(["ss", "-Htlnp", f"sport = :{port}"], capture_output=True, text=True,
                         timeout=10).stdout
    pids = set(int(p) for p in re.findall(r"pid=(\d+)", out))
    assert len(pids) == 1, f"who listens on {port}: {out!r}"
    return pids.pop()


def relay_ports(b):
    return [r["relay_port"] for r in b["relays"]]


def test_two_tunnels_restart_reload_and_a_killed_session(rd, rapi, site):
    # The API's informational fields as null: an untidy but legal reply changes nothing.
    rapi.configure(informational="null")
    rd.configure(binding("web", site, "tunnels = 2"))
    rd.start()
    b = wait_up(rd, "web", 2)

    # Two tunnels at the API under the one socket, each with its own relay port, and the
    # binding's relays[] are exactly they, in order.
    sock, tunnels = tunnels_at(rapi)
    assert len(tunnels) == 2
    assert len({t["local_port"] for t in tunnels}) == 2
    assert [(r["tunnel_id"], r["relay_port"]) for r in b["relays"]] == \
        [(t["tunnel_id"], t["local_port"]) for t in tunnels]
    assert b["socket_id"] == sock["socket_id"] and b["tunnel_id"] == tunnels[0]["tunnel_id"]
    assert all(r["state"] == "up" and r["connected_since"] for r in b["relays"])
    c = rapi.counts()
    assert c.get("POST /socket") == 1 and c.get("POST /socket/{id}/tunnel") == 2, c

    # Traffic through each relay port reaches the local service; two sessions at the relay.
    for port in relay_ports(b):
        assert get_through(port) == BODY
    assert session_pid(relay_ports(b)[0]) != session_pid(relay_ports(b)[1])
    assert re.search(r"^web +up 2/2 ", rd.ctl("list").stdout, re.M), rd.ctl("list").stdout

    # The ids file holds both.
    ids = json.loads((rd.state_dir / "ids" / "web.json").read_text())
    assert [t["tunnel_id"] for t in ids["tunnels"]] == [t["tunnel_id"] for t in tunnels]
    assert all(t["created"] for t in ids["tunnels"])

    # Restart: the same two tunnels, nothing new created at the API.
    rd.stop()
    rapi.reset_counts()
    rd.start()
    b2 = wait_up(rd, "web", 2)
    assert [r["tunnel_id"] for r in b2["relays"]] == [t["tunnel_id"] for t in tunnels]
    assert relay_ports(b2) == relay_ports(b)
    c = rapi.counts()
    assert c.get("POST /socket", 0) == 0 and c.get("POST /socket/{id}/tunnel", 0) == 0, c
    assert len(tunnels_at(rapi)[1]) == 2
    for port in relay_ports(b2):
        assert get_through(port) == BODY

    # One tunnel's session killed at the relay: the binding stays up (1/2), the other
    # tunnel keeps its session and its traffic; the killed one comes back by itself, on
    # the same tunnel id and port, without a new tunnel at the API.
    keep, victim = relay_ports(b2)
    keep_since = b2["relays"][0]["connected_since"]
    keep_pid = session_pid(keep)
    os.kill(session_pid(victim), signal.SIGKILL)
    half = wait_for(lambda: (lambda x: x if x["tunnels_up"] == 1 else None)(rd.binding("web")),
                    timeout=20, what="one tunnel down")
    assert half["state"] == "up"
    assert half["relays"][0]["state"] == "up" and half["relays"][1]["state"] != "up"
    listed = rd.ctl("list").stdout
    assert re.search(r"^web +up 1/2 ", listed, re.M) or rd.binding("web")["tunnels_up"] == 2, listed
    assert get_through(keep) == BODY
    b3 = wait_up(rd, "web", 2, timeout=30)
    assert relay_ports(b3) == [keep, victim]
    assert b3["relays"][0]["connected_since"] == keep_since and session_pid(keep) == keep_pid
    assert get_through(victim) == BODY
    c = rapi.counts()
    assert c.get("POST /socket/{id}/tunnel", 0) == 0, c

    # Lower to 1 by reload: the second tunnel is deleted at the API; the first keeps its
    # session (same pid, same connected_since).
    rd.configure(binding("web", site, "tunnels = 1"))
    rapi.reset_counts()
    rd.ctl("reload")
    wait_for(lambda: len(tunnels_at(rapi)[1]) == 1, timeout=20, what="the extra tunnel deleted at the API")
    assert rapi.counts().get("DELETE /socket/{id}/tunnel/{tid}") == 1
    assert tunnels_at(rapi)[1][0]["tunnel_id"] == tunnels[0]["tunnel_id"]
    b4 = wait_up(rd, "web", 1)
    assert b4["relays"][0]["connected_since"] == keep_since and session_pid(keep) == keep_pid
    assert get_through(keep) == BODY
    wait_for(lambda: subprocess.run(["ss", "-Htln", f"sport = :{victim}"], capture_output=True,
                                    text=True).stdout.strip() == "", timeout=10,
             what="the relay no longer listening on the dropped tunnel's port")
    ids = json.loads((rd.state_dir / "ids" / "web.json").read_text())
    assert [t["tunnel_id"] for t in ids["tunnels"]] == [tunnels[0]["tunnel_id"]]
    assert re.search(r"^web +up ", rd.ctl("list").stdout, re.M)

    # Raise to 3: two new tunnels at the API, each its own port; the first still untouched.
    rd.configure(binding("web", site, "tunnels = 3"))
    rapi.reset_counts()
    rd.ctl("reload")
    b5 = wait_up(rd, "web", 3)
    assert rapi.counts().get("POST /socket/{id}/tunnel") == 2
    _, now = tunnels_at(rapi)
    assert [r["tunnel_id"] for r in b5["relays"]] == [t["tunnel_id"] for t in now]
    assert len(set(relay_ports(b5))) == 3 and relay_ports(b5)[0] == keep
    assert b5["relays"][0]["connected_since"] == keep_since
    for port in relay_ports(b5):
        assert get_through(port) == BODY


def test_add_tunnels_at_run_time_and_the_limits(rd, rapi, site):
    rd.configure("")
    rd.start()
    rd.ctl("add", "web", "--port", str(site), "--tunnels", "2")
    b = wait_up(rd, "web", 2)
    assert "tunnels = 2" in (rd.state_dir / "bindings.d" / "web.ini").read_text()
    for port in relay_ports(b):
        assert get_through(port) == BODY
    # Out of range: a usage error at mysocketctl, an error naming the key in a config file.
    for bad in ("0", "9", "x"):
        p = rd.ctl("add", "bad", "--port", str(site), "--tunnels", bad, check=False)
        assert p.returncode == 2 and "--tunnels" in p.stderr
    rd.config.write_text(rd.config.read_text() + binding("cfg", site, "tunnels = 9"))
    p = rd.ctl("reload", check=False)
    assert p.returncode == 1 and re.search(r'\[binding "cfg"\] tunnels: "9" is not a number from 1 to 8',
                                           p.stdout + p.stderr), p.stdout + p.stderr
    # remove --purge deletes the socket and with it both tunnels.
    rd.ctl("remove", "--purge", "web")
    wait_for(lambda: rapi.state()["sockets"] == [], timeout=10, what="the socket deleted")


def test_api_down_while_one_tunnel_reconnects_leaves_the_other_alone(rd, rapi, site):
    """The killed tunnel asks the API before it reconnects; the API failing makes only that
    tunnel wait (its own backoff, the API's error), never the tunnel that is up."""
    rd.configure(binding("web", site, "tunnels = 2"))
    rd.start()
    b = wait_up(rd, "web", 2)
    keep, victim = relay_ports(b)
    keep_since, keep_pid = b["relays"][0]["connected_since"], session_pid(keep)
    rapi.fault("GET /socket/{id}", "5xx")
    os.kill(session_pid(victim), signal.SIGKILL)

    def api_error():
        x = rd.binding("web")
        r = x["relays"][1]
        return x if r["state"] != "up" and r["last_error"] and "503" in r["last_error"] else None
    x = wait_for(api_error, timeout=20, what="the second tunnel waiting on the API's 503")
    assert x["state"] == "up" and x["tunnels_up"] == 1
    assert x["relays"][0]["state"] == "up" and x["relays"][0]["connected_since"] == keep_since
    assert re.search(r"tunnel 2: .*503", x["last_error"] or ""), x["last_error"]
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3:
        assert get_through(keep) == BODY
        assert rd.binding("web")["relays"][0]["connected_since"] == keep_since
        time.sleep(0.3)
    assert session_pid(keep) == keep_pid
    rapi.clear_faults()
    b2 = wait_up(rd, "web", 2, timeout=30)
    assert relay_ports(b2) == [keep, victim]
    assert b2["relays"][0]["connected_since"] == keep_since
    assert get_through(victim) == BODY
    assert rapi.counts().get("POST /socket/{id}/tunnel") == 2


def test_max_connections_is_one_cap_across_the_tunnels(rd, rapi):
    """max_connections = 3 with two tunnels: three open in all, whichever relay port each
    came in by; the fourth is closed at once, on either port."""
    import socket
    from conftest import Echo
    echo = Echo()
    conns = []
    try:
        rd.configure(binding("capped", echo.port, "tunnels = 2\nmax_connections = 3"))
        rd.start()
        b = wait_up(rd, "capped", 2)
        a_port, b_port = relay_ports(b)
        for port in (a_port, b_port, a_port):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(b"ping\n")
            c.settimeout(5)
            assert c.recv(5) == b"ping\n"
            conns.append(c)
        wait_for(lambda: rd.binding("capped")["connections_active"] == 3, timeout=5, what="3 active")
        for port in (b_port, a_port):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(b"ping\n")
            c.settimeout(3)
            try:
                assert c.recv(5) == b"", f"a 4th connection via {port} was bridged"
            except ConnectionResetError:
                pass
            c.close()
        b = rd.binding("capped")
        assert (b["connections_active"], b["connections_refused"]) == (3, 2), b
        # One closed anywhere frees room on either tunnel.
        conns.pop(0).close()
        wait_for(lambda: rd.binding("capped")["connections_active"] == 2, timeout=5, what="one closed")
        c = socket.create_connection(("127.0.0.1", b_port), timeout=5)
        conns.append(c)
        c.sendall(b"pong\n")
        c.settimeout(5)
        assert c.recv(5) == b"pong\n"
    finally:
        for c in conns:
            c.close()
        echo.close()

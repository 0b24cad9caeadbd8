"""The tunnel engine against a real OpenSSH sshd (direct mode, SPEC sections 1, 4, 9).

Traffic, big transfers (sha256 checked, both ways), many connections at once, the local
service and the relay going away and coming back, a frozen relay, host keys, rekeying, and
one binding failing while another serves.

MYSOCKETD_TRANSFER_MIB sets the big transfer size (default 1024: 1 GiB each way).
"""
import ctypes
import hashlib
import http.server
import os
import platform
import re
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import (MYSOCKETD, BlobServer, binding, free_port, http_site, new_daemon, pattern_digest, send_pattern,
                      start_http_server, wait_for)
from relay import Relay

TRANSFER_MIB = int(os.environ.get("MYSOCKETD_TRANSFER_MIB", "1024"))


def download(port, n, timeout=600):
    """Asks the local service for n bytes through the tunnel; returns (sha256, bytes, seconds)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        t = time.monotonic()
        c.sendall(b"SEND %d\n" % n)
        h, got = hashlib.sha256(), 0
        while True:
            b = c.recv(1 << 20)
            if not b:
                break
            h.update(b)
            got += len(b)
        return h.hexdigest(), got, time.monotonic() - t


def upload(port, n, timeout=600):
    """Sends n pattern bytes through the tunnel; returns (sha256 the service saw, seconds)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        t = time.monotonic()
        c.sendall(b"RECV %d\n" % n)
        send_pattern(c, n)
        c.shutdown(socket.SHUT_WR)
        line = c.makefile().readline().strip()
        return line, time.monotonic() - t


@pytest.fixture
def blob():
    b = BlobServer()
    yield b.port
    b.close()


@pytest.fixture
def site(tmp_path):
    yield from http_site(tmp_path, "hello through the tunnel\n")


@pytest.fixture
def td(relay_daemon):
    return relay_daemon


def get(port, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=timeout) as r:
        return r.read().decode()


def try_get(port):
    try:
        return get(port, timeout=2)
    except OSError:
        return None


def serve(d, relay, name, local, extra="", **config):
    """Starts daemon d with one binding, local port -> a new port on relay, and waits for it
    to be up; returns the relay port. config: configure_relay's ssh= and backoff=; extra:
    more lines of the binding."""
    rp = free_port()
    d.configure_relay(relay, binding(name, local, rp, extra), **config)
    d.start()
    d.wait_state(name, "up", timeout=20)
    return rp


def test_http_through_the_tunnel_with_edge_log(td, relay, site):
    rp = serve(td, relay, "web", site, extra="edge_log = yes\n")   # direct mode: off unless asked
    assert get(rp) == "hello through the tunnel\n"
    wait_for(lambda: "hello from relay" in td.log_text(), timeout=10, what="the relay's banner")
    relay.emit("GET /index.html 200 edge-request")
    wait_for(lambda: "edge-request" in td.log_text(), timeout=10, what="the relay's log line in our log")
    b = wait_for(lambda: (lambda b: b if b["connections_total"] >= 1 else None)(td.binding("web")),
                 timeout=5, what="the connection counted")
    assert b["bytes_in"] > 0 and b["bytes_out"] > 0
    # The accept-new default recorded the relay's key.
    assert (td.state_dir / "known_hosts").read_text().split()[1:] == relay.known_hosts_line().split()[1:]


def test_large_transfer_both_ways_is_intact(td, relay, blob):
    rp = serve(td, relay, "big", blob)
    n = TRANSFER_MIB << 20
    digest, got, secs = download(rp, n)
    assert (got, digest) == (n, pattern_digest(n))
    print(f"local -> relay: {n >> 20} MiB in {secs:.1f} s = {n / secs / 1e6:.1f} MB/s")
    digest, secs = upload(rp, n)
    assert digest == pattern_digest(n)
    print(f"relay -> local: {n >> 20} MiB in {secs:.1f} s = {n / secs / 1e6:.1f} MB/s")
    b = td.binding("big")
    assert b["bytes_in"] >= n and b["bytes_out"] >= n
    assert b["reconnects"] == 0


def test_new_sessions_first_transfer_does_not_stall(tmp_path, relay, blob):
    """A new session's socket send buffer starts small, so its first bulk writes often stop
    with a packet half sent. The connection whose write that was must be served again as
    soon as the packet is out: it once waited for the next keepalive, its local socket
    unpolled because its buffer was full (1 in 3 fresh sessions stalled at 98 KB)."""
    interval = 20
    for i in range(8):
        d = new_daemon(tmp_path / f"d{i}")
        try:
            rp = serve(d, relay, "first", blob,
                       ssh={"keepalive_interval": str(interval), "keepalive_count": "3"})
            time.sleep(1)      # the log shell's banner and first lines are in, as in the stalls seen
            n = 64 << 20
            digest, got, secs = download(rp, n, timeout=120)
            assert (got, digest) == (n, pattern_digest(n))
            assert secs < interval / 2, f"session {i}: 64 MiB took {secs:.1f} s: a stall until a keepalive"
        finally:
            d.stop()


def test_500_concurrent_connections(td, relay, blob):
    rp = serve(td, relay, "many", blob)
    n, size = 500, 100 * 1024
    want = pattern_digest(size)
    results, barrier = [], threading.Barrier(n)

    def one():
        try:
            with socket.create_connection(("127.0.0.1", rp), timeout=60) as c:
                barrier.wait(timeout=60)
                c.sendall(b"SEND %d\n" % size)
                h = hashlib.sha256()
                while True:
                    b = c.recv(65536)
                    if not b:
                        break
                    h.update(b)
                results.append(h.hexdigest() == want)
        except Exception as e:  # noqa: BLE001
            results.append(repr(e))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == n, [r for r in results if r is not True][:5]
    b = wait_for(lambda: (lambda b: b if b["connections_active"] == 0 else None)(td.binding("many")),
                 timeout=20, what="every connection closed")
    assert b["connections_total"] >= n and b["state"] == "up"


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_stuck_clients_slow_no_one(td, relay, blob):
    """Clients that ask for 1 GiB and read nothing cost the daemon a bounded buffer each (the
    relay's channel window stops the flow, the local service blocks), and a bulk transfer on
    the same binding and session meanwhile runs at about the speed it has alone."""
    rp = serve(td, relay, "bulk", blob)
    n = min(TRANSFER_MIB, 128) << 20
    _, _, alone = download(rp, n)
    rss0 = vm_rss_kib(td.proc.pid)
    stuck = []
    try:
        for _ in range(8):
            c = socket.create_connection(("127.0.0.1", rp), timeout=10)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.sendall(b"SEND %d\n" % (1 << 30))
            stuck.append(c)
        # Every buffer on their way fills: the relay's window (2 MiB each), then ours.
        wait_for(lambda: td.binding("bulk")["connections_active"] == 8, timeout=10,
                 what="8 stuck connections")
        time.sleep(2)
        out0 = td.binding("bulk")["bytes_out"]
        time.sleep(1)
        assert td.binding("bulk")["bytes_out"] == out0, "nothing moves towards clients that read nothing"
        digest, got, secs = download(rp, n, timeout=120)
        assert (got, digest) == (n, pattern_digest(n))
        print(f"{n >> 20} MiB: {alone:.2f} s alone, {secs:.2f} s beside 8 stuck clients")
        assert secs < 3 * alone + 1, f"{secs:.1f} s beside stuck clients against {alone:.1f} s alone"
        grown = vm_rss_kib(td.proc.pid) - rss0
        print(f"RSS grew {grown} KiB with 8 stuck clients")
        # 8 x (64 KiB buffer + libssh2's channel state), nothing near the 8 GiB asked for. A
        # sanitizer build's shadow memory and quarantine take up to ~13 MiB more.
        assert grown < 32 * 1024, f"RSS grew {grown} KiB with 8 stuck clients"
        for c in stuck:        # still open, and still served when they start reading
            c.settimeout(30)
            assert len(c.recv(65536)) > 0
    finally:
        for c in stuck:
            c.close()


def test_local_service_down_then_up(td, relay, tmp_path):
    rp, lp = free_port(), free_port()
    td.configure_relay(relay, binding("web", lp, rp))
    td.start()
    td.wait_state("web", "up", timeout=20)
    with pytest.raises(OSError):
        get(rp, timeout=5)          # the relay's connection is closed: nothing listens locally
    wait_for(lambda: re.search(rf"cannot connect to 127\.0\.0\.1:{lp}", td.log_text()), timeout=5,
             what="the local-connect warning")
    root = tmp_path / "late"
    root.mkdir()
    (root / "index.html").write_text("late but here\n")
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **kw)  # noqa: E731
    srv = start_http_server(handler, port=lp)
    try:
        assert get(rp) == "late but here\n"
        b = td.binding("web")
        assert (b["state"], b["reconnects"]) == ("up", 0)
    finally:
        srv.shutdown()
        srv.server_close()


def test_sshd_killed_and_restarted(td, relay, site):
    rp = serve(td, relay, "web", site, backoff={"initial": "1", "max": "2"})
    relay.kill()
    wait_for(lambda: td.binding("web")["state"] != "up", timeout=10, what="the binding to notice")
    time.sleep(3)
    relay.start()
    t = time.monotonic()
    b = td.wait_state("web", "up", timeout=15)
    # backoff max 2 s (with jitter), plus a handshake on loopback; slack for a loaded CI box.
    assert time.monotonic() - t < 10
    assert b["reconnects"] >= 1
    assert get(rp) == "hello through the tunnel\n"


def test_frozen_sshd_declared_dead_then_back(td, relay, site):
    rp = free_port()
    interval, count = 2, 2
    td.configure_relay(relay, binding("web", site, rp),
                 ssh={"keepalive_interval": str(interval), "keepalive_count": str(count)})
    td.start()
    td.wait_state("web", "up", timeout=20)
    time.sleep(1)
    relay.sigstop()
    t = time.monotonic()
    try:
        wait_for(lambda: td.binding("web")["state"] != "up", timeout=interval * count + 5,
                 what="the frozen relay to be declared dead")
        dead_after = time.monotonic() - t
        print(f"frozen relay declared dead after {dead_after:.1f} s")
    finally:
        relay.sigcont()
    b = td.wait_state("web", "up", timeout=40)
    assert b["reconnects"] >= 1
    # The thawed sshd's old session may hold 127.0.0.1:rp a moment longer (the new forward for
    # "localhost" then got ::1 alone): it lets go as soon as it reads our closed socket.
    wait_for(lambda: try_get(rp) == "hello through the tunnel\n", timeout=10, what="traffic again")


@pytest.mark.parametrize("mode", ["accept-new", "strict"])
def test_changed_host_key_is_refused(td, relay, site, mode):
    rp = free_port()
    (td.state_dir / "known_hosts").write_text(relay.known_hosts_line())
    old = relay.fingerprint()
    relay.new_host_key()
    relay.restart()
    new = relay.fingerprint()
    td.configure_relay(relay, binding("web", site, rp), ssh={"host_key_check": mode})
    td.start()
    b = td.wait_state("web", "failed", timeout=20)
    assert f"expected {old}" in b["last_error"] and f"offered {new}" in b["last_error"], b["last_error"]
    assert str(td.state_dir / "known_hosts") in b["last_error"]
    # The file is untouched: the old key stays the trusted one.
    assert (td.state_dir / "known_hosts").read_text().split()[2] != relay.host_public_key()[1]


def test_pinned_fingerprint(td, relay, site):
    rp = serve(td, relay, "web", site, ssh={"host_key_check": relay.fingerprint()})
    assert get(rp) == "hello through the tunnel\n"


def test_rekey_during_big_transfer(tmp_path, td, blob):
    r = Relay(tmp_path / "rekeyrelay", extra_config=["RekeyLimit 32M"]).start()
    try:
        rp = serve(td, r, "big", blob)
        n = min(TRANSFER_MIB, 256) << 20
        digest, got, _ = download(rp, n)
        assert (got, digest) == (n, pattern_digest(n))
        digest, _ = upload(rp, n)
        assert digest == pattern_digest(n)
        assert td.binding("big")["reconnects"] == 0
    finally:
        r.stop()


def cpu_flags():
    """The CPU's feature flags as /proc/cpuinfo names them (x86 "flags", ARM "Features"):
    the daemon asks the CPU itself (cpuid, AT_HWCAP)."""
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith(("flags", "Features")):
                flags |= set(line.split(":", 1)[1].split())
    return flags


def cpu_hashes_sha256():
    """SHA-256 instructions: x86 sha_ni, ARMv8 sha2."""
    return bool({"sha_ni", "sha2"} & cpu_flags())


def cpu_runs_aes_gcm():
    """AES and carry-less multiply instructions: x86 aes+pclmulqdq, ARMv8 aes+pmull."""
    f = cpu_flags()
    return "aes" in f and bool({"pclmulqdq", "pmull"} & f)


def libssh2_version():
    """The version of the libssh2 the daemon runs with, as a tuple: the one ldd resolves for
    the binary (a --with-libssh2 build runs its own), else the soname's default."""
    out = subprocess.run(["ldd", MYSOCKETD], capture_output=True, text=True).stdout
    path = next((ln.split("=>")[1].split()[0] for ln in out.splitlines()
                 if "libssh2.so" in ln and "=>" in ln), "libssh2.so.1")
    lib = ctypes.CDLL(path)
    lib.libssh2_version.restype = ctypes.c_char_p
    return tuple(int(x) for x in lib.libssh2_version(0).decode().split(".")[:3])


# What each libssh2 release added (its RELEASE-NOTES): 1.11.0 aes-gcm and the ETM MACs,
# 1.11.1 chacha20-poly1305.
AES_GCM, ETM, CHACHA = (1, 11, 0), (1, 11, 0), (1, 11, 1)


def need_libssh2(version, what):
    have = libssh2_version()
    if have < version:
        pytest.skip(f"libssh2 {'.'.join(map(str, have))} has no {what} (added in "
                    f"{'.'.join(map(str, version))}): nothing to negotiate")


def test_mac_is_the_fastest_on_this_cpu(tmp_path, td, site):
    """Without an AEAD cipher (libssh2 1.10 has none; a relay may allow only aes-ctr) the MAC
    is a third of the data path's CPU, and which SHA-2 is faster depends on the CPU
    (SHA-256 with SHA instructions, else SHA-512); 1.11 offers the ETM variant first."""
    r = Relay(tmp_path / "debugrelay", log_level="DEBUG1", extra_config=["Ciphers aes128-ctr"]).start()
    try:
        rp = serve(td, r, "web", site)
        want = "hmac-sha2-256" if cpu_hashes_sha256() else "hmac-sha2-512"
        if libssh2_version() >= ETM:
            want += "-etm@openssh.com"
        assert r.negotiated() == ("aes128-ctr", want)
        assert get(rp) == "hello through the tunnel\n"
        b = td.binding("web")
        assert (b["cipher"], b["mac"]) == ("aes128-ctr", want)
        assert f"cipher aes128-ctr, MAC {want}" in td.log_text()
    finally:
        r.stop()


def test_cipher_is_the_fastest_on_this_cpu(tmp_path, td, site):
    """Against a relay with OpenSSH's defaults: with AES instructions aes128-gcm (1.11),
    without them chacha20-poly1305 (1.11.1), else (1.10) aes128-ctr and a MAC."""
    r = Relay(tmp_path / "debugrelay", log_level="DEBUG1").start()
    try:
        rp = serve(td, r, "web", site)
        v = libssh2_version()
        if v >= AES_GCM and (cpu_runs_aes_gcm() or v < CHACHA):
            want = "aes128-gcm@openssh.com"
        elif v >= CHACHA:
            want = "chacha20-poly1305@openssh.com"
        else:
            want = "aes128-ctr"
        assert r.negotiated()[0] == want
        assert get(rp) == "hello through the tunnel\n"
        b = td.binding("web")
        assert b["cipher"] == want
        if want != "aes128-ctr":
            assert b["mac"] is None, "an AEAD cipher has no separate MAC"
            assert f"cipher {want} (AEAD, no separate MAC)" in td.log_text()
            assert "MAC hmac" not in td.log_text()
    finally:
        r.stop()


# OpenSSL told there are no crypto instructions (OPENSSL_ia32cap(3)): no AES-NI, PCLMULQDQ,
# AVX; no AVX2, AVX-512, SHA, VAES. OpenSSL's AES and SHA-256 then run in plain code.
NO_CRYPTO_INSTRUCTIONS = "~0x1200000200000000:~0x00000600E0230020"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "i686", "i386"), reason="OPENSSL_ia32cap is x86's")
@pytest.mark.parametrize("mask", [NO_CRYPTO_INSTRUCTIONS, ":~0x20000000"], ids=["no-aes-no-sha", "no-sha"])
def test_choice_follows_openssls_view_of_the_cpu(tmp_path, td, site, mask):
    """The daemon's CPU probe reads OPENSSL_ia32cap as OpenSSL does: what OpenSSL will not use
    is slow, whatever cpuid says. Masking AES puts chacha20-poly1305 first (libssh2 1.11.1;
    1.11.0 has none: aes128-gcm; 1.10 has no AEAD: aes128-ctr); masking SHA makes the MAC
    hmac-sha2-512 (with the relay restricted to aes128-ctr, so that a MAC is negotiated)."""
    extra = [] if mask == NO_CRYPTO_INSTRUCTIONS else ["Ciphers aes128-ctr"]
    r = Relay(tmp_path / "maskrelay", log_level="DEBUG1", extra_config=extra).start()
    try:
        rp = free_port()
        td.configure_relay(r, binding("web", site, rp))
        td.start(extra_env={"OPENSSL_ia32cap": mask})
        td.wait_state("web", "up", timeout=20)
        v = libssh2_version()
        cipher, mac = r.negotiated()
        if mask == NO_CRYPTO_INSTRUCTIONS and v >= AES_GCM:
            want = "chacha20-poly1305@openssh.com" if v >= CHACHA else "aes128-gcm@openssh.com"
            assert cipher == want and td.binding("web")["cipher"] == want
            assert td.binding("web")["mac"] is None
        else:
            want_mac = "hmac-sha2-512" + ("-etm@openssh.com" if v >= ETM else "")
            assert (cipher, mac) == ("aes128-ctr", want_mac)
            assert (td.binding("web")["cipher"], td.binding("web")["mac"]) == ("aes128-ctr", want_mac)
        assert get(rp) == "hello through the tunnel\n"
    finally:
        r.stop()


@pytest.mark.parametrize("ciphers", [None, "aes128-ctr", "chacha20-poly1305@openssh.com"])
def test_relay_allowing_only_an_etm_mac(tmp_path, td, site, ciphers):
    """A hardened relay (`MACs hmac-sha2-256-etm@openssh.com`): 1.11's daemon offers the ETM
    MACs, so the kex agrees (also for chacha20-poly1305, for which 1.11.1 still negotiates a
    MAC: without one it failed "Unable to exchange encryption keys"); 1.10 has no ETM MAC and
    cannot agree on one with such a relay: the binding backs off with that reason."""
    if ciphers and ciphers.startswith("chacha20"):
        need_libssh2(CHACHA, "chacha20-poly1305")
    extra = ["MACs hmac-sha2-256-etm@openssh.com"] + ([f"Ciphers {ciphers}"] if ciphers else [])
    r = Relay(tmp_path / "etmrelay", log_level="DEBUG1", extra_config=extra).start()
    try:
        if libssh2_version() < ETM:
            td.configure_relay(r, binding("web", site, free_port()))
            td.start()
            wait_for(lambda: "key" in (td.binding("web")["last_error"] or "").lower(), timeout=20,
                     what="the failed key exchange")
            assert td.binding("web")["state"] in ("backoff", "connecting")
            assert "no matching MAC found" in r.log()
            return
        rp = serve(td, r, "web", site)
        assert get(rp) == "hello through the tunnel\n"
        cipher, mac = r.negotiated()
        b = td.binding("web")
        assert b["cipher"] == cipher
        if ciphers == "aes128-ctr":
            assert mac == b["mac"] == "hmac-sha2-256-etm@openssh.com"
        else:
            assert b["mac"] is None and "MAC hmac" not in td.log_text()
    finally:
        r.stop()


def test_relay_allowing_only_aes_gcm(tmp_path, td, site):
    """`Ciphers aes128-gcm@openssh.com,aes256-gcm@openssh.com`: up with aes128-gcm (the
    faster of the two everywhere), no separate MAC, and the traffic flows."""
    need_libssh2(AES_GCM, "aes-gcm")
    r = Relay(tmp_path / "gcmrelay", log_level="DEBUG1",
              extra_config=["Ciphers aes128-gcm@openssh.com,aes256-gcm@openssh.com"]).start()
    try:
        rp = serve(td, r, "web", site)
        assert r.negotiated()[0] == "aes128-gcm@openssh.com"
        for _ in range(3):
            assert get(rp) == "hello through the tunnel\n"
        b = td.binding("web")
        assert (b["cipher"], b["mac"]) == ("aes128-gcm@openssh.com", None)
        assert "cipher aes128-gcm@openssh.com (AEAD, no separate MAC)" in td.log_text()
        assert "MAC hmac" not in td.log_text()
        assert b["bytes_out"] > 0
    finally:
        r.stop()


def test_one_binding_failing_while_another_serves(td, relay, site):
    good, taken = free_port(), free_port()
    # The relay cannot listen on "localhost" there (neither address): forward refused.
    holders = [socket.socket()]
    holders[0].bind(("127.0.0.1", taken))
    try:
        h6 = socket.socket(socket.AF_INET6)
        h6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        h6.bind(("::1", taken))
        holders.append(h6)
    except OSError:
        pass
    for h in holders:
        h.listen(1)
    try:
        td.configure_relay(relay, binding("good", site, good) + binding("bad", site, taken))
        td.start()
        td.wait_state("good", "up", timeout=20)
        wait_for(lambda: "relay refused to listen on port" in (td.binding("bad")["last_error"] or ""), timeout=20,
                 what="the forward refusal")
        for _ in range(5):
            assert get(good) == "hello through the tunnel\n"
            assert td.binding("bad")["state"] in ("backoff", "connecting")
            time.sleep(0.5)
        assert td.binding("good")["reconnects"] == 0
    finally:
        for h in holders:
            h.close()
    td.wait_state("bad", "up", timeout=20)

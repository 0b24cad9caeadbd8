"""A real OpenSSH sshd as the relay for tests (SPEC section 9).

    from relay import Relay
    r = Relay(tmpdir)            # generates host + client ed25519 keys, writes sshd_config
    r.start()                    # sshd -D -e on a free 127.0.0.1 port; waits until it accepts
    r.port, r.user, r.client_key # what the daemon needs ([ssh] server = 127.0.0.1, port, user, identity_file)
    r.known_hosts_line()         # "[127.0.0.1]:PORT ssh-ed25519 AAAA..." for a known_hosts file
    r.fingerprint()              # "SHA256:..." of the host key (host_key_check = SHA256:...)
    r.emit("a log line")         # the ForceCommand prints it on every open shell session
    r.sigstop(); r.sigcont()     # freeze / thaw the listening sshd and every session child
    r.kill(); r.restart()        # SIGKILL everything; start again on the same port
    r.new_host_key()             # replace the host key (takes effect at the next start)
    r.stop()                     # SIGTERM, then SIGKILL; always call it (or use `with Relay(...)`)

    Relay(dir, host="10.200.1.1", netns="msd-relay") runs sshd inside an existing network
    namespace (`ip netns exec NS sshd ...`) listening on `host`; readiness is then read from
    sshd's "Server listening" log line, since the address need not be reachable from here.

Every process is started here and stopped here by pid. Nothing but the standard library and
/usr/sbin/sshd, /usr/bin/ssh-keygen is used. Tests run as root (PermitRootLogin yes); the
login user is the current user.
"""

import errno
import os
import pwd
import random
import signal
import socket
import subprocess
import time

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"

# The ForceCommand: a banner, then every line appended to the emit file, until the session
# ends (sshd closes the channel, the script gets SIGHUP/EPIPE).
# Lines appended once "hello from relay" is out are never missed: tail starts at the size
# the file had before the banner.
FORCE_COMMAND = r"""#!/bin/sh
size=$(wc -c < "$1")
echo "Welcome to the test relay"
echo "hello from relay"
exec tail -c +$((size + 1)) -F "$1" 2>/dev/null
"""


def free_port_block(n=32, host="127.0.0.1"):
    """The first of n consecutive ports free on host (and on ::1 too when host is 127.0.0.1),
    below the kernel's ephemeral range. A port from bind(0) lies among the ones outgoing
    connections take, and bind(0) hands a just-released port to the next caller: sshd's bind
    of one of them then fails on 127.0.0.1 (it keeps ::1 only, or exits while something
    else answers on the port). The API emulator allots relay ports base, base+1, ..."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo = int(f.read().split()[0])
    fams = [(socket.AF_INET6 if ":" in host else socket.AF_INET, host)]
    if host == "127.0.0.1":
        fams.append((socket.AF_INET6, "::1"))
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10000, max(10001, lo - n))
        if all(_bindable(fam, addr, port) for port in range(base, base + n) for fam, addr in fams):
            return base
    raise RuntimeError("no %d free ports in a row below %d on %s" % (n, lo, host))


def _bindable(fam, addr, port):
    try:
        with socket.socket(fam) as s:
            s.bind((addr, port))
        return True
    except OSError as e:
        return fam == socket.AF_INET6 and e.errno == errno.EADDRNOTAVAIL    # no ::1 here


def free_port(host="127.0.0.1"):
    """A port free on host (see free_port_block) for a server to listen on."""
    return free_port_block(1, host)


def wait_port(host, port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Relay:
    def __init__(self, tmpdir, port=None, extra_config=(), user=None, host="127.0.0.1", netns=None,
                 log_level="VERBOSE"):
        self.dir = os.path.abspath(str(tmpdir))
        os.makedirs(self.dir, exist_ok=True)
        self.host = host
        self.netns = netns
        # In a namespace of its own every port is free; pick one that is free here too.
        self.port = port or free_port("127.0.0.1" if netns else host)
        self.user = user or pwd.getpwuid(os.getuid()).pw_name
        self.extra_config = list(extra_config)
        self.log_level = log_level   # DEBUG1 names the negotiated cipher and MAC: negotiated()
        self.host_key = os.path.join(self.dir, "ssh_host_ed25519_key")
        self.client_key = os.path.join(self.dir, "id_ed25519")
        self.authorized_keys = os.path.join(self.dir, "authorized_keys")
        self.config = os.path.join(self.dir, "sshd_config")
        self.pidfile = os.path.join(self.dir, "sshd.pid")
        self.emit_file = os.path.join(self.dir, "relay-log")
        self.script = os.path.join(self.dir, "relay-shell.sh")
        self.log_path = os.path.join(self.dir, "sshd.log")
        self.proc = None
        self._log = None
        self._keygen(self.host_key)
        if not os.path.exists(self.client_key):
            self._keygen(self.client_key)
        with open(self.client_key + ".pub") as f:
            self.client_public_key = f.read().strip()
        with open(self.authorized_keys, "w") as f:
            f.write(self.client_public_key + "\n")
        os.chmod(self.client_key, 0o600)
        with open(self.script, "w") as f:
            f.write(FORCE_COMMAND)
        os.chmod(self.script, 0o755)
        open(self.emit_file, "a").close()
        self.write_config()

    # --- keys ---------------------------------------------------------------------------
    def _keygen(self, path):
        for p in (path, path + ".pub"):
            if os.path.exists(p):
                os.unlink(p)
        subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", path],
                       check=True, stdin=subprocess.DEVNULL)

    def new_host_key(self):
        """Replaces the host key; a running sshd uses it for new connections."""
        self._keygen(self.host_key)

    def host_public_key(self):
        with open(self.host_key + ".pub") as f:
            kind, blob = f.read().split()[:2]
        return kind, blob

    def known_hosts_line(self):
        kind, blob = self.host_public_key()
        name = self.host if self.port == 22 else "[%s]:%d" % (self.host, self.port)
        return "%s %s %s\n" % (name, kind, blob)

    def fingerprint(self):
        out = subprocess.run([SSH_KEYGEN, "-l", "-E", "sha256", "-f", self.host_key + ".pub"],
                             check=True, capture_output=True, text=True).stdout
        return out.split()[1]

    # --- config -------------------------------------------------------------------------
    def write_config(self):
        lines = [
            "Port %d" % self.port,
            "ListenAddress %s" % self.host,
            "HostKey %s" % self.host_key,
            "PidFile %s" % self.pidfile,
            "AuthorizedKeysFile %s" % self.authorized_keys,
            "StrictModes no",
            "UsePAM no",
            "AllowTcpForwarding remote",
            "GatewayPorts no",
            "PermitRootLogin yes",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "X11Forwarding no",
            "PrintMotd no",
            "ForceCommand %s %s" % (self.script, self.emit_file),
            # The login shell (root's bash) would source ~/.bashrc for an ssh session, and
            # here that runs `pyenv init`, whose rehash lock serialises every shell on the
            # machine for up to 60 s each: the banner came a minute late under load. bash
            # skips it when SHLVL says it is not the outermost shell.
            "SetEnv SHLVL=1",
            "LogLevel %s" % self.log_level,
        ]
        # sshd takes a keyword's first value: an extra line replaces the default it names.
        given = {e.split()[0].lower() for e in self.extra_config if e.strip()}
        lines = [ln for ln in lines if ln.split()[0].lower() not in given] + self.extra_config
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    # --- process ------------------------------------------------------------------------
    def start(self, timeout=10.0):
        os.makedirs("/run/sshd", exist_ok=True)
        self._log = open(self.log_path, "ab")
        log_start = self._log.tell()
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []   # ip execs sshd: same pid
        self.proc = subprocess.Popen(prefix + [SSHD, "-D", "-e", "-f", self.config], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        # sshd's own "Server listening on" line, not just an answer on the port: a stale
        # listener (or a self-connect) answers there too while sshd has exited.
        ready = self._wait_listening(log_start, timeout) and (self.netns or wait_port(self.host, self.port, timeout))
        if not ready:
            self.stop()
            raise RuntimeError("sshd did not start on port %d; see %s" % (self.port, self.log_path))
        return self

    def _wait_listening(self, offset, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                if ("Server listening on %s port %d." % (self.host, self.port)).encode() in f.read():
                    return True
            time.sleep(0.05)
        return False

    def _children(self):
        """pids of the session processes sshd forked (they survive a kill of the listener)."""
        if not self.proc:
            return []
        out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
        tree = {}
        for line in out.splitlines():
            pid, ppid = (int(x) for x in line.split())
            tree.setdefault(ppid, []).append(pid)
        result, todo = [], [self.proc.pid]
        while todo:
            for c in tree.get(todo.pop(), []):
                result.append(c)
                todo.append(c)
        return result

    def _signal_all(self, sig):
        pids = ([self.proc.pid] if self.proc and self.proc.poll() is None else []) + self._children()
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return pids

    def sigstop(self):
        self._signal_all(signal.SIGSTOP)

    def sigcont(self):
        self._signal_all(signal.SIGCONT)

    def kill(self):
        """SIGKILL the listener and every session: the relay vanishes like a crashed host."""
        if not self.proc:
            return
        self._signal_all(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def stop(self):
        if not self.proc:
            return
        children = self._children()
        self._signal_all(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def restart(self, timeout=10.0):
        self.stop()
        return self.start(timeout)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # --- log lines ----------------------------------------------------------------------
    def emit(self, line):
        with open(self.emit_file, "a") as f:
            f.write(line.rstrip("\n") + "\n")

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def negotiated(self, since=0):
        """(cipher, MAC) client->server of the first connection logged after offset `since`
        (needs log_level="DEBUG1"), or None."""
        for line in self.log()[since:].splitlines():
            if "kex: client->server cipher:" in line:
                w = line.split()
                i = w.index("cipher:")
                return w[i + 1], w[i + 3]
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

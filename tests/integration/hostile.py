"""Hostile relays for the tests of issue 11 item 4 ("no input holds the loop").

    HostileRelay(mode)      a TCP server on 127.0.0.1: for each connection it does `mode`
        "preversion"        RFC 4253 section 4.2 text lines before the version line, as fast
                            as the socket takes them, for ever
        "ignore"            a version line, then SSH_MSG_IGNORE packets for ever (in the clear,
                            as before any key exchange)
        "proxy"             a transparent TCP proxy to `upstream` (a real sshd), until
                            .mode is changed: connections made afterwards get the new mode
    .port, .connections (how many were accepted), .sent (bytes the flood wrote), .stop()

    FloodSSHServer(kind)    a real SSH server (paramiko) that accepts any public key, grants
                            every tcpip-forward, then floods once the forward is granted:
        "data"              opens a forwarded-tcpip channel and writes data at full speed
        "window"            opens a channel and sends WINDOW_ADJUST messages at full speed
        "global"            sends global requests (want_reply = false) at full speed

Only the standard library and python3-paramiko (a Debian package). Every thread is a daemon
thread; stop() closes every socket it accepted.
"""
import socket
import threading
import time

FLOOD_LINE = b"Hello, this is not an SSH server, and it has a lot to say before it says so.\r\n"


class HostileRelay:
    def __init__(self, mode="preversion", upstream=None):
        self.mode = mode
        self.upstream = upstream
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.sent = 0
        self.stopping = False
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.conns.append(c)
            mode = self.mode
            target = {"preversion": self._flood, "ignore": self._ignore}.get(mode, self._proxy)
            threading.Thread(target=target, args=(c,), daemon=True).start()

    def _flood(self, c):
        block = FLOOD_LINE * 800            # about 64 KiB per send
        try:
            while not self.stopping:
                c.sendall(block)
                self.sent += len(block)
        except OSError:
            pass
        finally:
            c.close()

    def _ignore(self, c):
        """A version line, then unencrypted SSH_MSG_IGNORE packets (RFC 4253 6, 11.2) for ever:
        a client in its key exchange reads and drops each one."""
        payload = bytes([2]) + (4000).to_bytes(4, "big") + b"i" * 4000
        pad = 8 - (5 + len(payload)) % 8
        pad += 8 if pad < 4 else 0
        packet = (1 + len(payload) + pad).to_bytes(4, "big") + bytes([pad]) + payload + b"\0" * pad
        block = packet * 16
        try:
            c.sendall(b"SSH-2.0-Flood_1.0\r\n")
            while not self.stopping:
                c.sendall(block)
                self.sent += len(block)
        except OSError:
            pass
        finally:
            c.close()

    def _proxy(self, c):
        try:
            u = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            u.settimeout(None)
        except OSError:
            c.close()
            return
        with self.lock:
            self.conns.append(u)

        def pipe(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    b.sendall(d)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pipe, args=(u, c), daemon=True).start()
        pipe(c, u)

    def stop(self):
        self.stopping = True
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()


class FloodSSHServer:
    """A paramiko SSH server that floods once our forward is granted (see the module doc)."""

    def __init__(self, tmpdir, kind):
        import paramiko
        self.paramiko = paramiko
        self.kind = kind
        self.host_key = paramiko.ECDSAKey.generate()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.transports = []
        self.flooding = threading.Event()
        self.sent = 0
        self.errors = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(c,), daemon=True).start()

    def _session(self, c):
        paramiko = self.paramiko

        class Server(paramiko.ServerInterface):
            def __init__(self):
                self.forward = threading.Event()

            def get_allowed_auths(self, username):
                return "publickey"

            def check_auth_publickey(self, username, key):
                return paramiko.AUTH_SUCCESSFUL

            def check_channel_request(self, kind, chanid):
                return paramiko.OPEN_SUCCEEDED if kind == "session" else \
                    paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

            def check_channel_shell_request(self, channel):
                return True

            def check_channel_env_request(self, channel, name, value):
                return False

            def check_port_forward_request(self, address, port):
                self.forward.set()
                return port or 40000

        t = paramiko.Transport(c)
        self.transports.append(t)
        t.add_server_key(self.host_key)
        srv = Server()
        try:
            t.start_server(server=srv)
            if not srv.forward.wait(30) or self.stopping:
                return
            time.sleep(0.3)     # the grant is out; the log shell comes and goes meanwhile
            self.flooding.set()
            if self.kind == "data":
                self._flood_data(t)
            elif self.kind == "window":
                self._flood_window(t)
            elif self.kind == "global":
                self._flood_global(t)
        except Exception as e:
            self.errors.append(repr(e))
        finally:
            t.close()

    def _forwarded_channel(self, t):
        return t.open_forwarded_tcpip_channel(("127.0.0.1", 5555), ("localhost", 40000))

    def _flood_data(self, t):
        ch = self._forwarded_channel(t)
        block = b"x" * 32768
        while not self.stopping and t.is_active():
            # Past the window too: a hostile peer does not wait for it.
            ch.in_window_size = ch.out_window_size = 1 << 30
            ch.out_window_size = 1 << 30
            n = ch.send(block)
            self.sent += n

    def _raw(self, t, *parts):
        m = self.paramiko.Message()
        for kind, v in parts:
            getattr(m, "add_" + kind)(v)
        t._send_user_message(m)

    def _flood_window(self, t):
        ch = self._forwarded_channel(t)
        MSG_CHANNEL_WINDOW_ADJUST = 93
        while not self.stopping and t.is_active():
            self._raw(t, ("byte", bytes([MSG_CHANNEL_WINDOW_ADJUST])), ("int", ch.remote_chanid), ("int", 1))
            self.sent += 1

    def _flood_global(self, t):
        while not self.stopping and t.is_active():
            t.global_request("flood@mysocketd.test", wait=False)
            self.sent += 1

    def stop(self):
        self.stopping = True
        self.sock.close()
        for t in self.transports:
            try:
                t.close()
            except Exception:
                pass

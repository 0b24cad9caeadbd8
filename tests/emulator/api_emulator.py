#!/usr/bin/python3
"""An emulator of the mysocket REST API (SPEC section 8), Python 3 standard library only.

    api_emulator.py [--port 0] [--user EMAIL:PASSWORD:USER_NAME ...]
                    [--token-lifetime SECONDS] [--relay-port-base N]

Listens on 127.0.0.1 (plain http), prints "LISTENING <port>" on stdout once ready.

The API: POST /login, POST /login/refresh, GET /user/{user_id}, POST /user,
GET|POST /connect, POST /socket (GET /socket lists too), GET|DELETE /socket/{id},
GET|POST /socket/{id}/tunnel, GET|DELETE /socket/{id}/tunnel/{tid}.
Auth header x-access-token; tokens are HS256 JWTs with claims user_id, email, iat, exp, jti.
As in the seed documents' `tunnel create` table, a new tunnel has an empty tunnel_server;
it holds the relay's address (--tunnel-server) once the tunnel has connected, which only
the test knows: it says so with the control call below.

The control plane for tests (never counted, never faulted):
  GET    /_emulator/state          sockets, tunnels, users, counts per "METHOD /template",
                                    tokens_issued, tokens_revoked, faults
  POST   /_emulator/fault          {"path": "POST /socket" | "*", "kind": "5xx"|"401"|"garbage"|
                                    "html"|"slow"|"404"|"drop"|"echo"|"echo-token", "count": N|null,
                                    "delay": s, "status": code}
                                    echo: {"message": "bad request: <the request body>"} (400 unless
                                    "status"), as a careless API might; echo-token: the same with
                                    the x-access-token header instead of the body; long: a
                                    14 kB message full of control characters
  DELETE /_emulator/fault          clears every fault
  POST   /_emulator/revoke         revokes every token issued so far
  POST   /_emulator/reset-counts   zeroes the call counts
  POST   /_emulator/config         {"token_lifetime": s, "token_mode": "normal"|"expired",
                                    "clock_offset": s, "informational": "seed"|"null"|"missing"|"odd"}
                                    expired: every token is issued already expired (exp 3 h
                                    before iat); clock_offset: the API's clock runs this many
                                    seconds off ours (iat, exp and its own checks use it);
                                    informational: the API's informational fields (names, email,
                                    cloud_authentication_enabled, tunnel_server) as the seed docs
                                    show them, null, missing, or of an odd shape
  POST   /_emulator/tunnel/{tid}/connected  the tunnel has connected: its tunnel_server is set
  POST   /_emulator/user           {"email", "password", "user_name"}
  DELETE /_emulator/socket/{id}    makes a socket vanish (the API will answer 404)
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import re
import signal
import string
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SOCKET_TYPES = ("http", "https", "tcp", "tls")
FAULT_KINDS = ("5xx", "401", "garbage", "html", "slow", "404", "drop", "echo", "echo-token", "long")
INFO_MODES = ("seed", "null", "missing", "odd")
# The fields the daemon does not need (SPEC section 8): what "informational" changes.
INFO_FIELDS = {"socket": ("name", "cloud_authentication_enabled", "user_name"),
               "tunnel": ("tunnel_server",), "user": ("name", "email", "sshkey")}
ODD = {"name": {"a": 1}, "cloud_authentication_enabled": "yes", "user_name": 42,
       "tunnel_server": ["10.0.0.1"], "email": 7, "sshkey": False}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class State:
    """Everything the emulator knows; one lock guards it all."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.secret = os.urandom(32)
        self.token_lifetime = args.token_lifetime
        self.token_mode = "normal"
        self.clock_offset = 0
        self.informational = "seed"
        self.relay_port_next = args.relay_port_base
        self.tunnel_server = args.tunnel_server
        self.users = {}          # user_id -> dict(email, password, user_name, name, sshkey)
        self.sockets = {}        # socket_id -> dict (with "owner" and "tunnels")
        self.counts = {}
        self.faults = []
        self.issued = set()      # jti
        self.revoked = set()
        for spec in args.user or []:
            parts = spec.split(":", 2)
            if len(parts) != 3:
                sys.exit("--user wants EMAIL:PASSWORD:USER_NAME, got %r" % spec)
            self.add_user(*parts)

    def add_user(self, email, password, user_name, name=None, sshkey=""):
        uid = str(uuid.uuid4())
        self.users[uid] = {"user_id": uid, "email": email, "password": password,
                           "user_name": user_name, "name": name or user_name, "sshkey": sshkey}
        return uid

    def user_by_email(self, email):
        for u in self.users.values():
            if u["email"] == email:
                return u
        return None

    def now(self):
        return time.time() + self.clock_offset

    def issue(self, user):
        now = int(self.now())
        jti = uuid.uuid4().hex
        exp = now - 3 * 3600 if self.token_mode == "expired" else now + self.token_lifetime
        payload = {"user_id": user["user_id"], "email": user["email"], "iat": now,
                   "exp": exp, "jti": jti}
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = b64url(json.dumps(payload).encode())
        sig = hmac.new(self.secret, (header + "." + body).encode(), hashlib.sha256).digest()
        self.issued.add(jti)
        return header + "." + body + "." + b64url(sig)

    def verify(self, token):
        """The user of a valid token, or ApiError(401)."""
        if not token:
            raise ApiError(401, "Token is missing")
        try:
            header, body, sig = token.split(".")
            want = hmac.new(self.secret, (header + "." + body).encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(want, b64url_decode(sig)):
                raise ValueError("bad signature")
            claims = json.loads(b64url_decode(body))
        except (ValueError, TypeError):
            raise ApiError(401, "Token is invalid")
        if claims.get("jti") in self.revoked:
            raise ApiError(401, "Token has been revoked")
        if claims.get("exp", 0) <= self.now():
            raise ApiError(401, "Token has expired")
        user = self.users.get(claims.get("user_id"))
        if not user:
            raise ApiError(401, "Token is invalid")
        return user

    def new_tunnel(self):
        port = self.relay_port_next
        self.relay_port_next += 1
        # Empty until the tunnel has connected (the seed docs' `tunnel create` table).
        return {"tunnel_id": str(uuid.uuid4()), "local_port": port, "tunnel_server": ""}

    def connected(self, tunnel):
        tunnel["tunnel_server"] = self.tunnel_server

    def shape(self, kind, obj):
        """obj as the API sends it: informational fields per self.informational."""
        obj = dict(obj)
        if kind == "socket":
            obj["tunnels"] = [self.shape("tunnel", t) for t in obj.get("tunnels", [])]
        for k in INFO_FIELDS[kind]:
            if k not in obj and self.informational != "odd":
                continue
            if self.informational == "null":
                obj[k] = None
            elif self.informational == "missing":
                obj.pop(k, None)
            elif self.informational == "odd":
                obj[k] = ODD[k]
        return obj

    def new_socket(self, user, body):
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        name = body.get("name")
        stype = body.get("socket_type", "http")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "name is required")
        if stype not in SOCKET_TYPES:
            raise ApiError(400, "socket_type must be one of http, https, tcp, tls")
        protected = body.get("protected_socket", False)
        if not isinstance(protected, bool):
            raise ApiError(400, "protected_socket must be a boolean")
        if protected and not (body.get("protected_username") and body.get("protected_password")):
            raise ApiError(400, "a protected socket needs protected_username and protected_password")
        label = "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(16))
        sock = {
            "socket_id": str(uuid.uuid4()),
            "dnsname": label + ".edge.mysocket.test",
            "name": name,
            "socket_type": stype,
            "socket_tcp_ports": [random.randint(30000, 39999)] if stype in ("tcp", "tls") else [],
            "protected_socket": protected,
            "cloud_authentication_enabled": bool(body.get("cloud_authentication_enabled", False)),
            "tunnels": [],
            "owner": user["user_id"],
        }
        self.sockets[sock["socket_id"]] = sock
        return sock

    def socket_of(self, user, sid):
        sock = self.sockets.get(sid)
        if not sock or sock["owner"] != user["user_id"]:
            raise ApiError(404, "socket not found")
        return sock

    def take_fault(self, key):
        for f in self.faults:
            if f["path"] in ("*", key):
                if f["count"] is not None:
                    f["count"] -= 1
                    if f["count"] <= 0:
                        self.faults.remove(f)
                return dict(f)
        return None


def public_socket(sock):
    return {k: v for k, v in sock.items() if k != "owner"}



ROUTES = [
    ("POST", r"/login", "/login"),
    ("POST", r"/login/refresh", "/login/refresh"),
    ("GET", r"/user/(?P<user_id>[^/]+)", "/user/{user_id}"),
    ("POST", r"/user", "/user"),
    ("GET", r"/connect", "/connect"),
    ("POST", r"/connect", "/connect"),
    ("GET", r"/socket", "/socket"),
    ("POST", r"/socket", "/socket"),
    ("GET", r"/socket/(?P<sid>[^/]+)", "/socket/{id}"),
    ("DELETE", r"/socket/(?P<sid>[^/]+)", "/socket/{id}"),
    ("GET", r"/socket/(?P<sid>[^/]+)/tunnel", "/socket/{id}/tunnel"),
    ("POST", r"/socket/(?P<sid>[^/]+)/tunnel", "/socket/{id}/tunnel"),
    ("GET", r"/socket/(?P<sid>[^/]+)/tunnel/(?P<tid>[^/]+)", "/socket/{id}/tunnel/{tid}"),
    ("DELETE", r"/socket/(?P<sid>[^/]+)/tunnel/(?P<tid>[^/]+)", "/socket/{id}/tunnel/{tid}"),
]


def route(method, path):
    for m, rx, template in ROUTES:
        if m == method:
            mt = re.fullmatch(rx, path)
            if mt:
                return template, mt.groupdict()
    return None, None


def api_call(st, template, params, handler, body):
    """Runs one API call with st.lock held. Returns (status, json or None)."""
    if template == "/login":
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        user = st.user_by_email(body.get("email"))
        if not user or not hmac.compare_digest(str(body.get("password", "")), user["password"]):
            raise ApiError(401, "Invalid email or password")
        return 200, {"token": st.issue(user)}
    if template == "/user" and handler.command == "POST":
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) and body.get(k)
                                                  for k in ("name", "email", "password")):
            raise ApiError(400, "name, email and password are required")
        if st.user_by_email(body["email"]):
            raise ApiError(409, "an account with this email exists")
        uname = re.sub(r"[^a-z0-9]", "", body["email"].split("@")[0].lower())[:16] or "user"
        uid = st.add_user(body["email"], body["password"], uname, body["name"],
                          body.get("sshkey") or "")
        return 200, {"user_id": uid, "message": "account created, confirm your email"}

    user = st.verify(handler.headers.get("x-access-token"))
    cmd = handler.command
    if template == "/login/refresh":
        return 200, {"token": st.issue(user)}
    if template == "/user/{user_id}":
        if params["user_id"] != user["user_id"]:
            raise ApiError(404, "user not found")
        return 200, st.shape("user", {k: user[k] for k in ("user_id", "user_name", "name", "email", "sshkey")})
    if template in ("/connect", "/socket") and cmd == "GET":
        return 200, [st.shape("socket", public_socket(s))
                     for s in st.sockets.values() if s["owner"] == user["user_id"]]
    if template == "/connect":
        sock = st.new_socket(user, body)
        sock["tunnels"].append(st.new_tunnel())
        reply = public_socket(sock)
        reply["user_name"] = user["user_name"]
        return 200, st.shape("socket", reply)
    if template == "/socket":
        return 200, st.shape("socket", public_socket(st.new_socket(user, body)))
    sock = st.socket_of(user, params["sid"])
    if template == "/socket/{id}":
        if cmd == "GET":
            return 200, st.shape("socket", public_socket(sock))
        del st.sockets[sock["socket_id"]]
        return 204, None
    if template == "/socket/{id}/tunnel":
        if cmd == "GET":
            return 200, [st.shape("tunnel", t) for t in sock["tunnels"]]
        tunnel = st.new_tunnel()
        sock["tunnels"].append(tunnel)
        return 200, st.shape("tunnel", tunnel)
    for t in sock["tunnels"]:
        if t["tunnel_id"] == params["tid"]:
            if cmd == "GET":
                return 200, st.shape("tunnel", t)
            sock["tunnels"].remove(t)
            return 204, None
    raise ApiError(404, "tunnel not found")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mysocket-emulator/1"

    def log_message(self, fmt, *args):
        # Paths only: headers (tokens) and bodies (passwords) are never logged.
        sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    def send(self, status, payload=None, raw=None, ctype="application/json"):
        data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)) if status != 204 else "0")
        self.end_headers()
        if status != 204:
            self.wfile.write(data)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        self.raw_body = raw
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "body is not JSON")

    def handle_any(self):
        st = self.server.state
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            body = self.read_body()
        except ApiError as e:
            return self.send(e.status, {"message": e.message})
        if path.startswith("/_emulator/"):
            return self.control(st, path[len("/_emulator/"):], body)

        template, params = route(self.command, path)
        key = "%s %s" % (self.command, template or path)
        with st.lock:
            st.counts[key] = st.counts.get(key, 0) + 1
            fault = st.take_fault(key)
        if fault:
            kind = fault["kind"]
            if kind == "slow":
                time.sleep(fault.get("delay") or 5)
            elif kind == "drop":
                self.close_connection = True
                return
            elif kind == "5xx":
                return self.send(fault.get("status") or 503, {"message": "emulated server error"})
            elif kind == "401":
                return self.send(401, {"message": "Token is invalid"})
            elif kind == "404":
                return self.send(404, {"message": "not found"})
            elif kind == "garbage":
                return self.send(200, raw=b"\x00\xff{{garbage", ctype="application/json")
            elif kind == "echo":
                return self.send(fault.get("status") or 400,
                                 {"message": "bad request: " + self.raw_body.decode(errors="replace")})
            elif kind == "echo-token":
                return self.send(fault.get("status") or 400,
                                 {"message": "token %s is not allowed here"
                                  % self.headers.get("x-access-token", "")})
            elif kind == "long":
                return self.send(fault.get("status") or 400, {"message": "x\x01\x1b[31m" * 2000})
            elif kind == "html":
                return self.send(502, raw=b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                                 ctype="text/html")
        if template is None:
            return self.send(404, {"message": "no such endpoint"})
        try:
            with st.lock:
                status, reply = api_call(st, template, params, self, body)
        except ApiError as e:
            return self.send(e.status, {"message": e.message})
        self.send(status, reply)

    def control(self, st, what, body):
        with st.lock:
            if self.command == "GET" and what == "state":
                sockets = [dict(s) for s in st.sockets.values()]
                tunnels = [dict(t, socket_id=s["socket_id"]) for s in sockets for t in s["tunnels"]]
                return self.send(200, {
                    "sockets": sockets, "tunnels": tunnels, "counts": st.counts,
                    "users": [{k: u[k] for k in ("user_id", "email", "user_name")}
                              for u in st.users.values()],
                    "tokens_issued": len(st.issued), "tokens_revoked": len(st.revoked),
                    "token_lifetime": st.token_lifetime, "faults": st.faults})
            if what == "fault" and self.command == "POST":
                if not isinstance(body, dict) or body.get("kind") not in FAULT_KINDS \
                        or not isinstance(body.get("path", "*"), str):
                    return self.send(400, {"message": "want {path, kind in %s, count, delay}"
                                           % "|".join(FAULT_KINDS)})
                st.faults.append({"path": body.get("path", "*"), "kind": body["kind"],
                                  "count": body.get("count"), "delay": body.get("delay"),
                                  "status": body.get("status")})
                return self.send(200, {"faults": st.faults})
            if what == "fault" and self.command == "DELETE":
                st.faults.clear()
                return self.send(200, {"faults": []})
            if what == "revoke" and self.command == "POST":
                st.revoked |= st.issued
                return self.send(200, {"tokens_revoked": len(st.revoked)})
            if what == "reset-counts" and self.command == "POST":
                st.counts.clear()
                return self.send(200, {})
            if what == "config" and self.command == "POST" and isinstance(body, dict):
                if body.get("token_mode", "normal") not in ("normal", "expired") or \
                        body.get("informational", "seed") not in INFO_MODES:
                    return self.send(400, {"message": "token_mode normal|expired, informational %s"
                                           % "|".join(INFO_MODES)})
                if "token_lifetime" in body:
                    st.token_lifetime = int(body["token_lifetime"])
                st.token_mode = body.get("token_mode", st.token_mode)
                st.clock_offset = int(body.get("clock_offset", st.clock_offset))
                st.informational = body.get("informational", st.informational)
                return self.send(200, {"token_lifetime": st.token_lifetime, "token_mode": st.token_mode,
                                       "clock_offset": st.clock_offset,
                                       "informational": st.informational})
            m = re.fullmatch(r"tunnel/([^/]+)/connected", what)
            if m and self.command == "POST":
                for sock in st.sockets.values():
                    for t in sock["tunnels"]:
                        if t["tunnel_id"] == m.group(1):
                            st.connected(t)
                            return self.send(200, t)
                return self.send(404, {"message": "tunnel not found"})
            if what == "user" and self.command == "POST" and isinstance(body, dict):
                uid = st.add_user(body["email"], body["password"], body["user_name"])
                return self.send(200, {"user_id": uid})
            if what.startswith("socket/") and self.command == "DELETE":
                if st.sockets.pop(what[len("socket/"):], None) is None:
                    return self.send(404, {"message": "socket not found"})
                return self.send(204)
        return self.send(404, {"message": "no such control endpoint"})

    do_GET = do_POST = do_DELETE = do_PUT = handle_any


def main():
    p = argparse.ArgumentParser(description="mysocket REST API emulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--user", action="append", metavar="EMAIL:PASSWORD:USER_NAME")
    p.add_argument("--token-lifetime", type=int, default=18000, metavar="SECONDS")
    p.add_argument("--relay-port-base", type=int, default=20000)
    p.add_argument("--tunnel-server", default="127.0.0.1")
    args = p.parse_args()

    # socketserver's listen backlog is 5: a daemon starting 200 bindings opens 200 API
    # connections at once, and the overflow waited in SYN retries until curl's 30 s timeout.
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.state = State(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("LISTENING %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

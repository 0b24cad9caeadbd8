"""Self-test of the API emulator and its harness: pytest-3 tests/emulator"""
import json
import os
import sys
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from emulator import Emulator  # noqa: E402


def call(api, method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["x-access-token"] = token
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw


@pytest.fixture
def api(tmp_path):
    with Emulator(tmp_path, token_lifetime=2, relay_port_base=24000) as e:
        yield e


def test_socket_tunnel_user_and_counts(api):
    tok = api.login()
    st, sock = call(api, "POST", "/socket", {"name": "web", "socket_type": "tcp",
                                            "protected_socket": False}, tok)
    assert st == 200 and sock["dnsname"].endswith(".edge.mysocket.test")
    assert len(sock["socket_tcp_ports"]) == 1 and sock["tunnels"] == []
    st, tun = call(api, "POST", "/socket/%s/tunnel" % sock["socket_id"], {}, tok)
    assert st == 200 and tun["local_port"] == 24000
    st, got = call(api, "GET", "/socket/%s" % sock["socket_id"], None, tok)
    assert got["tunnels"] == [tun]
    claims = json.loads(__import__("base64").urlsafe_b64decode(tok.split(".")[1] + "=="))
    st, user = call(api, "GET", "/user/%s" % claims["user_id"], None, tok)
    assert user["user_name"] == "ops" and set(user) == {"user_id", "user_name", "name", "email", "sshkey"}
    st, lst = call(api, "GET", "/connect", None, tok)
    assert [s["socket_id"] for s in lst] == [sock["socket_id"]]
    assert call(api, "DELETE", "/socket/%s" % sock["socket_id"], None, tok)[0] == 204
    assert call(api, "GET", "/socket/%s" % sock["socket_id"], None, tok)[0] == 404
    counts = api.counts()
    assert counts["POST /socket"] == 1 and counts["POST /socket/{id}/tunnel"] == 1
    assert counts["GET /socket/{id}"] == 2 and counts["POST /login"] == 1


def test_tokens_expire_refresh_and_revoke(api):
    tok = api.login()
    assert call(api, "POST", "/login", {"email": "ops@example.com", "password": "x"})[0] == 401
    st, new = call(api, "POST", "/login/refresh", None, tok)
    assert st == 200 and new["token"] != tok
    api.revoke()
    assert call(api, "GET", "/connect", None, new["token"])[0] == 401
    fresh = api.login()
    assert call(api, "GET", "/connect", None, fresh)[0] == 200
    time.sleep(2.2)
    assert call(api, "GET", "/connect", None, fresh) == (401, {"message": "Token has expired"})
    assert call(api, "GET", "/connect", None, "garbage")[0] == 401


def test_faults(api):
    tok = api.login()
    api.fault("GET /connect", "5xx", count=1)
    assert call(api, "GET", "/connect", None, tok)[0] == 503
    assert call(api, "GET", "/connect", None, tok)[0] == 200
    api.fault("*", "html", count=1)
    st, body = call(api, "GET", "/connect", None, tok)
    assert st == 502 and body.startswith(b"<html>")
    api.fault("GET /connect", "garbage")
    for _ in range(2):
        with pytest.raises(ValueError):
            call(api, "GET", "/connect", None, tok)
    api.clear_faults()
    api.fault("GET /connect", "slow", count=1, delay=0.5)
    t = time.monotonic()
    assert call(api, "GET", "/connect", None, tok)[0] == 200
    assert time.monotonic() - t >= 0.5
    api.fault("GET /connect", "404", count=1)
    assert call(api, "GET", "/connect", None, tok)[0] == 404
    assert api.state()["faults"] == []

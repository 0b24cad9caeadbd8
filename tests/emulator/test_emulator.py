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
    # A new tunnel has an empty tunnel_server (the seed docs), an address once connected.
    assert st == 200 and tun["local_port"] == 24000 and tun["tunnel_server"] == ""
    st, got = call(api, "GET", "/socket/%s" % sock["socket_id"], None, tok)
    assert got["tunnels"] == [tun]
    api.tunnel_connected(tun["tunnel_id"])
    st, got = call(api, "GET", "/socket/%s" % sock["socket_id"], None, tok)
    assert got["tunnels"] == [dict(tun, tunnel_server="127.0.0.1")]
    claims = json.loads(__import__("base64").urlsafe_b64decode(tok.split(".")[1] + "=="))
    st, user = call(api, "GET", "/user/%s" % claims["user_id"], None, tok)
    assert user["user_name"] == "ops" and set(user) == {"user_id", "user_name", "name", "email", "sshkey"}
    st, lst = call(api, "GET", "/connect", None, tok)
    assert [s["socket_id"] for s in lst] == [sock["socket_id"]]
    assert call(api, "DELETE", "/socket/%s" % sock["socket_id"], None, tok)[0] == 204
    assert call(api, "GET", "/socket/%s" % sock["socket_id"], None, tok)[0] == 404
    counts = api.counts()
    assert counts["POST /socket"] == 1 and counts["POST /socket/{id}/tunnel"] == 1
    assert counts["GET /socket/{id}"] == 3 and counts["POST /login"] == 1


def test_several_tunnels_under_one_socket(api):
    """GET /socket/{id} lists every tunnel of the socket, in creation order, each with a
    relay port of its own; a deleted tunnel leaves the list and its port is never reused;
    with null informational fields the ids and ports are still there."""
    tok = api.login()
    st, sock = call(api, "POST", "/socket", {"name": "web", "socket_type": "http"}, tok)
    sid = sock["socket_id"]
    made = [call(api, "POST", "/socket/%s/tunnel" % sid, {}, tok)[1] for _ in range(3)]
    assert [t["local_port"] for t in made] == [24000, 24001, 24002]
    api.configure(informational="null")
    st, got = call(api, "GET", "/socket/%s" % sid, None, tok)
    assert [(t["tunnel_id"], t["local_port"]) for t in got["tunnels"]] == \
        [(t["tunnel_id"], t["local_port"]) for t in made]
    assert all(t["tunnel_server"] is None for t in got["tunnels"]) and got["name"] is None
    st, lst = call(api, "GET", "/socket/%s/tunnel" % sid, None, tok)
    assert [t["tunnel_id"] for t in lst] == [t["tunnel_id"] for t in made]
    assert call(api, "DELETE", "/socket/%s/tunnel/%s" % (sid, made[1]["tunnel_id"]), None, tok)[0] == 204
    assert call(api, "GET", "/socket/%s/tunnel/%s" % (sid, made[1]["tunnel_id"]), None, tok)[0] == 404
    st, got = call(api, "GET", "/socket/%s" % sid, None, tok)
    assert [t["tunnel_id"] for t in got["tunnels"]] == [made[0]["tunnel_id"], made[2]["tunnel_id"]]
    st, again = call(api, "POST", "/socket/%s/tunnel" % sid, {}, tok)
    assert again["local_port"] == 24003
    assert api.counts()["DELETE /socket/{id}/tunnel/{tid}"] == 1


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


def claims_of(tok):
    return json.loads(__import__("base64").urlsafe_b64decode(tok.split(".")[1] + "=="))


def test_expired_tokens_and_a_skewed_clock(api):
    api.configure(token_mode="expired")
    c = claims_of(api.login())
    assert c["exp"] == c["iat"] - 3 * 3600
    api.configure(token_mode="normal", clock_offset=-3 * 3600, token_lifetime=3600)
    tok = api.login()
    c = claims_of(tok)
    assert abs(c["iat"] - (time.time() - 3 * 3600)) < 5 and c["exp"] - c["iat"] == 3600
    # Expired by our clock, valid by the API's own.
    assert call(api, "GET", "/connect", None, tok)[0] == 200


@pytest.mark.parametrize("mode", ["null", "missing", "odd"])
def test_informational_fields(api, mode):
    tok = api.login()
    api.configure(informational=mode)
    st, sock = call(api, "POST", "/socket", {"name": "web", "socket_type": "http"}, tok)
    st, tun = call(api, "POST", "/socket/%s/tunnel" % sock["socket_id"], {}, tok)
    user = call(api, "GET", "/user/%s" % claims_of(tok)["user_id"], None, tok)[1]
    for obj, keys in ((sock, ("name", "cloud_authentication_enabled")), (tun, ("tunnel_server",)),
                      (user, ("name", "email"))):
        for k in keys:
            if mode == "missing":
                assert k not in obj
            elif mode == "null":
                assert obj[k] is None
            else:
                assert not isinstance(obj[k], str) or k == "cloud_authentication_enabled"
    assert sock["socket_id"] and tun["local_port"] and user["user_name"] == "ops"


def test_echo_faults(api):
    tok = api.login()
    api.fault("POST /login", "echo", count=1)
    st, body = call(api, "POST", "/login", {"email": "ops@example.com", "password": "s3cret-pw"})
    assert st == 400 and "s3cret-pw" in body["message"]
    api.fault("GET /connect", "echo-token", count=1)
    st, body = call(api, "GET", "/connect", None, tok)
    assert st == 400 and tok in body["message"]

"""add / list / show / remove through mysocketctl (SPEC §6), human and --json."""
import subprocess

import pytest

from conftest import MYSOCKETCTL, wait_for

# SPEC §6: the keys every list --json object carries, with their JSON types.
STR, INT, NULL = (str,), (int,), (type(None),)
SPEC_KEYS = {
    "name": STR, "source": STR, "type": STR, "host": STR, "port": INT, "state": STR,
    "public_url": STR + NULL, "socket_id": STR + NULL, "tunnel_id": STR + NULL,
    "relay_port": INT + NULL, "connected_since": STR + NULL, "reconnects": INT,
    "connections_active": INT, "connections_total": INT, "bytes_in": INT, "bytes_out": INT,
    "last_error": STR + NULL, "next_attempt": STR + NULL,
    "cipher": STR + NULL, "mac": STR + NULL,      # negotiated with the relay while up
}
RFC3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"
NOT_UP = {"resolving", "connecting", "backoff"}


def check_binding_object(b):
    import re
    for k, types in SPEC_KEYS.items():
        assert k in b, f"key {k!r} missing from {b}"
        assert type(b[k]) in types, f"{k} = {b[k]!r}: expected {types}"
    for k in ("connected_since", "next_attempt"):
        if b[k] is not None:
            assert re.match(RFC3339, b[k]), f"{k} = {b[k]!r} is not RFC 3339"
    assert b["source"] in ("config", "runtime")
    assert b["state"] in {"resolving", "connecting", "up", "backoff", "failed", "removing"}


@pytest.fixture
def d(web_daemon):
    return web_daemon


def test_list_json_has_every_spec_key_with_the_right_type(d):
    d.ctl("add", "api", "--port", "8080", "--host", "::1", "--type", "tcp", "--remote-port", "9080")
    bs = d.json("list")
    assert isinstance(bs, list) and [b["name"] for b in bs] == ["web", "api"]
    for b in bs:
        check_binding_object(b)
    web, api = bs
    assert (web["source"], web["type"], web["host"], web["port"]) == ("config", "http", "127.0.0.1", 8000)
    assert (api["source"], api["type"], api["host"], api["port"]) == ("runtime", "tcp", "::1", 8080)
    # The stub/real engine has no relay here: never "up".
    assert web["state"] in NOT_UP | {"failed"} and web["connected_since"] is None
    # After a failed attempt the binding says why and when it retries.
    b = wait_for(lambda: (lambda x: x if x["state"] == "backoff" else None)(d.binding("web")),
                 timeout=20, what="web in backoff")
    check_binding_object(b)
    assert b["last_error"], b
    assert b["next_attempt"] is not None


def test_show_json_is_one_binding_object(d):
    b = d.json("show", "web")
    assert isinstance(b, dict)
    check_binding_object(b)
    assert b["name"] == "web" and b["source"] == "config"
    line = d.config.read_text().splitlines().index('[binding "web"]') + 1
    assert b["defined_at"] == f"{d.config}:{line}"


def test_show_human_lists_the_fields(d):
    p = d.ctl("show", "web")
    fields = dict(l.split(":", 1) for l in p.stdout.splitlines())
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    assert fields["name"] == "web"
    assert fields["source"] == "config"
    assert fields["port"] == "8000"
    assert fields["state"] in NOT_UP | {"failed"}


def test_show_unknown_exits_1(d):
    p = d.ctl("show", "nope", check=False)
    assert p.returncode == 1
    assert p.stderr == 'mysocketctl: no binding named "nope"\n'
    assert d.request({"v": 1, "cmd": "show", "name": "nope"})["code"] == "not-found"


def test_add_then_list_human_and_remove(d):
    p = d.ctl("add", "blog", "--port", "2368", "--remote-port", "9368")
    assert p.stdout.startswith("Added blog (state: ")
    assert p.stderr == ""
    lines = d.ctl("list").stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "TYPE", "LOCAL", "REMOTE", "SINCE", "CONNS", "RECONN", "ERROR"]
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    assert set(rows) == {"web", "blog"}
    assert rows["blog"][1] in NOT_UP
    assert rows["blog"][2:5] == ["http", "127.0.0.1:2368", "relay:9368"]
    # Columns are aligned: every row has its STATE where the header has it.
    col = lines[0].index("STATE")
    assert all(l[col - 2:col] == "  " and l[col] != " " for l in lines[1:])

    p = d.ctl("remove", "blog")
    assert p.stdout == "Removed blog.\n"
    assert [b["name"] for b in d.json("list")] == ["web"]
    assert not (d.state_dir / "bindings.d" / "blog.ini").exists()


def test_add_json_prints_the_new_binding(d):
    b = d.json("add", "j1", "--port", "81", "--remote-port", "9081", "--type", "https", "--name", "J one")
    check_binding_object(b)
    assert (b["name"], b["source"], b["type"], b["port"], b["relay_port"]) == ("j1", "runtime", "https", 81, 9081)
    assert b["state"] in NOT_UP


def test_remove_json(d):
    d.ctl("add", "r1", "--port", "81", "--remote-port", "9081")
    assert d.json("remove", "r1") == {"removed": "r1"}


def test_aliases_rm_and_ls(d):
    d.ctl("add", "tmp", "--port", "81", "--remote-port", "9081")
    assert "tmp" in d.ctl("ls").stdout
    assert [b["name"] for b in d.json("ls")] == ["web", "tmp"]
    assert d.ctl("rm", "tmp").stdout == "Removed tmp.\n"
    assert "tmp" not in d.ctl("ls").stdout


def test_list_empty(daemon):
    daemon.write_config()
    daemon.start()
    assert daemon.ctl("list").stdout == "No bindings.\n"
    assert daemon.json("list") == []


def test_duplicate_add_exits_1_with_code_exists(d):
    d.ctl("add", "dup", "--port", "81", "--remote-port", "9081")
    p = d.ctl("add", "dup", "--port", "82", "--remote-port", "9082", check=False)
    assert p.returncode == 1
    assert p.stderr == 'mysocketctl: binding "dup" already exists (added at run time)\n'
    assert d.binding("dup")["port"] == 81, "a refused add must not change the binding"
    r = d.request({"v": 1, "cmd": "add", "binding": {"name": "dup", "port": 83, "remote_port": 9083}})
    assert r["ok"] is False and r["code"] == "exists"
    # A name defined in the config: the error says where.
    p = d.ctl("add", "web", "--port", "82", "--remote-port", "9082", check=False)
    assert p.returncode == 1
    assert "already exists" in p.stderr and f"{d.config}:" in p.stderr


@pytest.mark.parametrize("args, message", [
    (["bad name", "--port", "80", "--remote-port", "9"], '"bad name" is not a valid binding name'),
    (["-leading", "--port", "80"], None),    # getopt: an unknown option
    (["x" * 64, "--port", "80", "--remote-port", "9"], "is not a valid binding name"),
    (["ok", "--port", "0", "--remote-port", "9"], '--port: "0" is not a port (1-65535)'),
    (["ok", "--port", "65536", "--remote-port", "9"], '--port: "65536" is not a port (1-65535)'),
    (["ok", "--port", "eighty", "--remote-port", "9"], '--port: "eighty" is not a port'),
    (["ok", "--port", "80", "--type", "ftp", "--remote-port", "9"], '--type: "ftp" is not one of http, https, tcp, tls'),
    (["ok", "--port", "80", "--remote-port", "x"], '--remote-port: "x" is not a port'),
    (["ok", "--remote-port", "9"], "missing --port PORT"),
    (["--port", "80"], "missing NAME"),
    (["a", "b", "--port", "80"], 'unexpected argument "b"'),
    (["ok", "--port", "80", "--wait=0", "--remote-port", "9"], '--wait: "0" is not a number of seconds'),
    (["ok", "--port", "80", "--frobnicate"], "unrecognized option"),
])
def test_invalid_add_usage_errors_exit_2(d, args, message):
    p = d.ctl("add", *args, check=False)
    assert p.returncode == 2, p.stderr
    if message:
        assert message in p.stderr
    assert "Try 'mysocketctl add --help'." in p.stderr
    assert [b["name"] for b in d.json("list")] == ["web"]
    assert list((d.state_dir / "bindings.d").iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["ok", "--port", "80", "--remote-port", "9", "--protected"], '[binding "ok"] protected: needs username and password'),
    (["ok", "--port", "80", "--remote-port", "9", "--username", "u"], '[binding "ok"] username: only used with protected = yes'),
    (["ok", "--port", "80", "--remote-port", "9", "--socket-id", "abc"], '[binding "ok"] socket_id: only in API mode'),
    (["ok", "--port", "80", "--remote-port", "9", "--host", ""], "host"),
])
def test_invalid_add_refused_by_the_daemon_exit_1(d, args, message):
    p = d.ctl("add", *args, check=False)
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith("mysocketctl: ") and message in p.stderr, p.stderr
    assert [b["name"] for b in d.json("list")] == ["web"]
    assert list((d.state_dir / "bindings.d").iterdir()) == []


def test_invalid_add_over_the_socket_has_code_invalid(d):
    for binding_obj in ({"name": "ok", "port": 80}, {"name": "bad name", "port": 80, "remote_port": 9},
                        {"name": "ok", "port": 0, "remote_port": 9}, {"name": "ok", "port": "80", "remote_port": 9},
                        {"name": "ok", "port": 80, "remote_port": 9, "type": "ftp"},
                        {"name": "ok", "port": 80, "remote_port": 9, "remoteport": 9}):
        r = d.request({"v": 1, "cmd": "add", "binding": binding_obj})
        assert r["ok"] is False and r["code"] == "invalid", (binding_obj, r)
        assert isinstance(r["error"], str) and r["error"]
    assert [b["name"] for b in d.json("list")] == ["web"]


def test_remove_unknown_exits_1(d):
    p = d.ctl("remove", "ghost", check=False)
    assert p.returncode == 1
    assert p.stderr == 'mysocketctl: no binding named "ghost"\n'
    assert d.request({"v": 1, "cmd": "remove", "name": "ghost"})["code"] == "not-found"


def test_remove_config_binding_exits_1_naming_file_and_line(d):
    line = d.config.read_text().splitlines().index('[binding "web"]') + 1
    p = d.ctl("remove", "web", check=False)
    assert p.returncode == 1
    assert f"{d.config}:{line}" in p.stderr, p.stderr
    assert p.stderr.startswith('mysocketctl: binding "web" is defined in ')
    assert d.request({"v": 1, "cmd": "remove", "name": "web"})["code"] == "config-owned"
    assert [b["name"] for b in d.json("list")] == ["web"]


@pytest.mark.parametrize("cmd", ["add", "remove", "rm", "list", "ls", "show", "status", "reload", "logs",
                                 "metrics"])
def test_help_for_each_command_exits_0(cmd, tmp_path):
    # No daemon needed: --help never touches the socket.
    p = subprocess.run([str(MYSOCKETCTL), "-s", str(tmp_path / "none.sock"), cmd, "--help"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Usage: mysocketctl [-s SOCKET] [--json] ")
    assert p.stderr == ""


def test_global_help_and_version(tmp_path):
    p = subprocess.run([str(MYSOCKETCTL), "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0
    for c in ("add", "remove", "list", "show", "status", "reload"):
        assert f"\n  {c} " in p.stdout
    p = subprocess.run([str(MYSOCKETCTL), "--version"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0
    import re
    assert re.fullmatch(r"mysocketctl \d+\.\d+(\.\d+)?\S*\n", p.stdout), p.stdout


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["--bogus", "list"], ["list", "extra"],
                                  ["show"], ["remove"], ["status", "x"], ["list", "--bogus"]])
def test_usage_errors_exit_2(argv, tmp_path):
    p = subprocess.run([str(MYSOCKETCTL), "-s", str(tmp_path / "none.sock")] + argv,
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 2, (argv, p.stderr)
    assert "--help" in p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("cmd", [["list"], ["status"], ["show", "x"], ["reload"],
                                 ["add", "x", "--port", "1", "--remote-port", "2"], ["remove", "x"]])
def test_missing_socket_exits_69_naming_the_path(cmd, tmp_path):
    sock = tmp_path / "no" / "such.sock"
    p = subprocess.run([str(MYSOCKETCTL), "-s", str(sock)] + cmd, capture_output=True, text=True, timeout=10)
    assert p.returncode == 69, p.stderr
    assert str(sock) in p.stderr
    assert "systemctl status mysocketd" in p.stderr


def test_socket_from_environment(d, tmp_path):
    import os
    env = dict(os.environ, MYSOCKETD_SOCKET=str(d.socket))
    p = subprocess.run([str(MYSOCKETCTL), "list"], capture_output=True, text=True, timeout=10, env=env)
    assert p.returncode == 0 and "web" in p.stdout
    env["MYSOCKETD_SOCKET"] = str(tmp_path / "other.sock")
    p = subprocess.run([str(MYSOCKETCTL), "list"], capture_output=True, text=True, timeout=10, env=env)
    assert p.returncode == 69 and str(tmp_path / "other.sock") in p.stderr


def test_stale_socket_file_without_daemon_exits_69(d):
    d.stop()
    import socket
    # A socket file nobody listens on (left by a crash).
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(d.socket))
    s.close()
    p = d.ctl("list", check=False)
    assert p.returncode == 69 and str(d.socket) in p.stderr


def test_status(d):
    st = d.json("status")
    assert st["mode"] == "direct"
    assert st["bindings"] == 1 and st["up"] == 0
    assert st["pid"] == d.proc.pid
    assert st["control_socket"] == str(d.socket)
    assert isinstance(st["version"], str) and st["version"]

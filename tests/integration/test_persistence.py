"""Runtime bindings persist (issue 2 item 7): written before the reply, kept across
restarts and kill -9."""
import os
import stat
import time

import pytest


@pytest.fixture
def d(web_daemon):
    return web_daemon


def test_added_binding_file_exists_with_mode_0600_right_after_the_reply(d):
    r = d.request({"v": 1, "cmd": "add", "binding": {"name": "blog", "port": 2368, "remote_port": 9368,
                                                      "type": "https", "display_name": "my blog"}})
    # Checked before anything else happens: the reply means it is on disk.
    f = d.state_dir / "bindings.d" / "blog.ini"
    st = os.stat(f)
    assert r["ok"] is True, r
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    text = f.read_text()
    assert '[binding "blog"]' in text and "port = 2368" in text and "remote_port = 9368" in text
    assert "type = https" in text and "name = my blog" in text
    # No temp file left behind in the directory.
    assert sorted(p.name for p in f.parent.iterdir()) == ["blog.ini"]
    assert stat.S_IMODE(os.stat(d.state_dir).st_mode) & 0o077 == 0


def test_runtime_binding_survives_restart_with_its_settings(d):
    d.ctl("add", "blog", "--port", "2368", "--host", "::1", "--type", "tcp", "--remote-port", "9368",
          "--name", "the blog")
    before = d.binding("blog")
    assert d.stop() == 0
    d.start()
    after = d.binding("blog")
    assert after["source"] == "runtime"
    for k in ("type", "host", "port", "remote_port", "display_name", "relay_port"):
        assert after[k] == before[k], k
    assert (after["type"], after["host"], after["port"], after["display_name"]) == ("tcp", "::1", 2368, "the blog")
    assert [b["name"] for b in d.json("list")] == ["web", "blog"]
    # Still a runtime binding: it can be removed, and the removal persists too.
    d.ctl("remove", "blog")
    assert not (d.state_dir / "bindings.d" / "blog.ini").exists()
    d.stop()
    d.start()
    assert [b["name"] for b in d.json("list")] == ["web"]


def test_protected_password_is_stored_0600_but_never_shown(tmp_path, daemon):
    # Direct mode refuses `protected`, so use a config with an [api] section that is never contacted.
    pw = tmp_path / "password"
    pw.write_text("secret\n")
    pw.chmod(0o600)
    daemon.write_config(api={"url": "http://127.0.0.1:1", "email": "a@example.com", "password_file": str(pw)})
    daemon.start()
    daemon.ctl("add", "priv", "--port", "80", "--protected", "--username", "u", "--password", "hunter2x")
    f = daemon.state_dir / "bindings.d" / "priv.ini"
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert "hunter2x" not in daemon.ctl("show", "priv").stdout
    assert "hunter2x" not in daemon.ctl("list", json_out=True).stdout
    daemon.stop()
    daemon.start()
    b = daemon.binding("priv")
    assert b["protected"] is True and b["username"] == "u" and b["source"] == "runtime"
    assert "hunter2x" not in daemon.log_text()


def test_kill9_right_after_an_acknowledged_add_loses_nothing(d):
    """Round: daemon running (start waits for the socket), every binding acknowledged so far
    must be there; add a new one over the socket; kill -9 the instant the reply arrives."""
    rounds, losses, acked = 100, 0, []
    t0 = time.monotonic()
    lost_names = []
    for i in range(rounds):
        if i > 0:
            d.start()
        present = {b["name"] for b in d.json("list")}
        missing = [n for n in acked if n not in present]
        losses += len(missing)
        lost_names += missing
        acked = [n for n in acked if n in present]
        name = f"k{i:03d}"
        r = d.request({"v": 1, "cmd": "add", "binding": {"name": name, "port": 1000 + i, "remote_port": 20000 + i}})
        d.kill9()
        assert r is not None and r["ok"] is True, r
        acked.append(name)
    d.start()
    present = {b["name"]: b for b in d.json("list")}
    missing = [n for n in acked if n not in present]
    losses += len(missing)
    lost_names += missing
    elapsed = time.monotonic() - t0
    print(f"\nkill -9 after acknowledged add: {rounds} rounds, {losses} lost {lost_names}, {elapsed:.1f} s")
    assert losses == 0, lost_names
    assert len(present) == rounds + 1
    for i in range(rounds):
        b = present[f"k{i:03d}"]
        assert (b["source"], b["port"], b["remote_port"]) == ("runtime", 1000 + i, 20000 + i)
    # No half-written files or temp files left by the kills.
    files = sorted(p.name for p in (d.state_dir / "bindings.d").iterdir())
    assert files == sorted(f"k{i:03d}.ini" for i in range(rounds)), files
    assert "runtime binding skipped" not in d.log_text()


def test_kill9_right_after_an_acknowledged_remove_keeps_it_removed(d):
    for i in range(10):
        d.ctl("add", f"r{i}", "--port", str(100 + i), "--remote-port", str(9100 + i))
    for i in range(10):
        r = d.request({"v": 1, "cmd": "remove", "name": f"r{i}"})
        d.kill9()
        assert r["ok"] is True, r
        d.start()
        names = {b["name"] for b in d.json("list")}
        assert f"r{i}" not in names
        assert {f"r{j}" for j in range(i + 1, 10)} <= names


def test_a_corrupt_runtime_file_is_skipped_with_a_warning_not_fatal(d):
    d.stop()
    (d.state_dir / "bindings.d" / "junk.ini").write_text('[binding "junk"]\nport = nope\n')
    d.start()
    assert [b["name"] for b in d.json("list")] == ["web"]
    assert "junk.ini" in d.log_text()


@pytest.mark.parametrize("field, value", [
    ("display_name", "#not a comment"), ("display_name", "a = b"), ("display_name", '"quoted"'),
    ("display_name", "x;y"), ("display_name", "[binding \"evil\"]"), ("display_name", "café ☕"),
    ("host", "::1"), ("host", "my-host.example"),
])
def test_values_with_ini_syntax_round_trip_through_the_state_file(d, field, value):
    r = d.request({"v": 1, "cmd": "add", "binding": {"name": "rt", "port": 81, "remote_port": 9081, field: value}})
    assert r["ok"] is True, r
    d.stop()
    d.start()
    b = d.binding("rt")
    assert b[field] == value
    assert [x["name"] for x in d.json("list")] == ["web", "rt"], "a value must not inject a binding"


@pytest.mark.parametrize("field, value", [
    ("host", 'x\n[binding "evil"]\nport = 5'), ("display_name", "x\ry"), ("display_name", "tab\there"),
    ("display_name", "a ; comment"), ("display_name", " padded "), ("host", "h" * 200),
])
def test_values_the_ini_file_cannot_hold_are_refused(d, field, value):
    r = d.request({"v": 1, "cmd": "add", "binding": {"name": "rt", "port": 81, "remote_port": 9081, field: value}})
    assert r["ok"] is False and r["code"] == "invalid", r
    assert list((d.state_dir / "bindings.d").iterdir()) == []
    d.stop()
    d.start()
    assert [x["name"] for x in d.json("list")] == ["web"]

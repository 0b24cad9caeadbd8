"""Reload (SPEC §4, §5): SIGHUP and `mysocketctl reload` apply the difference; a bad new
config leaves the running one in force."""
import datetime
import os
import signal

import pytest

from conftest import wait_for

# Long backoff: once a binding waits, its next attempt is a fixed instant we can compare
# before and after a reload. A restarted binding gets a new attempt (and a new instant).
LONG = {"initial": "86400", "max": "86400", "stable_after": "60"}


def binding(name, port, remote_port, extra=""):
    return f'[binding "{name}"]\nport = {port}\nremote_port = {remote_port}\n{extra}\n'


OLD = binding("keep", 8001, 9001) + binding("chg", 8002, 9002) + binding("gone", 8003, 9003)
NEW = binding("keep", 8001, 9001) + binding("chg", 8012, 9002) + binding("new", 8004, 9004)


def parse_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def settled(d, name):
    """Waits until `name` waits in backoff with its next attempt well in the future."""
    def ok():
        b = d.binding(name)
        if b["state"] != "backoff" or not b["next_attempt"]:
            return None
        left = (parse_time(b["next_attempt"]) - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
        return b if left > 30 else None
    return wait_for(ok, timeout=60, interval=0.2, what=f"{name} to wait in backoff")


def events(d):
    return d.json("logs", "-n", "1000")


def events_after(d, before):
    """The events logged since the snapshot `before` (a list from events())."""
    evs = events(d)
    assert evs[:len(before)] == before, "the event log wrapped: raise -n or log less"
    return evs[len(before):]


@pytest.fixture
def d(daemon):
    daemon.make_identity()
    daemon.write_config(OLD, backoff=LONG)
    daemon.start()
    daemon.ctl("add", "rt", "--port", "8005", "--remote-port", "9005")
    for n in ("keep", "chg", "gone", "rt"):
        settled(daemon, n)
    return daemon


def check_applied(d, keep_before, rt_before, evs_before):
    bs = {b["name"]: b for b in d.json("list")}
    assert set(bs) == {"keep", "chg", "new", "rt"}, list(bs)
    # Untouched: the same object, still waiting for the same attempt, same counters.
    for before in (keep_before, rt_before):
        now = bs[before["name"]]
        for k in ("state", "next_attempt", "reconnects", "last_error", "connected_since", "port", "source"):
            assert now[k] == before[k], (before["name"], k, before[k], now[k])
    assert bs["chg"]["port"] == 8012 and bs["chg"]["source"] == "config"
    assert bs["new"]["port"] == 8004 and bs["new"]["source"] == "config"
    assert bs["new"]["state"] != "up" and bs["chg"]["state"] != "up"
    # The changed binding was restarted (a new attempt), the untouched ones were not.
    def restarted():
        evs = events_after(d, evs_before)
        return evs if any(e["binding"] == "chg" and e["event"] == "state"
                          and "-> connecting" in e["message"] for e in evs) \
            and any(e["binding"] == "new" for e in evs) else None
    evs = wait_for(restarted, timeout=10, what="chg to restart and new to start")
    assert not [e for e in evs if e["binding"] in ("keep", "rt")], evs


def test_reload_command_applies_the_difference(d):
    keep, rt, evs = d.binding("keep"), d.binding("rt"), events(d)
    d.config.write_text(d.base_config(backoff=LONG) + NEW)
    p = d.ctl("reload")
    assert p.stderr == ""
    lines = p.stdout.splitlines()
    assert lines[0] == "Configuration reloaded."
    got = {l.split(":")[0].strip(): sorted(x.strip() for x in l.split(":", 1)[1].split(",")) for l in lines[1:]}
    assert got == {"added": ["new"], "removed": ["gone"], "changed": ["chg"], "unchanged": ["keep", "rt"]}, p.stdout
    check_applied(d, keep, rt, evs)
    assert "gone" not in {b["name"] for b in d.json("list")}


def test_reload_json(d):
    keep, rt, evs = d.binding("keep"), d.binding("rt"), events(d)
    d.config.write_text(d.base_config(backoff=LONG) + NEW)
    r = d.json("reload")
    assert sorted(r["reload"]["added"]) == ["new"]
    assert sorted(r["reload"]["removed"]) == ["gone"]
    assert sorted(r["reload"]["changed"]) == ["chg"]
    assert sorted(r["reload"]["unchanged"]) == ["keep", "rt"]
    assert r["warnings"] == []
    check_applied(d, keep, rt, evs)


def test_sighup_does_the_same(d):
    keep, rt, evs = d.binding("keep"), d.binding("rt"), events(d)
    d.config.write_text(d.base_config(backoff=LONG) + NEW)
    os.kill(d.proc.pid, signal.SIGHUP)
    wait_for(lambda: {b["name"] for b in d.json("list")} == {"keep", "chg", "new", "rt"},
             timeout=10, what="SIGHUP reload to apply")
    check_applied(d, keep, rt, evs)
    assert "reloaded: 1 added, 1 removed, 1 changed, 2 unchanged" in d.log_text()
    assert d.proc.poll() is None


def test_reload_with_nothing_changed_keeps_everything(d):
    before = d.json("list")
    r = d.json("reload")
    assert sorted(r["reload"]["unchanged"]) == ["chg", "gone", "keep", "rt"]
    assert (r["reload"]["added"], r["reload"]["removed"], r["reload"]["changed"]) == ([], [], [])
    assert d.json("list") == before


BAD = binding("keep", 8001, 9001) + binding("chg", "80x", 9002) + binding("new", 8004, 9004, "colour = red")


def test_bad_config_reload_exits_1_lists_errors_and_changes_nothing(d):
    before = d.json("list")
    d.config.write_text(d.base_config(backoff=LONG) + BAD)
    lines = d.config.read_text().splitlines()
    port_line = lines.index("port = 80x") + 1
    colour_line = lines.index("colour = red") + 1
    p = d.ctl("reload", check=False)
    assert p.returncode == 1
    assert p.stdout == ""
    assert "config not reloaded: 2 errors; the running config stays in force" in p.stderr, p.stderr
    assert f'{d.config}:{port_line}: [binding "chg"] port: "80x" is not a port (1-65535)' in p.stderr
    assert f'{d.config}:{colour_line}: [binding "new"] colour: unknown key' in p.stderr
    r = d.request({"v": 1, "cmd": "reload"})
    assert r["ok"] is False and r["code"] == "invalid" and len(r["errors"]) == 2
    # The running bindings are all still there, untouched.
    assert d.json("list") == before
    st = d.json("status")
    assert st["bindings"] == 4
    # The daemon still reloads a good config afterwards.
    d.config.write_text(d.base_config(backoff=LONG) + NEW)
    assert sorted(d.json("reload")["reload"]["changed"]) == ["chg"]


def test_bad_config_on_sighup_keeps_running(d):
    before = d.json("list")
    d.config.write_text(d.base_config(backoff=LONG) + BAD)
    os.kill(d.proc.pid, signal.SIGHUP)
    wait_for(lambda: "config not reloaded" in d.log_text(), timeout=10, what="the reload error in the log")
    assert '[binding "chg"] port: "80x" is not a port' in d.log_text()
    assert d.proc.poll() is None
    assert d.json("list") == before
    assert d.ctl("status").returncode == 0


def test_reload_sees_a_new_dropin_and_a_removed_one(d):
    dd = d.root / "conf.d"
    dd.mkdir()
    (dd / "10-x.ini").write_text(binding("drop", 8100, 9100))
    r = d.json("reload")["reload"]
    assert r["added"] == ["drop"] and r["removed"] == [] and r["changed"] == []
    (dd / "10-x.ini").unlink()
    r = d.json("reload")["reload"]
    assert r["removed"] == ["drop"] and r["added"] == []
    assert "drop" not in {b["name"] for b in d.json("list")}

"""What mysocketctl tells the user is what is true (issue 13 item 14): logs of an unknown
binding, add/connect without --remote-port in direct mode, reload's changed vs retried,
status' uptime."""
import re

from conftest import binding


def test_logs_of_an_unknown_binding_exits_1(daemon):
    daemon.write_config(binding("web", 8000, 9000))
    daemon.start()
    for args in (["logs", "nope"], ["logs", "-f", "nope"]):
        p = daemon.ctl(*args, check=False, timeout=10)
        assert p.returncode == 1, (args, p.returncode, p.stdout, p.stderr)
        assert p.stderr.strip() == 'mysocketctl: no binding named "nope"', p.stderr
    assert daemon.ctl("logs", "web").returncode == 0
    # A binding removed a moment ago still has its story to tell.
    daemon.ctl("add", "rt", "--port", "8001", "--remote-port", "9001")
    daemon.ctl("remove", "rt")
    p = daemon.ctl("logs", "rt")
    assert "removed" in p.stdout


def test_add_and_connect_without_remote_port_in_direct_mode_are_usage_errors(daemon):
    daemon.write_config(binding("web", 8000, 9000))
    daemon.start()
    for args in (["add", "x", "--port", "8001"], ["connect", "--port", "8001"]):
        p = daemon.ctl(*args, check=False, timeout=10)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert f"mysocketctl {args[0]}: missing --remote-port PORT: the daemon runs in direct mode" in p.stderr
        assert "remote_port" not in p.stderr     # not the INI's key
        assert f"Try 'mysocketctl {args[0]} --help'." in p.stderr
    assert [b["name"] for b in daemon.json("list")] == ["web"]


def test_reload_reports_a_retry_of_a_failed_binding_as_such(daemon):
    # No key file: the binding fails for good, and a reload tries it again.
    daemon.write_config(binding("web", 8000, 9000) + binding("ok", 8001, 9001),
                        ssh={"identity_file": str(daemon.root / "missing_key")})
    daemon.start()
    daemon.wait_state("web", "failed")
    daemon.wait_state("ok", "failed")
    r = daemon.json("reload")["reload"]
    assert r["changed"] == [] and sorted(r["retried"]) == ["ok", "web"] and r["unchanged"] == [], r
    daemon.wait_state("web", "failed")
    daemon.wait_state("ok", "failed")
    daemon.config.write_text(daemon.config.read_text().replace("port = 8000", "port = 8002"))
    p = daemon.ctl("reload")
    assert "  changed:   web" in p.stdout and "  retried:   ok" in p.stdout, p.stdout
    assert "reloaded: 0 added, 0 removed, 1 changed, 0 unchanged, 1 failed ones retried" in daemon.log_text()


def test_status_prints_uptime_once(daemon):
    daemon.write_config()
    daemon.start()
    out = daemon.ctl("status").stdout
    lines = [l for l in out.splitlines() if l.startswith("uptime") or re.search(r"\(\d+ s\)", l)]
    assert len(lines) == 1 and re.fullmatch(r"uptime:\s+\d+[smhd]\S*", lines[0]), out
    assert isinstance(daemon.json("status")["uptime"], (int, float))

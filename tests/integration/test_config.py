"""Config validation (SPEC §3): --check-config, start-up with a bad config, conf.d drop-ins."""
import re
import subprocess

from conftest import MYSOCKETD, Daemon


def check_config(path):
    return subprocess.run([str(MYSOCKETD), "--check-config", "-c", str(path)],
                          capture_output=True, text=True, timeout=30)


def binding(name, port, remote_port, extra=""):
    return f'[binding "{name}"]\nport = {port}\nremote_port = {remote_port}\n{extra}\n'


def error_lines(p):
    """The error lines mysocketd printed (stdout and stderr), without the summary line."""
    return [l for l in (p.stdout + p.stderr).splitlines() if l and not re.search(r": \d+ errors?$", l)]


def line_of(path, needle):
    for i, l in enumerate(path.read_text().splitlines(), 1):
        if needle in l:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def test_good_config_exits_0_and_prints_nothing(tmp_path):
    d = Daemon(tmp_path)
    d.write_config(binding("web", 8000, 9000) + binding("db", 5432, 9001, "type = tcp\nhost = ::1"))
    p = check_config(d.config)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout == "" and p.stderr == ""


def test_bad_value_names_file_line_section_key(tmp_path):
    d = Daemon(tmp_path)
    d.write_config(binding("web", "80x", 9000))
    p = check_config(d.config)
    assert p.returncode == 78
    n = line_of(d.config, "port = 80x")
    assert f'{d.config}:{n}: [binding "web"] port: "80x" is not a port (1-65535)' in p.stderr
    # Only that one error: a bad value is not reported again as "missing".
    assert error_lines(p) == [f'{d.config}:{n}: [binding "web"] port: "80x" is not a port (1-65535)'], p.stderr
    assert p.stderr.rstrip().endswith(f"{d.config}: 1 error")


def test_every_error_is_listed_not_only_the_first(tmp_path):
    d = Daemon(tmp_path)
    d.write_config(binding("web", 8000, 9000, "colour = blue")
                   + binding("db", 5432, 70000)
                   + binding("bad name!", 1, 2)
                   + '[frobnicate]\nx = 1\n',
                   backoff={"initial": "zero"}, log_level="loud")
    p = check_config(d.config)
    assert p.returncode == 78
    cfg = str(d.config)
    expect = [
        (line_of(d.config, "log_level = loud"), "[daemon] log_level:", '"loud" is not a log level'),
        (line_of(d.config, "initial = zero"), "[backoff] initial:", '"zero"'),
        (line_of(d.config, "colour = blue"), '[binding "web"] colour:', "unknown key"),
        (line_of(d.config, "remote_port = 70000"), '[binding "db"] remote_port:', '"70000" is not a port'),
        (line_of(d.config, "[frobnicate]"), "[frobnicate]", "unknown section"),
    ]
    for n, where, what in expect:
        hits = [l for l in error_lines(p) if l.startswith(f"{cfg}:{n}: {where}") and what in l]
        assert hits, f"no error for line {n} {where} {what!r} in:\n{p.stderr}"
    assert any("bad name!" in l and f"{cfg}:{line_of(d.config, 'bad name!')}:" in l for l in error_lines(p)), p.stderr
    m = re.search(r": (\d+) errors$", p.stderr.rstrip())
    assert m and int(m.group(1)) >= 6 and int(m.group(1)) == len(error_lines(p)), p.stderr


def test_duplicate_binding_name_is_an_error(tmp_path):
    d = Daemon(tmp_path)
    d.write_config(binding("web", 8000, 9000) + binding("web", 8001, 9001))
    p = check_config(d.config)
    assert p.returncode == 78
    second = [i for i, l in enumerate(d.config.read_text().splitlines(), 1) if l == '[binding "web"]'][1]
    assert any(l.startswith(f"{d.config}:{second}:") and "web" in l and "duplicate" in l.lower()
               for l in error_lines(p)), p.stderr


def test_direct_mode_binding_without_remote_port(tmp_path):
    d = Daemon(tmp_path)
    d.write_config('[binding "web"]\nport = 8000\n')
    p = check_config(d.config)
    assert p.returncode == 78
    assert f'{d.config}:{line_of(d.config, "[binding")}: [binding "web"] remote_port: missing' in p.stderr


def test_start_with_bad_config_exits_78_and_prints_errors(tmp_path):
    d = Daemon(tmp_path)
    d.write_config(binding("web", "80x", 9000) + binding("db", 5432, 9001, "colour = red"))
    p = subprocess.run([str(MYSOCKETD), "-c", str(d.config)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 78
    out = p.stdout + p.stderr
    assert f'{d.config}:{line_of(d.config, "80x")}: [binding "web"] port: "80x" is not a port (1-65535)' in out
    assert f'{d.config}:{line_of(d.config, "colour")}: [binding "db"] colour: unknown key' in out
    assert not d.socket.exists(), "a daemon refusing its config must not open its control socket"


def test_missing_config_file_exits_78(tmp_path):
    p = check_config(tmp_path / "nope.ini")
    assert p.returncode == 78
    assert str(tmp_path / "nope.ini") in p.stderr


def test_conf_d_dropins_are_read_in_name_order(daemon):
    daemon.write_config(binding("web", 8000, 9000))
    dropins = daemon.root / "conf.d"
    dropins.mkdir()
    (dropins / "20-b.ini").write_text(binding("second", 8002, 9002))
    (dropins / "10-a.ini").write_text(binding("first", 8001, 9001))
    (dropins / "README").write_text("not an ini file: ignored\n")
    p = check_config(daemon.config)
    assert p.returncode == 0, p.stderr
    daemon.start()
    bs = {b["name"]: b for b in daemon.json("list")}
    assert set(bs) == {"web", "first", "second"}
    assert bs["first"]["source"] == "config" and bs["first"]["port"] == 8001
    assert bs["first"]["defined_at"] == f"{dropins / '10-a.ini'}:1"
    assert [b["name"] for b in daemon.json("list")] == ["web", "first", "second"]


def test_conf_d_dropin_error_names_the_dropin(tmp_path):
    d = Daemon(tmp_path)
    d.write_config(binding("web", 8000, 9000))
    (tmp_path / "conf.d").mkdir()
    f = tmp_path / "conf.d" / "50-x.ini"
    f.write_text('[binding "x"]\nport = 1\nremote_port = nope\n')
    p = check_config(d.config)
    assert p.returncode == 78
    assert f'{f}:3: [binding "x"] remote_port: "nope" is not a port (1-65535)' in p.stderr


def test_dropin_duplicating_a_main_binding_is_an_error(tmp_path):
    d = Daemon(tmp_path)
    d.write_config(binding("web", 8000, 9000))
    (tmp_path / "conf.d").mkdir()
    f = tmp_path / "conf.d" / "50-x.ini"
    f.write_text(binding("web", 8001, 9001))
    p = check_config(d.config)
    assert p.returncode == 78
    assert any(l.startswith(f"{f}:1:") and "web" in l for l in error_lines(p)), p.stderr

"""Files the daemon reads, as a hostile environment or a careless admin leaves them (issue 13
items 4, 5, 7, 9): FIFOs and devices where a file should be, a state dir someone else owns,
NUL bytes in an INI line, hosts that can never work, two bindings on one relay port."""
import os
import re
import subprocess
import time

from conftest import MYSOCKETD, Daemon, binding, wait_for


def check_config(path, timeout=10):
    return subprocess.run([str(MYSOCKETD), "--check-config", "-c", str(path)],
                          capture_output=True, text=True, timeout=timeout)


def direct(d, bindings=""):
    d.write_config(bindings)
    return d


# ---------------------------------------------------------------- item 4: checked reads

def test_fifo_in_conf_d_is_refused_not_waited_on(tmp_path):
    d = direct(Daemon(tmp_path), binding("web", 8000, 9000))
    (tmp_path / "conf.d").mkdir()
    os.mkfifo(tmp_path / "conf.d" / "10-fifo.ini")
    t = time.monotonic()
    p = check_config(d.config)
    assert time.monotonic() - t < 5
    assert p.returncode == 78, p.stderr
    assert f"{tmp_path}/conf.d/10-fifo.ini: is a FIFO, not a regular file" in p.stderr


def test_fifo_in_conf_d_does_not_freeze_a_running_daemon_on_reload(daemon):
    direct(daemon, binding("web", 8000, 9000)).start()
    (daemon.root / "conf.d").mkdir()
    os.mkfifo(daemon.root / "conf.d" / "10-fifo.ini")
    p = daemon.ctl("reload", check=False, timeout=5)
    assert p.returncode != 0
    assert "is a FIFO, not a regular file" in p.stdout + p.stderr
    t = time.monotonic()
    daemon.ctl("status", timeout=5)
    assert time.monotonic() - t < 2


def test_dev_zero_as_a_dropin_is_refused(tmp_path):
    d = direct(Daemon(tmp_path), binding("web", 8000, 9000))
    (tmp_path / "conf.d").mkdir()
    os.symlink("/dev/zero", tmp_path / "conf.d" / "10-zero.ini")
    p = check_config(d.config)
    assert p.returncode == 78, p.stderr
    assert f"{tmp_path}/conf.d/10-zero.ini: is a character device, not a regular file" in p.stderr


def test_config_larger_than_1_mib_is_refused(tmp_path):
    d = direct(Daemon(tmp_path), binding("web", 8000, 9000))
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-big.ini").write_text("; padding\n" * 110000)
    p = check_config(d.config)
    assert p.returncode == 78, p.stderr
    assert re.search(r"10-big\.ini: is larger than 1024 KiB", p.stderr), p.stderr


def test_fifo_as_password_file_does_not_block_start_up(tmp_path):
    d = Daemon(tmp_path)
    os.mkfifo(tmp_path / "password")
    d.write_config(api={"url": "http://127.0.0.1:1", "email": "a@example.com",
                        "password_file": str(tmp_path / "password")})
    d.start(wait=False)
    try:
        # The control socket answers, and the login error names the file.
        wait_for(lambda: d.ctl("status", check=False, timeout=5).returncode == 0, timeout=10,
                 what="the control socket to answer")
        wait_for(lambda: "not a regular file" in d.log_text(), timeout=10, what="the password file error")
    finally:
        d.stop()


def test_fifo_as_runtime_binding_is_skipped(daemon):
    direct(daemon).start()
    daemon.stop()
    os.mkfifo(daemon.state_dir / "bindings.d" / "planted.ini")
    daemon.start()
    assert "is a FIFO, not a regular file" in daemon.log_text()
    assert daemon.ctl("show", "planted", check=False).returncode != 0


# ---------------------------------------------------------------- item 5: state dir ours

def test_state_dir_owned_by_another_uid_is_refused(daemon):
    direct(daemon).start()
    daemon.stop()
    os.chown(daemon.state_dir, 65534, 65534)
    daemon.start(wait=False)
    assert daemon.proc.wait(10) != 0
    assert (f"{daemon.state_dir} is owned by uid 65534, not by uid 0 that mysocketd runs as; not trusted "
            f"(chown 0 {daemon.state_dir}" in daemon.log_text())


def test_world_writable_bindings_d_is_refused_and_its_bindings_not_started(daemon):
    direct(daemon).start()
    daemon.stop()
    bd = daemon.state_dir / "bindings.d"
    (bd / "planted.ini").write_text(binding("planted", 8000, 9100))
    os.chmod(bd / "planted.ini", 0o600)
    os.chmod(bd, 0o777)
    p = check_config(daemon.config)
    assert f"{bd} is writable by group or others (mode 0777); not trusted (chmod 700 {bd})" in p.stderr
    assert "1 runtime binding skipped" in p.stderr
    daemon.start(wait=False)
    assert daemon.proc.wait(10) != 0
    assert f"{bd} is writable by group or others" in daemon.log_text()


def test_runtime_binding_owned_by_another_uid_is_skipped(daemon):
    direct(daemon).start()
    daemon.stop()
    f = daemon.state_dir / "bindings.d" / "planted.ini"
    f.write_text(binding("planted", 8000, 9100))
    os.chmod(f, 0o600)
    os.chown(f, 65534, 65534)
    daemon.start()
    assert f"{f}: is owned by uid 65534, not by uid 0 that mysocketd runs as; not trusted (chown 0 {f}" \
        in daemon.log_text()
    assert daemon.ctl("show", "planted", check=False).returncode != 0


def test_group_writable_runtime_binding_is_skipped(daemon):
    direct(daemon).start()
    daemon.stop()
    f = daemon.state_dir / "bindings.d" / "planted.ini"
    f.write_text(binding("planted", 8000, 9100))
    os.chmod(f, 0o620)
    daemon.start()
    assert f"{f}: is writable by group or others (mode 0620); not trusted (chmod 600 {f})" in daemon.log_text()
    assert daemon.ctl("show", "planted", check=False).returncode != 0


# ---------------------------------------------------------------- item 7: NUL in a line

def test_nul_byte_in_an_ini_line_names_file_and_line(tmp_path):
    d = Daemon(tmp_path)
    d.config.write_bytes((d.base_config() + binding("web", 8000, 9000)).encode()
                         + b'[binding "db"]\nport = 5432\x00junk\nremote_port = 9001\n')
    n = d.config.read_bytes().split(b"\n").index(b"port = 5432\x00junk") + 1
    p = check_config(d.config)
    assert p.returncode == 78, p.stderr
    assert f"{d.config}:{n}: contains a NUL byte" in p.stderr


# ---------------------------------------------------------------- item 9: what can never work

def test_bracketed_ipv6_host_and_server_are_accepted_as_addresses(tmp_path):
    d = Daemon(tmp_path)
    d.write_config(binding("web", 8000, 9000, "host = [::1]"), ssh={"server": "[::1]"})
    p = check_config(d.config)
    assert p.returncode == 0, p.stderr


def test_bracketed_ipv6_host_is_used_bare(daemon):
    daemon.write_config(binding("web", 8000, 9000, "host = [::1]"), ssh={"server": "[::1]"})
    daemon.start()
    assert daemon.binding("web")["host"] == "::1"


def test_host_with_a_port_is_refused_with_a_hint(tmp_path):
    d = Daemon(tmp_path)
    d.write_config(binding("web", 8000, 9000, "host = 127.0.0.1:8001"))
    p = check_config(d.config)
    assert p.returncode == 78
    assert ('[binding "web"] host: "127.0.0.1:8001" looks like HOST:PORT; give the host alone and the port '
            'in its own key (port = 8001)') in p.stderr


def test_host_that_is_no_host_is_refused(tmp_path):
    d = Daemon(tmp_path)
    d.write_config(binding("web", 8000, 9000, "host = not a host!"), ssh={"server": "relay..example"})
    p = check_config(d.config)
    assert p.returncode == 78
    assert '[binding "web"] host: "not a host!" is not a host name or an IP address' in p.stderr
    assert '[ssh] server: "relay..example" is not a host name or an IP address' in p.stderr


def test_two_bindings_on_one_relay_port_are_refused(tmp_path):
    d = Daemon(tmp_path)
    d.write_config(binding("web", 8000, 9000) + binding("db", 5432, 9000))
    p = check_config(d.config)
    assert p.returncode == 78
    web = d.config.read_text().splitlines().index('[binding "web"]') + 1
    assert f'[binding "db"] remote_port: 9000 is already used by binding "web" ({d.config}:{web}) on the ' \
        f'same relay' in p.stderr


def test_add_on_a_relay_port_in_use_is_refused_naming_the_other(daemon):
    direct(daemon, binding("web", 8000, 9000)).start()
    p = daemon.ctl("add", "db", "--port", "5432", "--remote-port", "9000", check=False)
    assert p.returncode != 0
    assert 'remote_port: 9000 is already used by binding "web"' in p.stderr
    daemon.ctl("add", "db", "--port", "5432", "--remote-port", "9001")
    p = daemon.ctl("add", "db2", "--port", "5432", "--remote-port", "9001", check=False)
    assert 'remote_port: 9001 is already used by binding "db"' in p.stderr


def test_runtime_binding_on_a_relay_port_in_use_is_skipped(daemon):
    direct(daemon, binding("web", 8000, 9000)).start()
    daemon.stop()
    f = daemon.state_dir / "bindings.d" / "rt.ini"
    f.write_text(binding("rt", 8001, 9000))
    os.chmod(f, 0o600)
    daemon.start()
    web = daemon.config.read_text().splitlines().index('[binding "web"]') + 1
    assert (f'{f}:1: remote_port: 9000 is already used by binding "web" ({daemon.config}:{web}) on the same relay'
            in daemon.log_text()), daemon.log_text()
    assert daemon.ctl("show", "rt", check=False).returncode != 0
    assert f.exists()      # kept, as every skipped runtime file

"""Who may change things (SPEC §7): root, the daemon's uid and members of control_group.
Others may read (list/show/status) if they can reach the socket, and get 77 otherwise."""
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import MYSOCKETCTL, Daemon

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run mysocketctl as another uid")


def binding(name, port, remote_port):
    return f'[binding "{name}"]\nport = {port}\nremote_port = {remote_port}\n'


@pytest.fixture
def d():
    # pytest's tmp dirs are 0700: nobody could not reach the socket in them.
    root = Path(tempfile.mkdtemp(prefix="mysocketd-perm-", dir="/tmp"))
    root.chmod(0o755)
    dm = Daemon(root)
    dm.make_identity()
    dm.write_config(binding("web", 8000, 9000))
    yield dm
    dm.stop()
    shutil.rmtree(root, ignore_errors=True)


def ctl_as(d, *args, uid=NOBODY, gid=NOBODY, extra_groups=None, json_out=False):
    cmd = [str(MYSOCKETCTL), "-s", str(d.socket)] + (["--json"] if json_out else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, user=uid, group=gid,
                          extra_groups=extra_groups if extra_groups is not None else [])


def snapshot(d):
    return ([(b["name"], b["source"], b["port"]) for b in d.json("list")],
            sorted(p.name for p in (d.state_dir / "bindings.d").iterdir()))


def test_default_socket_mode_0660_keeps_others_out(d):
    d.start()
    st = os.stat(d.socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    for args in (["list"], ["status"], ["add", "x", "--port", "1", "--remote-port", "2"], ["reload"]):
        p = ctl_as(d, *args)
        assert p.returncode == 77, (args, p.returncode, p.stderr)
        assert str(d.socket) in p.stderr and "permission denied" in p.stderr
    assert snapshot(d) == ([("web", "config", 8000)], [])


def test_outsider_may_read_but_not_change(d):
    d.start()
    d.ctl("add", "rt", "--port", "8001", "--remote-port", "9001")
    os.chmod(d.socket, 0o666)
    before = snapshot(d)

    p = ctl_as(d, "list")
    assert p.returncode == 0, p.stderr
    assert "web" in p.stdout and "rt" in p.stdout
    p = ctl_as(d, "show", "rt", json_out=True)
    assert p.returncode == 0 and '"name": "rt"' in p.stdout
    assert ctl_as(d, "status").returncode == 0
    p = ctl_as(d, "metrics")
    assert p.returncode == 0 and 'mysocketd_binding_up{binding="rt"} ' in p.stdout, p.stderr

    for args in (["add", "x", "--port", "1", "--remote-port", "2"], ["remove", "rt"], ["rm", "web"],
                 ["remove", "nonexistent"], ["reload"]):
        p = ctl_as(d, *args)
        assert p.returncode == 77, (args, p.returncode, p.stdout, p.stderr)
        assert "permission denied" in p.stderr, p.stderr
        assert p.stdout == ""
    assert snapshot(d) == before
    assert not (d.state_dir / "bindings.d" / "x.ini").exists()
    assert "refused \"add\" from uid 65534" in d.log_text()


def test_outsider_reload_does_not_reload(d):
    d.start()
    os.chmod(d.socket, 0o666)
    d.config.write_text(d.base_config() + binding("web", 8000, 9000) + binding("new", 8002, 9002))
    assert ctl_as(d, "reload").returncode == 77
    assert [b["name"] for b in d.json("list")] == ["web"]
    assert "reloaded:" not in d.log_text()


def test_permission_code_over_the_raw_socket(d):
    d.start()
    os.chmod(d.socket, 0o666)
    script = ("import json,socket,sys\n"
              "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
              "s.sendall(b'{\"v\":1,\"cmd\":\"add\",\"binding\":{\"name\":\"x\",\"port\":1,\"remote_port\":2}}\\n')\n"
              "print(s.makefile().readline(), end='')\n")
    p = subprocess.run(["/usr/bin/python3", "-c", script, str(d.socket)], capture_output=True, text=True,
                       timeout=30, user=NOBODY, group=NOBODY, extra_groups=[])
    assert p.returncode == 0, p.stderr
    import json
    r = json.loads(p.stdout)
    assert r["ok"] is False and r["code"] == "permission"
    assert snapshot(d) == ([("web", "config", 8000)], [])


def test_members_of_control_group_may_change_things(d):
    # control_group = nogroup (65534): nobody's primary group, and a supplementary one for
    # a uid whose primary group is something else.
    d.config.write_text(d.config.read_text().replace("control_group = root", "control_group = nogroup"))
    d.start()
    st = os.stat(d.socket)
    assert st.st_gid == 65534 and stat.S_IMODE(st.st_mode) == 0o660
    p = ctl_as(d, "add", "viagroup", "--port", "81", "--remote-port", "9081")
    assert p.returncode == 0, p.stderr
    p = ctl_as(d, "add", "viasupp", "--port", "82", "--remote-port", "9082", uid=4242, gid=4242, extra_groups=[65534])
    assert p.returncode == 0, p.stderr
    # A uid in neither group: not even connect (0660, group nogroup).
    p = ctl_as(d, "list", uid=4243, gid=4243)
    assert p.returncode == 77, p.stderr
    assert ctl_as(d, "remove", "viagroup").returncode == 0
    assert snapshot(d) == ([("web", "config", 8000), ("viasupp", "runtime", 82)], ["viasupp.ini"])

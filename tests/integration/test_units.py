"""The systemd units, sysusers file and journal catalog in etc/ (issue 5).

What is checked, with the exact commands (run them by hand the same way):

  systemd-analyze verify UNITDIR/mysocketd.service UNITDIR/mysocketd.socket
      on copies of etc/mysocketd.{service,socket} whose ExecStart= and ExecReload= name the built
      binaries (the unit names /usr/sbin/mysocketd and /usr/bin/mysocketctl, which exist once the package is
      installed), with MANPATH pointing at docs/ so the man: links in Documentation=
      resolve. It must print nothing. test_package.py verifies the installed units as is.
  systemd-analyze security --offline=true etc/mysocketd.service
      overall exposure must be 1.5 or lower.
  journalctl --root=TMP --update-catalog / --list-catalog
      the catalog parses and explains both MESSAGE_IDs of common/log.h.
  systemd-sysusers --root=TMP etc/mysocketd.sysusers
      creates the user and group mysocketd with home /var/lib/mysocketd.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ETC = REPO / "etc"
DOCS = REPO / "docs"
BUILD = Path(os.environ.get("MYSOCKETD_BUILDDIR", REPO / "build"))
MAX_EXPOSURE = 1.5

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze not installed (apt-get install systemd)")


def unit_settings(path):
    """[(section, key, value)] of a unit file, in order."""
    out, section = [], None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def manpath(tmp_path):
    """A man tree holding docs/*.[158], so Documentation=man:... links resolve."""
    root = tmp_path / "man"
    for page in DOCS.glob("*.[158]"):
        d = root / f"man{page.suffix[1:]}"
        d.mkdir(parents=True, exist_ok=True)
        (d / page.name).symlink_to(page)
    return root


def test_verify_prints_nothing(tmp_path):
    def built(name):   # verify only needs executables in ExecStart= and ExecReload=
        exe = BUILD / name
        return exe if os.access(exe, os.X_OK) else Path(shutil.which("true"))
    units = tmp_path / "units"
    units.mkdir()
    service = (ETC / "mysocketd.service").read_text()
    assert "ExecStart=/usr/sbin/mysocketd\n" in service
    assert "ExecReload=/usr/bin/mysocketctl reload\n" in service
    service = service.replace("ExecStart=/usr/sbin/mysocketd\n", f"ExecStart={built('mysocketd')}\n")
    service = service.replace("ExecReload=/usr/bin/mysocketctl ", f"ExecReload={built('mysocketctl')} ")
    (units / "mysocketd.service").write_text(service)
    shutil.copy(ETC / "mysocketd.socket", units / "mysocketd.socket")
    env = dict(os.environ, MANPATH=str(manpath(tmp_path)), SYSTEMD_LOG_COLOR="0")
    r = subprocess.run(["systemd-analyze", "verify", str(units / "mysocketd.service"),
                        str(units / "mysocketd.socket")],
                       env=env, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_security_score():
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                        str(ETC / "mysocketd.service")],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for mysocketd\.service: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, r.stdout


def test_service_contract():
    s = unit_settings(ETC / "mysocketd.service")
    keys = {(sec, k) for sec, k, _ in s}
    val = {(sec, k): v for sec, k, v in s}
    for k, v in {"Type": "notify", "NotifyAccess": "main", "User": "mysocketd",
                 "Group": "mysocketd", "StateDirectory": "mysocketd",
                 "StateDirectoryMode": "0700", "ConfigurationDirectory": "mysocketd",
                 "UMask": "0077", "Restart": "on-failure",
                 "ExecReload": "/usr/bin/mysocketctl reload"}.items():
        assert val.get(("Service", k)) == v, k
    assert "WatchdogSec" in {k for _, k, _ in s}
    families = set(val[("Service", "RestrictAddressFamilies")].split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    # RuntimeDirectory= would delete /run/mysocketd (the socket's directory) on stop;
    # PrivateUsers= maps control-socket peers to nobody and defeats SO_PEERCRED.
    assert ("Service", "RuntimeDirectory") not in keys
    assert ("Service", "PrivateUsers") not in keys
    assert "mysocketd.socket" in val[("Unit", "Requires")].split()


def test_socket_contract():
    val = {(sec, k): v for sec, k, v in unit_settings(ETC / "mysocketd.socket")}
    assert val[("Socket", "ListenStream")] == "/run/mysocketd/control.sock"
    assert val[("Socket", "FileDescriptorName")] == "control"
    assert val[("Socket", "SocketMode")] == "0660"
    assert val[("Socket", "SocketGroup")] == "mysocketd"
    assert val[("Socket", "RemoveOnStop")] == "yes"
    # ...and the directory goes too (tests/systemd/test_real_systemd.py checks it after purge).
    assert val[("Socket", "ExecStopPost")] == "-/bin/rmdir --ignore-fail-on-non-empty /run/mysocketd"
    assert val[("Install", "WantedBy")] == "sockets.target"


def test_catalog_explains_up_and_down(tmp_path):
    if shutil.which("journalctl") is None:
        pytest.skip("journalctl not installed")
    log_h = (REPO / "common" / "log.h").read_text()
    ids = dict(re.findall(r'#define LOG_MESSAGE_ID_(UP|DOWN)\s+"([0-9a-f]{32})"', log_h))
    assert set(ids) == {"UP", "DOWN"}
    catdir = tmp_path / "usr/lib/systemd/catalog"
    catdir.mkdir(parents=True)
    shutil.copy(ETC / "mysocketd.catalog", catdir)
    subprocess.run(["journalctl", f"--root={tmp_path}", "--update-catalog"], check=True,
                   timeout=60)
    r = subprocess.run(["journalctl", f"--root={tmp_path}", "--list-catalog"],
                       capture_output=True, text=True, check=True, timeout=60)
    listed = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert listed[ids["UP"]].endswith("is up")
    assert listed[ids["DOWN"]].endswith("is down")


def test_sysusers_creates_user(tmp_path):
    if shutil.which("systemd-sysusers") is None:
        pytest.skip("systemd-sysusers not installed")
    (tmp_path / "etc").mkdir()
    subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(ETC / "mysocketd.sysusers")],
                   check=True, capture_output=True, timeout=60)
    passwd = (tmp_path / "etc/passwd").read_text()
    group = (tmp_path / "etc/group").read_text()
    user = [l.split(":") for l in passwd.splitlines() if l.startswith("mysocketd:")]
    assert user and user[0][5] == "/var/lib/mysocketd", passwd
    assert user[0][6] in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
    assert any(l.startswith("mysocketd:") for l in group.splitlines())

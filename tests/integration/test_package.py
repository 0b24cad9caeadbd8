"""The Debian package on this machine (issue 5): build, install, upgrade, remove, purge.

Builds dist/mysocketd_VERSION_ARCH.deb with tools/build-deb.sh (which apt-gets its own
build tools and Build-Depends), then, as root:
  - lintian -I -E --pedantic reports nothing but initial-upload-closes-no-bugs;
  - dpkg -i: the system user and group exist (home /var/lib/mysocketd, no login shell);
    every shipped file is where the build system put it, owned by root with the right
    mode; /etc/mysocketd/mysocketd.ini is a conffile of comments only (no secrets);
    both units are enabled; `systemd-analyze verify` of the installed units prints
    nothing; `mysocketd --check-config -c /etc/mysocketd/mysocketd.ini` accepts the
    shipped file silently; `mysocketctl --help` works; the completion loads;
  - the state directory (created here as systemd's StateDirectory= would: 0700,
    mysocketd:mysocketd) survives a reinstall of the package and `dpkg -r`;
  - dpkg -P removes it and the conffile.
The daemon itself is not started here (no systemd as PID 1; relay tests live elsewhere).
Skipped when not root, without dpkg, or when a mysocketd package is already installed
(the test would otherwise purge it). Set MYSOCKETD_DEB to test a prebuilt .deb.
"""
import grp
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STATE = Path("/var/lib/mysocketd")
CONF = Path("/etc/mysocketd/mysocketd.ini")


def run(*argv, check=True, **kw):
    kw.setdefault("timeout", 900)
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, **kw)


def package_status():
    r = run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "mysocketd", check=False)
    return r.stdout.strip() if r.returncode == 0 else ""


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="installs a package: needs root"),
    pytest.mark.skipif(shutil.which("dpkg") is None, reason="not a Debian system (no dpkg)"),
]


def pkgconfig_var(var, default):
    r = run("pkg-config", f"--variable={var}", "systemd", check=False)
    return r.stdout.strip() or default


@pytest.fixture(scope="module")
def deb():
    if package_status() not in ("", "un"):
        pytest.skip("a mysocketd package is already installed; not touching it")
    if os.environ.get("MYSOCKETD_DEB"):
        return Path(os.environ["MYSOCKETD_DEB"])
    r = run(str(REPO / "tools/build-deb.sh"), "--nocheck", check=False, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    # One package per release (issue 12): the version ends in ~deb12u1 or ~deb13u1.
    arch = run("dpkg", "--print-architecture").stdout.strip()
    built = [l.split()[1] for l in r.stdout.splitlines()
             if l.startswith("built dist/mysocketd_") and l.endswith(f"_{arch}.deb")]
    assert len(built) == 1, r.stdout[-4000:]
    path = REPO / built[0]
    release = run("sh", "-c", ". /etc/os-release && echo $VERSION_ID").stdout.strip()
    assert f"~deb{release}u1_" in path.name, path.name
    assert path.exists(), f"{path} not built"
    return path


@pytest.fixture(scope="module")
def installed(deb):
    try:
        r = run("dpkg", "-i", str(deb), check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        yield deb
    finally:
        if package_status() not in ("", "un", "pn"):
            run("dpkg", "-P", "mysocketd", check=False)


def test_lintian_clean(deb):
    if shutil.which("lintian") is None:
        pytest.skip("lintian not installed (tools/build-deb.sh installs it)")
    r = run("lintian", "-I", "-E", "--pedantic", str(deb), check=False)
    tags = [l for l in r.stdout.splitlines() if l[:2] in ("E:", "W:", "I:", "P:", "X:")]
    assert all("initial-upload-closes-no-bugs" in t for t in tags), r.stdout


def check_file(path, mode, owner="root", group="root"):
    st = Path(path).lstat()
    assert stat.S_ISREG(st.st_mode), path
    assert stat.S_IMODE(st.st_mode) == mode, f"{path}: {oct(stat.S_IMODE(st.st_mode))}"
    assert (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name) == (owner, group), path


def test_user_and_group(installed):
    u = pwd.getpwnam("mysocketd")
    assert u.pw_dir == "/var/lib/mysocketd"
    assert u.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
    assert u.pw_uid < 1000, "a system user"
    assert grp.getgrgid(u.pw_gid).gr_name == "mysocketd"


def test_files_modes_owners(installed):
    unitdir = pkgconfig_var("systemdsystemunitdir", "/lib/systemd/system")
    sysusersdir = pkgconfig_var("sysusersdir", "/usr/lib/sysusers.d")
    for path, mode in {
        "/usr/sbin/mysocketd": 0o755,
        "/usr/bin/mysocketctl": 0o755,
        CONF: 0o644,
        f"{unitdir}/mysocketd.service": 0o644,
        f"{unitdir}/mysocketd.socket": 0o644,
        f"{sysusersdir}/mysocketd.conf": 0o644,
        "/usr/lib/systemd/catalog/mysocketd.catalog": 0o644,
        "/usr/share/bash-completion/completions/mysocketctl": 0o644,
        "/usr/share/man/man8/mysocketd.8.gz": 0o644,
        "/usr/share/man/man1/mysocketctl.1.gz": 0o644,
        "/usr/share/man/man5/mysocketd.ini.5.gz": 0o644,
        "/usr/share/doc/mysocketd/copyright": 0o644,
    }.items():
        check_file(path, mode)
    st = Path("/etc/mysocketd").stat()
    assert stat.S_IMODE(st.st_mode) == 0o755 and st.st_uid == 0


def test_conffile_is_comments_only(installed):
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "mysocketd").stdout
    assert str(CONF) in conffiles
    live = [l for l in CONF.read_text().splitlines() if l.strip() and l.lstrip()[0] not in ";#"]
    assert live == []


def test_units_enabled_and_verify(installed):
    assert Path("/etc/systemd/system/multi-user.target.wants/mysocketd.service").is_symlink()
    assert Path("/etc/systemd/system/sockets.target.wants/mysocketd.socket").is_symlink()
    unitdir = pkgconfig_var("systemdsystemunitdir", "/lib/systemd/system")
    r = run("systemd-analyze", "verify", f"{unitdir}/mysocketd.service",
            f"{unitdir}/mysocketd.socket", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_binaries_run(installed):
    r = run("/usr/sbin/mysocketd", "--check-config", "-c", str(CONF), check=False)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = run("mysocketctl", "--help", check=False)
    assert r.returncode == 0, r.stderr
    r = run("bash", "-c", "source /usr/share/bash-completion/completions/mysocketctl"
            " && complete -p mysocketctl", check=False)
    assert r.returncode == 0 and "_mysocketctl" in r.stdout, r.stderr


def test_state_kept_on_upgrade_and_remove_gone_on_purge(installed):
    # What StateDirectory=mysocketd creates when the service first starts.
    u = pwd.getpwnam("mysocketd")
    (STATE / "bindings.d").mkdir(parents=True, exist_ok=True)
    marker = STATE / "bindings.d" / "web.ini"
    marker.write_text('[binding "web"]\nport = 8000\n')
    for p in (STATE, STATE / "bindings.d", marker):
        os.chown(p, u.pw_uid, u.pw_gid)
    STATE.chmod(0o700)
    marker.chmod(0o600)

    r = run("dpkg", "-i", str(installed), check=False)   # same version: the upgrade path
    assert r.returncode == 0, r.stdout + r.stderr
    assert marker.read_text() == '[binding "web"]\nport = 8000\n'
    assert stat.S_IMODE(STATE.stat().st_mode) == 0o700

    r = run("dpkg", "-r", "mysocketd", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert package_status() == "rc"
    assert not Path("/usr/sbin/mysocketd").exists()
    assert CONF.exists(), "remove keeps conffiles"
    assert marker.exists(), "remove keeps the state"

    r = run("dpkg", "-P", "mysocketd", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert package_status() in ("", "un", "pn")
    assert not STATE.exists(), "purge removes the state"
    assert not CONF.exists(), "purge removes the conffile"

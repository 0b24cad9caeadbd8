"""The tunnel engine's objects export only prefixed names (issue 11 item 1): every global
symbol defined by agent/tunnel/NAME.o starts with that file's prefix, and only sshcall.c
and hostkey.c include <libssh2.h>. Fails when an unprefixed global or a stray include
appears."""
import re
import subprocess

from conftest import BUILD, REPO

PREFIX = {"tunnel": "tunnel_", "session": "session_", "forward": "forward_", "bridge": "bridge_",
          "reach": "reach_", "sshcall": "sshcall_", "methods": "methods_", "resolve": "resolve_",
          "hostkey": "hostkey_", "direct": "direct_", "localconn": "localconn_", "logline": "logline_", "sshmem": "sshmem_"}


def objects():
    objs = sorted((BUILD / "agent" / "tunnel").glob("*.o"))
    assert objs, f"no engine objects under {BUILD}/agent/tunnel: build first"
    return objs


def test_every_engine_global_has_its_files_prefix():
    bad, seen = [], set()
    for o in objects():
        mod = re.sub(r"^.*?-", "", o.stem)          # libagent_a-session -> session
        assert mod in PREFIX, f"{o.name}: a new engine file; give it a prefix here"
        seen.add(mod)
        out = subprocess.run(["nm", "-g", "--defined-only", str(o)], capture_output=True, text=True, check=True)
        for line in out.stdout.splitlines():
            sym = line.split()[-1]
            if not sym.startswith(PREFIX[mod]):
                bad.append(f"{o.name}: {sym}")
    assert seen == set(PREFIX), f"missing objects: {set(PREFIX) - seen}"
    assert not bad, "unprefixed engine globals:\n" + "\n".join(bad)


def test_only_sshcall_and_hostkey_include_libssh2():
    users = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "agent").rglob("*.[ch]")
                   if re.search(r"^\s*#\s*include\s*<libssh2", p.read_text(), re.M))
    assert users == ["agent/tunnel/hostkey.c", "agent/tunnel/sshcall.c"], users


# The rest of the agent (issue 11 items 1/2): agent/api/NAME.o and agent/NAME.o likewise;
# a file NAME-PART.c shares NAME's prefix (conf-keys.c: conf_). main.o exports only main.
AGENT_PREFIX = {"api/calls": "api_", "api/http": "http_", "api/json": "apijson_", "api/token": "token_",
                "main": "main"}


def test_every_agent_global_has_its_files_prefix():
    bad, seen = [], set()
    objs = sorted((BUILD / "agent").glob("*.o")) + sorted((BUILD / "agent" / "api").glob("*.o"))
    assert objs, f"no agent objects under {BUILD}/agent: build first"
    for o in objs:
        stem = re.sub(r"^.*?-", "", o.stem, count=1)       # libagent_a-conf-keys -> conf-keys
        mod = ("api/" if o.parent.name == "api" else "") + stem
        prefix = AGENT_PREFIX.get(mod, stem.split("-")[0] + "_")
        seen.add(mod)
        out = subprocess.run(["nm", "-g", "--defined-only", str(o)], capture_output=True, text=True, check=True)
        for line in out.stdout.splitlines():
            sym = line.split()[-1]
            if not sym.startswith(prefix):
                bad.append(f"{o.name}: {sym} (want {prefix})")
    assert {"api/calls", "api/http", "api/json", "api/token", "manager", "binding", "main"} <= seen, seen
    assert not bad, "unprefixed agent globals:\n" + "\n".join(bad)


def includers(pattern):
    return sorted(p.relative_to(REPO).as_posix() for d in ("agent", "common", "ctl") for p in (REPO / d).rglob("*.[ch]")
                  if re.search(r"^\s*#\s*include\s*<" + pattern, p.read_text(), re.M))


def test_each_library_behind_one_file():
    """docs/ARCHITECTURE.md's rule of the folders: libcurl in api/http.c, libmicrohttpd in
    metrics.c, inih in conf.c; mysocketctl (ctl/) includes none of them."""
    assert includers(r"curl/") == ["agent/api/http.c"]
    assert includers(r"microhttpd") == ["agent/metrics.c"]
    assert includers(r"ini\.h") == ["agent/conf.c"]

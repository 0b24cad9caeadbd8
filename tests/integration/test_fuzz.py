"""Runs every libFuzzer target (tests/fuzz/) for 30 seconds over its seed corpus, the way
CI exercises them: no crash, leak, timeout or out-of-memory is allowed. The seeds include
every input that once crashed a target (regress-*), so this is also their regression test.

$MYSOCKETD_FUZZ_SECONDS changes the time per target (tests/fuzz/run.sh documents longer
runs). Skipped only when clang with the libFuzzer runtime is missing and cannot be
installed (tools/setup.sh installs clang and libclang-rt-dev)."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import REPO

RUN = REPO / "tests" / "fuzz" / "run.sh"
TARGETS = sorted(p.stem[len("fuzz-"):] for p in (REPO / "tests" / "fuzz").glob("fuzz-*.c"))
SECONDS = int(os.environ.get("MYSOCKETD_FUZZ_SECONDS", "30"))


def _links():
    """True if clang can link a libFuzzer program with ASan and UBSan."""
    cc = shutil.which("clang") or shutil.which("clang-14")
    if not cc:
        return False
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "probe.c"
        src.write_text("#include <stddef.h>\n#include <stdint.h>\n"
                       "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\n"
                       "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) "
                       "{ (void) d; (void) n; return 0; }\n")
        p = subprocess.run([cc, "-fsanitize=fuzzer,address,undefined", str(src), "-o",
                            str(Path(d) / "probe")], capture_output=True)
        return p.returncode == 0


@pytest.fixture(scope="session")
def fuzzer_toolchain():
    if _links():
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "clang",
               "libclang-rt-dev"]
        if subprocess.run(cmd, capture_output=True, env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env)
            subprocess.run(cmd, capture_output=True, env=env)
        if _links():
            return
    pytest.skip("clang with libFuzzer (clang, libclang-rt-dev) is missing and could not be "
                "installed (not root, or apt-get failed); tools/setup.sh installs it")


@pytest.fixture(scope="session")
def fuzz_runs(fuzzer_toolchain):
    """Every target runs at once (run.sh is safe for that): CI spends 30 s on fuzzing, not
    30 s per target. Each test below waits for its own target's run."""
    procs = {t: subprocess.Popen([str(RUN), str(SECONDS), t], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd=str(REPO))
             for t in TARGETS}
    yield procs
    for p in procs.values():
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target(fuzz_runs, target):
    p = fuzz_runs[target]
    stdout, stderr = p.communicate(timeout=SECONDS + 600)
    out = stdout + stderr
    log = REPO / "build-fuzz" / f"{target}.log"
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    assert p.returncode == 0, f"{out}\n--- {log} (tail) ---\n{tail}"
    row = [line for line in stdout.splitlines() if line.split()[:1] == [target]]
    assert row and row[0].rstrip().endswith("ok"), out

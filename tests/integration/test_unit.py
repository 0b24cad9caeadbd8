"""Runs the Check unit test programs of both builds (plain, and ASan+UBSan when
build-asan/ exists) so that one pytest summary covers the whole suite."""
import os
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, REPO

ASAN = Path(os.environ.get("MYSOCKETD_ASAN_BUILDDIR", REPO / "build-asan"))
UNITS = sorted(p.name for p in (REPO / "tests" / "unit").glob("test-*.c"))


def programs():
    for build, label in ((BUILD, "plain"), (ASAN, "asan")):
        for src in UNITS:
            yield pytest.param(build / "tests" / "unit" / src[:-2], id=f"{label}-{src[:-2]}")


@pytest.mark.parametrize("program", programs())
def test_unit_program(program):
    if "build-asan" in str(program) and not ASAN.exists():
        pytest.skip("no sanitizer build (tools/test.sh makes one in build-asan/)")
    assert program.exists(), f"{program} not built: run make check TESTS= in its build dir"
    env = dict(os.environ, CK_FORK="no", ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    p = subprocess.run([str(program)], capture_output=True, text=True, env=env, timeout=600,
                       cwd=str(program.parent))
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert "ERROR: AddressSanitizer" not in out and "runtime error:" not in out, out[-4000:]

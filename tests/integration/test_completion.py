"""etc/bash-completion/mysocketctl, loaded by the real bash-completion (Debian's package) and
asked what a user's TAB would get: the command words, and each command's options."""
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")
SCRIPT = REPO / "etc" / "bash-completion" / "mysocketctl"


def complete(line):
    """COMPREPLY for the command line `line` (the cursor at its end)."""
    if not BASH_COMPLETION.exists():
        pytest.fail("bash-completion missing: apt-get install bash-completion (tools/setup.sh installs it)")
    words = line.split(" ")
    script = (f"source {BASH_COMPLETION}\nsource {SCRIPT}\n"
              f"COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n"
              "COMP_WORDS=(" + " ".join(f"'{w}'" for w in words) + f"); COMP_CWORD={len(words) - 1}\n"
              "_mysocketctl\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and not p.stderr, p
    return sorted(w for w in p.stdout.split("\n") if w)


def test_commands_include_metrics():
    assert complete("mysocketctl me") == ["metrics"]
    assert {"add", "list", "status", "reload", "metrics", "logs"} <= set(complete("mysocketctl "))


@pytest.mark.parametrize("cmd", ["metrics", "status", "reload"])
def test_read_commands_offer_json(cmd):
    assert complete(f"mysocketctl {cmd} --") == ["--help", "--json"]
    assert complete(f"mysocketctl {cmd} --j") == ["--json"]


def test_add_options_and_types():
    assert {"--port", "--remote-port", "--type", "--wait"} <= set(complete("mysocketctl add --"))
    assert complete("mysocketctl add --type ht") == ["http", "https"]


def test_forward_actions_and_options():
    assert "forward" in complete("mysocketctl ")
    assert complete("mysocketctl forward ") == ["add", "ls", "rm"]
    assert complete("mysocketctl forward add db --") == ["--help", "--json", "--listen", "--target"]
    assert complete("mysocketctl forward add db --listen 127.0.0.1:5433 --t") == ["--target"]
    assert complete("mysocketctl forward ls --") == ["--help", "--json"]

"""API mode against a careless or hostile API (issue 13, items 1, 2 and 8), with the
emulator's modes: error bodies that echo the request, tokens expired on arrival, an API
whose clock differs from ours, and the real API's reply shapes (an empty tunnel_server on
a new tunnel, informational fields null, missing or of an odd shape).

Like test_api.py, [ssh] points at a port where nothing listens: a binding re-resolves at
the API on every attempt, which is what these tests need.
"""
import re
import sys
import time
from pathlib import Path

import pytest

from conftest import wait_for
from test_api import EMAIL, JWT_HEADER, PASSWORD, USERS, ApiDaemon, binding

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emulator.harness import Emulator  # noqa: E402

PROTECTED_PW = "edge-pw-90210-zz"


@pytest.fixture
def api(tmp_path):
    e = Emulator(tmp_path, users=USERS).start()
    yield e
    e.stop()


@pytest.fixture
def ad(tmp_path, api):
    d = ApiDaemon(tmp_path / "d", api)
    d.root.mkdir()
    yield d
    d.stop()
    d.assert_no_secrets()


def configure(ad, bindings, backoff=None):
    """ApiDaemon.api_config with [backoff] settings of the test's own."""
    ad.api_config(bindings=bindings)
    text = ad.config.read_text()
    if backoff:
        for k, v in backoff.items():
            text = re.sub(rf"^{k} = .*$", f"{k} = {v}", text, flags=re.M)
    ad.config.write_text(text)


def everything_said(ad, name):
    """Every text the daemon gives out about a binding: log, show, list, logs."""
    out = [ad.log_text()]
    for args in (("show", name), ("list",), ("logs", "-n", "1000")):
        p = ad.ctl(*args, check=False)
        out.append(p.stdout + p.stderr)
    return "\n".join(out)


# ---- item 1: API error bodies never reach a log or last_error verbatim ----------------------


def test_an_api_that_echoes_the_login_request_never_leaks_the_password(ad, api):
    api.fault("POST /login", "echo")          # 400 {"message": "bad request: <our body>"}
    configure(ad, binding("web", 8000))
    ad.start()
    b = ad.wait_error("web", r"HTTP 400")
    # What is kept: the status, the method and path; the echo is dropped as a whole.
    assert "POST /login" in b["last_error"] and "not shown" in b["last_error"], b["last_error"]
    assert "bad request" not in b["last_error"]
    said = everything_said(ad, "web")
    assert PASSWORD not in said and "bad request:" not in said
    assert EMAIL in said      # the email is no secret: it names the account that failed


def test_an_api_that_echoes_a_socket_request_never_leaks_the_protected_password(ad, api):
    api.fault("POST /socket", "echo", status=422)
    configure(ad, binding("web", 8000, f"protected = yes\nusername = u\npassword = {PROTECTED_PW}"))
    ad.start()
    b = ad.wait_error("web", r"HTTP 422 for POST /socket")
    assert len(b["last_error"]) < 300
    said = everything_said(ad, "web")
    assert PROTECTED_PW not in said and PROTECTED_PW[:8] not in said


def test_a_token_in_an_api_message_is_scrubbed_and_the_rest_is_short_and_printable(ad, api):
    configure(ad, binding("web", 8000))
    ad.start()
    ad.wait_ids("web")
    api.fault("GET /socket/{id}", "echo-token")  # the token we sent, in the API's message
    b = ad.wait_error("web", r"HTTP 400 for GET /socket/")
    assert "token *** is not allowed here" in b["last_error"], b["last_error"]
    ad.remember_token()
    said = everything_said(ad, "web")
    assert JWT_HEADER not in said
    for t in ad.tokens:
        assert t not in said
    # A long message full of control characters: at most 200 printable bytes of it.
    api.clear_faults()
    api.fault("GET /socket/{id}", "long")
    b = ad.wait_error("web", r"HTTP 400 for GET /socket/\S+: x")
    quoted = b["last_error"].split(": ", 1)[1]
    assert quoted.startswith("x") and len(quoted.encode()) <= 200, quoted
    assert not re.search(r"[\x00-\x1f\x7f]", b["last_error"])
    assert "\x1b" not in ad.log_text()


# ---- item 2: a token expired on arrival, a clock that differs ---------------------------------


def logins_in(api, seconds):
    c0 = api.counts().get("POST /login", 0)
    time.sleep(seconds)
    return api.counts().get("POST /login", 0) - c0


def test_an_expired_token_on_arrival_backs_off_and_says_why(ad, api):
    api.configure(token_mode="expired")       # exp = iat - 3 h: expired whatever the clock
    configure(ad, binding("web", 8000), backoff={"initial": "1", "max": "30"})
    ad.start()
    time.sleep(20)
    n = api.counts().get("POST /login", 0)
    print(f"logins with a token expired on arrival: {n} in the first 20 s ({n / 20:.2f}/s)")
    # Backoff 1 s doubling to 30 s with full jitter: a handful, never several a second.
    assert n <= 10, f"{n} logins in 20 s"
    b = ad.wait_error("web", r"expired 3 h ago: is the clock right\?")
    assert b["state"] in ("resolving", "backoff")
    # The API mends: the next login (with backoff) works and the binding resolves.
    api.configure(token_mode="normal")
    ad.wait_ids("web", timeout=45)


def test_an_api_clock_3_hours_behind_is_lived_with_and_said(ad, api):
    # Tokens valid 1 h by the API's clock, which is 3 h behind ours: by our clock each one
    # expired 2 h before it arrived. The token's own lifetime (exp - iat) is what counts.
    api.configure(clock_offset=-3 * 3600, token_lifetime=3600)
    configure(ad, binding("web", 8000))
    ad.start()
    time.sleep(10)
    n = api.counts().get("POST /login", 0)
    print(f"logins with the API's clock 3 h behind: {n} in the first 10 s")
    assert n == 1
    ad.wait_ids("web")
    assert re.search(r"the API issued its token 3 h before our clock: is the clock right\?", ad.log_text())
    # Expiry shown by our clock: about an hour from now, not two hours ago.
    from datetime import datetime, timezone
    exp = datetime.fromisoformat(ad.json("status")["token_expiry"].replace("Z", "+00:00"))
    left = (exp - datetime.now(timezone.utc)).total_seconds()
    assert 3000 < left <= 3600, left


def test_refreshes_are_planned_on_the_tokens_own_lifetime(ad, api):
    api.configure(clock_offset=-3 * 3600, token_lifetime=10)
    configure(ad, binding("web", 8000))
    ad.start()
    ad.wait_ids("web")
    r0 = api.counts().get("POST /login/refresh", 0)
    time.sleep(16)
    c = api.counts()
    assert c.get("POST /login") == 1, c
    # A 10 s token is refreshed at half its life: 2-4 refreshes in 16 s, not a storm.
    assert 2 <= c.get("POST /login/refresh", 0) - r0 <= 5, c


# ---- item 8: the real API's reply shapes --------------------------------------------------


def test_a_new_tunnel_with_an_empty_tunnel_server_then_an_address(ad, api):
    configure(ad, binding("web", 8000))
    ad.start()
    # A new tunnel's tunnel_server is "" (the seed docs) until it has connected ...
    sid, tid = ad.wait_ids("web")
    assert api.state()["tunnels"][0]["tunnel_server"] == ""
    wait_for(lambda: api.counts().get("GET /socket/{id}", 0) >= 2, timeout=20, what="re-resolves")
    # ... then the relay's address: both shapes are accepted.
    api.tunnel_connected(tid)
    n = api.counts().get("GET /socket/{id}", 0)
    wait_for(lambda: api.counts().get("GET /socket/{id}", 0) >= n + 2, timeout=20, what="re-resolves")
    assert "API" not in (ad.binding("web")["last_error"] or "")
    assert ad.ids("web") == (sid, tid)
    ad.stop()
    ad.start()
    assert ad.wait_ids("web") == (sid, tid)
    assert api.counts().get("POST /socket") == 1 and api.counts().get("POST /socket/{id}/tunnel") == 1


@pytest.mark.parametrize("mode", ["null", "missing", "odd"])
def test_informational_fields_null_missing_or_odd_are_accepted(ad, api, mode):
    api.configure(informational=mode)
    configure(ad, binding("web", 8000) + binding("db", 5432, "type = tcp"))
    ad.start()
    web, db = ad.wait_ids("web"), ad.wait_ids("db")
    wait_for(lambda: api.counts().get("GET /socket/{id}", 0) >= 4, timeout=30, what="re-resolves")
    for name in ("web", "db"):
        err = ad.binding(name)["last_error"] or ""
        assert "API reply" not in err, err
    assert ad.ids("web") == web and ad.ids("db") == db
    assert ad.json("account", "show")["user_name"] == "root"
    assert ad.ctl("socket", "ls").returncode == 0
    assert ad.ctl("tunnel", "ls", web[0]).returncode == 0

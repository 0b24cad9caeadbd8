#!/usr/bin/python3
"""The Quick start demo: mysocketd in API mode against the bundled local relay.

Starts, all on 127.0.0.1: a real OpenSSH sshd as the relay (tests/integration/relay.py),
the mysocket API emulator (tests/emulator/), a small web service standing in for the Pi's
web app, and mysocketd with one binding. Then it shows the binding come up, a request
travelling client -> relay port -> SSH tunnel -> local service, and the relay's log line
arriving in the binding's log. Everything it started is stopped by pid at the end.
"""
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("MYSOCKETD_BUILDDIR", os.path.join(REPO, "build"))
sys.path[:0] = [os.path.join(REPO, "tests", "integration"), os.path.join(REPO, "tests")]
from relay import Relay, free_port  # noqa: E402
from emulator import Emulator  # noqa: E402

MYSOCKETD = os.path.join(BUILD, "mysocketd")
MYSOCKETCTL = os.path.join(BUILD, "mysocketctl")


def step(text):
    print(f"\n\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"\n==> {text}", flush=True)


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"Hello from the Raspberry Pi, served through mysocketd\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    tmp = tempfile.mkdtemp(prefix="mysocketd-demo-")
    relay = Relay(os.path.join(tmp, "relay"))
    api = Emulator(tmp, users=(("demo@example.com", "demo-password", relay.user),),
                   relay_port_base=free_port())
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    web.socket.setblocking(False)   # so shutdown() never waits on an accept() that blocks
    threading.Thread(target=web.serve_forever, daemon=True).start()
    daemon = None
    ctl = [MYSOCKETCTL, "-s", os.path.join(tmp, "control.sock")]
    try:
        step(f"relay: OpenSSH sshd on 127.0.0.1:{relay.port}; API emulator; local web app on 127.0.0.1:{web.server_port}")
        relay.start()
        api.start()
        pw = os.path.join(tmp, "password")
        with open(pw, "w") as f:
            f.write("demo-password\n")
        os.chmod(pw, 0o600)
        conf = os.path.join(tmp, "mysocketd.ini")
        with open(conf, "w") as f:
            f.write(f"""[daemon]
state_dir = {tmp}/state
control_socket = {tmp}/control.sock
control_group = root

[api]
url = {api.url}
email = demo@example.com
password_file = {pw}

[ssh]
server = 127.0.0.1
port = {relay.port}
identity_file = {relay.client_key}
known_hosts = {tmp}/state/known_hosts
host_key_check = accept-new

[binding "web"]
port = {web.server_port}
type = http
""")
        step(f"the config ({conf})")
        print(open(conf).read(), end="")
        subprocess.run([MYSOCKETD, "--check-config", "-c", conf], check=True)

        step("mysocketd starts (its log lines follow, prefixed 'mysocketd:')")
        daemon = subprocess.Popen([MYSOCKETD, "-c", conf], stderr=subprocess.PIPE, text=True)
        threading.Thread(target=lambda: [print("  mysocketd:", line, end="", flush=True)
                                         for line in daemon.stderr], daemon=True).start()
        deadline = time.monotonic() + 30
        binding = None
        while time.monotonic() < deadline:
            p = subprocess.run(ctl + ["--json", "show", "web"], capture_output=True, text=True)
            if p.returncode == 0:
                binding = json.loads(p.stdout)
                if binding["state"] == "up":
                    break
            time.sleep(0.2)
        else:
            raise SystemExit(f"binding did not come up: {binding}")

        step("mysocketctl list")
        subprocess.run(ctl + ["list"], check=True)

        port = binding["relay_port"]
        step(f"a request to the relay's port {port} travels through the SSH tunnel to the local app")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            print(f"  HTTP {r.status}: {r.read().decode().strip()}")
        # The real edge prints one line per proxied request on the SSH session; ours too.
        time.sleep(0.5)
        relay.emit(f'{binding["public_url"]} "GET / HTTP/1.1" 200 from 203.0.113.7')
        time.sleep(1)
        subprocess.run(ctl + ["list"], check=True)

        step("mysocketctl logs web (the binding's story, with the relay's edge log)")
        subprocess.run(ctl + ["logs", "web"], check=True)
        step("mysocketctl status")
        subprocess.run(ctl + ["status"], check=True)
        print("\nDemo done: the request went through the tunnel. Cleaning up.")
    finally:
        if daemon and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(10)
        api.stop()
        relay.stop()
        web.shutdown()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()

"""Many bindings: the control protocol and the tables still work past 64 KiB of reply."""
import json
import socket

from conftest import Daemon


def test_list_of_300_bindings_is_larger_than_64k_and_still_works(tmp_path):
    d = Daemon(tmp_path)
    d.make_identity()
    d.write_config(log_level="notice", backoff={"initial": "60", "max": "300"})
    d.start()
    try:
        # One connection, pipelined adds: fast, and exercises the request loop too.
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(d.socket))
            f = s.makefile("rwb")
            for i in range(300):
                req = {"v": 1, "cmd": "add", "binding": {"name": f"svc{i:03d}", "port": 10000 + i,
                                                            "remote_port": 20000 + i}}
                f.write((json.dumps(req) + "\n").encode())
            f.flush()
            for i in range(300):
                assert json.loads(f.readline())["ok"], i
        p = d.ctl("--json", "list")
        assert len(p.stdout) > 64 * 1024
        names = [b["name"] for b in json.loads(p.stdout)]
        assert names == [f"svc{i:03d}" for i in range(300)]
        human = d.ctl("list").stdout.splitlines()
        assert len(human) == 301 and human[0].startswith("NAME") and human[-1].startswith("svc299")
        assert d.ctl("status").returncode == 0
    finally:
        d.stop()

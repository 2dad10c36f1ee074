"""The console command: demo on built-in defaults, config checks, notify."""
import json
import subprocess
import sys

import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.e2e


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "cti_dialer.cli", *args], capture_output=True, text=True,
                          timeout=kw.pop("timeout", 120), **kw)


def test_demo_runs_to_completion():
    proc = cli("demo", "--numbers", "40")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "finished 41/41" in out
    assert "NORMAL_CLEARING" in out and "USER_BUSY" in out
    assert "after failover from trunk-a to trunk-b" in out
    assert "rejected number from queue:demo" in out


def test_check_config_hides_password(tmp_path):
    cfg = tmp_path / "c.ini"
    cfg.write_text("[dialer]\nhost = fs9\n[esl]\npassword = s3cret\n")
    proc = cli("check-config", "-c", str(cfg))
    assert proc.returncode == 0
    assert "[dialer] host = fs9" in proc.stdout
    assert "s3cret" not in proc.stdout and "[esl] password = ***" in proc.stdout


def test_check_config_names_the_bad_key(tmp_path):
    cfg = tmp_path / "c.ini"
    cfg.write_text("[esl]\nport = nope\n")
    proc = cli("check-config", "-c", str(cfg))
    assert proc.returncode != 0 and "[esl] port" in proc.stderr


def test_run_refuses_a_bad_config(tmp_path):
    cfg = tmp_path / "c.ini"
    cfg.write_text("[dialer]\nlimt = 3\n")
    proc = cli("run", "-c", str(cfg), timeout=30)
    assert proc.returncode != 0 and "unknown setting [dialer] limt" in proc.stderr


def test_example_config_matches_conf():
    proc = cli("example-config")
    with open("conf/cti-dialer.ini") as fh:
        assert proc.stdout == fh.read()


def test_notify_publishes_config_change(tmp_path, redis_server, r):
    cfg = tmp_path / "c.ini"
    cfg.write_text("[redis]\nurl = %s\n" % redis_server.url)
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("config@fs7")
    proc = cli("notify", "-c", str(cfg), "--table", "cti_queue_dialer_task", "--key", "t1", "--host", "fs7")
    assert proc.returncode == 0, proc.stderr
    msg = wait_for(lambda: pubsub.get_message(timeout=0.1), 5)
    assert json.loads(msg["data"]) == {"type": "config_change", "table": "cti_queue_dialer_task", "key": "t1"}
    pubsub.close()

"""What operators touch: the admin CLI (through Redis, each change published), systemd, metrics, SIGHUP."""
import json
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cti_dialer.fsim import Outcome
from cti_dialer.redis_server import free_port
from tests.conftest import wait_for
from tests.e2e.conftest import DOMAIN, basic_setup, push, put_task, results, task_params

pytestmark = pytest.mark.e2e

TASK = {"params": {"line_group": ["g1"], "limit": 3, "number_queue": "queue:cli", "destination_extension": "8888"}}


@pytest.fixture
def cli(tmp_path, redis_server):
    cfg = tmp_path / "admin.ini"
    cfg.write_text("[dialer]\nhost = fs1\ndomain = %s\ntimezone = UTC\n[redis]\nurl = %s\n" % (DOMAIN, redis_server.url))

    def run(*args, stdin=None, ok=True):
        proc = subprocess.run([sys.executable, "-m", "cti_dialer.cli", *args, "-c", str(cfg)], input=stdin,
                              capture_output=True, text=True, timeout=120)
        if ok:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc
    return run


@pytest.fixture
def published(r):
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("config@*")
    # Read the subscription's confirmation now: get_message() returns None
    # for it, which would end the first read below too early.
    wait_for(lambda: pubsub.get_message(timeout=0.1) is None and r.pubsub_numpat() >= 1, 5)
    got = []

    def messages():
        while True:
            msg = pubsub.get_message(timeout=0.2)
            if msg is None:
                return got
            got.append((msg["channel"].decode(), json.loads(msg["data"])))
    yield messages
    pubsub.close()


def test_task_commands_validate_publish_and_drive_a_daemon(r, sim, daemon, cli, published):
    basic_setup(r)
    bad = dict(TASK, params=dict(TASK["params"], limit="three"))
    proc = cli("task", "set", "t9", json.dumps(bad), ok=False)
    assert proc.returncode != 0 and "limit must be an integer" in proc.stderr
    assert not r.hexists("cti_queue_dialer_task@template", "t9")           # refused before writing
    published()
    cli("task", "set", "t9", "-", stdin=json.dumps(TASK))
    assert ("config@all", {"type": "config_change", "table": "cti_queue_dialer_task", "key": "t9"}) in published()
    daemon.wait_log("task 't9' loaded")
    cli("queue", "push", "--task", "t9", "81001", "81002")
    wait_for(lambda: len(results(r)) == 2, 10)
    assert [o.number for o in sim.originates()] == ["81001", "81002"]
    cli("task", "disable", "t9", "--host", "fs1")
    assert ("config@fs1", {"type": "config_change", "table": "cti_queue_dialer_task", "key": "t9"}) in published()
    daemon.wait_log("task 't9' loaded (template+host): limit=3 enable=False")
    shown = json.loads(cli("task", "show", "t9", "--json").stdout)
    assert shown["effective"]["enable"] is False and shown["host"] == {"params": {"enable": False}}
    listed = json.loads(cli("task", "list", "--json").stdout)
    assert listed["t9"]["params"]["limit"] == 3
    cli("task", "enable", "t9", "--host", "fs1")
    cli("task", "delete", "t9")
    assert not r.hexists("cti_queue_dialer_task@template", "t9")


def test_line_group_and_schedule_config_commands(r, cli, published):
    assert "gateway is missing" in cli("line", "set", "l9", '{"params": {"limit": 1}}', ok=False).stderr
    cli("line", "set", "l9", '{"params": {"gateway": "sofia/gateway/gw9/", "limit": 4}}')
    cli("line", "disable", "l9")
    assert json.loads(r.hget("cti_line@%s" % DOMAIN, "l9"))["params"]["enable"] is False
    cli("group", "set", "g9", '{"lines": ["l9"]}')
    assert "lines must be" in cli("group", "set", "g8", '{"lines": []}', ok=False).stderr
    cli("schedule-config", "set", "c9", '{"params": {"line_group": ["g9"], "destination_extension": "1"}}')
    assert json.loads(cli("schedule-config", "list", "--json").stdout) == {
        "c9": {"params": {"line_group": ["g9"], "destination_extension": "1"}}}
    tables = [m["table"] for _, m in published()]
    assert tables == ["cti_line", "cti_line", "cti_line_group", "cti_schedule_dialer_config"]
    cli("line", "delete", "l9")
    assert not r.hexists("cti_line@%s" % DOMAIN, "l9")


def test_csv_import_reports_bad_rows_and_keeps_order(r, cli, tmp_path):
    rows = ["number,id,customer", "82001,,alice", "82002,o-2,bob", "1000 &system(x),,eve", ",,nobody",
            "82003,,carol;x}", "82004,,dave"]
    csv_file = tmp_path / "numbers.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    proc = cli("queue", "import", "--queue", "queue:csv", str(csv_file))
    assert "imported 3 number(s) into queue:csv; 3 bad row(s) skipped" in proc.stdout
    assert "line 4:" in proc.stderr and "line 5:" in proc.stderr and "line 6:" in proc.stderr
    entries = [json.loads(x) for x in reversed(r.lrange("queue:csv", 0, -1))]
    assert [e["params"]["number"] for e in entries] == ["82001", "82002", "82004"]
    assert entries[1]["params"]["id"] == "o-2" and entries[1]["variables"] == {"customer": "bob"}
    assert json.loads(cli("queue", "length", "--queue", "queue:csv", "--json").stdout)["length"] == 3
    out = cli("queue", "export", "--queue", "queue:csv").stdout.splitlines()
    assert out[0] == "number,id,customer" and out[1:] == ["82001,,alice", "82002,o-2,bob", "82004,,dave"]


def test_schedule_status_results_and_test_calls(r, sim, daemon, cli):
    basic_setup(r)
    sim.script_number("83002", Outcome.busy())
    put_task(r, "t1", task_params())
    cli("schedule-config", "set", "c1", '{"params": {"line_group": ["g1"], "destination_extension": "1"}}')
    cli("schedule", "add", "83001", "--at", "+0.5", "--config", "c1", "--expires", "+600")
    listed = json.loads(cli("schedule", "list", "--json").stdout)
    assert listed[0][1]["params"]["number"] == "83001"
    push(r, "queue:t1", "83002")
    wait_for(lambda: len(results(r)) == 2, 10)
    busy = json.loads(cli("results", "--cause", "user_busy", "--json").stdout)
    assert busy["number"] == "83002" and busy["cause"] == "USER_BUSY"
    by_config = cli("results", "--task", "c1").stdout
    assert "83001" in by_config and "83002" not in by_config
    proc = cli("call", "83003", "--task", "t1", "--json")
    rec = json.loads(proc.stdout)
    assert rec["number"] == "83003" and rec["answered"] == "1" and rec["task"] == "t1"
    proc = cli("call", "83004", "--line", "l1", "--extension", "9196")
    assert "83004" in proc.stdout and "NORMAL_CLEARING" in proc.stdout
    assert sim.originates()[-1].extension == "9196" and sim.originates()[-1].endpoint == "gw1"
    assert not any(k.startswith(b"cti-test-") for k in r.hkeys("cti_schedule_dialer_config@%s" % DOMAIN))
    # The status record is rewritten every heartbeat: wait for the one after the test calls.
    host = wait_for(lambda: (lambda h: h if h["tasks"].get("t1", {}).get("dialed", 0) >= 2 else None)(
        json.loads(cli("status", "--json").stdout)["hosts"]["fs1"]), 10, message="status showing both calls")
    assert host["alive"] and host["daemon"]["esl"] == "connected"
    assert host["tasks"]["t1"]["state"] == "running"
    assert "lines in use" in cli("status").stdout


def test_sd_notify_watchdog_reload_and_stop(r, sim, daemon_factory, tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    d = daemon_factory(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})

    def until(prefix):
        while True:
            message = sock.recv(4096).decode()
            if message.startswith(prefix):
                return message
    ready = until("READY=1")
    assert "STATUS=" in ready and "ESL up" in ready
    assert until("WATCHDOG=1") == "WATCHDOG=1"
    assert "task(s) running" in until("STATUS=")
    d.cfg.write_text(d.cfg.read_text().replace("level = DEBUG", "level = INFO").replace(
        "idle_poll_interval = 0.05", "idle_poll_interval = 0.1").replace("host = fs1", "host = fs1\nclaim_batch = 7"))
    d.proc.send_signal(signal.SIGHUP)
    assert until("RELOADING=1") == "RELOADING=1"
    assert until("READY=1")
    d.wait_log("changed dialer.idle_poll_interval, dialer.claim_batch, log.level")
    d.proc.send_signal(signal.SIGTERM)
    assert until("STOPPING=1") == "STOPPING=1"
    assert d.proc.wait(15) == 0
    sock.close()


def test_sighup_names_settings_that_need_a_restart(r, sim, daemon):
    daemon.cfg.write_text(daemon.cfg.read_text().replace("port = %d" % sim.port, "port = 1"))
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_log("needing a restart (ignored): esl.port")
    basic_setup(r)
    put_task(r, "t1", task_params())
    push(r, "queue:t1", "84001")
    wait_for(lambda: results(r), 10)        # still on the switch it started with


def test_metrics_endpoint_during_a_run(r, sim, daemon_factory):
    port = free_port()
    sim.script_number("85002", Outcome.busy())
    daemon_factory(extra={"metrics": {"listen": "127.0.0.1:%d" % port}})
    basic_setup(r)
    put_task(r, "t1", task_params())
    push(r, "queue:t1", "85001", "85002", "85003")
    wait_for(lambda: len(results(r)) == 3, 10)
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert samples[("cti_dialer_calls_started_total", (("task", "t1"),))] == 3
    assert samples[("cti_dialer_calls_answered_total", (("task", "t1"),))] == 2
    assert samples[("cti_dialer_calls_failed_total", (("cause", "USER_BUSY"), ("task", "t1")))] == 1
    assert samples[("cti_dialer_esl_up", ())] == 1 and samples[("cti_dialer_redis_up", ())] == 1
    assert samples[("cti_dialer_originate_latency_seconds_count", ())] == 3
    assert samples[("cti_dialer_esl_connects_total", ())] >= 1
    assert ("cti_dialer_line_active_calls", (("line", "l1"),)) in samples


def test_json_logs_one_line_per_call_event_and_never_the_password(r, daemon_factory):
    from cti_dialer.fsim import FreeSwitchSimulator
    secret = "Sw1tch-s3cret"
    sim2 = FreeSwitchSimulator(host="127.0.0.1", port=0, password=secret)
    sim2.start_in_thread()
    try:
        d = daemon_factory(esl_port=sim2.port, extra={"esl": {"password": secret},
                                                      "log": {"format": "json", "level": "INFO"}})
        basic_setup(r)
        put_task(r, "t1", task_params())
        push(r, "queue:t1", "86001")
        wait_for(lambda: len(results(r)) == 1, 10)
        d.stop()
        records = [json.loads(line) for line in d.log().splitlines() if line.strip()]
        messages = [x["msg"] for x in records]
        assert any(m.startswith("originate 86001 task=t1") for m in messages)
        assert any(m.startswith("answered 86001 task=t1") for m in messages)
        assert any(m.startswith("call 86001 task=t1") and "cause=NORMAL_CLEARING" in m for m in messages)
        assert all({"ts", "level", "logger", "msg"} <= set(x) for x in records)
        assert secret not in d.log()
    finally:
        sim2.stop_thread()

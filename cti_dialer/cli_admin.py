"""Admin subcommands of ``cti-dialer``: everything through Redis, each change published."""
import json
import sys
import time

import click

from . import keys as keymod, messages, settings
from .admin import Admin, AdminError, parse_time


def load_config(path):
    """The config file's settings, or a click error naming the bad key."""
    try:
        return settings.load(path)
    except settings.SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _admin(config_path):
    from .store import connect
    config = load_config(config_path)
    return Admin(connect(config), config)


def _run(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except AdminError as exc:
        raise click.ClickException(str(exc)) from None


def _out(data, as_json, human=None):
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True))
    elif human is not None:
        human(data)
    else:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True))


def _published(reply):
    channel, receivers = reply
    click.echo("published config_change on %s (%d daemon(s) listening)" % (channel, receivers))


def _read_json_arg(value):
    """The JSON argument itself, or '-' for standard input, or @FILE."""
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        with open(value[1:], encoding="utf-8") as fh:
            return fh.read()
    return value


def _vars(pairs):
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter("%r is not NAME=VALUE" % pair, param_hint="--var")
        out[name] = value
    return out


config_option = click.option(
    "-c", "--config", "config_path", envvar="CTI_DIALER_CONFIG", type=click.Path(dir_okay=False), default=None,
    help="INI config file (also CTI_DIALER_CONFIG). Every key is optional.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
host_option = click.option("--host", default=None,
                           help="Work on cti_queue_dialer_task@HOST instead of @template (and notify config@HOST).")


def register(main):
    """Add the admin commands to the top-level group."""

    @main.group()
    def task():
        """Queue dialer tasks (cti_queue_dialer_task@template / @HOST)."""

    @task.command("list")
    @config_option
    @host_option
    @json_option
    def task_list(config_path, host, as_json):
        """List tasks of the template (or of --host)."""
        data = _run(_admin(config_path).task_list, host)

        def human(d):
            for name, doc in d.items():
                params = doc.get("params", {}) if isinstance(doc, dict) else {}
                click.echo("%-24s enable=%-5s limit=%-5s queue=%s" % (
                    name, params.get("enable", "-"), params.get("limit", "-"), params.get("number_queue", "-")))
        _out(data, as_json, human)

    @task.command("show")
    @config_option
    @host_option
    @json_option
    @click.argument("name")
    def task_show(config_path, host, as_json, name):
        """Show a task's template and host entries and how the host runs it."""
        _out(_run(_admin(config_path).task_show, name, host), True)

    @task.command("set")
    @config_option
    @host_option
    @click.argument("name")
    @click.argument("task_json")
    def task_set(config_path, host, name, task_json):
        """Validate TASK_JSON ('-' for stdin, @FILE) and write it; a bad task is refused with the reason."""
        _published(_run(_admin(config_path).task_set, name, _read_json_arg(task_json), host))

    @task.command("delete")
    @config_option
    @host_option
    @click.argument("name")
    def task_delete(config_path, host, name):
        """Delete a task (calls already up finish)."""
        _published(_run(_admin(config_path).task_delete, name, host))

    for verb, flag in (("enable", True), ("disable", False)):
        def make(flag=flag, verb=verb):
            @task.command(verb, help="%s a task (with --host: for that host only)." % verb.capitalize())
            @config_option
            @host_option
            @click.argument("name")
            def cmd(config_path, host, name):
                _published(_run(_admin(config_path).task_enable, name, flag, host))
        make()

    for kind in ("line", "group", "schedule-config"):
        _register_table(main, kind)

    @main.group()
    def queue():
        """Number queues (Redis lists)."""

    target = [click.option("--task", default=None, help="The task whose number_queue to use."),
              click.option("--queue", "queue_name", default=None, help="A queue key, directly.")]

    def with_target(fn):
        for opt in reversed(target):
            fn = opt(fn)
        return fn

    @queue.command("push")
    @config_option
    @with_target
    @click.option("--var", "variables", multiple=True, help="Channel variable NAME=VALUE (repeatable).")
    @click.option("--id", "entry_id", default=None, help="Idempotency id (params.id).")
    @click.argument("numbers", nargs=-1, required=True)
    def queue_push(config_path, task, queue_name, variables, entry_id, numbers):
        """Add numbers; the first given is dialed first."""
        admin = _admin(config_path)
        entries = [_run(admin.entry, n, _vars(variables), entry_id) for n in numbers]
        name, count = _run(admin.queue_push, entries, task, queue_name)
        click.echo("pushed %d number(s) to %s" % (count, name))

    @queue.command("import")
    @config_option
    @with_target
    @click.argument("csv_file", type=click.File("r", encoding="utf-8-sig"))
    def queue_import(config_path, task, queue_name, csv_file):
        """Import a CSV: a 'number' column, an optional 'id', other columns become variables.

        Bad rows are reported with their line numbers; good rows are imported.
        """
        admin = _admin(config_path)
        total = None
        if csv_file is not sys.stdin and hasattr(csv_file, "name"):
            with open(csv_file.name, encoding="utf-8-sig") as fh:
                total = max(0, sum(1 for _ in fh) - 1)
        with click.progressbar(length=total or 0, label="importing", file=sys.stderr,
                               show_pos=True) as bar:
            name, imported, bad = _run(admin.queue_import, csv_file, task, queue_name,
                                       progress=bar.update if total else None)
        for line, reason in bad:
            click.echo("line %d: %s" % (line, reason), err=True)
        click.echo("imported %d number(s) into %s; %d bad row(s) skipped" % (imported, name, len(bad)))
        if bad:
            sys.exit(1 if not imported else 0)

    @queue.command("export")
    @config_option
    @with_target
    @click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-", help="CSV file (default stdout).")
    def queue_export(config_path, task, queue_name, output):
        """Write the queue as CSV, in dialing order."""
        count = _run(_admin(config_path).queue_export, output, task, queue_name)
        click.echo("exported %d row(s)" % count, err=True)

    @queue.command("length")
    @config_option
    @with_target
    @json_option
    def queue_length(config_path, task, queue_name, as_json):
        """How many numbers wait in the queue."""
        name, length = _run(_admin(config_path).queue_length, task, queue_name)
        _out({"queue": name, "length": length}, as_json, lambda d: click.echo(d["length"]))

    @main.group()
    def schedule():
        """Scheduled calls (cti_schedule_dialer_number@DOMAIN)."""

    @schedule.command("add")
    @config_option
    @click.argument("number")
    @click.option("--at", "at", required=True, help="When: unix time, +SECONDS, or 'YYYY-MM-DD HH:MM' (local zone).")
    @click.option("--config", "schedule_config", required=True, help="Schedule config name.")
    @click.option("--expires", default=None, help="Do not call after this time (same forms as --at).")
    @click.option("--var", "variables", multiple=True, help="Channel variable NAME=VALUE (repeatable).")
    @click.option("--id", "entry_id", default=None, help="Idempotency id (params.id).")
    def schedule_add(config_path, number, at, schedule_config, expires, variables, entry_id):
        """Schedule one call."""
        admin = _admin(config_path)
        when = _run(parse_time, at, admin.tz)
        until = _run(parse_time, expires, admin.tz) if expires else 0
        raw = _run(admin.schedule_add, number, when, schedule_config, until, _vars(variables), entry_id)
        click.echo("scheduled at %s: %s" % (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)), raw))

    @schedule.command("list")
    @config_option
    @click.option("--count", default=50, show_default=True)
    @click.option("--due", is_flag=True, help="Only members already due.")
    @json_option
    def schedule_list(config_path, count, due, as_json):
        """The earliest scheduled members."""
        data = _run(_admin(config_path).schedule_list, count, due)

        def human(d):
            for score, member in d:
                click.echo("%s  %s" % (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(score)),
                                       json.dumps(member, ensure_ascii=False)))
        _out(data, as_json, human)

    @main.command()
    @config_option
    @json_option
    @click.option("--watch", type=float, default=None, metavar="SECONDS", help="Refresh every SECONDS until Ctrl-C.")
    def status(config_path, as_json, watch):
        """Per host and per task: state, calls up, queue, dialed/answered/failed; lines in use."""
        admin = _admin(config_path)
        while True:
            data = admin.status()
            if watch and not as_json:
                click.clear()
            _out(data, as_json, _print_status)
            if not watch:
                return
            time.sleep(watch)

    @main.command()
    @config_option
    @json_option
    @click.option("--task", default=None, help="Only this task (or schedule config).")
    @click.option("--cause", default=None, help="Only this hangup cause.")
    @click.option("--count", default=20, show_default=True, help="How many of the newest.")
    @click.option("--follow", "-f", is_flag=True, help="Keep printing new results until Ctrl-C.")
    def results(config_path, as_json, task, cause, count, follow):
        """The newest results (cti_dialer_result@DOMAIN), filtered."""
        admin = _admin(config_path)
        after = admin.last_result_id()
        for rec in reversed(admin.results(count, task, cause)):
            _print_result(rec, as_json)
        while follow:
            for rec in admin.results(task=task, cause=cause, after=after):
                after = rec["_id"]
                _print_result(rec, as_json)

    @main.command()
    @config_option
    @json_option
    @click.argument("number")
    @click.option("--task", default=None, help="Dial through this task's queue, limits, window and lines.")
    @click.option("--line", default=None, help="Dial on this line (through a running daemon's line limits).")
    @click.option("--extension", default="9999", show_default=True, help="Destination extension (--line).")
    @click.option("--context", default="default", show_default=True, help="Destination context (--line).")
    @click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for the outcome.")
    def call(config_path, as_json, number, task, line, extension, context, timeout):
        """One test call now through a running daemon; waits for and prints its outcome."""
        if bool(task) == bool(line):
            raise click.UsageError("give exactly one of --task and --line")
        rec = _run(_admin(config_path).test_call, number, task=task, line=line, extension=extension,
                   context=context, timeout=timeout)
        _print_result(rec, as_json)
        if rec.get("answered") != "1":
            sys.exit(3)

    @main.command()
    @config_option
    @click.option("--table", required=True, type=click.Choice(keymod.CONFIG_TABLES),
                  help="The table that changed (the key name before '@').")
    @click.option("--key", default=None, help="The hash field that changed; omit to reload the table.")
    @click.option("--host", "target", default=None, help="Notify config@HOST instead of config@all.")
    def notify(config_path, table, key, target):
        """Publish a config_change so running daemons reload."""
        channel, receivers = _run(_admin(config_path).notify, table, key, target)
        click.echo("published to %s (%d receiver(s)): %s" % (
            channel, receivers, messages.config_change(table, key).decode()))


def _register_table(main, kind):
    noun = {"line": "Lines (cti_line@DOMAIN).", "group": "Line groups (cti_line_group@DOMAIN).",
            "schedule-config": "Schedule configs (cti_schedule_dialer_config@DOMAIN)."}[kind]
    group = click.Group(kind, help=noun)
    main.add_command(group)

    @group.command("list")
    @config_option
    @json_option
    def list_(config_path, as_json):
        _out(_run(_admin(config_path).entry_list, kind), as_json)

    @group.command("show")
    @config_option
    @click.argument("name")
    def show(config_path, name):
        _out(_run(_admin(config_path).entry_show, kind, name), True)

    @group.command("set")
    @config_option
    @click.argument("name")
    @click.argument("value_json")
    def set_(config_path, name, value_json):
        """Validate VALUE_JSON ('-' for stdin, @FILE) and write it; refused with the reason when bad."""
        _published(_run(_admin(config_path).entry_set, kind, name, _read_json_arg(value_json)))

    @group.command("delete")
    @config_option
    @click.argument("name")
    def delete(config_path, name):
        _published(_run(_admin(config_path).entry_delete, kind, name))

    list_.help, show.help, delete.help = "List all.", "Show one as JSON.", "Delete one."
    if kind == "line":
        for verb, flag in (("enable", True), ("disable", False)):
            def make(flag=flag, verb=verb):
                @group.command(verb, help="%s a line on every host." % verb.capitalize())
                @config_option
                @click.argument("name")
                def cmd(config_path, name):
                    _published(_run(_admin(config_path).line_enable, name, flag))
            make()


def _print_status(data):
    for host, info in data["hosts"].items():
        d = info["daemon"]
        click.echo("host %s: %s, esl %s, %s call(s) up, heartbeat %s" % (
            host, d.get("state", "?") if info["alive"] else "NOT ALIVE", d.get("esl", "?"),
            d.get("active_calls", "?"), time.strftime("%H:%M:%S", time.localtime(float(d.get("heartbeat", 0))))))
        for name, t in sorted(info["tasks"].items()):
            if not isinstance(t, dict):
                continue
            click.echo("  %-20s %-9s up %3s/%-4s queued %-6s redials %-4s dialed %-6s answered %-6s failed %-6s %s" % (
                name, t.get("state"), t.get("active"), t.get("limit"), t.get("queued"), t.get("redials_pending"),
                t.get("dialed"), t.get("answered"), t.get("failed"), t.get("reason") or ""))
    if data["lines_in_use"]:
        click.echo("lines in use: " + ", ".join("%s=%d" % kv for kv in sorted(data["lines_in_use"].items())))
    for line, fault in sorted(data.get("line_faults", {}).items()):
        until = fault["out_of_service_until"]
        click.echo("line %s: %s, %d consecutive failed call(s)" % (
            line, "OUT OF SERVICE, next probe %s" % time.strftime("%H:%M:%S", time.localtime(until))
            if until is not None else "in service", fault["consecutive_failures"]))


def _print_result(rec, as_json):
    if as_json:
        click.echo(json.dumps(rec, ensure_ascii=False, sort_keys=True))
        return
    ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(rec.get("ts", 0))))
    click.echo("%s %-8s %-16s %-20s %-24s answered=%s billsec=%s line=%s attempt=%s" % (
        ts, rec.get("host", ""), rec.get("task", rec.get("config", "")), rec.get("number", ""),
        rec.get("cause", ""), rec.get("answered", ""), rec.get("billsec", ""), rec.get("line", ""),
        rec.get("attempt", "")))

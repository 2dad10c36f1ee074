"""The ``cti-dialer`` command: a thin click layer over the daemon and the settings."""
import json
import logging
import sys

import click

from . import __version__, settings
from .cli_admin import config_option, load_config, register


class _JsonFormatter(logging.Formatter):
    def format(self, record):
        doc = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(level="INFO", fmt="text"):
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cti-dialer")
def main():
    """Outbound dialer for FreeSWITCH, driven through Redis."""


@main.command()
@config_option
def run(config_path):
    """Run the daemon in the foreground until SIGTERM or SIGINT."""
    # Patch before redis or anything socket-related is imported by the daemon.
    from gevent import monkey
    monkey.patch_all()
    config = load_config(config_path)
    setup_logging(config.log_level, config.log_format)
    from .daemon import Daemon
    sys.exit(Daemon(config, config_path=config_path,
                    on_reload=lambda c: setup_logging(c.log_level, c.log_format)).run())


@main.command("check-config")
@config_option
def check_config(config_path):
    """Validate the config file and print the effective settings (password hidden)."""
    config = load_config(config_path)
    for setting in settings.SETTINGS:
        value = config.get(setting.section, setting.key)
        if setting.key in ("password", "sentinel_password", "tokens"):
            value = "***"
        click.echo("[%s] %s = %s" % (setting.section, setting.key, value))


@main.command("example-config")
def example_config():
    """Print a commented example config with every key and its default."""
    click.echo(settings.render_example(), nl=False)


@main.command("settings-doc", hidden=True)
def settings_doc():
    """Print docs/configuration.rst (generated from the settings registry)."""
    click.echo(settings.render_rst(), nl=False)


@main.command()
@click.option("--numbers", default=200, show_default=True, help="How many numbers to dial.")
@click.option("--keep", is_flag=True, help="Leave Redis and the simulator running at the end (Ctrl-C stops).")
def demo(numbers, keep):
    """Dial through an embedded Redis and the bundled FreeSWITCH simulator.

    Needs nothing installed: shows tasks, lines, failover and results end to end.
    """
    from .demo import run_demo
    sys.exit(run_demo(numbers=numbers, keep=keep))


@main.command("api")
@config_option
def api(config_path):
    """Serve the HTTP API ([api] listen) in the foreground until SIGTERM or SIGINT."""
    # Patched before redis, werkzeug or anything socket-related is imported.
    from gevent import monkey
    monkey.patch_all()
    config = load_config(config_path)
    setup_logging(config.log_level, config.log_format)
    from .api.server import serve
    sys.exit(serve(config))


@main.command("fsim")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8021, show_default=True)
@click.option("--password", default="ClueCon", show_default=True)
@click.option("--script", "script_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON outcome script (see docs).")
def fsim(host, port, password, script_path):
    """Run the bundled FreeSWITCH event-socket simulator."""
    from .fsim.__main__ import main as fsim_main
    argv = ["--host", host, "--port", str(port), "--password", password]
    if script_path:
        argv += ["--script", script_path]
    sys.exit(fsim_main(argv))


register(main)


if __name__ == "__main__":  # pragma: no cover
    main()

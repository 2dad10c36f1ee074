import pathlib

import pytest

from cti_dialer import settings

pytestmark = pytest.mark.unit
ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("setting", settings.SETTINGS, ids=lambda s: s.name)
def test_every_default_validates(setting):
    setting.validator(setting.default_text())


def test_example_in_conf_is_generated_from_settings():
    assert (ROOT / "conf" / "cti-dialer.ini").read_text() == settings.render_example()


def test_reference_in_docs_is_generated_from_settings():
    text = (ROOT / "docs" / "configuration.rst").read_text()
    assert text == settings.render_rst()
    for setting in settings.SETTINGS:
        assert "``%s``" % setting.key in text, setting.name


def test_empty_config_gives_defaults():
    config = settings.load(text="")
    assert config.dialer_domain == "default"
    assert config.esl_port == 8021
    assert config.redis_url == "redis://127.0.0.1:6379/0"
    assert config.dialer_host == settings.default_host()


def test_design_example_loads():
    config = settings.load(text="""
[dialer]
host = fs1              ; default: short host name
domain = example.com    ; default: default
timezone = Asia/Shanghai ; default: the system's local zone
[redis]
url = redis://127.0.0.1:6379/0
[esl]
host = 127.0.0.1
port = 8021
password = ClueCon
""")
    assert config.dialer_host == "fs1" and config.dialer_domain == "example.com"
    assert str(config.dialer_timezone) == "Asia/Shanghai"


@pytest.mark.parametrize("text, fragment", [
    ("[esl]\nport = 70000\n", "[esl] port"),
    ("[dialer]\ntimezone = Mars/Base\n", "unknown time zone"),
    ("[dialer]\nhost = a b\n", "[dialer] host"),
    ("[dialer]\nnope = 1\n", "unknown setting [dialer] nope"),
    ("[redis]\nurl = http://x\n", "redis://"),
])
def test_bad_values_name_the_key(text, fragment):
    with pytest.raises(settings.SettingsError) as err:
        settings.load(text=text)
    assert fragment in str(err.value)

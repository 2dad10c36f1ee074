import json

import pytest

from cti_dialer import model

pytestmark = pytest.mark.unit


def test_parse_scheduled():
    sn = model.parse_scheduled(json.dumps({"params": {"number": "138", "expires": 1700000000, "config": "c"},
                                           "variables": {"a": "1"}}).encode())
    assert (sn.entry.number, sn.config, sn.expires, dict(sn.entry.variables)) == ("138", "c", 1700000000.0,
                                                                                  {"a": "1"})
    assert model.parse_scheduled('{"params": {"number": "1", "config": "c"}}').expires == 0


@pytest.mark.parametrize("raw, reason", [
    ("138", "must be JSON"),
    ('{"params": {"number": "1"}}', "params.config"),
    ('{"params": {"number": "1", "config": ""}}', "params.config"),
    ('{"params": {"number": "1", "config": "c", "expires": -1}}', "expires"),
    ('{"params": {"number": "1", "config": "c", "expires": "soon"}}', "expires"),
    ('{"params": {"number": "1 2", "config": "c"}}', "space"),
])
def test_parse_scheduled_errors(raw, reason):
    with pytest.raises(model.ModelError) as err:
        model.parse_scheduled(raw)
    assert reason in str(err.value)


def test_schedule_config():
    cfg = model.parse_schedule_config("c", json.dumps({
        "params": {"line_group": ["g1", "g2"], "destination_extension": "8888"},
        "variables": {"absolute_codec_string": "pcma,pcmu"}}))
    assert cfg.line_groups == ("g1", "g2") and cfg.dialplan == "XML" and cfg.context == "default"
    assert cfg.variable_layers() == ((("absolute_codec_string", "pcma,pcmu"),),)
    for doc, reason in [({"params": {"destination_extension": "1"}}, "line_group is missing"),
                        ({"params": {"line_group": ["g"]}}, "destination_extension is missing"),
                        ({"params": {"line_group": ["g"], "destination_extension": "1", "limit": 3}},
                         "unknown params limit"),
                        ({"params": {"line_group": ["g"], "destination_extension": "1"},
                          "variables": {"a b": "1"}}, "a b")]:
        with pytest.raises(model.ModelError) as err:
            model.parse_schedule_config("c", json.dumps(doc))
        assert reason in str(err.value)

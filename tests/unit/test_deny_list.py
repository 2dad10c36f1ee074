"""The channel variables refused by layer (deny_list.DENIED_VARIABLES)."""
import json
import zoneinfo

import pytest

from cti_dialer import deny_list, model

pytestmark = pytest.mark.unit
TZ = zoneinfo.ZoneInfo("Asia/Shanghai")

# Written out rather than read from DENIED_VARIABLES, so that changing the list
# means changing these too; prefix entries get names longer than the prefix.
REDIAL = [
    "originate_retries", "originate_retry_sleep_ms", "originate_retry_min_period_ms",
    "originate_retry_timeout", "originate_continue_on_timeout",
]
NUMBER_ENTRIES_ONLY = [
    "execute_on_answer", "execute_on_answer_2", "execute_on_originate", "execute_on_post_bridge",
    "api_on_answer", "api_on_pre_originate", "api_after_bridge", "api_before_bridge",
    "api_hangup_hook", "api_reporting_hook", "session_in_hangup_hook",
    "exec_after_bridge_app", "exec_after_bridge_arg",
    "bridge_pre_execute_aleg_app", "bridge_pre_execute_bleg_data", "bridge_pre_execute_app",
    "record_post_process_exec_app", "record_post_process_exec_api",
    "group_confirm_key", "group_confirm_file", "origination_nested_vars",
    "transfer_after_bridge", "park_after_bridge", "hangup_after_bridge",
    "continue_on_fail", "failure_causes", "transfer_on_fail",
    "campon", "campon_retries", "campon_fallback_exten",
    "export_vars", "bridge_export_vars",
    "origination_uuid", "ent_originate_aleg_uuid", "no_throttle_limits", "hangup_complete_with_xml",
]
# FreeSWITCH matches names without regard to case; switch_channel_process_export()
# drops a leading "_nolocal_".
SPELLINGS = [str, str.upper, str.title, lambda name: "_nolocal_" + name, lambda name: "_NoLocal_" + name]

BASE = {"line_group": ["g1"], "limit": 1, "number_queue": "q", "destination_extension": "8888"}


def number_entry(variables):
    return json.dumps({"params": {"number": "1000"}, "variables": variables})


def schedule_member(variables):
    return json.dumps({"params": {"number": "1000", "config": "c"}, "variables": variables})


OPERATOR_LAYERS = {
    "task@template": lambda v: dict(model.merge_task("t", json.dumps({"params": BASE, "variables": v}),
                                                     None, TZ).template_variables),
    "task@host": lambda v: dict(model.merge_task("t", json.dumps({"params": BASE}),
                                                 json.dumps({"variables": v}), TZ).host_variables),
    "line": lambda v: dict(model.parse_line("l", json.dumps({"params": {"gateway": "sofia/gateway/gw1/",
                                                                        "limit": 1}, "variables": v})).variables),
    "schedule config": lambda v: dict(model.parse_schedule_config("c", json.dumps({
        "params": {"line_group": ["g1"], "destination_extension": "8888"}, "variables": v})).variables),
}


def test_every_entry_is_tested():
    tested = {}
    for name in REDIAL + NUMBER_ENTRIES_ONLY:
        entry = deny_list.denied_variable(name)
        assert entry is not None, name
        assert (entry[1] == deny_list.EVERY_LAYER) == (name in REDIAL), name
        tested[entry[0]] = name
    assert set(tested) == {entry[0] for entry in deny_list.DENIED_VARIABLES}


@pytest.mark.parametrize("spell", SPELLINGS)
@pytest.mark.parametrize("name", REDIAL + NUMBER_ENTRIES_ONLY)
@pytest.mark.parametrize("parse, raw", [(model.parse_number, number_entry),
                                        (model.parse_scheduled, schedule_member)])
def test_refused_from_number_entries(parse, raw, name, spell):
    written = spell(name)
    with pytest.raises(model.ModelError) as err:
        parse(raw({"customer": "c-1", written: "1"}))
    message = str(err.value)
    assert message.startswith("number entry variables: %r is not allowed" % written)
    assert deny_list.denied_variable(name)[2] in message


@pytest.mark.parametrize("layer", sorted(OPERATOR_LAYERS))
@pytest.mark.parametrize("name", REDIAL)
def test_redial_family_refused_from_operators(layer, name):
    with pytest.raises(model.ModelError) as err:
        OPERATOR_LAYERS[layer]({name.upper(): "3"})
    assert "%r is not allowed in any variables: it makes FreeSWITCH dial the number again" % name.upper() \
        in str(err.value)


@pytest.mark.parametrize("layer", sorted(OPERATOR_LAYERS))
@pytest.mark.parametrize("name", NUMBER_ENTRIES_ONLY)
def test_others_allowed_from_operators(layer, name):
    assert OPERATOR_LAYERS[layer]({name: "info"}) == {name: "info"}


@pytest.mark.parametrize("name", [
    # Read by switch_ivr_originate() but never dial again: they only bound or
    # end the one attempt.
    "originate_timeout", "leg_timeout", "leg_progress_timeout", "progress_timeout", "call_timeout",
    "fail_on_single_reject", "hangup_on_single_reject", "ignore_early_media",
    "origination_caller_id_number", "origination_caller_id_name",
    # Near misses of the prefixes: FreeSWITCH's prefix match does not see them.
    "execute_on", "my_execute_on_answer", "api", "x_api_on_answer", "campo", "nolocal_export_vars",
])
def test_harmless_variables_allowed_from_number_entries(name):
    assert dict(model.parse_number(number_entry({name: "30"})).variables) == {name: "30"}

"""The channel variables operators and upstream systems may not set, with the reason and where FreeSWITCH acts on them.

Data and one lookup, no I/O: ``model`` refuses what matches, with the reason
in the rejected record.
"""

# Channel variables that make FreeSWITCH dial again or elsewhere, or run
# something (sources: signalwire/freeswitch).  FreeSWITCH looks variables up
# without regard to case, and switch_channel_execute_on() and
# switch_channel_api_on() (switch_channel.c) fire every variable whose name
# starts with the hook's name ("execute_on_answer_2" runs like
# "execute_on_answer"): a pattern ending in "*" matches by prefix.
#
# EVERY_LAYER entries are refused from tasks, lines and schedule configs too:
# one attempt must be one dial, because the dialer's own redial strategy
# counts attempts.  NUMBER_ENTRIES entries are refused from queue entries and
# schedule members only (upstream systems, the least trusted writers):
# operators set hooks on purpose and may keep them.
EVERY_LAYER, NUMBER_ENTRIES = "every layer", "number entries"

_REDIAL = "makes FreeSWITCH dial the number again inside one originate (the dialer counts attempts and redials itself)"
_RUNS_APP = "makes FreeSWITCH run an application on the call"
_RUNS_API = "makes FreeSWITCH run an API command"
_BRIDGE_ENDS = "decides where the call goes when a bridge in the dialplan ends"
_BRIDGE_FAILS = "decides where the call goes when a bridge in the dialplan fails"

DENIED_VARIABLES = (
    # switch_ivr_originate.c, switch_ivr_originate(): the "for (try ...)" loop
    # dials the whole dial string again, with the same origination_uuid.
    ("originate_retries", EVERY_LAYER, _REDIAL),
    # same function: the pause between those dials.
    ("originate_retry_sleep_ms", EVERY_LAYER, _REDIAL),
    # same function: the least time between the starts of two of those dials.
    ("originate_retry_min_period_ms", EVERY_LAYER, _REDIAL),
    # same function: lifts the 100-dial cap and keeps dialing until it expires.
    ("originate_retry_timeout", EVERY_LAYER, _REDIAL),
    # same function: after a timeout, goes on to the next target or try
    # instead of ending the originate.
    ("originate_continue_on_timeout", EVERY_LAYER, _REDIAL),

    # switch_channel.c, switch_channel_execute_on(): fired on ring, pre-answer,
    # media and answer (switch_channel.c), originate, pre/post originate,
    # pickup and orphaned b-leg (switch_ivr_originate.c), pre/post bridge
    # (switch_ivr_bridge.c), tone detection...
    ("execute_on_*", NUMBER_ENTRIES, _RUNS_APP),
    # switch_channel.c, switch_channel_api_on(): same events.
    ("api_on_*", NUMBER_ENTRIES, _RUNS_API),
    # switch_ivr_bridge.c, audio_bridge_thread(): switch_channel_api_on() with
    # SWITCH_API_BRIDGE_END_VARIABLE; SWITCH_API_BRIDGE_START_VARIABLE
    # (switch_types.h) is its counterpart when the bridge starts.
    ("api_after_bridge*", NUMBER_ENTRIES, _RUNS_API),
    ("api_before_bridge*", NUMBER_ENTRIES, _RUNS_API),
    # switch_core_state_machine.c, switch_core_session_hangup_state() and
    # switch_core_session_reporting_state(), through api_hook().
    ("api_hangup_hook", NUMBER_ENTRIES, _RUNS_API),
    ("api_reporting_hook", NUMBER_ENTRIES, _RUNS_API),
    # same functions: runs those two hooks with the call's session.
    ("session_in_hangup_hook", NUMBER_ENTRIES, "gives the hangup API hooks the call's session to act on"),
    # switch_ivr_bridge.c, audio_bridge_thread(): the application (and its
    # argument) run on the leg once the bridge ends.
    ("exec_after_bridge_app", NUMBER_ENTRIES, _RUNS_APP),
    ("exec_after_bridge_arg", NUMBER_ENTRIES, _RUNS_APP),
    # switch_ivr_bridge.c, switch_ivr_multi_threaded_bridge() copies
    # bridge_pre_execute_{a,b}leg_{app,data} into bridge_pre_execute_{app,data},
    # which audio_bridge_thread() runs before bridging.
    ("bridge_pre_execute_*", NUMBER_ENTRIES, _RUNS_APP),
    # switch_ivr_async.c, record_callback(): switch_channel_execute_on() for
    # ..._app and switch_api_execute() for ..._api when a recording closes.
    ("record_post_process_exec_*", NUMBER_ENTRIES, _RUNS_APP),
    # switch_ivr_originate.c, check_channel_status() and collect_thread_run():
    # the answered call waits for group_confirm_key; the key "exec" runs
    # group_confirm_file as an application.
    ("group_confirm_*", NUMBER_ENTRIES,
     "holds the answered call for a key press, or with group_confirm_key=exec runs an application"),
    # switch_ivr_originate.c, switch_ivr_originate(): turns off the refusal of
    # ${...} values (check_vars); the hooks above expand ${...}, API calls
    # included.
    ("origination_nested_vars", NUMBER_ENTRIES, "lets ${...} values through, for hooks to expand and run"),

    # switch_ivr_bridge.c, switch_ivr_multi_threaded_bridge(), once a bridge
    # in the operator's dialplan ends.
    ("transfer_after_bridge", NUMBER_ENTRIES, _BRIDGE_ENDS),
    ("park_after_bridge", NUMBER_ENTRIES, _BRIDGE_ENDS),
    ("hangup_after_bridge", NUMBER_ENTRIES, _BRIDGE_ENDS),
    # mod_dptools.c, audio_bridge_function(), and switch_channel_handle_cause()
    # (switch_channel.c), which it calls when the bridge fails.  transfer_on_fail
    # is as documented for that function (FreeSWITCH channel variables); its
    # source was not in the reviewed copy.
    ("continue_on_fail", NUMBER_ENTRIES, _BRIDGE_FAILS),
    ("failure_causes", NUMBER_ENTRIES, _BRIDGE_FAILS),
    ("transfer_on_fail", NUMBER_ENTRIES, _BRIDGE_FAILS),
    # mod_dptools.c, audio_bridge_function(): campon dials the bridge target
    # again up to campon_retries times, then transfers to campon_fallback_exten.
    ("campon*", NUMBER_ENTRIES, "makes a bridge in the dialplan dial again, then transfer the call"),
    # switch_channel.c, switch_channel_process_export(), from switch_ivr_originate()
    # and switch_ivr_bridge.c: copies the named variables onto the other legs,
    # dropping a leading "_nolocal_" (so a hook can travel under another name).
    ("export_vars", NUMBER_ENTRIES, "copies variables, hooks included, onto the other legs of the call"),
    ("bridge_export_vars", NUMBER_ENTRIES, "copies variables, hooks included, onto the other legs of the call"),

    # switch_core_session.c, switch_core_session_outgoing_channel(): becomes the
    # call's uuid, which the dialer tracks the call by.
    ("origination_uuid", NUMBER_ENTRIES, "changes the call's uuid, which the dialer tracks the call by"),
    # switch_ivr_originate.c, switch_ivr_originate(): records the call among
    # the originated legs of another live call.
    ("ent_originate_aleg_uuid", NUMBER_ENTRIES, "ties the call to another live call"),
    # switch_ivr_originate.c, switch_ivr_originate(): SOF_NO_LIMITS.
    ("no_throttle_limits", NUMBER_ENTRIES,
     "lets the call past FreeSWITCH's sessions-per-second and max-sessions limits"),
    # switch_core_state_machine.c, switch_core_session_reporting_state(): puts
    # the whole channel as XML into CHANNEL_HANGUP_COMPLETE's body, an event
    # every dialer on the switch reads.
    ("hangup_complete_with_xml", NUMBER_ENTRIES, "bloats the hangup event every event-socket client reads"),
)

# switch_channel_process_export() drops it when copying a variable onto
# another leg, where the rest of the name takes effect.
_NOLOCAL = "_nolocal_"


def denied_variable(name):
    """The DENIED_VARIABLES entry ``name`` falls under, or None."""
    key = name.lower()
    if key.startswith(_NOLOCAL):
        key = key[len(_NOLOCAL):]
    for entry in DENIED_VARIABLES:
        pattern = entry[0]
        if key == pattern or (pattern.endswith("*") and key.startswith(pattern[:-1])):
            return entry
    return None

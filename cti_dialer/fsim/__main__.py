"""``python -m cti_dialer.fsim``: run the simulator until SIGTERM, SIGINT or ``api shutdown``.

The ``--script`` file is one JSON object::

    {"default":  <outcome>,                   # every originate not matched below
     "gateways": {"gw1": <outcome>, ...},      # by gateway name
     "numbers":  {"13800138000": <outcome>},   # by dialed number (wins over gateways)
     "sps": 30, "max_sessions": 500,           # the core's throttles (null: none)
     "callcenter": {...}}                      # mod_callcenter queues and agents

An ``<outcome>`` is ``{"kind": "answer", "ring_ms": 3000, "hold_ms": 60000,
"variables": {"amd_result": "MACHINE"}}`` (see ``outcome.Outcome``) or a
weighted mix drawn once per originate, ``{"mix": [[30, <outcome>], [70,
<outcome>]], "seed": 7}`` (``outcome.OutcomeMix``). ``callcenter`` holds
``queues``, ``agents`` and a ``timeline`` of agent status changes; its
format is described in ``callcenter``.
"""
import argparse
import json
import logging
import signal
import sys
from typing import Any, Dict, List, Optional

import gevent
import gevent.event

from .callcenter import apply_callcenter_script
from .outcome import outcome_from_dict
from .server import FreeSwitchSimulator

log = logging.getLogger("cti_dialer.fsim")


def _limit(name: str, value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("%s must be null or a non-negative integer, got %r" % (name, value))
    return value


def apply_script(sim: FreeSwitchSimulator, script: Dict[str, Any]) -> None:
    """Load a JSON script (see the module docs) into the simulator."""
    if not isinstance(script, dict):
        raise ValueError("the script must be a JSON object")
    unknown = set(script) - {"default", "gateways", "numbers", "sps", "max_sessions", "callcenter"}
    if unknown:
        raise ValueError("unknown script key(s): %s" % ", ".join(sorted(unknown)))
    if "default" in script:
        sim.default_outcome = outcome_from_dict(script["default"])
    for key, setter in (("gateways", sim.script_gateway), ("numbers", sim.script_number)):
        table = script.get(key) or {}
        if not isinstance(table, dict):
            raise ValueError("%s must be an object" % key)
        for name, outcome in table.items():
            setter(str(name), outcome_from_dict(outcome))
    sim.sps = _limit("sps", script.get("sps"))
    sim.max_sessions = _limit("max_sessions", script.get("max_sessions"))
    if script.get("callcenter") is not None:
        apply_callcenter_script(sim.callcenter, script["callcenter"])


_SCRIPT_HELP = """script format (JSON):
  {"default": OUTCOME, "gateways": {"gw1": OUTCOME}, "numbers": {"123": OUTCOME},
   "sps": 30, "max_sessions": 500,
   "callcenter": {
     "queues": [{"name": "sales@default", "extension": "8888", "patience_ms": 4000,
                 "discard_abandoned_after_ms": 60000}],
     "agents": [{"name": "agent-{n}", "count": 20, "queue": "sales@default",
                 "status": "Available", "talk_ms": 60000, "wrap_up_ms": 5000}],
     "timeline": [{"at_ms": 600000, "agent": "agent-3", "status": "Logged Out"}]}}
  OUTCOME: {"kind": "answer|busy|no_answer|reject|hangup|fail|stalled", "ring_ms": 0,
            "hold_ms": 0, "cause": "...", "sip_code": 486, "channel": false,
            "cleared_at_answer": false, "variables": {"amd_result": "MACHINE"}}
        or {"mix": [[30, OUTCOME], [70, OUTCOME]], "seed": 7}  (one draw per originate)
  A call whose originate extension (originate ... 8888 XML default) is a queue's
  extension joins that queue when answered (mod_callcenter's callcenter_config API and
  CUSTOM callcenter::info events); agent statuses: "Logged Out", "Available",
  "Available (On Demand)", "On Break".
"""


def _parse_args(argv: Optional[List[str]]):
    parser = argparse.ArgumentParser(
        prog="python -m cti_dialer.fsim", description="FreeSWITCH event-socket simulator",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_SCRIPT_HELP)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8021)
    parser.add_argument("--password", default="ClueCon")
    parser.add_argument("--script", help="JSON file with outcomes, mixes, throttles and callcenter "
                                         "queues/agents (format below)")
    parser.add_argument("--gateways", help="comma-separated known gateway names (others are INVALID_GATEWAY)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of every random choice the switch makes (event order, tick phase)")
    parser.add_argument("--shutdown-grace-ms", type=int, default=500,
                        help="how long a stopping switch still takes originates before it disconnects")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gateways = None
    if args.gateways is not None:
        gateways = [g.strip() for g in args.gateways.split(",") if g.strip()]
    sim = FreeSwitchSimulator(host=args.host, port=args.port, password=args.password, gateways=gateways,
                              seed=args.seed, shutdown_grace_ms=args.shutdown_grace_ms)
    if args.script:
        try:
            with open(args.script, encoding="utf-8") as fh:
                apply_script(sim, json.load(fh))
        except (OSError, ValueError) as exc:
            log.error("cannot load script %s: %s", args.script, exc)
            return 2
    try:
        sim.start()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    stop = gevent.event.Event()
    # Like FreeSWITCH, the process ends once told to shut down (api shutdown / fsctl shutdown).
    sim.on_down = stop.set
    handlers = [gevent.signal_handler(sig, stop.set) for sig in (signal.SIGTERM, signal.SIGINT)]
    print("fsim listening on %s:%s" % (args.host, sim.port), flush=True)
    try:
        stop.wait()
    finally:
        for handler in handlers:
            handler.cancel()
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A FreeSWITCH event-socket simulator for tests, the demo and benchmarks.

    sim = FreeSwitchSimulator(port=0)
    sim.start_in_thread()                 # or sim.start() inside a gevent hub
    sim.script_number("1001", Outcome.busy(ring_ms=50))
    ...                                   # point an ESL client at sim.port
    sim.originates(), sim.commands()      # what the client asked for
    sim.stop_thread()

    sim.shutdown(); sim.restart()         # a graceful stop, then a fresh switch on the same port

    sim.default_outcome = OutcomeMix([(3, Outcome.answer(hold_ms=None)), (7, Outcome.no_answer())], seed=1)
    sim.callcenter.add_queue("sales", "8888", patience_ms=2000)   # mod_callcenter: see ``callcenter``
    sim.callcenter.add_agent("1001", "sales", talk_ms=60000, wrap_up_ms=5000)

It behaves like the real FreeSWITCH 1.11 captured in shared/freeswitch-captures
(tests/fsim/test_real_switch.py replays one of those sessions against it):
switch times in 20 ms steps behind the wall clock, a failed call's job result
and hangup in either order (``seed`` makes runs repeatable), two legs for
``loopback/``, the core's per-tick sessions-per-second window, ``:_:`` and
``${`` in dial strings, ``originate_retries``. Each of those is described
where it lives: ``switch``, ``clock``, ``events``, ``originate``.

``python -m cti_dialer.fsim --help`` runs it as a process.
"""
from .outcome import Outcome, OutcomeMix
from .event_socket import CommandRecord
from .server import FreeSwitchSimulator
from .switch import OriginateRecord

__all__ = ["CommandRecord", "FreeSwitchSimulator", "OriginateRecord", "Outcome", "OutcomeMix"]

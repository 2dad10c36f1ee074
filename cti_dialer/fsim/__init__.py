"""A FreeSWITCH event-socket simulator for tests, the demo and benchmarks.

    sim = FreeSwitchSimulator(port=0)
    sim.start_in_thread()                 # or sim.start() inside a gevent hub
    sim.script_number("1001", Outcome.busy(ring_ms=50))
    ...                                   # point an ESL client at sim.port
    sim.originates(), sim.commands()      # what the client asked for
    sim.stop_thread()

``python -m cti_dialer.fsim --help`` runs it as a process.
"""
from .outcome import Outcome
from .event_socket import CommandRecord
from .server import FreeSwitchSimulator
from .switch import OriginateRecord

__all__ = ["CommandRecord", "FreeSwitchSimulator", "OriginateRecord", "Outcome"]

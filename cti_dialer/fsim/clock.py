"""The switch's own clock, which every timestamp it reports reads.

FreeSWITCH does not read the wall clock for each event: its timer thread
stores the time once per tick (20 ms), and events and channel times use that
stored value, which is already up to a tick old by the time an event is
built and older still when the thread runs late. So switch times move in
20 ms steps and lag the wall clock by up to ~40 ms: an event caused by a
command can carry a time earlier than the moment the client sent it.

The sessions-per-second window is refilled on the same ticks, once every
second's worth of them counted from when the timer thread started, so its
edges fall anywhere within the wall clock's second; it is counted here too.
"""
import random
import time

US = 1_000_000


class SwitchClock:
    def __init__(self, rng: random.Random, tick_ms: int = 20, lag_ms: int = 20):
        if tick_ms < 0 or lag_ms < 0:
            raise ValueError("tick_ms and lag_ms must not be negative")
        self.tick_us = tick_ms * 1000
        self.lag_us = lag_ms * 1000
        # Where the ticks, and the window edges, fall is the switch's own business.
        self.phase_us = rng.randrange(self.tick_us) if self.tick_us else 0
        ticks = US // self.tick_us if self.tick_us else US
        self.window_phase_us = self.phase_us + rng.randrange(ticks) * (self.tick_us or 1)

    def now_us(self) -> int:
        """The switch's current time in microseconds since the epoch."""
        wall = int(time.time() * US)
        if not self.tick_us:
            return wall
        t = wall - self.lag_us - self.phase_us
        return t - t % self.tick_us + self.phase_us

    def window(self, stamp_us: int) -> int:
        """Which one-second throttle window a switch time belongs to."""
        return (stamp_us - self.window_phase_us) // US

import pytest

from cti_dialer.fsim import FreeSwitchSimulator


@pytest.fixture
def sim():
    s = FreeSwitchSimulator()
    s.start_in_thread()
    yield s
    s.stop_thread()


class FakeWallClock:
    """Stands in for ``time`` in the switch's clock, so a test decides what time the switch reads."""

    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def wall_clock(monkeypatch):
    from cti_dialer.fsim import clock
    fake = FakeWallClock(1796027461.3)
    monkeypatch.setattr(clock, "time", fake)
    return fake

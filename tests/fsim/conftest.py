import pytest

from cti_dialer.fsim import FreeSwitchSimulator


@pytest.fixture
def sim():
    s = FreeSwitchSimulator()
    s.start_in_thread()
    yield s
    s.stop_thread()

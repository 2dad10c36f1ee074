"""The idle-queue watchers' pool reads for longer than a watcher blocks, so a quiet queue never looks like a dead server."""
import pytest

from cti_dialer import settings, store
from cti_dialer.daemon import Daemon
from cti_dialer.dispatcher import WATCH_BLOCK

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("socket_timeout", ["0.5", "5", "30"])
def test_a_watcher_blocks_less_than_its_pool_reads(socket_timeout):
    config = settings.load(text="[redis]\nurl = redis://127.0.0.1:1/0\nsocket_timeout = %s\n" % socket_timeout)
    daemon = Daemon(config)          # nothing connects before it runs
    watch_pool = daemon.dispatcher.watch_store.r.connection_pool
    main_pool = daemon.store.r.connection_pool
    assert watch_pool is not main_pool
    assert daemon.dispatcher.watch_block == WATCH_BLOCK
    assert watch_pool.connection_kwargs["socket_timeout"] >= WATCH_BLOCK + 0.5
    assert main_pool.connection_kwargs["socket_timeout"] == float(socket_timeout)


def test_read_timeout_is_only_for_reads():
    config = settings.load(text="[redis]\nurl = redis://127.0.0.1:1/0\nsocket_timeout = 3\n")
    pool = store.connect(config, 4, read_timeout=25.0).connection_pool
    assert pool.connection_kwargs["socket_timeout"] == 25.0
    assert pool.connection_kwargs["socket_connect_timeout"] == 3.0

"""The store contract suite's backends: every test runs on fakeredis and on a real redis-server."""
import fakeredis
import pytest
import redis

from cti_dialer.keys import Keys
from cti_dialer.store import Store

KEYS = Keys("fs1", "test")


@pytest.fixture(params=[pytest.param("fakeredis", marks=pytest.mark.unit),
                        pytest.param("redis-server", marks=pytest.mark.integration)])
def store(request):
    if request.param == "fakeredis":
        client = fakeredis.FakeRedis()
    else:
        server = request.getfixturevalue("redis_server")
        client = redis.Redis.from_url(server.url)
        client.flushall()
    yield Store(client, KEYS)
    client.close()


def ids(n, start=0):
    return ["c%d" % i for i in range(start, start + n)]

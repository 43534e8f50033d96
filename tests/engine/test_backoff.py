import time

from spidercache.engine.backoff import Backoff


def test_waits_double_up_to_the_cap_and_reset_on_success():
    b = Backoff(0.5, 2.0)
    assert not b.down
    waits = []
    for _ in range(4):
        b.failed()
        assert b.down
        waits.append(round(b.down_until - time.monotonic(), 1))
    assert waits == [0.5, 1.0, 2.0, 2.0]
    b.succeeded()
    assert b.wait == 0.5
    b.reset()
    assert not b.down


def test_zero_wait_never_stays_down():
    b = Backoff(0.0)
    b.failed()
    assert not b.down

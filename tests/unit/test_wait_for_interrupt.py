"""`stockray up`/`serve` stop on Ctrl-C even after Ray Tune replaced the SIGINT handler."""

import os
import signal
import threading
import time

from ray_apps.cluster import wait_for_interrupt


def test_sigint_ends_the_wait_despite_a_swallowing_handler():
    swallowed = []
    old = signal.signal(signal.SIGINT, lambda *_: swallowed.append(1))  # like Tune's handler
    try:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        t0 = time.monotonic()
        wait_for_interrupt()
        assert time.monotonic() - t0 < 10
        assert swallowed == []  # our handler, not the leftover one, got the signal
        assert signal.getsignal(signal.SIGINT) is not None  # the previous handler is back
    finally:
        signal.signal(signal.SIGINT, old)


def test_sigterm_ends_the_wait():
    old = signal.getsignal(signal.SIGTERM)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
    wait_for_interrupt()
    assert signal.getsignal(signal.SIGTERM) == old

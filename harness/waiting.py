"""Waiting on a condition, the one polling loop of the tests and the benchmark."""
import time


class WaitTimeout(AssertionError):
    """The condition did not hold in time (an AssertionError, so tests report it as a failure)."""


def wait_until(predicate, timeout=30.0, message="condition", interval=0.05):
    """Poll ``predicate`` until it returns something truthy, and return that.

    ``timeout`` only bounds a hang: callers wait for an event, never assert
    how long it took.  ``message`` may be a callable, evaluated on timeout
    (e.g. to show the last state seen).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = message() if callable(message) else message
            raise WaitTimeout("{} not met within {} s".format(detail, timeout))
        time.sleep(interval)

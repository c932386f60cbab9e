"""The lifecycle phase and the admission gate: one owner each (bridge/lifecycle.py)."""

from __future__ import annotations

import pytest

from bridge.errors import Overloaded, ShuttingDown
from bridge.lifecycle import MAX_BATCHES_IN_FLIGHT, Admission, Lifecycle, Phase


def test_ready_once_the_producer_started_and_the_window_loaded():
    lifecycle = Lifecycle(needs_dedupe_window=True)
    assert lifecycle.phase is Phase.STARTING
    assert set(lifecycle.problems()) == {"producer", "dedupe"}
    lifecycle.producer_up()
    assert lifecycle.phase is Phase.STARTING
    assert set(lifecycle.problems()) == {"dedupe"}
    lifecycle.window_loaded()
    assert lifecycle.phase is Phase.READY
    assert lifecycle.problems() == {}


def test_without_the_shared_window_the_producer_alone_makes_it_ready():
    lifecycle = Lifecycle(needs_dedupe_window=False)
    assert lifecycle.dedupe_ready
    lifecycle.producer_up()
    assert lifecycle.phase is Phase.READY


def test_draining_and_failed_win_over_ready():
    lifecycle = Lifecycle(needs_dedupe_window=False)
    lifecycle.producer_up()
    lifecycle.drain(deadline=123.0)
    assert lifecycle.phase is Phase.DRAINING
    assert lifecycle.deadline == 123.0
    assert lifecycle.problems() == {"draining": "shutting down"}
    lifecycle.fail("reconciler stopped")
    assert lifecycle.phase is Phase.FAILED
    assert lifecycle.failed.is_set()
    assert lifecycle.problems()["failed"] == "reconciler stopped"


def test_losing_the_followed_window_stops_deduping_at_once():
    lifecycle = Lifecycle(needs_dedupe_window=True)
    lifecycle.producer_up()
    lifecycle.window_loaded()
    lifecycle.fail("dedupe follower stopped", window_lost=True)
    assert not lifecycle.dedupe_ready
    assert lifecycle.phase is Phase.FAILED


class _Gauge:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount


def test_requests_beyond_the_limit_are_refused_at_once_and_counted_while_handled():
    gauge = _Gauge()
    admission = Admission(Lifecycle(needs_dedupe_window=False), max_in_flight=2, requests_gauge=gauge)
    admission.enter_request()
    admission.enter_request()
    admission.admit_request()
    assert gauge.value == 2
    admission.enter_request()
    with pytest.raises(Overloaded, match="more than 2 requests") as refused:
        admission.admit_request()
    assert refused.value.retry_after_s == 1
    for _ in range(3):
        admission.leave_request()
    assert (admission.requests, gauge.value) == (0, 0)


def test_while_draining_every_new_request_is_told_to_retry():
    lifecycle = Lifecycle(needs_dedupe_window=False)
    admission = Admission(lifecycle, max_in_flight=10)
    lifecycle.drain(deadline=0.0)
    admission.enter_request()
    with pytest.raises(ShuttingDown):
        admission.admit_request()


def test_publishes_are_bounded_and_a_refused_one_is_not_counted():
    admission = Admission(Lifecycle(needs_dedupe_window=False), max_in_flight=1)
    admission.enter_publish("a")
    with pytest.raises(Overloaded) as refused:
        admission.enter_publish("b")
    assert refused.value.extra == {"event_id": "b"}
    assert admission.publishes == 1
    admission.leave_publish()
    admission.enter_publish("c")
    assert admission.publishes == 1


def test_batches_are_bounded():
    admission = Admission(Lifecycle(needs_dedupe_window=False), max_in_flight=10)
    for _ in range(MAX_BATCHES_IN_FLIGHT):
        admission.enter_batch()
    with pytest.raises(Overloaded, match="batches"):
        admission.enter_batch()
    assert admission.batches == MAX_BATCHES_IN_FLIGHT
    for _ in range(MAX_BATCHES_IN_FLIGHT):
        admission.leave_batch()
    assert admission.batches == 0

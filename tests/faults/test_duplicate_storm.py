"""Duplicate storm: one event posted 100 times at once.

Expected: every answer 2xx, exactly one ``published`` and 99 ``duplicate`` (all
pointing at the same record), and exactly one record in Kafka.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.faults.load import Load, new_event, report
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.faults

COPIES = 100


async def test_one_event_posted_100_times_concurrently(kafka_bootstrap, start_bridge, http):
    bridge = start_bridge(kafka_bootstrap)
    await wait_for_status(http, bridge.url + "/readyz", 200)
    load = Load(bridge.url, max_in_flight=COPIES)
    event_id, body = new_event()
    load.bodies[event_id] = body

    async with load.session() as client:
        load.results = list(await asyncio.gather(*(load.post(client, event_id, body) for _ in range(COPIES))))
    outcomes = Counter(r.answer for r in load.results)
    summary = report(
        load,
        kafka_bootstrap,
        answers=COPIES,
        published=outcomes["published"],
        duplicate=outcomes["duplicate"],
        scenario="duplicate-storm",
    )

    assert load.statuses() == {200: COPIES}, load.statuses()
    assert outcomes == {"published": 1, "duplicate": COPIES - 1}, outcomes
    assert len({r.location for r in load.results}) == 1, "answers name different records"
    assert summary.counts[event_id] == 1
    assert summary.lost == 0
    assert bridge.terminate() == 0

"""A publish that timed out (503) may still be acknowledged later: its retry must be a duplicate.

The fault suite found this for real (broker killed under load: over half the events
answered 503 landed anyway). Each test has the fake publisher time out its first publish
like KafkaPublisher does (``time_out_first``): it raises PublishError("timeout") carrying
``late``, the record's outcome to come; later publishes succeed.
"""

from __future__ import annotations

import asyncio

from bridge.errors import PublishError
from bridge.publisher import Delivery
from tests.support.events import valid_fixture
from tests.support.http import json_answer, post_event, problem_answer
from tests.support.metrics import sample

PUBLISHED_FIXTURE = valid_fixture("06-correspondencepublished")


async def test_retry_after_a_late_acknowledgement_is_a_duplicate(make_client, fake_publisher, registry):
    fake_publisher.time_out_first = True
    client = await make_client(BRIDGE_PUBLISH_TIMEOUT_S="0.2")

    first = await post_event(client, PUBLISHED_FIXTURE)
    await problem_answer(first, 503, "kafka-unavailable")
    problem = await first.json()
    assert problem["event_id"]  # the 503 names the event, for matching with Altinn's log

    # The broker acknowledges the record after the answer went out.
    assert fake_publisher.late is not None
    fake_publisher.late.set_result(Delivery("altinn.correspondence.correspondencepublished", 2, 41))
    await asyncio.sleep(0)

    retry = await json_answer(await post_event(client, PUBLISHED_FIXTURE))
    assert retry["outcome"] == "duplicate"
    assert (retry["topic"], retry["partition"], retry["offset"]) == (
        "altinn.correspondence.correspondencepublished",
        2,
        41,
    )
    assert fake_publisher.records == []  # never published a second time
    assert sample(registry, "altinn_bridge_late_acknowledgements_total") == 1


async def test_retry_after_a_late_failure_publishes(make_client, fake_publisher):
    fake_publisher.time_out_first = True
    client = await make_client(BRIDGE_PUBLISH_TIMEOUT_S="0.2")

    await problem_answer(await post_event(client, PUBLISHED_FIXTURE), 503, "kafka-unavailable")
    assert fake_publisher.late is not None
    fake_publisher.late.set_exception(PublishError("timeout", "expired in the producer (fake)"))
    await asyncio.sleep(0)

    retry = await json_answer(await post_event(client, PUBLISHED_FIXTURE))
    assert retry["outcome"] == "published"
    assert len(fake_publisher.records) == 1


async def test_retry_while_the_record_is_still_pending_waits_then_gets_503(make_client, fake_publisher):
    fake_publisher.time_out_first = True
    client = await make_client(BRIDGE_PUBLISH_TIMEOUT_S="0.2")

    await problem_answer(await post_event(client, PUBLISHED_FIXTURE), 503, "kafka-unavailable")
    retry = await post_event(client, PUBLISHED_FIXTURE)

    problem = await problem_answer(retry, 503, "kafka-unavailable")
    assert "still waiting for Kafka" in problem["detail"]
    assert fake_publisher.records == []  # not published beside the pending one

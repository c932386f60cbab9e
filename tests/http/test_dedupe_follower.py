"""The state-topic follower teaches the window other replicas' keys, and keeps nothing else.

A regression test for a leak the soak found: while following, every state
record's event offset was also appended to a list only start-up needs
(~36 bytes per event, for as long as the bridge ran).
"""

from __future__ import annotations

import time
import tracemalloc

from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry

from bridge.dedupe import Seen, dedupe_key
from bridge.dedupe_store import DedupeFollower
from bridge.metrics import Metrics
from bridge.pipeline import Pipeline
from tests.support.fakes import FakePublisher
from tests.support.settings import make_settings

SOURCE = "https://platform.altinn.no/correspondence/api/v1/correspondence"


def _state_record(n: int) -> tuple[bytes, ConsumerRecord[bytes, bytes]]:
    key = dedupe_key(SOURCE, f"id-{n}")
    value = Seen(time.time(), "altinn.correspondence.correspondencepublished", n % 3, n).encode(f"id-{n}")
    record = ConsumerRecord(
        topic="altinn.correspondence.dedupe",
        partition=0,
        offset=n,
        timestamp=0,
        timestamp_type=0,
        key=key.hex().encode(),
        value=value,
        checksum=None,
        serialized_key_size=32,
        serialized_value_size=len(value),
        headers=[],
    )
    return key, record


def test_following_remembers_keys_without_growing_anything_else() -> None:
    # A window of 1,000 keys: once full it stays the same size, so following more records
    # must not take more memory.
    settings = make_settings(BRIDGE_DEDUPE="kafka", BRIDGE_DEDUPE_MAX_ENTRIES="1000")
    pipeline = Pipeline(settings, FakePublisher(), Metrics(CollectorRegistry()))
    follower = DedupeFollower(settings, pipeline, Metrics(CollectorRegistry()))
    assert pipeline.dedupe is not None
    records = [_state_record(n) for n in range(40_000)]

    tracemalloc.start()
    follower._apply([r for _, r in records[:20_000]], loading=False)
    before, _ = tracemalloc.get_traced_memory()
    follower._apply([r for _, r in records[20_000:]], loading=False)
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert len(pipeline.dedupe) == 1000
    assert all(pipeline.dedupe.lookup(key) is not None for key, _ in records[-1000:])
    # 20,000 records followed through a full window: nothing kept per record (the leak kept ~36 B).
    assert after - before < 50_000, after - before

"""The batch path without HTTP: ``python -m bench.pipeline_floor [memory|kafka] [--profile]``.

Runs the bridge's own Pipeline and KafkaPublisher in this process against a
local Tansu broker (started here, stopped at the end): 300 batches of 100
unique events (the bench fixture), 4 batches at a time as the HTTP layer
admits, and prints wall-clock and CPU microseconds per event. ``kafka`` keeps
the dedupe window in Kafka (a state record per event, no follower here);
``memory`` does not. ``--profile`` prints cProfile's top functions instead.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry

from bridge.config import Settings
from bridge.metrics import Metrics
from bridge.pipeline import Pipeline
from bridge.publisher import KafkaPublisher
from devtools.broker import provision, start_broker

FIXTURE = Path(__file__).parents[1] / "tests/fixtures/altinn-events/valid/06-correspondencepublished.json"
BATCHES, WARMUP_BATCHES, BATCH_SIZE, AT_ONCE = 300, 20, 100, 4


async def _run(settings: Settings) -> tuple[float, float]:
    template = orjson.loads(FIXTURE.read_bytes())
    publisher = KafkaPublisher(settings.kafka)
    await publisher.start()
    pipeline = Pipeline(settings, publisher, Metrics(CollectorRegistry()))
    pipeline.lifecycle.window_loaded()  # nothing to load: a fresh broker
    batches = [[{**template, "id": str(uuid.uuid4())} for _ in range(BATCH_SIZE)] for _ in range(BATCHES)]
    admitted = asyncio.Semaphore(AT_ONCE)

    async def one(batch: list[object]) -> None:
        async with admitted:
            results = await pipeline.ingest_batch(batch, time.time())
        if any(r["outcome"] != "published" for r in results):
            raise RuntimeError(f"not published: {results[0]}")

    try:
        await asyncio.gather(*(one(b) for b in batches[:WARMUP_BATCHES]))
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(b) for b in batches[WARMUP_BATCHES:]))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await pipeline.settle_background(10)
    finally:
        await publisher.stop()
    events = (BATCHES - WARMUP_BATCHES) * BATCH_SIZE
    return wall / events * 1e6, cpu / events * 1e6


def main() -> None:
    """Print µs per event (or a profile)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dedupe", choices=["memory", "kafka"], nargs="?", default="kafka")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    broker = start_broker(Path(tempfile.mkdtemp(prefix="pipeline-floor-")))
    try:
        settings = Settings.from_env(
            {
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "KAFKA_ENABLE_IDEMPOTENCE": "false",  # Tansu cannot
                "BRIDGE_AUTH": "none",
                "BRIDGE_DEDUPE": args.dedupe,
            }
        )
        asyncio.run(provision(broker.bootstrap, settings))
        try:
            import uvloop  # noqa: PLC0415 - the bridge's loop when installed

            run = uvloop.run
        except ImportError:
            run = asyncio.run
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(run, _run(settings))
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return
        wall_us, cpu_us = run(_run(settings))
        print(f"BRIDGE_DEDUPE={args.dedupe}: {wall_us:.1f} us per event (wall), {cpu_us:.1f} us CPU")  # noqa: T201
    finally:
        broker.stop()


if __name__ == "__main__":
    main()

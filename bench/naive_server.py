"""Row (b), the naive bridge: aiohttp + aiokafka ``send_and_wait`` per request.

``python -m bench.naive_server --port P --bootstrap HOST:PORT [--workers N]``.
What a first version of a bridge would be: parse the JSON with the standard
library, publish the body to ``altinn.correspondence.<type name>`` keyed by
``resourceinstance``, wait for the acknowledgement, answer 200. aiokafka's
default producer settings except ``acks="all"`` (the bridge's guarantee); no
validation, dedupe, auth, metrics or logging.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator

from aiohttp import web
from aiokafka import AIOKafkaProducer

from bench.serving import run

#: Set once the app starts (an app's keys are frozen by then, a dict's are not).
PRODUCER = web.AppKey("producer", dict[str, AIOKafkaProducer])
BOOTSTRAP = web.AppKey("bootstrap", str)


async def receive(request: web.Request) -> web.Response:
    """Publish the body, wait for acks=all, answer 200 with where it landed."""
    body = await request.read()
    event = json.loads(body)
    topic = "altinn.correspondence." + event["type"].rsplit(".", 1)[-1]
    metadata = await request.app[PRODUCER]["producer"].send_and_wait(
        topic, body, key=event["resourceinstance"].encode()
    )
    return web.json_response(
        {"outcome": "published", "topic": topic, "partition": metadata.partition, "offset": metadata.offset}
    )


async def healthz(_: web.Request) -> web.Response:
    """Readiness for the bench (the producer is started before the server listens)."""
    return web.Response(text="ok")


async def producer_ctx(app: web.Application) -> AsyncIterator[None]:
    """One producer for the process: defaults, except acks=all."""
    producer = AIOKafkaProducer(bootstrap_servers=app[BOOTSTRAP], acks="all")
    await producer.start()
    app[PRODUCER]["producer"] = producer
    yield
    await producer.stop()


def make_app(args: argparse.Namespace) -> web.Application:
    """The app."""
    app = web.Application()
    app[BOOTSTRAP] = args.bootstrap
    app[PRODUCER] = {}
    app.router.add_post("/api/v1/events", receive)
    app.router.add_post("/api/v1/events/{token}", receive)
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(producer_ctx)
    return app


if __name__ == "__main__":
    sys.exit(run("bench.naive_server", __doc__ or "", make_app))

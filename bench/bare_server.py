"""Row (a), the ceiling: a bare aiohttp handler that reads the body and answers 200.

``python -m bench.bare_server --port P [--workers N] [--loop uvloop]``. Same
URL shape as the bridge (``POST /api/v1/events/{token}``, token not checked) and
a ``/healthz`` the bench polls for readiness. No logging, no metrics, no Kafka:
what aiohttp itself costs per request on this machine.
"""

from __future__ import annotations

import argparse
import sys

from aiohttp import web

from bench.serving import run


async def receive(request: web.Request) -> web.Response:
    """Read the whole body, answer 200."""
    await request.read()
    return web.Response(status=200)


async def healthz(_: web.Request) -> web.Response:
    """Readiness for the bench."""
    return web.Response(text="ok")


def make_app(_: argparse.Namespace) -> web.Application:
    """The app."""
    app = web.Application()
    app.router.add_post("/api/v1/events", receive)
    app.router.add_post("/api/v1/events/{token}", receive)
    app.router.add_get("/healthz", healthz)
    return app


if __name__ == "__main__":
    sys.exit(run("bench.bare_server", __doc__ or "", make_app))

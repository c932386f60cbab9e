"""Waiting for state a test can read, never for a duration.

``until`` is for in-process state (a fake's counters, a registry); ``polled`` asks
something outside the process (a URL, a log, a metrics page) again and again;
``wait_for_status`` is ``polled`` for one URL's status. Each wait is bounded and says
what it was waiting for when it gives up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

T = TypeVar("T")


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait for ``condition`` (state the test reads); ``TimeoutError`` after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


async def polled(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], object],
    *,
    what: str,
    timeout_s: float,
    every_s: float,
) -> T:
    """Await ``probe()`` every ``every_s`` until ``done`` holds for its result; that result.

    After ``timeout_s`` an ``AssertionError`` names ``what`` was awaited and the last result.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        last = await probe()
        if done(last):
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s (last: {last!r})")
        await asyncio.sleep(every_s)


async def wait_for_status(
    session: aiohttp.ClientSession, url: str, status: int, timeout_s: float = 20.0
) -> None:
    """Poll ``url`` until it answers ``status`` (a refused connection counts as not yet)."""

    async def answer() -> int | Exception:
        try:
            async with session.get(url) as response:
                return response.status
        except aiohttp.ClientError as exc:
            return exc

    what = f"{url} answering {status}"
    await polled(answer, lambda last: last == status, what=what, timeout_s=timeout_s, every_s=0.1)

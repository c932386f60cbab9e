"""A small client of Altinn's Events API: subscriptions, and the pull API.

Every call carries a cached Altinn token (:mod:`bridge.altinn.tokens`). A 401
fetches a new token and tries once more. 429 and 5xx (and a lost connection) are
retried with a bounded exponential backoff that honours ``Retry-After``; that is
safe for the subscription POST too, because Altinn answers an identical re-POST
with the existing subscription instead of a second one.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import aiohttp
import orjson

from bridge.altinn.errors import ApiError, quote_body
from bridge.altinn.tokens import TokenSource

SUBSCRIPTIONS_PATH: Final = "/events/api/v1/subscriptions"
EVENTS_PATH: Final = "/events/api/v1/events"
#: The pull API's largest page.
MAX_PAGE_SIZE: Final = 1000
#: Answers worth another attempt: rate limited, or Altinn having a bad moment.
RETRYABLE_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed calls are retried. Deterministic (no jitter): one tool, not a herd of clients."""

    #: Attempts in all, the first included; a 401's retry with a new token is not counted.
    attempts: int = 5
    #: Wait before the second attempt; doubled for each further one.
    base_delay_s: float = 1.0
    #: Longest wait, also for a ``Retry-After`` asking for more.
    max_delay_s: float = 30.0

    def delay_s(self, retry: int, retry_after_s: float | None) -> float:
        """The wait before retry number ``retry`` (1 = the second attempt)."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_delay_s)
        return min(self.base_delay_s * 2.0 ** (retry - 1), self.max_delay_s)


@dataclass(frozen=True, slots=True)
class Retrying:
    """Told to ``on_retry`` before each wait, so a CLI or a logger can say what is happening."""

    method: str
    url: str
    reason: str
    attempt: int
    attempts: int
    delay_s: float


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of the pull API: the events, oldest first, and the URL of the next page, if any."""

    events: list[dict[str, Any]]
    #: Altinn's ``next`` header: present only when this page was not empty.
    next_url: str | None

    @property
    def last_id(self) -> str | None:
        """The id of the page's last event: where the next pull starts (``after``)."""
        return str(self.events[-1].get("id")) if self.events else None


class EventsApi:
    """Altinn's Events API at ``platform_url`` (e.g. ``https://platform.tt02.altinn.no``)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        platform_url: str,
        tokens: TokenSource,
        *,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[Retrying], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._session = session
        self._platform_url = platform_url.rstrip("/")
        self._origin = _origin(self._platform_url)
        self._tokens = tokens
        self._retry = retry or RetryPolicy()
        self._on_retry = on_retry
        self._sleep = sleep

    # --- subscriptions -----------------------------------------------------

    def subscriptions_url(self, subscription_id: str | None = None) -> str:
        """The URL of the subscriptions collection, or of one subscription."""
        url = self._platform_url + SUBSCRIPTIONS_PATH
        return url if subscription_id is None else f"{url}/{subscription_id}"

    async def create_subscription(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a subscription (``endPoint``, ``resourceFilter``, …); Altinn's answer."""
        return _object(await self._call("POST", self.subscriptions_url(), json_body=body))

    async def list_subscriptions(self) -> dict[str, Any]:
        """``{"count": n, "subscriptions": [...]}``, unvalidated ones included."""
        return _object(await self._call("GET", self.subscriptions_url()))

    async def get_subscription(self, subscription_id: str) -> dict[str, Any]:
        """One subscription; :class:`ApiError` with status 404 when there is none with that id."""
        return _object(await self._call("GET", self.subscriptions_url(subscription_id)))

    async def delete_subscription(self, subscription_id: str) -> None:
        """Delete a subscription (Altinn takes up to an hour to stop pushing to it)."""
        await self._call("DELETE", self.subscriptions_url(subscription_id))

    # --- pull API ----------------------------------------------------------

    def events_url(
        self,
        resource: str,
        after: str = "0",
        size: int = MAX_PAGE_SIZE,
        *,
        subject: str | None = None,
        types: Sequence[str] = (),
    ) -> str:
        """The pull API URL of the page after event id ``after`` (``"0"``: from the oldest)."""
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise ValueError(f"size must be between 1 and {MAX_PAGE_SIZE}")
        query: list[tuple[str, str]] = [("resource", resource), ("after", after), ("size", str(size))]
        if subject is not None:
            query.append(("subject", subject))
        query += [("type", t) for t in types]
        return f"{self._platform_url}{EVENTS_PATH}?{urlencode(query)}"

    async def pull(
        self,
        resource: str,
        after: str = "0",
        size: int = MAX_PAGE_SIZE,
        *,
        subject: str | None = None,
        types: Sequence[str] = (),
        alternative_subject: str | None = None,
    ) -> EventPage:
        """One page of events after ``after``, oldest first (only events at least 30 s old)."""
        url = self.events_url(resource, after, size, subject=subject, types=types)
        return await self.pull_url(url, alternative_subject=alternative_subject)

    async def pull_url(self, url: str, *, alternative_subject: str | None = None) -> EventPage:
        """The page at ``url``: one built by :meth:`events_url`, or a page's ``next_url``."""
        # Our token goes only to the platform we were configured with, whatever a header says.
        if _origin(url) != self._origin:
            raise ApiError(f"refusing to follow {url}: not on the Altinn platform {self._origin}")
        headers = {"Altinn-AlternativeSubject": alternative_subject} if alternative_subject else {}
        body, response_headers = await self._call_with_headers("GET", url, headers=headers)
        if not isinstance(body, list) or not all(isinstance(e, dict) for e in body):
            raise ApiError(f"GET {url}: expected a JSON array of events, got {type(body).__name__}")
        return EventPage(events=body, next_url=response_headers.get("next") or None)

    async def pages(
        self,
        resource: str,
        after: str = "0",
        size: int = MAX_PAGE_SIZE,
        *,
        subject: str | None = None,
        types: Sequence[str] = (),
        alternative_subject: str | None = None,
    ) -> AsyncIterator[EventPage]:
        """Every non-empty page from ``after`` on, following ``next`` until a page comes back empty."""
        url: str | None = self.events_url(resource, after, size, subject=subject, types=types)
        while url is not None:
            page = await self.pull_url(url, alternative_subject=alternative_subject)
            if not page.events:
                return
            yield page
            url = page.next_url

    # --- plumbing ----------------------------------------------------------

    async def _call(self, method: str, url: str, *, json_body: Mapping[str, Any] | None = None) -> Any:
        body, _ = await self._call_with_headers(method, url, json_body=json_body)
        return body

    async def _call_with_headers(
        self,
        method: str,
        url: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Any, Mapping[str, str]]:
        """The parsed JSON body (``None`` if empty) and headers of a 2xx answer; :class:`ApiError` else."""
        data = None if json_body is None else orjson.dumps(json_body)
        token = await self._tokens.token()
        refreshed = False
        attempt = 1
        while True:
            request_headers = {
                "Accept": "application/json",
                "Authorization": f"Bearer {token}",
                **(headers or {}),
            }
            if data is not None:
                request_headers["Content-Type"] = "application/json"
            retry_after: float | None = None
            try:
                async with self._session.request(method, url, data=data, headers=request_headers) as resp:
                    status, text, response_headers = resp.status, await resp.text(), resp.headers.copy()
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                reason = f"{type(exc).__name__} {exc}".strip()
                if attempt >= self._retry.attempts:
                    raise ApiError(
                        f"{method} {url}: no answer after {attempt} attempt(s): {reason}"
                    ) from None
            else:
                if status == 401 and not refreshed:  # noqa: PLR2004
                    # The cached token expired early or was revoked: one new token, one more try.
                    token = await self._tokens.refresh(token)
                    refreshed = True
                    continue
                if 200 <= status < 300:  # noqa: PLR2004
                    return _parse(text, method, url), response_headers
                if status not in RETRYABLE_STATUSES or attempt >= self._retry.attempts:
                    raise ApiError(
                        _failure(method, url, status, text, attempts=attempt, token=token), status=status
                    )
                reason = f"HTTP {status}"
                retry_after = _retry_after_s(response_headers.get("Retry-After"))
            delay = self._retry.delay_s(attempt, retry_after)
            if self._on_retry is not None:
                self._on_retry(Retrying(method, url, reason, attempt, self._retry.attempts, delay))
            await self._sleep(delay)
            attempt += 1


def _parse(text: str, method: str, url: str) -> Any:
    if not text.strip():
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ApiError(f"{method} {url}: Altinn answered 2xx with a body that is not JSON") from None


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(f"expected a JSON object from Altinn, got {type(body).__name__}")
    return body


def _failure(method: str, url: str, status: int, text: str, *, attempts: int, token: str) -> str:
    """What Altinn said, readably: a problem's title/detail/errors, else the body's start."""
    said = _problem_text(text) or quote_body(text, [token])
    message = f"Altinn answered HTTP {status} to {method} {url}"
    if attempts > 1:
        message += f" (after {attempts} attempts)"
    if said:
        message += f": {quote_body(said, [token])}"
    hints = {
        401: "the Altinn token was refused twice; check the Maskinporten client and its scopes",
        403: "the token lacks a scope (altinn:events.subscribe) or access to this resource/subscription",
        404: "no such subscription (or it belongs to another consumer)",
    }
    if status in hints:
        message += f" ({hints[status]})"
    return message


def _problem_text(text: str) -> str | None:
    """An RFC 9457 problem (or ASP.NET's validation problem) as one line; ``None`` if it is none."""
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if isinstance(body, str):
        return body
    if not isinstance(body, dict):
        return None
    parts = [str(body[k]) for k in ("title", "detail") if isinstance(body.get(k), str)]
    errors = body.get("errors")
    if isinstance(errors, dict):
        parts += [
            f"{field}: {'; '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
            for field, msgs in errors.items()
        ]
    return " — ".join(parts) or None


def _retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); ``None`` if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()

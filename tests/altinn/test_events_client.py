"""The Events API client against the fake: subscriptions, the pull API's cursor, retries, 401s."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from bridge.altinn.errors import ApiError
from bridge.altinn.events_api import EventsApi, Retrying, RetryPolicy
from bridge.altinn.settings import AltinnSettings
from bridge.altinn.tokens import TokenProvider
from devtools.fake_altinn import FakeAltinn, Urls
from tests.altinn.conftest import ENDPOINT, correspondence_events
from tests.support.altinn import RESOURCE, Clock


class Sleeps:
    """Records the waits instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def retries() -> list[Retrying]:
    return []


@pytest.fixture
def api(
    http: aiohttp.ClientSession,
    settings: AltinnSettings,
    provider: TokenProvider,
    sleeps: Sleeps,
    retries: list[Retrying],
) -> EventsApi:
    return EventsApi(http, settings.platform_url, provider, sleep=sleeps, on_retry=retries.append)


def _statuses(fake: FakeAltinn) -> list[int]:
    return [r.status for r in fake.received]


async def test_subscription_lifecycle(api: EventsApi, fake: FakeAltinn) -> None:
    body = {"endPoint": ENDPOINT, "resourceFilter": RESOURCE}
    created = await api.create_subscription(body)
    assert created["validated"] is False
    assert created["endPoint"] == ENDPOINT
    assert fake.received[0].body == body
    listing = await api.list_subscriptions()
    assert listing["count"] == 1
    assert listing["subscriptions"] == [created]
    assert await api.get_subscription(str(created["id"])) == created
    await api.delete_subscription(str(created["id"]))
    with pytest.raises(ApiError) as raised:
        await api.get_subscription(str(created["id"]))
    assert raised.value.status == 404
    assert "Subscription not found" in str(raised.value)
    assert fake.maskinporten_tokens_issued == 1  # one token for all five calls


async def test_a_revoked_token_is_refreshed_once(api: EventsApi, fake: FakeAltinn) -> None:
    await api.list_subscriptions()
    fake.revoke_altinn_tokens()
    assert (await api.list_subscriptions())["count"] == 0
    assert _statuses(fake) == [200, 401, 200]
    assert fake.altinn_tokens_issued == 2


async def test_a_second_401_is_an_error_not_a_loop(api: EventsApi, fake: FakeAltinn) -> None:
    fake.fail_next(401, times=3)
    with pytest.raises(ApiError) as raised:
        await api.list_subscriptions()
    assert raised.value.status == 401
    assert "refused twice" in str(raised.value)
    assert _statuses(fake) == [401, 401]
    assert fake.altinn_tokens_issued == 2


async def test_a_400_is_not_retried_and_altinns_detail_is_shown(api: EventsApi, fake: FakeAltinn) -> None:
    with pytest.raises(ApiError) as raised:
        await api.create_subscription({"endPoint": ENDPOINT, "resourceFilter": RESOURCE, "sourceFilter": "x"})
    assert raised.value.status == 400
    assert "sourceFilter is not supported" in str(raised.value)
    assert _statuses(fake) == [400]


async def test_429_honours_retry_after(
    api: EventsApi, fake: FakeAltinn, sleeps: Sleeps, retries: list[Retrying]
) -> None:
    fake.fail_next(429, retry_after="7")
    assert (await api.list_subscriptions())["count"] == 0
    assert sleeps.delays == [7.0]
    assert _statuses(fake) == [429, 200]
    assert retries[0].reason == "HTTP 429"


async def test_503_backs_off_exponentially(api: EventsApi, fake: FakeAltinn, sleeps: Sleeps) -> None:
    fake.fail_next(503, times=3)
    await api.list_subscriptions()
    assert sleeps.delays == [1.0, 2.0, 4.0]
    assert _statuses(fake) == [503, 503, 503, 200]


async def test_backoff_is_bounded(
    http: aiohttp.ClientSession, settings: AltinnSettings, provider: TokenProvider, fake: FakeAltinn
) -> None:
    sleeps = Sleeps()
    api = EventsApi(
        http,
        settings.platform_url,
        provider,
        retry=RetryPolicy(attempts=3, base_delay_s=1.0, max_delay_s=5.0),
        sleep=sleeps,
    )
    fake.fail_next(429, retry_after="3600")
    fake.fail_next(503, times=5)
    with pytest.raises(ApiError) as raised:
        await api.list_subscriptions()
    assert sleeps.delays == [5.0, 2.0]
    assert raised.value.status == 503
    assert "after 3 attempts" in str(raised.value)
    assert len(fake.received) == 3


async def test_pull_follows_next_and_stops_on_an_empty_page(
    api: EventsApi, fake: FakeAltinn, urls: Urls
) -> None:
    events = correspondence_events()
    fake.add_events(events, age_s=60)
    pages = [page async for page in api.pages(RESOURCE, size=5)]
    assert [len(p.events) for p in pages] == [5, 5, 5, 3]
    assert [e["id"] for p in pages for e in p.events] == [e["id"] for e in events]
    for page in pages:
        assert page.next_url is not None
        assert page.next_url.startswith(urls.platform_url + "/events/api/v1/events?")
        assert parse_qs(urlsplit(page.next_url).query)["after"] == [page.last_id]
    # The cursor's last request: after the last event, an empty page without `next`.
    assert [dict(r.query)["after"] for r in fake.received] == ["0", *(p.last_id for p in pages)]
    last = await api.pull(RESOURCE, after=str(events[-1]["id"]))
    assert last.events == []
    assert last.next_url is None


async def test_pull_sees_events_only_once_30_s_old(api: EventsApi, fake: FakeAltinn, clock: Clock) -> None:
    [old, young] = correspondence_events()[:2]
    fake.add_event(old, age_s=31)
    fake.add_event(young, age_s=10)
    assert [e["id"] for e in (await api.pull(RESOURCE)).events] == [old["id"]]
    clock.advance(20)
    assert [e["id"] for e in (await api.pull(RESOURCE, after=str(old["id"]))).events] == [young["id"]]


async def test_pull_restarts_from_the_oldest_after_an_unknown_id(api: EventsApi, fake: FakeAltinn) -> None:
    events = correspondence_events()[:3]
    fake.add_events(events)
    page = await api.pull(RESOURCE, after="00000000-0000-0000-0000-000000000000")
    assert [e["id"] for e in page.events] == [e["id"] for e in events]


async def test_pull_filters_by_type_and_subject(api: EventsApi, fake: FakeAltinn) -> None:
    events = correspondence_events()
    fake.add_events(events)
    wanted = events[5]
    page = await api.pull(RESOURCE, types=[str(wanted["type"])], subject=str(wanted["subject"]))
    assert [e["id"] for e in page.events] == [wanted["id"]]
    assert ("type", wanted["type"]) in fake.received[-1].query


async def test_fake_page_sizes_follow_altinn(api: EventsApi, fake: FakeAltinn) -> None:
    template = correspondence_events()[0]
    fake.add_events({**template, "id": f"id-{n}"} for n in range(1005))
    small = await api.pull_url(api.events_url(RESOURCE).replace("size=1000", "size=0"))
    assert len(small.events) == 50
    big = await api.pull_url(api.events_url(RESOURCE).replace("size=1000", "size=5000"))
    assert len(big.events) == 1000
    with pytest.raises(ValueError, match="size"):
        api.events_url(RESOURCE, size=0)


async def test_a_next_url_off_the_platform_is_not_followed(api: EventsApi, fake: FakeAltinn) -> None:
    with pytest.raises(ApiError, match="not on the Altinn platform"):
        await api.pull_url("https://elsewhere.example/events/api/v1/events?after=0")
    assert fake.received == []
    assert fake.maskinporten_tokens_issued == 0


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"endPoint": "http://bridge.example.org/api/v1/events/t"}, "endpoint"),
        ({"endPoint": "/api/v1/events/t"}, "endpoint"),
        ({"resourceFilter": None}, "resource filter"),
        ({"typeFilter": "no.altinn.correspondence.*"}, "exactly one known event type"),
        ({"typeFilter": "no.altinn.correspondence.Correspondencereceiverreserved"}, "exactly one known"),
        ({"includeSubunits": True}, "includeSubunits requires a subjectFilter"),
        (
            {"alternativeSubjectFilter": "/organisation/310654302"},
            "alternativeSubjectFilter is not supported",
        ),
    ],
)
async def test_fake_refuses_what_altinn_refuses(
    api: EventsApi, fake: FakeAltinn, change: dict[str, object], detail: str
) -> None:
    body = {"endPoint": ENDPOINT, "resourceFilter": RESOURCE, **change}
    with pytest.raises(ApiError) as raised:
        await api.create_subscription({k: v for k, v in body.items() if v is not None})
    assert raised.value.status == 400
    assert detail in str(raised.value)
    assert fake.subscriptions == {}


async def test_fake_answers_an_identical_subscription_with_the_existing_one(
    api: EventsApi, fake: FakeAltinn
) -> None:
    body = {"endPoint": ENDPOINT, "resourceFilter": RESOURCE, "subjectFilter": ""}
    first = await api.create_subscription(body)
    again = await api.create_subscription(body)
    other = await api.create_subscription(
        {**body, "typeFilter": "no.altinn.correspondence.correspondencepublished"}
    )
    assert again == first
    assert other["id"] != first["id"]
    assert fake.validation_events == [first["id"], first["id"], other["id"]]


async def test_fake_refuses_an_expired_altinn_token(
    provider: TokenProvider, http: aiohttp.ClientSession, urls: Urls, clock: Clock
) -> None:
    token = await provider.token()
    url = urls.platform_url + "/events/api/v1/subscriptions"
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
    clock.advance(1801)
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 401
    async with http.get(url, headers={"Authorization": "Bearer not-a-token"}) as resp:
        assert resp.status == 401

"""Who may post events: tokens in the path or a Bearer header, rotation, the source allowlist."""

from __future__ import annotations

import pytest

from bridge.auth import fingerprint
from tests.support.events import ALTINN_CONTENT_TYPE, body_bytes, valid_fixture
from tests.support.http import EVENTS_PATH, json_answer, problem_answer
from tests.support.logs import LOG_DIR
from tests.support.metrics import sample

PUBLISHED_FIXTURE = valid_fixture("06-correspondencepublished")

OLD_TOKEN = "old-token-aaaaaaaaaaaaaaaaaaaaaaaa"
NEW_TOKEN = "new-token-bbbbbbbbbbbbbbbbbbbbbbbb"
TOKENS = f"{OLD_TOKEN},{NEW_TOKEN}"
HEADERS = {"Content-Type": ALTINN_CONTENT_TYPE}


async def _post(client, path: str = EVENTS_PATH, **headers: str):
    return await client.post(path, data=body_bytes(PUBLISHED_FIXTURE), headers={**HEADERS, **headers})


def _failures(registry, reason: str) -> float:
    return sample(registry, "altinn_bridge_auth_failures_total", reason=reason)


@pytest.mark.parametrize("token", [OLD_TOKEN, NEW_TOKEN], ids=["old", "new"])
async def test_either_token_in_the_path_is_accepted(make_client, fake_publisher, token: str):
    client = await make_client(BRIDGE_AUTH="token", BRIDGE_AUTH_TOKENS=TOKENS)

    answer = await json_answer(await _post(client, f"{EVENTS_PATH}/{token}"))

    assert answer["outcome"] == "published"
    assert len(fake_publisher.records) == 1


async def test_bearer_token_is_accepted(make_client, fake_publisher):
    client = await make_client(BRIDGE_AUTH="token", BRIDGE_AUTH_TOKENS=TOKENS)

    answer = await json_answer(await _post(client, Authorization=f"Bearer {NEW_TOKEN}"))

    assert answer["outcome"] == "published"
    assert len(fake_publisher.records) == 1


@pytest.mark.parametrize(
    ("path", "headers", "reason"),
    [
        (EVENTS_PATH, {}, "missing_token"),
        (EVENTS_PATH, {"Authorization": f"Basic {NEW_TOKEN}"}, "missing_token"),
        (EVENTS_PATH, {"Authorization": "Bearer "}, "missing_token"),
        (EVENTS_PATH, {"Authorization": "Bearer wrong-token-cccccccccccccccccccc"}, "wrong_token"),
        (f"{EVENTS_PATH}/wrong-token-cccccccccccccccccccc", {}, "wrong_token"),
        (f"{EVENTS_PATH}/{NEW_TOKEN[:-1]}", {}, "wrong_token"),
        (f"{EVENTS_PATH}/{NEW_TOKEN}x", {}, "wrong_token"),
        # A right header does not rescue a wrong path token: the path is what was presented.
        (
            f"{EVENTS_PATH}/wrong-token-cccccccccccccccccccc",
            {"Authorization": f"Bearer {NEW_TOKEN}"},
            "wrong_token",
        ),
    ],
    ids=[
        "none",
        "basic-scheme",
        "empty-bearer",
        "wrong-bearer",
        "wrong-path",
        "prefix",
        "suffix",
        "path-wins",
    ],
)
async def test_missing_or_wrong_token_is_401_problem_and_counted(  # noqa: PLR0917 - fixtures + params
    make_client, fake_publisher, registry, path: str, headers: dict[str, str], reason: str
):
    client = await make_client(BRIDGE_AUTH="token", BRIDGE_AUTH_TOKENS=TOKENS)

    response = await _post(client, path, **headers)
    problem = await problem_answer(response, 401, "unauthorized")

    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert NEW_TOKEN not in problem["detail"]
    assert OLD_TOKEN not in problem["detail"]
    assert fake_publisher.records == []
    assert _failures(registry, reason) == 1
    # Not an event: nothing counted under the events metric.
    assert sample(registry, "altinn_bridge_events_total", outcome="rejected", type="other") == 0


async def test_tokens_never_reach_logs_or_metrics_only_fingerprints(make_client):
    client = await make_client(BRIDGE_AUTH="token", BRIDGE_AUTH_TOKENS=TOKENS)
    log = LOG_DIR / "in-process.log"
    before = log.stat().st_size

    await json_answer(await _post(client, f"{EVENTS_PATH}/{NEW_TOKEN}"))
    wrong = "wrong-token-dddddddddddddddddddd"
    await problem_answer(await _post(client, f"{EVENTS_PATH}/{wrong}"), 401, "unauthorized")

    with log.open("rb") as handle:
        handle.seek(before)
        written = handle.read().decode()
    assert fingerprint(NEW_TOKEN) in written
    assert fingerprint(wrong) in written
    for secret in (NEW_TOKEN, OLD_TOKEN, wrong):
        assert secret not in written
    exposition = await (await client.get("/metrics")).text()
    assert NEW_TOKEN not in exposition
    assert wrong not in exposition
    assert f'route="{EVENTS_PATH}/{{token}}"' in exposition


async def test_without_auth_there_is_no_token_route(make_client):
    client = await make_client(BRIDGE_AUTH="none")

    await json_answer(await _post(client))
    await problem_answer(await _post(client, f"{EVENTS_PATH}/{NEW_TOKEN}"), 404, "not-found")


async def test_health_and_metrics_need_no_token(make_client):
    client = await make_client(
        BRIDGE_AUTH="token", BRIDGE_AUTH_TOKENS=TOKENS, BRIDGE_ALLOWED_NETWORKS="10.0.0.0/8"
    )

    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert (await client.get(path)).status == 200, path


# --- source address allowlist ---------------------------------------------------------------
# The test client connects from 127.0.0.1.


async def test_address_outside_the_allowlist_is_403_before_the_token_is_looked_at(
    make_client, fake_publisher, registry
):
    client = await make_client(
        BRIDGE_AUTH="token", BRIDGE_AUTH_TOKENS=TOKENS, BRIDGE_ALLOWED_NETWORKS="altinn-production"
    )

    await problem_answer(await _post(client, f"{EVENTS_PATH}/{NEW_TOKEN}"), 403, "forbidden")
    await problem_answer(
        await _post(client, f"{EVENTS_PATH}/wrong-token-cccccccccccccccccccc"), 403, "forbidden"
    )

    assert fake_publisher.records == []
    assert _failures(registry, "address") == 2
    assert _failures(registry, "wrong_token") == 0


async def test_address_inside_the_allowlist_is_let_through(make_client, fake_publisher):
    client = await make_client(BRIDGE_AUTH="none", BRIDGE_ALLOWED_NETWORKS="altinn-tt02,127.0.0.0/8")

    await json_answer(await _post(client))
    assert len(fake_publisher.records) == 1


async def test_forwarded_headers_ignored_from_an_untrusted_peer(make_client):
    client = await make_client(BRIDGE_AUTH="none", BRIDGE_ALLOWED_NETWORKS="altinn-production")

    response = await _post(client, **{"X-Forwarded-For": "20.100.46.139", "Forwarded": "for=20.100.46.139"})

    await problem_answer(response, 403, "forbidden")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"X-Forwarded-For": "20.100.46.139"}, 200),
        ({"X-Forwarded-For": "20.100.46.139, 127.0.0.1"}, 200),  # through two trusted hops
        ({"X-Forwarded-For": "20.100.46.139, 198.51.100.7"}, 403),  # nearest untrusted hop counts
        ({"X-Forwarded-For": "198.51.100.7"}, 403),
        ({"Forwarded": 'for="20.100.46.139:4711";proto=https'}, 200),
        ({"Forwarded": "for=198.51.100.7", "X-Forwarded-For": "20.100.46.139"}, 403),  # Forwarded wins
        ({"X-Forwarded-For": "not-an-address"}, 403),
        ({}, 403),  # the trusted proxy itself is not in the allowlist
    ],
    ids=[
        "xff",
        "xff-two-trusted",
        "xff-spoofed-left",
        "xff-other",
        "forwarded",
        "forwarded-wins",
        "garbage",
        "none",
    ],
)
async def test_forwarded_headers_honoured_from_a_trusted_proxy(
    make_client, headers: dict[str, str], status: int
):
    client = await make_client(
        BRIDGE_AUTH="none", BRIDGE_ALLOWED_NETWORKS="altinn-production", BRIDGE_TRUSTED_PROXIES="127.0.0.1/32"
    )

    response = await _post(client, **headers)

    assert response.status == status, await response.text()

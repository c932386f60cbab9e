"""The reconciler's pure rules: when the cursor may pass an event, and when Altinn restarted."""

from __future__ import annotations

import pytest

from bridge.config import ConfigError, DedupeMode, Settings
from bridge.cursor_store import Cursor
from bridge.reconciler import TOO_OLD, event_time, final_prefix, is_final, restart_suspected
from bridge.routing import topics_to_provision

T0 = 1_790_000_000.0  # 2026-09-21T...


def _event(event_id: str, time: str | None = "2026-09-21T12:00:00.1234567Z") -> dict[str, object]:
    body: dict[str, object] = {"id": event_id}
    if time is not None:
        body["time"] = time
    return body


@pytest.mark.parametrize(
    ("result", "final"),
    [
        ({"outcome": "published"}, True),
        ({"outcome": "duplicate"}, True),
        ({"outcome": "filtered"}, True),
        ({"outcome": "dead_lettered"}, True),
        ({"outcome": "validation"}, True),
        ({"outcome": TOO_OLD}, True),
        ({"outcome": "rejected", "retryable": False}, True),  # reject policy: a retry changes nothing
        ({"outcome": "unavailable", "retryable": True}, False),
        ({"outcome": "overloaded", "retryable": True}, False),
        ({"outcome": "error"}, False),
    ],
)
def test_is_final(result: dict[str, object], final: bool) -> None:
    assert is_final(result) is final


def test_final_prefix_stops_at_the_first_event_that_may_succeed_later() -> None:
    ok, later = {"outcome": "published"}, {"outcome": "unavailable", "retryable": True}
    assert final_prefix([]) == 0
    assert final_prefix([ok, ok]) == 2
    assert final_prefix([ok, later, ok]) == 1
    assert final_prefix([later, ok]) == 0


def test_event_time_reads_seven_fractional_digits_and_tolerates_garbage() -> None:
    assert event_time(_event("a", "1970-01-01T00:00:10.1234567Z")) == pytest.approx(10.123456)
    assert event_time(_event("a", None)) is None
    assert event_time(_event("a", "yesterday")) is None
    assert event_time({"time": 12}) is None


def test_restart_is_certain_when_the_page_repeats_the_cursors_own_event() -> None:
    cursor = Cursor("e-2", after_time=None)
    assert (
        restart_suspected(cursor, [_event("e-1"), _event("e-2")]) == "the page repeats the cursor's own event"
    )


def test_restart_is_suspected_when_the_page_starts_over_an_hour_before_the_cursor() -> None:
    after = event_time(_event("x", "2026-09-21T12:00:00Z"))
    assert after is not None
    cursor = Cursor("e-9", after_time=after)
    early = _event("e-1", "2026-09-21T10:59:00Z")
    reason = restart_suspected(cursor, [early])
    assert reason is not None
    assert "1.0 h before" in reason
    # Within the tolerance (Altinn orders by its own sequence, not by time): not a restart.
    assert restart_suspected(cursor, [_event("e-10", "2026-09-21T11:30:00Z")]) is None
    assert restart_suspected(cursor, [_event("e-10", "2026-09-21T12:00:01Z")]) is None


def test_no_restart_is_suspected_without_a_cursor_or_events() -> None:
    assert restart_suspected(Cursor("0"), [_event("e-1", "2000-01-01T00:00:00Z")]) is None
    assert restart_suspected(Cursor("e-1", after_time=T0), []) is None
    assert restart_suspected(Cursor("e-1"), [_event("e-2", None)]) is None


def test_cursor_round_trips_and_refuses_what_is_not_one() -> None:
    cursor = Cursor("e-1", after_time=T0, newest_event_time=T0 + 5, updated_at=T0 + 10)
    assert Cursor.decode(cursor.encode()) == cursor
    assert Cursor.decode(b'{"after": "e-2"}') == Cursor("e-2")
    for bad in (b"not json", b"[]", b'{"after": ""}', b'{"after": 5}'):
        with pytest.raises(ValueError, match="cursor record"):
            Cursor.decode(bad)


BASE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "BRIDGE_AUTH": "none"}


def test_reconciling_is_off_by_default_and_reads_no_altinn_variable() -> None:
    settings = Settings.from_env(BASE)
    assert settings.reconcile.enabled is False
    assert settings.reconcile.altinn is None
    assert settings.reconcile.cursor_topic == "altinn.correspondence.reconcile-cursor"
    assert (
        Settings.from_env({**BASE, "BRIDGE_TOPIC_PREFIX": "x"}).reconcile.cursor_topic == "x.reconcile-cursor"
    )


def test_reconciling_on_needs_a_resource_kafka_dedupe_and_the_maskinporten_client() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**BASE, "BRIDGE_RECONCILE": "on", "BRIDGE_DEDUPE": "memory"})
    problems = "\n".join(raised.value.problems)
    assert "BRIDGE_RECONCILE_RESOURCE" in problems
    assert "BRIDGE_DEDUPE=kafka" in problems
    assert "MASKINPORTEN_CLIENT_ID is required" in problems


def test_reconciling_on_with_everything_set(tmp_path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not read here")
    settings = Settings.from_env(
        {
            **BASE,
            "BRIDGE_RECONCILE": "on",
            "BRIDGE_RECONCILE_RESOURCE": "urn:altinn:resource:r1",
            "BRIDGE_RECONCILE_PAGE_SIZE": "1000",
            "MASKINPORTEN_CLIENT_ID": "c",
            "MASKINPORTEN_KEY_ID": "k",
            "MASKINPORTEN_PRIVATE_KEY_FILE": str(key),
            "ALTINN_ENVIRONMENT": "production",
        }
    )
    assert settings.dedupe.mode is DedupeMode.KAFKA
    assert settings.reconcile.resource == "urn:altinn:resource:r1"
    assert settings.reconcile.page_size == 1000
    assert settings.reconcile.altinn is not None
    assert settings.reconcile.altinn.platform_url == "https://platform.altinn.no"
    assert settings.describe()["BRIDGE_RECONCILE"] is True
    # `altinn-bridge topics` (and devtools.broker.provision) list the cursor topic last.
    assert topics_to_provision(settings)[-2:] == [
        "altinn.correspondence.dedupe",
        "altinn.correspondence.reconcile-cursor",
    ]
    assert "altinn.correspondence.reconcile-cursor" not in topics_to_provision(Settings.from_env(BASE))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BRIDGE_RECONCILE", "maybe"),
        ("BRIDGE_RECONCILE_RESOURCE", "my-resource"),
        ("BRIDGE_RECONCILE_PAGE_SIZE", "1001"),
        ("BRIDGE_RECONCILE_INTERVAL_S", "0"),
        ("BRIDGE_RECONCILE_CURSOR_TOPIC", "bad topic"),
    ],
)
def test_bad_reconcile_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**BASE, name: value})

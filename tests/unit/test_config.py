"""Settings.from_env: defaults, every variable's parsing, all problems reported at once."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from bridge.config import (
    SOURCE_PRESETS,
    VARIABLES,
    AuthMode,
    AuthSettings,
    Compression,
    ConfigError,
    FilterSettings,
    HealthSettings,
    HttpSettings,
    InvalidEventPolicy,
    KafkaSettings,
    LogLevel,
    Settings,
    ShutdownSettings,
    TopicRoute,
    TopicSettings,
    unknown_variables,
)
from tests.support.settings import make_settings

TOKEN = "t" * 24
#: The least a production configuration needs: brokers and one token.
BOOTSTRAP = {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "BRIDGE_AUTH_TOKENS": TOKEN}
NO_BOOTSTRAP = {"BRIDGE_AUTH_TOKENS": TOKEN}


def _problems(**env: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BOOTSTRAP, **env})
    return info.value.problems


def _only_problem(name: str, raw: str) -> str:
    """The one problem reported when only ``name`` is set to ``raw``; it names the variable."""
    problems = _problems(**{name: raw})
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{name}={raw!r}: ")
    return problems[0]


# --- defaults ----------------------------------------------------------------


def test_defaults_from_only_bootstrap_servers_and_a_token():
    settings = Settings.from_env(BOOTSTRAP)

    assert settings == Settings(
        kafka=KafkaSettings(
            bootstrap_servers=("kafka:9092",),
            client_id="altinn-kafka-bridge",
            enable_idempotence=True,
            compression=Compression.NONE,
            linger_ms=2,
            publish_timeout_s=10.0,
        ),
        http=HttpSettings(host="0.0.0.0", port=8080, max_body_bytes=65536),
        topics=TopicSettings(
            prefix="altinn.correspondence",
            routes=(),
            unknown="altinn.correspondence.unknown",
            deadletter="altinn.correspondence.deadletter",
        ),
        filters=FilterSettings(sources=(), resources=(), alternativesubjects=(), types=()),
        invalid_event_policy=InvalidEventPolicy.DEADLETTER,
        auth=AuthSettings(mode=AuthMode.TOKEN, tokens=(TOKEN,)),
        health=HealthSettings(ready_check_interval_s=5.0, ready_check_timeout_s=2.0),
        shutdown=ShutdownSettings(drain_s=3.0, grace_s=25.0),
        log_level=LogLevel.INFO,
    )


def test_documented_defaults_are_the_real_defaults():
    # Setting every variable to the default VARIABLES documents changes nothing.
    explicit = {name: var.default for name, var in VARIABLES.items() if var.default is not None}
    assert Settings.from_env({**explicit, **BOOTSTRAP}) == Settings.from_env(BOOTSTRAP)


def test_unrelated_variables_are_ignored():
    env = {**BOOTSTRAP, "HOME": "/root", "PATH": "/bin", "KAFKA_SOMETHING_ELSE": "x"}
    assert Settings.from_env(env) == Settings.from_env(BOOTSTRAP)


def test_describe_is_plain_json_data():
    settings = make_settings(BRIDGE_TOPIC_ROUTES="*=all.events", BRIDGE_FILTER_SOURCES="tt02")
    described = orjson.loads(orjson.dumps(settings.describe()))
    assert described["KAFKA_BOOTSTRAP_SERVERS"] == ["127.0.0.1:1"]
    assert described["BRIDGE_TOPIC_ROUTES"] == ["*=all.events"]
    assert described["BRIDGE_FILTER_SOURCES"] == [SOURCE_PRESETS["tt02"]]
    assert described["BRIDGE_INVALID_EVENT_POLICY"] == "deadletter"
    # Keyed by variable, every user variable once; the workers' own variables are not shown.
    assert list(described) == list(VARIABLES)


# --- all problems at once ----------------------------------------------------


def test_every_bad_variable_is_reported_in_one_error():
    bad = {
        "KAFKA_ENABLE_IDEMPOTENCE": "maybe",
        "KAFKA_COMPRESSION": "brotli",
        "KAFKA_LINGER_MS": "-1",
        "BRIDGE_PUBLISH_TIMEOUT_S": "soon",
        "BRIDGE_HTTP_PORT": "70000",
        "BRIDGE_MAX_BODY_BYTES": "1k",
        "BRIDGE_TOPIC_PREFIX": "bad prefix",
        "BRIDGE_TOPIC_ROUTES": "no-equals-sign",
        "BRIDGE_TOPIC_DEADLETTER": "dead/letter",
        "BRIDGE_INVALID_EVENT_POLICY": "drop",
        "BRIDGE_FILTER_SOURCES": "staging",
        "BRIDGE_READY_CHECK_TIMEOUT_S": "0",
        "BRIDGE_LOG_LEVEL": "verbose",
    }
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BOOTSTRAP, **bad})
    error = info.value

    assert len(error.problems) == len(bad)
    assert sorted(p.split("=", 1)[0] for p in error.problems) == sorted(bad)
    message = str(error)
    assert message.startswith(f"invalid configuration ({len(bad)} problem(s)):")
    for name, value in bad.items():
        assert f"  - {name}={value!r}: " in message


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "env",
    [
        NO_BOOTSTRAP,
        {**NO_BOOTSTRAP, "KAFKA_BOOTSTRAP_SERVERS": ""},
        {**NO_BOOTSTRAP, "KAFKA_BOOTSTRAP_SERVERS": " , "},
    ],
    ids=["absent", "empty", "only-commas"],
)
def test_missing_bootstrap_servers(env: dict[str, str]):
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS") as info:
        Settings.from_env(env)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("KAFKA_BOOTSTRAP_SERVERS")


def test_missing_bootstrap_servers_reported_with_other_problems():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**NO_BOOTSTRAP, "BRIDGE_HTTP_PORT": "0"})
    assert len(info.value.problems) == 2
    required_help = VARIABLES["KAFKA_BOOTSTRAP_SERVERS"].help
    assert info.value.problems[0] == f"KAFKA_BOOTSTRAP_SERVERS is required: {required_help}"
    assert info.value.problems[1].startswith("BRIDGE_HTTP_PORT='0': must be between 1 and 65535")


# --- Kafka -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("kafka:9092", ("kafka:9092",)),
        ("a:9092, b:9093 ,c:9094", ("a:9092", "b:9093", "c:9094")),
        ("  kafka:9092  ", ("kafka:9092",)),
        ("[::1]:9092", ("[::1]:9092",)),
    ],
    ids=["one", "several-with-spaces", "padded", "ipv6"],
)
def test_bootstrap_servers_parsed(raw: str, expected: tuple[str, ...]):
    assert (
        Settings.from_env({**BOOTSTRAP, "KAFKA_BOOTSTRAP_SERVERS": raw}).kafka.bootstrap_servers == expected
    )


@pytest.mark.parametrize(
    "raw",
    ["kafka", "kafka:port", ":9092", "kafka:0", "kafka:65536", "a:9092,b"],
    ids=["no-port", "port-not-number", "no-host", "port-zero", "port-too-big", "second-without-port"],
)
def test_bad_bootstrap_servers(raw: str):
    with pytest.raises(ConfigError, match="is not host:port") as info:
        Settings.from_env({**BOOTSTRAP, "KAFKA_BOOTSTRAP_SERVERS": raw})
    assert len(info.value.problems) == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("On", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("off", False),
    ],
    ids=repr,
)
def test_booleans(raw: str, expected: bool):
    assert make_settings(KAFKA_ENABLE_IDEMPOTENCE=raw).kafka.enable_idempotence is expected


@pytest.mark.parametrize("raw", ["maybe", "", "2", "truee"], ids=["maybe", "empty", "two", "typo"])
def test_bad_boolean(raw: str):
    problems = _problems(KAFKA_ENABLE_IDEMPOTENCE=raw)
    assert problems == [f"KAFKA_ENABLE_IDEMPOTENCE={raw!r}: expected true or false"]


@pytest.mark.parametrize(
    ("name", "raw", "attribute", "expected"),
    [
        ("KAFKA_COMPRESSION", "ZSTD", ("kafka", "compression"), Compression.ZSTD),
        ("KAFKA_COMPRESSION", "gzip", ("kafka", "compression"), Compression.GZIP),
        ("KAFKA_COMPRESSION", "Lz4", ("kafka", "compression"), Compression.LZ4),
        ("BRIDGE_INVALID_EVENT_POLICY", "Reject", ("invalid_event_policy",), InvalidEventPolicy.REJECT),
        (
            "BRIDGE_INVALID_EVENT_POLICY",
            "DEADLETTER",
            ("invalid_event_policy",),
            InvalidEventPolicy.DEADLETTER,
        ),
        ("BRIDGE_LOG_LEVEL", "WARNING", ("log_level",), LogLevel.WARNING),
        ("BRIDGE_LOG_LEVEL", "Debug", ("log_level",), LogLevel.DEBUG),
    ],
    ids=["zstd-upper", "gzip", "lz4-mixed", "reject", "deadletter-upper", "warning-upper", "debug-title"],
)
def test_enums_case_insensitive(name: str, raw: str, attribute: tuple[str, ...], expected: object):
    value: object = make_settings(**{name: raw})
    for part in attribute:
        value = getattr(value, part)
    assert value is expected


@pytest.mark.parametrize(
    ("name", "raw", "allowed"),
    [
        ("KAFKA_COMPRESSION", "brotli", "none, gzip, snappy, lz4, zstd"),
        ("BRIDGE_INVALID_EVENT_POLICY", "drop", "deadletter, reject"),
        ("BRIDGE_LOG_LEVEL", "trace", "debug, info, warning, error"),
    ],
    ids=["compression", "policy", "log-level"],
)
def test_bad_enum_lists_allowed_values(name: str, raw: str, allowed: str):
    assert _problems(**{name: raw}) == [f"{name}={raw!r}: expected one of: {allowed}"]


def test_client_id_must_not_be_empty():
    assert _problems(KAFKA_CLIENT_ID="  ") == ["KAFKA_CLIENT_ID='  ': must not be empty"]


def test_values_are_stripped():
    settings = make_settings(
        BRIDGE_HTTP_PORT=" 8081 ", KAFKA_CLIENT_ID=" bridge-1 ", BRIDGE_LOG_LEVEL=" error "
    )
    assert settings.http.port == 8081
    assert settings.kafka.client_id == "bridge-1"
    assert settings.log_level is LogLevel.ERROR


# --- ranges ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "path", "expected"),
    [
        ("BRIDGE_HTTP_PORT", "1", ("http", "port"), 1),
        ("BRIDGE_HTTP_PORT", "65535", ("http", "port"), 65535),
        ("KAFKA_LINGER_MS", "60000", ("kafka", "linger_ms"), 60000),
        ("BRIDGE_MAX_BODY_BYTES", "1024", ("http", "max_body_bytes"), 1024),
        ("BRIDGE_PUBLISH_TIMEOUT_S", "0.1", ("kafka", "publish_timeout_s"), 0.1),
        ("BRIDGE_PUBLISH_TIMEOUT_S", "40", ("kafka", "publish_timeout_s"), 40.0),
        ("BRIDGE_READY_CHECK_INTERVAL_S", "0", ("health", "ready_check_interval_s"), 0.0),
        ("BRIDGE_READY_CHECK_TIMEOUT_S", "1.5", ("health", "ready_check_timeout_s"), 1.5),
        ("BRIDGE_SHUTDOWN_DRAIN_S", "0", ("shutdown", "drain_s"), 0.0),
        ("BRIDGE_SHUTDOWN_GRACE_S", "600", ("shutdown", "grace_s"), 600.0),
    ],
    ids=[
        "port-min",
        "port-max",
        "linger-max",
        "body-min",
        "publish-timeout-min",
        "publish-timeout-max",
        "ready-interval-zero",
        "ready-timeout-fraction",
        "drain-zero",
        "grace-max",
    ],
)
def test_range_limits_accepted(name: str, raw: str, path: tuple[str, str], expected: float):
    section = getattr(make_settings(**{name: raw}), path[0])
    assert getattr(section, path[1]) == expected


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("BRIDGE_HTTP_PORT", "0", "must be between 1 and 65535"),
        ("BRIDGE_HTTP_PORT", "65536", "must be between 1 and 65535"),
        ("BRIDGE_HTTP_PORT", "80.5", "expected a whole number"),
        ("KAFKA_LINGER_MS", "-1", "must be between 0 and 60000"),
        ("KAFKA_LINGER_MS", "60001", "must be between 0 and 60000"),
        ("BRIDGE_MAX_BODY_BYTES", "1023", "must be between 1024 and 67108864"),
        ("BRIDGE_PUBLISH_TIMEOUT_S", "41", "must be between 0.1 and 40 seconds"),
        ("BRIDGE_PUBLISH_TIMEOUT_S", "0.05", "must be between 0.1 and 40 seconds"),
        ("BRIDGE_PUBLISH_TIMEOUT_S", "nan", "must be between 0.1 and 40 seconds"),
        ("BRIDGE_PUBLISH_TIMEOUT_S", "10s", "expected a number of seconds"),
        ("BRIDGE_READY_CHECK_INTERVAL_S", "301", "must be between 0 and 300 seconds"),
        ("BRIDGE_SHUTDOWN_GRACE_S", "0.5", "must be between 1 and 600 seconds"),
        ("BRIDGE_SHUTDOWN_GRACE_S", "inf", "must be between 1 and 600 seconds"),
    ],
    ids=[
        "port-zero",
        "port-too-big",
        "port-fraction",
        "linger-negative",
        "linger-too-big",
        "body-too-small",
        "publish-timeout-over-altinn-limit",
        "publish-timeout-too-small",
        "publish-timeout-nan",
        "publish-timeout-with-unit",
        "ready-interval-too-big",
        "grace-too-small",
        "grace-infinite",
    ],
)
def test_out_of_range(name: str, raw: str, message: str):
    assert _problems(**{name: raw}) == [f"{name}={raw!r}: {message}"]


@pytest.mark.parametrize(("drain", "grace"), [("25", "25"), ("30", "25"), ("10", "5")], ids=str)
def test_drain_not_below_grace_rejected(drain: str, grace: str):
    problems = _problems(BRIDGE_SHUTDOWN_DRAIN_S=drain, BRIDGE_SHUTDOWN_GRACE_S=grace)
    expected = f"BRIDGE_SHUTDOWN_DRAIN_S ({float(drain):g}) must be less than BRIDGE_SHUTDOWN_GRACE_S"
    assert problems == [f"{expected} ({float(grace):g})"]


def test_drain_below_grace_accepted():
    settings = make_settings(BRIDGE_SHUTDOWN_DRAIN_S="24.5", BRIDGE_SHUTDOWN_GRACE_S="25")
    assert settings.shutdown == ShutdownSettings(drain_s=24.5, grace_s=25.0)


# --- sources -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("tt02", ("https://platform.tt02.altinn.no/correspondence/api/v1/",)),
        ("TT02", ("https://platform.tt02.altinn.no/correspondence/api/v1/",)),
        ("production", ("https://platform.altinn.no/correspondence/api/v1/",)),
        ("at22", ("https://platform.at22.altinn.cloud/correspondence/api/v1/",)),
        ("at23", ("https://platform.at23.altinn.cloud/correspondence/api/v1/",)),
        ("yt01", ("https://platform.yt01.altinn.cloud/correspondence/api/v1/",)),
        (
            "tt02, https://altinn-dev-api.azure-api.net/correspondence",
            (
                "https://platform.tt02.altinn.no/correspondence/api/v1/",
                "https://altinn-dev-api.azure-api.net/correspondence",
            ),
        ),
        ("http://localhost:5000", ("http://localhost:5000",)),
    ],
    ids=["tt02", "tt02-upper", "production", "at22", "at23", "yt01", "preset-and-url", "http-url"],
)
def test_source_presets_and_urls(raw: str, expected: tuple[str, ...]):
    assert make_settings(BRIDGE_FILTER_SOURCES=raw).filters.sources == expected


@pytest.mark.parametrize(
    "raw",
    ["staging", "platform.tt02.altinn.no", "ftp://platform.altinn.no"],
    ids=["unknown-preset", "host-without-scheme", "ftp"],
)
def test_bad_source_rejected(raw: str):
    problem = _only_problem("BRIDGE_FILTER_SOURCES", raw)
    assert "is neither a preset (production, tt02, at22, at23, yt01) nor an http(s) URL" in problem


# --- topics and routes -------------------------------------------------------


def test_routes_parsed_with_patterns_lower_cased():
    settings = make_settings(
        BRIDGE_TOPIC_ROUTES=(
            " No.Altinn.Correspondence.CorrespondencePublished = Published.Topic ,"
            "no.altinn.correspondence.attachment*=attachments"
        )
    )
    assert settings.topics.routes == (
        TopicRoute("no.altinn.correspondence.correspondencepublished", "Published.Topic"),
        TopicRoute("no.altinn.correspondence.attachment*", "attachments"),
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("x=bad topic", "entry 'x=bad topic': topic not a legal Kafka topic name"),
        ("x=", "entry 'x=': topic not a legal Kafka topic name"),
        ("x=..", "entry 'x=..': topic not a legal Kafka topic name"),
        (f"x={'a' * 250}", "topic not a legal Kafka topic name"),
        ("x=topic/name", "topic not a legal Kafka topic name"),
        ("just-a-topic", "entry 'just-a-topic' is not pattern=topic"),
        ("=topic", "entry '=topic' is not pattern=topic"),
    ],
    ids=["space-in-topic", "empty-topic", "dot-dot", "too-long", "slash", "no-equals", "empty-pattern"],
)
def test_bad_route_rejected(raw: str, message: str):
    assert message in _only_problem("BRIDGE_TOPIC_ROUTES", raw)


def test_custom_topic_names():
    settings = make_settings(
        BRIDGE_TOPIC_PREFIX="acme.altinn",
        BRIDGE_TOPIC_UNKNOWN="acme.unknown",
        BRIDGE_TOPIC_DEADLETTER="acme_dead-letter",
    )
    assert settings.topics == TopicSettings(
        prefix="acme.altinn", routes=(), unknown="acme.unknown", deadletter="acme_dead-letter"
    )


def test_unknown_and_deadletter_topics_follow_the_prefix_when_unset():
    settings = make_settings(BRIDGE_TOPIC_PREFIX="acme.altinn")
    assert (settings.topics.unknown, settings.topics.deadletter) == (
        "acme.altinn.unknown",
        "acme.altinn.deadletter",
    )


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("BRIDGE_TOPIC_PREFIX", "a" * 191),
        ("BRIDGE_TOPIC_PREFIX", "altinn correspondence"),
        ("BRIDGE_TOPIC_UNKNOWN", "."),
        ("BRIDGE_TOPIC_DEADLETTER", "dead:letter"),
        ("BRIDGE_TOPIC_DEADLETTER", ""),
    ],
    ids=["prefix-too-long", "prefix-space", "unknown-dot", "deadletter-colon", "deadletter-empty"],
)
def test_bad_topic_names_rejected(name: str, raw: str):
    _only_problem(name, raw)


# --- other filters -----------------------------------------------------------


def test_filter_lists_parsed():
    settings = make_settings(
        BRIDGE_FILTER_RESOURCES="urn:altinn:resource:a, urn:altinn:resource:b,",
        BRIDGE_FILTER_ALTERNATIVESUBJECTS="/organisation/991825827, /person/*",
        BRIDGE_FILTER_TYPES="CorrespondencePublished, no.altinn.correspondence.AttachmentPublished",
    )
    assert settings.filters == FilterSettings(
        sources=(),
        resources=("urn:altinn:resource:a", "urn:altinn:resource:b"),
        alternativesubjects=("/organisation/991825827", "/person/*"),
        types=(
            "no.altinn.correspondence.correspondencepublished",
            "no.altinn.correspondence.attachmentpublished",
        ),
    )


# --- unknown variables, immutability -----------------------------------------


def test_unknown_variables_lists_bridge_typos_only():
    env = {
        **BOOTSTRAP,
        "BRIDGE_HTTP_PROT": "8081",
        "BRIDGE_LOG_LEVEL": "info",
        "BRIDGE_FILTER_SOURCE": "tt02",
        "KAFKA_BOOTSTRAP_SERVER": "typo-not-ours-to-report:9092",
        "HOME": "/root",
        "bridge_http_port": "1",
    }
    assert unknown_variables(env) == ["BRIDGE_FILTER_SOURCE", "BRIDGE_HTTP_PROT"]


def test_unknown_variables_empty_for_a_clean_env():
    assert unknown_variables({**BOOTSTRAP, "BRIDGE_HTTP_PORT": "8080"}) == []


def test_settings_are_frozen():
    settings = make_settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.log_level = LogLevel.DEBUG  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.kafka.linger_ms = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.topics.routes = ()  # type: ignore[misc]


# --- the ops listener --------------------------------------------------------


def test_ops_port_is_off_by_default_and_must_differ_from_the_event_port():
    assert Settings.from_env(BOOTSTRAP).http.ops_port == 0
    assert Settings.from_env({**BOOTSTRAP, "BRIDGE_OPS_PORT": "8081"}).describe()["BRIDGE_OPS_PORT"] == 8081
    assert _problems(BRIDGE_HTTP_PORT="8080", BRIDGE_OPS_PORT="8080") == [
        "BRIDGE_OPS_PORT must differ from BRIDGE_HTTP_PORT (or be 0: off)"
    ]
    assert _only_problem("BRIDGE_OPS_PORT", "70000")

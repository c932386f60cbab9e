"""bridge.auth: token matching, fingerprints, client addresses behind proxies. Pure functions."""

from __future__ import annotations

import ipaddress

import pytest

from bridge.auth import (
    Denied,
    Guard,
    Tokens,
    allowed,
    bearer_token,
    client_address,
    fingerprint,
    forwarded_for,
    parse_networks,
)
from bridge.config import ConfigError, Settings

TOKEN = "a" * 24
OTHER = "b" * 32


def test_tokens_match_exactly_one_of_several():
    tokens = Tokens([TOKEN, OTHER])
    assert tokens.match(TOKEN) == fingerprint(TOKEN)  # the accepted token's name for the log line
    assert tokens.match(OTHER) == fingerprint(OTHER)
    assert not tokens.match(TOKEN[:-1])
    assert not tokens.match(TOKEN + "a")
    assert not tokens.match("")
    assert not tokens.match("ä" * 24)  # non-ASCII never crashes the comparison
    assert not Tokens([])


def test_fingerprint_is_short_stable_and_not_the_token():
    assert fingerprint(TOKEN) == fingerprint(TOKEN)
    assert fingerprint(TOKEN) != fingerprint(OTHER)
    assert len(fingerprint(TOKEN)) == 8
    assert TOKEN not in fingerprint(TOKEN)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        (f"Bearer {TOKEN}", TOKEN),
        (f"bearer   {TOKEN}  ", TOKEN),
        (f"Basic {TOKEN}", None),
        ("Bearer", None),
        ("Bearer    ", None),
    ],
)
def test_bearer_token(header: str | None, token: str | None):
    assert bearer_token(header) == token


def test_presets_expand_to_altinns_egress_addresses():
    networks = parse_networks(["altinn-tt02", "ALTINN-PRODUCTION", "10.0.0.0/8", "2001:db8::1"])
    assert [str(n) for n in networks] == [
        "20.100.24.41/32",
        "20.100.46.139/32",
        "10.0.0.0/8",
        "2001:db8::1/128",
    ]


def test_a_bad_network_names_itself():
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        parse_networks(["10.0.0.0/8", "10.0.0.0/33"])


def test_forwarded_for_reads_rfc7239_then_x_forwarded_for():
    assert forwarded_for('for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"', "1.2.3.4") == [
        "192.0.2.60",
        '"[2001:db8::1]:4711"',
    ]
    assert forwarded_for(None, "1.2.3.4, 5.6.7.8") == ["1.2.3.4", "5.6.7.8"]
    assert forwarded_for(None, None) == []


PROXIES = parse_networks(["10.0.0.0/8"])


@pytest.mark.parametrize(
    ("peer", "hops", "expected"),
    [
        ("192.0.2.1", ["20.100.46.139"], "192.0.2.1"),  # untrusted peer: its headers are ignored
        ("10.1.1.1", ["20.100.46.139"], "20.100.46.139"),
        ("10.1.1.1", ["20.100.46.139", "10.2.2.2"], "20.100.46.139"),
        ("10.1.1.1", ["20.100.46.139", "192.0.2.9"], "192.0.2.9"),  # spoofed left part ignored
        ("10.1.1.1", ['"[2001:db8::7]:443"'], "2001:db8::7"),
        ("10.1.1.1", ["192.0.2.5:8080"], "192.0.2.5"),
        ("10.1.1.1", [], "10.1.1.1"),
        ("10.1.1.1", ["unknown"], None),
        (None, [], None),
    ],
)
def test_client_address(peer: str | None, hops: list[str], expected: str | None):
    address = client_address(peer, hops, PROXIES)
    assert (str(address) if address is not None else None) == expected


def test_allowed():
    allowlist = parse_networks(["altinn-production"])
    assert allowed(ipaddress.ip_address("20.100.46.139"), allowlist)
    assert not allowed(ipaddress.ip_address("20.100.46.140"), allowlist)
    assert not allowed(None, allowlist)
    assert allowed(None, ())


def test_guard_reasons():
    guard = Guard([TOKEN], required=True, allowlist=parse_networks(["127.0.0.1"]))
    assert guard.check(path_token=TOKEN, authorization=None, peer="127.0.0.1") == fingerprint(TOKEN)
    for kwargs, reason in [
        ({"path_token": TOKEN, "peer": "127.0.0.2"}, "address"),
        ({"path_token": None, "peer": "127.0.0.1"}, "missing_token"),
        ({"path_token": OTHER, "peer": "127.0.0.1"}, "wrong_token"),
    ]:
        with pytest.raises(Denied) as info:
            guard.check(authorization=None, **kwargs)
        assert info.value.reason == reason
        assert TOKEN not in info.value.detail
    assert Guard([], required=False).check(path_token=None, authorization=None, peer=None) is None


# --- configuration --------------------------------------------------------------------------


def _problems(**env: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k:9092", **env})
    return info.value.problems


def test_token_mode_without_tokens_refuses_to_start_and_says_how_to_fix():
    (problem,) = _problems()
    assert problem.startswith("BRIDGE_AUTH_TOKENS is empty")
    assert "BRIDGE_AUTH=none" in problem
    assert "/api/v1/events/<token>" in problem


@pytest.mark.parametrize(
    "tokens",
    ["short", "a" * 23, "a" * 30 + "/", "a" * 30 + " b", f"{TOKEN},{'x' * 10}", "a" * 24 + "ø"],
    ids=["short", "23-chars", "slash", "space", "second-short", "non-ascii"],
)
def test_bad_tokens_are_refused_without_printing_them(tokens: str):
    (problem,) = _problems(BRIDGE_AUTH_TOKENS=tokens)
    assert problem.startswith("BRIDGE_AUTH_TOKENS=<redacted>: token ")
    for token in tokens.split(","):
        assert token not in problem


def test_tokens_are_not_in_repr_or_describe():
    settings = Settings.from_env(
        {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "BRIDGE_AUTH_TOKENS": f"{TOKEN},{OTHER}"}
    )
    assert settings.auth.tokens == (TOKEN, OTHER)
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings.describe())
    assert settings.describe()["BRIDGE_AUTH_TOKENS"] == 2


def test_bad_networks_are_reported_per_variable():
    problems = _problems(
        BRIDGE_AUTH="none", BRIDGE_ALLOWED_NETWORKS="altinn-prod", BRIDGE_TRUSTED_PROXIES="1.2.3"
    )
    assert problems[0].startswith("BRIDGE_ALLOWED_NETWORKS='altinn-prod': 'altinn-prod' is neither a CIDR")
    assert problems[1].startswith("BRIDGE_TRUSTED_PROXIES='1.2.3'")


def test_tls_files_must_exist_and_come_in_pairs(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    problems = _problems(
        BRIDGE_AUTH="none", BRIDGE_TLS_CERT_FILE=str(cert), KAFKA_SSL_CA_FILE=str(tmp_path / "missing.pem")
    )
    assert any(p.startswith("KAFKA_SSL_CA_FILE=") and "no readable file" in p for p in problems)
    assert "BRIDGE_TLS_CERT_FILE and BRIDGE_TLS_KEY_FILE must be set together" in problems


@pytest.mark.parametrize(
    ("env", "needs"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "sasl_plaintext", "KAFKA_SASL_MECHANISM": "scram-sha-512"},
            "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "OAUTHBEARER"},
            "KAFKA_SASL_OAUTHBEARER_TOKEN_FILE",
        ),
    ],
)
def test_sasl_needs_its_credentials(env: dict[str, str], needs: str):
    (problem,) = _problems(BRIDGE_AUTH="none", **env)
    assert needs in problem


def test_kafka_password_never_printed():
    problems = _problems(
        BRIDGE_AUTH="none",
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM="MD5",
        KAFKA_SASL_PASSWORD="hunter2-very-secret",  # noqa: S106 - checking it is never printed
    )
    assert all("hunter2" not in p for p in problems)

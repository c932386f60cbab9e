"""Settings for tests, built from a dict as the bridge builds them from its environment."""

from __future__ import annotations

from bridge.config import Settings


def make_settings(**env: str) -> Settings:
    """Settings from a dict, with a bootstrap server that is never contacted.

    Dedupe is kept in memory unless a test asks otherwise: the production default
    (``kafka``) reads a state topic, which the HTTP tests' fake publisher has not.
    Authentication is off unless a test asks for it (the production default needs
    a token).
    """
    return Settings.from_env(
        {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "BRIDGE_DEDUPE": "memory", "BRIDGE_AUTH": "none", **env}
    )

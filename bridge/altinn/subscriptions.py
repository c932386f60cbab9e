"""The rules a subscription request must follow, before anything is sent to Altinn.

Altinn accepts exactly one event type per subscription (no wildcards, no lists),
refuses ``sourceFilter`` and ``alternativeSubjectFilter`` for Correspondence
(HTTP 400), and lets ``""`` as a filter through although it then matches nothing.
Checking here means a mistake costs no token and leaves nothing half-created.
Pure: plain data in, plain data out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from bridge.auth import fingerprint
from bridge.events import CORRESPONDENCE_PREFIX, KNOWN_TYPES

RESOURCE_PREFIX: Final = "urn:altinn:resource:"

#: Filters Altinn refuses, the option that would ask for them, and the bridge setting that does the job.
REFUSED_FILTERS: Final[dict[str, tuple[str, str]]] = {
    "sourceFilter": ("--source-filter", "BRIDGE_FILTER_SOURCES"),
    "alternativeSubjectFilter": ("--alternative-subject-filter", "BRIDGE_FILTER_ALTERNATIVESUBJECTS"),
}

# The secret path segment of the bridge's event URL (/api/v1/events/<token>).
_PATH_TOKEN = re.compile(r"(/api/v1/events/)([^/?#\s\"]+)")


@dataclass(frozen=True, slots=True)
class Plan:
    """The subscriptions to create (one body each) and what the user should know first."""

    bodies: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)


class Refused(ValueError):
    """The request breaks a rule Altinn would enforce (or silently get wrong); ``problems`` says which."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def full_type(name: str) -> str:
    """``correspondencepublished`` or the full ``no.altinn.correspondence.…`` name, as the full name."""
    lowered = name.strip().lower()
    return lowered if "." in lowered else CORRESPONDENCE_PREFIX + lowered


def plan(
    *,
    endpoint: str,
    resource: str,
    subject: str | None = None,
    types: Sequence[str] = (),
    include_subunits: bool = False,
    refused_filters: Sequence[str] = (),
) -> Plan:
    """The subscription bodies for these options, one per type; :class:`Refused` listing every problem.

    ``refused_filters`` names the refused filters (``sourceFilter``, …) the user asked for.
    """
    problems: list[str] = []
    warnings: list[str] = []
    for name in refused_filters:
        option, setting = REFUSED_FILTERS[name]
        problems.append(
            f"{option}: Altinn refuses {name} for Correspondence resources (HTTP 400). Subscribe "
            f"without it and let the bridge filter instead: set {setting} in the bridge's environment."
        )
    problems += _endpoint_problems(endpoint, warnings)
    if not resource.startswith(RESOURCE_PREFIX) or resource == RESOURCE_PREFIX:
        problems.append(
            f"--resource {resource!r}: expected the resource's URN, {RESOURCE_PREFIX}<resource id>"
        )
    if subject is not None and not subject.strip():
        warnings.append(
            'warning: --subject "" is sent as an empty subjectFilter, which Altinn accepts and then matches '
            "nothing: this subscription will never receive an event. Leave --subject out for all subjects."
        )
    if include_subunits and not subject:
        problems.append("--include-subunits needs --subject (the organisation whose subunits to include)")
    full_types = _types(types, problems, warnings)
    if problems:
        raise Refused(problems)
    base: dict[str, Any] = {"endPoint": endpoint, "resourceFilter": resource}
    if subject is not None:
        base["subjectFilter"] = subject
    if include_subunits:
        base["includeSubunits"] = True
    # Altinn takes exactly one type per subscription: one subscription for each, or one for all.
    bodies = [{**base, "typeFilter": t} for t in full_types] or [base]
    return Plan(bodies, warnings)


def _endpoint_problems(endpoint: str, warnings: list[str]) -> list[str]:
    parts = urlsplit(endpoint)
    if parts.scheme == "http":
        return [f"--endpoint must be https: Altinn pushes only to https URLs (got {redact_text(endpoint)})"]
    if parts.scheme != "https" or not parts.hostname:
        return [
            (
                "--endpoint must be an absolute https URL, e.g. https://<host>/api/v1/events/<token> "
                f"(got {redact_text(endpoint)!r})"
            )
        ]
    if not _PATH_TOKEN.search(parts.path):
        warnings.append(
            "warning: --endpoint has no token after /api/v1/events/; the bridge refuses events without "
            "one of BRIDGE_AUTH_TOKENS unless BRIDGE_AUTH=none, and Altinn can only send it in the path"
        )
    return []


def _types(types: Sequence[str], problems: list[str], warnings: list[str]) -> list[str]:
    """The distinct full type names; problems and warnings about them appended."""
    full_types: list[str] = []
    for raw in types:
        problems += _type_problems(raw)
        name = full_type(raw)
        short = name.removeprefix(CORRESPONDENCE_PREFIX)
        if name.startswith(CORRESPONDENCE_PREFIX) and short not in KNOWN_TYPES:
            warnings.append(
                f"warning: --type {raw!r} is not a type Correspondence is known to emit; check the spelling"
            )
        if name not in full_types:
            full_types.append(name)
    return full_types


def _type_problems(raw: str) -> list[str]:
    name = raw.strip()
    if not name:
        return ['--type "": an empty type filter matches nothing; leave --type out for every type']
    if any(c in name for c in "*?,") or any(c.isspace() for c in name):
        return [
            (
                f"--type {raw!r}: Altinn takes exactly one type per subscription, no wildcards or lists; "
                "repeat --type for several (one subscription each), or leave it out for every type"
            )
        ]
    return []


def redact_text(text: str) -> str:
    """``text`` with the bridge token in an event URL replaced by its fingerprint (as the bridge logs it)."""
    return _PATH_TOKEN.sub(lambda m: f"{m.group(1)}<token sha256:{fingerprint(m.group(2))}>", text)


def redact(value: Any) -> Any:
    """``value`` (JSON-like) with every string passed through :func:`redact_text`."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value

"""The organisation's local filters. Pure: no framework imports.

Altinn refuses ``sourceFilter`` and ``alternativeSubjectFilter`` on
Correspondence subscriptions, so the bridge applies them itself. An empty list
lets everything through.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias, get_args

from bridge.config import FilterSettings
from bridge.events import Event

#: The filter that kept an event out (``filtered_by`` in answers and logs), one per setting.
FilterName: TypeAlias = Literal["source", "resource", "type", "alternativesubject"]
#: Every :data:`FilterName`, in the order the filters are applied (the OpenAPI document lists the same).
FILTER_NAMES: Final[tuple[FilterName, ...]] = get_args(FilterName)


class Filters:
    """Decides whether an event is for this organisation."""

    def __init__(self, settings: FilterSettings) -> None:
        self._sources = settings.sources
        self._resources = frozenset(settings.resources)
        self._types = frozenset(settings.types)
        exact, prefixes = set(), []
        for entry in settings.alternativesubjects:
            if entry.endswith("*"):
                prefixes.append(entry[:-1])
            elif entry.endswith("/"):
                prefixes.append(entry)
            else:
                exact.add(entry)
        self._alt_exact = frozenset(exact)
        self._alt_prefixes = tuple(prefixes)
        self._alt_enabled = bool(settings.alternativesubjects)

    def rejects(self, event: Event) -> FilterName | None:
        """The name of the filter that keeps ``event`` out, or ``None`` if it passes.

        The name never carries the value (which may be personal data).
        """
        if self._sources and not any(_under(event.source, s) for s in self._sources):
            return "source"
        if self._resources and event.resource not in self._resources:
            return "resource"
        if self._types and event.type.lower() not in self._types:
            return "type"
        if self._alt_enabled:
            alt = event.alternativesubject
            if alt is None or not (alt in self._alt_exact or alt.startswith(self._alt_prefixes)):
                return "alternativesubject"
        return None


def _under(source: str, allowed: str) -> bool:
    """``source`` equals ``allowed`` or lies below it at a ``/`` boundary.

    So ``https://platform.altinn.no`` does not admit ``https://platform.altinn.no.evil.example``.
    """
    base = allowed.rstrip("/")
    return source == base or source.startswith(base + "/")

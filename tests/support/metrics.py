"""Reading the bridge's metrics from an in-process :class:`CollectorRegistry`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist (yet)."""
    return registry.get_sample_value(name, labels) or 0.0


def series(registry: CollectorRegistry, sample_name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every label set of ``sample_name`` (e.g. ``..._count`` of a histogram) with its value."""
    return {
        frozenset(s.labels.items()): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == sample_name
    }


def event_counts(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """Non-zero ``altinn_bridge_events_total`` series as ``(outcome, type) -> count``."""
    counts = {}
    for labels, value in series(registry, "altinn_bridge_events_total").items():
        named = dict(labels)
        if value:
            counts[named["outcome"], named["type"]] = value
    return counts

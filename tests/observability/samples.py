"""Reading metrics back in tests (not a test module)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pipelinejobs.observability.metrics import Metrics


def value(recorded: Metrics, name: str, **labels: str) -> float:
    """The current value of sample ``name`` with ``labels`` (0 when never recorded)."""
    found = recorded.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def samples(page: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a ``/metrics`` page: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }


def sample(page: str, name: str, **labels: str) -> float:
    """One sample of a ``/metrics`` page (0 when absent)."""
    return samples(page).get((name, frozenset(labels.items())), 0.0)

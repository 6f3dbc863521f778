"""Reading metric values back, for the admin System page.

The web side reads what a scrape of this instance would return (every
instance on the host with PROMETHEUS_MULTIPROC_DIR); the consumer's figures
come from its own port on this host, or from this process in embedded mode.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import requests

from . import get
from .web import scrape_registry

log = logging.getLogger(__name__)

Samples = dict[str, list[tuple[dict[str, str], float]]]


def local_samples() -> Samples:
    get()
    return _by_name(scrape_registry().collect())


def consumer_samples(port: int, timeout: float = 1.0) -> Samples | None:
    """The consumer's metrics from 127.0.0.1:``port``; None when it does not answer."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as error:
        log.info("consumer metrics unreadable on port %d: %s", port, type(error).__name__)
        return None
    return _by_name(text_string_to_metric_families(response.text))


def total(samples: Samples, name: str, **labels: str) -> float | None:
    """The sum of ``name``'s samples with these labels; None when there is none."""
    values = [
        value
        for sample_labels, value in samples.get(name, [])
        if all(sample_labels.get(k) == v for k, v in labels.items())
    ]
    return sum(values) if values else None


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    result: dict[str, float] = defaultdict(float)
    for sample_labels, value in samples.get(name, []):
        if label in sample_labels:
            result[sample_labels[label]] += value
    return dict(sorted(result.items()))


def _by_name(families) -> Samples:
    samples: Samples = defaultdict(list)
    for family in families:
        for sample in family.samples:
            samples[sample.name].append((dict(sample.labels), sample.value))
    return samples

"""Reading ``/metrics`` as Prometheus does: with prometheus_client's own parser."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(url: str, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(url + "/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample of ``name`` with exactly ``labels`` (0 when there is none)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


def wait_for(read: Callable[[], Samples], done: Callable[[Samples], bool]) -> Samples:
    """Runs are handed over after each response is sent: read until ``done``, for 10 s."""
    deadline = time.monotonic() + 10
    while True:
        samples = read()
        if done(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)

"""A server process freezes what it keeps (arkor.heap); nothing else does."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from arkor import heap
from arkor.engine.local import LocalEngine
from arkor.engine.registry import EMBEDDED_MODEL_NAME, BaseModelRegistry
from tests.engine.conftest import close_engine
from tests.servers import free_port

ARKOR = str(Path(sys.executable).with_name("arkor"))


@pytest.fixture
def enabled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Freezing on in this process for one test, and everything it froze given back."""
    monkeypatch.setattr(heap, "_enabled", True)
    try:
        yield
    finally:
        gc.unfreeze()


def test_settle_freezes_only_in_a_process_that_enabled_it(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(heap, "_enabled", False)
    before = gc.get_freeze_count()
    assert heap.settle() == 0 and gc.get_freeze_count() == before
    monkeypatch.setattr(heap, "_enabled", True)
    try:
        kept = [[index] for index in range(1000)]  # alive: frozen
        frozen = heap.settle()
        assert frozen >= before + len(kept)
        gc.collect()  # a full collection leaves them where they are
        assert gc.get_freeze_count() >= before + len(kept)
    finally:
        gc.unfreeze()


def test_a_base_model_load_freezes_the_model_in_a_server_process(
    models_dir: Path, enabled: None
) -> None:
    before = gc.get_freeze_count()
    engine = LocalEngine(BaseModelRegistry.with_embedded(), models_dir=models_dir)
    try:
        asyncio.run(engine.load(EMBEDDED_MODEL_NAME))
        frozen = gc.get_freeze_count()
        model = engine._schedulers[EMBEDDED_MODEL_NAME].loaded.model
        # the model's modules and parameters (and the libraries it imported) are frozen
        assert frozen - before > sum(1 for _ in model.modules()) + sum(
            1 for _ in model.parameters())
    finally:
        close_engine(engine)


def test_arkor_cloud_serve_freezes_its_heap_and_reports_it(tmp_path: Path) -> None:
    port, token = free_port(), "t" * 40
    env = {**os.environ, "ARKOR_DATA_DIR": str(tmp_path / "data"), "ARKOR_METRICS_TOKEN": token}
    proc = subprocess.Popen([ARKOR, "cloud", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                scraped = httpx.get(f"http://127.0.0.1:{port}/metrics",
                                    headers={"Authorization": f"Bearer {token}"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "arkor cloud serve did not start"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert scraped.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    [frozen] = families["arkor_gc_frozen_objects"].samples
    assert frozen.value > 10_000  # the app and every module it imported
    generations = {s.labels["generation"] for s in families["python_gc_collections"].samples}
    assert generations == {"0", "1", "2"}


def test_peak_rss_is_the_process_own_not_its_parents() -> None:
    """A process started by a large one (a training runner by a server holding a model)
    reports its own peak: Linux's ``ru_maxrss`` carries the parent's resident size into the
    child across fork and exec (the runner's ``peakRssMb`` was the server's)."""
    held = b"\x01" * (1 << 30)  # written whole: every page resident
    assert heap.peak_rss_mib() >= 1024
    child = subprocess.run(
        [sys.executable, "-c", "from arkor import heap; print(heap.peak_rss_mib())"],
        capture_output=True, text=True, check=True)
    del held
    assert 1 < float(child.stdout) < 256, child.stdout

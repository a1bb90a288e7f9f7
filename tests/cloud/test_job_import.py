"""``POST /v1/jobs/import`` refuses an adapter it could not serve: a safetensors header whose
fields have the wrong types or disagree with the data, and NaN or infinite weights. Each is a
400 naming the tensor, and leaves no job and no files behind; a healthy adapter still imports.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from safetensors.torch import save_file

from tests.cloud.test_endpoints_errors import headers
from tests.sdk.training_support import share_embedded_model
from tests.training.test_adapters import lora_tensors, write_adapter
from tests.workspace import Workspace, new_workspace

WEIGHTS = "adapter_model.safetensors"
FIRST = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
B_TENSOR = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"


@pytest.fixture(scope="module")
def ws(cloud, embedded_model_dir) -> Workspace:
    share_embedded_model(cloud, embedded_model_dir)
    return new_workspace(cloud.url, "imports")


def post_import(cloud, ws: Workspace, adapter: Path) -> httpx.Response:
    files = [("files", (name, (adapter / name).read_bytes()))
             for name in ("adapter_config.json", WEIGHTS)]
    return httpx.post(f"{cloud.url}/v1/jobs/import", files=files, data={"name": "imported"},
                      params={"orgSlug": ws.scope.org_slug, "projectSlug": ws.scope.project_slug},
                      headers=headers(ws), timeout=120)


def healthy(path: Path) -> Path:
    shapes = lora_tensors(range(2))
    adapter = write_adapter(path, shapes)
    save_file({name: torch.randn(shape) * 0.01 for name, shape in shapes.items()},
              str(adapter / WEIGHTS))
    return adapter


def with_weight(value: float, name: str = FIRST) -> Callable[[Path], None]:
    def poison(adapter: Path) -> None:
        from safetensors.torch import load_file

        tensors = load_file(str(adapter / WEIGHTS))
        tensors[name][3, 5] = value
        save_file(tensors, str(adapter / WEIGHTS))
    return poison


def with_header(change: Callable[[dict[str, Any]], object], *,
                data: Callable[[bytes], bytes] = lambda d: d) -> Callable[[Path], None]:
    """Rewrite the file's JSON header (and optionally its data), keeping the layout."""
    def rewrite(adapter: Path) -> None:
        raw = (adapter / WEIGHTS).read_bytes()
        (length,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + length])
        change(header)
        encoded = json.dumps(header).encode()
        (adapter / WEIGHTS).write_bytes(struct.pack("<Q", len(encoded)) + encoded
                                        + data(raw[8 + length:]))
    return rewrite


def set_field(field: str, value: object) -> Callable[[dict[str, Any]], object]:
    return lambda header: header[FIRST].__setitem__(field, value)


def overlap(header: dict[str, Any]) -> None:
    """A second tensor of the same size claims the first one's bytes."""
    tensors = sorted((k for k in header if k != "__metadata__"),
                     key=lambda k: header[k]["data_offsets"][0])
    first = tensors[0]
    twin = next(k for k in tensors[1:] if header[k]["shape"] == header[first]["shape"])
    header[twin]["data_offsets"] = header[first]["data_offsets"]


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (with_weight(math.nan), f"tensor {FIRST} holds NaN or infinite values"),
        (with_weight(math.inf), f"tensor {FIRST} holds NaN or infinite values"),
        (with_weight(-math.inf), f"tensor {FIRST} holds NaN or infinite values"),
        (with_weight(3e38, B_TENSOR),  # finite, but times alpha 16 / r 8 it is not
         f"tensor {B_TENSOR} times the adapter's scaling (2) overflows"),
        (with_header(set_field("shape", "x")), f"tensor {FIRST}: shape must be a list"),
        (with_header(set_field("shape", [8, True])), f"tensor {FIRST}: shape must be a list"),
        (with_header(set_field("dtype", 5)), f"tensor {FIRST} has an unknown dtype 5"),
        (with_header(set_field("data_offsets", [0])), f"tensor {FIRST}: data_offsets must be"),
        (with_header(set_field("data_offsets", [0, "9"])), f"tensor {FIRST}: data_offsets"),
        (with_header(lambda h: h.__setitem__(FIRST, [8, 576])),
         f"tensor {FIRST} must be an object"),
        (with_header(lambda h: h.__setitem__("__metadata__", {"format": 5})),
         "__metadata__ must map names to strings"),
        (with_header(set_field("shape", [8, 575])),
         f"tensor {FIRST} has shape [8, 575] of F32 but 18432 bytes of data"),
        (with_header(set_field("dtype", "F16")),
         f"tensor {FIRST} has shape [8, 576] of F16 but 18432 bytes of data"),
        (with_header(overlap), "tensors must tile the data exactly"),
        (with_header(lambda h: None, data=lambda d: d + b"\0" * 64),
         "has 64 bytes after its last tensor"),
        (with_header(lambda h: None, data=lambda d: d[:-4]), "is truncated"),
        (lambda a: (a / "adapter_config.json").write_text("[" * 100_000),
         "adapter_config.json is not valid JSON"),
        (with_header(lambda h: h.__setitem__("lone\ud800", h.pop(FIRST))),
         "adapter holds lone\\ud800, which matches no weight"),
    ],
    ids=["nan", "inf", "-inf", "scaled-b-overflow", "shape-string", "shape-bool", "dtype-int",
         "offsets-one", "offsets-string", "entry-list", "metadata-int", "shape-vs-offsets",
         "dtype-vs-offsets", "overlap", "trailing-data", "truncated", "config-100k-deep",
         "surrogate-name"],
)
def test_an_adapter_that_cannot_be_served_is_400_and_leaves_nothing(
        cloud, ws, tmp_path, damage, needle) -> None:
    adapter = healthy(tmp_path / "adapter")
    damage(adapter)
    jobs_before = ws.client.list_jobs(ws.scope)
    artifacts = Path(cloud.settings.artifacts_dir)
    artifacts.mkdir(parents=True, exist_ok=True)
    files_before = set(artifacts.iterdir())
    response = post_import(cloud, ws, adapter)
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]
    assert ws.client.list_jobs(ws.scope) == jobs_before
    assert set(artifacts.iterdir()) == files_before


def test_a_healthy_adapter_still_imports(cloud, ws, tmp_path) -> None:
    response = post_import(cloud, ws, healthy(tmp_path / "adapter"))
    assert response.status_code == 201, response.text
    job = response.json()["job"]
    assert (job["status"], job["hasFinalAdapter"]) == ("completed", True)

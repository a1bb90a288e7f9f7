"""Which GPU types a host's CUDA devices are, and the refusal a job asking for others gets."""

from __future__ import annotations

import pytest

from arkor.training.gpus import CPU_ONLY, gpu_types_refusal, host_gpu_names, is_of_type


@pytest.mark.parametrize(("device", "kind", "expected"), [
    ("NVIDIA H100 80GB HBM3", "H100", True),
    ("NVIDIA A100-SXM4-80GB", "a100", True),
    ("NVIDIA GeForce RTX 4090", "RTX 4090", True),
    ("NVIDIA L40S", "L4", False),
    ("NVIDIA H200", "H100", False),
    ("NVIDIA H1000", "H100", False),
])
def test_a_type_is_a_whole_word_of_the_device_name(device: str, kind: str,
                                                   expected: bool) -> None:
    assert is_of_type(device, kind) is expected


def test_nothing_asked_or_one_type_present_trains_here() -> None:
    assert gpu_types_refusal([], ()) is None
    assert gpu_types_refusal([], ("NVIDIA H200",)) is None
    assert gpu_types_refusal(["A100", "H200"], ("NVIDIA H200", "NVIDIA H200")) is None


def test_the_refusal_names_what_was_asked_and_what_the_host_has() -> None:
    assert gpu_types_refusal(["A100", "H100"], ()) == (
        f"asks for A100 or H100, but {CPU_ONLY}; send [] (or leave gpuTypes out) to train on "
        "what this server has")
    refusal = gpu_types_refusal(["A100"], ("NVIDIA H200", "NVIDIA L40S"))
    assert refusal is not None
    assert "asks for A100, but this server's GPUs are NVIDIA H200, NVIDIA L40S" in refusal


def test_the_host_has_what_torch_sees() -> None:
    import torch

    names = host_gpu_names()
    assert len(names) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)

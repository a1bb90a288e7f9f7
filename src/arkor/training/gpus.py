"""The GPUs this host trains on, and whether a job's ``gpuTypes`` can be met here.

The runner trains on CUDA when torch sees a device and on the CPU otherwise
(:func:`arkor.training.lora.pick_device`). A job whose ``gpuTypes`` names types this host does
not have is refused when it is created, rather than trained on something it did not ask for.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

CPU_ONLY = "this server trains on CPU (torch sees no CUDA device)"


@functools.cache
def host_gpu_names() -> tuple[str, ...]:
    """The CUDA device names torch sees here (``("NVIDIA H100 80GB HBM3",)``), or ``()``."""
    import torch

    if not torch.cuda.is_available():
        return ()
    return tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))


def is_of_type(device_name: str, gpu_type: str) -> bool:
    """Whether ``device_name`` is a ``gpu_type``: the type appears in it as a whole word, in
    any case (``H100`` is ``NVIDIA H100 80GB HBM3`` and ``NVIDIA A100-SXM4``'s ``A100``;
    ``L4`` is not ``NVIDIA L40S``)."""
    pattern = rf"(?<![a-z0-9]){re.escape(gpu_type.strip())}(?![a-z0-9])"
    return re.search(pattern, device_name, re.IGNORECASE) is not None


def gpu_types_refusal(wanted: Sequence[str], device_names: Sequence[str]) -> str | None:
    """Why a job asking for ``wanted`` cannot train on a host with ``device_names``; ``None``
    when it can (nothing asked for, or one device is of one of the types)."""
    if not wanted or any(is_of_type(name, kind) for name in device_names for kind in wanted):
        return None
    has = f"this server's GPUs are {', '.join(device_names)}" if device_names else CPU_ONLY
    return (f"asks for {' or '.join(wanted)}, but {has}; send [] (or leave gpuTypes out) to "
            "train on what this server has")

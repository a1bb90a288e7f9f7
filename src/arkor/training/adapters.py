"""Checking a LoRA adapter trained elsewhere against a base model.

:func:`check_adapter_compatible` reads only JSON: ``adapter_config.json``, the base model's
``config.json``, and the headers of the safetensors files (8-byte little-endian length + JSON
with each tensor's dtype, shape and byte offsets). That is enough to prove every LoRA matrix
fits the layer it targets, in milliseconds and without the memory a full model load needs.
The header is checked here as strictly as the safetensors library checks it (field types,
offsets that tile the data exactly, each tensor's size = shape x dtype), so a malformed file
is an :class:`AdapterIncompatible` naming the tensor, never a library error.

:func:`check_adapter_weights` then loads the weights, one tensor at a time, and refuses NaN
or infinite values, which would turn every answer of the adapter into garbage.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arkor.contract.artifacts import ADAPTER_CONFIG, ADAPTER_WEIGHTS, largest_scaling
from arkor.training.errors import AdapterIncompatible

PEFT_PREFIX = "base_model.model."
LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A|lora_B|lora_embedding_A|"
                      r"lora_embedding_B|lora_magnitude_vector)(?:\.[^.]+)?(?:\.weight)?$")
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class AdapterInfo:
    peft_type: str
    task_type: str | None
    r: int
    lora_alpha: float
    target_modules: tuple[str, ...] | str
    declared_base_model: str | None
    adapted_modules: int
    num_tensors: int
    num_parameters: int
    size_bytes: int


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The tensor table of a safetensors file: ``{name: {"dtype", "shape", "data_offsets"}}``."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        raw_length = handle.read(8)
        if len(raw_length) < 8:
            raise AdapterIncompatible(f"{path.name} is empty or truncated")
        (length,) = struct.unpack("<Q", raw_length)
        if length > min(size - 8, MAX_HEADER_BYTES):
            raise AdapterIncompatible(f"{path.name} is not a valid safetensors file")
        try:
            header = json.loads(handle.read(length))
        except (ValueError, RecursionError) as exc:
            raise AdapterIncompatible(f"{path.name} has a corrupt safetensors header") from exc
    if not isinstance(header, dict):
        raise AdapterIncompatible(f"{path.name} has a corrupt safetensors header")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise AdapterIncompatible(f"{path.name}: __metadata__ must map names to strings")
    spans = sorted((*_span(path.name, name, entry), name) for name, entry in header.items())
    data_size, position = size - 8 - length, 0
    for begin, end, name in spans:
        if end > data_size:
            raise AdapterIncompatible(f"{path.name} is truncated (tensor {name} is incomplete)")
        if begin != position:
            raise AdapterIncompatible(f"{path.name}: tensor {name} starts at byte {begin}, not "
                                      f"{position}; tensors must tile the data exactly")
        position = end
    if position != data_size:
        raise AdapterIncompatible(f"{path.name} has {data_size - position} bytes after its "
                                  "last tensor")
    return header


def _span(file: str, name: str, entry: Any) -> tuple[int, int]:
    """A header entry's ``data_offsets``, once its fields are proven to agree."""
    where = f"{file}: tensor {name}"
    if not isinstance(entry, dict):
        raise AdapterIncompatible(f"{where} must be an object with dtype, shape and "
                                  "data_offsets")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise AdapterIncompatible(f"{where} has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise AdapterIncompatible(f"{where}: shape must be a list of non-negative integers, "
                                  f"got {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
            and offsets[0] <= offsets[1]):
        raise AdapterIncompatible(f"{where}: data_offsets must be [begin, end], got "
                                  f"{offsets!r}")
    if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[dtype]:
        raise AdapterIncompatible(f"{where} has shape {shape} of {dtype} but "
                                  f"{offsets[1] - offsets[0]} bytes of data")
    return offsets[0], offsets[1]


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def base_weight_shapes(base_model_dir: Path) -> dict[str, tuple[int, ...]]:
    """Every weight's shape in a Hugging Face model directory, from safetensors headers."""
    index = base_model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [base_model_dir / shard for shard in shards]
    else:
        files = [base_model_dir / "model.safetensors"]
    if not all(f.is_file() for f in files):
        raise AdapterIncompatible("the base model has no safetensors weights to check the "
                                  "adapter against")
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        for name, entry in read_safetensors_header(file).items():
            shapes[name] = tuple(entry["shape"])
    return shapes


def _load_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise AdapterIncompatible(f"{what} not found: the directory needs {path.name}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise AdapterIncompatible(f"{path.name} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise AdapterIncompatible(f"{path.name} must hold a JSON object")
    return data


def _check_config(config: dict[str, Any]) -> tuple[int, float, tuple[str, ...] | str]:
    if config.get("peft_type") != "LORA":
        raise AdapterIncompatible(f"only LoRA adapters can be imported; peft_type is "
                                  f"{config.get('peft_type')!r}")
    if config.get("task_type") not in (None, "CAUSAL_LM"):
        raise AdapterIncompatible(f"the adapter was trained for task_type "
                                  f"{config['task_type']!r}; text generation needs CAUSAL_LM")
    r = config.get("r")
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise AdapterIncompatible(f"adapter_config.json: r must be a positive integer, got {r!r}")
    alpha = config.get("lora_alpha", 8)
    if not isinstance(alpha, int | float) or isinstance(alpha, bool) or alpha <= 0:
        raise AdapterIncompatible("adapter_config.json: lora_alpha must be a positive number")
    targets = config.get("target_modules")
    if isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets):
        return r, float(alpha), tuple(targets)
    if isinstance(targets, str) and targets:
        return r, float(alpha), targets
    raise AdapterIncompatible("adapter_config.json: target_modules must name the adapted modules")


def _module_names(weights: dict[str, tuple[int, ...]]) -> set[str]:
    names: set[str] = set()
    for key in weights:
        parts = key.split(".")
        names.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return names


def _mismatch(module: str, what: str, adapter_dim: int, base_dim: int, base_name: str,
              hidden_size: int | None) -> AdapterIncompatible:
    if base_dim == hidden_size:
        return AdapterIncompatible(f"adapter targets hidden size {adapter_dim} but {base_name} "
                                   f"has {hidden_size} (module {module})")
    return AdapterIncompatible(f"adapter expects {what} {adapter_dim} for {module} but "
                               f"{base_name} has {base_dim}")


def _check_tensor(module: str, part: str, shape: tuple[int, ...], base: tuple[int, ...],
                  base_name: str, hidden: int | None) -> None:
    out_dim, in_dim = (base[0], base[1]) if len(base) == 2 else (base[0], 0)
    if part == "lora_A" and shape[1:] != (in_dim,):
        raise _mismatch(module, "input size", shape[-1], in_dim, base_name, hidden)
    if part == "lora_B" and shape[:1] != (out_dim,):
        raise _mismatch(module, "output size", shape[0], out_dim, base_name, hidden)
    if part == "lora_embedding_A" and shape[1:] != (out_dim,):
        raise _mismatch(module, "vocabulary size", shape[-1], out_dim, base_name, hidden)
    if part == "lora_embedding_B" and shape[:1] != (in_dim,):
        raise _mismatch(module, "embedding size", shape[0], in_dim, base_name, hidden)
    if part == "lora_magnitude_vector" and shape != (out_dim,):
        raise _mismatch(module, "output size", shape[0], out_dim, base_name, hidden)


def _tied_output_shape(module: str, base: dict[str, tuple[int, ...]],
                       base_config: dict[str, Any]) -> tuple[int, ...] | None:
    """``lm_head`` has no weight of its own in a model with tied embeddings."""
    if module.rsplit(".", 1)[-1] != "lm_head" or not base_config.get("tie_word_embeddings"):
        return None
    return next((shape for name, shape in base.items() if name.endswith("embed_tokens.weight")),
                None)


def check_adapter_compatible(adapter_dir: Path, base_model_dir: Path, *,
                             base_model_name: str | None = None) -> AdapterInfo:
    """Prove that the PEFT LoRA adapter in ``adapter_dir`` fits the base model, or raise
    :class:`AdapterIncompatible` with the reason."""
    adapter_dir, base_model_dir = Path(adapter_dir), Path(base_model_dir)
    base_name = base_model_name or base_model_dir.name
    config = _load_json(adapter_dir / ADAPTER_CONFIG, "adapter config")
    r, alpha, targets = _check_config(config)
    weights_path = adapter_dir / ADAPTER_WEIGHTS
    if not weights_path.is_file():
        hint = " (adapter_model.bin is not accepted; re-save with safetensors)" \
            if (adapter_dir / "adapter_model.bin").is_file() else ""
        raise AdapterIncompatible(f"adapter weights not found: the directory needs "
                                  f"{ADAPTER_WEIGHTS}{hint}")
    adapter = read_safetensors_header(weights_path)
    base_config = _load_json(base_model_dir / "config.json", "base model config")
    hidden = base_config.get("hidden_size")
    base = base_weight_shapes(base_model_dir)
    modules = _module_names(base)
    if base_config.get("tie_word_embeddings"):
        modules.add("lm_head")
    leaves = {name.rsplit(".", 1)[-1] for name in modules}

    if isinstance(targets, tuple):
        missing = [t for t in targets if t not in leaves and t not in modules]
        if missing:
            raise AdapterIncompatible(f"adapter targets modules that {base_name} does not "
                                      f"have: {', '.join(missing)}")
    adapted: set[str] = set()
    ranks: dict[str, dict[str, int]] = {}
    num_parameters = 0
    for key, entry in adapter.items():
        shape = tuple(entry.get("shape", ()))
        if entry.get("dtype") not in FLOAT_DTYPES:
            raise AdapterIncompatible(f"tensor {key} has dtype {entry.get('dtype')}; "
                                      "adapters must hold floating-point weights")
        num_parameters += math.prod(shape)
        name = key.removeprefix(PEFT_PREFIX)
        match = LORA_KEY.match(name)
        if match is None:
            target = name.removesuffix(".weight")
            if name in base and base[name] != shape:
                raise AdapterIncompatible(f"adapter weight {target} has shape {list(shape)} but "
                                          f"{base_name} has {list(base[name])}")
            if name not in base:
                raise AdapterIncompatible(f"adapter holds {key}, which matches no weight "
                                          f"of {base_name}")
            continue
        module, part = match["module"], match["part"]
        base_shape = base.get(f"{module}.weight") or _tied_output_shape(module, base,
                                                                         base_config)
        if base_shape is None:
            layers = base_config.get("num_hidden_layers")
            note = f" (it has {layers} layers)" if layers else ""
            raise AdapterIncompatible(f"adapter has weights for {module}, which {base_name} "
                                      f"does not have{note}")
        expected_dims = 1 if part == "lora_magnitude_vector" else 2
        if len(shape) != expected_dims:
            raise AdapterIncompatible(f"tensor {key} has shape {list(shape)}, expected "
                                      f"{expected_dims} dimensions")
        _check_tensor(module, part, shape, base_shape, base_name, hidden)
        adapted.add(module)
        if part in ("lora_A", "lora_embedding_A"):
            ranks.setdefault(module, {})["A"] = shape[0]
        elif part in ("lora_B", "lora_embedding_B"):
            ranks.setdefault(module, {})["B"] = shape[1]
    for module, pair in ranks.items():
        if set(pair) != {"A", "B"}:
            raise AdapterIncompatible(f"{module} has only one of its two LoRA matrices")
        if pair["A"] != pair["B"]:
            raise AdapterIncompatible(f"{module}: LoRA matrices disagree on the rank "
                                      f"({pair['A']} vs {pair['B']})")
    if not adapted:
        raise AdapterIncompatible(f"{ADAPTER_WEIGHTS} holds no LoRA weights")
    return AdapterInfo(
        peft_type="LORA", task_type=config.get("task_type"), r=r, lora_alpha=alpha,
        target_modules=targets, declared_base_model=config.get("base_model_name_or_path"),
        adapted_modules=len(adapted), num_tensors=len(adapter), num_parameters=num_parameters,
        size_bytes=weights_path.stat().st_size,
    )


def check_adapter_weights(adapter_dir: Path) -> None:
    """Load every tensor of the adapter (after :func:`check_adapter_compatible`) and refuse
    NaN or infinite values, and a ``lora_B`` that overflows once multiplied by the adapter's
    largest scaling (:func:`largest_scaling`), naming the tensor."""
    import torch
    from safetensors import SafetensorError, safe_open

    scaling = largest_scaling(_load_json(Path(adapter_dir) / ADAPTER_CONFIG, "adapter config"))
    path = Path(adapter_dir) / ADAPTER_WEIGHTS
    try:
        with safe_open(str(path), framework="pt") as weights:
            for name in weights.keys():  # noqa: SIM118 (not a dict)
                tensor = weights.get_tensor(name)
                if not torch.isfinite(tensor).all():
                    raise AdapterIncompatible(f"tensor {name} holds NaN or infinite values; "
                                              "re-export the adapter from a healthy run")
                if ".lora_B." in name and not torch.isfinite(tensor.float() * scaling).all():
                    raise AdapterIncompatible(
                        f"tensor {name} times the adapter's scaling ({scaling:g}) overflows; "
                        "re-export the adapter from a healthy run")
    except SafetensorError as exc:
        raise AdapterIncompatible(f"{ADAPTER_WEIGHTS} could not be read: {exc}") from exc

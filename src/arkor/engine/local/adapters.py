"""LoRA adapters attached to one base model, kept in a bounded LRU set.

Reading an adapter (config and weights, refused if any weight is NaN or infinite) touches
the disk and is done off the scheduler thread, before the request is queued
(:func:`read_adapter`); attaching it to the model
mutates the module tree and is done on the scheduler thread, between decode steps
(:meth:`AdapterSet.acquire`). An adapter used by a row of the running batch is pinned and is
never evicted; when every slot is pinned, the newcomer waits in the queue.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftConfig, PeftModel, PeftType
from peft.tuners.lora import LoraLayer
from peft.utils import load_peft_weights, set_peft_model_state_dict
from transformers import PreTrainedModel

from arkor.contract.artifacts import ADAPTER_CONFIG, largest_scaling
from arkor.engine.base import AdapterLoadError, AdapterRef
from arkor.engine.local.decode import LeanDecoder
from arkor.engine.local.decode import supports as supports_lean_decode
from arkor.engine.local.mixed_lora import RowAdapters, row_adapters_of
from arkor.engine.local.mixed_lora import install as install_stacked_forward

BASE_ADAPTER_NAME = "__base__"
PEFT_DEPRECATION = "`is_gradient_checkpointing` is deprecated"
LORA_WEIGHTS = (".lora_A.weight", ".lora_B.weight")
UNUSUAL_LORA_OPTIONS = (
    "exclude_modules", "modules_to_save", "layers_to_transform", "layers_pattern",
    "rank_pattern", "alpha_pattern", "megatron_config", "trainable_token_indices", "use_dora",
    "alora_invocation_tokens", "use_qalora", "layer_replication", "lora_bias",
    "target_parameters", "arrow_config", "fan_in_fan_out", "target_modules_bd_a",
    "target_modules_bd_b", "eva_config", "corda_config", "loftq_config", "lora_ga_config")
"""LoRA options that change which modules get an adapter, or how: an adapter that sets any
of them is attached by PEFT's own (slower) path."""


@dataclass(frozen=True)
class AdapterFiles:
    """An adapter read from disk, ready to be attached."""

    ref: AdapterRef
    config: PeftConfig
    weights: dict[str, torch.Tensor]


def read_adapter(ref: AdapterRef, device: torch.device) -> AdapterFiles:
    path = Path(ref.path)
    if not (path / ADAPTER_CONFIG).is_file():
        raise AdapterLoadError(ref.key, f"{path} is not a PEFT adapter directory")
    try:
        config = PeftConfig.from_pretrained(str(path))
        weights = load_peft_weights(str(path), device=str(device))
    except Exception as exc:
        raise AdapterLoadError(ref.key, f"{type(exc).__name__}: {exc}") from exc
    if config.peft_type != PeftType.LORA:
        raise AdapterLoadError(ref.key, f"only LoRA adapters are served, not {config.peft_type}")
    scaling = largest_scaling(config.to_dict())
    for name, tensor in weights.items():
        # Imports refuse these; one placed on disk some other way must not reach a batch.
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise AdapterLoadError(ref.key, f"tensor {name} holds NaN or infinite values")
        # Stacked beside other adapters' (mixed_lora), a B that overflows times its scaling
        # would turn every other row's zeros into NaN.
        if ".lora_B." in name and not torch.isfinite(tensor.float() * scaling).all():
            raise AdapterLoadError(ref.key, f"tensor {name} times the adapter's scaling "
                                            f"({scaling:g}) overflows")
    return AdapterFiles(ref=ref, config=config, weights=weights)


def adapter_name_for(key: str) -> str:
    """A module-safe name (no dots) that is stable for the key."""
    return "a" + hashlib.sha256(key.encode()).hexdigest()[:16]


_attachments = itertools.count()


@dataclass
class _Slot:
    name: str
    users: int = 0
    # Unique to this attachment: a key detached and attached again (perhaps from files that
    # changed) gets a new one, so nothing computed with the old weights is taken for the new.
    serial: int = field(default_factory=lambda: next(_attachments))


@dataclass
class AdapterSet:
    """The adapters attached to ``base`` (wrapped in a PeftModel on first use)."""

    base: PreTrainedModel
    capacity: int
    device: torch.device
    # PreTrainedModel or PeftModel: typed loosely, as their stubs disagree with what PEFT does
    # (wrapping, add_adapter(name, config), unload) and every use below checks is_peft first.
    model: Any = field(init=False)
    _slots: OrderedDict[str, _Slot] = field(init=False, default_factory=OrderedDict)
    _hooked: set[int] = field(init=False, default_factory=set)
    _row_names: list[str] | None = field(init=False, default=None)
    _row_adapters: RowAdapters | None = field(init=False, default=None)
    _lean: LeanDecoder | None = field(init=False, default=None)  # None: decode by forward
    # The attached adapters in the order of the layers' stacked weights, and a number that
    # changes with it (an attach or a detach), so no stack outlives the weights it copied.
    _order: tuple[str, ...] = field(init=False, default=())
    _generation: int = field(init=False, default=0)
    # The model's LoRA layers by qualified name, and how many modules of each leaf name
    # (``q_proj``) it has, for attaching an adapter to layers that exist (_attach_to_layers).
    _lora_layers: dict[str, Any] = field(init=False, default_factory=dict)
    _leaf_counts: dict[str, int] = field(init=False, default_factory=dict)
    loads: int = field(init=False, default=0)  # adapters attached so far (read by /metrics)
    evictions: int = field(init=False, default=0)  # detached to make room

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError("max_loaded_adapters must be at least 1")
        self.model = self.base
        self._lean = LeanDecoder(self.base) if supports_lean_decode(self.base) else None

    @property
    def is_peft(self) -> bool:
        return isinstance(self.model, PeftModel)

    def is_loaded(self, key: str) -> bool:
        return key in self._slots

    @property
    def loaded_count(self) -> int:
        """Safe from any thread (``loaded_keys`` iterates what the scheduler changes)."""
        return len(self._slots)

    def loaded_keys(self) -> list[str]:
        """Least recently used first."""
        return list(self._slots)

    def acquire(self, ref: AdapterRef, files: AdapterFiles | None) -> str | None:
        """Pin the adapter for one row and return its name, loading it if needed.

        Returns None when it is not loaded and every slot is pinned by running rows.
        """
        slot = self._slots.get(ref.key)
        if slot is None:
            if len(self._slots) >= self.capacity and self._victim() is None:
                return None
            slot = self._attach(ref, files or read_adapter(ref, self.device))
            self.loads += 1
            while len(self._slots) > self.capacity:
                victim = self._victim()
                if victim is None:
                    break
                self._detach(victim)
                self.evictions += 1
        self._slots.move_to_end(ref.key)
        slot.users += 1
        return slot.name

    def instance(self, key: str | None) -> str:
        """Names the weights a row of ``key`` runs with now (``None``: the base model)."""
        if key is None:
            return BASE_ADAPTER_NAME
        slot = self._slots[key]
        return f"{slot.name}.{slot.serial}"

    def current_instance(self, key: str | None) -> str | None:
        """:meth:`instance`, or None when ``key``'s adapter is not attached now."""
        return self.instance(key) if key is None or key in self._slots else None

    def forward(self, row_adapters: list[str], **inputs: object) -> object:
        """One forward pass where row ``i`` uses adapter ``row_adapters[i]`` (or ``__base__``).

        PeftModel's own ``adapter_names=`` path registers and removes a hook on every LoRA
        layer, and walks the whole module tree twice, on each call; at one call per decode
        step that is measurable, so the hooks here are registered once and read the names
        from ``_row_names``.
        """
        inputs.pop("prompt", None)  # a prompt slice's mark (prefill.PrefillGroup.next_slice)
        if not self.is_peft:
            return self.model(**inputs)
        with self._rows(row_adapters):
            return self.model.get_base_model()(**inputs)

    def lean_forward(self, row_adapters: list[str], **inputs: object) -> Any:
        """:meth:`forward`'s logits (a decode step, or a prefill slice whose hidden states no
        hook reads), computed by the model's :class:`~arkor.engine.local.decode.LeanDecoder`
        when it has one."""
        if self._lean is None:
            return self.forward(row_adapters, **inputs)
        if not self.is_peft:
            return self._lean.step(None, inputs)
        with self._rows(row_adapters):
            return self._lean.step(self._row_adapters, inputs)

    @property
    def can_join_passes(self) -> bool:
        """Whether :meth:`joined_passes` can run (the model has a lean decoder)."""
        return self._lean is not None

    def joined_passes(self, passes: list[tuple[list[str], dict[str, Any]]],
                      wanted: list[bool]) -> list[torch.Tensor | None]:
        """Several forward passes (each its rows' adapter names and its inputs, a cache of its
        own among them) computed as one: every projection reads its weights once for the
        tokens of all of them (:meth:`LeanDecoder.hidden_states`). Each pass's logits of
        its last column, ``[rows, vocabulary]``, where ``wanted``; None elsewhere."""
        assert self._lean is not None, "joined passes need a lean decoder (can_join_passes)"
        inputs = [given for _, given in passes]
        if self.is_peft:
            tokens = [name for names, given in passes
                      for name in names for _ in range(given["input_ids"].shape[1])]
            with self._rows(tokens):
                states = self._lean.hidden_states(self._row_adapters, inputs)
        else:
            states = self._lean.hidden_states(None, inputs)
        chosen = [index for index, want in enumerate(wanted) if want]
        found: list[torch.Tensor | None] = [None] * len(passes)
        if not chosen:
            return found
        # One output layer call for every pass that wants logits: their last columns stacked.
        logits = self.output_layer([name for index in chosen for name in passes[index][0]],
                                   torch.cat([states[index][:, -1:] for index in chosen]))
        sizes = [len(passes[index][0]) for index in chosen]
        for index, part in zip(chosen, torch.split(logits[:, -1], sizes), strict=True):
            found[index] = part
        return found

    def output_layer(self, row_adapters: list[str], hidden: torch.Tensor) -> torch.Tensor:
        """The output layer alone on ``[rows, n, hidden]`` states, each row with its adapter
        (for prompt logprobs, from the hidden states a forward pass left)."""
        head: torch.nn.Module = self.base.get_output_embeddings()  # type: ignore[no-untyped-call]
        if not self.is_peft:
            logits: torch.Tensor = head(hidden)
            return logits
        with self._rows(row_adapters):
            logits = head(hidden)
            return logits

    @contextlib.contextmanager
    def _rows(self, row_adapters: list[str]) -> Iterator[None]:
        self._row_names = row_adapters
        self._row_adapters = row_adapters_of(row_adapters, BASE_ADAPTER_NAME, self._order,
                                             self._generation, self.device)
        try:
            yield
        finally:
            self._row_names = None
            self._row_adapters = None

    def _hook_new_lora_layers(self) -> None:
        self._lora_layers.clear()
        self._leaf_counts.clear()
        for qualified, module in self.model.named_modules():
            leaf = qualified.rpartition(".")[2]
            self._leaf_counts[leaf] = self._leaf_counts.get(leaf, 0) + 1
            # PEFT's LoRA layers are torch Modules too (its stubs do not say so).
            if isinstance(module, LoraLayer) and isinstance(module, torch.nn.Module):
                self._lora_layers[qualified] = module
                if id(module) not in self._hooked:
                    module.register_forward_pre_hook(self._inject_row_names, with_kwargs=True)
                    install_stacked_forward(module, lambda: self._row_adapters)
                    self._hooked.add(id(module))
        if self._lean is not None:
            self._lean.group_lora_layers()

    def _layers_for(self, config: PeftConfig,
                    weights: dict[str, torch.Tensor]) -> dict[str, Any] | None:
        """The LoRA layers an adapter's weights go to, when it can skip PEFT's ``add_adapter``
        (which walks the whole module tree several times: about a third of a second here, on
        the first token of every request for an adapter not attached yet): a plain LoRA whose
        targets are module names, every module of which is a LoRA layer already (an adapter
        with the same targets was attached before) and has a weight in the files, and nothing
        else. None: PEFT's own path."""
        if not isinstance(config, LoraConfig):
            return None
        targets = config.target_modules
        if (not self._lora_layers or not isinstance(targets, list | set) or not targets
                or any("." in target for target in targets)
                or config.init_lora_weights not in (True, False, "gaussian")
                or any(getattr(config, option, None) for option in UNUSUAL_LORA_OPTIONS)):
            return None
        paths = set()
        for key in weights:
            path = next((key[: -len(end)] for end in LORA_WEIGHTS if key.endswith(end)), None)
            if path is None or path not in self._lora_layers:
                return None
            paths.add(path)
        if len(weights) != 2 * len(paths):  # an A without its B, or the reverse
            return None
        # Every module PEFT would target (each module named so) is a LoRA layer with weights.
        targeted = {path for path in self._lora_layers if path.rpartition(".")[2] in targets}
        if paths != targeted or len(targeted) != sum(self._leaf_counts.get(t, 0)
                                                     for t in targets):
            return None
        return {path: self._lora_layers[path] for path in sorted(paths)}

    def _attach_to_layers(self, name: str, config: LoraConfig,
                          weights: dict[str, torch.Tensor], layers: dict[str, Any]) -> None:
        """What ``add_adapter`` and ``set_peft_model_state_dict`` do for such an adapter:
        each layer gets the adapter's A and B (no initialisation: the files' weights are
        copied in), and the model's config list names it."""
        config = copy.copy(config)
        config.init_lora_weights = False
        self.model.peft_config[name] = config
        for path, layer in layers.items():
            a, b = weights[path + LORA_WEIGHTS[0]], weights[path + LORA_WEIGHTS[1]]
            if a.shape[0] != config.r or b.shape[1] != config.r:
                raise ValueError(f"{path}: rank {a.shape[0]} where the config says {config.r}")
            layer.update_layer(name, config.r, config.lora_alpha, config)
            layer.lora_A[name].weight.copy_(a)
            layer.lora_B[name].weight.copy_(b)
            layer.eval()

    def _inject_row_names(
        self, module: object, args: tuple[object, ...], kwargs: dict[str, object]
    ) -> tuple[tuple[object, ...], dict[str, object]]:
        if self._row_names is not None:
            kwargs["adapter_names"] = self._row_names
        return args, kwargs

    def release(self, key: str) -> None:
        slot = self._slots.get(key)
        if slot is not None and slot.users > 0:
            slot.users -= 1

    def _victim(self) -> str | None:
        return next((key for key, slot in self._slots.items() if slot.users == 0), None)

    def _attach(self, ref: AdapterRef, files: AdapterFiles) -> _Slot:
        name = adapter_name_for(ref.key)
        config = files.config
        config.inference_mode = True
        wrapped_here = not self.is_peft
        layers = None if wrapped_here else self._layers_for(config, files.weights)
        try:
            if layers is not None:
                assert isinstance(config, LoraConfig)
                self._attach_to_layers(name, config, files.weights, layers)
            elif wrapped_here:
                with warnings.catch_warnings():
                    # PEFT 0.21 reads a property transformers 5 deprecated; nothing for us to fix.
                    warnings.filterwarnings("ignore", PEFT_DEPRECATION, FutureWarning)
                    self.model = PeftModel(self.base, config, adapter_name=name)
            else:
                self.model.add_adapter(name, config)
            if layers is None:
                result: Any = set_peft_model_state_dict(self.model, files.weights,
                                                        adapter_name=name)
                missing = [k for k in result.missing_keys if "lora_" in k and name in k]
                if missing:
                    raise ValueError(f"no weights for {len(missing)} LoRA tensors, "
                                     f"e.g. {missing[0]}")
        except Exception as exc:
            self._undo_attach(name, wrapped_here)
            raise AdapterLoadError(ref.key, f"{type(exc).__name__}: {exc}") from exc
        if layers is None:
            self.model.eval()
            self._hook_new_lora_layers()
        slot = _Slot(name=name)
        self._slots[ref.key] = slot
        self._order, self._generation = (*self._order, name), self._generation + 1
        return slot

    def _undo_attach(self, name: str, wrapped_here: bool) -> None:
        if not self.is_peft:
            return
        if wrapped_here:
            self.model = self.model.unload()
            self.base = self.model
            self._hooked.clear()
            self._lora_layers.clear()
        elif name in self.model.peft_config:
            self.model.delete_adapter(name)

    def _detach(self, key: str) -> None:
        slot = self._slots.pop(key)
        if slot.name in self.model.active_adapters and self._slots:
            # Rows name their adapter explicitly, so which one is "active" does not matter;
            # moving it first spares PEFT's warning about deleting the active adapter.
            self.model.set_adapter(next(reversed(self._slots.values())).name)
        self.model.delete_adapter(slot.name)
        self._order = tuple(name for name in self._order if name != slot.name)
        self._generation += 1

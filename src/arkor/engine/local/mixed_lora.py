"""The mixed-adapter LoRA forward: every adapter of a batch in two stacked matrix products.

PEFT's ``_mixed_batch_forward`` rebuilds the per-adapter row lists in Python and, in every
LoRA layer (60 layers of q/v for SmolLM2) on every decode step, gathers each adapter's rows,
runs its two small products and adds them back: six operations per adapter per layer. Here
each layer keeps its attached adapters' weights stacked side by side (``A`` as
``[in, sum of ranks]``, ``B`` times its scaling as ``[sum of ranks, out]``, rebuilt when an
adapter is attached or detached), and one forward pass computes ``x @ A`` for every row,
keeps each row's own adapter's columns (a mask made once per pass for each layout of columns
the layers share), and adds ``(...) @ B``: the same few operations whatever the number of
adapters. A row of the base model keeps none of the columns, so its LoRA term is exactly
zero. A pass whose rows all use one adapter (a single stream) multiplies by that adapter's
columns alone, with no mask (:meth:`Stack.alone`).
Adapters with a LoRA variant (DoRA, ...) or a bias on ``lora_B`` fall back to PEFT's path.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from peft.tuners.lora.layer import VARIANT_KWARG_KEYS, Linear

Groups = list[tuple[str, torch.Tensor]]
STACK_ATTRIBUTE = "_arkor_lora_stack"
PEFT_PATH = "peft"  # a layer whose adapters cannot be stacked (a bias on lora_B)


@dataclass
class RowAdapters:
    """Which adapter each row of one forward pass uses, worked out once for all its layers."""

    groups: Groups  # (adapter, LongTensor of its rows), every adapter but the base
    order: tuple[str, ...]  # every adapter attached, in the order of the stacked columns
    generation: int  # changes whenever an adapter is attached or detached
    which: torch.Tensor  # [rows, 1, 1]: each row's index in ``order``; -1: the base model
    # The adapter every row uses (its index in ``order``), when they all use one; else None.
    only: int | None = None
    _masks: dict[tuple[tuple[int, ...], int], torch.Tensor] = field(default_factory=dict)

    def mask(self, owner: tuple[int, ...], columns: torch.Tensor, dims: int) -> torch.Tensor:
        """``[rows, 1.., columns]``: true where a stacked column belongs to the row's adapter
        (one per layout of columns: layers with the same adapters and ranks share it)."""
        found = self._masks.get((owner, dims))
        if found is None:
            which = self.which.view(-1, *([1] * (dims - 1)))
            found = self._masks[owner, dims] = columns == which
        return found


def row_groups(row_adapters: list[str], base_name: str, device: torch.device) -> Groups:
    """``[(adapter, LongTensor of its rows)]`` for every adapter but the base."""
    rows: dict[str, list[int]] = {}
    for index, name in enumerate(row_adapters):
        rows.setdefault(name, []).append(index)
    return [(name, torch.tensor(indices, device=device))
            for name, indices in rows.items() if name != base_name]


def row_adapters_of(row_adapters: list[str], base_name: str, order: tuple[str, ...],
                    generation: int, device: torch.device) -> RowAdapters:
    position = {name: index for index, name in enumerate(order)}
    indices = [-1 if name == base_name else position[name] for name in row_adapters]
    which = torch.tensor(indices, device=device).view(-1, 1, 1)
    only = indices[0] if indices and indices[0] >= 0 and indices.count(indices[0]) == len(
        indices) else None
    return RowAdapters(row_groups(row_adapters, base_name, device), order, generation, which,
                       only)


@dataclass(frozen=True)
class Stack:
    """One layer's attached adapters side by side."""

    a: torch.Tensor  # [in, sum of ranks]
    b: torch.Tensor  # [sum of ranks, out], each adapter's rows times its scaling
    owner: tuple[int, ...]  # each column's adapter, as an index in ``RowAdapters.order``
    columns: torch.Tensor  # ``owner`` as a tensor
    _alone: dict[int, tuple[torch.Tensor, torch.Tensor] | None] = field(
        default_factory=dict, compare=False)

    def alone(self, adapter: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One adapter's own ``A`` and ``B`` columns of the stack (copies, made once), or
        None when it is not on this layer."""
        if adapter not in self._alone:
            kept = [i for i, owner in enumerate(self.owner) if owner == adapter]
            self._alone[adapter] = (None if not kept else
                                    (self.a[:, kept[0]:kept[-1] + 1].contiguous(),
                                     self.b[kept[0]:kept[-1] + 1].contiguous()))
        return self._alone[adapter]


def stack_of(layer: Any, rows: RowAdapters) -> Stack | str | None:
    """The layer's stack for the adapters attached now (None: none of them is on it;
    ``PEFT_PATH``: one of them has a bias on ``lora_B``, which the stack leaves out)."""
    cached = getattr(layer, STACK_ATTRIBUTE, None)
    if cached is not None and cached[0] == rows.generation:
        return cast(Stack | str | None, cached[1])
    a_parts, b_parts, owner = [], [], []
    biased = False
    for index, name in enumerate(rows.order):
        if name not in layer.lora_A:
            continue
        a = layer.lora_A[name].weight  # [rank, in]
        b = layer.lora_B[name].weight  # [out, rank]
        biased = biased or layer.lora_B[name].bias is not None
        a_parts.append(a.t())
        b_parts.append(b.t() * layer.scaling[name])
        owner += [index] * a.shape[0]
    stack: Stack | str | None = PEFT_PATH if biased else None
    if a_parts and not biased:
        stack = Stack(torch.cat(a_parts, dim=1).contiguous(),
                      torch.cat(b_parts, dim=0).contiguous(), tuple(owner),
                      torch.tensor(owner, device=a_parts[0].device))
    setattr(layer, STACK_ATTRIBUTE, (rows.generation, stack))
    return stack


def plan_of(layer: Any, rows: RowAdapters | None) -> Stack | str | None:
    """How ``layer`` serves the rows of this pass: its :class:`Stack`, None (no row's adapter
    is on it: the base projection alone), or ``PEFT_PATH`` (a LoRA variant, or a bias on
    ``lora_B``: PEFT's own mixed-batch forward)."""
    if rows is None or any(name in layer.lora_variant for name, _ in rows.groups):
        return PEFT_PATH
    return stack_of(layer, rows) if rows.groups else None


def add_stacked(result: torch.Tensor, x: torch.Tensor, stack: Stack,
                rows: RowAdapters | None) -> torch.Tensor:
    """``result`` (the base projection of ``x``) plus each row's own adapter's LoRA term
    (``rows`` is never None here: :func:`plan_of` gives no stack without them)."""
    assert rows is not None
    if rows.only is not None:
        # Every row uses one adapter (one stream, or a batch of one adapter's calls): its own
        # columns alone, no mask to choose them. The masked product's numbers to float
        # rounding (the other adapters' columns are exact zeros there; the products differ
        # in shape, as a row's do alone and in a batch).
        own = stack.alone(rows.only)
        if own is None:
            return result
        flat = x.reshape(-1, x.shape[-1])
        if flat.dtype != own[0].dtype:
            flat = flat.to(own[0].dtype)
        result += torch.mm(torch.mm(flat, own[0]), own[1]).to(result.dtype).view(result.shape)
        return result
    xa = torch.matmul(x if x.dtype == stack.a.dtype else x.to(stack.a.dtype), stack.a)
    # Chosen, not multiplied by the mask: an adapter whose ``x @ A`` overflows (inf * 0 is
    # NaN) must not reach the rows of the others.
    xa = torch.where(rows.mask(stack.owner, stack.columns, xa.dim()), xa, 0.0)
    result += torch.matmul(xa, stack.b).to(result.dtype)
    return result


def install(layer: Any, rows_of: Callable[[], RowAdapters | None]) -> None:
    """Give one LoRA ``Linear`` layer the stacked mixed-batch forward."""
    if not isinstance(layer, Linear):
        return
    original = layer._mixed_batch_forward

    def stacked(self: Any, x: torch.Tensor, *args: Any, adapter_names: list[str],
                **kwargs: Any) -> torch.Tensor:
        rows = rows_of()
        plan = plan_of(self, rows)
        if isinstance(plan, str):  # PEFT_PATH
            return original(x, *args, adapter_names=adapter_names, **kwargs)
        for key in VARIANT_KWARG_KEYS:
            kwargs.pop(key, None)
        result = self.base_layer(x, *args, **kwargs)
        if plan is None:
            return cast(torch.Tensor, result)
        return add_stacked(result, x, plan, rows)

    # PEFT looks the method up on the instance; replacing it there is the hook.
    layer._mixed_batch_forward = types.MethodType(stacked, layer)  # type: ignore[method-assign]

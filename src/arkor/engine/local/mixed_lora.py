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

Layers that take one input and whose base products the lean decoder fuses into one (a
layer's q, k and v; its gate and up: :func:`group`) share one stack as well: ``A`` side by
side for all of them, ``B`` as one block matrix over the span of their outputs (zeros where
a column's layer has no such adapter), so their LoRA terms are one ``x @ A`` and one
``(...) @ B`` instead of two products per layer (a q/v adapter: 2 products a layer where it
was 4; a one-row int4 step with such an adapter in ~0.97x the time). Each layer of the
group is given its columns of that one product (:class:`Share`), in its own forward as in
the lean decoder's fused one, so the two compute the same numbers bit for bit.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from peft.tuners.lora.layer import VARIANT_KWARG_KEYS, Linear

from arkor.engine.local.quantize import Dense, kernel_input, pack_dense, wide
from arkor.engine.local.scripted import folded_product

Groups = list[tuple[str, torch.Tensor]]
STACK_ATTRIBUTE = "_arkor_lora_stack"
GROUP_ATTRIBUTE = "_arkor_lora_group"  # (its _Group, its index there): see group()
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
    # (the product's packed dense copy, the span's first column) -> its folded forms
    _folded: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, compare=False)

    def alone(self, adapter: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One adapter's own ``A`` columns and ``B`` rows of the stack (copies, made once;
        in a group's stack they are one block per layer of the group), or None when it is
        not on this layer."""
        if adapter not in self._alone:
            kept = [i for i, owner in enumerate(self.owner) if owner == adapter]
            index = torch.tensor(kept, device=self.a.device)
            self._alone[adapter] = (None if not kept else
                                    (self.a.index_select(1, index).contiguous(),
                                     self.b.index_select(0, index).contiguous()))
        return self._alone[adapter]

    def folded(self, packed: torch.Tensor, span: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The stack folded into the wide product whose dense copy oneDNN packed as
        ``packed`` (:class:`~arkor.engine.local.quantize.Dense`), its ``B`` on that
        product's outputs from ``span``: ``A`` in bfloat16, packed (``[sum of ranks,
        in]``), and the product's weight with ``B`` as more input columns (``[outputs, in +
        sum of ranks]``, zeros on the outputs outside the span), packed; made once
        (:func:`~arkor.engine.local.scripted.folded_product` takes them)."""
        key = (id(packed), span)
        found = self._folded.get(key)
        if found is None:
            weight = packed.to_dense()
            extra = weight.new_zeros(weight.shape[0], self.b.shape[0])
            extra[span:span + self.b.shape[1]] = self.b.t()
            found = self._folded[key] = (
                pack_dense(self.a.t().to(weight.dtype).contiguous()).packed,
                pack_dense(torch.cat([weight, extra], dim=1)).packed)
        return found


@dataclass(frozen=True)
class Share:
    """A LoRA layer's part of its group's :class:`Stack` (:func:`group`): the group's LoRA
    term is one product over the span of outputs from its first layer with an adapter
    attached to its last, of which this layer's are ``size`` columns from ``start``."""

    stack: Stack
    start: int
    size: int

    @property
    def first(self) -> bool:
        """The group's first layer with an adapter: where the span, and its one term, start."""
        return self.start == 0


@dataclass
class _Group:
    """LoRA layers that take one input, their outputs side by side in this order."""

    layers: tuple[Any, ...]
    sizes: tuple[int, ...]
    # (generation, the layers with a stack) -> (the group's stack, the span's first column)
    _stacks: dict[tuple[int, tuple[int, ...]], tuple[Stack, int]] = field(default_factory=dict)
    offsets: tuple[int, ...] = field(init=False)  # each layer's first output column

    def __post_init__(self) -> None:
        self.offsets = tuple(sum(self.sizes[:i]) for i in range(len(self.sizes)))

    def share(self, index: int, plans: list[Stack | str | None],
              generation: int) -> Share | None:
        """Layer ``index``'s :class:`Share` of the group's stack for a pass whose layers'
        own plans are ``plans``; None where they do not share one (a layer on PEFT's path,
        fewer than two layers with a stack, stacks of different dtypes)."""
        present = tuple(i for i, plan in enumerate(plans) if isinstance(plan, Stack))
        if (index not in present or len(present) < 2
                or any(isinstance(plan, str) for plan in plans)):
            return None
        key = (generation, present)
        if key not in self._stacks:
            stacks = [cast(Stack, plans[i]) for i in present]
            if len({(stack.a.dtype, stack.b.dtype, stack.a.device) for stack in stacks}) != 1:
                return None
            offsets = self.offsets
            first = offsets[present[0]]
            a = torch.cat([stack.a for stack in stacks], dim=1).contiguous()
            b = stacks[0].b.new_zeros(a.shape[1], offsets[present[-1]] + self.sizes[present[-1]]
                                      - first)
            row = 0
            for i, stack in zip(present, stacks, strict=True):
                rank = stack.b.shape[0]
                b[row:row + rank, offsets[i] - first:offsets[i] - first + self.sizes[i]] = stack.b
                row += rank
            owner = tuple(o for stack in stacks for o in stack.owner)
            for stale in [k for k in self._stacks if k[0] != generation]:
                del self._stacks[stale]  # adapters attached or detached since
            self._stacks[key] = (Stack(a, b, owner, torch.tensor(owner, device=a.device)),
                                 first)
        stack, first = self._stacks[key]
        return Share(stack, self.offsets[index] - first, self.sizes[index])


def group(layers: Sequence[Any], sizes: Sequence[int]) -> None:
    """Give the LoRA layers of ``layers`` (which take one input, their ``sizes`` outputs side
    by side in this order: a decoder layer's q, k and v, whose base products the lean decoder
    fuses) one stack between them, whose LoRA term each takes its columns of
    (:class:`Share`)."""
    found = _Group(tuple(layers), tuple(sizes))
    for index, layer in enumerate(layers):
        if isinstance(layer, Linear):
            setattr(layer, GROUP_ATTRIBUTE, (found, index))


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


def _own_plan(layer: Any, rows: RowAdapters | None) -> Stack | str | None:
    if rows is None or any(name in layer.lora_variant for name, _ in rows.groups):
        return PEFT_PATH
    return stack_of(layer, rows) if rows.groups else None


def plan_of(layer: Any, rows: RowAdapters | None) -> Stack | Share | str | None:
    """How ``layer`` serves the rows of this pass: its :class:`Stack`, its :class:`Share` of
    its group's (:func:`group`), None (no row's adapter is on it: the base projection alone),
    or ``PEFT_PATH`` (a LoRA variant, or a bias on ``lora_B``: PEFT's own mixed-batch
    forward)."""
    own = _own_plan(layer, rows)
    grouped = getattr(layer, GROUP_ATTRIBUTE, None)
    if grouped is None or not isinstance(own, Stack):
        return own
    found, index = grouped
    assert rows is not None  # a stack is only made for rows
    plans = [own if i == index else _own_plan(member, rows) if isinstance(member, Linear)
             else None for i, member in enumerate(found.layers)]
    shared = found.share(index, plans, rows.generation)
    return own if shared is None else shared


def lora_term(x: torch.Tensor, stack: Stack, rows: RowAdapters | None) -> torch.Tensor | None:
    """Each row's own adapter's LoRA term of ``x`` (``[..., stack.b columns]``, in the LoRA
    weights' dtype), or None where no row's adapter is in the stack (``rows`` is never None
    here: :func:`plan_of` gives no stack without them)."""
    assert rows is not None
    if rows.only is not None:
        # Every row uses one adapter (one stream, or a batch of one adapter's calls): its own
        # columns alone, no mask to choose them. The masked product's numbers to float
        # rounding (the other adapters' columns are exact zeros there; the products differ
        # in shape, as a row's do alone and in a batch).
        own = stack.alone(rows.only)
        if own is None:
            return None
        flat = x.reshape(-1, x.shape[-1])
        if flat.dtype != own[0].dtype:
            flat = flat.to(own[0].dtype)
        return torch.mm(torch.mm(flat, own[0]), own[1]).view(*x.shape[:-1], -1)
    xa = torch.matmul(x if x.dtype == stack.a.dtype else x.to(stack.a.dtype), stack.a)
    # Chosen, not multiplied by the mask: an adapter whose ``x @ A`` overflows (inf * 0 is
    # NaN) must not reach the rows of the others.
    xa = torch.where(rows.mask(stack.owner, stack.columns, xa.dim()), xa, 0.0)
    return torch.matmul(xa, stack.b)


def folded(x: torch.Tensor, packed: torch.Tensor, stack: Stack, span: int,
           rows: RowAdapters | None) -> torch.Tensor:
    """A wide pass's product of ``x`` (``[..., in]``) by the dense copy ``packed`` with each
    row's own adapter's LoRA term of ``stack`` folded in (:meth:`Stack.folded`, ``span``
    its first column there): ``[..., the product's outputs]``, in bfloat16."""
    assert rows is not None  # a stack is only made for rows
    a, weight = stack.folded(packed, span)
    flat = kernel_input(x, x.shape[-1], torch.bfloat16)
    chosen = rows.mask(stack.owner, stack.columns, x.dim())
    # each token's row's columns, [tokens, sum of ranks] (a view where a row has one token)
    chosen = chosen.expand(*x.shape[:-1], chosen.shape[-1]).reshape(-1, chosen.shape[-1])
    out = folded_product(flat, a, weight, chosen)
    return out.view(*x.shape[:-1], out.shape[-1])


def fold_of(plan: Stack | Share | str | None, start: int) -> tuple[Stack, int] | None:
    """The stack a projection whose outputs start at column ``start`` of its product
    computes its LoRA term by (its own, or its group's), with that stack's span's first
    column there; None for a plan without one."""
    if isinstance(plan, Share):
        return plan.stack, start - plan.start
    if isinstance(plan, Stack):
        return plan, start
    return None


FoldTarget = tuple[Dense, Stack, int]
"""Where a wide pass folds a projection's LoRA term (:func:`folded`): its product's dense
copy, the stack, and the stack's span's first column in that product."""


def wide_pass(x: torch.Tensor) -> bool:
    """Whether a pass of ``x`` (``[..., in]``) is wide (:func:`~arkor.engine.local.quantize.
    wide`: its products on the dense copies), its LoRA terms folded where its products
    fold."""
    return wide(x.numel() // x.shape[-1])


def fold_target(base: Any, plan: Stack | Share | str | None) -> FoldTarget | None:
    """Where a wide pass folds the LoRA term of a projection whose base layer is ``base``
    and whose plan is ``plan``: a base layer with a dense copy that folds (``Dense.folds``)
    and no bias, a stack; else None."""
    dense: Dense | None = getattr(base, "dense", None)
    if dense is None or not dense.folds or getattr(base, "bias", None) is not None:
        return None
    fold = fold_of(plan, dense.start)
    return None if fold is None else (dense, *fold)


def folded_projection(base: Any, x: torch.Tensor, plan: Stack | Share | str | None,
                      rows: RowAdapters | None) -> torch.Tensor | None:
    """What a LoRA layer whose base layer is ``base`` computes of ``x`` with its LoRA term
    folded into its product (:func:`folded`, its columns of the product: a fused group's
    member computes the group's whole), where a wide pass does (:func:`fold_target`); else
    None."""
    target = fold_target(base, plan) if wide_pass(x) else None
    if target is None:
        return None
    dense, stack, span = target
    out = folded(x, dense.packed, stack, span, rows)
    return dense.own(out)


def add_stacked(result: torch.Tensor, x: torch.Tensor, plan: Stack | Share,
                rows: RowAdapters | None) -> torch.Tensor:
    """``result`` (the base projection of ``x``) plus each row's own adapter's LoRA term: the
    stack's, or this layer's columns of its group's (computed whole, as the lean decoder
    computes it once for the group)."""
    if isinstance(plan, Share):
        term = lora_term(x, plan.stack, rows)
        if term is not None:
            result += term[..., plan.start:plan.start + plan.size].to(result.dtype)
        return result
    term = lora_term(x, plan, rows)
    if term is not None:
        result += term.to(result.dtype)
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
        if not args and not kwargs:
            whole = folded_projection(self.base_layer, x, plan, rows)
            if whole is not None:
                return whole
        result = self.base_layer(x, *args, **kwargs)
        if plan is None:
            return cast(torch.Tensor, result)
        return add_stacked(result, x, plan, rows)

    # PEFT looks the method up on the instance; replacing it there is the hook.
    layer._mixed_batch_forward = types.MethodType(stacked, layer)  # type: ignore[method-assign]

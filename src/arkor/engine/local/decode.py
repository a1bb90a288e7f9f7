"""The forward pass of a Llama-family model (each decode step, and each prefill slice) with the
per-call machinery of transformers and PEFT left out.

A decode step of the embedded model through ``model(**inputs)`` makes about 450 module
calls (a decoder layer, its attention, its MLP, its norms, seven projections and their LoRA
wrappers, for each of 30 layers; counted with a rank-8 q/v adapter attached), each through
decorators, keyword plumbing, output-capture hooks and PEFT's argument checks: measured on
the 2-core machine, about a fifth of an int8 step at batch 1 was Python between the tensor
operations. :class:`LeanDecoder` makes the same
tensor operations, in the same order and with the same functions, from one loop: the same
mask (``create_causal_mask``), rotary embeddings (the model's own ``rotary_emb`` and
``apply_rotary_pos_emb``), norms (the model's modules), attention (transformers'
``sdpa_attention_forward``; a decode step's always on the key/value heads, :func:`attend`)
and projections (the module's own forward; a LoRA layer's base
projection plus :func:`arkor.engine.local.mixed_lora.add_stacked`, as its mixed-batch forward
does). So the logits are the ones ``model(**inputs)`` gives, bit for bit
(``tests/engine/test_decode.py``). A prefill whose prompt logprobs are asked for keeps
transformers' forward (they are read from its decoder's output by a hook).

It also runs several passes as one (:meth:`LeanDecoder.hidden_states`): a decode step of the
running rows and a prefill slice of newcomers, each over its own cache, share every
projection's weight reads (chunked prefill; docs/engine.md).

Only the architectures whose forward is written out here are served this way
(:func:`supports`: ``LlamaForCausalLM`` with SDPA attention); any other model, and a LoRA
layer that needs PEFT's own path (a LoRA variant, a bias on ``lora_B``), goes through the
module as before.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from transformers.integrations.sdpa_attention import pack_gqa, sdpa_attention_forward
from transformers.masking_utils import create_causal_mask
from transformers.models.llama.modeling_llama import LlamaRMSNorm, apply_rotary_pos_emb

from arkor.engine.local.batch import GrowingLayer, growing_layers
from arkor.engine.local.mixed_lora import (
    PEFT_PATH,
    FoldTarget,
    RowAdapters,
    Share,
    Stack,
    add_stacked,
    fold_of,
    fold_target,
    folded,
    folded_projection,
    group,
    lora_term,
    plan_of,
    wide_pass,
)
from arkor.engine.local.quantize import (
    Dense,
    Int4Linear,
    Int8Linear,
    kernel_input,
    pack_dense,
    product,
    release_free_memory,
    wide,
)
from arkor.engine.local.scripted import (
    LAYER_PROJECTIONS,
    LAYER_WEIGHTS,
    packed_queries,
    run_unoptimized,
    scripted_decoder_layers,
)

ARCHITECTURES = frozenset({"LlamaForCausalLM"})


def supports(model: Any) -> bool:
    """Whether ``model`` (the causal LM under any PEFT wrapper) is one whose decode step
    :class:`LeanDecoder` writes out."""
    config = getattr(model, "config", None)
    return (type(model).__name__ in ARCHITECTURES and config is not None
            and getattr(config, "_attn_implementation", None) == "sdpa")


@dataclass
class Logits:
    """What the scheduler reads of a forward pass's output."""

    logits: torch.Tensor


@dataclass
class Fused:
    """Int8 (or int4) projections of one input (a layer's q, k and v; its gate and up) as one
    matrix: their weights and scales side by side, which the modules' own become views of
    (no copy is kept), so one packed product computes all of them."""

    weight: torch.Tensor  # [sum of outputs, in] int8, or [sum of outputs, in / 2] packed int4
    scales: torch.Tensor  # [sum of outputs]; int4: [in / group, sum of outputs, 2]
    sizes: list[int]
    int4: bool = False
    # The modules' dense copies side by side (quantize.keep_dense), packed as one, theirs
    # shares of it; None when they have none.
    dense: Dense | None = None

    @classmethod
    def of(cls, modules: list[Any], *, folds: bool = False) -> Fused | None:
        """``modules``' weights fused, or None when they are not all bias-free
        :class:`Int8Linear` s (or all :class:`Int4Linear` s) of the same input (each is then
        computed as before, alone)."""
        bases: list[Any] = [base_of(m) for m in modules]
        kinds = {type(b) for b in bases}
        if (len(kinds) != 1 or not kinds <= {Int8Linear, Int4Linear}
                or any(b.bias is not None for b in bases)):
            return None
        int4 = kinds == {Int4Linear}
        scales = [b.scales_and_zeros if int4 else b.scales for b in bases]
        if len({(b.in_features, s.dtype) for b, s in zip(bases, scales, strict=True)}) != 1:
            return None
        copies = [b.dense for b in bases if b.dense is not None]  # all or none: keep_dense
        fused = cls(torch.cat([b.weight for b in bases]), torch.cat(scales, dim=1 if int4 else 0),
                    [b.out_features for b in bases], int4,
                    dataclasses.replace(pack_dense(torch.cat([copy.weight() for copy in copies])),
                                        folds=folds)
                    if copies and len(copies) == len(bases) else None)
        start = 0
        for base, size in zip(bases, fused.sizes, strict=True):
            base.weight = torch.nn.Parameter(fused.weight[start:start + size],
                                             requires_grad=False)
            # A member alone (the model's own forward) computes the group's whole dense
            # product and keeps its columns: the numbers of the group's product
            base.dense = None if fused.dense is None else fused.dense.share(start, size)
            if int4:
                base.scales_and_zeros = fused.scales[:, start:start + size]
            else:
                base.scales = fused.scales[start:start + size]
            start += size
        return fused

    def project(self, modules: Sequence[Any], plans: Sequence[Stack | Share | str | None],
                x: torch.Tensor,
                rows: RowAdapters | None) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Each module's :func:`project_as` with its plan in ``plans`` (its
        :func:`lora_plan`), the base products from one kernel call (each output column is the
        same dot product as in its own module's; wide products by the dense copy,
        :func:`~arkor.engine.local.quantize.product`); and that call's whole output
        ``[..., sum of outputs]``, of which the parts are views, unless a module had to be
        called on its own (None)."""
        target = self.fold_target(plans) if wide_pass(x) else None
        if target is not None:
            dense, stack, span = target
            out = folded(x, dense.packed, stack, span, rows)
            return list(out.split_with_sizes(self.sizes, dim=-1)), out
        out = product(kernel_input(x, x.shape[-1], self.scales.dtype), self.weight,
                      self.scales, self.dense, int4=self.int4)
        out = out.view(*x.shape[:-1], out.shape[-1])
        found, intact = [], True
        lora_input: torch.Tensor | None = None  # x in the LoRA weights' dtype, cast once
        start = 0
        for module, plan, part, size in zip(modules, plans,
                                            out.split_with_sizes(self.sizes, dim=-1),
                                            self.sizes, strict=True):
            if isinstance(plan, str):  # the module itself (PEFT's path, or adapters off)
                part, intact = module(x), False
            elif plan is not None:
                stack = plan.stack if isinstance(plan, Share) else plan
                if lora_input is None or lora_input.dtype != stack.a.dtype:
                    lora_input = x.to(stack.a.dtype)
                if not isinstance(plan, Share):
                    # in place: still a view of ``out``
                    part = add_stacked(part, lora_input, plan, rows)
                elif plan.first:
                    # the group's term once, over its span of ``out`` from here (the parts
                    # are views; these modules are one group: every share is of one stack)
                    term = lora_term(lora_input, stack, rows)
                    if term is not None:
                        out.narrow(-1, start, term.shape[-1]).add_(term.to(out.dtype))
            found.append(part)
            start += size
        return found, out if intact else None

    def fold_target(self, plans: Sequence[Stack | Share | str | None]) -> FoldTarget | None:
        """Where a wide pass folds the LoRA term of this product
        (:func:`~arkor.engine.local.mixed_lora.fold_target`: its one stack, of a group or of
        one module), or None: no dense copy or one that does not fold (``Dense.folds``), no
        stack, a module on PEFT's path, or stacks of its own on two modules (a group gives
        its modules one stack between them; this is only a guard)."""
        if (self.dense is None or not self.dense.folds
                or any(isinstance(plan, str) for plan in plans)):
            return None
        folds = {(id(fold[0]), fold[1]): fold for plan, start
                 in zip(plans, itertools.accumulate(self.sizes[:-1], initial=0), strict=True)
                 if (fold := fold_of(plan, start)) is not None}
        return (self.dense, *next(iter(folds.values()))) if len(folds) == 1 else None


def lora_plan(module: Any, rows: RowAdapters | None) -> Stack | Share | str | None:
    """How a projection serves this pass: None (its base projection alone: not a LoRA
    layer, or no row's adapter is on it), its :class:`Stack` or its :class:`Share` of its
    fused group's (the base projection plus :func:`add_stacked`), or a string: called as a
    module (PEFT's own path, or its adapters switched off or merged)."""
    if not isinstance(module, LoraLinear):
        return None
    if module.disable_adapters or module.merged:
        return PEFT_PATH
    return plan_of(module, rows)


Projection = Callable[[torch.Tensor], torch.Tensor]
"""A projection's base product of ``x`` (:func:`base_projection`)."""


def project_as(module: Any, base: Projection, plan: Stack | Share | str | None, x: torch.Tensor,
               rows: RowAdapters | None) -> torch.Tensor:
    """``module(x)`` for a projection, given its :func:`base_projection` and
    :func:`lora_plan`: a LoRA layer as its mixed-batch forward computes it (the base
    projection, then every row's own adapter from the stacked weights), anything else (a
    Linear, an int8 Linear, a LoRA layer on PEFT's path) by calling it."""
    if isinstance(plan, str):
        out: torch.Tensor = module(x)
        return out
    whole = folded_projection(base_of(module), x, plan, rows)
    if whole is not None:
        return whole
    result = base(x)
    return result if plan is None else add_stacked(result, x, plan, rows)


def base_of(module: Any) -> Any:
    """A projection's base layer: a LoRA layer's ``base_layer``, else the module."""
    return module.base_layer if isinstance(module, LoraLinear) else module


def base_projection(module: Any) -> Projection:
    """What the projection's base layer computes, as a function: a bias-free int8 or int4
    layer's kernel call (its forward's) with its weights looked up once (less a module call
    and its attribute lookups: 120 a decode step), anything else the module."""
    base = base_of(module)
    kind = type(base)
    # The output layer (Int8Linear.integer) is called too: its forward chooses its product.
    if (kind not in (Int8Linear, Int4Linear) or base.bias is not None
            or getattr(base, "integer", False)):
        return cast(Projection, base)
    weight, width, int4, dense = base.weight, base.in_features, kind is Int4Linear, base.dense
    # Contiguous once: the kernel reads strided int4 scales wrongly (see Int4Linear.forward).
    scales = base.scales_and_zeros.contiguous() if int4 else base.scales

    def projection(x: torch.Tensor) -> torch.Tensor:
        out = product(kernel_input(x, width, scales.dtype), weight, scales, dense, int4=int4)
        return out.view(*x.shape[:-1], out.shape[-1])

    return projection


def rms_norm(norm: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """A Llama RMS norm module as a function: ``LlamaRMSNorm.forward``'s operations, in its
    order and dtypes (so the same numbers), with its weight and epsilon looked up once; any
    other module as itself."""
    if type(norm) is not LlamaRMSNorm:
        return cast(Callable[[torch.Tensor], torch.Tensor], norm)
    weight = norm.weight
    # Epsilon as a float32 tensor, made once: the same float32 sum as adding the Python float
    # (which torch wraps in a tensor and converts on every call: ~1.2 us, 61 times a step).
    eps = torch.tensor(norm.variance_epsilon, dtype=torch.float32, device=weight.device)
    # On the CPU torch's ``mean`` of float32 values is their sum divided in place by the
    # count, which it wraps in a tensor on every call: the same here with the count made once
    # (the same numbers, ~4.5 us less a norm).
    count = torch.tensor(float(weight.shape[-1]), dtype=torch.float32, device=weight.device)
    on_cpu = weight.device.type == "cpu"

    def normed(hidden: torch.Tensor) -> torch.Tensor:
        dtype = hidden.dtype
        hidden = hidden.to(torch.float32)
        squares = hidden.pow(2)
        variance = (squares.sum(-1, keepdim=True).div_(count) if on_cpu
                    else squares.mean(-1, keepdim=True))
        hidden = hidden * torch.rsqrt(variance.add_(eps))
        return weight * hidden.to(dtype)

    return normed


@dataclass(frozen=True)
class _Layer:
    """One decoder layer's parts for the passes of one layout of adapters (looked up once:
    the attribute lookups, module calls and LoRA plans of 30 layers were about a fifth of a
    one-row decode step at int4)."""

    attention: Any
    norm1: Callable[[torch.Tensor], torch.Tensor]
    norm2: Callable[[torch.Tensor], torch.Tensor]
    qkv_modules: tuple[Any, Any, Any]
    qkv_plans: tuple[Stack | Share | str | None, ...]
    qkv_bases: tuple[Projection, ...]
    qkv: Fused | None
    o_module: Any
    o_plan: Stack | Share | str | None
    o_base: Projection
    gate_up_modules: tuple[Any, Any]
    gate_up_plans: tuple[Stack | Share | str | None, ...]
    gate_up_bases: tuple[Projection, ...]
    gate_up: Fused | None
    act: Callable[[torch.Tensor], torch.Tensor]
    down_module: Any
    down_plan: Stack | Share | str | None
    down_base: Projection
    head_dim: int
    rotary_split: list[int]  # query and key heads, of the rotated q and k columns


@dataclass(frozen=True)
class _Layout:
    """The decoder's parts for one layout of adapters: its layers, and its output layer."""

    layers: list[_Layer]
    head: Any
    head_base: Projection
    head_plan: Stack | Share | str | None
    # Its decode steps' arguments for scripted.decoder_layers, or None: taken by the Python
    # layers (a layer whose parts the script does not write out)
    scripted: _ScriptedLayout | None = None


@dataclass
class _ScriptedLayout:
    """What :func:`~arkor.engine.local.scripted.decoder_layers` takes of one layout of
    adapters, gathered once: its weights and shapes, and each projection's LoRA stack."""

    weights: list[torch.Tensor]
    int4: list[bool]
    # Each product's dense copy, packed (scripted.LAYER_KINDS a layer), where the layers keep
    # them (quantize.keep_dense); else empty
    dense: list[torch.Tensor]
    # Whether a wide pass folds each product's LoRA term into it (as dense: a fold target)
    folds: list[bool]
    sizes: list[int]
    # q, k, v, o, gate, up, down of each layer; a group's stack at its first projection
    # (_script_stacks)
    stacks: list[Stack | None]
    eps: torch.Tensor
    count: torch.Tensor
    final_norm: torch.Tensor
    heads: int
    kv_heads: int
    head_dim: int
    scaling: float
    # Where a wide pass folds each projection's stack (its fold target's packed copy and
    # span, at the projection that holds the stack), or None
    targets: list[tuple[torch.Tensor, int] | None]
    # (the adapter every row uses or None, whether folded) -> each projection's A and B, and
    # whether its rows choose their columns (made once per key: _made)
    _forms: dict[tuple[int | None, bool], tuple[list[torch.Tensor | None],
                                               list[torch.Tensor | None],
                                               list[bool]]] = field(default_factory=dict)

    def lora(self, rows: RowAdapters | None, wide: bool = False) -> tuple[
            list[torch.Tensor | None], list[torch.Tensor | None], list[torch.Tensor | None]]:
        """The LoRA arguments of a step whose rows are ``rows``: each projection's ``A``,
        ``B`` and which of their columns each row keeps (None: every column, the one-adapter
        case), as :func:`~arkor.engine.local.mixed_lora.add_stacked` chooses them; in a
        ``wide`` pass the folded forms of the stacks whose products fold, with the columns
        each row keeps, as :func:`~arkor.engine.local.mixed_lora.folded` takes them."""
        if rows is None or all(stack is None for stack in self.stacks):
            nothing: list[torch.Tensor | None] = [None] * len(self.stacks)
            return nothing, nothing, nothing
        key = (rows.only, wide and any(self.folds))
        forms = self._forms.get(key)
        if forms is None:
            forms = self._forms[key] = self._made(*key)
        a, b, chosen = forms
        return a, b, [rows.mask(stack.owner, stack.columns, 2)
                      if choose and stack is not None else None
                      for stack, choose in zip(self.stacks, chosen, strict=True)]

    def _made(self, only: int | None, fold: bool) -> tuple[
            list[torch.Tensor | None], list[torch.Tensor | None], list[bool]]:
        # Each stack folded (Stack.folded) where its product folds in a folding pass, else
        # its A and B (Stack.alone's columns where every row uses one adapter)
        a: list[torch.Tensor | None] = []
        b: list[torch.Tensor | None] = []
        chosen: list[bool] = []
        for stack, target in zip(self.stacks, self.targets, strict=True):
            own = None if stack is None else (
                stack.folded(*target) if fold and target is not None
                else (stack.a, stack.b) if only is None else stack.alone(only))
            a.append(None if own is None else own[0])
            b.append(None if own is None else own[1])
            chosen.append(stack is not None and (only is None or (fold and target is not None)))
        return a, b, chosen


def _script_stacks(plans: Sequence[Stack | Share | str | None]) -> list[Stack | None]:
    """A layer's projections' stacks as ``scripted.decoder_layers`` takes them: a group's
    stack (:class:`~arkor.engine.local.mixed_lora.Share`) at its first projection with a
    share (where its span starts: ``_fused`` adds the term over ``B``'s columns from that
    projection's), None at the others."""
    return [plan.stack if isinstance(plan, Share) and plan.first else
            plan if isinstance(plan, Stack) else None for plan in plans]


MAX_LAYOUTS = 64


def attend(attention: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
           mask: Any, *, joined: bool = False) -> torch.Tensor:
    """``sdpa_attention_forward``'s output (``[batch, length, heads, head_dim]``), with one
    change: a decode step's single query always runs on the key/value heads (its heads packed
    as ``groups`` queries of each key/value head, as transformers does only when there is a
    mask). Without a mask transformers asks SDPA for ``enable_gqa``, which on the CPU took
    4-5x as long from a few rows up (16 rows, 78 columns: ~1,000 against ~200 us; the same
    ~16 us at one row); the packed call gives the masked packed call's numbers bit for bit,
    so a row alone computes what it does with a mask of all its columns (behind padding in
    a batch it does not: docs/engine.md, "Precision").

    A masked pass of several columns that is ``joined`` to a decode step (a prompt slice
    over its cache: chunked prefill) packs its queries the same way, each key/value head's
    ``groups`` heads one after another along the columns
    (:func:`~arkor.engine.local.scripted.packed_queries`), where transformers repeats the
    keys and values for every head (a copy of the whole cache a layer): ~2.5x sooner for a
    slice of 4 tokens over 850 columns (81 against 206 us a layer; an 8-token slice over 500
    columns beside 8 rows added ~8.3 ms to their step instead of ~11.5). Its numbers are
    transformers' up to the last bits (SDPA's blocking follows the query rows: equal in some
    shapes, not in others), so a pass computed alone, which the model's own forward computes
    too, keeps transformers' call."""
    groups = getattr(attention, "num_key_value_groups", 1)
    batch, heads, length, dim = query.shape
    if joined and length != 1 and groups != 1 and packs_queries(mask):
        query, mask = packed_queries(query, mask, groups)
        sliced = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=0.0, scale=attention.scaling)
        # [batch, kv_heads, groups * length, dim] is [batch, heads, length, dim]'s order
        return sliced.reshape(batch, heads, length, dim).transpose(1, 2).contiguous()
    if length != 1 or groups == 1:
        out: torch.Tensor = sdpa_attention_forward(attention, query, key, value, mask,
                                                   dropout=0.0, scaling=attention.scaling)[0]
        return out
    # transformers' own packing (pack_gqa), as its masked call makes it: query and mask alike
    packed = torch.nn.functional.scaled_dot_product_attention(
        cast(torch.Tensor, pack_gqa(query, groups)), key, value,
        attn_mask=pack_gqa(mask, groups), dropout_p=0.0, scale=attention.scaling)
    # [batch, kv_heads, groups, dim] is already [batch, 1, heads, dim]'s order: one reshape
    return packed.reshape(batch, 1, heads, dim)


def additive(mask: Any, dtype: torch.dtype) -> Any:
    """A boolean attention ``mask`` as SDPA turns it into numbers on every call (0 where
    ``mask`` is true, minus infinity where it is false, in ``dtype``: the query's), made once
    a pass for its 30 layers; anything else as it is. The same numbers bit for bit
    (``tests/engine/test_decode.py``), a little sooner (2-core Xeon with AMX, bfloat16: 16
    padded decode rows over 130 columns 96 against 102 us a layer; a slice of 8 tokens over
    500 columns, its queries packed, 65 against 71 us)."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
        mask.logical_not(), float("-inf"))


def packs_queries(mask: Any) -> bool:
    """Whether a joined pass of several columns with ``mask`` packs its queries
    (:func:`attend`):
    a mask shared by the heads, where transformers would repeat the keys and values (not
    with ``TRANSFORMERS_SDPA_FORCE_GQA``, under which it asks SDPA for grouped heads)."""
    return (isinstance(mask, torch.Tensor) and mask.dim() == 4 and mask.shape[1] == 1
            and not sdpa_forced_gqa())


def sdpa_forced_gqa() -> bool:
    """Whether transformers is told to ask SDPA for grouped heads even with a mask
    (``TRANSFORMERS_SDPA_FORCE_GQA``): its own attention then computes a masked pass so."""
    return os.environ.get("TRANSFORMERS_SDPA_FORCE_GQA", "0") == "1"


@dataclass
class _Part:
    """One forward pass's inputs, prepared for the layers: its embedded tokens, attention
    mask, rotary embeddings and cache layers."""

    hidden: torch.Tensor  # [batch, length, hidden]
    mask: Any
    cos: torch.Tensor
    sin: torch.Tensor
    # ``sin`` with its first half negated: ``rotate_half(x) * sin`` is ``x.roll(half) *
    # signed_sin``, bit for bit (a sign moves exactly), in one operation instead of four.
    signed_sin: torch.Tensor
    layers: list[Any]
    batch: int
    length: int
    keep: int  # logits_to_keep: 0 for every column
    prompt: bool  # a prompt slice (prefill.PrefillGroup.next_slice)

    @property
    def tokens(self) -> int:
        return self.batch * self.length


class LeanDecoder:
    """The forward pass of one loaded causal LM (see the module's docstring)."""

    def __init__(self, causal_lm: Any, *, scripted: bool = True) -> None:
        self.lm = causal_lm
        # Decode steps by scripted.decoder_layers where a layout allows (False: always the
        # Python layers; tests and benches compare the two)
        self.scripted = scripted
        self.inner = causal_lm.model  # LlamaModel: embeddings, layers, norm, rotary_emb
        self.fused = [(Fused.of([layer.self_attn.q_proj, layer.self_attn.k_proj,
                                 layer.self_attn.v_proj], folds=True),
                       Fused.of([layer.mlp.gate_proj, layer.mlp.up_proj]))
                      for layer in self.inner.layers]
        # A wide pass folds the LoRA terms of the attention's products (q/k/v, o) into them
        # (mixed_lora.folded; Dense.folds), not the MLP's: a fold keeps a copy of its
        # product's dense weight for the adapters attached (made at the first wide pass
        # after one is attached or detached) and saves about as much for any product (one
        # term's operations and cold reads, ~50 us at 16 rows on a 2-core Xeon), and gate/up
        # and down are two thirds of the weights: adapters on all seven projections cost
        # +284 MiB folded everywhere, ~+70 MiB folded here (docs/engine.md, "LoRA terms
        # folded into the attention's products").
        for layer in self.inner.layers:
            o_proj = base_of(layer.self_attn.o_proj)
            if getattr(o_proj, "dense", None) is not None:
                o_proj.dense = dataclasses.replace(o_proj.dense, folds=True)
        if any(pair != (None, None) for pair in self.fused):
            release_free_memory()  # the modules' own int8 weights, replaced by views
        self.norm = rms_norm(self.inner.norm)
        self._no_window = getattr(self.inner.config, "sliding_window", None) is None
        # Per layout of adapters (attached set, and which of them the rows use): the layers'
        # parts and LoRA plans. The modules themselves change when adapters are attached
        # (PEFT wraps them), which changes the layout's generation.
        self._layouts: dict[tuple[int, tuple[str, ...]] | None, _Layout] = {}
        self._generation: int | None = None  # the layouts' generation of adapters

    def group_lora_layers(self) -> None:
        """Give the LoRA layers of each fused group (a layer's q, k and v; its gate and up)
        one stack between them (:func:`~arkor.engine.local.mixed_lora.group`): called
        whenever new LoRA layers appear, so the model's own forward and this one compute the
        group's LoRA term alike."""
        for layer, (qkv, gate_up) in zip(self.inner.layers, self.fused, strict=True):
            if qkv is not None:
                group([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj],
                      qkv.sizes)
            if gate_up is not None:
                group([layer.mlp.gate_proj, layer.mlp.up_proj], gate_up.sizes)

    def layout(self, rows: RowAdapters | None) -> _Layout:
        """Every layer's :class:`_Layer`, and the output layer's projection, for passes whose
        rows are ``rows``."""
        key = None if rows is None else (rows.generation, tuple(name for name, _ in rows.groups))
        found = self._layouts.get(key)
        if found is None:
            generation = None if rows is None else rows.generation
            if len(self._layouts) >= MAX_LAYOUTS or generation != self._generation:
                # An adapter was attached or detached: the older layouts' modules and LoRA
                # stacks are gone from the model, and are let go here too.
                self._layouts.clear()
                self._generation = generation
            head = self.lm.lm_head
            layers = [self._layer(index, layer, rows)
                      for index, layer in enumerate(self.inner.layers)]
            found = self._layouts[key] = _Layout(
                layers, head, base_projection(head), lora_plan(head, rows),
                self._scripted_layout(layers))
        return found

    def _scripted_layout(self, layers: list[_Layer]) -> _ScriptedLayout | None:
        """``layers`` as :func:`~arkor.engine.local.scripted.decoder_layers` takes them, or
        None where it does not write one of their parts out: projections not fused (not int8
        or int4), a bias, a norm other than Llama's (or of another epsilon), an activation
        other than SiLU, a LoRA layer on PEFT's path, attention without grouped key/value
        heads."""
        norms = [norm for layer in self.inner.layers
                 for norm in (layer.input_layernorm, layer.post_attention_layernorm)]
        norms.append(self.inner.norm)
        if not layers or any(type(norm) is not LlamaRMSNorm for norm in norms) or len(
                {(norm.variance_epsilon, norm.weight.shape[-1]) for norm in norms}) != 1:
            return None
        weights: list[torch.Tensor] = []
        int4: list[bool] = []
        dense: list[Dense | None] = []
        sizes: list[int] = []
        stacks: list[Stack | None] = []
        targets: list[tuple[torch.Tensor, int] | None] = []
        folds: list[bool] = []
        attention = layers[0].attention
        heads, kv_heads = attention.config.num_attention_heads, attention.config.num_key_value_heads
        for index, layer in enumerate(layers):
            qkv, gate_up = layer.qkv, layer.gate_up
            plans = (*layer.qkv_plans, layer.o_plan, *layer.gate_up_plans, layer.down_plan)
            ends = [base_of(layer.o_module), base_of(layer.down_module)]
            if (qkv is None or gate_up is None or len(qkv.sizes) != 3 or len(gate_up.sizes) != 2
                    or any(isinstance(plan, str) for plan in plans)
                    or any(type(end) not in (Int8Linear, Int4Linear) or end.bias is not None
                           for end in ends)
                    or layer.act is not torch.nn.functional.silu
                    or layer.head_dim != attention.head_dim
                    or layer.attention.scaling != attention.scaling
                    or layer.rotary_split != [heads, kv_heads]):
                return None
            source = self.inner.layers[index]
            o, down = ((end.weight, end.scales_and_zeros.contiguous() if type(end) is Int4Linear
                        else end.scales) for end in ends)
            weights += [source.input_layernorm.weight, qkv.weight, qkv.scales, *o,
                        source.post_attention_layernorm.weight, gate_up.weight, gate_up.scales,
                        *down]
            int4 += [qkv.int4, type(ends[0]) is Int4Linear, gate_up.int4,
                     type(ends[1]) is Int4Linear]
            dense += [qkv.dense, ends[0].dense, gate_up.dense, ends[1].dense]
            sizes += [*qkv.sizes, *gate_up.sizes]
            own = _script_stacks(plans)
            stacks += own
            # each product's fold target, at the projection that holds its stack
            found = [qkv.fold_target(layer.qkv_plans), fold_target(ends[0], layer.o_plan),
                     gate_up.fold_target(layer.gate_up_plans),
                     fold_target(ends[1], layer.down_plan)]
            placed: list[tuple[torch.Tensor, int] | None] = [None] * len(own)
            for target in found:
                if target is not None:
                    placed[next(i for i, stack in enumerate(own) if stack is target[1])] = (
                        target[0].packed, target[2])
            targets += placed
            folds += [target is not None for target in found]
        # The packed kernels take activations in their scales' dtype: the script gives them
        # the embedding's, uncast (as kernel_input leaves them in a decode step)
        activations = self.inner.embed_tokens.weight.dtype
        if (heads % kv_heads or heads == kv_heads
                or any(weights[index].dtype != activations for index in range(len(weights))
                       if index % LAYER_WEIGHTS in (2, 4, 7, 9))):  # the scales
            return None
        assert len(stacks) == LAYER_PROJECTIONS * len(layers)
        norm = self.inner.norm
        # Copies for every product, each its layer's whole (not a share), or none used
        copies = [copy.packed for copy in dense
                  if copy is not None and copy.size == copy.outputs]
        kept = len(copies) == len(dense)
        return _ScriptedLayout(
            weights, int4, copies if kept else [], [kept and fold for fold in folds], sizes,
            stacks,
            torch.tensor(norm.variance_epsilon, dtype=torch.float32, device=norm.weight.device),
            torch.tensor(float(norm.weight.shape[-1]), dtype=torch.float32,
                         device=norm.weight.device),
            norm.weight, heads, kv_heads, attention.head_dim, float(attention.scaling),
            targets)

    def _layer(self, index: int, layer: Any, rows: RowAdapters | None) -> _Layer:
        attention, mlp = layer.self_attn, layer.mlp
        qkv, gate_up = self.fused[index]
        qkv_modules = (attention.q_proj, attention.k_proj, attention.v_proj)
        gate_up_modules = (mlp.gate_proj, mlp.up_proj)
        act = mlp.act_fn
        return _Layer(
            attention=attention,
            norm1=rms_norm(layer.input_layernorm),
            norm2=rms_norm(layer.post_attention_layernorm),
            qkv_modules=qkv_modules,
            qkv_plans=tuple(lora_plan(m, rows) for m in qkv_modules),
            # Only where the modules are computed one by one: a fused member's int4 scales are
            # a strided view, which base_projection would copy (for every layout kept).
            qkv_bases=() if qkv is not None else tuple(base_projection(m) for m in qkv_modules),
            qkv=qkv,
            o_module=attention.o_proj,
            o_plan=lora_plan(attention.o_proj, rows),
            o_base=base_projection(attention.o_proj),
            gate_up_modules=gate_up_modules,
            gate_up_plans=tuple(lora_plan(m, rows) for m in gate_up_modules),
            gate_up_bases=(() if gate_up is not None
                           else tuple(base_projection(m) for m in gate_up_modules)),
            gate_up=gate_up,
            act=(torch.nn.functional.silu if type(act).__name__ == "SiLUActivation" else act),
            down_module=mlp.down_proj,
            down_plan=lora_plan(mlp.down_proj, rows),
            down_base=base_projection(mlp.down_proj),
            head_dim=attention.head_dim,
            rotary_split=([qkv.sizes[0] // attention.head_dim, qkv.sizes[1] // attention.head_dim]
                          if qkv is not None else []),
        )

    @torch.inference_mode()
    def step(self, rows: RowAdapters | None, inputs: dict[str, Any]) -> Logits:
        """The model's forward over ``inputs`` (``input_ids`` ``[rows, columns]``, their
        ``attention_mask``, ``position_ids`` and growing ``cache``, and ``logits_to_keep``):
        the logits of every column, or of the last ``logits_to_keep``, as the model's own
        forward gives them, and the cache grown by the columns."""
        layout = self.layout(rows)
        [hidden] = self._hidden_states(layout, rows, [inputs])
        return Logits(project_as(layout.head, layout.head_base, layout.head_plan, hidden, rows))

    @torch.inference_mode()
    def hidden_states(self, rows: RowAdapters | None,
                      passes: list[dict[str, Any]]) -> list[torch.Tensor]:
        """The decoder's output (after its last norm, the input of ``lm_head``) for each
        pass's last ``logits_to_keep`` columns (every column for 0), each pass's cache grown
        by its columns.

        One pass is computed as the model's forward computes it (``rows`` names each of its
        rows' adapter). Several passes (a decode step of the running rows and a prefill slice
        of newcomers, each with a cache, mask and positions of its own) go through every
        projection together, their tokens stacked as rows of one column (``[tokens, 1,
        hidden]``; ``rows`` then names each *token*'s adapter, pass after pass), so each
        weight is read once for all of them; only attention runs pass by pass, over each
        one's own cache."""
        return self._hidden_states(self.layout(rows), rows, passes)

    def _hidden_states(self, layout: _Layout, rows: RowAdapters | None,
                       passes: list[dict[str, Any]]) -> list[torch.Tensor]:
        parts = [self._prepare(inputs) for inputs in passes]
        if self.scripted and layout.scripted is not None:
            found = self._scripted(layout.scripted, rows, parts)
            if found is not None:
                return found
        single = len(parts) == 1
        hidden = (parts[0].hidden if single else
                  torch.cat([part.hidden.reshape(part.tokens, 1, -1) for part in parts]))
        for index, layer in enumerate(layout.layers):
            residual = hidden
            hidden = layer.norm1(hidden)
            qkv = layer.qkv
            if qkv is not None:
                outputs, whole = qkv.project(layer.qkv_modules, layer.qkv_plans, hidden, rows)
            else:
                outputs, whole = [project_as(m, base, plan, hidden, rows)
                                  for m, base, plan
                                  in zip(layer.qkv_modules, layer.qkv_bases, layer.qkv_plans,
                                         strict=True)], None
            attended, start = [], 0
            for part in parts:
                shape = (part.batch, part.length, -1, layer.head_dim)
                end = start + part.tokens
                value = (outputs[2] if single else outputs[2][start:end]).view(
                    shape).transpose(1, 2)
                if whole is not None and qkv is not None:
                    # q and k side by side in one output: apply_rotary_pos_emb's arithmetic
                    # (elementwise) once over both, then split by heads.
                    both = whole[..., : qkv.sizes[0] + qkv.sizes[1]]
                    both = (both if single else both[start:end]).view(shape).transpose(1, 2)
                    half = both.shape[-1] // 2
                    both = (both * part.cos) + (both.roll(half, -1) * part.signed_sin)
                    query, key = both.split_with_sizes(layer.rotary_split, dim=1)
                else:
                    query, key = apply_rotary_pos_emb(
                        (outputs[0] if single else outputs[0][start:end]).view(
                            shape).transpose(1, 2),
                        (outputs[1] if single else outputs[1][start:end]).view(
                            shape).transpose(1, 2),
                        part.cos.squeeze(1), part.sin.squeeze(1))
                key, value = part.layers[index].update(key, value)
                out = attend(layer.attention, query, key, value, part.mask, joined=not single)
                attended.append(out.reshape(part.batch, part.length, -1).contiguous()
                                if single else out.reshape(part.tokens, 1, -1))
                start = end
            joined = attended[0] if single else torch.cat(attended)
            hidden = residual + project_as(layer.o_module, layer.o_base, layer.o_plan, joined,
                                           rows)
            residual = hidden
            hidden = layer.norm2(hidden)
            gate_up = layer.gate_up
            if gate_up is not None:
                gate, up = gate_up.project(layer.gate_up_modules, layer.gate_up_plans, hidden,
                                           rows)[0]
            else:
                gate, up = (project_as(m, base, plan, hidden, rows)
                            for m, base, plan
                            in zip(layer.gate_up_modules, layer.gate_up_bases,
                                   layer.gate_up_plans, strict=True))
            gated = layer.act(gate) * up
            hidden = residual + project_as(layer.down_module, layer.down_base, layer.down_plan,
                                           gated, rows)
        hidden = self.norm(hidden)
        kept, start = [], 0
        for part in parts:
            own = hidden if single else hidden[start:start + part.tokens].view(
                part.batch, part.length, -1)
            kept.append(own[:, -part.keep:] if part.keep else own)
            start += part.tokens
        return kept

    def _scripted(self, scripted: _ScriptedLayout, rows: RowAdapters | None,
                  parts: list[_Part]) -> list[torch.Tensor] | None:
        """The decoder's output for ``parts`` (a decode step, alone or with a prefill slice
        joined to it) by :func:`~arkor.engine.local.scripted.decoder_layers`, each pass's
        cache grown by its columns, as :meth:`hidden_states` returns it; None (nothing done)
        where a pass is not one it takes: a pass of several columns alone (a prompt slice), a
        cache whose layers differ in length or hold nothing yet (a group's first slice), a
        decode pass whose mask is not shared by the heads, or a slice while transformers is
        told to use SDPA's grouped heads with a mask (``TRANSFORMERS_SDPA_FORCE_GQA``)."""
        if all(part.prompt for part in parts) or (len(parts) == 1 and parts[0].length != 1):
            # a pass of several columns alone: its ``rows`` name rows, not tokens
            return None
        pasts: list[int] = []
        for part in parts:
            past = self._scripted_past(scripted, part)
            if past is None or (part.length == 1 and part.mask is not None
                                and part.mask.shape[1] != 1):
                return None
            pasts.append(past)
        if any(part.length > 1 for part in parts) and sdpa_forced_gqa():
            return None
        function = scripted_decoder_layers()
        if function is None:  # no TorchScript here (logged once): the Python layers from now
            self.scripted = False
            return None
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        for part in parts:
            for layer in part.layers:
                pair = layer.room_for(part.length)
                assert pair is not None  # _scripted_past saw every layer hold columns
                keys.append(pair[0])
                values.append(pair[1])
        wide_step = bool(scripted.dense) and wide(sum(part.tokens for part in parts))
        lora_a, lora_b, chosen = scripted.lora(rows, wide_step)
        hidden = run_unoptimized(
            function, (parts[0].hidden.view(parts[0].tokens, -1) if len(parts) == 1 else
                       torch.cat([part.hidden.reshape(part.tokens, -1) for part in parts])),
            [part.cos for part in parts], [part.signed_sin for part in parts],
            [part.mask for part in parts], [part.batch for part in parts],
            [part.length for part in parts], pasts, scripted.weights, scripted.int4,
            scripted.dense, wide_step, scripted.sizes, lora_a, lora_b, chosen, keys, values,
            len(parts[0].layers),
            scripted.eps, scripted.count, scripted.final_norm, scripted.heads,
            scripted.kv_heads, scripted.head_dim, scripted.scaling, scripted.folds)
        kept, start = [], 0
        for part in parts:
            for layer in part.layers:
                layer.advance(part.length)
            own = hidden[start:start + part.tokens].view(part.batch, part.length, -1)
            kept.append(own[:, -part.keep:] if part.keep else own)
            start += part.tokens
        return kept

    def _scripted_past(self, scripted: _ScriptedLayout, part: _Part) -> int | None:
        """The columns every cache layer of ``part`` holds, or None where the scripted
        layers cannot write its cache: layers that are not :class:`GrowingLayer` s, differ in
        length, hold nothing yet, or are not one a layer; a mask that is not a tensor."""
        layers = part.layers
        if len(layers) * LAYER_WEIGHTS != len(scripted.weights) or not (
                part.mask is None or isinstance(part.mask, torch.Tensor)):
            return None
        length = layers[0].length if isinstance(layers[0], GrowingLayer) else -1
        if length < 1 or any(not isinstance(layer, GrowingLayer) or layer.length != length
                             for layer in layers):
            return None
        return length

    def _prepare(self, inputs: dict[str, Any]) -> _Part:
        inner, cache = self.inner, inputs["cache"]
        position_ids = inputs["position_ids"]
        hidden = inner.embed_tokens(inputs["input_ids"])
        attention_mask = inputs["attention_mask"]
        if (hidden.shape[1] == 1 and self._no_window and attention_mask is not None
                and bool(attention_mask.all())):
            # A decode step with no padding: create_causal_mask's answer (None: SDPA needs no
            # mask for one query over a whole cache) without its ~0.2 ms of Python.
            mask = None
        else:
            mask = additive(create_causal_mask(config=inner.config, inputs_embeds=hidden,
                                               attention_mask=attention_mask, cache=cache,
                                               position_ids=position_ids), hidden.dtype)
        cos, sin = inner.rotary_emb(hidden, position_ids=position_ids)
        layers = growing_layers(cache)
        while len(layers) < len(inner.layers):  # a new cache: what Cache.update does lazily
            layers.append(cache.layer_class_to_replicate())
        batch, length = hidden.shape[:2]
        # cos/sin with a heads axis, as apply_rotary_pos_emb unsqueezes them
        half = sin.shape[-1] // 2
        signed_sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
        return _Part(hidden, mask, cos.unsqueeze(1), sin.unsqueeze(1), signed_sin.unsqueeze(1),
                     layers, batch, length,
                     int(inputs.get("logits_to_keep") or 0), bool(inputs.get("prompt")))

"""A decode step's decoder layers as one TorchScript function (:func:`decoder_layers`).

:class:`~arkor.engine.local.decode.LeanDecoder` makes a decode step's ~2,000 tensor
operations from Python: each costs its kernel plus a few microseconds of Python around it
(argument parsing, the result's wrapper, the attribute lookups and branches between them).
For the steps the engine takes most (a pass of decode rows, one column each, alone or with
a prefill slice joined to it, at int8 or int4 with the layers' projections fused), the same
computations (the same kernels on the
same operands, in the same order; the activations as ``[rows, hidden]`` views, every slice a
``narrow``) are written here once more as a TorchScript function: TorchScript's interpreter
calls each one from C++, with the GIL released for the whole step (the event loop's thread
runs meanwhile). No compiler is involved (TorchScript ships inside torch's wheel), nothing
is fused and nothing is reordered (the graph executor's optimizations are switched off for
the call), so the numbers are the Python step's, bit for bit
(``tests/engine/test_scripted.py``). Measured on a 2-core AMD EPYC: a one-row int4 step
with an adapter, output layer included, in 0.73-0.78x the Python step's time
(docs/engine.md, "A scripted decode step").

There is no ``from __future__ import annotations`` here: TorchScript reads the annotations.
"""

import logging
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

LAYER_WEIGHTS = 10
"""A layer's entries in :func:`decoder_layers`' ``weights``: the first norm's weight, the
fused q/k/v weight and scales, o's weight and scales, the second norm's weight, the fused
gate/up weight and scales, down's weight and scales."""

LAYER_PROJECTIONS = 7
"""A layer's entries in the LoRA lists: q, k, v, o, gate, up, down."""

LAYER_SIZES = 5
"""A layer's entries in ``sizes``: the q, k and v outputs, then the gate and up outputs."""

LAYER_KINDS = 4
"""A layer's entries in ``int4``, ``dense`` and ``folds``: q/k/v, o, gate/up, down
(``int4``: True for int4, False for int8; ``dense``: the product's
:class:`~arkor.engine.local.quantize.Dense` copy, packed; ``folds``: whether a wide pass
folds the product's LoRA term into it)."""


def _norm(hidden: Tensor, weight: Tensor, eps: Tensor, count: Tensor) -> Tensor:
    # decode.rms_norm's operations (LlamaRMSNorm's on the CPU)
    dtype = hidden.dtype
    wide = hidden.to(torch.float32)
    variance = wide.pow(2).sum(-1, keepdim=True).div_(count)
    wide = wide * torch.rsqrt(variance.add_(eps))
    return weight * wide.to(dtype)


def dense_product(x: Tensor, packed: Tensor) -> Tensor:
    """``x`` (``[rows, in]``, bfloat16) times a weight oneDNN packed
    (:class:`~arkor.engine.local.quantize.Dense`): the one call both the Python layers and
    this script make."""
    no_scalars: list[int | float | complex | None] = []  # no fused activation
    out: Tensor = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", no_scalars, "")
    return out


def folded_product(x: Tensor, a: Tensor, weight: Tensor, chosen: Tensor) -> Tensor:
    """A wide product with each row's own adapter's LoRA term folded into it
    (:meth:`~arkor.engine.local.mixed_lora.Stack.folded`): ``x`` (``[tokens, in]``,
    bfloat16) times the stack's ``A`` (``a``: packed, ``[sum of ranks, in]``), the columns of
    other adapters than the token's own zeroed (``chosen``: ``[tokens, sum of ranks]``,
    chosen rather than multiplied, so an adapter whose ``x @ A`` overflows reaches no other
    row), put beside ``x`` as more inputs of the layer's product, whose packed ``weight`` is
    its dense copy with ``B`` (times its scaling) as as many more input columns: the base
    product and the LoRA term in one call, ``B`` read with the weights it is added to
    (docs/engine.md, "Dense copies on AMX")."""
    xa = torch.where(chosen, dense_product(x, a), 0.0)
    return dense_product(torch.cat([x, xa], 1), weight)


def packed_queries(query: Tensor, mask: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """``query`` (``[batch, heads, length, dim]``) as ``[batch, kv_heads, groups * length,
    dim]`` (each key/value head's query heads one after another) and ``mask`` (``[batch, 1,
    length, columns]``) repeated to match (``[batch, 1, groups * length, columns]``): a
    joined prompt slice's attention on the key/value heads (``decode.attend``)."""
    batch, heads, length, dim = query.shape[0], query.shape[1], query.shape[2], query.shape[3]
    rows, columns = mask.shape[0], mask.shape[3]
    return (query.reshape(batch, heads // groups, groups * length, dim),
            mask.expand(rows, groups, length, columns).reshape(rows, 1, groups * length, columns))


def _product(x: Tensor, weight: Tensor, scales: Tensor, int4: bool, dense: list[Tensor],
             kind: int, wide: bool) -> Tensor:
    # quantize.product of ``[rows, in]``, contiguous and in the scales' dtype (what
    # kernel_input gives in a decode step; decode._scripted_layout checks the dtypes): a wide
    # pass's by the dense copy (Dense.product), else quantize.packed_product
    if wide:
        return dense_product(x, dense[kind])
    if int4:
        return torch._weight_int4pack_mm_for_cpu(x, weight, 32, scales)
    return torch._weight_int8pack_mm(x, weight, scales)


def _lora(result: Tensor, x: Tensor, a: Tensor | None, b: Tensor | None,
          chosen: Tensor | None) -> Tensor:
    # mixed_lora.add_stacked on ``[rows, in]`` (torch.matmul folds its ``[rows, 1, in]`` to
    # these very products): ``chosen`` None is the one-adapter case (its own columns)
    if a is None or b is None:
        return result
    if x.dtype != a.dtype:
        x = x.to(a.dtype)
    if chosen is None:
        result.add_(torch.mm(torch.mm(x, a), b).to(result.dtype))
        return result
    xa = torch.where(chosen, torch.mm(x, a), 0.0)
    result.add_(torch.mm(xa, b).to(result.dtype))
    return result


def _projected(x: Tensor, weight: Tensor, scales: Tensor, int4: bool, dense: list[Tensor],
               kind: int, wide: bool, fold: bool, a: Tensor | None, b: Tensor | None,
               chosen: Tensor | None) -> Tensor:
    # decode.project_as of a projection not fused: a wide pass's LoRA term folded into its
    # product where it folds (folded_product: ``a`` and ``b`` are then the stack's folded
    # forms), else added to it
    if wide and fold and a is not None and b is not None and chosen is not None:
        return folded_product(x, a, b, chosen)
    return _lora(_product(x, weight, scales, int4, dense, kind, wide), x, a, b, chosen)


def _fused(x: Tensor, weight: Tensor, scales: Tensor, int4: bool, dense: list[Tensor],
           kind: int, wide: bool, fold: bool, sizes: list[int], sized: int, parts: int,
           a: list[Tensor | None], b: list[Tensor | None], chosen: list[Tensor | None],
           first: int) -> Tensor:
    # decode.Fused.project: one product, each part's LoRA term added in place (the parts,
    # sizes[sized:sized + parts], are views of the whole; a group's one term over its span
    # at its first part, None at the others), x cast to the LoRA weights' dtype once; in a
    # wide pass where the product folds, the (one) stack's term folded in (folded_product)
    if wide and fold:
        for index in range(parts):
            own_a = a[first + index]
            own_b = b[first + index]
            own_chosen = chosen[first + index]
            if own_a is not None and own_b is not None and own_chosen is not None:
                return folded_product(x, own_a, own_b, own_chosen)
    out = _product(x, weight, scales, int4, dense, kind, wide)
    lora_input = x
    start = 0
    for index in range(parts):
        own_a = a[first + index]
        own_b = b[first + index]
        if own_a is not None and own_b is not None:
            if lora_input.dtype != own_a.dtype:
                lora_input = x.to(own_a.dtype)
            # B's columns from this part's: its own, or a group's span (mixed_lora.Share)
            _lora(out.narrow(1, start, own_b.shape[1]), lora_input, own_a, own_b,
                  chosen[first + index])
        start += sizes[sized + index]
    return out


def _qkv(hidden: Tensor, weights: list[Tensor], int4: list[bool], dense: list[Tensor],
         wide: bool, folds: list[bool], sizes: list[int], lora_a: list[Tensor | None],
         lora_b: list[Tensor | None], lora_chosen: list[Tensor | None], layer: int,
         eps: Tensor, count: Tensor) -> Tensor:
    # A layer's first norm and its fused q/k/v product with their LoRA terms. The offsets:
    # LAYER_WEIGHTS, LAYER_KINDS, LAYER_SIZES and LAYER_PROJECTIONS (TorchScript reads no
    # global number; it inlines these functions)
    w = layer * 10
    return _fused(_norm(hidden, weights[w], eps, count), weights[w + 1], weights[w + 2],
                  int4[layer * 4], dense, layer * 4, wide, folds[layer * 4], sizes, layer * 5, 3,
                  lora_a, lora_b, lora_chosen, layer * 7)


def _rest_of_layer(residual: Tensor, attended: Tensor, weights: list[Tensor],
                   int4: list[bool], dense: list[Tensor], wide: bool, folds: list[bool],
                   sizes: list[int], lora_a: list[Tensor | None],
                   lora_b: list[Tensor | None], lora_chosen: list[Tensor | None], layer: int,
                   eps: Tensor, count: Tensor) -> Tensor:
    # A layer after its attention: o (and the residual), the second norm, gate/up, down (and
    # the residual); the offsets as in _qkv
    w = layer * 10
    p = layer * 7
    s = layer * 5
    kind = layer * 4
    hidden = residual + _projected(
        attended, weights[w + 3], weights[w + 4], int4[kind + 1], dense, kind + 1, wide,
        folds[kind + 1], lora_a[p + 3], lora_b[p + 3], lora_chosen[p + 3])
    residual = hidden
    hidden = _norm(hidden, weights[w + 5], eps, count)
    gate_up = _fused(hidden, weights[w + 6], weights[w + 7], int4[kind + 2], dense, kind + 2,
                     wide, folds[kind + 2], sizes, s + 3, 2, lora_a, lora_b, lora_chosen, p + 4)
    middle = sizes[s + 3]
    gated = (torch.nn.functional.silu(gate_up.narrow(1, 0, middle))
             * gate_up.narrow(1, middle, sizes[s + 4]))
    return residual + _projected(
        gated, weights[w + 8], weights[w + 9], int4[kind + 3], dense, kind + 3, wide,
        folds[kind + 3], lora_a[p + 6], lora_b[p + 6], lora_chosen[p + 6])


def _attend(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, batch: int,
            length: int, heads: int, kv_heads: int, head_dim: int,
            scaling: float) -> Tensor:
    # One pass's attention, ``[batch * length, heads * head_dim]``: a decode pass's as
    # decode.attend computes it (the query packed onto the key/value heads), a prompt slice's
    # as transformers' sdpa_attention_forward does on the CPU (no mask: SDPA's grouped heads
    # and causal mask, the keys cut to the queries; a mask shared by the heads: the queries
    # packed as decode.attend packs a joined pass's (a slice here is always joined to a
    # decode step); another mask: the key/value heads repeated)
    groups = heads // kv_heads
    if length == 1:
        out = torch.nn.functional.scaled_dot_product_attention(
            query.reshape(batch, kv_heads, groups, head_dim), key, value, attn_mask=mask,
            dropout_p=0.0, scale=scaling)
        # [batch, kv_heads, groups, head_dim] is already [batch, heads * head_dim]'s order
        return out.reshape(batch, -1)
    if mask is None:
        if key.shape[2] > length:
            key = key.narrow(2, 0, length)
            value = value.narrow(2, 0, length)
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=None, dropout_p=0.0, scale=scaling, is_causal=True,
            enable_gqa=True)
    elif mask.shape[1] == 1:
        # as decode.attend packs a joined slice (_scripted leaves TRANSFORMERS_SDPA_FORCE_GQA
        # to the Python layers)
        packed, repeated = packed_queries(query, mask, groups)
        out = torch.nn.functional.scaled_dot_product_attention(
            packed, key, value, attn_mask=repeated, dropout_p=0.0, scale=scaling,
            is_causal=False)
    else:
        columns = key.shape[2]
        key = key.unsqueeze(2).expand(batch, kv_heads, groups, columns, head_dim).reshape(
            batch, heads, columns, head_dim)
        value = value.unsqueeze(2).expand(batch, kv_heads, groups, columns, head_dim).reshape(
            batch, heads, columns, head_dim)
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=0.0, scale=scaling, is_causal=False)
    out = out.reshape(out.shape[0], -1, length, head_dim).transpose(1, 2).contiguous()
    return out.reshape(batch * length, -1)


def decoder_layers(hidden: Tensor, cos: list[Tensor], signed_sin: list[Tensor],
                  masks: list[Tensor | None], batches: list[int], lengths: list[int],
                  past: list[int], weights: list[Tensor], int4: list[bool],
                  dense: list[Tensor], wide: bool, sizes: list[int],
                  lora_a: list[Tensor | None], lora_b: list[Tensor | None],
                  lora_chosen: list[Tensor | None], keys: list[Tensor], values: list[Tensor],
                  layers: int, eps: Tensor, count: Tensor, final_norm: Tensor, heads: int,
                  kv_heads: int, head_dim: int, scaling: float, folds: list[bool]) -> Tensor:
    """The decoder's output (after its last norm, ``[tokens, hidden]``) for one or more
    passes as one (a decode step's rows, and a prefill slice's joined to it: chunked
    prefill), as ``LeanDecoder.hidden_states`` computes it: their embedded tokens stacked in
    ``hidden`` (``[tokens, hidden]``, pass after pass: pass ``i`` has ``batches[i]`` rows of
    ``lengths[i]`` columns), every projection over all of them, attention pass by pass over
    each one's own cache (``keys[i * layers + layer]``, which has room for its columns,
    written from column ``past[i]``) with its own rotary tables and mask (None: no padding).
    A LoRA stack's ``lora_chosen``: ``[tokens, its columns]``. ``wide``: every product by
    its ``dense`` copy (:data:`~arkor.engine.local.quantize.DENSE_ROWS` tokens or more, where
    the layers keep copies; ``dense`` is empty where they keep none), with the LoRA terms
    folded into the products where ``folds`` says (one flag a product, as ``int4``;
    ``lora_a`` and ``lora_b`` are the stacks' folded forms there, :func:`folded_product`)."""
    rotated = (heads + kv_heads) * head_dim
    for layer in range(layers):
        s = layer * 5
        residual = hidden
        qkv = _qkv(hidden, weights, int4, dense, wide, folds, sizes, lora_a, lora_b,
                   lora_chosen, layer, eps, count)
        attended: list[Tensor] = []
        start = 0
        for part in range(len(batches)):
            batch, length = batches[part], lengths[part]
            tokens = batch * length
            rows = qkv if len(batches) == 1 else qkv.narrow(0, start, tokens)
            value = rows.narrow(1, rotated, sizes[s + 2]).view(
                batch, length, -1, head_dim).transpose(1, 2)
            both = rows.narrow(1, 0, rotated).view(batch, length, -1, head_dim).transpose(1, 2)
            both = (both * cos[part]) + (both.roll(head_dim // 2, -1) * signed_sin[part])
            key_buffer, value_buffer = keys[part * layers + layer], values[part * layers + layer]
            key_buffer.narrow(2, past[part], length).copy_(both.narrow(1, heads, kv_heads))
            value_buffer.narrow(2, past[part], length).copy_(value)
            end = past[part] + length
            attended.append(_attend(both.narrow(1, 0, heads), key_buffer.narrow(2, 0, end),
                                    value_buffer.narrow(2, 0, end), masks[part], batch, length,
                                    heads, kv_heads, head_dim, scaling))
            start += tokens
        joined = attended[0] if len(attended) == 1 else torch.cat(attended)
        hidden = _rest_of_layer(residual, joined, weights, int4, dense, wide, folds, sizes,
                                lora_a, lora_b, lora_chosen, layer, eps, count)
    return _norm(hidden, final_norm, eps, count)


_SCRIPTED: list[Callable[..., Tensor] | None] = []


def scripted_decoder_layers() -> Callable[..., Tensor] | None:
    """:func:`decoder_layers` compiled by TorchScript (once a process: ~30 ms); None, logged
    once, where TorchScript cannot compile it (decode steps then take the Python layers)."""
    if not _SCRIPTED:
        try:
            with warnings.catch_warnings():
                # torch 2.13 marks torch.jit.script deprecated (docs/engine.md, "A scripted
                # decode step", says why it is used and what replaces it)
                warnings.simplefilter("ignore", DeprecationWarning)
                _SCRIPTED.append(torch.jit.script(decoder_layers))
        except Exception as exc:  # no TorchScript here: the Python layers serve
            logger.warning("decode steps take the Python layers: TorchScript could not "
                           "compile the scripted step (%s: %s)", type(exc).__name__, exc)
            _SCRIPTED.append(None)
    return _SCRIPTED[0]


def run_unoptimized(function: Callable[..., Tensor], *args: object) -> Tensor:
    """``function(*args)`` with the graph executor's optimizations off on this thread (a
    thread's setting): the graph runs as written, never specialized, fused or reordered."""
    if torch._C._get_graph_executor_optimize():
        torch._C._set_graph_executor_optimize(False)
    out: Tensor = function(*args)
    return out

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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from transformers.integrations.sdpa_attention import pack_gqa, sdpa_attention_forward
from transformers.masking_utils import create_causal_mask
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, rotate_half

from arkor.engine.local.batch import growing_layers
from arkor.engine.local.mixed_lora import PEFT_PATH, RowAdapters, Stack, add_stacked, plan_of
from arkor.engine.local.quantize import (
    INT4_GROUP,
    Int4Linear,
    Int8Linear,
    release_free_memory,
)

ARCHITECTURES = frozenset({"LlamaForCausalLM"})
_rotate_half = cast(Callable[[torch.Tensor], torch.Tensor], rotate_half)  # untyped upstream


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

    @classmethod
    def of(cls, modules: list[Any]) -> Fused | None:
        """``modules``' weights fused, or None when they are not all bias-free
        :class:`Int8Linear` s (or all :class:`Int4Linear` s) of the same input (each is then
        computed as before, alone)."""
        bases: list[Any] = [m.base_layer if isinstance(m, LoraLinear) else m for m in modules]
        kinds = {type(b) for b in bases}
        if (len(kinds) != 1 or not kinds <= {Int8Linear, Int4Linear}
                or any(b.bias is not None for b in bases)):
            return None
        int4 = kinds == {Int4Linear}
        scales = [b.scales_and_zeros if int4 else b.scales for b in bases]
        if len({(b.in_features, s.dtype) for b, s in zip(bases, scales, strict=True)}) != 1:
            return None
        fused = cls(torch.cat([b.weight for b in bases]), torch.cat(scales, dim=1 if int4 else 0),
                    [b.out_features for b in bases], int4)
        start = 0
        for base, size in zip(bases, fused.sizes, strict=True):
            base.weight = torch.nn.Parameter(fused.weight[start:start + size],
                                             requires_grad=False)
            if int4:
                base.scales_and_zeros = fused.scales[:, start:start + size]
            else:
                base.scales = fused.scales[start:start + size]
            start += size
        return fused

    def project(self, modules: list[Any], x: torch.Tensor,
                rows: RowAdapters | None) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """``[project(m, x, rows) for m in modules]``, the base products from one kernel
        call (each output column is the same dot product as in its own module's); and that
        call's whole output ``[..., sum of outputs]``, of which the parts are views, unless
        a module had to be called on its own (None)."""
        flat = x.reshape(-1, x.shape[-1]).to(self.scales.dtype).contiguous()
        if self.int4:
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.weight, INT4_GROUP,
                                                             self.scales)
        else:
            out = torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scales)
        out = out.reshape(*x.shape[:-1], -1)
        found, intact = [], True
        for module, part in zip(modules, out.split(self.sizes, dim=-1), strict=True):
            plan = lora_plan(module, rows)
            if isinstance(plan, str):  # the module itself (PEFT's path, or adapters off)
                part, intact = module(x), False
            elif plan is not None:
                part = add_stacked(part, x, plan, rows)  # in place: still a view of ``out``
            found.append(part)
        return found, out if intact else None


def lora_plan(module: Any, rows: RowAdapters | None) -> Stack | str | None:
    """How a projection serves this pass: None (its base projection alone: not a LoRA
    layer, or no row's adapter is on it), its :class:`Stack` (the base projection plus
    :func:`add_stacked`), or a string: called as a module (PEFT's own path, or its adapters
    switched off or merged)."""
    if not isinstance(module, LoraLinear):
        return None
    if module.disable_adapters or module.merged:
        return PEFT_PATH
    return plan_of(module, rows)


def project(module: Any, x: torch.Tensor, rows: RowAdapters | None) -> torch.Tensor:
    """``module(x)`` for a projection: a LoRA layer as its mixed-batch forward computes it
    (the base projection, then every row's own adapter from the stacked weights), anything
    else (a Linear, an int8 Linear, a LoRA layer on PEFT's path) by calling it."""
    plan = lora_plan(module, rows)
    if isinstance(plan, str):
        out: torch.Tensor = module(x)
        return out
    result: torch.Tensor = (module.base_layer if isinstance(module, LoraLinear) else module)(x)
    return result if plan is None else add_stacked(result, x, plan, rows)


def attend(attention: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
           mask: Any) -> torch.Tensor:
    """``sdpa_attention_forward``'s output (``[batch, length, heads, head_dim]``), with one
    change: a decode step's single query always runs on the key/value heads (its heads packed
    as ``groups`` queries of each key/value head, as transformers does only when there is a
    mask). Without a mask transformers asks SDPA for ``enable_gqa``, which on the CPU took
    4-5x as long from a few rows up (16 rows, 78 columns: ~1,000 against ~200 us; the same
    ~16 us at one row); the packed call gives the masked packed call's numbers bit for bit,
    so a row computes the same alone (no mask) as in a padded batch."""
    groups = getattr(attention, "num_key_value_groups", 1)
    batch, heads, length, dim = query.shape
    if length != 1 or groups == 1:
        out: torch.Tensor = sdpa_attention_forward(attention, query, key, value, mask,
                                                   dropout=0.0, scaling=attention.scaling)[0]
        return out
    # transformers' own packing (pack_gqa), as its masked call makes it: query and mask alike
    packed = torch.nn.functional.scaled_dot_product_attention(
        cast(torch.Tensor, pack_gqa(query, groups)), key, value,
        attn_mask=pack_gqa(mask, groups), dropout_p=0.0, scale=attention.scaling)
    return packed.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous()


@dataclass
class _Part:
    """One forward pass's inputs, prepared for the layers: its embedded tokens, attention
    mask, rotary embeddings and cache layers."""

    hidden: torch.Tensor  # [batch, length, hidden]
    mask: Any
    cos: torch.Tensor
    sin: torch.Tensor
    layers: list[Any]
    batch: int
    length: int
    keep: int  # logits_to_keep: 0 for every column

    @property
    def tokens(self) -> int:
        return self.batch * self.length


class LeanDecoder:
    """The forward pass of one loaded causal LM (see the module's docstring)."""

    def __init__(self, causal_lm: Any) -> None:
        self.lm = causal_lm
        self.inner = causal_lm.model  # LlamaModel: embeddings, layers, norm, rotary_emb
        self.fused = [(Fused.of([layer.self_attn.q_proj, layer.self_attn.k_proj,
                                 layer.self_attn.v_proj]),
                       Fused.of([layer.mlp.gate_proj, layer.mlp.up_proj]))
                      for layer in self.inner.layers]
        if any(pair != (None, None) for pair in self.fused):
            release_free_memory()  # the modules' own int8 weights, replaced by views

    @torch.inference_mode()
    def step(self, rows: RowAdapters | None, inputs: dict[str, Any]) -> Logits:
        """The model's forward over ``inputs`` (``input_ids`` ``[rows, columns]``, their
        ``attention_mask``, ``position_ids`` and growing ``cache``, and ``logits_to_keep``):
        the logits of every column, or of the last ``logits_to_keep``, as the model's own
        forward gives them, and the cache grown by the columns."""
        [hidden] = self.hidden_states(rows, [inputs])
        return Logits(project(self.lm.lm_head, hidden, rows))

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
        parts = [self._prepare(inputs) for inputs in passes]
        single = len(parts) == 1
        hidden = (parts[0].hidden if single else
                  torch.cat([part.hidden.reshape(part.tokens, 1, -1) for part in parts]))
        for index, layer in enumerate(self.inner.layers):
            attention, mlp = layer.self_attn, layer.mlp
            residual = hidden
            hidden = layer.input_layernorm(hidden)
            qkv, gate_up = self.fused[index]
            projections = [attention.q_proj, attention.k_proj, attention.v_proj]
            outputs, whole = (qkv.project(projections, hidden, rows) if qkv is not None
                              else ([project(m, hidden, rows) for m in projections], None))
            attended, start = [], 0
            for part in parts:
                shape = (part.batch, part.length, -1, attention.head_dim)

                def heads(t: torch.Tensor, part: _Part = part, start: int = start,
                          shape: tuple[int, ...] = shape) -> torch.Tensor:
                    """This pass's ``[batch, heads, length, head_dim]`` of a projection."""
                    own = t if single else t[start:start + part.tokens]
                    return own.view(shape).transpose(1, 2)

                value = heads(outputs[2])
                if whole is not None and qkv is not None:
                    # q and k side by side in one output: apply_rotary_pos_emb's arithmetic
                    # (elementwise) once over both, then split by heads.
                    both = heads(whole[..., : qkv.sizes[0] + qkv.sizes[1]])
                    both = (both * part.cos) + (_rotate_half(both) * part.sin)
                    query, key = torch.split(both, [qkv.sizes[0] // attention.head_dim,
                                                    qkv.sizes[1] // attention.head_dim], dim=1)
                else:
                    query, key = apply_rotary_pos_emb(heads(outputs[0]), heads(outputs[1]),
                                                      part.cos.squeeze(1), part.sin.squeeze(1))
                key, value = part.layers[index].update(key, value)
                out = attend(attention, query, key, value, part.mask)
                attended.append(out.reshape(part.batch, part.length, -1).contiguous()
                                if single else out.reshape(part.tokens, 1, -1))
                start += part.tokens
            joined = attended[0] if single else torch.cat(attended)
            hidden = residual + project(attention.o_proj, joined, rows)
            residual = hidden
            hidden = layer.post_attention_layernorm(hidden)
            projections = [mlp.gate_proj, mlp.up_proj]
            gate, up = (gate_up.project(projections, hidden, rows)[0] if gate_up is not None
                        else [project(m, hidden, rows) for m in projections])
            gated = mlp.act_fn(gate) * up
            hidden = residual + project(mlp.down_proj, gated, rows)
        hidden = self.inner.norm(hidden)
        kept, start = [], 0
        for part in parts:
            own = hidden if single else hidden[start:start + part.tokens].view(
                part.batch, part.length, -1)
            kept.append(own[:, -part.keep:] if part.keep else own)
            start += part.tokens
        return kept

    def _prepare(self, inputs: dict[str, Any]) -> _Part:
        inner, cache = self.inner, inputs["cache"]
        position_ids = inputs["position_ids"]
        hidden = inner.embed_tokens(inputs["input_ids"])
        mask = create_causal_mask(config=inner.config, inputs_embeds=hidden,
                                  attention_mask=inputs["attention_mask"], cache=cache,
                                  position_ids=position_ids)
        cos, sin = inner.rotary_emb(hidden, position_ids=position_ids)
        layers = growing_layers(cache)
        while len(layers) < len(inner.layers):  # a new cache: what Cache.update does lazily
            layers.append(cache.layer_class_to_replicate())
        batch, length = hidden.shape[:2]
        # cos/sin with a heads axis, as apply_rotary_pos_emb unsqueezes them
        return _Part(hidden, mask, cos.unsqueeze(1), sin.unsqueeze(1), layers, batch, length,
                     int(inputs.get("logits_to_keep") or 0))

"""Applying an engine precision to a loaded base model (see :mod:`arkor.engine.precision`).

``int8`` replaces each ``nn.Linear`` of the base model, ``lm_head`` included, by an
:class:`Int8Linear`: symmetric int8 weights with one scale per output channel, multiplied by
torch's packed CPU kernel ``aten._weight_int8pack_mm(x, w_int8[out, in], scales[out])``. That
kernel is fast only with bfloat16 activations (with float32 ones it was 6-18x slower than a
float32 matmul on this project's machine), so the rest of the model runs in bfloat16.

``int4`` replaces them (``lm_head`` excepted, which is int8) by an :class:`Int4Linear`: 4-bit
levels in groups of 32 with a scale and a minimum, on ``aten._weight_int4pack_mm_for_cpu``.

At both, the output layer (``lm_head``) multiplies its int8 weights by
:func:`integer_product` instead of the packed kernel: exact integer sums over activations on
a 15-bit fixed point, whose cost grows little with the rows of a step, on oneDNN's int8
kernel with the weights packed once (:func:`onednn_packed`) where its sums are exact here,
else on ``torch._int_mm`` where that is fast here (:func:`int_mm_is_fast`); on a CPU where
neither is (no AVX-512 VNNI: ``_int_mm`` is a plain loop there, ~10x the packed kernel's
time) it keeps the packed kernel.

On a CPU with AMX (:func:`dense_copies_default`) each quantized layer but ``lm_head`` also
keeps ``dense``: the weight it computes with, dequantized to bfloat16 and packed once for
oneDNN's matrix product (:class:`Dense`). A product of :data:`DENSE_ROWS` rows or more (a
prompt slice, a wide decode step) is taken on it, a narrower one on the packed kernel
(:func:`product`): the packed kernels cost about the same *per row* as for one row (21 us a
row for a 3072 x 576 product at 2 threads, linear in the rows), where AMX's bfloat16 product
costs about the same for 16 rows as for one (docs/engine.md, "Dense copies on AMX").

``Int8Linear`` is an ``nn.Linear`` subclass, so PEFT wraps it like any Linear: a LoRA layer's
``base_layer`` is the quantized module, and since its weight is not floating point PEFT keeps
the adapter's own weights in float32 (the LoRA delta is computed in float32 and added to the
bfloat16 base output).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import mmap
import time
from dataclasses import dataclass
from typing import Any

import torch

from arkor.engine.local.scripted import dense_product
from arkor.engine.precision import resolve_precision

logger = logging.getLogger(__name__)

INT8_MAX = 127.0

PACKED_BLOCK_ROWS = 4
"""Rows torch's packed int8/int4 CPU kernels compute together: a product of 5 to 8 rows
costs about what one of 8 does, 9 to 12 what one of 12 does (3072 x 576 at int4 on a 2-core
AMD EPYC: 334, 326; 476, 490 us; docs/engine.md, "Slice size")."""


def block_rows(precision: str, device: torch.device) -> int:
    """Rows the matrix kernels of a model at ``precision`` (resolved) on ``device`` compute
    together: :data:`PACKED_BLOCK_ROWS` for the packed CPU kernels, else 1."""
    return PACKED_BLOCK_ROWS if precision in ("int8", "int4") and device.type == "cpu" else 1


class Int8Linear(torch.nn.Linear):
    """A Linear with int8 weights (``weight``, not trainable) and per-row ``scales``;
    ``integer``: multiplied by :func:`integer_product` (the model's output layer, where an
    integer product is fast here: :func:`quantize_linears`)."""

    scales: torch.Tensor
    dense: Dense | None = None  # the bfloat16 copy wide products take (keep_dense)
    integer: bool = False
    # The output layer's weights as oneDNN packs them (:func:`onednn_packed`), or None
    onednn: torch.Tensor | None = None

    def __init__(self, linear: torch.nn.Linear) -> None:
        torch.nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().float()
        scales = (weight.abs().amax(dim=1) / INT8_MAX).clamp(min=torch.finfo(torch.float32).tiny)
        quantized = weight / scales[:, None]  # one float32 temporary, rounded in place
        quantized.round_().clamp_(-INT8_MAX, INT8_MAX)
        self.weight = torch.nn.Parameter(quantized.to(torch.int8).contiguous(),
                                         requires_grad=False)
        del quantized
        # Float32 until the model is cast: activations must come in the scales' dtype.
        self.register_buffer("scales", scales)
        bias = linear.bias
        self.bias = (None if bias is None
                     else torch.nn.Parameter(bias.detach().float(), requires_grad=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        out = (integer_product(x.reshape(-1, self.in_features), self.weight, self.scales,
                               self.onednn)
               if self.integer else
               product(kernel_input(x, self.in_features, self.scales.dtype), self.weight,
                       self.scales, self.dense, int4=False))
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*shape[:-1], self.out_features)

    def dequantized(self) -> torch.Tensor:
        """The float32 weight this module computes with."""
        return self.weight.float() * self.scales.float()[:, None]

    def bfloat16_weight(self) -> torch.Tensor:
        """:meth:`dequantized` in bfloat16 (what :func:`keep_dense` packs)."""
        return self.dequantized().to(torch.bfloat16)


INT4_GROUP = 32  # weights per scale and zero: a GGUF Q4_0/Q4_1 block
INT4_LEVELS = 15.0


class Int4Linear(torch.nn.Linear):
    """A Linear with 4-bit weights in groups of :data:`INT4_GROUP` along the input, each group
    with its own scale and minimum (asymmetric, as GGUF's Q4_1 blocks), packed for torch's CPU
    kernel ``aten._weight_int4pack_mm_for_cpu``. A Q4_1 model's dequantized weights (what the
    embedded model's float32 weights are) come back exactly, up to the bfloat16 rounding of
    each group's scale and zero point."""

    scales_and_zeros: torch.Tensor
    dense: Dense | None = None  # the bfloat16 copy wide products take (keep_dense)

    def __init__(self, linear: torch.nn.Linear) -> None:
        torch.nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().float()
        groups = weight.reshape(self.out_features, -1, INT4_GROUP)
        low = groups.amin(dim=-1)
        scales = ((groups.amax(dim=-1) - low) / INT4_LEVELS).clamp(
            min=torch.finfo(torch.float32).tiny)
        levels = ((groups - low[..., None]) / scales[..., None]).round_().clamp_(0, INT4_LEVELS)
        del groups
        self.weight = torch.nn.Parameter(
            torch.ops.aten._convert_weight_to_int4pack_for_cpu(
                levels.reshape(self.out_features, -1).to(torch.int32).contiguous(), 2),
            requires_grad=False)
        del levels
        # The kernel computes (level - 8) * scale + zero: the zero is the value of level 8.
        zeros = low + scales * 8
        self.register_buffer("scales_and_zeros", torch.stack([scales, zeros], dim=-1)
                             .transpose(0, 1).contiguous().to(torch.bfloat16))
        bias = linear.bias
        self.bias = (None if bias is None
                     else torch.nn.Parameter(bias.detach().float(), requires_grad=False))

    @staticmethod
    def fits(linear: torch.nn.Linear) -> bool:
        """The kernel's shapes: whole groups along the input, outputs a multiple of 16."""
        return linear.in_features % INT4_GROUP == 0 and linear.out_features % 16 == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        # Contiguous: the scales may be a view of a fused layer's (decode.Fused), and the
        # kernel reads strided scales wrongly, without an error.
        out = product(kernel_input(x, self.in_features, self.scales_and_zeros.dtype),
                      self.weight, self.scales_and_zeros.contiguous(), self.dense, int4=True)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*shape[:-1], self.out_features)

    def dequantized(self) -> torch.Tensor:
        """The weight this module computes with, as float32: the kernel applied to the identity
        (so each value is rounded to bfloat16, as the kernel's outputs are)."""
        eye = torch.eye(self.in_features, dtype=self.scales_and_zeros.dtype)
        columns = packed_product(eye, self.weight, self.scales_and_zeros.contiguous(), int4=True)
        return columns.float().T.contiguous()

    def bfloat16_weight(self) -> torch.Tensor:
        """:meth:`dequantized` in bfloat16 (what :func:`keep_dense` packs): worked out from
        the packed levels (:func:`unpacked_levels`, :func:`kernel_weight`) where
        :func:`reads_int4_packing` says they are read right, else the kernel's products
        with the identity (~1.4 s for the embedded model's 210 layers, against ~0.2 s)."""
        if reads_int4_packing(self.out_features, self.in_features):
            levels = unpacked_levels(self.weight, self.out_features)
            return kernel_weight(levels, self.scales_and_zeros.contiguous()).reshape(
                self.out_features, -1).to(torch.bfloat16)
        return self.dequantized().to(torch.bfloat16)


INT4_BLOCK = 64
"""Outputs a block of ``_convert_weight_to_int4pack_for_cpu``'s layout (AVX-512): for each
block, each input column's 32 bytes hold the block's first 32 outputs' levels in their low
halves and the next 32's in their high halves."""


def unpacked_levels(packed: torch.Tensor, outputs: int) -> torch.Tensor:
    """The 4-bit levels (``[outputs, groups, INT4_GROUP]``, as float32) of a weight
    ``_convert_weight_to_int4pack_for_cpu`` packed (``[outputs, in / 2]`` bytes) in its
    AVX-512 layout (:data:`INT4_BLOCK`); ``outputs`` a multiple of the block."""
    inputs = packed.shape[1] * 2
    blocks = packed.view(outputs // INT4_BLOCK, inputs, INT4_BLOCK // 2)
    levels = torch.cat([blocks & 15, blocks >> 4], dim=2)  # [blocks, in, INT4_BLOCK]
    return levels.transpose(1, 2).reshape(outputs, -1, INT4_GROUP).float()


_READS: dict[tuple[int, int], bool] = {}  # reads_int4_packing's answers, by shape
_ARITHMETIC: list[bool] = []  # whether kernel_weight is the kernel's arithmetic here


def reads_int4_packing(outputs: int, inputs: int) -> bool:
    """Whether :func:`unpacked_levels` and :func:`kernel_weight` give the weights the int4
    kernel computes with for a layer of this shape, here: its outputs in whole blocks, and
    checked once a process for each shape on random levels packed by torch (read back as
    packed), and once on a small layer of random levels, scales and zeros against the
    kernel's own products with the identity, bit for bit. Where either fails (a torch or a
    CPU that packs or computes otherwise) the products with the identity serve, as before,
    and the log says so once."""
    if outputs % INT4_BLOCK:
        return False
    shape = (outputs, inputs)
    if shape not in _READS:
        generator = torch.Generator().manual_seed(0)
        if not _ARITHMETIC:  # once: a layer of 64 x 64
            levels = torch.randint(0, 16, (INT4_BLOCK, INT4_BLOCK), generator=generator)
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
                levels.to(torch.int32), 2)
            pairs = (torch.rand(INT4_BLOCK // INT4_GROUP, INT4_BLOCK, 2, generator=generator)
                     - 0.5).to(torch.bfloat16)
            eye = torch.eye(INT4_BLOCK, dtype=torch.bfloat16)
            kernel = packed_product(eye, packed, pairs, int4=True).T
            read = kernel_weight(unpacked_levels(packed, INT4_BLOCK), pairs).reshape(
                INT4_BLOCK, INT4_BLOCK).to(torch.bfloat16)
            _ARITHMETIC.append(torch.equal(read, kernel))
        levels = torch.randint(0, 16, shape, generator=generator, dtype=torch.int32)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(levels, 2)
        _READS[shape] = _ARITHMETIC[0] and torch.equal(
            unpacked_levels(packed, outputs).reshape(shape), levels.float())
        if not _READS[shape]:
            logger.info("int4 dense copies of %d x %d take the kernel's products with the "
                        "identity: its packing is not the one read here", outputs, inputs)
    return _READS[shape]


def kernel_weight(levels: torch.Tensor, scales_and_zeros: torch.Tensor) -> torch.Tensor:
    """The float32 weights ``_weight_int4pack_mm_for_cpu`` computes with, from the 4-bit
    ``levels`` (``[outputs, groups, INT4_GROUP]``, as floats) and the ``scales_and_zeros``
    it is given (``[groups, outputs, 2]``, contiguous): ``(level - 8) * scale + zero``, each
    scale and zero a bfloat16. The product of a level (4 bits) and a scale (8 significant
    bits) is exact in float32, so the sum rounds once, as the kernel's fused multiply-add
    does: the same numbers bit for bit (``tests/engine/test_precision.py``)."""
    pairs = scales_and_zeros.float().transpose(0, 1)  # [outputs, groups, 2]
    return (levels - 8).mul_(pairs[..., 0:1]).add_(pairs[..., 1:2])


def kernel_input(x: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
    """``x`` as the packed kernels take it: ``[tokens, width]``, contiguous, in ``dtype``
    (cast and copied only where needed: in a decode step it already is)."""
    flat = x.reshape(-1, width)
    if flat.dtype != dtype:
        flat = flat.to(dtype)
    return flat if flat.is_contiguous() else flat.contiguous()


def packed_product(flat: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor, *,
                   int4: bool) -> torch.Tensor:
    """``flat @ weight.T`` by torch's packed CPU kernel: int8 weights with per-row ``scales``,
    or packed int4 weights in groups of :data:`INT4_GROUP` with contiguous scales and zeros."""
    # torch's own Python bindings of the two aten operations, not ``torch.ops.aten``'s: the
    # same kernels, ~2-3 us less per call (121 calls a decode step).
    out: torch.Tensor = (
        torch._weight_int4pack_mm_for_cpu(flat, weight, INT4_GROUP, scales) if int4
        else torch._weight_int8pack_mm(flat, weight, scales))
    return out


FIXED_POINT_STEPS = 127 * 128
"""An activation row's largest magnitude in :func:`integer_product`'s steps: 15 bits, two
int8 halves."""
_TINY = torch.finfo(torch.float32).tiny
_INT32_COMBINED = (2**31 - 1) // (127 * 127 * 128 + 64 * 127)
"""Inputs up to which ``128 * high + low`` sums cannot overflow int32 (1,036)."""


def integer_product(flat: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor,
                    onednn: torch.Tensor | None = None) -> torch.Tensor:
    """``flat @ (weight * scales[:, None]).T`` for int8 ``weight`` ``[out, in]`` and float
    ``scales`` ``[out]``, in integers: each row of ``flat`` is put on a fixed point of its
    own (its largest magnitude :data:`FIXED_POINT_STEPS` steps: 15 bits, where a bfloat16
    activation has 8), split into two int8 halves (``high * 128 + low``, ``low`` within
    +-64), and both halves of every row are multiplied by the weights in one integer matrix
    product, whose int32 sums are exact; they are combined and scaled in float32.

    The product is oneDNN's (``onednn``: the same weights as :func:`onednn_packed` packs
    them, the halves shifted into unsigned bytes) or else ``torch._int_mm``'s. The two give
    the same numbers bit for bit: oneDNN's sums come out as float32 and a half's sum (at most
    ``127 * 127 * in``) is an exact float up to 1,040 inputs, so ``128 * high + low`` rounds
    once, as the int32 total does when it is scaled; past 1,036 inputs the int32 path
    combines in float32 too, from the same sums. oneDNN keeps the weights in the blocked
    layout its kernel reads, where ``_int_mm`` repacks them at every call: the embedded
    model's 49,152 x 576 output layer for one row (two halves) in ~1.6-1.7 ms against
    ~2.4 ms, for 16 rows in ~2.0 against ~3.2 ms (docs/engine.md, "The output layer at int8
    and int4").

    The output layer's product at int8 and int4. Exact sums make a row's outputs the same
    whatever rows share the call, bit for bit, and the kernel reads the weights once for all
    of them, where torch's packed int8 kernel costs about one row's time per row: for the
    embedded model's 49,152 x 576 output layer on a 2-core AMD EPYC, 1.7 ms for one row, 2.6
    for 4, 5.3 for 8 and 10.8 for 16, against 2.0, 2.9, 4.1 and 5.3 ms by ``_int_mm``. Its
    outputs are nearer the exact product than the packed kernel's, which rounds them to
    bfloat16. Float32 out."""
    rows = flat.shape[0]
    values = flat.float()
    # A row of zeros gets the smallest step (its levels and outputs are zeros); NaN or an
    # infinity leaves its row's step, and so its outputs, not finite, as a float product's.
    step = values.abs().amax(dim=1, keepdim=True).clamp_(min=_TINY).div_(FIXED_POINT_STEPS)
    levels = torch.div(values, step).round_()
    high = levels.mul(1 / 128).round_()
    low = levels.add_(high, alpha=-128)
    halves = torch.cat([high, low])
    if onednn is not None:
        sums = onednn_sums(halves, onednn)
        # low + 128 * high, in one pass: the product by 128 is exact, the sum rounds once
        total = sums[rows:].add_(sums[:rows], alpha=128)
    else:
        sums = torch._int_mm(halves.to(torch.int8), weight.t())
        if weight.shape[1] <= _INT32_COMBINED:
            total = torch.add(sums[rows:], sums[:rows], alpha=128)  # exact
        else:
            total = sums[:rows].float().mul_(128).add_(sums[rows:])
    return total.mul(step).mul_(scales)


ONEDNN_ZERO_POINT = 128
"""What :func:`integer_product` adds to its int8 halves to give oneDNN unsigned bytes (the
kernel's zero point): its int8 x int8 product runs only on a reference path, ~300x slower."""
_ONE = torch.ones(())
_ZERO = torch.zeros((), dtype=torch.int64)


def onednn_sums(levels: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """``levels @ weight.T`` as float32, for float ``levels`` holding whole numbers within
    +-127 (taken in place) and the int8 weights :func:`onednn_packed` packed: oneDNN's exact
    int32 sums, converted once."""
    shifted = levels.add_(ONEDNN_ZERO_POINT).to(torch.uint8)
    sums: torch.Tensor = torch.ops.onednn.qlinear_pointwise(
        shifted, 1.0, ONEDNN_ZERO_POINT, packed, _ONE, _ZERO, None, 1.0, 0, torch.float32,
        "none", [], "")
    return sums


def onednn_packed(weight: torch.Tensor) -> torch.Tensor | None:
    """int8 ``weight`` ``[out, in]`` packed for oneDNN's int8 matrix product (``onednn::
    qlinear_pointwise``, which :func:`integer_product` calls with it), or None where torch
    has no oneDNN or its sums are not exact on this CPU. They are checked once, on these
    weights, against ``torch._int_mm``'s for rows of the largest, the smallest and mixed
    activations: a CPU without VNNI may take a oneDNN path whose 16-bit intermediates
    saturate. The packed copy is oneDNN's own tensor (~the weights' size)."""
    generator = torch.Generator().manual_seed(0)
    width = weight.shape[1]
    probe = torch.stack([
        torch.full((width,), 127), torch.full((width,), -127),
        torch.arange(width).remainder(2).mul(254).sub(127),
        torch.randint(-127, 128, (width,), generator=generator)]).to(torch.int8)
    try:
        packed: torch.Tensor = torch.ops.onednn.qlinear_prepack(weight, None)
        got = onednn_sums(probe.float(), packed)
    except (AttributeError, RuntimeError) as exc:  # no such operation, or it refused
        logger.info("the output layer does not take oneDNN: its int8 product is "
                    "unavailable here (%s)", exc)
        return None
    expected = torch._int_mm(probe, weight.t())
    if not torch.equal(got, expected.float()):
        logger.info("the output layer does not take oneDNN: its int8 sums are not exact "
                    "on this CPU")
        return None
    return packed


INT_MM_PROBE_OUTPUTS = 4096
"""Outputs of a layer :func:`int_mm_is_fast` multiplies (its first ones): ~0.2 ms a call by
the packed kernel, ~1.5 ms by ``_int_mm``'s plain loop, on a 2-core AMD EPYC without
AVX-512."""
INT_MM_SLOWER = 3.0
"""How many times the packed kernel's time for one row ``torch._int_mm`` may take for two
(one row's halves) and count as fast: ~1-1.4x where it has a fast kernel (an AMD EPYC with
AVX-512 VNNI), ~9x where it is a plain loop."""


def int_mm_is_fast(weight: torch.Tensor) -> bool:
    """Whether ``torch._int_mm`` multiplies int8 ``weight`` ``[out, in]`` here at about the
    packed int8 kernel's speed: two rows (what :func:`integer_product` gives it for one row)
    against one row by ``torch._weight_int8pack_mm``, on the first
    :data:`INT_MM_PROBE_OUTPUTS` outputs, the best of five calls each, alternated; fast
    within :data:`INT_MM_SLOWER` times. torch has a fast kernel for ``_int_mm`` only on some
    CPUs (AVX-512 VNNI); elsewhere it is a plain loop: on a 2-core AMD EPYC with AVX2 alone
    (Zen 3) the embedded model's output layer took 35 ms a step by it against 3.8 ms by the
    packed kernel (docs/performance.md, "An AMD EPYC with AVX2 alone")."""
    part = weight[:INT_MM_PROBE_OUTPUTS]
    halves = torch.ones(2, part.shape[1], dtype=torch.int8)
    row = torch.ones(1, part.shape[1], dtype=torch.bfloat16)
    scales = torch.ones(part.shape[0], dtype=torch.bfloat16)
    int_mm, packed = [], []
    for _ in range(5):
        start = time.perf_counter()
        try:
            torch._int_mm(halves, part.t())
        except RuntimeError as exc:  # a shape or build it refuses
            logger.info("the output layer keeps the packed int8 kernel: torch._int_mm "
                        "refused its weights (%s)", exc)
            return False
        int_mm.append(time.perf_counter() - start)
        start = time.perf_counter()
        packed_product(row, part, scales, int4=False)
        packed.append(time.perf_counter() - start)
    fast = min(int_mm) <= INT_MM_SLOWER * min(packed)
    logger.info("the output layer %s: torch._int_mm took %.2f ms for two rows of %d outputs, "
                "the packed int8 kernel %.2f ms for one",
                "multiplies by torch._int_mm" if fast else "keeps the packed int8 kernel",
                min(int_mm) * 1e3, part.shape[0], min(packed) * 1e3)
    return fast


DENSE_ROWS = 8
"""Rows from which a layer that keeps a :class:`Dense` copy multiplies by it instead of by
its packed kernel. Measured on a 2-core Intel Xeon with AMX (2026-12-05; a decode step's 30
layers of products, each layer's weights read from memory): the int4 kernel 5.5 ms at 2
rows, 7.5 at 4, 12.0-12.2 at 5 to 7, 13.2 at 8, 18.4 at 12, 24.2 at 16; the packed bfloat16
copies 12.2-13.0 ms at every count from 1 to 16 (docs/engine.md, "Dense copies on AMX")."""


def wide(tokens: int) -> bool:
    """Whether a pass of ``tokens`` tokens is wide: its products on the :class:`Dense` copies
    where the layers keep them (:data:`DENSE_ROWS` or more), the one test for the Python
    layers, the model's own forward and the scripted step."""
    return tokens >= DENSE_ROWS


@dataclass(frozen=True, eq=False)  # eq=False: no comparing of tensors
class Dense:
    """A quantized layer's weight in bfloat16 as oneDNN packs it once for its matrix product
    (AMX's, where the CPU has it; :func:`pack_dense`), ``[outputs, in]``: the layer's output
    columns are the ``size`` from ``start`` (all of them, or a fused group's member's share of
    the group's one copy: :class:`~arkor.engine.local.decode.Fused`)."""

    packed: torch.Tensor  # oneDNN's own (opaque) tensor: ~the bfloat16 weight's size
    start: int
    size: int
    outputs: int
    # Whether a wide pass folds a LoRA term into this product (mixed_lora.folded): the lean
    # decoder's choice for the attention's products (decode.LeanDecoder)
    folds: bool = False

    def product(self, flat: torch.Tensor) -> torch.Tensor:
        """``flat`` (``[rows, in]``, bfloat16) times the weight: the columns of this layer
        (a view of the whole product for a share)."""
        return self.own(dense_product(flat, self.packed))

    def own(self, whole: torch.Tensor) -> torch.Tensor:
        """This layer's columns of ``whole`` (``[..., outputs]``: the product's output): all
        of them, or a view of a share's."""
        return whole if self.size == self.outputs else whole.narrow(-1, self.start, self.size)

    def weight(self) -> torch.Tensor:
        """The bfloat16 weight, unpacked (``[size, in]``): a copy."""
        whole: torch.Tensor = self.packed.to_dense()
        return whole if self.size == self.outputs else whole[self.start:self.start + self.size]

    def share(self, start: int, size: int) -> Dense:
        """Columns ``start`` to ``start + size`` of this copy, as a member of a group has."""
        return Dense(self.packed, start, size, self.outputs, self.folds)


def pack_dense(weight: torch.Tensor) -> Dense:
    """``weight`` (``[outputs, in]``, bfloat16) packed by oneDNN (``mkldnn::
    _reorder_linear_weight``, as inductor packs frozen weights; the product gives
    ``F.linear``'s numbers bit for bit, without repacking the weight on every call as
    ``F.linear`` does: 30 layers' products at 16 rows 12.5 against 19.2 ms)."""
    packed = torch.ops.mkldnn._reorder_linear_weight(weight, 2 * DENSE_ROWS)
    return Dense(packed, 0, weight.shape[0], weight.shape[0])


def product(flat: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor,
            dense: Dense | None, *, int4: bool) -> torch.Tensor:
    """:func:`packed_product`, or from :data:`DENSE_ROWS` rows the product with ``dense``, the
    same weight dequantized to bfloat16, where the layer keeps one (:func:`keep_dense`)."""
    if dense is not None and wide(flat.shape[0]):
        return dense.product(flat)
    return packed_product(flat, weight, scales, int4=int4)


def dense_copies_default() -> bool:
    """Whether quantized layers keep a dense copy for wide products: where the CPU has AMX
    (oneDNN's bfloat16 matrix products use it there; measured in docs/engine.md) and torch
    has oneDNN. Without AMX (an AMD EPYC with AVX-512 BF16) the copies gave no clear gain in
    the engine for ~90 MiB more (docs/performance.md, "Prefix cache and chunked prefill")."""
    return bool(torch._C._has_mkldnn and torch.cpu._is_amx_tile_supported())


def keep_dense(model: torch.nn.Module) -> int:
    """Give every quantized layer but the output layer its :attr:`~Int4Linear.dense` copy
    (the model already in bfloat16): the weight its kernel computes with, in bfloat16
    (:meth:`~Int4Linear.bfloat16_weight`: at int4 worked out from its packed levels, or the
    kernel's own products with the identity), packed (:func:`pack_dense`); returns how many:
    none, with a warning, where oneDNN cannot pack them (the layers then take their packed
    kernels alone). The output layer takes one column per prompt, where the packed kernel is
    the faster."""
    output = getattr(model, "get_output_embeddings", lambda: None)()
    layers = [module for module in model.modules()
              if isinstance(module, (Int8Linear, Int4Linear)) and module is not output]
    try:
        copies = [pack_dense(layer.bfloat16_weight()) for layer in layers]
    except (RuntimeError, AttributeError) as exc:  # a torch without oneDNN's packing
        logger.warning("quantized layers keep no dense copies: oneDNN could not pack one "
                       "(%s: %s)", type(exc).__name__, exc)
        return 0
    for layer, copy in zip(layers, copies, strict=True):
        layer.dense = copy
    return len(layers)


def auto_precision_for(capability: str) -> str:
    """What ``auto`` is on a CPU of torch's ``capability`` (docs/engine.md, "Precision"):
    ``int4`` with AVX-512 (``AVX512``) or AVX2 (``AVX2``), where it decoded faster than int8
    (or as fast, at 16 concurrent with AVX2 alone) and is the nearer float32; ``float32`` on
    the rest."""
    return "int4" if capability in ("AVX512", "AVX2") else "float32"


def cpu_auto_precision() -> str:
    """What ``auto`` is on this CPU (:func:`auto_precision_for`); ``float32`` where torch
    cannot say."""
    capability = getattr(torch.backends.cpu, "get_cpu_capability", None)
    if capability is None:
        return "float32"
    return auto_precision_for(str(capability()))


def resolve_on(precision: str, device_type: str) -> str:
    """The concrete precision a model loads at for ``precision`` on ``device_type`` here."""
    return resolve_precision(precision, device_type, cpu_auto=cpu_auto_precision()
                             if device_type == "cpu" else "float32")


def apply_precision(model: Any, precision: str, device: torch.device, *,
                    dense_copies: bool | None = None) -> str:
    """Convert ``model`` in place to ``precision`` on ``device``; returns the concrete one.
    At int8 and int4, ``dense_copies`` (default: :func:`dense_copies_default`) gives the
    quantized layers their dense copies for wide products (:func:`keep_dense`)."""
    resolved = resolve_on(precision, device.type)
    if resolved == "float32":
        model.to(torch.float32)
    elif resolved == "bfloat16":
        model.to(torch.bfloat16)
    else:
        if device.type != "cpu":
            raise ValueError(f"{resolved} precision uses a CPU kernel; use bfloat16 on CUDA")
        # From the float32 weights, before the bfloat16 cast.
        quantize_linears(model, Int4Linear if resolved == "int4" else Int8Linear)
        model.to(torch.bfloat16)
        if dense_copies_default() if dense_copies is None else dense_copies:
            keep_dense(model)
    if resolved != "float32":
        release_free_memory()
    return resolved


def quantize_linears(model: torch.nn.Module,
                     kind: type[Int8Linear] | type[Int4Linear] = Int8Linear) -> int:
    """Replace every ``nn.Linear`` (lm_head too) by an :class:`Int8Linear`, or with ``kind``
    :class:`Int4Linear` every one but ``lm_head`` (and a shape the int4 kernel cannot take) by
    an :class:`Int4Linear`; returns how many. Each converted weight's pages of a mapped
    checkpoint are handed back (:func:`release_file_pages`).

    A tied ``lm_head`` is untied: the input embedding keeps its bfloat16 table.
    """
    # Names only: each float32 Linear is let go as soon as it is replaced (holding them all
    # until the end kept the whole float32 model beside its int8 copy).
    targets = [name for name, module in model.named_modules() if type(module) is torch.nn.Linear]
    output = getattr(model, "get_output_embeddings", lambda: None)()
    lm_head = next((name for name, module in model.named_modules() if module is output), None)
    del output  # by name from here on: no float32 Linear is held past its turn
    mapped = file_mappings()
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child)
        # lm_head stays int8, as a Q4 GGUF keeps its output matrix at 6 or 8 bits: the
        # embedded model's is not 4-bit, and at 4 bits bench/quality.py's perplexity went
        # from float32's to +5.6 % (4/52 answers identical instead of 20).
        four = kind is Int4Linear and name != lm_head and Int4Linear.fits(linear)
        module = (Int4Linear if four else Int8Linear)(linear)
        if name == lm_head and isinstance(module, Int8Linear):
            # integer_product, on oneDNN or torch._int_mm, where either is fast here
            module.onednn = onednn_packed(module.weight)
            module.integer = module.onednn is not None or int_mm_is_fast(module.weight)
        setattr(parent, child, module)
        del module
        if name != lm_head:  # a tied output layer's weight is the embedding table's
            release_file_pages(linear.weight, mapped)
        del linear
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "tie_word_embeddings", False):
        # Keep transformers/PEFT from tying lm_head back to the embedding table.
        config.tie_word_embeddings = False
    return len(targets)


_MADV_DONTNEED = 4  # Linux's madvise advice: the pages are not needed


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, looked up once (``find_library`` runs ``ldconfig``: ~1.5 ms a call);
    None where there is none to load."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def file_mappings() -> list[tuple[int, int]]:
    """The address ranges of this process mapped from a safetensors file (transformers maps a
    checkpoint and its float32 tensors' data lie in it, read only as they are touched), from
    ``/proc/self/maps``; none where there is no such file (not Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            lines = maps.readlines()
    except OSError:
        return []
    ranges = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].rstrip().endswith(".safetensors"):
            start, end = fields[0].split("-")
            ranges.append((int(start, 16), int(end, 16)))
    return ranges


def release_file_pages(tensor: torch.Tensor, mapped: list[tuple[int, int]]) -> None:
    """Hand back the memory pages wholly inside ``tensor``'s data (a weight about to be let
    go) where they lie in one of the ``mapped`` file ranges (:func:`file_mappings`): the
    file's pages the conversion read, which would otherwise count in the process's memory
    until the whole file is unmapped (the model's last float32 tensor gone). A page of a
    file mapping handed back is read from the file again if touched; none outside the
    tensor's own is."""
    if not mapped or tensor.device.type != "cpu" or not tensor.is_contiguous():
        return
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    if not any(low <= start and end <= high for low, high in mapped):
        return
    page = mmap.PAGESIZE
    first, last = -(-start // page) * page, end // page * page
    libc = _libc()
    if last <= first or libc is None:
        return
    with contextlib.suppress(AttributeError):
        libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing
    elsewhere). Converting a model's precision frees hundreds of megabytes of temporaries
    and float32 weights, which glibc otherwise keeps in the loading thread's arena: an int8
    load left the process at ~1,080 MiB, ~630 MiB after the trim."""
    libc = _libc()
    if libc is None:
        return
    with contextlib.suppress(AttributeError):
        libc.malloc_trim(0)

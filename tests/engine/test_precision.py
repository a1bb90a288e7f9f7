"""Engine precision: the setting is parsed once and refused clearly; at bfloat16 and int8 the
engine serves the base model and adapters, adapters still change the answers, and a mixed
batch gives each row what it gets alone at that precision (like compared with like)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from arkor.cloud.settings import Settings
from arkor.engine.base import AdapterRef
from arkor.engine.local import LocalEngine, quantize
from arkor.engine.local.quantize import (
    FIXED_POINT_STEPS,
    INT4_GROUP,
    Int4Linear,
    Int8Linear,
    integer_product,
    onednn_packed,
    quantize_linears,
)
from arkor.engine.precision import parse_precision, parse_precision_plan, resolve_precision
from arkor.engine.registry import EMBEDDED_MODEL_NAME, BaseModelRegistry
from tests.engine.conftest import Outcome, ask, close_engine, collect

ROUNDING_TIE = 0.5
"""Nats between the two most likely tokens within which bfloat16 rounding may swap them: the
output layer's logits (magnitude 16-32) are held in bfloat16 to steps of 0.125, so this is
four steps."""


def assert_same_or_a_rounding_tie(batched: Outcome, single: Outcome) -> None:
    """The same greedy tokens, or the same up to a step where the single run's most likely
    token and the one the batch took were within rounding of each other (ties of three
    happen: bfloat16 logits sit on steps of 0.125, so the callers ask for the top 5).

    In bfloat16 a matrix product's rounding depends on the kernel its shape selects, and the
    kernels differ by CPU (an AVX-512 BF16 machine and one without gave different ties), so
    "token for token" holds only where the model is not split between two tokens.
    """
    pairs = zip(batched.logprobs, single.logprobs, strict=False)
    for step, (got, expected) in enumerate(pairs):
        if got.token_id == expected.token_id:
            continue
        tops = {top.token_id: top.logprob for top in expected.top}
        assert got.token_id in tops, (step, batched.text, single.text)
        gap = expected.top[0].logprob - tops[got.token_id]
        assert gap < ROUNDING_TIE, (step, gap, batched.text, single.text)
        return
    assert batched.text == single.text


def test_precision_is_parsed_and_a_bad_one_names_the_choices(tmp_path: Path) -> None:
    assert parse_precision(" INT8 ") == "int8"
    assert resolve_precision("auto", "cpu") == "float32"
    assert resolve_precision("auto", "cpu", cpu_auto="int8") == "int8"
    assert resolve_precision("auto", "cpu", cpu_auto="int4") == "int4"
    assert resolve_precision("auto", "cuda", cpu_auto="int4") == "bfloat16"
    assert resolve_precision("float32", "cpu", cpu_auto="int4") == "float32"
    assert Settings(data_dir=tmp_path).engine_precision == "auto"
    env = {"ARKOR_ENGINE_PRECISION": "bfloat16", "ARKOR_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(env).engine_precision == "bfloat16"
    assert parse_precision("int4") == "int4"
    allowed = "auto, float32, bfloat16, int8, int4"
    with pytest.raises(ValueError, match=f"one of {allowed} .*ARKOR_ENGINE_PRECISION.*'fp16'"):
        Settings.from_env({**env, "ARKOR_ENGINE_PRECISION": "fp16"})
    with pytest.raises(ValueError, match=allowed):
        LocalEngine(BaseModelRegistry.with_embedded(), models_dir=tmp_path, precision="int2")


def test_a_base_model_may_have_its_own_precision(tmp_path: Path) -> None:
    plan = parse_precision_plan(f" {EMBEDDED_MODEL_NAME}=INT8 , bfloat16")
    assert plan.default == "bfloat16" and plan.for_model(EMBEDDED_MODEL_NAME) == "int8"
    assert plan.for_model("other") == "bfloat16"
    assert parse_precision_plan("x=int8").default == "auto"
    env = {"ARKOR_DATA_DIR": str(tmp_path)}
    settings = Settings.from_env({**env, "ARKOR_ENGINE_PRECISION": f"{EMBEDDED_MODEL_NAME}=int8"})
    assert settings.engine_precision == f"auto,{EMBEDDED_MODEL_NAME}=int8"
    for bad, message in [("int8,bfloat16", "two defaults"), ("=int8", "no base model name"),
                         ("a=int8,a=int8", "twice"), ("a=int2", "one of"),
                         ("nobody/model=int8", "not registered")]:
        with pytest.raises(ValueError, match=message):
            Settings.from_env({**env, "ARKOR_ENGINE_PRECISION": bad})


def test_the_per_model_precision_is_the_one_loaded(models_dir: Path) -> None:
    engine = LocalEngine(BaseModelRegistry.with_embedded(), models_dir=models_dir,
                         precision=f"float32,{EMBEDDED_MODEL_NAME}=bfloat16")
    try:
        asyncio.run(engine.load(EMBEDDED_MODEL_NAME))
        assert engine._schedulers[EMBEDDED_MODEL_NAME].loaded.precision == "bfloat16"
    finally:
        close_engine(engine)


def test_auto_picks_by_the_cpu_and_loads_what_it_picks(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The suite pins ``auto`` to float32 (tests/conftest.py). Here the answer for each kind
    of CPU, then a real model loaded with each answer ``auto`` can give."""
    assert quantize.auto_precision_for("AVX512") == "int4"  # with or without AVX-512 BF16
    assert quantize.auto_precision_for("AVX2") == "int4"
    assert quantize.auto_precision_for("DEFAULT") == "float32"
    assert quantize.auto_precision_for("ZVECTOR") == "float32"
    kinds = {"int4": Int8Linear, "float32": torch.nn.Linear}
    for answer, head in kinds.items():
        monkeypatch.setattr(quantize, "cpu_auto_precision", lambda answer=answer: answer)
        engine = LocalEngine(BaseModelRegistry.with_embedded(), models_dir=models_dir)
        try:
            asyncio.run(engine.load(EMBEDDED_MODEL_NAME))
            loaded = engine._schedulers[EMBEDDED_MODEL_NAME].loaded
            assert loaded.precision == answer
            assert type(loaded.model.get_output_embeddings()) is head
            layer = loaded.model.model.layers[0].mlp.down_proj
            assert isinstance(layer, Int4Linear) == (answer == "int4")
        finally:
            close_engine(engine)


def test_int8_linear_matches_its_dequantized_weight() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Linear(32, 8, bias=False))
    expected = model(torch.randn(3, 5, 64))
    assert quantize_linears(model) == 2
    model.to(torch.bfloat16)
    first = model[0]
    assert isinstance(first, Int8Linear) and first.weight.dtype == torch.int8
    x = torch.randn(3, 5, 64)
    got = first(x.bfloat16())
    exact = x @ first.dequantized().t() + first.bias.float()
    assert got.dtype == torch.bfloat16 and got.shape == (3, 5, 32)
    assert torch.allclose(got.float(), exact, atol=0.05, rtol=0.02)
    assert expected.shape == model(x.bfloat16()).shape


def test_int4_linear_gives_back_4_bit_group_weights_and_matches_them() -> None:
    """Weights that are 4-bit levels of groups of 32 with a scale and a minimum (a GGUF Q4_1
    model's, as the embedded model's are) come back to within the bfloat16 rounding of each
    group's scale and zero; an output size the kernel cannot take stays int8."""
    torch.manual_seed(0)
    levels = torch.randint(0, 16, (128, 64 // INT4_GROUP, INT4_GROUP)).float()
    scales, lows = torch.rand(128, 2, 1) * 0.1 + 0.01, torch.randn(128, 2, 1)
    q4_1 = torch.nn.Linear(64, 128)
    with torch.no_grad():
        q4_1.weight.copy_((levels * scales + lows).reshape(128, 64))
    model = torch.nn.Sequential(q4_1, torch.nn.Linear(128, 40, bias=False))
    assert quantize_linears(model, Int4Linear) == 2
    model.to(torch.bfloat16)
    first, second = model[0], model[1]
    assert isinstance(first, Int4Linear) and first.weight.dtype == torch.uint8
    assert type(second) is Int8Linear  # 40 outputs: not whole blocks of 64
    weight = (levels * scales + lows).reshape(128, 64)
    # bfloat16 scales, zeros and products: ~0.5 % of a weight here (a misplaced level or
    # group would be off by its whole size).
    assert (first.dequantized() - weight).abs().max() < 0.02 * weight.abs().max()
    x = torch.randn(3, 5, 64)
    got = first(x.bfloat16())
    exact = x @ weight.t() + q4_1.bias.detach().float()
    assert got.dtype == torch.bfloat16 and got.shape == (3, 5, 128)
    assert (got.float() - exact).abs().max() < 0.02 * exact.abs().max()
    assert second(got).shape == (3, 5, 40)


def test_the_output_layer_product_is_exact_up_to_its_fixed_point_alone_and_in_a_batch(
) -> None:
    """:func:`integer_product`: each row off the exact product only by its activations'
    15-bit fixed point (and float32's last bits), closer to it than torch's packed int8
    kernel with the same weights; a row's outputs the same alone and among 16; a row of
    zeros gives zeros and a row with a NaN gives NaNs without touching the others."""
    torch.manual_seed(0)
    weight = torch.randint(-127, 128, (1000, 96), dtype=torch.int8)
    scales = (torch.rand(1000) * 0.01 + 1e-4).bfloat16().float()  # what the packed kernel takes
    # A few large channels, as a decoder's last hidden state has.
    x = (torch.randn(16, 96) * torch.where(torch.rand(96) < 0.05, 20.0, 1.0)).bfloat16()
    x[3] = 0
    got = integer_product(x, weight, scales)
    assert got.dtype == torch.float32 and got.shape == (16, 1000)
    exact = (x.double() @ weight.double().T) * scales.double()
    step = x.double().abs().amax(1, keepdim=True) / FIXED_POINT_STEPS
    bound = step / 2 * (weight.double().abs().sum(1) * scales.double()) + 1e-6 * exact.abs()
    assert ((got.double() - exact).abs() <= bound + 1e-9).all()
    assert torch.equal(got[3], torch.zeros(1000))
    packed = torch._weight_int8pack_mm(x, weight, scales.bfloat16()).double()
    assert (got.double() - exact).abs().max() < (packed - exact).abs().max() / 4
    for row in range(16):
        assert torch.equal(integer_product(x[row:row + 1], weight, scales), got[row:row + 1])
    x[5, 7] = float("nan")
    with_nan = integer_product(x, weight, scales)
    assert with_nan[5].isnan().all()
    assert torch.equal(torch.cat([with_nan[:5], with_nan[6:]]), torch.cat([got[:5], got[6:]]))
    # Past 1,036 inputs the two halves' sums are combined in float32 (int32 could overflow).
    wide, wide_x = weight.repeat(1, 12)[:50], x[:4].repeat(1, 12)
    wide_x[0] = 1e30  # every weight at its largest: the worst case, no overflow
    wide[0] = 127
    assert torch.isfinite(wide_x.float()).all() and wide.shape[1] > 1036
    exact = (wide_x.double() @ wide.double().T) * scales[:50].double()
    assert torch.allclose(integer_product(wide_x, wide, scales[:50]).double(), exact,
                          rtol=1e-3, atol=1e-3 * exact.abs().max().item())


def test_onednn_gives_the_output_layer_product_int_mm_numbers_bit_for_bit() -> None:
    """:func:`integer_product` with the weights packed for oneDNN gives ``torch._int_mm``'s
    numbers bit for bit: 16 rows and each alone, a row of zeros, a row with a NaN, and past
    1,036 inputs at the worst case (every weight at its largest)."""
    torch.manual_seed(1)
    weight = torch.randint(-127, 128, (1000, 96), dtype=torch.int8)
    scales = (torch.rand(1000) * 0.01 + 1e-4).bfloat16().float()
    x = (torch.randn(16, 96) * torch.where(torch.rand(96) < 0.05, 20.0, 1.0)).bfloat16()
    x[3] = 0
    x[9, 2] = float("nan")
    packed = onednn_packed(weight)
    if packed is None:
        pytest.skip("oneDNN's int8 product is unavailable or inexact on this CPU: the output "
                    "layer takes torch._int_mm or the packed kernel")
    got = integer_product(x, weight, scales, packed)
    expected = integer_product(x, weight, scales)
    assert torch.equal(got.nan_to_num(), expected.nan_to_num())
    assert got[9].isnan().all() and torch.equal(got[3], torch.zeros(1000))
    for row in (0, 5, 15):
        alone = integer_product(x[row:row + 1], weight, scales, packed)
        assert torch.equal(alone, got[row:row + 1])
    wide, wide_x = weight.repeat(1, 12)[:50].contiguous(), x[:4].repeat(1, 12)
    wide_x[0] = 1e30
    wide[0] = 127
    wide_packed = onednn_packed(wide)
    assert wide_packed is not None and wide.shape[1] > 1036
    assert torch.equal(integer_product(wide_x, wide, scales[:50], wide_packed),
                       integer_product(wide_x, wide, scales[:50]))


def test_inexact_or_missing_onednn_is_not_taken(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The packed copy is kept only where its sums equal ``torch._int_mm``'s on the layer's
    own weights: a product one off in one output (as a saturating 16-bit path would be), or
    an operation torch refuses, leaves oneDNN out (the layer takes ``_int_mm`` or the packed
    kernel: below) and says why in the log."""
    weight = torch.randint(-127, 128, (64, 96), dtype=torch.int8)

    def one_off(levels: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        # oneDNN's sums one off (computed without it: on a CPU without VNNI its int8 product
        # may not run at all, which the second half covers)
        sums = torch._int_mm(levels.to(torch.int8), weight.t()).float()
        sums[0, 5] += 1
        return sums

    with monkeypatch.context() as patched:
        patched.setattr(torch.ops.onednn, "qlinear_prepack", lambda *args: torch.empty(0))
        patched.setattr(quantize, "onednn_sums", one_off)
        with caplog.at_level("INFO", logger=quantize.__name__):
            assert onednn_packed(weight) is None
    assert "not exact on this CPU" in caplog.text

    def refused(*_args: object) -> torch.Tensor:
        raise RuntimeError("no oneDNN here")

    monkeypatch.setattr(torch.ops.onednn, "qlinear_prepack", refused)
    caplog.clear()
    with caplog.at_level("INFO", logger=quantize.__name__):
        assert onednn_packed(weight) is None
    assert "unavailable here (no oneDNN here)" in caplog.text


def tiny_llama() -> torch.nn.Module:
    """A one-layer Llama of random weights, its embeddings tied to its output layer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))


def test_the_output_layer_alone_multiplies_in_integers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model's output layer (``get_output_embeddings``), untied, takes
    :func:`integer_product` (float32 logits, a row's the same alone and among others) where an
    integer product is fast here (``torch._int_mm`` said so: it is not on every CPU, below);
    its other int8 layers take the packed kernel."""
    monkeypatch.setattr(quantize, "int_mm_is_fast", lambda weight: True)
    model = tiny_llama()
    quantize_linears(model, Int4Linear)
    model.to(torch.bfloat16)
    head = model.lm_head
    assert isinstance(head, Int8Linear) and head.integer
    assert not any(getattr(module, "integer", False) for name, module in model.named_modules()
                   if name != "lm_head")
    assert head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    x = torch.randn(2, 4, 64).bfloat16()
    got = head(x)
    assert got.dtype == torch.float32 and got.shape == (2, 4, 256)
    assert torch.equal(got.view(8, 256), integer_product(x.view(8, 64), head.weight,
                                                         head.scales))
    # Packed for oneDNN wherever its sums are exact (the numbers above are _int_mm's)
    assert (head.onednn is not None) == (onednn_packed(head.weight) is not None)
    assert torch.equal(head(x[1, 2:3]), got[1, 2:3])
    logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.dtype == torch.float32 and logits.isfinite().all()


def slowed(monkeypatch: pytest.MonkeyPatch, name: str, calls: list[str]) -> None:
    """``torch.<name>`` made 20 ms slower a call (as ``_int_mm``'s plain loop is, against the
    packed kernel, on a CPU without AVX-512 VNNI), each call noted in ``calls``."""
    real = getattr(torch, name)

    def slow(*args: object) -> torch.Tensor:
        calls.append(name)
        time.sleep(0.02)
        out: torch.Tensor = real(*args)
        return out

    monkeypatch.setattr(torch, name, slow)


def test_where_int_mm_is_slow_the_output_layer_keeps_the_packed_kernel(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No oneDNN product here and ``torch._int_mm`` far slower than the packed int8 kernel
    (a 2-core AMD EPYC with AVX2 alone: 35 ms a step against 3.8 ms for the embedded model's
    output layer, which made its int8 and int4 engines 2x slower): the output layer multiplies
    by the packed kernel, as the other int8 layers do, and never calls ``_int_mm``; the log
    says why."""
    monkeypatch.setattr(quantize, "onednn_packed", lambda weight: None)
    calls: list[str] = []
    slowed(monkeypatch, "_int_mm", calls)
    model = tiny_llama()
    with caplog.at_level("INFO", logger=quantize.__name__):
        quantize_linears(model, Int8Linear)
    assert "the output layer keeps the packed int8 kernel" in caplog.text
    model.to(torch.bfloat16)
    head = model.lm_head
    assert isinstance(head, Int8Linear) and not head.integer
    calls.clear()
    x = torch.randn(2, 4, 64).bfloat16()
    got = head(x)
    assert torch.equal(got.view(8, 256), torch._weight_int8pack_mm(x.view(8, 64), head.weight,
                                                                   head.scales))
    logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.isfinite().all() and calls == []


def test_int_mm_is_fast_measures_it_against_the_packed_kernel(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """:func:`quantize.int_mm_is_fast` times ``torch._int_mm`` against the packed int8 kernel
    on the layer's own weights: slow when it takes far longer, fast when the packed kernel
    does, and slow (logged) when it refuses them."""
    weight = torch.randint(-127, 128, (512, 64), dtype=torch.int8)
    with monkeypatch.context() as patched:
        calls: list[str] = []
        slowed(patched, "_int_mm", calls)
        with caplog.at_level("INFO", logger=quantize.__name__):
            assert not quantize.int_mm_is_fast(weight)
        assert calls == ["_int_mm"] * 5
    assert "keeps the packed int8 kernel: torch._int_mm took" in caplog.text
    with monkeypatch.context() as patched:
        slowed(patched, "_weight_int8pack_mm", [])
        assert quantize.int_mm_is_fast(weight)

    def refused(*_args: object) -> torch.Tensor:
        raise RuntimeError("no int8 product for this shape")

    monkeypatch.setattr(torch, "_int_mm", refused)
    caplog.clear()
    with caplog.at_level("INFO", logger=quantize.__name__):
        assert not quantize.int_mm_is_fast(weight)
    assert "refused its weights (no int8 product for this shape)" in caplog.text


@pytest.mark.parametrize("precision", ["bfloat16", "int8", "int4"])
def test_mixed_batch_equals_one_at_a_time_at_precision(
    precision: str, models_dir: Path, adapter_a: AdapterRef, adapter_b: AdapterRef
) -> None:
    # Without the prefix cache: "alone" would start from the keys and values the batch left;
    # this test is about batching.
    engine = LocalEngine(BaseModelRegistry.with_embedded(), models_dir=models_dir,
                         precision=precision, prefix_cache_mb=0)
    plan = [
        ("What is the capital of France?", None),
        ("I see two identical payments for the same order.", adapter_a),
        ("Die Katze schläft auf dem Sofa.", adapter_b),
        ("I see two identical payments for the same order.", None),
    ]

    async def scenario() -> tuple[list[Outcome], list[Outcome]]:
        together = await asyncio.gather(
            *(collect(engine, ask(p, adapter=a, max_tokens=10, logprobs=5)) for p, a in plan)
        )
        alone = [await collect(engine, ask(p, adapter=a, max_tokens=10, logprobs=5))
                 for p, a in plan]
        return list(together), alone

    try:
        together, alone = asyncio.run(scenario())
        scheduler = engine._schedulers[next(iter(engine._schedulers))]
        assert scheduler.loaded.precision == precision
        q_proj = scheduler.adapters.model.get_base_model().model.layers[0].self_attn.q_proj
        if precision in ("int8", "int4"):
            kind = Int8Linear if precision == "int8" else Int4Linear
            assert isinstance(q_proj.base_layer, kind)
            assert type(scheduler.loaded.model.get_output_embeddings()) is Int8Linear
    finally:
        close_engine(engine)
    for batched, single in zip(together, alone, strict=True):
        assert_same_or_a_rounding_tie(batched, single)
    if precision != "int4":  # int4 goes its own way on this prompt ("L'Étoile, la …");
        assert "Paris" in together[0].text  # bench/quality.py measures it against float32
    # The adapters change the answers: the same ticket, labelled only with adapter A.
    assert together[1].text.startswith("LABEL:") and not together[3].text.startswith("LABEL:")
    assert together[2].text.startswith("LANG:")


BF16_ON_ONEDNN = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
"""Whether oneDNN multiplies bfloat16 here: the dense copies (quantize.Dense) need it; they
are kept by default only where the CPU has AMX, and forced in these tests where it can."""


@pytest.mark.skipif(not BF16_ON_ONEDNN, reason="oneDNN has no bfloat16 product on this CPU")
def test_wide_products_take_the_dense_copy_where_one_is_kept() -> None:
    """A quantized layer's dense copy is the weight its kernel computes with, in bfloat16,
    packed once; a product of DENSE_ROWS rows or more is taken on it, a narrower one on the
    packed kernel, and the two agree to bfloat16 rounding."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128, bias=False),
                                torch.nn.Linear(128, 48, bias=False))
    assert quantize_linears(model, Int4Linear) == 2
    model.to(torch.bfloat16)
    wide = torch.randn(quantize.DENSE_ROWS, 64).bfloat16()
    narrow = wide[:quantize.DENSE_ROWS - 1]
    before_wide, before_narrow = model[0](wide), model[0](narrow)
    assert quantize.keep_dense(model) == 2
    first = model[0]
    assert isinstance(first, Int4Linear) and first.dense is not None
    weight = first.dense.weight()
    assert torch.equal(weight, first.dequantized().bfloat16())
    assert torch.equal(first(narrow), before_narrow)  # the packed kernel, unchanged
    got = first(wide)
    assert torch.equal(got, torch.nn.functional.linear(wide, weight))  # oneDNN's numbers
    assert not torch.equal(got, before_wide)
    assert (got.float() - before_wide.float()).abs().max() < 0.02 * before_wide.float().abs().max()
    # A share of a copy (a fused group's member) is its columns of the whole product.
    share = first.dense.share(32, 48)
    assert torch.equal(share.weight(), weight[32:80])
    assert torch.equal(share.product(wide), got[:, 32:80])
    # Kept by default exactly where the CPU has AMX.
    default = torch.nn.Sequential(torch.nn.Linear(64, 32, bias=False))
    quantize.apply_precision(default, "int8", torch.device("cpu"))
    assert (default[0].dense is not None) == quantize.dense_copies_default()


def test_an_int4_layers_bfloat16_weight_is_the_kernels_bit_for_bit(
        embedded_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The weight an int4 layer's dense copy is packed from is worked out from its packed
    levels (``(level - 8) * scale + zero`` in bfloat16) rather than by the kernel's products
    with the identity: the levels read back are the ones packed, and the weights are the
    kernel's, bit for bit, on weights of every scale (tiny, huge, a group of one value), on
    the embedded model's own layers, and where the layout is not read (outputs not in whole
    blocks, or a layout the once-a-process check refuses) by the identity instead."""
    torch.manual_seed(0)
    levels = torch.randint(0, 16, (192, 96), dtype=torch.int32)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(levels, 2)
    assert torch.equal(quantize.unpacked_levels(packed, 192).reshape(192, 96),
                       levels.float())
    layers = []
    for scale in (1e-30, 1e-3, 1.0, 1e4):
        linear = torch.nn.Linear(96, 64, bias=False)
        with torch.no_grad():
            linear.weight.mul_(scale)
            linear.weight[3, :INT4_GROUP] = 0.25  # a group with one value: scale ~0
        layers.append(linear)
    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32)
    attention = model.model.layers[0].self_attn
    layers += [attention.q_proj, attention.v_proj, model.model.layers[29].mlp.down_proj,
               torch.nn.Linear(64, 80, bias=False)]  # 80 outputs: not whole blocks of 64
    for linear in layers:
        layer = Int4Linear(linear)
        expected = layer.dequantized().bfloat16()
        assert torch.equal(layer.bfloat16_weight(), expected)
        shape = (layer.out_features, layer.in_features)
        assert quantize.reads_int4_packing(*shape) == (shape[0] % quantize.INT4_BLOCK == 0)
        monkeypatch.setattr(quantize, "_READS", {shape: False})  # a packing not read here
        assert not quantize.reads_int4_packing(*shape)
        assert torch.equal(layer.bfloat16_weight(), expected)
        monkeypatch.undo()
    # The checks themselves: a packing read wrongly, or other arithmetic, is refused.
    monkeypatch.setattr(quantize, "_READS", {})
    monkeypatch.setattr(quantize, "unpacked_levels",
                        lambda packed, outputs: torch.zeros(outputs, 96 // INT4_GROUP,
                                                            INT4_GROUP))
    assert not quantize.reads_int4_packing(64, 96)
    monkeypatch.undo()
    monkeypatch.setattr(quantize, "_READS", {})
    monkeypatch.setattr(quantize, "_ARITHMETIC", [])
    monkeypatch.setattr(quantize, "kernel_weight",
                        lambda levels, pairs: (levels - 7) * pairs.float().transpose(0, 1)[
                            ..., 0:1])
    assert not quantize.reads_int4_packing(64, 96)


def mapped_kib(ranges: list[tuple[int, int]]) -> int:
    """Resident KiB of this process's mappings that start at one of ``ranges``."""
    starts = {low for low, _ in ranges}
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(maxsplit=1)[0]
            if "-" in head and not head.endswith(":"):
                inside = int(head.split("-")[0], 16) in starts
            elif inside and head == "Rss:":
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="Linux's /proc only")
def test_a_converted_weights_file_pages_are_handed_back_and_nothing_else(
        embedded_model_dir: Path) -> None:
    """The float32 weights of a checkpoint lie in its mapped safetensors file: once a layer is
    converted, the pages its weight was read into are handed back (the process's memory no
    longer holds the file's pages), and a weight read again afterwards has its values, read
    from the file; a tensor outside any such file is left alone."""
    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32)
    mapped = quantize.file_mappings()
    weight = model.model.layers[3].mlp.gate_proj.weight.detach()
    # This model's mapping of the file (another model loaded earlier in this process, by
    # another test, has its own)
    ours = [(low, high) for low, high in mapped if low <= weight.data_ptr() < high]
    assert ours, "transformers mapped no safetensors file"
    expected = weight.clone()  # reads every page of it
    before = mapped_kib(ours)
    quantize.release_file_pages(weight, mapped)
    after = mapped_kib(ours)
    assert before - after >= weight.numel() * 4 // 1024 - 8  # all but its edge pages
    assert torch.equal(weight, expected)  # read from the file again
    elsewhere = torch.randn(512, 1024)
    kept = elsewhere.clone()
    quantize.release_file_pages(elsewhere, mapped)
    assert torch.equal(elsewhere, kept)
    # Converted, the file's pages left are the embedding table's (the tied output layer's
    # weight, which the embedding keeps until the model is cast), not the ~430 MB of the
    # layers' weights.
    table = model.get_input_embeddings().weight
    quantize.quantize_linears(model, Int4Linear)
    assert mapped_kib(ours) <= table.numel() * 4 // 1024 + 4096


def test_where_onednn_cannot_pack_the_layers_keep_no_dense_copy(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A torch whose oneDNN cannot pack a copy: the model loads without any (a warning says
    why), and its layers answer by their packed kernels at every width."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32, bias=False))
    quantize_linears(model, Int4Linear)
    model.to(torch.bfloat16)
    wide = torch.randn(quantize.DENSE_ROWS * 2, 64).bfloat16()
    expected = model[0](wide)

    def refused(weight: torch.Tensor) -> quantize.Dense:
        raise RuntimeError("no oneDNN packing here")

    monkeypatch.setattr(quantize, "pack_dense", refused)
    with caplog.at_level("WARNING", logger=quantize.__name__):
        assert quantize.keep_dense(model) == 0
    assert "keep no dense copies: oneDNN could not pack one (RuntimeError: no oneDNN" in caplog.text
    assert model[0].dense is None
    assert torch.equal(model[0](wide), expected)


@pytest.mark.skipif(not BF16_ON_ONEDNN, reason="oneDNN has no bfloat16 product on this CPU")
def test_wide_passes_take_the_dense_copies_and_narrow_ones_never(
    embedded_model_dir: Path, adapter_a: AdapterRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With dense copies kept: a pass of DENSE_ROWS tokens or more (a prompt slice computed
    alone by the lean pass or by the model's own forward for prompt logprobs, or a decode
    step joined by a slice) multiplies them by the dense copies, both paths giving the same
    logits; a narrower pass (a decode step of a few rows, a short slice) takes the packed
    kernels; the fused q/k/v and gate/up copies are one packed copy each, which the modules
    share."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from arkor.engine.local import decode, mixed_lora
    from arkor.engine.local.adapters import AdapterSet
    from arkor.engine.local.batch import BatchTensors, new_cache

    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32)
    quantize.apply_precision(model, "int4", torch.device("cpu"), dense_copies=True)
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    adapters = AdapterSet(model, 4, torch.device("cpu"))
    name = adapters.acquire(adapter_a, None)
    assert name is not None and adapters._lean is not None
    # The Python layers, whose products are watched here: the scripted step's are compared
    # with them bit for bit in tests/engine/test_scripted.py.
    adapters._lean.scripted = False
    q_proj = model.model.layers[0].self_attn.q_proj.base_layer
    fused = adapters._lean.fused[0][0]
    assert fused is not None and fused.dense is not None and q_proj.dense is not None
    assert q_proj.dense.packed is fused.dense.packed
    assert (q_proj.dense.start, q_proj.dense.size) == (0, 576)
    calls: list[bool] = []  # each product: whether it took a dense copy
    real = decode.product

    def spied(flat: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        dense = args[2]
        calls.append(dense is not None and flat.shape[0] >= quantize.DENSE_ROWS)
        return real(flat, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(decode, "product", spied)
    # The adapter's products in a wide pass: its LoRA terms folded into the dense copies'
    # products (mixed_lora.folded), by the lean pass and the model's own forward alike
    folds: list[int] = []
    real_folded = mixed_lora.folded

    def folded(x: torch.Tensor, *args: Any) -> torch.Tensor:
        folds.append(x.numel() // x.shape[-1])
        return real_folded(x, *args)

    monkeypatch.setattr(decode, "folded", folded)
    monkeypatch.setattr(mixed_lora, "folded", folded)
    text = "What is the capital of France? Answer in one short sentence, please."
    ids, mask, positions = BatchTensors.prompts(
        [tokenizer(text)["input_ids"]], 0, torch.device("cpu"))
    assert ids.shape[1] >= quantize.DENSE_ROWS

    def prompt(run: object, columns: int) -> tuple[torch.Tensor, BatchTensors]:
        cache = new_cache()
        inputs = {"input_ids": ids[:, :columns], "attention_mask": mask[:, :columns],
                  "position_ids": positions[:, :columns], "cache": cache, "use_cache": True,
                  "logits_to_keep": 1, "prompt": True}
        out = run([name], **inputs)  # type: ignore[operator]
        logits = out.logits[:, -1]
        return logits, BatchTensors(cache, mask[:, :columns], positions[:, columns - 1] + 1,
                                    logits.argmax(-1))

    with torch.inference_mode():
        lean, batch = prompt(adapters.lean_forward, ids.shape[1])
        # Every layer's products dense; the output layer's is integer_product, or the packed
        # kernel (one column) where that is slow here.
        head = [] if model.lm_head.integer else [False]
        assert len(calls) > 1 and set(calls[:len(calls) - len(head)]) == {True}
        assert calls[len(calls) - len(head):] == head
        layers = len(model.model.layers)
        assert folds == [ids.shape[1]] * layers, "one folded q/k/v product a layer"
        folds.clear()
        by_model, _ = prompt(adapters.forward, ids.shape[1])
        assert torch.equal(lean, by_model)
        # q and v each compute the group's whole folded product (k has no adapter)
        assert folds == [ids.shape[1]] * 2 * layers
        folds.clear()
        calls.clear()
        prompt(adapters.lean_forward, quantize.DENSE_ROWS - 1)
        assert calls and set(calls) == {False}
        assert folds == [], "a narrow pass adds its LoRA terms to the packed kernels' products"
        calls.clear()
        adapters.lean_forward([name], **batch.step_inputs())
        assert calls and set(calls) == {False}
        calls.clear()
        other = new_cache()
        adapters.joined_passes(
            [([name], batch.step_inputs()),
             ([name], {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                       "cache": other, "use_cache": True, "logits_to_keep": 1,
                       "prompt": True})],
            [True, True])
        assert len(calls) > 1 and set(calls[:len(calls) - len(head)]) == {True}

"""The scripted decode step (``scripted.decoder_layers``) gives the Python layers' logits and
cache bit for bit, and is the one taken for decode steps at int8 and int4: one row on the
base model or on an adapter, and a padded batch mixing the base model with adapters on q/v
alone and on all seven projections of every layer."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from arkor.engine.base import AdapterRef
from arkor.engine.local import decode, scripted
from arkor.engine.local.adapters import BASE_ADAPTER_NAME, AdapterSet
from arkor.engine.local.batch import BatchTensors, growing_layers, new_cache
from arkor.engine.local.decode import LeanDecoder
from arkor.engine.local.quantize import DENSE_ROWS, apply_precision
from arkor.engine.registry import EMBEDDED_MODEL_NAME

PROMPTS = ["What is the capital of France?", "I was charged twice this month.",
           "Die Katze schläft auf dem Sofa.", "Hi"]
# (module path in a layer, input width, output width) of SmolLM2-135M
PROJECTIONS = {"self_attn.q_proj": (576, 576), "self_attn.k_proj": (576, 192),
               "self_attn.v_proj": (576, 192), "self_attn.o_proj": (576, 576),
               "mlp.gate_proj": (576, 1536), "mlp.up_proj": (576, 1536),
               "mlp.down_proj": (1536, 576)}


def every_projection_adapter(path: Path, modules: tuple[str, ...] = tuple(PROJECTIONS),
                             seed: int = 7) -> AdapterRef:
    """An adapter of random weights on all seven projections of every layer (or on
    ``modules``)."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(30):
        for module in modules:
            width, out = PROJECTIONS[module]
            stem = f"base_model.model.model.layers.{layer}.{module}"
            tensors[f"{stem}.lora_A.weight"] = torch.randn(8, width, generator=generator) / 24
            tensors[f"{stem}.lora_B.weight"] = torch.randn(out, 8, generator=generator) / 8
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16,
        "target_modules": [name.rsplit(".", 1)[1] for name in modules],
        "base_model_name_or_path": EMBEDDED_MODEL_NAME}))
    save_file(tensors, str(path / "adapter_model.safetensors"))
    return AdapterRef(key=f"test:{path.name}", path=path)


def prefilled(adapters: AdapterSet, names: list[str], tokenizer: Any) -> BatchTensors:
    prompts = [tokenizer(PROMPTS[i % len(PROMPTS)])["input_ids"] for i in range(len(names))]
    ids, mask, positions = BatchTensors.prompts(prompts, 0, torch.device("cpu"))
    cache = new_cache()
    with torch.inference_mode():
        out = adapters.lean_forward(names, input_ids=ids, attention_mask=mask,
                                    position_ids=positions, cache=cache, use_cache=True,
                                    logits_to_keep=1)
    return BatchTensors(cache, mask, positions[:, -1] + 1, out.logits[:, -1].argmax(-1))


def served(model_dir: Path, precision: str) -> tuple[AdapterSet, LeanDecoder, Any]:
    """The embedded model at ``precision`` in an :class:`AdapterSet` of 4 slots, its lean
    decoder, and its tokenizer; its layers keep dense copies (quantize.keep_dense) wherever
    oneDNN multiplies bfloat16 here, so wide passes take them."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    apply_precision(model, precision, torch.device("cpu"),
                    dense_copies=bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))
    model.eval()
    adapters = AdapterSet(model, 4, torch.device("cpu"))
    assert adapters._lean is not None
    return adapters, adapters._lean, AutoTokenizer.from_pretrained(model_dir)


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_the_scripted_step_equals_the_python_layers(
    precision: str, embedded_model_dir: Path, adapter_a: AdapterRef, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    adapters, lean, tokenizer = served(embedded_model_dir, precision)
    assert lean.scripted
    qv = adapters.acquire(adapter_a, None)
    every = adapters.acquire(every_projection_adapter(tmp_path / "every"), None)
    assert qv is not None and every is not None
    calls: list[int] = []
    wide: list[bool] = []
    real = decode.run_unoptimized

    folded: list[bool] = []

    def counted(*args: Any) -> torch.Tensor:
        calls.append(args[1].shape[0])  # the step's rows
        wide.append(args[11])  # decoder_layers' ``wide``: the products on the dense copies
        # its ``lora_b``: the stacks' folded forms (oneDNN's packed weights) in a wide pass,
        # the attention's products' alone (Dense.folds: q/k/v's group at q, and o)
        forms = {index % 7 for index, b in enumerate(args[14])
                 if b is not None and b.is_mkldnn}
        assert not forms or forms == ({0, 3} if every in names else {0}), forms
        folded.append(bool(forms))
        return real(*args)

    monkeypatch.setattr(decode, "run_unoptimized", counted)
    qkv = lean.fused[0][0]
    dense = qkv is not None and qkv.dense is not None
    assert dense == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    nine = [every, qv, BASE_ADAPTER_NAME, every, qv, every, BASE_ADAPTER_NAME, qv, every]
    for names in ([BASE_ADAPTER_NAME], [qv], [every],
                  [BASE_ADAPTER_NAME, every, qv, every], [every, every], nine):
        by_script = prefilled(adapters, names, tokenizer)
        assert calls == [], "a prompt goes through the Python layers"
        by_python = copy.deepcopy(by_script)
        for _ in range(3):
            with torch.inference_mode():
                lean.scripted = True
                got = adapters.lean_forward(names, **by_script.step_inputs()).logits
                assert calls == [len(names)], f"{names}: the step was scripted"
                lean.scripted = False
                expected = adapters.lean_forward(names, **by_python.step_inputs()).logits
                assert calls == [len(names)], "scripted=False: the Python layers"
                lean.scripted = True
            assert wide == [dense and len(names) >= DENSE_ROWS], names
            assert folded == wide, "a wide pass with adapters folds their terms in"
            calls.clear()
            wide.clear()
            folded.clear()
            assert torch.equal(got, expected), names
            for mine, theirs in zip(growing_layers(by_script.cache),
                                    growing_layers(by_python.cache), strict=True):
                assert torch.equal(mine.contents()[0], theirs.contents()[0])
                assert torch.equal(mine.contents()[1], theirs.contents()[1])
            tokens = expected[:, -1].argmax(-1).tolist()
            by_script.append_step(tokens)
            by_python.append_step(tokens)
    # The adapter on every projection changes the step: its rows' logits are not the base
    # model's.
    batch = prefilled(adapters, [BASE_ADAPTER_NAME, every], tokenizer)
    inputs = batch.step_inputs()
    with torch.inference_mode():
        mixed = adapters.lean_forward([BASE_ADAPTER_NAME, every], **copy.deepcopy(inputs)).logits
        base = adapters.lean_forward([BASE_ADAPTER_NAME] * 2, **inputs).logits
    assert torch.equal(mixed[0], base[0]) and not torch.equal(mixed[1], base[1])


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
                    reason="oneDNN has no bfloat16 product on this CPU: no dense copies")
def test_folded_terms_land_on_their_own_projections_columns(
    embedded_model_dir: Path, tmp_path: Path
) -> None:
    """A wide pass's LoRA terms folded into the attention's products (mixed_lora.folded)
    are the terms added to those products (the dense copies told not to fold), to bfloat16
    rounding, for adapters whose span starts past a product's first column (v alone, its
    own stack; then with k and o, one stack from k): each row's own adapter's term on its
    own projections' outputs, none on a base row; and the scripted step folds them as the
    Python layers do, bit for bit."""
    adapters, lean, tokenizer = served(embedded_model_dir, "int4")
    q, k = PROJECTIONS["self_attn.q_proj"][1], PROJECTIONS["self_attn.k_proj"][1]
    v_only = adapters.acquire(every_projection_adapter(
        tmp_path / "v", ("self_attn.v_proj",), seed=1), None)
    assert v_only is not None
    # each adapter's outputs: (q/k/v's columns, o's) where its term lands
    own = {v_only: (slice(q + k, None), slice(0, 0)),
           BASE_ADAPTER_NAME: (slice(0, 0), slice(0, 0))}

    def check(names: list[str]) -> None:
        assert len(names) >= DENSE_ROWS
        batch = prefilled(adapters, names, tokenizer)
        with torch.inference_mode():
            lean.scripted = True
            by_script = adapters.lean_forward(names, **copy.deepcopy(batch).step_inputs())
            lean.scripted = False
            by_python = adapters.lean_forward(names, **batch.step_inputs())
        assert torch.equal(by_script.logits, by_python.logits)
        with adapters._rows(names):
            rows = adapters._row_adapters
            layout = lean.layout(rows)
        layer = layout.layers[3]
        qkv, o_proj = layer.qkv, decode.base_of(layer.o_module)
        assert qkv is not None and qkv.dense is not None and qkv.dense.folds
        assert o_proj.dense.folds
        x = torch.randn(len(names), 1, 576, generator=torch.Generator().manual_seed(0))
        x = x.bfloat16()
        with torch.inference_mode():
            folded = [qkv.project(layer.qkv_modules, layer.qkv_plans, x, rows)[1],
                      decode.project_as(layer.o_module, layer.o_base, layer.o_plan, x, rows)]
            bases = [dense.product(x.view(len(names), -1)).view(len(names), 1, -1)
                     for dense in (qkv.dense, o_proj.dense)]
            qkv.dense = dataclasses.replace(qkv.dense, folds=False)
            o_proj.dense = dataclasses.replace(o_proj.dense, folds=False)
            added = [qkv.project(layer.qkv_modules, layer.qkv_plans, x, rows)[1],
                     decode.project_as(layer.o_module, layer.o_base, layer.o_plan, x, rows)]
            qkv.dense = dataclasses.replace(qkv.dense, folds=True)
            o_proj.dense = dataclasses.replace(o_proj.dense, folds=True)
        for product, (fold, add, base) in enumerate(zip(folded, added, bases, strict=True)):
            assert fold is not None and add is not None
            for row, name in enumerate(names):
                term, expected = (fold[row] - base[row]).float(), (add[row] - base[row]).float()
                outside = torch.ones(term.shape[-1], dtype=torch.bool)
                outside[own[name][product]] = False
                assert not term[..., outside].any(), (product, name)
                assert not expected[..., outside].any(), (product, name)
                if own[name][product] != slice(0, 0):
                    scale = float(expected.abs().max())
                    assert scale > 0.1, "the adapter's term is there"
                    # to bfloat16 rounding: of the outputs (two roundings), and of the
                    # term's own products (A, B and x @ A in bfloat16)
                    torch.testing.assert_close(fold[row].float(), add[row].float(),
                                               rtol=2**-7, atol=0.02 * scale,
                                               msg=f"{product}, {name}")

    check([v_only, BASE_ADAPTER_NAME, v_only, v_only, BASE_ADAPTER_NAME, v_only, v_only,
           BASE_ADAPTER_NAME, v_only])
    k_and_o = adapters.acquire(every_projection_adapter(
        tmp_path / "ko", ("self_attn.k_proj", "self_attn.o_proj"), seed=2), None)
    assert k_and_o is not None
    own[k_and_o] = (slice(q, q + k), slice(None))
    check([v_only, BASE_ADAPTER_NAME, k_and_o, v_only, k_and_o, v_only, BASE_ADAPTER_NAME,
           k_and_o, v_only])


def test_a_groups_lora_terms_are_one_product(embedded_model_dir: Path,
                                             adapter_a: AdapterRef) -> None:
    """A q/v adapter's terms in a layer whose q, k and v are one int4 product are one
    ``x @ A`` and one ``(...) @ B`` (mixed_lora.group): two matrix products a layer in a
    one-row scripted step, where q's and v's own took four, and the step gives the model
    forward's logits (which takes each projection's columns of the same two products)."""
    adapters, lean, tokenizer = served(embedded_model_dir, "int4")
    assert lean.scripted
    name = adapters.acquire(adapter_a, None)
    assert name is not None
    by_lean = prefilled(adapters, [name], tokenizer)
    by_forward = copy.deepcopy(by_lean)
    with torch.inference_mode():
        with torch.profiler.profile() as profiler:
            got = adapters.lean_forward([name], **by_lean.step_inputs()).logits
        expected = adapters.forward([name], **by_forward.step_inputs()).logits
    counts = Counter(event.name for event in profiler.events())
    assert counts["decoder_layers"] == 1, "the step was scripted"
    assert counts["aten::mm"] == 2 * 30, counts["aten::mm"]
    assert torch.equal(got, expected)


def test_float_models_take_the_python_layers(embedded_model_dir: Path) -> None:
    """No fused packed projections (float32, bfloat16): nothing for the script to take."""
    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32)
    adapters = AdapterSet(model, 4, torch.device("cpu"))
    assert adapters._lean is not None
    assert adapters._lean.layout(None).scripted is None


def test_without_torchscript_the_python_layers_serve(
    embedded_model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where TorchScript cannot compile the step, decode steps take the Python layers (the
    same logits) and say so once in the log."""
    adapters, lean, tokenizer = served(embedded_model_dir, "int4")
    by_script = prefilled(adapters, [BASE_ADAPTER_NAME], tokenizer)
    by_python = copy.deepcopy(by_script)
    with torch.inference_mode():
        expected = adapters.lean_forward([BASE_ADAPTER_NAME], **by_script.step_inputs()).logits

    def fails(function: object) -> None:
        raise RuntimeError("TorchScript is not available")

    monkeypatch.setattr(scripted, "_SCRIPTED", [])
    monkeypatch.setattr(torch.jit, "script", fails)
    with torch.inference_mode():
        got = adapters.lean_forward([BASE_ADAPTER_NAME], **by_python.step_inputs()).logits
        adapters.lean_forward([BASE_ADAPTER_NAME], **by_python.step_inputs())
    assert torch.equal(got, expected)
    assert not lean.scripted
    warned = [r.getMessage() for r in caplog.records if "Python layers" in r.getMessage()]
    assert warned == ["decode steps take the Python layers: TorchScript could not compile "
                      "the scripted step (RuntimeError: TorchScript is not available)"]


def test_the_scripted_step_grows_a_full_cache_as_update_does(
    embedded_model_dir: Path, adapter_a: AdapterRef
) -> None:
    """Past the cache's spare columns the scripted step moves it to a larger buffer first
    (``GrowingLayer.room_for``), as ``update`` does: 70 steps, every one equal to the Python
    layers', the cache too."""
    adapters, lean, tokenizer = served(embedded_model_dir, "int4")
    name = adapters.acquire(adapter_a, None)
    assert name is not None
    by_script = prefilled(adapters, [name], tokenizer)
    by_python = copy.deepcopy(by_script)
    first = growing_layers(by_script.cache)[0]

    def capacity() -> int:
        buffers = first.room_for(0)
        assert buffers is not None
        return int(buffers[0].shape[-2])

    before = capacity()
    for _ in range(70):
        with torch.inference_mode():
            lean.scripted = True
            got = adapters.lean_forward([name], **by_script.step_inputs()).logits
            lean.scripted = False
            expected = adapters.lean_forward([name], **by_python.step_inputs()).logits
        assert torch.equal(got, expected)
        tokens = expected[:, -1].argmax(-1).tolist()
        by_script.append_step(tokens)
        by_python.append_step(tokens)
    assert capacity() > before, "the cache outgrew its buffer"
    for mine, theirs in zip(growing_layers(by_script.cache), growing_layers(by_python.cache),
                            strict=True):
        assert torch.equal(mine.contents()[0], theirs.contents()[0])
        assert torch.equal(mine.contents()[1], theirs.contents()[1])


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_joined_passes_scripted_equal_the_python_layers(
    precision: str, embedded_model_dir: Path, adapter_a: AdapterRef, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A decode step of running rows and a prefill slice of newcomers as one pass (chunked
    prefill): the scripted passes give the Python layers' logits and caches bit for bit, for a
    slice with padding (a mask) and one without; a first slice (an empty cache) takes the
    Python layers."""
    adapters, lean, tokenizer = served(embedded_model_dir, precision)
    qv = adapters.acquire(adapter_a, None)
    every = adapters.acquire(every_projection_adapter(tmp_path / "every"), None)
    assert qv is not None and every is not None
    joined_function = scripted.scripted_decoder_layers()
    used: list[bool] = []
    real = decode.run_unoptimized

    def counted(function: Any, *args: Any) -> torch.Tensor:
        used.append(function is joined_function)
        return real(function, *args)

    monkeypatch.setattr(decode, "run_unoptimized", counted)
    running = [BASE_ADAPTER_NAME, every, qv, every]
    for newcomers, texts in (([qv, BASE_ADAPTER_NAME], ["Tell me a story about a dragon.", "Why?"]),
                             ([every], ["Write a poem about the sea and the wind."])):
        batch = prefilled(adapters, running, tokenizer)
        prompts = [tokenizer(t)["input_ids"] for t in texts]
        ids, mask, positions = BatchTensors.prompts(prompts, 0, torch.device("cpu"))
        states = {mode: (copy.deepcopy(batch), new_cache()) for mode in (True, False)}
        cuts = (0, 3, ids.shape[1] - 2, ids.shape[1])
        for index, (start, end) in enumerate(itertools.pairwise(cuts)):
            found = {}
            for mode, (rows, cache) in states.items():
                lean.scripted = mode
                used.clear()
                with torch.inference_mode():
                    found[mode] = adapters.joined_passes(
                        [(running, rows.step_inputs()),
                         (newcomers, {"input_ids": ids[:, start:end],
                                      "attention_mask": mask[:, :end],
                                      "position_ids": positions[:, start:end],
                                      "use_cache": True, "logits_to_keep": 1, "cache": cache})],
                        [True, True])
                assert used == ([True] if mode and index > 0 else []), (mode, index, used)
            for got, expected in zip(found[True], found[False], strict=True):
                assert got is not None and expected is not None
                assert torch.equal(got, expected)
            tokens = found[False][0].argmax(-1).tolist()
            for rows, _ in states.values():
                rows.append_step(tokens)
        for mine, theirs in ((states[True][0].cache, states[False][0].cache),
                             (states[True][1], states[False][1])):
            for a, b in zip(growing_layers(mine), growing_layers(theirs), strict=True):
                assert torch.equal(a.contents()[0], b.contents()[0])
                assert torch.equal(a.contents()[1], b.contents()[1])

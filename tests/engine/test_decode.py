"""The lean forward pass gives the logits and the cache of the model's own forward, bit for
bit, for prefill slices and decode steps, at every precision and with a batch mixing the base
model and two adapters."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import AttentionInterface

from arkor.engine.base import AdapterRef
from arkor.engine.local import decode
from arkor.engine.local.adapters import BASE_ADAPTER_NAME, AdapterSet
from arkor.engine.local.batch import BatchTensors, growing_layers, new_cache
from arkor.engine.local.decode import attend, supports
from arkor.engine.local.quantize import Int4Linear, apply_precision

PROMPTS = ["What is the capital of France?", "I was charged twice this month.",
           "Die Katze schläft auf dem Sofa.", "Hi"]


def prefill(adapters: AdapterSet, names: list[str], tokenizer: object,
            lean: bool) -> tuple[BatchTensors, torch.Tensor]:
    """A left-padded batch of ``PROMPTS`` prefilled in two slices (the second from the cache
    the first left, as chunked prefill does), by the model's forward or the lean one; and the
    logits of the last column."""
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS]  # type: ignore[operator]
    ids, mask, positions = BatchTensors.prompts(prompts, 0, torch.device("cpu"))
    cache, run = new_cache(), adapters.lean_forward if lean else adapters.forward
    cut = ids.shape[1] // 2
    with torch.inference_mode():
        for start, end in ((0, cut), (cut, ids.shape[1])):
            out = run(names, input_ids=ids[:, start:end], attention_mask=mask[:, :end],
                      position_ids=positions[:, start:end], cache=cache, use_cache=True,
                      logits_to_keep=1)
    logits = out.logits[:, -1]
    return BatchTensors(cache, mask, positions[:, -1] + 1, logits.argmax(-1)), logits


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "int8", "int4"])
def test_the_lean_forward_equals_the_model_forward(
    precision: str, embedded_model_dir: Path, adapter_a: AdapterRef, adapter_b: AdapterRef
) -> None:
    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32)
    apply_precision(model, precision, torch.device("cpu"))
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    adapters = AdapterSet(model, 4, torch.device("cpu"))
    assert adapters._lean is not None, "the embedded model is decoded by the lean step"
    first = adapters.acquire(adapter_a, None)
    second = adapters.acquire(adapter_b, None)
    assert first is not None and second is not None
    names = [BASE_ADAPTER_NAME, first, second, first]
    by_forward, expected = prefill(adapters, names, tokenizer, lean=False)
    by_lean, got = prefill(adapters, names, tokenizer, lean=True)
    assert torch.equal(got, expected)
    for _ in range(3):  # the cache grows in place, then past its spare columns' first use
        with torch.inference_mode():
            expected = adapters.forward(names, **by_forward.step_inputs()).logits
            got = adapters.lean_forward(names, **by_lean.step_inputs()).logits
        assert torch.equal(got, expected)
        for mine, theirs in zip(growing_layers(by_lean.cache), growing_layers(by_forward.cache),
                                strict=True):
            assert torch.equal(mine.contents()[0], theirs.contents()[0])
            assert torch.equal(mine.contents()[1], theirs.contents()[1])
        tokens = expected[:, -1].argmax(-1).tolist()
        by_forward.append_step(tokens)
        by_lean.append_step(tokens)
    # The adapters take part: the adapter rows' logits differ from the base model's.
    with torch.inference_mode():
        base_only = adapters.lean_forward([BASE_ADAPTER_NAME] * 4, **by_lean.step_inputs()).logits
        mixed = adapters.lean_forward(names, **copy.deepcopy(by_forward).step_inputs()).logits
    assert torch.equal(base_only[0], mixed[0])
    assert not torch.equal(base_only[1], mixed[1]) and not torch.equal(base_only[2], mixed[2])


def packed_attention(module: object, query: torch.Tensor, key: torch.Tensor,
                     value: torch.Tensor, mask: object, **_: object) -> tuple[torch.Tensor, None]:
    """Transformers' SDPA attention as the lean step calls it (:func:`attend`)."""
    return attend(module, query, key, value, mask), None


# The model's forward with its attention as the lean step calls it: without a mask, the model
# asks SDPA for ``enable_gqa``, whose numbers differ from the packed call's in the last bits
# on some CPUs (float32 everywhere; on an AVX2-only one the int4 model's bfloat16 ones too,
# its cache from the 25th layer of the second step on). ``attend`` against transformers' own
# call has its test below.
@pytest.mark.parametrize("precision", ["bfloat16", "int4"])
def test_a_one_row_step_equals_the_model_forward(
    precision: str, embedded_model_dir: Path, adapter_a: AdapterRef, adapter_b: AdapterRef,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One stream's decode step, as the engine takes it most: one row, no padding, an adapter
    among two attached. The lean step skips building a mask (create_causal_mask's answer for
    it is None) and takes the row's adapter's own LoRA columns; the logits and cache are the
    model forward's, bit for bit, on the base model and on each adapter."""
    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32)
    apply_precision(model, precision, torch.device("cpu"))
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    adapters = AdapterSet(model, 4, torch.device("cpu"))
    first, second = adapters.acquire(adapter_a, None), adapters.acquire(adapter_b, None)
    assert first is not None and second is not None
    masks: list[object] = []
    real_mask = decode.create_causal_mask

    def counted(*args: object, **kwargs: object) -> object:
        masks.append(real_mask(*args, **kwargs))
        return masks[-1]

    monkeypatch.setattr(decode, "create_causal_mask", counted)
    monkeypatch.setitem(AttentionInterface._global_mapping, "sdpa", packed_attention)
    found: dict[str, torch.Tensor] = {}
    for name in (BASE_ADAPTER_NAME, first, second):
        ids, mask, positions = BatchTensors.prompts([tokenizer(PROMPTS[0])["input_ids"]], 0,
                                                    torch.device("cpu"))
        batches = []
        with torch.inference_mode():
            for _ in range(2):
                cache = new_cache()
                out = adapters.forward([name], input_ids=ids, attention_mask=mask,
                                       position_ids=positions, cache=cache, use_cache=True)
                batches.append(BatchTensors(cache, mask, positions[:, -1] + 1,
                                            out.logits[:, -1].argmax(-1)))
            by_forward, by_lean = batches
            for _ in range(2):
                expected = adapters.forward([name], **by_forward.step_inputs()).logits
                masks.clear()
                got = adapters.lean_forward([name], **by_lean.step_inputs()).logits
                assert masks == [], "a one-row step with no padding builds no mask"
                assert torch.equal(got, expected)
                for mine, theirs in zip(growing_layers(by_lean.cache),
                                        growing_layers(by_forward.cache), strict=True):
                    assert torch.equal(mine.contents()[0], theirs.contents()[0])
                tokens = expected[:, -1].argmax(-1).tolist()
                by_forward.append_step(tokens)
                by_lean.append_step(tokens)
        found[name] = got
    assert not torch.equal(found[first], found[BASE_ADAPTER_NAME])
    assert not torch.equal(found[second], found[first])


def test_a_layout_of_adapters_keeps_no_copy_of_the_weights(
    embedded_model_dir: Path, adapter_a: AdapterRef, adapter_b: AdapterRef
) -> None:
    """The parts the lean decoder keeps per layout of adapters (one per set of adapters the
    rows use, up to 64) refer to the model's own weights and scales: a kept copy, such as a
    fused int4 module's strided scales made contiguous, would grow with every layout."""
    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32)
    apply_precision(model, "int4", torch.device("cpu"))
    adapters = AdapterSet(model, 4, torch.device("cpu"))
    first, second = adapters.acquire(adapter_a, None), adapters.acquire(adapter_b, None)
    assert first is not None and second is not None and adapters._lean is not None
    owned = {t.untyped_storage().data_ptr()
             for t in [*model.parameters(), *model.buffers()]}
    copies = [dense for pair in adapters._lean.fused for fused in pair if fused is not None
              for dense in [fused.dense] if dense is not None]
    copies += [m.dense for m in model.modules()
               if isinstance(m, Int4Linear) and m.dense is not None]
    kept: list[torch.Tensor] = []
    for names in ([BASE_ADAPTER_NAME], [first], [second], [first, second, BASE_ADAPTER_NAME]):
        with adapters._rows(names):
            layout = adapters._lean.layout(adapters._row_adapters)
        functions = [layout.head_base]
        for layer in layout.layers:
            functions += [layer.o_base, layer.down_base, *layer.qkv_bases, *layer.gate_up_bases]
        kept += [cell.cell_contents for f in functions
                 for cell in (getattr(f, "__closure__", None) or ())
                 if isinstance(cell.cell_contents, torch.Tensor)]
        assert layout.scripted is not None, "int4 decode steps are scripted"
        kept += [t for t in layout.scripted.weights if isinstance(t, torch.Tensor)]
        # The dense copies (where kept: quantize.keep_dense) are the layers' own packed ones
        assert all(any(t is copy.packed for copy in copies) for t in layout.scripted.dense)
    assert kept, "the int4 projections' kernels are called with their weights looked up once"
    assert all(t.untyped_storage().data_ptr() in owned for t in kept)
    # Another adapter attached: the layouts of the generation before (their LoRA stacks
    # among them) are let go, not kept beside the new ones.
    assert len(adapters._lean._layouts) == 4
    third = adapters.acquire(AdapterRef(key="third", path=adapter_a.path), None)
    assert third is not None
    with adapters._rows([third]):
        adapters._lean.layout(adapters._row_adapters)
        generation = adapters._row_adapters.generation
    assert [key[0] for key in adapters._lean._layouts if key is not None] == [generation]


def test_other_architectures_decode_through_their_forward() -> None:
    class Other(torch.nn.Module):
        config = type("Config", (), {"_attn_implementation": "sdpa"})()

        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(4, 4)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.proj(input_ids)

    model = Other()
    assert not supports(model)
    assert not supports(object())
    adapters = AdapterSet(model, 1, torch.device("cpu"))  # type: ignore[arg-type]
    assert adapters._lean is None
    x = torch.randn(2, 4)
    assert torch.equal(adapters.lean_forward([BASE_ADAPTER_NAME] * 2, input_ids=x), model(x))


@pytest.mark.parametrize("precision", ["float32", "int8", "int4"])
def test_passes_joined_give_what_each_gives_alone(
    precision: str, embedded_model_dir: Path, adapter_a: AdapterRef, adapter_b: AdapterRef
) -> None:
    """A decode step of running rows and a prefill slice of newcomers, each with a cache of
    its own, computed as one pass (chunked prefill): each one's logits and cache as when it
    runs alone, to the rounding of the larger matrix products (the same greedy tokens).
    Without dense copies: where a CPU keeps them, the joined pass is wide enough to take
    them (quantize.DENSE_ROWS) and the step alone is not, which differs by bfloat16's
    rounding of the weights (tests/engine/test_precision.py measures that)."""
    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32)
    apply_precision(model, precision, torch.device("cpu"), dense_copies=False)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    adapters = AdapterSet(model, 4, torch.device("cpu"))
    assert adapters.can_join_passes
    first = adapters.acquire(adapter_a, None)
    second = adapters.acquire(adapter_b, None)
    assert first is not None and second is not None
    running = [BASE_ADAPTER_NAME, first, second, first]
    batch, _ = prefill(adapters, running, tokenizer, lean=True)
    newcomers = [second, BASE_ADAPTER_NAME]
    prompts = [tokenizer(p)["input_ids"] for p in ["Tell me a story about a dragon.", "Why?"]]
    ids, mask, positions = BatchTensors.prompts(prompts, 0, torch.device("cpu"))
    cut = ids.shape[1] - 3
    alone_batch, alone_cache = copy.deepcopy(batch), new_cache()
    joined_cache = new_cache()
    with torch.inference_mode():
        for start, end in ((0, cut), (cut, ids.shape[1])):
            slice_inputs = {"input_ids": ids[:, start:end], "attention_mask": mask[:, :end],
                            "position_ids": positions[:, start:end], "use_cache": True,
                            "logits_to_keep": 1}
            step_expected = adapters.lean_forward(running, **alone_batch.step_inputs()).logits
            slice_expected = adapters.lean_forward(newcomers, cache=alone_cache,
                                                   **slice_inputs).logits
            last = end == ids.shape[1]
            step_got, slice_got = adapters.joined_passes(
                [(running, batch.step_inputs()),
                 (newcomers, {**slice_inputs, "cache": joined_cache})], [True, last])
            assert step_got is not None
            torch.testing.assert_close(step_got, step_expected[:, -1], atol=2e-3, rtol=1e-3)
            assert torch.equal(step_got.argmax(-1), step_expected[:, -1].argmax(-1))
            if last:
                assert slice_got is not None
                torch.testing.assert_close(slice_got, slice_expected[:, -1], atol=2e-3,
                                           rtol=1e-3)
                assert torch.equal(slice_got.argmax(-1), slice_expected[:, -1].argmax(-1))
            else:
                assert slice_got is None
            tokens = step_expected[:, -1].argmax(-1).tolist()
            alone_batch.append_step(tokens)
            batch.append_step(tokens)
    for caches in ((batch.cache, alone_batch.cache), (joined_cache, alone_cache)):
        for mine, theirs in zip(*(growing_layers(c) for c in caches), strict=True):
            torch.testing.assert_close(mine.contents()[0], theirs.contents()[0],
                                       atol=2e-3, rtol=1e-3)
            torch.testing.assert_close(mine.contents()[1], theirs.contents()[1],
                                       atol=2e-3, rtol=1e-3)


def test_a_cache_made_with_room_never_copies_itself_to_grow() -> None:
    cache = new_cache(reserve=100)
    layer = cache.layer_class_to_replicate()
    keys = torch.zeros(1, 3, 10, 4)
    layer.update(keys, keys)
    buffer = layer._key_buffer
    for _ in range(9):  # 90 more columns, past SPARE_COLUMNS: still the first buffer
        layer.update(keys, keys)
    assert layer._key_buffer is buffer and layer.contents()[0].shape[2] == 100
    layer.update(keys, keys)
    assert layer._key_buffer is not buffer and layer.contents()[0].shape[2] == 110


def test_a_cache_layers_keys_are_its_buffers_columns_when_read() -> None:
    """``keys``/``values`` (what transformers reads) are the buffer's first ``length``
    columns, made when read: after columns written by the caller (a scripted step's
    ``room_for`` and ``advance``) as after ``update``; they cannot be replaced past the
    buffers, and ``reset`` empties the layer."""
    layer = new_cache().layer_class_to_replicate()
    assert layer.keys is None and layer.get_seq_length() == 0
    first = torch.arange(24, dtype=torch.float32).view(1, 2, 3, 4)
    layer.update(first, -first)
    room = layer.room_for(1)
    assert room is not None
    room[0][:, :, 3] = 7.0
    room[1][:, :, 3] = -7.0
    layer.advance(1)
    assert layer.get_seq_length() == 4
    assert torch.equal(layer.keys, torch.cat([first, torch.full((1, 2, 1, 4), 7.0)], dim=2))
    assert torch.equal(layer.values, -layer.keys)
    with pytest.raises(AttributeError, match="views of its buffers"):
        layer.keys = first
    layer.reset()
    assert layer.keys is None and layer.values is None and layer.get_seq_length() == 0
    layer.update(first, first)
    assert torch.equal(layer.keys, first)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_boolean_mask_is_made_additive_once_with_sdpas_numbers(dtype: torch.dtype) -> None:
    """A pass's boolean mask becomes the additive one SDPA would make of it on every call
    (0 and minus infinity in the query's dtype), once for all layers: SDPA's numbers bit for
    bit, for decode rows and slices; a mask that is not boolean (or none) is left as it is."""
    torch.manual_seed(2)
    for batch, heads, length, columns in ((1, 3, 24, 524), (16, 3, 3, 90), (16, 9, 1, 130),
                                          (2, 9, 40, 300)):
        query = torch.randn(batch, heads, length, 64, dtype=dtype)
        key, value = (torch.randn(batch, heads, columns, 64, dtype=dtype) for _ in range(2))
        mask = torch.rand(batch, 1, length, columns) > 0.2
        mask[..., -1] = True
        made = decode.additive(mask, dtype)
        assert made.dtype == dtype and made.shape == mask.shape
        assert torch.equal(made == 0, mask) and bool(torch.isinf(made[~mask]).all())
        sdpa = torch.nn.functional.scaled_dot_product_attention
        assert torch.equal(sdpa(query, key, value, attn_mask=made, scale=0.125),
                           sdpa(query, key, value, attn_mask=mask, scale=0.125))
    assert decode.additive(None, dtype) is None
    assert decode.additive(made, dtype) is made


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_masked_slice_packs_its_queries_and_gives_transformers_numbers(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass of several columns with a mask (a prompt slice over a cache, padded rows),
    joined to a decode step, packs each key/value head's query heads along the columns
    instead of repeating the keys and values for every head, as transformers does: its
    numbers up to the last bits (SDPA's blocking follows the query rows); a pass alone is
    transformers' call bit for bit, and so is any pass under TRANSFORMERS_SDPA_FORCE_GQA."""
    torch.manual_seed(1)
    module = type("Attention", (), {"num_key_value_groups": 3, "scaling": 0.125,
                                    "is_causal": True})()
    calls: list[tuple[int, ...]] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        calls.append(tuple(q.shape))
        return sdpa(q, *args, **kwargs)  # type: ignore[arg-type]

    for batch, length, past in ((1, 4, 850), (2, 24, 60), (3, 7, 0)):
        columns = past + length
        query = torch.randn(batch, 9, length, 64, dtype=dtype)
        key, value = (torch.randn(batch, 3, columns, 64, dtype=dtype) for _ in range(2))
        mask = torch.ones(batch, 1, length, columns, dtype=torch.bool).tril(past)
        mask[-1, ..., :3] = False  # a padded row
        expected, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.125)
        assert decode.packs_queries(mask)
        assert torch.equal(attend(module, query, key, value, mask), expected), (batch, length)
        calls.clear()
        with monkeypatch.context() as patched:
            patched.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
            joined = attend(module, query, key, value, mask, joined=True)
        assert calls == [(batch, 3, 3 * length, 64)]  # packed: the keys and values as they are
        torch.testing.assert_close(joined, expected, atol=0.02 if dtype == torch.bfloat16
                                   else 1e-5, rtol=0.0)
    monkeypatch.setenv("TRANSFORMERS_SDPA_FORCE_GQA", "1")
    assert not decode.packs_queries(mask)
    forced, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.125)
    assert torch.equal(attend(module, query, key, value, mask, joined=True), forced)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_decode_query_attends_on_the_key_value_heads_with_or_without_a_mask(
    dtype: torch.dtype, embedded_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decode step's one query always runs on the key/value heads (``attend``): without a
    mask (rows of one length, no padding) transformers asked SDPA for ``enable_gqa`` instead,
    4-5x as slow on the CPU from a few rows up; the packed call gives transformers' masked
    call's numbers bit for bit, so a row alone computes what it does with a mask of all its
    columns (not what it computes behind padding in a batch: docs/engine.md, "Precision")."""
    torch.manual_seed(0)
    module = type("Attention", (), {"num_key_value_groups": 3, "scaling": 0.125,
                                    "is_causal": True})()
    query = torch.randn(4, 9, 1, 64, dtype=dtype)
    key, value = (torch.randn(4, 3, 70, 64, dtype=dtype) for _ in range(2))
    every_column = torch.ones(4, 1, 1, 70, dtype=torch.bool)
    expected, _ = sdpa_attention_forward(module, query, key, value, every_column, scaling=0.125)
    assert torch.equal(attend(module, query, key, value, None), expected)
    assert torch.equal(attend(module, query, key, value, every_column), expected)
    padded = every_column.clone()
    padded[1, ..., :5] = False
    expected, _ = sdpa_attention_forward(module, query, key, value, padded, scaling=0.125)
    assert torch.equal(attend(module, query, key, value, padded), expected)

    # The embedded model's decode step, one row with no padding: every attention call packed.
    calls: list[tuple[tuple[int, ...], bool]] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        calls.append((tuple(q.shape), bool(kwargs.get("enable_gqa", False))))
        return sdpa(q, *args, **kwargs)  # type: ignore[arg-type]

    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32)
    apply_precision(model, "float32" if dtype == torch.float32 else "bfloat16",
                    torch.device("cpu"))
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    adapters = AdapterSet(model, 1, torch.device("cpu"))
    ids, mask, positions = BatchTensors.prompts([tokenizer("Hi there")["input_ids"]], 0,
                                                torch.device("cpu"))
    cache = new_cache()
    with torch.inference_mode():
        out = adapters.lean_forward([BASE_ADAPTER_NAME], input_ids=ids, attention_mask=mask,
                                    position_ids=positions, cache=cache, use_cache=True,
                                    logits_to_keep=1)
        batch = BatchTensors(cache, mask, positions[:, -1] + 1, out.logits[:, -1].argmax(-1))
        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
        adapters.lean_forward([BASE_ADAPTER_NAME], **batch.step_inputs())
    config = model.config
    groups = config.num_attention_heads // config.num_key_value_heads
    assert calls == [((1, config.num_key_value_heads, groups, 64), False)] * len(
        model.model.layers)


def test_the_norm_as_a_function_equals_the_module_bit_for_bit() -> None:
    """``rms_norm``'s function (its mean as a sum divided in place on the CPU) against
    ``LlamaRMSNorm`` itself, float32 and bfloat16, one row to many, scales small to large."""
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        norm = LlamaRMSNorm(576, eps=1e-5)
        with torch.no_grad():
            norm.weight.copy_(torch.randn(576, generator=generator))
        norm = norm.to(dtype)
        normed = decode.rms_norm(norm)
        for rows in (1, 3, 16):
            for scale in (1e-3, 1.0, 40.0):
                hidden = (torch.randn(rows, 1, 576, generator=generator) * scale).to(dtype)
                assert torch.equal(normed(hidden), norm(hidden)), (dtype, rows, scale)

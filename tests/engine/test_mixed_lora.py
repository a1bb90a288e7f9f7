"""The stacked mixed-adapter forward gives PEFT's own mixed-batch result, to float rounding,
and never applies weights an adapter no longer has."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora.layer import Linear

from arkor.engine.local.adapters import PEFT_DEPRECATION
from arkor.engine.local.mixed_lora import (
    RowAdapters,
    Share,
    Stack,
    folded,
    group,
    install,
    plan_of,
    row_adapters_of,
)
from arkor.engine.local.quantize import DENSE_ROWS, pack_dense

BASE = "__base__"


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = torch.nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q_proj(x)


def tiny_lora() -> tuple[torch.nn.Module, Linear]:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", PEFT_DEPRECATION, FutureWarning)
        model = get_peft_model(Tiny(), LoraConfig(r=4, target_modules=["q_proj"],
                                                  init_lora_weights=False), adapter_name="one")
    model.add_adapter("two", LoraConfig(r=2, lora_alpha=6, target_modules=["q_proj"],
                                        init_lora_weights=False))
    layer = model.base_model.model.q_proj
    assert isinstance(layer, Linear)
    return model, layer


def test_stacked_forward_equals_peft_mixed_batch() -> None:
    _, layer = tiny_lora()
    x = torch.randn(5, 3, 16)
    names = ["one", BASE, "two", "one", "two"]
    rows: list[RowAdapters] = [row_adapters_of(names, BASE, ("one", "two"), 1, x.device)]
    with torch.inference_mode():
        expected = layer(x, adapter_names=names)
        install(layer, lambda: rows[0])
        got = layer(x, adapter_names=names)
        assert [(n, r.tolist()) for n, r in rows[0].groups] == [("one", [0, 3]), ("two", [2, 4])]
        assert rows[0].which.view(-1).tolist() == [0, -1, 1, 0, 1]
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        # The base row has no LoRA term at all. Compared within the same batched matmul: one
        # row on its own may round differently from the same row inside a batch.
        base = layer.base_layer(x)
        assert torch.equal(got[1], base[1])
        assert not torch.equal(got[0], base[0]) and not torch.equal(got[2], base[2])
        # A row alone with its adapter gets what it gets among the others.
        alone = [row_adapters_of(["two"], BASE, ("one", "two"), 1, x.device)]
        install(layer, lambda: alone[0])
        torch.testing.assert_close(layer(x[2:3], adapter_names=["two"])[0], got[2],
                                   rtol=1e-5, atol=1e-6)


def test_a_new_generation_restacks_the_weights() -> None:
    _, layer = tiny_lora()
    x = torch.randn(2, 1, 16)
    names = ["one", "one"]
    rows = [row_adapters_of(names, BASE, ("one", "two"), 1, x.device)]
    with torch.inference_mode():
        install(layer, lambda: rows[0])
        before = layer(x, adapter_names=names).clone()
        layer.lora_B["one"].weight.mul_(2.0)  # new weights for "one", as a re-attach would give
        assert torch.equal(layer(x, adapter_names=names), before)  # same generation: cached
        rows[0] = row_adapters_of(names, BASE, ("one", "two"), 2, x.device)
        after = layer(x, adapter_names=names)
        base = layer.base_layer(x)
        torch.testing.assert_close(after - base, 2 * (before - base), rtol=1e-5, atol=1e-6)


def test_an_adapter_with_a_bias_on_lora_b_takes_pefts_path() -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", PEFT_DEPRECATION, FutureWarning)
        model = get_peft_model(Tiny(), LoraConfig(r=4, target_modules=["q_proj"],
                                                  init_lora_weights=False, lora_bias=True),
                               adapter_name="one")
    layer = model.base_model.model.q_proj
    assert isinstance(layer, Linear) and layer.lora_B["one"].bias is not None
    torch.nn.init.normal_(layer.lora_B["one"].bias)
    x = torch.randn(3, 2, 16)
    names = ["one", BASE, "one"]
    rows = row_adapters_of(names, BASE, ("one",), 1, x.device)
    with torch.inference_mode():
        expected = layer(x, adapter_names=names)
        install(layer, lambda: rows)
        assert torch.equal(layer(x, adapter_names=names), expected)


def test_rows_of_one_adapter_take_its_own_columns() -> None:
    """A pass whose rows all use one adapter multiplies by that adapter's columns alone (no
    mask): the masked product's numbers over every attached adapter's columns, to float
    rounding (the products have other shapes)."""
    _, layer = tiny_lora()
    x = torch.randn(3, 2, 16)
    with torch.inference_mode():
        for name in ("one", "two"):
            rows = row_adapters_of([name] * 3, BASE, ("one", "two"), 1, x.device)
            assert rows.only == ("one", "two").index(name)
            masked = dataclasses.replace(rows, only=None)
            install(layer, lambda rows=rows: rows)
            alone = layer(x, adapter_names=[name] * 3)
            install(layer, lambda masked=masked: masked)
            torch.testing.assert_close(alone, layer(x, adapter_names=[name] * 3), rtol=1e-6,
                                       atol=1e-6)
            assert not torch.equal(alone, layer.base_layer(x))
    mixed = row_adapters_of(["one", "two", "one"], BASE, ("one", "two"), 1, x.device)
    assert mixed.only is None
    assert row_adapters_of([BASE, BASE], BASE, ("one",), 1, x.device).only is None


class Attention(torch.nn.Module):
    """q, k and v of one input, as a decoder layer's."""

    def __init__(self) -> None:
        super().__init__()
        self.q_proj = torch.nn.Linear(16, 12)
        self.k_proj = torch.nn.Linear(16, 4)
        self.v_proj = torch.nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.q_proj(x), self.k_proj(x), self.v_proj(x)], dim=-1)


def attention_lora(order: tuple[str, ...]) -> list[torch.nn.Module]:
    """q, k and v with "qv" (rank 4) on q and v, and "all" (rank 2) on the three if asked."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", PEFT_DEPRECATION, FutureWarning)
        model = get_peft_model(Attention(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                       init_lora_weights=False),
                               adapter_name="qv")
    if "all" in order:
        model.add_adapter("all", LoraConfig(r=2, lora_alpha=6, init_lora_weights=False,
                                            target_modules=["q_proj", "k_proj", "v_proj"]))
    inner = model.base_model.model
    return [inner.q_proj, inner.k_proj, inner.v_proj]


def test_layers_of_a_group_take_their_columns_of_one_product() -> None:
    """q, k and v grouped (as the lean decoder fuses their base products): one stack for all,
    ``A`` side by side and ``B`` one block per layer and adapter over the span of their
    outputs, and each layer's output is PEFT's own, to float rounding: "qv" on q and v alone
    (k is not even a LoRA layer for it; the span runs over k's columns with zeros), then
    "all" on the three beside it, in a mixed batch and for rows of one adapter."""
    x = torch.randn(4, 2, 16)
    for order in (("qv",), ("qv", "all")):
        for names in ([order[-1], BASE, order[0], order[-1]], [order[-1]] * 4):
            layers = attention_lora(order)
            with torch.inference_mode():
                expected = [layer(x, adapter_names=names) if isinstance(layer, Linear)
                            else layer(x) for layer in layers]
            rows = row_adapters_of(names, BASE, order, 1, x.device)
            for layer in layers:
                install(layer, lambda rows=rows: rows)
            group(layers, [12, 4, 8])
            plans = [plan_of(layer, rows) if isinstance(layer, Linear) else None
                     for layer in layers]
            shares = [plan for plan in plans if isinstance(plan, Share)]
            assert len(shares) == (2 if order == ("qv",) else 3), (order, names)
            stack = shares[0].stack
            assert all(share.stack is stack for share in shares), "one stack for the group"
            assert isinstance(stack, Stack) and stack.b.shape[1] == 24  # q to v: k's between
            assert [(s.start, s.size) for s in shares] == (
                [(0, 12), (16, 8)] if order == ("qv",) else [(0, 12), (12, 4), (16, 8)])
            with torch.inference_mode():
                for layer, want in zip(layers, expected, strict=True):
                    got = layer(x, adapter_names=names) if isinstance(layer, Linear) else layer(x)
                    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
                    if isinstance(layer, Linear):
                        assert not torch.equal(got, layer.base_layer(x))


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
                    reason="oneDNN has no bfloat16 product on this CPU")
def test_a_wide_product_folds_each_rows_own_term_into_its_dense_copy() -> None:
    """A wide pass's product by a dense copy (quantize.Dense) with the stack's terms folded
    in (mixed_lora.folded): each row gets the base product plus its own adapter's term on
    the span's columns alone (a base-model row none), to bfloat16 rounding; an adapter whose
    ``x @ A`` overflows reaches no other row; the folded forms are made once a stack."""
    torch.manual_seed(0)
    weight = (torch.randn(48, 64) / 8).bfloat16()
    packed = pack_dense(weight).packed
    ranks = (4, 2, 4)  # three adapters, the third on no row but the overflowing one
    a = torch.randn(64, sum(ranks)) / 8
    b = torch.randn(sum(ranks), 16) / 4
    owner = tuple(index for index, rank in enumerate(ranks) for _ in range(rank))
    stack = Stack(a, b, owner, torch.tensor(owner))
    names = [BASE, "one", "two", "one", BASE, "two", "one", "two", BASE, "one"]
    assert len(names) >= DENSE_ROWS
    rows = row_adapters_of(names, BASE, ("one", "two", "three"), 1, torch.device("cpu"))
    x = torch.randn(len(names), 1, 64).bfloat16()
    with torch.inference_mode():
        got = folded(x, packed, stack, 16, rows).float()
        assert got.shape == (len(names), 1, 48)
        base = x.float() @ weight.float().t()
        for index, name in enumerate(names):
            expected = base[index].clone()
            if name != BASE:
                own = torch.tensor([o == ("one", "two").index(name) for o in owner])
                expected[:, 16:32] += (x[index].float() @ a[:, own]) @ b[own]
            torch.testing.assert_close(got[index], expected, rtol=0.02, atol=0.03)
        assert not torch.allclose(got[1], base[1], rtol=0.02, atol=0.03), "the term is there"
        # The same forms again: made once for this stack and product
        assert stack.folded(packed, 16)[1] is stack.folded(packed, 16)[1]
        # An adapter whose x @ A overflows bfloat16: its row is not finite, the others are
        big = a.clone()
        big[:, 6:] = 3e38  # bfloat16's largest is ~3.39e38: 64 of them sum past it
        huge = Stack(big, b, owner, torch.tensor(owner))
        names[4] = "three"
        rows = row_adapters_of(names, BASE, ("one", "two", "three"), 1, torch.device("cpu"))
        poisoned = folded(x, packed, huge, 16, rows).float()
        assert not poisoned[4].isfinite().all()
        others = [index for index in range(len(names)) if index != 4]
        assert poisoned[others].isfinite().all()
        torch.testing.assert_close(poisoned[others], got[others])

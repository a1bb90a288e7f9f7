"""Fixtures for the engine tests: trained adapters, a reference model, engines, and a runner."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from arkor.engine.base import (
    AdapterRef,
    ChatMessage,
    Finished,
    GenerationRequest,
    SamplingParams,
    TextDelta,
    TokenLogprob,
    ToolSpec,
)
from arkor.engine.local import LocalEngine
from arkor.engine.local.adapters import PEFT_DEPRECATION
from arkor.engine.registry import EMBEDDED_MODEL_NAME, BaseModelRegistry
from tests.engine.tiny_adapters import label_examples, lang_examples, train_adapter


@pytest.fixture(scope="session")
def adapters_dir(request: pytest.FixtureRequest) -> Path:
    return Path(request.config.cache.mkdir("arkor-engine-adapters-v1"))


@pytest.fixture(scope="session")
def adapter_a(adapters_dir: Path, embedded_model_dir: Path) -> AdapterRef:
    path = train_adapter(embedded_model_dir, label_examples(), adapters_dir / "label")
    return AdapterRef(key="job:label:final", path=path)


@pytest.fixture(scope="session")
def adapter_b(adapters_dir: Path, embedded_model_dir: Path) -> AdapterRef:
    path = train_adapter(embedded_model_dir, lang_examples(), adapters_dir / "lang")
    return AdapterRef(key="job:lang:final", path=path)


def chat(
    prompt: str,
    *,
    adapter: AdapterRef | None = None,
    max_tokens: int | None = 16,
    temperature: float = 0.0,
    seed: int | None = None,
    stop: tuple[str, ...] = (),
    top_p: float = 1.0,
) -> GenerationRequest:
    return GenerationRequest(
        base_model=EMBEDDED_MODEL_NAME,
        messages=(ChatMessage("user", prompt),),
        sampling=SamplingParams(
            max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop
        ),
        adapter=adapter,
    )


def ask(
    prompt: str,
    *,
    adapter: AdapterRef | None = None,
    raw: str | None = None,
    tools: tuple[ToolSpec, ...] = (),
    prompt_logprobs: int | None = None,
    **sampling: Any,
) -> GenerationRequest:
    """A request with any sampling field (greedy, 16 tokens unless told); ``raw`` makes it a
    raw completion of that text."""
    sampling.setdefault("max_tokens", 16)
    sampling.setdefault("temperature", 0.0)
    return GenerationRequest(
        base_model=EMBEDDED_MODEL_NAME,
        messages=(ChatMessage("user", prompt),),
        sampling=SamplingParams(**sampling),
        adapter=adapter,
        tools=tools,
        prompt=raw,
        prompt_logprobs=prompt_logprobs,
    )


@dataclass
class Outcome:
    text: str
    finished: Finished
    deltas: list[str] = field(default_factory=list)
    first_delta_at: float | None = None
    finished_at: float = 0.0
    logprobs: list[TokenLogprob] = field(default_factory=list)
    logprobs_per_delta: list[int] = field(default_factory=list)


async def collect(
    engine: LocalEngine, request: GenerationRequest, started: asyncio.Event | None = None
) -> Outcome:
    """Run one request to its end; ``started`` is set when its first text arrives."""
    deltas: list[str] = []
    logprobs: list[TokenLogprob] = []
    per_delta: list[int] = []
    first: float | None = None
    async for event in engine.generate(request):
        if isinstance(event, TextDelta):
            first = first or time.monotonic()
            if started is not None:
                started.set()
            deltas.append(event.text)
            logprobs.extend(event.logprobs)
            per_delta.append(len(event.logprobs))
        else:
            return Outcome(
                "".join(deltas), event, deltas, first, time.monotonic(), logprobs, per_delta
            )
    raise AssertionError("the stream ended without Finished")


class Reference:
    """Plain transformers + PEFT ``generate``, one request at a time: the expected outputs."""

    def __init__(self, model_dir: Path, adapters: dict[str, AdapterRef]) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        names = list(adapters)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", PEFT_DEPRECATION, FutureWarning)
            self.model = PeftModel.from_pretrained(
                base, adapters[names[0]].path, adapter_name=names[0]
            )
        for name in names[1:]:
            self.model.load_adapter(adapters[name].path, adapter_name=name)
        self.model.eval()
        self._keys = {ref.key: name for name, ref in adapters.items()}
        self._memo: dict[tuple[str | None, str, int], list[int]] = {}

    def tokens(self, prompt: str, adapter: AdapterRef | None, max_tokens: int) -> list[int]:
        key = (adapter.key if adapter else None, prompt, max_tokens)
        if key not in self._memo:
            self._memo[key] = self._generate(prompt, adapter, max_tokens)
        return self._memo[key]

    def text(self, prompt: str, adapter: AdapterRef | None, max_tokens: int) -> str:
        return self.decode(self.tokens(prompt, adapter, max_tokens))

    def decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def log_softmax(self, ids: list[int], adapter: AdapterRef | None) -> Any:
        """The model's own ``[len(ids), vocab]`` log-probabilities for a token sequence."""
        torch = self._torch
        inputs = torch.tensor([ids])
        with torch.inference_mode():
            if adapter is None:
                with self.model.disable_adapter():
                    logits = self.model(input_ids=inputs).logits[0]
            else:
                self.model.set_adapter(self._keys[adapter.key])
                logits = self.model(input_ids=inputs).logits[0]
        return torch.log_softmax(logits.float(), dim=-1)

    def _generate(self, prompt: str, adapter: AdapterRef | None, max_tokens: int) -> list[int]:
        torch = self._torch
        ids = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )["input_ids"]
        inputs = torch.tensor([list(ids)])
        kwargs = {
            "max_new_tokens": max_tokens,
            "do_sample": False,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        with torch.inference_mode():
            if adapter is None:
                with self.model.disable_adapter():
                    out = self.model.generate(input_ids=inputs, **kwargs)
            else:
                self.model.set_adapter(self._keys[adapter.key])
                out = self.model.generate(input_ids=inputs, **kwargs)
        return out[0, inputs.shape[1] :].tolist()


@pytest.fixture(scope="session")
def reference(embedded_model_dir: Path, adapter_a: AdapterRef, adapter_b: AdapterRef) -> Reference:
    return Reference(embedded_model_dir, {"A": adapter_a, "B": adapter_b})


def make_engine(models_dir: Path, **options: Any) -> LocalEngine:
    return LocalEngine(BaseModelRegistry.with_embedded(), models_dir=models_dir, **options)


def close_engine(engine: LocalEngine) -> None:
    asyncio.run(engine.close())


@pytest.fixture(scope="session")
def engine(models_dir: Path, embedded_model_dir: Path) -> Iterator[LocalEngine]:
    """The default engine, shared by the tests that do not need special limits."""
    engine = make_engine(models_dir)
    yield engine
    close_engine(engine)

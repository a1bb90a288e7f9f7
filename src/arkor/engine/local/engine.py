"""LocalEngine: PyTorch + transformers + PEFT in this process, one scheduler per base model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from llguidance import LLMatcher

from arkor import heap
from arkor.engine.base import (
    EngineError,
    EngineOverloaded,
    EngineUnavailable,
    Finished,
    GenerationEvent,
    GenerationRequest,
    InvalidRequest,
    PromptTooLong,
    UnknownBaseModel,
)
from arkor.engine.local.adapters import AdapterFiles, read_adapter
from arkor.engine.local.loader import load_base_model, pick_device
from arkor.engine.local.prefix_cache import PrefixCache
from arkor.engine.local.scheduler import Scheduler
from arkor.engine.local.threads import in_own_thread
from arkor.engine.local.ticket import Ticket
from arkor.engine.precision import DEFAULT_PRECISION, parse_precision_plan
from arkor.engine.registry import BaseModelRegistry

DEFAULT_MAX_BATCH_SIZE = 16
DEFAULT_MAX_QUEUE = 64
DEFAULT_MAX_LOADED_ADAPTERS = 8
DEFAULT_PREFIX_CACHE_MB = 64
CLOSE_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class BaseModelLoad:
    """What one loaded base model is doing now, and its adapter churn so far (/metrics)."""

    running: int  # rows in the decoding batch
    waiting: int  # requests queued for a batch slot
    adapters_loaded: int
    adapter_loads: int
    adapter_evictions: int
    precision: str  # as loaded: what ``auto`` (or the setting) came to on this machine


class LocalEngine:
    """Serves the registry's base models, loading each on its first request.

    ``max_batch_size`` rows decode together per base model; up to ``max_queue`` more wait, and
    beyond that requests fail fast with EngineOverloaded. ``max_loaded_adapters`` LoRA adapters
    stay attached per base model (least recently used evicted first). ``precision`` is one
    of :data:`arkor.engine.precision.PRECISIONS`, optionally followed by ``NAME=PRECISION``
    for base models that differ (``"auto,my-org/my-model=int8"``); a bad one is a ValueError
    here.
    ``prefix_cache_mb`` bounds the keys and values kept per base model for prompts and answers
    seen before (0: no prefix cache). ``chunked_prefill`` feeds a prompt that arrives while
    others decode a slice at a time, with their decode steps in between (off: all at once).
    """

    def __init__(
        self,
        registry: BaseModelRegistry,
        *,
        models_dir: Path,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_loaded_adapters: int = DEFAULT_MAX_LOADED_ADAPTERS,
        device: str | None = None,
        precision: str = DEFAULT_PRECISION,
        prefix_cache_mb: int = DEFAULT_PREFIX_CACHE_MB,
        chunked_prefill: bool = True,
    ) -> None:
        if max_batch_size < 1 or max_queue < 0 or max_loaded_adapters < 1 or prefix_cache_mb < 0:
            raise ValueError(
                "max_batch_size and max_loaded_adapters must be at least 1, max_queue and "
                "prefix_cache_mb at least 0"
            )
        self._prefix_cache_bytes = prefix_cache_mb * 1024 * 1024
        self._chunked_prefill = chunked_prefill
        self._precision = parse_precision_plan(precision)
        self._registry = registry
        self._models_dir = Path(models_dir)
        self._max_batch_size = max_batch_size
        self._max_queue = max_queue
        self._max_loaded_adapters = max_loaded_adapters
        self._device = pick_device(device)
        self._schedulers: dict[str, Scheduler] = {}
        self._load_lock = threading.Lock()
        self._closed = False
        # One thread encodes prompts (a tokenizer is not thread-safe); the count bounds how
        # many wait for it, so a flood of long prompts is refused instead of queued forever.
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arkor-encode")
        self._encodes_pending = 0
        # Grammars compile here: never on the event loop, never on a scheduler thread.
        self._grammar_compiler = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="arkor-grammar"
        )

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        schedulers, self._schedulers = list(self._schedulers.values()), {}
        for scheduler in schedulers:
            await asyncio.to_thread(scheduler.close, CLOSE_TIMEOUT_SECONDS)

    async def __aenter__(self) -> LocalEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def load(self, base_model: str) -> None:
        """Load a base model now rather than on its first request."""
        await self._scheduler_for(base_model)

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        scheduler = await self._scheduler_for(request.base_model)
        return len(await self._encode(scheduler, request))

    def loaded_adapters(self, base_model: str) -> list[str]:
        """Keys of the adapters attached to ``base_model``, least recently used first."""
        scheduler = self._schedulers.get(base_model)
        return scheduler.adapters.loaded_keys() if scheduler else []

    def load_report(self) -> dict[str, BaseModelLoad]:
        """Each loaded base model's batch, queue and adapters, read without a lock (any
        thread; each number is a moment's, not a snapshot taken together)."""
        return {
            name: BaseModelLoad(
                running=scheduler.running, waiting=scheduler.waiting,
                adapters_loaded=scheduler.adapters.loaded_count,
                adapter_loads=scheduler.adapters.loads,
                adapter_evictions=scheduler.adapters.evictions,
                precision=scheduler.loaded.precision)
            for name, scheduler in list(self._schedulers.items())
        }

    def prefix_cache(self, base_model: str) -> PrefixCache | None:
        """``base_model``'s prefix cache (its counters), once the model is loaded."""
        scheduler = self._schedulers.get(base_model)
        return scheduler.prefix if scheduler else None

    def clear_prefix_cache(self, base_model: str) -> None:
        """Forget ``base_model``'s cached prompts (no-op before it is loaded): a request sent
        after this call computes its whole prompt. For benchmarks and tests that time a
        prompt's forward pass."""
        scheduler = self._schedulers.get(base_model)
        if scheduler is not None:
            scheduler.clear_prefix_cache()

    def grammar_compilations(self, base_model: str) -> int:
        """Grammars compiled so far for ``base_model`` (cache misses)."""
        scheduler = self._schedulers.get(base_model)
        grammars = scheduler.loaded.grammars if scheduler else None
        return grammars.compilations if grammars else 0

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        scheduler = await self._scheduler_for(request.base_model)
        loaded = scheduler.loaded
        _check_logit_bias(request, loaded.vocab_width)
        at_least = loaded.min_prompt_tokens(request)
        if at_least >= loaded.max_context:
            raise PromptTooLong(at_least, loaded.max_context, estimated=True)
        prompt_ids = await self._encode(scheduler, request)
        if len(prompt_ids) >= loaded.max_context:
            raise PromptTooLong(len(prompt_ids), loaded.max_context)
        matcher = await self._matcher(scheduler, request)
        files = await self._read_adapter_if_needed(scheduler, request)
        limit = request.sampling.max_tokens
        if limit is not None and limit < 1 and request.prompt_logprobs is None:
            yield Finished("length", prompt_tokens=len(prompt_ids), completion_tokens=0)
            return
        ticket = Ticket(
            request, prompt_ids, asyncio.get_running_loop(), adapter_files=files, matcher=matcher
        )
        scheduler.submit(ticket)
        try:
            while True:
                item = await ticket.events.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            scheduler.cancel(ticket)

    async def _encode(self, scheduler: Scheduler, request: GenerationRequest) -> list[int]:
        """Tokenize on the engine's one encoding thread; refuse work beyond its queue."""
        if self._encodes_pending >= self._max_batch_size + self._max_queue:
            raise EngineOverloaded(retry_after=1.0)
        self._encodes_pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._encoder, scheduler.loaded.encode, request)
        except Exception as exc:
            if request.prompt is not None:
                raise EngineError(f"The tokenizer rejected the prompt: {exc}") from exc
            raise EngineError(f"The chat template rejected the messages: {exc}") from exc
        finally:
            self._encodes_pending -= 1

    async def _matcher(self, scheduler: Scheduler, request: GenerationRequest) -> LLMatcher | None:
        """The request's grammar, compiled on the grammar thread (or taken from the cache)."""
        if request.sampling.grammar is None:
            return None
        return await scheduler.loaded.grammar_cache().matcher(request.sampling.grammar)

    async def _read_adapter_if_needed(
        self, scheduler: Scheduler, request: GenerationRequest
    ) -> AdapterFiles | None:
        if request.adapter is None or scheduler.adapters.is_loaded(request.adapter.key):
            return None
        return await in_own_thread("arkor-read-adapter", read_adapter, request.adapter,
                                   scheduler.loaded.device)

    async def _scheduler_for(self, base_model: str) -> Scheduler:
        spec = self._registry.get(base_model)
        if spec is None:
            raise UnknownBaseModel(base_model)
        if self._closed:
            raise EngineUnavailable("The engine is shut down")
        scheduler = self._schedulers.get(base_model)
        if scheduler is not None:
            return scheduler
        return await in_own_thread(f"arkor-load:{base_model}", self._load_scheduler, base_model)

    def _load_scheduler(self, base_model: str) -> Scheduler:
        """Runs in a worker thread; a threading lock works whatever event loop is calling."""
        with self._load_lock:
            scheduler = self._schedulers.get(base_model)
            if scheduler is not None:
                return scheduler
            spec = self._registry.get(base_model)
            assert spec is not None
            try:
                loaded = load_base_model(
                    spec,
                    models_dir=self._models_dir,
                    device=self._device,
                    grammar_executor=self._grammar_compiler,
                    precision=self._precision.for_model(base_model),
                )
            except Exception as exc:
                raise EngineUnavailable(
                    f"Base model {base_model!r} could not be loaded: {type(exc).__name__}: {exc}"
                ) from exc
            scheduler = Scheduler(
                loaded,
                max_batch_size=self._max_batch_size,
                max_queue=self._max_queue,
                max_loaded_adapters=self._max_loaded_adapters,
                prefix_cache_bytes=self._prefix_cache_bytes,
                chunked_prefill=self._chunked_prefill,
            )
            scheduler.start()
            self._schedulers[base_model] = scheduler
            heap.settle()  # a server process: the model, and the modules it imported, frozen
            return scheduler


def _check_logit_bias(request: GenerationRequest, vocab_width: int) -> None:
    for token_id, _ in request.sampling.logit_bias:
        if not 0 <= token_id < vocab_width:
            raise InvalidRequest(
                f"logit_bias names token id {token_id}, but {request.base_model}'s token ids "
                f"run from 0 to {vocab_width - 1}", "logit_bias"
            )

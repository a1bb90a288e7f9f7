"""llguidance grammars: a cheap validity check, and compiled matchers cached per tokenizer.

``SamplingParams.grammar`` is an llguidance grammar string (what ``llguidance.grammar_from``,
``LLMatcher.grammar_from_json_schema`` or ``grammar_from_regex`` return).

- :func:`check_grammar` validates one without a tokenizer, synchronously, in well under a
  millisecond for ordinary schemas, so the HTTP layer can answer 400 before anything is queued.
- :class:`GrammarCache` compiles a grammar against one base model's tokenizer on a worker
  thread (never on the event loop, never on a scheduler thread) and keeps the compiled
  matcher in an LRU keyed by the grammar text; each request gets a ``deep_copy()`` of it, so
  the same schema is compiled once.

Nothing here imports torch.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from concurrent.futures import Executor, Future

from llguidance import LLMatcher, LLTokenizer

from arkor.engine.base import GrammarError

DEFAULT_GRAMMAR_CACHE_SIZE = 128
"""Compiled grammars kept per base model (least recently used dropped first)."""

QUIET = 0
"""llguidance log level: warnings stay on the matcher instead of going to stderr."""


def grammar_problem(message: str) -> GrammarError:
    """The error for a grammar llguidance refused, with its own words (which name the
    unsupported feature, e.g. ``Unimplemented keys: ["if"]``)."""
    return GrammarError(f"The grammar cannot be used: {message.strip()}")


def check_grammar(grammar: str) -> None:
    """Raise :class:`GrammarError` when ``grammar`` cannot be compiled; return None otherwise.

    Synchronous and tokenizer-free: it checks the grammar's syntax, the JSON schema features
    it uses and its regular expressions, which is everything that depends on the request.
    """
    try:
        message = LLMatcher.validate_grammar(grammar)
    except Exception as exc:  # llguidance raises ValueError on text that is not a grammar
        raise grammar_problem(str(exc)) from exc
    if message:
        raise grammar_problem(message)


def compile_grammar(tokenizer: LLTokenizer, grammar: str) -> LLMatcher:
    """A matcher in its initial state; raises :class:`GrammarError` when it cannot be built."""
    try:
        matcher = LLMatcher(tokenizer, grammar, log_level=QUIET)
    except Exception as exc:
        raise grammar_problem(str(exc)) from exc
    if matcher.is_error():
        raise grammar_problem(matcher.get_error())
    return matcher


class GrammarCache:
    """Compiled matchers for one tokenizer, compiled on ``executor``, kept in an LRU.

    Concurrent requests for the same new grammar share one compilation. A grammar that fails
    is not kept, so a fixed grammar string is tried again. ``compilations`` counts the
    compilations started (tests and benchmarks read it).
    """

    def __init__(
        self,
        tokenizer: LLTokenizer,
        *,
        executor: Executor,
        capacity: int = DEFAULT_GRAMMAR_CACHE_SIZE,
    ) -> None:
        if capacity < 1:
            raise ValueError("the grammar cache needs room for at least one grammar")
        self.tokenizer = tokenizer
        self.compilations = 0
        self._executor = executor
        self._capacity = capacity
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Future[LLMatcher]] = OrderedDict()

    async def matcher(self, grammar: str) -> LLMatcher:
        """A fresh matcher for ``grammar`` (a copy of the cached compiled one)."""
        compiled = await asyncio.wrap_future(self._compiled(grammar))
        return compiled.deep_copy()

    def matcher_sync(self, grammar: str) -> LLMatcher:
        """The same, blocking the calling thread (not for the event loop)."""
        return self._compiled(grammar).result().deep_copy()

    def __len__(self) -> int:
        return len(self._entries)

    def _compiled(self, grammar: str) -> Future[LLMatcher]:
        with self._lock:
            entry = self._entries.get(grammar)
            if entry is not None:
                self._entries.move_to_end(grammar)
                return entry
            self.compilations += 1
            entry = self._executor.submit(compile_grammar, self.tokenizer, grammar)
            self._entries[grammar] = entry
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        entry.add_done_callback(lambda done: self._forget_failure(grammar, done))
        return entry

    def _forget_failure(self, grammar: str, done: Future[LLMatcher]) -> None:
        if done.cancelled() or done.exception() is not None:
            with self._lock:
                if self._entries.get(grammar) is done:
                    del self._entries[grammar]

"""One request's decoding state while it is a row of the running batch."""

from __future__ import annotations

from collections.abc import Callable

from arkor.engine.base import (
    EngineError,
    Finished,
    FinishReason,
    GrammarError,
    TextDelta,
    TokenLogprob,
)
from arkor.engine.local.detokenizer import IncrementalDetokenizer, StopStringFilter
from arkor.engine.local.sampling import RowSampler
from arkor.engine.local.ticket import Ticket


class Row:
    """Streams one request's text and decides when it ends.

    It ends with ``stop`` on EOS (unless ``ignore_eos``; never before ``min_tokens``), on a
    stop string (matched only in text after ``min_tokens`` tokens), or when its grammar is
    complete; with ``length`` at ``max_new_tokens``. Logprobs entries wait for the text of
    their tokens and go out with it; entries whose tokens produced no text by the end (EOS,
    a stop string) are not sent.
    """

    def __init__(
        self,
        ticket: Ticket,
        *,
        adapter_name: str,
        sampler: RowSampler,
        decode: Callable[[list[int]], str],
        eos_token_ids: frozenset[int],
        max_new_tokens: int,
    ) -> None:
        params = ticket.request.sampling
        self.ticket = ticket
        self.adapter_key = ticket.request.adapter.key if ticket.request.adapter else None
        self.adapter_name = adapter_name
        self.pinned = self.adapter_key is not None
        self.sampler = sampler
        self.prompt_tokens = len(ticket.prompt_ids)
        self.finished = False
        self.failed = False
        self.last_token = 0
        self.generated: list[int] = []
        """Every token chosen for this row, EOS included."""
        self.prefix_instance = ""
        """The adapter instance whose keys and values this row's cache holds (prefix cache)."""
        self.max_new_tokens = max_new_tokens
        self.prompt_logprobs: tuple[TokenLogprob | None, ...] | None = None
        self._eos_token_ids = frozenset() if params.ignore_eos else eos_token_ids
        self._min_tokens = max(0, params.min_tokens)
        self._detokenizer = IncrementalDetokenizer(decode)
        self._stops = StopStringFilter(params.stop)
        self._pending: list[TokenLogprob] = []

    @property
    def completion_tokens(self) -> int:
        return len(self.generated)

    @property
    def leaving(self) -> bool:
        return self.finished or self.ticket.cancelled

    @property
    def wants_prompt_logprobs(self) -> bool:
        return self.ticket.request.prompt_logprobs is not None

    def accept(self, token_id: int, logprob: TokenLogprob | None = None) -> None:
        """Take the token chosen for this row, stream its text, and finish if it is time."""
        self.last_token = token_id
        self.generated.append(token_id)
        if logprob is not None:
            self._pending.append(logprob)
        refused = self.sampler.observe(token_id)
        if refused is not None:
            self.fail(GrammarError(refused), token_id)
            return
        grammar_done = self.sampler.constraint is not None and self.sampler.constraint.done
        if token_id in self._eos_token_ids:
            self._finish("stop", self._detokenizer.flush())
            return
        text = self._detokenizer.push(token_id)
        stopped = False
        if self.completion_tokens >= self._min_tokens:
            text, stopped = self._stops.feed(text)
        if text:
            self._deliver(text)
        if stopped:
            self._finish("stop", "", stopped=True)
        elif grammar_done:
            self._finish("stop", self._detokenizer.flush())
        elif self.completion_tokens >= self.max_new_tokens:
            self._finish("length", self._detokenizer.flush())

    def finish_without_tokens(self) -> None:
        """End a row that was only prefilled (``max_tokens`` 0, for its prompt logprobs)."""
        self._finish("length", "")

    def fail(self, error: EngineError, placeholder_token: int) -> None:
        """End this row with ``error``; it leaves the batch at the end of the step."""
        self.last_token = placeholder_token
        self.ticket.deliver(error)
        self.finished = True
        self.failed = True

    def _deliver(self, text: str) -> None:
        logprobs, self._pending = tuple(self._pending), []
        self.ticket.deliver(TextDelta(text, logprobs))

    def _finish(self, reason: FinishReason, tail: str, *, stopped: bool = False) -> None:
        if not stopped:
            text, stopped = self._stops.feed(tail)
            if not stopped:
                text += self._stops.flush()
            if text:
                self._deliver(text)
        self.ticket.deliver(
            Finished(
                finish_reason="stop" if stopped else reason,
                prompt_tokens=self.prompt_tokens,
                completion_tokens=self.completion_tokens,
                prompt_logprobs=self.prompt_logprobs,
            )
        )
        self.finished = True

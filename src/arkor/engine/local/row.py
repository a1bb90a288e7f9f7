"""One request's decoding state while it is a row of the running batch."""

from __future__ import annotations

from collections.abc import Callable

from arkor.engine.base import Finished, FinishReason, TextDelta
from arkor.engine.local.detokenizer import IncrementalDetokenizer, StopStringFilter
from arkor.engine.local.sampling import RowSampler
from arkor.engine.local.ticket import Ticket


class Row:
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
        self.ticket = ticket
        self.adapter_key = ticket.request.adapter.key if ticket.request.adapter else None
        self.adapter_name = adapter_name
        self.pinned = self.adapter_key is not None
        self.sampler = sampler
        self.prompt_tokens = len(ticket.prompt_ids)
        self.completion_tokens = 0
        self.finished = False
        self.last_token = 0
        self._eos_token_ids = eos_token_ids
        self._max_new_tokens = max_new_tokens
        self._detokenizer = IncrementalDetokenizer(decode)
        self._stops = StopStringFilter(ticket.request.sampling.stop)

    @property
    def leaving(self) -> bool:
        return self.finished or self.ticket.cancelled

    def accept(self, token_id: int) -> None:
        """Take the token chosen for this row, stream its text, and finish if it is time."""
        self.last_token = token_id
        self.completion_tokens += 1
        if token_id in self._eos_token_ids:
            self._finish("stop", self._detokenizer.flush())
            return
        text, stopped = self._stops.feed(self._detokenizer.push(token_id))
        if text:
            self.ticket.deliver(TextDelta(text))
        if stopped:
            self._finish("stop", "")
        elif self.completion_tokens >= self._max_new_tokens:
            self._finish("length", self._detokenizer.flush())

    def fail(self, error: BaseException, placeholder_token: int) -> None:
        """End this row with ``error``; it leaves the batch at the end of the step."""
        self.last_token = placeholder_token
        self.ticket.deliver(error)
        self.finished = True

    def _finish(self, reason: FinishReason, tail: str) -> None:
        text, stopped = self._stops.feed(tail)
        if not stopped:
            text += self._stops.flush()
        if text:
            self.ticket.deliver(TextDelta(text))
        self.ticket.deliver(
            Finished(
                finish_reason="stop" if stopped else reason,
                prompt_tokens=self.prompt_tokens,
                completion_tokens=self.completion_tokens,
            )
        )
        self.finished = True

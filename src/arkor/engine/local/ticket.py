"""The hand-off between an asyncio consumer and a scheduler thread for one request."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from llguidance import LLMatcher

from arkor.engine.base import GenerationEvent, GenerationRequest, TextDelta
from arkor.engine.local.adapters import AdapterFiles

Delivery = GenerationEvent | BaseException


@dataclass(eq=False)
class Ticket:
    """One request in flight.

    The scheduler thread only calls :meth:`deliver`; the consumer only reads ``events`` and
    sets ``cancelled``. ``matcher`` is the request's compiled grammar (a private copy), ready
    before the ticket is submitted. A plain bool is enough for the flag: the scheduler polls
    it between steps and a late read costs at most one extra step.
    """

    request: GenerationRequest
    prompt_ids: list[int]
    loop: asyncio.AbstractEventLoop
    adapter_files: AdapterFiles | None = None
    matcher: LLMatcher | None = None
    events: asyncio.Queue[Delivery] = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    done: bool = False
    submitted_at: float = field(default_factory=time.monotonic)
    # The prefix cache's store count when this waiting request was last found not whole in
    # it (the scheduler's look for whole prompts while a prefill group goes in).
    whole_checked: int = -1

    def deliver(self, item: Delivery) -> None:
        """Called from the scheduler thread; the last item is a Finished or an exception."""
        if self.done:
            return
        if not isinstance(item, TextDelta):
            self.done = True
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)
        except RuntimeError:
            self.cancelled = True

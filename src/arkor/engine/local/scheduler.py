"""Iteration-level (continuous) batching for one base model, on its own thread.

Each turn of the loop:

1. takes waiting requests while the batch has room (and their padded prompts fit the prefill
   budget), pins their adapters, looks their prompts up in the prefix cache, and starts them
   as one prefill group (:mod:`prefill`) with a cache of their own (a prompt found whole in
   the cache, with the logits that followed it, samples its first token from them and joins
   the running batch at once);
2. feeds the group's next slice of prompt columns: all of it when nothing else is running,
   otherwise a slice in the same forward pass as the running rows' decode step, as many
   tokens as cost about one step (:class:`SliceBudget`; chunked prefill), or
   :data:`PREFILL_CHUNK_TOKENS` in a pass of its own where the two cannot share one. When
   the group is through, its rows sample their first token and the survivors merge into the
   running batch;
3. drops rows whose consumer went away;
4. runs ONE forward pass for every running row, whatever its adapter (per-row adapter names,
   ``__base__`` for the base model), samples, streams text, and removes finished rows at
   once, keeping their keys and values in the prefix cache.

All torch work happens on this thread. Results reach the asyncio side through each request's
:class:`Ticket`. An exception in a step fails the rows it touched with EngineUnavailable and the
loop carries on with an empty batch, so no request is ever left hanging. Failures that
belong to one request stay with it: a prefill group has a cache of its own (only its rows
fail), and a row whose logits are not finite or cannot be sampled fails alone.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import deque
from typing import Any

import torch

from arkor.engine.base import (
    AdapterLoadError,
    EngineOverloaded,
    EngineUnavailable,
    GrammarError,
)
from arkor.engine.local.adapters import BASE_ADAPTER_NAME, AdapterSet
from arkor.engine.local.batch import BatchTensors
from arkor.engine.local.constraint import Constraint
from arkor.engine.local.loader import LoadedModel
from arkor.engine.local.logprobs import prompt_logprobs
from arkor.engine.local.prefill import PrefillGroup, row_layers
from arkor.engine.local.prefix_cache import PrefixCache, PrefixHit
from arkor.engine.local.quantize import block_rows
from arkor.engine.local.row import Row
from arkor.engine.local.sampling import RowSampler, StepTokens, next_tokens
from arkor.engine.local.ticket import Ticket

logger = logging.getLogger(__name__)

PREFILL_TOKEN_BUDGET = 4096
"""Most padded prompt tokens in one prefill group; a longer single prompt still goes alone."""

MIN_PREFIX_HIT = 8
"""Fewer cached tokens than this are not worth a prefix-cache layout."""

PREFILL_CHUNK_TOKENS = 128
"""Padded prompt tokens fed between two decode steps while other rows are decoding, where a
slice cannot join the decode step's pass (a model without a lean decoder, or a newcomer that
asks for prompt logprobs).

On the 2-core CPU a forward pass has a fixed cost of about one batch-1 decode step (65 ms)
plus about 2 ms per prompt token, so a 128-token slice costs about three decode steps of a
batch of 8: the running rows wait for one slice at a time instead of the whole prompt (a
1,000-token prompt is about 2 s). A smaller slice would stall them less per turn but pay the
fixed cost more often, delaying the newcomer's first token."""


class SliceBudget:
    """How many padded prompt tokens a slice joined to a decode step may carry: as many as
    cost ``SHARE`` of one decode step of the running rows, so a prompt going in never stalls
    them for more than one step's worth at a time, the steps' jitter included; before
    anything is measured, the fewest (a first slice of 32 tokens was the worst stall of a
    fresh engine on a slow CPU: 3.3 steps). Both costs are measured as the loop runs
    (moving averages): the decode step alone, and the extra seconds per slice token of a
    step that carried one (which follows a rise at once).

    A slice is never more than ``GROWTH`` times the largest one measured so far: the cost
    of a few tokens can be lost in the steps' own jitter (a slice step no slower than the
    average step reads as free tokens), and extrapolated it gave a slice of ``MOST``
    tokens, a stall of seconds; so slices grow by doubling until their cost shows.

    A short prompt keeps a floor of ``LEAST`` tokens a slice: it is in within a few steps,
    and its own first token is what its caller waits for. A long one (more than ``LONG``
    columns to feed) stalls the running rows for seconds, and slices of a few tokens
    more add little to its own first token: it goes by ``LONG_SHARE`` of a step, down to one
    token a slice.

    torch's packed int8/int4 CPU kernels compute rows in blocks of ``block`` (4): a pass of
    9 rows costs what one of 12 does. So a slice is sized for the pass to fill its last
    block: a short prompt's up (never fewer tokens than the budget), a long one's down to
    the nearest whole block (never past its budget) but at least to the first one
    (docs/engine.md, "Slice size")."""

    LEAST = 8  # and before anything is measured: a slow CPU at int8 pays ~8 ms a token
    MOST = 1024
    SHARE = 0.8  # of a step's cost a slice may add: room for the steps' own jitter
    LONG = 256  # columns to feed, from which a prompt is long
    LONG_SHARE = 0.5  # of a step's cost a long prompt's slice may add
    LONG_LEAST = 1  # and before anything is measured
    WEIGHT = 0.3  # of the newest measurement in the averages
    GROWTH = 2  # a slice is at most this many times the largest one measured

    def __init__(self, block: int = 1) -> None:
        self.block = block  # rows the matrix kernels compute together
        self.step: float | None = None  # seconds of a decode step of the running rows
        self.per_token: float | None = None  # extra seconds per slice token
        self.largest = 0  # tokens of the largest slice whose cost was measured

    def stepped(self, seconds: float) -> None:
        self.step = self._average(self.step, seconds)

    def carried(self, seconds: float, tokens: int) -> None:
        if self.step is not None and tokens > 0:
            self.largest = max(self.largest, tokens)
            extra = max(seconds - self.step, 0.0) / tokens
            # A rise is taken at once: a slice token costs more as the prompt's own cache
            # grows (each slice attends to every earlier one), and an average that lagged
            # behind it would overshoot the step's worth slice after slice.
            self.per_token = (extra if self.per_token is None or extra > self.per_token
                              else self._average(self.per_token, extra))

    def tokens(self, width: int = 0, rows: int = 0) -> int:
        """Tokens for the next slice of a prompt of ``width`` columns to feed in all, in a
        pass with a decode step of ``rows`` rows."""
        long = width > self.LONG
        share, least = (self.LONG_SHARE, self.LONG_LEAST) if long else (self.SHARE, self.LEAST)
        if self.step is None or self.per_token is None:
            budget = least
        else:
            # never past GROWTH times the largest slice measured (the class's docstring)
            fits = (self.MOST if self.per_token <= 0
                    else round(share * self.step / self.per_token))
            budget = max(least, min(self.MOST, fits, self.GROWTH * self.largest))
        free = -(rows + budget) % self.block  # rows left in the pass's last block
        below = budget + free - self.block  # the whole block below the budget
        return below if long and free and below >= 1 else budget + free

    def _average(self, old: float | None, new: float) -> float:
        return new if old is None else (1 - self.WEIGHT) * old + self.WEIGHT * new


class Scheduler:
    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch_size: int,
        max_queue: int,
        max_loaded_adapters: int,
        prefix_cache_bytes: int = 0,
        chunked_prefill: bool = True,
    ) -> None:
        self.loaded = loaded
        self.prefix = PrefixCache(prefix_cache_bytes)
        self._chunked_prefill = chunked_prefill
        self._slices = SliceBudget(block=block_rows(loaded.precision, loaded.device))
        self._group: tuple[PrefillGroup, list[Row]] | None = None
        # Batch slots held by requests taken from the queue that are not running rows yet
        # (being admitted, prefilled or joined): counted as busy, or a request arriving in
        # between would be queued past max_queue. Written under the lock.
        self._joining = 0
        self.adapters = AdapterSet(loaded.model, max_loaded_adapters, loaded.device)
        self._max_batch_size = max_batch_size
        self._max_queue = max_queue
        self._cond = threading.Condition()
        self._waiting: deque[Ticket] = deque()
        self._rows: list[Row] = []
        self._batch: BatchTensors | None = None
        self._closed = False
        self._clear_prefix = False  # set by clear_prefix_cache, done on this thread
        self._seconds_per_request = 2.0
        self._thread = threading.Thread(
            target=self._run, name=f"arkor-scheduler:{loaded.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def running(self) -> int:
        return len(self._rows)

    @property
    def joining(self) -> int:
        """Requests taken from the queue that are not running rows yet."""
        return self._joining

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def submit(self, ticket: Ticket) -> None:
        with self._cond:
            if self._closed or not self._thread.is_alive():
                raise EngineUnavailable("The engine is shut down")
            # Free batch slots take newcomers at the next step; only beyond them is it a queue.
            free_slots = max(0, self._max_batch_size - len(self._rows) - self._joining)
            if len(self._waiting) >= self._max_queue + free_slots:
                raise EngineOverloaded(retry_after=self._retry_after())
            self._waiting.append(ticket)
            self._cond.notify()

    def clear_prefix_cache(self) -> None:
        """Forget every cached prompt before the next request is admitted. The cache belongs
        to the scheduler's thread, which empties it at the start of its next turn: a request
        submitted after this call finds it empty, and a row ending before then has stored its
        prompt already (it does so in the step that sent its last token)."""
        with self._cond:
            self._clear_prefix = True
            self._cond.notify()

    def cancel(self, ticket: Ticket) -> None:
        ticket.cancelled = True
        with self._cond, contextlib.suppress(ValueError):
            self._waiting.remove(ticket)

    def _retry_after(self) -> float:
        busy = len(self._waiting) + len(self._rows) + self._joining
        rounds = busy / max(self._max_batch_size, 1)
        return max(1.0, round(rounds * self._seconds_per_request, 1))

    def _run(self) -> None:
        try:
            with torch.inference_mode():
                while (newcomers := self._next_newcomers()) is not None:
                    self._turn(newcomers)
        except BaseException:
            logger.exception("scheduler for %s stopped", self.loaded.name)
            raise
        finally:
            with self._cond:
                self._closed = True
                leftovers, self._waiting = list(self._waiting), deque()
            self._fail_rows(self._rows, "The engine is shut down")
            if self._group is not None:
                self._fail_rows(self._group[1], "The engine is shut down", running=False)
                self._group = None
            for ticket in leftovers:
                ticket.deliver(EngineUnavailable("The engine is shut down"))

    def _turn(self, newcomers: list[Ticket]) -> None:
        try:
            if newcomers:
                self._admit(newcomers)
            self._leave([i for i, row in enumerate(self._rows) if not row.leaving])
            if self._group is not None and self._joins_step():
                self._step_with_slice()
                return
            if self._group is not None:
                self._advance_prefill()
            self._leave([i for i, row in enumerate(self._rows) if not row.leaving])
            if self._rows:
                self._decode_step()
        except Exception as exc:
            logger.exception("decode step failed for %s", self.loaded.name)
            self._fail_rows(self._rows, f"The engine failed: {type(exc).__name__}")

    def _next_newcomers(self) -> list[Ticket] | None:
        """Block until there is work; None once closed."""
        with self._cond:
            while (not self._closed and not self._waiting and not self._rows
                   and not self._group and not self._clear_prefix):
                self._cond.wait()
            if self._closed:
                return None
            if self._clear_prefix:
                self._clear_prefix = False
                self.prefix.clear()
            taken: list[Ticket] = []
            if self._group is not None:
                # One prefill group at a time; the next waits its turn. A prompt found whole
                # in the prefix cache needs no forward pass and joins at once.
                taken = self._whole_prompts_waiting()
                self._joining = len(self._group[1]) + len(taken)
                return taken
            width = 0
            while self._waiting and len(self._rows) + len(taken) < self._max_batch_size:
                ticket = self._waiting[0]
                if ticket.cancelled:
                    self._waiting.popleft()
                    continue
                new_width = max(width, len(ticket.prompt_ids))
                if taken and new_width * (len(taken) + 1) > PREFILL_TOKEN_BUDGET:
                    break
                taken.append(self._waiting.popleft())
                width = new_width
            self._joining = len(taken)
            return taken

    def _whole_prompts_waiting(self) -> list[Ticket]:
        """While a prefill group goes in: the waiting requests whose prompts are whole in the
        prefix cache (with the logits that followed them), as many as the batch has room
        for, taken out of the queue (called under the lock, on the scheduler's thread, which
        owns the cache). Each request is looked at again only after a store."""
        assert self._group is not None
        room = self._max_batch_size - len(self._rows) - len(self._group[1])
        if room <= 0 or not self.prefix.enabled:
            return []
        stores = self.prefix.stores
        taken: list[Ticket] = []
        for ticket in list(self._waiting):
            if len(taken) >= room:
                break
            if ticket.cancelled or ticket.whole_checked == stores:
                continue
            ticket.whole_checked = stores
            if self._held_whole(ticket):
                self._waiting.remove(ticket)
                taken.append(ticket)
        return taken

    def _held_whole(self, ticket: Ticket) -> bool:
        """Whether the ticket's prompt is whole in the prefix cache under the adapter weights
        it would run with now (an adapter not attached has none there)."""
        request = ticket.request
        if request.prompt_logprobs is not None:
            return False  # they need every prompt position's hidden state
        instance = self.adapters.current_instance(
            request.adapter.key if request.adapter is not None else None)
        return instance is not None and self.prefix.holds_whole(instance, ticket.prompt_ids)

    def _admit(self, tickets: list[Ticket]) -> None:
        rows: list[Row] = []
        deferred: list[Ticket] = []
        for ticket in tickets:
            if ticket.cancelled:
                continue
            try:
                row = self._make_row(ticket)
            except AdapterLoadError as exc:
                ticket.deliver(exc)
                continue
            except Exception as exc:
                logger.exception("could not admit a request for %s", self.loaded.name)
                ticket.deliver(EngineUnavailable(f"The engine failed: {type(exc).__name__}"))
                continue
            if row is None:
                deferred.append(ticket)
            else:
                rows.append(row)
        busy = len(self._group[1]) if self._group is not None else 0  # a group going in
        with self._cond:
            self._waiting.extendleft(reversed(deferred))
            self._joining = busy + len(rows)
        if not rows:
            return
        try:
            wholes = [self._whole_hit(row) for row in rows]
            ready = [row for row, hit in zip(rows, wholes, strict=True) if hit is not None]
            if ready:  # seen before in full: their first token needs no forward pass
                found = [hit for hit in wholes if hit is not None]
                group = self._prefill_group(ready, list(found))
                self._join(group, ready, torch.stack([hit.logits for hit in found
                                                      if hit.logits is not None]),
                           store=False)
                rows = [row for row, hit in zip(rows, wholes, strict=True) if hit is None]
            if rows and busy:
                # Taken as whole prompts while a group goes in, and not found whole after
                # all: back to the front of the queue, for their turn.
                self._release(rows)
                with self._cond:
                    self._waiting.extendleft(reversed([row.ticket for row in rows]))
                rows = []
            self._set_joining(busy + len(rows))
            if not rows:
                return
            group = self._prefill_group(rows, [self._prefix_hit(row) for row in rows])
        except Exception as exc:
            # While a group goes in, only the rows taken here fail; the group goes on.
            self._prefill_failed(rows, exc, ends_group=not busy)
            return
        self._group = (group, rows)

    def _prefill_group(self, rows: list[Row], hits: list[PrefixHit | None]) -> PrefillGroup:
        return PrefillGroup([row.ticket.prompt_ids for row in rows], hits,
                            self.loaded.pad_token_id, self.loaded.device)

    def _whole_hit(self, row: Row) -> PrefixHit | None:
        if not self.prefix.enabled or row.wants_prompt_logprobs:
            return None
        return self.prefix.lookup_whole(row.prefix_instance, row.ticket.prompt_ids)

    def _prefix_hit(self, row: Row) -> PrefixHit | None:
        if not self.prefix.enabled or row.wants_prompt_logprobs:
            return None  # prompt logprobs need every prompt position's hidden state
        return self.prefix.lookup(
            row.prefix_instance, row.ticket.prompt_ids, minimum=MIN_PREFIX_HIT
        )

    def _prefill_failed(self, rows: list[Row], exc: Exception, *, ends_group: bool = True) -> None:
        # A prefill group has a cache of its own, so the running batch is untouched: only
        # its rows fail.
        logger.error("prefill failed for %s", self.loaded.name, exc_info=exc)
        if ends_group:
            self._group = None
        self._fail_rows(rows, f"The engine failed while starting this request: "
                              f"{type(exc).__name__}", running=False)
        self._set_joining(len(self._group[1]) if self._group is not None else 0)

    def _advance_prefill(self) -> None:
        """Feed the prefill group its next slice; join it to the batch once it is through."""
        assert self._group is not None
        group, rows = self._group
        if all(row.ticket.cancelled for row in rows):
            self._group = None
            self._release(rows)
            self._set_joining(0)
            return
        columns = group.remaining
        if self._rows and self._chunked_prefill:
            columns = max(1, PREFILL_CHUNK_TOKENS // group.size)
        try:
            out = self._prefill_slice(group, rows, columns)
            if group.remaining:
                return
            self._group = None
            self._join(group, rows, out.logits[:, -1, :].float())
            self._set_joining(0)  # they are running rows now, or finished
        except Exception as exc:
            self._prefill_failed(rows, exc)

    def _joins_step(self) -> bool:
        """Whether the prefill group's next slice goes in the running rows' decode step, one
        pass for both (chunked prefill with a lean decoder; a newcomer that asks for prompt
        logprobs needs the model's own forward)."""
        assert self._group is not None
        rows = self._group[1]
        return (bool(self._rows) and self._chunked_prefill and self.adapters.can_join_passes
                and not any(row.wants_prompt_logprobs for row in rows)
                and not all(row.ticket.cancelled for row in rows))  # then the group is dropped

    def _step_with_slice(self) -> None:
        """One pass for a decode step of the running rows and the prefill group's next slice
        (as many tokens as cost about one step: :class:`SliceBudget`); the group joins the
        running rows once its last slice is in. If the pass fails, the newcomers fail, the
        running batch goes back to where it was and takes its step alone (a failure that is
        theirs fails them there)."""
        assert self._group is not None and self._batch is not None
        group, rows = self._group
        columns = max(1, self._slices.tokens(group.width, len(self._rows)) // group.size)
        mark = self._batch.mark()
        step_inputs, slice_inputs = self._batch.step_inputs(), group.next_slice(columns)
        began = time.perf_counter()
        try:
            step_logits, slice_logits = self.adapters.joined_passes(
                [([row.adapter_name for row in self._rows], step_inputs),
                 ([row.adapter_name for row in rows], slice_inputs)],
                [True, not group.remaining])
        except Exception as exc:
            self._prefill_failed(rows, exc)
            self._batch.rewind(mark)
            self._decode_step()
            return
        self._slices.carried(time.perf_counter() - began, int(slice_inputs["input_ids"].numel()))
        assert step_logits is not None
        self._decoded(step_logits.float())
        if group.remaining:
            return
        assert slice_logits is not None
        self._group = None
        try:
            self._join(group, rows, slice_logits.float())
            self._set_joining(0)
        except Exception as exc:
            self._prefill_failed(rows, exc)

    def _set_joining(self, count: int) -> None:
        with self._cond:
            self._joining = count

    def _prefill_slice(self, group: PrefillGroup, rows: list[Row], columns: int) -> Any:
        if not any(row.wants_prompt_logprobs for row in rows):
            return self.adapters.lean_forward([row.adapter_name for row in rows],
                                              **group.next_slice(columns))
        # Prompt logprobs: the decoder's hidden states, read by a hook on the model's forward.
        model: Any = self.loaded.model
        decoder: torch.nn.Module = model.get_decoder()
        hook = decoder.register_forward_hook(
            lambda _module, _args, output: group.hidden.append(output[0])
        )
        try:
            return self._forward(rows, **group.next_slice(columns))
        finally:
            hook.remove()

    def _join(self, group: PrefillGroup, rows: list[Row], logits: torch.Tensor, *,
              store: bool = True) -> None:
        """Sample the rows' first tokens from their prompts' ``logits`` and add them to the
        running batch; ``store`` keeps their prompts (and those logits) in the prefix cache."""
        # Logits go on as float32 whatever the model's precision (sampling, logprobs, masks).
        tensors = group.tensors()
        store = store and self.prefix.enabled
        # Copies per row: sampling may change ``logits``, and an entry keeps only its own.
        prompt_logits = [row_logits.clone() for row_logits in logits] if store else None
        hidden = group.prompt_hidden()
        if hidden is not None:
            self._prompt_logprobs(rows, hidden)
        generating = [i for i, row in enumerate(rows) if row.max_new_tokens > 0]
        for row in rows:
            if row.max_new_tokens <= 0:
                row.finish_without_tokens()
        if generating:
            if len(generating) < len(rows):
                logits = logits.index_select(0, torch.tensor(generating, device=logits.device))
            picked = [rows[i] for i in generating]
            self._accept(picked, self._next_tokens(logits, picked))
        tensors.append_step([row.last_token for row in rows])
        if prompt_logits is not None:
            for index, row in enumerate(rows):
                if not row.failed:  # its prompt's keys and values are sound, even if cancelled
                    self.prefix.store(
                        row.prefix_instance, row.ticket.prompt_ids, row_layers(tensors, index),
                        logits=prompt_logits[index],
                    )
        keep = [i for i, row in enumerate(rows) if not row.leaving]
        self._release([row for row in rows if row.leaving])
        if not keep:
            return
        if len(keep) < len(rows):
            tensors.keep(keep)
        joined = [rows[i] for i in keep]
        if self._batch is None:
            self._batch = tensors
        else:
            self._batch.extend(tensors)
        self._rows.extend(joined)

    def _prompt_logprobs(self, rows: list[Row], hidden: torch.Tensor) -> None:
        """Each asking row's prompt logprobs, from the prefill's last hidden states."""
        width = hidden.shape[1]
        for index, row in enumerate(rows):
            top = row.ticket.request.prompt_logprobs
            if top is None or row.ticket.cancelled:
                continue
            states = hidden[index, width - row.prompt_tokens :]
            row.prompt_logprobs = prompt_logprobs(
                states,
                row.ticket.prompt_ids,
                max(0, top),
                functools.partial(self._output_layer, row.adapter_name),
                self.loaded.token_texts,
            )

    def _output_layer(self, adapter_name: str, states: torch.Tensor) -> torch.Tensor:
        logits = self.adapters.output_layer([adapter_name], states).float()
        cap = getattr(self.loaded.model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def _make_row(self, ticket: Ticket) -> Row | None:
        """A row for the ticket with its adapter pinned; None while no adapter slot is free."""
        request = ticket.request
        name = BASE_ADAPTER_NAME
        if request.adapter is not None:
            acquired = self.adapters.acquire(request.adapter, ticket.adapter_files)
            if acquired is None:
                return None
            name = acquired
        ticket.adapter_files = None
        sampler = RowSampler.for_params(
            request.sampling,
            self.loaded.device,
            vocab_width=self.loaded.vocab_width,
            prompt_ids=ticket.prompt_ids,
            eos_token_ids=self.loaded.eos_token_ids,
            constraint=Constraint(ticket.matcher) if ticket.matcher is not None else None,
        )
        room = self.loaded.max_context - len(ticket.prompt_ids)
        limit = request.sampling.max_tokens
        row = Row(
            ticket,
            adapter_name=name,
            sampler=sampler,
            decode=self._decode_text,
            eos_token_ids=self.loaded.eos_token_ids,
            max_new_tokens=room if limit is None else max(0, min(limit, room)),
        )
        row.prefix_instance = self.adapters.instance(row.adapter_key)
        return row

    def _decode_text(self, ids: list[int]) -> str:
        return str(self.loaded.tokenizer.decode(ids, skip_special_tokens=True))

    def _decode_step(self) -> None:
        assert self._batch is not None
        began = time.perf_counter()
        out = self.adapters.lean_forward([row.adapter_name for row in self._rows],
                                         **self._batch.step_inputs())
        logits = out.logits[:, -1, :].float()
        self._slices.stepped(time.perf_counter() - began)
        self._decoded(logits)

    def _decoded(self, logits: torch.Tensor) -> None:
        """The running rows' tokens from a decode step's ``logits`` of their last column."""
        assert self._batch is not None
        self._accept(self._rows, self._next_tokens(logits, self._rows))
        self._batch.append_step([row.last_token for row in self._rows])
        self._leave([i for i, row in enumerate(self._rows) if not row.leaving])

    def _next_tokens(self, logits: torch.Tensor, rows: list[Row]) -> StepTokens:
        return next_tokens(
            logits,
            [row.sampler for row in rows],
            vocab_size=self.loaded.vocab_size,
            texts=self.loaded.token_texts,
        )

    @staticmethod
    def _accept(rows: list[Row], step: StepTokens) -> None:
        """Give each row its token; a row whose numbers failed fails alone and leaves."""
        for index, (row, token) in enumerate(zip(rows, step.tokens, strict=True)):
            if index in step.failed:
                logger.warning("request failed in sampling: %s", step.failed[index])
                error = GrammarError if index in step.by_grammar else EngineUnavailable
                row.fail(error(step.failed[index]), token)
            else:
                row.accept(token, step.logprobs.get(index))

    def _forward(self, rows: list[Row], **inputs: object) -> Any:
        return self.adapters.forward([row.adapter_name for row in rows], **inputs)

    def _leave(self, keep: list[int]) -> None:
        if len(keep) == len(self._rows):
            return
        kept = set(keep)
        if self.prefix.enabled and self._batch is not None:
            self._remember_answers([i for i in range(len(self._rows)) if i not in kept])
        self._release([row for i, row in enumerate(self._rows) if i not in kept])
        if not keep:
            self._rows, self._batch = [], None
            return
        assert self._batch is not None
        self._batch.keep(keep)
        self._rows = [self._rows[i] for i in keep]

    def _remember_answers(self, leaving: list[int]) -> None:
        """Keep the keys and values of finished rows (prompt and answer) for the next turn."""
        assert self._batch is not None
        for index in leaving:
            row = self._rows[index]
            if not row.finished or row.failed:
                continue
            layers = row_layers(self._batch, index)
            fed = layers[0][0].shape[1]
            tokens = (row.ticket.prompt_ids + row.generated)[:fed]
            self.prefix.store(row.prefix_instance, tokens, layers)

    def _release(self, rows: list[Row]) -> None:
        now = time.monotonic()
        for row in rows:
            if row.adapter_key is not None and row.pinned:
                self.adapters.release(row.adapter_key)
            row.pinned = False
            if row.finished:
                elapsed = now - row.ticket.submitted_at
                self._seconds_per_request = 0.9 * self._seconds_per_request + 0.1 * elapsed

    def _fail_rows(self, rows: list[Row], message: str, *, running: bool = True) -> None:
        for row in rows:
            row.ticket.deliver(EngineUnavailable(message))
        self._release(rows)
        if running:
            self._rows, self._batch = [], None

"""Recording the calls a deployment serves as runs, off the request path.

:class:`RunTap` collects one call as it happens: the edge app opens it (request, key, target)
and puts it in :data:`current`; the engine rows (:class:`arkor.edge.serving.Rows`) note the
first token, each row's text and the engine's own token counts; the route notes the answer
it built (:func:`answered`). When the response has been sent, the edge app closes it and hands
it to the :class:`Recorder`: a bounded buffer that a thread writes to the database in
batches. A request never waits for, or fails because of, the database; a full buffer drops
the run, counts it (``dropped``) and logs a warning, at most one per ``WARN_EVERY_S``.

Every call is also counted into its hour's usage bucket (:mod:`arkor.store.usage`), from the
engine's token counts, whatever the route, streaming or not: at once, into an in-memory tally
per bucket (a few dictionary operations on the caller's side), which the thread adds to the
database at each write, so the thread's work grows with the buckets touched, not the calls
(and a full run buffer never loses a count). A deployment whose retention is ``disabled`` is
only counted: its request bodies are never held past the call, handed to the thread or
written.

The control plane's ``/v1/inference/chat`` serves through the same chat code with a tap of its
own (no deployment: ``deployment_id`` None, never kept as a run), opened by
:class:`arkor.server.EngineChat` and closed by :class:`Metered` once its response is sent;
:meth:`Recorder._meter` counts it into the project's inference bucket.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from arkor.contract.models import RUN_STATUSES
from arkor.engine.base import Finished, TextDelta
from arkor.store import runs as stored
from arkor.store import usage
from arkor.store.db import Database
from arkor.store.tables import Run

log = logging.getLogger("arkor.edge")
MAX_BUFFERED = 10_000
MAX_KEPT_REQUEST_BYTES = 256 * 1024
"""A larger request body is not kept (a stub says its size): no prompt that fits a context
is this long, so it is one the engine refused, and writing it would cost every other caller
the time to copy it."""
FLUSH_SECONDS = 0.5  # how often kept runs are written
METER_SECONDS = 2.0  # how often the calls counted are added to the usage buckets
WARN_EVERY_S = 60.0
STATUS_COMPLETED, STATUS_FAILED, STATUS_CANCELLED = RUN_STATUSES  # the contract's words


@dataclass(slots=True)
class RunTap:
    """One call, as the request is served (``deployment_id`` None: the control plane's
    inference route, counted only)."""

    deployment_id: str | None
    project_id: str
    route: str
    request_id: str
    key_id: str | None
    key_prefix: str | None
    base_model: str
    adapter: str | None
    keep: bool = True  # False: retention disabled, the call is only counted
    request: dict[str, Any] | None = None
    request_bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    texts: dict[int, list[str]] = field(default_factory=dict)
    deltas: dict[int, int] = field(default_factory=dict)  # tokens sent, per row
    finished: dict[int, Finished] = field(default_factory=dict)
    answer: dict[str, Any] | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)  # epoch seconds
    ended: float = 0.0
    http_status: int = 0
    stream: bool = False
    counted: tuple[int, int] | None = None  # usage() from the answer, once worked out

    def event(self, row: int, event: TextDelta | Finished) -> None:
        if isinstance(event, TextDelta):
            if self.first_token_at is None and event.text:
                self.first_token_at = time.monotonic()
            if self.keep:  # a call only counted keeps no text
                self.texts.setdefault(row, []).append(event.text)
            self.deltas[row] = self.deltas.get(row, 0) + 1
        else:
            self.finished[row] = event

    def usage(self) -> tuple[int, int]:
        """Prompt and completion tokens as the engine counted them: the route's ``usage``
        when it answered (it knows which rows share a prompt), else the rows' own counts
        (one prompt: a chat's ``n`` choices share it). A row cut before its end (the client
        left) counts the tokens it generated; its prompt, reported by the engine only at the
        end, counts 0."""
        if self.counted is not None:  # the answer's, read before (the limiter, the metrics)
            return self.counted
        usage = self.answer.get("usage") if self.answer is not None else None
        if isinstance(usage, dict):
            prompt = usage.get("prompt_tokens")
            if prompt is None:  # the Responses API's names
                prompt = usage.get("input_tokens")
            completion = usage.get("completion_tokens")
            if completion is None:
                completion = usage.get("output_tokens")
            if isinstance(prompt, int) and isinstance(completion, int):
                self.counted = prompt, completion
                return self.counted
        done = list(self.finished.values())
        cut = sum(count for row, count in self.deltas.items() if row not in self.finished)
        return (max((f.prompt_tokens for f in done), default=0),
                sum(f.completion_tokens for f in done) + cut)

    def close(self, http_status: int, *, stream: bool) -> None:
        """The call is over: note how it ended (cheap; :meth:`row` builds the record, on the
        recorder's thread, since a request's body can be megabytes of JSON)."""
        self.ended = time.monotonic()
        self.http_status, self.stream = http_status, stream
        if self.request_bytes > MAX_KEPT_REQUEST_BYTES:
            self.request = None  # not kept: let it go now, not at the next write

    def outcome(self) -> str:
        http_status = self.http_status
        if http_status == 499 or (http_status < 400 and self.error is None
                                  and self.answer is None and not self._all_finished()):
            return STATUS_CANCELLED
        if http_status >= 400 or self.error is not None:
            return STATUS_FAILED
        return STATUS_COMPLETED

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.created, UTC)

    @property
    def latency_ms(self) -> int:
        return round((self.ended - self.started) * 1000)

    def row(self) -> Run:
        assert self.deployment_id is not None, "only a deployment's calls are kept as runs"
        http_status = self.http_status
        status = self.outcome()
        answer = self.answer if self.answer is not None else (
            {"rows": [{"text": "".join(parts),
                       "finishReason": (self.finished[row].finish_reason
                                        if row in self.finished else None)}
                      for row, parts in sorted(self.texts.items())]} if self.texts else None)
        prompt_tokens, completion_tokens = self.usage()
        request = self.request or {}
        if self.request_bytes > MAX_KEPT_REQUEST_BYTES:
            request = {"omitted": f"a request body of {self.request_bytes} bytes is not kept "
                                  f"(over {MAX_KEPT_REQUEST_BYTES // 1024} KiB)"}
        return Run(
            id=f"run_{uuid.uuid4().hex}", deployment_id=self.deployment_id,
            project_id=self.project_id, route=self.route, status=status, error=self.error,
            http_status=http_status, request_id=self.request_id[:200], key_id=self.key_id,
            key_prefix=self.key_prefix, base_model=self.base_model, adapter=self.adapter,
            stream=self.stream, request_json=json.dumps(request),
            response_json=json.dumps(answer) if answer is not None else None,
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            ttft_ms=(round((self.first_token_at - self.started) * 1000)
                     if self.first_token_at is not None else None),
            latency_ms=self.latency_ms,
            response_id=(str(answer["id"])[:80] if isinstance(answer, dict)
                         and isinstance(answer.get("id"), str) else None),
            stored=is_stored(self.route, request),
            metadata_json=(json.dumps(request["metadata"])
                           if isinstance(request.get("metadata"), dict) else None),
            created_at=self.created_at,
        )

    def _all_finished(self) -> bool:
        return bool(self.finished) and set(self.deltas) <= set(self.finished)


def is_stored(route: str, request: dict[str, Any]) -> bool:
    """Whether the call asked to be kept for OpenAI's stored-completion routes: chat with
    ``store: true``; a response unless ``store: false`` (the Responses API's default)."""
    if route == "responses":
        return request.get("store", True) is not False
    return request.get("store") is True


current: contextvars.ContextVar[RunTap | None] = contextvars.ContextVar(
    "arkor_run_tap", default=None)


def answered(body: dict[str, Any]) -> None:
    """The route's answer for the run being recorded, if one is."""
    tap = current.get()
    if tap is not None:
        tap.answer, tap.counted = body, None


def failed(message: str) -> None:
    tap = current.get()
    if tap is not None:
        tap.error = message


class Metered(Response):
    """A response that closes its call's tap once sent (or abandoned by the client) and hands
    it to the recorder: what :class:`arkor.edge.app.EdgeApp` does around its own answers, for
    a response its framework sends (the control plane's inference route). The tap is the
    current one while the answer is produced, as a deployment's is."""

    def __init__(self, response: Response, tap: RunTap, recorder: Recorder) -> None:
        self.inner, self.tap, self.recorder = response, tap, recorder
        self.status_code = response.status_code
        self.background = response.background
        self.raw_headers = response.raw_headers  # shared: headers added here reach the answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = current.set(self.tap)
        try:
            self.inner.background = self.background
            await self.inner(scope, receive, send)
        finally:
            current.reset(token)
            self.tap.close(self.status_code,
                           stream=isinstance(self.inner, StreamingResponse))
            self.recorder.submit(self.tap)


class Recorder:
    """Calls counted in memory and runs buffered (at most ``max_buffered``), both written in
    batches by a thread."""

    def __init__(self, db: Database, *, max_buffered: int = MAX_BUFFERED,
                 interval: float = FLUSH_SECONDS, meter_interval: float = METER_SECONDS,
                 observer: Callable[[RunTap], None] | None = None) -> None:
        self._db = db
        self._observer = observer  # sees every closed tap first (arkor.observability.metrics)
        self._interval = interval
        self._meter_interval = meter_interval
        self._buffer: deque[RunTap] = deque()
        self._tallies: dict[usage.BucketKey, usage.Tally] = {}
        self._inference: dict[usage.InferenceKey, usage.Tally] = {}
        self._hour = datetime.min.replace(tzinfo=UTC)  # the hour of the calls counted lately
        self._hour_start = 0.0  # the same, epoch seconds
        self._max = max_buffered
        self._lock = threading.Lock()
        self._writing = threading.Lock()  # held while runs taken from the buffer are written
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned_at = 0.0
        self.dropped = 0
        self.written = 0
        self.metered = 0
        self.unmetered = 0

    def submit(self, run: RunTap) -> None:
        """A closed tap: counted into its bucket's tally now, and kept until the next write
        when it is kept as a run (or dropped, counted, when the buffer is full). The metrics
        see a deployment's calls only (their series are per deployment)."""
        if self._observer is not None and run.deployment_id is not None:
            self._observer(run)
        prompt_tokens, completion_tokens = run.usage()
        cancelled = run.outcome() == STATUS_CANCELLED
        with self._lock:
            hour = self._hour
            if not 0.0 <= run.created - self._hour_start < 3600:
                hour = usage.hour_of(run.created_at)
                if hour > self._hour:  # the clock moved on (a call may end in the hour after)
                    self._hour, self._hour_start = hour, hour.timestamp()
            if run.deployment_id is not None:
                key: Any = (run.deployment_id, run.key_id or "", hour)
                into: dict[Any, usage.Tally] = self._tallies
            else:
                key, into = (run.project_id, hour), self._inference
            tally = into.get(key)
            if tally is None:
                tally = into[key] = usage.Tally(project_id=run.project_id)
            tally.add(run.http_status, cancelled, prompt_tokens, completion_tokens,
                      run.latency_ms)
            if not run.keep or run.deployment_id is None:
                return  # only counted (retention disabled, or the inference route)
            if len(self._buffer) >= self._max:
                self.dropped += 1
                now = time.monotonic()
                if now - self._warned_at >= WARN_EVERY_S:
                    self._warned_at = now
                    log.warning("run recording is behind: %d runs dropped so far (buffer of "
                                "%d full)", self.dropped, self._max)
                return
            self._buffer.append(run)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="arkor-runs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def flush(self) -> None:
        """Write what is counted and buffered now (the recorder's thread writes runs every
        ``interval``, and counts every ``meter_interval``: a write of the buckets costs the
        same for one call as for thousands)."""
        self._meter()
        self._write_runs()

    def _write_runs(self) -> None:
        # One writer at a time: a flush (a stored-answer lookup's) returns only once the runs
        # the recorder's thread has taken from the buffer are committed too.
        with self._writing:
            self._write_buffered()

    def _write_buffered(self) -> None:
        while True:
            with self._lock:
                taps = [self._buffer.popleft() for _ in range(min(500, len(self._buffer)))]
            if not taps:
                return
            batch = []
            for tap in taps:
                try:
                    batch.append(tap.row())
                except Exception:
                    self.dropped += 1
                    log.exception("could not record a run of request %s", tap.request_id)
            try:
                with self._db.session() as session:
                    stored.add_runs(session, batch)
                self.written += len(batch)
            except Exception:
                # A deployment deleted since the call (its runs go with it), or the database
                # away: these runs are lost, and said to be.
                self.dropped += len(batch)
                log.exception("could not write %d runs", len(batch))
                return

    def _meter(self) -> None:
        """Add the calls counted since the last write to their hour's usage buckets: their
        deployment's and key's, or their project's for the control plane's inference route."""
        with self._lock:
            tallies, self._tallies = self._tallies, {}
            inference, self._inference = self._inference, {}
        if not tallies and not inference:
            return
        calls = sum(t.requests for t in tallies.values()) + sum(
            t.requests for t in inference.values())
        try:
            with self._db.session() as session:
                gone = (usage.add_tallies(session, tallies)
                        + usage.add_inference_tallies(session, inference))
            self.metered += calls - gone
            self.unmetered += gone
        except Exception:
            self.unmetered += calls
            log.exception("could not count %d calls into usage", calls)

    def _loop(self) -> None:
        metered_at = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if time.monotonic() - metered_at >= self._meter_interval:
                metered_at = time.monotonic()
                self._meter()
            self._write_runs()

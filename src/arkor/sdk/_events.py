"""Following a job's event stream: SSE decoding, ``Last-Event-ID`` resume and reconnect
decisions, written once without I/O. The clients' ``stream_events`` only open connections,
feed text in, sleep for the delays this module returns, and yield what it gives back.

Reconnect policy (contract §3.3): a connection that delivered at least one event and then
closed without ``end`` is reopened after 1 s; a failed connection, a retryable status
(408, 429, 5xx) or a stream that closed without delivering anything backs off
exponentially, ``1 s · 2^attempt`` ±25 % jitter, capped at 60 s. 401, 403, 404, 410, 426 and
other 4xx on open are raised at once.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

END = "end"
PING = "ping"
FATAL_STATUSES = frozenset({401, 403, 404, 410, 426})
RETRY_STATUSES = frozenset({408, 429})
DEFAULT_INITIAL_DELAY = 1.0
DEFAULT_MAX_DELAY = 60.0
DEFAULT_JITTER = 0.25


@dataclass(frozen=True)
class JobEvent:
    """One event of a job: ``type`` is the SSE ``event:`` name (else ``data["type"]``)."""

    id: str | None
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None


class SseDecoder:
    """Text in, complete SSE frames out (the WHATWG ``text/event-stream`` rules).

    ``last_id`` only moves when a frame is complete, so a frame cut off mid-way is asked for
    again on resume.
    """

    def __init__(self, last_id: str | None = None) -> None:
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []
        self._pending_id = last_id
        self.last_id = last_id

    def feed(self, text: str) -> list[ServerSentEvent]:
        self._buffer += text
        frames: list[ServerSentEvent] = []
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                return frames
            end, after = cut
            line, self._buffer = self._buffer[:end], self._buffer[after:]
            frame = self._line(line)
            if frame is not None:
                frames.append(frame)

    def reset(self) -> None:
        """A new connection: a half-received frame from the old one is dropped."""
        self._buffer, self._event, self._data = "", "", []
        self._pending_id = self.last_id

    def _line(self, line: str) -> ServerSentEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\x00" not in value:
            self._pending_id = value
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        self.last_id = self._pending_id
        if not data:
            return None
        return ServerSentEvent(event=event, data="\n".join(data), id=self.last_id)


def _line_end(buffer: str) -> tuple[int, int] | None:
    """Where the first line ends and the next begins; a trailing ``\\r`` waits for more."""
    for index, char in enumerate(buffer):
        if char == "\n":
            return index, index + 1
        if char == "\r":
            if index + 1 == len(buffer):
                return None
            return index, index + (2 if buffer[index + 1] == "\n" else 1)
    return None


def to_job_event(frame: ServerSentEvent) -> JobEvent | None:
    """The frame's JSON as a :class:`JobEvent`; ``None`` for malformed or typeless frames."""
    try:
        data = json.loads(frame.data)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    kind = frame.event or data.get("type")
    if not isinstance(kind, str) or not kind:
        return None
    return JobEvent(id=frame.id, type=kind, data=data)


@dataclass(frozen=True)
class ReconnectPolicy:
    """Delays in seconds; ``max_attempts`` counts failed attempts in a row (None: no limit)."""

    initial_delay: float = DEFAULT_INITIAL_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    jitter: float = DEFAULT_JITTER
    max_attempts: int | None = None
    random: Callable[[], float] = field(default=random.random, compare=False)

    def backoff(self, attempt: int) -> float:
        base = self.initial_delay * 2 ** min(attempt, 32)
        spread = 1 + self.jitter * (2 * self.random() - 1)
        return float(min(self.max_delay, base * spread))


class EventFollower:
    """The state of following one job's stream across connections.

    The driver loop: ``headers()`` to open; ``on_open(status)`` says whether to read, retry
    or raise; each text chunk goes to ``feed()``; when the connection ends, ``on_close()`` or
    ``on_error()`` gives the delay before the next attempt, or ``None`` to stop (``on_error``'s
    ``None`` means raise the error). ``done`` turns true after ``end``.
    """

    def __init__(
        self,
        *,
        last_event_id: str | int | None = None,
        reconnect: bool = True,
        policy: ReconnectPolicy | None = None,
    ) -> None:
        self._decoder = SseDecoder(None if last_event_id is None else str(last_event_id))
        self.reconnect = reconnect
        self.policy = policy or ReconnectPolicy()
        self.attempt = 0
        self.received = 0
        self.done = False

    @property
    def last_event_id(self) -> str | None:
        return self._decoder.last_id

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        return headers

    def on_open(self, status: int) -> str:
        """``"read"``, ``"retry"`` (then ask ``on_error()`` for the delay) or ``"raise"``."""
        self._decoder.reset()
        self.received = 0
        if 200 <= status < 300:
            return "read"
        if status in FATAL_STATUSES:
            return "raise"
        if status in RETRY_STATUSES or status >= 500:
            return "retry"
        return "raise"

    def feed(self, text: str) -> list[JobEvent]:
        found: list[JobEvent] = []
        for frame in self._decoder.feed(text):
            if self.done:
                break
            event = to_job_event(frame)
            if event is None or event.type == PING:
                continue
            self.received += 1
            self.attempt = 0
            found.append(event)
            if event.type == END:
                self.done = True
        return found

    def on_close(self) -> float | None:
        """The stream closed cleanly: wait this long and reconnect, or stop (``None``)."""
        if self.done or not self.reconnect:
            return None
        if self.received:
            return self.policy.initial_delay
        return self.on_error()

    def on_error(self) -> float | None:
        """The connection failed: the backoff delay, or ``None`` when out of attempts."""
        if not self.reconnect or self._exhausted():
            return None
        delay = self.policy.backoff(self.attempt)
        self.attempt += 1
        return delay

    def _exhausted(self) -> bool:
        limit = self.policy.max_attempts
        return limit is not None and self.attempt >= limit

"""Reading tool calls out of generated text, as it streams (a sans-I/O parser).

Feed the completion's text in pieces; :meth:`ToolCallParser.feed` answers what can be said
now: :class:`Content` (text outside calls), :class:`CallStarted` (a call's id and function
name) and :class:`CallArguments` (a fragment of its ``arguments`` JSON). Text that might be
the start of ``<tool_call>`` is held back until it is known not to be. A call in the layout
the grammar enforces (``{"name": ..., "arguments": {...}}``) streams its arguments as they
come; any other layout is read whole at ``</tool_call>``, and a body that is not a call is
given back as content. :meth:`finish` flushes what is left when the completion ends.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Literal

from arkor.engine.base import ToolCall
from arkor.engine.tool_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')
_WHITESPACE = " \t\r\n"


def call_id() -> str:
    """An OpenAI-style tool call id: ``call_`` and 24 random hex digits."""
    return f"call_{secrets.token_hex(12)}"


@dataclass(frozen=True)
class Content:
    text: str


@dataclass(frozen=True)
class CallStarted:
    index: int
    id: str
    name: str


@dataclass(frozen=True)
class CallArguments:
    index: int
    fragment: str


ToolCallEvent = Content | CallStarted | CallArguments
_State = Literal["text", "head", "arguments", "tail"]


@dataclass
class _JsonEnd:
    """Finds where one JSON object ends, a character at a time."""

    depth: int = 0
    in_string: bool = False
    escaped: bool = False
    started: bool = False

    def end_in(self, text: str) -> int | None:
        """The index just past the object's closing brace in ``text``, if it is there."""
        for index, char in enumerate(text):
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif char == "\\":
                    self.escaped = True
                elif char == '"':
                    self.in_string = False
            elif char == '"':
                self.in_string = True
            elif char in "{[":
                self.depth += 1
                self.started = True
            elif char in "}]":
                self.depth -= 1
                if self.started and self.depth <= 0:
                    return index + 1
        return None


@dataclass
class ToolCallParser:
    """Splits a completion into content and tool calls; see the module docstring."""

    calls: list[ToolCall] = field(default_factory=list)
    _state: _State = "text"
    _buffer: str = ""
    _name: str = ""
    _id: str = ""
    _arguments: list[str] = field(default_factory=list)
    _scanner: _JsonEnd = field(default_factory=_JsonEnd)

    def feed(self, text: str) -> list[ToolCallEvent]:
        self._buffer += text
        events: list[ToolCallEvent] = []
        while True:
            progressed = getattr(self, f"_on_{self._state}")(events)
            if not progressed:
                return events

    def finish(self) -> list[ToolCallEvent]:
        """Everything still held, at the end of the completion (a call cut short keeps what
        it has; an opening tag with no call after it is content)."""
        events: list[ToolCallEvent] = []
        if self._state == "text" and self._buffer.strip(_WHITESPACE if self.calls else ""):
            events.append(Content(self._buffer))
        elif self._state == "head":
            events.append(Content(TOOL_CALL_OPEN + self._buffer))
        elif self._state == "arguments":
            if self._buffer:
                self._arguments.append(self._buffer)
                events.append(CallArguments(len(self.calls), self._buffer))
            self._close_call()
        elif self._state == "tail":
            self._close_call()
        self._buffer, self._state = "", "text"
        return events

    def _on_text(self, events: list[ToolCallEvent]) -> bool:
        at = self._buffer.find(TOOL_CALL_OPEN)
        if at >= 0:
            before = self._buffer[:at]
            if before.strip(_WHITESPACE) or (before and not self.calls):
                events.append(Content(before))
            self._buffer = self._buffer[at + len(TOOL_CALL_OPEN):]
            self._state = "head"
            return True
        keep = _partial_suffix(self._buffer, TOOL_CALL_OPEN)
        cut = len(self._buffer) - keep
        if self.calls and not self._buffer[:cut].strip(_WHITESPACE):
            return False  # whitespace between calls is not content (unless text follows)
        if cut:
            events.append(Content(self._buffer[:cut]))
            self._buffer = self._buffer[cut:]
        return False

    def _on_head(self, events: list[ToolCallEvent]) -> bool:
        head = _HEAD.match(self._buffer)
        if head is not None and self._buffer[head.end():head.end() + 1] == "{":
            self._start_call(json.loads(f'"{head.group(1)}"'), events)
            self._buffer = self._buffer[head.end():]
            self._scanner = _JsonEnd()
            self._state = "arguments"
            return True
        close = self._buffer.find(TOOL_CALL_CLOSE)
        if close < 0:
            return False
        body, self._buffer = self._buffer[:close], self._buffer[close + len(TOOL_CALL_CLOSE):]
        self._read_whole(body, events)
        self._state = "text"
        return True

    def _on_arguments(self, events: list[ToolCallEvent]) -> bool:
        end = self._scanner.end_in(self._buffer)
        piece = self._buffer if end is None else self._buffer[:end]
        if piece:
            self._arguments.append(piece)
            events.append(CallArguments(len(self.calls), piece))
        self._buffer = "" if end is None else self._buffer[end:]
        if end is None:
            return False
        self._state = "tail"
        return True

    def _on_tail(self, _events: list[ToolCallEvent]) -> bool:
        close = self._buffer.find(TOOL_CALL_CLOSE)
        if close < 0:
            return False
        self._buffer = self._buffer[close + len(TOOL_CALL_CLOSE):].lstrip(_WHITESPACE)
        self._close_call()
        self._state = "text"
        return True

    def _start_call(self, name: str, events: list[ToolCallEvent]) -> None:
        self._name, self._id, self._arguments = name, call_id(), []
        events.append(CallStarted(len(self.calls), self._id, name))

    def _close_call(self) -> None:
        arguments = "".join(self._arguments).strip(_WHITESPACE) or "{}"
        self.calls.append(ToolCall(id=self._id, name=self._name, arguments=arguments))

    def _read_whole(self, body: str, events: list[ToolCallEvent]) -> None:
        """A call in another layout, read at its closing tag; not a call: content."""
        try:
            value = json.loads(body)
        except ValueError:
            value = None
        if not (isinstance(value, dict) and isinstance(value.get("name"), str)):
            events.append(Content(TOOL_CALL_OPEN + body + TOOL_CALL_CLOSE))
            return
        arguments = value.get("arguments", value.get("parameters", {}))
        text = arguments if isinstance(arguments, str) else json.dumps(arguments,
                                                                      ensure_ascii=False)
        self._start_call(value["name"], events)
        self._arguments.append(text)
        events.append(CallArguments(len(self.calls), text))
        self._close_call()


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of ``text`` that begins ``tag``."""
    for size in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


@dataclass
class ParsedCompletion:
    """A whole completion split into content (None when only whitespace) and calls."""

    content: str | None
    calls: list[ToolCall]


def parse_completion(text: str) -> ParsedCompletion:
    parser = ToolCallParser()
    events = parser.feed(text) + parser.finish()
    content = "".join(e.text for e in events if isinstance(e, Content))
    return ParsedCompletion(content if content.strip() else None, parser.calls)

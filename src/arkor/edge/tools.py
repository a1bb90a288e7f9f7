"""Tools on the wire (``tools``, ``tool_choice``, ``parallel_tool_calls``) → the functions
offered to the model and the grammar its calls must follow.

A call is written in the default tool format (:mod:`arkor.engine.tool_format`):
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``. The grammar, per choice:

- ``none`` (or no tools): the tools are not offered; only the answer constraint applies.
- ``auto``: free text, or free text then one call (more with ``parallel_tool_calls``); the
  trigger ``<tool_call>`` is a lazy lexeme, so text is unconstrained until a call starts and
  the call is then constrained (a structural tag). With a ``response_format`` constraint
  the answer is that format or calls, no free text.
- ``required``: the output is one call (one or more with ``parallel_tool_calls``) of an
  offered function.
- a named function: exactly one call of that function, as OpenAI answers a named choice
  (``parallel_tool_calls`` does not apply).

A call's ``name`` is one of the allowed names and its ``arguments`` satisfy that function's
``parameters`` schema (laid out as :mod:`arkor.edge.structured` lays out JSON).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from arkor.edge import structured
from arkor.edge.errors import bad
from arkor.edge.fields import boolean, string
from arkor.edge.structured import ANSWER, Constraint
from arkor.engine.base import ToolSpec
from arkor.engine.tool_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
ChoiceMode = Literal["none", "auto", "required", "function"]


@dataclass(frozen=True)
class ToolChoice:
    """How the model may call the offered tools; ``name`` for ``function`` (a named one)."""

    mode: ChoiceMode = "auto"
    name: str | None = None
    parallel: bool = True

    @property
    def offered(self) -> bool:
        return self.mode != "none"


@dataclass(frozen=True)
class Tool:
    """A function as parsed: the engine's :class:`ToolSpec`, its ``strict`` flag and where it
    came from (for errors)."""

    spec: ToolSpec
    strict: bool
    param: str


def _function(raw: dict[str, Any], param: str, strict_param: str) -> Tool:
    name = string(raw, "name", param=f"{param}.name", required=True)
    assert name is not None
    if not NAME.fullmatch(name):
        raise bad(f"{param}.name must be 1-64 letters, digits, underscores or dashes "
                  f"(got {name[:80]!r})", f"{param}.name")
    description = string(raw, "description", param=f"{param}.description") or ""
    parameters = raw.get("parameters")
    if parameters is None:
        parameters = NO_PARAMETERS
    if not isinstance(parameters, dict):
        raise bad(f"{param}.parameters must be a JSON schema (an object)",
                  f"{param}.parameters", "invalid_schema")
    strict = boolean(raw, "strict", False, param=strict_param)
    if strict:
        structured.check_strict(parameters, f"{param}.parameters")
    return Tool(ToolSpec(name=name, description=description, parameters=parameters), strict,
                f"{param}.parameters")


def parse_tools(raw: Any, param: str = "tools", *, flat: bool = False) -> tuple[Tool, ...]:
    """Chat's ``[{"type": "function", "function": {...}}]``, or with ``flat`` the Responses
    API's ``[{"type": "function", "name": ..., "parameters": ...}]``."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise bad(f"{param} must be an array", param, "invalid_type")
    tools: list[Tool] = []
    for index, tool in enumerate(raw):
        where = f"{param}[{index}]"
        if not isinstance(tool, dict):
            raise bad(f"{where} must be an object", where, "invalid_type")
        if tool.get("type") != "function":
            raise bad(f"{where}.type: only function tools are supported (got "
                      f"{str(tool.get('type'))[:40]!r})", f"{where}.type",
                      "unsupported_value")
        if flat:
            parsed = _function(tool, where, f"{where}.strict")
        else:
            function = tool.get("function")
            if not isinstance(function, dict):
                raise bad(f"{where}.function must be an object", f"{where}.function",
                          "invalid_type")
            parsed = _function(function, f"{where}.function", f"{where}.function.strict")
        if any(t.spec.name == parsed.spec.name for t in tools):
            raise bad(f"{where}: the function name {parsed.spec.name!r} is given twice",
                      f"{where}.function.name" if not flat else f"{where}.name")
        tools.append(parsed)
    return tuple(tools)


def parse_tool_choice(body: dict[str, Any], tools: tuple[Tool, ...], *, flat: bool = False
                      ) -> ToolChoice:
    """``tool_choice`` and ``parallel_tool_calls``; ``auto`` when tools are given, ``none``
    when not. A named choice is ``{"type": "function", "function": {"name"}}`` (chat) or
    ``{"type": "function", "name"}`` (Responses)."""
    parallel = boolean(body, "parallel_tool_calls", True)
    raw = body.get("tool_choice")
    if raw is None:
        return ToolChoice("auto" if tools else "none", parallel=parallel)
    if raw in ("none", "auto", "required"):
        if raw == "required" and not tools:
            raise bad("tool_choice \"required\" needs tools", "tool_choice")
        return ToolChoice("none" if not tools else raw, parallel=parallel)
    if not isinstance(raw, dict) or raw.get("type") != "function":
        raise bad("tool_choice must be none, auto, required or {\"type\": \"function\", "
                  "...} naming a function", "tool_choice")
    holder = raw if flat else raw.get("function")
    name = holder.get("name") if isinstance(holder, dict) else None
    where = "tool_choice.name" if flat else "tool_choice.function.name"
    if not isinstance(name, str) or not name:
        raise bad(f"{where} is required", where, "missing_required_parameter")
    if not any(t.spec.name == name for t in tools):
        raise bad(f"tool_choice names {name[:80]!r}, which is not among the tools",
                  where)
    return ToolChoice("function", name=name, parallel=parallel)


def _call_rules(tools: tuple[Tool, ...]) -> str:
    """Lark rules: ``body`` is one call after its opening tag, through the closing tag."""
    rules = [f'body: "\\n"? ({" | ".join(f"fn_{i}" for i in range(len(tools)))}) '
             f'"\\n"? {json.dumps(TOOL_CALL_CLOSE)}']
    for index, tool in enumerate(tools):
        head = '{"name": ' + json.dumps(tool.spec.name) + ', "arguments": '
        schema = structured.json_schema_entry(dict(tool.spec.parameters))
        rules.append(f"fn_{index}: {json.dumps(head)} %json {json.dumps(schema)} \"}}\"")
    return "\n".join(rules)


def _tool_grammar(tools: tuple[Tool, ...], choice: ToolChoice, answer: Constraint | None
                  ) -> tuple[dict[str, Any], ...]:
    call = json.dumps(TOOL_CALL_OPEN)
    repeat = choice.parallel and choice.mode != "function"
    more = f' ("\\n"? {call} body)*' if repeat else ""
    if choice.mode == "auto" and answer is None:
        start = (f"start: TEXT | call_trig body{more}\nTEXT: /(.|\\n)*/\n"
                 f"call_trig[lazy]: TEXT {call}")
    elif choice.mode == "auto":
        start = f"start: @{ANSWER} | {call} body{more}"
    else:
        start = f"start: {call} body{more}"
    lark = f"%llguidance {{}}\n{start}\n{_call_rules(tools)}\n"
    grammars: tuple[dict[str, Any], ...] = ({"name": "tools", "lark_grammar": lark},)
    if choice.mode == "auto" and answer is not None:
        grammars += answer.grammars
    return grammars


def constraint(tools: tuple[Tool, ...], choice: ToolChoice, answer: Constraint | None
               ) -> Constraint | None:
    """The request's whole output constraint: the tool calls' grammar (combined with the
    answer's in ``auto``), or the answer constraint alone when no tools are offered."""
    if not choice.offered or not tools:
        return answer
    allowed = tuple(t for t in tools if choice.mode != "function" or t.spec.name == choice.name)
    parts = tuple(structured.json_constraint(dict(t.spec.parameters), t.param)
                  for t in allowed)
    if answer is not None and choice.mode == "auto":
        parts += (answer,)
    return Constraint(_tool_grammar(allowed, choice, answer), "tools", parts)


def specs(tools: tuple[Tool, ...], choice: ToolChoice) -> tuple[ToolSpec, ...]:
    """The functions rendered into the prompt: all of them, unless the choice is ``none``."""
    return tuple(t.spec for t in tools) if choice.offered else ()

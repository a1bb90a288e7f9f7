"""Structured output: ``response_format``, vLLM's ``structured_outputs`` and the Responses
API's ``text.format`` → one llguidance grammar the engine masks the row's tokens to.

- ``response_format``: ``text`` (no constraint), ``json_object`` (any JSON object),
  ``json_schema`` (``name`` required; ``strict: true`` also needs ``"additionalProperties":
  false`` on every object, as OpenAI's strict mode does).
- ``structured_outputs`` (vLLM): exactly one of ``json`` (a schema), ``regex``, ``choice``
  (strings), ``grammar`` (Lark or GBNF), ``json_object: true``; options
  ``disable_any_whitespace``, ``disable_additional_properties``, ``whitespace_pattern``.
  vLLM's older top-level ``guided_json`` / ``guided_regex`` / ``guided_choice`` /
  ``guided_grammar`` mean the same. Giving it together with a constraining
  ``response_format`` is refused.

JSON is generated with ``", "`` and ``": "`` separators and no other whitespace (a small model
cannot then pad forever); ``disable_any_whitespace`` drops the spaces, ``whitespace_pattern``
allows that pattern instead. Before a request is queued, :func:`validate` compiles the
grammar once (off the event loop, cached by text): schema keywords llguidance cannot enforce,
invalid regexes and grammars are 400s naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from starlette.concurrency import run_in_threadpool

from arkor.edge.errors import WireError, bad
from arkor.edge.fields import boolean, obj, string

ANSWER = "answer"
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ", ",
                                "key_separator": ": "}
COMPACT_JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ",",
                                        "key_separator": ":"}
ANY_OBJECT: dict[str, Any] = {"type": "object"}
STRUCTURED_KINDS = ("json", "regex", "choice", "grammar", "json_object")
STRUCTURED_OPTIONS = ("disable_any_whitespace", "disable_additional_properties",
                      "whitespace_pattern", "disable_fallback")
GUIDED_FIELDS = {"guided_json": "json", "guided_regex": "regex", "guided_choice": "choice",
                 "guided_grammar": "grammar"}
VALIDATION_CACHE = 512


@dataclass(frozen=True)
class Constraint:
    """A grammar the output must match, and the request field it came from.

    ``grammars`` are llguidance grammar entries, each with a ``name``; the first is the top
    level and may refer to the others as ``@name``. ``parts`` are smaller constraints checked
    first, so a refusal names the exact field (one tool's ``parameters``).
    """

    grammars: tuple[dict[str, Any], ...]
    param: str
    parts: tuple[Constraint, ...] = field(default=(), compare=False)

    @cached_property
    def grammar(self) -> str:
        return json.dumps({"grammars": list(self.grammars)})


def json_schema_entry(schema: dict[str, Any], *, options: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
    """``schema`` with the JSON layout options (the caller's own ``x-guidance`` wins)."""
    own = schema.get("x-guidance")
    layout = {**JSON_OPTIONS, **(options or {}), **(own if isinstance(own, dict) else {})}
    return {**schema, "x-guidance": layout}


def _is_object_schema(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind) or (
        "properties" in schema)


def _subschemas(schema: dict[str, Any], path: str) -> Iterator[tuple[dict[str, Any], str]]:
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        children = schema.get(key)
        if isinstance(children, dict):
            for name, child in children.items():
                if isinstance(child, dict):
                    yield child, f"{path}/{key}/{name}"
    for key in ("items", "additionalProperties", "contains", "not"):
        child = schema.get(key)
        if isinstance(child, dict):
            yield child, f"{path}/{key}"
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        children = schema.get(key)
        if isinstance(children, list):
            for index, child in enumerate(children):
                if isinstance(child, dict):
                    yield child, f"{path}/{key}/{index}"


def _open_objects(schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """JSON pointers of object schemas that allow properties they do not list."""
    if _is_object_schema(schema) and schema.get("additionalProperties") is not False:
        yield path or "/"
    for child, where in _subschemas(schema, path):
        yield from _open_objects(child, where)


def close_objects(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``"additionalProperties": false`` wherever an object leaves it out."""
    closed = dict(schema)
    if _is_object_schema(closed) and "additionalProperties" not in closed:
        closed["additionalProperties"] = False
    for key, value in schema.items():
        if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(
                value, dict):
            closed[key] = {k: close_objects(v) if isinstance(v, dict) else v
                           for k, v in value.items()}
        elif key in ("items", "additionalProperties", "contains") and isinstance(value, dict):
            closed[key] = close_objects(value)
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(value, list):
            closed[key] = [close_objects(v) if isinstance(v, dict) else v for v in value]
    return closed


def check_strict(schema: dict[str, Any], param: str) -> None:
    """OpenAI's strict mode: every object says ``"additionalProperties": false``."""
    for where in _open_objects(schema):
        raise bad(f"{param}: strict mode needs \"additionalProperties\": false on every "
                  f"object schema, and the one at {where} does not say so", param,
                  "invalid_schema")


def json_constraint(schema: dict[str, Any], param: str, *, strict: bool = False,
                    options: dict[str, Any] | None = None) -> Constraint:
    if strict:
        check_strict(schema, param)
    return Constraint(({"name": ANSWER, "json_schema": json_schema_entry(
        schema, options=options)},), param)


def lark_constraint(lark: str, param: str) -> Constraint:
    return Constraint(({"name": ANSWER, "lark_grammar": lark},), param)


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError:  # the cloud extra without the local engine
        raise WireError(400, "This server cannot constrain output: llguidance is not "
                             "installed (pip install 'arkor[local]')",
                        code="unsupported_parameter") from None
    return llguidance


def regex_constraint(regex: str, param: str) -> Constraint:
    compiled = json.loads(_llguidance().LLMatcher.grammar_from_regex(regex))
    return lark_constraint(compiled["grammars"][0]["lark_grammar"], param)


def choice_constraint(labels: list[str], param: str) -> Constraint:
    return lark_constraint("start: " + " | ".join(json.dumps(label) for label in labels), param)


def grammar_constraint(text: str, param: str) -> Constraint:
    """A Lark or GBNF grammar (llguidance tells them apart)."""
    try:
        lark = _llguidance().gbnf_to_lark.any_to_lark(text)
    except Exception as exc:
        raise bad(f"{param} is not a Lark or GBNF grammar: {exc}", param,
                  "invalid_grammar") from None
    return lark_constraint(str(lark), param)


def _schema(value: Any, param: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise bad(f"{param} must be a JSON schema (an object)", param,
                      "invalid_schema") from None
    if not isinstance(value, dict):
        raise bad(f"{param} must be a JSON schema (an object)", param, "invalid_schema")
    return value


def from_json_schema_format(spec: dict[str, Any], param: str) -> Constraint:
    """OpenAI's ``json_schema`` format body: ``name``, ``schema``, ``strict``, ``description``."""
    string(spec, "name", param=f"{param}.name", required=True)
    schema = _schema(spec.get("schema", {}), f"{param}.schema")
    strict = boolean(spec, "strict", False, param=f"{param}.strict")
    return json_constraint(schema, f"{param}.schema", strict=strict)


def from_response_format(value: Any, param: str = "response_format", *, flat: bool = False
                         ) -> Constraint | None:
    """``response_format`` (chat) or, with ``flat``, the Responses API's ``text.format``
    (whose ``json_schema`` fields sit beside ``type``)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad(f"{param} must be an object", param, "invalid_type")
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return json_constraint(ANY_OBJECT, param)
    if kind == "json_schema":
        if flat:
            return from_json_schema_format(value, param)
        spec = obj(value, "json_schema", param=f"{param}.json_schema", required=True)
        assert spec is not None
        return from_json_schema_format(spec, f"{param}.json_schema")
    raise bad(f"{param}.type must be text, json_object or json_schema", f"{param}.type")


def _json_options(spec: dict[str, Any], param: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if boolean(spec, "disable_any_whitespace", False, param=f"{param}.disable_any_whitespace"):
        options.update(COMPACT_JSON_OPTIONS)
    pattern = string(spec, "whitespace_pattern", param=f"{param}.whitespace_pattern")
    if pattern:
        options.update({"whitespace_flexible": True, "whitespace_pattern": pattern,
                        "item_separator": ",", "key_separator": ":"})
    return options


def _kind_constraint(kind: str, value: Any, where: str, spec: dict[str, Any], param: str
                     ) -> Constraint:
    """One vLLM constraint ``kind`` (its ``value`` at ``where``); layout options from ``spec``."""
    if kind in ("json", "json_object"):
        schema = ANY_OBJECT if kind == "json_object" else _schema(value, where)
        if boolean(spec, "disable_additional_properties", False,
                   param=f"{param}.disable_additional_properties"):
            schema = close_objects(schema)
        return json_constraint(schema, where, options=_json_options(spec, param))
    if kind == "choice":
        if not isinstance(value, list) or not value or not all(
                isinstance(label, str) and label for label in value):
            raise bad(f"{where} must be a non-empty array of non-empty strings", where,
                      "invalid_type")
        return choice_constraint(value, where)
    if not isinstance(value, str) or not value.strip():
        raise bad(f"{where} must be a non-empty string", where, "invalid_type")
    return regex_constraint(value, where) if kind == "regex" else grammar_constraint(
        value, where)


def from_structured_outputs(spec: Any, param: str = "structured_outputs") -> Constraint | None:
    """vLLM's ``structured_outputs``: exactly one constraint, plus layout options."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise bad(f"{param} must be an object", param, "invalid_type")
    for key in spec:
        if key not in STRUCTURED_KINDS + STRUCTURED_OPTIONS:
            hint = ("; for tool calls in running text send tools with tool_choice \"auto\""
                    if key == "structural_tag" else "")
            raise bad(f"{param}.{key} is not supported (give one of "
                      f"{', '.join(STRUCTURED_KINDS)}){hint}", f"{param}.{key}",
                      "unsupported_parameter")
    if spec.get("json_object") is False:
        raise bad(f"{param}.json_object must be true when given", f"{param}.json_object")
    given = [kind for kind in STRUCTURED_KINDS if spec.get(kind) is not None]
    if len(given) != 1:
        raise bad(f"{param} takes exactly one of {', '.join(STRUCTURED_KINDS)}"
                  f" (got {len(given)})", param)
    kind = given[0]
    return _kind_constraint(kind, spec[kind], f"{param}.{kind}", spec, param)


def _guided(body: dict[str, Any]) -> Constraint | None:
    """vLLM's older top-level ``guided_json`` / ``guided_regex`` / ``guided_choice`` /
    ``guided_grammar``: one of them."""
    given = [name for name in GUIDED_FIELDS if body.get(name) is not None]
    if not given:
        return None
    if len(given) > 1:
        raise bad(f"give one of {', '.join(given)}", given[1])
    if body.get("structured_outputs") is not None:
        raise bad("give structured_outputs or the guided_* fields, not both", given[0])
    name = given[0]
    return _kind_constraint(GUIDED_FIELDS[name], body[name], name, body, name)


def chat_constraint(body: dict[str, Any]) -> Constraint | None:
    """The one output constraint of a chat or completions body (``response_format``,
    ``structured_outputs`` or vLLM's older ``guided_*`` fields)."""
    fmt = from_response_format(body.get("response_format"))
    vllm = _guided(body) or from_structured_outputs(body.get("structured_outputs"))
    if fmt is not None and vllm is not None:
        param = "structured_outputs" if body.get("structured_outputs") is not None \
            else vllm.param
        raise bad(f"{param} and a constraining response_format cannot be combined; give "
                  "one", param)
    return fmt or vllm


@lru_cache(maxsize=VALIDATION_CACHE)
def grammar_problem(grammar: str) -> str:
    """Why the engine could not enforce ``grammar`` ('' when it can), checked by the engine's
    own tokenizer-free validation; the same text is checked once."""
    _llguidance()
    from arkor.engine.base import GrammarError
    from arkor.engine.grammar import check_grammar

    try:
        check_grammar(grammar)
    except GrammarError as exc:
        return str(exc).removeprefix("The grammar cannot be used: ") or "invalid grammar"
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a panic in llguidance's Rust code is a BaseException
        return f"the grammar engine failed on it ({type(exc).__name__})"
    return ""


def _refusal(constraint: Constraint, problem: str) -> WireError:
    first = problem.strip().splitlines()[0] if problem.strip() else problem
    if "Unimplemented keys" in problem or "unimplemented" in problem.lower():
        return bad(f"{constraint.param} uses JSON Schema features the grammar engine cannot "
                   f"enforce: {first}. Remove them or describe the value another way.",
                   constraint.param, "unsupported_schema")
    kind = "schema" if "schema" in constraint.param or "parameters" in constraint.param \
        else "grammar"
    return bad(f"{constraint.param} is not a valid {kind}: {first}", constraint.param,
               f"invalid_{kind}")


def check(constraint: Constraint) -> None:
    """Refuse ``constraint`` (400 naming its field) when the engine could not enforce it."""
    for part in constraint.parts:
        check(part)
    problem = grammar_problem(constraint.grammar)
    if problem:
        raise _refusal(constraint, problem)


async def validate(constraint: Constraint | None) -> None:
    """:func:`check`, off the event loop (a large schema takes milliseconds to compile)."""
    if constraint is not None:
        await run_in_threadpool(check, constraint)

"""Stored runs read back: short previews for lists, and the chat-dataset line a run becomes
when exported as training data (the format ``arkor train --dataset`` takes).

A run becomes a line when it completed and its conversation is plain chat: system, user and
assistant messages with text content, answered with text. Tool calls, images, failed and
cancelled runs are skipped (the export says how many).
"""

from __future__ import annotations

from typing import Any

PREVIEW_CHARS = 120
CHAT_ROLES = ("system", "developer", "user", "assistant")


def _text(content: Any) -> str | None:
    """A message's content as text: a string, or text parts only; None otherwise."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text") for part in content if isinstance(part, dict)]
        if texts and all(isinstance(t, str) for t in texts) and all(
                part.get("type") in ("text", "input_text", "output_text") for part in content):
            return "".join(t for t in texts if t)
    return None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 1] + "…"


def request_messages(route: str, request: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The conversation sent, as chat messages; None when it is not plain text chat."""
    if route == "chat.completions":
        raw = request.get("messages")
    elif route == "responses":
        raw = request.get("input")
        if isinstance(raw, str):
            raw = [{"role": "user", "content": raw}]
        instructions = request.get("instructions")
        if isinstance(raw, list) and isinstance(instructions, str):
            raw = [{"role": "system", "content": instructions}, *raw]
    elif route == "completions":
        prompt = request.get("prompt")
        raw = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else None
    else:
        raw = None
    if not isinstance(raw, list):
        return None
    messages = []
    for message in raw:
        if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES:
            return None
        if message.get("tool_calls"):
            return None
        text = _text(message.get("content"))
        if text is None:
            return None
        role = "system" if message["role"] == "developer" else message["role"]
        messages.append({"role": role, "content": text})
    return messages


def answer_text(route: str, response: dict[str, Any] | None) -> str | None:
    """The first answer's text; None when there is none, or it called tools."""
    if not response:
        return None
    if route == "responses":
        texts = []
        for item in response.get("output") or []:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "function_call":
                return None
            if item.get("type") == "message":
                texts.append(_text(item.get("content")) or "")
        return "".join(texts) if texts else None
    choices = response.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        first = choices[0]
        if route == "completions":
            return first.get("text") if isinstance(first.get("text"), str) else None
        message = first.get("message") or {}
        if message.get("tool_calls"):
            return None
        return message.get("content") if isinstance(message.get("content"), str) else None
    rows = response.get("rows")  # a run that ended before the route answered
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        return str(rows[0].get("text") or "")
    return None


def prompt_preview(route: str, request: dict[str, Any]) -> str:
    messages = request_messages(route, request) or []
    users = [m["content"] for m in messages if m["role"] == "user"]
    return _short(users[-1]) if users else ""


def answer_preview(route: str, response: dict[str, Any] | None) -> str:
    return _short(answer_text(route, response) or "")


def dataset_line(route: str, status: str, request: dict[str, Any],
                 response: dict[str, Any] | None) -> dict[str, Any] | None:
    """``{"messages": [..., answer]}`` for a completed plain-chat run; else None."""
    if status != "completed":
        return None
    messages = request_messages(route, request)
    answer = answer_text(route, response)
    if not messages or answer is None or not answer.strip():
        return None
    if not any(m["role"] == "user" for m in messages):
        return None
    return {"messages": [*messages, {"role": "assistant", "content": answer}]}

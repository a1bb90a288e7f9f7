"""``POST /v1/inference/chat`` refuses what the engine cannot take with a 400 naming the field,
before any engine starts: lone surrogates in the messages, booleans, strings, NaN and
Infinity where numbers go. (Answers themselves are tested in tests/edge/test_edge_e2e.py.)"""

from __future__ import annotations

import pytest

from tests.cloud.test_endpoints_errors import EMBEDDED, call, error_of
from tests.workspace import Workspace, new_workspace


@pytest.fixture(scope="module")
def ws(cloud) -> Workspace:
    return new_workspace(cloud.url, "inference")


def chat_body(content: str = '"hi"', extra: str = "") -> bytes:
    fields = f", {extra}" if extra else ""
    return (f'{{"baseModel": "{EMBEDDED}", '
            f'"messages": [{{"role": "user", "content": {content}}}]{fields}}}').encode()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (chat_body(r'"\ud800"'), "messages[0].content is not valid Unicode"),
        (chat_body(r'[{"type": "text", "text": "a\udfffb"}]'),
         "messages[0].content[0].text is not valid Unicode"),
        (chat_body(extra='"maxTokens": true'), "maxTokens"),
        (chat_body(extra='"maxTokens": 2.5'), "maxTokens"),
        (chat_body(extra='"topP": true'), "topP"),
        (chat_body(extra='"temperature": "0.5"'), "temperature"),
        (chat_body(extra='"stream": 1'), "stream"),
        (chat_body(extra='"temperature": NaN'), "temperature must be a number"),
        (chat_body(extra='"topP": Infinity'), "top_p must be a number"),
        (chat_body(extra='"temperature": 1e400'), "temperature must be a number"),
    ],
)
def test_bad_input_is_400_naming_the_field(cloud, ws, body, needle) -> None:
    response = call(cloud, ws, "POST", "/v1/inference/chat", content=body, timeout=120,
                    headers={"content-type": "application/json"})
    assert needle in error_of(response, 400)

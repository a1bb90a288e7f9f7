"""``POST /api/inference/chat``: the Playground's body reaches the control plane unchanged,
the new fields included (``responseFormat``, ``structuredOutputs``, ``tools``,
``toolChoice``), so the control plane's own refusals come back as they are."""

from __future__ import annotations

import pytest

from tests.studio.conftest import sign_in_workspace

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("fields", "words"), [
    ({"structuredOutputs": {"choice": []}}, "structured_outputs.choice"),
    ({"responseFormat": {"type": "json_schema"}}, "response_format.json_schema"),
    ({"tools": [{"type": "function", "function": {"name": "get_weather"}}],
      "toolChoice": {"type": "function", "function": {"name": "missing"}}}, "'missing'"),
])
def test_new_fields_reach_the_control_plane(studio, cloud, fields: dict, words: str) -> None:
    sign_in_workspace(cloud.url, studio.cwd)
    base = studio.get("/api/base-models").json()["baseModels"][0]["name"]
    response = studio.post("/api/inference/chat",
                           json={"baseModel": base, "messages": HI, "maxTokens": 1, **fields})
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]

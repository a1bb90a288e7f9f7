"""The endpoint page's Runs tab in a real browser, against a real ``arkor dev`` and its model:
a call made as the page's own cURL sample makes it shows up in the live list, opens in the
viewer, is marked good, is exported as a download, and opens in the Playground with its
messages filled in, ready to replay. Also: the tab with retention disabled, and how a stored
run of each route becomes the Playground's fields."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arkor.contract.deployments import TARGET_BASE_MODEL
from tests.e2e.conftest import SCREENSHOTS
from tests.e2e.test_studio_flows import run_curl


class Endpoints:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.made: list[str] = []

    def create(self, slug: str, **extra: Any) -> dict:
        base = self.http.get("/api/base-models").json()["baseModels"][0]["name"]
        response = self.http.post("/api/deployments", json={
            "slug": slug, "target": {"kind": TARGET_BASE_MODEL, "baseModel": base}, **extra})
        assert response.status_code == 200, response.text
        deployment = response.json()["deployment"]
        self.made.append(deployment["id"])
        return dict(deployment)


@pytest.fixture
def endpoints(dev_server) -> Iterator[Endpoints]:
    token = dev_server.home.joinpath(".arkor", "studio-token").read_text()
    with httpx.Client(base_url=dev_server.url, headers={"X-Arkor-Studio-Token": token},
                      timeout=60) as http:
        made = Endpoints(http)
        yield made
        for deployment_id in made.made:
            http.delete(f"/api/deployments/{deployment_id}")


def test_a_call_is_shown_marked_exported_and_replayed(page, endpoints) -> None:
    deployment = endpoints.create("runs-e2e")
    runs = f"/api/deployments/{deployment['id']}/runs"
    key = endpoints.http.post(f"/api/deployments/{deployment['id']}/keys",
                              json={"label": "runs"}).json()["key"]["plaintext"]
    page.goto(f"/#/endpoints/{deployment['id']}")
    page.get_by_role("heading", name="runs-e2e").wait_for()
    curl = page.locator("quick-start pre").filter(has_text="curl").inner_text()
    status, body = run_curl(curl, key)
    assert status == 200, body
    answer = json.loads(body)["choices"][0]["message"]["content"]

    page.get_by_role("tab", name="Runs").click()
    assert page.url.endswith(f"#/endpoints/{deployment['id']}?tab=runs")
    page.get_by_text("Runs older than 7 days are deleted.").wait_for()
    row = page.locator("run-list tr.run-row").filter(has_text="Hello!")
    row.wait_for()  # brought in by the list's own refresh, no reload
    assert "completed" in row.inner_text() and f"{key[:12]}" in row.inner_text()
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "endpoint-runs.png"), full_page=True)

    row.click()
    viewer = page.locator("run-viewer")
    viewer.locator(".bubble.user").filter(has_text="Hello!").wait_for()
    assert answer.strip()[:20] in viewer.locator("#run-answer").inner_text()
    assert "ignored" in viewer.locator("dl.meta").last.inner_text()  # the model parameter
    viewer.get_by_role("button", name="Good").click()
    viewer.locator('button[aria-pressed="true"]', has_text="Good").wait_for()
    [listed] = endpoints.http.get(runs).json()["runs"]
    assert listed["mark"] == "good"
    assert page.url.endswith(f"?tab=runs&run={listed['id']}")
    page.screenshot(path=str(SCREENSHOTS / "endpoint-run.png"), full_page=True)

    viewer.get_by_role("button", name="← All runs").click()
    page.locator("run-list tr.run-row .badge.ok", has_text="good").wait_for()
    with page.expect_download() as download:
        page.get_by_role("button", name="Export good runs").click()
    assert download.value.suggested_filename == "runs-e2e-runs-good.jsonl"
    lines = Path(download.value.path()).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"messages": [
        {"role": "user", "content": "Hello!"}, {"role": "assistant", "content": answer}]}]
    page.get_by_text("Exported 1 run to runs-e2e-runs-good.jsonl.").wait_for()

    row.click()
    viewer.get_by_role("link", name="Open in Playground").click()
    page.locator("#pg-replay-note").wait_for()
    assert f"deployment={deployment['id']}&run={listed['id']}" in page.url
    assert page.locator("#pg-message").input_value() == "Hello!"
    assert page.locator("#pg-base").input_value() == deployment["target"]["baseModel"]
    assert page.locator('input[name="pg-mode"][value="base"]').is_checked()
    assert page.locator("#pg-max-tokens").input_value() == ""  # the sample sent none
    page.get_by_role("button", name="Send message").click()
    page.locator(".bubble.user").filter(has_text="Hello!").wait_for()
    reply = page.locator(".bubble.assistant .text")
    reply.and_(page.locator(":not(.streaming)")).wait_for(timeout=120_000)
    assert reply.inner_text().strip() and not reply.inner_text().startswith("[error]")


def test_with_retention_disabled_the_tab_says_nothing_is_kept(page, endpoints) -> None:
    deployment = endpoints.create("runs-off", runRetentionMode="disabled")
    page.goto(f"/#/endpoints/{deployment['id']}?tab=runs")
    page.get_by_text("Nothing is kept", exact=True).wait_for()
    assert "Run retention is disabled" in page.locator("#runs-retention").inner_text()
    page.locator("#runs-retention").get_by_role("button", name="Change").click()
    assert page.locator("retention-fields select").is_visible()
    assert page.locator("retention-fields select").input_value() == "disabled"
    assert page.url.endswith(f"#/endpoints/{deployment['id']}")


CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
WEATHER = {"type": "function", "function": {"name": "get_weather",
                                            "parameters": {"type": "object"}}}
STORED = {
    "chat": {"route": "chat.completions", "adapter": "job:j-1:checkpoint:40", "baseModel": "m",
             "request": {
                 "model": "x", "temperature": 0.2, "max_completion_tokens": 9, "top_p": 0.9,
                 "seed": 1, "tools": [WEATHER], "parallel_tool_calls": False,
                 "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                 "response_format": {"type": "json_schema", "json_schema": {
                     "name": "w", "schema": {"type": "object"}, "strict": True}},
                 "messages": [
                     {"role": "developer", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                     {"role": "assistant", "content": None, "tool_calls": [CALL]},
                     {"role": "tool", "tool_call_id": "call_1", "content": "18C"}]},
             "response": {"choices": [{"message": {"role": "assistant",
                                                   "content": "It is 18C."}}]}},
    "responses": {"route": "responses", "adapter": "job:j-2:final", "baseModel": "m",
                  "request": {
                      "model": "x", "instructions": "Sys", "max_output_tokens": 32,
                      "text": {"format": {"type": "json_object"}},
                      "tools": [{"type": "function", "name": "get_weather",
                                 "parameters": {"type": "object"}}],
                      "input": [
                          {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
                          {"type": "function_call", "call_id": "c1", "name": "get_weather",
                           "arguments": "{}"},
                          {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                          {"role": "user", "content": "Thanks"}]},
                  "response": {"output": [{"type": "function_call", "call_id": "c2",
                                           "name": "get_weather", "arguments": "{}"}]}},
    "completions": {"route": "completions", "adapter": None, "baseModel": "base",
                    "request": {"model": "x", "prompt": "Once upon", "max_tokens": 16,
                                "stop": ["."]},
                    "response": {"choices": [{"text": " a time"}]}},
}


def test_a_stored_run_of_each_route_becomes_the_playground_fields(page) -> None:
    page.goto("/#/playground")
    got = page.evaluate("""async (stored) => {
      const runs = await import('/runs.js');
      const out = {params: runs.requestParameters(stored.completions),
                   unknown: runs.adapterOf({adapter: 'other'})};
      for (const [name, run] of Object.entries(stored)) {
        out[name] = runs.playgroundPrefill(run);
        out[`${name}Answer`] = runs.runAnswer(run);
      }
      return out;
    }""", STORED)
    chat = got["chat"]
    assert chat["system"] == "Be brief." and chat["composer"] == "18C"
    assert [m["role"] for m in chat["history"]] == ["user", "assistant"]
    assert chat["history"][0]["content"] == "Weather?"
    assert [c["id"] for c in chat["pending"]] == ["call_1"]
    assert (chat["temperature"], chat["maxTokens"]) == ("0.2", "9")
    assert chat["format"] == {"format": "json_schema", "schema": '{\n  "type": "object"\n}',
                              "name": "w", "strict": True}
    assert chat["tools"]["choice"] == "fn:get_weather" and chat["tools"]["parallel"] is False
    assert chat["adapter"] == {"jobId": "j-1", "step": "40"}
    assert chat["leftOut"] == ["top_p", "seed"]
    assert got["chatAnswer"] == {"text": "It is 18C.", "toolCalls": []}

    responses = got["responses"]
    assert responses["system"] == "Sys" and responses["composer"] == "Thanks"
    assert [(m["role"], m.get("content")) for m in responses["history"]] == [
        ("user", "Hi"), ("assistant", None), ("tool", "sunny")]
    assert responses["history"][1]["tool_calls"][0]["id"] == "c1"
    assert responses["pending"] == [] and responses["maxTokens"] == "32"
    assert responses["format"] == {"format": "json_object"}
    assert responses["tools"]["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object"}}}]
    assert responses["adapter"] == {"jobId": "j-2", "step": ""}
    assert got["responsesAnswer"]["text"] is None
    assert got["responsesAnswer"]["toolCalls"][0]["function"]["name"] == "get_weather"

    completions = got["completions"]
    assert completions["composer"] == "Once upon" and completions["history"] == []
    assert completions["adapter"] is None and completions["baseModel"] == "base"
    assert completions["leftOut"] == ["stop"]
    assert got["completionsAnswer"] == {"text": " a time", "toolCalls": []}
    assert got["params"] == [["model", "x"], ["max_tokens", 16], ["stop", ["."]]]
    assert got["unknown"] is None

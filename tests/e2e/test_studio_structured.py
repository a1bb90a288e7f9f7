"""Structured output and tools in the Studio: the Playground's response format (JSON schema,
choice) and tool calls against the real engine, and the endpoint Quick start's structured
output, Responses API and legacy completions samples, run as printed for both auth modes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from arkor.contract.deployments import AUTH_FIXED_KEY, AUTH_NONE, TARGET_BASE_MODEL
from tests.e2e.test_studio_flows import run_curl
from tests.edge.test_edge_wire import node_openai  # noqa: F401  (the npm `openai` fixture)

LABELS = ["billing", "bug", "other"]
TICKET = "I was charged twice for my subscription this month."
NEW_OPERATIONS = {
    "structured": "Structured output: POST /v1/chat/completions",
    "responses": "Responses API: POST /v1/responses",
    "completions": "Completions (legacy): POST /v1/completions",
}
LANGUAGES = {"curl": "cURL", "python": "Python (OpenAI SDK)",
             "javascript": "JavaScript (OpenAI SDK)"}


def open_playground(page: Any, fmt: str) -> None:
    page.goto("/#/playground")
    page.locator("#pg-base option").first.wait_for(state="attached")
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Max tokens").fill("48")
    page.get_by_label("Response format").select_option(fmt)


def ask(page: Any, message: str, nth: int = 0) -> Any:
    page.get_by_label("Message").fill(message)
    page.get_by_role("button", name="Send message").click()
    reply = page.locator(".bubble.assistant .text").nth(nth)
    # "attached": a reply that is only a tool call has an empty (invisible) text
    reply.and_(page.locator(":not(.streaming)")).wait_for(state="attached", timeout=120_000)
    assert not reply.inner_text().startswith("[error]"), reply.inner_text()
    return reply


def test_playground_json_schema_reply_parses_and_is_shown(page) -> None:
    open_playground(page, "json_schema")
    assert page.get_by_label("Strict (the reply validates against the schema)").is_checked()
    reply = ask(page, TICKET)
    assert reply.get_attribute("data-json") == "valid"
    answer = json.loads(reply.inner_text())
    assert set(answer) == {"label", "urgent"}, answer
    assert answer["label"] in LABELS and isinstance(answer["urgent"], bool)


def test_playground_choice_reply_is_one_of_the_labels(page) -> None:
    open_playground(page, "choice")
    page.get_by_label("Labels, one per line").fill("\n".join(LABELS))
    assert ask(page, TICKET).inner_text().strip() in LABELS


def test_playground_shows_a_tool_call_and_answers_it(page) -> None:
    open_playground(page, "text")
    page.locator("tools-editor summary").click()
    page.get_by_role("button", name="Insert an example tool").click()
    page.get_by_label("Tool choice").select_option("fn:get_weather")
    page.get_by_label("Parallel calls (several calls in one reply)").uncheck()
    reply = ask(page, "What is the weather in Paris?")
    call = page.locator(".bubble.assistant .tool-call[data-name=get_weather]")
    call.wait_for()
    assert call.count() == 1, "a named tool choice without parallel calls is one call"
    assert reply.inner_text() == "", "a named tool choice is a call, without text"
    assert "Tool call: get_weather" in call.inner_text()
    arguments = json.loads(call.locator("pre").inner_text())
    assert isinstance(arguments["city"], str)
    assert "Result of get_weather" in page.get_by_label("Message").get_attribute("placeholder")

    page.get_by_label("Tool choice").select_option("none")
    page.get_by_label("Max tokens").fill("8")
    page.get_by_label("Message").fill('{"temperature": 18, "unit": "celsius"}')
    page.get_by_role("button", name="Send message").click()
    page.locator(".bubble.tool").filter(has_text="Tool result · get_weather").wait_for()
    final = page.locator(".bubble.assistant .text").nth(1)
    final.and_(page.locator(":not(.streaming)")).wait_for(timeout=120_000)
    assert final.inner_text().strip() and not final.inner_text().startswith("[error]")


def test_playground_editors_flag_bad_input_inline_and_send_nothing(page) -> None:
    open_playground(page, "json_schema")
    page.get_by_label("JSON schema").fill('{"type": "object",')
    problem = page.locator("#pg-format-problem")
    assert "The schema is not valid JSON" in problem.inner_text()
    assert page.get_by_label("JSON schema").get_attribute("aria-invalid") == "true"
    page.get_by_label("Message").fill("hello")
    page.get_by_role("button", name="Send message").click()
    assert page.locator(".bubble").count() == 0
    assert page.evaluate("document.activeElement.id") == "pg-schema"
    page.get_by_label("JSON schema").fill('{"type": "object"}')
    assert problem.is_hidden()

    page.get_by_label("Response format").select_option("choice")
    page.get_by_label("Labels, one per line").fill("  \n ")
    assert problem.inner_text() == "Add at least one label, one per line."
    page.get_by_label("Response format").select_option("text")
    assert problem.is_hidden()

    page.locator("tools-editor summary").click()
    page.get_by_label("Tools (JSON array of functions)").fill('[{"type": "function"}]')
    assert "Tool 1" in page.locator("#pg-tools-problem").inner_text()
    page.get_by_role("button", name="Send message").click()
    assert page.locator(".bubble").count() == 0


def test_playground_request_fields_and_stream_accumulation(page) -> None:
    """The wire fields each control sends, and tool-call fragments merged as OpenAI streams them."""
    page.goto("/#/playground")
    got = page.evaluate("""async () => {
      const rf = await import('/components/response-format.js');
      const te = await import('/components/tools-editor.js');
      const pg = await import('/pages/playground.js');
      const chunks = [
        {choices: [{delta: {tool_calls: [{index: 0, id: 'call_1', type: 'function',
                                          function: {name: 'get_weather', arguments: ''}}]}}]},
        {choices: [{delta: {tool_calls: [{index: 0, function: {arguments: '{"city": '}}]}}]},
        {choices: [{delta: {tool_calls: [{index: 0, function: {arguments: '"Paris"}'}}]}}]},
      ];
      let calls = [];
      for (const c of chunks) {
        calls = pg.mergeToolCalls(calls, pg.chunkDelta(JSON.stringify(c)).toolCalls);
      }
      return {
        text: rf.formatFields({format: 'text'}),
        object: rf.formatFields({format: 'json_object'}),
        schema: rf.formatFields({format: 'json_schema', schema: '{"type": "object"}',
                                 name: 'answer', strict: true}),
        badName: rf.formatFields({format: 'json_schema', schema: '{}', name: 'a b'}).where,
        array: rf.formatFields({format: 'json_schema', schema: '[]', name: 'a'}).error,
        choice: rf.formatFields({format: 'choice', choices: ' bug\\n\\nbilling \\nbug'}),
        noTools: te.parseTools('  '),
        twice: te.parseTools(JSON.stringify([{type: 'function', function: {name: 'f'}},
                                             {type: 'function', function: {name: 'f'}}])).error,
        named: te.toolChoiceValue('fn:f'),
        calls,
        text2: pg.chunkDelta('{"choices":[{"delta":{"content":"hi"}}]}').text,
        raw: pg.chunkDelta('plain text').text,
      };
    }""")
    assert got["text"] == {"fields": {}}
    assert got["object"] == {"fields": {"responseFormat": {"type": "json_object"}}}
    assert got["schema"] == {"fields": {"responseFormat": {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": {"type": "object"}, "strict": True}}}}
    assert got["badName"] == "name" and "must be a JSON object" in got["array"]
    assert got["choice"] == {"fields": {"structuredOutputs": {"choice": ["bug", "billing"]}}}
    assert got["noTools"] == {"tools": []} and got["twice"] == "Two tools are named f."
    assert got["named"] == {"type": "function", "function": {"name": "f"}}
    assert got["calls"] == [{"id": "call_1", "type": "function",
                             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    assert got["text2"] == "hi" and got["raw"] == "plain text"


# Quick start on real deployments of the base model, one per auth mode.

@pytest.fixture(scope="module")
def deployments(dev_server) -> Iterator[dict[str, tuple[dict, str | None]]]:
    token = dev_server.home.joinpath(".arkor", "studio-token").read_text()
    http = httpx.Client(base_url=dev_server.url, headers={"X-Arkor-Studio-Token": token},
                        timeout=60)
    base = http.get("/api/base-models").json()["baseModels"][0]["name"]
    made: dict[str, tuple[dict, str | None]] = {}
    for mode, slug in ((AUTH_FIXED_KEY, "qs-keyed"), (AUTH_NONE, "qs-open")):
        response = http.post("/api/deployments", json={
            "slug": slug, "authMode": mode,
            "target": {"kind": TARGET_BASE_MODEL, "baseModel": base}})
        assert response.status_code == 200, response.text
        deployment = response.json()["deployment"]
        key = None
        if mode == AUTH_FIXED_KEY:
            key = http.post(f"/api/deployments/{deployment['id']}/keys",
                            json={"label": "qs"}).json()["key"]["plaintext"]
        made[mode] = (deployment, key)
    yield made
    for deployment, _ in made.values():
        http.delete(f"/api/deployments/{deployment['id']}")
    http.close()


def samples(page: Any, deployment: dict) -> dict[tuple[str, str], str]:
    page.goto(f"/#/endpoints/{deployment['id']}")
    page.get_by_role("heading", name=deployment["slug"]).wait_for()
    page.locator("quick-start pre").filter(has_text="curl").wait_for()
    found = {}
    for operation, label in NEW_OPERATIONS.items():
        page.get_by_label("Operation").select_option(label=label)
        for language, name in LANGUAGES.items():
            page.get_by_label("Language").select_option(label=name)
            code = page.locator("quick-start pre")
            assert code.get_attribute("data-operation") == operation
            found[operation, language] = code.inner_text()
    return found


def run_node(folder: Any, sample: str, *, check_only: bool = False) -> str:
    script = folder / "studio-sample.mjs"
    script.write_text(sample)
    command = ["node", *(["--check"] if check_only else []), str(script)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/usr/local/bin"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_quick_start_samples_with_a_key(page, deployments, node_openai) -> None:  # noqa: F811
    deployment, key = deployments[AUTH_FIXED_KEY]
    assert key
    found = samples(page, deployment)
    for (operation, language), sample in found.items():
        assert "YOUR_API_KEY" in sample and "not-required" not in sample, (operation, language)
        assert deployment["baseUrl"] in sample
    assert found["structured", "curl"].startswith(f"curl -X POST {deployment['url']} \\")
    assert found["responses", "curl"].startswith(f"curl -X POST {deployment['baseUrl']}/responses")
    assert "client.responses.create(" in found["responses", "python"]
    assert "client.completions.create(" in found["completions", "javascript"]

    for operation in NEW_OPERATIONS:
        status, body = run_curl(found[operation, "curl"], key)
        assert status == 200, (operation, body)
        answer = json.loads(body)
        if operation == "structured":
            content = json.loads(answer["choices"][0]["message"]["content"])
            assert content["label"] in LABELS and isinstance(content["urgent"], bool)
        elif operation == "responses":
            assert answer["object"] == "response" and answer["output"]
        else:
            assert answer["object"] == "text_completion"
            assert isinstance(answer["choices"][0]["text"], str)
        assert run_curl(found[operation, "curl"])[0] == 401
    # The SDK samples are checked for syntax here; the same calls through the Python SDK's
    # parse() and the npm package run against a real deployment in
    # tests/edge/test_structured_e2e.py, so they are not generated twice.
    for operation in NEW_OPERATIONS:
        compile(found[operation, "python"], f"{operation}.py", "exec")
        run_node(node_openai, found[operation, "javascript"], check_only=True)


def test_quick_start_samples_without_auth(page, deployments) -> None:
    deployment, _ = deployments[AUTH_NONE]
    found = samples(page, deployment)
    for (operation, language), sample in found.items():
        assert "YOUR_API_KEY" not in sample and "Authorization" not in sample
        if language != "curl":
            assert "not-required" in sample and "auth_mode=none" in sample, (operation, language)
        if language == "python":
            compile(sample, f"{operation}.py", "exec")
    status, body = run_curl(found["completions", "curl"])
    assert status == 200, body

"""The endpoint page's Usage tab in a real browser, against a real ``arkor dev`` and its model:
a few calls made with the openai client under two keys show up as the totals, a chart with a
point per hour (and per day after the toggle) and a row per key, matching the Studio API."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import openai
import pytest

from arkor.contract.deployments import TARGET_BASE_MODEL
from tests.e2e.conftest import SCREENSHOTS

SERIES = 3  # requests, prompt tokens, completion tokens: one dot each per bucket


@pytest.fixture
def studio_api(dev_server) -> Iterator[httpx.Client]:
    token = dev_server.home.joinpath(".arkor", "studio-token").read_text()
    with httpx.Client(base_url=dev_server.url, headers={"X-Arkor-Studio-Token": token},
                      timeout=60) as http:
        yield http


@pytest.fixture
def deployment(studio_api: httpx.Client) -> Iterator[dict]:
    base = studio_api.get("/api/base-models").json()["baseModels"][0]["name"]
    response = studio_api.post("/api/deployments", json={
        "slug": "usage-e2e", "target": {"kind": TARGET_BASE_MODEL, "baseModel": base}})
    assert response.status_code == 200, response.text
    made = response.json()["deployment"]
    yield made
    studio_api.delete(f"/api/deployments/{made['id']}")


def test_the_usage_tab_shows_the_calls_made(page, studio_api, deployment) -> None:
    keys = {}
    for label in ("alpha", "beta"):
        issued = studio_api.post(f"/api/deployments/{deployment['id']}/keys",
                                 json={"label": label})
        keys[label] = issued.json()["key"]["plaintext"]
    for label in ("alpha", "alpha", "beta"):
        client = openai.OpenAI(base_url=deployment["baseUrl"], api_key=keys[label],
                               max_retries=0)
        client.chat.completions.create(
            model="x", max_tokens=4, messages=[{"role": "user", "content": "Hello!"}])

    page.goto(f"/#/endpoints/{deployment['id']}")
    page.get_by_role("heading", name="usage-e2e").wait_for()
    page.get_by_role("tab", name="Usage").click()
    assert page.url.endswith(f"#/endpoints/{deployment['id']}?tab=usage")
    requests = page.locator("#usage-requests")
    requests.filter(has_text=re.compile("^3$")).wait_for()  # the tab's own refresh, if need be
    total = studio_api.get(f"/api/deployments/{deployment['id']}/usage").json()["total"]
    assert total["requests"] == 3
    assert page.locator("#usage-prompt-tokens").inner_text() == str(total["promptTokens"])
    assert page.locator("#usage-completion-tokens").inner_text() == str(
        total["completionTokens"])
    assert page.locator("#usage-tokens").inner_text() == str(
        total["promptTokens"] + total["completionTokens"])
    assert page.locator("#usage-errors").inner_text() == "0 / 0"
    assert page.locator("#usage-cancelled").inner_text() == "0"
    assert page.locator("#usage-p50").inner_text().startswith("≤ ")
    assert page.locator("#usage-p95").inner_text().startswith("≤ ")

    chart = page.locator("usage-chart")
    assert chart.get_attribute("data-points") == "24"
    assert chart.get_attribute("data-requests") == "3"
    assert chart.locator("svg circle").count() == 24 * SERIES
    assert chart.locator("svg path.line").count() == SERIES
    rows = page.locator("table.usage-keys tbody tr")
    assert [rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())] == [
        "2", "1"]
    assert "alpha" in rows.first.inner_text() and keys["alpha"][:12] in rows.first.inner_text()
    assert all(key not in page.content() for key in keys.values())
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "endpoint-usage.png"), full_page=True)

    page.get_by_role("button", name="Last 30 days (daily)").click()
    page.locator('usage-chart[data-points="30"]').wait_for()
    assert chart.get_attribute("data-requests") == "3"
    assert chart.locator("svg circle").count() == 30 * SERIES
    assert requests.inner_text() == "3"

"""The endpoint page's rate limits in a real browser, against a real ``arkor dev``: limits
typed and saved reach the control plane (blank is unlimited), a value that is not a whole
number is refused on the page, and the edge then enforces what was saved; the same for one
key's limits, set in its row of the API keys list."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from arkor.contract.deployments import AUTH_NONE, TARGET_BASE_MODEL
from tests.edge.limits_support import reset_seconds


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
        "slug": "limits-e2e", "authMode": AUTH_NONE,
        "target": {"kind": TARGET_BASE_MODEL, "baseModel": base}})
    assert response.status_code == 200, response.text
    made = response.json()["deployment"]
    yield made
    studio_api.delete(f"/api/deployments/{made['id']}")


def call(deployment: dict, key: str | None = None) -> httpx.Response:
    return httpx.post(deployment["url"], timeout=120, json={
        "model": "x", "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]},
        headers={"Authorization": f"Bearer {key}"} if key else None)


def first_of_a_window(deployment: dict, key: str | None = None) -> httpx.Response:
    """A call made early enough in its window that the next one is in the same window."""
    first = call(deployment, key)
    if reset_seconds(first.headers["x-ratelimit-reset-requests"]) < 10:
        time.sleep(reset_seconds(first.headers["x-ratelimit-reset-requests"]) + 0.1)
        first = call(deployment, key)
    return first


def test_limits_are_saved_from_the_endpoint_page_and_enforced(page, studio_api,
                                                               deployment) -> None:
    warm = call(deployment)  # the model loads now, not while a window runs out
    assert warm.status_code == 200 and "x-ratelimit-limit-requests" not in warm.headers
    page.goto(f"/#/endpoints/{deployment['id']}")
    page.get_by_role("heading", name="limits-e2e").wait_for()
    rpm = page.get_by_label("Requests per minute")
    concurrent = page.get_by_label("Concurrent requests")
    assert rpm.input_value() == "" and rpm.get_attribute("placeholder") == "Unlimited"

    concurrent.fill("1.5")
    page.get_by_role("button", name="Save limits").click()
    page.get_by_role("alert").filter(
        has_text="Concurrent requests must be a whole number").wait_for()

    rpm.fill("1")
    concurrent.fill("")
    page.get_by_role("button", name="Save limits").click()
    page.get_by_text("Saved. The edge applies them from the next call.").wait_for()
    saved = studio_api.get(f"/api/deployments/{deployment['id']}").json()["deployment"]
    assert saved["limits"] == {"requestsPerMinute": 1, "tokensPerMinute": None,
                               "concurrentRequests": None}

    page.reload()
    page.get_by_role("heading", name="limits-e2e").wait_for()
    page.wait_for_function(
        "() => document.querySelector('endpoint-limits input')?.value === '1'")

    first = first_of_a_window(deployment)
    assert first.status_code == 200, first.text
    assert (first.headers["x-ratelimit-limit-requests"],
            first.headers["x-ratelimit-remaining-requests"]) == ("1", "0")
    second = call(deployment)
    assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
    assert second.json()["error"]["code"] == "rate_limit_exceeded"


@pytest.fixture
def keyed(studio_api: httpx.Client) -> Iterator[tuple[dict, dict]]:
    """A deployment with a fixed key, and that key with its plaintext."""
    base = studio_api.get("/api/base-models").json()["baseModels"][0]["name"]
    made = studio_api.post("/api/deployments", json={
        "slug": "key-limits-e2e", "target": {"kind": TARGET_BASE_MODEL, "baseModel": base}})
    assert made.status_code == 200, made.text
    deployment = made.json()["deployment"]
    key = studio_api.post(f"/api/deployments/{deployment['id']}/keys",
                          json={"label": "metered"}).json()["key"]
    yield deployment, key
    studio_api.delete(f"/api/deployments/{deployment['id']}")


def test_a_keys_limits_are_set_in_the_keys_list_and_enforced(page, studio_api, keyed) -> None:
    deployment, key = keyed
    warm = call(deployment, key["plaintext"])
    assert warm.status_code == 200 and "x-ratelimit-limit-requests" not in warm.headers
    page.goto(f"/#/endpoints/{deployment['id']}")
    page.get_by_role("heading", name="key-limits-e2e").wait_for()
    row = page.locator("li.list-row").filter(has_text="metered")
    row.get_by_text("no limits").wait_for()

    row.get_by_role("button", name="Limits of key metered").click()
    rpm = row.get_by_label("Requests/min")
    assert rpm.input_value() == "" and rpm.get_attribute("placeholder") == "Unlimited"
    rpm.fill("0")
    row.get_by_role("button", name="Save key limits").click()
    row.get_by_role("alert").filter(
        has_text="Requests per minute must be a whole number of at least 1").wait_for()
    rpm.fill("1")
    row.get_by_role("button", name="Save key limits").click()
    row.get_by_text("1 requests/min").wait_for()

    [listed] = studio_api.get(f"/api/deployments/{deployment['id']}/keys").json()["keys"]
    assert listed["limits"] == {"requestsPerMinute": 1, "tokensPerMinute": None,
                                "concurrentRequests": None}
    saved = studio_api.get(f"/api/deployments/{deployment['id']}").json()["deployment"]
    assert saved["limits"] == {"requestsPerMinute": None, "tokensPerMinute": None,
                               "concurrentRequests": None}  # the key's, not the deployment's
    page.reload()
    page.locator("li.list-row").filter(has_text="metered").get_by_text(
        "1 requests/min").wait_for()

    first = first_of_a_window(deployment, key["plaintext"])
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    second = call(deployment, key["plaintext"])
    assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
    assert second.json()["error"]["code"] == "rate_limit_exceeded"

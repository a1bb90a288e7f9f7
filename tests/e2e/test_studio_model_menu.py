"""A model-menu deployment made in the Studio: the list names it, its Quick start sends a
real `model` (MODEL_NAME, to fill in) instead of "ignored", and the sample with a menu model
answers from the real model."""

from __future__ import annotations

import json

from arkor.contract.deployments import MODEL_MENU_LABEL
from arkor.engine.registry import EMBEDDED_MODEL_NAME
from tests.e2e.test_studio_flows import expect_text, run_curl


def test_a_menu_deployment_in_the_list_and_its_quick_start(page, dev_server) -> None:
    page.goto("/#/endpoints")
    page.get_by_role("button", name="New endpoint").click()
    page.get_by_label("Slug").fill("e2e-menu")
    page.get_by_label(MODEL_MENU_LABEL).check()
    page.get_by_label("Auth").select_option(label="No auth (public)")
    page.get_by_role("button", name="Create endpoint").click()
    row = page.locator("a.list-row").filter(has_text="e2e-menu")
    row.wait_for()
    assert MODEL_MENU_LABEL in row.inner_text()

    row.click()
    page.get_by_role("heading", name="e2e-menu").wait_for()
    hint = expect_text(page, "quick-start .hint", "Set \"model\" to one of")
    assert EMBEDDED_MODEL_NAME in hint
    curl = page.locator("quick-start pre").inner_text()
    assert '"model":"MODEL_NAME"' in curl and "ignored" not in curl
    status, body = run_curl(curl.replace("MODEL_NAME", EMBEDDED_MODEL_NAME))
    assert status == 200, body
    answer = json.loads(body)
    assert answer["model"] == EMBEDDED_MODEL_NAME
    assert answer["choices"][0]["message"]["content"].strip()
    status, body = run_curl(curl)  # the placeholder as is: not a model on the menu
    assert status == 404 and json.loads(body)["error"]["code"] == "model_not_found"

    page.get_by_label("Language").select_option(label="Python (OpenAI SDK)")
    python = page.locator("quick-start pre").inner_text()
    assert 'model="MODEL_NAME"' in python

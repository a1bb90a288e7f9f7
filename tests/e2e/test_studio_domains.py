"""Custom domains from the endpoint's Settings in a real browser, against a real ``arkor dev``
whose cloud checks TXT records with a local DNS server: add a domain, see the record to
create, Verify before it exists (still pending, saying why), create it, Verify (verified,
the deployment's customDomain), then Remove."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from arkor.contract.deployments import TARGET_BASE_MODEL
from tests.dns_server import TxtServer
from tests.e2e.conftest import SCREENSHOTS


@pytest.fixture
def studio(dev_server) -> Iterator[httpx.Client]:
    token = dev_server.home.joinpath(".arkor", "studio-token").read_text()
    with httpx.Client(base_url=dev_server.url, headers={"X-Arkor-Studio-Token": token},
                      timeout=60) as http:
        yield http


def test_a_custom_domain_is_added_verified_and_removed_from_settings(
        page, studio: httpx.Client, dns: TxtServer) -> None:
    base = studio.get("/api/base-models").json()["baseModels"][0]["name"]
    created = studio.post("/api/deployments", json={
        "slug": f"dom-{uuid.uuid4().hex[:6]}", "target": {"kind": TARGET_BASE_MODEL,
                                                           "baseModel": base}})
    assert created.status_code == 200, created.text
    deployment = created.json()["deployment"]
    name = f"api.{uuid.uuid4().hex[:8]}.example.com"
    try:
        page.goto(f"/#/endpoints/{deployment['id']}")
        domains = page.locator("endpoint-domains")
        domains.get_by_text("No custom domains yet.").wait_for()
        domains.get_by_label("Custom domain").fill(name.upper())
        domains.get_by_role("button", name="Add domain").click()

        row = domains.locator(f'.custom-domain[data-domain="{name}"]')
        row.locator("status-badge", has_text="pending").wait_for()
        assert row.locator(".domain-record").inner_text() == f"_arkor-challenge.{name}"
        value = row.locator(".domain-value").inner_text()
        assert value.startswith("arkor-")

        row.get_by_role("button", name=f"Verify {name}").click()
        row.get_by_text(f"No TXT record _arkor-challenge.{name}").wait_for()
        assert row.locator("status-badge").inner_text() == "pending"

        dns.records[f"_arkor-challenge.{name}"] = [value]
        row.get_by_role("button", name=f"Verify {name}").click()
        row.locator("status-badge", has_text="verified").wait_for()
        assert row.locator(".domain-value").count() == 0  # nothing left to create
        got = studio.get(f"/api/deployments/{deployment['id']}").json()["deployment"]
        assert got["customDomain"] == name
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "endpoint-domains.png"), full_page=True)

        row.get_by_role("button", name=f"Remove {name}").click()  # the dialog is accepted
        domains.get_by_text("No custom domains yet.").wait_for()
        listed = studio.get(f"/api/deployments/{deployment['id']}/domains").json()
        assert listed == {"domains": []}
    finally:
        studio.delete(f"/api/deployments/{deployment['id']}")

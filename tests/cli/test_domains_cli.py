"""``arkor endpoints domains`` against a real server whose DNS checks ask a local DNS server:
add shows the TXT record to create, verify exits 1 until it exists, list shows the state
(tables for people, JSON for scripts), remove asks unless --yes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.dns_server import TxtServer
from tests.scripted import scripted_cloud

EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def dns() -> Iterator[TxtServer]:
    with TxtServer() as server:
        yield server


@pytest.fixture(scope="module")
def cloud(backend: str, dns: TxtServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with scripted_cloud(backend, tmp_path_factory.mktemp(f"domains-cli-{backend}"),
                        dns_nameservers=(dns.address,)) as (server, _engine):
        yield server


def test_domains_add_verify_list_remove(arkor, dns: TxtServer) -> None:
    arkor("login", "--anonymous")
    arkor("endpoints", "create", "cli-site", "--base-model", EMBEDDED)
    name = f"api.{uuid.uuid4().hex[:8]}.example.com"
    assert "No custom domains yet" in arkor("endpoints", "domains", "list", "cli-site").stdout

    added = arkor("endpoints", "domains", "add", "cli-site", name).stdout
    assert f"Added {name} (pending)" in added and f"_arkor-challenge.{name}" in added
    listed = json.loads(arkor("endpoints", "domains", "list", "cli-site", "--json").stdout)
    assert [(d["domain"], d["status"]) for d in listed] == [(name, "pending")]
    token = listed[0]["challengeValue"]
    assert token in added

    refused = arkor("endpoints", "domains", "verify", "cli-site", name, code=1)
    assert f"{name} is not verified: No TXT record _arkor-challenge.{name}" in refused.stderr
    assert "is already used by a deployment" in arkor(
        "endpoints", "domains", "add", "cli-site", name, code=1).stderr
    assert "domain must be a host name" in arkor(
        "endpoints", "domains", "add", "cli-site", "not a domain", code=1).stderr

    dns.records[f"_arkor-challenge.{name}"] = [token]
    assert f"Verified {name}" in arkor("endpoints", "domains", "verify", "cli-site", name).stdout
    table = arkor("endpoints", "domains", "list", "cli-site").stdout
    assert name in table and "verified" in table
    shown = json.loads(arkor("endpoints", "get", "cli-site", "--json").stdout)
    assert shown["customDomain"] == name

    assert "--yes" in arkor("endpoints", "domains", "remove", "cli-site", name, code=1).stderr
    assert f"Removed {name}" in arkor("endpoints", "domains", "remove", "cli-site", name,
                                      "--yes").stdout
    assert json.loads(arkor("endpoints", "domains", "list", "cli-site", "--json").stdout) == []

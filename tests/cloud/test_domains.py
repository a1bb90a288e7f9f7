"""Custom domains over real HTTP, verified against a real DNS server on a local port (dnslib):
refused before verification, verified by the TXT record, then served by Host, and removed;
400s for names that cannot be custom domains, 409 for one already taken; a failed lookup is
a 502 that changes nothing; the periodic re-check verifies and unverifies; the TLS ask route
allows exactly the serving slug names and verified domains."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import openai
import pytest

from arkor.contract.domains import DOMAIN_FORMAT_MESSAGE
from arkor.sdk import AsyncCloudApiClient, ConflictError, CustomDomain, NotFoundError
from arkor.store.tables import utcnow
from tests import scripted
from tests.conftest import CloudServer
from tests.dns_server import TxtServer
from tests.doubles.engine import Reply, ScriptedEngine
from tests.edge.conftest import EMBEDDED
from tests.workspace import Workspace, new_workspace

CLIENT = {"X-Arkor-Client": "arkor/0.1.0"}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def dns() -> Iterator[TxtServer]:
    with TxtServer() as server:
        yield server


@pytest.fixture(scope="module")
def world(backend: str, dns: TxtServer,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[scripted.World]:
    with scripted.scripted_cloud(backend, tmp_path_factory.mktemp(f"domains-{backend}"),
                                 dns_nameservers=(dns.address,), dns_timeout_s=1) as made:
        yield made


cloud = scripted.cloud
engine = scripted.engine


@dataclass
class Site:
    ws: Workspace
    deployment_id: str
    slug: str
    key: str

    def add(self, domain: str) -> CustomDomain:
        return self.ws.client.add_domain(self.deployment_id, self.ws.scope, domain=domain)

    def verify(self, domain: str) -> CustomDomain:
        return self.ws.client.verify_domain(self.deployment_id, domain, self.ws.scope)

    def api(self, cloud: CloudServer, method: str, path: str = "",
            **kwargs: object) -> httpx.Response:
        params = {"orgSlug": self.ws.scope.org_slug, "projectSlug": self.ws.scope.project_slug}
        return httpx.request(
            method, f"{cloud.url}/v1/endpoints/{self.deployment_id}/domains{path}",
            params=params, timeout=30, **kwargs,  # type: ignore[arg-type]
            headers={**CLIENT, "Authorization": f"Bearer {self.ws.credentials.token}"})


def new_site(cloud: CloudServer) -> Site:
    ws = new_workspace(cloud.url)
    deployment = ws.client.create_deployment(
        ws.scope, slug=f"site-{ws.org_id[:8]}", target={"kind": "base_model",
                                                         "baseModel": EMBEDDED})
    key = ws.client.create_deployment_key(deployment.id, ws.scope, label="domains")
    return Site(ws, deployment.id, deployment.slug, key.plaintext)


def unique_domain(label: str = "api") -> str:
    return f"{label}.{uuid.uuid4().hex[:10]}.example.com"


def chat_by_host(cloud: CloudServer, host: str, key: str) -> httpx.Response:
    return httpx.post(f"{cloud.url}/v1/chat/completions", json={"messages": HI}, timeout=30,
                      headers={"Host": host, "Authorization": f"Bearer {key}"})


def ask(cloud: CloudServer, domain: str) -> httpx.Response:
    return httpx.get(cloud.url + "/internal/tls/allowed", params={"domain": domain})


def publish(dns: TxtServer, domain: CustomDomain) -> None:
    dns.records[domain.challenge_record] = [domain.challenge_value]


def test_a_domain_is_refused_until_verified_then_served_by_host_and_removed(
        cloud: CloudServer, engine: ScriptedEngine, dns: TxtServer) -> None:
    site = new_site(cloud)
    name = unique_domain()
    added = site.api(cloud, "POST", json={"domain": name.upper() + "."})
    assert added.status_code == 201, added.text
    domain = CustomDomain.model_validate(added.json()["domain"])
    assert (domain.domain, domain.status, domain.verified_at) == (name, "pending", None)
    assert domain.challenge_record == f"_arkor-challenge.{name}"
    assert domain.challenge_value.startswith("arkor-")
    assert site.api(cloud, "GET").json()["domains"] == [added.json()["domain"]]

    refused = chat_by_host(cloud, name, site.key)
    assert refused.status_code == 403 and name in refused.json()["error"]
    assert ask(cloud, name).status_code == 404

    unverified = site.verify(name)
    assert unverified.status == "pending" and unverified.last_checked_at
    assert unverified.last_error == f"No TXT record _arkor-challenge.{name} holding this " \
                                    "domain's token yet"
    dns.records[domain.challenge_record] = ["someone-else"]
    assert "none of them this domain's token" in (site.verify(name).last_error or "")
    assert chat_by_host(cloud, name, site.key).status_code == 403

    publish(dns, domain)
    verified = site.verify(name)
    assert (verified.status, verified.last_error) == ("verified", None)
    assert verified.verified_at
    assert site.ws.client.get_deployment(site.deployment_id, site.ws.scope).custom_domain == name
    assert ask(cloud, name).json() == {"allowed": True, "domain": name}

    engine.script(Reply(deltas=("served by its own name",)))
    client = openai.OpenAI(base_url=f"{cloud.url}/v1", api_key=site.key, max_retries=0,
                           default_headers={"Host": f"{name.upper()}:443"})
    answer = client.chat.completions.create(model="anything", messages=HI)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "served by its own name"
    assert chat_by_host(cloud, name, "wrong-key").status_code == 401

    assert site.api(cloud, "DELETE", f"/{name}").status_code == 204
    assert chat_by_host(cloud, name, site.key).status_code == 403
    assert ask(cloud, name).status_code == 404
    assert site.api(cloud, "GET").json()["domains"] == []
    assert site.ws.client.get_deployment(site.deployment_id, site.ws.scope).custom_domain is None
    gone = site.api(cloud, "POST", f"/{name}/verify")
    assert gone.status_code == 404 and "is not a custom domain of this deployment" in gone.text


def test_a_domain_belongs_to_one_deployment(cloud: CloudServer, dns: TxtServer) -> None:
    first, second = new_site(cloud), new_site(cloud)
    name = unique_domain()
    first.add(name)
    for site in (first, second):
        with pytest.raises(ConflictError, match="already used by a deployment"):
            site.add(name)
    with pytest.raises(NotFoundError):
        second.verify(name)
    assert second.api(cloud, "DELETE", f"/{name}").status_code == 404

    first.ws.client.delete_deployment(first.deployment_id, first.ws.scope)  # its domains too
    assert second.add(name).status == "pending"


_SITES: dict[str, Site] = {}


def shared_site(cloud: CloudServer) -> Site:
    if cloud.url not in _SITES:
        _SITES[cloud.url] = new_site(cloud)
    return _SITES[cloud.url]


@pytest.mark.parametrize(("name", "message"), [
    ("localhost", DOMAIN_FORMAT_MESSAGE),
    ("203.0.113.7", DOMAIN_FORMAT_MESSAGE),
    ("::1", DOMAIN_FORMAT_MESSAGE),
    ("api..example.com", DOMAIN_FORMAT_MESSAGE),
    ("-api.example.com", DOMAIN_FORMAT_MESSAGE),
    ("api_1.example.com", DOMAIN_FORMAT_MESSAGE),
    ("https://api.example.com", DOMAIN_FORMAT_MESSAGE),
    ("example.123", DOMAIN_FORMAT_MESSAGE),
    ("a" * 64 + ".example.com", DOMAIN_FORMAT_MESSAGE),
    (".".join(["abcdefghi"] * 26), DOMAIN_FORMAT_MESSAGE),
    ("my-bot.localhost", "is under this server's edge domain 'localhost'"),
])
def test_names_that_cannot_be_custom_domains_are_400(cloud: CloudServer, name: str,
                                                    message: str) -> None:
    site = shared_site(cloud)
    refused = site.api(cloud, "POST", json={"domain": name})
    assert refused.status_code == 400, refused.text
    assert message in refused.json()["error"]


def test_unicode_names_are_stored_as_idna(cloud: CloudServer) -> None:
    site = shared_site(cloud)
    label = uuid.uuid4().hex[:8]
    added = site.add(f"bücher-{label}.example.com")
    assert added.domain.startswith("xn--bcher-") and added.domain.endswith(".example.com")
    site.ws.client.remove_domain(site.deployment_id, added.domain, site.ws.scope)


def test_a_failed_lookup_is_502_and_changes_nothing(cloud: CloudServer,
                                                   dns: TxtServer) -> None:
    site = new_site(cloud)
    name = unique_domain()
    publish(dns, site.add(name))
    assert site.verify(name).status == "verified"
    dns.failing = True
    try:
        failed = site.api(cloud, "POST", f"/{name}/verify")
    finally:
        dns.failing = False
    assert failed.status_code == 502
    assert failed.json()["error"].startswith(
        f"No name server could answer for _arkor-challenge.{name}")
    [kept] = site.ws.client.list_domains(site.deployment_id, site.ws.scope)
    assert kept.status == "verified" and kept.last_error and "No name server" in kept.last_error
    assert ask(cloud, name).status_code == 200


def test_the_periodic_recheck_verifies_and_unverifies(cloud: CloudServer, engine: ScriptedEngine,
                                                      dns: TxtServer) -> None:
    site = new_site(cloud)
    early, late = unique_domain("early"), unique_domain("late")
    pending = site.add(early)
    publish(dns, pending)
    checker = cloud.app.state.domain_checker
    assert checker.sweep() >= 1  # never checked: due at once
    assert site.ws.client.list_domains(site.deployment_id, site.ws.scope)[0].status == "verified"
    assert checker.sweep() == 0  # each domain at most once an interval

    publish(dns, site.add(late))
    assert site.verify(late).status == "verified"
    deployment = site.ws.client.get_deployment(site.deployment_id, site.ws.scope)
    assert deployment.custom_domain == early  # the earliest verified is the primary
    engine.script(Reply(deltas=("late",)))
    assert chat_by_host(cloud, late, site.key).status_code == 200

    del dns.records[f"_arkor-challenge.{early}"]
    checker.sweep(now=utcnow() + timedelta(seconds=cloud.settings.domain_check_interval_s + 1))
    states = {d.domain: d for d in site.ws.client.list_domains(site.deployment_id, site.ws.scope)}
    assert states[early].status == "pending" and states[early].verified_at is None
    assert "No TXT record" in (states[early].last_error or "")
    assert states[late].status == "verified"
    assert chat_by_host(cloud, early, site.key).status_code == 403
    assert ask(cloud, early).status_code == 404
    deployment = site.ws.client.get_deployment(site.deployment_id, site.ws.scope)
    assert deployment.custom_domain == late


def test_tls_ask_allows_exactly_serving_slug_names_and_verified_domains(
        cloud: CloudServer, dns: TxtServer) -> None:
    site = new_site(cloud)
    verified, pending = unique_domain(), unique_domain()
    publish(dns, site.add(verified))
    site.verify(verified)
    site.add(pending)
    edge = cloud.settings.edge_domain
    assert ask(cloud, f"{site.slug}.{edge}").status_code == 200
    assert ask(cloud, verified.upper() + ".").status_code == 200
    for name in (pending, f"x.{verified}", unique_domain(), f"_arkor-challenge.{verified}"):
        assert ask(cloud, name).status_code == 404, name

    site.ws.client.update_deployment(site.deployment_id, site.ws.scope, enabled=False)
    assert ask(cloud, verified).status_code == 404
    assert ask(cloud, f"{site.slug}.{edge}").status_code == 404


def test_the_async_client_does_the_same(cloud: CloudServer, dns: TxtServer) -> None:
    site = new_site(cloud)
    domain = unique_domain()

    async def scenario() -> None:
        async with AsyncCloudApiClient(base_url=cloud.url,
                                       credentials=site.ws.credentials) as client:
            added = await client.add_domain(site.deployment_id, site.ws.scope, domain=domain)
            publish(dns, added)
            checked = await client.verify_domain(site.deployment_id, domain, site.ws.scope)
            assert checked.status == "verified"
            assert [d.domain for d in await client.list_domains(
                site.deployment_id, site.ws.scope)] == [domain]
            await client.remove_domain(site.deployment_id, domain, site.ws.scope)
            with pytest.raises(NotFoundError):
                await client.remove_domain(site.deployment_id, domain, site.ws.scope)

    asyncio.run(scenario())

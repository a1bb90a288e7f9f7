"""A ``model_menu`` deployment over real HTTP, with the scripted engine (which base model the
edge hands the engine is the point here, not what it says): one URL serves every public base
model, the request's ``model`` picks one, a request without one gets the menu's default, and
``GET /v1/models`` lists the menu. Readers (SDK, CLI, edge) survive a target kind they do not
know."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import update

from arkor.cloud.settings import Settings
from arkor.contract.deployments import MODEL_MENU_LABEL
from arkor.engine.registry import BaseModelSpec, BaseModelSpecError
from arkor.sdk import ModelMenuTarget, UnknownTarget
from arkor.sdk.models import target_from_wire
from arkor.store.tables import Deployment
from tests import scripted
from tests.cli.conftest import cli_runner
from tests.conftest import CloudServer
from tests.doubles.engine import ScriptedEngine
from tests.edge.conftest import EMBEDDED
from tests.workspace import Workspace, new_workspace

TINY, HIDDEN = "acme/tiny-chat", "acme/internal"
# The scripted engine never loads weights, so the registered directories need not exist.
MODELS = (BaseModelSpec(TINY, path=Path("/models/tiny")),
          BaseModelSpec(HIDDEN, path=Path("/models/internal")))
world = scripted.scripted_world("menu", base_models=MODELS, public_models=(TINY, EMBEDDED))
cloud = scripted.cloud
engine = scripted.engine
HI = [{"role": "user", "content": "Hi"}]


def menu_deployment(cloud: CloudServer, slug: str) -> tuple[Workspace, str, str]:
    ws = new_workspace(cloud.url)
    deployment = ws.client.create_deployment(
        ws.scope, slug=f"{slug}-{ws.org_id[:8]}", target={"kind": "model_menu"},
        auth_mode="none")
    assert deployment.base_url is not None
    return ws, deployment.id, deployment.base_url


def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="not-required", max_retries=0)


def test_the_dto_shows_the_menu_with_its_default_first(cloud) -> None:
    ws, deployment_id, _ = menu_deployment(cloud, "dto")
    target = ws.client.get_deployment(deployment_id, ws.scope).target
    assert isinstance(target, ModelMenuTarget)
    assert (target.models, target.default_model) == ([TINY, EMBEDDED], TINY)
    listed = {m.name: m.public for m in ws.client.list_base_models()}
    assert listed == {EMBEDDED: True, TINY: True, HIDDEN: False}


def test_the_model_field_picks_each_public_model_and_its_absence_the_default(
        cloud, engine: ScriptedEngine) -> None:
    _, _, base = menu_deployment(cloud, "pick")
    for model in (TINY, EMBEDDED):
        answer = client(base).chat.completions.create(model=model, messages=HI)
        assert answer.model == model
        assert engine.requests[-1].base_model == model
        assert engine.requests[-1].adapter is None
    raw = httpx.post(f"{base}/chat/completions", json={"messages": HI}, timeout=30)
    assert raw.status_code == 200, raw.text
    assert raw.json()["model"] == TINY and engine.requests[-1].base_model == TINY
    completion = client(base).completions.create(model=EMBEDDED, prompt="Once")
    assert completion.model == EMBEDDED and engine.requests[-1].base_model == EMBEDDED
    response = client(base).responses.create(model=EMBEDDED, input="Hi")
    assert response.model == EMBEDDED and engine.requests[-1].base_model == EMBEDDED


def test_a_model_off_the_menu_is_404_before_the_engine(cloud, engine: ScriptedEngine) -> None:
    _, _, base = menu_deployment(cloud, "off")
    before = len(engine.requests)
    for model in (HIDDEN, "gpt-4o"):
        with pytest.raises(openai.NotFoundError) as caught:
            client(base).chat.completions.create(model=model, messages=HI)
        error = caught.value.body
        assert isinstance(error, dict) and error["code"] == "model_not_found"
        assert TINY in error["message"] and EMBEDDED in error["message"]
    bad = httpx.post(f"{base}/chat/completions", json={"model": 7, "messages": HI}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "model"
    assert len(engine.requests) == before


def test_get_models_lists_the_menu(cloud) -> None:
    _, _, base = menu_deployment(cloud, "list")
    assert [m.id for m in client(base).models.list()] == [TINY, EMBEDDED]
    assert client(base).models.retrieve(EMBEDDED).id == EMBEDDED  # a name with a slash
    with pytest.raises(openai.NotFoundError):
        client(base).models.retrieve(HIDDEN)


def test_a_deployment_is_retargeted_to_the_menu_and_back(cloud, engine: ScriptedEngine) -> None:
    ws = new_workspace(cloud.url)
    deployment = ws.client.create_deployment(
        ws.scope, slug=f"swap-{ws.org_id[:8]}", auth_mode="none",
        target={"kind": "base_model", "baseModel": HIDDEN})
    assert deployment.base_url is not None
    client(deployment.base_url).chat.completions.create(model=TINY, messages=HI)
    assert engine.requests[-1].base_model == HIDDEN  # a pinned model ignores `model`
    ws.client.update_deployment(deployment.id, ws.scope, target=ModelMenuTarget())
    client(deployment.base_url).chat.completions.create(model=EMBEDDED, messages=HI)
    assert engine.requests[-1].base_model == EMBEDDED
    back = ws.client.update_deployment(deployment.id, ws.scope,
                                       target={"kind": "base_model", "baseModel": HIDDEN})
    assert back.target.kind == "base_model"
    assert [m.id for m in client(deployment.base_url).models.list()] == [deployment.slug]


def test_an_unknown_target_kind_breaks_no_reader(cloud, monkeypatch) -> None:
    """A deployment a newer server wrote (a kind this version lacks) next to a menu made with
    the CLI: the SDK's list still parses, the CLI's table names both, and the edge answers
    404 for the unknown one."""
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", cloud.url)
    monkeypatch.setenv("COLUMNS", "220")
    arkor = cli_runner()
    arkor("login", "--anonymous")
    menu = json.loads(arkor("endpoints", "create", "cli-menu", "--model-menu", "--auth", "none",
                            "--json").stdout)
    assert menu["target"] == {"kind": "model_menu", "models": [TINY, EMBEDDED],
                              "defaultModel": TINY}
    future = json.loads(arkor("endpoints", "create", "cli-future", "--base-model", EMBEDDED,
                              "--auth", "none", "--json").stdout)
    with cloud.app.state.db.session() as session:  # type: ignore[attr-defined]
        session.execute(update(Deployment).where(Deployment.id == future["id"])
                        .values(target_kind="adapter_router", base_model=None))
    table = arkor("endpoints", "list").stdout
    assert "adapter_router (unknown to this arkor version)" in table
    assert f"{MODEL_MENU_LABEL}: {TINY}, {EMBEDDED}" in table
    shown = json.loads(arkor("endpoints", "get", "cli-future", "--json").stdout)
    assert shown["target"] == {"kind": "adapter_router"}
    assert isinstance(target_from_wire(shown["target"]), UnknownTarget)
    assert httpx.post(f"{future['baseUrl']}/chat/completions", json={"messages": HI},
                      timeout=30).status_code == 404


def test_public_models_must_be_registered(tmp_path) -> None:
    with pytest.raises(BaseModelSpecError, match="not a registered base model"):
        Settings(data_dir=tmp_path, public_models=("acme/nope",))
    settings = Settings(data_dir=tmp_path, base_models=MODELS)
    assert settings.registry.menu == (EMBEDDED, TINY, HIDDEN)  # unset: every model

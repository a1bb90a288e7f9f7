"""``/api/credentials``, ``/api/me`` and ``/api/base-models`` against a real control plane."""

from __future__ import annotations

import json
import os
import stat

from arkor.contract.models import ROLE_OWNER
from arkor.sdk import credentials_path, read_credentials


def test_credentials_sign_in_anonymously_without_scoping(studio, cloud) -> None:
    response = studio.get("/api/credentials")
    assert response.status_code == 200
    body = response.json()
    saved = read_credentials()
    assert saved is not None and saved.mode == "anon"
    assert body == {"mode": "anon", "baseUrl": cloud.url, "orgSlug": saved.org_slug,
                    "projectSlug": None}
    assert stat.S_IMODE(os.stat(credentials_path()).st_mode) == 0o600
    assert json.loads(credentials_path().read_text())["arkorCloudApiUrl"] == cloud.url
    assert not studio.state_file.exists()
    assert studio.get("/api/credentials").json() == body  # no second sign-up


def test_credentials_report_the_project_of_usable_state(studio, cloud) -> None:
    from tests.studio.conftest import sign_in_workspace

    ws = sign_in_workspace(cloud.url, studio.cwd)
    body = studio.get("/api/credentials").json()
    assert (body["orgSlug"], body["projectSlug"]) == (ws.scope.org_slug, ws.scope.project_slug)


def test_me_is_passed_through(studio) -> None:
    response = studio.get("/api/me")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["user"]["anonymous"] is True
    assert [org["slug"] for org in body["orgs"]] == [read_credentials().org_slug]
    assert [org["role"] for org in body["orgs"]] == [ROLE_OWNER]


def test_me_with_a_revoked_token_is_a_401_saying_sign_in_again(studio, cloud) -> None:
    from arkor.sdk import AnonymousCredentials, write_credentials
    from arkor.studio.sign_in import FILE_TOKEN_REFUSED

    write_credentials(AnonymousCredentials(token="not-a-real-token", anonymous_id="x",
                                           arkor_cloud_api_url=cloud.url, org_slug="nobody"))
    response = studio.get("/api/me")
    assert response.status_code == 401
    assert response.json() == {
        "error": FILE_TOKEN_REFUSED.format(url=cloud.url, path=credentials_path())}
    assert read_credentials().token == "not-a-real-token"  # never replaced


def test_base_models_list_the_embedded_model(studio) -> None:
    studio.get("/api/credentials")
    response = studio.get("/api/base-models")
    assert response.status_code == 200
    names = [m["name"] for m in response.json()["baseModels"]]
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in names


def test_unreachable_cloud_is_a_502_that_names_the_fix(tmp_path) -> None:
    from tests.servers import free_port
    from tests.studio.conftest import serve_studio

    for studio in serve_studio(f"http://127.0.0.1:{free_port()}", tmp_path):
        response = studio.get("/api/credentials")
        assert response.status_code == 502
        assert "Could not reach the Arkor cloud API" in response.json()["error"]

"""Setting up a signed-in caller with a project, and jobs to point deployments at.

Jobs are inserted through the store (the same functions the jobs API uses), because this
suite tests deployments, not training.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from arkor.sdk import AnonymousCredentials, CloudApiClient, ProjectScope
from arkor.store import jobs
from arkor.store.tables import utcnow


@dataclass
class Workspace:
    client: CloudApiClient
    credentials: AnonymousCredentials
    scope: ProjectScope
    project_id: str
    org_id: str


def new_workspace(url: str, project_slug: str = "demo") -> Workspace:
    anon = CloudApiClient(base_url=url).create_anonymous_session()
    credentials = AnonymousCredentials(
        token=anon.token,
        anonymous_id=anon.anonymous_id,
        arkor_cloud_api_url=url,
        org_slug=anon.personal_org.slug,
    )
    client = CloudApiClient(base_url=url, credentials=credentials)
    project = client.create_project(anon.personal_org.slug, name=project_slug, slug=project_slug)
    return Workspace(
        client=client,
        credentials=credentials,
        scope=ProjectScope(org_slug=anon.personal_org.slug, project_slug=project.slug),
        project_id=project.id,
        org_id=project.org_id,
    )


def add_job(
    cloud: object,
    ws: Workspace,
    *,
    status: str = "completed",
    checkpoint_steps: tuple[int, ...] = (),
    name: str = "triage-run",
) -> str:
    db = cloud.app.state.db  # type: ignore[attr-defined]
    artifacts = Path(cloud.settings.data_dir) / "artifacts" / str(uuid.uuid4())  # type: ignore[attr-defined]
    with db.session() as session:
        job = jobs.create_job(
            session,
            org_id=ws.org_id,
            project_id=ws.project_id,
            name=name,
            config={"model": "HuggingFaceTB/SmolLM2-135M-Instruct"},
            status=status,
            artifacts_dir=str(artifacts),
            completed_at=utcnow() if status == "completed" else None,
        )
        for step in checkpoint_steps:
            jobs.add_checkpoint(
                session, job_id=job.id, step=step, path=str(artifacts / f"step-{step}")
            )
        return job.id

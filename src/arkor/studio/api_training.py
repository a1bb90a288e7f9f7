"""``POST /api/train`` and ``POST /api/datasets``: start a LoRA job from the browser.

Upstream's Studio runs the project's Node trainer file; this product has no such file, so
the Studio starts jobs itself through the SDK: the packaged demo dataset (uploaded first) or
a JSONL file the page uploaded through ``/api/datasets``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arkor.contract.job_config import numeric_fields
from arkor.sdk import DEFAULT_MODEL
from arkor.studio.api_identity import upstream_of
from arkor.studio.errors import InvalidBody
from arkor.studio.upstream import wire

DEMO_JOB_NAME = "support-triage"
DEFAULT_JOB_NAME = "studio-run"
SETTINGS = numeric_fields()


def parse_train_body(raw: bytes) -> dict[str, Any] | str:
    """The validated body, or the message to answer 400 with."""
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        return "Invalid JSON body"
    if not isinstance(body, dict):
        return ('Training body must be a JSON object: {"dataset": "demo"} or '
                '{"datasetUploadId": "..."}')
    demo = body.get("dataset") == "demo"
    upload = body.get("datasetUploadId")
    if demo == isinstance(upload, str) or (upload is not None and not upload):
        return 'Pass exactly one of "dataset": "demo" or a non-empty "datasetUploadId".'
    for key in ("name", "model"):
        if key in body and (not isinstance(body[key], str) or not body[key].strip()):
            return f"{key} must be a non-empty string"
    settings = body.get("settings", {})
    if not isinstance(settings, dict):
        return "settings must be a JSON object"
    for key, value in settings.items():
        if key not in SETTINGS:
            return f"Unknown training setting {key!r}; known: {', '.join(SETTINGS)}"
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"settings.{key} must be a number"
    return body


async def start_training(request: Request) -> Response:
    from arkor.training.demo import DEMO_CONFIG, demo_dataset_path, demo_eval_path

    parsed = parse_train_body(await request.body())
    if isinstance(parsed, str):
        raise InvalidBody(parsed)
    settings = {k: v for k, v in parsed.get("settings", {}).items() if v is not None}
    upstream = upstream_of(request)
    credentials = await upstream.ensure_credentials()
    scope = await upstream.ensure_scope(credentials)
    async with upstream.client(credentials) as client:
        if parsed.get("dataset") == "demo":
            config = {k: v for k, v in DEMO_CONFIG.items() if k != "datasetSource"}
            train = await client.upload_dataset(scope, demo_dataset_path())
            config["datasetSource"] = {"type": "upload", "uploadId": train.id}
            if settings.get("evalSteps"):
                held_out = await client.upload_dataset(scope, demo_eval_path())
                config["evalDatasetSource"] = {"type": "upload", "uploadId": held_out.id}
            name = DEMO_JOB_NAME
        else:
            config = {"model": DEFAULT_MODEL,
                      "datasetSource": {"type": "upload", "uploadId": parsed["datasetUploadId"]}}
            name = DEFAULT_JOB_NAME
        if "model" in parsed:
            config["model"] = parsed["model"]
        config.update(settings)
        job = await client.create_job(scope, name=parsed.get("name", name).strip(),
                                      config=config)
    return JSONResponse({"job": wire(job)})


async def upload_dataset(request: Request) -> Response:
    upstream = upstream_of(request)
    content = await request.body()
    if not content.strip():
        raise InvalidBody("The dataset file is empty: upload chat-format JSONL, one "
                          '{"messages": [...]} object per line.')
    credentials = await upstream.ensure_credentials()
    scope = await upstream.ensure_scope(credentials)
    params = scope.params()
    name = request.query_params.get("name")
    if name:
        params["name"] = name
    return await upstream.pass_through(credentials, "POST", "/v1/datasets", params=params,
                                       content=content,
                                       headers={"Content-Type": "application/octet-stream"})


routes = [
    Route("/api/train", start_training, methods=["POST"]),
    Route("/api/datasets", upload_dataset, methods=["POST"]),
]

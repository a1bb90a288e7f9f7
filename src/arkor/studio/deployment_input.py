"""Checks the Studio runs on deployment and key bodies before any upstream call (§4.3)."""

from __future__ import annotations

import json
from typing import Any

from arkor.contract import deployments as rules
from arkor.contract.models import RateLimits
from arkor.studio.errors import InvalidBody

INVALID_JSON = "Invalid JSON body"
UPDATE_NOT_OBJECT = "Deployment update body must be a JSON object."
KEY_LABEL = (f"Key create body must include a non-empty `label` string "
             f"(1-{rules.KEY_LABEL_MAX} chars)")


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise InvalidBody(INVALID_JSON) from None


def _target_issues(target: Any) -> list[str]:
    if not isinstance(target, dict):
        return ["target: Expected object"]
    kind = target.get("kind")
    if kind == rules.TARGET_BASE_MODEL:
        model = target.get("baseModel")
        return [] if isinstance(model, str) and model.strip() else [
            "target.baseModel: Expected a non-empty string"]
    if kind == rules.TARGET_MODEL_MENU:
        return []
    if kind != rules.TARGET_ADAPTER:
        return ['target.kind: Expected "adapter", "base_model" or "model_menu"']
    adapter = target.get("adapter")
    if not isinstance(adapter, dict):
        return ["target.adapter: Expected object"]
    issues = []
    if adapter.get("kind") not in (rules.ADAPTER_FINAL, rules.ADAPTER_CHECKPOINT):
        issues.append('target.adapter.kind: Expected "final" or "checkpoint"')
    job_id = adapter.get("jobId")
    if not isinstance(job_id, str) or not job_id.strip():
        issues.append("target.adapter.jobId: Expected a non-empty string")
    step = adapter.get("step")
    if adapter.get("kind") == rules.ADAPTER_CHECKPOINT and not (
            isinstance(step, int) and not isinstance(step, bool) and step >= 0):
        issues.append("target.adapter.step: Expected an integer >= 0")
    return issues


def retention_issues(body: dict[str, Any]) -> list[str]:
    mode = body.get("runRetentionMode")
    days = body.get("runRetentionDays")
    if mode is None and days is None:
        return []
    if mode not in rules.RETENTION_MODES:
        return ["runRetentionMode: Expected \"unlimited\", \"disabled\" or \"days\""]
    if mode != rules.RETENTION_DAYS and days is not None:
        return [f"runRetentionDays: {rules.DAYS_ONLY_WITH_DAYS_MODE}"]
    if mode == rules.RETENTION_DAYS and not (
            isinstance(days, int) and not isinstance(days, bool) and days >= 1):
        return [f"runRetentionMode: {rules.DAYS_MODE_NEEDS_DAYS}"]
    return []


def create_body(raw: bytes) -> dict[str, Any]:
    """The create body to forward; raises :class:`InvalidBody` with the message to show."""
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise InvalidBody("Invalid deployment create body: (root): Expected object")
    issues = []
    slug = body.get("slug")
    if not isinstance(slug, str) or not rules.is_deployment_slug(slug.strip()):
        issues.append(f"slug: {rules.SLUG_FORMAT_MESSAGE}")
    issues += _target_issues(body.get("target"))
    if "authMode" in body and body["authMode"] not in rules.AUTH_MODES:
        issues.append('authMode: Expected "fixed_api_key" or "none"')
    issues += retention_issues(body)
    if issues:
        raise InvalidBody("Invalid deployment create body: " + "; ".join(issues))
    return {**body, "slug": slug.strip()}  # type: ignore[union-attr]


def update_body(raw: bytes) -> dict[str, Any]:
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise InvalidBody(UPDATE_NOT_OBJECT)
    return body


def key_label(raw: bytes) -> str:
    body = parse_json(raw)
    label = body.get("label") if isinstance(body, dict) else None
    if not isinstance(label, str):
        issue = "label: Expected string"
    elif not label.strip():
        issue = "label: String must contain at least 1 character(s)"
    elif len(label.strip()) > rules.KEY_LABEL_MAX:
        issue = f"label: String must contain at most {rules.KEY_LABEL_MAX} character(s)"
    else:
        return label.strip()
    raise InvalidBody(f"{KEY_LABEL}: {issue}")


LIMIT_NAMES = tuple(str(info.alias) for info in RateLimits.model_fields.values())
KEY_LIMITS = ("Key update body must be {\"limits\": {...}} with " + ", ".join(LIMIT_NAMES)
              + " each a whole number or null (unlimited)")


def key_limits(raw: bytes) -> dict[str, int | None]:
    """A key's limits to send (a name left out keeps its value); the control plane judges
    the ranges."""
    body = parse_json(raw)
    limits = body.get("limits") if isinstance(body, dict) else None
    if not isinstance(limits, dict) or not set(limits) <= set(LIMIT_NAMES) or not all(
            value is None or (isinstance(value, int) and not isinstance(value, bool))
            for value in limits.values()):
        raise InvalidBody(KEY_LIMITS)
    return limits

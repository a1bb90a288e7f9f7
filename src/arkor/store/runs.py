"""Stored runs: written in batches by the edge's recorder, read newest first with a cursor,
deleted one by one, all at once, or by the retention sweep in bounded batches."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from arkor.store.tables import Deployment, Run

SWEEP_BATCH = 1000


def add_runs(session: Session, runs: Iterable[Run]) -> None:
    session.add_all(list(runs))
    session.flush()


@dataclass(frozen=True)
class RunFilter:
    status: str | None = None
    key_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    mark: str | None = None


def encode_cursor(run: Run) -> str:
    raw = f"{run.created_at.isoformat()}|{run.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """``ValueError`` for a cursor this module did not write."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, run_id = raw.partition("|")
        return datetime.fromisoformat(stamp), run_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not a cursor from this server") from exc


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_runs(session: Session, deployment_id: str, filters: RunFilter, *, limit: int,
              cursor: str | None = None) -> tuple[list[Run], str | None]:
    """Newest first; ``limit`` runs and the cursor of the next page (None on the last)."""
    query = select(Run).where(Run.deployment_id == deployment_id)
    if filters.status:
        query = query.where(Run.status == filters.status)
    if filters.key_id:
        query = query.where(Run.key_id == filters.key_id)
    if filters.since:
        query = query.where(Run.created_at >= filters.since)
    if filters.until:
        query = query.where(Run.created_at < filters.until)
    if filters.mark:
        query = query.where(Run.mark == filters.mark)
    if filters.text:
        pattern = f"%{_escape_like(filters.text.lower())}%"
        query = query.where(or_(Run.request_json.ilike(pattern, escape="\\"),
                                Run.response_json.ilike(pattern, escape="\\")))
    if cursor:
        stamp, run_id = decode_cursor(cursor)
        query = query.where(or_(Run.created_at < stamp,
                                (Run.created_at == stamp) & (Run.id < run_id)))
    rows = list(session.execute(
        query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit + 1)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]) if more and rows else None


def get_run(session: Session, deployment_id: str, run_id: str) -> Run | None:
    return session.execute(select(Run).where(
        Run.deployment_id == deployment_id, Run.id == run_id)).scalar_one_or_none()


def delete_run(session: Session, run: Run) -> None:
    session.delete(run)
    session.flush()


def delete_runs(session: Session, deployment_id: str) -> int:
    result = session.execute(delete(Run).where(Run.deployment_id == deployment_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


def retention_targets(session: Session) -> list[tuple[str, int]]:
    """``(deployment id, days kept)`` of every deployment whose runs expire: ``days`` N, and
    0 for ``disabled`` (whatever it kept before the change goes)."""
    rows = session.execute(select(Deployment.id, Deployment.run_retention_mode,
                                  Deployment.run_retention_days).where(
        Deployment.run_retention_mode.in_(("days", "disabled")))).all()
    kept = []
    for deployment_id, mode, days in rows:
        if mode == "disabled":
            kept.append((deployment_id, 0))
        elif days is not None:
            kept.append((deployment_id, int(days)))
    return kept


def delete_older(session: Session, deployment_id: str, cutoff: datetime,
                 batch: int = SWEEP_BATCH) -> int:
    """Delete up to ``batch`` of the deployment's runs made before ``cutoff``."""
    ids = list(session.execute(select(Run.id).where(
        Run.deployment_id == deployment_id, Run.created_at < cutoff).limit(batch)).scalars())
    if not ids:
        return 0
    session.execute(delete(Run).where(Run.id.in_(ids)))
    return len(ids)


def stored_run(session: Session, deployment_id: str, route: str,
               response_id: str) -> Run | None:
    """The deployment's stored (``store``) run of ``route`` whose answer has ``response_id``."""
    return session.execute(select(Run).where(
        Run.deployment_id == deployment_id, Run.route == route, Run.stored.is_(True),
        Run.response_id == response_id)).scalars().first()


def stored_runs(session: Session, deployment_id: str, route: str, *, newest_first: bool,
                after: Run | None, limit: int) -> list[Run]:
    """Up to ``limit`` stored runs of ``route`` in creation order, after ``after``."""
    query = select(Run).where(Run.deployment_id == deployment_id, Run.route == route,
                              Run.stored.is_(True), Run.status == "completed")
    if after is not None:
        if newest_first:
            query = query.where(or_(Run.created_at < after.created_at,
                                    (Run.created_at == after.created_at) & (Run.id < after.id)))
        else:
            query = query.where(or_(Run.created_at > after.created_at,
                                    (Run.created_at == after.created_at) & (Run.id > after.id)))
    order = (Run.created_at.desc(), Run.id.desc()) if newest_first else (
        Run.created_at.asc(), Run.id.asc())
    return list(session.execute(query.order_by(*order).limit(limit)).scalars())

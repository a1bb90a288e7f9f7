"""Custom domains: a deployment's own host names, each verified by a DNS TXT record.

``custom_domains.domain`` is the primary key, so a name belongs to at most one deployment and
two concurrent adds race at the ``INSERT`` (the loser gets :class:`DomainTaken`). A check's
outcome is written by :func:`record_check`; ``deployments.custom_domain`` mirrors the
deployment's earliest verified domain (its DTO's ``customDomain``), kept in step here.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from arkor.store.errors import DomainTaken
from arkor.store.tables import CustomDomain, Deployment, utcnow

ERROR_MAX = 500


def new_token() -> str:
    """The challenge value: what the TXT record must hold (not a credential; it only says
    that whoever controls the DNS zone asked for this domain here)."""
    return "arkor-" + secrets.token_hex(16)


def list_domains(session: Session, deployment_id: str) -> list[CustomDomain]:
    return list(session.execute(
        select(CustomDomain).where(CustomDomain.deployment_id == deployment_id)
        .order_by(CustomDomain.created_at, CustomDomain.domain)).scalars())


def get_domain(session: Session, deployment_id: str, domain: str) -> CustomDomain | None:
    row = session.get(CustomDomain, domain)
    return row if row is not None and row.deployment_id == deployment_id else None


def add_domain(session: Session, deployment: Deployment, domain: str) -> CustomDomain:
    """A pending domain with a fresh token; :class:`DomainTaken` when any deployment has it."""
    row = CustomDomain(domain=domain, deployment_id=deployment.id, token=new_token(),
                       created_at=utcnow())
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        raise DomainTaken(domain) from exc
    return row


def remove_domain(session: Session, row: CustomDomain) -> None:
    deployment_id = row.deployment_id
    session.delete(row)
    session.flush()
    _sync_primary(session, deployment_id)


def record_check(session: Session, row: CustomDomain, *, found: bool | None,
                 error: str | None = None, now: datetime | None = None) -> None:
    """Write a check's outcome: ``found`` True verifies, False unverifies (the record is
    gone or holds another value), None (the lookup itself failed) leaves the state as it is."""
    row.last_checked_at = now or utcnow()
    row.last_error = error[:ERROR_MAX] if error else None
    if found is True and row.verified_at is None:
        row.verified_at = row.last_checked_at
    elif found is False:
        row.verified_at = None
    session.flush()
    _sync_primary(session, row.deployment_id)


def due_for_check(session: Session, checked_before: datetime,
                  limit: int = 100) -> list[tuple[str, str]]:
    """``(domain, token)`` of domains not checked since ``checked_before``, least recently
    checked first."""
    return [(domain, token) for domain, token in session.execute(
        select(CustomDomain.domain, CustomDomain.token).where(or_(
            CustomDomain.last_checked_at.is_(None),
            CustomDomain.last_checked_at < checked_before))
        .order_by(CustomDomain.last_checked_at.is_not(None), CustomDomain.last_checked_at)
        .limit(limit))]


def verified_hosts(session: Session) -> dict[str, str]:
    """Every verified domain → its deployment's slug (what the edge routes by Host)."""
    rows = session.execute(
        select(CustomDomain.domain, Deployment.slug)
        .join(Deployment, Deployment.id == CustomDomain.deployment_id)
        .where(CustomDomain.verified_at.is_not(None)))
    return {domain: slug for domain, slug in rows}


def verified_deployment(session: Session, domain: str) -> Deployment | None:
    """The deployment a verified ``domain`` names, or None."""
    return session.execute(
        select(Deployment).join(CustomDomain, CustomDomain.deployment_id == Deployment.id)
        .where(CustomDomain.domain == domain, CustomDomain.verified_at.is_not(None))
    ).scalar_one_or_none()


def _sync_primary(session: Session, deployment_id: str) -> None:
    primary = session.execute(
        select(CustomDomain.domain).where(CustomDomain.deployment_id == deployment_id,
                                          CustomDomain.verified_at.is_not(None))
        .order_by(CustomDomain.verified_at, CustomDomain.domain).limit(1)).scalar()
    deployment = session.get(Deployment, deployment_id)
    if deployment is not None and deployment.custom_domain != primary:
        deployment.custom_domain = primary
        session.flush()

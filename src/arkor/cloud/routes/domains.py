"""A deployment's custom domains: add (pending, with the TXT challenge to create), list,
verify on demand, remove. The edge serves a domain only once it is verified.

Verify looks the record up while the request waits (at most ``ARKOR_DNS_TIMEOUT_S``, with no
database session held): 200 with the domain, verified or not (``lastError`` says what the
lookup found); 502 when the lookup itself failed (timeout, no name server answered), the
domain keeping its state.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from arkor.cloud.auth import ProjectScope, ProjectScopeDep
from arkor.cloud.deps import DatabaseDep, SettingsDep
from arkor.cloud.domains import ChallengeResolver, check_and_record
from arkor.cloud.dto import domain_dto
from arkor.cloud.errors import ApiError, error_responses
from arkor.contract import models as m
from arkor.contract.domains import (
    DOMAIN_NOT_FOUND_MESSAGE,
    DOMAIN_ROUTE,
    DOMAIN_TAKEN_MESSAGE,
    DOMAIN_VERIFY_ROUTE,
    DOMAINS_ROUTE,
    MAX_DOMAINS_PER_DEPLOYMENT,
    AddDomainBody,
    check_custom_domain,
    normalize_domain,
)
from arkor.store import deployments, domains
from arkor.store.errors import DomainTaken
from arkor.store.tables import CustomDomain, Deployment

router = APIRouter(tags=["endpoints"])
SCOPED = error_responses(400, 401, 403, 404, 426)


class DomainEnvelope(BaseModel):
    domain: m.CustomDomain


class DomainList(BaseModel):
    domains: list[m.CustomDomain]


def _deployment(session: Session, scope: ProjectScope, deployment_id: str) -> Deployment:
    row = deployments.get_deployment(session, scope.project_id, deployment_id)
    if row is None:
        raise ApiError(404, f"Deployment {deployment_id!r} not found in this project")
    return row


def _domain(session: Session, scope: ProjectScope, deployment_id: str,
            domain: str) -> CustomDomain:
    deployment = _deployment(session, scope, deployment_id)
    try:
        name = normalize_domain(domain)
    except ValueError:
        name = domain
    row = domains.get_domain(session, deployment.id, name)
    if row is None:
        raise ApiError(404, DOMAIN_NOT_FOUND_MESSAGE.format(domain=name[:253]))
    return row


@router.get(DOMAINS_ROUTE, response_model=DomainList, responses=SCOPED,
            summary="List a deployment's custom domains, with their TXT challenges")
def list_endpoint_domains(deployment_id: str, db: DatabaseDep,
                          scope: ProjectScopeDep) -> DomainList:
    with db.session() as session:
        row = _deployment(session, scope, deployment_id)
        return DomainList(domains=[domain_dto(d) for d in domains.list_domains(session, row.id)])


@router.post(DOMAINS_ROUTE, status_code=201, response_model=DomainEnvelope,
             responses=error_responses(400, 401, 403, 404, 409, 426),
             summary="Add a custom domain (pending until its TXT record is verified)")
def add_endpoint_domain(deployment_id: str, body: AddDomainBody, db: DatabaseDep,
                        scope: ProjectScopeDep, settings: SettingsDep) -> DomainEnvelope:
    try:
        name = check_custom_domain(body.domain, settings.edge_domain)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    with db.session() as session:
        row = _deployment(session, scope, deployment_id)
        if len(domains.list_domains(session, row.id)) >= MAX_DOMAINS_PER_DEPLOYMENT:
            raise ApiError(403, f"A deployment may have at most {MAX_DOMAINS_PER_DEPLOYMENT} "
                                "custom domains; remove one first")
        try:
            added = domains.add_domain(session, row, name)
        except DomainTaken as exc:
            raise ApiError(409, DOMAIN_TAKEN_MESSAGE.format(domain=name)) from exc
        return DomainEnvelope(domain=domain_dto(added))


@router.post(DOMAIN_VERIFY_ROUTE, response_model=DomainEnvelope,
             responses=error_responses(400, 401, 403, 404, 426, 502),
             summary="Look the domain's TXT record up now: verified when it holds the token")
def verify_endpoint_domain(deployment_id: str, domain: str, db: DatabaseDep,
                           scope: ProjectScopeDep, settings: SettingsDep) -> DomainEnvelope:
    with db.session() as session:
        row = _domain(session, scope, deployment_id, domain)
        name, token = row.domain, row.token
    outcome = check_and_record(db, ChallengeResolver.from_settings(settings), name, token)
    if outcome.found is None:
        raise ApiError(502, outcome.error or "The DNS lookup failed; try again shortly")
    with db.session() as session:
        return DomainEnvelope(domain=domain_dto(_domain(session, scope, deployment_id, name)))


@router.delete(DOMAIN_ROUTE, status_code=204, response_class=Response, responses=SCOPED,
               summary="Remove a custom domain: the edge stops serving it at once")
def remove_endpoint_domain(deployment_id: str, domain: str, db: DatabaseDep,
                           scope: ProjectScopeDep) -> Response:
    with db.session() as session:
        domains.remove_domain(session, _domain(session, scope, deployment_id, domain))
    return Response(status_code=204)

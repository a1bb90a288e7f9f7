"""An org's members: listed by any member; added, removed and given a role by its owners.

Who may call which is the role matrix's (:mod:`arkor.cloud.roles`); the rule that an org
keeps an owner is the store's (:mod:`arkor.store.members`).
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from arkor.cloud.auth import CallerDep, OrgScope, OrgScopeDep
from arkor.cloud.deps import DatabaseDep
from arkor.cloud.dto import iso, org_dto, role_dto
from arkor.cloud.errors import ApiError, error_responses
from arkor.contract import models as m
from arkor.store import members
from arkor.store.tables import Org

router = APIRouter(tags=["members"])


def member_dto(found: members.Member) -> m.OrgMember:
    return m.OrgMember(
        user_id=found.user.id, email=found.user.email, name=found.user.name,
        anonymous=found.user.anonymous, role=role_dto(found.membership.role),
        created_at=iso(found.membership.created_at) or "",
    )


def _org(session: Session, scope: OrgScope) -> Org:
    org = session.get(Org, scope.org_id)
    assert org is not None
    return org


@router.get(
    "/v1/members",
    response_model=m.MemberList,
    responses=error_responses(400, 401, 403, 426),
    summary="List the org's members and their roles",
)
def list_members(db: DatabaseDep, scope: OrgScopeDep) -> m.MemberList:
    with db.session() as session:
        return m.MemberList(
            org=org_dto(_org(session, scope)),
            members=[member_dto(x) for x in members.list_members(session, scope.org_id)],
        )


@router.post(
    "/v1/members",
    status_code=201,
    response_model=m.MemberEnvelope,
    responses=error_responses(400, 401, 403, 404, 409, 426),
    summary="Add an existing user to the org by email, with a role (owners only)",
)
def add_member(body: m.AddMemberBody, db: DatabaseDep, scope: OrgScopeDep,
               caller: CallerDep) -> m.MemberEnvelope:
    if caller.anonymous:  # else anyone could probe which emails have accounts here
        raise ApiError(403, "An anonymous identity cannot add members to its org. Sign in "
                            "as a user who owns the org (`arkor login --token ...`).")
    with db.session() as session:
        added = members.add_member_by_email(session, _org(session, scope), email=body.email,
                                            role=body.role)
        return m.MemberEnvelope(member=member_dto(added))


@router.patch(
    "/v1/members/{user_id}",
    response_model=m.MemberEnvelope,
    responses=error_responses(400, 401, 403, 404, 409, 426),
    summary="Change a member's role (owners only; the org keeps at least one owner)",
)
def set_member_role(user_id: str, body: m.SetRoleBody, db: DatabaseDep,
                    scope: OrgScopeDep) -> m.MemberEnvelope:
    with db.session() as session:
        changed = members.set_role(session, _org(session, scope), user_id, body.role)
        return m.MemberEnvelope(member=member_dto(changed))


@router.delete(
    "/v1/members/{user_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(400, 401, 403, 404, 409, 426),
    summary="Remove a member from the org (owners only; the org keeps at least one owner)",
)
def remove_member(user_id: str, db: DatabaseDep, scope: OrgScopeDep) -> Response:
    with db.session() as session:
        members.remove_member(session, _org(session, scope), user_id)
    return Response(status_code=204)

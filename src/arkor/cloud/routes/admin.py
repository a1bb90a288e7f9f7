"""``/v1/admin/*``: the operator's user and invite management, for admin users only.

The same store functions serve ``arkor cloud users ...`` and ``arkor cloud invites create``
on the database directly.
"""

from __future__ import annotations

from fastapi import APIRouter

from arkor.cloud.auth import AdminDep
from arkor.cloud.deps import DatabaseDep
from arkor.cloud.dto import admin_user_dto, created_token_dto, iso, org_dto, role_dto
from arkor.cloud.errors import ApiError, error_responses
from arkor.contract import models as m
from arkor.store import invites, users
from arkor.store.invites import DEFAULT_INVITE_DAYS
from arkor.store.tables import User

router = APIRouter(tags=["admin"])


@router.get(
    "/v1/admin/users",
    responses=error_responses(401, 403, 426),
    summary="Every signed-up user (anonymous ones left out)",
)
def list_users(db: DatabaseDep, _admin: AdminDep) -> dict[str, list[m.AdminUser]]:
    with db.session() as session:
        return {"users": [admin_user_dto(u) for u in users.list_users(session)]}


@router.post(
    "/v1/admin/users",
    status_code=201,
    response_model=m.CreatedUser,
    responses=error_responses(400, 401, 403, 409, 426),
    summary="Create a user in an org (created if missing; default: a personal org), with a "
            "first token",
)
def create_user(db: DatabaseDep, _admin: AdminDep, body: m.CreateUserBody) -> m.CreatedUser:
    with db.session() as session:
        created = users.create_user(session, email=body.email, name=body.name,
                                    admin=body.admin, org_slug=body.org_slug, role=body.role)
        return m.CreatedUser(
            user=admin_user_dto(created.user),
            token=created_token_dto(created.token.row, created.token.plaintext),
            org=org_dto(created.org),
        )


@router.post(
    "/v1/admin/users/{user_id}/disable",
    response_model=m.AdminUser,
    responses=error_responses(401, 403, 404, 426),
    summary="Disable a user: their tokens stop working on the next request",
)
def disable_user(db: DatabaseDep, admin: AdminDep, user_id: str) -> m.AdminUser:
    if user_id == admin.user_id:
        raise ApiError(400, "You cannot disable yourself; ask another admin, or run `arkor "
                            "cloud users disable EMAIL` on the server")
    with db.session() as session:
        user = session.get(User, user_id)
        if user is None:
            raise ApiError(404, f"User {user_id!r} not found")
        users.disable_user(session, user)
        return admin_user_dto(user)


@router.post(
    "/v1/admin/invites",
    status_code=201,
    response_model=m.CreatedInvite,
    responses=error_responses(400, 401, 403, 404, 426),
    summary="Create a one-time invite code into an org (shown in this answer only)",
)
def create_invite(db: DatabaseDep, _admin: AdminDep,
                  body: m.CreateInviteBody) -> m.CreatedInvite:
    with db.session() as session:
        created = invites.create_invite(session, org_slug=body.org_slug, role=body.role,
                                        days=body.expires_in_days or DEFAULT_INVITE_DAYS)
        return m.CreatedInvite(
            id=created.invite.id, org=org_dto(created.org),
            role=role_dto(created.invite.role),
            code=created.code, expires_at=iso(created.invite.expires_at) or "",
            created_at=iso(created.invite.created_at) or "",
        )

"""Personal access tokens: the caller creates, lists and revokes their own."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Response

from arkor.cloud.auth import CallerDep
from arkor.cloud.deps import DatabaseDep
from arkor.cloud.dto import created_token_dto, token_dto
from arkor.cloud.errors import ApiError, error_responses
from arkor.contract import models as m
from arkor.store import access_tokens
from arkor.store.access_tokens import KIND_PAT
from arkor.store.tables import utcnow

router = APIRouter(tags=["tokens"])


@router.post(
    "/v1/auth/tokens",
    status_code=201,
    responses=error_responses(400, 401, 426),
    summary="Create a personal access token; its plaintext is in this answer only",
)
def create_token(db: DatabaseDep, caller: CallerDep,
                 body: m.CreateTokenBody) -> dict[str, m.CreatedAccessToken]:
    expires_at = (utcnow() + timedelta(days=body.expires_in_days)
                  if body.expires_in_days is not None else None)
    with db.session() as session:
        issued = access_tokens.issue_token(session, user_id=caller.user_id, kind=KIND_PAT,
                                           name=body.name, expires_at=expires_at)
        return {"token": created_token_dto(issued.row, issued.plaintext)}


@router.get(
    "/v1/auth/tokens",
    responses=error_responses(401, 426),
    summary="The caller's tokens that still work (never their plaintext)",
)
def list_tokens(db: DatabaseDep, caller: CallerDep) -> dict[str, list[m.AccessToken]]:
    with db.session() as session:
        rows = access_tokens.list_tokens(session, caller.user_id)
        return {"tokens": [token_dto(row, current_id=caller.token_id) for row in rows]}


@router.delete(
    "/v1/auth/tokens/{token_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 404, 426),
    summary="Revoke one of the caller's tokens; it stops working on the next request",
)
def revoke_token(db: DatabaseDep, caller: CallerDep, token_id: str) -> Response:
    with db.session() as session:
        token = access_tokens.get_token(session, caller.user_id, token_id)
        if token is None:
            raise ApiError(404, f"Token {token_id!r} not found among your tokens "
                                "(`arkor tokens list` shows them)")
        access_tokens.revoke_token(session, token)
    return Response(status_code=204)

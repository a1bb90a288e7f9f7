"""Anonymous identities: a personal org the user owns, and a bearer token stored only as its
digest and found again by its plaintext."""

from __future__ import annotations

from sqlalchemy import select

from arkor.store import access_tokens, identities
from arkor.store.db import Database
from arkor.store.secrets import ACCESS_TOKEN_PREFIX, digest
from arkor.store.tables import AccessToken, Membership
from tests.store.conftest import Tenant, new_tenant


def test_the_token_is_stored_as_its_digest_and_found_by_its_plaintext(
        db: Database, tenant: Tenant) -> None:
    assert tenant.token.startswith(ACCESS_TOKEN_PREFIX)
    with db.session() as session:
        row = session.execute(select(AccessToken).where(AccessToken.user_id == tenant.user_id)
                              ).scalar_one()
        assert row.digest == digest(tenant.token) != tenant.token
        assert tenant.token not in {str(getattr(row, c.key)) for c in AccessToken.__table__.c}
        found = access_tokens.authenticate(session, tenant.token)
        assert found is not None
        assert found[0].id == tenant.user_id and found[0].anonymous
        assert access_tokens.authenticate(session, digest(tenant.token)) is None
        assert access_tokens.authenticate(session, tenant.token + "x") is None


def test_each_identity_owns_a_new_personal_org(db: Database) -> None:
    first, second = new_tenant(db), new_tenant(db)
    assert first.org_id != second.org_id
    with db.session() as session:
        role = session.get(Membership, (first.user_id, first.org_id))
        assert role is not None and role.role == "owner"
        assert [org.id for org in identities.orgs_for_user(session, first.user_id)] == [
            first.org_id]


def test_member_org_is_none_for_an_org_the_user_is_not_in(db: Database) -> None:
    mine, theirs = new_tenant(db), new_tenant(db)
    with db.session() as session:
        [own] = identities.orgs_for_user(session, mine.user_id)
        [other] = identities.orgs_for_user(session, theirs.user_id)
        assert identities.member_org(session, mine.user_id, own.slug).id == own.id
        assert identities.member_org(session, mine.user_id, other.slug) is None
        assert identities.member_org(session, mine.user_id, "no-such-org") is None

"""``arkor orgs members list|add|remove|set-role`` against a real control plane."""

from __future__ import annotations

import json

from arkor.contract.models import ROLE_MEMBER, ROLE_OWNER, ROLE_VIEWER
from arkor.store import users


def new_user(cloud, email: str, *, org: str | None = None, role: str = ROLE_MEMBER) -> str:
    with cloud.app.state.db.session() as session:
        return users.create_user(session, email=email, org_slug=org,
                                 role=role).token.plaintext


def test_an_owner_manages_members_and_a_viewer_is_told_the_role_needed(arkor, cloud) -> None:
    owner = new_user(cloud, "olga@example.com", org="guild", role=ROLE_OWNER)
    new_user(cloud, "pat@example.com")
    new_user(cloud, "rae@example.com")
    viewer = new_user(cloud, "vic@example.com", org="guild", role=ROLE_VIEWER)

    arkor("login", "--token", owner)
    assert "guild (owner)" in arkor("whoami").stdout
    added = arkor("orgs", "members", "add", "pat@example.com", "--org", "guild", "--role",
                  ROLE_VIEWER).stdout
    assert "Added pat@example.com to org guild as viewer" in added
    arkor("orgs", "members", "add", "rae@example.com")  # the signed-in org by default
    table = arkor("orgs", "members", "list").stdout
    assert all(f"{n}@example.com" in table for n in ("olga", "pat", "rae", "vic"))
    assert "Removed rae@example.com from org guild" in arkor(
        "orgs", "members", "remove", "rae@example.com").stdout
    last = arkor("orgs", "members", "set-role", "olga@example.com", ROLE_MEMBER, code=1)
    assert "at least one owner" in last.stderr
    assert "--role must be one of" in arkor("orgs", "members", "add", "x@example.com",
                                            "--role", "king", code=1).stderr
    assert "is not a member" in arkor("orgs", "members", "remove", "ghost@example.com",
                                      code=1).stderr
    assert "No user with email" in arkor("orgs", "members", "add", "ghost@example.com",
                                         code=1).stderr
    promoted = arkor("orgs", "members", "set-role", "PAT@example.com", ROLE_OWNER,
                     "--org", "guild").stdout
    assert "pat@example.com is now owner in org guild" in promoted
    arkor("orgs", "members", "set-role", "olga@example.com", ROLE_MEMBER)

    arkor("logout", "--force")
    arkor("login", "--token", viewer)
    listed = json.loads(arkor("orgs", "members", "list", "--json").stdout)
    assert {m["email"]: m["role"] for m in listed["members"]} == {
        "olga@example.com": ROLE_MEMBER, "pat@example.com": ROLE_OWNER,
        "vic@example.com": ROLE_VIEWER}
    refused = arkor("orgs", "members", "remove", "olga@example.com", code=1).stderr
    assert "This needs the owner role in org 'guild'; you are a viewer" in refused

"""Digests of bearer secrets. Only digests are stored; plaintexts are shown once."""

from __future__ import annotations

import hashlib
import secrets

ACCESS_TOKEN_PREFIX = "arkor_at_"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_access_token() -> str:
    return ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)

"""Bearer secrets: minted here, stored only as SHA-256 digests, shown in plaintext once.

Checksummed secrets (personal access tokens ``arkor_pat_``, invite codes ``arkor_inv_``,
deployment keys ``ark_live_``) are the prefix + 32 base62 characters (190 random bits) + a
6-character base62 CRC32 of the random part. The checksum lets a server refuse typos and
garbage before any database lookup, and lets secret scanners recognise a real one.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib

ACCESS_TOKEN_PREFIX = "arkor_at_"
PAT_PREFIX = "arkor_pat_"
INVITE_PREFIX = "arkor_inv_"
RANDOM_CHARS = 32
CHECKSUM_CHARS = 6
# What lists show of a token: its prefix and the first random characters.
DISPLAY_RANDOM_CHARS = 6

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        chars.append(_BASE62[rest])
    return "".join(reversed(chars))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_CHARS)


def new_checksummed(prefix: str) -> str:
    random_part = "".join(secrets.choice(_BASE62) for _ in range(RANDOM_CHARS))
    return prefix + random_part + _checksum(random_part)


def is_checksummed(plaintext: str, prefix: str) -> bool:
    """True if ``plaintext`` is ``prefix`` + the random part + its valid checksum."""
    if len(plaintext) != len(prefix) + RANDOM_CHARS + CHECKSUM_CHARS:
        return False
    if not plaintext.startswith(prefix):
        return False
    body = plaintext[len(prefix):]
    if any(c not in _BASE62 for c in body):
        return False
    return secrets.compare_digest(_checksum(body[:RANDOM_CHARS]), body[RANDOM_CHARS:])


def display_prefix(plaintext: str, prefix: str) -> str:
    return plaintext[: len(prefix) + DISPLAY_RANDOM_CHARS]


def new_access_token() -> str:
    """A new token of an anonymous sign-in (checksummed like a personal access token)."""
    return new_checksummed(ACCESS_TOKEN_PREFIX)

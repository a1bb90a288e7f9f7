"""Errors the store raises; the HTTP layers map them to status codes.

    StoreError
    ├── SlugTaken    a unique slug (deployment, project) already exists (-> 409)
    ├── SlugHeld     a deleted deployment's slug is still reserved to its project (-> 409)
    ├── EmailTaken   a user with that email exists (-> 409)
    ├── DomainTaken  a custom domain is already some deployment's (-> 409)
    └── Refused      a request the store will not carry out, with the reason (-> 400/403/404/409)
"""

from __future__ import annotations


class StoreError(Exception):
    pass


class SlugTaken(StoreError):
    def __init__(self, what: str, slug: str) -> None:
        super().__init__(f"{what} slug {slug!r} is already taken")
        self.what = what
        self.slug = slug


class SlugHeld(StoreError):
    def __init__(self, slug: str) -> None:
        super().__init__(f"Deployment slug {slug!r} was recently released by another project")
        self.slug = slug


class EmailTaken(StoreError):
    def __init__(self, email: str) -> None:
        super().__init__(f"A user with email {email!r} already exists")
        self.email = email


class DomainTaken(StoreError):
    def __init__(self, domain: str) -> None:
        super().__init__(f"Domain {domain!r} is already used by a deployment")
        self.domain = domain


class Refused(StoreError):
    """``status`` is the HTTP status the message goes with; the CLI shows only the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

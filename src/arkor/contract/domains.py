"""Custom domains of a deployment: the name rules, the DNS challenge, the routes and messages.

A deployment answers at ``api.example.com`` once its owner proves control of the name with a
TXT record ``_arkor-challenge.api.example.com`` holding the token the server gave when the
domain was added. The server, the SDK, the CLI and the Studio read these names here.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, field_validator

CHALLENGE_PREFIX: Final = "_arkor-challenge"
DOMAIN_MAX: Final = 253
MAX_DOMAINS_PER_DEPLOYMENT: Final = 20

DomainStatus = Literal["pending", "verified"]
DOMAIN_STATUSES: Final[tuple[DomainStatus, ...]] = get_args(DomainStatus)
DOMAIN_PENDING, DOMAIN_VERIFIED = DOMAIN_STATUSES

DOMAINS_ROUTE: Final = "/v1/endpoints/{deployment_id}/domains"
DOMAIN_ROUTE: Final = DOMAINS_ROUTE + "/{domain}"
DOMAIN_VERIFY_ROUTE: Final = DOMAIN_ROUTE + "/verify"

DOMAIN_FORMAT_MESSAGE: Final = (
    "domain must be a host name such as api.example.com: at most 253 characters, at least two "
    "labels of letters, digits and hyphens (each 1-63, not starting or ending with a hyphen), "
    "not an IP address"
)
DOMAIN_TAKEN_MESSAGE: Final = "Domain {domain!r} is already used by a deployment"
DOMAIN_UNDER_EDGE_MESSAGE: Final = (
    "Domain {domain!r} is under this server's edge domain {edge!r}, whose names are the "
    "deployments' own (<slug>.{edge}); add a name of a domain you control"
)
DOMAIN_NOT_FOUND_MESSAGE: Final = "Domain {domain!r} is not a custom domain of this deployment"
NO_CHALLENGE_RECORD: Final = "No TXT record {record} holding this domain's token yet"

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def normalize_domain(raw: str) -> str:
    """``API.Example.com.`` → ``api.example.com`` (IDNA for non-ASCII names); ValueError with
    :data:`DOMAIN_FORMAT_MESSAGE` for what cannot be a custom domain."""
    name = raw.strip().rstrip(".").lower()
    if len(name) > 2 * DOMAIN_MAX:
        raise ValueError(DOMAIN_FORMAT_MESSAGE)
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(DOMAIN_FORMAT_MESSAGE) from None
    labels = name.split(".")
    if (len(name) > DOMAIN_MAX or len(labels) < 2 or not all(map(_LABEL.match, labels))
            or labels[-1].isdigit() or _is_ip(name)):
        raise ValueError(DOMAIN_FORMAT_MESSAGE)
    return name


def check_custom_domain(raw: str, edge_domain: str) -> str:
    """The normalized name, refused when it is the edge domain or under it."""
    name = normalize_domain(raw)
    edge = edge_domain.strip().strip(".").lower()
    if name == edge or name.endswith("." + edge):
        raise ValueError(DOMAIN_UNDER_EDGE_MESSAGE.format(domain=name, edge=edge))
    return name


def challenge_record(domain: str) -> str:
    """The TXT record's name: ``_arkor-challenge.<domain>``."""
    return f"{CHALLENGE_PREFIX}.{domain}"


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class AddDomainBody(BaseModel):
    """``POST /v1/endpoints/{id}/domains``: ``{"domain": "api.example.com"}``. The name's
    shape is checked here; the edge-domain rule needs the server's settings."""

    model_config = ConfigDict(extra="allow", strict=True)
    domain: str

    @field_validator("domain")
    @classmethod
    def _shape(cls, value: str) -> str:
        return normalize_domain(value)

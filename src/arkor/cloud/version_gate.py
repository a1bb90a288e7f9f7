"""The client-version gate: every ``/v1`` request must say ``X-Arkor-Client: arkor/<version>``.

Requests without the header, with a malformed one, or from a version below the supported
minimum raise :class:`ClientTooOld`, which ``errors.py`` answers with HTTP 426 and an upgrade
hint, so an old CLI fails with a clear message rather than misreading a newer API.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Header

from arkor.cloud.deps import SettingsDep

CLIENT_HEADER = "X-Arkor-Client"
UPGRADE_COMMAND = "pip install -U arkor"
_HEADER_RE = re.compile(r"^arkor/(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.\-]+))?(?:\+[0-9A-Za-z.\-]+)?$")


class ClientTooOld(Exception):
    """The 426: ``body`` holds the caller's version, the supported range and the upgrade."""

    def __init__(self, **body: Any) -> None:
        super().__init__("sdk_version_unsupported")
        self.body = body


def parse_version(value: str) -> tuple[int, int, int, bool] | None:
    """``(major, minor, patch, is_release)`` of ``arkor/<semver>``; pre-releases sort first."""
    match = _HEADER_RE.match(value.strip())
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    return int(major), int(minor), int(patch), pre is None


def _minimum(min_version: str) -> tuple[int, int, int, bool]:
    parsed = parse_version(f"arkor/{min_version}")
    if parsed is None:
        raise ValueError(f"min_client_version {min_version!r} is not a semantic version")
    return parsed


def check_client_version(header: str | None, min_version: str) -> None:
    supported = f">={min_version}"
    body: dict[str, Any] = {"supportedRange": supported, "upgrade": UPGRADE_COMMAND}
    if header is None or not header.strip():
        raise ClientTooOld(currentVersion="unknown", reason="missing", **body)
    parsed = parse_version(header)
    if parsed is None:
        raise ClientTooOld(currentVersion="unknown", reason="malformed", **body)
    if parsed < _minimum(min_version):
        raise ClientTooOld(currentVersion=header.strip().removeprefix("arkor/"), **body)


def client_version_gate(
    settings: SettingsDep,
    x_arkor_client: Annotated[
        str | None,
        Header(
            alias=CLIENT_HEADER,
            description="arkor/<version> of the calling SDK or CLI, e.g. arkor/0.1.0",
        ),
    ] = None,
) -> None:
    check_client_version(x_arkor_client, settings.min_client_version)

"""What one Studio launch is configured with: built by ``arkor dev``, passed to the app."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_STUDIO_PORT = 4000
PORT_ATTEMPTS = 10

StudioMode = Literal["agent", "interactive"]


def new_studio_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class StudioConfig:
    """``cloud_url`` pins the control plane (the embedded one); ``None`` resolves it per
    request from ``ARKOR_CLOUD_API_URL`` and the credentials, like the SDK does.

    ``url`` is the Studio's own address once its port is bound, ``edge_url`` the deployment
    URL template (``{slug}`` in it) of a local cloud this launch started, and ``mode`` whether
    a person (``interactive``) or a coding agent (``arkor dev --agent``) launched it; all
    three are reported by ``GET /api/status``.
    """

    cwd: Path
    token: str = field(default_factory=new_studio_token, repr=False)
    cloud_url: str | None = None
    static_dir: Path = STATIC_DIR
    mode: StudioMode = "interactive"
    url: str | None = None
    edge_url: str | None = None

    def __post_init__(self) -> None:
        if len(self.token) < 16:
            raise ValueError("the Studio token must be at least 16 characters")

from arkor.studio.config import StudioConfig
from arkor.studio.server import create_studio_app

__all__ = ["StudioConfig", "create_studio_app"]

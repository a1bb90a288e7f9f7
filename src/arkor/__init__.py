"""The public SDK surface: exactly what ``arkor.sdk`` exports (see its ``__all__``)."""

from arkor import sdk
from arkor.sdk import *  # noqa: F403

__all__ = sdk.__all__
